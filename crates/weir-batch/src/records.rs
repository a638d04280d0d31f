//! The records inside a RecordBatch v2: [`RecordBatchBuilder`] encodes producer records
//! into a complete batch, [`decode_records`] decodes a batch back into records,
//! [`walk_records`] walks a records section without decoding headers (for callers that
//! keep or drop whole records, as the log's compaction does), and
//! [`check_uncompressed_records`] and [`check_compressed_records`] are the walk
//! [`validate`] and `validate_untrusted` do on the append path: every check
//! [`decode_records`] makes, without keeping anything.
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

use std::fmt;
use std::ops::Range;

use bytes::{Bytes, BytesMut};

use super::varint::{
    MAX_VARINT_BYTES, MAX_VARLONG_BYTES, VarintError, put_varint, read_varint, read_varlong,
    varint_len, varlong_len, write_varint, write_varlong,
};
use super::{
    BatchHeader, CONTROL_BIT, HEADER_BYTES, LOG_OVERHEAD, MAGIC_V2, MAX_BATCH_BYTES,
    MAX_RECORDS_PER_BATCH, TIMESTAMP_TYPE_BIT, TRANSACTIONAL_BIT, TimestampType, check_stored,
    validate, write_header,
};
use crate::compression::Compression;
use crate::error::BatchError;

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
/// Smallest encoded record: length, attributes, timestamp delta, offset delta, key length,
/// value length and header count, one byte each. Bounds how many records bytes can hold.
const MIN_RECORD_BYTES: usize = 7;
/// Smallest encoded header: a key length and a value length, one byte each.
const MIN_HEADER_BYTES: usize = 2;
/// Most bytes of a record before its key's bytes, plus the value's length: the record
/// length, attributes, timestamp delta, offset delta, key length and value length at their
/// widest. The builder assembles these on the stack and appends them in one copy.
const RECORD_HEAD_BYTES: usize = 4 * MAX_VARINT_BYTES + 1 + MAX_VARLONG_BYTES;
/// First capacity of a builder's buffer: the Java producer's default `batch.size`, so a
/// typical batch is encoded without reallocating.
const DEFAULT_BUILDER_CAPACITY_BYTES: usize = 16 * 1024;
/// Bounds of the first window [`check_compressed_records`] decompresses into, sized as
/// [`ASSUMED_WALK_RATIO`] times the compressed section: small batches zero little, large
/// ones read in pieces big enough that the decoder's per-call overhead does not count.
const MIN_WALK_WINDOW_BYTES: usize = 4 * 1024;
const MAX_WALK_WINDOW_BYTES: usize = 64 * 1024;
/// Guess at the compression ratio, only to size the first walk window.
const ASSUMED_WALK_RATIO: usize = 4;

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

/// Builds one RecordBatch v2 from records, the way a Kafka producer does: base offset 0
/// (the log assigns the real one), no partition leader epoch, offset deltas 0, 1, 2, ...
/// and timestamp deltas from the first record's timestamp.
///
/// Records are encoded as they are pushed, into one buffer that starts with room for the
/// header; [`build`](Self::build) compresses that buffer's records section if asked and
/// fills in the header and CRC.
pub struct RecordBatchBuilder {
    compression: Compression,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    log_append_time: Option<i64>,
    /// The transactional and control attribute bits.
    flags: i16,
    /// `HEADER_BYTES` of room for the header, then the encoded records.
    buf: Vec<u8>,
    record_count: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    /// Why the first refused [`push`](Self::push) was refused; `build` returns it.
    error: Option<BatchError>,
}

impl fmt::Debug for RecordBatchBuilder {
    // The buffer can be megabytes; show its size, not its bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordBatchBuilder")
            .field("compression", &self.compression)
            .field("producer_id", &self.producer_id)
            .field("producer_epoch", &self.producer_epoch)
            .field("base_sequence", &self.base_sequence)
            .field("log_append_time", &self.log_append_time)
            .field("flags", &self.flags)
            .field("record_count", &self.record_count)
            .field("estimated_size", &self.buf.len())
            .field("error", &self.error)
            .finish()
    }
}

impl RecordBatchBuilder {
    /// An empty batch whose records section will be compressed with `compression`.
    pub fn new(compression: Compression) -> RecordBatchBuilder {
        RecordBatchBuilder::with_capacity(compression, DEFAULT_BUILDER_CAPACITY_BYTES)
    }

    /// An empty batch whose buffer has room for `capacity_bytes` (header included, at
    /// most [`MAX_BATCH_BYTES`]) before it grows: a producer that closes batches at a
    /// known size allocates each batch's buffer once instead of doubling it up from
    /// 16 KiB (which copies about as many bytes again as the batch holds).
    pub fn with_capacity(compression: Compression, capacity_bytes: usize) -> RecordBatchBuilder {
        let capacity = capacity_bytes.clamp(HEADER_BYTES, MAX_BATCH_BYTES);
        RecordBatchBuilder::with_buffer(compression, Vec::with_capacity(capacity))
    }

    /// An empty batch encoded into `buf` (its contents are dropped, its capacity kept): a
    /// producer reuses the buffers of batches it has sent (as `Vec::from` of the built
    /// batch's `BytesMut`) instead of allocating, and faulting in, fresh pages per batch.
    pub fn with_buffer(compression: Compression, mut buf: Vec<u8>) -> RecordBatchBuilder {
        buf.clear();
        buf.resize(HEADER_BYTES, 0);
        RecordBatchBuilder {
            compression,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            base_sequence: NO_SEQUENCE,
            log_append_time: None,
            flags: 0,
            buf,
            record_count: 0,
            base_timestamp: 0,
            max_timestamp: 0,
            error: None,
        }
    }

    /// Sets the idempotent producer's id (default -1, none).
    pub fn producer_id(mut self, producer_id: i64) -> Self {
        self.producer_id = producer_id;
        self
    }

    /// Sets the idempotent producer's epoch (default -1, none).
    pub fn producer_epoch(mut self, producer_epoch: i16) -> Self {
        self.producer_epoch = producer_epoch;
        self
    }

    /// Sets the sequence number of the batch's first record (default -1, none).
    pub fn base_sequence(mut self, base_sequence: i32) -> Self {
        self.base_sequence = base_sequence;
        self
    }

    /// Sets the idempotent producer's id, epoch and first sequence on a builder that
    /// already holds records (a producer numbers a batch when it first sends it).
    pub fn set_producer(&mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
    }

    /// Marks the batch as part of its producer's transaction (attribute bit 0x10): its
    /// records become visible to `read_committed` readers only once a commit marker of
    /// the producer follows it.
    pub fn transactional(mut self) -> Self {
        self.flags |= TRANSACTIONAL_BIT;
        self
    }

    /// Marks the batch as a control batch (0x20), as only a broker writes them (see
    /// [`crate::control`]).
    pub(crate) fn control(mut self) -> Self {
        self.flags |= CONTROL_BIT;
        self
    }

    /// Marks the batch's timestamps as LogAppendTime and sets its `max_timestamp` to
    /// `append_time_ms`, as a broker does for a topic with
    /// `message.timestamp.type=LogAppendTime`: readers then give every record this time.
    /// The records keep their own timestamp deltas, as in Kafka.
    pub fn log_append_time(mut self, append_time_ms: i64) -> Self {
        self.log_append_time = Some(append_time_ms);
        self
    }

    /// Appends one record. A record that cannot be added (the batch would pass
    /// [`MAX_RECORDS_PER_BATCH`], [`MAX_BATCH_BYTES`] uncompressed, or
    /// [`MAX_DECOMPRESSED_BYTES`] before compression) is not encoded; the builder ignores
    /// later pushes and [`build`](Self::build) reports why. Use
    /// [`try_push`](Self::try_push) to find out at once instead.
    pub fn push(&mut self, record: &Record) {
        if self.error.is_some() {
            return;
        }
        if let Err(error) = self.try_push(record) {
            self.error = Some(error);
        }
    }

    /// Appends one record, or says why it cannot be added and leaves the builder as it was
    /// (so a caller can build the batch so far and start another).
    pub fn try_push(&mut self, record: &Record) -> Result<(), BatchError> {
        self.try_push_view(record.view())
    }

    /// [`try_push`](Self::try_push) for a record given by its borrowed parts.
    pub fn try_push_view(&mut self, record: RecordView<'_>) -> Result<(), BatchError> {
        if self.record_count >= MAX_RECORDS_PER_BATCH {
            return Err(BatchError::BadRecordCount {
                count: self.record_count.saturating_add(1),
                max: MAX_RECORDS_PER_BATCH,
            });
        }
        let first = self.record_count == 0;
        let base_timestamp = if first {
            record.timestamp
        } else {
            self.base_timestamp
        };
        // Wrapping, as in Kafka's Java code: decoding adds the delta back with the same
        // wrap, so every i64 timestamp round-trips.
        let timestamp_delta = record.timestamp.wrapping_sub(base_timestamp);
        let offset_delta = self.record_count;

        let headers_len: usize = record
            .headers
            .iter()
            .map(|h| {
                length_prefix_len(h.key.len()) + h.key.len() + nullable_len(h.value.as_deref())
            })
            .sum();
        let body_len = 1
            + varlong_len(timestamp_delta)
            + varint_len(offset_delta)
            + nullable_len(record.key)
            + nullable_len(record.value)
            + length_prefix_len(record.headers.len())
            + headers_len;
        let record_len = length_prefix_len(body_len) + body_len;
        let records_len = self.buf.len() - HEADER_BYTES;
        if record_len > self.records_limit() - records_len {
            return Err(match self.compression {
                Compression::None => BatchError::TooLarge {
                    bytes: self.buf.len().saturating_add(record_len),
                    max: MAX_BATCH_BYTES,
                },
                _ => BatchError::DecompressedTooLarge {
                    max: MAX_DECOMPRESSED_BYTES,
                },
            });
        }

        // Past the limit check every length and count is below MAX_DECOMPRESSED_BYTES, so
        // each fits the i32 it is encoded as.
        let start = self.buf.len();
        self.buf.reserve(record_len);
        // The fields up to the key's bytes, and on to the value's when the key is null,
        // are assembled on the stack and appended in one copy: an unkeyed record without
        // headers is three appends (fields, value, header count), not one per field.
        let mut head = [0u8; RECORD_HEAD_BYTES];
        let mut n = write_varint(&mut head, body_len as i32);
        head[n] = RECORD_ATTRIBUTES;
        n += 1;
        n += write_varlong(&mut head[n..], timestamp_delta);
        n += write_varint(&mut head[n..], offset_delta);
        n += write_nullable_len(&mut head[n..], record.key);
        if let Some(key) = record.key {
            self.buf.extend_from_slice(&head[..n]);
            self.buf.extend_from_slice(key);
            n = 0;
        }
        n += write_nullable_len(&mut head[n..], record.value);
        self.buf.extend_from_slice(&head[..n]);
        if let Some(value) = record.value {
            self.buf.extend_from_slice(value);
        }
        if record.headers.is_empty() {
            // A header count of 0 is the single byte 0.
            self.buf.push(0);
        } else {
            put_len(&mut self.buf, record.headers.len());
            for header in record.headers {
                put_len(&mut self.buf, header.key.len());
                self.buf.extend_from_slice(header.key.as_bytes());
                put_nullable(&mut self.buf, header.value.as_deref());
            }
        }
        debug_assert_eq!(self.buf.len() - start, record_len);

        if first {
            self.base_timestamp = record.timestamp;
            self.max_timestamp = record.timestamp;
        } else {
            self.max_timestamp = self.max_timestamp.max(record.timestamp);
        }
        self.record_count += 1;
        Ok(())
    }

    /// Records pushed so far.
    pub fn len(&self) -> usize {
        self.record_count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.record_count == 0
    }

    /// The batch's size so far before compression: header plus encoded records. A batch
    /// built uncompressed has exactly this size; a compressed one is usually smaller.
    pub fn estimated_size(&self) -> usize {
        self.buf.len()
    }

    /// The complete batch: base offset 0, partition leader epoch -1, magic 2, CRC-32C set.
    pub fn build(self) -> Result<BytesMut, BatchError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        if self.record_count == 0 {
            return Err(BatchError::Empty);
        }
        let mut batch = if self.compression == Compression::None {
            self.buf
        } else {
            let records = &self.buf[HEADER_BYTES..];
            // Typical payloads compress at least 2x; growth covers the rest.
            let mut out = Vec::with_capacity(HEADER_BYTES + records.len() / 2);
            out.resize(HEADER_BYTES, 0);
            self.compression.compress(records, &mut out)?;
            out
        };
        if batch.len() > MAX_BATCH_BYTES {
            return Err(BatchError::TooLarge {
                bytes: batch.len(),
                max: MAX_BATCH_BYTES,
            });
        }
        let mut attributes = self.compression.attribute() | self.flags;
        let max_timestamp = match self.log_append_time {
            Some(append_time) => {
                attributes |= TIMESTAMP_TYPE_BIT;
                append_time
            }
            None => self.max_timestamp,
        };
        let header = BatchHeader {
            base_offset: 0,
            // At most MAX_BATCH_BYTES, checked above.
            batch_length: (batch.len() - LOG_OVERHEAD) as i32,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            magic: MAGIC_V2,
            crc: 0, // computed by write_header
            attributes,
            last_offset_delta: self.record_count - 1,
            base_timestamp: self.base_timestamp,
            max_timestamp,
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            base_sequence: self.base_sequence,
            record_count: self.record_count,
        };
        write_header(&mut batch, &header);
        debug_assert!(
            validate(&batch).is_ok(),
            "built an invalid batch: {:?}",
            validate(&batch)
        );
        // Vec -> Bytes -> BytesMut hands over the allocation without copying it.
        Ok(BytesMut::from(Bytes::from(batch)))
    }

    /// Largest records section this builder may hold (uncompressed bytes).
    fn records_limit(&self) -> usize {
        match self.compression {
            Compression::None => MAX_BATCH_BYTES - HEADER_BYTES,
            _ => MAX_DECOMPRESSED_BYTES,
        }
    }
}

/// Encoded size of a varint length prefix for `len`. A length over `i32::MAX` is sized as
/// `i32::MAX`: such a record is far past every limit and is refused anyway.
fn length_prefix_len(len: usize) -> usize {
    varint_len(i32::try_from(len).unwrap_or(i32::MAX))
}

fn nullable_len(bytes: Option<&[u8]>) -> usize {
    match bytes {
        None => varint_len(NULL_LENGTH),
        Some(b) => length_prefix_len(b.len()) + b.len(),
    }
}

/// Writes a length that the caller has checked against the batch limits.
fn put_len(buf: &mut Vec<u8>, len: usize) {
    debug_assert!(len <= MAX_DECOMPRESSED_BYTES);
    put_varint(buf, len as i32);
}

/// Writes the length of a nullable field (checked against the batch limits) at the start
/// of `out`; returns its size.
#[inline]
fn write_nullable_len(out: &mut [u8], bytes: Option<&[u8]>) -> usize {
    match bytes {
        None => write_varint(out, NULL_LENGTH),
        Some(b) => {
            debug_assert!(b.len() <= MAX_DECOMPRESSED_BYTES);
            write_varint(out, b.len() as i32)
        }
    }
}

fn put_nullable(buf: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varint(buf, NULL_LENGTH),
        Some(b) => {
            put_len(buf, b.len());
            buf.extend_from_slice(b);
        }
    }
}

/// Decodes every record of one complete batch (exactly the batch's framed bytes).
///
/// The batch is validated first (length, magic, CRC, counts). Keys, values and header
/// values of an uncompressed batch are slices of `batch`, not copies; a compressed batch
/// is decompressed (at most [`MAX_DECOMPRESSED_BYTES`]) into one buffer they slice.
pub fn decode_records(batch: &Bytes) -> Result<Vec<DecodedRecord>, BatchError> {
    decode_records_limited(batch, MAX_DECOMPRESSED_BYTES)
}

fn decode_records_limited(
    batch: &Bytes,
    max_decompressed: usize,
) -> Result<Vec<DecodedRecord>, BatchError> {
    // The CRC and header checks only: the record walk of `validate` would read every
    // record once more before the loop below reads it, checking exactly the same things.
    let header = check_stored(batch)?;
    let records = records_section_limited(batch, &header, max_decompressed)?;
    let declared = header.record_count;
    let count = declared_count(&header)?;
    let context = BatchContext {
        base_offset: header.base_offset,
        base_timestamp: header.base_timestamp,
        log_append_time: match header.timestamp_type() {
            TimestampType::LogAppendTime => Some(header.max_timestamp),
            TimestampType::CreateTime => None,
        },
        last_offset_delta: header.last_offset_delta,
    };
    // Sized by what the bytes can hold as well as by what the header claims.
    let mut out = Vec::with_capacity(count.min(records.len() / MIN_RECORD_BYTES));
    let mut rest: &[u8] = &records;
    let mut previous_delta = -1;
    while !rest.is_empty() {
        let index = out.len();
        if index == count {
            return Err(BatchError::TrailingBytes {
                declared,
                bytes: rest.len(),
            });
        }
        let record = decode_record(&records, &mut rest, &context, &mut previous_delta)
            .map_err(|fault| fault.at(index))?;
        out.push(record);
    }
    if out.len() != count {
        return Err(BatchError::RecordCountMismatch {
            declared,
            found: out.len(),
        });
    }
    Ok(out)
}

/// The records section of one complete batch whose header is `header`: a slice of
/// `batch` when uncompressed, else the decompressed section (at most
/// [`MAX_DECOMPRESSED_BYTES`]).
pub fn records_section(batch: &Bytes, header: &BatchHeader) -> Result<Bytes, BatchError> {
    records_section_limited(batch, header, MAX_DECOMPRESSED_BYTES)
}

fn records_section_limited(
    batch: &Bytes,
    header: &BatchHeader,
    max_decompressed: usize,
) -> Result<Bytes, BatchError> {
    match header.compression()? {
        Compression::None => Ok(batch.slice(HEADER_BYTES..)),
        codec => Ok(Bytes::from(
            codec.decompress(&batch[HEADER_BYTES..], max_decompressed)?,
        )),
    }
}

/// One record of a records section as [`walk_records`] sees it: where its bytes lie and
/// the fields that decide whether a record is kept, without its headers decoded or
/// anything copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord<'a> {
    /// The record's bytes in the section, length prefix included: copying these spans
    /// in order builds a records section of the kept records.
    pub span: Range<usize>,
    /// The record's offset is the batch's `base_offset` plus this.
    pub offset_delta: i32,
    /// `None` for a null key.
    pub key: Option<&'a [u8]>,
    /// The value is null (a delete marker for compaction).
    pub is_tombstone: bool,
}

/// Walks a (decompressed) records section of the batch whose header is `header`, calling
/// `f` with each record in order, and checks its framing as [`decode_records`] does up to
/// the value: each record's length fits the section, offset deltas strictly increase from
/// 0 up to `last_offset_delta`, the key and value fit the record, and exactly
/// `record_count` records fill the section. Headers are not decoded. Allocates nothing.
/// On an error, `f` may already have seen the records before the malformed one.
pub fn walk_records<'a>(
    records: &'a [u8],
    header: &BatchHeader,
    mut f: impl FnMut(RawRecord<'a>),
) -> Result<(), BatchError> {
    let count = declared_count(header)?;
    let mut rest = records;
    let mut previous_delta = -1;
    let mut found = 0;
    while !rest.is_empty() {
        if found == count {
            return Err(BatchError::TrailingBytes {
                declared: header.record_count,
                bytes: rest.len(),
            });
        }
        let start = records.len() - rest.len();
        let record = raw_record(&mut rest, previous_delta, header.last_offset_delta)
            .map_err(|fault| fault.at(found))?;
        let end = records.len() - rest.len();
        previous_delta = record.0;
        f(RawRecord {
            span: start..end,
            offset_delta: record.0,
            key: record.1,
            is_tombstone: record.2,
        });
        found += 1;
    }
    if found != count {
        return Err(BatchError::RecordCountMismatch {
            declared: header.record_count,
            found,
        });
    }
    Ok(())
}

/// Reads the record at the front of `rest` up to its value and advances `rest` past the
/// whole record: its offset delta, key, and whether its value is null.
fn raw_record<'a>(
    rest: &mut &'a [u8],
    previous_delta: i32,
    last_offset_delta: i32,
) -> Result<(i32, Option<&'a [u8]>, bool), RecordFault> {
    let mut body = split_record(rest)?;
    let (_, offset_delta) = read_deltas(&mut body, previous_delta, last_offset_delta)?;
    let key = read_nullable(&mut body, Field::Key)?;
    let value = read_nullable(&mut body, Field::Value)?;
    Ok((offset_delta, key, value.is_none()))
}

/// Checks an uncompressed records section against its header, record by record, as
/// [`decode_records`] reads it but keeping nothing: each record's length fits, offset
/// deltas start at 0 or more, strictly increase and stay within `last_offset_delta`, the
/// key, value and headers fit the record (header keys UTF-8) with nothing after them, and
/// the section holds exactly `record_count` records with nothing after them. A section
/// that passes decodes. Allocates nothing.
pub(crate) fn check_uncompressed_records(
    records: &[u8],
    header: &BatchHeader,
) -> Result<(), BatchError> {
    let count = declared_count(header)?;
    if records_are_valid(records, count, header.last_offset_delta) {
        return Ok(());
    }
    // Something is wrong: walk again, slowly, to say what and where.
    let mut walk = RecordWalk::new(header)?;
    let mut rest = records;
    while !rest.is_empty() {
        walk.record(&mut rest)?;
    }
    walk.finish()
}

/// Checks the records of a compressed batch exactly as [`check_uncompressed_records`]
/// checks an uncompressed one, decompressing the section as it walks: the output passes
/// through a window that holds the record being checked (it starts at
/// [`MIN_WALK_WINDOW_BYTES`] to [`MAX_WALK_WINDOW_BYTES`] and grows only for a record
/// larger than that), never the whole output. At most `max_decompressed` bytes are
/// decompressed: a section that expands further (a decompression bomb) is refused with
/// [`BatchError::DecompressedTooLarge`] without being held, and a record whose stated
/// length passes the limit is refused before anything is allocated for it.
pub(crate) fn check_compressed_records(
    codec: Compression,
    section: &[u8],
    header: &BatchHeader,
    max_decompressed: usize,
) -> Result<(), BatchError> {
    let mut walk = RecordWalk::new(header)?;
    let mut decoder = codec.decoder(section, max_decompressed)?;
    let first_len = section
        .len()
        .saturating_mul(ASSUMED_WALK_RATIO)
        .clamp(MIN_WALK_WINDOW_BYTES, MAX_WALK_WINDOW_BYTES)
        .min(max_decompressed.max(1));
    let mut window = vec![0u8; first_len];
    // Unchecked bytes are `window[start..filled]`.
    let (mut start, mut filled) = (0, 0);
    loop {
        // Check every record that lies wholly in the window; `needed` is how many bytes
        // of the window the next one takes, as far as is known yet.
        let needed = loop {
            let mut rest = &window[start..filled];
            let available = rest.len();
            if available == 0 {
                break 1;
            }
            if walk.is_complete() {
                // Records past the declared count: say how many bytes follow them.
                let mut trailing = available;
                loop {
                    match decoder.read(&mut window)? {
                        0 => break,
                        n => trailing += n,
                    }
                }
                return Err(BatchError::TrailingBytes {
                    declared: header.record_count,
                    bytes: trailing,
                });
            }
            let mut peek = rest;
            let len = match read_varint(&mut peek) {
                Ok(len) => len,
                // The length continues past the window: read on.
                Err(VarintError::Truncated) => break available + 1,
                // Malformed: the walk says how.
                Err(VarintError::Overlong) => return walk.record(&mut rest),
            };
            let Ok(len) = usize::try_from(len) else {
                return walk.record(&mut rest);
            };
            let total = (available - peek.len()).saturating_add(len);
            if total > available {
                break total;
            }
            walk.record(&mut rest)?;
            start = filled - rest.len();
        };
        if needed > max_decompressed {
            // Nothing this long can come out of the section.
            return Err(BatchError::DecompressedTooLarge {
                max: max_decompressed,
            });
        }
        // Keep the unchecked bytes, at the front, and make room for the rest of the record.
        window.copy_within(start..filled, 0);
        (filled, start) = (filled - start, 0);
        if needed > window.len() {
            let grown = window.len().saturating_mul(2).max(needed);
            window.resize(grown.min(max_decompressed), 0);
        }
        let n = decoder.read(&mut window[filled..])?;
        if n == 0 {
            // The end of the section: whatever is left is a truncated record.
            let mut rest = &window[..filled];
            while !rest.is_empty() {
                walk.record(&mut rest)?;
            }
            return walk.finish();
        }
        filled += n;
    }
}

/// Where [`check_uncompressed_records`] (when it explains a fault) and
/// [`check_compressed_records`] are in a records section: the one record walk both use,
/// fed one record at a time.
struct RecordWalk {
    declared: i32,
    count: usize,
    last_offset_delta: i32,
    previous_delta: i32,
    found: usize,
}

impl RecordWalk {
    fn new(header: &BatchHeader) -> Result<RecordWalk, BatchError> {
        Ok(RecordWalk {
            declared: header.record_count,
            count: declared_count(header)?,
            last_offset_delta: header.last_offset_delta,
            previous_delta: -1,
            found: 0,
        })
    }

    /// Checks the record at the front of `rest` (which must not be empty) and advances
    /// `rest` past it.
    fn record(&mut self, rest: &mut &[u8]) -> Result<(), BatchError> {
        if self.found == self.count {
            return Err(BatchError::TrailingBytes {
                declared: self.declared,
                bytes: rest.len(),
            });
        }
        let mut body = split_record(rest).map_err(|fault| fault.at(self.found))?;
        let (_, offset_delta) = read_deltas(&mut body, self.previous_delta, self.last_offset_delta)
            .map_err(|fault| fault.at(self.found))?;
        check_record_rest(&mut body).map_err(|fault| fault.at(self.found))?;
        self.previous_delta = offset_delta;
        self.found += 1;
        Ok(())
    }

    /// Every declared record was found.
    fn is_complete(&self) -> bool {
        self.found == self.count
    }

    /// Checks that the section held as many records as the header declares.
    fn finish(&self) -> Result<(), BatchError> {
        if self.found != self.count {
            return Err(BatchError::RecordCountMismatch {
                declared: self.declared,
                found: self.found,
            });
        }
        Ok(())
    }
}

/// The append path's per-record check, kept lean: it only answers whether the records
/// are valid (see [`check_uncompressed_records`]), so the loop carries no error values;
/// [`check_uncompressed_records`] explains a `false`.
#[inline]
fn records_are_valid(records: &[u8], count: usize, last_offset_delta: i32) -> bool {
    let mut rest = records;
    let mut previous = -1i32;
    let mut found = 0usize;
    while !rest.is_empty() {
        let Ok(len) = read_varint(&mut rest) else {
            return false;
        };
        let Ok(len) = usize::try_from(len) else {
            return false;
        };
        let Some((body, after)) = rest.split_at_checked(len) else {
            return false;
        };
        rest = after;
        // attributes (1 byte), timestamp delta, offset delta
        let Some((_, mut body)) = body.split_first() else {
            return false;
        };
        if read_varlong(&mut body).is_err() {
            return false;
        }
        match read_varint(&mut body) {
            Ok(delta) if delta > previous && delta <= last_offset_delta => previous = delta,
            _ => return false,
        }
        if !record_rest_is_valid(body) {
            return false;
        }
        found += 1;
    }
    found == count
}

/// `record_count` as a count, for headers `validate` has range-checked.
fn declared_count(header: &BatchHeader) -> Result<usize, BatchError> {
    usize::try_from(header.record_count).map_err(|_| BatchError::BadRecordCount {
        count: header.record_count,
        max: MAX_RECORDS_PER_BATCH,
    })
}

/// What each record's offset and timestamp are computed from.
struct BatchContext {
    base_offset: i64,
    base_timestamp: i64,
    /// The batch's `max_timestamp` if its timestamps are LogAppendTime.
    log_append_time: Option<i64>,
    last_offset_delta: i32,
}

/// Decodes the record at the front of `rest` and advances `rest` past it. `records` is the
/// buffer `rest` points into, which the record's bytes are sliced from.
fn decode_record(
    records: &Bytes,
    rest: &mut &[u8],
    context: &BatchContext,
    previous_delta: &mut i32,
) -> Result<DecodedRecord, RecordFault> {
    let mut body = split_record(rest)?;
    let (timestamp_delta, offset_delta) =
        read_deltas(&mut body, *previous_delta, context.last_offset_delta)?;
    *previous_delta = offset_delta;
    let key = read_nullable(&mut body, Field::Key)?.map(|k| records.slice_ref(k));
    let value = read_nullable(&mut body, Field::Value)?.map(|v| records.slice_ref(v));

    let header_count = read_header_count(&mut body)?;
    let mut headers = Vec::with_capacity(header_count);
    for _ in 0..header_count {
        let (key, value) = read_header(&mut body)?;
        headers.push(Header {
            key: key.to_owned(),
            value: value.map(|v| records.slice_ref(v)),
        });
    }
    if !body.is_empty() {
        return Err(RecordFault::UnreadBytes(body.len()));
    }

    let offset = context
        .base_offset
        .checked_add(i64::from(offset_delta))
        .ok_or(RecordFault::OffsetOverflow)?;
    let timestamp = context
        .log_append_time
        .unwrap_or_else(|| context.base_timestamp.wrapping_add(timestamp_delta));
    Ok(DecodedRecord {
        offset,
        timestamp,
        key,
        value,
        headers,
    })
}

/// Checks the rest of a record's body after its offset delta exactly as
/// [`decode_record`] reads it, keeping nothing: the key and value fit, the headers fit
/// (their keys UTF-8), and nothing follows them. What lets a batch that passes the
/// record walk be decoded by every reader.
#[inline]
fn check_record_rest(body: &mut &[u8]) -> Result<(), RecordFault> {
    read_nullable(body, Field::Key)?;
    read_nullable(body, Field::Value)?;
    for _ in 0..read_header_count(body)? {
        read_header(body)?;
    }
    if !body.is_empty() {
        return Err(RecordFault::UnreadBytes(body.len()));
    }
    Ok(())
}

/// [`check_record_rest`] as a yes or no, for the append path's lean loop: the key and
/// value are skipped by their lengths, and a record without headers (nearly all) ends the
/// check at one byte; headers take the full check.
#[inline(always)]
fn record_rest_is_valid(mut body: &[u8]) -> bool {
    if !skip_nullable(&mut body) {
        return false;
    }
    // Nearly every record: a value, then a 0 header count as the record's last byte.
    let at_value = body;
    if let Ok(len) = read_varint(&mut body)
        && let Ok(len) = usize::try_from(len)
        && body.len() == len + 1
        && body[len] == 0
    {
        return true;
    }
    let mut body = at_value;
    skip_nullable(&mut body) && headers_are_valid(body)
}

/// Skips a length-prefixed byte string that may be null; false if it does not fit.
#[inline(always)]
fn skip_nullable(body: &mut &[u8]) -> bool {
    match read_varint(body) {
        Ok(NULL_LENGTH) => true,
        Ok(len) => match usize::try_from(len).ok().and_then(|len| body.get(len..)) {
            Some(rest) => {
                *body = rest;
                true
            }
            None => false,
        },
        Err(_) => false,
    }
}

/// The headers part of [`check_record_rest`]: the count, the headers, nothing after.
#[inline(never)]
fn headers_are_valid(mut body: &[u8]) -> bool {
    let Ok(count) = read_header_count(&mut body) else {
        return false;
    };
    (0..count).all(|_| read_header(&mut body).is_ok()) && body.is_empty()
}

/// Reads a record's header count. The count comes from the wire: it is bounded by what
/// the remaining bytes can hold before it sizes anything.
#[inline]
fn read_header_count(body: &mut &[u8]) -> Result<usize, RecordFault> {
    let count = read_varint(body).map_err(|e| RecordFault::Varint(Field::HeaderCount, e))?;
    let count = usize::try_from(count)
        .map_err(|_| RecordFault::NegativeLength(Field::HeaderCount, count))?;
    if count > body.len() / MIN_HEADER_BYTES {
        return Err(RecordFault::TooManyHeaders {
            count,
            remaining: body.len(),
        });
    }
    Ok(count)
}

/// Reads one record header: its UTF-8 key and nullable value.
fn read_header<'a>(body: &mut &'a [u8]) -> Result<(&'a str, Option<&'a [u8]>), RecordFault> {
    let key_len = read_varint(body).map_err(|e| RecordFault::Varint(Field::HeaderKey, e))?;
    let key_len = usize::try_from(key_len)
        .map_err(|_| RecordFault::NegativeLength(Field::HeaderKey, key_len))?;
    let key = take(body, key_len, Field::HeaderKey)?;
    let key = std::str::from_utf8(key).map_err(|_| RecordFault::HeaderKeyNotUtf8)?;
    let value = read_nullable(body, Field::HeaderValue)?;
    Ok((key, value))
}

/// Splits the next record's body (what its length prefix covers) off the front of `rest`.
#[inline]
fn split_record<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], RecordFault> {
    let len = read_varint(rest).map_err(|e| RecordFault::Varint(Field::Length, e))?;
    let len = usize::try_from(len).map_err(|_| RecordFault::NegativeLength(Field::Length, len))?;
    take(rest, len, Field::Length)
}

/// Reads the fields before the key: attributes (ignored), timestamp delta and offset
/// delta, checking that the offset delta follows `previous` and is within `last`.
#[inline]
fn read_deltas(body: &mut &[u8], previous: i32, last: i32) -> Result<(i64, i32), RecordFault> {
    let (_attributes, after) = body
        .split_first()
        .ok_or(RecordFault::Missing(Field::Attributes))?;
    *body = after;
    let timestamp_delta =
        read_varlong(body).map_err(|e| RecordFault::Varint(Field::TimestampDelta, e))?;
    let offset_delta = read_varint(body).map_err(|e| RecordFault::Varint(Field::OffsetDelta, e))?;
    if offset_delta <= previous {
        return Err(RecordFault::OffsetDeltaNotIncreasing {
            delta: offset_delta,
            previous,
        });
    }
    if offset_delta > last {
        return Err(RecordFault::OffsetDeltaPastLast {
            delta: offset_delta,
            last,
        });
    }
    Ok((timestamp_delta, offset_delta))
}

/// Reads a length-prefixed byte string that may be null (length -1).
#[inline]
fn read_nullable<'a>(body: &mut &'a [u8], field: Field) -> Result<Option<&'a [u8]>, RecordFault> {
    let len = read_varint(body).map_err(|e| RecordFault::Varint(field, e))?;
    if len == NULL_LENGTH {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| RecordFault::NegativeLength(field, len))?;
    take(body, len, field).map(Some)
}

#[inline]
fn take<'a>(buf: &mut &'a [u8], len: usize, field: Field) -> Result<&'a [u8], RecordFault> {
    let Some((head, tail)) = buf.split_at_checked(len) else {
        return Err(RecordFault::PastEnd {
            field,
            len,
            remaining: buf.len(),
        });
    };
    *buf = tail;
    Ok(head)
}

/// A record field, to say where a record is malformed.
#[derive(Debug, Clone, Copy)]
enum Field {
    Length,
    Attributes,
    TimestampDelta,
    OffsetDelta,
    Key,
    Value,
    HeaderCount,
    HeaderKey,
    HeaderValue,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::Length => "record length",
            Field::Attributes => "attributes",
            Field::TimestampDelta => "timestamp delta",
            Field::OffsetDelta => "offset delta",
            Field::Key => "key",
            Field::Value => "value",
            Field::HeaderCount => "header count",
            Field::HeaderKey => "header key",
            Field::HeaderValue => "header value",
        }
    }
}

/// Why one record is malformed. Kept as data (no allocation) until it becomes a
/// [`BatchError::BadRecord`], so the happy path pays nothing for error reporting.
#[derive(Debug)]
enum RecordFault {
    Varint(Field, VarintError),
    Missing(Field),
    NegativeLength(Field, i32),
    PastEnd {
        field: Field,
        len: usize,
        remaining: usize,
    },
    OffsetDeltaNotIncreasing {
        delta: i32,
        previous: i32,
    },
    OffsetDeltaPastLast {
        delta: i32,
        last: i32,
    },
    TooManyHeaders {
        count: usize,
        remaining: usize,
    },
    HeaderKeyNotUtf8,
    UnreadBytes(usize),
    OffsetOverflow,
}

impl RecordFault {
    #[cold]
    fn at(self, index: usize) -> BatchError {
        BatchError::BadRecord {
            index,
            reason: self.to_string(),
        }
    }
}

impl fmt::Display for RecordFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RecordFault::Varint(field, e) => write!(f, "{}: {e}", field.name()),
            RecordFault::Missing(field) => write!(f, "record ends before its {}", field.name()),
            RecordFault::NegativeLength(field, len) => {
                write!(f, "{}: invalid length {len}", field.name())
            }
            RecordFault::PastEnd {
                field,
                len,
                remaining,
            } => write!(
                f,
                "{} of {len} bytes runs past the end ({remaining} bytes remain)",
                field.name()
            ),
            RecordFault::OffsetDeltaNotIncreasing { delta, previous } if previous < 0 => {
                write!(f, "offset delta {delta} is negative")
            }
            RecordFault::OffsetDeltaNotIncreasing { delta, previous } => write!(
                f,
                "offset delta {delta} does not follow the previous record's {previous}"
            ),
            RecordFault::OffsetDeltaPastLast { delta, last } => {
                write!(
                    f,
                    "offset delta {delta} is past the batch's last_offset_delta {last}"
                )
            }
            RecordFault::TooManyHeaders { count, remaining } => {
                write!(
                    f,
                    "header count {count} cannot fit in the {remaining} bytes that remain"
                )
            }
            RecordFault::HeaderKeyNotUtf8 => f.write_str("header key is not valid UTF-8"),
            RecordFault::UnreadBytes(n) => {
                write!(
                    f,
                    "{n} bytes remain inside the record after its last header"
                )
            }
            RecordFault::OffsetOverflow => f.write_str("base_offset + offset delta overflows"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::varint::put_varlong;
    use super::super::{
        ATTRIBUTES, BATCH_LENGTH, CRC, compute_crc, patch_offset_and_epoch, validate_untrusted,
    };
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::Index;

    fn record(key: Option<&'static [u8]>, value: Option<&'static [u8]>, timestamp: i64) -> Record {
        Record {
            key: key.map(Bytes::from_static),
            value: value.map(Bytes::from_static),
            headers: Vec::new(),
            timestamp,
        }
    }

    fn build(compression: Compression, records: &[Record]) -> Bytes {
        let mut builder = RecordBatchBuilder::new(compression);
        for r in records {
            builder.push(r);
        }
        builder.build().expect("build").freeze()
    }

    /// One raw record: the fields after the length prefix, then the prefix put in front.
    fn raw_record(
        timestamp_delta: i64,
        offset_delta: i32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&[u8], Option<&[u8]>)],
    ) -> Vec<u8> {
        fn put_opt(buf: &mut Vec<u8>, bytes: Option<&[u8]>) {
            match bytes {
                None => put_varint(buf, NULL_LENGTH),
                Some(b) => {
                    put_varint(buf, b.len() as i32);
                    buf.extend_from_slice(b);
                }
            }
        }
        let mut body = vec![RECORD_ATTRIBUTES];
        put_varlong(&mut body, timestamp_delta);
        put_varint(&mut body, offset_delta);
        put_opt(&mut body, key);
        put_opt(&mut body, value);
        put_varint(&mut body, headers.len() as i32);
        for (k, v) in headers {
            put_opt(&mut body, Some(k));
            put_opt(&mut body, *v);
        }
        with_length(&body)
    }

    fn with_length(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, body.len() as i32);
        out.extend_from_slice(body);
        out
    }

    /// A correctly framed and checksummed batch around any records section.
    fn raw_batch(
        compression: Compression,
        records: &[u8],
        record_count: i32,
        last_offset_delta: i32,
    ) -> Bytes {
        let mut section = Vec::new();
        compression
            .compress(records, &mut section)
            .expect("compress");
        let mut batch = vec![0u8; HEADER_BYTES];
        batch.extend_from_slice(&section);
        let header = BatchHeader {
            base_offset: 0,
            batch_length: (batch.len() - LOG_OVERHEAD) as i32,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            magic: MAGIC_V2,
            crc: 0,
            attributes: compression.attribute(),
            last_offset_delta,
            base_timestamp: 1_000,
            max_timestamp: 1_000,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            base_sequence: NO_SEQUENCE,
            record_count,
        };
        write_header(&mut batch, &header);
        Bytes::from(batch)
    }

    fn bad_record_reason(result: Result<impl fmt::Debug, BatchError>) -> (usize, String) {
        match result {
            Err(BatchError::BadRecord { index, reason }) => (index, reason),
            other => panic!("expected BadRecord, got {other:?}"),
        }
    }

    /// The record fault `validate` (the append path's walk) finds in `batch`, which must
    /// be the one `decode_records` finds.
    fn refused_alike(batch: &Bytes) -> (usize, String) {
        let walked = bad_record_reason(validate(batch));
        assert_eq!(walked, bad_record_reason(decode_records(batch)));
        walked
    }

    #[test]
    fn building_without_records_is_an_error() {
        let result = RecordBatchBuilder::new(Compression::None).build();
        assert!(matches!(result, Err(BatchError::Empty)));
    }

    #[test]
    fn single_record_has_the_kafka_byte_layout() {
        let batch = build(Compression::None, &[record(Some(b"k"), Some(b"v"), 1_000)]);
        // length 8 (zigzag 16), attributes, timestamp delta 0, offset delta 0, key length 1
        // (zigzag 2) "k", value length 1 "v", no headers.
        assert_eq!(&batch[HEADER_BYTES..], &[16, 0, 0, 0, 2, b'k', 2, b'v', 0]);
        let header = BatchHeader::parse(&batch);
        assert_eq!(
            header,
            BatchHeader {
                base_offset: 0,
                batch_length: (HEADER_BYTES + 9 - LOG_OVERHEAD) as i32,
                partition_leader_epoch: -1,
                magic: 2,
                crc: crc32c::crc32c(&batch[ATTRIBUTES..]),
                attributes: 0,
                last_offset_delta: 0,
                base_timestamp: 1_000,
                max_timestamp: 1_000,
                producer_id: -1,
                producer_epoch: -1,
                base_sequence: -1,
                record_count: 1,
            }
        );
    }

    #[test]
    fn header_fields_follow_the_records_and_setters() {
        let records = [
            record(None, Some(b"a"), 5_000),
            record(None, Some(b"b"), 7_000),
            record(None, Some(b"c"), 4_000),
        ];
        let mut builder = RecordBatchBuilder::new(Compression::Lz4)
            .producer_id(42)
            .producer_epoch(3)
            .base_sequence(17);
        for r in &records {
            builder.push(r);
        }
        assert_eq!(builder.len(), 3);
        let batch = builder.build().expect("build").freeze();
        let header = validate(&batch).expect("valid");
        assert_eq!(header.compression().expect("codec"), Compression::Lz4);
        assert_eq!(header.timestamp_type(), TimestampType::CreateTime);
        assert_eq!((header.record_count, header.last_offset_delta), (3, 2));
        // Base is the first record's timestamp, not the smallest: deltas may be negative.
        assert_eq!(
            (header.base_timestamp, header.max_timestamp),
            (5_000, 7_000)
        );
        assert_eq!(
            (
                header.producer_id,
                header.producer_epoch,
                header.base_sequence
            ),
            (42, 3, 17)
        );
        let timestamps: Vec<i64> = decode_records(&batch)
            .expect("decode")
            .iter()
            .map(|r| r.timestamp)
            .collect();
        assert_eq!(timestamps, [5_000, 7_000, 4_000]);
    }

    #[test]
    fn estimated_size_is_the_uncompressed_batch_size() {
        let mut builder = RecordBatchBuilder::new(Compression::None);
        assert!(builder.is_empty());
        assert_eq!(builder.estimated_size(), HEADER_BYTES);
        builder.push(&record(Some(b"key"), Some(b"value"), 1));
        builder.push(&record(None, None, 2));
        let estimated = builder.estimated_size();
        assert_eq!(builder.build().expect("build").len(), estimated);
    }

    #[test]
    fn null_and_empty_keys_and_values_stay_distinct() {
        let records = [
            record(None, None, 1),
            record(Some(b""), Some(b""), 2),
            record(Some(b"k"), None, 3),
            record(None, Some(b"v"), 4),
        ];
        for codec in Compression::ALL {
            let decoded = decode_records(&build(codec, &records)).expect("decode");
            let got: Vec<_> = decoded
                .iter()
                .map(|r| (r.key.clone(), r.value.clone()))
                .collect();
            let want: Vec<_> = records
                .iter()
                .map(|r| (r.key.clone(), r.value.clone()))
                .collect();
            assert_eq!(got, want, "{codec}");
        }
    }

    #[test]
    fn headers_round_trip_with_null_values_and_repeated_keys() {
        let mut r = record(Some(b"k"), Some(b"v"), 9);
        r.headers = vec![
            Header {
                key: "trace".into(),
                value: Some(Bytes::from_static(b"abc")),
            },
            Header {
                key: "trace".into(),
                value: None,
            },
            Header {
                key: "".into(),
                value: Some(Bytes::new()),
            },
            Header {
                key: "clé".into(),
                value: Some(Bytes::from_static(b"\xff\x00")),
            },
        ];
        for codec in Compression::ALL {
            let decoded = decode_records(&build(codec, std::slice::from_ref(&r))).expect("decode");
            assert_eq!(decoded[0].headers, r.headers, "{codec}");
        }
    }

    #[test]
    fn uncompressed_decode_slices_the_batch_without_copying() {
        let batch = build(
            Compression::None,
            &[record(Some(b"key"), Some(b"value"), 1)],
        );
        let mut r = record(None, Some(b"v"), 1);
        r.headers = vec![Header {
            key: "h".into(),
            value: Some(Bytes::from_static(b"hv")),
        }];
        let with_header = build(Compression::None, &[r]);
        let within = |b: &Bytes, batch: &Bytes| {
            let range = batch.as_ptr_range();
            range.start <= b.as_ptr() && b.as_ptr_range().end <= range.end
        };
        let decoded = decode_records(&batch).expect("decode");
        assert!(within(decoded[0].key.as_ref().expect("key"), &batch));
        assert!(within(decoded[0].value.as_ref().expect("value"), &batch));
        let decoded = decode_records(&with_header).expect("decode");
        let header_value = decoded[0].headers[0].value.as_ref().expect("header value");
        assert!(within(header_value, &with_header));
    }

    #[test]
    fn log_append_time_gives_every_record_the_batch_time() {
        let mut builder = RecordBatchBuilder::new(Compression::Zstd).log_append_time(99_000);
        builder.push(&record(None, Some(b"a"), 1_000));
        builder.push(&record(None, Some(b"b"), 2_000));
        let batch = builder.build().expect("build").freeze();
        let header = validate(&batch).expect("valid");
        assert_eq!(header.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(
            (header.base_timestamp, header.max_timestamp),
            (1_000, 99_000)
        );
        let decoded = decode_records(&batch).expect("decode");
        assert!(decoded.iter().all(|r| r.timestamp == 99_000));
    }

    #[test]
    fn extreme_timestamps_round_trip() {
        let records = [
            record(None, None, i64::MIN),
            record(None, None, i64::MAX),
            record(None, None, 0),
            record(None, None, -1),
        ];
        let decoded = decode_records(&build(Compression::None, &records)).expect("decode");
        let timestamps: Vec<i64> = decoded.iter().map(|r| r.timestamp).collect();
        assert_eq!(timestamps, [i64::MIN, i64::MAX, 0, -1]);
    }

    #[test]
    fn offsets_start_at_the_base_offset_the_log_assigns() {
        let records = [record(None, Some(b"a"), 1), record(None, Some(b"b"), 2)];
        let mut batch = BytesMut::from(&build(Compression::Snappy, &records)[..]);
        patch_offset_and_epoch(&mut batch, 1_000, 7);
        let decoded = decode_records(&batch.freeze()).expect("decode");
        let offsets: Vec<i64> = decoded.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, [1_000, 1_001]);
    }

    #[test]
    fn offset_delta_gaps_left_by_compaction_are_accepted() {
        let mut section = raw_record(0, 0, Some(b"a"), Some(b"1"), &[]);
        section.extend(raw_record(0, 3, Some(b"b"), Some(b"2"), &[]));
        section.extend(raw_record(0, 7, Some(b"c"), Some(b"3"), &[]));
        let batch = raw_batch(Compression::None, &section, 3, 9);
        validate(&batch).expect("valid");
        let offsets: Vec<i64> = decode_records(&batch)
            .expect("decode")
            .iter()
            .map(|r| r.offset)
            .collect();
        assert_eq!(offsets, [0, 3, 7]);
    }

    #[test]
    fn bytes_after_the_declared_records_are_rejected() {
        let mut section = raw_record(0, 0, None, Some(b"a"), &[]);
        section.extend(raw_record(0, 1, None, Some(b"b"), &[]));
        let batch = raw_batch(Compression::None, &section, 1, 1);
        let bytes = section.len() / 2;
        assert!(matches!(
            validate(&batch),
            Err(BatchError::TrailingBytes { declared: 1, bytes: b }) if b == bytes
        ));
        assert!(matches!(
            decode_records(&batch),
            Err(BatchError::TrailingBytes { .. })
        ));
    }

    #[test]
    fn fewer_records_than_declared_are_rejected() {
        let section = raw_record(0, 0, None, Some(b"a"), &[]);
        let batch = raw_batch(Compression::None, &section, 2, 1);
        assert!(matches!(
            validate(&batch),
            Err(BatchError::RecordCountMismatch {
                declared: 2,
                found: 1
            })
        ));
        assert!(matches!(
            decode_records(&batch),
            Err(BatchError::RecordCountMismatch { .. })
        ));
    }

    #[test]
    fn offset_deltas_must_strictly_increase_from_zero() {
        let mut repeated = raw_record(0, 0, None, None, &[]);
        repeated.extend(raw_record(0, 0, None, None, &[]));
        let (index, reason) =
            bad_record_reason(validate(&raw_batch(Compression::None, &repeated, 2, 1)));
        assert_eq!(index, 1);
        assert!(reason.contains("does not follow"), "{reason}");

        let negative = raw_record(0, -1, None, None, &[]);
        let (index, reason) =
            bad_record_reason(validate(&raw_batch(Compression::None, &negative, 1, 0)));
        assert_eq!(index, 0);
        assert!(reason.contains("negative"), "{reason}");
    }

    #[test]
    fn offset_delta_past_last_offset_delta_is_rejected() {
        let mut section = raw_record(0, 0, None, None, &[]);
        section.extend(raw_record(0, 2, None, None, &[]));
        let batch = raw_batch(Compression::None, &section, 2, 1);
        let (index, reason) = bad_record_reason(validate(&batch));
        assert_eq!(index, 1);
        assert!(reason.contains("last_offset_delta"), "{reason}");
        bad_record_reason(decode_records(&batch));
    }

    #[test]
    fn record_length_past_the_section_is_rejected() {
        let mut section = raw_record(0, 0, None, Some(b"abc"), &[]);
        section[0] += 2; // claims one more byte than there is (zigzag: +2 is +1)
        let (_, reason) =
            bad_record_reason(validate(&raw_batch(Compression::None, &section, 1, 0)));
        assert!(reason.contains("record length"), "{reason}");
    }

    #[test]
    fn negative_lengths_are_rejected() {
        let mut body = vec![RECORD_ATTRIBUTES, 0, 0];
        put_varint(&mut body, -2); // key length below the null marker
        let batch = raw_batch(Compression::None, &with_length(&body), 1, 0);
        let (_, reason) = refused_alike(&batch);
        assert!(reason.contains("key: invalid length -2"), "{reason}");

        let mut section = Vec::new();
        put_varint(&mut section, -5);
        let (_, reason) =
            bad_record_reason(validate(&raw_batch(Compression::None, &section, 1, 0)));
        assert!(
            reason.contains("record length: invalid length -5"),
            "{reason}"
        );
    }

    #[test]
    fn header_count_larger_than_the_bytes_is_rejected_before_allocating() {
        let mut body = vec![RECORD_ATTRIBUTES, 0, 0, 1, 1];
        put_varint(&mut body, i32::MAX);
        let batch = raw_batch(Compression::None, &with_length(&body), 1, 0);
        let (_, reason) = refused_alike(&batch);
        assert!(reason.contains("header count"), "{reason}");
    }

    #[test]
    fn header_keys_must_be_utf8() {
        let section = raw_record(0, 0, None, None, &[(b"\xff\xfe", None)]);
        let batch = raw_batch(Compression::None, &section, 1, 0);
        let (_, reason) = refused_alike(&batch);
        assert!(reason.contains("UTF-8"), "{reason}");
    }

    #[test]
    fn bytes_left_inside_a_record_are_rejected() {
        let mut body = raw_record(0, 0, Some(b"k"), Some(b"v"), &[])[1..].to_vec();
        body.push(0);
        let batch = raw_batch(Compression::None, &with_length(&body), 1, 0);
        let (_, reason) = refused_alike(&batch);
        assert!(reason.contains("1 bytes remain"), "{reason}");
    }

    #[test]
    fn truncated_varints_inside_a_record_are_rejected() {
        // Offset delta varint cut off by the record length.
        let body = [RECORD_ATTRIBUTES, 0, 0x80];
        let batch = raw_batch(Compression::None, &with_length(&body), 1, 0);
        let (_, reason) = bad_record_reason(validate(&batch));
        assert!(
            reason.contains("offset delta: truncated varint"),
            "{reason}"
        );
    }

    #[test]
    fn compressed_records_are_checked_by_validate_untrusted_and_when_decoded() {
        // validate checks a compressed batch only up to its CRC; validate_untrusted (the
        // produce check) and decode_records check the inner records.
        let mut section = raw_record(0, 0, None, Some(b"a"), &[]);
        section.push(0);
        let batch = raw_batch(Compression::Gzip, &section, 1, 0);
        validate(&batch).expect("valid up to the CRC");
        assert!(matches!(
            validate_untrusted(&batch, 1024),
            Err(BatchError::TrailingBytes { bytes: 1, .. })
        ));
        assert!(matches!(
            decode_records(&batch),
            Err(BatchError::TrailingBytes { bytes: 1, .. })
        ));
    }

    /// Records sections the record walk refuses, with the record count and last offset
    /// delta their header declares.
    fn malformed_sections() -> Vec<(&'static str, Vec<u8>, i32, i32)> {
        let a = raw_record(0, 0, None, Some(b"a"), &[]);
        let b = raw_record(0, 1, None, Some(b"b"), &[]);
        vec![
            ("trailing bytes", [a.clone(), b.clone()].concat(), 1, 0),
            ("too few records", a.clone(), 2, 1),
            (
                "a repeated offset delta",
                [a.clone(), a.clone()].concat(),
                2,
                1,
            ),
            (
                "a delta past the last",
                [a.clone(), raw_record(0, 5, None, None, &[])].concat(),
                2,
                1,
            ),
            (
                "a truncated varint",
                with_length(&[RECORD_ATTRIBUTES, 0, 0x80]),
                1,
                0,
            ),
            ("a truncated length", [a.clone(), vec![0x80]].concat(), 2, 1),
            (
                "a length past the end",
                [a.clone(), vec![40, 0]].concat(),
                2,
                1,
            ),
            ("a negative length", [a.clone(), vec![1]].concat(), 2, 1),
            ("an empty record", vec![0], 1, 0),
            ("nothing", Vec::new(), 1, 0),
            (
                "a key past the record",
                [a.clone(), with_length(&[RECORD_ATTRIBUTES, 0, 2, 40, 0])].concat(),
                2,
                1,
            ),
            (
                "a header key that is not UTF-8",
                [a.clone(), raw_record(0, 1, None, None, &[(b"\xc3", None)])].concat(),
                2,
                1,
            ),
            (
                "a byte after the headers",
                [
                    a.clone(),
                    with_length(&[&raw_record(0, 1, Some(b"k"), None, &[])[1..], &[0]].concat()),
                ]
                .concat(),
                2,
                1,
            ),
        ]
    }

    #[test]
    fn untrusted_compressed_batches_are_refused_as_uncompressed_ones_are() {
        for (what, section, count, last) in malformed_sections() {
            let plain = raw_batch(Compression::None, &section, count, last);
            let expected = validate(&plain).expect_err(what).to_string();
            assert_eq!(
                validate_untrusted(&plain, 1024)
                    .expect_err(what)
                    .to_string(),
                expected,
                "{what}"
            );
            for codec in Compression::ALL.into_iter().skip(1) {
                let batch = raw_batch(codec, &section, count, last);
                validate(&batch).expect("intact up to its CRC");
                let error = validate_untrusted(&batch, 1024).expect_err(what);
                assert_eq!(error.to_string(), expected, "{what}, {codec}");
                assert!(decode_records(&batch).is_err(), "{what}, {codec}");
            }
        }
    }

    #[test]
    fn damaged_compressed_bytes_under_a_recomputed_crc_are_refused() {
        let records: Vec<Record> = (0..200)
            .map(|i| Record {
                key: Some(Bytes::from(format!("key-{i}"))),
                value: Some(Bytes::from(
                    format!("value {i} of a damaged batch").repeat(3),
                )),
                headers: Vec::new(),
                timestamp: 1_000 + i,
            })
            .collect();
        for codec in Compression::ALL.into_iter().skip(1) {
            let mut batch = build(codec, &records).to_vec();
            let middle = HEADER_BYTES + (batch.len() - HEADER_BYTES) / 2;
            for byte in &mut batch[middle..middle + 16] {
                *byte = !*byte;
            }
            super::super::reseal(&mut batch, 200);
            let batch = Bytes::from(batch);
            validate(&batch).expect("the CRC covers the damage");
            let error = validate_untrusted(&batch, MAX_DECOMPRESSED_BYTES)
                .expect_err("damaged batch refused");
            assert!(decode_records(&batch).is_err(), "{codec}: decodes");
            // The message names the problem.
            assert!(!error.to_string().is_empty(), "{codec}");
        }
    }

    #[test]
    fn records_that_straddle_the_walk_window_are_checked_whole() {
        // Values around and far above the first window's size, so records start and end
        // on both sides of every refill and the window grows.
        let sizes = [10, 70_000, 3, 200_000, 65_530, 0, 1, 4_093, 300_001, 17];
        let records: Vec<Record> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| Record {
                key: None,
                value: Some(Bytes::from(vec![b'a' + i as u8; n])),
                headers: Vec::new(),
                timestamp: i as i64,
            })
            .collect();
        let uncompressed: usize = build(Compression::None, &records).len();
        for codec in Compression::ALL {
            let batch = build(codec, &records);
            validate_untrusted(&batch, uncompressed).expect("valid");
            // The limit counts decompressed bytes.
            if codec != Compression::None {
                assert!(
                    matches!(
                        validate_untrusted(&batch, uncompressed / 2),
                        Err(BatchError::DecompressedTooLarge { .. })
                    ),
                    "{codec}"
                );
            }
            // A bad last record is found after every refill.
            let mut section = Vec::new();
            let section_at = build(Compression::None, &records);
            section.extend_from_slice(&section_at[HEADER_BYTES..]);
            section.push(0);
            let bad = raw_batch(codec, &section, sizes.len() as i32, sizes.len() as i32 - 1);
            assert!(
                matches!(
                    validate_untrusted(&bad, uncompressed * 2),
                    Err(BatchError::TrailingBytes { bytes: 1, .. })
                ),
                "{codec}"
            );
        }
    }

    #[test]
    fn a_record_longer_than_the_limit_is_refused_before_it_is_read() {
        // A record that states 100 MiB in a section of a few bytes: refused from its
        // length alone, whatever follows.
        let mut section = Vec::new();
        put_varint(&mut section, 100 << 20);
        section.extend_from_slice(&[RECORD_ATTRIBUTES, 0, 0]);
        for codec in Compression::ALL.into_iter().skip(1) {
            let batch = raw_batch(codec, &section, 1, 0);
            assert!(
                matches!(
                    validate_untrusted(&batch, 1 << 20),
                    Err(BatchError::DecompressedTooLarge { max }) if max == 1 << 20
                ),
                "{codec}"
            );
        }
    }

    #[test]
    fn corrupt_compressed_section_is_a_decompress_error() {
        let batch = raw_batch(Compression::None, b"not zstd at all", 1, 0);
        let mut bytes = batch.to_vec();
        bytes[ATTRIBUTES..ATTRIBUTES + 2]
            .copy_from_slice(&Compression::Zstd.attribute().to_be_bytes());
        let crc = compute_crc(&bytes);
        bytes[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
        let result = decode_records(&Bytes::from(bytes));
        assert!(
            matches!(result, Err(BatchError::Decompress { codec: "zstd", .. })),
            "{result:?}"
        );
    }

    #[test]
    fn decompressed_size_is_limited() {
        let big = record(None, Some(&[0u8; 10_000]), 1);
        let batch = build(Compression::Gzip, std::slice::from_ref(&big));
        assert!(decode_records_limited(&batch, 20_000).is_ok());
        assert!(matches!(
            decode_records_limited(&batch, 5_000),
            Err(BatchError::DecompressedTooLarge { max: 5_000 })
        ));
    }

    #[test]
    fn corrupted_crc_is_reported_by_decode() {
        let mut bytes = build(Compression::None, &[record(None, Some(b"v"), 1)]).to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(matches!(
            decode_records(&Bytes::from(bytes)),
            Err(BatchError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn a_record_that_would_pass_the_batch_limit_is_refused_and_the_builder_kept() {
        let mut builder = RecordBatchBuilder::new(Compression::None);
        builder.push(&record(None, Some(b"small"), 1));
        let size = builder.estimated_size();
        let huge = Record {
            value: Some(Bytes::from(vec![0u8; MAX_BATCH_BYTES])),
            ..Record::default()
        };
        assert!(matches!(
            builder.try_push(&huge),
            Err(BatchError::TooLarge {
                max: MAX_BATCH_BYTES,
                ..
            })
        ));
        assert_eq!((builder.len(), builder.estimated_size()), (1, size));
        // push remembers the refusal; build reports it.
        builder.push(&huge);
        builder.push(&record(None, Some(b"later"), 2));
        assert!(matches!(builder.build(), Err(BatchError::TooLarge { .. })));
    }

    #[test]
    fn compressed_batches_are_limited_by_their_uncompressed_size() {
        let mut builder = RecordBatchBuilder::new(Compression::Zstd);
        let huge = Record {
            value: Some(Bytes::from(vec![0u8; MAX_DECOMPRESSED_BYTES])),
            ..Record::default()
        };
        assert!(matches!(
            builder.try_push(&huge),
            Err(BatchError::DecompressedTooLarge { .. })
        ));
        assert!(builder.is_empty());
    }

    #[test]
    fn more_than_max_records_is_refused() {
        let mut builder = RecordBatchBuilder::new(Compression::None);
        // Pretend the builder is full rather than encode a million records.
        builder.record_count = MAX_RECORDS_PER_BATCH;
        assert!(matches!(
            builder.try_push(&Record::default()),
            Err(BatchError::BadRecordCount {
                max: MAX_RECORDS_PER_BATCH,
                ..
            })
        ));
    }

    #[test]
    fn the_record_walk_agrees_with_decode_records_for_every_codec() {
        let records = [
            record(Some(b"a"), Some(b"1"), 10),
            record(None, Some(b"2"), 11),
            record(Some(b"bb"), None, 12),
            record(Some(b""), Some(b""), 13),
        ];
        for codec in Compression::ALL {
            let mut batch = BytesMut::from(&build(codec, &records)[..]);
            patch_offset_and_epoch(&mut batch, 100, 3);
            let batch = batch.freeze();
            let header = validate(&batch).unwrap();
            let section = records_section(&batch, &header).unwrap();
            let mut walked = Vec::new();
            let mut spans = Vec::new();
            walk_records(&section, &header, |r| {
                walked.push((
                    header.base_offset + i64::from(r.offset_delta),
                    r.key.map(<[u8]>::to_vec),
                    r.is_tombstone,
                ));
                spans.extend_from_slice(&section[r.span]);
            })
            .unwrap();
            let decoded: Vec<_> = decode_records(&batch)
                .unwrap()
                .into_iter()
                .map(|r| (r.offset, r.key.map(|k| k.to_vec()), r.value.is_none()))
                .collect();
            assert_eq!(walked, decoded, "{codec}");
            assert_eq!(
                spans,
                section.to_vec(),
                "{codec}: the spans tile the section"
            );
        }
    }

    #[test]
    fn the_record_walk_refuses_malformed_sections() {
        let records = [
            record(Some(b"a"), Some(b"1"), 1),
            record(Some(b"b"), None, 2),
        ];
        let batch = build(Compression::None, &records);
        let header = validate(&batch).unwrap();
        let section = &batch[HEADER_BYTES..];
        let truncated = walk_records(&section[..section.len() - 1], &header, |_| {});
        assert!(matches!(
            truncated,
            Err(BatchError::BadRecord { index: 1, .. })
        ));
        let mut fewer = header;
        fewer.record_count = 1;
        assert!(matches!(
            walk_records(section, &fewer, |_| {}),
            Err(BatchError::TrailingBytes { .. })
        ));
        let mut more = header;
        more.record_count = 3;
        assert!(matches!(
            walk_records(section, &more, |_| {}),
            Err(BatchError::RecordCountMismatch { found: 2, .. })
        ));
        let mut tight = header;
        tight.last_offset_delta = 0;
        assert!(matches!(
            walk_records(section, &tight, |_| {}),
            Err(BatchError::BadRecord { index: 1, .. })
        ));
        // A record whose key length (3) runs past its body: attributes, two deltas, the key
        // length and one byte of key.
        let key_past_end = with_length(&[RECORD_ATTRIBUTES, 0, 0, 6, b'k']);
        let batch = raw_batch(Compression::None, &key_past_end, 1, 0);
        let header = crate::check_stored(&batch).unwrap();
        assert!(matches!(
            walk_records(&batch[HEADER_BYTES..], &header, |_| {}),
            Err(BatchError::BadRecord { index: 0, .. })
        ));
    }

    #[test]
    fn a_resealed_batch_with_fewer_records_and_no_codec_is_valid() {
        let records = [
            record(Some(b"a"), Some(b"1"), 1),
            record(Some(b"b"), Some(b"2"), 2),
        ];
        let batch = build(Compression::Gzip, &records);
        let mut empty = batch[..HEADER_BYTES].to_vec();
        crate::set_compression(&mut empty, Compression::None);
        crate::reseal(&mut empty, 0);
        let header = validate(&empty).unwrap();
        assert_eq!(header.record_count, 0);
        assert_eq!(header.compression().unwrap(), Compression::None);
        assert_eq!(header.last_offset_delta, 1, "offsets are kept");
        assert_eq!(header.base_timestamp, 1, "timestamps are kept");

        let section = records_section(&batch, &validate(&batch).unwrap()).unwrap();
        let mut second = Vec::new();
        walk_records(&section, &validate(&batch).unwrap(), |r| {
            if r.offset_delta == 1 {
                second = section[r.span].to_vec();
            }
        })
        .unwrap();
        let mut kept = batch[..HEADER_BYTES].to_vec();
        crate::set_compression(&mut kept, Compression::None);
        kept.extend_from_slice(&second);
        crate::reseal(&mut kept, 1);
        let decoded = decode_records(&Bytes::from(kept)).unwrap();
        assert_eq!(decoded.len(), 1);
        assert_eq!(decoded[0].offset, 1);
        assert_eq!(decoded[0].value.as_deref(), Some(&b"2"[..]));
    }

    fn nullable_bytes() -> impl Strategy<Value = Option<Bytes>> {
        prop_oneof![
            Just(None),
            Just(Some(Bytes::new())),
            vec(any::<u8>(), 1..48).prop_map(|v| Some(Bytes::from(v))),
        ]
    }

    fn any_record() -> impl Strategy<Value = Record> {
        let header = ("\\PC{0,6}", nullable_bytes()).prop_map(|(key, value)| Header { key, value });
        (
            nullable_bytes(),
            nullable_bytes(),
            vec(header, 0..4),
            any::<i64>(),
        )
            .prop_map(|(key, value, headers, timestamp)| Record {
                key,
                value,
                headers,
                timestamp,
            })
    }

    fn any_codec() -> impl Strategy<Value = Compression> {
        prop::sample::select(Compression::ALL.to_vec())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn records_round_trip_through_every_codec(
            records in vec(any_record(), 1..12),
            codec in any_codec(),
            producer in (any::<i64>(), any::<i16>(), any::<i32>()),
            append_time in proptest::option::of(any::<i64>()),
        ) {
            let mut builder = RecordBatchBuilder::new(codec)
                .producer_id(producer.0)
                .producer_epoch(producer.1)
                .base_sequence(producer.2);
            if let Some(t) = append_time {
                builder = builder.log_append_time(t);
            }
            for r in &records {
                builder.push(r);
            }
            let batch = builder.build().expect("build").freeze();

            let header = validate(&batch).expect("valid");
            prop_assert_eq!(validate_untrusted(&batch, MAX_DECOMPRESSED_BYTES).expect("valid"), header);
            prop_assert_eq!(header.record_count as usize, records.len());
            prop_assert_eq!(header.last_offset_delta as usize, records.len() - 1);
            prop_assert_eq!(header.compression().expect("codec"), codec);
            prop_assert_eq!(header.base_timestamp, records[0].timestamp);
            let max = records.iter().map(|r| r.timestamp).max().expect("non-empty");
            prop_assert_eq!(header.max_timestamp, append_time.unwrap_or(max));
            prop_assert_eq!(
                (header.producer_id, header.producer_epoch, header.base_sequence),
                producer
            );

            let decoded = decode_records(&batch).expect("decode");
            prop_assert_eq!(decoded.len(), records.len());
            for (i, (got, want)) in decoded.iter().zip(&records).enumerate() {
                prop_assert_eq!(got.offset, i as i64);
                prop_assert_eq!(got.timestamp, append_time.unwrap_or(want.timestamp));
                prop_assert_eq!(&got.key, &want.key);
                prop_assert_eq!(&got.value, &want.value);
                prop_assert_eq!(&got.headers, &want.headers);
            }
        }

        #[test]
        fn mutated_or_truncated_batches_never_panic(
            records in vec(any_record(), 1..6),
            codec in any_codec(),
            flips in vec((any::<Index>(), any::<u8>()), 0..6),
            cut in proptest::option::of(any::<Index>()),
            repair_framing in any::<bool>(),
        ) {
            let mut bytes = build(codec, &records).to_vec();
            for (at, xor) in &flips {
                let at = at.index(bytes.len());
                bytes[at] ^= xor;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut.index(bytes.len() + 1));
            }
            // Without repair nearly every mutation stops at the length or CRC check; with
            // it, the damage reaches the record decoder and the decompressors.
            if repair_framing && bytes.len() >= HEADER_BYTES {
                let batch_length = (bytes.len() - LOG_OVERHEAD) as i32;
                bytes[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&batch_length.to_be_bytes());
                let crc = compute_crc(&bytes);
                bytes[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
            }
            // The base offset lies outside the CRC and the log assigns it: keep it in
            // range, so that decoding cannot fail on an offset overflow alone.
            if bytes.len() >= HEADER_BYTES {
                patch_offset_and_epoch(&mut bytes, 0, -1);
            }
            let bytes = Bytes::from(bytes);
            let valid = validate(&bytes).is_ok();
            let untrusted = validate_untrusted(&bytes, MAX_DECOMPRESSED_BYTES);
            if untrusted.is_ok() {
                prop_assert!(valid);
                // What the produce check accepts, every reader can decode.
                let decoded = decode_records(&bytes);
                prop_assert!(decoded.is_ok(), "accepted but undecodable: {:?}", decoded);
            }
            if let Ok(decoded) = decode_records(&bytes) {
                prop_assert!(valid);
                prop_assert!(untrusted.is_ok(), "decodes but refused: {:?}", untrusted);
                prop_assert!(decoded.len() <= MAX_RECORDS_PER_BATCH as usize);
            }
        }
    }
}
