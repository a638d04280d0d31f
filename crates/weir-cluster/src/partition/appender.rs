//! The appender: one task per partition that takes queued appends in order, writes them
//! on a blocking thread under the leader epoch each was accepted with, and hands the
//! result to the replication driver (which answers `acks=all` appends once the high
//! watermark passes them).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use weir_log::ValidatedBatches;
use weir_log::batch::control::{ControlType, TxnMarker};

use super::driver::AckWaiter;
use super::{AppendOutcome, AppendReply, Durability, MAX_APPENDS_PER_WAKEUP, Shared};
use crate::error::ClusterError;
use crate::replication::{Event, Role};

pub(super) struct AppendJob {
    pub(super) work: AppendWork,
    pub(super) durability: Durability,
    /// The leader epoch the append was accepted under.
    pub(super) leader_epoch: i32,
    pub(super) reply: AppendReply,
}

/// What one queued append writes.
pub(super) enum AppendWork {
    /// A producer's batches, checked where they arrived.
    Batches(ValidatedBatches),
    /// A transaction marker the leader builds (`Log::append_marker`).
    Marker(TxnMarker),
}

impl AppendWork {
    fn append(
        &mut self,
        log: &weir_log::Log,
        leader_epoch: i32,
    ) -> Result<(weir_log::AppendInfo, u64), weir_log::AppendError> {
        match self {
            AppendWork::Batches(batches) => {
                let info = log.append_validated(batches, leader_epoch)?;
                let records = match info.duplicate {
                    true => 0,
                    false => batches
                        .headers()
                        .iter()
                        .map(|h| h.record_count as u64)
                        .sum(),
                };
                Ok((info, records))
            }
            AppendWork::Marker(m) => {
                let commit = m.control == ControlType::Commit;
                let info = log.append_marker(
                    m.producer_id,
                    m.producer_epoch,
                    commit,
                    m.coordinator_epoch,
                    leader_epoch,
                )?;
                Ok((info, 1))
            }
        }
    }
}

/// Takes queued appends in order, writes them on a blocking thread, and answers them
/// (`acks=leader` at once, `acks=all` through the driver). Ends when the partition (the
/// queue's only sender) is dropped.
pub(super) async fn run_appender(shared: Arc<Shared>, mut jobs: mpsc::Receiver<Box<AppendJob>>) {
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_APPENDS_PER_WAKEUP {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // The epoch this replica leads at now: an append accepted under another one is
        // refused (its leadership ended while it waited in the queue).
        let leading = match shared.replica().role() {
            Role::Leader { leader_epoch } => Some(leader_epoch),
            _ => None,
        };
        let guard = shared.read_guard().await;
        let (topic, partition) = (shared.topic.clone(), shared.index);
        let written = tokio::task::spawn_blocking(move || {
            let results: Vec<_> = batch
                .into_iter()
                .map(|mut job| {
                    let Some(log) = guard.as_ref() else {
                        let e = ClusterError::PartitionClosed {
                            topic: topic.clone(),
                            partition,
                        };
                        return (job, Err(e));
                    };
                    if leading != Some(job.leader_epoch) {
                        let e = ClusterError::FencedLeaderEpoch {
                            topic: topic.clone(),
                            partition,
                            epoch: job.leader_epoch,
                        };
                        return (job, Err(e));
                    }
                    let result = job
                        .work
                        .append(log, job.leader_epoch)
                        .map(|(info, records)| AppendOutcome {
                            base_offset: info.base_offset,
                            last_offset: info.last_offset,
                            records,
                            bytes: info.bytes as u64,
                            duplicate: info.duplicate,
                        })
                        .map_err(|source| ClusterError::Append {
                            topic: topic.clone(),
                            partition,
                            source,
                        });
                    (job, result)
                })
                .collect();
            (guard, results)
        })
        .await;
        let (guard, written) = match written {
            Ok(w) => w,
            Err(e) => {
                // The batch's jobs (and their reply senders) went with the panicked task;
                // their submitters see the partition as closed.
                tracing::error!(topic = shared.topic, partition = shared.index, error = %e, "append task failed");
                continue;
            }
        };
        let mut any = false;
        let mut failed = false;
        let mut refused_for_space = 0;
        for (job, result) in written {
            failed |= matches!(&result, Err(ClusterError::Append { .. }));
            if matches!(&result, Err(ClusterError::Append { source, .. }) if source.is_storage_full())
            {
                refused_for_space += 1;
            }
            match result {
                Ok(outcome) if job.durability == Durability::Durable => {
                    any |= !outcome.duplicate;
                    shared.await_commit(AckWaiter {
                        leader_epoch: job.leader_epoch,
                        outcome,
                        reply: job.reply,
                    });
                    shared.sync_wanted.notify_waiters();
                }
                result => {
                    any |= result.as_ref().is_ok_and(|o| !o.duplicate);
                    // The submitter may have stopped waiting (acks=none): not an error.
                    let _ = job.reply.send(result);
                }
            }
        }
        note_storage_full(&shared, refused_for_space, any);
        if failed && let Some(log) = guard.as_ref() {
            shared.notice_failure(log);
        }
        if any && let Some(log) = guard.as_ref() {
            shared.log_end.send_replace(log.offsets().log_end_offset);
            // Answers the acks=all appends whose records are now committed (at once
            // on a single node under a non-durable policy; after the flush otherwise).
            shared.drive(log, Event::LogAppended);
        }
    }
}

/// How often at most a partition logs that its appends are refused for want of disk
/// space: near the end of the space, appends that fit and appends that do not alternate.
const STORAGE_FULL_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// A partition's appends refused for want of disk space: what the broker's metrics read,
/// and what its log lines say.
#[derive(Debug, Default)]
pub(super) struct StorageFull {
    /// The last append was refused for want of space.
    pub(super) now: bool,
    /// Refused since the last line said so.
    refused: u64,
    /// When the last "refusing" line was logged.
    warned_at: Option<Instant>,
    /// A "refusing" line was logged and no "appending again" line since.
    said_full: bool,
}

/// A line when a partition's appends start being refused for want of disk space (at most
/// every [`STORAGE_FULL_LOG_INTERVAL`], with the count refused since the last), and one
/// when they succeed again: a full disk refuses every append until space is freed, which
/// would otherwise be a line per request or none at all.
pub(super) fn note_storage_full(shared: &Shared, refused: u64, wrote: bool) {
    let mut state = shared.storage_full.lock().expect("storage_full mutex");
    if refused > 0 {
        state.now = true;
        state.refused += refused;
        if state
            .warned_at
            .is_none_or(|t| t.elapsed() >= STORAGE_FULL_LOG_INTERVAL)
        {
            tracing::warn!(
                topic = shared.topic,
                partition = shared.index,
                dir = %shared.dir.display(),
                refused = state.refused,
                "no space left on the data directory's device: refusing appends to this partition until space is freed (reads go on)"
            );
            state.refused = 0;
            state.warned_at = Some(Instant::now());
            state.said_full = true;
        }
    } else if wrote && state.now {
        state.now = false;
        if std::mem::take(&mut state.said_full) {
            tracing::info!(
                topic = shared.topic,
                partition = shared.index,
                "space freed: appending to this partition again"
            );
        }
    }
}
