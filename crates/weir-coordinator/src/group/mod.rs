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
pub mod consumer_protocol;
pub mod records;
pub mod shard;
pub mod state;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

pub use assignor::Assignor;
pub use classic::{
    ClassicDescription, ClassicMemberDescription, ClassicState, JoinAnswer, JoinGroup, JoinOutcome,
    SyncAnswer, SyncGroup,
};

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

/// Settings of the group coordinator.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// Partitions of `__consumer_offsets` if the coordinator creates it.
    pub offsets_partitions: u32,
    /// Session timeout of members that do not ask for one.
    pub session_timeout: Duration,
    /// Shortest session timeout a member may ask for.
    pub min_session_timeout: Duration,
    /// Longest session timeout a member may ask for.
    pub max_session_timeout: Duration,
    /// How often members heartbeat when nothing is moving (a member whose session
    /// timeout is shorter than three intervals is told a third of its timeout instead).
    pub heartbeat_interval: Duration,
    /// Shortest heartbeat interval a group's own `consumer.heartbeat.interval.ms` may
    /// set (Kafka's `group.consumer.min.heartbeat.interval.ms`).
    pub min_heartbeat_interval: Duration,
    /// Longest heartbeat interval a group's own `consumer.heartbeat.interval.ms` may set
    /// (Kafka's `group.consumer.max.heartbeat.interval.ms`).
    pub max_heartbeat_interval: Duration,
    /// How often a member heartbeats while it must release partitions or waits for
    /// partitions another member is releasing, and during `join_window`.
    pub pending_heartbeat_interval: Duration,
    /// After a member joins, every member of the group is told
    /// `pending_heartbeat_interval` for this long, settled or not: members that join
    /// together (a deployment starting several consumers) then hear of each other
    /// within that interval instead of a full `heartbeat_interval`, in which the first
    /// to join would hold every partition while the others wait.
    pub join_window: Duration,
    /// How long a member may keep partitions it was asked to release before it is
    /// removed from the group (Kafka's rebalance timeout), so a member that heartbeats
    /// but never releases cannot hold partitions forever.
    pub rebalance_timeout: Duration,
    /// How often the expiry task checks sessions and topic changes.
    pub expiry_check_interval: Duration,
    /// Most members in one group.
    pub max_members_per_group: usize,
    /// Most groups on this coordinator.
    pub max_groups: usize,
    /// How long a group must have been empty (no members, no commit) before its
    /// committed offsets, and then the group, are deleted (Kafka's
    /// `offsets.retention.minutes`, KIP-211). A group with members keeps its offsets.
    pub offsets_retention: Duration,
    /// How often the expiry task looks for groups past `offsets_retention` (Kafka's
    /// `offsets.retention.check.interval.ms`); never more often than
    /// `expiry_check_interval`.
    pub offsets_retention_check_interval: Duration,
    /// How long the first join phase of an empty classic group waits for more members,
    /// and waits again while they keep coming, up to the rebalance timeout (Kafka's
    /// `group.initial.rebalance.delay.ms`): consumers started together share the first
    /// generation instead of rebalancing once per member. Zero: no wait.
    pub initial_rebalance_delay: Duration,
}

/// Default session timeout (Kafka's `group.consumer.session.timeout.ms`).
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(45);
/// Default shortest session timeout a member may ask for.
pub const DEFAULT_MIN_SESSION_TIMEOUT: Duration = Duration::from_secs(1);
/// Default longest session timeout a member may ask for.
pub const DEFAULT_MAX_SESSION_TIMEOUT: Duration = Duration::from_secs(60);
/// Default heartbeat interval.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);
/// Default shortest heartbeat interval a group may set for itself (Kafka's is 5 s, above
/// Weir's default interval; each heartbeat is cheap here).
pub const DEFAULT_MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// Default longest heartbeat interval a group may set for itself (Kafka's
/// `group.consumer.max.heartbeat.interval.ms`).
pub const DEFAULT_MAX_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(15);
/// Default heartbeat interval while partitions are moving.
pub const DEFAULT_PENDING_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(100);
/// Default join window: consumers started together join within a fraction of a second
/// of each other; each join restarts the window. At most 10 heartbeats per member per
/// second for that long.
pub const DEFAULT_JOIN_WINDOW: Duration = Duration::from_secs(1);
/// Default rebalance timeout (Kafka's `max.poll.interval.ms` default).
pub const DEFAULT_REBALANCE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default interval of the expiry task.
pub const DEFAULT_EXPIRY_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// Default most members per group.
pub const DEFAULT_MAX_MEMBERS_PER_GROUP: usize = 1000;
/// Default most groups per coordinator.
pub const DEFAULT_MAX_GROUPS: usize = 100_000;
/// Default offsets retention of empty groups: 7 days (Kafka's default).
pub const DEFAULT_OFFSETS_RETENTION: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// Default period of the offsets retention check: 10 minutes (Kafka's default).
pub const DEFAULT_OFFSETS_RETENTION_CHECK_INTERVAL: Duration = Duration::from_secs(600);
/// Default initial rebalance delay of classic groups: 3 s (Kafka's default).
pub const DEFAULT_INITIAL_REBALANCE_DELAY: Duration = Duration::from_secs(3);

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            offsets_partitions: DEFAULT_OFFSETS_PARTITIONS,
            session_timeout: DEFAULT_SESSION_TIMEOUT,
            min_session_timeout: DEFAULT_MIN_SESSION_TIMEOUT,
            max_session_timeout: DEFAULT_MAX_SESSION_TIMEOUT,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            min_heartbeat_interval: DEFAULT_MIN_HEARTBEAT_INTERVAL,
            max_heartbeat_interval: DEFAULT_MAX_HEARTBEAT_INTERVAL,
            pending_heartbeat_interval: DEFAULT_PENDING_HEARTBEAT_INTERVAL,
            join_window: DEFAULT_JOIN_WINDOW,
            rebalance_timeout: DEFAULT_REBALANCE_TIMEOUT,
            expiry_check_interval: DEFAULT_EXPIRY_CHECK_INTERVAL,
            max_members_per_group: DEFAULT_MAX_MEMBERS_PER_GROUP,
            max_groups: DEFAULT_MAX_GROUPS,
            offsets_retention: DEFAULT_OFFSETS_RETENTION,
            offsets_retention_check_interval: DEFAULT_OFFSETS_RETENTION_CHECK_INTERVAL,
            initial_rebalance_delay: DEFAULT_INITIAL_REBALANCE_DELAY,
        }
    }
}

impl GroupConfig {
    /// Checks that the settings make sense together.
    pub fn validate(&self) -> Result<(), GroupError> {
        let bad = |why: String| Err(GroupError::InvalidRequest(why));
        if !(1..=MAX_OFFSETS_PARTITIONS).contains(&self.offsets_partitions) {
            return bad(format!(
                "offsets_partitions {} is outside 1..={MAX_OFFSETS_PARTITIONS}",
                self.offsets_partitions
            ));
        }
        if self.min_session_timeout > self.max_session_timeout
            || !(self.min_session_timeout..=self.max_session_timeout)
                .contains(&self.session_timeout)
        {
            return bad(format!(
                "session timeouts must satisfy min <= default <= max (got {:?} <= {:?} <= {:?})",
                self.min_session_timeout, self.session_timeout, self.max_session_timeout
            ));
        }
        if self.heartbeat_interval.is_zero()
            || self.pending_heartbeat_interval.is_zero()
            || self.heartbeat_interval >= self.session_timeout
            || self.pending_heartbeat_interval > self.heartbeat_interval
        {
            return bad(format!(
                "heartbeat intervals must be above zero, pending <= heartbeat < session timeout \
                 (got {:?}, {:?}, {:?})",
                self.pending_heartbeat_interval, self.heartbeat_interval, self.session_timeout
            ));
        }
        // The bounds are a group's own interval's (the default may be outside them:
        // tests run with short ones).
        if self.min_heartbeat_interval.is_zero()
            || self.min_heartbeat_interval > self.max_heartbeat_interval
        {
            return bad(format!(
                "a group's heartbeat interval bounds must satisfy 0 < min <= max (got {:?} and \
                 {:?})",
                self.min_heartbeat_interval, self.max_heartbeat_interval
            ));
        }
        if self.expiry_check_interval.is_zero()
            || self.rebalance_timeout.is_zero()
            || self.max_members_per_group == 0
            || self.max_groups == 0
        {
            return bad(
                "expiry_check_interval, rebalance_timeout, max_members_per_group and max_groups \
                 must be above zero"
                    .to_string(),
            );
        }
        if self.offsets_retention.is_zero() || self.offsets_retention_check_interval.is_zero() {
            return bad(format!(
                "offsets_retention and offsets_retention_check_interval must be above zero \
                 (got {:?}, {:?})",
                self.offsets_retention, self.offsets_retention_check_interval
            ));
        }
        Ok(())
    }
}

/// Kafka's name of a consumer group's own session timeout (a group config, KIP-848).
pub const CONSUMER_SESSION_TIMEOUT_MS: &str = "consumer.session.timeout.ms";
/// Kafka's name of a consumer group's own heartbeat interval (a group config, KIP-848).
pub const CONSUMER_HEARTBEAT_INTERVAL_MS: &str = "consumer.heartbeat.interval.ms";

/// A consumer group's own settings, over the coordinator's ([`GroupConfig`]): Kafka's
/// group configs `consumer.session.timeout.ms` and `consumer.heartbeat.interval.ms`.
/// The shell keeps them (weir-cluster: in the metadata log, as text by key:
/// [`GroupOverrides::from_configs`], [`GroupOverrides::to_configs`]) and passes them with
/// each heartbeat. `None`: the coordinator's setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupOverrides {
    /// The session timeout of the group's members that ask for none (every Kafka
    /// member: ConsumerGroupHeartbeat carries none).
    pub session_timeout: Option<Duration>,
    /// The heartbeat interval the group's members are told while settled.
    pub heartbeat_interval: Option<Duration>,
}

impl GroupOverrides {
    /// Whether the group sets nothing of its own.
    pub fn is_empty(&self) -> bool {
        self.session_timeout.is_none() && self.heartbeat_interval.is_none()
    }

    /// The settings as config text (a whole number of ms) by Kafka's key; a key left to
    /// the coordinator is absent.
    pub fn to_configs(&self) -> BTreeMap<String, String> {
        [
            (CONSUMER_SESSION_TIMEOUT_MS, self.session_timeout),
            (CONSUMER_HEARTBEAT_INTERVAL_MS, self.heartbeat_interval),
        ]
        .into_iter()
        .filter_map(|(key, d)| Some((key.to_string(), d?.as_millis().to_string())))
        .collect()
    }

    /// The settings of config text by Kafka's key (each value a whole number of ms from
    /// 1 to `i32::MAX`, Kafka's INT; surrounding blanks ignored). A key that is not one
    /// of the consumer group keys is refused; the message names the key (and value).
    pub fn from_configs<'a>(
        configs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<GroupOverrides, String> {
        let mut own = GroupOverrides::default();
        for (key, value) in configs {
            let ms: u32 = value
                .trim()
                .parse()
                .ok()
                .filter(|ms| *ms >= 1 && i32::try_from(*ms).is_ok())
                .ok_or_else(|| {
                    format!(
                        "{key} is a whole number of ms from 1 to {}, not {value:?}",
                        i32::MAX
                    )
                })?;
            let d = Some(Duration::from_millis(u64::from(ms)));
            match key {
                CONSUMER_SESSION_TIMEOUT_MS => own.session_timeout = d,
                CONSUMER_HEARTBEAT_INTERVAL_MS => own.heartbeat_interval = d,
                other => return Err(format!("{other} is not a consumer group config")),
            }
        }
        Ok(own)
    }

    /// The coordinator's settings with the group's own in their place.
    pub fn apply(&self, config: &GroupConfig) -> GroupConfig {
        GroupConfig {
            session_timeout: self.session_timeout.unwrap_or(config.session_timeout),
            heartbeat_interval: self.heartbeat_interval.unwrap_or(config.heartbeat_interval),
            ..config.clone()
        }
    }

    /// Checks the group's settings as Kafka checks a group's configs, together with the
    /// coordinator's for what the group leaves unset: each within the coordinator's
    /// bounds, and the heartbeat interval below the session timeout. The message names
    /// the key, the value and the bound.
    pub fn validate(&self, config: &GroupConfig) -> Result<(), String> {
        let ms = |d: Duration| d.as_millis();
        let effective = self.apply(config);
        let (session, heartbeat) = (effective.session_timeout, effective.heartbeat_interval);
        // Kafka's words: "KEY VALUE must be greater than or equal to the broker's
        // group.consumer.min.NAME.ms (BOUND)", and "less than or equal to" for the max.
        let within = |key: &str,
                      value: Option<Duration>,
                      name: &str,
                      min: Duration,
                      max: Duration| {
            let Some(v) = value else { return Ok(()) };
            let (relation, bound, which) = if v < min {
                ("greater than or equal to", min, "min")
            } else if v > max {
                ("less than or equal to", max, "max")
            } else {
                return Ok(());
            };
            Err(format!(
                "{key} {} must be {relation} the broker's group.consumer.{which}.{name}.ms ({})",
                ms(v),
                ms(bound)
            ))
        };
        within(
            CONSUMER_SESSION_TIMEOUT_MS,
            self.session_timeout,
            "session.timeout",
            config.min_session_timeout,
            config.max_session_timeout,
        )?;
        within(
            CONSUMER_HEARTBEAT_INTERVAL_MS,
            self.heartbeat_interval,
            "heartbeat.interval",
            config.min_heartbeat_interval,
            config.max_heartbeat_interval,
        )?;
        if session <= heartbeat {
            return Err(format!(
                "{CONSUMER_SESSION_TIMEOUT_MS} ({}) must be greater than \
                 {CONSUMER_HEARTBEAT_INTERVAL_MS} ({})",
                ms(session),
                ms(heartbeat)
            ));
        }
        Ok(())
    }
}

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
}

/// What a group is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
#[derive(Debug, Clone, PartialEq, Eq)]
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
#[derive(Debug, Clone, PartialEq, Eq)]
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionProgress {
    pub topic: String,
    pub partition: u32,
    pub committed_offset: Option<i64>,
    /// `None` when the topic or partition no longer exists.
    pub high_watermark: Option<i64>,
    /// High watermark minus the committed offset (minus the log start offset if nothing
    /// is committed), never below 0; `None` when the partition no longer exists.
    pub lag: Option<i64>,
    /// The member owning the partition now (including one still releasing it).
    pub member_id: Option<String>,
}

/// A group's state, members and offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// The gRPC status code a [`GroupError`] maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupErrorCode {
    InvalidArgument,
    NotFound,
    FailedPrecondition,
    ResourceExhausted,
    /// A record in `__consumer_offsets` the broker cannot read (a bug, or data written by
    /// an incompatible broker).
    Internal,
    /// Retry: elsewhere (`NotCoordinator`) or shortly (`CoordinatorLoading`).
    Unavailable,
    /// Map the inner cluster error (weir-cluster's `ClusterError`) as every other
    /// cluster error is mapped.
    Cluster,
}

/// The error of the shell that drives the group machines (weir-cluster's
/// `ClusterError`), which [`GroupError::Cluster`] carries. The machines themselves never
/// fail that way: they answer `GroupError<Infallible>` (the default), which becomes the
/// shell's `GroupError<C>` through `From` (so `?` works across the boundary).
pub trait ClusterCause: std::error::Error + Send + Sync + 'static {}

/// Why a group operation failed. [`GroupError::code`] names the gRPC code of each. `C` is
/// the shell's own failure ([`ClusterCause`]); the machines' errors have none.
#[derive(Debug, thiserror::Error)]
pub enum GroupError<C = Infallible> {
    #[error("group {0:?} does not exist")]
    UnknownGroup(String),
    #[error(
        "member {member_id:?} is not in group {group_id:?} (removed after its session timed \
         out); drop your partitions without committing and join \
         again with member_epoch 0"
    )]
    UnknownMember { group_id: String, member_id: String },
    #[error(
        "member {member_id:?} of group {group_id:?} is fenced: it sent epoch {given} but its \
         epoch is {current}; drop your partitions without committing and join again with \
         member_epoch 0"
    )]
    FencedMember {
        group_id: String,
        member_id: String,
        given: i32,
        current: i32,
    },
    #[error(
        "member {member_id:?} of group {group_id:?} committed with epoch {given} but its epoch \
         is {current}; heartbeat to learn the current epoch and commit with it (or join again \
         with member_epoch 0 if fenced)"
    )]
    StaleEpoch {
        group_id: String,
        member_id: String,
        given: i32,
        current: i32,
    },
    #[error(
        "group {group_id:?} has {members} member(s); {operation} needs a group without members \
         (stop its consumers and wait for their sessions to end)"
    )]
    GroupNotEmpty {
        group_id: String,
        members: usize,
        operation: &'static str,
    },
    #[error("invalid topic regex {regex:?}: {reason}")]
    InvalidRegex { regex: String, reason: String },
    #[error("invalid group id {group_id:?}: {reason}")]
    InvalidGroupId { group_id: String, reason: String },
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    #[error("topic {topic:?} has no partition {partition} (it has {count})")]
    UnknownPartition {
        topic: String,
        partition: u32,
        count: u32,
    },
    #[error("group {group_id:?} has {max} members, the most a group may have")]
    TooManyMembers { group_id: String, max: usize },
    #[error("the coordinator holds {max} groups, the most it may; delete unused groups")]
    TooManyGroups { max: usize },
    #[error("{OFFSETS_TOPIC} partition {partition} offset {offset}: unreadable record: {reason}")]
    CorruptRecord {
        partition: u32,
        offset: i64,
        reason: String,
    },
    #[error(
        "this broker does not coordinate the group ({OFFSETS_TOPIC} partition {partition} is \
         led by broker {coordinator}); ask FindCoordinator and retry there"
    )]
    NotCoordinator {
        partition: u32,
        /// The leader of the partition as this broker knows it; -1 if none.
        coordinator: BrokerId,
    },
    #[error(
        "this broker is loading the groups of {OFFSETS_TOPIC} partition {partition} (it just \
         became their coordinator); retry shortly"
    )]
    CoordinatorLoading { partition: u32 },
    #[error(
        "group {group_id:?} is rebalancing: join again (JoinGroup) to get the new generation \
         and assignment"
    )]
    RebalanceInProgress { group_id: String },
    #[error(
        "member {member_id:?} of group {group_id:?} sent generation {given}, but the group's \
         generation is {current}; join again (JoinGroup) to get the current one"
    )]
    IllegalGeneration {
        group_id: String,
        member_id: String,
        given: i32,
        current: i32,
    },
    #[error(
        "member {member_id:?} of group {group_id:?} is fenced: group.instance.id \
         {instance_id:?} now belongs to a newer consumer that joined with it (two consumers \
         must not share a group.instance.id)"
    )]
    FencedInstanceId {
        group_id: String,
        member_id: String,
        instance_id: String,
    },
    #[error("group {group_id:?}: {reason}")]
    InconsistentGroupProtocol { group_id: String, reason: String },
    #[error(
        "group {group_id:?} has members subscribed to topic {topic:?}: its offsets are kept \
         while they are (stop them, or change their subscription, first)"
    )]
    GroupSubscribedToTopic { group_id: String, topic: String },
    #[error("session timeout {given_ms} ms is outside the broker's bounds [{min_ms}, {max_ms}] ms")]
    InvalidSessionTimeout {
        given_ms: i64,
        min_ms: u128,
        max_ms: u128,
    },
    #[error(transparent)]
    Cluster(C),
}

impl<C: ClusterCause> From<C> for GroupError<C> {
    fn from(cause: C) -> Self {
        GroupError::Cluster(cause)
    }
}

impl<C: ClusterCause> From<GroupError> for GroupError<C> {
    /// A machine's refusal as the shell's error: the same variant (a machine never fails
    /// with [`GroupError::Cluster`]).
    fn from(e: GroupError) -> Self {
        match e {
            GroupError::UnknownGroup(x) => GroupError::UnknownGroup(x),
            GroupError::UnknownMember {
                group_id,
                member_id,
            } => GroupError::UnknownMember {
                group_id,
                member_id,
            },
            GroupError::FencedMember {
                group_id,
                member_id,
                given,
                current,
            } => GroupError::FencedMember {
                group_id,
                member_id,
                given,
                current,
            },
            GroupError::StaleEpoch {
                group_id,
                member_id,
                given,
                current,
            } => GroupError::StaleEpoch {
                group_id,
                member_id,
                given,
                current,
            },
            GroupError::GroupNotEmpty {
                group_id,
                members,
                operation,
            } => GroupError::GroupNotEmpty {
                group_id,
                members,
                operation,
            },
            GroupError::InvalidRegex { regex, reason } => {
                GroupError::InvalidRegex { regex, reason }
            }
            GroupError::InvalidGroupId { group_id, reason } => {
                GroupError::InvalidGroupId { group_id, reason }
            }
            GroupError::InvalidRequest(x) => GroupError::InvalidRequest(x),
            GroupError::UnknownTopic(x) => GroupError::UnknownTopic(x),
            GroupError::UnknownPartition {
                topic,
                partition,
                count,
            } => GroupError::UnknownPartition {
                topic,
                partition,
                count,
            },
            GroupError::TooManyMembers { group_id, max } => {
                GroupError::TooManyMembers { group_id, max }
            }
            GroupError::TooManyGroups { max } => GroupError::TooManyGroups { max },
            GroupError::CorruptRecord {
                partition,
                offset,
                reason,
            } => GroupError::CorruptRecord {
                partition,
                offset,
                reason,
            },
            GroupError::NotCoordinator {
                partition,
                coordinator,
            } => GroupError::NotCoordinator {
                partition,
                coordinator,
            },
            GroupError::CoordinatorLoading { partition } => {
                GroupError::CoordinatorLoading { partition }
            }
            GroupError::RebalanceInProgress { group_id } => {
                GroupError::RebalanceInProgress { group_id }
            }
            GroupError::IllegalGeneration {
                group_id,
                member_id,
                given,
                current,
            } => GroupError::IllegalGeneration {
                group_id,
                member_id,
                given,
                current,
            },
            GroupError::FencedInstanceId {
                group_id,
                member_id,
                instance_id,
            } => GroupError::FencedInstanceId {
                group_id,
                member_id,
                instance_id,
            },
            GroupError::InconsistentGroupProtocol { group_id, reason } => {
                GroupError::InconsistentGroupProtocol { group_id, reason }
            }
            GroupError::GroupSubscribedToTopic { group_id, topic } => {
                GroupError::GroupSubscribedToTopic { group_id, topic }
            }
            GroupError::InvalidSessionTimeout {
                given_ms,
                min_ms,
                max_ms,
            } => GroupError::InvalidSessionTimeout {
                given_ms,
                min_ms,
                max_ms,
            },
            GroupError::Cluster(never) => match never {},
        }
    }
}

impl<C> GroupError<C> {
    /// The gRPC code: NOT_FOUND for unknown groups, topics and partitions;
    /// FAILED_PRECONDITION for unknown or fenced members, stale epochs and non-empty
    /// groups; INVALID_ARGUMENT for bad input; RESOURCE_EXHAUSTED for the member and group
    /// limits; INTERNAL for unreadable records; `Cluster` for [`GroupError::Cluster`],
    /// whose inner error is mapped like every other cluster error.
    pub fn code(&self) -> GroupErrorCode {
        match self {
            GroupError::UnknownGroup(_)
            | GroupError::UnknownTopic(_)
            | GroupError::UnknownPartition { .. } => GroupErrorCode::NotFound,
            GroupError::UnknownMember { .. }
            | GroupError::FencedMember { .. }
            | GroupError::StaleEpoch { .. }
            | GroupError::GroupNotEmpty { .. }
            | GroupError::RebalanceInProgress { .. }
            | GroupError::IllegalGeneration { .. }
            | GroupError::FencedInstanceId { .. }
            | GroupError::InconsistentGroupProtocol { .. }
            | GroupError::GroupSubscribedToTopic { .. } => GroupErrorCode::FailedPrecondition,
            GroupError::InvalidSessionTimeout { .. }
            | GroupError::InvalidRegex { .. }
            | GroupError::InvalidGroupId { .. }
            | GroupError::InvalidRequest(_) => GroupErrorCode::InvalidArgument,
            GroupError::TooManyMembers { .. } | GroupError::TooManyGroups { .. } => {
                GroupErrorCode::ResourceExhausted
            }
            GroupError::CorruptRecord { .. } => GroupErrorCode::Internal,
            GroupError::NotCoordinator { .. } | GroupError::CoordinatorLoading { .. } => {
                GroupErrorCode::Unavailable
            }
            GroupError::Cluster(_) => GroupErrorCode::Cluster,
        }
    }
}

/// Checks a group id: any non-empty string (as Kafka: `roundrobin,range`, `a/b`, spaces
/// and any Unicode are group ids; only topic names have an alphabet) of at most
/// [`MAX_GROUP_ID_BYTES`] bytes.
pub fn validate_group_id(group_id: &str) -> Result<(), GroupError> {
    let bad = |reason: String| {
        let mut shown = group_id.to_owned();
        if shown.len() > MAX_GROUP_ID_BYTES {
            let cut = (0..=MAX_GROUP_ID_BYTES)
                .rev()
                .find(|&i| shown.is_char_boundary(i))
                .unwrap_or(0);
            shown.truncate(cut);
        }
        Err(GroupError::InvalidGroupId {
            group_id: shown,
            reason,
        })
    };
    if group_id.is_empty() {
        return bad("it is empty".to_string());
    }
    if group_id.len() > MAX_GROUP_ID_BYTES {
        return bad(format!(
            "it is {} bytes long; the limit is {MAX_GROUP_ID_BYTES}",
            group_id.len()
        ));
    }
    Ok(())
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
mod tests {
    use super::*;

    #[test]
    fn group_ids_hash_like_java() {
        // Values from Java: "".hashCode() == 0, "a" == 97, "hello" == 99162322,
        // "polygenelubricants" == Integer.MIN_VALUE (wrapping arithmetic).
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(partition_for_group("polygenelubricants", 16), 0);
        assert_eq!(partition_for_group("hello", 50), 99_162_322 % 50);
        // A negative hash ("my-group".hashCode() == -1906497762): abs first.
        assert_eq!(java_string_hash("my-group"), -1_906_497_762);
        assert_eq!(partition_for_group("my-group", 16), 1_906_497_762 % 16);
    }

    #[test]
    fn any_non_empty_group_id_up_to_the_limit_is_accepted_as_kafka_does() {
        let longest = "x".repeat(MAX_GROUP_ID_BYTES);
        for good in [
            "orders.v1_x-2",
            "roundrobin,range",
            "a b/c?d#e%f\\\"g",
            "ü 日本 🦀",
            "\n",
            &longest,
        ] {
            assert!(validate_group_id(good).is_ok(), "{good:?}");
        }
        // Too long in bytes though not in characters; the message shows a cut that
        // stays on a character boundary.
        let long = "é".repeat(MAX_GROUP_ID_BYTES / 2 + 1);
        for bad in ["", &"x".repeat(MAX_GROUP_ID_BYTES + 1), &long] {
            match validate_group_id(bad) {
                Err(GroupError::InvalidGroupId { group_id, reason }) => {
                    assert!(group_id.len() <= MAX_GROUP_ID_BYTES, "{group_id}");
                    assert!(
                        reason.contains("empty") || reason.contains("249"),
                        "{reason}"
                    );
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn default_config_is_valid_and_bad_ones_are_refused() {
        GroupConfig::default().validate().unwrap();
        let bad = GroupConfig {
            heartbeat_interval: Duration::from_secs(45),
            ..GroupConfig::default()
        };
        assert!(bad.validate().is_err());
        let bad = GroupConfig {
            offsets_partitions: 0,
            ..GroupConfig::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn group_overrides_read_and_write_kafkas_config_text() {
        let own = GroupOverrides::from_configs([
            (CONSUMER_SESSION_TIMEOUT_MS, "50000"),
            (CONSUMER_HEARTBEAT_INTERVAL_MS, " 2000 "),
        ])
        .unwrap();
        assert_eq!(own.session_timeout, Some(Duration::from_secs(50)));
        assert_eq!(own.heartbeat_interval, Some(Duration::from_secs(2)));
        let text = own.to_configs();
        assert_eq!(text[CONSUMER_SESSION_TIMEOUT_MS], "50000");
        assert_eq!(text[CONSUMER_HEARTBEAT_INTERVAL_MS], "2000");
        let back = GroupOverrides::from_configs(text.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        assert_eq!(back, Ok(own));
        assert!(GroupOverrides::default().to_configs().is_empty());
        for bad in ["0", "-5", "1.5", "soon", "", "2147483648"] {
            let e = GroupOverrides::from_configs([(CONSUMER_SESSION_TIMEOUT_MS, bad)]).unwrap_err();
            assert!(e.contains(CONSUMER_SESSION_TIMEOUT_MS), "{e}");
        }
        let e = GroupOverrides::from_configs([("share.record.lock.duration.ms", "100")]);
        assert!(e.unwrap_err().contains("not a consumer group config"));
    }

    #[test]
    fn group_overrides_are_checked_against_the_coordinators_bounds() {
        let config = GroupConfig::default();
        let secs = |s: u64| Some(Duration::from_secs(s));
        let ok = GroupOverrides {
            session_timeout: secs(50),
            heartbeat_interval: None,
        };
        ok.validate(&config).unwrap();
        assert_eq!(ok.apply(&config).session_timeout, Duration::from_secs(50));
        assert_eq!(
            ok.apply(&config).heartbeat_interval,
            config.heartbeat_interval
        );
        for (bad, names) in [
            (
                GroupOverrides {
                    session_timeout: secs(61),
                    heartbeat_interval: None,
                },
                "group.consumer.max.session.timeout.ms (60000)",
            ),
            (
                GroupOverrides {
                    session_timeout: Some(Duration::from_millis(999)),
                    heartbeat_interval: None,
                },
                "group.consumer.min.session.timeout.ms (1000)",
            ),
            (
                GroupOverrides {
                    session_timeout: None,
                    heartbeat_interval: secs(16),
                },
                "group.consumer.max.heartbeat.interval.ms (15000)",
            ),
            (
                GroupOverrides {
                    session_timeout: secs(5),
                    heartbeat_interval: secs(5),
                },
                "consumer.session.timeout.ms (5000) must be greater than \
                 consumer.heartbeat.interval.ms (5000)",
            ),
            // The coordinator's heartbeat interval (3 s) counts for a group that sets
            // only its session timeout.
            (
                GroupOverrides {
                    session_timeout: secs(2),
                    heartbeat_interval: None,
                },
                "(2000) must be greater than consumer.heartbeat.interval.ms (3000)",
            ),
        ] {
            let message = bad.validate(&config).unwrap_err();
            assert!(message.contains(names), "{message}");
        }
    }
}
