//! A segment file written past the page cache (`O_DIRECT`), for logs whose flush policy
//! syncs on the append path (`LogConfig::direct_writes`).
//!
//! Why: a log that syncs continuously pays for each byte twice through the page cache,
//! once to copy it into a newly allocated page and again for the kernel's writeback of
//! that page; on a VM whose memory is handed back to the host between uses, the first
//! touch of every page is the larger part of a broker's CPU per byte. Writing from
//! reused, aligned memory straight to the disk costs the copy into that memory and the
//! I/O (`weir-limits`' `recv_append_direct` against `recv_append` measures the gap).
//!
//! How: every write goes to the disk before it returns (nothing waits in this process's
//! memory, so a process crash loses nothing a page-cache write would have kept). A direct
//! write's position, length and memory must be multiples of [`BLOCK`], so each write is
//! staged in the process's ring of recent writes (`direct/recent.rs`): the bytes of the
//! last, partial block already written, then the new bytes, then zeros up to the next
//! block boundary, in spans of at most a chunk, each written with one `pwrite`. The file
//! on disk is therefore up to one block longer than the data, the tail zero; the log only
//! ever writes at its end, so the zeros are overwritten by the next write, and recovery
//! reads a zero tail shorter than a block as padding, not as a torn batch
//! (`recovery::scan`).
//!
//! What a write staged stays in the ring until the ring comes round to it (the newest
//! [`RING_BYTES`](recent::RING_BYTES) written by every direct-written file of the process), and a file's reads
//! of bytes the ring still holds are copied from it: the page cache holds nothing of what
//! was written here, so without it a tailing consumer would read every record back from
//! the disk. A read of other bytes (`read_bytes_at`, what the log's read path uses) is a
//! direct read too, into pooled memory (`direct/read_past.rs`), started ahead of time
//! where the log's read path says a reader going in order will ask next
//! (`direct/ahead.rs`); the log's read path never sends such a file's bytes with
//! `sendfile` ([`StorageFile::reads_past_page_cache`]).
//!
//! Small reads (`read_at`: recovery, the head of a write) the ring does not hold and
//! `fdatasync` use a second, ordinary descriptor of the same file: the kernel drops a
//! range's cached pages after a direct write to it, so a read sees what was written. The
//! page cache is never written through here, so no dirty page can be left stale beside
//! the disk. `fdatasync` is still needed, for the file's size and the disk's own write
//! cache.
//!
//! Some file systems take `O_DIRECT` at open and refuse the I/O itself with `EINVAL`: a
//! passthrough FUSE file system whose daemon opens its backing file with the flags it was
//! given and then writes from its own unaligned buffer (this project's `weir-faultfs` is
//! one). The first refused direct write or read makes the file an ordinary one for good
//! ([`DirectFile::refused`]): the write is done again through the page cache from its
//! start (the same bytes at the same positions), the file forgets its bytes in the ring,
//! and every later read and write goes through the page cache, as if the open had been
//! refused.

mod ahead;
mod read_past;
mod recent;

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;

use super::{OsFile, StorageFile};
use ahead::Ahead;
use recent::{Pieces, Ring};

/// Alignment of a direct write's position, length and memory: the largest logical block
/// size of the disks Linux drives (512 B and 4 KiB), and the page size.
pub const BLOCK: u64 = 4096;

/// Opens `path` twice, once with `O_DIRECT` for writes, staging them in the process's
/// ring. `None` if the file system does not take direct I/O (tmpfs, some FUSE file
/// systems): the caller then writes through the page cache.
pub(super) fn open(path: &Path, create: bool) -> io::Result<Option<DirectFile>> {
    open_in(path, create, recent::shared)
}

/// [`open`] with the ring `ring` gives (a test's own, smaller one).
fn open_in(
    path: &Path,
    create: bool,
    ring: impl FnOnce() -> io::Result<Arc<Ring>>,
) -> io::Result<Option<DirectFile>> {
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
    Ok(Some(DirectFile {
        path: path.to_owned(),
        page_cache: AtomicBool::new(false),
        file: OsFile(file),
        direct: Arc::new(direct),
        ring: ring()?,
        writer: Mutex::new(Writer { last_block: None }),
        pieces: RwLock::new(Pieces::default()),
        ahead: Mutex::new(None),
    }))
}

/// What a file remembers between writes.
#[derive(Debug)]
struct Writer {
    /// Where the last write ended, and the bytes from the start of its block to there
    /// (read back from the disk when not known: the file was opened or cut since).
    last_block: Option<(u64, Vec<u8>)>,
}

#[derive(Debug)]
pub(crate) struct DirectFile {
    /// For the warning when the file system refuses direct I/O.
    path: PathBuf,
    /// Set for good once the file system refused a direct write or read: everything
    /// goes through `file` and the page cache from then on.
    page_cache: AtomicBool,
    file: OsFile,
    /// Shared with the read-ahead thread (`direct/ahead.rs`).
    direct: Arc<File>,
    /// Where writes are staged, and their bytes read back from while it holds them.
    ring: Arc<Ring>,
    /// Held for the whole of a write: one writer at a time.
    writer: Mutex<Writer>,
    /// Where this file's newest bytes are in the ring. Writers hold it exclusively only
    /// to add a piece or cut; readers copy out of the ring under it beside a write's I/O.
    pieces: RwLock<Pieces>,
    /// The read ahead for the next read in order, if any (`direct/ahead.rs`).
    ahead: Mutex<Option<Ahead>>,
}

/// A write's data, then zeros, handed out span by span (after the head of its first
/// block, which the caller stages).
struct Staged<'a> {
    bufs: &'a [IoSlice<'a>],
    /// The next byte of `bufs` to stage: a slice, and a byte in it.
    slice: usize,
    at: usize,
}

impl Staged<'_> {
    /// Fills `dst` with the next data bytes, then zeros once the data is all staged.
    fn fill(&mut self, mut dst: &mut [u8]) {
        while !dst.is_empty() {
            let Some(slice) = self.bufs.get(self.slice) else {
                dst.fill(0);
                return;
            };
            let src = &slice[self.at..];
            let n = src.len().min(dst.len());
            dst[..n].copy_from_slice(&src[..n]);
            dst = &mut dst[n..];
            self.at += n;
            if self.at == slice.len() {
                self.slice += 1;
                self.at = 0;
            }
        }
    }
}

impl DirectFile {
    /// Whether the ring holds the byte at `pos` for this file.
    #[cfg(test)]
    fn in_ring(&self, pos: u64) -> bool {
        let mut out = Vec::new();
        self.pieces().extend(&self.ring, &mut out, pos, 1)
    }

    fn writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn pieces(&self) -> RwLockReadGuard<'_, Pieces> {
        self.pieces.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn pieces_mut(&self) -> RwLockWriteGuard<'_, Pieces> {
        self.pieces.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn ahead(&self) -> MutexGuard<'_, Option<Ahead>> {
        self.ahead.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the file system refused direct I/O on this file (it is written and read
    /// through the page cache since).
    fn in_page_cache(&self) -> bool {
        self.page_cache.load(Ordering::Acquire)
    }

    /// Whether `e` is the file system refusing direct I/O (`EINVAL` from an aligned
    /// direct write or read); if so, the file goes over to the page cache for good.
    fn refused(&self, e: &io::Error) -> bool {
        if e.raw_os_error() != Some(rustix::io::Errno::INVAL.raw_os_error()) {
            return false;
        }
        if !self.page_cache.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                file = %self.path.display(),
                "the file system refused a direct write or read (EINVAL); this segment is written through the page cache instead"
            );
        }
        // Under the writer's lock: no write is between the ring and the disk.
        let mut writer = self.writer();
        writer.last_block = None;
        self.pieces_mut().clear();
        *self.ahead() = None;
        true
    }

    /// Writes `bufs` from `pos` past the page cache, or through it if the file system
    /// refuses that (then again from `pos`: a direct write refused part way has written
    /// the same bytes at the same places, or nothing).
    fn write(&self, bufs: &[IoSlice<'_>], pos: u64) -> io::Result<()> {
        if !self.in_page_cache() {
            match self.write_direct(bufs, pos) {
                Err(e) if self.refused(&e) => {}
                done => return done,
            }
        }
        self.file.write_all_vectored_at(&mut bufs.to_vec(), pos)
    }

    /// Stages `bufs` in the ring after the bytes of `pos`'s block before it (from the
    /// last write, or read back from the disk), and writes them, padded to a whole block,
    /// a span at a time; each span's data is a piece of the file the ring holds after it.
    fn write_direct(&self, bufs: &[IoSlice<'_>], pos: u64) -> io::Result<()> {
        let mut writer = self.writer();
        self.pieces_mut().cut(pos);
        let data_len: usize = bufs.iter().map(|b| b.len()).sum();
        if data_len == 0 {
            return Ok(());
        }
        let block_start = pos - pos % BLOCK;
        let head_len = (pos - block_start) as usize;
        let head = match writer.last_block.take() {
            Some((end, block)) if end == pos && block.len() == head_len => Some(block),
            _ => None,
        };
        let total = head_len + data_len;
        let padded = total.next_multiple_of(BLOCK as usize);
        let mut staged = Staged {
            bufs,
            slice: 0,
            at: 0,
        };
        let mut last_block = head.unwrap_or_default();
        // Bytes of [head | data | zeros] written so far: a multiple of a block.
        let mut done = 0;
        while done < padded {
            let mut span = self.ring.reserve(padded - done);
            let n = span.len();
            let mem = span.mem();
            let mut from = 0;
            if done == 0 && head_len > 0 {
                match last_block.len() == head_len {
                    true => mem[..head_len].copy_from_slice(&last_block),
                    false => self.read_head(&mut mem[..BLOCK as usize], block_start, head_len)?,
                }
                from = head_len;
            }
            staged.fill(&mut mem[from..]);
            let written = self.direct.write_all_at(mem, block_start + done as u64);
            if let Err(e) = written {
                self.pieces_mut().cut(pos);
                return Err(e);
            }
            // The data this span held: a piece of the file in the ring.
            let data_from = done.max(head_len);
            let data_to = (done + n).min(total);
            if data_to == total {
                let tail = total - total % BLOCK as usize;
                last_block.clear();
                last_block.extend_from_slice(&mem[tail - done..total - done]);
            }
            let piece = span.piece(
                data_from - done,
                block_start + data_from as u64,
                data_to.saturating_sub(data_from),
            );
            drop(span);
            self.pieces_mut().push(&self.ring, piece);
            done += n;
        }
        writer.last_block = Some((pos + data_len as u64, last_block));
        Ok(())
    }

    /// Reads the block at `block_start` from the disk into `block` (one aligned block),
    /// for the `head_len` bytes before a write's position that the last write did not
    /// leave (the file was opened or cut since). A direct read is of whole blocks, short
    /// only at the end of the file.
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
        if !self.in_page_cache() {
            let mut at = 0;
            let kept = self.pieces().copy_out(&self.ring, pos, buf.len(), |bytes| {
                buf[at..at + bytes.len()].copy_from_slice(bytes);
                at += bytes.len();
            });
            if kept {
                return Ok(buf.len());
            }
        }
        self.file.read_at(buf, pos)
    }
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.write(&[IoSlice::new(buf)], pos)
    }
    fn write_all_vectored_at(&self, bufs: &mut [IoSlice<'_>], pos: u64) -> io::Result<()> {
        self.write(bufs, pos)
    }
    fn read_bytes_at(&self, len: usize, pos: u64) -> io::Result<Bytes> {
        if self.in_page_cache() {
            return self.file.read_bytes_at(len, pos);
        }
        {
            let pieces = self.pieces();
            // Checked before the buffer is allocated: a read the ring does not hold (a
            // consumer catching up, a fetch of megabytes) allocates only its own.
            if pieces.covers(pos, pos + len as u64) {
                let mut buf = Vec::with_capacity(len);
                if pieces.extend(&self.ring, &mut buf, pos, len) {
                    return Ok(buf.into());
                }
            }
        }
        let ahead = self.ahead().take();
        if let Some(bytes) = ahead.and_then(|a| a.bytes(pos, len)) {
            return Ok(bytes);
        }
        match read_past::read(&self.direct, len, pos) {
            Err(e) if self.refused(&e) => self.file.read_bytes_at(len, pos),
            done => done,
        }
    }
    fn read_ahead(&self, pos: u64, len: usize) {
        if self.in_page_cache() || self.pieces().covers(pos, pos + len as u64) {
            return;
        }
        let Ok(size) = self.file.size() else { return };
        let mut pending = self.ahead();
        // The last one's buffer and place go first: a reader has one read ahead at a time.
        pending.take();
        *pending = ahead::start(&self.direct, pos, len, size);
    }
    fn reads_past_page_cache(&self) -> bool {
        !self.in_page_cache()
    }
    fn sealed(&self) {
        let mut writer = self.writer();
        writer.last_block = None;
        self.pieces_mut().clear();
    }
    fn os_file(&self) -> Option<&File> {
        Some(&self.file.0)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut writer = self.writer();
        writer.last_block = None;
        self.pieces_mut().cut(len);
        // Under the read ahead's lock: none started before the cut is taken after it.
        let mut ahead = self.ahead();
        let cut = self.file.set_len(len);
        *ahead = None;
        cut
    }
    fn size(&self) -> io::Result<u64> {
        self.file.size()
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
        /// Reads this many bytes from this share (per mille) of the length: from the
        /// ring, the disk, or both.
        Read(u16, usize),
        /// Reads from this share of the length to the end, this many bytes at a time,
        /// each read starting a third of a read before the last one ended, as fetches
        /// do.
        Scan(u16, usize),
        /// Says a read of this many bytes from this share of the length comes next.
        Ahead(u16, usize),
    }

    /// The tests' ring: 4 chunks of 64 KiB, so that writes span chunks and the ring
    /// comes round within a test.
    const CHUNK: usize = 64 << 10;
    const RING: usize = 4 * CHUNK;

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0..3 * RING / 2, 1..4usize).prop_map(|(n, s)| Op::Append(n, s)),
            6 => (0..9000usize, 1..4usize).prop_map(|(n, s)| Op::Append(n, s)),
            1 => (0..1000u16).prop_map(Op::Cut),
            1 => Just(Op::Reopen),
            3 => (0..1000u16, 0..2 * RING).prop_map(|(at, n)| Op::Read(at, n)),
            2 => (0..1000u16, 3..RING).prop_map(|(at, n)| Op::Scan(at, n)),
            2 => (0..1000u16, 0..2 * RING).prop_map(|(at, n)| Op::Ahead(at, n)),
        ]
    }

    fn ring() -> Arc<Ring> {
        Arc::new(Ring::new(CHUNK, RING / CHUNK).unwrap())
    }

    fn open_file(path: &Path, ring: &Arc<Ring>) -> DirectFile {
        open_in(path, true, || Ok(Arc::clone(ring)))
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
            let ring = ring();
            let mut file = open_file(&path, &ring);
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
                        file = open_file(&path, &ring);
                    }
                    Op::Read(share, n) => {
                        let at = model.len() * usize::from(share) / 1000;
                        let n = n.min(model.len() - at);
                        let mut buf = vec![0; n];
                        file.read_exact_at(&mut buf, at as u64).unwrap();
                        prop_assert!(buf[..] == model[at..at + n], "read_at differs");
                        let bytes = file.read_bytes_at(n, at as u64).unwrap();
                        prop_assert!(bytes[..] == model[at..at + n], "read_bytes_at differs");
                    }
                    Op::Scan(share, step) => {
                        let mut at = model.len() * usize::from(share) / 1000;
                        while at < model.len() {
                            let n = step.min(model.len() - at);
                            let bytes = file.read_bytes_at(n, at as u64).unwrap();
                            prop_assert!(bytes[..] == model[at..at + n], "scan differs at {}", at);
                            at += (n - n / 3).max(1);
                            // As the log's read path does: the next read, likely.
                            let len = (n + n / 3).min(model.len().saturating_sub(at));
                            file.read_ahead(at as u64, len);
                        }
                    }
                    Op::Ahead(share, n) => {
                        let at = model.len() * usize::from(share) / 1000;
                        file.read_ahead(at as u64, n.min(model.len() - at));
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

    /// A read ahead never serves bytes a cut or a later write changed: a cut drops it, and
    /// a range asked past the data end (a reader's size from before a cut) is read only up
    /// to the file's last block, not into the zeros a later write fills. (Reads from 0 of a file longer
    /// than the ring go to the disk, so to what was read ahead.)
    #[test]
    fn a_read_ahead_serves_only_bytes_that_stay() {
        let dir = tempfile::tempdir().unwrap();
        let ring = ring();
        // A range asked past the data end of a file written here: not into its padding.
        let padded = open_file(&dir.path().join("padded.log"), &ring);
        let data = pattern(0, 2 * RING + 1000);
        padded.write_all_at(&data, 0).unwrap();
        padded.read_ahead(0, 2 * RING + BLOCK as usize);
        std::thread::sleep(std::time::Duration::from_millis(300));
        padded.write_all_at(&[9; 300], data.len() as u64).unwrap();
        let back = padded.read_bytes_at(data.len() + 300, 0).unwrap();
        assert!(back[..data.len()] == data[..]);
        assert_eq!(back[data.len()..], [9; 300], "read ahead into the padding");

        let file = open_file(&dir.path().join("f.log"), &ring);
        let first = pattern(0, 3 * RING);
        file.write_all_at(&first, 0).unwrap();
        let old_end = first.len();
        let cut = 2 * RING + 1000;
        file.read_ahead(0, 2 * RING + 5000);
        // The read ahead done before the cut, as a fast disk's would be.
        std::thread::sleep(std::time::Duration::from_millis(300));
        file.set_len(cut as u64).unwrap();
        file.write_all_at(&[7; 500], cut as u64).unwrap();
        let back = file.read_bytes_at(cut + 500, 0).unwrap();
        assert!(back[..cut] == first[..cut]);
        assert_eq!(back[cut..], [7; 500], "read ahead before the cut");
        // A reader that read the size before the cut asks for the old range; the next
        // write fills what was the zero padding of the block the data ends in.
        file.read_ahead(0, old_end);
        std::thread::sleep(std::time::Duration::from_millis(300));
        file.write_all_at(&[9; 300], cut as u64 + 500).unwrap();
        let back = file.read_bytes_at(cut + 800, 0).unwrap();
        assert!(back[..cut] == first[..cut]);
        assert_eq!(back[cut..cut + 500], [7; 500]);
        assert_eq!(back[cut + 500..], [9; 300], "read ahead past the data end");
    }

    #[test]
    fn a_write_ends_on_the_disk_with_its_block_padded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.log");
        let file = open_file(&path, &ring());
        file.write_all_at(b"hello", 0).unwrap();
        file.write_all_at(b", world", 5).unwrap();
        assert_eq!(file.size().unwrap(), BLOCK);
        // Another descriptor, as after a process crash, sees the bytes.
        let seen = std::fs::read(&path).unwrap();
        assert_eq!(&seen[..12], b"hello, world");
        assert!(seen[12..].iter().all(|&b| b == 0));
    }

    #[test]
    fn the_newest_bytes_are_read_from_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.log");
        let ring = ring();
        let file = open_file(&path, &ring);
        // Another file writing beside it takes its share of the ring.
        let other_file = open_file(&dir.path().join("g.log"), &ring);
        let len = 2 * RING + 1000;
        let data = pattern(0, len);
        for (i, chunk) in data.chunks(30_000).enumerate() {
            file.write_all_at(chunk, (i * 30_000) as u64).unwrap();
            other_file
                .write_all_at(&[1; 1000], i as u64 * 1000)
                .unwrap();
        }
        let end = len as u64;
        assert!(
            file.in_ring(end - 1),
            "the last byte written is in the ring"
        );
        // The ring holds at least its chunks but one; less the blocks of the other file's
        // writes, the heads and the padding.
        assert!(file.in_ring(end - (RING - 2 * CHUNK) as u64));
        assert!(
            !file.in_ring(0),
            "the first bytes were overwritten in the ring"
        );
        assert!(!file.in_ring(end), "nothing past the end");
        // Bytes changed on the disk behind the file's back: what the ring holds still
        // reads as written, what it does not hold reads from the disk.
        let other = OpenOptions::new().write(true).open(&path).unwrap();
        other.write_all_at(&[0xee; 10], end - 10).unwrap();
        other.write_all_at(&[0xee; 10], 0).unwrap();
        let mut tail = [0; 10];
        file.read_exact_at(&mut tail, end - 10).unwrap();
        assert_eq!(tail[..], data[len - 10..]);
        assert_eq!(
            file.read_bytes_at(10, end - 10).unwrap()[..],
            data[len - 10..]
        );
        let mut head = [0; 10];
        file.read_exact_at(&mut head, 0).unwrap();
        assert_eq!(head, [0xee; 10]);
        // A cut forgets the ring past it; the next write finds its block's head there.
        file.set_len(end - 500).unwrap();
        assert!(!file.in_ring(end - 500));
        assert!(file.in_ring(end - 501));
        file.write_all_at(b"after the cut", end - 500).unwrap();
        let mut back = vec![0; 513];
        file.read_exact_at(&mut back, end - 1000).unwrap();
        assert_eq!(back[..500], data[len - 1000..len - 500]);
        assert_eq!(&back[500..], b"after the cut");
        let on_disk = std::fs::read(&path).unwrap();
        assert_eq!(&on_disk[len - 500..len - 487], b"after the cut");
        // Sealed (its segment rolled), the file forgets its pieces and reads the disk.
        file.sealed();
        assert!(!file.in_ring(end - 501));
        assert_eq!(
            file.read_bytes_at(13, end - 500).unwrap()[..],
            b"after the cut"[..]
        );
    }

    /// Files written and read from several threads at once through one small ring, which
    /// comes round many times under the readers: every read is what was written there.
    #[test]
    fn files_written_and_read_at_once_read_back_what_was_written() {
        use std::sync::atomic::AtomicU64;
        const FILES: usize = 3;
        const BYTES: usize = 3 * RING;
        fn byte(file: usize, pos: usize) -> u8 {
            ((pos * 7 + file) % 251) as u8
        }
        let dir = tempfile::tempdir().unwrap();
        let ring = ring();
        let files: Vec<Arc<DirectFile>> = (0..FILES)
            .map(|i| Arc::new(open_file(&dir.path().join(format!("{i}.log")), &ring)))
            .collect();
        let written: Arc<Vec<AtomicU64>> =
            Arc::new((0..FILES).map(|_| AtomicU64::new(0)).collect());
        std::thread::scope(|scope| {
            for (i, file) in files.iter().enumerate() {
                let written = Arc::clone(&written);
                scope.spawn(move || {
                    let mut pos = 0;
                    let mut n = 1;
                    while pos < BYTES {
                        n = (n * 5 + 3) % 20_000;
                        let data: Vec<u8> = (pos..pos + n).map(|p| byte(i, p)).collect();
                        file.write_all_at(&data, pos as u64).unwrap();
                        pos += n;
                        written[i].store(pos as u64, Ordering::Release);
                    }
                });
            }
            for reader in 0..2 {
                let (files, written) = (&files, Arc::clone(&written));
                scope.spawn(move || {
                    let mut reads = 0u64;
                    loop {
                        let done = (0..FILES)
                            .all(|i| written[i].load(Ordering::Acquire) as usize >= BYTES);
                        for (i, file) in files.iter().enumerate() {
                            let end = written[i].load(Ordering::Acquire) as usize;
                            // The newest bytes, as a tailing reader asks, and older ones.
                            let len = end.min(1000 + (reads as usize * 997) % 30_000);
                            let from = match reader {
                                0 => end - len,
                                _ => (reads as usize * 7919) % (end - len + 1),
                            };
                            let bytes = file.read_bytes_at(len, from as u64).unwrap();
                            for (k, b) in bytes.iter().enumerate() {
                                assert_eq!(
                                    *b,
                                    byte(i, from + k),
                                    "file {i}, position {}",
                                    from + k
                                );
                            }
                            reads += 1;
                        }
                        if done {
                            break;
                        }
                    }
                });
            }
        });
    }
}
