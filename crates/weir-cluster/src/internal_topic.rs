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
//!   the leader epoch the state was loaded at, so that another leadership refuses it.

use std::collections::BTreeMap;
use std::sync::Arc;
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
    #[error(transparent)]
    Cluster(#[from] ClusterError),
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
/// writer in before awaiting it.
pub(crate) async fn submit_records<'a>(
    partition: &Partition,
    topic: &'static str,
    leader_epoch: i32,
    records: impl IntoIterator<Item = RecordView<'a>>,
) -> Result<PendingAppend, SubmitError> {
    submit_batch(partition, topic, leader_epoch, records, None).await
}

/// The transactional producer a batch is written for: id, epoch and the sequence of its
/// first record.
pub(crate) type TxnProducer = (i64, i16, i32);

/// [`submit_records`], the batch written as a transactional batch of `producer` when
/// one is given (the group coordinator's TxnOffsetCommit).
pub(crate) async fn submit_batch<'a>(
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
    Ok(partition
        .submit_under(batch, Durability::Durable, leader_epoch)
        .await?)
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
}

/// Most shards [`LeaderSlots::follow`] loads at once.
const MAX_CONCURRENT_LOADS: usize = 16;

/// One slot per partition of an internal topic: its shard while this broker leads the
/// partition and has loaded it.
#[derive(Debug)]
pub(crate) struct LeaderSlots<S> {
    topic: &'static str,
    slots: Vec<std::sync::RwLock<Option<Arc<S>>>>,
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
    /// hear NOT_COORDINATOR naming `leader`).
    fn set(&self, index: u32, shard: Option<Arc<S>>, leader: i32) {
        let old = std::mem::replace(
            &mut *self.slots[index as usize].write().expect("shard slot lock"),
            shard,
        );
        if let Some(old) = old {
            old.resign(leader);
        }
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
            self.set(index, None, -1);
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
            async move { (index, leader_epoch, started, loading.await) }
        });
        let mut loads = futures_util::stream::iter(loads).buffer_unordered(MAX_CONCURRENT_LOADS);
        while let Some((index, leader_epoch, started, outcome)) = loads.next().await {
            match outcome {
                Ok(Some(shard)) => {
                    tracing::info!(
                        partition = index,
                        leader_epoch,
                        held = shard.group_count(),
                        took = ?started.elapsed(),
                        "coordinating this {name} partition (held: its groups or transactional ids)"
                    );
                    self.set(index, Some(shard), -1);
                }
                Ok(None) => waiting += 1,
                Err(e) => {
                    waiting += 1;
                    tracing::warn!(partition = index, error = %e, "loading this {name} partition's coordinator state failed; retrying");
                }
            }
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
