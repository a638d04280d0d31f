//! The data directory lock, and a single-node broker: a cluster of one voter whose
//! quorum and controller never talk to another broker.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{TOPICS_DIR, TopicRegistry};
use crate::controller::ControllerConfig;
use crate::controller::records::Endpoints;
use crate::error::ClusterError;
use crate::node::{CallError, ClusterNode, ClusterSettings, ControllerChannel};
use crate::node_identity::NodeIdentity;
use crate::partition::{BrokerId, LogStorage};
use crate::quorum::{QuorumConfig, QuorumTransport, RpcFuture, RpcKind, TransportError};
use crate::replication::BoxFuture;

/// Longest a single node waits to register and be unfenced by its own controller.
const SINGLE_NODE_READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Holds the data directory for one broker process (released when dropped).
#[derive(Debug)]
pub struct DataDirLock(#[allow(dead_code)] File);

impl TopicRegistry {
    /// Takes the data directory for this process; a second broker on it is refused.
    pub fn lock_data_dir(data_dir: &Path) -> Result<DataDirLock, ClusterError> {
        let io = |p: &Path| {
            let path = p.to_path_buf();
            move |source| ClusterError::Io { path, source }
        };
        std::fs::create_dir_all(data_dir.join(TOPICS_DIR)).map_err(io(data_dir))?;
        let file =
            weir_log::storage::lock_dir(data_dir, "the data directory is in use by another broker")
                .map_err(io(&data_dir.join(weir_log::storage::LOCK_FILE)))?;
        Ok(DataDirLock(file))
    }
}

/// The cluster id of a data directory, stamping it first if it has no stamp (keeping a
/// single-node `metadata.weir`'s cluster id, which is migrated into the quorum).
async fn cluster_id_of(data_dir: &Path, node: BrokerId) -> Result<String, ClusterError> {
    let dir = data_dir.to_path_buf();
    let identity = tokio::task::spawn_blocking(move || NodeIdentity::load_or_create(&dir, node))
        .await
        .map_err(|e| ClusterError::TaskFailed(e.to_string()))?
        .map_err(|e| ClusterError::Quorum(e.to_string()))?;
    Ok(identity.cluster_id().to_string())
}

/// The settings of a cluster of one voter, `node`.
pub fn single_node_settings(node: BrokerId, cluster_id: String, endpoint: &str) -> ClusterSettings {
    ClusterSettings {
        node,
        voters: vec![(node, endpoint.to_string())],
        endpoints: Endpoints::new(endpoint.to_string(), endpoint.to_string()),
        rack: None,
        cluster_id: Some(cluster_id),
        quorum: QuorumConfig::default(),
        controller: ControllerConfig::default(),
    }
}

pub(super) async fn open_single_node(
    data_dir: &Path,
    node: BrokerId,
) -> Result<Arc<TopicRegistry>, ClusterError> {
    let lock = TopicRegistry::lock_data_dir(data_dir)?;
    let cluster_id = cluster_id_of(data_dir, node).await?;
    let settings = single_node_settings(node, cluster_id, "localhost:0");
    let cluster =
        ClusterNode::start(settings, data_dir, Arc::new(NoPeers), Arc::new(NoPeers)).await?;
    let registry =
        TopicRegistry::start(data_dir, lock, cluster.clone(), None, LogStorage::default()).await?;
    let (stop, stopping) = watch::channel(false);
    cluster.spawn_lifecycle(stopping);
    registry.keep_until_dropped(stop);
    wait_unfenced(&cluster).await?;
    registry.wait_current().await;
    Ok(registry)
}

/// Waits until this broker is registered and unfenced, and its replicas may lead
/// (`BrokerState::starting` is over).
pub async fn wait_unfenced(cluster: &ClusterNode) -> Result<(), ClusterError> {
    let mut state = cluster.broker_state();
    let ready = state.wait_for(|s| {
        (s.broker_epoch.is_some() && !s.fenced && !s.starting) || s.refused.is_some()
    });
    match tokio::time::timeout(SINGLE_NODE_READY_TIMEOUT, ready).await {
        Ok(Ok(s)) => match &s.refused {
            Some(reason) => Err(ClusterError::Refused(reason.clone())),
            None => Ok(()),
        },
        _ => Err(ClusterError::ControllerUnavailable(format!(
            "broker {} was not registered and unfenced within {} s",
            cluster.node(),
            SINGLE_NODE_READY_TIMEOUT.as_secs()
        ))),
    }
}

/// The transport of a single voter: there is nobody to talk to.
#[derive(Debug)]
pub struct NoPeers;

impl QuorumTransport for NoPeers {
    fn send<'a>(
        &'a self,
        target: BrokerId,
        address: &'a str,
        _kind: RpcKind,
        _request: Vec<u8>,
    ) -> RpcFuture<'a> {
        Box::pin(async move {
            Err(TransportError::Unreachable {
                target,
                address: address.to_string(),
                source: "a single-node broker has no other voters".into(),
            })
        })
    }
}

impl ControllerChannel for NoPeers {
    fn call(
        &self,
        address: String,
        _request: crate::controller::ControllerRequest,
    ) -> BoxFuture<'_, Result<crate::controller::ControllerReply, CallError>> {
        Box::pin(async move {
            Err(CallError::Unreachable(format!(
                "{address}: a single-node broker has no other controller"
            )))
        })
    }

    fn fetch_metadata(
        &self,
        address: String,
        _from: crate::controller::records::MetadataOffset,
        _wait: Duration,
    ) -> BoxFuture<'_, Result<crate::quorum::MetadataDelta, CallError>> {
        Box::pin(async move {
            Err(CallError::Unreachable(format!(
                "{address}: a single-node broker has no other controller"
            )))
        })
    }
}
