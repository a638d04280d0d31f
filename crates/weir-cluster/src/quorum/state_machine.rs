//! The quorum's state machine (openraft's `RaftStateMachine`): committed entries applied
//! in order to a [`MetadataImage`], published to the broker through a `watch`, and
//! snapshotted to `<dir>/snapshot`.
//!
//! Each entry's records apply atomically: if one is refused, the image stays as it was
//! after the previous entry. A refused record in a committed log is a bug in the
//! controller (or corruption), never something to skip: it is logged as an error with
//! its Raft index and metadata offset, and the state machine fails, which stops this
//! node's Raft (openraft treats a state machine error as fatal). A restart replays the
//! same entry and stops again, loudly, until the bug is fixed.
//!
//! The snapshot file holds `{ meta, legacy_migrated, image }` as JSON in a `state_file`
//! frame (version + CRC), and is shipped to followers as those exact bytes.
//!
//! The last [`MAX_TAIL_RECORDS`] applied records stay in memory, so observers can be
//! served what they miss without reading the log (`Quorum::records_since`).

#![allow(
    clippy::result_large_err,
    reason = "openraft's storage traits return its StorageError (224 bytes); the state machine builds it where it fails"
)]

use std::collections::VecDeque;
use std::fmt::{self, Debug};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::RaftStateMachine;
use openraft::{AnyError, EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::controller::{ImageError, MetadataImage, MetadataOffset, MetadataRecord};

use super::error::{QuorumError, StoreError};
use super::log_store::waiting_for_space;
use super::state_file::{self, FileKind, MAX_SNAPSHOT_BYTES};
use super::types::{
    AppliedEntry, Entry, LogId, MetadataEntry, Snapshot, SnapshotMeta, StorageError,
    StoredMembership, TypeConfig,
};

/// Applied records kept in memory for observers that fall behind; one further behind
/// gets the whole image.
pub const MAX_TAIL_RECORDS: usize = 16 * 1024;

/// What observers get from [`Quorum::records_since`](super::Quorum::records_since).
#[derive(Debug, Clone, PartialEq)]
pub enum MetadataDelta {
    /// The records at `first_offset..first_offset + records.len()`; none when the caller
    /// is caught up.
    Records {
        first_offset: MetadataOffset,
        records: Vec<MetadataRecord>,
    },
    /// The asked offset is older than the records kept: the whole image (at its
    /// `next_offset`) replaces the caller's.
    Image(Arc<MetadataImage>),
}

/// The applied state the state machine shares with the `Quorum` handle.
pub(crate) struct Applied {
    /// The image and the records that led to it, changed together under this lock.
    tail: Mutex<Tail>,
    image: watch::Sender<Arc<MetadataImage>>,
    /// Whether a [`MetadataEntry::Legacy`] was applied (kept in snapshots).
    legacy_migrated: AtomicBool,
}

struct Tail {
    /// Offset of `records[0]`; `first + records.len()` is the image's `next_offset`.
    first: MetadataOffset,
    records: VecDeque<MetadataRecord>,
}

impl Debug for Applied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Applied")
            .field("next_offset", &self.image.borrow().next_offset())
            .finish()
    }
}

impl Applied {
    fn new(image: MetadataImage, legacy_migrated: bool) -> Applied {
        Applied {
            tail: Mutex::new(Tail {
                first: image.next_offset(),
                records: VecDeque::new(),
            }),
            image: watch::Sender::new(Arc::new(image)),
            legacy_migrated: AtomicBool::new(legacy_migrated),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Tail> {
        self.tail
            .lock()
            .expect("a panic while publishing the image")
    }

    pub(crate) fn image(&self) -> Arc<MetadataImage> {
        self.image.borrow().clone()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.image.subscribe()
    }

    pub(crate) fn legacy_migrated(&self) -> bool {
        self.legacy_migrated.load(Ordering::Acquire)
    }

    /// Publishes `image`, reached by applying `records` to the current one.
    fn publish(&self, image: MetadataImage, records: Vec<MetadataRecord>) {
        let mut tail = self.lock();
        tail.records.extend(records);
        let excess = tail.records.len().saturating_sub(MAX_TAIL_RECORDS);
        tail.records.drain(..excess);
        tail.first = image.next_offset() - tail.records.len() as MetadataOffset;
        self.image.send_replace(Arc::new(image));
    }

    /// Replaces the image with one installed from a snapshot (no records known).
    fn replace(&self, image: MetadataImage, legacy_migrated: bool) {
        let mut tail = self.lock();
        tail.records.clear();
        tail.first = image.next_offset();
        self.legacy_migrated
            .store(legacy_migrated, Ordering::Release);
        self.image.send_replace(Arc::new(image));
    }

    pub(crate) fn records_since(
        &self,
        offset: MetadataOffset,
        max: usize,
    ) -> Result<MetadataDelta, QuorumError> {
        if offset < 0 {
            return Err(QuorumError::NegativeOffset(offset));
        }
        let tail = self.lock();
        let next_offset = tail.first + tail.records.len() as MetadataOffset;
        if offset > next_offset {
            return Err(QuorumError::OffsetAhead {
                offset,
                next_offset,
            });
        }
        if offset < tail.first {
            return Ok(MetadataDelta::Image(self.image()));
        }
        let skip = (offset - tail.first) as usize;
        Ok(MetadataDelta::Records {
            first_offset: offset,
            records: tail.records.iter().skip(skip).take(max).cloned().collect(),
        })
    }
}

/// What a snapshot file holds.
#[derive(Serialize)]
struct SnapshotRef<'a> {
    meta: &'a SnapshotMeta,
    legacy_migrated: bool,
    image: &'a MetadataImage,
}

#[derive(Deserialize)]
struct SnapshotData {
    meta: SnapshotMeta,
    legacy_migrated: bool,
    image: MetadataImage,
}

/// The snapshot file and the meta of the one it holds; builds (on their own task) and
/// installs write through here, and an older snapshot never replaces a newer one.
struct SnapshotFile {
    dir: PathBuf,
    current: Mutex<Option<SnapshotMeta>>,
}

impl SnapshotFile {
    /// Writes `framed` (a snapshot of `meta`) unless the file holds a newer one. On a
    /// full disk it waits for space as the log does ([`waiting_for_space`]), without the
    /// lock between tries: openraft stops the quorum on this node for good at any storage
    /// error, and a snapshot refused by a full disk once did (the soak's fault #402, a
    /// node's disk filled as it built one: the broker ran on cut off from the quorum
    /// until stopped).
    fn store(&self, meta: &SnapshotMeta, framed: &[u8]) -> Result<(), StoreError> {
        let path = self.dir.join(FileKind::Snapshot.file_name());
        waiting_for_space(&path, || {
            let mut current = self
                .current
                .lock()
                .expect("a panic while writing a snapshot");
            if current
                .as_ref()
                .is_some_and(|c| c.last_log_id >= meta.last_log_id)
            {
                return Ok(());
            }
            state_file::write_framed(&self.dir, FileKind::Snapshot, framed)?;
            *current = Some(meta.clone());
            Ok(())
        })
    }

    /// The snapshot's meta and framed bytes (frame and CRC checked), if there is one.
    fn load(&self) -> Result<Option<(SnapshotMeta, Vec<u8>)>, StoreError> {
        // Under the lock, so the bytes are those of the meta.
        let current = self
            .current
            .lock()
            .expect("a panic while writing a snapshot");
        let Some(meta) = current.clone() else {
            return Ok(None);
        };
        let framed = state_file::read_framed(&self.dir, FileKind::Snapshot)?.ok_or_else(|| {
            StoreError::io(
                self.dir.join(FileKind::Snapshot.file_name()),
                std::io::Error::new(std::io::ErrorKind::NotFound, "the snapshot file is gone"),
            )
        })?;
        Ok(Some((meta, framed)))
    }
}

fn decode_snapshot(framed: &[u8]) -> Result<SnapshotData, String> {
    let payload = state_file::decode(FileKind::Snapshot, framed).map_err(|e| e.to_string())?;
    serde_json::from_slice(payload).map_err(|e| format!("snapshot does not decode: {e}"))
}

/// The framed bytes of a snapshot.
fn encode_snapshot(
    meta: &SnapshotMeta,
    legacy_migrated: bool,
    image: &MetadataImage,
) -> Result<Vec<u8>, String> {
    let payload = serde_json::to_vec(&SnapshotRef {
        meta,
        legacy_migrated,
        image,
    })
    .map_err(|e| format!("the image does not serialise: {e}"))?;
    if payload.len() > MAX_SNAPSHOT_BYTES {
        return Err(format!(
            "the snapshot is {} bytes; the limit is {MAX_SNAPSHOT_BYTES}",
            payload.len()
        ));
    }
    Ok(state_file::encode(FileKind::Snapshot, &payload))
}

/// Runs blocking snapshot I/O off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(StorageIOError::write_snapshot(None, AnyError::new(&e)).into()),
    }
}

/// The metadata state machine.
pub(crate) struct StateMachine {
    applied: Arc<Applied>,
    snapshot: Arc<SnapshotFile>,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    /// Set when a committed record did not apply: nothing applies after it.
    halted: bool,
}

impl Debug for StateMachine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateMachine")
            .field("last_applied", &self.last_applied)
            .field("halted", &self.halted)
            .finish()
    }
}

impl StateMachine {
    /// Opens the state machine in `dir`: the snapshot's image if there is one, else an
    /// empty image. Returns the applied state shared with the handle too.
    pub(crate) fn open(dir: &Path) -> Result<(StateMachine, Arc<Applied>), StoreError> {
        let path = dir.join(FileKind::Snapshot.file_name());
        let (meta, applied) = match state_file::read_framed(dir, FileKind::Snapshot)? {
            Some(framed) => {
                let data = decode_snapshot(&framed)
                    .map_err(|reason| StoreError::corrupt(&path, 0, reason))?;
                tracing::info!(
                    last_log_id = ?data.meta.last_log_id,
                    metadata_offset = data.image.next_offset(),
                    "metadata image loaded from the snapshot"
                );
                let applied = Applied::new(data.image, data.legacy_migrated);
                (Some(data.meta), applied)
            }
            None => (None, Applied::new(MetadataImage::new(), false)),
        };
        let applied = Arc::new(applied);
        let sm = StateMachine {
            applied: Arc::clone(&applied),
            last_applied: meta.as_ref().and_then(|m| m.last_log_id),
            last_membership: meta
                .as_ref()
                .map(|m| m.last_membership.clone())
                .unwrap_or_default(),
            snapshot: Arc::new(SnapshotFile {
                dir: dir.to_path_buf(),
                current: Mutex::new(meta),
            }),
            halted: false,
        };
        Ok((sm, applied))
    }

    fn halt(&mut self, log_id: LogId, offset: MetadataOffset, record: &str, error: &ImageError) {
        tracing::error!(
            raft_index = log_id.index,
            %log_id,
            metadata_offset = offset,
            record,
            %error,
            "a committed metadata record does not apply to the image: this is a controller bug; \
             the quorum stops applying here and this node's metadata stays at the entry before"
        );
        self.halted = true;
    }
}

/// Applies one entry's payload to `image`, returning the offset of its first record,
/// or the failing record's position and error.
fn apply_payload(
    image: &mut MetadataImage,
    legacy_migrated: &mut bool,
    entry: &MetadataEntry,
) -> Result<MetadataOffset, (usize, ImageError)> {
    let first = image.next_offset();
    match entry {
        MetadataEntry::Records(records) => {
            for (i, record) in records.iter().enumerate() {
                image.apply(record).map_err(|e| (i, e))?;
            }
        }
        MetadataEntry::Legacy(legacy) => {
            if *image != MetadataImage::default() {
                return Err((
                    0,
                    ImageError::Inconsistent(
                        "a legacy metadata.weir image can only replace an empty image".into(),
                    ),
                ));
            }
            *image = (**legacy).clone();
            *legacy_migrated = true;
        }
    }
    Ok(first)
}

/// Takes a snapshot of the state as of `get_snapshot_builder`.
pub(crate) struct SnapshotBuilder {
    snapshot: Arc<SnapshotFile>,
    image: Arc<MetadataImage>,
    legacy_migrated: bool,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
}

impl Debug for SnapshotBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotBuilder")
            .field("last_applied", &self.last_applied)
            .finish()
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.last_membership.clone(),
            snapshot_id: match self.last_applied {
                Some(log_id) => format!("{}-{}", log_id.leader_id, log_id.index),
                None => "empty".into(),
            },
        };
        let file = Arc::clone(&self.snapshot);
        let image = Arc::clone(&self.image);
        let legacy_migrated = self.legacy_migrated;
        blocking(move || {
            let framed = encode_snapshot(&meta, legacy_migrated, &image).map_err(|reason| {
                StorageIOError::write_snapshot(Some(meta.signature()), AnyError::error(reason))
            })?;
            file.store(&meta, &framed).map_err(|e| {
                StorageIOError::write_snapshot(Some(meta.signature()), AnyError::new(&e))
            })?;
            tracing::info!(
                snapshot_id = %meta.snapshot_id,
                metadata_offset = image.next_offset(),
                bytes = framed.len(),
                "metadata snapshot written"
            );
            Ok(Snapshot {
                meta,
                snapshot: Box::new(Cursor::new(framed)),
            })
        })
        .await
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.last_applied, self.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<AppliedEntry>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let current = self.applied.image();
        let mut legacy_migrated = self.applied.legacy_migrated();
        // Cloned once per batch, on the first entry with records.
        let mut work: Option<MetadataImage> = None;
        let mut records = Vec::new();
        let mut replies = Vec::with_capacity(entries.len());
        for (k, entry) in entries.iter().enumerate() {
            if self.halted {
                return Err(StorageIOError::apply(
                    entry.log_id,
                    AnyError::error("the metadata state machine stopped at an earlier entry"),
                )
                .into());
            }
            if self.last_applied >= Some(entry.log_id) {
                let reason = format!(
                    "entry {} applied after {:?}: the log went backwards",
                    entry.log_id, self.last_applied
                );
                return Err(StorageIOError::apply(entry.log_id, AnyError::error(reason)).into());
            }
            let next_offset = work.as_ref().unwrap_or(&current).next_offset();
            let first_offset = match &entry.payload {
                EntryPayload::Blank => next_offset,
                EntryPayload::Membership(membership) => {
                    self.last_membership =
                        StoredMembership::new(Some(entry.log_id), membership.clone());
                    next_offset
                }
                EntryPayload::Normal(payload) => {
                    let image = work.get_or_insert_with(|| (*current).clone());
                    match apply_payload(image, &mut legacy_migrated, payload) {
                        Ok(first) => {
                            if let MetadataEntry::Records(r) = payload {
                                records.extend(r.iter().cloned());
                            }
                            first
                        }
                        Err((i, error)) => {
                            let record = match payload {
                                MetadataEntry::Records(r) => format!("{:?}", r[i]),
                                MetadataEntry::Legacy(_) => "legacy image".into(),
                            };
                            self.halt(
                                entry.log_id,
                                next_offset + i as MetadataOffset,
                                &record,
                                &error,
                            );
                            // Publish the image as of the entry before: the good entries
                            // of this batch, applied again (they applied once, so they
                            // apply again).
                            let mut image = (*current).clone();
                            let mut legacy = self.applied.legacy_migrated();
                            for earlier in &entries[..k] {
                                if let EntryPayload::Normal(p) = &earlier.payload {
                                    apply_payload(&mut image, &mut legacy, p)
                                        .expect("an entry that applied applies again");
                                }
                            }
                            if legacy {
                                self.applied.legacy_migrated.store(true, Ordering::Release);
                            }
                            self.applied.publish(image, records);
                            let reason = format!(
                                "metadata record {record} at offset {} does not apply: {error}",
                                next_offset + i as MetadataOffset
                            );
                            return Err(StorageIOError::apply(
                                entry.log_id,
                                AnyError::error(reason),
                            )
                            .into());
                        }
                    }
                }
            };
            self.last_applied = Some(entry.log_id);
            replies.push(AppliedEntry { first_offset });
        }
        if let Some(image) = work {
            if legacy_migrated {
                self.applied.legacy_migrated.store(true, Ordering::Release);
            }
            self.applied.publish(image, records);
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            snapshot: Arc::clone(&self.snapshot),
            image: self.applied.image(),
            legacy_migrated: self.applied.legacy_migrated(),
            last_applied: self.last_applied,
            last_membership: self.last_membership.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let framed = snapshot.into_inner();
        let file = Arc::clone(&self.snapshot);
        let expected = meta.clone();
        let data = blocking(move || {
            let failed = |reason: String| {
                StorageError::from(StorageIOError::read_snapshot(
                    Some(expected.signature()),
                    AnyError::error(reason),
                ))
            };
            let data = decode_snapshot(&framed).map_err(&failed)?;
            if data.meta != expected {
                return Err(failed(format!(
                    "the snapshot data is of {}, not {expected}",
                    data.meta
                )));
            }
            file.store(&data.meta, &framed).map_err(|e| {
                StorageIOError::write_snapshot(Some(expected.signature()), AnyError::new(&e))
            })?;
            Ok(data)
        })
        .await?;
        tracing::info!(
            snapshot_id = %data.meta.snapshot_id,
            metadata_offset = data.image.next_offset(),
            "metadata snapshot installed"
        );
        self.last_applied = data.meta.last_log_id;
        self.last_membership = data.meta.last_membership;
        self.applied.replace(data.image, data.legacy_migrated);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let file = Arc::clone(&self.snapshot);
        blocking(move || {
            let loaded = file
                .load()
                .map_err(|e| StorageIOError::read_snapshot(None, AnyError::new(&e)))?;
            Ok(loaded.map(|(meta, framed)| Snapshot {
                meta,
                snapshot: Box::new(Cursor::new(framed)),
            }))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Whatever lies under the snapshot's name (anything, a real snapshot damaged, or
        /// a valid frame around a damaged image), opening the state machine loads it or
        /// refuses it as a corruption naming the file: never a panic.
        #[test]
        fn any_snapshot_file_is_loaded_or_refused_as_corrupt(
            bytes in crate::framed_file_damage::damaged_files(
                FileKind::Snapshot.framing(),
                state_file::decode(
                    FileKind::Snapshot,
                    &encode_snapshot(&SnapshotMeta::default(), false, &MetadataImage::new())
                        .unwrap(),
                )
                .unwrap()
                .to_vec(),
            ),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(FileKind::Snapshot.file_name());
            std::fs::write(&path, &bytes).unwrap();
            match StateMachine::open(dir.path()) {
                Ok(_) => {}
                Err(StoreError::Corrupt { path: p, .. }) => proptest::prop_assert_eq!(p, path),
                Err(e) => proptest::prop_assert!(false, "{}", e),
            }
        }
    }

    #[test]
    fn a_written_snapshot_opens() {
        let dir = tempfile::tempdir().unwrap();
        let framed =
            encode_snapshot(&SnapshotMeta::default(), true, &MetadataImage::new()).unwrap();
        state_file::write_framed(dir.path(), FileKind::Snapshot, &framed).unwrap();
        let (_, applied) = StateMachine::open(dir.path()).unwrap();
        assert!(applied.legacy_migrated());
    }

    /// A snapshot that a full disk refuses waits for space and is written once there is
    /// some, instead of failing: openraft stops the quorum on this node for good at any
    /// storage error. On a tmpfs of its own, which needs root to mount (CI and this
    /// project's machines have it); elsewhere it says so and passes.
    #[test]
    fn a_snapshot_on_a_full_disk_waits_for_space() {
        use std::io::Write;
        use std::process::Command;

        struct Unmount(PathBuf);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ = Command::new("umount").arg("-l").arg(&self.0).status();
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "weir-snapshot-full"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("cannot mount a tmpfs here (not root): not run");
            return;
        }
        let _unmount = Unmount(dir.path().to_path_buf());
        let filler = dir.path().join("filler");
        let mut fill = std::fs::File::create(&filler).unwrap();
        while fill.write_all(&[0; 64 * 1024]).is_ok() {}
        drop(fill);

        let file = Arc::new(SnapshotFile {
            dir: dir.path().to_path_buf(),
            current: Mutex::new(None),
        });
        let meta = SnapshotMeta {
            snapshot_id: "full-disk".into(),
            ..SnapshotMeta::default()
        };
        let framed = encode_snapshot(&meta, false, &MetadataImage::new()).unwrap();
        let writer = {
            let (file, meta) = (Arc::clone(&file), meta.clone());
            std::thread::spawn(move || file.store(&meta, &framed))
        };
        std::thread::sleep(std::time::Duration::from_millis(1_500));
        assert!(
            !writer.is_finished(),
            "the write waits for space: {writer:?}"
        );
        std::fs::remove_file(&filler).unwrap();
        writer.join().unwrap().unwrap();
        let stored = file.load().unwrap().map(|(meta, _)| meta.snapshot_id);
        assert_eq!(stored.as_deref(), Some("full-disk"));
    }
}
