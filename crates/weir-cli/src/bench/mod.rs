//! `weir bench`: an end-to-end load generator against a running broker. Three record
//! scenarios, one file each: `produce` (throughput and acknowledgement latency), `consume`
//! (read throughput of a filled topic) and `e2e` (produce at a fixed rate while consuming,
//! with latency measured from each record's intended send time, so a stall is charged to
//! every record it delayed: no coordinated omission). Three consumer-group scenarios,
//! `group-join`, `group-consume` and `group-commit`, live in `group/` with their own flags
//! and reports.
//!
//! This file holds the flags, the typed configuration, the topic set-up, the progress
//! bar (stderr) and the report (stdout; `--format json` prints it as one JSON object on
//! the last line, `--report-schema peer` as one `weir-peer-bench/1` line: see `peer.rs`).

mod consume;
mod e2e;
mod group;
mod peer;
mod produce;

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use weir_client::connection::Timeouts;
use weir_client::{Admin, ClientError, ProducerConfig};

use crate::UsageError;
use crate::brokers::BrokerArgs;
use crate::output::{Format, key_value_map, parse_duration, parse_key_value};
use crate::produce::{AcksArg, CompressionArg};

/// Records when neither `--count` nor `--duration` is given.
const DEFAULT_COUNT: u64 = 1_000_000;
/// Topic used when `--topic` is not given.
const DEFAULT_TOPIC: &str = "weir-bench";
/// Largest record `--record-size` accepts: a record must fit a batch with room to spare.
const MAX_RECORD_BYTES: u64 = 16 * 1024 * 1024;
/// How often the progress bar is redrawn from the shared counter (the hot loops only
/// bump an atomic).
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);
/// Latencies are recorded in microseconds, up to an hour, to 3 significant digits.
const LATENCY_MAX_US: u64 = 3_600_000_000;
const LATENCY_SIGNIFICANT_DIGITS: u8 = 3;
/// Bytes per megabyte in MB/s (decimal, as disk and network figures are quoted).
const BYTES_PER_MB: f64 = 1e6;

const EXAMPLES: &str = "\
Examples:
  weir bench produce --record-size 100 --count 5000000 --partitions 4
  weir bench produce --record-size 100 --count 5000000 --per-record   # one send per record
  weir bench produce --record-size 1KiB --duration 30s --acks all --topic durable \\
      --topic-config flush.policy=group-commit
  weir bench produce --record-size 1KiB --count 300000 --acks all \
      --transactional-id bench-1 --transaction-records 1000   # committed per 1,000 records
  weir bench consume --record-size 1KiB --count 2000000
  weir bench e2e --rate 100000 --duration 20s
  weir bench produce --count 20000 --format json | tail -1 | jq .records_per_sec
  weir bench e2e --rate 50000 --duration 20s --warmup 2s --acks all --report-schema peer \
      >> results.jsonl    # a weir-peer-bench/1 line (benches/peers/README.md)
  weir bench group-join --partitions 100 --rounds 10
  weir bench group-consume --count 2000000 --members 3
  weir bench group-commit --committers 1,16,64 --duration 5s
  weir bench queue --count 1000000 --consumers 4,16    # share group, per-record ACCEPT

The topic is created if missing (with --partitions and --topic-config). MB/s counts key
and value bytes, 10^6 bytes per MB. Record values are random bytes (incompressible).";

/// Measure throughput and latency against a running broker.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct BenchArgs {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Produce as fast as possible; latency is send to acknowledgement.
    Produce(CommonArgs),
    /// Read COUNT records from the beginning of the topic (producing them first if the
    /// topic has fewer).
    Consume(CommonArgs),
    /// Produce at a fixed --rate while consuming; latency is from each record's intended
    /// send time to its arrival at the consumer.
    E2e {
        #[command(flatten)]
        common: CommonArgs,
        /// Records per second to produce.
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
        rate: u64,
        /// Produce at the rate this long first without measuring (e.g. 2s); the records
        /// of --count or --duration follow.
        #[arg(long, value_parser = parse_duration, default_value = "0s")]
        warmup: Duration,
    },
    /// Consumer groups: a member joins a stable group (and leaves again), --rounds
    /// times; reports the time until every partition has one owner and the group is
    /// balanced.
    GroupJoin(group::JoinArgs),
    /// Consumer groups: read a filled topic with 1 member of a fresh group, then with
    /// --members members of another; reports the throughput of each and checks every
    /// record arrived once.
    GroupConsume(group::ConsumeArgs),
    /// Consumer groups: offset commits per second and their latency with C concurrent
    /// committers (one group each), for each C of --committers.
    GroupCommit(group::CommitArgs),
    /// Queues: a share group's consumers take and ACCEPT every record of a filled topic,
    /// each on its own, for each consumer count of --consumers; reports records
    /// accepted (durably) per second.
    Queue(group::QueueArgs),
}

/// Flags every scenario takes.
#[derive(Debug, Args)]
struct CommonArgs {
    #[command(flatten)]
    brokers: BrokerArgs,
    /// Topic to use; created if missing.
    #[arg(long, short = 't', default_value = DEFAULT_TOPIC)]
    topic: String,
    /// Partitions of the topic when it is created.
    #[arg(long, short = 'p', default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    partitions: u32,
    /// A topic setting used when it is created, KEY=VALUE (repeatable).
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_key_value)]
    topic_config: Vec<(String, String)>,
    /// Value size of each record: bytes, or with a unit (KiB, MiB, kB, MB).
    #[arg(long, short = 's', default_value = "100", value_parser = parse_size)]
    record_size: u64,
    /// Records to send (or read) [default: 1000000 unless --duration].
    #[arg(long, short = 'n', conflicts_with = "duration", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Run this long instead (e.g. 30s, 500ms, 2m); produce and e2e only.
    #[arg(long, short = 'd', value_parser = parse_duration)]
    duration: Option<Duration>,
    /// When the broker acknowledges: none, leader or all.
    #[arg(long, value_enum, default_value_t = AcksArg::Leader)]
    acks: AcksArg,
    /// Compression of each batch.
    #[arg(long, short = 'z', value_enum, default_value_t = CompressionArg::None)]
    compression: CompressionArg,
    /// Producer linger in ms [default: the client's (5) for produce and consume, 1 for e2e].
    #[arg(long)]
    linger_ms: Option<u64>,
    /// Send a partition's batch at once when nothing of it is in flight, batching only
    /// while a request is out (true or false) [default: true for e2e, false otherwise].
    #[arg(long, value_name = "BOOL")]
    send_when_idle: Option<bool>,
    /// Producer batch size: bytes, or with a unit [default: the client's (256KiB)].
    #[arg(long, value_parser = parse_size)]
    batch_bytes: Option<u64>,
    /// Producer batches in flight per partition [default: the client's (5)]; above 5
    /// needs --idempotence false.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    max_in_flight: Option<u64>,
    /// Idempotent producers (true or false) [default: true, the client's default]: to
    /// measure what numbering batches costs.
    #[arg(long, value_name = "BOOL")]
    idempotence: Option<bool>,
    /// Produce with one `Producer::send` call per record instead of `send_all` calls of
    /// --chunk-records (produce, and the fill of consume); latency is then per record.
    #[arg(long)]
    per_record: bool,
    /// Records per `send_all` call [default: about a batch's worth, --batch-bytes over
    /// the framed record size]; latency is sampled once per call.
    #[arg(long, conflicts_with = "per_record", value_parser = clap::value_parser!(u64).range(1..))]
    chunk_records: Option<u64>,
    /// produce only: send with a transactional producer of this transactional id,
    /// committing every --transaction-records records (needs --acks all).
    #[arg(long, conflicts_with = "per_record")]
    transactional_id: Option<String>,
    /// Records per transaction with --transactional-id.
    #[arg(long, requires = "transactional_id", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    transaction_records: u64,
    /// Output format of the final report.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// Schema of the report: weir's own, or `peer`: one JSON line in the
    /// `weir-peer-bench/1` schema that `weir-peer-bench report` merges with Weir's peers
    /// (benches/peers/README.md); `peer` always prints JSON.
    #[arg(long, value_enum, default_value_t)]
    report_schema: ReportSchema,
}

/// `--report-schema`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub(crate) enum ReportSchema {
    /// Weir's report (`--format` text or json).
    #[default]
    Weir,
    /// A `weir-peer-bench/1` JSON line.
    Peer,
}

/// When a run stops.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stop {
    Count(u64),
    After(Duration),
}

/// Which scenario, with its own settings.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Produce,
    Consume,
    E2e { rate: u64, warmup: Duration },
}

/// `weir bench`, checked: a record scenario or a consumer-group scenario. Made once per
/// run, so the size of its larger variant costs nothing.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum BenchPlan {
    /// `produce`, `consume`, `e2e`.
    Records(BenchConfig),
    /// `group-join`, `group-consume`, `group-commit`.
    Group(group::GroupBench),
}

/// A record scenario, checked.
#[derive(Debug)]
pub struct BenchConfig {
    pub(crate) kind: Kind,
    pub(crate) brokers: Vec<String>,
    pub(crate) timeouts: Timeouts,
    pub(crate) tls: Option<weir_client::ClientTls>,
    pub(crate) topic: String,
    pub(crate) partitions: u32,
    pub(crate) topic_configs: HashMap<String, String>,
    pub(crate) record_bytes: usize,
    pub(crate) stop: Stop,
    pub(crate) producer: ProducerConfig,
    /// `--per-record`: one `send` per record instead of `send_all` chunks.
    pub(crate) per_record: bool,
    /// `--transaction-records` with `--transactional-id` (set in `producer`): produce in
    /// transactions of this many records.
    pub(crate) transaction_records: Option<u64>,
    /// `--chunk-records`: records per `send_all` call (`None`: a batch's worth).
    pub(crate) chunk_records: Option<u64>,
    pub(crate) acks: AcksArg,
    pub(crate) compression: CompressionArg,
    pub(crate) format: Format,
    pub(crate) report_schema: ReportSchema,
}

impl BenchArgs {
    /// Checks the arguments and builds the typed configuration.
    pub fn into_config(self) -> anyhow::Result<BenchPlan> {
        let (kind, common) = match self.scenario {
            Scenario::Produce(c) => (Kind::Produce, c),
            Scenario::Consume(c) => (Kind::Consume, c),
            Scenario::E2e {
                common,
                rate,
                warmup,
            } => (Kind::E2e { rate, warmup }, common),
            Scenario::GroupJoin(args) => return Ok(BenchPlan::Group(args.into_config()?)),
            Scenario::GroupConsume(args) => return Ok(BenchPlan::Group(args.into_config()?)),
            Scenario::GroupCommit(args) => return Ok(BenchPlan::Group(args.into_config()?)),
            Scenario::Queue(args) => return Ok(BenchPlan::Group(args.into_config()?)),
        };
        let usage = |m: String| -> anyhow::Error { UsageError(m).into() };
        if common.record_size > MAX_RECORD_BYTES {
            return Err(usage(format!(
                "--record-size {} is above the limit of {MAX_RECORD_BYTES} bytes",
                common.record_size
            )));
        }
        if let Kind::E2e { .. } = kind
            && common.record_size < e2e::STAMP_BYTES as u64
        {
            return Err(usage(format!(
                "e2e records carry their send time: --record-size must be at least {}",
                e2e::STAMP_BYTES
            )));
        }
        let stop = match (common.count, common.duration, kind) {
            (_, Some(_), Kind::Consume) => {
                return Err(usage(
                    "bench consume reads --count records; --duration is for produce and e2e"
                        .to_owned(),
                ));
            }
            (_, Some(d), _) if d.is_zero() => {
                return Err(usage("--duration must be above zero".to_owned()));
            }
            (_, Some(d), _) => Stop::After(d),
            (Some(n), None, _) => Stop::Count(n),
            (None, None, _) => Stop::Count(DEFAULT_COUNT),
        };
        if common.report_schema == ReportSchema::Peer
            && common.acks == AcksArg::None
            && !matches!(kind, Kind::Consume)
        {
            return Err(usage(
                "--report-schema peer compares acknowledged records: use --acks leader or all"
                    .to_owned(),
            ));
        }
        let linger_ms = common.linger_ms.unwrap_or(match kind {
            Kind::E2e { .. } => E2E_DEFAULT_LINGER_MS,
            _ => weir_client::producer::DEFAULT_LINGER.as_millis() as u64,
        });
        let defaults = ProducerConfig::default();
        let producer = ProducerConfig {
            brokers: common.brokers.list(),
            acks: common.acks.into(),
            compression: common.compression.into(),
            linger: Duration::from_millis(linger_ms),
            send_when_idle: common
                .send_when_idle
                .unwrap_or(matches!(kind, Kind::E2e { .. })),
            batch_bytes: common
                .batch_bytes
                .map_or(defaults.batch_bytes, |b| b as usize),
            max_in_flight: common
                .max_in_flight
                .map_or(defaults.max_in_flight, |n| n as usize),
            idempotence: common.idempotence.unwrap_or(defaults.idempotence),
            connect_timeout: common.brokers.connect_timeout,
            request_timeout: common.brokers.timeout,
            tls: common.brokers.tls()?,
            transactional_id: common.transactional_id.clone(),
            ..defaults
        };
        if common.transactional_id.is_some() && !matches!(kind, Kind::Produce) {
            return Err(usage("--transactional-id is for bench produce".to_owned()));
        }
        producer.validate()?;
        Ok(BenchPlan::Records(BenchConfig {
            kind,
            brokers: common.brokers.list(),
            timeouts: common.brokers.timeouts(),
            tls: common.brokers.tls()?,
            topic: common.topic,
            partitions: common.partitions,
            topic_configs: key_value_map(common.topic_config)?,
            record_bytes: common.record_size as usize,
            stop,
            producer,
            per_record: common.per_record,
            transaction_records: common
                .transactional_id
                .is_some()
                .then_some(common.transaction_records),
            chunk_records: common.chunk_records,
            acks: common.acks,
            compression: common.compression,
            format: common.format,
            report_schema: common.report_schema,
        }))
    }
}

/// Default linger of `bench e2e`: latency is what it measures, and a batch that waits 5 ms
/// for company would be most of a 5 ms budget.
const E2E_DEFAULT_LINGER_MS: u64 = 1;

/// Runs a bench scenario and prints its report.
pub async fn run(plan: BenchPlan) -> anyhow::Result<()> {
    match plan {
        BenchPlan::Records(config) => run_records(config).await,
        BenchPlan::Group(bench) => group::run(bench).await,
    }
}

async fn run_records(config: BenchConfig) -> anyhow::Result<()> {
    let admin = Admin::connect_with(
        &config.brokers,
        weir_client::ConnectOptions {
            timeouts: config.timeouts,
            tls: config.tls.clone(),
        },
    )
    .await
    .context("connecting to the broker")?;
    let partitions = ensure_topic(&admin, &config).await?;
    let flush_policy = match config.report_schema {
        ReportSchema::Weir => None,
        ReportSchema::Peer => Some(peer::flush_policy(&admin, &config.topic).await?),
    };
    let report = match config.kind {
        Kind::Produce => produce::run(&config, partitions).await?,
        Kind::Consume => consume::run(&config, &admin, partitions).await?,
        Kind::E2e { rate, warmup } => e2e::run(&config, partitions, rate, warmup).await?,
    };
    match flush_policy {
        None => report.print(config.format),
        Some(policy) => peer::print(&report, &config, &policy),
    }
}

/// Creates the topic unless it exists; returns its partition count.
async fn ensure_topic(admin: &Admin, config: &BenchConfig) -> anyhow::Result<u32> {
    ensure_topic_named(
        admin,
        &config.topic,
        config.partitions,
        &config.topic_configs,
    )
    .await
}

/// Creates `topic` with `partitions` and `configs` unless it exists; returns its
/// partition count (an existing topic is used as it is, with a note on stderr).
pub(crate) async fn ensure_topic_named(
    admin: &Admin,
    topic: &str,
    partitions: u32,
    configs: &HashMap<String, String>,
) -> anyhow::Result<u32> {
    match admin.describe_topic(topic).await {
        Ok(found) => {
            let count = found.partitions.len() as u32;
            if count != partitions {
                eprintln!(
                    "note: topic {topic} exists with {count} partition(s); using it as it is"
                );
            }
            Ok(count)
        }
        Err(ClientError::NotFound(_)) => {
            let created = admin
                .create_topic(topic, partitions, 0, configs.clone())
                .await
                .with_context(|| format!("creating topic {topic}"))?;
            Ok(created.partitions.len() as u32)
        }
        Err(e) => Err(e).with_context(|| format!("looking up topic {topic}")),
    }
}

/// A progress bar on stderr (hidden when stderr is not a terminal), fed from a counter
/// the hot loop bumps, redrawn by its own task.
pub(crate) struct Progress {
    pub(crate) done: Arc<AtomicU64>,
    bar: ProgressBar,
    ticker: tokio::task::JoinHandle<()>,
}

impl Progress {
    /// A bar for `total` records, or a spinner with a count if the total is not known.
    pub(crate) fn start(what: &str, total: Option<u64>) -> Progress {
        let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
        let template = match total {
            Some(_) => "{msg} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} ({per_sec})",
            None => "{msg} [{elapsed_precise}] {spinner} {human_pos} ({per_sec})",
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        bar.set_message(what.to_owned());
        let done = Arc::new(AtomicU64::new(0));
        let ticker = {
            let bar = bar.clone();
            let done = done.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(PROGRESS_INTERVAL);
                loop {
                    tick.tick().await;
                    bar.set_position(done.load(Ordering::Relaxed));
                }
            })
        };
        Progress { done, bar, ticker }
    }

    pub(crate) fn finish(self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}

/// A latency histogram in microseconds.
pub(crate) fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, LATENCY_SIGNIFICANT_DIGITS)
        .expect("the bounds are constants that hdrhistogram accepts")
}

/// What a run measured.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) scenario: &'static str,
    pub(crate) topic: String,
    pub(crate) partitions: u32,
    pub(crate) record_bytes: usize,
    pub(crate) acks: &'static str,
    pub(crate) compression: &'static str,
    /// Target rate (e2e only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rate: Option<u64>,
    /// Records per transaction (produce with `--transactional-id` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) transaction_records: Option<u64>,
    pub(crate) records: u64,
    pub(crate) bytes: u64,
    pub(crate) elapsed_secs: f64,
    pub(crate) records_per_sec: f64,
    pub(crate) mb_per_sec: f64,
    /// What the latency figures measure (null for consume, which has none).
    pub(crate) latency: Option<&'static str>,
    pub(crate) latency_p50_ms: Option<f64>,
    pub(crate) latency_p99_ms: Option<f64>,
    pub(crate) latency_p999_ms: Option<f64>,
    pub(crate) latency_max_ms: Option<f64>,
    /// What only e2e measures (reported with `--report-schema peer`).
    #[serde(skip)]
    pub(crate) e2e: Option<E2eStats>,
}

/// What every scenario hands to [`Report::new`].
pub(crate) struct Measured {
    pub(crate) records: u64,
    pub(crate) bytes: u64,
    pub(crate) elapsed: Duration,
    pub(crate) latency: Option<(&'static str, Histogram<u64>)>,
    pub(crate) e2e: Option<E2eStats>,
}

/// What `bench e2e` measures besides the end-to-end latency.
#[derive(Debug, Clone)]
pub(crate) struct E2eStats {
    pub(crate) warmup: Duration,
    /// Records sent, warm-up included.
    pub(crate) sent: u64,
    /// Distinct records received, warm-up included.
    pub(crate) received: u64,
    /// Records received more than once.
    pub(crate) duplicates: u64,
    /// From each measured record's intended send time to its acknowledgement.
    pub(crate) ack: Histogram<u64>,
    /// How late the generator handed each measured record to the producer.
    pub(crate) send_lag: Histogram<u64>,
}

impl Report {
    pub(crate) fn new(config: &BenchConfig, partitions: u32, measured: Measured) -> Report {
        let secs = measured.elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
        let ms = |us: u64| us as f64 / 1000.0;
        let (latency, hist) = match measured.latency {
            Some((what, hist)) if !hist.is_empty() => (Some(what), Some(hist)),
            _ => (None, None),
        };
        Report {
            scenario: match config.kind {
                Kind::Produce => "produce",
                Kind::Consume => "consume",
                Kind::E2e { .. } => "e2e",
            },
            topic: config.topic.clone(),
            partitions,
            record_bytes: config.record_bytes,
            acks: match config.acks {
                AcksArg::None => "none",
                AcksArg::Leader => "leader",
                AcksArg::All => "all",
            },
            compression: match config.compression {
                CompressionArg::None => "none",
                CompressionArg::Gzip => "gzip",
                CompressionArg::Snappy => "snappy",
                CompressionArg::Lz4 => "lz4",
                CompressionArg::Zstd => "zstd",
            },
            rate: match config.kind {
                Kind::E2e { rate, .. } => Some(rate),
                _ => None,
            },
            transaction_records: config.transaction_records,
            records: measured.records,
            bytes: measured.bytes,
            elapsed_secs: measured.elapsed.as_secs_f64(),
            records_per_sec: measured.records as f64 / secs,
            mb_per_sec: measured.bytes as f64 / BYTES_PER_MB / secs,
            latency,
            latency_p50_ms: hist.as_ref().map(|h| ms(h.value_at_quantile(0.5))),
            latency_p99_ms: hist.as_ref().map(|h| ms(h.value_at_quantile(0.99))),
            latency_p999_ms: hist.as_ref().map(|h| ms(h.value_at_quantile(0.999))),
            latency_max_ms: hist.as_ref().map(|h| ms(h.max())),
            e2e: measured.e2e,
        }
    }

    fn print(&self, format: Format) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        match format {
            Format::Json => {
                serde_json::to_writer(&mut out, self)?;
                writeln!(out)?;
            }
            Format::Text => {
                writeln!(
                    out,
                    "{}: {} records of {} B to {} ({} partition(s), acks={}, compression={}{})",
                    self.scenario,
                    self.records,
                    self.record_bytes,
                    self.topic,
                    self.partitions,
                    self.acks,
                    self.compression,
                    self.rate
                        .map(|r| format!(", rate={r}/s"))
                        .or(self
                            .transaction_records
                            .map(|n| format!(", transactions of {n} records")))
                        .unwrap_or_default()
                )?;
                writeln!(
                    out,
                    "  {:.0} records/s, {:.1} MB/s ({:.2} s)",
                    self.records_per_sec, self.mb_per_sec, self.elapsed_secs
                )?;
                if let (Some(what), Some(p50), Some(p99), Some(p999), Some(max)) = (
                    self.latency,
                    self.latency_p50_ms,
                    self.latency_p99_ms,
                    self.latency_p999_ms,
                    self.latency_max_ms,
                ) {
                    writeln!(
                        out,
                        "  latency ({what}): p50 {p50:.3} ms, p99 {p99:.3} ms, p99.9 {p999:.3} ms, max {max:.3} ms"
                    )?;
                }
            }
        }
        out.flush()?;
        Ok(())
    }
}

/// Record values: random bytes (so compression has nothing to win), one buffer sliced
/// per record without copying.
pub(crate) fn random_values(record_bytes: usize) -> bytes::Bytes {
    // xorshift64*: enough to defeat compression; no dependency for it.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = Vec::with_capacity(record_bytes);
    while buf.len() < record_bytes {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let word = state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        let take = word.len().min(record_bytes - buf.len());
        buf.extend_from_slice(&word[..take]);
    }
    bytes::Bytes::from(buf)
}

/// Parses `100`, `1KiB`, `4MiB`, `1kB`, `1MB`.
fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size: use bytes, or e.g. 1KiB, 4MiB"))?;
    let multiplier = match unit.trim() {
        "" | "B" | "b" => 1,
        "KiB" | "K" | "k" => 1024,
        "MiB" | "M" | "m" => 1024 * 1024,
        "kB" | "KB" => 1000,
        "MB" => 1_000_000,
        other => {
            return Err(format!(
                "unknown size unit {other:?}: use B, KiB, MiB, kB or MB"
            ));
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert_eq!(parse_size("2MiB"), Ok(2 * 1024 * 1024));
        assert_eq!(parse_size("1kB"), Ok(1000));
        assert!(parse_size("1 parsec").is_err());
        assert!(parse_size("KiB").is_err());
    }

    #[test]
    fn random_values_have_the_size_asked_and_do_not_compress() {
        let v = random_values(1000);
        assert_eq!(v.len(), 1000);
        let distinct: std::collections::HashSet<u8> = v.iter().copied().collect();
        assert!(distinct.len() > 200, "{}", distinct.len());
    }
}
