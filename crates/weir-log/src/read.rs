//! Reading: batches from an offset up to a byte limit, and the offset for a timestamp.
//! Every batch read is checked before it is returned or skipped; a damaged one is an
//! error naming its file and position.

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};

use crate::batch::{self, BatchHeader, LOG_OVERHEAD};
use crate::error::{OpenError, ReadError};
use crate::index::TimeEntry;
use crate::log::{FetchData, Log};
use crate::segment;
use crate::storage::StorageFile;

impl Log {
    /// Reads whole batches starting with the one that holds `offset`, up to `max_bytes`
    /// (at least one batch is returned even if it is larger, so a reader always makes
    /// progress), and only batches whose last offset is below `upper_bound` (the high
    /// watermark, for consumers). Every returned batch has passed its CRC check.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        upper_bound: Option<i64>,
    ) -> Result<FetchData, ReadError> {
        let mut offset = offset;
        loop {
            let (file, path, from, end_pos, offsets, seg_end) = {
                let mut inner = self.lock();
                let (start, end) = (inner.log_start_offset, inner.next_offset);
                if offset < start || offset > end {
                    return Err(ReadError::OffsetOutOfRange {
                        offset,
                        log_start_offset: start,
                        log_end_offset: end,
                    });
                }
                let empty = FetchData {
                    records: Bytes::new(),
                    next_offset: offset,
                    log_start_offset: start,
                    log_end_offset: end,
                };
                if offset == end || upper_bound.is_some_and(|u| offset >= u) {
                    return Ok(empty);
                }
                let base = *inner
                    .segments
                    .range(..=offset)
                    .next_back()
                    .map(|(b, _)| b)
                    .unwrap_or_else(|| {
                        inner
                            .segments
                            .keys()
                            .next()
                            .expect("a log always has a segment")
                    });
                let seg_end = inner.end_of(base);
                let seg = inner.segments.get_mut(&base).expect("segment exists");
                let files = seg
                    .ensure_open(self.storage.as_ref(), &self.config, seg_end)
                    .map_err(open_to_read)?;
                let (from, from_offset) = index_floor(files, base, offset);
                (
                    files.file.clone(),
                    seg.log_path.clone(),
                    (from, from_offset, base),
                    seg.size,
                    (start, end),
                    seg_end,
                )
            };
            let (log_start_offset, log_end_offset) = offsets;
            let read = |(pos, expected)| {
                read_segment(
                    file.as_ref(),
                    &path,
                    pos,
                    expected,
                    end_pos,
                    offset,
                    max_bytes,
                    upper_bound,
                )
            };
            let (from, from_offset, base) = from;
            let mut result = read((from, from_offset));
            if index_mismatch(&result, (from, from_offset), base) {
                tracing::warn!(segment = %path.display(), position = from, "offset index does not match the log; reading from the segment start");
                result = read((0, base));
            }
            match result? {
                SegmentRead::Data {
                    records,
                    next_offset,
                    ..
                } => {
                    return Ok(FetchData {
                        records,
                        next_offset,
                        log_start_offset,
                        log_end_offset,
                    });
                }
                SegmentRead::Hidden => {
                    return Ok(FetchData {
                        records: Bytes::new(),
                        next_offset: offset,
                        log_start_offset,
                        log_end_offset,
                    });
                }
                // Nothing at or after `offset` here: continue in the next segment.
                SegmentRead::End if seg_end > offset => {}
                SegmentRead::End => {
                    return Ok(FetchData {
                        records: Bytes::new(),
                        next_offset: offset,
                        log_start_offset,
                        log_end_offset,
                    });
                }
            }
            offset = seg_end;
        }
    }

    /// The offset of the first record whose timestamp is at least `timestamp`, or `None`
    /// if every record is older.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<i64>, ReadError> {
        let bases: Vec<i64> = self.lock().segments.keys().copied().collect();
        for base in bases {
            let (file, path, end_pos, floor_entry, last_entry, max_timestamp, log_start) = {
                let mut inner = self.lock();
                let seg_end = inner.end_of(base);
                let log_start = inner.log_start_offset;
                let Some(seg) = inner.segments.get_mut(&base) else {
                    continue;
                };
                let files = seg
                    .ensure_open(self.storage.as_ref(), &self.config, seg_end)
                    .map_err(open_to_read)?;
                let probe = |t: TimeEntry| {
                    let offset = base + i64::from(t.relative_offset);
                    TimeProbe {
                        offset,
                        timestamp: t.timestamp,
                        from: index_floor(files, base, offset),
                    }
                };
                let floor_entry = files.time_index.floor(timestamp).map(|(_, t)| probe(t));
                let last_entry = files.time_index.last().map(probe);
                let file = files.file.clone();
                (
                    file,
                    seg.log_path.clone(),
                    seg.size,
                    floor_entry,
                    last_entry,
                    seg.max_timestamp(),
                    log_start,
                )
            };
            let holds = |p: &TimeProbe| time_entry_holds(file.as_ref(), &path, end_pos, p);
            // The segment's newest timestamp comes from its last time-index entry, which
            // carries no checksum: skip the segment only if that entry checks out.
            if max_timestamp.is_some_and(|m| m < timestamp) {
                let trusted = match &last_entry {
                    Some(last) if Some(last.timestamp) == max_timestamp => holds(last)?,
                    _ => true, // the active segment's maximum is kept in memory
                };
                if trusted {
                    continue;
                }
                tracing::warn!(segment = %path.display(), "time index does not match the log; scanning the segment");
            }
            let whole_segment = ((0, base), base.max(log_start));
            let (from, scan_from_offset) = match &floor_entry {
                Some(e) if e.offset >= log_start && holds(e)? => (e.from, e.offset),
                Some(e) if e.offset >= log_start => {
                    tracing::warn!(segment = %path.display(), "time index does not match the log; scanning the segment");
                    whole_segment
                }
                _ => whole_segment,
            };
            let find = |(pos, expected), min_offset| {
                find_timestamp(
                    file.as_ref(),
                    &path,
                    pos,
                    expected,
                    end_pos,
                    min_offset,
                    timestamp,
                )
            };
            let mut result = find(from, scan_from_offset);
            if index_mismatch(&result, from, base) {
                tracing::warn!(segment = %path.display(), position = from.0, "offset index does not match the log; scanning from the segment start");
                result = find((0, base), scan_from_offset);
            }
            if let Some(found) = result? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }
}

/// Smallest read issued.
const MIN_READ_BYTES: usize = 16 * 1024;
/// Read beyond `max_bytes` to cover the gap between the index entry a read starts from and
/// the wanted batch (about one `index_interval_bytes`, 4 KiB by default) in the same
/// `pread`.
const READ_SLACK_BYTES: usize = 8 * 1024;

/// What one segment yielded for a read.
#[derive(Debug)]
enum SegmentRead {
    /// Whole batches from the one holding the wanted offset on.
    Data {
        records: Bytes,
        next_offset: i64,
        end_position: u64,
    },
    /// The batch holding the wanted offset reaches the upper bound: nothing is visible.
    Hidden,
    /// No batch in this segment ends at or after the wanted offset.
    End,
}

/// Reads from `pos` (a batch boundary at or before `offset`, where the batch with base
/// offset `expected_base` starts) up to `end_pos` and returns the batches from the one
/// holding `offset` on, within `max_bytes` (but at least one). Every batch read is checked
/// (length, CRC, base offset continuing the one before), skipped ones included; a damaged
/// batch after batches already taken ends the read with those.
#[allow(clippy::too_many_arguments)]
fn read_segment(
    file: &dyn StorageFile,
    path: &Path,
    mut pos: u64,
    mut expected_base: i64,
    end_pos: u64,
    offset: i64,
    max_bytes: usize,
    upper_bound: Option<i64>,
) -> Result<SegmentRead, ReadError> {
    let corrupt = |position: u64, source| ReadError::Corrupt {
        path: path.to_path_buf(),
        position,
        source,
    };
    let mut want = max_bytes
        .saturating_add(READ_SLACK_BYTES)
        .max(MIN_READ_BYTES);
    while pos < end_pos {
        let len = (end_pos - pos).min(want as u64) as usize;
        let mut buf = BytesMut::zeroed(len);
        file.read_exact_at(&mut buf, pos)
            .map_err(|e| ReadError::io(path.to_path_buf(), e))?;
        let buf = buf.freeze();
        let (mut at, mut take_from, mut next_offset, mut hidden) = (0usize, None, offset, false);
        while at < buf.len() {
            let here = pos + at as u64;
            let rest = &buf[at..];
            if rest.len() < LOG_OVERHEAD {
                break;
            }
            // A damaged batch after intact ones ends this read with those (`break`); the
            // read that starts at the damaged batch reports it.
            let batch_len = match batch::framed_len(rest) {
                Ok(len) => len,
                Err(_) if take_from.is_some() => break,
                Err(e) => return Err(corrupt(here, e)),
            };
            if here + batch_len as u64 > end_pos {
                if take_from.is_some() {
                    break;
                }
                let available = (end_pos - here) as usize;
                return Err(corrupt(
                    here,
                    crate::BatchError::Truncated {
                        needed: batch_len,
                        available,
                    },
                ));
            }
            if rest.len() < batch_len {
                if take_from.is_none() {
                    want = want.max(batch_len);
                }
                break;
            }
            // Stop before a batch that would pass the limit, without checking it: the
            // next read starts there.
            if take_from.is_some_and(|start| at + batch_len - start > max_bytes) {
                break;
            }
            let header = match batch::check_stored(&rest[..batch_len]) {
                Ok(header) => header,
                Err(_) if take_from.is_some() => break,
                Err(e) => return Err(corrupt(here, e)),
            };
            // Batches in a segment continue each other's offsets; the base offset is
            // outside the CRC, so this is what catches a damaged one.
            if header.base_offset != expected_base {
                if take_from.is_some() {
                    break;
                }
                let (found, expected) = (header.base_offset, expected_base);
                return Err(corrupt(
                    here,
                    crate::BatchError::UnexpectedBaseOffset { found, expected },
                ));
            }
            expected_base = header.next_offset();
            if header.last_offset() < offset {
                at += batch_len;
                continue;
            }
            if upper_bound.is_some_and(|u| header.last_offset() >= u) {
                hidden = take_from.is_none();
                break;
            }
            take_from.get_or_insert(at);
            next_offset = header.next_offset();
            at += batch_len;
        }
        if let Some(start) = take_from {
            let end_position = pos + at as u64;
            return Ok(SegmentRead::Data {
                records: buf.slice(start..at),
                next_offset,
                end_position,
            });
        }
        if hidden {
            return Ok(SegmentRead::Hidden);
        }
        // Only skipped batches so far: go on from the first one not yet seen whole.
        pos += at as u64;
    }
    Ok(SegmentRead::End)
}

/// Scans a segment from `pos` for the first record at or after `min_offset` whose
/// timestamp is at least `timestamp`.
fn find_timestamp(
    file: &dyn StorageFile,
    path: &Path,
    mut pos: u64,
    mut expected_base: i64,
    end_pos: u64,
    mut min_offset: i64,
    timestamp: i64,
) -> Result<Option<i64>, ReadError> {
    loop {
        let SegmentRead::Data {
            records,
            next_offset,
            end_position,
        } = read_segment(
            file,
            path,
            pos,
            expected_base,
            end_pos,
            min_offset,
            MIN_READ_BYTES,
            None,
        )?
        else {
            return Ok(None);
        };
        let data = FetchData {
            records,
            next_offset,
            log_start_offset: 0,
            log_end_offset: 0,
        };
        let mut batch_pos = end_position - data.records.len() as u64;
        for batch in data.batches() {
            let position = batch_pos;
            batch_pos += batch.len() as u64;
            if BatchHeader::parse(&batch).max_timestamp < timestamp {
                continue;
            }
            let records = batch::decode_records(&batch).map_err(|source| ReadError::Corrupt {
                path: path.to_path_buf(),
                position,
                source,
            })?;
            if let Some(r) = records
                .iter()
                .find(|r| r.timestamp >= timestamp && r.offset >= min_offset)
            {
                return Ok(Some(r.offset));
            }
        }
        pos = end_position;
        min_offset = next_offset;
        expected_base = next_offset;
    }
}

/// The offset-index entry at or before `offset` in the segment at `base`: its file
/// position and the base offset of the batch there (the segment start if none).
fn index_floor(files: &segment::SegmentFiles, base: i64, offset: i64) -> (u64, i64) {
    files
        .index
        .floor(offset - base)
        .map_or((0, base), |(_, e)| {
            (u64::from(e.position), base + i64::from(e.relative_offset))
        })
}

/// A time-index entry resolved to a place in the log: the batch starting at `offset` must
/// have `max_timestamp == timestamp`; `from` is where a read for it starts (position, base
/// offset of the batch there).
#[derive(Debug)]
struct TimeProbe {
    offset: i64,
    timestamp: i64,
    from: (u64, i64),
}

/// Checks a time-index entry against the log: the batch starting at `offset` must exist
/// and have `max_timestamp == timestamp`, as it did when the entry was made. Index
/// entries are derived data without a checksum; this keeps a damaged one from steering a
/// lookup past the right answer.
fn time_entry_holds(
    file: &dyn StorageFile,
    path: &Path,
    end_pos: u64,
    probe: &TimeProbe,
) -> Result<bool, ReadError> {
    let (pos, expected) = probe.from;
    let (offset, timestamp) = (probe.offset, probe.timestamp);
    match read_segment(file, path, pos, expected, end_pos, offset, 1, None) {
        Ok(SegmentRead::Data { records, .. }) => {
            let header = BatchHeader::parse(&records);
            Ok(header.base_offset == offset && header.max_timestamp == timestamp)
        }
        Ok(_) => Ok(false),
        // A damaged batch at the entry: let the full scan report it where it lies.
        Err(ReadError::Corrupt { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// True if a read that started at offset-index entry `from` (position, base offset of the
/// batch there) rather than at the segment start failed on the very batch
/// the index pointed at: the index entry may be what is wrong (indexes are derived data
/// and carry no checksum), so the caller reads again from the segment start, where a
/// damaged log is reported at the damaged batch.
fn index_mismatch<T>(result: &Result<T, ReadError>, from: (u64, i64), base: i64) -> bool {
    from != (0, base)
        && matches!(result, Err(ReadError::Corrupt { position, .. }) if *position == from.0)
}

fn open_to_read(e: OpenError) -> ReadError {
    match e {
        OpenError::Io { path, source } => ReadError::Io { path, source },
        other => ReadError::Io {
            path: PathBuf::new(),
            source: std::io::Error::other(other.to_string()),
        },
    }
}
