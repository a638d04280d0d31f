//! The bytes every storage bench writes: deterministic, text-like record values and
//! RecordBatch v2 batches built with [`RecordBatchBuilder`] exactly as a producer would
//! send them (base offset 0, no leader epoch, CRC set).
//!
//! A record here is a value of `value_bytes` bytes with no key and no headers, and a
//! timestamp one millisecond after the previous record's. "Record size" in every report
//! means that value size; the encoded record is a few bytes larger (length, attributes,
//! deltas, null key), and the batch adds a 61-byte header.

use bytes::{Bytes, BytesMut};
use weir_log::error::BatchError;
use weir_log::{Compression, Record, RecordBatchBuilder};

/// Timestamp of the first record (2023-11-14T22:13:20Z), fixed so every run builds the
/// same bytes.
pub const FIRST_TIMESTAMP_MS: i64 = 1_700_000_000_000;
/// Seed of the payload generator unless a bench picks another.
pub const DEFAULT_SEED: u64 = 0x5745_4952_4245_4e43;

/// What values are made of: words and numbers, like the JSON and log lines most topics
/// carry. lz4 and zstd compress this a few times over, as they do real payloads; random
/// bytes (incompressible) or zeros (compressible without limit) would flatter or punish
/// the codecs.
const WORDS: [&str; 32] = [
    "offset",
    "partition",
    "leader",
    "epoch",
    "segment",
    "index",
    "batch",
    "record",
    "producer",
    "consumer",
    "group",
    "commit",
    "replica",
    "fetch",
    "append",
    "flush",
    "topic",
    "header",
    "timestamp",
    "sequence",
    "watermark",
    "broker",
    "cluster",
    "retention",
    "\"id\":",
    "\"ts\":",
    "\"user\":",
    "\"event\":",
    "{",
    "}",
    ",",
    "\n",
];

/// A small, fast, deterministic generator (SplitMix64): benches need repeatable bytes,
/// not cryptographic quality.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`), by multiply-shift: no modulo bias worth the name for
    /// bench-sized `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Rng::below needs a non-empty range");
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// A text-like value of exactly `len` bytes.
pub fn payload(rng: &mut Rng, len: usize) -> Bytes {
    let mut value = Vec::with_capacity(len + 32);
    while value.len() < len {
        let word = WORDS[rng.below(WORDS.len() as u64) as usize];
        value.extend_from_slice(word.as_bytes());
        // A number after one word in four: varied enough that the codecs do real work.
        if rng.below(4) == 0 {
            value.extend_from_slice(rng.below(1_000_000).to_string().as_bytes());
        }
        value.push(b' ');
    }
    value.truncate(len);
    Bytes::from(value)
}

/// `count` records with values of `value_bytes`, timestamps from `first_timestamp_ms` on.
pub fn records(
    rng: &mut Rng,
    count: usize,
    value_bytes: usize,
    first_timestamp_ms: i64,
) -> Vec<Record> {
    (0..count)
        .map(|i| Record {
            key: None,
            value: Some(payload(rng, value_bytes)),
            headers: Vec::new(),
            timestamp: first_timestamp_ms + i as i64,
        })
        .collect()
}

/// The shape of the batches a bench writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchShape {
    /// Bytes of each record's value.
    pub value_bytes: usize,
    /// Target size of a batch before compression: records are added while the batch stays
    /// within it (but a batch always holds at least one record).
    pub batch_bytes: usize,
    pub compression: Compression,
}

/// One built batch.
#[derive(Debug, Clone)]
pub struct BuiltBatch {
    /// The batch as a producer sends it.
    pub bytes: BytesMut,
    pub records: usize,
}

/// Builds one batch of `shape`, the first record stamped `first_timestamp_ms`.
pub fn build_batch(
    rng: &mut Rng,
    shape: BatchShape,
    first_timestamp_ms: i64,
) -> Result<BuiltBatch, BatchError> {
    let mut builder = RecordBatchBuilder::new(shape.compression);
    let mut last_record_bytes = 0;
    let mut timestamp = first_timestamp_ms;
    loop {
        let before = builder.estimated_size();
        if !builder.is_empty() && before + last_record_bytes > shape.batch_bytes {
            break;
        }
        let record = Record {
            key: None,
            value: Some(payload(rng, shape.value_bytes)),
            headers: Vec::new(),
            timestamp,
        };
        builder.try_push(&record)?;
        last_record_bytes = builder.estimated_size() - before;
        timestamp += 1;
    }
    let records = builder.len();
    Ok(BuiltBatch {
        bytes: builder.build()?,
        records,
    })
}

/// How many records of `value_bytes` a batch of `batch_bytes` (uncompressed) holds.
pub fn records_per_batch(value_bytes: usize, batch_bytes: usize) -> Result<usize, BatchError> {
    let shape = BatchShape {
        value_bytes,
        batch_bytes,
        compression: Compression::None,
    };
    Ok(build_batch(&mut Rng::new(DEFAULT_SEED), shape, FIRST_TIMESTAMP_MS)?.records)
}

/// A ring of distinct batches of one shape, about `pool_bytes` in all (at least one
/// batch). Writers cycle through it so that consecutive appends carry different bytes,
/// as consecutive produce requests do, and no bench runs from one cache-hot buffer.
#[derive(Debug, Clone)]
pub struct BatchPool {
    batches: Vec<BuiltBatch>,
    next: usize,
}

impl BatchPool {
    pub fn build(shape: BatchShape, pool_bytes: usize, seed: u64) -> Result<BatchPool, BatchError> {
        let mut rng = Rng::new(seed);
        let mut batches = Vec::new();
        let mut total = 0;
        let mut timestamp = FIRST_TIMESTAMP_MS;
        while batches.is_empty() || total < pool_bytes {
            let batch = build_batch(&mut rng, shape, timestamp)?;
            total += batch.bytes.len();
            timestamp += batch.records as i64;
            batches.push(batch);
        }
        Ok(BatchPool { batches, next: 0 })
    }

    /// The next batch of the ring, to be appended (the log patches its offset fields in
    /// place, which leaves it a valid batch for the next round).
    pub fn next_batch(&mut self) -> &mut BuiltBatch {
        let i = self.next;
        self.next = (self.next + 1) % self.batches.len();
        &mut self.batches[i]
    }

    pub fn batches(&self) -> &[BuiltBatch] {
        &self.batches
    }

    /// Mean batch size in bytes.
    pub fn mean_batch_bytes(&self) -> f64 {
        let total: usize = self.batches.iter().map(|b| b.bytes.len()).sum();
        total as f64 / self.batches.len() as f64
    }

    /// Mean records per batch.
    pub fn mean_records(&self) -> f64 {
        let total: usize = self.batches.iter().map(|b| b.records).sum();
        total as f64 / self.batches.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_deterministic_and_exact() {
        let a = payload(&mut Rng::new(7), 1000);
        let b = payload(&mut Rng::new(7), 1000);
        assert_eq!(a, b);
        assert_eq!(a.len(), 1000);
        assert_ne!(a, payload(&mut Rng::new(8), 1000));
    }

    #[test]
    fn batches_fill_their_target_and_validate() {
        for value_bytes in [100, 1024] {
            let shape = BatchShape {
                value_bytes,
                batch_bytes: 16 * 1024,
                compression: Compression::None,
            };
            let batch = build_batch(&mut Rng::new(1), shape, FIRST_TIMESTAMP_MS).unwrap();
            let header = weir_log::batch::validate(&batch.bytes).unwrap();
            assert_eq!(header.record_count as usize, batch.records);
            assert!(batch.bytes.len() <= shape.batch_bytes);
            // Within one record of the target.
            assert!(batch.bytes.len() + value_bytes + 16 > shape.batch_bytes);
        }
    }

    #[test]
    fn a_record_larger_than_the_batch_still_makes_a_batch() {
        let shape = BatchShape {
            value_bytes: 4096,
            batch_bytes: 1024,
            compression: Compression::Lz4,
        };
        let batch = build_batch(&mut Rng::new(1), shape, FIRST_TIMESTAMP_MS).unwrap();
        assert_eq!(batch.records, 1);
        weir_log::batch::validate(&batch.bytes).unwrap();
    }

    #[test]
    fn pools_cycle_through_distinct_batches() {
        let shape = BatchShape {
            value_bytes: 100,
            batch_bytes: 4096,
            compression: Compression::None,
        };
        let mut pool = BatchPool::build(shape, 64 * 1024, 3).unwrap();
        let n = pool.batches().len();
        assert!(n >= 16);
        let first = pool.next_batch().bytes.clone();
        assert_ne!(first, pool.next_batch().bytes);
        for _ in 2..n {
            pool.next_batch();
        }
        assert_eq!(first, pool.next_batch().bytes);
    }

    #[test]
    fn text_payloads_compress() {
        let shape = BatchShape {
            value_bytes: 1024,
            batch_bytes: 64 * 1024,
            compression: Compression::Zstd,
        };
        let batch = build_batch(&mut Rng::new(1), shape, FIRST_TIMESTAMP_MS).unwrap();
        assert!(
            batch.bytes.len() < shape.batch_bytes / 2,
            "{} bytes",
            batch.bytes.len()
        );
    }
}
