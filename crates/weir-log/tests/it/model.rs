//! Property test: random sequences of operations (append, read, truncate, roll,
//! retention, delete-records, timestamp lookup, flush, close/crash and reopen) run against
//! a real `Log` in a temporary directory and against a plain in-memory model of it; after
//! every step the two must agree.
//!
//! The model is a `Vec` of batches (base offset plus `(value, timestamp)` records) and the
//! log start offset. Where the log's answer depends on where segments happen to roll
//! (retention deletes whole segments), the model reads the segment bases and sizes from
//! the directory listing, which is the documented on-disk layout.

use crate::common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{Seen, try_read_all};
use proptest::prelude::*;
use weir_log::storage::FaultyStorage;
use weir_log::{
    Compression, FlushPolicy, Log, LogConfig, MaintenanceError, ReadError, Record,
    RecordBatchBuilder,
};

/// Retention by age keeps this much history before `now_ms`.
const RETENTION_AGE_MS: i64 = 1000;

#[derive(Debug, Clone)]
struct BatchSpec {
    /// Per record: value length and timestamp delta from the batch's clock tick.
    records: Vec<(usize, i64)>,
    compression: Compression,
}

#[derive(Debug, Clone, Copy)]
enum Restart {
    /// `Log::close`, then open.
    Close,
    /// Drop the log (best-effort close on drop), then open.
    Drop,
    /// The process "dies": the storage stops taking writes without losing anything the
    /// OS already holds, the log is dropped without a clean close, and recovery runs.
    Crash,
}

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<BatchSpec>),
    /// Read from an offset picked around the valid range (`pick` selects it), with a
    /// small first read of `max_bytes`.
    Read {
        pick: u64,
        max_bytes: usize,
    },
    Truncate(u64),
    Roll,
    Retention(u64),
    DeleteRecords(u64),
    OffsetForTimestamp(u64),
    Flush,
    Reopen(Restart),
}

#[derive(Debug, Clone)]
struct ModelBatch {
    base: i64,
    records: Vec<(Vec<u8>, i64)>,
}

impl ModelBatch {
    fn last(&self) -> i64 {
        self.base + self.records.len() as i64 - 1
    }
}

/// What the log should hold. `batches` are the batches still in segment files (some may
/// lie below `start`, in a segment that also holds readable offsets).
#[derive(Debug, Default)]
struct Model {
    batches: Vec<ModelBatch>,
    start: i64,
    next: i64,
    /// Clock for timestamps: ticks once per batch; records jitter around it (timestamps
    /// are not monotonic, as with real producers).
    clock: i64,
    /// Makes every value unique.
    value_id: u64,
}

impl Model {
    /// Every readable record at or after `from`, in order.
    fn records_from(&self, from: i64) -> Vec<(i64, Vec<u8>, i64)> {
        let from = from.max(self.start);
        self.batches
            .iter()
            .flat_map(|b| {
                b.records
                    .iter()
                    .enumerate()
                    .map(move |(i, (v, ts))| (b.base + i as i64, v.clone(), *ts))
            })
            .filter(|(o, _, _)| *o >= from)
            .collect()
    }

    fn timestamps(&self) -> (i64, i64) {
        let ts = self
            .batches
            .iter()
            .flat_map(|b| b.records.iter().map(|r| r.1));
        let (lo, hi) = ts.fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));
        if lo > hi { (0, self.clock) } else { (lo, hi) }
    }

    /// An offset in `start - 2 ..= next + 2`, so out-of-range cases come up too.
    fn pick_offset(&self, pick: u64) -> i64 {
        let span = (self.next - self.start + 5) as u64;
        self.start - 2 + (pick % span) as i64
    }
}

fn config_strategy() -> impl Strategy<Value = LogConfig> {
    (
        prop::sample::select(vec![1024u64, 2048, 4096]),
        prop::sample::select(vec![64u32, 128, 256]),
        prop::option::of(2048u64..16 * 1024),
        prop::bool::ANY,
    )
        .prop_map(
            |(segment_bytes, index_interval_bytes, retention_bytes, checkpoint_often)| LogConfig {
                segment_bytes,
                segment_age: None,
                index_interval_bytes,
                index_max_bytes: 4096,
                flush: FlushPolicy::None,
                retention_age: Some(Duration::from_millis(RETENTION_AGE_MS as u64)),
                retention_bytes,
                recovery_checkpoint_interval: if checkpoint_often {
                    Duration::ZERO
                } else {
                    Duration::from_secs(3600)
                },
                ..LogConfig::default()
            },
        )
}

fn batch_strategy() -> impl Strategy<Value = BatchSpec> {
    (
        prop::collection::vec((0usize..200, -20i64..40), 1..=10),
        prop_oneof![3 => Just(Compression::None), 1 => prop::sample::select(Compression::ALL.to_vec())],
    )
        .prop_map(|(records, compression)| BatchSpec { records, compression })
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => prop::collection::vec(batch_strategy(), 1..5).prop_map(Op::Append),
        4 => (any::<u64>(), 1usize..5000).prop_map(|(pick, max_bytes)| Op::Read { pick, max_bytes }),
        2 => any::<u64>().prop_map(Op::Truncate),
        1 => Just(Op::Roll),
        1 => any::<u64>().prop_map(Op::Retention),
        2 => any::<u64>().prop_map(Op::DeleteRecords),
        2 => any::<u64>().prop_map(Op::OffsetForTimestamp),
        1 => Just(Op::Flush),
        2 => prop_oneof![Just(Restart::Close), Just(Restart::Drop), Just(Restart::Crash)].prop_map(Op::Reopen),
    ]
}

/// The log and the storage it was opened through (kept to "crash" it).
struct Opened {
    log: Log,
    storage: FaultyStorage,
}

fn open(dir: &Path, config: &LogConfig) -> Opened {
    let storage = FaultyStorage::default();
    let log = Log::open_with_storage(dir, config.clone(), Arc::new(storage.clone())).expect("open");
    Opened { log, storage }
}

fn build_batch(model: &mut Model, spec: &BatchSpec) -> (bytes::BytesMut, Vec<(Vec<u8>, i64)>) {
    model.clock += 10;
    let mut builder = RecordBatchBuilder::new(spec.compression);
    let mut records = Vec::new();
    for &(len, delta) in &spec.records {
        model.value_id += 1;
        let mut value = format!("v{}:", model.value_id).into_bytes();
        let fill = b'a' + (model.value_id % 26) as u8;
        value.resize(value.len().max(len), fill);
        let ts = (model.clock + delta).max(0);
        builder.push(&Record {
            key: Some(Bytes::from(format!("k{}", model.value_id % 7))),
            value: Some(Bytes::from(value.clone())),
            headers: Vec::new(),
            timestamp: ts,
        });
        records.push((value, ts));
    }
    (builder.build().expect("valid batch"), records)
}

/// `(base offset, file size)` of every segment, from the directory listing.
fn segments_on_disk(dir: &Path) -> Vec<(i64, u64)> {
    let mut segs: Vec<(i64, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let base = e.file_name().to_str()?.strip_suffix(".log")?.parse().ok()?;
            Some((base, e.metadata().unwrap().len()))
        })
        .collect();
    segs.sort();
    segs
}

fn seen_as_tuples(seen: Vec<Seen>) -> Vec<(i64, Vec<u8>, i64)> {
    seen.into_iter()
        .map(|s| (s.offset, s.value, s.timestamp))
        .collect()
}

fn check_offsets(log: &Log, model: &Model, step: usize, op: &Op) {
    let offsets = log.offsets();
    assert_eq!(
        (offsets.log_start_offset, offsets.log_end_offset),
        (model.start, model.next),
        "step {step} ({op:?}): (log start, log end) differ from the model"
    );
    assert!(
        offsets.log_start_offset <= offsets.log_end_offset,
        "step {step} ({op:?}): log start {} is past log end {}",
        offsets.log_start_offset,
        offsets.log_end_offset
    );
}

fn check_out_of_range_below_start(log: &Log, model: &Model, step: usize) {
    if model.start > 0 {
        match log.read(model.start - 1, 1024, None) {
            Err(ReadError::OffsetOutOfRange {
                offset,
                log_start_offset,
                ..
            }) => {
                assert_eq!(
                    (offset, log_start_offset),
                    (model.start - 1, model.start),
                    "step {step}"
                );
            }
            other => panic!(
                "step {step}: read below the log start {} gave {other:?}",
                model.start
            ),
        }
    }
}

fn run(config: LogConfig, ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let mut opened = Some(open(dir.path(), &config));
    let mut model = Model::default();
    for (step, op) in ops.iter().enumerate() {
        let log = &opened.as_ref().expect("open").log;
        match op {
            Op::Append(specs) => {
                let mut bytes = Vec::new();
                let mut new_batches = Vec::new();
                let mut base = model.next;
                for spec in specs {
                    let (b, records) = build_batch(&mut model, spec);
                    bytes.extend_from_slice(&b);
                    let n = records.len() as i64;
                    new_batches.push(ModelBatch { base, records });
                    base += n;
                }
                let info = log
                    .append(&mut bytes, -1)
                    .unwrap_or_else(|e| panic!("step {step}: append failed: {e}"));
                assert_eq!(
                    (info.base_offset, info.last_offset),
                    (model.next, base - 1),
                    "step {step}: assigned offsets"
                );
                assert_eq!(info.batches, specs.len());
                model.batches.extend(new_batches);
                model.next = base;
            }
            Op::Read { pick, max_bytes } => {
                let offset = model.pick_offset(*pick);
                if offset < model.start || offset > model.next {
                    match log.read(offset, *max_bytes, None) {
                        Err(ReadError::OffsetOutOfRange {
                            offset: o,
                            log_start_offset,
                            log_end_offset,
                        }) => {
                            assert_eq!(
                                (o, log_start_offset, log_end_offset),
                                (offset, model.start, model.next),
                                "step {step}"
                            );
                        }
                        other => panic!(
                            "step {step}: read at {offset} outside {}..={} gave {other:?}",
                            model.start, model.next
                        ),
                    }
                } else {
                    // One small read returns (at least) the batch holding `offset`.
                    let data = log
                        .read(offset, *max_bytes, None)
                        .unwrap_or_else(|e| panic!("step {step}: read {offset}: {e}"));
                    let first = data
                        .batches()
                        .next()
                        .map(|b| weir_log::BatchHeader::parse(&b));
                    match first {
                        None => assert_eq!(
                            offset, model.next,
                            "step {step}: empty read below the log end at {offset}"
                        ),
                        Some(h) => assert!(
                            h.base_offset <= offset && offset <= h.last_offset(),
                            "step {step}: read at {offset} starts with batch {}..={}",
                            h.base_offset,
                            h.last_offset()
                        ),
                    }
                    let got =
                        try_read_all(log, offset).unwrap_or_else(|e| panic!("step {step}: {e}"));
                    assert_eq!(
                        seen_as_tuples(got),
                        model.records_from(offset),
                        "step {step}: records from offset {offset}"
                    );
                }
            }
            Op::Truncate(pick) => {
                let offset = model.pick_offset(*pick).max(0);
                log.truncate_to(offset)
                    .unwrap_or_else(|e| panic!("step {step}: truncate_to({offset}): {e}"));
                if offset >= model.next {
                    // Nothing to cut.
                } else if offset <= model.start {
                    model.batches.clear();
                    model.start = offset;
                    model.next = offset;
                } else {
                    // Batches are never split: the batch holding `offset` goes whole.
                    let i = model
                        .batches
                        .iter()
                        .position(|b| b.last() >= offset)
                        .expect("offset below log end is in a batch");
                    let new_end = model.batches[i].base;
                    model.batches.truncate(i);
                    model.next = new_end;
                    if new_end < model.start {
                        // The batch holding the log start went: nothing readable is left,
                        // and the log stays empty at its start.
                        model.batches.clear();
                        model.next = model.start;
                    }
                }
            }
            Op::Roll => log
                .roll()
                .unwrap_or_else(|e| panic!("step {step}: roll: {e}")),
            Op::Flush => log
                .flush()
                .unwrap_or_else(|e| panic!("step {step}: flush: {e}")),
            Op::Retention(pick) => {
                let (lo, hi) = model.timestamps();
                let cutoff = lo - 5 + (pick % ((hi - lo + 11) as u64)) as i64;
                // Which closed segments go, oldest first, computed from the listing.
                let segs = segments_on_disk(dir.path());
                let mut total: u64 = segs.iter().map(|s| s.1).sum();
                let (mut deleted, mut delete_up_to) = (0, None);
                for pair in segs.windows(2) {
                    let ((base, size), (seg_end, _)) = (pair[0], pair[1]);
                    let max_ts = model
                        .batches
                        .iter()
                        .filter(|b| b.base >= base && b.base < seg_end)
                        .flat_map(|b| b.records.iter().map(|r| r.1))
                        .max();
                    let by_size = config
                        .retention_bytes
                        .is_some_and(|limit| total.saturating_sub(size) >= limit);
                    let by_age = max_ts.is_none_or(|t| t < cutoff);
                    if !(by_size || by_age) {
                        break;
                    }
                    total -= size;
                    deleted += 1;
                    delete_up_to = Some(seg_end);
                }
                let outcome = log
                    .apply_retention(cutoff + RETENTION_AGE_MS)
                    .unwrap_or_else(|e| panic!("step {step}: retention: {e}"));
                if let Some(end) = delete_up_to {
                    model.start = model.start.max(end);
                    model.batches.retain(|b| b.base >= end);
                }
                assert_eq!(
                    outcome.segments_deleted, deleted,
                    "step {step}: segments deleted by retention (cutoff {cutoff}, segments {segs:?})"
                );
                assert_eq!(
                    outcome.log_start_offset, model.start,
                    "step {step}: log start after retention"
                );
                if let Some(end) = delete_up_to {
                    assert_eq!(
                        segments_on_disk(dir.path()).first().map(|s| s.0),
                        Some(end),
                        "step {step}: first segment after retention"
                    );
                }
                check_out_of_range_below_start(log, &model, step);
            }
            Op::DeleteRecords(pick) => {
                let offset = model.pick_offset(*pick);
                let result = log.delete_records_before(offset);
                if offset > model.next || offset < 0 {
                    assert!(
                        matches!(result, Err(MaintenanceError::OffsetOutOfRange { .. })),
                        "step {step}: delete_records_before({offset}) past the log end {} gave {result:?}",
                        model.next
                    );
                } else {
                    let start = result.unwrap_or_else(|e| {
                        panic!("step {step}: delete_records_before({offset}): {e}")
                    });
                    model.start = model.start.max(offset);
                    assert_eq!(start, model.start, "step {step}: returned log start");
                }
                check_out_of_range_below_start(log, &model, step);
            }
            Op::OffsetForTimestamp(pick) => {
                let (lo, hi) = model.timestamps();
                let ts = lo - 5 + (pick % ((hi - lo + 11) as u64)) as i64;
                let expected = model
                    .records_from(model.start)
                    .into_iter()
                    .find(|r| r.2 >= ts)
                    .map(|r| r.0);
                let got = log
                    .offset_for_timestamp(ts)
                    .unwrap_or_else(|e| panic!("step {step}: offset_for_timestamp({ts}): {e}"));
                assert_eq!(got, expected, "step {step}: offset_for_timestamp({ts})");
            }
            Op::Reopen(how) => {
                let Opened { log, storage } = opened.take().expect("open");
                match how {
                    Restart::Close => log
                        .close()
                        .unwrap_or_else(|e| panic!("step {step}: close: {e}")),
                    Restart::Drop => drop(log),
                    Restart::Crash => {
                        storage.crash(|_, unsynced| unsynced).unwrap();
                        drop(log);
                    }
                }
                opened = Some(open(dir.path(), &config));
                let log = &opened.as_ref().expect("open").log;
                let got = try_read_all(log, model.start)
                    .unwrap_or_else(|e| panic!("step {step}: after reopen: {e}"));
                assert_eq!(
                    seen_as_tuples(got),
                    model.records_from(model.start),
                    "step {step}: records after {how:?} and reopen"
                );
            }
        }
        check_offsets(&opened.as_ref().expect("open").log, &model, step, op);
    }
    // Whatever the sequence, everything readable matches at the end.
    let log = &opened.as_ref().expect("open").log;
    let got = try_read_all(log, model.start).unwrap_or_else(|e| panic!("at the end: {e}"));
    assert_eq!(
        seen_as_tuples(got),
        model.records_from(model.start),
        "records at the end"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn log_agrees_with_a_vec_model_over_random_operations_and_restarts(
        config in config_strategy(),
        ops in prop::collection::vec(op_strategy(), 1..40),
    ) {
        run(config, ops);
    }
}

/// Found by the model test: `delete_records_before` can put the log start inside a batch;
/// truncating into that same batch used to leave the log end below the log start, so
/// every read failed and the next append got offsets below the start.
#[test]
fn truncating_into_the_batch_that_holds_the_log_start_leaves_an_empty_log_at_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 4096,
        flush: FlushPolicy::None,
        retention_age: None,
        ..LogConfig::default()
    };
    let log = Log::open(dir.path(), config.clone()).unwrap();
    let mut first = common::batch("a", 10, 1);
    let mut second = common::batch("b", 5, 2);
    log.append(&mut first, -1).unwrap();
    log.append(&mut second, -1).unwrap(); // offsets 10..=14
    assert_eq!(log.delete_records_before(12).unwrap(), 12);
    // Offset 13 is in batch 10..=14, which goes whole; it also held the log start.
    log.truncate_to(13).unwrap();
    let offsets = log.offsets();
    assert_eq!((offsets.log_start_offset, offsets.log_end_offset), (12, 12));
    assert!(log.read(12, 1024, None).unwrap().records.is_empty());
    let mut next = common::batch("c", 2, 3);
    assert_eq!(log.append(&mut next, -1).unwrap().base_offset, 12);
    assert_eq!(common::values(&common::read_all(&log, 12)), ["c-0", "c-1"]);
    log.close().unwrap();
    let log = Log::open(dir.path(), config).unwrap();
    assert_eq!(log.offsets().log_start_offset, 12);
    assert_eq!(common::values(&common::read_all(&log, 12)), ["c-0", "c-1"]);
}
