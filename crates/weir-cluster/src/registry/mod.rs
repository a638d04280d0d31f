//! The topic registry: every topic the metadata image names, and the partitions this
//! broker hosts (the replica manager). The image, applied from the metadata quorum, is
//! the only source of truth: [`TopicRegistry`] follows it (`apply.rs`), opening the
//! partitions it assigns this broker, feeding them their leader, epochs and ISR, and
//! closing (and deleting) those of deleted topics and the replicas a reassignment moved
//! away. Admin changes go to the active controller (`admin.rs`) and return once the
//! local image holds them. Followers fetch from their leaders over one session per
//! leader (`fetchers.rs`).
//!
//! Data directory layout (byte by byte in `docs/storage-format.md`):
//!
//! ```text
//! <data_dir>/.lock                     held while a broker uses the directory
//! <data_dir>/node.weir                 node id and cluster id (node_identity.rs)
//! <data_dir>/metadata.weir             a single-node broker's metadata from before the
//!                                      quorum, until a voter migrates it (quorum/legacy.rs)
//! <data_dir>/metadata/                 the metadata quorum's log, vote and snapshot
//!                                      (controller voters only; observers keep none)
//! <data_dir>/topics/<topic_id>/<n>/    partition n's log (weir-log's layout)
//! <data_dir>/topics/.orphaned/<id>/    directories no topic named, moved aside
//! ```
//!
//! Directories are named by topic id, not name, so deleting and re-creating a name
//! never mixes two incarnations' files. A directory the image does not name is kept
//! until the image is known to be current (this broker was unfenced: the controller
//! does that only once the broker has caught up with the metadata), then moved aside,
//! never deleted on a guess.

mod admin;
mod apply;
mod fetchers;
mod local;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use crate::config::TopicConfig;
use crate::controller::records::{MetadataOffset, NO_LEADER, PartitionRegistration};
use crate::error::ClusterError;
use crate::node::ClusterNode;
use crate::partition::{BrokerId, DataDirStatus, LogStorage, Partition};
use crate::replication::BoxFuture;
use crate::replication::FetchSessions;
use crate::topic_name::is_internal;

pub use fetchers::{REPLICA_FETCH_MAX_BYTES, REPLICA_FETCH_WAIT};
pub use local::{DataDirLock, NoPeers, single_node_settings, wait_unfenced};

/// Most partitions one topic may have; each is a directory with open files.
pub const MAX_PARTITIONS_PER_TOPIC: u32 = 10_000;
/// Directory under the data directory holding partition logs.
const TOPICS_DIR: &str = "topics";
/// Where directories no topic names are moved (under `TOPICS_DIR`).
const ORPHANED_DIR: &str = ".orphaned";

/// Why a topic could not be applied here.
#[derive(Debug, Clone)]
struct ApplyFailure {
    error: String,
    /// A resource limit (open files, disk space), not a fault.
    exhausted: bool,
}

/// One partition of a topic as this broker sees it.
#[derive(Debug, Clone)]
enum Slot {
    /// This broker holds a replica.
    Hosted(Arc<Partition>),
    /// Only other brokers do.
    Elsewhere(PartitionRegistration),
}

/// One topic: its identity, settings and partitions.
#[derive(Debug)]
pub struct Topic {
    pub name: String,
    pub topic_id: String,
    pub replication_factor: u32,
    config: RwLock<TopicConfig>,
    partitions: RwLock<Vec<Slot>>,
}

impl Topic {
    /// The partition numbered `index`, if this broker holds a replica of it; NOT_LEADER
    /// naming its leader if only other brokers do.
    pub fn partition(&self, index: u32) -> Result<Arc<Partition>, ClusterError> {
        let partitions = self.partitions.read().expect("partitions lock");
        match partitions.get(index as usize) {
            Some(Slot::Hosted(p)) => Ok(p.clone()),
            Some(Slot::Elsewhere(reg)) => Err(ClusterError::NotLeader {
                topic: self.name.clone(),
                partition: index,
                leader: reg.leader,
            }),
            None => Err(ClusterError::UnknownPartition {
                topic: self.name.clone(),
                partition: index,
                count: partitions.len() as u32,
            }),
        }
    }

    /// The leader of partition `index` as this broker knows it (`NO_LEADER` while it
    /// has none); `None` for a partition the topic does not have.
    pub fn leader(&self, index: u32) -> Option<BrokerId> {
        let partitions = self.partitions.read().expect("partitions lock");
        Some(match partitions.get(index as usize)? {
            Slot::Hosted(p) => p.state().leader,
            Slot::Elsewhere(reg) => reg.leader,
        })
    }

    /// The partitions this broker holds a replica of.
    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .expect("partitions lock")
            .iter()
            .filter_map(|s| match s {
                Slot::Hosted(p) => Some(p.clone()),
                Slot::Elsewhere(_) => None,
            })
            .collect()
    }

    /// Leader, epochs, replicas and ISR of every partition, hosted here or not, in
    /// partition order (hosted ones as their replica last applied them).
    pub fn registrations(&self) -> Vec<PartitionRegistration> {
        self.partitions
            .read()
            .expect("partitions lock")
            .iter()
            .map(|s| match s {
                Slot::Hosted(p) => p.registration(),
                Slot::Elsewhere(reg) => reg.clone(),
            })
            .collect()
    }

    pub fn partition_count(&self) -> u32 {
        self.partitions.read().expect("partitions lock").len() as u32
    }

    pub fn config(&self) -> TopicConfig {
        self.config.read().expect("config lock").clone()
    }

    pub fn is_internal(&self) -> bool {
        is_internal(&self.name)
    }
}

/// Every topic the metadata names, and the partitions this broker hosts.
#[derive(Debug)]
pub struct TopicRegistry {
    data_dir: PathBuf,
    node: ClusterNode,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Hosted partitions by topic id and index (fetches name partitions that way).
    hosted: fetchers::Hosted,
    /// Fetch sessions to leaders and ISR proposals; `None` on a single node.
    replication: Option<Arc<fetchers::Replication>>,
    /// What every hosted partition's log goes through (the file system outside tests).
    storage: LogStorage,
    /// Online until a disk that keeps failing takes the data directory offline.
    data_dir_status: DataDirStatus,
    /// The metadata offset the registry has applied up to.
    applied: watch::Sender<MetadataOffset>,
    /// One image application at a time.
    apply_lock: tokio::sync::Mutex<()>,
    /// Bumped after every change of the set of topics or their partition counts.
    metadata_version: AtomicU64,
    /// Topics (by id) whose last application failed here, with the error: a create
    /// waiting for its topic learns from this that it will not come.
    apply_failures: std::sync::Mutex<HashMap<String, ApplyFailure>>,
    /// Stops what runs on the registry's behalf (a single node's broker lifecycle) when
    /// the registry goes.
    stop: std::sync::Mutex<Option<watch::Sender<bool>>>,
    /// Leadership and ISR changes seen in the metadata, for the metrics.
    changes: std::sync::Mutex<ReplicationChanges>,
    /// The data directory's lock: held while the registry lives, or until
    /// [`release_data_dir`](Self::release_data_dir).
    lock: std::sync::Mutex<Option<DataDirLock>>,
}

/// Leadership and ISR changes this broker has seen in the metadata since it started
/// (`weir_leader_elections_total`, `weir_isr_shrinks_total`, `weir_isr_expands_total`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReplicationCounters {
    /// Leader changes of any partition of the cluster (the same on every broker that has
    /// seen the same metadata).
    pub leader_elections: u64,
    /// ISR shrinks of partitions this broker leads.
    pub isr_shrinks: u64,
    /// ISR expansions of partitions this broker leads.
    pub isr_expands: u64,
}

#[derive(Debug, Default)]
struct ReplicationChanges {
    counters: ReplicationCounters,
    /// Each partition's leader epoch and ISR when last seen.
    seen: HashMap<(String, u32), (i32, Vec<BrokerId>)>,
}

impl ReplicationChanges {
    /// Counts what changed in `registration` since it was last seen (nothing the first
    /// time: a start is no election).
    /// A change under the same leadership that both adds and removes members (a
    /// reassignment completing) counts as both.
    fn saw(&mut self, me: BrokerId, topic_id: &str, partition: u32, r: &PartitionRegistration) {
        let key = (topic_id.to_string(), partition);
        let Some((epoch, isr)) = self.seen.insert(key, (r.leader_epoch, r.isr.clone())) else {
            return;
        };
        if r.leader_epoch > epoch && r.leader != NO_LEADER {
            self.counters.leader_elections += 1;
        }
        if r.leader == me && r.leader_epoch == epoch {
            if r.isr.iter().any(|b| !isr.contains(b)) {
                self.counters.isr_expands += 1;
            }
            if isr.iter().any(|b| !r.isr.contains(b)) {
                self.counters.isr_shrinks += 1;
            }
        }
    }
}

impl TopicRegistry {
    /// Follows `node`'s metadata image in `data_dir`: opens the partitions it assigns
    /// this broker and keeps them in step with it. `sessions` reaches other brokers'
    /// partitions (`None` for a single node); the partitions' logs go through `storage`.
    ///
    /// Boxed, as the other entry points the broker process awaits once: the tasks it
    /// spawns are compiled in this crate rather than in each crate that awaits it
    /// (docs/ARCHITECTURE.md § Build time).
    pub fn start(
        data_dir: &Path,
        lock: DataDirLock,
        node: ClusterNode,
        sessions: Option<Arc<dyn FetchSessions>>,
        storage: LogStorage,
    ) -> BoxFuture<'_, Result<Arc<TopicRegistry>, ClusterError>> {
        Box::pin(Self::start_hosting(data_dir, lock, node, sessions, storage))
    }

    async fn start_hosting(
        data_dir: &Path,
        lock: DataDirLock,
        node: ClusterNode,
        sessions: Option<Arc<dyn FetchSessions>>,
        storage: LogStorage,
    ) -> Result<Arc<TopicRegistry>, ClusterError> {
        let hosted = Arc::new(RwLock::new(HashMap::new()));
        let replication =
            sessions.map(|s| Arc::new(fetchers::Replication::new(node.clone(), s, hosted.clone())));
        let (applied, _) = watch::channel(-1);
        let registry = Arc::new(TopicRegistry {
            data_dir: data_dir.to_path_buf(),
            node,
            topics: RwLock::new(BTreeMap::new()),
            hosted,
            replication,
            storage,
            data_dir_status: DataDirStatus::default(),
            applied,
            apply_lock: tokio::sync::Mutex::new(()),
            metadata_version: AtomicU64::new(1),
            apply_failures: std::sync::Mutex::new(HashMap::new()),
            stop: std::sync::Mutex::new(None),
            changes: std::sync::Mutex::default(),
            lock: std::sync::Mutex::new(Some(lock)),
        });
        let image = registry.node.image();
        registry.apply_image(&image).await?;
        apply::spawn_follower(&registry);
        Ok(registry)
    }

    /// A single-node broker on `data_dir`: a metadata quorum of one voter (this node),
    /// registered and unfenced before this returns. A data directory from before the
    /// quorum (`metadata.weir`) is migrated into it.
    pub async fn open(data_dir: &Path, node: BrokerId) -> Result<Arc<TopicRegistry>, ClusterError> {
        local::open_single_node(data_dir, node).await
    }

    fn keep_until_dropped(&self, stop: watch::Sender<bool>) {
        *self.stop.lock().expect("stop lock") = Some(stop);
    }

    /// Waits until the registry has applied everything the node's metadata held when
    /// this was called (so partitions have taken up the roles it gives them).
    pub async fn wait_current(&self) {
        let offset = self.node.image().next_offset();
        let mut applied = self.applied.subscribe();
        let _ = applied.wait_for(|a| *a >= offset).await;
    }

    /// Whether the data directory was taken offline (a disk that keeps failing,
    /// `docs/operations.md` § A failing disk): the broker process watches it and stops.
    pub fn data_dir_status(&self) -> &DataDirStatus {
        &self.data_dir_status
    }

    /// This broker's handle on the cluster.
    pub fn cluster(&self) -> &ClusterNode {
        &self.node
    }

    /// Leadership and ISR changes seen since this broker started.
    pub fn replication_counters(&self) -> ReplicationCounters {
        self.changes.lock().expect("changes lock").counters
    }

    /// A counter bumped after every topic creation, deletion and partition increase (not
    /// config changes), so a caller can tell cheaply whether [`topics`](Self::topics)
    /// changed since it last looked. Starts at 1.
    pub fn metadata_version(&self) -> u64 {
        self.metadata_version.load(Ordering::Acquire)
    }

    fn bump_metadata_version(&self) {
        self.metadata_version.fetch_add(1, Ordering::AcqRel);
    }

    pub fn cluster_id(&self) -> String {
        self.node
            .image()
            .cluster_id()
            .or(self.node.settings().cluster_id.as_deref())
            .unwrap_or_default()
            .to_string()
    }

    pub fn broker_id(&self) -> BrokerId {
        self.node.node()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The topic named `name`.
    pub fn topic(&self, name: &str) -> Result<Arc<Topic>, ClusterError> {
        self.topics
            .read()
            .expect("topics lock")
            .get(name)
            .cloned()
            .ok_or_else(|| ClusterError::UnknownTopic(name.to_string()))
    }

    /// Every topic, sorted by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics
            .read()
            .expect("topics lock")
            .values()
            .cloned()
            .collect()
    }

    /// The hosted partition `index` of the topic with id `topic_id`.
    pub fn hosted(&self, topic_id: &str, index: u32) -> Option<Arc<Partition>> {
        self.hosted
            .read()
            .expect("hosted lock")
            .get(&(topic_id.to_string(), index))
            .cloned()
    }

    /// Every hosted partition.
    fn all_hosted(&self) -> Vec<Arc<Partition>> {
        self.hosted
            .read()
            .expect("hosted lock")
            .values()
            .cloned()
            .collect()
    }

    /// Releases the data directory's lock, once the broker is done with the directory
    /// ([`close`](Self::close)d, its quorum stopped): another broker may open it now,
    /// even while a task of this one that has not ended yet still holds the registry
    /// (its partitions are closed, so it writes nothing).
    pub fn release_data_dir(&self) {
        drop(self.lock.lock().expect("lock mutex").take());
    }

    /// Flushes and closes every partition (at shutdown).
    /// A registry opened with [`open`](Self::open) also stops its node's lifecycle and
    /// metadata quorum.
    pub async fn close(&self) -> Result<(), ClusterError> {
        let owned = self.stop.lock().expect("stop lock").take();
        if let Some(stop) = &owned {
            let _ = stop.send(true);
        }
        let _apply = self.apply_lock.lock().await;
        let mut first_error = None;
        // Each close syncs the log and writes its checkpoints: several at a time, as
        // partitions are opened (`apply.rs`), so a broker of 10,000 partitions does not
        // stop one sync after another.
        let mut partitions = self.all_hosted().into_iter();
        let mut closing = tokio::task::JoinSet::new();
        loop {
            while closing.len() < apply::OPEN_CONCURRENCY {
                let Some(p) = partitions.next() else { break };
                closing.spawn(async move {
                    let closed = p.close().await;
                    (p, closed)
                });
            }
            let Some(done) = closing.join_next().await else {
                break;
            };
            let error = match done {
                Ok((_, Ok(()))) => continue,
                Ok((p, Err(e))) => {
                    tracing::error!(topic = p.topic(), partition = p.index(), error = %e, "closing partition failed");
                    e
                }
                Err(e) => {
                    tracing::error!(error = %e, "closing a partition panicked");
                    ClusterError::TaskFailed(e.to_string())
                }
            };
            first_error.get_or_insert(error);
        }
        if owned.is_some() {
            self.node.shutdown().await;
        }
        first_error.map_or(Ok(()), Err)
    }
}

fn topic_dir(data_dir: &Path, topic_id: &str) -> PathBuf {
    data_dir.join(TOPICS_DIR).join(topic_id)
}

fn partition_dir(data_dir: &Path, topic_id: &str, index: u32) -> PathBuf {
    topic_dir(data_dir, topic_id).join(index.to_string())
}

#[cfg(test)]
mod tests;
