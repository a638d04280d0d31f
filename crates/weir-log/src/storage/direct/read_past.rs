//! Reads of a direct-written file past the page cache, into reused aligned buffers, and
//! the next range read ahead of a reader going through the file in order.
//!
//! Why: the bytes a direct write put on the disk are not in the page cache, so a buffered
//! read of them first fills new page-cache pages, and the first touch of new pages is
//! what made the page cache's writes dear on the VMs this project is measured on
//! (BENCHMARKS.md, "On a broker that has been writing"). A direct read lands in memory
//! this process has used before: a small pool of aligned buffers, each lent to the bytes
//! it returns ([`Bytes::from_owner`]) and given back to the pool when the last of them
//! is dropped (once the answer holding them is written to its socket).
//!
//! A direct read has no kernel read-ahead, so a consumer catching up would wait for the
//! disk on every fetch while the disk waits for it in between. [`Sequential`] keeps the
//! last read's bytes (a fetch starts where the last one's whole batches ended, inside
//! them) and reads the range after them on a background thread while the answer is sent;
//! the next read is put together from the two and reads only what they lack.
use std::fs::File;
use std::io;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};

use bytes::Bytes;
use memmap2::MmapMut;

use super::BLOCK;

/// The smallest buffer mapped for a read; larger ones are powers of two.
const MIN_READ_BUFFER: usize = 1 << 20;
/// Bytes of unused read buffers kept mapped for the next reads.
const POOLED_BYTES: usize = 32 << 20;

static POOL: Mutex<Vec<MmapMut>> = Mutex::new(Vec::new());

fn pool() -> std::sync::MutexGuard<'static, Vec<MmapMut>> {
    POOL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A pooled buffer holding `len` bytes read; what a returned [`Bytes`] owns.
struct ReadBuffer {
    map: Option<MmapMut>,
    len: usize,
}

impl AsRef<[u8]> for ReadBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.map.as_ref().expect("held until dropped")[..self.len]
    }
}

impl Drop for ReadBuffer {
    fn drop(&mut self) {
        let Some(map) = self.map.take() else { return };
        let mut pool = pool();
        if pool.iter().map(|m| m.len()).sum::<usize>() + map.len() <= POOLED_BYTES {
            pool.push(map);
        }
    }
}

/// The smallest pooled buffer of at least `need` bytes, or a new one.
fn take(need: usize) -> io::Result<MmapMut> {
    let mut pool = pool();
    let best = (0..pool.len())
        .filter(|&i| pool[i].len() >= need)
        .min_by_key(|&i| pool[i].len());
    match best {
        Some(i) => Ok(pool.swap_remove(i)),
        None => {
            drop(pool);
            // Anonymous mappings are page-aligned, which a direct read's memory must be.
            MmapMut::map_anon(need.next_power_of_two().max(MIN_READ_BUFFER))
        }
    }
}

/// `len` bytes from `pos` of `direct` (opened with `O_DIRECT`), or `UnexpectedEof`: the
/// whole blocks around them read into a pooled buffer, which the result slices.
pub(super) fn read(direct: &File, len: usize, pos: u64) -> io::Result<Bytes> {
    if len == 0 {
        return Ok(Bytes::new());
    }
    let start = pos - pos % BLOCK;
    let skip = (pos - start) as usize;
    let want = skip + len;
    let need = want.next_multiple_of(BLOCK as usize);
    let mut map = take(need)?;
    let mut got = 0;
    while got < want {
        match rustix::io::pread(direct, &mut map[got..need], start + got as u64) {
            Ok(n) => {
                got += n;
                // A direct read is of whole blocks but at the file's end: after a short
                // one the next would be misaligned, and there is nothing more to read.
                if n == 0 || !n.is_multiple_of(BLOCK as usize) {
                    break;
                }
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let buffer = ReadBuffer {
        map: Some(map),
        len: want,
    };
    if got < want {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(Bytes::from_owner(buffer).slice(skip..))
}

/// A file's reads past the page cache in order: the last read's bytes, and the range
/// after them read ahead.
#[derive(Debug, Default)]
pub(super) struct Sequential {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The last read's bytes and where they start in the file.
    last: Option<(u64, Bytes)>,
    /// The read of the range after them, running or done.
    ahead: Option<Ahead>,
}

/// A read on the read-ahead thread.
#[derive(Debug)]
struct Ahead {
    from: u64,
    len: usize,
    done: Arc<Done>,
}

#[derive(Debug, Default)]
struct Done {
    result: Mutex<Option<io::Result<Bytes>>>,
    ready: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Sequential {
    /// `len` bytes from `pos`, as [`read`] gives them, from the last read's bytes and the
    /// range read ahead where they hold them, from the disk for the rest; then starts
    /// reading the next `len` bytes ahead, up to what `stable_end` says when asked (in
    /// the same lock as [`Sequential::cut`]): below it the file's bytes change no more.
    pub(super) fn read(
        &self,
        direct: &Arc<File>,
        len: usize,
        pos: u64,
        stable_end: impl FnOnce() -> io::Result<u64>,
    ) -> io::Result<Bytes> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let mut state = lock(&self.state);
        let stable_end = stable_end()?;
        let end = pos + len as u64;
        let mut pieces: Vec<Bytes> = Vec::new();
        let mut at = pos;
        if let Some((start, bytes)) = &state.last {
            take_from(&mut pieces, &mut at, end, *start, bytes);
        }
        if at < end
            && let Some(ahead) = state.ahead.take()
            && ahead.from <= at
            && at < ahead.from + ahead.len as u64
            && let Ok(bytes) = ahead.wait()
        {
            take_from(&mut pieces, &mut at, end, ahead.from, &bytes);
            state.last = Some((ahead.from, bytes));
        }
        if at < end {
            let bytes = read(direct, (end - at) as usize, at)?;
            pieces.push(bytes.clone());
            // Kept only below `stable_end`: the bytes past it (a direct write's padding)
            // are the next write's to change.
            let stable = stable_end.saturating_sub(at).min(bytes.len() as u64) as usize;
            state.last = (stable > 0).then(|| (at, bytes.slice(..stable)));
            at = end;
        }
        debug_assert_eq!(at, end);
        // What the reader has now ends where the next read will start, or after.
        let next = state
            .last
            .as_ref()
            .map_or(end, |(start, bytes)| start + bytes.len() as u64);
        if state.ahead.is_none() && next < stable_end {
            let n = (len as u64).min(stable_end - next) as usize;
            state.ahead = Ahead::start(direct, next, n);
        }
        Ok(match pieces.len() {
            1 => pieces.pop().expect("one piece"),
            _ => pieces.concat().into(),
        })
    }

    /// Drops what was read and what is being read ahead, and runs `cut`, which cuts the
    /// file, before any other read here can begin.
    pub(super) fn cut<T>(&self, cut: impl FnOnce() -> T) -> T {
        let mut state = lock(&self.state);
        *state = State::default();
        cut()
    }
}

/// Takes the bytes of `[at, end)` that `bytes` (from `start` in the file) holds from `at`
/// on, if it holds `at`, and moves `at` past them.
fn take_from(pieces: &mut Vec<Bytes>, at: &mut u64, end: u64, start: u64, bytes: &Bytes) {
    let stop = start + bytes.len() as u64;
    if start <= *at && *at < stop {
        let to = end.min(stop);
        pieces.push(bytes.slice((*at - start) as usize..(to - start) as usize));
        *at = to;
    }
}

impl Ahead {
    /// Reads `len` bytes from `from` on the read-ahead thread; `None` if it cannot start.
    fn start(direct: &Arc<File>, from: u64, len: usize) -> Option<Ahead> {
        let done = Arc::new(Done::default());
        let (file, result) = (Arc::clone(direct), Arc::clone(&done));
        let job: Job = Box::new(move || {
            let bytes = read(&file, len, from);
            *lock(&result.result) = Some(bytes);
            result.ready.notify_all();
        });
        reader()?.send(job).ok()?;
        Some(Ahead { from, len, done })
    }

    fn wait(&self) -> io::Result<Bytes> {
        let mut result = lock(&self.done.result);
        loop {
            if let Some(bytes) = result.take() {
                return bytes;
            }
            result = self
                .done
                .ready
                .wait(result)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// The read-ahead thread's queue, started with the first read ahead (`None` if the thread
/// could not be started: reads then wait for the disk).
fn reader() -> Option<&'static Sender<Job>> {
    static READER: OnceLock<Option<Sender<Job>>> = OnceLock::new();
    READER
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Job>();
            std::thread::Builder::new()
                .name("weir-read-ahead".into())
                .spawn(move || rx.into_iter().for_each(|job| job()))
                .ok()?;
            Some(tx)
        })
        .as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::OpenOptionsExt;

    #[test]
    fn reads_any_range_and_refuses_one_past_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.log");
        let data: Vec<u8> = (0..3 * MIN_READ_BUFFER + 1234)
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&path, &data).unwrap();
        let direct = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
            .open(&path)
            .unwrap();
        for (pos, len) in [
            (0, 1),
            (5, 4091),
            (4095, 2),
            (1000, MIN_READ_BUFFER),
            (7, 3 * MIN_READ_BUFFER),
            (data.len() - 10, 10),
            (0, data.len()),
        ] {
            let got = read(&direct, len, pos as u64).unwrap();
            assert_eq!(got[..], data[pos..pos + len], "{pos} + {len}");
        }
        let past = read(&direct, 11, data.len() as u64 - 10).unwrap_err();
        assert_eq!(past.kind(), io::ErrorKind::UnexpectedEof);
        assert!(read(&direct, 0, 12).unwrap().is_empty());
    }
}
