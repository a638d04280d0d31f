//! Rolling: closing the active segment and starting a new one at the log end, when an
//! append would not fit the active one, or on request ([`Log::roll`], and delete-records
//! in `maintenance.rs`). The closed segment's sync is left to the next flush
//! (`flush.rs`), which is why a roll queues it there.

use super::flush::unless_full;
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
    ///
    /// A full disk refuses the roll and leaves the log as it was, healthy: the new
    /// segment's files are created before the active one is sealed (and removed again if
    /// that runs out of space), and the producer snapshot and recovery point a roll
    /// writes are shortcuts for a later recovery, whose last versions stay valid (they
    /// claim less), so they are left for the next roll or flush to write. Before, a roll
    /// that met a full disk failed the log; its leadership ended and its waiting
    /// `acks=all` appends, written and replicated, were answered as failed (found by the
    /// soak, where librdkafka then wrote five of them again under a new producer epoch).
    /// Any other failure fails the log.
    ///
    /// The closed segment's `.log` is not synced here (that would stall every append for
    /// as long as its dirty bytes take to write): if its data is not all durable yet it is
    /// queued in the flush state, and the next flush of any kind syncs it first; until
    /// then neither `flushed_offset` nor the recovery point moves past it. If everything
    /// was already synced, the recovery point moves to the new segment at once.
    pub(crate) fn roll_locked(&self, inner: &mut Inner) -> Result<(), MaintenanceError> {
        let next = inner.next_offset;
        if inner.active().base_offset == next {
            return Ok(()); // already empty at the log end
        }
        let created = Segment::create(self.storage.as_ref(), &self.dir, next, &self.config)
            .map_err(open_to_maintenance);
        let seg = match created {
            Ok(seg) => seg,
            Err(e) if e.is_storage_full() => {
                let partial = Segment::closed(&self.dir, next, 0);
                if let Err(removed) = super::remove_segment_files(self.storage.as_ref(), &partial) {
                    inner.failed = Some(format!("segment roll failed: {e}; {removed}"));
                }
                return Err(e);
            }
            Err(e) => {
                inner.failed = Some(format!("segment roll failed: {e}"));
                return Err(e);
            }
        };
        let result = self.roll_to(inner, seg);
        if let Err(e) = &result {
            inner.failed = Some(format!("segment roll failed: {e}"));
        }
        if result.is_ok() {
            tracing::debug!(dir = %self.dir.display(), base_offset = inner.next_offset, "segment rolled");
        }
        result
    }

    /// The rest of [`Log::roll_locked`], once the new segment `seg` exists.
    fn roll_to(&self, inner: &mut Inner, seg: Segment) -> Result<(), MaintenanceError> {
        let next = inner.next_offset;
        let active = inner.active_mut();
        active
            .ensure_open(self.storage.as_ref(), &self.config, next)
            .map_err(open_to_maintenance)?;
        let rolled = RolledSegment {
            base: active.base_offset,
            end: next,
            file: active.files().file.clone(),
            path: active.log_path.clone(),
        };
        let cut = active
            .cut_padding()
            .map_err(|e| MaintenanceError::io(active.log_path.clone(), e))?;
        recovery::seal(active).map_err(open_to_maintenance)?;
        active.files().file.sealed();
        inner.segments.insert(next, Box::new(seg));
        self.storage
            .sync_dir(&self.dir)
            .map_err(|e| MaintenanceError::io(self.dir.clone(), e))?;
        unless_full(
            self.write_producer_snapshot(inner).map_err(Into::into),
            "producer-state snapshot",
        )?;
        let mut flush = self.flush_state();
        if !cut && flush.generation == inner.generation && flush.flushed_offset >= next {
            // Its data was synced already (every-append, or a group commit that
            // caught up): the new segment's start is a valid recovery point. A cut
            // padding's new size is not synced yet: the next flush syncs it first.
            drop(flush);
            unless_full(self.write_recovery_point(inner), "recovery point")?;
        } else {
            flush.rolled.push(rolled);
        }
        Ok(())
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
