//! Helpers shared by the weir-log integration tests: building batches and reading a log
//! back as plain records.

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use weir_log::{Compression, Log, Record, RecordBatchBuilder, decode_records};

/// One record as a test sees it: offset, key, value, timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub timestamp: i64,
}

/// A batch of `n` records whose values are `"{tag}-{i}"`, timestamps `ts`, keys `k{i}`.
pub fn batch(tag: &str, n: usize, ts: i64) -> BytesMut {
    batch_with(tag, n, ts, Compression::None)
}

pub fn batch_with(tag: &str, n: usize, ts: i64, compression: Compression) -> BytesMut {
    let mut b = RecordBatchBuilder::new(compression);
    for i in 0..n {
        b.push(&Record {
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("{tag}-{i}"))),
            headers: Vec::new(),
            timestamp: ts,
        });
    }
    b.build().expect("valid batch")
}

/// A batch of `n` records with values of exactly `value_bytes` bytes.
pub fn sized_batch(n: usize, value_bytes: usize, ts: i64) -> BytesMut {
    let mut b = RecordBatchBuilder::new(Compression::None);
    let value = Bytes::from(vec![b'x'; value_bytes]);
    for _ in 0..n {
        b.push(&Record {
            key: None,
            value: Some(value.clone()),
            headers: Vec::new(),
            timestamp: ts,
        });
    }
    b.build().expect("valid batch")
}

/// Every record from `from` to the log end, decoded, in order.
pub fn read_all(log: &Log, from: i64) -> Vec<Seen> {
    let mut out = Vec::new();
    let mut offset = from;
    loop {
        let data = log.read(offset, 64 * 1024, None).expect("read");
        if data.records.is_empty() {
            break;
        }
        for batch in data.batches() {
            for r in decode_records(&batch).expect("decode") {
                if r.offset >= offset {
                    out.push(Seen {
                        offset: r.offset,
                        key: r.key.map(|k| k.to_vec()),
                        value: r.value.map(|v| v.to_vec()).unwrap_or_default(),
                        timestamp: r.timestamp,
                    });
                }
            }
        }
        offset = data.next_offset;
    }
    out
}

/// Values only, for compact assertions.
pub fn values(seen: &[Seen]) -> Vec<String> {
    seen.iter()
        .map(|s| String::from_utf8(s.value.clone()).unwrap())
        .collect()
}

/// Like [`read_all`], but returns the first read or decode error instead of panicking, so
/// fault-injection tests can assert on it.
pub fn try_read_all(log: &Log, from: i64) -> Result<Vec<Seen>, String> {
    let mut out = Vec::new();
    let mut offset = from;
    loop {
        let data = log
            .read(offset, 64 * 1024, None)
            .map_err(|e| format!("read at offset {offset}: {e:?}"))?;
        if data.records.is_empty() {
            break;
        }
        for batch in data.batches() {
            let records =
                decode_records(&batch).map_err(|e| format!("decode near offset {offset}: {e}"))?;
            for r in records {
                if r.offset >= offset {
                    out.push(Seen {
                        offset: r.offset,
                        key: r.key.map(|k| k.to_vec()),
                        value: r.value.map(|v| v.to_vec()).unwrap_or_default(),
                        timestamp: r.timestamp,
                    });
                }
            }
        }
        if data.next_offset <= offset {
            return Err(format!(
                "read at offset {offset} returned data but did not advance"
            ));
        }
        offset = data.next_offset;
    }
    Ok(out)
}

/// A tiny seeded PRNG (xorshift64*), so fault tests are reproducible from the seed they
/// print without another dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // Spread small seeds out; xorshift must never hold 0.
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-enough in `lo..hi` (`hi > lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo)
    }

    /// True with probability `1 / n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.next_u64().is_multiple_of(n)
    }
}

/// The base seed of a seeded test: `WEIR_TEST_SEED` if set (to replay a failure, or to
/// explore new seeds), else `default`, so a normal run is deterministic.
pub fn base_seed(default: u64) -> u64 {
    match std::env::var("WEIR_TEST_SEED") {
        Ok(s) => s.parse().expect("WEIR_TEST_SEED is a u64"),
        Err(_) => default,
    }
}

/// `(base offset, path)` of every segment `.log` file in `dir`, in base-offset order.
pub fn segment_files(dir: &Path) -> Vec<(i64, PathBuf)> {
    let mut segs: Vec<(i64, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let path = e.unwrap().path();
            let base = path
                .file_name()?
                .to_str()?
                .strip_suffix(".log")?
                .parse()
                .ok()?;
            Some((base, path))
        })
        .collect();
    segs.sort();
    segs
}

/// Copies the files of `from` into `to` (created if missing), leaving out the lock file: a
/// crash image of a log that is still open, to open beside it.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_name() != ".lock" {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// One batch of a segment file as [`batches_in`] found it.
#[derive(Debug, Clone, Copy)]
pub struct OnDisk {
    pub position: u64,
    pub len: u64,
    pub base: i64,
    pub last: i64,
}

/// The batches a segment file's `bytes` hold back to back, from its start to its end;
/// panics naming the position where what follows is not a whole batch (too short for a
/// header, not magic 2, or longer than the file), such as zeros past the data.
pub fn batches_in(bytes: &[u8]) -> Vec<OnDisk> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        assert!(
            bytes.len() - pos >= weir_log::batch::HEADER_BYTES,
            "{} bytes at {pos} are too few for a batch header",
            bytes.len() - pos
        );
        let h = weir_log::BatchHeader::parse(&bytes[pos..]);
        let len = h.total_bytes();
        assert!(
            h.magic == 2 && pos + len <= bytes.len(),
            "no whole batch at byte {pos}: {h:?}"
        );
        out.push(OnDisk {
            position: pos as u64,
            len: len as u64,
            base: h.base_offset,
            last: h.last_offset(),
        });
        pos += len;
    }
    out
}
