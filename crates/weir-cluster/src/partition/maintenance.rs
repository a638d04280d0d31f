//! Maintenance of a partition's log: deleting records below an offset (DeleteRecords),
//! retention, compaction, flushes due under an interval policy, reconfiguration (the log
//! closed and opened again with the new settings), the high-watermark checkpoint, and
//! closing.

use std::time::Duration;

use weir_log::{CompactionOutcome, FlushPolicy, Log, RetentionOutcome};

use super::{Partition, recovery};
use crate::config::EffectiveConfig;
use crate::error::ClusterError;

impl Partition {
    /// Removes every record below `offset` (at most the high watermark); returns the new
    /// log start offset. Only on the leader (Kafka's DeleteRecords): trimming a
    /// follower's copy would move nothing its consumers see.
    pub async fn delete_records_before(&self, offset: i64) -> Result<i64, ClusterError> {
        self.shared.check_leader()?;
        let offsets = self.offsets().await?;
        if offset < 0 || offset > offsets.high_watermark {
            return Err(self.out_of_range(offset, offsets));
        }
        let err = self.shared.maintenance();
        self.shared
            .with_log(move |log| log.delete_records_before(offset).map_err(err))
            .await
    }

    /// Deletes segments past the topic's retention. Does nothing (deletes nothing) unless
    /// the topic's `cleanup.policy` includes `delete`.
    pub async fn apply_retention(&self, now_ms: i64) -> Result<RetentionOutcome, ClusterError> {
        let delete = self.config().cleanup.delete;
        // Retention deletes closed segments only: a log of one segment (most partitions of
        // a big broker) has nothing to delete, which a look under its lock tells without a
        // blocking task (a task each was most of an idle broker's CPU at 100,000).
        if let Ok(guard) = self.shared.log.clone().try_read_owned()
            && let Some(log) = guard.as_ref()
            && (!delete || log.segment_count() <= 1)
        {
            return Ok(RetentionOutcome {
                log_start_offset: log.offsets().log_start_offset,
                ..RetentionOutcome::default()
            });
        }
        let err = self.shared.maintenance();
        self.shared
            .with_log(move |log| {
                if !delete {
                    return Ok(RetentionOutcome {
                        log_start_offset: log.offsets().log_start_offset,
                        ..RetentionOutcome::default()
                    });
                }
                log.apply_retention(now_ms).map_err(err)
            })
            .await
    }

    /// Compacts the log (`cleanup.policy` with `compact`): each key keeps its newest
    /// record, tombstones go after `delete_retention`. Runs a pass only when
    /// `Log::compaction_due` says one is worth it (never run since the log was opened,
    /// half the closed bytes not compacted yet, or a kept tombstone now expired), so
    /// calling it on every maintenance tick is cheap; otherwise returns an empty outcome.
    /// The log's read guard is held for the pass: a reconfigure or close waits for it.
    pub async fn compact(
        &self,
        now_ms: i64,
        delete_retention: Duration,
    ) -> Result<CompactionOutcome, ClusterError> {
        let err = self.shared.maintenance();
        self.shared
            .with_log(move |log| {
                if !log.compaction_due(now_ms) {
                    return Ok(CompactionOutcome::default());
                }
                log.compact(now_ms, delete_retention).map_err(err)
            })
            .await
    }

    /// Syncs if the topic's `interval:<ms>` flush policy says a sync is due, and syncs
    /// segments rolled since the last sync (every policy; see `Log::flush_rolled`).
    pub async fn flush_if_due(&self) -> Result<(), ClusterError> {
        let interval = matches!(self.config().log.flush, FlushPolicy::Interval(_));
        self.flush_with(interval).await
    }

    /// [`Self::flush_if_due`] for a partition whose topic has no interval policy: syncs
    /// only the segments rolled since the last sync, if any. The broker's once-a-second
    /// look over every partition uses it: it reads no config (reading it was a quarter of
    /// an idle broker's CPU at 100,000 partitions).
    pub async fn flush_rolled(&self) -> Result<(), ClusterError> {
        self.flush_with(false).await
    }

    async fn flush_with(&self, interval: bool) -> Result<(), ClusterError> {
        // A roll leaves the closed segment's sync to a later flush, off the append path;
        // this is that flush when no acks=all append or interval asks for one sooner.
        let rolled = {
            let guard = self.shared.read_guard().await;
            guard.as_ref().is_some_and(Log::rolled_awaiting_sync)
        };
        if !interval && !rolled {
            return Ok(());
        }
        let err = self.shared.maintenance();
        self.shared
            .with_log(move |log| log.flush_if_due().map_err(err))
            .await
    }

    /// Applies new topic settings: the log is flushed, closed and reopened with them,
    /// after in-progress operations finish; appends queue meanwhile. A log that failed
    /// (or fails on the way) is reopened with them by its recovery (`recovery.rs`), so
    /// the partition is never left closed.
    pub async fn reconfigure(&self, config: EffectiveConfig) -> Result<(), ClusterError> {
        recovery::reconfigure(&self.shared, config).await
    }

    /// Checkpoints the high watermark (so a restarted replica knows what was committed),
    /// if it moved since the last checkpoint.
    pub async fn checkpoint_high_watermark(&self) -> Result<(), ClusterError> {
        let guard = self.shared.read_guard().await;
        self.checkpoint_with(guard).await
    }

    /// [`Self::checkpoint_high_watermark`] for the broker's periodic pass over every
    /// partition: a partition whose log is busy (its write guard held or wanted) is
    /// skipped rather than waited for, so it holds up no other (`inbox.rs`); the next
    /// pass checkpoints it.
    pub async fn checkpoint_high_watermark_unless_busy(&self) -> Result<(), ClusterError> {
        match self.shared.log.clone().try_read_owned() {
            Ok(guard) => self.checkpoint_with(guard).await,
            Err(_) => Ok(()),
        }
    }

    async fn checkpoint_with(
        &self,
        guard: tokio::sync::OwnedRwLockReadGuard<Option<weir_log::Log>>,
    ) -> Result<(), ClusterError> {
        let hw = self.shared.replica().high_watermark();
        // Most partitions of a big broker are idle: look before paying for a blocking
        // task (this runs for every partition every few seconds).
        let unchanged = guard
            .as_ref()
            .is_some_and(|log| super::checkpointed_high_watermark(log) == hw);
        drop(guard);
        if unchanged {
            return Ok(());
        }
        let err = self.shared.maintenance();
        self.shared
            .with_log(move |log| {
                if super::checkpointed_high_watermark(log) == hw {
                    return Ok(());
                }
                log.checkpoint_high_watermark(hw).map_err(err)
            })
            .await
    }

    /// Closes the log's files if nobody appended to it or read from it for `idle`
    /// (`weir_log::Log::park_if_idle`); the next append or read opens them again. A
    /// partition whose log is busy is skipped, as by the checkpoint pass. Returns
    /// whether it parked anything.
    pub async fn park_if_idle(&self, idle: Duration) -> Result<bool, ClusterError> {
        let Ok(guard) = self.shared.log.clone().try_read_owned() else {
            return Ok(false);
        };
        // The look is cheap; the park syncs and writes checkpoints on a blocking thread.
        if !guard.as_ref().is_some_and(|log| log.parkable_now(idle)) {
            return Ok(false);
        }
        drop(guard);
        let err = self.shared.maintenance();
        let shared = self.shared.clone();
        self.shared
            .with_log(move |log| {
                let parked = log.park_if_idle(idle).map_err(err);
                if parked.is_err() {
                    // A failed sync failed the log: recover it as a failed flush would.
                    shared.notice_failure(log);
                }
                parked
            })
            .await
    }

    /// Flushes and closes the log; later operations fail with `PartitionClosed`, and
    /// `acks=all` appends still waiting are answered with it.
    pub async fn close(&self) -> Result<(), ClusterError> {
        self.shared
            .closing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        // Best effort: a restart then starts from this high watermark.
        let _ = self.checkpoint_high_watermark().await;
        let Some(log) = self.shared.log.write().await.take() else {
            return Ok(());
        };
        self.shared.fail_acks(|_| true, |s| s.closed());
        // Wake waiting readers so they find the partition closed instead of waiting on.
        self.shared.high_watermark.send_modify(|_| {});
        let err = self.shared.maintenance();
        tokio::task::spawn_blocking(move || log.close().map_err(err))
            .await
            .map_err(|e| ClusterError::TaskFailed(e.to_string()))?
    }
}
