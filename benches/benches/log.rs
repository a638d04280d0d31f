//! criterion benches of the log's hot paths: `Log::append`, `Log::read` at an offset, and
//! an offset-index lookup (`Index::floor`).
//!
//! Parameters: record values of 100 B and 1 KiB (no key, no headers; see
//! `weir_benches::workload`), in uncompressed batches of 16 KiB (148 records of 100 B, 15
//! of 1 KiB) and 64 KiB (591 and 63) for append, and of 16 KiB for the read bench's 64 MiB
//! log. Throughput is in bytes of batches appended or returned, so figures compare directly
//! with disk and memory bandwidth.
//!
//! Run: `cargo bench -p weir-benches --bench log` (add a filter such as `append` to run
//! part of it).

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use weir_benches::workload::{BatchPool, BatchShape, DEFAULT_SEED, Rng};
use weir_log::index::{Entry, Index, OffsetEntry};
use weir_log::{Compression, FlushPolicy, Log, LogConfig};

/// Record value sizes every bench runs with.
const VALUE_BYTES: [usize; 2] = [100, 1024];
/// Batch sizes (before compression) the append bench runs with: Kafka's default
/// `batch.size` and the storage bench's default.
const APPEND_BATCH_BYTES: [usize; 2] = [16 * 1024, 64 * 1024];
/// Distinct batches the append bench cycles through (bytes in all), so appends do not all
/// read one cache-hot buffer.
const APPEND_POOL_BYTES: usize = 4 << 20;
/// The append bench empties its log, outside the timed region, whenever it holds this
/// much: page cache and disk use stay bounded however long criterion runs it.
const APPEND_LOG_LIMIT_BYTES: u64 = 256 << 20;
/// Size of the log the read bench reads from (page cache warm).
const READ_LOG_BYTES: usize = 64 << 20;
/// Batch size of the read bench's log.
const READ_BATCH_BYTES: usize = 16 * 1024;
/// `max_bytes` of each read: about one batch, and a consumer's typical fetch size.
const READ_MAX_BYTES: [usize; 2] = [16 * 1024, 1 << 20];
/// Random offsets each read bench cycles through.
const READ_OFFSETS: usize = 4096;
/// Entries in the looked-up index: a 64 MiB and a full 1 GiB segment at the default
/// spacing of one entry per 4 KiB.
const INDEX_ENTRIES: [usize; 2] = [16 * 1024, 256 * 1024];
/// Offsets between consecutive index entries (a 4 KiB stretch of 100-byte records).
const INDEX_OFFSET_STRIDE: u32 = 37;
/// File bytes between consecutive index entries.
const INDEX_POSITION_STRIDE: u32 = 4096;
/// Random keys each lookup bench cycles through.
const INDEX_LOOKUPS: usize = 4096;

/// No leader epoch: the log is not replicated.
const NO_LEADER_EPOCH: i32 = -1;

fn criterion() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
}

fn log_config() -> LogConfig {
    LogConfig {
        flush: FlushPolicy::None,
        ..LogConfig::default()
    }
}

fn shape(value_bytes: usize, batch_bytes: usize) -> BatchShape {
    BatchShape {
        value_bytes,
        batch_bytes,
        compression: Compression::None,
    }
}

/// `Log::append` of one client batch (validation, offset patching, one `pwrite`,
/// indexing) into a log that never syncs.
fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("log_append");
    for batch_bytes in APPEND_BATCH_BYTES {
        for value_bytes in VALUE_BYTES {
            let dir = tempfile::tempdir().expect("create a temporary directory");
            let log = Log::open(dir.path(), log_config()).expect("open the log");
            let mut pool = BatchPool::build(
                shape(value_bytes, batch_bytes),
                APPEND_POOL_BYTES,
                DEFAULT_SEED,
            )
            .expect("build batches");
            group.throughput(Throughput::Bytes(pool.mean_batch_bytes() as u64));
            let id = BenchmarkId::new(
                format!("batch_{}KiB", batch_bytes / 1024),
                format!("value_{value_bytes}B"),
            );
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    let mut elapsed = Duration::ZERO;
                    for _ in 0..iters {
                        if log.size_bytes() >= APPEND_LOG_LIMIT_BYTES {
                            log.truncate_to(0).expect("empty the log");
                        }
                        let batch = pool.next_batch();
                        let started = Instant::now();
                        let info = log
                            .append(&mut batch.bytes, NO_LEADER_EPOCH)
                            .expect("append");
                        elapsed += started.elapsed();
                        black_box(info);
                    }
                    elapsed
                });
            });
        }
    }
    group.finish();
}

/// Writes about `bytes` of batches of `shape` and returns the log end offset.
fn fill(log: &Log, shape: BatchShape, bytes: usize) -> i64 {
    let mut pool = BatchPool::build(shape, APPEND_POOL_BYTES, DEFAULT_SEED).expect("build batches");
    let mut written = 0;
    let mut end = 0;
    while written < bytes {
        let info = log
            .append(&mut pool.next_batch().bytes, NO_LEADER_EPOCH)
            .expect("append");
        written += info.bytes;
        end = info.last_offset + 1;
    }
    end
}

/// `Log::read(offset, max_bytes, None)` at random offsets of a 64 MiB log in the page
/// cache: index lookup, `pread`, CRC check of every batch returned or skipped.
fn read(c: &mut Criterion) {
    let mut group = c.benchmark_group("log_read");
    for value_bytes in VALUE_BYTES {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let log = Log::open(dir.path(), log_config()).expect("open the log");
        let end = fill(&log, shape(value_bytes, READ_BATCH_BYTES), READ_LOG_BYTES);
        let mut rng = Rng::new(DEFAULT_SEED);
        let offsets: Vec<i64> = (0..READ_OFFSETS)
            .map(|_| rng.below(end as u64) as i64)
            .collect();
        for max_bytes in READ_MAX_BYTES {
            // One pass over the offsets sizes the throughput (and warms the cache).
            let returned: usize = offsets
                .iter()
                .map(|&o| log.read(o, max_bytes, None).expect("read").records.len())
                .sum();
            group.throughput(Throughput::Bytes((returned / offsets.len()) as u64));
            let id = BenchmarkId::new(
                format!("max_{}KiB", max_bytes / 1024),
                format!("value_{value_bytes}B"),
            );
            let mut next = offsets.iter().cycle();
            group.bench_function(id, |b| {
                b.iter(|| {
                    let offset = *next.next().expect("cycle never ends");
                    log.read(black_box(offset), max_bytes, None).expect("read")
                });
            });
        }
    }
    group.finish();
}

fn populated_index(path: &Path, entries: usize) -> Index<OffsetEntry> {
    let capacity = (entries * OffsetEntry::BYTES) as u64;
    let mut index =
        Index::<OffsetEntry>::open(path, Some(capacity), Some(0)).expect("create the index");
    for i in 0..entries as u32 {
        let entry = OffsetEntry {
            relative_offset: i * INDEX_OFFSET_STRIDE,
            position: i * INDEX_POSITION_STRIDE,
        };
        assert!(index.push(entry), "index sized for {entries} entries");
    }
    index
}

/// `Index::floor(key)` on a memory-mapped offset index: the binary search every read does.
fn index_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("index_floor");
    group.throughput(Throughput::Elements(1));
    for entries in INDEX_ENTRIES {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let index = populated_index(&dir.path().join("00000000000000000000.index"), entries);
        let max_key = u64::from(INDEX_OFFSET_STRIDE) * entries as u64;
        let mut rng = Rng::new(DEFAULT_SEED);
        let keys: Vec<i64> = (0..INDEX_LOOKUPS)
            .map(|_| rng.below(max_key) as i64)
            .collect();
        let mut next = keys.iter().cycle();
        group.bench_function(
            BenchmarkId::from_parameter(format!("{}Ki_entries", entries / 1024)),
            |b| {
                b.iter(|| index.floor(black_box(*next.next().expect("cycle never ends"))));
            },
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = criterion();
    targets = append, read, index_lookup
}
criterion_main!(benches);
