//! `queue`: a work queue with per-message acknowledgement, the pattern of Weir's share
//! groups (`weir bench queue`), measured through AMQP 0-9-1 (lapin, behind the
//! `rabbitmq-amqp` feature) on RabbitMQ's classic queues or on Weir's AMQP listener
//! (`--broker weir`: a queue is a topic and its share group), the same client either way.
//!
//! Method, for each consumer count of `--consumers`:
//! 1. the queue is deleted and declared again, empty: durable, classic
//!    (`x-queue-type: classic`, which Weir takes too);
//! 2. fill, timed: `--producers` producers, each on its own connection and a channel in
//!    confirm mode, publish their share of `--records` persistent messages (delivery mode
//!    2) of `--record-bytes` to the default exchange, keeping up to `--in-flight`
//!    publishes unconfirmed each; the clock runs from the first publish to the last
//!    confirm. A confirm of a persistent message on a durable queue comes once the
//!    message is on disk, so this is Weir's acks=all with group commit. The queue must
//!    then hold exactly `--records` messages;
//! 3. consume, timed: that many consumers, each on its own connection and channel with
//!    `basic.qos` prefetch `--prefetch`, consume the queue with manual acknowledgement
//!    and send one `basic.ack` per message (never `multiple`), without waiting for one
//!    to be sent before taking the next delivery (`--await-sends` waits, as it waits for
//!    each publish to be sent in step 2). The clock runs from the
//!    first `basic.consume` until every message has been acknowledged and every consumer's
//!    channel is closed (its close-ok comes after the server handled the acks sent before
//!    it); then the queue must be empty.
//!
//! Every message carries its index in its first 8 bytes, so a message delivered twice is
//! counted as a duplicate and the run ends only when each one has arrived.
//!
//! One `produce` line (every fill together) and one `queue` line per consumer count are
//! printed, in the `weir-peer-bench/1` schema, as system `rabbitmq` or `weir-amqp`.

use std::time::Duration;

use clap::Args;

use crate::output::Format;
use crate::shared_args::{parse_loopback_host, parse_record_bytes, parse_stream_name};

/// Most records one run may produce and consume per consumer count.
const MAX_RECORDS: u64 = 100_000_000;
/// Most consumers of one run.
const MAX_CONSUMERS: u64 = 256;
/// Most producers.
const MAX_PRODUCERS: u64 = 64;
/// Most publishes one producer keeps unconfirmed.
const MAX_IN_FLIGHT: u64 = 1_000_000;
/// Largest `basic.qos` prefetch count AMQP can carry (a short).
const MAX_PREFETCH: u64 = u16::MAX as u64;
/// Longest a whole run may be given.
const MAX_TIMEOUT_SECS: u64 = 3600;
/// Bytes of the index every message starts with.
const INDEX_BYTES: usize = 8;
/// The AMQP port `benches/compare-queues.sh` and `run-peers.sh` start RabbitMQ on.
const DEFAULT_AMQP_PORT: u16 = 17472;

/// The AMQP server measured: it names the results and says what an acknowledgement means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Broker {
    /// RabbitMQ: a classic durable queue.
    Rabbitmq,
    /// Weir's AMQP listener: a queue is a topic and its share group.
    Weir,
}

/// Options of `queue`.
#[derive(Debug, Clone, Args)]
pub struct QueueArgs {
    /// The server measured: `rabbitmq` (results as system `rabbitmq`) or `weir` (Weir's
    /// AMQP listener, results as system `weir-amqp`).
    #[arg(long, value_enum, default_value_t = Broker::Rabbitmq)]
    pub broker: Broker,

    /// Address the server's AMQP listener is on. Loopback only.
    #[arg(long, default_value = "127.0.0.1", value_parser = parse_loopback_host)]
    pub host: std::net::IpAddr,

    /// The server's AMQP 0-9-1 port.
    #[arg(long, default_value_t = DEFAULT_AMQP_PORT)]
    pub port: u16,

    /// Messages published, then consumed, for each consumer count.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=MAX_RECORDS))]
    pub records: u64,

    /// Payload bytes of each message (at least the 8 of its index).
    #[arg(long, default_value = "100", value_parser = parse_record_bytes)]
    pub record_bytes: u64,

    /// Consumers of the queue, one run each (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "4,16",
          value_parser = clap::value_parser!(u64).range(1..=MAX_CONSUMERS))]
    pub consumers: Vec<u64>,

    /// Unacknowledged messages the server may send each consumer (`basic.qos`).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=MAX_PREFETCH))]
    pub prefetch: u64,

    /// Each producer waits for each `basic.publish` to be sent before it makes the next,
    /// and each consumer for each `basic.ack` before it takes the next delivery (lapin's
    /// README loops). By default they go on at once and lapin's connection task sends
    /// them as it gets to them (still one publish and one `basic.ack` per message, at most
    /// `SEND_WINDOW` publishes and a prefetch of acks unsent): lapin's hand-off to its
    /// connection task per awaited send cost it more CPU than Weir spent on the message.
    #[arg(long)]
    pub await_sends: bool,

    /// Producers filling the queue, each on its own connection.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=MAX_PRODUCERS))]
    pub producers: u64,

    /// Publishes each producer keeps unconfirmed (the window of the other workloads:
    /// 8 batches of 500).
    #[arg(long, default_value_t = 4000, value_parser = clap::value_parser!(u64).range(1..=MAX_IN_FLIGHT))]
    pub in_flight: u64,

    /// Queue to use (deleted and declared again for each consumer count).
    #[arg(long, default_value = "weir-bench-queue", value_parser = parse_stream_name)]
    pub queue: String,

    /// The server's name and version for the results (`rabbitmq-server 3.10.8`, `weir
    /// 0.1.0`): AMQP's client does not expose what the server says of itself.
    #[arg(long, default_value = "rabbitmq-server")]
    pub server: String,

    /// Fail if no message arrives at any consumer for this many seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_SECS))]
    pub stall_secs: u64,

    /// The run fails, rather than hangs, if it has not finished after this many seconds.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_SECS))]
    pub timeout_secs: u64,

    /// Output format of the results (progress always goes to stderr).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

impl QueueArgs {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.record_bytes >= INDEX_BYTES as u64,
            "--record-bytes must be at least {INDEX_BYTES}: every message carries its index"
        );
        anyhow::ensure!(
            !self.consumers.is_empty(),
            "--consumers needs at least one count"
        );
        Ok(())
    }
}

#[cfg(not(feature = "rabbitmq-amqp"))]
pub async fn run(args: QueueArgs) -> anyhow::Result<()> {
    args.check()?;
    anyhow::bail!(
        "this weir-peer-bench was built without AMQP: build it with \
         `cargo build --release -p weir-peer-bench --features rabbitmq-amqp`"
    )
}

#[cfg(feature = "rabbitmq-amqp")]
pub use amqp::run;

#[cfg(feature = "rabbitmq-amqp")]
mod amqp {
    use std::collections::{BTreeMap, VecDeque};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    use anyhow::{Context as _, anyhow, bail, ensure};
    use futures_util::stream::{FuturesOrdered, FuturesUnordered};
    use futures_util::{FutureExt as _, StreamExt as _};
    use lapin::options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
        ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
    };
    use lapin::types::{AMQPValue, FieldTable};
    use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
    use serde_json::json;
    use tokio::sync::watch;

    use super::{Broker, INDEX_BYTES, QueueArgs};
    use crate::output::{Format, Progress, emit, grouped, progress, record_size};
    use crate::payload::PayloadPool;
    use crate::result::{Acks, BenchResult, Durability, MB, SCHEMA, Workload};

    /// Client library and version, from Cargo.lock at build time.
    const CLIENT: &str = concat!("lapin ", env!("WEIR_PEER_BENCH_LAPIN_VERSION"));

    /// AMQP's persistent delivery mode.
    const PERSISTENT: u8 = 2;

    /// AMQP's reply code of a normal close.
    const REPLY_SUCCESS: u16 = 200;

    /// How long connecting and each control request (declare, delete, close) may take.
    const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

    /// Most publishes of one producer made and not yet sent by lapin (without
    /// `--await-sends`).
    const SEND_WINDOW: usize = 256;

    /// How often a waiting consumer looks at the clock (for the stall limit).
    const POLL_WAIT: Duration = Duration::from_millis(200);

    impl Broker {
        /// The results' `system`.
        fn system(self) -> &'static str {
            match self {
                Broker::Rabbitmq => "rabbitmq",
                Broker::Weir => "weir-amqp",
            }
        }
    }

    /// What a publisher confirm means on `broker`.
    fn produce_acks_mean(broker: Broker) -> &'static str {
        match broker {
            Broker::Rabbitmq => {
                "RabbitMQ classic durable queue, persistent message (delivery mode 2), \
                 publisher confirms: the confirm comes once the message is persisted, fsynced \
                 with others in a batch (the queue index or message store)"
            }
            Broker::Weir => {
                "Weir queue (a topic and its share group), persistent message (delivery mode \
                 2), publisher confirms: the confirm comes once the message is appended with \
                 acks=all and fsynced (flush.policy=group-commit, the default)"
            }
        }
    }

    /// What a consumer's acknowledgement means on `broker`.
    fn consume_acks_mean(broker: Broker) -> &'static str {
        match broker {
            Broker::Rabbitmq => {
                "manual basic.ack per message, prefetch as set; basic.ack has no reply: the \
                 clock stops when each consumer's channel.close-ok shows the server handled \
                 its acks, not when their removal is on disk"
            }
            Broker::Weir => {
                "manual basic.ack per message, prefetch as set; Weir handles a channel's \
                 acks in order, each an ACCEPT the share coordinator has made durable in \
                 __share_group_state before the next method: the clock stops when each \
                 consumer's channel.close-ok arrives, after its acks are durable"
            }
        }
    }

    /// The results' `queue_type` setting on `broker`.
    fn queue_type(broker: Broker) -> &'static str {
        match broker {
            Broker::Rabbitmq => "classic, durable",
            Broker::Weir => "a 1-partition topic and its share group (declared classic, durable)",
        }
    }

    /// Messages each consumer's bitmap word covers.
    const BITS: u64 = u64::BITS as u64;

    pub async fn run(args: QueueArgs) -> anyhow::Result<()> {
        args.check()?;
        let uri = format!("amqp://guest:guest@{}:{}/%2f", args.host, args.port);
        let control = connect(&uri).await?;
        let channel = request(control.create_channel(), "opening a channel").await?;
        // Bounded by MAX_RECORD_BYTES when parsed.
        let pool = PayloadPool::new(args.record_bytes as usize);
        let mut fills = Vec::new();
        let mut runs = Vec::new();
        for &consumers in &args.consumers {
            recreate_queue(&channel, &args.queue).await?;
            let seconds = fill(&uri, &args, &pool).await?;
            let held = declare(&channel, &args.queue, true).await?.message_count();
            ensure!(
                u64::from(held) == args.records,
                "{} holds {held} messages after {} were confirmed",
                args.queue,
                args.records
            );
            fills.push(seconds);
            runs.push(consume(&uri, &args, consumers).await?);
            let left = declare(&channel, &args.queue, true).await?.message_count();
            ensure!(
                left == 0,
                "{} holds {left} messages after every one was acknowledged",
                args.queue
            );
        }
        request(
            channel.queue_delete(args.queue.as_str().into(), QueueDeleteOptions::default()),
            "deleting the queue",
        )
        .await?;
        let _ = control.close(REPLY_SUCCESS, "done".into()).await;

        let total_secs: f64 = fills.iter().sum();
        let produced = args.records * fills.len() as u64;
        let produce_rate = produced as f64 / total_secs;
        let produce = BenchResult {
            schema: SCHEMA.to_owned(),
            system: args.broker.system().to_owned(),
            server: args.server.clone(),
            client: CLIENT.to_owned(),
            workload: Workload::Produce,
            record_bytes: args.record_bytes,
            records: produced,
            acks: Some(Acks {
                durability: Durability::Durable,
                fsync_before_ack: true,
                meaning: produce_acks_mean(args.broker).to_owned(),
            }),
            seconds: total_secs,
            records_per_sec: produce_rate,
            mb_per_sec: produce_rate * args.record_bytes as f64 / MB,
            latency: None,
            settings: BTreeMap::from([
                ("queue".to_owned(), json!(args.queue)),
                ("queue_type".to_owned(), json!(queue_type(args.broker))),
                ("producers".to_owned(), json!(args.producers)),
                ("in_flight_per_producer".to_owned(), json!(args.in_flight)),
                (
                    "fills_records_per_sec".to_owned(),
                    json!(
                        fills
                            .iter()
                            .map(|s| args.records as f64 / s)
                            .collect::<Vec<_>>()
                    ),
                ),
            ]),
        };
        match args.format {
            Format::Json => {
                emit(Format::Json, "", &produce)?;
                for run in &runs {
                    emit(Format::Json, "", &run.result)?;
                }
                Ok(())
            }
            Format::Text => {
                let mut text = format!(
                    "{} produce: {} fill(s) of {} persistent messages of {}: {} records/s \
                     (confirmed), {} producer(s), {} unconfirmed each at most\n",
                    args.broker.system(),
                    fills.len(),
                    grouped(args.records),
                    record_size(args.record_bytes),
                    grouped(produce_rate.round() as u64),
                    args.producers,
                    args.in_flight
                );
                for run in &runs {
                    text.push_str(&format!(
                        "{} queue: {} consumers, prefetch {}: {} records/s acknowledged \
                         in {:.2} s ({} duplicates; per consumer {:?})\n",
                        args.broker.system(),
                        run.consumers,
                        args.prefetch,
                        grouped(run.result.records_per_sec.round() as u64),
                        run.result.seconds,
                        run.duplicates,
                        run.per_consumer
                    ));
                }
                emit(Format::Text, &text, &())
            }
        }
    }

    async fn request<T, E>(
        work: impl Future<Output = Result<T, E>>,
        what: &str,
    ) -> anyhow::Result<T>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        tokio::time::timeout(REQUEST_TIMEOUT, work)
            .await
            .map_err(|_| anyhow!("{what}: no answer from the server within {REQUEST_TIMEOUT:?}"))?
            .with_context(|| what.to_owned())
    }

    async fn connect(uri: &str) -> anyhow::Result<Connection> {
        request(
            Connection::connect(uri, ConnectionProperties::default()),
            "connecting to the server's AMQP port",
        )
        .await
    }

    /// Declares the durable classic queue (`passive`: only looks it up).
    async fn declare(
        channel: &Channel,
        queue: &str,
        passive: bool,
    ) -> anyhow::Result<lapin::Queue> {
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("classic".into()),
        );
        let options = QueueDeclareOptions {
            durable: true,
            passive,
            ..QueueDeclareOptions::default()
        };
        request(
            channel.queue_declare(queue.into(), options, arguments),
            "declaring the queue",
        )
        .await
    }

    async fn recreate_queue(channel: &Channel, queue: &str) -> anyhow::Result<()> {
        request(
            channel.queue_delete(queue.into(), QueueDeleteOptions::default()),
            "deleting the queue",
        )
        .await?;
        declare(channel, queue, false).await.map(|_| ())
    }

    /// The payload of message `index`: the pool's, with the index in its first bytes.
    fn message(pool: &PayloadPool, index: u64) -> Vec<u8> {
        let mut payload = pool.get(index).to_vec();
        payload[..INDEX_BYTES].copy_from_slice(&index.to_le_bytes());
        payload
    }

    /// Publishes `args.records` messages with `args.producers` producers; returns the
    /// seconds from the first publish to the last confirm.
    async fn fill(uri: &str, args: &QueueArgs, pool: &PayloadPool) -> anyhow::Result<f64> {
        let mut channels = Vec::new();
        for _ in 0..args.producers {
            let connection = connect(uri).await?;
            let channel = request(connection.create_channel(), "opening a channel").await?;
            request(
                channel.confirm_select(ConfirmSelectOptions::default()),
                "confirm.select",
            )
            .await?;
            channels.push((connection, channel));
        }
        progress!(
            "{}: publishing {} persistent messages of {} to {} ({} producer(s))",
            args.broker.system(),
            grouped(args.records),
            record_size(args.record_bytes),
            args.queue,
            args.producers
        );
        let confirmed = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let mut tasks = Vec::new();
        let share = args.records.div_ceil(args.producers);
        for (i, (connection, channel)) in channels.into_iter().enumerate() {
            let first = i as u64 * share;
            let end = (first + share).min(args.records);
            let (pool, queue, confirmed) = (pool.clone(), args.queue.clone(), confirmed.clone());
            let window = args.in_flight as usize;
            let await_sends = args.await_sends;
            tasks.push(tokio::spawn(async move {
                let mut pending = VecDeque::with_capacity(window);
                // Publishes made, not yet sent (their confirms come once they are).
                let mut sends = FuturesOrdered::new();
                for index in first..end {
                    if pending.len() + sends.len() >= window {
                        if pending.is_empty()
                            && let Some(sent) = sends.next().await
                        {
                            pending.push_back(sent?);
                        }
                        await_confirm(pending.pop_front(), &confirmed).await?;
                    }
                    let (channel, queue) = (channel.clone(), queue.clone());
                    let body = message(&pool, index);
                    let send = async move {
                        channel
                            .basic_publish(
                                "".into(),
                                queue.as_str().into(),
                                BasicPublishOptions::default(),
                                &body,
                                BasicProperties::default().with_delivery_mode(PERSISTENT),
                            )
                            .await
                            .context("basic.publish")
                    };
                    if await_sends {
                        pending.push_back(send.await?);
                        continue;
                    }
                    sends.push_back(send);
                    while let Some(Some(sent)) = sends.next().now_or_never() {
                        pending.push_back(sent?);
                    }
                    if sends.len() >= SEND_WINDOW
                        && let Some(sent) = sends.next().await
                    {
                        pending.push_back(sent?);
                    }
                }
                while let Some(sent) = sends.next().await {
                    pending.push_back(sent?);
                }
                while !pending.is_empty() {
                    await_confirm(pending.pop_front(), &confirmed).await?;
                }
                let _ = connection.close(REPLY_SUCCESS, "done".into()).await;
                anyhow::Ok(())
            }));
        }
        let mut progress = Progress::new(
            format!("{}: messages confirmed", args.broker.system()),
            args.records,
        );
        join_all(tasks, &mut progress, || confirmed.load(Ordering::Relaxed))
            .await
            .context("a producer task failed")?;
        Ok(started.elapsed().as_secs_f64())
    }

    /// Waits for every task, updating `progress` from `count` every [`POLL_WAIT`]
    /// meanwhile, and returns as soon as the last one ends: a clock read after it stops
    /// then, not at the next poll (polling each task in turn every 200 ms added up to
    /// 200 ms to a run, 3% of a 6 s one, and nothing to a 30 s one).
    async fn join_all<T>(
        tasks: Vec<tokio::task::JoinHandle<anyhow::Result<T>>>,
        progress: &mut Progress,
        count: impl Fn() -> u64,
    ) -> anyhow::Result<Vec<T>> {
        let mut all = std::pin::pin!(futures_util::future::join_all(tasks));
        let mut tick = tokio::time::interval(POLL_WAIT);
        let ended = loop {
            tokio::select! {
                ended = &mut all => break ended,
                _ = tick.tick() => progress.update(count()),
            }
        };
        ended.into_iter().map(|task| task?).collect()
    }

    async fn await_confirm(
        confirm: Option<lapin::PublisherConfirm>,
        confirmed: &AtomicU64,
    ) -> anyhow::Result<()> {
        let Some(confirm) = confirm else {
            return Ok(());
        };
        let confirmation = confirm.await.context("waiting for a publisher confirm")?;
        ensure!(
            confirmation.is_ack(),
            "the server refused a message (basic.nack)"
        );
        confirmed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// One consume run's figures.
    struct ConsumeRun {
        consumers: u64,
        duplicates: u64,
        per_consumer: Vec<u64>,
        result: BenchResult,
    }

    /// Which messages arrived: one bit each.
    struct Seen {
        words: Vec<AtomicU64>,
        distinct: AtomicU64,
    }

    impl Seen {
        fn new(records: u64) -> Seen {
            Seen {
                words: (0..records.div_ceil(BITS))
                    .map(|_| AtomicU64::new(0))
                    .collect(),
                distinct: AtomicU64::new(0),
            }
        }

        /// Marks `index`; returns whether it is new, and the distinct count after it.
        fn mark(&self, index: u64) -> anyhow::Result<(bool, u64)> {
            let word = self
                .words
                .get((index / BITS) as usize)
                .ok_or_else(|| anyhow!("a message carries index {index}, beyond the run's"))?;
            let bit = 1u64 << (index % BITS);
            if word.fetch_or(bit, Ordering::Relaxed) & bit != 0 {
                return Ok((false, self.distinct.load(Ordering::Relaxed)));
            }
            Ok((true, self.distinct.fetch_add(1, Ordering::Relaxed) + 1))
        }
    }

    async fn consume(uri: &str, args: &QueueArgs, consumers: u64) -> anyhow::Result<ConsumeRun> {
        let mut members = Vec::new();
        for _ in 0..consumers {
            let connection = connect(uri).await?;
            let channel = request(connection.create_channel(), "opening a channel").await?;
            request(
                // Bounded by MAX_PREFETCH when parsed.
                channel.basic_qos(args.prefetch as u16, BasicQosOptions::default()),
                "basic.qos",
            )
            .await?;
            members.push((connection, channel));
        }
        progress!(
            "{}: {consumers} consumers take {} messages, prefetch {}, one basic.ack each",
            args.broker.system(),
            grouped(args.records),
            args.prefetch
        );
        let seen = Arc::new(Seen::new(args.records));
        let duplicates = Arc::new(AtomicU64::new(0));
        let (done_tx, done_rx) = watch::channel(false);
        let done_tx = Arc::new(done_tx);
        let stall = Duration::from_secs(args.stall_secs);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for (slot, (connection, channel)) in members.into_iter().enumerate() {
            let (seen, duplicates, done_tx) = (seen.clone(), duplicates.clone(), done_tx.clone());
            let mut done_rx = done_rx.clone();
            let (queue, records) = (args.queue.clone(), args.records);
            let (await_sends, prefetch) = (args.await_sends, args.prefetch as usize);
            tasks.push(tokio::spawn(async move {
                // Acks sent, not yet known to be written to the socket.
                let mut acks = FuturesUnordered::new();
                let mut deliveries = channel
                    .basic_consume(
                        queue.as_str().into(),
                        format!("weir-bench-{slot}").into(),
                        BasicConsumeOptions::default(),
                        FieldTable::default(),
                    )
                    .await
                    .context("basic.consume")?;
                let mut mine = 0u64;
                let mut last = Instant::now();
                while !*done_rx.borrow() {
                    let next = tokio::select! {
                        next = tokio::time::timeout(POLL_WAIT, deliveries.next()) => next,
                        _ = done_rx.changed() => break,
                    };
                    let delivery = match next {
                        Err(_) if last.elapsed() > stall => {
                            bail!("consumer {slot}: no message for {stall:?} with {mine} taken")
                        }
                        Err(_) => continue,
                        Ok(None) => bail!("consumer {slot}: the server cancelled the consumer"),
                        Ok(Some(delivery)) => delivery.context("receiving a delivery")?,
                    };
                    last = Instant::now();
                    let index = delivery
                        .data
                        .get(..INDEX_BYTES)
                        .and_then(|b| b.try_into().ok())
                        .map(u64::from_le_bytes)
                        .ok_or_else(|| anyhow!("a message shorter than its index"))?;
                    let (new, distinct) = seen.mark(index)?;
                    if !new {
                        duplicates.fetch_add(1, Ordering::Relaxed);
                    }
                    // The channel's own basic.ack (one hand-off to lapin's connection
                    // task), not the delivery's acker, which goes through another task.
                    let (acks_channel, tag) = (channel.clone(), delivery.delivery_tag);
                    let ack = async move {
                        acks_channel
                            .basic_ack(tag, BasicAckOptions::default())
                            .await
                    };
                    if await_sends {
                        ack.await.context("basic.ack")?;
                    } else {
                        acks.push(ack);
                        // What is sent already, then room for the next if all are due.
                        while let Some(Some(sent)) = acks.next().now_or_never() {
                            sent.context("basic.ack")?;
                        }
                        if acks.len() >= prefetch
                            && let Some(sent) = acks.next().await
                        {
                            sent.context("basic.ack")?;
                        }
                    }
                    mine += 1;
                    if distinct == records {
                        let _ = done_tx.send(true);
                    }
                }
                while let Some(sent) = acks.next().await {
                    sent.context("basic.ack")?;
                }
                // The close-ok follows the acks sent before it on this channel.
                request(
                    channel.close(REPLY_SUCCESS, "done".into()),
                    "closing a channel",
                )
                .await?;
                let _ = connection.close(REPLY_SUCCESS, "done".into()).await;
                anyhow::Ok(mine)
            }));
        }
        let mut progress = Progress::new(
            format!(
                "{}: {consumers} consumers: messages acknowledged",
                args.broker.system()
            ),
            args.records,
        );
        let per_consumer = join_all(tasks, &mut progress, || {
            seen.distinct.load(Ordering::Relaxed)
        })
        .await
        .context("a consumer task failed")?;
        let seconds = started.elapsed().as_secs_f64();
        let taken: u64 = per_consumer.iter().sum();
        let records_per_sec = taken as f64 / seconds;
        let duplicates = duplicates.load(Ordering::Relaxed);
        let result = BenchResult {
            schema: SCHEMA.to_owned(),
            system: args.broker.system().to_owned(),
            server: args.server.clone(),
            client: CLIENT.to_owned(),
            workload: Workload::Queue,
            record_bytes: args.record_bytes,
            records: args.records,
            acks: Some(Acks {
                durability: Durability::Durable,
                fsync_before_ack: false,
                meaning: consume_acks_mean(args.broker).to_owned(),
            }),
            seconds,
            records_per_sec,
            mb_per_sec: records_per_sec * args.record_bytes as f64 / MB,
            latency: None,
            settings: BTreeMap::from([
                ("consumers".to_owned(), json!(consumers)),
                ("prefetch".to_owned(), json!(args.prefetch)),
                ("ack".to_owned(), json!("basic.ack per message")),
                ("sends_awaited".to_owned(), json!(args.await_sends)),
                ("queue".to_owned(), json!(args.queue)),
                ("queue_type".to_owned(), json!(queue_type(args.broker))),
                ("duplicates".to_owned(), json!(duplicates)),
                ("records_per_consumer".to_owned(), json!(per_consumer)),
            ]),
        };
        Ok(ConsumeRun {
            consumers,
            duplicates,
            per_consumer,
            result,
        })
    }
}
