//! The [`Quorum`] handle: starts a voter's Raft over the static voter set, proposes
//! records, and shows the applied image to the broker.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Debug};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, Raft, RaftMetrics, ServerState};
use tokio::sync::watch;

use crate::controller::{MetadataImage, MetadataOffset, MetadataRecord};
use crate::partition::BrokerId;

use super::config::QuorumConfig;
use super::elections::{Heard, SharedBallots, note_heard};
use super::error::QuorumError;
use super::log_store::{LogStore, MAX_ENTRY_BYTES};
use super::network::{Acknowledged, NetworkFactory, QuorumTransport, serve};
use super::state_machine::{Applied, MetadataDelta, StateMachine};
use super::types::{MetadataEntry, NodeId, TypeConfig, broker_id, node_id};

/// Room left in an entry's frame for its log id and JSON framing around the proposal.
const ENTRY_OVERHEAD_BYTES: usize = 4096;
/// The largest proposal (its records, JSON-encoded).
pub const MAX_PROPOSAL_BYTES: usize = MAX_ENTRY_BYTES - ENTRY_OVERHEAD_BYTES;

/// Where this voter stands, for logs, metrics and admin answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumStatus {
    pub node: BrokerId,
    pub leader: Option<BrokerId>,
    pub is_leader: bool,
    pub term: u64,
    /// Raft index of the last log entry.
    pub last_log_index: Option<u64>,
    /// Raft index of the last applied entry.
    pub applied_index: Option<u64>,
    /// Raft index the latest snapshot covers.
    pub snapshot_index: Option<u64>,
    /// Raft index up to which the log was purged.
    pub purged_index: Option<u64>,
    /// The applied image's next metadata offset.
    pub metadata_offset: MetadataOffset,
}

/// One voter's replication as the quorum's leader sees it (Kafka's DescribeQuorum).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoterProgress {
    pub node: BrokerId,
    /// The Raft index of the last entry the leader knows it holds (`None`: none yet).
    pub last_log_index: Option<u64>,
    /// When it last accepted this leader's leadership (the leader itself: now).
    pub last_ack: Option<Instant>,
}

/// A running voter of the metadata quorum. Cheap to clone; clones share the voter.
#[derive(Clone)]
pub struct Quorum {
    inner: Arc<Inner>,
}

struct Inner {
    node: BrokerId,
    voters: BTreeMap<BrokerId, String>,
    dir: PathBuf,
    config: QuorumConfig,
    raft: Raft<TypeConfig>,
    applied: Arc<Applied>,
    /// When each other voter last reached this one.
    heard: Heard,
    /// This voter's votes and campaigns, for [`Quorum::elected_at`].
    ballots: SharedBallots,
    /// When each other voter last accepted this one's leadership (check-quorum).
    acknowledged: Acknowledged,
    /// [`Quorum::shutdown`] was called (a stopping voter leaves the quorum before the
    /// broker's last step, which stops it again).
    stopped: std::sync::atomic::AtomicBool,
}

/// The term and leader `metrics` name once a quorum has granted that leadership.
fn elected_of(metrics: &RaftMetrics<NodeId, BasicNode>) -> Option<(u64, BrokerId)> {
    if !metrics.vote.is_committed() {
        return None;
    }
    let leader = metrics.vote.leader_id().voted_for().and_then(broker_id)?;
    Some((metrics.vote.leader_id().get_term(), leader))
}

impl Debug for Quorum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Quorum")
            .field("node", &self.inner.node)
            .field("voters", &self.inner.voters)
            .field("dir", &self.inner.dir)
            .finish()
    }
}

/// The voter set as a map, checked: non-empty, ids non-negative and distinct,
/// addresses non-empty.
fn check_voters(
    voters: Vec<(BrokerId, String)>,
) -> Result<BTreeMap<BrokerId, String>, QuorumError> {
    if voters.is_empty() {
        return Err(QuorumError::InvalidVoters("no voters given".into()));
    }
    let mut map = BTreeMap::new();
    for (id, address) in voters {
        if id < 0 {
            return Err(QuorumError::InvalidVoters(format!(
                "voter id {id} is negative"
            )));
        }
        if address.trim().is_empty() {
            return Err(QuorumError::InvalidVoters(format!(
                "voter {id} has no address"
            )));
        }
        if map.insert(id, address).is_some() {
            return Err(QuorumError::InvalidVoters(format!(
                "voter {id} is given twice"
            )));
        }
    }
    Ok(map)
}

impl Quorum {
    /// Starts this voter: opens (or creates) its storage in `dir` (the broker passes
    /// `<data_dir>/metadata/`), starts Raft, and on a fresh store forms the quorum with
    /// exactly `voters`. Every voter forms it with the same set, which openraft makes
    /// safe; a store formed earlier must have been formed with the same voter ids.
    ///
    /// `node` must be one of `voters`: brokers outside the voter set observe the quorum
    /// (through the leader's records) and do not run it.
    pub async fn start(
        node: BrokerId,
        voters: Vec<(BrokerId, String)>,
        dir: impl Into<PathBuf>,
        transport: Arc<dyn QuorumTransport>,
        config: QuorumConfig,
    ) -> Result<Quorum, QuorumError> {
        let voters = check_voters(voters)?;
        if !voters.contains_key(&node) {
            return Err(QuorumError::NotAVoter {
                node,
                voters: voters.keys().copied().collect(),
            });
        }
        let raft_config = Arc::new(config.to_raft()?);
        let dir = dir.into();
        let open_dir = dir.clone();
        let segment_bytes_max = config.log_segment_bytes_max;
        let (log_store, (state_machine, applied)) = tokio::task::spawn_blocking(move || {
            let log_store = LogStore::open(&open_dir, segment_bytes_max)?;
            Ok::<_, QuorumError>((log_store, StateMachine::open(&open_dir)?))
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;

        let members: BTreeMap<NodeId, BasicNode> = voters
            .iter()
            .map(|(id, address)| {
                let id = node_id(*id).expect("voter ids were checked");
                (id, BasicNode::new(address.clone()))
            })
            .collect();
        let acknowledged = Acknowledged::default();
        let heard = Heard::default();
        let ballots = SharedBallots::default();
        let network = NetworkFactory {
            transport,
            acknowledged: acknowledged.clone(),
            heard: heard.clone(),
            ballots: ballots.clone(),
            failures: Arc::new(crate::peer_log::PeerLog::new("quorum RPCs")),
            addresses: Arc::new(
                members
                    .iter()
                    .map(|(id, node)| (*id, node.addr.clone()))
                    .collect(),
            ),
        };
        let me = node_id(node).expect("voter ids were checked");
        let raft = Raft::new(me, raft_config, network, log_store, state_machine)
            .await
            .map_err(QuorumError::stopped)?;

        let quorum = Quorum {
            inner: Arc::new(Inner {
                node,
                voters,
                dir,
                config,
                raft,
                applied,
                heard,
                ballots,
                acknowledged,
                stopped: std::sync::atomic::AtomicBool::new(false),
            }),
        };
        if let Err(e) = quorum.form(members).await {
            // Do not leave a Raft running that the caller has no handle to.
            let _ = quorum.inner.raft.shutdown().await;
            return Err(e);
        }
        Ok(quorum)
    }

    /// Forms the quorum on a fresh store, or checks a formed one has the same voters.
    async fn form(&self, members: BTreeMap<NodeId, BasicNode>) -> Result<(), QuorumError> {
        let raft = &self.inner.raft;
        let configured: BTreeSet<NodeId> = members.keys().copied().collect();
        if !raft.is_initialized().await.map_err(QuorumError::stopped)? {
            match raft.initialize(members).await {
                Ok(()) => {
                    tracing::info!(node = self.inner.node, voters = ?self.inner.voters.keys(), "metadata quorum formed");
                    return Ok(());
                }
                // Formed meanwhile: a peer's entries or vote arrived first. Checked below.
                Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(RaftError::APIError(e @ InitializeError::NotInMembers(_))) => {
                    unreachable!("this node is among the voters it forms: {e}")
                }
                Err(RaftError::Fatal(fatal)) => return Err(QuorumError::stopped(fatal)),
            }
        }
        let stored: BTreeSet<NodeId> = raft
            .with_raft_state(|state| {
                state
                    .membership_state
                    .effective()
                    .membership()
                    .voter_ids()
                    .collect()
            })
            .await
            .map_err(QuorumError::stopped)?;
        // An empty membership: formed by a vote only, the entries are still to come.
        if !stored.is_empty() && stored != configured {
            let ids = |set: &BTreeSet<NodeId>| set.iter().filter_map(|n| broker_id(*n)).collect();
            return Err(QuorumError::VotersChanged {
                dir: self.inner.dir.clone(),
                stored: ids(&stored),
                configured: ids(&configured),
            });
        }
        Ok(())
    }

    /// This voter's broker id.
    pub fn node(&self) -> BrokerId {
        self.inner.node
    }

    /// The voter set, by broker id.
    pub fn voters(&self) -> &BTreeMap<BrokerId, String> {
        &self.inner.voters
    }

    /// Commits `records` as one entry (they apply together, in order) and returns the
    /// metadata offset of the first. Only the leader (the active controller) accepts
    /// proposals; elsewhere this is [`QuorumError::NotLeader`] naming the leader, if
    /// known, to forward to.
    pub async fn propose(
        &self,
        records: Vec<MetadataRecord>,
    ) -> Result<MetadataOffset, QuorumError> {
        if records.is_empty() {
            return Err(QuorumError::EmptyProposal);
        }
        self.propose_entry(MetadataEntry::Records(records)).await
    }

    pub(crate) async fn propose_entry(
        &self,
        entry: MetadataEntry,
    ) -> Result<MetadataOffset, QuorumError> {
        let bytes = serde_json::to_vec(&entry)
            .expect("metadata records serialise")
            .len();
        if bytes > MAX_PROPOSAL_BYTES {
            return Err(QuorumError::ProposalTooLarge {
                bytes,
                max: MAX_PROPOSAL_BYTES,
            });
        }
        match self.inner.raft.client_write(entry).await {
            Ok(reply) => Ok(reply.data.first_offset),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                Err(QuorumError::NotLeader {
                    leader: forward.leader_id.and_then(broker_id),
                })
            }
            Err(RaftError::APIError(e @ ClientWriteError::ChangeMembershipError(_))) => {
                unreachable!("a metadata entry is not a membership change: {e}")
            }
            Err(RaftError::Fatal(fatal)) => Err(QuorumError::stopped(fatal)),
        }
    }

    /// The applied metadata image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.inner.applied.image()
    }

    /// The applied image, as it changes.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.inner.applied.subscribe()
    }

    /// Up to `max` applied records from metadata offset `offset` on, for observers; the
    /// whole image if `offset` is older than the records kept in memory
    /// ([`MAX_TAIL_RECORDS`](super::MAX_TAIL_RECORDS)). An observer should ask the
    /// leader, whose applied records are committed (so are every voter's).
    pub fn records_since(
        &self,
        offset: MetadataOffset,
        max: usize,
    ) -> Result<MetadataDelta, QuorumError> {
        self.inner.applied.records_since(offset, max)
    }

    /// The leader this voter knows of: not itself while it leads without a quorum's
    /// recent acknowledgement ([`Quorum::is_leader`]).
    pub fn leader(&self) -> Option<BrokerId> {
        let leader = self
            .inner
            .raft
            .metrics()
            .borrow()
            .current_leader
            .and_then(broker_id);
        leader.filter(|l| *l != self.inner.node || self.in_contact_with_quorum())
    }

    /// Whether this voter is the leader (the active controller), as far as it knows, and
    /// a majority of the voters (itself included) accepted its leadership within the last
    /// election timeout (check-quorum): a leader cut off from the others stops acting as
    /// the active controller at once, instead of answering its own broker's heartbeats
    /// (which kept that broker's partition leaders leading) and failing to commit every
    /// change while the others elect a new leader. The others cannot elect one before
    /// then: openraft's voters refuse votes for the maximum election timeout after they
    /// last heard from their leader, and the acknowledgement counted here was sent
    /// before that.
    pub fn is_leader(&self) -> bool {
        self.inner.raft.metrics().borrow().state == ServerState::Leader
            && self.in_contact_with_quorum()
    }

    /// Whether a majority of the voters, this one included, accepted a request this one
    /// sent within the last maximum election timeout (always true for a lone voter).
    fn in_contact_with_quorum(&self) -> bool {
        let voters = self.inner.voters.len();
        let lease = Duration::from_millis(self.inner.config.election_timeout_max_ms);
        let now = Instant::now();
        let acknowledged = self
            .inner
            .acknowledged
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let recent = self
            .inner
            .voters
            .keys()
            .filter(|v| **v != self.inner.node)
            .filter(|v| {
                acknowledged
                    .get(v)
                    .is_some_and(|at| now.duration_since(*at) <= lease)
            })
            .count();
        recent + 1 > voters / 2
    }

    /// Each voter's replication, by node id, if this voter leads the quorum (only the
    /// leader knows it); `None` otherwise.
    pub fn voter_progress(&self) -> Option<Vec<VoterProgress>> {
        let metrics = self.inner.raft.metrics().borrow().clone();
        if metrics.state != ServerState::Leader {
            return None;
        }
        let replication = metrics.replication.unwrap_or_default();
        let acknowledged = self
            .inner
            .acknowledged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Some(
            self.inner
                .voters
                .keys()
                .map(|&node| {
                    if node == self.inner.node {
                        return VoterProgress {
                            node,
                            last_log_index: metrics.last_log_index,
                            last_ack: Some(Instant::now()),
                        };
                    }
                    VoterProgress {
                        node,
                        last_log_index: node_id(node)
                            .and_then(|id| replication.get(&id).copied().flatten())
                            .map(|l| l.index),
                        last_ack: acknowledged.get(&node).copied(),
                    }
                })
                .collect(),
        )
    }

    /// Where this voter stands.
    pub fn status(&self) -> QuorumStatus {
        self.status_of(&self.inner.raft.metrics().borrow())
    }

    fn status_of(&self, metrics: &RaftMetrics<NodeId, BasicNode>) -> QuorumStatus {
        QuorumStatus {
            node: self.inner.node,
            leader: metrics.current_leader.and_then(broker_id),
            is_leader: metrics.state == ServerState::Leader,
            term: metrics.current_term,
            last_log_index: metrics.last_log_index,
            applied_index: metrics.last_applied.map(|l| l.index),
            snapshot_index: metrics.snapshot.map(|l| l.index),
            purged_index: metrics.purged.map(|l| l.index),
            metadata_offset: self.image().next_offset(),
        }
    }

    /// Waits until `done` holds of this voter's status, for at most `timeout`; wakes at
    /// every change of it (no polling).
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&QuorumStatus) -> bool,
    ) -> Result<QuorumStatus, QuorumError> {
        let mut metrics = self.inner.raft.metrics();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // The image is published before openraft reports the entry applied, so a
            // status read here is never ahead of the image.
            let status = self.status_of(&metrics.borrow_and_update());
            if done(&status) {
                return Ok(status);
            }
            match tokio::time::timeout_at(deadline, metrics.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(QuorumError::stopped(openraft::error::Fatal::Stopped)),
                Err(_) => {
                    return Err(QuorumError::TimedOut {
                        waited_ms: timeout.as_millis() as u64,
                        status: Box::new(status),
                    });
                }
            }
        }
    }

    /// Resolves once openraft's core stopped on this node by itself, with why: after
    /// any storage error it stops for good (the node then votes no more, and a broker
    /// running on would be cut off from the quorum until restarted). Never resolves
    /// while the core runs, nor after a shutdown asked for ([`Quorum::shutdown`]).
    pub async fn stopped(&self) -> String {
        let mut metrics = self.inner.raft.metrics();
        loop {
            let state = metrics.borrow_and_update().running_state.clone();
            match state {
                Ok(()) => {}
                Err(openraft::error::Fatal::Stopped) => return std::future::pending().await,
                Err(fatal) => return fatal.to_string(),
            }
            if metrics.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// Waits until this voter knows a leader, for at most `timeout`.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<BrokerId, QuorumError> {
        match self.wait_until(timeout, |s| s.leader.is_some()).await {
            Ok(status) => Ok(status.leader.expect("waited for it")),
            Err(QuorumError::TimedOut { waited_ms, .. }) => {
                Err(QuorumError::NoLeader { waited_ms })
            }
            Err(e) => Err(e),
        }
    }

    /// Serves one RPC another voter sent through its [`QuorumTransport`]: `request` is
    /// the bytes it sent, the result the reply bytes to give back. An error means the
    /// request was malformed (reply with an invalid-argument status).
    pub async fn handle_rpc(&self, request: &[u8]) -> Result<Vec<u8>, QuorumError> {
        let received = Instant::now();
        let served = serve(&self.inner.raft, request).await?;
        let sender = served
            .sender
            .and_then(broker_id)
            .filter(|n| *n != self.inner.node);
        if let Some(node) = sender {
            note_heard(&self.inner.heard, node, received);
            if let Some(term) = served.granted_term {
                self.inner
                    .ballots
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .granted(term, node);
            }
        }
        Ok(served.reply)
    }

    /// When each other voter last reached this one (its Raft request arrived, as a
    /// leader's replication or heartbeat or a candidate's vote request, or its granted
    /// vote came back): the last time this voter knew that node to be alive. A new active
    /// controller counts broker sessions from it
    /// ([`Controller::activate`](crate::controller::Controller::activate)).
    pub fn last_heard(&self) -> BTreeMap<BrokerId, Instant> {
        self.inner
            .heard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The current leader and term, once a quorum has granted that leadership: the
    /// moments [`Quorum::elected_at`] answers for change with them.
    pub fn elected_leader(&self) -> Option<(u64, BrokerId)> {
        elected_of(&self.inner.raft.metrics().borrow())
    }

    /// Waits until the elected leader differs from `seen` and returns it; `None` once this
    /// voter's Raft has stopped. Looks at each change of the metrics in place (the
    /// leader's change with every replication step).
    pub async fn next_elected_leader(
        &self,
        seen: Option<(u64, BrokerId)>,
    ) -> Option<Option<(u64, BrokerId)>> {
        let mut metrics = self.inner.raft.metrics();
        loop {
            let now = elected_of(&metrics.borrow_and_update());
            if now != seen {
                return Some(now);
            }
            metrics.changed().await.ok()?;
        }
    }

    /// When the election of the current leader started to vouch for this voter's broker,
    /// if this voter voted for it or is it: no controller elected in this term fences
    /// this broker before a session timeout after that moment (`elections`' module docs
    /// say why, and when a broker may count its lease from it).
    pub fn elected_at(&self) -> Option<Instant> {
        let (term, leader) = self.elected_leader()?;
        self.inner
            .ballots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .vouched(self.inner.node, term, leader)
    }

    /// Stops this voter's Raft. Proposals fail with [`QuorumError::Stopped`] afterwards;
    /// the applied image stays readable. Calls after the first do nothing.
    pub async fn shutdown(&self) -> Result<(), QuorumError> {
        if self
            .inner
            .stopped
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return Ok(());
        }
        self.inner
            .raft
            .shutdown()
            .await
            .map_err(QuorumError::Shutdown)
    }

    pub(crate) fn raft(&self) -> &Raft<TypeConfig> {
        &self.inner.raft
    }

    pub(crate) fn applied(&self) -> &Applied {
        &self.inner.applied
    }

    pub(crate) fn config(&self) -> &QuorumConfig {
        &self.inner.config
    }
}
