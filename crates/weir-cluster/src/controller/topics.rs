//! Topic administration on the controller: CreateTopic (with placement), CreatePartitions,
//! DeleteTopic and AlterTopicConfig, validated with the crate's topic name and config
//! rules before anything is written.

use std::collections::BTreeMap;

use super::active::{Controller, MAX_TOPIC_ID_DRAWS};
use super::election::{BrokerView, reconcile_topic};
use super::image::MetadataImage;
use super::placement;
use super::records::{MetadataRecord, PartitionRegistration};
use super::requests::{ControllerError, ControllerReply, Outcome};
use crate::config::TopicConfig;
use crate::partition::BrokerId;
use crate::registry::MAX_PARTITIONS_PER_TOPIC;
use crate::topic_name::validate_topic_name;

impl Controller {
    /// `TopicCreated` and one `PartitionCreated` per partition, placed over the brokers
    /// that are unfenced and not shutting down. The placement's rotation starts at the
    /// number of topics, so single-partition topics take turns leading.
    pub(super) fn create_topic(
        &mut self,
        image: &MetadataImage,
        name: String,
        partitions: u32,
        replication_factor: u32,
        configs: BTreeMap<String, String>,
    ) -> Result<Outcome, ControllerError> {
        let replication_factor = match replication_factor {
            0 => self.config.default_replication_factor,
            n => n,
        };
        let config = image.check_new_topic(&name, partitions, replication_factor, configs)?;
        let order = placement_order(image);
        let topic_id = self.new_topic_id(image)?;
        let start = image.topic_count();
        let mut records = Vec::with_capacity(partitions as usize + 1);
        records.push(MetadataRecord::TopicCreated {
            name,
            topic_id: topic_id.clone(),
            configs: config.overrides().clone(),
        });
        records.extend((0..partitions).map(|p| {
            let replicas = placement::replicas(&order, start, p, replication_factor as usize);
            new_partition(&topic_id, p, replicas)
        }));
        Ok(Outcome {
            records,
            reply: ControllerReply::TopicCreated { topic_id },
        })
    }

    /// `TopicCreated` and one `PartitionCreated` per assignment, each partition on the
    /// brokers its assignment lists (checked as Kafka checks a manual assignment:
    /// [`MetadataImage::check_assigned_topic`]).
    pub(super) fn create_topic_assigned(
        &mut self,
        image: &MetadataImage,
        name: String,
        assignments: Vec<Vec<BrokerId>>,
        configs: BTreeMap<String, String>,
    ) -> Result<Outcome, ControllerError> {
        let config = image.check_assigned_topic(&name, &assignments, configs)?;
        let topic_id = self.new_topic_id(image)?;
        let mut records = Vec::with_capacity(assignments.len() + 1);
        records.push(MetadataRecord::TopicCreated {
            name,
            topic_id: topic_id.clone(),
            configs: config.overrides().clone(),
        });
        records.extend(
            assignments
                .into_iter()
                .enumerate()
                .map(|(p, replicas)| assigned_partition(image, &topic_id, p as u32, replicas)),
        );
        Ok(Outcome {
            records,
            reply: ControllerReply::TopicCreated { topic_id },
        })
    }

    /// A topic id from the source that is not empty and names no existing topic.
    fn new_topic_id(&mut self, image: &MetadataImage) -> Result<String, ControllerError> {
        let mut last = String::new();
        for _ in 0..MAX_TOPIC_ID_DRAWS {
            last = self.topic_ids.next_topic_id();
            if !last.is_empty() && image.topic_by_id(&last).is_none() {
                return Ok(last);
            }
        }
        Err(ControllerError::TopicIdsExhausted {
            draws: MAX_TOPIC_ID_DRAWS,
            last,
        })
    }
}

/// `PartitionCreated` for partitions `current..total`, with the topic's replication
/// factor. The rotation continues from partition 0's preferred leader, so a topic grown
/// over unchanged brokers is placed as if it had been created that large.
pub(super) fn create_partitions(
    image: &MetadataImage,
    name: &str,
    total: u32,
) -> Result<Outcome, ControllerError> {
    let topic = image
        .topic(name)
        .ok_or_else(|| ControllerError::UnknownTopic(name.to_string()))?;
    check_partition_count(total)?;
    let current = topic.partitions.len() as u32;
    if total <= current {
        return Err(ControllerError::PartitionCountNotIncreased {
            topic: name.to_string(),
            current,
            requested: total,
        });
    }
    let replication_factor = topic.replication_factor();
    let order = placement_order(image);
    check_replication_factor(replication_factor as u32, &order)?;
    let first_leader = topic.partitions.first().map(|p| p.replicas[0]);
    let start = order
        .iter()
        .position(|b| Some(*b) == first_leader)
        .unwrap_or(image.topic_count());
    let records = (current..total)
        .map(|p| {
            let replicas = placement::replicas(&order, start, p, replication_factor);
            new_partition(&topic.topic_id, p, replicas)
        })
        .collect();
    Ok(Outcome {
        records,
        reply: ControllerReply::PartitionsCreated,
    })
}

/// `PartitionCreated` for one new partition per assignment, after the topic's last, each
/// on the brokers its assignment lists, which must be as many as the topic's other
/// partitions have (Kafka's CreatePartitions with assignments).
pub(super) fn create_partitions_assigned(
    image: &MetadataImage,
    name: &str,
    assignments: &[Vec<BrokerId>],
) -> Result<Outcome, ControllerError> {
    let topic = image
        .topic(name)
        .ok_or_else(|| ControllerError::UnknownTopic(name.to_string()))?;
    let current = topic.partitions.len() as u32;
    let total = current.saturating_add(u32::try_from(assignments.len()).unwrap_or(u32::MAX));
    check_partition_count(total)?;
    if assignments.is_empty() {
        return Err(ControllerError::PartitionCountNotIncreased {
            topic: name.to_string(),
            current,
            requested: total,
        });
    }
    image.check_assignment(name, current, assignments, Some(topic.replication_factor()))?;
    let records = assignments
        .iter()
        .enumerate()
        .map(|(i, replicas)| {
            assigned_partition(image, &topic.topic_id, current + i as u32, replicas.clone())
        })
        .collect();
    Ok(Outcome {
        records,
        reply: ControllerReply::PartitionsCreated,
    })
}

/// `TopicDeleted`.
pub(super) fn delete_topic(image: &MetadataImage, name: &str) -> Result<Outcome, ControllerError> {
    let topic = image
        .topic(name)
        .ok_or_else(|| ControllerError::UnknownTopic(name.to_string()))?;
    // A queue's bindings go with it (AMQP: a queue is the topic of its name).
    let mut records = super::exchanges::unbind_queue(image, name);
    records.push(MetadataRecord::TopicDeleted {
        topic_id: topic.topic_id.clone(),
    });
    Ok(Outcome {
        records,
        reply: ControllerReply::TopicDeleted {
            topic_id: topic.topic_id.clone(),
        },
    })
}

/// `TopicConfigChanged` if the validated result differs from the current config.
/// Turning `unclean.leader.election.enable` on elects at once, in the same batch, an
/// eligible replica for every leaderless partition of the topic (as Kafka does).
pub(super) fn alter_topic_config(
    image: &MetadataImage,
    name: &str,
    key: String,
    value: Option<String>,
) -> Result<Outcome, ControllerError> {
    let topic = image
        .topic(name)
        .ok_or_else(|| ControllerError::UnknownTopic(name.to_string()))?;
    let current = topic.config()?;
    let altered = match &value {
        Some(v) => current.altered(&BTreeMap::from([(key.clone(), v.clone())]), &[])?,
        None => current.altered(&BTreeMap::new(), std::slice::from_ref(&key))?,
    };
    let mut records = Vec::new();
    if altered != current {
        records.push(MetadataRecord::TopicConfigChanged {
            topic_id: topic.topic_id.clone(),
            key,
            value,
        });
        let unclean = altered.effective()?.unclean_leader_election;
        if unclean && !current.effective()?.unclean_leader_election {
            records.extend(reconcile_topic(topic, &BrokerView::new(image), true));
        }
    }
    Ok(Outcome {
        records,
        reply: ControllerReply::TopicConfigAltered,
    })
}

impl MetadataImage {
    /// Why a topic `name` of `partitions` partitions, `replication_factor` copies (not 0:
    /// the caller resolves the default) and `configs` cannot be created in this image, if
    /// it cannot; its config if it can. The controller's own checks, also run by a Kafka
    /// CreateTopics with `validate_only`, so a request validated is one the controller
    /// would take (another request may still take the name first).
    pub fn check_new_topic(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: u32,
        configs: BTreeMap<String, String>,
    ) -> Result<TopicConfig, ControllerError> {
        validate_topic_name(name)?;
        check_partition_count(partitions)?;
        let config = TopicConfig::new(configs)?;
        if self.topic(name).is_some() {
            return Err(ControllerError::TopicExists(name.to_owned()));
        }
        check_replication_factor(replication_factor, &placement_order(self))?;
        Ok(config)
    }
}

impl MetadataImage {
    /// As [`MetadataImage::check_new_topic`], for a topic whose replicas the client
    /// placed: partition `i` on `assignments[i]`.
    pub fn check_assigned_topic(
        &self,
        name: &str,
        assignments: &[Vec<BrokerId>],
        configs: BTreeMap<String, String>,
    ) -> Result<TopicConfig, ControllerError> {
        validate_topic_name(name)?;
        check_partition_count(u32::try_from(assignments.len()).unwrap_or(u32::MAX))?;
        let config = TopicConfig::new(configs)?;
        if self.topic(name).is_some() {
            return Err(ControllerError::TopicExists(name.to_owned()));
        }
        self.check_assignment(name, 0, assignments, None)?;
        Ok(config)
    }

    /// Why new partitions `first..` of `topic` cannot be placed on `assignments`, Kafka's
    /// rules for a manual assignment: each lists at least one replica, no broker twice,
    /// only registered brokers, at least one of them able to lead now (unfenced, not
    /// shutting down), and every partition as many replicas (`replication_factor` when
    /// the topic has partitions already, else the first assignment's count).
    pub fn check_assignment(
        &self,
        topic: &str,
        first: u32,
        assignments: &[Vec<BrokerId>],
        replication_factor: Option<usize>,
    ) -> Result<(), ControllerError> {
        let expected = replication_factor.or_else(|| assignments.first().map(Vec::len));
        for (i, replicas) in assignments.iter().enumerate() {
            let partition = first + i as u32;
            let invalid = |reason: String| ControllerError::InvalidReplicaAssignment {
                topic: topic.to_string(),
                partition,
                reason,
            };
            if replicas.is_empty() {
                return Err(invalid("the replica list is empty".into()));
            }
            if Some(replicas.len()) != expected {
                return Err(invalid(format!(
                    "it has {} replica(s), but the topic's partitions have {}",
                    replicas.len(),
                    expected.unwrap_or_default()
                )));
            }
            let mut seen = std::collections::BTreeSet::new();
            for &b in replicas {
                if !seen.insert(b) {
                    return Err(invalid(format!("broker {b} is listed more than once")));
                }
                if self.broker(b).is_none() {
                    return Err(invalid(format!(
                        "broker {b} is listed, but no broker with that id is registered"
                    )));
                }
            }
            if !replicas.iter().any(|&b| self.is_eligible(b)) {
                return Err(invalid(format!(
                    "every broker listed ({replicas:?}) is fenced or shutting down"
                )));
            }
        }
        Ok(())
    }
}

/// The brokers that may receive new replicas, in placement order.
fn placement_order(image: &MetadataImage) -> Vec<BrokerId> {
    placement::broker_order(
        image
            .brokers()
            .filter(|b| b.is_eligible())
            .map(|b| (b.node, b.rack.as_deref())),
    )
}

fn check_partition_count(count: u32) -> Result<(), ControllerError> {
    if !(1..=MAX_PARTITIONS_PER_TOPIC).contains(&count) {
        return Err(ControllerError::InvalidPartitionCount {
            count,
            max: MAX_PARTITIONS_PER_TOPIC,
        });
    }
    Ok(())
}

fn check_replication_factor(
    replication_factor: u32,
    order: &[BrokerId],
) -> Result<(), ControllerError> {
    if replication_factor == 0 || replication_factor as usize > order.len() {
        return Err(ControllerError::InvalidReplicationFactor {
            replication_factor,
            brokers: order.len(),
        });
    }
    Ok(())
}

/// A new partition: ISR = replicas, the first replica leads, epochs 0.
fn new_partition(topic_id: &str, partition: u32, replicas: Vec<BrokerId>) -> MetadataRecord {
    MetadataRecord::PartitionCreated {
        topic_id: topic_id.to_string(),
        partition,
        registration: PartitionRegistration {
            isr: replicas.clone(),
            leader: replicas[0],
            replicas,
            leader_epoch: 0,
            partition_epoch: 0,
            reassignment: None,
        },
    }
}

/// A new partition on brokers a client chose: ISR = the replicas that are unfenced and
/// not shutting down (the others join once they catch up, as any follower), the first
/// of them leads, epochs 0. The caller checked that there is one.
fn assigned_partition(
    image: &MetadataImage,
    topic_id: &str,
    partition: u32,
    replicas: Vec<BrokerId>,
) -> MetadataRecord {
    let isr: Vec<BrokerId> = replicas
        .iter()
        .copied()
        .filter(|&b| image.is_eligible(b))
        .collect();
    MetadataRecord::PartitionCreated {
        topic_id: topic_id.to_string(),
        partition,
        registration: PartitionRegistration {
            leader: isr[0],
            isr,
            replicas,
            leader_epoch: 0,
            partition_epoch: 0,
            reassignment: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::super::records::NO_LEADER;
    use super::super::requests::ControllerRequest;
    use super::super::test_support::Harness;
    use super::*;
    use crate::config::{MIN_INSYNC_REPLICAS, RETENTION_MS, UNCLEAN_LEADER_ELECTION_ENABLE};
    use crate::controller::{Controller, ControllerConfig};
    use crate::error::{ConfigError, TopicNameError};

    fn create(name: &str, partitions: u32, rf: u32, configs: &[(&str, &str)]) -> ControllerRequest {
        ControllerRequest::CreateTopic {
            name: name.into(),
            partitions,
            replication_factor: rf,
            configs: configs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn alter(topic: &str, key: &str, value: Option<&str>) -> ControllerRequest {
        ControllerRequest::AlterTopicConfig {
            topic: topic.into(),
            key: key.into(),
            value: value.map(str::to_string),
        }
    }

    /// Leaderships and replicas held per broker over every partition.
    fn spread(h: &Harness) -> (BTreeMap<BrokerId, usize>, BTreeMap<BrokerId, usize>) {
        let (mut leads, mut holds) = (BTreeMap::new(), BTreeMap::new());
        for p in h.image.partitions() {
            *leads.entry(p.registration.leader).or_default() += 1;
            for r in &p.registration.replicas {
                *holds.entry(*r).or_default() += 1;
            }
        }
        (leads, holds)
    }

    #[test]
    fn create_topic_writes_the_topic_and_its_placed_partitions() {
        let mut h = Harness::new();
        for node in 1..=3 {
            h.live(node, None);
        }
        let (records, reply) = h.handle(create("orders", 2, 2, &[(RETENTION_MS, "1000")]));
        assert_eq!(
            reply,
            ControllerReply::TopicCreated {
                topic_id: "topic-1".into()
            }
        );
        assert_eq!(
            records[0],
            MetadataRecord::TopicCreated {
                name: "orders".into(),
                topic_id: "topic-1".into(),
                configs: [(RETENTION_MS.to_string(), "1000".to_string())].into(),
            }
        );
        // The first topic starts the rotation at 0: brokers in id order.
        let expected = [vec![1, 2], vec![2, 3]];
        for (p, replicas) in expected.iter().enumerate() {
            assert_eq!(
                records[p + 1],
                MetadataRecord::PartitionCreated {
                    topic_id: "topic-1".into(),
                    partition: p as u32,
                    registration: PartitionRegistration {
                        replicas: replicas.clone(),
                        isr: replicas.clone(),
                        leader: replicas[0],
                        leader_epoch: 0,
                        partition_epoch: 0,
                        reassignment: None,
                    },
                }
            );
        }
        assert_eq!(records.len(), 3);
        // A replication factor of 0 takes the default (1).
        let id = h.create_topic("audit", 1, 0);
        assert_eq!(h.partition(&id, 0).replicas.len(), 1);
    }

    #[test]
    fn create_topic_refusals_name_the_problem() {
        let mut h = Harness::new();
        h.live(1, None);
        h.live(2, None);
        h.register(3, "fenced", None);
        h.create_topic("orders", 1, 1);
        assert_eq!(
            h.refused(create("orders", 1, 1, &[])),
            ControllerError::TopicExists("orders".into())
        );
        assert!(matches!(
            h.refused(create("a b", 1, 1, &[])),
            ControllerError::InvalidTopicName(TopicNameError::BadCharacter { .. })
        ));
        for count in [0, MAX_PARTITIONS_PER_TOPIC + 1] {
            assert_eq!(
                h.refused(create("t", count, 1, &[])),
                ControllerError::InvalidPartitionCount {
                    count,
                    max: MAX_PARTITIONS_PER_TOPIC
                }
            );
        }
        assert!(matches!(
            h.refused(create("t", 1, 1, &[("retention.mss", "1")])),
            ControllerError::InvalidConfig(ConfigError::UnknownKey(_))
        ));
        assert!(matches!(
            h.refused(create("t", 1, 1, &[(MIN_INSYNC_REPLICAS, "0")])),
            ControllerError::InvalidConfig(ConfigError::BadValue { .. })
        ));
        // The fenced broker does not count.
        let err = h.refused(create("t", 1, 3, &[]));
        assert_eq!(
            err,
            ControllerError::InvalidReplicationFactor {
                replication_factor: 3,
                brokers: 2
            }
        );
        assert!(
            err.to_string().contains("replication factor 3")
                && err.to_string().contains("2 brokers")
        );
        assert!(h.image.topic("t").is_none());
    }

    #[test]
    fn three_brokers_three_hundred_partitions_each_lead_a_hundred() {
        let mut h = Harness::new();
        for node in 1..=3 {
            h.live(node, None);
        }
        h.create_topic("big", 300, 3);
        let (leads, holds) = spread(&h);
        assert_eq!(leads, [(1, 100), (2, 100), (3, 100)].into());
        assert_eq!(holds, [(1, 300), (2, 300), (3, 300)].into());
    }

    #[test]
    fn with_two_racks_every_partition_spans_both() {
        let mut h = Harness::new();
        for (node, rack) in [(1, "a"), (2, "a"), (3, "a"), (4, "b"), (5, "b"), (6, "b")] {
            h.live(node, Some(rack));
        }
        for t in 0..4 {
            h.create_topic(&format!("t{t}"), 30, 2);
        }
        for p in h.image.partitions() {
            let racks: BTreeSet<_> = p
                .registration
                .replicas
                .iter()
                .map(|b| h.image.broker(*b).unwrap().rack.clone())
                .collect();
            assert_eq!(racks.len(), 2, "{:?}", p.registration);
        }
        let (leads, holds) = spread(&h);
        assert!(
            leads.values().all(|n| *n == 20) && holds.values().all(|n| *n == 40),
            "{leads:?} {holds:?}"
        );
    }

    #[test]
    fn single_partition_topics_take_turns_leading() {
        let mut h = Harness::new();
        for node in 1..=3 {
            h.live(node, None);
        }
        let leaders: Vec<BrokerId> = (0..6)
            .map(|t| {
                let id = h.create_topic(&format!("t{t}"), 1, 2);
                h.partition(&id, 0).leader
            })
            .collect();
        assert_eq!(leaders, vec![1, 2, 3, 1, 2, 3]);
    }

    #[test]
    fn create_partitions_continues_the_rotation() {
        let mut h = Harness::new();
        for node in 1..=3 {
            h.live(node, None);
        }
        h.create_topic("first", 1, 1);
        let id = h.create_topic("orders", 2, 2);
        let (records, reply) = h.handle(ControllerRequest::CreatePartitions {
            topic: "orders".into(),
            total: 5,
        });
        assert_eq!(reply, ControllerReply::PartitionsCreated);
        assert_eq!(records.len(), 3);
        let replicas: Vec<_> = (0..5).map(|p| h.partition(&id, p).replicas).collect();
        assert_eq!(
            replicas,
            vec![vec![2, 3], vec![3, 1], vec![1, 2], vec![2, 3], vec![3, 1]]
        );
        assert_eq!(
            h.refused(ControllerRequest::CreatePartitions {
                topic: "orders".into(),
                total: 5,
            }),
            ControllerError::PartitionCountNotIncreased {
                topic: "orders".into(),
                current: 5,
                requested: 5
            }
        );
        assert_eq!(
            h.refused(ControllerRequest::CreatePartitions {
                topic: "nope".into(),
                total: 5,
            }),
            ControllerError::UnknownTopic("nope".into())
        );
        assert!(matches!(
            h.refused(ControllerRequest::CreatePartitions {
                topic: "orders".into(),
                total: MAX_PARTITIONS_PER_TOPIC + 1,
            }),
            ControllerError::InvalidPartitionCount { .. }
        ));
        // Two of three brokers fenced: RF 2 cannot be placed.
        h.now += 10_000;
        h.heartbeat(3);
        h.tick(0);
        assert_eq!(
            h.refused(ControllerRequest::CreatePartitions {
                topic: "orders".into(),
                total: 6,
            }),
            ControllerError::InvalidReplicationFactor {
                replication_factor: 2,
                brokers: 1
            }
        );
    }

    #[test]
    fn delete_topic_frees_the_name() {
        let mut h = Harness::new();
        h.live(1, None);
        let id = h.create_topic("orders", 2, 1);
        let (records, reply) = h.handle(ControllerRequest::DeleteTopic {
            name: "orders".into(),
        });
        assert_eq!(
            reply,
            ControllerReply::TopicDeleted {
                topic_id: id.clone()
            }
        );
        assert_eq!(
            records,
            vec![MetadataRecord::TopicDeleted {
                topic_id: id.clone()
            }]
        );
        assert!(h.image.topic("orders").is_none());
        assert_eq!(
            h.refused(ControllerRequest::DeleteTopic {
                name: "orders".into()
            }),
            ControllerError::UnknownTopic("orders".into())
        );
        assert_ne!(h.create_topic("orders", 1, 1), id);
    }

    #[test]
    fn alter_topic_config_sets_resets_and_validates() {
        let mut h = Harness::new();
        h.live(1, None);
        let id = h.create_topic("orders", 1, 1);
        let (records, reply) = h.handle(alter("orders", RETENTION_MS, Some("5000")));
        assert_eq!(reply, ControllerReply::TopicConfigAltered);
        assert_eq!(
            records,
            vec![MetadataRecord::TopicConfigChanged {
                topic_id: id.clone(),
                key: RETENTION_MS.into(),
                value: Some("5000".into())
            }]
        );
        assert_eq!(
            h.image.topic("orders").unwrap().configs[RETENTION_MS],
            "5000"
        );
        // The same value again writes nothing.
        assert_eq!(
            h.handle(alter("orders", RETENTION_MS, Some("5000"))).0,
            vec![]
        );
        assert!(matches!(
            h.refused(alter("orders", RETENTION_MS, Some("soon"))),
            ControllerError::InvalidConfig(ConfigError::BadValue { .. })
        ));
        assert!(matches!(
            h.refused(alter("orders", "nope", None)),
            ControllerError::InvalidConfig(ConfigError::UnknownKey(_))
        ));
        assert_eq!(
            h.refused(alter("nope", RETENTION_MS, None)),
            ControllerError::UnknownTopic("nope".into())
        );
        h.ok(alter("orders", RETENTION_MS, None));
        assert!(h.image.topic("orders").unwrap().configs.is_empty());
    }

    #[test]
    fn enabling_unclean_election_elects_a_live_replica_at_once() {
        let mut h = Harness::new();
        h.live(1, None);
        h.live(2, None);
        let id = h.create_topic("orders", 1, 2);
        let leader = h.partition(&id, 0).leader;
        let other = 3 - leader;
        // Both fenced; only the one outside the last-resort ISR comes back.
        h.tick(10_000);
        h.heartbeat(other);
        assert_eq!(h.partition(&id, 0).leader, NO_LEADER);
        let (records, _) = h.handle(alter(
            "orders",
            UNCLEAN_LEADER_ELECTION_ENABLE,
            Some("true"),
        ));
        assert_eq!(records.len(), 2);
        let r = h.partition(&id, 0);
        assert_eq!((r.leader, r.isr.clone()), (other, vec![other]));
        assert_eq!((r.leader_epoch, r.partition_epoch), (2, 2));
        // With it on, fencing the new leader hands over to the other live replica at once.
        h.heartbeat(leader);
        h.now += 2_500;
        h.heartbeat(leader);
        h.tick(0);
        let r = h.partition(&id, 0);
        assert_eq!((r.leader, r.isr.clone()), (leader, vec![leader]));
    }

    #[test]
    fn topic_ids_in_use_are_drawn_again_and_a_stuck_source_is_an_error() {
        let mut h = Harness::new();
        h.live(1, None);
        let mut ids = ["a", "a", "", "b"].into_iter().cycle();
        h.controller = Controller::new(ControllerConfig::default(), move || {
            ids.next().unwrap().to_string()
        });
        assert_eq!(h.create_topic("t1", 1, 1), "a");
        assert_eq!(h.create_topic("t2", 1, 1), "b");
        let mut same = Controller::new(ControllerConfig::default(), || "a".to_string());
        let (records, reply) = same.handle(&h.image, 0, create("t3", 1, 1, &[]));
        assert!(records.is_empty());
        assert_eq!(
            reply,
            ControllerReply::Refused(ControllerError::TopicIdsExhausted {
                draws: MAX_TOPIC_ID_DRAWS,
                last: "a".into()
            })
        );
    }

    fn assigned(name: &str, assignments: &[&[BrokerId]]) -> ControllerRequest {
        ControllerRequest::CreateTopicAssigned {
            name: name.into(),
            assignments: assignments.iter().map(|r| r.to_vec()).collect(),
            configs: BTreeMap::new(),
        }
    }

    fn assigned_reason(e: ControllerError) -> (u32, String) {
        match e {
            ControllerError::InvalidReplicaAssignment {
                partition, reason, ..
            } => (partition, reason),
            other => panic!("{other:?} is not INVALID_REPLICA_ASSIGNMENT"),
        }
    }

    #[test]
    fn a_manual_assignment_places_each_partition_where_it_says() {
        let mut h = Harness::new();
        h.live(1, None);
        h.live(2, None);
        h.register(3, "fenced", None);
        h.ok(assigned("orders", &[&[2, 1], &[3, 1]]));
        let id = h.image.topic("orders").expect("created").topic_id.clone();
        let p0 = h.partition(&id, 0);
        assert_eq!(
            (p0.replicas, p0.isr, p0.leader),
            (vec![2, 1], vec![2, 1], 2)
        );
        // The fenced broker is a replica, outside the ISR until it catches up.
        let p1 = h.partition(&id, 1);
        assert_eq!((p1.replicas, p1.isr, p1.leader), (vec![3, 1], vec![1], 1));

        // Grown by assignment: the new partitions go where they are listed.
        let (records, reply) = h.handle(ControllerRequest::CreatePartitionsAssigned {
            topic: "orders".into(),
            assignments: vec![vec![1, 2]],
        });
        assert_eq!(reply, ControllerReply::PartitionsCreated);
        assert_eq!(records.len(), 1);
        assert_eq!(h.partition(&id, 2).replicas, vec![1, 2]);
    }

    #[test]
    fn a_manual_assignment_is_refused_as_kafka_refuses_it() {
        let mut h = Harness::new();
        h.live(1, None);
        h.live(2, None);
        h.register(3, "fenced", None);
        let cases: [(&[&[BrokerId]], u32, &str); 5] = [
            (&[&[1], &[]], 1, "empty"),
            (&[&[1, 1]], 0, "broker 1 is listed more than once"),
            (&[&[1], &[9]], 1, "no broker with that id is registered"),
            (
                &[&[1, 2], &[2]],
                1,
                "1 replica(s), but the topic's partitions have 2",
            ),
            (&[&[3]], 0, "fenced or shutting down"),
        ];
        for (assignments, partition, words) in cases {
            let (p, reason) = assigned_reason(h.refused(assigned("t", assignments)));
            assert_eq!(p, partition, "{reason}");
            assert!(reason.contains(words), "{reason:?} should say {words:?}");
        }
        assert!(h.image.topic("t").is_none());
        assert!(matches!(
            h.refused(assigned("t", &[])),
            ControllerError::InvalidPartitionCount { count: 0, .. }
        ));

        // Growing: each new partition has the topic's replica count, on registered brokers.
        h.ok(assigned("orders", &[&[1, 2]]));
        let grow = |assignments: Vec<Vec<BrokerId>>| ControllerRequest::CreatePartitionsAssigned {
            topic: "orders".into(),
            assignments,
        };
        let (p, reason) = assigned_reason(h.refused(grow(vec![vec![2, 1], vec![1]])));
        assert_eq!(p, 2);
        assert!(reason.contains("have 2"), "{reason}");
        let (p, reason) = assigned_reason(h.refused(grow(vec![vec![1, 7]])));
        assert_eq!(p, 1);
        assert!(reason.contains("broker 7"), "{reason}");
        assert!(matches!(
            h.refused(grow(vec![])),
            ControllerError::PartitionCountNotIncreased { .. }
        ));
        assert_eq!(h.image.topic("orders").expect("kept").partitions.len(), 1);
    }
}
