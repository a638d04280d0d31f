//! Reading ahead in a direct-written file, for a reader going through it in order.
//!
//! Why: a direct read waits for the disk, and a fetch that reads its whole range before
//! the answer goes out leaves the disk idle while the answer is sent and the client asks
//! again. The log's read path says where the next read will likely start
//! ([`StorageFile::read_ahead`](crate::storage::StorageFile::read_ahead)); that range is
//! read by the process's read-ahead thread into a pooled buffer (`read_past`) while the
//! answer is sent, and the next read that falls inside it takes a slice of it: nothing is
//! joined or copied again. One thread for the process, started at the first read ahead: a
//! thread per read cost a reader of 1 MiB at a time more than the overlap gave it.
//!
//! A read ahead holds only bytes before the file's last block when it started: a direct
//! write pads the block its data ends in with zeros on the disk, and a later write fills
//! them, but every block before it holds data that only a cut changes (a caller's range
//! past it, from a size it read before a cut, is cut there). A cut (`set_len`) drops the
//! read ahead, under the same lock as the cut.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, mpsc};

use bytes::Bytes;

use super::BLOCK;

/// Reads ahead the process holds at once (running, or done and not yet taken), each with a
/// buffer of up to a fetch's size (16 MiB and a little, from librdkafka's settings): past
/// this, readers read as before.
const MAX_AHEAD: usize = 4;

static HELD: AtomicUsize = AtomicUsize::new(0);

/// A read for the read-ahead thread, and where its result goes.
struct Job {
    direct: Arc<File>,
    pos: u64,
    len: usize,
    result: mpsc::SyncSender<io::Result<Bytes>>,
    /// Cleared when its reader moved on: the thread then skips it.
    wanted: Arc<AtomicBool>,
}

/// The read-ahead thread's queue, once it is started (`None` if it could not be).
static QUEUE: OnceLock<Option<Mutex<mpsc::Sender<Job>>>> = OnceLock::new();

/// Queues `job` for the read-ahead thread; false if there is none.
fn queue(job: Job) -> bool {
    let queue = QUEUE.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("weir-read-ahead".into())
            .spawn(move || {
                for job in rx {
                    if !job.wanted.load(Ordering::Acquire) {
                        continue;
                    }
                    let read = super::read_past::read(&job.direct, job.len, job.pos);
                    let _ = job.result.send(read);
                }
            })
            .ok()
            .map(|_| Mutex::new(tx))
    });
    queue.as_ref().is_some_and(|tx| {
        let tx = tx.lock().unwrap_or_else(PoisonError::into_inner);
        tx.send(job).is_ok()
    })
}

/// One read queued for (or done by) the read-ahead thread.
#[derive(Debug)]
pub(super) struct Ahead {
    pos: u64,
    len: usize,
    result: mpsc::Receiver<io::Result<Bytes>>,
    wanted: Arc<AtomicBool>,
}

impl Drop for Ahead {
    fn drop(&mut self) {
        self.wanted.store(false, Ordering::Release);
        HELD.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Starts reading `[pos, pos + len)` of `direct` ahead, cut before the last block of the
/// file's `size`; `None` if nothing is left to read there or the process holds
/// [`MAX_AHEAD`] already.
pub(super) fn start(direct: &Arc<File>, pos: u64, len: usize, size: u64) -> Option<Ahead> {
    let settled = size.saturating_sub(1) / BLOCK * BLOCK;
    let len = (len as u64).min(settled.saturating_sub(pos)) as usize;
    if len == 0 {
        return None;
    }
    if HELD.fetch_add(1, Ordering::AcqRel) >= MAX_AHEAD {
        HELD.fetch_sub(1, Ordering::AcqRel);
        return None;
    }
    let (tx, result) = mpsc::sync_channel(1);
    let wanted = Arc::new(AtomicBool::new(true));
    let ahead = Ahead {
        pos,
        len,
        result,
        wanted: Arc::clone(&wanted),
    };
    let job = Job {
        direct: Arc::clone(direct),
        pos,
        len,
        result: tx,
        wanted,
    };
    queue(job).then_some(ahead)
}

impl Ahead {
    /// `len` bytes from `pos`, if this read ahead covers them and succeeded (waiting for it
    /// to finish); `None` otherwise, and the caller reads them itself.
    pub(super) fn bytes(self, pos: u64, len: usize) -> Option<Bytes> {
        let covers = self.pos <= pos && pos + len as u64 <= self.pos + self.len as u64;
        if !covers {
            return None;
        }
        let bytes = self.result.recv().ok()?.ok()?;
        let from = (pos - self.pos) as usize;
        (bytes.len() >= from + len).then(|| bytes.slice(from..from + len))
    }
}
