//! [`walk_records`]: a records section walked record by record without decoding
//! headers or copying anything, for callers that keep or drop whole records (the log's
//! compaction, the transaction marker reader). Apart from `decode` because it hands out
//! where each record lies, not the record.

use std::ops::Range;

use super::fields::{Field, RecordFault, declared_count, read_deltas, read_nullable, split_record};
use crate::BatchHeader;
use crate::error::BatchError;

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
///
/// [`decode_records`]: super::decode_records
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

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};

    use crate::compression::Compression;
    use crate::error::BatchError;
    use crate::records::test_support::{build, raw_batch, record, with_length};
    use crate::records::{RECORD_ATTRIBUTES, decode_records, records_section, walk_records};
    use crate::{HEADER_BYTES, patch_offset_and_epoch, validate};

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
}
