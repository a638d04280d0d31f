//! Any broker that speaks Kafka's wire protocol (Weir's Kafka listener, Tansu), through
//! librdkafka by way of the rdkafka crate: a load generator that is not Weir's code.
//! Behind the `kafka` cargo feature, which builds librdkafka from its bundled C source
//! with cmake (`benches/run-peers.sh` and `benches/data-path.sh` turn it on; the default
//! build and test run never pay for the C build).
//!
//! - Producing: one `ThreadedProducer` (librdkafka's own batching, `linger.ms` and
//!   `batch.size`; its background thread polls for delivery reports). A workload batch is
//!   a run of `send`s sharing one [`BatchAck`]; the delivery callback counts them down and
//!   the batch's future resolves when the last is acknowledged, so the workload's window
//!   of batches in flight is the same as for every other peer. librdkafka sends what it
//!   has queued in its own protocol batches (up to `batch.size`), to partition 0.
//! - What an ack means: `leader` is `acks=1` (the leader appended it), `durable` is
//!   `acks=all` with idempotence on; whether the broker fsyncs before it answers is the
//!   broker's (Weir: `flush.policy=group-commit`, its default, does; `--fsync-before-ack`
//!   records what the caller knows of the broker).
//! - Consuming: a `BaseConsumer` assigned partition 0 from its first offset (no group
//!   protocol), with fetches of up to `FETCH_MAX_BYTES`; librdkafka keeps them in flight
//!   ahead of the application.
//! - Topics: deleted and created (1 partition, replication factor 1) with the admin API,
//!   and counted with ListOffsets (high minus low watermark).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use bytes::Bytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer,
};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::oneshot;

use super::{Endpoint, MAX_RECORDS_PER_POLL, Peer, Producer, Subscription};
use crate::result::{Acks, Durability};

/// Client library and versions: the crate's, from Cargo.lock at build time, and the
/// librdkafka it bundles, asked at run time.
const CLIENT_CRATE: &str = concat!("rdkafka ", env!("WEIR_PEER_BENCH_RDKAFKA_VERSION"));

/// Most bytes one fetch response may carry, and per partition: large enough that a
/// consumer is never held back by its fetch size on loopback.
const FETCH_MAX_BYTES: &str = "67108864";
const PARTITION_FETCH_MAX_BYTES: &str = "16777216";

/// How long librdkafka waits to fill a batch before it sends (its default is 5 ms).
const LINGER_MS: &str = "5";

/// Largest protocol batch the producer builds (librdkafka's `batch.size`, bytes).
const BATCH_BYTES: &str = "1048576";

/// How long a send waits for room in librdkafka's queue before trying again.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(1);

/// How long deleting and re-creating a topic may take in all.
const RECREATE_DEADLINE: Duration = Duration::from_secs(30);

/// What is known of the broker at the other end, from the command line.
#[derive(Debug, Clone)]
pub struct BrokerFacts {
    /// The name results carry (`weir-kafka`, `tansu`).
    pub system: String,
    /// Whether the broker fsyncs before it answers `acks=all`.
    pub fsync_before_ack: bool,
    /// Configs the topics this run creates are created with.
    pub topic_configs: Vec<(String, String)>,
}

/// A Kafka-wire broker reached through librdkafka.
pub struct KafkaWire {
    bootstrap: String,
    facts: BrokerFacts,
    request_timeout: Duration,
    admin: AdminClient<DefaultClientContext>,
    /// For watermarks and metadata.
    probe: BaseConsumer,
    acks: Durability,
}

impl std::fmt::Debug for KafkaWire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaWire")
            .field("bootstrap", &self.bootstrap)
            .field("facts", &self.facts)
            .finish_non_exhaustive()
    }
}

impl KafkaWire {
    pub async fn connect(endpoint: Endpoint, facts: BrokerFacts) -> anyhow::Result<KafkaWire> {
        let bootstrap = endpoint.addr.to_string();
        let admin: AdminClient<DefaultClientContext> = base_config(&bootstrap)
            .create()
            .context("creating the Kafka admin client")?;
        let probe: BaseConsumer = base_config(&bootstrap)
            .set("group.id", "weir-peer-bench-probe")
            .set("enable.auto.commit", "false")
            .set("allow.auto.create.topics", "false")
            .create()
            .context("creating the Kafka metadata client")?;
        let timeout = endpoint.request_timeout;
        let metadata = tokio::task::block_in_place(|| probe.fetch_metadata(None, timeout))
            .with_context(|| format!("no Kafka broker answered at {bootstrap}"))?;
        if metadata.brokers().is_empty() {
            bail!("the Kafka broker at {bootstrap} listed no brokers");
        }
        Ok(KafkaWire {
            bootstrap,
            facts,
            request_timeout: timeout,
            admin,
            probe,
            acks: Durability::Leader,
        })
    }

    fn admin_options(&self) -> AdminOptions {
        AdminOptions::new()
            .request_timeout(Some(self.request_timeout))
            .operation_timeout(Some(self.request_timeout))
    }

    /// Whether `topic` exists, from a metadata request that does not create it.
    fn exists(&self, topic: &str) -> anyhow::Result<bool> {
        let metadata = tokio::task::block_in_place(|| {
            self.probe.fetch_metadata(Some(topic), self.request_timeout)
        })?;
        Ok(metadata
            .topics()
            .iter()
            .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty()))
    }
}

/// Settings every client shares.
fn base_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "weir-peer-bench")
        // Loopback only: no reason to find brokers through anything but the address given.
        .set("broker.address.family", "v4");
    config
}

impl Peer for KafkaWire {
    type Producer = KafkaProducer;
    type Subscription = KafkaSubscription;

    fn server(&self) -> String {
        format!(
            "{} (Kafka protocol at {})",
            self.facts.system, self.bootstrap
        )
    }

    fn client(&self) -> String {
        let (_, librdkafka) = rdkafka::util::get_rdkafka_version();
        format!("{CLIENT_CRATE} (librdkafka {librdkafka})")
    }

    async fn set_durability(&mut self, durability: Durability) -> anyhow::Result<Acks> {
        self.acks = durability;
        let meaning = match durability {
            Durability::Leader => {
                "acks=1: the partition leader has appended the records (to the OS page cache \
                 on both brokers measured here); no fsync is waited for"
                    .to_owned()
            }
            Durability::Durable if self.facts.fsync_before_ack => {
                "acks=all, idempotent producer: the broker fsyncs the records before it \
                 answers (Weir: flush.policy=group-commit, its default)"
                    .to_owned()
            }
            Durability::Durable => {
                "acks=all, idempotent producer: every in-sync replica has the records; \
                 whether they are fsynced first is the broker's (not claimed here)"
                    .to_owned()
            }
        };
        Ok(Acks {
            durability,
            fsync_before_ack: durability == Durability::Durable && self.facts.fsync_before_ack,
            meaning,
        })
    }

    async fn recreate_stream(&self, topic: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + RECREATE_DEADLINE;
        let options = self.admin_options();
        for result in self.admin.delete_topics(&[topic], &options).await? {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                Err((_, code)) => bail!("deleting {topic}: {code}"),
            }
        }
        let new = self.facts.topic_configs.iter().fold(
            NewTopic::new(topic, 1, TopicReplication::Fixed(1)),
            |new, (k, v)| new.set(k, v),
        );
        loop {
            let result = self
                .admin
                .create_topics(std::slice::from_ref(&new), &options)
                .await?;
            match result.into_iter().next() {
                Some(Ok(_)) => break,
                // A deletion the broker finishes in the background.
                Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists)))
                    if Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Some(Err((_, code))) => bail!("creating {topic}: {code}"),
                None => bail!("creating {topic}: the broker answered for no topic"),
            }
        }
        // A new topic's leader may take a moment to be known to every client.
        while !self.exists(topic)? {
            if Instant::now() >= deadline {
                bail!("{topic} was created but has no partitions after {RECREATE_DEADLINE:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    async fn stream_len(&self, topic: &str) -> anyhow::Result<Option<u64>> {
        if !self.exists(topic)? {
            return Ok(None);
        }
        let (low, high) = tokio::task::block_in_place(|| {
            self.probe.fetch_watermarks(topic, 0, self.request_timeout)
        })
        .with_context(|| format!("listing the offsets of {topic}"))?;
        Ok(Some(u64::try_from(high - low).unwrap_or(0)))
    }

    async fn producer(&self, topic: &str, window_records: usize) -> anyhow::Result<KafkaProducer> {
        let mut config = base_config(&self.bootstrap);
        config
            .set("linger.ms", LINGER_MS)
            .set("batch.size", BATCH_BYTES)
            .set("compression.type", "none")
            // Room for the whole window, so the window is the workload's, not the queue's.
            .set(
                "queue.buffering.max.messages",
                (window_records.max(1) * 2).min(10_000_000).to_string(),
            )
            .set("queue.buffering.max.kbytes", "2097151");
        match self.acks {
            Durability::Leader => config.set("acks", "1").set("enable.idempotence", "false"),
            Durability::Durable => config.set("acks", "all").set("enable.idempotence", "true"),
        };
        let producer: ThreadedProducer<Deliveries> = config
            .create_with_context(Deliveries)
            .context("creating the Kafka producer")?;
        Ok(KafkaProducer {
            producer: Arc::new(producer),
            topic: Arc::from(topic),
        })
    }

    async fn subscribe(
        &self,
        topic: &str,
        _fetch_records: usize,
    ) -> anyhow::Result<KafkaSubscription> {
        let consumer: BaseConsumer = base_config(&self.bootstrap)
            .set("group.id", "weir-peer-bench")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("fetch.max.bytes", FETCH_MAX_BYTES)
            .set("max.partition.fetch.bytes", PARTITION_FETCH_MAX_BYTES)
            // librdkafka's own prefetch queue, in KiB (1 GiB: never the limit here).
            .set("queued.max.messages.kbytes", "1048576")
            .set("check.crcs", "false")
            .create()
            .context("creating the Kafka consumer")?;
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(topic, 0, Offset::Beginning)?;
        consumer.assign(&assignment)?;
        Ok(KafkaSubscription { consumer })
    }
}

/// One workload batch's records waiting for their delivery reports.
#[derive(Debug)]
struct BatchAck {
    remaining: AtomicUsize,
    first_error: Mutex<Option<String>>,
    done: Mutex<Option<oneshot::Sender<Result<(), String>>>>,
}

impl BatchAck {
    fn settle(&self, error: Option<String>) {
        if let Some(e) = error {
            let mut first = self.first_error.lock().expect("not poisoned");
            first.get_or_insert(e);
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            let outcome = match self.first_error.lock().expect("not poisoned").take() {
                Some(e) => Err(e),
                None => Ok(()),
            };
            if let Some(tx) = self.done.lock().expect("not poisoned").take() {
                let _ = tx.send(outcome);
            }
        }
    }
}

/// Counts delivery reports down on each record's [`BatchAck`].
#[derive(Debug)]
struct Deliveries;

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Arc<BatchAck>;

    fn delivery(&self, result: &DeliveryResult<'_>, batch: Arc<BatchAck>) {
        batch.settle(result.as_ref().err().map(|(e, _)| e.to_string()));
    }
}

/// Appends to partition 0 of one topic.
#[derive(Clone)]
pub struct KafkaProducer {
    producer: Arc<ThreadedProducer<Deliveries>>,
    topic: Arc<str>,
}

impl std::fmt::Debug for KafkaProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaProducer")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl Producer for KafkaProducer {
    fn append(
        &self,
        records: Vec<Bytes>,
    ) -> impl Future<Output = anyhow::Result<()>> + Send + 'static {
        let this = self.clone();
        async move {
            if records.is_empty() {
                return Ok(());
            }
            let (tx, rx) = oneshot::channel();
            let batch = Arc::new(BatchAck {
                remaining: AtomicUsize::new(records.len()),
                first_error: Mutex::new(None),
                done: Mutex::new(Some(tx)),
            });
            for payload in &records {
                let mut record = BaseRecord::<(), [u8], Arc<BatchAck>>::with_opaque_to(
                    &this.topic,
                    batch.clone(),
                )
                .payload(payload.as_ref())
                .partition(0);
                loop {
                    match this.producer.send(record) {
                        Ok(()) => break,
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                            record = r;
                            tokio::time::sleep(QUEUE_FULL_BACKOFF).await;
                        }
                        Err((e, _)) => return Err(anyhow!("sending to {}: {e}", this.topic)),
                    }
                }
            }
            rx.await
                .map_err(|_| anyhow!("the producer stopped before every record was reported"))?
                .map_err(|e| anyhow!("a record to {} was not acknowledged: {e}", this.topic))
        }
    }
}

impl Drop for KafkaProducer {
    fn drop(&mut self) {
        // The last handle: whatever is still queued is sent before the client goes.
        if Arc::strong_count(&self.producer) == 1 {
            let _ = self.producer.flush(Duration::from_secs(10));
        }
    }
}

/// Reads partition 0 of one topic from its first offset.
pub struct KafkaSubscription {
    consumer: BaseConsumer,
}

impl std::fmt::Debug for KafkaSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSubscription").finish_non_exhaustive()
    }
}

impl Subscription for KafkaSubscription {
    async fn next_batch<F>(&mut self, wait: Duration, mut visit: F) -> anyhow::Result<usize>
    where
        F: FnMut(&[u8]) + Send,
    {
        // librdkafka's poll blocks the calling thread: tell the runtime.
        tokio::task::block_in_place(|| {
            let mut n = 0;
            let mut timeout = wait;
            while n < MAX_RECORDS_PER_POLL {
                match self.consumer.poll(timeout) {
                    None => break,
                    Some(Err(e)) => return Err(anyhow!("consuming: {e}")),
                    Some(Ok(message)) => {
                        visit(message.payload().unwrap_or_default());
                        n += 1;
                        // After the first record, take what has already arrived only.
                        timeout = Duration::ZERO;
                    }
                }
            }
            Ok(n)
        })
    }
}
