//! One broker's place in the cluster: a voter runs the metadata quorum and the active
//! controller when its quorum leads; an observer (a broker outside the voter set)
//! follows the active controller's committed metadata instead (`observer.rs`). Both
//! run their own lifecycle as a broker (registration, heartbeats, controlled shutdown);
//! every request for the controller goes through [`ClusterNode::call`], which reaches
//! the active controller wherever it runs. See `docs/replication.md` § 1.
//!
//! Other brokers are reached through two seams the broker implements over its internal
//! gRPC services: [`QuorumTransport`] (Raft) and [`ControllerChannel`] (controller
//! calls and metadata fetches). A single node is a cluster of one voter; it never uses
//! either.

mod active;
mod exchanges;
mod lifecycle;
mod observer;
mod producer_ids;
mod security;
mod tokens;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::controller::records::{BrokerEpoch, Endpoints, MetadataOffset};
use crate::controller::{
    ControllerConfig, ControllerError, ControllerReply, ControllerRequest, MetadataImage,
};
use crate::error::ClusterError;
use crate::partition::BrokerId;
use crate::quorum::{
    LegacyMigration, MetadataDelta, Quorum, QuorumConfig, QuorumError, QuorumTransport,
};
use crate::replication::BoxFuture;

pub use active::ActiveCall;
pub use lifecycle::BrokerState;
pub use observer::OBSERVER_FETCH_WAIT;

/// Longest a controller call waits for the active controller (elections included).
pub const CONTROLLER_CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// Pause between attempts to reach the active controller.
const CALL_RETRY_BACKOFF: Duration = Duration::from_millis(50);
/// Longest the active controller holds a caught-up observer's metadata fetch.
pub const MAX_METADATA_FETCH_WAIT: Duration = Duration::from_secs(1);
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

    /// Committed metadata from `from` on, from the voter at `address` if it is the
    /// active controller ([`ClusterNode::serve_metadata_fetch`] there); it may hold the
    /// fetch up to `wait` when there is nothing new.
    fn fetch_metadata(
        &self,
        address: String,
        from: MetadataOffset,
        wait: Duration,
    ) -> BoxFuture<'_, Result<MetadataDelta, CallError>>;
}

/// What a node needs to take its place in the cluster.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub node: BrokerId,
    /// The controller voters and the internal addresses they listen on; a node not
    /// among them is an observer.
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
    metadata: Metadata,
    active: active::CallQueues,
    channel: Arc<dyn ControllerChannel>,
    broker: watch::Sender<BrokerState>,
    producer_ids: producer_ids::IdBlock,
}

/// Where this node's metadata image comes from.
#[derive(Debug)]
enum Metadata {
    /// The quorum it votes in.
    Voter(Arc<Quorum>),
    /// The active controller it follows.
    Observer(Arc<observer::Observer>),
}

impl std::fmt::Debug for dyn ControllerChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ControllerChannel")
    }
}

impl ClusterNode {
    /// Starts this node's quorum voter (storage under `<data_dir>/metadata/`) and its
    /// active-controller task, or, for a node outside the voter set, the observer that
    /// follows the active controller's metadata. A single voter elects itself and
    /// migrates a data directory of a single-node broker (`metadata.weir`) first.
    ///
    /// Boxed so the quorum (openraft's core) and the controller are compiled in this
    /// crate once, not again in each crate that starts a node (an `async fn`'s body is
    /// compiled where it is awaited; docs/ARCHITECTURE.md § Build time).
    pub fn start(
        settings: ClusterSettings,
        data_dir: &Path,
        transport: Arc<dyn QuorumTransport>,
        channel: Arc<dyn ControllerChannel>,
    ) -> BoxFuture<'_, Result<ClusterNode, ClusterError>> {
        Box::pin(Self::start_node(settings, data_dir, transport, channel))
    }

    async fn start_node(
        settings: ClusterSettings,
        data_dir: &Path,
        transport: Arc<dyn QuorumTransport>,
        channel: Arc<dyn ControllerChannel>,
    ) -> Result<ClusterNode, ClusterError> {
        if !settings.voters.iter().any(|(id, _)| *id == settings.node) {
            return ClusterNode::start_observer(settings, data_dir, channel);
        }
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
        let (broker, _) = watch::channel(BrokerState::started());
        Ok(ClusterNode {
            inner: Arc::new(Inner {
                settings,
                metadata: Metadata::Voter(quorum),
                active,
                channel,
                broker,
                producer_ids: producer_ids::IdBlock::default(),
            }),
        })
    }

    fn start_observer(
        settings: ClusterSettings,
        data_dir: &Path,
        channel: Arc<dyn ControllerChannel>,
    ) -> Result<ClusterNode, ClusterError> {
        if settings.voters.is_empty() {
            return Err(ClusterError::Quorum(
                "a node outside the voter set needs the voters to follow; none is configured"
                    .to_string(),
            ));
        }
        if data_dir.join(crate::metadata::METADATA_FILE).exists() {
            return Err(ClusterError::Quorum(format!(
                "{} holds a single-node broker's metadata ({}); only a controller voter can migrate it: start this node as a voter",
                data_dir.display(),
                crate::metadata::METADATA_FILE
            )));
        }
        let observer = Arc::new(observer::Observer::new());
        tokio::spawn(observer::run(
            observer.clone(),
            settings.voters.clone(),
            channel.clone(),
        ));
        // Nothing reads the queues' other ends: `serve_call` answers NotController on
        // an observer before it would queue.
        let (active, _) = active::call_queues();
        let (broker, _) = watch::channel(BrokerState::started());
        tracing::info!(
            node = settings.node,
            voters = ?settings.voters,
            "observer broker: following the active controller's metadata"
        );
        Ok(ClusterNode {
            inner: Arc::new(Inner {
                settings,
                metadata: Metadata::Observer(observer),
                active,
                channel,
                broker,
                producer_ids: producer_ids::IdBlock::default(),
            }),
        })
    }

    pub fn node(&self) -> BrokerId {
        self.inner.settings.node
    }

    pub fn settings(&self) -> &ClusterSettings {
        &self.inner.settings
    }

    /// The quorum this node votes in (its internal service serves Raft RPCs with it);
    /// `None` on an observer.
    pub fn quorum(&self) -> Option<&Arc<Quorum>> {
        match &self.inner.metadata {
            Metadata::Voter(quorum) => Some(quorum),
            Metadata::Observer(_) => None,
        }
    }

    /// Whether this node is a controller voter (else an observer).
    pub fn is_voter(&self) -> bool {
        matches!(self.inner.metadata, Metadata::Voter(_))
    }

    /// The applied metadata image.
    pub fn image(&self) -> Arc<MetadataImage> {
        match &self.inner.metadata {
            Metadata::Voter(quorum) => quorum.image(),
            Metadata::Observer(observer) => observer.image(),
        }
    }

    /// The applied metadata image, as it changes.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        match &self.inner.metadata {
            Metadata::Voter(quorum) => quorum.subscribe(),
            Metadata::Observer(observer) => observer.subscribe(),
        }
    }

    /// This broker's registration and fencing, as the controller last answered.
    pub fn broker_state(&self) -> watch::Receiver<BrokerState> {
        self.inner.broker.subscribe()
    }

    /// The active controller's id, if known.
    pub fn controller(&self) -> Option<BrokerId> {
        match &self.inner.metadata {
            Metadata::Voter(quorum) => quorum.leader(),
            Metadata::Observer(observer) => observer.controller(),
        }
    }

    /// Serves a controller call that reached this node (from another broker): answered
    /// here if this node's quorum leads, else `NotController` naming the leader.
    pub async fn serve_call(
        &self,
        request: ControllerRequest,
    ) -> Result<ControllerReply, CallError> {
        if !self.is_voter() {
            return Err(CallError::NotController {
                leader: self.controller(),
            });
        }
        active::call(&self.inner.active, request).await
    }

    /// Serves an observer's metadata fetch that reached this node: the committed records
    /// from `from` on (or the whole image when `from` is older than the records kept),
    /// answered only by the active controller, so an observer always follows the
    /// quorum's newest commits. When there is nothing new it holds the fetch until a
    /// record is applied or `wait` (at most [`MAX_METADATA_FETCH_WAIT`]) has passed.
    pub async fn serve_metadata_fetch(
        &self,
        from: MetadataOffset,
        max_records: usize,
        wait: Duration,
    ) -> Result<MetadataDelta, ServeFetchError> {
        let Metadata::Voter(quorum) = &self.inner.metadata else {
            return Err(ServeFetchError::NotController {
                leader: self.controller(),
            });
        };
        let deadline = tokio::time::Instant::now() + wait.min(MAX_METADATA_FETCH_WAIT);
        let mut images = quorum.subscribe();
        loop {
            if !quorum.is_leader() {
                return Err(ServeFetchError::NotController {
                    leader: quorum.leader().filter(|l| *l != self.node()),
                });
            }
            images.borrow_and_update();
            let delta = quorum
                .records_since(from, max_records)
                .map_err(|e| ServeFetchError::Invalid(e.to_string()))?;
            let empty =
                matches!(&delta, MetadataDelta::Records { records, .. } if records.is_empty());
            if !empty {
                return Ok(delta);
            }
            // Woken by a new image, or at the deadline to answer "nothing new"; a lost
            // leadership shows at the next check (openraft steps down on its own timer,
            // so this also wakes at most every `LEADERSHIP_RECHECK`).
            let wake = deadline.min(tokio::time::Instant::now() + LEADERSHIP_RECHECK);
            match tokio::time::timeout_at(wake, images.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(ServeFetchError::Invalid("the quorum stopped".into())),
                Err(_) if tokio::time::Instant::now() >= deadline => return Ok(delta),
                Err(_) => {}
            }
        }
    }

    /// Sends `request` to the active controller, wherever it runs, retrying through
    /// elections and lost connections for up to [`CONTROLLER_CALL_TIMEOUT`]. A refusal
    /// comes back as `Ok(ControllerReply::Refused(_))`.
    pub async fn call(&self, request: ControllerRequest) -> Result<ControllerReply, ClusterError> {
        let deadline = tokio::time::Instant::now() + CONTROLLER_CALL_TIMEOUT;
        Ok(self.call_until(request, deadline).await?.0)
    }

    /// [`ClusterNode::call`] until `deadline`, each try cut off there too; with the answer,
    /// when the try that got it was sent. A broker's lease counts from that send
    /// (`lifecycle`): an answer to a heartbeat retried through an election is as fresh as
    /// its last try, not its first.
    pub(crate) async fn call_until(
        &self,
        request: ControllerRequest,
        deadline: tokio::time::Instant,
    ) -> Result<(ControllerReply, tokio::time::Instant), ClusterError> {
        let mut last = String::from("no controller answered");
        let mut turn = 0usize;
        while tokio::time::Instant::now() < deadline {
            // An observer that knows no controller asks each voter in turn: a voter
            // that is not the controller names the one that is.
            let leader = self.controller().or_else(|| {
                let voters = &self.inner.settings.voters;
                turn += 1;
                (!self.is_voter()).then(|| voters[turn % voters.len()].0)
            });
            let sent = tokio::time::Instant::now();
            let attempt = async {
                match leader {
                    Some(l) if l == self.node() => {
                        active::call(&self.inner.active, request.clone()).await
                    }
                    Some(l) => match self.voter_address(l) {
                        Some(address) => self.inner.channel.call(address, request.clone()).await,
                        None => Err(CallError::Unreachable(format!("voter {l} has no address"))),
                    },
                    None => Err(CallError::NotController { leader: None }),
                }
            };
            let result = tokio::time::timeout_at(deadline, attempt)
                .await
                .unwrap_or_else(|_| Err(CallError::Unreachable("no answer in time".into())));
            if let Metadata::Observer(observer) = &self.inner.metadata {
                match &result {
                    Err(CallError::NotController { leader }) => observer.set_controller(*leader),
                    Err(CallError::Unreachable(_)) => observer.set_controller(None),
                    Ok(_) => {}
                }
            }
            match result {
                Ok(reply) => return Ok((reply, sent)),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(CALL_RETRY_BACKOFF).await;
        }
        Err(ClusterError::ControllerUnavailable(last))
    }

    /// The internal address of voter `node`, if it is one.
    pub fn voter_address(&self, node: BrokerId) -> Option<String> {
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

    /// Hands the metadata quorum to the other voters before this node stops serving:
    /// a voter that is not the only one stops its Raft now, after its controlled
    /// shutdown has moved its leaderships and ISR memberships away. The others elect a
    /// controller among themselves (1.2-1.6 s with the default timeouts) while this
    /// node still serves its listeners, and nothing is left leading the quorum that no
    /// longer answers brokers' heartbeats. Before, an active controller whose node took
    /// 2.7 s to stop kept leading, heard no heartbeats once its listeners closed, and
    /// fenced every other broker (`docs/replication.md` § Broker lifecycle, step 5).
    /// A single voter keeps its quorum to the end: there is no one to hand it to.
    /// The image stays readable, and [`ClusterNode::shutdown`] is still to be called.
    pub async fn leave_quorum(&self) {
        let Metadata::Voter(quorum) = &self.inner.metadata else {
            return;
        };
        if self.inner.settings.voters.len() < 2 {
            return;
        }
        let was_leader = quorum.is_leader();
        match quorum.shutdown().await {
            Ok(()) => tracing::info!(
                node = self.node(),
                was_leader,
                "left the metadata quorum; the other voters go on without this one"
            ),
            Err(e) => tracing::warn!(error = %e, "leaving the metadata quorum"),
        }
    }

    /// Stops the quorum voter (if [`ClusterNode::leave_quorum`] has not), or the
    /// observer's metadata fetches.
    pub async fn shutdown(&self) {
        match &self.inner.metadata {
            Metadata::Voter(quorum) => {
                if let Err(e) = quorum.shutdown().await {
                    tracing::warn!(error = %e, "stopping the metadata quorum");
                }
            }
            Metadata::Observer(observer) => observer.stop(),
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
            metadata_level: crate::controller::records::METADATA_LEVEL,
        })
    }
}

/// How often a held metadata fetch checks that this voter still leads.
const LEADERSHIP_RECHECK: Duration = Duration::from_millis(100);

/// Why [`ClusterNode::serve_metadata_fetch`] gave no records.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ServeFetchError {
    /// This node is not the active controller; `leader` is, if known.
    #[error("not the active controller (the leader is {leader:?})")]
    NotController { leader: Option<BrokerId> },
    /// The fetch cannot be served as asked (an offset ahead of the log, a stopped
    /// quorum).
    #[error("{0}")]
    Invalid(String),
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
        ControllerError::InvalidReplicationFactor {
            replication_factor,
            brokers,
        } => ClusterError::InvalidReplicationFactor {
            replication_factor,
            brokers,
        },
        e @ ControllerError::InvalidReplicaAssignment { .. } => {
            ClusterError::InvalidReplicaAssignment(e.to_string())
        }
        e @ (ControllerError::UnknownCredential { .. } | ControllerError::UnknownToken { .. }) => {
            ClusterError::NotFound(e.to_string())
        }
        ControllerError::Exchange(e) => ClusterError::Exchange(e),
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
