//! Why a batch's bytes were refused.

use std::io;

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
    #[error(
        "base_offset {base_offset} + last_offset_delta {last_offset_delta} is past the \
         largest offset"
    )]
    OffsetOverflow {
        base_offset: i64,
        last_offset_delta: i32,
    },
    #[error("unknown compression codec {0} in batch attributes")]
    UnknownCompression(i16),
    #[error("record {index} is malformed: {reason}")]
    BadRecord { index: usize, reason: String },
    #[error("record_count is {declared} but the records section ends after {found} records")]
    RecordCountMismatch { declared: i32, found: usize },
    #[error("{bytes} bytes follow the {declared} records that record_count declares")]
    TrailingBytes { declared: i32, bytes: usize },
    #[error("{codec} decompression failed: {source}")]
    Decompress {
        codec: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{codec} compression failed: {source}")]
    Compress {
        codec: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("decompressed records exceed the limit of {max} bytes")]
    DecompressedTooLarge { max: usize },
    #[error("a batch must hold at least one record")]
    Empty,
    /// A control batch whose record is not a control record Kafka defines.
    #[error("bad control record: {reason}")]
    BadControlRecord { reason: String },
    /// Control batches (transaction markers) are written by the partition leader only.
    #[error("a control batch may only be written by the broker, not sent by a producer")]
    ControlBatchFromProducer,
    /// Read back from a segment: the base offset (outside the CRC, by the format's design)
    /// does not continue the offsets before it, or does not match the index entry that
    /// led to it.
    #[error("batch has base offset {found} where offset {expected} was expected")]
    UnexpectedBaseOffset { found: i64, expected: i64 },
}
