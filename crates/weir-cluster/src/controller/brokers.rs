//! The broker lifecycle on the controller (`docs/replication.md` § Broker lifecycle):
//! creating the cluster, registration, heartbeats (unfencing, controlled shutdown) and
//! session expiry.

use std::collections::BTreeSet;

use super::active::Controller;
use super::election::{BrokerView, reconcile_brokers};
use super::image::MetadataImage;
use super::records::{
    BrokerEpoch, Endpoints, MAX_LISTENER_NAME_CHARS, MAX_LISTENERS, MetadataOffset, MetadataRecord,
    listener_names,
};
use super::requests::{
    ControllerError, ControllerReply, MAX_CLUSTER_ID_CHARS, MAX_ENDPOINT_CHARS,
    MAX_INCARNATION_CHARS, MAX_RACK_CHARS, Outcome,
};
use crate::partition::BrokerId;

/// `ClusterCreated`, unless the cluster exists already with this id.
pub(super) fn create_cluster(
    image: &MetadataImage,
    cluster_id: &str,
) -> Result<Outcome, ControllerError> {
    let records = match image.cluster_id() {
        Some(existing) if existing == cluster_id => Vec::new(),
        Some(existing) => {
            return Err(ControllerError::InconsistentClusterId {
                given: cluster_id.to_string(),
                expected: existing.to_string(),
            });
        }
        None if cluster_id.is_empty() || cluster_id.chars().count() > MAX_CLUSTER_ID_CHARS => {
            return Err(ControllerError::InvalidClusterId(cluster_id.to_string()));
        }
        None => vec![MetadataRecord::ClusterCreated {
            cluster_id: cluster_id.to_string(),
        }],
    };
    Ok(Outcome {
        records,
        reply: ControllerReply::ClusterCreated,
    })
}

impl Controller {
    /// `BrokerRegistered` (fenced, epoch = its offset), preceded by `BrokerFenced` if the
    /// node's previous incarnation is unfenced, and followed by the `PartitionChanged`s
    /// that take away what the image still trusts the node with: the leaderships and ISR
    /// memberships of its previous incarnation (or of a migrated single-node directory),
    /// ISRs of last resort excepted. A retry of a registration that committed (same
    /// incarnation, endpoints and rack) gets the same epoch and writes nothing.
    /// The caller has checked the broker's cluster id.
    pub(super) fn register(
        &mut self,
        image: &MetadataImage,
        now_ms: u64,
        node: BrokerId,
        incarnation: String,
        endpoints: Endpoints,
        rack: Option<String>,
    ) -> Result<Outcome, ControllerError> {
        check_registration(node, &incarnation, &endpoints, rack.as_deref())?;
        let existing = image.broker(node);
        if let Some(b) = existing
            .filter(|b| b.incarnation == incarnation && b.endpoints == endpoints && b.rack == rack)
        {
            self.sessions.insert(node, now_ms);
            return Ok(Outcome {
                records: Vec::new(),
                reply: ControllerReply::Registered {
                    broker_epoch: b.broker_epoch,
                },
            });
        }
        let mut records = Vec::new();
        if let Some(old) = existing.filter(|b| !b.fenced) {
            records.push(MetadataRecord::BrokerFenced {
                node,
                broker_epoch: old.broker_epoch,
            });
        }
        let broker_epoch = image.next_offset() + records.len() as i64;
        records.push(MetadataRecord::BrokerRegistered {
            node,
            incarnation,
            broker_epoch,
            endpoints,
            rack,
        });
        let mut view = BrokerView::new(image);
        view.set(node, false);
        records.extend(reconcile_brokers(image, &view, &BTreeSet::from([node])));
        self.sessions.insert(node, now_ms);
        Ok(Outcome {
            records,
            reply: ControllerReply::Registered { broker_epoch },
        })
    }

    /// Refreshes the session and answers whether the broker is fenced and may stop:
    /// - a fenced broker whose metadata reached its registration is unfenced, and
    ///   elected where it is the ISR of last resort (or, unclean, any eligible replica);
    /// - `want_shutdown` from an unfenced broker writes `BrokerShuttingDown` and moves
    ///   its leaderships and ISR memberships away in the same batch, so the reply,
    ///   sent once they are committed, says `should_shutdown`; a fenced broker leads
    ///   nothing and may stop at once, with nothing written.
    pub(super) fn heartbeat(
        &mut self,
        image: &MetadataImage,
        now_ms: u64,
        (node, broker_epoch): (BrokerId, BrokerEpoch),
        metadata_offset: MetadataOffset,
        want_shutdown: bool,
    ) -> Result<Outcome, ControllerError> {
        let broker = image
            .broker(node)
            .filter(|b| b.broker_epoch == broker_epoch)
            .ok_or_else(|| ControllerError::StaleBrokerEpoch {
                node,
                given: broker_epoch,
                current: image.broker(node).map(|b| b.broker_epoch),
            })?;
        self.sessions.insert(node, now_ms);
        let answer = |records: Vec<MetadataRecord>, fenced, should_shutdown| Outcome {
            reply: ControllerReply::Heartbeat {
                fenced,
                should_shutdown,
                through: image.next_offset() + records.len() as MetadataOffset,
            },
            records,
        };
        if broker.shutting_down || (broker.fenced && want_shutdown) {
            // A shutting-down broker was moved off everything by the batch that marked
            // it; a fenced one leads nothing.
            return Ok(answer(Vec::new(), broker.fenced, true));
        }
        let mut view = BrokerView::new(image);
        let (first, fenced, should_shutdown) = if want_shutdown {
            view.set(node, false);
            let record = MetadataRecord::BrokerShuttingDown { node, broker_epoch };
            (record, false, true)
        } else if broker.fenced && metadata_offset >= broker_epoch {
            view.set(node, true);
            let record = MetadataRecord::BrokerUnfenced { node, broker_epoch };
            (record, false, false)
        } else {
            return Ok(answer(Vec::new(), broker.fenced, false));
        };
        let mut records = vec![first];
        records.extend(reconcile_brokers(image, &view, &BTreeSet::from([node])));
        Ok(answer(records, fenced, should_shutdown))
    }

    /// `BrokerFenced` for every unfenced broker whose last heartbeat is more than the
    /// session timeout before `now_ms`, then one `PartitionChanged` per partition they
    /// were in. A broker with no session yet (none since this controller became active)
    /// gets one starting now.
    pub(super) fn expire_sessions(
        &mut self,
        image: &MetadataImage,
        now_ms: u64,
    ) -> Vec<MetadataRecord> {
        let timeout = self.config.session_timeout_ms;
        let mut expired = BTreeSet::new();
        let mut records = Vec::new();
        for broker in image.brokers().filter(|b| !b.fenced) {
            let last = *self.sessions.entry(broker.node).or_insert(now_ms);
            if now_ms.saturating_sub(last) > timeout {
                expired.insert(broker.node);
                records.push(MetadataRecord::BrokerFenced {
                    node: broker.node,
                    broker_epoch: broker.broker_epoch,
                });
            }
        }
        if expired.is_empty() {
            return records;
        }
        let mut view = BrokerView::new(image);
        for node in &expired {
            view.set(*node, false);
        }
        records.extend(reconcile_brokers(image, &view, &expired));
        records
    }
}

fn check_registration(
    node: BrokerId,
    incarnation: &str,
    endpoints: &Endpoints,
    rack: Option<&str>,
) -> Result<(), ControllerError> {
    let invalid = |reason: String| ControllerError::InvalidRegistration { node, reason };
    if node < 0 {
        return Err(invalid("node ids are non-negative".into()));
    }
    if incarnation.is_empty() || incarnation.chars().count() > MAX_INCARNATION_CHARS {
        return Err(invalid(format!(
            "the incarnation id must have 1 to {MAX_INCARNATION_CHARS} characters"
        )));
    }
    if endpoints.len() > MAX_LISTENERS {
        return Err(invalid(format!(
            "{} listeners; a broker advertises at most {MAX_LISTENERS}",
            endpoints.len()
        )));
    }
    for (name, _) in endpoints.iter() {
        if name.is_empty() || name.chars().count() > MAX_LISTENER_NAME_CHARS {
            return Err(invalid(format!(
                "a listener name must have 1 to {MAX_LISTENER_NAME_CHARS} characters"
            )));
        }
    }
    // Client and internal first and always: a broker is reached at them (an absent one
    // reads as empty, which is refused below).
    let required = [listener_names::CLIENT, listener_names::INTERNAL];
    let named = [
        (listener_names::CLIENT, endpoints.client()),
        (listener_names::INTERNAL, endpoints.internal()),
    ]
    .into_iter()
    .chain(
        endpoints
            .iter()
            .filter(|(name, _)| !required.contains(name)),
    );
    for (name, endpoint) in named {
        let port = endpoint
            .rsplit_once(':')
            .map(|(host, port)| (host, port.parse::<u16>()));
        let valid = matches!(port, Some((host, Ok(_))) if !host.is_empty());
        if !valid || endpoint.chars().count() > MAX_ENDPOINT_CHARS {
            return Err(invalid(format!(
                "the {name} endpoint {endpoint:?} is not host:port of at most {MAX_ENDPOINT_CHARS} characters"
            )));
        }
    }
    if let Some(rack) = rack
        && (rack.is_empty() || rack.chars().count() > MAX_RACK_CHARS)
    {
        return Err(invalid(format!(
            "a rack name must have 1 to {MAX_RACK_CHARS} characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::image::MetadataImage;
    use super::super::records::{NO_LEADER, PartitionRegistration};
    use super::super::requests::ControllerRequest;
    use super::super::test_support::{CLUSTER, Harness, endpoints, heartbeat};
    use super::*;
    use crate::controller::{Controller, ControllerConfig};

    /// A heartbeat's answer as (fenced, should_shutdown).
    type Answer = (bool, bool);
    const FENCED: Answer = (true, false);
    const UNFENCED: Answer = (false, false);
    const STOP: Answer = (false, true);

    fn answer(reply: ControllerReply) -> Answer {
        match reply {
            ControllerReply::Heartbeat {
                fenced,
                should_shutdown,
                ..
            } => (fenced, should_shutdown),
            other => panic!("not a heartbeat's answer: {other:?}"),
        }
    }

    fn register(node: BrokerId, incarnation: &str, cluster_id: &str) -> ControllerRequest {
        ControllerRequest::RegisterBroker {
            node,
            incarnation: incarnation.into(),
            endpoints: endpoints(node),
            rack: None,
            cluster_id: cluster_id.into(),
            metadata_level: crate::controller::records::METADATA_LEVEL,
        }
    }

    fn shutdown(node: BrokerId, broker_epoch: BrokerEpoch) -> ControllerRequest {
        ControllerRequest::BrokerHeartbeat {
            node,
            broker_epoch,
            metadata_offset: 0,
            want_shutdown: true,
            metadata_level: crate::controller::records::METADATA_LEVEL,
        }
    }

    #[test]
    fn the_first_controller_creates_the_cluster_once() {
        let mut controller = Controller::new(ControllerConfig::default(), || "t".to_string());
        let mut image = MetadataImage::new();
        let (records, reply) = controller.handle(&image, 0, register(1, "a", CLUSTER));
        assert_eq!(
            (records, reply),
            (
                vec![],
                ControllerReply::Refused(ControllerError::ClusterNotCreated)
            )
        );
        let create = |id: &str| ControllerRequest::CreateCluster {
            cluster_id: id.into(),
        };
        let (records, reply) = controller.handle(&image, 0, create(""));
        assert!(records.is_empty());
        assert_eq!(
            reply,
            ControllerReply::Refused(ControllerError::InvalidClusterId("".into()))
        );
        let (records, reply) = controller.handle(&image, 0, create(CLUSTER));
        assert_eq!(reply, ControllerReply::ClusterCreated);
        assert_eq!(
            records,
            vec![MetadataRecord::ClusterCreated {
                cluster_id: CLUSTER.into()
            }]
        );
        image.apply(&records[0]).unwrap();
        assert_eq!(
            controller.handle(&image, 0, create(CLUSTER)),
            (vec![], ControllerReply::ClusterCreated)
        );
        let (_, reply) = controller.handle(&image, 0, create("other"));
        assert_eq!(
            reply,
            ControllerReply::Refused(ControllerError::InconsistentClusterId {
                given: "other".into(),
                expected: CLUSTER.into()
            })
        );
    }

    #[test]
    fn registration_gives_the_record_offset_as_epoch_and_starts_fenced() {
        let mut h = Harness::new();
        let offset = h.image.next_offset();
        let (records, reply) = h.handle(register(1, "a", CLUSTER));
        assert_eq!(
            reply,
            ControllerReply::Registered {
                broker_epoch: offset
            }
        );
        assert_eq!(
            records,
            vec![MetadataRecord::BrokerRegistered {
                node: 1,
                incarnation: "a".into(),
                broker_epoch: offset,
                endpoints: endpoints(1),
                rack: None,
            }]
        );
        let broker = h.image.broker(1).unwrap();
        assert!(broker.fenced && !broker.shutting_down);
        // A retry of the same registration (its reply was lost) gets the same epoch.
        let (records, reply) = h.handle(register(1, "a", CLUSTER));
        assert_eq!(
            (records, reply),
            (
                vec![],
                ControllerReply::Registered {
                    broker_epoch: offset
                }
            )
        );
    }

    #[test]
    fn registration_refuses_another_cluster_and_bad_fields() {
        let mut h = Harness::new();
        let err = h.refused(register(1, "a", "cluster-2"));
        assert_eq!(
            err,
            ControllerError::InconsistentClusterId {
                given: "cluster-2".into(),
                expected: CLUSTER.into()
            }
        );
        assert!(err.to_string().contains("cluster-2") && err.to_string().contains(CLUSTER));
        let long = "x".repeat(MAX_RACK_CHARS + 1);
        for (request, needle) in [
            (register(-1, "a", CLUSTER), "non-negative"),
            (register(1, "", CLUSTER), "incarnation"),
            (
                register(1, &"i".repeat(MAX_INCARNATION_CHARS + 1), CLUSTER),
                "incarnation",
            ),
            (
                ControllerRequest::RegisterBroker {
                    node: 1,
                    incarnation: "a".into(),
                    endpoints: Endpoints::new("broker1", "broker1:9093"),
                    rack: None,
                    cluster_id: CLUSTER.into(),
                    metadata_level: crate::controller::records::METADATA_LEVEL,
                },
                "client endpoint",
            ),
            (
                ControllerRequest::RegisterBroker {
                    node: 1,
                    incarnation: "a".into(),
                    endpoints: endpoints(1),
                    rack: Some(long),
                    cluster_id: CLUSTER.into(),
                    metadata_level: crate::controller::records::METADATA_LEVEL,
                },
                "rack",
            ),
        ] {
            let err = h.refused(request);
            assert!(
                matches!(err, ControllerError::InvalidRegistration { .. })
                    && err.to_string().contains(needle),
                "{needle}: {err}"
            );
        }
        assert!(h.image.broker(1).is_none());
    }

    #[test]
    fn heartbeats_with_a_stale_or_unknown_epoch_are_refused() {
        let mut h = Harness::new();
        let epoch = h.register(1, "a", None);
        assert_eq!(
            h.refused(heartbeat(1, epoch - 1, 100)),
            ControllerError::StaleBrokerEpoch {
                node: 1,
                given: epoch - 1,
                current: Some(epoch)
            }
        );
        let err = h.refused(heartbeat(2, 5, 100));
        assert_eq!(
            err,
            ControllerError::StaleBrokerEpoch {
                node: 2,
                given: 5,
                current: None
            }
        );
        assert!(err.to_string().contains("not registered"), "{err}");
    }

    #[test]
    fn a_broker_is_unfenced_once_its_metadata_reaches_its_registration() {
        let mut h = Harness::new();
        let epoch = h.register(1, "a", None);
        let (records, reply) = h.handle(heartbeat(1, epoch, epoch - 1));
        assert_eq!((records, answer(reply)), (vec![], FENCED));
        let (records, reply) = h.handle(heartbeat(1, epoch, epoch));
        assert_eq!(answer(reply), UNFENCED);
        assert_eq!(
            records,
            vec![MetadataRecord::BrokerUnfenced {
                node: 1,
                broker_epoch: epoch
            }]
        );
        assert!(h.image.is_eligible(1));
        let (records, reply) = h.handle(heartbeat(1, epoch, epoch));
        assert_eq!((records, answer(reply)), (vec![], UNFENCED));
    }

    #[test]
    fn a_silent_broker_is_fenced_after_the_session_timeout_and_its_partitions_move() {
        let mut h = Harness::new();
        for node in 1..=3 {
            h.live(node, None);
        }
        let topic = h.create_topic("orders", 3, 2);
        let led_by_1: Vec<u32> = (0..3)
            .filter(|p| h.partition(&topic, *p).leader == 1)
            .collect();
        assert_eq!(led_by_1.len(), 1);
        let before = h.partition(&topic, led_by_1[0]);

        // Brokers 2 and 3 keep heartbeating; 1 falls silent.
        let timeout = h.controller.config().session_timeout_ms;
        for _ in 0..4 {
            h.now += timeout / 4;
            h.heartbeat(2);
            h.heartbeat(3);
            // Exactly the timeout since its last heartbeat is not "more than" it.
            assert_eq!(h.tick(0), vec![]);
        }
        h.now += 1;
        h.heartbeat(2);
        h.heartbeat(3);
        let fenced_at = h.image.next_offset();
        let records = h.tick(0);
        assert_eq!(
            records[0],
            MetadataRecord::BrokerFenced {
                node: 1,
                broker_epoch: h.epoch(1)
            }
        );
        assert!(h.image.broker(1).unwrap().fenced);
        let after = h.partition(&topic, led_by_1[0]);
        assert_eq!(after.leader, before.replicas[1]);
        assert_eq!(after.isr, vec![before.replicas[1]]);
        assert_eq!(after.leader_epoch, before.leader_epoch + 1);
        assert_eq!(after.partition_epoch, before.partition_epoch + 1);
        for p in 0..3 {
            let r = h.partition(&topic, p);
            assert!(!r.isr.contains(&1) && r.leader != 1, "{r:?}");
        }
        // One record per partition broker 1 was in, and nothing more at the next tick.
        assert_eq!(records.len(), 1 + 2);
        assert_eq!(h.tick(1), vec![]);

        // Back with the metadata it had when it fell silent: its metadata reaches its
        // registration, so it is unfenced at once, and the answer names an offset past
        // the moves made meanwhile, which it applies before its leaders lead again.
        let (records, reply) = h.handle(heartbeat(1, h.epoch(1), fenced_at - 1));
        assert_eq!(answer(reply.clone()), UNFENCED);
        assert!(!records.is_empty());
        let ControllerReply::Heartbeat { through, .. } = reply else {
            unreachable!()
        };
        assert_eq!(through, h.image.next_offset());
        assert!(
            through > fenced_at + 2,
            "{through} is past the fencing and both moves"
        );
        let (_, reply) = h.handle(heartbeat(1, h.epoch(1), through - 1));
        assert!(
            matches!(reply, ControllerReply::Heartbeat { through: t, .. } if t == through),
            "{reply:?}"
        );
    }

    #[test]
    fn the_broker_running_the_controller_is_not_fenced_while_its_heartbeats_are_late() {
        let mut h = Harness::new();
        for node in 1..=3 {
            h.live(node, None);
        }
        // This controller runs on node 1, whose own heartbeat is held up (in a call to
        // the previous controller); node 3 has really gone silent.
        let timeout = h.controller.config().session_timeout_ms;
        let mut fenced = Vec::new();
        for _ in 0..6 {
            h.now += timeout / 2;
            h.heartbeat(2);
            h.controller.renew_own_session(1, h.now);
            for record in h.tick(0) {
                if let MetadataRecord::BrokerFenced { node, .. } = record {
                    fenced.push(node);
                }
            }
        }
        assert_eq!(fenced, vec![3]);
        assert!(!h.image.broker(1).unwrap().fenced);
    }

    #[test]
    fn a_fenced_last_isr_member_keeps_its_place_and_is_elected_when_unfenced() {
        let mut h = Harness::new();
        h.live(1, None);
        h.live(2, None);
        let topic = h.create_topic("orders", 1, 2);
        let preferred = h.partition(&topic, 0).leader;
        let other = 3 - preferred;
        // Both fall silent at once: the leader is kept as the ISR of last resort.
        h.tick(h.controller.config().session_timeout_ms + 1);
        let r = h.partition(&topic, 0);
        assert_eq!((r.leader, r.isr.clone()), (NO_LEADER, vec![preferred]));
        assert_eq!((r.leader_epoch, r.partition_epoch), (1, 1));
        // The other replica coming back does not lead: it may miss committed records.
        assert_eq!(answer(h.heartbeat(other)), UNFENCED);
        assert_eq!(h.partition(&topic, 0), r);
        // The last ISR member does.
        let (records, reply) = h.handle(heartbeat(
            preferred,
            h.epoch(preferred),
            h.image.next_offset() - 1,
        ));
        assert_eq!(answer(reply), UNFENCED);
        assert_eq!(records.len(), 2);
        let r = h.partition(&topic, 0);
        assert_eq!((r.leader, r.isr.clone()), (preferred, vec![preferred]));
        assert_eq!((r.leader_epoch, r.partition_epoch), (2, 2));
    }

    #[test]
    fn a_new_controller_gives_a_broker_it_has_not_heard_from_a_fresh_session() {
        let mut h = Harness::new();
        h.live(1, None);
        h.now += 10 * h.controller.config().session_timeout_ms;
        h.fail_over(&BTreeMap::new());
        assert_eq!(h.tick(h.controller.config().session_timeout_ms), vec![]);
        assert_eq!(h.tick(1).len(), 1, "fenced once silent for a whole session");
    }

    #[test]
    fn a_new_controller_counts_a_session_from_the_last_raft_request_it_heard() {
        let mut h = Harness::new();
        for node in 1..=3 {
            h.live(node, None);
        }
        let topic = h.create_topic("orders", 3, 3);
        let led_by_1: Vec<u32> = (0..3)
            .filter(|&p| h.partition(&topic, p).leader == 1)
            .collect();
        assert!(!led_by_1.is_empty());
        let config = h.controller.config().clone();
        // Node 1 was the active controller; its last Raft heartbeat reached this voter
        // 1,300 ms before the election made this voter active. Node 2 ran an election
        // just now; node 3 was never heard from.
        let died = h.now;
        h.now += 1_300;
        h.fail_over(&BTreeMap::from([(1, died), (2, h.now - 10)]));
        // Brokers 2 and 3 reach the new controller; 1 does not.
        let until_expiry = config.session_timeout_ms - 1_300;
        assert_eq!(h.tick(until_expiry), vec![], "not before a whole session");
        assert_eq!(answer(h.heartbeat(2)), UNFENCED);
        assert_eq!(answer(h.heartbeat(3)), UNFENCED);
        let records = h.tick(1);
        assert!(
            matches!(records[0], MetadataRecord::BrokerFenced { node: 1, .. }),
            "{records:?}"
        );
        assert_eq!(records.len(), 1 + 3, "fenced and out of every ISR");
        for p in led_by_1 {
            assert_ne!(h.partition(&topic, p).leader, 1);
        }

        // A broker last heard from long ago still gets a heartbeat interval to report.
        let mut h = Harness::new();
        h.live(1, None);
        h.now += 10 * config.session_timeout_ms;
        h.fail_over(&BTreeMap::from([(1, 0)]));
        assert_eq!(h.tick(config.heartbeat_interval_ms), vec![]);
        assert_eq!(h.tick(1).len(), 1);
    }

    #[test]
    fn a_new_incarnation_fences_the_old_one_and_takes_its_isr_places_and_leaderships() {
        let mut h = Harness::new();
        h.live(1, None);
        h.live(2, None);
        let topic = h.create_topic("orders", 2, 2);
        let old = h.epoch(1);
        let (records, reply) = h.handle(register(1, "restarted", CLUSTER));
        let new = h.epoch(1);
        assert_eq!(reply, ControllerReply::Registered { broker_epoch: new });
        // Since: its unfencing, broker 2's registration and unfencing, the topic and its
        // two partitions, and the fencing of the old incarnation.
        assert_eq!(new, old + 8);
        assert_eq!(
            records[0],
            MetadataRecord::BrokerFenced {
                node: 1,
                broker_epoch: old
            }
        );
        assert!(
            matches!(records[1], MetadataRecord::BrokerRegistered { broker_epoch, .. } if broker_epoch == new)
        );
        assert_eq!(records.len(), 4, "then one change per partition");
        for p in 0..2 {
            let r = h.partition(&topic, p);
            assert_eq!((r.leader, r.isr.clone()), (2, vec![2]), "{r:?}");
        }
        // Unfenced again, it leads nothing until its leader puts it back in the ISR.
        h.heartbeat(1);
        assert_eq!(h.image.leaderships(1).count(), 0);
        // A changed endpoint is a new registration too, even with the same incarnation.
        let (records, _) = h.handle(ControllerRequest::RegisterBroker {
            node: 1,
            incarnation: "restarted".into(),
            endpoints: Endpoints::new("elsewhere:1", "elsewhere:2"),
            rack: None,
            cluster_id: CLUSTER.into(),
            metadata_level: crate::controller::records::METADATA_LEVEL,
        });
        assert_eq!(records.len(), 2, "{records:?}");
    }

    #[test]
    fn controlled_shutdown_moves_leaderships_and_keeps_only_last_isr_places() {
        let mut h = Harness::new();
        h.live(1, None);
        h.live(2, None);
        let shared = h.create_topic("shared", 4, 2);
        let alone = h.create_topic("alone", 2, 1);
        let epoch = h.epoch(1);
        let alone_on_1: Vec<u32> = (0..2)
            .filter(|p| h.partition(&alone, *p).leader == 1)
            .collect();
        assert_eq!(alone_on_1.len(), 1);

        let (records, reply) = h.handle(shutdown(1, epoch));
        assert_eq!(answer(reply), STOP);
        assert_eq!(
            records[0],
            MetadataRecord::BrokerShuttingDown {
                node: 1,
                broker_epoch: epoch
            }
        );
        assert_eq!(h.image.leaderships(1).count(), 0);
        for p in 0..4 {
            let r = h.partition(&shared, p);
            assert_eq!((r.leader, r.isr.clone()), (2, vec![2]), "{r:?}");
        }
        let r = h.partition(&alone, alone_on_1[0]);
        assert_eq!((r.leader, r.isr.clone()), (NO_LEADER, vec![1]));
        // Later heartbeats keep saying stop and write nothing; no new replicas go to it.
        let (records, reply) = h.handle(heartbeat(1, epoch, 0));
        assert_eq!((records, answer(reply)), (vec![], STOP));
        assert_eq!(
            h.refused(ControllerRequest::CreateTopic {
                name: "new".into(),
                partitions: 1,
                replication_factor: 2,
                configs: Default::default(),
            }),
            ControllerError::InvalidReplicationFactor {
                replication_factor: 2,
                brokers: 1
            }
        );
        // Once it stops heartbeating it is fenced; its next incarnation is elected back
        // where it was the last ISR member.
        h.now += 5_000;
        h.heartbeat(2);
        assert_eq!(
            h.tick(0),
            vec![MetadataRecord::BrokerFenced {
                node: 1,
                broker_epoch: epoch
            }]
        );
        h.register(1, "next", None);
        assert!(!h.image.broker(1).unwrap().shutting_down);
        h.heartbeat(1);
        assert_eq!(h.partition(&alone, alone_on_1[0]).leader, 1);
    }

    #[test]
    fn a_fenced_broker_may_stop_at_once() {
        let mut h = Harness::new();
        let epoch = h.register(1, "a", None);
        let (records, reply) = h.handle(shutdown(1, epoch));
        assert!(records.is_empty());
        assert_eq!(answer(reply), (true, true));
        assert!(!h.image.broker(1).unwrap().shutting_down);
    }

    #[test]
    fn a_migrated_single_node_directory_is_led_again_after_registration() {
        use crate::metadata::{ClusterMetadata, PartitionAssignment, TopicMetadata};
        let legacy = ClusterMetadata {
            cluster_id: CLUSTER.into(),
            topics: [(
                "orders".to_string(),
                TopicMetadata {
                    name: "orders".into(),
                    topic_id: "legacy-id".into(),
                    replication_factor: 1,
                    configs: Default::default(),
                    partitions: vec![
                        PartitionAssignment {
                            replicas: vec![0],
                            leader: 0,
                            leader_epoch: 0,
                        };
                        2
                    ],
                },
            )]
            .into(),
        };
        let mut h = Harness::new();
        h.image = MetadataImage::from_legacy(legacy, 0).unwrap();
        h.controller.activate(&h.image, h.now, &BTreeMap::new());
        let (records, _) = h.handle(register(0, "a", CLUSTER));
        assert_eq!(
            records.len(),
            3,
            "registration, then each partition leaderless"
        );
        let r = h.partition("legacy-id", 1);
        assert_eq!(
            (r.leader, r.isr.clone(), r.leader_epoch),
            (NO_LEADER, vec![0], 1)
        );
        h.heartbeat(0);
        let r = h.partition("legacy-id", 1);
        assert_eq!(
            r,
            PartitionRegistration {
                replicas: vec![0],
                isr: vec![0],
                leader: 0,
                leader_epoch: 2,
                partition_epoch: 2,
                reassignment: None,
            }
        );
    }
}
