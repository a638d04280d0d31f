//! Rolling: closing the active segment and starting a new one at the log end, when an
//! append would not fit the active one, or on request ([`Log::roll`], and delete-records
//! in `maintenance.rs`). The closed segment's sync is left to the next flush
//! (`flush.rs`), which is why a roll queues it there.

use super::{Inner, Log, RolledSegment, open_to_maintenance};
use crate::error::{AppendError, MaintenanceError};
use crate::recovery;
use crate::segment::Segment;

impl Log {
    /// Rolls to a new segment if `bytes` more (spanning `span` offsets) would not fit the
    /// active one by size, age, index room or 32-bit relative offsets.
    pub(super) fn maybe_roll(
        &self,
        inner: &mut Inner,
        bytes: usize,
        span: i64,
    ) -> Result<(), AppendError> {
        let active = inner.active();
        if active.size == 0 {
            return Ok(());
        }
        let full = active.size + bytes as u64 > self.config.segment_bytes;
        let old = self
            .config
            .segment_age
            .is_some_and(|age| active.active_since.elapsed() >= age);
        let offsets = inner.next_offset + span - active.base_offset > i64::from(u32::MAX);
        if full || old || offsets || active.index_is_full() {
            self.roll_locked(inner).map_err(roll_to_append)?;
        }
        Ok(())
    }

    /// Closes the active segment (indexes sealed) and starts a new one at the log end.
    /// Any failure fails the log.
    ///
    /// The closed segment's `.log` is not synced here (that would stall every append for
    /// as long as its dirty bytes take to write): if its data is not all durable yet it is
    /// queued in the flush state, and the next flush of any kind syncs it first; until
    /// then neither `flushed_offset` nor the recovery point moves past it. If everything
    /// was already synced, the recovery point moves to the new segment at once.
    pub(crate) fn roll_locked(&self, inner: &mut Inner) -> Result<(), MaintenanceError> {
        let result = (|| {
            let next = inner.next_offset;
            let active = inner.active_mut();
            if active.base_offset == next {
                return Ok(()); // already empty at the log end
            }
            active
                .ensure_open(self.storage.as_ref(), &self.config, next)
                .map_err(open_to_maintenance)?;
            let rolled = RolledSegment {
                base: active.base_offset,
                end: next,
                file: active.files().file.clone(),
                path: active.log_path.clone(),
            };
            recovery::seal(active).map_err(open_to_maintenance)?;
            let seg = Segment::create(self.storage.as_ref(), &self.dir, next, &self.config)
                .map_err(open_to_maintenance)?;
            inner.segments.insert(next, Box::new(seg));
            self.storage
                .sync_dir(&self.dir)
                .map_err(|e| MaintenanceError::io(self.dir.clone(), e))?;
            self.write_producer_snapshot(inner)?;
            let mut flush = self.flush_state();
            if flush.generation == inner.generation && flush.flushed_offset >= next {
                // Its data was synced already (every-append, or a group commit that
                // caught up): the new segment's start is a valid recovery point.
                drop(flush);
                self.write_recovery_point(inner)?;
            } else {
                flush.rolled.push(rolled);
            }
            Ok(())
        })();
        if let Err(e) = &result {
            inner.failed = Some(format!("segment roll failed: {e}"));
        }
        if result.is_ok() {
            tracing::debug!(dir = %self.dir.display(), base_offset = inner.next_offset, "segment rolled");
        }
        result
    }

    /// Starts a new segment now (if the active one holds anything).
    pub fn roll(&self) -> Result<(), MaintenanceError> {
        let mut inner = self.lock();
        inner
            .check_failed()
            .map_err(|reason| MaintenanceError::Failed { reason })?;
        self.roll_locked(&mut inner)
    }
}

/// A failed roll as an append's error (a roll failure has failed the log).
pub(super) fn roll_to_append(e: MaintenanceError) -> AppendError {
    match e {
        MaintenanceError::Io { path, source } => AppendError::Io { path, source },
        other => AppendError::Failed {
            reason: other.to_string(),
        },
    }
}
