//! Elections on request (Kafka's ElectLeaders, KIP-460): a preferred election hands each
//! partition named to its first replica, as `preferred.rs` does on its timer; an unclean
//! election gives a partition without a leader any eligible replica, as `election.rs`
//! does for a topic that allows it. Each partition is answered on its own, and the
//! changes of one request are one commit.

use serde::{Deserialize, Serialize};

use super::election::{BrokerView, reconcile};
use super::image::MetadataImage;
use super::records::{MetadataRecord, NO_LEADER, PartitionRegistration};
use super::requests::{ControllerError, ControllerReply, Outcome};
use crate::partition::BrokerId;

/// Most partitions one election request names (each may be a record in one commit).
pub const MAX_ELECTIONS_PER_REQUEST: usize = 10_000;

/// Which leader an election asks for (Kafka's election types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElectionKind {
    /// The partition's first replica, when it is in the ISR and may lead.
    Preferred,
    /// For a partition without a leader: an ISR member if one may lead, else any replica
    /// that may (records only the old ISR had are lost).
    Unclean,
}

/// Why a partition's election changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ElectionRefusal {
    /// ELECTION_NOT_NEEDED: the preferred replica leads already, or (unclean) the
    /// partition has a leader.
    #[error("no election is needed: broker {leader} leads and {why}")]
    NotNeeded { leader: BrokerId, why: String },
    /// PREFERRED_LEADER_NOT_AVAILABLE.
    #[error("the preferred replica {replica} cannot lead now: it {why}")]
    PreferredNotAvailable { replica: BrokerId, why: String },
    /// ELIGIBLE_LEADERS_NOT_AVAILABLE: no replica may lead (fenced, shutting down).
    #[error("no replica of {replicas:?} can lead now (fenced or shutting down)")]
    NoEligibleReplica { replicas: Vec<BrokerId> },
    /// UNKNOWN_TOPIC_OR_PARTITION.
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    /// UNKNOWN_TOPIC_OR_PARTITION.
    #[error("topic {topic:?} has no partition {partition} (it has {count})")]
    UnknownPartition {
        topic: String,
        partition: u32,
        count: u32,
    },
}

/// One partition's answer: its registration after the election, or why there was none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElectionResult {
    pub topic: String,
    pub partition: u32,
    pub outcome: Result<PartitionRegistration, ElectionRefusal>,
}

/// Elects `kind` leaders for the partitions named (`None`: every partition, answering
/// only those whose election was needed, as Kafka answers an election of all).
pub(super) fn elect_leaders(
    image: &MetadataImage,
    kind: ElectionKind,
    named: Option<&[(String, Vec<u32>)]>,
) -> Result<Outcome, ControllerError> {
    let asked: Vec<(String, u32)> = match named {
        Some(named) => named
            .iter()
            .flat_map(|(t, parts)| parts.iter().map(|p| (t.clone(), *p)))
            .collect(),
        None => image
            .topics()
            .flat_map(|t| (0..t.partitions.len() as u32).map(|p| (t.name.clone(), p)))
            .collect(),
    };
    if asked.len() > MAX_ELECTIONS_PER_REQUEST {
        return Err(ControllerError::TooManyElections {
            requested: asked.len(),
            max: MAX_ELECTIONS_PER_REQUEST,
        });
    }
    let view = BrokerView::new(image);
    let mut records = Vec::new();
    let mut results = Vec::with_capacity(asked.len());
    for (topic, partition) in asked {
        let outcome = match elect(image, &view, kind, &topic, partition) {
            Ok((topic_id, registration)) => {
                records.push(MetadataRecord::PartitionChanged {
                    topic_id,
                    partition,
                    registration: registration.clone(),
                });
                Ok(registration)
            }
            Err(ElectionRefusal::NotNeeded { .. }) if named.is_none() => continue,
            Err(refusal) => Err(refusal),
        };
        results.push(ElectionResult {
            topic,
            partition,
            outcome,
        });
    }
    Ok(Outcome {
        records,
        reply: ControllerReply::LeadersElected(results),
    })
}

/// The partition's registration after the election, and its topic's id.
fn elect(
    image: &MetadataImage,
    view: &BrokerView<'_>,
    kind: ElectionKind,
    topic: &str,
    partition: u32,
) -> Result<(String, PartitionRegistration), ElectionRefusal> {
    let t = image
        .topic(topic)
        .ok_or_else(|| ElectionRefusal::UnknownTopic(topic.to_string()))?;
    let current =
        t.partitions
            .get(partition as usize)
            .ok_or_else(|| ElectionRefusal::UnknownPartition {
                topic: topic.to_string(),
                partition,
                count: t.partitions.len() as u32,
            })?;
    let next = match kind {
        ElectionKind::Preferred => preferred(image, current)?,
        ElectionKind::Unclean => unclean(view, current)?,
    };
    Ok((t.topic_id.clone(), next))
}

fn preferred(
    image: &MetadataImage,
    current: &PartitionRegistration,
) -> Result<PartitionRegistration, ElectionRefusal> {
    let Some(&replica) = current.replicas.first() else {
        return Err(ElectionRefusal::NoEligibleReplica { replicas: vec![] });
    };
    if current.leader == replica {
        return Err(ElectionRefusal::NotNeeded {
            leader: replica,
            why: "it is the preferred replica".into(),
        });
    }
    let unavailable = |why: &str| ElectionRefusal::PreferredNotAvailable {
        replica,
        why: why.to_string(),
    };
    match image.broker(replica) {
        None => return Err(unavailable("is not a registered broker")),
        Some(b) if b.fenced => return Err(unavailable("is fenced")),
        Some(b) if b.shutting_down => return Err(unavailable("is shutting down")),
        Some(_) => {}
    }
    if !current.in_isr(replica) {
        return Err(unavailable("is not in the ISR (it has not caught up)"));
    }
    if current.reassignment.is_some() {
        // The reassignment's completion decides the leader (as `preferred.rs` leaves it).
        return Err(unavailable("is being moved by a reassignment in progress"));
    }
    Ok(PartitionRegistration {
        leader: replica,
        leader_epoch: current.leader_epoch + 1,
        partition_epoch: current.partition_epoch + 1,
        ..current.clone()
    })
}

fn unclean(
    view: &BrokerView<'_>,
    current: &PartitionRegistration,
) -> Result<PartitionRegistration, ElectionRefusal> {
    if current.leader != NO_LEADER {
        return Err(ElectionRefusal::NotNeeded {
            leader: current.leader,
            why: "an unclean election is only for a partition without a leader".into(),
        });
    }
    // The same rule as a topic with unclean.leader.election.enable: an ISR member first,
    // else any eligible replica a reassignment is not adding.
    reconcile(current, view, true)
        .filter(|next| next.leader != NO_LEADER)
        .ok_or_else(|| ElectionRefusal::NoEligibleReplica {
            replicas: current.replicas.clone(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::ControllerRequest;
    use crate::controller::test_support::Harness;

    fn elect(h: &mut Harness, kind: ElectionKind, named: Option<&[u32]>) -> Vec<ElectionResult> {
        let reply = h.ok(ControllerRequest::ElectLeaders {
            kind,
            partitions: named.map(|parts| vec![("orders".to_string(), parts.to_vec())]),
        });
        match reply {
            ControllerReply::LeadersElected(results) => results,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_preferred_election_moves_leadership_back_or_says_why_not() {
        let (mut h, id) = Harness::orders_on_three();
        let before = h.partition(&id, 0);
        let preferred = before.replicas[0];
        // Nothing to do while the preferred replica leads.
        let results = elect(&mut h, ElectionKind::Preferred, Some(&[0, 9]));
        assert!(
            matches!(results[0].outcome, Err(ElectionRefusal::NotNeeded { .. })),
            "{results:?}"
        );
        assert!(
            matches!(
                results[1].outcome,
                Err(ElectionRefusal::UnknownPartition { .. })
            ),
            "{results:?}"
        );
        // Electing every partition answers only those that needed it: none.
        assert!(elect(&mut h, ElectionKind::Preferred, None).is_empty());

        // Another replica leads (as after a failover): the election moves it back.
        let other = before.replicas[1];
        let moved = PartitionRegistration {
            leader: other,
            leader_epoch: before.leader_epoch + 1,
            partition_epoch: before.partition_epoch + 1,
            ..before.clone()
        };
        h.commit(&[MetadataRecord::PartitionChanged {
            topic_id: id.clone(),
            partition: 0,
            registration: moved,
        }]);
        let results = elect(&mut h, ElectionKind::Preferred, Some(&[0]));
        let after = h.partition(&id, 0);
        assert_eq!(results[0].outcome, Ok(after.clone()), "{results:?}");
        assert_eq!(after.leader, preferred);
        assert_eq!(after.leader_epoch, before.leader_epoch + 2);

        // An unclean election of a partition that has a leader is not needed.
        let results = elect(&mut h, ElectionKind::Unclean, Some(&[0]));
        assert!(
            matches!(results[0].outcome, Err(ElectionRefusal::NotNeeded { .. })),
            "{results:?}"
        );
    }

    #[test]
    fn a_preferred_replica_out_of_the_isr_is_not_available() {
        let (mut h, id) = Harness::orders_on_three();
        let before = h.partition(&id, 0);
        let (preferred, other) = (before.replicas[0], before.replicas[1]);
        let out = PartitionRegistration {
            leader: other,
            isr: before
                .isr
                .iter()
                .copied()
                .filter(|b| *b != preferred)
                .collect(),
            leader_epoch: before.leader_epoch + 1,
            partition_epoch: before.partition_epoch + 1,
            ..before.clone()
        };
        h.commit(&[MetadataRecord::PartitionChanged {
            topic_id: id.clone(),
            partition: 0,
            registration: out,
        }]);
        let results = elect(&mut h, ElectionKind::Preferred, Some(&[0]));
        assert!(
            matches!(
                &results[0].outcome,
                Err(ElectionRefusal::PreferredNotAvailable { replica, .. }) if *replica == preferred
            ),
            "{results:?}"
        );
        assert_eq!(h.partition(&id, 0).leader, other);
    }
}
