//! Durability: group commit ([`Log::wait_durable`]), the deferred sync of rolled
//! segments ([`Log::flush_rolled`]), interval flushing, and the recovery checkpoint each
//! sync may advance. Separate from `log.rs` because it is a subsystem of its own: the
//! `flush` and `checkpoint` locks and their state, and syncs that run outside the log
//! lock so that appends go on meanwhile.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};
use std::time::Instant;

use super::{Inner, Log};
use crate::checkpoint::{self, Kind};
use crate::config::FlushPolicy;
use crate::error::MaintenanceError;
use crate::recovery::RecoveryPoint;

#[derive(Debug)]
pub(crate) struct FlushState {
    /// Every offset below this is durable.
    pub(crate) flushed_offset: i64,
    in_progress: bool,
    pub(crate) generation: u64,
    last_sync: Instant,
    /// Segments rolled while their data was not yet synced (a roll never syncs under the
    /// log lock), oldest first: every closed segment holding offsets at or past
    /// `flushed_offset`. The next flush of any kind syncs them before the active segment
    /// and before `flushed_offset` or the recovery point moves past them.
    pub(super) rolled: Vec<RolledSegment>,
}

impl FlushState {
    /// The flush state of a log just opened: everything it recovered counts as durable.
    pub(super) fn new(flushed_offset: i64) -> FlushState {
        FlushState {
            flushed_offset,
            in_progress: false,
            generation: 0,
            last_sync: Instant::now(),
            rolled: Vec::new(),
        }
    }
}

/// A closed segment whose `.log` data may not be on disk yet.
#[derive(Debug, Clone)]
pub(super) struct RolledSegment {
    pub(super) base: i64,
    /// Its end offset: the base of the segment that followed it.
    pub(super) end: i64,
    pub(super) file: Arc<dyn crate::storage::StorageFile>,
    pub(super) path: PathBuf,
}

#[derive(Debug)]
pub(super) struct CheckpointState {
    last: Option<RecoveryPoint>,
    written_at: Instant,
    generation: u64,
}

impl CheckpointState {
    /// The checkpoint state of a log just opened, whose recovery point is `last`.
    pub(super) fn new(last: RecoveryPoint) -> CheckpointState {
        CheckpointState {
            last: Some(last),
            written_at: Instant::now(),
            generation: 0,
        }
    }
}

impl Log {
    /// Writes the recovery checkpoint for the current state; the caller has made the
    /// active segment's data durable.
    pub(crate) fn write_recovery_point(&self, inner: &Inner) -> Result<(), MaintenanceError> {
        let point = inner.recovery_point();
        // A parked segment's entries were flushed when it was parked.
        if let Some(files) = &inner.active().files {
            files.flush_indexes(MaintenanceError::io)?;
        }
        let mut ckpt = self.checkpoint.lock().expect("checkpoint mutex poisoned");
        // The same point again (a log parked or closed twice with nothing in between)
        // is on disk already.
        if ckpt.last != Some(point) {
            self.write_checkpoint(&mut ckpt, point)?;
        }
        ckpt.generation = inner.generation;
        Ok(())
    }

    /// [`Log::write_recovery_point`] where the point on disk may claim what the log no
    /// longer holds (after a truncation): one that cannot be written for want of space is
    /// removed (`checkpoint::write_or_remove`), and the next open scans every segment.
    pub(crate) fn replace_recovery_point(&self, inner: &Inner) -> Result<(), MaintenanceError> {
        match self.write_recovery_point(inner) {
            Err(e) if e.is_storage_full() => {
                let mut ckpt = self.checkpoint.lock().expect("checkpoint mutex poisoned");
                tracing::warn!(dir = %self.dir.display(), error = %e, "recovery point not written for want of space: removed, the next open scans every segment");
                checkpoint::remove(self.storage.as_ref(), &self.dir, Kind::RecoveryPoint)?;
                ckpt.last = None;
                Ok(())
            }
            other => other,
        }
    }

    pub(crate) fn flush_state(&self) -> MutexGuard<'_, FlushState> {
        self.flush.lock().expect("flush mutex poisoned")
    }

    /// Blocks until every offset up to and including `offset` is on disk. Group commit:
    /// the first waiter syncs everything appended so far while later ones wait; when that
    /// sync ends, all whose offsets it covered return, and one of the rest starts the next.
    pub fn wait_durable(&self, offset: i64) -> Result<(), MaintenanceError> {
        loop {
            {
                let mut flush = self.flush_state();
                loop {
                    if flush.flushed_offset > offset {
                        return Ok(());
                    }
                    if !flush.in_progress {
                        break;
                    }
                    flush = self.flushed.wait(flush).expect("flush mutex poisoned");
                }
                flush.in_progress = true;
            }
            let result = self.sync_once();
            let target = {
                let mut flush = self.flush_state();
                flush.in_progress = false;
                self.flushed.notify_all();
                let (target, generation) = result?;
                if generation == flush.generation {
                    flush.flushed_offset = flush.flushed_offset.max(target);
                }
                flush.last_sync = Instant::now();
                target
            };
            if target <= offset {
                // This sync covered the whole log, yet not `offset`: it was never appended
                // (or a truncation removed it). The flush lock is released first: lock
                // order is `inner` before `flush`.
                let inner = self.lock();
                if offset >= inner.next_offset {
                    return Err(MaintenanceError::OffsetOutOfRange {
                        offset,
                        log_start_offset: inner.log_start_offset,
                        log_end_offset: inner.next_offset,
                    });
                }
            }
        }
    }

    /// Syncs the segments rolled since the last sync (oldest first), then the active
    /// one; returns the offset below which everything is now durable, and the truncation
    /// generation it belongs to.
    fn sync_once(&self) -> Result<(i64, u64), MaintenanceError> {
        let (rolled, file, path, point, generation) = {
            let inner = self.lock();
            inner
                .check_failed()
                .map_err(|reason| MaintenanceError::Failed { reason })?;
            let active = inner.active();
            (
                self.rolled_to_sync(&inner),
                // None while parked: everything in it is durable already.
                active.files.as_ref().map(|f| f.file.clone()),
                active.log_path.clone(),
                inner.recovery_point(),
                inner.generation,
            )
        };
        // Segments rolled since the last sync first, oldest first: `point` claims them.
        for r in &rolled {
            self.sync_or_fail(&r.file, &r.path)?;
        }
        if let Some(file) = &file {
            self.sync_or_fail(file, &path)?;
        }
        self.forget_rolled(&rolled);
        // The data is durable; only the checkpoint that shortens recovery may not be
        // written for want of space, and a full disk must not fail the syncs that
        // `acks=all` answers wait for.
        unless_full(
            self.maybe_checkpoint(point, generation),
            "recovery checkpoint",
        )?;
        Ok((point.next_offset, generation))
    }

    /// `fdatasync` outside the log lock. A failure fails the log: the kernel may have
    /// dropped the dirty pages, so what the page cache shows can no longer be trusted to
    /// be on disk (PostgreSQL's "fsyncgate"); reopening recovers from what the disk holds.
    fn sync_or_fail(
        &self,
        file: &Arc<dyn crate::storage::StorageFile>,
        path: &Path,
    ) -> Result<(), MaintenanceError> {
        file.sync_data()
            .map_err(|e| Self::sync_failed(&mut self.lock(), path, e))?;
        // A new log syncs nothing when it is created (recovery.rs); its first data sync
        // makes the segment's directory entries durable with the data.
        if self.dir_unsynced.load(Ordering::Acquire) {
            self.storage
                .sync_dir(&self.dir)
                .map_err(|e| Self::sync_failed(&mut self.lock(), &self.dir, e))?;
            self.dir_unsynced.store(false, Ordering::Release);
        }
        Ok(())
    }

    /// [`Log::sync_or_fail`] for a caller that holds the log lock (close, truncation).
    pub(super) fn sync_locked(
        inner: &mut Inner,
        file: &Arc<dyn crate::storage::StorageFile>,
        path: &Path,
    ) -> Result<(), MaintenanceError> {
        file.sync_data()
            .map_err(|e| Self::sync_failed(inner, path, e))
    }

    /// Fails the log after a failed fsync of `path` and returns the error to report.
    fn sync_failed(inner: &mut Inner, path: &Path, e: std::io::Error) -> MaintenanceError {
        let reason = format!("fsync of {} failed: {e}", path.display());
        tracing::error!(reason, "log failed");
        inner.failed = Some(reason);
        MaintenanceError::io(path.to_path_buf(), e)
    }

    /// Drops queued rolled segments that no longer need a sync: removed (retention,
    /// truncation) or replaced (compaction, whose output is synced) since, active again
    /// (a truncation cut back into it), or already covered by `flushed_offset`.
    pub(crate) fn prune_rolled(&self, inner: &Inner) {
        let active_base = inner.active().base_offset;
        let mut flush = self.flush_state();
        let flushed = flush.flushed_offset;
        flush.rolled.retain(|r| {
            r.base != active_base
                && r.end > flushed
                && inner
                    .segments
                    .get(&r.base)
                    .and_then(|s| s.files.as_ref())
                    .is_some_and(|f| Arc::ptr_eq(&f.file, &r.file))
        });
    }

    /// The rolled segments a flush must sync before anything later, oldest first.
    fn rolled_to_sync(&self, inner: &Inner) -> Vec<RolledSegment> {
        self.prune_rolled(inner);
        self.flush_state().rolled.clone()
    }

    /// Removes the segments in `synced` from the queue.
    fn forget_rolled(&self, synced: &[RolledSegment]) {
        if synced.is_empty() {
            return;
        }
        self.flush_state()
            .rolled
            .retain(|r| !synced.iter().any(|s| Arc::ptr_eq(&s.file, &r.file)));
    }

    /// True while a rolled segment waits for the sync [`Log::flush_rolled`] gives it (a
    /// cheap check for a background task deciding whether to call it).
    pub fn rolled_awaiting_sync(&self) -> bool {
        !self.flush_state().rolled.is_empty()
    }

    /// Syncs every queued rolled segment (not the active one), outside the log lock, then
    /// moves `flushed_offset` and the recovery point to the start of the segment after
    /// the last of them: Kafka's asynchronous flush of rolled segments. A no-op when no
    /// roll is waiting for its sync. Call it from a background task soon after a roll
    /// (`flush_if_due` does, under every policy).
    pub fn flush_rolled(&self) -> Result<(), MaintenanceError> {
        let (rolled, generation) = {
            let inner = self.lock();
            inner
                .check_failed()
                .map_err(|reason| MaintenanceError::Failed { reason })?;
            (self.rolled_to_sync(&inner), inner.generation)
        };
        let Some(last) = rolled.last() else {
            return Ok(());
        };
        for r in &rolled {
            self.sync_or_fail(&r.file, &r.path)?;
        }
        self.forget_rolled(&rolled);
        let end = last.end;
        {
            let mut flush = self.flush_state();
            if flush.generation == generation {
                flush.flushed_offset = flush.flushed_offset.max(end);
            }
        }
        self.flushed.notify_all();
        // The recovery point moves to the start of the segment after the synced ones, as
        // a roll used to do, if nothing newer was written and no truncation intervened.
        {
            let inner = self.lock();
            if inner.generation != generation || !inner.segments.contains_key(&end) {
                return Ok(());
            }
        }
        self.store_recovery_point(RecoveryPoint::empty(end), generation, |_| true)
    }

    /// Under the log lock: syncs every queued rolled segment (for close and truncation,
    /// which sync the active segment under the lock and then write a recovery point).
    pub(crate) fn sync_rolled_locked(&self, inner: &mut Inner) -> Result<(), MaintenanceError> {
        let rolled = self.rolled_to_sync(inner);
        for r in &rolled {
            Self::sync_locked(inner, &r.file, &r.path)?;
        }
        self.forget_rolled(&rolled);
        Ok(())
    }

    /// After a sync made `point` durable, persists it as the recovery checkpoint, at most
    /// once per `recovery_checkpoint_interval`. A point made stale by a roll or a
    /// truncation in the meantime is dropped (those write their own).
    fn maybe_checkpoint(
        &self,
        point: RecoveryPoint,
        generation: u64,
    ) -> Result<(), MaintenanceError> {
        let due = |c: &CheckpointState| {
            c.written_at.elapsed() >= self.config.recovery_checkpoint_interval
        };
        if !due(&self.checkpoint.lock().expect("checkpoint mutex poisoned")) {
            return Ok(());
        }
        {
            // The index entries the point counts must be on disk too.
            let inner = self.lock();
            let active = inner.active();
            if inner.generation != generation || active.base_offset != point.segment_base {
                return Ok(());
            }
            if let Some(files) = &active.files {
                files.flush_indexes(MaintenanceError::io)?;
            }
        }
        self.store_recovery_point(point, generation, due)
    }

    /// Writes `point` as the recovery checkpoint if it is past the last one written, no
    /// truncation intervened (`generation`), and `also` agrees (checked under the
    /// checkpoint lock).
    fn store_recovery_point(
        &self,
        point: RecoveryPoint,
        generation: u64,
        also: impl Fn(&CheckpointState) -> bool,
    ) -> Result<(), MaintenanceError> {
        let mut ckpt = self.checkpoint.lock().expect("checkpoint mutex poisoned");
        let newer = ckpt
            .last
            .is_none_or(|l| (point.segment_base, point.position) > (l.segment_base, l.position));
        if ckpt.generation != generation || !newer || !also(&ckpt) {
            return Ok(());
        }
        self.write_checkpoint(&mut ckpt, point)
    }

    /// Writes `point` as the recovery checkpoint and records it as the last one written;
    /// the caller holds the checkpoint lock (`ckpt`).
    fn write_checkpoint(
        &self,
        ckpt: &mut CheckpointState,
        point: RecoveryPoint,
    ) -> Result<(), MaintenanceError> {
        checkpoint::write(
            self.storage.as_ref(),
            &self.dir,
            Kind::RecoveryPoint,
            &point.encode(),
        )?;
        ckpt.last = Some(point);
        ckpt.written_at = Instant::now();
        Ok(())
    }

    /// Syncs everything appended so far.
    pub fn flush(&self) -> Result<(), MaintenanceError> {
        let end = self.lock().next_offset;
        if end == 0
            || self
                .flush
                .lock()
                .expect("flush mutex poisoned")
                .flushed_offset
                >= end
        {
            return Ok(());
        }
        self.wait_durable(end - 1)
    }

    /// With [`FlushPolicy::Interval`], syncs if the last sync is older than the interval.
    /// Under every policy, first syncs the segments rolled since the last flush
    /// ([`Log::flush_rolled`]).
    pub fn flush_if_due(&self) -> Result<(), MaintenanceError> {
        self.flush_rolled()?;
        self.flush_interval_if_due()
    }

    /// The interval part of [`Log::flush_if_due`] (what every append checks).
    pub(super) fn flush_interval_if_due(&self) -> Result<(), MaintenanceError> {
        let FlushPolicy::Interval(interval) = self.config.flush else {
            return Ok(());
        };
        let due = self
            .flush
            .lock()
            .expect("flush mutex poisoned")
            .last_sync
            .elapsed()
            >= interval;
        if due { self.flush() } else { Ok(()) }
    }
}

/// A checkpoint write that ran out of space, taken as done: the last one written stands
/// (it claims less than this one would, so it is still true: a recovery scans a little
/// more) and the next sync or roll writes it again. Any other error stands.
pub(super) fn unless_full(
    written: Result<(), MaintenanceError>,
    what: &str,
) -> Result<(), MaintenanceError> {
    match written {
        Err(e) if e.is_storage_full() => {
            tracing::debug!(error = %e, "{what} not written for want of space");
            Ok(())
        }
        other => other,
    }
}
