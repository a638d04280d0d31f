//! The kernel's floor under a broker's data path: the least a program must spend to do
//! only what the kernel must do for the same bytes, as CPU seconds per GB of the process
//! that plays the broker (issue 45: the broker's own cost is read against it).
//!
//! - `recv_append`: bytes arrive on a loopback TCP stream from a second process (this
//!   binary's `tcp-send`, as a producer) and are appended to a file, each read's bytes
//!   with one `write`: a produce at `acks=1` with nothing of a broker's own work.
//! - `recv_append_fdatasync`: the same with an `fdatasync` once at least 1 MiB has been
//!   appended since the last: a durable produce's group commit at its least.
//! - `recv_append_sync_thread`: as `recv_append_fdatasync`, but the `fdatasync`s come
//!   from a second thread while the first goes on appending, each covering whatever was
//!   appended since the last, as a broker's group commit syncs beside its appender (a
//!   sync outside the log's lock). Fewer, larger syncs: on the VMs measured it is as
//!   cheap per GB as syncing in turn or cheaper, and faster (BENCHMARKS.md § A second
//!   durable floor), so a durable row's floor is the cheaper of the two.
//! - `recv_append_direct`: the same bytes gathered into a 1 MiB buffer of the process's
//!   own and written with `O_DIRECT`, past the page cache: what a log that keeps its own
//!   cache of recent batches (as Redpanda does) would pay the kernel, one copy out of the
//!   socket and none into the page cache. One thread receives and writes in turn, so its
//!   rate is a lower bound; its CPU is the point.
//! - `sendfile_send`: a file already in the page cache is sent to a second process
//!   (`tcp-recv`, as a consumer) with `sendfile`, 1 MiB a call, as a fetch answer is.
//!
//! The CPU is this process's user+sys time (`getrusage`) from the accepted connection to
//! the end of the stream; the other process's is not counted, as a client's is not the
//! broker's. Files live in the run directory and are deleted as `write_file`'s are.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};

use crate::{
    CHUNK_BYTES, Limit, Measurement, PEER_GRACE, chunk_len, pattern, read_count, remove_and_settle,
    spawn_peer,
};

/// This process's user+sys CPU time so far.
pub(crate) fn cpu_time() -> anyhow::Result<Duration> {
    // SAFETY: `getrusage` fills the struct it is given; an all-zero `rusage` is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF and a pointer to a live, writable `rusage`.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Err(io::Error::last_os_error()).context("getrusage");
    }
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    Ok(time(usage.ru_utime) + time(usage.ru_stime))
}

/// How `recv_append` writes what it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Append {
    /// Each read's bytes with one `write`, into the page cache.
    PageCache,
    /// As `PageCache`, with an `fdatasync` after each 1 MiB.
    PageCacheFdatasync,
    /// As `PageCache`, a second thread syncing back to back while appends arrive.
    PageCacheSyncThread,
    /// Gathered into a 1 MiB buffer and written with `O_DIRECT`.
    Direct,
}

/// The alignment `O_DIRECT` asks of buffers, lengths and file positions (a page: at least
/// every block device's logical block size).
const DIRECT_ALIGN: usize = 4096;

/// `recv_append`, `recv_append_fdatasync` and `recv_append_direct`.
pub(crate) fn recv_append(
    dir: &Path,
    total: u64,
    max: Duration,
    how: Append,
) -> anyhow::Result<Measurement> {
    let limit = match how {
        Append::PageCache => Limit::RecvAppend,
        Append::PageCacheFdatasync => Limit::RecvAppendFdatasync,
        Append::PageCacheSyncThread => Limit::RecvAppendSyncThread,
        Append::Direct => Limit::RecvAppendDirect,
    };
    let sync = how == Append::PageCacheFdatasync;
    let path = dir.join(limit.name());
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    if how == Append::Direct {
        options.custom_flags(libc::O_DIRECT);
    }
    let mut file = options.open(&path).with_context(|| {
        format!(
            "create {} (O_DIRECT: {})",
            path.display(),
            how == Append::Direct
        )
    })?;
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind 127.0.0.1:0")?;
    progress!(
        "{}: receiving {} on {} into {}",
        limit.name(),
        crate::ByteSize(total),
        listener.local_addr()?,
        path.display()
    );
    let (mut child, mut stream) = spawn_peer("tcp-send", &listener, total, max)?;
    stream.set_read_timeout(Some(max + PEER_GRACE))?;
    // One page more than a chunk, so that an aligned chunk fits inside it.
    let mut raw = vec![0u8; CHUNK_BYTES + DIRECT_ALIGN];
    let start = raw.as_ptr().align_offset(DIRECT_ALIGN);
    let buf = &mut raw[start..start + CHUNK_BYTES];
    let syncer = match how {
        Append::PageCacheSyncThread => Some(Syncer::start(
            file.try_clone()
                .context("a second descriptor for the syncer")?,
        )),
        _ => None,
    };
    let cpu_before = cpu_time()?;
    let started = Instant::now();
    let give_up = started + max + PEER_GRACE;
    let (mut received, mut unsynced, mut gathered) = (0u64, 0usize, 0usize);
    loop {
        let into = match how {
            Append::Direct => &mut buf[gathered..],
            _ => &mut buf[..],
        };
        let n = match stream.read(into) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("read the loopback stream"),
        };
        received += n as u64;
        match how {
            Append::Direct => {
                gathered += n;
                if gathered == CHUNK_BYTES {
                    file.write_all_at(buf, received - CHUNK_BYTES as u64)
                        .with_context(|| format!("write {} (O_DIRECT)", path.display()))?;
                    gathered = 0;
                }
            }
            _ => {
                file.write_all(&buf[..n])
                    .with_context(|| format!("write {}", path.display()))?;
                if let Some(syncer) = &syncer {
                    syncer.appended(received);
                }
            }
        }
        unsynced += n;
        if sync && unsynced >= CHUNK_BYTES {
            file.sync_data()
                .with_context(|| format!("fdatasync {}", path.display()))?;
            unsynced = 0;
        }
        ensure!(
            Instant::now() < give_up,
            "the loopback stream is still open {PEER_GRACE:?} after the sender's time bound"
        );
    }
    if sync && unsynced > 0 {
        file.sync_data()
            .with_context(|| format!("fdatasync {}", path.display()))?;
    }
    if let Some(syncer) = syncer {
        // Its last sync covers everything appended.
        let syncs = syncer.finish().context("the syncer's fdatasync")?;
        progress!("{}: {syncs} fdatasyncs beside the appends", limit.name());
    }
    if gathered > 0 {
        // The tail: written as whole pages, then the file cut to what was received.
        let padded = gathered.next_multiple_of(DIRECT_ALIGN);
        file.write_all_at(&buf[..padded], received - gathered as u64)
            .with_context(|| format!("write {} (O_DIRECT)", path.display()))?;
        file.set_len(received)
            .with_context(|| format!("truncate {}", path.display()))?;
    }
    let elapsed = started.elapsed();
    let cpu = cpu_time()? - cpu_before;
    let sent = read_count(&mut child, "tcp-send")?;
    ensure!(
        received == sent,
        "sent {sent} bytes but received {received}"
    );
    let written = file.metadata().context("stat the appended file")?.len();
    ensure!(
        written == received,
        "received {received} bytes but the file holds {written}"
    );
    drop(file);
    remove_and_settle(dir, &path)?;
    Ok(Measurement::new(limit, total, received, elapsed).with_cpu(cpu, dir))
}

/// The second thread of `recv_append_sync_thread`: it waits for appends, then syncs
/// everything appended so far while the appender goes on, and again, until finished.
struct Syncer {
    shared: Arc<(Mutex<SyncerState>, Condvar)>,
    thread: std::thread::JoinHandle<io::Result<u64>>,
}

#[derive(Default)]
struct SyncerState {
    /// Bytes appended so far, and whether the appender is done.
    appended: u64,
    finished: bool,
}

impl Syncer {
    fn start(file: fs::File) -> Syncer {
        let shared = Arc::new((Mutex::new(SyncerState::default()), Condvar::new()));
        let theirs = Arc::clone(&shared);
        let thread = std::thread::spawn(move || {
            let (state, wake) = &*theirs;
            let (mut synced, mut syncs) = (0u64, 0u64);
            loop {
                let target = {
                    let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
                    while state.appended == synced && !state.finished {
                        state = wake.wait(state).unwrap_or_else(PoisonError::into_inner);
                    }
                    if state.appended == synced {
                        return Ok(syncs);
                    }
                    state.appended
                };
                file.sync_data()?;
                synced = target;
                syncs += 1;
            }
        });
        Syncer { shared, thread }
    }

    /// Changes the shared state and wakes the thread.
    fn tell(&self, change: impl FnOnce(&mut SyncerState)) {
        let (state, wake) = &*self.shared;
        change(&mut state.lock().unwrap_or_else(PoisonError::into_inner));
        wake.notify_one();
    }

    /// The appender has written `total` bytes in all.
    fn appended(&self, total: u64) {
        self.tell(|state| state.appended = total);
    }

    /// Stops the thread once its last sync is done; how many syncs it made.
    fn finish(self) -> io::Result<u64> {
        self.tell(|state| state.finished = true);
        self.thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the syncer thread panicked")))
    }
}

/// `sendfile_send`: the file is written and read back first (untimed), so every page is
/// in the page cache as a recent segment's are.
pub(crate) fn sendfile_send(dir: &Path, total: u64, max: Duration) -> anyhow::Result<Measurement> {
    let limit = Limit::SendfileSend;
    let path = dir.join(limit.name());
    progress!(
        "{}: writing {} to {}, then sending it",
        limit.name(),
        crate::ByteSize(total),
        path.display()
    );
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("create {}", path.display()))?;
    let chunk = pattern(CHUNK_BYTES);
    let mut written = 0u64;
    while written < total {
        let n = chunk_len(total - written);
        file.write_all(&chunk[..n])
            .with_context(|| format!("write {}", path.display()))?;
        written += n as u64;
    }
    io::copy(&mut fs::File::open(&path)?, &mut io::sink())?;
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind 127.0.0.1:0")?;
    let (mut child, stream) = spawn_peer("tcp-recv", &listener, total, max)?;
    stream.set_write_timeout(Some(max + PEER_GRACE))?;
    let cpu_before = cpu_time()?;
    let started = Instant::now();
    let deadline = started + max;
    let mut offset: libc::off_t = 0;
    let mut sent = 0u64;
    while sent < total && Instant::now() < deadline {
        let n = chunk_len(total - sent);
        // SAFETY: two open descriptors (the socket and the file, both kept alive by their
        // owners for the call) and a pointer to a live `off_t` that sendfile advances.
        let rc = unsafe { libc::sendfile(stream.as_raw_fd(), file.as_raw_fd(), &mut offset, n) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e).with_context(|| format!("sendfile after {sent} bytes"));
        }
        ensure!(rc > 0, "sendfile sent nothing at {sent} of {total} bytes");
        sent += rc as u64;
    }
    stream.shutdown(std::net::Shutdown::Write)?;
    let cpu = cpu_time()? - cpu_before;
    let received = read_count(&mut child, "tcp-recv")?;
    // The clock stops when the consumer has read it all, as for the TCP limits.
    let elapsed = started.elapsed();
    ensure!(
        received == sent,
        "sent {sent} bytes but received {received}"
    );
    drop(file);
    remove_and_settle(dir, &path)?;
    Ok(Measurement::new(limit, total, sent, elapsed).with_cpu(cpu, dir))
}

/// `tcp-recv`: the consumer of `sendfile_send`. Reads until the sender closes and prints
/// the bytes received.
pub(crate) fn tcp_recv_process(addr: SocketAddr, total: u64, max: Duration) -> anyhow::Result<()> {
    ensure!(
        addr.ip().is_loopback(),
        "tcp-recv only connects to a loopback address, not {addr}"
    );
    let stream = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    let (received, _) = crate::receive(stream, max)?;
    ensure!(
        received <= total,
        "received {received} bytes, more than the {total} announced"
    );
    let mut out = io::stdout().lock();
    writeln!(out, "{received}")?;
    out.flush()?;
    Ok(())
}
