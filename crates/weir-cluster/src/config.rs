//! Topic configuration: the keys a topic accepts, their defaults and documentation, and
//! how a topic's settings become the [`LogConfig`] each of its partitions runs with.
//!
//! A topic stores only the keys set on it ([`TopicConfig`]); every other key takes its
//! default from [`CONFIG_KEYS`]. Values are strings, as in Kafka, and are validated as a
//! whole before any change is accepted.

use std::collections::BTreeMap;
use std::time::Duration;

use weir_log::{FlushPolicy, LogConfig};

use crate::error::ConfigError;

/// `retention.ms`: how long closed segments are kept.
pub const RETENTION_MS: &str = "retention.ms";
/// `retention.bytes`: the size a partition is trimmed to.
pub const RETENTION_BYTES: &str = "retention.bytes";
/// `segment.bytes`: segment size before rolling.
pub const SEGMENT_BYTES: &str = "segment.bytes";
/// `segment.ms`: segment age before rolling.
pub const SEGMENT_MS: &str = "segment.ms";
/// `max.message.bytes`: the largest batch accepted.
pub const MAX_MESSAGE_BYTES: &str = "max.message.bytes";
/// `message.timestamp.type`: `CreateTime` or `LogAppendTime`.
pub const MESSAGE_TIMESTAMP_TYPE: &str = "message.timestamp.type";
/// `flush.policy`: when appends are forced to disk.
pub const FLUSH_POLICY: &str = "flush.policy";
/// `cleanup.policy`: `delete`, `compact` or `compact,delete`.
pub const CLEANUP_POLICY: &str = "cleanup.policy";
/// `delete.retention.ms`: how long compaction keeps tombstones.
pub const DELETE_RETENTION_MS: &str = "delete.retention.ms";
/// `min.insync.replicas`: the smallest ISR an `acks=all` produce is accepted with.
pub const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";
/// `unclean.leader.election.enable`: whether a replica outside the ISR may be elected.
pub const UNCLEAN_LEADER_ELECTION_ENABLE: &str = "unclean.leader.election.enable";

/// One configuration key: its name, default and what it does.
#[derive(Debug, Clone, Copy)]
pub struct ConfigKey {
    pub name: &'static str,
    pub default: &'static str,
    pub documentation: &'static str,
}

/// Every key a topic accepts, sorted by name (DescribeTopicConfig lists them in this
/// order).
pub const CONFIG_KEYS: &[ConfigKey] = &[
    ConfigKey {
        name: CLEANUP_POLICY,
        default: "delete",
        documentation: "What happens to old records: delete (retention.ms and \
            retention.bytes delete whole closed segments), compact (closed segments are \
            rewritten in the background keeping only the newest record of each key; \
            retention does not apply), or compact,delete (both).",
    },
    ConfigKey {
        name: DELETE_RETENTION_MS,
        default: "86400000",
        documentation: "On compacted topics, how long a tombstone (a record with a key \
            and no value) is kept after it is written, so consumers that are behind still \
            see the deletion (1 day by default).",
    },
    ConfigKey {
        name: FLUSH_POLICY,
        default: "group-commit",
        documentation: "When appended records are forced to disk, and so what acks=all \
            means on one node: every-append (fsync before answering each produce), \
            group-commit (acks=all waits for a shared fsync covering the records; acks=leader \
            does not wait), interval:<ms> (fsync at most every <ms>; up to that much \
            acknowledged data can be lost in a machine crash), none (never fsync on the \
            append path). Every policy survives a broker process crash.",
    },
    ConfigKey {
        name: MAX_MESSAGE_BYTES,
        default: "1060864",
        documentation: "Largest record batch accepted, in bytes (a plain-record produce is \
            packed into one batch per partition, so this bounds that too).",
    },
    ConfigKey {
        name: MESSAGE_TIMESTAMP_TYPE,
        default: "CreateTime",
        documentation: "CreateTime keeps the producer's record timestamps; LogAppendTime \
            stamps every batch with the broker's clock at append. LogAppendTime topics \
            accept plain records only, since rewriting packed batches would mean \
            re-encoding them.",
    },
    ConfigKey {
        name: MIN_INSYNC_REPLICAS,
        default: "1",
        documentation: "Fewest in-sync replicas (the leader included) a partition must have \
            for an acks=all produce to be accepted; with fewer, the produce is refused with \
            NOT_ENOUGH_REPLICAS and nothing is appended. acks=leader and acks=none are not \
            affected.",
    },
    ConfigKey {
        name: RETENTION_BYTES,
        default: "-1",
        documentation: "Delete the oldest closed segments of a partition while it is \
            larger than this many bytes; -1 keeps any size.",
    },
    ConfigKey {
        name: RETENTION_MS,
        default: "604800000",
        documentation: "Delete closed segments whose newest record is older than this \
            many milliseconds (7 days by default); -1 keeps records forever.",
    },
    ConfigKey {
        name: SEGMENT_BYTES,
        default: "1073741824",
        documentation: "Roll to a new segment file once the active one holds this many \
            bytes (at least 1024). Retention deletes whole segments.",
    },
    ConfigKey {
        name: SEGMENT_MS,
        default: "604800000",
        documentation: "Roll to a new segment once the active segment's first record is \
            this many milliseconds old, so time-based retention can delete it.",
    },
    ConfigKey {
        name: UNCLEAN_LEADER_ELECTION_ENABLE,
        default: "false",
        documentation: "When no in-sync replica can lead a partition, elect any live replica \
            (true) instead of waiting for an in-sync one to return (false). true trades \
            acknowledged records that only the old in-sync replicas held for availability.",
    },
];

/// How record timestamps are set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    /// The producer's timestamps are kept.
    CreateTime,
    /// The broker stamps each batch with its clock at append.
    LogAppendTime,
}

/// What happens to old records of a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupPolicy {
    /// Retention deletes whole closed segments by age and size.
    pub delete: bool,
    /// Compaction keeps the newest record of each key.
    pub compact: bool,
}

/// The keys set on one topic (the rest are defaults). Always valid: construct it with
/// [`TopicConfig::new`] or change it with [`TopicConfig::altered`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicConfig {
    overrides: BTreeMap<String, String>,
}

/// One key as DescribeTopicConfig shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: &'static str,
    pub value: String,
    pub is_default: bool,
    pub documentation: &'static str,
}

/// A topic's settings, parsed.
#[derive(Debug, Clone)]
pub struct EffectiveConfig {
    /// What each partition's log runs with.
    pub log: LogConfig,
    pub timestamp_type: TimestampType,
    pub cleanup: CleanupPolicy,
    /// How long compaction keeps tombstones.
    pub delete_retention: Duration,
    /// Fewest in-sync replicas an `acks=all` produce needs (at least 1).
    pub min_insync_replicas: u32,
    /// Whether a replica outside the ISR may be elected when no ISR member can lead.
    pub unclean_leader_election: bool,
}

impl TopicConfig {
    /// Validates `overrides` (unknown keys and bad values are refused).
    pub fn new(overrides: BTreeMap<String, String>) -> Result<TopicConfig, ConfigError> {
        let config = TopicConfig { overrides };
        config.effective()?;
        Ok(config)
    }

    /// This configuration with `set` applied and `reset` keys back to their defaults;
    /// all or nothing.
    pub fn altered(
        &self,
        set: &BTreeMap<String, String>,
        reset: &[String],
    ) -> Result<TopicConfig, ConfigError> {
        let mut overrides = self.overrides.clone();
        for key in reset {
            key_of(key)?;
            overrides.remove(key);
        }
        for (k, v) in set {
            overrides.insert(k.clone(), v.clone());
        }
        TopicConfig::new(overrides)
    }

    /// The keys set on the topic.
    pub fn overrides(&self) -> &BTreeMap<String, String> {
        &self.overrides
    }

    /// The value in effect for `key` (set or default).
    fn value(&self, key: &ConfigKey) -> &str {
        self.overrides
            .get(key.name)
            .map_or(key.default, String::as_str)
    }

    /// Every key with its value, sorted by name.
    pub fn entries(&self) -> Vec<ConfigEntry> {
        CONFIG_KEYS
            .iter()
            .map(|key| ConfigEntry {
                name: key.name,
                value: self.value(key).to_string(),
                is_default: !self.overrides.contains_key(key.name),
                documentation: key.documentation,
            })
            .collect()
    }

    /// Parses every key into the settings partitions run with.
    pub fn effective(&self) -> Result<EffectiveConfig, ConfigError> {
        for key in self.overrides.keys() {
            key_of(key)?;
        }
        let get = |name: &str| {
            let key = key_of(name).expect("a known key");
            (key.name, self.value(key))
        };
        let retention_bytes = match integer(get(RETENTION_BYTES), -1)? {
            -1 => None,
            n => Some(n as u64),
        };
        let mut log = LogConfig {
            retention_age: optional_ms(get(RETENTION_MS))?,
            retention_bytes,
            segment_bytes: integer(get(SEGMENT_BYTES), 0)? as u64,
            segment_age: optional_ms(get(SEGMENT_MS))?,
            max_message_bytes: integer(get(MAX_MESSAGE_BYTES), 0)? as usize,
            ..LogConfig::default()
        };
        let (name, value) = get(FLUSH_POLICY);
        log.flush = FlushPolicy::parse(value).ok_or_else(|| ConfigError::BadValue {
            key: name.to_string(),
            value: value.to_string(),
            expected: "every-append, group-commit, interval:<ms> or none",
        })?;
        let (name, value) = get(MESSAGE_TIMESTAMP_TYPE);
        let timestamp_type = match value {
            "CreateTime" => TimestampType::CreateTime,
            "LogAppendTime" => TimestampType::LogAppendTime,
            _ => {
                return Err(ConfigError::BadValue {
                    key: name.to_string(),
                    value: value.to_string(),
                    expected: "CreateTime or LogAppendTime",
                });
            }
        };
        let (name, value) = get(CLEANUP_POLICY);
        let mut cleanup = CleanupPolicy {
            delete: false,
            compact: false,
        };
        for part in value.split(',').map(str::trim) {
            match part {
                "delete" if !cleanup.delete => cleanup.delete = true,
                "compact" if !cleanup.compact => cleanup.compact = true,
                _ => {
                    return Err(ConfigError::BadValue {
                        key: name.to_string(),
                        value: value.to_string(),
                        expected: "delete, compact or compact,delete",
                    });
                }
            }
        }
        let delete_retention = Duration::from_millis(integer(get(DELETE_RETENTION_MS), 0)? as u64);
        let (name, value) = get(MIN_INSYNC_REPLICAS);
        let min_insync_replicas =
            u32::try_from(integer((name, value), 1)?).map_err(|_| ConfigError::BadValue {
                key: name.to_string(),
                value: value.to_string(),
                expected: "a positive integer",
            })?;
        let unclean_leader_election = boolean(get(UNCLEAN_LEADER_ELECTION_ENABLE))?;
        log.validate().map_err(ConfigError::Invalid)?;
        Ok(EffectiveConfig {
            log,
            timestamp_type,
            cleanup,
            delete_retention,
            min_insync_replicas,
            unclean_leader_election,
        })
    }
}

fn key_of(name: &str) -> Result<&'static ConfigKey, ConfigError> {
    CONFIG_KEYS
        .iter()
        .find(|k| k.name == name)
        .ok_or_else(|| ConfigError::UnknownKey(name.to_string()))
}

/// An integer at least `min` (-1, 0 or 1: the messages name those three floors).
fn integer((key, value): (&str, &str), min: i64) -> Result<i64, ConfigError> {
    match value.parse::<i64>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(ConfigError::BadValue {
            key: key.to_string(),
            value: value.to_string(),
            expected: match min {
                ..0 => "an integer, or -1 for no limit",
                0 => "a non-negative integer",
                _ => "a positive integer",
            },
        }),
    }
}

/// `true` or `false` (Kafka's spelling; no other case).
fn boolean((key, value): (&str, &str)) -> Result<bool, ConfigError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ConfigError::BadValue {
            key: key.to_string(),
            value: value.to_string(),
            expected: "true or false",
        }),
    }
}

/// Milliseconds, or -1 for none.
fn optional_ms(kv: (&str, &str)) -> Result<Option<Duration>, ConfigError> {
    Ok(match integer(kv, -1)? {
        -1 => None,
        ms => Some(Duration::from_millis(ms as u64)),
    })
}

#[cfg(test)]
mod tests {
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
    }

    #[test]
    fn replication_keys_parse_and_bad_values_are_refused() {
        let config = TopicConfig::new(map(&[
            (MIN_INSYNC_REPLICAS, "2"),
            (UNCLEAN_LEADER_ELECTION_ENABLE, "true"),
        ]))
        .unwrap();
        let effective = config.effective().unwrap();
        assert_eq!(effective.min_insync_replicas, 2);
        assert!(effective.unclean_leader_election);
        for (k, v, expected) in [
            (MIN_INSYNC_REPLICAS, "0", "a positive integer"),
            (MIN_INSYNC_REPLICAS, "-1", "a positive integer"),
            (MIN_INSYNC_REPLICAS, "4294967296", "a positive integer"),
            (MIN_INSYNC_REPLICAS, "two", "a positive integer"),
            (UNCLEAN_LEADER_ELECTION_ENABLE, "True", "true or false"),
            (UNCLEAN_LEADER_ELECTION_ENABLE, "1", "true or false"),
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
}
