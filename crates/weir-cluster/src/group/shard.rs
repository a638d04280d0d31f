//! One shard of the coordinator: the groups of one `__consumer_offsets` partition, while
//! this broker leads that partition. A shard is loaded by replaying its partition (log
//! start to high watermark, once the leadership has committed everything it inherited)
//! and is dropped when the leadership ends or a membership write fails; it then loads
//! again from the log, so memory never stays ahead of what is committed.
//!
//! A shard is a `std::sync::Mutex` over its groups (held for short, synchronous steps,
//! never across an await) plus a `tokio::sync::Mutex` serializing its writes. A write
//! takes the writer lock, checks and prepares under the state lock, builds one record
//! batch, queues it on the partition under the leader epoch the shard was loaded at
//! (queue order is log order; another leadership refuses it) and releases the writer
//! lock; it then waits for the durable acknowledgement (concurrent writers share the
//! fsync) and applies the records to the state. Each in-memory offset remembers the log
//! offset of the record that set it, and a record only replaces an older one, so the
//! state matches the last record in the log whatever order the acknowledgements arrive
//! in. Writes run as their own tasks, so a caller that goes away (a cancelled RPC)
//! cannot leave a record in the log that the state never saw.
//!
//! Membership (KIP-848's member metadata and current and target assignments) is written
//! as one member record per member, after the change is made in memory and before the
//! member is answered: `ShardState::persisted` holds what has been queued, and each
//! write carries the difference from it, computed under the writer lock so the log
//! order is the order of the changes. A classic group is written the same way, as one
//! classic record for the whole group ([`ClassicGroup::stored`]: its last completed
//! generation), before its members are answered.

use std::collections::{BTreeMap, BTreeSet, HashMap, btree_map};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::watch;

use super::assignor::{Assignment, Assignor};
use super::classic::{
    ClassicError, ClassicGroup, ClassicState, JoinOutcome, Reply, SyncAnswer, Waiter,
};
use super::records::{self, ClassicValue, GroupValue, MemberValue, RecordKey, StoredSubscription};
use super::state::{Group, PersistedMember, Subscription, TopicRegex, TopicsSnapshot, to_map};
use super::{
    GroupConfig, GroupError, GroupProtocol, GroupState, LOAD_WAIT, OFFSETS_TOPIC, REPLAY_READ_BYTES,
};
use crate::error::ClusterError;
use crate::internal_topic::{self, SubmitError};
use crate::partition::Partition;

/// One committed offset in memory.
#[derive(Debug, Clone)]
pub(super) struct StoredOffset {
    pub(super) offset: i64,
    pub(super) metadata: String,
    pub(super) commit_timestamp_ms: i64,
    /// The topic's id when it was committed (empty: a record from before topic ids).
    pub(super) topic_id: String,
    /// The committed leader epoch (-1 for none).
    pub(super) leader_epoch: i32,
    /// Log offset of the record that set it.
    pub(super) record_offset: i64,
}

impl StoredOffset {
    /// Whether it belongs to the topic whose current id is `topic_id` (not to a deleted
    /// topic of the same name).
    pub(super) fn is_for(&self, topic_id: &str) -> bool {
        self.topic_id.is_empty() || self.topic_id == topic_id
    }
}

/// One group of a shard.
#[derive(Debug)]
pub(super) struct GroupEntry {
    /// KIP-848 membership (persisted in member and group records).
    pub(super) group: Group,
    /// Classic membership (persisted in classic records). A group runs one protocol at a
    /// time: while either has members, the other refuses to take any.
    pub(super) classic: ClassicGroup,
    pub(super) offsets: BTreeMap<String, BTreeMap<u32, StoredOffset>>,
    /// Tombstones for it are being written.
    pub(super) deleting: bool,
    /// Start of the offsets retention clock: when the group last became empty or was
    /// last committed to, whichever is later (on open: the open time, or the newest
    /// commit timestamp if later). Only read while the group has no members.
    pub(super) idle_since: Instant,
}

impl GroupEntry {
    pub(super) fn state(&self) -> GroupState {
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
    pub(super) fn is_subscribed_to(&self, topic: &str) -> bool {
        if self.classic.is_active() {
            self.classic
                .subscribed_topics()
                .is_none_or(|topics| topics.contains(topic))
        } else {
            self.group.is_subscribed_to(topic)
        }
    }

    /// Members of either protocol.
    pub(super) fn member_count(&self) -> usize {
        self.group.member_count() + self.classic.member_count()
    }

    /// Which protocol the group runs: the one with members (or a rebalance under way);
    /// for a group without members, KIP-848 if it had KIP-848 members (a group epoch)
    /// and no classic generation since, else classic (offsets only: no protocol type).
    pub(super) fn protocol(&self) -> GroupProtocol {
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

/// A classic JoinGroup or SyncGroup waiting for its answer.
#[derive(Debug)]
pub(super) struct Parked {
    pub(super) group_id: String,
    /// Empty for a new member's join.
    pub(super) member_id: String,
    pub(super) answer: ParkedAnswer,
}

/// Where a parked request's answer goes.
#[derive(Debug)]
pub(super) enum ParkedAnswer {
    Join(tokio::sync::oneshot::Sender<Result<JoinOutcome, GroupError>>),
    Sync(tokio::sync::oneshot::Sender<Result<SyncAnswer, GroupError>>),
}

/// The groups of one `__consumer_offsets` partition.
#[derive(Debug, Default)]
pub(super) struct ShardState {
    pub(super) groups: HashMap<String, GroupEntry>,
    /// Writes queued and not yet applied.
    in_flight: usize,
    /// Log offset of the newest group tombstone per group, kept while writes are in
    /// flight: an older commit acknowledged after the deletion must not bring the group
    /// back.
    deleted: HashMap<String, i64>,
    /// Offset keys of commits in flight, so a deletion also tombstones them.
    pub(super) pending_keys: HashMap<(String, String, u32), u32>,
    /// No member deadline is earlier than this (a lower bound; `None`: no members).
    pub(super) next_deadline: Option<Instant>,
    /// Per group, the membership (group record, member records) as queued for the log:
    /// what the next membership write is the difference from.
    persisted: HashMap<String, PersistedGroup>,
    /// Numbers the membership writes, in queue (log) order.
    membership_seq: u64,
    /// Classic JoinGroup and SyncGroup requests waiting for their rebalance step, by
    /// the number the state machine answers them under. Answered NOT_COORDINATOR when
    /// the shard resigns ([`Shard::resign`]); the callers hold the shard, so it is not
    /// dropped while they wait.
    pub(super) parked: HashMap<Waiter, Parked>,
    /// Set when the shard resigned (the leader it named): nothing parks any more.
    pub(super) resigned: Option<i32>,
    /// The next number for a parked request.
    pub(super) next_waiter: Waiter,
}

/// A group's membership as its group and member records have it.
#[derive(Debug, Default)]
struct PersistedGroup {
    /// The membership write that last carried a change of this group
    /// (`ShardState::membership_seq`): answers about the group wait until it is durable.
    queued: u64,
    epoch: i32,
    assignor: Option<Assignor>,
    members: HashMap<Arc<str>, PersistedMember>,
    /// The classic record last queued.
    classic: Option<ClassicValue>,
}

/// Which members a membership write compares with what was queued.
#[derive(Debug, Clone)]
pub(super) enum Scope {
    /// One member's heartbeat, which changed nothing else (no new group epoch).
    Member(String),
    /// Every member: a new group epoch (new targets), or members removed.
    All,
}

/// One change of membership to write.
enum Change {
    Group { epoch: i32, assignor: Assignor },
    Member(Arc<str>, Option<Box<PersistedMember>>),
    Classic(Box<ClassicValue>),
}

/// The records of one write, and the commit keys to forget once it is applied.
#[derive(Debug, Default)]
pub(super) struct Prepared {
    pub(super) records: Vec<(Bytes, Option<Bytes>)>,
    pub(super) pending: Vec<(String, String, u32)>,
    /// A commit: once applied, the group's retention clock restarts at this time.
    pub(super) committed_at: Option<(String, Instant)>,
    /// A membership write: its number, published as durable once it is.
    pub(super) membership_seq: Option<u64>,
}

/// How far membership writes are durable.
#[derive(Debug, Clone, Copy, Default)]
struct Durable {
    /// Every membership write numbered up to this is durable.
    seq: u64,
    /// A membership write failed: nothing more becomes durable in this shard, memory may
    /// be ahead of the log, and the shard serves nothing more (it loads again).
    failed: bool,
    /// The shard resigned (the leader it named): whoever waits hears NOT_COORDINATOR.
    resigned: Option<i32>,
}

#[derive(Debug)]
pub(super) struct Shard {
    pub(super) index: u32,
    pub(super) partition: Arc<Partition>,
    /// The leadership it was loaded under: its writes are refused under any other.
    pub(super) leader_epoch: i32,
    writer: tokio::sync::Mutex<()>,
    state: Mutex<ShardState>,
    /// How far membership writes are durable, and whether one failed.
    durable: watch::Sender<Durable>,
}

pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl ShardState {
    /// Sends the state machine's answers to the requests parked under them (a caller
    /// that went away is skipped).
    pub(super) fn deliver(&mut self, replies: Vec<Reply>) {
        for reply in replies {
            let Some(parked) = self.parked.remove(&reply.waiter()) else {
                continue;
            };
            let error = |e| classic_error(&parked.group_id, &parked.member_id, e);
            match (parked.answer, reply) {
                (ParkedAnswer::Join(tx), Reply::Join(_, result)) => {
                    let _ = tx.send(result.map_err(error));
                }
                (ParkedAnswer::Sync(tx), Reply::Sync(_, result)) => {
                    let _ = tx.send(result.map_err(error));
                }
                (answer, reply) => {
                    debug_assert!(false, "{reply:?} for {answer:?}");
                }
            }
        }
    }

    /// Answers the requests `replies` are addressed to with `error()` instead of the
    /// replies: the membership write their answers rest on failed.
    pub(super) fn fail(&mut self, replies: Vec<Reply>, error: impl Fn() -> GroupError) {
        for reply in replies {
            let Some(parked) = self.parked.remove(&reply.waiter()) else {
                continue;
            };
            match parked.answer {
                ParkedAnswer::Join(tx) => {
                    let _ = tx.send(Err(error()));
                }
                ParkedAnswer::Sync(tx) => {
                    let _ = tx.send(Err(error()));
                }
            }
        }
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
        if let Some(classic) = e.classic.stored()
            && before.classic.as_ref() != Some(&classic)
        {
            changes.push(Change::Classic(Box::new(classic)));
        }
        changes
    }

    /// True if a membership write for `group_id` and `scope` would write anything.
    pub(super) fn membership_changed(&self, group_id: &str, scope: &Scope) -> bool {
        !self.membership_changes(group_id, scope).is_empty()
    }

    /// The records of the membership changes of `group_id` (members first, then the
    /// group record), marked as queued.
    pub(super) fn membership_records(
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
            }
        }
        records
    }

    /// Marks every group's membership as it is now as queued (after a load).
    fn mark_persisted(&mut self) {
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
pub(super) struct LoadContext<'a> {
    pub(super) topics: &'a TopicsSnapshot,
    pub(super) config: &'a GroupConfig,
    pub(super) compile: &'a (dyn Fn(&str) -> Result<Arc<TopicRegex>, GroupError> + Sync),
}

impl internal_topic::LoadedShard for Shard {
    fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    fn failed(&self) -> bool {
        Shard::failed(self)
    }

    fn group_count(&self) -> usize {
        Shard::group_count(self)
    }

    fn leads(&self) -> bool {
        self.partition.leads_at(self.leader_epoch)
    }

    fn resign(&self, coordinator: i32) {
        Shard::resign(self, coordinator);
    }
}

impl Shard {
    /// Loads the shard of `partition`, which this broker leads at `leader_epoch`: waits
    /// (at most [`LOAD_WAIT`]) until the leadership has committed everything in its log,
    /// then replays the log up to there. `Ok(None)`: not ready yet (the high watermark
    /// has not reached the log end, or the leadership changed); try again later.
    pub(super) async fn load(
        index: u32,
        partition: Arc<Partition>,
        leader_epoch: i32,
        cx: &LoadContext<'_>,
    ) -> Result<Option<Arc<Shard>>, GroupError> {
        let Some(end) = internal_topic::wait_committed(&partition, LOAD_WAIT).await? else {
            return Ok(None);
        };
        let shard = Shard {
            index,
            partition,
            leader_epoch,
            writer: tokio::sync::Mutex::new(()),
            state: Mutex::new(ShardState::default()),
            durable: watch::Sender::new(Durable::default()),
        };
        let state = replay(&shard, end, cx).await?;
        // Everything replayed is durable already.
        shard.durable.send_modify(|d| d.seq = state.membership_seq);
        *shard.state() = state;
        if shard.partition.state().leader_epoch != leader_epoch {
            return Ok(None);
        }
        Ok(Some(Arc::new(shard)))
    }

    pub(super) fn state(&self) -> MutexGuard<'_, ShardState> {
        self.state.lock().expect("group shard mutex")
    }

    /// True once a membership write failed: the shard must not serve any more.
    pub(super) fn failed(&self) -> bool {
        self.durable.borrow().failed
    }

    /// Groups of this shard.
    pub(super) fn group_count(&self) -> usize {
        self.state().groups.len()
    }

    /// Stops serving: every request parked on the shard (classic JoinGroup and
    /// SyncGroup) and every wait for a membership write is answered at once with
    /// NOT_COORDINATOR naming `coordinator`, and nothing parks here any more. Called
    /// when the coordinator drops or replaces the shard.
    pub(super) fn resign(&self, coordinator: i32) {
        let parked: Vec<Parked> = {
            let mut st = self.state();
            st.resigned = Some(coordinator);
            st.parked.drain().map(|(_, p)| p).collect()
        };
        self.durable
            .send_modify(|d| d.resigned = d.resigned.or(Some(coordinator)));
        if !parked.is_empty() {
            tracing::info!(
                partition = self.index,
                answered = parked.len(),
                "parked group requests answered NOT_COORDINATOR: this broker no longer coordinates their groups"
            );
        }
        for p in parked {
            let error = self.not_coordinator(coordinator);
            match p.answer {
                ParkedAnswer::Join(tx) => {
                    let _ = tx.send(Err(error));
                }
                ParkedAnswer::Sync(tx) => {
                    let _ = tx.send(Err(error));
                }
            }
        }
    }

    /// NOT_COORDINATOR for this shard's partition, naming `coordinator`.
    pub(super) fn not_coordinator(&self, coordinator: i32) -> GroupError {
        GroupError::NotCoordinator {
            partition: self.index,
            coordinator,
        }
    }

    /// Waits until membership write `seq` (and so every one before it) is durable; an
    /// error if the shard failed or resigned first.
    async fn wait_durable(&self, seq: u64) -> Result<(), GroupError> {
        let mut durable = self.durable.subscribe();
        let outcome = durable
            .wait_for(|d| d.seq >= seq || d.failed || d.resigned.is_some())
            .await
            .map(|d| *d);
        match outcome {
            Ok(Durable {
                resigned: Some(coordinator),
                ..
            }) => Err(self.not_coordinator(coordinator)),
            Ok(Durable { failed: false, .. }) => Ok(()),
            _ => Err(GroupError::CoordinatorLoading {
                partition: self.index,
            }),
        }
    }

    /// Writes what changed in `group_id`'s membership (for the members `scope` names)
    /// and waits until it is durable. On failure the shard is failed: memory holds
    /// changes the log may not, so the coordinator loads the shard again from the log.
    pub(super) async fn persist(
        self: &Arc<Self>,
        group_id: &str,
        scope: Scope,
    ) -> Result<(), GroupError> {
        // Nothing new to write: the answer may still rest on a change another request's
        // write carries (a new target from another member's join, or this member's own
        // change queued by a concurrent write), so it waits until that write is durable.
        let queued = {
            let st = self.state();
            (!st.membership_changed(group_id, &scope))
                .then(|| st.persisted.get(group_id).map_or(0, |p| p.queued))
        };
        if let Some(seq) = queued {
            return self.wait_durable(seq).await;
        }
        let group = group_id.to_string();
        let written = self
            .write(move |st| {
                let records = st.membership_records(&group, &scope);
                let membership_seq = (!records.is_empty()).then_some(st.membership_seq);
                Ok(Prepared {
                    records,
                    membership_seq,
                    ..Prepared::default()
                })
            })
            .await;
        if let Err(e) = &written {
            let first = self
                .durable
                .send_if_modified(|d| !std::mem::replace(&mut d.failed, true));
            if first {
                tracing::warn!(
                    partition = self.index,
                    group = group_id,
                    error = %e,
                    "a membership write failed; the groups of this {OFFSETS_TOPIC} partition load again from its log"
                );
            }
        }
        written?;
        // Ours is durable, and so is every membership write queued before it. But the
        // write may have found nothing left to write (a concurrent write, queued first,
        // had captured this group's change after the check above): wait for whatever
        // last carried the group.
        let seq = self.state().persisted.get(group_id).map_or(0, |p| p.queued);
        self.wait_durable(seq).await
    }

    /// Writes what `prepare` returns (run under the writer and state locks; it checks
    /// the request and may mark state) as one batch, waits until it is durable, and
    /// applies it. Returns the base offset, or `None` if there was nothing to write.
    pub(super) async fn write(
        self: &Arc<Self>,
        prepare: impl FnOnce(&mut ShardState) -> Result<Prepared, GroupError> + Send + 'static,
    ) -> Result<Option<i64>, GroupError> {
        let shard = self.clone();
        // Its own task: once records are queued they are applied even if the caller
        // stops waiting.
        tokio::spawn(async move {
            let writer = shard.writer.lock().await;
            let prepared = {
                let mut st = shard.state();
                let prepared = prepare(&mut st)?;
                if prepared.records.is_empty() {
                    return Ok(None);
                }
                st.in_flight += 1;
                for key in &prepared.pending {
                    *st.pending_keys.entry(key.clone()).or_insert(0) += 1;
                }
                prepared
            };
            let appended = shard.append(&prepared.records, writer).await;
            let mut st = shard.state();
            st.in_flight -= 1;
            for key in prepared.pending {
                if let Some(n) = st.pending_keys.get_mut(&key) {
                    *n -= 1;
                    if *n == 0 {
                        st.pending_keys.remove(&key);
                    }
                }
            }
            let result = appended.map(|base| {
                for (i, (key, value)) in prepared.records.iter().enumerate() {
                    let offset = base + i as i64;
                    if let Err(reason) = apply_record(&mut st, key, value.as_deref(), offset, None)
                    {
                        // We encoded it ourselves: a bug, not bad input.
                        tracing::error!(
                            partition = shard.index,
                            offset,
                            reason,
                            "applying own record failed"
                        );
                    }
                }
                if let Some((group, at)) = &prepared.committed_at
                    && let Some(e) = st.groups.get_mut(group)
                {
                    e.idle_since = e.idle_since.max(*at);
                }
                if let Some(seq) = prepared.membership_seq {
                    // Acknowledged in log order: everything before it is durable too.
                    shard.durable.send_modify(|d| d.seq = d.seq.max(seq));
                }
                Some(base)
            });
            if st.in_flight == 0 {
                st.deleted.clear();
            }
            result
        })
        .await
        .map_err(|e| GroupError::Cluster(ClusterError::TaskFailed(e.to_string())))?
        .map_err(not_coordinator)
    }

    /// Builds the batch, queues it (then lets the next writer in) and waits for the
    /// durable acknowledgement; returns the base offset.
    async fn append(
        &self,
        records: &[(Bytes, Option<Bytes>)],
        writer: tokio::sync::MutexGuard<'_, ()>,
    ) -> Result<i64, GroupError> {
        let pending = internal_topic::submit_records(
            &self.partition,
            OFFSETS_TOPIC,
            self.leader_epoch,
            records,
        )
        .await
        .map_err(|e| match e {
            SubmitError::Cluster(e) => GroupError::Cluster(e),
            e @ (SubmitError::TooLarge { .. } | SubmitError::Encode(_)) => {
                GroupError::InvalidRequest(format!("{e}; send fewer partitions per request"))
            }
        })?;
        drop(writer);
        let outcome = pending.await.map_err(|_| ClusterError::PartitionClosed {
            topic: OFFSETS_TOPIC.to_string(),
            partition: self.index,
        })??;
        Ok(outcome.base_offset)
    }
}

/// The classic state machine's refusal as the coordinator's error, naming the group
/// (and the member, where the caller knows it).
pub(super) fn classic_error(group_id: &str, member_id: &str, e: ClassicError) -> GroupError {
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

/// A write refused because this broker no longer leads the partition (at the epoch the
/// shard was loaded under): the group's coordinator is elsewhere now.
fn not_coordinator(e: GroupError) -> GroupError {
    match e {
        GroupError::Cluster(ClusterError::NotLeader {
            partition, leader, ..
        }) => GroupError::NotCoordinator {
            partition,
            coordinator: leader,
        },
        GroupError::Cluster(ClusterError::FencedLeaderEpoch { partition, .. }) => {
            GroupError::NotCoordinator {
                partition,
                coordinator: -1,
            }
        }
        e => e,
    }
}

/// The entry of `group`, created if missing.
pub(super) fn entry<'a>(st: &'a mut ShardState, group: &str) -> &'a mut GroupEntry {
    if !st.groups.contains_key(group) {
        st.groups.insert(
            group.to_string(),
            GroupEntry {
                group: Group::new(group),
                classic: ClassicGroup::new(),
                offsets: BTreeMap::new(),
                deleting: false,
                idle_since: Instant::now(),
            },
        );
    }
    st.groups.get_mut(group).expect("inserted")
}

/// Member records seen by a replay, newest per (group, member); `None`: deleted.
pub(super) type ReplayedMembers = HashMap<(String, String), Option<MemberValue>>;

/// Replays `records` (key, value or tombstone, log offset) into an empty shard as a
/// load does, then checks the replayed groups' invariants: the body of the
/// `offsets_records` fuzz target (crate `weir-fuzz`), whose bytes reach here as the
/// keys and values a broker reads back from `__consumer_offsets`. Not an API.
pub(super) fn replay_for_fuzzing(records: &[super::RawOffsetsRecord<'_>]) -> Result<(), String> {
    let mut st = ShardState::default();
    let mut members = ReplayedMembers::new();
    for (key, value, offset) in records {
        apply_record(&mut st, key, *value, *offset, Some(&mut members))?;
    }
    Ok(())
}

/// Applies one `__consumer_offsets` record at log offset `offset`: on replay, and after
/// each write is durable. Records only replace what older records set. Member records
/// are collected into `members` on replay (the coordinator's own writes already changed
/// memory before they were written, so they pass `None`).
pub(super) fn apply_record(
    st: &mut ShardState,
    key: &[u8],
    value: Option<&[u8]>,
    offset: i64,
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
            let e = entry(st, &group);
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
            entry(st, &group).group.restore(value.epoch, assignor);
        }
        (RecordKey::Member { group, member }, value) => {
            let Some(members) = members else {
                return Ok(());
            };
            let value = value.map(records::decode_member_value).transpose()?;
            if value.is_some() {
                entry(st, &group);
            }
            members.insert((group, member), value);
        }
        (RecordKey::Classic { group }, value) => {
            // The coordinator's own writes come from memory; only a replay restores.
            if members.is_none() {
                return Ok(());
            }
            let value = value.map(records::decode_classic_value).transpose()?;
            match value {
                // Sessions start at the load, as Kafka's do.
                Some(value) => match ClassicGroup::restore(value, Instant::now()) {
                    Ok(classic) => entry(st, &group).classic = classic,
                    // Written by this broker, so a bug or an incompatible broker: the
                    // members join again rather than the whole shard being refused.
                    Err(reason) => {
                        tracing::error!(
                            group,
                            offset,
                            reason,
                            "a classic group record cannot be restored; its members will have to join again"
                        );
                        if let Some(e) = st.groups.get_mut(&group) {
                            e.classic = ClassicGroup::new();
                        }
                    }
                },
                None => {
                    if let Some(e) = st.groups.get_mut(&group) {
                        e.classic = ClassicGroup::new();
                    }
                }
            }
        }
        (RecordKey::Group { group }, None) => {
            let newest = st.deleted.entry(group.clone()).or_insert(offset);
            *newest = (*newest).max(offset);
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

/// Writes, in one batch, a tombstone for each committed offset of `group` (including
/// commits still in flight) and then one for its group key, if `check` (run under the
/// writer and state locks) says so; marks the group `deleting` meanwhile. Returns
/// whether it wrote. Used by `delete_group` and the offsets retention.
pub(super) async fn delete_group_records(
    shard: &Arc<Shard>,
    group_id: &str,
    check: impl FnOnce(&ShardState) -> Result<bool, GroupError> + Send + 'static,
) -> Result<bool, GroupError> {
    let group = group_id.to_string();
    let written = shard
        .write(move |st| {
            if !check(st)? {
                return Ok(Prepared::default());
            }
            let pending: Vec<(String, u32)> = st
                .pending_keys
                .keys()
                .filter(|(g, _, _)| *g == group)
                .map(|(_, t, p)| (t.clone(), *p))
                .collect();
            let e = st
                .groups
                .get_mut(&group)
                .ok_or_else(|| GroupError::UnknownGroup(group.clone()))?;
            e.deleting = true;
            let mut keys: BTreeSet<(String, u32)> = e
                .offsets
                .iter()
                .flat_map(|(t, parts)| parts.keys().map(move |p| (t.clone(), *p)))
                .collect();
            keys.extend(pending);
            let mut records: Vec<(Bytes, Option<Bytes>)> = keys
                .iter()
                .map(|(t, p)| (records::offset_key(&group, t, *p), None))
                .collect();
            // A classic record (the group's last generation, empty now) goes too, before
            // the group tombstone, so a replay cannot bring its generation back.
            if st
                .persisted
                .get(&group)
                .is_some_and(|p| p.classic.is_some())
            {
                records.push((records::classic_key(&group), None));
            }
            records.push((records::group_key(&group), None));
            Ok(Prepared {
                records,
                ..Prepared::default()
            })
        })
        .await;
    if written.is_err()
        && let Some(e) = shard.state().groups.get_mut(group_id)
    {
        e.deleting = false;
    }
    Ok(written?.is_some())
}

/// The end of a replay, once every record was applied in log order with
/// [`apply_record`]: restores the members of `members`, starts their sessions and the
/// retention clocks now, and marks the state as persisted. Returns how many members were
/// restored.
pub(super) fn finish_replay(
    st: &mut ShardState,
    members: ReplayedMembers,
    index: u32,
    cx: &LoadContext<'_>,
) -> usize {
    // Everything is applied in log order: no write is in flight. Every group's sessions,
    // and the retention clock of the empty ones, restart now (or, for the clock, at the
    // newest commit timestamp if that is later: a wall clock that went back), so offsets
    // never expire earlier than Kafka, which counts from when the group became empty.
    st.deleted.clear();
    let (open_instant, open_ms) = (Instant::now(), now_ms());
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
    for e in st.groups.values_mut() {
        e.group.finish_restore(cx.topics, open_instant, cx.config);
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

/// Rebuilds a shard's state from its partition, log start to `end` (committed):
/// offsets, groups and their members, whose sessions start again now.
async fn replay(shard: &Shard, end: i64, cx: &LoadContext<'_>) -> Result<ShardState, GroupError> {
    let (index, partition) = (shard.index, &shard.partition);
    let mut st = ShardState::default();
    let mut members = ReplayedMembers::new();
    let mut records_applied = 0u64;
    let corrupt = |offset, reason| GroupError::CorruptRecord {
        partition: index,
        offset,
        reason,
    };
    internal_topic::for_each_record(partition, end, REPLAY_READ_BYTES, corrupt, |record| {
        let Some(key) = &record.key else {
            tracing::warn!(
                partition = index,
                offset = record.offset,
                "skipping a record without a key"
            );
            return Ok(());
        };
        let value = record.value.as_deref();
        apply_record(&mut st, key, value, record.offset, Some(&mut members))
            .map_err(|reason| corrupt(record.offset, reason))?;
        records_applied += 1;
        Ok(())
    })
    .await?;
    let restored = finish_replay(&mut st, members, index, cx);
    tracing::debug!(
        partition = index,
        records = records_applied,
        groups = st.groups.len(),
        members = restored,
        "replayed offsets partition"
    );
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::records::OffsetValue;

    fn commit(st: &mut ShardState, offset: i64, committed: i64) {
        let key = records::offset_key("g", "t", 0);
        let value = records::offset_value(&OffsetValue {
            offset: committed,
            commit_timestamp_ms: 1,
            metadata: String::new(),
            topic_id: String::new(),
            leader_epoch: -1,
        });
        apply_record(st, &key, Some(&value), offset, None).unwrap();
    }

    fn committed(st: &ShardState) -> Option<i64> {
        st.groups
            .get("g")
            .and_then(|e| e.offsets.get("t"))
            .and_then(|p| p.get(&0))
            .map(|s| s.offset)
    }

    #[test]
    fn a_classic_record_replays_into_its_group_and_its_tombstone_forgets_it() {
        let member = |id: &str, instance: Option<&str>| records::ClassicMemberValue {
            member_id: id.into(),
            group_instance_id: instance.map(str::to_string),
            client_id: "c".into(),
            client_host: "127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            metadata: Bytes::from_static(b"subscription"),
            assignment: Bytes::from(format!("for {id}")),
        };
        let value = ClassicValue {
            generation: 3,
            protocol_type: "consumer".into(),
            protocol_name: "range".into(),
            leader: "m-1".into(),
            members: vec![member("m-1", None), member("m-2", Some("i-2"))],
        };
        let key = records::classic_key("g");
        let mut st = ShardState::default();
        let mut replayed = ReplayedMembers::new();
        let bytes = records::classic_value(&value);
        apply_record(&mut st, &key, Some(&bytes), 0, Some(&mut replayed)).unwrap();
        let e = &st.groups["g"];
        assert_eq!(e.classic.stored(), Some(value.clone()));
        assert_eq!(
            (e.classic.state(), e.classic.generation(), e.member_count()),
            (ClassicState::Stable, 3, 2)
        );
        assert_eq!(e.state(), GroupState::Stable);
        // What was replayed is what the log has: nothing to write.
        st.mark_persisted();
        assert!(!st.membership_changed("g", &Scope::All));
        // The coordinator's own writes do not touch memory (it changed first).
        apply_record(&mut st, &key, None, 1, None).unwrap();
        assert_eq!(st.groups["g"].classic.generation(), 3);
        // A replayed tombstone forgets the group's classic state; the group tombstone
        // after it removes the group.
        apply_record(&mut st, &key, None, 2, Some(&mut replayed)).unwrap();
        assert_eq!(st.groups["g"].classic.generation(), 0);
        apply_record(
            &mut st,
            &records::group_key("g"),
            None,
            3,
            Some(&mut replayed),
        )
        .unwrap();
        assert!(st.groups.is_empty());
        // An undecodable classic value is a corrupt record.
        assert!(apply_record(&mut st, &key, Some(&bytes[..5]), 4, Some(&mut replayed)).is_err());
    }

    #[test]
    fn records_applied_out_of_order_keep_the_newest_in_the_log() {
        let mut st = ShardState::default();
        // Acknowledgements can arrive out of log order: the record at 10 wins over 5.
        commit(&mut st, 10, 100);
        commit(&mut st, 5, 50);
        assert_eq!(committed(&st), Some(100));
        // A tombstone older than the value leaves it.
        let key = records::offset_key("g", "t", 0);
        apply_record(&mut st, &key, None, 7, None).unwrap();
        assert_eq!(committed(&st), Some(100));
        // A group tombstone at 20 removes what came before it...
        apply_record(&mut st, &records::group_key("g"), None, 20, None).unwrap();
        assert_eq!(committed(&st), None);
        assert_eq!(st.groups.len(), 0);
        // ...and an older commit acknowledged after it does not bring the group back,
        commit(&mut st, 15, 150);
        assert_eq!(committed(&st), None);
        // while a newer one does.
        commit(&mut st, 25, 250);
        assert_eq!(committed(&st), Some(250));
        assert_eq!(st.groups.len(), 1);
        // Group records never lower the epoch.
        let group = |epoch| {
            records::group_value(&GroupValue {
                epoch,
                assignor: "range".into(),
            })
        };
        apply_record(&mut st, &records::group_key("g"), Some(&group(7)), 30, None).unwrap();
        apply_record(&mut st, &records::group_key("g"), Some(&group(3)), 31, None).unwrap();
        let g = &st.groups["g"].group;
        assert_eq!((g.epoch(), g.assignor()), (7, Assignor::Range));
        // Unknown key types are skipped; malformed values are errors.
        apply_record(&mut st, &[0, 77], None, 32, None).unwrap();
        assert!(apply_record(&mut st, &records::group_key("g"), Some(&[0, 1]), 33, None).is_err());
    }
}
