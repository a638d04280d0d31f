//! Seeded simulation of one share group across member crashes and coordinator
//! failovers: the share-partition state machine (`partition.rs`), the windows and
//! snapshots a coordinator writes (`windows.rs`: [`Windows`], [`dirty_snapshots`]) and the
//! replay a new coordinator runs ([`Replay`]), with no I/O and one seed deciding
//! everything.
//!
//! A producer appends records, some with a delivery time. Members fetch (acquire),
//! acknowledge one record at a time (ACCEPT, RELEASE with a delay, REJECT, RENEW), leave
//! (their locks end at once) or crash holding locks. As the coordinator does, a request
//! changes the window at once, queues the snapshots of what it changed, and is answered
//! only once they are durable; durability comes later, for a prefix of the queue; an
//! answer may be lost on the way. The coordinator fails at random: a random prefix of
//! its queued writes reaches the log, the rest is lost with every unanswered request,
//! and a new coordinator is rebuilt from the durable log exactly as a shard loads.
//!
//! Checked, as clients and the durable log see it:
//!
//! - an ACCEPT that became durable is never delivered again, and a REJECTed record never;
//! - each delivery of a record carries a higher count than any durable one before it
//!   (a failover never forgets a delivery count), and none passes the limit;
//! - no record is handed out before its delivery time or the end of a durable release
//!   delay;
//! - no record is handed to a member while another holds a lock on it that is still
//!   valid as that member sees it, whichever coordinator handed it out (a new
//!   coordinator keeps the locks its log carries: docs/queues.md § What is promised);
//! - an acknowledgement is taken exactly when the member holds the record under a valid
//!   lock the current coordinator knows: one it handed out, or one the log it loaded
//!   carries.
//!
//! At the end, without faults, members accept everything: the group's start reaches the
//! end of the log (none lost).
//!
//! `cargo test -p weir-coordinator --lib sim::share` runs [`SEEDS`] seeds;
//! `WEIR_SHARE_SIM_SEEDS=100000` runs more, `WEIR_SHARE_SIM_SEED=n` replays one.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use super::rng::Rng;
use crate::share::partition::{AckKind, Acquired, ShareConfig};
use crate::share::windows::{Replay, StateWrite, Window, Windows, dirty_snapshots, topic_id_bytes};

/// Seeds of the default run.
const SEEDS: u64 = 200;
/// Steps per seed.
const STEPS: usize = 600;
/// Trace lines printed when a seed fails.
const TRACE_TAIL: usize = 80;
const MEMBERS: usize = 4;
const LOCK_MS: u64 = 1_000;
const LIMIT: u16 = 3;
/// Longest release delay and delivery-time offset the simulation asks for.
const MAX_DELAY_MS: u64 = 3_000;
const GROUP: &str = "g";
const TOPIC: &str = "t";
const TOPIC_ID: &str = "00000000-0000-4000-8000-0000000000a1";

#[derive(Debug, Clone, Copy)]
struct Hold {
    deadline_ms: u64,
}

/// The coordinator's latest handout of a record (or, after a failover, the lock its log
/// carried).
#[derive(Debug, Clone)]
struct Grant {
    member: String,
    incarnation: u32,
    deadline_ms: u64,
}

/// A member as the client sees itself.
#[derive(Debug, Default)]
struct Member {
    id: String,
    held: BTreeMap<i64, Hold>,
    /// Requests sent so far.
    sent: u64,
    /// The request that last acknowledged each offset, by its number.
    acked: BTreeMap<i64, u64>,
}

/// What a queued write answers, once durable.
#[derive(Debug)]
enum Answer {
    Acquired {
        member: usize,
        member_id: String,
        records: Vec<Acquired>,
        /// The request's number at its member.
        request: u64,
    },
    Acked {
        member: usize,
        member_id: String,
        offset: i64,
        kind: AckKind,
        at_ms: u64,
    },
    /// Nobody waits (a leave, a dead-letter copy).
    None,
}

#[derive(Debug)]
struct Queued {
    records: Vec<StateWrite>,
    /// Its number among the coordinator's writes.
    write: u64,
    answer: Answer,
}

struct Sim {
    rng: Rng,
    config: ShareConfig,
    now: u64,
    /// The data partition: each record's delivery time.
    data: Vec<u64>,
    /// The durable records of the group's `__share_group_state` partition.
    log: Vec<StateWrite>,
    /// Writes queued and not durable yet, in log order.
    queued: VecDeque<Queued>,
    windows: Windows<()>,
    /// The number of the current coordinator's last durable write.
    writes_durable: u64,
    incarnation: u32,
    members: Vec<Member>,
    next_member: usize,
    /// The latest handout of each record by the current coordinator.
    grants: BTreeMap<i64, Grant>,
    // What the durable log promises.
    accepted: BTreeSet<i64>,
    rejected: BTreeSet<i64>,
    /// Records copied to the dead-letter topic (a copy is there for good).
    dead_lettered: BTreeSet<i64>,
    counts: BTreeMap<i64, u16>,
    not_before: BTreeMap<i64, u64>,
    trace: Vec<String>,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let config = ShareConfig {
            lock_duration_ms: LOCK_MS,
            delivery_count_limit: LIMIT,
            max_record_locks: 8,
            max_window_records: 24,
            // Half the seeds name a dead-letter topic: archived records then wait for
            // their copy before the start may pass them.
            dead_letter: seed.is_multiple_of(2),
        };
        let mut sim = Sim {
            rng: Rng::new(seed),
            config,
            now: 1_000_000,
            data: Vec::new(),
            log: Vec::new(),
            queued: VecDeque::new(),
            windows: Windows::default(),
            writes_durable: 0,
            incarnation: 0,
            members: Vec::new(),
            next_member: 0,
            grants: BTreeMap::new(),
            accepted: BTreeSet::new(),
            rejected: BTreeSet::new(),
            dead_lettered: BTreeSet::new(),
            counts: BTreeMap::new(),
            not_before: BTreeMap::new(),
            trace: Vec::new(),
        };
        sim.members = (0..MEMBERS).map(|_| sim.new_member()).collect();
        sim
    }

    fn new_member(&mut self) -> Member {
        self.next_member += 1;
        Member {
            id: format!("m{}", self.next_member),
            ..Member::default()
        }
    }

    fn window(&mut self) -> &mut Window<()> {
        self.windows
            .window(GROUP, TOPIC, TOPIC_ID, 0, self.config, 0)
            .expect("the simulation's names are valid")
    }

    fn produce(&mut self, n: u64) {
        for _ in 0..n {
            let offset = self.data.len() as i64;
            let at = match self.rng.chance(0.2) {
                true => self.now + self.rng.range(1, MAX_DELAY_MS),
                false => 0,
            };
            self.data.push(at);
            self.not_before.insert(offset, at);
        }
        self.trace
            .push(format!("produce {n} (end {})", self.data.len()));
    }

    /// Queues what the request changed, to be answered with `answer` once durable.
    fn queue(&mut self, answer: Answer) {
        let snapshots = dirty_snapshots(&mut self.windows, self.incarnation as i32)
            .expect("a snapshot encodes");
        if snapshots.records.is_empty() {
            // Nothing to write: answered at once.
            self.deliver(answer);
            return;
        }
        self.queued.push_back(Queued {
            records: snapshots.records,
            write: snapshots.write,
            answer,
        });
    }

    /// Dead-letter copies the coordinator makes within a request (they may fail: then
    /// later), of records whose archiving is durable.
    fn copy_dead_letters(&mut self) {
        if !self.config.dead_letter || self.rng.chance(0.3) {
            return;
        }
        let durable = self.writes_durable;
        let w = self.window();
        let mut copied = Vec::new();
        for a in w.copyable_dead_letters(4, durable) {
            w.dirty |= w.dead_lettered(a.offset);
            copied.push(a.offset);
        }
        if !copied.is_empty() {
            self.trace.push(format!("dead-letter copies {copied:?}"));
        }
        self.dead_lettered.extend(copied);
    }

    fn fetch(&mut self, i: usize) {
        let now = self.now;
        let max = self.rng.range(1, 5) as usize;
        let data_end = self.data.len() as i64;
        let from = self.window().window.end().max(0);
        let next: Vec<(i64, u64)> = (from..data_end)
            .map(|o| (o, self.data[o as usize]))
            .collect();
        let member_id = self.members[i].id.clone();
        let w = self.window();
        // As the coordinator's acquire round: expire, read on, acquire.
        let held = w.window.acquired();
        if !w.window.expire(now).is_empty() || w.window.acquired() < held {
            w.dirty = true;
        }
        w.window.extend(next);
        let records = w.window.acquire(&member_id, now, max);
        w.dirty |= !records.is_empty();
        self.check_handout(i, &records);
        for a in &records {
            let grant = Grant {
                member: member_id.clone(),
                incarnation: self.incarnation,
                deadline_ms: a.deadline_ms,
            };
            self.grants.insert(a.offset, grant);
        }
        self.copy_dead_letters();
        self.trace.push(format!(
            "{member_id} fetch -> {:?}",
            records
                .iter()
                .map(|a| (a.offset, a.delivery_count))
                .collect::<Vec<_>>()
        ));
        let m = &mut self.members[i];
        m.sent += 1;
        let request = m.sent;
        self.queue(Answer::Acquired {
            member: i,
            member_id,
            records,
            request,
        });
    }

    /// What a handout must respect, checked as the coordinator makes it.
    fn check_handout(&self, i: usize, records: &[Acquired]) {
        for a in records {
            let o = a.offset;
            assert!(
                !self.accepted.contains(&o),
                "accepted offset {o} handed out again"
            );
            assert!(
                !self.rejected.contains(&o),
                "rejected offset {o} handed out again"
            );
            assert!(
                !self.dead_lettered.contains(&o),
                "dead-lettered offset {o} handed out again"
            );
            let before = self.counts.get(&o).copied().unwrap_or(0);
            assert!(
                a.delivery_count > before,
                "offset {o} delivered with count {} after a durable count of {before}",
                a.delivery_count
            );
            assert!(
                a.delivery_count <= LIMIT,
                "offset {o} delivered {} times",
                a.delivery_count
            );
            let due = self.not_before[&o];
            assert!(
                due <= self.now,
                "offset {o} handed out at {} before {due}",
                self.now
            );
            for (j, m) in self.members.iter().enumerate() {
                if j == i {
                    continue;
                }
                if let Some(h) = m.held.get(&o) {
                    assert!(
                        h.deadline_ms <= self.now,
                        "offset {o} handed to {} while {} holds it until {} (now {})",
                        self.members[i].id,
                        m.id,
                        h.deadline_ms,
                        self.now
                    );
                }
            }
        }
    }

    fn acknowledge(&mut self, i: usize) {
        let held: Vec<i64> = self.members[i].held.keys().copied().collect();
        if held.is_empty() {
            return;
        }
        let offset = held[self.rng.range(0, held.len() as u64 - 1) as usize];
        let kind = match self.rng.range(0, 9) {
            0..=4 => AckKind::Accept,
            5 | 6 => AckKind::Release {
                delay_ms: self.rng.range(0, MAX_DELAY_MS),
            },
            7 => AckKind::Reject,
            _ => AckKind::Renew,
        };
        let now = self.now;
        let member_id = self.members[i].id.clone();
        // A client lets go of what it acknowledges, whatever the answer; it keeps what it
        // renews until the answer says so.
        let m = &mut self.members[i];
        m.sent += 1;
        m.acked.insert(offset, m.sent);
        if kind != AckKind::Renew {
            m.held.remove(&offset);
        }
        let w = self.window();
        let outcome = w.window.acknowledge(&member_id, offset, kind, now);
        w.dirty |= outcome.is_ok();
        // Taken exactly when this coordinator's latest handout of the record is to this
        // member under a lock still running (the member may not know of that handout
        // yet: its answer may still be on the way).
        let granted = self.grants.get(&offset).is_some_and(|g| {
            g.member == member_id && g.incarnation == self.incarnation && g.deadline_ms > now
        });
        assert_eq!(
            outcome.is_ok(),
            granted,
            "{member_id}'s {kind:?} of {offset} at coordinator {}, now {now}: {outcome:?} (latest handout {:?})",
            self.incarnation,
            self.grants.get(&offset)
        );
        match kind {
            AckKind::Renew if outcome.is_ok() => {
                if let Some(g) = self.grants.get_mut(&offset) {
                    g.deadline_ms = now + LOCK_MS;
                }
            }
            _ if outcome.is_ok() => {
                self.grants.remove(&offset);
            }
            _ => {}
        }
        self.copy_dead_letters();
        self.trace.push(format!(
            "{member_id} {kind:?} {offset} -> {}",
            outcome.is_ok()
        ));
        let answer = match outcome {
            Ok(_) => Answer::Acked {
                member: i,
                member_id,
                offset,
                kind,
                at_ms: now,
            },
            Err(_) => Answer::None,
        };
        self.queue(answer);
    }

    /// The member leaves (its locks end at once) or crashes (they run out); a new one
    /// takes its place.
    fn leave_or_crash(&mut self, i: usize, leave: bool) {
        let member_id = self.members[i].id.clone();
        self.members[i] = self.new_member();
        self.trace.push(format!(
            "{member_id} {}",
            if leave { "leaves" } else { "crashes" }
        ));
        if leave {
            let w = self.window();
            let held = w.window.acquired();
            w.window.release_member(&member_id);
            w.dirty |= w.window.acquired() < held;
            self.queue(Answer::None);
        }
    }

    /// The first `n` queued writes become durable; each answer is lost with `lose`.
    fn make_durable(&mut self, n: usize, lose: f64) {
        for _ in 0..n.min(self.queued.len()) {
            let q = self.queued.pop_front().expect("counted");
            self.log.extend(q.records);
            self.writes_durable = q.write;
            // What the log now promises.
            match &q.answer {
                Answer::Acquired { records, .. } => {
                    for a in records {
                        let count = self.counts.entry(a.offset).or_default();
                        *count = (*count).max(a.delivery_count);
                    }
                }
                Answer::Acked {
                    offset,
                    kind,
                    at_ms,
                    ..
                } => match kind {
                    AckKind::Accept => {
                        assert!(!self.rejected.contains(offset));
                        assert!(
                            !self.dead_lettered.contains(offset),
                            "dead-lettered offset {offset} accepted"
                        );
                        self.accepted.insert(*offset);
                    }
                    AckKind::Reject => {
                        assert!(!self.accepted.contains(offset));
                        self.rejected.insert(*offset);
                    }
                    AckKind::Release { delay_ms } => {
                        let due = self.not_before.entry(*offset).or_default();
                        *due = (*due).max(at_ms + delay_ms);
                    }
                    AckKind::Renew => {}
                },
                Answer::None => {}
            }
            if self.rng.chance(lose) {
                self.trace.push("an answer is lost".to_string());
                continue;
            }
            self.deliver(q.answer);
        }
    }

    fn deliver(&mut self, answer: Answer) {
        match answer {
            Answer::Acquired {
                member,
                member_id,
                records,
                request,
            } => {
                let m = &mut self.members[member];
                if m.id != member_id {
                    return; // it left or crashed meanwhile
                }
                // A record it acknowledged since it asked is not taken up again (its
                // acknowledgement may have applied to this very handout).
                for a in records
                    .into_iter()
                    .filter(|a| m.acked.get(&a.offset).is_none_or(|&n| n < request))
                {
                    let hold = Hold {
                        deadline_ms: a.deadline_ms,
                    };
                    m.held.insert(a.offset, hold);
                }
            }
            Answer::Acked {
                member,
                member_id,
                offset,
                kind: AckKind::Renew,
                at_ms,
            } => {
                let m = &mut self.members[member];
                if m.id == member_id
                    && let Some(h) = m.held.get_mut(&offset)
                {
                    h.deadline_ms = at_ms + LOCK_MS;
                }
            }
            Answer::Acked { .. } | Answer::None => {}
        }
    }

    /// The coordinator fails: the first `kept` queued writes reach the log, the rest is
    /// lost with every unanswered request; a new coordinator loads from the log.
    fn failover(&mut self, kept: usize) {
        self.make_durable(kept, 1.0);
        let lost = self.queued.len();
        self.queued.clear();
        let mut replay = Replay::default();
        for w in &self.log {
            replay
                .apply(&w.key, w.value.as_deref(), w.locks.as_deref())
                .expect("the coordinator's own records replay");
        }
        let known = HashMap::from([(topic_id_bytes(TOPIC_ID), TOPIC_ID.to_string())]);
        self.windows = replay.finish(&known).remove(GROUP).unwrap_or_default();
        self.writes_durable = 0;
        self.incarnation += 1;
        // The new coordinator knows the locks its log carries, and only those.
        let incarnation = self.incarnation;
        self.grants = self
            .windows
            .stored
            .values()
            .flat_map(|v| &v.locks)
            .flat_map(|l| {
                (l.first..=l.last).map(move |o| {
                    let grant = Grant {
                        member: l.member.clone(),
                        incarnation,
                        deadline_ms: l.deadline_ms,
                    };
                    (o, grant)
                })
            })
            .collect();
        self.trace.push(format!(
            "failover: {kept} writes kept, {lost} lost ({} records in the log)",
            self.log.len()
        ));
    }

    fn step(&mut self) {
        let i = self.rng.range(0, MEMBERS as u64 - 1) as usize;
        match self.rng.range(0, 99) {
            0..=9 => {
                let n = self.rng.range(1, 4);
                self.produce(n);
            }
            10..=39 => self.fetch(i),
            40..=64 => self.acknowledge(i),
            65..=79 => {
                let n = self.rng.range(1, 3) as usize;
                self.make_durable(n, 0.1);
            }
            80..=82 => self.leave_or_crash(i, true),
            83..=85 => self.leave_or_crash(i, false),
            86..=88 => {
                let kept = self.rng.range(0, self.queued.len() as u64) as usize;
                self.failover(kept);
            }
            _ => self.now += self.rng.range(0, 400),
        }
    }

    /// Without faults, members accept everything they get until the log is consumed.
    fn drain(&mut self) {
        let end = self.data.len() as i64;
        for round in 0..1_000 {
            self.now += MAX_DELAY_MS + LOCK_MS;
            let i = round % MEMBERS;
            // Earlier answers arrive; what they handed out has run out by now.
            self.make_durable(usize::MAX, 0.0);
            self.members[i].held.clear();
            self.fetch(i);
            self.make_durable(usize::MAX, 0.0);
            let held: Vec<i64> = self.members[i].held.keys().copied().collect();
            for offset in held {
                let member_id = self.members[i].id.clone();
                self.members[i].held.remove(&offset);
                let now = self.now;
                let w = self.window();
                w.window
                    .acknowledge(&member_id, offset, AckKind::Accept, now)
                    .expect("a member holding a fresh lock accepts");
                w.dirty = true;
                self.queue(Answer::Acked {
                    member: i,
                    member_id,
                    offset,
                    kind: AckKind::Accept,
                    at_ms: now,
                });
            }
            self.copy_dead_letters();
            self.queue(Answer::None);
            self.make_durable(usize::MAX, 0.0);
            if self.window().window.start() == end {
                return;
            }
        }
        let now = self.now;
        let w = &self.window().window;
        panic!(
            "the group's start stopped at {} of {end}: {:?}",
            w.start(),
            w.counts(now)
        );
    }
}

impl super::Simulation for Sim {
    const NAME: &'static str = "share";
    const SEEDS: u64 = SEEDS;
    const TRACE_TAIL: usize = TRACE_TAIL;

    fn new(seed: u64) -> Sim {
        Sim::new(seed)
    }

    fn run(&mut self) {
        for _ in 0..STEPS {
            self.step();
        }
        self.drain();
        // A new coordinator agrees: nothing left to deliver.
        self.failover(0);
        let end = self.data.len() as i64;
        assert_eq!(
            self.window().window.start(),
            end,
            "a failover lost the finish"
        );
    }

    fn trace(&self) -> &[String] {
        &self.trace
    }
}

#[test]
fn a_share_group_survives_member_crashes_coordinator_failovers_and_lost_writes() {
    super::run_seeds::<Sim>();
}
