//! The protocol-neutral broker core: what a Weir broker does for a client, whatever
//! protocol the client speaks. Each listener (gRPC, Kafka) is an adapter over it that
//! decodes a request, calls the core, and encodes the answer.
//!
//! - [`Broker`]: the state every operation shares (the topic registry, the group
//!   coordinator once it is up, metrics, the shutdown signal, the configured limits).
//! - [`context`]: the [`RequestContext`] each operation takes (listener, peer, client id,
//!   principal), on which authorisation is checked once for every protocol.
//! - [`authz`]: authorisation (Kafka's ACL model, checked here for every protocol);
//!   [`audit`]: the rate-limited audit lines of denials and failed authentications;
//!   [`authn`]: password checks off the runtime threads, capped and cached, so wrong
//!   passwords in a loop cannot take the broker's cores.
//! - [`error`]: [`BrokerError`], one error type whose [`Reason`] every adapter maps to
//!   its own codes.
//! - [`limits`]: the named limits of a request, one place for every protocol;
//!   [`budget`]: the broker-wide caps over every client (connections, request bytes in
//!   flight, consume streams), taken from by every listener.
//! - [`listener_kit`]: the accept loop every connection-oriented listener (Kafka, AMQP)
//!   shares: connection slots, TLS and client certificates through [`authn`], refusal
//!   while cut off, the close signal, per-listener connection counters.
//! - [`produce`], [`fetch`], [`offsets`]: the data path (records pass through as the
//!   RecordBatch v2 bytes the producer sent; nothing here re-encodes them).
//! - [`producers`]: producer ids for idempotent producers, and the producers a partition
//!   remembers.
//! - [`transactions`]: the commit and abort markers that end a transaction on its
//!   partitions (Kafka's WriteTxnMarkers), for the transaction coordinator; reads at an
//!   isolation level are [`fetch`]'s and [`offsets`]'s.
//! - [`metadata`], [`topics`], [`configs`]: the cluster and topics as clients see them;
//!   creating topics (on first use too: `auto.create.topics.enable`) and partitions;
//!   topic configs (describe, alter, replace, incremental) and the broker's settings.
//! - [`records`]: DeleteRecords (moving a partition's log start).
//! - [`replicas`]: the replicas this broker hosts, leader or follower, as an operator
//!   looks at them (offsets, segments and bytes on disk; read-only, for the console).
//! - [`cluster_reports`]: answers about the whole cluster that each broker knows its part
//!   of (the groups it coordinates, its disk use), gathered from every broker.
//! - [`epochs`]: where a leader epoch ended (OffsetsForLeaderEpoch).
//! - [`groups`]: consumer groups: finding a group's coordinator, membership (KIP-848
//!   heartbeats and the classic join/sync protocol), committed offsets, administration.
//! - [`shares`]: share groups (queues): finding a share group's coordinator, share fetch
//!   (acknowledge, then acquire), acknowledge, describe.
//! - [`share_admin`]: the administration of share groups (list, describe, start
//!   offsets: describe, alter, delete; delete groups) at their coordinators.
//! - [`group_configs`]: a group's configs on Kafka's GROUP resource: the consumer-group
//!   keys (KIP-848, at the group coordinator) and the share-group keys ([`share_configs`]).
//! - [`share_configs`]: a share group's settings under Kafka's group-config names
//!   (`share.auto.offset.reset`, ...), described and altered at its coordinator.
//! - [`share_members`]: share-group membership (KIP-932's ShareGroupHeartbeat): members,
//!   their subscriptions and assignments, kept in memory at the group's coordinator.
//! - [`security_admin`]: users (SCRAM credentials) and ACLs, administered; [`tokens`]:
//!   API tokens (made, listed, revoked), checked when presented by [`authn`].
//! - [`quotas`]: client quotas (produce and fetch byte rates and request time per user
//!   and client id), enforced by holding requests back; [`quotas::Measured`] times a
//!   request's handling on the broker's threads.
//! - [`metrics`]: counters per topic and latency per operation, rendered for Prometheus
//!   and read as numbers (the console's live charts).
//!
//! Architecture invariant: this crate knows no protocol (no tonic, prost, `weir-proto`,
//! HTTP or Kafka message types) and reaches storage only through `weir-cluster` (it does
//! not depend on `weir-log`). Its answers are domain types; turning them into bytes on a
//! wire is an adapter's job.

pub mod audit;
pub mod authn;
pub mod authz;
pub mod budget;
pub mod cluster_reports;
pub mod configs;
pub mod context;
pub mod epochs;
pub mod error;
pub mod exchanges;
pub mod fetch;
pub mod group_configs;
pub mod groups;
pub mod limits;
pub mod listener_kit;
pub mod metadata;
pub mod metrics;
pub mod offsets;
pub mod produce;
pub mod producers;
pub mod quotas;
pub mod records;
pub mod replicas;
pub mod security_admin;
pub mod share_admin;
pub mod share_configs;
pub mod share_members;
pub mod shares;
pub mod tokens;
pub mod topics;
pub mod transactions;

use std::sync::{Arc, OnceLock};

use tokio::sync::watch;
use weir_cluster::group::GroupCoordinator;
use weir_cluster::security::{CLUSTER_RESOURCE_NAME, Operation, ResourceType};
use weir_cluster::share::ShareCoordinator;
use weir_cluster::txn::TransactionCoordinator;
use weir_cluster::{Topic, TopicRegistry};

pub use authz::{Authorizer, SecurityConfig};
pub use context::{Listener, Principal, Protocol, RequestContext};
pub use error::{BrokerError, Reason, RecordError};
pub use metrics::{LATENCY_BUCKETS_SECONDS, Metrics, RpcLatency, RpcTimer, TopicTraffic};
pub use topics::TopicDefaults;
/// The ACL model and credential records (weir-cluster's), for adapters that speak them.
pub use weir_cluster::security;

/// What every operation of the core shares.
#[derive(Debug)]
pub struct Broker {
    registry: Arc<TopicRegistry>,
    /// Set once this broker is registered and unfenced (the coordinator creates
    /// `__consumer_offsets`, which needs a controller and a broker to place it on).
    groups: OnceLock<Arc<GroupCoordinator>>,
    /// Set once this broker is registered and unfenced, as `groups`.
    shares: OnceLock<Arc<ShareCoordinator>>,
    /// The share groups whose membership this broker coordinates.
    share_members: share_members::ShareMembers,
    /// Carries share fetches to a coordinator on another broker; set by the server.
    share_forwarder: OnceLock<Arc<dyn shares::ShareForwarder>>,
    /// Carries produces to a partition's leader on another broker, for adapters whose
    /// clients do not route by leader; set by the server.
    produce_forwarder: OnceLock<Arc<dyn produce::ProduceForwarder>>,
    /// Set once this broker is registered and unfenced, as `groups`.
    transactions: OnceLock<Arc<TransactionCoordinator>>,
    /// Carries produce-time transaction checks to a coordinator on another broker; set
    /// by the server.
    pub(crate) txn_verifier: OnceLock<Arc<dyn transactions::TxnVerifier>>,
    /// Asks other brokers for their part of a cluster-wide answer; set by the server.
    peer_reports: OnceLock<Arc<dyn cluster_reports::PeerReports>>,
    metrics: Arc<Metrics>,
    /// Turns true when shutdown starts; long-lived calls watch it.
    shutdown: watch::Receiver<bool>,
    /// Largest request accepted, in bytes (`max_request_bytes`).
    max_request_bytes: usize,
    topic_defaults: TopicDefaults,
    /// This broker's Kafka listeners, as DescribeConfigs of the broker names them; set
    /// by the server once it has bound them.
    kafka_listeners: OnceLock<configs::KafkaListeners>,
    authorizer: Authorizer,
    quotas: Arc<quotas::Quotas>,
}

impl Broker {
    pub fn new(
        registry: Arc<TopicRegistry>,
        shutdown: watch::Receiver<bool>,
        max_request_bytes: usize,
        topic_defaults: TopicDefaults,
        security: SecurityConfig,
    ) -> Broker {
        Broker {
            authorizer: Authorizer::new(security.clone()),
            quotas: Arc::new(quotas::Quotas::new(security.quota_windows)),
            registry,
            groups: OnceLock::new(),
            shares: OnceLock::new(),
            share_members: share_members::ShareMembers::default(),
            share_forwarder: OnceLock::new(),
            produce_forwarder: OnceLock::new(),
            txn_verifier: OnceLock::new(),
            peer_reports: OnceLock::new(),
            transactions: OnceLock::new(),
            metrics: Arc::new(Metrics::default()),
            shutdown,
            max_request_bytes,
            topic_defaults,
            kafka_listeners: OnceLock::new(),
        }
    }

    /// Records this broker's Kafka listeners (once; later calls are ignored).
    pub fn set_kafka_listeners(&self, listeners: configs::KafkaListeners) {
        let _ = self.kafka_listeners.set(listeners);
    }

    /// This broker's Kafka listeners (empty before the server set them, or without a
    /// Kafka listener).
    pub fn kafka_listeners(&self) -> configs::KafkaListeners {
        self.kafka_listeners.get().cloned().unwrap_or_default()
    }

    /// What topics created on first use or without a size get.
    pub fn topic_defaults(&self) -> TopicDefaults {
        self.topic_defaults
    }

    pub fn registry(&self) -> &Arc<TopicRegistry> {
        &self.registry
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// A receiver of the shutdown signal (true once shutdown has started).
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }

    /// Whether shutdown has started.
    pub fn is_stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Whether this broker is cut off from the controller quorum (its controller session
    /// lapsed): its leaders have stepped aside and its metadata may be stale, so it can
    /// serve clients nothing until the session is renewed (weir-cluster's lifecycle.rs).
    pub fn is_cut_off(&self) -> bool {
        self.registry.cluster().broker_state().borrow().lease_lapsed
    }

    /// Resolves once this broker is cut off ([`Broker::is_cut_off`]), at once if it is;
    /// never if the cluster node is gone.
    pub async fn until_cut_off(&self) {
        let mut state = self.registry.cluster().broker_state();
        if state.wait_for(|s| s.lease_lapsed).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// This broker's node id.
    pub fn node_id(&self) -> i32 {
        self.registry.broker_id()
    }

    /// Largest request accepted, in bytes.
    pub fn max_request_bytes(&self) -> usize {
        self.max_request_bytes
    }

    /// Makes the group coordinator available (once; later calls are ignored).
    pub fn set_groups(&self, groups: Arc<GroupCoordinator>) {
        let _ = self.groups.set(groups);
    }

    /// The group coordinator, if it is up yet.
    pub fn groups_if_up(&self) -> Option<&Arc<GroupCoordinator>> {
        self.groups.get()
    }

    /// The consumer group coordinator; COORDINATOR_NOT_AVAILABLE while this broker is
    /// still joining its cluster (it starts once the broker is unfenced).
    pub fn groups(&self) -> Result<&Arc<GroupCoordinator>, BrokerError> {
        self.groups.get().ok_or_else(|| {
            BrokerError::new(
                Reason::CoordinatorNotAvailable,
                "consumer groups are not available yet: this broker is still joining its cluster; retry shortly",
            )
        })
    }

    /// Makes the share coordinator available (once; later calls are ignored).
    pub fn set_shares(&self, shares: Arc<ShareCoordinator>) {
        let _ = self.shares.set(shares);
    }

    /// The share group coordinator; COORDINATOR_NOT_AVAILABLE while this broker is still
    /// joining its cluster.
    pub fn shares(&self) -> Result<&Arc<ShareCoordinator>, BrokerError> {
        self.shares.get().ok_or_else(|| {
            BrokerError::new(
                Reason::CoordinatorNotAvailable,
                "share groups are not available yet: this broker is still joining its cluster; retry shortly",
            )
        })
    }

    /// Makes the transaction coordinator available (once; later calls are ignored).
    pub fn set_transactions(&self, transactions: Arc<TransactionCoordinator>) {
        let _ = self.transactions.set(transactions);
    }

    /// The transaction coordinator; COORDINATOR_NOT_AVAILABLE while this broker is still
    /// joining its cluster.
    pub fn transactions(&self) -> Result<&Arc<TransactionCoordinator>, BrokerError> {
        self.transactions.get().ok_or_else(|| {
            BrokerError::new(
                Reason::CoordinatorNotAvailable,
                "transactions are not available yet: this broker is still joining its cluster; retry shortly",
            )
        })
    }

    /// Sets how share fetches reach a coordinator on another broker (once).
    pub fn set_share_forwarder(&self, forwarder: Arc<dyn shares::ShareForwarder>) {
        let _ = self.share_forwarder.set(forwarder);
    }

    /// Sets how produces reach a partition's leader on another broker (once), for
    /// `produce::submit_anywhere`.
    pub fn set_produce_forwarder(&self, forwarder: Arc<dyn produce::ProduceForwarder>) {
        let _ = self.produce_forwarder.set(forwarder);
    }

    /// Sets how produce-time transaction checks reach a coordinator on another broker
    /// (once).
    pub fn set_txn_verifier(&self, verifier: Arc<dyn transactions::TxnVerifier>) {
        let _ = self.txn_verifier.set(verifier);
    }

    /// Sets how this broker asks the others for their part of a cluster-wide answer
    /// (once).
    pub fn set_peer_reports(&self, reports: Arc<dyn cluster_reports::PeerReports>) {
        let _ = self.peer_reports.set(reports);
    }

    /// How this broker asks the others for their reports; `None` until set.
    pub fn peer_reports(&self) -> Option<&Arc<dyn cluster_reports::PeerReports>> {
        self.peer_reports.get()
    }

    /// How share fetches reach a coordinator on another broker.
    pub fn share_forwarder(&self) -> Result<&Arc<dyn shares::ShareForwarder>, BrokerError> {
        self.share_forwarder.get().ok_or_else(|| {
            BrokerError::new(
                Reason::CoordinatorNotAvailable,
                "this broker cannot reach share coordinators on other brokers (no forwarder is set)",
            )
        })
    }

    /// The share groups whose membership this broker coordinates.
    pub fn share_members(&self) -> &share_members::ShareMembers {
        &self.share_members
    }

    /// The topic `name`, for a client's read or write: UNKNOWN_TOPIC if there is none.
    pub fn topic(&self, _ctx: &RequestContext, name: &str) -> Result<Arc<Topic>, BrokerError> {
        Ok(self.registry.topic(name)?)
    }

    /// The topic `name` if the request may do `operation` on it: authorisation first, so
    /// a principal that may not learn a topic exists gets TOPIC_AUTHORIZATION_FAILED
    /// whether it does or not.
    pub fn topic_for(
        &self,
        ctx: &RequestContext,
        operation: Operation,
        name: &str,
    ) -> Result<Arc<Topic>, BrokerError> {
        self.authorize_topic(ctx, operation, name)?;
        self.topic(ctx, name)
    }

    /// [`Broker::authorize`] on the group `group_id`.
    pub fn authorize_group(
        &self,
        ctx: &RequestContext,
        operation: Operation,
        group_id: &str,
    ) -> Result<(), BrokerError> {
        self.authorize(ctx, operation, ResourceType::Group, group_id)
    }

    /// The client quotas in force, and what they held back.
    pub fn quotas(&self) -> &Arc<quotas::Quotas> {
        &self.quotas
    }

    /// Counts `bytes` against the request's quota of `kind`, holding the request back if
    /// that takes it over ([`quotas`]).
    pub async fn enforce_quota(&self, ctx: &RequestContext, kind: quotas::QuotaKind, bytes: usize) {
        self.quotas.enforce(&self.registry, ctx, kind, bytes).await;
    }

    /// Holds a client request back, before it runs, while its entity is over its
    /// request-time quota ([`quotas`]); every listener calls it for each request it
    /// counts, then [`Broker::account_request`] once the request is done. Super users
    /// are exempt, as Kafka exempts principals with ClusterAction: brokers call each
    /// other's client services as super users (share reads, dead-letter copies).
    pub async fn admit_request(&self, ctx: &RequestContext) {
        if !self.authorizer.is_super_user(ctx) {
            self.quotas.admit(&self.registry, ctx).await;
        }
    }

    /// Counts the thread time measured for the request ([`quotas::Measured`]) against
    /// its entity's request-time quota (super users exempt, as in `admit_request`).
    pub fn account_request(&self, ctx: &RequestContext) {
        if !self.authorizer.is_super_user(ctx) {
            self.quotas.account(&self.registry, ctx);
        }
    }

    /// Runs one client request under the request-time quota: admitted
    /// ([`Broker::admit_request`]), `handling` timed by [`quotas::Measured`], the time
    /// counted ([`Broker::account_request`]).
    pub async fn run_request<F: std::future::Future>(
        &self,
        ctx: &RequestContext,
        handling: F,
    ) -> F::Output {
        self.admit_request(ctx).await;
        let output = quotas::Measured::new(ctx, handling).await;
        self.account_request(ctx);
        output
    }

    /// The authoriser (and its audit log).
    pub fn authorizer(&self) -> &Authorizer {
        &self.authorizer
    }

    /// Whether the request may do `operation` on the resource; the AUTHORIZATION_FAILED
    /// error of its type (and an audit line) if not.
    pub fn authorize(
        &self,
        ctx: &RequestContext,
        operation: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> Result<(), BrokerError> {
        self.authorizer
            .check(&self.registry, ctx, operation, resource_type, name)
    }

    /// [`Broker::authorize`] on the topic `name`.
    pub fn authorize_topic(
        &self,
        ctx: &RequestContext,
        operation: Operation,
        name: &str,
    ) -> Result<(), BrokerError> {
        self.authorize(ctx, operation, ResourceType::Topic, name)
    }

    /// Whether the request may do `cluster` on the cluster, or else `topic` on the topic
    /// `name` (an audit line only for the second): creating a topic (Kafka's rule), and
    /// the exchanges whose names share the topics' namespace (`exchanges.rs`).
    pub fn authorize_cluster_or_topic(
        &self,
        ctx: &RequestContext,
        cluster: Operation,
        topic: Operation,
        name: &str,
    ) -> Result<(), BrokerError> {
        if self.may(ctx, cluster, ResourceType::Cluster, CLUSTER_RESOURCE_NAME) {
            return Ok(());
        }
        self.authorize_topic(ctx, topic, name)
    }

    /// [`Broker::authorize`] on the cluster.
    pub fn authorize_cluster(
        &self,
        ctx: &RequestContext,
        operation: Operation,
    ) -> Result<(), BrokerError> {
        self.authorize(ctx, operation, ResourceType::Cluster, CLUSTER_RESOURCE_NAME)
    }

    /// Whether the request may do `operation` on the resource, with no audit line: for
    /// leaving out of a listing what the principal may not see.
    pub fn may(
        &self,
        ctx: &RequestContext,
        operation: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        self.authorizer
            .allows(&self.registry, ctx, operation, resource_type, name)
    }

    /// The operations on the resource the request's principal may do, of those
    /// [`authz::supported_operations`] lists for its type (Kafka's
    /// `authorized_operations`); every one of them while authorization is off.
    pub fn allowed_operations(
        &self,
        ctx: &RequestContext,
        resource_type: ResourceType,
        name: &str,
    ) -> Vec<Operation> {
        authz::supported_operations(resource_type)
            .iter()
            .copied()
            .filter(|op| self.may(ctx, *op, resource_type, name))
            .collect()
    }
}

/// Resolves once shutdown has started (or the broker is gone).
pub async fn until_stopping(stopping: &mut watch::Receiver<bool>) {
    // The borrow `wait_for` returns is not `Send`; drop it here so callers can hold
    // this future across awaits in spawned tasks.
    let _ = stopping.wait_for(|s| *s).await;
}

/// Milliseconds since the Unix epoch, by this machine's clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
