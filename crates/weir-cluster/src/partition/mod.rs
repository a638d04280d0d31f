//! One partition on this broker: its log, the replication state machine that decides
//! its role (leader, follower), high watermark and ISR (`crate::replication`), the ordered
//! append queue, and the wake-ups that long-polling readers wait on.
//!
//! Appends go through a bounded queue ([`APPEND_QUEUE_DEPTH`]) to one appender task per
//! partition, which runs `Log::append_validated` on a blocking thread (`appender.rs`).
//! The queue keeps appends in the order they were submitted (a pipelined producer relies
//! on that), bounds the memory held by waiting appends (a full queue makes submitters
//! wait: backpressure), and lets the appender take several queued appends in one
//! blocking call. Each queued append carries the leader epoch it was accepted under; the
//! appender refuses it if the partition no longer leads at that epoch, so a batch
//! accepted by one leadership is never stamped with another's epoch.
//!
//! The state machine runs in `driver.rs`: every event (an append written, a flush done,
//! metadata changed, a follower's fetch) goes through it, and it answers with commands
//! the driver carries out. The high watermark consumers read below is the one it
//! publishes: the lowest position of the ISR, where a position is the flushed offset
//! under a durable flush policy (`group-commit`, `every-append`) and the log end
//! otherwise (`docs/replication.md`). An `acks=all` append is answered once the published
//! high watermark passes it under the epoch it was written in; `acks=leader` once it is
//! written. On a single node the ISR is this broker, so under `group-commit` consumers
//! see a record, and `acks=all` answers, once it is fsynced; under `interval:<ms>` and
//! `none` as soon as it is written.
//!
//! The log is behind an async `RwLock`: every use takes a read guard for its duration,
//! so reconfiguring (close and reopen with a new `LogConfig`) or closing the partition
//! takes the write guard and knows nobody still holds the log. Events from the broker's
//! loops over all its partitions (metadata, ticks, fetch answers) are posted, not
//! awaited, so that one busy log holds up no other partition (`inbox.rs`).

mod appender;
mod driver;
mod inbox;
mod maintenance;
mod offline;
mod reads;
mod recovery;
mod replication;
mod transactions;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::{OwnedRwLockReadGuard, RwLock, mpsc, oneshot, watch};
use weir_log::{FlushPolicy, Log, ValidatedBatches};

use crate::config::EffectiveConfig;
use crate::controller::records::PartitionRegistration;
use crate::error::ClusterError;
use crate::replication::{Event, ProduceRefusal, Replica, ReplicaConfig, Role};

use appender::{AppendJob, AppendWork, run_appender};
use driver::{AckWaiter, FlushState};
pub use offline::{DataDirStatus, REPEATED_FAILURE_WINDOW};
pub use replication::{LogStorage, ReplicaHost, ReplicationLinks};
pub use transactions::{IsolatedRead, Isolation};

/// Appends waiting for one partition's appender. A full queue makes producers wait,
/// which slows their streams (HTTP/2 flow control) instead of buffering without bound.
pub const APPEND_QUEUE_DEPTH: usize = 64;
/// Most queued appends the appender takes into one blocking call.
pub const MAX_APPENDS_PER_WAKEUP: usize = 32;

/// A broker id.
pub type BrokerId = i32;

/// Replication state of a partition, as the metadata says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    /// Broker id of the leader; -1 if none.
    pub leader: BrokerId,
    /// Bumped on every leadership change; stamped into appended batches.
    pub leader_epoch: i32,
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
}

/// The offsets that bound a partition as consumers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub log_start_offset: i64,
    /// Offsets below this are visible to consumers.
    pub high_watermark: i64,
    /// The offset the next record will get.
    pub log_end_offset: i64,
}

/// What a partition's log takes on this broker's disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskUsage {
    pub segments: usize,
    /// Bytes of every segment's log file.
    pub bytes: u64,
}

/// What an append wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    pub base_offset: i64,
    pub last_offset: i64,
    /// Records and bytes written (0 for a duplicate).
    pub records: u64,
    pub bytes: u64,
    /// An idempotent producer's retry of a batch the log holds: nothing was written and
    /// the offsets are the original's (`weir_log::producers`).
    pub duplicate: bool,
}

/// How long an append's answer waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Answer once written to the leader's log (page cache): `acks=leader`.
    Written,
    /// Answer once committed: the published high watermark passed it (`acks=all`).
    Durable,
}

type AppendReply = oneshot::Sender<Result<AppendOutcome, ClusterError>>;

/// The answer to a submitted append; await it (or drop it for fire-and-forget).
pub type PendingAppend = oneshot::Receiver<Result<AppendOutcome, ClusterError>>;

/// What the appender task, the driver and the partition share.
#[derive(Debug)]
struct Shared {
    topic: String,
    topic_id: String,
    index: u32,
    dir: PathBuf,
    storage: LogStorage,
    /// `None` once the partition is closed.
    log: Arc<RwLock<Option<Log>>>,
    /// Shared, not cloned per caller: maintenance reads it for every partition often.
    config: Mutex<Arc<EffectiveConfig>>,
    /// The published high watermark: consumers read below it. Never moves back.
    high_watermark: watch::Sender<i64>,
    /// The log end: wakes follower fetches the leader holds until there is data.
    log_end: watch::Sender<i64>,
    /// Where fetches and ISR proposals go; unset on a broker with no other brokers.
    links: OnceLock<Arc<dyn ReplicationLinks>>,
    /// The replication state machine. Held only while it handles one event (no I/O
    /// under it).
    replica: Mutex<Replica>,
    /// `acks=all` appends waiting for the high watermark.
    acks: Mutex<Vec<AckWaiter>>,
    flush: Mutex<FlushState>,
    /// Woken when someone starts waiting for a sync (an `acks=all` append, a consumer
    /// long-polling the high watermark or reading), so a paused flusher syncs at once.
    sync_wanted: tokio::sync::Notify,
    /// A consumer read since the flusher last looked: it wants what is not synced yet.
    read_since_sync: std::sync::atomic::AtomicBool,
    /// The flusher is pausing between syncs (nobody waited): a reader that finds the
    /// high watermark short of the log end waits for the sync its arrival starts.
    sync_paused: std::sync::atomic::AtomicBool,
    /// Why the log failed, from the failure until it is open again (`recovery.rs`).
    failure: Mutex<Option<String>>,
    /// When the log was last reopened after a failure: another failure within
    /// [`REPEATED_FAILURE_WINDOW`] takes the data directory offline (`offline.rs`).
    reopened_at: Mutex<Option<std::time::Instant>>,
    /// The broker's data directory, taken offline by a disk that keeps failing.
    data_dir: DataDirStatus,
    /// Set by `Partition::close`: a log being reopened stays closed.
    closing: std::sync::atomic::AtomicBool,
    /// Appends refused for want of disk space (`appender.rs`).
    storage_full: Mutex<appender::StorageFull>,
    /// Events from the broker's loops waiting for the log's guard (`inbox.rs`).
    inbox: Mutex<inbox::Inbox>,
    /// After the last event, a tick could change nothing ([`Replica::at_rest`]): the
    /// broker's tick skips the partition (a broker of 10,000 idle partitions spent about
    /// 7% of a core ticking them).
    at_rest: std::sync::atomic::AtomicBool,
}

/// One partition of a topic on this broker.
#[derive(Debug)]
pub struct Partition {
    shared: Arc<Shared>,
    /// Boxed jobs: a channel allocates its first block of 32 slots when it is made, and a
    /// block of unboxed jobs cost every partition, idle or not, 2.8 KiB.
    queue: mpsc::Sender<Box<AppendJob>>,
}

impl Shared {
    /// The error for an operation that found no log: closed for good, or (retriable)
    /// closed while it is reopened after a failure.
    fn closed(&self) -> ClusterError {
        let failure = self.failure.lock().expect("failure mutex").clone();
        match failure {
            Some(reason) if !self.closing.load(std::sync::atomic::Ordering::SeqCst) => {
                ClusterError::LogRecovering {
                    topic: self.topic.clone(),
                    partition: self.index,
                    reason,
                }
            }
            _ => ClusterError::PartitionClosed {
                topic: self.topic.clone(),
                partition: self.index,
            },
        }
    }

    async fn read_guard(&self) -> OwnedRwLockReadGuard<Option<Log>> {
        self.log.clone().read_owned().await
    }

    /// Runs `f` on the log on a blocking thread (weir-log is synchronous and may fsync).
    /// An error that failed the log starts its recovery.
    async fn with_log<R: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Log) -> Result<R, ClusterError> + Send + 'static,
    ) -> Result<R, ClusterError> {
        let guard = self.read_guard().await;
        let closed = self.closed();
        let (guard, result) = tokio::task::spawn_blocking(move || {
            let result = match guard.as_ref() {
                Some(log) => f(log),
                None => Err(closed),
            };
            (guard, result)
        })
        .await
        .map_err(|e| ClusterError::TaskFailed(e.to_string()))?;
        if result.is_err()
            && let Some(log) = guard.as_ref()
        {
            self.notice_failure(log);
        }
        result
    }

    fn maintenance(&self) -> impl Fn(weir_log::MaintenanceError) -> ClusterError + use<> {
        let (topic, partition) = (self.topic.clone(), self.index);
        move |source| ClusterError::Maintenance {
            topic: topic.clone(),
            partition,
            source,
        }
    }

    fn replica(&self) -> std::sync::MutexGuard<'_, Replica> {
        self.replica.lock().expect("replica mutex")
    }

    fn not_leader(&self, leader: BrokerId) -> ClusterError {
        ClusterError::NotLeader {
            topic: self.topic.clone(),
            partition: self.index,
            leader,
        }
    }

    /// Whether this replica leads and may take an append now; the leader epoch it is
    /// accepted under.
    fn check_produce(&self, acks_all: bool) -> Result<i32, ClusterError> {
        self.replica()
            .check_produce(acks_all)
            .map_err(|refusal| match refusal {
                ProduceRefusal::NotLeader { leader, .. } => self.not_leader(leader),
                ProduceRefusal::NotEnoughReplicas { isr, min_insync } => {
                    ClusterError::NotEnoughReplicas {
                        topic: self.topic.clone(),
                        partition: self.index,
                        isr,
                        min_insync,
                    }
                }
                ProduceRefusal::LogRecovering => self.closed(),
            })
    }

    /// Whether this replica serves reads (it leads).
    fn check_leader(&self) -> Result<(), ClusterError> {
        let replica = self.replica();
        match replica.role() {
            Role::Leader { .. } => Ok(()),
            Role::Recovering => Err(self.closed()),
            _ => Err(self.not_leader(replica.known_leader())),
        }
    }
}

/// The state machine's settings for `config`.
/// The high watermark a start takes from `log`'s checkpoint: a log with none written
/// (a new partition) starts at its log start, so that needs no checkpoint either.
fn checkpointed_high_watermark(log: &Log) -> i64 {
    log.high_watermark_checkpoint()
        .unwrap_or_else(|| log.offsets().log_start_offset)
}

fn replica_config(node: BrokerId, config: &EffectiveConfig) -> ReplicaConfig {
    let mut rc = ReplicaConfig::new(node, 0);
    rc.durable = matches!(
        config.log.flush,
        FlushPolicy::GroupCommit | FlushPolicy::EveryAppend
    );
    rc.min_insync_replicas = config.min_insync_replicas as usize;
    rc
}

fn registration(state: &PartitionState) -> PartitionRegistration {
    PartitionRegistration {
        replicas: state.replicas.clone(),
        isr: state.isr.clone(),
        leader: state.leader,
        leader_epoch: state.leader_epoch,
        partition_epoch: 0,
        reassignment: None,
    }
}

impl Partition {
    /// Opens (creating if needed) the partition's log in `dir`, as a replica on `host`,
    /// and starts its appender. Must run inside a tokio runtime. `dir` lies in a data
    /// directory whose lock the caller holds ([`crate::registry::TopicRegistry::lock_data_dir`]):
    /// the log takes no lock of its own.
    pub async fn open(
        topic: &str,
        topic_id: &str,
        index: u32,
        dir: &Path,
        config: EffectiveConfig,
        host: impl Into<ReplicaHost>,
        state: PartitionState,
    ) -> Result<Arc<Partition>, ClusterError> {
        let host = host.into();
        let log = open_log(topic, index, dir, &config, &host.storage).await?;
        let offsets = log.offsets();
        // The last checkpointed high watermark: where a new leadership starts from
        // before its ISR reports (never above what the log holds).
        let checkpoint = checkpointed_high_watermark(&log)
            .clamp(offsets.log_start_offset, offsets.log_end_offset);
        let (high_watermark, _) = watch::channel(checkpoint);
        let (log_end, _) = watch::channel(offsets.log_end_offset);
        let mut replica_config = replica_config(host.node, &config);
        replica_config.broker_epoch = host.broker_epoch;
        let replica = Replica::new(replica_config, checkpoint);
        let links = OnceLock::new();
        if let Some(l) = host.links {
            let _ = links.set(l);
        }
        let shared = Arc::new(Shared {
            topic: topic.to_string(),
            topic_id: topic_id.to_string(),
            index,
            dir: dir.to_path_buf(),
            storage: host.storage.clone(),
            log: Arc::new(RwLock::new(Some(log))),
            config: Mutex::new(Arc::new(config)),
            high_watermark,
            log_end,
            links,
            replica: Mutex::new(replica),
            acks: Mutex::new(Vec::new()),
            flush: Mutex::new(FlushState::default()),
            sync_wanted: tokio::sync::Notify::new(),
            read_since_sync: std::sync::atomic::AtomicBool::new(false),
            sync_paused: std::sync::atomic::AtomicBool::new(false),
            at_rest: std::sync::atomic::AtomicBool::new(false),
            failure: Mutex::new(None),
            reopened_at: Mutex::new(None),
            data_dir: host.data_dir.clone(),
            closing: std::sync::atomic::AtomicBool::new(false),
            storage_full: Mutex::new(appender::StorageFull::default()),
            inbox: Mutex::new(inbox::Inbox::default()),
        });
        let (queue, jobs) = mpsc::channel(APPEND_QUEUE_DEPTH);
        tokio::spawn(run_appender(shared.clone(), jobs));
        let partition = Arc::new(Partition { shared, queue });
        partition.apply_state(&state).await;
        Ok(partition)
    }

    /// Holds the log's write guard, as a reopen or a reconfigure does, for tests of what
    /// waits on a busy log.
    #[cfg(test)]
    pub(crate) async fn hold_log(&self) -> tokio::sync::OwnedRwLockWriteGuard<Option<Log>> {
        self.shared.log.clone().write_owned().await
    }

    /// Steps a leader aside while this broker's controller session has lapsed
    /// (`lapsed`), or lets it lead again once renewed ([`Event::LeaseLapsed`]).
    pub fn set_lease_lapsed(&self, lapsed: bool) {
        self.shared.post(match lapsed {
            true => Event::LeaseLapsed,
            false => Event::LeaseRenewed,
        });
    }

    /// Applies the metadata's state of this partition (leader, epoch, ISR).
    pub async fn apply_state(&self, state: &PartitionState) {
        let guard = self.shared.read_guard().await;
        if let Some(log) = guard.as_ref() {
            self.shared
                .drive(log, Event::Registration(registration(state)));
        }
    }

    pub fn topic(&self) -> &str {
        &self.shared.topic
    }

    pub fn index(&self) -> u32 {
        self.shared.index
    }

    /// The leader epoch last applied from metadata (-1 before any), without the copy of
    /// the replica lists [`Self::state`] makes: a fetch checks it per partition.
    pub fn leader_epoch(&self) -> i32 {
        self.shared
            .replica()
            .registration()
            .map_or(-1, |r| r.leader_epoch)
    }

    /// Leader, epoch, replicas and ISR, as last applied from metadata.
    pub fn state(&self) -> PartitionState {
        let replica = self.shared.replica();
        match replica.registration() {
            Some(r) => PartitionState {
                leader: r.leader,
                leader_epoch: r.leader_epoch,
                replicas: r.replicas.clone(),
                isr: r.isr.clone(),
            },
            None => PartitionState {
                leader: -1,
                leader_epoch: -1,
                replicas: Vec::new(),
                isr: Vec::new(),
            },
        }
    }

    /// The topic settings this partition runs with.
    pub fn config(&self) -> Arc<EffectiveConfig> {
        self.shared.config.lock().expect("config mutex").clone()
    }

    /// The published high watermark.
    /// Whether this broker's last append to the partition was refused because its data
    /// directory's device is full (cleared by the next append that succeeds).
    pub fn is_storage_full(&self) -> bool {
        self.shared
            .storage_full
            .lock()
            .expect("storage_full mutex")
            .now
    }

    pub fn high_watermark(&self) -> i64 {
        *self.shared.high_watermark.borrow()
    }

    /// A receiver that changes whenever the high watermark moves (long-poll wake-ups).
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        let receiver = self.shared.high_watermark.subscribe();
        self.shared.sync_wanted.notify_waiters();
        receiver
    }

    /// Queues an append (waiting while the queue is full) and returns its pending
    /// answer. Appends to one partition are written in the order they were submitted.
    /// Refused at once if this replica does not lead, or for `acks=all` with fewer
    /// in-sync replicas than `min.insync.replicas` (nothing is appended).
    pub async fn submit(
        &self,
        batches: ValidatedBatches,
        durability: Durability,
    ) -> Result<PendingAppend, ClusterError> {
        self.submit_inner(batches, durability, None).await
    }

    /// [`submit`](Self::submit), refused (NOT_LEADER, nothing appended) unless this
    /// replica leads at `leader_epoch`: for writers whose state belongs to one leadership
    /// (the group coordinator's shards), which must not write under a later one.
    pub async fn submit_under(
        &self,
        batches: ValidatedBatches,
        durability: Durability,
        leader_epoch: i32,
    ) -> Result<PendingAppend, ClusterError> {
        self.submit_inner(batches, durability, Some(leader_epoch))
            .await
    }

    async fn submit_inner(
        &self,
        work: impl Into<AppendWork>,
        durability: Durability,
        expected_epoch: Option<i32>,
    ) -> Result<PendingAppend, ClusterError> {
        let leader_epoch = self
            .shared
            .check_produce(durability == Durability::Durable)?;
        if expected_epoch.is_some_and(|e| e != leader_epoch) {
            return Err(self.shared.not_leader(self.state().leader));
        }
        let (reply, pending) = oneshot::channel();
        self.queue
            .send(Box::new(AppendJob {
                work: work.into(),
                durability,
                leader_epoch,
                reply,
            }))
            .await
            .map_err(|_| self.shared.closed())?;
        Ok(pending)
    }

    /// [`submit`](Self::submit) and wait for the answer.
    pub async fn append(
        &self,
        batches: ValidatedBatches,
        durability: Durability,
    ) -> Result<AppendOutcome, ClusterError> {
        let pending = self.submit(batches, durability).await?;
        pending.await.map_err(|_| self.shared.closed())?
    }
}

async fn open_log(
    topic: &str,
    index: u32,
    dir: &Path,
    config: &EffectiveConfig,
    storage: &LogStorage,
) -> Result<Log, ClusterError> {
    let (dir, log_config, storage) = (dir.to_path_buf(), config.log.clone(), storage.0.clone());
    let log = tokio::task::spawn_blocking(move || Log::open_under_lock(dir, log_config, storage))
        .await
        .map_err(|e| ClusterError::TaskFailed(e.to_string()))?;
    log.map_err(|source| ClusterError::Open {
        topic: topic.to_string(),
        partition: index,
        source,
    })
}

#[cfg(test)]
mod tests;
