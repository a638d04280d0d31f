//! The metadata image: what the committed metadata log says, applied in order (brokers,
//! topics, partitions), with the read-only queries brokers and the controller ask of it.
//! [`MetadataImage::apply`] (in `apply.rs`) is the only way it changes; a snapshot is the
//! image serialised, and [`MetadataImage::from_legacy`] turns a single-node
//! `metadata.weir` into the image a cluster starts from.

use std::collections::{BTreeMap, BTreeSet};

use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize};

use super::apply::{ImageError, check_registration};
use super::records::{BrokerEpoch, Endpoints, MetadataOffset, NO_LEADER, PartitionRegistration};
use crate::config::TopicConfig;
use crate::error::ConfigError;
use crate::exchanges::{StoredBinding, StoredExchange, StoredExchangeBinding, StoredQueue};
use crate::metadata::ClusterMetadata;
use crate::partition::BrokerId;
use crate::security::{AclBinding, QuotaEntity, StoredCredential};
use crate::tokens::StoredToken;

/// The committed cluster metadata at one point of the metadata log.
///
/// Serialises (for snapshots) without its name index; deserialising rebuilds the index
/// and refuses an image whose parts disagree (two topics with one name, a partition
/// whose ISR is not among its replicas, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "ImageData")]
pub struct MetadataImage {
    pub(super) cluster_id: Option<String>,
    pub(super) next_offset: MetadataOffset,
    pub(super) brokers: BTreeMap<BrokerId, BrokerRegistration>,
    /// Topics by topic id.
    pub(super) topics: BTreeMap<String, TopicImage>,
    /// Topic ids by topic name: an index of `topics`.
    pub(super) topic_ids: BTreeMap<String, String>,
    pub(super) producer_ids: ProducerIds,
    pub(super) security: SecurityImage,
    pub(super) exchanges: ExchangesImage,
    /// Dynamic broker configs (`crate::broker_configs`): by broker, each key's value.
    pub(super) broker_configs: BrokerConfigs,
    /// Consumer group configs (`MetadataRecord::GroupConfigChanged`): by group id, each
    /// key's value; a group with none set is absent.
    pub(super) group_configs: GroupConfigs,
}

/// Consumer group configs by group id, each key's value (text, as Kafka's admin sends it).
pub type GroupConfigs = BTreeMap<String, BTreeMap<String, String>>;

/// Dynamic broker configs by Kafka's resource name: a broker's id, or empty for the
/// cluster's default (text, so the snapshot's JSON can use it as a key).
pub type BrokerConfigs = BTreeMap<String, BTreeMap<String, String>>;

/// Kafka's resource name of broker `broker` (`None`: the cluster's default, "").
pub(super) fn broker_resource(broker: Option<BrokerId>) -> String {
    broker.map(|id| id.to_string()).unwrap_or_default()
}

/// Declared exchanges and their bindings (`crate::exchanges`; the predeclared ones have
/// no record and are not here).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExchangesImage {
    /// Exchanges by name.
    pub(super) exchanges: BTreeMap<String, StoredExchange>,
    /// Bindings by exchange name (predeclared exchanges' included), each set in order.
    pub(super) bindings: BTreeMap<String, BTreeSet<StoredBinding>>,
    /// Exchange-to-exchange bindings by source exchange name, each set in order.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) exchange_bindings: BTreeMap<String, BTreeSet<StoredExchangeBinding>>,
    /// How many bindings there are (to queues and to exchanges), all exchanges together.
    #[serde(skip)]
    pub(super) binding_count: usize,
    /// Queue declarations by queue name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) queues: BTreeMap<String, StoredQueue>,
}

/// Users and ACLs (`crate::security`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityImage {
    /// Each user's credentials, by mechanism name. A user exists while it has one.
    pub(super) users: BTreeMap<String, BTreeMap<String, StoredCredential>>,
    pub(super) acls: BTreeSet<AclBinding>,
    /// The metadata offset of the last ACL record applied (0 before any): authorisers
    /// rebuild their index when it moves, not on every metadata change.
    pub(super) acls_version: MetadataOffset,
    /// Client quotas: each entity's keys and values (bytes per second; whole percent
    /// for `request_percentage`).
    #[serde(default)]
    pub(super) quotas: BTreeMap<QuotaEntity, BTreeMap<String, u64>>,
    /// As `acls_version`, for the quotas.
    #[serde(default)]
    pub(super) quotas_version: MetadataOffset,
    /// API tokens by id (`crate::tokens`).
    #[serde(default)]
    pub(super) tokens: BTreeMap<String, StoredToken>,
}

/// Where producer ids stand (`producer_ids.rs`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerIds {
    /// The first id not handed out yet.
    pub next: i64,
    /// Named producers: their id and latest epoch.
    pub named: BTreeMap<String, (i64, i16)>,
}

/// One broker as its latest registration left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub node: BrokerId,
    /// The process that registered (new at every start).
    pub incarnation: String,
    /// The offset of the `BrokerRegistered` record.
    pub broker_epoch: BrokerEpoch,
    pub endpoints: Endpoints,
    pub rack: Option<String>,
    /// Fenced brokers lead nothing, join no ISR and get no new replicas.
    pub fenced: bool,
    /// Controlled shutdown started: leads nothing, joins no ISR, gets no new replicas.
    pub shutting_down: bool,
}

impl BrokerRegistration {
    /// Whether the broker may lead, join an ISR or receive a new replica.
    pub fn is_eligible(&self) -> bool {
        !self.fenced && !self.shutting_down
    }
}

/// One topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    pub name: String,
    pub topic_id: String,
    /// The keys set on the topic (defaults are not stored).
    pub configs: BTreeMap<String, String>,
    /// Partitions in index order.
    pub partitions: Vec<PartitionRegistration>,
}

impl TopicImage {
    /// The topic's configuration, validated by this version's rules.
    pub fn config(&self) -> Result<TopicConfig, ConfigError> {
        TopicConfig::new(self.configs.clone())
    }

    /// Whether a replica outside the ISR may be elected. A config this version cannot
    /// parse (a key a newer controller wrote) counts as the default, `false`: the safe
    /// side.
    pub fn unclean_leader_election(&self) -> bool {
        self.config()
            .and_then(|c| c.effective())
            .is_ok_and(|e| e.unclean_leader_election)
    }

    /// Copies of each partition (every partition of a topic has as many, reassignments
    /// counted by their target).
    pub fn replication_factor(&self) -> usize {
        self.partitions.first().map_or(0, |p| p.target().len())
    }
}

/// One partition, as the image's queries hand it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionRef<'a> {
    pub topic: &'a TopicImage,
    pub partition: u32,
    pub registration: &'a PartitionRegistration,
}

impl MetadataImage {
    /// The image of an empty log: no cluster id yet, so only `ClusterCreated` applies.
    pub fn new() -> MetadataImage {
        MetadataImage::default()
    }

    /// The image a data directory from before replication starts as: its cluster id,
    /// topics, topic ids, configs and partitions, every partition on `node` alone
    /// (replicas, ISR and leader), keeping its leader epoch, at metadata offset 0 (no
    /// record applied, and none needed to create the cluster).
    ///
    /// `node` is not registered yet: its registration takes the leaderships back (it
    /// starts fenced) and its unfencing elects it again, each bumping the leader epoch.
    pub fn from_legacy(
        legacy: ClusterMetadata,
        node: BrokerId,
    ) -> Result<MetadataImage, ImageError> {
        let topics = legacy
            .topics
            .into_values()
            .map(|topic| {
                let partitions = topic
                    .partitions
                    .iter()
                    .map(|assignment| PartitionRegistration {
                        replicas: vec![node],
                        isr: vec![node],
                        leader: node,
                        leader_epoch: assignment.leader_epoch,
                        partition_epoch: 0,
                        reassignment: None,
                    })
                    .collect();
                TopicImage {
                    name: topic.name,
                    topic_id: topic.topic_id,
                    configs: topic.configs,
                    partitions,
                }
            })
            .collect();
        MetadataImage::try_from(ImageData {
            cluster_id: Some(legacy.cluster_id),
            next_offset: 0,
            brokers: BTreeMap::new(),
            topics,
            producer_ids: ProducerIds::default(),
            security: SecurityImage::default(),
            exchanges: ExchangesImage::default(),
            broker_configs: BrokerConfigs::new(),
            group_configs: GroupConfigs::new(),
        })
    }

    /// The cluster id, once `ClusterCreated` is applied (or the image was migrated).
    pub fn cluster_id(&self) -> Option<&str> {
        self.cluster_id.as_deref()
    }

    /// The offset the next applied record gets: the number of records applied. A
    /// broker's heartbeat reports `next_offset() - 1`, the last offset it applied.
    pub fn next_offset(&self) -> MetadataOffset {
        self.next_offset
    }

    /// A broker's latest registration.
    pub fn broker(&self, node: BrokerId) -> Option<&BrokerRegistration> {
        self.brokers.get(&node)
    }

    /// Every registered broker, by node id.
    pub fn brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values()
    }

    /// Whether `node` is registered, unfenced and not shutting down.
    pub fn is_eligible(&self, node: BrokerId) -> bool {
        self.broker(node)
            .is_some_and(BrokerRegistration::is_eligible)
    }

    /// The topic named `name`.
    pub fn topic(&self, name: &str) -> Option<&TopicImage> {
        self.topic_ids.get(name).and_then(|id| self.topics.get(id))
    }

    /// The topic whose id is `topic_id`.
    pub fn topic_by_id(&self, topic_id: &str) -> Option<&TopicImage> {
        self.topics.get(topic_id)
    }

    /// Every topic, by topic id.
    pub fn topics(&self) -> impl Iterator<Item = &TopicImage> {
        self.topics.values()
    }

    /// How many topics exist.
    pub fn topic_count(&self) -> usize {
        self.topics.len()
    }

    /// Partition `partition` of the topic whose id is `topic_id`.
    pub fn partition(&self, topic_id: &str, partition: u32) -> Option<&PartitionRegistration> {
        self.topic_by_id(topic_id)?
            .partitions
            .get(partition as usize)
    }

    /// Partition `partition` of the topic named `name`.
    pub fn partition_by_name(&self, name: &str, partition: u32) -> Option<&PartitionRegistration> {
        self.topic(name)?.partitions.get(partition as usize)
    }

    /// `user`'s credential for the SCRAM `mechanism`.
    pub fn credential(&self, user: &str, mechanism: &str) -> Option<&StoredCredential> {
        self.security.users.get(user)?.get(mechanism)
    }

    /// Whether `user` exists (has a credential).
    pub fn has_user(&self, user: &str) -> bool {
        self.security.users.contains_key(user)
    }

    /// Every user, with the mechanisms it has credentials for.
    pub fn users(&self) -> impl Iterator<Item = (&str, Vec<&str>)> {
        self.security
            .users
            .iter()
            .map(|(user, by)| (user.as_str(), by.keys().map(String::as_str).collect()))
    }

    /// The API token `id`.
    pub fn token(&self, id: &str) -> Option<&StoredToken> {
        self.security.tokens.get(id)
    }

    /// Every API token, by id.
    pub fn tokens(&self) -> impl Iterator<Item = &StoredToken> {
        self.security.tokens.values()
    }

    /// Every ACL binding, in order.
    pub fn acls(&self) -> impl Iterator<Item = &AclBinding> {
        self.security.acls.iter()
    }

    /// Changes whenever the ACLs do (the offset of the last ACL record applied).
    pub fn acls_version(&self) -> MetadataOffset {
        self.security.acls_version
    }

    /// Every entity with a quota, and its keys.
    pub fn quotas(&self) -> impl Iterator<Item = (&QuotaEntity, &BTreeMap<String, u64>)> {
        self.security.quotas.iter()
    }

    /// `entity`'s quota for `key`.
    pub fn quota(&self, entity: &QuotaEntity, key: &str) -> Option<u64> {
        self.security.quotas.get(entity)?.get(key).copied()
    }

    /// Changes whenever the quotas do.
    pub fn quotas_version(&self) -> MetadataOffset {
        self.security.quotas_version
    }

    /// The dynamic configs set on broker `broker` (`None`: the cluster's default).
    pub fn broker_configs(&self, broker: Option<BrokerId>) -> Option<&BTreeMap<String, String>> {
        self.broker_configs.get(&broker_resource(broker))
    }

    /// The consumer group configs set on group `group` (none: `None`).
    pub fn group_configs(&self, group: &str) -> Option<&BTreeMap<String, String>> {
        self.group_configs.get(group)
    }

    /// The declared exchange `name` (not a predeclared one: `crate::exchanges::predeclared`).
    pub fn exchange(&self, name: &str) -> Option<&StoredExchange> {
        self.exchanges.exchanges.get(name)
    }

    /// Every declared exchange, by name.
    pub fn exchanges(&self) -> impl Iterator<Item = &StoredExchange> {
        self.exchanges.exchanges.values()
    }

    /// How many exchanges are declared.
    pub fn exchange_count(&self) -> usize {
        self.exchanges.exchanges.len()
    }

    /// The bindings of the exchange `name`, in order.
    pub fn bindings(&self, exchange: &str) -> impl Iterator<Item = &StoredBinding> {
        self.exchanges.bindings.get(exchange).into_iter().flatten()
    }

    /// How many bindings the exchange `name` is the source of (to queues and to
    /// exchanges).
    pub fn binding_count(&self, exchange: &str) -> usize {
        self.exchanges
            .bindings
            .get(exchange)
            .map_or(0, BTreeSet::len)
            + self
                .exchanges
                .exchange_bindings
                .get(exchange)
                .map_or(0, BTreeSet::len)
    }

    /// The exchange-to-exchange bindings whose source is `exchange`, in order.
    pub fn exchange_bindings(
        &self,
        exchange: &str,
    ) -> impl Iterator<Item = &StoredExchangeBinding> {
        self.exchanges
            .exchange_bindings
            .get(exchange)
            .into_iter()
            .flatten()
    }

    /// The exchange-to-exchange bindings whose destination is `exchange`.
    pub fn exchange_bindings_to(
        &self,
        exchange: &str,
    ) -> impl Iterator<Item = &StoredExchangeBinding> {
        self.exchanges
            .exchange_bindings
            .values()
            .flatten()
            .filter(move |b| b.destination == exchange)
    }

    /// How many bindings there are, all exchanges together.
    pub fn total_bindings(&self) -> usize {
        self.exchanges.binding_count
    }

    /// The declaration of queue `name`, if it was declared.
    pub fn queue_declaration(&self, name: &str) -> Option<&StoredQueue> {
        self.exchanges.queues.get(name)
    }

    /// Every queue declaration, by name.
    pub fn queue_declarations(&self) -> impl Iterator<Item = &StoredQueue> {
        self.exchanges.queues.values()
    }

    /// Every binding to the queue `queue`, of every exchange.
    pub fn bindings_to(&self, queue: &str) -> impl Iterator<Item = &StoredBinding> {
        self.exchanges
            .bindings
            .values()
            .flatten()
            .filter(move |b| b.queue == queue)
    }

    /// Every partition of every topic.
    pub fn partitions(&self) -> impl Iterator<Item = PartitionRef<'_>> {
        self.topics.values().flat_map(|topic| {
            topic
                .partitions
                .iter()
                .enumerate()
                .map(move |(index, registration)| PartitionRef {
                    topic,
                    partition: index as u32,
                    registration,
                })
        })
    }

    /// The partitions `node` leads.
    pub fn leaderships(&self, node: BrokerId) -> impl Iterator<Item = PartitionRef<'_>> {
        self.partitions()
            .filter(move |p| node != NO_LEADER && p.registration.leader == node)
    }

    /// The partitions `node` holds a replica of.
    pub fn replicas_of(&self, node: BrokerId) -> impl Iterator<Item = PartitionRef<'_>> {
        self.partitions()
            .filter(move |p| p.registration.replicas.contains(&node))
    }
}

/// What a snapshot holds: the image without its index.
#[derive(Serialize, Deserialize)]
struct ImageData {
    cluster_id: Option<String>,
    next_offset: MetadataOffset,
    brokers: BTreeMap<BrokerId, BrokerRegistration>,
    topics: Vec<TopicImage>,
    /// Absent in snapshots from before idempotent producers.
    #[serde(default)]
    producer_ids: ProducerIds,
    /// Absent in snapshots from before users and ACLs.
    #[serde(default)]
    security: SecurityImage,
    /// Absent in snapshots from before exchanges.
    #[serde(default)]
    exchanges: ExchangesImage,
    /// Absent in snapshots from before dynamic broker configs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    broker_configs: BrokerConfigs,
    /// Absent in snapshots from before consumer group configs (and when none is set, so
    /// a snapshot without them is what an older broker wrote).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    group_configs: GroupConfigs,
}

impl Serialize for MetadataImage {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // By hand, to write the topics without cloning the image into an `ImageData`.
        let topics: Vec<&TopicImage> = self.topics.values().collect();
        let mut s = serializer.serialize_struct("ImageData", 9)?;
        s.serialize_field("cluster_id", &self.cluster_id)?;
        s.serialize_field("next_offset", &self.next_offset)?;
        s.serialize_field("brokers", &self.brokers)?;
        s.serialize_field("topics", &topics)?;
        s.serialize_field("producer_ids", &self.producer_ids)?;
        s.serialize_field("security", &self.security)?;
        s.serialize_field("exchanges", &self.exchanges)?;
        if self.broker_configs.is_empty() {
            s.skip_field("broker_configs")?;
        } else {
            s.serialize_field("broker_configs", &self.broker_configs)?;
        }
        if self.group_configs.is_empty() {
            s.skip_field("group_configs")?;
        } else {
            s.serialize_field("group_configs", &self.group_configs)?;
        }
        s.end()
    }
}

impl TryFrom<ImageData> for MetadataImage {
    type Error = ImageError;

    fn try_from(data: ImageData) -> Result<MetadataImage, ImageError> {
        if data.next_offset < 0 {
            return Err(ImageError::Inconsistent(format!(
                "next offset {} is negative",
                data.next_offset
            )));
        }
        for (node, broker) in &data.brokers {
            if *node != broker.node || *node < 0 {
                return Err(ImageError::Inconsistent(format!(
                    "broker {} is filed under node {node}",
                    broker.node
                )));
            }
        }
        let mut image = MetadataImage {
            cluster_id: data.cluster_id,
            next_offset: data.next_offset,
            brokers: data.brokers,
            topics: BTreeMap::new(),
            topic_ids: BTreeMap::new(),
            producer_ids: data.producer_ids,
            security: data.security,
            exchanges: data.exchanges,
            broker_configs: data.broker_configs,
            group_configs: data.group_configs,
        };
        image.exchanges.binding_count = image.exchanges.bindings.values().map(BTreeSet::len).sum();
        image.exchanges.binding_count += image
            .exchanges
            .exchange_bindings
            .values()
            .map(BTreeSet::len)
            .sum::<usize>();
        for (source, bindings) in &image.exchanges.exchange_bindings {
            if bindings.is_empty() || bindings.iter().any(|b| &b.source != source) {
                return Err(ImageError::Inconsistent(format!(
                    "the exchange bindings filed under exchange {source:?} are empty or name another"
                )));
            }
        }
        for (exchange, bindings) in &image.exchanges.bindings {
            if bindings.is_empty() || bindings.iter().any(|b| &b.exchange != exchange) {
                return Err(ImageError::Inconsistent(format!(
                    "the bindings filed under exchange {exchange:?} are empty or name another"
                )));
            }
        }
        for topic in data.topics {
            if image.topic_ids.contains_key(&topic.name) {
                return Err(ImageError::TopicExists(topic.name));
            }
            if image.topics.contains_key(&topic.topic_id) || topic.topic_id.is_empty() {
                return Err(ImageError::TopicIdExists(topic.topic_id));
            }
            for (index, partition) in topic.partitions.iter().enumerate() {
                check_registration(partition).map_err(|reason| {
                    ImageError::Inconsistent(format!(
                        "partition {index} of topic {:?}: {reason}",
                        topic.name
                    ))
                })?;
            }
            image
                .topic_ids
                .insert(topic.name.clone(), topic.topic_id.clone());
            image.topics.insert(topic.topic_id.clone(), topic);
        }
        Ok(image)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{PartitionAssignment, TopicMetadata};

    fn legacy() -> ClusterMetadata {
        let topic = |name: &str, id: &str, partitions: usize| TopicMetadata {
            name: name.into(),
            topic_id: id.into(),
            replication_factor: 1,
            configs: [("retention.ms".to_string(), "1000".to_string())].into(),
            partitions: vec![
                PartitionAssignment {
                    replicas: vec![0],
                    leader: 0,
                    leader_epoch: 3,
                };
                partitions
            ],
        };
        ClusterMetadata {
            cluster_id: "cluster-1".into(),
            topics: [
                ("orders".to_string(), topic("orders", "id-1", 3)),
                ("audit".to_string(), topic("audit", "id-2", 1)),
            ]
            .into(),
        }
    }

    #[test]
    fn legacy_metadata_becomes_an_image_at_offset_zero() {
        let image = MetadataImage::from_legacy(legacy(), 7).unwrap();
        assert_eq!(image.cluster_id(), Some("cluster-1"));
        assert_eq!(image.next_offset(), 0);
        assert_eq!(image.brokers().count(), 0);
        let orders = image.topic("orders").unwrap();
        assert_eq!(orders.topic_id, "id-1");
        assert_eq!(orders.configs.get("retention.ms").unwrap(), "1000");
        assert_eq!(orders.partitions.len(), 3);
        let p = image.partition("id-1", 2).unwrap();
        assert_eq!(
            p,
            &PartitionRegistration {
                replicas: vec![7],
                isr: vec![7],
                leader: 7,
                leader_epoch: 3,
                partition_epoch: 0,
                reassignment: None,
            }
        );
        assert_eq!(
            image.partition_by_name("audit", 0),
            image.partition("id-2", 0)
        );
        assert_eq!(image.leaderships(7).count(), 4);
        assert_eq!(image.replicas_of(7).count(), 4);
        assert_eq!(image.leaderships(0).count(), 0);
    }

    #[test]
    fn legacy_metadata_with_a_shared_topic_id_is_refused() {
        let mut legacy = legacy();
        legacy.topics.get_mut("audit").unwrap().topic_id = "id-1".into();
        assert_eq!(
            MetadataImage::from_legacy(legacy, 0),
            Err(ImageError::TopicIdExists("id-1".into()))
        );
    }

    #[test]
    fn snapshots_round_trip_and_inconsistent_ones_are_refused() {
        let image = MetadataImage::from_legacy(legacy(), 0).unwrap();
        let json = serde_json::to_string(&image).unwrap();
        assert!(!json.contains("topic_ids"), "{json}");
        let back: MetadataImage = serde_json::from_str(&json).unwrap();
        assert_eq!(back, image);
        assert_eq!(back.topic("audit").unwrap().topic_id, "id-2");

        let bad = json.replace("\"isr\":[0]", "\"isr\":[5]");
        let err = serde_json::from_str::<MetadataImage>(&bad).unwrap_err();
        assert!(err.to_string().contains("ISR"), "{err}");
        let bad = json.replace("\"name\":\"audit\"", "\"name\":\"orders\"");
        let err = serde_json::from_str::<MetadataImage>(&bad).unwrap_err();
        assert!(err.to_string().contains("orders"), "{err}");
    }
}
