//! A seeded simulation of transactions: producers sharing a few transactional ids run
//! transactions through the coordinator against simple in-memory partitions, while
//! producers crash and restart (a restarted one and its zombie run side by side), the
//! coordinator crashes (its internal log cut back to what was replicated, plus perhaps some
//! of what was not, and its state rebuilt by loading), messages and marker answers are
//! lost or delayed, and abandoned transactions time out. Then the faults stop and every
//! transaction must finish.
//!
//! The checker: a committed transaction's records are all in read_committed reads, an
//! aborted one's never; every transaction is all or nothing; no (producer id, epoch) is
//! handed to two producers; a fenced producer gets no append and no commit accepted; the
//! last stable offset never moves back; nothing hangs once the faults stop.
//!
//! `WEIR_SIM_SEEDS=N cargo test --release -p weir-coordinator txn::sim` runs N seeds.

use std::collections::{BTreeMap, BTreeSet};

use super::api::{
    AddPartitions, AppendFailure, AppendId, Command, EndTxn, InitProducerId, MarkerId,
    MarkerOutcome, Reply, RequestId, TxnConfig,
};
use super::coordinator::TxnCoordinator;
use super::state::TxnState;
use super::{ProducerIdAndEpoch, TopicPartition, TxnError, TxnResult};

#[path = "../../../../weir-cluster/tests/it/sim/rng.rs"]
#[allow(dead_code)]
mod rng;
use rng::Rng;

mod partition;
mod producer;
use partition::{Partition, ProduceError};
use producer::{Client, Phase};

const TOPIC: &str = "t";
const PARTITIONS: i32 = 3;
/// The simulated partition that stands for the group's `__consumer_offsets` partition
/// (after the data partitions): a transactional offset commit is a record there.
const OFFSETS: i32 = PARTITIONS;
/// The `__consumer_offsets` partition the group maps to (what the shell tells AddOffsetsToTxn).
const GROUP_PARTITION: i32 = 7;
const TXN_IDS: usize = 2;
const TXN_TIMEOUT_MS: i32 = 3_000;
const REQUEST_TIMEOUT_MS: i64 = 400;
/// A produce unanswered this long has an unknown outcome: the producer aborts.
const PRODUCE_TIMEOUT_MS: i64 = 2_500;
const TICK_MS: i64 = 100;
/// How often a message on the produce path is lost (a lost produce aborts its transaction).
const PRODUCE_LOSS: f64 = 0.02;
const FAULTS_UNTIL_MS: i64 = 30_000;
const NEW_TXNS_UNTIL_MS: i64 = 32_000;
const END_MS: i64 = 60_000;

#[derive(Debug, Clone)]
enum Call {
    Init(Option<ProducerIdAndEpoch>),
    Add(ProducerIdAndEpoch, Vec<i32>),
    End(ProducerIdAndEpoch, TxnResult),
    AddOffsets(ProducerIdAndEpoch),
}

#[derive(Debug)]
enum Msg {
    ToCoord {
        inst: usize,
        req: RequestId,
        call: Call,
    },
    ToClient {
        inst: usize,
        req: RequestId,
        reply: Reply,
    },
    AppendDone {
        inc: i32,
        id: AppendId,
        result: Result<usize, AppendFailure>,
    },
    PidAllocated {
        inc: i32,
        id: super::AllocId,
        pid: i64,
    },
    CoordUp {
        inc: i32,
    },
    LoadDone {
        inc: i32,
    },
    Marker {
        inc: i32,
        id: MarkerId,
        send: u64,
        part: i32,
        pid: i64,
        epoch: i16,
        result: TxnResult,
        tv2: bool,
    },
    MarkerResult {
        inc: i32,
        id: MarkerId,
        send: u64,
        part: i32,
        outcome: MarkerOutcome,
    },
    /// A produce reaches the partition leader, which verifies it with the coordinator.
    Produce {
        inst: usize,
        part: i32,
        pid: i64,
        epoch: i16,
        uid: u64,
        rec: u64,
    },
    /// The verified produce is appended (later: things may have moved on meanwhile).
    ProduceAppend {
        inst: usize,
        part: i32,
        pid: i64,
        epoch: i16,
        uid: u64,
        rec: u64,
        guard: u64,
    },
    /// The coordinator's answer to a partition leader's implicit add (TV2).
    ImplicitAdded {
        req: RequestId,
        reply: Reply,
    },
    ProduceResult {
        inst: usize,
        uid: u64,
        rec: u64,
        result: Result<(), ProduceError>,
    },
}

struct Sim {
    rng: Rng,
    now: i64,
    seq: u64,
    queue: BTreeMap<(i64, u64), Msg>,
    // The coordinator and its internal partition.
    coord: Option<TxnCoordinator>,
    inc: i32,
    ilog: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    replicated: usize,
    last_append_done: i64,
    appends: BTreeMap<AppendId, usize>,
    /// Markers travel to each partition in order (one channel per leader, as Kafka's), and
    /// only the answer to the latest send of a marker counts (Kafka's channel drops the
    /// earlier request when it times out and sends again): when a transaction completes,
    /// no older copy of its markers is still on its way.
    marker_channel: BTreeMap<i32, i64>,
    marker_sends: BTreeMap<(MarkerId, i32), u64>,
    client_channel: BTreeMap<usize, i64>,
    /// Implicit adds a partition leader asked for, with the produce waiting on each.
    leader_adds: BTreeMap<RequestId, (usize, i32, i64, i16, u64, u64)>,
    next_pid: i64,
    parts: Vec<Partition>,
    clients: Vec<Client>,
    requests: BTreeMap<RequestId, usize>,
    next_req: u64,
    next_uid: u64,
    next_rec: u64,
    next_guard: u64,
    // The checker's records.
    committed: BTreeSet<u64>,
    aborted: BTreeSet<u64>,
    accepted: BTreeMap<u64, BTreeSet<(i32, u64)>>,
    grants: BTreeMap<(usize, i64, i16), usize>,
    owner: BTreeMap<usize, usize>,
    fenced_at: BTreeMap<usize, i64>,
    violations: Vec<String>,
    stats: Stats,
    /// `WEIR_SIM_TRACE=1`: what happened, printed with a failure.
    trace: Option<Vec<String>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    committed: u64,
    aborted: u64,
    coordinator_crashes: u64,
    zombies: u64,
    timeouts_seen: u64,
    fenced: u64,
    /// Committed transactions that carried an offset commit.
    offsets_committed: u64,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut sim = Sim {
            rng: Rng::new(seed),
            now: 0,
            seq: 0,
            queue: BTreeMap::new(),
            coord: None,
            inc: 0,
            ilog: Vec::new(),
            replicated: 0,
            last_append_done: 0,
            appends: BTreeMap::new(),
            marker_channel: BTreeMap::new(),
            marker_sends: BTreeMap::new(),
            client_channel: BTreeMap::new(),
            leader_adds: BTreeMap::new(),
            next_pid: 1000,
            parts: (0..=OFFSETS).map(|_| Partition::default()).collect(),
            clients: Vec::new(),
            requests: BTreeMap::new(),
            next_req: 0,
            next_uid: 0,
            next_rec: 0,
            next_guard: 0,
            committed: BTreeSet::new(),
            aborted: BTreeSet::new(),
            accepted: BTreeMap::new(),
            grants: BTreeMap::new(),
            owner: BTreeMap::new(),
            fenced_at: BTreeMap::new(),
            violations: Vec::new(),
            stats: Stats::default(),
            trace: std::env::var_os("WEIR_SIM_TRACE").map(|_| Vec::new()),
        };
        sim.send(0, Msg::CoordUp { inc: 1 });
        for txn_id in 0..TXN_IDS {
            sim.start_client(txn_id);
        }
        sim
    }

    fn note(&mut self, what: impl FnOnce() -> String) {
        if let Some(t) = self.trace.as_mut() {
            t.push(format!("t={} {}", self.now, what()));
        }
    }

    fn faulty(&self) -> bool {
        self.now < FAULTS_UNTIL_MS
    }

    fn send(&mut self, delay: i64, msg: Msg) {
        self.seq += 1;
        self.queue.insert((self.now + delay, self.seq), msg);
    }

    /// A message over the network: delayed, and lost now and then while faults run.
    fn send_lossy(&mut self, msg: Msg, loss: f64) {
        if self.faulty() && self.rng.chance(loss) {
            return;
        }
        let delay = if self.faulty() && self.rng.chance(0.05) {
            self.rng.range(200, 2_000) as i64
        } else {
            self.rng.range(1, 30) as i64
        };
        self.send(delay, msg);
    }

    fn txn_name(txn_id: usize) -> String {
        format!("txn-{txn_id}")
    }

    fn run(&mut self) -> Result<Stats, String> {
        let mut next_tick = 0;
        while self.now <= END_MS {
            let next_msg = self.queue.first_key_value().map(|((t, _), _)| *t);
            match next_msg {
                Some(t) if t <= next_tick => {
                    let ((t, _), msg) = self.queue.pop_first().expect("peeked");
                    self.now = t;
                    self.deliver(msg);
                }
                _ => {
                    self.now = next_tick;
                    next_tick += TICK_MS;
                    self.tick();
                }
            }
            if !self.violations.is_empty() {
                break;
            }
        }
        self.final_checks();
        if self.violations.is_empty() {
            if let Some(t) = &self.trace {
                eprintln!("{}", t.join("\n"));
            }
            Ok(self.stats)
        } else {
            let trace = self
                .trace
                .as_ref()
                .map(|t| t.join("\n"))
                .unwrap_or_default();
            Err(format!("{trace}\n{}", self.violations.join("\n")))
        }
    }

    fn tick(&mut self) {
        if let Some(c) = self.coord.as_mut() {
            let cmds = c.tick(self.now);
            self.exec(cmds);
        }
        if self.faulty() {
            if self.coord.is_some() && self.rng.chance(0.004) {
                self.crash_coordinator();
            }
            if self.rng.chance(0.01) {
                // A producer crashes; a new one with its transactional id starts later.
                let live: Vec<usize> = (0..self.clients.len())
                    .filter(|&i| self.clients[i].alive)
                    .collect();
                if !live.is_empty() {
                    let i = live[self.rng.next_u64() as usize % live.len()];
                    self.clients[i].alive = false;
                    let txn_id = self.clients[i].txn_id;
                    self.start_client(txn_id);
                }
            }
            if self.rng.chance(0.005) {
                // A second instance while the first still runs: one of them is a zombie.
                let txn_id = self.rng.next_u64() as usize % TXN_IDS;
                self.stats.zombies += 1;
                self.start_client(txn_id);
            }
        }
        for i in 0..self.clients.len() {
            self.step_client(i);
        }
    }

    fn crash_coordinator(&mut self) {
        self.note(|| "coordinator crashes".into());
        self.stats.coordinator_crashes += 1;
        self.coord = None;
        // The new leader has what was replicated, and perhaps some of what was not.
        let unreplicated = (self.ilog.len() - self.replicated) as u64;
        let keep = self.replicated + self.rng.range(0, unreplicated) as usize;
        self.ilog.truncate(keep);
        self.replicated = keep;
        self.appends.clear();
        // Answers to the crashed coordinator are dropped from now on; its successor loads
        // at the next epoch.
        self.inc += 1;
        let inc = self.inc + 1;
        let delay = self.rng.range(50, 1_500) as i64;
        self.send(delay, Msg::CoordUp { inc });
    }

    fn config() -> TxnConfig {
        TxnConfig {
            marker_retry_ms: 1_000,
            ..TxnConfig::default()
        }
    }

    fn deliver(&mut self, msg: Msg) {
        match msg {
            Msg::CoordUp { inc } => {
                let records = self.ilog.len();
                self.note(|| format!("coordinator {inc} loads {records} records"));
                self.inc = inc;
                let mut c = TxnCoordinator::new(Self::config(), inc);
                for (k, v) in &self.ilog {
                    if let Err(e) = c.load_record(k, v.as_deref()) {
                        self.violations.push(format!("load failed: {e}"));
                    }
                }
                self.coord = Some(c);
                let delay = self.rng.range(0, 200) as i64;
                self.send(delay, Msg::LoadDone { inc });
            }
            Msg::LoadDone { inc } => {
                if let Some(c) = self.coord.as_mut().filter(|_| inc == self.inc) {
                    let cmds = c.finish_loading(self.now);
                    self.exec(cmds);
                }
            }
            Msg::ToCoord { inst, req, call } => self.at_coordinator(inst, req, call),
            Msg::ToClient { inst, req, reply } => self.at_client(inst, req, reply),
            Msg::AppendDone { inc, id, result } => {
                if inc != self.inc || self.coord.is_none() {
                    return;
                }
                if let Ok(index) = result {
                    self.replicated = self.replicated.max(index + 1);
                }
                let now = self.now;
                let cmds =
                    self.coord
                        .as_mut()
                        .expect("checked")
                        .on_appended(id, result.map(|_| ()), now);
                self.exec(cmds);
            }
            Msg::PidAllocated { inc, id, pid } => {
                if inc != self.inc {
                    return;
                }
                let now = self.now;
                if let Some(c) = self.coord.as_mut() {
                    let cmds = c.on_producer_id(id, Ok(pid), now);
                    self.exec(cmds);
                }
            }
            Msg::Marker {
                inc,
                id,
                send,
                part,
                pid,
                epoch,
                result,
                tv2,
            } => {
                let outcome = if self.faulty() && self.rng.chance(0.1) {
                    MarkerOutcome::Retriable
                } else {
                    self.write_marker(part, pid, epoch, inc, result, tv2)
                };
                self.note(|| {
                    format!("marker {result:?} p{part} pid {pid} e{epoch} ce{inc}: {outcome:?}")
                });
                self.send_lossy(
                    Msg::MarkerResult {
                        inc,
                        id,
                        send,
                        part,
                        outcome,
                    },
                    0.1,
                );
            }
            Msg::MarkerResult {
                inc,
                id,
                send,
                part,
                outcome,
            } => {
                if inc != self.inc || self.marker_sends.get(&(id, part)) != Some(&send) {
                    return;
                }
                let now = self.now;
                if let Some(c) = self.coord.as_mut() {
                    let cmds = c.on_markers(id, vec![(topic_partition(part), outcome)], now);
                    self.exec(cmds);
                }
            }
            Msg::Produce {
                inst,
                part,
                pid,
                epoch,
                uid,
                rec,
            } => self.produce(inst, part, pid, epoch, uid, rec),
            Msg::ProduceAppend {
                inst,
                part,
                pid,
                epoch,
                uid,
                rec,
                guard,
            } => {
                let result = self.append_data(inst, part, pid, epoch, uid, rec, guard);
                self.note(|| {
                    format!(
                        "append i{inst} p{part} pid {pid} e{epoch} uid {uid} rec {rec}: {result:?}"
                    )
                });
                self.send_lossy(
                    Msg::ProduceResult {
                        inst,
                        uid,
                        rec,
                        result,
                    },
                    PRODUCE_LOSS,
                );
            }
            Msg::ImplicitAdded { req, reply } => self.implicit_add_answered(req, reply),
            Msg::ProduceResult {
                inst,
                uid,
                rec,
                result,
            } => self.produce_result(inst, uid, rec, result),
        }
    }

    fn exec(&mut self, cmds: Vec<Command>) {
        for cmd in cmds {
            match cmd {
                Command::Append { id, key, value } => {
                    if self.faulty() && self.rng.chance(0.02) {
                        self.send(
                            5,
                            Msg::AppendDone {
                                inc: self.inc,
                                id,
                                result: Err(AppendFailure::Unavailable),
                            },
                        );
                        continue;
                    }
                    self.ilog.push((key, value));
                    let index = self.ilog.len() - 1;
                    self.appends.insert(id, index);
                    // Replication acknowledges in log order.
                    let at = (self.now + self.rng.range(1, 60) as i64).max(self.last_append_done);
                    self.last_append_done = at;
                    self.seq += 1;
                    self.queue.insert(
                        (at, self.seq),
                        Msg::AppendDone {
                            inc: self.inc,
                            id,
                            result: Ok(index),
                        },
                    );
                }
                Command::AllocateProducerId { id } => {
                    self.next_pid += 1;
                    let pid = self.next_pid;
                    let delay = self.rng.range(1, 20) as i64;
                    self.send(
                        delay,
                        Msg::PidAllocated {
                            inc: self.inc,
                            id,
                            pid,
                        },
                    );
                }
                Command::WriteMarkers {
                    id,
                    producer_id,
                    producer_epoch,
                    coordinator_epoch,
                    result,
                    partitions,
                    transaction_version,
                    ..
                } => {
                    self.note(|| {
                        format!(
                            "markers {result:?} pid {producer_id} e{producer_epoch} {partitions:?}"
                        )
                    });
                    for tp in partitions {
                        let part = sim_partition(&tp);
                        let send = self.marker_sends.entry((id, part)).or_default();
                        *send += 1;
                        let msg = Msg::Marker {
                            inc: coordinator_epoch,
                            id,
                            send: *send,
                            part,
                            pid: producer_id,
                            epoch: producer_epoch,
                            result,
                            tv2: transaction_version.bumps_epoch(),
                        };
                        if self.faulty() && self.rng.chance(0.05) {
                            continue; // lost with its connection
                        }
                        let delay = if self.faulty() && self.rng.chance(0.05) {
                            self.rng.range(200, 2_000) as i64
                        } else {
                            self.rng.range(1, 30) as i64
                        };
                        let channel = self.marker_channel.entry(part).or_default();
                        let at = (self.now + delay).max(*channel);
                        *channel = at;
                        self.seq += 1;
                        self.queue.insert((at, self.seq), msg);
                    }
                }
                Command::Reply { request, reply } => {
                    if self.leader_adds.contains_key(&request) {
                        let msg = Msg::ImplicitAdded {
                            req: request,
                            reply,
                        };
                        self.send_lossy(msg, PRODUCE_LOSS);
                        continue;
                    }
                    let Some(inst) = self.requests.remove(&request) else {
                        continue;
                    };
                    self.note(|| format!("coordinator answers i{inst}: {reply:?}"));
                    self.record_decision(inst, &reply);
                    self.send_lossy(
                        Msg::ToClient {
                            inst,
                            req: request,
                            reply,
                        },
                        0.05,
                    );
                }
            }
        }
    }

    /// What the coordinator decided, checked when it decides (not when the answer lands).
    fn record_decision(&mut self, inst: usize, reply: &Reply) {
        let txn_id = self.clients[inst].txn_id;
        let granted = match reply {
            Reply::InitProducerId(Ok(p)) => {
                if let Some(&old) = self.owner.get(&txn_id).filter(|&&o| o != inst) {
                    self.fenced_at.entry(old).or_insert(self.now);
                }
                self.owner.insert(txn_id, inst);
                self.fenced_at.remove(&inst);
                Some(*p)
            }
            Reply::EndTxn(Ok(p)) => Some(*p),
            _ => None,
        };
        if let Some(p) = granted {
            let holder = *self
                .grants
                .entry((txn_id, p.producer_id, p.epoch))
                .or_insert(inst);
            if holder != inst {
                self.violations.push(format!(
                    "t={} producer id {} epoch {} of txn-{txn_id} handed to instance {inst} and {holder}",
                    self.now, p.producer_id, p.epoch
                ));
            }
        }
        if let (Reply::EndTxn(Ok(_)), Some(&at)) = (reply, self.fenced_at.get(&inst))
            && let Phase::Ending(TxnResult::Commit) = self.clients[inst].phase
        {
            self.violations.push(format!(
                "t={} fenced instance {inst} (since {at}) had a commit accepted",
                self.now
            ));
        }
    }

    fn at_coordinator(&mut self, inst: usize, req: RequestId, call: Call) {
        let txn = Self::txn_name(self.clients[inst].txn_id);
        let now = self.now;
        let Some(c) = self.coord.as_mut() else {
            let reply = match call {
                Call::Init(_) => Reply::InitProducerId(Err(TxnError::NotCoordinator)),
                Call::Add(..) => Reply::AddPartitions(Err(TxnError::NotCoordinator)),
                Call::End(..) => Reply::EndTxn(Err(TxnError::NotCoordinator)),
                Call::AddOffsets(..) => Reply::AddOffsets(Err(TxnError::NotCoordinator)),
            };
            self.requests.remove(&req);
            self.send_lossy(Msg::ToClient { inst, req, reply }, 0.05);
            return;
        };
        let version = self.clients[inst].version;
        let cmds = match call {
            Call::Init(expected) => c.init_producer_id(
                req,
                InitProducerId {
                    transactional_id: txn,
                    timeout_ms: TXN_TIMEOUT_MS,
                    expected,
                },
                now,
            ),
            Call::Add(p, parts) => c.add_partitions(
                req,
                AddPartitions {
                    transactional_id: txn,
                    producer_id: p.producer_id,
                    producer_epoch: p.epoch,
                    partitions: parts
                        .iter()
                        .map(|&i| TopicPartition::new(TOPIC, i))
                        .collect(),
                    verify_only: false,
                },
                now,
            ),
            Call::AddOffsets(p) => {
                c.add_offsets(req, txn, p.producer_id, p.epoch, GROUP_PARTITION, now)
            }
            Call::End(p, result) => c.end_txn(
                req,
                EndTxn {
                    transactional_id: txn,
                    producer_id: p.producer_id,
                    producer_epoch: p.epoch,
                    result,
                    version,
                },
                now,
            ),
        };
        self.exec(cmds);
    }

    // --- the end ----------------------------------------------------------------------

    fn final_checks(&mut self) {
        let mut visible: BTreeMap<u64, BTreeSet<(i32, u64)>> = BTreeMap::new();
        for (i, p) in self.parts.iter().enumerate() {
            for (uid, rec) in p.read_committed() {
                visible.entry(uid).or_default().insert((i as i32, rec));
            }
            if p.last_stable_offset() != p.log.len() {
                self.violations.push(format!(
                    "partition {i} still has an open transaction at the end"
                ));
            }
        }
        self.stats.offsets_committed = self
            .committed
            .iter()
            .filter(|uid| {
                self.accepted
                    .get(uid)
                    .is_some_and(|recs| recs.iter().any(|(p, _)| *p == OFFSETS))
            })
            .count() as u64;
        let none = BTreeSet::new();
        for (uid, accepted) in &self.accepted {
            let seen = visible.get(uid).unwrap_or(&none);
            if self.committed.contains(uid) && seen != accepted {
                self.violations.push(format!(
                    "committed transaction {uid}: {accepted:?} accepted, {seen:?} visible"
                ));
            }
            if self.aborted.contains(uid) && !seen.is_empty() {
                self.violations
                    .push(format!("aborted transaction {uid} visible: {seen:?}"));
            }
            if !seen.is_empty() && seen != accepted {
                self.violations.push(format!(
                    "transaction {uid} partly visible: {seen:?} of {accepted:?}"
                ));
            }
        }
        match &self.coord {
            None => self.violations.push("no coordinator at the end".into()),
            Some(c) => {
                for txn_id in 0..TXN_IDS {
                    if let Some(m) = c.metadata(&Self::txn_name(txn_id))
                        && matches!(
                            m.state,
                            TxnState::Ongoing | TxnState::PrepareCommit | TxnState::PrepareAbort
                        )
                    {
                        self.violations
                            .push(format!("txn-{txn_id} hangs in {:?}", m.state));
                    }
                }
            }
        }
        for (i, c) in self.clients.iter().enumerate() {
            if c.alive && !matches!(c.phase, Phase::Idle) {
                self.violations
                    .push(format!("producer {i} stuck in {:?}", c.phase));
            }
        }
    }
}

/// The partition a simulated partition index stands for.
fn topic_partition(part: i32) -> TopicPartition {
    if part == OFFSETS {
        TopicPartition::new(super::CONSUMER_OFFSETS_TOPIC, GROUP_PARTITION)
    } else {
        TopicPartition::new(TOPIC, part)
    }
}

fn sim_partition(tp: &TopicPartition) -> i32 {
    if tp.topic == super::CONSUMER_OFFSETS_TOPIC {
        assert_eq!(
            tp.partition, GROUP_PARTITION,
            "the group's offsets partition"
        );
        OFFSETS
    } else {
        tp.partition
    }
}

fn seeds() -> u64 {
    std::env::var("WEIR_SIM_SEEDS")
        .ok()
        .map(|s| s.parse().expect("WEIR_SIM_SEEDS is a number"))
        .unwrap_or(150)
}

#[test]
fn transactions_survive_crashes_zombies_and_lost_messages() {
    let start = std::time::Instant::now();
    let mut total = Stats::default();
    let n = seeds();
    // `WEIR_SIM_SEED=S` replays one seed (with `WEIR_SIM_TRACE=1`, printing what happened).
    let first = std::env::var("WEIR_SIM_SEED")
        .ok()
        .map(|s| s.parse::<u64>().expect("a seed"));
    let range = match first {
        Some(s) => s..s + 1,
        None => 0..n,
    };
    for seed in range {
        let mut sim = Sim::new(seed);
        match sim.run() {
            Ok(s) => {
                total.committed += s.committed;
                total.aborted += s.aborted;
                total.coordinator_crashes += s.coordinator_crashes;
                total.zombies += s.zombies;
                total.timeouts_seen += s.timeouts_seen;
                total.fenced += s.fenced;
                total.offsets_committed += s.offsets_committed;
            }
            Err(e) => panic!("seed {seed} (replay: WEIR_SIM_SEED={seed} WEIR_SIM_TRACE=1): {e}"),
        }
    }
    eprintln!("txn sim: {n} seeds in {:?}: {total:?}", start.elapsed());
    if first.is_none() {
        // The run must exercise what it claims to.
        assert!(total.committed > n * 10, "{total:?}");
        assert!(total.aborted > n * 5, "{total:?}");
        assert!(
            total.coordinator_crashes > 0 && total.zombies > 0,
            "{total:?}"
        );
        assert!(total.timeouts_seen > 0 && total.fenced > 0, "{total:?}");
        assert!(total.offsets_committed > n, "{total:?}");
    }
}
