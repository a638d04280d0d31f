//! The metadata records: every change to cluster metadata is one of these, appended to
//! the quorum's log and applied in order to a [`MetadataImage`](super::MetadataImage).
//! See `docs/replication.md` § Metadata records.
//!
//! Each record carries what it sets (new leader, new ISR, new epochs), never a delta
//! that depends on unrelated records, so applying the log in order is the only rule.

use serde::{Deserialize, Serialize};

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

/// Where a broker can be reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoints {
    /// `host:port` clients are told (the advertised client listener).
    pub client: String,
    /// `host:port` other brokers use for replication and controller traffic.
    pub internal: String,
    /// `host:port` told to clients of the external listener (`--external-advertise`):
    /// clients on another network, such as a container cluster's host. Absent in
    /// records written before it existed, and for brokers with one client listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<String>,
    /// `host:port` told to Kafka clients (`--kafka-advertise`): what Metadata and
    /// FindCoordinator answers name. Absent in records written before it existed, and
    /// for brokers with no Kafka listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<String>,
    /// `host:port` told to Kafka clients of the external Kafka listener
    /// (`--kafka-external-advertise`): clients on another network, such as a container
    /// cluster's host. Absent in records written before it existed, and for brokers with
    /// one Kafka listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka_external: Option<String>,
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
}
