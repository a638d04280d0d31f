//! Decompression bombs against the produce check, `validate_untrusted`: small zstd
//! batches that expand to hundreds of MiB or a GiB are refused at the limit
//! `decompressed_limit` derives from `max.message.bytes`, and the check never holds the
//! expanded records: this module installs the binary's allocator, which counts the heap
//! allocations a thread makes through Rust's allocator while it measures, and the peak
//! during a check stays a small fraction of the limit. (zstd's own C buffers are outside
//! that count; its window is capped at 128 MiB by the decoder settings and, for these
//! frames, is the 1 MiB each frame declares.)
//!
//! The count is the measuring thread's own, so the other tests of this binary, running
//! beside it, do not add to it; the check runs on the caller's thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::Bytes;
use weir_batch::{
    BatchError, Compression, HEADER_BYTES, Record, RecordBatchBuilder, decompressed_limit, reseal,
    validate, validate_untrusted,
};

/// The system allocator, counting the bytes live and the most live at once on a thread
/// inside [`peak_during`].
struct Counting;

thread_local! {
    // Const-initialised and without destructors: reading them never allocates, so the
    // allocator may.
    static MEASURING: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

/// Adds `delta` bytes to this thread's live count if it is measuring.
fn count(delta: isize) {
    let _ = MEASURING.try_with(|measuring| {
        if measuring.get() {
            let live = LIVE.with(|live| {
                live.set(live.get() + delta);
                live.get()
            });
            PEAK.with(|peak| peak.set(peak.get().max(live)));
        }
    });
}

// SAFETY: every call is passed straight to `System`, which upholds `GlobalAlloc`'s
// contract; the counters do not touch the memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's guarantees for `layout` are `System.alloc`'s.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            count(layout.size() as isize);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above with this `layout`.
        unsafe { System.dealloc(ptr, layout) };
        count(-(layout.size() as isize));
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The most bytes this thread held at once while `f` ran, above what it held before.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LIVE.with(|live| live.set(0));
    PEAK.with(|peak| peak.set(0));
    MEASURING.with(|measuring| measuring.set(true));
    let result = f();
    MEASURING.with(|measuring| measuring.set(false));
    (result, PEAK.with(Cell::get).max(0) as usize)
}

/// Kafka's zigzag varint.
fn put_varint(out: &mut Vec<u8>, value: i32) {
    let mut u = ((value << 1) ^ (value >> 31)) as u32;
    while u >= 0x80 {
        out.push((u as u8) | 0x80);
        u >>= 7;
    }
    out.push(u as u8);
}

const MIB: usize = 1 << 20;

/// One zstd frame of 1 MiB of zeros: a few dozen bytes. Frames concatenate, so `n` of
/// them are `n` MiB of zeros to the decoder.
fn zeros_frame() -> Vec<u8> {
    let mut frame = Vec::new();
    Compression::Zstd
        .compress(&vec![0; MIB], &mut frame)
        .expect("compress");
    frame
}

/// The start of a record whose value is `value_len` bytes (the value and the header
/// count, 0, are to follow), at `offset_delta`.
fn record_prefix(offset_delta: i32, value_len: usize) -> Vec<u8> {
    let mut fields = vec![0u8, 0]; // attributes, timestamp delta
    put_varint(&mut fields, offset_delta);
    put_varint(&mut fields, -1); // null key
    put_varint(&mut fields, value_len as i32);
    let body_len = fields.len() + value_len + 1;
    let mut prefix = Vec::new();
    put_varint(&mut prefix, body_len as i32);
    prefix.extend_from_slice(&fields);
    prefix
}

/// A zstd batch of `records` records around a zstd `section` (several frames), its CRC
/// set: built with one record, then its records section replaced.
fn zstd_batch(section: &[u8], records: i32) -> Bytes {
    let mut builder = RecordBatchBuilder::new(Compression::Zstd);
    for i in 0..records {
        builder.push(&Record {
            timestamp: i64::from(i),
            ..Record::default()
        });
    }
    let mut batch = builder.build().expect("build").to_vec();
    batch.truncate(HEADER_BYTES);
    batch.extend_from_slice(section);
    reseal(&mut batch, records);
    Bytes::from(batch)
}

fn compressed(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    Compression::Zstd
        .compress(bytes, &mut out)
        .expect("compress");
    out
}

#[test]
fn decompression_bombs_are_refused_at_the_limit_without_holding_what_they_expand_to() {
    // The default max.message.bytes (1 MiB + 12 KiB): a 64 MiB limit.
    let max_message_bytes = MIB + 12 * 1024;
    let limit = decompressed_limit(max_message_bytes);
    assert_eq!(limit, 64 * max_message_bytes);
    let zeros = zeros_frame();

    // 1. One record that states 1 GiB, and is: refused from its length.
    let mut section = compressed(&record_prefix(0, 1 << 30));
    for _ in 0..1024 {
        section.extend_from_slice(&zeros);
    }
    section.extend_from_slice(&compressed(&[0]));
    let bomb = zstd_batch(&section, 1);
    assert!(bomb.len() < max_message_bytes / 10, "{} bytes", bomb.len());
    validate(&bomb).expect("intact up to its CRC");
    let (result, peak) = peak_during(|| validate_untrusted(&bomb, limit));
    assert!(
        matches!(result, Err(BatchError::DecompressedTooLarge { max }) if max == limit),
        "{result:?}"
    );
    assert!(peak < MIB, "held {peak} bytes");

    // 2. 200 records of 1 MiB each, every one well formed: 200 MiB, refused once 64 MiB
    // came out, holding about one record at a time.
    let mut section = Vec::new();
    for i in 0..200 {
        section.extend_from_slice(&compressed(&record_prefix(i, MIB)));
        section.extend_from_slice(&zeros);
        section.extend_from_slice(&compressed(&[0]));
    }
    let bomb = zstd_batch(&section, 200);
    assert!(bomb.len() < max_message_bytes, "{} bytes", bomb.len());
    let (result, peak) = peak_during(|| validate_untrusted(&bomb, limit));
    assert!(
        matches!(result, Err(BatchError::DecompressedTooLarge { max }) if max == limit),
        "{result:?}"
    );
    assert!(peak < 4 * MIB, "held {peak} bytes of a {limit}-byte limit");

    // 3. The same shape under the limit (40 records) is accepted, as cheaply.
    let mut section = Vec::new();
    for i in 0..40 {
        section.extend_from_slice(&compressed(&record_prefix(i, MIB)));
        section.extend_from_slice(&zeros);
        section.extend_from_slice(&compressed(&[0]));
    }
    let big = zstd_batch(&section, 40);
    let (result, peak) = peak_during(|| validate_untrusted(&big, limit));
    let header = result.expect("40 MiB of records is within the limit");
    assert_eq!(header.record_count, 40);
    assert!(peak < 4 * MIB, "held {peak} bytes");
}
