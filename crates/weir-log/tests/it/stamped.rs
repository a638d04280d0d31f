//! A leader's append writes each batch as a patched copy of its first bytes (base offset,
//! leader epoch) beside the untouched rest of the request, with one `pwritev`, instead of
//! patching a copy of the request. These properties check what a consumer sees: every
//! batch read back is byte for byte the batch the producer sent, except the base offset
//! and leader epoch the log assigned, across segment rolls and a reopen.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use weir_log::batch::{self, BatchHeader, STAMPED_BYTES};
use weir_log::{Compression, FlushPolicy, Header, Log, LogConfig, Record, RecordBatchBuilder};

/// One record: key, value, headers.
type RecordSpec = (Option<Vec<u8>>, Option<Vec<u8>>, Vec<(String, Vec<u8>)>);

fn record() -> impl Strategy<Value = RecordSpec> {
    (
        prop::option::of(prop::collection::vec(any::<u8>(), 0..24)),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..300)),
        prop::collection::vec(
            ("[a-z]{0,6}", prop::collection::vec(any::<u8>(), 0..8)),
            0..3,
        ),
    )
}

/// A producer's batch: its records, codec, and the base offset and epoch the producer
/// left in it (garbage the append must overwrite).
fn batch_spec() -> impl Strategy<Value = (Vec<RecordSpec>, bool, i64, i32)> {
    (
        prop::collection::vec(record(), 1..12),
        any::<bool>(),
        any::<i64>(),
        any::<i32>(),
    )
}

fn build((records, compressed, base, epoch): &(Vec<RecordSpec>, bool, i64, i32)) -> BytesMut {
    let codec = if *compressed {
        Compression::Lz4
    } else {
        Compression::None
    };
    let mut builder = RecordBatchBuilder::new(codec);
    for (i, (key, value, headers)) in records.iter().enumerate() {
        builder.push(&Record {
            key: key.clone().map(Bytes::from),
            value: value.clone().map(Bytes::from),
            headers: headers
                .iter()
                .map(|(k, v)| Header {
                    key: k.clone(),
                    value: Some(Bytes::from(v.clone())),
                })
                .collect(),
            timestamp: 1_700_000_000_000 + i as i64,
        });
    }
    let mut bytes = builder.build().unwrap();
    batch::patch_offset_and_epoch(&mut bytes, *base, *epoch);
    bytes
}

/// Every batch of the log from offset 0, as stored.
fn stored_batches(log: &Log) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let data = log.read(offset, 1 << 20, None).unwrap();
        if data.records.is_empty() {
            return out;
        }
        let mut at = 0;
        while at < data.records.len() {
            let len = batch::framed_len(&data.records[at..]).unwrap();
            let one = data.records.slice(at..at + len);
            let header = BatchHeader::parse(&one);
            if header.base_offset >= offset {
                out.push(one);
            }
            at += len;
        }
        offset = data.next_offset;
    }
}

/// Checks that `stored` is `sent` with the base offset and leader epoch assigned.
fn assert_stamped(sent: &[u8], stored: &[u8], base_offset: i64, epoch: i32) {
    assert_eq!(stored.len(), sent.len(), "batch length");
    assert_eq!(
        &stored[STAMPED_BYTES..],
        &sent[STAMPED_BYTES..],
        "batch body"
    );
    let header = BatchHeader::parse(stored);
    assert_eq!(header.base_offset, base_offset);
    assert_eq!(header.partition_leader_epoch, epoch);
    assert_eq!(&stored[8..12], &sent[8..12], "batch length field");
    batch::validate(stored).expect("a stored batch is intact");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_consumer_reads_the_bytes_the_producer_sent_offsets_aside(
        requests in prop::collection::vec(prop::collection::vec(batch_spec(), 1..5), 1..12),
        epoch in 0..1000i32,
        segment_bytes in 2048u64..16384,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_bytes,
            index_interval_bytes: 256,
            flush: FlushPolicy::None,
            retention_age: None,
            ..LogConfig::default()
        };
        let log = Log::open(dir.path(), config.clone()).unwrap();
        // What was sent, batch by batch, with the offset each batch should get.
        let mut sent = Vec::new();
        let mut next = 0i64;
        for request in &requests {
            let mut bytes = BytesMut::new();
            for spec in request {
                let one = build(spec);
                sent.push((one.clone().freeze(), next));
                next += spec.0.len() as i64;
                bytes.extend_from_slice(&one);
            }
            let bytes = bytes.freeze();
            let mut validated = weir_log::ValidatedBatches::new(bytes.clone(), 1 << 20).unwrap();
            let info = log.append_validated(&mut validated, epoch).unwrap();
            prop_assert_eq!(info.last_offset + 1, next);
            // The request's own bytes are untouched: the append wrote patched copies.
            prop_assert_eq!(validated.bytes(), &bytes[..]);
        }
        let check = |log: &Log| {
            let stored = stored_batches(log);
            assert_eq!(stored.len(), sent.len(), "one stored batch per sent batch");
            for ((one, base), stored) in sent.iter().zip(&stored) {
                assert_stamped(one, stored, *base, epoch);
            }
        };
        check(&log);
        drop(log);
        check(&Log::open(dir.path(), config).unwrap());
    }
}
