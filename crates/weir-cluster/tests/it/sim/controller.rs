//! The simulated controller quorum: one linearizable metadata log (openraft is
//! trusted for consensus) run by `weir_cluster::controller::Controller`.

use weir_cluster::controller::records::{Endpoints, MetadataRecord};
use weir_cluster::controller::{ControllerReply, ControllerRequest};
use weir_cluster::replication::AlterIsrAnswer;

use super::checker::Verdict;
use super::net::{Addr, CONTROLLER, Msg};
use super::world::*;

impl World {
    pub(crate) fn commit(&mut self, records: Vec<MetadataRecord>) {
        for record in records {
            if let Err(e) = self.image.apply(&record) {
                let verdict = Err(format!("controller record {record:?} does not apply: {e}"));
                self.verdict(verdict);
            }
            if let MetadataRecord::PartitionChanged { registration, .. } = &record
                && registration.leader_epoch > 0
                && self.metadata.iter().rev().find_map(|r| match r {
                    MetadataRecord::PartitionChanged {
                        registration: old, ..
                    }
                    | MetadataRecord::PartitionCreated {
                        registration: old, ..
                    } => Some(old.leader_epoch),
                    _ => None,
                }) != Some(registration.leader_epoch)
            {
                self.elections += 1;
            }
            self.log(format!("metadata {}: {record:?}", self.metadata.len()));
            self.metadata.push(record);
        }
    }

    pub(crate) fn controller_request(&mut self, request: ControllerRequest) -> ControllerReply {
        let (records, reply) = self.controller.handle(&self.image, self.now, request);
        self.commit(records);
        reply
    }

    pub(crate) fn maybe_create_topic(&mut self) {
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

    pub(crate) fn controller_receive(&mut self, from: Addr, msg: Msg) {
        let inc = self.incarnation(from);
        match msg {
            Msg::Register {
                incarnation,
                sent_ms,
            } => {
                let reply = self.controller_request(ControllerRequest::RegisterBroker {
                    node: from,
                    incarnation: format!("{from}-{incarnation}"),
                    endpoints: Endpoints::new(
                        format!("node{from}:9292"),
                        format!("node{from}:9293"),
                    ),
                    rack: None,
                    cluster_id: format!("sim-{}", self.seed),
                    metadata_level: weir_cluster::controller::records::METADATA_LEVEL,
                });
                if let ControllerReply::Registered { broker_epoch } = reply {
                    self.controller_heard.insert(from, self.now);
                    self.send(
                        CONTROLLER,
                        from,
                        Some(incarnation),
                        Msg::Registered {
                            broker_epoch,
                            sent_ms,
                        },
                    );
                }
            }
            Msg::Heartbeat {
                incarnation,
                broker_epoch,
                metadata_offset,
                sent_ms,
            } => {
                let reply = self.controller_request(ControllerRequest::BrokerHeartbeat {
                    node: from,
                    broker_epoch,
                    metadata_offset,
                    want_shutdown: false,
                    metadata_level: weir_cluster::controller::records::METADATA_LEVEL,
                });
                let accepted = match reply {
                    ControllerReply::Heartbeat { .. } => {
                        self.controller_heard.insert(from, self.now);
                        Ok(sent_ms)
                    }
                    _ => Err(broker_epoch),
                };
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
                    Some(incarnation),
                    Msg::HeartbeatReply {
                        from_offset,
                        records,
                        accepted,
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
                    ControllerReply::Refused(_) => AlterIsrAnswer::Refused,
                    _ => AlterIsrAnswer::Unknown,
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

    /// A controller tick: sessions expire (check (c) on each broker it fences), and
    /// leaderships move back to preferred replicas.
    pub(crate) fn controller_tick(&mut self) -> Verdict {
        let records = self.controller.tick(&self.image, self.now);
        let fenced: Vec<(Addr, i64)> = records
            .iter()
            .filter_map(|r| match r {
                MetadataRecord::BrokerFenced { node, broker_epoch } => Some((*node, *broker_epoch)),
                _ => None,
            })
            .collect();
        self.commit(records);
        for (node, broker_epoch) in fenced {
            self.check_fencing(node, broker_epoch)?;
        }
        Ok(())
    }

    /// Check (c), the premise of the lease argument (docs/replication.md § Stepping aside
    /// when cut off): the controller fences a broker for session expiry, and elects
    /// other leaders in its place (in the same commit), only once more than the session
    /// timeout has passed since it received that broker's last heartbeat; that heartbeat
    /// was sent before it was received, so the broker's lease, counted from the send of
    /// the last *answered* one, has lapsed by then.
    fn check_fencing(&mut self, node: Addr, broker_epoch: i64) -> Verdict {
        let timeout = self.controller.config().session_timeout_ms;
        let heard = self.controller_heard.get(&node).copied().unwrap_or(0);
        self.log(format!(
            "controller fences node {node} (broker epoch {broker_epoch}), last heard at {heard}"
        ));
        if self.now.saturating_sub(heard) <= timeout {
            // Early: only a new controller does that, counting the session from what
            // its voter last heard over the quorum (the sim's `heard` is anything from
            // never to now). Then the broker may still hold its lease while the new
            // leader takes writes. That costs availability only: the new leader was
            // chosen from the ISR at the old leader's epoch and leads at a higher one, so
            // it no longer fetches from the old leader, whose HW (and so every
            // acks=all answer it gives) stays below what the new leader held; the
            // checks of § 3 and (a) still hold there and are checked as ever.
            if self.activated_at < heard {
                return Err(format!(
                    "the controller fenced node {node} (broker epoch {broker_epoch}) {} ms after it last heard from it, within the session timeout ({timeout} ms), with no failover since",
                    self.now - heard
                ));
            }
            return Ok(());
        }
        let lease_ms = self.lease_ms();
        let n = &self.nodes[&node];
        if !n.up || n.broker_epoch != Some(broker_epoch) {
            return Ok(()); // that registration's process is gone
        }
        if n.lease_expired(self.now, lease_ms) {
            return Ok(());
        }
        Err(format!(
            "the controller fenced node {node} (broker epoch {broker_epoch}) for session expiry while its lease holds: last heartbeat received at {heard} ms, last answered one sent at {} ms (lease {lease_ms} ms, session timeout {timeout} ms)",
            n.lease_from
        ))
    }
}
