//! The simulated cluster: an event queue in simulated time, the network, the brokers,
//! the controller quorum (one linearizable log: openraft's job is trusted), clients and
//! the fault schedule, all driven by one seed.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;

use weir_cluster::controller::records::MetadataRecord;
use weir_cluster::controller::{
    Controller, ControllerConfig, ControllerReply, ControllerRequest, MetadataImage,
};

use super::checker::{Checker, Verdict};
use super::net::{Addr, Envelope, Faults, Msg, Network};
use super::node::Node;
use super::rng::Rng;

pub(crate) const TOPIC: &str = "sim";
pub(crate) const NODE_TICK_MS: u64 = 50;
pub(crate) const CONTROLLER_TICK_MS: u64 = 100;
pub(crate) const HEARTBEAT_MS: u64 = 500;
pub(crate) const FETCH_WAIT_MS: u64 = 500;
pub(crate) const FETCH_MAX_BYTES: usize = 2048;
pub(crate) const PRODUCE_TIMEOUT_MS: u64 = 5_000;
pub(crate) const PRODUCERS: i32 = 2;
pub(crate) const CONSUMER: Addr = 200;
/// Lines of trace kept for a failure report.
pub(crate) const TRACE_LINES: usize = 400;
/// Steps between full log checks (the cheap invariants are checked at every step).
pub(crate) const FULL_CHECK_EVERY: u64 = 100;
/// How often the simulated controller moves leaderships back to preferred replicas.
pub(crate) const PREFERRED_LEADER_CHECK_MS: u64 = 3_000;

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
    /// Times a broker's lease lapsed (its leaders stepped aside).
    pub lapses: u64,
}

#[derive(Debug, Clone)]
pub(crate) enum Ev {
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
    /// The end of a cut: these directions `(from, to)` carry messages again.
    Heal {
        links: Vec<(Addr, Addr)>,
        what: String,
    },
}

#[derive(Debug, Default)]
pub(crate) struct Producer {
    pub(crate) next_request: u64,
    /// request id -> (partition, value, sent at)
    pub(crate) outstanding: BTreeMap<u64, (u32, String, u64)>,
}

#[derive(Debug, Default)]
pub(crate) struct Consumer {
    /// One read in flight per partition, as over one ordered connection: (request id,
    /// sent at).
    pub(crate) in_flight: BTreeMap<u32, (u64, u64)>,
    pub(crate) next_request: u64,
    pub(crate) next_offset: BTreeMap<u32, i64>,
    pub(crate) max_epoch: BTreeMap<u32, i32>,
    pub(crate) max_hw: BTreeMap<u32, i64>,
}

pub struct World {
    pub(crate) seed: u64,
    pub(crate) cfg: SimConfig,
    pub(crate) rng: Rng,
    pub(crate) now: u64,
    pub(crate) seq: u64,
    pub(crate) steps: u64,
    pub(crate) queue: BTreeMap<(u64, u64), Ev>,
    pub(crate) net: Network,
    pub(crate) nodes: BTreeMap<Addr, Node>,
    pub(crate) controller: Controller,
    pub(crate) image: MetadataImage,
    pub(crate) metadata: Vec<MetadataRecord>,
    pub(crate) topic_id: Option<String>,
    pub(crate) checker: Checker,
    pub(crate) producers: BTreeMap<Addr, Producer>,
    pub(crate) consumer: Consumer,
    pub(crate) faults_on: bool,
    pub(crate) producing: bool,
    pub(crate) acked_after_heal: BTreeMap<u32, u64>,
    pub(crate) trace: VecDeque<String>,
    pub(crate) elections: u64,
    pub(crate) truncations: u64,
    pub(crate) faults: u64,
    /// When the controller (across failovers) last accepted a heartbeat or registration
    /// of each broker: the premise check (c) measures fences against it.
    pub(crate) controller_heard: BTreeMap<Addr, u64>,
    /// When the current controller became active.
    pub(crate) activated_at: u64,
    pub(crate) lapses: u64,
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
        // Preferred-leader elections every few seconds rather than every 30 s, so that
        // they happen during faults in a 30 s run too.
        let config = ControllerConfig {
            preferred_leader_check_ms: PREFERRED_LEADER_CHECK_MS,
            ..ControllerConfig::default()
        };
        let controller = Controller::new(config, move || {
            ids += 1;
            format!("topic-{ids}")
        });
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
            controller_heard: BTreeMap::new(),
            activated_at: 0,
            lapses: 0,
        };
        world.controller.activate(&world.image, 0, &BTreeMap::new());
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
            lapses: self.lapses,
        }
    }

    pub(crate) fn check_live(&self) -> Verdict {
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

    pub(crate) fn verdict(&self, verdict: Verdict) {
        if let Err(problem) = verdict {
            let trace: Vec<&str> = self.trace.iter().map(String::as_str).collect();
            panic!(
                "seed {seed}: {problem}\n  at {now} ms, step {steps}\n  replay: WEIR_SIM_SEED={seed} cargo test -p weir-cluster --test it -- sim::\n--- last {n} events ---\n{trace}",
                seed = self.seed,
                now = self.now,
                steps = self.steps,
                n = trace.len(),
                trace = trace.join("\n"),
            );
        }
    }

    pub(crate) fn log(&mut self, line: String) {
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

    pub(crate) fn schedule(&mut self, delay_ms: u64, ev: Ev) {
        self.seq += 1;
        self.queue.insert((self.now + delay_ms, self.seq), ev);
    }

    pub(crate) fn send(&mut self, from: Addr, to: Addr, to_incarnation: Option<u64>, msg: Msg) {
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

    /// `broker.session.timeout.ms`: the controller fences a broker silent this long, and
    /// a broker steps aside this long after sending its last answered heartbeat.
    pub(crate) fn lease_ms(&self) -> u64 {
        self.controller.config().session_timeout_ms
    }

    pub(crate) fn incarnation(&self, node: Addr) -> Option<u64> {
        self.nodes.get(&node).map(|n| n.incarnation)
    }

    pub(crate) fn run_until(&mut self, until: u64) {
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
            if self.steps.is_multiple_of(FULL_CHECK_EVERY) {
                let verdict = self.full_check();
                self.verdict(verdict);
            }
        }
        self.now = until;
    }

    pub(crate) fn full_check(&self) -> Verdict {
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

    pub(crate) fn step(&mut self, ev: Ev) -> Verdict {
        match ev {
            Ev::Deliver(env) => self.deliver(env),
            Ev::NodeTick(id) => {
                self.schedule(NODE_TICK_MS, Ev::NodeTick(id));
                self.node_tick(id)
            }
            Ev::ControllerTick => {
                self.schedule(CONTROLLER_TICK_MS, Ev::ControllerTick);
                self.controller_tick()?;
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
                    node.restart(self.now);
                    self.log(format!("node {id} restarts"));
                }
                Ok(())
            }
            Ev::Resume(id) => {
                let node = self.nodes.get_mut(&id).expect("node");
                if node.paused {
                    node.paused = false;
                    self.log(format!("node {id} resumes"));
                    // Its lease timer, due while it was stopped, fires first.
                    return self.check_lease(id);
                }
                Ok(())
            }
            Ev::Heal { links, what } => {
                if self.faults_on {
                    for (from, to) in links {
                        self.net.heal_one_way(from, to);
                    }
                    self.log(format!("{what} healed"));
                }
                Ok(())
            }
        }
    }
}
