//! Drives the partition's replication state machine: feeds it events and carries out
//! its commands (flush, publish the high watermark and answer the `acks=all` appends it
//! covers, fail the appends of a leadership that ended).

use std::collections::VecDeque;
use std::sync::{Arc, MutexGuard, OnceLock};
use std::time::Instant;

use weir_log::Log;

use super::{AppendOutcome, AppendReply, Shared};
use crate::error::ClusterError;
use crate::replication::{Command, Event};

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
    /// leads to, until nothing is left to do now.
    pub(super) fn drive(self: &Arc<Self>, log: &Log, event: Event) {
        let mut events = VecDeque::from([event]);
        while let Some(event) = events.pop_front() {
            let commands = self.replica().handle(event, now_ms(), log);
            for command in commands {
                self.execute(log, command, &mut events);
            }
        }
    }

    fn execute(self: &Arc<Self>, log: &Log, command: Command, _events: &mut VecDeque<Event>) {
        match command {
            Command::Flush => self.request_flush(),
            Command::PublishHighWatermark(hw) => self.publish(hw),
            Command::LeadershipEnded { leader_epoch } => {
                let leader = self.replica().registration().map_or(-1, |r| r.leader);
                self.fail_acks(|w| w.leader_epoch == leader_epoch, |s| s.not_leader(leader));
            }
            // Replication between brokers: a partition on a single node leads and has
            // no followers, so its state machine never asks for these.
            Command::SendFetch { .. }
            | Command::AnswerFetch { .. }
            | Command::AppendReplicated { .. }
            | Command::Truncate { .. }
            | Command::ProposeIsr(_) => {
                tracing::warn!(
                    topic = self.topic,
                    partition = self.index,
                    log_end_offset = log.offsets().log_end_offset,
                    ?command,
                    "replication command without a cluster to carry it"
                );
            }
        }
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
            Ok((_, Err(e))) => {
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
            }
            Err(e) => {
                tracing::error!(topic = shared.topic, partition = shared.index, error = %e, "flush task failed")
            }
        }
        let mut flush = shared.flush.lock().expect("flush mutex");
        if !flush.again {
            flush.running = false;
            return;
        }
        flush.again = false;
    }
}
