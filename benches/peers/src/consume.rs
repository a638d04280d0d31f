//! `consume`: how fast a consumer reads back a stream from its first record.
//!
//! Method: the stream `produce` left behind is read from the start until `--records`
//! records have arrived; the clock runs from creating the consumer to the last record.
//! Each peer's client keeps its own reads in flight (JetStream: pull requests of
//! `--fetch-records`; RabbitMQ: the client's chunk credits) or asks for large batches
//! (Redis: XREAD COUNT `--fetch-records`, one call after another: the next id is only
//! known from the previous reply, and each reply carries megabytes). The data is in the
//! servers' memory or the OS page cache: this measures serving reads, not the disk.
//!
//! If the stream is missing or too short (where the peer can say), or with `--fill`, it
//! is first recreated and filled, untimed, with acks at `leader`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;
use serde_json::json;

use crate::output::{Progress, emit, grouped, progress, record_size};
use crate::payload::PayloadPool;
use crate::peer::{MAX_RECORDS_PER_POLL, Peer, Subscription};
use crate::produce::{WindowArgs, produce_all};
use crate::result::{BenchResult, Durability, MB, SCHEMA, Workload};
use crate::shared_args::{ConnectArgs, default_stream, parse_record_bytes, parse_stream_name};

/// Most records one run may read.
const MAX_RECORDS: u64 = 100_000_000;
/// How long one poll of the consumer waits for records.
const POLL_WAIT: Duration = Duration::from_millis(200);
/// A consumer that receives nothing for this long has read all there is.
const IDLE_LIMIT: Duration = Duration::from_secs(10);

/// Options of `consume`.
#[derive(Debug, Clone, Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,

    /// Records to read back.
    #[arg(long, default_value_t = 500_000, value_parser = clap::value_parser!(u64).range(1..=MAX_RECORDS))]
    pub records: u64,

    /// Payload bytes of each record: picks the default stream, and sizes the records when
    /// filling it.
    #[arg(long, default_value = "1KiB", value_parser = parse_record_bytes)]
    pub record_bytes: u64,

    /// Stream to read. Default: weir-bench-<record bytes>b, the one `produce` writes.
    #[arg(long, value_parser = parse_stream_name)]
    pub stream: Option<String>,

    /// Records asked for per fetch (JetStream pull batch, Redis XREAD COUNT; RabbitMQ's
    /// client sizes its own).
    #[arg(long, default_value_t = 8192, value_parser = clap::value_parser!(u64).range(1..=MAX_RECORDS_PER_POLL as u64))]
    pub fetch_records: u64,

    /// Recreate and fill the stream first even if it already holds enough records.
    #[arg(long)]
    pub fill: bool,

    /// How the stream is filled, when it is.
    #[command(flatten)]
    pub window: WindowArgs,
}

pub async fn run<P: Peer>(mut peer: P, args: ConsumeArgs) -> anyhow::Result<()> {
    let system = args.connect.system();
    let stream = args
        .stream
        .clone()
        .unwrap_or_else(|| default_stream(args.record_bytes));
    let len = peer.stream_len(&stream).await?;
    let short = len.is_some_and(|len| len < args.records);
    let filled = args.fill || short;
    if filled {
        progress!(
            "{system} consume: filling {stream} with {} records of {} (untimed)",
            grouped(args.records),
            record_size(args.record_bytes)
        );
        peer.set_durability(Durability::Leader).await?;
        peer.recreate_stream(&stream).await?;
        let producer = peer.producer(&stream, args.window.window_records()).await?;
        // Bounded by MAX_RECORD_BYTES when parsed.
        let pool = PayloadPool::new(args.record_bytes as usize);
        let mut progress = Progress::new(format!("{system} fill: records acked"), args.records);
        produce_all(&producer, &pool, args.records, args.window, &mut progress).await?;
    }

    progress!(
        "{system} consume: reading {} records from {stream}",
        grouped(args.records)
    );
    // Bounded by MAX_RECORDS_PER_POLL when parsed.
    let fetch = args.fetch_records as usize;
    let mut progress = Progress::new(format!("{system} consume: records read"), args.records);
    let start = Instant::now();
    let mut subscription = peer.subscribe(&stream, fetch).await?;
    let mut received = 0u64;
    let mut bytes = 0u64;
    let mut last_arrival = Instant::now();
    while received < args.records {
        let wanted = args.records - received;
        let mut taken = 0u64;
        let n = subscription
            .next_batch(POLL_WAIT, |payload| {
                // A longer stream is read only as far as asked.
                if taken < wanted {
                    taken += 1;
                    bytes += payload.len() as u64;
                }
            })
            .await?;
        received += taken;
        if n > 0 {
            last_arrival = Instant::now();
        } else if last_arrival.elapsed() >= IDLE_LIMIT {
            bail!(
                "{stream} yielded {received} of {} records and then nothing for {} s: \
                 produce them first (`produce --record-bytes {}`) or pass --fill",
                args.records,
                IDLE_LIMIT.as_secs(),
                args.record_bytes
            );
        }
        progress.update(received);
    }
    let seconds = start.elapsed().as_secs_f64();
    let expected_bytes = args.records * args.record_bytes;
    if bytes != expected_bytes {
        bail!(
            "read {bytes} payload bytes from {stream}, expected {expected_bytes}: were its records {} each?",
            record_size(args.record_bytes)
        );
    }

    let records_per_sec = received as f64 / seconds;
    // The window only matters when this run filled the stream.
    let mut settings = if filled {
        args.window.settings()
    } else {
        BTreeMap::new()
    };
    settings.insert("stream".to_owned(), json!(stream));
    settings.insert("fetch_records".to_owned(), json!(args.fetch_records));
    settings.insert("filled_first".to_owned(), json!(filled));
    let result = BenchResult {
        schema: SCHEMA.to_owned(),
        system: system.to_owned(),
        server: peer.server(),
        client: peer.client(),
        workload: Workload::Consume,
        record_bytes: args.record_bytes,
        records: received,
        acks: None,
        seconds,
        records_per_sec,
        mb_per_sec: bytes as f64 / seconds / MB,
        latency: None,
        settings,
    };
    let text = format!(
        "{system} consume: {} records of {} in {seconds:.2} s: {} records/s, {:.1} MB/s\n",
        grouped(result.records),
        record_size(result.record_bytes),
        grouped(result.records_per_sec.round() as u64),
        result.mb_per_sec,
    );
    emit(args.connect.format, &text, &result)
}
