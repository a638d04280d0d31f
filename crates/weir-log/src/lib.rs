//! Segment-file log storage for one Weir partition.
//!
//! A [`Log`] is a directory of segments holding Kafka RecordBatch v2 bytes, with sparse
//! memory-mapped offset and time indexes, a durability policy, crash recovery that scans
//! only what was not known to be flushed, truncation, retention, compaction and the
//! checkpoints that replication needs. [`framed_file`] is the frame and atomic replace of
//! those checkpoints, and of weir-cluster's small files too (`node.weir`,
//! `metadata.weir`, the quorum's state files): one implementation for every small durable
//! file of a data directory.
//!
//! Architecture invariant: this crate is synchronous and knows nothing of tokio, gRPC,
//! protobuf or the network. Everything it writes is checked (CRC, length) before it is
//! written and after it is read back. Callers in async code run its blocking calls on a
//! blocking thread.

mod append;
pub mod checkpoint;
mod compaction;
pub mod config;
mod epoch;
pub mod error;
pub mod framed_file;
pub mod index;
mod log;
mod maintenance;
pub mod producers;
mod read;
mod recovery;
mod segment;
pub mod storage;
mod transactions;
pub mod txn_index;

/// The RecordBatch v2 codec (the `weir-batch` crate), re-exported for the log's users.
pub use weir_batch as batch;
pub use weir_batch::compression;

pub use append::{ValidatedBatches, check_request};
pub use batch::{BatchHeader, DecodedRecord, Header, Record, RecordBatchBuilder, decode_records};
pub use compaction::{
    CompactionOutcome, KEY_MAP_ENTRY_OVERHEAD_BYTES, MAX_KEY_MAP_BYTES, MIN_CLEANABLE_DIRTY_RATIO,
};
pub use compression::Compression;
pub use config::{FlushPolicy, LogConfig};
pub use error::{
    AppendError, BatchError, CheckpointError, MaintenanceError, OffsetProblem, OpenError, ReadError,
};
pub use log::{AppendInfo, EpochEntry, FetchData, FileSlice, Log, LogOffsets, SegmentPosition};
pub use maintenance::RetentionOutcome;
pub use producers::{CompletedTxn, OngoingTxn, Verification};
pub use read::ReadTo;
pub use txn_index::AbortedTxn;
