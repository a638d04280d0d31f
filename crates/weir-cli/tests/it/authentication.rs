//! Authentication that cannot be turned against the broker, and API tokens, with real
//! `weir serve` processes secured as docs/security.md sets them up (TLS everywhere,
//! authentication required, authorization on, a bootstrap admin):
//! - a flood of wrong passwords (bounded: 12 senders, 8 s) does not stall a client
//!   whose password the broker checked already;
//! - `weir token`: a token made once authenticates as its owner on gRPC (a produce
//!   under the owner's ACLs) and on the console (`Authorization: Bearer`); a wrong,
//!   revoked or expired token is refused with an audit line; a token cannot make
//!   tokens; deleting the owner revokes its tokens; the secret is in no listing and in
//!   no file under the data directory.

use crate::common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::secure::{Certs, DEADLINE, Serve, https_get, weir_fed};
use common::{finish, stderr, weir_command};
use weir_client::connection::Timeouts;
use weir_client::{Admin, ClientTls, ConnectOptions};

const ADMIN_PASSWORD: &str = "admin-secret";

fn secured_broker(certs: &Certs) -> Serve {
    Serve::start(
        &certs.secured_args(),
        &[
            ("WEIR_ADMIN_USER", "admin"),
            ("WEIR_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ],
    )
}

/// `weir ARGS` against `brokers` with `env` and `stdin`, bounded in time.
fn weir(brokers: &str, env: &[(&str, String)], args: &[&str], stdin: &[u8]) -> Output {
    weir_fed(brokers, env, args, stdin).0
}

fn weir_ok(brokers: &str, env: &[(&str, String)], args: &[&str], stdin: &[u8]) -> String {
    let out = weir(brokers, env, args, stdin);
    assert!(out.status.success(), "weir {args:?}: {}", stderr(&out));
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// Retries `weir ARGS` until it succeeds (the bootstrap admin is written as the broker
/// starts).
fn weir_eventually(brokers: &str, env: &[(&str, String)], args: &[&str]) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let out = finish(
            {
                let mut c = weir_command(args);
                c.env("WEIR_BROKERS", brokers);
                c.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
                c
            },
            args,
        );
        if out.status.success() {
            return String::from_utf8(out.stdout).expect("UTF-8");
        }
        assert!(
            Instant::now() < deadline,
            "weir {args:?} kept failing: {}",
            stderr(&out)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

async fn admin_as(addr: &str, ca: &Path, user: &str, password: &str) -> Result<Admin, String> {
    let tls = ClientTls::from_files(ca, None)
        .and_then(|tls| tls.with_user(user, password))
        .map_err(|e| e.to_string())?;
    // A refused call comes late on purpose (and may wait for a turn): give it time.
    let options = ConnectOptions {
        timeouts: Timeouts {
            connect: Duration::from_secs(10),
            request: Duration::from_secs(30),
        },
        tls: Some(tls),
    };
    Admin::connect_with(&[addr.to_owned()], options)
        .await
        .map_err(|e| e.to_string())
}

#[test]
fn a_flood_of_wrong_passwords_does_not_stall_a_client_already_in() {
    const SENDERS: usize = 12;
    const FLOOD: Duration = Duration::from_secs(8);
    const CALLS: usize = 20;
    let certs = Certs::new();
    let broker = secured_broker(&certs);
    let ca = certs.path("ca.pem");
    let admin_env = [
        ("WEIR_TLS_CA", certs.arg("ca.pem")),
        ("WEIR_USER", "admin".to_owned()),
        ("WEIR_PASSWORD", ADMIN_PASSWORD.to_owned()),
    ];
    weir_eventually(&broker.addr, &admin_env, &["topic", "list"]);

    let rt = runtime();
    let (latencies, outcomes) = rt.block_on(async {
        // The good client: its password checked once, then cached by the broker.
        let good = admin_as(&broker.addr, &ca, "admin", ADMIN_PASSWORD)
            .await
            .expect("the admin connects");
        good.list_topics(false).await.expect("a first call");
        let stop = Instant::now() + FLOOD;
        let flood: Vec<_> = (0..SENDERS)
            .map(|sender| {
                let (addr, ca) = (broker.addr.clone(), ca.clone());
                tokio::spawn(async move {
                    let mut outcomes = Vec::new();
                    let mut n = 0;
                    while Instant::now() < stop {
                        // A new wrong password each time: no cache can answer it.
                        let password = format!("wrong-{sender}-{n}");
                        n += 1;
                        match admin_as(&addr, &ca, "admin", &password).await {
                            Ok(admin) => outcomes.push(match admin.list_topics(false).await {
                                Ok(_) => "accepted".to_owned(),
                                Err(e) => e.to_string(),
                            }),
                            Err(e) => outcomes.push(e),
                        }
                    }
                    outcomes
                })
            })
            .collect();
        // Let the flood build up, then time the good client's calls while it lasts.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut latencies = Vec::new();
        for _ in 0..CALLS {
            let started = Instant::now();
            good.list_topics(false)
                .await
                .expect("the good client is served");
            latencies.push(started.elapsed());
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        let mut outcomes = Vec::new();
        for sender in flood {
            outcomes.extend(sender.await.expect("a flood sender"));
        }
        (latencies, outcomes)
    });
    let worst = latencies.iter().max().expect("calls");
    eprintln!(
        "{} wrong-password calls; the good client's {CALLS} calls took at most {worst:?}",
        outcomes.len()
    );
    assert!(outcomes.len() >= SENDERS, "the flood ran: {outcomes:?}");
    for outcome in &outcomes {
        assert!(
            outcome.contains("wrong password or unknown user")
                || outcome.contains("too many passwords"),
            "a wrong password is refused or the check is busy: {outcome}"
        );
    }
    assert!(
        *worst < Duration::from_millis(1500),
        "the good client was stalled: {latencies:?}"
    );
}

#[test]
fn api_tokens_authenticate_as_their_owner_until_revoked_or_expired() {
    let certs = Certs::new();
    let mut broker = secured_broker(&certs);
    let addr = broker.addr.clone();
    let ca_file = certs.path("ca.pem");
    let ca = ("WEIR_TLS_CA", certs.arg("ca.pem"));
    let admin = [
        ca.clone(),
        ("WEIR_USER", "admin".to_owned()),
        ("WEIR_PASSWORD", ADMIN_PASSWORD.to_owned()),
    ];
    weir_eventually(
        &addr,
        &admin,
        &["topic", "create", "orders", "--partitions", "1"],
    );
    for topic in ["pay.eu", "payroll-secret"] {
        weir_ok(&addr, &admin, &["topic", "create", topic], b"");
    }
    weir_ok(
        &addr,
        &admin,
        &["user", "create", "alice"],
        b"alice-secret\n",
    );
    weir_ok(
        &addr,
        &admin,
        &[
            "acl",
            "add",
            "--principal",
            "User:alice",
            "--operation",
            "write",
            "--topic",
            "orders",
        ],
        b"",
    );
    weir_ok(
        &addr,
        &admin,
        &[
            "acl",
            "add",
            "--principal",
            "User:alice",
            "--operation",
            "describe",
            "--topic",
            "pay.",
            "--prefixed",
        ],
        b"",
    );

    // Made once: the text on stdout, the id and owner on stderr.
    let out = weir(
        &addr,
        &admin,
        &[
            "token",
            "create",
            "alice",
            "--expires",
            "30d",
            "--description",
            "ci",
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let token = String::from_utf8(out.stdout.clone())
        .unwrap()
        .trim()
        .to_owned();
    assert!(token.starts_with("weir_") && token.len() == 86, "{token}");
    let id = token[5..21].to_owned();
    let secret = token[22..].to_owned();
    assert!(stderr(&out).contains(&id), "{}", stderr(&out));
    let as_alice = [ca.clone(), ("WEIR_TOKEN", token.clone())];

    // gRPC as alice: her ACL lets her produce; she may not read (no Read ACL).
    weir_ok(&addr, &as_alice, &["produce", "orders"], b"by-token\n");
    let read = weir(
        &addr,
        &as_alice,
        &["consume", "orders", "--from", "beginning", "--count", "1"],
        b"",
    );
    assert!(!read.status.success(), "alice has no Read");
    assert!(
        stderr(&read).to_lowercase().contains("permission") || stderr(&read).contains("denied"),
        "{}",
        stderr(&read)
    );
    let back = weir_ok(
        &addr,
        &admin,
        &["consume", "orders", "--from", "beginning", "--count", "1"],
        b"",
    );
    assert_eq!(back, "by-token\n");

    // A token may not make tokens; a listing never shows a secret.
    let out = weir(&addr, &as_alice, &["token", "create", "alice"], b"");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("may not make tokens"),
        "{}",
        stderr(&out)
    );
    let own = weir_ok(&addr, &as_alice, &["token", "list"], b"");
    assert!(own.contains(&id) && own.contains("ci"), "{own}");
    for listing in [
        own,
        weir_ok(&addr, &admin, &["token", "list"], b""),
        weir_ok(&addr, &admin, &["token", "list", "--format", "json"], b""),
    ] {
        assert!(
            !listing.contains(&secret),
            "a listing shows the secret: {listing}"
        );
    }

    // The console, as Kafka's Metadata would show each of them: the super user sees every
    // topic; alice (Write on orders, Describe on the prefix pay.) sees those, not the
    // others, and is refused a topic she may not describe.
    let admin_token = weir_ok(&addr, &admin, &["token", "create", "admin"], b"");
    let admin_token = admin_token.trim();
    let bearer = |t: &str| format!("Bearer {t}");
    let page = https_get(
        &broker.admin,
        "/console/topics",
        &ca_file,
        Some(&bearer(admin_token)),
    );
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    for topic in ["orders", "pay.eu", "payroll-secret"] {
        assert!(page.contains(topic), "the super user sees {topic}: {page}");
    }
    let page = https_get(
        &broker.admin,
        "/console/topics",
        &ca_file,
        Some(&bearer(&token)),
    );
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("orders") && page.contains("pay.eu"), "{page}");
    assert!(
        !page.contains("payroll-secret"),
        "alice sees payroll-secret: {page}"
    );
    let hidden = https_get(
        &broker.admin,
        "/console/topics/payroll-secret",
        &ca_file,
        Some(&bearer(&token)),
    );
    assert!(hidden.starts_with("HTTP/1.1 403"), "{hidden}");
    assert!(!hidden.contains("partitions"), "{hidden}");
    let overview = https_get(&broker.admin, "/console/", &ca_file, Some(&bearer(&token)));
    assert!(overview.starts_with("HTTP/1.1 200"), "{overview}");
    let anonymous = https_get(&broker.admin, "/console/topics", &ca_file, None);
    assert!(
        anonymous.starts_with("HTTP/1.1 401") && anonymous.contains("Bearer realm"),
        "{anonymous}"
    );

    // A wrong secret: refused on both, with an audit line naming the token.
    let wrong = format!("{}{}", &token[..22], "0".repeat(64));
    let out = weir(
        &addr,
        &[ca.clone(), ("WEIR_TOKEN", wrong.clone())],
        &["topic", "list"],
        b"",
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("is not accepted"), "{}", stderr(&out));
    let page = https_get(
        &broker.admin,
        "/console/topics",
        &ca_file,
        Some(&bearer(&wrong)),
    );
    assert!(page.starts_with("HTTP/1.1 401"), "{page}");
    let audit = broker.wait_for_line("wrong token secret");
    assert!(audit.contains("BEARER") && audit.contains(&id), "{audit}");
    assert!(!broker.log().contains(&secret), "the log shows the secret");

    // Revoked: refused from then on.
    let revoked = weir_ok(&addr, &admin, &["token", "revoke", &id], b"");
    assert!(revoked.contains("alice"), "{revoked}");
    let out = weir(&addr, &as_alice, &["produce", "orders"], b"late\n");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("is not accepted"), "{}", stderr(&out));
    broker.wait_for_line("never made, or revoked");

    // Expired: made to last 3 s (through the Rust client), refused after it.
    let rt = runtime();
    let short = rt.block_on(async {
        let admin = admin_as(&addr, &ca_file, "admin", ADMIN_PASSWORD)
            .await
            .expect("admin");
        admin
            .create_token("alice", Some(Duration::from_secs(3)), "short")
            .await
            .expect("a short token")
    });
    let as_short = [ca.clone(), ("WEIR_TOKEN", short.token.clone())];
    weir_ok(&addr, &as_short, &["produce", "orders"], b"in-time\n");
    let deadline = Instant::now() + DEADLINE;
    loop {
        let out = weir(&addr, &as_short, &["produce", "orders"], b"expired?\n");
        if !out.status.success() {
            assert!(stderr(&out).contains("is not accepted"), "{}", stderr(&out));
            break;
        }
        assert!(Instant::now() < deadline, "the token never expired");
        std::thread::sleep(Duration::from_millis(200));
    }
    broker.wait_for_line("expired token");

    // Deleting alice revokes her remaining tokens.
    let another = weir_ok(&addr, &admin, &["token", "create", "alice"], b"");
    weir_ok(&addr, &admin, &["user", "delete", "alice"], b"");
    let left = weir_ok(&addr, &admin, &["token", "list", "alice"], b"");
    assert!(!left.contains(&another[5..21]), "{left}");
    let out = weir(
        &addr,
        &[ca.clone(), ("WEIR_TOKEN", another.trim().to_owned())],
        &["topic", "list"],
        b"",
    );
    assert!(!out.status.success());

    // No secret in any file the broker wrote, as text or as bytes.
    let secret_bytes: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&secret[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let mut files = vec![broker.data_dir().to_path_buf()];
    let mut searched = 0;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        searched += 1;
        for needle in [secret.as_bytes(), &secret_bytes[..]] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "the secret is in {}",
                path.display()
            );
        }
    }
    assert!(searched > 0, "the data directory has files");
    // While the digest is there: the metadata log holds the token.
    drop(broker);
}
