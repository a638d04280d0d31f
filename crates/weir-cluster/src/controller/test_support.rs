//! A controller with its committed image, for the unit tests: every request's records
//! are applied at once (the driver's contract with an instant quorum).

use std::collections::BTreeMap;

use super::active::{Controller, ControllerConfig};
use super::image::MetadataImage;
use super::records::{BrokerEpoch, Endpoints, MetadataRecord, PartitionRegistration};
use super::requests::{ControllerError, ControllerReply, ControllerRequest, Outcome};
use crate::partition::BrokerId;

pub(super) const CLUSTER: &str = "cluster-1";

/// An image of cluster [`CLUSTER`] with nothing else in it.
pub(super) fn empty_image() -> MetadataImage {
    let mut image = MetadataImage::new();
    image
        .apply(&MetadataRecord::ClusterCreated {
            cluster_id: CLUSTER.into(),
        })
        .unwrap();
    image
}

/// Applies every record of a handler's `outcome` to `image`.
pub(super) fn apply_outcome(image: &mut MetadataImage, outcome: &Outcome) {
    for record in &outcome.records {
        image.apply(record).unwrap();
    }
}

#[derive(Debug)]
pub(super) struct Harness {
    pub(super) controller: Controller,
    pub(super) image: MetadataImage,
    pub(super) now: u64,
}

pub(super) fn endpoints(node: BrokerId) -> Endpoints {
    Endpoints::new(format!("broker{node}:9092"), format!("broker{node}:9093"))
}

pub(super) fn heartbeat(
    node: BrokerId,
    broker_epoch: BrokerEpoch,
    metadata_offset: i64,
) -> ControllerRequest {
    ControllerRequest::BrokerHeartbeat {
        node,
        broker_epoch,
        metadata_offset,
        want_shutdown: false,
        metadata_level: crate::controller::records::METADATA_LEVEL,
    }
}

impl Harness {
    /// A created cluster, no brokers; topic ids `topic-1`, `topic-2`, ...
    pub(super) fn new() -> Harness {
        let mut ids = 0;
        let controller = Controller::new(ControllerConfig::default(), move || {
            ids += 1;
            format!("topic-{ids}")
        });
        let mut h = Harness {
            controller,
            image: MetadataImage::new(),
            now: 0,
        };
        let reply = h.ok(ControllerRequest::CreateCluster {
            cluster_id: CLUSTER.into(),
        });
        assert_eq!(reply, ControllerReply::ClusterCreated);
        h.controller.activate(&h.image, 0, &BTreeMap::new());
        h
    }

    /// Brokers 1..=3 live, topic `orders` (one partition on [1, 2, 3], led by 1); its id.
    pub(super) fn orders_on_three() -> (Harness, String) {
        let mut h = Harness::new();
        for node in 1..=3 {
            h.live(node, None);
        }
        let id = h.create_topic("orders", 1, 3);
        assert_eq!(h.partition(&id, 0).leader, 1);
        (h, id)
    }

    /// A controller failover: a new active controller (same settings) whose voter last
    /// heard from the nodes in `last_heard` at those times.
    pub(super) fn fail_over(&mut self, last_heard: &BTreeMap<BrokerId, u64>) {
        let mut successor = Controller::new(self.controller.config().clone(), || "t".into());
        successor.activate(&self.image, self.now, last_heard);
        self.controller = successor;
    }

    /// Handles `request` and applies its records; returns both.
    pub(super) fn handle(
        &mut self,
        request: ControllerRequest,
    ) -> (Vec<MetadataRecord>, ControllerReply) {
        let (records, reply) = self.controller.handle(&self.image, self.now, request);
        if matches!(reply, ControllerReply::Refused(_)) {
            assert!(records.is_empty(), "a refusal wrote {records:?}");
        }
        self.commit(&records);
        (records, reply)
    }

    /// The reply to an accepted request.
    pub(super) fn ok(&mut self, request: ControllerRequest) -> ControllerReply {
        let (_, reply) = self.handle(request.clone());
        assert!(
            !matches!(reply, ControllerReply::Refused(_)),
            "{request:?}: {reply:?}"
        );
        reply
    }

    /// Why `request` is refused.
    pub(super) fn refused(&mut self, request: ControllerRequest) -> ControllerError {
        match self.handle(request.clone()).1 {
            ControllerReply::Refused(e) => e,
            reply => panic!("{request:?} was accepted: {reply:?}"),
        }
    }

    pub(super) fn commit(&mut self, records: &[MetadataRecord]) {
        for record in records {
            self.image
                .apply(record)
                .unwrap_or_else(|e| panic!("{record:?} does not apply: {e}"));
        }
    }

    /// Advances the clock and ticks; returns the records written.
    pub(super) fn tick(&mut self, advance_ms: u64) -> Vec<MetadataRecord> {
        self.now += advance_ms;
        let records = self.controller.tick(&self.image, self.now);
        self.commit(&records);
        records
    }

    pub(super) fn register(
        &mut self,
        node: BrokerId,
        incarnation: &str,
        rack: Option<&str>,
    ) -> BrokerEpoch {
        match self.ok(ControllerRequest::RegisterBroker {
            node,
            incarnation: incarnation.into(),
            endpoints: endpoints(node),
            rack: rack.map(str::to_string),
            cluster_id: CLUSTER.into(),
            metadata_level: crate::controller::records::METADATA_LEVEL,
        }) {
            ControllerReply::Registered { broker_epoch } => broker_epoch,
            reply => panic!("{reply:?}"),
        }
    }

    /// A heartbeat from a broker that applied everything.
    pub(super) fn heartbeat(&mut self, node: BrokerId) -> ControllerReply {
        let epoch = self.epoch(node);
        let offset = self.image.next_offset() - 1;
        self.ok(heartbeat(node, epoch, offset))
    }

    /// Registers `node` and unfences it.
    pub(super) fn live(&mut self, node: BrokerId, rack: Option<&str>) -> BrokerEpoch {
        let epoch = self.register(
            node,
            &format!("inc-{node}-{}", self.image.next_offset()),
            rack,
        );
        let reply = self.heartbeat(node);
        assert!(
            matches!(
                reply,
                ControllerReply::Heartbeat {
                    fenced: false,
                    should_shutdown: false,
                    ..
                }
            ),
            "{reply:?}"
        );
        epoch
    }

    pub(super) fn epoch(&self, node: BrokerId) -> BrokerEpoch {
        self.image.broker(node).expect("registered").broker_epoch
    }

    pub(super) fn create_topic(
        &mut self,
        name: &str,
        partitions: u32,
        replication_factor: u32,
    ) -> String {
        match self.ok(ControllerRequest::CreateTopic {
            name: name.into(),
            partitions,
            replication_factor,
            configs: Default::default(),
        }) {
            ControllerReply::TopicCreated { topic_id } => topic_id,
            reply => panic!("{reply:?}"),
        }
    }

    pub(super) fn partition(&self, topic_id: &str, partition: u32) -> PartitionRegistration {
        self.image
            .partition(topic_id, partition)
            .expect("partition")
            .clone()
    }
}
