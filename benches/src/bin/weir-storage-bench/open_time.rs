//! `open-time`: how long `Log::open` takes on a large log of many segments, after a clean
//! close and after a SIGKILL with unflushed data, and the same on a smaller log to show
//! that open time follows the unflushed tail, not the size of the log.
//!
//! Method, per log:
//!
//! 1. Build the log: `--log-bytes` of 1 KiB records in 64 KiB batches, in `--segments`
//!    segments (segment size = log size / segments), then close it cleanly.
//! 2. Clean opens: `Log::open` then `close`, `--opens` times; the median is reported.
//! 3. Crashes, `--crashes` times: run this binary again as a hidden `crash-child` that
//!    opens the log (which checkpoints the recovery point at its end) with no syncs on
//!    append and a day-long checkpoint interval, appends `--unflushed-bytes`, and says
//!    ready; SIGKILL it; time `Log::open`, which must scan and check that tail, and check
//!    that every record the child appended is there (a process crash loses nothing the
//!    page cache holds). The child uses 1 GiB segments so the tail stays in the active
//!    segment, as it would on a broker with default settings.
//!
//! Everything is in the page cache: this measures the work `open` does, not the disk.
//!
//! With `--sparse-segment-bytes`, every closed segment's `.log` is grown to that size
//! after step 1 (a hole past its batches), so a log of 1,000 segments of 1 GiB stands for
//! 1 TB of data without the disk: an open never reads a closed segment below the recovery
//! point, which is what the figures show. The resident memory the first clean open adds
//! to the process is reported beside the time.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Args;
use serde::Serialize;
use weir_benches::byte_size::ByteSize;
use weir_benches::workload::{BatchPool, BatchShape, DEFAULT_SEED};
use weir_log::config::{MAX_SEGMENT_BYTES, MIN_SEGMENT_BYTES};
use weir_log::{Compression, FlushPolicy, Log, LogConfig};

use crate::crash_child::{self, ReadyLine};
use crate::output::{Table, emit, grouped, median, millis, progress};
use crate::run_dir;

/// Segment size of the crash child and of the recovering open: the broker default, so the
/// unflushed tail stays in one active segment.
const CRASH_SEGMENT_BYTES: u64 = 1 << 30;
/// Bytes of distinct batches the builder cycles through.
const POOL_BYTES: usize = 8 << 20;
/// The log is not replicated.
const NO_LEADER_EPOCH: i32 = -1;
/// Build progress is reported every this share of the log.
const PROGRESS_STEPS: u64 = 10;

#[derive(Debug, Clone, Args)]
pub struct OpenTimeArgs {
    #[command(flatten)]
    pub common: crate::CommonArgs,

    /// Size of the log to open.
    #[arg(long, default_value_t = ByteSize::gib(2))]
    pub log_bytes: ByteSize,

    /// Segments the log is split into (segment size = log size / segments).
    #[arg(long, default_value_t = 1000)]
    pub segments: u64,

    /// Size of a second, smaller log measured the same way, to compare; 0 skips it.
    #[arg(long, default_value_t = ByteSize::mib(256))]
    pub small_log_bytes: ByteSize,

    /// Segments of the smaller log.
    #[arg(long, default_value_t = 125)]
    pub small_segments: u64,

    /// Bytes the killed process appends without a sync before the SIGKILL.
    #[arg(long, default_value_t = ByteSize::mib(64))]
    pub unflushed_bytes: ByteSize,

    /// Clean opens timed per log; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub opens: u32,

    /// SIGKILLs per log; the median recovering open is reported.
    #[arg(long, default_value_t = 3)]
    pub crashes: u32,

    /// Record value size of the log's records.
    #[arg(long, default_value_t = ByteSize::kib(1))]
    pub record_bytes: ByteSize,

    /// Batch size of the log's batches.
    #[arg(long, default_value_t = ByteSize::kib(64))]
    pub batch_bytes: ByteSize,

    /// Grow every closed segment's file to this size (sparse) before the opens, to open
    /// a log of that many bytes per segment without writing them; 0 leaves them as built.
    #[arg(long, default_value_t = ByteSize(0))]
    pub sparse_segment_bytes: ByteSize,
}

/// One log to measure.
#[derive(Debug, Clone, Copy, Serialize)]
struct LogPlan {
    log_bytes: u64,
    segments: u64,
    segment_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
struct Plan {
    #[serde(skip)]
    dir: PathBuf,
    logs: Vec<LogPlan>,
    unflushed_bytes: u64,
    opens: u32,
    crashes: u32,
    record_bytes: usize,
    batch_bytes: usize,
    sparse_segment_bytes: u64,
}

impl Plan {
    fn new(args: OpenTimeArgs) -> anyhow::Result<Plan> {
        let batch_bytes = args.batch_bytes.as_usize();
        let max_batch = LogConfig::default().max_message_bytes;
        ensure!(
            batch_bytes <= max_batch
                && args.record_bytes.as_usize() + weir_log::batch::HEADER_BYTES < batch_bytes,
            "--batch-bytes {} must hold a record of --record-bytes {} and be at most {}",
            args.batch_bytes,
            args.record_bytes,
            ByteSize(max_batch as u64)
        );
        ensure!(
            args.record_bytes.bytes() > 0,
            "--record-bytes must be above 0"
        );
        let mut logs = Vec::new();
        for (log_bytes, segments) in [
            (args.log_bytes, args.segments),
            (args.small_log_bytes, args.small_segments),
        ] {
            if log_bytes.bytes() == 0 && !logs.is_empty() {
                continue;
            }
            ensure!(segments > 0, "a log needs at least one segment");
            let segment_bytes = log_bytes.bytes() / segments;
            ensure!(
                (MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&segment_bytes)
                    && segment_bytes >= batch_bytes as u64,
                "{log_bytes} in {segments} segments makes segments of {}, which must hold a batch ({}) and lie \
                 within {}..={}",
                ByteSize(segment_bytes),
                args.batch_bytes,
                ByteSize(MIN_SEGMENT_BYTES),
                ByteSize(MAX_SEGMENT_BYTES)
            );
            // The crash rounds grow the last segment; it must not roll (a roll syncs).
            let tail = segment_bytes
                + u64::from(args.crashes) * (args.unflushed_bytes.bytes() + batch_bytes as u64);
            ensure!(
                tail <= CRASH_SEGMENT_BYTES,
                "{} crashes of --unflushed-bytes {} would fill the {} active segment",
                args.crashes,
                args.unflushed_bytes,
                ByteSize(CRASH_SEGMENT_BYTES)
            );
            logs.push(LogPlan {
                log_bytes: log_bytes.bytes(),
                segments,
                segment_bytes,
            });
        }
        ensure!(args.opens > 0, "--opens must be above 0");
        ensure!(
            args.unflushed_bytes.bytes() > 0 || args.crashes == 0,
            "--unflushed-bytes must be above 0"
        );
        Ok(Plan {
            dir: args.common.dir.clone(),
            logs,
            unflushed_bytes: args.unflushed_bytes.bytes(),
            opens: args.opens,
            crashes: args.crashes,
            record_bytes: args.record_bytes.as_usize(),
            batch_bytes,
            sparse_segment_bytes: args.sparse_segment_bytes.bytes(),
        })
    }

    fn shape(&self) -> BatchShape {
        BatchShape {
            value_bytes: self.record_bytes,
            batch_bytes: self.batch_bytes,
            compression: Compression::None,
        }
    }
}

/// Durations as reported: milliseconds.
#[derive(Debug, Serialize)]
struct Timing {
    median_ms: f64,
    min_ms: f64,
    max_ms: f64,
    all_ms: Vec<f64>,
}

impl Timing {
    fn new(times: &[Duration]) -> Timing {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        Timing {
            median_ms: ms(median(times)),
            min_ms: times.iter().copied().min().map_or(0.0, ms),
            max_ms: times.iter().copied().max().map_or(0.0, ms),
            all_ms: times.iter().copied().map(ms).collect(),
        }
    }

    fn text(&self) -> String {
        let d = |ms: f64| millis(Duration::from_secs_f64(ms / 1e3));
        format!(
            "{} ({}..{})",
            d(self.median_ms),
            d(self.min_ms),
            d(self.max_ms)
        )
    }
}

/// One SIGKILL and the open that recovered from it.
#[derive(Debug, Serialize)]
struct CrashReport {
    open_ms: f64,
    unflushed_bytes: u64,
    /// Log end when the unsynced appends began (where the recovery checkpoint was).
    durable_end_offset: i64,
    /// Log end the killed process reached.
    end_offset_before_kill: i64,
    /// Log end after recovery.
    end_offset_recovered: i64,
}

#[derive(Debug, Serialize)]
struct LogReport {
    #[serde(flatten)]
    plan: LogPlan,
    /// Segments and bytes as built.
    built_segments: usize,
    built_bytes: u64,
    /// Bytes the opens found: the built ones, or with `--sparse-segment-bytes` the
    /// closed segments' grown files.
    opened_bytes: u64,
    build_s: f64,
    clean_open: Timing,
    /// Resident memory the first clean open added to the process (`VmRSS` before the
    /// open and with the log open), in KiB.
    open_rss_kib: i64,
    crash_open: Option<Timing>,
    crashes: Vec<CrashReport>,
}

#[derive(Debug, Serialize)]
struct Report {
    command: &'static str,
    settings: Plan,
    logs: Vec<LogReport>,
}

pub fn run(args: OpenTimeArgs) -> anyhow::Result<()> {
    let format = args.common.format;
    let plan = Plan::new(args)?;
    let work = run_dir::create(&plan.dir, "open-time-")?;
    let mut logs = Vec::new();
    for (i, log_plan) in plan.logs.iter().enumerate() {
        let log_dir = work.path().join(format!("log-{i}"));
        logs.push(measure_log(&plan, *log_plan, &log_dir)?);
        fs::remove_dir_all(&log_dir).with_context(|| format!("remove {}", log_dir.display()))?;
    }
    work.close().context("remove the run directory")?;
    let report = Report {
        command: "open-time",
        settings: plan,
        logs,
    };
    emit(format, &render(&report), &report)
}

fn measure_log(plan: &Plan, log_plan: LogPlan, dir: &Path) -> anyhow::Result<LogReport> {
    let label = format!(
        "{} in {} segments",
        ByteSize(log_plan.log_bytes),
        log_plan.segments
    );
    let config = LogConfig {
        segment_bytes: log_plan.segment_bytes,
        flush: FlushPolicy::None,
        ..LogConfig::default()
    };

    progress!("{label}: building in {}", dir.display());
    let started = Instant::now();
    let log = Log::open(dir, config.clone())
        .with_context(|| format!("create a log in {}", dir.display()))?;
    let mut pool =
        BatchPool::build(plan.shape(), POOL_BYTES, DEFAULT_SEED).context("build batches")?;
    // Whole segments: as many of the largest pooled batch as one segment holds, so the
    // log ends up with exactly the segments asked for.
    let largest_batch = pool
        .batches()
        .iter()
        .map(|b| b.bytes.len() as u64)
        .max()
        .unwrap_or(1);
    let batches = log_plan.segments * (log_plan.segment_bytes / largest_batch);
    let step = (batches / PROGRESS_STEPS).max(1);
    for i in 1..=batches {
        log.append(&mut pool.next_batch().bytes, NO_LEADER_EPOCH)
            .context("Log::append")?;
        if i % step == 0 {
            progress!(
                "{label}: built {} of {}",
                ByteSize(log.size_bytes()),
                ByteSize(log_plan.log_bytes)
            );
        }
    }
    let built_segments = log.segment_count();
    let built_bytes = log.size_bytes();
    let end_offset = log.offsets().log_end_offset;
    log.close().context("close the log")?;
    let build_s = started.elapsed().as_secs_f64();
    if plan.sparse_segment_bytes > 0 {
        grow_closed_segments(dir, plan.sparse_segment_bytes)?;
    }

    let mut clean_times = Vec::new();
    let (mut opened_bytes, mut open_rss_kib) = (0, 0);
    for i in 0..plan.opens {
        let rss_before = resident_kib()?;
        let started = Instant::now();
        let log = Log::open(dir, config.clone())
            .with_context(|| format!("open the log in {}", dir.display()))?;
        clean_times.push(started.elapsed());
        if i == 0 {
            open_rss_kib = resident_kib()? - rss_before;
            opened_bytes = log.size_bytes();
        }
        let offsets = log.offsets();
        ensure!(
            offsets.log_end_offset == end_offset && log.segment_count() == built_segments,
            "a clean open found log end {} in {} segments, not {end_offset} in {built_segments}",
            offsets.log_end_offset,
            log.segment_count()
        );
        log.close().context("close the log")?;
    }
    let clean_open = Timing::new(&clean_times);
    progress!("{label}: clean open {}", clean_open.text());

    let mut crashes = Vec::new();
    for round in 0..plan.crashes {
        let ready = spawn_and_kill(plan, dir)?;
        let started = Instant::now();
        let log = Log::open(dir, crash_child::config(CRASH_SEGMENT_BYTES))
            .with_context(|| format!("open the log in {} after a SIGKILL", dir.display()))?;
        let open = started.elapsed();
        let recovered = log.offsets().log_end_offset;
        log.close().context("close the log")?;
        progress!(
            "{label}: crash {}: open {} recovered log end {} of {}",
            round + 1,
            millis(open),
            recovered,
            ready.end_offset
        );
        crashes.push(CrashReport {
            open_ms: open.as_secs_f64() * 1e3,
            unflushed_bytes: ready.unflushed_bytes,
            durable_end_offset: ready.durable_end_offset,
            end_offset_before_kill: ready.end_offset,
            end_offset_recovered: recovered,
        });
    }
    let crash_open = (!crashes.is_empty()).then(|| {
        let times: Vec<Duration> = crashes
            .iter()
            .map(|c| Duration::from_secs_f64(c.open_ms / 1e3))
            .collect();
        Timing::new(&times)
    });
    Ok(LogReport {
        plan: log_plan,
        built_segments,
        built_bytes,
        opened_bytes,
        build_s,
        clean_open,
        open_rss_kib,
        crash_open,
        crashes,
    })
}

/// Grows every closed segment's `.log` in `dir` (all but the last) to `bytes`, leaving
/// a hole past its batches.
fn grow_closed_segments(dir: &Path, bytes: u64) -> anyhow::Result<()> {
    let mut logs: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("list {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("list {}", dir.display()))?;
    logs.retain(|p| p.extension().is_some_and(|e| e == "log"));
    logs.sort();
    logs.pop();
    for path in logs {
        let file = fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .with_context(|| format!("open {}", path.display()))?;
        if file.metadata()?.len() < bytes {
            file.set_len(bytes)
                .with_context(|| format!("grow {}", path.display()))?;
        }
    }
    Ok(())
}

/// This process's resident memory (`VmRSS`), in KiB.
fn resident_kib() -> anyhow::Result<i64> {
    let status = fs::read_to_string("/proc/self/status").context("read /proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS in /proc/self/status")
}

/// Runs a crash child on the log, waits for it to be ready, and SIGKILLs it.
fn spawn_and_kill(plan: &Plan, dir: &Path) -> anyhow::Result<ReadyLine> {
    let exe = std::env::current_exe().context("find this executable")?;
    let mut child = Command::new(&exe)
        .arg("crash-child")
        .arg("--log-dir")
        .arg(dir)
        .args(["--append-bytes", &plan.unflushed_bytes.to_string()])
        .args(["--record-bytes", &plan.record_bytes.to_string()])
        .args(["--batch-bytes", &plan.batch_bytes.to_string()])
        .args(["--segment-bytes", &CRASH_SEGMENT_BYTES.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("start {}", exe.display()))?;
    let stdout = child.stdout.take().context("the child's stdout is piped")?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .context("read the child's ready line")?;
    if line.is_empty() {
        let status = child.wait().context("wait for the child")?;
        bail!("the crash child exited ({status}) before it was ready");
    }
    let ready: ReadyLine = line.parse()?;
    // `Child::kill` sends SIGKILL: no destructor, no close, no final fsync runs.
    child.kill().context("SIGKILL the child")?;
    child.wait().context("wait for the killed child")?;
    Ok(ready)
}

fn render(report: &Report) -> String {
    let plan = &report.settings;
    let mut out = format!(
        "Log::open time; files in the page cache\n\
         clean: after Log::close, median (min..max) of {} opens\n\
         after SIGKILL: {} appended without fsync after the last recovery checkpoint, \
         median (min..max) of {} kills\n\n",
        plan.opens,
        ByteSize(plan.unflushed_bytes),
        plan.crashes
    );
    let mut table = Table::new(
        [
            "log",
            "segments",
            "segment",
            "clean open",
            "memory of the open log",
            "open after SIGKILL",
            "unflushed records recovered",
        ],
        1,
    );
    for log in &report.logs {
        let appended: i64 = log
            .crashes
            .iter()
            .map(|c| c.end_offset_before_kill - c.durable_end_offset)
            .sum();
        let recovered: i64 = log
            .crashes
            .iter()
            .map(|c| c.end_offset_recovered - c.durable_end_offset)
            .sum();
        let count = |n: i64| grouped(n.max(0) as u64);
        table.row(vec![
            ByteSize(log.opened_bytes).to_string(),
            log.built_segments.to_string(),
            ByteSize(log.opened_bytes / log.built_segments.max(1) as u64).to_string(),
            log.clean_open.text(),
            format!("{} KiB", log.open_rss_kib),
            log.crash_open
                .as_ref()
                .map_or_else(|| "-".to_owned(), Timing::text),
            format!("{} of {}", count(recovered), count(appended)),
        ]);
    }
    out.push_str(&table.render());
    out
}
