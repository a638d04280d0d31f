//! Reads of a direct-written file past the page cache, into reused aligned buffers.
//!
//! Why: the bytes a direct write put on the disk are not in the page cache, so a buffered
//! read of them first fills new page-cache pages, and the first touch of new pages is
//! what made the page cache's writes dear on the VMs this project is measured on
//! (BENCHMARKS.md, "On a broker that has been writing"). A direct read lands in memory
//! this process has used before: a small pool of aligned buffers, each lent to the bytes
//! it returns ([`Bytes::from_owner`]) and given back to the pool when the last of them
//! is dropped (once the answer holding them is written to its socket).

use std::fs::File;
use std::io;
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use memmap2::MmapMut;

use super::BLOCK;

/// Read buffers are mapped in multiples of this size.
const MIN_READ_BUFFER: usize = 1 << 20;
/// Bytes of unused read buffers kept mapped for the next reads: a few fetches of the
/// largest partition size clients ask for (16 MiB and a little, from librdkafka's
/// benchmark settings) in flight at once. A read that finds none to reuse maps new
/// memory, whose first touch is what these reads exist to avoid.
const POOLED_BYTES: usize = 64 << 20;

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
            MmapMut::map_anon(need.next_multiple_of(MIN_READ_BUFFER))
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
