//! The Raft log of the metadata quorum (openraft's `RaftLogStorage`): segment files of
//! CRC'd entries, plus the vote, the committed log id and the purge point.
//!
//! Why not weir-log's `Log`: it stores Kafka RecordBatch v2 with offset and time indexes,
//! flush policies, leader epochs and retention. A Raft entry would have to be wrapped in
//! a batch, the Raft index mapped to an offset, and Raft's "drop a conflicting suffix" and
//! "drop a purged prefix" done through calls shaped for partitions. The metadata log is
//! small (bounded by the snapshot interval) and needs only append + fsync, truncate a
//! suffix, drop a prefix and read by index, which a segment file of length-prefixed,
//! checksummed frames does in a few hundred lines whose recovery rules are stated here.
//!
//! Layout under `<dir>/log/`: segments named by the index of their first entry,
//! `<first index, 20 digits>.log`, each `magic "WEIRQLOG" | version u16` followed by
//! frames `len u32 | crc32 u32 | index u64 | entry (JSON, len bytes)`, big-endian, the
//! CRC-32 (IEEE) over index and entry. Indexes are consecutive within and across
//! segments. A new segment starts when the active one reaches `log_segment_bytes_max`;
//! purging records the purge point (`<dir>/purged`) first and then deletes the segments
//! wholly behind it, so a restart reads at most one segment of purged entries. The vote
//! (`<dir>/vote`) and committed log id (`<dir>/committed`) are state files written
//! atomically (see `state_file`); the vote is durable before openraft acts on it.
//!
//! Recovery: every frame's length is checked against [`MAX_ENTRY_BYTES`] and the file
//! size before it sizes a buffer, then its CRC, index and decoding. In the last segment
//! a frame cut short by the end of the file, or a final frame whose CRC fails, is a write
//! torn by a crash: the segment is truncated before it (that entry was never fsynced, so
//! never acknowledged). Anything else (a bad frame followed by more data, a bad frame in
//! an earlier segment, a gap in the indexes) is corruption, reported with the segment and
//! byte position.
//!
//! Every live entry is also kept in memory (the log is bounded by the snapshot interval
//! plus the entries kept after a snapshot), so reads never touch the disk. Writes run on
//! a blocking thread.

#![allow(
    clippy::result_large_err,
    reason = "openraft's storage traits return its StorageError (224 bytes); the log builds it where it fails"
)]

use std::collections::BTreeMap;
use std::fmt::{self, Debug};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::ops::RangeBounds;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, LogState, OptionalSend, RaftLogReader, StorageIOError};

use super::error::StoreError;
use super::state_file::{self, FileKind};
use super::types::{Entry, LogId, StorageError, TypeConfig, Vote};
use crate::error::caused_by_no_space as no_space;

/// The largest entry (one proposal's records, JSON-encoded); a longer frame length read
/// from disk is corruption.
pub const MAX_ENTRY_BYTES: usize = 64 << 20;
const LOG_DIR: &str = "log";
const SEGMENT_SUFFIX: &str = ".log";
const SEGMENT_MAGIC: &[u8; 8] = b"WEIRQLOG";
const SEGMENT_VERSION: u16 = 1;
const SEGMENT_HEADER_BYTES: u64 = 8 + 2;
const FRAME_HEADER_BYTES: u64 = 4 + 4 + 8;

/// The quorum's Raft log; cheap to clone (clones share the files), and its own reader.
#[derive(Clone)]
pub(crate) struct LogStore {
    inner: Arc<Mutex<LogFiles>>,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let files = self.lock();
        f.debug_struct("LogStore")
            .field("dir", &files.dir)
            .field("segments", &files.segments.len())
            .field("entries", &files.entries.len())
            .field("last_purged", &files.last_purged)
            .finish()
    }
}

struct Segment {
    path: PathBuf,
    /// Bytes written (header and whole frames).
    len: u64,
}

/// A live entry and where its frame starts.
struct Stored {
    entry: Entry,
    segment: u64,
    position: u64,
}

struct LogFiles {
    dir: PathBuf,
    log_dir: PathBuf,
    segment_bytes_max: u64,
    /// Segments by the index of their first entry.
    segments: BTreeMap<u64, Segment>,
    /// The last segment, open for appending.
    active: Option<File>,
    /// Entries after the purge point, by index.
    entries: BTreeMap<u64, Stored>,
    last_purged: Option<LogId>,
    vote: Option<Vote>,
    committed: Option<LogId>,
}

impl LogStore {
    /// Opens (or creates) the log under `dir`, recovering what a crash left.
    pub(crate) fn open(dir: &Path, segment_bytes_max: u64) -> Result<LogStore, StoreError> {
        let log_dir = dir.join(LOG_DIR);
        state_file::create_dir(&log_dir)?;
        let mut files = LogFiles {
            dir: dir.to_path_buf(),
            log_dir,
            segment_bytes_max,
            segments: BTreeMap::new(),
            active: None,
            entries: BTreeMap::new(),
            last_purged: state_file::read_json(dir, FileKind::Purged)?,
            vote: state_file::read_json(dir, FileKind::Vote)?,
            committed: state_file::read_json::<Option<LogId>>(dir, FileKind::Committed)?.flatten(),
        };
        files.recover()?;
        Ok(LogStore {
            inner: Arc::new(Mutex::new(files)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, LogFiles> {
        self.inner
            .lock()
            .expect("a panic while writing the quorum log")
    }

    /// Runs `f` on the files on a blocking thread.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut LogFiles) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let inner = Arc::clone(&self.inner);
        let task = tokio::task::spawn_blocking(move || {
            f(&mut inner.lock().expect("a panic while writing the quorum log"))
        });
        match task.await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(StorageIOError::write_logs(AnyError::new(&e)).into()),
        }
    }
}

/// How long the store waits between tries of a write the disk had no space for.
const NO_SPACE_RETRY: Duration = Duration::from_millis(500);
/// How often at most it says it is waiting.
const NO_SPACE_LOG_INTERVAL: Duration = Duration::from_secs(60);
/// How long it waits in all before the write fails (and openraft stops the quorum on
/// this node, as for any other storage error): long enough for an operator to free
/// space, bounded so that a broker asked to stop does not wait forever.
const NO_SPACE_MAX_WAIT: Duration = Duration::from_secs(15 * 60);

/// Runs `write` until it succeeds or fails for another reason than space. openraft stops
/// the quorum on this node for good at any storage error, so a full disk stalls the
/// metadata log instead (as a slow disk would: metadata changes wait, the node's peers
/// elect another leader if it led) and it goes on by itself once space is freed. `write`
/// must be safe to repeat: the same bytes at the same place, or a whole-file replace.
/// The state machine's snapshots are written through it too.
pub(super) fn waiting_for_space<T, E: std::error::Error + 'static>(
    what: &Path,
    mut write: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let started = Instant::now();
    let mut warned: Option<Instant> = None;
    loop {
        match write() {
            Err(e) if no_space(&e) && started.elapsed() < NO_SPACE_MAX_WAIT => {
                if warned.is_none_or(|t| t.elapsed() >= NO_SPACE_LOG_INTERVAL) {
                    tracing::warn!(
                        path = %what.display(),
                        "no space left on the data directory's device: the metadata log waits for space (metadata changes stall until it is freed)"
                    );
                    warned = Some(Instant::now());
                }
                std::thread::sleep(NO_SPACE_RETRY);
            }
            result => {
                if warned.is_some() && result.is_ok() {
                    tracing::info!(path = %what.display(), "space freed: the metadata log is written again");
                }
                return result;
            }
        }
    }
}

fn write_error(e: StoreError) -> StorageError {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

fn segment_name(first: u64) -> String {
    format!("{first:020}{SEGMENT_SUFFIX}")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The frame of one entry, or why it cannot be written.
fn encode_frame(entry: &Entry) -> Result<Vec<u8>, String> {
    let payload =
        serde_json::to_vec(entry).map_err(|e| format!("entry does not serialise: {e}"))?;
    if payload.len() > MAX_ENTRY_BYTES {
        return Err(format!(
            "entry {} is {} bytes; the limit is {MAX_ENTRY_BYTES}",
            entry.log_id.index,
            payload.len()
        ));
    }
    let mut buf = Vec::with_capacity(FRAME_HEADER_BYTES as usize + payload.len());
    buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&entry.log_id.index.to_be_bytes());
    buf.extend_from_slice(&payload);
    let crc = crc32fast::hash(&buf[8..]);
    buf[4..8].copy_from_slice(&crc.to_be_bytes());
    Ok(buf)
}

/// What reading one segment found.
struct Recovered {
    len: u64,
    /// The index after its last frame.
    next: u64,
}

impl LogFiles {
    fn recover(&mut self) -> Result<(), StoreError> {
        let io = |e| StoreError::io(&self.log_dir, e);
        let mut found = Vec::new();
        for dirent in fs::read_dir(&self.log_dir).map_err(io)? {
            let dirent = dirent.map_err(io)?;
            if let Some(first) = dirent.file_name().to_str().and_then(parse_segment_name) {
                found.push((first, dirent.path()));
            }
        }
        found.sort();
        let count = found.len();
        let mut next: Option<u64> = None;
        let mut ends = BTreeMap::new();
        for (i, (first, path)) in found.into_iter().enumerate() {
            if let Some(expected) = next
                && first != expected
            {
                return Err(StoreError::corrupt(
                    path,
                    0,
                    format!(
                        "segment starts at index {first}, but the segment before it ends before index {expected}"
                    ),
                ));
            }
            let Some(recovered) = self.recover_segment(first, &path, i + 1 == count)? else {
                continue;
            };
            next = Some(recovered.next);
            ends.insert(first, recovered.next);
            self.segments.insert(
                first,
                Segment {
                    path,
                    len: recovered.len,
                },
            );
        }
        // A crash between recording the purge point and deleting segments leaves
        // segments wholly behind it: delete them now.
        if let Some(purged) = self.last_purged {
            let behind: Vec<u64> = ends
                .iter()
                .filter(|(_, end)| **end <= purged.index + 1)
                .map(|(first, _)| *first)
                .collect();
            self.remove_segments(&behind)
                .map_err(|e| StoreError::io(&self.log_dir, e))?;
        }
        if let Some((_, segment)) = self.segments.last_key_value() {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&segment.path)
                .map_err(|e| StoreError::io(&segment.path, e))?;
            self.active = Some(file);
        }
        Ok(())
    }

    /// Reads one segment into memory. `None` if it was the last and had no complete
    /// header (a crash while creating it), in which case it is removed.
    fn recover_segment(
        &mut self,
        first: u64,
        path: &Path,
        last: bool,
    ) -> Result<Option<Recovered>, StoreError> {
        let io = |e| StoreError::io(path, e);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        if size < SEGMENT_HEADER_BYTES {
            if !last {
                return Err(StoreError::corrupt(
                    path,
                    0,
                    format!("{size} bytes is shorter than a segment header"),
                ));
            }
            tracing::warn!(path = %path.display(), size, "removing a quorum log segment torn while it was created");
            drop(file);
            fs::remove_file(path).map_err(io)?;
            state_file::sync_dir(&self.log_dir)?;
            return Ok(None);
        }
        let mut header = [0; SEGMENT_HEADER_BYTES as usize];
        file.read_exact_at(&mut header, 0).map_err(io)?;
        if &header[..8] != SEGMENT_MAGIC {
            return Err(StoreError::corrupt(
                path,
                0,
                "bad magic (not a quorum log segment)",
            ));
        }
        let version = u16::from_be_bytes([header[8], header[9]]);
        if version != SEGMENT_VERSION {
            return Err(StoreError::corrupt(
                path,
                8,
                format!("unsupported segment version {version}"),
            ));
        }

        let purged = self.last_purged.map(|p| p.index);
        let mut position = SEGMENT_HEADER_BYTES;
        let mut index = first;
        let mut torn: Option<String> = None;
        while position < size {
            if size - position < FRAME_HEADER_BYTES {
                torn = Some("frame header cut short by the end of the file".into());
                break;
            }
            let mut frame_header = [0; FRAME_HEADER_BYTES as usize];
            file.read_exact_at(&mut frame_header, position)
                .map_err(io)?;
            let len = u32::from_be_bytes(frame_header[0..4].try_into().expect("4 bytes"));
            let crc = u32::from_be_bytes(frame_header[4..8].try_into().expect("4 bytes"));
            let frame_index = u64::from_be_bytes(frame_header[8..16].try_into().expect("8 bytes"));
            let end = position + FRAME_HEADER_BYTES + u64::from(len);
            if end > size {
                torn = Some(format!(
                    "frame of {len} bytes runs past the end of the file"
                ));
                break;
            }
            let corrupt = |reason: String| StoreError::corrupt(path, position, reason);
            if len as usize > MAX_ENTRY_BYTES {
                return Err(corrupt(format!(
                    "frame length {len} is over the {MAX_ENTRY_BYTES}-byte limit"
                )));
            }
            let mut payload = vec![0; len as usize];
            file.read_exact_at(&mut payload, position + FRAME_HEADER_BYTES)
                .map_err(io)?;
            let mut hasher = crc32fast::Hasher::new();
            hasher.update(&frame_header[8..16]);
            hasher.update(&payload);
            if hasher.finalize() != crc {
                if last && end == size {
                    torn = Some("the last frame's CRC does not match".into());
                    break;
                }
                return Err(corrupt(format!(
                    "CRC mismatch in the frame of index {frame_index}"
                )));
            }
            if frame_index != index {
                return Err(corrupt(format!(
                    "frame holds index {frame_index} where {index} was expected"
                )));
            }
            let entry: Entry = serde_json::from_slice(&payload)
                .map_err(|e| corrupt(format!("entry {index} does not decode: {e}")))?;
            if entry.log_id.index != index {
                return Err(corrupt(format!(
                    "entry has log id {} in the frame of index {index}",
                    entry.log_id
                )));
            }
            if purged.is_none_or(|p| index > p) {
                self.entries.insert(
                    index,
                    Stored {
                        entry,
                        segment: first,
                        position,
                    },
                );
            }
            position = end;
            index += 1;
        }
        if let Some(reason) = torn {
            if !last {
                return Err(StoreError::corrupt(path, position, reason));
            }
            tracing::warn!(
                path = %path.display(),
                position,
                index,
                reason,
                "truncating a quorum log segment at a write torn by a crash"
            );
            file.set_len(position)
                .and_then(|()| file.sync_all())
                .map_err(io)?;
        }
        Ok(Some(Recovered {
            len: position,
            next: index,
        }))
    }

    fn remove_segments(&mut self, firsts: &[u64]) -> io::Result<()> {
        if firsts.is_empty() {
            return Ok(());
        }
        let last = self.segments.last_key_value().map(|(first, _)| *first);
        for first in firsts {
            if Some(*first) == last {
                self.active = None;
            }
            if let Some(segment) = self.segments.remove(first) {
                fs::remove_file(&segment.path)?;
            }
        }
        File::open(&self.log_dir)?.sync_all()
    }

    fn last_index(&self) -> Option<u64> {
        self.entries.last_key_value().map(|(index, _)| *index)
    }

    fn append(&mut self, entries: Vec<Entry>) -> Result<(), StorageError> {
        let mut last = self.last_index();
        let mut placed = Vec::with_capacity(entries.len());
        for entry in &entries {
            let index = entry.log_id.index;
            let follows = match (last, self.last_purged) {
                (Some(last), _) => index == last + 1,
                (None, Some(purged)) => index > purged.index,
                (None, None) => true,
            };
            if !follows {
                let reason = format!(
                    "entry {} does not follow the log (last index {last:?}, purged up to {:?})",
                    entry.log_id, self.last_purged
                );
                return Err(
                    StorageIOError::write_log_entry(entry.log_id, AnyError::error(reason)).into(),
                );
            }
            let frame = encode_frame(entry).map_err(|reason| {
                StorageError::from(StorageIOError::write_log_entry(
                    entry.log_id,
                    AnyError::error(reason),
                ))
            })?;
            let first = self.segment_for(index).map_err(write_error)?;
            let segment = self.segments.get_mut(&first).expect("segment_for made it");
            let file = self.active.as_ref().expect("segment_for opened it");
            waiting_for_space(&segment.path, || file.write_all_at(&frame, segment.len))
                .map_err(|e| write_error(StoreError::io(&segment.path, e)))?;
            placed.push((first, segment.len));
            segment.len += frame.len() as u64;
            last = Some(index);
        }
        if let Some(file) = &self.active {
            let path = &self
                .segments
                .last_key_value()
                .expect("active segment")
                .1
                .path;
            file.sync_data()
                .map_err(|e| write_error(StoreError::io(path, e)))?;
        }
        for (entry, (segment, position)) in entries.into_iter().zip(placed) {
            self.entries.insert(
                entry.log_id.index,
                Stored {
                    entry,
                    segment,
                    position,
                },
            );
        }
        Ok(())
    }

    /// The segment the entry at `index` goes in: the active one, or a new one if it is
    /// full (the full one fsynced first) or there is none.
    fn segment_for(&mut self, index: u64) -> Result<u64, StoreError> {
        if let Some((&first, segment)) = self.segments.last_key_value() {
            let empty = segment.len == SEGMENT_HEADER_BYTES;
            if self.active.is_some() && !empty && segment.len < self.segment_bytes_max {
                return Ok(first);
            }
            if self.active.is_some() && empty && first == index {
                return Ok(first);
            }
            if let Some(file) = self.active.take() {
                file.sync_data()
                    .map_err(|e| StoreError::io(&segment.path, e))?;
            }
            if empty {
                // An empty segment named for another index (left by a crash or a
                // truncation): a segment must be named for its first entry.
                self.remove_segments(&[first])
                    .map_err(|e| StoreError::io(&self.log_dir, e))?;
            }
        }
        let path = self.log_dir.join(segment_name(index));
        let io = |e| StoreError::io(&path, e);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io)?;
        let mut header = Vec::with_capacity(SEGMENT_HEADER_BYTES as usize);
        header.extend_from_slice(SEGMENT_MAGIC);
        header.extend_from_slice(&SEGMENT_VERSION.to_be_bytes());
        waiting_for_space(&path, || file.write_all_at(&header, 0)).map_err(io)?;
        file.sync_data().map_err(io)?;
        state_file::sync_dir(&self.log_dir)?;
        self.segments.insert(
            index,
            Segment {
                path,
                len: SEGMENT_HEADER_BYTES,
            },
        );
        self.active = Some(file);
        Ok(index)
    }

    /// Deletes the entries at `index` and after.
    fn truncate(&mut self, index: u64) -> Result<(), StoreError> {
        let Some(stored) = self.entries.range(index..).next().map(|(_, s)| s) else {
            return Ok(());
        };
        let (segment_first, position) = (stored.segment, stored.position);
        let later: Vec<u64> = self
            .segments
            .range(segment_first + 1..)
            .map(|(first, _)| *first)
            .collect();
        self.active = None;
        self.remove_segments(&later)
            .map_err(|e| StoreError::io(&self.log_dir, e))?;
        let segment = self
            .segments
            .get_mut(&segment_first)
            .expect("a live entry's segment exists");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&segment.path)
            .map_err(|e| StoreError::io(&segment.path, e))?;
        file.set_len(position)
            .and_then(|()| file.sync_all())
            .map_err(|e| StoreError::io(&segment.path, e))?;
        segment.len = position;
        self.active = Some(file);
        self.entries.split_off(&index);
        Ok(())
    }

    /// Deletes the entries up to and including `upto`, recording the purge point first.
    fn purge(&mut self, upto: LogId) -> Result<(), StoreError> {
        if self.last_purged.is_some_and(|p| p.index >= upto.index) {
            return Ok(());
        }
        waiting_for_space(&self.dir, || {
            state_file::write_json(&self.dir, FileKind::Purged, &upto)
        })?;
        self.last_purged = Some(upto);
        self.entries = self.entries.split_off(&(upto.index + 1));
        let live: std::collections::BTreeSet<u64> =
            self.entries.values().map(|s| s.segment).collect();
        let dead: Vec<u64> = self
            .segments
            .keys()
            .filter(|first| !live.contains(first))
            .copied()
            .collect();
        self.remove_segments(&dead)
            .map_err(|e| StoreError::io(&self.log_dir, e))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(self
            .lock()
            .entries
            .range(range)
            .map(|(_, stored)| stored.entry.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let files = self.lock();
        let last = files
            .entries
            .last_key_value()
            .map(|(_, stored)| stored.entry.log_id)
            .or(files.last_purged);
        Ok(LogState {
            last_purged_log_id: files.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let vote = *vote;
        self.run(move |files| {
            waiting_for_space(&files.dir, || {
                state_file::write_json(&files.dir, FileKind::Vote, &vote)
            })
            .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)))?;
            files.vote = Some(vote);
            Ok(())
        })
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.run(move |files| {
            if files.committed == committed {
                return Ok(());
            }
            match state_file::write_json(&files.dir, FileKind::Committed, &committed) {
                Ok(()) => files.committed = committed,
                // Saving the committed log id only spares a restart re-applying entries
                // the quorum commits again: without space, skip it (the next save tries).
                Err(e) if no_space(&e) => {
                    tracing::debug!(error = %e, "committed log id not saved: no space")
                }
                Err(e) => return Err(StorageIOError::write(AnyError::new(&e)).into()),
            }
            Ok(())
        })
        .await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.lock().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        match self.run(move |files| files.append(entries)).await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(io::Error::other(e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.run(move |files| files.truncate(log_id.index).map_err(write_error))
            .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.run(move |files| files.purge(log_id).map_err(write_error))
            .await
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::controller::MetadataRecord;
    use crate::quorum::types::MetadataEntry;

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 0), index),
            payload: EntryPayload::Normal(MetadataEntry::Records(vec![
                MetadataRecord::ClusterCreated {
                    cluster_id: format!("c-{term}-{index}"),
                },
            ])),
        }
    }

    fn indexes(store: &LogStore) -> Vec<u64> {
        store.lock().entries.keys().copied().collect()
    }

    fn segment_files(dir: &Path) -> Vec<u64> {
        let mut firsts: Vec<u64> = fs::read_dir(dir.join(LOG_DIR))
            .unwrap()
            .filter_map(|d| parse_segment_name(d.unwrap().file_name().to_str()?))
            .collect();
        firsts.sort();
        firsts
    }

    /// A log of entries 0..30 (term 1) in segments of about 4 entries.
    fn filled(dir: &Path) -> LogStore {
        let store = LogStore::open(dir, 400).unwrap();
        for chunk in (0..30).collect::<Vec<u64>>().chunks(3) {
            let batch = chunk.iter().map(|i| entry(1, *i)).collect();
            store.lock().append(batch).unwrap();
        }
        store
    }

    #[test]
    fn appends_roll_segments_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = filled(dir.path());
        assert!(segment_files(dir.path()).len() > 3);
        drop(store);
        let store = LogStore::open(dir.path(), 400).unwrap();
        assert_eq!(indexes(&store), (0..30).collect::<Vec<_>>());
        assert_eq!(store.lock().entries[&17].entry, entry(1, 17));
        // Appending continues where the log ends, and gaps are refused.
        store.lock().append(vec![entry(1, 30)]).unwrap();
        assert!(store.lock().append(vec![entry(1, 32)]).is_err());
        assert!(store.lock().append(vec![entry(1, 30)]).is_err());
    }

    #[test]
    fn truncate_and_purge_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = filled(dir.path());
        store.lock().truncate(21).unwrap();
        store
            .lock()
            .append(vec![entry(2, 21), entry(2, 22)])
            .unwrap();
        store
            .lock()
            .purge(LogId::new(CommittedLeaderId::new(1, 0), 12))
            .unwrap();
        let firsts = segment_files(dir.path());
        assert!(firsts[0] <= 13 && firsts[0] > 4, "{firsts:?}");
        drop(store);

        let store = LogStore::open(dir.path(), 400).unwrap();
        assert_eq!(indexes(&store), (13..23).collect::<Vec<_>>());
        assert_eq!(store.lock().entries[&22].entry, entry(2, 22));
        assert_eq!(store.lock().last_purged.unwrap().index, 12);

        // Purging past the end (a snapshot installed ahead of the log) empties it; the
        // next entry starts a new segment after the purge point.
        store
            .lock()
            .purge(LogId::new(CommittedLeaderId::new(3, 0), 40))
            .unwrap();
        assert!(indexes(&store).is_empty());
        assert!(segment_files(dir.path()).is_empty());
        store.lock().append(vec![entry(3, 41)]).unwrap();
        drop(store);
        let store = LogStore::open(dir.path(), 400).unwrap();
        assert_eq!(indexes(&store), vec![41]);
    }

    #[test]
    fn a_torn_last_frame_is_truncated_and_the_log_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        drop(filled(dir.path()));
        let last = *segment_files(dir.path()).last().unwrap();
        let path = dir.path().join(LOG_DIR).join(segment_name(last));
        let len = fs::metadata(&path).unwrap().len();

        // Cut inside the last frame.
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(len - 5).unwrap();
        let store = LogStore::open(dir.path(), 400).unwrap();
        assert_eq!(indexes(&store), (0..29).collect::<Vec<_>>());
        store.lock().append(vec![entry(2, 29)]).unwrap();
        drop(store);

        // Flip a byte of the (new) last frame's payload: its CRC fails at the end of
        // the file, which is a torn write too.
        let mut bytes = fs::read(&path).unwrap();
        let at = bytes.len() - 3;
        bytes[at] ^= 0x01;
        fs::write(&path, &bytes).unwrap();
        let store = LogStore::open(dir.path(), 400).unwrap();
        assert_eq!(indexes(&store), (0..29).collect::<Vec<_>>());
    }

    #[test]
    fn damage_before_the_tail_is_corruption_naming_segment_and_position() {
        let dir = tempfile::tempdir().unwrap();
        drop(filled(dir.path()));
        let first = segment_files(dir.path())[1];
        let path = dir.path().join(LOG_DIR).join(segment_name(first));
        let mut bytes = fs::read(&path).unwrap();
        let at = SEGMENT_HEADER_BYTES as usize + FRAME_HEADER_BYTES as usize + 2;
        bytes[at] ^= 0x01;
        fs::write(&path, &bytes).unwrap();
        let err = LogStore::open(dir.path(), 400).unwrap_err();
        match &err {
            StoreError::Corrupt {
                path: p, position, ..
            } => {
                assert_eq!(p, &path);
                assert_eq!(*position, SEGMENT_HEADER_BYTES);
            }
            other => panic!("{other}"),
        }
        assert!(err.to_string().contains("CRC"), "{err}");
    }

    #[test]
    fn a_huge_frame_length_is_refused_before_allocating() {
        let dir = tempfile::tempdir().unwrap();
        drop(filled(dir.path()));
        let first = segment_files(dir.path())[0];
        let path = dir.path().join(LOG_DIR).join(segment_name(first));
        let mut bytes = fs::read(&path).unwrap();
        let at = SEGMENT_HEADER_BYTES as usize;
        bytes[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        fs::write(&path, &bytes).unwrap();
        // Not the last segment, and the frame runs past the file: corruption.
        let err = LogStore::open(dir.path(), 400).unwrap_err().to_string();
        assert!(err.contains("runs past the end"), "{err}");
    }

    #[test]
    fn vote_and_committed_are_durable() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut store = LogStore::open(dir.path(), 400).unwrap();
            let vote = Vote::new_committed(3, 1);
            store.save_vote(&vote).await.unwrap();
            let committed = Some(LogId::new(CommittedLeaderId::new(3, 1), 9));
            store.save_committed(committed).await.unwrap();
            drop(store);
            let mut store = LogStore::open(dir.path(), 400).unwrap();
            assert_eq!(store.read_vote().await.unwrap(), Some(vote));
            assert_eq!(store.read_committed().await.unwrap(), committed);
        });
    }
}
