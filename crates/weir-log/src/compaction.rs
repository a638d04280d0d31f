//! Log compaction (Kafka's `cleanup.policy=compact`): closed segments are rewritten so
//! that each key keeps only its record with the highest offset, and a tombstone (a key
//! with a null value) only until `delete.retention.ms` has passed. Offsets never change;
//! what compaction removes leaves gaps in them.
//!
//! A pass: (1) sync the log, so everything the key map sees is durable; (2) build the key
//! map (key bytes -> newest offset) from the first offset not yet compacted to the log end,
//! active segment included, up to [`MAX_KEY_MAP_BYTES`]; (3) survey the closed segments the
//! map covers and group neighbours whose compacted sizes fit one segment; (4) rewrite each
//! group, oldest first, into `<base>.log.cleaned` (+ indexes), without the log lock; (5)
//! under the log lock, check the group is still there and swap the files in by renames
//! (`.cleaned` -> `.swap` -> final). `docs/storage-format.md` ("Compaction") has the rules,
//! the swap protocol and what recovery does with files a crash left behind
//! ([`finish_interrupted`]).
//!
//! This file holds the pass itself ([`Log::compact`]), what it reports and what it
//! remembers between passes; each step has its own file under `compaction/`: the
//! snapshot it works from (`snapshot.rs`), the segment reader every step uses
//! (`batch_reader.rs`), the key map (`key_map.rs`), the rules each record is decided by
//! and the re-encoding of batches (`cleaning.rs`), the survey and grouping (`plan.rs`),
//! the rewrite (`rewrite.rs`) and the swap with its crash recovery (`swap.rs`).

use std::time::Duration;

use crate::error::MaintenanceError;
use crate::log::Log;

mod batch_reader;
mod cleaning;
mod key_map;
mod plan;
mod rewrite;
mod snapshot;
mod swap;

use cleaning::Rules;
use key_map::build_key_map;
use plan::{plan_groups, survey};
use snapshot::SegmentView;
pub(crate) use swap::finish_interrupted;

/// Most memory the key map of one compaction pass may take, counting each key's bytes
/// plus [`KEY_MAP_ENTRY_OVERHEAD_BYTES`]. When the keys from the first uncompacted offset
/// on do not fit, the pass covers the prefix that does (see `docs/storage-format.md`)
/// and the next pass goes on from there.
pub const MAX_KEY_MAP_BYTES: usize = 64 * 1024 * 1024;
/// What one key costs in the map besides its own bytes (the boxed slice, the offset and
/// the hash table's slot), so a map of many tiny keys is bounded too.
pub const KEY_MAP_ENTRY_OVERHEAD_BYTES: usize = 48;
/// [`Log::compaction_due`] once at least this share of the closed segments' bytes lies at
/// or after the first uncompacted offset (Kafka's `min.cleanable.dirty.ratio` default).
pub const MIN_CLEANABLE_DIRTY_RATIO: f64 = 0.5;

/// What a compaction pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionOutcome {
    /// Closed segments replaced by rewritten ones (several neighbours may become one).
    pub segments_rewritten: usize,
    /// Segments written in their place.
    pub segments_written: usize,
    /// Records removed, tombstones included.
    pub records_removed: u64,
    /// Tombstones removed (past `delete.retention.ms`, nothing older left for the key).
    pub tombstones_removed: u64,
    /// Bytes of the segments that were rewritten, before.
    pub bytes_before: u64,
    /// Bytes of the segments written in their place.
    pub bytes_after: u64,
    /// Distinct keys in the key map.
    pub keys: usize,
    /// The key map reached its memory cap before the log end: only the covered prefix
    /// was compacted this pass.
    pub key_map_full: bool,
}

/// What compaction remembers between passes (in memory only: after a restart the first
/// pass starts from the log start again, which is correct, only slower).
#[derive(Debug, Default)]
pub(crate) struct CompactionState {
    /// `(offset, truncation generation)`: for every record below `offset`, every older
    /// record of its key has been removed (a completed pass covered it). A truncation
    /// since (another generation) voids it.
    clean_through: Option<(i64, u64)>,
    /// When the earliest tombstone that was kept only for its age may go.
    next_tombstone_expiry_ms: Option<i64>,
}

impl Log {
    /// True if a compaction pass is worth running now: none has run since the log was
    /// opened, or at least [`MIN_CLEANABLE_DIRTY_RATIO`] of the closed segments' bytes
    /// are not compacted yet, or a tombstone kept for its age may now go.
    pub fn compaction_due(&self, now_ms: i64) -> bool {
        let state = self.compaction_state();
        let inner = self.lock();
        if inner.failed.is_some() {
            return false;
        }
        let active_base = inner.active().base_offset;
        let clean_through = state
            .clean_through
            .filter(|(_, generation)| *generation == inner.generation)
            .map(|(offset, _)| offset);
        let (mut total, mut dirty) = (0u64, 0u64);
        for seg in inner.segments.values() {
            if seg.base_offset == active_base {
                continue;
            }
            total += seg.size;
            // The segment holding the boundary counts as clean: after a pass that is the
            // log's last batch or a capped pass's end, and what lies after it in that
            // segment is compacted with the next dirty segments.
            if clean_through.is_none_or(|d| seg.base_offset >= d) {
                dirty += seg.size;
            }
        }
        if total == 0 {
            return false;
        }
        clean_through.is_none()
            || dirty as f64 >= MIN_CLEANABLE_DIRTY_RATIO * total as f64
            || state.next_tombstone_expiry_ms.is_some_and(|t| t <= now_ms)
    }

    /// Compacts the log's closed segments: for each key only the record with the highest
    /// offset anywhere in the log (the active segment included) is kept; a tombstone is
    /// kept until its batch's `max_timestamp` is older than `now_ms - delete_retention`,
    /// then removed with every older record of its key. Records without a key, control
    /// batches and the log's last batch are kept as they are. Offsets never change; the
    /// active segment is not touched. Appends and reads go on while it runs.
    pub fn compact(
        &self,
        now_ms: i64,
        delete_retention: Duration,
    ) -> Result<CompactionOutcome, MaintenanceError> {
        self.compact_with_key_map_limit(now_ms, delete_retention, MAX_KEY_MAP_BYTES)
    }

    /// [`Log::compact`] with the key map capped at `key_map_bytes` instead of
    /// [`MAX_KEY_MAP_BYTES`].
    pub fn compact_with_key_map_limit(
        &self,
        now_ms: i64,
        delete_retention: Duration,
        key_map_bytes: usize,
    ) -> Result<CompactionOutcome, MaintenanceError> {
        // One pass at a time; lock order: compaction before inner.
        let mut state = self.compaction_state();
        // The map must only hold records that survive a crash: a newer value lost from
        // an unsynced tail must not have removed the older one.
        self.flush()?;
        let snap = self.snapshot()?;
        let mut outcome = CompactionOutcome::default();
        let Some(first) = snap.closed.first() else {
            return Ok(outcome);
        };
        let clean_through = state
            .clean_through
            .filter(|(_, generation)| *generation == snap.generation)
            .map_or(first.base, |(offset, _)| offset)
            .max(first.base);
        let pass = build_key_map(&snap, clean_through, key_map_bytes)?;
        outcome.keys = pass.map.len();
        outcome.key_map_full = pass.full;
        if pass.full {
            tracing::warn!(
                dir = %self.dir.display(),
                keys = pass.map.len(),
                key_map_bytes,
                covered_to = pass.covered_to,
                "compaction key map full: compacting the prefix it covers"
            );
        }
        let mut rules = Rules {
            map: &pass.map,
            clean_through,
            horizon: now_ms.saturating_sub(duration_ms(delete_retention)),
            retention_ms: duration_ms(delete_retention),
            tombstones: !pass.malformed,
            log_end: snap.log_end,
        };
        let cleanable: Vec<&SegmentView> = snap
            .closed
            .iter()
            .take_while(|s| s.base < pass.covered_to)
            .collect();
        let survey = survey(&cleanable, &rules)?;
        if survey.malformed {
            // A batch whose records cannot be read may hold older copies of any key.
            rules.tombstones = false;
        }
        let groups = plan_groups(&cleanable, &survey.segments, self.config.segment_bytes);
        let mut complete = !pass.malformed && !survey.malformed;
        for group in &groups {
            let members: Vec<&SegmentView> = group.iter().map(|&i| cleanable[i]).collect();
            if !self.rewrite_group(&snap, &members, &rules, &mut outcome)? {
                // Retention or a truncation took part of it: older copies it held may
                // remain, so no tombstone after it may go in this pass.
                rules.tombstones = false;
                complete = false;
            }
        }
        if complete {
            let through = pass
                .covered_to
                .min(snap.active.base)
                .min(survey.last_batch_base.unwrap_or(i64::MAX));
            state.clean_through = Some((through, snap.generation));
        }
        state.next_tombstone_expiry_ms = survey.next_tombstone_expiry_ms;
        if outcome.records_removed > 0 || outcome.segments_rewritten > 0 {
            tracing::info!(
                dir = %self.dir.display(),
                segments_rewritten = outcome.segments_rewritten,
                segments_written = outcome.segments_written,
                records_removed = outcome.records_removed,
                tombstones_removed = outcome.tombstones_removed,
                bytes_before = outcome.bytes_before,
                bytes_after = outcome.bytes_after,
                "log compacted"
            );
        }
        Ok(outcome)
    }

    fn compaction_state(&self) -> std::sync::MutexGuard<'_, CompactionState> {
        self.compaction.lock().expect("compaction mutex poisoned")
    }
}

fn malformed_batch(view: &SegmentView, position: u64, problem: &str) {
    tracing::warn!(segment = %view.path.display(), position, problem, "compaction keeps a batch whose records cannot be read");
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
