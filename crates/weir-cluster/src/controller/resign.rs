//! ResignLeadership (`docs/replication.md` § A replica's log fails): a leader whose log
//! failed and lost its unsynced tail when it was reopened must not append at the epoch it
//! led at again (followers may hold batches of that epoch it no longer has). It asks for
//! a new leader epoch: the first other eligible ISR member leads, or, with none, the
//! sender again; either way at `leader_epoch + 1`.

use super::alter_partition::sender_and_partition;
use super::image::MetadataImage;
use super::records::{BrokerEpoch, MetadataRecord, PartitionRegistration};
use super::requests::{ControllerError, ControllerReply, Outcome};
use crate::partition::BrokerId;

/// Checks the sender's broker epoch (STALE_BROKER_EPOCH) and the topic and partition
/// (UNKNOWN_TOPIC). A leadership that already ended (the partition is past
/// `leader_epoch`) is answered with the partition as it stands, nothing written; a
/// sender that does not lead at `leader_epoch` is NOT_LEADER, and an epoch the
/// controller never gave is FENCED_LEADER_EPOCH. Otherwise one `PartitionChanged`: a new
/// leader (the first ISR member in replica order, other than the sender, that may lead;
/// else the sender), the ISR unchanged, both epochs bumped.
pub(super) fn resign_leadership(
    image: &MetadataImage,
    (node, broker_epoch): (BrokerId, BrokerEpoch),
    topic_id: &str,
    partition: u32,
    leader_epoch: i32,
) -> Result<Outcome, ControllerError> {
    let current = sender_and_partition(image, (node, broker_epoch), topic_id, partition)?;
    if leader_epoch < current.leader_epoch {
        return Ok(Outcome {
            records: Vec::new(),
            reply: ControllerReply::PartitionAltered(current.clone()),
        });
    }
    if leader_epoch > current.leader_epoch {
        return Err(ControllerError::FencedLeaderEpoch {
            topic_id: topic_id.to_string(),
            partition,
            given: leader_epoch,
            current: current.leader_epoch,
        });
    }
    if current.leader != node {
        return Err(ControllerError::NotLeader {
            topic_id: topic_id.to_string(),
            partition,
            node,
            leader: current.leader,
        });
    }
    // The sender stays in the ISR: under a durable policy its log still holds every
    // committed record (the high watermark never passed its flushed offset), and under
    // the others it lost nothing but a torn batch nobody was answered for.
    let successor = current
        .replicas
        .iter()
        .copied()
        .find(|b| *b != node && current.in_isr(*b) && image.is_eligible(*b))
        .unwrap_or(node);
    let registration = PartitionRegistration {
        leader: successor,
        leader_epoch: current.leader_epoch + 1,
        partition_epoch: current.partition_epoch + 1,
        ..current.clone()
    };
    Ok(Outcome {
        records: vec![MetadataRecord::PartitionChanged {
            topic_id: topic_id.to_string(),
            partition,
            registration: registration.clone(),
        }],
        reply: ControllerReply::PartitionAltered(registration),
    })
}

#[cfg(test)]
mod tests {
    use super::super::requests::ControllerRequest;
    use super::super::test_support::Harness;
    use super::*;

    fn resign(h: &Harness, topic_id: &str, node: BrokerId, leader_epoch: i32) -> ControllerRequest {
        ControllerRequest::ResignLeadership {
            node,
            broker_epoch: h.epoch(node),
            topic_id: topic_id.into(),
            partition: 0,
            leader_epoch,
        }
    }

    #[test]
    fn the_next_isr_member_leads_at_the_next_epoch_and_the_sender_stays_in_the_isr() {
        let (mut h, id) = Harness::orders_on_three();
        let before = h.partition(&id, 0);
        let reply = h.ok(resign(&h, &id, 1, before.leader_epoch));
        let after = h.partition(&id, 0);
        assert_eq!(reply, ControllerReply::PartitionAltered(after.clone()));
        assert_eq!(after.leader, 2);
        assert_eq!(after.leader_epoch, before.leader_epoch + 1);
        assert_eq!(after.partition_epoch, before.partition_epoch + 1);
        assert_eq!(after.isr, before.isr);
    }

    #[test]
    fn a_sole_isr_member_leads_again_at_the_next_epoch() {
        let (mut h, id) = Harness::orders_on_three();
        shrink(&mut h, &id, &[1]);
        let before = h.partition(&id, 0);
        h.ok(resign(&h, &id, 1, before.leader_epoch));
        let after = h.partition(&id, 0);
        assert_eq!(after.leader, 1, "no other in-sync replica may lead");
        assert_eq!(after.leader_epoch, before.leader_epoch + 1);
        assert_eq!(after.isr, vec![1]);
    }

    #[test]
    fn a_replica_out_of_the_isr_is_passed_over() {
        let (mut h, id) = Harness::orders_on_three();
        shrink(&mut h, &id, &[1, 3]);
        let before = h.partition(&id, 0);
        h.ok(resign(&h, &id, 1, before.leader_epoch));
        assert_eq!(h.partition(&id, 0).leader, 3);
    }

    /// The leader (1) proposes `isr`.
    fn shrink(h: &mut Harness, topic_id: &str, isr: &[BrokerId]) {
        let r = h.partition(topic_id, 0);
        h.ok(ControllerRequest::AlterPartition {
            node: 1,
            broker_epoch: h.epoch(1),
            topic_id: topic_id.into(),
            partition: 0,
            leader_epoch: r.leader_epoch,
            partition_epoch: r.partition_epoch,
            new_isr: isr.iter().map(|b| (*b, h.epoch(*b))).collect(),
        });
    }

    #[test]
    fn a_leadership_that_already_ended_writes_nothing_and_others_are_refused() {
        let (mut h, id) = Harness::orders_on_three();
        let epoch = h.partition(&id, 0).leader_epoch;
        h.ok(resign(&h, &id, 1, epoch));
        // A retry of the same resignation (its answer was lost): answered, nothing written.
        let current = h.partition(&id, 0);
        let (records, reply) = h.handle(resign(&h, &id, 1, epoch));
        assert!(records.is_empty(), "{records:?}");
        assert_eq!(reply, ControllerReply::PartitionAltered(current.clone()));
        // Only the leader resigns, and only at an epoch it was given.
        assert!(matches!(
            h.refused(resign(&h, &id, 3, current.leader_epoch)),
            ControllerError::NotLeader { leader: 2, .. }
        ));
        assert!(matches!(
            h.refused(resign(&h, &id, 2, current.leader_epoch + 1)),
            ControllerError::FencedLeaderEpoch { .. }
        ));
        let mut stale = resign(&h, &id, 2, current.leader_epoch);
        if let ControllerRequest::ResignLeadership { broker_epoch, .. } = &mut stale {
            *broker_epoch += 1000;
        }
        assert!(matches!(
            h.refused(stale),
            ControllerError::StaleBrokerEpoch { node: 2, .. }
        ));
    }
}
