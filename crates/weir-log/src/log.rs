//! [`Log`]: one partition's log. The type and its state, opening, leader epochs, the
//! high watermark, the producer snapshot and closing. Appending lives in `log/write.rs`,
//! rolling to a new segment in `log/roll.rs`, flushing with group commit in
//! `log/flush.rs`, and what a read returns in `log/fetch_data.rs`. Recovery lives in
//! `recovery.rs`, reads in `read.rs`, truncation and retention in `maintenance.rs`,
//! transactions in `transactions.rs` and compaction in `compaction.rs`.
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
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::checkpoint::{self, Kind};
use crate::compaction::CompactionState;
use crate::config::LogConfig;
pub use crate::epoch::EpochEntry;
use crate::epoch::EpochHistory;
use crate::error::{MaintenanceError, OpenError};
use crate::producers::ProducerStates;
use crate::recovery::{self, RecoveryPoint};
use crate::segment::{self, LOG_SUFFIX, Segment};
use crate::storage::{FileStorage, Storage};

mod fetch_data;
mod flush;
mod park;
mod roll;
mod write;

pub(crate) use fetch_data::record_count;
pub use fetch_data::{FetchData, FileSlice, SegmentPosition};
use flush::{CheckpointState, FlushState, RolledSegment};
pub use write::AppendInfo;

/// An open that took this long is logged at info (a recovery scan, a slow disk); others
/// at debug (`RUST_LOG=weir_log=debug` shows them): a broker opens every partition's log,
/// and 100,000 partitions would be 100,000 lines.
const SLOW_OPEN: Duration = Duration::from_millis(100);

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

#[derive(Debug)]
pub(crate) struct Inner {
    /// Boxed: a map node holds up to 11 values inline, and one `Segment` is about 900
    /// bytes, so an unboxed map cost a partition of one segment about 10 KiB (most of a
    /// broker's memory per idle partition: BENCHMARKS.md § Partition scale).
    pub(crate) segments: BTreeMap<i64, Box<Segment>>,
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
    /// When an append or a read last used the log (parking closes the files of a log
    /// unused for a while: `log/park.rs`).
    pub(crate) last_used: Instant,
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
        if let Some(point) = active.parked {
            return point;
        }
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
            flush: Mutex::new(FlushState::new(inner.next_offset)),
            checkpoint: Mutex::new(CheckpointState::new(point)),
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
            log.replace_producer_snapshot(&log.lock())?;
        }
        let offsets = log.offsets();
        let elapsed = started.elapsed();
        macro_rules! opened {
            ($level:expr) => {
                tracing::event!(
                    $level,
                    dir = %log.dir.display(),
                    segments = log.segment_count(),
                    log_start_offset = offsets.log_start_offset,
                    log_end_offset = offsets.log_end_offset,
                    elapsed_ms = elapsed.as_secs_f64() * 1e3,
                    "log opened"
                )
            };
        }
        if elapsed >= SLOW_OPEN {
            opened!(tracing::Level::INFO);
        } else {
            opened!(tracing::Level::DEBUG);
        }
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

    pub(crate) fn persist_epochs(&self, inner: &Inner) -> Result<(), MaintenanceError> {
        checkpoint::write(
            self.storage.as_ref(),
            &self.dir,
            Kind::LeaderEpochs,
            &inner.epochs.encode(),
        )?;
        Ok(())
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
        // A parked log is closed already: parking made it durable and wrote its
        // checkpoints, and nothing was appended since.
        if inner.active().parked.is_some() {
            return Ok(());
        }
        self.settle_locked(&mut inner)
    }

    /// Writes the idempotent producers' state as of the log end (see `producers`); an
    /// empty log that never had an idempotent producer writes nothing. A log with records
    /// writes one even if it never had such a producer: without it the next open would
    /// read every batch header from the log start to learn there is none, opening every
    /// segment (and a parked active one) of every partition at a broker's start.
    pub(crate) fn write_producer_snapshot(
        &self,
        inner: &Inner,
    ) -> Result<(), crate::error::CheckpointError> {
        match self.producer_snapshot(inner)? {
            Some(payload) => checkpoint::write(
                self.storage.as_ref(),
                &self.dir,
                Kind::ProducerState,
                &payload,
            ),
            None => Ok(()),
        }
    }

    /// [`Log::write_producer_snapshot`] where the snapshot on disk may be past the log end
    /// (after a truncation, or a recovery that lost a tail): one that cannot be written
    /// for want of space is removed (`checkpoint::write_or_remove`), never left to be
    /// taken for the state at an offset the log reaches again with other batches.
    pub(crate) fn replace_producer_snapshot(
        &self,
        inner: &Inner,
    ) -> Result<(), crate::error::CheckpointError> {
        match self.producer_snapshot(inner)? {
            Some(payload) => {
                let kind = Kind::ProducerState;
                checkpoint::write_or_remove(self.storage.as_ref(), &self.dir, kind, &payload)
            }
            None => Ok(()),
        }
    }

    /// The producer snapshot's payload, its aborted-transaction entries made durable
    /// first; `None` when there is nothing to write.
    fn producer_snapshot(
        &self,
        inner: &Inner,
    ) -> Result<Option<Vec<u8>>, crate::error::CheckpointError> {
        let kind = Kind::ProducerState;
        if inner.producers.is_empty()
            && inner.next_offset == inner.log_start_offset
            && !self.dir.join(kind.file_name()).exists()
        {
            return Ok(None);
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
        Ok(Some(inner.producers.encode(inner.next_offset)))
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
