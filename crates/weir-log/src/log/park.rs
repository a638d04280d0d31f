//! Parking: a log that nobody appended to or read from for a while closes its files,
//! the active segment's `.log` descriptor and its two index mappings, and any closed
//! segment a read had opened. A broker's descriptors and memory mappings then grow with
//! the partitions in use, not with every partition it holds: the kernel's limits (here a
//! hard limit of 20,000 descriptors and 65,530 mappings per process) would otherwise cap
//! a broker near 20,000 partitions, whatever its memory.
//!
//! A parked log is closed as [`Log::close`] closes it: everything synced, the producer
//! snapshot and the recovery point written at the log end. The point on disk then
//! describes the active segment exactly, so the first append or read opens it again the
//! way recovery opens a cleanly closed log (`recovery::reopen_parked`), with no scan. A
//! log opened from a clean close starts parked the same way, and a new log starts parked
//! with no files at all (`Segment::unborn`): creating or restarting a broker of many
//! partitions opens no segment file.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Inner, Log};
use crate::error::MaintenanceError;

impl Log {
    /// Closes the log's files if it has not been appended to or read from for `idle`
    /// (reads at the log end, a consumer or follower waiting for more, do not count).
    /// Returns whether it closed anything. Durable first: a parked log's state is
    /// exactly what its checkpoints say, as after a clean close.
    pub fn park_if_idle(&self, idle: Duration) -> Result<bool, MaintenanceError> {
        let mut inner = self.lock();
        if !self.parkable(&inner, idle) {
            return Ok(false);
        }
        inner
            .check_failed()
            .map_err(|reason| MaintenanceError::Failed { reason })?;
        if inner.active().parked.is_none() {
            match self.settle_locked(&mut inner) {
                Ok(()) => {}
                // Its checkpoints could not be written for want of space: it stays open
                // (and healthy) and is parked once they can be.
                Err(e) if e.is_storage_full() => return Ok(false),
                Err(e) => return Err(e),
            }
            let point = inner.recovery_point();
            inner.active_mut().park(point);
        }
        // Closed segments a read opened: durable since their roll's sync (the rolled
        // queue was emptied above, or was empty when the log was parked).
        for seg in inner.segments.values_mut() {
            seg.files = None;
        }
        tracing::debug!(dir = %self.dir.display(), "log parked");
        Ok(true)
    }

    /// Under the log lock, with the active segment open: makes everything durable and
    /// writes the producer snapshot and the recovery point at the log end, so that the
    /// checkpoints on disk describe the log exactly (what close and park both leave).
    pub(super) fn settle_locked(&self, inner: &mut Inner) -> Result<(), MaintenanceError> {
        // A direct write's padding is cut first, so that the file ends where the point
        // will say: the next open then finds the log at its end and leaves it parked,
        // with no scan (under many partitions, no descriptor either).
        let active = inner.active();
        active
            .cut_padding()
            .map_err(|e| MaintenanceError::io(active.log_path.clone(), e))?;
        self.sync_rolled_locked(inner)?;
        let end = inner.next_offset;
        let synced = {
            let flush = self.flush_state();
            flush.generation == inner.generation && flush.flushed_offset >= end
        };
        if !synced {
            let active = inner.active();
            let (file, path) = (active.files().file.clone(), active.log_path.clone());
            Self::sync_locked(inner, &file, &path)?;
        }
        // A new log's directory entries are made durable by its first data sync
        // (recovery.rs); the point written below claims them too.
        if self.dir_unsynced.load(Ordering::Acquire) {
            self.storage
                .sync_dir(&self.dir)
                .map_err(|e| MaintenanceError::io(self.dir.clone(), e))?;
            self.dir_unsynced.store(false, Ordering::Release);
        }
        self.write_producer_snapshot(inner)?;
        self.write_recovery_point(inner)?;
        {
            let mut flush = self.flush_state();
            if flush.generation == inner.generation {
                flush.flushed_offset = flush.flushed_offset.max(end);
            }
        }
        self.flushed.notify_all();
        Ok(())
    }

    /// Whether [`Log::park_if_idle`] would close anything now (a cheap look for a
    /// background task deciding whether to call it on a blocking thread).
    pub fn parkable_now(&self, idle: Duration) -> bool {
        self.parkable(&self.lock(), idle)
    }

    fn parkable(&self, inner: &Inner, idle: Duration) -> bool {
        inner.last_used.elapsed() >= idle && inner.segments.values().any(|s| s.files.is_some())
    }

    /// Whether the active segment's files are closed (parked, or never opened).
    pub fn is_parked(&self) -> bool {
        self.lock().active().parked.is_some()
    }
}
