//! The coordinator's rules one at a time, with a shell that replicates at once (or holds
//! appends and markers back when a test asks it to).

use super::api::*;
use super::coordinator::*;
use super::records::TxnLogRecord;
use super::*;

struct Shell {
    c: TxnCoordinator,
    log: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    next_pid: i64,
    replicate: bool,
    write_markers: bool,
    held_appends: Vec<AppendId>,
    markers: Vec<Command>,
    replies: Vec<(RequestId, Reply)>,
    now: i64,
    req: u64,
}

const TX: &str = "tx-1";

impl Shell {
    fn new() -> Shell {
        let mut c = TxnCoordinator::new(TxnConfig::default(), 1);
        assert!(c.finish_loading(0).is_empty());
        Shell {
            c,
            log: Vec::new(),
            next_pid: 1000,
            replicate: true,
            write_markers: true,
            held_appends: Vec::new(),
            markers: Vec::new(),
            replies: Vec::new(),
            now: 10,
            req: 0,
        }
    }

    fn run(&mut self, mut cmds: Vec<Command>) {
        while let Some(cmd) = (!cmds.is_empty()).then(|| cmds.remove(0)) {
            match cmd {
                Command::Append { id, key, value } => {
                    self.log.push((key, value));
                    if self.replicate {
                        cmds.extend(self.c.on_appended(id, Ok(()), self.now));
                    } else {
                        self.held_appends.push(id);
                    }
                }
                Command::AllocateProducerId { id } => {
                    self.next_pid += 1;
                    cmds.extend(self.c.on_producer_id(id, Ok(self.next_pid), self.now));
                }
                Command::WriteMarkers {
                    id, ref partitions, ..
                } => {
                    let outcomes = partitions
                        .iter()
                        .map(|p| (p.clone(), MarkerOutcome::Written))
                        .collect();
                    self.markers.push(cmd.clone());
                    if self.write_markers {
                        cmds.extend(self.c.on_markers(id, outcomes, self.now));
                    }
                }
                Command::Reply { request, reply } => self.replies.push((request, reply)),
            }
        }
    }

    fn next_req(&mut self) -> RequestId {
        self.req += 1;
        RequestId(self.req)
    }

    fn reply(&mut self, r: RequestId) -> Option<Reply> {
        let at = self.replies.iter().position(|(q, _)| *q == r)?;
        Some(self.replies.remove(at).1)
    }

    fn init(&mut self, expected: Option<ProducerIdAndEpoch>) -> Option<Reply> {
        let r = self.next_req();
        let cmds = self.c.init_producer_id(
            r,
            InitProducerId {
                transactional_id: TX.into(),
                timeout_ms: 60_000,
                expected,
            },
            self.now,
        );
        self.run(cmds);
        self.reply(r)
    }

    fn init_ok(&mut self) -> ProducerIdAndEpoch {
        match self.init(None) {
            Some(Reply::InitProducerId(Ok(p))) => p,
            other => panic!("init answered {other:?}"),
        }
    }

    fn add(&mut self, p: ProducerIdAndEpoch, parts: &[i32], verify_only: bool) -> Option<Reply> {
        let r = self.next_req();
        let add = AddPartitions {
            transactional_id: TX.into(),
            producer_id: p.producer_id,
            producer_epoch: p.epoch,
            partitions: parts.iter().map(|i| TopicPartition::new("t", *i)).collect(),
            verify_only,
        };
        let cmds = self.c.add_partitions(r, add, self.now);
        self.run(cmds);
        self.reply(r)
    }

    fn end(
        &mut self,
        p: ProducerIdAndEpoch,
        result: TxnResult,
        version: TxnVersion,
    ) -> Option<Reply> {
        let r = self.next_req();
        let end = EndTxn {
            transactional_id: TX.into(),
            producer_id: p.producer_id,
            producer_epoch: p.epoch,
            result,
            version,
        };
        let cmds = self.c.end_txn(r, end, self.now);
        self.run(cmds);
        self.reply(r)
    }

    fn state(&self) -> TxnState {
        self.c.metadata(TX).unwrap().state
    }
}

#[test]
fn a_new_id_gets_a_fresh_producer_id_at_epoch_0() {
    let mut s = Shell::new();
    assert_eq!(
        s.init_ok(),
        ProducerIdAndEpoch {
            producer_id: 1001,
            epoch: 0
        }
    );
    // Again: the same producer id, the epoch bumped (the previous producer is fenced).
    assert_eq!(
        s.init_ok(),
        ProducerIdAndEpoch {
            producer_id: 1001,
            epoch: 1
        }
    );
    assert_eq!(s.log.len(), 2);
}

#[test]
fn nothing_is_answered_before_the_record_replicates() {
    let mut s = Shell::new();
    s.replicate = false;
    assert_eq!(s.init(None), None);
    // Another change of the same id waits.
    assert_eq!(
        s.init(None),
        Some(Reply::InitProducerId(Err(TxnError::ConcurrentTransactions)))
    );
    let id = s.held_appends.remove(0);
    let cmds = s.c.on_appended(id, Ok(()), s.now);
    assert!(matches!(
        &cmds[..],
        [Command::Reply {
            reply: Reply::InitProducerId(Ok(_)),
            ..
        }]
    ));
}

#[test]
fn a_failed_append_changes_nothing_and_says_why() {
    let mut s = Shell::new();
    let p = s.init_ok();
    s.replicate = false;
    assert_eq!(s.add(p, &[0], false), None);
    let id = s.held_appends.remove(0);
    let cmds = s.c.on_appended(id, Err(AppendFailure::Unavailable), s.now);
    assert!(matches!(
        &cmds[..],
        [Command::Reply {
            reply: Reply::AddPartitions(Err(TxnError::CoordinatorNotAvailable)),
            ..
        }]
    ));
    assert_eq!(s.state(), TxnState::Empty);
}

#[test]
fn tv2_commit_bumps_the_epoch_writes_markers_and_a_retry_is_idempotent() {
    let mut s = Shell::new();
    let p = s.init_ok();
    assert_eq!(s.add(p, &[0, 1], false), Some(Reply::AddPartitions(Ok(()))));
    // Already in: answered without an append.
    let before = s.log.len();
    assert_eq!(s.add(p, &[1], false), Some(Reply::AddPartitions(Ok(()))));
    assert_eq!(s.log.len(), before);
    let next = ProducerIdAndEpoch {
        epoch: p.epoch + 1,
        ..p
    };
    assert_eq!(
        s.end(p, TxnResult::Commit, TxnVersion::TV2),
        Some(Reply::EndTxn(Ok(next)))
    );
    match &s.markers[..] {
        [
            Command::WriteMarkers {
                producer_epoch,
                result: TxnResult::Commit,
                partitions,
                coordinator_epoch: 1,
                ..
            },
        ] => {
            assert_eq!(*producer_epoch, next.epoch);
            assert_eq!(partitions.len(), 2);
        }
        other => panic!("markers {other:?}"),
    }
    assert_eq!(s.state(), TxnState::CompleteCommit);
    // The client did not hear the answer and retries with its old epoch.
    assert_eq!(
        s.end(p, TxnResult::Commit, TxnVersion::TV2),
        Some(Reply::EndTxn(Ok(next)))
    );
    assert_eq!(
        s.end(p, TxnResult::Abort, TxnVersion::TV2),
        Some(Reply::EndTxn(Err(TxnError::InvalidTxnState)))
    );
    // The next transaction uses the bumped epoch; the old one is fenced.
    assert_eq!(
        s.add(p, &[2], false),
        Some(Reply::AddPartitions(Err(TxnError::ProducerFenced)))
    );
    assert_eq!(s.add(next, &[2], false), Some(Reply::AddPartitions(Ok(()))));
}

#[test]
fn tv0_end_keeps_the_epoch_and_wrong_states_are_refused() {
    let mut s = Shell::new();
    let p = s.init_ok();
    assert_eq!(
        s.end(p, TxnResult::Commit, TxnVersion::TV0),
        Some(Reply::EndTxn(Err(TxnError::InvalidTxnState)))
    );
    s.add(p, &[0], false);
    s.write_markers = false;
    assert_eq!(
        s.end(p, TxnResult::Abort, TxnVersion::TV0),
        Some(Reply::EndTxn(Ok(p)))
    );
    assert_eq!(s.state(), TxnState::PrepareAbort);
    assert_eq!(
        s.end(p, TxnResult::Abort, TxnVersion::TV0),
        Some(Reply::EndTxn(Err(TxnError::ConcurrentTransactions)))
    );
    // While the markers are written every EndTxn waits, whatever it asks (KAFKA-18464).
    assert_eq!(
        s.end(p, TxnResult::Commit, TxnVersion::TV0),
        Some(Reply::EndTxn(Err(TxnError::ConcurrentTransactions)))
    );
    let Command::WriteMarkers { id, .. } = s.markers[0] else {
        unreachable!()
    };
    let written = vec![(TopicPartition::new("t", 0), MarkerOutcome::Written)];
    let cmds = s.c.on_markers(id, written, s.now);
    s.run(cmds);
    assert_eq!(s.state(), TxnState::CompleteAbort);
    assert_eq!(
        s.end(p, TxnResult::Commit, TxnVersion::TV0),
        Some(Reply::EndTxn(Err(TxnError::InvalidTxnState)))
    );
    assert_eq!(
        s.end(p, TxnResult::Abort, TxnVersion::TV0),
        Some(Reply::EndTxn(Ok(p)))
    );
    let stale = ProducerIdAndEpoch {
        epoch: p.epoch - 1,
        ..p
    };
    assert_eq!(
        s.end(stale, TxnResult::Abort, TxnVersion::TV0),
        Some(Reply::EndTxn(Err(TxnError::ProducerFenced)))
    );
    let other = ProducerIdAndEpoch {
        producer_id: 5,
        ..p
    };
    assert_eq!(
        s.end(other, TxnResult::Abort, TxnVersion::TV0),
        Some(Reply::EndTxn(Err(TxnError::InvalidProducerIdMapping)))
    );
}

#[test]
fn an_add_waits_for_the_previous_transaction_to_complete_or_for_its_bound() {
    let mut s = Shell::new();
    let p = s.init_ok();
    s.add(p, &[0], false);
    s.write_markers = false;
    assert_eq!(
        s.end(p, TxnResult::Commit, TxnVersion::TV0),
        Some(Reply::EndTxn(Ok(p)))
    );
    // The next transaction's first add, while the commit's marker is being written:
    // not answered yet (Kafka answers CONCURRENT_TRANSACTIONS and the client retries).
    let r = s.next_req();
    let add = |partition| AddPartitions {
        transactional_id: TX.into(),
        producer_id: p.producer_id,
        producer_epoch: p.epoch,
        partitions: vec![TopicPartition::new("t", partition)],
        verify_only: false,
    };
    let cmds = s.c.add_partitions(r, add(1), s.now);
    s.run(cmds);
    assert_eq!(s.reply(r), None);
    // A tick before the bound changes nothing.
    let cmds = s.c.tick(s.now + 10);
    s.run(cmds);
    assert_eq!(s.reply(r), None);
    // The marker is written, CompleteCommit replicates: the add goes on as if it came now.
    let Command::WriteMarkers { id, .. } = s.markers[0] else {
        unreachable!()
    };
    let written = vec![(TopicPartition::new("t", 0), MarkerOutcome::Written)];
    let cmds = s.c.on_markers(id, written, s.now);
    s.run(cmds);
    assert_eq!(s.reply(r), Some(Reply::AddPartitions(Ok(()))));
    assert_eq!(s.state(), TxnState::Ongoing);
    let meta = s.c.metadata(TX).unwrap();
    assert_eq!(
        meta.partitions.iter().collect::<Vec<_>>(),
        [&TopicPartition::new("t", 1)],
        "the new transaction holds only its own partition"
    );

    // A completion that does not come: after ADD_WAIT_MS the add hears
    // CONCURRENT_TRANSACTIONS, the client's cue to retry.
    s.markers.clear();
    assert_eq!(
        s.end(p, TxnResult::Abort, TxnVersion::TV0),
        Some(Reply::EndTxn(Ok(p)))
    );
    let r = s.next_req();
    let cmds = s.c.add_partitions(r, add(2), s.now);
    s.run(cmds);
    assert_eq!(s.reply(r), None);
    let cmds = s.c.tick(s.now + ADD_WAIT_MS);
    s.run(cmds);
    assert_eq!(
        s.reply(r),
        Some(Reply::AddPartitions(Err(TxnError::ConcurrentTransactions)))
    );
    // A coordinator that resigns drops what waits (the shell answers NOT_COORDINATOR).
    let r = s.next_req();
    let cmds = s.c.add_partitions(r, add(2), s.now);
    s.run(cmds);
    s.c.resign();
    assert_eq!(s.reply(r), None);
}

#[test]
fn the_next_transactions_first_add_is_written_as_the_completion_of_the_last() {
    let mut s = Shell::new();
    let p = s.init_ok();
    s.add(p, &[0], false);
    s.write_markers = false;
    s.end(p, TxnResult::Commit, TxnVersion::TV0);
    let r = s.next_req();
    let add = AddPartitions {
        transactional_id: TX.into(),
        producer_id: p.producer_id,
        producer_epoch: p.epoch,
        partitions: vec![TopicPartition::new("t", 1)],
        verify_only: false,
    };
    let cmds = s.c.add_partitions(r, add, s.now);
    s.run(cmds);
    assert_eq!(s.reply(r), None, "it waits for the commit's marker");
    let Command::WriteMarkers { id, .. } = s.markers[0] else {
        unreachable!()
    };
    // The marker is written; the completion's append fails once (the partition lost its
    // ISR for a moment): nothing is answered, and the add still waits.
    s.replicate = false;
    let before = s.log.len();
    let written = vec![(TopicPartition::new("t", 0), MarkerOutcome::Written)];
    let cmds = s.c.on_markers(id, written, s.now);
    s.run(cmds);
    assert_eq!(
        s.log.len(),
        before + 1,
        "one record: {:?}",
        &s.log[before..]
    );
    let failed = s.held_appends.pop().unwrap();
    let cmds =
        s.c.on_appended(failed, Err(AppendFailure::Unavailable), s.now);
    s.run(cmds);
    assert_eq!(s.reply(r), None);
    assert_eq!(s.state(), TxnState::PrepareCommit);
    // Appended again on the tick, it replicates: one record says both that the commit
    // completed and that the next transaction holds partition 1, and the add is answered.
    s.replicate = true;
    let before = s.log.len();
    let cmds = s.c.tick(s.now + 1);
    s.run(cmds);
    assert_eq!(s.reply(r), Some(Reply::AddPartitions(Ok(()))));
    assert_eq!(
        s.log.len(),
        before + 1,
        "one record: {:?}",
        &s.log[before..]
    );
    assert_eq!(s.state(), TxnState::Ongoing);
    assert_eq!(
        s.markers.len(),
        1,
        "the commit's markers are not written again"
    );

    // A new coordinator loads that record: the next transaction, nothing to finish.
    s.c.resign();
    let mut c = TxnCoordinator::new(TxnConfig::default(), 2);
    for (k, v) in &s.log {
        c.load_record(k, v.as_deref()).unwrap();
    }
    assert!(
        c.finish_loading(s.now).is_empty(),
        "no markers to write again"
    );
    let meta = c.metadata(TX).unwrap();
    assert_eq!(meta.state, TxnState::Ongoing);
    assert_eq!(
        meta.partitions.iter().collect::<Vec<_>>(),
        [&TopicPartition::new("t", 1)]
    );
    assert_eq!(meta.producer_epoch, p.epoch);
}

#[test]
fn init_over_an_ongoing_transaction_aborts_it_first_and_fences_the_zombie() {
    let mut s = Shell::new();
    let zombie = s.init_ok();
    s.add(zombie, &[0], false);
    assert_eq!(
        s.init(None),
        Some(Reply::InitProducerId(Err(TxnError::ConcurrentTransactions)))
    );
    assert_eq!(s.state(), TxnState::CompleteAbort);
    let abort_epoch = match &s.markers[..] {
        [
            Command::WriteMarkers {
                producer_epoch,
                result: TxnResult::Abort,
                ..
            },
        ] => *producer_epoch,
        other => panic!("markers {other:?}"),
    };
    assert!(abort_epoch > zombie.epoch);
    let fresh = s.init_ok();
    assert!(fresh.epoch > abort_epoch);
    for v in [TxnVersion::TV0, TxnVersion::TV2] {
        assert_eq!(
            s.end(zombie, TxnResult::Commit, v),
            Some(Reply::EndTxn(Err(TxnError::ProducerFenced)))
        );
    }
    assert_eq!(
        s.add(zombie, &[1], false),
        Some(Reply::AddPartitions(Err(TxnError::ProducerFenced)))
    );
}

#[test]
fn an_abandoned_transaction_times_out_with_an_epoch_bump() {
    let mut s = Shell::new();
    let p = s.init_ok();
    s.add(p, &[0], false);
    s.now += 60_000;
    let cmds = s.c.tick(s.now);
    assert!(cmds.is_empty(), "not yet past the timeout");
    s.now += 1;
    let cmds = s.c.tick(s.now);
    s.run(cmds);
    assert_eq!(s.state(), TxnState::CompleteAbort);
    assert!(s.c.metadata(TX).unwrap().producer_epoch > p.epoch);
    assert_eq!(
        s.end(p, TxnResult::Commit, TxnVersion::TV2),
        Some(Reply::EndTxn(Err(TxnError::ProducerFenced)))
    );
}

#[test]
fn verify_only_answers_from_replicated_state() {
    let mut s = Shell::new();
    let p = s.init_ok();
    s.add(p, &[0], false);
    match s.add(p, &[0, 1], true) {
        Some(Reply::VerifyPartitions(Ok(r))) => {
            assert_eq!(r[0].1, Ok(()));
            assert_eq!(r[1].1, Err(TxnError::TransactionAbortable));
        }
        other => panic!("{other:?}"),
    }
    s.replicate = false;
    s.add(p, &[1], false);
    // Partition 1's add has not replicated: still not in the transaction.
    assert!(
        matches!(s.add(p, &[1], true), Some(Reply::VerifyPartitions(Ok(r))) if r[0].1.is_err())
    );
    let stale = ProducerIdAndEpoch { epoch: 9, ..p };
    assert_eq!(
        s.add(stale, &[0], true),
        Some(Reply::VerifyPartitions(Err(TxnError::ProducerFenced)))
    );
}

#[test]
fn add_offsets_adds_the_groups_offsets_partition() {
    let mut s = Shell::new();
    let p = s.init_ok();
    let r = s.next_req();
    let cmds =
        s.c.add_offsets(r, TX.into(), p.producer_id, p.epoch, 7, s.now);
    s.run(cmds);
    assert_eq!(s.reply(r), Some(Reply::AddOffsets(Ok(()))));
    let parts = &s.c.metadata(TX).unwrap().partitions;
    assert!(parts.contains(&TopicPartition::new(CONSUMER_OFFSETS_TOPIC, 7)));
}

#[test]
fn a_new_coordinator_finishes_a_commit_the_old_one_started() {
    let mut s = Shell::new();
    let p = s.init_ok();
    s.add(p, &[0, 1], false);
    s.write_markers = false;
    s.end(p, TxnResult::Commit, TxnVersion::TV2);
    assert_eq!(s.state(), TxnState::PrepareCommit);
    s.c.resign();
    assert_eq!(
        s.init(None),
        Some(Reply::InitProducerId(Err(TxnError::NotCoordinator)))
    );

    let mut c = TxnCoordinator::new(TxnConfig::default(), 2);
    for (k, v) in &s.log {
        c.load_record(k, v.as_deref()).unwrap();
    }
    let d = c.describe(TX);
    assert_eq!(d, Err(TxnError::CoordinatorLoadInProgress));
    let cmds = c.finish_loading(s.now);
    match &cmds[..] {
        [
            Command::WriteMarkers {
                id,
                result: TxnResult::Commit,
                coordinator_epoch: 2,
                partitions,
                producer_epoch,
                ..
            },
        ] => {
            assert_eq!(*producer_epoch, p.epoch + 1);
            let outcomes = partitions
                .iter()
                .map(|tp| (tp.clone(), MarkerOutcome::Written))
                .collect();
            let done = c.on_markers(*id, outcomes, s.now);
            let Command::Append { id, .. } = done[0] else {
                panic!("{done:?}")
            };
            c.on_appended(id, Ok(()), s.now);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.metadata(TX).unwrap().state, TxnState::CompleteCommit);
}

#[test]
fn unanswered_markers_are_sent_again_and_retriable_ones_at_once() {
    let mut s = Shell::new();
    let p = s.init_ok();
    s.add(p, &[0, 1], false);
    s.write_markers = false;
    s.end(p, TxnResult::Abort, TxnVersion::TV2);
    let Command::WriteMarkers { id, .. } = s.markers[0] else {
        unreachable!()
    };
    let again = s.c.on_markers(
        id,
        vec![(TopicPartition::new("t", 0), MarkerOutcome::Retriable)],
        s.now,
    );
    assert!(
        matches!(&again[..], [Command::WriteMarkers { partitions, .. }] if partitions.len() == 1)
    );
    assert!(s.c.tick(s.now + 1).is_empty());
    let resent = s.c.tick(s.now + MARKER_RETRY_MS);
    assert!(
        matches!(&resent[..], [Command::WriteMarkers { partitions, .. }] if partitions.len() == 2)
    );
    let outcomes = vec![
        (TopicPartition::new("t", 0), MarkerOutcome::Written),
        (
            TopicPartition::new("t", 1),
            MarkerOutcome::StaleProducerEpoch,
        ),
    ];
    let cmds = s.c.on_markers(id, outcomes, s.now);
    s.run(cmds);
    assert_eq!(s.state(), TxnState::CompleteAbort);
}

#[test]
fn exhausted_epochs_move_to_a_new_producer_id() {
    let mut s = Shell::new();
    let p = s.init_ok();
    // Load a state at the last usable epoch.
    let mut meta = s.c.metadata(TX).unwrap().clone();
    meta.producer_epoch = i16::MAX - 1;
    let mut c = TxnCoordinator::new(TxnConfig::default(), 2);
    let (k, v) = meta.to_record().encode(1);
    c.load_record(&k, v.as_deref()).unwrap();
    c.finish_loading(s.now);
    s.c = c;
    let rotated = s.init_ok();
    assert_ne!(rotated.producer_id, p.producer_id);
    assert_eq!(rotated.epoch, 0);

    // TV2: an EndTxn at the last epoch hands out the next producer id.
    let mut meta = s.c.metadata(TX).unwrap().clone();
    meta.producer_epoch = i16::MAX - 1;
    let mut c = TxnCoordinator::new(TxnConfig::default(), 3);
    let (k, v) = meta.to_record().encode(1);
    c.load_record(&k, v.as_deref()).unwrap();
    c.finish_loading(s.now);
    s.c = c;
    let last = ProducerIdAndEpoch {
        producer_id: rotated.producer_id,
        epoch: i16::MAX - 1,
    };
    s.add(last, &[0], false);
    let Some(Reply::EndTxn(Ok(next))) = s.end(last, TxnResult::Commit, TxnVersion::TV2) else {
        panic!()
    };
    assert_eq!(next.epoch, 0);
    assert_ne!(next.producer_id, last.producer_id);
    assert_eq!(s.c.metadata(TX).unwrap().producer_id, next.producer_id);
    // A retry with the old id and last epoch is recognised.
    assert_eq!(
        s.end(last, TxnResult::Commit, TxnVersion::TV2),
        Some(Reply::EndTxn(Ok(next)))
    );
}

#[test]
fn kip360_recovery_with_the_expected_id_and_epoch() {
    let mut s = Shell::new();
    let p = s.init_ok();
    let bumped = match s.init(Some(p)) {
        Some(Reply::InitProducerId(Ok(b))) => b,
        other => panic!("{other:?}"),
    };
    assert_eq!(bumped.epoch, p.epoch + 1);
    // The same request again (its answer was lost): the same epoch, not another bump.
    assert_eq!(s.init(Some(p)), Some(Reply::InitProducerId(Ok(bumped))));
    let wrong = ProducerIdAndEpoch {
        producer_id: 77,
        epoch: 0,
    };
    assert_eq!(
        s.init(Some(wrong)),
        Some(Reply::InitProducerId(Err(TxnError::ProducerFenced)))
    );
}

#[test]
fn idle_ids_expire_with_a_tombstone() {
    let mut s = Shell::new();
    s.init_ok();
    s.now += TRANSACTIONAL_ID_EXPIRATION_MS + 10;
    let cmds = s.c.tick(s.now);
    assert!(matches!(&cmds[..], [Command::Append { value: None, .. }]));
    s.run(cmds);
    assert_eq!(s.c.describe(TX), Err(TxnError::TransactionalIdNotFound));
    let (k, v) = s.log.last().unwrap();
    assert_eq!(TxnLogRecord::decode(k, v.as_deref()).unwrap().value, None);
}

#[test]
fn requests_are_checked_before_anything_changes() {
    let mut s = Shell::new();
    let r = s.next_req();
    let long = "x".repeat(MAX_TRANSACTIONAL_ID_BYTES + 1);
    let cmds = s.c.init_producer_id(
        r,
        InitProducerId {
            transactional_id: long,
            timeout_ms: 1,
            expected: None,
        },
        0,
    );
    assert!(matches!(
        &cmds[..],
        [Command::Reply {
            reply: Reply::InitProducerId(Err(TxnError::InvalidRequest)),
            ..
        }]
    ));
    let cmds = s.c.init_producer_id(
        r,
        InitProducerId {
            transactional_id: TX.into(),
            timeout_ms: MAX_TRANSACTION_TIMEOUT_MS + 1,
            expected: None,
        },
        0,
    );
    assert!(matches!(
        &cmds[..],
        [Command::Reply {
            reply: Reply::InitProducerId(Err(TxnError::InvalidTransactionTimeout)),
            ..
        }]
    ));
    let mut loading = TxnCoordinator::new(TxnConfig::default(), 1);
    let cmds = loading.end_txn(
        r,
        EndTxn {
            transactional_id: TX.into(),
            producer_id: 1,
            producer_epoch: 0,
            result: TxnResult::Commit,
            version: TxnVersion::TV2,
        },
        0,
    );
    assert!(matches!(
        &cmds[..],
        [Command::Reply {
            reply: Reply::EndTxn(Err(TxnError::CoordinatorLoadInProgress)),
            ..
        }]
    ));
    assert_eq!(
        s.end(
            ProducerIdAndEpoch {
                producer_id: 1,
                epoch: 0
            },
            TxnResult::Commit,
            TxnVersion::TV2
        ),
        Some(Reply::EndTxn(Err(TxnError::InvalidProducerIdMapping)))
    );

    let small = TxnConfig {
        max_transactional_ids: 1,
        max_partitions_per_txn: 2,
        ..TxnConfig::default()
    };
    let mut s = Shell::new();
    s.c = TxnCoordinator::new(small, 1);
    s.c.finish_loading(0);
    let p = s.init_ok();
    let r = s.next_req();
    let cmds = s.c.init_producer_id(
        r,
        InitProducerId {
            transactional_id: "other".into(),
            timeout_ms: 1000,
            expected: None,
        },
        0,
    );
    assert!(matches!(
        &cmds[..],
        [Command::Reply {
            reply: Reply::InitProducerId(Err(TxnError::TooManyTransactionalIds)),
            ..
        }]
    ));
    assert_eq!(
        s.add(p, &[0, 1, 2], false),
        Some(Reply::AddPartitions(Err(TxnError::TooManyPartitions)))
    );
}

#[test]
fn describe_and_list_show_the_applied_state() {
    let mut s = Shell::new();
    let p = s.init_ok();
    s.add(p, &[3], false);
    let d = s.c.describe(TX).unwrap();
    assert_eq!(
        (d.state, d.producer_id, d.partitions.len()),
        (TxnState::Ongoing, p.producer_id, 1)
    );
    let mut f = ListFilter::default();
    assert_eq!(s.c.list(&f, s.now).unwrap().0.len(), 1);
    f.states.insert("CompleteCommit".into());
    f.states.insert("Nope".into());
    let (rows, unknown) = s.c.list(&f, s.now).unwrap();
    assert!(rows.is_empty());
    assert_eq!(unknown, vec!["Nope".to_string()]);
    let f = ListFilter {
        min_duration_ms: Some(5),
        ..ListFilter::default()
    };
    assert!(s.c.list(&f, s.now + 1).unwrap().0.is_empty());
    assert_eq!(s.c.list(&f, s.now + 6).unwrap().0.len(), 1);
}

#[test]
fn tv2_finished_transactions_follow_kafkas_table() {
    let mut s = Shell::new();
    let p = s.init_ok();
    // Empty: an abort at the current epoch bumps it (the client could not tell whether a
    // partition was added at produce time); a commit is invalid.
    assert_eq!(
        s.end(p, TxnResult::Commit, TxnVersion::TV2),
        Some(Reply::EndTxn(Err(TxnError::InvalidTxnState)))
    );
    let bumped = ProducerIdAndEpoch {
        epoch: p.epoch + 1,
        ..p
    };
    assert_eq!(
        s.end(p, TxnResult::Abort, TxnVersion::TV2),
        Some(Reply::EndTxn(Ok(bumped)))
    );
    assert_eq!(s.state(), TxnState::CompleteAbort);
    assert!(s.markers.is_empty(), "no partition, no marker");
    // CompleteAbort: the retry succeeds, a commit at the retry epoch is fenced.
    assert_eq!(
        s.end(p, TxnResult::Abort, TxnVersion::TV2),
        Some(Reply::EndTxn(Ok(bumped)))
    );
    assert_eq!(
        s.end(p, TxnResult::Commit, TxnVersion::TV2),
        Some(Reply::EndTxn(Err(TxnError::ProducerFenced)))
    );
    assert_eq!(
        s.end(bumped, TxnResult::Commit, TxnVersion::TV2),
        Some(Reply::EndTxn(Err(TxnError::InvalidTxnState)))
    );
    // CompleteCommit: an abort at the retry epoch is invalid, at the current one a bump.
    s.add(bumped, &[0], false);
    let committed = ProducerIdAndEpoch {
        epoch: bumped.epoch + 1,
        ..p
    };
    assert_eq!(
        s.end(bumped, TxnResult::Commit, TxnVersion::TV2),
        Some(Reply::EndTxn(Ok(committed)))
    );
    assert_eq!(
        s.end(bumped, TxnResult::Abort, TxnVersion::TV2),
        Some(Reply::EndTxn(Err(TxnError::InvalidTxnState)))
    );
    let older = ProducerIdAndEpoch {
        epoch: p.epoch,
        ..p
    };
    assert_eq!(
        s.end(older, TxnResult::Commit, TxnVersion::TV2),
        Some(Reply::EndTxn(Err(TxnError::ProducerFenced)))
    );
    assert_eq!(
        s.end(committed, TxnResult::Abort, TxnVersion::TV2),
        Some(Reply::EndTxn(Ok(ProducerIdAndEpoch {
            epoch: committed.epoch + 1,
            ..p
        })))
    );
}

#[test]
fn a_tv2_zombie_does_not_take_a_tv0_producers_epoch_as_a_retry() {
    let mut s = Shell::new();
    let zombie = s.init_ok();
    let owner = s.init_ok();
    assert_eq!(owner.epoch, zombie.epoch + 1);
    s.add(owner, &[0], false);
    // The owner speaks TV0: its abort keeps the epoch.
    assert_eq!(
        s.end(owner, TxnResult::Abort, TxnVersion::TV0),
        Some(Reply::EndTxn(Ok(owner)))
    );
    // The zombie's TV2 abort, one epoch below: not a retry of anything it did.
    assert_eq!(
        s.end(zombie, TxnResult::Abort, TxnVersion::TV2),
        Some(Reply::EndTxn(Err(TxnError::ProducerFenced)))
    );
}

#[test]
fn a_batch_answers_each_transaction_on_its_own() {
    let mut s = Shell::new();
    let p = s.init_ok();
    let (a, b) = (s.next_req(), s.next_req());
    let add = |id: &str, parts: Vec<i32>| AddPartitions {
        transactional_id: id.into(),
        producer_id: p.producer_id,
        producer_epoch: p.epoch,
        partitions: parts
            .into_iter()
            .map(|i| TopicPartition::new("t", i))
            .collect(),
        verify_only: false,
    };
    let batch = vec![(a, add(TX, vec![0])), (b, add("unknown", vec![1]))];
    let cmds = s.c.add_partitions_batch(batch, s.now);
    s.run(cmds);
    assert_eq!(s.reply(a), Some(Reply::AddPartitions(Ok(()))));
    assert_eq!(
        s.reply(b),
        Some(Reply::AddPartitions(Err(
            TxnError::InvalidProducerIdMapping
        )))
    );
}

#[test]
fn a_failed_allocation_is_answered_and_leaves_no_id_behind() {
    let mut s = Shell::new();
    let r = s.next_req();
    let init = InitProducerId {
        transactional_id: TX.into(),
        timeout_ms: 1000,
        expected: None,
    };
    let cmds = s.c.init_producer_id(r, init, s.now);
    let [Command::AllocateProducerId { id }] = cmds[..] else {
        panic!("{cmds:?}")
    };
    let cmds =
        s.c.on_producer_id(id, Err(TxnError::CoordinatorNotAvailable), s.now);
    assert_eq!(
        cmds,
        vec![Command::Reply {
            request: r,
            reply: Reply::InitProducerId(Err(TxnError::CoordinatorNotAvailable))
        }]
    );
    assert!(s.c.is_empty());
}

#[test]
fn loading_skips_unknown_keys_and_refuses_bad_records() {
    let mut c = TxnCoordinator::new(TxnConfig::default(), 1);
    // A key of another version (a leftover of an aborted upgrade) is skipped.
    c.load_record(&[0, 9, 0, 0], Some(&[1, 2, 3])).unwrap();
    let key = records::encode_key(TX);
    assert!(c.load_record(&key, Some(&[0, 0, 1])).is_err());
    let mut dead = TxnMetadata::new(TX.into(), 7, 1000, 0).to_record();
    dead.value.as_mut().unwrap().status = TxnState::Dead.id();
    let (k, v) = dead.encode(1);
    assert_eq!(
        c.load_record(&k, v.as_deref()),
        Err(RecordError::BadState(6))
    );
    // A record then its tombstone: the id is gone.
    let (k, v) = TxnMetadata::new(TX.into(), 7, 1000, 0)
        .to_record()
        .encode(0);
    c.load_record(&k, v.as_deref()).unwrap();
    c.load_record(&k, None).unwrap();
    c.finish_loading(0);
    assert!(c.is_empty());
}
