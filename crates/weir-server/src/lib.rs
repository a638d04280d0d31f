//! The Weir broker process: it opens the data directory and the cluster node, makes the
//! core (`weir-broker`), and starts the listeners of the configuration's list through one
//! registration per protocol (`listeners.rs`: gRPC over `weir-grpc`, Kafka over
//! `weir-kafka`, AMQP over `weir-amqp`, the admin HTTP endpoint and `weir-console`);
//! then background upkeep, and graceful and controlled shutdown.
//!
//! # Contract (tests and the `weir` binary rely on it)
//!
//! - [`ServerConfig`]: `serde::Deserialize` + `Default`; fields `data_dir`, `listen`,
//!   `admin_listen: Option<SocketAddr>`, `node_id` (default 0; `broker_id` accepted in
//!   files), `controller_voters: Vec<Voter>` (default empty: a single node),
//!   `internal_listen: Option<SocketAddr>`, `advertise: Option<String>` (`host:port`),
//!   `max_request_bytes`, `retention_check_interval_ms`, `offsets_partitions`,
//!   `group_session_timeout_ms`, `group_heartbeat_interval_ms`,
//!   `offsets_retention_minutes`. Defaults need nothing set: `./weir-data`,
//!   `127.0.0.1:9292` (gRPC), `127.0.0.1:9293` (HTTP). [`ServerConfig::validate`] checks
//!   what types cannot.
//! - [`start`]`(config).await -> anyhow::Result<RunningServer>`: validates the config,
//!   refuses a data directory stamped with another node id (or a corrupt stamp), opens
//!   the directory (stamping it on first use), binds every listener of
//!   [`ServerConfig::listeners`] and returns once they accept connections. Port 0 picks
//!   a free port; the bound addresses are [`RunningServer::addr`],
//!   [`RunningServer::admin_addr`], [`RunningServer::kafka_addr`] and the others.
//!   DescribeCluster reports [`ServerConfig::advertised_address`].
//! - [`RunningServer::shutdown`]: graceful. Health turns NOT_SERVING, listeners stop
//!   accepting, in-flight requests finish (long-poll fetches answer at once with what
//!   they have; Consume and ProduceStream streams end after answering what they
//!   accepted), then every partition is flushed and closed.
//! - [`RunningServer::wait`]`(signal)`: for the binary; runs until `signal` resolves
//!   (or a listener fails), then shuts down as above.
//!
//! Architecture invariant: this crate assembles; it decodes no protocol (each adapter
//! does) and never knows the on-disk layout.

mod bootstrap_admin;
mod cluster;
mod config;
mod dead_letters;
mod http;
mod listeners;
mod maintenance;
mod tls;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_util::future::BoxFuture;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use weir_cluster::controller::records::listener_names;
use weir_cluster::group::{GroupConfig, GroupCoordinator};
use weir_cluster::node::ClusterNode;
use weir_cluster::share::{ShareCoordinator, ShareGroupConfig};
use weir_cluster::txn::{TransactionConfig, TransactionCoordinator};
use weir_cluster::{NodeIdentity, TopicRegistry};

pub use config::{
    Advertised, AdvertisedAddress, Authentication, DEFAULT_ADMIN_LISTEN, DEFAULT_AMQP_LISTEN,
    DEFAULT_DATA_DIR, DEFAULT_GROUP_HEARTBEAT_INTERVAL_MS, DEFAULT_GROUP_SESSION_TIMEOUT_MS,
    DEFAULT_LISTEN, DEFAULT_OFFSETS_PARTITIONS, DEFAULT_RETENTION_CHECK_INTERVAL_MS, ListenerSpec,
    MAX_CONTROLLER_VOTERS, MAX_REQUEST_BYTES, Secret, ServerConfig, ServerConfigError, Voter,
    parse_host_port,
};
/// The broker-wide budget's caps and their defaults (`max_connections`,
/// `max_in_flight_request_bytes`, `max_consume_streams`).
pub use weir_broker::budget::{
    BudgetLimits, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONSUME_STREAMS,
    DEFAULT_MAX_IN_FLIGHT_REQUEST_BYTES,
};
pub use weir_broker::{LATENCY_BUCKETS_SECONDS, Metrics};
/// Most partitions a topic may have: creating or growing a topic past it is refused.
/// Clients check it too (the `weir` CLI's `--partitions`).
pub use weir_cluster::MAX_PARTITIONS_PER_TOPIC;
/// The gRPC adapter's services, limits and defaults (`weir-grpc`), named here as the
/// broker process's too.
pub use weir_grpc::{
    AdminService, CONNECTION_WINDOW_BYTES, CONSUME_CHANNEL_CAPACITY, ConsumerService,
    DEFAULT_FETCH_MAX_BYTES, DEFAULT_PAGE_SIZE, DEFAULT_PARTITION_FETCH_BYTES,
    DEFAULT_PRODUCE_TIMEOUT, GroupsService, MAX_CONCURRENT_STREAMS_PER_CONNECTION, MAX_FETCH_WAIT,
    MAX_FRAME_BYTES, MAX_IN_FLIGHT_PER_STREAM, MAX_PAGE_SIZE, MAX_PAGE_TOKEN_CHARS,
    MAX_RESPONSE_BYTES, PRODUCE_STREAM_RESPONSE_BUFFER, ProducerService, QueuesService,
    STREAM_WINDOW_BYTES,
};
use weir_grpc::{Broker, until_stopping};

/// Longest a stopping broker waits for the controller to move its leaderships away
/// (well inside Docker's 10 s stop timeout).
pub const CONTROLLED_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a stopping broker waits for its listeners' connections to close once they
/// were asked to. A connection ends when its in-flight answers are written, which a peer
/// that does not read (a frozen process, a cut link) never lets happen: HTTP/2 cannot
/// send past a flow-control window nobody reopens. Past this the listeners are dropped
/// with what they still hold (nothing unanswered was acknowledged), as Kafka's socket
/// server closes its connections at shutdown without waiting for them.
pub const LISTENER_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Wait before opening the group coordinator again after it failed to open.
const GROUPS_OPEN_RETRY: Duration = Duration::from_secs(1);

/// The error a broker stops with when its data directory went offline
/// ([`RunningServer::wait`]): a disk that keeps failing its writes or fsyncs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDirOffline {
    pub data_dir: std::path::PathBuf,
    /// What failed: the partition, and the failed write, sync or reopen.
    pub reason: String,
}

impl std::fmt::Display for DataDirOffline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "data directory {} is offline (its disk keeps failing): {}",
            self.data_dir.display(),
            self.reason
        )
    }
}

impl std::error::Error for DataDirOffline {}

/// A started broker.
#[derive(Debug)]
pub struct RunningServer {
    /// The bound gRPC address.
    pub addr: SocketAddr,
    /// The bound admin HTTP address, if enabled.
    pub admin_addr: Option<SocketAddr>,
    /// The bound external client listener, if configured.
    pub external_addr: Option<SocketAddr>,
    /// The bound Kafka protocol listener (`kafka_listen`), if configured.
    pub kafka_addr: Option<SocketAddr>,
    /// The bound external Kafka listener (`kafka_external_listen`), if configured.
    pub kafka_external_addr: Option<SocketAddr>,
    /// The bound AMQP listener (`amqp_listen`), if configured.
    pub amqp_addr: Option<SocketAddr>,
    /// The bound AMQP-over-TLS listener (`amqps_listen`), if configured.
    pub amqps_addr: Option<SocketAddr>,
    registry: Arc<TopicRegistry>,
    /// The protocol-neutral core every listener serves.
    core: Arc<weir_broker::Broker>,
    /// The broker-wide budget every client listener takes from.
    budget: Arc<weir_broker::budget::Budget>,
    node: ClusterNode,
    multi_node: bool,
    health: tonic_health::server::HealthReporter,
    shutdown: watch::Sender<bool>,
    /// Every listener's tasks: one ending before the broker stops is a failure.
    listeners: Vec<JoinHandle<anyhow::Result<()>>>,
    /// One per TLS configuration: reload certificates until stopping.
    tls_watchers: Vec<JoinHandle<()>>,
    upkeep: JoinHandle<()>,
}

/// The coordinator's settings from the server's: the limits widen to admit the
/// configured session timeout (tests use short ones), and the short interval used while a
/// member waits on a hand-over never exceeds the regular one.
fn group_config(config: &ServerConfig) -> GroupConfig {
    let defaults = GroupConfig::default();
    let session_timeout = Duration::from_millis(config.group_session_timeout_ms);
    let heartbeat_interval = Duration::from_millis(config.group_heartbeat_interval_ms);
    GroupConfig {
        offsets_partitions: config.offsets_partitions,
        session_timeout,
        min_session_timeout: defaults.min_session_timeout.min(session_timeout),
        max_session_timeout: defaults.max_session_timeout.max(session_timeout),
        heartbeat_interval,
        min_heartbeat_interval: defaults.min_heartbeat_interval.min(heartbeat_interval),
        max_heartbeat_interval: defaults.max_heartbeat_interval.max(heartbeat_interval),
        pending_heartbeat_interval: defaults.pending_heartbeat_interval.min(heartbeat_interval),
        offsets_retention: Duration::from_secs(config.offsets_retention_minutes.saturating_mul(60)),
        initial_rebalance_delay: Duration::from_millis(config.group_initial_rebalance_delay_ms),
        ..defaults
    }
}

/// Checks the data directory's stamp, opens it and starts serving; returns once the
/// listeners are bound.
///
/// The future is boxed here, and so are [`RunningServer::wait`]'s and
/// [`RunningServer::shutdown`]'s: an `async fn`'s body is compiled in every crate that
/// awaits it, so without the box the whole broker (cluster node, quorum, listeners) was
/// compiled again in the `weir` binary's crate, after this one (docs/ARCHITECTURE.md
/// § Build time).
pub fn start(config: ServerConfig) -> BoxFuture<'static, anyhow::Result<RunningServer>> {
    Box::pin(start_serving(config))
}

async fn start_serving(config: ServerConfig) -> anyhow::Result<RunningServer> {
    config.validate().context("invalid configuration")?;
    let specs = config.listeners()?;
    // Certificates are checked before anything is opened: a wrong file stops the start.
    let tls = tls::BrokerTls::load(&config, &specs)?;
    raise_open_files_limit();
    log_observer(&config);
    let lock = TopicRegistry::lock_data_dir(&config.data_dir)
        .with_context(|| format!("opening data directory {}", config.data_dir.display()))?;
    let identity = stamp_data_dir(&config).await?;
    let bound = listeners::bind(&specs, |spec| tls.of(spec.listener.name)).await?;
    let addrs = ListenerAddrs::of(&bound);
    let this_broker = listeners::endpoints(&bound);
    let cluster = cluster::start(
        &config,
        tls.peers.clone(),
        lock,
        identity.as_ref().map(|i| i.cluster_id().to_string()),
        this_broker.clone(),
    )
    .await?;
    if identity.is_none() {
        tokio::spawn(stamp_joined(config.clone(), cluster.node.clone()));
    }
    let (shutdown, stopping) = watch::channel(false);
    let broker = assemble_broker(&config, &tls, &cluster, &bound, this_broker, &stopping);
    let (health, health_service) = health_reporter().await;
    let serving = listeners::Serving {
        grpc: weir_grpc::GrpcServices::new(
            &broker,
            &cluster.node,
            Arc::new(cluster::Handler(cluster.node.clone())),
            health_service,
            addrs.internal.is_some(),
            stopping.clone(),
        )?,
        broker: broker.clone(),
        stopping: stopping.clone(),
    };
    // The gRPC listeners first: in a cluster they carry the internal services the other
    // brokers need before this one can register and open its groups. The others serve
    // once the groups are open (on a single node, before `start` returns).
    let (grpc_listeners, other_listeners) = bound
        .into_iter()
        .partition(|b| b.listener.protocol == weir_broker::Protocol::GRPC);
    let mut listeners = listeners::serve(&serving, grpc_listeners)?;
    join_as_broker(&config, &broker, &cluster, &stopping).await?;
    listeners.extend(listeners::serve(&serving, other_listeners)?);
    let tls_watchers = tls.watch(&stopping);
    let upkeep = tokio::spawn(maintenance::run(
        broker.clone(),
        Duration::from_millis(config.retention_check_interval_ms.max(1)),
        stopping,
    ));
    log_listening(&config, &specs, &tls, &addrs, &broker, &cluster.registry);
    Ok(RunningServer {
        addr: addrs.client,
        admin_addr: addrs.admin,
        external_addr: addrs.external,
        kafka_addr: addrs.kafka,
        kafka_external_addr: addrs.kafka_external,
        amqp_addr: addrs.amqp,
        amqps_addr: addrs.amqps,
        registry: cluster.registry,
        core: broker.core.clone(),
        budget: broker.budget.clone(),
        node: cluster.node,
        multi_node: cluster.multi_node,
        health,
        shutdown,
        listeners,
        tls_watchers,
        upkeep,
    })
}

/// The broker core over the cluster's registry, with the ways it reaches other brokers
/// (produce forwards for AMQP's publishes, reports for the console's cluster pages).
fn assemble_broker(
    config: &ServerConfig,
    tls: &tls::BrokerTls,
    cluster: &cluster::Cluster,
    bound: &[listeners::BoundListener],
    this_broker: weir_cluster::controller::records::Endpoints,
    stopping: &watch::Receiver<bool>,
) -> Arc<Broker> {
    let broker = Arc::new(Broker {
        core: Arc::new(weir_broker::Broker::new(
            cluster.registry.clone(),
            stopping.clone(),
            config.max_request_bytes,
            weir_broker::TopicDefaults {
                auto_create: config.auto_create_topics,
                num_partitions: config.num_partitions,
                replication_factor: config.default_replication_factor,
            },
            config.security(tls.node_principal.as_deref()),
        )),
        this_broker,
        peer_tls: tls.peers.clone(),
        budget: Arc::new(weir_broker::budget::Budget::new(config.budget())),
    });
    broker.metrics().set_budget(broker.budget.clone());
    broker.core.set_kafka_listeners(kafka_listener_names(bound));
    // AMQP's publishes reach a queue's leader on another broker, and Kafka's share
    // consumers and AMQP's consumers a share group's coordinator, through the other
    // broker's internal Forward service.
    let forwarder = Arc::new(weir_grpc::internal::GrpcForwarder::new(
        broker.peer_tls.clone(),
    ));
    broker.core.set_produce_forwarder(forwarder.clone());
    broker.core.set_share_forwarder(forwarder);
    // The console's pages about the whole cluster ask every broker for its part.
    broker
        .core
        .set_peer_reports(Arc::new(weir_grpc::internal::GrpcPeerReports::new(
            broker.peer_tls.clone(),
        )));
    broker
}

/// gRPC health, every service serving.
async fn health_reporter() -> (
    tonic_health::server::HealthReporter,
    tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
) {
    let (health, health_service) = tonic_health::server::health_reporter();
    for name in SERVICE_NAMES {
        health
            .set_service_status(name, tonic_health::ServingStatus::Serving)
            .await;
    }
    (health, health_service)
}

/// Registers with the controller and heartbeats; consumer groups start once this broker
/// is unfenced (their topic needs a controller and a broker to place it on). On a single
/// node that takes milliseconds and this waits for it; in a cluster the other brokers
/// may not be up yet, so it happens in the background.
async fn join_as_broker(
    config: &ServerConfig,
    broker: &Arc<Broker>,
    cluster: &cluster::Cluster,
    stopping: &watch::Receiver<bool>,
) -> anyhow::Result<()> {
    cluster.node.spawn_lifecycle(stopping.clone());
    if let (Some(user), Some(password)) = (&config.admin_user, &config.admin_password) {
        bootstrap_admin::spawn(
            broker.core.clone(),
            user.clone(),
            password.0.clone(),
            stopping.clone(),
        );
    }
    let groups = (group_config(config), config.share_groups());
    if cluster.multi_node {
        tokio::spawn(open_groups_until_open(
            broker.clone(),
            cluster.node.clone(),
            groups.0,
            groups.1,
            stopping.clone(),
        ));
        Ok(())
    } else {
        open_groups(
            broker.clone(),
            cluster.node.clone(),
            groups.0,
            groups.1,
            stopping.clone(),
        )
        .await
    }
}

/// The "broker listening" line: tests and scripts read its `addr`, `admin` and `kafka`
/// fields.
fn log_listening(
    config: &ServerConfig,
    specs: &[ListenerSpec],
    tls: &tls::BrokerTls,
    addrs: &ListenerAddrs,
    broker: &Broker,
    registry: &TopicRegistry,
) {
    let advertised = |name| broker.this_broker.get(name).map(str::to_owned);
    tracing::info!(
        addr = %addrs.client,
        advertised = %broker.this_broker.client(),
        external_advertised = ?advertised(listener_names::EXTERNAL),
        admin = ?addrs.admin,
        kafka = ?addrs.kafka,
        tls = tls.is_on(listener_names::CLIENT),
        admin_tls = tls.is_on(weir_broker::Listener::HTTP.name),
        kafka_tls = tls.is_on(listener_names::KAFKA),
        kafka_advertised = ?advertised(listener_names::KAFKA),
        kafka_external = ?addrs.kafka_external,
        amqp = ?addrs.amqp,
        amqps = ?addrs.amqps,
        kafka_external_advertised = ?advertised(listener_names::KAFKA_EXTERNAL),
        data_dir = %config.data_dir.display(),
        node_id = config.node_id,
        cluster_id = registry.cluster_id(),
        listeners = ?specs
            .iter()
            .map(|s| (s.listener.name, s.listener.protocol.name, &s.authentication))
            .collect::<Vec<_>>(),
        "broker listening"
    );
}

/// The gRPC services whose health the broker reports (the empty name is the server's
/// own).
const SERVICE_NAMES: [&str; 7] = [
    "weir.v1.Producer",
    "weir.v1.Consumer",
    "weir.v1.Admin",
    "weir.v1.Groups",
    "weir.v1.Queues",
    "weir.v1.Transactions",
    "",
];

/// Kafka's `listeners` and `advertised.listeners` of this broker, as a broker's
/// DescribeConfigs answers them: `NAME://host:port`, comma-separated (PLAINTEXT, or SSL
/// with TLS, for the Kafka listener; EXTERNAL for the external one).
fn kafka_listener_names(
    bound: &[listeners::BoundListener],
) -> weir_broker::configs::KafkaListeners {
    let named: Vec<(&str, &listeners::BoundListener)> = bound
        .iter()
        .filter_map(|b| match b.listener {
            weir_broker::Listener::KAFKA if b.tls.is_some() => Some(("SSL", b)),
            weir_broker::Listener::KAFKA => Some(("PLAINTEXT", b)),
            weir_broker::Listener::KAFKA_EXTERNAL => Some(("EXTERNAL", b)),
            _ => None,
        })
        .collect();
    let join = |address: fn(&listeners::BoundListener) -> Option<String>| {
        named
            .iter()
            .filter_map(|(name, b)| address(b).map(|a| format!("{name}://{a}")))
            .collect::<Vec<_>>()
            .join(",")
    };
    weir_broker::configs::KafkaListeners {
        listeners: join(|b| Some(b.addr.to_string())),
        advertised: join(|b| b.advertised.clone()),
    }
}

/// The bound addresses of the listeners [`RunningServer`] names.
struct ListenerAddrs {
    client: SocketAddr,
    internal: Option<SocketAddr>,
    external: Option<SocketAddr>,
    admin: Option<SocketAddr>,
    kafka: Option<SocketAddr>,
    kafka_external: Option<SocketAddr>,
    amqp: Option<SocketAddr>,
    amqps: Option<SocketAddr>,
}

impl ListenerAddrs {
    fn of(bound: &[listeners::BoundListener]) -> ListenerAddrs {
        let addr = |listener: weir_broker::Listener| {
            bound
                .iter()
                .find(|b| b.listener == listener)
                .map(|b| b.addr)
        };
        ListenerAddrs {
            client: addr(weir_broker::Listener::GRPC).expect("every broker has a client listener"),
            internal: addr(weir_broker::Listener::GRPC_INTERNAL),
            external: addr(weir_broker::Listener::GRPC_EXTERNAL),
            admin: addr(weir_broker::Listener::HTTP),
            kafka: addr(weir_broker::Listener::KAFKA),
            kafka_external: addr(weir_broker::Listener::KAFKA_EXTERNAL),
            amqp: addr(weir_amqp::LISTENER),
            amqps: addr(weir_amqp::TLS_LISTENER),
        }
    }
}

/// Logs that this node is an observer broker, if it is.
fn log_observer(config: &ServerConfig) {
    if !config.is_controller_voter() {
        let voters: Vec<String> = config
            .controller_voters
            .iter()
            .map(|v| v.to_string())
            .collect();
        tracing::info!(
            node_id = config.node_id,
            voters = voters.join(","),
            "this node is not a controller voter: it runs as an observer broker"
        );
    }
}

/// [`open_groups`] until it opens: a failure (the metadata not there yet, a lost race
/// to create __consumer_offsets) is retried, never left to fail silently.
async fn open_groups_until_open(
    broker: Arc<Broker>,
    node: ClusterNode,
    groups: GroupConfig,
    shares: ShareGroupConfig,
    stopping: watch::Receiver<bool>,
) {
    while !*stopping.borrow() {
        let opened = open_groups(
            broker.clone(),
            node.clone(),
            groups.clone(),
            shares.clone(),
            stopping.clone(),
        )
        .await;
        match opened {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "opening the consumer group coordinator failed; retrying"
                );
                tokio::time::sleep(GROUPS_OPEN_RETRY).await;
            }
        }
    }
}

/// Raises the soft limit on open files to the hard one: every partition holds a few
/// descriptors, and the default soft limit (often 1,024) runs out around a few hundred
/// partitions while the hard limit allows far more.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own; no other memory is touched.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    if limit.rlim_cur >= limit.rlim_max {
        return;
    }
    let from = limit.rlim_cur;
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: setrlimit reads the struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } == 0 {
        tracing::info!(from, to = limit.rlim_max, "raised the open files limit");
    }
}

/// The directory's identity: its stamp, refused if it names another node (so nothing in
/// another node's directory is touched). A directory without one is stamped now on a
/// single node (keeping the cluster id of a single-node `metadata.weir`); in a cluster
/// it is stamped once the metadata names the cluster it joined (`None` until then).
/// Runs under the directory lock.
async fn stamp_data_dir(config: &ServerConfig) -> anyhow::Result<Option<NodeIdentity>> {
    let (dir, node_id) = (config.data_dir.clone(), config.node_id);
    // A single node is its cluster's only voter. An observer of a one-voter cluster is
    // not: it must wait to learn the cluster's id (found by hand: `weir dev cluster
    // --nodes 2 --voters 1` stamped the observer with an id of its own, and it never
    // joined).
    let single = config.controller_voters.len() <= 1 && config.is_controller_voter();
    let identity = tokio::task::spawn_blocking(move || match NodeIdentity::load(&dir)? {
        Some(identity) => identity.check_node_id(node_id).map(|()| Some(identity)),
        None if single => NodeIdentity::load_or_create(&dir, node_id).map(Some),
        None => Ok(None),
    })
    .await
    .context("stamping the node identity: task failed")??;
    Ok(identity)
}

/// Stamps a new directory with the cluster it joined, once the metadata names it.
async fn stamp_joined(config: ServerConfig, node: ClusterNode) {
    let mut images = node.subscribe();
    let cluster_id = match images.wait_for(|i| i.cluster_id().is_some()).await {
        Ok(image) => image.cluster_id().expect("waited for it").to_string(),
        Err(_) => return,
    };
    let (dir, node_id) = (config.data_dir.clone(), config.node_id);
    let stamped =
        tokio::task::spawn_blocking(move || NodeIdentity::stamp_joined(&dir, node_id, &cluster_id))
            .await;
    match stamped {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "stamping the data directory failed"),
        Err(e) => tracing::error!(error = %e, "stamping the data directory: task failed"),
    }
}

/// Waits until this broker is registered and unfenced, then opens the consumer group
/// coordinator and the share group coordinator.
async fn open_groups(
    broker: Arc<Broker>,
    node: ClusterNode,
    config: GroupConfig,
    shares: ShareGroupConfig,
    stopping: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    loop {
        match weir_cluster::wait_unfenced(&node).await {
            Ok(()) => break,
            Err(e @ weir_cluster::ClusterError::Refused(_)) => return Err(e.into()),
            Err(e) if *stopping.borrow() => return Err(e.into()),
            Err(e) => {
                tracing::info!(error = %e, "waiting for the cluster before starting consumer groups")
            }
        }
    }
    // The elections that came with the unfencing have reached the partitions.
    broker.registry().wait_current().await;
    // A retry after a failure opens only what is not open yet.
    if broker.core.groups_if_up().is_none() {
        let groups = GroupCoordinator::open(broker.registry().clone(), config)
            .await
            .context("loading consumer groups from __consumer_offsets")?;
        groups.spawn_expiry(stopping.clone());
        broker.core.set_groups(groups);
    }
    if broker.core.shares().is_err() {
        let sink = Arc::new(dead_letters::GrpcDeadLetters {
            registry: broker.registry().clone(),
            tls: broker.peer_tls.clone(),
        });
        let remote = Arc::new(weir_grpc::GrpcRemoteLog::new(
            broker.registry().clone(),
            broker.peer_tls.clone(),
        ));
        let shares = ShareCoordinator::open(
            broker.registry().clone(),
            shares,
            Some(sink),
            Some(remote),
            stopping,
        )
        .await
        .context("loading share groups from __share_group_state")?;
        broker.core.set_shares(shares);
    }
    if broker.core.transactions().is_err() {
        // Markers go to each partition's leader: written here for the partitions this
        // broker leads, sent over the internal Transactions service for the others.
        let markers = Arc::new(weir_grpc::internal::GrpcMarkerWriter::new(
            Arc::downgrade(&broker.core),
            broker.peer_tls.clone(),
        ));
        // Produce-time checks go to the transactional id's coordinator when it is
        // another broker.
        broker
            .core
            .set_txn_verifier(Arc::new(weir_grpc::internal::GrpcTxnVerifier::new(
                broker.peer_tls.clone(),
            )));
        let transactions = TransactionCoordinator::open(
            broker.registry().clone(),
            TransactionConfig::default(),
            Some(markers),
            broker.core.shutdown_signal(),
        )
        .await
        .context("loading transactions from __transaction_state")?;
        broker.core.set_transactions(transactions);
    }
    Ok(())
}

impl RunningServer {
    /// The broker core this server's listeners serve, for a process that embeds the
    /// broker and calls the core in-process: the transaction coordinator's markers
    /// (`weir_broker::transactions`), and tests that drive the core without a protocol.
    pub fn core(&self) -> Arc<weir_broker::Broker> {
        self.core.clone()
    }

    /// The broker-wide budget (connections, requests in flight, consume streams) every
    /// client listener takes from, for a process that watches it and for tests that fill
    /// it.
    pub fn budget(&self) -> Arc<weir_broker::budget::Budget> {
        self.budget.clone()
    }

    /// Stops gracefully: stop accepting, finish in-flight requests, flush, close.
    pub fn shutdown(self) -> BoxFuture<'static, anyhow::Result<()>> {
        Box::pin(self.stop(None))
    }

    /// Serves until `signal` resolves (or a listener fails, or the data directory goes
    /// offline), then shuts down gracefully. A data directory taken offline (a disk that
    /// keeps failing: `docs/operations.md` § A failing disk) stops the broker as Kafka
    /// halts one whose last log directory went offline, except that its leaderships and
    /// ISR memberships are first moved away (controlled shutdown); the error is then a
    /// [`DataDirOffline`].
    pub fn wait(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> BoxFuture<'static, anyhow::Result<()>> {
        Box::pin(self.serve_until(Box::pin(signal)))
    }

    async fn serve_until(
        mut self,
        signal: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> anyhow::Result<()> {
        // Never empty: every broker has its client listener.
        let mut any_ended = futures_util::future::select_all(std::mem::take(&mut self.listeners));
        let mut offline = self.registry.data_dir_status().subscribe();
        let offline = async move {
            // The guard `wait_for` returns is dropped before any other await (the future
            // stays Send).
            let reason = offline
                .wait_for(Option::is_some)
                .await
                .map(|reason| reason.clone().unwrap_or_default());
            match reason {
                Ok(reason) => reason,
                Err(_) => std::future::pending().await,
            }
        };
        // openraft stops its core on this node for good at a storage error: a broker
        // running on would be cut off from the quorum until restarted, so it stops as for
        // an offline data directory (the quorum's files are in it).
        let quorum = self.node.quorum().cloned();
        let quorum_stopped = async move {
            match quorum {
                Some(quorum) => quorum.stopped().await,
                None => std::future::pending().await,
            }
        };
        let offline = tokio::select! {
            () = signal => {
                self.listeners = any_ended.into_inner();
                return self.stop(None).await;
            }
            reason = offline => reason,
            reason = quorum_stopped => format!("this node's metadata quorum stopped: {reason}"),
            (ended, _, rest) = &mut any_ended => {
                self.listeners = rest;
                let ended = ended
                    .context("a listener's task failed")
                    .and_then(|r| r)
                    .and_then(|()| Err(anyhow::anyhow!("a listener stopped serving")));
                return self.stop(Some(ended)).await;
            }
        };
        let offline = DataDirOffline {
            data_dir: self.registry.data_dir().to_path_buf(),
            reason: offline,
        };
        tracing::error!(
            data_dir = %offline.data_dir.display(),
            reason = offline.reason,
            "FATAL: the data directory is offline (its disk keeps failing): moving this \
             broker's leaderships away and stopping; restart it once the disk is \
             healthy, and it recovers from what the disk holds"
        );
        self.listeners = any_ended.into_inner();
        let stopped = self.stop(None).await;
        if let Err(e) = stopped {
            tracing::warn!(error = %format!("{e:#}"), "stopping after the data directory went offline");
        }
        Err(offline.into())
    }

    /// `ended`: the result of a listener task that already finished (a finished
    /// JoinHandle must not be awaited again).
    async fn stop(self, ended: Option<anyhow::Result<()>>) -> anyhow::Result<()> {
        tracing::info!("shutting down");
        for name in SERVICE_NAMES {
            self.health
                .set_service_status(name, tonic_health::ServingStatus::NotServing)
                .await;
        }
        if self.multi_node {
            // Leaderships move to other brokers before this one stops serving, so
            // clients that retry see no error.
            self.node
                .controlled_shutdown(CONTROLLED_SHUTDOWN_TIMEOUT)
                .await;
            // Apply the leadership moves here too, so appends still waiting for acks=all
            // under this broker's leaderships are answered NOT_LEADER now (the client
            // retries on the new leader) instead of holding the stop until they time out.
            let _ = tokio::time::timeout(CONTROLLED_SHUTDOWN_TIMEOUT, self.registry.wait_current())
                .await;
            // Now that this broker leads nothing and is in no ISR, the other voters take
            // the metadata quorum over while it still serves: a controller that stopped
            // answering heartbeats but kept leading would fence every other broker.
            self.node.leave_quorum().await;
        }
        let _ = self.shutdown.send(true);
        let mut served = ended.unwrap_or(Ok(()));
        let drained_by = tokio::time::Instant::now() + LISTENER_DRAIN_TIMEOUT;
        let mut undrained = 0;
        for task in self.listeners {
            match join_by(drained_by, task).await {
                Some(joined) => {
                    let result = joined.context("a listener's task failed").and_then(|r| r);
                    served = served.and(result);
                }
                None => undrained += 1,
            }
        }
        if undrained > 0 {
            tracing::warn!(
                listeners = undrained,
                timeout_ms = LISTENER_DRAIN_TIMEOUT.as_millis() as u64,
                "connections still open after the drain timeout (peers that do not read: \
                 frozen or cut off); closed without waiting for them"
            );
        }
        for task in self.tls_watchers {
            let _ = join_by(drained_by, task).await;
        }
        let _ = join_by(drained_by, self.upkeep).await;
        let closed = self.registry.close().await.context("flushing partitions");
        self.node.shutdown().await;
        // A task that has not ended yet (a group coordinator's expiry, say) may still hold
        // the registry; the directory is done with either way.
        self.registry.release_data_dir();
        tracing::info!("shutdown complete");
        served.and(closed)
    }
}

/// `task`'s result if it ends by `deadline`; else it is aborted and `None`.
async fn join_by<T>(
    deadline: tokio::time::Instant,
    mut task: JoinHandle<T>,
) -> Option<Result<T, tokio::task::JoinError>> {
    match tokio::time::timeout_at(deadline, &mut task).await {
        Ok(joined) => Some(joined),
        Err(_) => {
            task.abort();
            None
        }
    }
}
