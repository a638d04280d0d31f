//! The memory a direct write is staged in, kept afterwards as a window on the file's end.
//!
//! A direct write must come from aligned memory, so every write is copied once into a
//! buffer of this process's own before it goes to the disk (`direct.rs`). A [`Window`] is
//! that buffer used as a ring: file position `p` lives at `p % WINDOW_BYTES`, each write
//! is copied in after the one before it, and what the ring still holds once written
//! stays readable as the window `[lo, end)`. Reads of the newest bytes, which tailing
//! consumers make moments after the write, are then served from memory instead of the
//! disk (the page cache holds nothing of a direct-written range): Redpanda's batch cache
//! is this idea at a higher level, keyed by offsets; here it is keyed by file position,
//! below the log's read path, which stays as it is (checks included).
//!
//! A file keeps its window while it is open, at most [`MAX_KEPT_WINDOWS`] of them in the
//! process; past that a write borrows one for its duration and keeps nothing, as before
//! windows were kept, so the memory they take is bounded whatever the partition count.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use memmap2::MmapMut;

use super::BLOCK;

/// Size of one window: the newest bytes of a file kept in memory after a direct write,
/// and the most one `pwrite` writes. A multiple of [`BLOCK`]. At 700 MB/s of 1 KiB
/// records it holds the last 6 ms of writes, the lag of a consumer keeping up (one
/// fetch in flight).
pub const WINDOW_BYTES: usize = 4 << 20;
/// Windows kept by open files at once in this process (128 MiB); beyond it, files write
/// through borrowed windows and their reads go to the disk.
pub const MAX_KEPT_WINDOWS: usize = 32;
/// Unused windows kept mapped for the next file or write.
const POOLED: usize = 4;

const _: () =
    assert!((WINDOW_BYTES as u64).is_multiple_of(BLOCK) && WINDOW_BYTES as u64 >= 2 * BLOCK);

static POOL: Mutex<Vec<MmapMut>> = Mutex::new(Vec::new());
static KEPT: AtomicUsize = AtomicUsize::new(0);

/// A ring of [`WINDOW_BYTES`] holding the file's bytes `[lo, end)`, each at its
/// position modulo the size (empty when `lo >= end`).
#[derive(Debug)]
pub(super) struct Window {
    map: Option<MmapMut>,
    /// Counted in [`KEPT`] (a file's own window, not one borrowed for a write).
    kept: bool,
    pub(super) lo: u64,
    pub(super) end: u64,
}

impl Window {
    /// A window for a file to keep, or `None` if [`MAX_KEPT_WINDOWS`] are kept already.
    pub(super) fn keep() -> io::Result<Option<Window>> {
        let kept = KEPT.fetch_add(1, Ordering::Relaxed);
        if kept >= MAX_KEPT_WINDOWS {
            KEPT.fetch_sub(1, Ordering::Relaxed);
            return Ok(None);
        }
        let mut window = Window::borrow().inspect_err(|_| {
            KEPT.fetch_sub(1, Ordering::Relaxed);
        })?;
        window.kept = true;
        Ok(Some(window))
    }

    /// A window for one write, returned to the pool afterwards.
    pub(super) fn borrow() -> io::Result<Window> {
        let pooled = POOL.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let map = match pooled {
            Some(map) => map,
            // Anonymous mappings are page-aligned, which a direct write's memory must be.
            None => MmapMut::map_anon(WINDOW_BYTES)?,
        };
        Ok(Window {
            map: Some(map),
            kept: false,
            lo: 0,
            end: 0,
        })
    }

    fn mem(&self) -> &[u8] {
        self.map.as_ref().expect("held until dropped")
    }

    fn mem_mut(&mut self) -> &mut [u8] {
        self.map.as_mut().expect("held until dropped")
    }

    /// Whether the window holds the bytes `[from, to)` (empty ranges included, where
    /// `from` is in it or at its end).
    pub(super) fn holds(&self, from: u64, to: u64) -> bool {
        self.lo <= from && to <= self.end && from <= to
    }

    /// Forgets everything at and after `len` (the file was cut there, or is about to be
    /// written from there).
    pub(super) fn cut(&mut self, len: u64) {
        self.end = self.end.min(len);
        self.lo = self.lo.min(self.end);
    }

    /// Empties the window and starts it at `pos`.
    pub(super) fn restart(&mut self, pos: u64) {
        self.lo = pos;
        self.end = pos;
    }

    /// The ring's memory for `len` bytes from file position `pos`, which must not cross
    /// the ring's end.
    pub(super) fn slot(&self, pos: u64, len: usize) -> &[u8] {
        let at = ring_index(pos);
        &self.mem()[at..at + len]
    }

    /// [`slot`](Self::slot), to write into. Raises `lo` past the older bytes the slot
    /// held, so no reader is served them once they are overwritten.
    pub(super) fn slot_mut(&mut self, pos: u64, len: usize) -> &mut [u8] {
        let at = ring_index(pos);
        self.lo = self
            .lo
            .max((pos + len as u64).saturating_sub(WINDOW_BYTES as u64));
        &mut self.mem_mut()[at..at + len]
    }

    /// The ring's memory for the `len` bytes from file position `pos`, in one piece or,
    /// where the range wraps around the ring's end, two.
    fn pieces(&self, pos: u64, len: usize) -> [&[u8]; 2] {
        let first = len.min(room(pos));
        [
            self.slot(pos, first),
            self.slot(pos + first as u64, len - first),
        ]
    }

    /// Copies the bytes from `pos` on that the window holds into `buf`, as many as fit;
    /// returns how many (0 if `pos` is not in the window).
    pub(super) fn copy_out(&self, buf: &mut [u8], pos: u64) -> usize {
        if !self.holds(pos, pos + 1) {
            return 0;
        }
        let n = buf.len().min((self.end - pos) as usize);
        let [a, b] = self.pieces(pos, n);
        buf[..a.len()].copy_from_slice(a);
        buf[a.len()..n].copy_from_slice(b);
        n
    }

    /// Appends the `len` bytes from `pos`, which the window must hold, to `out`.
    pub(super) fn extend(&self, out: &mut Vec<u8>, pos: u64, len: usize) {
        debug_assert!(self.holds(pos, pos + len as u64));
        for piece in self.pieces(pos, len) {
            out.extend_from_slice(piece);
        }
    }
}

/// Where file position `pos` lives in a window.
fn ring_index(pos: u64) -> usize {
    (pos % WINDOW_BYTES as u64) as usize
}

/// Bytes from file position `pos` to the ring's end.
pub(super) fn room(pos: u64) -> usize {
    WINDOW_BYTES - ring_index(pos)
}

impl Drop for Window {
    fn drop(&mut self) {
        if self.kept {
            KEPT.fetch_sub(1, Ordering::Relaxed);
        }
        let mut pool = POOL.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < POOLED {
            pool.extend(self.map.take());
        }
    }
}
