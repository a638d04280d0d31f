//! [`Producer`]: batches records per partition on the client and pipelines them to each
//! partition's leader over one bidirectional `ProduceStream` per broker.
//!
//! # How a record travels
//!
//! [`Producer::send`] reserves the record's size from `buffer_memory` (waiting while it is
//! used up: backpressure, never unbounded buffering), picks a partition (explicit, keyed
//! by Kafka's murmur2, or sticky for unkeyed records; see [`crate::partitioner`]) and
//! encodes the record into that partition's open RecordBatch v2. A batch closes when the
//! next record would take it past `batch_bytes`, or when it has waited `linger`. A
//! background sender task compresses and checksums closed batches and sends them as
//! `PartitionRecords.batches` bytes, which the broker appends unchanged. Each record's
//! [`DeliveryFuture`] resolves with its offset when the broker answers for its batch.
//!
//! # Many records at once
//!
//! [`Producer::send_all`] is `send` for a whole slice (any iterator) of records of one
//! topic, for throughput: it takes the accumulator's lock once per batch it fills instead
//! of once per record, reserves buffer memory once for the lot (in pieces of about four
//! batches for larger lots, waiting for each as `send` waits), encodes the records
//! straight into the open batch(es) from borrowed [`RecordRef`]s, and returns one
//! [`BatchDelivery`] for all of them: no allocation, lock or reference count per record.
//! Records are placed exactly as `send` places them (an explicit partition, else the
//! key's hash, else the sticky partition), one by one, so keyed records of one call may
//! go to several partitions.
//!
//! # Order, in-flight requests and retries
//!
//! Up to `max_in_flight` (default 5) batches per partition are in flight, and the broker
//! answers a partition's requests in order. Kafka without idempotence can reorder
//! records when a batch fails, a later one succeeds, and the failed one is retried; the
//! usual safe answer is one batch in flight, which caps a partition at one batch per
//! round trip. Weir keeps both pipelining and order with one rule: **a failed batch is
//! retried only if no later batch of its partition was appended.** At the first
//! retriable failure the partition stops sending; once its in-flight batches have
//! answered, the failed ones are resent in their original order after a backoff, unless
//! a later batch succeeded meanwhile, in which case the earlier failures are reported to
//! their records instead of being retried out of order. So records of one partition are
//! never appended out of send order; a retry can still append a batch twice if the broker
//! appended it but the answer was lost (a broken stream), as in Kafka without
//! idempotence. Only retriable errors (`UNAVAILABLE`, `RESOURCE_EXHAUSTED`,
//! `DEADLINE_EXCEEDED`, and `NOT_LEADER` / `FENCED_LEADER_EPOCH` / `NOT_ENOUGH_REPLICAS`)
//! are retried, at most `retries` times, with doubling backoff.
//!
//! # Leaders
//!
//! Each partition's batches go to its leader, as the client's metadata says (see
//! [`crate::cluster`]). A batch refused with `NOT_LEADER` or `FENCED_LEADER_EPOCH`
//! (nothing was appended), or lost with its leader's connection, is retried like any
//! retriable failure, after a metadata refresh, on the leader the refresh names; the
//! partition's batches still in flight to the old leader answer first, so the rule above
//! keeps holding across the move. A partition with no known leader holds its batches for
//! at most `request_timeout`.
//!
//! # Examples
//!
//! ```no_run
//! use weir_client::{Producer, ProducerConfig, ProducerRecord};
//!
//! # async fn example() -> Result<(), weir_client::ClientError> {
//! let producer = Producer::connect(ProducerConfig::default()).await?;
//! let delivery = producer
//!     .send(ProducerRecord::new("events", "hello").key("user-1"))
//!     .await?;
//! let metadata = delivery.await?;
//! println!("written at {}/{}", metadata.partition, metadata.offset);
//! producer.close().await;
//! # Ok(())
//! # }
//! ```
//!
//! Many records with one call (see [`Producer::send_all`]):
//!
//! ```no_run
//! use weir_client::{Producer, ProducerConfig};
//!
//! # async fn example() -> Result<(), weir_client::ClientError> {
//! let producer = Producer::connect(ProducerConfig::default()).await?;
//! let values: Vec<Vec<u8>> = (0..10_000).map(|i| format!("event {i}").into_bytes()).collect();
//! let delivered = producer.send_all("events", Some(0), &values).await?.await?;
//! println!("offsets {}..={}", delivered.first_offset(), delivered.last_offset());
//! producer.close().await;
//! # Ok(())
//! # }
//! ```

mod accumulator;
mod batch;
mod config;
mod identity;
mod sender;
mod stream_body;
mod transactional;

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::task::JoinHandle;
use weir_batch::{Header, Record};

use self::accumulator::{Accumulator, AppendCall, AppendError, AppendStep, BatchCompletion};
pub use self::batch::{BatchDelivery, DeliveredRecords, OffsetRange, RecordRef};
pub use self::config::{
    Acks, DEFAULT_BATCH_BYTES, DEFAULT_BUFFER_MEMORY_BYTES, DEFAULT_LINGER, DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_REQUEST_TIMEOUT, DEFAULT_RETRIES, DEFAULT_RETRY_BACKOFF, DEFAULT_RETRY_BACKOFF_MAX,
    DEFAULT_TRANSACTION_TIMEOUT, MAX_BUFFER_MEMORY_BYTES, MAX_IDEMPOTENT_IN_FLIGHT,
    MAX_IN_FLIGHT_LIMIT, MAX_REQUESTS_IN_FLIGHT, METADATA_MAX_AGE, ProducerConfig,
};
pub use self::transactional::TransactionalProducer;
use crate::cluster::Cluster;
use crate::connection::{ConnectOptions, Timeouts};
use crate::error::ClientError;
use crate::group::link::CoordinatorLink;
use weir_proto::v1::CoordinatorType;

/// A record to send.
#[derive(Debug, Clone)]
pub struct ProducerRecord {
    /// Topic name.
    pub topic: Arc<str>,
    /// The partition to write to; `None` lets the partitioner choose (by key, or sticky
    /// for unkeyed records).
    pub partition: Option<u32>,
    /// Record key; `None` is a null key.
    pub key: Option<Bytes>,
    /// Record value; `None` is a null value (a tombstone on compacted topics).
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<Header>,
    /// Creation time, ms since the Unix epoch; `None` takes the producer's clock at send.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    /// An unkeyed record with `value` for `topic`.
    pub fn new(topic: impl Into<Arc<str>>, value: impl Into<Bytes>) -> ProducerRecord {
        ProducerRecord {
            topic: topic.into(),
            partition: None,
            key: None,
            value: Some(value.into()),
            headers: Vec::new(),
            timestamp: None,
        }
    }

    /// Sets the key.
    pub fn key(mut self, key: impl Into<Bytes>) -> ProducerRecord {
        self.key = Some(key.into());
        self
    }

    /// Sets the partition explicitly.
    pub fn partition(mut self, partition: u32) -> ProducerRecord {
        self.partition = Some(partition);
        self
    }

    /// Adds a header.
    pub fn header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> ProducerRecord {
        self.headers.push(Header {
            key: key.into(),
            value: Some(value.into()),
        });
        self
    }

    /// Sets the timestamp (ms since the Unix epoch).
    pub fn timestamp(mut self, timestamp_ms: i64) -> ProducerRecord {
        self.timestamp = Some(timestamp_ms);
        self
    }
}

/// Where a record was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Topic name.
    pub topic: Arc<str>,
    /// Partition index.
    pub partition: u32,
    /// The record's offset; -1 with [`Acks::None`].
    pub offset: i64,
    /// The record's timestamp: its own, or the broker's append time on topics with
    /// `message.timestamp.type=LogAppendTime`.
    pub timestamp: i64,
}

/// The outcome of one sent record. Await it (it is [`IntoFuture`]) for the
/// [`RecordMetadata`] or the error; dropping it does not cancel the send.
#[derive(Debug)]
pub struct DeliveryFuture {
    completion: Arc<BatchCompletion>,
    index: u32,
    timestamp: i64,
}

impl DeliveryFuture {
    /// The outcome if it is known, without waiting.
    pub fn try_result(&self) -> Option<Result<RecordMetadata, ClientError>> {
        self.completion.result().map(|r| self.metadata(r))
    }

    /// Waits for the outcome.
    pub async fn wait(self) -> Result<RecordMetadata, ClientError> {
        let result = self.completion.wait().await;
        self.metadata(result)
    }

    fn metadata(
        &self,
        result: &Result<accumulator::BatchAck, ClientError>,
    ) -> Result<RecordMetadata, ClientError> {
        let ack = result.as_ref().map_err(Clone::clone)?;
        Ok(RecordMetadata {
            topic: self.completion.topic.clone(),
            partition: self.completion.partition,
            offset: if ack.base_offset < 0 {
                -1
            } else {
                ack.base_offset + i64::from(self.index)
            },
            timestamp: if ack.log_append_time_ms >= 0 {
                ack.log_append_time_ms
            } else {
                self.timestamp
            },
        })
    }
}

impl IntoFuture for DeliveryFuture {
    type Output = Result<RecordMetadata, ClientError>;
    // Boxed because the future type of an `async fn` cannot be named; the box is paid
    // only by records whose delivery is awaited one by one.
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.wait())
    }
}

/// A batching, pipelining producer. See the [module docs](self) for how records travel
/// and how order is kept.
///
/// `send` takes `&self`: share one producer between tasks with an `Arc`. Dropping the
/// producer stops accepting records; what was already sent is still delivered in the
/// background. [`close`](Self::close) waits for that.
#[derive(Debug)]
pub struct Producer {
    accumulator: Arc<Accumulator>,
    cluster: Cluster,
    sender: Mutex<Option<JoinHandle<()>>>,
    /// With a transactional id: the link to its transaction coordinator.
    txn_coordinator: Option<Arc<CoordinatorLink>>,
}

impl Producer {
    /// Checks `config`, connects to the first reachable bootstrap broker and starts the
    /// sender.
    pub async fn connect(config: ProducerConfig) -> Result<Producer, ClientError> {
        config.validate()?;
        let timeouts = Timeouts {
            connect: config.connect_timeout,
            request: config.request_timeout,
        };
        let options = ConnectOptions {
            timeouts,
            tls: config.tls.clone(),
        };
        let txn_coordinator = config.transactional_id.as_deref().map(|id| {
            Arc::new(CoordinatorLink::new(
                id,
                CoordinatorType::Transaction,
                &config.brokers,
                options.clone(),
            ))
        });
        let cluster = Cluster::connect(&config.brokers, options).await?;
        // As Kafka's producers: a topic produced to is created on first use where the
        // broker does that.
        cluster.create_topics_on_first_use();
        let accumulator = Arc::new(Accumulator::new(config));
        let sender = sender::Sender::new(
            accumulator.clone(),
            cluster.clone(),
            txn_coordinator.clone(),
        );
        let sender = tokio::spawn(sender.run());
        Ok(Producer {
            accumulator,
            cluster,
            sender: Mutex::new(Some(sender)),
            txn_coordinator,
        })
    }

    /// Queues `record` for sending and returns its [`DeliveryFuture`].
    ///
    /// Waits while `buffer_memory` is used up. Fails at once (without sending) if the
    /// producer is closed, the topic or explicit partition does not exist
    /// ([`ClientError::NotFound`]) or the record can never fit a batch.
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture, ClientError> {
        let timestamp = record.timestamp.unwrap_or_else(now_ms);
        let ProducerRecord {
            topic,
            partition,
            key,
            value,
            headers,
            ..
        } = record;
        let record = Record {
            key,
            value,
            headers,
            timestamp,
        };
        let reserved = Accumulator::record_bytes(&record);
        self.accumulator.reserve(reserved).await?;
        let mut refreshed_count = None;
        loop {
            match self
                .accumulator
                .append(&topic, partition, &record, reserved, Instant::now())
            {
                Ok(appended) => {
                    return Ok(DeliveryFuture {
                        completion: appended.completion,
                        index: appended.index,
                        timestamp,
                    });
                }
                Err(AppendError::NeedMetadata) if refreshed_count.is_none() => {
                    match self.refresh_metadata(&topic).await {
                        Ok(count) => refreshed_count = Some(count),
                        Err(error) => {
                            self.accumulator.unreserve(reserved);
                            return Err(error);
                        }
                    }
                }
                Err(AppendError::NeedMetadata) => {
                    self.accumulator.unreserve(reserved);
                    return Err(ClientError::NotFound(format!(
                        "topic {topic} has no partition {} (it has {})",
                        partition.unwrap_or_default(),
                        refreshed_count.unwrap_or_default()
                    )));
                }
                Err(AppendError::Failed(error)) => {
                    self.accumulator.unreserve(reserved);
                    return Err(error);
                }
            }
        }
    }

    /// Queues many records of `topic` at once and returns one [`BatchDelivery`] for all
    /// of them: `send` for throughput.
    ///
    /// Each record goes where [`send`](Self::send) would put it: to `partition` if given
    /// (every record of the call), else by its key's hash (as Kafka's partitioner), else
    /// to the sticky partition of unkeyed records, which moves on when its batch fills up.
    /// A call's keyed records may therefore go to several partitions; the handle then
    /// resolves to one [`OffsetRange`] per batch (per partition and batch). Records are
    /// appended in the iterator's order, so a partition's records keep the call's order.
    ///
    /// What it saves over a loop of `send`s: the accumulator's lock is taken once per
    /// batch filled, not per record; buffer memory is reserved once for the lot (lots
    /// over about four batches reserve in such pieces as they go); records are encoded
    /// from borrowed parts straight into the open batch; one handle holds one reference
    /// per batch, not a future per record. A lot larger than a batch spans several
    /// batches, closed as they fill. The iterator is advanced while the lock is held:
    /// keep it cheap (slices, `map`s over them), never blocking.
    ///
    /// Waits while `buffer_memory` is used up (backpressure, as `send`). Fails at once,
    /// sending nothing, if the producer is closed, the topic or explicit partition does
    /// not exist ([`ClientError::NotFound`]), or the first record can never be sent (larger
    /// than `buffer_memory` or than any batch). A later such record stops the call there:
    /// the records before it are sent, and the handle reports the refusal
    /// ([`BatchDelivery::rejected`]) and resolves to it. An empty call returns a handle
    /// that resolves at once to no ranges.
    ///
    /// ```no_run
    /// use bytes::Bytes;
    /// use weir_client::{Producer, ProducerConfig, RecordRef};
    ///
    /// # async fn example(producer: &Producer) -> Result<(), weir_client::ClientError> {
    /// // Unkeyed values to partition 0 (anything that turns into a `RecordRef`: `&[u8]`,
    /// // `&Bytes`, `&Vec<u8>`, `&str`, `(key, value)`).
    /// let values: Vec<Bytes> = (0..5000).map(|i| Bytes::from(format!("v{i}"))).collect();
    /// let delivery = producer.send_all("events", Some(0), &values).await?;
    /// assert_eq!(delivery.record_count(), 5000);
    /// let delivered = delivery.await?;
    /// // One partition: record i is at first_offset + i.
    /// println!("{}..={}", delivered.first_offset(), delivered.last_offset());
    ///
    /// // Keyed records, placed by key like `send`; timestamps and headers as needed.
    /// let users = ["alice", "bob", "carol"];
    /// let records = users
    ///     .iter()
    ///     .map(|user| RecordRef::new(b"logged in").key(user.as_bytes()).timestamp(1_700_000_000_000));
    /// for range in producer.send_all("logins", None, records).await?.await?.ranges {
    ///     println!("{} record(s) at {}/{}", range.record_count, range.partition, range.first_offset);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn send_all<'r, R>(
        &self,
        topic: &str,
        partition: Option<u32>,
        records: impl IntoIterator<Item = R>,
    ) -> Result<BatchDelivery, ClientError>
    where
        R: Into<RecordRef<'r>>,
    {
        let mut records = records.into_iter().map(Into::into);
        let mut call = AppendCall::default();
        let mut refreshed_count = None;
        let failure = loop {
            match self.accumulator.append_many(
                topic,
                partition,
                &mut records,
                &mut call,
                Instant::now(),
                now_ms(),
            ) {
                AppendStep::Done => break None,
                AppendStep::Yield => {}
                AppendStep::NeedMemory(bytes) => {
                    // Give back the rest first: waiting for more while holding some could
                    // wait forever when buffer_memory is small.
                    self.accumulator.unreserve(std::mem::take(&mut call.credit));
                    match self.accumulator.reserve(bytes).await {
                        Ok(()) => call.credit = bytes,
                        Err(error) => break Some(error),
                    }
                }
                AppendStep::NeedMetadata if refreshed_count.is_none() => {
                    match self.refresh_metadata(topic).await {
                        Ok(count) => refreshed_count = Some(count),
                        Err(error) => break Some(error),
                    }
                }
                AppendStep::NeedMetadata => {
                    break Some(ClientError::NotFound(format!(
                        "topic {topic} has no partition {} (it has {})",
                        partition.unwrap_or_default(),
                        refreshed_count.unwrap_or_default()
                    )));
                }
                AppendStep::Failed(error) => break Some(error),
            }
        };
        self.accumulator.unreserve(call.credit);
        if call.accepted == 0
            && let Some(error) = failure
        {
            return Err(error);
        }
        let topic = call
            .segments
            .first()
            .map_or_else(|| Arc::from(topic), |s| s.completion.topic.clone());
        Ok(BatchDelivery::new(
            topic,
            call.segments,
            call.accepted,
            failure,
        ))
    }

    /// The number of partitions of `topic`, fetched from the cluster (and cached for
    /// later sends, with the partitions' leaders).
    pub async fn partitions(&self, topic: &str) -> Result<u32, ClientError> {
        self.refresh_metadata(topic).await
    }

    async fn refresh_metadata(&self, topic: &str) -> Result<u32, ClientError> {
        self.cluster.refresh(&[topic]).await?;
        let count = self.cluster.table().partition_count(topic).unwrap_or(0);
        if count == 0 {
            return Err(ClientError::Unavailable(format!(
                "topic {topic} has no partitions yet"
            )));
        }
        tracing::debug!(topic, partitions = count, "topic metadata refreshed");
        self.accumulator
            .set_partitions(topic, count, Instant::now());
        Ok(count)
    }

    /// Sends every buffered record at once (ignoring `linger`) and waits until every
    /// record sent before the call has its outcome. Outcomes, including errors, are in
    /// the records' [`DeliveryFuture`]s.
    pub async fn flush(&self) {
        /// Ends the flush even if the caller stops waiting (the future is dropped).
        struct FlushGuard<'a>(&'a Accumulator);
        impl Drop for FlushGuard<'_> {
            fn drop(&mut self) {
                self.0.end_flush();
            }
        }
        let pending = self.accumulator.begin_flush();
        let _guard = FlushGuard(&self.accumulator);
        for completion in pending {
            completion.wait().await;
        }
    }

    /// Stops accepting records, delivers everything buffered (retrying as configured),
    /// and waits for the sender to finish.
    pub async fn close(self) {
        self.accumulator.close();
        let sender = self.sender.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(sender) = sender
            && let Err(error) = sender.await
        {
            tracing::error!(error = %error, "producer sender task failed");
            self.accumulator.fail_unsent(&ClientError::Closed);
        }
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        // The sender delivers what is buffered, then exits.
        self.accumulator.close();
    }
}

/// Milliseconds since the Unix epoch by the local clock.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
