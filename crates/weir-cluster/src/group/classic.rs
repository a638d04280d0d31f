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
//!   under way is not written: a new coordinator has the last generation, and members
//!   that were rejoining join it again.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::records::{ClassicMemberValue, ClassicValue};

/// Numbers a parked JoinGroup or SyncGroup request; its answer is addressed to it.
pub(crate) type Waiter = u64;

/// Where a classic group is in its rebalance cycle (Kafka's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
pub(crate) enum ClassicError {
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
pub(crate) enum Reply {
    Join(Waiter, Result<JoinOutcome, ClassicError>),
    Sync(Waiter, Result<SyncAnswer, ClassicError>),
}

impl Reply {
    pub(crate) fn waiter(&self) -> Waiter {
        match self {
            Reply::Join(w, _) | Reply::Sync(w, _) => *w,
        }
    }
}

/// The settings the state machine uses.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClassicConfig {
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
pub(crate) struct ClassicGroup {
    state: ClassicState,
    generation: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Member ids issued with MEMBER_ID_REQUIRED and not joined yet, with when they
    /// lapse.
    pending: BTreeMap<String, Instant>,
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicMemberDescription {
    pub member_id: String,
    pub client_id: String,
    pub client_host: String,
    /// The `group.instance.id` it joined with, if any.
    pub group_instance_id: Option<String>,
    /// Its metadata for the group's protocol (empty before the first generation).
    pub metadata: Bytes,
    pub assignment: Bytes,
    pub session_timeout: Duration,
    /// Until its session ends, as of the description (zero while it waits in a
    /// JoinGroup or SyncGroup, which keeps it in the group).
    pub session_remaining: Duration,
}

/// A classic group as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
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
        Some(ClassicValue {
            generation: self.generation,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            leader: self.leader.clone().unwrap_or_default(),
            members: self
                .members
                .iter()
                .map(|(id, m)| ClassicMemberValue {
                    member_id: id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: u32::try_from(m.session_timeout.as_millis())
                        .unwrap_or(u32::MAX),
                    rebalance_timeout_ms: u32::try_from(m.rebalance_timeout.as_millis())
                        .unwrap_or(u32::MAX),
                    metadata: m.metadata(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
            protocol_name: protocol,
        })
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
        for m in value.members {
            let session_timeout = Duration::from_millis(u64::from(m.session_timeout_ms));
            g.members.insert(
                m.member_id,
                Member {
                    client_id: m.client_id,
                    client_host: m.client_host,
                    group_instance_id: m.group_instance_id,
                    session_timeout,
                    rebalance_timeout: Duration::from_millis(u64::from(m.rebalance_timeout_ms)),
                    protocols: vec![(value.protocol_name.clone(), m.metadata)],
                    assignment: m.assignment,
                    join_waiter: None,
                    sync_waiter: None,
                    heartbeat_deadline: now + session_timeout,
                },
            );
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
            .copied()
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

    /// The protocols every member other than `except` supports.
    fn common_protocols(&self, except: Option<&str>) -> Option<BTreeSet<&str>> {
        let mut common: Option<BTreeSet<&str>> = None;
        for (id, m) in &self.members {
            if Some(id.as_str()) == except {
                continue;
            }
            let names: BTreeSet<&str> = m.protocols.iter().map(|(n, _)| n.as_str()).collect();
            common = Some(match common {
                None => names,
                Some(c) => c.intersection(&names).copied().collect(),
            });
        }
        common
    }

    /// Whether a member (`except`: its id if it is one already) with this protocol
    /// type and protocols may be in the group.
    fn supports(&self, req: &JoinGroup, except: Option<&str>) -> Result<(), ClassicError> {
        if req.protocol_type.is_empty() || req.protocols.is_empty() {
            return Err(ClassicError::InconsistentProtocol(
                "a member must name a protocol type and at least one protocol".to_string(),
            ));
        }
        let others = self.common_protocols(except);
        let Some(others) = others else {
            // The only member (or the first): it sets the group's protocol type.
            return Ok(());
        };
        if self.protocol_type.as_deref() != Some(req.protocol_type.as_str()) {
            return Err(ClassicError::InconsistentProtocol(format!(
                "the group's protocol type is {:?}, not {:?}",
                self.protocol_type.as_deref().unwrap_or(""),
                req.protocol_type
            )));
        }
        if !req
            .protocols
            .iter()
            .any(|(name, _)| others.contains(name.as_str()))
        {
            return Err(ClassicError::InconsistentProtocol(format!(
                "none of the member's protocols ({}) is supported by every member of the group \
                 ({})",
                req.protocols
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                others.into_iter().collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(())
    }

    /// Handles a JoinGroup parked as `waiter`. `new_member_id` is the id a new member
    /// gets (drawn by the caller). The replies may include the answer to `waiter` (or
    /// it comes from a later call, when the join phase ends) and answers to other
    /// members' parked requests.
    pub fn join(
        &mut self,
        req: JoinGroup,
        waiter: Waiter,
        new_member_id: String,
        now: Instant,
        config: &ClassicConfig,
    ) -> Vec<Reply> {
        let mut replies = Vec::new();
        let refuse = |e: ClassicError| vec![Reply::Join(waiter, Err(e))];
        if !req.member_id.is_empty()
            && let Err(e) = self.check_fenced(&req.member_id, req.group_instance_id.as_deref())
        {
            return refuse(e);
        }
        if req.member_id.is_empty() {
            if let Some(old) = req
                .group_instance_id
                .as_deref()
                .and_then(|i| self.static_member(i))
                .cloned()
            {
                // A known static member restarted: it takes its old place.
                if let Err(e) = self.supports(&req, Some(&old)) {
                    return refuse(e);
                }
                self.replace_static_member(
                    &old,
                    new_member_id,
                    req,
                    waiter,
                    now,
                    config,
                    &mut replies,
                );
                self.try_complete_join(now, &mut replies);
                return replies;
            }
            if let Err(e) = self.supports(&req, None) {
                return refuse(e);
            }
            if self.members.len() + self.pending.len() >= config.max_members {
                return refuse(ClassicError::TooManyMembers {
                    max: config.max_members,
                });
            }
            // A static member is not asked to join again with its id (Kafka's
            // doStaticNewMemberJoinGroup): its instance id identifies it.
            if req.require_known_member_id && req.group_instance_id.is_none() {
                self.pending
                    .insert(new_member_id.clone(), now + req.session_timeout);
                return vec![Reply::Join(
                    waiter,
                    Ok(JoinOutcome::MemberIdRequired {
                        member_id: new_member_id,
                    }),
                )];
            }
            self.add_member(new_member_id, req, waiter, now, config, &mut replies);
        } else if self.pending.contains_key(&req.member_id) {
            if let Err(e) = self.supports(&req, None) {
                return refuse(e);
            }
            let id = req.member_id.clone();
            self.add_member(id, req, waiter, now, config, &mut replies);
        } else if !self.members.contains_key(&req.member_id) {
            return refuse(ClassicError::UnknownMember);
        } else {
            if let Err(e) = self.supports(&req, Some(&req.member_id)) {
                return refuse(e);
            }
            let id = req.member_id.clone();
            let member = &self.members[&id];
            let same = member.protocols == req.protocols;
            match self.state {
                ClassicState::PreparingRebalance => {
                    self.update_member(&id, req, waiter, &mut replies);
                }
                ClassicState::CompletingRebalance if same => {
                    // The answer to its join was lost: the current generation again.
                    replies.push(Reply::Join(waiter, Ok(self.joined(&id))));
                }
                ClassicState::Stable if same && self.leader.as_deref() != Some(id.as_str()) => {
                    replies.push(Reply::Join(waiter, Ok(self.joined(&id))));
                }
                ClassicState::CompletingRebalance | ClassicState::Stable => {
                    // New metadata, or the leader (which may know of topic changes the
                    // metadata does not show): a new generation.
                    self.update_member(&id, req, waiter, &mut replies);
                    self.prepare_rebalance(now, config, &mut replies);
                }
                ClassicState::Empty => return refuse(ClassicError::UnknownMember),
            }
        }
        self.try_complete_join(now, &mut replies);
        replies
    }

    /// Static member `old` (its instance id given again with no member id: the consumer
    /// restarted) becomes member `new` with the request's metadata (Kafka's
    /// `updateStaticMemberAndRebalance`). Requests the old one left parked are answered
    /// FENCED_INSTANCE_ID. In a stable group whose protocol and the member's subscription
    /// stay the same, it is answered at once with the current generation and keeps its
    /// assignment; otherwise it waits in the join of a rebalance.
    #[allow(clippy::too_many_arguments)]
    fn replace_static_member(
        &mut self,
        old: &str,
        new: String,
        req: JoinGroup,
        waiter: Waiter,
        now: Instant,
        config: &ClassicConfig,
        replies: &mut Vec<Reply>,
    ) {
        let mut member = self.members.remove(old).expect("a member");
        let fenced = || ClassicError::FencedInstanceId {
            instance_id: req.group_instance_id.clone().unwrap_or_default(),
        };
        if let Some(w) = member.join_waiter.take() {
            replies.push(Reply::Join(w, Err(fenced())));
        }
        if let Some(w) = member.sync_waiter.take() {
            replies.push(Reply::Sync(w, Err(fenced())));
        }
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let before = member.metadata(&protocol);
        member.protocols = req.protocols;
        member.session_timeout = req.session_timeout;
        member.rebalance_timeout = req.rebalance_timeout;
        member.client_id = req.client_id;
        member.client_host = req.client_host;
        member.heartbeat_deadline = now + member.session_timeout;
        let same_subscription = self.same_subscription(&before, &member.metadata(&protocol));
        self.members.insert(new.clone(), member);
        if self.leader.as_deref() == Some(old) {
            self.leader = Some(new.clone());
        }
        if self.pending_sync.remove(old) {
            self.pending_sync.insert(new.clone());
        }
        match self.state {
            ClassicState::Stable
                if same_subscription && self.select_protocol() == self.protocol_name =>
            {
                let mut outcome = self.joined(&new);
                if let JoinOutcome::Joined(answer) = &mut outcome {
                    // The leader keeps the group's assignment (KIP-814).
                    answer.skip_assignment = answer.leader == new;
                }
                replies.push(Reply::Join(waiter, Ok(outcome)));
            }
            ClassicState::PreparingRebalance => {
                self.members.get_mut(&new).expect("inserted").join_waiter = Some(waiter);
            }
            ClassicState::Stable | ClassicState::CompletingRebalance | ClassicState::Empty => {
                self.members.get_mut(&new).expect("inserted").join_waiter = Some(waiter);
                self.prepare_rebalance(now, config, replies);
            }
        }
    }

    /// Whether two metadata of the group's protocol subscribe to the same topics: for
    /// the consumer protocol, the topics (a restarted consumer's metadata differs in its
    /// owned partitions and generation, which do not call for a rebalance); otherwise
    /// the bytes.
    fn same_subscription(&self, before: &Bytes, after: &Bytes) -> bool {
        if self.protocol_type.as_deref() == Some("consumer") {
            let topics = |b: &Bytes| {
                super::consumer_protocol::subscribed_topics(b)
                    .map(|t| t.into_iter().collect::<BTreeSet<String>>())
            };
            if let (Some(b), Some(a)) = (topics(before), topics(after)) {
                return b == a;
            }
        }
        before == after
    }

    /// The join answer of member `id` for the current generation.
    fn joined(&self, id: &str) -> JoinOutcome {
        let leader = self.leader.clone().unwrap_or_default();
        let members = if leader == id {
            let protocol = self.protocol_name.as_deref().unwrap_or("");
            self.members
                .iter()
                .map(|(mid, m)| {
                    (
                        mid.clone(),
                        m.group_instance_id.clone(),
                        m.metadata(protocol),
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinOutcome::Joined(JoinAnswer {
            member_id: id.to_string(),
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader,
            members,
            skip_assignment: false,
        })
    }

    fn add_member(
        &mut self,
        id: String,
        req: JoinGroup,
        waiter: Waiter,
        now: Instant,
        config: &ClassicConfig,
        replies: &mut Vec<Reply>,
    ) {
        self.pending.remove(&id);
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(id.clone());
        }
        self.members.insert(
            id,
            Member {
                client_id: req.client_id,
                client_host: req.client_host,
                group_instance_id: req.group_instance_id,
                session_timeout: req.session_timeout,
                rebalance_timeout: req.rebalance_timeout,
                protocols: req.protocols,
                assignment: Bytes::new(),
                join_waiter: Some(waiter),
                sync_waiter: None,
                heartbeat_deadline: now + req.session_timeout,
            },
        );
        if let Some(delay) = &mut self.initial_delay {
            delay.new_member_added = true;
        }
        self.prepare_rebalance(now, config, replies);
    }

    fn update_member(
        &mut self,
        id: &str,
        req: JoinGroup,
        waiter: Waiter,
        replies: &mut Vec<Reply>,
    ) {
        let member = self.members.get_mut(id).expect("a member");
        member.protocols = req.protocols;
        member.session_timeout = req.session_timeout;
        member.rebalance_timeout = req.rebalance_timeout;
        member.client_id = req.client_id;
        member.client_host = req.client_host;
        member.group_instance_id = req.group_instance_id;
        if let Some(old) = member.join_waiter.replace(waiter) {
            // It joined again before the first join was answered: that one is over.
            replies.push(Reply::Join(old, Err(ClassicError::RebalanceInProgress)));
        }
    }

    /// Starts a rebalance unless one is under way (Kafka's `maybePrepareRebalance`).
    fn prepare_rebalance(
        &mut self,
        now: Instant,
        config: &ClassicConfig,
        replies: &mut Vec<Reply>,
    ) {
        match self.state {
            ClassicState::PreparingRebalance => return,
            ClassicState::CompletingRebalance => {
                // Members waiting for the leader's assignment join again instead.
                for m in self.members.values_mut() {
                    m.assignment = Bytes::new();
                    if let Some(w) = m.sync_waiter.take() {
                        replies.push(Reply::Sync(w, Err(ClassicError::RebalanceInProgress)));
                    }
                }
            }
            ClassicState::Empty | ClassicState::Stable => {}
        }
        self.pending_sync.clear();
        self.sync_deadline = None;
        let timeout = self.rebalance_timeout();
        if self.state == ClassicState::Empty && !config.initial_rebalance_delay.is_zero() {
            let delay = config
                .initial_rebalance_delay
                .min(timeout.max(Duration::from_millis(1)));
            self.initial_delay = Some(InitialDelay {
                remaining: timeout.saturating_sub(delay),
                new_member_added: false,
            });
            self.join_deadline = Some(now + delay);
        } else {
            self.initial_delay = None;
            self.join_deadline = Some(now + timeout);
        }
        self.state = ClassicState::PreparingRebalance;
    }

    /// Ends the join phase if every member has joined (not during the initial delay).
    fn try_complete_join(&mut self, now: Instant, replies: &mut Vec<Reply>) {
        if self.state == ClassicState::PreparingRebalance
            && self.initial_delay.is_none()
            && self.pending.is_empty()
            && self.members.values().all(|m| m.join_waiter.is_some())
        {
            self.complete_join(now, replies);
        }
    }

    /// Ends the join phase: members that did not join are removed, and the others get
    /// the new generation (Kafka's `onCompleteJoin`).
    fn complete_join(&mut self, now: Instant, replies: &mut Vec<Reply>) {
        let absent: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| m.join_waiter.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for id in absent {
            self.remove(&id, replies);
        }
        self.join_deadline = None;
        self.initial_delay = None;
        self.generation += 1;
        self.rebalances += 1;
        if self.members.is_empty() {
            self.protocol_name = None;
            self.leader = None;
            self.state = ClassicState::Empty;
            return;
        }
        self.protocol_name = self.select_protocol();
        self.state = ClassicState::CompletingRebalance;
        self.pending_sync = self.members.keys().cloned().collect();
        self.sync_deadline = Some(now + self.rebalance_timeout());
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let answer = self.joined(&id);
            let m = self.members.get_mut(&id).expect("a member");
            m.heartbeat_deadline = now + m.session_timeout;
            if let Some(w) = m.join_waiter.take() {
                replies.push(Reply::Join(w, Ok(answer)));
            }
        }
    }

    /// The protocol every member supports that most members prefer (each votes for its
    /// first supported one); ties go to the name first in order.
    fn select_protocol(&self) -> Option<String> {
        let common = self.common_protocols(None)?;
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some((name, _)) = m
                .protocols
                .iter()
                .find(|(n, _)| common.contains(n.as_str()))
            {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        let best = votes.values().copied().max()?;
        votes
            .into_iter()
            .find(|(_, v)| *v == best)
            .map(|(name, _)| name.to_string())
    }

    /// Removes member `id`, answering its parked requests UNKNOWN_MEMBER_ID.
    fn remove(&mut self, id: &str, replies: &mut Vec<Reply>) {
        let Some(m) = self.members.remove(id) else {
            return;
        };
        if let Some(w) = m.join_waiter {
            replies.push(Reply::Join(w, Err(ClassicError::UnknownMember)));
        }
        if let Some(w) = m.sync_waiter {
            replies.push(Reply::Sync(w, Err(ClassicError::UnknownMember)));
        }
        self.pending_sync.remove(id);
        if self.pending_sync.is_empty() {
            self.sync_deadline = None;
        }
        if self.leader.as_deref() == Some(id) {
            // Prefer a member that has joined this rebalance already.
            self.leader = self
                .members
                .iter()
                .find(|(_, m)| m.join_waiter.is_some())
                .or_else(|| self.members.iter().next())
                .map(|(id, _)| id.clone());
        }
    }

    /// Removes member `id` and moves the group on as its leaving requires.
    fn remove_and_rebalance(
        &mut self,
        id: &str,
        now: Instant,
        config: &ClassicConfig,
        replies: &mut Vec<Reply>,
    ) {
        self.remove(id, replies);
        match self.state {
            ClassicState::Stable | ClassicState::CompletingRebalance => {
                self.prepare_rebalance(now, config, replies);
            }
            ClassicState::PreparingRebalance | ClassicState::Empty => {}
        }
        self.try_complete_join(now, replies);
    }

    /// Checks the member and generation of a request from a member.
    fn check_member(&self, member_id: &str, generation: i32) -> Result<(), ClassicError> {
        if !self.members.contains_key(member_id) {
            return Err(ClassicError::UnknownMember);
        }
        if generation != self.generation {
            return Err(ClassicError::IllegalGeneration {
                given: generation,
                current: self.generation,
            });
        }
        Ok(())
    }

    fn heard_from(&mut self, member_id: &str, now: Instant) {
        if let Some(m) = self.members.get_mut(member_id) {
            m.heartbeat_deadline = now + m.session_timeout;
        }
    }

    /// Handles a SyncGroup parked as `waiter`.
    pub fn sync(&mut self, req: SyncGroup, waiter: Waiter, now: Instant) -> Vec<Reply> {
        let refuse = |e: ClassicError| vec![Reply::Sync(waiter, Err(e))];
        if let Err(e) = self.check_fenced(&req.member_id, req.group_instance_id.as_deref()) {
            return refuse(e);
        }
        if let Err(e) = self.check_member(&req.member_id, req.generation) {
            return refuse(e);
        }
        for (given, ours, what) in [
            (&req.protocol_type, &self.protocol_type, "protocol type"),
            (&req.protocol_name, &self.protocol_name, "protocol"),
        ] {
            if let Some(given) = given
                && ours.as_deref() != Some(given.as_str())
            {
                return refuse(ClassicError::InconsistentProtocol(format!(
                    "the group's {what} is {:?}, not {given:?}",
                    ours.as_deref().unwrap_or("")
                )));
            }
        }
        match self.state {
            ClassicState::Empty => refuse(ClassicError::UnknownMember),
            ClassicState::PreparingRebalance => refuse(ClassicError::RebalanceInProgress),
            ClassicState::Stable => {
                self.pending_sync.remove(&req.member_id);
                if self.pending_sync.is_empty() {
                    self.sync_deadline = None;
                }
                self.heard_from(&req.member_id, now);
                vec![Reply::Sync(waiter, Ok(self.sync_answer(&req.member_id)))]
            }
            ClassicState::CompletingRebalance => {
                let mut replies = Vec::new();
                self.pending_sync.remove(&req.member_id);
                if self.pending_sync.is_empty() {
                    self.sync_deadline = None;
                }
                let member = self.members.get_mut(&req.member_id).expect("checked");
                if let Some(old) = member.sync_waiter.replace(waiter) {
                    replies.push(Reply::Sync(old, Err(ClassicError::RebalanceInProgress)));
                }
                if self.leader.as_deref() == Some(req.member_id.as_str()) {
                    let mut given: BTreeMap<String, Bytes> = req.assignments.into_iter().collect();
                    let ids: Vec<String> = self.members.keys().cloned().collect();
                    for id in ids {
                        // A member the leader left out gets an empty assignment.
                        let assignment = given.remove(&id).unwrap_or_default();
                        let m = self.members.get_mut(&id).expect("a member");
                        m.assignment = assignment;
                    }
                    self.state = ClassicState::Stable;
                    let waiting: Vec<(String, Waiter)> = self
                        .members
                        .iter_mut()
                        .filter_map(|(id, m)| m.sync_waiter.take().map(|w| (id.clone(), w)))
                        .collect();
                    for (id, w) in waiting {
                        self.heard_from(&id, now);
                        replies.push(Reply::Sync(w, Ok(self.sync_answer(&id))));
                    }
                }
                replies
            }
        }
    }

    fn sync_answer(&self, member_id: &str) -> SyncAnswer {
        SyncAnswer {
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            assignment: self.members[member_id].assignment.clone(),
        }
    }

    /// Handles a Heartbeat: REBALANCE_IN_PROGRESS while members are joining (join
    /// again), otherwise the session goes on.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> Result<(), ClassicError> {
        self.check_fenced(member_id, instance_id)?;
        self.check_member(member_id, generation)?;
        match self.state {
            ClassicState::Empty => Err(ClassicError::UnknownMember),
            ClassicState::CompletingRebalance | ClassicState::Stable => {
                self.heard_from(member_id, now);
                Ok(())
            }
            ClassicState::PreparingRebalance => {
                self.heard_from(member_id, now);
                Err(ClassicError::RebalanceInProgress)
            }
        }
    }

    /// Handles a LeaveGroup of `member_id`, or (LeaveGroup v3+) of static member
    /// `instance_id`, whose member id may then be left empty; an instance id with another
    /// member id than its own is FENCED_INSTANCE_ID.
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
        config: &ClassicConfig,
        replies: &mut Vec<Reply>,
    ) -> Result<(), ClassicError> {
        let member_id = match instance_id {
            Some(instance) => match self.static_member(instance) {
                Some(current) if member_id.is_empty() || member_id == current => current.clone(),
                Some(_) => {
                    return Err(ClassicError::FencedInstanceId {
                        instance_id: instance.to_string(),
                    });
                }
                None => return Err(ClassicError::UnknownMember),
            },
            None => member_id.to_string(),
        };
        let member_id = member_id.as_str();
        if self.pending.remove(member_id).is_some() {
            self.try_complete_join(now, replies);
            return Ok(());
        }
        if !self.members.contains_key(member_id) {
            return Err(ClassicError::UnknownMember);
        }
        self.remove_and_rebalance(member_id, now, config, replies);
        Ok(())
    }

    /// Checks an offset commit of `member_id` at `generation` (a member's commit keeps
    /// its session going, as a heartbeat does).
    pub fn check_commit(
        &mut self,
        member_id: &str,
        generation: i32,
        now: Instant,
    ) -> Result<(), ClassicError> {
        self.check_member(member_id, generation)?;
        if self.state == ClassicState::CompletingRebalance {
            // It has the new generation but not its assignment yet.
            return Err(ClassicError::RebalanceInProgress);
        }
        self.heard_from(member_id, now);
        Ok(())
    }

    /// Moves the group on as of `now`: issued member ids that were not used lapse,
    /// members whose session ended are removed, the join phase ends at its deadline, and
    /// members that did not send SyncGroup in time are removed.
    pub fn tick(&mut self, now: Instant, config: &ClassicConfig) -> Vec<Reply> {
        let mut replies = Vec::new();
        let before = self.pending.len();
        self.pending.retain(|_, deadline| *deadline > now);
        if self.pending.len() != before {
            self.try_complete_join(now, &mut replies);
        }
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| !m.exempt_from_session() && m.heartbeat_deadline <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            self.remove_and_rebalance(&id, now, config, &mut replies);
        }
        if self.state == ClassicState::PreparingRebalance
            && self.join_deadline.is_some_and(|d| d <= now)
        {
            match self.initial_delay {
                Some(delay) if delay.new_member_added && !delay.remaining.is_zero() => {
                    let next = config.initial_rebalance_delay.min(delay.remaining);
                    self.initial_delay = Some(InitialDelay {
                        remaining: delay.remaining.saturating_sub(next),
                        new_member_added: false,
                    });
                    self.join_deadline = Some(now + next);
                }
                _ => self.complete_join(now, &mut replies),
            }
        }
        if self.sync_deadline.is_some_and(|d| d <= now) {
            self.sync_deadline = None;
            let late: Vec<String> = std::mem::take(&mut self.pending_sync).into_iter().collect();
            if matches!(
                self.state,
                ClassicState::CompletingRebalance | ClassicState::Stable
            ) && !late.is_empty()
            {
                for id in &late {
                    self.remove(id, &mut replies);
                }
                self.prepare_rebalance(now, config, &mut replies);
                self.try_complete_join(now, &mut replies);
            }
        }
        replies
    }

    /// The state machine's invariants; `Err` names the first one broken.
    pub fn check_invariants(&self) -> Result<(), String> {
        let state = self.state;
        if self.members.is_empty() != self.leader.is_none() {
            return Err(format!(
                "leader {:?} with {} members",
                self.leader,
                self.members.len()
            ));
        }
        if let Some(l) = &self.leader
            && !self.members.contains_key(l)
        {
            return Err(format!("leader {l} is not a member"));
        }
        match state {
            ClassicState::Empty if !self.members.is_empty() => {
                return Err("an Empty group has members".to_string());
            }
            ClassicState::CompletingRebalance | ClassicState::Stable if self.members.is_empty() => {
                return Err(format!("{state:?} without members"));
            }
            _ => {}
        }
        for (id, m) in &self.members {
            if m.join_waiter.is_some() && state != ClassicState::PreparingRebalance {
                return Err(format!("{id} waits in a join in {state:?}"));
            }
            if m.sync_waiter.is_some() && state != ClassicState::CompletingRebalance {
                return Err(format!("{id} waits in a sync in {state:?}"));
            }
            if let Some(p) = &self.protocol_name
                && matches!(
                    state,
                    ClassicState::CompletingRebalance | ClassicState::Stable
                )
                && !m.protocols.iter().any(|(n, _)| n == p)
            {
                return Err(format!("{id} does not support the group's protocol {p}"));
            }
            if self.pending.contains_key(id) {
                return Err(format!("{id} is both a member and pending"));
            }
        }
        if let Some(id) = self
            .pending_sync
            .iter()
            .find(|id| !self.members.contains_key(*id))
        {
            return Err(format!("{id} is pending sync but not a member"));
        }
        if state == ClassicState::PreparingRebalance && self.join_deadline.is_none() {
            return Err("a rebalance without a deadline".to_string());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

    use proptest::prelude::*;

    use super::*;

    const SESSION: Duration = Duration::from_secs(10);
    const REBALANCE: Duration = Duration::from_secs(30);

    fn config(delay_ms: u64) -> ClassicConfig {
        ClassicConfig {
            initial_rebalance_delay: Duration::from_millis(delay_ms),
            max_members: 10,
        }
    }

    fn join_req(member_id: &str, protocols: &[&str]) -> JoinGroup {
        JoinGroup {
            group_id: "g".into(),
            member_id: member_id.into(),
            client_id: "c".into(),
            client_host: "127.0.0.1".into(),
            group_instance_id: None,
            session_timeout: SESSION,
            rebalance_timeout: REBALANCE,
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|p| (p.to_string(), Bytes::from(format!("{member_id}:{p}"))))
                .collect(),
            require_known_member_id: true,
        }
    }

    fn sync_req(member_id: &str, generation: i32, assignments: &[(&str, &str)]) -> SyncGroup {
        SyncGroup {
            group_id: "g".into(),
            member_id: member_id.into(),
            generation,
            group_instance_id: None,
            protocol_type: Some("consumer".into()),
            protocol_name: None,
            assignments: assignments
                .iter()
                .map(|(m, a)| (m.to_string(), Bytes::from(a.to_string())))
                .collect(),
        }
    }

    /// Joins a new member (MEMBER_ID_REQUIRED, then with its id); returns its id and
    /// the replies of the second join.
    fn join_new(
        g: &mut ClassicGroup,
        name: &str,
        waiter: Waiter,
        now: Instant,
        cfg: &ClassicConfig,
    ) -> Vec<Reply> {
        let first = g.join(join_req("", &["range"]), waiter, name.into(), now, cfg);
        assert_eq!(
            first,
            vec![Reply::Join(
                waiter,
                Ok(JoinOutcome::MemberIdRequired {
                    member_id: name.into()
                })
            )]
        );
        g.join(
            join_req(name, &["range"]),
            waiter + 1,
            String::new(),
            now,
            cfg,
        )
    }

    fn joined(reply: &Reply) -> &JoinAnswer {
        match reply {
            Reply::Join(_, Ok(JoinOutcome::Joined(a))) => a,
            other => panic!("not a join answer: {other:?}"),
        }
    }

    #[test]
    fn a_new_member_gets_its_id_first_then_leads_the_first_generation() {
        let (t0, cfg) = (Instant::now(), config(0));
        let mut g = ClassicGroup::new();
        let replies = join_new(&mut g, "a", 1, t0, &cfg);
        assert_eq!(replies.len(), 1);
        let a = joined(&replies[0]);
        assert_eq!((a.generation, a.leader.as_str()), (1, "a"));
        assert_eq!(a.protocol_name.as_deref(), Some("range"));
        assert_eq!(a.members, vec![("a".into(), None, Bytes::from("a:range"))]);
        assert_eq!(g.state(), ClassicState::CompletingRebalance);
        // The leader's SyncGroup carries the assignment and completes the rebalance.
        let replies = g.sync(sync_req("a", 1, &[("a", "all of it")]), 3, t0);
        assert_eq!(
            replies,
            vec![Reply::Sync(
                3,
                Ok(SyncAnswer {
                    protocol_type: Some("consumer".into()),
                    protocol_name: Some("range".into()),
                    assignment: Bytes::from("all of it"),
                })
            )]
        );
        assert_eq!(g.state(), ClassicState::Stable);
        assert_eq!(g.heartbeat("a", None, 1, t0), Ok(()));
        g.check_invariants().unwrap();
    }

    #[test]
    fn the_initial_delay_puts_members_started_together_in_one_generation() {
        let (t0, cfg) = (Instant::now(), config(3000));
        let mut g = ClassicGroup::new();
        assert!(join_new(&mut g, "a", 1, t0, &cfg).is_empty());
        let t1 = t0 + Duration::from_secs(1);
        assert!(join_new(&mut g, "b", 3, t1, &cfg).is_empty());
        // At the first deadline a member had arrived: wait once more.
        assert!(g.tick(t0 + Duration::from_secs(3), &cfg).is_empty());
        assert_eq!(g.state(), ClassicState::PreparingRebalance);
        let replies = g.tick(t0 + Duration::from_secs(6), &cfg);
        assert_eq!(replies.len(), 2);
        let answers: Vec<&JoinAnswer> = replies.iter().map(joined).collect();
        assert!(answers.iter().all(|a| a.generation == 1 && a.leader == "a"));
        let leader = answers.iter().find(|a| a.member_id == "a").unwrap();
        assert_eq!(leader.members.len(), 2);
        assert!(
            answers
                .iter()
                .find(|a| a.member_id == "b")
                .unwrap()
                .members
                .is_empty()
        );
    }

    #[test]
    fn followers_wait_for_the_leaders_assignment_and_heartbeats_say_rebalance() {
        let (t0, cfg) = (Instant::now(), config(0));
        let mut g = ClassicGroup::new();
        join_new(&mut g, "a", 1, t0, &cfg);
        g.sync(sync_req("a", 1, &[("a", "p0 p1")]), 3, t0);
        // b joins a stable group: a is told to rejoin on its next heartbeat.
        assert!(join_new(&mut g, "b", 4, t0, &cfg).is_empty());
        assert_eq!(
            g.heartbeat("a", None, 1, t0),
            Err(ClassicError::RebalanceInProgress)
        );
        assert_eq!(
            g.check_commit("a", 1, t0),
            Ok(()),
            "a commits what it consumed before it rejoins"
        );
        let replies = g.join(join_req("a", &["range"]), 6, String::new(), t0, &cfg);
        assert_eq!(replies.len(), 2);
        assert!(replies.iter().all(|r| joined(r).generation == 2));
        // The follower's sync waits for the leader's.
        assert!(g.sync(sync_req("b", 2, &[]), 7, t0).is_empty());
        assert_eq!(
            g.check_commit("b", 2, t0),
            Err(ClassicError::RebalanceInProgress)
        );
        assert_eq!(
            g.heartbeat("b", None, 1, t0),
            Err(ClassicError::IllegalGeneration {
                given: 1,
                current: 2
            })
        );
        let replies = g.sync(sync_req("a", 2, &[("a", "p0"), ("b", "p1")]), 8, t0);
        let mut got: Vec<(Waiter, Bytes)> = replies
            .into_iter()
            .map(|r| match r {
                Reply::Sync(w, Ok(a)) => (w, a.assignment),
                other => panic!("{other:?}"),
            })
            .collect();
        got.sort();
        assert_eq!(got, vec![(7, Bytes::from("p1")), (8, Bytes::from("p0"))]);
        assert_eq!(
            g.heartbeat("zed", None, 2, t0),
            Err(ClassicError::UnknownMember)
        );
        g.check_invariants().unwrap();
    }

    #[test]
    fn a_member_that_does_not_rejoin_is_removed_at_the_rebalance_timeout() {
        let (t0, cfg) = (Instant::now(), config(0));
        let mut g = ClassicGroup::new();
        join_new(&mut g, "a", 1, t0, &cfg);
        g.sync(sync_req("a", 1, &[]), 3, t0);
        join_new(&mut g, "b", 4, t0, &cfg);
        // a keeps heartbeating but never rejoins (a consumer stuck in processing).
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(
            g.heartbeat("a", None, 1, t1),
            Err(ClassicError::RebalanceInProgress)
        );
        let replies = g.tick(t0 + REBALANCE, &cfg);
        assert_eq!(replies.len(), 1);
        let b = joined(&replies[0]);
        assert_eq!((b.member_id.as_str(), b.generation), ("b", 2));
        assert_eq!(b.leader, "b", "the leader left; b leads");
        assert!(!g.has_member("a"));
        assert_eq!(
            g.heartbeat("a", None, 1, t1),
            Err(ClassicError::UnknownMember)
        );
    }

    #[test]
    fn a_silent_member_is_removed_after_its_session_and_the_rest_rebalance() {
        let (t0, cfg) = (Instant::now(), config(0));
        let mut g = ClassicGroup::new();
        join_new(&mut g, "a", 1, t0, &cfg);
        join_new(&mut g, "b", 3, t0, &cfg);
        let replies = g.join(join_req("a", &["range"]), 5, String::new(), t0, &cfg);
        assert_eq!(replies.len(), 2);
        g.sync(sync_req("b", 2, &[]), 6, t0);
        g.sync(sync_req("a", 2, &[]), 7, t0);
        assert_eq!(g.state(), ClassicState::Stable);
        // a heartbeats; b crashed.
        let t1 = t0 + Duration::from_secs(6);
        assert_eq!(g.heartbeat("a", None, 2, t1), Ok(()));
        assert!(g.tick(t0 + SESSION, &cfg).is_empty());
        assert!(!g.has_member("b"));
        assert_eq!(g.state(), ClassicState::PreparingRebalance);
        assert_eq!(
            g.heartbeat("a", None, 2, t1),
            Err(ClassicError::RebalanceInProgress)
        );
        let replies = g.join(join_req("a", &["range"]), 8, String::new(), t1, &cfg);
        assert_eq!(joined(&replies[0]).generation, 3);
    }

    #[test]
    fn the_protocol_is_one_every_member_supports() {
        let (t0, cfg) = (Instant::now(), config(0));
        let mut g = ClassicGroup::new();
        let both = join_req("", &["range", "roundrobin"]);
        g.join(both.clone(), 1, "a".into(), t0, &cfg);
        let mut a = both.clone();
        a.member_id = "a".into();
        g.join(a.clone(), 2, String::new(), t0, &cfg);
        g.sync(sync_req("a", 1, &[]), 3, t0);
        // Only "sticky": nothing in common.
        let replies = g.join(join_req("", &["sticky"]), 4, "x".into(), t0, &cfg);
        assert!(matches!(
            &replies[..],
            [Reply::Join(4, Err(ClassicError::InconsistentProtocol(_)))]
        ));
        let mut other_type = join_req("", &["range"]);
        other_type.protocol_type = "connect".into();
        assert!(matches!(
            &g.join(other_type, 5, "y".into(), t0, &cfg)[..],
            [Reply::Join(5, Err(ClassicError::InconsistentProtocol(_)))]
        ));
        // b prefers roundrobin; a prefers range: one vote each, the tie goes to
        // "range" (first by name).
        g.join(
            join_req("", &["roundrobin", "range"]),
            6,
            "b".into(),
            t0,
            &cfg,
        );
        g.join(
            join_req("b", &["roundrobin", "range"]),
            7,
            String::new(),
            t0,
            &cfg,
        );
        let replies = g.join(a, 8, String::new(), t0, &cfg);
        assert_eq!(joined(&replies[0]).protocol_name.as_deref(), Some("range"));
        // A third member that only knows roundrobin tips it.
        g.sync(sync_req("a", 2, &[]), 9, t0);
        g.join(join_req("", &["roundrobin"]), 10, "c".into(), t0, &cfg);
        let mut replies = g.join(join_req("c", &["roundrobin"]), 11, String::new(), t0, &cfg);
        replies.extend(g.join(
            join_req("a", &["range", "roundrobin"]),
            12,
            String::new(),
            t0,
            &cfg,
        ));
        replies.extend(g.join(
            join_req("b", &["roundrobin", "range"]),
            13,
            String::new(),
            t0,
            &cfg,
        ));
        assert_eq!(replies.len(), 3);
        assert!(
            replies
                .iter()
                .all(|r| joined(r).protocol_name.as_deref() == Some("roundrobin"))
        );
        g.check_invariants().unwrap();
    }

    #[test]
    fn leaving_rebalances_the_others_and_unknown_members_are_refused() {
        let (t0, cfg) = (Instant::now(), config(0));
        let mut g = ClassicGroup::new();
        join_new(&mut g, "a", 1, t0, &cfg);
        g.sync(sync_req("a", 1, &[]), 3, t0);
        let mut replies = Vec::new();
        assert_eq!(
            g.leave("ghost", None, t0, &cfg, &mut replies),
            Err(ClassicError::UnknownMember)
        );
        // A member id issued and never used may leave too.
        g.join(join_req("", &["range"]), 4, "p".into(), t0, &cfg);
        assert_eq!(g.leave("p", None, t0, &cfg, &mut replies), Ok(()));
        assert_eq!(g.leave("a", None, t0, &cfg, &mut replies), Ok(()));
        assert!(replies.is_empty());
        assert_eq!(g.state(), ClassicState::Empty);
        assert_eq!(
            g.generation(),
            2,
            "the empty group is a generation of its own"
        );
        assert!(!g.is_active());
        assert_eq!(g.check_commit("a", 1, t0), Err(ClassicError::UnknownMember));
    }

    #[test]
    fn a_member_that_never_syncs_is_removed_after_the_rebalance_timeout() {
        let (t0, cfg) = (Instant::now(), config(0));
        let mut g = ClassicGroup::new();
        join_new(&mut g, "a", 1, t0, &cfg);
        join_new(&mut g, "b", 3, t0, &cfg);
        g.join(join_req("a", &["range"]), 5, String::new(), t0, &cfg);
        // The leader syncs; b never does (but heartbeats).
        g.sync(sync_req("a", 2, &[("a", "x"), ("b", "y")]), 6, t0);
        for t in [9, 18, 27] {
            let t = t0 + Duration::from_secs(t);
            assert_eq!(g.heartbeat("b", None, 2, t), Ok(()));
            assert_eq!(g.heartbeat("a", None, 2, t), Ok(()));
            assert!(g.tick(t, &cfg).is_empty());
        }
        g.tick(t0 + REBALANCE, &cfg);
        assert!(!g.has_member("b"));
        assert_eq!(g.state(), ClassicState::PreparingRebalance);
    }

    /// A consumer protocol subscription (version 3) to `topics`, then `tail` (the owned
    /// partitions, generation and rack, which the broker does not read).
    fn subscription(topics: &[&str], tail: &[u8]) -> Bytes {
        let mut b = vec![0, 3];
        b.extend((topics.len() as i32).to_be_bytes());
        for t in topics {
            b.extend((t.len() as i16).to_be_bytes());
            b.extend(t.as_bytes());
        }
        b.extend(tail);
        Bytes::from(b)
    }

    fn static_join(instance: &str, member_id: &str, metadata: Bytes) -> JoinGroup {
        JoinGroup {
            group_instance_id: Some(instance.into()),
            protocols: vec![("range".into(), metadata)],
            ..join_req(member_id, &["range"])
        }
    }

    /// Static members a (instance "ia", the leader) and b ("ib"), Stable in generation 2
    /// with assignments "for a" and "for b".
    fn stable_static_pair(t0: Instant, cfg: &ClassicConfig) -> ClassicGroup {
        let mut g = ClassicGroup::new();
        let sub = || subscription(&["t"], &[]);
        // Static members are not asked to join again with an id.
        let first = g.join(static_join("ia", "", sub()), 1, "a".into(), t0, cfg);
        assert_eq!(joined(&first[0]).generation, 1);
        assert!(
            g.join(static_join("ib", "", sub()), 2, "b".into(), t0, cfg)
                .is_empty()
        );
        let replies = g.join(static_join("ia", "a", sub()), 3, String::new(), t0, cfg);
        assert_eq!(replies.len(), 2);
        let leader = replies
            .iter()
            .map(joined)
            .find(|a| a.member_id == "a")
            .unwrap();
        assert_eq!(leader.generation, 2);
        assert!(
            leader
                .members
                .contains(&("b".into(), Some("ib".into()), sub()))
        );
        let assignments = [("a", "for a"), ("b", "for b")];
        g.sync(sync_req("a", 2, &assignments), 4, t0);
        g.sync(sync_req("b", 2, &[]), 5, t0);
        assert_eq!(g.state(), ClassicState::Stable);
        g
    }

    #[test]
    fn a_restarted_static_member_takes_its_place_without_a_rebalance() {
        let (t0, cfg) = (Instant::now(), config(0));
        let mut g = stable_static_pair(t0, &cfg);
        // b restarts: no member id, its instance id, the same topics (other owned
        // partitions and generation in the metadata's tail).
        let replies = g.join(
            static_join("ib", "", subscription(&["t"], &[0, 0, 0, 0])),
            10,
            "b2".into(),
            t0,
            &cfg,
        );
        let answer = joined(&replies[0]);
        assert_eq!(
            (
                answer.member_id.as_str(),
                answer.generation,
                answer.leader.as_str()
            ),
            ("b2", 2, "a")
        );
        assert!(answer.members.is_empty() && !answer.skip_assignment);
        assert_eq!(g.state(), ClassicState::Stable);
        // a sees no rebalance; the old b is fenced; the new b gets the old assignment.
        assert_eq!(g.heartbeat("a", Some("ia"), 2, t0), Ok(()));
        assert_eq!(
            g.heartbeat("b", Some("ib"), 2, t0),
            Err(ClassicError::FencedInstanceId {
                instance_id: "ib".into()
            })
        );
        assert_eq!(
            g.heartbeat("b", None, 2, t0),
            Err(ClassicError::UnknownMember)
        );
        let synced = g.sync(sync_req("b2", 2, &[]), 11, t0);
        assert!(
            matches!(&synced[0], Reply::Sync(11, Ok(a)) if a.assignment == "for b"),
            "{synced:?}"
        );
        // The leader restarts: it is told it leads, and that the assignment stays.
        let replies = g.join(
            static_join("ia", "", subscription(&["t"], &[])),
            12,
            "a2".into(),
            t0,
            &cfg,
        );
        let answer = joined(&replies[0]);
        assert_eq!(
            (answer.leader.as_str(), answer.skip_assignment),
            ("a2", true)
        );
        assert_eq!(answer.members.len(), 2);
        assert_eq!(g.state(), ClassicState::Stable);
        assert_eq!(g.generation(), 2);
        g.check_invariants().unwrap();
    }

    #[test]
    fn a_static_member_that_comes_back_with_other_topics_starts_a_rebalance() {
        let (t0, cfg) = (Instant::now(), config(0));
        let mut g = stable_static_pair(t0, &cfg);
        let replies = g.join(
            static_join("ib", "", subscription(&["t", "u"], &[])),
            10,
            "b2".into(),
            t0,
            &cfg,
        );
        assert!(replies.is_empty(), "{replies:?}");
        assert_eq!(g.state(), ClassicState::PreparingRebalance);
        assert_eq!(
            g.heartbeat("a", Some("ia"), 2, t0),
            Err(ClassicError::RebalanceInProgress)
        );
        let replies = g.join(
            static_join("ia", "a", subscription(&["t"], &[])),
            11,
            String::new(),
            t0,
            &cfg,
        );
        assert_eq!(replies.len(), 2);
        assert!(replies.iter().map(joined).all(|a| a.generation == 3));
    }

    #[test]
    fn a_static_member_leaves_by_its_instance_id() {
        let (t0, cfg) = (Instant::now(), config(0));
        let mut g = stable_static_pair(t0, &cfg);
        let mut replies = Vec::new();
        assert_eq!(
            g.leave("a", Some("ib"), t0, &cfg, &mut replies),
            Err(ClassicError::FencedInstanceId {
                instance_id: "ib".into()
            })
        );
        assert_eq!(
            g.leave("", Some("nobody"), t0, &cfg, &mut replies),
            Err(ClassicError::UnknownMember)
        );
        assert_eq!(g.leave("", Some("ib"), t0, &cfg, &mut replies), Ok(()));
        assert!(!g.has_member("b"));
        assert_eq!(g.state(), ClassicState::PreparingRebalance);
    }

    #[test]
    fn a_restored_group_keeps_its_generation_members_and_assignments() {
        let (t0, cfg) = (Instant::now(), config(0));
        assert_eq!(ClassicGroup::new().stored(), None);
        let g = stable_static_pair(t0, &cfg);
        let stored = g.stored().expect("a stable group is stored");
        assert_eq!(stored.generation, 2);
        assert_eq!(stored.leader, "a");
        // A new coordinator loads it later: the same group, sessions from the load.
        let t1 = t0 + Duration::from_secs(30);
        let mut r = ClassicGroup::restore(stored.clone(), t1).unwrap();
        assert_eq!(r.stored(), Some(stored));
        assert_eq!((r.state(), r.generation()), (ClassicState::Stable, 2));
        assert_eq!(r.heartbeat("a", Some("ia"), 2, t1), Ok(()));
        assert_eq!(r.check_commit("b", 2, t1), Ok(()));
        let synced = r.sync(sync_req("b", 2, &[]), 1, t1);
        assert!(
            matches!(&synced[0], Reply::Sync(1, Ok(a)) if a.assignment == "for b"),
            "{synced:?}"
        );
        assert_eq!(
            r.heartbeat("b", Some("ia"), 2, t1),
            Err(ClassicError::FencedInstanceId {
                instance_id: "ia".into()
            })
        );
        // b stops heartbeating: its session, restarted at the load, ends; a rebalance
        // under way is not stored (the last generation stays the record).
        let t2 = t1 + SESSION - Duration::from_millis(1);
        assert_eq!(r.heartbeat("a", None, 2, t2), Ok(()));
        r.tick(t1 + SESSION, &cfg);
        assert!(!r.has_member("b"));
        assert_eq!(r.state(), ClassicState::PreparingRebalance);
        assert_eq!(r.stored(), None);
        // a leaves too: the group is stored empty, with its generation.
        let mut replies = Vec::new();
        r.leave("a", None, t2, &cfg, &mut replies).unwrap();
        let empty = r.stored().expect("an empty group is stored");
        assert!(empty.members.is_empty());
        assert_eq!(empty.generation, 3);
        let back = ClassicGroup::restore(empty.clone(), t2).unwrap();
        assert_eq!((back.state(), back.generation()), (ClassicState::Empty, 3));
        assert_eq!(back.stored(), Some(empty));
    }

    #[test]
    fn a_lost_join_answer_is_answered_again_with_the_same_generation() {
        let (t0, cfg) = (Instant::now(), config(0));
        let mut g = ClassicGroup::new();
        let first = join_new(&mut g, "a", 1, t0, &cfg);
        let again = g.join(join_req("a", &["range"]), 3, String::new(), t0, &cfg);
        assert_eq!(joined(&again[0]).generation, joined(&first[0]).generation);
        assert_eq!(joined(&again[0]).members, joined(&first[0]).members);
    }

    // The property test: clients as Kafka clients behave (join, sync, heartbeat,
    // commit, leave, crash), in random order with time passing; the state machine
    // against a model of what the clients were told.

    #[derive(Debug, Clone)]
    enum Op {
        Join(usize),
        Sync(usize),
        Heartbeat(usize),
        Commit(usize),
        Leave(usize),
        /// The client stops without leaving (it may start again with Join).
        Crash(usize),
        Advance(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        let c = 0..4usize;
        prop_oneof![
            3 => c.clone().prop_map(Op::Join),
            3 => c.clone().prop_map(Op::Sync),
            3 => c.clone().prop_map(Op::Heartbeat),
            1 => c.clone().prop_map(Op::Commit),
            1 => c.clone().prop_map(Op::Leave),
            1 => c.prop_map(Op::Crash),
            2 => (1..15_000u64).prop_map(Op::Advance),
        ]
    }

    #[derive(Debug, Default, Clone)]
    struct Client {
        member_id: String,
        generation: i32,
        /// A leader's member list for its generation.
        leads: Option<Vec<String>>,
        join_waiting: Option<Waiter>,
        sync_waiting: Option<Waiter>,
        crashed: bool,
        /// Bumped by each crash: answers to an earlier life's requests reach nobody.
        life: u32,
    }

    /// What the model remembers of each generation: its leader and protocol, the
    /// members told they are in it, and what the leader assigned.
    #[derive(Debug, Default)]
    struct Generation {
        leader: String,
        protocol: Option<String>,
        members: BTreeSet<String>,
        leader_list: Option<BTreeSet<String>>,
        assigned: Option<BTreeMap<String, Bytes>>,
    }

    struct Model {
        group: ClassicGroup,
        clients: Vec<Client>,
        /// Parked requests: the client and the life that sent them.
        outstanding: HashMap<Waiter, (usize, u32)>,
        answered: HashSet<Waiter>,
        generations: BTreeMap<i32, Generation>,
        next_waiter: Waiter,
        now: Instant,
        cfg: ClassicConfig,
        highest_generation: i32,
    }

    impl Model {
        fn waiter(&mut self, client: usize) -> Waiter {
            self.next_waiter += 1;
            let life = self.clients[client].life;
            self.outstanding.insert(self.next_waiter, (client, life));
            self.next_waiter
        }

        fn deliver(&mut self, replies: Vec<Reply>) -> Result<(), TestCaseError> {
            for reply in replies {
                let w = reply.waiter();
                prop_assert!(self.answered.insert(w), "waiter {} answered twice", w);
                let (c, life) = self
                    .outstanding
                    .remove(&w)
                    .ok_or_else(|| TestCaseError::fail(format!("no waiter {w}")))?;
                let client = &mut self.clients[c];
                if client.life != life {
                    // Its connection is gone with the process that sent it.
                    continue;
                }
                match reply {
                    Reply::Join(_, result) => {
                        if client.join_waiting == Some(w) {
                            client.join_waiting = None;
                        }
                        match result {
                            Ok(JoinOutcome::MemberIdRequired { member_id }) => {
                                client.member_id = member_id;
                            }
                            Ok(JoinOutcome::Joined(a)) => {
                                prop_assert!(a.generation >= client.generation);
                                client.member_id = a.member_id.clone();
                                client.generation = a.generation;
                                let g = self.generations.entry(a.generation).or_default();
                                if g.members.is_empty() {
                                    g.leader = a.leader.clone();
                                    g.protocol = a.protocol_name.clone();
                                }
                                prop_assert_eq!(&g.leader, &a.leader);
                                prop_assert_eq!(&g.protocol, &a.protocol_name);
                                g.members.insert(a.member_id.clone());
                                if a.leader == a.member_id {
                                    let list: BTreeSet<String> =
                                        a.members.iter().map(|(m, _, _)| m.clone()).collect();
                                    if let Some(before) = &g.leader_list {
                                        prop_assert_eq!(before, &list);
                                    }
                                    g.leader_list = Some(list.clone());
                                    client.leads = Some(list.into_iter().collect());
                                } else {
                                    prop_assert!(a.members.is_empty());
                                    client.leads = None;
                                }
                            }
                            Err(ClassicError::UnknownMember) => {
                                client.member_id.clear();
                                client.generation = -1;
                            }
                            Err(_) => {}
                        }
                    }
                    Reply::Sync(_, result) => {
                        if client.sync_waiting == Some(w) {
                            client.sync_waiting = None;
                        }
                        if let Ok(answer) = result {
                            let g = self
                                .generations
                                .get(&client.generation)
                                .ok_or_else(|| TestCaseError::fail("sync of no generation"))?;
                            let assigned = g
                                .assigned
                                .as_ref()
                                .ok_or_else(|| TestCaseError::fail("a sync before the leader's"))?;
                            let expected =
                                assigned.get(&client.member_id).cloned().unwrap_or_default();
                            prop_assert_eq!(answer.assignment, expected);
                        }
                    }
                }
            }
            Ok(())
        }

        fn step(&mut self, op: Op) -> Result<(), TestCaseError> {
            let now = self.now;
            let cfg = self.cfg;
            match op {
                Op::Join(c) => {
                    let cl = &self.clients[c];
                    if cl.join_waiting.is_some() || cl.sync_waiting.is_some() {
                        return Ok(());
                    }
                    let w = self.waiter(c);
                    let cl = &mut self.clients[c];
                    cl.crashed = false;
                    cl.join_waiting = Some(w);
                    let mut req = join_req(&cl.member_id, &["range", "roundrobin"]);
                    req.member_id = cl.member_id.clone();
                    let replies = self.group.join(req, w, format!("m{w}"), now, &cfg);
                    self.deliver(replies)?;
                }
                Op::Sync(c) => {
                    let cl = &self.clients[c];
                    if cl.crashed
                        || cl.member_id.is_empty()
                        || cl.join_waiting.is_some()
                        || cl.sync_waiting.is_some()
                    {
                        return Ok(());
                    }
                    let assignments: Vec<(String, Bytes)> = cl
                        .leads
                        .iter()
                        .flatten()
                        .map(|m| (m.clone(), Bytes::from(format!("{m}@{}", cl.generation))))
                        .collect();
                    let generation = cl.generation;
                    let member_id = cl.member_id.clone();
                    let w = self.waiter(c);
                    self.clients[c].sync_waiting = Some(w);
                    // The model records the leader's assignment if the group takes it.
                    let leading = self.group.state() == ClassicState::CompletingRebalance
                        && self.group.generation() == generation
                        && self.group.leader.as_deref() == Some(member_id.as_str());
                    if leading {
                        let g = self.generations.entry(generation).or_default();
                        g.assigned = Some(assignments.iter().cloned().collect());
                    }
                    let req = SyncGroup {
                        group_id: "g".into(),
                        member_id,
                        generation,
                        group_instance_id: None,
                        protocol_type: None,
                        protocol_name: None,
                        assignments,
                    };
                    let replies = self.group.sync(req, w, now);
                    self.deliver(replies)?;
                }
                Op::Heartbeat(c) => {
                    let cl = &self.clients[c];
                    if cl.crashed || cl.member_id.is_empty() {
                        return Ok(());
                    }
                    if let Err(ClassicError::UnknownMember) =
                        self.group
                            .heartbeat(&cl.member_id, None, cl.generation, now)
                    {
                        let cl = &mut self.clients[c];
                        cl.member_id.clear();
                        cl.generation = -1;
                    }
                }
                Op::Commit(c) => {
                    let cl = &self.clients[c];
                    if cl.crashed || cl.member_id.is_empty() {
                        return Ok(());
                    }
                    let id = cl.member_id.clone();
                    let gen_ = cl.generation;
                    if self.group.check_commit(&id, gen_, now).is_ok() {
                        // Accepted only from a member of the current generation.
                        prop_assert_eq!(gen_, self.group.generation());
                        prop_assert!(self.group.has_member(&id));
                    }
                }
                Op::Leave(c) => {
                    let cl = &self.clients[c];
                    if cl.crashed || cl.member_id.is_empty() {
                        return Ok(());
                    }
                    let id = cl.member_id.clone();
                    let mut replies = Vec::new();
                    let _ = self.group.leave(&id, None, now, &cfg, &mut replies);
                    self.deliver(replies)?;
                    let cl = &mut self.clients[c];
                    cl.member_id.clear();
                    cl.generation = -1;
                }
                Op::Crash(c) => {
                    let cl = &mut self.clients[c];
                    cl.crashed = true;
                    cl.life += 1;
                    cl.member_id.clear();
                    cl.generation = -1;
                    cl.leads = None;
                    cl.join_waiting = None;
                    cl.sync_waiting = None;
                }
                Op::Advance(ms) => {
                    self.now += Duration::from_millis(ms);
                    let replies = self.group.tick(self.now, &cfg);
                    self.deliver(replies)?;
                }
            }
            self.group.check_invariants().map_err(TestCaseError::fail)?;
            // What a coordinator writes gives the same group back on load.
            if let Some(stored) = self.group.stored() {
                let back =
                    ClassicGroup::restore(stored.clone(), self.now).map_err(TestCaseError::fail)?;
                prop_assert_eq!(back.stored(), Some(stored));
            }
            prop_assert!(self.group.generation() >= self.highest_generation);
            self.highest_generation = self.group.generation();
            Ok(())
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn clients_are_told_one_consistent_story_and_every_request_is_answered(
            ops in proptest::collection::vec(op(), 1..120),
            delay in prop_oneof![Just(0u64), Just(3000u64)],
        ) {
            let mut m = Model {
                group: ClassicGroup::new(),
                clients: vec![Client { generation: -1, ..Client::default() }; 4],
                outstanding: HashMap::new(),
                answered: HashSet::new(),
                generations: BTreeMap::new(),
                next_waiter: 0,
                now: Instant::now(),
                cfg: config(delay),
                highest_generation: 0,
            };
            for op in ops {
                m.step(op)?;
            }
            // Every member stops: within the timeouts every parked request is answered
            // and the group empties.
            for c in 0..4 {
                m.step(Op::Crash(c))?;
            }
            for _ in 0..20 {
                m.step(Op::Advance(10_000))?;
            }
            prop_assert!(m.outstanding.is_empty(), "unanswered: {:?}", m.outstanding);
            prop_assert_eq!(m.group.state(), ClassicState::Empty);
            prop_assert_eq!(m.group.member_count(), 0);
            // Each generation's leader was told exactly the members told they are in it.
            for (generation, g) in &m.generations {
                if let Some(list) = &g.leader_list {
                    prop_assert!(
                        g.members.is_subset(list),
                        "generation {}: {:?} told, leader saw {:?}", generation, g.members, list
                    );
                }
            }
        }
    }
}
