//! Tests of the topic configs: keys, defaults, parsing and validation (`config.rs`).

use super::*;

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_parse_and_match_the_log_defaults() {
    let effective = TopicConfig::default().effective().unwrap();
    let log_default = LogConfig::default();
    assert_eq!(effective.log.segment_bytes, log_default.segment_bytes);
    assert_eq!(
        effective.log.max_message_bytes,
        log_default.max_message_bytes
    );
    assert_eq!(effective.log.retention_age, log_default.retention_age);
    assert_eq!(effective.log.retention_bytes, None);
    assert_eq!(effective.log.flush, FlushPolicy::GroupCommit);
    assert_eq!(effective.timestamp_type, TimestampType::CreateTime);
    assert_eq!(
        effective.cleanup,
        CleanupPolicy {
            delete: true,
            compact: false
        }
    );
    assert_eq!(effective.min_insync_replicas, 1);
    assert!(!effective.unclean_leader_election);
    assert!(!effective.log.direct_writes);
}

#[test]
fn replication_keys_parse_and_bad_values_are_refused() {
    let config = TopicConfig::new(map(&[
        (MIN_INSYNC_REPLICAS, "2"),
        (UNCLEAN_LEADER_ELECTION_ENABLE, "true"),
        (WRITE_DIRECT, "true"),
    ]))
    .unwrap();
    let effective = config.effective().unwrap();
    assert_eq!(effective.min_insync_replicas, 2);
    assert!(effective.unclean_leader_election);
    assert!(effective.log.direct_writes);
    for (k, v, expected) in [
        (MIN_INSYNC_REPLICAS, "0", "a positive integer"),
        (MIN_INSYNC_REPLICAS, "-1", "a positive integer"),
        (MIN_INSYNC_REPLICAS, "4294967296", "a positive integer"),
        (MIN_INSYNC_REPLICAS, "two", "a positive integer"),
        (UNCLEAN_LEADER_ELECTION_ENABLE, "True", "true or false"),
        (UNCLEAN_LEADER_ELECTION_ENABLE, "1", "true or false"),
        (WRITE_DIRECT, "yes", "true or false"),
    ] {
        let err = TopicConfig::new(map(&[(k, v)])).unwrap_err().to_string();
        assert!(err.contains(k) && err.contains(expected), "{k}={v}: {err}");
    }
}

#[test]
fn cleanup_policies_parse_and_bad_ones_are_refused() {
    for (value, delete, compact) in [
        ("delete", true, false),
        ("compact", false, true),
        ("compact,delete", true, true),
        ("delete, compact", true, true),
    ] {
        let config = TopicConfig::new(map(&[(CLEANUP_POLICY, value)])).unwrap();
        let cleanup = config.effective().unwrap().cleanup;
        assert_eq!(
            (cleanup.delete, cleanup.compact),
            (delete, compact),
            "{value}"
        );
    }
    for value in ["", "compact,compact", "purge", "compact;delete"] {
        let err = TopicConfig::new(map(&[(CLEANUP_POLICY, value)]))
            .unwrap_err()
            .to_string();
        assert!(err.contains(CLEANUP_POLICY), "{value}: {err}");
    }
    assert!(TopicConfig::new(map(&[(DELETE_RETENTION_MS, "-1")])).is_err());
}

#[test]
fn keys_are_sorted_and_documented() {
    let names: Vec<_> = CONFIG_KEYS.iter().map(|k| k.name).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert!(CONFIG_KEYS.iter().all(|k| !k.documentation.is_empty()));
}

#[test]
fn overrides_reach_the_log_config() {
    let config = TopicConfig::new(map(&[
        (RETENTION_MS, "-1"),
        (RETENTION_BYTES, "5000"),
        (SEGMENT_BYTES, "4096"),
        (FLUSH_POLICY, "interval:250"),
        (MESSAGE_TIMESTAMP_TYPE, "LogAppendTime"),
    ]))
    .unwrap();
    let effective = config.effective().unwrap();
    assert_eq!(effective.log.retention_age, None);
    assert_eq!(effective.log.retention_bytes, Some(5000));
    assert_eq!(effective.log.segment_bytes, 4096);
    assert_eq!(
        effective.log.flush,
        FlushPolicy::Interval(Duration::from_millis(250))
    );
    assert_eq!(effective.timestamp_type, TimestampType::LogAppendTime);
    let entries = config.entries();
    let seg = entries.iter().find(|e| e.name == SEGMENT_BYTES).unwrap();
    assert_eq!((seg.value.as_str(), seg.is_default), ("4096", false));
    let max = entries
        .iter()
        .find(|e| e.name == MAX_MESSAGE_BYTES)
        .unwrap();
    assert!(max.is_default);
}

#[test]
fn bad_keys_and_values_are_refused_naming_them() {
    for (k, v, needle) in [
        ("retention.mss", "1", "retention.mss"),
        (RETENTION_MS, "soon", "retention.ms"),
        (RETENTION_BYTES, "-2", "retention.bytes"),
        (SEGMENT_BYTES, "10", "segment_bytes"),
        (FLUSH_POLICY, "sometimes", "flush.policy"),
        (
            MESSAGE_TIMESTAMP_TYPE,
            "createtime",
            "message.timestamp.type",
        ),
        (MAX_MESSAGE_BYTES, "999999999999", "max_message_bytes"),
    ] {
        let err = TopicConfig::new(map(&[(k, v)])).unwrap_err().to_string();
        assert!(err.contains(needle), "{k}={v}: {err}");
    }
}

/// Every topic key of Kafka 4.0's `LogConfig` is accepted with a valid value and its
/// Kafka default; what Kafka refuses is refused, naming the key.
#[test]
fn every_kafka_topic_key_is_accepted_and_checked_as_kafka_checks_it() {
    const KAFKA_4_TOPIC_KEYS: [&str; 33] = [
        "cleanup.policy",
        "compression.gzip.level",
        "compression.lz4.level",
        "compression.type",
        "compression.zstd.level",
        "delete.retention.ms",
        "file.delete.delay.ms",
        "flush.messages",
        "flush.ms",
        "follower.replication.throttled.replicas",
        "index.interval.bytes",
        "leader.replication.throttled.replicas",
        "local.retention.bytes",
        "local.retention.ms",
        "max.compaction.lag.ms",
        "max.message.bytes",
        "message.timestamp.after.max.ms",
        "message.timestamp.before.max.ms",
        "message.timestamp.type",
        "min.cleanable.dirty.ratio",
        "min.compaction.lag.ms",
        "min.insync.replicas",
        "preallocate",
        "remote.log.copy.disable",
        "remote.log.delete.on.disable",
        "remote.storage.enable",
        "retention.bytes",
        "retention.ms",
        "segment.bytes",
        "segment.index.bytes",
        "segment.jitter.ms",
        "segment.ms",
        "unclean.leader.election.enable",
    ];
    let ours: Vec<&str> = CONFIG_KEYS
        .iter()
        .map(|k| k.name)
        .filter(|n| ![FLUSH_POLICY, WRITE_DIRECT].contains(n))
        .collect();
    assert_eq!(ours, KAFKA_4_TOPIC_KEYS);
    // Each key set to its own default, all at once, is a valid configuration.
    let defaults: BTreeMap<String, String> = CONFIG_KEYS
        .iter()
        .map(|k| (k.name.to_string(), k.default.to_string()))
        .collect();
    TopicConfig::new(defaults).unwrap();
    let good = map(&[
        (COMPRESSION_TYPE, "zstd"),
        (COMPRESSION_ZSTD_LEVEL, "-5"),
        (COMPRESSION_GZIP_LEVEL, "9"),
        (FLUSH_MS, "1000"),
        (FLUSH_MESSAGES, "1"),
        (MAX_COMPACTION_LAG_MS, "60000"),
        (MIN_COMPACTION_LAG_MS, "60000"),
        (MIN_CLEANABLE_DIRTY_RATIO, "0.25"),
        (PREALLOCATE, "TRUE"),
        (LEADER_REPLICATION_THROTTLED_REPLICAS, "0:1, 1:2"),
        (FOLLOWER_REPLICATION_THROTTLED_REPLICAS, "*"),
        (LOCAL_RETENTION_MS, "-2"),
        (REMOTE_STORAGE_ENABLE, "false"),
    ]);
    let config = TopicConfig::new(good).unwrap();
    let entry = config.entries();
    let compression = entry.iter().find(|e| e.name == COMPRESSION_TYPE).unwrap();
    assert_eq!(
        (compression.value.as_str(), compression.is_default),
        ("zstd", false)
    );
    for (k, v, expected) in [
        (COMPRESSION_TYPE, "brotli", "one of uncompressed"),
        (COMPRESSION_GZIP_LEVEL, "0", "1 to 9, or -1"),
        (COMPRESSION_LZ4_LEVEL, "18", "1 to 17"),
        (COMPRESSION_ZSTD_LEVEL, "23", "-131072 to 22"),
        (FLUSH_MESSAGES, "0", "at least 1"),
        (FLUSH_MS, "-1", "at least 0"),
        (FLUSH_MS, "soon", "at least 0"),
        (MIN_CLEANABLE_DIRTY_RATIO, "1.5", "0 to 1"),
        (PREALLOCATE, "yes", "true or false"),
        (REMOTE_STORAGE_ENABLE, "true", "no tiered"),
        (LOCAL_RETENTION_BYTES, "-3", "at least -2"),
        (SEGMENT_INDEX_BYTES, "3", "from 4"),
        (
            LEADER_REPLICATION_THROTTLED_REPLICAS,
            "0-1",
            "partition:broker",
        ),
    ] {
        let err = TopicConfig::new(map(&[(k, v)])).unwrap_err().to_string();
        assert!(err.contains(k) && err.contains(expected), "{k}={v}: {err}");
    }
    let err = TopicConfig::new(map(&[
        (MIN_COMPACTION_LAG_MS, "10"),
        (MAX_COMPACTION_LAG_MS, "5"),
    ]))
    .unwrap_err()
    .to_string();
    assert!(err.contains(MIN_COMPACTION_LAG_MS), "{err}");
    // Removed from Kafka 4.0: unknown there, unknown here.
    for gone in [
        "message.timestamp.difference.max.ms",
        "message.format.version",
    ] {
        let err = TopicConfig::new(map(&[(gone, "1")])).unwrap_err();
        assert!(matches!(err, ConfigError::UnknownKey(_)), "{gone}: {err}");
    }
}

#[test]
fn alter_is_all_or_nothing_and_reset_restores_defaults() {
    let config = TopicConfig::new(map(&[(RETENTION_MS, "1000")])).unwrap();
    let bad = map(&[(SEGMENT_BYTES, "8192"), (FLUSH_POLICY, "bogus")]);
    assert!(config.altered(&bad, &[]).is_err());
    assert_eq!(config.overrides(), &map(&[(RETENTION_MS, "1000")]));
    let altered = config
        .altered(
            &map(&[(SEGMENT_BYTES, "8192")]),
            &[RETENTION_MS.to_string()],
        )
        .unwrap();
    assert_eq!(altered.overrides(), &map(&[(SEGMENT_BYTES, "8192")]));
    assert!(config.altered(&BTreeMap::new(), &["nope".into()]).is_err());
}
