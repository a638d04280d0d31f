//! The classic group protocol's membership state machine for one group (Kafka's
//! JoinGroup, SyncGroup, Heartbeat and LeaveGroup, the protocol of clients that assign
//! partitions themselves: kafka-python, aiokafka, librdkafka's default), pure: no I/O,
//! no clock (every call takes `now`), no locks. Events go in (a join, a sync, a
//! heartbeat, a leave, the clock moving), answers come out as [`Reply`]s addressed to
//! the [`Waiter`] the caller parked each JoinGroup and SyncGroup under, since those two
//! are answered only when the rebalance gets there.
//!
//! It follows Kafka's `GroupCoordinator` (KIP-394 member ids, KIP-134's initial delay,
//! the pending-sync timeout of KAFKA-12890):
//!
//! ```text
//!  Empty ──join──▶ PreparingRebalance ──every member joined, or rebalance timeout──▶
//!  CompletingRebalance (leader gets every member's metadata) ──leader's SyncGroup──▶
//!  Stable (each member gets its assignment) ──a join with new metadata, the leader's
//!  join, a leave, a session timeout──▶ PreparingRebalance ...
//! ```
//!
//! - **Member ids** are issued by the broker: a new member's first JoinGroup (v4+) is
//!   answered MEMBER_ID_REQUIRED with its id, and the member joins again with it.
//! - **Generations** number the rebalances; SyncGroup, Heartbeat and OffsetCommit must
//!   carry the current one (ILLEGAL_GENERATION otherwise).
//! - **The protocol** (the assignor) is one every member supports, chosen by the
//!   members' preferences; the group's protocol type ("consumer") is the first member's.
//! - **Rebalance**: members are told REBALANCE_IN_PROGRESS on Heartbeat and join again;
//!   the join phase ends when every member has joined or after the longest rebalance
//!   timeout, when members that did not join are removed. A group that was empty waits
//!   `initial_rebalance_delay` first (and again while members keep arriving, up to the
//!   rebalance timeout), so consumers started together share the first generation.
//! - **Sessions**: a member not heard from (Heartbeat, SyncGroup, OffsetCommit) for its
//!   session timeout is removed, except while it waits in a JoinGroup or SyncGroup; a
//!   member that does not send SyncGroup within the rebalance timeout is removed.
//!
//! - **Static members** (KIP-345: `group.instance.id`): a member that joins with an
//!   instance id the group knows, and no member id (the same consumer restarted), takes
//!   the old member's place under a new member id: it gets the current generation and
//!   its old assignment at once, with no rebalance, unless its subscription (or the
//!   protocol the group would choose) changed. A request naming an instance id with
//!   another member id than the one it now has is refused FENCED_INSTANCE_ID (the older
//!   of two consumers with one instance id). A new static member joins without
//!   MEMBER_ID_REQUIRED, as in Kafka. Sessions end static members as dynamic ones.
//! - **Persistence**: [`ClassicGroup::stored`] is the group as of its last completed
//!   generation (Stable, or Empty), which the coordinator writes to `__consumer_offsets`
//!   (Kafka's GroupMetadata record) before it answers the members; a new coordinator
//!   rebuilds the group with [`ClassicGroup::restore`], so members go on heartbeating and
//!   committing with their ids and generation after a coordinator failover. A rebalance
//!   under way is written too, apart ([`ClassicGroup::rebalance_record`], a record type
//!   older brokers skip): the members' ids (those that joined and those issued with
//!   MEMBER_ID_REQUIRED) and, once the join phase is over, the generation they were
//!   told of. A coordinator that takes the group over mid-rebalance restores that
//!   ([`ClassicGroup::restore_rebalance`]), so its members' JoinGroups and SyncGroups
//!   go on where they were, instead of UNKNOWN_MEMBER_ID for each new id and a join
//!   phase that waits out the sessions of members that will never come back (Kafka
//!   keeps a rebalance in memory only; under coordinator moves every few seconds its
//!   groups never finish one).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::records::{ClassicMemberValue, ClassicRebalanceValue, ClassicValue};

mod join;
mod session;
#[cfg(test)]
mod tests;

/// Numbers a parked JoinGroup or SyncGroup request; its answer is addressed to it.
pub type Waiter = u64;

/// Where a classic group is in its rebalance cycle (Kafka's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ClassicState {
    /// No members (offsets only, or every member left).
    Empty,
    /// Members are joining; the others were told to join again.
    PreparingRebalance,
    /// Every member joined; waiting for the leader's assignment.
    CompletingRebalance,
    /// The members have their assignments.
    Stable,
}

impl ClassicState {
    /// Kafka's name for the state (ListGroups, DescribeGroups).
    pub fn kafka_name(self) -> &'static str {
        match self {
            ClassicState::Empty => "Empty",
            ClassicState::PreparingRebalance => "PreparingRebalance",
            ClassicState::CompletingRebalance => "CompletingRebalance",
            ClassicState::Stable => "Stable",
        }
    }
}

/// A JoinGroup, checked by the coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroup {
    pub group_id: String,
    /// Empty for a new member.
    pub member_id: String,
    pub client_id: String,
    pub client_host: String,
    /// The member's `group.instance.id` (JoinGroup v5+): a static member.
    pub group_instance_id: Option<String>,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    /// "consumer" for consumers.
    pub protocol_type: String,
    /// The protocols (assignors) the member supports, most preferred first, each with
    /// its metadata (the consumer protocol's subscription).
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new member is given its id with MEMBER_ID_REQUIRED first.
    pub require_known_member_id: bool,
}

/// The answer to a JoinGroup that got into a generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinAnswer {
    pub member_id: String,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    /// Every member's id, instance id and metadata for the chosen protocol: for the
    /// leader only, which computes the assignment from them.
    pub members: Vec<(String, Option<String>, Bytes)>,
    /// The leader need not assign (KIP-814, JoinGroup v9+): a static leader that took its
    /// place again in a stable group is given the members only to know them; the group
    /// keeps its assignment.
    pub skip_assignment: bool,
}

/// What a JoinGroup comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinOutcome {
    Joined(JoinAnswer),
    /// JoinGroup v4+ from a new member: join again with this id (Kafka's
    /// MEMBER_ID_REQUIRED, which carries the id).
    MemberIdRequired {
        member_id: String,
    },
}

/// A SyncGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncGroup {
    pub group_id: String,
    pub member_id: String,
    pub generation: i32,
    /// The member's `group.instance.id` (SyncGroup v3+).
    pub group_instance_id: Option<String>,
    /// If given, must be the group's (SyncGroup v5+).
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// The leader's assignment, by member id; empty from the others.
    pub assignments: Vec<(String, Bytes)>,
}

/// The answer to a SyncGroup: the member's assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncAnswer {
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

/// Why the state machine refused a request; the coordinator adds the group's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClassicError {
    UnknownMember,
    IllegalGeneration {
        given: i32,
        current: i32,
    },
    RebalanceInProgress,
    /// What does not fit the group's protocol.
    InconsistentProtocol(String),
    TooManyMembers {
        max: usize,
    },
    /// The instance id now belongs to another member id: a newer consumer with the same
    /// `group.instance.id` took its place.
    FencedInstanceId {
        instance_id: String,
    },
}

/// An answer to a parked request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Join(Waiter, Result<JoinOutcome, ClassicError>),
    Sync(Waiter, Result<SyncAnswer, ClassicError>),
}

impl Reply {
    pub fn waiter(&self) -> Waiter {
        match self {
            Reply::Join(w, _) | Reply::Sync(w, _) => *w,
        }
    }
}

/// The settings the state machine uses.
#[derive(Debug, Clone, Copy)]
pub struct ClassicConfig {
    pub initial_rebalance_delay: Duration,
    pub max_members: usize,
}

#[derive(Debug, Clone)]
struct Member {
    client_id: String,
    client_host: String,
    group_instance_id: Option<String>,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    /// Its JoinGroup, parked until the join phase ends.
    join_waiter: Option<Waiter>,
    /// Its SyncGroup, parked until the leader's assignment.
    sync_waiter: Option<Waiter>,
    /// Removed once this passes, unless it waits in a JoinGroup or SyncGroup.
    heartbeat_deadline: Instant,
}

impl Member {
    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    fn exempt_from_session(&self) -> bool {
        self.join_waiter.is_some() || self.sync_waiter.is_some()
    }

    /// A member of a record, as a new coordinator loads it with `protocols`: waiting in
    /// no request, its session starting at `now`; with its id.
    fn restored(
        m: ClassicMemberValue,
        protocols: Vec<(String, Bytes)>,
        now: Instant,
    ) -> (String, Member) {
        let session_timeout = Duration::from_millis(u64::from(m.session_timeout_ms));
        let member = Member {
            client_id: m.client_id,
            client_host: m.client_host,
            group_instance_id: m.group_instance_id,
            session_timeout,
            rebalance_timeout: Duration::from_millis(u64::from(m.rebalance_timeout_ms)),
            protocols,
            assignment: m.assignment,
            join_waiter: None,
            sync_waiter: None,
            heartbeat_deadline: now + session_timeout,
        };
        (m.member_id, member)
    }
}

/// A member id issued with MEMBER_ID_REQUIRED, not joined yet.
#[derive(Debug, Clone, Copy)]
struct Pending {
    /// It lapses then.
    deadline: Instant,
    /// The session timeout of the JoinGroup it was issued to (how long it has again when
    /// a new coordinator restores it).
    session_timeout: Duration,
}

/// The first join phase of a group that was empty (Kafka's `InitialDelayedJoin`).
#[derive(Debug, Clone, Copy)]
struct InitialDelay {
    /// What is left of the rebalance timeout for further delays.
    remaining: Duration,
    /// A member joined during the current delay.
    new_member_added: bool,
}

/// One classic group's members and generation.
#[derive(Debug, Clone)]
pub struct ClassicGroup {
    state: ClassicState,
    generation: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Member ids issued with MEMBER_ID_REQUIRED and not joined yet.
    pending: BTreeMap<String, Pending>,
    /// Members of the current generation that have not sent SyncGroup yet.
    pending_sync: BTreeSet<String>,
    /// PreparingRebalance: when the join phase ends at the latest.
    join_deadline: Option<Instant>,
    initial_delay: Option<InitialDelay>,
    /// When the members still in `pending_sync` are removed.
    sync_deadline: Option<Instant>,
    /// Completed join phases since the coordinator loaded the group.
    rebalances: u64,
}

/// A member of a described classic group.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClassicMemberDescription {
    pub member_id: String,
    pub client_id: String,
    pub client_host: String,
    /// The `group.instance.id` it joined with, if any.
    pub group_instance_id: Option<String>,
    /// Its metadata for the group's protocol (empty before the first generation).
    #[serde(with = "bytes_serde")]
    pub metadata: Bytes,
    #[serde(with = "bytes_serde")]
    pub assignment: Bytes,
    pub session_timeout: Duration,
    /// Until its session ends, as of the description (zero while it waits in a
    /// JoinGroup or SyncGroup, which keeps it in the group).
    pub session_remaining: Duration,
}

/// A classic group as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClassicDescription {
    pub state: ClassicState,
    pub generation: i32,
    pub protocol_type: String,
    pub protocol_name: String,
    pub leader: Option<String>,
    pub members: Vec<ClassicMemberDescription>,
}

impl Default for ClassicGroup {
    fn default() -> Self {
        ClassicGroup::new()
    }
}

impl ClassicGroup {
    pub fn new() -> ClassicGroup {
        ClassicGroup {
            state: ClassicState::Empty,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            pending: BTreeMap::new(),
            pending_sync: BTreeSet::new(),
            join_deadline: None,
            initial_delay: None,
            sync_deadline: None,
            rebalances: 0,
        }
    }

    pub fn state(&self) -> ClassicState {
        self.state
    }

    pub fn generation(&self) -> i32 {
        self.generation
    }

    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    pub fn rebalances(&self) -> u64 {
        self.rebalances
    }

    /// The topics the members subscribe to, from their consumer protocol metadata for
    /// the group's protocol: empty without members; `None` where that cannot be told (a
    /// protocol type other than "consumer", no protocol chosen yet, or metadata that does
    /// not decode), which Kafka takes as subscribed to every topic.
    pub fn subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if self.members.is_empty() {
            return Some(BTreeSet::new());
        }
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = BTreeSet::new();
        for m in self.members.values() {
            topics.extend(super::consumer_protocol::subscribed_topics(
                &m.metadata(protocol),
            )?);
        }
        Some(topics)
    }

    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    /// Whether the group runs the classic protocol now: it has members, members about
    /// to join, or a rebalance under way.
    pub fn is_active(&self) -> bool {
        !self.members.is_empty() || !self.pending.is_empty() || self.state != ClassicState::Empty
    }

    pub fn has_member(&self, id: &str) -> bool {
        self.members.contains_key(id)
    }

    /// The member id that static member `instance_id` has now.
    fn static_member(&self, instance_id: &str) -> Option<&String> {
        self.members
            .iter()
            .find(|(_, m)| m.group_instance_id.as_deref() == Some(instance_id))
            .map(|(id, _)| id)
    }

    /// FENCED_INSTANCE_ID if `instance_id` belongs to a member other than `member_id`
    /// (Kafka's `isStaticMemberFenced`, checked before anything else).
    fn check_fenced(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), ClassicError> {
        if let Some(instance) = instance_id
            && let Some(current) = self.static_member(instance)
            && current != member_id
        {
            return Err(ClassicError::FencedInstanceId {
                instance_id: instance.to_string(),
            });
        }
        Ok(())
    }

    /// The group as its `__consumer_offsets` record keeps it: as of its last completed
    /// generation. `None` while a rebalance is under way (the record written last stays:
    /// it is the generation the members were told about), and for a group that never had
    /// a generation (offsets only, or a KIP-848 group).
    pub fn stored(&self) -> Option<ClassicValue> {
        if self.generation == 0 || !matches!(self.state, ClassicState::Stable | ClassicState::Empty)
        {
            return None;
        }
        let protocol = self.protocol_name.clone().unwrap_or_default();
        Some(self.value(|m| m.metadata(&protocol)))
    }

    /// The group as a classic value with each member's `metadata`.
    fn value(&self, metadata: impl Fn(&Member) -> Bytes) -> ClassicValue {
        ClassicValue {
            generation: self.generation,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol_name: self.protocol_name.clone().unwrap_or_default(),
            leader: self.leader.clone().unwrap_or_default(),
            members: self
                .members
                .iter()
                .map(|(id, m)| ClassicMemberValue {
                    member_id: id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: millis(m.session_timeout),
                    rebalance_timeout_ms: millis(m.rebalance_timeout),
                    metadata: metadata(m),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// The group as its rebalance record keeps it while it is between generations (a
    /// rebalance under way, or member ids issued and not joined yet); `None` once it
    /// settled (its [`stored`](Self::stored) record is then the whole story).
    pub fn rebalance_record(&self) -> Option<ClassicRebalanceValue> {
        if self.pending.is_empty()
            && matches!(self.state, ClassicState::Stable | ClassicState::Empty)
        {
            return None;
        }
        Some(ClassicRebalanceValue {
            state: self.state,
            group: self.value(|_| Bytes::new()),
            protocols: self.members.values().map(|m| m.protocols.clone()).collect(),
            pending: self
                .pending
                .iter()
                .map(|(id, p)| (id.clone(), millis(p.session_timeout)))
                .collect(),
        })
    }

    /// The group of a [`rebalance_record`](Self::rebalance_record), as a new coordinator
    /// loads it: in the state it was in, its members (none waiting in a JoinGroup or
    /// SyncGroup: those were parked on the coordinator before, which answered them
    /// NOT_COORDINATOR, and the members send them again), its issued member ids; every
    /// session, and the join or sync phase's deadline, starts again at `now`. `Err` for
    /// a record that breaks the state machine's invariants.
    pub fn restore_rebalance(
        value: ClassicRebalanceValue,
        now: Instant,
    ) -> Result<ClassicGroup, String> {
        if value.protocols.len() != value.group.members.len() {
            return Err(format!(
                "{} members but {} protocol lists",
                value.group.members.len(),
                value.protocols.len()
            ));
        }
        let mut g = ClassicGroup::new();
        let v = value.group;
        g.state = value.state;
        g.generation = v.generation;
        g.protocol_type = (!v.protocol_type.is_empty()).then_some(v.protocol_type);
        g.protocol_name = (!v.protocol_name.is_empty()).then_some(v.protocol_name);
        for (m, protocols) in v.members.into_iter().zip(value.protocols) {
            let (id, member) = Member::restored(m, protocols, now);
            g.members.insert(id, member);
        }
        for (id, session_timeout_ms) in value.pending {
            let session_timeout = Duration::from_millis(u64::from(session_timeout_ms));
            g.pending.insert(
                id,
                Pending {
                    deadline: now + session_timeout,
                    session_timeout,
                },
            );
        }
        g.leader = (!v.leader.is_empty()).then_some(v.leader);
        match g.state {
            ClassicState::PreparingRebalance => g.join_deadline = Some(now + g.rebalance_timeout()),
            ClassicState::CompletingRebalance => {
                g.pending_sync = g.members.keys().cloned().collect();
                g.sync_deadline = Some(now + g.rebalance_timeout());
            }
            ClassicState::Stable | ClassicState::Empty => {}
        }
        g.check_invariants()?;
        Ok(g)
    }

    /// The group of a [`stored`](Self::stored) record, as a new coordinator loads it:
    /// Stable with its members (each knowing only the group's protocol, as in Kafka), or
    /// Empty; every session starts again at `now`. `Err` for a record that breaks the
    /// state machine's invariants.
    pub fn restore(value: ClassicValue, now: Instant) -> Result<ClassicGroup, String> {
        let mut g = ClassicGroup::new();
        g.generation = value.generation;
        g.protocol_type = (!value.protocol_type.is_empty()).then_some(value.protocol_type);
        if !value.members.is_empty() {
            if value.protocol_name.is_empty() {
                return Err("a classic group record with members but no protocol".to_string());
            }
            g.state = ClassicState::Stable;
            g.protocol_name = Some(value.protocol_name.clone());
        }
        for mut m in value.members {
            let protocols = vec![(value.protocol_name.clone(), std::mem::take(&mut m.metadata))];
            let (id, member) = Member::restored(m, protocols, now);
            g.members.insert(id, member);
        }
        g.leader = if g.members.contains_key(&value.leader) {
            Some(value.leader)
        } else {
            g.members.keys().next().cloned()
        };
        g.check_invariants()?;
        Ok(g)
    }

    /// The group as DescribeGroups shows it, as of `now`.
    pub fn describe(&self, now: Instant) -> ClassicDescription {
        ClassicDescription {
            state: self.state,
            generation: self.generation,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol_name: self.protocol_name.clone().unwrap_or_default(),
            leader: self.leader.clone(),
            members: self
                .members
                .iter()
                .map(|(id, m)| ClassicMemberDescription {
                    member_id: id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    metadata: self
                        .protocol_name
                        .as_deref()
                        .map(|p| m.metadata(p))
                        .unwrap_or_default(),
                    assignment: m.assignment.clone(),
                    session_timeout: m.session_timeout,
                    session_remaining: if m.exempt_from_session() {
                        Duration::ZERO
                    } else {
                        m.heartbeat_deadline.saturating_duration_since(now)
                    },
                })
                .collect(),
        }
    }

    /// The earliest time [`tick`](Self::tick) has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let members = self
            .members
            .values()
            .filter(|m| !m.exempt_from_session())
            .map(|m| m.heartbeat_deadline);
        self.pending
            .values()
            .map(|p| p.deadline)
            .chain(members)
            .chain(self.join_deadline)
            .chain(self.sync_deadline)
            .min()
    }

    /// The longest rebalance timeout of the members (Kafka's group rebalance timeout).
    fn rebalance_timeout(&self) -> Duration {
        self.members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(Duration::ZERO)
    }
}

/// A duration as a record's u32 milliseconds (longer ones, which the coordinator's limits
/// do not let in, are cut).
fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// [`Bytes`] as serde writes a byte string (a description crosses to another broker's
/// console as JSON; weir-grpc's internal Reports service).
mod bytes_serde {
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        Vec::<u8>::deserialize(d).map(Bytes::from)
    }
}
