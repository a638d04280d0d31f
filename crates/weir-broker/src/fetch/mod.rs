//! Fetch: reads below the high watermark as the stored RecordBatch v2 bytes (slices of
//! one read, never re-encoded), with long polling ([`fetch`]) and, for adapters that
//! stream one partition, a [`Reader`] that waits for each next batch. Under
//! [`Isolation::ReadCommitted`] a fetch stops at each partition's last stable offset and
//! names the aborted transactions in what it read (Kafka's `isolation_level` 1); a Kafka
//! client drops their records and the control batches itself, other readers have it
//! done by [`visible_bytes`] / [`is_visible`].
//!
//! Waiting is event driven: a reader subscribes to its partitions' high-watermark
//! channels before it reads, so an append between the read and the wait still wakes it.

use crate::quotas::{QuotaKind, Quotas};
use std::sync::Arc;
use std::time::Duration;
use weir_cluster::TopicRegistry;
use weir_cluster::security::Operation;

use futures_util::future::select_all;
use tokio::sync::watch;
use tokio::time::Instant;
pub use weir_cluster::Isolation;
pub use weir_cluster::storage::{AbortedTxn, FetchData, FileSlice, ReadTo};
use weir_cluster::{ClusterError, Partition, Topic};

use crate::limits::{MAX_FETCH_WAIT, MAX_PARTITIONS_PER_REQUEST, MAX_RESPONSE_BYTES};
use crate::{Broker, BrokerError, Reason, RequestContext};

mod visible;
pub use visible::{is_visible, visible_bytes};

/// A fetch of any partitions of any topics.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    /// Longest to wait for `min_bytes` (capped at [`MAX_FETCH_WAIT`]).
    pub max_wait: Duration,
    /// Answer once this many bytes are there (at least 1).
    pub min_bytes: usize,
    /// The answer's byte budget over every partition (capped at [`MAX_RESPONSE_BYTES`]).
    /// As in Kafka, only the first partition with data may pass it (or its own
    /// `max_bytes`), and only with its first batch, so a batch larger than the budget is
    /// still fetched: see [`Budget`].
    pub max_bytes: usize,
    pub topics: Vec<TopicFetch>,
    /// Where reads put the batches: in memory, or left in their segment files
    /// ([`FetchData::in_file`], checked but not read) for an adapter that sends them with
    /// `sendfile` to a plain socket.
    pub read_to: ReadTo,
    /// Which records the fetch may return.
    pub isolation: Isolation,
}

#[derive(Debug, Clone)]
pub struct TopicFetch {
    pub topic: String,
    pub partitions: Vec<PartitionFetch>,
}

#[derive(Debug, Clone, Copy)]
pub struct PartitionFetch {
    pub partition: u32,
    pub offset: i64,
    /// This partition's byte budget.
    pub max_bytes: usize,
    /// The leader epoch the client's metadata names (Kafka's `current_leader_epoch`,
    /// KIP-320), checked against this broker's: a leader that lost its leadership
    /// while its metadata lags answers FENCED_LEADER_EPOCH or UNKNOWN_LEADER_EPOCH
    /// instead of reading from a log that may be shorter than the client's position.
    pub current_leader_epoch: Option<i32>,
}

/// How a fetch's bytes are shared between its partitions, as Kafka's
/// `ReplicaManager.readFromLog` shares them: each partition may take its own `max_bytes`
/// within what the answer has left, and only the first partition with data may go past
/// either limit, with its first batch alone (a read always returns a first batch,
/// whatever its size, so a consumer makes progress past a batch larger than its fetch
/// size). A later partition whose first batch does not fit answers with no records: a
/// client that waits for answers of at most `max_bytes` (librdkafka drops the
/// connection past `receive.message.max.bytes`) is never sent more than `max_bytes`
/// plus one batch, and reads that partition in a later fetch.
#[derive(Debug, Clone, Copy)]
struct Budget {
    /// Bytes the answer may still take.
    left: usize,
    /// No partition has returned data yet: the next one may pass its share.
    first: bool,
}

impl Budget {
    fn new(max_bytes: usize) -> Budget {
        Budget {
            left: max_bytes,
            first: true,
        }
    }

    /// The most a partition whose own limit is `partition_max` may read.
    fn share(&self, partition_max: usize) -> usize {
        partition_max.min(self.left)
    }

    /// Whether a read of `len` bytes, asked for at most `share`, goes in the answer;
    /// if so, it is counted.
    fn take(&mut self, len: usize, share: usize) -> bool {
        if len == 0 {
            return true;
        }
        if len > share && !self.first {
            return false;
        }
        self.first = false;
        self.left = self.left.saturating_sub(len);
        true
    }
}

/// One topic's answer: an error if the topic cannot be read at all.
#[derive(Debug)]
pub struct TopicFetchResult {
    pub topic: String,
    pub outcome: Result<Vec<PartitionFetchResult>, BrokerError>,
}

/// One partition's answer.
#[derive(Debug)]
pub struct PartitionFetchResult {
    pub partition: u32,
    /// -1 when this broker does not know them (no replica here).
    pub high_watermark: i64,
    pub log_start_offset: i64,
    /// The smaller of the first unstable offset and the high watermark; -1 when unknown.
    pub last_stable_offset: i64,
    /// Under [`Isolation::ReadCommitted`], the aborted transactions with records in the
    /// batches read, in marker order; empty otherwise.
    pub aborted: Vec<AbortedTxn>,
    /// The batches read (`None`: nothing read, the partition's budget was 0), or why not.
    pub data: Result<Option<FetchData>, BrokerError>,
}

impl PartitionFetchResult {
    /// Bytes of batches in the answer.
    pub fn bytes(&self) -> usize {
        match &self.data {
            Ok(Some(data)) => data.len(),
            _ => 0,
        }
    }
}

struct Resolved {
    topic: Result<Arc<Topic>, BrokerError>,
    partitions: Vec<Option<Arc<Partition>>>,
}

/// Reads every partition of `req`, waiting up to `max_wait` for `min_bytes` to be there.
/// Answers at once when a partition fails, when shutdown starts, or when there is
/// nothing to wait on.
pub async fn fetch(
    broker: &Broker,
    ctx: &RequestContext,
    req: &FetchRequest,
) -> Result<Vec<TopicFetchResult>, BrokerError> {
    let count: usize = req.topics.iter().map(|t| t.partitions.len()).sum();
    if count > MAX_PARTITIONS_PER_REQUEST {
        return Err(BrokerError::invalid(format!(
            "a fetch names {count} partitions; at most {MAX_PARTITIONS_PER_REQUEST} are accepted"
        )));
    }
    let total_max = req.max_bytes.min(MAX_RESPONSE_BYTES);
    let min_bytes = req.min_bytes.max(1);
    let deadline = Instant::now() + req.max_wait.min(MAX_FETCH_WAIT);
    let resolved: Vec<Resolved> = req
        .topics
        .iter()
        .map(|t| {
            let topic = broker.topic_for(ctx, Operation::Read, &t.topic);
            let partitions = match &topic {
                Ok(topic) => t
                    .partitions
                    .iter()
                    .map(|p| topic.partition(p.partition).ok())
                    .collect(),
                Err(_) => Vec::new(),
            };
            Resolved { topic, partitions }
        })
        .collect();
    let mut shutdown = broker.shutdown_signal();
    loop {
        // Subscribe before reading: an append after the read still wakes the wait.
        let mut watches: Vec<_> = resolved
            .iter()
            .flat_map(|r| r.partitions.iter().flatten())
            .map(|p| p.subscribe())
            .collect();
        let (mut total, mut failed) = (0, false);
        let mut budget = Budget::new(total_max);
        let mut results = Vec::with_capacity(req.topics.len());
        for (t, r) in req.topics.iter().zip(&resolved) {
            let topic = match &r.topic {
                Ok(topic) => topic,
                Err(e) => {
                    failed = true;
                    results.push(TopicFetchResult {
                        topic: t.topic.clone(),
                        outcome: Err(e.clone()),
                    });
                    continue;
                }
            };
            let mut partitions = Vec::with_capacity(t.partitions.len());
            for (pf, partition) in t.partitions.iter().zip(&r.partitions) {
                let share = budget.share(pf.max_bytes);
                let mut result = read_one(
                    topic,
                    partition.as_deref(),
                    pf,
                    share,
                    (req.read_to, req.isolation),
                )
                .await;
                if !budget.take(result.bytes(), share) {
                    // Dropped unsent (and uncounted): the partition's first batch is
                    // larger than what this answer has left for it.
                    result.data = Ok(None);
                }
                if let Ok(Some(data)) = &result.data {
                    broker
                        .metrics()
                        .consumed(&topic.name, data.record_count(), data.len() as u64);
                }
                failed |= result.data.is_err();
                total += result.bytes();
                partitions.push(result);
            }
            results.push(TopicFetchResult {
                topic: t.topic.clone(),
                outcome: Ok(partitions),
            });
        }
        let stopping = *shutdown.borrow_and_update();
        if total >= min_bytes
            || failed
            || stopping
            || Instant::now() >= deadline
            || watches.is_empty()
        {
            // Held back here if it takes the consumer over its quota: the answer comes
            // late, and the consumer's next fetch with it.
            broker
                .enforce_quota(ctx, crate::quotas::QuotaKind::Fetch, total)
                .await;
            return Ok(results);
        }
        let any_append = select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
        tokio::select! {
            _ = any_append => {}
            _ = tokio::time::sleep_until(deadline) => {}
            // Shutting down: answer with what there is rather than hold shutdown up.
            _ = shutdown.changed() => {}
        }
    }
}

/// One partition's part of a fetch; `None` for the partition means it does not exist.
async fn read_one(
    topic: &Topic,
    partition: Option<&Partition>,
    pf: &PartitionFetch,
    max_bytes: usize,
    (read_to, isolation): (ReadTo, Isolation),
) -> PartitionFetchResult {
    let mut result = PartitionFetchResult {
        partition: pf.partition,
        high_watermark: -1,
        log_start_offset: -1,
        last_stable_offset: -1,
        aborted: Vec::new(),
        data: Ok(None),
    };
    let Some(partition) = partition else {
        result.data = Err(BrokerError::new(
            Reason::UnknownPartition,
            format!(
                "topic {:?} has no partition {} (it has {})",
                topic.name,
                pf.partition,
                topic.partition_count()
            ),
        )
        .at(&topic.name, pf.partition));
        return result;
    };
    if let Some(asked) = pf.current_leader_epoch
        && let Err(e) = crate::epochs::check_current_epoch(
            &topic.name,
            pf.partition,
            Some(asked),
            partition.leader_epoch(),
        )
    {
        result.data = Err(e);
        return result;
    }
    if let Ok(offsets) = partition.offsets().await {
        result.high_watermark = offsets.high_watermark;
        result.log_start_offset = offsets.log_start_offset;
    }
    if let Ok(lso) = partition.last_stable_offset().await {
        result.last_stable_offset = lso;
    }
    if max_bytes == 0 {
        return result;
    }
    match partition
        .read_isolated(pf.offset, max_bytes, read_to, isolation)
        .await
    {
        Ok(read) => {
            result.last_stable_offset = read.last_stable_offset;
            result.aborted = read.aborted;
            result.data = Ok(Some(read.data));
        }
        Err(e) => {
            if let ClusterError::OffsetOutOfRange {
                log_start_offset,
                high_watermark,
                ..
            } = &e
            {
                result.log_start_offset = *log_start_offset;
                result.high_watermark = *high_watermark;
            }
            result.data = Err(e.into());
        }
    }
    result
}

/// A reader of one partition from an offset on, for adapters that stream: each
/// [`Reader::next`] waits until there are batches past the reader's offset.
#[derive(Debug)]
pub struct Reader {
    topic: Arc<Topic>,
    partition: Arc<Partition>,
    offset: i64,
    isolation: Isolation,
    shutdown: watch::Receiver<bool>,
    metrics: Arc<crate::Metrics>,
    /// The quotas, the registry they follow, and the stream's context (whose fetch quota
    /// each read counts against).
    quota: (Arc<Quotas>, Arc<TopicRegistry>, RequestContext),
}

impl Reader {
    /// A reader of `topic`/`partition` from `offset`; NOT_LEADER at once on a broker
    /// that does not lead it, OFFSET_OUT_OF_RANGE if the offset is outside the leader's
    /// log (past the high watermark but inside the log is "nothing yet", not out of
    /// range; see `Partition::read_start`). Under [`Isolation::ReadCommitted`] it reads
    /// only below the last stable offset.
    pub async fn open(
        broker: &Broker,
        ctx: &RequestContext,
        topic: &str,
        partition: u32,
        offset: i64,
        isolation: Isolation,
    ) -> Result<Reader, BrokerError> {
        let topic = broker.topic_for(ctx, Operation::Read, topic)?;
        let handle = topic.partition(partition)?;
        // On the leader only: a lagging replica's log end would send the consumer back
        // to the log start (found by the compose fault test, a consumer at offset 3,482
        // reading from 0 again).
        handle.read_start(offset).await?;
        Ok(Reader {
            topic,
            partition: handle,
            offset,
            isolation,
            shutdown: broker.shutdown_signal(),
            metrics: broker.metrics().clone(),
            quota: (
                broker.quotas().clone(),
                broker.registry().clone(),
                ctx.clone(),
            ),
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic.name
    }

    /// The partition's high watermark as this broker knows it now.
    pub fn high_watermark(&self) -> i64 {
        self.partition.high_watermark()
    }

    /// Where the next read starts.
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// Moves the reader to `offset` (after the caller used what it read).
    pub fn seek(&mut self, offset: i64) {
        self.offset = offset;
    }

    /// The batches at the reader's offset (at most about `max_bytes`), waiting until
    /// there are some, with the aborted transactions among them under read committed.
    /// SHUTTING_DOWN once the broker stops. Cancel safe. The reader does not move:
    /// [`Reader::seek`] past what was used.
    pub async fn next(
        &mut self,
        max_bytes: usize,
    ) -> Result<(FetchData, Vec<AbortedTxn>), BrokerError> {
        loop {
            let mut watch = self.partition.subscribe();
            let read = self
                .partition
                .read_isolated(self.offset, max_bytes, ReadTo::Memory, self.isolation)
                .await?;
            let data = read.data;
            if !data.records.is_empty() {
                self.metrics.consumed(
                    &self.topic.name,
                    data.record_count(),
                    data.records.len() as u64,
                );
                // Over its quota, the stream waits before it hands this on.
                let (quotas, registry, ctx) = &self.quota;
                quotas
                    .enforce(registry, ctx, QuotaKind::Fetch, data.records.len())
                    .await;
                return Ok((data, read.aborted));
            }
            if *self.shutdown.borrow_and_update() {
                return Err(BrokerError::new(
                    Reason::ShuttingDown,
                    "the broker is shutting down",
                ));
            }
            tokio::select! {
                _ = watch.changed() => {}
                _ = self.shutdown.changed() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads of `lens` bytes (each partition's first batch or batches, as the log would
    /// return them for its share) through one budget: what the answer keeps.
    fn kept(max_bytes: usize, partition_max: usize, lens: &[usize]) -> Vec<usize> {
        let mut budget = Budget::new(max_bytes);
        lens.iter()
            .map(|&len| {
                let share = budget.share(partition_max);
                // A read of 0 bytes allowed returns nothing; otherwise the log returns at
                // least one batch, here `len`.
                let len = if share == 0 { 0 } else { len };
                if budget.take(len, share) { len } else { 0 }
            })
            .collect()
    }

    #[test]
    fn only_the_first_partition_with_data_may_pass_the_limits() {
        const MB: usize = 1 << 20;
        // Records of ~1 MB over four partitions, a 1 MiB fetch: one record, as Kafka.
        assert_eq!(
            kept(MB, MB, &[1_000_100, 1_000_100, 1_000_100, 1_000_100]),
            [1_000_100, 0, 0, 0]
        );
        // A first batch over both limits is still sent, alone.
        assert_eq!(kept(MB, MB, &[3 * MB, 10, 10]), [3 * MB, 0, 0]);
        // Empty partitions before it do not use up the first one's exception.
        assert_eq!(kept(MB, 100, &[0, 0, 500, 50, 200]), [0, 0, 500, 50, 0]);
        // Small batches fill the answer up to max_bytes and no further.
        assert_eq!(kept(250, 100, &[100, 100, 100]), [100, 100, 0]);
        assert_eq!(kept(250, 100, &[100, 100, 50]), [100, 100, 50]);
    }
}
