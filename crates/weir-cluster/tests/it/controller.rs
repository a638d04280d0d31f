//! Random sequences of broker and admin operations (registrations and restarts,
//! heartbeats at random times, controlled shutdowns, ticks, topic creation and growth,
//! deletions, config changes, AlterPartition with random epochs and ISRs, controller
//! failovers) against the controller and its image, checking after every step that the
//! records apply and the image keeps the invariants of `docs/replication.md` § 1, and
//! that the controller's verdicts match a small model (sessions, AlterPartition's
//! acceptance rule, placement's broker count).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use proptest::sample::Index;
use weir_cluster::BrokerId;
use weir_cluster::config::UNCLEAN_LEADER_ELECTION_ENABLE;
use weir_cluster::controller::{
    BrokerEpoch, Controller, ControllerConfig, ControllerError, ControllerReply, ControllerRequest,
    Endpoints, MetadataImage, MetadataRecord, NO_LEADER, PartitionRegistration,
};

const CLUSTER: &str = "cluster-prop";
/// Node ids 0..NODES.
const NODES: BrokerId = 4;

#[derive(Debug, Clone)]
enum Op {
    /// A start (`restart`: a new process) or a retried registration of the same one.
    Register {
        node: BrokerId,
        restart: bool,
    },
    Heartbeat {
        node: BrokerId,
        advance_ms: u64,
        caught_up: bool,
        stale: bool,
    },
    /// Every process heartbeats, caught up.
    HeartbeatAll {
        advance_ms: u64,
    },
    Shutdown {
        node: BrokerId,
    },
    Tick {
        advance_ms: u64,
    },
    CreateTopic {
        partitions: u32,
        replication_factor: u32,
        unclean: bool,
    },
    CreatePartitions {
        topic: Index,
        extra: u32,
    },
    DeleteTopic {
        topic: Index,
    },
    SetUnclean {
        topic: Index,
        on: bool,
    },
    AlterPartition {
        topic: Index,
        partition: Index,
        from_leader: bool,
        sender: BrokerId,
        leader_epoch_delta: i32,
        partition_epoch_delta: i32,
        /// Which replicas to propose; bit 7 set drops the forced leader.
        mask: u8,
        stale_member: bool,
    },
    Failover,
}

fn delta() -> impl Strategy<Value = i32> {
    prop_oneof![8 => Just(0), 1 => Just(-1), 1 => Just(1)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..NODES, any::<bool>()).prop_map(|(node, restart)| Op::Register { node, restart }),
        6 => (0..NODES, 0..1_200u64, prop::bool::weighted(0.8), prop::bool::weighted(0.1))
            .prop_map(|(node, advance_ms, caught_up, stale)| Op::Heartbeat {
                node,
                advance_ms,
                caught_up,
                stale,
            }),
        4 => (0..600u64).prop_map(|advance_ms| Op::HeartbeatAll { advance_ms }),
        1 => (0..NODES).prop_map(|node| Op::Shutdown { node }),
        4 => (0..3_000u64).prop_map(|advance_ms| Op::Tick { advance_ms }),
        3 => (1..=4u32, 1..=3u32, prop::bool::weighted(0.3)).prop_map(
            |(partitions, replication_factor, unclean)| Op::CreateTopic {
                partitions,
                replication_factor,
                unclean,
            }
        ),
        1 => (any::<Index>(), 1..3u32).prop_map(|(topic, extra)| Op::CreatePartitions { topic, extra }),
        1 => any::<Index>().prop_map(|topic| Op::DeleteTopic { topic }),
        1 => (any::<Index>(), any::<bool>()).prop_map(|(topic, on)| Op::SetUnclean { topic, on }),
        6 => (
            any::<Index>(),
            any::<Index>(),
            prop::bool::weighted(0.8),
            0..NODES,
            delta(),
            delta(),
            any::<u8>(),
            prop::bool::weighted(0.1),
        )
            .prop_map(
                |(topic, partition, from_leader, sender, le, pe, mask, stale_member)| {
                    Op::AlterPartition {
                        topic,
                        partition,
                        from_leader,
                        sender,
                        leader_epoch_delta: le,
                        partition_epoch_delta: pe,
                        mask,
                        stale_member,
                    }
                }
            ),
        1 => Just(Op::Failover),
    ]
}

/// One broker process as it sees itself.
#[derive(Debug, Default)]
struct Process {
    incarnation: u32,
    /// From its latest registration reply.
    epoch: Option<BrokerEpoch>,
}

struct World {
    controller: Controller,
    ids: Arc<AtomicU64>,
    image: MetadataImage,
    now: u64,
    processes: BTreeMap<BrokerId, Process>,
    /// When the controller last heard from each broker (the model of sessions).
    last_seen: BTreeMap<BrokerId, u64>,
    epochs: BTreeSet<BrokerEpoch>,
    topics: u32,
}

fn controller(ids: &Arc<AtomicU64>) -> Controller {
    let ids = ids.clone();
    Controller::new(ControllerConfig::default(), move || {
        format!("topic-{}", ids.fetch_add(1, Ordering::Relaxed))
    })
}

impl World {
    fn new() -> World {
        let ids = Arc::new(AtomicU64::new(0));
        let mut world = World {
            controller: controller(&ids),
            ids,
            image: MetadataImage::new(),
            now: 0,
            processes: BTreeMap::new(),
            last_seen: BTreeMap::new(),
            epochs: BTreeSet::new(),
            topics: 0,
        };
        let (records, reply) = world.controller.handle(
            &world.image,
            0,
            ControllerRequest::CreateCluster {
                cluster_id: CLUSTER.into(),
            },
        );
        assert_eq!(reply, ControllerReply::ClusterCreated);
        for r in &records {
            world.image.apply(r).unwrap();
        }
        world.controller.activate(&world.image, 0, &BTreeMap::new());
        world
    }

    /// Handles `request`, applies its records and checks the step.
    fn request(&mut self, request: ControllerRequest) -> Result<ControllerReply, TestCaseError> {
        let (records, reply) = self
            .controller
            .handle(&self.image, self.now, request.clone());
        if matches!(reply, ControllerReply::Refused(_)) {
            prop_assert!(records.is_empty(), "a refusal wrote records");
        }
        self.commit(&records)?;
        Ok(reply)
    }

    fn commit(&mut self, records: &[MetadataRecord]) -> Result<(), TestCaseError> {
        let before = self.image.clone();
        for record in records {
            if let MetadataRecord::BrokerRegistered { broker_epoch, .. } = record {
                prop_assert!(
                    self.epochs.insert(*broker_epoch),
                    "broker epoch {broker_epoch} reused"
                );
            }
            if let Err(e) = self.image.apply(record) {
                return Err(TestCaseError::fail(format!(
                    "{record:?} does not apply: {e}"
                )));
            }
        }
        check_invariants(&before, &self.image)
    }

    fn process(&mut self, node: BrokerId) -> &mut Process {
        self.processes.entry(node).or_default()
    }

    fn heartbeat(
        &mut self,
        node: BrokerId,
        caught_up: bool,
        stale: bool,
        want_shutdown: bool,
    ) -> Result<(), TestCaseError> {
        let Some(epoch) = self.process(node).epoch else {
            return Ok(());
        };
        let broker_epoch = if stale { epoch - 1 } else { epoch };
        let metadata_offset = if caught_up {
            self.image.next_offset() - 1
        } else {
            epoch - 1
        };
        let current = self.image.broker(node).map(|b| b.broker_epoch);
        let shutting_down = self.image.broker(node).is_some_and(|b| b.shutting_down);
        let reply = self.request(ControllerRequest::BrokerHeartbeat {
            node,
            broker_epoch,
            metadata_offset,
            want_shutdown,
            metadata_level: weir_cluster::controller::records::METADATA_LEVEL,
        })?;
        if current != Some(broker_epoch) {
            prop_assert!(
                matches!(
                    reply,
                    ControllerReply::Refused(ControllerError::StaleBrokerEpoch { .. })
                ),
                "{reply:?}"
            );
            return Ok(());
        }
        self.last_seen.insert(node, self.now);
        let ControllerReply::Heartbeat {
            fenced,
            should_shutdown,
            through,
        } = reply
        else {
            return Err(TestCaseError::fail(format!("heartbeat answered {reply:?}")));
        };
        // Every decision so far, this answer's records included, lies below `through`.
        prop_assert_eq!(through, self.image.next_offset());
        let broker = self.image.broker(node).expect("registered");
        prop_assert_eq!(fenced, broker.fenced);
        if caught_up && !want_shutdown && !shutting_down {
            prop_assert!(!fenced, "a caught-up broker stays fenced");
        }
        prop_assert_eq!(should_shutdown, want_shutdown || shutting_down);
        if should_shutdown {
            prop_assert_eq!(
                self.image.leaderships(node).count(),
                0,
                "told to stop while leading"
            );
        }
        Ok(())
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op.clone() {
            Op::Register { node, restart } => {
                let process = self.process(node);
                if restart || process.epoch.is_none() {
                    process.incarnation += 1;
                }
                let incarnation = format!("{node}-{}", process.incarnation);
                let reply = self.request(ControllerRequest::RegisterBroker {
                    node,
                    incarnation,
                    endpoints: Endpoints::new(format!("b{node}:9092"), format!("b{node}:9093")),
                    rack: Some(format!("rack-{}", node % 2)),
                    cluster_id: CLUSTER.into(),
                    metadata_level: weir_cluster::controller::records::METADATA_LEVEL,
                })?;
                let ControllerReply::Registered { broker_epoch } = reply else {
                    return Err(TestCaseError::fail(format!(
                        "registration answered {reply:?}"
                    )));
                };
                let broker = self.image.broker(node).expect("registered");
                prop_assert_eq!(broker.broker_epoch, broker_epoch);
                self.process(node).epoch = Some(broker_epoch);
                self.last_seen.insert(node, self.now);
            }
            Op::Heartbeat {
                node,
                advance_ms,
                caught_up,
                stale,
            } => {
                self.now += advance_ms;
                self.heartbeat(node, caught_up, stale, false)?;
            }
            Op::HeartbeatAll { advance_ms } => {
                self.now += advance_ms;
                for node in 0..NODES {
                    self.heartbeat(node, true, false, false)?;
                }
            }
            Op::Shutdown { node } => self.heartbeat(node, true, false, true)?,
            Op::Tick { advance_ms } => {
                self.now += advance_ms;
                let records = self.controller.tick(&self.image, self.now);
                let timeout = self.controller.config().session_timeout_ms;
                for r in &records {
                    if let MetadataRecord::BrokerFenced { node, .. } = r {
                        let silent = self.now - self.last_seen[node];
                        prop_assert!(silent > timeout, "broker {node} fenced after {silent} ms");
                    }
                }
                self.commit(&records)?;
                for b in self.image.brokers().filter(|b| !b.fenced) {
                    let silent = self.now - self.last_seen[&b.node];
                    prop_assert!(
                        silent <= timeout,
                        "broker {} unfenced after {silent} ms",
                        b.node
                    );
                }
            }
            Op::CreateTopic {
                partitions,
                replication_factor,
                unclean,
            } => {
                self.topics += 1;
                let eligible = self.image.brokers().filter(|b| b.is_eligible()).count();
                let reply = self.request(ControllerRequest::CreateTopic {
                    name: format!("t{}", self.topics),
                    partitions,
                    replication_factor,
                    configs: [(
                        UNCLEAN_LEADER_ELECTION_ENABLE.to_string(),
                        unclean.to_string(),
                    )]
                    .into(),
                })?;
                if replication_factor as usize <= eligible {
                    prop_assert!(
                        matches!(reply, ControllerReply::TopicCreated { .. }),
                        "{reply:?}"
                    );
                } else {
                    prop_assert_eq!(
                        reply,
                        ControllerReply::Refused(ControllerError::InvalidReplicationFactor {
                            replication_factor,
                            brokers: eligible
                        })
                    );
                }
            }
            Op::CreatePartitions { topic, extra } => {
                let Some((name, total)) = self
                    .pick_topic(&topic)
                    .map(|t| (t.name.clone(), t.partitions.len() as u32 + extra))
                else {
                    return Ok(());
                };
                self.request(ControllerRequest::CreatePartitions { topic: name, total })?;
            }
            Op::DeleteTopic { topic } => {
                let Some(name) = self.pick_topic(&topic).map(|t| t.name.clone()) else {
                    return Ok(());
                };
                let reply = self.request(ControllerRequest::DeleteTopic { name: name.clone() })?;
                prop_assert!(
                    matches!(reply, ControllerReply::TopicDeleted { .. }),
                    "{reply:?}"
                );
                prop_assert!(self.image.topic(&name).is_none());
            }
            Op::SetUnclean { topic, on } => {
                let Some(name) = self.pick_topic(&topic).map(|t| t.name.clone()) else {
                    return Ok(());
                };
                let reply = self.request(ControllerRequest::AlterTopicConfig {
                    topic: name,
                    key: UNCLEAN_LEADER_ELECTION_ENABLE.into(),
                    value: Some(on.to_string()),
                })?;
                prop_assert_eq!(reply, ControllerReply::TopicConfigAltered);
            }
            Op::AlterPartition {
                topic,
                partition,
                from_leader,
                sender,
                leader_epoch_delta,
                partition_epoch_delta,
                mask,
                stale_member,
            } => self.alter_partition(
                &topic,
                &partition,
                from_leader,
                sender,
                (leader_epoch_delta, partition_epoch_delta),
                mask,
                stale_member,
            )?,
            Op::Failover => {
                self.controller = controller(&self.ids);
                self.controller
                    .activate(&self.image, self.now, &BTreeMap::new());
                for b in self.image.brokers().filter(|b| !b.fenced) {
                    self.last_seen.insert(b.node, self.now);
                }
            }
        }
        Ok(())
    }

    fn pick_topic(&self, index: &Index) -> Option<&weir_cluster::controller::TopicImage> {
        let topics: Vec<_> = self.image.topics().collect();
        (!topics.is_empty()).then(|| topics[index.index(topics.len())])
    }

    /// Proposes an ISR and checks the verdict against the spec's acceptance rule.
    #[allow(clippy::too_many_arguments)]
    fn alter_partition(
        &mut self,
        topic: &Index,
        partition: &Index,
        from_leader: bool,
        sender: BrokerId,
        (leader_epoch_delta, partition_epoch_delta): (i32, i32),
        mask: u8,
        stale_member: bool,
    ) -> Result<(), TestCaseError> {
        let Some(t) = self.pick_topic(topic) else {
            return Ok(());
        };
        let topic_id = t.topic_id.clone();
        let p = partition.index(t.partitions.len());
        let current = t.partitions[p].clone();
        let sender = if from_leader && current.leader != NO_LEADER {
            current.leader
        } else {
            sender
        };
        let epoch_of = |b: BrokerId| self.image.broker(b).map_or(-1, |r| r.broker_epoch);
        let mut members: Vec<BrokerId> = current
            .replicas
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, b)| *b)
            .collect();
        if from_leader && mask & 0x80 == 0 && !members.contains(&sender) {
            members.push(sender);
        }
        let new_isr: Vec<(BrokerId, BrokerEpoch)> = members
            .iter()
            .map(|b| (*b, epoch_of(*b) - i64::from(stale_member)))
            .collect();
        let request = ControllerRequest::AlterPartition {
            node: sender,
            broker_epoch: epoch_of(sender),
            topic_id: topic_id.clone(),
            partition: p as u32,
            leader_epoch: current.leader_epoch + leader_epoch_delta,
            partition_epoch: current.partition_epoch + partition_epoch_delta,
            new_isr: new_isr.clone(),
        };
        let addable = |(b, epoch): &(BrokerId, BrokerEpoch)| {
            current.isr.contains(b)
                || self
                    .image
                    .broker(*b)
                    .is_some_and(|r| r.is_eligible() && r.broker_epoch == *epoch)
        };
        let accept = self.image.broker(sender).is_some()
            && leader_epoch_delta == 0
            && sender == current.leader
            && partition_epoch_delta == 0
            && members.contains(&sender)
            && new_isr.iter().all(addable);
        let reply = self.request(request)?;
        match reply {
            ControllerReply::PartitionAltered(registration) => {
                prop_assert!(accept, "accepted against the rule: {registration:?}");
                let mut expected: Vec<BrokerId> = current.replicas.clone();
                expected.retain(|b| members.contains(b));
                prop_assert_eq!(&registration.isr, &expected);
                prop_assert_eq!(
                    self.image.partition(&topic_id, p as u32),
                    Some(&registration)
                );
            }
            ControllerReply::Refused(e) => prop_assert!(!accept, "refused against the rule: {e}"),
            other => {
                return Err(TestCaseError::fail(format!(
                    "AlterPartition answered {other:?}"
                )));
            }
        }
        Ok(())
    }
}

/// The invariants of § 1 on `image`, and the epochs' progress since `before`.
fn check_invariants(before: &MetadataImage, image: &MetadataImage) -> Result<(), TestCaseError> {
    for p in image.partitions() {
        let r: &PartitionRegistration = p.registration;
        let at = format!("{}/{}: {r:?}", p.topic.name, p.partition);
        prop_assert!(!r.isr.is_empty(), "empty ISR at {at}");
        prop_assert!(
            r.isr.iter().all(|b| r.replicas.contains(b)),
            "ISR not within replicas at {at}"
        );
        if r.leader != NO_LEADER {
            prop_assert!(r.isr.contains(&r.leader), "leader outside the ISR at {at}");
            prop_assert!(
                image.is_eligible(r.leader),
                "fenced or shutting-down leader at {at}"
            );
        } else {
            // Nobody who could lead was left out of an election.
            prop_assert!(
                !r.isr.iter().any(|b| image.is_eligible(*b)),
                "an eligible ISR member does not lead at {at}"
            );
            if p.topic.unclean_leader_election() {
                prop_assert!(
                    !r.replicas.iter().any(|b| image.is_eligible(*b)),
                    "unclean election missed at {at}"
                );
            }
        }
        // An ineligible broker stays in an ISR only as its last member.
        if r.isr.iter().any(|b| !image.is_eligible(*b)) {
            prop_assert_eq!(
                r.isr.len(),
                1,
                "ineligible ISR member beside others at {}",
                at
            );
        }
        if let Some(old) = before.partition(&p.topic.topic_id, p.partition) {
            prop_assert!(
                r.leader_epoch >= old.leader_epoch,
                "leader epoch went back at {at}"
            );
            prop_assert!(
                r.partition_epoch >= old.partition_epoch,
                "partition epoch went back at {at}"
            );
            if r.leader != old.leader {
                prop_assert!(
                    r.leader_epoch > old.leader_epoch,
                    "new leader, same epoch at {at}"
                );
            }
            if r != old {
                prop_assert!(
                    r.partition_epoch > old.partition_epoch,
                    "changed, same partition epoch at {at}"
                );
            }
        }
    }
    for b in image.brokers().filter(|b| b.fenced) {
        prop_assert_eq!(
            image.leaderships(b.node).count(),
            0,
            "fenced broker {} leads",
            b.node
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_controller_keeps_the_metadata_invariants(ops in prop::collection::vec(op(), 1..120)) {
        let mut world = World::new();
        for (i, op) in ops.iter().enumerate() {
            world.step(op).map_err(|e| TestCaseError::fail(format!("step {i} {op:?}: {e}")))?;
        }
        // The image survives a snapshot.
        let json = serde_json::to_string(&world.image).unwrap();
        let back: MetadataImage = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(back, world.image);
    }
}
