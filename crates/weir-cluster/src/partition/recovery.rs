//! Reopening a partition's log: after it failed (the state machine's
//! [`Command::ReopenLog`](crate::replication::Command::ReopenLog), `docs/replication.md`
//! § A replica's log fails), and for new topic settings (`Partition::reconfigure`).
//!
//! A failed log is dropped without another sync (nothing more it says can be trusted),
//! opened again (recovery scans its tail from the last recovery checkpoint), and cut to
//! the durable point the state machine names, durably. If that fails, the disk is still
//! failing: the data directory is taken offline (`offline.rs`), the log is not tried
//! again, and the partition serves nothing (every operation gets the retriable
//! `LogRecovering`) until the broker stops.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::OwnedRwLockWriteGuard;
use weir_log::{Log, LogOffsets};

use super::{Shared, open_log, replica_config};
use crate::config::EffectiveConfig;
use crate::error::ClusterError;
use crate::replication::{Event, LocalLog};

/// Reopens the failed log, cut to `truncate_to`, and tells the state machine; or, if
/// that fails, takes the data directory offline. A reopen that runs out of space is tried
/// again every [`REOPEN_WHEN_FULL_EVERY`] until space is freed: a full disk refuses
/// writes, it is not a failing one (found by the soak, where a reopen on a full disk
/// stopped the broker). Nothing is reopened on a data directory that is already offline,
/// nor for a partition being closed.
pub(super) async fn reopen_after_failure(shared: Arc<Shared>, truncate_to: Option<i64>) {
    let mut said_full = false;
    loop {
        let mut guard = shared.log.clone().write_owned().await;
        if shared.closing.load(Ordering::SeqCst) {
            return;
        }
        if let Some(reason) = shared.data_dir.offline() {
            tracing::warn!(
                topic = shared.topic,
                partition = shared.index,
                reason,
                "the data directory is offline: the failed log stays closed"
            );
            // Dropped without another sync, as before a reopen.
            if let Some(failed) = guard.take() {
                let _ = tokio::task::spawn_blocking(move || drop(failed)).await;
            }
            return;
        }
        match reopen(&shared, guard, truncate_to).await {
            Ok(()) => return,
            Err(e) if e.is_storage_full() => {
                if !std::mem::replace(&mut said_full, true) {
                    tracing::warn!(
                        topic = shared.topic,
                        partition = shared.index,
                        error = %e,
                        "no space left to reopen the failed log: trying again until space is freed"
                    );
                }
                tokio::time::sleep(REOPEN_WHEN_FULL_EVERY).await;
            }
            Err(e) => {
                *shared.failure.lock().expect("failure mutex") = Some(e.to_string());
                shared.take_data_dir_offline(format!(
                    "reopening the failed log of {}-{} failed: {e}",
                    shared.topic, shared.index
                ));
                return;
            }
        }
    }
}

/// How often a reopen that ran out of space is tried again.
const REOPEN_WHEN_FULL_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Under the log's write guard: drops the log there is (closing it cleanly if it has not
/// failed), opens it again with the partition's settings, cuts it to `truncate_to`, and
/// feeds [`Event::LogReopened`] to the state machine. On an error the slot stays empty.
async fn reopen(
    shared: &Arc<Shared>,
    mut guard: OwnedRwLockWriteGuard<Option<Log>>,
    truncate_to: Option<i64>,
) -> Result<(), ClusterError> {
    if let Some(old) = guard.take() {
        let _ = tokio::task::spawn_blocking(move || match old.failure() {
            // A failed log's drop syncs nothing.
            Some(_) => drop(old),
            None => {
                if let Err(e) = old.close() {
                    tracing::warn!(error = %e, "closing the log before reopening it failed; recovery will see to it");
                }
            }
        })
        .await;
    }
    let config = shared.config.lock().expect("config mutex").clone();
    let log = open_log(
        &shared.topic,
        shared.index,
        &shared.dir,
        &config,
        &shared.storage,
    )
    .await?;
    let err = shared.maintenance();
    let log = tokio::task::spawn_blocking(move || {
        match truncate_to {
            Some(t) if log.offsets().log_end_offset > t => log.truncate_to(t).map_err(err)?,
            _ => {}
        }
        Ok::<_, ClusterError>(log)
    })
    .await
    .map_err(|e| ClusterError::TaskFailed(e.to_string()))??;
    let offsets = log.offsets();
    tracing::info!(
        topic = shared.topic,
        partition = shared.index,
        log_end_offset = offsets.log_end_offset,
        "the failed log is open again"
    );
    shared.log_end.send_replace(offsets.log_end_offset);
    *guard = Some(log);
    *shared.failure.lock().expect("failure mutex") = None;
    *shared.reopened_at.lock().expect("reopened_at mutex") = Some(std::time::Instant::now());
    let guard = guard.downgrade();
    if let Some(log) = guard.as_ref() {
        shared.drive(log, Event::LogReopened);
    }
    Ok(())
}

/// New topic settings: the log is flushed in place (a failure there takes the failure
/// path, which reopens it with them), then closed and opened again with them. A log
/// that cannot be opened is tried once more as a failed one would be (the partition
/// serves nothing meanwhile), which takes the data directory offline if it fails again;
/// nothing is lost, since it was synced and nothing could be appended in between.
pub(super) async fn reconfigure(
    shared: &Arc<Shared>,
    config: EffectiveConfig,
) -> Result<(), ClusterError> {
    let mut guard = shared.log.clone().write_owned().await;
    {
        let mut replica = shared.replica();
        let node = replica.config().node;
        let mut rc = replica_config(node, &config);
        rc.broker_epoch = replica.config().broker_epoch;
        replica.reconfigure(rc);
    }
    *shared.config.lock().expect("config mutex") = Arc::new(config.clone());
    let Some(old) = guard.take() else {
        // Being reopened after a failure: it opens with the new settings.
        let recovering = shared.failure.lock().expect("failure mutex").is_some();
        return match recovering && !shared.closing.load(Ordering::SeqCst) {
            true => Ok(()),
            false => Err(shared.closed()),
        };
    };
    let (old, flushed) = tokio::task::spawn_blocking(move || {
        let flushed = old.flush();
        (old, flushed)
    })
    .await
    .map_err(|e| ClusterError::TaskFailed(e.to_string()))?;
    if flushed.is_err() || old.failure().is_some() {
        *guard = Some(old);
        let guard = guard.downgrade();
        if let Some(log) = guard.as_ref() {
            shared.notice_failure(log);
        }
        return Ok(());
    }
    let offsets = old.offsets();
    let closed = tokio::task::spawn_blocking(move || old.close())
        .await
        .map_err(|e| ClusterError::TaskFailed(e.to_string()))?;
    if let Err(e) = closed {
        // Everything was synced: opening recovers whatever the close did not write.
        tracing::warn!(topic = shared.topic, partition = shared.index, error = %e, "closing the log to reconfigure it failed");
    }
    match open_log(
        &shared.topic,
        shared.index,
        &shared.dir,
        &config,
        &shared.storage,
    )
    .await
    {
        Ok(log) => {
            *guard = Some(log);
            Ok(())
        }
        Err(e) => {
            tracing::error!(topic = shared.topic, partition = shared.index, error = %e, "reopening the log with new settings failed; trying once more as after a failure");
            *shared.failure.lock().expect("failure mutex") = Some(e.to_string());
            drop(guard);
            shared.drive(&Closed(offsets), Event::LogFailed);
            Ok(())
        }
    }
}

/// What the state machine may know of a log that is closed: its offsets when it was.
struct Closed(LogOffsets);

impl LocalLog for Closed {
    fn log_start_offset(&self) -> i64 {
        self.0.log_start_offset
    }

    fn log_end_offset(&self) -> i64 {
        self.0.log_end_offset
    }

    fn flushed_offset(&self) -> i64 {
        self.0.flushed_offset
    }

    fn end_offset_for_epoch(&self, _epoch: i32) -> Option<(i32, i64)> {
        None
    }

    fn last_epoch(&self) -> Option<i32> {
        None
    }
}
