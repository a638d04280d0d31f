//! `throughput`: append throughput of `weir-log` against plain `write` + `fdatasync` of the
//! very same batches at the same cadence, then sequential read throughput against `pread`,
//! from the page cache.
//!
//! Method, per record size and durability mode (a "cell"):
//!
//! 1. Batches of about `--batch-bytes` are built once with `RecordBatchBuilder` into a ring
//!    of distinct batches (8 MiB), so consecutive writes carry different bytes.
//! 2. "raw" appends them to a fresh file with `write` and, in `group-commit`, calls
//!    `fdatasync` every `--sync-every-bytes` and once at the end.
//! 3. "weir" appends the same ring to a fresh log with `Log::append` (which validates each
//!    batch, CRC included, patches its offsets and indexes it) and, in `group-commit`,
//!    calls `Log::wait_durable(last_offset)` at the same points. Each batch is first reset to
//!    what a client sends (base offset 0, no leader epoch); raw does the same reset.
//! 4. The clock covers the writes and the syncs, not the open or the close. After each
//!    run, untimed, the file is synced (raw) or the log closed (which syncs), deleted,
//!    and the file system flushed with `syncfs`, so every run starts from empty files in
//!    the same directory with no writeback, journal commit or discard of the previous
//!    run still pending (the bench disk may be mounted with `discard`). Rounds alternate
//!    which writer goes first.
//!
//! The log written last (1 KiB, group-commit by default) is then read back from the page
//! cache with `Log::read(offset, 1 MiB, None)` from start to end, and its segment files
//! with `pread` into one reused 1 MiB buffer, as the reference.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use clap::{Args, ValueEnum};
use serde::Serialize;
use weir_benches::byte_size::ByteSize;
use weir_benches::workload::{BatchPool, BatchShape, DEFAULT_SEED};
use weir_log::config::{MAX_SEGMENT_BYTES, MIN_SEGMENT_BYTES};
use weir_log::{Compression, FlushPolicy, Log, LogConfig, batch};

use crate::output::{Table, emit, grouped, progress, quantile};
use crate::run_dir;

/// What the storage issue asks of weir-log appends: at least this share of raw throughput
/// in every mode.
const TARGET_WRITE_RATIO: f64 = 0.90;
/// What the storage issue asks of sequential reads from the page cache, in GB/s.
const TARGET_READ_GB_PER_S: f64 = 2.0;
/// `max_bytes` of each `Log::read`, and the `pread` size of the reference reader.
const READ_BYTES: usize = 1 << 20;
/// Bytes of distinct batches each writer cycles through: more than the CPU caches hold.
const POOL_BYTES: usize = 8 << 20;
/// The benched log is not replicated.
const NO_LEADER_EPOCH: i32 = -1;
/// File the raw writer appends to, inside the run directory.
const RAW_FILE: &str = "raw.data";
/// Directory of the weir log, inside the run directory.
const LOG_DIR: &str = "log";
/// Suffix of segment files in a log directory.
const SEGMENT_SUFFIX: &str = ".log";
/// Decimal units for throughput, as disks and networks are rated.
const MB: f64 = 1e6;
const GB: f64 = 1e9;

/// How appended data is made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Never fsync (durability by replication only).
    None,
    /// One fdatasync per --sync-every-bytes of appends (and one at the end).
    GroupCommit,
}

impl Mode {
    fn flush_policy(self) -> FlushPolicy {
        match self {
            Mode::None => FlushPolicy::None,
            Mode::GroupCommit => FlushPolicy::GroupCommit,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::None => "none",
            Mode::GroupCommit => "group-commit",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ThroughputArgs {
    #[command(flatten)]
    pub common: crate::CommonArgs,

    /// Record value sizes to measure, comma-separated (records have no key or headers).
    #[arg(long, value_delimiter = ',', default_values_t = [ByteSize(100), ByteSize::kib(1)])]
    pub record_bytes: Vec<ByteSize>,

    /// Durability modes to measure, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Mode::None, Mode::GroupCommit])]
    pub modes: Vec<Mode>,

    /// Bytes each writer (raw and weir) writes per record size and mode.
    #[arg(long, default_value_t = ByteSize::gib(1))]
    pub total_bytes: ByteSize,

    /// Size of each batch before compression (uncompressed batches are this size, to
    /// within one record).
    #[arg(long, default_value_t = ByteSize::kib(64))]
    pub batch_bytes: ByteSize,

    /// In group-commit mode, bytes appended between two fdatasyncs.
    #[arg(long, default_value_t = ByteSize::mib(1))]
    pub sync_every_bytes: ByteSize,

    /// Segment size of the weir log (a roll fsyncs and starts new files).
    #[arg(long, default_value_t = ByteSize::gib(1))]
    pub segment_bytes: ByteSize,

    /// Times each cell is run, raw and weir alternating which goes first; the median run
    /// is reported.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,

    /// Passes over the log in the read test; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub read_passes: u32,
}

/// The arguments, checked.
#[derive(Debug, Clone, Serialize)]
struct Plan {
    #[serde(skip)]
    dir: PathBuf,
    record_bytes: Vec<usize>,
    modes: Vec<Mode>,
    total_bytes: u64,
    batch_bytes: usize,
    sync_every_bytes: u64,
    segment_bytes: u64,
    rounds: u32,
    read_passes: u32,
}

impl Plan {
    fn new(args: ThroughputArgs) -> anyhow::Result<Plan> {
        let max_batch = LogConfig::default().max_message_bytes;
        let batch_bytes = args.batch_bytes.as_usize();
        ensure!(
            (batch::HEADER_BYTES + 1..=max_batch).contains(&batch_bytes),
            "--batch-bytes {} must be above the {}-byte batch header and at most the log's \
             max_message_bytes ({max_batch})",
            args.batch_bytes,
            batch::HEADER_BYTES
        );
        ensure!(
            !args.record_bytes.is_empty(),
            "--record-bytes needs at least one size"
        );
        for size in &args.record_bytes {
            ensure!(
                size.bytes() > 0 && size.as_usize() + batch::HEADER_BYTES < batch_bytes,
                "--record-bytes {size} must be above 0 and fit a batch of --batch-bytes {}",
                args.batch_bytes
            );
        }
        ensure!(!args.modes.is_empty(), "--modes needs at least one mode");
        ensure!(
            args.total_bytes.bytes() >= args.batch_bytes.bytes(),
            "--total-bytes {} is less than one batch",
            args.total_bytes
        );
        ensure!(
            args.sync_every_bytes.bytes() > 0,
            "--sync-every-bytes must be above 0"
        );
        ensure!(
            (MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&args.segment_bytes.bytes())
                && args.segment_bytes >= args.batch_bytes,
            "--segment-bytes {} must hold a batch and lie within {}..={}",
            args.segment_bytes,
            ByteSize(MIN_SEGMENT_BYTES),
            ByteSize(MAX_SEGMENT_BYTES)
        );
        ensure!(
            args.rounds > 0 && args.read_passes > 0,
            "--rounds and --read-passes must be above 0"
        );
        Ok(Plan {
            dir: args.common.dir.clone(),
            record_bytes: args.record_bytes.iter().map(|s| s.as_usize()).collect(),
            modes: args.modes,
            total_bytes: args.total_bytes.bytes(),
            batch_bytes,
            sync_every_bytes: args.sync_every_bytes.bytes(),
            segment_bytes: args.segment_bytes.bytes(),
            rounds: args.rounds,
            read_passes: args.read_passes,
        })
    }
}

/// One writer under test.
trait Writer {
    fn write(&mut self, batch: &mut [u8]) -> anyhow::Result<()>;
    /// Makes everything written so far durable.
    fn sync(&mut self) -> anyhow::Result<()>;
}

/// Plain file I/O: `write` in append mode, `fdatasync`.
struct RawWriter {
    file: File,
    path: PathBuf,
}

impl Writer for RawWriter {
    fn write(&mut self, batch: &mut [u8]) -> anyhow::Result<()> {
        self.file
            .write_all(batch)
            .with_context(|| format!("write to {}", self.path.display()))
    }

    fn sync(&mut self) -> anyhow::Result<()> {
        self.file
            .sync_data()
            .with_context(|| format!("fdatasync {}", self.path.display()))
    }
}

/// weir-log: `Log::append`, `Log::wait_durable`. It also checks, at O(1) cost per call,
/// that the log does what the figures assume: offsets follow on from one append to the
/// next, and a wait leaves the log claiming durability past the last offset (a log that
/// skipped its syncs would otherwise just look fast).
struct WeirWriter {
    log: Log,
    last_offset: i64,
}

impl Writer for WeirWriter {
    fn write(&mut self, batch: &mut [u8]) -> anyhow::Result<()> {
        let info = self
            .log
            .append(batch, NO_LEADER_EPOCH)
            .context("Log::append")?;
        ensure!(
            info.base_offset == self.last_offset + 1 && info.last_offset >= info.base_offset,
            "Log::append assigned offsets {}..={} after offset {}",
            info.base_offset,
            info.last_offset,
            self.last_offset
        );
        self.last_offset = info.last_offset;
        Ok(())
    }

    fn sync(&mut self) -> anyhow::Result<()> {
        self.log
            .wait_durable(self.last_offset)
            .context("Log::wait_durable")?;
        let flushed = self.log.offsets().flushed_offset;
        ensure!(
            flushed > self.last_offset,
            "Log::wait_durable({}) returned with the log flushed only below {flushed}",
            self.last_offset
        );
        Ok(())
    }
}

/// What one writer did in one run.
#[derive(Debug, Clone)]
struct WriteRun {
    elapsed: Duration,
    bytes: u64,
    records: u64,
    batches: u64,
    syncs: u64,
    /// Time of each write call, including the sync that followed it when one was due.
    sorted_call_times: Vec<Duration>,
}

impl WriteRun {
    fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64() / MB
    }
}

/// Writes `plan.total_bytes` of pooled batches through `writer`, syncing as `mode` says.
fn drive(
    writer: &mut impl Writer,
    pool: &mut BatchPool,
    plan: &Plan,
    mode: Mode,
) -> anyhow::Result<WriteRun> {
    let expected_batches = (plan.total_bytes as f64 / pool.mean_batch_bytes()) as usize + 1;
    let mut call_times = Vec::with_capacity(expected_batches);
    let (mut bytes, mut records, mut batches, mut syncs, mut since_sync) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let started = Instant::now();
    loop {
        let built = pool.next_batch();
        let len = built.bytes.len() as u64;
        if bytes + len > plan.total_bytes {
            break;
        }
        // What a client sends: base offset 0, no leader epoch. A previous append of this
        // pooled batch patched both (they lie outside the CRC).
        batch::patch_offset_and_epoch(&mut built.bytes, 0, NO_LEADER_EPOCH);
        let call = Instant::now();
        writer.write(&mut built.bytes)?;
        bytes += len;
        since_sync += len;
        records += built.records as u64;
        batches += 1;
        if mode == Mode::GroupCommit && since_sync >= plan.sync_every_bytes {
            writer.sync()?;
            syncs += 1;
            since_sync = 0;
        }
        call_times.push(call.elapsed());
    }
    if mode == Mode::GroupCommit && since_sync > 0 {
        writer.sync()?;
        syncs += 1;
    }
    let elapsed = started.elapsed();
    call_times.sort_unstable();
    Ok(WriteRun {
        elapsed,
        bytes,
        records,
        batches,
        syncs,
        sorted_call_times: call_times,
    })
}

/// Runs the raw writer on a fresh file, then syncs and deletes it.
fn run_raw(work: &Path, pool: &mut BatchPool, plan: &Plan, mode: Mode) -> anyhow::Result<WriteRun> {
    let path = work.join(RAW_FILE);
    let file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("create {}", path.display()))?;
    let mut writer = RawWriter { file, path };
    let run = drive(&mut writer, pool, plan, mode)?;
    // Untimed, and what closing the weir log does too: nothing of this run is left for
    // the next one to write back.
    writer.sync()?;
    drop(writer);
    let path = work.join(RAW_FILE);
    fs::remove_file(&path).with_context(|| format!("remove {}", path.display()))?;
    settle(work)?;
    Ok(run)
}

fn log_config(plan: &Plan, mode: Mode) -> LogConfig {
    LogConfig {
        segment_bytes: plan.segment_bytes,
        flush: mode.flush_policy(),
        ..LogConfig::default()
    }
}

/// Runs weir on a fresh log, then closes it (which syncs) and deletes it unless `keep`.
fn run_weir(
    work: &Path,
    pool: &mut BatchPool,
    plan: &Plan,
    mode: Mode,
    keep: bool,
) -> anyhow::Result<WriteRun> {
    let dir = work.join(LOG_DIR);
    let log = Log::open(&dir, log_config(plan, mode))
        .with_context(|| format!("open a log in {}", dir.display()))?;
    let mut writer = WeirWriter {
        log,
        last_offset: -1,
    };
    let run = drive(&mut writer, pool, plan, mode)?;
    writer.log.close().context("close the log")?;
    if !keep {
        fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))?;
    }
    settle(work)?;
    Ok(run)
}

/// Flushes the file system `dir` is on (`syncfs`), so the metadata updates, journal
/// commits and discards of one run's deleted files do not land in the next run's timing.
fn settle(dir: &Path) -> anyhow::Result<()> {
    let handle = File::open(dir).with_context(|| format!("open {}", dir.display()))?;
    // SAFETY: `syncfs` takes any open descriptor and only reads it; `handle` keeps the
    // descriptor open for the duration of the call.
    let status = unsafe { libc::syncfs(handle.as_raw_fd()) };
    if status != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("syncfs {}", dir.display()));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum System {
    Raw,
    Weir,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Raw => "raw",
            System::Weir => "weir",
        }
    }
}

/// One writer's result in one cell, as reported.
#[derive(Debug, Serialize)]
struct WriterReport {
    mb_per_s: f64,
    elapsed_s: f64,
    bytes: u64,
    records: u64,
    records_per_s: f64,
    batches: u64,
    syncs: u64,
    call_p50_us: f64,
    call_p99_us: f64,
    call_max_us: f64,
    /// MB/s of every round, in run order.
    rounds_mb_per_s: Vec<f64>,
}

impl WriterReport {
    /// Reports the median run (by throughput) of `runs`.
    fn new(runs: &[WriteRun]) -> WriterReport {
        let mut by_speed: Vec<&WriteRun> = runs.iter().collect();
        by_speed.sort_by(|a, b| a.mb_per_s().total_cmp(&b.mb_per_s()));
        let run = by_speed[(by_speed.len() - 1) / 2];
        let us = |q| quantile(&run.sorted_call_times, q).as_secs_f64() * 1e6;
        WriterReport {
            mb_per_s: run.mb_per_s(),
            elapsed_s: run.elapsed.as_secs_f64(),
            bytes: run.bytes,
            records: run.records,
            records_per_s: run.records as f64 / run.elapsed.as_secs_f64(),
            batches: run.batches,
            syncs: run.syncs,
            call_p50_us: us(0.5),
            call_p99_us: us(0.99),
            call_max_us: us(1.0),
            rounds_mb_per_s: runs.iter().map(WriteRun::mb_per_s).collect(),
        }
    }
}

/// One record size and mode.
#[derive(Debug, Serialize)]
struct CellReport {
    record_bytes: usize,
    mode: Mode,
    mean_batch_bytes: f64,
    mean_records_per_batch: f64,
    raw: WriterReport,
    weir: WriterReport,
    weir_to_raw: f64,
    target_weir_to_raw: f64,
    meets_target: bool,
}

#[derive(Debug, Serialize)]
struct ReadReport {
    record_bytes: usize,
    mode: Mode,
    log_bytes: u64,
    read_bytes: usize,
    passes: u32,
    pread_gb_per_s: f64,
    weir_gb_per_s: f64,
    weir_to_pread: f64,
    target_gb_per_s: f64,
    meets_target: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    command: &'static str,
    settings: Plan,
    cells: Vec<CellReport>,
    read: ReadReport,
}

pub fn run(args: ThroughputArgs) -> anyhow::Result<()> {
    let format = args.common.format;
    let plan = Plan::new(args)?;
    let work = run_dir::create(&plan.dir, "throughput-")?;
    progress!(
        "throughput: {} per cell, batches of {}, fdatasync every {} in group-commit, in {}",
        ByteSize(plan.total_bytes),
        ByteSize(plan.batch_bytes as u64),
        ByteSize(plan.sync_every_bytes),
        work.path().display()
    );

    let mut cells = Vec::new();
    let mut read_source = None;
    for (r, &record_bytes) in plan.record_bytes.iter().enumerate() {
        let shape = BatchShape {
            value_bytes: record_bytes,
            batch_bytes: plan.batch_bytes,
            compression: Compression::None,
        };
        let mut pool =
            BatchPool::build(shape, POOL_BYTES, DEFAULT_SEED).context("build batches")?;
        for (m, &mode) in plan.modes.iter().enumerate() {
            let last_cell = r + 1 == plan.record_bytes.len() && m + 1 == plan.modes.len();
            let (mut raw_runs, mut weir_runs) = (Vec::new(), Vec::new());
            for round in 0..plan.rounds {
                let order = if round % 2 == 0 {
                    [System::Raw, System::Weir]
                } else {
                    [System::Weir, System::Raw]
                };
                for system in order {
                    let label = format!(
                        "{} {} {}",
                        ByteSize(record_bytes as u64),
                        mode.name(),
                        system.name()
                    );
                    let run = match system {
                        System::Raw => run_raw(work.path(), &mut pool, &plan, mode)?,
                        System::Weir => {
                            // The last cell's log stays for the read test.
                            let keep = last_cell && round + 1 == plan.rounds;
                            run_weir(work.path(), &mut pool, &plan, mode, keep)?
                        }
                    };
                    progress!("{label}: {:.0} MB/s", run.mb_per_s());
                    match system {
                        System::Raw => raw_runs.push(run),
                        System::Weir => weir_runs.push(run),
                    }
                }
            }
            let (raw, weir) = (WriterReport::new(&raw_runs), WriterReport::new(&weir_runs));
            let weir_to_raw = weir.mb_per_s / raw.mb_per_s;
            cells.push(CellReport {
                record_bytes,
                mode,
                mean_batch_bytes: pool.mean_batch_bytes(),
                mean_records_per_batch: pool.mean_records(),
                raw,
                weir,
                weir_to_raw,
                target_weir_to_raw: TARGET_WRITE_RATIO,
                meets_target: weir_to_raw >= TARGET_WRITE_RATIO,
            });
            if last_cell {
                read_source = Some((record_bytes, mode));
            }
        }
    }

    let (record_bytes, mode) = read_source.context("no cell ran")?;
    let dir = work.path().join(LOG_DIR);
    let log = Log::open(&dir, log_config(&plan, mode))
        .with_context(|| format!("reopen the log in {}", dir.display()))?;
    let read = measure_reads(&log, record_bytes, mode, &plan)?;
    log.close().context("close the log")?;
    work.close().context("remove the run directory")?;

    let report = Report {
        command: "throughput",
        settings: plan,
        cells,
        read,
    };
    emit(format, &render(&report), &report)
}

/// Reads the whole log back, with `Log::read` and with `pread` of its segment files,
/// alternating, `plan.read_passes` times each.
fn measure_reads(
    log: &Log,
    record_bytes: usize,
    mode: Mode,
    plan: &Plan,
) -> anyhow::Result<ReadReport> {
    let log_bytes = log.size_bytes();
    progress!(
        "read: {} of {} {} records, {} per read, {} passes",
        ByteSize(log_bytes),
        ByteSize(record_bytes as u64),
        mode.name(),
        ByteSize(READ_BYTES as u64),
        plan.read_passes
    );
    let mut segment_files: Vec<PathBuf> = fs::read_dir(log.dir())
        .with_context(|| format!("list {}", log.dir().display()))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("list {}", log.dir().display()))?;
    segment_files.retain(|p| p.to_str().is_some_and(|s| s.ends_with(SEGMENT_SUFFIX)));
    segment_files.sort();

    let mut buf = vec![0u8; READ_BYTES];
    let (mut pread_times, mut weir_times) = (Vec::new(), Vec::new());
    for _ in 0..plan.read_passes {
        let started = Instant::now();
        let bytes = pread_all(&segment_files, &mut buf)?;
        pread_times.push(started.elapsed());
        ensure!(
            bytes == log_bytes,
            "pread read {bytes} bytes of a {log_bytes}-byte log"
        );

        let started = Instant::now();
        let bytes = weir_read_all(log)?;
        weir_times.push(started.elapsed());
        ensure!(
            bytes == log_bytes,
            "Log::read returned {bytes} bytes of a {log_bytes}-byte log"
        );
    }
    let gb_per_s =
        |times: &[Duration]| log_bytes as f64 / crate::output::median(times).as_secs_f64() / GB;
    let (pread_gb_per_s, weir_gb_per_s) = (gb_per_s(&pread_times), gb_per_s(&weir_times));
    progress!("read: pread {pread_gb_per_s:.2} GB/s, weir {weir_gb_per_s:.2} GB/s");
    Ok(ReadReport {
        record_bytes,
        mode,
        log_bytes,
        read_bytes: READ_BYTES,
        passes: plan.read_passes,
        pread_gb_per_s,
        weir_gb_per_s,
        weir_to_pread: weir_gb_per_s / pread_gb_per_s,
        target_gb_per_s: TARGET_READ_GB_PER_S,
        meets_target: weir_gb_per_s >= TARGET_READ_GB_PER_S,
    })
}

/// Reads every file sequentially into `buf`; returns the bytes read.
fn pread_all(files: &[PathBuf], buf: &mut [u8]) -> anyhow::Result<u64> {
    let mut total = 0;
    for path in files {
        let file = File::open(path).with_context(|| format!("open {}", path.display()))?;
        let mut pos = 0;
        loop {
            let n = file
                .read_at(buf, pos)
                .with_context(|| format!("pread {}", path.display()))?;
            if n == 0 {
                break;
            }
            pos += n as u64;
        }
        total += pos;
    }
    Ok(total)
}

/// Reads the log from start to end with `Log::read`; returns the bytes returned.
fn weir_read_all(log: &Log) -> anyhow::Result<u64> {
    let offsets = log.offsets();
    let (mut offset, end) = (offsets.log_start_offset, offsets.log_end_offset);
    let mut total = 0;
    while offset < end {
        let data = log
            .read(offset, READ_BYTES, None)
            .with_context(|| format!("Log::read at offset {offset}"))?;
        ensure!(
            !data.records.is_empty(),
            "Log::read at offset {offset} returned nothing below the log end {end}"
        );
        total += data.records.len() as u64;
        offset = data.next_offset;
    }
    Ok(total)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISSED" }
}

fn render(report: &Report) -> String {
    let plan = &report.settings;
    let mut out = format!(
        "Append throughput: weir-log vs plain write(2) + fdatasync of the same batches\n\
         {} per cell; batches of ~{} (uncompressed, built by RecordBatchBuilder); \
         group-commit: one fdatasync per {}; weir segments of {}\n\
         MB = 10^6 bytes; call p99 = 99th percentile of one write/append call, including \
         the fdatasync when one falls due\n\n",
        ByteSize(plan.total_bytes),
        ByteSize(plan.batch_bytes as u64),
        ByteSize(plan.sync_every_bytes),
        ByteSize(plan.segment_bytes),
    );
    let mut table = Table::new(
        &[
            "record",
            "mode",
            "records/batch",
            "raw MB/s",
            "weir MB/s",
            "weir/raw",
            &format!("target >= {TARGET_WRITE_RATIO:.2}"),
            "weir records/s",
            "raw call p99",
            "weir call p99",
        ],
        2,
    );
    for cell in &report.cells {
        table.row(vec![
            ByteSize(cell.record_bytes as u64).to_string(),
            cell.mode.name().to_owned(),
            format!("{:.0}", cell.mean_records_per_batch),
            format!("{:.0}", cell.raw.mb_per_s),
            format!("{:.0}", cell.weir.mb_per_s),
            format!("{:.3}", cell.weir_to_raw),
            verdict(cell.meets_target).to_owned(),
            grouped(cell.weir.records_per_s as u64),
            format!("{:.0} us", cell.raw.call_p99_us),
            format!("{:.0} us", cell.weir.call_p99_us),
        ]);
    }
    out.push_str(&table.render());

    let read = &report.read;
    out.push_str(&format!(
        "\nRead throughput from the page cache: the {} {} log ({}), start to end in reads of {}, \
         median of {} passes; GB = 10^9 bytes\n\n",
        ByteSize(read.record_bytes as u64),
        read.mode.name(),
        ByteSize(read.log_bytes),
        ByteSize(read.read_bytes as u64),
        read.passes,
    ));
    let mut table = Table::new(
        &[
            "reader",
            "GB/s",
            &format!("target >= {TARGET_READ_GB_PER_S:.1}"),
        ],
        1,
    );
    table.row(vec![
        "pread into one reused buffer".into(),
        format!("{:.2}", read.pread_gb_per_s),
        String::new(),
    ]);
    table.row(vec![
        "weir Log::read (CRC-checked)".into(),
        format!("{:.2}", read.weir_gb_per_s),
        verdict(read.meets_target).into(),
    ]);
    out.push_str(&table.render());
    out
}
