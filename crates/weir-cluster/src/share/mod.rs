//! Share groups (queues on the log; docs/queues.md).
//!
//! The machines are weir-coordinator's `share` module, re-exported here under their old
//! paths: [`SharePartition`], the in-flight window of one partition for one share group
//! (the clock an argument, the log's records coming in through
//! [`SharePartition::extend`]); [`StateKey`] and [`StateValue`], its records in
//! `__share_group_state`; [`GroupSettings`] and [`HeaderFilter`]; a group's windows, their
//! snapshots and the replay a new coordinator runs. This module is their shell:
//!
//! - [`coordinator`]: [`ShareCoordinator`], the async API the broker calls (share fetch,
//!   acknowledge, describe), over the shards (`shard`) that hold the share groups of
//!   each `__share_group_state` partition this broker leads; `reader` reads the data
//!   partitions for them, locally or, where this broker hosts no replica, at their
//!   leaders through the server's [`RemoteLog`] ([`remote`]).
//! - [`dead_letter`]: the copies of archived records and the [`DeadLetterSink`] they go
//!   through.
//! - `admin`: the groups a coordinator holds, moving a share-partition's start,
//!   forgetting a topic's state or a whole group ([`StartReset`]).

mod admin;
pub mod coordinator;
pub mod dead_letter;
mod reader;
pub mod remote;
mod shard;

use std::time::Duration;

pub use admin::{StartReset, StartTarget};
pub use coordinator::{
    AckRange, AckResult, ShareCoordinator, ShareFetch, ShareFetchAnswer, ShareGroupView,
    SharePartitionView, ShareRecord, ShareStart, find_share_coordinator,
};
pub use dead_letter::{
    DLQ_DELIVERY_COUNT, DLQ_EXCHANGE, DLQ_GROUP, DLQ_HEADERS, DLQ_ORIGINAL_EXPIRATION, DLQ_REASON,
    DLQ_ROUTING_KEY, DLQ_SOURCE_OFFSET, DLQ_SOURCE_PARTITION, DLQ_SOURCE_TOPIC, DLQ_TIME,
    DeadLetterSink, DeadLetterTarget, SinkFuture,
};
pub use remote::{RemoteBatches, RemoteFuture, RemoteLog, RemoteReadError};
pub use weir_coordinator::share::{
    AckError, AckKind, Acquired, ArchiveReason, Archived, FilterError, GroupSettings,
    HeaderCondition, HeaderFilter, HeaderMatch, MAX_DELIVERY_COUNT_LIMIT, MAX_DELIVERY_DELAY_MS,
    MAX_FILTER_CONDITIONS, MAX_FILTER_KEY_BYTES, MAX_FILTER_VALUE_BYTES, MAX_FILTER_VALUES,
    MAX_GROUP_ID_BYTES, MAX_LENGTH, MAX_MESSAGE_TTL_MS, MAX_STATE_RANGES, NEVER_EXPIRES,
    PersistedState, RecordState, STATE_RECORD_VERSION, ShareConfig, SharePartition, StateKey,
    StateKind, StateRange, StateRecordError, StateValue, WindowCounts,
};
use weir_coordinator::share::{filter, partition, settings};

use crate::error::ClusterError;
use crate::partition::BrokerId;

/// The internal topic holding share groups' state.
pub const SHARE_STATE_TOPIC: &str = "__share_group_state";
/// Partitions of `__share_group_state` when the broker creates it. An existing topic
/// keeps its count.
pub const DEFAULT_SHARE_STATE_PARTITIONS: u32 = 16;
/// Replicas of each `__share_group_state` partition (fewer if fewer brokers are
/// registered when it is created).
pub const SHARE_STATE_REPLICATION_FACTOR: u32 = 3;
/// `segment.bytes` of `__share_group_state`: small segments so compaction can clean them.
pub const SHARE_STATE_SEGMENT_BYTES: u64 = 100 * 1024 * 1024;
/// Records one share fetch acquires when the request does not say.
pub const DEFAULT_SHARE_FETCH_RECORDS: usize = 500;
/// Most records one share fetch acquires.
pub const MAX_SHARE_FETCH_RECORDS: usize = 10_000;
/// Most topics one share fetch names.
pub const MAX_SHARE_FETCH_TOPICS: usize = 100;
/// Most acknowledgement entries (offset ranges) in one request.
pub const MAX_ACK_ENTRIES: usize = 10_000;
/// Most offsets one acknowledgement entry covers.
pub const MAX_ACK_RANGE_OFFSETS: i64 = 100_000;
/// Most share groups one `__share_group_state` partition's coordinator holds.
pub const MAX_SHARE_GROUPS_PER_SHARD: usize = 100_000;
/// Most partitions (or topics) one share-group admin request (reset, delete offsets)
/// names.
pub const MAX_SHARE_ADMIN_PARTITIONS: usize = 10_000;
/// Longest a share fetch waits for records.
pub const MAX_SHARE_FETCH_WAIT: Duration = Duration::from_secs(30);
/// Longest a load waits for a new leader of a `__share_group_state` partition to commit
/// what its log holds (as the group coordinator's `LOAD_WAIT`).
pub const SHARE_LOAD_WAIT: Duration = Duration::from_millis(500);
/// Longest [`ShareCoordinator::open`] waits for the shards this broker leads to load.
pub const SHARE_OPEN_LOAD_WAIT: Duration = Duration::from_secs(10);
/// How often the coordinator checks which `__share_group_state` partitions it leads,
/// besides on every metadata change.
pub const SHARE_LEADERSHIP_CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// Bytes read per call while replaying a `__share_group_state` partition or reading a
/// data partition for a share group.
pub const SHARE_READ_BYTES: usize = 1024 * 1024;
/// Bytes of the log one pass over a share-partition reads past records its group's filter
/// skips, when it found none to take: a long run of them is crossed in passes of this
/// size, each under the group's lock for no longer than these reads take.
pub const SHARE_FILTER_SCAN_BYTES: usize = 16 * SHARE_READ_BYTES;
/// Bytes of decoded records a share-partition keeps between taking them into its window
/// and handing them out (per group and partition), so a fetch does not read them twice.
pub const SHARE_CACHE_BYTES: usize = 8 * 1024 * 1024;
/// The record header that delays a record's first delivery: epoch milliseconds, ASCII
/// decimal (Celery's `eta`, SQS's `DelaySeconds`).
pub const DELIVER_AT_HEADER: &str = "weir-deliver-at";
/// The record header that expires a record not delivered by then: epoch milliseconds,
/// ASCII decimal (an AMQP message's `expiration`). It is archived as expired (and
/// dead-lettered) instead.
pub const EXPIRE_AT_HEADER: &str = "weir-expire-at";
/// How often the coordinator looks for expired records (and dead letters waiting for
/// their copy) in groups that can have them ([`GroupSettings::sweeps`]), whether or not a
/// member asks.
pub const SHARE_SWEEP_INTERVAL: Duration = Duration::from_millis(200);
/// Most records one sweep archives as expired in one share-partition (the rest wait for
/// the next pass).
pub const MAX_EXPIRED_PER_PASS: usize = 1_000;

/// Settings of the share coordinator: the defaults every share group gets.
#[derive(Debug, Clone)]
pub struct ShareGroupConfig {
    /// Partitions of `__share_group_state` if the coordinator creates it.
    pub state_partitions: u32,
    /// Each share-partition's window settings (lock duration, delivery limit, bounds).
    pub partition: ShareConfig,
}

impl Default for ShareGroupConfig {
    fn default() -> ShareGroupConfig {
        ShareGroupConfig {
            state_partitions: DEFAULT_SHARE_STATE_PARTITIONS,
            partition: ShareConfig::default(),
        }
    }
}

impl ShareGroupConfig {
    /// Refuses settings that cannot work (no lock, no delivery, an empty window).
    pub fn validate(&self) -> Result<(), ShareError> {
        let p = &self.partition;
        let bad = |what: &str| Err(ShareError::InvalidRequest(format!("share groups: {what}")));
        if self.state_partitions == 0 {
            return bad("__share_group_state needs at least one partition");
        }
        if p.lock_duration_ms == 0 || p.lock_duration_ms > MAX_DELIVERY_DELAY_MS {
            return bad("the lock duration must be between 1 ms and 7 days");
        }
        if p.delivery_count_limit == 0 {
            return bad("the delivery count limit must be at least 1");
        }
        if p.max_record_locks == 0 || p.max_window_records < p.max_record_locks {
            return bad("the window must hold at least the records that may be locked");
        }
        Ok(())
    }
}

/// What a share-group operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    #[error("invalid group id {group_id:?}: {reason}")]
    InvalidGroupId { group_id: String, reason: String },
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("share group {0:?} has no state: nothing was ever fetched by it")]
    UnknownGroup(String),
    #[error(
        "share group {group:?} is in use: members hold {held} records under locks that have not \
         expired; stop its members (or wait for their locks to end) and retry"
    )]
    GroupNotEmpty { group: String, held: usize },
    #[error("this coordinator holds {max} share groups, the most it may")]
    TooManyGroups { max: usize },
    #[error(
        "this broker does not coordinate the share group ({SHARE_STATE_TOPIC} partition \
         {partition} is led by broker {coordinator}); ask FindCoordinator and retry there"
    )]
    NotCoordinator {
        partition: u32,
        /// The leader of the partition as this broker knows it; -1 if none.
        coordinator: BrokerId,
    },
    #[error(
        "this broker is loading the share groups of {SHARE_STATE_TOPIC} partition \
         {partition} (it just became their coordinator); retry shortly"
    )]
    CoordinatorLoading { partition: u32 },
    #[error(
        "{SHARE_STATE_TOPIC} partition {partition} offset {offset}: unreadable record: {reason}"
    )]
    CorruptRecord {
        partition: u32,
        offset: i64,
        reason: String,
    },
    #[error(
        "broker {coordinator}, the share group's coordinator, hosts no replica of {topic} \
         partition {partition} and has no way to read it at its leader"
    )]
    NotHosted {
        topic: String,
        partition: u32,
        coordinator: BrokerId,
    },
    #[error(
        "{topic} partition {partition}: reading it at its leader failed ({reason}); retry shortly"
    )]
    RemoteRead {
        topic: String,
        partition: u32,
        reason: String,
    },
    #[error(
        "{topic} partition {partition}: the batch at offset {offset} cannot be decoded: {reason}"
    )]
    CorruptData {
        topic: String,
        partition: u32,
        offset: i64,
        reason: String,
    },
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

/// A state record the machines could not encode (a group id too long for its key): the
/// request's fault.
impl From<StateRecordError> for ShareError {
    fn from(e: StateRecordError) -> ShareError {
        ShareError::InvalidRequest(e.to_string())
    }
}

/// A share group id is checked as a consumer group's is.
pub(crate) fn validate_group_id(group_id: &str) -> Result<(), ShareError> {
    crate::group::validate_group_id(group_id).map_err(|e| match e {
        crate::group::GroupError::InvalidGroupId { group_id, reason } => {
            ShareError::InvalidGroupId { group_id, reason }
        }
        other => ShareError::InvalidRequest(other.to_string()),
    })
}
