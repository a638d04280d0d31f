//! `weir consume --group` without `--follow` (a drain) after a member crashed: the crashed
//! member holds its partitions until the broker ends its session, and the drain must not
//! succeed having read nothing.

use crate::common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Instant;

use common::{Broker, COMMAND_TIMEOUT, KillOnDrop, json_lines, stderr};
use serde_json::Value;

/// Each record as `(partition, offset)`.
fn positions(records: &[Value]) -> Vec<(u64, i64)> {
    records
        .iter()
        .map(|r| {
            (
                r["partition"].as_u64().expect("partition"),
                r["offset"].as_i64().expect("offset"),
            )
        })
        .collect()
}

/// `count` keyed lines from `from` on (spread over the partitions).
fn keyed(from: usize, count: usize) -> String {
    (from..from + count)
        .map(|i| format!("key-{i}:value-{i}\n"))
        .collect()
}

/// A member killed without leaving holds its partitions until its session ends: a drain
/// (`--group` without `--follow`) must not succeed having read nothing. With `--wait 0s` it
/// fails naming the partitions and their lag; with the default wait it gets them once
/// the broker removes the member, and reads them.
#[test]
fn a_drain_after_a_member_crashed_reads_its_partitions_or_fails_naming_them() {
    // Session 15 s: the heartbeat interval is 3 s, so the crashed member is recognised
    // as silent after 7 s and removed after 15 s.
    let broker = Broker::start(weir_server::ServerConfig {
        kafka_listen: None,
        admin_listen: None,
        group_session_timeout_ms: 15_000,
        ..Default::default()
    });
    broker.ok(&["topic", "create", "jobs", "--partitions", "2"], "");
    broker.ok(&["produce", "jobs", "--key-separator", ":"], &keyed(0, 40));

    // A follower reads everything, then is killed (SIGKILL: no commit, no leave).
    let mut follower = KillOnDrop(
        broker
            .command(&[
                "consume", "jobs", "--group", "g", "--follow", "--format", "json",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("weir consume starts"),
    );
    let stdout = follower.0.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.expect("a line")).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let mut first = Vec::new();
    while first.len() < 40 {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("the follower printed {} of 40", first.len()));
        first.push(serde_json::from_str::<Value>(&line).expect("JSON"));
    }
    follower.0.kill().expect("SIGKILL");
    follower.0.wait().expect("reaped");
    broker.ok(&["produce", "jobs", "--key-separator", ":"], &keyed(40, 60));

    // --wait 0s: once the member is known not to answer, fail naming what it holds.
    let output = broker.run(&["consume", "jobs", "--group", "g", "--wait", "0s"]);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(output.stdout.is_empty(), "nothing could be read");
    assert!(
        text.contains("held by members that do not answer")
            && text.contains("jobs/")
            && text.contains("(lag ")
            && text.contains("weir-cli at")
            && text.contains("--wait"),
        "{text}"
    );

    // The default --wait outlasts the session: the partitions come, and are read.
    let output = broker.run(&["consume", "jobs", "--group", "g", "--format", "json"]);
    let text = stderr(&output);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("waiting up to"), "{text}");
    let second = json_lines(&String::from_utf8_lossy(&output.stdout));
    let read: BTreeSet<(u64, i64)> = positions(&first)
        .into_iter()
        .chain(positions(&second))
        .collect();
    assert_eq!(read.len(), 100, "every record read by one run or the other");
    assert!(second.len() >= 60, "at least the records after the crash");
    let described = json_lines(&broker.ok(&["group", "describe", "g", "--format", "json"], ""));
    let lag: i64 = described[0]["offsets"]
        .as_array()
        .expect("offsets")
        .iter()
        .map(|o| o["lag"].as_i64().expect("lag"))
        .sum();
    assert_eq!(lag, 0, "{}", described[0]);
}
