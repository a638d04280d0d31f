//! The storage seam: every byte of segment data and every checkpoint goes through
//! [`Storage`] and [`StorageFile`], so tests can tear writes, fail fsyncs and drop what
//! was never synced ([`FaultyStorage`]). Index files are memory mapped directly: they are
//! derived data that recovery checks and rebuilds, never the source of truth.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustix::buffer::spare_capacity;

mod direct;

pub use direct::BLOCK as DIRECT_BLOCK;

/// Name of the lock file [`lock_dir`] holds in a directory.
pub const LOCK_FILE: &str = ".lock";

/// How long [`lock_dir`] waits for a lock that is held before it calls the directory in
/// use. An `flock` belongs to the open file, and a process that starts a child copies its
/// open files into the child until the child's `exec` closes them: for that moment a
/// closed lock file (a log dropped and opened again, a broker restarted in the same
/// process) is still locked, by a copy nobody will use.
pub const LOCK_WAIT: Duration = Duration::from_millis(500);
/// How often a held lock is tried again within [`LOCK_WAIT`].
const LOCK_RETRY: Duration = Duration::from_millis(10);

/// Takes an exclusive `flock` on `<dir>/.lock`, so a second process cannot open the same
/// directory; the lock lasts as long as the returned file. `in_use` is the message when
/// another process holds it (still after [`LOCK_WAIT`]).
pub fn lock_dir(dir: &Path, in_use: &'static str) -> io::Result<File> {
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))?;
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match lock.try_lock() {
            Ok(()) => return Ok(lock),
            Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(LOCK_RETRY);
            }
            Err(fs::TryLockError::WouldBlock) => {
                return Err(io::Error::new(io::ErrorKind::WouldBlock, in_use));
            }
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}

/// A directory of files the log reads and writes.
pub trait Storage: Send + Sync + fmt::Debug + 'static {
    /// Opens `path` for reading and writing, creating it if `create` is set.
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>>;
    /// [`Storage::open`] for an active segment's `.log` file that is written past the page
    /// cache where the file system allows (`storage/direct.rs`): every write reaches the
    /// disk before it returns, and may leave zeros up to the next [`DIRECT_BLOCK`]
    /// boundary after its end. The default is [`Storage::open`].
    fn open_direct(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        self.open(path, create)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes directory entries (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// One open file. Positioned reads and writes, so readers never share a cursor.
pub trait StorageFile: Send + Sync + fmt::Debug {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize>;
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()>;
    /// Writes `bufs` one after another from `pos`, as one `pwritev` where the file
    /// supports it (what a leader's append uses: a patched header beside the untouched
    /// body of each batch, so the request is never copied). The default writes them one
    /// by one.
    fn write_all_vectored_at(&self, bufs: &mut [IoSlice<'_>], mut pos: u64) -> io::Result<()> {
        for buf in bufs.iter() {
            self.write_all_at(buf, pos)?;
            pos += buf.len() as u64;
        }
        Ok(())
    }
    /// `fdatasync`: file data (and the size) reach the disk.
    fn sync_data(&self) -> io::Result<()>;
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Current length of the file in bytes.
    fn size(&self) -> io::Result<u64>;

    /// `len` bytes from `pos` in a new buffer, or `UnexpectedEof`. The default zero-fills
    /// the buffer before reading into it; the real file reads into uninitialised memory
    /// (a read of a fetch's megabyte pays no `memset`).
    fn read_bytes_at(&self, len: usize, pos: u64) -> io::Result<Bytes> {
        let mut buf = vec![0; len];
        self.read_exact_at(&mut buf, pos)?;
        Ok(buf.into())
    }

    /// The operating system's file behind this one, where there is one: what a reader
    /// hands the kernel to send bytes to a socket without reading them
    /// ([`FileSlice`](crate::FileSlice)). `None`, the default, for files that are not
    /// plain OS files (the fault-injecting storage), whose reads go through memory.
    fn os_file(&self) -> Option<&File> {
        None
    }

    /// Whether this file's reads come into this process's memory rather than through
    /// the page cache (a direct-written file, `storage/direct.rs`: its newest bytes from
    /// the ring of recent writes, the rest read past the page cache): a reader then takes
    /// the bytes in memory instead of asking the kernel to `sendfile` them. False by
    /// default.
    fn reads_past_page_cache(&self) -> bool {
        false
    }

    /// Tells the file that a read of `len` bytes from `pos` is likely next (a reader going
    /// through the file in order), so it may start that read now and have it ready. The
    /// caller promises the range holds written bytes that will not change unless the file
    /// is cut (`set_len`). Nothing by default: the page cache reads ahead by itself.
    fn read_ahead(&self, _pos: u64, _len: usize) {}

    /// Tells the file that it will not be written again (its segment rolled), so it may
    /// let go of what it keeps for writes (a direct-written file's last block and its
    /// pieces in the ring of recent writes). Nothing by default.
    fn sealed(&self) {}

    /// Fills `buf` from `pos`, or fails with `UnexpectedEof`.
    fn read_exact_at(&self, mut buf: &mut [u8], mut pos: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, pos) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    buf = &mut buf[n..];
                    pos += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// The most buffers one `pwritev` takes (Linux's `IOV_MAX`); longer lists are written
/// in runs of this many.
const MAX_IOVECS: usize = 1024;

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct FileStorage;

#[derive(Debug)]
struct OsFile(File);

impl StorageFile for OsFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.0.read_at(buf, pos)
    }
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.0.write_all_at(buf, pos)
    }
    fn write_all_vectored_at(&self, mut bufs: &mut [IoSlice<'_>], mut pos: u64) -> io::Result<()> {
        IoSlice::advance_slices(&mut bufs, 0);
        while !bufs.is_empty() {
            let n = bufs.len().min(MAX_IOVECS);
            match rustix::io::pwritev(&self.0, &bufs[..n], pos) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => {
                    pos += written as u64;
                    IoSlice::advance_slices(&mut bufs, written);
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
    fn read_bytes_at(&self, len: usize, mut pos: u64) -> io::Result<Bytes> {
        let mut buf = Vec::with_capacity(len);
        while buf.len() < len {
            // Reads into the spare capacity and extends `buf` by what was read.
            match rustix::io::pread(&self.0, spare_capacity(&mut buf), pos) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => pos += n as u64,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        // The allocation may be larger than asked, and the read with it.
        buf.truncate(len);
        Ok(buf.into())
    }
    fn os_file(&self) -> Option<&File> {
        Some(&self.0)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
}

impl Storage for FileStorage {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .open(path)?;
        Ok(Arc::new(OsFile(file)))
    }
    fn open_direct(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        match direct::open(path, create)? {
            Some(file) => Ok(Arc::new(file)),
            None => self.open(path, create),
        }
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// Faults a [`FaultyStorage`] injects.
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    /// After this many bytes written in total, the write in progress is torn: only the
    /// bytes up to the limit reach the file, the write fails, and the storage is
    /// crashed (see [`FaultyStorage::crash`]).
    pub torn_write_after_bytes: Option<u64>,
    /// The n-th `sync_data` (1-based) fails; its data counts as not synced.
    pub fail_sync_number: Option<u64>,
    /// The machine dies instead of performing the n-th (1-based) operation that changes
    /// anything (creating a file, a write, `sync_data`, `set_len`, a rename, a removal, a
    /// directory sync): the storage is crashed (see [`FaultyStorage::crash`], nothing
    /// unsynced survives) and that operation fails. Stepping `n` over every operation of
    /// a multi-step protocol (a compaction's rewrite and swap) crashes it at each step.
    pub crash_at_operation: Option<u64>,
}

#[derive(Debug, Default)]
struct FaultState {
    plan: FaultPlan,
    bytes_written: u64,
    syncs: u64,
    /// Operations that change something, counted for `crash_at_operation`.
    operations: u64,
    crashed: bool,
    /// Every `sync_data` and directory sync fails while set ([`FaultyStorage::fail_syncs`]).
    syncs_failing: bool,
    /// Bytes writes may still add before they fail with ENOSPC (`None`: no limit; see
    /// [`FaultyStorage::fill`] and [`FaultyStorage::leave_free`]).
    free: Option<u64>,
    /// Bytes of each file known to be on disk: everything below survives a crash.
    synced_len: HashMap<PathBuf, u64>,
    /// Successful `sync_data` calls per file path.
    syncs_by_path: HashMap<PathBuf, u64>,
}

/// A [`FileStorage`] that injects faults and can simulate a machine crash: everything not
/// fsynced since it was written is dropped. It assumes what `docs/storage-format.md`
/// assumes of a disk: `fdatasync` makes a file's data durable, and data is appended, so
/// what a crash loses is a suffix of each file.
#[derive(Debug, Clone, Default)]
pub struct FaultyStorage {
    state: Arc<Mutex<FaultState>>,
}

impl FaultyStorage {
    pub fn new(plan: FaultPlan) -> FaultyStorage {
        let state = FaultState {
            plan,
            ..FaultState::default()
        };
        FaultyStorage {
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// Simulates a machine crash: every file is cut back to what was synced, and every
    /// later operation through this storage fails. Reopen the directory with a fresh
    /// storage to recover. `keep_unsynced` picks, per file, how many unsynced bytes
    /// happened to reach the disk anyway (0 drops them all).
    pub fn crash(&self, mut keep_unsynced: impl FnMut(&Path, u64) -> u64) -> io::Result<()> {
        let mut st = self.state.lock().expect("fault state poisoned");
        st.crashed = true;
        for (path, &synced) in &st.synced_len {
            let Ok(file) = OpenOptions::new().write(true).open(path) else {
                continue;
            };
            let len = file.metadata()?.len();
            if len > synced {
                let keep = keep_unsynced(path, len - synced).min(len - synced);
                file.set_len(synced + keep)?;
            }
        }
        Ok(())
    }

    /// From now on every `sync_data` and directory sync fails (`true`: a disk that keeps
    /// failing its fsyncs; the data of a failed sync counts as not synced), or none
    /// beyond what the plan says (`false`: the disk healed).
    pub fn fail_syncs(&self, failing: bool) {
        self.state
            .lock()
            .expect("fault state poisoned")
            .syncs_failing = failing;
    }

    /// From now on every write fails for want of space (`true`: ENOSPC, a full disk; the
    /// write changes nothing), or none does (`false`: space was freed).
    pub fn fill(&self, full: bool) {
        self.state.lock().expect("fault state poisoned").free = full.then_some(0);
    }

    /// From now on writes may add `bytes` more and then fail for want of space: a disk
    /// with that much left. A write that does not fit fails whole (ENOSPC) and counts
    /// nothing; `fill(false)` lifts the limit.
    pub fn leave_free(&self, bytes: u64) {
        self.state.lock().expect("fault state poisoned").free = Some(bytes);
    }

    pub fn is_crashed(&self) -> bool {
        self.state.lock().expect("fault state poisoned").crashed
    }

    /// Bytes passed to writes so far (what [`FaultPlan::torn_write_after_bytes`] counts).
    pub fn bytes_written(&self) -> u64 {
        self.state
            .lock()
            .expect("fault state poisoned")
            .bytes_written
    }

    /// How many `sync_data` calls on the file at `path` have succeeded so far.
    pub fn syncs_of(&self, path: &Path) -> u64 {
        let st = self.state.lock().expect("fault state poisoned");
        st.syncs_by_path.get(path).copied().unwrap_or(0)
    }

    /// How many operations that change something have been attempted so far (what
    /// [`FaultPlan::crash_at_operation`] counts).
    pub fn operations(&self) -> u64 {
        self.state.lock().expect("fault state poisoned").operations
    }

    fn check(&self) -> io::Result<()> {
        if self.is_crashed() {
            return Err(io::Error::other("storage crashed (fault injection)"));
        }
        Ok(())
    }

    /// [`check`](Self::check) for an operation that changes something: counts it, and
    /// crashes the storage instead of letting it run if it is the planned crash point.
    fn check_mutation(&self) -> io::Result<()> {
        let crash_now = {
            let mut st = self.state.lock().expect("fault state poisoned");
            if st.crashed {
                return Err(io::Error::other("storage crashed (fault injection)"));
            }
            st.operations += 1;
            st.plan.crash_at_operation == Some(st.operations)
        };
        if crash_now {
            self.crash(|_, _| 0)?;
            return Err(io::Error::other(
                "crash before this operation (fault injection)",
            ));
        }
        Ok(())
    }
}

#[derive(Debug)]
struct FaultyFile {
    path: PathBuf,
    inner: OsFile,
    storage: FaultyStorage,
}

impl StorageFile for FaultyFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.storage.check()?;
        self.inner.read_at(buf, pos)
    }

    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.storage.check_mutation()?;
        let torn_len = {
            let mut st = self.storage.state.lock().expect("fault state poisoned");
            if st.crashed {
                return Err(io::Error::other("storage crashed (fault injection)"));
            }
            if let Some(free) = st.free {
                let Some(left) = free.checked_sub(buf.len() as u64) else {
                    return Err(io::Error::from(io::ErrorKind::StorageFull));
                };
                st.free = Some(left);
            }
            let before = st.bytes_written;
            st.bytes_written += buf.len() as u64;
            match st.plan.torn_write_after_bytes {
                Some(limit) if st.bytes_written > limit => {
                    Some((limit - before.min(limit)) as usize)
                }
                _ => None,
            }
        };
        match torn_len {
            None => self.inner.write_all_at(buf, pos),
            Some(keep) => {
                self.inner.write_all_at(&buf[..keep], pos)?;
                // The machine dies mid-write: the torn bytes may or may not have been
                // synced by the OS; keep them so recovery sees a torn tail.
                self.storage.crash(|_, unsynced| unsynced)?;
                Err(io::Error::other("torn write (fault injection)"))
            }
        }
    }

    fn sync_data(&self) -> io::Result<()> {
        self.storage.check_mutation()?;
        let mut st = self.storage.state.lock().expect("fault state poisoned");
        if st.crashed {
            return Err(io::Error::other("storage crashed (fault injection)"));
        }
        st.syncs += 1;
        if st.plan.fail_sync_number == Some(st.syncs) || st.syncs_failing {
            return Err(io::Error::other("fsync failed (fault injection)"));
        }
        self.inner.sync_data()?;
        // A handle to a file since removed or renamed over (a deferred sync of a segment
        // that retention or compaction replaced) syncs a file no path names any more.
        use std::os::unix::fs::MetadataExt;
        let ino = self.inner.0.metadata()?.ino();
        if fs::metadata(&self.path).is_ok_and(|m| m.ino() == ino) {
            let len = self.inner.size()?;
            st.synced_len.insert(self.path.clone(), len);
            *st.syncs_by_path.entry(self.path.clone()).or_insert(0) += 1;
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.storage.check_mutation()?;
        self.inner.set_len(len)?;
        // A shrink is treated as durable at once (journaled metadata); growth is not.
        let mut st = self.storage.state.lock().expect("fault state poisoned");
        if let Some(synced) = st.synced_len.get_mut(&self.path) {
            *synced = (*synced).min(len);
        }
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        self.storage.check()?;
        self.inner.size()
    }
}

impl Storage for FaultyStorage {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        let existed = path.exists();
        if create && !existed {
            self.check_mutation()?;
        } else {
            self.check()?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .open(path)?;
        let mut st = self.state.lock().expect("fault state poisoned");
        // A file that was on disk before this storage saw it counts as synced; a new
        // one holds nothing durable yet.
        let synced = if existed { file.metadata()?.len() } else { 0 };
        st.synced_len.entry(path.to_path_buf()).or_insert(synced);
        drop(st);
        Ok(Arc::new(FaultyFile {
            path: path.to_path_buf(),
            inner: OsFile(file),
            storage: self.clone(),
        }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.check_mutation()?;
        self.state
            .lock()
            .expect("fault state poisoned")
            .synced_len
            .remove(path);
        fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check_mutation()?;
        fs::rename(from, to)?;
        let mut st = self.state.lock().expect("fault state poisoned");
        if let Some(len) = st.synced_len.remove(from) {
            st.synced_len.insert(to.to_path_buf(), len);
        }
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.check_mutation()?;
        if self
            .state
            .lock()
            .expect("fault state poisoned")
            .syncs_failing
        {
            return Err(io::Error::other("directory fsync failed (fault injection)"));
        }
        FileStorage.sync_dir(dir)
    }
}
