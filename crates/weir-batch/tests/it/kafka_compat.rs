//! Cross-checks Weir's RecordBatch v2 codec against an independent implementation, the
//! `kafka-protocol` crate: batches we build must decode there to the same records, batches
//! it encodes must pass our validation and decode here to the same records, and for the
//! same input the two encoders must agree byte for byte where the format leaves no choice.

use bytes::{Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression as KafkaCompression, Record as KafkaRecord, RecordBatchDecoder, RecordBatchEncoder,
    RecordEncodeOptions, RecordSet, TimestampType as KafkaTimestampType,
};
use proptest::prelude::*;
use weir_batch::{Compression, DecodedRecord, Header, Record, RecordBatchBuilder, decode_records};
use weir_batch::{TimestampType, validate, validate_all};

/// The producer and broker fields both encoders are given.
#[derive(Debug, Clone, Copy)]
struct BatchFields {
    base_offset: i64,
    partition_leader_epoch: i32,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
}

/// What our builder writes when no producer fields are set.
const UNSET: BatchFields = BatchFields {
    base_offset: 0,
    partition_leader_epoch: -1,
    producer_id: -1,
    producer_epoch: -1,
    base_sequence: -1,
};

/// An idempotent producer's batch, still at base offset 0 as a producer sends it.
const IDEMPOTENT: BatchFields = BatchFields {
    base_offset: 0,
    partition_leader_epoch: -1,
    producer_id: 4242,
    producer_epoch: 3,
    base_sequence: 100,
};

fn kafka_codec(codec: Compression) -> KafkaCompression {
    match codec {
        Compression::None => KafkaCompression::None,
        Compression::Gzip => KafkaCompression::Gzip,
        Compression::Snappy => KafkaCompression::Snappy,
        Compression::Lz4 => KafkaCompression::Lz4,
        Compression::Zstd => KafkaCompression::Zstd,
    }
}

fn header(key: &str, value: Option<&'static [u8]>) -> Header {
    Header {
        key: key.to_owned(),
        value: value.map(Bytes::from_static),
    }
}

/// Records covering null, empty and non-empty keys and values, headers with null values,
/// non-ASCII header keys, and a value larger than one snappy or lz4 block. Timestamps
/// never fall below the first record's, because kafka-protocol takes the smallest timestamp
/// as the batch's base where Kafka (and Weir) take the first record's.
fn sample_records() -> Vec<Record> {
    let large: Vec<u8> = (0..100_000u32)
        .flat_map(|i| (i % 251).to_le_bytes())
        .collect();
    vec![
        Record {
            key: Some(Bytes::from_static(b"user-1")),
            value: Some(Bytes::from_static(b"{\"clicks\":1}")),
            headers: vec![header("trace-id", Some(b"abc123")), header("empty", None)],
            timestamp: 1_700_000_000_000,
        },
        Record {
            key: None,
            value: None,
            headers: vec![],
            timestamp: 1_700_000_000_000,
        },
        Record {
            key: Some(Bytes::new()),
            value: Some(Bytes::new()),
            headers: vec![header("", Some(b"")), header("clé", Some(b"\x00\xff"))],
            timestamp: 1_700_000_000_250,
        },
        Record {
            key: Some(Bytes::from_static(b"user-2")),
            value: Some(Bytes::from(large)),
            headers: vec![],
            timestamp: 1_700_000_003_600,
        },
        Record {
            key: Some(Bytes::from_static(b"user-1")),
            value: Some(Bytes::from_static(b"{\"clicks\":2}")),
            headers: vec![],
            timestamp: 1_700_000_000_500,
        },
    ]
}

fn build_weir(codec: Compression, records: &[Record], fields: BatchFields) -> Bytes {
    let mut builder = RecordBatchBuilder::new(codec)
        .producer_id(fields.producer_id)
        .producer_epoch(fields.producer_epoch)
        .base_sequence(fields.base_sequence);
    for record in records {
        builder.push(record);
    }
    let mut batch = builder.build().expect("weir builds the batch");
    weir_batch::patch_offset_and_epoch(
        &mut batch,
        fields.base_offset,
        fields.partition_leader_epoch,
    );
    batch.freeze()
}

/// The same records as kafka-protocol models them. It derives the batch's base sequence
/// from each record's, and starts a new batch where `offset - sequence` changes, so the
/// sequences must run on from the base exactly as offsets do.
fn to_kafka_records(records: &[Record], fields: BatchFields) -> Vec<KafkaRecord> {
    records
        .iter()
        .enumerate()
        .map(|(i, r)| KafkaRecord {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: fields.partition_leader_epoch,
            producer_id: fields.producer_id,
            producer_epoch: fields.producer_epoch,
            timestamp_type: KafkaTimestampType::Creation,
            offset: fields.base_offset + i as i64,
            sequence: fields.base_sequence.wrapping_add(i as i32),
            timestamp: r.timestamp,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r
                .headers
                .iter()
                .map(|h| (StrBytes::from_string(h.key.clone()), h.value.clone()))
                .collect(),
        })
        .collect()
}

fn encode_kafka(codec: Compression, records: &[KafkaRecord]) -> Bytes {
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: kafka_codec(codec),
    };
    RecordBatchEncoder::encode(&mut buf, records, &options).expect("kafka-protocol encodes");
    buf.freeze()
}

fn decode_kafka(batch: &Bytes) -> RecordSet {
    let mut buf = batch.clone();
    let set = RecordBatchDecoder::decode(&mut buf).expect("kafka-protocol decodes");
    assert!(
        buf.is_empty(),
        "kafka-protocol left {} bytes of the batch unread",
        buf.len()
    );
    set
}

fn kafka_headers(record: &KafkaRecord) -> Vec<(String, Option<Bytes>)> {
    record
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
        .collect()
}

fn weir_headers(headers: &[Header]) -> Vec<(String, Option<Bytes>)> {
    headers
        .iter()
        .map(|h| (h.key.clone(), h.value.clone()))
        .collect()
}

/// Checks what kafka-protocol decoded from a batch we built.
fn assert_kafka_decoded(set: &RecordSet, codec: Compression, want: &[Record], fields: BatchFields) {
    assert_eq!(set.version, 2);
    assert_eq!(set.compression, kafka_codec(codec));
    assert_eq!(set.records.len(), want.len(), "{codec}");
    for (i, (got, want)) in set.records.iter().zip(want).enumerate() {
        assert_eq!(
            got.offset,
            fields.base_offset + i as i64,
            "{codec} record {i}"
        );
        assert_eq!(got.timestamp, want.timestamp, "{codec} record {i}");
        assert_eq!(got.key, want.key, "{codec} record {i}");
        assert_eq!(got.value, want.value, "{codec} record {i}");
        assert_eq!(
            kafka_headers(got),
            weir_headers(&want.headers),
            "{codec} record {i}"
        );
        assert_eq!(got.timestamp_type, KafkaTimestampType::Creation);
        assert_eq!(got.partition_leader_epoch, fields.partition_leader_epoch);
        assert_eq!(
            (got.producer_id, got.producer_epoch),
            (fields.producer_id, fields.producer_epoch)
        );
        assert_eq!(got.sequence, fields.base_sequence.wrapping_add(i as i32));
        assert!(!got.transactional && !got.control);
    }
}

/// Checks what we decoded from a batch kafka-protocol encoded.
fn assert_weir_decoded(got: &[DecodedRecord], want: &[KafkaRecord], codec: Compression) {
    assert_eq!(got.len(), want.len(), "{codec}");
    for (i, (got, want)) in got.iter().zip(want).enumerate() {
        assert_eq!(got.offset, want.offset, "{codec} record {i}");
        assert_eq!(got.timestamp, want.timestamp, "{codec} record {i}");
        assert_eq!(got.key, want.key, "{codec} record {i}");
        assert_eq!(got.value, want.value, "{codec} record {i}");
        assert_eq!(
            weir_headers(&got.headers),
            kafka_headers(want),
            "{codec} record {i}"
        );
    }
}

#[test]
fn batches_weir_builds_decode_in_kafka_protocol_to_the_same_records_for_every_codec() {
    let records = sample_records();
    let leader_assigned = BatchFields {
        base_offset: 5_000,
        partition_leader_epoch: 9,
        ..IDEMPOTENT
    };
    for codec in Compression::ALL {
        for fields in [UNSET, IDEMPOTENT, leader_assigned] {
            let batch = build_weir(codec, &records, fields);
            assert_kafka_decoded(&decode_kafka(&batch), codec, &records, fields);
        }
    }
}

#[test]
fn batches_kafka_protocol_encodes_pass_weir_validation_and_decode_to_the_same_records() {
    let records = sample_records();
    let fields = BatchFields {
        base_offset: 1_000,
        partition_leader_epoch: 5,
        producer_id: 77,
        producer_epoch: 2,
        base_sequence: 50,
    };
    let kafka_records = to_kafka_records(&records, fields);
    for codec in Compression::ALL {
        let batch = encode_kafka(codec, &kafka_records);
        let header = validate(&batch).expect("kafka-protocol's batch passes validate");
        assert_eq!(header.compression().expect("known codec"), codec);
        assert_eq!(header.base_offset, fields.base_offset);
        assert_eq!(header.partition_leader_epoch, fields.partition_leader_epoch);
        assert_eq!(header.producer_id, fields.producer_id);
        assert_eq!(header.producer_epoch, fields.producer_epoch);
        assert_eq!(header.base_sequence, fields.base_sequence);
        assert_eq!(header.record_count as usize, records.len());
        assert_eq!(header.last_offset_delta as usize, records.len() - 1);
        assert_eq!(
            header.next_offset(),
            fields.base_offset + records.len() as i64
        );
        assert_eq!(header.timestamp_type(), TimestampType::CreateTime);
        let max = records.iter().map(|r| r.timestamp).max();
        assert_eq!(Some(header.max_timestamp), max);

        let decoded = decode_records(&batch).expect("weir decodes kafka-protocol's batch");
        assert_weir_decoded(&decoded, &kafka_records, codec);
    }
}

#[test]
fn uncompressed_batches_are_byte_identical_to_kafka_protocol() {
    let records = sample_records();
    for fields in [UNSET, IDEMPOTENT] {
        let ours = build_weir(Compression::None, &records, fields);
        let theirs = encode_kafka(Compression::None, &to_kafka_records(&records, fields));
        assert_eq!(ours, theirs, "fields {fields:?}");
    }
}

#[test]
fn snappy_batches_are_byte_identical_to_kafka_protocol() {
    // Both write snappy-java's framing (same header, 32 KiB blocks, big-endian block
    // lengths) around the same raw snappy encoder; the sample's large value spans blocks.
    let records = sample_records();
    let ours = build_weir(Compression::Snappy, &records, IDEMPOTENT);
    let theirs = encode_kafka(Compression::Snappy, &to_kafka_records(&records, IDEMPOTENT));
    assert_eq!(ours, theirs);
}

#[test]
fn log_append_time_batches_are_flagged_for_kafka_protocol() {
    let mut builder = RecordBatchBuilder::new(Compression::Gzip).log_append_time(1_800_000_000_000);
    for record in &sample_records() {
        builder.push(record);
    }
    let batch = builder.build().expect("build").freeze();
    let set = decode_kafka(&batch);
    assert!(
        set.records
            .iter()
            .all(|r| r.timestamp_type == KafkaTimestampType::LogAppend)
    );
    let ours = decode_records(&batch).expect("decode");
    assert!(ours.iter().all(|r| r.timestamp == 1_800_000_000_000));
}

#[test]
fn concatenated_kafka_protocol_batches_pass_validate_all() {
    // kafka-protocol starts a new batch where the producer changes: two batches, one buffer.
    let records = sample_records();
    let (first, second) = records.split_at(2);
    let mut kafka_records = to_kafka_records(
        first,
        BatchFields {
            base_offset: 10,
            ..IDEMPOTENT
        },
    );
    kafka_records.extend(to_kafka_records(
        second,
        BatchFields {
            base_offset: 12,
            producer_id: 9,
            ..IDEMPOTENT
        },
    ));
    for codec in Compression::ALL {
        let buf = encode_kafka(codec, &kafka_records);
        let headers = validate_all(&buf).expect("both batches valid");
        assert_eq!(headers.len(), 2, "{codec}");
        assert_eq!((headers[0].base_offset, headers[1].base_offset), (10, 12));
        assert_eq!(headers[0].next_offset(), headers[1].base_offset);

        let split = headers[0].total_bytes();
        let mut decoded = decode_records(&buf.slice(..split)).expect("first batch");
        decoded.extend(decode_records(&buf.slice(split..)).expect("second batch"));
        assert_weir_decoded(&decoded, &kafka_records, codec);
    }
}

fn nullable_bytes() -> impl Strategy<Value = Option<Bytes>> {
    prop_oneof![
        Just(None),
        Just(Some(Bytes::new())),
        proptest::collection::vec(any::<u8>(), 1..64).prop_map(|v| Some(Bytes::from(v))),
    ]
}

/// Random records with unique header keys (kafka-protocol keeps headers in a map) and
/// timestamps that never precede the first record's (see `sample_records`).
fn random_records() -> impl Strategy<Value = Vec<Record>> {
    let record = (
        nullable_bytes(),
        nullable_bytes(),
        proptest::collection::btree_map("\\PC{0,6}", nullable_bytes(), 0..4),
        0i64..1_000_000,
    )
        .prop_map(|(key, value, headers, timestamp_offset)| Record {
            key,
            value,
            headers: headers
                .into_iter()
                .map(|(key, value)| Header { key, value })
                .collect(),
            timestamp: 1_700_000_000_000 + timestamp_offset,
        });
    (
        proptest::collection::vec(record, 1..10),
        1_600_000_000_000i64..1_700_000_000_000,
    )
        .prop_map(|(mut records, first_timestamp)| {
            records[0].timestamp = first_timestamp;
            records
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_records_agree_with_kafka_protocol_in_both_directions(
        records in random_records(),
        codec in prop::sample::select(Compression::ALL.to_vec()),
    ) {
        let batch = build_weir(codec, &records, IDEMPOTENT);
        assert_kafka_decoded(&decode_kafka(&batch), codec, &records, IDEMPOTENT);

        let kafka_records = to_kafka_records(&records, IDEMPOTENT);
        let theirs = encode_kafka(codec, &kafka_records);
        let decoded = decode_records(&theirs).expect("weir decodes kafka-protocol's batch");
        assert_weir_decoded(&decoded, &kafka_records, codec);
        if codec == Compression::None {
            prop_assert_eq!(batch, theirs);
        }
    }
}
