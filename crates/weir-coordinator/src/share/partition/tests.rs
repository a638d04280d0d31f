use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

const LOCK: u64 = 1_000;

fn config(limit: u16) -> ShareConfig {
    ShareConfig {
        lock_duration_ms: LOCK,
        delivery_count_limit: limit,
        max_record_locks: 4,
        max_window_records: 8,
        dead_letter: false,
    }
}

#[test]
fn a_record_goes_round_until_accepted_and_the_start_moves_past_it() {
    let mut sp = SharePartition::new(config(5), 10);
    assert_eq!(sp.extend([(10, 0), (11, 0), (12, 0)]), 3);
    let got = sp.acquire("a", 0, 2);
    assert_eq!(got.iter().map(|a| a.offset).collect::<Vec<_>>(), [10, 11]);
    assert_eq!(got[0].delivery_count, 1);
    assert_eq!(got[0].deadline_ms, LOCK);
    // Another member gets only what is left.
    assert_eq!(sp.acquire("b", 0, 10).len(), 1);
    // Released with a delay: not handed out before it.
    sp.acknowledge("a", 10, AckKind::Release { delay_ms: 500 }, 100)
        .unwrap();
    assert!(sp.acquire("b", 599, 10).is_empty());
    let again = sp.acquire("b", 600, 10);
    assert_eq!((again[0].offset, again[0].delivery_count), (10, 2));
    sp.acknowledge("a", 11, AckKind::Accept, 700).unwrap();
    assert_eq!(sp.start(), 10, "10 is still held");
    sp.acknowledge("b", 10, AckKind::Accept, 700).unwrap();
    assert_eq!(sp.start(), 12);
    sp.acknowledge("b", 12, AckKind::Accept, 700).unwrap();
    assert_eq!((sp.start(), sp.end()), (13, 13));
}

#[test]
fn retention_past_the_window_finishes_what_it_removed() {
    let mut sp = SharePartition::new(config(5), 0);
    sp.extend([(0, 0), (1, 0), (2, 0), (3, 0)]);
    assert_eq!(sp.acquire("a", 0, 2).len(), 2);
    assert_eq!(sp.log_start_moved(2), 2);
    assert_eq!((sp.start(), sp.acquired()), (2, 0));
    assert_eq!(sp.log_start_moved(1), 0, "never backwards");
    assert_eq!(sp.log_start_moved(9), 2);
    assert_eq!((sp.start(), sp.end()), (9, 9));
}

#[test]
fn waking_dead_letters_and_a_new_config() {
    let mut sp = SharePartition::new(
        ShareConfig {
            dead_letter: true,
            ..config(5)
        },
        0,
    );
    sp.extend([(0, 0), (1, 0), (2, 500)]);
    assert_eq!(sp.next_due(0), Some(500), "the delayed record");
    let got = sp.acquire("a", 0, 2);
    assert_eq!(sp.next_due(0), Some(LOCK.min(500)));
    sp.acknowledge("a", got[0].offset, AckKind::Reject, 10)
        .unwrap();
    let pending = sp.pending_dead_letters(10);
    assert_eq!(pending.len(), 1);
    assert_eq!(sp.counts(10).archived_pending, 1);
    assert_eq!(pending[0].reason, ArchiveReason::Rejected);
    assert_eq!(sp.start(), 0, "the copy is not made yet");
    // Nothing expires before the earliest lock; then it does.
    assert!(sp.expire(LOCK - 1).is_empty());
    assert_eq!(sp.acquired(), 1);
    sp.expire(LOCK);
    assert_eq!(sp.acquired(), 0);
    // The group drops its dead-letter topic: the archived record is finished.
    sp.reconfigure(config(5));
    assert!(sp.pending_dead_letters(10).is_empty());
    assert_eq!(sp.counts(LOCK).archived_pending, 0);
    assert_eq!(sp.start(), 1);
}

#[test]
fn only_the_holder_with_a_valid_lock_may_acknowledge() {
    let mut sp = SharePartition::new(config(5), 0);
    sp.extend([(0, 0)]);
    sp.acquire("a", 0, 1);
    assert_eq!(
        sp.acknowledge("b", 0, AckKind::Accept, 1),
        Err(AckError::NotHeld(0))
    );
    // Renewing moves the deadline; past the old one the holder may still ack.
    sp.acknowledge("a", 0, AckKind::Renew, 900).unwrap();
    assert!(sp.expire(LOCK).is_empty());
    sp.acknowledge("a", 0, AckKind::Accept, LOCK + 100).unwrap();
    // A record never handed out, or gone, cannot be acknowledged.
    assert_eq!(
        sp.acknowledge("a", 7, AckKind::Accept, 0),
        Err(AckError::NotHeld(7))
    );
}

#[test]
fn an_expired_lock_hands_the_record_on_and_a_late_ack_is_refused() {
    let mut sp = SharePartition::new(config(5), 0);
    sp.extend([(0, 0)]);
    sp.acquire("slow", 0, 1);
    assert!(sp.expire(LOCK).is_empty());
    let got = sp.acquire("fast", LOCK, 1);
    assert_eq!(got[0].delivery_count, 2);
    assert_eq!(
        sp.acknowledge("slow", 0, AckKind::Accept, LOCK + 1),
        Err(AckError::NotHeld(0))
    );
}

#[test]
fn a_leaving_member_gives_back_only_its_own_records_counts_kept() {
    let mut sp = SharePartition::new(config(2), 0);
    sp.extend([(0, 0), (1, 0), (2, 0)]);
    sp.acquire("a", 0, 1);
    sp.acquire("stays", 0, 1);
    assert!(sp.release_member("nobody").is_empty());
    assert_eq!(sp.acquired(), 2);
    sp.release_member("a");
    assert_eq!(sp.acquired(), 1);
    // Offset 0 goes out again, at once and to anyone, as its second delivery; offset 1
    // is still the other member's.
    let again = sp.acquire("b", 1, 2);
    let got: Vec<(i64, u16)> = again.iter().map(|a| (a.offset, a.delivery_count)).collect();
    assert_eq!(got, [(0, 2), (2, 1)]);
    sp.acknowledge("stays", 1, AckKind::Accept, 2).unwrap();
    // At the delivery limit a record given back is archived, as with an expired lock.
    let archived = sp.release_member("b");
    assert_eq!(archived.iter().map(|a| a.offset).collect::<Vec<_>>(), [0]);
}

#[test]
fn the_delivery_limit_and_reject_archive_and_a_dead_letter_topic_holds_the_start() {
    let mut sp = SharePartition::new(
        ShareConfig {
            dead_letter: true,
            ..config(2)
        },
        0,
    );
    sp.extend([(0, 0), (1, 0)]);
    sp.acquire("a", 0, 2);
    let rejected = sp.acknowledge("a", 1, AckKind::Reject, 0).unwrap();
    assert_eq!(rejected.map(|a| a.reason), Some(ArchiveReason::Rejected));
    sp.acknowledge("a", 0, AckKind::Release { delay_ms: 0 }, 0)
        .unwrap();
    sp.acquire("a", 0, 2);
    // The second delivery is the last: its expiry archives it.
    let expired = sp.expire(LOCK);
    assert_eq!(
        expired,
        [Archived {
            offset: 0,
            delivery_count: 2,
            reason: ArchiveReason::LockExpiredAtLimit
        }]
    );
    assert_eq!(sp.counts(LOCK).archived_pending, 2);
    assert_eq!(sp.pending_dead_letters(10).len(), 2);
    assert_eq!(
        sp.start(),
        0,
        "archived records wait for their dead-letter copy"
    );
    assert!(sp.dead_lettered(1));
    assert_eq!(sp.start(), 0);
    assert!(sp.dead_lettered(0));
    assert_eq!(sp.start(), 2);
}

#[test]
fn delays_over_the_limit_are_refused_and_change_nothing() {
    let mut sp = SharePartition::new(config(5), 0);
    sp.extend([(0, 0)]);
    sp.acquire("a", 0, 1);
    let too_long = MAX_DELIVERY_DELAY_MS + 1;
    assert_eq!(
        sp.acknowledge("a", 0, AckKind::Release { delay_ms: too_long }, 0),
        Err(AckError::DelayTooLong(too_long))
    );
    assert!(matches!(
        sp.state(0),
        Some((RecordState::Acquired { .. }, 1, 0))
    ));
}

#[test]
fn the_window_and_the_locks_are_bounded() {
    let mut sp = SharePartition::new(config(5), 0);
    assert_eq!(sp.extend((0..20).map(|o| (o, 0))), 8);
    assert_eq!(sp.end(), 8);
    assert_eq!(sp.acquire("a", 0, 100).len(), 4);
    assert!(sp.acquire("b", 0, 100).is_empty());
    sp.forfeit_locks();
    assert_eq!(sp.acquire("b", 0, 100).len(), 4);
}

#[test]
fn records_the_filter_skips_are_finished_without_room_or_delivery() {
    let mut sp = SharePartition::new(config(5), 0);
    // 0 and 1 skipped: the start passes them at once.
    let taken = sp.extend_filtered([(0, None), (1, None), (2, Some(0)), (3, None), (4, Some(0))]);
    assert_eq!(taken, 2);
    assert_eq!((sp.start(), sp.end(), sp.filtered_out()), (2, 5, 3));
    assert_eq!(sp.state(3), None);
    let got = sp.acquire("a", 0, 10);
    assert_eq!(got.iter().map(|a| a.offset).collect::<Vec<_>>(), [2, 4]);
    sp.acknowledge("a", 2, AckKind::Accept, 1).unwrap();
    assert_eq!(sp.start(), 4, "3 was skipped: finished");
    // Skipped records take no room: a full window still passes them, up to the first
    // record it would have to take.
    let mut full = SharePartition::new(config(5), 0);
    full.extend((0..8).map(|o| (o, 0)));
    assert!(!full.has_room());
    assert_eq!(
        full.extend_filtered([(8, None), (9, None), (10, Some(0)), (11, None)]),
        0
    );
    assert_eq!((full.end(), full.filtered_out()), (10, 2));
    // All skipped in an empty window: start and end move together.
    let mut empty = SharePartition::new(config(5), 7);
    empty.extend_filtered((7..20).map(|o| (o, None)));
    assert_eq!((empty.start(), empty.end()), (20, 20));
}

#[test]
fn a_new_filter_takes_only_records_never_delivered_and_gaps_survive_a_failover() {
    let mut sp = SharePartition::new(config(5), 0);
    sp.extend_filtered([
        (0, Some(0)),
        (1, None),
        (2, Some(0)),
        (3, Some(0)),
        (4, Some(900)),
    ]);
    let got = sp.acquire("a", 0, 1);
    assert_eq!(got[0].offset, 0);
    sp.acknowledge("a", 0, AckKind::Release { delay_ms: 0 }, 1)
        .unwrap();
    assert_eq!(sp.undelivered(), [2, 3, 4]);
    assert!(!sp.filter_out(0), "delivered once: it stays");
    assert!(sp.filter_out(3));
    assert!(
        sp.filter_out(4),
        "a delayed record never delivered goes too"
    );
    assert!(!sp.filter_out(4));
    assert_eq!(sp.filtered_out(), 3);
    assert_eq!(sp.undelivered(), [2]);
    // A new coordinator: the snapshot ends after the last record delivered (offset 0);
    // the rest is read from the log again, under the filter, which skips what it skipped
    // before. The count starts again.
    let (mut loaded, _) = SharePartition::load(config(5), &sp.snapshot(1), []);
    assert_eq!((loaded.start(), loaded.end()), (0, 1));
    assert_eq!(loaded.filtered_out(), 0);
    loaded.extend_filtered([(1, None), (2, Some(0)), (3, None), (4, None)]);
    assert_eq!((loaded.start(), loaded.end()), (0, 5));
    assert_eq!(loaded.state(1), None);
    assert_eq!(loaded.state(3), None);
    let got = loaded.acquire("b", 10, 10);
    assert_eq!(got.iter().map(|a| a.offset).collect::<Vec<_>>(), [0, 2]);
}

/// One step of a random run.
#[derive(Debug, Clone)]
enum Op {
    Extend(u8),
    Acquire {
        member: u8,
        max: u8,
    },
    Ack {
        member: u8,
        pick: u8,
        kind: u8,
        delay: u16,
    },
    Advance(u16),
    Expire,
    Forfeit,
    /// A new leader: the window written as a snapshot and loaded again, by this release
    /// (`false`: its locks kept) or by one before locks were carried (`true`: the value
    /// read alone, its locks forfeited).
    Failover(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1u8..6).prop_map(Op::Extend),
        (0u8..3, 1u8..5).prop_map(|(member, max)| Op::Acquire { member, max }),
        (0u8..3, any::<u8>(), 0u8..4, 0u16..3000).prop_map(|(member, pick, kind, delay)| Op::Ack {
            member,
            pick,
            kind,
            delay
        }),
        (0u16..1500).prop_map(Op::Advance),
        Just(Op::Expire),
        Just(Op::Forfeit),
        any::<bool>().prop_map(Op::Failover),
    ]
}

proptest! {
    /// Whatever members do and however time passes: no record is handed to a second
    /// member while a lock on it is valid, an accepted record is never handed out again,
    /// no delivery goes past the limit, no record comes before its not-before time, a
    /// record the filter skips is never handed out, and the start only moves forward, over
    /// finished records.
    #[test]
    fn the_window_keeps_its_promises(ops in proptest::collection::vec(op(), 1..200)) {
        const LIMIT: u16 = 3;
        let mut sp = SharePartition::new(config(LIMIT), 0);
        let mut now = 0u64;
        let mut next = 0i64;
        // What the test knows: offset -> (holder, lock deadline) of the latest handout,
        // and the offsets accepted.
        let mut held: BTreeMap<i64, (u8, u64)> = BTreeMap::new();
        let mut accepted = std::collections::BTreeSet::new();
        let mut not_before: BTreeMap<i64, u64> = BTreeMap::new();
        let mut skipped = std::collections::BTreeSet::new();
        // The log as the window has read it: offset -> not-before time (None: the filter
        // skips it), read again by a new leader from where its snapshot ends.
        let mut log: BTreeMap<i64, Option<u64>> = BTreeMap::new();
        for op in ops {
            let start = sp.start();
            match op {
                Op::Extend(n) => {
                    // Every offset 5k + 3 is one the group's filter skips.
                    let records: Vec<(i64, Option<u64>)> = (0..n as i64)
                        .map(|i| next + 2 * i)
                        .map(|o| (o, (o % 5 != 3).then_some(now + (o as u64 % 3) * 400)))
                        .collect();
                    sp.extend_filtered(records.clone());
                    for &(o, nb) in records.iter().filter(|(o, _)| *o < sp.end()) {
                        log.insert(o, nb);
                        match nb {
                            Some(nb) => {
                                not_before.insert(o, nb);
                            }
                            None => {
                                skipped.insert(o);
                            }
                        }
                    }
                    next = next.max(sp.end());
                }
                Op::Acquire { member, max } => {
                    // A fetch that is told enough is due reads nothing more: then the
                    // window must hand out all it asked for (or all the locks allow).
                    let due = sp.has_due(now, max as usize);
                    let room = sp.config().max_record_locks - sp.acquired();
                    let got = sp.acquire(&member.to_string(), now, max as usize);
                    prop_assert_eq!(due, got.len() == (max as usize).min(room));
                    for a in got {
                        if let Some(&(holder, deadline)) = held.get(&a.offset) {
                            prop_assert!(
                                deadline <= now,
                                "offset {} handed to {member} while {holder} holds it until {deadline} (now {now})",
                                a.offset
                            );
                        }
                        prop_assert!(!accepted.contains(&a.offset), "accepted offset {} handed out again", a.offset);
                        prop_assert!(!skipped.contains(&a.offset), "filtered offset {} handed out", a.offset);
                        prop_assert!(a.delivery_count <= LIMIT, "delivery {} of offset {}", a.delivery_count, a.offset);
                        prop_assert!(not_before[&a.offset] <= now, "offset {} handed out early", a.offset);
                        held.insert(a.offset, (member, a.deadline_ms));
                    }
                }
                Op::Ack { member, pick, kind, delay } => {
                    let mine: Vec<i64> = held
                        .iter()
                        .filter(|(_, (m, _))| *m == member)
                        .map(|(o, _)| *o)
                        .collect();
                    if mine.is_empty() {
                        continue;
                    }
                    let offset = mine[pick as usize % mine.len()];
                    let kind = match kind {
                        0 => AckKind::Accept,
                        1 => AckKind::Release { delay_ms: delay as u64 },
                        2 => AckKind::Reject,
                        _ => AckKind::Renew,
                    };
                    let valid = held[&offset].1 > now && matches!(
                        sp.state(offset),
                        Some((RecordState::Acquired { member: m, .. }, _, _)) if **m == *member.to_string()
                    );
                    match sp.acknowledge(&member.to_string(), offset, kind, now) {
                        Ok(_) => {
                            prop_assert!(valid, "an ack of {offset} by {member} taken without a valid lock");
                            match kind {
                                AckKind::Accept => {
                                    accepted.insert(offset);
                                    held.remove(&offset);
                                }
                                AckKind::Renew => {
                                    held.insert(offset, (member, now + LOCK));
                                }
                                AckKind::Release { delay_ms } => {
                                    let nb = not_before[&offset].max(now + delay_ms);
                                    not_before.insert(offset, nb);
                                    held.remove(&offset);
                                }
                                AckKind::Reject => {
                                    held.remove(&offset);
                                }
                            }
                        }
                        Err(AckError::NotHeld(_)) => prop_assert!(!valid, "a valid ack of {offset} refused"),
                        Err(e) => prop_assert!(false, "unexpected {e}"),
                    }
                }
                Op::Advance(ms) => now += ms as u64,
                Op::Expire => {
                    sp.expire(now);
                }
                Op::Forfeit => {
                    for a in sp.forfeit_locks() {
                        prop_assert_eq!(a.delivery_count, LIMIT);
                    }
                    held.clear();
                }
                Op::Failover(older_reader) => {
                    let snapshot = sp.snapshot(1);
                    let bytes = snapshot.encode().unwrap();
                    let locks = snapshot.encode_locks().unwrap().filter(|_| !older_reader);
                    let decoded =
                        crate::share::StateValue::decode_with_locks(&bytes, locks.as_deref()).unwrap();
                    let (mut loaded, archived) = SharePartition::load(config(LIMIT), &decoded, []);
                    for a in archived {
                        prop_assert_eq!(a.delivery_count, LIMIT);
                    }
                    prop_assert!(loaded.end() <= sp.end());
                    loaded.extend_filtered(log.range(loaded.end()..).map(|(&o, &nb)| (o, nb)));
                    prop_assert_eq!(loaded.end(), sp.end(), "the log read again reaches the old window's end");
                    // It may move on: a record held at the limit is archived on load.
                    prop_assert!(loaded.start() >= sp.start());
                    prop_assert_eq!(loaded.acquired(), if older_reader { 0 } else { sp.acquired() });
                    sp = loaded;
                    if older_reader {
                        held.clear();
                    }
                }
            }
            prop_assert!(sp.start() >= start, "start went back from {start} to {}", sp.start());
            prop_assert!(sp.start() <= sp.end());
            for o in accepted.iter().filter(|&&o| o >= sp.start()) {
                prop_assert!(matches!(sp.state(*o), Some((RecordState::Acknowledged, _, _))));
            }
            let counts = sp.counts(now);
            prop_assert!(counts.acquired <= 4);
        }
    }
}

#[test]
fn a_snapshot_loads_back_with_its_locks_and_counts() {
    let mut sp = SharePartition::new(config(2), 0);
    sp.extend([(0, 0), (1, 0), (2, 0), (3, 500)]);
    sp.acquire("a", 0, 3);
    sp.acknowledge("a", 1, AckKind::Accept, 0).unwrap();
    sp.acknowledge("a", 2, AckKind::Release { delay_ms: 0 }, 0)
        .unwrap();
    sp.acquire("b", 10, 1); // offset 2, its second and last delivery
    let snapshot = sp.snapshot(3);
    let (mut loaded, archived) = SharePartition::load(config(2), &snapshot, []);
    assert_eq!(loaded.start(), 0);
    // Offset 3 was never delivered: the snapshot leaves it to the log, read again.
    assert_eq!(loaded.end(), 3);
    assert_eq!(loaded.state(3), None);
    loaded.extend([(3, 500)]);
    assert!(matches!(
        loaded.state(1),
        Some((RecordState::Acknowledged, 1, 0))
    ));
    assert!(matches!(
        loaded.state(3),
        Some((RecordState::Available, 0, 500))
    ));
    // The locks are the new leader's: held by the same members until the same deadlines,
    // not handed to anyone else, acknowledged by their holders.
    assert!(archived.is_empty());
    assert_eq!(loaded.acquired(), 2);
    assert!(matches!(
        loaded.state(0),
        Some((RecordState::Acquired { member, deadline_ms: LOCK }, 1, 0)) if &**member == "a"
    ));
    assert!(loaded.acquire("c", 400, 10).is_empty(), "3 is not due yet");
    loaded
        .acknowledge("b", 2, AckKind::Renew, 600)
        .expect("b holds 2");
    // Once a's lock runs out, 0 goes round again; b's renewed lock still holds 2.
    loaded.expire(LOCK);
    let got = loaded.acquire("c", LOCK, 10);
    assert_eq!(got.iter().map(|a| a.offset).collect::<Vec<_>>(), [0, 3]);
    assert_eq!(got[0].delivery_count, 2);
    assert_eq!(
        loaded.acknowledge("a", 0, AckKind::Accept, LOCK),
        Err(AckError::NotHeld(0))
    );

    // A leader of a release that did not carry locks reads the value alone: every lock is
    // forfeited, and offset 2, held at the limit, is archived rather than delivered again.
    let bytes = snapshot.encode().unwrap();
    let value_alone = crate::share::StateValue::decode(&bytes).unwrap();
    let (older, archived) = SharePartition::load(config(2), &value_alone, []);
    assert_eq!(older.acquired(), 0);
    assert!(matches!(
        older.state(0),
        Some((RecordState::Available, 1, 0))
    ));
    assert_eq!(archived.iter().map(|a| a.offset).collect::<Vec<_>>(), [2]);
}

#[test]
fn an_expired_record_is_archived_not_delivered_and_waits_for_its_dead_letter_copy() {
    let mut sp = SharePartition::new(
        ShareConfig {
            dead_letter: true,
            ..config(5)
        },
        0,
    );
    // 0 expires at 100, 1 never, 2 at 300, 3 at 100 but is held when its time comes.
    sp.extend_timed([
        (0, Some((0, 100))),
        (1, Some((0, NEVER_EXPIRES))),
        (2, Some((0, 300))),
        (3, Some((0, 100))),
    ]);
    assert!(sp.expire_records(99, 10).is_empty(), "nothing is due yet");
    let held = sp.acquire("a", 50, 1);
    assert_eq!(held[0].offset, 0);
    sp.acknowledge("a", 0, AckKind::Release { delay_ms: 0 }, 60)
        .unwrap();
    // The sweep, bounded: one per pass.
    let first = sp.expire_records(150, 1);
    assert_eq!(first.len(), 1);
    assert_eq!(
        (first[0].offset, first[0].reason),
        (0, ArchiveReason::Expired)
    );
    assert_eq!(first[0].delivery_count, 1, "a released record expires too");
    // A fetch never hands out an expired record: 3 is archived on the way to 1.
    let got = sp.acquire("b", 150, 10);
    assert_eq!(got.iter().map(|a| a.offset).collect::<Vec<_>>(), [1, 2]);
    assert!(matches!(
        sp.state(3),
        Some((
            RecordState::Archived {
                reason: ArchiveReason::Expired,
                copied: false
            },
            0,
            _
        ))
    ));
    // Held records do not expire while held.
    assert!(sp.expire_records(1_000, 10).is_empty());
    let pending: Vec<i64> = sp
        .pending_dead_letters(10)
        .iter()
        .map(|a| a.offset)
        .collect();
    assert_eq!(pending, [0, 3]);
    assert_eq!(sp.start(), 0, "an archived record waits for its copy");
    assert!(sp.dead_lettered(0));
    assert_eq!(sp.start(), 1);
}

#[test]
fn without_a_dead_letter_target_an_expired_record_is_finished_at_once() {
    let mut sp = SharePartition::new(config(5), 0);
    sp.extend_timed([(0, Some((0, 10))), (1, Some((0, 10)))]);
    assert_eq!(sp.expire_records(10, 10).len(), 2);
    assert_eq!((sp.start(), sp.end()), (2, 2));
    assert!(sp.pending_dead_letters(10).is_empty());
}
