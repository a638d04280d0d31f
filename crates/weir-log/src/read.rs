//! Reading: batches from an offset up to a byte limit, and the offset for a timestamp.
//! Every batch read is checked before it is returned or skipped (its CRC only if this
//! process did not check it before writing it: [`Segment::verified_from`]); a damaged one
//! is an error naming its file and position.
//!
//! [`Segment::verified_from`]: crate::segment::Segment

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::batch::{self, BatchHeader, LOG_OVERHEAD};
use crate::error::{OpenError, ReadError};
use crate::index::TimeEntry;
use crate::log::{FetchData, FileSlice, Log, SegmentPosition};
use crate::segment;
use crate::storage::StorageFile;

impl Log {
    /// Reads whole batches starting with the one that holds `offset`, up to `max_bytes`
    /// (at least one batch is returned even if it is larger, so a reader always makes
    /// progress), and only batches whose last offset is below `upper_bound` (the high
    /// watermark, for consumers). Every returned batch has passed its CRC check, here or,
    /// for what this process appended, before it was written.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        upper_bound: Option<i64>,
    ) -> Result<FetchData, ReadError> {
        self.read_to(offset, max_bytes, upper_bound, ReadTo::Memory)
    }

    /// [`read`](Self::read), with the batches left in their segment file
    /// ([`FetchData::in_file`]) for a listener to send with `sendfile`. They are checked as
    /// `read` checks them, 128 KiB at a time through buffers dropped once checked, never
    /// one of the read's size; batches of 32 KiB or more that this process appended are
    /// passed over by their headers alone. A read of less than 32 KiB, which the first
    /// check holds in memory anyway, comes back in memory (`records`), as does a read of a
    /// direct-written segment (`storage/direct.rs`) and any read from storage whose files
    /// are not OS files (fault injection).
    pub fn read_in_file(
        &self,
        offset: i64,
        max_bytes: usize,
        upper_bound: Option<i64>,
    ) -> Result<FetchData, ReadError> {
        self.read_to(offset, max_bytes, upper_bound, ReadTo::File)
    }

    /// [`read`](Self::read) or [`read_in_file`](Self::read_in_file), as `to` says.
    pub fn read_to(
        &self,
        offset: i64,
        max_bytes: usize,
        upper_bound: Option<i64>,
        to: ReadTo,
    ) -> Result<FetchData, ReadError> {
        let mut offset = offset;
        loop {
            let (place, from, offsets, bound) = {
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
                    in_file: None,
                    next_offset: offset,
                    log_start_offset: start,
                    log_end_offset: end,
                    stored_at: None,
                };
                // A failed log's unsynced tail may not be what is on disk (after a
                // failed fsync the kernel may drop the dirty pages): serve only what
                // was synced until the log is reopened.
                let bound = match inner.failed {
                    Some(_) => {
                        let flushed = self.flush_state().flushed_offset;
                        Some(upper_bound.map_or(flushed, |u| u.min(flushed)))
                    }
                    None => upper_bound,
                };
                if offset == end || bound.is_some_and(|u| offset >= u) {
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
                inner.last_used = std::time::Instant::now();
                let failed = inner.failed.is_some();
                let seg = inner.segments.get_mut(&base).expect("segment exists");
                let files = seg
                    .ensure_open(self.storage.as_ref(), &self.config, seg_end)
                    .map_err(open_to_read)?;
                let (from, from_offset) = index_floor(files, base, offset);
                let file = files.file.clone();
                (
                    OwnedPlace::new(file, seg, seg_end, failed),
                    (from, from_offset, base),
                    (start, end),
                    bound,
                )
            };
            let (log_start_offset, log_end_offset) = offsets;
            let (from, from_offset, base) = from;
            let (file, seg_end, end_pos) = (&place.file, place.end_offset, place.end_pos);
            // A direct-written segment is read into memory, from the ring of recent writes
            // or past the page cache, not sent from a page cache that would fill for it.
            let in_file =
                to == ReadTo::File && file.os_file().is_some() && !file.reads_past_page_cache();
            let read = |start: (u64, i64)| {
                let place = place.borrowed();
                let start = ReadStart::new(start, base);
                match in_file {
                    true => read_segment_in_file(&place, start, offset, max_bytes, bound),
                    false => read_segment(&place, start, offset, max_bytes, bound),
                }
            };
            let mut result = read((from, from_offset));
            if index_mismatch(&result, (from, from_offset), base) {
                tracing::warn!(segment = %place.path.display(), position = from, "offset index does not match the log; reading from the segment start");
                result = read((0, base));
            }
            match result? {
                SegmentRead::Data {
                    records,
                    next_offset,
                    end_position,
                } => {
                    if file.reads_past_page_cache() && end_position < end_pos {
                        // The next read in order starts at an index entry at most about
                        // `index_interval_bytes` before this one's end.
                        let next = end_position.saturating_sub(READ_SLACK_BYTES as u64);
                        let len = read_bytes(max_bytes).saturating_add(READ_SLACK_BYTES) as u64;
                        file.read_ahead(next, len.min(end_pos - next) as usize);
                    }
                    let position = end_position - records.len() as u64;
                    return Ok(FetchData {
                        records,
                        in_file: None,
                        next_offset,
                        log_start_offset,
                        log_end_offset,
                        stored_at: Some(SegmentPosition {
                            path: place.path,
                            position,
                        }),
                    });
                }
                SegmentRead::InFile {
                    position,
                    len,
                    record_count,
                    next_offset,
                } => {
                    return Ok(FetchData {
                        records: Bytes::new(),
                        in_file: Some(FileSlice::new(place.file, position, len, record_count)),
                        next_offset,
                        log_start_offset,
                        log_end_offset,
                        stored_at: Some(SegmentPosition {
                            path: place.path,
                            position,
                        }),
                    });
                }
                SegmentRead::Hidden => {
                    return Ok(FetchData {
                        records: Bytes::new(),
                        in_file: None,
                        next_offset: offset,
                        log_start_offset,
                        log_end_offset,
                        stored_at: None,
                    });
                }
                // Nothing at or after `offset` here: continue in the next segment.
                SegmentRead::End if seg_end > offset => {}
                SegmentRead::End => {
                    return Ok(FetchData {
                        records: Bytes::new(),
                        in_file: None,
                        next_offset: offset,
                        log_start_offset,
                        log_end_offset,
                        stored_at: None,
                    });
                }
            }
            offset = seg_end;
        }
    }

    /// The newest record timestamp in the log, or `None` if it holds no batch: the
    /// largest of its segments' newest timestamps (a closed segment's from its time index,
    /// which [`offset_for_timestamp`](Self::offset_for_timestamp) then checks against the
    /// batches when asked for it). With it, `offset_for_timestamp` finds the first record
    /// that has it, which is Kafka's ListOffsets MAX_TIMESTAMP (KIP-734).
    pub fn max_timestamp(&self) -> Result<Option<i64>, ReadError> {
        let mut max: Option<i64> = None;
        let mut next: Option<i64> = None;
        // One segment per lock, visited by offset as `offset_for_timestamp` does, so
        // opening closed segments never holds appends up for long.
        loop {
            let mut inner = self.lock();
            let first = *inner.segments.keys().next().expect("a log has a segment");
            let base = match next {
                None => first,
                Some(n) if n >= inner.next_offset => return Ok(max),
                Some(n) => inner
                    .segments
                    .range(..=n)
                    .next_back()
                    .map_or(first, |(b, _)| *b),
            };
            let seg_end = inner.end_of(base);
            next = Some(seg_end);
            let seg = inner.segments.get_mut(&base).expect("segment exists");
            seg.ensure_open(self.storage.as_ref(), &self.config, seg_end)
                .map_err(open_to_read)?;
            max = max.max(seg.max_timestamp());
            if seg_end >= inner.next_offset {
                return Ok(max);
            }
        }
    }

    /// The offset of the first record whose timestamp is at least `timestamp`, or `None`
    /// if every record is older.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<i64>, ReadError> {
        // Segments are visited by offset rather than from a list of bases taken once:
        // compaction may merge segments meanwhile, and a merged one holds offsets that a
        // stale list would skip.
        let mut next: Option<i64> = None;
        loop {
            let (place, base, floor_entry, last_entry, max_timestamp, log_start) = {
                let mut inner = self.lock();
                let first = *inner.segments.keys().next().expect("a log has a segment");
                let base = match next {
                    None => first,
                    Some(n) if n >= inner.next_offset => return Ok(None),
                    Some(n) => inner
                        .segments
                        .range(..=n)
                        .next_back()
                        .map_or(first, |(b, _)| *b),
                };
                let seg_end = inner.end_of(base);
                next = Some(seg_end);
                let log_start = inner.log_start_offset;
                let failed = inner.failed.is_some();
                let seg = inner.segments.get_mut(&base).expect("segment exists");
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
                let place = OwnedPlace::new(file, seg, seg_end, failed);
                (
                    place,
                    base,
                    floor_entry,
                    last_entry,
                    seg.max_timestamp(),
                    log_start,
                )
            };
            let place = place.borrowed();
            let path = place.path;
            let holds = |p: &TimeProbe| time_entry_holds(&place, base, p);
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
            let find = |start, min_offset| {
                find_timestamp(&place, ReadStart::new(start, base), min_offset, timestamp)
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
    }
}

/// Where a segment read happens: the file, its readable size, the offset its segment
/// ends at (the next segment's base, or the log end), and where the bytes this process
/// checked before writing them start ([`Segment::verified_from`](crate::segment::Segment)).
#[derive(Debug, Clone, Copy)]
struct SegmentPlace<'a> {
    file: &'a dyn StorageFile,
    path: &'a Path,
    end_pos: u64,
    end_offset: i64,
    verified_from: u64,
}

impl SegmentPlace<'_> {
    /// Checks the stored batch at `pos` (`batch`, exactly its framed length): length,
    /// magic, record count and offset delta always; its CRC only if this process did not
    /// check it before writing it. Kafka checks no CRC when it serves a fetch (consumers
    /// do); Weir checks every batch it did not write itself, so a segment damaged on disk
    /// before this process started is found by the broker, and spends no second CRC on
    /// the batches it checked at append (docs/ARCHITECTURE.md § How a Fetch answer reaches
    /// the socket).
    fn check(&self, pos: u64, batch: &[u8]) -> Result<BatchHeader, crate::BatchError> {
        match pos >= self.verified_from {
            true => batch::check_stored_layout(batch),
            false => batch::check_stored(batch),
        }
    }
}

/// A [`SegmentPlace`] taken out from under the log lock.
#[derive(Debug)]
struct OwnedPlace {
    file: Arc<dyn StorageFile>,
    path: PathBuf,
    end_pos: u64,
    end_offset: i64,
    verified_from: u64,
}

impl OwnedPlace {
    /// Where a read of `seg` happens: `file` is its open log file, `end_offset` the offset
    /// it ends at. A log that `failed` trusts nothing it wrote (what reached the disk
    /// after a failed write or sync may not be what was checked): every CRC is checked.
    fn new(
        file: Arc<dyn StorageFile>,
        seg: &segment::Segment,
        end_offset: i64,
        failed: bool,
    ) -> OwnedPlace {
        OwnedPlace {
            file,
            path: seg.log_path.clone(),
            end_pos: seg.size,
            end_offset,
            verified_from: if failed { seg.size } else { seg.verified_from },
        }
    }

    fn borrowed(&self) -> SegmentPlace<'_> {
        SegmentPlace {
            file: self.file.as_ref(),
            path: &self.path,
            end_pos: self.end_pos,
            end_offset: self.end_offset,
            verified_from: self.verified_from,
        }
    }
}

/// Where a segment read starts: a batch boundary `pos` and the base offset `expected`
/// there. From an offset-index entry, the batch there must have exactly that base offset
/// (`exact`); from the segment start, compaction may have removed the first batches, so
/// the first batch may start later.
#[derive(Debug, Clone, Copy)]
struct ReadStart {
    pos: u64,
    expected: i64,
    exact: bool,
}

impl ReadStart {
    fn new((pos, expected): (u64, i64), segment_base: i64) -> Self {
        ReadStart {
            pos,
            expected,
            exact: (pos, expected) != (0, segment_base),
        }
    }

    /// A read going on after batches already checked, where compaction may have left a
    /// gap.
    fn after(pos: u64, expected: i64) -> Self {
        ReadStart {
            pos,
            expected,
            exact: false,
        }
    }
}

/// Smallest read issued.
const MIN_READ_BYTES: usize = 16 * 1024;
/// Read beyond `max_bytes` to cover the gap between the index entry a read starts from and
/// the wanted batch (about one `index_interval_bytes`, 4 KiB by default) in the same
/// `pread`.
const READ_SLACK_BYTES: usize = 8 * 1024;

/// How many bytes a read of `max_bytes` asks its file for at first.
fn read_bytes(max_bytes: usize) -> usize {
    max_bytes
        .saturating_add(READ_SLACK_BYTES)
        .max(MIN_READ_BYTES)
}

/// Where a read puts the batches it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadTo {
    /// Read into memory ([`FetchData::records`]).
    Memory,
    /// Left in their segment file ([`FetchData::in_file`]), for `sendfile`.
    File,
}

/// What one segment yielded for a read.
#[derive(Debug)]
enum SegmentRead {
    /// Whole batches from the one holding the wanted offset on.
    Data {
        records: Bytes,
        next_offset: i64,
        end_position: u64,
    },
    /// The same, left in the file: `len` bytes from `position`.
    InFile {
        position: u64,
        len: usize,
        record_count: u64,
        next_offset: i64,
    },
    /// The batch holding the wanted offset reaches the upper bound: nothing is visible.
    Hidden,
    /// No batch in this segment ends at or after the wanted offset.
    End,
}

/// Reads from `start` (a batch boundary at or before `offset`) up to the end of `place`
/// and returns the batches from the one holding `offset` on, within `max_bytes` (but at
/// least one). Every batch read is checked, skipped ones included: length, CRC, and its
/// base offset (outside the CRC) against its neighbours, see [`offset_fault`]. A damaged
/// batch after batches already taken ends the read with those.
fn read_segment(
    place: &SegmentPlace<'_>,
    start: ReadStart,
    offset: i64,
    max_bytes: usize,
    upper_bound: Option<i64>,
) -> Result<SegmentRead, ReadError> {
    let (file, path, end_pos) = (place.file, place.path, place.end_pos);
    let corrupt = |position: u64, source| ReadError::Corrupt {
        path: path.to_path_buf(),
        position,
        source,
    };
    let (mut pos, mut expected_base) = (start.pos, start.expected);
    let exact_at = start.exact.then_some(start.pos);
    let mut want = read_bytes(max_bytes);
    while pos < end_pos {
        let len = (end_pos - pos).min(want as u64) as usize;
        let buf = file
            .read_bytes_at(len, pos)
            .map_err(|e| ReadError::io(path.to_path_buf(), e))?;
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
            // After a gap the next batch's base offset is read too (see `offset_fault`).
            let lookahead = if end_pos - (here + batch_len as u64) >= 8 {
                8
            } else {
                0
            };
            let base_offset = i64::from_be_bytes(rest[..8].try_into().expect("8 bytes"));
            let gap = base_offset > expected_base;
            let needed = batch_len + if gap { lookahead } else { 0 };
            if rest.len() < needed {
                if take_from.is_none() {
                    want = want.max(needed);
                }
                break;
            }
            // Stop before a batch that would pass the limit, without checking it: the
            // next read starts there.
            if take_from.is_some_and(|start| at + batch_len - start > max_bytes) {
                break;
            }
            let header = match place.check(here, &rest[..batch_len]) {
                Ok(header) => header,
                Err(_) if take_from.is_some() => break,
                Err(e) => return Err(corrupt(here, e)),
            };
            let next_base = (gap && lookahead > 0).then(|| {
                i64::from_be_bytes(rest[batch_len..batch_len + 8].try_into().expect("8 bytes"))
            });
            let exact = exact_at == Some(here);
            if let Some(fault) = offset_fault(&header, expected_base, exact, next_base, place) {
                if take_from.is_some() {
                    break;
                }
                return Err(corrupt(here, fault));
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

/// How many bytes of batches a read that leaves them in their file checks at a time: a
/// buffer that stays in the CPU's cache while its batches' CRCs are computed.
pub(crate) const IN_FILE_CHECK_BYTES: usize = 128 * 1024;

/// Batches shorter than this that a read leaving them in their file has in memory anyway
/// (from its first check) are returned in memory: a `sendfile` of a few KiB costs more
/// than the copy.
pub(crate) const MIN_IN_FILE_BYTES: usize = 32 * 1024;

/// [`read_segment`] for batches left in the file: the same batches, every one checked the
/// same way, read [`IN_FILE_CHECK_BYTES`] at a time into buffers that are dropped once
/// checked, so a fetch of many megabytes costs the reads and the CRCs, not a buffer of
/// its size. A damaged batch after batches already taken ends the read with those, as in
/// `read_segment`.
fn read_segment_in_file(
    place: &SegmentPlace<'_>,
    start: ReadStart,
    offset: i64,
    max_bytes: usize,
    upper_bound: Option<i64>,
) -> Result<SegmentRead, ReadError> {
    let chunk = |start, offset, room: usize| {
        read_segment(
            place,
            start,
            offset,
            room.min(IN_FILE_CHECK_BYTES),
            upper_bound,
        )
    };
    let (records, mut next_offset, mut end_position) = match chunk(start, offset, max_bytes)? {
        SegmentRead::Data {
            records,
            next_offset,
            end_position,
        } => (records, next_offset, end_position),
        nothing => return Ok(nothing),
    };
    let position = end_position - records.len() as u64;
    let mut len = records.len();
    let mut record_count = crate::log::record_count(&records);
    while len < max_bytes && end_position < place.end_pos {
        let room = max_bytes - len;
        if let Some(header) = verified_hop(place, end_position, next_offset)? {
            // Left whole in the file, read by its header alone: it ends the read as a
            // checked batch would, at the limit or the upper bound.
            let batch_len = header.total_bytes();
            if batch_len > room || upper_bound.is_some_and(|u| header.last_offset() >= u) {
                break;
            }
            record_count += header.record_count.max(0) as u64;
            len += batch_len;
            next_offset = header.next_offset();
            end_position += batch_len as u64;
            continue;
        }
        match chunk(
            ReadStart::after(end_position, next_offset),
            next_offset,
            room,
        ) {
            // At least one batch comes back: one that does not fit the room ends the read
            // before it, as `read_segment` ends at a batch that would pass the limit.
            Ok(SegmentRead::Data {
                records,
                next_offset: next,
                end_position: end,
            }) if records.len() <= room && end - records.len() as u64 == end_position => {
                record_count += crate::log::record_count(&records);
                len += records.len();
                (next_offset, end_position) = (next, end);
            }
            Ok(_) | Err(ReadError::Corrupt { .. }) => break,
            Err(e) => return Err(e),
        }
    }
    if len == records.len() && len < MIN_IN_FILE_BYTES {
        // All there is, already in memory, and too short to be worth a `sendfile`.
        return Ok(SegmentRead::Data {
            records,
            next_offset,
            end_position,
        });
    }
    Ok(SegmentRead::InFile {
        position,
        len,
        record_count,
        next_offset,
    })
}

/// Batches at least this long that a read leaving them in their file checked before it
/// wrote them ([`SegmentPlace::verified_from`]) are passed over by their header alone:
/// nothing of them is read into memory, so such a fetch is `sendfile` and a header read a
/// batch. Shorter ones are read through the check's buffer as before (without their CRC):
/// a read per header would cost more than reading them.
const HOP_MIN_BYTES: usize = 32 * 1024;

/// The header of the batch at `pos` if the read may pass over it without reading it: at
/// least [`HOP_MIN_BYTES`] long, checked by this process before it was written, whole
/// within the segment, and continuing the offsets before it (`expected`, the next offset
/// the read wants). `None` otherwise: the caller reads it through the check, which also
/// reports a batch that is not what it should be.
fn verified_hop(
    place: &SegmentPlace<'_>,
    pos: u64,
    expected: i64,
) -> Result<Option<BatchHeader>, ReadError> {
    if pos < place.verified_from || place.end_pos - pos < HOP_MIN_BYTES as u64 {
        return Ok(None);
    }
    let mut head = [0u8; batch::HEADER_BYTES];
    place
        .file
        .read_exact_at(&mut head, pos)
        .map_err(|e| ReadError::io(place.path.to_path_buf(), e))?;
    let Ok(len) = batch::framed_len(&head) else {
        return Ok(None);
    };
    let header = BatchHeader::parse(&head);
    let whole = len >= HOP_MIN_BYTES && pos + len as u64 <= place.end_pos;
    let end = header
        .base_offset
        .checked_add(i64::from(header.last_offset_delta) + 1);
    let continues = header.base_offset >= expected
        && header.last_offset_delta >= 0
        && end.is_some_and(|end| end <= place.end_offset);
    let counted = (0..=batch::MAX_RECORDS_PER_BATCH).contains(&header.record_count);
    Ok((whole && continues && counted && header.magic == batch::MAGIC_V2).then_some(header))
}

/// Checks a batch's base offset, which lies outside its CRC (Kafka's format), against
/// what surrounds it. Batches in a segment have increasing offsets: each starts at or
/// after the end of the one before (`expected`) and ends before the segment's end. They
/// continue each other exactly unless compaction removed the batches between them, so a
/// gap is believed only if the batch after it (`next_base`, when there is one) starts at
/// or after this batch's end: a base offset damaged upwards makes its batch overlap the
/// next one (in never-compacted data, where a gap cannot be, any upward damage does), or
/// pass the segment's end. A read that starts at an offset-index entry also requires the
/// batch there to start exactly at the entry's offset (`exact`), as every entry was made
/// for the batch at its position.
fn offset_fault(
    header: &BatchHeader,
    expected: i64,
    exact: bool,
    next_base: Option<i64>,
    place: &SegmentPlace<'_>,
) -> Option<crate::BatchError> {
    let found = header.base_offset;
    let wrong = found < expected
        || (exact && found != expected)
        || header.last_offset() >= place.end_offset
        || (found > expected && next_base.is_some_and(|n| n < header.next_offset()));
    wrong.then_some(crate::BatchError::UnexpectedBaseOffset { found, expected })
}

/// Scans a segment from `start` for the first record at or after `min_offset` whose
/// timestamp is at least `timestamp`.
fn find_timestamp(
    place: &SegmentPlace<'_>,
    start: ReadStart,
    mut min_offset: i64,
    timestamp: i64,
) -> Result<Option<i64>, ReadError> {
    let path = place.path;
    let mut start = start;
    loop {
        let SegmentRead::Data {
            records,
            next_offset,
            end_position,
        } = read_segment(place, start, min_offset, MIN_READ_BYTES, None)?
        else {
            return Ok(None);
        };
        let data = FetchData {
            records,
            in_file: None,
            next_offset,
            log_start_offset: 0,
            log_end_offset: 0,
            stored_at: None,
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
        start = ReadStart::after(end_position, next_offset);
        min_offset = next_offset;
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
    place: &SegmentPlace<'_>,
    segment_base: i64,
    probe: &TimeProbe,
) -> Result<bool, ReadError> {
    let (offset, timestamp) = (probe.offset, probe.timestamp);
    let start = ReadStart::new(probe.from, segment_base);
    match read_segment(place, start, offset, 1, None) {
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
