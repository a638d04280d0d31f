//! Transactions as a log keeps them: ongoing transactions and the first unstable offset,
//! markers (fenced by epoch), the aborted-transaction index across rolls, reopens,
//! truncation, retention, compaction and damage, a follower's copy, and a proptest of
//! random interleavings against a model.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use weir_log::producers::SequenceError;
use weir_log::storage::FaultyStorage;
use weir_log::txn_index::TXN_INDEX_ENTRY_BYTES;
use weir_log::{
    AbortedTxn, AppendError, Compression, FlushPolicy, Log, LogConfig, Record, RecordBatchBuilder,
};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 256,
        index_max_bytes: 4096,
        flush: FlushPolicy::None,
        retention_age: None,
        ..LogConfig::default()
    }
}

/// A transactional batch of one record keyed `key` from `pid` (epoch 0) at sequence `seq`.
fn txn_batch(pid: i64, seq: i32, key: &str, value: &str) -> BytesMut {
    let mut b = RecordBatchBuilder::new(Compression::None)
        .producer_id(pid)
        .producer_epoch(0)
        .base_sequence(seq)
        .transactional();
    b.push(&Record {
        key: Some(Bytes::from(key.to_string())),
        value: Some(Bytes::from(value.to_string())),
        headers: Vec::new(),
        timestamp: 1_000,
    });
    b.build().expect("valid batch")
}

fn plain_batch(key: &str, value: &str) -> BytesMut {
    let mut b = RecordBatchBuilder::new(Compression::None);
    b.push(&Record {
        key: Some(Bytes::from(key.to_string())),
        value: Some(Bytes::from(value.to_string())),
        headers: Vec::new(),
        timestamp: 1_000,
    });
    b.build().expect("valid batch")
}

fn aborted(pid: i64, first: i64, last: i64, lso: i64) -> AbortedTxn {
    AbortedTxn {
        producer_id: pid,
        first_offset: first,
        last_offset: last,
        last_stable_offset: lso,
    }
}

#[test]
fn markers_end_transactions_and_aborts_are_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config()).unwrap();
    log.append(&mut plain_batch("k", "plain"), 0).unwrap(); // 0
    log.append(&mut txn_batch(1, 0, "a", "1"), 0).unwrap(); // 1
    log.append(&mut txn_batch(2, 0, "b", "1"), 0).unwrap(); // 2
    log.append(&mut txn_batch(1, 1, "a", "2"), 0).unwrap(); // 3
    assert_eq!(log.first_unstable_offset(), Some(1));
    let commit = log.append_marker(1, 0, true, 5, 0).unwrap(); // 4
    assert_eq!(commit.base_offset, 4);
    assert_eq!(log.first_unstable_offset(), Some(2));
    log.append_marker(2, 0, false, 5, 0).unwrap(); // 5
    assert_eq!(log.first_unstable_offset(), None);
    assert_eq!(
        log.aborted_transactions(0, 6).unwrap(),
        [aborted(2, 2, 5, 6)]
    );
    assert_eq!(
        log.aborted_transactions(3, 4).unwrap(),
        [aborted(2, 2, 5, 6)]
    );
    assert_eq!(log.aborted_transactions(0, 2).unwrap(), []);
    assert_eq!(log.aborted_transactions(6, 6).unwrap(), []);

    // The marker is a control batch in Kafka's layout, readable like any batch.
    let data = log.read(5, 1 << 20, None).unwrap();
    let marker = weir_log::batch::control::TxnMarker::decode(&data.records).unwrap();
    assert_eq!(marker.control, weir_log::batch::control::ControlType::Abort);
    assert_eq!(marker.coordinator_epoch, 5);

    // A producer cannot send a control batch itself.
    let mut forged = BytesMut::from(&data.records[..]);
    assert!(matches!(
        log.append(&mut forged, 0),
        Err(AppendError::InvalidBatch { .. })
    ));
}

#[test]
fn a_marker_of_an_older_epoch_is_fenced_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config()).unwrap();
    let mut b = RecordBatchBuilder::new(Compression::None)
        .producer_id(9)
        .producer_epoch(3)
        .base_sequence(0)
        .transactional();
    b.push(&Record {
        key: None,
        value: Some(Bytes::from_static(b"v")),
        headers: Vec::new(),
        timestamp: 1,
    });
    log.append(&mut b.build().unwrap(), 0).unwrap();
    let err = log.append_marker(9, 2, true, 0, 0).unwrap_err();
    assert!(matches!(
        err,
        AppendError::Sequence(SequenceError::Fenced {
            epoch: 2,
            current_epoch: 3,
            ..
        })
    ));
    assert_eq!(log.offsets().log_end_offset, 1);
    assert_eq!(log.first_unstable_offset(), Some(0));
    // A bumped epoch (KIP-890) ends it.
    log.append_marker(9, 4, false, 0, 0).unwrap();
    assert_eq!(log.first_unstable_offset(), None);
}

#[test]
fn the_index_survives_rolls_reopens_and_a_lost_tail_and_follows_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected = Vec::new();
    {
        let log = Log::open(dir.path(), config()).unwrap();
        let mut seq = 0;
        for round in 0..30 {
            let first = log.offsets().log_end_offset;
            for i in 0..3 {
                log.append(&mut txn_batch(7, seq, &format!("k{i}"), "x"), 0)
                    .unwrap();
                seq += 1;
            }
            let abort = round % 2 == 0;
            let info = log.append_marker(7, 0, !abort, 1, 0).unwrap();
            if abort {
                expected.push(aborted(7, first, info.base_offset, info.base_offset + 1));
            }
        }
        assert!(log.segment_count() > 3, "rolls happened");
        assert_eq!(log.aborted_transactions(0, i64::MAX).unwrap(), expected);
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.iter().any(|n| n.ends_with(".txnindex")), "{names:?}");
    }
    let log = Log::open(dir.path(), config()).unwrap();
    assert_eq!(log.aborted_transactions(0, i64::MAX).unwrap(), expected);
    // An open transaction, then a truncation back into an aborted one's batches.
    log.append(&mut txn_batch(7, 90, "z", "open"), 0).unwrap();
    let fuo = log.offsets().log_end_offset - 1;
    assert_eq!(log.first_unstable_offset(), Some(fuo));
    let cut = expected[10];
    log.truncate_to(cut.last_offset).unwrap();
    assert_eq!(log.first_unstable_offset(), Some(cut.first_offset));
    let kept: Vec<AbortedTxn> = expected[..10].to_vec();
    assert_eq!(log.aborted_transactions(0, i64::MAX).unwrap(), kept);
    drop(log);
    let log = Log::open(dir.path(), config()).unwrap();
    assert_eq!(log.aborted_transactions(0, i64::MAX).unwrap(), kept);
    assert_eq!(log.first_unstable_offset(), Some(cut.first_offset));
}

#[test]
fn a_damaged_or_lost_index_is_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected = Vec::new();
    {
        let log = Log::open(dir.path(), config()).unwrap();
        for round in 0..20 {
            let first = log.offsets().log_end_offset;
            log.append(&mut txn_batch(3, round, "k", "v"), 0).unwrap();
            let info = log.append_marker(3, 0, false, 1, 0).unwrap();
            expected.push(aborted(3, first, info.base_offset, info.base_offset + 1));
        }
    }
    let mut indexes: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txnindex"))
        .collect();
    indexes.sort();
    assert!(indexes.len() >= 2);
    // A torn first index (closed, before the producer snapshot).
    let bytes = std::fs::read(&indexes[0]).unwrap();
    std::fs::write(&indexes[0], &bytes[..bytes.len() - 3]).unwrap();
    let log = Log::open(dir.path(), config()).unwrap();
    assert_eq!(log.aborted_transactions(0, i64::MAX).unwrap(), expected);
    drop(log);
    assert_eq!(
        std::fs::read(&indexes[0]).unwrap(),
        bytes,
        "rewritten whole"
    );
    // The producer snapshot lost: the tail is rebuilt from the batches.
    std::fs::remove_file(dir.path().join("producer-state.checkpoint")).unwrap();
    let last = indexes.last().unwrap();
    std::fs::remove_file(last).unwrap();
    let log = Log::open(dir.path(), config()).unwrap();
    assert_eq!(log.aborted_transactions(0, i64::MAX).unwrap(), expected);
}

#[test]
fn retention_deletes_an_index_with_its_segment() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config()).unwrap();
    for round in 0..20 {
        log.append(&mut txn_batch(3, round, "k", "v"), 0).unwrap();
        log.append_marker(3, 0, false, 1, 0).unwrap();
    }
    let count = |dir: &std::path::Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|e| e == "txnindex")
            })
            .count()
    };
    let before = count(dir.path());
    let start = log.delete_records_before(20).unwrap();
    assert!(count(dir.path()) < before);
    let left = log.aborted_transactions(start, i64::MAX).unwrap();
    assert!(left.iter().all(|a| a.last_offset >= start) && !left.is_empty());
}

#[test]
fn compaction_keeps_markers_ongoing_transactions_and_committed_values_over_aborted_ones() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config()).unwrap();
    log.append(&mut plain_batch("k", "committed"), 0).unwrap(); // 0
    log.append(&mut txn_batch(1, 0, "k", "aborted"), 0).unwrap(); // 1
    log.append_marker(1, 0, false, 0, 0).unwrap(); // 2
    log.append(&mut txn_batch(2, 0, "o", "ongoing-old"), 0)
        .unwrap(); // 3
    for i in 0..40 {
        log.append(&mut plain_batch(&format!("f{i}"), "filler"), 0)
            .unwrap();
    }
    log.append(&mut plain_batch("o", "newer"), 0).unwrap();
    log.roll().unwrap();
    log.compact(0, Duration::from_secs(3600)).unwrap();
    let values: BTreeMap<i64, Vec<u8>> = crate::common::read_all(&log, 0)
        .into_iter()
        .map(|s| (s.offset, s.value))
        .collect();
    assert_eq!(values.get(&0).map(Vec::as_slice), Some(&b"committed"[..]));
    assert_eq!(values.get(&3).map(Vec::as_slice), Some(&b"ongoing-old"[..]));
    // The marker is still there.
    let data = log.read(2, 1 << 20, Some(3)).unwrap();
    assert!(weir_log::BatchHeader::parse(&data.records).is_control());
    assert_eq!(
        log.aborted_transactions(0, 5).unwrap(),
        [aborted(1, 1, 2, 3)]
    );
}

#[test]
fn a_follower_copying_the_batches_knows_the_same_transactions() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = Log::open(a.path(), config()).unwrap();
    let follower = Log::open(b.path(), config()).unwrap();
    for round in 0..12 {
        log_round(&leader, round);
    }
    let mut offset = 0;
    loop {
        let data = leader.read(offset, 1 << 20, None).unwrap();
        if data.records.is_empty() {
            break;
        }
        follower.append_replicated(&data.records).unwrap();
        offset = data.next_offset;
    }
    assert_eq!(
        follower.aborted_transactions(0, i64::MAX).unwrap(),
        leader.aborted_transactions(0, i64::MAX).unwrap()
    );
    assert_eq!(
        follower.first_unstable_offset(),
        leader.first_unstable_offset()
    );
    assert_eq!(
        follower.ongoing_transactions(),
        leader.ongoing_transactions()
    );
}

fn log_round(log: &Log, round: i32) {
    log.append(&mut txn_batch(5, round, "k", "v"), 0).unwrap();
    if round % 3 != 2 {
        log.append_marker(5, 0, round % 3 == 0, 0, 0).unwrap();
    }
}

/// What the model of a log's transactions holds: every batch with its offsets.
#[derive(Debug, Clone, Copy)]
enum Written {
    Data { pid: i64, offset: i64 },
    Plain,
    Marker { pid: i64, offset: i64, commit: bool },
}

#[derive(Debug, Clone)]
enum Op {
    Txn(i64),
    Plain,
    Commit(i64),
    Abort(i64),
    Reopen,
    /// Truncate to the start of the n-th last batch (modulo the batches there are).
    Truncate(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1i64..4).prop_map(Op::Txn),
        2 => Just(Op::Plain),
        2 => (1i64..4).prop_map(Op::Commit),
        2 => (1i64..4).prop_map(Op::Abort),
        1 => Just(Op::Reopen),
        1 => (1usize..12).prop_map(Op::Truncate),
    ]
}

/// The model's first unstable offset and aborted transactions, replayed from the batches.
fn replay(written: &[(i64, Written)]) -> (Option<i64>, Vec<AbortedTxn>) {
    let mut ongoing: BTreeMap<i64, i64> = BTreeMap::new(); // pid -> first offset
    let mut aborted_txns = Vec::new();
    for (_, w) in written {
        match *w {
            Written::Data { pid, offset } => {
                ongoing.entry(pid).or_insert(offset);
            }
            Written::Plain => {}
            Written::Marker {
                pid,
                offset,
                commit,
            } => {
                if let Some(first) = ongoing.remove(&pid)
                    && !commit
                {
                    let lso = ongoing.values().min().copied().unwrap_or(offset + 1);
                    aborted_txns.push(aborted(pid, first, offset, lso));
                }
            }
        }
    }
    (ongoing.values().min().copied(), aborted_txns)
}

fn check(log: &Log, written: &[(i64, Written)], what: &str) -> Result<(), TestCaseError> {
    let (fuo, aborted_txns) = replay(written);
    prop_assert_eq!(log.first_unstable_offset(), fuo, "{}", what);
    prop_assert_eq!(
        log.aborted_transactions(0, i64::MAX).unwrap(),
        aborted_txns.clone(),
        "{}",
        what
    );
    // A range query answers the entries that overlap it.
    let end = log.offsets().log_end_offset;
    let (lo, hi) = (end / 3, 2 * end / 3);
    let mut want: Vec<AbortedTxn> = aborted_txns
        .iter()
        .filter(|a| a.last_offset >= lo && a.first_offset < hi)
        .copied()
        .collect();
    let got = log.aborted_transactions(lo, hi).unwrap();
    // The query may stop early, never miss one.
    want.retain(|a| !got.contains(a));
    prop_assert!(want.is_empty(), "{}: missing {:?}", what, want);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random interleavings of several producers' transactional batches, commits, aborts,
    /// plain batches, reopens and truncations: the first unstable offset and the aborted
    /// transactions are the model's after every step, and the last stable offset (with
    /// the high watermark at the log end) never moves back except by a truncation.
    #[test]
    fn transactions_match_the_model(ops in proptest::collection::vec(op(), 1..120)) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Some(Log::open(dir.path(), config()).unwrap());
        let mut written: Vec<(i64, Written)> = Vec::new();
        let mut last_lso = 0;
        for (step, op) in ops.iter().enumerate() {
            let l = log.as_ref().unwrap();
            let end = l.offsets().log_end_offset;
            let mut truncated = false;
            match *op {
                Op::Txn(pid) => {
                    let seq = written
                        .iter()
                        .filter(|(_, w)| matches!(w, Written::Data { pid: p, .. } if *p == pid))
                        .count() as i32;
                    let info = l.append(&mut txn_batch(pid, seq, "k", "v"), 0).unwrap();
                    prop_assert_eq!(info.base_offset, end);
                    written.push((end, Written::Data { pid, offset: end }));
                }
                Op::Plain => {
                    l.append(&mut plain_batch("k", "v"), 0).unwrap();
                    written.push((end, Written::Plain));
                }
                Op::Commit(pid) | Op::Abort(pid) => {
                    let commit = matches!(op, Op::Commit(_));
                    l.append_marker(pid, 0, commit, 0, 0).unwrap();
                    written.push((end, Written::Marker { pid, offset: end, commit }));
                }
                Op::Reopen => {
                    drop(log.take());
                    log = Some(Log::open(dir.path(), config()).unwrap());
                }
                Op::Truncate(n) => {
                    if !written.is_empty() {
                        let at = written.len() - 1 - (n % written.len());
                        let to = written[at].0;
                        l.truncate_to(to).unwrap();
                        written.truncate(at);
                        truncated = true;
                    }
                }
            }
            let l = log.as_ref().unwrap();
            check(l, &written, &format!("step {step} {op:?}"))?;
            let end = l.offsets().log_end_offset;
            let lso = l.first_unstable_offset().unwrap_or(end).min(end);
            if !truncated {
                prop_assert!(lso >= last_lso, "step {}: LSO moved back from {} to {}", step, last_lso, lso);
            }
            last_lso = lso;
        }
        drop(log.take());
        let log = Log::open(dir.path(), config()).unwrap();
        check(&log, &written, "after the last reopen")?;
    }
}

/// A disk with room for an abort marker but not for its aborted-transaction index entry
/// (the soak's finding: the entry, written after the marker, ran out of space and failed
/// the log, whose reopen on the still-full disk took the broker's data directory
/// offline): the marker is refused as storage-full with the log healthy and nothing
/// written, and once space is freed it goes through, indexed once. On a follower's copy
/// alike.
#[test]
fn a_full_disk_refuses_an_abort_marker_without_failing_the_log() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader_disk = FaultyStorage::default();
    let leader = Log::open_with_storage(a.path(), config(), Arc::new(leader_disk.clone())).unwrap();
    leader.append(&mut txn_batch(1, 0, "a", "1"), 0).unwrap(); // 0
    let marker_bytes = {
        let scratch = tempfile::tempdir().unwrap();
        let log = Log::open(scratch.path(), config()).unwrap();
        log.append(&mut txn_batch(1, 0, "a", "1"), 0).unwrap();
        log.append_marker(1, 0, false, 5, 0).unwrap().bytes as u64
    };
    assert!(marker_bytes > TXN_INDEX_ENTRY_BYTES as u64);
    // Room for the marker and not for both.
    leader_disk.leave_free(marker_bytes);
    let refused = leader.append_marker(1, 0, false, 5, 0).unwrap_err();
    assert!(refused.is_storage_full(), "{refused:?}");
    assert_eq!(leader.failure(), None, "a full disk failed the log");
    assert_eq!(leader.offsets().log_end_offset, 1, "nothing written");
    assert_eq!(leader.first_unstable_offset(), Some(0));
    leader_disk.fill(false);
    leader.append_marker(1, 0, false, 5, 0).unwrap(); // 1
    assert_eq!(leader.first_unstable_offset(), None);
    assert_eq!(
        leader.aborted_transactions(0, i64::MAX).unwrap(),
        [aborted(1, 0, 1, 2)]
    );

    let follower_disk = FaultyStorage::default();
    let follower =
        Log::open_with_storage(b.path(), config(), Arc::new(follower_disk.clone())).unwrap();
    let data = leader.read(0, 1 << 20, None).unwrap();
    let batch_bytes = data.records.len() as u64 - marker_bytes;
    follower_disk.leave_free(batch_bytes + marker_bytes);
    let refused = follower.append_replicated(&data.records).unwrap_err();
    assert!(refused.is_storage_full(), "{refused:?}");
    assert_eq!(
        follower.failure(),
        None,
        "a full disk failed the follower's log"
    );
    assert_eq!(follower.offsets().log_end_offset, 0, "nothing written");
    follower_disk.fill(false);
    follower.append_replicated(&data.records).unwrap();
    assert_eq!(
        follower.aborted_transactions(0, i64::MAX).unwrap(),
        [aborted(1, 0, 1, 2)]
    );
    follower.close().unwrap();
    let reopened = Log::open(b.path(), config()).unwrap();
    assert_eq!(
        reopened.aborted_transactions(0, i64::MAX).unwrap(),
        [aborted(1, 0, 1, 2)]
    );
}
