//! A segment file written past the page cache (`O_DIRECT`), for logs whose flush policy
//! syncs on the append path (`LogConfig::direct_writes`).
//!
//! Why: a log that syncs continuously pays for each byte twice through the page cache,
//! once to copy it into a newly allocated page and again for the kernel's writeback of
//! that page; on a VM whose memory is handed back to the host between uses, the first
//! touch of every page is the larger part of a broker's CPU per byte. Writing from one
//! reused, aligned buffer straight to the disk costs the copy into that buffer and the
//! I/O (`weir-limits`' `recv_append_direct` against `recv_append` measures the gap).
//!
//! How: every write goes to the disk before it returns (nothing waits in this process's
//! memory, so a process crash loses nothing a page-cache write would have kept). A direct
//! write's position, length and memory must be multiples of [`BLOCK`], so each write is
//! staged in an aligned buffer from a small pool: the bytes of the last, partial block
//! already written (kept in memory, at most [`BLOCK`] - 1 of them), then the new bytes,
//! then zeros up to the next block boundary. The file on disk is therefore up to one
//! block longer than the data, the tail zero; the log only ever writes at its end, so the
//! zeros are overwritten by the next write, and recovery reads a zero tail shorter than a
//! block as padding, not as a torn batch (`recovery::scan`).
//!
//! Reads, `sendfile` and `fdatasync` use a second, ordinary descriptor of the same file:
//! the kernel drops a range's cached pages after a direct write to it, so a read sees
//! what was written. The page cache is never written through here, so no dirty page can
//! be left stale beside the disk. `fdatasync` is still needed, for the file's size and
//! the disk's own write cache.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use memmap2::MmapMut;

use super::{OsFile, StorageFile};

/// Alignment of a direct write's position, length and memory: the largest logical block
/// size of the disks Linux drives (512 B and 4 KiB), and the page size.
pub const BLOCK: u64 = 4096;
/// Size of one staging buffer: a larger write is written in pieces of this size.
pub const STAGING_BYTES: usize = 1 << 20;
/// Staging buffers kept for reuse; more are mapped while more writers run at once.
const POOLED_STAGING: usize = 4;

static POOL: Mutex<Vec<MmapMut>> = Mutex::new(Vec::new());

/// Opens `path` twice, once with `O_DIRECT` for writes. `None` if the file system does
/// not take direct I/O (tmpfs, some FUSE file systems): the caller then writes through
/// the page cache.
pub(super) fn open(path: &Path, create: bool) -> io::Result<Option<DirectFile>> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .open(path)?;
    let direct = match OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
        .open(path)
    {
        Ok(direct) => direct,
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let end = file.metadata()?.len();
    Ok(Some(DirectFile {
        file: OsFile(file),
        direct,
        tail: Mutex::new(Tail { end, block: None }),
    }))
}

/// The write side's memory of the file's end.
#[derive(Debug)]
struct Tail {
    /// Where the last write ended (or the file's size when opened or cut).
    end: u64,
    /// The bytes from the start of `end`'s block to `end`, once a write has put them
    /// there; `None` until then (they are read back from the disk when needed).
    block: Option<Vec<u8>>,
}

#[derive(Debug)]
pub(crate) struct DirectFile {
    file: OsFile,
    direct: File,
    tail: Mutex<Tail>,
}

impl DirectFile {
    fn tail(&self) -> std::sync::MutexGuard<'_, Tail> {
        self.tail.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes `bufs` from `pos`: stages the block's head (the bytes before `pos` in its
    /// block), the buffers and zero padding, and writes each full staging buffer.
    fn write_direct(&self, bufs: &[IoSlice<'_>], pos: u64) -> io::Result<()> {
        let mut tail = self.tail();
        let block_start = pos - pos % BLOCK;
        let head_len = (pos - block_start) as usize;
        let mut staging = Staging::take()?;
        let buf = staging.as_mut();
        // Taken out first: if a write fails half-way, the head is read back again.
        let kept = tail.block.take();
        match &kept {
            Some(block) if tail.end - block.len() as u64 == block_start && tail.end >= pos => {
                buf[..head_len].copy_from_slice(&block[..head_len]);
            }
            _ if head_len == 0 => {}
            _ => self.read_head(&mut buf[..BLOCK as usize], block_start, head_len)?,
        }
        let mut at = block_start;
        let mut filled = head_len;
        for slice in bufs {
            let mut src: &[u8] = slice;
            while !src.is_empty() {
                let n = src.len().min(STAGING_BYTES - filled);
                buf[filled..filled + n].copy_from_slice(&src[..n]);
                filled += n;
                src = &src[n..];
                if filled == STAGING_BYTES {
                    self.direct.write_all_at(&buf[..STAGING_BYTES], at)?;
                    at += STAGING_BYTES as u64;
                    filled = 0;
                }
            }
        }
        let partial = filled % BLOCK as usize;
        let last_block = filled - partial;
        if filled > 0 {
            let padded = last_block + if partial > 0 { BLOCK as usize } else { 0 };
            buf[filled..padded].fill(0);
            self.direct.write_all_at(&buf[..padded], at)?;
        }
        tail.end = at + filled as u64;
        let mut block = kept.unwrap_or_default();
        block.clear();
        block.extend_from_slice(&buf[last_block..filled]);
        tail.block = Some(block);
        Ok(())
    }

    /// Reads the block at `block_start` from the disk into `block` (one aligned block),
    /// for the `head_len` bytes before a write's position that the tail's memory does not
    /// hold (the file was opened or cut since the last write). A direct read is of whole
    /// blocks, short only at the end of the file.
    fn read_head(&self, block: &mut [u8], block_start: u64, head_len: usize) -> io::Result<()> {
        loop {
            match rustix::io::pread(&self.direct, &mut *block, block_start) {
                Ok(n) if n < head_len => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => return Ok(()),
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl StorageFile for DirectFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.file.read_at(buf, pos)
    }
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.write_direct(&[IoSlice::new(buf)], pos)
    }
    fn write_all_vectored_at(&self, bufs: &mut [IoSlice<'_>], pos: u64) -> io::Result<()> {
        self.write_direct(bufs, pos)
    }
    fn read_bytes_at(&self, len: usize, pos: u64) -> io::Result<Bytes> {
        self.file.read_bytes_at(len, pos)
    }
    fn os_file(&self) -> Option<&File> {
        Some(&self.file.0)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut tail = self.tail();
        tail.block = None;
        self.file.set_len(len)?;
        tail.end = len;
        Ok(())
    }
    fn size(&self) -> io::Result<u64> {
        self.file.size()
    }
}

/// An aligned buffer of [`STAGING_BYTES`] from the pool, returned to it when dropped.
struct Staging(Option<MmapMut>);

impl Staging {
    fn take() -> io::Result<Staging> {
        let pooled = POOL.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let map = match pooled {
            Some(map) => map,
            // Anonymous mappings are page-aligned, which a direct write's memory must be.
            None => MmapMut::map_anon(STAGING_BYTES)?,
        };
        Ok(Staging(Some(map)))
    }

    fn as_mut(&mut self) -> &mut [u8] {
        self.0.as_mut().expect("held until dropped")
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let mut pool = POOL.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < POOLED_STAGING {
            pool.extend(self.0.take());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What a test does to a direct file and to its model, a plain `Vec`.
    #[derive(Debug, Clone)]
    enum Op {
        /// Appends this many bytes at the end, as this many slices.
        Append(usize, usize),
        /// Cuts the file to this share (per mille) of its length.
        Cut(u16),
        /// Closes the file and opens it again (its tail then read back from the disk).
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0..3 * STAGING_BYTES / 2, 1..4usize).prop_map(|(n, s)| Op::Append(n, s)),
            6 => (0..9000usize, 1..4usize).prop_map(|(n, s)| Op::Append(n, s)),
            1 => (0..1000u16).prop_map(Op::Cut),
            1 => Just(Op::Reopen),
        ]
    }

    fn open_file(path: &Path) -> DirectFile {
        open(path, true)
            .unwrap()
            .expect("the test directory's file system takes direct I/O")
    }

    /// Bytes that differ at every position, so a misplaced block shows.
    fn pattern(from: usize, n: usize) -> Vec<u8> {
        (from..from + n).map(|i| (i % 251) as u8).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

        /// Whatever the sizes of the writes and wherever cuts and reopens fall, the file
        /// reads back as the bytes written, and past them holds only zeros, less than a
        /// block of them.
        #[test]
        fn reads_back_what_was_written(ops in proptest::collection::vec(op(), 1..12)) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("00000000000000000000.log");
            let mut file = open_file(&path);
            let mut model: Vec<u8> = Vec::new();
            for op in ops {
                match op {
                    Op::Append(n, slices) => {
                        let data = pattern(model.len(), n);
                        let cut = n / slices;
                        let mut parts: Vec<IoSlice<'_>> =
                            data.chunks(cut.max(1)).map(IoSlice::new).collect();
                        file.write_all_vectored_at(&mut parts, model.len() as u64).unwrap();
                        model.extend_from_slice(&data);
                    }
                    Op::Cut(share) => {
                        let len = model.len() * usize::from(share) / 1000;
                        file.set_len(len as u64).unwrap();
                        model.truncate(len);
                    }
                    Op::Reopen => {
                        drop(file);
                        file = open_file(&path);
                    }
                }
                let size = file.size().unwrap();
                prop_assert!(size >= model.len() as u64 && size - (model.len() as u64) < BLOCK);
                let all = file.read_bytes_at(size as usize, 0).unwrap();
                prop_assert!(all[..model.len()] == model[..], "data differs");
                prop_assert!(all[model.len()..].iter().all(|&b| b == 0), "padding is not zero");
            }
        }
    }

    #[test]
    fn a_write_ends_on_the_disk_with_its_block_padded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.log");
        let file = open_file(&path);
        file.write_all_at(b"hello", 0).unwrap();
        file.write_all_at(b", world", 5).unwrap();
        assert_eq!(file.size().unwrap(), BLOCK);
        // Another descriptor, as after a process crash, sees the bytes.
        let seen = std::fs::read(&path).unwrap();
        assert_eq!(&seen[..12], b"hello, world");
        assert!(seen[12..].iter().all(|&b| b == 0));
    }
}
