//! The metadata records: every change to cluster metadata is one of these, appended to
//! the quorum's log and applied in order to a [`MetadataImage`](super::MetadataImage).
//! See `docs/replication.md` § Metadata records.
//!
//! Each record carries what it sets (new leader, new ISR, new epochs), never a delta
//! that depends on unrelated records, so applying the log in order is the only rule.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::exchanges::{StoredBinding, StoredExchange, StoredExchangeBinding, StoredQueue};
use crate::partition::BrokerId;
use crate::security::{AclBinding, QuotaEntity, StoredCredential};
use crate::tokens::StoredToken;

/// A broker's registration epoch: the metadata offset of its `BrokerRegistered` record.
/// A restarted process registers anew and gets a larger one, so anything stamped with
/// the old one (heartbeats, ISR membership) is recognisably stale (KIP-903).
pub type BrokerEpoch = i64;

/// Offset of a record in the metadata log.
pub type MetadataOffset = i64;

/// No leader (`leader` of a partition whose ISR has no eligible member).
pub const NO_LEADER: BrokerId = -1;

/// Where a broker can be reached: its advertised listeners, by listener name
/// (`host:port` each). A new protocol adds a name, never a field: the replicated form
/// ([`EndpointsRecord`]) carries the names older brokers know as fields of their own and
/// every other name in one map (`docs/replication.md` § Metadata records).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "EndpointsRecord", into = "EndpointsRecord")]
pub struct Endpoints {
    listeners: BTreeMap<String, String>,
}

/// The names of the listeners every broker knew before listeners became a map; each has
/// a field of its own in the replicated form, so brokers of that time read them.
pub mod listener_names {
    /// The gRPC client listener (`--listen`, advertised as `--advertise`).
    pub const CLIENT: &str = "client";
    /// Replication and controller traffic between brokers (`--internal-listen`, or the
    /// client listener's address).
    pub const INTERNAL: &str = "internal";
    /// The external gRPC listener (`--external-listen`, `--external-advertise`).
    pub const EXTERNAL: &str = "external";
    /// The Kafka listener (`--kafka-listen`, `--kafka-advertise`).
    pub const KAFKA: &str = "kafka";
    /// The external Kafka listener (`--kafka-external-listen`,
    /// `--kafka-external-advertise`).
    pub const KAFKA_EXTERNAL: &str = "kafka_external";
}

/// Most listeners one broker may advertise.
pub const MAX_LISTENERS: usize = 32;
/// Longest listener name, in characters.
pub const MAX_LISTENER_NAME_CHARS: usize = 64;

impl Endpoints {
    /// A broker's endpoints with its client and internal addresses.
    pub fn new(client: impl Into<String>, internal: impl Into<String>) -> Endpoints {
        Endpoints::default()
            .with(listener_names::CLIENT, client)
            .with(listener_names::INTERNAL, internal)
    }

    /// With the listener `name` advertised at `address`.
    pub fn with(mut self, name: impl Into<String>, address: impl Into<String>) -> Endpoints {
        self.insert(name, address);
        self
    }

    /// Advertises the listener `name` at `address`, replacing its address if it had one.
    pub fn insert(&mut self, name: impl Into<String>, address: impl Into<String>) {
        self.listeners.insert(name.into(), address.into());
    }

    /// Stops advertising the listener `name`.
    pub fn remove(&mut self, name: &str) {
        self.listeners.remove(name);
    }

    /// The address of the listener `name`, if the broker has it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.listeners.get(name).map(String::as_str)
    }

    /// The gRPC client address (empty for a view of a broker that has none, such as a
    /// Kafka listener's view of itself before it registered).
    pub fn client(&self) -> &str {
        self.get(listener_names::CLIENT).unwrap_or_default()
    }

    /// The address other brokers use for replication and controller traffic (empty if
    /// unknown).
    pub fn internal(&self) -> &str {
        self.get(listener_names::INTERNAL).unwrap_or_default()
    }

    /// Every advertised listener: name and address, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.listeners
            .iter()
            .map(|(name, address)| (name.as_str(), address.as_str()))
    }

    /// How many listeners are advertised.
    pub fn len(&self) -> usize {
        self.listeners.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.listeners.is_empty()
    }
}

/// [`Endpoints`] as the metadata log stores it (JSON, inside `BrokerRegistered` and the
/// image's snapshot). `client` and `internal` are required and the three optional
/// names are fields because brokers before the map read exactly these fields (unknown
/// ones, such as `listeners`, they ignore): a rolling upgrade keeps them readable. Any
/// other listener is in `listeners`, which records written before it lack.
#[derive(Serialize, Deserialize)]
struct EndpointsRecord {
    client: String,
    internal: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    external: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kafka: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kafka_external: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    listeners: BTreeMap<String, String>,
}

impl From<EndpointsRecord> for Endpoints {
    fn from(record: EndpointsRecord) -> Endpoints {
        let mut listeners = record.listeners;
        let fields = [
            (listener_names::CLIENT, Some(record.client)),
            (listener_names::INTERNAL, Some(record.internal)),
            (listener_names::EXTERNAL, record.external),
            (listener_names::KAFKA, record.kafka),
            (listener_names::KAFKA_EXTERNAL, record.kafka_external),
        ];
        for (name, address) in fields {
            // An empty client or internal address stood for "none" (a view of a broker
            // not registered yet).
            if let Some(address) = address.filter(|a| !a.is_empty()) {
                listeners.insert(name.to_owned(), address);
            }
        }
        Endpoints { listeners }
    }
}

impl From<Endpoints> for EndpointsRecord {
    fn from(endpoints: Endpoints) -> EndpointsRecord {
        let mut listeners = endpoints.listeners;
        let mut field = |name: &str| listeners.remove(name);
        EndpointsRecord {
            client: field(listener_names::CLIENT).unwrap_or_default(),
            internal: field(listener_names::INTERNAL).unwrap_or_default(),
            external: field(listener_names::EXTERNAL),
            kafka: field(listener_names::KAFKA),
            kafka_external: field(listener_names::KAFKA_EXTERNAL),
            listeners,
        }
    }
}

/// Leader, epochs, replicas and ISR of one partition: what a `PartitionCreated` or
/// `PartitionChanged` record leaves in the image, and what each replica's state machine
/// acts on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRegistration {
    /// Replica brokers; the first is the preferred leader.
    pub replicas: Vec<BrokerId>,
    /// In-sync replicas, a subset of `replicas`.
    pub isr: Vec<BrokerId>,
    /// Current leader, or [`NO_LEADER`].
    pub leader: BrokerId,
    /// Bumped by every leadership change.
    pub leader_epoch: i32,
    /// Bumped by every change to this partition (leader, ISR, replicas).
    pub partition_epoch: i32,
    /// The replicas moving, while a reassignment is in progress (`docs/replication.md`
    /// § Reassignment). Absent from records written before reassignment existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reassignment: Option<Reassignment>,
}

/// A reassignment in progress: `replicas` lists its target first, then `removing`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reassignment {
    /// Target replicas that were not replicas when it started: they catch up, then join
    /// the ISR.
    pub adding: Vec<BrokerId>,
    /// Replicas before it started that the target drops: they leave when it completes.
    pub removing: Vec<BrokerId>,
    /// Bytes per second an adding broker may fetch for moving replicas; `None` is
    /// unthrottled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle_bytes_per_sec: Option<u64>,
}

impl PartitionRegistration {
    pub fn has_leader(&self) -> bool {
        self.leader != NO_LEADER
    }

    pub fn in_isr(&self, broker: BrokerId) -> bool {
        self.isr.contains(&broker)
    }

    /// The replicas this partition is to have: `replicas` without the ones a
    /// reassignment in progress removes.
    pub fn target(&self) -> Vec<BrokerId> {
        match &self.reassignment {
            Some(r) => self
                .replicas
                .iter()
                .copied()
                .filter(|b| !r.removing.contains(b))
                .collect(),
            None => self.replicas.clone(),
        }
    }

    /// The replicas before the reassignment in progress started (all of them if none
    /// is): `replicas` without the ones it adds.
    pub fn original(&self) -> Vec<BrokerId> {
        match &self.reassignment {
            Some(r) => self
                .replicas
                .iter()
                .copied()
                .filter(|b| !r.adding.contains(b))
                .collect(),
            None => self.replicas.clone(),
        }
    }

    /// Whether `broker` is a replica a reassignment in progress is adding.
    pub fn is_adding(&self, broker: BrokerId) -> bool {
        self.reassignment
            .as_ref()
            .is_some_and(|r| r.adding.contains(&broker))
    }
}

/// The newest metadata level this build reads: the level of the newest record types
/// it knows ([`MetadataRecord::level`]). Brokers say it in their registration and
/// heartbeats, and the active controller writes a record only once every unfenced broker
/// reads its level, so a rolling upgrade never hands a broker of the older release a
/// record type it cannot apply (Kafka's `metadata.version`, finalized by itself once the
/// whole cluster runs the release, rather than by an operator's command).
///
/// - 0: every record type up to and including client quotas.
/// - 1: AMQP's exchanges, bindings and queue declarations.
/// - 2: dynamic broker configs.
/// - 3: consumer group configs and AMQP's exchange-to-exchange bindings (one level: both
///   came in the same release).
/// - 4: bindings naming a virtual host's predeclared exchange (`V.amq.topic`): an older
///   broker knows only `/`'s, and would find such a binding's exchange missing.
pub const METADATA_LEVEL: u16 = 4;

/// One record of the metadata log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataRecord {
    /// The first record of a cluster's log.
    ClusterCreated {
        cluster_id: String,
    },
    /// A broker (re)started and registered; it starts fenced. `broker_epoch` is the
    /// offset of this record.
    BrokerRegistered {
        node: BrokerId,
        /// New for every process start.
        incarnation: String,
        broker_epoch: BrokerEpoch,
        endpoints: Endpoints,
        rack: Option<String>,
    },
    /// The broker missed its session, or registered anew: it leads nothing and is in no
    /// ISR except as a last resort (see `docs/replication.md` § Election).
    BrokerFenced {
        node: BrokerId,
        broker_epoch: BrokerEpoch,
    },
    /// A registered broker caught up with metadata and heartbeats.
    BrokerUnfenced {
        node: BrokerId,
        broker_epoch: BrokerEpoch,
    },
    /// Controlled shutdown started: leaderships move away, no new replicas.
    BrokerShuttingDown {
        node: BrokerId,
        broker_epoch: BrokerEpoch,
    },
    TopicCreated {
        name: String,
        topic_id: String,
        /// The keys set on the topic (defaults are not stored).
        configs: std::collections::BTreeMap<String, String>,
    },
    PartitionCreated {
        topic_id: String,
        partition: u32,
        registration: PartitionRegistration,
    },
    /// A new leader, ISR or both; `registration` is the whole new state, with epochs
    /// already bumped.
    PartitionChanged {
        topic_id: String,
        partition: u32,
        registration: PartitionRegistration,
    },
    TopicConfigChanged {
        topic_id: String,
        key: String,
        /// `None` removes the key (back to the default).
        value: Option<String>,
    },
    TopicDeleted {
        topic_id: String,
    },
    /// Producer ids `first..first + count` are `node`'s to hand out to idempotent
    /// producers without asking again; the next block starts after them.
    ProducerIdsAllocated {
        node: BrokerId,
        first: i64,
        count: u32,
    },
    /// The producer named `name` (re)started: it has `producer_id` (a new one if it is
    /// the next unallocated id) at `producer_epoch`, which fences its older instances.
    ProducerInitialized {
        name: String,
        producer_id: i64,
        producer_epoch: i16,
    },
    /// `user`'s credential for `credential.mechanism` is set (created or replaced).
    ScramCredentialUpserted {
        user: String,
        credential: StoredCredential,
    },
    /// `user`'s credential for `mechanism` is removed (the user is gone with its last).
    ScramCredentialDeleted {
        user: String,
        mechanism: String,
    },
    AclCreated {
        acl: AclBinding,
    },
    AclDeleted {
        acl: AclBinding,
    },
    /// An API token is made (`crate::tokens`: its secret's digest, never the secret).
    TokenCreated {
        token: StoredToken,
    },
    /// The token `id` is revoked (forgotten: it is never accepted again).
    TokenRevoked {
        id: String,
    },
    /// `key` of `entity`'s quota is set to `value`, or removed for `None`.
    ClientQuotaAltered {
        entity: QuotaEntity,
        key: String,
        value: Option<u64>,
    },
    /// Dynamic broker config `key` (`crate::broker_configs`) of broker `broker` (`None`:
    /// the cluster's default) is set to `value`, or removed for `None`.
    BrokerConfigChanged {
        broker: Option<BrokerId>,
        key: String,
        value: Option<String>,
    },
    /// Consumer group config `key` (Kafka's group configs `consumer.session.timeout.ms`
    /// and `consumer.heartbeat.interval.ms`) of group `group` is set to `value` (a whole
    /// number of ms), or removed for `None` (the coordinator's setting again). Kafka 4's
    /// `ConfigRecord` of resource type GROUP: every broker answers DescribeConfigs from
    /// it, and the group's coordinator tells the members at their next heartbeat.
    GroupConfigChanged {
        group: String,
        key: String,
        value: Option<String>,
    },
    /// An exchange is declared (`crate::exchanges`); a redeclare with the same settings
    /// writes nothing, one with others is refused.
    ExchangeDeclared {
        exchange: StoredExchange,
    },
    /// The exchange `name` is deleted; its bindings were deleted by the records before.
    ExchangeDeleted {
        name: String,
    },
    /// A binding is made (exchange to queue, routing key, arguments).
    BindingCreated {
        binding: StoredBinding,
    },
    /// A binding is removed (unbound, or its queue or exchange deleted).
    BindingDeleted {
        binding: StoredBinding,
    },
    /// An exchange-to-exchange binding is made (source, destination, key, arguments).
    ExchangeBindingCreated {
        binding: StoredExchangeBinding,
    },
    /// An exchange-to-exchange binding is removed (unbound, or an exchange deleted).
    ExchangeBindingDeleted {
        binding: StoredExchangeBinding,
    },
    /// A queue (the topic of its name) is declared with these flags and arguments; a
    /// redeclare as it is writes nothing, one with others is refused.
    QueueDeclared {
        queue: StoredQueue,
    },
    /// The declaration of queue `name` is forgotten (its topic is deleted next).
    QueueDeclarationDeleted {
        name: String,
    },
}

impl MetadataRecord {
    /// The metadata level a broker must read to apply this record ([`METADATA_LEVEL`]).
    /// Every record type a release adds gets that release's level; fields appended to an
    /// existing record keep its level (older brokers skip fields they do not know). No
    /// wildcard: a new record type does not compile until it is given one.
    pub fn level(&self) -> u16 {
        use crate::exchanges::is_vhost_predeclared;
        match self {
            // Bindings of a virtual host's predeclared exchanges (docs/amqp.md § Virtual
            // hosts): the record type is older, what it names is not.
            MetadataRecord::BindingCreated { binding }
            | MetadataRecord::BindingDeleted { binding }
                if is_vhost_predeclared(&binding.exchange) =>
            {
                4
            }
            MetadataRecord::ExchangeBindingCreated { binding }
            | MetadataRecord::ExchangeBindingDeleted { binding }
                if is_vhost_predeclared(&binding.source)
                    || is_vhost_predeclared(&binding.destination) =>
            {
                4
            }
            MetadataRecord::ClusterCreated { .. }
            | MetadataRecord::BrokerRegistered { .. }
            | MetadataRecord::BrokerFenced { .. }
            | MetadataRecord::BrokerUnfenced { .. }
            | MetadataRecord::BrokerShuttingDown { .. }
            | MetadataRecord::TopicCreated { .. }
            | MetadataRecord::PartitionCreated { .. }
            | MetadataRecord::PartitionChanged { .. }
            | MetadataRecord::TopicConfigChanged { .. }
            | MetadataRecord::TopicDeleted { .. }
            | MetadataRecord::ProducerIdsAllocated { .. }
            | MetadataRecord::ProducerInitialized { .. }
            | MetadataRecord::ScramCredentialUpserted { .. }
            | MetadataRecord::ScramCredentialDeleted { .. }
            | MetadataRecord::AclCreated { .. }
            | MetadataRecord::AclDeleted { .. }
            | MetadataRecord::TokenCreated { .. }
            | MetadataRecord::TokenRevoked { .. }
            | MetadataRecord::ClientQuotaAltered { .. } => 0,
            // AMQP's exchanges, bindings and queue declarations (docs/amqp.md).
            MetadataRecord::ExchangeDeclared { .. }
            | MetadataRecord::ExchangeDeleted { .. }
            | MetadataRecord::BindingCreated { .. }
            | MetadataRecord::BindingDeleted { .. }
            | MetadataRecord::QueueDeclared { .. }
            | MetadataRecord::QueueDeclarationDeleted { .. } => 1,
            // Dynamic broker configs (docs/kafka-compatibility.md).
            MetadataRecord::BrokerConfigChanged { .. } => 2,
            // Consumer group configs (docs/consumer-groups.md § Group configs).
            MetadataRecord::GroupConfigChanged { .. } => 3,
            // Exchange-to-exchange bindings (docs/amqp.md).
            MetadataRecord::ExchangeBindingCreated { .. }
            | MetadataRecord::ExchangeBindingDeleted { .. } => 3,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quorum::MetadataEntry;

    /// A `BrokerRegistered` entry of the metadata log as brokers before the listener map
    /// wrote it (serde_json of a `MetadataEntry`, as `log_store.rs` stores it), with every
    /// per-protocol field.
    const OLD_REGISTRATION: &str = r#"{"Records":[{"BrokerRegistered":{"node":1,"incarnation":"7f0c3c52-6a7e-4b8e-9f0a-2f1d5c9e8b11","broker_epoch":12,"endpoints":{"client":"weir-1:9292","internal":"weir-1:9392","external":"localhost:19292","kafka":"weir-1:9092","kafka_external":"localhost:19092"},"rack":"zone-a"}}]}"#;

    /// The same from a broker with only its client and internal listeners.
    const OLD_MINIMAL: &str = r#"{"client":"127.0.0.1:9292","internal":"127.0.0.1:9292"}"#;

    fn endpoints_of(entry: &MetadataEntry) -> &Endpoints {
        match entry {
            MetadataEntry::Records(records) => match &records[0] {
                MetadataRecord::BrokerRegistered { endpoints, .. } => endpoints,
                other => panic!("not a registration: {other:?}"),
            },
            other => panic!("not records: {other:?}"),
        }
    }

    #[test]
    fn a_binding_of_a_vhosts_predeclared_exchange_waits_for_level_4() {
        let binding = |exchange: &str| crate::exchanges::StoredBinding {
            exchange: exchange.into(),
            queue: "sales.q".into(),
            routing_key: "k".into(),
            arguments: Default::default(),
        };
        let level = |exchange: &str| {
            MetadataRecord::BindingCreated {
                binding: binding(exchange),
            }
            .level()
        };
        assert_eq!(level("amq.topic"), 1);
        assert_eq!(level("sales.logs"), 1);
        assert_eq!(level("sales.amq.topic"), 4);
        assert_eq!(METADATA_LEVEL, 4);
    }

    #[test]
    fn an_old_registration_reads_as_the_same_listener_map() {
        let entry: MetadataEntry = serde_json::from_str(OLD_REGISTRATION).unwrap();
        let endpoints = endpoints_of(&entry);
        let map: Vec<(&str, &str)> = endpoints.iter().collect();
        assert_eq!(
            map,
            [
                ("client", "weir-1:9292"),
                ("external", "localhost:19292"),
                ("internal", "weir-1:9392"),
                ("kafka", "weir-1:9092"),
                ("kafka_external", "localhost:19092"),
            ]
        );
        assert_eq!(endpoints.client(), "weir-1:9292");
        assert_eq!(endpoints.internal(), "weir-1:9392");

        let minimal: Endpoints = serde_json::from_str(OLD_MINIMAL).unwrap();
        assert_eq!(minimal, Endpoints::new("127.0.0.1:9292", "127.0.0.1:9292"));
        assert_eq!(minimal.get(listener_names::KAFKA), None);
    }

    #[test]
    fn a_new_registration_writes_the_old_fields_so_old_brokers_read_it() {
        // Written now, the five names an old broker knows are its fields, byte for byte
        // as it wrote them: an old broker in the same cluster reads this record.
        let entry: MetadataEntry = serde_json::from_str(OLD_REGISTRATION).unwrap();
        assert_eq!(serde_json::to_string(&entry).unwrap(), OLD_REGISTRATION);

        // A listener an old broker has no field for goes in `listeners`, which it skips.
        let endpoints = Endpoints::new("weir-1:9292", "weir-1:9392")
            .with(listener_names::KAFKA, "weir-1:9092")
            .with("amqp", "weir-1:5672");
        let json = serde_json::to_value(&endpoints).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "client": "weir-1:9292",
                "internal": "weir-1:9392",
                "kafka": "weir-1:9092",
                "listeners": { "amqp": "weir-1:5672" },
            })
        );
        let back: Endpoints = serde_json::from_value(json).unwrap();
        assert_eq!(back, endpoints);
        assert_eq!(back.get("amqp"), Some("weir-1:5672"));
    }
}
