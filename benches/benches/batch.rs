//! criterion benches of RecordBatch v2 encoding and decoding: `RecordBatchBuilder` (push
//! N records, build), `batch::validate` (what every append and read checks) and
//! `decode_records` (what a consumer asking for records pays), uncompressed and with lz4
//! and zstd.
//!
//! Parameters: record values of 100 B and 1 KiB (text-like, no key, no headers; see
//! `weir_benches::workload`), as many as fit a 16 KiB uncompressed batch (Kafka's default
//! `batch.size`): 148 records of 100 B or 15 of 1 KiB. Throughput is in uncompressed batch
//! bytes for every codec, so codecs compare on the same record data.
//!
//! `batch_validate_untrusted` is what produce pays per batch: `validate_untrusted` of a
//! 1 MiB (uncompressed) batch in every codec, which decompresses a compressed batch
//! streaming and walks its records (for an uncompressed batch it is `validate`).
//!
//! Run: `cargo bench -p weir-benches --bench batch`.

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use weir_benches::workload::{self, DEFAULT_SEED, FIRST_TIMESTAMP_MS, Rng};
use weir_log::{Compression, LogConfig, Record, RecordBatchBuilder, batch, decode_records};

/// Record value sizes every bench runs with.
const VALUE_BYTES: [usize; 2] = [100, 1024];
/// Uncompressed size the batches are filled to.
const BATCH_BYTES: usize = 16 * 1024;
/// Codecs compared: none, and the two a throughput-minded producer picks.
const CODECS: [Compression; 3] = [Compression::None, Compression::Lz4, Compression::Zstd];

fn criterion() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
}

/// The records of one batch of `value_bytes` values, and the uncompressed batch size.
fn batch_records(value_bytes: usize) -> (Vec<Record>, u64) {
    let count = workload::records_per_batch(value_bytes, BATCH_BYTES).expect("size a batch");
    let records = workload::records(
        &mut Rng::new(DEFAULT_SEED),
        count,
        value_bytes,
        FIRST_TIMESTAMP_MS,
    );
    let uncompressed = encode(&records, Compression::None).len() as u64;
    (records, uncompressed)
}

fn encode(records: &[Record], compression: Compression) -> Bytes {
    let mut builder = RecordBatchBuilder::new(compression);
    for record in records {
        builder.push(record);
    }
    builder.build().expect("build the batch").freeze()
}

fn id(compression: Compression, value_bytes: usize) -> BenchmarkId {
    BenchmarkId::new(compression.name(), format!("value_{value_bytes}B"))
}

/// Producer side: push every record into a `RecordBatchBuilder` and build (compressing).
fn batch_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch_encode");
    for value_bytes in VALUE_BYTES {
        let (records, uncompressed) = batch_records(value_bytes);
        group.throughput(Throughput::Bytes(uncompressed));
        for compression in CODECS {
            group.bench_with_input(id(compression, value_bytes), &records, |b, records| {
                b.iter(|| encode(black_box(records), compression));
            });
        }
    }
    group.finish();
}

/// Broker side: `validate` checks length, magic and CRC, and walks the framing of an
/// uncompressed batch's records (compressed ones are checked up to their CRC).
fn batch_validate(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch_validate");
    for value_bytes in VALUE_BYTES {
        let (records, uncompressed) = batch_records(value_bytes);
        group.throughput(Throughput::Bytes(uncompressed));
        for compression in CODECS {
            let bytes = encode(&records, compression);
            group.bench_with_input(id(compression, value_bytes), &bytes, |b, bytes| {
                b.iter(|| batch::validate(black_box(bytes)).expect("valid batch"));
            });
        }
    }
    group.finish();
}

/// Uncompressed size of the batches `batch_validate_untrusted` checks.
const LARGE_BATCH_BYTES: usize = 1024 * 1024;

/// Broker side since produce decompresses compressed batches: `validate_untrusted` of a
/// 1 MiB batch per codec, with the limit of the default `max.message.bytes`.
fn batch_validate_untrusted(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch_validate_untrusted_1MiB");
    let limit = batch::decompressed_limit(LogConfig::default().max_message_bytes);
    for value_bytes in VALUE_BYTES {
        let count =
            workload::records_per_batch(value_bytes, LARGE_BATCH_BYTES).expect("size a batch");
        let records = workload::records(
            &mut Rng::new(DEFAULT_SEED),
            count,
            value_bytes,
            FIRST_TIMESTAMP_MS,
        );
        let uncompressed = encode(&records, Compression::None).len() as u64;
        group.throughput(Throughput::Bytes(uncompressed));
        for compression in Compression::ALL {
            let bytes = encode(&records, compression);
            group.bench_with_input(id(compression, value_bytes), &bytes, |b, bytes| {
                b.iter(|| batch::validate_untrusted(black_box(bytes), limit).expect("valid"));
            });
        }
    }
    group.finish();
}

/// Consumer side: `decode_records` validates, decompresses and decodes every record.
fn batch_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch_decode");
    for value_bytes in VALUE_BYTES {
        let (records, uncompressed) = batch_records(value_bytes);
        group.throughput(Throughput::Bytes(uncompressed));
        for compression in CODECS {
            let bytes = encode(&records, compression);
            let decoded = decode_records(&bytes).expect("decode");
            assert_eq!(
                decoded.len(),
                records.len(),
                "{compression} batch round-trips"
            );
            group.bench_with_input(id(compression, value_bytes), &bytes, |b, bytes| {
                b.iter(|| decode_records(black_box(bytes)).expect("decode"));
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = criterion();
    targets = batch_encode, batch_validate, batch_validate_untrusted, batch_decode
}
criterion_main!(benches);
