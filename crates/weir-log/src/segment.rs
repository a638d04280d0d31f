//! One segment: a `.log` file of record batches starting at `base_offset`, with its
//! `.index` and `.timeindex`. Segments other than the last are closed and opened lazily,
//! so opening a log costs one directory listing, not a pass over every file. The last
//! (active) one may be parked: its files closed while the log is idle, and opened again
//! by the first append or read (`log/park.rs`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::batch::BatchHeader;
use crate::config::LogConfig;
use crate::error::{AppendError, OpenError};
use crate::index::{Index, OffsetEntry, TimeEntry};
use crate::recovery::{self, RecoveryPoint};
use crate::storage::{Storage, StorageFile};
use crate::txn_index::TxnIndex;

pub(crate) const LOG_SUFFIX: &str = "log";
pub(crate) const INDEX_SUFFIX: &str = "index";
pub(crate) const TIME_INDEX_SUFFIX: &str = "timeindex";

/// `<dir>/<20-digit base offset>.<suffix>`, as Kafka names them.
pub(crate) fn file_path(dir: &Path, base_offset: i64, suffix: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{suffix}"))
}

/// Parses a segment file name back into its base offset.
pub(crate) fn parse_log_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(".log")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// The files of a segment that has been opened.
#[derive(Debug)]
pub(crate) struct SegmentFiles {
    pub file: Arc<dyn StorageFile>,
    pub index: Index<OffsetEntry>,
    pub time_index: Index<TimeEntry>,
}

impl SegmentFiles {
    /// Writes both indexes' dirty pages to disk (msync), naming the file that failed
    /// with `wrap`.
    pub(crate) fn flush_indexes<E>(&self, wrap: fn(PathBuf, std::io::Error) -> E) -> Result<(), E> {
        self.index
            .flush()
            .map_err(|e| wrap(self.index.path().to_path_buf(), e))?;
        self.time_index
            .flush()
            .map_err(|e| wrap(self.time_index.path().to_path_buf(), e))
    }

    /// Grows both indexes to `index_max_bytes`, ready to take an active segment's
    /// entries, naming the file that failed with `wrap`.
    pub(crate) fn reserve_full<E>(
        &mut self,
        config: &LogConfig,
        wrap: fn(PathBuf, std::io::Error) -> E,
    ) -> Result<(), E> {
        let cap = u64::from(config.index_max_bytes);
        self.index
            .reserve(cap)
            .map_err(|e| wrap(self.index.path().to_path_buf(), e))?;
        self.time_index
            .reserve(cap)
            .map_err(|e| wrap(self.time_index.path().to_path_buf(), e))
    }
}

/// What indexing has seen so far; appends and recovery feed batches through
/// [`Segment::index_batch`] so both build the same indexes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IndexCursor {
    pub bytes_since_entry: u64,
    pub max_timestamp: i64,
    pub offset_of_max_timestamp: i64,
}

impl IndexCursor {
    pub(crate) fn fresh(base_offset: i64) -> Self {
        IndexCursor {
            bytes_since_entry: u64::MAX,
            max_timestamp: i64::MIN,
            offset_of_max_timestamp: base_offset,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Segment {
    pub base_offset: i64,
    pub log_path: PathBuf,
    /// Bytes of complete batches; readers never look past it.
    pub size: u64,
    /// Where the bytes this process appended start: every batch from here to `size` was
    /// checked (CRC included) before it was written, so reads need not compute its CRC
    /// again (`read.rs`). The segment's size when this process first knew it; only
    /// checked appends grow a segment after that.
    pub verified_from: u64,
    pub files: Option<SegmentFiles>,
    pub cursor: IndexCursor,
    /// When this segment was created or became active in this process; rolls by age.
    pub active_since: Instant,
    /// Its aborted transactions (`txn_index.rs`), once loaded.
    pub txn: Option<TxnIndex>,
    /// Set on the active segment while its files are closed (`files` is `None`): the
    /// recovery point on disk, which describes the segment exactly (everything in it is
    /// durable and indexed as the point says). [`Segment::ensure_open`] opens it again,
    /// ready for appends. A new log's segment starts parked, its files not yet created.
    pub parked: Option<RecoveryPoint>,
}

impl Segment {
    /// A segment known from its file name only; opened on first use.
    pub(crate) fn closed(dir: &Path, base_offset: i64, size: u64) -> Segment {
        Segment {
            base_offset,
            log_path: file_path(dir, base_offset, LOG_SUFFIX),
            size,
            verified_from: size,
            files: None,
            cursor: IndexCursor::fresh(base_offset),
            active_since: Instant::now(),
            txn: None,
            parked: None,
        }
    }

    /// The active segment of a new, empty log at `base_offset`: parked, its files
    /// created by the first append (or read) that opens it.
    pub(crate) fn unborn(dir: &Path, base_offset: i64) -> Segment {
        let mut seg = Segment::closed(dir, base_offset, 0);
        seg.parked = Some(RecoveryPoint::empty(base_offset));
        seg.txn = Some(TxnIndex::default());
        seg
    }

    /// Creates the files of a new, empty active segment.
    pub(crate) fn create(
        storage: &dyn Storage,
        dir: &Path,
        base_offset: i64,
        config: &LogConfig,
    ) -> Result<Segment, OpenError> {
        let mut seg = Segment::closed(dir, base_offset, 0);
        let file = open_log(storage, &seg.log_path, true, config)
            .map_err(|e| OpenError::io(seg.log_path.clone(), e))?;
        file.set_len(0)
            .map_err(|e| OpenError::io(seg.log_path.clone(), e))?;
        let index = open_index(
            &seg.path(INDEX_SUFFIX),
            Some(u64::from(config.index_max_bytes)),
            Some(0),
        )?;
        let time_index = open_index(
            &seg.path(TIME_INDEX_SUFFIX),
            Some(u64::from(config.index_max_bytes)),
            Some(0),
        )?;
        seg.files = Some(SegmentFiles {
            file,
            index,
            time_index,
        });
        seg.txn = Some(TxnIndex::default());
        Ok(seg)
    }

    /// Closes the active segment's files; `point` (on disk) describes it exactly.
    pub(crate) fn park(&mut self, point: RecoveryPoint) {
        debug_assert_eq!(
            (point.segment_base, point.position),
            (self.base_offset, self.size)
        );
        self.files = None;
        self.parked = Some(point);
        self.cursor.max_timestamp = point.max_timestamp;
        self.cursor.offset_of_max_timestamp = point.offset_of_max_timestamp;
    }

    pub(crate) fn path(&self, suffix: &str) -> PathBuf {
        self.log_path.with_extension(suffix)
    }

    pub(crate) fn files(&self) -> &SegmentFiles {
        self.files.as_ref().expect("segment is open")
    }

    pub(crate) fn files_mut(&mut self) -> &mut SegmentFiles {
        self.files.as_mut().expect("segment is open")
    }

    /// Opens a closed segment's files, checking its indexes against the log file and
    /// rebuilding them (one scan of this segment) if they are missing or inconsistent. A
    /// parked active segment is opened as its recovery point says, ready for appends.
    /// `end_offset` is the next segment's base offset.
    pub(crate) fn ensure_open(
        &mut self,
        storage: &dyn Storage,
        config: &LogConfig,
        end_offset: i64,
    ) -> Result<&mut SegmentFiles, OpenError> {
        if self.files.is_none()
            && let Some(point) = self.parked
        {
            recovery::reopen_parked(storage, self, config, point)?;
            self.parked = None;
        }
        if self.files.is_none() {
            let file = open_log(storage, &self.log_path, false, config)
                .map_err(|e| OpenError::io(self.log_path.clone(), e))?;
            let index_path = self.path(INDEX_SUFFIX);
            let time_path = self.path(TIME_INDEX_SUFFIX);
            let present = index_path.exists() && time_path.exists();
            let index = open_index(&index_path, None, None)?;
            let time_index = open_index(&time_path, None, None)?;
            let span = (end_offset - self.base_offset).max(0);
            let size = self.size;
            let consistent = present
                && (size == 0 || !index.is_empty())
                && index.is_consistent(|e: OffsetEntry| {
                    u64::from(e.position) < size.max(1)
                        && i64::from(e.relative_offset) < span.max(1)
                })
                && time_index
                    .is_consistent(|e: TimeEntry| i64::from(e.relative_offset) < span.max(1));
            self.files = Some(SegmentFiles {
                file,
                index,
                time_index,
            });
            if !consistent {
                tracing::warn!(segment = %self.log_path.display(), "index missing or inconsistent; rebuilding");
                recovery::rebuild_closed_segment(self, config)?;
            }
            if let Some(last) = self.files().time_index.last() {
                self.cursor.max_timestamp = last.timestamp;
                self.cursor.offset_of_max_timestamp =
                    self.base_offset + i64::from(last.relative_offset);
            }
        }
        Ok(self.files.as_mut().expect("just opened"))
    }

    /// Records one appended (or recovered) batch in the indexes. Returns false if an
    /// index is full, which makes the log roll before the next append.
    pub(crate) fn index_batch(&mut self, position: u64, header: &BatchHeader, config: &LogConfig) {
        let total = header.total_bytes() as u64;
        let base = self.base_offset;
        let cursor = &mut self.cursor;
        if header.max_timestamp > cursor.max_timestamp {
            cursor.max_timestamp = header.max_timestamp;
            cursor.offset_of_max_timestamp = header.base_offset;
        }
        let due = cursor.bytes_since_entry >= u64::from(config.index_interval_bytes);
        let cursor = *cursor;
        let files = self.files.as_mut().expect("segment is open");
        if due && !files.index.is_full() {
            let relative_offset = relative(header.base_offset, base);
            files.index.push(OffsetEntry {
                relative_offset,
                position: position as u32,
            });
            maybe_push_time(&mut files.time_index, &cursor, base);
            self.cursor.bytes_since_entry = 0;
        }
        self.cursor.bytes_since_entry = self.cursor.bytes_since_entry.saturating_add(total);
    }

    /// Adds a final time-index entry for the segment's newest timestamp, so a closed
    /// segment's max timestamp is its last time-index entry.
    pub(crate) fn seal_time_index(&mut self) {
        let cursor = self.cursor;
        let base = self.base_offset;
        if let Some(files) = self.files.as_mut() {
            maybe_push_time(&mut files.time_index, &cursor, base);
        }
    }

    /// Allocates the index files' blocks for `batches` more batches before they are
    /// written (see [`Index::reserve_entries`]): on a full disk this fails and the
    /// append is refused with nothing written, rather than a store into a mapped page
    /// faulting later.
    pub(crate) fn reserve_index_room(&mut self, batches: usize) -> Result<(), AppendError> {
        // Called on every append: the index's path is built only for an error, naming
        // the index that could not grow.
        let files = self.files.as_mut().expect("segment is open");
        files
            .index
            .reserve_entries(batches)
            .map_err(|e| AppendError::io(files.index.path().to_path_buf(), e))?;
        files
            .time_index
            .reserve_entries(batches)
            .map_err(|e| AppendError::io(files.time_index.path().to_path_buf(), e))
    }

    pub(crate) fn index_is_full(&self) -> bool {
        self.files
            .as_ref()
            .is_some_and(|f| f.index.is_full() || f.time_index.is_full())
            || self.txn.as_ref().is_some_and(TxnIndex::is_full)
    }

    /// Cuts the zeros a direct write may leave past the data (`storage/direct.rs`) off a
    /// segment that takes no more appends, so that its file's size is its data's once
    /// more: a closed segment's size is read from the directory when the log opens.
    /// Returns whether there was anything to cut, which then wants a sync.
    pub(crate) fn cut_padding(&self) -> std::io::Result<bool> {
        let file = &self.files().file;
        if file.size()? <= self.size {
            return Ok(false);
        }
        file.set_len(self.size)?;
        Ok(true)
    }

    /// Newest timestamp in the segment, if it holds any batch (segment must be open).
    pub(crate) fn max_timestamp(&self) -> Option<i64> {
        (self.cursor.max_timestamp != i64::MIN).then_some(self.cursor.max_timestamp)
    }
}

/// Opens a segment's `.log` file, for direct writes (and reads past the page cache)
/// where the config asks ([`LogConfig::writes_direct`]).
pub(crate) fn open_log(
    storage: &dyn Storage,
    path: &Path,
    create: bool,
    config: &LogConfig,
) -> std::io::Result<Arc<dyn StorageFile>> {
    match config.writes_direct() {
        true => storage.open_direct(path, create),
        false => storage.open(path, create),
    }
}

fn maybe_push_time(time_index: &mut Index<TimeEntry>, cursor: &IndexCursor, base: i64) {
    if cursor.max_timestamp == i64::MIN || time_index.is_full() {
        return;
    }
    if time_index
        .last()
        .is_none_or(|t| cursor.max_timestamp > t.timestamp)
    {
        time_index.push(TimeEntry {
            timestamp: cursor.max_timestamp,
            relative_offset: relative(cursor.offset_of_max_timestamp, base),
        });
    }
}

/// Offsets within a segment fit 32 bits: a segment rolls before that (see `Log::append`).
pub(crate) fn relative(offset: i64, base: i64) -> u32 {
    u32::try_from(offset - base).expect("offset within 2^32 of its segment's base")
}

fn open_index<E: crate::index::Entry>(
    path: &Path,
    capacity: Option<u64>,
    entries: Option<usize>,
) -> Result<Index<E>, OpenError> {
    Index::open(path, capacity, entries).map_err(|e| OpenError::io(path.to_path_buf(), e))
}
