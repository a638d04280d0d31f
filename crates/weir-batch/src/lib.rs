//! Kafka RecordBatch v2, byte for byte, for every part of Weir that touches records (the
//! log, the broker, the client): the header layout, validation of untrusted batch
//! bytes, and the in-place patches the log makes when it assigns offsets.
//!
//! A batch is a 61-byte header followed by `record_count` varint-encoded records
//! (possibly compressed as one block). The CRC-32C covers everything from `attributes`
//! to the end, so the two fields the broker assigns, `base_offset` and
//! `partition_leader_epoch`, can be patched without touching the CRC or the records.
//!
//! ```text
//! offset  size  field
//!      0     8  base_offset             i64  assigned by the log
//!      8     4  batch_length            i32  bytes after this field (total - 12)
//!     12     4  partition_leader_epoch  i32  assigned by the log
//!     16     1  magic                   i8   always 2
//!     17     4  crc                     u32  CRC-32C of bytes 21..end
//!     21     2  attributes              i16  compression, timestamp type, flags
//!     23     4  last_offset_delta       i32
//!     27     8  base_timestamp          i64
//!     35     8  max_timestamp           i64
//!     43     8  producer_id             i64
//!     51     2  producer_epoch          i16
//!     53     4  base_sequence           i32
//!     57     4  record_count            i32
//!     61     -  records
//! ```

pub mod compression;
pub mod control;
mod crc_combine;
mod error;
pub mod records;
mod varint;

pub use crate::compression::Compression;
pub use crate::error::BatchError;

pub use records::{
    DecodedRecord, Header, MAX_DECOMPRESSED_BYTES, RawRecord, Record, RecordBatchBuilder,
    RecordView, decode_records, records_section, walk_records,
};

/// Size of the fixed batch header.
pub const HEADER_BYTES: usize = 61;
/// Bytes before `batch_length` counts: `base_offset` (8) and `batch_length` (4).
pub const LOG_OVERHEAD: usize = 12;
/// The only batch format Weir stores.
pub const MAGIC_V2: i8 = 2;
/// Largest batch the log accepts or will read back (the default `max.message.bytes`
/// is lower; this is the hard ceiling that sizes buffers).
pub const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;
/// Most records one batch may claim to hold. Checked before anything is sized by it.
pub const MAX_RECORDS_PER_BATCH: i32 = 1 << 20;
/// How many times its own size a compressed batch from outside may decompress to:
/// [`decompressed_limit`] of a topic's `max.message.bytes`. Real payloads compress
/// 2-10x (highly repetitive logs a few tens of times); a batch that expands further is
/// refused as a decompression bomb. Only the produce check applies it; readers decode up
/// to [`MAX_DECOMPRESSED_BYTES`], which the limit never passes, so every accepted batch
/// can be read back.
pub const MAX_COMPRESSION_RATIO: usize = 64;

pub(crate) const BASE_OFFSET: usize = 0;
pub(crate) const BATCH_LENGTH: usize = 8;
pub(crate) const PARTITION_LEADER_EPOCH: usize = 12;
pub(crate) const MAGIC: usize = 16;
pub(crate) const CRC: usize = 17;
pub(crate) const ATTRIBUTES: usize = 21;
pub(crate) const LAST_OFFSET_DELTA: usize = 23;
pub(crate) const BASE_TIMESTAMP: usize = 27;
pub(crate) const MAX_TIMESTAMP: usize = 35;
pub(crate) const PRODUCER_ID: usize = 43;
pub(crate) const PRODUCER_EPOCH: usize = 51;
pub(crate) const BASE_SEQUENCE: usize = 53;
pub(crate) const RECORD_COUNT: usize = 57;

/// Attribute bits (Kafka's `DefaultRecordBatch`).
pub(crate) const COMPRESSION_MASK: i16 = 0x07;
pub(crate) const TIMESTAMP_TYPE_BIT: i16 = 0x08;
pub(crate) const TRANSACTIONAL_BIT: i16 = 0x10;
pub(crate) const CONTROL_BIT: i16 = 0x20;

/// How a batch's timestamps were set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    /// The producer's clock.
    CreateTime,
    /// The broker's clock at append.
    LogAppendTime,
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The fixed header of one batch, read from bytes that have at least [`HEADER_BYTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Reads the header fields. Panics if `b` is shorter than [`HEADER_BYTES`]; callers
    /// check the length first (it is a bug, not bad input, to get here with less).
    pub fn parse(b: &[u8]) -> BatchHeader {
        assert!(
            b.len() >= HEADER_BYTES,
            "batch header needs {HEADER_BYTES} bytes"
        );
        BatchHeader {
            base_offset: i64_at(b, BASE_OFFSET),
            batch_length: i32_at(b, BATCH_LENGTH),
            partition_leader_epoch: i32_at(b, PARTITION_LEADER_EPOCH),
            magic: b[MAGIC] as i8,
            crc: u32::from_be_bytes(b[CRC..CRC + 4].try_into().expect("4 bytes")),
            attributes: i16_at(b, ATTRIBUTES),
            last_offset_delta: i32_at(b, LAST_OFFSET_DELTA),
            base_timestamp: i64_at(b, BASE_TIMESTAMP),
            max_timestamp: i64_at(b, MAX_TIMESTAMP),
            producer_id: i64_at(b, PRODUCER_ID),
            producer_epoch: i16_at(b, PRODUCER_EPOCH),
            base_sequence: i32_at(b, BASE_SEQUENCE),
            record_count: i32_at(b, RECORD_COUNT),
        }
    }

    /// Whole size of the batch on the wire and on disk.
    pub fn total_bytes(&self) -> usize {
        self.batch_length as usize + LOG_OVERHEAD
    }

    /// Offset of the last record in the batch.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// Offset the batch after this one starts at.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    pub fn compression(&self) -> Result<Compression, BatchError> {
        Compression::from_attribute(self.attributes & COMPRESSION_MASK)
    }

    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & TIMESTAMP_TYPE_BIT != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }
}

/// CRC-32C of a batch's checked region (attributes to the end).
pub fn compute_crc(batch: &[u8]) -> u32 {
    // CRC-32/ISCSI is CRC-32C; the 64-bit return holds the 32-bit value.
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, &batch[ATTRIBUTES..]) as u32
}

/// Reads the total length of the batch that starts `bytes`, from its `batch_length`
/// field, checking it against the bounds a batch can have. Needs only 12 bytes.
pub fn framed_len(bytes: &[u8]) -> Result<usize, BatchError> {
    if bytes.len() < LOG_OVERHEAD {
        return Err(BatchError::Truncated {
            needed: LOG_OVERHEAD,
            available: bytes.len(),
        });
    }
    let batch_length = i32_at(bytes, BATCH_LENGTH);
    let min = (HEADER_BYTES - LOG_OVERHEAD) as i32;
    if batch_length < min {
        return Err(BatchError::LengthTooSmall { batch_length, min });
    }
    let total = batch_length as usize + LOG_OVERHEAD;
    if total > MAX_BATCH_BYTES {
        return Err(BatchError::TooLarge {
            bytes: total,
            max: MAX_BATCH_BYTES,
        });
    }
    Ok(total)
}

/// Checks one complete batch (`batch.len()` must equal its framed length): magic, CRC,
/// record count and offset delta, compression codec, and, for uncompressed batches, every
/// record as [`decode_records`] reads it (lengths, offset deltas against the header, key,
/// value and headers), without copying anything. Compressed batches are checked up to their CRC; [`validate_untrusted`], the
/// check for bytes from a producer, also decompresses them and walks their records. A
/// follower checks what its leader sends with this; bytes the log wrote itself need only
/// [`check_stored`].
pub fn validate(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = check_stored(batch)?;
    if header.compression()? == Compression::None {
        records::check_uncompressed_records(&batch[HEADER_BYTES..], &header)?;
    }
    Ok(header)
}

/// The most bytes [`validate_untrusted`] lets a compressed batch decompress to, for a log
/// whose `max.message.bytes` is `max_message_bytes`: [`MAX_COMPRESSION_RATIO`] times
/// that, and never more than [`MAX_DECOMPRESSED_BYTES`] (what readers decode up to).
pub fn decompressed_limit(max_message_bytes: usize) -> usize {
    max_message_bytes
        .saturating_mul(MAX_COMPRESSION_RATIO)
        .min(MAX_DECOMPRESSED_BYTES)
}

/// [`validate`] for a batch from outside (a producer), which must decode as well as be
/// intact: a compressed batch is also decompressed, streaming, and its records walked
/// exactly as an uncompressed batch's are, so a batch whose compressed bytes are damaged
/// (under a CRC recomputed over the damage) or that expands past `max_decompressed`
/// bytes (see [`decompressed_limit`]) is refused. The decompressed records are never
/// held whole: a window holds the record being checked. An uncompressed batch costs
/// exactly what [`validate`] costs.
pub fn validate_untrusted(
    batch: &[u8],
    max_decompressed: usize,
) -> Result<BatchHeader, BatchError> {
    let header = check_stored(batch)?;
    match header.compression()? {
        Compression::None => {
            records::check_uncompressed_records(&batch[HEADER_BYTES..], &header)?;
        }
        codec => records::check_compressed_records(
            codec,
            &batch[HEADER_BYTES..],
            &header,
            max_decompressed,
        )?,
    }
    Ok(header)
}

/// The integrity check for a batch read back from a segment, which passed [`validate`]
/// when it was appended: framing, magic, CRC (which covers every record byte), and the
/// header's counts. The record walk is not repeated: the CRC proves the records are the
/// bytes that were validated.
pub fn check_stored(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = stored_header(batch)?;
    let crc = compute_crc(batch);
    if crc != header.crc {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed: crc,
        });
    }
    check_counts(header)
}

/// [`check_stored`] but for the CRC: framing, magic and the header's counts, for a batch
/// whose CRC the reader checked before it wrote it (a log reading back what this process
/// appended), where computing it again would only find damage done on the disk since.
pub fn check_stored_layout(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    check_counts(stored_header(batch)?)
}

/// A stored batch's header, once its framing and magic check out.
fn stored_header(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let total = framed_len(batch)?;
    if batch.len() != total {
        return Err(BatchError::LengthMismatch {
            framed: total,
            actual: batch.len(),
        });
    }
    let header = BatchHeader::parse(batch);
    if header.magic != MAGIC_V2 {
        return Err(BatchError::UnsupportedMagic(header.magic));
    }
    Ok(header)
}

/// The counts of a stored batch's header: its records, their offsets.
fn check_counts(header: BatchHeader) -> Result<BatchHeader, BatchError> {
    if header.record_count < 0 || header.record_count > MAX_RECORDS_PER_BATCH {
        return Err(BatchError::BadRecordCount {
            count: header.record_count,
            max: MAX_RECORDS_PER_BATCH,
        });
    }
    // Kafka keeps last_offset_delta = count - 1 for every batch a producer writes
    // (compaction may leave a batch with fewer records than its delta span, but never more).
    if header.record_count > 0 && header.last_offset_delta < header.record_count - 1
        || header.last_offset_delta < 0
    {
        return Err(BatchError::BadOffsetDelta {
            last_offset_delta: header.last_offset_delta,
            record_count: header.record_count,
        });
    }
    // Every record's offset (base + its delta, at most the last) must be an offset: a
    // batch whose records' offsets overflow could be taken and never read.
    if header
        .base_offset
        .checked_add(i64::from(header.last_offset_delta))
        .is_none()
    {
        return Err(BatchError::OffsetOverflow {
            base_offset: header.base_offset,
            last_offset_delta: header.last_offset_delta,
        });
    }
    Ok(header)
}

/// Walks a buffer holding zero or more concatenated batches, validating each with
/// [`validate`]. Returns the headers in order.
pub fn validate_all(mut bytes: &[u8]) -> Result<Vec<BatchHeader>, BatchError> {
    let mut headers = Vec::new();
    while !bytes.is_empty() {
        let len = framed_len(bytes)?;
        if bytes.len() < len {
            return Err(BatchError::Truncated {
                needed: len,
                available: bytes.len(),
            });
        }
        headers.push(validate(&bytes[..len])?);
        bytes = &bytes[len..];
    }
    Ok(headers)
}

/// How many leading bytes of a batch hold the fields a leader's append assigns (base
/// offset and partition leader epoch, with the batch length between them).
pub const STAMPED_BYTES: usize = PARTITION_LEADER_EPOCH + 4;

/// The first [`STAMPED_BYTES`] of `batch` as [`patch_offset_and_epoch`] would leave
/// them, without touching `batch`: a leader writes this copy beside the untouched rest
/// of the batch, so a request's bytes are never copied to be patched.
pub fn stamped_prefix(batch: &[u8], base_offset: i64, leader_epoch: i32) -> [u8; STAMPED_BYTES] {
    let mut prefix = [0; STAMPED_BYTES];
    prefix.copy_from_slice(&batch[..STAMPED_BYTES]);
    patch_offset_and_epoch(&mut prefix, base_offset, leader_epoch);
    prefix
}

/// Sets a batch's base offset and partition leader epoch in place. Both fields lie
/// outside the CRC, so the batch stays valid.
pub fn patch_offset_and_epoch(batch: &mut [u8], base_offset: i64, leader_epoch: i32) {
    batch[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
    batch[PARTITION_LEADER_EPOCH..PARTITION_LEADER_EPOCH + 4]
        .copy_from_slice(&leader_epoch.to_be_bytes());
}

/// Sets the header fields that follow from a batch's records after they were replaced in
/// place (as compaction does when it drops records): `batch_length` (from `batch.len()`),
/// `record_count` and the CRC. Every other header field is kept as it is.
pub fn reseal(batch: &mut [u8], record_count: i32) {
    let batch_length = (batch.len() - LOG_OVERHEAD) as i32;
    batch[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&batch_length.to_be_bytes());
    batch[RECORD_COUNT..RECORD_COUNT + 4].copy_from_slice(&record_count.to_be_bytes());
    let crc = compute_crc(batch);
    batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Sets the codec bits of a batch's attributes, keeping its other attribute bits. The
/// attributes are under the CRC: call [`reseal`] afterwards.
pub fn set_compression(batch: &mut [u8], codec: Compression) {
    let attributes = (i16_at(batch, ATTRIBUTES) & !COMPRESSION_MASK) | codec.attribute();
    batch[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
}

/// Writes a complete header into `out[..HEADER_BYTES]` and fills in the CRC over
/// `out[ATTRIBUTES..]`, which must already hold the records. Used by the encoder, which may
/// pass the CRC-32C of `out[HEADER_BYTES..]` that it computed as it wrote the records:
/// then only the header region is read again, and the two CRCs are combined.
pub(crate) fn write_header(out: &mut [u8], h: &BatchHeader, records_crc: Option<u32>) {
    out[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&h.base_offset.to_be_bytes());
    out[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&h.batch_length.to_be_bytes());
    out[PARTITION_LEADER_EPOCH..PARTITION_LEADER_EPOCH + 4]
        .copy_from_slice(&h.partition_leader_epoch.to_be_bytes());
    out[MAGIC] = h.magic as u8;
    out[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&h.attributes.to_be_bytes());
    out[LAST_OFFSET_DELTA..LAST_OFFSET_DELTA + 4]
        .copy_from_slice(&h.last_offset_delta.to_be_bytes());
    out[BASE_TIMESTAMP..BASE_TIMESTAMP + 8].copy_from_slice(&h.base_timestamp.to_be_bytes());
    out[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&h.max_timestamp.to_be_bytes());
    out[PRODUCER_ID..PRODUCER_ID + 8].copy_from_slice(&h.producer_id.to_be_bytes());
    out[PRODUCER_EPOCH..PRODUCER_EPOCH + 2].copy_from_slice(&h.producer_epoch.to_be_bytes());
    out[BASE_SEQUENCE..BASE_SEQUENCE + 4].copy_from_slice(&h.base_sequence.to_be_bytes());
    out[RECORD_COUNT..RECORD_COUNT + 4].copy_from_slice(&h.record_count.to_be_bytes());
    let crc = match records_crc {
        Some(records) => {
            let header = crc_fast::checksum(
                crc_fast::CrcAlgorithm::Crc32Iscsi,
                &out[ATTRIBUTES..HEADER_BYTES],
            );
            let records_len = (out.len() - HEADER_BYTES) as u64;
            crc_combine::crc32c_combine(header as u32, records, records_len)
        }
        None => compute_crc(out),
    };
    out[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
}
