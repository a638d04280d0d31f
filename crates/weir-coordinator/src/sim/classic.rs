//! Seeded simulation of one classic group (Kafka's JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup and generation-checked offset commits) across member crashes, network
//! partitions, lost answers and coordinator failovers: the classic state machine
//! (`group/classic.rs`), the shard's records and commit admission (`group/shard.rs`) and
//! the replay a new coordinator runs, with no I/O and one seed deciding everything.
//!
//! The coordinator is driven as weir-cluster's shell drives it: a change is made in
//! memory, its classic record (the last completed generation) is queued, and the
//! answers it produced wait until that record is durable (or, with nothing new to write,
//! until the last membership write is); a commit is admitted under the same step and
//! answered once durable. Durability comes later, for a prefix of the queue. A failover
//! makes a random prefix durable, loses the rest with every request still waiting (the
//! clients hear NOT_COORDINATOR and join again) and rebuilds the coordinator from the
//! durable log. Members consume their partitions and commit their positions; a member
//! cut off from the coordinator goes on as a zombie with its old generation.
//!
//! Checked, as clients and the durable log see it:
//!
//! - **one generation at a time**: a generation's assignments, once any member is told
//!   them, never change, and no partition is in the assignments of two members of one
//!   generation;
//! - a new coordinator knows every generation a member was told its assignment in;
//! - **committed offsets are never lost**: after a failover each partition's committed
//!   offset is the last one the durable log holds for it;
//! - **never moved back by a stale generation**: in log order, no commit of a partition
//!   carries an older generation than one before it, and within one generation its
//!   offsets only grow.
//!
//! At the end, without faults, the group converges: every member stable in one
//! generation, every partition assigned to exactly one of them, and what they commit is
//! what a new coordinator loads.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::rng::Rng;
use crate::group::classic::{
    ClassicConfig, ClassicError, ClassicState, JoinGroup, JoinOutcome, Reply, SyncGroup, Waiter,
};
use crate::group::records::{self, OffsetValue};
use crate::group::shard::{
    LoadContext, Prepared, ReplayedMembers, Scope, ShardState, admit_commit, admit_join,
    apply_record, entry, finish_replay,
};
use crate::group::state::{TopicRegex, TopicsSnapshot};
use crate::group::{GroupConfig, GroupError};

/// Seeds of the default run.
const SEEDS: u64 = 200;
/// Steps per seed.
const STEPS: usize = 400;
/// Trace lines printed when a seed fails.
const TRACE_TAIL: usize = 60;
const MEMBERS: usize = 4;
const PARTITIONS: u32 = 6;
const SESSION: Duration = Duration::from_secs(10);
const REBALANCE: Duration = Duration::from_secs(30);
/// Rounds the fault-free end may take to converge (one second each).
const CONVERGE_ROUNDS: usize = 300;
const GROUP: &str = "g";
const TOPIC: &str = "t";

/// Where a client is in the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Phase {
    /// Not in a generation: joins next.
    #[default]
    Out,
    /// Its JoinGroup is parked.
    Joining,
    /// Joined a generation: syncs next.
    Joined,
    /// Its SyncGroup is parked.
    Syncing,
    /// Has its assignment: consumes, commits, heartbeats.
    Stable,
}

/// A group member as the client sees itself.
#[derive(Debug, Clone, Default)]
struct Client {
    /// Bumped by a crash: answers to an earlier life are not heard.
    life: u32,
    member_id: String,
    generation: i32,
    phase: Phase,
    /// The generation's members, if it leads it.
    leads: Option<Vec<String>>,
    /// Partitions it owns, with its position in each.
    owned: BTreeMap<u32, i64>,
    /// Cut off from the coordinator: it hears nothing and reaches nothing.
    cut: bool,
    /// A commit of its is waiting for its answer.
    committing: bool,
}

/// What a log record is, for the checker.
#[derive(Debug, Clone)]
enum Meta {
    Membership,
    Commit {
        member: String,
        generation: i32,
        partition: u32,
        offset: i64,
    },
}

/// A request waiting for its answer.
#[derive(Debug, Clone, Copy)]
struct Parked {
    client: usize,
    life: u32,
}

/// An answer released once a write is durable.
#[derive(Debug)]
enum Answer {
    Reply(Reply),
    Committed { client: usize, life: u32 },
}

/// A write queued on the partition and not yet durable.
#[derive(Debug)]
struct Write {
    prepared: Prepared,
    metas: Vec<Meta>,
    answers: Vec<Answer>,
}

struct Sim {
    rng: Rng,
    now: Instant,
    config: GroupConfig,
    classic: ClassicConfig,
    topics: TopicsSnapshot,
    st: ShardState,
    /// The durable records of the group's `__consumer_offsets` partition, in order.
    log: Vec<(Bytes, Option<Bytes>, Meta)>,
    queue: VecDeque<Write>,
    parked: HashMap<Waiter, Parked>,
    next_waiter: Waiter,
    clients: Vec<Client>,
    /// Per generation, each member's assignment as told by SyncGroup.
    told: BTreeMap<i32, BTreeMap<String, Bytes>>,
    /// The newest generation a JoinGroup answer told a member of (its rebalance record
    /// carries it before the answer goes out).
    joined: i32,
    /// Per partition, the generation and offset of its last commit in the log.
    last_commit: BTreeMap<u32, (i32, i64)>,
    /// New member ids drawn so far.
    ids: u64,
    trace: Vec<String>,
}

fn no_regex(source: &str) -> Result<Arc<TopicRegex>, GroupError> {
    Err(GroupError::InvalidRequest(format!(
        "the simulation's classic members subscribe by name, not {source}"
    )))
}

/// A leader's assignment: partition `p` to the `p % n`-th member by id.
fn assign(members: &[String]) -> Vec<(String, Bytes)> {
    let mut sorted = members.to_vec();
    sorted.sort();
    sorted
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mine: Vec<String> = (0..PARTITIONS)
                .filter(|p| *p as usize % sorted.len() == i)
                .map(|p| p.to_string())
                .collect();
            (m.clone(), Bytes::from(mine.join(",")))
        })
        .collect()
}

fn partitions_of(assignment: &Bytes) -> BTreeSet<u32> {
    std::str::from_utf8(assignment)
        .expect("the simulation's assignments are text")
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| p.parse().expect("a partition number"))
        .collect()
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = Rng::new(seed);
        let delay = if rng.chance(0.5) { 0 } else { 3_000 };
        Sim {
            rng,
            now: Instant::now(),
            config: GroupConfig::default(),
            classic: ClassicConfig {
                initial_rebalance_delay: Duration::from_millis(delay),
                max_members: 10,
            },
            topics: TopicsSnapshot {
                version: 1,
                partitions: BTreeMap::from([(Arc::from(TOPIC), PARTITIONS)]),
            },
            st: ShardState::default(),
            log: Vec::new(),
            queue: VecDeque::new(),
            parked: HashMap::new(),
            next_waiter: 0,
            clients: vec![
                Client {
                    generation: -1,
                    ..Client::default()
                };
                MEMBERS
            ],
            told: BTreeMap::new(),
            joined: 0,
            last_commit: BTreeMap::new(),
            ids: 0,
            trace: Vec::new(),
        }
    }

    fn park(&mut self, client: usize) -> Waiter {
        let waiter = self.next_waiter;
        self.next_waiter += 1;
        let life = self.clients[client].life;
        self.parked.insert(waiter, Parked { client, life });
        waiter
    }

    /// After a change of the group: its classic record is queued if it changed, and the
    /// replies wait for the membership write that carries the change (or the last one,
    /// still under way), as the shell's `persist_then_deliver` does.
    fn persist_then_deliver(&mut self, replies: Vec<Reply>) {
        let records = self.st.membership_records(GROUP, &Scope::All);
        let answers = replies.into_iter().map(Answer::Reply);
        if !records.is_empty() {
            let prepared = Prepared {
                records,
                membership_seq: Some(self.st.membership_seq),
                ..Prepared::default()
            };
            self.st.queued(&prepared);
            let metas = vec![Meta::Membership; prepared.records.len()];
            self.queue.push_back(Write {
                prepared,
                metas,
                answers: answers.collect(),
            });
            return;
        }
        match self
            .queue
            .iter_mut()
            .rev()
            .find(|w| w.prepared.membership_seq.is_some())
        {
            Some(write) => write.answers.extend(answers),
            None => {
                for answer in answers {
                    self.deliver(answer, false);
                }
            }
        }
    }

    /// Hands an answer to its client, unless the client crashed since, is cut off, or
    /// (`lossy`) the answer is lost on the way: then the client gives up waiting.
    fn deliver(&mut self, answer: Answer, lossy: bool) {
        let (client, life) = match &answer {
            Answer::Reply(reply) => match self.parked.remove(&reply.waiter()) {
                Some(p) => (p.client, p.life),
                None => return,
            },
            Answer::Committed { client, life } => (*client, *life),
        };
        if self.clients[client].life != life {
            return;
        }
        let lost = self.clients[client].cut || (lossy && self.rng.chance(0.05));
        if lost {
            self.trace.push(format!("c{client}: answer lost"));
            let c = &mut self.clients[client];
            match answer {
                Answer::Committed { .. } => c.committing = false,
                Answer::Reply(_) => c.phase = Phase::Out,
            }
            return;
        }
        match answer {
            Answer::Committed { .. } => self.clients[client].committing = false,
            Answer::Reply(Reply::Join(_, result)) => self.joined(client, result),
            Answer::Reply(Reply::Sync(_, result)) => self.synced(client, result),
        }
    }

    fn joined(&mut self, i: usize, result: Result<JoinOutcome, ClassicError>) {
        let c = &mut self.clients[i];
        match result {
            Ok(JoinOutcome::MemberIdRequired { member_id }) => {
                self.trace.push(format!("c{i}: join again as {member_id}"));
                c.member_id = member_id;
                c.phase = Phase::Out;
            }
            Ok(JoinOutcome::Joined(answer)) => {
                self.trace.push(format!(
                    "c{i}: joined generation {} as {} (leader {})",
                    answer.generation, answer.member_id, answer.leader
                ));
                c.leads = (answer.leader == answer.member_id)
                    .then(|| answer.members.iter().map(|(m, _, _)| m.clone()).collect());
                c.member_id = answer.member_id;
                c.generation = answer.generation;
                c.owned.clear();
                c.phase = Phase::Joined;
                self.joined = self.joined.max(answer.generation);
            }
            Err(e) => {
                self.trace.push(format!("c{i}: join refused: {e:?}"));
                Self::refused(c, &e);
            }
        }
    }

    fn synced(&mut self, i: usize, result: Result<crate::group::SyncAnswer, ClassicError>) {
        match result {
            Ok(answer) => {
                let (member, generation) = {
                    let c = &self.clients[i];
                    (c.member_id.clone(), c.generation)
                };
                let partitions = partitions_of(&answer.assignment);
                self.trace.push(format!(
                    "c{i}: generation {generation} assigns {member} {partitions:?}"
                ));
                self.check_told(generation, &member, &answer.assignment);
                // It starts where the group committed (the coordinator answers an offset
                // fetch from memory).
                let committed = self.committed();
                let c = &mut self.clients[i];
                c.owned = partitions
                    .into_iter()
                    .map(|p| (p, committed.get(&p).copied().unwrap_or(0)))
                    .collect();
                c.phase = Phase::Stable;
            }
            Err(e) => {
                self.trace.push(format!("c{i}: sync refused: {e:?}"));
                Self::refused(&mut self.clients[i], &e);
            }
        }
    }

    /// A refusal sends the client back to JoinGroup; an unknown member joins as new.
    fn refused(c: &mut Client, e: &ClassicError) {
        if matches!(e, ClassicError::UnknownMember) {
            c.member_id.clear();
        }
        c.owned.clear();
        c.phase = Phase::Out;
    }

    /// One generation at a time: what one generation tells a member never changes, and
    /// no partition is told to two of its members.
    fn check_told(&mut self, generation: i32, member: &str, assignment: &Bytes) {
        let told = self.told.entry(generation).or_default();
        if let Some(before) = told.get(member) {
            assert_eq!(
                before, assignment,
                "generation {generation} told {member} two assignments"
            );
        }
        for (other, theirs) in told.iter() {
            if other != member {
                let shared: Vec<u32> = partitions_of(theirs)
                    .intersection(&partitions_of(assignment))
                    .copied()
                    .collect();
                assert!(
                    shared.is_empty(),
                    "generation {generation} assigns {shared:?} to both {other} and {member}"
                );
            }
        }
        told.insert(member.to_string(), assignment.clone());
    }

    /// Committed offsets as the coordinator holds them.
    fn committed(&self) -> BTreeMap<u32, i64> {
        self.st
            .groups
            .get(GROUP)
            .and_then(|e| e.offsets.get(TOPIC))
            .map(|parts| parts.iter().map(|(p, s)| (*p, s.offset)).collect())
            .unwrap_or_default()
    }

    fn join(&mut self, i: usize) {
        let member_id = self.clients[i].member_id.clone();
        if let Err(e) = admit_join(&self.st, GROUP, &member_id, None) {
            // A known member id for a group the coordinator does not have (it was lost
            // with writes that never became durable): the member joins as new.
            self.trace.push(format!("c{i}: join {member_id:?}: {e}"));
            Self::refused(&mut self.clients[i], &ClassicError::UnknownMember);
            return;
        }
        let waiter = self.park(i);
        self.clients[i].phase = Phase::Joining;
        self.trace.push(format!("c{i}: join as {member_id:?}"));
        self.ids += 1;
        let new_id = format!("m{}", self.ids);
        let req = JoinGroup {
            group_id: GROUP.into(),
            member_id,
            client_id: format!("c{i}"),
            client_host: "127.0.0.1".into(),
            group_instance_id: None,
            session_timeout: SESSION,
            rebalance_timeout: REBALANCE,
            protocol_type: "sim".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"t"))],
            require_known_member_id: true,
        };
        let (now, classic) = (self.now, self.classic);
        let replies = entry(&mut self.st, GROUP, now)
            .classic
            .join(req, waiter, new_id, now, &classic);
        self.persist_then_deliver(replies);
    }

    fn sync(&mut self, i: usize) {
        let c = self.clients[i].clone();
        let waiter = self.park(i);
        self.clients[i].phase = Phase::Syncing;
        self.trace
            .push(format!("c{i}: sync {} at {}", c.member_id, c.generation));
        let req = SyncGroup {
            group_id: GROUP.into(),
            member_id: c.member_id.clone(),
            generation: c.generation,
            group_instance_id: None,
            protocol_type: Some("sim".into()),
            protocol_name: Some("range".into()),
            assignments: c.leads.as_deref().map(assign).unwrap_or_default(),
        };
        let replies = match self.st.groups.get_mut(GROUP) {
            Some(e) => e.classic.sync(req, waiter, self.now),
            None => vec![Reply::Sync(waiter, Err(ClassicError::UnknownMember))],
        };
        self.persist_then_deliver(replies);
    }

    fn heartbeat(&mut self, i: usize) {
        let c = &self.clients[i];
        let result = match self.st.groups.get_mut(GROUP) {
            Some(e) => e
                .classic
                .heartbeat(&c.member_id, None, c.generation, self.now),
            None => Err(ClassicError::UnknownMember),
        };
        if let Err(e) = result {
            self.trace.push(format!("c{i}: heartbeat: {e:?}"));
            Self::refused(&mut self.clients[i], &e);
        }
    }

    fn leave(&mut self, i: usize) {
        let member_id = std::mem::take(&mut self.clients[i].member_id);
        self.trace.push(format!("c{i}: leave {member_id}"));
        let c = &mut self.clients[i];
        c.owned.clear();
        c.phase = Phase::Out;
        let mut replies = Vec::new();
        if let Some(e) = self.st.groups.get_mut(GROUP) {
            let _ = e
                .classic
                .leave(&member_id, None, self.now, &self.classic, &mut replies);
        }
        self.persist_then_deliver(replies);
    }

    /// The client consumes a little of one of its partitions and commits its position.
    fn commit(&mut self, i: usize) {
        let owned = self.clients[i].owned.len() as u64;
        if owned == 0 {
            return;
        }
        let pick = self.rng.range(0, owned - 1) as usize;
        let partition = *self.clients[i]
            .owned
            .keys()
            .nth(pick)
            .expect("picked below the count");
        self.commit_partition(i, partition);
    }

    /// The client consumes a little of `partition` (one it owns) and commits its
    /// position.
    fn commit_partition(&mut self, i: usize, partition: u32) {
        let c = &self.clients[i];
        let position = c.owned[&partition];
        let offset = position + self.rng.range(0, 5) as i64;
        let (member, generation, life) = (c.member_id.clone(), c.generation, c.life);
        self.clients[i].owned.insert(partition, offset);
        let admitted = admit_commit(
            &mut self.st,
            GROUP,
            Some((member.as_str(), generation)),
            self.now,
            None,
        );
        if let Err(e) = admitted {
            // A stale generation, or a member the group no longer has: it joins again.
            self.trace.push(format!(
                "c{i}: commit {partition}@{offset} at {generation} refused: {e}"
            ));
            let e = match e {
                GroupError::UnknownMember { .. } => ClassicError::UnknownMember,
                _ => ClassicError::RebalanceInProgress,
            };
            Self::refused(&mut self.clients[i], &e);
            return;
        }
        self.trace
            .push(format!("c{i}: commit {partition}@{offset} at {generation}"));
        let value = records::offset_value(&OffsetValue {
            offset,
            commit_timestamp_ms: 0,
            metadata: String::new(),
            topic_id: String::new(),
            leader_epoch: -1,
        });
        let prepared = Prepared {
            records: vec![(records::offset_key(GROUP, TOPIC, partition), Some(value))],
            pending: vec![(GROUP.into(), TOPIC.into(), partition)],
            committed_at: Some((GROUP.into(), self.now)),
            membership_seq: None,
            txn: None,
        };
        self.st.queued(&prepared);
        self.clients[i].committing = true;
        self.queue.push_back(Write {
            prepared,
            metas: vec![Meta::Commit {
                member,
                generation,
                partition,
                offset,
            }],
            answers: vec![Answer::Committed { client: i, life }],
        });
    }

    /// The first `n` queued writes become durable, in order; `answer`: their answers are
    /// sent (else the coordinator died before sending them).
    fn make_durable(&mut self, n: usize, answer: bool) {
        for _ in 0..n.min(self.queue.len()) {
            let write = self.queue.pop_front().expect("counted");
            let base = self.log.len() as i64;
            for ((key, value), meta) in write.prepared.records.iter().zip(&write.metas) {
                self.check_logged(meta);
                self.log.push((key.clone(), value.clone(), meta.clone()));
            }
            let failed = self.st.written(write.prepared, Some(base), self.now);
            assert!(failed.is_empty(), "own records failed to apply: {failed:?}");
            if answer {
                for a in write.answers {
                    self.deliver(a, true);
                }
            }
        }
    }

    /// Never moved back by a stale generation: in log order, a partition's commits
    /// carry generations that never go down, and offsets that only grow within one.
    fn check_logged(&mut self, meta: &Meta) {
        let Meta::Commit {
            member,
            generation,
            partition,
            offset,
        } = meta
        else {
            return;
        };
        if let Some(&(g, o)) = self.last_commit.get(partition) {
            assert!(
                *generation >= g,
                "partition {partition}: {member}'s commit of generation {generation} follows \
                 one of generation {g}"
            );
            assert!(
                *generation > g || *offset >= o,
                "partition {partition}: generation {generation} moved its offset back from \
                 {o} to {offset}"
            );
        }
        self.last_commit.insert(*partition, (*generation, *offset));
    }

    /// The coordinator fails: a random prefix of its queue reaches the log, the rest is
    /// lost with every request still waiting, and a new one loads from the log.
    fn failover(&mut self) {
        let durable = self.rng.range(0, self.queue.len() as u64) as usize;
        let answer = self.rng.chance(0.5);
        self.make_durable(durable, answer);
        self.trace.push(format!(
            "failover ({} records, {} writes lost)",
            self.log.len(),
            self.queue.len()
        ));
        self.queue.clear();
        self.parked.clear();
        for c in &mut self.clients {
            c.committing = false;
            if matches!(c.phase, Phase::Joining | Phase::Syncing) {
                // NOT_COORDINATOR: find the new one and join again.
                c.phase = Phase::Out;
            }
        }
        let mut st = ShardState::default();
        let mut members = ReplayedMembers::new();
        for (offset, (key, value, _)) in self.log.iter().enumerate() {
            apply_record(
                &mut st,
                key,
                value.as_deref(),
                offset as i64,
                self.now,
                Some(&mut members),
            )
            .expect("the coordinator's own records replay");
        }
        let cx = LoadContext {
            topics: &self.topics,
            config: &self.config,
            overrides: &|_| crate::group::GroupOverrides::default(),
            compile: &no_regex,
        };
        finish_replay(&mut st, members, 0, &cx, (self.now, 0));
        self.st = st;
        // Nothing committed is lost: each partition's offset is the log's last.
        let committed = self.committed();
        let logged: BTreeMap<u32, i64> = self
            .last_commit
            .iter()
            .map(|(p, (_, o))| (*p, *o))
            .collect();
        assert_eq!(committed, logged, "a failover lost or changed commits");
        let generation = self
            .st
            .groups
            .get(GROUP)
            .map_or(0, |e| e.classic.generation());
        // Every generation a member was told of (its assignment, or its join) is known.
        let told = self.told.last_key_value().map_or(0, |(g, _)| *g);
        let told = told.max(self.joined);
        assert!(
            generation >= told,
            "the new coordinator is at generation {generation}; members were told {told}"
        );
    }

    fn advance(&mut self, ms: u64) {
        self.now += Duration::from_millis(ms);
        let (now, classic) = (self.now, self.classic);
        let replies = match self.st.groups.get_mut(GROUP) {
            Some(e) => e.classic.tick(now, &classic),
            None => Vec::new(),
        };
        self.persist_then_deliver(replies);
    }

    /// Client `i` does what comes next for it.
    fn act(&mut self, i: usize) {
        let c = &self.clients[i];
        if c.cut {
            return;
        }
        match c.phase {
            Phase::Out => self.join(i),
            Phase::Joined => self.sync(i),
            Phase::Joining | Phase::Syncing => {}
            Phase::Stable => {
                if !c.committing && !c.owned.is_empty() && self.rng.chance(0.5) {
                    self.commit(i);
                } else {
                    self.heartbeat(i);
                }
            }
        }
    }

    fn check(&self) {
        if let Some(e) = self.st.groups.get(GROUP) {
            e.classic
                .check_invariants()
                .unwrap_or_else(|why| panic!("classic invariants: {why}"));
        }
    }

    fn step(&mut self) {
        let i = self.rng.range(0, MEMBERS as u64 - 1) as usize;
        match self.rng.range(0, 99) {
            0..=49 => self.act(i),
            50..=64 => {
                let n = self.rng.range(1, 3) as usize;
                self.make_durable(n, true);
            }
            65..=79 => {
                let ms = self.rng.range(100, 8_000);
                self.advance(ms);
            }
            80..=84 => {
                let cut = !self.clients[i].cut;
                self.trace
                    .push(format!("c{i}: {}", if cut { "cut off" } else { "back" }));
                self.clients[i].cut = cut;
            }
            85..=87 => {
                self.trace.push(format!("c{i}: crash"));
                let c = &mut self.clients[i];
                *c = Client {
                    life: c.life + 1,
                    generation: -1,
                    cut: c.cut,
                    ..Client::default()
                };
            }
            88..=89 => {
                if self.clients[i].phase == Phase::Stable && !self.clients[i].cut {
                    self.leave(i);
                }
            }
            90..=92 => self.failover(),
            _ => self.make_durable(usize::MAX, true),
        }
        self.check();
    }

    /// Without faults the group settles: every member stable in the group's generation
    /// with every partition owned once; their commits survive a failover.
    fn converge(&mut self) {
        for c in &mut self.clients {
            c.cut = false;
        }
        for _ in 0..CONVERGE_ROUNDS {
            for i in 0..MEMBERS {
                self.act(i);
            }
            self.make_durable(usize::MAX, true);
            self.advance(1_000);
            self.make_durable(usize::MAX, true);
            self.check();
            if self.settled() {
                break;
            }
        }
        assert!(self.settled(), "the group did not settle");
        for i in 0..MEMBERS {
            let owned: Vec<u32> = self.clients[i].owned.keys().copied().collect();
            for p in owned {
                self.commit_partition(i, p);
            }
        }
        self.make_durable(usize::MAX, true);
        let positions: BTreeMap<u32, i64> = self
            .clients
            .iter()
            .flat_map(|c| c.owned.iter().map(|(p, o)| (*p, *o)))
            .collect();
        self.failover();
        let committed = self.committed();
        for (p, o) in positions {
            assert_eq!(
                committed.get(&p),
                Some(&o),
                "partition {p} after the failover"
            );
        }
    }

    fn settled(&self) -> bool {
        let Some(e) = self.st.groups.get(GROUP) else {
            return false;
        };
        let generation = e.classic.generation();
        let stable = self
            .clients
            .iter()
            .all(|c| c.phase == Phase::Stable && c.generation == generation);
        let owned: Vec<u32> = self
            .clients
            .iter()
            .flat_map(|c| c.owned.keys().copied())
            .collect();
        let distinct: BTreeSet<u32> = owned.iter().copied().collect();
        e.classic.state() == ClassicState::Stable
            && e.classic.member_count() == MEMBERS
            && stable
            && owned.len() == PARTITIONS as usize
            && distinct.len() == PARTITIONS as usize
    }
}

impl super::Simulation for Sim {
    const NAME: &'static str = "classic";
    const SEEDS: u64 = SEEDS;
    const TRACE_TAIL: usize = TRACE_TAIL;

    fn new(seed: u64) -> Sim {
        Sim::new(seed)
    }

    fn run(&mut self) {
        for _ in 0..STEPS {
            self.step();
        }
        self.converge();
    }

    fn trace(&self) -> &[String] {
        &self.trace
    }
}

#[test]
fn a_classic_group_keeps_one_generation_and_its_offsets_through_crashes_cuts_and_failovers() {
    super::run_seeds::<Sim>();
}
