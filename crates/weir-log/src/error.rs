//! Error types, one enum per operation family. Four kinds stay apart: bad input (the
//! caller's fault), retriable I/O, corruption (names the file and position), and bugs
//! (those panic and are not here).

use std::io;
use std::path::PathBuf;

/// A batch's bytes are not a valid RecordBatch v2. Always the sender's (or the disk's)
/// fault; the message says which rule was broken.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("batch truncated: needs {needed} bytes, {available} present")]
    Truncated { needed: usize, available: usize },
    #[error("batch_length {batch_length} is below the minimum {min}")]
    LengthTooSmall { batch_length: i32, min: i32 },
    #[error("batch of {bytes} bytes is over the limit of {max} bytes")]
    TooLarge { bytes: usize, max: usize },
    #[error("batch_length frames {framed} bytes but {actual} bytes were given")]
    LengthMismatch { framed: usize, actual: usize },
    #[error("unsupported batch magic {0}; only RecordBatch v2 (magic 2) is accepted")]
    UnsupportedMagic(i8),
    #[error("CRC-32C mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("record count {count} is out of range 0..={max}")]
    BadRecordCount { count: i32, max: i32 },
    #[error("last_offset_delta {last_offset_delta} does not fit record_count {record_count}")]
    BadOffsetDelta {
        last_offset_delta: i32,
        record_count: i32,
    },
    #[error("unknown compression codec {0} in batch attributes")]
    UnknownCompression(i16),
    #[error("record {index} is malformed: {reason}")]
    BadRecord { index: usize, reason: String },
    #[error("record_count is {declared} but the records section ends after {found} records")]
    RecordCountMismatch { declared: i32, found: usize },
    #[error("{bytes} bytes follow the {declared} records that record_count declares")]
    TrailingBytes { declared: i32, bytes: usize },
    #[error("{codec} decompression failed")]
    Decompress {
        codec: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{codec} compression failed")]
    Compress {
        codec: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("decompressed records exceed the limit of {max} bytes")]
    DecompressedTooLarge { max: usize },
    #[error("a batch must hold at least one record")]
    Empty,
    /// Read back from a segment: the base offset (outside the CRC, by the format's design)
    /// does not continue the offsets before it, or does not match the index entry that
    /// led to it.
    #[error("batch has base offset {found} where offset {expected} was expected")]
    UnexpectedBaseOffset { found: i64, expected: i64 },
}

/// Why an append was refused or failed. Nothing of a refused append is written.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("batch {index} (at byte {position} of the request) is invalid: {source}")]
    InvalidBatch {
        index: usize,
        position: usize,
        #[source]
        source: BatchError,
    },
    #[error("batch of {bytes} bytes exceeds max.message.bytes = {max}")]
    MessageTooLarge { bytes: usize, max: usize },
    #[error("nothing to append: the request holds no batches")]
    Empty,
    #[error("replicated batch starts at offset {base_offset} but the log ends at {log_end_offset}")]
    OffsetMismatch {
        base_offset: i64,
        log_end_offset: i64,
    },
    #[error("leader epoch {epoch} is older than the log's latest epoch {latest}")]
    StaleLeaderEpoch { epoch: i32, latest: i32 },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the log is failed after an earlier write or fsync error ({reason}); reopen it to recover"
    )]
    Failed { reason: String },
}

/// Why a read returned no data.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(
        "offset {offset} is out of range; valid offsets are {log_start_offset}..={log_end_offset}"
    )]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    #[error("corrupt batch in {path} at byte {position}: {source}")]
    Corrupt {
        path: PathBuf,
        position: u64,
        #[source]
        source: BatchError,
    },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Why a log could not be opened (or recovered).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

/// Why a maintenance operation (truncate, roll, retention, delete-records, flush,
/// checkpoint) failed.
#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "offset {offset} is out of range; valid offsets are {log_start_offset}..={log_end_offset}"
    )]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    #[error(
        "the log is failed after an earlier write or fsync error ({reason}); reopen it to recover"
    )]
    Failed { reason: String },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// A checkpoint file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("checkpoint {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

macro_rules! io_ctor {
    ($ty:ident) => {
        impl $ty {
            pub(crate) fn io(path: PathBuf, source: io::Error) -> Self {
                $ty::Io { path, source }
            }
        }
    };
}
io_ctor!(AppendError);
io_ctor!(ReadError);
io_ctor!(OpenError);
io_ctor!(MaintenanceError);
io_ctor!(CheckpointError);
