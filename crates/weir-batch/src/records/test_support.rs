//! Records and batches for the record tests, shared by the tests of every file in
//! `records`: well-formed ones from the builder, hand-made ones with any bytes at all, and
//! the proptest strategies for records and codecs.

use std::fmt;

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;

use super::{
    Header, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE, NULL_LENGTH,
    RECORD_ATTRIBUTES, Record, RecordBatchBuilder, decode_records,
};
use crate::compression::Compression;
use crate::error::BatchError;
use crate::varint::{put_varint, put_varlong};
use crate::{BatchHeader, HEADER_BYTES, LOG_OVERHEAD, MAGIC_V2, validate, write_header};

pub(super) fn record(
    key: Option<&'static [u8]>,
    value: Option<&'static [u8]>,
    timestamp: i64,
) -> Record {
    Record {
        key: key.map(Bytes::from_static),
        value: value.map(Bytes::from_static),
        headers: Vec::new(),
        timestamp,
    }
}

pub(super) fn build(compression: Compression, records: &[Record]) -> Bytes {
    let mut builder = RecordBatchBuilder::new(compression);
    for r in records {
        builder.push(r);
    }
    builder.build().expect("build").freeze()
}

/// One raw record: the fields after the length prefix, then the prefix put in front.
pub(super) fn raw_record(
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

pub(super) fn with_length(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(&mut out, body.len() as i32);
    out.extend_from_slice(body);
    out
}

/// A correctly framed and checksummed batch around any records section.
pub(super) fn raw_batch(
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
    write_header(&mut batch, &header, None);
    Bytes::from(batch)
}

pub(super) fn bad_record_reason(result: Result<impl fmt::Debug, BatchError>) -> (usize, String) {
    match result {
        Err(BatchError::BadRecord { index, reason }) => (index, reason),
        other => panic!("expected BadRecord, got {other:?}"),
    }
}

/// The record fault `validate` (the append path's walk) finds in `batch`, which must
/// be the one `decode_records` finds.
pub(super) fn refused_alike(batch: &Bytes) -> (usize, String) {
    let walked = bad_record_reason(validate(batch));
    assert_eq!(walked, bad_record_reason(decode_records(batch)));
    walked
}

pub(super) fn nullable_bytes() -> impl Strategy<Value = Option<Bytes>> {
    prop_oneof![
        Just(None),
        Just(Some(Bytes::new())),
        vec(any::<u8>(), 1..48).prop_map(|v| Some(Bytes::from(v))),
    ]
}

pub(super) fn any_record() -> impl Strategy<Value = Record> {
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

pub(super) fn any_codec() -> impl Strategy<Value = Compression> {
    prop::sample::select(Compression::ALL.to_vec())
}
