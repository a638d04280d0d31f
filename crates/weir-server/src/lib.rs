//! The Weir broker process: the gRPC services (Producer, Consumer, Admin, Groups, plus
//! the standard health and reflection services), the admin HTTP endpoint, background
//! upkeep and graceful shutdown, over the partitions of `weir-cluster`.
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
//!   the directory (stamping it on first use), binds both listeners and returns once
//!   they accept connections. Port 0 picks a free port; the bound addresses are
//!   [`RunningServer::addr`] and [`RunningServer::admin_addr`]. DescribeCluster reports
//!   [`ServerConfig::advertised_address`].
//! - [`RunningServer::shutdown`]: graceful. Health turns NOT_SERVING, listeners stop
//!   accepting, in-flight requests finish (long-poll fetches answer at once with what
//!   they have; Consume and ProduceStream streams end after answering what they
//!   accepted), then every partition is flushed and closed.
//! - [`RunningServer::wait`]`(signal)`: for the binary; runs until `signal` resolves
//!   (or a listener fails), then shuts down as above.
//!
//! Errors become `tonic::Status` in one place, `status.rs`.
//!
//! Architecture invariant: this crate knows the API (prost types, via `weir-proto`) and
//! the cluster layer, never the on-disk layout; nothing below it sees a prost type.

mod admin;
mod config;
mod consume;
mod convert;
mod groups;
mod http;
pub mod internal;
mod maintenance;
mod metrics;
mod produce;
mod status;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use weir_cluster::group::{GroupConfig, GroupCoordinator};
use weir_cluster::{NodeIdentity, TopicRegistry};
use weir_proto::v1::admin_server::AdminServer;
use weir_proto::v1::consumer_server::ConsumerServer;
use weir_proto::v1::groups_server::GroupsServer;
use weir_proto::v1::producer_server::ProducerServer;

pub use admin::AdminService;
pub use config::{
    AdvertisedAddress, DEFAULT_ADMIN_LISTEN, DEFAULT_DATA_DIR, DEFAULT_GROUP_HEARTBEAT_INTERVAL_MS,
    DEFAULT_GROUP_SESSION_TIMEOUT_MS, DEFAULT_LISTEN, DEFAULT_OFFSETS_PARTITIONS,
    DEFAULT_RETENTION_CHECK_INTERVAL_MS, MAX_CONTROLLER_VOTERS, MAX_REQUEST_BYTES, ServerConfig,
    ServerConfigError, Voter, parse_host_port,
};
pub use consume::{
    CONSUME_CHANNEL_CAPACITY, ConsumerService, DEFAULT_FETCH_MAX_BYTES,
    DEFAULT_PARTITION_FETCH_BYTES, MAX_FETCH_WAIT,
};
pub use groups::{GroupsService, MAX_PARTITIONS_PER_OFFSET_REQUEST};
pub use metrics::{LATENCY_BUCKETS_SECONDS, Metrics};
pub use produce::{
    DEFAULT_PRODUCE_TIMEOUT, MAX_IN_FLIGHT_PER_STREAM, PRODUCE_STREAM_RESPONSE_BUFFER,
    ProducerService,
};

/// Largest gRPC response the broker sends; fetches are capped below it (a fetch may
/// exceed its byte budget by one batch, at most `max.message.bytes`).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// HTTP/2 per-stream flow-control window. tonic's 64 KiB default caps one stream's
/// throughput on a fast link well below what the log can take.
pub const STREAM_WINDOW_BYTES: u32 = 4 * 1024 * 1024;
/// HTTP/2 per-connection flow-control window (several busy streams share it).
pub const CONNECTION_WINDOW_BYTES: u32 = 16 * 1024 * 1024;
/// Concurrent streams per client connection; with the windows above this bounds what
/// one connection can make the broker buffer.
pub const MAX_CONCURRENT_STREAMS_PER_CONNECTION: u32 = 256;

/// What the services share.
#[derive(Debug)]
pub(crate) struct Broker {
    pub(crate) registry: Arc<TopicRegistry>,
    pub(crate) groups: Arc<GroupCoordinator>,
    pub(crate) metrics: Arc<Metrics>,
    /// Turns true when shutdown starts; long-lived calls watch it.
    pub(crate) shutdown: watch::Receiver<bool>,
    /// The node and cluster this broker's data directory belongs to.
    pub(crate) identity: NodeIdentity,
    /// The address clients reach this broker at (DescribeCluster).
    pub(crate) advertised: AdvertisedAddress,
}

/// Resolves once shutdown has started (or the broker is gone).
pub(crate) async fn until_stopping(stopping: &mut watch::Receiver<bool>) {
    // The borrow `wait_for` returns is not `Send`; drop it here so callers can hold
    // this future across awaits in spawned tasks.
    let _ = stopping.wait_for(|s| *s).await;
}

/// A started broker.
#[derive(Debug)]
pub struct RunningServer {
    /// The bound gRPC address.
    pub addr: SocketAddr,
    /// The bound admin HTTP address, if enabled.
    pub admin_addr: Option<SocketAddr>,
    registry: Arc<TopicRegistry>,
    health: tonic_health::server::HealthReporter,
    shutdown: watch::Sender<bool>,
    grpc: JoinHandle<Result<(), tonic::transport::Error>>,
    http: Option<JoinHandle<std::io::Result<()>>>,
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
        pending_heartbeat_interval: defaults.pending_heartbeat_interval.min(heartbeat_interval),
        offsets_retention: Duration::from_secs(config.offsets_retention_minutes.saturating_mul(60)),
        ..defaults
    }
}

/// Checks the data directory's stamp, opens it and starts serving; returns once the
/// listeners are bound.
pub async fn start(config: ServerConfig) -> anyhow::Result<RunningServer> {
    config.validate().context("invalid configuration")?;
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
    let registry = Arc::new(open_data_dir(&config).await?);
    let identity = match stamp_data_dir(&config, &registry).await {
        Ok(identity) => identity,
        Err(e) => {
            let _ = registry.close().await;
            return Err(e);
        }
    };
    let groups = GroupCoordinator::open(registry.clone(), group_config(&config))
        .await
        .context("loading consumer groups from __consumer_offsets")?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding the gRPC listener to {}", config.listen))?;
    let addr = listener.local_addr()?;
    let admin_listener = match config.admin_listen {
        Some(a) => Some(
            TcpListener::bind(a)
                .await
                .with_context(|| format!("binding the admin HTTP listener to {a}"))?,
        ),
        None => None,
    };
    let admin_addr = admin_listener
        .as_ref()
        .map(|l| l.local_addr())
        .transpose()?;

    let (shutdown, stopping) = watch::channel(false);
    groups.spawn_expiry(stopping.clone());
    let broker = Arc::new(Broker {
        registry: registry.clone(),
        groups,
        metrics: Arc::new(Metrics::default()),
        shutdown: stopping.clone(),
        advertised: config.advertised_address(addr),
        identity,
    });

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<ProducerServer<ProducerService>>()
        .await;
    health
        .set_serving::<ConsumerServer<ConsumerService>>()
        .await;
    health.set_serving::<AdminServer<AdminService>>().await;
    health.set_serving::<GroupsServer<GroupsService>>().await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(weir_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let max_request = config.max_request_bytes;
    let producer = ProducerServer::new(ProducerService::new(broker.clone()))
        .max_decoding_message_size(max_request)
        .max_encoding_message_size(MAX_RESPONSE_BYTES);
    let consumer = ConsumerServer::new(ConsumerService::new(broker.clone()))
        .max_decoding_message_size(max_request)
        .max_encoding_message_size(MAX_RESPONSE_BYTES);
    let groups = GroupsServer::new(GroupsService::new(broker.clone()))
        .max_decoding_message_size(max_request)
        .max_encoding_message_size(MAX_RESPONSE_BYTES);
    let admin = AdminServer::new(AdminService::new(broker.clone()))
        .max_decoding_message_size(max_request)
        .max_encoding_message_size(MAX_RESPONSE_BYTES);

    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut grpc_stopping = stopping.clone();
    let grpc = Server::builder()
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS_PER_CONNECTION)
        .trace_fn(|req| tracing::info_span!("rpc", method = %req.uri().path()))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(producer)
        .add_service(consumer)
        .add_service(admin)
        .add_service(groups)
        .serve_with_incoming_shutdown(incoming, async move {
            until_stopping(&mut grpc_stopping).await;
        });
    let grpc = tokio::spawn(grpc);

    let http = admin_listener.map(|listener| {
        let mut http_stopping = stopping.clone();
        let app = http::router(broker.clone());
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    until_stopping(&mut http_stopping).await;
                })
                .await
        })
    });
    let upkeep = tokio::spawn(maintenance::run(
        broker.clone(),
        Duration::from_millis(config.retention_check_interval_ms.max(1)),
        stopping,
    ));
    tracing::info!(
        %addr,
        advertised = %broker.advertised,
        admin = ?admin_addr,
        data_dir = %config.data_dir.display(),
        node_id = broker.identity.node_id(),
        cluster_id = broker.identity.cluster_id(),
        "broker listening"
    );
    Ok(RunningServer {
        addr,
        admin_addr,
        registry,
        health,
        shutdown,
        grpc,
        http,
        upkeep,
    })
}

/// Opens the topic registry, after refusing a directory stamped for another node or with
/// a corrupt stamp, so nothing in another node's directory is touched.
async fn open_data_dir(config: &ServerConfig) -> anyhow::Result<TopicRegistry> {
    let dir = config.data_dir.clone();
    let stamped = tokio::task::spawn_blocking(move || NodeIdentity::load(&dir))
        .await
        .context("reading the node identity: task failed")??;
    if let Some(identity) = stamped {
        identity.check_node_id(config.node_id)?;
    }
    TopicRegistry::open(&config.data_dir, config.node_id)
        .await
        .with_context(|| format!("opening data directory {}", config.data_dir.display()))
}

/// The directory's identity, stamping it if it has none (a new directory, or one from
/// before stamps). Runs once the registry is open, so the registry's lock on the
/// directory covers the write and a new stamp keeps the cluster id `metadata.weir` holds;
/// the stamp and the metadata must then agree on the cluster.
async fn stamp_data_dir(
    config: &ServerConfig,
    registry: &TopicRegistry,
) -> anyhow::Result<NodeIdentity> {
    let (dir, node_id) = (config.data_dir.clone(), config.node_id);
    let identity = tokio::task::spawn_blocking(move || NodeIdentity::load_or_create(&dir, node_id))
        .await
        .context("stamping the node identity: task failed")??;
    identity
        .check_cluster_id(registry.cluster_id())
        .context("the node identity (node.weir) and metadata.weir name different clusters")?;
    Ok(identity)
}

impl RunningServer {
    /// Stops gracefully: stop accepting, finish in-flight requests, flush, close.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.stop(None).await
    }

    /// Serves until `signal` resolves (or a listener fails), then shuts down gracefully.
    pub async fn wait(mut self, signal: impl Future<Output = ()>) -> anyhow::Result<()> {
        tokio::select! {
            () = signal => self.stop(None).await,
            ended = &mut self.grpc => {
                let ended = ended.context("gRPC server task failed").and_then(|r| r.context("gRPC server failed"));
                self.stop(Some(ended)).await
            }
        }
    }

    /// `grpc_ended`: the gRPC task's result if it already finished (a finished
    /// JoinHandle must not be awaited again).
    async fn stop(self, grpc_ended: Option<anyhow::Result<()>>) -> anyhow::Result<()> {
        tracing::info!("shutting down");
        for name in [
            "weir.v1.Producer",
            "weir.v1.Consumer",
            "weir.v1.Admin",
            "weir.v1.Groups",
            "",
        ] {
            self.health
                .set_service_status(name, tonic_health::ServingStatus::NotServing)
                .await;
        }
        let _ = self.shutdown.send(true);
        let grpc = match grpc_ended {
            Some(result) => result,
            None => self
                .grpc
                .await
                .context("gRPC server task failed")
                .and_then(|r| r.context("gRPC server failed")),
        };
        let http = match self.http {
            Some(task) => task
                .await
                .context("admin HTTP task failed")
                .and_then(|r| r.context("admin HTTP server failed")),
            None => Ok(()),
        };
        let _ = self.upkeep.await;
        let closed = self.registry.close().await.context("flushing partitions");
        tracing::info!("shutdown complete");
        grpc.and(http).and(closed)
    }
}
