//! Consumer groups as pure state machines: KIP-848 membership with server-side,
//! incremental assignment, Kafka's classic protocol, committed offsets, and the binary
//! records of `__consumer_offsets` that carry all of it across a coordinator failover.
//!
//! - `state`: the membership and reconciliation state machine of one KIP-848 group,
//!   which keeps the invariant that no partition is ever in the assignment of two
//!   members.
//! - [`assignor`]: the server-side assignors (`uniform`, `range`, `round-robin`).
//! - `classic`: the classic protocol's state machine of one group (JoinGroup,
//!   SyncGroup, Heartbeat, LeaveGroup).
//! - `consumer_protocol`: the consumer protocol's subscription and assignment bytes
//!   classic members exchange, decoded for descriptions.
//! - `records`: the binary keys and values in `__consumer_offsets`.
//! - [`shard`]: the groups of one `__consumer_offsets` partition: applying records
//!   (replay and own writes), the membership records each change writes, the group
//!   deletion's tombstones.
//!
//! Time comes in as a value (`now: Instant`); nothing here reads a clock, spawns a task or
//! touches the log: weir-cluster's `group` module drives these machines on the leader of
//! each `__consumer_offsets` partition (`docs/consumer-groups.md`).

pub mod assignor;
pub mod classic;
mod config;
pub mod consumer_protocol;
mod error;
pub mod records;
pub mod shard;
pub mod state;

use std::collections::BTreeMap;
use std::time::Duration;

pub use assignor::Assignor;
pub use classic::{
    ClassicDescription, ClassicMemberDescription, ClassicState, JoinAnswer, JoinGroup, JoinOutcome,
    SyncAnswer, SyncGroup,
};
pub use config::*;
pub use error::*;

/// A broker's id as the coordinators name one (weir-cluster's `BrokerId`); -1 for none.
pub type BrokerId = i32;

/// A `__consumer_offsets` record as stored: key, value (`None`: a tombstone), log offset.
#[doc(hidden)]
pub type RawOffsetsRecord<'a> = (&'a [u8], Option<&'a [u8]>, i64);

/// Most partitions of `__consumer_offsets` (weir-cluster checks it is no more than a
/// topic may have).
pub const MAX_OFFSETS_PARTITIONS: u32 = 10_000;

/// The internal topic holding committed offsets and group records.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Partitions of `__consumer_offsets` when the broker creates it (Kafka's
/// `offsets.topic.num.partitions`). An existing topic keeps its count.
pub const DEFAULT_OFFSETS_PARTITIONS: u32 = 16;
/// Longest group id, in bytes of UTF-8. Kafka accepts any non-empty string as a group id,
/// bounded only by its protocol's string length (32,767 bytes); Weir keeps ids short
/// enough for every place one is stored or shown: `__consumer_offsets` keys, the share
/// state records (at most 255 bytes, `share::MAX_GROUP_ID_BYTES`), metric labels and
/// console URLs.
pub const MAX_GROUP_ID_BYTES: usize = 249;
/// Longest member id a client may choose (the broker's own are 36-character UUIDs).
pub const MAX_MEMBER_ID_CHARS: usize = 128;
/// Longest client id or client host kept for a member.
pub const MAX_CLIENT_ID_CHARS: usize = 256;
/// Most topics one member may subscribe to by name.
pub const MAX_SUBSCRIBED_TOPICS: usize = 10_000;
/// Longest subscription regex, in bytes.
pub const MAX_REGEX_BYTES: usize = 1024;
/// Most memory one compiled subscription regex may take (the `regex` crate's size
/// limit), so a pathological pattern is refused instead of eating the heap.
pub const MAX_REGEX_COMPILED_BYTES: usize = 1024 * 1024;
/// Compiled regexes the coordinator caches (by source text); the cache is cleared when
/// full.
pub const MAX_CACHED_REGEXES: usize = 1024;
/// Why a member's client id or client host is refused (over [`MAX_CLIENT_ID_CHARS`]
/// bytes), if one is: both protocols' joins check it.
pub fn client_fields_too_long(client_id: &str, client_host: &str) -> Option<String> {
    [("client_id", client_id), ("client_host", client_host)]
        .into_iter()
        .find(|(_, value)| value.len() > MAX_CLIENT_ID_CHARS)
        .map(|(name, value)| {
            format!(
                "{name} is {} bytes; the limit is {MAX_CLIENT_ID_CHARS}",
                value.len()
            )
        })
}

/// Most bytes of metadata kept with one committed offset.
pub const MAX_COMMIT_METADATA_BYTES: usize = 4096;
/// Most partitions in one commit (one commit is one record batch).
pub const MAX_OFFSETS_PER_COMMIT: usize = 10_000;
/// Most owned partitions a heartbeat may list.
pub const MAX_OWNED_PARTITIONS: usize = 100_000;
/// Longest protocol type or protocol (assignor) name of a classic member.
pub const MAX_PROTOCOL_NAME_CHARS: usize = 256;
/// Most protocols (assignors) a classic member may name in one JoinGroup.
pub const MAX_PROTOCOLS_PER_MEMBER: usize = 64;
/// Most bytes of a classic member's metadata for one protocol (its subscription: a
/// consumer subscribed to 10,000 topics of 100 characters sends about 1 MB).
pub const MAX_PROTOCOL_METADATA_BYTES: usize = 2 * 1024 * 1024;
/// Most bytes of one member's assignment in a classic leader's SyncGroup.
pub const MAX_ASSIGNMENT_BYTES: usize = 2 * 1024 * 1024;
/// Longest `group.instance.id` of a static classic member (Kafka checks it as it checks
/// topic names: 249).
pub const MAX_GROUP_INSTANCE_ID_BYTES: usize = 249;
/// Longest rebalance timeout a classic member may ask for (how long a join phase may
/// wait for it); longer ones are cut to this.
pub const MAX_REBALANCE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Partitions by topic name, ascending.
pub type TopicPartitions = BTreeMap<String, Vec<u32>>;

/// One heartbeat of a member (join: `member_epoch` 0; leave: -1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Heartbeat {
    pub group_id: String,
    /// Empty when joining (the broker picks an id); afterwards the id it gave.
    pub member_id: String,
    /// 0 to join, -1 to leave, otherwise the epoch from the last answer.
    pub member_epoch: i32,
    pub client_id: String,
    /// The member's address as the broker saw it.
    pub client_host: String,
    /// Topics by name; empty keeps the subscription (required when joining, unless
    /// `topic_regex` is given). Cannot be combined with `topic_regex`.
    pub topics: Vec<String>,
    /// A regex matched against whole topic names; `None` or empty keeps the subscription.
    pub topic_regex: Option<String>,
    /// `uniform`, `range` or `round-robin`; `None` or empty keeps the member's choice.
    pub assignor: Option<String>,
    /// Exactly the partitions the member is consuming now.
    pub owned: TopicPartitions,
    /// `owned` is not sent: the member owns what it owned at its last heartbeat (Kafka's
    /// ConsumerGroupHeartbeat sends its partitions only when they change). It then still
    /// holds whatever it was asked to release.
    pub owned_unchanged: bool,
    /// Asked-for session timeout, clamped to the configured limits; `None` (asked on
    /// each heartbeat) is the group's: its own `consumer.session.timeout.ms`, else the
    /// coordinator's default.
    pub session_timeout: Option<Duration>,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatOutcome {
    pub member_id: String,
    /// The member's epoch: -1 after leaving.
    pub member_epoch: i32,
    pub group_epoch: i32,
    /// When to heartbeat next.
    pub heartbeat_interval: Duration,
    pub session_timeout: Duration,
    /// The partitions the member may consume now; `None` after leaving.
    pub assignment: Option<TopicPartitions>,
}

/// One partition's offset to commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommit {
    pub topic: String,
    pub partition: u32,
    /// The next offset to consume.
    pub offset: i64,
    /// Free text kept with the offset (at most [`MAX_COMMIT_METADATA_BYTES`]).
    pub metadata: String,
    /// The leader epoch of the last record consumed, if the committer knows it (Kafka's
    /// committed leader epoch): kept and fetched back as given.
    pub leader_epoch: Option<i32>,
}

/// One partition's committed offset as FetchOffsets returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: u32,
    /// `None` if the group has no offset for the partition.
    pub offset: Option<i64>,
    pub metadata: String,
    /// The committed leader epoch; `None` if none was committed (or without an offset).
    pub leader_epoch: Option<i32>,
    /// Milliseconds since the Unix epoch; `None` without an offset.
    pub commit_timestamp_ms: Option<i64>,
    /// A transaction has an offset of this partition pending (written, its marker not yet
    /// in the log): Kafka's OffsetFetch with `require_stable` answers
    /// UNSTABLE_OFFSET_COMMIT for it (KIP-447). Read with the offset, under one lock, so
    /// the two agree: read apart, a commit marker landing between them let an answer pair
    /// the offset from before the transaction with "nothing pending".
    pub pending: bool,
}

/// What a group is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum GroupState {
    /// No members.
    Empty,
    /// Members are moving partitions towards the target assignment.
    Assigning,
    /// Every member has its target assignment.
    Stable,
    /// Being deleted.
    Dead,
}

impl GroupState {
    /// The name the API uses: `empty`, `assigning`, `stable`, `dead`.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Empty => "empty",
            GroupState::Assigning => "assigning",
            GroupState::Stable => "stable",
            GroupState::Dead => "dead",
        }
    }
}

/// Which membership protocol a group runs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum GroupProtocol {
    /// KIP-848: the broker assigns partitions (Weir's gRPC Heartbeat, Kafka's
    /// ConsumerGroupHeartbeat).
    Consumer,
    /// Kafka's classic protocol (JoinGroup, SyncGroup), where the members assign; also
    /// a group with committed offsets and no members (`protocol_type` empty then, as
    /// Kafka shows a group of consumers that commit without joining).
    Classic {
        state: ClassicState,
        protocol_type: String,
    },
}

/// A group in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSummary {
    pub group_id: String,
    /// `Assigning` for a classic group that is rebalancing.
    pub state: GroupState,
    /// Members of either protocol.
    pub members: usize,
    pub protocol: GroupProtocol,
}

/// One member of a described group.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MemberDescription {
    pub member_id: String,
    pub client_id: String,
    pub client_host: String,
    pub member_epoch: i32,
    pub subscribed_topics: Vec<String>,
    pub subscribed_topic_regex: Option<String>,
    /// Partitions the member may consume now.
    pub assignment: TopicPartitions,
    /// Partitions the member was asked to release and still owns.
    pub pending_revocation: TopicPartitions,
    /// Partitions the assignor intends for it.
    pub target_assignment: TopicPartitions,
    /// Since the coordinator last heard from it (a heartbeat, or the coordinator loading
    /// the group, whichever was later).
    pub since_heartbeat: Duration,
    /// It is removed once `since_heartbeat` reaches this.
    pub session_timeout: Duration,
    /// The heartbeat interval it was last told: a live member is heard from about this
    /// often.
    pub heartbeat_interval: Duration,
}

/// One partition's progress in a described group.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartitionProgress {
    pub topic: String,
    pub partition: u32,
    pub committed_offset: Option<i64>,
    /// `None` when the topic or partition no longer exists, or (until the broker core
    /// asks its leader) when this broker hosts no replica of it.
    pub high_watermark: Option<i64>,
    /// High watermark minus the committed offset (minus the log start offset if nothing
    /// is committed), never below 0; `None` with the high watermark.
    pub lag: Option<i64>,
    /// The member owning the partition now (including one still releasing it).
    pub member_id: Option<String>,
}

/// A group's state, members and offsets.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: GroupState,
    pub group_epoch: i32,
    pub assignor: String,
    /// By member id.
    pub members: Vec<MemberDescription>,
    /// Every partition the group subscribes to or has an offset for, by topic then
    /// partition.
    pub offsets: Vec<PartitionProgress>,
    pub coordinator_partition: u32,
    pub protocol: GroupProtocol,
    /// A classic group's generation and members as Kafka's DescribeGroups shows them
    /// (their metadata and assignments as the members sent them); `members` has them
    /// too, with the consumer protocol's topics and partitions decoded.
    pub classic: Option<ClassicDescription>,
}

/// Where ResetOffsets moves each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetSpec {
    /// The log start offset.
    Earliest,
    /// The high watermark.
    Latest,
    /// This offset, clamped to `[log start, high watermark]`.
    Offset(i64),
    /// The first offset with a timestamp at or after this (ms since the Unix epoch), or
    /// the high watermark if there is none.
    Timestamp(i64),
    /// The committed offset (the log start if none) moved by this many, clamped.
    ShiftBy(i64),
}

/// What a reset needs of a partition another broker leads, as that leader reported it:
/// its log start and high watermark, and for [`ResetSpec::Timestamp`] the offset found for
/// the timestamp (`None`: no record at or after it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResetBounds {
    pub log_start_offset: i64,
    pub high_watermark: i64,
    pub at_timestamp: Option<i64>,
}

/// One partition's reset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetReset {
    pub topic: String,
    pub partition: u32,
    pub previous: Option<i64>,
    pub new: i64,
}

/// Counters of one group for the metrics endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetrics {
    pub group_id: String,
    pub state: GroupState,
    pub members: usize,
    pub group_epoch: i32,
    /// Target assignment recomputations (group epoch bumps) since the broker started.
    pub rebalances: u64,
}

/// One committed partition's lag, for the metrics endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub group_id: String,
    pub topic: String,
    pub partition: u32,
    pub committed_offset: i64,
    pub high_watermark: i64,
    /// `high_watermark - committed_offset`, never below 0.
    pub lag: i64,
}

/// Java's `String.hashCode` (over UTF-16 code units), as Kafka hashes group ids.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(unit as i32))
}

/// The `__consumer_offsets` partition of `group_id` among `partitions`: Kafka's rule,
/// `abs(hashCode) % partitions` with `abs(i32::MIN)` taken as 0.
pub fn partition_for_group(group_id: &str, partitions: u32) -> u32 {
    let hash = java_string_hash(group_id);
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs as u32 % partitions.max(1)
}

#[cfg(test)]
mod tests;
