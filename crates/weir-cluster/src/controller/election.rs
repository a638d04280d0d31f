//! Elections and ISR removal (`docs/replication.md` § Election): what a partition must
//! become when brokers are fenced, unfenced, start shutting down or register anew, or
//! when its topic starts allowing unclean elections.
//!
//! One rule covers every case ([`reconcile`]): members that may not be in the ISR leave
//! it, except that the last one stays (the ISR of last resort); a leader that may not
//! lead is replaced by the first replica, in replica order, that is in the ISR and may
//! lead; with none, the partition is leaderless unless the topic allows an unclean
//! election. On a consistent image the rule changes nothing, so running it over more
//! partitions than needed only costs time.

use std::collections::{BTreeMap, BTreeSet};

use super::image::{MetadataImage, TopicImage};
use super::records::{MetadataRecord, NO_LEADER, PartitionRegistration};
use crate::partition::BrokerId;

/// Which brokers may lead and be in ISRs once the records of the batch being built are
/// applied: the image's answer, except for the brokers the batch changes.
#[derive(Debug)]
pub(super) struct BrokerView<'a> {
    image: &'a MetadataImage,
    changed: BTreeMap<BrokerId, bool>,
}

impl<'a> BrokerView<'a> {
    pub(super) fn new(image: &'a MetadataImage) -> BrokerView<'a> {
        BrokerView {
            image,
            changed: BTreeMap::new(),
        }
    }

    /// Records that the batch leaves `node` eligible (unfenced, not shutting down) or not.
    pub(super) fn set(&mut self, node: BrokerId, eligible: bool) {
        self.changed.insert(node, eligible);
    }

    pub(super) fn is_eligible(&self, node: BrokerId) -> bool {
        match self.changed.get(&node) {
            Some(eligible) => *eligible,
            None => self.image.is_eligible(node),
        }
    }
}

/// What `current` must become under `view`, epochs bumped; `None` if it stays as it is.
pub(super) fn reconcile(
    current: &PartitionRegistration,
    view: &BrokerView<'_>,
    unclean: bool,
) -> Option<PartitionRegistration> {
    let mut isr: Vec<BrokerId> = current
        .isr
        .iter()
        .copied()
        .filter(|b| view.is_eligible(*b))
        .collect();
    if isr.is_empty() && !current.isr.is_empty() {
        // The ISR of last resort: the member most likely to hold the longest log, the
        // leader if it was one, else the first. When it is back, it is elected.
        let last = if current.isr.contains(&current.leader) {
            current.leader
        } else {
            current.isr[0]
        };
        isr.push(last);
    }
    let can_lead = |b: BrokerId| b != NO_LEADER && isr.contains(&b) && view.is_eligible(b);
    let mut leader = if can_lead(current.leader) {
        current.leader
    } else {
        current
            .replicas
            .iter()
            .copied()
            .find(|b| can_lead(*b))
            .unwrap_or(NO_LEADER)
    };
    if leader == NO_LEADER
        && unclean
        && let Some(b) = current
            .replicas
            .iter()
            .copied()
            .find(|b| view.is_eligible(*b) && !current.is_adding(*b))
    {
        // Unclean: records only the old ISR had are lost, as the setting says. A replica
        // a reassignment is adding holds nothing the partition had: never that one.
        leader = b;
        isr = vec![b];
    }
    if leader == current.leader && isr == current.isr {
        return None;
    }
    Some(PartitionRegistration {
        replicas: current.replicas.clone(),
        isr,
        leader,
        leader_epoch: current.leader_epoch + i32::from(leader != current.leader),
        partition_epoch: current.partition_epoch + 1,
        reassignment: current.reassignment.clone(),
    })
}

/// `PartitionChanged` records for every partition in which one of `nodes` is a replica,
/// an ISR member or the leader, reconciled under `view`.
pub(super) fn reconcile_brokers(
    image: &MetadataImage,
    view: &BrokerView<'_>,
    nodes: &BTreeSet<BrokerId>,
) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for topic in image.topics() {
        let mut unclean = None;
        for (index, current) in topic.partitions.iter().enumerate() {
            let involved = nodes.contains(&current.leader)
                || current.replicas.iter().any(|b| nodes.contains(b));
            if !involved {
                continue;
            }
            let unclean = *unclean.get_or_insert_with(|| topic.unclean_leader_election());
            if let Some(registration) = reconcile(current, view, unclean) {
                records.push(changed(topic, index, registration));
            }
        }
    }
    records
}

/// `PartitionChanged` records for every partition of `topic`, reconciled under `view`.
pub(super) fn reconcile_topic(
    topic: &TopicImage,
    view: &BrokerView<'_>,
    unclean: bool,
) -> Vec<MetadataRecord> {
    topic
        .partitions
        .iter()
        .enumerate()
        .filter_map(|(index, current)| {
            reconcile(current, view, unclean).map(|r| changed(topic, index, r))
        })
        .collect()
}

fn changed(
    topic: &TopicImage,
    index: usize,
    registration: PartitionRegistration,
) -> MetadataRecord {
    MetadataRecord::PartitionChanged {
        topic_id: topic.topic_id.clone(),
        partition: index as u32,
        registration,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::records::Endpoints;

    /// Brokers 1..=4 registered; those in `eligible` unfenced.
    fn image(eligible: &[BrokerId]) -> MetadataImage {
        let mut image = MetadataImage::new();
        image
            .apply(&MetadataRecord::ClusterCreated {
                cluster_id: "c".into(),
            })
            .unwrap();
        for node in 1..=4 {
            let broker_epoch = image.next_offset();
            image
                .apply(&MetadataRecord::BrokerRegistered {
                    node,
                    incarnation: "i".into(),
                    broker_epoch,
                    endpoints: Endpoints::new("h:1", "h:2"),
                    rack: None,
                })
                .unwrap();
            if eligible.contains(&node) {
                image
                    .apply(&MetadataRecord::BrokerUnfenced { node, broker_epoch })
                    .unwrap();
            }
        }
        image
    }

    fn reg(isr: &[BrokerId], leader: BrokerId) -> PartitionRegistration {
        PartitionRegistration {
            replicas: vec![1, 2, 3],
            isr: isr.to_vec(),
            leader,
            leader_epoch: 4,
            partition_epoch: 7,
            reassignment: None,
        }
    }

    fn after(r: PartitionRegistration, le: i32, pe: i32) -> PartitionRegistration {
        PartitionRegistration {
            leader_epoch: le,
            partition_epoch: pe,
            ..r
        }
    }

    #[test]
    fn a_fenced_leader_is_replaced_by_the_first_eligible_isr_member_in_replica_order() {
        let image = image(&[1, 2, 3]);
        let mut view = BrokerView::new(&image);
        view.set(1, false);
        // Replica order decides, not ISR order.
        let current = PartitionRegistration {
            isr: vec![3, 1, 2],
            ..reg(&[], 1)
        };
        let next = reconcile(&current, &view, false).unwrap();
        assert_eq!((next.leader, next.isr.clone()), (2, vec![3, 2]));
        assert_eq!((next.leader_epoch, next.partition_epoch), (5, 8));
    }

    #[test]
    fn a_departing_follower_leaves_the_isr_without_a_leader_change() {
        let image = image(&[1, 2, 3]);
        let mut view = BrokerView::new(&image);
        view.set(2, false);
        let next = reconcile(&reg(&[1, 2, 3], 1), &view, false).unwrap();
        assert_eq!(next, after(reg(&[1, 3], 1), 4, 8));
        // Nothing to do for a partition the broker is not in the ISR of.
        assert_eq!(reconcile(&reg(&[1, 3], 1), &view, false), None);
    }

    #[test]
    fn the_last_isr_member_stays_and_the_partition_goes_leaderless() {
        let image = image(&[1, 2, 3]);
        let mut view = BrokerView::new(&image);
        view.set(2, false);
        view.set(3, false);
        // Two members leave at once: the leader is the one kept.
        let next = reconcile(&reg(&[2, 3], 3), &view, false).unwrap();
        assert_eq!(next, after(reg(&[3], NO_LEADER), 5, 8));
        // Not the leader: the first member is kept.
        let next = reconcile(&reg(&[2, 3], NO_LEADER), &view, false).unwrap();
        assert_eq!(next, after(reg(&[2], NO_LEADER), 4, 8));
    }

    #[test]
    fn an_unclean_election_takes_any_eligible_replica_when_allowed() {
        let image = image(&[1]);
        let view = BrokerView::new(&image);
        let current = reg(&[3], NO_LEADER);
        assert_eq!(reconcile(&current, &view, false), None);
        let next = reconcile(&current, &view, true).unwrap();
        assert_eq!(next, after(reg(&[1], 1), 5, 8));
    }

    #[test]
    fn an_unfenced_last_resort_member_is_elected() {
        let image = image(&[]);
        let mut view = BrokerView::new(&image);
        view.set(3, true);
        let next = reconcile(&reg(&[3], NO_LEADER), &view, false).unwrap();
        assert_eq!(next, after(reg(&[3], 3), 5, 8));
    }

    #[test]
    fn only_partitions_the_brokers_are_in_are_reconciled() {
        let mut image = image(&[1, 2, 3]);
        for r in [
            MetadataRecord::TopicCreated {
                name: "t".into(),
                topic_id: "id".into(),
                configs: Default::default(),
            },
            MetadataRecord::PartitionCreated {
                topic_id: "id".into(),
                partition: 0,
                registration: PartitionRegistration {
                    replicas: vec![1, 2],
                    ..after(reg(&[1, 2], 1), 0, 0)
                },
            },
            MetadataRecord::PartitionCreated {
                topic_id: "id".into(),
                partition: 1,
                registration: after(reg(&[1, 2, 3], 3), 0, 0),
            },
        ] {
            image.apply(&r).unwrap();
        }
        let mut view = BrokerView::new(&image);
        view.set(3, false);
        let records = reconcile_brokers(&image, &view, &[3].into());
        assert_eq!(records.len(), 1);
        assert!(matches!(
            &records[0],
            MetadataRecord::PartitionChanged { partition: 1, registration, .. }
                if registration.leader == 1 && registration.isr == [1, 2]
        ));
        for r in &records {
            image.apply(r).unwrap();
        }
    }
}
