//! `weir dev cluster` as a user runs it: three real `weir serve` processes, a replicated
//! topic created, records produced and read back through the CLI, one broker killed
//! with SIGKILL, more records produced, everything read back, then Ctrl-C (SIGTERM)
//! stops the rest and the command exits 0. And `weir dev cluster --secure`: with the
//! settings it prints, the CLI produces and consumes as the admin over TLS, and a CLI
//! without credentials is refused. And a consumer group's configs answered by each of the
//! three brokers through a Kafka admin client, and pika reaching every queue through
//! any of the three (publishes carried to the queue's leader).

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(60);

/// The lowest base port handed out.
const FIRST_BASE: u16 = 20_000;
/// How many base ports above it: the highest port used, base + 202, stays below the
/// kernel's ephemeral range (32768 and up by default), where the outgoing connections of
/// the tests beside these in this binary take their ports.
const BASE_SPAN: u16 = 12_000;

/// A base port with the ports of three brokers (client, metrics, Kafka, AMQP) free now. `salt`
/// keeps the tests of this file, which run at once, apart.
fn free_base_port(salt: u16) -> u16 {
    let pid = (std::process::id() as u16).wrapping_add(salt.wrapping_mul(4999));
    for attempt in 0..200u16 {
        let base = FIRST_BASE + (pid.wrapping_add(attempt.wrapping_mul(7919)) % BASE_SPAN);
        let free = (0..3u16).all(|n| {
            let port = base + n * 100;
            (0..4).all(|k| std::net::TcpListener::bind(("127.0.0.1", port + k)).is_ok())
        });
        if free {
            return base;
        }
    }
    panic!("no free ports for three brokers");
}

/// `weir ARGS` with exactly `env` of the client settings (none inherited).
fn weir_with(args: &[&str], env: &[(String, String)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
    for name in ["WEIR_BROKERS", "WEIR_TLS_CA", "WEIR_USER", "WEIR_PASSWORD"] {
        command.env_remove(name);
    }
    command
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env_remove("RUST_LOG")
        .output()
        .expect("weir runs")
}

fn ok(args: &[&str], brokers: &str) -> String {
    ok_with(args, &[("WEIR_BROKERS".to_owned(), brokers.to_owned())])
}

fn ok_with(args: &[&str], env: &[(String, String)]) -> String {
    let out = weir_with(args, env);
    assert!(
        out.status.success(),
        "weir {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Retries `args` until it succeeds (a cluster settling: elections, ISR changes).
fn eventually_ok(args: &[&str], brokers: &str) -> String {
    eventually_ok_with(args, &[("WEIR_BROKERS".to_owned(), brokers.to_owned())])
}

fn eventually_ok_with(args: &[&str], env: &[(String, String)]) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let out = weir_with(args, env);
        if out.status.success() {
            return String::from_utf8(out.stdout).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "weir {args:?} kept failing: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_dev_cluster_keeps_every_record_when_a_broker_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_base_port(0).to_string();
    let mut cluster = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["dev", "cluster", "--nodes", "3", "--base-port", &base])
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir dev cluster starts");
    let mut stdout = BufReader::new(cluster.stdout.take().unwrap());
    let mut brokers = String::new();
    stdout.read_line(&mut brokers).unwrap();
    let brokers = brokers.trim().to_string();
    assert_eq!(brokers.split(',').count(), 3, "{brokers}");
    // The pids, from what it printed on stderr.
    let mut stderr = BufReader::new(cluster.stderr.take().unwrap());
    let mut pids = Vec::new();
    for _ in 0..3 {
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        let pid: i32 = line
            .split("pid ")
            .nth(1)
            .and_then(|r| r.split(',').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("a pid in {line:?}"));
        pids.push(pid);
    }

    eventually_ok(
        &[
            "topic",
            "create",
            "orders",
            "--partitions",
            "1",
            "--replication-factor",
            "3",
            "--config",
            "min.insync.replicas=2",
        ],
        &brokers,
    );
    let values: Vec<String> = (0..200).map(|i| format!("v{i}")).collect();
    let file = dir.path().join("first.txt");
    std::fs::write(&file, values[..100].join("\n") + "\n").unwrap();
    eventually_ok(
        &["produce", "orders", "--file", file.to_str().unwrap()],
        &brokers,
    );

    // Kill the partition's leader.
    let describe = ok(
        &["topic", "describe", "orders", "--format", "json"],
        &brokers,
    );
    let json: serde_json::Value = serde_json::from_str(&describe).unwrap();
    let leader = json["partitions"][0]["leader"].as_i64().expect("a leader") as usize;
    // SAFETY: kill(2) on a process this test's child started.
    unsafe {
        libc::kill(pids[leader - 1], libc::SIGKILL);
    }
    let file = dir.path().join("second.txt");
    std::fs::write(&file, values[100..].join("\n") + "\n").unwrap();
    ok(
        &["produce", "orders", "--file", file.to_str().unwrap()],
        &brokers,
    );
    let read = ok(
        &["consume", "orders", "--from", "beginning", "--count", "200"],
        &brokers,
    );
    let read: Vec<&str> = read.lines().collect();
    assert_eq!(read, values.iter().map(String::as_str).collect::<Vec<_>>());

    stop(&mut cluster);
}

/// SIGTERM to `weir dev cluster`; it must stop its brokers and exit 0.
fn stop(cluster: &mut std::process::Child) {
    // SAFETY: kill(2) on the child this test started.
    unsafe {
        libc::kill(cluster.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = cluster.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "weir dev cluster did not stop");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");
}

#[test]
fn a_secure_dev_cluster_serves_its_admin_over_tls_and_refuses_anonymous_clients() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_base_port(1).to_string();
    let mut cluster = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "dev",
            "cluster",
            "--secure",
            "--nodes",
            "3",
            "--base-port",
            &base,
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("WEIR_ADMIN_PASSWORD")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("weir dev cluster --secure starts");
    // What it prints on stdout: the brokers, then the lines to export.
    let mut stdout = BufReader::new(cluster.stdout.take().unwrap());
    let mut brokers = String::new();
    stdout.read_line(&mut brokers).unwrap();
    let mut env: Vec<(String, String)> = Vec::new();
    for _ in 0..4 {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let (name, value) = line
            .trim()
            .strip_prefix("export ")
            .and_then(|l| l.split_once('='))
            .unwrap_or_else(|| panic!("an export line, not {line:?}"));
        env.push((name.to_owned(), value.trim_matches('\'').to_owned()));
    }
    let setting = |name: &str| {
        env.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{name} in {env:?}"))
    };
    assert_eq!(setting("WEIR_BROKERS"), brokers.trim());
    assert_eq!(setting("WEIR_USER"), "admin");
    assert!(setting("WEIR_PASSWORD").len() >= 16, "a random password");
    let ca = setting("WEIR_TLS_CA");
    assert!(
        std::path::Path::new(&ca).starts_with(std::fs::canonicalize(dir.path()).unwrap())
            || std::path::Path::new(&ca).starts_with(dir.path()),
        "{ca} is in the cluster's directory"
    );

    eventually_ok_with(
        &[
            "topic",
            "create",
            "orders",
            "--partitions",
            "1",
            "--replication-factor",
            "3",
        ],
        &env,
    );
    let values: Vec<String> = (0..100).map(|i| format!("order-{i}")).collect();
    let file = dir.path().join("orders.txt");
    std::fs::write(&file, values.join("\n") + "\n").unwrap();
    eventually_ok_with(
        &["produce", "orders", "--file", file.to_str().unwrap()],
        &env,
    );
    let read = ok_with(
        &["consume", "orders", "--from", "beginning", "--count", "100"],
        &env,
    );
    assert_eq!(
        read.lines().collect::<Vec<_>>(),
        values.iter().map(String::as_str).collect::<Vec<_>>(),
        "every record back, in order"
    );

    // The CA but no user: refused by the brokers.
    let anonymous = [
        ("WEIR_BROKERS".to_owned(), setting("WEIR_BROKERS")),
        ("WEIR_TLS_CA".to_owned(), ca.clone()),
    ];
    let out = weir_with(&["topic", "list"], &anonymous);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an anonymous client was served");
    assert!(stderr.contains("requires authentication"), "{stderr}");
    // A wrong password: refused too.
    let mut wrong = env.clone();
    wrong.retain(|(n, _)| n != "WEIR_PASSWORD");
    wrong.push(("WEIR_PASSWORD".to_owned(), "not-the-password".to_owned()));
    let out = weir_with(&["topic", "list"], &wrong);
    assert!(!out.status.success(), "a wrong password was accepted");
    // No TLS at all: the brokers do not speak plaintext.
    let plaintext = [("WEIR_BROKERS".to_owned(), setting("WEIR_BROKERS"))];
    let out = weir_with(&["topic", "list"], &plaintext);
    assert!(!out.status.success(), "a plaintext client was served");

    stop(&mut cluster);
}

/// `weir dev cluster --nodes 3` in `dir` on a free base port (`salt` as
/// [`free_base_port`]), its log discarded: the process, the base port and the brokers'
/// client addresses it printed.
fn quiet_dev_cluster(dir: &std::path::Path, salt: u16) -> (std::process::Child, u16, String) {
    let base = free_base_port(salt);
    let mut cluster = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "dev",
            "cluster",
            "--nodes",
            "3",
            "--base-port",
            &base.to_string(),
        ])
        .arg("--data-dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("weir dev cluster starts");
    let mut stdout = BufReader::new(cluster.stdout.take().unwrap());
    let mut brokers = String::new();
    stdout.read_line(&mut brokers).unwrap();
    (cluster, base, brokers.trim().to_string())
}

/// The one JSON line a script that succeeded printed (its output in the failure).
fn one_json_line(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).expect("one JSON line")
}

/// pika through every broker of a three-broker cluster: queues declared through one,
/// published to with confirms through each (most publishes reach a broker that does not
/// lead the queue, which carries them to the leader), read back through another. Every
/// publish is confirmed and read back once, each publisher's in its order, and every
/// broker's console counts every queue (none left).
#[test]
fn amqp_clients_reach_every_queue_through_any_broker_of_a_cluster() {
    let python = crate::common::installed("tests/python/setup.sh");
    let dir = tempfile::tempdir().unwrap();
    let (mut cluster, base, brokers) = quiet_dev_cluster(dir.path(), 3);
    // Once every broker is up: a topic on all three can be made.
    eventually_ok(
        &["topic", "create", "warm-up", "--replication-factor", "3"],
        &brokers,
    );
    // Each broker's AMQP listener: its client port + 3 (`weir dev cluster` prints them).
    let amqp: Vec<String> = (0..3u16)
        .map(|n| (base + n * 100 + 3).to_string())
        .collect();
    let script = crate::common::repo_root().join("tests/amqp/cluster_queues.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(amqp.join(","))
        .arg("20")
        .output()
        .expect("python runs");
    // Every broker's console counts every queue, whichever broker holds its share state
    // (asked over the internal listener): all read, none left; a count it could not get
    // would be a dash.
    let counts: Vec<(u16, Vec<String>)> = (0..3u16)
        .flat_map(|n| {
            let admin = format!("127.0.0.1:{}", base + n * 100 + 1);
            let page = crate::common::admin_get(&admin, "/console/queues");
            (0..3).map(move |q| {
                (
                    n,
                    crate::amqp_more::row_cells(&page, &format!("/console/queues/cluster-q{q}")),
                )
            })
        })
        .collect();
    stop(&mut cluster);
    for (n, cells) in &counts {
        assert_eq!(
            &cells[2..5],
            ["0", "0", "0"],
            "broker {n}'s console: {cells:?}"
        );
    }
    let seen = one_json_line(&out);
    for q in 0..3 {
        let queue = &seen[format!("cluster-q{q}")];
        assert_eq!(queue["nacked"], serde_json::json!([]), "{seen}");
        let read: Vec<&str> = queue["read"]
            .as_array()
            .expect("read")
            .iter()
            .map(|v| v.as_str().expect("a body"))
            .collect();
        // All 60, once each; each publisher's 20 in the order it published them.
        assert_eq!(read.len(), 60, "cluster-q{q}: {read:?}");
        for b in 0..3 {
            let mine: Vec<&str> = read
                .iter()
                .copied()
                .filter(|body| body.starts_with(&format!("b{b}-")))
                .collect();
            let expected: Vec<String> = (0..20).map(|i| format!("b{b}-{i}")).collect();
            assert_eq!(mine, expected, "cluster-q{q}, publisher {b}");
        }
    }
}

/// A consumer group's configs (KIP-848) at every broker of `weir dev cluster --nodes 3`,
/// through kafka-python's admin client sending each request to a chosen broker
/// (`tests/kafka/group_configs_cluster.py`): set at a broker that does not coordinate the
/// group, described alike at each of the three (no NOT_COORDINATOR: they are cluster
/// metadata), a value out of bounds refused there with INVALID_CONFIG, and a
/// `group.protocol=consumer` consumer of the group told the interval set.
#[test]
fn group_configs_are_answered_by_every_broker_of_a_dev_cluster() {
    let python = crate::common::installed("tests/python/setup.sh");
    let dir = tempfile::tempdir().unwrap();
    let (mut cluster, base, brokers) = quiet_dev_cluster(dir.path(), 2);
    // Each broker's Kafka listener: its client port + 2 (`weir dev cluster` prints them).
    let kafka: Vec<String> = (0..3u16)
        .map(|n| format!("127.0.0.1:{}", base + n * 100 + 2))
        .collect();
    let script = crate::common::repo_root().join("tests/kafka/group_configs_cluster.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(kafka.join(","))
        .arg("cluster-cfg")
        .env("WEIR_BIN", env!("CARGO_BIN_EXE_weir"))
        .env("WEIR_BROKERS", &brokers)
        .output()
        .expect("python runs");
    stop(&mut cluster);
    let seen = one_json_line(&out);
    use serde_json::json;
    assert_eq!(seen["nodes"], json!([1, 2, 3]), "{seen}");
    assert_ne!(seen["set_at"], seen["coordinator"], "{seen}");
    assert_eq!(seen["set"][0], 0, "{seen}");
    for node in ["1", "2", "3"] {
        assert_eq!(
            seen["before"][node],
            json!({
                "consumer.heartbeat.interval.ms": ["3000", "DEFAULT_CONFIG"],
                "consumer.session.timeout.ms": ["45000", "DEFAULT_CONFIG"],
            }),
            "broker {node}: {seen}"
        );
        assert_eq!(
            seen["after"][node],
            json!({
                "error": 0,
                "configs": {
                    "consumer.heartbeat.interval.ms": ["1000", "DYNAMIC_GROUP_CONFIG"],
                    "consumer.session.timeout.ms": ["50000", "DYNAMIC_GROUP_CONFIG"],
                },
            }),
            "broker {node}: {seen}"
        );
    }
    // INVALID_CONFIG naming the bound.
    assert_eq!(seen["refused"][0], 40, "{seen}");
    assert!(
        seen["refused"][1]
            .as_str()
            .unwrap_or_default()
            .contains("group.consumer.max.session.timeout.ms"),
        "{seen}"
    );
    assert_eq!(seen["told"], json!([1000, 50000]), "{seen}");
}
