//! Sparse, memory-mapped segment indexes: `.index` maps a relative offset to a file
//! position, `.timeindex` maps a timestamp to a relative offset. Both are sorted by their
//! key and rebuilt from the `.log` file whenever they are missing or inconsistent.

use std::fs::{File, OpenOptions};
use std::io;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use memmap2::{Advice, MmapMut};

/// One fixed-size index entry, stored big-endian.
pub trait Entry: Copy + std::fmt::Debug {
    const BYTES: usize;
    fn decode(b: &[u8]) -> Self;
    fn encode(self, b: &mut [u8]);
    /// What the index is sorted and searched by.
    fn key(self) -> i64;
}

/// `.index` entry: the batch starting at `position` has base offset `base + relative`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

impl Entry for OffsetEntry {
    const BYTES: usize = 8;
    fn decode(b: &[u8]) -> Self {
        OffsetEntry {
            relative_offset: u32::from_be_bytes(b[0..4].try_into().expect("4 bytes")),
            position: u32::from_be_bytes(b[4..8].try_into().expect("4 bytes")),
        }
    }
    fn encode(self, b: &mut [u8]) {
        b[0..4].copy_from_slice(&self.relative_offset.to_be_bytes());
        b[4..8].copy_from_slice(&self.position.to_be_bytes());
    }
    fn key(self) -> i64 {
        i64::from(self.relative_offset)
    }
}

/// `.timeindex` entry: every batch before the one at `base + relative_offset` has a max
/// timestamp below `timestamp`, and that batch reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}

impl Entry for TimeEntry {
    const BYTES: usize = 12;
    fn decode(b: &[u8]) -> Self {
        TimeEntry {
            timestamp: i64::from_be_bytes(b[0..8].try_into().expect("8 bytes")),
            relative_offset: u32::from_be_bytes(b[8..12].try_into().expect("4 bytes")),
        }
    }
    fn encode(self, b: &mut [u8]) {
        b[0..8].copy_from_slice(&self.timestamp.to_be_bytes());
        b[8..12].copy_from_slice(&self.relative_offset.to_be_bytes());
    }
    fn key(self) -> i64 {
        self.timestamp
    }
}

/// How far past its last entry an index's file blocks are allocated at a time
/// ([`Index::reserve`]): 8,192 offset entries, about 32 MiB of log at the default index
/// interval, so the file is reopened for it that rarely.
const ALLOCATE_AHEAD_BYTES: usize = 64 * 1024;

/// An index file mapped into memory. An active segment's index is preallocated to its
/// maximum size and trimmed to the entries it holds when the segment is closed.
///
/// The preallocated file is sparse: a store into a mapped page whose block the
/// filesystem cannot allocate (the disk is full) would kill the process with SIGBUS. So
/// blocks are allocated (`fallocate`) ahead of the entries, [`Index::reserve_entries`]
/// before the log is written: on a full disk the append is refused with ENOSPC and
/// nothing is written, and [`Index::push`] never stores outside what is allocated.
///
/// The file descriptor is closed once the file is mapped (the mapping outlives it), so an
/// idle partition holds no descriptor for its indexes; resizing reopens the file briefly.
/// With thousands of partitions per broker this is the difference between one descriptor
/// per partition and three.
#[derive(Debug)]
pub struct Index<E: Entry> {
    path: PathBuf,
    map: Option<MmapMut>,
    entries: usize,
    /// Bytes from the start of the file whose blocks are known to be allocated: the
    /// entries written, and what [`Index::reserve_entries`] allocated past them.
    allocated: usize,
    _entry: PhantomData<E>,
}

impl<E: Entry> Index<E> {
    /// Opens (creating if needed) the index at `path`, sized to hold `capacity_bytes`,
    /// trusting its first `entries` entries; `None` trusts the file length (a closed,
    /// trimmed index).
    pub fn open(
        path: &Path,
        capacity_bytes: Option<u64>,
        entries: Option<usize>,
    ) -> io::Result<Self> {
        let file = open_rw(path)?;
        let len = file.metadata()?.len();
        let entries = entries.unwrap_or((len as usize) / E::BYTES);
        let want = match capacity_bytes {
            Some(cap) => (cap / E::BYTES as u64) * E::BYTES as u64,
            None => (entries * E::BYTES) as u64,
        };
        let want = want.max((entries * E::BYTES) as u64);
        if len != want {
            file.set_len(want)?;
        }
        let mut index = Index {
            path: path.to_path_buf(),
            map: None,
            entries,
            allocated: entries * E::BYTES,
            _entry: PhantomData,
        };
        index.remap(&file)?;
        if index.entries > index.capacity() {
            index.entries = index.capacity();
            index.allocated = index.entries * E::BYTES;
        }
        Ok(index)
    }

    /// Maps `file` (this index's file) as it is now; the caller may close it afterwards.
    fn remap(&mut self, file: &File) -> io::Result<()> {
        let len = file.metadata()?.len();
        self.map = if len == 0 {
            None
        } else {
            // SAFETY: the index file belongs to this log directory, which one process
            // owns (the broker holds a lock file on it); nothing else truncates it while
            // it is mapped. Every method below re-checks bounds against the map's length.
            let map = unsafe { MmapMut::map_mut(file)? };
            // No readahead: an index is read a page at a time (binary search, the last
            // entry), and its preallocated tail is a hole. With readahead, the first
            // store into a fresh index faulted in (and zeroed) a whole readahead window
            // of hole pages: across 1,000 partitions that was 61% of the broker's CPU
            // (BENCHMARKS.md § Partition scale).
            map.advise(Advice::Random)?;
            Some(map)
        };
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    pub fn capacity(&self) -> usize {
        self.map.as_ref().map_or(0, |m| m.len() / E::BYTES)
    }

    pub fn is_full(&self) -> bool {
        self.entries >= self.capacity()
    }

    pub fn get(&self, i: usize) -> E {
        assert!(i < self.entries, "index entry {i} out of {}", self.entries);
        let map = self.map.as_ref().expect("non-empty index is mapped");
        E::decode(&map[i * E::BYTES..(i + 1) * E::BYTES])
    }

    pub fn last(&self) -> Option<E> {
        self.entries.checked_sub(1).map(|i| self.get(i))
    }

    /// Appends an entry. Keys must not decrease: that would break every lookup, so it is
    /// checked in release builds too. Returns false if the index is full.
    pub fn push(&mut self, entry: E) -> bool {
        if let Some(last) = self.last() {
            assert!(
                entry.key() >= last.key(),
                "index {} would go backwards: {last:?} then {entry:?}",
                self.path.display()
            );
        }
        if self.is_full() {
            return false;
        }
        let i = self.entries;
        if (i + 1) * E::BYTES > self.allocated && self.reserve_entries(1).is_err() {
            // No block for it: the entry is left out (an index is sparse; lookups scan
            // from the entry before), never stored into a page that would fault.
            return false;
        }
        let map = self.map.as_mut().expect("non-full index is mapped");
        entry.encode(&mut map[i * E::BYTES..(i + 1) * E::BYTES]);
        self.entries += 1;
        true
    }

    /// Makes sure the file's blocks for `more` entries past the last one are allocated,
    /// allocating [`ALLOCATE_AHEAD_BYTES`] at a time; fails (ENOSPC) when the disk is full.
    /// Entries past the index's capacity need no room: they are never written.
    pub fn reserve_entries(&mut self, more: usize) -> io::Result<()> {
        let len = self.map.as_ref().map_or(0, |m| m.len());
        let need = ((self.entries + more) * E::BYTES).min(len);
        if need <= self.allocated {
            return Ok(());
        }
        let target = (self.allocated + ALLOCATE_AHEAD_BYTES).max(need).min(len);
        let file = open_rw(&self.path)?;
        let start = self.allocated as u64;
        match rustix::fs::fallocate(
            &file,
            rustix::fs::FallocateFlags::empty(),
            start,
            target as u64 - start,
        ) {
            Ok(()) => {}
            // A filesystem that cannot allocate ahead: stores allocate as they come, as
            // they did before this existed.
            Err(rustix::io::Errno::OPNOTSUPP) => {}
            Err(e) => return Err(e.into()),
        }
        self.allocated = target;
        Ok(())
    }

    /// The last entry whose key is at most `key`, with its position in the index.
    pub fn floor(&self, key: i64) -> Option<(usize, E)> {
        // partition_point: first entry with key > `key`.
        let (mut lo, mut hi) = (0, self.entries);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.get(mid).key() <= key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo.checked_sub(1).map(|i| (i, self.get(i)))
    }

    /// Keeps the first `entries` entries and zeroes the rest of the mapped area.
    pub fn truncate_entries(&mut self, entries: usize) {
        if entries >= self.entries {
            return;
        }
        if let Some(map) = self.map.as_mut() {
            map[entries * E::BYTES..self.entries * E::BYTES].fill(0);
        }
        self.entries = entries;
    }

    /// Checks the entries are sorted and satisfy `valid`; false means rebuild.
    pub fn is_consistent(&self, mut valid: impl FnMut(E) -> bool) -> bool {
        let mut prev: Option<E> = None;
        for i in 0..self.entries {
            let e = self.get(i);
            if prev.is_some_and(|p| e.key() < p.key()) || !valid(e) {
                return false;
            }
            prev = Some(e);
        }
        true
    }

    /// Writes dirty pages to disk (msync).
    pub fn flush(&self) -> io::Result<()> {
        match &self.map {
            Some(map) => map.flush(),
            None => Ok(()),
        }
    }

    /// Cuts the file to exactly the entries held, flushes it, and maps it again: the
    /// state of a closed segment's index.
    pub fn trim(&mut self) -> io::Result<()> {
        self.flush()?;
        self.map = None;
        let file = open_rw(&self.path)?;
        file.set_len((self.entries * E::BYTES) as u64)?;
        self.allocated = self.allocated.min(self.entries * E::BYTES);
        file.sync_all()?;
        self.remap(&file)
    }

    /// Grows the file back to `capacity_bytes` so an index can take appends again (a
    /// closed segment becoming active after a truncation).
    pub fn reserve(&mut self, capacity_bytes: u64) -> io::Result<()> {
        let want = (capacity_bytes / E::BYTES as u64) * E::BYTES as u64;
        let file = open_rw(&self.path)?;
        if want > file.metadata()?.len() {
            self.map = None;
            file.set_len(want)?;
            self.remap(&file)?;
        }
        Ok(())
    }
}

fn open_rw(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// Bytes of `path` the filesystem has blocks for (st_blocks counts 512-byte units).
    fn allocated(path: &Path) -> u64 {
        std::fs::metadata(path).unwrap().blocks() * 512
    }

    /// An active index's file is sparse past its entries; blocks are allocated ahead of
    /// them, a chunk at a time, so no store into the mapping needs a block the filesystem
    /// might not have (a full disk would kill the process with SIGBUS).
    #[test]
    fn blocks_are_allocated_ahead_of_the_entries_stored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        let capacity = 1 << 20;
        let mut idx = Index::<OffsetEntry>::open(&path, Some(capacity), Some(0)).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), capacity);
        let sparse = allocated(&path);
        assert!(
            sparse < ALLOCATE_AHEAD_BYTES as u64,
            "{sparse} bytes allocated at open"
        );
        idx.reserve_entries(1).unwrap();
        let ahead = allocated(&path);
        assert!(
            ahead >= ALLOCATE_AHEAD_BYTES as u64,
            "{ahead} bytes after a reserve"
        );
        assert!(ahead < capacity, "the whole index was allocated: {ahead}");
        // Pushing past the reserved chunk allocates the next one first.
        let per_chunk = ALLOCATE_AHEAD_BYTES / OffsetEntry::BYTES;
        for i in 0..=per_chunk as u32 {
            assert!(idx.push(OffsetEntry {
                relative_offset: i,
                position: i
            }));
        }
        assert!(allocated(&path) >= 2 * ALLOCATE_AHEAD_BYTES as u64);
        assert_eq!(idx.last().unwrap().relative_offset, per_chunk as u32);
    }

    #[test]
    fn floor_push_trim_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        let mut idx = Index::<OffsetEntry>::open(&path, Some(80), Some(0)).unwrap();
        assert_eq!(idx.capacity(), 10);
        assert_eq!(idx.floor(5), None);
        for i in 0..10u32 {
            assert!(idx.push(OffsetEntry {
                relative_offset: i * 10,
                position: i * 100
            }));
        }
        assert!(!idx.push(OffsetEntry {
            relative_offset: 200,
            position: 2000
        }));
        assert_eq!(idx.floor(0).unwrap().1.position, 0);
        assert_eq!(idx.floor(9).unwrap().1.position, 0);
        assert_eq!(idx.floor(10).unwrap().1.position, 100);
        assert_eq!(idx.floor(95).unwrap().1.position, 900);
        idx.truncate_entries(4);
        assert_eq!(idx.floor(95).unwrap().1.position, 300);
        idx.trim().unwrap();
        drop(idx);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 32);
        let idx = Index::<OffsetEntry>::open(&path, None, None).unwrap();
        assert_eq!(idx.len(), 4);
        assert!(idx.is_consistent(|e| e.position < 1000));
    }

    #[test]
    #[should_panic(expected = "go backwards")]
    fn refuses_to_go_backwards() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = Index::<TimeEntry>::open(&dir.path().join("t"), Some(120), Some(0)).unwrap();
        idx.push(TimeEntry {
            timestamp: 10,
            relative_offset: 0,
        });
        idx.push(TimeEntry {
            timestamp: 5,
            relative_offset: 1,
        });
    }
}
