//! TLS on every listener, as a user meets it: real `weir serve` processes started with
//! `--tls-cert`/`--tls-key`/`--tls-client-ca` from `weir dev certs`, and the `weir` CLI
//! (produce, consume, topic, healthcheck) with `--tls-ca`/`--tls-cert`/`--tls-key`.
//! Certificates are rotated under a running producer, three brokers replicate to each
//! other over TLS, and the admin HTTP listener answers https.

use crate::common;

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::secure::{Certs, DEADLINE, Serve, https_get, weir_fed};
use common::{finish, stderr, wait_output, weir_command};
use weir_security::dial::TlsDialer;
use weir_security::sasl::basic_auth_header;

/// `weir ARGS` against `brokers` with `env`, bounded in time.
///
/// The connect timeout is 30 s, not the default 3 s: these tests check what a TLS or
/// plaintext connection is told, and on a loaded CI machine a debug broker's handshake
/// (or its refusal of plaintext) once took longer than 3 s, which the CLI reports as a
/// silent broker instead.
fn weir(brokers: &str, env: &[(&str, String)], args: &[&str]) -> std::process::Output {
    let mut command = weir_command(args);
    command
        .env("WEIR_BROKERS", brokers)
        .env("WEIR_CONNECT_TIMEOUT", "30s");
    for (name, value) in env {
        command.env(name, value);
    }
    finish(command, args)
}

fn weir_ok(brokers: &str, env: &[(&str, String)], args: &[&str]) -> String {
    let out = weir(brokers, env, args);
    assert!(out.status.success(), "weir {args:?}: {}", stderr(&out));
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// Retries `weir ARGS` until it succeeds (a cluster still forming).
fn weir_eventually(brokers: &str, env: &[(&str, String)], args: &[&str]) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let out = weir(brokers, env, args);
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
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The certificate a new TLS connection to `addr` is shown, trusting `ca`.
fn served_certificate(addr: &str, ca: &Path) -> Vec<u8> {
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    let port: u16 = port.parse().expect("port");
    runtime().block_on(async {
        let dialer = TlsDialer::from_files(ca, None).expect("CA");
        let stream = dialer.connect(host, port).await.expect("TLS connection");
        stream
            .get_ref()
            .1
            .peer_certificates()
            .expect("a certificate")[0]
            .as_ref()
            .to_vec()
    })
}

#[test]
fn the_cli_produces_and_consumes_over_mutual_tls_and_plaintext_is_refused() {
    let certs = Certs::new();
    let mut broker = Serve::start(&certs.tls_args(), &[]);
    let env = certs.client_env();
    let addr = broker.addr.clone();

    let records: String = (0..200).map(|i| format!("record-{i}\n")).collect();
    let (out, _) = weir_fed(&addr, &env, &["produce", "orders"], records.as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));
    let read = weir_ok(
        &addr,
        &env,
        &["consume", "orders", "--from", "beginning", "--count", "200"],
    );
    assert_eq!(read, records, "every record back, in order");

    // The same with flags and an https:// address, and a health check.
    let flags = [
        "--tls-ca",
        &certs.arg("ca.pem"),
        "--brokers",
        &format!("https://localhost:{}", addr.rsplit_once(':').unwrap().1),
    ];
    let listed = weir_ok("", &[], &[&["topic", "list"][..], &flags].concat());
    assert!(listed.contains("orders"), "{listed}");
    let health = weir_ok(
        "",
        &[],
        &[
            "healthcheck",
            "--address",
            &addr,
            "--tls-ca",
            &certs.arg("ca.pem"),
        ],
    );
    assert_eq!(health.trim(), "SERVING");

    // Plaintext: refused, the user told what to give; the broker says so once.
    for _ in 0..2 {
        let out = weir(&addr, &[], &["topic", "list"]);
        assert!(!out.status.success());
        assert!(stderr(&out).contains("--tls-ca"), "{}", stderr(&out));
    }
    broker.wait_for_line("spoke plaintext to a TLS listener");
    assert_eq!(
        broker.lines("spoke plaintext").len(),
        1,
        "one line a minute:\n{}",
        broker.log()
    );

    // A client that trusts another CA does not connect, and is told why.
    let other = Certs::new();
    let out = weir(
        &addr,
        &[("WEIR_TLS_CA", other.arg("ca.pem"))],
        &["topic", "list"],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("certificate") && err.contains("--tls-ca"),
        "{err}"
    );

    // The admin HTTP listener: https only, /health and /metrics.
    let health = https_get(&broker.admin, "/health", &certs.path("ca.pem"), None);
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let metrics = https_get(&broker.admin, "/metrics", &certs.path("ca.pem"), None);
    assert!(metrics.contains("# TYPE"), "{metrics}");
}

#[test]
fn certificates_are_replaced_under_a_running_producer() {
    let certs = Certs::new();
    let mut broker = Serve::start(&certs.tls_args(), &[]);
    let env = certs.client_env();
    let before = served_certificate(&broker.addr, &certs.path("ca.pem"));

    // A producer that keeps producing, one record every 5 ms, over one connection.
    let mut produce = weir_command(&["produce", "rotation"]);
    produce
        .env("WEIR_BROKERS", &broker.addr)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in &env {
        produce.env(name, value);
    }
    let mut child = produce.spawn().expect("weir produce");
    let mut stdin = child.stdin.take().expect("stdin");
    let written = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (written, stop) = (written.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let record = format!("rotation-{i}");
                writeln!(stdin, "{record}").expect("the producer reads");
                stdin.flush().expect("flushed");
                written.lock().unwrap().push(record);
                i += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let wait_written = |count: usize| {
        let deadline = Instant::now() + DEADLINE;
        while written.lock().unwrap().len() < count {
            assert!(Instant::now() < deadline, "the writer stalled");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait_written(50);

    // A new node certificate from the same CA, with a name the old one lacked; each file
    // replaced whole (written aside, then renamed), then SIGHUP.
    let ca_key = std::fs::read_to_string(certs.path("ca-key.pem")).expect("CA key");
    let renewed = weir_security::certs::renew_node(&ca_key, &["renewed.weir.test".to_owned()])
        .expect("renewed certificate");
    for (file, pem) in [("node-key.pem", &renewed.key), ("node.pem", &renewed.cert)] {
        let aside = certs.path(&format!("{file}.new"));
        std::fs::write(&aside, pem).expect("written");
        std::fs::rename(&aside, certs.path(file)).expect("renamed");
    }
    // SAFETY: kill(2) on the broker process this test started.
    assert_eq!(unsafe { libc::kill(broker.pid(), libc::SIGHUP) }, 0);
    broker.wait_for_line("TLS certificate reloaded");
    let deadline = Instant::now() + DEADLINE;
    let new = weir_security::tls::read_certificates(&certs.path("node.pem")).expect("new cert");
    loop {
        let after = served_certificate(&broker.addr, &certs.path("ca.pem"));
        if after == new[0].as_ref() {
            assert_ne!(after, before);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the old certificate is still served"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // More records after the reload, then the producer finishes: nothing failed.
    let so_far = written.lock().unwrap().len();
    wait_written(so_far + 50);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().expect("writer");
    let out = wait_output(child, &["produce"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let written = written.lock().unwrap().clone();
    let read = weir_ok(
        &broker.addr,
        &env,
        &[
            "consume",
            "rotation",
            "--from",
            "beginning",
            "--count",
            &written.len().to_string(),
        ],
    );
    assert_eq!(read.lines().collect::<Vec<_>>(), written);
    assert!(
        broker.lines("reloading the TLS certificate failed").len() <= 1,
        "{}",
        broker.log()
    );
}

#[test]
fn three_brokers_replicate_to_each_other_over_tls() {
    let certs = Certs::new();
    // Fixed internal ports: the voter list names them before the brokers start.
    let ports: Vec<u16> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("port"))
        .collect::<Vec<_>>()
        .iter()
        .map(|l| l.local_addr().expect("address").port())
        .collect();
    let voters = ports
        .iter()
        .enumerate()
        .map(|(i, port)| format!("{}@127.0.0.1:{port}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let brokers: Vec<Serve> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let mut args = certs.tls_args();
            args.extend([
                "--node-id".to_owned(),
                (i + 1).to_string(),
                "--controller-voters".to_owned(),
                voters.clone(),
                "--internal-listen".to_owned(),
                format!("127.0.0.1:{port}"),
            ]);
            Serve::start(&args, &[])
        })
        .collect();
    let all = brokers
        .iter()
        .map(|b| b.addr.clone())
        .collect::<Vec<_>>()
        .join(",");
    let env = certs.client_env();
    weir_eventually(
        &all,
        &env,
        &[
            "topic",
            "create",
            "replicated",
            "--partitions",
            "3",
            "--replication-factor",
            "3",
        ],
    );
    let records: String = (0..300).map(|i| format!("r-{i}\n")).collect();
    let mut produce = weir_command(&["produce", "replicated", "--acks", "all"]);
    produce.env("WEIR_BROKERS", &all).stdin(Stdio::piped());
    for (name, value) in &env {
        produce.env(name, value);
    }
    let mut child = produce
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir produce");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(records.as_bytes())
        .expect("records written");
    let out = wait_output(child, &["produce"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let read = weir_ok(
        &all,
        &env,
        &[
            "consume",
            "replicated",
            "--from",
            "beginning",
            "--count",
            "300",
        ],
    );
    let mut read: Vec<&str> = read.lines().collect();
    read.sort_unstable();
    let mut expected: Vec<&str> = records.lines().collect();
    expected.sort_unstable();
    assert_eq!(read, expected);
    // Every replica is in sync: the followers fetch from the leaders over TLS.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let described = weir_ok(
            &all,
            &env,
            &["topic", "describe", "replicated", "--format", "json"],
        );
        let described: serde_json::Value = serde_json::from_str(&described).expect("JSON");
        let partitions = described["partitions"].as_array().expect("partitions");
        if partitions
            .iter()
            .all(|p| p["isr"].as_array().map(Vec::len) == Some(3))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replicas out of sync: {described}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for broker in &brokers {
        assert!(
            broker.lines("spoke plaintext").is_empty(),
            "a plaintext peer:\n{}",
            broker.log()
        );
    }
}

#[test]
fn grpc_calls_authenticate_with_a_user_and_password_over_tls() {
    let certs = Certs::new();
    let mut broker = Serve::start(
        &certs.secured_args(),
        &[
            ("WEIR_ADMIN_USER", "admin"),
            ("WEIR_ADMIN_PASSWORD", "admin-secret"),
        ],
    );
    let addr = broker.addr.clone();
    let ca = ("WEIR_TLS_CA", certs.arg("ca.pem"));
    let admin = [
        ca.clone(),
        ("WEIR_USER", "admin".to_owned()),
        ("WEIR_PASSWORD", "admin-secret".to_owned()),
    ];

    // The bootstrap admin may do anything (its credentials are written as it starts).
    weir_eventually(
        &addr,
        &admin,
        &["topic", "create", "orders", "--partitions", "1"],
    );
    let records: String = (0..20).map(|i| format!("order-{i}\n")).collect();
    let (out, _) = weir_fed(&addr, &admin, &["produce", "orders"], records.as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));
    let read = weir_ok(
        &addr,
        &admin,
        &["consume", "orders", "--from", "beginning", "--count", "20"],
    );
    assert_eq!(read, records, "every record back, in order");

    // No credentials: refused, and told what to give.
    let out = weir(&addr, std::slice::from_ref(&ca), &["topic", "list"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("requires authentication"),
        "{}",
        stderr(&out)
    );

    // A wrong password and an unknown user: refused alike, with an audit line each.
    for (user, password) in [("admin", "wrong"), ("mallory", "admin-secret")] {
        let env = [
            ca.clone(),
            ("WEIR_USER", user.to_owned()),
            ("WEIR_PASSWORD", password.to_owned()),
        ];
        let out = weir(&addr, &env, &["topic", "list"]);
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("wrong password or unknown user"),
            "{}",
            stderr(&out)
        );
    }
    broker.wait_for_line("authentication failed");
    assert!(
        broker
            .lines("authentication failed")
            .iter()
            .any(|l| l.contains("mallory"))
    );

    // The console wants an operator's password; /health stays open for probes.
    let ca_file = certs.path("ca.pem");
    let open = https_get(&broker.admin, "/health", &ca_file, None);
    assert!(open.starts_with("HTTP/1.1 200"), "{open}");
    let anonymous = https_get(&broker.admin, "/console", &ca_file, None);
    assert!(anonymous.starts_with("HTTP/1.1 401"), "{anonymous}");
    assert!(anonymous.contains("www-authenticate: Basic"), "{anonymous}");
    let wrong = https_get(
        &broker.admin,
        "/console",
        &ca_file,
        Some(&basic_auth_header("admin", "nope")),
    );
    assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
    let operator = https_get(
        &broker.admin,
        "/console/topics",
        &ca_file,
        Some(&basic_auth_header("admin", "admin-secret")),
    );
    assert!(operator.starts_with("HTTP/1.1 200"), "{operator}");
    assert!(operator.contains("orders"), "the console lists the topic");

    // A password is never sent in clear: --user without TLS is a usage error.
    let out = weir(
        &addr,
        &[
            ("WEIR_USER", "admin".to_owned()),
            ("WEIR_PASSWORD", "x".to_owned()),
        ],
        &["topic", "list"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("never sent in clear"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_quota_holds_a_greedy_producer_to_its_rate_and_others_are_not_slowed() {
    const QUOTA: usize = 100_000;
    const RECORD: usize = 1_000;
    // 6 s worth of the quota, measured over windows of 100 ms (at least 1 s): the first
    // second's worth passes at once, the rest is held to the quota, about 5 s.
    const RECORDS: usize = 600;
    let certs = Certs::new();
    let mut args = certs.tls_args();
    args.extend(["--authentication", "required", "--quota-window-ms", "100"].map(String::from));
    let broker = Serve::start(
        &args,
        &[
            ("WEIR_ADMIN_USER", "admin"),
            ("WEIR_ADMIN_PASSWORD", "admin-secret"),
        ],
    );
    let addr = broker.addr.clone();
    let as_user = |user: &str, password: &str| {
        vec![
            ("WEIR_TLS_CA", certs.arg("ca.pem")),
            ("WEIR_USER", user.to_owned()),
            ("WEIR_PASSWORD", password.to_owned()),
        ]
    };
    let admin = as_user("admin", "admin-secret");
    weir_eventually(
        &addr,
        &admin,
        &["topic", "create", "quota", "--partitions", "1"],
    );
    for user in ["greedy", "calm"] {
        let (out, _) = weir_fed(&addr, &admin, &["user", "create", user], b"secret-1\n");
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let set = weir_ok(
        &addr,
        &admin,
        &[
            "quota",
            "set",
            "--principal",
            "User:greedy",
            "--producer-byte-rate",
            &QUOTA.to_string(),
        ],
    );
    assert!(
        set.contains("user=greedy: producer_byte_rate = 100000"),
        "{set}"
    );
    let listed = weir_ok(&addr, &admin, &["quota", "list"]);
    assert!(
        listed.contains("user=greedy  producer_byte_rate=100000"),
        "{listed}"
    );

    let greedy = std::thread::spawn({
        let (addr, env) = (addr.clone(), as_user("greedy", "secret-1"));
        move || {
            let line = format!("{}\n", "g".repeat(RECORD - 1));
            weir_fed(
                &addr,
                &env,
                &["produce", "quota"],
                line.repeat(RECORDS).as_bytes(),
            )
        }
    });
    // Another user's producer meanwhile: not held back.
    std::thread::sleep(Duration::from_secs(1));
    let (calm, calm_took) = weir_fed(
        &addr,
        &as_user("calm", "secret-1"),
        &["produce", "quota"],
        b"calm\n",
    );
    assert!(calm.status.success(), "{}", stderr(&calm));
    let (greedy, greedy_took) = greedy.join().expect("greedy producer");
    assert!(greedy.status.success(), "{}", stderr(&greedy));
    let rate = (RECORDS * RECORD) as f64 / greedy_took.as_secs_f64();
    eprintln!(
        "greedy: {RECORDS} records of {RECORD} B in {:.1} s ({rate:.0} B/s against a quota of {QUOTA} B/s); \
         calm: one record in {:.2} s",
        greedy_took.as_secs_f64(),
        calm_took.as_secs_f64()
    );
    assert!(
        greedy_took >= Duration::from_millis(3500),
        "the greedy producer took {greedy_took:?}: not held to its quota"
    );
    assert!(rate < 1.5 * QUOTA as f64, "{rate:.0} B/s");
    assert!(
        calm_took < Duration::from_secs(3),
        "the other user's producer took {calm_took:?}"
    );
    // Every record is there, once.
    let read = weir_ok(
        &addr,
        &admin,
        &[
            "consume",
            "quota",
            "--from",
            "beginning",
            "--count",
            &(RECORDS + 1).to_string(),
        ],
    );
    assert_eq!(read.lines().count(), RECORDS + 1);
    assert_eq!(read.lines().filter(|l| *l == "calm").count(), 1);
    let metrics = https_get(&broker.admin, "/metrics", &certs.path("ca.pem"), None);
    let throttled = metrics
        .lines()
        .find(|l| {
            l.starts_with(
                "weir_quota_throttled_requests_total{entity=\"user=greedy\",kind=\"produce\"}",
            )
        })
        .unwrap_or_else(|| panic!("no throttle series in:\n{metrics}"));
    let count: f64 = throttled.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count > 0.0, "{throttled}");
}

/// The AMQP listener over TLS (`--amqps-listen`, RabbitMQ's amqps): pika verifying the
/// broker's certificate and presenting its own publishes and gets a message; a plaintext
/// client on the same port gets no connection. Without `--tls-cert` the flag is refused.
#[test]
fn pika_publishes_and_gets_over_amqps_and_plaintext_is_refused() {
    let certs = Certs::new();
    let mut args = certs.tls_args();
    args.extend(["--amqps-listen".to_owned(), "127.0.0.1:0".to_owned()]);
    let mut broker = Serve::start(&args, &[]);
    let listening = broker.wait_for_line("broker listening");
    let port = common::secure::between(&listening, "amqps=Some(127.0.0.1:", ")");
    let python = common::installed("tests/python/setup.sh");
    let script = common::repo_root().join("tests/amqp/tls.py");
    let out = common::run_ok(
        &python,
        &[
            &script.to_string_lossy(),
            &port,
            &certs.arg("ca.pem"),
            &certs.arg("client.pem"),
            &certs.arg("client-key.pem"),
        ],
    );
    let result = &common::json_lines(&out)[0];
    assert_eq!(result["got"], "over tls", "{result}");
    assert_ne!(result["plaintext"], "connected", "{result}");

    let refused = weir_command(&[
        "serve",
        "--amqps-listen",
        "127.0.0.1:0",
        "--data-dir",
        &broker.data_dir().join("other").to_string_lossy(),
    ])
    .output()
    .expect("weir serve runs");
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("--tls-cert"),
        "{}",
        stderr(&refused)
    );
}
