//! Idempotent producers as a log keeps them: a retried batch is answered with its
//! original offsets and not stored twice, across segment rolls, reopens, a follower's
//! copy and a truncation; a gap or a fenced epoch is refused with nothing written.

use crate::common;

use bytes::{Bytes, BytesMut};
use common::{read_all, values};
use weir_log::producers::SequenceError;
use weir_log::{AppendError, Compression, FlushPolicy, Log, LogConfig, Record, RecordBatchBuilder};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        index_max_bytes: 4096,
        flush: FlushPolicy::None,
        retention_age: None,
        ..LogConfig::default()
    }
}

/// A batch of `n` records `"{tag}-{i}"` from producer `pid` at `epoch`, first sequence `seq`.
fn batch(pid: i64, epoch: i16, seq: i32, tag: &str, n: usize) -> BytesMut {
    let mut b = RecordBatchBuilder::new(Compression::None)
        .producer_id(pid)
        .producer_epoch(epoch)
        .base_sequence(seq);
    for i in 0..n {
        b.push(&Record {
            key: None,
            value: Some(Bytes::from(format!("{tag}-{i}"))),
            headers: Vec::new(),
            timestamp: 1_000,
        });
    }
    b.build().expect("valid batch")
}

/// Appends `count` batches of 3 records for producer `pid` starting at sequence 0.
fn produce(log: &Log, pid: i64, count: i32) {
    for i in 0..count {
        let mut b = batch(pid, 0, i * 3, &format!("p{pid}b{i}"), 3);
        let info = log.append(&mut b, 0).unwrap();
        assert!(!info.duplicate);
    }
}

#[test]
fn a_retried_batch_gets_its_original_offsets_and_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config()).unwrap();
    let first = log.append(&mut batch(7, 0, 0, "a", 3), 0).unwrap();
    let second = log.append(&mut batch(7, 0, 3, "b", 2), 0).unwrap();
    assert_eq!((second.base_offset, second.last_offset), (3, 4));

    let retry = log.append(&mut batch(7, 0, 0, "a", 3), 0).unwrap();
    assert!(retry.duplicate);
    assert_eq!((retry.base_offset, retry.last_offset), (0, 2));
    assert_eq!(first.base_offset, retry.base_offset);
    assert_eq!(log.offsets().log_end_offset, 5);
    assert_eq!(
        values(&read_all(&log, 0)),
        ["a-0", "a-1", "a-2", "b-0", "b-1"]
    );
}

#[test]
fn a_gap_and_an_old_epoch_are_refused_with_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config()).unwrap();
    log.append(&mut batch(7, 1, 0, "a", 3), 0).unwrap();
    let gap = log.append(&mut batch(7, 1, 5, "x", 1), 0).unwrap_err();
    assert!(
        matches!(
            gap,
            AppendError::Sequence(SequenceError::OutOfOrder {
                expected: 3,
                got: 5,
                ..
            })
        ),
        "{gap}"
    );
    let fenced = log.append(&mut batch(7, 0, 3, "x", 1), 0).unwrap_err();
    assert!(
        matches!(fenced, AppendError::Sequence(SequenceError::Fenced { .. })),
        "{fenced}"
    );
    // Two batches of one producer in one request cannot be checked as one.
    let mut two = batch(7, 1, 3, "x", 1);
    two.extend_from_slice(&batch(7, 1, 4, "y", 1));
    assert!(matches!(
        log.append(&mut two, 0),
        Err(AppendError::IdempotentBatchNotAlone { batches: 2 })
    ));
    assert_eq!(log.offsets().log_end_offset, 3);
    // Plain batches are not checked at all.
    let mut plain = common::batch("plain", 2, 1_000);
    log.append(&mut plain, 0).unwrap();
    log.append(&mut plain, 0).unwrap();
    assert_eq!(log.offsets().log_end_offset, 7);
}

#[test]
fn the_state_survives_rolls_and_a_reopen_from_the_snapshot_plus_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config()).unwrap();
    // Many small segments: snapshots at each roll, then a tail after the last one.
    produce(&log, 1, 150);
    assert!(log.segment_count() > 3, "{}", log.segment_count());
    // The snapshot of the last roll, kept aside to stand for a crash after it.
    let snapshot = dir.path().join("producer-state.checkpoint");
    let at_roll = std::fs::read(&snapshot).unwrap();
    produce(&log, 2, 7);
    let end = log.offsets().log_end_offset;
    drop(log);
    // Reopen from the roll's snapshot plus the batches after it, and with no snapshot
    // at all (the whole log is read): the same state either way.
    for restore in [Some(at_roll), None] {
        match restore {
            Some(bytes) => std::fs::write(&snapshot, bytes).unwrap(),
            None => std::fs::remove_file(&snapshot).unwrap(),
        }
        let log = Log::open(dir.path(), config()).unwrap();
        assert_eq!(log.producer_count(), 2);
        for (pid, last) in [(1, 149), (2, 6)] {
            let mut retry = batch(pid, 0, last * 3, &format!("p{pid}b{last}"), 3);
            assert!(log.append(&mut retry, 0).unwrap().duplicate);
        }
        assert!(log.append(&mut batch(1, 0, 3, "old", 3), 0).is_err());
        log.close().unwrap();
    }

    let log = Log::open(dir.path(), config()).unwrap();
    assert_eq!(log.producer_count(), 2);
    let retry = log
        .append(&mut batch(1, 0, 149 * 3, "p1b149", 3), 0)
        .unwrap();
    assert!(retry.duplicate);
    assert_eq!(retry.last_offset, 150 * 3 - 1);
    let next = log.append(&mut batch(2, 0, 7 * 3, "p2b7", 3), 0).unwrap();
    assert!(!next.duplicate);
    assert_eq!(next.base_offset, end);
    assert!(log.append(&mut batch(2, 0, 99, "gap", 1), 0).is_err());
    log.close().unwrap();

    // A clean close leaves a snapshot at the log end.
    let log = Log::open(dir.path(), config()).unwrap();
    let retry = log.append(&mut batch(2, 0, 7 * 3, "p2b7", 3), 0).unwrap();
    assert!(retry.duplicate);
    assert_eq!(retry.base_offset, end);
}

#[test]
fn a_follower_keeps_the_state_it_copies_and_forgets_what_it_truncates() {
    let leader_dir = tempfile::tempdir().unwrap();
    let follower_dir = tempfile::tempdir().unwrap();
    let leader = Log::open(leader_dir.path(), config()).unwrap();
    let follower = Log::open(follower_dir.path(), config()).unwrap();
    produce(&leader, 5, 4); // offsets 0..12
    let data = leader.read(0, 1 << 20, None).unwrap();
    follower.append_replicated(&data.records).unwrap();
    assert_eq!(follower.offsets().log_end_offset, 12);

    // The follower becomes leader: a retry of the producer's last batch is a duplicate.
    let retry = follower.append(&mut batch(5, 0, 9, "p5b3", 3), 1).unwrap();
    assert!(retry.duplicate);
    assert_eq!((retry.base_offset, retry.last_offset), (9, 11));

    // Had the last batch been cut (it was never committed), its retry is written anew.
    follower.truncate_to(9).unwrap();
    let rewritten = follower.append(&mut batch(5, 0, 9, "p5b3", 3), 1).unwrap();
    assert!(!rewritten.duplicate);
    assert_eq!(rewritten.base_offset, 9);
    assert_eq!(read_all(&follower, 0).len(), 12);

    // And after a reopen the truncated history stays forgotten.
    follower.truncate_to(6).unwrap();
    drop(follower);
    let follower = Log::open(follower_dir.path(), config()).unwrap();
    let again = follower.append(&mut batch(5, 0, 6, "p5b2", 3), 2).unwrap();
    assert!(!again.duplicate);
    assert_eq!(again.base_offset, 6);
}

#[test]
fn idle_producers_expire_with_retention() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        producer_id_expiration: std::time::Duration::from_secs(60),
        ..config()
    };
    let log = Log::open(dir.path(), config).unwrap();
    produce(&log, 1, 1); // timestamp 1_000 ms
    log.apply_retention(30_000).unwrap();
    assert_eq!(log.producer_count(), 1);
    log.apply_retention(62_000).unwrap();
    assert_eq!(log.producer_count(), 0);
    // Forgotten: it may start over at any sequence.
    assert!(log.append(&mut batch(1, 0, 40, "late", 1), 0).is_ok());
}

/// A batch refused for want of space, and the producer's next ones already on their way
/// (librdkafka keeps up to five requests in flight per partition): each later one is
/// refused for space as well, not as out of order, until the refused one is retried, and
/// then all go in, in order, once each. An out-of-order answer there makes librdkafka
/// renumber every message it holds unacknowledged under a new epoch, which wrote messages
/// of other partitions twice in the soak (librdkafka issue 4953). A producer the log has
/// no state for alike: its second batch is not written before its refused first.
#[test]
fn batches_behind_one_refused_for_space_are_refused_the_same_way_until_its_retry() {
    let dir = tempfile::tempdir().unwrap();
    let storage = weir_log::storage::FaultyStorage::default();
    let log =
        Log::open_with_storage(dir.path(), config(), std::sync::Arc::new(storage.clone())).unwrap();
    log.append(&mut batch(7, 0, 0, "a", 3), 0).unwrap();
    storage.fill(true);
    for (pid, seq) in [(7, 3), (8, 0)] {
        let refused = log.append(&mut batch(pid, 0, seq, "b", 1), 0).unwrap_err();
        assert!(refused.is_storage_full(), "{refused:?}");
    }
    storage.fill(false);
    for (pid, seq) in [(7, 4), (8, 1)] {
        let behind = log.append(&mut batch(pid, 0, seq, "c", 1), 0).unwrap_err();
        assert!(behind.is_storage_full(), "{behind:?}");
    }
    for (pid, seq, tag) in [(7, 3, "b"), (7, 4, "c"), (8, 0, "b"), (8, 1, "c")] {
        let info = log.append(&mut batch(pid, 0, seq, tag, 1), 0).unwrap();
        assert!(!info.duplicate);
    }
    // A gap that no refusal explains is still out of order.
    let gap = log.append(&mut batch(7, 0, 9, "d", 1), 0).unwrap_err();
    assert!(
        matches!(gap, AppendError::Sequence(SequenceError::OutOfOrder { .. })),
        "{gap:?}"
    );
    assert_eq!(
        values(&read_all(&log, 0)),
        ["a-0", "a-1", "a-2", "b-0", "c-0", "b-0", "c-0"]
    );
}
