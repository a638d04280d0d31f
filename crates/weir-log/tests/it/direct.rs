//! A log whose active segment is written past the page cache (`LogConfig::direct_writes`,
//! `storage/direct.rs`): the records come back across rolls, a clean reopen and a crash
//! image, and the zeros a direct write leaves after its data never reach a reader.

use crate::common;

use std::time::Duration;

use common::{batches_in, copy_dir, read_all, segment_files, sized_batch};
use weir_log::{
    Compression, FlushPolicy, Log, LogConfig, Record, RecordBatchBuilder, decode_records,
};

fn config(flush: FlushPolicy) -> LogConfig {
    LogConfig {
        segment_bytes: 64 * 1024,
        index_interval_bytes: 1024,
        index_max_bytes: 64 * 1024,
        flush,
        retention_age: None,
        recovery_checkpoint_interval: Duration::ZERO,
        direct_writes: true,
        ..LogConfig::default()
    }
}

/// Appends batches of 1..=7 records of 1..=700 bytes (so batches end anywhere in a block)
/// and waits for each to be durable; returns the record count.
fn fill(log: &Log, batches: usize) -> usize {
    let mut records = 0;
    for i in 0..batches {
        let n = 1 + i % 7;
        let mut b = sized_batch(n, 1 + (i * 97) % 700, i as i64);
        let info = log.append(&mut b, -1).unwrap();
        log.wait_durable(info.last_offset).unwrap();
        records += n;
    }
    records
}

/// The length of `file`'s batches, checked to end exactly at the file's end (no padding).
fn framed_len(file: &std::path::Path) -> u64 {
    let bytes = std::fs::read(file).unwrap();
    let end = batches_in(&bytes).last().map_or(0, |b| b.position + b.len);
    assert_eq!(
        end,
        bytes.len() as u64,
        "{}: batches end at the file's end",
        file.display()
    );
    end
}

fn lengths(log: &Log, from: i64) -> Vec<(i64, usize)> {
    read_all(log, from)
        .iter()
        .map(|s| (s.offset, s.value.len()))
        .collect()
}

#[test]
fn direct_writes_come_back_across_rolls_a_reopen_and_a_crash() {
    for flush in [FlushPolicy::GroupCommit, FlushPolicy::EveryAppend] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let log = Log::open(&path, config(flush)).unwrap();
        let records = fill(&log, 300);
        let written = lengths(&log, 0);
        assert_eq!(written.len(), records, "{flush:?}");
        let segments = segment_files(&path);
        assert!(
            segments.len() > 3,
            "{flush:?}: segments roll: {}",
            segments.len()
        );
        // A rolled segment's file holds its batches and no padding.
        for (_, closed) in &segments[..segments.len() - 1] {
            framed_len(closed);
        }

        // The active segment's file ends in its last write's padding; a copy of the
        // directory now is what a crash would leave.
        let (_, active) = segments.last().unwrap();
        let active_len = std::fs::metadata(active).unwrap().len();
        assert_eq!(
            active_len % 4096,
            0,
            "{flush:?}: the active file ends at a block"
        );
        let crash = tempfile::tempdir().unwrap();
        copy_dir(&path, crash.path());
        let recovered = Log::open(crash.path(), config(flush)).unwrap();
        assert_eq!(lengths(&recovered, 0), written, "{flush:?}: after a crash");
        // Appends go on after the padding was cut, with nothing between.
        let more = fill(&recovered, 20);
        let after = lengths(&recovered, 0);
        assert_eq!(after.len(), records + more, "{flush:?}");
        assert!(after.iter().enumerate().all(|(i, (o, _))| *o == i as i64));
        recovered.close().unwrap();

        // A clean close cuts the active file's padding too, so a reopen finds the log at
        // its recovery point and leaves it parked (no scan, no open file).
        log.close().unwrap();
        framed_len(active);
        let reopened = Log::open(&path, config(flush)).unwrap();
        assert!(reopened.is_parked(), "{flush:?}: opened at its end");
        assert_eq!(lengths(&reopened, 0), written, "{flush:?}: after a reopen");
        fill(&reopened, 5);
        assert_eq!(lengths(&reopened, 0).len(), records + 15, "{flush:?}");
    }
}

/// A crash between a roll and the sync of the rolled segment's new size can leave a
/// closed segment with its last write's padding; recovery reads it as the segment's end,
/// not as a torn batch (which would drop every later segment with it).
#[test]
fn a_closed_segment_left_padded_by_a_crash_keeps_the_segments_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let log = Log::open(&path, config(FlushPolicy::GroupCommit)).unwrap();
    let records = fill(&log, 300);
    let written = lengths(&log, 0);
    log.close().unwrap();
    let segments = segment_files(&path);
    assert!(segments.len() > 3);
    // The second segment padded as its last direct write left it, and no recovery point,
    // so that recovery scans every segment.
    let padded = &segments[1].1;
    let len = framed_len(padded);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(padded)
        .unwrap();
    file.set_len(len.next_multiple_of(4096)).unwrap();
    std::fs::remove_file(path.join("recovery-point.checkpoint")).unwrap();

    let log = Log::open(&path, config(FlushPolicy::GroupCommit)).unwrap();
    assert_eq!(lengths(&log, 0).len(), records);
    assert_eq!(lengths(&log, 0), written);
    assert_eq!(framed_len(padded), len, "the padding is cut");
    assert_eq!(segment_files(&path).len(), segments.len());
}

/// A batch of 16 records of 1 KiB, each value naming its batch and place.
fn numbered_batch(batch: usize) -> bytes::BytesMut {
    let mut b = RecordBatchBuilder::new(Compression::None);
    for r in 0..16 {
        let mut value = format!("batch {batch} record {r} ").into_bytes();
        value.resize(1024, b'.');
        b.push(&Record {
            key: None,
            value: Some(value.into()),
            headers: Vec::new(),
            timestamp: batch as i64,
        });
    }
    b.build().expect("valid batch")
}

/// A direct-written log is read into memory, never sent from the page cache (which holds
/// nothing of it): the newest batches from the file's window, older ones, which the window
/// no longer holds, read past the page cache; both are what was written, across a roll.
#[test]
fn a_direct_written_log_is_read_into_memory_from_its_window_and_past_the_page_cache() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 64 << 20,
        ..config(FlushPolicy::GroupCommit)
    };
    let log = Log::open(dir.path(), config).unwrap();
    // 8 MiB: twice a window.
    let batches = 512;
    for i in 0..batches {
        if i == batches / 4 {
            log.roll().unwrap();
        }
        let info = log.append(&mut numbered_batch(i), -1).unwrap();
        log.wait_durable(info.last_offset).unwrap();
    }
    let end = log.offsets().log_end_offset;
    assert_eq!(end, 16 * batches as i64);

    // From the start (past the page cache), after the roll, and the tail (the window).
    for (from, batches) in [(0, 15), (16 * 200, 15), (end - 64, 4)] {
        let read = log.read_in_file(from, 256 * 1024, None).unwrap();
        assert!(read.in_file.is_none(), "offset {from}: read into memory");
        assert_eq!(read.batches().count(), batches, "offset {from}");
        assert_eq!(
            read.next_offset,
            from + 16 * batches as i64,
            "offset {from}"
        );
        let first = decode_records(&read.batches().next().unwrap()).unwrap();
        let value = String::from_utf8_lossy(&first[0].value.clone().unwrap()).into_owned();
        let expected = format!("batch {} record 0 ", from / 16);
        assert!(value.starts_with(&expected), "offset {from}: {value:.24}");
    }

    // Read from the start, through the file and then the window: every record, in order.
    let all = read_all(&log, 0);
    assert_eq!(all.len(), 16 * batches);
    for (i, seen) in all.iter().enumerate() {
        assert_eq!(seen.offset, i as i64);
        let expected = format!("batch {} record {} ", i / 16, i % 16);
        assert!(seen.value.starts_with(expected.as_bytes()), "offset {i}");
    }
}
