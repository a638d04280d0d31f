//! Reassignment (`docs/replication.md` § Reassignment, KIP-455): moving a partition's
//! replicas to a target set. The reassignment lives in the partition's registration;
//! added replicas catch up as followers and join the ISR by AlterPartition, and the
//! change that puts the last target replica in the ISR completes it ([`complete`]).

use std::collections::BTreeSet;

use super::image::MetadataImage;
use super::records::{MetadataRecord, NO_LEADER, PartitionRegistration, Reassignment};
use super::requests::{ControllerError, ControllerReply, Ineligible, Outcome};
use crate::partition::BrokerId;

/// One partition's move in a reassignment request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartitionMove {
    pub partition: u32,
    /// The replicas the partition is to have, the preferred leader first; `None` cancels
    /// the reassignment in progress (back to the replicas it started from).
    pub target: Option<Vec<BrokerId>>,
}

/// Most partitions one request moves (each is a record in one commit).
pub const MAX_MOVES_PER_REQUEST: usize = 10_000;

/// Starts (or replaces, or cancels) the reassignment of each partition in `moves`, all or
/// none: the first partition that cannot move refuses the request. A move that changes
/// nothing writes nothing; one whose target is already in sync completes at once.
pub(super) fn reassign_partitions(
    image: &MetadataImage,
    topic: &str,
    moves: &[PartitionMove],
    throttle_bytes_per_sec: Option<u64>,
) -> Result<Outcome, ControllerError> {
    let topic_image = image
        .topic(topic)
        .ok_or_else(|| ControllerError::UnknownTopic(topic.to_string()))?;
    let invalid = |partition: u32, reason: String| ControllerError::InvalidReassignment {
        topic: topic.to_string(),
        partition,
        reason,
    };
    if moves.len() > MAX_MOVES_PER_REQUEST {
        return Err(invalid(
            0,
            format!(
                "{} moves in one request; at most {MAX_MOVES_PER_REQUEST}",
                moves.len()
            ),
        ));
    }
    if throttle_bytes_per_sec == Some(0) {
        return Err(invalid(
            0,
            "a throttle of 0 bytes/s would never finish; leave it out for no throttle".into(),
        ));
    }
    let mut seen = BTreeSet::new();
    let mut records = Vec::new();
    let mut result = Vec::with_capacity(moves.len());
    for m in moves {
        if !seen.insert(m.partition) {
            return Err(invalid(m.partition, "the partition is listed twice".into()));
        }
        let current = topic_image
            .partitions
            .get(m.partition as usize)
            .ok_or_else(|| ControllerError::UnknownPartition {
                topic_id: topic_image.topic_id.clone(),
                partition: m.partition,
                count: topic_image.partitions.len() as u32,
            })?;
        let moved = move_partition(image, current, m.target.as_deref(), throttle_bytes_per_sec)
            .map_err(|e| match e {
                MoveError::Invalid(reason) => invalid(m.partition, reason),
                MoveError::Ineligible(broker, why) => {
                    invalid(m.partition, format!("broker {broker} {why}"))
                }
            })?;
        if moved != *current {
            records.push(MetadataRecord::PartitionChanged {
                topic_id: topic_image.topic_id.clone(),
                partition: m.partition,
                registration: moved.clone(),
            });
        }
        result.push((m.partition, moved));
    }
    Ok(Outcome {
        records,
        reply: ControllerReply::PartitionsReassigned(result),
    })
}

enum MoveError {
    Invalid(String),
    Ineligible(BrokerId, Ineligible),
}

/// The registration `current` gets when asked to move to `target` (`None`: cancel).
/// Epochs are bumped only if something changes; the caller writes nothing otherwise.
fn move_partition(
    image: &MetadataImage,
    current: &PartitionRegistration,
    target: Option<&[BrokerId]>,
    throttle_bytes_per_sec: Option<u64>,
) -> Result<PartitionRegistration, MoveError> {
    let original = current.original();
    let target: Vec<BrokerId> = match target {
        Some(t) => t.to_vec(),
        None if current.reassignment.is_none() => {
            return Err(MoveError::Invalid(
                "no reassignment is in progress to cancel".into(),
            ));
        }
        None => original.clone(),
    };
    if target.is_empty() {
        return Err(MoveError::Invalid("the target has no replica".into()));
    }
    // Checked before anything else looks at the list: a target longer than the cluster
    // cannot be distinct registered brokers.
    if target.len() > image.brokers().count() {
        return Err(MoveError::Invalid(format!(
            "the target has {} replicas; the cluster has {} brokers",
            target.len(),
            image.brokers().count()
        )));
    }
    if target.iter().collect::<BTreeSet<_>>().len() != target.len() {
        return Err(MoveError::Invalid(format!(
            "the target {target:?} names a broker twice"
        )));
    }
    for &b in target.iter().filter(|b| !original.contains(b)) {
        let reason = match image.broker(b) {
            None => Some(Ineligible::NotRegistered),
            Some(r) if r.fenced => Some(Ineligible::Fenced),
            Some(r) if r.shutting_down => Some(Ineligible::ShuttingDown),
            Some(_) => None,
        };
        if let Some(reason) = reason {
            return Err(MoveError::Ineligible(b, reason));
        }
    }
    let adding: Vec<BrokerId> = target
        .iter()
        .copied()
        .filter(|b| !original.contains(b))
        .collect();
    let removing: Vec<BrokerId> = original
        .iter()
        .copied()
        .filter(|b| !target.contains(b))
        .collect();
    let replicas: Vec<BrokerId> = target.iter().chain(&removing).copied().collect();
    let isr: Vec<BrokerId> = replicas
        .iter()
        .copied()
        .filter(|b| current.isr.contains(b))
        .collect();
    if isr.is_empty() {
        return Err(MoveError::Invalid(format!(
            "the target {target:?} drops every in-sync replica {:?}",
            current.isr
        )));
    }
    let reassignment = (!adding.is_empty() || !removing.is_empty()).then_some(Reassignment {
        adding,
        removing,
        throttle_bytes_per_sec,
    });
    let mut next = PartitionRegistration {
        replicas,
        isr,
        reassignment,
        ..current.clone()
    };
    if next.leader != NO_LEADER && !next.replicas.contains(&next.leader) {
        // The leader was a replica an earlier target added and this one drops.
        next.leader = first_eligible(image, &next.replicas, &next.isr);
    }
    let mut next = complete(image, next);
    if next == *current {
        return Ok(next);
    }
    next.partition_epoch = current.partition_epoch + 1;
    next.leader_epoch = current.leader_epoch + i32::from(next.leader != current.leader);
    Ok(next)
}

/// Completes the reassignment of `reg` if every target replica is in its ISR: the
/// replicas become the target, the ISR keeps only target members, and a leader outside
/// the target hands over to the first eligible target replica in the ISR. Epochs are the
/// caller's: it writes `reg` as one change, whatever else that change does.
pub(super) fn complete(
    image: &MetadataImage,
    mut reg: PartitionRegistration,
) -> PartitionRegistration {
    if reg.reassignment.is_none() {
        return reg;
    }
    let target = reg.target();
    if !target.iter().all(|b| reg.isr.contains(b)) {
        return reg;
    }
    reg.isr.retain(|b| target.contains(b));
    if reg.leader != NO_LEADER && !target.contains(&reg.leader) {
        reg.leader = first_eligible(image, &target, &reg.isr);
    }
    reg.replicas = target;
    reg.reassignment = None;
    reg
}

/// The first of `order` that is in `isr` and may lead, or [`NO_LEADER`].
fn first_eligible(image: &MetadataImage, order: &[BrokerId], isr: &[BrokerId]) -> BrokerId {
    order
        .iter()
        .copied()
        .find(|b| isr.contains(b) && image.broker(*b).is_some_and(|r| r.is_eligible()))
        .unwrap_or(NO_LEADER)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::ControllerRequest;
    use crate::controller::test_support::Harness;

    fn reassign(h: &mut Harness, target: Option<&[BrokerId]>) -> ControllerReply {
        h.handle(ControllerRequest::ReassignPartitions {
            topic: "orders".into(),
            moves: vec![PartitionMove {
                partition: 0,
                target: target.map(<[BrokerId]>::to_vec),
            }],
            throttle_bytes_per_sec: None,
        })
        .1
    }

    /// The leader of partition 0 proposes `isr` (each member at its current epoch).
    fn alter_isr(h: &mut Harness, topic_id: &str, isr: &[BrokerId]) -> ControllerReply {
        let reg = h.partition(topic_id, 0);
        h.ok(ControllerRequest::AlterPartition {
            node: reg.leader,
            broker_epoch: h.epoch(reg.leader),
            topic_id: topic_id.into(),
            partition: 0,
            leader_epoch: reg.leader_epoch,
            partition_epoch: reg.partition_epoch,
            new_isr: isr.iter().map(|b| (*b, h.epoch(*b))).collect(),
        })
    }

    /// A restart of `node` not yet caught up: registered anew, so fenced.
    fn fence(h: &mut Harness, node: BrokerId) {
        let incarnation = format!("again-{node}-{}", h.image.next_offset());
        h.register(node, &incarnation, None);
    }

    /// Brokers 1..=3 and 4 live, "orders" with one partition on 1, 2, 3 led by 1.
    fn four_brokers() -> (Harness, String) {
        let (mut h, topic_id) = Harness::orders_on_three();
        h.live(4, None);
        (h, topic_id)
    }

    #[test]
    fn a_moved_replica_catches_up_joins_the_isr_and_completes_the_move() {
        let (mut h, topic_id) = four_brokers();
        let reply = reassign(&mut h, Some(&[1, 2, 4]));
        let reg = h.partition(&topic_id, 0);
        assert_eq!(
            reply,
            ControllerReply::PartitionsReassigned(vec![(0, reg.clone())])
        );
        assert_eq!(reg.replicas, vec![1, 2, 4, 3]);
        assert_eq!(reg.isr, vec![1, 2, 3]);
        assert_eq!(
            (reg.leader, reg.leader_epoch, reg.partition_epoch),
            (1, 0, 1)
        );
        let moving = reg.reassignment.clone().expect("in progress");
        assert_eq!((moving.adding, moving.removing), (vec![4], vec![3]));

        // The leader proposes 4 into the ISR: that change completes the move.
        let reply = alter_isr(&mut h, &topic_id, &[1, 2, 4, 3]);
        let done = h.partition(&topic_id, 0);
        assert_eq!(reply, ControllerReply::PartitionAltered(done.clone()));
        assert_eq!(done.replicas, vec![1, 2, 4]);
        assert_eq!(done.isr, vec![1, 2, 4]);
        assert_eq!(
            (done.leader, done.leader_epoch, done.partition_epoch),
            (1, 0, 2)
        );
        assert_eq!(done.reassignment, None);
    }

    #[test]
    fn moving_the_leader_away_elects_a_target_replica_when_the_move_completes() {
        let (mut h, topic_id) = four_brokers();
        reassign(&mut h, Some(&[4, 2, 3]));
        assert_eq!(
            h.partition(&topic_id, 0).leader,
            1,
            "leads until the move completes"
        );
        alter_isr(&mut h, &topic_id, &[4, 2, 3, 1]);
        let done = h.partition(&topic_id, 0);
        assert_eq!(done.replicas, vec![4, 2, 3]);
        assert_eq!((done.leader, done.leader_epoch), (4, 1));
        assert_eq!(done.isr, vec![4, 2, 3]);
    }

    #[test]
    fn a_target_already_in_sync_completes_at_once() {
        let (mut h, topic_id) = four_brokers();
        // Shrinking to two replicas and reordering: both are in the ISR already.
        reassign(&mut h, Some(&[2, 1]));
        let reg = h.partition(&topic_id, 0);
        assert_eq!(reg.replicas, vec![2, 1]);
        assert_eq!(reg.isr, vec![2, 1]);
        assert_eq!(
            (reg.leader, reg.leader_epoch, reg.partition_epoch),
            (1, 0, 1)
        );
        assert_eq!(reg.reassignment, None);
        // The same target again changes nothing and writes nothing.
        let before = h.image.next_offset();
        reassign(&mut h, Some(&[2, 1]));
        assert_eq!(h.image.next_offset(), before);
    }

    #[test]
    fn cancelling_goes_back_to_the_original_replicas() {
        let (mut h, topic_id) = four_brokers();
        reassign(&mut h, Some(&[4, 2, 3]));
        reassign(&mut h, None);
        let reg = h.partition(&topic_id, 0);
        // The original set, in the order the move kept it (target first), as in Kafka.
        assert_eq!(reg.replicas, vec![2, 3, 1]);
        assert_eq!(reg.isr, vec![2, 3, 1]);
        assert_eq!(reg.leader, 1, "the leader did not change");
        assert_eq!(reg.reassignment, None);
        assert_eq!(reg.partition_epoch, 2);
        // Nothing left to cancel.
        assert!(matches!(
            reassign(&mut h, None),
            ControllerReply::Refused(ControllerError::InvalidReassignment { .. })
        ));
    }

    #[test]
    fn a_new_target_replaces_the_one_in_progress_and_drops_its_added_replica() {
        let (mut h, topic_id) = four_brokers();
        h.live(5, None);
        reassign(&mut h, Some(&[1, 2, 4]));
        reassign(&mut h, Some(&[1, 2, 5]));
        let reg = h.partition(&topic_id, 0);
        assert_eq!(reg.replicas, vec![1, 2, 5, 3], "4 is no longer a replica");
        let moving = reg.reassignment.expect("in progress");
        assert_eq!((moving.adding, moving.removing), (vec![5], vec![3]));
    }

    #[test]
    fn bad_targets_are_refused_with_nothing_written() {
        let (mut h, topic_id) = four_brokers();
        for (target, want) in [
            (vec![], "no replica"),
            (vec![1, 1], "twice"),
            (vec![1, 2, 3, 4, 5], "the cluster has 4 brokers"),
        ] {
            match reassign(&mut h, Some(&target)) {
                ControllerReply::Refused(e @ ControllerError::InvalidReassignment { .. }) => {
                    assert!(e.to_string().contains(want), "{target:?}: {e}")
                }
                other => panic!("{target:?}: {other:?}"),
            }
        }
        fence(&mut h, 4);
        for (target, want) in [
            (vec![1, 2, 9], "broker 9 is not a registered broker"),
            (vec![1, 2, 4], "broker 4 is fenced"),
        ] {
            match reassign(&mut h, Some(&target)) {
                ControllerReply::Refused(e @ ControllerError::InvalidReassignment { .. }) => {
                    assert!(e.to_string().contains(want), "{target:?}: {e}")
                }
                other => panic!("{target:?}: {other:?}"),
            }
        }
        // Moving off a fenced replica needs nothing of it.
        fence(&mut h, 3);
        assert!(matches!(
            reassign(&mut h, Some(&[1, 2])),
            ControllerReply::PartitionsReassigned(_)
        ));
        assert_eq!(h.partition(&topic_id, 0).replicas, vec![1, 2]);
    }

    #[test]
    fn unclean_election_never_picks_an_adding_replica() {
        let (mut h, topic_id) = four_brokers();
        h.ok(ControllerRequest::AlterTopicConfig {
            topic: "orders".into(),
            key: "unclean.leader.election.enable".into(),
            value: Some("true".into()),
        });
        reassign(&mut h, Some(&[4, 1]));
        for b in [1, 2, 3] {
            fence(&mut h, b);
        }
        let reg = h.partition(&topic_id, 0);
        assert_eq!(reg.leader, NO_LEADER, "4 holds nothing: {reg:?}");
        assert_eq!(reg.replicas, vec![4, 1, 2, 3]);
    }
}
