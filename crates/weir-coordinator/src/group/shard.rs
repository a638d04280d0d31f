//! The groups of one `__consumer_offsets` partition as a state machine: what a
//! replayed or freshly written record does to them ([`apply_record`], [`finish_replay`]),
//! which membership records a change writes ([`ShardState::membership_records`]: the
//! difference from what was queued, so the log order is the order of the changes), the
//! tombstones of a group deletion ([`deletion_records`]) and the bookkeeping of writes in
//! flight ([`ShardState::queued`], [`ShardState::written`]).
//!
//! Each in-memory offset remembers the log offset of the record that set it, and a
//! record only replaces an older one, so the state matches the last record in the log
//! whatever order the acknowledgements arrive in. Membership (KIP-848's member metadata
//! and current and target assignments) is one member record per member, written after
//! the change is made in memory and before the member is answered; a classic group is
//! one classic record for the whole group ([`ClassicGroup::stored`]: its last completed
//! generation), and one rebalance record while it is between generations
//! ([`ClassicGroup::rebalance_record`]).
//!
//! The shell (weir-cluster's `group::shard`) owns the partition, the write lock, the
//! parked classic requests and the durable acknowledgements; it calls these functions
//! under its state lock and passes the time in.

use std::collections::{BTreeMap, BTreeSet, HashMap, btree_map};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::assignor::{Assignment, Assignor};
use super::classic::{ClassicError, ClassicGroup, ClassicState};
use super::records::{
    self, ClassicRebalanceValue, ClassicValue, GroupValue, MemberValue, RecordKey,
    StoredSubscription,
};
use super::state::{Group, PersistedMember, Subscription, TopicRegex, TopicsSnapshot, to_map};
use super::{GroupConfig, GroupError, GroupOverrides, GroupProtocol, GroupState};

/// One committed offset in memory.
#[derive(Debug, Clone)]
pub struct StoredOffset {
    pub offset: i64,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
    /// The topic's id when it was committed (empty: a record from before topic ids).
    pub topic_id: String,
    /// The committed leader epoch (-1 for none).
    pub leader_epoch: i32,
    /// Log offset of the record that set it.
    pub record_offset: i64,
}

impl StoredOffset {
    /// Whether it belongs to the topic whose current id is `topic_id` (not to a deleted
    /// topic of the same name).
    pub fn is_for(&self, topic_id: &str) -> bool {
        self.topic_id.is_empty() || self.topic_id == topic_id
    }
}

/// One group of a shard.
#[derive(Debug)]
pub struct GroupEntry {
    /// KIP-848 membership (persisted in member and group records).
    pub group: Group,
    /// Classic membership (persisted in classic records). A group runs one protocol at a
    /// time: while either has members, the other refuses to take any.
    pub classic: ClassicGroup,
    pub offsets: BTreeMap<String, BTreeMap<u32, StoredOffset>>,
    /// Tombstones for it are being written.
    pub deleting: bool,
    /// Start of the offsets retention clock: when the group last became empty or was
    /// last committed to, whichever is later (on open: the open time, or the newest
    /// commit timestamp if later). Only read while the group has no members.
    pub idle_since: Instant,
}

impl GroupEntry {
    pub fn state(&self) -> GroupState {
        if self.deleting {
            return GroupState::Dead;
        }
        match self.classic.state() {
            ClassicState::Empty => self.group.state(),
            ClassicState::PreparingRebalance | ClassicState::CompletingRebalance => {
                GroupState::Assigning
            }
            ClassicState::Stable => GroupState::Stable,
        }
    }

    /// Whether the group's members subscribe to `topic` (Kafka's `isSubscribedToTopic`):
    /// a classic group whose members' subscriptions cannot be read counts as subscribed
    /// to every topic.
    pub fn is_subscribed_to(&self, topic: &str) -> bool {
        if self.classic.is_active() {
            self.classic
                .subscribed_topics()
                .is_none_or(|topics| topics.contains(topic))
        } else {
            self.group.is_subscribed_to(topic)
        }
    }

    /// Members of either protocol.
    pub fn member_count(&self) -> usize {
        self.group.member_count() + self.classic.member_count()
    }

    /// Which protocol the group runs: the one with members (or a rebalance under way);
    /// for a group without members, KIP-848 if it had KIP-848 members (a group epoch)
    /// and no classic generation since, else classic (offsets only: no protocol type).
    pub fn protocol(&self) -> GroupProtocol {
        let classic = || GroupProtocol::Classic {
            state: self.classic.state(),
            protocol_type: self.classic.protocol_type().unwrap_or_default().to_string(),
        };
        if self.classic.is_active() {
            classic()
        } else if self.group.member_count() > 0
            || (self.group.epoch() > 0 && self.classic.generation() == 0)
        {
            GroupProtocol::Consumer
        } else {
            classic()
        }
    }
}

/// The groups of one `__consumer_offsets` partition.
#[derive(Debug, Default)]
pub struct ShardState {
    pub groups: HashMap<String, GroupEntry>,
    /// Writes queued and not yet applied.
    pub in_flight: usize,
    /// Log offset of the newest group tombstone per group, kept while writes are in
    /// flight: an older commit acknowledged after the deletion must not bring the group
    /// back.
    pub deleted: HashMap<String, i64>,
    /// Offset keys of commits in flight, so a deletion also tombstones them.
    pub pending_keys: HashMap<(String, String, u32), u32>,
    /// No member deadline is earlier than this (a lower bound; `None`: no members).
    pub next_deadline: Option<Instant>,
    /// Per group, the membership (group record, member records) as queued for the log:
    /// what the next membership write is the difference from.
    pub persisted: HashMap<String, PersistedGroup>,
    /// Numbers the membership writes, in queue (log) order.
    pub membership_seq: u64,
    /// Transactional offset commits (TxnOffsetCommit) whose transaction has no marker in
    /// this partition yet, per producer id, keyed by (group, topic, partition): kept
    /// apart from the groups' committed offsets (OffsetFetch does not see them) until the
    /// producer's commit marker applies them or its abort marker drops them
    /// ([`apply_txn_record`], [`apply_txn_marker`]).
    pub txn_pending: HashMap<i64, HashMap<(String, String, u32), StoredOffset>>,
}

/// A group's membership as its group and member records have it.
#[derive(Debug, Default)]
pub struct PersistedGroup {
    /// The membership write that last carried a change of this group
    /// (`ShardState::membership_seq`): answers about the group wait until it is durable.
    pub queued: u64,
    epoch: i32,
    assignor: Option<Assignor>,
    members: HashMap<Arc<str>, PersistedMember>,
    /// The classic record last queued.
    classic: Option<ClassicValue>,
    /// The classic rebalance record last queued (`None`: none, or its tombstone).
    classic_rebalance: Option<ClassicRebalanceValue>,
}

/// Which members a membership write compares with what was queued.
#[derive(Debug, Clone)]
pub enum Scope {
    /// One member's heartbeat, which changed nothing else (no new group epoch).
    Member(String),
    /// Every member: a new group epoch (new targets), or members removed.
    All,
}

/// One change of membership to write.
enum Change {
    Group {
        epoch: i32,
        assignor: Assignor,
    },
    Member(Arc<str>, Option<Box<PersistedMember>>),
    Classic(Box<ClassicValue>),
    /// `None`: the group settled (a tombstone, which a classic record follows).
    ClassicRebalance(Option<Box<ClassicRebalanceValue>>),
}

/// The records of one write, and the commit keys to forget once it is applied.
#[derive(Debug, Default)]
pub struct Prepared {
    pub records: Vec<(Bytes, Option<Bytes>)>,
    pub pending: Vec<(String, String, u32)>,
    /// A commit: once applied, the group's retention clock restarts at this time.
    pub committed_at: Option<(String, Instant)>,
    /// A membership write: its number, published as durable once it is.
    pub membership_seq: Option<u64>,
    /// A transactional offset commit (TxnOffsetCommit): the producer id and epoch its
    /// batch is written under; once applied, its offsets wait for the producer's marker.
    pub txn: Option<(i64, i16)>,
}
impl ShardState {
    /// Whether a transaction has an offset of `group`'s `topic`/`partition` pending (no
    /// marker yet): OffsetFetch with `require_stable` answers UNSTABLE_OFFSET_COMMIT for
    /// it (KIP-447).
    pub fn has_pending_txn_offset(&self, group: &str, topic: &str, partition: u32) -> bool {
        self.txn_pending.values().any(|offsets| {
            offsets
                .keys()
                .any(|(g, t, p)| g == group && t == topic && *p == partition)
        })
    }

    /// Counts `prepared` as queued for the log: a write in flight, and its commit keys
    /// pending (so a deletion meanwhile tombstones them too).
    pub fn queued(&mut self, prepared: &Prepared) {
        self.in_flight += 1;
        for key in &prepared.pending {
            *self.pending_keys.entry(key.clone()).or_insert(0) += 1;
        }
    }

    /// Ends the write of `prepared`: `base` is the log offset its first record got once
    /// durable, `None` if it failed. A durable write's records are applied (each
    /// replacing only older records; a group one creates starts its retention clock at
    /// `now`) and a commit restarts its group's retention clock. Returns the records that
    /// could not be applied (log offset, why): encoded by the coordinator itself, so a
    /// bug.
    pub fn written(
        &mut self,
        prepared: Prepared,
        base: Option<i64>,
        now: Instant,
    ) -> Vec<(i64, String)> {
        self.in_flight -= 1;
        for key in prepared.pending {
            if let Some(n) = self.pending_keys.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    self.pending_keys.remove(&key);
                }
            }
        }
        let mut failed = Vec::new();
        if let Some(base) = base {
            for (i, (key, value)) in prepared.records.iter().enumerate() {
                let offset = base + i as i64;
                let applied = match prepared.txn {
                    Some((producer_id, _)) => {
                        apply_txn_record(self, producer_id, key, value.as_deref(), offset)
                    }
                    None => apply_record(self, key, value.as_deref(), offset, now, None),
                };
                if let Err(reason) = applied {
                    failed.push((offset, reason));
                }
            }
            if let Some((group, at)) = &prepared.committed_at
                && let Some(e) = self.groups.get_mut(group)
            {
                e.idle_since = e.idle_since.max(*at);
            }
        }
        if self.in_flight == 0 {
            self.deleted.clear();
        }
        failed
    }

    /// What changed in `group_id`'s membership since it was last queued, for the
    /// members `scope` names.
    fn membership_changes(&self, group_id: &str, scope: &Scope) -> Vec<Change> {
        let Some(e) = self.groups.get(group_id) else {
            return Vec::new();
        };
        let empty = PersistedGroup::default();
        let before = self.persisted.get(group_id).unwrap_or(&empty);
        let mut changes = Vec::new();
        let ids: BTreeSet<Arc<str>> = match scope {
            Scope::Member(id) => BTreeSet::from([Arc::from(id.as_str())]),
            Scope::All => e
                .group
                .member_ids()
                .chain(before.members.keys())
                .cloned()
                .collect(),
        };
        for id in ids {
            let now = e.group.persisted_member(&id);
            if now.as_ref() != before.members.get(&id) {
                changes.push(Change::Member(id, now.map(Box::new)));
            }
        }
        let (epoch, assignor) = (e.group.epoch(), e.group.assignor());
        if before.epoch != epoch || before.assignor != Some(assignor) {
            changes.push(Change::Group { epoch, assignor });
        }
        // A rebalance record comes after the classic record of the same step (a replay
        // restores the newer); its tombstone before it, since a replay that meets the
        // tombstone starts the group over and the classic record (written again even if
        // unchanged) restores it.
        let stored = e.classic.stored();
        let classic_changed = stored.is_some() && before.classic != stored;
        let rebalance = e.classic.rebalance_record();
        let rebalance_changed = rebalance != before.classic_rebalance;
        if rebalance.is_none() && rebalance_changed {
            changes.push(Change::ClassicRebalance(None));
            changes.extend(stored.map(|s| Change::Classic(Box::new(s))));
        } else {
            if classic_changed {
                changes.extend(stored.map(|s| Change::Classic(Box::new(s))));
            }
            if rebalance_changed {
                changes.push(Change::ClassicRebalance(rebalance.map(Box::new)));
            }
        }
        changes
    }

    /// True if a membership write for `group_id` and `scope` would write anything.
    pub fn membership_changed(&self, group_id: &str, scope: &Scope) -> bool {
        !self.membership_changes(group_id, scope).is_empty()
    }

    /// The records of the membership changes of `group_id` (members first, then the
    /// group record), marked as queued.
    pub fn membership_records(
        &mut self,
        group_id: &str,
        scope: &Scope,
    ) -> Vec<(Bytes, Option<Bytes>)> {
        let changes = self.membership_changes(group_id, scope);
        if changes.is_empty() {
            return Vec::new();
        }
        self.membership_seq += 1;
        let persisted = self.persisted.entry(group_id.to_string()).or_default();
        persisted.queued = self.membership_seq;
        let mut records = Vec::with_capacity(changes.len());
        for change in changes {
            match change {
                Change::Member(id, Some(member)) => {
                    records.push((
                        records::member_key(group_id, &id),
                        Some(records::member_value(&member_value(&member))),
                    ));
                    persisted.members.insert(id, *member);
                }
                Change::Member(id, None) => {
                    records.push((records::member_key(group_id, &id), None));
                    persisted.members.remove(&id);
                }
                Change::Group { epoch, assignor } => {
                    let value = records::group_value(&GroupValue {
                        epoch,
                        assignor: assignor.name().to_string(),
                    });
                    records.push((records::group_key(group_id), Some(value)));
                    persisted.epoch = epoch;
                    persisted.assignor = Some(assignor);
                }
                Change::Classic(value) => {
                    records.push((
                        records::classic_key(group_id),
                        Some(records::classic_value(&value)),
                    ));
                    persisted.classic = Some(*value);
                }
                Change::ClassicRebalance(value) => {
                    records.push((
                        records::classic_rebalance_key(group_id),
                        value.as_deref().map(records::classic_rebalance_value),
                    ));
                    persisted.classic_rebalance = value.map(|v| *v);
                }
            }
        }
        records
    }

    /// Marks every group's membership as it is now as queued (after a load).
    pub fn mark_persisted(&mut self) {
        let ids: Vec<String> = self.groups.keys().cloned().collect();
        for id in ids {
            self.membership_records(&id, &Scope::All);
        }
    }
}

/// A member as its record stores it.
fn member_value(m: &PersistedMember) -> MemberValue {
    let assignment =
        |set: &Assignment| -> Vec<(String, Vec<u32>)> { to_map(set).into_iter().collect() };
    MemberValue {
        epoch: m.epoch,
        previous_epoch: m.previous_epoch,
        client_id: m.client_id.clone(),
        client_host: m.client_host.clone(),
        subscription: match &m.subscription {
            Subscription::Topics(t) => {
                StoredSubscription::Topics(t.iter().map(|t| t.to_string()).collect())
            }
            Subscription::Regex(r) => StoredSubscription::Regex(r.source.clone()),
        },
        assignor: m.assignor.map(|a| a.name().to_string()).unwrap_or_default(),
        session_timeout_ms: u32::try_from(m.session_timeout.as_millis()).unwrap_or(u32::MAX),
        join_seq: m.join_seq,
        assigned: assignment(&m.assigned),
        pending_revocation: assignment(&m.pending_revocation),
        target: assignment(&m.target),
    }
}

/// A member record back as the state machine's member; `compile` builds a regex
/// subscription.
fn persisted_member(
    v: MemberValue,
    compile: &dyn Fn(&str) -> Result<Arc<TopicRegex>, GroupError>,
) -> Result<PersistedMember, String> {
    let assignment = |list: Vec<(String, Vec<u32>)>| -> Assignment {
        list.into_iter()
            .flat_map(|(t, ps)| {
                let t: Arc<str> = Arc::from(t);
                ps.into_iter().map(move |p| (t.clone(), p))
            })
            .collect()
    };
    let subscription = match v.subscription {
        StoredSubscription::Topics(t) => {
            Subscription::Topics(t.into_iter().map(Arc::from).collect())
        }
        StoredSubscription::Regex(source) => {
            Subscription::Regex(compile(&source).map_err(|e| e.to_string())?)
        }
    };
    let assignor = match v.assignor.as_str() {
        "" => None,
        name => Some(name.parse::<Assignor>()?),
    };
    Ok(PersistedMember {
        epoch: v.epoch,
        previous_epoch: v.previous_epoch,
        client_id: v.client_id,
        client_host: v.client_host,
        subscription,
        assignor,
        session_timeout: Duration::from_millis(u64::from(v.session_timeout_ms)),
        join_seq: v.join_seq,
        assigned: assignment(v.assigned),
        pending_revocation: assignment(v.pending_revocation),
        target: assignment(v.target),
    })
}

/// What a load needs besides the partition.
pub struct LoadContext<'a> {
    pub topics: &'a TopicsSnapshot,
    pub config: &'a GroupConfig,
    /// A group's own settings (Kafka's group configs), which the shell keeps: the
    /// restored members' sessions run with them.
    pub overrides: &'a (dyn Fn(&str) -> GroupOverrides + Sync),
    pub compile: &'a (dyn Fn(&str) -> Result<Arc<TopicRegex>, GroupError> + Sync),
}

impl std::fmt::Debug for LoadContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadContext")
            .field("topics", &self.topics.version)
            .finish_non_exhaustive()
    }
}
/// The classic state machine's refusal as the coordinator's error, naming the group
/// (and the member, where the caller knows it).
pub fn classic_error(group_id: &str, member_id: &str, e: ClassicError) -> GroupError {
    let group_id = group_id.to_string();
    match e {
        ClassicError::UnknownMember => GroupError::UnknownMember {
            group_id,
            member_id: member_id.to_string(),
        },
        ClassicError::IllegalGeneration { given, current } => GroupError::IllegalGeneration {
            group_id,
            member_id: member_id.to_string(),
            given,
            current,
        },
        ClassicError::RebalanceInProgress => GroupError::RebalanceInProgress { group_id },
        ClassicError::InconsistentProtocol(reason) => {
            GroupError::InconsistentGroupProtocol { group_id, reason }
        }
        ClassicError::TooManyMembers { max } => GroupError::TooManyMembers { group_id, max },
        ClassicError::FencedInstanceId { instance_id } => GroupError::FencedInstanceId {
            group_id,
            member_id: member_id.to_string(),
            instance_id,
        },
    }
}
/// Whether a classic JoinGroup from `member_id` (empty: a new member) may go to `group`:
/// a known member id needs the group to exist (a new coordinator that lost it makes the
/// member join as new), a new group needs room (`full`: the most groups the coordinator
/// holds, if it holds that many now), and a group whose members use the consumer protocol
/// (KIP-848) takes no classic member, as a group runs one protocol at a time.
pub fn admit_join(
    st: &ShardState,
    group: &str,
    member_id: &str,
    full: Option<usize>,
) -> Result<(), GroupError> {
    match st.groups.get(group) {
        None if !member_id.is_empty() => Err(GroupError::UnknownMember {
            group_id: group.to_string(),
            member_id: member_id.to_string(),
        }),
        None => match full {
            Some(max) => Err(GroupError::TooManyGroups { max }),
            None => Ok(()),
        },
        Some(e) if e.group.member_count() > 0 => Err(GroupError::InconsistentGroupProtocol {
            group_id: group.to_string(),
            reason: format!(
                "its {} member(s) use the consumer protocol (KIP-848: ConsumerGroupHeartbeat, \
                 or Weir's gRPC Heartbeat); a group runs one protocol at a time, so join with \
                 group.protocol=consumer or use another group id",
                e.group.member_count()
            ),
        }),
        Some(_) => Ok(()),
    }
}

/// Whether a commit to `group` is taken now (`member`: the committing member's id and its
/// classic generation or KIP-848 epoch; `None`: a commit from outside any group, as
/// kafka-python's `assign()` consumers send): a classic group's members commit with its
/// current generation ([`ClassicGroup::check_commit`], which also keeps the session
/// going), a KIP-848 group's with their current epoch; a group with members refuses
/// commits without a member id, so a stale or outside committer cannot move a member's
/// offsets. `full`: the most groups the coordinator holds, if it holds that many now (a
/// commit that would create a group is refused then).
pub fn admit_commit(
    st: &mut ShardState,
    group: &str,
    member: Option<(&str, i32)>,
    now: Instant,
    full: Option<usize>,
) -> Result<(), GroupError> {
    if let Some(e) = st.groups.get_mut(group)
        && e.classic.is_active()
    {
        match member {
            Some((member_id, generation)) => e
                .classic
                .check_commit(member_id, generation, now)
                .map_err(|err| classic_error(group, member_id, err))?,
            None if e.classic.member_count() > 0 => {
                return Err(GroupError::GroupNotEmpty {
                    members: e.classic.member_count(),
                    group_id: group.to_string(),
                    operation: "committing without a member id",
                });
            }
            None => {}
        }
        return Ok(());
    }
    let e = st.groups.get(group);
    match (member, e) {
        (Some((member_id, epoch)), e) => match e.and_then(|e| e.group.member_epoch(member_id)) {
            None => Err(GroupError::UnknownMember {
                group_id: group.to_string(),
                member_id: member_id.to_string(),
            }),
            Some(current) if current != epoch => Err(GroupError::StaleEpoch {
                group_id: group.to_string(),
                member_id: member_id.to_string(),
                given: epoch,
                current,
            }),
            Some(_) => Ok(()),
        },
        (None, Some(e)) if e.group.member_count() > 0 => Err(GroupError::GroupNotEmpty {
            members: e.group.member_count(),
            group_id: group.to_string(),
            operation: "committing without a member id",
        }),
        (None, None) => match full {
            Some(max) => Err(GroupError::TooManyGroups { max }),
            None => Ok(()),
        },
        (None, Some(_)) => Ok(()),
    }
}

/// The entry of `group`, created if missing (its retention clock starting at `now`).
pub fn entry<'a>(st: &'a mut ShardState, group: &str, now: Instant) -> &'a mut GroupEntry {
    if !st.groups.contains_key(group) {
        st.groups.insert(
            group.to_string(),
            GroupEntry {
                group: Group::new(group),
                classic: ClassicGroup::new(),
                offsets: BTreeMap::new(),
                deleting: false,
                idle_since: now,
            },
        );
    }
    st.groups.get_mut(group).expect("inserted")
}

/// Member records seen by a replay, newest per (group, member); `None`: deleted.
pub type ReplayedMembers = HashMap<(String, String), Option<MemberValue>>;

/// Replays `records` (key, value or tombstone, log offset) into an empty shard as a
/// load does, then checks the replayed groups' invariants: the body of the
/// `offsets_records` fuzz target (crate `weir-fuzz`), whose bytes reach here as the
/// keys and values a broker reads back from `__consumer_offsets`. Not an API.
pub fn replay_for_fuzzing(
    records: &[super::RawOffsetsRecord<'_>],
    now: Instant,
) -> Result<(), String> {
    let mut st = ShardState::default();
    let mut members = ReplayedMembers::new();
    for (key, value, offset) in records {
        apply_record(&mut st, key, *value, *offset, now, Some(&mut members))?;
    }
    Ok(())
}

/// Applies one `__consumer_offsets` record at log offset `offset`: on replay, and after
/// each write is durable. Records only replace what older records set. Member records
/// are collected into `members` on replay (the coordinator's own writes already changed
/// memory before they were written, so they pass `None`). `now` starts what a new group
/// or a restored classic session counts from.
pub fn apply_record(
    st: &mut ShardState,
    key: &[u8],
    value: Option<&[u8]>,
    offset: i64,
    now: Instant,
    members: Option<&mut ReplayedMembers>,
) -> Result<(), String> {
    let Some(key) = records::decode_key(key)? else {
        return Ok(());
    };
    let deleted_after =
        |st: &ShardState, group: &str| st.deleted.get(group).is_some_and(|d| *d > offset);
    match (key, value) {
        (
            RecordKey::Offset {
                group,
                topic,
                partition,
            },
            Some(value),
        ) => {
            let value = records::decode_offset_value(value)?;
            if deleted_after(st, &group) {
                return Ok(());
            }
            let e = entry(st, &group, now);
            let stored = StoredOffset {
                offset: value.offset,
                metadata: value.metadata,
                commit_timestamp_ms: value.commit_timestamp_ms,
                topic_id: value.topic_id,
                leader_epoch: value.leader_epoch,
                record_offset: offset,
            };
            match e.offsets.entry(topic).or_default().entry(partition) {
                btree_map::Entry::Vacant(v) => {
                    v.insert(stored);
                }
                btree_map::Entry::Occupied(mut o) => {
                    if o.get().record_offset < offset {
                        o.insert(stored);
                    }
                }
            }
        }
        (
            RecordKey::Offset {
                group,
                topic,
                partition,
            },
            None,
        ) => {
            // An offset deleted (OffsetDelete, retention, its topic deleted) takes the
            // transactions' pending commits of it along, as Kafka's `removeOffsets` does:
            // a later commit marker must not bring back what was deleted.
            let key = (group.clone(), topic.clone(), partition);
            for pending in st.txn_pending.values_mut() {
                if pending.get(&key).is_some_and(|s| s.record_offset < offset) {
                    pending.remove(&key);
                }
            }
            st.txn_pending.retain(|_, pending| !pending.is_empty());
            if let Some(e) = st.groups.get_mut(&group)
                && let Some(parts) = e.offsets.get_mut(&topic)
            {
                if parts
                    .get(&partition)
                    .is_some_and(|s| s.record_offset < offset)
                {
                    parts.remove(&partition);
                }
                if parts.is_empty() {
                    e.offsets.remove(&topic);
                }
            }
        }
        (RecordKey::Group { group }, Some(value)) => {
            let value = records::decode_group_value(value)?;
            if deleted_after(st, &group) {
                return Ok(());
            }
            let assignor = value.assignor.parse::<Assignor>().ok();
            entry(st, &group, now).group.restore(value.epoch, assignor);
        }
        (RecordKey::Member { group, member }, value) => {
            let Some(members) = members else {
                return Ok(());
            };
            let value = value.map(records::decode_member_value).transpose()?;
            if value.is_some() {
                entry(st, &group, now);
            }
            members.insert((group, member), value);
        }
        (RecordKey::Classic { group }, value) => {
            // The coordinator's own writes come from memory; only a replay restores.
            if members.is_none() {
                return Ok(());
            }
            // Sessions start at the load, as Kafka's do.
            let restored = value
                .map(records::decode_classic_value)
                .transpose()?
                .map(|v| ClassicGroup::restore(v, now));
            replay_classic(st, &group, offset, now, restored, "classic group");
        }
        (RecordKey::ClassicRebalance { group }, value) => {
            if members.is_none() {
                return Ok(());
            }
            // A tombstone: the group settled, and the classic record written with it (if
            // it has one) follows and restores it.
            let restored = value
                .map(records::decode_classic_rebalance_value)
                .transpose()?
                .map(|v| ClassicGroup::restore_rebalance(v, now));
            replay_classic(st, &group, offset, now, restored, "classic rebalance");
        }
        // A group config record of a development build (`records::KEY_TYPE_CONFIG`):
        // group configs are in the metadata log now, so it is skipped, value unread.
        (RecordKey::Config { .. }, _) => {}
        (RecordKey::Group { group }, None) => {
            let newest = st.deleted.entry(group.clone()).or_insert(offset);
            *newest = (*newest).max(offset);
            for pending in st.txn_pending.values_mut() {
                pending.retain(|(g, _, _), s| *g != group || s.record_offset > offset);
            }
            st.txn_pending.retain(|_, pending| !pending.is_empty());
            if let Some(e) = st.groups.get_mut(&group) {
                for parts in e.offsets.values_mut() {
                    parts.retain(|_, s| s.record_offset > offset);
                }
                e.offsets.retain(|_, parts| !parts.is_empty());
                if e.member_count() == 0 && !e.classic.is_active() {
                    e.group.reset();
                    e.deleting = false;
                    st.persisted.remove(&group);
                    if e.offsets.is_empty() {
                        st.groups.remove(&group);
                    }
                }
            }
        }
    }
    Ok(())
}
/// Applies one record of a transactional batch of `producer_id` at log offset `offset`
/// (a TxnOffsetCommit): held pending for that producer, replacing an older pending
/// commit of the same partition, until its marker ([`apply_txn_marker`]). Only offset
/// commits are written transactionally; any other record is refused.
pub fn apply_txn_record(
    st: &mut ShardState,
    producer_id: i64,
    key: &[u8],
    value: Option<&[u8]>,
    offset: i64,
) -> Result<(), String> {
    let Some(key) = records::decode_key(key)? else {
        return Ok(());
    };
    let (
        RecordKey::Offset {
            group,
            topic,
            partition,
        },
        Some(value),
    ) = (key, value)
    else {
        return Err(format!(
            "a transactional batch of producer {producer_id} holds a record that is not an \
             offset commit"
        ));
    };
    let value = records::decode_offset_value(value)?;
    let stored = StoredOffset {
        offset: value.offset,
        metadata: value.metadata,
        commit_timestamp_ms: value.commit_timestamp_ms,
        topic_id: value.topic_id,
        leader_epoch: value.leader_epoch,
        record_offset: offset,
    };
    let pending = st.txn_pending.entry(producer_id).or_default();
    match pending.entry((group, topic, partition)) {
        std::collections::hash_map::Entry::Vacant(v) => {
            v.insert(stored);
        }
        std::collections::hash_map::Entry::Occupied(mut o) => {
            if o.get().record_offset < offset {
                o.insert(stored);
            }
        }
    }
    Ok(())
}

/// Applies the marker of `producer_id`'s transaction, at log offset `offset`, to its
/// pending offsets: a commit makes each one its group's committed offset (unless a
/// newer record set that partition, or the group was deleted after it), an abort drops
/// them. Returns how many became committed offsets.
pub fn apply_txn_marker(
    st: &mut ShardState,
    producer_id: i64,
    commit: bool,
    offset: i64,
    now: Instant,
) -> usize {
    let Some(pending) = st.txn_pending.remove(&producer_id) else {
        return 0;
    };
    if !commit {
        return 0;
    }
    let mut applied = 0;
    for ((group, topic, partition), stored) in pending {
        if stored.record_offset > offset
            || st
                .deleted
                .get(&group)
                .is_some_and(|d| *d > stored.record_offset)
        {
            continue;
        }
        let e = entry(st, &group, now);
        match e.offsets.entry(topic).or_default().entry(partition) {
            btree_map::Entry::Vacant(v) => {
                v.insert(stored);
                applied += 1;
            }
            btree_map::Entry::Occupied(mut o) => {
                if o.get().record_offset < stored.record_offset {
                    o.insert(stored);
                    applied += 1;
                }
            }
        }
    }
    applied
}

/// The records deleting `group` in one batch: a tombstone for each committed offset
/// (including commits still in flight), its classic record if it has one, then its group
/// key; marks the group `deleting` until the write is applied (or fails: the shell
/// clears it). Used by the group deletion and the offsets retention.
pub fn deletion_records(st: &mut ShardState, group: &str) -> Result<Prepared, GroupError> {
    let pending: Vec<(String, u32)> = st
        .pending_keys
        .keys()
        .filter(|(g, _, _)| g == group)
        .map(|(_, t, p)| (t.clone(), *p))
        .collect();
    let e = st
        .groups
        .get_mut(group)
        .ok_or_else(|| GroupError::UnknownGroup(group.to_string()))?;
    e.deleting = true;
    let mut keys: BTreeSet<(String, u32)> = e
        .offsets
        .iter()
        .flat_map(|(t, parts)| parts.keys().map(move |p| (t.clone(), *p)))
        .collect();
    keys.extend(pending);
    let mut records: Vec<(Bytes, Option<Bytes>)> = keys
        .iter()
        .map(|(t, p)| (records::offset_key(group, t, *p), None))
        .collect();
    // A classic record (the group's last generation, empty now) goes too, before the
    // group tombstone, so a replay cannot bring its generation back.
    if let Some(p) = st.persisted.get(group) {
        if p.classic_rebalance.is_some() {
            records.push((records::classic_rebalance_key(group), None));
        }
        if p.classic.is_some() {
            records.push((records::classic_key(group), None));
        }
    }
    records.push((records::group_key(group), None));
    Ok(Prepared {
        records,
        ..Prepared::default()
    })
}

/// A replayed classic or classic rebalance record (`what`) of `group` at `offset`: the
/// group it restores, or (`None`, a tombstone) a group without classic state. A record
/// that cannot be restored was written by this broker, so a bug or an incompatible
/// broker: the members join again rather than the whole shard being refused.
fn replay_classic(
    st: &mut ShardState,
    group: &str,
    offset: i64,
    now: Instant,
    restored: Option<Result<ClassicGroup, String>>,
    what: &str,
) {
    match restored {
        Some(Ok(classic)) => {
            entry(st, group, now).classic = classic;
            return;
        }
        Some(Err(reason)) => tracing::error!(
            group,
            offset,
            reason,
            "a {what} record cannot be restored; its members will have to join again"
        ),
        None => {}
    }
    if let Some(e) = st.groups.get_mut(group) {
        e.classic = ClassicGroup::new();
    }
}

/// The end of a replay, once every record was applied in log order with
/// [`apply_record`]: restores the members of `members`, starts their sessions and the
/// retention clocks at the open (`open_instant`, the wall clock then being `open_ms`
/// since the Unix epoch), and marks the state as persisted. Returns how many members were
/// restored.
pub fn finish_replay(
    st: &mut ShardState,
    members: ReplayedMembers,
    index: u32,
    cx: &LoadContext<'_>,
    (open_instant, open_ms): (Instant, i64),
) -> usize {
    // Everything is applied in log order: no write is in flight. Every group's sessions,
    // and the retention clock of the empty ones, restart now (or, for the clock, at the
    // newest commit timestamp if that is later: a wall clock that went back), so offsets
    // never expire earlier than Kafka, which counts from when the group became empty.
    st.deleted.clear();
    let mut restored = 0usize;
    for ((group, member), value) in members {
        let (Some(value), Some(e)) = (value, st.groups.get_mut(&group)) else {
            continue;
        };
        match persisted_member(value, cx.compile) {
            Ok(m) => {
                e.group.restore_member(&member, m, open_instant);
                restored += 1;
            }
            // Written by this broker, so this is a bug or an incompatible broker: the
            // member is dropped (it rejoins) rather than the whole shard refused.
            Err(reason) => tracing::error!(
                partition = index,
                group,
                member,
                reason,
                "a member record cannot be restored; the member will have to rejoin"
            ),
        }
    }
    let mut next_deadline: Option<Instant> = None;
    for (id, e) in st.groups.iter_mut() {
        // A group's own settings count from the load on, as every heartbeat's do.
        let config = (cx.overrides)(id).apply(cx.config);
        e.group.finish_restore(cx.topics, open_instant, &config);
        // Restored classic members' sessions (started when their record was replayed)
        // end on this shard's clock like every other deadline.
        for d in [e.group.next_deadline(), e.classic.next_deadline()]
            .into_iter()
            .flatten()
        {
            next_deadline = Some(next_deadline.map_or(d, |n| n.min(d)));
        }
        let newest = e
            .offsets
            .values()
            .flat_map(|parts| parts.values())
            .map(|s| s.commit_timestamp_ms)
            .max()
            .unwrap_or(i64::MIN);
        let ahead = Duration::from_millis(newest.saturating_sub(open_ms).max(0) as u64);
        e.idle_since = open_instant + ahead;
    }
    st.next_deadline = next_deadline;
    st.mark_persisted();
    restored
}

#[cfg(test)]
mod tests;
