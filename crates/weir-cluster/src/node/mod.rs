//! One broker's place in the cluster: it runs the metadata quorum (as a voter), the
//! active controller when its quorum leads, and its own lifecycle as a broker
//! (registration, heartbeats, controlled shutdown); every request for the controller
//! goes through [`ClusterNode::call`], which reaches the active controller wherever it
//! runs. See `docs/replication.md` § 1.
//!
//! Other brokers are reached through two seams the broker implements over its internal
//! gRPC services: [`QuorumTransport`] (Raft) and [`ControllerChannel`] (controller
//! calls). A single node is a cluster of one voter; it never uses either.

mod active;
mod lifecycle;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::controller::records::{BrokerEpoch, Endpoints};
use crate::controller::{
    ControllerConfig, ControllerError, ControllerReply, ControllerRequest, MetadataImage,
};
use crate::error::ClusterError;
use crate::partition::BrokerId;
use crate::quorum::{LegacyMigration, Quorum, QuorumConfig, QuorumError, QuorumTransport};
use crate::replication::BoxFuture;

pub use active::ActiveCall;
pub use lifecycle::BrokerState;

/// Longest a controller call waits for the active controller (elections included).
pub const CONTROLLER_CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// Pause between attempts to reach the active controller.
const CALL_RETRY_BACKOFF: Duration = Duration::from_millis(50);
/// Longest a fresh single-voter quorum may take to elect itself at start.
const START_LEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a call to a remote controller did not get an answer from it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The node called is not the active controller; `leader` is, if it knows.
    #[error("not the active controller (the leader is {leader:?})")]
    NotController { leader: Option<BrokerId> },
    #[error("unreachable: {0}")]
    Unreachable(String),
}

/// Calls the active controller on another voter (the broker's internal gRPC).
pub trait ControllerChannel: Send + Sync + 'static {
    fn call(
        &self,
        address: String,
        request: ControllerRequest,
    ) -> BoxFuture<'_, Result<ControllerReply, CallError>>;
}

/// What a node needs to take its place in the cluster.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub node: BrokerId,
    /// The controller voters and the internal addresses they listen on; this node must
    /// be one of them.
    pub voters: Vec<(BrokerId, String)>,
    /// Where clients and other brokers reach this node.
    pub endpoints: Endpoints,
    pub rack: Option<String>,
    /// The cluster id stamped in this node's data directory; `None` for a new directory
    /// joining a cluster: it adopts the cluster's id from the metadata (and a first
    /// active controller with none creates the cluster under a new id).
    pub cluster_id: Option<String>,
    pub quorum: QuorumConfig,
    pub controller: ControllerConfig,
}

/// This broker's handle on the cluster.
#[derive(Debug, Clone)]
pub struct ClusterNode {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: ClusterSettings,
    quorum: Arc<Quorum>,
    active: active::CallQueues,
    channel: Arc<dyn ControllerChannel>,
    broker: watch::Sender<BrokerState>,
}

impl std::fmt::Debug for dyn ControllerChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ControllerChannel")
    }
}

impl ClusterNode {
    /// Starts this node's quorum voter (storage under `<data_dir>/metadata/`) and its
    /// active-controller task. A single voter elects itself and migrates a data
    /// directory of a single-node broker (`metadata.weir`) first.
    pub async fn start(
        settings: ClusterSettings,
        data_dir: &Path,
        transport: Arc<dyn QuorumTransport>,
        channel: Arc<dyn ControllerChannel>,
    ) -> Result<ClusterNode, ClusterError> {
        let quorum = Quorum::start(
            settings.node,
            settings.voters.clone(),
            data_dir.join("metadata"),
            transport,
            settings.quorum.clone(),
        )
        .await
        .map_err(quorum_error)?;
        let quorum = Arc::new(quorum);
        if settings.voters.len() == 1 {
            quorum
                .wait_for_leader(START_LEADER_TIMEOUT)
                .await
                .map_err(quorum_error)?;
            match quorum
                .migrate_legacy(data_dir)
                .await
                .map_err(quorum_error)?
            {
                LegacyMigration::Migrated { topics, renamed_to } => tracing::info!(
                    topics,
                    renamed_to = %renamed_to.display(),
                    "migrated the single-node metadata into the metadata quorum"
                ),
                LegacyMigration::AlreadyMigrated { renamed_to } => tracing::info!(
                    renamed_to = %renamed_to.display(),
                    "finished migrating the single-node metadata"
                ),
                LegacyMigration::NothingToMigrate => {}
            }
        }
        let (active, calls) = active::call_queues();
        tokio::spawn(active::run(
            quorum.clone(),
            settings.controller.clone(),
            settings.cluster_id.clone(),
            calls,
        ));
        let (broker, _) = watch::channel(BrokerState::default());
        Ok(ClusterNode {
            inner: Arc::new(Inner {
                settings,
                quorum,
                active,
                channel,
                broker,
            }),
        })
    }

    pub fn node(&self) -> BrokerId {
        self.inner.settings.node
    }

    pub fn settings(&self) -> &ClusterSettings {
        &self.inner.settings
    }

    /// The quorum this node votes in (its internal service serves Raft RPCs with it).
    pub fn quorum(&self) -> &Arc<Quorum> {
        &self.inner.quorum
    }

    /// The applied metadata image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.inner.quorum.image()
    }

    /// The applied metadata image, as it changes.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.inner.quorum.subscribe()
    }

    /// This broker's registration and fencing, as the controller last answered.
    pub fn broker_state(&self) -> watch::Receiver<BrokerState> {
        self.inner.broker.subscribe()
    }

    /// The active controller's id, if known.
    pub fn controller(&self) -> Option<BrokerId> {
        self.inner.quorum.leader()
    }

    /// Serves a controller call that reached this node (from another broker): answered
    /// here if this node's quorum leads, else `NotController` naming the leader.
    pub async fn serve_call(
        &self,
        request: ControllerRequest,
    ) -> Result<ControllerReply, CallError> {
        active::call(&self.inner.active, request).await
    }

    /// Sends `request` to the active controller, wherever it runs, retrying through
    /// elections and lost connections for up to [`CONTROLLER_CALL_TIMEOUT`]. A refusal
    /// comes back as `Ok(ControllerReply::Refused(_))`.
    pub async fn call(&self, request: ControllerRequest) -> Result<ControllerReply, ClusterError> {
        let deadline = tokio::time::Instant::now() + CONTROLLER_CALL_TIMEOUT;
        let mut last = String::from("no controller answered");
        while tokio::time::Instant::now() < deadline {
            let leader = self.inner.quorum.leader();
            let result = match leader {
                Some(l) if l == self.node() => {
                    active::call(&self.inner.active, request.clone()).await
                }
                Some(l) => match self.voter_address(l) {
                    Some(address) => self.inner.channel.call(address, request.clone()).await,
                    None => Err(CallError::Unreachable(format!("voter {l} has no address"))),
                },
                None => Err(CallError::NotController { leader: None }),
            };
            match result {
                Ok(reply) => return Ok(reply),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(CALL_RETRY_BACKOFF).await;
        }
        Err(ClusterError::ControllerUnavailable(last))
    }

    fn voter_address(&self, node: BrokerId) -> Option<String> {
        self.inner
            .settings
            .voters
            .iter()
            .find(|(id, _)| *id == node)
            .map(|(_, a)| a.clone())
    }

    /// Registers this broker and heartbeats until `stopping` turns true; see
    /// [`lifecycle`](self::lifecycle).
    pub fn spawn_lifecycle(&self, stopping: watch::Receiver<bool>) {
        tokio::spawn(lifecycle::run(self.clone(), stopping));
    }

    /// Controlled shutdown: asks the controller to move this broker's leaderships away
    /// and waits (up to `timeout`) until it says the broker may stop.
    pub async fn controlled_shutdown(&self, timeout: Duration) {
        lifecycle::controlled_shutdown(self, timeout).await;
    }

    /// Stops the quorum voter.
    pub async fn shutdown(&self) {
        if let Err(e) = self.inner.quorum.shutdown().await {
            tracing::warn!(error = %e, "stopping the metadata quorum");
        }
    }

    /// The registration and heartbeat this broker sends.
    /// `None` while the cluster id is not known yet (a new directory, before the
    /// metadata names it).
    pub(crate) fn registration_request(&self, incarnation: &str) -> Option<ControllerRequest> {
        let s = &self.inner.settings;
        let cluster_id = match &s.cluster_id {
            Some(id) => id.clone(),
            None => self.image().cluster_id()?.to_string(),
        };
        Some(ControllerRequest::RegisterBroker {
            node: s.node,
            incarnation: incarnation.to_string(),
            endpoints: s.endpoints.clone(),
            rack: s.rack.clone(),
            cluster_id,
        })
    }
}

fn quorum_error(e: QuorumError) -> ClusterError {
    ClusterError::Quorum(e.to_string())
}

/// A controller refusal as the error a client gets.
pub fn refusal(e: ControllerError) -> ClusterError {
    match e {
        ControllerError::TopicExists(name) => ClusterError::TopicExists(name),
        ControllerError::UnknownTopic(name) => ClusterError::UnknownTopic(name),
        ControllerError::InvalidTopicName(e) => ClusterError::TopicName(e),
        ControllerError::InvalidConfig(e) => ClusterError::Config(e),
        ControllerError::ClusterNotCreated => {
            ClusterError::ControllerUnavailable(ControllerError::ClusterNotCreated.to_string())
        }
        other => ClusterError::InvalidRequest(other.to_string()),
    }
}

/// The broker epoch of a registration reply.
pub(crate) fn registered(reply: &ControllerReply) -> Option<BrokerEpoch> {
    match reply {
        ControllerReply::Registered { broker_epoch } => Some(*broker_epoch),
        _ => None,
    }
}
