//! [`BatchReader`]: a segment's batches in order, read in large chunks through a
//! snapshot's handle and checked as reads check them. Separate from `read.rs`, which
//! serves fetches through the indexes: compaction reads whole segments front to back,
//! and every step of a pass (key map, survey, rewrite) does so through this reader.

use bytes::{Bytes, BytesMut};

use super::snapshot::SegmentView;
use crate::batch::{self, BatchError, BatchHeader, LOG_OVERHEAD};
use crate::error::{MaintenanceError, ReadError};

/// Segment bytes read per step when compaction scans a segment.
const READ_CHUNK_BYTES: usize = 1 << 20;

/// Reads a segment's batches in order, checking each as reads do (framing, CRC, offsets
/// increasing and within the segment).
pub(super) struct BatchReader<'a> {
    view: &'a SegmentView,
    pos: u64,
    expected: i64,
    chunk: Bytes,
    chunk_start: u64,
}

impl<'a> BatchReader<'a> {
    pub(super) fn new(view: &'a SegmentView) -> Self {
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
    pub(super) fn next(&mut self) -> Result<Option<(u64, BatchHeader, Bytes)>, MaintenanceError> {
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
