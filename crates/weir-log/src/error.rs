//! Error types, one enum per operation family. Four kinds stay apart: bad input (the
//! caller's fault), retriable I/O, corruption (names the file and position), and bugs
//! (those panic and are not here).

use std::io;
use std::path::PathBuf;

pub use weir_batch::BatchError;

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
