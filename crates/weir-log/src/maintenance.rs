//! Operations that remove data: truncation from the end (a follower cutting what
//! diverged from its leader), delete-records (moving the log start), and retention by
//! age and size. Only whole closed segments are ever deleted; the active one never is.

use std::time::Duration;

use crate::batch::{self, BatchHeader, HEADER_BYTES};
use crate::checkpoint::{self, Kind};
use crate::error::MaintenanceError;
use crate::log::{Inner, Log, open_to_maintenance, remove_segment_files};
use crate::recovery;
use crate::segment::{IndexCursor, Segment};

/// What a retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
    pub log_start_offset: i64,
}

impl Log {
    /// Removes every batch whose last offset is at or after `offset` (batches are never
    /// split), so the log ends where the last remaining batch ends: at `offset`, or below
    /// it if `offset` falls inside a batch or inside a gap compaction left. The leader
    /// epochs that start at or past the new end go too. Used by followers to cut what
    /// diverged from the leader. Truncating below the log start empties the log and
    /// restarts it at `offset`. Durable when it returns: the cut is synced, then the epoch
    /// history and the recovery point are written.
    pub fn truncate_to(&self, offset: i64) -> Result<(), MaintenanceError> {
        self.cut(offset, false)
    }

    /// Empties the log and restarts it at `offset`, wherever its end was (Kafka's
    /// `truncateFullyAndStartAt`): for a follower whose log ends below its leader's log
    /// start, or whose whole log diverged. Durable when it returns, like
    /// [`Log::truncate_to`].
    pub fn truncate_fully_and_start_at(&self, offset: i64) -> Result<(), MaintenanceError> {
        self.cut(offset, true)
    }

    fn cut(&self, offset: i64, fully: bool) -> Result<(), MaintenanceError> {
        let mut inner = self.lock();
        inner
            .check_failed()
            .map_err(|reason| MaintenanceError::Failed { reason })?;
        if offset >= inner.next_offset && !fully {
            return Ok(());
        }
        let result = if fully || offset <= inner.log_start_offset {
            self.restart_at(&mut inner, offset)
        } else {
            self.truncate_within(&mut inner, offset).and_then(|()| {
                // The batch holding `offset` also held the log start (DeleteRecords can
                // move it inside a batch): nothing readable is left, so the log is empty
                // at its start rather than ending below it.
                let start = inner.log_start_offset;
                if inner.next_offset < start {
                    self.restart_at(&mut inner, start)
                } else {
                    Ok(())
                }
            })
        };
        if let Err(e) = &result {
            inner.failed = Some(format!("truncation failed: {e}"));
            return result;
        }
        let new_end = inner.next_offset;
        // Make the cut durable before the checkpoint points at it, and every segment
        // before it that a roll left unsynced (the checkpoint claims them too).
        self.sync_rolled_locked(&mut inner)?;
        let active = inner.active();
        active
            .files()
            .file
            .sync_data()
            .map_err(|e| MaintenanceError::io(active.log_path.clone(), e))?;
        // The epochs go only after the cut is durable: a crash in between leaves epochs
        // past the end, which recovery drops, never batches whose epoch the history has
        // forgotten (that history would answer OffsetsForLeaderEpoch past them).
        // A full disk does not fail the cut: epochs past the end on disk are dropped by a
        // recovery, and the next append writes the history before any data
        // (`epochs_unpersisted`); checkpoints that would claim what the cut removed are
        // removed instead of rewritten.
        if inner.epochs.truncate_from_end(new_end) {
            match self.persist_epochs(&inner) {
                Err(e) if e.is_storage_full() => inner.epochs_unpersisted = true,
                written => written?,
            }
        }
        self.replace_recovery_point(&inner)?;
        // The producers' state as of the new end: what the cut removed is forgotten, and
        // a snapshot past the new end is replaced before anything is appended after it.
        recovery::rebuild_producers(&self.dir, &self.config, self.storage.as_ref(), &mut inner)
            .map_err(open_to_maintenance)?;
        self.replace_producer_snapshot(&inner)?;
        tracing::info!(dir = %self.dir.display(), offset, log_end_offset = new_end, "log truncated");
        Ok(())
    }

    fn truncate_within(&self, inner: &mut Inner, offset: i64) -> Result<(), MaintenanceError> {
        let base = *inner
            .segments
            .range(..=offset)
            .next_back()
            .expect("offset above log start has a segment")
            .0;
        // Later segments go first (newest first, so a crash leaves a prefix).
        let later: Vec<i64> = inner
            .segments
            .range(base + 1..)
            .rev()
            .map(|(b, _)| *b)
            .collect();
        for b in later {
            let seg = inner.segments.remove(&b).expect("listed");
            remove_segment_files(self.storage.as_ref(), &seg)?;
        }
        self.storage
            .sync_dir(&self.dir)
            .map_err(|e| MaintenanceError::io(self.dir.clone(), e))?;
        let seg_end = inner.next_offset.max(offset);
        let seg = inner.segments.get_mut(&base).expect("segment exists");
        seg.ensure_open(self.storage.as_ref(), &self.config, seg_end)
            .map_err(open_to_maintenance)?;
        // Find the first batch that holds `offset` or later; the log then ends where the
        // batch before it ends (the segment base if there is none), not at `offset`:
        // either may lie in a gap compaction left, and a log end inside a gap would make
        // the next roll start a segment where the one before does not end, which recovery
        // takes for a stale segment (every segment ends exactly where the next begins).
        // The walk starts one index entry early, so it sees the batch before the cut.
        let files = seg.files();
        let mut pos = match files.index.floor(offset - base) {
            Some((i, _)) if i > 0 => u64::from(files.index.get(i - 1).position),
            _ => 0,
        };
        let mut new_end = base;
        while pos < seg.size {
            let h = read_header(seg, pos)?;
            if h.last_offset() >= offset {
                break;
            }
            pos += h.total_bytes() as u64;
            new_end = h.next_offset();
        }
        debug_assert!(new_end <= offset, "truncation keeps only batches below it");
        cut_segment(seg, pos, new_end, &self.config)?;
        inner.next_offset = new_end;
        self.bump_generation(inner);
        Ok(())
    }

    /// Deletes every segment and starts an empty one at `offset`.
    fn restart_at(&self, inner: &mut Inner, offset: i64) -> Result<(), MaintenanceError> {
        let bases: Vec<i64> = inner.segments.keys().rev().copied().collect();
        for b in bases {
            let seg = inner.segments.remove(&b).expect("listed");
            remove_segment_files(self.storage.as_ref(), &seg)?;
        }
        let seg = Segment::create(self.storage.as_ref(), &self.dir, offset, &self.config)
            .map_err(open_to_maintenance)?;
        inner.segments.insert(offset, Box::new(seg));
        self.storage
            .sync_dir(&self.dir)
            .map_err(|e| MaintenanceError::io(self.dir.clone(), e))?;
        inner.next_offset = offset;
        self.bump_generation(inner);
        // Through set_log_start, so the epoch history forgets what came before too.
        self.set_log_start(inner, offset)
    }

    fn bump_generation(&self, inner: &mut Inner) {
        inner.generation += 1;
        let mut flush = self.flush_state();
        flush.generation = inner.generation;
        flush.flushed_offset = flush.flushed_offset.min(inner.next_offset);
    }

    /// Makes `offset` the first readable offset (Kafka's DeleteRecords): reads below it
    /// fail from now on, and segments wholly below it are deleted. Returns the new log
    /// start offset.
    pub fn delete_records_before(&self, offset: i64) -> Result<i64, MaintenanceError> {
        let mut inner = self.lock();
        inner
            .check_failed()
            .map_err(|reason| MaintenanceError::Failed { reason })?;
        if offset > inner.next_offset || offset < 0 {
            return Err(MaintenanceError::OffsetOutOfRange {
                offset,
                log_start_offset: inner.log_start_offset,
                log_end_offset: inner.next_offset,
            });
        }
        if offset <= inner.log_start_offset {
            return Ok(inner.log_start_offset);
        }
        self.set_log_start(&mut inner, offset)?;
        // The active segment goes too if it holds nothing at or after `offset`.
        if offset == inner.next_offset && inner.active().base_offset < offset {
            self.roll_locked(&mut inner)?;
        }
        self.delete_segments_below(&mut inner, offset)?;
        Ok(inner.log_start_offset)
    }

    /// Applies retention by age (`now_ms` against each closed segment's newest
    /// timestamp) and by total size, deleting the oldest closed segments first.
    pub fn apply_retention(&self, now_ms: i64) -> Result<RetentionOutcome, MaintenanceError> {
        let mut inner = self.lock();
        inner
            .check_failed()
            .map_err(|reason| MaintenanceError::Failed { reason })?;
        let max_idle = duration_ms(self.config.producer_id_expiration);
        inner.producers.expire(now_ms, max_idle);
        let mut outcome = RetentionOutcome::default();
        let active_base = inner.active().base_offset;
        let mut total: u64 = inner.segments.values().map(|s| s.size).sum();
        let closed: Vec<i64> = inner
            .segments
            .keys()
            .copied()
            .filter(|b| *b != active_base)
            .collect();
        let mut delete_up_to = None;
        for base in closed {
            let seg_end = inner.end_of(base);
            let seg = inner.segments.get_mut(&base).expect("listed");
            let by_size = self
                .config
                .retention_bytes
                .is_some_and(|limit| total.saturating_sub(seg.size) >= limit);
            let by_age = match self.config.retention_age {
                Some(age) => {
                    seg.ensure_open(self.storage.as_ref(), &self.config, seg_end)
                        .map_err(open_to_maintenance)?;
                    let cutoff = now_ms.saturating_sub(duration_ms(age));
                    seg.max_timestamp().is_none_or(|t| t < cutoff)
                }
                None => false,
            };
            if !(by_size || by_age) {
                break;
            }
            total -= seg.size;
            outcome.segments_deleted += 1;
            outcome.bytes_deleted += seg.size;
            delete_up_to = Some(seg_end);
        }
        if let Some(end) = delete_up_to {
            if end > inner.log_start_offset {
                self.set_log_start(&mut inner, end)?;
            }
            self.delete_segments_below(&mut inner, end)?;
            tracing::info!(
                dir = %self.dir.display(),
                segments = outcome.segments_deleted,
                bytes = outcome.bytes_deleted,
                log_start_offset = inner.log_start_offset,
                "retention deleted segments"
            );
        }
        outcome.log_start_offset = inner.log_start_offset;
        Ok(outcome)
    }

    /// Persists a new log start offset; the epoch history forgets what lies before it.
    fn set_log_start(&self, inner: &mut Inner, offset: i64) -> Result<(), MaintenanceError> {
        checkpoint::write_i64(
            self.storage.as_ref(),
            &self.dir,
            Kind::LogStartOffset,
            offset,
        )?;
        inner.log_start_offset = offset;
        if inner.epochs.truncate_from_start(offset) {
            self.persist_epochs(inner)?;
        }
        Ok(())
    }

    /// Deletes closed segments whose every offset is below `offset`. The log start is
    /// persisted first, so a crash part-way leaves segments the next open deletes.
    fn delete_segments_below(
        &self,
        inner: &mut Inner,
        offset: i64,
    ) -> Result<(), MaintenanceError> {
        let active_base = inner.active().base_offset;
        let doomed: Vec<i64> = inner
            .segments
            .keys()
            .copied()
            .filter(|b| *b != active_base && inner.end_of(*b) <= offset)
            .collect();
        for base in doomed {
            let seg = inner.segments.remove(&base).expect("listed");
            remove_segment_files(self.storage.as_ref(), &seg)?;
        }
        // A deleted segment still waiting for its deferred sync needs none now.
        self.prune_rolled(inner);
        Ok(())
    }
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn read_header(seg: &Segment, pos: u64) -> Result<BatchHeader, MaintenanceError> {
    let mut frame = [0u8; HEADER_BYTES];
    let io = |e| MaintenanceError::io(seg.log_path.clone(), e);
    seg.files()
        .file
        .read_exact_at(&mut frame, pos)
        .map_err(io)?;
    batch::framed_len(&frame).map_err(|source| crate::ReadError::Corrupt {
        path: seg.log_path.clone(),
        position: pos,
        source,
    })?;
    Ok(BatchHeader::parse(&frame))
}

/// Cuts a segment's log at `pos` (where offset `new_end` would start) and its indexes to
/// match, and makes it ready to take appends (it may have been a closed segment with
/// trimmed indexes).
fn cut_segment(
    seg: &mut Segment,
    pos: u64,
    new_end: i64,
    config: &crate::LogConfig,
) -> Result<(), MaintenanceError> {
    let path = seg.log_path.clone();
    let io = |p: &std::path::Path| {
        let p = p.to_path_buf();
        move |e| MaintenanceError::io(p, e)
    };
    seg.files().file.set_len(pos).map_err(io(&path))?;
    seg.size = pos;
    let base = seg.base_offset;
    let files = seg.files_mut();
    let keep = (0..files.index.len())
        .take_while(|&i| u64::from(files.index.get(i).position) < pos)
        .count();
    files.index.truncate_entries(keep);
    let keep_time = (0..files.time_index.len())
        .take_while(|&i| base + i64::from(files.time_index.get(i).relative_offset) < new_end)
        .count();
    files.time_index.truncate_entries(keep_time);
    files.reserve_full(config, MaintenanceError::io)?;
    // Restore what indexing had seen: bytes since the last kept entry, and the newest
    // timestamp (the last kept time entry, or a batch between it and the cut).
    let from = files.index.last().map_or(0, |e| u64::from(e.position));
    let mut cursor = IndexCursor::fresh(base);
    if files.index.last().is_some() {
        cursor.bytes_since_entry = pos - from;
    }
    if let Some(t) = files.time_index.last() {
        cursor.max_timestamp = t.timestamp;
        cursor.offset_of_max_timestamp = base + i64::from(t.relative_offset);
    }
    let file = files.file.clone();
    recovery::scan(file.as_ref(), &path, base, from, pos, base, |_, h, _| {
        if h.max_timestamp > cursor.max_timestamp {
            cursor.max_timestamp = h.max_timestamp;
            cursor.offset_of_max_timestamp = h.base_offset;
        }
    })
    .map_err(open_to_maintenance)?;
    seg.cursor = cursor;
    Ok(())
}
