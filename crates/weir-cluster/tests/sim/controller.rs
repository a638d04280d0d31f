//! The simulated controller quorum: one linearizable metadata log (openraft is
//! trusted for consensus) run by `weir_cluster::controller::Controller`.

use weir_cluster::controller::records::{Endpoints, MetadataRecord};
use weir_cluster::controller::{ControllerReply, ControllerRequest};
use weir_cluster::replication::AlterIsrAnswer;

use crate::net::{Addr, CONTROLLER, Msg};
use crate::world::*;

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
            Msg::Register { incarnation } => {
                let reply = self.controller_request(ControllerRequest::RegisterBroker {
                    node: from,
                    incarnation: format!("{from}-{incarnation}"),
                    endpoints: Endpoints {
                        client: format!("node{from}:9292"),
                        internal: format!("node{from}:9293"),
                        external: None,
                        kafka: None,
                        kafka_external: None,
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
}
