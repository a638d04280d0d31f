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

use std::collections::HashMap;
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::batch::{self, BatchError, BatchHeader, Compression, HEADER_BYTES, LOG_OVERHEAD};
use crate::config::MAX_SEGMENT_BYTES;
use crate::error::{MaintenanceError, OpenError, ReadError};
use crate::index::{Index, OffsetEntry, TimeEntry};
use crate::log::{Inner, Log, open_to_maintenance};
use crate::recovery;
use crate::segment::{self, INDEX_SUFFIX, LOG_SUFFIX, Segment, SegmentFiles, TIME_INDEX_SUFFIX};
use crate::storage::{Storage, StorageFile};

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
/// Segment bytes read per step when compaction scans a segment.
const READ_CHUNK_BYTES: usize = 1 << 20;
/// Rewritten batches are buffered up to this size before each write.
const WRITE_BUFFER_BYTES: usize = 1 << 20;
/// Added to the estimate of a re-compressed batch: codec framing does not shrink with
/// the records removed.
const RECOMPRESSION_SLACK_BYTES: u64 = 64;

/// Suffix state of a segment file being written by compaction (deleted by recovery).
pub(crate) const CLEANED: &str = "cleaned";
/// Suffix state of a complete compacted segment being swapped in (completed by recovery).
pub(crate) const SWAP: &str = "swap";

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

    /// The segments and offsets a pass works from, taken under the log lock.
    fn snapshot(&self) -> Result<Snapshot, MaintenanceError> {
        let mut inner = self.lock();
        inner
            .check_failed()
            .map_err(|reason| MaintenanceError::Failed { reason })?;
        let flushed = self.flush_state().flushed_offset;
        let active_base = inner.active().base_offset;
        let bases: Vec<i64> = inner.segments.keys().copied().collect();
        let mut closed = Vec::new();
        let mut aborted: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
        for &base in &bases {
            self.load_txn_index(&mut inner, base)
                .map_err(open_to_maintenance)?;
            let txn = inner.segments[&base].txn.as_ref().expect("loaded");
            for e in &txn.entries {
                aborted
                    .entry(e.producer_id)
                    .or_default()
                    .push((e.first_offset, e.last_offset));
            }
        }
        // Records of an ongoing transaction are neither cleaned nor let remove older
        // records of their keys (it may yet abort): the pass stops at the first segment
        // that holds the first unstable offset.
        let first_unstable = inner.producers.first_unstable_offset();
        let stable_end = first_unstable.map_or(i64::MAX, |fuo| {
            let holding = inner.segments.range(..=fuo).next_back();
            holding.map_or(fuo, |(base, _)| *base)
        });
        for base in bases.into_iter().filter(|b| *b != active_base) {
            let end = inner.end_of(base);
            let has_aborted = !inner.segments[&base]
                .txn
                .as_ref()
                .expect("loaded")
                .entries
                .is_empty();
            let seg = inner.segments.get_mut(&base).expect("listed");
            let file = seg
                .ensure_open(self.storage.as_ref(), &self.config, end)
                .map_err(open_to_maintenance)?
                .file
                .clone();
            closed.push(SegmentView {
                base,
                end,
                size: seg.size,
                file,
                path: seg.log_path.clone(),
                has_aborted,
            });
        }
        let active = inner.active();
        let active = SegmentView {
            base: active.base_offset,
            end: inner.next_offset,
            size: active.size,
            file: active.files().file.clone(),
            path: active.log_path.clone(),
            has_aborted: false,
        };
        Ok(Snapshot {
            closed,
            active,
            map_end: flushed.min(inner.next_offset).min(stable_end),
            aborted,
            log_end: inner.next_offset,
            generation: inner.generation,
        })
    }

    /// Rewrites one group of neighbouring closed segments into one and swaps it in.
    /// Returns false if the group changed under it (retention or truncation) and was left
    /// alone.
    fn rewrite_group(
        &self,
        snap: &Snapshot,
        members: &[&SegmentView],
        rules: &Rules<'_>,
        outcome: &mut CompactionOutcome,
    ) -> Result<bool, MaintenanceError> {
        let base = members[0].base;
        let mut out = CleanedSegment::create(self.storage.as_ref(), &self.dir, base)?;
        let written = (|| {
            let mut tally = Tally::default();
            for view in members {
                // A marker kept for the previous member's end is not needed: this member
                // follows on inside the same segment.
                out.pending_marker = None;
                let mut last_removed: Option<Bytes> = None;
                let mut reader = BatchReader::new(view);
                while let Some((position, header, bytes)) = reader.next()? {
                    let ((cleaned, _), t) = clean_batch(&bytes, &header, rules, true);
                    tally.add(&t);
                    match cleaned {
                        Cleaned::Unchanged => out.push(&bytes, header)?,
                        Cleaned::Rewritten(b) => out.push(&b, BatchHeader::parse(&b))?,
                        Cleaned::Removed => {
                            last_removed = Some(bytes.slice(..HEADER_BYTES));
                            continue;
                        }
                        Cleaned::Malformed(problem) => {
                            malformed_batch(view, position, &problem);
                            if rules.tombstones {
                                // Records this batch should have lost stay: a tombstone
                                // after them must not go, so leave the group alone.
                                return Ok(None);
                            }
                            out.push(&bytes, header)?;
                        }
                    }
                    last_removed = None;
                }
                out.pending_marker = last_removed.map(|h| empty_batch(&h));
            }
            if let Some(marker) = out.pending_marker.take() {
                out.push(&marker, BatchHeader::parse(&marker))?;
            }
            out.flush()?;
            Ok::<_, MaintenanceError>(Some(tally))
        })();
        let tally = match written {
            Ok(Some(t)) => t,
            Ok(None) => {
                out.discard(self.storage.as_ref());
                return Ok(false);
            }
            Err(e) => {
                out.discard(self.storage.as_ref());
                return Err(e);
            }
        };
        if tally.removed() == 0 && members.len() == 1 {
            out.discard(self.storage.as_ref());
            return Ok(true);
        }
        if out.size > MAX_SEGMENT_BYTES {
            tracing::warn!(segment = %members[0].path.display(), bytes = out.size, "compacted segment would be too large; left as it is");
            out.discard(self.storage.as_ref());
            return Ok(true);
        }
        if let Err(e) = out.seal(&self.config) {
            out.discard(self.storage.as_ref());
            return Err(e);
        }
        let mut inner = self.lock();
        let unchanged = inner.failed.is_none()
            && inner.generation == snap.generation
            && inner.active().base_offset != base
            && members.iter().all(|m| {
                inner
                    .segments
                    .get(&m.base)
                    .is_some_and(|s| s.size == m.size)
            });
        if !unchanged {
            drop(inner);
            out.discard(self.storage.as_ref());
            tracing::debug!(segment = %members[0].path.display(), "segments changed during compaction; not swapped");
            return Ok(false);
        }
        let new_size = out.size;
        self.swap_in(&mut inner, members, out)?;
        drop(inner);
        outcome.segments_rewritten += members.len();
        outcome.segments_written += 1;
        outcome.records_removed += tally.removed();
        outcome.tombstones_removed += tally.tombstones;
        outcome.bytes_before += members.iter().map(|m| m.size).sum::<u64>();
        outcome.bytes_after += new_size;
        Ok(true)
    }

    /// The swap, under the log lock (so no reader opens, and no retention deletes, a file
    /// half way): `.cleaned` -> `.swap` (the log file's rename, made durable, commits the
    /// compaction), delete the old segments (the group's first one first), `.swap` ->
    /// final names, then the segment map. A failure after the commit fails the log: the
    /// next open completes the swap (see [`finish_interrupted`]).
    fn swap_in(
        &self,
        inner: &mut Inner,
        members: &[&SegmentView],
        out: CleanedSegment,
    ) -> Result<(), MaintenanceError> {
        let storage = self.storage.as_ref();
        let (dir, base) = (&self.dir, out.base);
        let rename = |suffix: &str, from: &str, to: Option<&str>| {
            let from = aside_path(dir, base, suffix, from);
            let to = match to {
                Some(state) => aside_path(dir, base, suffix, state),
                None => segment::file_path(dir, base, suffix),
            };
            storage
                .rename(&from, &to)
                .map_err(|e| MaintenanceError::io(from, e))
        };
        // Before the commit: on error the old segments are untouched; remove what we made.
        let prepared = rename(INDEX_SUFFIX, CLEANED, Some(SWAP))
            .and_then(|()| rename(TIME_INDEX_SUFFIX, CLEANED, Some(SWAP)))
            .and_then(|()| rename(LOG_SUFFIX, CLEANED, Some(SWAP)));
        if let Err(e) = prepared {
            drop(out.files);
            for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX, LOG_SUFFIX] {
                for state in [CLEANED, SWAP] {
                    let _ = storage.remove_file(&aside_path(dir, base, suffix, state));
                }
            }
            return Err(e);
        }
        drop(out.files);
        let committed = (|| {
            storage
                .sync_dir(dir)
                .map_err(|e| MaintenanceError::io(dir.clone(), e))?;
            // The group's first segment goes first: while its `.log` exists, recovery
            // knows no old segment of the group is gone yet.
            for m in members {
                for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX, LOG_SUFFIX] {
                    let path = segment::file_path(dir, m.base, suffix);
                    match storage.remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(MaintenanceError::io(path, e)),
                    }
                }
            }
            storage
                .sync_dir(dir)
                .map_err(|e| MaintenanceError::io(dir.clone(), e))?;
            rename(INDEX_SUFFIX, SWAP, None)?;
            rename(TIME_INDEX_SUFFIX, SWAP, None)?;
            rename(LOG_SUFFIX, SWAP, None)?;
            storage
                .sync_dir(dir)
                .map_err(|e| MaintenanceError::io(dir.clone(), e))
        })();
        if let Err(e) = committed {
            inner.failed = Some(format!("compaction swap of segment {base} failed: {e}"));
            return Err(e);
        }
        for m in members {
            inner.segments.remove(&m.base);
        }
        inner
            .segments
            .insert(base, Segment::closed(dir, base, out.size));
        // The rewritten segment was synced before the swap: a deferred sync of a member
        // it replaced is no longer needed.
        self.prune_rolled(inner);
        Ok(())
    }
}

/// A segment as a pass saw it: its offsets `base..end`, `size` bytes of batches, and an
/// open handle (reads through it stay valid after the file is swapped out).
#[derive(Debug)]
struct SegmentView {
    base: i64,
    /// The next segment's base offset (the log end for the active segment).
    end: i64,
    size: u64,
    file: Arc<dyn StorageFile>,
    path: PathBuf,
    /// Its aborted-transaction index has entries: it is rewritten on its own, never
    /// merged, so its `.txnindex` stays its own.
    has_aborted: bool,
}

#[derive(Debug)]
struct Snapshot {
    closed: Vec<SegmentView>,
    active: SegmentView,
    /// The key map reads batches that end at or below this (durable) offset, which is
    /// before the segment holding the first unstable offset.
    map_end: i64,
    /// The aborted transactions' offsets (first, marker) by producer id: their records
    /// never enter the key map (an aborted value must not remove a committed one).
    aborted: HashMap<i64, Vec<(i64, i64)>>,
    log_end: i64,
    generation: u64,
}

/// Key bytes -> highest offset seen. Keys are compared by their bytes, never by a hash
/// alone: a collision must not make one key's record remove another's.
#[derive(Debug)]
struct KeyMap {
    newest: HashMap<Box<[u8]>, i64>,
    bytes: usize,
    limit: usize,
}

impl KeyMap {
    fn new(limit: usize) -> KeyMap {
        KeyMap {
            newest: HashMap::new(),
            bytes: 0,
            limit,
        }
    }

    /// Records `offset` as the newest of `key` (offsets arrive in increasing order).
    /// Returns false, changing nothing, if `key` is new and would pass the memory cap.
    fn offer(&mut self, key: &[u8], offset: i64) -> bool {
        if let Some(newest) = self.newest.get_mut(key) {
            *newest = offset;
            return true;
        }
        let cost = key.len() + KEY_MAP_ENTRY_OVERHEAD_BYTES;
        if self.bytes + cost > self.limit {
            return false;
        }
        self.bytes += cost;
        self.newest.insert(key.into(), offset);
        true
    }

    fn get(&self, key: &[u8]) -> Option<i64> {
        self.newest.get(key).copied()
    }

    fn len(&self) -> usize {
        self.newest.len()
    }
}

#[derive(Debug)]
struct MapPass {
    map: KeyMap,
    /// The map holds every keyed record from the pass's start up to here.
    covered_to: i64,
    full: bool,
    /// A batch's records could not be read (its CRC holds, so a producer sent it so).
    malformed: bool,
}

/// Builds the key map over the batches from `from` (a batch boundary) up to the snapshot's
/// durable end, closed segments then the active one, until the memory cap.
fn build_key_map(snap: &Snapshot, from: i64, limit: usize) -> Result<MapPass, MaintenanceError> {
    let mut pass = MapPass {
        map: KeyMap::new(limit),
        covered_to: snap.map_end,
        full: false,
        malformed: false,
    };
    let segments = snap.closed.iter().chain(std::iter::once(&snap.active));
    for view in segments.filter(|s| s.end > from) {
        let mut reader = BatchReader::new(view);
        while let Some((position, header, bytes)) = reader.next()? {
            if header.base_offset < from || header.is_control() || header.record_count == 0 {
                continue;
            }
            let aborted = header.is_transactional()
                && snap.aborted.get(&header.producer_id).is_some_and(|txns| {
                    txns.iter()
                        .any(|&(first, last)| (first..=last).contains(&header.base_offset))
                });
            if aborted {
                continue;
            }
            if header.next_offset() > snap.map_end {
                return Ok(pass);
            }
            let records = match batch::records_section(&bytes, &header) {
                Ok(r) => r,
                Err(e) => {
                    malformed_batch(view, position, &e.to_string());
                    pass.malformed = true;
                    continue;
                }
            };
            // Offsets first, so a malformed batch adds nothing.
            let mut keyed = Vec::new();
            if let Err(e) = batch::walk_records(&records, &header, |r| {
                if let Some(key) = r.key {
                    keyed.push((key, header.base_offset + i64::from(r.offset_delta)));
                }
            }) {
                malformed_batch(view, position, &e.to_string());
                pass.malformed = true;
                continue;
            }
            for (key, offset) in keyed {
                if !pass.map.offer(key, offset) {
                    pass.full = true;
                    pass.covered_to = header.base_offset;
                    return Ok(pass);
                }
            }
        }
    }
    Ok(pass)
}

fn malformed_batch(view: &SegmentView, position: u64, problem: &str) {
    tracing::warn!(segment = %view.path.display(), position, problem, "compaction keeps a batch whose records cannot be read");
}

/// What decides each record's fate in a pass.
#[derive(Debug)]
struct Rules<'a> {
    map: &'a KeyMap,
    /// See [`CompactionState::clean_through`].
    clean_through: i64,
    /// Tombstones in batches whose `max_timestamp` is below this may go.
    horizon: i64,
    retention_ms: i64,
    /// Tombstone removal is allowed in this pass (so far).
    tombstones: bool,
    /// The batch that ends here is the log's last: kept untouched.
    log_end: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Keep,
    /// A tombstone that goes once its batch is old enough (at `expires_at_ms`).
    KeepTombstone {
        expires_at_ms: i64,
    },
    Superseded,
    ExpiredTombstone,
}

impl Rules<'_> {
    fn fate(&self, offset: i64, key: Option<&[u8]>, tombstone: bool, max_timestamp: i64) -> Fate {
        let Some(key) = key else {
            return Fate::Keep;
        };
        let newest = self.map.get(key);
        if newest.is_some_and(|n| offset < n) {
            return Fate::Superseded;
        }
        // A tombstone may go once nothing older of its key is left below it: it is the
        // newest the map knows (this pass removes every older copy, oldest segments
        // first), or it lies below `clean_through` (an earlier pass did).
        let removable = tombstone
            && self.tombstones
            && match newest {
                Some(n) => n == offset,
                None => offset < self.clean_through,
            };
        if !removable {
            Fate::Keep
        } else if max_timestamp < self.horizon {
            Fate::ExpiredTombstone
        } else {
            Fate::KeepTombstone {
                expires_at_ms: max_timestamp
                    .saturating_add(self.retention_ms)
                    .saturating_add(1),
            }
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    superseded: u64,
    tombstones: u64,
    next_tombstone_expiry_ms: Option<i64>,
}

impl Tally {
    fn removed(&self) -> u64 {
        self.superseded + self.tombstones
    }

    fn add(&mut self, other: &Tally) {
        self.superseded += other.superseded;
        self.tombstones += other.tombstones;
        self.next_tombstone_expiry_ms = min_option(
            self.next_tombstone_expiry_ms,
            other.next_tombstone_expiry_ms,
        );
    }
}

fn min_option(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[derive(Debug)]
enum Cleaned {
    /// Kept byte for byte.
    Unchanged,
    /// Some records removed: the re-encoded batch (empty when only surveying).
    Rewritten(Vec<u8>),
    /// Every record removed (or an empty batch).
    Removed,
    /// Its records could not be read: kept byte for byte.
    Malformed(String),
}

/// Decides a batch's records and, with `build`, re-encodes the survivors: same base
/// offset, offset deltas, timestamps, headers, producer fields, leader epoch,
/// `last_offset_delta` and codec; only `record_count`, the length and the CRC change.
/// Returns the size the result will have (estimated for re-compressed batches).
fn clean_batch(
    batch: &Bytes,
    header: &BatchHeader,
    rules: &Rules<'_>,
    build: bool,
) -> ((Cleaned, u64), Tally) {
    let mut tally = Tally::default();
    let unchanged = (Cleaned::Unchanged, batch.len() as u64);
    if header.is_control() || header.next_offset() == rules.log_end {
        return (unchanged, tally);
    }
    if header.record_count == 0 {
        // Only compaction writes empty batches, to end a segment; one is written again
        // where a rewritten group still needs it. Dropping one removes no record, so it
        // alone is no reason to rewrite a segment (where it is, it is still needed).
        return ((Cleaned::Removed, 0), tally);
    }
    let records = match batch::records_section(batch, header) {
        Ok(r) => r,
        Err(e) => {
            return (
                (Cleaned::Malformed(e.to_string()), batch.len() as u64),
                tally,
            );
        }
    };
    let mut kept: Vec<Range<usize>> = Vec::new();
    let (mut kept_bytes, mut count) = (0usize, 0i32);
    let walked = batch::walk_records(&records, header, |r| {
        let offset = header.base_offset + i64::from(r.offset_delta);
        match rules.fate(offset, r.key, r.is_tombstone, header.max_timestamp) {
            Fate::Superseded => tally.superseded += 1,
            Fate::ExpiredTombstone => tally.tombstones += 1,
            fate => {
                if let Fate::KeepTombstone { expires_at_ms } = fate {
                    tally.next_tombstone_expiry_ms =
                        min_option(tally.next_tombstone_expiry_ms, Some(expires_at_ms));
                }
                kept_bytes += r.span.len();
                count += 1;
                kept.push(r.span);
            }
        }
    });
    if let Err(e) = walked {
        return (
            (Cleaned::Malformed(e.to_string()), batch.len() as u64),
            Tally::default(),
        );
    }
    if tally.removed() == 0 {
        return (unchanged, tally);
    }
    if count == 0 {
        return ((Cleaned::Removed, 0), tally);
    }
    let codec = header.compression().unwrap_or(Compression::None);
    let estimate = if codec == Compression::None {
        (HEADER_BYTES + kept_bytes) as u64
    } else {
        let body = (batch.len() - HEADER_BYTES) as u64;
        HEADER_BYTES as u64
            + body * kept_bytes as u64 / records.len().max(1) as u64
            + RECOMPRESSION_SLACK_BYTES
    };
    if !build {
        return ((Cleaned::Rewritten(Vec::new()), estimate), tally);
    }
    match rebuild_batch(batch, codec, &records, &kept, count) {
        Ok(b) => {
            let len = b.len() as u64;
            ((Cleaned::Rewritten(b), len), tally)
        }
        Err(e) => (
            (Cleaned::Malformed(e.to_string()), batch.len() as u64),
            Tally::default(),
        ),
    }
}

/// A batch holding the records of `original` at `kept` (byte ranges of its decompressed
/// records section), re-compressed with its codec, checked before it is returned.
fn rebuild_batch(
    original: &[u8],
    codec: Compression,
    records: &[u8],
    kept: &[Range<usize>],
    count: i32,
) -> Result<Vec<u8>, BatchError> {
    let mut raw = Vec::with_capacity(kept.iter().map(|r| r.len()).sum());
    for r in kept {
        raw.extend_from_slice(&records[r.clone()]);
    }
    let mut out = Vec::with_capacity(HEADER_BYTES + raw.len());
    out.extend_from_slice(&original[..HEADER_BYTES]);
    if codec == Compression::None {
        out.extend_from_slice(&raw);
    } else {
        codec.compress(&raw, &mut out)?;
    }
    if out.len() > batch::MAX_BATCH_BYTES {
        return Err(BatchError::TooLarge {
            bytes: out.len(),
            max: batch::MAX_BATCH_BYTES,
        });
    }
    batch::reseal(&mut out, count);
    // Kept on in release builds: a batch is checked before it is written.
    batch::validate(&out)?;
    debug_assert!(
        batch::decode_records(&Bytes::from(out.clone())).is_ok_and(|r| r.len() == count as usize),
        "compaction built a batch that does not decode"
    );
    Ok(out)
}

/// An empty batch in place of the removed batch whose header is `header`: same offsets
/// (so its segment still ends where the next begins), timestamps and producer fields,
/// no records, uncompressed (as Kafka writes empty batches).
fn empty_batch(header: &[u8]) -> Vec<u8> {
    let mut out = header[..HEADER_BYTES].to_vec();
    batch::set_compression(&mut out, Compression::None);
    batch::reseal(&mut out, 0);
    debug_assert!(batch::validate(&out).is_ok(), "empty batch is valid");
    out
}

/// Reads a segment's batches in order, checking each as reads do (framing, CRC, offsets
/// increasing and within the segment).
struct BatchReader<'a> {
    view: &'a SegmentView,
    pos: u64,
    expected: i64,
    chunk: Bytes,
    chunk_start: u64,
}

impl<'a> BatchReader<'a> {
    fn new(view: &'a SegmentView) -> Self {
        BatchReader {
            view,
            pos: 0,
            expected: view.base,
            chunk: Bytes::new(),
            chunk_start: 0,
        }
    }

    fn holds(&self, pos: u64, len: usize) -> bool {
        pos >= self.chunk_start && pos + len as u64 <= self.chunk_start + self.chunk.len() as u64
    }

    fn fill(&mut self, pos: u64, want: usize) -> Result<(), MaintenanceError> {
        let n = (self.view.size - pos).min(want as u64) as usize;
        let mut buf = BytesMut::zeroed(n);
        self.view
            .file
            .read_exact_at(&mut buf, pos)
            .map_err(|e| MaintenanceError::io(self.view.path.clone(), e))?;
        self.chunk = buf.freeze();
        self.chunk_start = pos;
        Ok(())
    }

    /// The next batch: its position, header and bytes.
    fn next(&mut self) -> Result<Option<(u64, BatchHeader, Bytes)>, MaintenanceError> {
        let (pos, end) = (self.pos, self.view.size);
        if pos >= end {
            return Ok(None);
        }
        let corrupt = |source| {
            MaintenanceError::Read(ReadError::Corrupt {
                path: self.view.path.clone(),
                position: pos,
                source,
            })
        };
        if !self.holds(pos, LOG_OVERHEAD) {
            self.fill(pos, READ_CHUNK_BYTES)?;
        }
        let at = (pos - self.chunk_start) as usize;
        let len = batch::framed_len(&self.chunk[at..]).map_err(corrupt)?;
        if pos + len as u64 > end {
            let available = (end - pos) as usize;
            return Err(corrupt(BatchError::Truncated {
                needed: len,
                available,
            }));
        }
        if !self.holds(pos, len) {
            self.fill(pos, len.max(READ_CHUNK_BYTES))?;
        }
        let at = (pos - self.chunk_start) as usize;
        let bytes = self.chunk.slice(at..at + len);
        let header = batch::check_stored(&bytes).map_err(corrupt)?;
        if header.base_offset < self.expected || header.last_offset() >= self.view.end {
            return Err(corrupt(BatchError::UnexpectedBaseOffset {
                found: header.base_offset,
                expected: self.expected,
            }));
        }
        self.expected = header.next_offset();
        self.pos += len as u64;
        Ok(Some((pos, header, bytes)))
    }
}

/// What surveying the cleanable segments found.
#[derive(Debug, Default)]
struct Survey {
    segments: Vec<SegmentSurvey>,
    malformed: bool,
    /// Base offset of the log's last batch, if it lies in a closed segment.
    last_batch_base: Option<i64>,
    next_tombstone_expiry_ms: Option<i64>,
}

#[derive(Debug, Clone, Copy)]
struct SegmentSurvey {
    /// Records that would go.
    removable: u64,
    /// Estimated size after compaction.
    estimated_bytes: u64,
}

/// Decides every record of the cleanable segments without writing anything, to find what
/// is worth rewriting and how segments can be grouped.
fn survey(cleanable: &[&SegmentView], rules: &Rules<'_>) -> Result<Survey, MaintenanceError> {
    let mut survey = Survey::default();
    for view in cleanable {
        let mut seg = SegmentSurvey {
            removable: 0,
            estimated_bytes: 0,
        };
        let mut reader = BatchReader::new(view);
        while let Some((position, header, bytes)) = reader.next()? {
            if header.next_offset() == rules.log_end {
                survey.last_batch_base = Some(header.base_offset);
            }
            let ((cleaned, size), tally) = clean_batch(&bytes, &header, rules, false);
            if let Cleaned::Malformed(problem) = &cleaned {
                malformed_batch(view, position, problem);
                survey.malformed = true;
            }
            seg.removable += tally.removed();
            seg.estimated_bytes += size;
            survey.next_tombstone_expiry_ms = min_option(
                survey.next_tombstone_expiry_ms,
                tally.next_tombstone_expiry_ms,
            );
        }
        survey.segments.push(seg);
    }
    Ok(survey)
}

/// Groups neighbouring segments whose compacted sizes together fit `segment_bytes` (and
/// whose offsets fit 32-bit relative offsets) into one rewrite each. A group is rewritten
/// if it removes something or merges segments. Returns indexes into `cleanable`.
fn plan_groups(
    cleanable: &[&SegmentView],
    surveys: &[SegmentSurvey],
    segment_bytes: u64,
) -> Vec<Vec<usize>> {
    let mut groups = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let (mut estimated, mut removable) = (0u64, 0u64);
    let mut close = |current: &mut Vec<usize>, removable: u64| {
        if removable > 0 || current.len() > 1 {
            groups.push(std::mem::take(current));
        }
        current.clear();
    };
    for (i, (view, s)) in cleanable.iter().zip(surveys).enumerate() {
        if view.size == 0 {
            close(&mut current, removable);
            (estimated, removable) = (0, 0);
            continue;
        }
        if view.has_aborted {
            close(&mut current, removable);
            current.push(i);
            close(&mut current, s.removable);
            (estimated, removable) = (0, 0);
            continue;
        }
        let fits = current.first().is_some_and(|&first| {
            estimated + s.estimated_bytes + HEADER_BYTES as u64 <= segment_bytes
                && view.end - cleanable[first].base <= i64::from(u32::MAX)
        });
        if !fits {
            close(&mut current, removable);
            (estimated, removable) = (0, 0);
        }
        current.push(i);
        estimated += s.estimated_bytes;
        removable += s.removable;
    }
    close(&mut current, removable);
    groups
}

/// `<dir>/<base>.<suffix>.<state>`: a file compaction keeps aside (`cleaned`, `swap`).
fn aside_path(dir: &Path, base: i64, suffix: &str, state: &str) -> PathBuf {
    dir.join(format!("{base:020}.{suffix}.{state}"))
}

/// The segment a group is rewritten into, under its `.cleaned` names.
struct CleanedSegment {
    base: i64,
    path: PathBuf,
    file: Arc<dyn StorageFile>,
    /// Bytes written or buffered.
    size: u64,
    buf: Vec<u8>,
    /// Bytes handed to the file.
    flushed: u64,
    batches: Vec<(u64, BatchHeader)>,
    /// The empty batch that must end the segment if nothing follows the last member's
    /// removed last batch.
    pending_marker: Option<Vec<u8>>,
    /// The indexes, once sealed; dropped (unmapped) before the swap.
    files: Option<SegmentFiles>,
}

impl CleanedSegment {
    fn create(storage: &dyn Storage, dir: &Path, base: i64) -> Result<Self, MaintenanceError> {
        let path = aside_path(dir, base, LOG_SUFFIX, CLEANED);
        let file = storage
            .open(&path, true)
            .map_err(|e| MaintenanceError::io(path.clone(), e))?;
        file.set_len(0)
            .map_err(|e| MaintenanceError::io(path.clone(), e))?;
        Ok(CleanedSegment {
            base,
            path,
            file,
            size: 0,
            buf: Vec::new(),
            flushed: 0,
            batches: Vec::new(),
            pending_marker: None,
            files: None,
        })
    }

    fn push(&mut self, batch: &[u8], header: BatchHeader) -> Result<(), MaintenanceError> {
        self.batches.push((self.size, header));
        self.size += batch.len() as u64;
        self.buf.extend_from_slice(batch);
        if self.buf.len() >= WRITE_BUFFER_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), MaintenanceError> {
        if !self.buf.is_empty() {
            self.file
                .write_all_at(&self.buf, self.flushed)
                .map_err(|e| MaintenanceError::io(self.path.clone(), e))?;
            self.flushed += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }

    /// Syncs the log file and writes its indexes (built as appends build them), sealed
    /// and synced, under their `.cleaned` names.
    fn seal(&mut self, config: &crate::LogConfig) -> Result<(), MaintenanceError> {
        self.file
            .sync_data()
            .map_err(|e| MaintenanceError::io(self.path.clone(), e))?;
        let dir = self
            .path
            .parent()
            .expect("segment files live in a directory");
        let entries = self.batches.len() as u64 + 2;
        let index_path = aside_path(dir, self.base, INDEX_SUFFIX, CLEANED);
        let time_path = aside_path(dir, self.base, TIME_INDEX_SUFFIX, CLEANED);
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |e| MaintenanceError::io(p, e)
        };
        for p in [&index_path, &time_path] {
            match fs::remove_file(p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(MaintenanceError::io(p.clone(), e)),
            }
        }
        let index = Index::<OffsetEntry>::open(&index_path, Some(entries * 8), Some(0))
            .map_err(io(&index_path))?;
        let time_index = Index::<TimeEntry>::open(&time_path, Some(entries * 12), Some(0))
            .map_err(io(&time_path))?;
        let mut seg = Segment::closed(dir, self.base, self.size);
        seg.files = Some(SegmentFiles {
            file: self.file.clone(),
            index,
            time_index,
        });
        for (position, header) in &self.batches {
            seg.index_batch(*position, header, config);
        }
        recovery::seal(&mut seg).map_err(open_to_maintenance)?;
        self.files = seg.files.take();
        Ok(())
    }

    /// Removes the files of a rewrite that will not be swapped in.
    fn discard(self, storage: &dyn Storage) {
        let dir = self
            .path
            .parent()
            .expect("segment files live in a directory");
        let (dir, base) = (dir.to_path_buf(), self.base);
        drop(self.files);
        for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX, LOG_SUFFIX] {
            let path = aside_path(&dir, base, suffix, CLEANED);
            match storage.remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "could not remove an abandoned compaction file; the next open will")
                }
            }
        }
    }
}

/// Completes or undoes a compaction a crash interrupted, before a log directory is
/// opened (`names` is its listing). `.cleaned` files are deleted: their rewrite had not
/// committed and the old segments are intact. A `<base>.log.swap` had committed: the old
/// segments it replaces (every `.log` whose base lies between `base` and the end of the
/// swap file's last batch) are deleted, then the `.swap` files are renamed to their final
/// names. Returns true if anything was changed (the caller lists the directory again).
pub(crate) fn finish_interrupted(
    dir: &Path,
    storage: &dyn Storage,
    names: &[String],
) -> Result<bool, OpenError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| OpenError::io(p, e)
    };
    let remove = |path: &Path| match storage.remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(OpenError::io(path.to_path_buf(), e)),
    };
    let mut changed = false;
    let mut log_swaps = Vec::new();
    let mut index_swaps = Vec::new();
    for name in names {
        let Some((base, suffix, state)) = parse_aside_name(name) else {
            continue;
        };
        match (suffix, state) {
            (_, CLEANED) => {
                tracing::info!(file = name, "removing an unfinished compaction file");
                remove(&dir.join(name))?;
                changed = true;
            }
            (LOG_SUFFIX, SWAP) => log_swaps.push(base),
            _ => index_swaps.push((base, name)),
        }
    }
    // Index files without their log's `.swap` belong to a rewrite that had not committed
    // (or whose log is already in place): indexes are rebuilt when missing.
    for (base, name) in index_swaps {
        if !log_swaps.contains(&base) {
            remove(&dir.join(name))?;
            changed = true;
        }
    }
    let segments: Vec<i64> = names
        .iter()
        .filter_map(|n| segment::parse_log_name(n))
        .collect();
    log_swaps.sort_unstable();
    for base in log_swaps {
        changed = true;
        let swap = aside_path(dir, base, LOG_SUFFIX, SWAP);
        let file = storage.open(&swap, false).map_err(io(&swap))?;
        let size = file.size().map_err(io(&swap))?;
        let scanned = recovery::scan(file.as_ref(), &swap, base, 0, size, base, |_, _, _| {})?;
        drop(file);
        if let Some(problem) = &scanned.problem {
            if segments.contains(&base) {
                // The swap file was synced before it was named `.swap`, so this is damage
                // at rest; the old segments are all still there (the first is deleted
                // first), so keep them.
                tracing::error!(file = %swap.display(), problem, "damaged compacted segment; keeping the segments it was to replace");
                for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX, LOG_SUFFIX] {
                    remove(&aside_path(dir, base, suffix, SWAP))?;
                }
                continue;
            }
            tracing::error!(file = %swap.display(), problem, "damaged compacted segment; completing its swap");
        }
        let end = scanned.next_offset.unwrap_or(base);
        tracing::info!(
            base_offset = base,
            end_offset = end,
            "completing an interrupted compaction swap"
        );
        for old in segments
            .iter()
            .filter(|b| (base..end.max(base + 1)).contains(*b))
        {
            for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX, LOG_SUFFIX] {
                remove(&segment::file_path(dir, *old, suffix))?;
            }
        }
        storage.sync_dir(dir).map_err(io(dir))?;
        for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX, LOG_SUFFIX] {
            let from = aside_path(dir, base, suffix, SWAP);
            if from.exists() {
                let to = segment::file_path(dir, base, suffix);
                storage.rename(&from, &to).map_err(io(&from))?;
            }
        }
        storage.sync_dir(dir).map_err(io(dir))?;
    }
    Ok(changed)
}

/// Parses `<20-digit base>.<log|index|timeindex>.<cleaned|swap>`.
fn parse_aside_name(name: &str) -> Option<(i64, &'static str, &'static str)> {
    let (rest, state) = name.rsplit_once('.')?;
    let state = [CLEANED, SWAP].into_iter().find(|s| *s == state)?;
    let (stem, suffix) = rest.rsplit_once('.')?;
    let suffix = [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX]
        .into_iter()
        .find(|s| *s == suffix)?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((stem.parse().ok()?, suffix, state))
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{Header, Record, RecordBatchBuilder, decode_records};

    fn batch(records: &[(Option<&str>, Option<&str>)], codec: Compression) -> Bytes {
        let mut b = RecordBatchBuilder::new(codec);
        for (i, (k, v)) in records.iter().enumerate() {
            b.push(&Record {
                key: k.map(|k| Bytes::from(k.to_string())),
                value: v.map(|v| Bytes::from(v.to_string())),
                headers: vec![Header {
                    key: "h".into(),
                    value: Some(Bytes::from(format!("{i}"))),
                }],
                timestamp: 1000 + i as i64 * 7,
            });
        }
        let mut bytes = b.build().unwrap();
        batch::patch_offset_and_epoch(&mut bytes, 100, 3);
        bytes.freeze()
    }

    #[test]
    fn a_rebuilt_batch_keeps_offsets_timestamps_headers_and_fields() {
        let records = [
            (Some("a"), Some("1")),
            (Some("b"), Some("2")),
            (Some("c"), Some("3")),
        ];
        for codec in Compression::ALL {
            let b = batch(&records, codec);
            let header = batch::check_stored(&b).unwrap();
            let section = batch::records_section(&b, &header).unwrap();
            let mut spans = Vec::new();
            batch::walk_records(&section, &header, |r| spans.push(r.span)).unwrap();
            let kept = [spans[0].clone(), spans[2].clone()];
            let rebuilt = Bytes::from(rebuild_batch(&b, codec, &section, &kept, 2).unwrap());
            let h = batch::check_stored(&rebuilt).unwrap();
            assert_eq!(h.compression().unwrap(), codec);
            assert_eq!(
                (h.base_offset, h.last_offset_delta, h.partition_leader_epoch),
                (100, 2, 3)
            );
            assert_eq!(
                (
                    h.base_timestamp,
                    h.max_timestamp,
                    h.producer_id,
                    h.record_count
                ),
                (
                    header.base_timestamp,
                    header.max_timestamp,
                    header.producer_id,
                    2
                )
            );
            let before = decode_records(&b).unwrap();
            let after = decode_records(&rebuilt).unwrap();
            assert_eq!(after, vec![before[0].clone(), before[2].clone()], "{codec}");
        }
    }

    #[test]
    fn an_empty_batch_keeps_the_offsets_of_the_one_it_replaces() {
        let b = batch(
            &[(Some("a"), Some("1")), (Some("b"), None)],
            Compression::Zstd,
        );
        let empty = Bytes::from(empty_batch(&b));
        let h = batch::validate(&empty).unwrap();
        assert_eq!(
            (h.base_offset, h.last_offset(), h.record_count),
            (100, 101, 0)
        );
        assert_eq!(h.compression().unwrap(), Compression::None);
        assert!(decode_records(&empty).unwrap().is_empty());
    }

    #[test]
    fn the_key_map_compares_keys_and_keeps_to_its_cap() {
        let mut map = KeyMap::new(2 * (KEY_MAP_ENTRY_OVERHEAD_BYTES + 1));
        assert!(map.offer(b"a", 1));
        assert!(map.offer(b"b", 2));
        assert!(map.offer(b"a", 3), "a known key always fits");
        assert!(!map.offer(b"c", 4), "a third key passes the cap");
        assert_eq!(
            (map.get(b"a"), map.get(b"b"), map.get(b"c")),
            (Some(3), Some(2), None)
        );
    }

    #[test]
    fn aside_names_parse() {
        assert_eq!(
            parse_aside_name("00000000000000000042.log.swap"),
            Some((42, LOG_SUFFIX, SWAP))
        );
        assert_eq!(
            parse_aside_name("00000000000000000042.timeindex.cleaned"),
            Some((42, TIME_INDEX_SUFFIX, CLEANED))
        );
        assert_eq!(parse_aside_name("00000000000000000042.log"), None);
        assert_eq!(parse_aside_name("42.log.swap"), None);
        assert_eq!(parse_aside_name("recovery-point.checkpoint.tmp"), None);
    }
}
