//! Drives the partition's replication state machine: feeds it events and carries out
//! its commands (flush, publish the high watermark and answer the `acks=all` appends it
//! covers, fail the appends of a leadership that ended).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use weir_log::Log;

use bytes::Bytes;

use super::{AppendOutcome, AppendReply, BrokerId, Shared};
use crate::error::ClusterError;
use crate::replication::{Command, Event, FetchAnswer, LocalLog, Role};

/// Under a durable flush policy a leader's high watermark is its flushed offset, so it
/// keeps syncing as long as appends come. When nobody waits for those syncs (no
/// `acks=all` append, no consumer long-polling the high watermark) it leaves at least
/// this long between them, so that `acks=leader` producers alone do not pay for a sync
/// loop nobody reads from (found comparing the single-node rows with the binary before
/// replication: 0.84 of its 100 B `acks=leader` rate with back-to-back syncs). Anyone who
/// starts waiting ends the pause at once.
pub const UNWATCHED_SYNC_GAP: Duration = Duration::from_millis(20);

/// Most a reader that arrives during such a pause waits for the sync it starts (one
/// fsync; the bound only matters for a disk that stalls).
pub const PAUSED_SYNC_WAIT: Duration = Duration::from_millis(500);

/// An `acks=all` append waiting for the high watermark to pass it.
#[derive(Debug)]
pub(super) struct AckWaiter {
    pub(super) leader_epoch: i32,
    pub(super) outcome: AppendOutcome,
    pub(super) reply: AppendReply,
}

/// The state of the partition's flusher: one flush at a time, and another right after
/// it if more was asked for meanwhile (group commit: one sync covers every append
/// written before it).
#[derive(Debug, Default)]
pub(super) struct FlushState {
    running: bool,
    again: bool,
}

/// Milliseconds on a monotonic clock: the state machine's notion of now.
pub(super) fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

impl Shared {
    pub(super) fn acks(&self) -> MutexGuard<'_, Vec<AckWaiter>> {
        self.acks.lock().expect("acks mutex")
    }

    /// Feeds `event` to the state machine and carries out what it asks, and what that
    /// leads to, until nothing is left to do now. Returns the answers to follower
    /// fetches it gave (only a [`Event::Fetch`] produces one), each with whether it may
    /// be held while there is nothing to send.
    pub(super) fn drive(
        self: &Arc<Self>,
        log: &impl LocalLog,
        event: Event,
    ) -> Vec<(BrokerId, FetchAnswer, bool)> {
        let mut answers = Vec::new();
        let mut events = VecDeque::from([event]);
        while let Some(event) = events.pop_front() {
            let commands = self.replica().handle(event, now_ms(), log);
            for command in commands {
                match command {
                    Command::AnswerFetch {
                        to,
                        answer,
                        may_wait,
                    } => answers.push((to, answer, may_wait)),
                    command => self.execute(log, command),
                }
            }
        }
        let at_rest = self.replica().at_rest(log);
        self.at_rest.store(at_rest, Ordering::Release);
        answers
    }

    fn execute(self: &Arc<Self>, log: &impl LocalLog, command: Command) {
        match command {
            Command::Flush => self.request_flush(),
            Command::PublishHighWatermark(hw) => self.publish(hw),
            Command::LeadershipEnded { leader_epoch } => {
                self.fail_acks(|w| w.leader_epoch == leader_epoch, Shared::leadership_ended);
            }
            Command::AppendReplicated { batches } => {
                tokio::spawn(append_replicated(self.clone(), batches));
            }
            Command::Truncate { offset } => {
                tokio::spawn(truncate(self.clone(), offset));
            }
            Command::SendFetch { leader, request } => match self.links.get() {
                Some(links) => links.send_fetch(&self.topic_id, self.index, leader, request),
                None => self.unlinked("a fetch", log),
            },
            Command::ProposeIsr(request) => match self.links.get() {
                Some(links) => links.propose_isr(&self.topic_id, self.index, request),
                None => self.unlinked("an ISR change", log),
            },
            Command::ReopenLog { truncate_to } => {
                tokio::spawn(super::recovery::reopen_after_failure(
                    self.clone(),
                    truncate_to,
                ));
            }
            Command::ResignLeadership { leader_epoch } => match self.links.get() {
                Some(links) => links.resign_leadership(&self.topic_id, self.index, leader_epoch),
                None => self.unlinked("a resignation", log),
            },
            Command::AnswerFetch { .. } => unreachable!("answers are returned by drive"),
        }
    }

    /// A partition whose broker runs no replication (it was never linked) was asked to
    /// talk to other brokers: its metadata names replicas elsewhere.
    fn unlinked(&self, what: &str, log: &impl LocalLog) {
        tracing::warn!(
            topic = self.topic,
            partition = self.index,
            log_end_offset = log.log_end_offset(),
            "the replication state machine asked to send {what}, but this broker has no links to other brokers"
        );
    }

    /// Raises the published high watermark and answers the `acks=all` appends of the
    /// current leadership that it now covers.
    fn publish(&self, hw: i64) {
        self.high_watermark.send_if_modified(|current| {
            if hw > *current {
                *current = hw;
                true
            } else {
                false
            }
        });
        let epoch = match self.replica().role() {
            crate::replication::Role::Leader { leader_epoch } => leader_epoch,
            _ => return,
        };
        let done: Vec<AckWaiter> = {
            let mut acks = self.acks();
            let (done, waiting) = std::mem::take(&mut *acks)
                .into_iter()
                .partition(|w| w.leader_epoch == epoch && w.outcome.last_offset < hw);
            *acks = waiting;
            done
        };
        for w in done {
            let _ = w.reply.send(Ok(w.outcome));
        }
    }

    /// Waits for the high watermark to pass an `acks=all` append written under
    /// `waiter.leader_epoch`, or answers it at once with [`Shared::leadership_ended`]
    /// when that leadership is already over. The check is made under the acks lock, and
    /// a leadership's end changes the role before it fails the waiters under that lock
    /// (`LeadershipEnded`), so a waiter is either failed there or here, never left
    /// behind. Before, a waiter pushed just after its leadership ended waited until its
    /// request's timeout (found by the compose cluster's rolling restart: writes to a
    /// stopping leader waited out their 2 s request timeout).
    ///
    /// A duplicate (a retry of an append already written) whose original is committed
    /// already is answered at once, and so is an append the high watermark has passed
    /// while this replica still leads at its epoch. The high watermark is published
    /// before the acks are looked at, and read here under the acks lock, so a waiter
    /// pushed here is never missed. (Before, a non-duplicate append that a concurrent
    /// sync had already committed waited for a publish that never came, until its
    /// request's timeout: a rare CI failure of `acks_none_leader_and_all`.)
    pub(super) fn await_commit(&self, waiter: AckWaiter) {
        let mut acks = self.acks();
        if waiter.outcome.duplicate && waiter.outcome.last_offset < *self.high_watermark.borrow() {
            drop(acks);
            let _ = waiter.reply.send(Ok(waiter.outcome));
            return;
        }
        // Lock order: acks, then replica (nothing takes them the other way round).
        let leads = matches!(
            self.replica().role(),
            crate::replication::Role::Leader { leader_epoch } if leader_epoch == waiter.leader_epoch
        );
        if leads {
            // The flusher may have synced this append and published a high watermark
            // past it before its appender got here (the write and the sync race):
            // nothing would publish again for it, so it is answered now.
            if waiter.outcome.last_offset < *self.high_watermark.borrow() {
                drop(acks);
                let _ = waiter.reply.send(Ok(waiter.outcome));
                return;
            }
            acks.push(waiter);
            return;
        }
        drop(acks);
        let _ = waiter.reply.send(Err(self.leadership_ended()));
    }

    /// The answer to an `acks=all` append whose leadership ended before it committed:
    /// NOT_LEADER naming the new leader, or, when a log failure ended it, LOG_FAILED
    /// (not NOT_LEADER naming this broker). Either way its outcome is unknown.
    fn leadership_ended(&self) -> ClusterError {
        let leader = self.replica().known_leader();
        let failed = self.failure.lock().expect("failure mutex").is_some();
        match failed {
            true => self.closed(),
            false => self.not_leader(leader),
        }
    }

    /// Answers the waiting `acks=all` appends that `which` selects with `error`.
    pub(super) fn fail_acks(
        &self,
        which: impl Fn(&AckWaiter) -> bool,
        error: impl Fn(&Shared) -> ClusterError,
    ) {
        let failed: Vec<AckWaiter> = {
            let mut acks = self.acks();
            let (failed, kept) = std::mem::take(&mut *acks)
                .into_iter()
                .partition(|w| which(w));
            *acks = kept;
            failed
        };
        for w in failed {
            let _ = w.reply.send(Err(error(self)));
        }
    }

    fn request_flush(self: &Arc<Self>) {
        let mut flush = self.flush.lock().expect("flush mutex");
        if flush.running {
            flush.again = true;
            return;
        }
        flush.running = true;
        drop(flush);
        tokio::spawn(run_flusher(self.clone()));
    }
}

/// Syncs the log until nobody asked for more, feeding each completed sync to the state
/// machine (which may then publish the high watermark).
async fn run_flusher(shared: Arc<Shared>) {
    loop {
        let guard = shared.read_guard().await;
        let err = shared.maintenance();
        let synced = tokio::task::spawn_blocking(move || {
            let result = match guard.as_ref() {
                // One sync for everything written so far; concurrent waiters share it.
                Some(log) => match log.offsets().log_end_offset {
                    0 => Ok(()),
                    end => log.wait_durable(end - 1).map_err(err),
                },
                None => Ok(()),
            };
            (guard, result)
        })
        .await;
        match synced {
            Ok((guard, Ok(()))) => {
                if let Some(log) = guard.as_ref() {
                    shared.drive(log, Event::LogFlushed);
                }
            }
            Ok((guard, Err(e))) => {
                // A failed sync fails the log: nothing waiting on it can be answered.
                let reason = e.to_string();
                tracing::error!(topic = shared.topic, partition = shared.index, error = %e, "flush failed");
                shared.fail_acks(
                    |_| true,
                    |s| {
                        (s.maintenance())(weir_log::MaintenanceError::Failed {
                            reason: reason.clone(),
                        })
                    },
                );
                if let Some(log) = guard.as_ref() {
                    shared.notice_failure(log);
                }
            }
            Err(e) => {
                tracing::error!(topic = shared.topic, partition = shared.index, error = %e, "flush task failed")
            }
        }
        let again = shared.flush.lock().expect("flush mutex").again;
        if again {
            let deadline = tokio::time::Instant::now() + UNWATCHED_SYNC_GAP;
            shared.sync_paused.store(true, Ordering::SeqCst);
            loop {
                // Registered before the check, so a waiter arriving in between still
                // wakes this pause.
                let wanted = shared.sync_wanted.notified();
                tokio::pin!(wanted);
                wanted.as_mut().enable();
                if shared.sync_awaited() || tokio::time::timeout_at(deadline, wanted).await.is_err()
                {
                    break;
                }
            }
            shared.sync_paused.store(false, Ordering::SeqCst);
        }
        let mut flush = shared.flush.lock().expect("flush mutex");
        if !flush.again {
            flush.running = false;
            return;
        }
        flush.again = false;
    }
}

impl Shared {
    /// After an operation on `log` failed: if the log itself failed (a write or sync
    /// error left its tail unknown), the partition stops serving and reopens it
    /// (`recovery.rs`). A refusal that left the log sound (bad input) does nothing.
    pub(super) fn notice_failure(self: &Arc<Self>, log: &Log) {
        let Some(reason) = log.failure() else {
            return;
        };
        let first = {
            let mut failure = self.failure.lock().expect("failure mutex");
            let first = failure.is_none();
            *failure = Some(reason.clone());
            first
        };
        if first {
            let reopened_at = *self.reopened_at.lock().expect("reopened_at mutex");
            match reopened_at.map(|at| at.elapsed()) {
                Some(since) if since < super::REPEATED_FAILURE_WINDOW => {
                    self.take_data_dir_offline(format!(
                        "the log of {}-{} failed again {} ms after it was reopened: {reason}",
                        self.topic,
                        self.index,
                        since.as_millis()
                    ));
                }
                _ => tracing::error!(
                    topic = self.topic,
                    partition = self.index,
                    reason,
                    "the log failed; reopening it from its last durable point"
                ),
            }
        }
        self.drive(log, Event::LogFailed);
    }

    /// The disk under the data directory keeps failing (`offline.rs`): takes the
    /// directory offline, once for the broker, unless this partition is being closed.
    pub(super) fn take_data_dir_offline(&self, reason: String) {
        if self.closing.load(Ordering::SeqCst) {
            return;
        }
        if self.data_dir.take_offline(reason.clone()) {
            tracing::error!(
                topic = self.topic,
                partition = self.index,
                reason,
                "the data directory's disk keeps failing: taking the data directory offline"
            );
        }
    }

    /// A consumer read or looked up offsets: it wants what is not synced yet, so a
    /// paused flusher syncs at once. Returns whether the flusher was pausing (then the
    /// reader waits for that sync: `Partition::after_paused_sync`).
    pub(super) fn reader_came(&self) -> bool {
        // Read before the wake-up, which ends the pause.
        let paused = self.sync_paused.load(Ordering::SeqCst);
        if !self.read_since_sync.swap(true, Ordering::SeqCst) || paused {
            self.sync_wanted.notify_waiters();
        }
        paused
    }

    /// Whether anyone waits for this replica's next sync: it is not the leader (its
    /// leader counts its flushed offset), an `acks=all` append waits, or a consumer
    /// long-polls the high watermark or has read since the last look.
    fn sync_awaited(&self) -> bool {
        if self.read_since_sync.swap(false, Ordering::SeqCst) {
            return true;
        }
        // Its own statement: the replica lock is released before the acks lock is
        // taken (see `await_commit` for the order).
        let leads = matches!(self.replica().role(), Role::Leader { .. });
        !leads || !self.acks().is_empty() || self.high_watermark.receiver_count() > 0
    }
}

/// Appends a leader's batches as stored (a follower's copy), then tells the state
/// machine, which flushes (durable policy) and fetches again.
async fn append_replicated(shared: Arc<Shared>, batches: Bytes) {
    let guard = shared.read_guard().await;
    let (topic, partition) = (shared.topic.clone(), shared.index);
    let done = tokio::task::spawn_blocking(move || {
        let result = guard.as_ref().map(|log| log.append_replicated(&batches));
        (guard, result)
    })
    .await;
    match done {
        Ok((guard, Some(Ok(_)))) => {
            super::appender::note_storage_full(&shared, 0, true);
            if let Some(log) = guard.as_ref() {
                shared.log_end.send_replace(log.offsets().log_end_offset);
                shared.drive(log, Event::LogAppended);
            }
        }
        Ok((_, None)) => {} // closed meanwhile
        Ok((guard, Some(Err(e))))
            if e.is_storage_full() && guard.as_ref().is_some_and(|log| log.failure().is_none()) =>
        {
            // The disk is full and the log is sound: fetch again after a pause, and catch
            // up once space is freed. One line per partition and minute, as for produce.
            super::appender::note_storage_full(&shared, 1, false);
            if let Some(log) = guard.as_ref() {
                shared.log_end.send_replace(log.offsets().log_end_offset);
                shared.drive(log, Event::AppendRefused);
            }
        }
        Ok((guard, Some(Err(e)))) => {
            // The state machine checked what it asked for; a refusal here means the log
            // failed (I/O: it is reopened) or a bug (the follower stays where it is; the
            // leader's lag timer takes it out of the ISR).
            tracing::error!(topic, partition, error = %e, "appending replicated batches failed");
            if let Some(log) = guard.as_ref() {
                shared.notice_failure(log);
            }
        }
        Err(e) => tracing::error!(topic, partition, error = %e, "replicated append task failed"),
    }
}

/// Cuts the log to `offset` (or restarts it there if it ends below), durably, then tells
/// the state machine.
async fn truncate(shared: Arc<Shared>, offset: i64) {
    let guard = shared.read_guard().await;
    let (topic, partition) = (shared.topic.clone(), shared.index);
    let done = tokio::task::spawn_blocking(move || {
        let result = guard.as_ref().map(|log| {
            if offset > log.offsets().log_end_offset {
                log.truncate_fully_and_start_at(offset)
            } else {
                log.truncate_to(offset)
            }
        });
        (guard, result)
    })
    .await;
    match done {
        Ok((guard, Some(Ok(())))) => {
            if let Some(log) = guard.as_ref() {
                tracing::info!(
                    topic = shared.topic,
                    partition = shared.index,
                    offset,
                    "follower truncated what diverged from its leader"
                );
                shared.log_end.send_replace(log.offsets().log_end_offset);
                shared.drive(log, Event::LogTruncated);
            }
        }
        Ok((_, None)) => {}
        Ok((guard, Some(Err(e)))) => {
            tracing::error!(topic, partition, offset, error = %e, "truncating a diverged follower failed");
            if let Some(log) = guard.as_ref() {
                shared.notice_failure(log);
            }
        }
        Err(e) => tracing::error!(topic, partition, error = %e, "truncation task failed"),
    }
}
