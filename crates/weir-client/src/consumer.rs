//! [`Consumer`]: reads assigned partitions with prefetch.
//!
//! # Streaming `Consume`, not pipelined `Fetch`
//!
//! Each assigned partition is followed by one `Consume` stream, read by its own task. The
//! broker pushes raw RecordBatch v2 bytes (`RECORD_FORMAT_BATCHES`) as records become
//! visible, and HTTP/2 flow control (the 4 MiB stream window) paces it, so the next
//! batches are always on their way while the application processes the current ones,
//! with no request per batch and no round trip between fetches; a pipelined `Fetch`
//! would need a request per response and its own prefetch bookkeeping to match that.
//! The task decodes batches with [`weir_batch::decode_records`] (keys and values are
//! zero-copy [`Bytes`] slices of the received message) on another worker thread and
//! hands them over through one bounded channel, so the prefetch is bounded by
//! [`ConsumerConfig::prefetch_messages`] messages of at most `max_bytes_per_message`
//! each, plus the HTTP/2 windows. The cost is one stream per partition, which suits
//! the tens of partitions one consumer reads. A seek cancels the stream and opens
//! another at the new offset; records already prefetched from the old one are dropped.
//!
//! # Following the leader
//!
//! Each stream is opened on the partition's leader (see [`crate::cluster`]). When the
//! leader refuses (`NOT_LEADER`), is fenced, or cannot be reached, the task refreshes the
//! metadata and reopens the stream on the new leader after a backoff, from the offset
//! after the last record it handed over: nothing is skipped and nothing is read twice.
//! Offset lookups (seek, the starting position, an out-of-range reset) also go to the
//! leader, whose high watermark is the one that counts.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use weir_client::{Consumer, ConsumerConfig, SeekTo};
//!
//! # async fn example() -> Result<(), weir_client::ClientError> {
//! let mut consumer = Consumer::connect(ConsumerConfig::default()).await?;
//! consumer.assign(&[("events", 0), ("events", 1)]);
//! consumer.seek("events", 0, SeekTo::Beginning).await?;
//! let records = consumer.poll(500, Duration::from_millis(100)).await?;
//! for record in &records {
//!     println!("{}/{} @ {}", record.topic, record.partition, record.offset);
//! }
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use weir_batch::{DecodedRecord, Header};
use weir_proto::v1 as pb;
use weir_proto::v1::consumer_client::ConsumerClient;

use crate::admin::OffsetQuery;
use crate::cluster::Cluster;
use crate::connection::{ClientTls, ConnectOptions, DEFAULT_BROKER, MAX_MESSAGE_BYTES, Timeouts};
use crate::error::ClientError;
use crate::retry::{self, RetryDecision};
use crate::routing::BrokerId;

/// Default most bytes per message on a `Consume` stream (the broker's own default).
pub const DEFAULT_MAX_BYTES_PER_MESSAGE: u32 = 1024 * 1024;
/// Default number of decoded messages prefetched ahead of `poll`, over all partitions.
pub const DEFAULT_PREFETCH_MESSAGES: usize = 16;
/// Largest `prefetch_messages` accepted.
pub const MAX_PREFETCH_MESSAGES: usize = 1024;
/// Default wait before reopening a partition's stream after a retriable failure; doubles
/// per consecutive failure up to [`MAX_RECONNECT_BACKOFF`].
pub const DEFAULT_RECONNECT_BACKOFF: Duration = Duration::from_millis(100);
/// Ceiling of the reconnect backoff.
pub const MAX_RECONNECT_BACKOFF: Duration = Duration::from_secs(5);

/// The wait after `failures` consecutive failures (at least one): `initial`, doubled per
/// further failure, at most [`MAX_RECONNECT_BACKOFF`]. Streams, heartbeats and commits
/// all retry on it.
pub(crate) fn reconnect_backoff(initial: Duration, failures: u32) -> Duration {
    initial
        .saturating_mul(1 << failures.clamp(1, 16).saturating_sub(1))
        .min(MAX_RECONNECT_BACKOFF)
}

/// Which records a consumer reads (Kafka's `isolation.level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsolationLevel {
    /// Every record below the high watermark, those of open and aborted transactions
    /// included.
    #[default]
    ReadUncommitted,
    /// Only records of committed transactions (and records outside transactions), up to
    /// the last stable offset: the first transaction still open holds the reader back,
    /// and [`SeekTo::End`] / [`OffsetReset::Latest`] mean the last stable offset. The
    /// broker drops aborted records before they are sent.
    ReadCommitted,
}

impl IsolationLevel {
    pub(crate) fn proto(self) -> i32 {
        match self {
            IsolationLevel::ReadUncommitted => pb::IsolationLevel::ReadUncommitted as i32,
            IsolationLevel::ReadCommitted => pb::IsolationLevel::ReadCommitted as i32,
        }
    }
}

/// Where a partition without a position starts, and what an out-of-range position does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// The log start offset.
    #[default]
    Earliest,
    /// The high watermark: only records produced from now on.
    Latest,
    /// No automatic position: `poll` fails until the partition is `seek`ed, and an
    /// out-of-range offset is reported as [`ClientError::OutOfRange`].
    None,
}

/// Consumer settings.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Bootstrap broker addresses, `host:port` or `http://host:port` (an entry may be a
    /// comma-separated list); the first reachable is used, and the cluster's other
    /// brokers are learnt from it.
    pub brokers: Vec<String>,
    /// Most bytes per message on a partition's stream (0: the broker's default).
    pub max_bytes_per_message: u32,
    /// Messages decoded ahead of `poll`, over all partitions.
    pub prefetch_messages: usize,
    /// Start position of partitions not `seek`ed, and the reaction to an out-of-range
    /// position.
    pub auto_offset_reset: OffsetReset,
    /// First wait before reopening a stream that failed retriably.
    pub reconnect_backoff: Duration,
    /// How long connecting to a broker and each request may take.
    pub timeouts: Timeouts,
    /// TLS to the brokers (`None`: plaintext); see [`crate::connection`].
    pub tls: Option<ClientTls>,
    /// Which records are read: read uncommitted (the default, as in Kafka) or only those
    /// of committed transactions.
    pub isolation: IsolationLevel,
}

impl Default for ConsumerConfig {
    fn default() -> ConsumerConfig {
        ConsumerConfig {
            brokers: vec![DEFAULT_BROKER.to_owned()],
            max_bytes_per_message: DEFAULT_MAX_BYTES_PER_MESSAGE,
            prefetch_messages: DEFAULT_PREFETCH_MESSAGES,
            auto_offset_reset: OffsetReset::Earliest,
            reconnect_backoff: DEFAULT_RECONNECT_BACKOFF,
            timeouts: Timeouts::default(),
            tls: None,
            isolation: IsolationLevel::ReadUncommitted,
        }
    }
}

impl ConsumerConfig {
    fn connect_options(&self) -> ConnectOptions {
        ConnectOptions {
            timeouts: self.timeouts,
            tls: self.tls.clone(),
        }
    }
}

/// Where [`Consumer::seek`] moves a partition's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekTo {
    /// This offset.
    Offset(i64),
    /// The log start offset.
    Beginning,
    /// The high watermark: the next record produced.
    End,
    /// The first record with a timestamp at or after this (ms since the Unix epoch), or
    /// the end if there is none.
    Timestamp(i64),
}

/// A record read from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// Topic name.
    pub topic: Arc<str>,
    /// Partition index.
    pub partition: u32,
    /// The record's offset.
    pub offset: i64,
    /// Create time or log-append time, ms since the Unix epoch.
    pub timestamp: i64,
    /// Record key; `None` is a null key.
    pub key: Option<Bytes>,
    /// Record value; `None` is a null value.
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<Header>,
}

/// Decoded records of one stream message, or why the partition's stream stopped.
struct Chunk {
    topic: Arc<str>,
    partition: u32,
    generation: u64,
    records: Result<Vec<ConsumerRecord>, ClientError>,
}

struct Assignment {
    topic: Arc<str>,
    partition: u32,
    /// Bumped by every seek, to drop prefetched records of an older position.
    generation: u64,
    /// Offset of the next record `poll` returns; `None` until resolved.
    position: Option<i64>,
    fetcher: Option<JoinHandle<()>>,
}

impl Drop for Assignment {
    fn drop(&mut self) {
        if let Some(fetcher) = self.fetcher.take() {
            fetcher.abort();
        }
    }
}

/// The rest of the chunk `poll` is handing out.
struct Current {
    key: (Arc<str>, u32),
    generation: u64,
    records: std::vec::IntoIter<ConsumerRecord>,
}

/// Reads records from explicitly assigned partitions. See the [module docs](self).
pub struct Consumer {
    cluster: Cluster,
    config: ConsumerConfig,
    assignments: HashMap<(Arc<str>, u32), Assignment>,
    chunks_tx: mpsc::Sender<Chunk>,
    chunks_rx: mpsc::Receiver<Chunk>,
    current: Option<Current>,
    next_generation: u64,
    /// A stream's failure seen while records were being returned, for the next poll.
    pending_error: Option<ClientError>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("config", &self.config)
            .field("assigned", &self.assignments.len())
            .finish_non_exhaustive()
    }
}

impl Consumer {
    /// Checks `config` and connects to the first reachable bootstrap broker.
    pub async fn connect(config: ConsumerConfig) -> Result<Consumer, ClientError> {
        if config.prefetch_messages == 0 || config.prefetch_messages > MAX_PREFETCH_MESSAGES {
            return Err(ClientError::Config(format!(
                "prefetch_messages must be 1..={MAX_PREFETCH_MESSAGES}, not {}",
                config.prefetch_messages
            )));
        }
        let cluster = Cluster::connect(&config.brokers, config.connect_options()).await?;
        let (chunks_tx, chunks_rx) = mpsc::channel(config.prefetch_messages);
        Ok(Consumer {
            cluster,
            config,
            assignments: HashMap::new(),
            chunks_tx,
            chunks_rx,
            current: None,
            next_generation: 0,
            pending_error: None,
        })
    }

    /// Sets the partitions to read, replacing the previous assignment. Partitions that
    /// stay keep their positions; new ones start per
    /// [`ConsumerConfig::auto_offset_reset`] unless `seek`ed first.
    pub fn assign(&mut self, partitions: &[(&str, u32)]) {
        let mut kept = HashMap::with_capacity(partitions.len());
        for &(topic, partition) in partitions {
            let key = (Arc::<str>::from(topic), partition);
            let assignment = match self.assignments.remove(&key) {
                Some(existing) => existing,
                None => Assignment {
                    topic: key.0.clone(),
                    partition,
                    generation: self.bump_generation(),
                    position: None,
                    fetcher: None,
                },
            };
            kept.insert(key, assignment);
        }
        // What is left was unassigned: dropping it stops its stream.
        self.assignments = kept;
        if self
            .current
            .as_ref()
            .is_some_and(|c| !self.assignments.contains_key(&c.key))
        {
            self.current = None;
        }
    }

    /// The assigned partitions.
    pub fn assignment(&self) -> Vec<(Arc<str>, u32)> {
        self.assignments.keys().cloned().collect()
    }

    /// Moves a partition's position; the next `poll` returns records from there. Fails
    /// with [`ClientError::InvalidArgument`] if the partition is not assigned, and with
    /// the broker's error if a position lookup fails (for example
    /// [`ClientError::NotFound`] for an unknown topic).
    pub async fn seek(
        &mut self,
        topic: &str,
        partition: u32,
        to: SeekTo,
    ) -> Result<(), ClientError> {
        let key = (Arc::<str>::from(topic), partition);
        if !self.assignments.contains_key(&key) {
            return Err(ClientError::InvalidArgument(format!(
                "{topic}/{partition} is not assigned to this consumer"
            )));
        }
        let offset = match to {
            SeekTo::Offset(offset) => offset,
            SeekTo::Beginning => self.lookup(topic, partition, OffsetQuery::Earliest).await?,
            SeekTo::End => self.lookup(topic, partition, OffsetQuery::Latest).await?,
            SeekTo::Timestamp(ms) => {
                self.lookup(topic, partition, OffsetQuery::Timestamp(ms))
                    .await?
            }
        };
        let generation = self.bump_generation();
        let assignment = self.assignments.get_mut(&key).expect("checked above");
        if let Some(fetcher) = assignment.fetcher.take() {
            fetcher.abort();
        }
        assignment.generation = generation;
        assignment.position = Some(offset);
        if self.current.as_ref().is_some_and(|c| c.key == key) {
            self.current = None;
        }
        Ok(())
    }

    /// The offset of the next record `poll` will return from a partition; `None` if it is
    /// not assigned or its position is not resolved yet.
    pub fn position(&self, topic: &str, partition: u32) -> Option<i64> {
        self.assignments
            .get(&(Arc::<str>::from(topic), partition))
            .and_then(|a| a.position)
    }

    /// Returns up to `max_records` records, waiting up to `timeout` for the first one. An
    /// empty vector means nothing arrived in time. Records of one partition come in offset
    /// order. A partition's stream that failed for good (an unknown topic, an
    /// out-of-range offset with [`OffsetReset::None`], a corrupt batch) fails the poll,
    /// after the records read before the failure were returned. A stored batch that
    /// cannot be decoded is [`ClientError::CorruptBatch`]: the partition's position stays
    /// at it, and later polls get nothing more from the partition but the same error
    /// until [`seek`](Self::seek) moves past it (to its `next_offset`, skipping its
    /// records) or elsewhere.
    pub async fn poll(
        &mut self,
        max_records: usize,
        timeout: Duration,
    ) -> Result<Vec<ConsumerRecord>, ClientError> {
        let deadline = tokio::time::Instant::now() + timeout;
        if let Some(error) = self.pending_error.take() {
            return Err(error);
        }
        self.start_fetchers().await?;
        let mut out = Vec::with_capacity(max_records.min(DEFAULT_POLL_CAPACITY));
        while out.len() < max_records {
            if let Some(current) = &mut self.current {
                let before = out.len();
                out.extend(current.records.by_ref().take(max_records - before));
                if let Some(last) = out[before..].last()
                    && let Some(a) = self.assignments.get_mut(&current.key)
                    && a.generation == current.generation
                {
                    a.position = Some(last.offset + 1);
                }
                if current.records.len() == 0 {
                    self.current = None;
                }
                continue;
            }
            let chunk = if out.is_empty() {
                match tokio::time::timeout_at(deadline, self.chunks_rx.recv()).await {
                    Ok(Some(chunk)) => chunk,
                    // The consumer holds a sender, so the channel never closes.
                    Ok(None) | Err(_) => break,
                }
            } else {
                match self.chunks_rx.try_recv() {
                    Ok(chunk) => chunk,
                    Err(_) => break,
                }
            };
            let key = (chunk.topic, chunk.partition);
            let Some(assignment) = self.assignments.get_mut(&key) else {
                continue; // unassigned since
            };
            if assignment.generation != chunk.generation {
                continue; // from before a seek
            }
            match chunk.records {
                Ok(records) => {
                    self.current = Some(Current {
                        key,
                        generation: chunk.generation,
                        records: records.into_iter(),
                    })
                }
                Err(error) => {
                    // The stream stopped; a later poll (after a seek) starts another.
                    assignment.fetcher = None;
                    if out.is_empty() {
                        return Err(error);
                    }
                    // Hand out what was read first; the next poll reports the error.
                    self.pending_error = Some(error);
                    break;
                }
            }
        }
        Ok(out)
    }

    /// The connections and metadata this consumer reads with.
    pub(crate) fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    fn bump_generation(&mut self) -> u64 {
        self.next_generation += 1;
        self.next_generation
    }

    async fn lookup(
        &mut self,
        topic: &str,
        partition: u32,
        query: OffsetQuery,
    ) -> Result<i64, ClientError> {
        let found = self
            .cluster
            .list_offsets(topic, &[(partition, query)], self.config.isolation)
            .await?;
        found
            .first()
            .map(|o| o.offset)
            .ok_or_else(|| ClientError::Rpc {
                code: tonic::Code::Internal,
                message: format!("the broker's answer has no offset for {topic}/{partition}"),
            })
    }

    /// Resolves missing positions and starts a stream for every partition without one.
    async fn start_fetchers(&mut self) -> Result<(), ClientError> {
        let unresolved: Vec<(Arc<str>, u32)> = self
            .assignments
            .iter()
            .filter(|(_, a)| a.position.is_none())
            .map(|(k, _)| k.clone())
            .collect();
        for (topic, partition) in unresolved {
            let query = match self.config.auto_offset_reset {
                OffsetReset::Earliest => OffsetQuery::Earliest,
                OffsetReset::Latest => OffsetQuery::Latest,
                OffsetReset::None => {
                    return Err(ClientError::InvalidArgument(format!(
                        "{topic}/{partition} has no position: seek it first (auto_offset_reset is None)"
                    )));
                }
            };
            let offset = self.lookup(&topic, partition, query).await?;
            if let Some(a) = self.assignments.get_mut(&(topic, partition)) {
                a.position = Some(offset);
            }
        }
        for assignment in self.assignments.values_mut() {
            if assignment.fetcher.is_some() {
                continue;
            }
            let Some(position) = assignment.position else {
                continue;
            };
            // Records from a stream that stopped are dropped with its generation.
            self.next_generation += 1;
            assignment.generation = self.next_generation;
            if self
                .current
                .as_ref()
                .is_some_and(|c| c.key.0 == assignment.topic && c.key.1 == assignment.partition)
            {
                self.current = None;
            }
            let fetcher = Fetcher {
                cluster: self.cluster.clone(),
                leader: None,
                topic: assignment.topic.clone(),
                partition: assignment.partition,
                generation: assignment.generation,
                offset: position,
                config: self.config.clone(),
                chunks: self.chunks_tx.clone(),
            };
            assignment.fetcher = Some(tokio::spawn(fetcher.run()));
        }
        Ok(())
    }
}

/// Where a consumer at `position`, told OFFSET_OUT_OF_RANGE, reads on, given the log's
/// range as its leader answers it (`earliest`, `latest`: log start and high watermark, or
/// last stable offset under read committed): the same position if the range holds it
/// (the answer was stale), else where `reset` says; `None` without a reset.
fn read_on_from(position: i64, (earliest, latest): (i64, i64), reset: OffsetReset) -> Option<i64> {
    if (earliest..=latest).contains(&position) {
        return Some(position);
    }
    match reset {
        OffsetReset::Earliest => Some(earliest),
        OffsetReset::Latest => Some(latest),
        OffsetReset::None => None,
    }
}

/// Initial capacity of a poll's result, whatever `max_records` asks.
const DEFAULT_POLL_CAPACITY: usize = 4096;

/// Follows one partition's `Consume` stream on its leader and hands decoded records to
/// `poll`.
struct Fetcher {
    cluster: Cluster,
    /// The broker the current (or last) stream was opened on.
    leader: Option<BrokerId>,
    topic: Arc<str>,
    partition: u32,
    generation: u64,
    /// The next offset wanted.
    offset: i64,
    config: ConsumerConfig,
    chunks: mpsc::Sender<Chunk>,
}

impl Fetcher {
    async fn run(mut self) {
        let mut failures: u32 = 0;
        loop {
            let error = match self.follow(&mut failures).await {
                Ok(()) => return, // the consumer is gone
                Err(error) => error,
            };
            let decision = retry::decide(&error);
            if decision != RetryDecision::Fail {
                if decision == RetryDecision::RefreshMetadata
                    && let Some(leader) = self.leader
                {
                    // The next `follow` asks for the leader again, refreshing first.
                    self.cluster
                        .leader_failed(&self.topic, self.partition, leader, &error);
                }
                failures = failures.saturating_add(1);
                let backoff = reconnect_backoff(self.config.reconnect_backoff, failures);
                tracing::debug!(topic = %self.topic, partition = self.partition, leader = ?self.leader, error = %error, ?backoff, from = self.offset, "consume stream failed; reopening");
                tokio::time::sleep(backoff).await;
                continue;
            }
            if let ClientError::OutOfRange(_) = error {
                match self.out_of_range(&error).await {
                    Ok(Some(offset)) => {
                        // Reading on from the same position waits as any retry does: the
                        // stale broker may answer again until its metadata catches up.
                        if offset == self.offset {
                            failures = failures.saturating_add(1);
                            tokio::time::sleep(reconnect_backoff(
                                self.config.reconnect_backoff,
                                failures,
                            ))
                            .await;
                        }
                        self.offset = offset;
                        continue;
                    }
                    Ok(None) => {}
                    Err(lookup_error) => {
                        let _ = self.send(Err(lookup_error)).await;
                        return;
                    }
                }
            }
            let _ = self.send(Err(error)).await;
            return;
        }
    }

    /// Where to read on after an OFFSET_OUT_OF_RANGE answer: the same position if the
    /// partition's leader, asked again after a metadata refresh, holds it (the answer
    /// came from a broker that no longer leads and whose log is shorter: a leader cut
    /// off and back, before its metadata caught up), else the reset the configuration
    /// asks for; `None` with no reset configured (the error goes to the application).
    ///
    /// Resetting on the first answer sent a consumer at offset 65,630 back to 0 in the
    /// 35-minute soak (docs/operations.md).
    async fn out_of_range(&mut self, error: &ClientError) -> Result<Option<i64>, ClientError> {
        if let Some(leader) = self.leader {
            self.cluster
                .leader_failed(&self.topic, self.partition, leader, error);
        }
        let p = self.partition;
        let range = self
            .cluster
            .list_offsets(
                &self.topic,
                &[(p, OffsetQuery::Earliest), (p, OffsetQuery::Latest)],
                self.config.isolation,
            )
            .await?;
        let [earliest, latest] = range.as_slice() else {
            return Ok(None);
        };
        let (earliest, latest) = (earliest.offset, latest.offset);
        let to = read_on_from(
            self.offset,
            (earliest, latest),
            self.config.auto_offset_reset,
        );
        match to {
            Some(to) if to == self.offset => {
                tracing::info!(topic = %self.topic, partition = p, offset = to, earliest, latest, "offset out of range at a broker that no longer leads; the leader holds it: reading on");
            }
            Some(to) => {
                tracing::warn!(topic = %self.topic, partition = p, from = self.offset, to, earliest, latest, "offset out of range; position reset");
            }
            None => {}
        }
        Ok(to)
    }

    /// Reads the stream from the partition's leader until it fails (the error) or the
    /// consumer is gone (`Ok`).
    async fn follow(&mut self, failures: &mut u32) -> Result<(), ClientError> {
        self.leader = None;
        let (leader, _) = self.cluster.leader(&self.topic, self.partition).await?;
        self.leader = Some(leader);
        // Held while the stream is open: it counts against its connection's streams.
        let lease = self.cluster.stream_channel(leader)?;
        let mut client = ConsumerClient::new(lease.channel())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let request = pb::ConsumeRequest {
            topic: self.topic.to_string(),
            partition: self.partition,
            offset: self.offset,
            format: pb::RecordFormat::Batches as i32,
            isolation: self.config.isolation.proto(),
            max_bytes: self.config.max_bytes_per_message,
        };
        let mut stream = client.consume(request).await?.into_inner();
        while let Some(message) = stream.next().await {
            let message = message?;
            *failures = 0;
            let (records, failed) =
                decode(&self.topic, self.partition, self.offset, &message.batches);
            if let Some(last) = records.last() {
                self.offset = last.offset + 1;
            }
            if failed.is_none() {
                self.offset = self.offset.max(message.next_offset);
            }
            if !records.is_empty() && self.send(Ok(records)).await.is_err() {
                return Ok(());
            }
            // After the records before it: a batch that cannot be decoded stops the
            // stream (see `ClientError::CorruptBatch`).
            if let Some(error) = failed {
                return Err(error);
            }
        }
        Err(ClientError::Unavailable(
            "the broker ended the consume stream".to_owned(),
        ))
    }

    async fn send(&self, records: Result<Vec<ConsumerRecord>, ClientError>) -> Result<(), ()> {
        self.chunks
            .send(Chunk {
                topic: self.topic.clone(),
                partition: self.partition,
                generation: self.generation,
                records,
            })
            .await
            .map_err(|_| ())
    }
}

/// Decodes concatenated batches, keeping records at or after `from` (the first batch
/// may start before the offset asked for). A batch that cannot be decoded stops the
/// decoding: the records before it come back with the error, which is
/// [`ClientError::CorruptBatch`] for an intact batch (its CRC holds, so its header's
/// offsets can be trusted and skipped to) and [`ClientError::Batch`] for bytes that are
/// not whole, intact batches.
fn decode(
    topic: &Arc<str>,
    partition: u32,
    from: i64,
    batches: &Bytes,
) -> (Vec<ConsumerRecord>, Option<ClientError>) {
    let mut out = Vec::new();
    let mut at = 0;
    while at < batches.len() {
        let len = match weir_batch::framed_len(&batches[at..]) {
            Ok(len) => len,
            Err(error) => return (out, Some(error.into())),
        };
        if at + len > batches.len() {
            let error = weir_batch::BatchError::Truncated {
                needed: len,
                available: batches.len() - at,
            };
            return (out, Some(error.into()));
        }
        let batch = batches.slice(at..at + len);
        at += len;
        let header = weir_batch::BatchHeader::parse(&batch);
        if header.next_offset() <= from || header.is_control() {
            continue;
        }
        let records = match weir_batch::decode_records(&batch) {
            Ok(records) => records,
            // Only on this path is the CRC checked a second time, to tell the two apart.
            Err(error) => {
                let error = match weir_batch::check_stored(&batch) {
                    Ok(header) => ClientError::CorruptBatch {
                        topic: topic.to_string(),
                        partition,
                        offset: header.base_offset,
                        next_offset: header.next_offset(),
                        reason: error.to_string(),
                    },
                    Err(_) => error.into(),
                };
                return (out, Some(error));
            }
        };
        out.extend(
            records
                .into_iter()
                .filter(|r| r.offset >= from)
                .map(|r: DecodedRecord| ConsumerRecord {
                    topic: topic.clone(),
                    partition,
                    offset: r.offset,
                    timestamp: r.timestamp,
                    key: r.key,
                    value: r.value,
                    headers: r.headers,
                }),
        );
    }
    (out, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_batch::{Compression, Record, RecordBatchBuilder};

    fn batch(base_offset: i64, values: &[&str], compression: Compression) -> Vec<u8> {
        let mut builder = RecordBatchBuilder::new(compression);
        for (i, v) in values.iter().enumerate() {
            builder.push(&Record {
                key: None,
                value: Some(Bytes::copy_from_slice(v.as_bytes())),
                headers: vec![],
                timestamp: 1_000 + i as i64,
            });
        }
        let mut bytes = builder.build().unwrap();
        weir_batch::patch_offset_and_epoch(&mut bytes, base_offset, 0);
        bytes.to_vec()
    }

    #[test]
    fn out_of_range_resets_only_a_position_the_leaders_log_does_not_hold() {
        use OffsetReset::{Earliest, Latest, None as NoReset};
        // A stale leader's answer: the leader holds 65,630, so nothing is reset.
        for reset in [Earliest, Latest, NoReset] {
            assert_eq!(read_on_from(65_630, (0, 70_000), reset), Some(65_630));
        }
        // The ends of the range are inside it (the high watermark: nothing yet).
        assert_eq!(read_on_from(0, (0, 10), Earliest), Some(0));
        assert_eq!(read_on_from(10, (0, 10), Latest), Some(10));
        // Below the log start (retention) or past the end: the configured reset.
        assert_eq!(read_on_from(5, (100, 200), Earliest), Some(100));
        assert_eq!(read_on_from(5, (100, 200), Latest), Some(200));
        assert_eq!(read_on_from(1_000, (100, 200), Earliest), Some(100));
        assert_eq!(read_on_from(1_000, (100, 200), NoReset), None);
    }

    #[test]
    fn decoding_skips_records_before_the_position_and_spans_batches() {
        let mut bytes = batch(10, &["a", "b", "c"], Compression::None);
        bytes.extend(batch(13, &["d", "e"], Compression::Lz4));
        let bytes = Bytes::from(bytes);
        let topic: Arc<str> = Arc::from("t");
        let (records, failed) = decode(&topic, 2, 12, &bytes);
        assert!(failed.is_none());
        let got: Vec<(i64, &[u8])> = records
            .iter()
            .map(|r| (r.offset, r.value.as_deref().unwrap()))
            .collect();
        assert_eq!(got, [(12, &b"c"[..]), (13, b"d"), (14, b"e")]);
        assert!(records.iter().all(|r| r.partition == 2 && &*r.topic == "t"));
        assert!(decode(&topic, 2, 15, &bytes).0.is_empty());
    }

    #[test]
    fn a_truncated_or_corrupt_message_is_an_error() {
        let bytes = batch(0, &["a"], Compression::None);
        let topic: Arc<str> = Arc::from("t");
        let truncated = Bytes::copy_from_slice(&bytes[..bytes.len() - 1]);
        assert!(matches!(
            decode(&topic, 0, 0, &truncated),
            (records, Some(ClientError::Batch(_))) if records.is_empty()
        ));
        let mut corrupt = bytes.clone();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        assert!(matches!(
            decode(&topic, 0, 0, &Bytes::from(corrupt)),
            (records, Some(ClientError::Batch(_))) if records.is_empty()
        ));
    }

    #[test]
    fn an_intact_batch_that_cannot_be_decoded_ends_the_records_with_its_offsets() {
        // Records 10..13, then a zstd batch at 13..18 whose compressed bytes are damaged
        // under a recomputed CRC, then 18.
        let mut bad = batch(13, &["d", "e", "f", "g", "h"], Compression::Zstd);
        let middle = weir_batch::HEADER_BYTES + (bad.len() - weir_batch::HEADER_BYTES) / 2;
        for byte in &mut bad[middle..middle + 4] {
            *byte = !*byte;
        }
        weir_batch::reseal(&mut bad, 5);
        let mut bytes = batch(10, &["a", "b", "c"], Compression::None);
        bytes.extend(bad);
        bytes.extend(batch(18, &["i"], Compression::None));
        let topic: Arc<str> = Arc::from("t");
        let (records, failed) = decode(&topic, 1, 11, &Bytes::from(bytes));
        let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, [11, 12]);
        assert!(
            matches!(
                failed,
                Some(ClientError::CorruptBatch { ref topic, partition: 1, offset: 13, next_offset: 18, .. })
                    if topic == "t"
            ),
            "{failed:?}"
        );
    }
}
