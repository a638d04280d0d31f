//! The memory direct writes are staged in, kept afterwards as one cache of the newest
//! bytes written by every direct-written file of the process.
//!
//! A direct write must come from aligned memory, so every write is copied once into
//! memory of this process's own before it goes to the disk (`direct.rs`). That memory is
//! one [`Ring`] for the whole process, [`RING_BYTES`] in [`CHUNK_BYTES`] chunks: each
//! write takes the next free span of it ([`Ring::reserve`]), in the order writes come,
//! whichever file they are for, and what it wrote stays readable there until the ring
//! comes round to it again. The ring so holds the newest [`RING_BYTES`] written by the
//! whole process, shared by every partition in proportion to how fast it is written: a
//! consumer keeping up with any partition is served from memory (the page cache holds
//! nothing of a direct-written range). This is Redpanda's batch cache at the level of file
//! positions, below the log's read path, which stays as it is (checks included); it
//! replaces a window of 4 MiB per file, of which only 32 files could keep one (the rest
//! reading their newest bytes back from the disk).
//!
//! Each file remembers where its bytes are ([`Pieces`]: file position, length, chunk and
//! the chunk's *epoch*). Before the ring writes into a chunk again it gives the chunk a
//! new epoch and waits until nobody *pins* it: a reader pins a chunk, checks that the
//! epoch is still the one its piece was written under, copies, and unpins; a writer
//! keeps its span pinned until its `pwrite` is done. A piece whose chunk moved on is gone,
//! and its bytes are read from the disk. So the ring also bounds what is on its way to
//! the disk: a write that would start a chunk whose `pwrite` has not returned (the disk
//! has fallen a whole ring behind) waits for it, and the writes after it wait too.

use std::collections::VecDeque;
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use memmap2::MmapMut;

use super::BLOCK;

/// Size of a chunk: the most one `pwrite` writes, and the unit the ring is recycled in.
pub const CHUNK_BYTES: usize = 1 << 20;
/// Size of the process's ring (4 chunks): the newest bytes written by direct writes that
/// reads are served from, at least its chunks but one. At 700 MB/s of 1 KiB records the
/// last 6 ms of writes, the lag of a consumer keeping up (one fetch in flight); at 20
/// MB/s over 100 partitions, the last 200 ms.
///
/// Small because every write is copied into it: a write copies into the memory the ring
/// wrote longest ago, and the larger the ring, the colder that memory. Measured on one
/// partition's 1 KiB produce (BENCHMARKS.md § One ring of recent writes), a ring of
/// 128 MiB cost the broker 8-14% more CPU per GB than a 4 MiB window per file did, one
/// of 16 MiB 3-6%, and this one the same.
pub const RING_BYTES: usize = 4 << 20;

/// Times a writer starting a chunk yields while the chunk is pinned, before it sleeps
/// [`PIN_SLEEP`] between looks.
const PIN_YIELDS: u32 = 64;
const PIN_SLEEP: std::time::Duration = std::time::Duration::from_micros(100);

/// Pieces a file remembers at most (40 B each): its newest writes, however small they
/// are, so that a file of tiny writes does not hold a list as long as the ring's blocks.
const MAX_PIECES: usize = 1024;

const _: () = assert!(
    (CHUNK_BYTES as u64).is_multiple_of(BLOCK)
        && CHUNK_BYTES as u64 >= 2 * BLOCK
        && RING_BYTES.is_multiple_of(CHUNK_BYTES)
        && RING_BYTES / CHUNK_BYTES >= 2
);

/// The process's ring, mapped when the first file is opened for direct writes.
static SHARED: Mutex<Option<Arc<Ring>>> = Mutex::new(None);

/// The ring every direct-written file of the process shares.
pub(super) fn shared() -> io::Result<Arc<Ring>> {
    let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(ring) = shared.as_ref() {
        return Ok(Arc::clone(ring));
    }
    let ring = Arc::new(Ring::new(CHUNK_BYTES, RING_BYTES / CHUNK_BYTES)?);
    *shared = Some(Arc::clone(&ring));
    Ok(ring)
}

#[derive(Debug, Default)]
struct Chunk {
    /// Changed each time the ring starts writing the chunk again (0: never written).
    epoch: AtomicU64,
    /// Readers copying out of it and writers whose `pwrite` of it is under way.
    pins: AtomicUsize,
}

/// Where the ring writes next.
#[derive(Debug)]
struct Cursor {
    chunk: usize,
    /// Bytes of `chunk` handed out in its current epoch.
    used: usize,
    /// The last epoch given to a chunk.
    epoch: u64,
}

/// One mapping of `chunks.len() * chunk_bytes` bytes, handed out in order (see the module
/// documentation).
#[derive(Debug)]
pub(super) struct Ring {
    /// The memory: anonymous, so page-aligned, as a direct write's memory must be. Only
    /// reached through `base`.
    _map: MmapMut,
    base: NonNull<u8>,
    chunk_bytes: usize,
    chunks: Box<[Chunk]>,
    cursor: Mutex<Cursor>,
}

// SAFETY: the bytes behind `base` are only reached through a `Span` (a writer's, for the
// span it reserved: no other writer is handed those bytes until the chunk's next epoch,
// which waits for its pin) or through `Ring::copy_out` under a pin, with the epoch checked
// after pinning (no writer writes the chunk again until the pin is gone); the rest of the
// struct is atomics and a mutex.
unsafe impl Send for Ring {}
// SAFETY: as for `Send`.
unsafe impl Sync for Ring {}

impl Ring {
    /// A ring of `chunks` chunks of `chunk_bytes` (a multiple of [`BLOCK`]).
    pub(super) fn new(chunk_bytes: usize, chunks: usize) -> io::Result<Ring> {
        assert!(chunk_bytes.is_multiple_of(BLOCK as usize) && chunk_bytes > 0 && chunks >= 2);
        let mut map = MmapMut::map_anon(chunk_bytes * chunks)?;
        let base = NonNull::new(map.as_mut_ptr()).expect("a mapping is not at address 0");
        Ok(Ring {
            _map: map,
            base,
            chunk_bytes,
            chunks: (0..chunks).map(|_| Chunk::default()).collect(),
            // Full, so the first reservation starts chunk 0.
            cursor: Mutex::new(Cursor {
                chunk: chunks - 1,
                used: chunk_bytes,
                epoch: 0,
            }),
        })
    }

    fn cursor(&self) -> MutexGuard<'_, Cursor> {
        self.cursor.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next free span of at least one block and at most `want` bytes (a multiple of
    /// [`BLOCK`]), pinned. It is shorter than `want` where its chunk ends: the caller
    /// reserves again for the rest. May wait for readers of the chunk it starts again.
    pub(super) fn reserve(&self, want: usize) -> Span<'_> {
        debug_assert!(want > 0 && want.is_multiple_of(BLOCK as usize));
        let mut cursor = self.cursor();
        if cursor.used == self.chunk_bytes {
            cursor.chunk = (cursor.chunk + 1) % self.chunks.len();
            cursor.used = 0;
            cursor.epoch += 1;
            let chunk = &self.chunks[cursor.chunk];
            // New pins see the new epoch (their pieces are gone); pins taken under the
            // old one are waited out. Both sequentially consistent: a reader pins, then
            // reads the epoch; this stores the epoch, then reads the pins; one of the two
            // sees the other's write.
            chunk.epoch.store(cursor.epoch, Ordering::SeqCst);
            // A reader's pin lasts a copy; a writer's, a `pwrite` that may wait on a
            // stalled disk: yield a few times, then sleep rather than spin.
            let mut tries = 0;
            while chunk.pins.load(Ordering::SeqCst) != 0 {
                match tries < PIN_YIELDS {
                    true => std::thread::yield_now(),
                    false => std::thread::sleep(PIN_SLEEP),
                }
                tries += 1;
            }
        }
        let len = want.min(self.chunk_bytes - cursor.used);
        let chunk = cursor.chunk;
        let at = chunk * self.chunk_bytes + cursor.used;
        cursor.used += len;
        self.chunks[chunk].pins.fetch_add(1, Ordering::SeqCst);
        Span {
            ring: self,
            chunk,
            epoch: cursor.epoch,
            at,
            len,
        }
    }

    /// Hands the `len` bytes at ring offset `at` (in `chunk`) to `out` if the chunk is
    /// still in `epoch`; false if the ring has come round to it since.
    fn copy_out(
        &self,
        chunk: usize,
        epoch: u64,
        at: usize,
        len: usize,
        out: &mut impl FnMut(&[u8]),
    ) -> bool {
        let pins = &self.chunks[chunk].pins;
        pins.fetch_add(1, Ordering::SeqCst);
        let kept = self.chunks[chunk].epoch.load(Ordering::SeqCst) == epoch;
        if kept {
            // SAFETY: in the mapping (a piece lies within its chunk); pinned in the epoch
            // it was written in, so no writer writes these bytes until the pin is gone.
            let bytes = unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(at), len) };
            out(bytes);
        }
        pins.fetch_sub(1, Ordering::Release);
        kept
    }
}

/// A writer's span of the ring, pinned until dropped.
#[derive(Debug)]
pub(super) struct Span<'a> {
    ring: &'a Ring,
    chunk: usize,
    epoch: u64,
    /// Offset in the ring.
    at: usize,
    len: usize,
}

impl Span<'_> {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The span's memory, aligned to [`BLOCK`].
    pub(super) fn mem(&mut self) -> &mut [u8] {
        // SAFETY: in the mapping; handed to this span alone in this epoch of its chunk
        // (`Ring::reserve`), and no reader copies it out before a piece names it, which
        // its writer adds after its last use of this borrow.
        unsafe { std::slice::from_raw_parts_mut(self.ring.base.as_ptr().add(self.at), self.len) }
    }

    /// The piece of a file's bytes `[pos, pos + len)` that this span holds from its
    /// byte `offset` on.
    pub(super) fn piece(&self, offset: usize, pos: u64, len: usize) -> Piece {
        debug_assert!(offset + len <= self.len);
        Piece {
            pos,
            len,
            chunk: self.chunk,
            epoch: self.epoch,
            at: self.at + offset,
        }
    }
}

impl Drop for Span<'_> {
    fn drop(&mut self) {
        self.ring.chunks[self.chunk]
            .pins
            .fetch_sub(1, Ordering::Release);
    }
}

/// Where a run of a file's bytes is in the ring.
#[derive(Debug, Clone, Copy)]
pub(super) struct Piece {
    /// File position of its first byte.
    pos: u64,
    len: usize,
    chunk: usize,
    epoch: u64,
    /// Ring offset of its first byte.
    at: usize,
}

impl Piece {
    fn end(&self) -> u64 {
        self.pos + self.len as u64
    }
}

/// A file's pieces in the ring, in file order, each starting where the one before ends.
#[derive(Debug, Default)]
pub(super) struct Pieces {
    pieces: VecDeque<Piece>,
}

impl Pieces {
    /// Adds the file's next piece, and forgets the oldest ones whose chunks the ring has
    /// come round to (all of them if it does not start where the last one ends: pieces
    /// name one run of bytes).
    pub(super) fn push(&mut self, ring: &Ring, piece: Piece) {
        if piece.len == 0 {
            return;
        }
        if self
            .pieces
            .back()
            .is_some_and(|last| last.end() != piece.pos)
        {
            self.pieces.clear();
        }
        while let Some(first) = self.pieces.front()
            && (ring.chunks[first.chunk].epoch.load(Ordering::Relaxed) != first.epoch
                || self.pieces.len() >= MAX_PIECES)
        {
            self.pieces.pop_front();
        }
        self.pieces.push_back(piece);
    }

    /// Forgets everything at and after `len` (the file was cut there, or is about to be
    /// written from there).
    pub(super) fn cut(&mut self, len: u64) {
        while let Some(last) = self.pieces.back_mut() {
            if last.pos >= len {
                self.pieces.pop_back();
            } else {
                last.len = last.len.min((len - last.pos) as usize);
                break;
            }
        }
    }

    /// Forgets everything.
    pub(super) fn clear(&mut self) {
        self.pieces.clear();
    }

    /// Whether pieces name every byte of `[from, to)` (they may be gone from the ring by
    /// the time they are read).
    pub(super) fn covers(&self, from: u64, to: u64) -> bool {
        self.first_of(from, to).is_some()
    }

    /// The index of the piece `[from, to)` starts in (the end, for an empty range there),
    /// if pieces name every byte of it.
    fn first_of(&self, from: u64, to: u64) -> Option<usize> {
        let last = self.pieces.back()?;
        if from > to || to > last.end() {
            return None;
        }
        let first = self.pieces.partition_point(|p| p.end() <= from);
        match self.pieces.get(first) {
            Some(p) => (p.pos <= from).then_some(first),
            None => (from == last.end()).then_some(first),
        }
    }

    /// Hands the `len` bytes from `pos` to `out`, in order, from the ring, if it still
    /// holds all of them; false otherwise (`out` may have been given the first of them).
    pub(super) fn copy_out(
        &self,
        ring: &Ring,
        pos: u64,
        len: usize,
        mut out: impl FnMut(&[u8]),
    ) -> bool {
        let end = pos + len as u64;
        let Some(first) = self.first_of(pos, end) else {
            return false;
        };
        let mut at = pos;
        for piece in self.pieces.range(first..) {
            if at >= end {
                break;
            }
            let skip = (at - piece.pos) as usize;
            let n = (piece.len - skip).min((end - at) as usize);
            if !ring.copy_out(piece.chunk, piece.epoch, piece.at + skip, n, &mut out) {
                return false;
            }
            at += n as u64;
        }
        true
    }

    /// [`copy_out`](Self::copy_out) onto the end of `out`, which is left as it was if the
    /// ring no longer holds them all.
    pub(super) fn extend(&self, ring: &Ring, out: &mut Vec<u8>, pos: u64, len: usize) -> bool {
        let start = out.len();
        let kept = self.copy_out(ring, pos, len, |bytes| out.extend_from_slice(bytes));
        if !kept {
            out.truncate(start);
        }
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(ring: &Ring, pieces: &mut Pieces, pos: u64, data: &[u8]) {
        let mut span = ring.reserve((data.len() as u64).next_multiple_of(BLOCK) as usize);
        assert!(span.len() >= data.len(), "the test writes within a chunk");
        span.mem()[..data.len()].copy_from_slice(data);
        let piece = span.piece(0, pos, data.len());
        drop(span);
        pieces.push(ring, piece);
    }

    #[test]
    fn a_file_reads_its_pieces_back_until_the_ring_comes_round() {
        let ring = Ring::new(2 * BLOCK as usize, 3).unwrap();
        let (mut a, mut b) = (Pieces::default(), Pieces::default());
        write(&ring, &mut a, 0, b"hello, ");
        write(&ring, &mut b, 100, b"other file");
        write(&ring, &mut a, 7, b"world");
        let mut out = Vec::new();
        assert!(a.extend(&ring, &mut out, 0, 12));
        assert_eq!(out, b"hello, world");
        out.clear();
        assert!(a.extend(&ring, &mut out, 3, 6));
        assert_eq!(out, b"lo, wo");
        assert!(!a.extend(&ring, &mut out, 3, 10), "past the end");
        assert!(a.covers(12, 12) && !a.covers(12, 13));
        // Three chunks of two blocks: four more blocks move the ring past a's first
        // piece (chunk 0), not its second (chunk 1).
        for i in 0..4 {
            write(&ring, &mut b, 110 + i * 10, &[0; 10]);
        }
        out.clear();
        assert!(!a.extend(&ring, &mut out, 0, 12), "the first piece is gone");
        assert!(out.is_empty());
        assert!(a.extend(&ring, &mut out, 7, 5));
        assert_eq!(out, b"world");
        // A cut forgets what follows it.
        a.cut(9);
        assert!(!a.covers(7, 10) && a.covers(7, 9));
    }

    #[test]
    fn a_chunk_is_not_written_again_while_a_reader_holds_it() {
        let ring = Arc::new(Ring::new(BLOCK as usize, 2).unwrap());
        let first = ring.reserve(BLOCK as usize);
        let chunk = first.chunk;
        drop(first);
        drop(ring.reserve(BLOCK as usize));
        ring.chunks[chunk].pins.fetch_add(1, Ordering::SeqCst);
        let writer = {
            let ring = Arc::clone(&ring);
            std::thread::spawn(move || drop(ring.reserve(BLOCK as usize)))
        };
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(
            !writer.is_finished(),
            "the chunk was written again under a pin"
        );
        ring.chunks[chunk].pins.fetch_sub(1, Ordering::SeqCst);
        writer.join().unwrap();
    }
}
