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
    /// A follower's `append_replicated` refused a batch for its offsets (the request as a
    /// whole was refused; nothing of it was written).
    #[error("replicated batch {index} (offsets {base_offset}..={last_offset}) {problem}")]
    OffsetMismatch {
        /// Which batch of the request, counting from 0.
        index: usize,
        base_offset: i64,
        last_offset: i64,
        problem: OffsetProblem,
    },
    #[error("leader epoch {epoch} is older than the log's latest epoch {latest}")]
    StaleLeaderEpoch { epoch: i32, latest: i32 },
    /// An idempotent producer's batch does not continue its sequence, or comes from a
    /// fenced instance (see `producers`). Nothing was written.
    #[error(transparent)]
    Sequence(#[from] crate::producers::SequenceError),
    /// An idempotent producer's batch came with other batches for the same partition: its
    /// duplicate check covers one batch per request, as Kafka's.
    #[error(
        "a batch with a producer id must be the only batch for its partition in a request ({batches} were sent)"
    )]
    IdempotentBatchNotAlone { batches: usize },
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

impl AppendError {
    /// Whether the write failed for want of space (ENOSPC, or EDQUOT: a quota on the
    /// log's device). The write was undone (else the log is failed and this is
    /// [`AppendError::Failed`] next time), so the same append succeeds once space is freed.
    pub fn is_storage_full(&self) -> bool {
        matches!(self, AppendError::Io { source, .. } if no_space(source))
    }
}

/// ENOSPC, or EDQUOT (a quota on the log's device): a write that space would let through.
pub(crate) fn no_space(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// Why [`AppendError::OffsetMismatch`] refused a replicated batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OffsetProblem {
    /// The first batch overlaps what the log holds: the follower diverged or is retrying
    /// a fetch it already appended; it must truncate or fetch from its log end.
    #[error(
        "starts below the log end {log_end_offset}: it overlaps what the log holds (truncate first, or fetch from the log end)"
    )]
    BelowLogEnd { log_end_offset: i64 },
    /// A batch starts before the batch ahead of it in the request ends.
    #[error(
        "starts below offset {previous_end}, where the batch before it in the request ends: batches must come in increasing offset order"
    )]
    OutOfOrder { previous_end: i64 },
    /// The batch ends more than 2^32 offsets past the start of any segment it could go
    /// in, so no segment's 32-bit relative offsets can index it. A leader's own batches
    /// never are that far apart; a follower whose log ends far below the leader's log
    /// start must restart its log there first.
    #[error(
        "ends more than 2^32 offsets past offset {segment_base}, where its segment would start: no segment can index it"
    )]
    TooFar { segment_base: i64 },
    /// `base_offset + last_offset_delta` does not fit an `i64`.
    #[error("ends past the largest offset")]
    Overflow,
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

impl MaintenanceError {
    /// Whether a write failed for want of space ([`AppendError::is_storage_full`]).
    pub fn is_storage_full(&self) -> bool {
        match self {
            MaintenanceError::Io { source, .. }
            | MaintenanceError::Checkpoint(CheckpointError::Io { source, .. }) => no_space(source),
            _ => false,
        }
    }
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

impl CheckpointError {
    /// Whether it failed for want of space ([`AppendError::is_storage_full`]).
    pub fn is_storage_full(&self) -> bool {
        matches!(self, CheckpointError::Io { source, .. } if no_space(source))
    }
}

impl From<crate::framed_file::FramedFileError> for CheckpointError {
    fn from(e: crate::framed_file::FramedFileError) -> Self {
        use crate::framed_file::FramedFileError;
        match e {
            FramedFileError::Io { path, source } => CheckpointError::Io { path, source },
            FramedFileError::Corrupt { path, source } => CheckpointError::Corrupt {
                path,
                reason: source.to_string(),
            },
        }
    }
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
