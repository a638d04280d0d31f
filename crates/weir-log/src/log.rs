//! [`Log`]: one partition's log. Appending, rolling, flushing with group commit, leader
//! epochs, the high watermark and closing. Opening and recovery live in `recovery.rs`,
//! reads in `read.rs`, truncation and retention in `maintenance.rs`.
//!
//! Concurrency: one `Mutex` guards the segment map and offsets; appends hold it for the
//! write syscall, readers only to find positions (their `pread` runs outside it). The
//! `fdatasync` of group commit runs outside it too, so appends continue while a sync is
//! under way; a roll does not sync the segment it closes but queues it in the flush
//! state, and the next flush syncs it (outside the lock) before anything later. Lock
//! order: `compaction` before `inner` before `flush` before `checkpoint`; no path takes
//! them in another order. Compaction (`compaction.rs`) holds only its own
//! lock while it rewrites segments, and `inner` for the swap.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::IoSlice;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;

use crate::append::{ValidatedBatches, check_replicated, check_request, plan_replicated};
use crate::batch::{self, BatchHeader, LOG_OVERHEAD};
use crate::checkpoint::{self, Kind};
use crate::compaction::CompactionState;
use crate::config::{FlushPolicy, LogConfig};
pub use crate::epoch::EpochEntry;
use crate::epoch::EpochHistory;
use crate::error::{AppendError, CheckpointError, MaintenanceError, OpenError};
use crate::producers::{ProducerStates, SequenceCheck};
use crate::recovery::{self, RecoveryPoint};
use crate::segment::{self, LOG_SUFFIX, Segment};
use crate::storage::{FileStorage, Storage, StorageFile};

/// What an append wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record written.
    pub base_offset: i64,
    /// Offset of the last record written.
    pub last_offset: i64,
    /// Newest record timestamp among the batches.
    pub max_timestamp: i64,
    pub batches: usize,
    pub bytes: usize,
    /// The batch was an idempotent producer's retry of one already in the log: nothing
    /// was written, and the offsets are the original's (`producers`).
    pub duplicate: bool,
}

/// The offsets that bound a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOffsets {
    /// First offset still readable.
    pub log_start_offset: i64,
    /// Offset the next record will get.
    pub log_end_offset: i64,
    /// Every offset below this is on disk (fsynced).
    pub flushed_offset: i64,
}

/// Whole batches read from the log, as one zero-copy buffer, or, from
/// [`Log::read_in_file`], left where they lie in their segment file.
#[derive(Debug, Clone)]
pub struct FetchData {
    /// Concatenated RecordBatch v2 bytes; empty if there was nothing to read, or if the
    /// read left them in their file (`in_file`).
    pub records: Bytes,
    /// From [`Log::read_in_file`]: the batches, every one checked, where they lie in their
    /// segment file (`records` is then empty).
    pub in_file: Option<FileSlice>,
    /// Offset after the last returned batch (the offset to read next).
    pub next_offset: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    /// Where `records` were read from, when they came from a segment file: for reports
    /// about a batch in them (a reader that cannot decode one names its file position).
    pub stored_at: Option<SegmentPosition>,
}

/// A byte position in a segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentPosition {
    /// The segment's `.log` file.
    pub path: PathBuf,
    /// Byte position in it (of the first batch of a [`FetchData`]).
    pub position: u64,
}

impl FetchData {
    /// Bytes of batches read, in memory or left in their file.
    pub fn len(&self) -> usize {
        self.records.len() + self.in_file.as_ref().map_or(0, FileSlice::len)
    }

    /// True if nothing was read.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records in the batches read (from their headers).
    pub fn record_count(&self) -> u64 {
        match &self.in_file {
            Some(slice) => slice.record_count,
            None => record_count(&self.records),
        }
    }

    /// The batches in `records`, each a slice of the same buffer.
    pub fn batches(&self) -> impl Iterator<Item = Bytes> + '_ {
        let mut rest = self.records.clone();
        std::iter::from_fn(move || {
            if rest.len() < LOG_OVERHEAD {
                return None;
            }
            let len = batch::framed_len(&rest).ok()?.min(rest.len());
            Some(rest.split_to(len))
        })
    }
}

/// Records in concatenated, checked batches (from their headers).
pub(crate) fn record_count(mut batches: &[u8]) -> u64 {
    let mut count = 0;
    while batches.len() >= batch::HEADER_BYTES {
        let Ok(len) = batch::framed_len(batches) else {
            break;
        };
        count += BatchHeader::parse(batches).record_count.max(0) as u64;
        batches = &batches[len.min(batches.len())..];
    }
    count
}

/// Checked batches left in their segment file: `len` bytes from `position`, for a
/// listener to send with `sendfile` (the bytes go from the page cache to the socket
/// without passing through the broker). The slice keeps the file open, so a segment that
/// retention deletes meanwhile is still there to send; segments are append-only and
/// nothing below the high watermark is ever truncated or rewritten in place, so what
/// was checked is what is sent.
#[derive(Clone)]
pub struct FileSlice {
    file: Arc<dyn StorageFile>,
    position: u64,
    len: usize,
    record_count: u64,
}

impl FileSlice {
    /// Only for files that are OS files ([`StorageFile::os_file`]).
    pub(crate) fn new(
        file: Arc<dyn StorageFile>,
        position: u64,
        len: usize,
        record_count: u64,
    ) -> FileSlice {
        debug_assert!(
            file.os_file().is_some(),
            "a file slice of a file the OS does not have"
        );
        FileSlice {
            file,
            position,
            len,
            record_count,
        }
    }

    /// The open segment file, to send from.
    pub fn file(&self) -> &std::fs::File {
        self.file
            .os_file()
            .expect("file slices are made of OS files only")
    }

    /// Where the batches start in the file.
    pub fn position(&self) -> u64 {
        self.position
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The batches read into memory, for a writer that cannot send from a file (TLS).
    pub fn read(&self) -> std::io::Result<Bytes> {
        self.file.read_bytes_at(self.len, self.position)
    }
}

impl std::fmt::Debug for FileSlice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSlice")
            .field("position", &self.position)
            .field("len", &self.len)
            .field("record_count", &self.record_count)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) segments: BTreeMap<i64, Segment>,
    pub(crate) next_offset: i64,
    pub(crate) log_start_offset: i64,
    pub(crate) epochs: EpochHistory,
    /// Set when a write or sync failed in a way that leaves the on-disk state unknown.
    pub(crate) failed: Option<String>,
    /// The leader-epoch checkpoint on disk may not match `epochs`: writing it failed for
    /// want of space (the checkpoint is replaced whole, so the file holds an earlier
    /// history). Every append writes it first while set, and is refused until it can.
    pub(crate) epochs_unpersisted: bool,
    /// Bumped by every truncation; stale flush results and checkpoints are dropped.
    pub(crate) generation: u64,
    /// Idempotent producers' recent batches, as of `next_offset`.
    pub(crate) producers: ProducerStates,
}

impl Inner {
    pub(crate) fn active(&self) -> &Segment {
        self.segments
            .values()
            .next_back()
            .expect("a log always has an active segment")
    }

    pub(crate) fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .expect("a log always has an active segment")
    }

    /// Base offset of the segment after `base`, or the log end for the active one.
    pub(crate) fn end_of(&self, base: i64) -> i64 {
        use std::ops::Bound::{Excluded, Unbounded};
        self.segments
            .range((Excluded(base), Unbounded))
            .next()
            .map_or(self.next_offset, |(b, _)| *b)
    }

    pub(crate) fn check_failed(&self) -> Result<(), String> {
        match &self.failed {
            Some(reason) => Err(reason.clone()),
            None => Ok(()),
        }
    }

    pub(crate) fn recovery_point(&self) -> RecoveryPoint {
        let active = self.active();
        let files = active.files();
        RecoveryPoint {
            segment_base: active.base_offset,
            position: active.size,
            next_offset: self.next_offset,
            index_entries: files.index.len() as u32,
            time_index_entries: files.time_index.len() as u32,
            max_timestamp: active.cursor.max_timestamp,
            offset_of_max_timestamp: active.cursor.offset_of_max_timestamp,
        }
    }
}

#[derive(Debug)]
pub(crate) struct FlushState {
    /// Every offset below this is durable.
    pub(crate) flushed_offset: i64,
    in_progress: bool,
    pub(crate) generation: u64,
    last_sync: Instant,
    /// Segments rolled while their data was not yet synced (a roll never syncs under the
    /// log lock), oldest first: every closed segment holding offsets at or past
    /// `flushed_offset`. The next flush of any kind syncs them before the active segment
    /// and before `flushed_offset` or the recovery point moves past them.
    rolled: Vec<RolledSegment>,
}

/// A closed segment whose `.log` data may not be on disk yet.
#[derive(Debug, Clone)]
struct RolledSegment {
    base: i64,
    /// Its end offset: the base of the segment that followed it.
    end: i64,
    file: Arc<dyn crate::storage::StorageFile>,
    path: PathBuf,
}

#[derive(Debug)]
struct CheckpointState {
    last: Option<RecoveryPoint>,
    written_at: Instant,
    generation: u64,
}

/// One partition's log: a directory of segments. Thread-safe; share it with `Arc`.
#[derive(Debug)]
pub struct Log {
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) inner: Mutex<Inner>,
    flush: Mutex<FlushState>,
    flushed: Condvar,
    checkpoint: Mutex<CheckpointState>,
    /// The last high watermark persisted (`checkpoint_high_watermark`).
    high_watermark: Mutex<Option<i64>>,
    /// Held for a whole compaction pass (one at a time), with what passes remember.
    pub(crate) compaction: Mutex<CompactionState>,
    /// Set while a new log's directory (its segment's entries) was never synced: the
    /// first sync of its data syncs the directory too before it counts as durable.
    dir_unsynced: AtomicBool,
    /// The directory lock, unless the caller holds one covering it.
    _lock: Option<File>,
}

/// Who holds the lock that keeps a second process out of a log directory.
#[derive(Debug, Clone, Copy)]
enum DirLock {
    Own,
    HeldByCaller,
}

impl Log {
    /// Opens (creating if needed) the log in `dir` on the real file system, recovering
    /// from an unclean shutdown.
    pub fn open(dir: impl AsRef<Path>, config: LogConfig) -> Result<Log, OpenError> {
        Log::open_with_storage(dir, config, Arc::new(FileStorage))
    }

    /// Opens the log through `storage` (tests inject faults here).
    pub fn open_with_storage(
        dir: impl AsRef<Path>,
        config: LogConfig,
        storage: Arc<dyn Storage>,
    ) -> Result<Log, OpenError> {
        Log::open_inner(dir.as_ref(), config, storage, DirLock::Own)
    }

    /// Opens the log in `dir` without taking a lock of its own: the caller holds one that
    /// covers it (a broker locks its whole data directory). A broker with thousands of
    /// partitions saves a descriptor per partition this way.
    pub fn open_under_lock(
        dir: impl AsRef<Path>,
        config: LogConfig,
        storage: Arc<dyn Storage>,
    ) -> Result<Log, OpenError> {
        Log::open_inner(dir.as_ref(), config, storage, DirLock::HeldByCaller)
    }

    fn open_inner(
        dir: &Path,
        config: LogConfig,
        storage: Arc<dyn Storage>,
        lock: DirLock,
    ) -> Result<Log, OpenError> {
        config.validate().map_err(OpenError::Config)?;
        let dir = dir.to_path_buf();
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |e| OpenError::io(p, e)
        };
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let lock = match lock {
            DirLock::Own => {
                let lock_path = dir.join(crate::storage::LOCK_FILE);
                Some(
                    crate::storage::lock_dir(&dir, "log directory is in use by another process")
                        .map_err(io(&lock_path))?,
                )
            }
            DirLock::HeldByCaller => None,
        };

        let started = Instant::now();
        let high_watermark = checkpoint::read_i64(storage.as_ref(), &dir, Kind::HighWatermark)?;
        let recovery::Recovered {
            mut inner,
            dir_unsynced,
        } = recovery::recover(&dir, &config, storage.as_ref())?;
        let snapshot_current =
            recovery::rebuild_producers(&dir, &config, storage.as_ref(), &mut inner)?;
        let point = inner.recovery_point();
        let log = Log {
            flush: Mutex::new(FlushState {
                flushed_offset: inner.next_offset,
                in_progress: false,
                generation: 0,
                last_sync: Instant::now(),
                rolled: Vec::new(),
            }),
            checkpoint: Mutex::new(CheckpointState {
                last: Some(point),
                written_at: Instant::now(),
                generation: 0,
            }),
            flushed: Condvar::new(),
            high_watermark: Mutex::new(high_watermark),
            compaction: Mutex::new(CompactionState::default()),
            dir,
            config,
            storage,
            inner: Mutex::new(inner),
            dir_unsynced: AtomicBool::new(dir_unsynced),
            _lock: lock,
        };
        // The rebuilt state replaces a snapshot the log no longer matches (one past a
        // crash-shortened end) before anything is appended after it.
        if !snapshot_current {
            log.write_producer_snapshot(&log.lock())?;
        }
        let offsets = log.offsets();
        tracing::info!(
            dir = %log.dir.display(),
            segments = log.segment_count(),
            log_start_offset = offsets.log_start_offset,
            log_end_offset = offsets.log_end_offset,
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "log opened"
        );
        Ok(log)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().expect("log mutex poisoned")
    }

    pub fn offsets(&self) -> LogOffsets {
        let inner = self.lock();
        let flushed_offset = self
            .flush
            .lock()
            .expect("flush mutex poisoned")
            .flushed_offset;
        LogOffsets {
            log_start_offset: inner.log_start_offset,
            log_end_offset: inner.next_offset,
            flushed_offset: flushed_offset.min(inner.next_offset),
        }
    }

    /// Why the log failed, if it did: a write or sync failed in a way that leaves its
    /// unsynced tail unknown. A failed log refuses appends and serves reads only below
    /// its flushed offset; close it and open it again to recover (`recovery.rs`).
    pub fn failure(&self) -> Option<String> {
        self.lock().failed.clone()
    }

    pub fn segment_count(&self) -> usize {
        self.lock().segments.len()
    }

    /// Total bytes of all segment files.
    pub fn size_bytes(&self) -> u64 {
        self.lock().segments.values().map(|s| s.size).sum()
    }

    /// Appends one or more concatenated batches as the leader: validates every batch
    /// (nothing is written if any is bad), assigns offsets from the log end by patching
    /// each batch's base offset and leader epoch in place, and writes them with one
    /// positioned write. With [`FlushPolicy::EveryAppend`] it returns once they are on
    /// disk; otherwise see [`Log::wait_durable`].
    ///
    /// `leader_epoch` is stamped into the batches and recorded in the epoch history; use
    /// `-1` for a log that is not replicated.
    pub fn append(&self, batches: &mut [u8], leader_epoch: i32) -> Result<AppendInfo, AppendError> {
        let mut headers = check_request(batches, self.config.max_message_bytes)?;
        let info = self.append_checked(batches, &mut headers, leader_epoch)?;
        if !info.duplicate {
            let mut pos = 0;
            for h in &headers {
                batch::patch_offset_and_epoch(&mut batches[pos..], h.base_offset, leader_epoch);
                pos += h.total_bytes();
            }
        }
        Ok(info)
    }

    /// [`Log::append`] for batches validated beforehand, where the request arrived (see
    /// [`ValidatedBatches`]), so the per-byte checks ran outside this log's lock and in
    /// parallel with other appends. Only the size limit is checked again, against this
    /// log's `max_message_bytes`. On success the batches hold their assigned offsets.
    pub fn append_validated(
        &self,
        batches: &mut ValidatedBatches,
        leader_epoch: i32,
    ) -> Result<AppendInfo, AppendError> {
        let max = self.config.max_message_bytes;
        if let Some(h) = batches.headers.iter().find(|h| h.total_bytes() > max) {
            return Err(AppendError::MessageTooLarge {
                bytes: h.total_bytes(),
                max,
            });
        }
        let (bytes, headers) = (&batches.bytes, &mut batches.headers);
        self.append_checked(bytes, headers, leader_epoch)
    }

    /// Assigns offsets to checked batches (in `headers`, which the write stamps into the
    /// batches as it writes them; `batches` itself is not changed) and writes them.
    pub(crate) fn append_checked(
        &self,
        batches: &[u8],
        headers: &mut [BatchHeader],
        leader_epoch: i32,
    ) -> Result<AppendInfo, AppendError> {
        let mut inner = self.lock();
        inner
            .check_failed()
            .map_err(|reason| AppendError::Failed { reason })?;
        if let Some(latest) = inner.epochs.latest()
            && leader_epoch >= 0
            && leader_epoch < latest.epoch
        {
            return Err(AppendError::StaleLeaderEpoch {
                epoch: leader_epoch,
                latest: latest.epoch,
            });
        }
        if let Some(duplicate) = check_sequences(&inner.producers, headers)? {
            return Ok(duplicate);
        }
        let span = headers
            .iter()
            .map(|h| i64::from(h.last_offset_delta) + 1)
            .sum();
        self.maybe_roll(&mut inner, batches.len(), span)?;
        let mut changed = inner.epochs_unpersisted;
        if leader_epoch >= 0 {
            let start = inner.next_offset;
            changed |= inner.epochs.assign(leader_epoch, start);
        }
        if changed {
            self.persist_epochs_before_data(&mut inner)?;
        }
        let mut offset = inner.next_offset;
        for h in headers.iter_mut() {
            h.base_offset = offset;
            h.partition_leader_epoch = leader_epoch;
            offset += i64::from(h.last_offset_delta) + 1;
        }
        let info = match self.write_locked(&mut inner, batches, headers, Stamp::Assigned) {
            Ok(info) => info,
            Err(e) => {
                self.forget_unwritten_epochs(&mut inner);
                return Err(e);
            }
        };
        self.record_producers(&mut inner, batches, headers)?;
        drop(inner);
        self.after_append(info.last_offset)?;
        Ok(info)
    }

    /// Appends batches exactly as the leader stored them, as a follower copying its log
    /// (Kafka's append as follower): bytes, offsets and leader epochs are kept. `batches`
    /// is what [`Log::read`] on the leader returned (with no upper bound: followers read
    /// up to the leader's log end).
    ///
    /// Each batch must start at or after the log end and after the batch before it, so
    /// the gaps a compacted leader has, between batches and before the first, are kept
    /// as gaps; batches without records (what compaction leaves to end a segment) are
    /// accepted. Every batch passes the integrity checks of `batch::validate`: the
    /// leader decompressed and walked compressed batches when a producer sent them
    /// ([`check_request`]), so a follower does not again, and the size limit is the hard
    /// `MAX_BATCH_BYTES` (see `check_replicated`). Nothing is
    /// written if any batch is refused ([`AppendError::InvalidBatch`],
    /// [`AppendError::OffsetMismatch`]). The log end becomes the last batch's last offset
    /// plus one; newer leader epochs in the batch headers are recorded in the epoch
    /// history at the base offset of their first batch.
    ///
    /// A batch that would not fit the active segment's 32-bit relative offsets (a gap can
    /// push it there) rolls first, to a segment starting at the log end. If a write
    /// fails after such a roll, the batches before the roll stay appended: the log end
    /// says how far the append got.
    pub fn append_replicated(&self, batches: &[u8]) -> Result<AppendInfo, AppendError> {
        let headers = check_replicated(batches)?;
        let mut inner = self.lock();
        inner
            .check_failed()
            .map_err(|reason| AppendError::Failed { reason })?;
        let runs = {
            let active = inner.active();
            plan_replicated(
                &headers,
                inner.next_offset,
                active.base_offset,
                active.size == 0,
            )?
        };
        // Epochs before data: a crash may leave an epoch that starts past the recovered
        // end (recovery drops it), never a batch whose epoch the history lacks.
        let mut changed = inner.epochs_unpersisted;
        for h in &headers {
            if h.partition_leader_epoch >= 0
                && inner
                    .epochs
                    .latest()
                    .is_none_or(|l| l.epoch < h.partition_leader_epoch)
            {
                changed |= inner.epochs.assign(h.partition_leader_epoch, h.base_offset);
            }
        }
        if changed {
            self.persist_epochs_before_data(&mut inner)?;
        }
        let mut total: Option<AppendInfo> = None;
        for run in &runs {
            let (bytes, run_headers) = (&batches[run.bytes.clone()], &headers[run.batches.clone()]);
            let written = if run.roll_first {
                self.roll_locked(&mut inner).map_err(roll_to_append)
            } else {
                let span = run_headers
                    .last()
                    .expect("a run holds a batch")
                    .next_offset()
                    - inner.next_offset;
                self.maybe_roll(&mut inner, bytes.len(), span)
            }
            .and_then(|()| self.write_locked(&mut inner, bytes, run_headers, Stamp::AsIs));
            let info = match written {
                Ok(info) => info,
                Err(e) => {
                    self.forget_unwritten_epochs(&mut inner);
                    return Err(e);
                }
            };
            self.record_producers(&mut inner, bytes, run_headers)?;
            total = Some(match total {
                None => info,
                Some(t) => AppendInfo {
                    base_offset: t.base_offset,
                    last_offset: info.last_offset,
                    max_timestamp: t.max_timestamp.max(info.max_timestamp),
                    batches: t.batches + info.batches,
                    bytes: t.bytes + info.bytes,
                    duplicate: false,
                },
            });
        }
        let info = total.expect("a request holds a batch");
        drop(inner);
        self.after_append(info.last_offset)?;
        Ok(info)
    }

    /// After a failed write: drops the epochs recorded for batches that were not written
    /// (they start at or past the log end), so the history does not run past the log. If
    /// that cannot be persisted the log fails (a reopen drops them: see recovery).
    fn forget_unwritten_epochs(&self, inner: &mut Inner) {
        if inner.epochs.truncate_from_end(inner.next_offset) {
            match self.persist_epochs(inner) {
                Ok(()) => inner.epochs_unpersisted = false,
                // The next append rewrites it before any data (`epochs_unpersisted`).
                Err(e) if e.is_storage_full() => inner.epochs_unpersisted = true,
                Err(e) => {
                    self.fail(inner, e);
                }
            }
        }
    }

    /// Writes the epoch history before the data that needs it (a batch is never on disk
    /// under an epoch the history lacks). For want of space the append is refused as
    /// storage-full and the log stays healthy: the epochs recorded for it are dropped
    /// again (it wrote nothing) and the next append writes the history first; a full disk
    /// refuses writes, it does not fail the log (found by the soak: a full disk during a
    /// leadership change stopped the broker). Any other error fails the log.
    fn persist_epochs_before_data(&self, inner: &mut Inner) -> Result<(), AppendError> {
        match self.persist_epochs(inner) {
            Ok(()) => {
                inner.epochs_unpersisted = false;
                Ok(())
            }
            Err(
                MaintenanceError::Io { path, source }
                | MaintenanceError::Checkpoint(CheckpointError::Io { path, source }),
            ) if crate::error::no_space(&source) => {
                inner.epochs.truncate_from_end(inner.next_offset);
                inner.epochs_unpersisted = true;
                Err(AppendError::Io { path, source })
            }
            Err(e) => Err(self.fail(inner, e)),
        }
    }

    /// Writes validated, offset-assigned batches at the end of the active segment and
    /// indexes them. On a write error the segment is cut back so nothing partial stays.
    fn write_locked(
        &self,
        inner: &mut Inner,
        batches: &[u8],
        headers: &[BatchHeader],
        stamp: Stamp,
    ) -> Result<AppendInfo, AppendError> {
        let active = inner.active_mut();
        active.reserve_index_room(headers.len())?;
        let start = active.size;
        let file = active.files().file.clone();
        let written = match stamp {
            Stamp::AsIs => file.write_all_at(batches, start),
            Stamp::Assigned => {
                // Each batch as a patched copy of its first bytes and its untouched rest,
                // in one pwritev: the request's buffer is shared, never copied.
                let prefixes: Vec<[u8; batch::STAMPED_BYTES]> = {
                    let mut pos = 0;
                    headers
                        .iter()
                        .map(|h| {
                            let prefix = batch::stamped_prefix(
                                &batches[pos..],
                                h.base_offset,
                                h.partition_leader_epoch,
                            );
                            pos += h.total_bytes();
                            prefix
                        })
                        .collect()
                };
                let mut slices = Vec::with_capacity(2 * headers.len());
                let mut pos = 0;
                for (h, prefix) in headers.iter().zip(&prefixes) {
                    let end = pos + h.total_bytes();
                    slices.push(IoSlice::new(prefix));
                    slices.push(IoSlice::new(&batches[pos + batch::STAMPED_BYTES..end]));
                    pos = end;
                }
                file.write_all_vectored_at(&mut slices, start)
            }
        };
        if let Err(e) = written {
            let path = active.log_path.clone();
            if let Err(cut) = file.set_len(start) {
                let reason = format!(
                    "write to {} failed ({e}) and could not be undone ({cut})",
                    path.display()
                );
                inner.failed = Some(reason);
            }
            return Err(AppendError::io(path, e));
        }
        let mut pos = start;
        let mut max_timestamp = i64::MIN;
        for h in headers {
            active.index_batch(pos, h, &self.config);
            pos += h.total_bytes() as u64;
            max_timestamp = max_timestamp.max(h.max_timestamp);
        }
        active.size = pos;
        let base_offset = headers[0].base_offset;
        let last_offset = headers.last().expect("at least one batch").last_offset();
        assert!(
            base_offset >= inner.next_offset,
            "offsets never go backwards"
        );
        inner.next_offset = last_offset + 1;
        Ok(AppendInfo {
            base_offset,
            last_offset,
            max_timestamp,
            batches: headers.len(),
            bytes: batches.len(),
            duplicate: false,
        })
    }

    fn after_append(&self, last_offset: i64) -> Result<(), AppendError> {
        let to_append = |e: MaintenanceError| match e {
            MaintenanceError::Io { path, source } => AppendError::Io { path, source },
            other => AppendError::Failed {
                reason: other.to_string(),
            },
        };
        match self.config.flush {
            FlushPolicy::EveryAppend => self.wait_durable(last_offset).map_err(to_append),
            FlushPolicy::Interval(_) => self.flush_interval_if_due().map_err(to_append),
            FlushPolicy::GroupCommit | FlushPolicy::None => Ok(()),
        }
    }

    /// Rolls to a new segment if `bytes` more (spanning `span` offsets) would not fit the
    /// active one by size, age, index room or 32-bit relative offsets.
    fn maybe_roll(&self, inner: &mut Inner, bytes: usize, span: i64) -> Result<(), AppendError> {
        let active = inner.active();
        if active.size == 0 {
            return Ok(());
        }
        let full = active.size + bytes as u64 > self.config.segment_bytes;
        let old = self
            .config
            .segment_age
            .is_some_and(|age| active.active_since.elapsed() >= age);
        let offsets = inner.next_offset + span - active.base_offset > i64::from(u32::MAX);
        if full || old || offsets || active.index_is_full() {
            self.roll_locked(inner).map_err(roll_to_append)?;
        }
        Ok(())
    }

    /// Closes the active segment (indexes sealed) and starts a new one at the log end.
    /// Any failure fails the log.
    ///
    /// The closed segment's `.log` is not synced here (that would stall every append for
    /// as long as its dirty bytes take to write): if its data is not all durable yet it is
    /// queued in the flush state, and the next flush of any kind syncs it first; until
    /// then neither `flushed_offset` nor the recovery point moves past it. If everything
    /// was already synced, the recovery point moves to the new segment at once.
    pub(crate) fn roll_locked(&self, inner: &mut Inner) -> Result<(), MaintenanceError> {
        let result = (|| {
            let next = inner.next_offset;
            let active = inner.active_mut();
            if active.base_offset == next {
                return Ok(()); // already empty at the log end
            }
            let rolled = RolledSegment {
                base: active.base_offset,
                end: next,
                file: active.files().file.clone(),
                path: active.log_path.clone(),
            };
            recovery::seal(active).map_err(open_to_maintenance)?;
            let seg = Segment::create(self.storage.as_ref(), &self.dir, next, &self.config)
                .map_err(open_to_maintenance)?;
            inner.segments.insert(next, seg);
            self.storage
                .sync_dir(&self.dir)
                .map_err(|e| MaintenanceError::io(self.dir.clone(), e))?;
            self.write_producer_snapshot(inner)?;
            let mut flush = self.flush_state();
            if flush.generation == inner.generation && flush.flushed_offset >= next {
                // Its data was synced already (every-append, or a group commit that
                // caught up): the new segment's start is a valid recovery point.
                drop(flush);
                self.write_recovery_point(inner)?;
            } else {
                flush.rolled.push(rolled);
            }
            Ok(())
        })();
        if let Err(e) = &result {
            inner.failed = Some(format!("segment roll failed: {e}"));
        }
        if result.is_ok() {
            tracing::debug!(dir = %self.dir.display(), base_offset = inner.next_offset, "segment rolled");
        }
        result
    }

    /// Starts a new segment now (if the active one holds anything).
    pub fn roll(&self) -> Result<(), MaintenanceError> {
        let mut inner = self.lock();
        inner
            .check_failed()
            .map_err(|reason| MaintenanceError::Failed { reason })?;
        self.roll_locked(&mut inner)
    }

    /// Writes the recovery checkpoint for the current state; the caller has made the
    /// active segment's data durable.
    pub(crate) fn write_recovery_point(&self, inner: &Inner) -> Result<(), MaintenanceError> {
        let point = inner.recovery_point();
        let files = inner.active().files();
        files.flush_indexes(MaintenanceError::io)?;
        let mut ckpt = self.checkpoint.lock().expect("checkpoint mutex poisoned");
        checkpoint::write(
            self.storage.as_ref(),
            &self.dir,
            Kind::RecoveryPoint,
            &point.encode(),
        )?;
        ckpt.last = Some(point);
        ckpt.written_at = Instant::now();
        ckpt.generation = inner.generation;
        Ok(())
    }

    pub(crate) fn persist_epochs(&self, inner: &Inner) -> Result<(), MaintenanceError> {
        checkpoint::write(
            self.storage.as_ref(),
            &self.dir,
            Kind::LeaderEpochs,
            &inner.epochs.encode(),
        )?;
        Ok(())
    }

    pub(crate) fn flush_state(&self) -> MutexGuard<'_, FlushState> {
        self.flush.lock().expect("flush mutex poisoned")
    }

    pub(crate) fn fail(&self, inner: &mut Inner, e: MaintenanceError) -> AppendError {
        let reason = e.to_string();
        inner.failed = Some(reason.clone());
        AppendError::Failed { reason }
    }

    /// Blocks until every offset up to and including `offset` is on disk. Group commit:
    /// the first waiter syncs everything appended so far while later ones wait; when that
    /// sync ends, all whose offsets it covered return, and one of the rest starts the next.
    pub fn wait_durable(&self, offset: i64) -> Result<(), MaintenanceError> {
        loop {
            {
                let mut flush = self.flush_state();
                loop {
                    if flush.flushed_offset > offset {
                        return Ok(());
                    }
                    if !flush.in_progress {
                        break;
                    }
                    flush = self.flushed.wait(flush).expect("flush mutex poisoned");
                }
                flush.in_progress = true;
            }
            let result = self.sync_once();
            let target = {
                let mut flush = self.flush_state();
                flush.in_progress = false;
                self.flushed.notify_all();
                let (target, generation) = result?;
                if generation == flush.generation {
                    flush.flushed_offset = flush.flushed_offset.max(target);
                }
                flush.last_sync = Instant::now();
                target
            };
            if target <= offset {
                // This sync covered the whole log, yet not `offset`: it was never appended
                // (or a truncation removed it). The flush lock is released first: lock
                // order is `inner` before `flush`.
                let inner = self.lock();
                if offset >= inner.next_offset {
                    return Err(MaintenanceError::OffsetOutOfRange {
                        offset,
                        log_start_offset: inner.log_start_offset,
                        log_end_offset: inner.next_offset,
                    });
                }
            }
        }
    }

    /// Syncs the segments rolled since the last sync (oldest first), then the active
    /// one; returns the offset below which everything is now durable, and the truncation
    /// generation it belongs to.
    fn sync_once(&self) -> Result<(i64, u64), MaintenanceError> {
        let (rolled, file, path, point, generation) = {
            let inner = self.lock();
            inner
                .check_failed()
                .map_err(|reason| MaintenanceError::Failed { reason })?;
            let active = inner.active();
            (
                self.rolled_to_sync(&inner),
                active.files().file.clone(),
                active.log_path.clone(),
                inner.recovery_point(),
                inner.generation,
            )
        };
        // Segments rolled since the last sync first, oldest first: `point` claims them.
        for r in &rolled {
            self.sync_or_fail(&r.file, &r.path)?;
        }
        self.sync_or_fail(&file, &path)?;
        self.forget_rolled(&rolled);
        match self.maybe_checkpoint(point, generation) {
            Ok(()) => {}
            // The data is durable; only the checkpoint that shortens recovery could not
            // be written for want of space. The last one stands (a recovery scans a
            // little more) and the next sync tries again: a full disk must not fail the
            // syncs that `acks=all` answers wait for.
            Err(e) if e.is_storage_full() => {
                tracing::debug!(dir = %self.dir.display(), error = %e, "recovery checkpoint not written");
            }
            Err(e) => return Err(e),
        }
        Ok((point.next_offset, generation))
    }

    /// `fdatasync` outside the log lock. A failure fails the log: the kernel may have
    /// dropped the dirty pages, so what the page cache shows can no longer be trusted to
    /// be on disk (PostgreSQL's "fsyncgate"); reopening recovers from what the disk holds.
    fn sync_or_fail(
        &self,
        file: &Arc<dyn crate::storage::StorageFile>,
        path: &Path,
    ) -> Result<(), MaintenanceError> {
        file.sync_data()
            .map_err(|e| Self::sync_failed(&mut self.lock(), path, e))?;
        // A new log syncs nothing when it is created (recovery.rs); its first data sync
        // makes the segment's directory entries durable with the data.
        if self.dir_unsynced.load(Ordering::Acquire) {
            self.storage
                .sync_dir(&self.dir)
                .map_err(|e| Self::sync_failed(&mut self.lock(), &self.dir, e))?;
            self.dir_unsynced.store(false, Ordering::Release);
        }
        Ok(())
    }

    /// [`Log::sync_or_fail`] for a caller that holds the log lock (close, truncation).
    fn sync_locked(
        inner: &mut Inner,
        file: &Arc<dyn crate::storage::StorageFile>,
        path: &Path,
    ) -> Result<(), MaintenanceError> {
        file.sync_data()
            .map_err(|e| Self::sync_failed(inner, path, e))
    }

    /// Fails the log after a failed fsync of `path` and returns the error to report.
    fn sync_failed(inner: &mut Inner, path: &Path, e: std::io::Error) -> MaintenanceError {
        let reason = format!("fsync of {} failed: {e}", path.display());
        tracing::error!(reason, "log failed");
        inner.failed = Some(reason);
        MaintenanceError::io(path.to_path_buf(), e)
    }

    /// Drops queued rolled segments that no longer need a sync: removed (retention,
    /// truncation) or replaced (compaction, whose output is synced) since, active again
    /// (a truncation cut back into it), or already covered by `flushed_offset`.
    pub(crate) fn prune_rolled(&self, inner: &Inner) {
        let active_base = inner.active().base_offset;
        let mut flush = self.flush_state();
        let flushed = flush.flushed_offset;
        flush.rolled.retain(|r| {
            r.base != active_base
                && r.end > flushed
                && inner
                    .segments
                    .get(&r.base)
                    .and_then(|s| s.files.as_ref())
                    .is_some_and(|f| Arc::ptr_eq(&f.file, &r.file))
        });
    }

    /// The rolled segments a flush must sync before anything later, oldest first.
    fn rolled_to_sync(&self, inner: &Inner) -> Vec<RolledSegment> {
        self.prune_rolled(inner);
        self.flush_state().rolled.clone()
    }

    /// Removes the segments in `synced` from the queue.
    fn forget_rolled(&self, synced: &[RolledSegment]) {
        if synced.is_empty() {
            return;
        }
        self.flush_state()
            .rolled
            .retain(|r| !synced.iter().any(|s| Arc::ptr_eq(&s.file, &r.file)));
    }

    /// True while a rolled segment waits for the sync [`Log::flush_rolled`] gives it (a
    /// cheap check for a background task deciding whether to call it).
    pub fn rolled_awaiting_sync(&self) -> bool {
        !self.flush_state().rolled.is_empty()
    }

    /// Syncs every queued rolled segment (not the active one), outside the log lock, then
    /// moves `flushed_offset` and the recovery point to the start of the segment after
    /// the last of them: Kafka's asynchronous flush of rolled segments. A no-op when no
    /// roll is waiting for its sync. Call it from a background task soon after a roll
    /// (`flush_if_due` does, under every policy).
    pub fn flush_rolled(&self) -> Result<(), MaintenanceError> {
        let (rolled, generation) = {
            let inner = self.lock();
            inner
                .check_failed()
                .map_err(|reason| MaintenanceError::Failed { reason })?;
            (self.rolled_to_sync(&inner), inner.generation)
        };
        let Some(last) = rolled.last() else {
            return Ok(());
        };
        for r in &rolled {
            self.sync_or_fail(&r.file, &r.path)?;
        }
        self.forget_rolled(&rolled);
        let end = last.end;
        {
            let mut flush = self.flush_state();
            if flush.generation == generation {
                flush.flushed_offset = flush.flushed_offset.max(end);
            }
        }
        self.flushed.notify_all();
        // The recovery point moves to the start of the segment after the synced ones, as
        // a roll used to do, if nothing newer was written and no truncation intervened.
        {
            let inner = self.lock();
            if inner.generation != generation || !inner.segments.contains_key(&end) {
                return Ok(());
            }
        }
        let point = RecoveryPoint {
            segment_base: end,
            position: 0,
            next_offset: end,
            index_entries: 0,
            time_index_entries: 0,
            max_timestamp: i64::MIN,
            offset_of_max_timestamp: end,
        };
        self.store_recovery_point(point, generation, |_| true)
    }

    /// Under the log lock: syncs every queued rolled segment (for close and truncation,
    /// which sync the active segment under the lock and then write a recovery point).
    pub(crate) fn sync_rolled_locked(&self, inner: &mut Inner) -> Result<(), MaintenanceError> {
        let rolled = self.rolled_to_sync(inner);
        for r in &rolled {
            Self::sync_locked(inner, &r.file, &r.path)?;
        }
        self.forget_rolled(&rolled);
        Ok(())
    }

    /// After a sync made `point` durable, persists it as the recovery checkpoint, at most
    /// once per `recovery_checkpoint_interval`. A point made stale by a roll or a
    /// truncation in the meantime is dropped (those write their own).
    fn maybe_checkpoint(
        &self,
        point: RecoveryPoint,
        generation: u64,
    ) -> Result<(), MaintenanceError> {
        let due = |c: &CheckpointState| {
            c.written_at.elapsed() >= self.config.recovery_checkpoint_interval
        };
        if !due(&self.checkpoint.lock().expect("checkpoint mutex poisoned")) {
            return Ok(());
        }
        {
            // The index entries the point counts must be on disk too.
            let inner = self.lock();
            let active = inner.active();
            if inner.generation != generation || active.base_offset != point.segment_base {
                return Ok(());
            }
            let files = active.files();
            files.flush_indexes(MaintenanceError::io)?;
        }
        self.store_recovery_point(point, generation, due)
    }

    /// Writes `point` as the recovery checkpoint if it is past the last one written, no
    /// truncation intervened (`generation`), and `also` agrees (checked under the
    /// checkpoint lock).
    fn store_recovery_point(
        &self,
        point: RecoveryPoint,
        generation: u64,
        also: impl Fn(&CheckpointState) -> bool,
    ) -> Result<(), MaintenanceError> {
        let mut ckpt = self.checkpoint.lock().expect("checkpoint mutex poisoned");
        let newer = ckpt
            .last
            .is_none_or(|l| (point.segment_base, point.position) > (l.segment_base, l.position));
        if ckpt.generation != generation || !newer || !also(&ckpt) {
            return Ok(());
        }
        checkpoint::write(
            self.storage.as_ref(),
            &self.dir,
            Kind::RecoveryPoint,
            &point.encode(),
        )?;
        ckpt.last = Some(point);
        ckpt.written_at = Instant::now();
        Ok(())
    }

    /// Syncs everything appended so far.
    pub fn flush(&self) -> Result<(), MaintenanceError> {
        let end = self.lock().next_offset;
        if end == 0
            || self
                .flush
                .lock()
                .expect("flush mutex poisoned")
                .flushed_offset
                >= end
        {
            return Ok(());
        }
        self.wait_durable(end - 1)
    }

    /// With [`FlushPolicy::Interval`], syncs if the last sync is older than the interval.
    /// Under every policy, first syncs the segments rolled since the last flush
    /// ([`Log::flush_rolled`]).
    pub fn flush_if_due(&self) -> Result<(), MaintenanceError> {
        self.flush_rolled()?;
        self.flush_interval_if_due()
    }

    /// The interval part of [`Log::flush_if_due`] (what every append checks).
    fn flush_interval_if_due(&self) -> Result<(), MaintenanceError> {
        let FlushPolicy::Interval(interval) = self.config.flush else {
            return Ok(());
        };
        let due = self
            .flush
            .lock()
            .expect("flush mutex poisoned")
            .last_sync
            .elapsed()
            >= interval;
        if due { self.flush() } else { Ok(()) }
    }

    /// The leader-epoch history: each epoch and the first offset written in it.
    pub fn leader_epochs(&self) -> Vec<EpochEntry> {
        self.lock().epochs.entries().to_vec()
    }

    /// Where `epoch` ended in this log (Kafka's OffsetsForLeaderEpoch): the largest epoch
    /// at most `epoch` and the offset after its last record. `None` if `epoch` is older
    /// than anything the log remembers.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        let inner = self.lock();
        inner.epochs.end_offset_for(epoch, inner.next_offset)
    }

    /// Persists the high watermark (write-temp, fsync, rename, fsync directory).
    pub fn checkpoint_high_watermark(&self, high_watermark: i64) -> Result<(), MaintenanceError> {
        // Its own lock, held across the write so checkpoints land in call order, but not
        // the log lock: appends go on during the two fsyncs.
        let mut persisted = self
            .high_watermark
            .lock()
            .expect("high watermark mutex poisoned");
        checkpoint::write_i64(
            self.storage.as_ref(),
            &self.dir,
            Kind::HighWatermark,
            high_watermark,
        )?;
        *persisted = Some(high_watermark);
        Ok(())
    }

    /// The last persisted high watermark, if any was ever written.
    pub fn high_watermark_checkpoint(&self) -> Option<i64> {
        *self
            .high_watermark
            .lock()
            .expect("high watermark mutex poisoned")
    }

    /// Syncs everything and writes the recovery checkpoint at the log end, so the next
    /// open scans nothing. Also done on drop, best effort.
    pub fn close(self) -> Result<(), MaintenanceError> {
        self.close_ref()
    }

    fn close_ref(&self) -> Result<(), MaintenanceError> {
        let mut inner = self.lock();
        inner
            .check_failed()
            .map_err(|reason| MaintenanceError::Failed { reason })?;
        self.sync_rolled_locked(&mut inner)?;
        let active = inner.active();
        let (file, path) = (active.files().file.clone(), active.log_path.clone());
        Self::sync_locked(&mut inner, &file, &path)?;
        self.write_producer_snapshot(&inner)?;
        self.write_recovery_point(&inner)
    }

    /// Writes the idempotent producers' state as of the log end (see `producers`); a log
    /// that never had an idempotent producer writes nothing.
    pub(crate) fn write_producer_snapshot(
        &self,
        inner: &Inner,
    ) -> Result<(), crate::error::CheckpointError> {
        let kind = Kind::ProducerState;
        if inner.producers.is_empty() && !self.dir.join(kind.file_name()).exists() {
            return Ok(());
        }
        // The snapshot vouches for the aborted-transaction entries before its offset
        // (they are not rebuilt after a crash): they are made durable first.
        for seg in inner.segments.values() {
            if let Some(txn) = &seg.txn {
                txn.sync()
                    .map_err(|source| crate::error::CheckpointError::Io {
                        path: seg.path(crate::txn_index::TXN_INDEX_SUFFIX),
                        source,
                    })?;
            }
        }
        let payload = inner.producers.encode(inner.next_offset);
        checkpoint::write(self.storage.as_ref(), &self.dir, kind, &payload)
    }

    /// How many idempotent producers this log remembers.
    pub fn producer_count(&self) -> usize {
        self.lock().producers.len()
    }

    /// The idempotent producers this log remembers, by producer id (Kafka's
    /// DescribeProducers).
    pub fn producers(&self) -> Vec<crate::producers::ProducerSummary> {
        self.lock().producers.summaries()
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        // A poisoned lock means a bug already panicked mid-operation: trust nothing and
        // leave the files to recovery.
        match self.inner.lock() {
            Ok(inner) if inner.failed.is_none() => {}
            _ => return,
        }
        if let Err(e) = self.close_ref() {
            tracing::warn!(dir = %self.dir.display(), error = %e, "log close failed; the next open will recover");
        }
    }
}

/// A failed roll as an append's error (a roll failure has failed the log).
/// How [`Log::write_locked`] writes batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stamp {
    /// As they are: a follower's copy keeps the leader's offsets and epochs.
    AsIs,
    /// With the base offset and leader epoch of each batch's header (a leader's append).
    Assigned,
}

fn roll_to_append(e: MaintenanceError) -> AppendError {
    match e {
        MaintenanceError::Io { path, source } => AppendError::Io { path, source },
        other => AppendError::Failed {
            reason: other.to_string(),
        },
    }
}

pub(crate) fn open_to_maintenance(e: OpenError) -> MaintenanceError {
    match e {
        OpenError::Io { path, source } => MaintenanceError::Io { path, source },
        OpenError::Checkpoint(c) => MaintenanceError::Checkpoint(c),
        OpenError::Config(reason) => MaintenanceError::Failed { reason },
    }
}

/// Removes a segment's files: indexes first, the log last, so a crash in between leaves
/// a log file whose indexes are simply rebuilt.
pub(crate) fn remove_segment_files(
    storage: &dyn Storage,
    seg: &Segment,
) -> Result<(), MaintenanceError> {
    for suffix in [
        crate::txn_index::TXN_INDEX_SUFFIX,
        segment::INDEX_SUFFIX,
        segment::TIME_INDEX_SUFFIX,
        LOG_SUFFIX,
    ] {
        let path = seg.path(suffix);
        match storage.remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(MaintenanceError::io(path, e)),
        }
    }
    Ok(())
}

/// The idempotent-producer check of a leader's append (see `producers`): `Some` with the
/// original offsets for a retry of a batch already written (nothing is to be written),
/// `None` to write it. A batch with a producer id must come alone.
fn check_sequences(
    producers: &ProducerStates,
    headers: &[BatchHeader],
) -> Result<Option<AppendInfo>, AppendError> {
    if !headers.iter().any(|h| h.producer_id >= 0) {
        return Ok(None);
    }
    if headers.len() > 1 {
        return Err(AppendError::IdempotentBatchNotAlone {
            batches: headers.len(),
        });
    }
    let h = &headers[0];
    if h.is_control() {
        producers.check_marker(h.producer_id, h.producer_epoch)?;
        return Ok(None);
    }
    Ok(match producers.check(h)? {
        SequenceCheck::Append => None,
        SequenceCheck::Duplicate {
            base_offset,
            last_offset,
        } => Some(AppendInfo {
            base_offset,
            last_offset,
            max_timestamp: h.max_timestamp,
            batches: 0,
            bytes: 0,
            duplicate: true,
        }),
    })
}
