//! `weir-limits`: what this machine itself can do, measured with the simplest code that
//! does the same kind of work as Weir's data path, so that a benchmark figure can be read
//! as a share of the machine's own limit measured in the same run (`benches/data-path.sh`).
//!
//! - `loopback_tcp`: one plain TCP stream on 127.0.0.1 (a port the tool binds itself;
//!   nothing leaves loopback), one writer thread sending 1 MiB `write`s and one reader
//!   thread reading into a 1 MiB buffer, in one process.
//! - `loopback_tcp_2proc`: the same stream with the writer in a second process (this
//!   binary re-run with the hidden `tcp-send` command), as a producer and a broker are.
//! - `write_fdatasync`: 1 MiB appends to a fresh file, each followed by `fdatasync` (what
//!   a group commit of 1 MiB costs at best).
//! - `write_fdatasync_overwrite`: the same writes and syncs over a file already written
//!   whole and synced (blocks allocated, size final): what preallocated, zero-filled or
//!   reused segment files would make a sync cost.
//! - `write_only`: the same appends without any sync (page cache). On a virtual machine
//!   this is not one figure: a page-cache page is only as fast to fill as the memory
//!   under it is to get. A VM whose balloon device reports free pages (Firecracker's
//!   and QEMU's `free-page-reporting`) hands freed memory back to the host within a
//!   few seconds, and each page taken again costs the host a fault: measured here,
//!   1 MiB appends into such memory ran at 1.0-1.4 GB/s, into memory freed a moment
//!   before at 4.2 GB/s, and into memory the VM had never touched at 0.33 GB/s. So
//!   every file is deleted and the tool then waits [`FREED_MEMORY_SETTLE`] before it
//!   goes on: the next append starts from memory in the state a broker's appends of
//!   new data find it in, not from pages the previous measurement just freed.
//! - `memcpy`: one thread copying a 1 MiB buffer into another, over and over.
//! - `aes128gcm_seal` and `aes128gcm_open`: one thread encrypting (and authenticating)
//!   16 KiB records in place with AES-128-GCM, and checking and decrypting them, through
//!   `ring`, the provider Weir's rustls uses, with the cipher suite its TLS listeners
//!   prefer. A TLS record carries at most 16 KiB, so this is what every byte of a TLS
//!   connection costs each end at best: the figure TLS's share of the data path is read
//!   against (BENCHMARKS.md § TLS on the data path).
//! - `recv_append`, `recv_append_fdatasync`, `recv_append_sync_thread`,
//!   `recv_append_direct` and `sendfile_send`: the kernel's floor under a broker's produce
//!   (bytes received from a loopback socket and appended to a file, without `fdatasync`,
//!   with it in turn or from a second thread, or with `O_DIRECT`) and consume (a file sent
//!   to a socket with `sendfile`),
//!   each also as CPU seconds per GB of the process doing the broker's part (`floor.rs`):
//!   what the broker's own CPU per GB is read against. With `--resident-bytes`, the
//!   produce floors run while a file of that many bytes, written just before, is still
//!   in the page cache: on a VM, the pages an append gets once the page cache holds a
//!   few GB can cost several times what the first ones did (BENCHMARKS.md § The floor in
//!   the broker's state), so a produce row that follows others is read against a floor
//!   measured in the same state.
//!
//! Every measurement is bounded twice: it stops after its byte count or after `--max-secs`
//! (10 s by default), whichever comes first, and reports the bytes it moved in the time it
//! took. The clock runs from the first byte (TCP: the accepted connection) to the last
//! (TCP: end of stream at the reader). Rates are decimal: 1 GB = 10^9 bytes, 1 MB = 10^6.
//!
//! Results go to stdout (a table, or with `--format json` one JSON object per line, schema
//! `weir-limits/1`); progress goes to stderr. Files are written in a fresh directory
//! under `--dir` that is removed at the end.

use std::fs::{self, File, OpenOptions};
use std::hint::black_box;
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail, ensure};
use clap::{Args, Parser, Subcommand, ValueEnum};
use floor::{Append, recv_append, sendfile_send, tcp_recv_process};
use serde::Serialize;
use weir_bench_report::{Format, Table, emit, exit_code, grouped};
use weir_benches::byte_size::ByteSize;

/// Size of every write, read and copy.
const CHUNK_BYTES: usize = 1 << 20;
/// Bytes sent over loopback TCP (each variant) unless `--bytes`.
const DEFAULT_TCP_BYTES: ByteSize = ByteSize::gib(8);
/// Bytes written to the file (with and without fdatasync) unless `--disk-bytes`.
const DEFAULT_DISK_BYTES: ByteSize = ByteSize::gib(2);
/// Bytes copied unless `--memcpy-bytes`.
const DEFAULT_MEMCPY_BYTES: ByteSize = ByteSize::gib(16);
/// Most seconds one measurement runs, unless `--max-secs`.
const DEFAULT_MAX_SECS: u64 = 10;
/// Largest `--max-secs` accepted: the tool is meant to be quick.
const MAX_SECS_LIMIT: u64 = 600;
/// How much longer than its own time bound a TCP measurement waits for the other end
/// (to connect, to finish its last write, to exit) before it gives up with an error.
const PEER_GRACE: Duration = Duration::from_secs(5);
/// How often an accept with a deadline looks again.
const ACCEPT_POLL: Duration = Duration::from_millis(1);
/// How long the tool waits after deleting a file, so the memory its page cache held is
/// handed back to the host (where the VM reports free pages: seen here within 2-4.5 s of
/// a 1 GiB delete) before the next measurement, as the module docs explain. None in the
/// unit tests, which measure nothing.
const FREED_MEMORY_SETTLE: Duration = if cfg!(test) {
    Duration::ZERO
} else {
    Duration::from_secs(5)
};
/// Decimal units, as network and disk rates are quoted.
const BYTES_PER_GB: f64 = 1e9;
const BYTES_PER_MB: f64 = 1e6;
/// The schema of the JSON lines.
const SCHEMA: &str = "weir-limits/1";
/// Plaintext bytes of one TLS record at most (RFC 8446 § 5.1), the unit the cipher limits
/// seal and open.
const TLS_RECORD_BYTES: usize = 1 << 14;
/// Bytes sealed (and opened) unless `--cipher-bytes`.
const DEFAULT_CIPHER_BYTES: ByteSize = ByteSize::gib(4);
/// Seed of the bytes written (any non-trivial pattern; nothing here compresses).
const PATTERN_SEED: u64 = 0x9E37_79B9_7F4A_7C15;

const EXAMPLES: &str = "\
Examples:
  # Every limit, with the default sizes (8 GiB of TCP, 2 GiB of file, 16 GiB of memcpy),
  # each stopped after at most 10 s:
  weir-limits
  # The same as JSON lines, for a script:
  weir-limits --format json
  # Only the disk, on the disk the broker writes to, with less data:
  weir-limits --only write_fdatasync,write_only --dir /mnt/nvme/weir --disk-bytes 512MiB
  # A quick look (at most about 2 s per limit):
  weir-limits --bytes 1GiB --disk-bytes 256MiB --memcpy-bytes 2GiB --max-secs 2
  # What TLS's cipher costs one core, each way:
  weir-limits --only aes128gcm_seal,aes128gcm_open
  # The produce floor with 2 GiB already in the page cache, as a broker's produce that
  # follows 2 GiB of earlier writes meets it:
  weir-limits --only recv_append --resident-bytes 2GiB

Rates are decimal: 1 GB = 10^9 bytes, 1 MB = 10^6 bytes. TCP traffic stays on 127.0.0.1.";

#[derive(Debug, Parser)]
#[command(
    name = "weir-limits",
    version,
    about = "This machine's own limits (loopback TCP, write+fdatasync, page cache writes, \
             memcpy, AES-128-GCM), to put Weir's data-path figures beside",
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Internal>,

    #[command(flatten)]
    limits: LimitsArgs,
}

/// What to measure, how much and where.
#[derive(Debug, Args)]
struct LimitsArgs {
    /// Limits to measure, comma-separated [default: all, in this order].
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = Limit::ALL)]
    only: Vec<Limit>,

    /// Bytes to send over loopback TCP, per variant.
    #[arg(long, default_value_t = DEFAULT_TCP_BYTES)]
    bytes: ByteSize,

    /// Bytes to write to the file, with fdatasync and without.
    #[arg(long, default_value_t = DEFAULT_DISK_BYTES)]
    disk_bytes: ByteSize,

    /// Bytes the page cache holds already when a produce floor (`recv_append*`) starts:
    /// written to a file of their own first (untimed) and kept until it ends, as a
    /// broker's earlier writes are when a produce follows them (0: none).
    #[arg(long, default_value_t = ByteSize(0))]
    resident_bytes: ByteSize,

    /// Bytes to copy in memory.
    #[arg(long, default_value_t = DEFAULT_MEMCPY_BYTES)]
    memcpy_bytes: ByteSize,

    /// Bytes to seal, and to open, with AES-128-GCM.
    #[arg(long, default_value_t = DEFAULT_CIPHER_BYTES)]
    cipher_bytes: ByteSize,

    /// Most seconds one measurement runs; it reports what it moved in that time.
    #[arg(long, default_value_t = DEFAULT_MAX_SECS,
          value_parser = clap::value_parser!(u64).range(1..=MAX_SECS_LIMIT))]
    max_secs: u64,

    /// Directory the file limits write under (a fresh directory inside it, removed at
    /// the end) [default: the system's temporary directory].
    #[arg(long, env = "WEIR_LIMITS_DIR")]
    dir: Option<PathBuf>,

    /// Output format (progress always goes to stderr).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, Subcommand)]
enum Internal {
    /// Internal: the writing end of `loopback_tcp_2proc` and the produce floors. Connects
    /// to ADDR, sends BYTES in 1 MiB writes (or for MAX_SECS), closes, and prints the
    /// bytes sent.
    #[command(hide = true)]
    TcpSend(PeerArgs),
    /// Internal: the reading end of `sendfile_send`. Connects to ADDR, reads until the
    /// sender closes (at most BYTES), and prints the bytes received.
    #[command(hide = true)]
    TcpRecv(PeerArgs),
}

/// Where a peer process connects, and how much and how long it moves.
#[derive(Debug, Args)]
struct PeerArgs {
    #[arg(long)]
    addr: SocketAddr,
    #[arg(long)]
    bytes: u64,
    #[arg(long)]
    max_secs: u64,
}

/// One limit. The names are the `limit` field of the JSON lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Limit {
    #[value(name = "loopback_tcp")]
    LoopbackTcp,
    #[value(name = "loopback_tcp_2proc")]
    LoopbackTcp2Proc,
    #[value(name = "write_fdatasync")]
    WriteFdatasync,
    #[value(name = "write_fdatasync_overwrite")]
    WriteFdatasyncOverwrite,
    #[value(name = "write_only")]
    WriteOnly,
    #[value(name = "recv_append")]
    RecvAppend,
    #[value(name = "recv_append_fdatasync")]
    RecvAppendFdatasync,
    #[value(name = "recv_append_sync_thread")]
    RecvAppendSyncThread,
    #[value(name = "recv_append_direct")]
    RecvAppendDirect,
    #[value(name = "sendfile_send")]
    SendfileSend,
    #[value(name = "memcpy")]
    Memcpy,
    #[value(name = "aes128gcm_seal")]
    Aes128GcmSeal,
    #[value(name = "aes128gcm_open")]
    Aes128GcmOpen,
}

impl Limit {
    /// Every limit, in the order they run: the synced writes before the unsynced ones, so
    /// the page cache writes leave no writeback behind for the fdatasync to wait on.
    const ALL: [Limit; 13] = [
        Limit::LoopbackTcp,
        Limit::LoopbackTcp2Proc,
        Limit::WriteFdatasync,
        Limit::WriteFdatasyncOverwrite,
        Limit::RecvAppendFdatasync,
        Limit::RecvAppendSyncThread,
        Limit::WriteOnly,
        Limit::RecvAppend,
        Limit::RecvAppendDirect,
        Limit::SendfileSend,
        Limit::Memcpy,
        Limit::Aes128GcmSeal,
        Limit::Aes128GcmOpen,
    ];

    fn name(self) -> &'static str {
        match self {
            Limit::LoopbackTcp => "loopback_tcp",
            Limit::LoopbackTcp2Proc => "loopback_tcp_2proc",
            Limit::WriteFdatasync => "write_fdatasync",
            Limit::WriteFdatasyncOverwrite => "write_fdatasync_overwrite",
            Limit::WriteOnly => "write_only",
            Limit::RecvAppend => "recv_append",
            Limit::RecvAppendFdatasync => "recv_append_fdatasync",
            Limit::RecvAppendSyncThread => "recv_append_sync_thread",
            Limit::RecvAppendDirect => "recv_append_direct",
            Limit::SendfileSend => "sendfile_send",
            Limit::Memcpy => "memcpy",
            Limit::Aes128GcmSeal => "aes128gcm_seal",
            Limit::Aes128GcmOpen => "aes128gcm_open",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Limit::LoopbackTcp => "1 TCP stream on 127.0.0.1, writer and reader threads, 1 process",
            Limit::LoopbackTcp2Proc => {
                "1 TCP stream on 127.0.0.1, writer and reader in 2 processes"
            }
            Limit::WriteFdatasync => "1 MiB appends to a file, fdatasync after each",
            Limit::WriteFdatasyncOverwrite => {
                "as write_fdatasync, over a file already written and synced (no allocation)"
            }
            Limit::WriteOnly => "1 MiB appends to a file, no sync (page cache)",
            Limit::RecvAppend => {
                "loopback TCP from a 2nd process, each read appended to a file (produce floor)"
            }
            Limit::RecvAppendFdatasync => {
                "as recv_append, fdatasync after each 1 MiB (durable produce floor)"
            }
            Limit::RecvAppendSyncThread => {
                "as recv_append_fdatasync, the syncs from a 2nd thread beside the appends"
            }
            Limit::RecvAppendDirect => {
                "as recv_append, gathered into 1 MiB and written with O_DIRECT (no page cache)"
            }
            Limit::SendfileSend => {
                "a cached file sent to a 2nd process with sendfile, 1 MiB a call (consume floor)"
            }
            Limit::Memcpy => "1 MiB buffer copied into another, 1 thread",
            Limit::Aes128GcmSeal => "16 KiB records sealed in place, AES-128-GCM (ring), 1 thread",
            Limit::Aes128GcmOpen => "16 KiB records opened in place, AES-128-GCM (ring), 1 thread",
        }
    }

    /// Whether it is a produce floor (`floor.rs`'s `recv_append`), which
    /// `--resident-bytes` applies to.
    fn is_produce_floor(self) -> bool {
        matches!(
            self,
            Limit::RecvAppend
                | Limit::RecvAppendFdatasync
                | Limit::RecvAppendSyncThread
                | Limit::RecvAppendDirect
        )
    }

    /// Bytes in each write, read, copy or record.
    fn chunk(self) -> usize {
        match self {
            Limit::Aes128GcmSeal | Limit::Aes128GcmOpen => TLS_RECORD_BYTES,
            _ => CHUNK_BYTES,
        }
    }

    /// The unit it is best read in: network and memory in GB/s, the disk in MB/s.
    fn unit(self) -> Unit {
        match self {
            Limit::WriteFdatasync
            | Limit::WriteFdatasyncOverwrite
            | Limit::WriteOnly
            | Limit::RecvAppendFdatasync
            | Limit::RecvAppendSyncThread => Unit::MbPerSec,
            _ => Unit::GbPerSec,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Unit {
    GbPerSec,
    MbPerSec,
}

/// One measurement: a JSON line, or a row of the table.
#[derive(Debug, Serialize)]
struct Measurement {
    schema: &'static str,
    limit: &'static str,
    what: &'static str,
    /// Bytes moved (end to end: received, written or copied).
    bytes: u64,
    /// Bytes it was asked to move.
    target_bytes: u64,
    seconds: f64,
    bytes_per_sec: f64,
    /// 10^9 bytes per second.
    gb_per_sec: f64,
    /// 10^6 bytes per second.
    mb_per_sec: f64,
    /// The figure in the unit it reads best in, and that unit.
    value: f64,
    unit: &'static str,
    /// Whether `--max-secs` ended it before `target_bytes`.
    stopped_by_time: bool,
    chunk_bytes: usize,
    /// Where the file limits wrote.
    #[serde(skip_serializing_if = "Option::is_none")]
    dir: Option<String>,
    /// The floors (`floor.rs`): user+sys CPU seconds of the process doing the broker's
    /// part, and that per 10^9 bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu_seconds_per_gb: Option<f64>,
    /// `--resident-bytes`, for the produce floors it applies to.
    #[serde(skip_serializing_if = "Option::is_none")]
    resident_bytes: Option<u64>,
}

impl Measurement {
    fn new(limit: Limit, target: u64, moved: u64, elapsed: Duration) -> Measurement {
        let seconds = elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
        let bytes_per_sec = moved as f64 / seconds;
        let (value, unit) = match limit.unit() {
            Unit::GbPerSec => (bytes_per_sec / BYTES_PER_GB, "GB/s"),
            Unit::MbPerSec => (bytes_per_sec / BYTES_PER_MB, "MB/s"),
        };
        Measurement {
            schema: SCHEMA,
            limit: limit.name(),
            what: limit.describe(),
            bytes: moved,
            target_bytes: target,
            seconds,
            bytes_per_sec,
            gb_per_sec: bytes_per_sec / BYTES_PER_GB,
            mb_per_sec: bytes_per_sec / BYTES_PER_MB,
            value,
            unit,
            stopped_by_time: moved < target,
            chunk_bytes: limit.chunk(),
            dir: None,
            cpu_seconds: None,
            cpu_seconds_per_gb: None,
            resident_bytes: None,
        }
    }

    /// A floor's: with the CPU time the broker's side took, and the directory its file
    /// was in.
    fn with_cpu(mut self, cpu: Duration, dir: &Path) -> Measurement {
        let seconds = cpu.as_secs_f64();
        self.cpu_seconds = Some(seconds);
        self.cpu_seconds_per_gb = Some(seconds / (self.bytes.max(1) as f64 / BYTES_PER_GB));
        self.dir = Some(dir.display().to_string());
        self
    }
}

/// A progress line on stderr.
macro_rules! progress {
    ($($arg:tt)*) => {
        eprintln!("[weir-limits] {}", format_args!($($arg)*))
    };
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => run(&cli.limits),
        Some(Internal::TcpSend(p)) => {
            tcp_send_process(p.addr, p.bytes, Duration::from_secs(p.max_secs))
        }
        Some(Internal::TcpRecv(p)) => {
            tcp_recv_process(p.addr, p.bytes, Duration::from_secs(p.max_secs))
        }
    };
    exit_code(result)
}

mod floor;

fn run(args: &LimitsArgs) -> anyhow::Result<()> {
    for (flag, size) in [
        ("--bytes", args.bytes),
        ("--disk-bytes", args.disk_bytes),
        ("--memcpy-bytes", args.memcpy_bytes),
        ("--cipher-bytes", args.cipher_bytes),
    ] {
        ensure!(size.bytes() > 0, "{flag} must be above zero");
    }
    let max = Duration::from_secs(args.max_secs);
    let mut limits = args.only.clone();
    limits.dedup();
    // Only made when a file limit runs; removed (with anything left in it) when dropped.
    let mut run_dir = None;
    let mut results = Vec::new();
    for limit in limits {
        let m = match limit {
            Limit::LoopbackTcp => loopback_tcp_threads(args.bytes.bytes(), max)?,
            Limit::LoopbackTcp2Proc => loopback_tcp_processes(args.bytes.bytes(), max)?,
            Limit::WriteFdatasync
            | Limit::WriteFdatasyncOverwrite
            | Limit::WriteOnly
            | Limit::RecvAppend
            | Limit::RecvAppendFdatasync
            | Limit::RecvAppendSyncThread
            | Limit::RecvAppendDirect
            | Limit::SendfileSend => {
                if run_dir.is_none() {
                    run_dir = Some(create_run_dir(args.dir.as_deref())?);
                }
                let dir = run_dir.as_ref().expect("created above").path();
                let total = args.disk_bytes.bytes();
                let resident_bytes = args.resident_bytes.bytes();
                let resident = (limit.is_produce_floor() && resident_bytes > 0)
                    .then(|| Resident::write(dir, resident_bytes))
                    .transpose()?;
                let m = match limit {
                    Limit::WriteFdatasync => write_file(dir, total, max, WriteMode::Fdatasync)?,
                    Limit::WriteFdatasyncOverwrite => {
                        write_file(dir, total, max, WriteMode::FdatasyncOverwrite)?
                    }
                    Limit::WriteOnly => write_file(dir, total, max, WriteMode::PageCache)?,
                    Limit::RecvAppend => recv_append(dir, total, max, Append::PageCache)?,
                    Limit::RecvAppendFdatasync => {
                        recv_append(dir, total, max, Append::PageCacheFdatasync)?
                    }
                    Limit::RecvAppendSyncThread => {
                        recv_append(dir, total, max, Append::PageCacheSyncThread)?
                    }
                    Limit::RecvAppendDirect => recv_append(dir, total, max, Append::Direct)?,
                    _ => sendfile_send(dir, total, max)?,
                };
                match resident {
                    Some(resident) => m.after(resident)?,
                    None => m,
                }
            }
            Limit::Memcpy => memcpy(args.memcpy_bytes.bytes(), max),
            Limit::Aes128GcmSeal => aes_128_gcm(args.cipher_bytes.bytes(), max, Direction::Seal)?,
            Limit::Aes128GcmOpen => aes_128_gcm(args.cipher_bytes.bytes(), max, Direction::Open)?,
        };
        progress!(
            "{}: {} in {:.2} s: {:.3} {}{}{}",
            m.limit,
            ByteSize(m.bytes),
            m.seconds,
            m.value,
            m.unit,
            m.cpu_seconds_per_gb
                .map(|c| format!(", {c:.3} CPU s per GB"))
                .unwrap_or_default(),
            if m.stopped_by_time {
                " (stopped by --max-secs)"
            } else {
                ""
            }
        );
        if args.format == Format::Json {
            emit(Format::Json, "", &m)?;
        }
        results.push(m);
    }
    if args.format == Format::Text {
        emit(Format::Text, &table(&results), &())?;
    }
    Ok(())
}

/// The human table.
fn table(results: &[Measurement]) -> String {
    let mut t = Table::new(
        ["limit", "measures", "bytes", "seconds", "rate", "CPU s/GB"],
        2,
    );
    for m in results {
        t.row(vec![
            m.limit.to_owned(),
            m.what.to_owned(),
            grouped(m.bytes),
            format!("{:.2}", m.seconds),
            format!(
                "{:.3} {}{}",
                m.value,
                m.unit,
                if m.stopped_by_time { "*" } else { " " }
            ),
            m.cpu_seconds_per_gb
                .map_or_else(|| "-".to_owned(), |c| format!("{c:.3}")),
        ]);
    }
    let mut out = t.render();
    out.push_str(&format!(
        "\n1 GB = 10^9 bytes, 1 MB = 10^6 bytes; {CHUNK_BYTES} bytes per write, read or copy, \
         {TLS_RECORD_BYTES} per sealed or opened record."
    ));
    if results.iter().any(|m| m.cpu_seconds_per_gb.is_some()) {
        out.push_str(
            " CPU s/GB: user+sys seconds of the process doing the broker's part, per 10^9 bytes.",
        );
    }
    if results.iter().any(|m| m.stopped_by_time) {
        out.push_str(" *: stopped by --max-secs before all its bytes.");
    }
    out.push('\n');
    out
}

// --- Loopback TCP ---------------------------------------------------------------------

/// Writer and reader threads in this process.
fn loopback_tcp_threads(total: u64, max: Duration) -> anyhow::Result<Measurement> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind 127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    progress!(
        "loopback_tcp: sending {} on {addr}, 1 process",
        ByteSize(total)
    );
    let writer = thread::Builder::new().name("tcp-writer".into()).spawn(
        move || -> anyhow::Result<u64> {
            let stream = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
            send(stream, total, max)
        },
    )?;
    let stream = accept_within(&listener, PEER_GRACE, || Ok(()))?;
    let (received, elapsed) = receive(stream, max)?;
    let sent = writer
        .join()
        .map_err(|_| anyhow!("the writer thread panicked"))??;
    ensure!(
        received == sent,
        "sent {sent} bytes but received {received}"
    );
    Ok(Measurement::new(
        Limit::LoopbackTcp,
        total,
        received,
        elapsed,
    ))
}

/// The reader here, the writer in a child process (this binary, `tcp-send`).
fn loopback_tcp_processes(total: u64, max: Duration) -> anyhow::Result<Measurement> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind 127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    progress!(
        "loopback_tcp_2proc: sending {} on {addr}, 2 processes",
        ByteSize(total)
    );
    let (mut child, stream) = spawn_peer("tcp-send", &listener, total, max)?;
    let (received, elapsed) = receive(stream, max)?;
    let sent = read_count(&mut child, "tcp-send")?;
    ensure!(
        received == sent,
        "sent {sent} bytes but received {received}"
    );
    Ok(Measurement::new(
        Limit::LoopbackTcp2Proc,
        total,
        received,
        elapsed,
    ))
}

/// Starts this binary's `command` (`tcp-send` or `tcp-recv`) toward `listener` for
/// `total` bytes or `max`, and accepts its connection.
fn spawn_peer(
    command: &str,
    listener: &TcpListener,
    total: u64,
    max: Duration,
) -> anyhow::Result<(KillOnDrop, TcpStream)> {
    let addr = listener.local_addr()?;
    let exe = std::env::current_exe().context("locate this program to run its peer")?;
    let child = Command::new(&exe)
        .args([command, "--addr", &addr.to_string()])
        .args([
            "--bytes",
            &total.to_string(),
            "--max-secs",
            &max.as_secs().to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("start {} {command}", exe.display()))?;
    let mut child = KillOnDrop(Some(child));
    let stream = accept_within(listener, PEER_GRACE, || match child.try_wait()? {
        Some(status) => bail!("the {command} process exited ({status}) before connecting"),
        None => Ok(()),
    })?;
    Ok((child, stream))
}

/// Waits for a peer process (`what`: `tcp-send` or `tcp-recv`) to exit and returns the
/// byte count it printed.
fn read_count(child: &mut KillOnDrop, what: &str) -> anyhow::Result<u64> {
    let status = child.wait_within(PEER_GRACE)?;
    ensure!(status.success(), "the {what} process failed ({status})");
    let mut line = String::new();
    let stdout = child
        .take_stdout()
        .with_context(|| format!("the {what} process's stdout"))?;
    io::BufReader::new(stdout).read_line(&mut line)?;
    line.trim().parse().with_context(|| {
        format!(
            "the {what} process printed `{}`, not a byte count",
            line.trim()
        )
    })
}

/// `tcp-send`: the child of `loopback_tcp_2proc` and of the produce floors.
fn tcp_send_process(addr: SocketAddr, total: u64, max: Duration) -> anyhow::Result<()> {
    ensure!(
        addr.ip().is_loopback(),
        "tcp-send only sends to a loopback address, not {addr}"
    );
    let stream = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    let sent = send(stream, total, max)?;
    let mut out = io::stdout().lock();
    writeln!(out, "{sent}")?;
    out.flush()?;
    Ok(())
}

/// Sends `total` bytes in 1 MiB writes, stopping early once `max` has passed; then closes
/// its side. Returns the bytes sent.
fn send(mut stream: TcpStream, total: u64, max: Duration) -> anyhow::Result<u64> {
    // A reader that stops reading must not leave this write blocked for ever.
    stream.set_write_timeout(Some(max + PEER_GRACE))?;
    let chunk = pattern(CHUNK_BYTES);
    let deadline = Instant::now() + max;
    let mut sent = 0u64;
    while sent < total && Instant::now() < deadline {
        let n = chunk_len(total - sent);
        stream
            .write_all(&chunk[..n])
            .with_context(|| format!("write to the loopback stream after {sent} bytes"))?;
        sent += n as u64;
    }
    stream.shutdown(Shutdown::Write)?;
    Ok(sent)
}

/// Reads into a 1 MiB buffer until the writer closes; the clock runs from the call (the
/// connection is accepted) to the end of the stream. Fails if the stream is still open
/// `PEER_GRACE` after the writer's own time bound, or stalls that long.
fn receive(mut stream: TcpStream, max: Duration) -> anyhow::Result<(u64, Duration)> {
    stream.set_read_timeout(Some(max + PEER_GRACE))?;
    let mut buf = vec![0u8; CHUNK_BYTES];
    let started = Instant::now();
    let give_up = started + max + PEER_GRACE;
    let mut received = 0u64;
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("read the loopback stream after {received} bytes"));
            }
        };
        received += n as u64;
        ensure!(
            Instant::now() < give_up,
            "the loopback stream is still open {:?} after the writer's time bound",
            PEER_GRACE
        );
    }
    let elapsed = started.elapsed();
    black_box(&buf);
    Ok((received, elapsed))
}

/// Accepts one connection within `timeout`, calling `check` between looks (to fail early
/// when the peer is gone).
fn accept_within(
    listener: &TcpListener,
    timeout: Duration,
    mut check: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<TcpStream> {
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + timeout;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false)?;
                return Ok(stream);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                check()?;
                ensure!(
                    Instant::now() < deadline,
                    "the writer did not connect within {timeout:?}"
                );
                thread::sleep(ACCEPT_POLL);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("accept"),
        }
    }
}

/// A child process that is killed (and reaped) unless it was waited for.
#[derive(Debug)]
struct KillOnDrop(Option<Child>);

impl KillOnDrop {
    fn try_wait(&mut self) -> anyhow::Result<Option<std::process::ExitStatus>> {
        let child = self
            .0
            .as_mut()
            .context("the writer process was already reaped")?;
        Ok(child.try_wait()?)
    }

    /// Waits for the child's exit for at most `timeout`, then kills it (and fails).
    fn wait_within(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                self.kill();
                bail!("the writer process did not exit within {timeout:?}: killed it");
            }
            thread::sleep(ACCEPT_POLL);
        }
    }

    fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.0.as_mut().and_then(|c| c.stdout.take())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut()
            && matches!(child.try_wait(), Ok(None))
        {
            self.kill();
        }
    }
}

// --- Files ----------------------------------------------------------------------------

/// A fresh directory under `parent` (default: the system's temporary directory).
fn create_run_dir(parent: Option<&Path>) -> anyhow::Result<tempfile::TempDir> {
    let parent = parent.map_or_else(std::env::temp_dir, Path::to_path_buf);
    fs::create_dir_all(&parent).with_context(|| format!("create {}", parent.display()))?;
    let parent =
        fs::canonicalize(&parent).with_context(|| format!("resolve {}", parent.display()))?;
    tempfile::Builder::new()
        .prefix("weir-limits-")
        .tempdir_in(&parent)
        .with_context(|| format!("create a directory in {}", parent.display()))
}

/// How [`write_file`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteMode {
    /// Appends to a new file, left to the page cache.
    PageCache,
    /// Appends to a new file, `fdatasync` after each.
    Fdatasync,
    /// The same writes and syncs over a file already written whole and synced: its blocks
    /// allocated and its size final, so a sync has only the data to write (what a log
    /// that preallocated, zero-filled or reused its segment files would pay). Before the
    /// clock starts the file's pages are dropped from the page cache and the tool waits
    /// [`FREED_MEMORY_SETTLE`], so the timed writes fill new page-cache pages from memory
    /// in the same state as [`WriteMode::Fdatasync`]'s.
    FdatasyncOverwrite,
}

/// Writes `total` bytes in 1 MiB writes to a file in `dir` as `how` says (stopping early
/// once `max` has passed). The clock and the CPU time (this process's) cover the writes and
/// syncs, not the open or an overwrite's preparation; afterwards, untimed, the file is
/// deleted and the file system synced, so nothing of this run is still being written back
/// when the next starts, and the tool waits [`FREED_MEMORY_SETTLE`] (see the module docs).
fn write_file(
    dir: &Path,
    total: u64,
    max: Duration,
    how: WriteMode,
) -> anyhow::Result<Measurement> {
    let limit = match how {
        WriteMode::PageCache => Limit::WriteOnly,
        WriteMode::Fdatasync => Limit::WriteFdatasync,
        WriteMode::FdatasyncOverwrite => Limit::WriteFdatasyncOverwrite,
    };
    let path = dir.join(limit.name());
    progress!(
        "{}: writing {} to {}",
        limit.name(),
        ByteSize(total),
        path.display()
    );
    let mut file = create_new(&path)?;
    let chunk = pattern(CHUNK_BYTES);
    if how == WriteMode::FdatasyncOverwrite {
        write_chunks(&mut file, &path, &chunk, total, None, false)?;
        file.sync_all()
            .with_context(|| format!("fsync {}", path.display()))?;
        // SAFETY: posix_fadvise takes a file descriptor, which `file` keeps open.
        let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc))
                .with_context(|| format!("drop {} from the page cache", path.display()));
        }
        thread::sleep(FREED_MEMORY_SETTLE);
        file.seek(SeekFrom::Start(0))
            .with_context(|| format!("seek {}", path.display()))?;
    }
    let cpu_before = floor::cpu_time()?;
    let started = Instant::now();
    let sync = how != WriteMode::PageCache;
    let written = write_chunks(&mut file, &path, &chunk, total, Some(started + max), sync)?;
    let elapsed = started.elapsed();
    let cpu = floor::cpu_time()? - cpu_before;
    drop(file);
    remove_and_settle(dir, &path)?;
    Ok(Measurement::new(limit, total, written, elapsed).with_cpu(cpu, dir))
}

/// Creates the file at `path` for writing; an error if it exists.
fn create_new(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("create {}", path.display()))
}

/// Writes `total` bytes of `chunk` to `file` (at its cursor, `chunk` at a time) or as many
/// as fit before `deadline`, with an `fdatasync` after each write if `sync`; the bytes
/// written.
fn write_chunks(
    file: &mut File,
    path: &Path,
    chunk: &[u8],
    total: u64,
    deadline: Option<Instant>,
    sync: bool,
) -> anyhow::Result<u64> {
    let mut written = 0u64;
    while written < total && deadline.is_none_or(|d| Instant::now() < d) {
        let n = chunk_len(total - written);
        file.write_all(&chunk[..n])
            .with_context(|| format!("write {}", path.display()))?;
        if sync {
            file.sync_data()
                .with_context(|| format!("fdatasync {}", path.display()))?;
        }
        written += n as u64;
    }
    Ok(written)
}

/// Bytes written to a file of their own before a produce floor and kept in the page
/// cache until it ends (`--resident-bytes`): on a VM, how much the page cache already
/// holds decides what a new page costs (the module docs), and a broker's produce that
/// follows earlier writes meets a page cache holding them. Writing them is not timed.
struct Resident {
    path: PathBuf,
    bytes: u64,
}

impl Resident {
    fn write(dir: &Path, bytes: u64) -> anyhow::Result<Resident> {
        let path = dir.join("resident");
        progress!("writing {} to {} first", ByteSize(bytes), path.display());
        let mut file = create_new(&path)?;
        let written = write_chunks(&mut file, &path, &pattern(CHUNK_BYTES), bytes, None, false)?;
        ensure!(
            written == bytes,
            "wrote {written} of {bytes} resident bytes"
        );
        Ok(Resident { path, bytes })
    }
}

impl Measurement {
    /// A floor measured while `resident` was held: says so, then deletes it.
    fn after(mut self, resident: Resident) -> anyhow::Result<Measurement> {
        self.resident_bytes = Some(resident.bytes);
        let dir = resident.path.parent().expect("a file in the run directory");
        remove_and_settle(dir, &resident.path)?;
        Ok(self)
    }
}

/// Deletes a measurement's file, syncs the file system (so nothing of it is still being
/// written back when the next measurement starts) and waits [`FREED_MEMORY_SETTLE`] (see
/// the module docs). Untimed.
fn remove_and_settle(dir: &Path, path: &Path) -> anyhow::Result<()> {
    fs::remove_file(path).with_context(|| format!("remove {}", path.display()))?;
    syncfs(dir)?;
    thread::sleep(FREED_MEMORY_SETTLE);
    Ok(())
}

/// Flushes the file system holding `dir`.
fn syncfs(dir: &Path) -> anyhow::Result<()> {
    let handle = File::open(dir).with_context(|| format!("open {}", dir.display()))?;
    // SAFETY: syncfs takes a file descriptor, which `handle` keeps open for the call.
    let rc = unsafe { libc::syncfs(handle.as_raw_fd()) };
    if rc != 0 {
        return Err(io::Error::last_os_error())
            .with_context(|| format!("syncfs {}", dir.display()));
    }
    Ok(())
}

// --- Memory ---------------------------------------------------------------------------

/// Copies a 1 MiB buffer into another until `total` bytes are copied or `max` has passed.
fn memcpy(total: u64, max: Duration) -> Measurement {
    progress!("memcpy: copying {} in 1 MiB copies", ByteSize(total));
    let src = pattern(CHUNK_BYTES);
    // Touched before the clock starts, so no page fault is timed.
    let mut dst = vec![1u8; CHUNK_BYTES];
    dst.copy_from_slice(&src);
    let started = Instant::now();
    let deadline = started + max;
    let mut copied = 0u64;
    while copied < total && Instant::now() < deadline {
        let n = chunk_len(total - copied);
        // black_box on both sides: the source may have changed and the copy is read, so
        // the compiler can neither hoist the copy out of the loop nor drop it.
        dst[..n].copy_from_slice(black_box(&src[..n]));
        black_box(&mut dst);
        copied += n as u64;
    }
    let elapsed = started.elapsed();
    Measurement::new(Limit::Memcpy, total, copied, elapsed)
}

// --- TLS's cipher ---------------------------------------------------------------------

/// Which half of a TLS record's cipher work is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Seal,
    Open,
}

/// Seals (or opens) 16 KiB records in place with AES-128-GCM, each under its own nonce as
/// TLS 1.3 does, until `total` plaintext bytes are done or `max` has passed.
fn aes_128_gcm(total: u64, max: Duration, direction: Direction) -> anyhow::Result<Measurement> {
    use ring::aead::{AES_128_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

    let key = UnboundKey::new(&AES_128_GCM, &pattern(AES_128_GCM.key_len()))
        .map_err(|_| anyhow!("AES-128-GCM key"))?;
    let key = LessSafeKey::new(key);
    let nonce = |sequence: u64| {
        let mut bytes = [0u8; NONCE_LEN];
        bytes[NONCE_LEN - 8..].copy_from_slice(&sequence.to_be_bytes());
        Nonce::assume_unique_for_key(bytes)
    };
    // TLS 1.3's additional data is the 5-byte record header.
    let aad = [23u8, 3, 3, 0, 0];
    let plaintext = pattern(TLS_RECORD_BYTES);
    let mut record = plaintext.clone();
    // Opening needs a sealed record: one, sealed before the clock starts, opened over and
    // over under the nonce it was sealed with (a wrong tag would fail every open).
    let tag = key
        .seal_in_place_separate_tag(nonce(0), Aad::from(aad), &mut record)
        .map_err(|_| anyhow!("AES-128-GCM seal"))?;
    let sealed = record.clone();
    let limit = match direction {
        Direction::Seal => Limit::Aes128GcmSeal,
        Direction::Open => Limit::Aes128GcmOpen,
    };
    progress!(
        "{}: {} through AES-128-GCM in 16 KiB records",
        limit.name(),
        ByteSize(total)
    );
    let started = Instant::now();
    let deadline = started + max;
    let mut done = 0u64;
    let mut sequence = 0u64;
    while done < total && Instant::now() < deadline {
        match direction {
            Direction::Seal => {
                sequence += 1;
                let tag = key
                    .seal_in_place_separate_tag(nonce(sequence), Aad::from(aad), &mut record)
                    .map_err(|_| anyhow!("AES-128-GCM seal"))?;
                let _ = black_box(tag);
            }
            Direction::Open => {
                // The open decrypts in place: the sealed bytes go back before each one
                // (a 16 KiB copy, a few per cent of the open's time).
                record.copy_from_slice(&sealed);
                let opened = key
                    .open_in_place_separate_tag(nonce(0), Aad::from(aad), tag, &mut record, 0..)
                    .map_err(|_| anyhow!("AES-128-GCM open: the tag did not match"))?;
                black_box(opened);
            }
        }
        black_box(&mut record);
        done += TLS_RECORD_BYTES as u64;
    }
    let elapsed = started.elapsed();
    if direction == Direction::Open {
        ensure!(
            record == plaintext,
            "AES-128-GCM open gave back other bytes"
        );
    }
    Ok(Measurement::new(limit, total, done, elapsed))
}

// --- Helpers --------------------------------------------------------------------------

/// The length of the next write: a whole chunk, or what is left.
fn chunk_len(left: u64) -> usize {
    usize::try_from(left).map_or(CHUNK_BYTES, |left| left.min(CHUNK_BYTES))
}

/// `len` bytes of a fixed pseudo-random pattern (xorshift64), so no layer can shortcut
/// zeros.
fn pattern(len: usize) -> Vec<u8> {
    let mut state = PATTERN_SEED;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_and_flags_parse() {
        let cli = Cli::try_parse_from(["weir-limits"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.limits.only, Limit::ALL);
        assert_eq!(cli.limits.bytes, DEFAULT_TCP_BYTES);
        assert_eq!(cli.limits.max_secs, DEFAULT_MAX_SECS);
        assert_eq!(cli.limits.format, Format::Text);
        let cli = Cli::try_parse_from([
            "weir-limits",
            "--only",
            "memcpy,write_fdatasync",
            "--bytes",
            "1GiB",
            "--format",
            "json",
        ])
        .unwrap();
        assert_eq!(cli.limits.only, [Limit::Memcpy, Limit::WriteFdatasync]);
        assert_eq!(cli.limits.bytes, ByteSize::gib(1));
        assert!(Cli::try_parse_from(["weir-limits", "--max-secs", "0"]).is_err());
    }

    #[test]
    fn loopback_moves_every_byte() {
        let total = 5 * CHUNK_BYTES as u64 + 123;
        let m = loopback_tcp_threads(total, Duration::from_secs(10)).unwrap();
        assert_eq!(m.bytes, total);
        assert!(!m.stopped_by_time);
        assert!(m.gb_per_sec > 0.0);
    }

    #[test]
    fn files_are_written_and_removed() {
        let dir = create_run_dir(None).unwrap();
        for how in [
            WriteMode::Fdatasync,
            WriteMode::FdatasyncOverwrite,
            WriteMode::PageCache,
        ] {
            let m = write_file(
                dir.path(),
                3 * CHUNK_BYTES as u64,
                Duration::from_secs(10),
                how,
            )
            .unwrap();
            assert_eq!(m.bytes, 3 * CHUNK_BYTES as u64);
            assert_eq!(m.unit, "MB/s");
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn resident_bytes_are_held_until_the_floor_is_measured() {
        let dir = create_run_dir(None).unwrap();
        let resident = Resident::write(dir.path(), 2 * CHUNK_BYTES as u64 + 5).unwrap();
        let path = dir.path().join("resident");
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            2 * CHUNK_BYTES as u64 + 5
        );
        let m = memcpy(CHUNK_BYTES as u64, Duration::from_secs(10))
            .after(resident)
            .unwrap();
        assert_eq!(m.resident_bytes, Some(2 * CHUNK_BYTES as u64 + 5));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        let cli = Cli::try_parse_from(["weir-limits", "--resident-bytes", "2GiB"]).unwrap();
        assert_eq!(cli.limits.resident_bytes, ByteSize::gib(2));
    }

    #[test]
    fn memcpy_counts_what_it_copies() {
        let m = memcpy(10 * CHUNK_BYTES as u64 + 1, Duration::from_secs(10));
        assert_eq!(m.bytes, 10 * CHUNK_BYTES as u64 + 1);
        let m = memcpy(u64::MAX, Duration::from_millis(10));
        assert!(m.stopped_by_time);
    }

    #[test]
    fn the_cipher_limits_seal_and_open_whole_records() {
        for direction in [Direction::Seal, Direction::Open] {
            let m = aes_128_gcm(
                3 * TLS_RECORD_BYTES as u64,
                Duration::from_secs(10),
                direction,
            )
            .unwrap();
            assert_eq!(m.bytes, 3 * TLS_RECORD_BYTES as u64);
            assert_eq!(m.chunk_bytes, TLS_RECORD_BYTES);
            assert_eq!(m.unit, "GB/s");
        }
    }

    #[test]
    fn the_pattern_is_not_trivial() {
        let p = pattern(CHUNK_BYTES);
        assert_eq!(p.len(), CHUNK_BYTES);
        assert!(p.iter().filter(|&&b| b == 0).count() < CHUNK_BYTES / 100);
    }
}
