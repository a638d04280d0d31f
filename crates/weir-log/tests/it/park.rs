//! Parking (`Log::park_if_idle`): an idle log closes its files and holds no descriptor
//! and no memory mapping; it serves appends and reads as before once used again, loses
//! nothing a crash could take after it was parked, and a new or cleanly reopened log
//! opens no segment file until it is used.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::common::{self, read_all, segment_files, values};
use weir_log::storage::{FaultPlan, FaultyStorage, FileStorage};
use weir_log::{FlushPolicy, Log, LogConfig};

fn config(flush: FlushPolicy) -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        index_interval_bytes: 128,
        index_max_bytes: 4096,
        flush,
        ..LogConfig::default()
    }
}

/// Descriptors and memory mappings of this process that point into `dir`, but for the
/// log's directory lock.
fn files_held_in(dir: &Path) -> (usize, usize) {
    let dir = dir.to_str().unwrap();
    let fds = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_str().is_some_and(|t| t.starts_with(dir)))
        .filter(|target| !target.ends_with(weir_log::storage::LOCK_FILE))
        .count();
    let maps = std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|line| line.contains(dir))
        .count();
    (fds, maps)
}

fn append(log: &Log, tag: &str, n: usize, ts: i64) {
    log.append(&mut common::batch(tag, n, ts), 0).unwrap();
}

#[test]
fn a_parked_log_holds_no_file_and_serves_appends_and_reads_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config(FlushPolicy::GroupCommit)).unwrap();
    let mut expected = Vec::new();
    for i in 0..60 {
        append(&log, &format!("a{i}"), 3, 1_000 + i);
        expected.extend((0..3).map(|j| format!("a{i}-{j}")));
    }
    assert!(
        log.segment_count() > 2,
        "the test wants closed segments too"
    );
    // Reads open closed segments; the active one is open for appends.
    assert_eq!(values(&read_all(&log, 0)), expected);
    let (fds, maps) = files_held_in(dir.path());
    assert!(
        fds >= log.segment_count() && maps > 0,
        "{fds} descriptors, {maps} maps"
    );

    assert!(
        !log.park_if_idle(Duration::from_secs(3600)).unwrap(),
        "a log used just now is not idle"
    );
    assert!(log.park_if_idle(Duration::ZERO).unwrap());
    assert!(log.is_parked());
    assert_eq!(
        files_held_in(dir.path()),
        (0, 0),
        "a parked log holds no file"
    );
    assert!(
        !log.park_if_idle(Duration::ZERO).unwrap(),
        "nothing left to close"
    );

    // Reads, a timestamp lookup and appends work as before; offsets go on.
    assert_eq!(values(&read_all(&log, 0)), expected);
    assert_eq!(log.offset_for_timestamp(1_020).unwrap(), Some(60));
    assert!(log.park_if_idle(Duration::ZERO).unwrap());
    append(&log, "b", 4, 2_000);
    expected.extend((0..4).map(|j| format!("b-{j}")));
    assert_eq!(log.offsets().log_end_offset, 184);
    assert_eq!(values(&read_all(&log, 0)), expected);

    // Parked, closed and opened again: the log starts parked and holds everything.
    assert!(log.park_if_idle(Duration::ZERO).unwrap());
    log.close().unwrap();
    let log = Log::open(dir.path(), config(FlushPolicy::GroupCommit)).unwrap();
    assert!(log.is_parked(), "a cleanly closed log opens parked");
    assert_eq!(files_held_in(dir.path()), (0, 0));
    assert_eq!(log.offsets().log_end_offset, 184);
    assert_eq!(values(&read_all(&log, 0)), expected);
}

/// Parking makes everything durable first: a crash right after a parked log took
/// unsynced appends (every unsynced byte lost) loses none of them. Without the park the
/// same crash loses them, which is what makes this test able to fail.
#[test]
fn a_crash_after_parking_loses_nothing_the_log_held() {
    for park in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let storage = FaultyStorage::new(FaultPlan::default());
        let config = config(FlushPolicy::None);
        let log =
            Log::open_with_storage(dir.path(), config.clone(), Arc::new(storage.clone())).unwrap();
        for i in 0..12 {
            append(&log, &format!("c{i}"), 2, i);
        }
        if park {
            assert!(log.park_if_idle(Duration::ZERO).unwrap());
        }
        storage.crash(|_, _| 0).unwrap();
        drop(log);
        let log = Log::open_with_storage(dir.path(), config, Arc::new(FileStorage)).unwrap();
        let kept = read_all(&log, 0).len();
        if park {
            assert_eq!(kept, 24, "parked: every record survives the crash");
        } else {
            assert!(
                kept < 24,
                "unparked and unsynced: the crash takes records ({kept} kept)"
            );
        }
    }
}

/// A new log creates no file until something is appended, so a broker's new partitions
/// cost no descriptor; the first append creates them, and a crash before any append
/// leaves a log that works as new.
#[test]
fn a_new_log_creates_its_segment_at_the_first_append() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config(FlushPolicy::GroupCommit)).unwrap();
    assert!(log.is_parked());
    assert!(segment_files(dir.path()).is_empty());
    assert_eq!(files_held_in(dir.path()), (0, 0));
    assert_eq!(read_all(&log, 0).len(), 0, "an empty log reads as empty");
    assert!(
        segment_files(dir.path()).is_empty(),
        "a read at the end creates nothing"
    );
    append(&log, "n", 2, 1);
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert!(!log.is_parked());
    assert_eq!(values(&read_all(&log, 0)), ["n-0", "n-1"]);
}

/// A parked segment whose index no longer matches its recovery point (damaged while the
/// log was parked) is opened with its indexes rebuilt: reads find every record.
#[test]
fn a_parked_segment_with_a_damaged_index_is_opened_with_a_rebuilt_one() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config(FlushPolicy::GroupCommit)).unwrap();
    let mut expected = Vec::new();
    for i in 0..5 {
        append(&log, &format!("d{i}"), 2, i);
        expected.extend((0..2).map(|j| format!("d{i}-{j}")));
    }
    assert_eq!(log.segment_count(), 1);
    assert!(log.park_if_idle(Duration::ZERO).unwrap());
    let index = dir.path().join(format!("{:020}.index", 0));
    std::fs::write(&index, [0xffu8; 64]).unwrap();
    assert_eq!(values(&read_all(&log, 0)), expected);
    assert_eq!(values(&read_all(&log, 7)), expected[7..]);
    append(&log, "e", 1, 9);
    expected.push("e-0".into());
    assert_eq!(values(&read_all(&log, 0)), expected);
}
