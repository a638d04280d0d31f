//! Topic configuration: the keys a topic accepts, their defaults and documentation, and
//! how a topic's settings become the [`LogConfig`] each of its partitions runs with.
//!
//! A topic stores only the keys set on it ([`TopicConfig`]); every other key takes its
//! default from [`CONFIG_KEYS`]. Values are strings, as in Kafka, and are validated as a
//! whole before any change is accepted.
//!
//! [`CONFIG_KEYS`] holds every topic config Kafka 4.0 defines (its `LogConfig`), so a
//! Kafka client that sets one is not refused: the ones Weir implements are honoured
//! ([`ConfigKey::honoured`]); the others are accepted, checked as Kafka checks them
//! ([`check_accepted`]), stored and reported back, and change nothing (each key's
//! documentation says why; docs/kafka-compatibility.md has the table). Weir's own keys
//! are `flush.policy` and `write.direct`.

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
/// `write.direct`: write a durable topic's active segments past the page cache.
pub const WRITE_DIRECT: &str = "write.direct";

/// The type of a key's value, as Kafka's `ConfigDef` names it (DescribeConfigs reports
/// it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean,
    String,
    Int,
    Long,
    Double,
    List,
}

/// One configuration key: its name, default and what it does.
#[derive(Debug, Clone, Copy)]
pub struct ConfigKey {
    pub name: &'static str,
    pub default: &'static str,
    pub documentation: &'static str,
    pub kind: ConfigType,
    /// Weir acts on the value. `false`: a Kafka key accepted (checked, stored, described)
    /// that changes nothing, for what Weir does otherwise or lacks.
    pub honoured: bool,
}

/// A key Kafka defines that Weir accepts without acting on it; its documentation ends
/// with why.
const fn accepted(
    name: &'static str,
    default: &'static str,
    kind: ConfigType,
    documentation: &'static str,
) -> ConfigKey {
    ConfigKey {
        name,
        default,
        documentation,
        kind,
        honoured: false,
    }
}

/// Kafka 4.0's topic keys that Weir accepts without acting on them.
pub const SEGMENT_JITTER_MS: &str = "segment.jitter.ms";
pub const SEGMENT_INDEX_BYTES: &str = "segment.index.bytes";
pub const FLUSH_MESSAGES: &str = "flush.messages";
pub const FLUSH_MS: &str = "flush.ms";
pub const INDEX_INTERVAL_BYTES: &str = "index.interval.bytes";
pub const FILE_DELETE_DELAY_MS: &str = "file.delete.delay.ms";
pub const MIN_COMPACTION_LAG_MS: &str = "min.compaction.lag.ms";
pub const MAX_COMPACTION_LAG_MS: &str = "max.compaction.lag.ms";
pub const MIN_CLEANABLE_DIRTY_RATIO: &str = "min.cleanable.dirty.ratio";
pub const COMPRESSION_TYPE: &str = "compression.type";
pub const COMPRESSION_GZIP_LEVEL: &str = "compression.gzip.level";
pub const COMPRESSION_LZ4_LEVEL: &str = "compression.lz4.level";
pub const COMPRESSION_ZSTD_LEVEL: &str = "compression.zstd.level";
pub const PREALLOCATE: &str = "preallocate";
pub const MESSAGE_TIMESTAMP_BEFORE_MAX_MS: &str = "message.timestamp.before.max.ms";
pub const MESSAGE_TIMESTAMP_AFTER_MAX_MS: &str = "message.timestamp.after.max.ms";
pub const LEADER_REPLICATION_THROTTLED_REPLICAS: &str = "leader.replication.throttled.replicas";
pub const FOLLOWER_REPLICATION_THROTTLED_REPLICAS: &str = "follower.replication.throttled.replicas";
pub const REMOTE_STORAGE_ENABLE: &str = "remote.storage.enable";
pub const LOCAL_RETENTION_MS: &str = "local.retention.ms";
pub const LOCAL_RETENTION_BYTES: &str = "local.retention.bytes";
pub const REMOTE_LOG_COPY_DISABLE: &str = "remote.log.copy.disable";
pub const REMOTE_LOG_DELETE_ON_DISABLE: &str = "remote.log.delete.on.disable";

/// Java's `Long.MAX_VALUE`, Kafka's "never" for flushes and compaction lag.
const LONG_MAX: &str = "9223372036854775807";

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
        kind: ConfigType::List,
        honoured: true,
    },
    accepted(
        COMPRESSION_GZIP_LEVEL,
        "-1",
        ConfigType::Int,
        "The gzip level Kafka recompresses with when compression.type is gzip \
            (1 to 9, or -1 for the codec's default). Accepted, not acted on: Weir \
            never recompresses (see compression.type).",
    ),
    accepted(
        COMPRESSION_LZ4_LEVEL,
        "9",
        ConfigType::Int,
        "The lz4 level Kafka recompresses with when compression.type is lz4 (1 \
            to 17). Accepted, not acted on: Weir never recompresses (see \
            compression.type).",
    ),
    accepted(
        COMPRESSION_TYPE,
        "producer",
        ConfigType::String,
        "The codec Kafka stores a topic's batches with: producer keeps the \
            producer's, the others (uncompressed, gzip, snappy, lz4, zstd) make \
            Kafka recompress. Weir always stores batches as the producer \
            compressed them (the bytes on disk are the bytes sent, never \
            re-encoded), which is producer; another value is accepted and reported, \
            not acted on.",
    ),
    accepted(
        COMPRESSION_ZSTD_LEVEL,
        "3",
        ConfigType::Int,
        "The zstd level Kafka recompresses with when compression.type is zstd \
            (-131072 to 22). Accepted, not acted on: Weir never recompresses (see \
            compression.type).",
    ),
    ConfigKey {
        name: DELETE_RETENTION_MS,
        default: "86400000",
        documentation: "On compacted topics, how long a tombstone (a record with a key \
            and no value) is kept after it is written, so consumers that are behind still \
            see the deletion (1 day by default).",
        kind: ConfigType::Long,
        honoured: true,
    },
    accepted(
        FILE_DELETE_DELAY_MS,
        "60000",
        ConfigType::Long,
        "How long Kafka waits before deleting a removed segment's files. \
            Accepted, not acted on: Weir deletes them once no read holds them \
            open.",
    ),
    accepted(
        FLUSH_MESSAGES,
        LONG_MAX,
        ConfigType::Long,
        "Kafka's fsync every this many records (at least 1). Accepted, not \
            acted on: flush.policy says when Weir syncs.",
    ),
    accepted(
        FLUSH_MS,
        LONG_MAX,
        ConfigType::Long,
        "Kafka's fsync at least every this many milliseconds. Accepted, not \
            acted on: flush.policy says when Weir syncs (interval:<ms> is this).",
    ),
    ConfigKey {
        name: FLUSH_POLICY,
        default: "group-commit",
        documentation: "When appended records are forced to disk, and so what acks=all \
            means on one node: every-append (fsync before answering each produce), \
            group-commit (acks=all waits for a shared fsync covering the records; acks=leader \
            does not wait), interval:<ms> (fsync at most every <ms>; up to that much \
            acknowledged data can be lost in a machine crash), none (never fsync on the \
            append path). Every policy survives a broker process crash.",
        kind: ConfigType::String,
        honoured: true,
    },
    accepted(
        FOLLOWER_REPLICATION_THROTTLED_REPLICAS,
        "",
        ConfigType::List,
        "Replicas (partition:broker, or *) whose follower fetches Kafka \
            throttles. Accepted, not acted on: Weir throttles a reassignment's \
            replicas itself (weir partition reassign).",
    ),
    accepted(
        INDEX_INTERVAL_BYTES,
        "4096",
        ConfigType::Int,
        "Bytes between Kafka's offset-index entries. Accepted, not acted on: \
            the broker's own setting applies to every topic.",
    ),
    accepted(
        LEADER_REPLICATION_THROTTLED_REPLICAS,
        "",
        ConfigType::List,
        "Replicas (partition:broker, or *) whose leader side Kafka throttles. \
            Accepted, not acted on: Weir throttles a reassignment's replicas \
            itself (weir partition reassign).",
    ),
    accepted(
        LOCAL_RETENTION_BYTES,
        "-2",
        ConfigType::Long,
        "Tiered storage: bytes kept on local disk (-2: retention.bytes). \
            Accepted, not acted on: Weir has no tiered storage, every byte is \
            local.",
    ),
    accepted(
        LOCAL_RETENTION_MS,
        "-2",
        ConfigType::Long,
        "Tiered storage: how long records stay on local disk (-2: \
            retention.ms). Accepted, not acted on: Weir has no tiered storage, \
            every record is local.",
    ),
    accepted(
        MAX_COMPACTION_LAG_MS,
        LONG_MAX,
        ConfigType::Long,
        "On compacted topics, the longest a record may stay uncompacted (at \
            least 1). Accepted, not acted on: Weir's compaction runs on closed \
            segments as it finds them.",
    ),
    ConfigKey {
        name: MAX_MESSAGE_BYTES,
        default: "1060864",
        documentation: "Largest record batch accepted, in bytes (a plain-record produce is \
            packed into one batch per partition, so this bounds that too).",
        kind: ConfigType::Int,
        honoured: true,
    },
    accepted(
        MESSAGE_TIMESTAMP_AFTER_MAX_MS,
        "3600000",
        ConfigType::Long,
        "How far in the future a CreateTime record's timestamp may be before \
            Kafka refuses it. Accepted, not acted on: Weir keeps producers' \
            timestamps as they are.",
    ),
    accepted(
        MESSAGE_TIMESTAMP_BEFORE_MAX_MS,
        LONG_MAX,
        ConfigType::Long,
        "How far in the past a CreateTime record's timestamp may be before \
            Kafka refuses it. Accepted, not acted on: Weir keeps producers' \
            timestamps as they are.",
    ),
    ConfigKey {
        name: MESSAGE_TIMESTAMP_TYPE,
        default: "CreateTime",
        documentation: "CreateTime keeps the producer's record timestamps; LogAppendTime \
            stamps every batch with the broker's clock at append. LogAppendTime topics \
            accept plain records only, since rewriting packed batches would mean \
            re-encoding them.",
        kind: ConfigType::String,
        honoured: true,
    },
    accepted(
        MIN_CLEANABLE_DIRTY_RATIO,
        "0.5",
        ConfigType::Double,
        "On compacted topics, the share of uncompacted log (0 to 1) before \
            Kafka's cleaner runs. Accepted, not acted on: Weir's compaction runs \
            on closed segments as it finds them.",
    ),
    accepted(
        MIN_COMPACTION_LAG_MS,
        "0",
        ConfigType::Long,
        "On compacted topics, the least time a record stays uncompacted (at \
            most max.compaction.lag.ms). Accepted, not acted on: Weir compacts \
            only closed segments.",
    ),
    ConfigKey {
        name: MIN_INSYNC_REPLICAS,
        default: "1",
        documentation: "Fewest in-sync replicas (the leader included) a partition must have \
            for an acks=all produce to be accepted; with fewer, the produce is refused with \
            NOT_ENOUGH_REPLICAS and nothing is appended. acks=leader and acks=none are not \
            affected.",
        kind: ConfigType::Int,
        honoured: true,
    },
    accepted(
        PREALLOCATE,
        "false",
        ConfigType::Boolean,
        "Whether Kafka preallocates a new segment file. Accepted, not acted on: \
            Weir never preallocates segment files.",
    ),
    accepted(
        REMOTE_LOG_COPY_DISABLE,
        "false",
        ConfigType::Boolean,
        "Tiered storage: stop copying segments to remote storage. Accepted, not \
            acted on: Weir has no tiered storage.",
    ),
    accepted(
        REMOTE_LOG_DELETE_ON_DISABLE,
        "false",
        ConfigType::Boolean,
        "Tiered storage: delete remote segments when tiering is turned off. \
            Accepted, not acted on: Weir has no tiered storage.",
    ),
    accepted(
        REMOTE_STORAGE_ENABLE,
        "false",
        ConfigType::Boolean,
        "Tiered storage for the topic. Weir has none: only false is accepted, \
            as Kafka refuses true on a broker without remote storage.",
    ),
    ConfigKey {
        name: RETENTION_BYTES,
        default: "-1",
        documentation: "Delete the oldest closed segments of a partition while it is \
            larger than this many bytes; -1 keeps any size.",
        kind: ConfigType::Long,
        honoured: true,
    },
    ConfigKey {
        name: RETENTION_MS,
        default: "604800000",
        documentation: "Delete closed segments whose newest record is older than this \
            many milliseconds (7 days by default); -1 keeps records forever.",
        kind: ConfigType::Long,
        honoured: true,
    },
    ConfigKey {
        name: SEGMENT_BYTES,
        default: "1073741824",
        documentation: "Roll to a new segment file once the active one holds this many \
            bytes (at least 1024). Retention deletes whole segments.",
        kind: ConfigType::Int,
        honoured: true,
    },
    accepted(
        SEGMENT_INDEX_BYTES,
        "10485760",
        ConfigType::Int,
        "Kafka's offset-index size per segment (at least 4). Accepted, not \
            acted on: the broker's own setting applies to every topic.",
    ),
    accepted(
        SEGMENT_JITTER_MS,
        "0",
        ConfigType::Long,
        "A random cut from segment.ms so segments of many partitions do not \
            roll at once. Accepted, not acted on: Weir rolls at segment.ms.",
    ),
    ConfigKey {
        name: SEGMENT_MS,
        default: "604800000",
        documentation: "Roll to a new segment once the active segment's first record is \
            this many milliseconds old, so time-based retention can delete it.",
        kind: ConfigType::Long,
        honoured: true,
    },
    ConfigKey {
        name: UNCLEAN_LEADER_ELECTION_ENABLE,
        default: "false",
        documentation: "When no in-sync replica can lead a partition, elect any live replica \
            (true) instead of waiting for an in-sync one to return (false). true trades \
            acknowledged records that only the old in-sync replicas held for availability.",
        kind: ConfigType::Boolean,
        honoured: true,
    },
    ConfigKey {
        name: WRITE_DIRECT,
        default: "false",
        documentation: "Weir's own: with flush.policy every-append or group-commit, write \
            each partition's active segment past the page cache (O_DIRECT) where the file \
            system allows. Each write still reaches the disk before the produce is answered. \
            It spends less broker CPU per byte and keeps a long produce steady where the page \
            cache's first touch and writeback are slow, but consumers then read fresh records \
            from the disk rather than from memory (BENCHMARKS.md has the figures).",
        kind: ConfigType::Boolean,
        honoured: true,
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
    pub kind: ConfigType,
    /// Whether Weir acts on it ([`ConfigKey::honoured`]).
    pub honoured: bool,
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
                kind: key.kind,
                honoured: key.honoured,
            })
            .collect()
    }

    /// Parses every key into the settings partitions run with (and checks the keys
    /// accepted without being acted on, as Kafka checks them).
    pub fn effective(&self) -> Result<EffectiveConfig, ConfigError> {
        for (key, value) in &self.overrides {
            if !key_of(key)?.honoured {
                check_accepted(key, value)?;
            }
        }
        // Both checked above when set, and their defaults parse: as Kafka, the two must
        // also agree with each other.
        let lag = |name: &str| {
            let value = self.value(key_of(name).expect("a known key"));
            value.trim().parse::<i64>().unwrap_or_default()
        };
        let (min_lag, max_lag) = (lag(MIN_COMPACTION_LAG_MS), lag(MAX_COMPACTION_LAG_MS));
        if min_lag > max_lag {
            return Err(ConfigError::Invalid(format!(
                "{MIN_COMPACTION_LAG_MS} ({min_lag}) is greater than {MAX_COMPACTION_LAG_MS} \
                 ({max_lag})"
            )));
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
        log.direct_writes = boolean(get(WRITE_DIRECT))?;
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

/// Checks the value of a key Weir accepts without acting on, with Kafka 4.0's
/// `LogConfig` rule for it (type and range), so what Kafka refuses is refused here too.
pub fn check_accepted(key: &str, value: &str) -> Result<(), ConfigError> {
    let bad = |expected: &'static str| {
        Err(ConfigError::BadValue {
            key: key.to_string(),
            value: value.to_string(),
            expected,
        })
    };
    let trimmed = value.trim();
    let long_at_least = |min: i64, expected| match trimmed.parse::<i64>() {
        Ok(n) if n >= min => Ok(()),
        _ => bad(expected),
    };
    let int_within = |min: i32, max: i32, expected| match trimmed.parse::<i32>() {
        Ok(n) if (min..=max).contains(&n) => Ok(()),
        _ => bad(expected),
    };
    let boolean = || match trimmed.to_ascii_lowercase().as_str() {
        "true" | "false" => Ok(()),
        _ => bad("true or false"),
    };
    match key {
        SEGMENT_JITTER_MS
        | FLUSH_MS
        | FILE_DELETE_DELAY_MS
        | MIN_COMPACTION_LAG_MS
        | MESSAGE_TIMESTAMP_BEFORE_MAX_MS
        | MESSAGE_TIMESTAMP_AFTER_MAX_MS => {
            long_at_least(0, "an integer of at least 0 (a 64-bit long)")
        }
        FLUSH_MESSAGES | MAX_COMPACTION_LAG_MS => {
            long_at_least(1, "an integer of at least 1 (a 64-bit long)")
        }
        LOCAL_RETENTION_MS | LOCAL_RETENTION_BYTES => long_at_least(
            -2,
            "an integer of at least -2 (-2: as retention, -1: no limit)",
        ),
        SEGMENT_INDEX_BYTES => int_within(4, i32::MAX, "an integer from 4 to 2147483647"),
        INDEX_INTERVAL_BYTES => int_within(0, i32::MAX, "an integer from 0 to 2147483647"),
        COMPRESSION_GZIP_LEVEL => match trimmed.parse::<i32>() {
            Ok(-1 | 1..=9) => Ok(()),
            _ => bad("an integer from 1 to 9, or -1"),
        },
        COMPRESSION_LZ4_LEVEL => int_within(1, 17, "an integer from 1 to 17"),
        COMPRESSION_ZSTD_LEVEL => int_within(-131_072, 22, "an integer from -131072 to 22"),
        MIN_CLEANABLE_DIRTY_RATIO => match trimmed.parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => Ok(()),
            _ => bad("a number from 0 to 1"),
        },
        COMPRESSION_TYPE => match trimmed {
            "uncompressed" | "zstd" | "lz4" | "snappy" | "gzip" | "producer" => Ok(()),
            _ => bad("one of uncompressed, zstd, lz4, snappy, gzip, producer"),
        },
        PREALLOCATE | REMOTE_LOG_COPY_DISABLE | REMOTE_LOG_DELETE_ON_DISABLE => boolean(),
        REMOTE_STORAGE_ENABLE => match trimmed.to_ascii_lowercase().as_str() {
            "false" => Ok(()),
            "true" => bad("false: this broker has no tiered (remote) storage"),
            _ => bad("true or false"),
        },
        LEADER_REPLICATION_THROTTLED_REPLICAS | FOLLOWER_REPLICATION_THROTTLED_REPLICAS => {
            let items: Vec<&str> = trimmed
                .split(',')
                .map(str::trim)
                .filter(|i| !i.is_empty())
                .collect();
            let replica = |item: &str| {
                item.split_once(':').is_some_and(|(p, b)| {
                    p.trim().parse::<u32>().is_ok() && b.trim().parse::<u32>().is_ok()
                })
            };
            if items == ["*"] || items.iter().all(|i| replica(i)) {
                Ok(())
            } else {
                bad("* or a list of partition:broker (e.g. 0:101,1:102)")
            }
        }
        _ => Err(ConfigError::UnknownKey(key.to_string())),
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
mod tests;
