//! Log compaction (`Log::compact`): what survives (the newest record of each key, keyless
//! records, tombstones until `delete.retention`, the active segment, the log's last
//! batch), that offsets and order never change, reads across the gaps compaction leaves,
//! every codec, reopening, the size bound, the key map cap, crashes, torn writes and
//! failed fsyncs at every step of a compaction, concurrent reads and appends, and a
//! property test against a model (key -> newest value).

use crate::common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::{Rng, base_seed, copy_dir, segment_files};
use proptest::prelude::*;
use weir_log::storage::{FaultPlan, FaultyStorage};
use weir_log::{
    AppendInfo, BatchHeader, Compression, FlushPolicy, Log, LogConfig, Record, RecordBatchBuilder,
    decode_records,
};

const DAY: Duration = Duration::from_secs(24 * 3600);
/// A `now` at which nothing the tests write (timestamps near 0) is older than a day.
const EARLY: i64 = 1_000_000;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 128,
        segment_age: None,
        retention_age: None,
        flush: FlushPolicy::None,
        ..LogConfig::default()
    }
}

/// One record as the test sees it; a tombstone has `value: None`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Rec {
    offset: i64,
    key: Option<String>,
    value: Option<String>,
    timestamp: i64,
}

/// A record the test appended, with what the rules look at: its batch's end and time.
#[derive(Debug, Clone)]
struct Appended {
    rec: Rec,
    batch_next: i64,
    batch_ts: i64,
}

fn kv_batch(records: &[(Option<String>, Option<String>)], ts: i64, codec: Compression) -> BytesMut {
    let mut b = RecordBatchBuilder::new(codec);
    for (key, value) in records {
        b.push(&Record {
            key: key.clone().map(Bytes::from),
            value: value.clone().map(Bytes::from),
            headers: vec![weir_log::Header {
                key: "h".into(),
                value: Some(Bytes::from_static(b"x")),
            }],
            timestamp: ts,
        });
    }
    b.build().expect("valid batch")
}

/// Appends one batch and returns what it wrote, record by record.
fn append(
    log: &Log,
    records: &[(Option<String>, Option<String>)],
    ts: i64,
    codec: Compression,
) -> Vec<Appended> {
    let mut b = kv_batch(records, ts, codec);
    let info: AppendInfo = log.append(&mut b, -1).expect("append");
    records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Appended {
            rec: Rec {
                offset: info.base_offset + i as i64,
                key: key.clone(),
                value: value.clone(),
                timestamp: ts,
            },
            batch_next: info.last_offset + 1,
            batch_ts: ts,
        })
        .collect()
}

fn kv(key: &str, value: &str) -> (Option<String>, Option<String>) {
    (Some(key.to_string()), Some(value.to_string()))
}

fn tombstone(key: &str) -> (Option<String>, Option<String>) {
    (Some(key.to_string()), None)
}

/// Every record of the log, read in small steps, in order.
fn records(log: &Log) -> Vec<Rec> {
    let mut out: Vec<Rec> = Vec::new();
    let mut offset = log.offsets().log_start_offset;
    loop {
        let data = log.read(offset, 512, None).expect("read");
        if data.records.is_empty() {
            break;
        }
        assert!(
            data.next_offset > offset,
            "a read at {offset} makes progress"
        );
        for batch in data.batches() {
            for r in decode_records(&batch).expect("decode") {
                if r.offset >= offset {
                    out.push(to_rec(&r));
                }
            }
        }
        offset = data.next_offset;
    }
    for pair in out.windows(2) {
        assert!(
            pair[0].offset < pair[1].offset,
            "offsets increase: {pair:?}"
        );
    }
    out
}

fn to_rec(r: &weir_log::DecodedRecord) -> Rec {
    let s = |b: &Option<Bytes>| {
        b.as_ref()
            .map(|b| String::from_utf8(b.to_vec()).expect("utf-8"))
    };
    Rec {
        offset: r.offset,
        key: s(&r.key),
        value: s(&r.value),
        timestamp: r.timestamp,
    }
}

/// Every batch header, in order (empty batches included).
fn headers(log: &Log) -> Vec<BatchHeader> {
    let mut out = Vec::new();
    let mut offset = log.offsets().log_start_offset;
    loop {
        let data = log.read(offset, 512, None).expect("read");
        if data.records.is_empty() {
            return out;
        }
        out.extend(data.batches().map(|b| BatchHeader::parse(&b)));
        offset = data.next_offset;
    }
}

fn active_base(dir: &Path) -> i64 {
    // A new log has no segment file until its first append.
    segment_files(dir).last().map_or(0, |s| s.0)
}

/// What one compaction pass over a log holding `history` must leave: records in the
/// active segment (from `active_base`), keyless records and the log's last batch as they
/// are; of the rest, each key's newest record, unless it is a tombstone whose batch is
/// older than `horizon`.
fn expected_after_pass(
    history: &[Appended],
    active_base: i64,
    log_end: i64,
    horizon: i64,
) -> Vec<Rec> {
    let mut newest: HashMap<&str, i64> = HashMap::new();
    for a in history {
        if let Some(k) = &a.rec.key {
            newest.insert(k, a.rec.offset);
        }
    }
    history
        .iter()
        .filter(|a| {
            let r = &a.rec;
            if r.offset >= active_base || a.batch_next == log_end {
                return true;
            }
            let Some(k) = &r.key else { return true };
            if newest[k.as_str()] > r.offset {
                return false;
            }
            !(r.value.is_none() && a.batch_ts < horizon)
        })
        .map(|a| a.rec.clone())
        .collect()
}

/// The newest record of each key in `recs`.
fn newest_per_key(recs: &[Rec]) -> HashMap<String, Rec> {
    let mut newest = HashMap::new();
    for r in recs {
        if let Some(k) = &r.key {
            newest.insert(k.clone(), r.clone());
        }
    }
    newest
}

/// Appends `batches` batches of 1..=3 records over `keys` keys (some keyless, some
/// tombstones), timestamps `ts0, ts0 + 1, ...`, rolling as segments fill.
fn fill(
    log: &Log,
    rng: &mut Rng,
    batches: usize,
    keys: u64,
    ts0: i64,
    codec: Compression,
) -> Vec<Appended> {
    let mut history = Vec::new();
    for i in 0..batches {
        let n = rng.range(1, 4);
        let recs: Vec<_> = (0..n)
            .map(|j| {
                let value = format!("v{i}.{j}");
                if rng.one_in(10) {
                    (None, Some(value))
                } else if rng.one_in(8) {
                    tombstone(&format!("k{}", rng.range(0, keys)))
                } else {
                    kv(&format!("k{}", rng.range(0, keys)), &value)
                }
            })
            .collect();
        history.extend(append(log, &recs, ts0 + i as i64, codec));
    }
    history
}

#[test]
fn each_key_keeps_its_newest_record_at_its_offset_and_the_rest_goes() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config()).unwrap();
    let mut rng = Rng::new(base_seed(7));
    let history = fill(&log, &mut rng, 300, 20, 0, Compression::None);
    let before = log.offsets();
    let (size_before, segments_before) = (log.size_bytes(), log.segment_count());
    assert!(segments_before > 5, "the test needs closed segments");
    let active = active_base(dir.path());

    let outcome = log.compact(EARLY, DAY).unwrap();

    let expected = expected_after_pass(&history, active, before.log_end_offset, i64::MIN);
    assert_eq!(records(&log), expected);
    assert!(
        expected.len() < history.len() / 2,
        "the test removes most records"
    );
    let after = log.offsets();
    assert_eq!(
        (after.log_start_offset, after.log_end_offset),
        (before.log_start_offset, before.log_end_offset)
    );
    assert_eq!(
        outcome.records_removed as usize,
        history.len() - expected.len()
    );
    assert_eq!(outcome.tombstones_removed, 0, "no tombstone is a day old");
    assert!(outcome.bytes_after < outcome.bytes_before);
    assert_eq!(
        size_before - log.size_bytes(),
        outcome.bytes_before - outcome.bytes_after
    );
    assert!(
        log.segment_count() < segments_before,
        "small compacted segments merge"
    );
    // Keyless records are all kept.
    let keyless = |recs: &[Rec]| recs.iter().filter(|r| r.key.is_none()).count();
    let all: Vec<Rec> = history.iter().map(|a| a.rec.clone()).collect();
    assert!(keyless(&all) > 0);
    assert_eq!(keyless(&records(&log)), keyless(&all));

    // A second pass finds nothing more to remove.
    let again = log.compact(EARLY, DAY).unwrap();
    assert_eq!(
        (again.records_removed, again.segments_rewritten),
        (0, 0),
        "nothing is rewritten for nothing"
    );
    assert_eq!(records(&log), expected);
}

#[test]
fn a_read_from_a_removed_offset_returns_the_next_surviving_record() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config()).unwrap();
    let mut rng = Rng::new(base_seed(11));
    let history = fill(&log, &mut rng, 200, 8, 0, Compression::None);
    log.compact(EARLY, DAY).unwrap();
    let survivors = records(&log);
    let surviving: HashSet<i64> = survivors.iter().map(|r| r.offset).collect();
    let removed: Vec<i64> = history
        .iter()
        .map(|a| a.rec.offset)
        .filter(|o| !surviving.contains(o))
        .collect();
    assert!(removed.len() > 100);
    let end = log.offsets().log_end_offset;
    for offset in 0..end {
        let want = survivors.iter().find(|r| r.offset >= offset);
        // A read returns the batch whose offsets span the wanted one, if it is still
        // there, else the next surviving batch. A batch that lost its later records still
        // spans them (its last offset is kept), and an empty batch may end a compacted
        // segment: either costs one more read at most.
        let mut at = offset;
        let mut got = None;
        for _ in 0..3 {
            let data = log.read(at, 1, None).unwrap();
            if data.records.is_empty() {
                break;
            }
            let batch = data.batches().next().unwrap();
            let h = BatchHeader::parse(&batch);
            assert!(
                h.last_offset() >= at,
                "a read at {at} returned a batch before it"
            );
            let recs = decode_records(&batch).unwrap();
            if let Some(r) = recs.iter().find(|r| r.offset >= offset) {
                got = Some(to_rec(r));
                break;
            }
            at = data.next_offset;
        }
        assert_eq!(got.as_ref(), want, "read at removed offset {offset}");
    }
    // Timestamp lookups land on survivors too.
    for a in history.iter().step_by(7) {
        let found = log.offset_for_timestamp(a.batch_ts).unwrap();
        let want = survivors
            .iter()
            .find(|r| r.timestamp >= a.batch_ts)
            .map(|r| r.offset);
        assert_eq!(found, want, "offset_for_timestamp({})", a.batch_ts);
    }
}

#[test]
fn tombstones_stay_until_delete_retention_has_passed_then_go_with_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config()).unwrap();
    let retention = Duration::from_millis(1000);
    append(
        &log,
        &[kv("a", "a1"), kv("b", "b1"), kv("c", "c1")],
        100,
        Compression::None,
    );
    append(&log, &[tombstone("a")], 200, Compression::None);
    append(&log, &[tombstone("c")], 200, Compression::None);
    append(&log, &[kv("c", "c2")], 300, Compression::None);
    log.roll().unwrap();
    append(&log, &[tombstone("b")], 5000, Compression::None); // active segment
    let key = |recs: &[Rec], k: &str| -> Vec<Option<String>> {
        recs.iter()
            .filter(|r| r.key.as_deref() == Some(k))
            .map(|r| r.value.clone())
            .collect()
    };

    // 1000 ms after the tombstones: not yet past retention.
    let outcome = log.compact(1200, retention).unwrap();
    let recs = records(&log);
    assert_eq!(
        key(&recs, "a"),
        vec![None],
        "a1 superseded, the tombstone kept"
    );
    assert_eq!(
        key(&recs, "c"),
        vec![Some("c2".into())],
        "a value after a tombstone supersedes it"
    );
    assert_eq!(
        key(&recs, "b"),
        vec![None],
        "a tombstone in the active segment supersedes b1"
    );
    assert_eq!(outcome.tombstones_removed, 0);
    assert_eq!(outcome.records_removed, 4, "a1, b1, c1 and c's tombstone");
    assert!(log.compaction_due(1201), "a kept tombstone expires at 1201");

    // Past retention: a's tombstone goes, and nothing of a is left.
    let outcome = log.compact(1201, retention).unwrap();
    let recs = records(&log);
    assert_eq!(key(&recs, "a"), Vec::<Option<String>>::new());
    assert_eq!(key(&recs, "c"), vec![Some("c2".into())]);
    assert_eq!(
        key(&recs, "b"),
        vec![None],
        "the active segment is not compacted"
    );
    assert_eq!(outcome.tombstones_removed, 1);
    let outcome = log.compact(7000, retention).unwrap();
    assert_eq!(
        key(&records(&log), "b"),
        vec![None],
        "not while in the active segment"
    );
    assert_eq!(outcome.records_removed, 0);

    // Once b's tombstone is in a closed segment, it goes when it is old enough.
    append(&log, &[kv("d", "d1")], 5001, Compression::None);
    log.roll().unwrap();
    append(&log, &[kv("e", "e1")], 5002, Compression::None);
    log.compact(5500, retention).unwrap();
    assert_eq!(key(&records(&log), "b"), vec![None]);
    log.compact(7000, retention).unwrap();
    assert_eq!(key(&records(&log), "b"), Vec::<Option<String>>::new());
    // And it stays gone across a reopen (the older value does not come back).
    drop(log);
    let log = Log::open(dir.path(), config()).unwrap();
    assert_eq!(key(&records(&log), "b"), Vec::<Option<String>>::new());
    assert_eq!(key(&records(&log), "d"), vec![Some("d1".into())]);
}

#[test]
fn compressed_batches_are_compacted_and_keep_their_codec() {
    for codec in [
        Compression::Gzip,
        Compression::Zstd,
        Compression::Lz4,
        Compression::Snappy,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), config()).unwrap();
        let mut history = Vec::new();
        for i in 0..60i64 {
            // Ten records per batch over twelve keys: most batches lose some records.
            let recs: Vec<_> = (0..10)
                .map(|j| {
                    kv(
                        &format!("k{}", (i * 7 + j) % 12),
                        &format!("{codec}-{i}-{j}"),
                    )
                })
                .collect();
            history.extend(append(&log, &recs, i, codec));
        }
        // The last batches hold the newest values: keep them out of the active segment.
        log.roll().unwrap();
        history.extend(append(&log, &[kv("tail", "t")], 60, codec));
        let end = log.offsets().log_end_offset;
        let active = active_base(dir.path());
        let outcome = log.compact(EARLY, DAY).unwrap();
        assert!(outcome.records_removed > 0, "{codec}");
        assert_eq!(
            records(&log),
            expected_after_pass(&history, active, end, i64::MIN),
            "{codec}"
        );
        let hs = headers(&log);
        let rewritten = hs
            .iter()
            .filter(|h| h.record_count > 0 && h.record_count < h.last_offset_delta + 1)
            .count();
        assert!(
            rewritten > 0,
            "{codec}: some batch kept part of its records"
        );
        for h in hs.iter().filter(|h| h.record_count > 0) {
            assert_eq!(
                h.compression().unwrap(),
                codec,
                "batch at {}",
                h.base_offset
            );
        }
    }
}

#[test]
fn the_active_segment_is_untouched_but_its_newer_values_remove_older_copies() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config()).unwrap();
    append(
        &log,
        &[kv("a", "old"), kv("b", "old")],
        1,
        Compression::None,
    );
    log.roll().unwrap();
    // In the active segment: a twice (its older copy here stays), b once.
    append(&log, &[kv("a", "new1")], 2, Compression::None);
    append(
        &log,
        &[kv("a", "new2"), kv("b", "new")],
        3,
        Compression::None,
    );
    let (_, active_path) = segment_files(dir.path()).pop().unwrap();
    let active_bytes = std::fs::read(&active_path).unwrap();

    log.compact(EARLY, DAY).unwrap();

    assert_eq!(
        std::fs::read(&active_path).unwrap(),
        active_bytes,
        "active segment unchanged"
    );
    let values: Vec<_> = records(&log)
        .into_iter()
        .map(|r| r.value.unwrap())
        .collect();
    assert_eq!(values, ["new1", "new2", "new"]);
}

#[test]
fn the_last_batch_of_the_log_is_kept_whole_so_the_log_end_stays() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config()).unwrap();
    append(&log, &[kv("a", "1")], 1, Compression::None);
    append(&log, &[kv("a", "2"), kv("a", "3")], 2, Compression::None);
    log.roll().unwrap(); // the active segment is empty: the last batch is in a closed one
    let end = log.offsets().log_end_offset;
    log.compact(EARLY, DAY).unwrap();
    let values: Vec<_> = records(&log)
        .into_iter()
        .map(|r| r.value.unwrap())
        .collect();
    assert_eq!(
        values,
        ["2", "3"],
        "the first batch goes, the last stays whole"
    );
    assert_eq!(log.offsets().log_end_offset, end);
    drop(log);
    let log = Log::open(dir.path(), config()).unwrap();
    assert_eq!(log.offsets().log_end_offset, end);
    let mut b = kv_batch(&[kv("a", "4")], 3, Compression::None);
    assert_eq!(log.append(&mut b, -1).unwrap().base_offset, end);
}

#[test]
fn a_reopened_log_reads_what_the_compacted_one_read() {
    for clean in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), config()).unwrap();
        let mut rng = Rng::new(base_seed(13));
        fill(&log, &mut rng, 150, 10, 0, Compression::Zstd);
        log.compact(EARLY, DAY).unwrap();
        let (recs, offsets) = (records(&log), log.offsets());
        if clean {
            log.close().unwrap();
        } else {
            drop(log);
        }
        let log = Log::open(dir.path(), config()).unwrap();
        assert_eq!(records(&log), recs);
        assert_eq!(log.offsets().log_end_offset, offsets.log_end_offset);
        // Without the recovery checkpoint every segment is scanned; the gaps compaction
        // left do not cut the log.
        drop(log);
        std::fs::remove_file(dir.path().join("recovery-point.checkpoint")).unwrap();
        let log = Log::open(dir.path(), config()).unwrap();
        assert_eq!(records(&log), recs);
        assert_eq!(log.offsets().log_end_offset, offsets.log_end_offset);
        // And with its indexes gone (rebuilt from the compacted segments).
        drop(log);
        for (_, path) in segment_files(dir.path()) {
            let _ = std::fs::remove_file(path.with_extension("index"));
            let _ = std::fs::remove_file(path.with_extension("timeindex"));
        }
        let log = Log::open(dir.path(), config()).unwrap();
        assert_eq!(records(&log), recs);
    }
}

#[test]
fn many_updates_of_few_keys_keep_the_log_small() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config();
    let log = Log::open(dir.path(), cfg.clone()).unwrap();
    let mut written = 0u64;
    for round in 0..5 {
        for i in 0..1000 {
            let mut b = kv_batch(
                &[kv(&format!("k{}", i % 5), &format!("value-{round}-{i}"))],
                i,
                Compression::None,
            );
            written += b.len() as u64;
            log.append(&mut b, -1).unwrap();
        }
        log.compact(EARLY, DAY).unwrap();
        // Five live records, an empty batch per compacted segment, and the active
        // segment: a few segments' worth whatever was written.
        assert!(
            log.size_bytes() <= 3 * cfg.segment_bytes,
            "round {round}: {} bytes in {} segments after writing {written}",
            log.size_bytes(),
            log.segment_count()
        );
        assert!(
            log.segment_count() <= 4,
            "round {round}: {} segments",
            log.segment_count()
        );
    }
    let newest: Vec<_> = newest_per_key(&records(&log))
        .into_values()
        .map(|r| r.value.unwrap())
        .collect();
    assert_eq!(newest.len(), 5);
    assert!(newest.iter().all(|v| v.starts_with("value-4-")));
}

#[test]
fn a_full_key_map_compacts_the_prefix_it_covers_and_later_passes_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config()).unwrap();
    let mut history = Vec::new();
    // 40 keys, each updated in three waves far apart.
    for wave in 0..3 {
        for k in 0..40 {
            history.extend(append(
                &log,
                &[kv(&format!("key-{k:02}"), &format!("w{wave}"))],
                wave,
                Compression::None,
            ));
        }
    }
    log.roll().unwrap();
    append(&log, &[kv("tail", "t")], 9, Compression::None);
    let all: Vec<Rec> = history.iter().map(|a| a.rec.clone()).collect();
    // Room for 10 keys of 6 bytes.
    let limit = 10 * (6 + weir_log::KEY_MAP_ENTRY_OVERHEAD_BYTES);
    let mut passes = 0;
    loop {
        let outcome = log.compact_with_key_map_limit(EARLY, DAY, limit).unwrap();
        passes += 1;
        assert!(outcome.keys <= 10);
        let recs = records(&log);
        // Nothing wrongly removed: every key's newest value is there, and everything
        // present was appended at that offset.
        let newest = newest_per_key(&recs);
        for (k, r) in newest_per_key(&all) {
            assert_eq!(newest.get(&k), Some(&r), "pass {passes}: newest of {k}");
        }
        assert!(
            recs.iter()
                .filter(|r| r.key.as_deref() != Some("tail"))
                .all(|r| all.contains(r))
        );
        if !outcome.key_map_full && outcome.records_removed == 0 {
            break;
        }
        assert!(passes < 20, "passes make progress");
    }
    assert!(passes > 2, "the cap made it take several passes");
    let recs = records(&log);
    assert_eq!(recs.len(), 41, "one record per key at the end: {recs:?}");
}

#[test]
fn compaction_is_due_when_never_run_when_half_the_log_is_new_or_a_tombstone_expires() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config()).unwrap();
    assert!(!log.compaction_due(0), "nothing closed");
    for i in 0..30 {
        append(
            &log,
            &[kv(
                &format!("k{}", i % 3),
                "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv",
            )],
            i,
            Compression::None,
        );
    }
    log.roll().unwrap();
    assert!(log.compaction_due(0), "never compacted since open");
    log.compact(EARLY, DAY).unwrap();
    assert!(!log.compaction_due(EARLY));
    // A little new data: not due; as much again as the compacted log: due.
    append(&log, &[kv("k0", "x")], 100, Compression::None);
    log.roll().unwrap();
    assert!(!log.compaction_due(EARLY));
    for i in 0..30 {
        append(
            &log,
            &[kv(
                &format!("k{}", i % 3),
                "wwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwww",
            )],
            200 + i,
            Compression::None,
        );
    }
    log.roll().unwrap();
    assert!(log.compaction_due(EARLY));
    log.compact(EARLY, DAY).unwrap();
    assert!(!log.compaction_due(EARLY));
    // A tombstone in a closed segment is kept for a day, then due.
    append(&log, &[tombstone("k1")], EARLY, Compression::None);
    append(&log, &[kv("k9", "x")], EARLY, Compression::None);
    log.roll().unwrap();
    log.compact(EARLY, DAY).unwrap();
    let expires = EARLY + DAY.as_millis() as i64 + 1;
    assert!(!log.compaction_due(expires - 1));
    assert!(log.compaction_due(expires));
    // Reopened: due again (what passes remember is not persisted).
    drop(log);
    let log = Log::open(dir.path(), config()).unwrap();
    assert!(log.compaction_due(0));
}

// ---------------------------------------------------------------------------------------
// Crashes, torn writes and failed fsyncs during a compaction

/// A closed log with compaction work: superseded records, an expired tombstone and
/// compressed batches. `keys` sets how much survives (many keys: several groups).
fn crash_fixture(dir: &Path, keys: u64) {
    let log = Log::open(dir, config()).unwrap();
    let mut rng = Rng::new(keys);
    for i in 0..120 {
        let codec = if i % 3 == 0 {
            Compression::Gzip
        } else {
            Compression::None
        };
        let recs: Vec<_> = (0..rng.range(1, 4))
            .map(|j| {
                let k = format!("k{}", rng.range(0, keys));
                match (i, j) {
                    (10, 0) => kv("gone", "g"),
                    (20, 0) => tombstone("gone"),
                    _ => kv(&k, &format!("v{i}.{j}")),
                }
            })
            .collect();
        append(&log, &recs, i, codec);
    }
    append(&log, &[kv("last", "x")], 1000, Compression::None);
    log.close().unwrap();
}

/// Compaction runs with `now = 5000` and a retention of 1 s: the tombstone (time 20) is
/// past it.
const CRASH_NOW: i64 = 5000;
const CRASH_RETENTION: Duration = Duration::from_millis(1000);

/// What the log reads before and after an uninterrupted compaction of the fixture.
fn pre_and_post(pristine: &Path) -> (Vec<Rec>, Vec<Rec>) {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(pristine, dir.path());
    let log = Log::open(dir.path(), config()).unwrap();
    let pre = records(&log);
    let outcome = log.compact(CRASH_NOW, CRASH_RETENTION).unwrap();
    assert!(outcome.records_removed > 0 && outcome.tombstones_removed == 1);
    (pre, records(&log))
}

/// After an interrupted compaction and a reopen: every record is one the log held before,
/// at its offset; everything compaction keeps is there (so every key's newest value);
/// no compaction file is left behind; and a new pass gets to the same end state.
fn check_recovered(dir: &Path, pre: &[Rec], post: &[Rec], single_group: bool, ctx: &str) {
    let log = Log::open(dir, config()).unwrap_or_else(|e| panic!("{ctx}: reopen: {e}"));
    let recs = records(&log);
    if single_group {
        assert!(
            recs == pre || recs == post,
            "{ctx}: neither before ({} records) nor after ({}): {} records, first {:?}",
            pre.len(),
            post.len(),
            recs.len(),
            recs.first()
        );
    }
    let pre_set: HashSet<&Rec> = pre.iter().collect();
    assert!(
        recs.iter().all(|r| pre_set.contains(r)),
        "{ctx}: a record was changed or invented"
    );
    let have: HashSet<&Rec> = recs.iter().collect();
    for r in post {
        assert!(have.contains(r), "{ctx}: {r:?} was lost");
    }
    assert_eq!(
        log.offsets().log_end_offset,
        pre.last().unwrap().offset + 1,
        "{ctx}: log end"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap"))
        .collect();
    assert!(leftovers.is_empty(), "{ctx}: left behind: {leftovers:?}");
    log.compact(CRASH_NOW, CRASH_RETENTION).unwrap();
    assert_eq!(records(&log), post, "{ctx}: compacting again");
}

/// Opens a copy of `pristine` through a `FaultyStorage` with `plan` and compacts it;
/// returns the storage (to count what the pass did) and whether the pass succeeded.
fn compact_with_faults(pristine: &Path, dir: &Path, plan: FaultPlan) -> (FaultyStorage, bool) {
    copy_dir(pristine, dir);
    let storage = FaultyStorage::new(plan);
    let log = match Log::open_with_storage(dir, config(), Arc::new(storage.clone())) {
        Ok(log) => log,
        Err(_) => return (storage, false),
    };
    let ok = log.compact(CRASH_NOW, CRASH_RETENTION).is_ok();
    drop(log);
    (storage, ok)
}

#[test]
fn a_crash_at_any_step_of_a_compaction_leaves_the_old_or_the_new_segments() {
    for (keys, single_group) in [(3, true), (40, false)] {
        let pristine = tempfile::tempdir().unwrap();
        crash_fixture(pristine.path(), keys);
        let (pre, post) = pre_and_post(pristine.path());
        // Count the operations opening and compacting take.
        let scratch = tempfile::tempdir().unwrap();
        copy_dir(pristine.path(), scratch.path());
        let storage = FaultyStorage::default();
        let log =
            Log::open_with_storage(scratch.path(), config(), Arc::new(storage.clone())).unwrap();
        let opened = storage.operations();
        let outcome = log.compact(CRASH_NOW, CRASH_RETENTION).unwrap();
        let compacted = storage.operations();
        drop(log);
        assert_eq!(outcome.segments_written > 1, !single_group, "{outcome:?}");
        assert!(compacted - opened > 10);
        for n in opened + 1..=compacted {
            let dir = tempfile::tempdir().unwrap();
            let plan = FaultPlan {
                crash_at_operation: Some(n),
                ..FaultPlan::default()
            };
            let (storage, ok) = compact_with_faults(pristine.path(), dir.path(), plan);
            assert!(
                storage.is_crashed() && !ok,
                "operation {n} crashes the pass"
            );
            let ctx = format!("{keys} keys, crash at operation {n} of {opened}..{compacted}");
            check_recovered(dir.path(), &pre, &post, single_group, &ctx);
        }
    }
}

#[test]
fn a_write_torn_anywhere_in_a_compaction_recovers_to_the_old_or_the_new_segments() {
    let pristine = tempfile::tempdir().unwrap();
    crash_fixture(pristine.path(), 3);
    let (pre, post) = pre_and_post(pristine.path());
    let scratch = tempfile::tempdir().unwrap();
    copy_dir(pristine.path(), scratch.path());
    let storage = FaultyStorage::default();
    let log = Log::open_with_storage(scratch.path(), config(), Arc::new(storage.clone())).unwrap();
    let opened = storage.bytes_written();
    log.compact(CRASH_NOW, CRASH_RETENTION).unwrap();
    let compacted = storage.bytes_written();
    drop(log);
    let mut rng = Rng::new(base_seed(17));
    for _ in 0..40 {
        let tear = rng.range(opened, compacted);
        let dir = tempfile::tempdir().unwrap();
        let plan = FaultPlan {
            torn_write_after_bytes: Some(tear),
            ..FaultPlan::default()
        };
        let (storage, _) = compact_with_faults(pristine.path(), dir.path(), plan);
        assert!(
            storage.is_crashed(),
            "byte {tear} is written during the pass"
        );
        check_recovered(
            dir.path(),
            &pre,
            &post,
            true,
            &format!("write torn at byte {tear}"),
        );
    }
}

#[test]
fn a_failed_fsync_during_a_compaction_loses_nothing() {
    let pristine = tempfile::tempdir().unwrap();
    crash_fixture(pristine.path(), 3);
    let (pre, post) = pre_and_post(pristine.path());
    let mut failed_passes = 0;
    for n in 1..40 {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(pristine.path(), dir.path());
        let storage = FaultyStorage::new(FaultPlan {
            fail_sync_number: Some(n),
            ..FaultPlan::default()
        });
        let Ok(log) = Log::open_with_storage(dir.path(), config(), Arc::new(storage)) else {
            continue;
        };
        let ctx = format!("fsync {n} fails");
        if log.compact(CRASH_NOW, CRASH_RETENTION).is_err() {
            failed_passes += 1;
        }
        // The running log still reads one of the two states.
        let recs = records(&log);
        assert!(
            recs == pre || recs == post,
            "{ctx}: in process: {} records",
            recs.len()
        );
        drop(log);
        check_recovered(dir.path(), &pre, &post, true, &ctx);
    }
    assert!(failed_passes > 0, "the fsync of a pass was hit");
}

// ---------------------------------------------------------------------------------------
// Concurrency

#[test]
fn reads_and_appends_go_on_during_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(dir.path(), config()).unwrap());
    let history = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let appender = {
        let (log, history, stop) = (log.clone(), history.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0i64;
            while !stop.load(Ordering::Relaxed) || i < 500 {
                // Values name their key, so a reader can check what it sees.
                let k = format!("k{}", i % 7);
                let recs = [kv(&k, &format!("{k}:{i}"))];
                let appended = append(&log, &recs, i, Compression::None);
                history
                    .lock()
                    .unwrap()
                    .extend(appended.into_iter().map(|a| a.rec));
                i += 1;
            }
        })
    };
    let reader = {
        let (log, stop) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(Ordering::Relaxed) {
                for r in records(&log) {
                    let value = r.value.unwrap();
                    assert!(
                        value.starts_with(&format!("{}:", r.key.unwrap())),
                        "{value}"
                    );
                }
                reads += 1;
            }
            reads
        })
    };
    let mut removed = 0;
    let mut passes = 0;
    while passes < 10 || history.lock().unwrap().len() < 3000 {
        removed += log.compact(EARLY, DAY).unwrap().records_removed;
        passes += 1;
    }
    stop.store(true, Ordering::Relaxed);
    appender.join().unwrap();
    assert!(reader.join().unwrap() > 0);
    assert!(removed > 0);
    log.compact(EARLY, DAY).unwrap();
    let recs = records(&log);
    let history = history.lock().unwrap();
    let all: HashSet<&Rec> = history.iter().collect();
    assert!(recs.iter().all(|r| all.contains(r)));
    let got = newest_per_key(&recs);
    for (k, r) in newest_per_key(&history) {
        assert_eq!(got.get(&k), Some(&r), "newest of {k}");
    }
}

#[test]
fn retention_deleting_segments_during_compaction_never_brings_records_back() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        retention_bytes: Some(4096),
        ..config()
    };
    let log = Arc::new(Log::open(dir.path(), cfg).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    // One record per batch from offset 0: the record at offset `i` is `expected(i)`.
    let expected = |i: i64| {
        let k = format!("k{}", i % 40);
        Rec {
            offset: i,
            value: Some(format!("{k}:{i}")),
            key: Some(k),
            timestamp: i,
        }
    };
    let appender = {
        let (log, stop) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0i64;
            while !stop.load(Ordering::Relaxed) || i < 2000 {
                let r = expected(i);
                let a = append(&log, &[(r.key, r.value)], i, Compression::None);
                assert_eq!(a[0].rec.offset, i);
                i += 1;
            }
        })
    };
    let retention = {
        let (log, stop) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut deleted = 0;
            while !stop.load(Ordering::Relaxed) {
                deleted += log.apply_retention(0).unwrap().segments_deleted;
            }
            deleted
        })
    };
    let mut passes = 0;
    while passes < 20 || log.offsets().log_end_offset < 6000 {
        log.compact(EARLY, DAY).unwrap();
        passes += 1;
        // Whatever is read is what was appended at that offset. (Retention moves the
        // log start meanwhile: a read below it starts again from there.)
        let mut offset = 0;
        loop {
            let data = match log.read(offset, 512, None) {
                Ok(data) => data,
                Err(weir_log::ReadError::OffsetOutOfRange {
                    log_start_offset, ..
                }) if log_start_offset > offset => {
                    offset = log_start_offset;
                    continue;
                }
                Err(e) => panic!("read at {offset}: {e}"),
            };
            if data.records.is_empty() {
                break;
            }
            for batch in data.batches() {
                for r in decode_records(&batch).unwrap() {
                    assert_eq!(to_rec(&r), expected(r.offset));
                }
            }
            offset = data.next_offset;
        }
    }
    stop.store(true, Ordering::Relaxed);
    appender.join().unwrap();
    assert!(retention.join().unwrap() > 0, "retention ran alongside");
    let end = log.offsets().log_end_offset;
    drop(log);
    // And the directory reopens to a consistent log whose newest records are all there.
    let log = Log::open(dir.path(), config()).unwrap();
    let recs = records(&log);
    for r in &recs {
        assert_eq!(*r, expected(r.offset));
    }
    let newest = newest_per_key(&recs);
    for i in end - 40..end {
        assert_eq!(newest.get(&format!("k{}", i % 40)), Some(&expected(i)));
    }
}

// ---------------------------------------------------------------------------------------
// Property test against a model

#[derive(Debug, Clone)]
enum Op {
    /// One batch: per record a key (None: keyless) and whether it is a tombstone.
    Append(Vec<(Option<u8>, bool)>, Compression),
    Roll,
    /// Compact at the model's clock plus `advance` (past retention when large), with the
    /// key map capped at that many keys when set.
    Compact {
        advance: i64,
        cap_keys: Option<usize>,
    },
    Reopen {
        clean: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let record = (
        prop::option::weighted(0.9, 0u8..6),
        prop::bool::weighted(0.15),
    );
    let codec = prop_oneof![
        4 => Just(Compression::None),
        1 => Just(Compression::Gzip),
        1 => Just(Compression::Zstd),
        1 => Just(Compression::Lz4),
    ];
    prop_oneof![
        8 => (prop::collection::vec(record, 1..5), codec).prop_map(|(r, c)| Op::Append(r, c)),
        2 => Just(Op::Roll),
        3 => (prop_oneof![Just(0i64), Just(50), Just(10_000)], prop::option::weighted(0.2, 1usize..4))
            .prop_map(|(advance, cap_keys)| Op::Compact { advance, cap_keys }),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
    ]
}

/// Delete retention in the model's clock units (one tick per batch).
const MODEL_RETENTION_MS: i64 = 100;

#[derive(Debug, Default)]
struct Model {
    /// Every record appended, in offset order.
    history: Vec<Appended>,
    /// Offsets some compaction was allowed to remove.
    removable: HashSet<i64>,
    clock: i64,
    value_id: u64,
}

fn run_model(ops: &[Op]) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_bytes: 1024,
        ..config()
    };
    let mut log = Some(Log::open(dir.path(), cfg.clone()).unwrap());
    let mut m = Model::default();
    for (step, op) in ops.iter().enumerate() {
        let l = log.as_ref().unwrap();
        let before = records(l);
        match op {
            Op::Append(recs, codec) => {
                m.clock += 10;
                let recs: Vec<_> = recs
                    .iter()
                    .map(|(key, tomb)| {
                        m.value_id += 1;
                        let key = key.map(|k| format!("k{k}"));
                        let value = (!tomb || key.is_none()).then(|| format!("v{}", m.value_id));
                        (key, value)
                    })
                    .collect();
                m.history.extend(append(l, &recs, m.clock, *codec));
            }
            Op::Roll => l.roll().unwrap(),
            Op::Compact { advance, cap_keys } => {
                let now = m.clock + advance;
                let horizon = now - MODEL_RETENTION_MS;
                let end = l.offsets().log_end_offset;
                let active = active_base(dir.path());
                let retention = Duration::from_millis(MODEL_RETENTION_MS as u64);
                let outcome = match cap_keys {
                    Some(n) => {
                        let limit = n * (2 + weir_log::KEY_MAP_ENTRY_OVERHEAD_BYTES);
                        l.compact_with_key_map_limit(now, retention, limit).unwrap()
                    }
                    None => l.compact(now, retention).unwrap(),
                };
                // What this pass was allowed to remove: superseded records and expired
                // newest tombstones in closed segments, never the log's last batch.
                let expected = expected_after_pass(&m.history, active, end, horizon);
                let kept: HashSet<i64> = expected.iter().map(|r| r.offset).collect();
                for a in &m.history {
                    if !kept.contains(&a.rec.offset) {
                        m.removable.insert(a.rec.offset);
                    }
                }
                if cap_keys.is_none() {
                    // Without a cap a pass removes all of it.
                    let recs = records(l);
                    let present: HashSet<i64> = recs.iter().map(|r| r.offset).collect();
                    let was: HashSet<i64> = before.iter().map(|r| r.offset).collect();
                    let missed: Vec<_> = expected
                        .iter()
                        .filter(|r| was.contains(&r.offset) && !present.contains(&r.offset))
                        .collect();
                    assert!(missed.is_empty(), "step {step}: removed {missed:?}");
                    let extra: Vec<_> = recs.iter().filter(|r| !kept.contains(&r.offset)).collect();
                    assert!(
                        extra.is_empty(),
                        "step {step} ({outcome:?}): kept {extra:?}"
                    );
                }
            }
            Op::Reopen { clean } => {
                let l = log.take().unwrap();
                if *clean {
                    l.close().unwrap();
                } else {
                    drop(l);
                }
                log = Some(Log::open(dir.path(), cfg.clone()).unwrap());
                assert_eq!(
                    records(log.as_ref().unwrap()),
                    before,
                    "step {step}: reopen"
                );
            }
        }
        // After every step: the log holds records appended at those offsets, only the
        // removable ones are missing, and the log end is the model's.
        let l = log.as_ref().unwrap();
        let recs = records(l);
        let by_offset: HashMap<i64, &Rec> =
            m.history.iter().map(|a| (a.rec.offset, &a.rec)).collect();
        for r in &recs {
            assert_eq!(by_offset.get(&r.offset), Some(&r), "step {step} ({op:?})");
        }
        let present: HashSet<i64> = recs.iter().map(|r| r.offset).collect();
        for a in &m.history {
            assert!(
                present.contains(&a.rec.offset) || m.removable.contains(&a.rec.offset),
                "step {step} ({op:?}): {:?} is gone",
                a.rec
            );
        }
        assert_eq!(
            l.offsets().log_end_offset,
            m.history.last().map_or(0, |a| a.rec.offset + 1),
            "step {step}"
        );
        // The model's view: each key's newest value, unless its newest is a tombstone.
        let live = |recs: &[Rec]| -> HashMap<String, String> {
            newest_per_key(recs)
                .into_iter()
                .filter_map(|(k, r)| Some((k, r.value?)))
                .collect()
        };
        let all: Vec<Rec> = m.history.iter().map(|a| a.rec.clone()).collect();
        assert_eq!(live(&recs), live(&all), "step {step}: key -> newest value");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn compaction_agrees_with_a_key_to_newest_value_model(ops in prop::collection::vec(op(), 1..80)) {
        run_model(&ops);
    }
}
