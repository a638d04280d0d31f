//! One shard of the coordinator: the groups of one `__consumer_offsets` partition, while
//! this broker leads that partition. A shard is loaded by replaying its partition (log
//! start to high watermark, once the leadership has committed everything it inherited)
//! and is dropped when the leadership ends or a membership write fails; it then loads
//! again from the log, so memory never stays ahead of what is committed.
//!
//! This is the shell around weir-coordinator's `group::shard::ShardState` (the groups,
//! what each record does to them, which records a change writes): a
//! `std::sync::Mutex` over that state (held for short, synchronous steps, never across
//! an await) plus a `tokio::sync::Mutex` serializing its writes. A write takes the
//! writer lock, checks and prepares under the state lock, builds one record batch,
//! queues it on the partition under the leader epoch the shard was loaded at (queue
//! order is log order; another leadership refuses it) and releases the writer lock; it
//! then waits for the durable acknowledgement (concurrent writers share the fsync) and
//! applies the records to the state. Writes run as their own tasks, so a caller that
//! goes away (a cancelled RPC) cannot leave a record in the log that the state never
//! saw. Membership is written after the change is made in memory and before the member
//! is answered; the classic JoinGroup and SyncGroup requests waiting for their rebalance
//! step are parked here.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::watch;
use weir_coordinator::group::classic::{JoinOutcome, Reply, SyncAnswer, Waiter};
use weir_coordinator::group::shard as machine;

use super::{GroupError, LOAD_WAIT, OFFSETS_TOPIC, REPLAY_READ_BYTES};
use crate::error::ClusterError;
use crate::internal_topic::{self, BatchOf, SubmitError};
use crate::partition::Partition;

pub(super) use machine::{
    GroupEntry, LoadContext, Prepared, ReplayedMembers, Scope, StoredOffset, admit_commit,
    admit_join, apply_record, classic_error, finish_replay,
};

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

/// The groups of one `__consumer_offsets` partition (the machine's state, which this
/// dereferences to) and the classic requests parked on them.
#[derive(Debug, Default)]
pub(super) struct ShardState {
    machine: machine::ShardState,
    /// Classic JoinGroup and SyncGroup requests waiting for their rebalance step, by
    /// the number the state machine answers them under. Answered NOT_COORDINATOR when
    /// the shard resigns ([`Shard::resign`]); the callers hold the shard, so it is not
    /// dropped while they wait.
    pub(super) parked: HashMap<Waiter, Parked>,
    /// Set when the shard resigned (the leader it named): nothing parks any more.
    pub(super) resigned: Option<i32>,
    /// The next number for a parked request.
    pub(super) next_waiter: Waiter,
    /// Per transactional producer whose offsets this shard wrote: the epoch and the
    /// sequence of its next batch (the partition checks them as it checks any
    /// producer's). Forgotten after a failed write: the partition's own state says.
    pub(super) txn_sequences: HashMap<i64, (i16, i32)>,
}

impl Deref for ShardState {
    type Target = machine::ShardState;
    fn deref(&self) -> &machine::ShardState {
        &self.machine
    }
}

impl DerefMut for ShardState {
    fn deref_mut(&mut self) -> &mut machine::ShardState {
        &mut self.machine
    }
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
    /// The log end its load replayed up to: a transaction marker below it was replayed.
    pub(super) replayed_to: i64,
    writer: tokio::sync::Mutex<()>,
    state: Mutex<ShardState>,
    /// How far membership writes are durable, and whether one failed.
    durable: watch::Sender<Durable>,
    /// Closed once it is replaced: see [`internal_topic::WriteFence`].
    writes: internal_topic::WriteFence,
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
                    let _ = tx.send(result.map_err(|e| error(e).into()));
                }
                (ParkedAnswer::Sync(tx), Reply::Sync(_, result)) => {
                    let _ = tx.send(result.map_err(|e| error(e).into()));
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

    fn writes(&self) -> &internal_topic::WriteFence {
        &self.writes
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
            replayed_to: end,
            writer: tokio::sync::Mutex::new(()),
            state: Mutex::new(ShardState::default()),
            durable: watch::Sender::new(Durable::default()),
            writes: internal_topic::WriteFence::default(),
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
                st.queued(&prepared);
                prepared
            };
            let appended = shard.append(&prepared.records, prepared.txn, writer).await;
            let membership_seq = prepared.membership_seq;
            let base = appended.as_ref().ok().copied();
            let failed = shard.state().written(prepared, base, Instant::now());
            for (offset, reason) in failed {
                // We encoded it ourselves: a bug, not bad input.
                tracing::error!(
                    partition = shard.index,
                    offset,
                    reason,
                    "applying own record failed"
                );
            }
            if let (Some(seq), Some(_)) = (membership_seq, base) {
                // Acknowledged in log order: everything before it is durable too.
                shard.durable.send_modify(|d| d.seq = d.seq.max(seq));
            }
            appended.map(Some)
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
        txn: Option<(i64, i16)>,
        writer: tokio::sync::MutexGuard<'_, ()>,
    ) -> Result<i64, GroupError> {
        let producer = match txn {
            Some((id, epoch)) => Some((
                id,
                epoch,
                self.next_sequence(id, epoch, records.len()).await?,
            )),
            None => None,
        };
        let pending = internal_topic::submit_batch(
            &self.writes,
            &self.partition,
            OFFSETS_TOPIC,
            self.leader_epoch,
            records
                .iter()
                .map(|(key, value)| internal_topic::keyed(key, value.as_deref())),
            producer,
        )
        .await
        .map_err(|e| match e {
            SubmitError::Cluster(e) => GroupError::Cluster(e),
            SubmitError::Fenced => GroupError::CoordinatorLoading {
                partition: self.index,
            },
            e @ (SubmitError::TooLarge { .. } | SubmitError::Encode(_)) => {
                GroupError::InvalidRequest(format!("{e}; send fewer partitions per request"))
            }
        })?;
        drop(writer);
        let outcome = pending.await.map_err(|_| ClusterError::PartitionClosed {
            topic: OFFSETS_TOPIC.to_string(),
            partition: self.index,
        })?;
        if outcome.is_err()
            && let Some((id, _)) = txn
        {
            self.state().txn_sequences.remove(&id);
        }
        Ok(outcome?.base_offset)
    }

    /// The sequence of the next transactional batch of `producer_id` at `epoch`, of
    /// `count` records, counted as taken (called under the writer lock, so in log order).
    /// The first batch of a producer this shard has not written for continues from what
    /// the partition remembers of it; a new epoch starts at 0, as a producer's does.
    async fn next_sequence(
        &self,
        producer_id: i64,
        epoch: i16,
        count: usize,
    ) -> Result<i32, GroupError> {
        let known = self.state().txn_sequences.get(&producer_id).copied();
        let (known_epoch, next) = match known {
            Some(k) => k,
            None => self
                .partition
                .producers()
                .await?
                .into_iter()
                .find(|p| p.producer_id == producer_id)
                .map_or((epoch, 0), |p| {
                    (p.epoch, p.last_sequence.wrapping_add(1).max(0))
                }),
        };
        // An older epoch is left to the partition to refuse (the producer was fenced).
        let first = if known_epoch == epoch { next } else { 0 };
        let after = ((i64::from(first) + count as i64) % (i64::from(i32::MAX) + 1)) as i32;
        self.state()
            .txn_sequences
            .insert(producer_id, (epoch, after));
        Ok(first)
    }

    /// The marker of `producer_id`'s transaction is in this shard's partition at log
    /// offset `offset` (durable): its pending offsets become committed offsets (`commit`)
    /// or are dropped.
    pub(super) fn txn_marker(&self, producer_id: i64, commit: bool, offset: i64) {
        let applied = machine::apply_txn_marker(
            &mut self.state(),
            producer_id,
            commit,
            offset,
            Instant::now(),
        );
        tracing::debug!(
            partition = self.index,
            producer_id,
            commit,
            applied,
            "transaction marker applied to the group offsets"
        );
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

/// The entry of `group`, created if missing (its retention clock starting now).
pub(super) fn entry<'a>(st: &'a mut machine::ShardState, group: &str) -> &'a mut GroupEntry {
    machine::entry(st, group, Instant::now())
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
            Ok(machine::deletion_records(st, &group)?)
        })
        .await;
    if written.is_err()
        && let Some(e) = shard.state().groups.get_mut(group_id)
    {
        e.deleting = false;
    }
    Ok(written?.is_some())
}

/// Rebuilds a shard's state from its partition, log start to `end` (committed):
/// offsets, groups and their members, whose sessions start again now.
async fn replay(shard: &Shard, end: i64, cx: &LoadContext<'_>) -> Result<ShardState, GroupError> {
    let (index, partition) = (shard.index, &shard.partition);
    let mut st = ShardState::default();
    let mut members = ReplayedMembers::new();
    let mut records_applied = 0u64;
    // Sessions and retention clocks start at the load, as Kafka's do.
    let open = (Instant::now(), now_ms());
    let corrupt = |offset, reason| GroupError::CorruptRecord {
        partition: index,
        offset,
        reason,
    };
    internal_topic::for_each_batch_record(
        partition,
        end,
        REPLAY_READ_BYTES,
        corrupt,
        |of, record| {
            let producer_id = match of {
                BatchOf::Plain => None,
                BatchOf::Transactional { producer_id } => Some(producer_id),
                BatchOf::Marker {
                    producer_id,
                    commit,
                } => {
                    machine::apply_txn_marker(&mut st, producer_id, commit, record.offset, open.0);
                    return Ok(());
                }
            };
            let Some(key) = &record.key else {
                tracing::warn!(
                    partition = index,
                    offset = record.offset,
                    "skipping a record without a key"
                );
                return Ok(());
            };
            let value = record.value.as_deref();
            match producer_id {
                Some(producer_id) => {
                    machine::apply_txn_record(&mut st, producer_id, key, value, record.offset)
                }
                None => apply_record(
                    &mut st,
                    key,
                    value,
                    record.offset,
                    open.0,
                    Some(&mut members),
                ),
            }
            .map_err(|reason| corrupt(record.offset, reason))?;
            records_applied += 1;
            Ok(())
        },
    )
    .await?;
    let restored = finish_replay(&mut st, members, index, cx, open);
    tracing::debug!(
        partition = index,
        records = records_applied,
        groups = st.groups.len(),
        members = restored,
        "replayed offsets partition"
    );
    Ok(st)
}
