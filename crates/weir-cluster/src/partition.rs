//! One partition on this broker: its log, its replication state (leader, leader epoch,
//! replicas, ISR) and its high watermark, with the ordered append queue and the
//! wake-ups that long-polling readers wait on.
//!
//! Appends go through a bounded queue ([`APPEND_QUEUE_DEPTH`]) to one appender task per
//! partition, which runs `Log::append_validated` on a blocking thread. The queue keeps
//! appends in the order they were submitted (a pipelined producer relies on that),
//! bounds the memory held by waiting appends (a full queue makes submitters wait:
//! backpressure), and lets the appender take several queued appends in one blocking
//! call.
//!
//! Single node: the replica set and ISR are this broker, the leader epoch stays at its
//! assigned value, and the high watermark moves to the log end as soon as an append is
//! written (in the page cache, so it survives a process crash). Durable acknowledgement
//! (`acks=all`) additionally waits, under `flush.policy=group-commit`, for the fsync
//! that covers the records; `every-append` has synced them already; `interval:<ms>` and
//! `none` promise no more than they say, so `acks=all` does not wait under them.
//!
//! The log is behind an async `RwLock`: every use takes a read guard for its duration,
//! so reconfiguring (close and reopen with a new `LogConfig`) or closing the partition
//! takes the write guard and knows nobody still holds the log.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedRwLockReadGuard, RwLock, mpsc, oneshot, watch};
use weir_log::{
    CompactionOutcome, FetchData, FlushPolicy, Log, LogOffsets, RetentionOutcome, ValidatedBatches,
};

use crate::config::EffectiveConfig;
use crate::error::ClusterError;

/// Appends waiting for one partition's appender. A full queue makes producers wait,
/// which slows their streams (HTTP/2 flow control) instead of buffering without bound.
pub const APPEND_QUEUE_DEPTH: usize = 64;
/// Most queued appends the appender takes into one blocking call.
pub const MAX_APPENDS_PER_WAKEUP: usize = 32;

/// A broker id.
pub type BrokerId = i32;

/// Replication state of a partition. On one node: this broker leads, is the only
/// replica and the whole ISR.
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

/// What an append wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    pub base_offset: i64,
    pub last_offset: i64,
    pub records: u64,
    pub bytes: u64,
}

/// How long an append's answer waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Answer once written to the log (page cache).
    Written,
    /// Answer once durable per the topic's flush policy (see the module docs).
    Durable,
}

type AppendReply = oneshot::Sender<Result<AppendOutcome, ClusterError>>;

/// The answer to a submitted append; await it (or drop it for fire-and-forget).
pub type PendingAppend = oneshot::Receiver<Result<AppendOutcome, ClusterError>>;

struct AppendJob {
    batches: ValidatedBatches,
    durability: Durability,
    reply: AppendReply,
}

/// What the appender task and the partition share.
#[derive(Debug)]
struct Shared {
    topic: String,
    index: u32,
    dir: PathBuf,
    /// `None` once the partition is closed.
    log: Arc<RwLock<Option<Log>>>,
    state: Mutex<PartitionState>,
    config: Mutex<EffectiveConfig>,
    high_watermark: watch::Sender<i64>,
}

/// One partition of a topic on this broker.
#[derive(Debug)]
pub struct Partition {
    shared: Arc<Shared>,
    queue: mpsc::Sender<AppendJob>,
}

impl Shared {
    fn closed(&self) -> ClusterError {
        ClusterError::PartitionClosed {
            topic: self.topic.clone(),
            partition: self.index,
        }
    }

    async fn read_guard(&self) -> OwnedRwLockReadGuard<Option<Log>> {
        self.log.clone().read_owned().await
    }

    /// Runs `f` on the log on a blocking thread (weir-log is synchronous and may fsync).
    async fn with_log<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Log) -> Result<R, ClusterError> + Send + 'static,
    ) -> Result<R, ClusterError> {
        let guard = self.read_guard().await;
        let closed = self.closed();
        tokio::task::spawn_blocking(move || match guard.as_ref() {
            Some(log) => f(log),
            None => Err(closed),
        })
        .await
        .map_err(|e| ClusterError::TaskFailed(e.to_string()))?
    }

    fn maintenance(&self) -> impl Fn(weir_log::MaintenanceError) -> ClusterError + use<> {
        let (topic, partition) = (self.topic.clone(), self.index);
        move |source| ClusterError::Maintenance {
            topic: topic.clone(),
            partition,
            source,
        }
    }

    /// Raises the high watermark to `end` (never lowers it) and wakes waiting readers.
    fn advance_high_watermark(&self, end: i64) {
        self.high_watermark.send_if_modified(|hw| {
            if end > *hw {
                *hw = end;
                true
            } else {
                false
            }
        });
    }
}

impl Partition {
    /// Opens (creating if needed) the partition's log in `dir` and starts its appender.
    /// Must run inside a tokio runtime.
    pub async fn open(
        topic: &str,
        index: u32,
        dir: &Path,
        config: EffectiveConfig,
        state: PartitionState,
    ) -> Result<Arc<Partition>, ClusterError> {
        let log = open_log(topic, index, dir, &config).await?;
        // One node: everything in the log was acknowledged or is at least in it, so all
        // of it is visible.
        let end = log.offsets().log_end_offset;
        let (high_watermark, _) = watch::channel(end);
        let shared = Arc::new(Shared {
            topic: topic.to_string(),
            index,
            dir: dir.to_path_buf(),
            log: Arc::new(RwLock::new(Some(log))),
            state: Mutex::new(state),
            config: Mutex::new(config),
            high_watermark,
        });
        let (queue, jobs) = mpsc::channel(APPEND_QUEUE_DEPTH);
        tokio::spawn(run_appender(shared.clone(), jobs));
        Ok(Arc::new(Partition { shared, queue }))
    }

    pub fn topic(&self) -> &str {
        &self.shared.topic
    }

    pub fn index(&self) -> u32 {
        self.shared.index
    }

    pub fn state(&self) -> PartitionState {
        self.shared.state.lock().expect("state mutex").clone()
    }

    /// The topic settings this partition runs with.
    pub fn config(&self) -> EffectiveConfig {
        self.shared.config.lock().expect("config mutex").clone()
    }

    pub fn high_watermark(&self) -> i64 {
        *self.shared.high_watermark.borrow()
    }

    /// A receiver that changes whenever the high watermark moves (long-poll wake-ups).
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.shared.high_watermark.subscribe()
    }

    /// Queues an append (waiting while the queue is full) and returns its pending
    /// answer. Appends to one partition are written in the order they were submitted.
    pub async fn submit(
        &self,
        batches: ValidatedBatches,
        durability: Durability,
    ) -> Result<PendingAppend, ClusterError> {
        let (reply, pending) = oneshot::channel();
        self.queue
            .send(AppendJob {
                batches,
                durability,
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

    /// Log start, high watermark and log end.
    pub async fn offsets(&self) -> Result<PartitionOffsets, ClusterError> {
        let guard = self.shared.read_guard().await;
        let log = guard.as_ref().ok_or_else(|| self.shared.closed())?;
        // A short mutex hold inside weir-log (no I/O under it), fine on this thread.
        let LogOffsets {
            log_start_offset,
            log_end_offset,
            ..
        } = log.offsets();
        Ok(PartitionOffsets {
            log_start_offset,
            high_watermark: self.high_watermark().max(log_start_offset),
            log_end_offset,
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

    /// Reads whole batches from `offset`, up to `max_bytes` (at least one batch), only
    /// below the high watermark. `offset` must be within `[log start, high watermark]`.
    pub async fn read(&self, offset: i64, max_bytes: usize) -> Result<FetchData, ClusterError> {
        let offsets = self.offsets().await?;
        if offset < offsets.log_start_offset || offset > offsets.high_watermark {
            return Err(self.out_of_range(offset, offsets));
        }
        let hw = offsets.high_watermark;
        let (topic, partition) = (self.shared.topic.clone(), self.shared.index);
        self.shared
            .with_log(move |log| {
                log.read(offset, max_bytes, Some(hw))
                    .map_err(|source| match source {
                        // Retention moved the start between our check and the read.
                        weir_log::ReadError::OffsetOutOfRange {
                            log_start_offset, ..
                        } => ClusterError::OffsetOutOfRange {
                            topic,
                            partition,
                            offset,
                            log_start_offset,
                            high_watermark: hw,
                        },
                        source => ClusterError::Read {
                            topic,
                            partition,
                            source,
                        },
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

    /// Removes every record below `offset` (at most the high watermark); returns the new
    /// log start offset.
    pub async fn delete_records_before(&self, offset: i64) -> Result<i64, ClusterError> {
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

    /// Applies new topic settings: the log is closed (flushed) and reopened with them,
    /// after in-progress operations finish; appends queue meanwhile.
    pub async fn reconfigure(&self, config: EffectiveConfig) -> Result<(), ClusterError> {
        let mut guard = self.shared.log.write().await;
        let old = guard.take().ok_or_else(|| self.shared.closed())?;
        let err = self.shared.maintenance();
        tokio::task::spawn_blocking(move || old.close().map_err(err))
            .await
            .map_err(|e| ClusterError::TaskFailed(e.to_string()))??;
        let log = open_log(
            &self.shared.topic,
            self.shared.index,
            &self.shared.dir,
            &config,
        )
        .await?;
        *guard = Some(log);
        *self.shared.config.lock().expect("config mutex") = config;
        Ok(())
    }

    /// Flushes and closes the log; later operations fail with `PartitionClosed`.
    pub async fn close(&self) -> Result<(), ClusterError> {
        let Some(log) = self.shared.log.write().await.take() else {
            return Ok(());
        };
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
) -> Result<Log, ClusterError> {
    let (dir, log_config) = (dir.to_path_buf(), config.log.clone());
    let log = tokio::task::spawn_blocking(move || Log::open(dir, log_config))
        .await
        .map_err(|e| ClusterError::TaskFailed(e.to_string()))?;
    log.map_err(|source| ClusterError::Open {
        topic: topic.to_string(),
        partition: index,
        source,
    })
}

/// The appender: takes queued appends in order, writes them on a blocking thread,
/// advances the high watermark and answers (after the fsync, for durable appends). Ends
/// when the partition (the queue's only sender) is dropped.
async fn run_appender(shared: Arc<Shared>, mut jobs: mpsc::Receiver<AppendJob>) {
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_APPENDS_PER_WAKEUP {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let guard = shared.read_guard().await;
        let epoch = shared.state.lock().expect("state mutex").leader_epoch;
        let (topic, partition) = (shared.topic.clone(), shared.index);
        let closed = shared.closed();
        let written = tokio::task::spawn_blocking(move || {
            let Some(log) = guard.as_ref() else {
                return batch
                    .into_iter()
                    .map(|job| (job, Err(closed_copy(&closed))))
                    .collect::<Vec<_>>();
            };
            batch
                .into_iter()
                .map(|mut job| {
                    let result = log
                        .append_validated(&mut job.batches, epoch)
                        .map(|info| AppendOutcome {
                            base_offset: info.base_offset,
                            last_offset: info.last_offset,
                            records: job
                                .batches
                                .headers()
                                .iter()
                                .map(|h| h.record_count as u64)
                                .sum(),
                            bytes: info.bytes as u64,
                        })
                        .map_err(|source| ClusterError::Append {
                            topic: topic.clone(),
                            partition,
                            source,
                        });
                    (job, result)
                })
                .collect()
        })
        .await;
        let written = match written {
            Ok(w) => w,
            Err(e) => {
                // The batch's jobs (and their reply senders) went with the panicked task;
                // their submitters see the partition as closed.
                tracing::error!(topic = shared.topic, partition = shared.index, error = %e, "append task failed");
                continue;
            }
        };
        if let Some(end) = written
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok())
            .map(|o| o.last_offset + 1)
            .max()
        {
            shared.advance_high_watermark(end);
        }
        let group_commit = matches!(
            shared.config.lock().expect("config mutex").log.flush,
            FlushPolicy::GroupCommit
        );
        let mut durable = Vec::new();
        for (job, result) in written {
            match result {
                Ok(outcome) if job.durability == Durability::Durable && group_commit => {
                    durable.push((job, outcome));
                }
                result => {
                    // The submitter may have stopped waiting (acks=none): not an error.
                    let _ = job.reply.send(result);
                }
            }
        }
        if !durable.is_empty() {
            // Waiting for the fsync happens off the appender, so later appends are
            // written meanwhile and share the next sync (group commit). One wait covers
            // every durable append of this wake-up: one blocking thread, not one each.
            tokio::spawn(wait_durable_and_answer(shared.clone(), durable));
        }
    }
}

/// Waits until the last of `appends` is durable, then answers each of them.
async fn wait_durable_and_answer(shared: Arc<Shared>, appends: Vec<(AppendJob, AppendOutcome)>) {
    let err = shared.maintenance();
    let last = appends
        .iter()
        .map(|(_, o)| o.last_offset)
        .max()
        .expect("not empty");
    let synced = shared
        .with_log(move |log| log.wait_durable(last).map_err(err))
        .await;
    let reason = synced.as_ref().err().map(ToString::to_string);
    let mut first_error = synced.err();
    for (job, outcome) in appends {
        let result = match &reason {
            None => Ok(outcome),
            // The first waiter gets the error itself, the others a copy of its text
            // (a failed sync fails the log, so they are all in the same state).
            Some(reason) => Err(first_error.take().unwrap_or_else(|| {
                (shared.maintenance())(weir_log::MaintenanceError::Failed {
                    reason: reason.clone(),
                })
            })),
        };
        let _ = job.reply.send(result);
    }
}

fn closed_copy(e: &ClusterError) -> ClusterError {
    match e {
        ClusterError::PartitionClosed { topic, partition } => ClusterError::PartitionClosed {
            topic: topic.clone(),
            partition: *partition,
        },
        other => ClusterError::TaskFailed(other.to_string()),
    }
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
        Partition::open("t", 0, dir, config, state).await.unwrap()
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
    }

    async fn values(p: &Partition) -> Vec<String> {
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
