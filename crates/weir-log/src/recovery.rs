//! Crash recovery: scanning a segment's batches from a known-good position, checking each
//! batch's length, CRC and offsets, cutting a torn tail, and rebuilding indexes.
//!
//! Only what was not known to be flushed is scanned: the recovery checkpoint names the
//! segment, file position and index entry counts that were on disk at the last
//! checkpoint, so open time depends on the unflushed tail, not on the size of the log.

use std::path::Path;

use crate::batch::{self, BatchHeader, LOG_OVERHEAD, MAX_BATCH_BYTES};
use crate::checkpoint::PayloadReader;
use crate::config::LogConfig;
use crate::error::OpenError;
use crate::segment::{IndexCursor, Segment};
use crate::storage::StorageFile;

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
/// the log validated and wrote), calling `on_batch(position, header)` for each
/// valid one, and stops at the first batch that is torn, fails its CRC, or does not
/// continue the offsets (`expected_next` is the smallest base offset the next batch may
/// have).
pub(crate) fn scan(
    file: &dyn StorageFile,
    path: &Path,
    from: u64,
    end: u64,
    mut expected_next: i64,
    mut on_batch: impl FnMut(u64, &BatchHeader),
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
        on_batch(pos, &header);
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
        let end = scan(file.as_ref(), &path, pos, size, expected, |p, h| {
            headers.push((p, *h))
        })?;
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
    let cap = u64::from(config.index_max_bytes);
    let files = seg.files_mut();
    files.index.truncate_entries(0);
    files.time_index.truncate_entries(0);
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| OpenError::io(p, e)
    };
    files.index.reserve(cap).map_err(io(files.index.path()))?;
    files
        .time_index
        .reserve(cap)
        .map_err(io(files.time_index.path()))
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
