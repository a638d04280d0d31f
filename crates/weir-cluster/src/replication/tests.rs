//! Unit tests of the replication state machine against an in-memory log. The
//! simulation (`tests/it/sim`) checks it under faults; these pin single behaviours.

use bytes::Bytes;

use super::*;
use crate::controller::records::{NO_LEADER, PartitionRegistration};

/// A log reduced to what the state machine asks of it.
#[derive(Debug, Clone, Default)]
struct MemLog {
    start: i64,
    end: i64,
    flushed: i64,
    /// (epoch, start offset), increasing.
    epochs: Vec<(i32, i64)>,
}

impl MemLog {
    fn append(&mut self, epoch: i32, count: i64) {
        if self.epochs.last().is_none_or(|(e, _)| *e < epoch) {
            self.epochs.push((epoch, self.end));
        }
        self.end += count;
    }
}

impl LocalLog for MemLog {
    fn log_start_offset(&self) -> i64 {
        self.start
    }
    fn log_end_offset(&self) -> i64 {
        self.end
    }
    fn flushed_offset(&self) -> i64 {
        self.flushed
    }
    fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        let i = self.epochs.iter().rposition(|(e, _)| *e <= epoch)?;
        let end = self.epochs.get(i + 1).map_or(self.end, |(_, s)| *s);
        Some((self.epochs[i].0, end))
    }
    fn last_epoch(&self) -> Option<i32> {
        (self.end > self.start)
            .then(|| self.epochs.last().map(|(e, _)| *e))
            .flatten()
    }
}

fn registration(leader: i32, leader_epoch: i32, isr: &[i32]) -> PartitionRegistration {
    PartitionRegistration {
        replicas: vec![1, 2, 3],
        isr: isr.to_vec(),
        leader,
        leader_epoch,
        partition_epoch: leader_epoch,
        reassignment: None,
    }
}

fn fetch(replica: i32, leader_epoch: i32, fetch_offset: i64, last_fetched_epoch: i32) -> Event {
    Event::Fetch(FetchRequest {
        fetch_id: 7,
        replica,
        broker_epoch: 100 + i64::from(replica),
        leader_epoch,
        fetch_offset,
        flushed_offset: fetch_offset,
        last_fetched_epoch,
    })
}

fn leader(min_insync: usize) -> Replica {
    let mut config = ReplicaConfig::new(1, 101);
    config.min_insync_replicas = min_insync;
    Replica::new(config, 0)
}

fn published(commands: &[Command]) -> Vec<i64> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::PublishHighWatermark(hw) => Some(*hw),
            _ => None,
        })
        .collect()
}

#[test]
fn the_high_watermark_is_the_lowest_durable_position_in_the_isr() {
    let mut log = MemLog::default();
    let mut r = leader(2);
    r.handle(Event::Registration(registration(1, 0, &[1, 2, 3])), 0, &log);
    assert_eq!(r.check_produce(true), Ok(0));
    log.append(0, 10);
    let out = r.handle(Event::LogAppended, 1, &log);
    assert!(
        out.contains(&Command::Flush),
        "a durable leader syncs its appends"
    );
    log.flushed = 10;
    r.handle(Event::LogFlushed, 2, &log);
    assert_eq!(r.high_watermark(), 0, "followers not heard from hold it");
    r.handle(fetch(2, 0, 10, 0), 3, &log);
    assert_eq!(r.high_watermark(), 0);
    let out = r.handle(fetch(3, 0, 6, 0), 4, &log);
    assert_eq!(r.high_watermark(), 6);
    assert_eq!(published(&out), vec![6]);
    let out = r.handle(fetch(3, 0, 10, 0), 5, &log);
    assert_eq!(published(&out), vec![10]);
}

#[test]
fn fetches_with_another_epoch_are_refused() {
    let log = MemLog::default();
    let mut r = leader(1);
    r.handle(Event::Registration(registration(1, 3, &[1, 2, 3])), 0, &log);
    for (epoch, error) in [
        (2, FetchError::FencedLeaderEpoch),
        (4, FetchError::UnknownLeaderEpoch),
    ] {
        let out = r.handle(fetch(2, epoch, 0, -1), 1, &log);
        assert_eq!(
            out,
            vec![Command::AnswerFetch {
                to: 2,
                answer: FetchAnswer::Error { fetch_id: 7, error },
                may_wait: true,
            }]
        );
    }
}

#[test]
fn a_follower_that_diverged_is_told_where_its_epoch_ended_and_truncates() {
    // Leader: epoch 1 wrote 0..10, epoch 3 wrote 10..20.
    let mut leader_log = MemLog::default();
    leader_log.append(1, 10);
    leader_log.append(3, 10);
    leader_log.flushed = 20;
    let mut l = leader(1);
    l.handle(
        Event::Registration(registration(1, 3, &[1, 3])),
        0,
        &leader_log,
    );
    // Follower 2 had epoch 1 up to 10, then epoch 2 (a leader that lost) up to 15.
    let out = l.handle(fetch(2, 3, 15, 2), 1, &leader_log);
    let answer = FetchAnswer::Diverging {
        fetch_id: 7,
        leader_epoch: 3,
        epoch: 1,
        end_offset: 10,
    };
    assert_eq!(
        out,
        vec![Command::AnswerFetch {
            to: 2,
            answer: answer.clone(),
            may_wait: true,
        }]
    );

    let mut follower_log = MemLog::default();
    follower_log.append(1, 10);
    follower_log.append(2, 5);
    follower_log.flushed = 15;
    let mut f = Replica::new(ReplicaConfig::new(2, 102), 0);
    let out = f.handle(
        Event::Registration(registration(1, 3, &[1, 3])),
        0,
        &follower_log,
    );
    let Some(Command::SendFetch { request, .. }) = out.first() else {
        panic!("{out:?}")
    };
    assert_eq!((request.fetch_offset, request.last_fetched_epoch), (15, 2));
    let answer = match answer {
        FetchAnswer::Diverging {
            epoch,
            end_offset,
            leader_epoch,
            ..
        } => FetchAnswer::Diverging {
            fetch_id: request.fetch_id,
            leader_epoch,
            epoch,
            end_offset,
        },
        _ => unreachable!(),
    };
    let out = f.handle(
        Event::FetchAnswered {
            answer,
            batches: Bytes::new(),
        },
        1,
        &follower_log,
    );
    assert_eq!(out, vec![Command::Truncate { offset: 10 }]);
}

#[test]
fn a_new_leader_publishes_nothing_until_its_inherited_log_is_committed() {
    let mut log = MemLog::default();
    log.append(0, 20);
    log.flushed = 20;
    // It knew HW 12 as a follower.
    let mut r = Replica::new(ReplicaConfig::new(1, 101), 12);
    let out = r.handle(Event::Registration(registration(1, 1, &[1, 2])), 0, &log);
    assert!(published(&out).is_empty());
    assert_eq!(r.published_high_watermark(), None);
    let out = r.handle(fetch(2, 1, 15, 0), 1, &log);
    assert!(published(&out).is_empty(), "15 is below the epoch start 20");
    let out = r.handle(fetch(2, 1, 20, 0), 2, &log);
    assert_eq!(published(&out), vec![20]);
}

#[test]
fn a_lagging_follower_leaves_the_isr_and_returns_once_caught_up() {
    let mut log = MemLog::default();
    let mut r = leader(1);
    r.handle(Event::Registration(registration(1, 0, &[1, 2, 3])), 0, &log);
    log.append(0, 5);
    log.flushed = 5;
    r.handle(Event::LogFlushed, 1, &log);
    r.handle(fetch(2, 0, 5, 0), 2, &log);
    let lag = DEFAULT_REPLICA_LAG_TIME_MAX_MS;
    // Follower 3 never fetches; follower 2 keeps up.
    r.handle(fetch(2, 0, 5, 0), lag, &log);
    let out = r.handle(Event::Tick, lag + 1, &log);
    let proposal = out.iter().find_map(|c| match c {
        Command::ProposeIsr(p) => Some(p.clone()),
        _ => None,
    });
    let proposal = proposal.expect("a shrink");
    assert_eq!(proposal.new_isr, vec![(1, 101), (2, 102)]);
    let shrunk = PartitionRegistration {
        isr: vec![1, 2],
        partition_epoch: 1,
        ..registration(1, 0, &[])
    };
    let out = r.handle(
        Event::AlterIsrAnswered(AlterIsrAnswer::Accepted(shrunk)),
        lag + 2,
        &log,
    );
    assert_eq!(published(&out), vec![5], "the HW no longer waits for 3");
    // 3 returns and catches up: proposed back in.
    let out = r.handle(fetch(3, 0, 5, 0), lag + 3, &log);
    let back = out
        .iter()
        .any(|c| matches!(c, Command::ProposeIsr(p) if p.new_isr.len() == 3));
    assert!(back, "{out:?}");
}

/// Leader 1 with ISR {1, 2} and 5 records, which both hold; replica 3 has just fetched up
/// to 5, so 1 proposes it into the ISR (no answer yet).
fn leader_proposing_3_in() -> (Replica, MemLog) {
    let mut log = MemLog::default();
    let mut r = leader(1);
    r.handle(Event::Registration(registration(1, 0, &[1, 2])), 0, &log);
    log.append(0, 5);
    log.flushed = 5;
    r.handle(Event::LogFlushed, 1, &log);
    r.handle(fetch(2, 0, 5, 0), 2, &log);
    let out = r.handle(fetch(3, 0, 5, 0), 3, &log);
    assert!(
        out.iter()
            .any(|c| matches!(c, Command::ProposeIsr(p) if p.new_isr.len() == 3))
    );
    (r, log)
}

#[test]
fn a_refused_expansion_does_not_hold_the_high_watermark_but_an_unanswered_one_does() {
    // 3 fetches up to 5, is proposed in, and stops (a controlled shutdown).
    let (mut r, mut log) = leader_proposing_3_in();
    log.append(0, 5);
    log.flushed = 10;
    r.handle(Event::LogFlushed, 4, &log);
    let out = r.handle(fetch(2, 0, 10, 0), 5, &log);
    assert!(
        published(&out).is_empty(),
        "3 may be joining: the HW waits for it"
    );
    // No answer: it may have been committed, so 3 still counts.
    let out = r.handle(Event::AlterIsrAnswered(AlterIsrAnswer::Unknown), 6, &log);
    assert!(published(&out).is_empty());
    let out = r.handle(fetch(2, 0, 10, 0), 7, &log);
    assert!(published(&out).is_empty());
    // Refused: 3 will not join from this proposal, and the HW moves on the committed ISR.
    let out = r.handle(Event::AlterIsrAnswered(AlterIsrAnswer::Refused), 8, &log);
    assert_eq!(published(&out), vec![10]);
}

#[test]
fn members_of_an_unanswered_expansion_count_until_the_metadata_settles_it() {
    let (mut r, mut log) = leader_proposing_3_in();
    // No answer; 3 stops fetching and falls behind, so no new proposal names it.
    r.handle(Event::AlterIsrAnswered(AlterIsrAnswer::Unknown), 4, &log);
    log.append(0, 5);
    log.flushed = 10;
    let later = 3 + DEFAULT_REPLICA_LAG_TIME_MAX_MS + 1;
    r.handle(Event::LogFlushed, later, &log);
    let out = r.handle(fetch(2, 0, 10, 0), later + 1, &log);
    let out2 = r.handle(Event::Tick, later + 2, &log);
    assert!(
        published(&out).is_empty() && published(&out2).is_empty(),
        "the first proposal may have been committed: 3 still holds the HW"
    );
    // The metadata says it was not (partition epoch 1, ISR still 1 and 2): the HW moves.
    let settled = PartitionRegistration {
        isr: vec![1, 2],
        partition_epoch: 1,
        ..registration(1, 0, &[])
    };
    let out = r.handle(Event::Registration(settled), later + 3, &log);
    assert_eq!(published(&out), vec![10]);
}

#[test]
fn acks_all_needs_min_insync_replicas() {
    let log = MemLog::default();
    let mut r = leader(2);
    r.handle(Event::Registration(registration(1, 0, &[1])), 0, &log);
    assert_eq!(
        r.check_produce(true),
        Err(ProduceRefusal::NotEnoughReplicas {
            isr: 1,
            min_insync: 2
        })
    );
    assert_eq!(r.check_produce(false), Ok(0));
    let mut f = Replica::new(ReplicaConfig::new(2, 102), 0);
    f.handle(Event::Registration(registration(1, 0, &[1])), 0, &log);
    assert_eq!(
        f.check_produce(false),
        Err(ProduceRefusal::NotLeader {
            leader: 1,
            leader_epoch: 0
        })
    );
}

#[test]
fn a_re_elected_leader_does_not_serve_the_hw_of_its_earlier_leadership() {
    // Found by the simulation (seed 119).
    let mut log = MemLog::default();
    let mut r = leader(1);
    r.handle(Event::Registration(registration(1, 0, &[1])), 0, &log);
    log.append(0, 1);
    log.flushed = 1;
    r.handle(Event::LogFlushed, 1, &log);
    assert_eq!(r.published_high_watermark(), Some(1));
    // Another leader took over and wrote up to 9, which this replica copied...
    r.handle(Event::Registration(registration(2, 1, &[2, 1])), 2, &log);
    assert_eq!(r.published_high_watermark(), None);
    log.append(1, 8);
    log.flushed = 9;
    // ...then this replica leads again: nothing is published until 9 is committed.
    r.handle(Event::Registration(registration(1, 2, &[1, 3])), 3, &log);
    assert_eq!(r.published_high_watermark(), None);
    let out = r.handle(fetch(3, 2, 9, 1), 4, &log);
    assert_eq!(published(&out), vec![9]);
}

#[test]
fn a_follower_with_only_later_epochs_than_the_leader_drops_its_whole_log() {
    // Found by the simulation (seed 884): the new leader (epoch 2) holds epoch 0 up to
    // 3; this follower copied epoch 1 (a leader that lost) from 0 to 6.
    let mut log = MemLog::default();
    log.append(1, 6);
    log.flushed = 6;
    let mut f = Replica::new(ReplicaConfig::new(2, 102), 0);
    let out = f.handle(Event::Registration(registration(3, 2, &[3])), 0, &log);
    let Some(Command::SendFetch { request, .. }) = out.first() else {
        panic!("{out:?}")
    };
    let answer = FetchAnswer::Diverging {
        fetch_id: request.fetch_id,
        leader_epoch: 2,
        epoch: 0,
        end_offset: 3,
    };
    let out = f.handle(
        Event::FetchAnswered {
            answer,
            batches: Bytes::new(),
        },
        1,
        &log,
    );
    assert_eq!(out, vec![Command::Truncate { offset: 0 }]);
}

/// A fetch from follower `replica` at log end `fetch_offset` that has synced only up to
/// `flushed_offset`.
fn pipelined_fetch(replica: i32, fetch_offset: i64, flushed_offset: i64) -> Event {
    let Event::Fetch(mut request) = fetch(replica, 0, fetch_offset, 0) else {
        unreachable!()
    };
    request.flushed_offset = flushed_offset;
    Event::Fetch(request)
}

fn sent_fetch(commands: &[Command]) -> Option<FetchRequest> {
    commands.iter().find_map(|c| match c {
        Command::SendFetch { request, .. } => Some(request.clone()),
        _ => None,
    })
}

#[test]
fn a_follower_fetches_again_while_a_large_answer_syncs_and_waits_for_the_sync_otherwise() {
    let mut log = MemLog::default();
    let mut f = Replica::new(ReplicaConfig::new(2, 102), 0);
    let out = f.handle(Event::Registration(registration(1, 0, &[1, 2])), 0, &log);
    let first = sent_fetch(&out).expect("fetches at once");
    let data = |fetch_id, from_offset| FetchAnswer::Data {
        fetch_id,
        leader_epoch: 0,
        from_offset,
        high_watermark: Some(0),
        log_start_offset: 0,
    };
    // A small answer is synced before the next fetch, which reports the sync.
    let small = stored_batch(0, 10);
    assert!(small.len() < PIPELINE_MIN_BYTES);
    let out = f.handle(
        Event::FetchAnswered {
            answer: data(first.fetch_id, 0),
            batches: small,
        },
        1,
        &log,
    );
    assert!(
        matches!(out[..], [Command::AppendReplicated { .. }]),
        "{out:?}"
    );
    log.append(0, 10);
    let out = f.handle(Event::LogAppended, 2, &log);
    assert_eq!(out, vec![Command::Flush]);
    log.flushed = 10;
    let out = f.handle(Event::LogFlushed, 2, &log);
    let next = sent_fetch(&out).expect("fetches once synced");
    assert_eq!((next.fetch_offset, next.flushed_offset), (10, 10));
    // A large answer is written and the next fetch goes before it is synced, with a
    // flush beside it, reporting what is synced so far.
    let records = PIPELINE_MIN_BYTES / 1024 + 1;
    let large = stored_batch(10, records);
    assert!(large.len() >= PIPELINE_MIN_BYTES, "{}", large.len());
    let out = f.handle(
        Event::FetchAnswered {
            answer: data(next.fetch_id, 10),
            batches: large,
        },
        3,
        &log,
    );
    assert!(
        matches!(out[..], [Command::AppendReplicated { .. }]),
        "{out:?}"
    );
    log.append(0, records as i64);
    let end = log.end;
    let out = f.handle(Event::LogAppended, 3, &log);
    assert!(out.contains(&Command::Flush), "{out:?}");
    let second = sent_fetch(&out).expect("fetches again at once");
    assert_eq!((second.fetch_offset, second.flushed_offset), (end, 10));
    // Nothing new on the leader: with the sync still running, the follower waits for it
    // rather than reporting the same flushed offset again.
    let out = f.handle(
        Event::FetchAnswered {
            answer: data(second.fetch_id, end),
            batches: Bytes::new(),
        },
        4,
        &log,
    );
    assert_eq!(sent_fetch(&out), None, "{out:?}");
    log.flushed = end;
    let out = f.handle(Event::LogFlushed, 5, &log);
    let third = sent_fetch(&out).expect("fetches once synced");
    assert_eq!((third.fetch_offset, third.flushed_offset), (end, end));
}

/// One batch of `count` records of 1 KiB from offset `base` in epoch 0, as a leader
/// stores it.
fn stored_batch(base: i64, count: usize) -> Bytes {
    use weir_log::batch::{Record, RecordBatchBuilder, compression::Compression};
    let mut builder = RecordBatchBuilder::new(Compression::None);
    for _ in 0..count {
        builder.push(&Record {
            value: Some(Bytes::from(vec![b'v'; 1024])),
            ..Record::default()
        });
    }
    let mut batch = builder.build().expect("a batch");
    weir_log::batch::patch_offset_and_epoch(&mut batch, base, 0);
    batch.freeze()
}

#[test]
fn the_leader_answers_a_syncing_follower_at_once_and_counts_only_what_it_synced() {
    let mut log = MemLog::default();
    let mut r = leader(2);
    r.handle(Event::Registration(registration(1, 0, &[1, 2])), 0, &log);
    log.append(0, 10);
    log.flushed = 10;
    r.handle(Event::LogFlushed, 1, &log);
    let out = r.handle(pipelined_fetch(2, 10, 4), 2, &log);
    assert!(
        matches!(
            out[0],
            Command::AnswerFetch {
                may_wait: false,
                ..
            }
        ),
        "a syncing follower is not held: {out:?}"
    );
    assert_eq!(
        r.high_watermark(),
        4,
        "only what the follower synced counts"
    );
    let out = r.handle(pipelined_fetch(2, 10, 10), 3, &log);
    assert!(matches!(
        out[0],
        Command::AnswerFetch { may_wait: true, .. }
    ));
    assert_eq!(published(&out), vec![10]);
}

#[test]
fn a_follower_that_reports_its_syncs_late_stays_in_sync_but_one_whose_syncs_stop_leaves() {
    let lag = DEFAULT_REPLICA_LAG_TIME_MAX_MS;
    let mut log = MemLog::default();
    let mut r = leader(1);
    r.handle(Event::Registration(registration(1, 0, &[1, 2, 3])), 0, &log);
    // A steady stream: 10 records every 100 ms. Follower 2 fetches every 100 ms and
    // reports as synced what the leader had two fetches earlier; follower 3 writes
    // everything but its syncs stopped at 10.
    let mut ends = vec![0, 0];
    let mut now = 0;
    let mut proposals = Vec::new();
    while now <= 2 * lag {
        now += 100;
        log.append(0, 10);
        log.flushed = log.end;
        let mut out = r.handle(Event::LogAppended, now, &log);
        let synced = ends[ends.len() - 2];
        out.extend(r.handle(pipelined_fetch(2, log.end, synced), now, &log));
        out.extend(r.handle(pipelined_fetch(3, log.end, synced.min(10)), now, &log));
        out.extend(r.handle(Event::Tick, now, &log));
        ends.push(log.end);
        proposals.extend(out.into_iter().filter_map(|c| match c {
            Command::ProposeIsr(p) => Some((now, p.new_isr)),
            _ => None,
        }));
    }
    // (Unanswered, it is proposed again after the answer timeout: same ISR.)
    let Some((at, isr)) = proposals.first() else {
        panic!("no ISR change proposed")
    };
    assert!(proposals.iter().all(|(_, p)| p == isr), "{proposals:?}");
    assert_eq!(isr, &vec![(1, 101), (2, 102)]);
    // Follower 3 last synced what the leader had at 100 ms.
    assert!((lag..=lag + 200).contains(at), "proposed at {at} ms");
}

// ---------------------------------------------------------------------------------------
// A failed log (`recovery.rs`)

fn reopen_of(out: &[Command]) -> Option<Option<i64>> {
    out.iter().find_map(|c| match c {
        Command::ReopenLog { truncate_to } => Some(*truncate_to),
        _ => None,
    })
}

fn resigned(out: &[Command]) -> Vec<i32> {
    out.iter()
        .filter_map(|c| match c {
            Command::ResignLeadership { leader_epoch } => Some(*leader_epoch),
            _ => None,
        })
        .collect()
}

/// Leader 1 at epoch 3 with 10 records appended, 6 of them flushed.
fn failing_leader() -> (Replica, MemLog) {
    let mut log = MemLog::default();
    let mut r = leader(1);
    r.handle(Event::Registration(registration(1, 3, &[1, 2, 3])), 0, &log);
    log.append(3, 10);
    log.flushed = 6;
    r.handle(Event::LogAppended, 1, &log);
    (r, log)
}

#[test]
fn a_leader_whose_log_fails_serves_nothing_and_reopens_it_at_its_durable_point() {
    let (mut r, log) = failing_leader();
    let out = r.handle(Event::LogFailed, 2, &log);
    assert!(out.contains(&Command::LeadershipEnded { leader_epoch: 3 }));
    assert_eq!(reopen_of(&out), Some(Some(6)), "cut to the flushed offset");
    assert_eq!(r.role(), Role::Recovering);
    assert_eq!(r.check_produce(false), Err(ProduceRefusal::LogRecovering));
    // A follower's fetch is refused: a cut log must not tell it to truncate.
    let out = r.handle(fetch(2, 3, 10, 3), 3, &log);
    assert!(matches!(
        out.as_slice(),
        [Command::AnswerFetch {
            answer: FetchAnswer::Error {
                error: FetchError::NotLeader,
                ..
            },
            ..
        }]
    ));
    // A second report of the same failure changes nothing.
    assert!(r.handle(Event::LogFailed, 4, &log).is_empty());
}

#[test]
fn a_leader_that_lost_a_tail_resigns_and_leads_again_only_at_a_newer_epoch() {
    let (mut r, mut log) = failing_leader();
    r.handle(Event::LogFailed, 2, &log);
    log.end = 6; // reopened and cut
    let out = r.handle(Event::LogReopened, 3, &log);
    assert_eq!(resigned(&out), vec![3]);
    assert_eq!(r.role(), Role::Recovering);
    // A newer registration that still names it leader at epoch 3 (an ISR change) does
    // not let it append at that epoch again.
    let mut same_epoch = registration(1, 3, &[1, 2]);
    same_epoch.partition_epoch = 4;
    r.handle(Event::Registration(same_epoch), 4, &log);
    assert_eq!(r.role(), Role::Recovering);
    // Not answered in time: it asks again.
    let out = r.handle(Event::Tick, 4 + DEFAULT_ALTER_ISR_TIMEOUT_MS, &log);
    assert_eq!(resigned(&out), vec![3]);
    // The controller re-elects it at epoch 4: it leads again, from its cut log.
    let mut again = registration(1, 4, &[1, 2]);
    again.partition_epoch = 5;
    r.handle(Event::Registration(again), 10_000, &log);
    assert_eq!(r.role(), Role::Leader { leader_epoch: 4 });
    assert_eq!(r.check_produce(false), Ok(4));
}

#[test]
fn a_resigned_leader_follows_the_replica_elected_instead() {
    let (mut r, mut log) = failing_leader();
    r.handle(Event::LogFailed, 2, &log);
    log.end = 6;
    r.handle(Event::LogReopened, 3, &log);
    let out = r.handle(Event::Registration(registration(2, 4, &[1, 2, 3])), 4, &log);
    assert_eq!(
        r.role(),
        Role::Follower {
            leader: 2,
            leader_epoch: 4
        }
    );
    assert!(
        out.iter().any(|c| matches!(
            c,
            Command::SendFetch {
                leader: 2,
                request: FetchRequest {
                    fetch_offset: 6,
                    last_fetched_epoch: 3,
                    ..
                }
            }
        )),
        "{out:?}"
    );
}

#[test]
fn a_leader_that_lost_nothing_or_has_no_other_replica_leads_on_at_once() {
    // Non-durable policy: the log is reopened as recovery finds it, and nothing was lost.
    let mut log = MemLog::default();
    let mut config = ReplicaConfig::new(1, 101);
    config.durable = false;
    let mut r = Replica::new(config, 0);
    r.handle(Event::Registration(registration(1, 3, &[1, 2, 3])), 0, &log);
    log.append(3, 10);
    let out = r.handle(Event::LogFailed, 1, &log);
    assert_eq!(reopen_of(&out), Some(None));
    let out = r.handle(Event::LogReopened, 2, &log);
    assert!(resigned(&out).is_empty());
    assert_eq!(r.role(), Role::Leader { leader_epoch: 3 });
    // The only replica: nobody else can hold what it cut.
    let mut log = MemLog::default();
    let mut r = leader(1);
    let alone = PartitionRegistration {
        replicas: vec![1],
        isr: vec![1],
        leader: 1,
        leader_epoch: 0,
        partition_epoch: 0,
        reassignment: None,
    };
    r.handle(Event::Registration(alone), 0, &log);
    log.append(0, 10);
    log.flushed = 4;
    r.handle(Event::LogFailed, 1, &log);
    log.end = 4;
    let out = r.handle(Event::LogReopened, 2, &log);
    assert!(resigned(&out).is_empty());
    assert_eq!(r.role(), Role::Leader { leader_epoch: 0 });
}

#[test]
fn a_follower_whose_log_fails_fetches_again_from_its_durable_point() {
    let mut log = MemLog::default();
    let mut r = Replica::new(ReplicaConfig::new(2, 102), 0);
    r.handle(Event::Registration(registration(1, 3, &[1, 2, 3])), 0, &log);
    log.append(3, 10);
    log.flushed = 6;
    let out = r.handle(Event::LogFailed, 1, &log);
    assert_eq!(reopen_of(&out), Some(Some(6)));
    assert_eq!(r.role(), Role::Recovering);
    // Metadata that arrives meanwhile is taken up once the log is open again.
    r.remember_registration(registration(1, 4, &[1, 2, 3]));
    log.end = 6;
    let out = r.handle(Event::LogReopened, 2, &log);
    assert!(resigned(&out).is_empty());
    assert_eq!(
        r.role(),
        Role::Follower {
            leader: 1,
            leader_epoch: 4
        }
    );
    assert!(
        out.iter()
            .any(|c| matches!(c, Command::SendFetch { request, .. } if request.fetch_offset == 6)),
        "{out:?}"
    );
}

/// A full disk refuses a follower's append without failing its log: the follower fetches
/// the same offset again after a pause, and catches up once the append goes through
/// (before, it waited for an append that never came and stopped replicating for good).
#[test]
fn a_follower_whose_append_is_refused_for_space_fetches_the_same_offset_again() {
    use super::follower::APPEND_REFUSED_BACKOFF_MS;
    let mut log = MemLog::default();
    let mut f = Replica::new(ReplicaConfig::new(2, 102), 0);
    let out = f.handle(Event::Registration(registration(1, 0, &[1, 2])), 0, &log);
    let first = sent_fetch(&out).expect("fetches at once");
    let answer = |fetch_id| Event::FetchAnswered {
        answer: FetchAnswer::Data {
            fetch_id,
            leader_epoch: 0,
            from_offset: 0,
            high_watermark: Some(0),
            log_start_offset: 0,
        },
        batches: stored_batch(0, 10),
    };
    let out = f.handle(answer(first.fetch_id), 1, &log);
    assert!(
        matches!(out[..], [Command::AppendReplicated { .. }]),
        "{out:?}"
    );
    assert!(f.handle(Event::AppendRefused, 2, &log).is_empty());
    // Nothing before the pause ends; then the same offset again.
    assert!(sent_fetch(&f.handle(Event::Tick, 2 + APPEND_REFUSED_BACKOFF_MS - 1, &log)).is_none());
    let out = f.handle(Event::Tick, 2 + APPEND_REFUSED_BACKOFF_MS, &log);
    let again = sent_fetch(&out).expect("fetches again after the pause");
    assert_eq!(again.fetch_offset, 0);
    // Space freed: the append goes through and replication goes on.
    let out = f.handle(answer(again.fetch_id), 3 + APPEND_REFUSED_BACKOFF_MS, &log);
    assert!(
        matches!(out[..], [Command::AppendReplicated { .. }]),
        "{out:?}"
    );
    log.append(0, 10);
    let out = f.handle(Event::LogAppended, 4 + APPEND_REFUSED_BACKOFF_MS, &log);
    assert!(out.contains(&Command::Flush), "{out:?}");
}

#[test]
fn a_leader_whose_lease_lapsed_steps_aside_and_leads_again_at_its_epoch_once_renewed() {
    let mut log = MemLog::default();
    let mut r = leader(2);
    r.handle(Event::Registration(registration(1, 4, &[1, 2, 3])), 0, &log);
    log.append(4, 10);
    log.flushed = 10;
    r.handle(Event::LogAppended, 1, &log);
    r.handle(fetch(2, 4, 6, 4), 2, &log);
    r.handle(fetch(3, 4, 6, 4), 3, &log);
    assert_eq!(r.high_watermark(), 6);

    // Cut off from the controller: what waits under epoch 4 is failed at once, new
    // produces are refused naming no leader (the metadata here may be stale), and the
    // replica no longer reports itself leader (reads are refused too).
    let out = r.handle(Event::LeaseLapsed, 4, &log);
    assert_eq!(out, vec![Command::LeadershipEnded { leader_epoch: 4 }]);
    assert_eq!(
        r.check_produce(false),
        Err(ProduceRefusal::NotLeader {
            leader: NO_LEADER,
            leader_epoch: 4
        })
    );
    assert_eq!(
        r.role(),
        Role::Follower {
            leader: NO_LEADER,
            leader_epoch: 4
        }
    );
    assert_eq!(r.known_leader(), NO_LEADER);
    assert!(
        r.handle(Event::LeaseLapsed, 5, &log).is_empty(),
        "a second lapse changes nothing"
    );

    // Followers that still reach it keep replicating; what they commit is published
    // (it is committed whoever leads), but no append is answered until renewal.
    let out = r.handle(fetch(2, 4, 10, 4), 6, &log);
    assert_eq!(
        published(&out),
        Vec::<i64>::new(),
        "3 has not caught up yet"
    );
    let out = r.handle(fetch(3, 4, 10, 4), 7, &log);
    assert_eq!(published(&out), vec![10]);

    // Renewed while the metadata still names it leader at epoch 4: it leads again.
    r.handle(Event::LeaseRenewed, 8, &log);
    assert_eq!(r.role(), Role::Leader { leader_epoch: 4 });
    assert_eq!(r.check_produce(true), Ok(4));
    assert_eq!(r.known_leader(), 1);
}

#[test]
fn a_lapsed_leader_that_learns_of_a_newer_leader_follows_it_once_renewed() {
    let log = MemLog::default();
    let mut r = leader(1);
    r.handle(Event::Registration(registration(1, 4, &[1, 2, 3])), 0, &log);
    r.handle(Event::LeaseLapsed, 1, &log);
    // The network heals: the metadata that arrives says broker 2 leads at epoch 5.
    r.handle(Event::Registration(registration(2, 5, &[2, 3])), 2, &log);
    r.handle(Event::LeaseRenewed, 3, &log);
    assert_eq!(
        r.role(),
        Role::Follower {
            leader: 2,
            leader_epoch: 5
        }
    );
    assert_eq!(
        r.check_produce(false),
        Err(ProduceRefusal::NotLeader {
            leader: 2,
            leader_epoch: 5
        })
    );
}

/// A leader alone in its replica set is at rest while its high watermark is published at
/// its position (the driver then skips its ticks): an append moves nothing a tick could
/// (the flush that follows is an event, and publishes); a lapsed lease ends the rest,
/// and a leader with a follower is never at rest.
#[test]
fn a_lone_leader_is_at_rest_between_events_and_one_with_followers_never_is() {
    let mut r = leader(1);
    let mut log = MemLog::default();
    let alone = PartitionRegistration {
        replicas: vec![1],
        ..registration(1, 1, &[1])
    };
    assert!(!r.at_rest(&log), "no metadata yet");
    r.handle(Event::Registration(alone.clone()), 1, &log);
    assert!(
        r.at_rest(&log),
        "an empty lone leader has nothing to wait for"
    );

    log.append(1, 5);
    r.handle(Event::LogAppended, 2, &log);
    assert!(
        r.at_rest(&log),
        "appended, not flushed: the flush is an event"
    );
    log.flushed = 5;
    let out = r.handle(Event::LogFlushed, 3, &log);
    assert_eq!(published(&out), [5]);
    assert!(r.at_rest(&log), "published at its position");

    r.handle(Event::LeaseLapsed, 4, &log);
    assert!(!r.at_rest(&log), "stepped aside");
    r.handle(Event::LeaseRenewed, 5, &log);
    assert!(r.at_rest(&log));

    let mut with_followers = leader(1);
    with_followers.handle(Event::Registration(registration(1, 1, &[1])), 1, &log);
    assert!(
        !with_followers.at_rest(&log),
        "followers' lag is timed by ticks"
    );
}
