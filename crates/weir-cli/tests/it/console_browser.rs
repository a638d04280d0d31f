//! The web console in a real browser as an ordinary user of a secured broker (TLS,
//! authentication required, authorization on): the same headless Chromium run as
//! weir-server's console test (`tests/browser/console_browser.py`), logged in as `carol`,
//! whose ACLs let her describe and read `orders` and `audit`, read group `billing` and
//! create `created-in-browser`. She sees those two topics and not `payroll`, the group's
//! lag, record 5 of orders/0, and creates her topic through the form, all decided by the
//! core's authorisation as for a Kafka client of hers.
//!
//! Where Chromium is missing and cannot be installed (not root, no apt-get), the test
//! says so on stderr and stops without checking anything, as weir-server's does.

use crate::common;

use std::io::Write;
use std::process::{Command, Output};

use common::secure::{Certs, Serve, weir_fed};
use common::{installed, repo_root};

const ADMIN_PASSWORD: &str = "admin-secret";
const CAROL_PASSWORD: &str = "carol-secret";

/// `weir ARGS` as the admin over TLS, fed `stdin`; must succeed.
fn as_admin(broker: &Serve, certs: &Certs, args: &[&str], stdin: &str) -> String {
    let env = [
        ("WEIR_TLS_CA", certs.arg("ca.pem")),
        ("WEIR_USER", "admin".to_owned()),
        ("WEIR_PASSWORD", ADMIN_PASSWORD.to_owned()),
    ];
    let (out, _) = weir_fed(&broker.addr, &env, args, stdin.as_bytes());
    ok(out, args)
}

fn ok(out: Output, args: &[&str]) -> String {
    assert!(
        out.status.success(),
        "weir {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn headless_chromium_shows_an_ordinary_user_what_her_acls_allow() {
    let setup = repo_root().join("tests/browser/setup.sh");
    let browser = Command::new("bash").arg(setup).output().expect("setup.sh");
    if !browser.status.success() {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED headless_chromium_shows_an_ordinary_user_what_her_acls_allow: no \
             Chromium: {}",
            String::from_utf8_lossy(&browser.stderr).trim()
        );
        return;
    }
    let driver = String::from_utf8(browser.stdout).unwrap().trim().to_owned();
    let python = installed("tests/python/setup.sh");

    let certs = Certs::new();
    let broker = Serve::start(
        &certs.secured_args(),
        &[
            ("WEIR_ADMIN_USER", "admin"),
            ("WEIR_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ],
    );
    // The admin's set-up: the broker writes the bootstrap admin's credentials just after
    // it starts, so the first call may be refused for a moment.
    let deadline = std::time::Instant::now() + common::secure::DEADLINE;
    loop {
        let env = [
            ("WEIR_TLS_CA", certs.arg("ca.pem")),
            ("WEIR_USER", "admin".to_owned()),
            ("WEIR_PASSWORD", ADMIN_PASSWORD.to_owned()),
        ];
        let args = ["topic", "create", "orders", "--partitions", "2"];
        let (out, _) = weir_fed(&broker.addr, &env, &args, b"");
        if out.status.success() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    for topic in ["audit", "payroll"] {
        as_admin(&broker, &certs, &["topic", "create", topic], "");
    }
    let records: String = (0..10)
        .map(|i| format!("k-order-{i}:order-{i}\n"))
        .collect();
    as_admin(
        &broker,
        &certs,
        &[
            "produce",
            "orders",
            "--partition",
            "0",
            "--key-separator",
            ":",
        ],
        &records,
    );
    // Group billing read the first 4 records of orders/0: 6 behind.
    as_admin(
        &broker,
        &certs,
        &[
            "group",
            "reset-offsets",
            "billing",
            "--topic",
            "orders:0",
            "--to-offset",
            "4",
            "--execute",
        ],
        "",
    );
    as_admin(
        &broker,
        &certs,
        &["user", "create", "carol"],
        &format!("{CAROL_PASSWORD}\n"),
    );
    for acl in [
        &["--operation", "describe,read", "--topic", "orders"][..],
        &["--operation", "describe,read", "--topic", "audit"],
        &["--operation", "describe,read", "--group", "billing"],
        &[
            "--operation",
            "create,describe",
            "--topic",
            "created-in-browser",
        ],
    ] {
        let mut args = vec!["acl", "add", "--principal", "User:carol"];
        args.extend_from_slice(acl);
        as_admin(&broker, &certs, &args, "");
    }

    let out = std::env::temp_dir().join(format!("weir-console-as-user-{}", std::process::id()));
    let script = repo_root().join("tests/browser/console_browser.py");
    let console = format!("https://{}", broker.admin);
    let run = Command::new("timeout")
        .args(["--kill-after=10", "120"])
        .arg(&python)
        .arg(script)
        .args(["--console", &console, "--driver", &driver, "--out"])
        .arg(&out)
        .args(["--user", "carol", "--password", CAROL_PASSWORD, "--ca"])
        .arg(certs.path("ca.pem"))
        .output()
        .expect("runs console_browser.py");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr),
    );
    assert!(
        run.status.success(),
        "console_browser.py failed:\n{stdout}\n{stderr}"
    );
    let read: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("console_browser.py printed no JSON ({e}):\n{stdout}"));
    println!("the browser read, as carol: {read}");
    assert_eq!(read["cluster_title"], "Cluster");
    let topics: Vec<&str> = read["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(topics, ["audit", "orders"], "payroll is not carol's to see");
    assert_eq!(read["group_lag_listed"]["billing"], "6");
    assert_eq!(read["group_lag"], "6");
    assert_eq!(read["record_5"]["value"], "order-5");
    assert_eq!(read["record_5"]["key"], "k-order-5");
    assert_eq!(read["created_title"], "Topic created-in-browser");
    assert!(read["live_status"].as_str().unwrap().starts_with("Live:"));
    // The topic carol created, as the admin's client sees it.
    let described = as_admin(
        &broker,
        &certs,
        &[
            "topic",
            "describe",
            "created-in-browser",
            "--format",
            "json",
        ],
        "",
    );
    let json: serde_json::Value = serde_json::from_str(&described).unwrap();
    assert_eq!(json["partitions"].as_array().unwrap().len(), 2, "{json}");
    let _ = std::fs::remove_dir_all(&out);
}
