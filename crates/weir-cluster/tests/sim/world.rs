//! The simulated cluster: an event queue in simulated time, the network, the brokers,
//! the controller quorum (one linearizable log: openraft's job is trusted), clients and
//! the fault schedule, all driven by one seed.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;

use bytes::Bytes;
use weir_cluster::controller::records::{Endpoints, MetadataRecord, NO_LEADER};
use weir_cluster::controller::{
    Controller, ControllerConfig, ControllerReply, ControllerRequest, MetadataImage,
};
use weir_cluster::replication::{
    AlterIsrAnswer, Command, Event, FetchAnswer, FetchError, Replica, ReplicaConfig, Role,
};
use weir_log::{Compression, Record, RecordBatchBuilder, decode_records};

use crate::checker::{Checker, Verdict};
use crate::net::{Addr, CONTROLLER, Envelope, Faults, Msg, Network};
use crate::node::{Node, Parked, Waiter};
use crate::rng::Rng;

const TOPIC: &str = "sim";
const NODE_TICK_MS: u64 = 50;
const CONTROLLER_TICK_MS: u64 = 100;
const HEARTBEAT_MS: u64 = 500;
const FETCH_WAIT_MS: u64 = 500;
const FETCH_MAX_BYTES: usize = 2048;
const PRODUCE_TIMEOUT_MS: u64 = 5_000;
const PRODUCERS: i32 = 2;
const CONSUMER: Addr = 200;
/// Lines of trace kept for a failure report.
const TRACE_LINES: usize = 400;
/// Steps between full log checks (the cheap invariants are checked at every step).
const FULL_CHECK_EVERY: u64 = 100;

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub brokers: i32,
    pub partitions: u32,
    /// Simulated time with faults.
    pub fault_ms: u64,
    /// Simulated time after healing, producers still running, then quiet.
    pub heal_ms: u64,
    pub quiet_ms: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            brokers: 3,
            partitions: 2,
            fault_ms: 12_000,
            heal_ms: 8_000,
            quiet_ms: 8_000,
        }
    }
}

pub struct Outcome {
    pub acked: u64,
    /// Leader elections (leader epochs above 0) the faults caused.
    pub elections: u64,
    /// Truncations of diverged followers.
    pub truncations: u64,
    pub faults: u64,
}

#[derive(Debug, Clone)]
enum Ev {
    Deliver(Envelope),
    NodeTick(Addr),
    ControllerTick,
    FlushDone {
        node: Addr,
        incarnation: u64,
        partition: u32,
    },
    ClientTick(Addr),
    Fault,
    Restart(Addr),
    Resume(Addr),
    Heal(Addr, Addr),
}

#[derive(Debug, Default)]
struct Producer {
    next_request: u64,
    /// request id -> (partition, value, sent at)
    outstanding: BTreeMap<u64, (u32, String, u64)>,
}

#[derive(Debug, Default)]
struct Consumer {
    /// One read in flight per partition, as over one ordered connection: (request id,
    /// sent at).
    in_flight: BTreeMap<u32, (u64, u64)>,
    next_request: u64,
    next_offset: BTreeMap<u32, i64>,
    max_epoch: BTreeMap<u32, i32>,
    max_hw: BTreeMap<u32, i64>,
}

pub struct World {
    seed: u64,
    cfg: SimConfig,
    rng: Rng,
    now: u64,
    seq: u64,
    steps: u64,
    queue: BTreeMap<(u64, u64), Ev>,
    net: Network,
    nodes: BTreeMap<Addr, Node>,
    controller: Controller,
    image: MetadataImage,
    metadata: Vec<MetadataRecord>,
    topic_id: Option<String>,
    checker: Checker,
    producers: BTreeMap<Addr, Producer>,
    consumer: Consumer,
    faults_on: bool,
    producing: bool,
    acked_after_heal: BTreeMap<u32, u64>,
    trace: VecDeque<String>,
    elections: u64,
    truncations: u64,
    faults: u64,
}

impl World {
    pub fn new(seed: u64, cfg: SimConfig, dir: &Path) -> World {
        let mut rng = Rng::new(seed);
        let faults = Faults {
            loss: rng.range(0, 30) as f64 / 1000.0,
            duplication: rng.range(0, 20) as f64 / 1000.0,
            max_delay_ms: rng.range(1, 25),
        };
        let nodes = (1..=cfg.brokers)
            .map(|id| (id, Node::new(id, dir, cfg.partitions)))
            .collect();
        let mut ids = 0u64;
        let controller = Controller::new(
            ControllerConfig::default(),
            move || {
                ids += 1;
                format!("topic-{ids}")
            },
        );
        let mut world = World {
            seed,
            cfg,
            rng,
            now: 0,
            seq: 0,
            steps: 0,
            queue: BTreeMap::new(),
            net: Network::new(faults),
            nodes,
            controller,
            image: MetadataImage::default(),
            metadata: Vec::new(),
            topic_id: None,
            checker: Checker::default(),
            producers: (100..100 + PRODUCERS)
                .map(|a| (a, Producer::default()))
                .collect(),
            consumer: Consumer::default(),
            faults_on: false,
            producing: true,
            acked_after_heal: BTreeMap::new(),
            trace: VecDeque::new(),
            elections: 0,
            truncations: 0,
            faults: 0,
        };
        world.controller.activate(&world.image, 0);
        let reply = world.controller_request(ControllerRequest::CreateCluster {
            cluster_id: format!("sim-{seed}"),
        });
        assert_eq!(reply, ControllerReply::ClusterCreated);
        for id in 1..=world.cfg.brokers {
            let delay = world.rng.range(0, NODE_TICK_MS);
            world.schedule(delay, Ev::NodeTick(id));
        }
        world.schedule(CONTROLLER_TICK_MS, Ev::ControllerTick);
        for client in 100..100 + PRODUCERS {
            world.schedule(1_000, Ev::ClientTick(client));
        }
        world.schedule(1_000, Ev::ClientTick(CONSUMER));
        world
    }

    /// Runs faults, heals, lets the cluster settle, and checks convergence. Panics with
    /// the seed and the trace on the first broken invariant.
    pub fn run(&mut self) -> Outcome {
        let start_faults = 2_000;
        let heal_at = start_faults + self.cfg.fault_ms;
        let stop_producing_at = heal_at + self.cfg.heal_ms;
        let end = stop_producing_at + self.cfg.quiet_ms;
        self.schedule(start_faults, Ev::Fault);
        self.faults_on = true;
        self.run_until(heal_at);
        self.heal();
        self.run_until(stop_producing_at);
        self.producing = false;
        self.run_until(end);
        let verdict = self.full_check().and_then(|()| {
            let verdict = self
                .checker
                .check_converged(&self.nodes, self.cfg.partitions);
            verdict.and_then(|()| self.check_live())
        });
        self.verdict(verdict);
        Outcome {
            acked: self.checker.acked,
            elections: self.elections,
            truncations: self.truncations,
            faults: self.faults,
        }
    }

    fn check_live(&self) -> Verdict {
        for p in 0..self.cfg.partitions {
            if self.acked_after_heal.get(&p).copied().unwrap_or(0) == 0 {
                return Err(format!(
                    "partition {p}: no produce was acknowledged in the {} ms after healing",
                    self.cfg.heal_ms
                ));
            }
        }
        Ok(())
    }

    fn verdict(&self, verdict: Verdict) {
        if let Err(problem) = verdict {
            let trace: Vec<&str> = self.trace.iter().map(String::as_str).collect();
            panic!(
                "seed {seed}: {problem}\n  at {now} ms, step {steps}\n  replay: WEIR_SIM_SEED={seed} cargo test -p weir-cluster --test sim\n--- last {n} events ---\n{trace}",
                seed = self.seed,
                now = self.now,
                steps = self.steps,
                n = trace.len(),
                trace = trace.join("\n"),
            );
        }
    }

    fn log(&mut self, line: String) {
        let keep = if std::env::var_os("WEIR_SIM_FULL_TRACE").is_some() {
            usize::MAX
        } else {
            TRACE_LINES
        };
        if self.trace.len() >= keep {
            self.trace.pop_front();
        }
        self.trace.push_back(format!("{:>7} {line}", self.now));
    }

    fn schedule(&mut self, delay_ms: u64, ev: Ev) {
        self.seq += 1;
        self.queue.insert((self.now + delay_ms, self.seq), ev);
    }

    fn send(&mut self, from: Addr, to: Addr, to_incarnation: Option<u64>, msg: Msg) {
        for delay in self.net.deliveries(&mut self.rng, from, to) {
            let env = Envelope {
                from,
                to,
                to_incarnation,
                msg: msg.clone(),
            };
            self.schedule(delay, Ev::Deliver(env));
        }
    }

    fn incarnation(&self, node: Addr) -> Option<u64> {
        self.nodes.get(&node).map(|n| n.incarnation)
    }

    fn run_until(&mut self, until: u64) {
        while let Some(entry) = self.queue.first_entry() {
            let (at, _) = *entry.key();
            if at > until {
                break;
            }
            let ev = entry.remove();
            self.now = at;
            self.steps += 1;
            let verdict = self.step(ev);
            self.verdict(verdict);
            if self.steps % FULL_CHECK_EVERY == 0 {
                let verdict = self.full_check();
                self.verdict(verdict);
            }
        }
        self.now = until;
    }

    fn full_check(&self) -> Verdict {
        let Some(topic_id) = &self.topic_id else {
            return Ok(());
        };
        let isr = (0..self.cfg.partitions)
            .filter_map(|p| {
                let reg = self.image.partition(topic_id, p)?;
                Some((p, reg.isr.clone()))
            })
            .collect();
        self.checker.check_logs(&self.nodes, &isr)
    }

    fn step(&mut self, ev: Ev) -> Verdict {
        match ev {
            Ev::Deliver(env) => self.deliver(env),
            Ev::NodeTick(id) => {
                self.schedule(NODE_TICK_MS, Ev::NodeTick(id));
                self.node_tick(id)
            }
            Ev::ControllerTick => {
                self.schedule(CONTROLLER_TICK_MS, Ev::ControllerTick);
                let records = self.controller.tick(&self.image, self.now);
                self.commit(records);
                self.maybe_create_topic();
                Ok(())
            }
            Ev::FlushDone {
                node,
                incarnation,
                partition,
            } => self.flush_done(node, incarnation, partition),
            Ev::ClientTick(client) => {
                let delay = self.rng.range(5, 30);
                self.schedule(delay, Ev::ClientTick(client));
                if client == CONSUMER {
                    self.consumer_tick();
                } else {
                    self.producer_tick(client);
                }
                Ok(())
            }
            Ev::Fault => {
                if self.faults_on {
                    self.inject_fault();
                    let delay = self.rng.range(200, 900);
                self.schedule(delay, Ev::Fault);
                }
                Ok(())
            }
            Ev::Restart(id) => {
                let node = self.nodes.get_mut(&id).expect("node");
                if !node.up {
                    node.restart();
                    self.log(format!("node {id} restarts"));
                }
                Ok(())
            }
            Ev::Resume(id) => {
                let node = self.nodes.get_mut(&id).expect("node");
                if node.paused {
                    node.paused = false;
                    self.log(format!("node {id} resumes"));
                }
                Ok(())
            }
            Ev::Heal(a, b) => {
                if self.faults_on {
                    self.net.heal(a, b);
                    self.log(format!("link {a}-{b} healed"));
                }
                Ok(())
            }
        }
    }

    // ---- faults ----

    fn inject_fault(&mut self) {
        let brokers: Vec<Addr> = (1..=self.cfg.brokers).collect();
        self.faults += 1;
        match self.rng.range(0, 9) {
            0 | 1 => {
                let id = self.rng.pick(&brokers);
                if !self.nodes[&id].up {
                    return;
                }
                let torn = self.rng.chance(0.5);
                let seed = self.rng.next_u64();
                let mut local = Rng::new(seed);
                let partitions = self.cfg.partitions;
                self.nodes
                    .get_mut(&id)
                    .expect("node")
                    .crash(
                        partitions,
                        |unsynced| {
                            if torn { local.range(0, unsynced) } else { 0 }
                        },
                    );
                self.log(format!("node {id} crashes (torn tail: {torn})"));
                let down = self.rng.range(100, 4_000);
                self.schedule(down, Ev::Restart(id));
            }
            2 | 3 => {
                let id = self.rng.pick(&brokers);
                if !self.nodes[&id].up || self.nodes[&id].paused {
                    return;
                }
                self.nodes.get_mut(&id).expect("node").paused = true;
                self.log(format!("node {id} pauses"));
                let pause = self.rng.range(100, 4_000);
                self.schedule(pause, Ev::Resume(id));
            }
            4..=6 => {
                let mut ends: Vec<Addr> = brokers.clone();
                ends.push(CONTROLLER);
                let a = self.rng.pick(&ends);
                let b = self.rng.pick(&ends);
                if a == b {
                    return;
                }
                self.net.cut(a, b);
                self.log(format!("link {a}-{b} cut"));
                let cut = self.rng.range(200, 5_000);
                self.schedule(cut, Ev::Heal(a, b));
            }
            7 => {
                self.controller.activate(&self.image, self.now);
                self.log("controller fails over".to_string());
            }
            _ => {}
        }
    }

    fn heal(&mut self) {
        self.faults_on = false;
        self.net.heal_all();
        self.net.faults = Faults::default();
        for node in self.nodes.values_mut() {
            node.paused = false;
            if !node.up {
                node.restart();
            }
        }
        self.log("all healed".to_string());
    }

    // ---- the controller ----

    fn commit(&mut self, records: Vec<MetadataRecord>) {
        for record in records {
            if let Err(e) = self.image.apply(&record) {
                let verdict = Err(format!("controller record {record:?} does not apply: {e}"));
                self.verdict(verdict);
            }
            if let MetadataRecord::PartitionChanged { registration, .. } = &record
                && registration.leader_epoch > 0
                && self.metadata.iter().rev().find_map(|r| match r {
                    MetadataRecord::PartitionChanged { registration: old, .. }
                    | MetadataRecord::PartitionCreated { registration: old, .. } => Some(old.leader_epoch),
                    _ => None,
                }) != Some(registration.leader_epoch)
            {
                self.elections += 1;
            }
            self.log(format!("metadata {}: {record:?}", self.metadata.len()));
            self.metadata.push(record);
        }
    }

    fn controller_request(&mut self, request: ControllerRequest) -> ControllerReply {
        let (records, reply) = self.controller.handle(&self.image, self.now, request);
        self.commit(records);
        reply
    }

    fn maybe_create_topic(&mut self) {
        if self.topic_id.is_some() {
            return;
        }
        let unfenced = self.image.brokers().filter(|b| !b.fenced).count();
        if unfenced < self.cfg.brokers as usize {
            return;
        }
        let reply = self.controller_request(ControllerRequest::CreateTopic {
            name: TOPIC.to_string(),
            partitions: self.cfg.partitions,
            replication_factor: 3,
            configs: [("min.insync.replicas".to_string(), "2".to_string())].into(),
        });
        match reply {
            ControllerReply::TopicCreated { topic_id } => {
                self.log(format!("topic created: {topic_id}"));
                self.topic_id = Some(topic_id);
            }
            other => panic!("seed {}: create topic: {other:?}", self.seed),
        }
    }

    fn controller_receive(&mut self, from: Addr, msg: Msg) {
        let inc = self.incarnation(from);
        match msg {
            Msg::Register { incarnation } => {
                let reply = self.controller_request(ControllerRequest::RegisterBroker {
                    node: from,
                    incarnation: format!("{from}-{incarnation}"),
                    endpoints: Endpoints {
                        client: format!("node{from}:9292"),
                        internal: format!("node{from}:9293"),
                    },
                    rack: None,
                    cluster_id: format!("sim-{}", self.seed),
                });
                if let ControllerReply::Registered { broker_epoch } = reply {
                    self.send(
                        CONTROLLER,
                        from,
                        Some(incarnation),
                        Msg::Registered { broker_epoch },
                    );
                }
            }
            Msg::Heartbeat {
                broker_epoch,
                metadata_offset,
            } => {
                let _ = self.controller_request(ControllerRequest::BrokerHeartbeat {
                    node: from,
                    broker_epoch,
                    metadata_offset,
                    want_shutdown: false,
                });
                let from_offset = metadata_offset + 1;
                let records: Vec<MetadataRecord> = self
                    .metadata
                    .iter()
                    .skip(from_offset as usize)
                    .take(200)
                    .cloned()
                    .collect();
                self.send(
                    CONTROLLER,
                    from,
                    inc,
                    Msg::HeartbeatReply {
                        from_offset,
                        records,
                    },
                );
            }
            Msg::AlterIsr {
                topic_id,
                partition,
                broker_epoch,
                request,
            } => {
                let reply = self.controller_request(ControllerRequest::AlterPartition {
                    node: from,
                    broker_epoch,
                    topic_id: topic_id.clone(),
                    partition,
                    leader_epoch: request.leader_epoch,
                    partition_epoch: request.partition_epoch,
                    new_isr: request.new_isr.clone(),
                });
                let answer = match reply {
                    ControllerReply::PartitionAltered(reg) => AlterIsrAnswer::Accepted(reg),
                    _ => AlterIsrAnswer::Refused,
                };
                self.send(
                    CONTROLLER,
                    from,
                    inc,
                    Msg::AlterIsrAnswer { partition, answer },
                );
            }
            other => panic!("the controller got {other:?}"),
        }
    }

    // ---- brokers ----

    fn deliver(&mut self, env: Envelope) -> Verdict {
        if env.to == CONTROLLER {
            self.controller_receive(env.from, env.msg);
            return Ok(());
        }
        if env.to >= 100 {
            return self.client_receive(env.to, env.from, env.msg);
        }
        let node = &self.nodes[&env.to];
        if !node.up || env.to_incarnation.is_some_and(|i| i != node.incarnation) {
            return Ok(()); // the process it was for is gone
        }
        if node.paused {
            // Sits in the socket buffer until the process runs again.
            self.schedule(NODE_TICK_MS, Ev::Deliver(env));
            return Ok(());
        }
        self.node_receive(env.to, env.from, env.msg)
    }

    fn node_tick(&mut self, id: Addr) -> Verdict {
        let node = &self.nodes[&id];
        if !node.up || node.paused {
            return Ok(());
        }
        let inc = node.incarnation;
        if self.now.saturating_sub(node.last_heartbeat_ms) >= HEARTBEAT_MS {
            self.nodes.get_mut(&id).expect("node").last_heartbeat_ms = self.now;
            let node = &self.nodes[&id];
            let msg = match node.broker_epoch {
                None => Msg::Register { incarnation: inc },
                Some(broker_epoch) => Msg::Heartbeat {
                    broker_epoch,
                    // The offset of the last record applied (-1: none).
                    metadata_offset: node.image.next_offset() - 1,
                },
            };
            self.send(id, CONTROLLER, None, msg);
        }
        // Long polls that ran out of time are answered empty.
        let now = self.now;
        let mut expired = Vec::new();
        for (p, parked) in &mut self.nodes.get_mut(&id).expect("node").parked {
            parked.retain(|x| {
                if x.until_ms <= now {
                    expired.push((*p, x.clone()));
                    false
                } else {
                    true
                }
            });
        }
        for (p, parked) in expired {
            self.send_fetch_data(id, p, parked.to, parked.answer, false);
        }
        let partitions: Vec<u32> = self.nodes[&id].replicas.keys().copied().collect();
        for p in partitions {
            self.replica_event(id, p, Event::Tick)?;
        }
        Ok(())
    }

    fn node_receive(&mut self, id: Addr, from: Addr, msg: Msg) -> Verdict {
        match msg {
            Msg::Registered { broker_epoch } => {
                let node = self.nodes.get_mut(&id).expect("node");
                if node.broker_epoch.is_none() {
                    node.broker_epoch = Some(broker_epoch);
                    node.last_heartbeat_ms = 0; // heartbeat at the next tick
                    self.log(format!("node {id} registered, broker epoch {broker_epoch}"));
                }
                Ok(())
            }
            Msg::HeartbeatReply {
                from_offset,
                records,
            } => self.apply_metadata(id, from_offset, records),
            Msg::Fetch { partition, request } => {
                if self.nodes[&id].replicas.contains_key(&partition) {
                    self.replica_event(id, partition, Event::Fetch(request))
                } else {
                    let answer = FetchAnswer::Error {
                        fetch_id: request.fetch_id,
                        error: FetchError::NotLeader,
                    };
                    self.send(
                        id,
                        from,
                        None,
                        Msg::FetchAnswer {
                            partition,
                            answer,
                            batches: Bytes::new(),
                        },
                    );
                    Ok(())
                }
            }
            Msg::FetchAnswer {
                partition,
                answer,
                batches,
            } => self.replica_event(id, partition, Event::FetchAnswered { answer, batches }),
            Msg::AlterIsrAnswer { partition, answer } => {
                self.replica_event(id, partition, Event::AlterIsrAnswered(answer))
            }
            Msg::Produce {
                partition,
                request_id,
                value,
            } => self.produce(id, from, partition, request_id, value),
            Msg::Read { partition, offset, request_id } => {
                self.read(id, from, partition, offset, request_id);
                Ok(())
            }
            other => panic!("node {id} got {other:?}"),
        }
    }

    fn apply_metadata(
        &mut self,
        id: Addr,
        from_offset: i64,
        records: Vec<MetadataRecord>,
    ) -> Verdict {
        let node = self.nodes.get_mut(&id).expect("node");
        if from_offset != node.image.next_offset() || records.is_empty() {
            return Ok(()); // a late or duplicated answer
        }
        for record in &records {
            node.image.apply(record).map_err(|e| {
                format!("node {id}: metadata record {record:?} does not apply: {e}")
            })?;
        }
        let Some(topic_id) = self.topic_id.clone() else {
            return Ok(());
        };
        let Some(broker_epoch) = node.broker_epoch else {
            return Ok(());
        };
        for p in 0..self.cfg.partitions {
            let node = self.nodes.get_mut(&id).expect("node");
            let Some(reg) = node.image.partition(&topic_id, p).cloned() else {
                continue;
            };
            if !reg.replicas.contains(&id) {
                continue;
            }
            if !node.replicas.contains_key(&p) {
                let mut config = ReplicaConfig::new(id, broker_epoch);
                config.min_insync_replicas = 2;
                let hw = node.logs[&p].high_watermark_checkpoint().unwrap_or(0);
                node.replicas.insert(p, Replica::new(config, hw));
            }
            self.replica_event(id, p, Event::Registration(reg))?;
        }
        Ok(())
    }

    /// Feeds one event to a replica and carries out what it asks, and what follows.
    fn replica_event(&mut self, id: Addr, partition: u32, event: Event) -> Verdict {
        let mut events = VecDeque::from([event]);
        while let Some(event) = events.pop_front() {
            let node = self.nodes.get_mut(&id).expect("node");
            let Some(replica) = node.replicas.get_mut(&partition) else {
                return Ok(());
            };
            let log = &node.logs[&partition];
            let commands = replica.handle(event, self.now, log);
            for command in commands {
                self.execute(id, partition, command, &mut events)?;
            }
        }
        Ok(())
    }

    fn leader_epoch(&self, id: Addr, partition: u32) -> Option<i32> {
        match self.nodes[&id].replicas.get(&partition)?.role() {
            Role::Leader { leader_epoch } => Some(leader_epoch),
            _ => None,
        }
    }

    fn execute(
        &mut self,
        id: Addr,
        partition: u32,
        command: Command,
        events: &mut VecDeque<Event>,
    ) -> Verdict {
        let inc = self.incarnation(id);
        match command {
            Command::SendFetch { leader, request } => {
                self.send(id, leader, None, Msg::Fetch { partition, request });
            }
            Command::AnswerFetch { to, answer } => {
                self.send_fetch_data(id, partition, to, answer, true);
            }
            Command::AppendReplicated { batches } => {
                let log = &self.nodes[&id].logs[&partition];
                log.append_replicated(&batches).map_err(|e| {
                    format!("node {id} partition {partition}: replicated append failed: {e}")
                })?;
                self.log(format!(
                    "node {id} p{partition} replicated up to {}",
                    log.offsets().log_end_offset
                ));
                events.push_back(Event::LogAppended);
                self.unpark(id, partition);
            }
            Command::Flush => {
                let node = self.nodes.get_mut(&id).expect("node");
                let scheduled = node.flush_scheduled.entry(partition).or_default();
                if !*scheduled {
                    *scheduled = true;
                    let incarnation = node.incarnation;
                    let delay = self.rng.range(0, 4);
                    self.schedule(
                        delay,
                        Ev::FlushDone {
                            node: id,
                            incarnation,
                            partition,
                        },
                    );
                }
            }
            Command::Truncate { offset } => {
                let log = &self.nodes[&id].logs[&partition];
                let end = log.offsets().log_end_offset;
                if offset > end {
                    return Err(format!(
                        "node {id} partition {partition}: asked to restart the log at {offset}, past its end {end} (no retention runs here)"
                    ));
                }
                log.truncate_to(offset)
                    .map_err(|e| format!("node {id} partition {partition}: truncate: {e}"))?;
                if offset < end {
                    self.truncations += 1;
                }
                self.log(format!(
                    "node {id} p{partition} truncated to {offset} (was {end})"
                ));
                events.push_back(Event::LogTruncated);
            }
            Command::ProposeIsr(request) => {
                let topic_id = self.topic_id.clone().expect("topic");
                let broker_epoch = self.nodes[&id].broker_epoch.expect("registered");
                self.log(format!(
                    "node {id} p{partition} proposes ISR {:?}",
                    request.new_isr
                ));
                self.send(
                    id,
                    CONTROLLER,
                    None,
                    Msg::AlterIsr {
                        topic_id,
                        partition,
                        broker_epoch,
                        request,
                    },
                );
            }
            Command::PublishHighWatermark(hw) => {
                let epoch = self
                    .leader_epoch(id, partition)
                    .expect("only a leader publishes");
                self.checker.publish(partition, epoch, hw)?;
                let log = &self.nodes[&id].logs[&partition];
                log.checkpoint_high_watermark(hw)
                    .map_err(|e| format!("node {id}: checkpoint HW: {e}"))?;
                let waiters = self
                    .nodes
                    .get_mut(&id)
                    .expect("node")
                    .waiters
                    .entry(partition)
                    .or_default();
                let (done, waiting): (Vec<Waiter>, Vec<Waiter>) = std::mem::take(waiters)
                    .into_iter()
                    .partition(|w| w.leader_epoch == epoch && w.offset < hw);
                *waiters = waiting;
                for w in done {
                    self.send(
                        id,
                        w.client,
                        None,
                        Msg::ProduceAnswer {
                            partition,
                            request_id: w.request_id,
                            result: Ok(w.offset),
                        },
                    );
                }
            }
            Command::LeadershipEnded { leader_epoch } => {
                let waiters = self
                    .nodes
                    .get_mut(&id)
                    .expect("node")
                    .waiters
                    .entry(partition)
                    .or_default();
                let (failed, kept): (Vec<Waiter>, Vec<Waiter>) = std::mem::take(waiters)
                    .into_iter()
                    .partition(|w| w.leader_epoch == leader_epoch);
                *waiters = kept;
                self.log(format!(
                    "node {id} p{partition} stops leading epoch {leader_epoch}"
                ));
                for w in failed {
                    self.send(
                        id,
                        w.client,
                        None,
                        Msg::ProduceAnswer {
                            partition,
                            request_id: w.request_id,
                            result: Err("NOT_LEADER".into()),
                        },
                    );
                }
            }
        }
        let _ = inc;
        Ok(())
    }

    /// Answers a fetch; a data answer with nothing to send is parked (long poll) when
    /// `park` is set.
    fn send_fetch_data(
        &mut self,
        id: Addr,
        partition: u32,
        to: Addr,
        answer: FetchAnswer,
        park: bool,
    ) {
        let batches = match &answer {
            FetchAnswer::Data { from_offset, .. } => {
                let log = &self.nodes[&id].logs[&partition];
                if *from_offset >= log.offsets().log_end_offset {
                    if park {
                        let until_ms = self.now + FETCH_WAIT_MS;
                        let node = self.nodes.get_mut(&id).expect("node");
                        node.parked.entry(partition).or_default().push(Parked {
                            to,
                            answer,
                            until_ms,
                        });
                        return;
                    }
                    Bytes::new()
                } else {
                    match log.read(*from_offset, FETCH_MAX_BYTES, None) {
                        Ok(data) => data.records,
                        Err(e) => panic!("seed {}: node {id} read for a follower: {e}", self.seed),
                    }
                }
            }
            _ => Bytes::new(),
        };
        let inc = self.incarnation(to);
        self.send(
            id,
            to,
            inc,
            Msg::FetchAnswer {
                partition,
                answer,
                batches,
            },
        );
    }

    fn unpark(&mut self, id: Addr, partition: u32) {
        let parked = self
            .nodes
            .get_mut(&id)
            .expect("node")
            .parked
            .remove(&partition)
            .unwrap_or_default();
        for p in parked {
            self.send_fetch_data(id, partition, p.to, p.answer, true);
        }
    }

    fn flush_done(&mut self, id: Addr, incarnation: u64, partition: u32) -> Verdict {
        let node = &self.nodes[&id];
        if !node.up || node.incarnation != incarnation {
            return Ok(());
        }
        if node.paused {
            self.schedule(
                NODE_TICK_MS,
                Ev::FlushDone {
                    node: id,
                    incarnation,
                    partition,
                },
            );
            return Ok(());
        }
        self.nodes
            .get_mut(&id)
            .expect("node")
            .flush_scheduled
            .insert(partition, false);
        self.nodes[&id].logs[&partition]
            .flush()
            .map_err(|e| format!("node {id} partition {partition}: flush: {e}"))?;
        self.replica_event(id, partition, Event::LogFlushed)
    }

    fn produce(
        &mut self,
        id: Addr,
        client: Addr,
        partition: u32,
        request_id: u64,
        value: String,
    ) -> Verdict {
        let refused = |reason: String| Msg::ProduceAnswer {
            partition,
            request_id,
            result: Err(reason),
        };
        let Some(replica) = self.nodes[&id].replicas.get(&partition) else {
            self.send(id, client, None, refused("NOT_LEADER".into()));
            return Ok(());
        };
        let epoch = match replica.check_produce(true) {
            Ok(epoch) => epoch,
            Err(refusal) => {
                self.send(id, client, None, refused(format!("{refusal:?}")));
                return Ok(());
            }
        };
        let mut builder = RecordBatchBuilder::new(Compression::None);
        builder.push(&Record {
            value: Some(Bytes::from(value.clone())),
            timestamp: self.now as i64,
            ..Record::default()
        });
        let mut batch = builder.build().expect("build a batch").to_vec();
        let log = &self.nodes[&id].logs[&partition];
        let info = log
            .append(&mut batch, epoch)
            .map_err(|e| format!("node {id} partition {partition}: append: {e}"))?;
        self.checker.leader_append(partition, epoch, id)?;
        self.log(format!(
            "node {id} p{partition} epoch {epoch} appends {value} at {}",
            info.base_offset
        ));
        self.nodes
            .get_mut(&id)
            .expect("node")
            .waiters
            .entry(partition)
            .or_default()
            .push(Waiter {
                leader_epoch: epoch,
                offset: info.base_offset,
                client,
                request_id,
            });
        self.unpark(id, partition);
        self.replica_event(id, partition, Event::LogAppended)
    }

    fn read(&mut self, id: Addr, client: Addr, partition: u32, offset: i64, request_id: u64) {
        let node = &self.nodes[&id];
        let refused = Msg::ReadRefused { partition, request_id };
        let Some(replica) = node.replicas.get(&partition) else {
            self.send(id, client, None, refused);
            return;
        };
        let (Role::Leader { leader_epoch }, Some(hw)) =
            (replica.role(), replica.published_high_watermark())
        else {
            self.send(id, client, None, refused);
            return;
        };
        let log = &node.logs[&partition];
        let mut records = Vec::new();
        if offset < hw {
            match log.read(offset, 1024, Some(hw)) {
                Ok(data) => {
                    for batch in data.batches() {
                        for r in decode_records(&batch).expect("decode") {
                            if r.offset >= offset && r.offset < hw {
                                let v = String::from_utf8(r.value.expect("value").to_vec())
                                    .expect("utf-8");
                                records.push((r.offset, v));
                            }
                        }
                    }
                }
                Err(e) => panic!(
                    "seed {}: node {id} consumer read at {offset}: {e}",
                    self.seed
                ),
            }
        }
        self.send(
            id,
            client,
            None,
            Msg::ReadAnswer {
                partition,
                request_id,
                leader_epoch,
                records,
                high_watermark: hw,
            },
        );
    }

    // ---- clients ----

    /// Where a client sends a partition's requests: the leader the committed metadata
    /// names, and now and then a random broker (a client with stale metadata).
    fn leader_for(&mut self, partition: u32) -> Option<Addr> {
        if self.rng.chance(0.1) {
            return Some(self.rng.range(1, self.cfg.brokers as u64) as Addr);
        }
        let reg = self.image.partition(self.topic_id.as_ref()?, partition)?;
        (reg.leader != NO_LEADER).then_some(reg.leader)
    }

    fn producer_tick(&mut self, client: Addr) {
        if !self.producing || self.topic_id.is_none() {
            return;
        }
        let now = self.now;
        let producer = self.producers.get_mut(&client).expect("producer");
        producer
            .outstanding
            .retain(|_, (_, _, sent)| now - *sent < PRODUCE_TIMEOUT_MS);
        if producer.outstanding.len() >= 4 {
            return;
        }
        let partition = self.rng.range(0, self.cfg.partitions as u64 - 1) as u32;
        let Some(leader) = self.leader_for(partition) else {
            return;
        };
        let producer = self.producers.get_mut(&client).expect("producer");
        producer.next_request += 1;
        let request_id = producer.next_request;
        let value = format!("c{client}-{request_id}");
        producer
            .outstanding
            .insert(request_id, (partition, value.clone(), now));
        self.send(
            client,
            leader,
            None,
            Msg::Produce {
                partition,
                request_id,
                value,
            },
        );
    }

    fn consumer_tick(&mut self) {
        if self.topic_id.is_none() {
            return;
        }
        let partition = self.rng.range(0, self.cfg.partitions as u64 - 1) as u32;
        let Some(leader) = self.leader_for(partition) else {
            return;
        };
        let now = self.now;
        let c = &mut self.consumer;
        if c.in_flight.get(&partition).is_some_and(|(_, sent)| now - sent < PRODUCE_TIMEOUT_MS) {
            return;
        }
        c.next_request += 1;
        let request_id = c.next_request;
        c.in_flight.insert(partition, (request_id, now));
        let offset = *c.next_offset.entry(partition).or_default();
        self.send(CONSUMER, leader, None, Msg::Read { partition, offset, request_id });
    }

    fn client_receive(&mut self, client: Addr, from: Addr, msg: Msg) -> Verdict {
        match msg {
            Msg::ProduceAnswer {
                partition,
                request_id,
                result,
            } => {
                let producer = self.producers.get_mut(&client).expect("producer");
                let Some((p, value, _)) = producer.outstanding.remove(&request_id) else {
                    return Ok(()); // timed out already, or a duplicate
                };
                assert_eq!(p, partition);
                if let Ok(offset) = result {
                    self.log(format!("client {client} acked {value} at p{partition} offset {offset} by node {from}"));
                    self.checker.acknowledged(partition, offset, &value)?;
                    if !self.faults_on {
                        *self.acked_after_heal.entry(partition).or_default() += 1;
                    }
                }
                Ok(())
            }
            Msg::ReadAnswer {
                partition,
                request_id,
                leader_epoch,
                records,
                high_watermark,
            } => {
                let c = &mut self.consumer;
                if c.in_flight.get(&partition).map(|(id, _)| *id) != Some(request_id) {
                    return Ok(()); // late or duplicated
                }
                c.in_flight.remove(&partition);
                let max_epoch = c.max_epoch.entry(partition).or_insert(-1);
                if leader_epoch < *max_epoch {
                    return Ok(()); // a deposed leader: a consumer that tracks epochs ignores it
                }
                *max_epoch = leader_epoch;
                let max_hw = c.max_hw.entry(partition).or_insert(0);
                if high_watermark < *max_hw {
                    return Err(format!(
                        "consumer: partition {partition} HW went back from {max_hw} to {high_watermark} (leader epoch {leader_epoch}, node {from})"
                    ));
                }
                *max_hw = high_watermark;
                let next = c.next_offset.entry(partition).or_default();
                for (offset, value) in records {
                    if offset > *next {
                        return Err(format!(
                            "consumer: partition {partition} skipped from {next} to {offset}"
                        ));
                    }
                    if offset == *next {
                        *next += 1;
                    }
                    self.checker.consumed(partition, offset, &value)?;
                }
                Ok(())
            }
            Msg::ReadRefused { partition, request_id } => {
                let c = &mut self.consumer;
                if c.in_flight.get(&partition).map(|(id, _)| *id) == Some(request_id) {
                    c.in_flight.remove(&partition);
                }
                Ok(())
            }
            other => panic!("client {client} got {other:?}"),
        }
    }
}
