//! `weir-wire-bench`: produce and consume through the broker's experimental binary TCP
//! data path (`weir serve --experimental-wire-listen`), to compare with the same work
//! through gRPC (`weir bench`) and see how much of it is gRPC's.
//!
//! - `produce`: records of `--record-size` bytes (value only, no key) built into batches
//!   of about `--batch-bytes` with `RecordBatchBuilder`, as the real producer builds them,
//!   and sent over one connection with up to `--in-flight` PRODUCEs unanswered. A writer
//!   thread builds and sends; a reader thread checks each answer (in order, OK, base
//!   offsets contiguous).
//! - `consume`: FETCHes from offset 0 over one connection; the next FETCH is sent as soon
//!   as an answer's head gives its `next_offset`, before the answer's batches are read
//!   (fetch-ahead), and a decoder thread decodes every batch with `decode_records` (so the
//!   CRC check is paid), counts the records and checks that offsets are contiguous.
//!
//! The topic must exist (`weir topic create`). One JSON line goes to stdout, in the
//! `weir-peer-bench/1` schema of `weir bench --report-schema peer` (system
//! `weir-wire`), with the bench process's CPU seconds in `settings`. Rates are decimal:
//! MB = 10^6 bytes of record values.

use std::collections::BTreeMap;
use std::io::{self, IoSlice, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use bytes::{Buf, BufMut, Bytes};
use clap::{Parser, Subcommand, ValueEnum};
use serde::Serialize;
use serde_json::{Value, json};
use weir_benches::byte_size::ByteSize;
use weir_benches::workload::{DEFAULT_SEED, Rng, payload};
use weir_log::batch::{LOG_OVERHEAD, framed_len};
use weir_log::{Compression, RecordBatchBuilder, decode_records};

/// The result schema (`benches/peers/src/result.rs`).
const SCHEMA: &str = "weir-peer-bench/1";
const MB: f64 = 1e6;
const KIND_PRODUCE: u8 = 1;
const KIND_FETCH: u8 = 2;
const KIND_PRODUCE_RESPONSE: u8 = 0x81;
const KIND_FETCH_RESPONSE: u8 = 0x82;
const KIND_ERROR: u8 = 0xFF;
/// Bytes of a frame's length prefix, kind and correlation id.
const FRAME_HEAD_BYTES: usize = 4 + 1 + 8;
/// Largest answer frame read (a fetch answer may pass `--max-bytes` by one batch).
const MAX_ANSWER_BYTES: usize = 80 * 1024 * 1024;
/// Bytes of distinct record values the producer cycles through.
const VALUE_POOL_BYTES: usize = 4 * 1024 * 1024;
/// Produce timeout sent with every PRODUCE.
const PRODUCE_TIMEOUT_MS: u32 = 30_000;
/// Decoded fetch answers waiting for the decoder thread.
const DECODE_QUEUE: usize = 4;

#[derive(Debug, Parser)]
#[command(
    name = "weir-wire-bench",
    about = "Produce and consume over Weir's experimental binary TCP data path"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Produce(ProduceArgs),
    Consume(ConsumeArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AcksArg {
    Leader,
    All,
}

#[derive(Debug, clap::Args)]
struct ProduceArgs {
    /// The broker's --experimental-wire-listen address.
    #[arg(long)]
    addr: String,
    #[arg(long)]
    topic: String,
    #[arg(long, default_value_t = 0)]
    partition: u32,
    /// Bytes of each record's value.
    #[arg(long, default_value = "1KiB")]
    record_size: ByteSize,
    /// Records to send.
    #[arg(long)]
    count: u64,
    /// Target size of a batch (one PRODUCE each).
    #[arg(long, default_value = "256KiB")]
    batch_bytes: ByteSize,
    /// PRODUCEs sent and not yet answered, at most.
    #[arg(long, default_value_t = 8)]
    in_flight: usize,
    #[arg(long, value_enum, default_value = "leader")]
    acks: AcksArg,
}

#[derive(Debug, clap::Args)]
struct ConsumeArgs {
    #[arg(long)]
    addr: String,
    #[arg(long)]
    topic: String,
    #[arg(long, default_value_t = 0)]
    partition: u32,
    /// Records to read, from offset 0.
    #[arg(long)]
    count: u64,
    /// `max_bytes` of each FETCH.
    #[arg(long, default_value = "1MiB")]
    max_bytes: ByteSize,
}

/// One `weir-peer-bench/1` line.
#[derive(Debug, Serialize)]
struct Line {
    schema: &'static str,
    system: &'static str,
    server: String,
    client: String,
    workload: &'static str,
    record_bytes: u64,
    records: u64,
    acks: Option<Value>,
    seconds: f64,
    records_per_sec: f64,
    mb_per_sec: f64,
    latency: Option<Value>,
    settings: BTreeMap<&'static str, Value>,
}

fn main() -> anyhow::Result<()> {
    let line = match Cli::parse().command {
        Command::Produce(args) => produce(args)?,
        Command::Consume(args) => consume(args)?,
    };
    println!("{}", serde_json::to_string(&line)?);
    Ok(())
}

fn connect(addr: &str) -> anyhow::Result<TcpStream> {
    let stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// This process's (user, system) CPU seconds so far.
fn cpu_seconds() -> (f64, f64) {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes the struct we own.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } != 0 {
        return (f64::NAN, f64::NAN);
    }
    // SAFETY: zeroed, then filled by a successful getrusage.
    let usage = unsafe { usage.assume_init() };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(usage.ru_utime), secs(usage.ru_stime))
}

/// Writes `head` then `body` with vectored writes until both are sent.
fn write_two(w: &mut TcpStream, mut head: &[u8], mut body: &[u8]) -> io::Result<()> {
    while !head.is_empty() || !body.is_empty() {
        let n = w.write_vectored(&[IoSlice::new(head), IoSlice::new(body)])?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let from_head = n.min(head.len());
        head = &head[from_head..];
        body = &body[n - from_head..];
    }
    Ok(())
}

/// Reads one answer frame's kind, correlation id and the rest of it.
fn read_frame(r: &mut TcpStream, expect: u8, id: u64) -> anyhow::Result<Bytes> {
    let mut head = [0; FRAME_HEAD_BYTES];
    r.read_exact(&mut head).context("reading an answer")?;
    let mut h = &head[..];
    let length = h.get_u32() as usize;
    let kind = h.get_u8();
    let got = h.get_u64();
    ensure!(
        (9..=MAX_ANSWER_BYTES).contains(&length),
        "answer frame length {length} out of range"
    );
    let mut rest = vec![0; length - 9];
    r.read_exact(&mut rest).context("reading an answer")?;
    let mut rest = Bytes::from(rest);
    if kind == KIND_ERROR {
        let code = rest.try_get_u32().unwrap_or(u32::MAX);
        bail!(
            "the broker refused a frame: code {code}: {}",
            message(&mut rest)
        );
    }
    ensure!(
        kind == expect && got == id,
        "expected answer kind {expect:#x} to {id}, got kind {kind:#x} to {got}"
    );
    Ok(rest)
}

fn message(b: &mut Bytes) -> String {
    let n = b.try_get_u16().unwrap_or(0) as usize;
    String::from_utf8_lossy(&b.split_to(n.min(b.len()))).into_owned()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn produce(args: ProduceArgs) -> anyhow::Result<Line> {
    ensure!(args.in_flight >= 1, "--in-flight must be at least 1");
    ensure!(args.count >= 1, "--count must be at least 1");
    let record_bytes = args.record_size.as_usize();
    let batch_bytes = args.batch_bytes.as_usize();
    let mut rng = Rng::new(DEFAULT_SEED);
    let pool = payload(&mut rng, VALUE_POOL_BYTES.max(record_bytes));
    let stream = connect(&args.addr)?;
    let mut writer = stream.try_clone()?;
    let mut reader = stream;
    // One slot per request in flight: the reader takes a request's record count when it
    // waits for its answer, so at most `in_flight` are unanswered.
    let (tx, rx) = mpsc::sync_channel::<(u64, u64)>(args.in_flight - 1);
    let acks = match args.acks {
        AcksArg::Leader => 1u8,
        AcksArg::All => 2,
    };
    let (cpu_user0, cpu_sys0) = cpu_seconds();
    let started = Instant::now();
    let answers = thread::spawn(move || -> anyhow::Result<(u64, u64, Duration)> {
        let (mut records, mut requests, mut next_base) = (0u64, 0u64, None);
        while let Ok((id, count)) = rx.recv() {
            let mut b = read_frame(&mut reader, KIND_PRODUCE_RESPONSE, id)?;
            let code = b.try_get_u32().context("short answer")?;
            let base = b.try_get_i64().context("short answer")?;
            ensure!(
                code == 0,
                "PRODUCE {id} failed: code {code}: {}",
                message(&mut b)
            );
            if let Some(expected) = next_base {
                ensure!(
                    base == expected,
                    "PRODUCE {id}: base offset {base}, expected {expected}"
                );
            }
            next_base = Some(base + count as i64);
            records += count;
            requests += 1;
        }
        Ok((records, requests, started.elapsed()))
    });
    let mut sent = 0u64;
    let mut id = 0u64;
    let mut position = 0;
    let mut head = Vec::with_capacity(64);
    let mut buffer = Vec::with_capacity(batch_bytes + record_bytes + 128);
    let sending = (|| -> anyhow::Result<()> {
        while sent < args.count {
            let mut builder =
                RecordBatchBuilder::with_buffer(Compression::None, std::mem::take(&mut buffer));
            let timestamp = now_ms();
            let mut last = 0;
            while sent + (builder.len() as u64) < args.count {
                let before = builder.estimated_size();
                if !builder.is_empty() && before + last > batch_bytes {
                    break;
                }
                if position + record_bytes > pool.len() {
                    position = 0;
                }
                builder.try_push_view(weir_log::batch::RecordView {
                    key: None,
                    value: Some(&pool[position..position + record_bytes]),
                    headers: &[],
                    timestamp,
                })?;
                position += record_bytes;
                last = builder.estimated_size() - before;
            }
            let count = builder.len() as u64;
            let batch = builder.build()?;
            head.clear();
            let body_len = 1 + 4 + 2 + args.topic.len() + 4 + batch.len();
            head.put_u32(u32::try_from(9 + body_len).context("batch too large")?);
            head.put_u8(KIND_PRODUCE);
            head.put_u64(id);
            head.put_u8(acks);
            head.put_u32(PRODUCE_TIMEOUT_MS);
            head.put_u16(u16::try_from(args.topic.len()).context("topic name too long")?);
            head.put_slice(args.topic.as_bytes());
            head.put_u32(args.partition);
            // Waits while `in_flight` requests are unanswered.
            if tx.send((id, count)).is_err() {
                break;
            }
            write_two(&mut writer, &head, &batch)?;
            sent += count;
            id += 1;
            buffer = Vec::from(batch);
        }
        Ok(())
    })();
    drop(tx);
    let answered = answers
        .join()
        .map_err(|_| anyhow::anyhow!("the reader thread panicked"))?;
    sending?;
    let (records, requests, elapsed) = answered?;
    ensure!(
        records == args.count,
        "{records} records acknowledged of {}",
        args.count
    );
    let (cpu_user, cpu_sys) = cpu_seconds();
    let seconds = elapsed.as_secs_f64();
    let mut settings = common_settings(cpu_user - cpu_user0, cpu_sys - cpu_sys0);
    settings.insert("batch_bytes", json!(batch_bytes));
    settings.insert("in_flight", json!(args.in_flight));
    settings.insert("requests", json!(requests));
    let flag = match args.acks {
        AcksArg::Leader => "leader",
        AcksArg::All => "all",
    };
    Ok(Line {
        schema: SCHEMA,
        system: "weir-wire",
        server: "weir (experimental binary TCP data path)".into(),
        client: format!("weir-wire-bench {}", env!("CARGO_PKG_VERSION")),
        workload: "produce",
        record_bytes: record_bytes as u64,
        records,
        acks: Some(json!({
            "durability": match args.acks { AcksArg::Leader => "leader", AcksArg::All => "durable" },
            "fsync_before_ack": false,
            "meaning": format!("acks={flag}: answered as a gRPC produce with acks={flag} is; fsync as the topic's flush.policy says"),
        })),
        seconds,
        records_per_sec: records as f64 / seconds,
        mb_per_sec: (records * record_bytes as u64) as f64 / MB / seconds,
        latency: None,
        settings,
    })
}

fn common_settings(cpu_user: f64, cpu_sys: f64) -> BTreeMap<&'static str, Value> {
    BTreeMap::from([
        ("transport", json!("wire")),
        ("client_cpu_user_secs", json!(cpu_user)),
        ("client_cpu_sys_secs", json!(cpu_sys)),
    ])
}

/// What the decoder thread counted.
#[derive(Debug, Default)]
struct Decoded {
    records: u64,
    value_bytes: u64,
    batches: u64,
}

/// Decodes every batch of every answer; offsets must follow on from `from`.
fn decode(answers: mpsc::Receiver<Bytes>, from: i64) -> anyhow::Result<Decoded> {
    let mut d = Decoded::default();
    let mut next = from;
    for mut bytes in answers {
        while bytes.len() >= LOG_OVERHEAD {
            let len = framed_len(&bytes)?;
            ensure!(len <= bytes.len(), "a fetch answer ends inside a batch");
            let batch = bytes.split_to(len);
            for r in decode_records(&batch)? {
                // A fetch may start inside a batch: records before `next` were counted.
                if r.offset < next {
                    continue;
                }
                ensure!(
                    r.offset == next,
                    "offset {} after {}: a gap",
                    r.offset,
                    next - 1
                );
                next += 1;
                d.records += 1;
                d.value_bytes += r.value.map_or(0, |v| v.len() as u64);
            }
            d.batches += 1;
        }
        ensure!(
            bytes.is_empty(),
            "{} stray bytes after the batches",
            bytes.len()
        );
    }
    Ok(d)
}

fn consume(args: ConsumeArgs) -> anyhow::Result<Line> {
    ensure!(args.count >= 1, "--count must be at least 1");
    let mut stream = connect(&args.addr)?;
    let max_bytes = u32::try_from(args.max_bytes.bytes()).context("--max-bytes too large")?;
    let fetch = |id: u64, offset: i64| {
        let mut f = Vec::with_capacity(64);
        f.put_u32((9 + 2 + args.topic.len() + 4 + 8 + 4) as u32);
        f.put_u8(KIND_FETCH);
        f.put_u64(id);
        f.put_u16(args.topic.len() as u16);
        f.put_slice(args.topic.as_bytes());
        f.put_u32(args.partition);
        f.put_i64(offset);
        f.put_u32(max_bytes);
        f
    };
    let end = args.count as i64;
    let (tx, rx) = mpsc::sync_channel(DECODE_QUEUE);
    let (cpu_user0, cpu_sys0) = cpu_seconds();
    let started = Instant::now();
    let decoder = thread::spawn(move || decode(rx, 0));
    let mut id = 0;
    let mut fetches = 0u64;
    stream.write_all(&fetch(id, 0))?;
    let reading = (|| -> anyhow::Result<()> {
        loop {
            let mut b = read_frame(&mut stream, KIND_FETCH_RESPONSE, id)?;
            fetches += 1;
            let code = b.try_get_u32().context("short answer")?;
            let high_watermark = b.try_get_i64().context("short answer")?;
            let next_offset = b.try_get_i64().context("short answer")?;
            let msg = message(&mut b);
            ensure!(code == 0, "FETCH {id} failed: code {code}: {msg}");
            ensure!(
                !b.is_empty() || next_offset >= end,
                "ran out at offset {next_offset}: the high watermark is {high_watermark}, {end} records asked for"
            );
            let more = next_offset < end;
            if more {
                id += 1;
                stream.write_all(&fetch(id, next_offset))?;
            }
            if tx.send(b).is_err() || !more {
                return Ok(());
            }
        }
    })();
    drop(tx);
    let decoded = decoder
        .join()
        .map_err(|_| anyhow::anyhow!("the decoder thread panicked"))?;
    let elapsed = started.elapsed();
    reading?;
    let decoded = decoded?;
    ensure!(
        decoded.records >= args.count,
        "{} records decoded of {}",
        decoded.records,
        args.count
    );
    let (cpu_user, cpu_sys) = cpu_seconds();
    let seconds = elapsed.as_secs_f64();
    let mut settings = common_settings(cpu_user - cpu_user0, cpu_sys - cpu_sys0);
    settings.insert("max_bytes", json!(max_bytes));
    settings.insert("fetches", json!(fetches));
    settings.insert("batches", json!(decoded.batches));
    let record_bytes = decoded.value_bytes / decoded.records.max(1);
    Ok(Line {
        schema: SCHEMA,
        system: "weir-wire",
        server: "weir (experimental binary TCP data path)".into(),
        client: format!("weir-wire-bench {}", env!("CARGO_PKG_VERSION")),
        workload: "consume",
        record_bytes,
        records: decoded.records,
        acks: None,
        seconds,
        records_per_sec: decoded.records as f64 / seconds,
        mb_per_sec: decoded.value_bytes as f64 / MB / seconds,
        latency: None,
        settings,
    })
}
