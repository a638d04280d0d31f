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
//! takes the write guard and knows nobody still holds the log.

mod appender;
mod driver;
mod offline;
mod recovery;
mod replication;
mod transactions;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::{OwnedRwLockReadGuard, RwLock, mpsc, oneshot, watch};
use weir_log::producers::ProducerSummary;
use weir_log::{
    CompactionOutcome, FetchData, FlushPolicy, Log, LogOffsets, ReadTo, RetentionOutcome,
    ValidatedBatches,
};

use crate::config::EffectiveConfig;
use crate::controller::records::PartitionRegistration;
use crate::error::ClusterError;
use crate::replication::{Event, ProduceRefusal, Replica, ReplicaConfig, Role};

use appender::{AppendJob, AppendWork, run_appender};
use driver::{AckWaiter, FlushState, PAUSED_SYNC_WAIT};
pub use offline::{DataDirStatus, REPEATED_FAILURE_WINDOW};
pub use replication::{LogStorage, ReplicaHost, ReplicationLinks};
use transactions::last_stable_offset;
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
}

/// One partition of a topic on this broker.
#[derive(Debug)]
pub struct Partition {
    shared: Arc<Shared>,
    queue: mpsc::Sender<AppendJob>,
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
        let checkpoint = log
            .high_watermark_checkpoint()
            .unwrap_or(offsets.log_start_offset)
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
            failure: Mutex::new(None),
            reopened_at: Mutex::new(None),
            data_dir: host.data_dir.clone(),
            closing: std::sync::atomic::AtomicBool::new(false),
            storage_full: Mutex::new(appender::StorageFull::default()),
        });
        let (queue, jobs) = mpsc::channel(APPEND_QUEUE_DEPTH);
        tokio::spawn(run_appender(shared.clone(), jobs));
        let partition = Arc::new(Partition { shared, queue });
        partition.apply_state(&state).await;
        Ok(partition)
    }

    /// Steps a leader aside while this broker's controller session has lapsed
    /// (`lapsed`), or lets it lead again once renewed ([`Event::LeaseLapsed`]).
    pub async fn set_lease_lapsed(&self, lapsed: bool) {
        let guard = self.shared.read_guard().await;
        if let Some(log) = guard.as_ref() {
            let event = match lapsed {
                true => Event::LeaseLapsed,
                false => Event::LeaseRenewed,
            };
            self.shared.drive(log, event);
        }
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
            .send(AppendJob {
                work: work.into(),
                durability,
                leader_epoch,
                reply,
            })
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

    /// Log start, high watermark and log end (on a follower, the high watermark its
    /// leader last told it).
    pub async fn offsets(&self) -> Result<PartitionOffsets, ClusterError> {
        let guard = self.shared.read_guard().await;
        let log = guard.as_ref().ok_or_else(|| self.shared.closed())?;
        // A short mutex hold inside weir-log (no I/O under it), fine on this thread.
        let LogOffsets {
            log_start_offset,
            log_end_offset,
            ..
        } = log.offsets();
        // A follower never publishes: it reports the high watermark its leader last
        // told it (reads are refused on it anyway).
        let high_watermark = {
            let replica = self.shared.replica();
            match replica.role() {
                Role::Follower { .. } => replica.high_watermark(),
                _ => self.high_watermark(),
            }
        };
        Ok(PartitionOffsets {
            log_start_offset,
            high_watermark: high_watermark.max(log_start_offset),
            log_end_offset,
        })
    }

    /// Its segments and their bytes on this broker's disk (a leader's or a follower's
    /// replica alike): read-only, for operators.
    pub async fn disk_usage(&self) -> Result<DiskUsage, ClusterError> {
        let guard = self.shared.read_guard().await;
        let log = guard.as_ref().ok_or_else(|| self.shared.closed())?;
        // Short mutex holds inside weir-log (no I/O under them), fine on this thread.
        Ok(DiskUsage {
            segments: log.segment_count(),
            bytes: log.size_bytes(),
        })
    }

    fn out_of_range(&self, offset: i64, offsets: PartitionOffsets) -> ClusterError {
        ClusterError::OffsetOutOfRange {
            topic: self.shared.topic.clone(),
            partition: self.shared.index,
            offset,
            log_start_offset: offsets.log_start_offset,
            high_watermark: offsets.high_watermark,
        }
    }

    /// True while this replica leads at `leader_epoch` (and has not stepped aside).
    pub fn leads_at(&self, leader_epoch: i32) -> bool {
        self.shared.replica().role() == Role::Leader { leader_epoch }
    }

    /// Where a reader may start: `offset` checked against the leader's log as
    /// [`read`](Self::read) checks it, and the offsets it was checked against. Only on
    /// the leader: a replica that does not lead may lag (a follower out of the ISR, a
    /// broker restarted on an old log), and its log end is no reason to tell a consumer
    /// its offset is out of range (which sends it back to the log start); it is
    /// NOT_LEADER, so the consumer asks for the leader again.
    pub async fn read_start(&self, offset: i64) -> Result<PartitionOffsets, ClusterError> {
        self.shared.check_leader()?;
        let offsets = self.offsets().await?;
        self.check_in_log(offset, offsets)?;
        Ok(offsets)
    }

    /// OFFSET_OUT_OF_RANGE for an offset outside the log. Past the log end of a leader
    /// that has not published a high watermark in its leadership it is retriable
    /// OFFSET_NOT_AVAILABLE instead: such a leader may not have what the leader before
    /// it committed yet (it believes it leads on metadata it has not caught up with), so
    /// its log end says nothing about the offset.
    fn check_in_log(&self, offset: i64, offsets: PartitionOffsets) -> Result<(), ClusterError> {
        if offset >= offsets.log_start_offset && offset <= offsets.log_end_offset {
            return Ok(());
        }
        let replica = self.shared.replica();
        if offset > offsets.log_end_offset
            && matches!(replica.role(), Role::Leader { .. })
            && replica.published_high_watermark().is_none()
        {
            return Err(ClusterError::OffsetNotAvailable {
                topic: self.shared.topic.clone(),
                partition: self.shared.index,
            });
        }
        Err(self.out_of_range(offset, offsets))
    }

    /// The offsets a consumer may look up (ListOffsets): only on the leader, and only
    /// once this leadership has published its high watermark; before that a new
    /// leader's latest offset could be below one its predecessor already gave out, so
    /// the answer is a retriable [`ClusterError::OffsetNotAvailable`]
    /// (`docs/replication.md` § The leader, Publishing the HW).
    pub async fn leader_offsets(&self) -> Result<PartitionOffsets, ClusterError> {
        self.shared.check_leader()?;
        let paused = self.shared.reader_came();
        if self.shared.replica().published_high_watermark().is_none() {
            return Err(ClusterError::OffsetNotAvailable {
                topic: self.shared.topic.clone(),
                partition: self.shared.index,
            });
        }
        let offsets = self.offsets().await?;
        self.after_paused_sync(paused, offsets, offsets.log_end_offset)
            .await
    }

    /// If the flusher was pausing when this reader came (`paused`) and the high watermark
    /// in `offsets` is short of `wanted` and of the log end, waits (at most
    /// [`PAUSED_SYNC_WAIT`]) for the sync the reader's arrival started and returns the
    /// offsets after it; else `offsets`. So the pause never shows to a reader: it sees
    /// an `acks=leader` write as soon as it would with syncs back to back.
    async fn after_paused_sync(
        &self,
        paused: bool,
        offsets: PartitionOffsets,
        wanted: i64,
    ) -> Result<PartitionOffsets, ClusterError> {
        let hw = offsets.high_watermark;
        if !paused || hw >= wanted.min(offsets.log_end_offset) {
            return Ok(offsets);
        }
        let mut moved = self.subscribe();
        // Timing out leaves the answer as it was: "nothing new yet".
        let _ = tokio::time::timeout(PAUSED_SYNC_WAIT, moved.wait_for(|now| *now > hw)).await;
        self.offsets().await
    }

    /// Reads whole batches from `offset`, up to `max_bytes` (at least one batch), only
    /// below the high watermark. `offset` must be within `[log start, log end]`; at or
    /// past the high watermark the answer is empty.
    pub async fn read(&self, offset: i64, max_bytes: usize) -> Result<FetchData, ClusterError> {
        self.read_to(offset, max_bytes, ReadTo::Memory).await
    }

    /// [`read`](Self::read), with the batches in memory or left in their segment file
    /// ([`FetchData::in_file`], checked as `read` checks them) for a listener that sends
    /// them to its socket with `sendfile`, as `to` says.
    pub async fn read_to(
        &self,
        offset: i64,
        max_bytes: usize,
        to: ReadTo,
    ) -> Result<FetchData, ClusterError> {
        self.shared.check_leader()?;
        self.read_replicated(offset, max_bytes, to, Isolation::ReadUncommitted)
            .await
            .map(|read| read.data)
    }

    /// [`read`](Self::read) on any replica, leader or follower: below the high watermark
    /// this replica knows, which on a follower is the one its leader last told it (so
    /// lagging, but committed: nothing below it is ever truncated). For a coordinator
    /// that reads a partition it may only follow (share groups), never for clients,
    /// whose reads go to the leader.
    pub async fn read_replica(
        &self,
        offset: i64,
        max_bytes: usize,
    ) -> Result<FetchData, ClusterError> {
        if matches!(self.shared.replica().role(), Role::Recovering) {
            return Err(self.shared.closed());
        }
        self.read_replicated(
            offset,
            max_bytes,
            ReadTo::Memory,
            Isolation::ReadUncommitted,
        )
        .await
        .map(|read| read.data)
    }

    /// Reads below the high watermark this replica knows ("replicated": on every ISR
    /// member, so never truncated), and under [`Isolation::ReadCommitted`] also below
    /// the last stable offset, with the aborted transactions of the range read. Not
    /// Kafka's `read_committed` by itself: that is the isolation level on top.
    async fn read_replicated(
        &self,
        offset: i64,
        max_bytes: usize,
        to: ReadTo,
        isolation: Isolation,
    ) -> Result<IsolatedRead, ClusterError> {
        let paused = self.shared.reader_came();
        let offsets = self.offsets().await?;
        let offsets = self.after_paused_sync(paused, offsets, offset + 1).await?;
        // Out of range only outside the log: an offset the log holds but the high
        // watermark has not passed yet is "nothing yet" (a new leader publishes only once
        // it has committed what it inherited; until then a consumer resuming at the old
        // leader's high watermark must wait, not be told to reset: found by the fault
        // tests, where it sent consumers back to offset 0).
        self.check_in_log(offset, offsets)?;
        let hw = offsets.high_watermark;
        let last_stable_offset = {
            let guard = self.shared.read_guard().await;
            let log = guard.as_ref().ok_or_else(|| self.shared.closed())?;
            // A short mutex hold inside weir-log (no I/O under it), fine on this thread.
            last_stable_offset(log, hw)
        };
        let bound = match isolation {
            Isolation::ReadUncommitted => hw,
            Isolation::ReadCommitted => last_stable_offset,
        };
        if offset >= bound {
            return Ok(IsolatedRead {
                data: FetchData {
                    records: bytes::Bytes::new(),
                    in_file: None,
                    next_offset: offset,
                    log_start_offset: offsets.log_start_offset,
                    log_end_offset: offsets.log_end_offset,
                    stored_at: None,
                },
                high_watermark: hw,
                last_stable_offset,
                aborted: Vec::new(),
            });
        }
        let (topic, partition) = (self.shared.topic.clone(), self.shared.index);
        self.shared
            .with_log(move |log| {
                let read_error = |source| match source {
                    // Retention moved the start between our check and the read.
                    weir_log::ReadError::OffsetOutOfRange {
                        log_start_offset, ..
                    } => ClusterError::OffsetOutOfRange {
                        topic: topic.clone(),
                        partition,
                        offset,
                        log_start_offset,
                        high_watermark: hw,
                    },
                    source => ClusterError::Read {
                        topic: topic.clone(),
                        partition,
                        source,
                    },
                };
                let data = log
                    .read_to(offset, max_bytes, Some(bound), to)
                    .map_err(read_error)?;
                let aborted = match isolation {
                    Isolation::ReadCommitted if !data.is_empty() => log
                        .aborted_transactions(offset, data.next_offset)
                        .map_err(read_error)?,
                    _ => Vec::new(),
                };
                Ok(IsolatedRead {
                    data,
                    high_watermark: hw,
                    last_stable_offset,
                    aborted,
                })
            })
            .await
    }

    /// The first offset whose record timestamp is at least `timestamp_ms`, or `None` if
    /// every visible record is older.
    pub async fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<i64>, ClusterError> {
        let hw = self.high_watermark();
        let (topic, partition) = (self.shared.topic.clone(), self.shared.index);
        let found = self
            .shared
            .with_log(move |log| {
                log.offset_for_timestamp(timestamp_ms)
                    .map_err(|source| ClusterError::Read {
                        topic,
                        partition,
                        source,
                    })
            })
            .await?;
        Ok(found.filter(|o| *o < hw))
    }

    /// The first offset holding the newest record timestamp (Kafka's ListOffsets
    /// MAX_TIMESTAMP), or `None` if no visible record has one: the log is empty, or the
    /// record is not below the high watermark yet.
    pub async fn offset_of_max_timestamp(&self) -> Result<Option<i64>, ClusterError> {
        let hw = self.high_watermark();
        let (topic, partition) = (self.shared.topic.clone(), self.shared.index);
        let found = self
            .shared
            .with_log(move |log| {
                let newest = log.max_timestamp();
                let found =
                    newest.and_then(|t| t.map_or(Ok(None), |t| log.offset_for_timestamp(t)));
                found.map_err(|source| ClusterError::Read {
                    topic,
                    partition,
                    source,
                })
            })
            .await?;
        Ok(found.filter(|o| *o < hw))
    }

    /// Where leader epoch `epoch` ended in this replica's log (Kafka's
    /// OffsetsForLeaderEpoch, KIP-101 and KIP-320): the largest epoch at most `epoch` and
    /// the offset after its last record (the log end for the latest epoch), from the
    /// log's epoch history, as replication's divergence check answers a follower; `None`
    /// if `epoch` is older than anything the log remembers. Only on the leader: a
    /// follower may still hold records its leader cut.
    pub async fn end_offset_for_epoch(
        &self,
        epoch: i32,
    ) -> Result<Option<(i32, i64)>, ClusterError> {
        self.shared.check_leader()?;
        let guard = self.shared.read_guard().await;
        let log = guard.as_ref().ok_or_else(|| self.shared.closed())?;
        // In-memory state under a short mutex hold inside weir-log: no blocking thread.
        Ok(log.end_offset_for_epoch(epoch))
    }

    /// The idempotent producers this partition remembers (epoch, last sequence, last
    /// timestamp and offset of each), by producer id. Only on the leader, whose state
    /// checks the next append.
    pub async fn producers(&self) -> Result<Vec<ProducerSummary>, ClusterError> {
        self.shared.check_leader()?;
        let guard = self.shared.read_guard().await;
        let log = guard.as_ref().ok_or_else(|| self.shared.closed())?;
        Ok(log.producers())
    }

    /// Removes every record below `offset` (at most the high watermark); returns the new
    /// log start offset. Only on the leader (Kafka's DeleteRecords): trimming a
    /// follower's copy would move nothing its consumers see.
    pub async fn delete_records_before(&self, offset: i64) -> Result<i64, ClusterError> {
        self.shared.check_leader()?;
        let offsets = self.offsets().await?;
        if offset < 0 || offset > offsets.high_watermark {
            return Err(self.out_of_range(offset, offsets));
        }
        let err = self.shared.maintenance();
        self.shared
            .with_log(move |log| log.delete_records_before(offset).map_err(err))
            .await
    }

    /// Deletes segments past the topic's retention. Does nothing (deletes nothing) unless
    /// the topic's `cleanup.policy` includes `delete`.
    pub async fn apply_retention(&self, now_ms: i64) -> Result<RetentionOutcome, ClusterError> {
        let delete = self.config().cleanup.delete;
        let err = self.shared.maintenance();
        self.shared
            .with_log(move |log| {
                if !delete {
                    return Ok(RetentionOutcome {
                        log_start_offset: log.offsets().log_start_offset,
                        ..RetentionOutcome::default()
                    });
                }
                log.apply_retention(now_ms).map_err(err)
            })
            .await
    }

    /// Compacts the log (`cleanup.policy` with `compact`): each key keeps its newest
    /// record, tombstones go after `delete_retention`. Runs a pass only when
    /// `Log::compaction_due` says one is worth it (never run since the log was opened,
    /// half the closed bytes not compacted yet, or a kept tombstone now expired), so
    /// calling it on every maintenance tick is cheap; otherwise returns an empty outcome.
    /// The log's read guard is held for the pass: a reconfigure or close waits for it.
    pub async fn compact(
        &self,
        now_ms: i64,
        delete_retention: Duration,
    ) -> Result<CompactionOutcome, ClusterError> {
        let err = self.shared.maintenance();
        self.shared
            .with_log(move |log| {
                if !log.compaction_due(now_ms) {
                    return Ok(CompactionOutcome::default());
                }
                log.compact(now_ms, delete_retention).map_err(err)
            })
            .await
    }

    /// Syncs if the topic's `interval:<ms>` flush policy says a sync is due, and syncs
    /// segments rolled since the last sync (every policy; see `Log::flush_rolled`).
    pub async fn flush_if_due(&self) -> Result<(), ClusterError> {
        let interval = matches!(self.config().log.flush, FlushPolicy::Interval(_));
        // A roll leaves the closed segment's sync to a later flush, off the append path;
        // this is that flush when no acks=all append or interval asks for one sooner.
        let rolled = {
            let guard = self.shared.read_guard().await;
            guard.as_ref().is_some_and(Log::rolled_awaiting_sync)
        };
        if !interval && !rolled {
            return Ok(());
        }
        let err = self.shared.maintenance();
        self.shared
            .with_log(move |log| log.flush_if_due().map_err(err))
            .await
    }

    /// Applies new topic settings: the log is flushed, closed and reopened with them,
    /// after in-progress operations finish; appends queue meanwhile. A log that failed
    /// (or fails on the way) is reopened with them by its recovery (`recovery.rs`), so
    /// the partition is never left closed.
    pub async fn reconfigure(&self, config: EffectiveConfig) -> Result<(), ClusterError> {
        recovery::reconfigure(&self.shared, config).await
    }

    /// Checkpoints the high watermark (so a restarted replica knows what was committed),
    /// if it moved since the last checkpoint.
    pub async fn checkpoint_high_watermark(&self) -> Result<(), ClusterError> {
        let hw = self.shared.replica().high_watermark();
        // Most partitions of a big broker are idle: look before paying for a blocking
        // task (this runs for every partition every few seconds).
        let unchanged = {
            let guard = self.shared.read_guard().await;
            guard
                .as_ref()
                .is_some_and(|log| log.high_watermark_checkpoint() == Some(hw))
        };
        if unchanged {
            return Ok(());
        }
        let err = self.shared.maintenance();
        self.shared
            .with_log(move |log| {
                if log.high_watermark_checkpoint() == Some(hw) {
                    return Ok(());
                }
                log.checkpoint_high_watermark(hw).map_err(err)
            })
            .await
    }

    /// Flushes and closes the log; later operations fail with `PartitionClosed`, and
    /// `acks=all` appends still waiting are answered with it.
    pub async fn close(&self) -> Result<(), ClusterError> {
        self.shared
            .closing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        // Best effort: a restart then starts from this high watermark.
        let _ = self.checkpoint_high_watermark().await;
        let Some(log) = self.shared.log.write().await.take() else {
            return Ok(());
        };
        self.shared.fail_acks(|_| true, |s| s.closed());
        // Wake waiting readers so they find the partition closed instead of waiting on.
        self.shared.high_watermark.send_modify(|_| {});
        let err = self.shared.maintenance();
        tokio::task::spawn_blocking(move || log.close().map_err(err))
            .await
            .map_err(|e| ClusterError::TaskFailed(e.to_string()))?
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
mod tests {
    use std::collections::BTreeMap;

    use weir_log::{Compression, Record, RecordBatchBuilder, decode_records};

    use super::*;
    use crate::config::{CLEANUP_POLICY, RETENTION_MS, SEGMENT_BYTES, TopicConfig};

    const DAY: Duration = Duration::from_secs(24 * 3600);

    async fn open(dir: &Path, policy: &str) -> Arc<Partition> {
        let overrides: BTreeMap<String, String> = [
            (CLEANUP_POLICY, policy),
            (SEGMENT_BYTES, "1024"),
            (RETENTION_MS, "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let config = TopicConfig::new(overrides).unwrap().effective().unwrap();
        let state = PartitionState {
            leader: 0,
            leader_epoch: 0,
            replicas: vec![0],
            isr: vec![0],
        };
        Partition::open("t", "t-id", 0, dir, config, 0, state)
            .await
            .unwrap()
    }

    /// 60 updates of three keys, timestamps long past `retention.ms`.
    async fn fill(p: &Partition) {
        for i in 0..60 {
            let mut b = RecordBatchBuilder::new(Compression::None);
            b.push(&Record {
                key: Some(bytes::Bytes::from(format!("k{}", i % 3))),
                value: Some(bytes::Bytes::from(format!("value-{i:04}-padding-padding"))),
                timestamp: 1_000,
                ..Record::default()
            });
            let batch = ValidatedBatches::new(b.build().unwrap(), 1 << 20).unwrap();
            p.append(batch, Durability::Written).await.unwrap();
        }
        // Visible once synced, as a consumer waits for them (its wait starts the sync).
        let mut hw = p.subscribe();
        tokio::time::timeout(Duration::from_secs(5), hw.wait_for(|hw| *hw == 60))
            .await
            .expect("the high watermark reaches the log end")
            .unwrap();
    }

    #[tokio::test]
    async fn a_reader_arriving_during_a_sync_pause_waits_for_the_sync_it_starts() {
        let dir = tempfile::tempdir().unwrap();
        let p = open(dir.path(), "delete").await;
        // acks=leader appends with nobody reading: the flusher syncs, finds more appended
        // meanwhile, and pauses before the next sync.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !p
            .shared
            .sync_paused
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the flusher never paused"
            );
            p.append(batch_of("before"), Durability::Written)
                .await
                .unwrap();
        }
        // Appended during the pause (20 ms): not synced, so above the high watermark.
        let last = p
            .append(batch_of("during the pause"), Durability::Written)
            .await
            .unwrap()
            .base_offset;
        // A reader that does not long-poll still gets it: its arrival ends the pause and
        // it waits for that one sync.
        let data = p.read(last, 1 << 20).await.unwrap();
        let records: Vec<_> = data
            .batches()
            .flat_map(|b| decode_records(&b).unwrap())
            .filter(|r| r.offset >= last)
            .collect();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].value.as_deref(), Some(&b"during the pause"[..]));
    }

    pub(super) async fn values(p: &Partition) -> Vec<String> {
        let mut out = Vec::new();
        let mut offset = p.offsets().await.unwrap().log_start_offset;
        loop {
            let data = p.read(offset, 4096).await.unwrap();
            if data.records.is_empty() {
                return out;
            }
            for batch in data.batches() {
                for r in decode_records(&batch).unwrap() {
                    if r.offset >= offset {
                        out.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
                    }
                }
            }
            offset = data.next_offset;
        }
    }

    #[tokio::test]
    async fn a_new_leader_gives_no_latest_offset_until_it_has_committed_what_it_inherited() {
        let dir = tempfile::tempdir().unwrap();
        let config = TopicConfig::new(BTreeMap::new())
            .unwrap()
            .effective()
            .unwrap();
        let led_with = |leader_epoch, isr: Vec<BrokerId>| PartitionState {
            leader: 0,
            leader_epoch,
            replicas: vec![0, 1],
            isr,
        };
        let p = Partition::open("t", "t-id", 0, dir.path(), config, 0, led_with(0, vec![0]))
            .await
            .unwrap();
        for _ in 0..3 {
            p.append(batch_of("committed"), Durability::Durable)
                .await
                .unwrap();
        }
        assert_eq!(p.leader_offsets().await.unwrap().high_watermark, 3);
        // Follower 1 joins the ISR but never fetches: what is appended now stays above
        // the high watermark.
        p.apply_state(&led_with(1, vec![0, 1])).await;
        for _ in 0..2 {
            p.append(batch_of("uncommitted"), Durability::Written)
                .await
                .unwrap();
        }
        assert_eq!(p.leader_offsets().await.unwrap().high_watermark, 3);
        // A new leadership inherits offsets 3 and 4 uncommitted: no latest offset yet.
        p.apply_state(&led_with(2, vec![0, 1])).await;
        let err = p.leader_offsets().await.unwrap_err();
        assert!(
            matches!(err, ClusterError::OffsetNotAvailable { partition: 0, .. }),
            "{err}"
        );
        // Once the ISR is this replica alone the inherited records commit and it
        // publishes.
        p.apply_state(&led_with(3, vec![0])).await;
        p.tick().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match p.leader_offsets().await {
                Ok(offsets) => {
                    assert_eq!(offsets.high_watermark, 5);
                    break;
                }
                Err(e) => assert!(tokio::time::Instant::now() < deadline, "{e}"),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // A follower never answers.
        p.apply_state(&PartitionState {
            leader: 1,
            leader_epoch: 4,
            replicas: vec![0, 1],
            isr: vec![0, 1],
        })
        .await;
        let err = p.leader_offsets().await.unwrap_err();
        assert!(
            matches!(err, ClusterError::NotLeader { leader: 1, .. }),
            "{err}"
        );
    }

    /// A consumer resuming at an offset its old leader gave out must never hear "out of
    /// range" from a replica that cannot know (weir-client then resets to the log start
    /// and reads the partition again): a replica that does not lead answers NOT_LEADER,
    /// and a leader that has not published in its leadership answers a retriable
    /// OFFSET_NOT_AVAILABLE past its log end.
    #[tokio::test]
    async fn only_a_leader_that_has_published_says_an_offset_is_past_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let config = TopicConfig::new(BTreeMap::new())
            .unwrap()
            .effective()
            .unwrap();
        let led_with = |leader_epoch, isr: Vec<BrokerId>| PartitionState {
            leader: 0,
            leader_epoch,
            replicas: vec![0, 1],
            isr,
        };
        let p = Partition::open("t", "t-id", 0, dir.path(), config, 0, led_with(0, vec![0]))
            .await
            .unwrap();
        for _ in 0..3 {
            p.append(batch_of("committed"), Durability::Durable)
                .await
                .unwrap();
        }
        // A follower of broker 1, whose log may be far ahead of this one's 3 records.
        p.apply_state(&PartitionState {
            leader: 1,
            leader_epoch: 1,
            replicas: vec![0, 1],
            isr: vec![1],
        })
        .await;
        for offset in [1, 3, 10] {
            let err = p.read_start(offset).await.unwrap_err();
            assert!(
                matches!(err, ClusterError::NotLeader { leader: 1, .. }),
                "offset {offset}: {err}"
            );
        }
        // Leading again at a new epoch, with a follower in the ISR that never fetches:
        // it publishes nothing, so offset 10 may have been given out by broker 1.
        p.apply_state(&led_with(2, vec![0, 1])).await;
        p.append(batch_of("inherited"), Durability::Written)
            .await
            .unwrap();
        p.apply_state(&led_with(3, vec![0, 1])).await;
        for err in [
            p.read_start(10).await.unwrap_err(),
            p.read(10, 1 << 20).await.unwrap_err(),
        ] {
            assert!(
                matches!(err, ClusterError::OffsetNotAvailable { partition: 0, .. }),
                "{err}"
            );
        }
        // Inside the log is fine, and past the high watermark is "nothing yet".
        assert_eq!(p.read_start(4).await.unwrap().log_end_offset, 4);
        assert!(p.read(3, 1 << 20).await.unwrap().records.is_empty());
        // Once it has published, its log end is the partition's: past it is out of range.
        p.apply_state(&led_with(4, vec![0])).await;
        p.tick().await;
        let mut hw = p.subscribe();
        tokio::time::timeout(Duration::from_secs(5), hw.wait_for(|hw| *hw == 4))
            .await
            .expect("the high watermark reaches the log end")
            .unwrap();
        let err = p.read_start(10).await.unwrap_err();
        assert!(
            matches!(err, ClusterError::OffsetOutOfRange { offset: 10, .. }),
            "{err}"
        );
    }

    /// A single-replica partition on a storage whose `fail_sync`-th fsync fails.
    pub(super) async fn open_failing(dir: &Path, fail_sync: u64) -> Arc<Partition> {
        let storage = weir_log::storage::FaultyStorage::new(weir_log::storage::FaultPlan {
            fail_sync_number: Some(fail_sync),
            ..Default::default()
        });
        open_on(dir, storage, DataDirStatus::default()).await
    }

    /// A single-replica partition on `storage`, in a data directory whose status is
    /// `data_dir`.
    pub(super) async fn open_on(
        dir: &Path,
        storage: weir_log::storage::FaultyStorage,
        data_dir: DataDirStatus,
    ) -> Arc<Partition> {
        let config = TopicConfig::new(BTreeMap::new())
            .unwrap()
            .effective()
            .unwrap();
        let host = ReplicaHost {
            storage: LogStorage(Arc::new(storage)),
            data_dir,
            ..ReplicaHost::from(0)
        };
        Partition::open("t", "t-id", 0, dir, config, host, single_replica())
            .await
            .unwrap()
    }

    /// Leader 0 of replicas [0] at epoch 0.
    pub(super) fn single_replica() -> PartitionState {
        PartitionState {
            leader: 0,
            leader_epoch: 0,
            replicas: vec![0],
            isr: vec![0],
        }
    }

    /// Appends `acks=all` until one fails; returns the values acknowledged and the error.
    pub(super) async fn append_until_failure(p: &Partition) -> (Vec<String>, ClusterError) {
        let mut acked = Vec::new();
        for i in 0..1000 {
            let value = format!("record-{i}");
            match p.append(batch_of(&value), Durability::Durable).await {
                Ok(_) => acked.push(value),
                Err(e) => return (acked, e),
            }
        }
        panic!("no fsync failed in 1000 appends");
    }

    /// Retries `f` until it succeeds (the log is being reopened meanwhile).
    pub(super) async fn eventually<T>(
        what: &str,
        mut f: impl AsyncFnMut() -> Result<T, ClusterError>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match f().await {
                Ok(v) => return v,
                Err(e) => {
                    assert!(
                        matches!(e, ClusterError::LogRecovering { .. }),
                        "{what}: {e}"
                    );
                    assert!(tokio::time::Instant::now() < deadline, "{what}: {e}");
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_failed_fsync_reopens_the_log_and_keeps_every_acknowledged_record() {
        let dir = tempfile::tempdir().unwrap();
        // Syncs 1-3 belong to opening the log; some appends succeed first.
        let p = open_failing(dir.path(), 8).await;
        let (acked, err) = append_until_failure(&p).await;
        assert!(!acked.is_empty());
        assert!(
            matches!(
                err,
                ClusterError::Maintenance { .. } | ClusterError::LogRecovering { .. }
            ),
            "{err}"
        );
        // The partition reopens its log by itself and takes appends again.
        eventually("append after the failure", async || {
            p.append(batch_of("after"), Durability::Durable).await
        })
        .await;
        let values = values(&p).await;
        assert_eq!(
            &values[..acked.len()],
            &acked[..],
            "acknowledged records kept"
        );
        assert_eq!(values.last().map(String::as_str), Some("after"));
        assert_eq!(
            values.len(),
            acked.len() + 1,
            "nothing unacknowledged kept: {values:?}"
        );
        p.close().await.unwrap();
    }

    #[tokio::test]
    async fn reconfiguring_a_failed_log_does_not_close_the_partition() {
        let dir = tempfile::tempdir().unwrap();
        let p = open_failing(dir.path(), 8).await;
        let (acked, _) = append_until_failure(&p).await;
        let overrides = [(SEGMENT_BYTES.to_string(), "2048".to_string())].into();
        let config = TopicConfig::new(overrides).unwrap().effective().unwrap();
        p.reconfigure(config).await.unwrap();
        eventually("append after reconfiguring", async || {
            p.append(batch_of("after"), Durability::Durable).await
        })
        .await;
        assert_eq!(p.config().log.segment_bytes, 2048);
        let values = values(&p).await;
        assert_eq!(&values[..acked.len()], &acked[..]);
        p.close().await.unwrap();
    }

    pub(super) fn batch_of(value: &str) -> ValidatedBatches {
        let mut b = RecordBatchBuilder::new(Compression::None);
        b.push(&Record {
            value: Some(bytes::Bytes::from(value.to_string())),
            ..Record::default()
        });
        ValidatedBatches::new(b.build().unwrap(), 1 << 20).unwrap()
    }

    /// An `acks=all` append whose write finishes just after its leadership ended (the
    /// appender runs beside the metadata, both under the log's read lock) is answered
    /// NOT_LEADER at once; one that waits while its leadership ends is answered then.
    /// The first used to wait until its request's timeout: its waiter was pushed after
    /// the end of the leadership had failed the waiters there were (found by the
    /// compose cluster's rolling restart: writes to a stopping leader waited out their
    /// 2 s request timeout).
    #[tokio::test]
    async fn an_acks_all_append_written_as_its_leadership_ends_is_answered() {
        let dir = tempfile::tempdir().unwrap();
        let config = TopicConfig::new(BTreeMap::new())
            .unwrap()
            .effective()
            .unwrap();
        // Follower 1 never fetches: nothing commits, so only the end of a leadership
        // answers a waiter.
        let state = |leader, leader_epoch| PartitionState {
            leader,
            leader_epoch,
            replicas: vec![0, 1],
            isr: vec![0, 1],
        };
        let p = Partition::open("t", "t-id", 0, dir.path(), config, 0, state(0, 0))
            .await
            .unwrap();
        let waiter = |leader_epoch| {
            let (reply, answer) = oneshot::channel();
            let outcome = AppendOutcome {
                base_offset: 0,
                last_offset: 0,
                records: 1,
                bytes: 70,
                duplicate: false,
            };
            let waiter = driver::AckWaiter {
                leader_epoch,
                outcome,
                reply,
            };
            (waiter, answer)
        };

        // Written under epoch 0, which ended (broker 1 leads at 1) before it waits.
        p.apply_state(&state(1, 1)).await;
        let (late, mut answer) = waiter(0);
        p.shared.await_commit(late);
        let err = answer.try_recv().expect("answered at once").unwrap_err();
        assert!(
            matches!(err, ClusterError::NotLeader { leader: 1, .. }),
            "{err}"
        );

        // Leading again at epoch 2: a waiter waits, until that leadership ends.
        p.apply_state(&state(0, 2)).await;
        let (waiting, mut answer) = waiter(2);
        p.shared.await_commit(waiting);
        assert!(
            answer.try_recv().is_err(),
            "nothing committed, nothing ended"
        );
        p.apply_state(&state(1, 3)).await;
        let err = answer.try_recv().expect("answered by the end").unwrap_err();
        assert!(
            matches!(err, ClusterError::NotLeader { leader: 1, .. }),
            "{err}"
        );
    }

    /// An `acks=all` append that a concurrent sync committed (the high watermark passed
    /// it) before its appender asked to wait is answered at once. It used to wait for a
    /// publish that never came, until its request's timeout.
    #[tokio::test]
    async fn an_acks_all_append_committed_before_it_waits_is_answered() {
        let dir = tempfile::tempdir().unwrap();
        let p = open(dir.path(), "delete").await;
        let (reply, mut answer) = oneshot::channel();
        let outcome = AppendOutcome {
            base_offset: 0,
            last_offset: 0,
            records: 1,
            bytes: 70,
            duplicate: false,
        };
        // What the flusher publishes after syncing offset 0.
        p.shared.high_watermark.send_replace(1);
        p.shared.await_commit(driver::AckWaiter {
            leader_epoch: 0,
            outcome,
            reply,
        });
        let got = answer.try_recv().expect("answered at once").unwrap();
        assert_eq!((got.base_offset, got.last_offset), (0, 0));
    }

    #[tokio::test]
    async fn a_compacted_topic_keeps_the_newest_value_per_key_and_skips_retention() {
        let dir = tempfile::tempdir().unwrap();
        let p = open(dir.path(), "compact").await;
        fill(&p).await;
        let now = 1_000_000_000;
        let retention = p.apply_retention(now).await.unwrap();
        assert_eq!(retention.segments_deleted, 0, "no delete in the policy");
        let outcome = p.compact(now, DAY).await.unwrap();
        assert!(outcome.records_removed > 40, "{outcome:?}");
        let values = values(&p).await;
        for newest in ["value-0057", "value-0058", "value-0059"] {
            assert!(values.iter().any(|v| v.starts_with(newest)), "{values:?}");
        }
        assert_eq!(p.offsets().await.unwrap().log_end_offset, 60);
        // Not due again until there is as much new data.
        let again = p.compact(now, DAY).await.unwrap();
        assert_eq!(again, CompactionOutcome::default());
        p.close().await.unwrap();
    }

    #[tokio::test]
    async fn a_delete_topic_keeps_retention() {
        let dir = tempfile::tempdir().unwrap();
        let p = open(dir.path(), "delete").await;
        fill(&p).await;
        let retention = p.apply_retention(1_000_000_000).await.unwrap();
        assert!(retention.segments_deleted > 0);
        p.close().await.unwrap();
    }
}
