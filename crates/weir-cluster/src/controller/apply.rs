//! Applying one metadata record to the image, and the rules a record must satisfy to
//! apply: a record inconsistent with the image (a stale broker epoch, epochs that do not
//! move forward by exactly one step, a topic that exists twice, ...) is refused and the
//! image is left as it was. A refused record in a committed log is a bug or corruption,
//! never something to skip: the driver stops applying and reports it with its offset.

use std::collections::BTreeSet;

use super::image::{BrokerRegistration, MetadataImage, TopicImage};
use super::records::{
    BrokerEpoch, MetadataOffset, MetadataRecord, NO_LEADER, PartitionRegistration,
};
use crate::error::TopicNameError;
use crate::partition::BrokerId;
use crate::topic_name::validate_topic_name;

/// Why a record does not apply to the image (or a snapshot is not a consistent image).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("the metadata log does not start with ClusterCreated")]
    NoCluster,
    #[error("the cluster already exists (id {0:?})")]
    ClusterExists(String),
    #[error("broker id {0} is negative")]
    InvalidBrokerId(BrokerId),
    #[error("broker {node}'s registration names epoch {epoch}, not its own offset {offset}")]
    EpochNotOffset {
        node: BrokerId,
        epoch: BrokerEpoch,
        offset: MetadataOffset,
    },
    #[error("broker {node} registers again while its epoch {epoch} is unfenced")]
    RegisteredWhileUnfenced { node: BrokerId, epoch: BrokerEpoch },
    #[error("broker {0} is not registered")]
    UnknownBroker(BrokerId),
    #[error("broker {node} has epoch {current}; the record names {given}")]
    StaleBrokerEpoch {
        node: BrokerId,
        given: BrokerEpoch,
        current: BrokerEpoch,
    },
    #[error("broker {0} is already fenced")]
    AlreadyFenced(BrokerId),
    #[error("broker {0} is not fenced")]
    NotFenced(BrokerId),
    #[error("broker {0} is shutting down")]
    ShuttingDown(BrokerId),
    #[error(transparent)]
    TopicName(#[from] TopicNameError),
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    #[error("topic id {0:?} is empty or already exists")]
    TopicIdExists(String),
    #[error("unknown topic id {0:?}")]
    UnknownTopicId(String),
    #[error("partition {partition} of topic {topic_id}: {reason}")]
    InvalidPartition {
        topic_id: String,
        partition: u32,
        reason: String,
    },
    #[error("the image is inconsistent: {0}")]
    Inconsistent(String),
}

impl MetadataImage {
    /// Applies the record at offset [`next_offset`](Self::next_offset), or refuses it and
    /// changes nothing.
    pub fn apply(&mut self, record: &MetadataRecord) -> Result<(), ImageError> {
        if self.cluster_id.is_none() && !matches!(record, MetadataRecord::ClusterCreated { .. }) {
            return Err(ImageError::NoCluster);
        }
        match record {
            MetadataRecord::ClusterCreated { cluster_id } => {
                if let Some(existing) = &self.cluster_id {
                    return Err(ImageError::ClusterExists(existing.clone()));
                }
                self.cluster_id = Some(cluster_id.clone());
            }
            MetadataRecord::BrokerRegistered {
                node,
                incarnation,
                broker_epoch,
                endpoints,
                rack,
            } => {
                if *node < 0 {
                    return Err(ImageError::InvalidBrokerId(*node));
                }
                if *broker_epoch != self.next_offset {
                    return Err(ImageError::EpochNotOffset {
                        node: *node,
                        epoch: *broker_epoch,
                        offset: self.next_offset,
                    });
                }
                // The controller fences the previous incarnation first (KIP-903).
                if let Some(old) = self.brokers.get(node).filter(|b| !b.fenced) {
                    return Err(ImageError::RegisteredWhileUnfenced {
                        node: *node,
                        epoch: old.broker_epoch,
                    });
                }
                self.brokers.insert(
                    *node,
                    BrokerRegistration {
                        node: *node,
                        incarnation: incarnation.clone(),
                        broker_epoch: *broker_epoch,
                        endpoints: endpoints.clone(),
                        rack: rack.clone(),
                        fenced: true,
                        shutting_down: false,
                    },
                );
            }
            MetadataRecord::BrokerFenced { node, broker_epoch } => {
                let broker = self.broker_at(*node, *broker_epoch)?;
                if broker.fenced {
                    return Err(ImageError::AlreadyFenced(*node));
                }
                broker.fenced = true;
            }
            MetadataRecord::BrokerUnfenced { node, broker_epoch } => {
                let broker = self.broker_at(*node, *broker_epoch)?;
                if !broker.fenced {
                    return Err(ImageError::NotFenced(*node));
                }
                if broker.shutting_down {
                    return Err(ImageError::ShuttingDown(*node));
                }
                broker.fenced = false;
            }
            MetadataRecord::BrokerShuttingDown { node, broker_epoch } => {
                let broker = self.broker_at(*node, *broker_epoch)?;
                if broker.fenced {
                    return Err(ImageError::AlreadyFenced(*node));
                }
                if broker.shutting_down {
                    return Err(ImageError::ShuttingDown(*node));
                }
                broker.shutting_down = true;
            }
            MetadataRecord::TopicCreated {
                name,
                topic_id,
                configs,
            } => {
                validate_topic_name(name)?;
                if self.topic_ids.contains_key(name) {
                    return Err(ImageError::TopicExists(name.clone()));
                }
                if topic_id.is_empty() || self.topics.contains_key(topic_id) {
                    return Err(ImageError::TopicIdExists(topic_id.clone()));
                }
                // Configs are not validated here: a newer controller may write keys this
                // version does not know, and the log must still apply.
                self.topic_ids.insert(name.clone(), topic_id.clone());
                self.topics.insert(
                    topic_id.clone(),
                    TopicImage {
                        name: name.clone(),
                        topic_id: topic_id.clone(),
                        configs: configs.clone(),
                        partitions: Vec::new(),
                    },
                );
            }
            MetadataRecord::PartitionCreated {
                topic_id,
                partition,
                registration,
            } => {
                let invalid = |reason: String| ImageError::InvalidPartition {
                    topic_id: topic_id.clone(),
                    partition: *partition,
                    reason,
                };
                let next = self.topic_at(topic_id)?.partitions.len();
                if *partition as usize != next {
                    return Err(invalid(format!("created out of order (next is {next})")));
                }
                if registration.leader_epoch != 0 || registration.partition_epoch != 0 {
                    return Err(invalid(format!(
                        "a new partition starts at epochs 0, not leader epoch {} and partition epoch {}",
                        registration.leader_epoch, registration.partition_epoch
                    )));
                }
                if let Some(r) = registration
                    .replicas
                    .iter()
                    .find(|r| self.broker(**r).is_none())
                {
                    return Err(invalid(format!("replica {r} is not a registered broker")));
                }
                self.check_leader(registration).map_err(&invalid)?;
                check_registration(registration).map_err(invalid)?;
                self.topic_at(topic_id)?
                    .partitions
                    .push(registration.clone());
            }
            MetadataRecord::PartitionChanged {
                topic_id,
                partition,
                registration,
            } => {
                let invalid = |reason: String| ImageError::InvalidPartition {
                    topic_id: topic_id.clone(),
                    partition: *partition,
                    reason,
                };
                let old = self
                    .topic_by_id(topic_id)
                    .ok_or_else(|| ImageError::UnknownTopicId(topic_id.to_string()))?
                    .partitions
                    .get(*partition as usize)
                    .ok_or_else(|| invalid("no such partition".into()))?;
                check_change(old, registration).map_err(&invalid)?;
                if let Some(r) = registration
                    .replicas
                    .iter()
                    .find(|r| !old.replicas.contains(r) && self.broker(**r).is_none())
                {
                    return Err(invalid(format!("replica {r} is not a registered broker")));
                }
                self.check_leader(registration).map_err(&invalid)?;
                check_registration(registration).map_err(invalid)?;
                self.topic_at(topic_id)?.partitions[*partition as usize] = registration.clone();
            }
            MetadataRecord::TopicConfigChanged {
                topic_id,
                key,
                value,
            } => {
                let topic = self.topic_at(topic_id)?;
                match value {
                    Some(value) => topic.configs.insert(key.clone(), value.clone()),
                    None => topic.configs.remove(key),
                };
            }
            MetadataRecord::TopicDeleted { topic_id } => {
                let name = self.topic_at(topic_id)?.name.clone();
                self.topics.remove(topic_id);
                self.topic_ids.remove(&name);
            }
            MetadataRecord::ProducerIdsAllocated { first, count, .. } => {
                let ids = &mut self.producer_ids;
                if *first != ids.next {
                    return Err(ImageError::Inconsistent(format!(
                        "producer ids allocated from {first}, but the next free id is {}",
                        ids.next
                    )));
                }
                ids.next += i64::from(*count);
            }
            MetadataRecord::ProducerInitialized {
                name,
                producer_id,
                producer_epoch,
            } => {
                let ids = &mut self.producer_ids;
                if *producer_id == ids.next {
                    ids.next += 1;
                } else if ids.named.get(name).map(|(id, _)| id) != Some(producer_id) {
                    return Err(ImageError::Inconsistent(format!(
                        "producer {name:?} initialized with id {producer_id}, neither its own nor the next free id {}",
                        ids.next
                    )));
                }
                ids.named
                    .insert(name.clone(), (*producer_id, *producer_epoch));
            }
            MetadataRecord::ScramCredentialUpserted { user, credential } => {
                self.security
                    .users
                    .entry(user.clone())
                    .or_default()
                    .insert(credential.mechanism.clone(), credential.clone());
            }
            MetadataRecord::ScramCredentialDeleted { user, mechanism } => {
                let credentials = self.security.users.get_mut(user);
                if credentials.and_then(|c| c.remove(mechanism)).is_none() {
                    return Err(ImageError::Inconsistent(format!(
                        "user {user:?} has no {mechanism} credential to delete"
                    )));
                }
                if self.security.users[user].is_empty() {
                    self.security.users.remove(user);
                }
            }
            MetadataRecord::TokenCreated { token } => {
                if self.security.tokens.contains_key(&token.id) {
                    return Err(ImageError::Inconsistent(format!(
                        "token {} made twice",
                        token.id
                    )));
                }
                self.security.tokens.insert(token.id.clone(), token.clone());
            }
            MetadataRecord::TokenRevoked { id } => {
                if self.security.tokens.remove(id).is_none() {
                    return Err(ImageError::Inconsistent(format!(
                        "token {id} is not there to revoke"
                    )));
                }
            }
            MetadataRecord::BrokerConfigChanged { broker, key, value } => {
                let configs = &mut self.broker_configs;
                let resource = super::image::broker_resource(*broker);
                match value {
                    Some(value) => {
                        configs
                            .entry(resource)
                            .or_default()
                            .insert(key.clone(), value.clone());
                    }
                    None => {
                        if let Some(keys) = configs.get_mut(&resource) {
                            keys.remove(key);
                            if keys.is_empty() {
                                configs.remove(&resource);
                            }
                        }
                    }
                }
            }
            MetadataRecord::GroupConfigChanged { group, key, value } => {
                let configs = &mut self.group_configs;
                match value {
                    Some(value) => {
                        configs
                            .entry(group.clone())
                            .or_default()
                            .insert(key.clone(), value.clone());
                    }
                    None => {
                        if let Some(keys) = configs.get_mut(group) {
                            keys.remove(key);
                            if keys.is_empty() {
                                configs.remove(group);
                            }
                        }
                    }
                }
            }
            MetadataRecord::ClientQuotaAltered { entity, key, value } => {
                let quotas = &mut self.security.quotas;
                match value {
                    Some(value) => {
                        quotas
                            .entry(entity.clone())
                            .or_default()
                            .insert(key.clone(), *value);
                    }
                    None => {
                        if let Some(keys) = quotas.get_mut(entity) {
                            keys.remove(key);
                            if keys.is_empty() {
                                quotas.remove(entity);
                            }
                        }
                    }
                }
                self.security.quotas_version = self.next_offset;
            }
            MetadataRecord::AclCreated { acl } => {
                self.security.acls.insert(acl.clone());
                self.security.acls_version = self.next_offset;
            }
            MetadataRecord::AclDeleted { acl } => {
                if !self.security.acls.remove(acl) {
                    return Err(ImageError::Inconsistent(format!(
                        "ACL ({acl}) is not there to delete"
                    )));
                }
                self.security.acls_version = self.next_offset;
            }
            MetadataRecord::ExchangeDeclared { .. }
            | MetadataRecord::ExchangeDeleted { .. }
            | MetadataRecord::BindingCreated { .. }
            | MetadataRecord::BindingDeleted { .. }
            | MetadataRecord::QueueDeclared { .. }
            | MetadataRecord::QueueDeclarationDeleted { .. } => {
                self.apply_exchange_record(record)?
            }
            MetadataRecord::ExchangeBindingCreated { .. }
            | MetadataRecord::ExchangeBindingDeleted { .. } => {
                self.apply_exchange_binding_record(record)?
            }
        }
        self.next_offset += 1;
        Ok(())
    }

    /// The registration of `node`, which must be at `epoch`.
    fn broker_at(
        &mut self,
        node: BrokerId,
        epoch: BrokerEpoch,
    ) -> Result<&mut BrokerRegistration, ImageError> {
        let broker = self
            .brokers
            .get_mut(&node)
            .ok_or(ImageError::UnknownBroker(node))?;
        if broker.broker_epoch != epoch {
            return Err(ImageError::StaleBrokerEpoch {
                node,
                given: epoch,
                current: broker.broker_epoch,
            });
        }
        Ok(broker)
    }

    fn topic_at(&mut self, topic_id: &str) -> Result<&mut TopicImage, ImageError> {
        self.topics
            .get_mut(topic_id)
            .ok_or_else(|| ImageError::UnknownTopicId(topic_id.to_string()))
    }

    /// A leader must be a registered broker that is neither fenced nor shutting down.
    fn check_leader(&self, registration: &PartitionRegistration) -> Result<(), String> {
        let leader = registration.leader;
        match self.broker(leader) {
            _ if leader == NO_LEADER => Ok(()),
            None => Err(format!("leader {leader} is not a registered broker")),
            Some(b) if b.fenced => Err(format!("leader {leader} is fenced")),
            Some(b) if b.shutting_down => Err(format!("leader {leader} is shutting down")),
            Some(_) => Ok(()),
        }
    }
}

/// A `PartitionChanged` moves the partition epoch by exactly one, the leader epoch by one
/// when the leader changes (to or from [`NO_LEADER`] included) and by at most one when it
/// stays (a leader re-elected after resigning: `resign.rs`), and changes something. A
/// broker becomes a replica only as one a reassignment adds, outside the ISR: it has to
/// catch up first (`docs/replication.md` § Reassignment).
fn check_change(old: &PartitionRegistration, new: &PartitionRegistration) -> Result<(), String> {
    for b in new.replicas.iter().filter(|b| !old.replicas.contains(b)) {
        if !new.is_adding(*b) || new.in_isr(*b) {
            return Err(format!(
                "replica {b} joins {:?} other than as a reassignment's adding replica outside the ISR",
                old.replicas
            ));
        }
    }
    if new.partition_epoch != old.partition_epoch.wrapping_add(1) {
        return Err(format!(
            "partition epoch {} does not follow {}",
            new.partition_epoch, old.partition_epoch
        ));
    }
    let leader_changed = new.leader != old.leader;
    let next = old.leader_epoch.wrapping_add(1);
    let epoch_ok = match leader_changed {
        true => new.leader_epoch == next,
        // Same leader: the same leadership, or the leader's new one after it resigned.
        false => {
            new.leader_epoch == old.leader_epoch
                || (new.leader_epoch == next && new.leader != NO_LEADER)
        }
    };
    if !epoch_ok {
        return Err(format!(
            "leader epoch {} does not follow {} (leader {} -> {})",
            new.leader_epoch, old.leader_epoch, old.leader, new.leader
        ));
    }
    let epoch_changed = new.leader_epoch != old.leader_epoch;
    if !leader_changed
        && !epoch_changed
        && new.isr == old.isr
        && new.replicas == old.replicas
        && new.reassignment == old.reassignment
    {
        return Err(
            "the change changes none of leader, leader epoch, ISR, replicas or reassignment".into(),
        );
    }
    Ok(())
}

/// The shape every partition registration has: replicas distinct and non-empty, the ISR
/// a non-empty set of replicas, the leader none or an ISR member, epochs non-negative.
pub(super) fn check_registration(r: &PartitionRegistration) -> Result<(), String> {
    let distinct = |ids: &[BrokerId]| ids.iter().collect::<BTreeSet<_>>().len() == ids.len();
    if r.replicas.is_empty() || !distinct(&r.replicas) || r.replicas.iter().any(|b| *b < 0) {
        return Err(format!(
            "replicas {:?} are not distinct broker ids",
            r.replicas
        ));
    }
    if r.isr.is_empty() || !distinct(&r.isr) || !r.isr.iter().all(|b| r.replicas.contains(b)) {
        return Err(format!(
            "ISR {:?} is not a non-empty set of the replicas {:?}",
            r.isr, r.replicas
        ));
    }
    if r.leader != NO_LEADER && !r.isr.contains(&r.leader) {
        return Err(format!("leader {} is not in the ISR {:?}", r.leader, r.isr));
    }
    if let Some(moving) = &r.reassignment {
        let removing_last = r.replicas.ends_with(&moving.removing);
        let within = |ids: &[BrokerId]| ids.iter().all(|b| r.replicas.contains(b));
        let overlap = moving.adding.iter().any(|b| moving.removing.contains(b));
        if !distinct(&moving.adding)
            || !distinct(&moving.removing)
            || !within(&moving.adding)
            || !removing_last
            || overlap
            || r.replicas.len() == moving.removing.len()
        {
            return Err(format!(
                "reassignment adding {:?}, removing {:?} does not fit the replicas {:?} (the target first, then the removed ones)",
                moving.adding, moving.removing, r.replicas
            ));
        }
    }
    if r.leader_epoch < 0 || r.partition_epoch < 0 {
        return Err(format!(
            "negative epochs (leader {}, partition {})",
            r.leader_epoch, r.partition_epoch
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::records::Endpoints;

    fn endpoints() -> Endpoints {
        Endpoints::new("h:1", "h:2")
    }

    fn registered(node: BrokerId, epoch: BrokerEpoch) -> MetadataRecord {
        MetadataRecord::BrokerRegistered {
            node,
            incarnation: format!("inc-{epoch}"),
            broker_epoch: epoch,
            endpoints: endpoints(),
            rack: None,
        }
    }

    fn reg(
        replicas: &[BrokerId],
        isr: &[BrokerId],
        leader: BrokerId,
        le: i32,
        pe: i32,
    ) -> PartitionRegistration {
        PartitionRegistration {
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            leader,
            leader_epoch: le,
            partition_epoch: pe,
            reassignment: None,
        }
    }

    fn moving(
        r: PartitionRegistration,
        adding: &[BrokerId],
        removing: &[BrokerId],
    ) -> PartitionRegistration {
        PartitionRegistration {
            reassignment: Some(crate::controller::Reassignment {
                adding: adding.to_vec(),
                removing: removing.to_vec(),
                throttle_bytes_per_sec: None,
            }),
            ..r
        }
    }

    fn changed(r: PartitionRegistration) -> MetadataRecord {
        MetadataRecord::PartitionChanged {
            topic_id: "t1".into(),
            partition: 0,
            registration: r,
        }
    }

    /// A cluster with brokers 1 and 2 unfenced and topic `orders` (id t1), partition 0
    /// on [1, 2] led by 1.
    fn image() -> MetadataImage {
        let mut image = MetadataImage::new();
        let records = [
            MetadataRecord::ClusterCreated {
                cluster_id: "c".into(),
            },
            registered(1, 1),
            registered(2, 2),
            MetadataRecord::BrokerUnfenced {
                node: 1,
                broker_epoch: 1,
            },
            MetadataRecord::BrokerUnfenced {
                node: 2,
                broker_epoch: 2,
            },
            MetadataRecord::TopicCreated {
                name: "orders".into(),
                topic_id: "t1".into(),
                configs: Default::default(),
            },
            MetadataRecord::PartitionCreated {
                topic_id: "t1".into(),
                partition: 0,
                registration: reg(&[1, 2], &[1, 2], 1, 0, 0),
            },
        ];
        for r in &records {
            image.apply(r).unwrap();
        }
        image
    }

    /// Applies `record` expecting a refusal that leaves the image unchanged.
    fn refused(image: &MetadataImage, record: MetadataRecord) -> ImageError {
        let mut copy = image.clone();
        let err = copy.apply(&record).unwrap_err();
        assert_eq!(&copy, image, "a refused record changed the image: {err}");
        err
    }

    #[test]
    fn records_apply_in_order_and_count_offsets() {
        let image = image();
        assert_eq!(image.next_offset(), 7);
        assert_eq!(image.cluster_id(), Some("c"));
        assert!(image.is_eligible(1) && image.is_eligible(2));
        assert_eq!(image.partition_by_name("orders", 0).unwrap().leader, 1);
    }

    #[test]
    fn cluster_and_broker_records_are_checked() {
        let empty = MetadataImage::new();
        assert_eq!(refused(&empty, registered(1, 0)), ImageError::NoCluster);
        let image = image();
        let created = MetadataRecord::ClusterCreated {
            cluster_id: "d".into(),
        };
        assert_eq!(
            refused(&image, created),
            ImageError::ClusterExists("c".into())
        );
        assert!(matches!(
            refused(&image, registered(3, 6)),
            ImageError::EpochNotOffset { offset: 7, .. }
        ));
        assert!(matches!(
            refused(&image, registered(1, 7)),
            ImageError::RegisteredWhileUnfenced { node: 1, epoch: 1 }
        ));
        assert_eq!(
            refused(&image, registered(-2, 7)),
            ImageError::InvalidBrokerId(-2)
        );
        let fenced = |node, broker_epoch| MetadataRecord::BrokerFenced { node, broker_epoch };
        assert!(matches!(
            refused(&image, fenced(1, 2)),
            ImageError::StaleBrokerEpoch {
                given: 2,
                current: 1,
                ..
            }
        ));
        assert_eq!(refused(&image, fenced(9, 2)), ImageError::UnknownBroker(9));
        let unfenced = MetadataRecord::BrokerUnfenced {
            node: 1,
            broker_epoch: 1,
        };
        assert_eq!(refused(&image, unfenced.clone()), ImageError::NotFenced(1));

        let mut image = image;
        image.apply(&fenced(2, 2)).unwrap();
        assert_eq!(refused(&image, fenced(2, 2)), ImageError::AlreadyFenced(2));
        let shutting =
            |node, broker_epoch| MetadataRecord::BrokerShuttingDown { node, broker_epoch };
        assert_eq!(
            refused(&image, shutting(2, 2)),
            ImageError::AlreadyFenced(2)
        );
        // A fenced broker registers anew: fenced, with the new epoch.
        image.apply(&registered(2, 8)).unwrap();
        assert_eq!(image.broker(2).unwrap().broker_epoch, 8);
        assert!(image.broker(2).unwrap().fenced);

        image.apply(&shutting(1, 1)).unwrap();
        assert_eq!(refused(&image, shutting(1, 1)), ImageError::ShuttingDown(1));
        image.apply(&fenced(1, 1)).unwrap();
        assert_eq!(refused(&image, unfenced), ImageError::ShuttingDown(1));
    }

    #[test]
    fn topic_records_are_checked() {
        let image = image();
        let create = |name: &str, id: &str| MetadataRecord::TopicCreated {
            name: name.into(),
            topic_id: id.into(),
            configs: Default::default(),
        };
        assert_eq!(
            refused(&image, create("orders", "t2")),
            ImageError::TopicExists("orders".into())
        );
        assert_eq!(
            refused(&image, create("audit", "t1")),
            ImageError::TopicIdExists("t1".into())
        );
        assert_eq!(
            refused(&image, create("audit", "")),
            ImageError::TopicIdExists("".into())
        );
        assert!(matches!(
            refused(&image, create("a/b", "t2")),
            ImageError::TopicName(_)
        ));
        let deleted = MetadataRecord::TopicDeleted {
            topic_id: "t9".into(),
        };
        assert_eq!(
            refused(&image, deleted),
            ImageError::UnknownTopicId("t9".into())
        );

        let partition = |p, r| MetadataRecord::PartitionCreated {
            topic_id: "t1".into(),
            partition: p,
            registration: r,
        };
        for (record, needle) in [
            (partition(2, reg(&[1], &[1], 1, 0, 0)), "out of order"),
            (partition(1, reg(&[1], &[1], 1, 1, 0)), "epochs 0"),
            (partition(1, reg(&[1, 5], &[1, 5], 1, 0, 0)), "replica 5"),
            (partition(1, reg(&[1, 1], &[1], 1, 0, 0)), "distinct"),
            (partition(1, reg(&[1, 2], &[], 1, 0, 0)), "ISR"),
            (partition(1, reg(&[1, 2], &[1, 3], 1, 0, 0)), "ISR"),
            (partition(1, reg(&[1, 2], &[1], 2, 0, 0)), "not in the ISR"),
        ] {
            let err = refused(&image, record).to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }

        let mut image = image;
        let config = MetadataRecord::TopicConfigChanged {
            topic_id: "t1".into(),
            key: "retention.ms".into(),
            value: Some("5".into()),
        };
        image.apply(&config).unwrap();
        assert_eq!(image.topic("orders").unwrap().configs.len(), 1);
        image
            .apply(&MetadataRecord::TopicDeleted {
                topic_id: "t1".into(),
            })
            .unwrap();
        assert!(image.topic("orders").is_none() && image.topic_by_id("t1").is_none());
        // The name is free again, under a new id.
        image.apply(&create("orders", "t2")).unwrap();
    }

    #[test]
    fn partition_changes_must_move_epochs_forward_by_one() {
        let image = image();
        for (r, needle) in [
            (
                reg(&[1, 2], &[1], 1, 0, 0),
                "partition epoch 0 does not follow 0",
            ),
            (reg(&[1, 2], &[1], 1, 0, 2), "partition epoch 2"),
            (
                reg(&[1, 2], &[1], 1, 2, 1),
                "leader epoch 2 does not follow 0",
            ),
            (
                reg(&[1, 2], &[2], 2, 0, 1),
                "leader epoch 0 does not follow 0 (leader 1 -> 2)",
            ),
            (
                reg(&[1, 2], &[1, 2], NO_LEADER, 0, 1),
                "leader epoch 0 does not follow 0 (leader 1 -> -1)",
            ),
            (reg(&[1, 2], &[1, 2], 1, 0, 1), "changes none of"),
            (reg(&[1, 2, 3], &[1, 2], 1, 0, 1), "replica 3 joins"),
            (
                moving(reg(&[1, 3, 2], &[1, 2, 3], 1, 0, 1), &[3], &[2]),
                "replica 3 joins",
            ),
            (
                moving(reg(&[1, 3, 2], &[1, 2], 1, 0, 1), &[3], &[2]),
                "replica 3 is not a registered broker",
            ),
            (
                moving(reg(&[2, 1], &[1, 2], 1, 0, 1), &[], &[2]),
                "does not fit",
            ),
            (reg(&[1, 2], &[1], 9, 1, 1), "not a registered broker"),
        ] {
            let err = refused(&image, changed(r)).to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }
        // A move whose target was in sync already: replicas reordered at once.
        image
            .clone()
            .apply(&changed(reg(&[2, 1], &[1, 2], 1, 0, 1)))
            .unwrap();
        // The same leader at the next epoch (re-elected after resigning), ISR unchanged.
        let mut resigned = image.clone();
        resigned
            .apply(&changed(reg(&[1, 2], &[1, 2], 1, 1, 1)))
            .unwrap();
        let mut image = image;
        image.apply(&changed(reg(&[1, 2], &[1], 1, 0, 1))).unwrap();
        // Applying the same record twice is refused.
        let again = changed(reg(&[1, 2], &[1], 1, 0, 1));
        assert!(
            refused(&image, again)
                .to_string()
                .contains("does not follow")
        );
        image
            .apply(&MetadataRecord::BrokerFenced {
                node: 2,
                broker_epoch: 2,
            })
            .unwrap();
        let err = refused(&image, changed(reg(&[1, 2], &[1, 2], 2, 1, 2))).to_string();
        assert!(err.contains("leader 2 is fenced"), "{err}");
        image
            .apply(&changed(reg(&[1, 2], &[1], NO_LEADER, 1, 2)))
            .unwrap();
        assert!(!image.partition("t1", 0).unwrap().has_leader());
    }
}
