//! `weir user` and `weir acl` against a broker: users created by the CLI listed with
//! their mechanisms and logging in over the Kafka listener (kafka-python, SCRAM), ACLs
//! added, listed and removed by filter, and bad input refused before any request.
//! Most brokers run without authorization, to check the commands alone; with it on (and
//! TLS, which a secured broker needs), an anonymous CLI is refused, and an admin (`--user`)
//! makes a user and grants it a topic.

use crate::common;

use std::io::Write;
use std::process::{Output, Stdio};

use common::*;
use serde_json::{Value, json};

/// `weir ARGS` against `broker`, with `env` set and `stdin` as its input (not a
/// terminal).
fn run_with(broker: &Broker, env: &[(&str, &str)], args: &[&str], stdin: &str) -> Output {
    let mut child = broker
        .command(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("stdin written");
    wait_output(child, args)
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{text:?} is not JSON: {e}"))
}

/// What `weir acl list ARGS --format json` prints, as (principal, permission,
/// operation, resource, pattern) tuples.
fn acls(broker: &Broker, args: &[&str]) -> Vec<(String, String, String, String, String)> {
    let args: Vec<&str> = ["acl", "list", "--format", "json"]
        .iter()
        .chain(args)
        .copied()
        .collect();
    let listed = json(&broker.ok(&args, ""));
    listed
        .as_array()
        .expect("an array")
        .iter()
        .map(|b| {
            let s = |k: &str| b[k].as_str().expect(k).to_owned();
            (
                s("principal"),
                s("permission"),
                s("operation"),
                format!("{}:{}", s("resource_type"), s("resource_name")),
                s("pattern_type"),
            )
        })
        .collect()
}

fn acl(
    p: &str,
    perm: &str,
    op: &str,
    res: &str,
    pat: &str,
) -> (String, String, String, String, String) {
    (p.into(), perm.into(), op.into(), res.into(), pat.into())
}

#[test]
fn users_created_by_the_cli_are_listed_and_log_in_over_kafka() {
    let python = installed("tests/python/setup.sh");
    let broker = Broker::start_with_kafka(weir_server::ServerConfig {
        admin_listen: None,
        ..Default::default()
    });
    let kafka = broker.kafka.clone().expect("a Kafka listener");

    let created = broker.ok(&["user", "create", "alice"], "alice-secret\n");
    assert!(
        created.contains("SCRAM-SHA-256, SCRAM-SHA-512 (8192 iterations)"),
        "{created}"
    );
    broker.ok(
        &[
            "user",
            "create",
            "bob",
            "--mechanism",
            "SCRAM-SHA-256",
            "--iterations",
            "4096",
        ],
        "bob-secret",
    );
    let listed = json(&broker.ok(&["user", "list", "--format", "json"], ""));
    assert_eq!(
        listed,
        json!([
            {"user": "alice", "credentials": [
                {"mechanism": "SCRAM-SHA-256", "iterations": 8192},
                {"mechanism": "SCRAM-SHA-512", "iterations": 8192}]},
            {"user": "bob", "credentials": [{"mechanism": "SCRAM-SHA-256", "iterations": 4096}]},
        ])
    );
    let table = broker.ok(&["user", "list"], "");
    assert!(table.starts_with("USER   CREDENTIALS\n"), "{table}");
    assert!(
        table.contains("bob    SCRAM-SHA-256 (4096 iterations)"),
        "{table}"
    );

    // What the CLI made is what a Kafka client logs in with; only with its password.
    let script = repo_root().join("tests/kafka/scram_login.py");
    let script = script.to_string_lossy();
    let login = |user: &str, password: &str, mechanism: &str| {
        run_ok(&python, &[&script, &kafka, user, password, mechanism])
    };
    let out = login("alice", "alice-secret", "SCRAM-SHA-512");
    assert!(out.starts_with("authenticated as alice"), "{out}");
    let out = login("bob", "bob-secret", "SCRAM-SHA-256");
    assert!(out.starts_with("authenticated as bob"), "{out}");
    let out = login("alice", "not-her-secret", "SCRAM-SHA-512");
    assert!(out.starts_with("refused"), "{out}");
    let out = login("bob", "bob-secret", "SCRAM-SHA-512");
    assert!(
        out.starts_with("refused"),
        "bob has no SCRAM-SHA-512 credential: {out}"
    );

    // A new password replaces the old one.
    broker.ok(&["user", "create", "alice"], "new-secret\r\n");
    let out = login("alice", "new-secret", "SCRAM-SHA-512");
    assert!(out.starts_with("authenticated as alice"), "{out}");

    let removed = broker.ok(
        &["user", "delete", "alice", "--mechanism", "SCRAM-SHA-256"],
        "",
    );
    assert_eq!(removed, "user alice: removed SCRAM-SHA-256\n");
    let listed = json(&broker.ok(&["user", "list", "alice", "--format", "json"], ""));
    assert_eq!(
        listed[0]["credentials"],
        json!([{"mechanism": "SCRAM-SHA-512", "iterations": 8192}])
    );
    let deleted = broker.ok(&["user", "delete", "alice"], "");
    assert_eq!(deleted, "deleted user alice (SCRAM-SHA-512)\n");
    let out = login("alice", "new-secret", "SCRAM-SHA-512");
    assert!(out.starts_with("refused"), "{out}");

    // A named user that does not exist: the others are shown, and the command fails.
    let missing = broker.run(&["user", "list", "bob", "alice"]);
    assert_eq!(missing.status.code(), Some(1), "{}", stderr(&missing));
    assert!(
        String::from_utf8_lossy(&missing.stdout).contains("bob "),
        "{missing:?}"
    );
    assert!(
        stderr(&missing).contains("there is no user \"alice\""),
        "{}",
        stderr(&missing)
    );
    let again = broker.run(&["user", "delete", "alice"]);
    assert_eq!(again.status.code(), Some(1), "{}", stderr(&again));
    assert!(stderr(&again).contains("alice"), "{}", stderr(&again));
}

#[test]
fn acls_are_added_listed_and_removed_by_filter() {
    let broker = Broker::start(weir_server::ServerConfig {
        admin_listen: None,
        ..Default::default()
    });
    let add = |args: &[&str]| {
        let args: Vec<&str> = ["acl", "add"].iter().chain(args).copied().collect();
        broker.ok(&args, "")
    };
    let added = add(&[
        "--principal",
        "User:alice",
        "--operation",
        "read,write",
        "--topic",
        "orders",
    ]);
    assert!(added.starts_with("added 2 binding(s):\n"), "{added}");
    assert!(
        added.contains("User:alice  ALLOW       read       topic:orders  literal  *"),
        "{added}"
    );
    add(&[
        "--principal",
        "User:alice",
        "--operation",
        "read",
        "--topic",
        "ord",
        "--prefixed",
    ]);
    add(&[
        "--principal",
        "User:mallory",
        "--operation",
        "all",
        "--topic",
        "orders",
        "--deny",
    ]);
    add(&[
        "--principal",
        "User:ops",
        "--operation",
        "alter,describe",
        "--cluster",
        "--host",
        "10.0.0.7",
    ]);
    add(&[
        "--principal",
        "User:*",
        "--operation",
        "describe",
        "--topic",
        "*",
    ]);
    assert_eq!(acls(&broker, &[]).len(), 7);

    // A resource name selects its literal bindings; --prefixed its prefixed ones; --match
    // every binding that applies to the resource.
    assert_eq!(
        acls(&broker, &["--topic", "orders"]),
        vec![
            acl("User:alice", "allow", "read", "topic:orders", "literal"),
            acl("User:alice", "allow", "write", "topic:orders", "literal"),
            acl("User:mallory", "deny", "all", "topic:orders", "literal"),
        ]
    );
    assert_eq!(acls(&broker, &["--topic", "orders", "--prefixed"]), vec![]);
    assert_eq!(
        acls(&broker, &["--topic", "ord", "--prefixed"]),
        vec![acl("User:alice", "allow", "read", "topic:ord", "prefixed")]
    );
    let matching = acls(&broker, &["--topic", "orders", "--match"]);
    assert_eq!(matching.len(), 5, "{matching:?}");
    assert!(matching.contains(&acl("User:*", "allow", "describe", "topic:*", "literal")));
    assert_eq!(
        acls(&broker, &["--deny"]),
        vec![acl(
            "User:mallory",
            "deny",
            "all",
            "topic:orders",
            "literal"
        )]
    );
    assert_eq!(
        acls(&broker, &["--cluster", "--host", "10.0.0.7"]).len(),
        2,
        "the cluster bindings"
    );
    assert_eq!(acls(&broker, &["--operation", "describe,write"]).len(), 3);

    // A binding the broker refuses: its reason, exit code 1, nothing added.
    let refused = broker.run(&[
        "acl",
        "add",
        "--principal",
        "User:alice",
        "--operation",
        "idempotent-write",
        "--topic",
        "orders",
    ]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("does not apply"),
        "{}",
        stderr(&refused)
    );

    // An empty filter would remove everything: refused without --all, nothing removed.
    let everything = broker.run(&["acl", "remove"]);
    assert_eq!(everything.status.code(), Some(2), "{}", stderr(&everything));
    assert!(
        stderr(&everything).contains("--all"),
        "{}",
        stderr(&everything)
    );
    assert_eq!(acls(&broker, &[]).len(), 7);

    let removed = broker.ok(
        &[
            "acl",
            "remove",
            "--principal",
            "User:alice",
            "--topic",
            "orders",
        ],
        "",
    );
    assert!(removed.starts_with("removed 2 binding(s):\n"), "{removed}");
    assert!(removed.contains("write"), "{removed}");
    assert_eq!(
        acls(&broker, &["--principal", "User:alice"]).len(),
        1,
        "the prefixed one stays"
    );
    let none = broker.run(&["acl", "remove", "--principal", "User:nobody"]);
    assert!(none.status.success(), "{}", stderr(&none));
    assert!(
        stderr(&none).contains("nothing was removed"),
        "{}",
        stderr(&none)
    );

    let all = json(&broker.ok(&["acl", "remove", "--all", "--format", "json"], ""));
    assert_eq!(all["removed"].as_array().map(Vec::len), Some(5), "{all}");
    assert_eq!(acls(&broker, &[]), vec![]);
}

#[test]
fn bad_user_and_acl_input_is_a_usage_error() {
    // Refused before connecting: no broker is needed.
    for (args, says) in [
        (
            &[
                "acl",
                "add",
                "--principal",
                "User:a",
                "--operation",
                "rad",
                "--topic",
                "t",
            ][..],
            "unknown operation \"rad\"",
        ),
        (
            &[
                "acl",
                "add",
                "--principal",
                "User:a",
                "--operation",
                "read",
                "--topic",
                "t",
                "--group",
                "g",
            ],
            "cannot be used with",
        ),
        (
            &[
                "acl",
                "add",
                "--principal",
                "alice",
                "--operation",
                "read",
                "--topic",
                "t",
            ],
            "a principal is User:NAME",
        ),
        (
            &["acl", "add", "--principal", "User:a", "--operation", "read"],
            "--topic",
        ),
        (
            &[
                "acl",
                "add",
                "--principal",
                "User:a",
                "--operation",
                "read",
                "--cluster",
                "--prefixed",
            ],
            "--prefixed does not apply to --cluster",
        ),
        (
            &[
                "acl",
                "add",
                "--principal",
                "User:a",
                "--operation",
                "read",
                "--topic",
                "t",
                "--host",
                "db.local",
            ],
            "not an IP address",
        ),
        (
            &["acl", "remove", "--all", "--topic", "t"],
            "takes no filter",
        ),
        (&["acl", "list", "--match"], "--topic"),
        (&["user", "create", "alice"], "the password is empty"),
        (
            &["user", "create", "alice", "--mechanism", "MD5"],
            "is not SCRAM-SHA-256 or SCRAM-SHA-512",
        ),
        (&["user", "create", "alice", "--iterations", "100"], "100"),
        (
            &["user", "delete", "alice", "--mechanism", "all"],
            "\"all\"",
        ),
    ] {
        let output = finish(weir_command(args), args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(says),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn over_tls_an_admin_grants_a_user_a_topic_and_anonymous_clients_manage_nothing() {
    let certs = tempfile::tempdir().expect("temp dir");
    let dir = certs.path().to_string_lossy().into_owned();
    let made = weir_command(&["dev", "certs", "--out", &dir])
        .output()
        .expect("weir dev certs");
    assert!(made.status.success(), "{}", stderr(&made));
    let broker = Broker::start(weir_server::ServerConfig {
        admin_listen: None,
        tls_cert: Some(certs.path().join("node.pem")),
        tls_key: Some(certs.path().join("node-key.pem")),
        tls_client_ca: Some(certs.path().join("ca.pem")),
        authorization: true,
        admin_user: Some("admin".into()),
        admin_password: Some(weir_server::Secret("admin-secret".into())),
        ..Default::default()
    });
    let ca = certs.path().join("ca.pem");
    let ca = ca.to_string_lossy();
    let as_user = |user: &str, password: &str, args: &[&str], stdin: &str| {
        let env = [
            ("WEIR_TLS_CA", &*ca),
            ("WEIR_USER", user),
            ("WEIR_PASSWORD", password),
        ];
        run_with(&broker, &env, args, stdin)
    };
    let admin = |args: &[&str], stdin: &str| as_user("admin", "admin-secret", args, stdin);
    let anonymous =
        |args: &[&str], stdin: &str| run_with(&broker, &[("WEIR_TLS_CA", &*ca)], args, stdin);

    as_admin_once_ready(|| admin(&["topic", "create", "orders"], ""));
    let ok = |out: Output| {
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8(out.stdout).expect("UTF-8")
    };
    ok(admin(&["user", "create", "alice"], "alice-secret\n"));
    ok(admin(&["topic", "create", "payroll"], ""));
    ok(admin(
        &[
            "acl",
            "add",
            "--principal",
            "User:alice",
            "--operation",
            "read,describe",
            "--topic",
            "orders",
        ],
        "",
    ));

    // Without credentials a client is User:ANONYMOUS, who may manage nothing.
    for args in [
        &["acl", "list"][..],
        &[
            "acl",
            "add",
            "--principal",
            "User:ANONYMOUS",
            "--operation",
            "all",
            "--cluster",
        ],
        &["user", "list"],
        &["user", "create", "mallory"],
    ] {
        let out = anonymous(args, "mallory-secret\n");
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).to_lowercase().contains("authoriz"),
            "{args:?}: {}",
            stderr(&out)
        );
    }

    // alice sees the topic she was granted, not the other, and may not manage ACLs.
    let topics = ok(as_user("alice", "alice-secret", &["topic", "list"], ""));
    assert!(topics.contains("orders"), "{topics}");
    assert!(!topics.contains("payroll"), "{topics}");
    let refused = as_user("alice", "alice-secret", &["acl", "list"], "");
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    let refused = as_user(
        "alice",
        "alice-secret",
        &["user", "create", "eve"],
        "eve-secret\n",
    );
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));

    // Removed, the grant is gone for her.
    let removed = ok(admin(&["acl", "remove", "--principal", "User:alice"], ""));
    assert!(removed.starts_with("removed 2 binding(s):"), "{removed}");
    let topics = ok(as_user("alice", "alice-secret", &["topic", "list"], ""));
    assert!(!topics.contains("orders"), "{topics}");
}
