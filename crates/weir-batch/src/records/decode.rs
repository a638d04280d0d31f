//! Reading records back: [`decode_records`] decodes every record of a batch into
//! [`DecodedRecord`]s that slice the batch (or its decompressed section), and
//! [`records_section`] gives a batch's records section as bytes. What the log's readers
//! use; the append path checks records without decoding them (`check`).

use bytes::Bytes;

use super::fields::{
    Field, RecordFault, declared_count, read_deltas, read_header, read_header_count, read_nullable,
    split_record,
};
use super::{DecodedRecord, Header, MAX_DECOMPRESSED_BYTES};
use crate::compression::Compression;
use crate::error::BatchError;
use crate::{BatchHeader, HEADER_BYTES, TimestampType, check_stored};

/// Smallest encoded record: length, attributes, timestamp delta, offset delta, key length,
/// value length and header count, one byte each. Bounds how many records bytes can hold.
const MIN_RECORD_BYTES: usize = 7;

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

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;
    use crate::records::RecordBatchBuilder;
    use crate::records::test_support::{any_codec, any_record, build, raw_batch, record};
    use crate::{
        ATTRIBUTES, CRC, compute_crc, patch_offset_and_epoch, validate, validate_untrusted,
    };

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
    }
}
