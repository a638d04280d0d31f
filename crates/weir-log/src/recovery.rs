//! Opening a log and crash recovery: finishing an interrupted compaction, listing
//! segments, scanning batches from a known-good position, checking each batch's length,
//! CRC and offsets, cutting a torn tail, and rebuilding indexes.
//!
//! Only what was not known to be flushed is scanned: the recovery checkpoint names the
//! segment, file position and index entry counts that were on disk at the last
//! checkpoint, so open time depends on the unflushed tail, not on the size of the log.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Instant;

use crate::batch::{self, BatchHeader, LOG_OVERHEAD, MAX_BATCH_BYTES};
use crate::checkpoint::{self, Kind, PayloadReader};
use crate::compaction;
use crate::config::LogConfig;
use crate::epoch::EpochHistory;
use crate::error::{MaintenanceError, OpenError};
use crate::index::Index;
use crate::log::{Inner, remove_segment_files};
use crate::producers::ProducerStates;
use crate::segment::{self, IndexCursor, Segment};
use crate::storage::StorageFile;
use crate::storage::{DIRECT_BLOCK, Storage};
use crate::txn_index::{Loaded, TXN_INDEX_SUFFIX, TxnIndex};

/// Bytes read per scan step; batches larger than this are read on their own.
const SCAN_CHUNK_BYTES: usize = 1 << 20;

/// Where a scan stopped.
#[derive(Debug)]
pub(crate) struct ScanEnd {
    /// Position after the last valid batch.
    pub valid_end: u64,
    /// Offset after the last valid batch, if any batch was seen.
    pub next_offset: Option<i64>,
    /// Why the scan stopped before the end of the file, if it did.
    pub problem: Option<String>,
}

/// Reads batches from `from` to `end` (checked with `batch::check_stored`: these are bytes
/// the log validated and wrote), calling `on_batch(position, header, bytes)` for each
/// valid one, and stops at the first batch that is torn, fails its CRC, or does not
/// continue the offsets (`expected_next` is the smallest base offset the next batch may
/// have), or whose offsets fall outside the 2^32 offsets after `segment_base` that a
/// segment may hold (index entries store offsets relative to it in 32 bits).
pub(crate) fn scan(
    file: &dyn StorageFile,
    path: &Path,
    segment_base: i64,
    from: u64,
    end: u64,
    mut expected_next: i64,
    mut on_batch: impl FnMut(u64, &BatchHeader, &[u8]),
) -> Result<ScanEnd, OpenError> {
    let mut pos = from;
    let mut next_offset = None;
    let mut buf = Vec::new();
    let mut buf_start = from;
    let stop = |pos, next_offset, problem: String| {
        Ok(ScanEnd {
            valid_end: pos,
            next_offset,
            problem: Some(problem),
        })
    };
    while pos < end {
        // Make sure the buffer holds the whole batch at `pos`, reading more as needed.
        let mut have = (buf_start + buf.len() as u64).saturating_sub(pos) as usize;
        if pos < buf_start || have < LOG_OVERHEAD {
            read_chunk(file, path, pos, end, SCAN_CHUNK_BYTES, &mut buf)?;
            buf_start = pos;
            have = buf.len();
        }
        if padding_may_start(pos, end) {
            if buf_start + (buf.len() as u64) < end {
                read_chunk(file, path, pos, end, DIRECT_BLOCK as usize, &mut buf)?;
                buf_start = pos;
                have = buf.len();
            }
            let at = (pos - buf_start) as usize;
            if buf[at..].iter().all(|&b| b == 0) {
                // What a direct write leaves past its data (`storage/direct.rs`): the
                // segment ends here, whole. A torn write of the page cache can leave
                // zeros too; they are cut as padding is, and what they replaced was
                // never synced.
                break;
            }
        }
        let at = (pos - buf_start) as usize;
        let len = match batch::framed_len(&buf[at..]) {
            Ok(len) => len,
            Err(e) => return stop(pos, next_offset, format!("bad length at byte {pos}: {e}")),
        };
        if pos + len as u64 > end {
            return stop(
                pos,
                next_offset,
                format!(
                    "torn batch at byte {pos}: {len} bytes framed, {} present",
                    end - pos
                ),
            );
        }
        if have < len {
            read_chunk(
                file,
                path,
                pos,
                end,
                len.clamp(SCAN_CHUNK_BYTES, MAX_BATCH_BYTES),
                &mut buf,
            )?;
            buf_start = pos;
        }
        let at = (pos - buf_start) as usize;
        let header = match batch::check_stored(&buf[at..at + len]) {
            Ok(h) => h,
            Err(e) => {
                return stop(
                    pos,
                    next_offset,
                    format!("invalid batch at byte {pos}: {e}"),
                );
            }
        };
        if header.base_offset < expected_next {
            return stop(
                pos,
                next_offset,
                format!(
                    "batch at byte {pos} has base offset {} below {expected_next}",
                    header.base_offset
                ),
            );
        }
        // The base offset is outside the CRC, so a flipped bit there passes
        // `check_stored`; a batch whose offsets a segment cannot hold is corrupt (a
        // segment rolls long before 2^32 offsets), not a reason to panic.
        let in_segment = header
            .base_offset
            .checked_add(i64::from(header.last_offset_delta) + 1)
            .is_some_and(|next| next - segment_base <= i64::from(u32::MAX));
        if !in_segment {
            return stop(
                pos,
                next_offset,
                format!(
                    "batch at byte {pos} has offsets {}..+{} outside the segment based at {segment_base}",
                    header.base_offset, header.last_offset_delta
                ),
            );
        }
        on_batch(pos, &header, &buf[at..at + len]);
        expected_next = header.next_offset();
        next_offset = Some(expected_next);
        pos += len as u64;
    }
    Ok(ScanEnd {
        valid_end: pos,
        next_offset,
        problem: None,
    })
}

/// Whether the rest of a segment, `pos` to `end`, could be a direct write's padding:
/// less than a block, ending at a block boundary.
fn padding_may_start(pos: u64, end: u64) -> bool {
    end.is_multiple_of(DIRECT_BLOCK) && end - pos < DIRECT_BLOCK
}

fn read_chunk(
    file: &dyn StorageFile,
    path: &Path,
    pos: u64,
    end: u64,
    want: usize,
    buf: &mut Vec<u8>,
) -> Result<(), OpenError> {
    let n = (end - pos).min(want as u64) as usize;
    buf.resize(n, 0);
    file.read_exact_at(buf, pos)
        .map_err(|e| OpenError::io(path.to_path_buf(), e))
}

/// Rebuilds both indexes of a closed segment from its log file. A batch that fails its
/// CRC but has a plausible length is skipped (reads of it report the corruption); a
/// broken length ends the indexing there.
pub(crate) fn rebuild_closed_segment(
    seg: &mut Segment,
    config: &LogConfig,
) -> Result<(), OpenError> {
    reset_indexes(seg, config)?;
    let (file, path, size) = (seg.files().file.clone(), seg.log_path.clone(), seg.size);
    let mut pos = 0;
    let mut expected = seg.base_offset;
    while pos < size {
        let mut headers = Vec::new();
        let end = scan(
            file.as_ref(),
            &path,
            seg.base_offset,
            pos,
            size,
            expected,
            |p, h, _| headers.push((p, *h)),
        )?;
        for (p, h) in &headers {
            seg.index_batch(*p, h, config);
        }
        expected = end.next_offset.unwrap_or(expected);
        pos = end.valid_end;
        let Some(problem) = end.problem else { break };
        tracing::error!(segment = %path.display(), problem, "corrupt batch in closed segment");
        // Step over the bad batch if its length can be trusted at all.
        let mut frame = [0u8; LOG_OVERHEAD];
        if file.read_exact_at(&mut frame, pos).is_err() {
            break;
        }
        match batch::framed_len(&frame) {
            Ok(len) if pos + len as u64 <= size => pos += len as u64,
            _ => break,
        }
    }
    seal(seg)
}

/// Empties a segment's indexes and makes room to refill them.
pub(crate) fn reset_indexes(seg: &mut Segment, config: &LogConfig) -> Result<(), OpenError> {
    seg.cursor = IndexCursor::fresh(seg.base_offset);
    let files = seg.files_mut();
    files.index.truncate_entries(0);
    files.time_index.truncate_entries(0);
    files.reserve_full(config, OpenError::io)
}

/// Puts a segment's indexes in their closed state: final time entry, trimmed, synced.
pub(crate) fn seal(seg: &mut Segment) -> Result<(), OpenError> {
    seg.seal_time_index();
    let files = seg.files_mut();
    let p = files.index.path().to_path_buf();
    files.index.trim().map_err(|e| OpenError::io(p, e))?;
    let p = files.time_index.path().to_path_buf();
    files.time_index.trim().map_err(|e| OpenError::io(p, e))
}

/// The recovery checkpoint: everything in segment `segment_base` before `position` (and
/// every earlier segment) was on disk, with the first `index_entries` /
/// `time_index_entries` index entries, when it was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecoveryPoint {
    pub segment_base: i64,
    pub position: u64,
    pub next_offset: i64,
    pub index_entries: u32,
    pub time_index_entries: u32,
    pub max_timestamp: i64,
    pub offset_of_max_timestamp: i64,
}

impl RecoveryPoint {
    /// The point at the start of an empty segment at `base`: it claims nothing.
    pub(crate) fn empty(base: i64) -> RecoveryPoint {
        RecoveryPoint {
            segment_base: base,
            position: 0,
            next_offset: base,
            index_entries: 0,
            time_index_entries: 0,
            max_timestamp: i64::MIN,
            offset_of_max_timestamp: base,
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(48);
        b.extend_from_slice(&self.segment_base.to_be_bytes());
        b.extend_from_slice(&self.position.to_be_bytes());
        b.extend_from_slice(&self.next_offset.to_be_bytes());
        b.extend_from_slice(&self.index_entries.to_be_bytes());
        b.extend_from_slice(&self.time_index_entries.to_be_bytes());
        b.extend_from_slice(&self.max_timestamp.to_be_bytes());
        b.extend_from_slice(&self.offset_of_max_timestamp.to_be_bytes());
        b
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<RecoveryPoint> {
        let mut r = PayloadReader::new(bytes);
        let point = RecoveryPoint {
            segment_base: r.i64()?,
            position: r.u64()?,
            next_offset: r.i64()?,
            index_entries: r.u32()?,
            time_index_entries: r.u32()?,
            max_timestamp: r.i64()?,
            offset_of_max_timestamp: r.i64()?,
        };
        r.is_empty().then_some(point)
    }
}

/// Lists, checks and recovers the segments of `dir`.
/// What [`recover`] found: the log's state, and whether it created a new log whose
/// directory it did not sync (see below).
pub(crate) struct Recovered {
    pub(crate) inner: Inner,
    pub(crate) dir_unsynced: bool,
}

pub(crate) fn recover(
    dir: &Path,
    config: &LogConfig,
    storage: &dyn Storage,
) -> Result<Recovered, OpenError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| OpenError::io(p, e)
    };
    // One listing: segments by base offset with their sizes; leftovers of interrupted
    // checkpoint writes and index files whose `.log` is gone are removed.
    let list = || -> Result<Vec<(String, fs::DirEntry)>, OpenError> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            if let Ok(name) = entry.file_name().into_string() {
                names.push((name, entry));
            }
        }
        Ok(names)
    };
    let mut names = list()?;
    // A compaction the process did not finish is completed (or undone) first; the
    // listing is taken again only if that changed anything.
    let listed: Vec<String> = names.iter().map(|(n, _)| n.clone()).collect();
    if compaction::finish_interrupted(dir, storage, &listed)? {
        names = list()?;
    }
    let mut segments = BTreeMap::new();
    for (name, entry) in &names {
        if let Some(base) = segment::parse_log_name(name) {
            let size = entry.metadata().map_err(io(&entry.path()))?.len();
            segments.insert(base, Box::new(Segment::closed(dir, base, size)));
        }
    }
    for (name, entry) in &names {
        let stem = name
            .rsplit_once('.')
            .map_or(name.as_str(), |(stem, _)| stem);
        let orphan_index = (name.ends_with(".index")
            || name.ends_with(".timeindex")
            || name.ends_with(".txnindex"))
            && !stem
                .parse::<i64>()
                .is_ok_and(|base| segments.contains_key(&base));
        if name.ends_with(".tmp") || orphan_index {
            storage
                .remove_file(&entry.path())
                .map_err(io(&entry.path()))?;
        }
    }
    let mut log_start_offset =
        checkpoint::read_i64(storage, dir, Kind::LogStartOffset)?.unwrap_or(0);
    let mut epochs = match checkpoint::read(storage, dir, Kind::LeaderEpochs)? {
        Some(p) => EpochHistory::decode(&p).ok_or_else(|| crate::CheckpointError::Corrupt {
            path: dir.join(Kind::LeaderEpochs.file_name()),
            reason: "malformed epoch list".into(),
        })?,
        None => EpochHistory::default(),
    };
    // A corrupt recovery point only costs a longer scan.
    let point = match checkpoint::read(storage, dir, Kind::RecoveryPoint) {
        Ok(p) => p.and_then(|p| RecoveryPoint::decode(&p)),
        Err(e) => {
            tracing::warn!(error = %e, "recovery checkpoint unreadable; scanning every segment");
            None
        }
    };
    // Segments wholly below the log start were being deleted when the process stopped.
    let bases: Vec<i64> = segments.keys().copied().collect();
    for pair in bases.windows(2) {
        if pair[1] <= log_start_offset {
            let seg = segments.remove(&pair[0]).expect("listed");
            remove_segment_files(storage, &seg).map_err(open_from_maint)?;
        }
    }
    if segments.is_empty() {
        let base = log_start_offset.max(point.map_or(0, |p| p.next_offset));
        // Parked: its files are created by the first append or read that needs them, so
        // a broker's idle partitions hold no descriptor and no mapping (`log/park.rs`).
        let seg = Segment::unborn(dir, base);
        // A new log in an empty directory (but for its lock) has nothing to claim: no
        // recovery point is written and nothing is synced. Without a point, recovery
        // scans the segment from its start, which is what the point of an empty log
        // would say anyway, and files a crash loses are created again, empty, by the
        // next open. The first checkpoint after appends (or the close) writes the
        // point, and the first sync of the log's data syncs the directory before it
        // reports anything durable (`Log::sync_or_fail`), so an acknowledged write
        // never rests on a directory entry a crash can lose. A new partition of a
        // broker costs no sync this way (a topic of 10,000 partitions: 20,000 fewer).
        // Otherwise (checkpoints left from before) the point is written, at the log's
        // start offset.
        let fresh = names
            .iter()
            .all(|(name, _)| name == crate::storage::LOCK_FILE);
        segments.insert(base, Box::new(seg));
        log_start_offset = base;
        let mut inner = Inner {
            segments,
            next_offset: base,
            log_start_offset,
            epochs,
            failed: None,
            epochs_unpersisted: false,
            generation: 0,
            producers: ProducerStates::default(),
            last_used: Instant::now(),
        };
        inner.epochs.truncate_from_end(base);
        if !fresh {
            write_recovery_point(storage, dir, &inner)?;
        }
        // Either way the segment's files do not exist yet: the first append creates them,
        // and its first data sync must sync the directory before anything counts as
        // durable.
        return Ok(Recovered {
            inner,
            dir_unsynced: true,
        });
    }
    let first_base = *segments.keys().next().expect("non-empty");
    log_start_offset = log_start_offset.max(first_base);

    // Which segments need a scan, and from where.
    let last_base = *segments.keys().next_back().expect("non-empty");
    let start = point.filter(|p| {
        segments
            .get(&p.segment_base)
            .is_some_and(|s| p.position <= s.size)
    });
    if start.is_none() && point.is_some() {
        tracing::warn!("recovery checkpoint does not match the segments; scanning every segment");
    }
    // A log closed cleanly (or parked) ends exactly where its point says, at the end of
    // its last segment: nothing to scan, and the active segment stays parked until an
    // append or read opens it (its indexes are checked against the point then).
    let at_end =
        start.filter(|p| p.segment_base == last_base && p.position == segments[&last_base].size);
    if let Some(p) = at_end {
        segments.get_mut(&last_base).expect("listed").park(p);
    }
    let scan_from_base = start.map_or(first_base, |p| p.segment_base);
    let to_scan: Vec<i64> = match at_end {
        Some(_) => Vec::new(),
        None => segments.range(scan_from_base..).map(|(b, _)| *b).collect(),
    };
    let mut next_offset = start.map_or(first_base, |p| p.next_offset);
    let mut scanned_bytes = 0u64;
    let mut cut_at: Option<i64> = None;
    let mut prev: Option<(i64, i64)> = None; // (base, end offset) of the last scanned segment
    // Whether every scanned segment kept the index entries the recovery point vouches for.
    let mut indexes_trusted = true;
    for base in to_scan {
        if let Some((prev_base, prev_end)) = prev
            && base != prev_end
        {
            // A segment left over from before a truncation whose deletion did not reach
            // the disk: its offsets do not follow on.
            tracing::warn!(
                base_offset = base,
                expected = prev_end,
                "segment does not continue the log"
            );
            cut_at = Some(prev_base);
            break;
        }
        let seg = segments.get_mut(&base).expect("listed");
        let is_last = base == last_base;
        let trusted = start.filter(|p| p.segment_base == base);
        indexes_trusted &= open_for_recovery(storage, seg, config, trusted, false)?;
        let from = trusted.map_or(0, |p| p.position);
        let expected = trusted.map_or(base, |p| p.next_offset);
        let file = seg.files().file.clone();
        let mut headers = Vec::new();
        let end = scan(
            file.as_ref(),
            &seg.log_path,
            base,
            from,
            seg.size,
            expected,
            |pos, h, _| headers.push((pos, *h)),
        )?;
        for (pos, h) in &headers {
            seg.index_batch(*pos, h, config);
        }
        scanned_bytes += end.valid_end - from;
        next_offset = end
            .next_offset
            .unwrap_or(if trusted.is_some() { expected } else { base });
        if let Some(problem) = end.problem {
            tracing::warn!(segment = %seg.log_path.display(), problem, dropped_bytes = seg.size - end.valid_end, "truncating torn or corrupt tail");
            file.set_len(end.valid_end).map_err(io(&seg.log_path))?;
            seg.size = end.valid_end;
            cut_at = Some(base);
        } else if end.valid_end < seg.size {
            // A direct write's padding: the segment is whole, only its file is longer.
            file.set_len(end.valid_end).map_err(io(&seg.log_path))?;
            seg.size = end.valid_end;
        }
        if !is_last && cut_at.is_none() {
            // A closed segment past the recovery point may hold bytes a roll never
            // synced (rolls defer that sync) that survived only in the page cache (a
            // process crash): make them durable before the new checkpoint claims them.
            file.sync_data().map_err(io(&seg.log_path))?;
            seal(seg)?;
        }
        if cut_at.is_some() {
            break;
        }
        prev = Some((base, next_offset));
    }
    // Segments after a cut hold offsets that no longer follow on: drop them.
    if let Some(cut) = cut_at {
        let later: Vec<i64> = segments.range(cut + 1..).map(|(b, _)| *b).collect();
        for base in later {
            let seg = segments.remove(&base).expect("listed");
            tracing::warn!(segment = %seg.log_path.display(), "removing segment after a corrupt tail");
            remove_segment_files(storage, &seg).map_err(open_from_maint)?;
        }
    }
    // The active segment takes appends: full-size indexes.
    let active = segments.values_mut().next_back().expect("non-empty");
    if active.files.is_none() && active.parked.is_none() {
        indexes_trusted &= open_for_recovery(storage, active, config, None, false)?;
    }
    if active.parked.is_none() {
        active.files_mut().reserve_full(config, OpenError::io)?;
    }
    // Epochs that start at or past the recovered end were lost with it. For want of space
    // the history on disk keeps them (every recovery drops them again) and the first
    // append writes it before any data (`epochs_unpersisted`).
    let mut epochs_unpersisted = false;
    if epochs.truncate_from_end(next_offset) | epochs.truncate_from_start(log_start_offset) {
        match checkpoint::write(storage, dir, Kind::LeaderEpochs, &epochs.encode()) {
            Err(e) if e.is_storage_full() => epochs_unpersisted = true,
            written => written?,
        }
    }
    let inner = Inner {
        segments,
        next_offset,
        log_start_offset,
        epochs,
        failed: None,
        epochs_unpersisted,
        generation: 0,
        producers: ProducerStates::default(),
        last_used: Instant::now(),
    };
    // A log closed cleanly (or with nothing written since its last checkpoint) ends
    // exactly where the recovery point on disk says: the point was written after the
    // bytes and index entries it names were synced, and nothing lies past it, so there
    // is nothing to make durable and the same point need not be written again. This
    // skips three syncs per partition at a broker's start (10,000 partitions: 30,000).
    // Anything else (a tail past the point, a cut, no or a mismatched point) is synced
    // and checkpointed as before.
    let at_point = start.is_some_and(|p| p == inner.recovery_point());
    if at_point && indexes_trusted && scanned_bytes == 0 && cut_at.is_none() {
        tracing::debug!("log ends at its recovery point; nothing to recover");
        return Ok(Recovered {
            inner,
            dir_unsynced: false,
        });
    }
    // Whatever was recovered is made durable before the checkpoint claims it.
    let active = inner.active();
    let files = active.files();
    files.file.sync_data().map_err(io(&active.log_path))?;
    files.flush_indexes(OpenError::io)?;
    write_recovery_point(storage, dir, &inner)?;
    tracing::debug!(scanned_bytes, "recovery scan done");
    Ok(Recovered {
        inner,
        dir_unsynced: false,
    })
}

/// The recovery point of what was just recovered; for want of space the old one is
/// removed instead (it may claim a tail the recovery cut), and the next open scans again.
fn write_recovery_point(storage: &dyn Storage, dir: &Path, inner: &Inner) -> Result<(), OpenError> {
    let point = inner.recovery_point().encode();
    Ok(checkpoint::write_or_remove(
        storage,
        dir,
        Kind::RecoveryPoint,
        &point,
    )?)
}

/// Opens a parked active segment (`Segment::parked`) as recovery would open it at
/// `point`, its indexes sized for appends; on any failure it stays parked. The files of a
/// segment parked at its very start (a new log's) are created if missing.
pub(crate) fn reopen_parked(
    storage: &dyn Storage,
    seg: &mut Segment,
    config: &LogConfig,
    point: RecoveryPoint,
) -> Result<(), OpenError> {
    let opened = (|| {
        open_for_recovery(storage, seg, config, Some(point), point.position == 0)?;
        seg.files_mut().reserve_full(config, OpenError::io)
    })();
    if opened.is_err() {
        seg.files = None;
    }
    opened
}

/// Opens a segment's files for recovery (creating a missing `.log` if `create`). With a
/// trusted recovery point, keeps the index entries it vouches for (if they check out)
/// and resumes indexing after them; otherwise indexes are rebuilt from the start of the
/// segment. Returns false if a trusted point's entries did not check out (the indexes
/// were rebuilt instead).
fn open_for_recovery(
    storage: &dyn Storage,
    seg: &mut Segment,
    config: &LogConfig,
    trusted: Option<RecoveryPoint>,
    create: bool,
) -> Result<bool, OpenError> {
    let file = segment::open_log(storage, &seg.log_path, create, config)
        .map_err(|e| OpenError::io(seg.log_path.clone(), e))?;
    let cap = Some(u64::from(config.index_max_bytes));
    let point = trusted.unwrap_or(RecoveryPoint::empty(seg.base_offset));
    let index_path = seg.path(segment::INDEX_SUFFIX);
    let index = Index::open(&index_path, cap, Some(point.index_entries as usize))
        .map_err(|e| OpenError::io(index_path, e))?;
    let time_path = seg.path(segment::TIME_INDEX_SUFFIX);
    let time_index = Index::open(&time_path, cap, Some(point.time_index_entries as usize))
        .map_err(|e| OpenError::io(time_path, e))?;
    seg.files = Some(crate::segment::SegmentFiles {
        file,
        index,
        time_index,
    });
    let span = point.next_offset - seg.base_offset;
    let files = seg.files_mut();
    let consistent = files.index.len() == point.index_entries as usize
        && files.time_index.len() == point.time_index_entries as usize
        && files.index.is_consistent(|e| {
            u64::from(e.position) < point.position && i64::from(e.relative_offset) < span
        })
        && files.time_index.is_consistent(|e| {
            i64::from(e.relative_offset) < span && e.timestamp <= point.max_timestamp
        });
    if trusted.is_some() && !consistent {
        tracing::warn!(segment = %seg.log_path.display(), "index does not match the recovery checkpoint; rebuilding");
        open_for_recovery(storage, seg, config, None, create)?;
        return Ok(false);
    }
    // Zero whatever lies past the trusted entries (stale or torn).
    let files = seg.files_mut();
    let (n, t) = (files.index.len(), files.time_index.len());
    files.index.truncate_entries(n);
    files.time_index.truncate_entries(t);
    seg.cursor = crate::segment::IndexCursor {
        bytes_since_entry: files
            .index
            .last()
            .map_or(u64::MAX, |e| point.position - u64::from(e.position)),
        max_timestamp: point.max_timestamp,
        offset_of_max_timestamp: point.offset_of_max_timestamp,
    };
    Ok(true)
}

fn open_from_maint(e: MaintenanceError) -> OpenError {
    match e {
        MaintenanceError::Io { path, source } => OpenError::Io { path, source },
        MaintenanceError::Checkpoint(c) => OpenError::Checkpoint(c),
        other => OpenError::Config(other.to_string()),
    }
}

/// Rebuilds the producers' state of `inner` (see `producers`) and the aborted-transaction
/// indexes it derives (see `txn_index`): from the snapshot if it lies within the log,
/// else from the log start, then every batch after it up to the log end. The snapshot is
/// taken at segment rolls, at close and after each rebuild, so this reads the tail
/// written since; a snapshot past the log end (written before a crash lost unflushed
/// data, or before a truncation) is not used. Returns whether the snapshot on disk
/// already holds the rebuilt state (it was taken at the log end, as a clean close leaves
/// it): then it need not be written again.
pub(crate) fn rebuild_producers(
    dir: &Path,
    config: &LogConfig,
    storage: &dyn Storage,
    inner: &mut Inner,
) -> Result<bool, OpenError> {
    let snapshot = match checkpoint::read(storage, dir, Kind::ProducerState) {
        Ok(Some(payload)) => {
            let decoded = ProducerStates::decode(&payload);
            if decoded.is_none() {
                tracing::warn!(dir = %dir.display(), "producer-state snapshot malformed; rebuilding from the log");
            }
            decoded
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "producer-state snapshot unreadable; rebuilding from the log");
            None
        }
    };
    let (from, states) = match snapshot {
        Some((offset, states)) if offset <= inner.next_offset => {
            (offset.max(inner.log_start_offset), states)
        }
        _ => (inner.log_start_offset, ProducerStates::default()),
    };
    // At the log end (a clean close, or a truncation to a snapshot's offset) nothing is
    // scanned; the active segment's index only loses entries past the end.
    let current = from == inner.next_offset;
    rebuild_from(config, storage, inner, from, states)?;
    Ok(current)
}

/// Rebuilds the producers' state and every aborted-transaction index from the log start:
/// for a damaged index found after the log was opened.
pub(crate) fn rebuild_transactions_fully(
    config: &LogConfig,
    storage: &dyn Storage,
    inner: &mut Inner,
) -> Result<(), OpenError> {
    let start = inner.log_start_offset;
    rebuild_from(config, storage, inner, start, ProducerStates::default())
}

/// [`rebuild_producers`] from `from`, with `states` the state as of `from`.
fn rebuild_from(
    config: &LogConfig,
    storage: &dyn Storage,
    inner: &mut Inner,
    from: i64,
    states: ProducerStates,
) -> Result<(), OpenError> {
    let (mut from, mut states) = (from, states);
    // Every segment from the one holding `from` keeps the aborted entries of markers
    // before `from`; the scan adds the others. A damaged index of a segment that starts
    // before `from` cannot say which of its entries to keep: then everything is rebuilt
    // from the log start.
    'prepare: loop {
        let first = inner
            .segments
            .range(..=from)
            .next_back()
            .map_or(from, |(base, _)| *base);
        let bases: Vec<i64> = inner.segments.range(first..).map(|(b, _)| *b).collect();
        for base in bases {
            let end = inner.end_of(base);
            let seg = inner.segments.get_mut(&base).expect("listed");
            let path = seg.path(TXN_INDEX_SUFFIX);
            let io = |e| OpenError::io(path.clone(), e);
            if seg.txn.is_none() {
                match TxnIndex::load(storage, &path, base, end).map_err(io)? {
                    Loaded::Entries(entries) => seg.txn = Some(TxnIndex::new(entries)),
                    Loaded::Damaged(problem) => {
                        tracing::warn!(index = %path.display(), problem, "aborted-transaction index damaged; rebuilding it");
                        if base < from && from > inner.log_start_offset {
                            from = inner.log_start_offset;
                            states = ProducerStates::default();
                            continue 'prepare;
                        }
                        // All its entries are past `from`: the scan writes them again.
                        let mut empty = TxnIndex::default();
                        empty.replace(storage, &path, Vec::new()).map_err(io)?;
                        seg.txn = Some(empty);
                    }
                }
            }
            let txn = seg.txn.as_mut().expect("loaded");
            txn.retain_before(storage, &path, from).map_err(io)?;
        }
        break;
    }
    let first = inner
        .segments
        .range(..=from)
        .next_back()
        .map_or(from, |(base, _)| *base);
    let bases: Vec<i64> = inner.segments.range(first..).map(|(b, _)| *b).collect();
    for base in bases {
        let end_offset = inner.end_of(base);
        if end_offset <= from {
            continue;
        }
        let seg = inner.segments.get_mut(&base).expect("listed");
        let (size, path) = (seg.size, seg.log_path.clone());
        let files = seg.ensure_open(storage, config, end_offset)?;
        let (pos, batch_base) = files
            .index
            .floor((from - base).max(0))
            .map_or((0, base), |(_, e)| {
                (u64::from(e.position), base + i64::from(e.relative_offset))
            });
        let mut aborted = Vec::new();
        let scanned = scan(
            files.file.as_ref(),
            &path,
            base,
            pos,
            size,
            batch_base,
            |_, h, bytes| {
                if h.base_offset >= from
                    && let Some(entry) = states.record_batch(h, bytes)
                {
                    aborted.push(entry);
                }
            },
        )?;
        if let Some(problem) = scanned.problem {
            tracing::warn!(segment = %path.display(), problem, "producer-state rebuild stopped early in a segment");
        }
        let txn_path = seg.path(TXN_INDEX_SUFFIX);
        let txn = seg.txn.as_mut().expect("loaded above");
        for entry in aborted {
            txn.append(storage, &txn_path, entry)
                .map_err(|e| OpenError::io(txn_path.clone(), e))?;
        }
    }
    inner.producers = states;
    Ok(())
}
