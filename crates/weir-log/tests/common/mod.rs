//! Helpers shared by the weir-log integration tests: building batches and reading a log
//! back as plain records.
#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use weir_log::{Compression, Log, Record, RecordBatchBuilder, decode_records};

/// One record as a test sees it: offset, key, value, timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub timestamp: i64,
}

/// A batch of `n` records whose values are `"{tag}-{i}"`, timestamps `ts`, keys `k{i}`.
pub fn batch(tag: &str, n: usize, ts: i64) -> BytesMut {
    batch_with(tag, n, ts, Compression::None)
}

pub fn batch_with(tag: &str, n: usize, ts: i64, compression: Compression) -> BytesMut {
    let mut b = RecordBatchBuilder::new(compression);
    for i in 0..n {
        b.push(&Record {
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("{tag}-{i}"))),
            headers: Vec::new(),
            timestamp: ts,
        });
    }
    b.build().expect("valid batch")
}

/// A batch of `n` records with values of exactly `value_bytes` bytes.
pub fn sized_batch(n: usize, value_bytes: usize, ts: i64) -> BytesMut {
    let mut b = RecordBatchBuilder::new(Compression::None);
    let value = Bytes::from(vec![b'x'; value_bytes]);
    for _ in 0..n {
        b.push(&Record {
            key: None,
            value: Some(value.clone()),
            headers: Vec::new(),
            timestamp: ts,
        });
    }
    b.build().expect("valid batch")
}

/// Every record from `from` to the log end, decoded, in order.
pub fn read_all(log: &Log, from: i64) -> Vec<Seen> {
    let mut out = Vec::new();
    let mut offset = from;
    loop {
        let data = log.read(offset, 64 * 1024, None).expect("read");
        if data.records.is_empty() {
            break;
        }
        for batch in data.batches() {
            for r in decode_records(&batch).expect("decode") {
                if r.offset >= offset {
                    out.push(Seen {
                        offset: r.offset,
                        key: r.key.map(|k| k.to_vec()),
                        value: r.value.map(|v| v.to_vec()).unwrap_or_default(),
                        timestamp: r.timestamp,
                    });
                }
            }
        }
        offset = data.next_offset;
    }
    out
}

/// Values only, for compact assertions.
pub fn values(seen: &[Seen]) -> Vec<String> {
    seen.iter()
        .map(|s| String::from_utf8(s.value.clone()).unwrap())
        .collect()
}
