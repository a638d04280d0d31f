//! Consumer groups: the shells that drive weir-coordinator's group machines (KIP-848
//! membership, the classic protocol, committed offsets in the internal topic
//! `__consumer_offsets`) on the leader of each partition, and the administration of
//! groups (describe, delete, reset).
//!
//! - [`coordinator`]: [`GroupCoordinator`], the async API the broker calls, and which
//!   shards this broker serves (those of the `__consumer_offsets` partitions it leads);
//!   `expiry` (sessions, offsets retention, topic changes, following leadership) and
//!   `admin` (describe, list, delete, reset, metrics) are the rest of its API.
//! - `shard`: one `__consumer_offsets` partition's shell: load (replay), the ordered
//!   durable writes, the classic requests parked until their rebalance step; the state
//!   it guards is `weir_coordinator::group::shard::ShardState`.
//! - `classic_coordinator`: the classic protocol's async API over the shards, which
//!   parks JoinGroup and SyncGroup requests until their rebalance step is reached and
//!   writes each completed generation to `__consumer_offsets` before answering, so
//!   classic members survive a coordinator failover.
//!
//! The machines themselves (the group state, the assignors, the classic state machine,
//! the record layouts, the limits and the types of the API) are weir-coordinator's and
//! are re-exported here under their old paths. `docs/consumer-groups.md` walks through
//! the protocol, the epochs, the record formats and the limits.

mod admin;
mod classic_coordinator;
pub mod coordinator;
mod expiry;
mod shard;

use std::time::Duration;

use crate::error::ClusterError;
use crate::partition::BrokerId;
use crate::registry::TopicRegistry;

pub use coordinator::GroupCoordinator;
pub use weir_coordinator::group::{
    Assignor, CONSUMER_HEARTBEAT_INTERVAL_MS, CONSUMER_SESSION_TIMEOUT_MS, ClassicDescription,
    ClassicMemberDescription, ClassicState, CommittedOffset, DEFAULT_EXPIRY_CHECK_INTERVAL,
    DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_INITIAL_REBALANCE_DELAY, DEFAULT_JOIN_WINDOW,
    DEFAULT_MAX_GROUPS, DEFAULT_MAX_MEMBERS_PER_GROUP, DEFAULT_MAX_SESSION_TIMEOUT,
    DEFAULT_MIN_SESSION_TIMEOUT, DEFAULT_OFFSETS_PARTITIONS, DEFAULT_OFFSETS_RETENTION,
    DEFAULT_OFFSETS_RETENTION_CHECK_INTERVAL, DEFAULT_PENDING_HEARTBEAT_INTERVAL,
    DEFAULT_REBALANCE_TIMEOUT, DEFAULT_SESSION_TIMEOUT, GroupConfig, GroupDescription,
    GroupErrorCode, GroupMetrics, GroupOverrides, GroupProtocol, GroupState, GroupSummary,
    Heartbeat, HeartbeatOutcome, JoinAnswer, JoinGroup, JoinOutcome, MAX_ASSIGNMENT_BYTES,
    MAX_CACHED_REGEXES, MAX_CLIENT_ID_CHARS, MAX_COMMIT_METADATA_BYTES, MAX_GROUP_ID_BYTES,
    MAX_GROUP_INSTANCE_ID_BYTES, MAX_MEMBER_ID_CHARS, MAX_OFFSETS_PER_COMMIT, MAX_OWNED_PARTITIONS,
    MAX_PROTOCOL_METADATA_BYTES, MAX_PROTOCOL_NAME_CHARS, MAX_PROTOCOLS_PER_MEMBER,
    MAX_REBALANCE_TIMEOUT, MAX_REGEX_BYTES, MAX_REGEX_COMPILED_BYTES, MAX_SUBSCRIBED_TOPICS,
    MemberDescription, OFFSETS_TOPIC, OffsetCommit, OffsetReset, PartitionLag, PartitionProgress,
    RawOffsetsRecord, ResetBounds, ResetSpec, SyncAnswer, SyncGroup, TopicPartitions, assignor,
    java_string_hash, partition_for_group,
};
use weir_coordinator::group::{classic, client_fields_too_long, consumer_protocol, records, state};

/// Why a group operation failed: the machines' refusals (weir-coordinator's
/// `GroupError`) or this crate's [`ClusterError`] (`GroupError::Cluster`).
pub type GroupError = weir_coordinator::group::GroupError<ClusterError>;

impl weir_coordinator::group::ClusterCause for ClusterError {}

// `__consumer_offsets` is an ordinary topic: the coordinator's bound on its partitions
// is within the registry's.
const _: () = assert!(
    weir_coordinator::group::MAX_OFFSETS_PARTITIONS <= crate::registry::MAX_PARTITIONS_PER_TOPIC
);

/// Replays `__consumer_offsets` records (key, value or tombstone, log offset) into an
/// empty shard as a coordinator's load does; the error says which record is bad. For
/// the fuzz targets of `weir-fuzz` only: not part of the coordinator's API.
#[doc(hidden)]
pub fn replay_records_for_fuzzing(records: &[RawOffsetsRecord<'_>]) -> Result<(), String> {
    weir_coordinator::group::shard::replay_for_fuzzing(records, std::time::Instant::now())
}

/// Replicas of each `__consumer_offsets` partition when the broker creates it (Kafka's
/// `offsets.topic.replication.factor`), fewer if fewer brokers are registered then: the
/// groups' coordinator moves to another replica when its broker fails.
pub const OFFSETS_REPLICATION_FACTOR: u32 = 3;
/// `segment.bytes` of `__consumer_offsets`: small segments so compaction can clean them.
pub const OFFSETS_SEGMENT_BYTES: u64 = 100 * 1024 * 1024;
/// Longest a load waits for a new leader of a `__consumer_offsets` partition to commit
/// what its log holds (the high watermark to reach the log end) before it moves on to
/// the next partition and tries again on the next leadership check. Short, because
/// partitions load one after another and a slow one must not hold up the rest.
pub const LOAD_WAIT: Duration = Duration::from_millis(500);
/// Longest [`GroupCoordinator::open`] waits for the shards this broker leads to load.
pub const OPEN_LOAD_WAIT: Duration = Duration::from_secs(10);
/// How often the coordinator checks which `__consumer_offsets` partitions it leads,
/// besides on every metadata change.
pub const LEADERSHIP_CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// Bytes read per call while replaying a `__consumer_offsets` partition.
pub const REPLAY_READ_BYTES: usize = 1024 * 1024;

/// The `__consumer_offsets` partition of `group_id` and the broker that leads it (its
/// coordinator; -1 if the partition has no leader now), as this broker's metadata says.
pub fn find_coordinator(
    registry: &TopicRegistry,
    group_id: &str,
) -> Result<(u32, BrokerId), GroupError> {
    validate_group_id(group_id)?;
    Ok(crate::internal_topic::coordinator_of(
        registry,
        OFFSETS_TOPIC,
        group_id,
    )?)
}

/// Checks a group id: any non-empty string of at most [`MAX_GROUP_ID_BYTES`] bytes (as
/// Kafka).
pub fn validate_group_id(group_id: &str) -> Result<(), GroupError> {
    Ok(weir_coordinator::group::validate_group_id(group_id)?)
}
