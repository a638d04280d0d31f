//! Replication from the log's side: a follower copies its leader's log batch by batch
//! with `Log::read` (no upper bound) and `Log::append_replicated`, gaps and empty batches
//! of a compacted leader included, and ends up byte-identical to it at every offset, with
//! the same log end and the epoch history its batches imply, across reopens. Also: each
//! refusal of `append_replicated` writes nothing, a gap past 32-bit relative offsets
//! rolls first, and a follower that diverged truncates by OffsetsForLeaderEpoch (KIP-101,
//! KIP-279) and copies the new leader's batches.

use crate::common;

use std::path::Path;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::{Rng, segment_files};
use proptest::prelude::*;
use weir_log::storage::{FaultPlan, FaultyStorage};
use weir_log::{
    AppendError, BatchError, BatchHeader, Compression, EpochEntry, FlushPolicy, Log, LogConfig,
    LogOffsets, OffsetProblem, Record, RecordBatchBuilder,
};

/// Small segments and dense index entries, so a short test rolls and indexes often.
fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 64,
        index_max_bytes: 1024,
        segment_age: None,
        retention_age: None,
        retention_bytes: None,
        flush: FlushPolicy::None,
        ..LogConfig::default()
    }
}

/// Delete retention for tombstones, in the tests' clock units (milliseconds).
const DELETE_RETENTION: Duration = Duration::from_millis(100);

/// A batch of keyed records; a `None` value is a tombstone.
fn kv_batch(records: &[(Option<String>, Option<String>)], ts: i64, codec: Compression) -> BytesMut {
    let mut b = RecordBatchBuilder::new(codec);
    for (key, value) in records {
        b.push(&Record {
            key: key.clone().map(Bytes::from),
            value: value.clone().map(Bytes::from),
            headers: Vec::new(),
            timestamp: ts,
        });
    }
    b.build().expect("valid batch")
}

fn kv(key: &str, value: &str) -> (Option<String>, Option<String>) {
    (Some(key.to_string()), Some(value.to_string()))
}

/// Every batch the log holds, in offset order, as `Log::read` returns them.
fn stored_batches(log: &Log) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut offset = log.offsets().log_start_offset;
    loop {
        let data = log.read(offset, 1 << 20, None).expect("read");
        if data.records.is_empty() {
            return out;
        }
        out.extend(data.batches());
        offset = data.next_offset;
    }
}

fn headers(batches: &[Bytes]) -> Vec<BatchHeader> {
    batches.iter().map(|b| BatchHeader::parse(b)).collect()
}

fn concat(batches: &[Bytes]) -> Vec<u8> {
    batches.iter().flat_map(|b| b.iter().copied()).collect()
}

/// The epoch history any replica derives from these batches: each newer epoch starts at
/// the base offset of its first batch.
fn replayed_epochs(batches: &[BatchHeader]) -> Vec<EpochEntry> {
    let mut out: Vec<EpochEntry> = Vec::new();
    for h in batches {
        if h.partition_leader_epoch >= 0
            && out
                .last()
                .is_none_or(|l| l.epoch < h.partition_leader_epoch)
        {
            out.push(EpochEntry {
                epoch: h.partition_leader_epoch,
                start_offset: h.base_offset,
            });
        }
    }
    out
}

/// The leader's own history as its stored batches show it: compaction may have removed
/// the first batches of an epoch (its entry then starts in a gap) or all of them (the
/// epoch has none). Each entry moves to the first batch in its range, or goes; every
/// batch in the range must carry the entry's epoch.
fn history_seen_through_batches(
    history: &[EpochEntry],
    batches: &[BatchHeader],
) -> Vec<EpochEntry> {
    let mut out = Vec::new();
    for (i, e) in history.iter().enumerate() {
        let end = history.get(i + 1).map_or(i64::MAX, |n| n.start_offset);
        let inside: Vec<&BatchHeader> = batches
            .iter()
            .filter(|b| b.base_offset >= e.start_offset && b.base_offset < end)
            .collect();
        for b in &inside {
            assert_eq!(
                b.partition_leader_epoch, e.epoch,
                "batch at {} lies in epoch {}'s range of the leader's history",
                b.base_offset, e.epoch
            );
        }
        if let Some(first) = inside.first() {
            out.push(EpochEntry {
                epoch: e.epoch,
                start_offset: first.base_offset,
            });
        }
    }
    out
}

/// Base offset of the first batch at or after `offset` (the log end if none).
fn next_batch_at(batches: &[BatchHeader], offset: i64, end: i64) -> i64 {
    batches
        .iter()
        .map(|b| b.base_offset)
        .find(|&b| b >= offset)
        .unwrap_or(end)
}

/// Asserts that `follower` is an exact copy of `leader`: same offsets, the same stored
/// bytes from a read at every offset (gaps included), the epoch history the batches
/// imply, and OffsetsForLeaderEpoch answers that differ from the leader's at most across
/// offsets that hold no batch.
fn assert_copy(leader: &Log, follower: &Log, context: &str) {
    let (lo, fo) = (leader.offsets(), follower.offsets());
    assert_eq!(lo.log_end_offset, fo.log_end_offset, "{context}: log end");
    assert_eq!(
        lo.log_start_offset, fo.log_start_offset,
        "{context}: log start"
    );
    let batches = stored_batches(leader);
    assert_eq!(
        batches,
        stored_batches(follower),
        "{context}: stored batches"
    );
    for offset in lo.log_start_offset..=lo.log_end_offset {
        let (l, f) = (
            leader.read(offset, 1, None).expect("leader read"),
            follower.read(offset, 1, None).expect("follower read"),
        );
        assert_eq!(l.records, f.records, "{context}: read at {offset}");
        assert_eq!(l.next_offset, f.next_offset, "{context}: read at {offset}");
    }
    let hs = headers(&batches);
    let replayed = replayed_epochs(&hs);
    assert_eq!(
        follower.leader_epochs(),
        replayed,
        "{context}: follower's epochs"
    );
    assert_eq!(
        history_seen_through_batches(&leader.leader_epochs(), &hs),
        replayed,
        "{context}: leader's epochs, as its batches show them"
    );
    let end = lo.log_end_offset;
    let max_epoch = hs
        .iter()
        .map(|h| h.partition_leader_epoch)
        .max()
        .unwrap_or(0);
    for epoch in -1..=max_epoch + 1 {
        let (l, f) = (
            leader.end_offset_for_epoch(epoch),
            follower.end_offset_for_epoch(epoch),
        );
        match (l, f) {
            (Some((le, lend)), Some((fe, fend))) => {
                assert!(fe <= le, "{context}: epoch {epoch}: {l:?} vs {f:?}");
                assert_eq!(
                    next_batch_at(&hs, lend, end),
                    next_batch_at(&hs, fend, end),
                    "{context}: end of epoch {epoch}: leader {l:?}, follower {f:?}"
                );
            }
            (None, None) => {}
            // The leader remembers an epoch whose batches compaction removed: nothing of
            // it, or of anything older, is stored.
            (Some((_, lend)), None) => assert_eq!(
                next_batch_at(&hs, 0, end),
                next_batch_at(&hs, lend, end),
                "{context}: epoch {epoch}: leader {l:?}, follower none"
            ),
            (None, Some(_)) => panic!("{context}: epoch {epoch}: follower {f:?}, leader none"),
        }
    }
}

/// Copies what `follower` lacks from `leader`: reads of random sizes from the follower's
/// log end, each appended in random groups of batches.
fn catch_up(leader: &Log, follower: &Log, rng: &mut Rng) {
    let end = leader.offsets().log_end_offset;
    let mut offset = follower.offsets().log_end_offset;
    while offset < end {
        let data = leader
            .read(offset, rng.range(1, 3000) as usize, None)
            .expect("leader read");
        let batches: Vec<Bytes> = data.batches().collect();
        assert!(!batches.is_empty(), "read at {offset} below the end {end}");
        let mut i = 0;
        while i < batches.len() {
            let n = rng.range(1, (batches.len() - i + 1) as u64) as usize;
            let info = follower
                .append_replicated(&concat(&batches[i..i + n]))
                .unwrap_or_else(|e| panic!("append_replicated at {offset}: {e}"));
            assert_eq!(
                info.base_offset,
                BatchHeader::parse(&batches[i]).base_offset
            );
            assert_eq!(info.batches, n);
            i += n;
        }
        assert_eq!(follower.offsets().log_end_offset, data.next_offset);
        offset = data.next_offset;
    }
}

/// Kafka's truncation of a follower whose log may have diverged (KIP-279): ask the
/// leader where the follower's latest epoch ended there, truncate to that (or, if the
/// leader answers with an older epoch, to the earlier of both ends of that epoch), and
/// ask again until nothing changes.
fn truncate_diverged(leader: &Log, follower: &Log) {
    for _ in 0..100 {
        let Some(latest) = follower.leader_epochs().last().copied() else {
            return;
        };
        let end = follower.offsets().log_end_offset;
        let target = match leader.end_offset_for_epoch(latest.epoch) {
            Some((epoch, leader_end)) if epoch == latest.epoch => leader_end,
            Some((epoch, leader_end)) => {
                let own = follower.end_offset_for_epoch(epoch).map_or(0, |(_, o)| o);
                leader_end.min(own)
            }
            None => 0,
        };
        if target >= end {
            return;
        }
        follower.truncate_to(target).expect("truncate");
    }
    panic!("truncation did not settle");
}

/// Opens a log again after removing its recovery checkpoint, so recovery scans (and
/// checks) every segment rather than trusting the closed ones.
fn reopen_scanning_everything(log: Log, dir: &Path) -> Log {
    log.close().expect("close");
    // A log that never held a record writes no checkpoint.
    match std::fs::remove_file(dir.join("recovery-point.checkpoint")) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => panic!("recovery checkpoint: {e}"),
        _ => {}
    }
    Log::open(dir, config()).expect("reopen")
}

#[derive(Debug, Clone)]
enum Op {
    /// One batch: per record, a key from a small set (or none) and whether it is a
    /// tombstone.
    Append(Vec<(Option<u8>, bool)>, Compression),
    /// The next append is made in a newer leader epoch.
    BumpEpoch,
    Roll,
    /// A compaction pass at the clock plus this many milliseconds.
    Compact(i64),
    /// Truncate at an offset picked in the log; the leader's next append is in a newer
    /// epoch (a log is truncated when its broker follows a new leader).
    Truncate(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let record = (
        prop::option::weighted(0.9, 0u8..10),
        prop::bool::weighted(0.15),
    );
    let codec = prop_oneof![
        4 => Just(Compression::None),
        1 => Just(Compression::Gzip),
        1 => Just(Compression::Lz4),
    ];
    prop_oneof![
        10 => (prop::collection::vec(record, 1..5), codec).prop_map(|(r, c)| Op::Append(r, c)),
        2 => Just(Op::BumpEpoch),
        2 => Just(Op::Roll),
        3 => prop_oneof![Just(0i64), Just(1000)].prop_map(Op::Compact),
        1 => any::<u64>().prop_map(Op::Truncate),
    ]
}

/// The leader's state between operations.
struct Leader {
    log: Log,
    epoch: i32,
    clock: i64,
    value_id: u64,
}

impl Leader {
    fn append(&mut self, records: &[(Option<u8>, bool)], codec: Compression) {
        self.clock += 10;
        let records: Vec<_> = records
            .iter()
            .map(|(key, tombstone)| {
                self.value_id += 1;
                let key = key.map(|k| format!("k{k}"));
                // Values of varied length, so segments roll at varied batch counts.
                let pad = "x".repeat((self.value_id % 7 * 12) as usize);
                let value =
                    (!tombstone || key.is_none()).then(|| format!("v{}{pad}", self.value_id));
                (key, value)
            })
            .collect();
        let mut b = kv_batch(&records, self.clock, codec);
        self.log.append(&mut b, self.epoch).expect("leader append");
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Append(records, codec) => self.append(records, *codec),
            Op::BumpEpoch => self.epoch += 1,
            Op::Roll => self.log.roll().expect("roll"),
            Op::Compact(advance) => {
                self.log
                    .compact(self.clock + advance, DELETE_RETENTION)
                    .expect("compact");
            }
            Op::Truncate(pick) => {
                let end = self.log.offsets().log_end_offset;
                self.log
                    .truncate_to((*pick % (end as u64 + 1)) as i64)
                    .expect("truncate");
                self.epoch += 1;
            }
        }
    }
}

fn run_replication(ops: &[Op], diverge: Option<(u64, Vec<Op>)>, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let (leader_dir, follower_dir) = (dir.path().join("leader"), dir.path().join("follower"));
    let mut rng = Rng::new(seed);
    let mut leader = Leader {
        log: Log::open(&leader_dir, config()).unwrap(),
        epoch: 0,
        clock: 0,
        value_id: 0,
    };
    for op in ops {
        leader.apply(op);
    }
    let mut follower = Log::open(&follower_dir, config()).unwrap();
    catch_up(&leader.log, &follower, &mut rng);
    assert_copy(&leader.log, &follower, "after the copy");
    follower.close().unwrap();
    follower = Log::open(&follower_dir, config()).unwrap();
    assert_copy(&leader.log, &follower, "after the follower reopened");
    follower = reopen_scanning_everything(follower, &follower_dir);
    assert_copy(
        &leader.log,
        &follower,
        "after a full recovery scan of the follower",
    );
    leader.log = reopen_scanning_everything(leader.log, &leader_dir);
    assert_copy(
        &leader.log,
        &follower,
        "after a full recovery scan of the leader",
    );

    let Some((pick, more)) = diverge else {
        return;
    };
    // The leader follows another broker for a while: its log is cut and goes on in a
    // newer epoch. (No compaction here: it would change batches the follower holds.)
    leader.apply(&Op::Truncate(pick));
    for op in more.iter().filter(|op| !matches!(op, Op::Compact(_))) {
        leader.apply(op);
    }
    truncate_diverged(&leader.log, &follower);
    catch_up(&leader.log, &follower, &mut rng);
    assert_copy(
        &leader.log,
        &follower,
        "after the follower truncated and caught up",
    );
    follower = reopen_scanning_everything(follower, &follower_dir);
    assert_copy(
        &leader.log,
        &follower,
        "after the diverged follower reopened",
    );
    leader.log = reopen_scanning_everything(leader.log, &leader_dir);
    assert_copy(&leader.log, &follower, "after the diverged leader reopened");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_follower_copies_a_compacted_leader_byte_for_byte(
        ops in prop::collection::vec(op(), 1..150),
        diverge in prop::option::weighted(0.6, (any::<u64>(), prop::collection::vec(op(), 1..12))),
        seed in any::<u64>(),
    ) {
        run_replication(&ops, diverge, seed);
    }
}

/// What a refused append must leave as it was: offsets, stored batches, epochs, and the
/// size of every segment file.
#[derive(Debug, PartialEq)]
struct State {
    offsets: LogOffsets,
    batches: Vec<Bytes>,
    epochs: Vec<EpochEntry>,
    files: Vec<(i64, u64)>,
}

fn state(log: &Log, dir: &Path) -> State {
    State {
        offsets: log.offsets(),
        batches: stored_batches(log),
        epochs: log.leader_epochs(),
        files: segment_files(dir)
            .into_iter()
            .map(|(base, path)| (base, std::fs::metadata(path).unwrap().len()))
            .collect(),
    }
}

/// A leader with six one-batch appends in epochs 1, 1, 2, 2, 3, 3 (two records each,
/// offsets 0..12), and a follower that copied the first two batches.
fn leader_and_follower(dir: &Path) -> (Log, Log, Vec<Bytes>) {
    let leader = Log::open(dir.join("leader"), config()).unwrap();
    for i in 0..6 {
        let mut b = kv_batch(
            &[kv(&format!("a{i}"), "x"), kv(&format!("b{i}"), "y")],
            i,
            Compression::None,
        );
        leader.append(&mut b, 1 + i as i32 / 2).unwrap();
    }
    let batches = stored_batches(&leader);
    assert_eq!(batches.len(), 6);
    let follower = Log::open(dir.join("follower"), config()).unwrap();
    follower.append_replicated(&concat(&batches[..2])).unwrap();
    assert_eq!(follower.offsets().log_end_offset, 4);
    (leader, follower, batches)
}

#[test]
fn batches_out_of_order_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (_leader, follower, batches) = leader_and_follower(dir.path());
    let fdir = dir.path().join("follower");
    let before = state(&follower, &fdir);
    // Batch 3 (offsets 6..=7, epoch 2) then batch 2 (4..=5): the second goes backwards.
    let request = concat(&[batches[3].clone(), batches[2].clone()]);
    match follower.append_replicated(&request) {
        Err(AppendError::OffsetMismatch {
            index: 1,
            base_offset: 4,
            last_offset: 5,
            problem: OffsetProblem::OutOfOrder { previous_end: 8 },
        }) => {}
        other => panic!("expected OutOfOrder, got {other:?}"),
    }
    // The same batch twice.
    let request = concat(&[batches[2].clone(), batches[2].clone()]);
    assert!(matches!(
        follower.append_replicated(&request),
        Err(AppendError::OffsetMismatch {
            index: 1,
            problem: OffsetProblem::OutOfOrder { previous_end: 6 },
            ..
        })
    ));
    assert_eq!(
        state(&follower, &fdir),
        before,
        "epoch 2 was not recorded either"
    );
    assert_eq!(follower.end_offset_for_epoch(2), Some((1, 4)));
    // In order, the same batches go in.
    follower.append_replicated(&concat(&batches[2..])).unwrap();
    assert_eq!(stored_batches(&follower), batches);
}

#[test]
fn a_batch_overlapping_the_log_end_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (_leader, follower, batches) = leader_and_follower(dir.path());
    let fdir = dir.path().join("follower");
    let before = state(&follower, &fdir);
    // A retried fetch: the last batch the follower already holds, then a new one.
    let request = concat(&[batches[1].clone(), batches[2].clone()]);
    match follower.append_replicated(&request) {
        Err(AppendError::OffsetMismatch {
            index: 0,
            base_offset: 2,
            last_offset: 3,
            problem: OffsetProblem::BelowLogEnd { log_end_offset: 4 },
        }) => {}
        other => panic!("expected BelowLogEnd, got {other:?}"),
    }
    // A batch that straddles the log end (offsets 3..=4).
    let mut straddling = BytesMut::from(&batches[2][..]);
    weir_log::batch::patch_offset_and_epoch(&mut straddling, 3, 2);
    assert!(matches!(
        follower.append_replicated(&straddling),
        Err(AppendError::OffsetMismatch {
            index: 0,
            base_offset: 3,
            problem: OffsetProblem::BelowLogEnd { log_end_offset: 4 },
            ..
        })
    ));
    assert_eq!(state(&follower, &fdir), before);
}

#[test]
fn a_batch_with_a_bad_crc_or_framing_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (_leader, follower, batches) = leader_and_follower(dir.path());
    let fdir = dir.path().join("follower");
    let before = state(&follower, &fdir);
    // The second batch of the request has a flipped bit in its records.
    let mut request = concat(&batches[2..4]);
    let second = batches[2].len();
    let last = request.len() - 1;
    request[last] ^= 0x10;
    match follower.append_replicated(&request) {
        Err(AppendError::InvalidBatch {
            index: 1,
            position,
            source: BatchError::CrcMismatch { .. },
        }) => assert_eq!(position, second),
        other => panic!("expected a CRC mismatch, got {other:?}"),
    }
    // A request cut short inside its second batch.
    let request = concat(&batches[2..4]);
    assert!(matches!(
        follower.append_replicated(&request[..request.len() - 3]),
        Err(AppendError::InvalidBatch {
            index: 1,
            source: BatchError::Truncated { .. },
            ..
        })
    ));
    assert!(matches!(
        follower.append_replicated(&[]),
        Err(AppendError::Empty)
    ));
    assert_eq!(state(&follower, &fdir), before);
}

/// A leader whose compaction left what the follower must copy as it is: a gap at the
/// start of a segment, a batch whose records were partly removed (its offset span still
/// covers them), a gap between batches, and an empty batch ending a segment.
fn compacted_leader(dir: &Path) -> Log {
    let leader = Log::open(dir, config()).unwrap();
    let append = |records: &[(Option<String>, Option<String>)], ts| {
        let mut b = kv_batch(records, ts, Compression::None);
        leader.append(&mut b, 1).unwrap();
    };
    append(&[kv("k0", "a0")], 1); // 0: superseded by 5
    append(&[kv("k1", "b"), kv("k2", "c")], 2); // 1..=2: k2 superseded by 7
    append(&[kv("k0", "a1")], 3); // 3: superseded by 5
    append(&[kv("k3", "d")], 4); // 4: superseded by 6, ends the segment
    leader.roll().unwrap();
    append(&[kv("k0", "a2"), kv("k3", "d2"), kv("k2", "c2")], 5); // 5..=7
    leader.compact(10, DELETE_RETENTION).unwrap();
    leader
}

#[test]
fn a_follower_copies_the_gaps_and_empty_batches_compaction_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let leader = compacted_leader(&dir.path().join("leader"));
    let shape: Vec<(i64, i64, i32)> = headers(&stored_batches(&leader))
        .iter()
        .map(|h| (h.base_offset, h.last_offset(), h.record_count))
        .collect();
    assert_eq!(shape, [(1, 2, 1), (4, 4, 0), (5, 7, 3)]);
    // Reads inside a gap return the next batch at or above the offset, as in Kafka.
    assert_eq!(
        BatchHeader::parse(&leader.read(0, 1, None).unwrap().records).base_offset,
        1
    );
    assert_eq!(
        BatchHeader::parse(&leader.read(3, 1, None).unwrap().records).base_offset,
        4
    );

    let fdir = dir.path().join("follower");
    let follower = Log::open(&fdir, config()).unwrap();
    // One request with everything, gaps from the log end and between batches included.
    let info = follower
        .append_replicated(&concat(&stored_batches(&leader)))
        .unwrap();
    assert_eq!(
        (info.base_offset, info.last_offset, info.batches),
        (1, 7, 3)
    );
    assert_copy(&leader, &follower, "copied");
    let follower = reopen_scanning_everything(follower, &fdir);
    assert_copy(&leader, &follower, "reopened");
}

#[test]
fn truncating_into_a_gap_ends_the_log_where_the_batch_before_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let leader = compacted_leader(&dir.path().join("leader"));
    let fdir = dir.path().join("follower");
    let follower = Log::open(&fdir, config()).unwrap();
    follower
        .append_replicated(&concat(&stored_batches(&leader)))
        .unwrap();
    // Offset 4 is the empty batch; the batch before it ends at 3, in front of a gap.
    follower.truncate_to(4).unwrap();
    assert_eq!(follower.offsets().log_end_offset, 3);
    // A roll there starts a segment where the last one's batches end, so a recovery
    // that scans every segment finds them continuing each other and keeps them all.
    follower.roll().unwrap();
    let mut rng = Rng::new(7);
    catch_up(&leader, &follower, &mut rng);
    assert_copy(&leader, &follower, "caught up");
    let follower = reopen_scanning_everything(follower, &fdir);
    assert_copy(&leader, &follower, "after a full recovery scan");
    // Into the gap at the start of the log: the log empties to its first segment's base.
    follower.truncate_to(1).unwrap();
    assert_eq!(follower.offsets().log_end_offset, 0);
    assert!(follower.leader_epochs().is_empty());
}

/// A batch of `records` records at `base_offset` in `epoch`, as a leader would send it.
fn batch_at(base_offset: i64, records: usize, epoch: i32) -> BytesMut {
    let recs: Vec<_> = (0..records).map(|i| kv(&format!("k{i}"), "v")).collect();
    let mut b = kv_batch(&recs, base_offset, Compression::None);
    weir_log::batch::patch_offset_and_epoch(&mut b, base_offset, epoch);
    b
}

#[test]
fn a_gap_past_32_bit_relative_offsets_rolls_to_a_segment_at_the_log_end() {
    const FAR: i64 = 3_000_000_000;
    let dir = tempfile::tempdir().unwrap();
    let follower = Log::open(dir.path(), config()).unwrap();
    // Offsets 0..=1, 3e9 (still within 2^32 of the segment at 0), 6e9..=6e9+1 (not).
    let mut request = batch_at(0, 2, 1);
    request.extend_from_slice(&batch_at(FAR, 1, 2));
    request.extend_from_slice(&batch_at(2 * FAR, 2, 3));
    let info = follower.append_replicated(&request).unwrap();
    assert_eq!((info.base_offset, info.last_offset), (0, 2 * FAR + 1));
    let bases: Vec<i64> = segment_files(dir.path()).iter().map(|s| s.0).collect();
    assert_eq!(
        bases,
        [0, FAR + 1],
        "rolled at the log end before the far batch"
    );

    let check = |log: &Log| {
        assert_eq!(log.offsets().log_end_offset, 2 * FAR + 2);
        let base_at =
            |offset| BatchHeader::parse(&log.read(offset, 1, None).unwrap().records).base_offset;
        assert_eq!(base_at(1), 0);
        assert_eq!(base_at(2), FAR);
        assert_eq!(base_at(FAR), FAR);
        assert_eq!(base_at(FAR + 1), 2 * FAR);
        assert_eq!(base_at(2 * FAR - 1), 2 * FAR);
        assert_eq!(base_at(2 * FAR + 1), 2 * FAR);
        assert_eq!(
            log.leader_epochs(),
            [(1, 0), (2, FAR), (3, 2 * FAR)].map(|(epoch, start_offset)| EpochEntry {
                epoch,
                start_offset
            })
        );
        assert_eq!(log.end_offset_for_epoch(2), Some((2, 2 * FAR)));
    };
    check(&follower);

    // Past 2^32 of the log end no segment can index it: refused, nothing written.
    let before = state(&follower, dir.path());
    let end = 2 * FAR + 2;
    match follower.append_replicated(&batch_at(end + (1 << 32), 1, 4)) {
        Err(AppendError::OffsetMismatch {
            problem: OffsetProblem::TooFar { segment_base },
            ..
        }) => assert_eq!(segment_base, end),
        other => panic!("expected TooFar, got {other:?}"),
    }
    assert_eq!(state(&follower, dir.path()), before);

    let follower = reopen_scanning_everything(follower, dir.path());
    check(&follower);
}

#[test]
fn a_diverged_follower_truncates_by_leader_epoch_then_copies_the_new_leader() {
    let dir = tempfile::tempdir().unwrap();
    let fdir = dir.path().join("follower");
    // The old leader A wrote epoch 1 (offsets 0..10) and epoch 2 (10..20); the follower F
    // copied all of it, broker B only epoch 1. B became leader in epoch 3 and wrote
    // 10..15, so F's epoch 2 diverged (KIP-101's example).
    let a = Log::open(dir.path().join("a"), config()).unwrap();
    for (epoch, n) in [(1, 5), (1, 5), (2, 4), (2, 6)] {
        a.append(&mut batch_at(0, n, 0), epoch).unwrap();
    }
    let b = Log::open(dir.path().join("b"), config()).unwrap();
    b.append_replicated(&concat(&stored_batches(&a))).unwrap();
    b.truncate_to(10).unwrap();
    b.append(&mut batch_at(0, 2, 0), 3).unwrap();
    b.append(&mut batch_at(0, 3, 0), 3).unwrap();
    let f = Log::open(&fdir, config()).unwrap();
    f.append_replicated(&concat(&stored_batches(&a))).unwrap();
    f.close().unwrap();

    // F asks B where its latest epoch, 2, ended: B never had it and answers with epoch 1,
    // which ended at 10 on both. The truncation runs on storage that then loses what
    // was not synced, so what the reopen shows is what truncate_to made durable.
    let storage = std::sync::Arc::new(FaultyStorage::new(FaultPlan::default()));
    let f = Log::open_with_storage(&fdir, config(), storage.clone()).unwrap();
    assert_eq!(f.end_offset_for_epoch(2), Some((2, 20)));
    assert_eq!(b.end_offset_for_epoch(2), Some((1, 10)));
    truncate_diverged(&b, &f);
    assert_eq!(f.offsets().log_end_offset, 10);
    storage.crash(|_, _| 0).unwrap();
    drop(f);
    let f = Log::open(&fdir, config()).unwrap();
    assert_eq!(f.offsets().log_end_offset, 10);
    assert_eq!(
        f.leader_epochs(),
        [EpochEntry {
            epoch: 1,
            start_offset: 0
        }]
    );
    assert_eq!(f.end_offset_for_epoch(2), Some((1, 10)));

    // Then F copies B's epoch 3 and answers OffsetsForLeaderEpoch as B does.
    let mut rng = Rng::new(3);
    catch_up(&b, &f, &mut rng);
    let expect = |log: &Log| {
        assert_eq!(log.end_offset_for_epoch(0), None);
        assert_eq!(log.end_offset_for_epoch(1), Some((1, 10)));
        assert_eq!(log.end_offset_for_epoch(2), Some((1, 10)));
        assert_eq!(log.end_offset_for_epoch(3), Some((3, 15)));
        assert_eq!(log.end_offset_for_epoch(4), Some((3, 15)));
    };
    expect(&b);
    expect(&f);
    assert_copy(&b, &f, "after the copy");
    f.close().unwrap();
    let f = Log::open(&fdir, config()).unwrap();
    expect(&f);
    assert_copy(&b, &f, "after a reopen");
}

#[test]
fn a_follower_reads_past_the_high_watermark_up_to_the_log_end() {
    let dir = tempfile::tempdir().unwrap();
    let (leader, _follower, batches) = leader_and_follower(dir.path());
    let high_watermark = 4;
    // A consumer's read stops at the high watermark; a follower's does not.
    assert!(
        leader
            .read(high_watermark, 1 << 20, Some(high_watermark))
            .unwrap()
            .records
            .is_empty()
    );
    let data = leader.read(high_watermark, 1 << 20, None).unwrap();
    assert_eq!(&data.records[..], &concat(&batches[2..])[..]);
    assert_eq!(data.next_offset, leader.offsets().log_end_offset);
}

#[test]
fn a_follower_takes_batches_larger_than_its_own_max_message_bytes() {
    // The leader accepted the batch (under its limit at the time, or re-compressed by
    // compaction); refusing it would stall the follower for good.
    let dir = tempfile::tempdir().unwrap();
    let leader = Log::open(dir.path().join("leader"), config()).unwrap();
    let big = "x".repeat(3000);
    leader
        .append(&mut kv_batch(&[kv("k", &big)], 1, Compression::None), 1)
        .unwrap();
    let small = LogConfig {
        max_message_bytes: 1024,
        ..config()
    };
    let follower = Log::open(dir.path().join("follower"), small).unwrap();
    follower
        .append_replicated(&concat(&stored_batches(&leader)))
        .unwrap();
    assert_copy(&leader, &follower, "copied");
}
