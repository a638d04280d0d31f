//! AlterPartition (`docs/replication.md` § AlterPartition, KIP-497): a leader's proposal
//! of a new ISR, accepted only against the partition's current epochs, and only with
//! added members that are live and at the broker epoch the leader names (KIP-903).

use std::collections::BTreeSet;

use super::image::MetadataImage;
use super::records::{BrokerEpoch, MetadataRecord, PartitionRegistration};
use super::requests::{ControllerError, ControllerReply, Ineligible, Outcome};
use crate::partition::BrokerId;

/// Checks, in this order: the sender's broker epoch (STALE_BROKER_EPOCH), the topic and
/// partition, the leader epoch (FENCED_LEADER_EPOCH), that the sender leads
/// (NOT_LEADER), the partition epoch (INVALID_UPDATE_VERSION), the ISR's shape (a set
/// of replicas holding the leader), and each added member (INELIGIBLE_REPLICA).
/// Accepted, the ISR is stored in replica order with `partition_epoch + 1`; an ISR equal
/// to the current one writes nothing.
pub(super) fn alter_partition(
    image: &MetadataImage,
    (node, broker_epoch): (BrokerId, BrokerEpoch),
    topic_id: &str,
    partition: u32,
    (leader_epoch, partition_epoch): (i32, i32),
    new_isr: &[(BrokerId, BrokerEpoch)],
) -> Result<Outcome, ControllerError> {
    let current = sender_and_partition(image, (node, broker_epoch), topic_id, partition)?;
    if leader_epoch != current.leader_epoch {
        return Err(ControllerError::FencedLeaderEpoch {
            topic_id: topic_id.to_string(),
            partition,
            given: leader_epoch,
            current: current.leader_epoch,
        });
    }
    if node != current.leader {
        return Err(ControllerError::NotLeader {
            topic_id: topic_id.to_string(),
            partition,
            node,
            leader: current.leader,
        });
    }
    if partition_epoch != current.partition_epoch {
        return Err(ControllerError::InvalidUpdateVersion {
            topic_id: topic_id.to_string(),
            partition,
            given: partition_epoch,
            current: current.partition_epoch,
        });
    }
    let members: Vec<BrokerId> = new_isr.iter().map(|(b, _)| *b).collect();
    let invalid = |reason| ControllerError::InvalidIsr {
        topic_id: topic_id.to_string(),
        partition,
        isr: members.clone(),
        replicas: current.replicas.clone(),
        reason,
    };
    if members.iter().collect::<BTreeSet<_>>().len() != members.len() {
        return Err(invalid("a member is listed twice"));
    }
    if !members.iter().all(|b| current.replicas.contains(b)) {
        return Err(invalid("a member is not a replica"));
    }
    if !members.contains(&node) {
        return Err(invalid("the leader is not a member"));
    }
    for &(replica, epoch) in new_isr.iter().filter(|(b, _)| !current.in_isr(*b)) {
        let reason = match image.broker(replica) {
            None => Some(Ineligible::NotRegistered),
            Some(b) if b.broker_epoch != epoch => Some(Ineligible::StaleBrokerEpoch {
                given: epoch,
                current: b.broker_epoch,
            }),
            Some(b) if b.fenced => Some(Ineligible::Fenced),
            Some(b) if b.shutting_down => Some(Ineligible::ShuttingDown),
            Some(_) => None,
        };
        if let Some(reason) = reason {
            return Err(ControllerError::IneligibleReplica {
                topic_id: topic_id.to_string(),
                partition,
                replica,
                reason,
            });
        }
    }
    let isr: Vec<BrokerId> = current
        .replicas
        .iter()
        .copied()
        .filter(|b| members.contains(b))
        .collect();
    if isr == current.isr {
        return Ok(Outcome {
            records: Vec::new(),
            reply: ControllerReply::PartitionAltered(current.clone()),
        });
    }
    // The change that puts the last target replica in the ISR completes a reassignment
    // in progress (possibly moving the leadership off the sender).
    let mut registration = super::reassign::complete(
        image,
        PartitionRegistration {
            isr,
            ..current.clone()
        },
    );
    registration.partition_epoch = current.partition_epoch + 1;
    registration.leader_epoch =
        current.leader_epoch + i32::from(registration.leader != current.leader);
    Ok(Outcome {
        records: vec![MetadataRecord::PartitionChanged {
            topic_id: topic_id.to_string(),
            partition,
            registration: registration.clone(),
        }],
        reply: ControllerReply::PartitionAltered(registration),
    })
}

/// The partition a broker's request names, once the sender's broker epoch is its
/// current one (STALE_BROKER_EPOCH) and the topic and partition exist (UNKNOWN_TOPIC).
pub(super) fn sender_and_partition<'a>(
    image: &'a MetadataImage,
    (node, broker_epoch): (BrokerId, BrokerEpoch),
    topic_id: &str,
    partition: u32,
) -> Result<&'a PartitionRegistration, ControllerError> {
    let sender = image.broker(node);
    if sender.is_none_or(|b| b.broker_epoch != broker_epoch) {
        return Err(ControllerError::StaleBrokerEpoch {
            node,
            given: broker_epoch,
            current: sender.map(|b| b.broker_epoch),
        });
    }
    let topic = image
        .topic_by_id(topic_id)
        .ok_or_else(|| ControllerError::UnknownTopicId(topic_id.to_string()))?;
    topic
        .partitions
        .get(partition as usize)
        .ok_or_else(|| ControllerError::UnknownPartition {
            topic_id: topic_id.to_string(),
            partition,
            count: topic.partitions.len() as u32,
        })
}

#[cfg(test)]
mod tests {
    use super::super::requests::ControllerRequest;
    use super::super::test_support::Harness;
    use super::*;

    /// AlterPartition from the current leader at the current epochs.
    fn propose(h: &Harness, topic_id: &str, isr: &[BrokerId]) -> ControllerRequest {
        let r = h.partition(topic_id, 0);
        ControllerRequest::AlterPartition {
            node: r.leader,
            broker_epoch: h.epoch(r.leader),
            topic_id: topic_id.into(),
            partition: 0,
            leader_epoch: r.leader_epoch,
            partition_epoch: r.partition_epoch,
            new_isr: isr.iter().map(|b| (*b, h.epoch(*b))).collect(),
        }
    }

    fn with(
        request: ControllerRequest,
        f: impl FnOnce(&mut ControllerRequest),
    ) -> ControllerRequest {
        let mut request = request;
        f(&mut request);
        request
    }

    #[test]
    fn the_leader_shrinks_and_expands_the_isr() {
        let (mut h, id) = Harness::orders_on_three();
        let before = h.partition(&id, 0);
        let (records, reply) = h.handle(propose(&h, &id, &[1, 3]));
        let after = h.partition(&id, 0);
        assert_eq!(reply, ControllerReply::PartitionAltered(after.clone()));
        assert_eq!(records.len(), 1);
        assert_eq!(after.isr, vec![1, 3]);
        assert_eq!((after.leader, after.leader_epoch), (1, before.leader_epoch));
        assert_eq!(after.partition_epoch, before.partition_epoch + 1);
        // Back in, listed in any order: stored in replica order.
        h.ok(propose(&h, &id, &[3, 2, 1]));
        assert_eq!(h.partition(&id, 0).isr, vec![1, 2, 3]);
        assert_eq!(
            h.partition(&id, 0).partition_epoch,
            before.partition_epoch + 2
        );
        // The current ISR again: accepted, nothing written.
        let (records, reply) = h.handle(propose(&h, &id, &[1, 2, 3]));
        assert_eq!(
            (records, reply),
            (
                vec![],
                ControllerReply::PartitionAltered(h.partition(&id, 0))
            )
        );
    }

    #[test]
    fn stale_epochs_and_other_senders_are_refused() {
        let (mut h, id) = Harness::orders_on_three();
        let good = propose(&h, &id, &[1, 2]);
        let err = h.refused(with(good.clone(), |r| {
            if let ControllerRequest::AlterPartition { broker_epoch, .. } = r {
                *broker_epoch -= 1;
            }
        }));
        assert!(
            matches!(err, ControllerError::StaleBrokerEpoch { node: 1, .. }),
            "{err}"
        );
        let err = h.refused(with(good.clone(), |r| {
            if let ControllerRequest::AlterPartition { topic_id, .. } = r {
                *topic_id = "nope".into();
            }
        }));
        assert_eq!(err, ControllerError::UnknownTopicId("nope".into()));
        let err = h.refused(with(good.clone(), |r| {
            if let ControllerRequest::AlterPartition { partition, .. } = r {
                *partition = 1;
            }
        }));
        assert!(matches!(
            err,
            ControllerError::UnknownPartition {
                partition: 1,
                count: 1,
                ..
            }
        ));
        let err = h.refused(with(good.clone(), |r| {
            if let ControllerRequest::AlterPartition { leader_epoch, .. } = r {
                *leader_epoch -= 1;
            }
        }));
        assert!(matches!(
            err,
            ControllerError::FencedLeaderEpoch {
                given: -1,
                current: 0,
                ..
            }
        ));
        let follower = h.epoch(2);
        let err = h.refused(with(good.clone(), |r| {
            if let ControllerRequest::AlterPartition {
                node, broker_epoch, ..
            } = r
            {
                (*node, *broker_epoch) = (2, follower);
            }
        }));
        assert!(matches!(
            err,
            ControllerError::NotLeader {
                node: 2,
                leader: 1,
                ..
            }
        ));
        // A concurrent change moved the partition epoch: the old proposal is stale.
        h.ok(propose(&h, &id, &[1, 3]));
        let err = h.refused(good);
        assert!(matches!(
            err,
            ControllerError::InvalidUpdateVersion {
                given: 0,
                current: 1,
                ..
            }
        ));
    }

    #[test]
    fn an_isr_that_is_not_a_set_of_replicas_holding_the_leader_is_refused() {
        let (mut h, id) = Harness::orders_on_three();
        h.live(4, None);
        let base = propose(&h, &id, &[]);
        let request = |isr: Vec<(BrokerId, BrokerEpoch)>| {
            with(base.clone(), |r| {
                if let ControllerRequest::AlterPartition { new_isr, .. } = r {
                    *new_isr = isr;
                }
            })
        };
        let (e1, e2, e4) = (h.epoch(1), h.epoch(2), h.epoch(4));
        for (isr, reason) in [
            (vec![(1, e1), (1, e1)], "a member is listed twice"),
            (vec![(1, e1), (4, e4)], "a member is not a replica"),
            (vec![(2, e2)], "the leader is not a member"),
            (vec![], "the leader is not a member"),
        ] {
            let err = h.refused(request(isr));
            assert!(
                matches!(&err, ControllerError::InvalidIsr { reason: r, .. } if *r == reason),
                "{reason}: {err}"
            );
        }
    }

    #[test]
    fn added_members_must_be_live_at_the_epoch_named() {
        let (mut h, id) = Harness::orders_on_three();
        h.ok(propose(&h, &id, &[1]));
        // Broker 2 restarted: its new epoch is fenced, its old one is stale.
        let old = h.epoch(2);
        h.register(2, "restarted", None);
        let new = h.epoch(2);
        let err = h.refused(with(propose(&h, &id, &[1]), |r| {
            if let ControllerRequest::AlterPartition { new_isr, .. } = r {
                new_isr.push((2, old));
            }
        }));
        assert_eq!(
            err,
            ControllerError::IneligibleReplica {
                topic_id: id.clone(),
                partition: 0,
                replica: 2,
                reason: Ineligible::StaleBrokerEpoch {
                    given: old,
                    current: new
                }
            }
        );
        assert!(err.to_string().contains("restarted"), "{err}");
        let err = h.refused(propose(&h, &id, &[1, 2]));
        assert!(matches!(
            err,
            ControllerError::IneligibleReplica {
                replica: 2,
                reason: Ineligible::Fenced,
                ..
            }
        ));
        // Broker 3 is shutting down.
        let epoch3 = h.epoch(3);
        h.ok(ControllerRequest::BrokerHeartbeat {
            node: 3,
            broker_epoch: epoch3,
            metadata_offset: 0,
            want_shutdown: true,
            metadata_level: crate::controller::records::METADATA_LEVEL,
        });
        let err = h.refused(propose(&h, &id, &[1, 3]));
        assert!(matches!(
            err,
            ControllerError::IneligibleReplica {
                replica: 3,
                reason: Ineligible::ShuttingDown,
                ..
            }
        ));
        // Unfenced, the new incarnation joins.
        h.heartbeat(2);
        h.ok(propose(&h, &id, &[1, 2]));
        assert_eq!(h.partition(&id, 0).isr, vec![1, 2]);
    }
}
