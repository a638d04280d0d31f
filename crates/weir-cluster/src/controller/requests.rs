//! What the active controller is asked ([`ControllerRequest`]), what it answers
//! ([`ControllerReply`]), and why it refuses ([`ControllerError`], named by the reasons
//! of `docs/replication.md` § 1).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::elect_leaders::{ElectionKind, ElectionResult};
use super::reassign::PartitionMove;
#[cfg(doc)]
use super::records::METADATA_LEVEL;
use super::records::{
    BrokerEpoch, Endpoints, MetadataOffset, MetadataRecord, PartitionRegistration,
};
use crate::error::{ConfigError, TopicNameError};
use crate::exchanges::{
    ExchangeError, StoredBinding, StoredExchange, StoredExchangeBinding, StoredQueue,
};
use crate::partition::BrokerId;
use crate::security::{AclBinding, AclFilter, QuotaEntity, StoredCredential};
use crate::tokens::StoredToken;

/// Longest incarnation id a broker may register with (a UUID string is 36).
pub const MAX_INCARNATION_CHARS: usize = 64;
/// Longest advertised endpoint (`host:port`; a DNS name is at most 253 characters).
pub const MAX_ENDPOINT_CHARS: usize = 300;
/// Longest rack name.
pub const MAX_RACK_CHARS: usize = 128;
/// Longest cluster id (a UUID string is 36).
pub const MAX_CLUSTER_ID_CHARS: usize = 64;
/// Longest producer name (Kafka's `transactional.id`).
pub const MAX_PRODUCER_NAME_CHARS: usize = 255;
/// Most named producers the metadata keeps (each is a few dozen bytes of every image).
pub const MAX_NAMED_PRODUCERS: usize = 100_000;

/// One request to the active controller. Serde, so the broker can carry it to the active
/// controller as bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerRequest {
    /// Written by the active controller of a new cluster (its own data directory's
    /// cluster id) before anything else; a no-op once the cluster exists with that id.
    CreateCluster {
        cluster_id: String,
    },
    /// A broker (re)started and asks for a broker epoch.
    RegisterBroker {
        node: BrokerId,
        /// New for every process start.
        incarnation: String,
        endpoints: Endpoints,
        rack: Option<String>,
        /// The cluster id stamped in the broker's data directory.
        cluster_id: String,
        /// The newest metadata level its release reads ([`METADATA_LEVEL`]); a broker
        /// from before levels sends none, read as 0.
        #[serde(default)]
        metadata_level: u16,
    },
    /// Every `heartbeat_interval_ms` from every registered broker: it is alive, says
    /// how far its metadata is, and may ask to stop.
    BrokerHeartbeat {
        node: BrokerId,
        broker_epoch: BrokerEpoch,
        /// The offset of the last metadata record the broker applied (-1 if none).
        metadata_offset: MetadataOffset,
        /// Controlled shutdown: move my leaderships away, then tell me to stop.
        want_shutdown: bool,
        /// As in `RegisterBroker`.
        #[serde(default)]
        metadata_level: u16,
    },
    CreateTopic {
        name: String,
        partitions: u32,
        /// 0 for the controller's default.
        replication_factor: u32,
        configs: BTreeMap<String, String>,
    },
    /// Grows `topic` to `total` partitions.
    CreatePartitions {
        topic: String,
        total: u32,
    },
    /// Creates a topic whose replicas the client placed (Kafka's CreateTopics with
    /// `assignments`): partition `i` on `assignments[i]`, the preferred leader first.
    CreateTopicAssigned {
        name: String,
        assignments: Vec<Vec<BrokerId>>,
        configs: BTreeMap<String, String>,
    },
    /// Grows `topic` by one partition per assignment, each on the brokers it lists (the
    /// preferred leader first): Kafka's CreatePartitions with `assignments`.
    CreatePartitionsAssigned {
        topic: String,
        assignments: Vec<Vec<BrokerId>>,
    },
    DeleteTopic {
        name: String,
    },
    /// Sets `key` to `value`, or back to its default when `value` is `None`.
    AlterTopicConfig {
        topic: String,
        key: String,
        value: Option<String>,
    },
    /// A leader proposes a new ISR for one of its partitions.
    AlterPartition {
        /// The sender, which must lead the partition.
        node: BrokerId,
        broker_epoch: BrokerEpoch,
        topic_id: String,
        partition: u32,
        /// The sender's view of the current epochs.
        leader_epoch: i32,
        partition_epoch: i32,
        /// Every member with the broker epoch the leader knows it by.
        new_isr: Vec<(BrokerId, BrokerEpoch)>,
    },
    /// A leader whose log failed and was reopened short of where it ended gives up the
    /// leadership it held at `leader_epoch` (`docs/replication.md` § A replica's log
    /// fails): it must not append at that epoch again.
    ResignLeadership {
        node: BrokerId,
        broker_epoch: BrokerEpoch,
        topic_id: String,
        partition: u32,
        leader_epoch: i32,
    },
    /// Moves the replicas of partitions of `topic` (`docs/replication.md` § Reassignment):
    /// all the moves are accepted, or none.
    ReassignPartitions {
        topic: String,
        moves: Vec<PartitionMove>,
        /// Bytes per second each adding broker may fetch for these moves; `None` for no
        /// throttle.
        throttle_bytes_per_sec: Option<u64>,
    },
    /// Elects leaders of the partitions named, by topic (`None`: of every partition):
    /// Kafka's ElectLeaders.
    ElectLeaders {
        kind: ElectionKind,
        partitions: Option<Vec<(String, Vec<u32>)>>,
    },
    /// A broker has handed out its block of producer ids and asks for the next.
    AllocateProducerIds {
        node: BrokerId,
        broker_epoch: BrokerEpoch,
    },
    /// A producer that names itself (Kafka's `transactional.id`) starts: it gets the id
    /// it had, at the next epoch, or a new id.
    InitProducer {
        name: String,
    },
    /// Sets `user`'s SCRAM credential for its mechanism (creating the user).
    UpsertScramCredential {
        user: String,
        credential: StoredCredential,
    },
    /// Removes `user`'s credential for `mechanism`, or all of them (the user) for `None`.
    DeleteScramCredential {
        user: String,
        mechanism: Option<String>,
    },
    /// Adds ACL bindings; ones that exist already are left as they are. All are valid, or
    /// none is added.
    CreateAcls {
        acls: Vec<AclBinding>,
    },
    /// Removes the bindings each filter selects.
    DeleteAcls {
        filters: Vec<AclFilter>,
    },
    /// Makes an API token for an existing user; the owner's tokens expired by the
    /// token's `created_ms` are revoked with it.
    CreateToken {
        token: StoredToken,
    },
    /// Revokes the API token `id`.
    RevokeToken {
        id: String,
    },
    /// Sets (or, for `None`, removes) quota keys of entities: all valid, or none changes.
    AlterClientQuotas {
        alterations: Vec<(QuotaEntity, String, Option<u64>)>,
    },
    /// Changes dynamic broker configs (`crate::broker_configs`) of broker `broker`
    /// (`None`: the cluster's default): each key set to its value or removed (`None`);
    /// with `replace`, every key not named is removed too (Kafka's AlterConfigs). All
    /// valid, or none changes.
    AlterBrokerConfigs {
        broker: Option<BrokerId>,
        changes: Vec<(String, Option<String>)>,
        replace: bool,
    },
    /// Changes consumer group configs of group `group` (`MetadataRecord::GroupConfigChanged`):
    /// each key set to its value or removed (`None`); with `replace`, every key not named
    /// is removed too (Kafka's AlterConfigs). The group's settings that result are checked
    /// against `bounds`, the asking broker's coordinator settings. All valid, or none
    /// changes.
    AlterGroupConfigs {
        group: String,
        changes: Vec<(String, Option<String>)>,
        replace: bool,
        bounds: super::group_configs::GroupConfigBounds,
    },
    /// Declares an exchange (`crate::exchanges`): nothing changes if it exists with the
    /// same settings; refused if with others.
    DeclareExchange {
        exchange: StoredExchange,
    },
    /// Deletes an exchange and its bindings (nothing if there is none); `if_unused`:
    /// refused while it has bindings.
    DeleteExchange {
        name: String,
        if_unused: bool,
    },
    /// Binds a queue to an exchange (nothing if the binding exists).
    Bind {
        binding: StoredBinding,
    },
    /// Removes a binding (nothing if there is none).
    Unbind {
        binding: StoredBinding,
    },
    /// Records a queue's declaration (its topic exists): nothing changes if it is
    /// declared as asked; refused if with other settings.
    DeclareQueue {
        queue: StoredQueue,
    },
    /// Binds an exchange to an exchange (nothing if the binding exists).
    BindExchange {
        binding: StoredExchangeBinding,
    },
    /// Removes an exchange-to-exchange binding (nothing if there is none).
    UnbindExchange {
        binding: StoredExchangeBinding,
    },
}

/// An accepted request: the records to commit and the reply to send once they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Outcome {
    /// Records to commit, in order; empty when nothing changes.
    pub(super) records: Vec<MetadataRecord>,
    pub(super) reply: ControllerReply,
}

/// The answer to a request, true once the records handed out with it are committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControllerReply {
    /// Nothing was written; the error says why (the reasons of the spec).
    Refused(ControllerError),
    ClusterCreated,
    /// The broker's epoch (its registration's offset); it starts fenced.
    Registered {
        broker_epoch: BrokerEpoch,
    },
    Heartbeat {
        /// Still fenced: not caught up with metadata, or its session expired.
        fenced: bool,
        /// Controlled shutdown is done (it leads nothing): the broker may exit.
        should_shutdown: bool,
        /// The image's next offset once this answer's records are applied: every
        /// decision the controller made before answering lies below it. A broker whose
        /// lease lapsed leads again only once its own metadata reaches it, so that it
        /// never leads from an image older than a leadership moved away meanwhile. `0`
        /// from a controller that predates the field (it waits for nothing then).
        through: MetadataOffset,
    },
    TopicCreated {
        topic_id: String,
    },
    PartitionsCreated,
    TopicDeleted {
        topic_id: String,
    },
    TopicConfigAltered,
    /// The partition as it now stands (unchanged if the proposed ISR was the current one,
    /// or the resigned leadership had already ended).
    PartitionAltered(PartitionRegistration),
    /// Each moved partition as it now stands (a move already in sync is complete).
    PartitionsReassigned(Vec<(u32, PartitionRegistration)>),
    /// Each partition's election, in the order asked (of every partition: only those
    /// whose election was needed).
    LeadersElected(Vec<ElectionResult>),
    /// Ids `first..first + count` are the broker's to hand out.
    ProducerIds {
        first: i64,
        count: u32,
    },
    ProducerInitialized {
        producer_id: i64,
        producer_epoch: i16,
    },
    CredentialUpserted,
    /// The mechanisms whose credentials were removed.
    CredentialsDeleted(Vec<String>),
    AclsCreated,
    /// For each filter, the bindings it removed.
    AclsDeleted(Vec<Vec<AclBinding>>),
    ClientQuotasAltered,
    BrokerConfigsAltered,
    GroupConfigsAltered,
    TokenCreated,
    /// The revoked token, as it was.
    TokenRevoked(StoredToken),
    /// An exchange or binding request was carried out once the image's next offset is
    /// `through` (the records before it applied); nothing was written if it already is.
    ExchangesChanged {
        through: MetadataOffset,
    },
}

/// Why an ISR member an AlterPartition adds cannot join.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum Ineligible {
    #[error("is not a registered broker")]
    NotRegistered,
    #[error("is fenced")]
    Fenced,
    #[error("is shutting down")]
    ShuttingDown,
    #[error("has broker epoch {current}, not {given} (it restarted)")]
    StaleBrokerEpoch {
        given: BrokerEpoch,
        current: BrokerEpoch,
    },
}

/// Why the controller refused a request. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControllerError {
    /// Retriable: the active controller has not created the cluster yet.
    #[error("the cluster has no id yet (its first controller has not created it); retry")]
    ClusterNotCreated,
    /// The request would write a record of metadata level `needed`, which these
    /// unfenced brokers' release does not read (or has not said it reads since this
    /// controller became active): a rolling upgrade is under way.
    #[error(
        "this needs metadata level {needed}, which broker(s) {behind:?} do not read: they \
         run an older release (finish the rolling upgrade first) or have not heartbeated \
         to this controller yet (retry)"
    )]
    MetadataLevelTooLow { needed: u16, behind: Vec<BrokerId> },
    #[error("cluster id {0:?} must have 1 to {MAX_CLUSTER_ID_CHARS} characters")]
    InvalidClusterId(String),
    /// INCONSISTENT_CLUSTER_ID: the broker's data directory belongs to another cluster.
    #[error("the broker belongs to cluster {given:?}, but this is cluster {expected:?}")]
    InconsistentClusterId { given: String, expected: String },
    /// STALE_BROKER_EPOCH: the broker must register again.
    #[error("broker {node} sent broker epoch {given}, but {}", stale_hint(.current))]
    StaleBrokerEpoch {
        node: BrokerId,
        given: BrokerEpoch,
        current: Option<BrokerEpoch>,
    },
    /// FENCED_LEADER_EPOCH: the sender's metadata is behind.
    #[error("partition {partition} of topic {topic_id} is at leader epoch {current}, not {given}")]
    FencedLeaderEpoch {
        topic_id: String,
        partition: u32,
        given: i32,
        current: i32,
    },
    /// NOT_LEADER: only the leader proposes ISR changes.
    #[error(
        "broker {node} does not lead partition {partition} of topic {topic_id} (the leader is {leader})"
    )]
    NotLeader {
        topic_id: String,
        partition: u32,
        node: BrokerId,
        leader: BrokerId,
    },
    /// INVALID_UPDATE_VERSION: the partition changed since the sender's view.
    #[error(
        "partition {partition} of topic {topic_id} is at partition epoch {current}, not {given}"
    )]
    InvalidUpdateVersion {
        topic_id: String,
        partition: u32,
        given: i32,
        current: i32,
    },
    /// INELIGIBLE_REPLICA: a member the new ISR adds cannot join it.
    #[error(
        "replica {replica} of partition {partition} of topic {topic_id} cannot join the ISR: it {reason}"
    )]
    IneligibleReplica {
        topic_id: String,
        partition: u32,
        replica: BrokerId,
        reason: Ineligible,
    },
    /// A proposed ISR that is not a set of replicas holding the leader.
    #[error(
        "invalid ISR {isr:?} for partition {partition} of topic {topic_id} (replicas {replicas:?}): {reason}"
    )]
    InvalidIsr {
        topic_id: String,
        partition: u32,
        isr: Vec<BrokerId>,
        replicas: Vec<BrokerId>,
        reason: &'static str,
    },
    /// A reassignment that cannot start: a bad target, or nothing to cancel.
    #[error("cannot reassign partition {partition} of topic {topic:?}: {reason}")]
    InvalidReassignment {
        topic: String,
        partition: u32,
        reason: String,
    },
    /// INVALID_REPLICA_ASSIGNMENT: a client's placement of a new partition's replicas that
    /// cannot be made (a broker not registered, one listed twice, replica counts that
    /// differ).
    #[error("invalid replica assignment for partition {partition} of topic {topic:?}: {reason}")]
    InvalidReplicaAssignment {
        topic: String,
        partition: u32,
        reason: String,
    },
    #[error("{requested} partitions in one election; at most {max}")]
    TooManyElections { requested: usize, max: usize },
    /// TOPIC_EXISTS.
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    /// UNKNOWN_TOPIC, by name.
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    /// UNKNOWN_TOPIC, by id.
    #[error("unknown topic id {0:?}")]
    UnknownTopicId(String),
    #[error("topic {topic_id} has no partition {partition} (it has {count})")]
    UnknownPartition {
        topic_id: String,
        partition: u32,
        count: u32,
    },
    /// INVALID_REPLICATION_FACTOR.
    #[error(
        "replication factor {replication_factor} cannot be placed: {brokers} brokers can take a replica (unfenced, not shutting down)"
    )]
    InvalidReplicationFactor {
        replication_factor: u32,
        brokers: usize,
    },
    #[error("partition count {count} is outside 1..={max}")]
    InvalidPartitionCount { count: u32, max: u32 },
    #[error(
        "topic {topic:?} has {current} partitions; the new count {requested} must be larger (partitions are never removed)"
    )]
    PartitionCountNotIncreased {
        topic: String,
        current: u32,
        requested: u32,
    },
    #[error(transparent)]
    InvalidTopicName(#[from] TopicNameError),
    #[error(transparent)]
    InvalidConfig(#[from] ConfigError),
    /// A registration the controller cannot record (bad node id, empty or oversized
    /// incarnation, endpoint or rack).
    #[error("invalid registration of broker {node}: {reason}")]
    InvalidRegistration { node: BrokerId, reason: String },
    #[error("producer name {0:?} must have 1 to {MAX_PRODUCER_NAME_CHARS} characters")]
    InvalidProducerName(String),
    #[error(
        "the cluster already knows {MAX_NAMED_PRODUCERS} named producers; start producers without a name"
    )]
    TooManyNamedProducers,
    /// A credential or user name that cannot be stored.
    #[error("invalid credential for user {user:?}: {reason}")]
    InvalidCredential { user: String, reason: String },
    /// RESOURCE_NOT_FOUND: no such user, or no credential of that mechanism.
    #[error("user {user:?} has no {what}")]
    UnknownCredential { user: String, what: String },
    #[error(
        "the cluster already has {} users; delete some first",
        crate::security::MAX_USERS
    )]
    TooManyUsers,
    /// INVALID_REQUEST: a binding that cannot be stored.
    #[error("invalid ACL ({acl}): {reason}")]
    InvalidAcl { acl: String, reason: String },
    #[error(
        "{requested} ACL bindings would pass the cluster's limit of {}",
        crate::security::MAX_ACLS
    )]
    TooManyAcls { requested: usize },
    /// INVALID_REQUEST: a quota the broker cannot enforce as given.
    #[error("invalid quota for {entity}: {reason}")]
    InvalidQuota { entity: String, reason: String },
    #[error("one request may name at most {max} ACL bindings or filters, not {given}", max = crate::security::MAX_ACLS_PER_REQUEST)]
    TooManyAclsInRequest { given: usize },
    /// A token that cannot be stored (the reason says why).
    #[error("invalid API token: {0}")]
    InvalidToken(String),
    /// RESOURCE_NOT_FOUND: no API token with this id.
    #[error("there is no API token {id:?} (never made, or revoked)")]
    UnknownToken { id: String },
    #[error("{what} has {max} API tokens already; revoke some first")]
    TooManyTokens { what: String, max: usize },
    /// An exchange or binding change refused (`crate::exchanges`).
    #[error(transparent)]
    Exchange(ExchangeError),
    /// A bug in the injected topic id source: it keeps handing out ids in use.
    #[error("the topic id source returned {draws} ids in use or empty (last {last:?})")]
    TopicIdsExhausted { draws: usize, last: String },
}

fn stale_hint(current: &Option<BrokerEpoch>) -> String {
    match current {
        Some(c) => format!("its registration has epoch {c}; register again"),
        None => "it is not registered; register first".to_string(),
    }
}
