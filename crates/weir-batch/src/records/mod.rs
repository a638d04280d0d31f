//! The records inside a RecordBatch v2: [`RecordBatchBuilder`] encodes producer records
//! into a complete batch, [`decode_records`] decodes a batch back into records,
//! [`walk_records`] walks a records section without decoding headers (for callers that
//! keep or drop whole records, as the log's compaction does), and
//! [`check_uncompressed_records`] and [`check_compressed_records`] are the walk
//! [`validate`](crate::validate) and `validate_untrusted` do on the append path: every
//! check [`decode_records`] makes, without keeping anything.
//!
//! One record, as it follows the batch header (or fills the decompressed records section):
//!
//! ```text
//! length           varint   bytes after this field
//! attributes       i8       reserved, written as 0, ignored when read
//! timestamp_delta  varlong  from the batch's base_timestamp
//! offset_delta     varint   from the batch's base_offset
//! key_length       varint   -1 for a null key
//! key              bytes
//! value_length     varint   -1 for a null value
//! value            bytes
//! header_count     varint
//! headers          header_count times:
//!                    key_length varint, key (UTF-8, never null),
//!                    value_length varint (-1 for null), value
//! ```
//!
//! Every length read from a batch is checked against the bytes that remain before it is
//! used, and before it sizes any allocation.
//!
//! This file holds the record types and the format's constants. The work is split by
//! what it does: `builder` encodes, `decode` reads records back, `walk` is the walk for
//! callers that keep or drop whole records, `check` holds the append path's record
//! checks, and `fields` reads one record's fields for `decode`, `walk` and `check`, with
//! the `RecordFault` they report a malformed record by.

use bytes::Bytes;

use crate::MAX_BATCH_BYTES;

mod builder;
mod check;
mod decode;
mod fields;
#[cfg(test)]
mod test_support;
mod walk;

pub use builder::RecordBatchBuilder;
pub(crate) use check::{check_compressed_records, check_uncompressed_records};
pub use decode::{decode_records, records_section};
pub use walk::{RawRecord, walk_records};

/// Most bytes the records section of one compressed batch may decompress to: four times
/// [`MAX_BATCH_BYTES`], which covers the 2-5x that real payloads compress by, while a
/// batch that would expand further (a decompression bomb) is refused before it can take
/// more memory than this. The builder holds compressed batches to the same limit, so
/// everything it writes can be read back.
pub const MAX_DECOMPRESSED_BYTES: usize = 4 * MAX_BATCH_BYTES;

/// Kafka's "none" values for the producer fields and the leader epoch.
const NO_PRODUCER_ID: i64 = -1;
const NO_PRODUCER_EPOCH: i16 = -1;
const NO_SEQUENCE: i32 = -1;
const NO_PARTITION_LEADER_EPOCH: i32 = -1;
/// The length Kafka writes for a null key, value or header value.
const NULL_LENGTH: i32 = -1;
/// Record attributes are reserved in v2; producers write 0.
const RECORD_ATTRIBUTES: u8 = 0;

/// A record header: a UTF-8 key and a nullable value. Keys may repeat within a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key: String,
    pub value: Option<Bytes>,
}

/// A record as a producer supplies it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
    /// Milliseconds since the Unix epoch, by the producer's clock (CreateTime).
    pub timestamp: i64,
}

impl Record {
    /// The record's parts, borrowed.
    pub fn view(&self) -> RecordView<'_> {
        RecordView {
            key: self.key.as_deref(),
            value: self.value.as_deref(),
            headers: &self.headers,
            timestamp: self.timestamp,
        }
    }
}

/// A record's parts, borrowed: what [`RecordBatchBuilder::try_push_view`] encodes, for a
/// caller whose keys and values live elsewhere (one shared buffer, the caller's own
/// types) and would otherwise build a [`Record`] (and take a reference count on each
/// `Bytes`) only to have it copied into the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecordView<'a> {
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [Header],
    /// Milliseconds since the Unix epoch, by the producer's clock (CreateTime).
    pub timestamp: i64,
}

/// A record read back from a batch, with its absolute offset and effective timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedRecord {
    pub offset: i64,
    /// The record's own timestamp, or the batch's append time under LogAppendTime.
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}
