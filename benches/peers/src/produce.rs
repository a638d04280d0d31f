//! `produce`: how many records per second a peer acknowledges when a producer keeps a
//! fixed window of records in flight.
//!
//! Method: the stream is recreated empty; batches of `--batch-records` records are sent
//! through the peer's [`Producer`], with up to `--in-flight` batches unacknowledged at
//! once (the same window for every peer: pipelined, not one ack at a time). The clock
//! runs from the first send to the last ack. Then, where the peer can count, the stream
//! must hold exactly the records sent.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::ensure;
use clap::Args;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use serde_json::json;

use crate::output::{Progress, emit, grouped, progress, record_size};
use crate::payload::PayloadPool;
use crate::peer::{Peer, Producer};
use crate::result::{BenchResult, Durability, MB, SCHEMA, Workload};
use crate::shared_args::{ConnectArgs, default_stream, parse_record_bytes, parse_stream_name};

/// Most records one run may produce.
const MAX_RECORDS: u64 = 100_000_000;
/// Most records in one batch.
const MAX_BATCH_RECORDS: usize = 10_000;
/// Most batches in flight.
const MAX_IN_FLIGHT: usize = 256;

/// Options of `produce`.
#[derive(Debug, Clone, Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,

    /// Records to produce.
    #[arg(long, default_value_t = 2_000_000, value_parser = clap::value_parser!(u64).range(1..=MAX_RECORDS))]
    pub records: u64,

    /// Payload bytes of each record (`100`, `1KiB`).
    #[arg(long, default_value = "100", value_parser = parse_record_bytes)]
    pub record_bytes: u64,

    /// What an ack waits for; each peer's nearest equivalent (see the result's `acks`).
    #[arg(long, value_enum, default_value_t = Durability::Leader)]
    pub durability: Durability,

    /// Stream to write (recreated empty). Default: weir-bench-<record bytes>b.
    #[arg(long, value_parser = parse_stream_name)]
    pub stream: Option<String>,

    #[command(flatten)]
    pub window: WindowArgs,
}

/// How many records are sent together and how many are unacknowledged at once.
#[derive(Debug, Clone, Copy, Args)]
pub struct WindowArgs {
    /// Records per batch: one pipeline of XADDs (Redis), a run of publishes whose acks are
    /// then awaited (NATS), one batch_send (RabbitMQ).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=MAX_BATCH_RECORDS as u64))]
    pub batch_records: u64,

    /// Batches sent and not yet acknowledged, at most.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=MAX_IN_FLIGHT as u64))]
    pub in_flight: u64,
}

impl WindowArgs {
    pub fn batch(&self) -> usize {
        // Bounded by MAX_BATCH_RECORDS when parsed.
        self.batch_records as usize
    }

    pub fn in_flight(&self) -> usize {
        // Bounded by MAX_IN_FLIGHT when parsed.
        self.in_flight as usize
    }

    /// Records unacknowledged at most.
    pub fn window_records(&self) -> usize {
        self.batch() * self.in_flight()
    }

    pub fn settings(&self) -> BTreeMap<String, serde_json::Value> {
        BTreeMap::from([
            ("batch_records".to_owned(), json!(self.batch_records)),
            ("in_flight_batches".to_owned(), json!(self.in_flight)),
        ])
    }
}

pub async fn run<P: Peer>(mut peer: P, args: ProduceArgs) -> anyhow::Result<()> {
    let system = args.connect.system();
    let stream = args
        .stream
        .clone()
        .unwrap_or_else(|| default_stream(args.record_bytes));
    let acks = peer.set_durability(args.durability).await?;
    peer.recreate_stream(&stream).await?;
    let producer = peer.producer(&stream, args.window.window_records()).await?;
    // Bounded by MAX_RECORD_BYTES when parsed.
    let pool = PayloadPool::new(args.record_bytes as usize);
    progress!(
        "{system} produce: {} records of {} to {stream}, acks {}",
        grouped(args.records),
        record_size(args.record_bytes),
        args.durability.as_str()
    );

    let mut progress = Progress::new(format!("{system} produce: records acked"), args.records);
    let start = Instant::now();
    produce_all(&producer, &pool, args.records, args.window, &mut progress).await?;
    let seconds = start.elapsed().as_secs_f64();

    check_len(&peer, &stream, args.records).await?;

    let records_per_sec = args.records as f64 / seconds;
    let mut settings = args.window.settings();
    settings.insert("stream".to_owned(), json!(stream));
    let result = BenchResult {
        schema: SCHEMA.to_owned(),
        system: system.to_owned(),
        server: peer.server(),
        client: peer.client(),
        workload: Workload::Produce,
        record_bytes: args.record_bytes,
        records: args.records,
        acks: Some(acks),
        seconds,
        records_per_sec,
        mb_per_sec: records_per_sec * args.record_bytes as f64 / MB,
        latency: None,
        settings,
    };
    let text = format!(
        "{system} produce: {} records of {} in {seconds:.2} s: {} records/s, {:.1} MB/s\n  \
         acks ({}): {}\n",
        grouped(result.records),
        record_size(result.record_bytes),
        grouped(result.records_per_sec.round() as u64),
        result.mb_per_sec,
        args.durability.as_str(),
        result
            .acks
            .as_ref()
            .map(|a| a.meaning.as_str())
            .unwrap_or_default(),
    );
    emit(args.connect.format, &text, &result)
}

/// How long a stream may take to show every acknowledged record. A broker may acknowledge
/// before records are visible to readers: Weir's high watermark, which ListOffsets reports,
/// is the durable end of the log, reached at the next group-commit fsync after an acks=1
/// (leader) append was acknowledged.
const VISIBLE_WITHIN: Duration = Duration::from_secs(10);

/// Checks, where the peer can count, that `stream` holds exactly `expected` records: more
/// fails at once (doubled records), fewer is waited out for [`VISIBLE_WITHIN`].
async fn check_len<P: Peer>(peer: &P, stream: &str, expected: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + VISIBLE_WITHIN;
    loop {
        let Some(len) = peer.stream_len(stream).await? else {
            return Ok(());
        };
        ensure!(
            len <= expected,
            "{stream} holds {len} records after {expected} were acknowledged"
        );
        if len == expected {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "{stream} shows {len} records {VISIBLE_WITHIN:?} after {expected} were acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Produces records `0..total` from `pool` through `producer`, keeping up to
/// `window.in_flight` batches unacknowledged; returns once every record is acknowledged.
pub async fn produce_all<Pr: Producer>(
    producer: &Pr,
    pool: &PayloadPool,
    total: u64,
    window: WindowArgs,
    progress: &mut Progress,
) -> anyhow::Result<()> {
    let mut pending = FuturesUnordered::new();
    let mut sent = 0u64;
    let mut acked = 0u64;
    while acked < total {
        // Keep the window full; the futures start sending when `next` polls them.
        while sent < total && pending.len() < window.in_flight() {
            let n = (total - sent).min(window.batch_records);
            let records = (sent..sent + n).map(|i| pool.get(i)).collect();
            let append = producer.append(records);
            pending.push(async move { append.await.map(|()| n) });
            sent += n;
        }
        match pending.next().await {
            Some(done) => acked += done?,
            None => unreachable!("records are outstanding, so batches are in flight"),
        }
        progress.update(acked);
    }
    Ok(())
}
