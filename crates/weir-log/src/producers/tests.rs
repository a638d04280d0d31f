//! The producers' state machine against hand-built batch headers: sequences, epochs,
//! transactions, expiry and the snapshot codec.

use super::*;

impl ProducerStates {
    fn record_data(&mut self, h: &BatchHeader) {
        assert_eq!(self.record(h, None), None);
    }
}

/// A marker's record: how it ends the transaction, from a coordinator of `epoch`.
fn ended(control: ControlType, coordinator_epoch: i32) -> Option<MarkerRecord> {
    Some(MarkerRecord {
        control,
        coordinator_epoch,
    })
}

fn txn(pid: i64, epoch: i16, seq: i32, records: i32, base_offset: i64) -> BatchHeader {
    BatchHeader {
        attributes: 0x10,
        ..header(pid, epoch, seq, records, base_offset)
    }
}

fn marker(pid: i64, epoch: i16, offset: i64) -> BatchHeader {
    BatchHeader {
        attributes: 0x30,
        base_sequence: -1,
        ..header(pid, epoch, -1, 1, offset)
    }
}

#[test]
fn a_transaction_opens_at_its_first_batch_and_a_marker_closes_it() {
    let mut s = ProducerStates::default();
    assert_eq!(s.first_unstable_offset(), None);
    s.record_data(&txn(7, 0, 0, 2, 10));
    s.record_data(&txn(8, 0, 0, 1, 12));
    s.record_data(&txn(7, 0, 2, 3, 13));
    assert_eq!(s.first_unstable_offset(), Some(10));
    assert_eq!(s.summaries()[0].current_txn_start_offset, Some(10));
    assert_eq!(
        s.ongoing_transactions(),
        [
            OngoingTxn {
                producer_id: 7,
                producer_epoch: 0,
                first_offset: 10
            },
            OngoingTxn {
                producer_id: 8,
                producer_epoch: 0,
                first_offset: 12
            },
        ]
    );
    assert_eq!(
        s.record(&marker(7, 0, 16), ended(ControlType::Commit, 0)),
        Some(CompletedTxn {
            producer_id: 7,
            first_offset: 10,
            last_offset: 16,
            aborted: false
        })
    );
    assert_eq!(s.first_unstable_offset(), Some(12));
    assert_eq!(
        s.record(&marker(8, 0, 17), ended(ControlType::Abort, 0)),
        Some(CompletedTxn {
            producer_id: 8,
            first_offset: 12,
            last_offset: 17,
            aborted: true
        })
    );
    assert_eq!(s.first_unstable_offset(), None);
    // A marker with nothing ongoing ends nothing; the next batch opens a new one.
    assert_eq!(
        s.record(&marker(8, 0, 18), ended(ControlType::Abort, 0)),
        None
    );
    s.record_data(&txn(7, 0, 5, 1, 19));
    assert_eq!(s.first_unstable_offset(), Some(19));
    // A plain batch of another producer opens nothing.
    s.record_data(&header(9, 0, 0, 1, 20));
    assert_eq!(s.ongoing_transactions().len(), 1);
}

#[test]
fn a_marker_of_an_older_epoch_is_fenced_and_a_newer_one_restarts_the_sequence() {
    let mut s = ProducerStates::default();
    s.record_data(&txn(7, 3, 0, 2, 0));
    assert_eq!(
        s.check_marker(7, 2, 0),
        Err(SequenceError::Fenced {
            producer_id: 7,
            epoch: 2,
            current_epoch: 3
        })
    );
    assert_eq!(s.check_marker(7, 3, 0), Ok(()));
    assert_eq!(
        s.check_marker(99, 0, 0),
        Ok(()),
        "an unknown producer is not fenced"
    );
    // KIP-890: the coordinator ends the transaction with the epoch bumped.
    assert!(
        s.record(&marker(7, 4, 2), ended(ControlType::Commit, 0))
            .is_some()
    );
    assert!(matches!(
        s.check(&txn(7, 4, 2, 1, 3), None),
        Err(SequenceError::OutOfOrder { expected: 0, .. })
    ));
    assert_eq!(
        s.check(&txn(7, 4, 0, 1, 3), None),
        Ok(SequenceCheck::Append)
    );
    assert!(matches!(
        s.check(&txn(7, 3, 2, 1, 3), None),
        Err(SequenceError::Fenced { .. })
    ));
    assert_eq!(s.summaries()[0].last_sequence, -1);
}

#[test]
fn a_marker_from_an_older_coordinator_is_fenced() {
    let mut s = ProducerStates::default();
    s.record_data(&txn(7, 0, 0, 1, 0));
    assert_eq!(
        s.check_marker(7, 0, 3),
        Ok(()),
        "no marker yet: any coordinator"
    );
    assert!(
        s.record(&marker(7, 0, 1), ended(ControlType::Commit, 3))
            .is_some()
    );
    // The producer's next transaction, at the same epoch (transaction version 1).
    s.record_data(&txn(7, 0, 1, 1, 2));
    assert_eq!(
        s.check_marker(7, 0, 2),
        Err(SequenceError::CoordinatorFenced {
            producer_id: 7,
            coordinator_epoch: 2,
            current: 3
        }),
        "a late marker of the coordinator before the failover would end it"
    );
    assert_eq!(s.check_marker(7, 0, 3), Ok(()));
    assert_eq!(s.check_marker(7, 0, 4), Ok(()));
    // The coordinator epoch survives a snapshot; a newer coordinator's marker raises it.
    let (_, mut back) = ProducerStates::decode(&s.encode(3)).unwrap();
    assert_eq!(back, s);
    assert!(
        back.record(&marker(7, 0, 3), ended(ControlType::Abort, 5))
            .is_some()
    );
    assert!(back.check_marker(7, 0, 4).is_err());
}

#[test]
fn a_producer_with_an_ongoing_transaction_does_not_expire() {
    let mut s = ProducerStates::default();
    s.record_data(&txn(1, 0, 0, 1, 0));
    s.record_data(&header(2, 0, 0, 1, 1));
    assert_eq!(s.expire(1_000_000, 10), 1);
    assert_eq!(s.first_unstable_offset(), Some(0));
}

#[test]
fn ongoing_transactions_survive_a_snapshot_and_an_old_snapshot_has_none() {
    let mut s = ProducerStates::default();
    s.record_data(&txn(7, 1, 0, 2, 10));
    s.record_data(&header(8, 0, 0, 1, 12));
    s.record_data(&txn(9, 0, 0, 1, 13));
    s.record(&marker(9, 1, 14), ended(ControlType::Abort, 2));
    let bytes = s.encode(15);
    let (offset, back) = ProducerStates::decode(&bytes).unwrap();
    assert_eq!((offset, &back), (15, &s));
    assert_eq!(back.first_unstable_offset(), Some(10));
    // The layout before coordinator epochs: without the last section (one epoch).
    let epochs = 4 + 12;
    let (_, before) = ProducerStates::decode(&bytes[..bytes.len() - epochs]).unwrap();
    assert_eq!(before.first_unstable_offset(), Some(10));
    assert_eq!(
        before.check_marker(9, 1, 0),
        Ok(()),
        "no coordinator epoch known"
    );
    assert!(back.check_marker(9, 1, 0).is_err());
    // The layout before transactions: the same bytes without the ongoing section.
    let old = &bytes[..bytes.len() - epochs - 4 - 16];
    let (_, old) = ProducerStates::decode(old).unwrap();
    assert_eq!(old.first_unstable_offset(), None);
    assert_eq!(old.len(), 3);
    // A coordinator epoch of a producer the snapshot does not hold is damage.
    let mut bad = bytes.clone();
    let at = bad.len() - 12;
    bad[at..at + 8].copy_from_slice(&77i64.to_be_bytes());
    assert_eq!(ProducerStates::decode(&bad), None);
    // An ongoing transaction of a producer the snapshot does not hold is damage.
    let mut bad = bytes.clone();
    let at = bad.len() - epochs - 16;
    bad[at..at + 8].copy_from_slice(&77i64.to_be_bytes());
    assert_eq!(ProducerStates::decode(&bad), None);
}

fn header(pid: i64, epoch: i16, seq: i32, records: i32, base_offset: i64) -> BatchHeader {
    BatchHeader {
        base_offset,
        batch_length: 0,
        partition_leader_epoch: 0,
        magic: 2,
        crc: 0,
        attributes: 0,
        last_offset_delta: records - 1,
        base_timestamp: 1_000,
        max_timestamp: 1_000 + base_offset,
        producer_id: pid,
        producer_epoch: epoch,
        base_sequence: seq,
        record_count: records,
    }
}

#[test]
fn summaries_show_each_producer_at_its_last_batch() {
    let mut s = ProducerStates::default();
    s.record_data(&header(9, 1, 0, 3, 10));
    s.record_data(&header(7, 0, 0, 2, 13));
    s.record_data(&header(9, 1, 3, 4, 15));
    assert_eq!(
        s.summaries(),
        [
            ProducerSummary {
                producer_id: 7,
                epoch: 0,
                last_sequence: 1,
                last_timestamp: 1_013,
                last_offset: 14,
                current_txn_start_offset: None,
                coordinator_epoch: -1,
            },
            ProducerSummary {
                producer_id: 9,
                epoch: 1,
                last_sequence: 6,
                last_timestamp: 1_015,
                last_offset: 18,
                current_txn_start_offset: None,
                coordinator_epoch: -1,
            },
        ]
    );
}

#[test]
fn the_next_sequence_appends_and_a_retry_of_a_kept_batch_is_a_duplicate() {
    let mut s = ProducerStates::default();
    let first = header(7, 0, 0, 3, 10);
    assert_eq!(s.check(&first, None), Ok(SequenceCheck::Append));
    s.record_data(&first);
    let second = header(7, 0, 3, 2, 13);
    assert_eq!(s.check(&second, None), Ok(SequenceCheck::Append));
    s.record_data(&second);
    // Retries carry the same sequences; the offsets they would get do not matter.
    assert_eq!(
        s.check(&header(7, 0, 0, 3, 99), None),
        Ok(SequenceCheck::Duplicate {
            base_offset: 10,
            last_offset: 12
        })
    );
    assert_eq!(
        s.check(&header(7, 0, 3, 2, 99), None),
        Ok(SequenceCheck::Duplicate {
            base_offset: 13,
            last_offset: 14
        })
    );
}

#[test]
fn a_gap_or_an_overlap_is_out_of_order() {
    let mut s = ProducerStates::default();
    s.record_data(&header(7, 0, 0, 3, 0));
    let gap = s.check(&header(7, 0, 4, 1, 3), None);
    assert_eq!(
        gap,
        Err(SequenceError::OutOfOrder {
            producer_id: 7,
            epoch: 0,
            expected: 3,
            got: 4
        })
    );
    // Same first sequence, other length: not the batch that was written.
    assert!(matches!(
        s.check(&header(7, 0, 0, 2, 3), None),
        Err(SequenceError::OutOfOrder { expected: 3, .. })
    ));
}

#[test]
fn only_the_last_five_batches_are_recognised_as_duplicates() {
    let mut s = ProducerStates::default();
    for i in 0..6 {
        s.record_data(&header(7, 0, i, 1, i64::from(i)));
    }
    assert!(matches!(
        s.check(&header(7, 0, 0, 1, 9), None),
        Err(SequenceError::OutOfOrder { expected: 6, .. })
    ));
    assert!(matches!(
        s.check(&header(7, 0, 1, 1, 9), None),
        Ok(SequenceCheck::Duplicate { base_offset: 1, .. })
    ));
}

#[test]
fn an_older_epoch_is_fenced_and_a_newer_one_starts_at_zero() {
    let mut s = ProducerStates::default();
    s.record_data(&header(7, 3, 0, 2, 0));
    assert_eq!(
        s.check(&header(7, 2, 2, 1, 2), None),
        Err(SequenceError::Fenced {
            producer_id: 7,
            epoch: 2,
            current_epoch: 3
        })
    );
    assert!(matches!(
        s.check(&header(7, 4, 5, 1, 2), None),
        Err(SequenceError::OutOfOrder { expected: 0, .. })
    ));
    let bumped = header(7, 4, 0, 1, 2);
    assert_eq!(s.check(&bumped, None), Ok(SequenceCheck::Append));
    s.record_data(&bumped);
    assert!(matches!(
        s.check(&header(7, 3, 2, 1, 3), None),
        Err(SequenceError::Fenced {
            current_epoch: 4,
            ..
        })
    ));
}

#[test]
fn unknown_producers_and_batches_without_a_producer_are_not_checked() {
    let mut s = ProducerStates::default();
    assert_eq!(
        s.check(&header(9, 0, 42, 1, 0), None),
        Ok(SequenceCheck::Append)
    );
    let plain = header(-1, -1, -1, 4, 0);
    assert_eq!(s.check(&plain, None), Ok(SequenceCheck::Append));
    s.record_data(&plain);
    assert!(s.is_empty());
}

#[test]
fn sequences_wrap_after_i32_max() {
    let mut s = ProducerStates::default();
    let h = header(7, 0, i32::MAX - 1, 3, 0);
    s.record_data(&h);
    assert_eq!(last_seq(&h), 0);
    assert_eq!(
        s.check(&header(7, 0, 1, 1, 3), None),
        Ok(SequenceCheck::Append)
    );
}

#[test]
fn idle_producers_expire() {
    let mut s = ProducerStates::default();
    s.record_data(&header(1, 0, 0, 1, 0)); // max timestamp 1000
    s.record_data(&header(2, 0, 0, 1, 5_000)); // max timestamp 6000
    assert_eq!(s.expire(7_000, 2_000), 1);
    assert_eq!(s.len(), 1);
    assert_eq!(
        s.check(&header(2, 0, 0, 1, 9), None),
        Ok(SequenceCheck::Duplicate {
            base_offset: 5_000,
            last_offset: 5_000
        })
    );
}

#[test]
fn a_snapshot_round_trips_and_damage_is_refused() {
    let mut s = ProducerStates::default();
    for pid in 0..4 {
        for seq in 0..(pid as i32 + 3) {
            s.record_data(&header(
                pid,
                pid as i16,
                seq,
                2,
                pid * 100 + i64::from(seq) * 2,
            ));
        }
    }
    let bytes = s.encode(1234);
    assert_eq!(ProducerStates::decode(&bytes), Some((1234, s.clone())));
    assert_eq!(ProducerStates::decode(&bytes[..bytes.len() - 1]), None);
    let mut huge = bytes.clone();
    huge[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(ProducerStates::decode(&huge), None);
    let mut trailing = bytes;
    trailing.push(0);
    assert_eq!(ProducerStates::decode(&trailing), None);
}

#[test]
fn the_batch_that_opens_a_transaction_needs_a_standing_verification_guard() {
    let mut s = ProducerStates::default();
    let opening = txn(7, 0, 0, 1, 0);
    let first = s.begin_verification(7, 0);
    assert!(first.ask, "no transaction going: ask the coordinator");
    assert_eq!(
        s.begin_verification(7, 0),
        first,
        "a second request of the producer shares the guard"
    );
    assert_eq!(
        s.check(&opening, Some(first.guard + 1_000)),
        Err(SequenceError::NotVerified { producer_id: 7 })
    );
    assert_eq!(
        s.check(&opening, Some(first.guard)),
        Ok(SequenceCheck::Append)
    );
    s.record_data(&opening);
    // The transaction is going: nothing to ask; the guard holds while it goes on.
    let going = s.begin_verification(7, 0);
    assert!(!going.ask);
    assert_eq!(
        s.check(&txn(7, 0, 1, 1, 1), Some(going.guard)),
        Ok(SequenceCheck::Append)
    );
    s.record_data(&txn(7, 0, 1, 1, 1));
    s.record(&marker(7, 0, 2), ended(ControlType::Commit, 0));
    assert_eq!(
        s.check(&txn(7, 0, 2, 1, 3), Some(going.guard)),
        Err(SequenceError::NotVerified { producer_id: 7 }),
        "the transaction it was taken in has ended"
    );

    // The coordinator aborts (its timeout) between the verification and the append of
    // the producer's next transaction: the marker revokes the guard.
    let late = s.begin_verification(7, 0);
    assert!(late.ask);
    s.record(&marker(7, 0, 3), ended(ControlType::Abort, 0));
    assert_eq!(
        s.check(&txn(7, 0, 2, 1, 4), Some(late.guard)),
        Err(SequenceError::NotVerified { producer_id: 7 }),
        "it would open a transaction no coordinator knows of"
    );
    assert_eq!(s.first_unstable_offset(), None);
    // A newer epoch needs its own guard; a batch not verified here (None) is not checked.
    let newer = s.begin_verification(7, 1);
    assert_ne!(newer.guard, late.guard);
    assert_eq!(
        s.check(&txn(7, 1, 0, 1, 4), None),
        Ok(SequenceCheck::Append)
    );
}

#[test]
fn verification_guards_are_bounded() {
    let mut s = ProducerStates::default();
    for pid in 0..MAX_VERIFICATIONS as i64 + 10 {
        assert!(s.begin_verification(pid, 0).ask);
    }
    assert_eq!(s.verifying.len(), MAX_VERIFICATIONS);
}
