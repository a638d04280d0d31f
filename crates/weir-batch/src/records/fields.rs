//! Reading one record's fields from untrusted bytes, each length checked against what
//! remains before it is used, and [`RecordFault`], why a record is malformed: the one
//! reader that `decode`, `walk` and `check` share, so all three accept and refuse the
//! same records with the same words.

use std::fmt;

use super::NULL_LENGTH;
use crate::error::BatchError;
use crate::varint::{VarintError, read_varint, read_varlong};
use crate::{BatchHeader, MAX_RECORDS_PER_BATCH};

/// Smallest encoded header: a key length and a value length, one byte each.
const MIN_HEADER_BYTES: usize = 2;

/// `record_count` as a count, for headers `validate` has range-checked.
pub(super) fn declared_count(header: &BatchHeader) -> Result<usize, BatchError> {
    usize::try_from(header.record_count).map_err(|_| BatchError::BadRecordCount {
        count: header.record_count,
        max: MAX_RECORDS_PER_BATCH,
    })
}

/// Reads a record's header count. The count comes from the wire: it is bounded by what
/// the remaining bytes can hold before it sizes anything.
#[inline]
pub(super) fn read_header_count(body: &mut &[u8]) -> Result<usize, RecordFault> {
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
pub(super) fn read_header<'a>(
    body: &mut &'a [u8],
) -> Result<(&'a str, Option<&'a [u8]>), RecordFault> {
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
pub(super) fn split_record<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], RecordFault> {
    let len = read_varint(rest).map_err(|e| RecordFault::Varint(Field::Length, e))?;
    let len = usize::try_from(len).map_err(|_| RecordFault::NegativeLength(Field::Length, len))?;
    take(rest, len, Field::Length)
}

/// Reads the fields before the key: attributes (ignored), timestamp delta and offset
/// delta, checking that the offset delta follows `previous` and is within `last`.
#[inline]
pub(super) fn read_deltas(
    body: &mut &[u8],
    previous: i32,
    last: i32,
) -> Result<(i64, i32), RecordFault> {
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
pub(super) fn read_nullable<'a>(
    body: &mut &'a [u8],
    field: Field,
) -> Result<Option<&'a [u8]>, RecordFault> {
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
pub(super) enum Field {
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
pub(super) enum RecordFault {
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
    pub(super) fn at(self, index: usize) -> BatchError {
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
    use crate::compression::Compression;
    use crate::records::test_support::{
        bad_record_reason, raw_batch, raw_record, refused_alike, with_length,
    };
    use crate::records::{RECORD_ATTRIBUTES, decode_records};
    use crate::validate;
    use crate::varint::put_varint;

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

    /// Found by the `batch` fuzz target (fuzz/regressions/batch): a producer's batch whose
    /// base offset plus its last delta is past `i64::MAX` was taken by every check and
    /// refused by the decoder.
    #[test]
    fn a_batch_whose_offsets_overflow_is_refused_whole() {
        let mut section = raw_record(0, 0, None, None, &[]);
        section.extend(raw_record(0, 1, None, None, &[]));
        let mut batch = raw_batch(Compression::None, &section, 2, 1).to_vec();
        // The base offset is outside the CRC: the second record's offset overflows.
        batch[..8].copy_from_slice(&i64::MAX.to_be_bytes());
        for refused in [validate(&batch), crate::validate_untrusted(&batch, 1 << 20)] {
            assert!(
                matches!(refused, Err(crate::BatchError::OffsetOverflow { .. })),
                "{refused:?}"
            );
        }
        batch[..8].copy_from_slice(&(i64::MAX - 1).to_be_bytes());
        validate(&batch).expect("the last record's offset is i64::MAX");
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
}
