//! `throughput`: append throughput of `weir-log` against plain `write` + `fdatasync` of the
//! very same batches at the same cadence, then sequential read throughput against `pread`,
//! from the page cache.
//!
//! Method, per record size and durability mode (a "cell"):
//!
//! 1. Batches of about `--batch-bytes` are built once with `RecordBatchBuilder` into a ring
//!    of distinct batches (8 MiB), so consecutive writes carry different bytes. Each batch
//!    is reset to what a client sends (base offset 0, no leader epoch) before it is written.
//! 2. Three writers write `--total-bytes` of that ring and, in `group-commit`, make it
//!    durable every `--sync-every-bytes` and once at the end:
//!    - "raw": `write` to a fresh file, `fdatasync`.
//!    - "weir (validate inline)": one thread calls `Log::append`, which validates each
//!      batch (CRC-32C over the batch and a walk of the record framing), patches its
//!      offsets and indexes it, then `Log::wait_durable(last_offset)` at the same points.
//!    - "weir (validated ahead)": a broker does not validate under the partition lock but
//!      where the request arrives, on request-handler threads, and appends batches that
//!      are already checked (`ValidatedBatches` + `Log::append_validated`). On two cores
//!      that takes the CRC and framing walk off the write path and onto the other core.
//!      A "request" thread copies each batch from the ring into a request buffer (as bytes
//!      read from a socket would land), builds `ValidatedBatches` and sends it through a
//!      bounded `sync_channel` (`VALIDATED_QUEUE_DEPTH`) to the appending thread, which
//!      calls `Log::append_validated` and `Log::wait_durable` at the raw cadence. Spent
//!      buffers go back through a second channel, `BUFFER_RETURN_GROUP` at a time and all
//!      of them before the appending thread blocks (on the queue or on a sync), so the
//!      pipeline allocates no buffers as it runs and the appending thread wakes the
//!      request thread once per group, not once per batch (a wake costs about as much as
//!      the validation it moves; see the constants). The two threads are pinned to two
//!      different CPUs (see `affinity`); on a single CPU they are not pinned.
//! 3. The clock covers the writes and the syncs, not the open or the close; for the
//!    pipeline it runs from the release of the first batch to the final sync (or the last
//!    append in `none`), so filling and draining the queue are timed. The per-call
//!    latencies are of one write or append call (on the appending thread), including the
//!    sync when one falls due. After each run, untimed, the file is synced (raw) or the log
//!    closed (which syncs), deleted, and the file system flushed with `syncfs`, so every
//!    run starts from empty files in the same directory with no writeback, journal commit
//!    or discard of the previous run still pending (the bench disk may be mounted with
//!    `discard`). Rounds rotate which writer goes first.
//!
//! Both weir writers check, at O(1) cost per call, that offsets follow on from one append
//! to the next and that each wait leaves the log durable past the last offset.
//!
//! The log written last by "weir (validate inline)" (1 KiB, group-commit by default) is
//! then read back from the page cache with `Log::read(offset, 1 MiB, None)` from start to
//! end, and its segment files with `pread` into one reused 1 MiB buffer, as the reference.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use bytes::BytesMut;
use clap::{Args, ValueEnum};
use serde::Serialize;
use weir_benches::byte_size::ByteSize;
use weir_benches::workload::{BatchPool, BatchShape, DEFAULT_SEED};
use weir_log::config::{MAX_SEGMENT_BYTES, MIN_SEGMENT_BYTES};
use weir_log::{AppendInfo, Compression, FlushPolicy, Log, LogConfig, ValidatedBatches, batch};

use crate::affinity;
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
/// Directory of the log "weir (validate inline)" writes, inside the run directory.
const LOG_DIR: &str = "log";
/// Directory of the log "weir (validated ahead)" writes, inside the run directory.
const AHEAD_LOG_DIR: &str = "log-validated-ahead";
/// Request buffers "weir (validated ahead)" cycles through: at most this many requests are
/// in flight between the request thread and the appending thread (about 1 MiB of 64 KiB
/// batches), enough to ride out either thread being descheduled for a while.
const REQUEST_BUFFERS: usize = 16;
/// Capacity of the queue of validated requests in "weir (validated ahead)". It holds every
/// buffer, so the request thread never waits for room in it, only for free buffers: were it
/// to block on a full queue, every append would have to wake it, a futex wake and an
/// inter-processor interrupt per batch (about 4 us on this kind of VM, as much as the
/// validation it takes off the write path).
const VALIDATED_QUEUE_DEPTH: usize = REQUEST_BUFFERS;
/// Spent buffers the appending thread of "weir (validated ahead)" hands back together (and
/// all it holds whenever it is about to wait for a request), so the request thread is woken
/// once per group rather than once per batch.
const BUFFER_RETURN_GROUP: usize = 8;
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
    validated_queue_depth: usize,
    request_buffers: usize,
    buffer_return_group: usize,
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
            validated_queue_depth: VALIDATED_QUEUE_DEPTH,
            request_buffers: REQUEST_BUFFERS,
            buffer_return_group: BUFFER_RETURN_GROUP,
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

/// weir-log: `Log::append` (or `Log::append_validated`), `Log::wait_durable`. It also
/// checks, at O(1) cost per call, that the log does what the figures assume: offsets follow
/// on from one append to the next, and a wait leaves the log claiming durability past the
/// last offset (a log that skipped its syncs would otherwise just look fast).
struct WeirWriter {
    log: Log,
    last_offset: i64,
}

impl WeirWriter {
    fn append_validated(&mut self, batches: &mut ValidatedBatches) -> anyhow::Result<()> {
        let info = self
            .log
            .append_validated(batches, NO_LEADER_EPOCH)
            .context("Log::append_validated")?;
        self.follows_on(info)
    }

    fn follows_on(&mut self, info: AppendInfo) -> anyhow::Result<()> {
        ensure!(
            info.base_offset == self.last_offset + 1 && info.last_offset >= info.base_offset,
            "the log assigned offsets {}..={} after offset {}",
            info.base_offset,
            info.last_offset,
            self.last_offset
        );
        self.last_offset = info.last_offset;
        Ok(())
    }
}

impl Writer for WeirWriter {
    fn write(&mut self, batch: &mut [u8]) -> anyhow::Result<()> {
        let info = self
            .log
            .append(batch, NO_LEADER_EPOCH)
            .context("Log::append")?;
        self.follows_on(info)
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
    /// "weir (validated ahead)" only: time the request thread spent copying and validating
    /// (not waiting on either channel).
    request_busy: Option<Duration>,
    /// "weir (validated ahead)" only: the CPUs the appending and the request thread were
    /// pinned to, if there were two.
    pipeline_cpus: Option<[usize; 2]>,
}

impl WriteRun {
    fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64() / MB
    }
}

/// Counts what a writer has written and says when a group-commit sync falls due, so every
/// writer syncs at the same cadence.
struct Tally {
    mode: Mode,
    sync_every_bytes: u64,
    bytes: u64,
    records: u64,
    batches: u64,
    syncs: u64,
    since_sync: u64,
    call_times: Vec<Duration>,
}

impl Tally {
    fn new(plan: &Plan, mode: Mode, pool: &BatchPool) -> Tally {
        let expected_batches = (plan.total_bytes as f64 / pool.mean_batch_bytes()) as usize + 1;
        Tally {
            mode,
            sync_every_bytes: plan.sync_every_bytes,
            bytes: 0,
            records: 0,
            batches: 0,
            syncs: 0,
            since_sync: 0,
            call_times: Vec::with_capacity(expected_batches),
        }
    }

    /// Counts one batch written; returns whether a sync is now due.
    fn wrote(&mut self, bytes: u64, records: u64) -> bool {
        self.bytes += bytes;
        self.since_sync += bytes;
        self.records += records;
        self.batches += 1;
        self.mode == Mode::GroupCommit && self.since_sync >= self.sync_every_bytes
    }

    /// Whether the run must end with a sync: group commit, and appends since the last one.
    fn final_sync_due(&self) -> bool {
        self.mode == Mode::GroupCommit && self.since_sync > 0
    }

    fn synced(&mut self) {
        self.syncs += 1;
        self.since_sync = 0;
    }

    fn finish(
        mut self,
        elapsed: Duration,
        request_busy: Option<Duration>,
        pipeline_cpus: Option<[usize; 2]>,
    ) -> WriteRun {
        self.call_times.sort_unstable();
        WriteRun {
            elapsed,
            bytes: self.bytes,
            records: self.records,
            batches: self.batches,
            syncs: self.syncs,
            sorted_call_times: self.call_times,
            request_busy,
            pipeline_cpus,
        }
    }
}

/// Writes `plan.total_bytes` of pooled batches through `writer`, syncing as `mode` says.
fn drive(
    writer: &mut impl Writer,
    pool: &mut BatchPool,
    plan: &Plan,
    mode: Mode,
) -> anyhow::Result<WriteRun> {
    let mut tally = Tally::new(plan, mode, pool);
    let started = Instant::now();
    loop {
        let built = pool.next_batch();
        let len = built.bytes.len() as u64;
        if tally.bytes + len > plan.total_bytes {
            break;
        }
        // What a client sends: base offset 0, no leader epoch. A previous append of this
        // pooled batch patched both (they lie outside the CRC).
        batch::patch_offset_and_epoch(&mut built.bytes, 0, NO_LEADER_EPOCH);
        let call = Instant::now();
        writer.write(&mut built.bytes)?;
        if tally.wrote(len, built.records as u64) {
            writer.sync()?;
            tally.synced();
        }
        tally.call_times.push(call.elapsed());
    }
    if tally.final_sync_due() {
        writer.sync()?;
        tally.synced();
    }
    Ok(tally.finish(started.elapsed(), None, None))
}

/// What the request thread of "weir (validated ahead)" did.
struct Requested {
    bytes: u64,
    /// Time spent copying and validating, not waiting on a channel.
    busy: Duration,
}

/// "weir (validated ahead)": the request thread copies and validates, this thread appends
/// and syncs. Writes the same bytes at the same cadence as [`drive`].
fn drive_validated_ahead(
    writer: &mut WeirWriter,
    pool: &mut BatchPool,
    plan: &Plan,
    mode: Mode,
) -> anyhow::Result<WriteRun> {
    let max_batch_bytes = writer.log.config().max_message_bytes;
    let buffer_bytes = pool
        .batches()
        .iter()
        .map(|b| b.bytes.len())
        .max()
        .unwrap_or(0);
    let (validated_tx, validated_rx) = mpsc::sync_channel(VALIDATED_QUEUE_DEPTH);
    // Holds every buffer at once, so handing one back never blocks.
    let (free_tx, free_rx) = mpsc::sync_channel(REQUEST_BUFFERS);
    for _ in 0..REQUEST_BUFFERS {
        free_tx
            .send(BytesMut::with_capacity(buffer_bytes))
            .expect("the free list has room for every buffer");
    }
    let mut tally = Tally::new(plan, mode, pool);
    let total_bytes = plan.total_bytes;
    let cpus = affinity::two_cpus().context("read this thread's CPU affinity")?;
    // Unpinned again when dropped, after the run.
    let _appender_pin = cpus
        .map(|(appender, _)| affinity::pin_this_thread(appender))
        .transpose()
        .context("pin the appending thread")?;
    let start = Barrier::new(2);
    let (appended, elapsed, requested) = thread::scope(|s| {
        let (start, pool) = (&start, &mut *pool);
        let request = s.spawn(move || {
            let pinned = cpus
                .map(|(_, request)| affinity::pin_this_thread(request))
                .transpose()
                .context("pin the request thread");
            start.wait();
            let _request_pin = pinned?;
            request_loop(pool, total_bytes, max_batch_bytes, free_rx, validated_tx)
        });
        start.wait();
        let started = Instant::now();
        // Takes both channel ends, so if it fails the request thread sees them closed
        // and stops.
        let appended = append_loop(writer, &mut tally, validated_rx, free_tx);
        let elapsed = started.elapsed();
        let requested = request
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (appended, elapsed, requested)
    });
    appended?;
    let requested = requested?;
    ensure!(
        requested.bytes == tally.bytes,
        "the request thread sent {} bytes but {} were appended",
        requested.bytes,
        tally.bytes
    );
    Ok(tally.finish(
        elapsed,
        Some(requested.busy),
        cpus.map(|(appender, request)| [appender, request]),
    ))
}

/// The request thread of "weir (validated ahead)": takes each batch as a client sends it
/// into a free request buffer, validates it and queues it for the appending thread, until
/// the next batch would pass `total_bytes`.
fn request_loop(
    pool: &mut BatchPool,
    total_bytes: u64,
    max_batch_bytes: usize,
    free: Receiver<BytesMut>,
    validated: SyncSender<ValidatedBatches>,
) -> anyhow::Result<Requested> {
    let mut requested = Requested {
        bytes: 0,
        busy: Duration::ZERO,
    };
    loop {
        let built = pool.next_batch();
        let len = built.bytes.len() as u64;
        if requested.bytes + len > total_bytes {
            return Ok(requested);
        }
        // Closed: the appending thread failed, and its error is the one reported.
        let Ok(mut buffer) = free.recv() else {
            return Ok(requested);
        };
        let busy = Instant::now();
        buffer.clear();
        buffer.extend_from_slice(&built.bytes);
        batch::patch_offset_and_epoch(&mut buffer, 0, NO_LEADER_EPOCH);
        let request =
            ValidatedBatches::new(buffer, max_batch_bytes).context("ValidatedBatches::new")?;
        requested.busy += busy.elapsed();
        if validated.send(request).is_err() {
            return Ok(requested);
        }
        requested.bytes += len;
    }
}

/// The appending thread of "weir (validated ahead)": appends each validated request,
/// syncs at the cadence `tally` keeps, and hands spent buffers back in groups; ends with
/// the final sync once the request thread has sent everything.
fn append_loop(
    writer: &mut WeirWriter,
    tally: &mut Tally,
    validated: Receiver<ValidatedBatches>,
    free: SyncSender<BytesMut>,
) -> anyhow::Result<()> {
    let mut spent = Vec::with_capacity(BUFFER_RETURN_GROUP);
    loop {
        let mut request = match validated.try_recv() {
            Ok(request) => request,
            Err(TryRecvError::Empty) => {
                // About to wait: the request thread may be waiting for these.
                give_back(&free, &mut spent);
                let Ok(request) = validated.recv() else {
                    break;
                };
                request
            }
            Err(TryRecvError::Disconnected) => break,
        };
        let len = request.bytes().len() as u64;
        let records = request
            .headers()
            .iter()
            .map(|h| u64::try_from(h.record_count).unwrap_or(0))
            .sum();
        let call = Instant::now();
        writer.append_validated(&mut request)?;
        // The log wrote from the request's own buffer and kept no reference to it.
        spent.push(
            request
                .into_bytes()
                .try_into_mut()
                .unwrap_or_else(|shared| BytesMut::from(&shared[..])),
        );
        if tally.wrote(len, records) {
            // About to block in the sync: let the request thread refill meanwhile.
            give_back(&free, &mut spent);
            writer.sync()?;
            tally.synced();
        }
        tally.call_times.push(call.elapsed());
        if spent.len() >= BUFFER_RETURN_GROUP {
            give_back(&free, &mut spent);
        }
    }
    if tally.final_sync_due() {
        writer.sync()?;
        tally.synced();
    }
    Ok(())
}

/// Hands spent request buffers back to the request thread.
fn give_back(free: &SyncSender<BytesMut>, spent: &mut Vec<BytesMut>) {
    for buffer in spent.drain(..) {
        // An error means the request thread has finished and needs no more buffers.
        let _ = free.send(buffer);
    }
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

/// Runs one of the weir writers on a fresh log, then closes it (which syncs) and deletes
/// it unless `keep`.
fn run_weir(
    work: &Path,
    system: System,
    pool: &mut BatchPool,
    plan: &Plan,
    mode: Mode,
    keep: bool,
) -> anyhow::Result<WriteRun> {
    let dir = work.join(system.log_dir().context("raw writes no log")?);
    let log = Log::open(&dir, log_config(plan, mode))
        .with_context(|| format!("open a log in {}", dir.display()))?;
    let mut writer = WeirWriter {
        log,
        last_offset: -1,
    };
    let run = if system == System::WeirAhead {
        drive_validated_ahead(&mut writer, pool, plan, mode)?
    } else {
        drive(&mut writer, pool, plan, mode)?
    };
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

/// The writers each cell measures, in the order of the first round.
const SYSTEMS: [System; 3] = [System::Raw, System::WeirInline, System::WeirAhead];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum System {
    Raw,
    /// `Log::append` on one thread, validating inline.
    WeirInline,
    /// `ValidatedBatches` on a request thread, `Log::append_validated` on this one.
    WeirAhead,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Raw => "raw",
            System::WeirInline => "weir (validate inline)",
            System::WeirAhead => "weir (validated ahead)",
        }
    }

    /// Directory of the log this writer writes, in the run directory.
    fn log_dir(self) -> Option<&'static str> {
        match self {
            System::Raw => None,
            System::WeirInline => Some(LOG_DIR),
            System::WeirAhead => Some(AHEAD_LOG_DIR),
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
    /// "weir (validated ahead)" only: the share of the run the request thread spent
    /// copying and validating.
    #[serde(skip_serializing_if = "Option::is_none")]
    request_thread_busy_share: Option<f64>,
    /// "weir (validated ahead)" only: the CPUs the appending and the request thread were
    /// pinned to (absent if the bench may use only one CPU).
    #[serde(skip_serializing_if = "Option::is_none")]
    appender_and_request_cpus: Option<[usize; 2]>,
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
            request_thread_busy_share: run
                .request_busy
                .map(|busy| busy.as_secs_f64() / run.elapsed.as_secs_f64()),
            appender_and_request_cpus: run.pipeline_cpus,
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
    /// "weir (validate inline)": `Log::append` on one thread.
    weir: WriterReport,
    weir_to_raw: f64,
    /// "weir (validated ahead)": validation on a request thread, `Log::append_validated`.
    weir_validated_ahead: WriterReport,
    weir_validated_ahead_to_raw: f64,
    target_weir_to_raw: f64,
    /// Whether "weir (validate inline)" meets the target.
    meets_target: bool,
    /// Whether "weir (validated ahead)" meets the target.
    validated_ahead_meets_target: bool,
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
            let (mut raw_runs, mut inline_runs, mut ahead_runs) =
                (Vec::new(), Vec::new(), Vec::new());
            for round in 0..plan.rounds {
                let mut order = SYSTEMS;
                order.rotate_left(round as usize % SYSTEMS.len());
                for system in order {
                    let label = format!(
                        "{} {} {}",
                        ByteSize(record_bytes as u64),
                        mode.name(),
                        system.name()
                    );
                    let run = match system {
                        System::Raw => run_raw(work.path(), &mut pool, &plan, mode)?,
                        System::WeirInline | System::WeirAhead => {
                            // The last cell's inline log stays for the read test.
                            let keep = system == System::WeirInline
                                && last_cell
                                && round + 1 == plan.rounds;
                            run_weir(work.path(), system, &mut pool, &plan, mode, keep)?
                        }
                    };
                    progress!("{label}: {:.0} MB/s", run.mb_per_s());
                    match system {
                        System::Raw => raw_runs.push(run),
                        System::WeirInline => inline_runs.push(run),
                        System::WeirAhead => ahead_runs.push(run),
                    }
                }
            }
            let raw = WriterReport::new(&raw_runs);
            let weir = WriterReport::new(&inline_runs);
            let weir_validated_ahead = WriterReport::new(&ahead_runs);
            let weir_to_raw = weir.mb_per_s / raw.mb_per_s;
            let weir_validated_ahead_to_raw = weir_validated_ahead.mb_per_s / raw.mb_per_s;
            cells.push(CellReport {
                record_bytes,
                mode,
                mean_batch_bytes: pool.mean_batch_bytes(),
                mean_records_per_batch: pool.mean_records(),
                raw,
                weir,
                weir_to_raw,
                weir_validated_ahead,
                weir_validated_ahead_to_raw,
                target_weir_to_raw: TARGET_WRITE_RATIO,
                meets_target: weir_to_raw >= TARGET_WRITE_RATIO,
                validated_ahead_meets_target: weir_validated_ahead_to_raw >= TARGET_WRITE_RATIO,
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
         group-commit: one fdatasync per {}; weir segments of {}; median of {} rounds\n\
         weir (validate inline): Log::append on one thread (CRC and framing checked \
         inside the call)\n\
         weir (validated ahead): a request thread copies and validates (ValidatedBatches), \
         the appending thread calls Log::append_validated; {} request buffers, queue of {}, \
         buffers returned {} at a time; {}\n\
         MB = 10^6 bytes; call p50/p99 = percentiles of one write/append call (on the \
         appending thread), including the fdatasync when one falls due\n\n",
        ByteSize(plan.total_bytes),
        ByteSize(plan.batch_bytes as u64),
        ByteSize(plan.sync_every_bytes),
        ByteSize(plan.segment_bytes),
        plan.rounds,
        plan.request_buffers,
        plan.validated_queue_depth,
        plan.buffer_return_group,
        match report
            .cells
            .first()
            .and_then(|c| c.weir_validated_ahead.appender_and_request_cpus)
        {
            Some([appender, request]) => {
                format!("appending thread on CPU {appender}, request thread on CPU {request}")
            }
            None => "threads not pinned (one CPU)".to_owned(),
        },
    );
    let mut table = Table::new(
        [
            "record",
            "mode",
            "writer",
            "records/batch",
            "MB/s",
            "vs raw",
            &format!("target >= {TARGET_WRITE_RATIO:.2}"),
            "records/s",
            "call p50",
            "call p99",
        ],
        3,
    );
    for cell in &report.cells {
        let writers = [
            (System::Raw, &cell.raw, None),
            (
                System::WeirInline,
                &cell.weir,
                Some((cell.weir_to_raw, cell.meets_target)),
            ),
            (
                System::WeirAhead,
                &cell.weir_validated_ahead,
                Some((
                    cell.weir_validated_ahead_to_raw,
                    cell.validated_ahead_meets_target,
                )),
            ),
        ];
        for (system, writer, vs_raw) in writers {
            table.row(vec![
                ByteSize(cell.record_bytes as u64).to_string(),
                cell.mode.name().to_owned(),
                system.name().to_owned(),
                format!("{:.0}", cell.mean_records_per_batch),
                format!("{:.0}", writer.mb_per_s),
                vs_raw.map_or_else(String::new, |(ratio, _)| format!("{ratio:.3}")),
                vs_raw.map_or_else(String::new, |(_, ok)| verdict(ok).to_owned()),
                grouped(writer.records_per_s as u64),
                format!("{:.0} us", writer.call_p50_us),
                format!("{:.0} us", writer.call_p99_us),
            ]);
        }
    }
    out.push_str(&table.render());
    out.push_str(
        "\nweir (validated ahead), request thread busy copying and validating, share of the run:",
    );
    for cell in &report.cells {
        if let Some(share) = cell.weir_validated_ahead.request_thread_busy_share {
            out.push_str(&format!(
                " {} {} {:.0}%;",
                ByteSize(cell.record_bytes as u64),
                cell.mode.name(),
                share * 100.0
            ));
        }
    }
    out.pop();
    out.push('\n');

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
        [
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
