//! `weir dev cluster` as a user runs it: three real `weir serve` processes, a replicated
//! topic created, records produced and read back through the CLI, one broker killed
//! with SIGKILL, more records produced, everything read back, then Ctrl-C (SIGTERM)
//! stops the rest and the command exits 0.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(60);

/// A base port with the ports of three brokers (and their metrics ports) free now.
fn free_base_port() -> u16 {
    let pid = std::process::id() as u16;
    for attempt in 0..200u16 {
        let base = 20_000 + (pid.wrapping_add(attempt.wrapping_mul(7919)) % 20_000);
        let free = (0..3u16).all(|n| {
            let port = base + n * 100;
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
                && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok()
        });
        if free {
            return base;
        }
    }
    panic!("no free ports for three brokers");
}

fn weir(args: &[&str], brokers: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .env("WEIR_BROKERS", brokers)
        .env_remove("RUST_LOG")
        .output()
        .expect("weir runs")
}

fn ok(args: &[&str], brokers: &str) -> String {
    let out = weir(args, brokers);
    assert!(
        out.status.success(),
        "weir {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Retries `args` until it succeeds (a cluster settling: elections, ISR changes).
fn eventually_ok(args: &[&str], brokers: &str) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let out = weir(args, brokers);
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
    let base = free_base_port().to_string();
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
