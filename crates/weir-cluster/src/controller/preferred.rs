//! Preferred-leader election (Kafka's `auto.leader.rebalance.enable`,
//! `docs/replication.md` § Preferred leaders): every `preferred_leader_check_ms` the
//! active controller hands each partition's leadership back to its first replica when
//! that replica is in the ISR and may lead. Placement spreads the first replicas over
//! the brokers, so this spreads the leaderships again after restarts and failovers moved
//! them.

use super::image::MetadataImage;
use super::records::{MetadataRecord, PartitionRegistration};

/// `PartitionChanged` records moving each leadership not on its partition's preferred
/// replica to it, where that replica is an ISR member that may lead (registered,
/// unfenced, not shutting down). A partition a reassignment is moving is left alone:
/// its completion decides its leader.
pub(super) fn elect_preferred(image: &MetadataImage) -> Vec<MetadataRecord> {
    image
        .partitions()
        .filter_map(|p| {
            let r = p.registration;
            let preferred = *r.replicas.first()?;
            let eligible = image.broker(preferred).is_some_and(|b| b.is_eligible());
            if r.leader == preferred
                || r.reassignment.is_some()
                || !r.in_isr(preferred)
                || !eligible
            {
                return None;
            }
            Some(MetadataRecord::PartitionChanged {
                topic_id: p.topic.topic_id.clone(),
                partition: p.partition,
                registration: PartitionRegistration {
                    leader: preferred,
                    leader_epoch: r.leader_epoch + 1,
                    partition_epoch: r.partition_epoch + 1,
                    ..r.clone()
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::controller::ControllerRequest;
    use crate::controller::records::MetadataRecord;
    use crate::controller::test_support::Harness;

    /// `ms` of heartbeats from brokers 1 to 3 and controller ticks; the records written.
    fn live_for(h: &mut Harness, ms: u64) -> Vec<MetadataRecord> {
        let mut records = Vec::new();
        for _ in 0..ms / 250 {
            for node in [1, 2, 3] {
                h.heartbeat(node);
            }
            records.extend(h.tick(250));
        }
        records
    }

    /// Leader 2 proposes 1 back into the ISR of partition 0.
    fn back_in_the_isr(h: &mut Harness, topic_id: &str) {
        let reg = h.partition(topic_id, 0);
        h.ok(ControllerRequest::AlterPartition {
            node: 2,
            broker_epoch: h.epoch(2),
            topic_id: topic_id.to_string(),
            partition: 0,
            leader_epoch: reg.leader_epoch,
            partition_epoch: reg.partition_epoch,
            new_isr: [1, 2, 3].iter().map(|b| (*b, h.epoch(*b))).collect(),
        });
    }

    #[test]
    fn a_restarted_preferred_replica_leads_again_once_back_in_the_isr() {
        let (mut h, topic_id) = Harness::orders_on_three();
        let interval = h.controller.config().preferred_leader_check_ms;
        // Broker 1 (preferred) restarts: fenced and out of the ISR, 2 leads.
        h.register(1, "again", None);
        assert_eq!(h.partition(&topic_id, 0).leader, 2);
        // Back and unfenced, but not in the ISR until its leader proposes it: stays.
        live_for(&mut h, interval + 1_000);
        assert_eq!(h.partition(&topic_id, 0).leader, 2, "not in the ISR yet");
        back_in_the_isr(&mut h, &topic_id);
        // Within one interval the leadership goes back to 1, in one change.
        let records = live_for(&mut h, interval);
        assert!(
            matches!(
                records.as_slice(),
                [MetadataRecord::PartitionChanged { .. }]
            ),
            "{records:?}"
        );
        let reg = h.partition(&topic_id, 0);
        assert_eq!((reg.leader, reg.leader_epoch), (1, 2));
        assert_eq!(reg.isr, vec![1, 2, 3]);
        // Nothing more to do.
        assert_eq!(live_for(&mut h, 2 * interval), vec![]);
    }

    #[test]
    fn off_when_the_interval_is_zero() {
        let (mut h, topic_id) = Harness::orders_on_three();
        let mut config = h.controller.config().clone();
        config.preferred_leader_check_ms = 0;
        h.controller = crate::controller::Controller::new(config, || "t".into());
        h.controller.activate(&h.image, h.now, &Default::default());
        h.register(1, "again", None);
        live_for(&mut h, 1_000);
        back_in_the_isr(&mut h, &topic_id);
        assert_eq!(live_for(&mut h, 120_000), vec![]);
        assert_eq!(h.partition(&topic_id, 0).leader, 2);
    }
}
