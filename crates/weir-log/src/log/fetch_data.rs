//! What a read of the log returns: [`FetchData`] (whole batches, in memory or left in
//! their segment file as a [`FileSlice`] for `sendfile`) and [`SegmentPosition`]. Kept
//! apart from `read.rs`, which builds them, because they are plain result types the
//! log's users hold and send: nothing here touches a `Log`.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use crate::batch::{self, BatchHeader, LOG_OVERHEAD};
use crate::storage::StorageFile;

/// Whole batches read from the log, as one zero-copy buffer, or, from
/// [`Log::read_in_file`](crate::Log::read_in_file), left where they lie in their segment
/// file.
#[derive(Debug, Clone)]
pub struct FetchData {
    /// Concatenated RecordBatch v2 bytes; empty if there was nothing to read, or if the
    /// read left them in their file (`in_file`).
    pub records: Bytes,
    /// From [`Log::read_in_file`](crate::Log::read_in_file): the batches, every one
    /// checked, where they lie in their segment file (`records` is then empty).
    pub in_file: Option<FileSlice>,
    /// Offset after the last returned batch (the offset to read next).
    pub next_offset: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    /// Where `records` were read from, when they came from a segment file: for reports
    /// about a batch in them (a reader that cannot decode one names its file position).
    pub stored_at: Option<SegmentPosition>,
}

/// A byte position in a segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentPosition {
    /// The segment's `.log` file.
    pub path: PathBuf,
    /// Byte position in it (of the first batch of a [`FetchData`]).
    pub position: u64,
}

impl FetchData {
    /// Bytes of batches read, in memory or left in their file.
    pub fn len(&self) -> usize {
        self.records.len() + self.in_file.as_ref().map_or(0, FileSlice::len)
    }

    /// True if nothing was read.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records in the batches read (from their headers).
    pub fn record_count(&self) -> u64 {
        match &self.in_file {
            Some(slice) => slice.record_count,
            None => record_count(&self.records),
        }
    }

    /// The batches in `records`, each a slice of the same buffer.
    pub fn batches(&self) -> impl Iterator<Item = Bytes> + '_ {
        let mut rest = self.records.clone();
        std::iter::from_fn(move || {
            if rest.len() < LOG_OVERHEAD {
                return None;
            }
            let len = batch::framed_len(&rest).ok()?.min(rest.len());
            Some(rest.split_to(len))
        })
    }
}

/// Records in concatenated, checked batches (from their headers).
pub(crate) fn record_count(mut batches: &[u8]) -> u64 {
    let mut count = 0;
    while batches.len() >= batch::HEADER_BYTES {
        let Ok(len) = batch::framed_len(batches) else {
            break;
        };
        count += BatchHeader::parse(batches).record_count.max(0) as u64;
        batches = &batches[len.min(batches.len())..];
    }
    count
}

/// Checked batches left in their segment file: `len` bytes from `position`, for a
/// listener to send with `sendfile` (the bytes go from the page cache to the socket
/// without passing through the broker). The slice keeps the file open, so a segment that
/// retention deletes meanwhile is still there to send; segments are append-only and
/// nothing below the high watermark is ever truncated or rewritten in place, so what
/// was checked is what is sent.
#[derive(Clone)]
pub struct FileSlice {
    file: Arc<dyn StorageFile>,
    position: u64,
    len: usize,
    record_count: u64,
}

impl FileSlice {
    /// Only for files that are OS files ([`StorageFile::os_file`]).
    pub(crate) fn new(
        file: Arc<dyn StorageFile>,
        position: u64,
        len: usize,
        record_count: u64,
    ) -> FileSlice {
        debug_assert!(
            file.os_file().is_some(),
            "a file slice of a file the OS does not have"
        );
        FileSlice {
            file,
            position,
            len,
            record_count,
        }
    }

    /// The open segment file, to send from.
    pub fn file(&self) -> &std::fs::File {
        self.file
            .os_file()
            .expect("file slices are made of OS files only")
    }

    /// Where the batches start in the file.
    pub fn position(&self) -> u64 {
        self.position
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The batches read into memory, for a writer that cannot send from a file (TLS).
    pub fn read(&self) -> std::io::Result<Bytes> {
        self.file.read_bytes_at(self.len, self.position)
    }
}

impl std::fmt::Debug for FileSlice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSlice")
            .field("position", &self.position)
            .field("len", &self.len)
            .field("record_count", &self.record_count)
            .finish_non_exhaustive()
    }
}
