//! `latency`: end-to-end latency at a fixed rate, free of coordinated omission.
//!
//! Method: record `i` is due at `i / rate` seconds after the start, and carries that
//! intended time and its sequence number in its first 16 bytes. A pacer thread wakes at
//! each record's due time, or every [`PACER_TICK`] when records are closer together than
//! that, and tells the producer how many are due; the producer sends what is due in
//! batches (at most `--batch-records`, at most `--in-flight` batches unacknowledged). A
//! consumer, subscribed before the first send, takes each record's latency as its
//! arrival time minus its *intended* send time: a producer that falls behind (a full
//! window, a slow ack, the pacer's tick) makes the records it delays late, as a real
//! client's would be, instead of quietly sending fewer. The generator's own lateness is
//! reported too (`send_lag_p99_ms`), as is each record's ack latency, measured the same way.
//!
//! Records of the first `--warmup-secs` are sent and checked but not measured. Every
//! record must arrive exactly once within [`DRAIN_TIMEOUT`] of the last ack; a lost or
//! duplicated record is reported (and makes the run fail).
//!
//! The rate is `--rate` records/s, or `--rate-fraction` of the records/s that `produce`
//! measured for the same peer, record size and durability (`--rate-from` a results file).
//! The bench script runs every system at one `--rate`, so the percentiles compare like
//! with like, and probes each system at rising rates for the highest it holds.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use bytes::{Bytes, BytesMut};
use clap::Args;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::sync::Notify;

use crate::output::{Progress, emit, grouped, millis, progress, record_size};
use crate::payload::{PayloadPool, STAMP_BYTES, read_stamp, stamp};
use crate::peer::{MAX_RECORDS_PER_POLL, Peer, Producer, Subscription};
use crate::produce::WindowArgs;
use crate::result::{BenchResult, Durability, LatencyStats, MB, SCHEMA, Workload, read_results};
use crate::shared_args::{ConnectArgs, parse_record_bytes, parse_stream_name};

/// Most records one run may send (warm-up included).
const MAX_RECORDS: u64 = 50_000_000;
/// Highest rate, records per second.
const MAX_RATE: f64 = 5_000_000.0;
/// Longest measured part of a run.
const MAX_DURATION_SECS: u64 = 600;
/// Longest warm-up.
const MAX_WARMUP_SECS: u64 = 60;
/// Shortest sleep of the pacer: below this, sleeping costs more than it saves.
const PACER_TICK: Duration = Duration::from_micros(100);
/// How long the consumer may take, after the last ack, to receive every record.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one poll of the consumer waits for records.
const POLL_WAIT: Duration = Duration::from_millis(100);
/// Latencies above this are recorded as this (nanoseconds).
const MAX_TRACKED_NS: u64 = 60_000_000_000;
/// Precision of the latency histograms.
const SIGNIFICANT_DIGITS: u8 = 3;
/// Time for setting up streams and connections, on top of the run itself, that
/// `--timeout-secs` must leave.
const SETUP_ALLOWANCE: Duration = Duration::from_secs(20);
const NANOS_PER_SEC: f64 = 1e9;
const NANOS_PER_MILLI: f64 = 1e6;

/// Options of `latency`.
#[derive(Debug, Clone, Args)]
pub struct LatencyArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,

    /// Payload bytes of each record (at least 16: the stamp).
    #[arg(long, default_value = "1KiB", value_parser = parse_record_bytes)]
    pub record_bytes: u64,

    /// What an ack waits for; each peer's nearest equivalent.
    #[arg(long, value_enum, default_value_t = Durability::Durable)]
    pub durability: Durability,

    /// Records per second to send. Takes precedence over --rate-from.
    #[arg(long)]
    pub rate: Option<f64>,

    /// A file of result lines (`--format json` output): the rate is --rate-fraction of the
    /// records/s of the last `produce` result in it for this peer, record size and
    /// durability.
    #[arg(long)]
    pub rate_from: Option<PathBuf>,

    /// Share of the measured produce rate to run at, with --rate-from.
    #[arg(long, default_value_t = 0.5)]
    pub rate_fraction: f64,

    /// Seconds measured, after the warm-up.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=MAX_DURATION_SECS))]
    pub duration_secs: u64,

    /// Seconds sent first and not measured (connections, caches, JIT, first files).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=MAX_WARMUP_SECS))]
    pub warmup_secs: u64,

    /// Stream to use (recreated empty).
    #[arg(long, default_value = "weir-bench-latency", value_parser = parse_stream_name)]
    pub stream: String,

    /// Records asked for per fetch (JetStream pull batch, Redis XREAD COUNT).
    #[arg(long, default_value_t = 8192, value_parser = clap::value_parser!(u64).range(1..=MAX_RECORDS_PER_POLL as u64))]
    pub fetch_records: u64,

    /// Most records sent together at one tick, and most batches unacknowledged.
    #[command(flatten)]
    pub window: WindowArgs,
}

impl LatencyArgs {
    /// The rate to run at, records per second, checked.
    fn rate(&self) -> anyhow::Result<f64> {
        let rate = match (self.rate, &self.rate_from) {
            (Some(rate), _) => rate,
            (None, Some(path)) => {
                ensure!(
                    self.rate_fraction > 0.0 && self.rate_fraction <= 1.0,
                    "--rate-fraction must be in (0, 1], not {}",
                    self.rate_fraction
                );
                let system = self.connect.system();
                let produced = read_results(path)?
                    .into_iter()
                    .rfind(|r| {
                        r.system == system
                            && r.workload == Workload::Produce
                            && r.record_bytes == self.record_bytes
                            && r.durability() == Some(self.durability)
                    })
                    .with_context(|| {
                        format!(
                            "{} has no {system} produce result for {} records with acks {}: \
                             run `produce` first, or give --rate",
                            path.display(),
                            record_size(self.record_bytes),
                            self.durability.as_str()
                        )
                    })?;
                produced.records_per_sec * self.rate_fraction
            }
            (None, None) => bail!("give the rate: --rate N, or --rate-from RESULTS_FILE"),
        };
        ensure!(
            rate.is_finite() && rate > 0.0 && rate <= MAX_RATE,
            "the rate must be above 0 and at most {MAX_RATE} records/s, not {rate}"
        );
        Ok(rate)
    }
}

/// When each record is due.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    start: Instant,
    rate: f64,
}

impl Schedule {
    /// Nanoseconds after the start that record `seq` is due.
    fn intended_ns(&self, seq: u64) -> u64 {
        (seq as f64 * NANOS_PER_SEC / self.rate) as u64
    }

    /// How many records are due `elapsed_ns` after the start.
    fn due_at(&self, elapsed_ns: u64) -> u64 {
        (elapsed_ns as f64 * self.rate / NANOS_PER_SEC) as u64 + 1
    }

    fn elapsed_ns(&self) -> u64 {
        // u64 nanoseconds last 584 years.
        self.start.elapsed().as_nanos() as u64
    }
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(
        1,
        MAX_TRACKED_NS,
        SIGNIFICANT_DIGITS,
    )?)
}

fn quantile_ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / NANOS_PER_MILLI
}

/// Sets a flag when dropped: stops the consumer task however the run ends.
#[derive(Debug)]
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// What the pacer thread and the producer share.
#[derive(Debug, Default)]
struct PacerShared {
    /// Records due so far.
    due: AtomicU64,
    notify: Notify,
    stop: AtomicBool,
}

/// A thread that publishes how many records are due, waking at each record's due time
/// or every [`PACER_TICK`], whichever is later. Tokio's timer has a 1 ms granularity,
/// which would add up to a millisecond to every measured latency; a thread's sleep is
/// good to some tens of microseconds.
#[derive(Debug)]
struct Pacer {
    shared: Arc<PacerShared>,
    thread: Option<JoinHandle<()>>,
}

impl Pacer {
    fn start(schedule: Schedule, total: u64) -> anyhow::Result<Pacer> {
        let shared = Arc::new(PacerShared::default());
        let theirs = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name("pacer".to_owned())
            .spawn(move || {
                // Ends when every record is due (total / rate seconds) or when stopped.
                while !theirs.stop.load(Ordering::Acquire) {
                    let now_ns = schedule.elapsed_ns();
                    let due = schedule.due_at(now_ns).min(total);
                    theirs.due.store(due, Ordering::Release);
                    theirs.notify.notify_one();
                    if due == total {
                        return;
                    }
                    let next_ns = schedule.intended_ns(due);
                    thread::sleep(
                        Duration::from_nanos(next_ns.saturating_sub(now_ns)).max(PACER_TICK),
                    );
                }
            })
            .context("starting the pacer thread")?;
        Ok(Pacer {
            shared,
            thread: Some(thread),
        })
    }

    fn due(&self) -> u64 {
        self.shared.due.load(Ordering::Acquire)
    }
}

impl Drop for Pacer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            // It sleeps at most until the next record is due; a panic there is reported
            // by the thread itself.
            let _ = thread.join();
        }
    }
}

/// What the producer side measured.
#[derive(Debug)]
struct Sent {
    acks: Histogram<u64>,
    send_lag: Histogram<u64>,
    seconds: f64,
}

/// What the consumer side measured.
#[derive(Debug)]
struct Received {
    end_to_end: Histogram<u64>,
    received: u64,
    duplicates: u64,
    foreign: u64,
}

pub async fn run<P: Peer>(mut peer: P, args: LatencyArgs) -> anyhow::Result<()> {
    let system = args.connect.system();
    let rate = args.rate()?;
    ensure!(
        args.record_bytes >= STAMP_BYTES as u64,
        "latency records carry a {STAMP_BYTES}-byte stamp: --record-bytes must be at least that"
    );
    let run_secs = args.warmup_secs + args.duration_secs;
    ensure!(
        args.connect.timeout() >= Duration::from_secs(run_secs) + DRAIN_TIMEOUT + SETUP_ALLOWANCE,
        "--timeout-secs {} is too short for {run_secs} s of load plus draining",
        args.connect.timeout_secs
    );
    let total = (run_secs as f64 * rate).ceil() as u64;
    ensure!(
        (1..=MAX_RECORDS).contains(&total),
        "{run_secs} s at {rate:.0} records/s is {total} records; at most {MAX_RECORDS} may be sent"
    );

    let acks = peer.set_durability(args.durability).await?;
    peer.recreate_stream(&args.stream).await?;
    // Bounded by MAX_RECORDS_PER_POLL when parsed.
    let subscription = peer
        .subscribe(&args.stream, args.fetch_records as usize)
        .await?;
    let producer = peer
        .producer(&args.stream, args.window.window_records())
        .await?;
    progress!(
        "{system} latency: {} records/s of {} for {} s (+{} s warm-up), acks {}",
        grouped(rate.round() as u64),
        record_size(args.record_bytes),
        args.duration_secs,
        args.warmup_secs,
        args.durability.as_str()
    );

    let schedule = Schedule {
        start: Instant::now(),
        rate,
    };
    let warmup_ns = args.warmup_secs * NANOS_PER_SEC as u64;
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_consumer = StopOnDrop(Arc::clone(&stop));
    let mut consumer = tokio::spawn(receive(
        subscription,
        schedule,
        total,
        warmup_ns,
        Arc::clone(&stop),
    ));
    let pacer = Pacer::start(schedule, total)?;
    // Bounded by MAX_RECORD_BYTES when parsed.
    let pool = PayloadPool::new(args.record_bytes as usize);
    let sent = send(
        &producer,
        &pacer,
        schedule,
        total,
        &pool,
        args.window,
        warmup_ns,
    )
    .await?;
    drop(pacer);

    let received = match tokio::time::timeout(DRAIN_TIMEOUT, &mut consumer).await {
        Ok(joined) => joined.context("the consumer task")??,
        Err(_elapsed) => {
            stop.store(true, Ordering::Release);
            consumer.await.context("the consumer task")??
        }
    };
    let lost = total - received.received;
    if received.foreign > 0 {
        progress!(
            "{system} latency: {} records without a valid stamp were ignored",
            received.foreign
        );
    }
    ensure!(
        !received.end_to_end.is_empty(),
        "no record arrived after the warm-up: nothing to report"
    );

    let h = &received.end_to_end;
    let stats = LatencyStats {
        rate_per_sec: rate,
        measured_secs: args.duration_secs as f64,
        warmup_secs: args.warmup_secs as f64,
        sent: total,
        received: received.received,
        duplicates: received.duplicates,
        p50_ms: quantile_ms(h, 0.50),
        p99_ms: quantile_ms(h, 0.99),
        p999_ms: quantile_ms(h, 0.999),
        max_ms: h.max() as f64 / NANOS_PER_MILLI,
        ack_p50_ms: (!sent.acks.is_empty()).then(|| quantile_ms(&sent.acks, 0.50)),
        ack_p99_ms: (!sent.acks.is_empty()).then(|| quantile_ms(&sent.acks, 0.99)),
        send_lag_p99_ms: Some(quantile_ms(&sent.send_lag, 0.99)),
    };
    let records_per_sec = total as f64 / sent.seconds;
    let mut settings = args.window.settings();
    settings.insert("stream".to_owned(), json!(args.stream));
    settings.insert("fetch_records".to_owned(), json!(args.fetch_records));
    settings.insert(
        "pacer_tick_us".to_owned(),
        json!(PACER_TICK.as_micros() as u64),
    );
    if args.rate.is_none() {
        settings.insert(
            "rate_fraction_of_produce".to_owned(),
            json!(args.rate_fraction),
        );
    }
    let result = BenchResult {
        schema: SCHEMA.to_owned(),
        system: system.to_owned(),
        server: peer.server(),
        client: peer.client(),
        workload: Workload::Latency,
        record_bytes: args.record_bytes,
        records: total,
        acks: Some(acks),
        seconds: sent.seconds,
        records_per_sec,
        mb_per_sec: records_per_sec * args.record_bytes as f64 / MB,
        latency: Some(stats.clone()),
        settings,
    };
    let text = format!(
        "{system} latency at {} records/s of {}, acks {}: end to end p50 {} ms, p99 {} ms, \
         p99.9 {} ms, max {} ms (ack p99 {} ms; generator lag p99 {} ms)\n  \
         acks: {}\n",
        grouped(rate.round() as u64),
        record_size(args.record_bytes),
        args.durability.as_str(),
        millis(stats.p50_ms),
        millis(stats.p99_ms),
        millis(stats.p999_ms),
        millis(stats.max_ms),
        stats.ack_p99_ms.map(millis).unwrap_or_default(),
        stats.send_lag_p99_ms.map(millis).unwrap_or_default(),
        result
            .acks
            .as_ref()
            .map(|a| a.meaning.as_str())
            .unwrap_or_default(),
    );
    emit(args.connect.format, &text, &result)?;
    ensure!(
        lost == 0 && received.duplicates == 0,
        "{system} latency: {lost} of {total} records did not arrive within {} s of the last ack, \
         {} arrived more than once",
        DRAIN_TIMEOUT.as_secs(),
        received.duplicates
    );
    Ok(())
}

/// Sends records `0..total` as the pacer makes them due; returns once all are acknowledged.
async fn send<Pr: Producer>(
    producer: &Pr,
    pacer: &Pacer,
    schedule: Schedule,
    total: u64,
    pool: &PayloadPool,
    window: WindowArgs,
    warmup_ns: u64,
) -> anyhow::Result<Sent> {
    let mut acks = histogram()?;
    let mut send_lag = histogram()?;
    let mut pending = FuturesUnordered::new();
    let mut progress = Progress::new("latency: records acked".to_owned(), total);
    let mut sent = 0u64;
    let mut acked = 0u64;
    while acked < total {
        let due = pacer.due();
        while sent < due && pending.len() < window.in_flight() {
            let n = (due - sent).min(window.batch_records);
            send_lag.saturating_record(
                schedule
                    .elapsed_ns()
                    .saturating_sub(schedule.intended_ns(sent)),
            );
            let records: Vec<Bytes> = (sent..sent + n)
                .map(|seq| {
                    let mut payload = BytesMut::from(&pool.get(seq)[..]);
                    stamp(&mut payload, seq, schedule.intended_ns(seq));
                    payload.freeze()
                })
                .collect();
            let append = producer.append(records);
            let first = sent;
            pending.push(async move { append.await.map(|()| first..first + n) });
            sent += n;
        }
        tokio::select! {
            done = pending.next(), if !pending.is_empty() => {
                let batch = done.expect("the set is not empty")?;
                let now_ns = schedule.elapsed_ns();
                acked += batch.end - batch.start;
                for seq in batch {
                    let intended = schedule.intended_ns(seq);
                    if intended >= warmup_ns {
                        acks.saturating_record(now_ns.saturating_sub(intended));
                    }
                }
                progress.update(acked);
            }
            () = pacer.shared.notify.notified(), if sent < total => {}
        }
    }
    Ok(Sent {
        acks,
        send_lag,
        seconds: schedule.start.elapsed().as_secs_f64(),
    })
}

/// Receives records until all `total` arrived (or `stop`), recording each one's latency
/// from its intended send time.
async fn receive<S: Subscription>(
    mut subscription: S,
    schedule: Schedule,
    total: u64,
    warmup_ns: u64,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Received> {
    let mut end_to_end = histogram()?;
    // One bit per record: which arrived.
    let words = usize::try_from(total.div_ceil(64)).context("too many records")?;
    let mut seen = vec![0u64; words];
    let mut received = 0u64;
    let mut duplicates = 0u64;
    let mut foreign = 0u64;
    while received < total && !stop.load(Ordering::Acquire) {
        subscription
            .next_batch(POLL_WAIT, |payload| {
                let now_ns = schedule.elapsed_ns();
                let Some((seq, intended_ns)) = read_stamp(payload).filter(|(seq, _)| *seq < total)
                else {
                    foreign += 1;
                    return;
                };
                // seq < total, whose word count fits usize.
                let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
                if seen[word] & bit != 0 {
                    duplicates += 1;
                    return;
                }
                seen[word] |= bit;
                received += 1;
                if intended_ns >= warmup_ns {
                    end_to_end.saturating_record(now_ns.saturating_sub(intended_ns));
                }
            })
            .await?;
    }
    Ok(Received {
        end_to_end,
        received,
        duplicates,
        foreign,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_consistent() {
        let s = Schedule {
            start: Instant::now(),
            rate: 1000.0,
        };
        assert_eq!(s.intended_ns(0), 0);
        assert_eq!(s.intended_ns(1), 1_000_000);
        assert_eq!(s.due_at(0), 1);
        assert_eq!(s.due_at(999_999), 1);
        assert_eq!(s.due_at(1_000_000), 2);
        // Every record counted as due is due.
        for seq in 0..5000 {
            assert!(s.due_at(s.intended_ns(seq)) > seq);
        }
    }

    #[test]
    fn the_pacer_makes_every_record_due_then_stops() {
        let schedule = Schedule {
            start: Instant::now(),
            rate: 100_000.0,
        };
        let pacer = Pacer::start(schedule, 1000).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while pacer.due() < 1000 {
            assert!(
                Instant::now() < deadline,
                "the pacer stalled at {}",
                pacer.due()
            );
            thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(pacer.due(), 1000);
    }
}
