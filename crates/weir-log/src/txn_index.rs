//! The aborted-transaction index beside each segment (Kafka's `.txnindex`): one entry per
//! abort marker the segment holds, naming the transaction it ended, so a
//! `read_committed` reader learns which of the batches it reads to drop without reading
//! every marker after them.
//!
//! The file is a sequence of fixed entries in marker order, exactly Kafka's layout
//! (big-endian, 34 bytes each, no header):
//!
//! ```text
//! version i16 (0) | producer id i64 | first offset i64 | last offset i64 | last stable offset i64
//! ```
//!
//! `first offset` is the transaction's first batch, `last offset` its abort marker, and
//! `last stable offset` the partition's first unstable offset once this transaction had
//! ended (the marker's offset + 1 if none other was ongoing): an entry whose last stable
//! offset is past a reader's range says every transaction that began in the range has
//! ended by then, so no later entry can concern the reader.
//!
//! An entry is appended (not synced) when an abort marker is written; the files of the
//! segments that hold markers are synced before the producer-state snapshot that covers
//! them is written, and everything after that snapshot is rebuilt from the batches when
//! the log is opened (see `recovery::rebuild_producers`). A file whose size is not a
//! multiple of 34, with an unknown version, or whose entries are out of order or outside
//! its segment is damaged and rebuilt from the log. Retention and truncation remove the
//! file with its segment.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::storage::{Storage, StorageFile};

pub(crate) const TXN_INDEX_SUFFIX: &str = "txnindex";

/// Bytes of one entry.
pub const TXN_INDEX_ENTRY_BYTES: usize = 34;

/// The only entry version (Kafka's `AbortedTxn` version 0).
pub const TXN_INDEX_VERSION: i16 = 0;

/// Most entries one segment's index holds: the segment rolls when its index is full, so
/// the index in memory (and its file, 2.2 MiB) stays bounded.
pub const MAX_TXN_INDEX_ENTRIES: usize = 1 << 16;

/// One aborted transaction (Kafka's `AbortedTxn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    /// The offset of the transaction's first batch.
    pub first_offset: i64,
    /// The offset of its abort marker.
    pub last_offset: i64,
    /// The first unstable offset once it ended.
    pub last_stable_offset: i64,
}

impl AbortedTxn {
    pub fn encode(&self) -> [u8; TXN_INDEX_ENTRY_BYTES] {
        let mut b = [0u8; TXN_INDEX_ENTRY_BYTES];
        b[0..2].copy_from_slice(&TXN_INDEX_VERSION.to_be_bytes());
        b[2..10].copy_from_slice(&self.producer_id.to_be_bytes());
        b[10..18].copy_from_slice(&self.first_offset.to_be_bytes());
        b[18..26].copy_from_slice(&self.last_offset.to_be_bytes());
        b[26..34].copy_from_slice(&self.last_stable_offset.to_be_bytes());
        b
    }

    /// One entry; `None` for another version or offsets that cannot be (a first offset
    /// after the marker, a last stable offset at or before it).
    pub fn decode(b: &[u8; TXN_INDEX_ENTRY_BYTES]) -> Option<AbortedTxn> {
        let i64_at = |at: usize| i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        let entry = AbortedTxn {
            producer_id: i64_at(2),
            first_offset: i64_at(10),
            last_offset: i64_at(18),
            last_stable_offset: i64_at(26),
        };
        let plausible = i16::from_be_bytes([b[0], b[1]]) == TXN_INDEX_VERSION
            && entry.producer_id >= 0
            && entry.first_offset <= entry.last_offset
            && entry.last_stable_offset >= 0;
        plausible.then_some(entry)
    }
}

/// One segment's aborted transactions, held in memory, and its file.
#[derive(Debug, Default)]
pub(crate) struct TxnIndex {
    pub(crate) entries: Vec<AbortedTxn>,
    /// Entries were appended since the file was last synced.
    dirty: AtomicBool,
    /// Opened on the first append.
    file: Option<Arc<dyn StorageFile>>,
}

/// What a segment's `.txnindex` held.
#[derive(Debug)]
pub(crate) enum Loaded {
    /// Its entries (none if there is no file).
    Entries(Vec<AbortedTxn>),
    /// Damaged, and why: it must be rebuilt from the log.
    Damaged(String),
}

impl TxnIndex {
    pub(crate) fn new(entries: Vec<AbortedTxn>) -> TxnIndex {
        TxnIndex {
            entries,
            ..TxnIndex::default()
        }
    }

    pub(crate) fn is_full(&self) -> bool {
        self.entries.len() >= MAX_TXN_INDEX_ENTRIES
    }

    /// Reads the index at `path` of the segment holding offsets `base..end`.
    pub(crate) fn load(
        storage: &dyn Storage,
        path: &Path,
        base: i64,
        end: i64,
    ) -> std::io::Result<Loaded> {
        let file = match storage.open(path, false) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Loaded::Entries(Vec::new()));
            }
            Err(e) => return Err(e),
        };
        let size = file.size()?;
        if size % TXN_INDEX_ENTRY_BYTES as u64 != 0 {
            return Ok(Loaded::Damaged(format!(
                "{size} bytes is not a whole number of entries"
            )));
        }
        let count = (size / TXN_INDEX_ENTRY_BYTES as u64) as usize;
        if count > MAX_TXN_INDEX_ENTRIES {
            return Ok(Loaded::Damaged(format!(
                "{count} entries, over the limit of {MAX_TXN_INDEX_ENTRIES}"
            )));
        }
        let mut bytes = vec![0u8; count * TXN_INDEX_ENTRY_BYTES];
        file.read_exact_at(&mut bytes, 0)?;
        let mut entries: Vec<AbortedTxn> = Vec::with_capacity(count);
        for (i, chunk) in bytes.chunks_exact(TXN_INDEX_ENTRY_BYTES).enumerate() {
            let entry = AbortedTxn::decode(chunk.try_into().expect("entry size"));
            let Some(entry) = entry else {
                return Ok(Loaded::Damaged(format!("entry {i} is malformed")));
            };
            let in_order = entries
                .last()
                .is_none_or(|prev| prev.last_offset < entry.last_offset);
            if !in_order || entry.last_offset < base || entry.last_offset >= end {
                return Ok(Loaded::Damaged(format!(
                    "entry {i} (marker at {}) is out of order or outside the segment's offsets {base}..{end}",
                    entry.last_offset
                )));
            }
            entries.push(entry);
        }
        Ok(Loaded::Entries(entries))
    }

    /// Appends an entry (written, not synced: see the module docs).
    pub(crate) fn append(
        &mut self,
        storage: &dyn Storage,
        path: &Path,
        entry: AbortedTxn,
    ) -> std::io::Result<()> {
        debug_assert!(
            self.entries
                .last()
                .is_none_or(|l| l.last_offset < entry.last_offset)
        );
        let file = match &self.file {
            Some(f) => f.clone(),
            None => {
                let f = storage.open(path, true)?;
                self.file = Some(f.clone());
                f
            }
        };
        let at = (self.entries.len() * TXN_INDEX_ENTRY_BYTES) as u64;
        file.write_all_at(&entry.encode(), at)?;
        self.entries.push(entry);
        self.dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// Keeps the first `len` entries, in memory and in the file (a shorter file needs no
    /// space).
    pub(crate) fn truncate(&mut self, len: usize) -> std::io::Result<()> {
        if len >= self.entries.len() {
            return Ok(());
        }
        if let Some(file) = &self.file {
            file.set_len((len * TXN_INDEX_ENTRY_BYTES) as u64)?;
        }
        self.entries.truncate(len);
        Ok(())
    }

    /// Syncs the file if entries were appended since the last sync.
    pub(crate) fn sync(&self) -> std::io::Result<()> {
        if self.dirty.swap(false, Ordering::AcqRel)
            && let Some(file) = &self.file
            && let Err(e) = file.sync_data()
        {
            self.dirty.store(true, Ordering::Release);
            return Err(e);
        }
        Ok(())
    }

    /// Keeps only the entries whose marker is before `offset`, rewriting the file if that
    /// drops any: atomically, or by removing it when none is left.
    pub(crate) fn retain_before(
        &mut self,
        storage: &dyn Storage,
        path: &Path,
        offset: i64,
    ) -> std::io::Result<()> {
        let keep = self.entries.partition_point(|e| e.last_offset < offset);
        if keep == self.entries.len() {
            return Ok(());
        }
        self.replace(storage, path, self.entries[..keep].to_vec())
    }

    /// Replaces the entries and the file with `entries`.
    pub(crate) fn replace(
        &mut self,
        storage: &dyn Storage,
        path: &Path,
        entries: Vec<AbortedTxn>,
    ) -> std::io::Result<()> {
        self.file = None;
        self.dirty.store(false, Ordering::Release);
        let dir = path.parent().expect("a segment file is in a directory");
        if entries.is_empty() {
            match storage.remove_file(path) {
                Ok(()) => storage.sync_dir(dir)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        } else {
            let bytes: Vec<u8> = entries.iter().flat_map(AbortedTxn::encode).collect();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .expect("segment file names are ASCII");
            crate::framed_file::write_atomically(storage, dir, name, &bytes)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
        }
        self.entries = entries;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::FileStorage;

    fn entry(pid: i64, first: i64, last: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id: pid,
            first_offset: first,
            last_offset: last,
            last_stable_offset: last + 1,
        }
    }

    #[test]
    fn an_entry_is_kafkas_34_bytes() {
        let e = AbortedTxn {
            producer_id: 5,
            first_offset: 10,
            last_offset: 20,
            last_stable_offset: 15,
        };
        let golden = crate::framed_file::golden_hex(
            "0000 0000000000000005 000000000000000a 0000000000000014 000000000000000f",
        );
        assert_eq!(e.encode().as_slice(), golden.as_slice());
        assert_eq!(AbortedTxn::decode(&e.encode()), Some(e));
        let mut other_version = e.encode();
        other_version[1] = 1;
        assert_eq!(AbortedTxn::decode(&other_version), None);
    }

    #[test]
    fn appends_load_back_and_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000100.txnindex");
        let s = FileStorage;
        assert!(
            matches!(TxnIndex::load(&s, &path, 100, 200).unwrap(), Loaded::Entries(e) if e.is_empty())
        );
        let mut index = TxnIndex::default();
        index.append(&s, &path, entry(1, 90, 120)).unwrap();
        index.append(&s, &path, entry(2, 121, 130)).unwrap();
        index.sync().unwrap();
        match TxnIndex::load(&s, &path, 100, 200).unwrap() {
            Loaded::Entries(e) => assert_eq!(e, index.entries),
            other => panic!("{other:?}"),
        }
        // Entries past the segment's end (a segment this file does not belong to).
        assert!(matches!(
            TxnIndex::load(&s, &path, 100, 125).unwrap(),
            Loaded::Damaged(_)
        ));
        // A torn entry.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..50]).unwrap();
        assert!(
            matches!(TxnIndex::load(&s, &path, 100, 200).unwrap(), Loaded::Damaged(r) if r.contains("whole number"))
        );
        std::fs::write(&path, &bytes).unwrap();
        index.retain_before(&s, &path, 125).unwrap();
        match TxnIndex::load(&s, &path, 100, 200).unwrap() {
            Loaded::Entries(e) => assert_eq!(e, [entry(1, 90, 120)]),
            other => panic!("{other:?}"),
        }
        index.retain_before(&s, &path, 0).unwrap();
        assert!(!path.exists());
    }
}
