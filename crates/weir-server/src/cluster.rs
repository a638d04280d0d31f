//! Wires this broker into its cluster: the metadata quorum and controller
//! (weir-cluster's `ClusterNode`), and replication between brokers, carried by the
//! internal gRPC services (`internal/`). A broker started without `--controller-voters`
//! is a cluster of one voter, itself, that never talks to another broker; one whose id
//! is not among the voters is an observer (it follows the active controller's metadata).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use weir_cluster::controller::records::{Endpoints, MetadataOffset};
use weir_cluster::controller::{ControllerConfig, ControllerReply, ControllerRequest};
use weir_cluster::node::{
    CallError, ClusterNode, ClusterSettings, ControllerChannel, ServeFetchError,
};
use weir_cluster::quorum::{MetadataDelta, QuorumConfig, QuorumTransport};
use weir_cluster::replication::{BoxFuture, FetchSessions};
use weir_cluster::{BrokerId, DataDirLock, NoPeers, TopicRegistry};
use weir_security::dial::TlsDialer;

use crate::config::ServerConfig;
use weir_grpc::internal::{
    ControllerClientError, ControllerHandler, ControllerHandlerError, GrpcControllerClient,
    GrpcFetchSessions, GrpcQuorumTransport,
};

/// This broker's cluster: its node and the registry that follows the node's metadata.
pub(crate) struct Cluster {
    pub(crate) node: ClusterNode,
    pub(crate) registry: Arc<TopicRegistry>,
    /// More than one voter, or this node is an observer: other brokers exist.
    pub(crate) multi_node: bool,
}

/// The voters and their internal addresses: the configured set, or this node alone at
/// `internal` (its own internal address) when none is configured.
fn voters(config: &ServerConfig, internal: &str) -> Vec<(BrokerId, String)> {
    if config.controller_voters.is_empty() {
        return vec![(config.node_id, internal.to_string())];
    }
    config
        .controller_voters
        .iter()
        .map(|v| (v.id, v.addr.clone()))
        .collect()
}

/// Starts the node (quorum voter, active controller) and the registry. `endpoints` are
/// the addresses other brokers and clients are told; `tls`, how they are dialled.
pub(crate) async fn start(
    config: &ServerConfig,
    tls: Option<TlsDialer>,
    lock: DataDirLock,
    cluster_id: Option<String>,
    endpoints: Endpoints,
) -> anyhow::Result<Cluster> {
    let voters = voters(config, endpoints.internal());
    let observer = !voters.iter().any(|(id, _)| *id == config.node_id);
    let multi_node = voters.len() > 1 || observer;
    let settings = ClusterSettings {
        node: config.node_id,
        voters,
        endpoints,
        rack: config.rack.clone(),
        cluster_id,
        quorum: QuorumConfig::default(),
        controller: ControllerConfig::default(),
    };
    let transport: Arc<dyn QuorumTransport>;
    let channel: Arc<dyn ControllerChannel>;
    let sessions: Option<Arc<dyn FetchSessions>>;
    if multi_node {
        transport = Arc::new(GrpcQuorumTransport::with_tls(tls.clone()));
        channel = Arc::new(GrpcChannel(
            GrpcControllerClient::default().with_tls(tls.clone()),
        ));
        sessions = Some(Arc::new(GrpcFetchSessions::with_tls(tls)));
    } else {
        transport = Arc::new(NoPeers);
        channel = Arc::new(NoPeers);
        sessions = None;
    }
    let node = ClusterNode::start(settings, &config.data_dir, transport, channel)
        .await
        .context("starting the metadata quorum")?;
    let registry = TopicRegistry::start(
        &config.data_dir,
        lock,
        node.clone(),
        sessions,
        config.log_storage.clone(),
    )
    .await
    .with_context(|| format!("opening data directory {}", config.data_dir.display()))?;
    Ok(Cluster {
        node,
        registry,
        multi_node,
    })
}

/// Controller calls to other voters, over the internal gRPC client.
struct GrpcChannel(GrpcControllerClient);

impl ControllerChannel for GrpcChannel {
    fn call(
        &self,
        address: String,
        request: ControllerRequest,
    ) -> BoxFuture<'_, Result<ControllerReply, CallError>> {
        Box::pin(async move { self.0.call(&address, &request).await.map_err(call_error) })
    }

    fn fetch_metadata(
        &self,
        address: String,
        from: MetadataOffset,
        wait: Duration,
    ) -> BoxFuture<'_, Result<MetadataDelta, CallError>> {
        Box::pin(async move {
            self.0
                .fetch_metadata(&address, from, 0, wait)
                .await
                .map_err(call_error)
        })
    }
}

/// A failed call to another voter, as the node sees it: "ask that one", or unreachable.
fn call_error(e: ControllerClientError) -> CallError {
    match e {
        ControllerClientError::NotController { leader, .. } => CallError::NotController {
            leader: leader.map(|(id, _)| id),
        },
        other => CallError::Unreachable(other.to_string()),
    }
}

/// The controller side of the internal `Controller` service: this node's active
/// controller, or where to find it.
pub(crate) struct Handler(pub(crate) ClusterNode);

impl ControllerHandler for Handler {
    fn call(
        &self,
        request: ControllerRequest,
    ) -> BoxFuture<'_, Result<ControllerReply, ControllerHandlerError>> {
        Box::pin(async move {
            self.0.serve_call(request).await.map_err(|e| match e {
                CallError::NotController { leader } => self.not_controller(leader),
                CallError::Unreachable(reason) => ControllerHandlerError::Unavailable { reason },
            })
        })
    }

    fn fetch_metadata(
        &self,
        from_offset: MetadataOffset,
        max_records: usize,
        wait: Duration,
    ) -> BoxFuture<'_, Result<MetadataDelta, ControllerHandlerError>> {
        Box::pin(async move {
            self.0
                .serve_metadata_fetch(from_offset, max_records, wait)
                .await
                .map_err(|e| match e {
                    ServeFetchError::NotController { leader } => self.not_controller(leader),
                    ServeFetchError::Invalid(reason) => {
                        ControllerHandlerError::InvalidArgument { reason }
                    }
                })
        })
    }
}

impl Handler {
    /// "Not the controller", naming the one that is with its internal address.
    fn not_controller(&self, leader: Option<BrokerId>) -> ControllerHandlerError {
        ControllerHandlerError::NotController {
            leader: leader.and_then(|id| Some((id, self.0.voter_address(id)?))),
        }
    }
}
