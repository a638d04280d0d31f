//! Seeded simulation of one consumer group across coordinator failovers: the pure state
//! machine (`state.rs`), the membership records a shard writes (`shard.rs`) and the
//! replay a new coordinator runs, with no I/O and one seed deciding everything.
//!
//! Members heartbeat in random order; answers are lost; the coordinator fails before a
//! write is durable (its in-memory change is lost with it) or between requests, and a
//! new one is rebuilt from the durable log exactly as a shard loads. After every step:
//!
//! - the state machine's own invariants hold (`check_invariants`);
//! - **no partition is owned by two members at once**, as the members themselves see it
//!   (a member owns what the last answer it received gave it, and drops what an answer
//!   takes away): the property consumers rely on, across failovers;
//! - **a failover never fences a member** that received every answer it asked for: what
//!   it was told was durable, so the new coordinator knows it.
//!
//! At the end, without faults, the group converges: every partition owned by exactly one
//! member, the group stable.
//!
//! `cargo test -p weir-coordinator --lib sim::group` runs [`SEEDS`] seeds;
//! `WEIR_GROUP_SIM_SEEDS=100000` runs more, `WEIR_GROUP_SIM_SEED=n` replays one.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::rng::Rng;
use crate::group::assignor::Assignment;
use crate::group::shard::{
    LoadContext, ReplayedMembers, Scope, ShardState, apply_record, entry, finish_replay,
};
use crate::group::state::{MemberRequest, Subscription, TopicRegex, TopicsSnapshot};
use crate::group::{GroupConfig, GroupError, GroupState};

/// Seeds of the default run.
const SEEDS: u64 = 300;
/// Steps per seed.
const STEPS: usize = 400;
/// Trace lines printed when a seed fails.
const TRACE_TAIL: usize = 60;
/// Members of the group.
const MEMBERS: usize = 4;
/// Partitions of the one subscribed topic.
const PARTITIONS: u32 = 10;
const GROUP: &str = "g";
const TOPIC: &str = "t";

/// A member as the client sees itself.
#[derive(Debug, Clone, Default)]
struct Client {
    id: String,
    epoch: i32,
    joined: bool,
    owned: Assignment,
    /// Answers lost since the last one received.
    lost: u32,
}

struct Sim {
    rng: Rng,
    topics: TopicsSnapshot,
    config: GroupConfig,
    /// The durable records of the group's `__consumer_offsets` partition, in order.
    log: Vec<(Bytes, Option<Bytes>)>,
    st: ShardState,
    clients: Vec<Client>,
    now: Instant,
    trace: Vec<String>,
}

fn no_regex(source: &str) -> Result<Arc<TopicRegex>, GroupError> {
    Err(GroupError::InvalidRequest(format!(
        "the simulation subscribes by name, not {source}"
    )))
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let topics = TopicsSnapshot {
            version: 1,
            partitions: BTreeMap::from([(Arc::from(TOPIC), PARTITIONS)]),
        };
        Sim {
            rng: Rng::new(seed),
            topics,
            config: GroupConfig::default(),
            log: Vec::new(),
            st: ShardState::default(),
            clients: (0..MEMBERS)
                .map(|i| Client {
                    id: format!("m{i}"),
                    ..Client::default()
                })
                .collect(),
            now: Instant::now(),
            trace: Vec::new(),
        }
    }

    /// A new coordinator: the state a shard load builds from the durable log.
    fn failover(&mut self) {
        self.trace
            .push(format!("failover ({} records)", self.log.len()));
        let mut st = ShardState::default();
        let mut members = ReplayedMembers::new();
        for (offset, (key, value)) in self.log.iter().enumerate() {
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
    }

    /// Client `i` heartbeats; `crash`: the coordinator fails before the records are
    /// durable; `lose`: the answer does not arrive.
    fn heartbeat(&mut self, i: usize, leave: bool, crash: bool, lose: bool) {
        let client = self.clients[i].clone();
        if leave {
            // A leaving member stops consuming first (it commits and releases everything
            // before it sends the leave), whatever becomes of the answer.
            self.clients[i] = Client {
                id: client.id.clone(),
                ..Client::default()
            };
        }
        let epoch = match (leave, client.joined) {
            (true, _) => -1,
            (false, true) => client.epoch,
            (false, false) => 0,
        };
        let request = MemberRequest {
            member_id: client.id.clone(),
            member_epoch: epoch,
            client_id: String::new(),
            client_host: String::new(),
            subscription: (epoch == 0)
                .then(|| Subscription::Topics(BTreeSet::from([Arc::from(TOPIC)]))),
            assignor: None,
            owned: client.owned.clone(),
            session_timeout: None,
        };
        let result = entry(&mut self.st, GROUP, self.now).group.heartbeat(
            request,
            &self.topics,
            self.now,
            &self.config,
        );
        let result = match result {
            Ok(r) => r,
            Err(e @ (GroupError::UnknownMember { .. } | GroupError::FencedMember { .. })) => {
                assert!(
                    client.lost > 0,
                    "{} was fenced though it received every answer: {e}",
                    client.id
                );
                self.trace.push(format!("{} fenced: {e}", client.id));
                // As the client does: drop everything (no commit) and join again.
                self.clients[i] = Client {
                    id: client.id,
                    ..Client::default()
                };
                return;
            }
            Err(e) => panic!("unexpected refusal of {}: {e}", client.id),
        };
        let scope = if result.bumped {
            Scope::All
        } else {
            Scope::Member(client.id.clone())
        };
        let records = self.st.membership_records(GROUP, &scope);
        if crash {
            self.trace.push(format!(
                "{} heartbeat (epoch {epoch}); coordinator fails before {} records are durable",
                client.id,
                records.len()
            ));
            self.failover();
            if !leave {
                self.clients[i].lost += 1;
            }
            return;
        }
        self.log.extend(records);
        if lose {
            self.trace.push(format!(
                "{} heartbeat (epoch {epoch}); answer lost",
                client.id
            ));
            if !leave {
                self.clients[i].lost += 1;
            }
            return;
        }
        let outcome = result.outcome;
        let c = &mut self.clients[i];
        if leave {
            *c = Client {
                id: c.id.clone(),
                ..Client::default()
            };
        } else {
            c.joined = true;
            c.epoch = outcome.member_epoch;
            c.lost = 0;
            c.owned = outcome
                .assignment
                .unwrap_or_default()
                .into_iter()
                .flat_map(|(t, ps)| {
                    let t: Arc<str> = Arc::from(t);
                    ps.into_iter().map(move |p| (t.clone(), p))
                })
                .collect();
        }
        self.trace.push(format!(
            "{} heartbeat (epoch {epoch}) -> epoch {}, owns {:?}",
            c.id,
            c.epoch,
            c.owned.iter().map(|(_, p)| p).collect::<Vec<_>>()
        ));
    }

    fn check(&self) {
        if let Some(e) = self.st.groups.get(GROUP) {
            e.group.check_invariants().unwrap();
        }
        let mut owner: BTreeMap<&(Arc<str>, u32), &str> = BTreeMap::new();
        for c in &self.clients {
            for tp in &c.owned {
                if let Some(other) = owner.insert(tp, &c.id) {
                    panic!("partition {} owned by {other} and {} at once", tp.1, c.id);
                }
            }
        }
    }

    fn step(&mut self) {
        let i = self.rng.range(0, MEMBERS as u64 - 1) as usize;
        match self.rng.range(0, 99) {
            0..=74 => {
                let crash = self.rng.chance(0.05);
                let lose = self.rng.chance(0.10);
                self.heartbeat(i, false, crash, lose);
            }
            75..=84 => self.failover(),
            85..=89 if self.clients[i].joined => {
                let lose = self.rng.chance(0.20);
                self.heartbeat(i, true, false, lose);
            }
            _ => self.now += Duration::from_millis(self.rng.range(0, 199)),
        }
    }

    /// Without faults, every member heartbeats until the group settles.
    fn converge(&mut self) {
        for _ in 0..20 {
            for i in 0..MEMBERS {
                self.heartbeat(i, false, false, false);
                self.check();
            }
        }
        let e = &self.st.groups[GROUP];
        assert_eq!(
            e.group.state(),
            GroupState::Stable,
            "the group did not settle"
        );
        let owned: usize = self.clients.iter().map(|c| c.owned.len()).sum();
        assert_eq!(owned, PARTITIONS as usize, "not every partition is owned");
    }
}

impl super::Simulation for Sim {
    const NAME: &'static str = "group";
    const SEEDS: u64 = SEEDS;
    const TRACE_TAIL: usize = TRACE_TAIL;

    fn new(seed: u64) -> Sim {
        Sim::new(seed)
    }

    fn run(&mut self) {
        for _ in 0..STEPS {
            self.step();
            self.check();
        }
        self.converge();
    }

    fn trace(&self) -> &[String] {
        &self.trace
    }
}

#[test]
fn a_group_survives_coordinator_failovers_lost_answers_and_lost_writes() {
    super::run_seeds::<Sim>();
}
