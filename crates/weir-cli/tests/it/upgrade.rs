//! Upgrades (issue 42): a data directory written by an older `weir` opens in this build
//! with everything in it. `tests/fixtures/upgrade/FIXTURE` was made by
//! `tests/fixtures/upgrade/make.sh` with the binary of commit [`FIXTURE_COMMIT`] (before
//! brokers advertised their listeners as a map and before classic Kafka groups kept their
//! members in the group log): the log segments, indexes, checkpoints, the node stamp, the
//! metadata quorum's log and snapshot, and the internal topics of consumer and share
//! groups as that binary wrote them. Checked as a user would after the upgrade: every
//! record reads back in order, the groups resume from their commits, the share group
//! from what it accepted, the user and topic configs are there, and writing goes on at
//! the next offsets.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

/// The commit whose binary wrote the fixture.
const FIXTURE_COMMIT: &str = "57cdb67";
const FIXTURE: &str = "57cdb67.tar.gz";

/// Unpacks the fixture into `into`, returning its data directory.
fn unpack(into: &Path) -> PathBuf {
    let archive = repo_root().join("tests/fixtures/upgrade").join(FIXTURE);
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("-C")
        .arg(into)
        .status()
        .expect("tar runs");
    assert!(status.success(), "unpacking {}", archive.display());
    into.join("data")
}

/// `weir consume TOPIC ARGS --format json`, as JSON records.
fn consume(broker: &Broker, topic: &str, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["consume", topic, "--format", "json"];
    all.extend_from_slice(args);
    json_lines(&broker.ok(&all, ""))
}

fn value(record: &Value) -> String {
    record["value"].as_str().expect("a text value").to_owned()
}

#[test]
fn a_data_directory_written_by_an_older_weir_opens_with_everything_in_it() {
    let unpacked = tempfile::tempdir().expect("temp dir");
    let data = unpack(unpacked.path());
    let broker = Broker::start_with_kafka_in(weir_server::ServerConfig::default(), data);
    eprintln!("opened the data directory {FIXTURE_COMMIT}'s weir wrote");

    let topics = broker.ok(&["topic", "list"], "");
    for topic in ["orders", "segments", "profiles", "jobs"] {
        assert!(topics.contains(topic), "{topic} is listed: {topics}");
    }
    let described = broker.ok(&["topic", "describe", "orders"], "");
    assert!(
        described.contains("retention.ms") && described.contains("604800000"),
        "the topic config set before the upgrade: {described}"
    );

    // Keyed records: all 300, each key's in the order they were produced.
    let orders = consume(&broker, "orders", &["--count", "300"]);
    assert_eq!(orders.len(), 300);
    let mut by_key: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for r in &orders {
        let n: u32 = value(r)
            .strip_prefix("order-")
            .and_then(|n| n.parse().ok())
            .expect("order-N");
        by_key
            .entry(r["key"].as_str().expect("a key").to_owned())
            .or_default()
            .push(n);
    }
    assert_eq!(by_key.len(), 10);
    for (key, numbers) in &by_key {
        let expected: Vec<u32> = (0..300)
            .filter(|i| format!("k-{}", i % 10) == *key)
            .collect();
        assert_eq!(
            numbers, &expected,
            "key {key}: in order, none lost or doubled"
        );
    }

    // More than one segment: every record, in offset order.
    let segments = consume(&broker, "segments", &["--count", "2000"]);
    let expected: Vec<String> = (0..2000)
        .map(|i| format!("segment-record-{i:<85}"))
        .collect();
    assert_eq!(
        segments.iter().map(value).collect::<Vec<_>>(),
        expected,
        "the segmented log reads back whole"
    );
    for (i, r) in segments.iter().enumerate() {
        assert_eq!(r["offset"].as_i64(), Some(i as i64));
    }

    // The compacted topic: the last value of each key is there (compaction may have
    // removed older ones, never the newest).
    let profiles = consume(&broker, "profiles", &[]);
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    for r in &profiles {
        last.insert(r["key"].as_str().expect("key").to_owned(), value(r));
    }
    for k in 0..10 {
        assert_eq!(
            last.get(&format!("user-{k}")),
            Some(&format!("user-{k}-v3"))
        );
    }

    // Weir's consumer group resumes from its commit: the 150 records it had not read.
    let rest = consume(&broker, "orders", &["--group", "billing"]);
    let rest: BTreeSet<String> = rest.iter().map(value).collect();
    assert_eq!(
        rest.len(),
        150,
        "the group resumes after its 150 committed records"
    );

    // The Kafka classic group's commit (kafka-python, offset 40 on each partition).
    let group = broker.ok(
        &["group", "describe", "kafka-billing", "--format", "json"],
        "",
    );
    let group: Value = serde_json::from_str(&group).expect("JSON");
    let committed: Vec<i64> = group["offsets"]
        .as_array()
        .unwrap_or_else(|| panic!("offsets in {group}"))
        .iter()
        .filter_map(|p| p["committed_offset"].as_i64())
        .collect();
    assert_eq!(
        committed,
        vec![40, 40, 40],
        "kafka-billing's commits: {group}"
    );

    // The share group goes on after the 20 records it accepted.
    let jobs = broker.ok(
        &[
            "queue", "consume", "jobs", "--group", "workers", "--count", "30",
        ],
        "",
    );
    let jobs: Vec<&str> = jobs.lines().collect();
    let expected: Vec<String> = (20..50).map(|i| format!("job-{i}")).collect();
    assert_eq!(
        jobs, expected,
        "the share group's accepted records are not delivered again"
    );

    let users = broker.ok(&["user", "list"], "");
    assert!(
        users.contains("alice") && users.contains("SCRAM-SHA-256"),
        "the user made before the upgrade: {users}"
    );

    // Writing goes on where the old binary stopped.
    broker.ok(
        &["produce", "segments", "--acks", "all"],
        "after-the-upgrade\n",
    );
    let after = consume(&broker, "segments", &["--from", "2000", "--count", "1"]);
    assert_eq!(after.len(), 1);
    assert_eq!(after[0]["offset"].as_i64(), Some(2000));
    assert_eq!(value(&after[0]), "after-the-upgrade");
}
