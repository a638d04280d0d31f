//! Answers Weir's Kafka listener gave where Kafka gives another (issue 41), checked
//! through the Kafka clients that met them (`tests/kafka/kafka_answers.py`, one check per
//! test, with the pinned clients of `tests/python/setup.sh`).

use crate::common;

use std::path::PathBuf;

use common::*;
use serde_json::Value;

fn python() -> PathBuf {
    installed("tests/python/setup.sh")
}

/// Runs one check of `kafka_answers.py` against a fresh broker; its one JSON line.
fn check(name: &str, topic: &str) -> Value {
    let python = python();
    let broker = Broker::start_with_kafka(weir_server::ServerConfig {
        admin_listen: None,
        ..Default::default()
    });
    let kafka = broker.kafka.clone().expect("a Kafka listener");
    let script = repo_root().join("tests/kafka/kafka_answers.py");
    let out = run_ok(&python, &[&script.to_string_lossy(), name, &kafka, topic]);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1, "{out}");
    lines.into_iter().next().expect("one line")
}

/// ~1 MB records over four partitions, read by librdkafka with a 1 MiB fetch and the
/// least `receive.message.max.bytes` it allows: every answer fits, every record comes back
/// in order (a 1.8 MB answer made librdkafka drop the connection and stall).
#[test]
fn fetch_answers_stay_within_max_bytes_for_librdkafka() {
    let seen = check("fetch-max-bytes", "big-records");
    assert_eq!(seen["read"], 24, "{seen}");
    assert_eq!(
        seen["per_partition"],
        serde_json::json!([6, 6, 6, 6]),
        "{seen}"
    );
}

/// ListOffsets by timestamp finds no record on an empty partition or past the newest one
/// (-1, as Kafka), and max-timestamp answers the first record holding the newest one.
#[test]
fn list_offsets_by_time_and_max_timestamp_answer_as_kafka_does() {
    let seen = check("list-offsets", "stamps");
    assert_eq!(seen["by_time"], serde_json::json!([-1, 0, 1, -1]), "{seen}");
    assert_eq!(seen["max_timestamp"][0], 1, "{seen}");
    assert_eq!(
        seen["max_timestamp_empty"],
        serde_json::json!([-1, -1]),
        "{seen}"
    );
}

/// Group ids are any non-empty string, as in Kafka: librdkafka's own test suite names a
/// group `roundrobin,range`; each group reads, commits and resumes.
#[test]
fn consumer_groups_with_any_characters_in_their_ids() {
    let seen = check("group-ids", "any-group");
    assert_eq!(seen["read"]["roundrobin,range"], 20, "{seen}");
    assert_eq!(seen["read"]["a/b ü 日本"], 20, "{seen}");
}

/// Every topic config Kafka 4 defines is accepted (librdkafka's suite sets
/// `compression.type`, `flush.ms`, `max.compaction.lag.ms`) and described back, the rest
/// with Kafka's defaults; a value Kafka refuses is INVALID_CONFIG naming the key.
#[test]
fn kafka_topic_configs_are_accepted_described_and_checked() {
    let seen = check("topic-configs", "configured");
    for key in [
        "compression.type",
        "min.cleanable.dirty.ratio",
        "remote.storage.enable",
    ] {
        assert_eq!(seen["refused"][key], "INVALID_CONFIG", "{seen}");
    }
    assert_eq!(
        seen["keys"], 35,
        "Kafka 4.0's 33 topic keys, flush.policy and write.direct: {seen}"
    );
}

/// A `write.direct` topic read through the Kafka listener by librdkafka as users read: a
/// consumer tailing the producer (served from each segment's window in memory) and one
/// from the start afterwards (from the disk past the page cache, across segment rolls)
/// each get every record, in order, with its value, none doubled.
#[test]
fn a_direct_written_topic_reads_back_whole_tailing_and_from_the_start() {
    let seen = check("direct-reads", "direct-reads");
    assert_eq!(
        (seen["tailed"].clone(), seen["from_start"].clone()),
        (12_000.into(), 12_000.into()),
        "{seen}"
    );
}

/// A compacted topic (created so, or altered with IncrementalAlterConfigs APPEND) refuses
/// records without keys with INVALID_RECORD, appending nothing of their batch.
#[test]
fn compacted_topics_refuse_records_without_keys() {
    let seen = check("compact-keys", "compacted");
    assert_eq!(seen["errors"][1], "INVALID_RECORD", "{seen}");
}

/// A request's effects are seen by the next request of its connection, as in Kafka: a
/// consumer's committed() right after each asynchronous commit returns that commit.
#[test]
fn committed_right_after_an_asynchronous_commit_sees_it() {
    let seen = check("commit-order", "commit-order");
    assert_eq!(seen["commits"], 200, "{seen}");
}

/// CreateTopics and CreatePartitions with manual replica assignments (librdkafka's test
/// 0081, kafka-python's `NewPartitions`): made as assigned, and refused with
/// INVALID_REPLICA_ASSIGNMENT where Kafka refuses them, nothing created.
#[test]
fn manual_replica_assignments_are_made_and_checked_as_kafka_does() {
    let seen = check("replica-assignments", "assigned");
    assert_eq!(seen["partitions"], 7, "{seen}");
    for case in [
        "unregistered",
        "twice",
        "uneven",
        "validated",
        "grow_unregistered",
    ] {
        assert_eq!(
            seen["refused"][case], "INVALID_REPLICA_ASSIGNMENT",
            "{case}: {seen}"
        );
    }
    assert_eq!(
        seen["kafka_python_short"], "InvalidReplicationAssignmentError",
        "{seen}"
    );
}

/// kafka-python's admin calls of its own integration tests that Weir did not serve:
/// DescribeTopicPartitions paged by cursor, ElectLeaders, AlterReplicaLogDirs, the
/// broker's listeners and log directory in DescribeConfigs, and a broker key refused
/// (INVALID_CONFIG, named) when set at run time.
#[test]
fn admin_apis_kafka_python_calls_are_answered_as_kafka_does() {
    let seen = check("admin-apis", "admin-apis");
    assert_eq!(
        seen["partitions"],
        serde_json::json!([0, 1, 2, 3]),
        "{seen}"
    );
    assert_eq!(seen["pages"], 4, "{seen}");
    assert_eq!(seen["codes"]["admin-apis"], 0, "{seen}");
    assert_eq!(seen["codes"]["no-such-topic"], 3, "{seen}");
    // 84: ELECTION_NOT_NEEDED; 3: UNKNOWN_TOPIC_OR_PARTITION.
    assert_eq!(
        seen["elections"]["preferred"],
        serde_json::json!([84]),
        "{seen}"
    );
    assert_eq!(
        seen["elections"]["unclean"],
        serde_json::json!([84]),
        "{seen}"
    );
    assert_eq!(
        seen["elections"]["unknown"],
        serde_json::json!([3]),
        "{seen}"
    );
    assert_eq!(seen["moves"]["same"], "NoError", "{seen}");
    assert_eq!(seen["moves"]["other"], "LogDirNotFoundError", "{seen}");
    let bootstrap = seen["bootstrap"].as_str().expect("bootstrap");
    let advertised = format!("PLAINTEXT://{bootstrap}");
    assert_eq!(
        seen["broker_configs"]["advertised.listeners"],
        advertised.as_str(),
        "{seen}"
    );
    assert_eq!(
        seen["broker_configs"]["listeners"],
        advertised.as_str(),
        "{seen}"
    );
    assert_eq!(seen["alter"], "INVALID_CONFIG", "{seen}");
    // Kafka's dynamic keys Weir accepts: set on the broker, reported with Kafka's source
    // and as writable; removed, back to Kafka's default; a value of the wrong kind
    // refused.
    assert_eq!(
        seen["dynamic_set"],
        serde_json::json!({
            "sasl.kerberos.min.time.before.relogin": ["58000", "DYNAMIC_BROKER_CONFIG", false],
            "num.io.threads": ["16", "DYNAMIC_BROKER_CONFIG", false],
        }),
        "{seen}"
    );
    assert_eq!(
        seen["dynamic_removed"],
        serde_json::json!({
            "sasl.kerberos.min.time.before.relogin": ["60000", "DEFAULT_CONFIG", false],
            "num.io.threads": ["8", "DEFAULT_CONFIG", false],
        }),
        "{seen}"
    );
    assert_eq!(seen["bad_value"], "INVALID_CONFIG", "{seen}");
}

/// A consumer group's own KIP-848 configs, as librdkafka's test 0081 sets them
/// (`consumer.session.timeout.ms` on a GROUP resource) and as an operator would:
/// confluent-kafka's IncrementalAlterConfigs and AlterConfigs, described back with their
/// sources, bad values refused with INVALID_CONFIG naming the key, and a
/// `group.protocol=consumer` consumer told, and heartbeating at, the group's interval
/// (`weir group describe`, which the script runs).
#[test]
fn consumer_group_configs_are_set_described_and_honoured() {
    let python = python();
    let broker = Broker::start_with_kafka(weir_server::ServerConfig {
        admin_listen: None,
        ..Default::default()
    });
    let kafka = broker.kafka.clone().expect("a Kafka listener");
    let script = repo_root().join("tests/kafka/kafka_answers.py");
    let script = script.to_string_lossy();
    let args = [
        script.as_ref(),
        "group-configs",
        kafka.as_str(),
        "cfg-topic",
    ];
    let mut command = std::process::Command::new(&python);
    command
        .args(args)
        .env("WEIR_BIN", env!("CARGO_BIN_EXE_weir"))
        .env("WEIR_BROKERS", &broker.addr);
    let out = finish(command, &args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", stderr(&out));
    let lines = json_lines(&stdout);
    assert_eq!(lines.len(), 1, "{stdout}");
    let seen = &lines[0];
    use serde_json::json;
    // Not set: the broker's, as defaults.
    assert_eq!(
        seen["before"],
        json!({
            "consumer.heartbeat.interval.ms": ["3000", "DEFAULT_CONFIG"],
            "consumer.session.timeout.ms": ["45000", "DEFAULT_CONFIG"],
        }),
        "{seen}"
    );
    assert_eq!(
        seen["after_set"],
        json!({
            "consumer.heartbeat.interval.ms": ["1000", "GROUP_CONFIG"],
            "consumer.session.timeout.ms": ["50000", "GROUP_CONFIG"],
        }),
        "{seen}"
    );
    for (case, names) in [
        ("above_max", "group.consumer.max.session.timeout.ms"),
        ("heartbeat_not_below_session", "must be greater than"),
        ("not_a_number", "consumer.heartbeat.interval.ms"),
        ("unknown", "consumer.max.poll.interval.ms"),
    ] {
        let refused = &seen["refused"][case];
        assert_eq!(refused[0], "INVALID_CONFIG", "{case}: {seen}");
        assert!(
            refused[1].as_str().unwrap_or_default().contains(names),
            "{case}: {seen}"
        );
    }
    // The consumer was told the group's settings, heartbeated at its interval (the
    // broker's default is 3 s), and followed a change of the session timeout.
    assert_eq!(seen["told"], json!([1000, 50000]), "{seen}");
    let longest = seen["longest_ms_since_heartbeat"]
        .as_u64()
        .unwrap_or(u64::MAX);
    assert!(longest < 2_000, "{seen}");
    assert_eq!(seen["changed_session_timeout_ms"], 20000, "{seen}");
    // AlterConfigs replaces the set; DELETE goes back to the default.
    assert_eq!(
        seen["after_replace"],
        json!({
            "consumer.heartbeat.interval.ms": ["2000", "GROUP_CONFIG"],
            "consumer.session.timeout.ms": ["45000", "DEFAULT_CONFIG"],
        }),
        "{seen}"
    );
    assert_eq!(
        seen["after_delete"],
        json!({
            "consumer.heartbeat.interval.ms": ["3000", "DEFAULT_CONFIG"],
            "consumer.session.timeout.ms": ["45000", "DEFAULT_CONFIG"],
        }),
        "{seen}"
    );
}
