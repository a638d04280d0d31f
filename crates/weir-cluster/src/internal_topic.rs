//! What the coordinators that keep their state in an internal compacted topic share:
//! the consumer-group coordinator (`__consumer_offsets`) and the share-group coordinator
//! (`__share_group_state`).
//!
//! - [`coordinator_of`]: which partition, and so which broker, coordinates a group.
//! - [`ensure`]: creates the topic on first use (compacted, replicated as widely as the
//!   cluster allows up to a factor), or takes the existing one.
//! - [`wait_committed`]: a new leader's wait until everything its log holds is committed,
//!   before it replays the log.
//! - [`for_each_record`]: the replay walk, log start to a committed end.
//! - [`submit_records`]: one batch of key/value records queued on the partition under
//!   the leader epoch the state was loaded at, so that another leadership refuses it,
//!   and behind the shard's [`WriteFence`], so that a shard loaded again under the same
//!   leadership replays every write the one it replaces queued.
//! - [`LeaderSlots`]: a coordinator's shards, loaded and dropped as leadership moves.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use weir_log::batch::control::{ControlType, control_type};
use weir_log::{
    BatchHeader, Compression, DecodedRecord, RecordBatchBuilder, ValidatedBatches,
    batch::RecordView, decode_records,
};

use crate::config::{CLEANUP_POLICY, SEGMENT_BYTES};
use crate::error::ClusterError;
use crate::partition::{Durability, Partition, PendingAppend};
use crate::registry::{Topic, TopicRegistry};

/// How an internal topic is made when it is missing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InternalTopic {
    pub name: &'static str,
    pub partitions: u32,
    /// Most replicas per partition; fewer if fewer brokers are registered.
    pub replication_factor: u32,
    pub segment_bytes: u64,
}

/// The internal topic, created (compacted) if missing. Brokers starting together get up
/// to `wait` to register, so the topic gets as many replicas as the voters allow. An
/// existing topic keeps its partition count.
pub(crate) async fn ensure(
    registry: &TopicRegistry,
    spec: InternalTopic,
    wait: Duration,
) -> Result<Arc<Topic>, ClusterError> {
    match registry.topic(spec.name) {
        Err(ClusterError::UnknownTopic(_)) => {}
        found => return found,
    }
    let configs = BTreeMap::from([
        (CLEANUP_POLICY.to_string(), "compact".to_string()),
        (SEGMENT_BYTES.to_string(), spec.segment_bytes.to_string()),
    ]);
    let wanted = spec
        .replication_factor
        .min(registry.cluster().settings().voters.len().max(1) as u32);
    let eligible = || {
        let image = registry.cluster().image();
        image
            .brokers()
            .filter(|b| image.is_eligible(b.node))
            .count() as u32
    };
    let deadline = Instant::now() + wait;
    while eligible() < wanted && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let replication = wanted.min(eligible().max(1));
    match registry
        .create_topic(spec.name, spec.partitions, replication, configs)
        .await
    {
        Ok(t) => Ok(t),
        Err(ClusterError::TopicExists(_)) => {
            // Another broker created it first: wait until the image has it.
            registry.wait_current().await;
            registry.topic(spec.name)
        }
        Err(e) => Err(e),
    }
}

/// The partition of the internal topic `topic` that `group_id` hashes to (Kafka's rule)
/// and its leader as this broker's metadata says (-1: none): the group's coordinator.
pub(crate) fn coordinator_of(
    registry: &TopicRegistry,
    topic: &str,
    group_id: &str,
) -> Result<(u32, i32), ClusterError> {
    let registrations = registry.topic(topic)?.registrations();
    let partition = crate::group::partition_for_group(group_id, registrations.len() as u32);
    let leader = registrations
        .get(partition as usize)
        .map_or(-1, |r| r.leader.max(-1));
    Ok((partition, leader))
}

/// Waits (at most `wait`) until this leadership of `partition` has committed everything
/// its log holds, and returns the log end to replay to. `Ok(None)`: not yet (the high
/// watermark has not reached the log end, or this broker does not lead); try later.
pub(crate) async fn wait_committed(
    partition: &Partition,
    wait: Duration,
) -> Result<Option<i64>, ClusterError> {
    let committed = match partition.leader_offsets().await {
        Ok(o) => o,
        Err(ClusterError::OffsetNotAvailable { .. } | ClusterError::NotLeader { .. }) => {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let end = committed.log_end_offset;
    if committed.high_watermark < end {
        let mut hw = partition.subscribe();
        let reached = tokio::time::timeout(wait, hw.wait_for(|hw| *hw >= end)).await;
        if !matches!(reached, Ok(Ok(_))) {
            return Ok(None);
        }
    }
    Ok(Some(end))
}

/// Calls `apply` with every record of `partition` from its log start to `end`
/// (exclusive), in log order, reading `read_bytes` at a time. Stops at the first error
/// `apply` returns; a batch that does not decode is `corrupt(its offset, why)`.
pub(crate) async fn for_each_record<E: From<ClusterError>>(
    partition: &Partition,
    end: i64,
    read_bytes: usize,
    corrupt: impl Fn(i64, String) -> E,
    mut apply: impl FnMut(DecodedRecord) -> Result<(), E>,
) -> Result<(), E> {
    for_each_batch_record(partition, end, read_bytes, corrupt, |batch, record| {
        match batch {
            BatchOf::Plain => apply(record),
            // Only the group coordinator writes transactional batches (and has markers
            // written) on its topic; the others have none, and skip what is not theirs.
            BatchOf::Transactional { .. } | BatchOf::Marker { .. } => Ok(()),
        }
    })
    .await
}

/// What batch a replayed record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BatchOf {
    /// A batch of no transaction.
    Plain,
    /// A transactional data batch of `producer_id`.
    Transactional { producer_id: i64 },
    /// A transaction marker (control batch) of `producer_id`: `commit`, or an abort.
    Marker { producer_id: i64, commit: bool },
}

/// [`for_each_record`] telling `apply` which batch each record came from: a
/// transactional batch's producer, or a marker (whose one record is the control
/// record).
pub(crate) async fn for_each_batch_record<E: From<ClusterError>>(
    partition: &Partition,
    end: i64,
    read_bytes: usize,
    corrupt: impl Fn(i64, String) -> E,
    mut apply: impl FnMut(BatchOf, DecodedRecord) -> Result<(), E>,
) -> Result<(), E> {
    let mut position = partition.offsets().await?.log_start_offset;
    while position < end {
        let data = partition.read(position, read_bytes).await?;
        for batch in data.batches() {
            let header = BatchHeader::parse(&batch);
            let of = if header.is_control() {
                match control_type(&batch, &header) {
                    Ok(ControlType::Commit) => BatchOf::Marker {
                        producer_id: header.producer_id,
                        commit: true,
                    },
                    Ok(ControlType::Abort) => BatchOf::Marker {
                        producer_id: header.producer_id,
                        commit: false,
                    },
                    Err(e) => return Err(corrupt(header.base_offset, e.to_string())),
                }
            } else if header.is_transactional() {
                BatchOf::Transactional {
                    producer_id: header.producer_id,
                }
            } else {
                BatchOf::Plain
            };
            let decoded = decode_records(&batch).map_err(|e| corrupt(position, e.to_string()))?;
            for record in decoded.into_iter().filter(|r| r.offset < end) {
                apply(of, record)?;
            }
        }
        if data.next_offset <= position {
            break;
        }
        position = data.next_offset;
    }
    Ok(())
}

/// Milliseconds since the Unix epoch, by this machine's clock: the timestamp of the
/// records written here.
pub(crate) fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Why a batch of records could not be queued.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SubmitError {
    /// Larger than the topic's `max.message.bytes`: the caller asked for too much in one
    /// request.
    #[error(
        "the request makes a {bytes} byte record batch, over the {max} byte limit of {topic} (max.message.bytes)"
    )]
    TooLarge {
        topic: &'static str,
        bytes: usize,
        max: usize,
    },
    #[error("cannot encode the records: {0}")]
    Encode(String),
    /// The shard was replaced (a write of it failed, or it no longer leads): it queues
    /// nothing more. Retriable: the request goes to the shard that replaces it.
    #[error("the coordinator state of this partition is loading again")]
    Fenced,
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

/// The writes a shard has queued on its partition, and the fence that ends them.
///
/// A shard whose write failed is loaded again from the log, under the same leadership
/// (so the partition's leader epoch, which refuses another leadership's writes, does not
/// refuse the old shard's). The new shard replays the log up to its committed end; a
/// write the old shard had queued that the partition had not appended yet would land
/// after that end, unseen by the new shard, while the old one answered a client once it
/// was durable: a share fetch's delivery count, a lock, a committed offset that a later
/// answer then contradicts. So the old shard is fenced (it queues nothing more) and the
/// new one loads only once every write the old one queued has its outcome
/// ([`LeaderSlots::follow`]).
///
/// A [chained](WriteFence::chained) fence also orders the writes' outcomes: a write is
/// answered as durable only once every write queued before it through the fence is,
/// and one appended after a write that failed is answered
/// [`ClusterError::EarlierWriteFailed`]. The share coordinator's writes carry what
/// changed since the write before, so a later write's success says nothing of a failed
/// earlier one's changes; taken as a sign that they were durable (it copies a REJECTed
/// record to the dead-letter topic once a write at or after the REJECT's is durable), it
/// acted on state the reloaded shard never saw: a record dead-lettered, then delivered
/// again and accepted. A chained fence suits a shard that is loaded again after any
/// failed write (a broken chain fails every later write); the group coordinator, whose
/// offset commits may fail one by one without a reload, counts each write on its own.
#[derive(Debug, Default)]
pub(crate) struct WriteFence {
    closed: AtomicBool,
    /// One read guard per write queued and not yet resolved; the fence's drain takes the
    /// write lock. (tokio's lock is fair: a waiting drain holds back later entries.)
    writes: Arc<tokio::sync::RwLock<()>>,
    /// Chained fences only: the last write queued, which resolves to whether it and
    /// every write before it are durable. Locked across a write's queuing, so the chain
    /// is in append order.
    chain: Option<tokio::sync::Mutex<Option<tokio::sync::oneshot::Receiver<bool>>>>,
}

/// Leave to queue one write, held until the write's outcome is known.
#[derive(Debug)]
struct WritePermit {
    _held: tokio::sync::OwnedRwLockReadGuard<()>,
}

impl WriteFence {
    /// A fence whose writes count as durable only with every write before them.
    pub(crate) fn chained() -> WriteFence {
        WriteFence {
            chain: Some(tokio::sync::Mutex::new(None)),
            ..WriteFence::default()
        }
    }

    /// Leave to queue a write; `None` once the fence is closed.
    async fn enter(&self) -> Option<WritePermit> {
        let guard = self.writes.clone().read_owned().await;
        // Checked after the guard is taken: a close either came first (refused here) or
        // waits in `drained` for this write.
        (!self.closed.load(Ordering::SeqCst)).then_some(WritePermit { _held: guard })
    }

    /// No write is let in any more.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Closes the fence and waits, at most `wait`, until every write let in has its
    /// outcome (appended and durable, or refused). True if they all have.
    pub(crate) async fn drained(&self, wait: Duration) -> bool {
        self.close();
        tokio::time::timeout(wait, self.writes.write())
            .await
            .is_ok()
    }
}

/// A keyed record of an internal topic, for [`submit_records`]: `key`, and `value`
/// (`None`: a tombstone), without headers.
pub(crate) fn keyed<'a>(key: &'a [u8], value: Option<&'a [u8]>) -> RecordView<'a> {
    RecordView {
        key: Some(key),
        value,
        headers: &[],
        timestamp: 0,
    }
}

/// Builds one uncompressed batch of `records` (key, value or tombstone, headers: the
/// share coordinator's locks; each stamped with the time now, whatever its view says)
/// and queues it on `partition` (of the internal topic `topic`) for a durable
/// (`acks=all`, fsynced) append under `leader_epoch`. Returns the pending append: appends are written in the
/// order they are queued, so a caller that serializes its calls here may let the next
/// writer in before awaiting it. The write holds a permit of `fence` until its outcome
/// is known, whether or not the caller still waits for it.
pub(crate) async fn submit_records<'a>(
    fence: &WriteFence,
    partition: &Partition,
    topic: &'static str,
    leader_epoch: i32,
    records: impl IntoIterator<Item = RecordView<'a>>,
) -> Result<PendingAppend, SubmitError> {
    submit_batch(fence, partition, topic, leader_epoch, records, None).await
}

/// The transactional producer a batch is written for: id, epoch and the sequence of its
/// first record.
pub(crate) type TxnProducer = (i64, i16, i32);

/// [`submit_records`], the batch written as a transactional batch of `producer` when
/// one is given (the group coordinator's TxnOffsetCommit).
pub(crate) async fn submit_batch<'a>(
    fence: &WriteFence,
    partition: &Partition,
    topic: &'static str,
    leader_epoch: i32,
    records: impl IntoIterator<Item = RecordView<'a>>,
    producer: Option<TxnProducer>,
) -> Result<PendingAppend, SubmitError> {
    let timestamp = wall_clock_ms();
    let mut builder = RecordBatchBuilder::new(Compression::None);
    if let Some((id, epoch, sequence)) = producer {
        builder = builder
            .producer_id(id)
            .producer_epoch(epoch)
            .base_sequence(sequence)
            .transactional();
    }
    for record in records {
        builder
            .try_push_view(RecordView {
                timestamp,
                ..record
            })
            .map_err(|e| SubmitError::Encode(e.to_string()))?;
    }
    let bytes = builder
        .build()
        .map_err(|e| SubmitError::Encode(e.to_string()))?;
    let max = partition.config().log.max_message_bytes;
    if bytes.len() > max {
        return Err(SubmitError::TooLarge {
            topic,
            bytes: bytes.len(),
            max,
        });
    }
    let batch = ValidatedBatches::new(bytes, max).map_err(|source| ClusterError::Append {
        topic: topic.to_string(),
        partition: partition.index(),
        source,
    })?;
    let permit = fence.enter().await.ok_or(SubmitError::Fenced)?;
    let mut chain = match &fence.chain {
        Some(chain) => Some(chain.lock().await),
        None => None,
    };
    // This write's link: the one before it, and where it says whether it and all before
    // it are durable.
    let (earlier, done) = match chain.as_deref_mut() {
        Some(last) => {
            let (done, next) = tokio::sync::oneshot::channel();
            (last.replace(next), Some(done))
        }
        None => (None, None),
    };
    let pending = match partition
        .submit_under(batch, Durability::Durable, leader_epoch)
        .await
    {
        Ok(pending) => pending,
        Err(e) => {
            // Refused before it was queued: no write after it counts as durable.
            if let Some(done) = done {
                let _ = done.send(false);
            }
            return Err(e.into());
        }
    };
    drop(chain);
    // The permit goes with the outcome, not with the caller, who may stop waiting (a
    // cancelled request) while the write is still queued.
    let (outcome, held) = tokio::sync::oneshot::channel();
    let index = partition.index();
    tokio::spawn(async move {
        let result = pending.await;
        let earlier_durable = match earlier {
            Some(earlier) => earlier.await.unwrap_or(false),
            None => true,
        };
        if let Some(done) = done {
            let _ = done.send(earlier_durable && matches!(result, Ok(Ok(_))));
        }
        if let Ok(result) = result {
            let _ = outcome.send(match result {
                Ok(_) if !earlier_durable => Err(ClusterError::EarlierWriteFailed {
                    topic: topic.to_owned(),
                    partition: index,
                }),
                result => result,
            });
        }
        drop(permit);
    });
    Ok(held)
}

/// The state a coordinator loaded from one partition of its internal topic, served while
/// this broker leads that partition at the epoch it was loaded at.
pub(crate) trait LoadedShard {
    /// The leader epoch the state was loaded at.
    fn leader_epoch(&self) -> i32;
    /// True once a write failed: memory may hold what the log does not, so the shard
    /// must be loaded again.
    fn failed(&self) -> bool;
    /// How many groups (or transactional ids) it holds, for the log line that announces
    /// it.
    fn group_count(&self) -> usize;
    /// True while its partition's replica here leads at the epoch it was loaded at. The
    /// slot follows leadership only when metadata changes are followed; this closes the
    /// window before that, in which memory may lack what another leadership wrote.
    fn leads(&self) -> bool;
    /// It stops serving: every request waiting on it is answered at once,
    /// NOT_COORDINATOR naming `coordinator` (the partition's leader now; -1 if none is
    /// known), so none waits for a timeout on a shard nobody serves any more.
    fn resign(&self, coordinator: i32);
    /// The fence its writes pass ([`submit_records`]).
    fn writes(&self) -> &WriteFence;
}

/// How long a shard's replacement waits for the writes the replaced one queued under the
/// same leadership ([`WriteFence`]) before [`LeaderSlots::follow`] tries again later.
/// Each is an fsynced append that waits for the ISR: a second or two even under load.
const FENCE_DRAIN_WAIT: Duration = Duration::from_secs(5);

/// Most shards [`LeaderSlots::follow`] loads at once.
const MAX_CONCURRENT_LOADS: usize = 16;

/// One slot per partition of an internal topic: its shard while this broker leads the
/// partition and has loaded it.
#[derive(Debug)]
pub(crate) struct LeaderSlots<S> {
    topic: &'static str,
    slots: Vec<std::sync::RwLock<Option<Arc<S>>>>,
    /// Per slot, a shard replaced under the same leadership whose queued writes have not
    /// all had their outcome yet: its replacement loads once they have ([`WriteFence`]).
    retiring: Vec<std::sync::Mutex<Option<Arc<S>>>>,
    /// Serializes [`follow`](Self::follow).
    following: tokio::sync::Mutex<()>,
}

impl<S: LoadedShard> LeaderSlots<S> {
    pub(crate) fn new(topic: &'static str, partitions: u32) -> LeaderSlots<S> {
        LeaderSlots {
            topic,
            slots: (0..partitions)
                .map(|_| std::sync::RwLock::new(None))
                .collect(),
            retiring: (0..partitions)
                .map(|_| std::sync::Mutex::new(None))
                .collect(),
            following: tokio::sync::Mutex::new(()),
        }
    }

    pub(crate) fn len(&self) -> u32 {
        self.slots.len() as u32
    }

    /// The shard of partition `index`, if loaded here, not failed, and still leading at
    /// the epoch it was loaded at.
    pub(crate) fn get(&self, index: u32) -> Option<Arc<S>> {
        self.slots[index as usize]
            .read()
            .expect("shard slot lock")
            .clone()
            .filter(|s| !s.failed() && s.leads())
    }

    /// Puts `shard` in slot `index`; the shard it replaces resigns (its waiting requests
    /// hear NOT_COORDINATOR naming `leader`), queues no more writes, and is returned.
    fn set(&self, index: u32, shard: Option<Arc<S>>, leader: i32) -> Option<Arc<S>> {
        let old = std::mem::replace(
            &mut *self.slots[index as usize].write().expect("shard slot lock"),
            shard,
        );
        if let Some(old) = &old {
            old.writes().close();
            old.resign(leader);
        }
        old
    }

    /// Whether slot `index` may load at `leader_epoch`: no shard replaced under that
    /// leadership has writes without an outcome (waits for them, at most
    /// [`FENCE_DRAIN_WAIT`]). A shard of another leadership needs no wait: the partition
    /// refuses its writes at append.
    async fn drained(&self, index: u32, leader_epoch: i32) -> bool {
        let retiring = self.retiring[index as usize]
            .lock()
            .expect("retiring slot lock")
            .take();
        let Some(old) = retiring.filter(|old| old.leader_epoch() == leader_epoch) else {
            return true;
        };
        if old.writes().drained(FENCE_DRAIN_WAIT).await {
            return true;
        }
        *self.retiring[index as usize]
            .lock()
            .expect("retiring slot lock") = Some(old);
        false
    }

    /// Every shard loaded here.
    pub(crate) fn loaded(&self) -> Vec<Arc<S>> {
        (0..self.len()).filter_map(|i| self.get(i)).collect()
    }

    /// Loads (with `load`, several at once) the shards of the partitions of `topic` this
    /// broker now leads and drops those it no longer leads, or whose write failed (to load
    /// them again from the log). Returns how many it leads but could not load yet; they
    /// are tried again on the next call. `load(index, partition, leader_epoch)` answers
    /// `Ok(None)` when the partition is not ready (its high watermark has not reached its
    /// log end).
    pub(crate) async fn follow<F, Fut, E>(&self, topic: &Topic, me: i32, mut load: F) -> usize
    where
        F: FnMut(u32, Arc<Partition>, i32) -> Fut,
        Fut: std::future::Future<Output = Result<Option<Arc<S>>, E>>,
        E: std::fmt::Display,
    {
        let _one = self.following.lock().await;
        let name = self.topic;
        let mut waiting = 0;
        let mut to_load = Vec::new();
        for index in 0..self.len() {
            let current = self.slots[index as usize]
                .read()
                .expect("shard slot lock")
                .clone();
            let leading = topic
                .partition(index)
                .ok()
                .map(|p| {
                    let state = p.state();
                    (p, state)
                })
                .filter(|(_, state)| state.leader == me);
            let Some((partition, state)) = leading else {
                if current.is_some() {
                    let leader = topic.partition(index).map_or(-1, |p| p.state().leader);
                    self.set(index, None, leader);
                    tracing::info!(
                        partition = index,
                        "no longer the coordinator of this {name} partition"
                    );
                }
                continue;
            };
            if current
                .as_ref()
                .is_some_and(|s| s.leader_epoch() == state.leader_epoch && !s.failed())
            {
                continue;
            }
            // Loaded again (a new leadership, or a write failed): requests parked on the
            // old shard try again, and find this broker loading.
            if let Some(old) = self.set(index, None, -1)
                && old.leader_epoch() == state.leader_epoch
            {
                *self.retiring[index as usize]
                    .lock()
                    .expect("retiring slot lock") = Some(old);
            }
            to_load.push((index, partition, state.leader_epoch));
        }
        // Side by side, at most MAX_CONCURRENT_LOADS at once: each load first waits (up to
        // its coordinator's load wait) for its partition's high watermark to reach the log
        // end, and one at a time a broker that had just taken 20 partitions whose ISR had
        // not caught up spent 20 such waits before loading the first that was ready,
        // answering "loading" for all of them meanwhile.
        let loads = to_load.into_iter().map(|(index, partition, leader_epoch)| {
            let started = Instant::now();
            let loading = load(index, partition, leader_epoch);
            async move {
                let outcome = match self.drained(index, leader_epoch).await {
                    true => loading.await,
                    false => {
                        tracing::info!(
                            partition = index,
                            "writes of the {name} shard being replaced are still queued; loading later"
                        );
                        Ok(None)
                    }
                };
                (index, leader_epoch, started, outcome)
            }
        });
        let mut loads = futures_util::stream::iter(loads).buffer_unordered(MAX_CONCURRENT_LOADS);
        // One line for the pass, not one per partition: a broker's first start loads 48.
        let mut loaded = Vec::new();
        let mut held = 0;
        let mut slowest = Duration::ZERO;
        while let Some((index, leader_epoch, started, outcome)) = loads.next().await {
            match outcome {
                Ok(Some(shard)) => {
                    let took = started.elapsed();
                    let groups = shard.group_count();
                    tracing::debug!(
                        partition = index,
                        leader_epoch,
                        held = groups,
                        ?took,
                        "coordinating this {name} partition (held: its groups or transactional ids)"
                    );
                    loaded.push((index, leader_epoch));
                    held += groups;
                    slowest = slowest.max(took);
                    self.set(index, Some(shard), -1);
                }
                Ok(None) => waiting += 1,
                Err(e) => {
                    waiting += 1;
                    tracing::warn!(partition = index, error = %e, "loading this {name} partition's coordinator state failed; retrying");
                }
            }
        }
        if !loaded.is_empty() {
            loaded.sort_unstable();
            tracing::info!(
                partitions = ?loaded.iter().map(|&(index, _)| index).collect::<Vec<_>>(),
                leader_epochs = ?loaded.iter().map(|&(_, epoch)| epoch).collect::<Vec<_>>(),
                held,
                ?slowest,
                "coordinating {} {name} partition(s) (held: their groups or transactional ids)",
                loaded.len()
            );
        }
        waiting
    }
}

/// Runs `follow` (a coordinator's leadership check) on every metadata change and every
/// `interval`, until `shutdown` turns true; a failure is logged and tried again.
pub(crate) fn spawn_following<F, Fut, E>(
    registry: Arc<TopicRegistry>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    interval: Duration,
    topic: &'static str,
    follow: F,
) where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), E>> + Send,
    E: std::fmt::Display,
{
    tokio::spawn(async move {
        let mut images = registry.cluster().subscribe();
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            if *shutdown.borrow() {
                break;
            }
            tokio::select! {
                _ = tick.tick() => {}
                changed = images.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    // Leadership reaches the partitions once the registry applied it.
                    registry.wait_current().await;
                }
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    continue;
                }
            }
            if let Err(e) = follow().await {
                tracing::warn!(error = %e, "following {topic} leadership failed");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// A shard of nothing: what [`LeaderSlots`] needs to load, replace and fence it.
    #[derive(Debug)]
    struct Probe {
        leader_epoch: i32,
        partition: Arc<Partition>,
        failed: AtomicBool,
        writes: WriteFence,
    }

    impl LoadedShard for Probe {
        fn leader_epoch(&self) -> i32 {
            self.leader_epoch
        }
        fn failed(&self) -> bool {
            self.failed.load(Ordering::SeqCst)
        }
        fn group_count(&self) -> usize {
            0
        }
        fn leads(&self) -> bool {
            self.partition.leads_at(self.leader_epoch)
        }
        fn resign(&self, _: i32) {}
        fn writes(&self) -> &WriteFence {
            &self.writes
        }
    }

    async fn one_partition() -> (tempfile::TempDir, Arc<TopicRegistry>, Arc<Topic>) {
        let dir = tempfile::tempdir().unwrap();
        let registry = TopicRegistry::open(dir.path(), 0).await.unwrap();
        let topic = registry
            .create_topic("state", 1, 1, BTreeMap::new())
            .await
            .unwrap();
        (dir, registry, topic)
    }

    /// Loads a [`Probe`] into `slots` wherever this broker leads, counting the loads.
    async fn follow(slots: &LeaderSlots<Probe>, topic: &Topic, loads: &AtomicUsize) -> usize {
        slots
            .follow(topic, 0, |_, partition, leader_epoch| async move {
                loads.fetch_add(1, Ordering::SeqCst);
                Ok::<_, ClusterError>(Some(Arc::new(Probe {
                    leader_epoch,
                    partition,
                    failed: AtomicBool::new(false),
                    writes: WriteFence::default(),
                })))
            })
            .await
    }

    /// A shard loaded again under the same leadership after a write failed waits until
    /// every write the failed one queued has its outcome (else the new shard's replay
    /// could end before a write whose answer went out), and the failed one queues
    /// nothing more.
    #[tokio::test]
    async fn a_shard_loaded_again_waits_for_the_writes_the_failed_one_queued() {
        let (_dir, _registry, topic) = one_partition().await;
        let slots = LeaderSlots::<Probe>::new("state", 1);
        let loads = AtomicUsize::new(0);
        assert_eq!(follow(&slots, &topic, &loads).await, 0);
        let old = slots.get(0).expect("loaded");
        assert_eq!(loads.load(Ordering::SeqCst), 1);

        // One write of the old shard is still queued when a later one fails.
        let queued = old.writes.enter().await.expect("open");
        old.failed.store(true, Ordering::SeqCst);
        assert!(slots.get(0).is_none(), "a failed shard serves nothing");
        let released = Arc::new(std::sync::Mutex::new(None));
        let release = {
            let released = released.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                *released.lock().unwrap() = Some(Instant::now());
                drop(queued);
            })
        };
        assert_eq!(follow(&slots, &topic, &loads).await, 0);
        let loaded_at = Instant::now();
        release.await.unwrap();
        let released = released.lock().unwrap().expect("released");
        assert!(
            released <= loaded_at,
            "the new shard loaded before the old shard's queued write had its outcome"
        );
        assert_eq!(loads.load(Ordering::SeqCst), 2);
        assert!(slots.get(0).is_some());

        // The old shard is fenced: a write it tries now is refused, retriably.
        let partition = topic.partition(0).unwrap();
        let refused = submit_records(
            &old.writes,
            &partition,
            "state",
            old.leader_epoch,
            [keyed(b"k", Some(b"v"))],
        )
        .await;
        assert!(matches!(refused, Err(SubmitError::Fenced)), "{refused:?}");
        assert_eq!(partition.offsets().await.unwrap().log_end_offset, 0);
    }

    /// On a chained fence a write appended after one that failed is not answered as
    /// durable (the failed write's changes are not in the log, whatever the later one
    /// says); on a plain fence each write counts on its own.
    #[tokio::test]
    async fn a_chained_fence_answers_no_write_after_a_failed_one_as_durable() {
        let (_dir, _registry, topic) = one_partition().await;
        let partition = topic.partition(0).unwrap();
        let epoch = partition.state().leader_epoch;
        async fn write(
            fence: &WriteFence,
            partition: &Partition,
            epoch: i32,
        ) -> Result<PendingAppend, SubmitError> {
            submit_records(fence, partition, "state", epoch, [keyed(b"k", Some(b"v"))]).await
        }
        for chained in [true, false] {
            let fence = if chained {
                WriteFence::chained()
            } else {
                WriteFence::default()
            };
            let first = write(&fence, &partition, epoch)
                .await
                .unwrap()
                .await
                .unwrap();
            assert!(first.is_ok(), "{first:?}");
            // Refused: another leadership's epoch.
            let refused = write(&fence, &partition, epoch + 1).await;
            assert!(
                matches!(refused, Err(SubmitError::Cluster(_))),
                "{refused:?}"
            );
            let end = partition.offsets().await.unwrap().log_end_offset;
            let after = write(&fence, &partition, epoch)
                .await
                .unwrap()
                .await
                .unwrap();
            // Appended either way.
            assert_eq!(partition.offsets().await.unwrap().log_end_offset, end + 1);
            if chained {
                assert!(
                    matches!(after, Err(ClusterError::EarlierWriteFailed { .. })),
                    "{after:?}"
                );
            } else {
                assert!(after.is_ok(), "{after:?}");
            }
        }
    }

    /// A write let through the fence keeps its permit until its outcome is known, even
    /// when its caller stops waiting at once (a cancelled request).
    #[tokio::test]
    async fn a_write_holds_the_fence_until_its_outcome_even_without_a_caller() {
        let (_dir, _registry, topic) = one_partition().await;
        let partition = topic.partition(0).unwrap();
        let epoch = partition.state().leader_epoch;
        let fence = WriteFence::default();
        let pending = submit_records(
            &fence,
            &partition,
            "state",
            epoch,
            [keyed(b"k", Some(b"v"))],
        )
        .await
        .unwrap();
        drop(pending);
        assert!(fence.drained(Duration::from_secs(10)).await);
        // Drained means appended: the load that follows replays it.
        assert_eq!(partition.offsets().await.unwrap().log_end_offset, 1);
    }
}
