//! Behaviour of a `Log` as its users see it: what goes in comes back, in order, across
//! segments, reopens, truncation, retention and bad input.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::{batch, batch_with, read_all, sized_batch, values};
use weir_log::{AppendError, Compression, FlushPolicy, Log, LogConfig, ReadError};

fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        index_max_bytes: 4096,
        flush: FlushPolicy::None,
        retention_age: None,
        ..LogConfig::default()
    }
}

/// Appends `batches` batches of `per` records tagged `b{i}`; returns all values in order.
fn fill(log: &Log, batches: usize, per: usize, ts: impl Fn(usize) -> i64) -> Vec<String> {
    let mut expected = Vec::new();
    for i in 0..batches {
        let mut b = batch(&format!("b{i}"), per, ts(i));
        log.append(&mut b, -1).unwrap();
        expected.extend((0..per).map(|j| format!("b{i}-{j}")));
    }
    expected
}

#[test]
fn records_come_back_in_order_across_segments_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    let expected = fill(&log, 200, 5, |i| 1000 + i as i64);
    assert!(
        log.segment_count() > 5,
        "small segments roll: {}",
        log.segment_count()
    );
    let seen = read_all(&log, 0);
    assert_eq!(values(&seen), expected);
    assert!(
        seen.iter().enumerate().all(|(i, s)| s.offset == i as i64),
        "offsets are dense"
    );
    assert_eq!(log.offsets().log_end_offset, 1000);
    log.close().unwrap();

    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.offsets().log_end_offset, 1000);
    let mut more = batch("after", 3, 5000);
    let info = log.append(&mut more, -1).unwrap();
    assert_eq!((info.base_offset, info.last_offset), (1000, 1002));
    let seen = read_all(&log, 0);
    assert_eq!(seen.len(), 1003);
    assert_eq!(values(&seen[1000..]), ["after-0", "after-1", "after-2"]);
}

#[test]
fn reading_inside_a_batch_returns_that_batch_and_respects_limits() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    fill(&log, 10, 4, |_| 1);
    // Offset 6 is inside the second batch (offsets 4..=7).
    let data = log.read(6, 1, None).unwrap();
    let batches: Vec<_> = data.batches().collect();
    assert_eq!(batches.len(), 1, "at least one batch even over max_bytes");
    assert_eq!(data.next_offset, 8);
    // The upper bound hides batches that reach it.
    let data = log.read(0, 1 << 20, Some(10)).unwrap();
    assert_eq!(
        data.next_offset, 8,
        "batch 8..=11 reaches the bound 10 and is hidden"
    );
    let data = log.read(8, 1 << 20, Some(10)).unwrap();
    assert!(data.records.is_empty());
    // At the log end: empty, not an error. Past it or below the start: out of range.
    assert!(log.read(40, 100, None).unwrap().records.is_empty());
    match log.read(41, 100, None) {
        Err(ReadError::OffsetOutOfRange {
            log_start_offset: 0,
            log_end_offset: 40,
            ..
        }) => {}
        other => panic!("expected out of range, got {other:?}"),
    }
}

#[test]
fn a_bad_batch_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    fill(&log, 1, 3, |_| 1);
    let size = log.size_bytes();

    // Good batch followed by one with a flipped bit: the whole request is refused.
    let mut good = batch("good", 2, 1);
    let mut bad = batch("bad", 2, 1);
    let last = bad.len() - 1;
    bad[last] ^= 0x01;
    let mut both = good.clone();
    both.extend_from_slice(&bad);
    match log.append(&mut both, -1) {
        Err(AppendError::InvalidBatch {
            index: 1, source, ..
        }) => {
            assert!(source.to_string().contains("CRC"), "{source}");
        }
        other => panic!("expected invalid batch, got {other:?}"),
    }
    // Truncated bytes and over-size batches are refused too.
    let mut short = good[..good.len() - 5].to_vec();
    assert!(matches!(
        log.append(&mut short, -1),
        Err(AppendError::InvalidBatch { .. })
    ));
    assert!(matches!(log.append(&mut [], -1), Err(AppendError::Empty)));
    let mut huge = sized_batch(1, 2 << 20, 1);
    assert!(matches!(
        log.append(&mut huge, -1),
        Err(AppendError::MessageTooLarge { .. })
    ));

    assert_eq!(log.size_bytes(), size);
    assert_eq!(log.offsets().log_end_offset, 3);
    log.append(&mut good, -1).unwrap();
    assert_eq!(
        values(&read_all(&log, 0)),
        ["b0-0", "b0-1", "b0-2", "good-0", "good-1"]
    );
}

#[test]
fn compressed_batches_round_trip_through_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    let mut expected = Vec::new();
    for (i, c) in Compression::ALL.into_iter().enumerate() {
        let mut b = batch_with(&format!("c{i}"), 20, 7, c);
        log.append(&mut b, -1).unwrap();
        expected.extend((0..20).map(|j| format!("c{i}-{j}")));
    }
    assert_eq!(values(&read_all(&log, 0)), expected);
}

#[test]
fn offset_for_timestamp_finds_the_first_record_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    // Batch i has timestamp 1000 + 10 i and holds offsets 5i..5i+4.
    fill(&log, 100, 5, |i| 1000 + 10 * i as i64);
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some(0));
    assert_eq!(log.offset_for_timestamp(1000).unwrap(), Some(0));
    assert_eq!(log.offset_for_timestamp(1001).unwrap(), Some(5));
    assert_eq!(log.offset_for_timestamp(1500).unwrap(), Some(250));
    assert_eq!(log.offset_for_timestamp(1990).unwrap(), Some(495));
    assert_eq!(log.offset_for_timestamp(1991).unwrap(), None);
    log.close().unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(
        log.offset_for_timestamp(1500).unwrap(),
        Some(250),
        "after reopen"
    );
}

/// Kafka's ListOffsets MAX_TIMESTAMP: the newest timestamp wherever it is, and the first
/// record that has it, before and after a reopen (closed segments' from their indexes).
#[test]
fn max_timestamp_and_the_first_record_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.max_timestamp().unwrap(), None, "an empty log");
    // Batch i holds offsets 5i..5i+4; batches 37 and 60 have the newest timestamp, in an
    // early segment, and the last batch an older one.
    fill(&log, 100, 5, |i| match i {
        37 | 60 => 9000,
        i => 1000 + i as i64,
    });
    assert!(log.segment_count() > 3, "batches over several segments");
    let newest = log.max_timestamp().unwrap();
    assert_eq!(newest, Some(9000));
    assert_eq!(log.offset_for_timestamp(9000).unwrap(), Some(185));
    log.close().unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.max_timestamp().unwrap(), Some(9000), "after reopen");
    assert_eq!(log.offset_for_timestamp(9000).unwrap(), Some(185));
}

#[test]
fn truncate_removes_the_tail_across_segments_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    fill(&log, 100, 5, |i| i as i64);
    let segments = log.segment_count();
    // Offset 203 is inside batch 200..=204: the whole batch goes.
    log.truncate_to(203).unwrap();
    assert_eq!(log.offsets().log_end_offset, 200);
    assert!(log.segment_count() < segments);
    let mut b = batch("new", 5, 7);
    assert_eq!(log.append(&mut b, -1).unwrap().base_offset, 200);
    let seen = read_all(&log, 0);
    assert_eq!(seen.len(), 205);
    assert_eq!(values(&seen[199..201]), ["b39-4", "new-0"]);
    assert_eq!(log.offset_for_timestamp(39).unwrap(), Some(195));
    assert_eq!(
        log.offset_for_timestamp(40).unwrap(),
        None,
        "truncated timestamps are gone"
    );
    log.close().unwrap();

    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(read_all(&log, 0).len(), 205);
    // Truncating to 0 empties the log.
    log.truncate_to(0).unwrap();
    assert_eq!(log.offsets().log_end_offset, 0);
    assert!(read_all(&log, 0).is_empty());
    let mut b = batch("fresh", 2, 1);
    assert_eq!(log.append(&mut b, -1).unwrap().base_offset, 0);
}

#[test]
fn delete_records_and_retention_move_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_bytes: Some(16 * 1024),
        ..small_config()
    };
    let log = Log::open(dir.path(), config.clone()).unwrap();
    fill(&log, 300, 5, |i| i as i64);
    let before = log.size_bytes();

    let start = log.delete_records_before(100).unwrap();
    assert_eq!(start, 100);
    assert!(matches!(
        log.read(99, 100, None),
        Err(ReadError::OffsetOutOfRange { .. })
    ));
    assert_eq!(read_all(&log, 100).first().map(|s| s.offset), Some(100));

    let outcome = log.apply_retention(0).unwrap();
    assert!(outcome.segments_deleted > 0);
    let after = log.size_bytes();
    assert!(after < before && after >= 16 * 1024 - 4096, "size {after}");
    let first = outcome.log_start_offset;
    assert_eq!(log.offsets().log_start_offset, first);
    let seen = read_all(&log, first);
    assert_eq!(seen.first().map(|s| s.offset), Some(first));
    assert_eq!(seen.last().map(|s| s.offset), Some(1499));
    log.close().unwrap();

    // The log start survives a reopen.
    let log = Log::open(dir.path(), config).unwrap();
    assert_eq!(log.offsets().log_start_offset, first);
}

#[test]
fn retention_by_age_keeps_the_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_age: Some(Duration::from_millis(1000)),
        ..small_config()
    };
    let log = Log::open(dir.path(), config).unwrap();
    fill(&log, 100, 5, |i| 10 * i as i64);
    // Everything is older than now - 1000 ms: every closed segment goes, the active stays.
    let outcome = log.apply_retention(1_000_000).unwrap();
    assert!(outcome.segments_deleted > 0);
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.offsets().log_end_offset, 500);
    // Nothing is old enough at "now" = 1000: nothing goes.
    let mut b = batch("x", 1, 2000);
    log.append(&mut b, -1).unwrap();
    assert_eq!(log.apply_retention(1000).unwrap().segments_deleted, 0);
}

#[test]
fn leader_epochs_are_recorded_persisted_and_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    for (epoch, n) in [(1, 3), (1, 2), (3, 4), (5, 1)] {
        let mut b = batch("e", n, 1);
        log.append(&mut b, epoch).unwrap();
    }
    assert_eq!(log.end_offset_for_epoch(1), Some((1, 5)));
    assert_eq!(log.end_offset_for_epoch(2), Some((1, 5)));
    assert_eq!(log.end_offset_for_epoch(3), Some((3, 9)));
    assert_eq!(log.end_offset_for_epoch(5), Some((5, 10)));
    let mut stale = batch("stale", 1, 1);
    assert!(matches!(
        log.append(&mut stale, 4),
        Err(AppendError::StaleLeaderEpoch {
            epoch: 4,
            latest: 5
        })
    ));
    log.checkpoint_high_watermark(7).unwrap();
    log.close().unwrap();

    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.end_offset_for_epoch(3), Some((3, 9)));
    assert_eq!(log.high_watermark_checkpoint(), Some(7));
    // Offset 6 is inside epoch 3's batch 5..=8, which goes whole; epoch 3 goes with it.
    log.truncate_to(6).unwrap();
    assert_eq!(log.offsets().log_end_offset, 5);
    assert_eq!(log.end_offset_for_epoch(3), Some((1, 5)));
    assert_eq!(log.end_offset_for_epoch(5), Some((1, 5)));
    // The stamped epoch is visible in the batch header.
    let data = log.read(0, 1 << 20, None).unwrap();
    let epochs: Vec<i32> = data
        .batches()
        .map(|b| weir_log::BatchHeader::parse(&b).partition_leader_epoch)
        .collect();
    assert_eq!(epochs, [1, 1]);
}

#[test]
fn a_follower_copies_batches_with_their_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let leader = Log::open(dir.path().join("leader"), small_config()).unwrap();
    let follower = Log::open(dir.path().join("follower"), small_config()).unwrap();
    fill(&leader, 20, 3, |i| i as i64);
    let mut offset = 0;
    while offset < leader.offsets().log_end_offset {
        let data = leader.read(offset, 1000, None).unwrap();
        follower.append_replicated(&data.records).unwrap();
        offset = data.next_offset;
    }
    assert_eq!(read_all(&follower, 0), read_all(&leader, 0));
    // A batch that does not start at the follower's end is refused.
    let data = leader.read(3, 1000, None).unwrap();
    assert!(matches!(
        follower.append_replicated(&data.records),
        Err(AppendError::OffsetMismatch { .. })
    ));
}

#[test]
fn group_commit_makes_every_waiter_durable_with_few_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        flush: FlushPolicy::GroupCommit,
        ..small_config()
    };
    let log = Arc::new(Log::open(dir.path(), config).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for i in 0..50 {
                    let mut b = batch(&format!("t{t}-{i}"), 2, 1);
                    let info = log.append(&mut b, -1).unwrap();
                    log.wait_durable(info.last_offset).unwrap();
                    assert!(log.offsets().flushed_offset > info.last_offset);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let offsets = log.offsets();
    assert_eq!(offsets.log_end_offset, 400);
    assert_eq!(offsets.flushed_offset, 400);
    assert_eq!(read_all(&log, 0).len(), 400);
}

#[test]
fn every_append_policy_is_durable_on_return() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        flush: FlushPolicy::EveryAppend,
        ..small_config()
    };
    let log = Log::open(dir.path(), config).unwrap();
    let mut b = batch("a", 3, 1);
    log.append(&mut b, -1).unwrap();
    assert_eq!(log.offsets().flushed_offset, 3);
}

/// Flips a bit in the middle of the first segment's data (of a closed log); returns the
/// segment's path and the byte position.
fn flip_a_bit_mid_first_segment(dir: &std::path::Path) -> (std::path::PathBuf, usize) {
    let first = dir.join(format!("{:020}.log", 0));
    let mut bytes = std::fs::read(&first).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&first, &bytes).unwrap();
    (first, at)
}

#[test]
fn a_flipped_bit_in_a_closed_segment_is_reported_with_file_and_position() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    let expected = fill(&log, 100, 5, |i| i as i64);
    log.close().unwrap();

    let (first, at) = flip_a_bit_mid_first_segment(dir.path());

    let log = Log::open(dir.path(), small_config()).unwrap();
    let mut failed = None;
    let mut offset = 0;
    while offset < 500 {
        match log.read(offset, 1, None) {
            Ok(d) => offset = d.next_offset,
            Err(e) => {
                failed = Some((offset, e));
                break;
            }
        }
    }
    let (bad_offset, err) = failed.expect("the flipped bit is found");
    match &err {
        ReadError::Corrupt { path, position, .. } => {
            assert_eq!(path, &first);
            assert!(
                *position <= at as u64 && at as u64 - *position < 4096,
                "position {position} near {at}"
            );
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    assert!(
        err.to_string().contains("00000000000000000000.log"),
        "{err}"
    );
    // Every other segment still reads in full.
    assert!(bad_offset < 400, "corruption is in the first segment");
    let later = read_all(&log, 400);
    assert_eq!(values(&later), expected[400..]);
}

#[test]
fn a_torn_tail_is_cut_on_open_and_missing_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    let expected = fill(&log, 100, 5, |i| 1000 + i as i64);
    let bases: Vec<i64> = {
        let mut b: Vec<i64> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| {
                e.unwrap()
                    .file_name()
                    .to_str()?
                    .strip_suffix(".log")?
                    .parse()
                    .ok()
            })
            .collect();
        b.sort();
        b
    };
    drop(log);
    // Half a batch at the end of the active segment, as a crash mid-write leaves it.
    let active = dir
        .path()
        .join(format!("{:020}.log", bases.last().unwrap()));
    let torn = batch("torn", 5, 1);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&active)
        .unwrap();
    std::io::Write::write_all(&mut f, &torn[..torn.len() / 2]).unwrap();
    drop(f);
    // And a closed segment's index is lost.
    std::fs::remove_file(dir.path().join(format!("{:020}.index", bases[1]))).unwrap();

    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.offsets().log_end_offset, 500);
    assert_eq!(values(&read_all(&log, 0)), expected);
    assert_eq!(log.offset_for_timestamp(1050).unwrap(), Some(250));
    let mut b = batch("next", 1, 1);
    assert_eq!(log.append(&mut b, -1).unwrap().base_offset, 500);
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _log = Log::open(dir.path(), small_config()).unwrap();
    let err = Log::open(dir.path(), small_config()).unwrap_err();
    assert!(err.to_string().contains("in use"), "{err}");
}

#[test]
fn batches_validated_ahead_append_with_their_offsets_and_the_logs_own_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        max_message_bytes: 4096,
        ..small_config()
    };
    let log = Log::open(dir.path(), config).unwrap();
    let mut request = batch("v", 3, 1);
    request.extend_from_slice(&batch("w", 2, 1));
    let mut validated = weir_log::ValidatedBatches::new(request, 1 << 20).unwrap();
    let info = log.append_validated(&mut validated, 2).unwrap();
    assert_eq!(
        (info.base_offset, info.last_offset, info.batches),
        (0, 4, 2)
    );
    let bases: Vec<i64> = validated.headers().iter().map(|h| h.base_offset).collect();
    assert_eq!(bases, [0, 3], "headers carry the assigned offsets");
    assert_eq!(
        values(&read_all(&log, 0)),
        ["v-0", "v-1", "v-2", "w-0", "w-1"]
    );

    // Validated against a larger limit than this log's: the log still refuses it.
    let big = sized_batch(1, 8192, 1);
    let mut validated = weir_log::ValidatedBatches::new(big, 1 << 20).unwrap();
    assert!(matches!(
        log.append_validated(&mut validated, 2),
        Err(AppendError::MessageTooLarge { max: 4096, .. })
    ));
    // And bad bytes never become ValidatedBatches.
    let mut bad = batch("x", 1, 1);
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(matches!(
        weir_log::ValidatedBatches::new(bad, 1 << 20),
        Err(AppendError::InvalidBatch { index: 0, .. })
    ));
    assert_eq!(log.offsets().log_end_offset, 5);
}

/// `bytes` (one batch) with bytes in the middle of its records section inverted and its
/// CRC recomputed over the damage.
fn damaged(mut bytes: bytes::BytesMut) -> bytes::BytesMut {
    let header = weir_log::batch::HEADER_BYTES;
    let middle = header + (bytes.len() - header) / 2;
    for byte in &mut bytes[middle..middle + 8] {
        *byte = !*byte;
    }
    let count = weir_log::BatchHeader::parse(&bytes).record_count;
    weir_log::batch::reseal(&mut bytes, count);
    bytes
}

#[test]
fn a_producers_damaged_compressed_batch_is_refused_with_its_whole_request() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    for codec in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let bad = damaged(batch_with("bad", 50, 1, codec));
        weir_log::batch::validate(&bad).expect("intact up to its CRC");
        let mut request = batch_with("good", 2, 1, codec);
        request.extend_from_slice(&bad);
        match log.append(&mut request, -1) {
            Err(AppendError::InvalidBatch { index: 1, .. }) => {}
            other => panic!("{codec}: expected batch 1 refused, got {other:?}"),
        }
        assert!(matches!(
            weir_log::ValidatedBatches::new(request, 1 << 20),
            Err(AppendError::InvalidBatch { index: 1, .. })
        ));
    }
    assert_eq!(log.offsets().log_end_offset, 0, "nothing was appended");
}

#[test]
fn a_follower_takes_a_compressed_batch_its_leader_sent_without_decompressing_it() {
    // The leader checked it when the producer sent it; a follower that refused what its
    // leader holds would stop replicating for good (the read side reports such a batch).
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    let mut stored = damaged(batch_with("bad", 50, 1, Compression::Zstd));
    weir_log::batch::patch_offset_and_epoch(&mut stored, 0, 0);
    let info = log.append_replicated(&stored).unwrap();
    assert_eq!((info.base_offset, info.last_offset), (0, 49));
}

#[test]
fn a_batch_without_records_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    // A well-formed batch (length, magic, CRC) that declares no records.
    let mut empty = batch("e", 1, 1)[..weir_log::batch::HEADER_BYTES].to_vec();
    empty[8..12].copy_from_slice(&49i32.to_be_bytes()); // batch_length: header only
    empty[57..61].copy_from_slice(&0i32.to_be_bytes()); // record_count
    let crc = weir_log::batch::compute_crc(&empty);
    empty[17..21].copy_from_slice(&crc.to_be_bytes());
    weir_log::batch::validate(&empty).expect("well-formed");
    match log.append(&mut empty, -1) {
        Err(AppendError::InvalidBatch {
            source: weir_log::BatchError::Empty,
            ..
        }) => {}
        other => panic!("expected an empty-batch error, got {other:?}"),
    }
    assert_eq!(log.offsets().log_end_offset, 0);
}

#[test]
fn waiting_for_an_offset_never_appended_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        flush: FlushPolicy::GroupCommit,
        ..small_config()
    };
    let log = Log::open(dir.path(), config).unwrap();
    fill(&log, 3, 2, |_| 1);
    log.delete_records_before(2).unwrap();
    log.wait_durable(5).unwrap();
    match log.wait_durable(6) {
        Err(weir_log::MaintenanceError::OffsetOutOfRange {
            offset: 6,
            log_start_offset: 2,
            log_end_offset: 6,
        }) => {}
        other => panic!("expected out of range, got {other:?}"),
    }
}

#[test]
fn truncate_fully_restarts_the_log_past_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    for _ in 0..3 {
        let mut b = batch("a", 2, 0);
        log.append(&mut b, 0).unwrap();
    }
    log.truncate_fully_and_start_at(100).unwrap();
    let offsets = log.offsets();
    assert_eq!(
        (offsets.log_start_offset, offsets.log_end_offset),
        (100, 100)
    );
    assert!(log.leader_epochs().is_empty());
    drop(log);
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    let offsets = log.offsets();
    assert_eq!(
        (offsets.log_start_offset, offsets.log_end_offset),
        (100, 100)
    );
    let mut b = batch("c", 1, 0);
    assert_eq!(log.append(&mut b, 1).unwrap().base_offset, 100);
}

/// Found by the `segment_recovery` fuzz target: the base offset is outside the CRC, so a
/// flipped bit there used to pass the scan and panic recovery ("offset within 2^32 of its
/// segment's base"). Recovery must cut the batch as a corrupt tail and keep what precedes.
#[test]
fn recovery_cuts_a_batch_whose_base_offset_is_beyond_its_segment() {
    for bad_base in [1i64 << 40, i64::MAX] {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), small_config()).unwrap();
        log.append(&mut batch("a", 2, 1), 0).unwrap();
        log.append(&mut batch("b", 2, 2), 0).unwrap();
        log.close().unwrap();
        let path = dir.path().join(format!("{:020}.log", 0));
        let mut bytes = std::fs::read(&path).unwrap();
        let second = weir_log::batch::framed_len(&bytes).unwrap();
        bytes[second..second + 8].copy_from_slice(&bad_base.to_be_bytes());
        std::fs::write(&path, &bytes).unwrap();
        // As after a crash: no recovery point, so recovery scans the whole segment.
        std::fs::remove_file(dir.path().join("recovery-point.checkpoint")).unwrap();

        let log = Log::open(dir.path(), small_config()).unwrap();
        assert_eq!(log.offsets().log_end_offset, 2, "the first batch survives");
        assert_eq!(read_all(&log, 0).len(), 2);
        log.append(&mut batch("c", 1, 3), 0).unwrap();
        assert_eq!(log.offsets().log_end_offset, 3);
        log.close().unwrap();
    }
}

/// Reads at `offset` both ways and checks that the batches left in the file are exactly
/// the ones `read` returns, with the same next offset and record count.
fn assert_in_file_matches_read(log: &Log, offset: i64, max_bytes: usize, bound: Option<i64>) {
    let read = log.read(offset, max_bytes, bound);
    let in_file = log.read_in_file(offset, max_bytes, bound);
    let (read, in_file) = match (read, in_file) {
        (Ok(read), Ok(in_file)) => (read, in_file),
        (Err(a), Err(b)) => {
            assert_eq!(a.to_string(), b.to_string(), "at {offset}");
            return;
        }
        (a, b) => panic!("at {offset}, max {max_bytes}: read {a:?}, read_in_file {b:?}"),
    };
    let context = format!("at {offset}, max {max_bytes}, bound {bound:?}");
    assert!(read.in_file.is_none(), "{context}");
    assert_eq!(in_file.next_offset, read.next_offset, "{context}");
    assert_eq!(in_file.record_count(), read.record_count(), "{context}");
    assert_eq!(in_file.len(), read.records.len(), "{context}");
    match in_file.in_file {
        Some(slice) => {
            assert!(in_file.records.is_empty(), "{context}");
            assert_eq!(slice.read().unwrap(), read.records, "{context}");
            assert_eq!(
                Some(slice.position()),
                read.stored_at.map(|s| s.position),
                "{context}"
            );
        }
        // Short reads come back in memory.
        None => assert_eq!(in_file.records, read.records, "{context}"),
    }
}

#[test]
fn batches_left_in_the_file_are_the_ones_a_read_returns() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 1024 * 1024,
        ..small_config()
    };
    let log = Log::open(dir.path(), config.clone()).unwrap();
    // Batches from 80 B to 60 KiB, so reads cross many check buffers and segments.
    let mut next = 0;
    for i in 0..400usize {
        let (n, value) = (1 + i % 7, [10, 300, 2000, 8000][i % 4]);
        log.append(&mut sized_batch(n, value, i as i64), -1)
            .unwrap();
        next += n as i64;
    }
    assert!(log.segment_count() >= 3, "{}", log.segment_count());
    let end = log.offsets().log_end_offset;
    assert_eq!(end, next);
    let long = log.read_in_file(0, 1024 * 1024, None).unwrap();
    assert!(
        long.records.is_empty() && long.in_file.is_some(),
        "{long:?}"
    );
    let short = log.read_in_file(0, 1, None).unwrap();
    assert!(
        short.in_file.is_none() && !short.records.is_empty(),
        "{short:?}"
    );
    for offset in (0..end).step_by(37).chain([end - 1, end]) {
        for max_bytes in [1, 5_000, 200_000, 3 * 1024 * 1024] {
            for bound in [None, Some(end / 2)] {
                assert_in_file_matches_read(&log, offset, max_bytes, bound);
            }
        }
    }
    log.close().unwrap();

    // A damaged batch in the middle of the first segment: both reads stop before it, and
    // both report it to a read that starts there.
    let (_, at) = flip_a_bit_mid_first_segment(dir.path());
    let log = Log::open(dir.path(), config).unwrap();
    let whole = log.read_in_file(0, 3 * 1024 * 1024, None).unwrap();
    let slice = whole.in_file.as_ref().expect("batches before the damage");
    assert!(slice.position() + (slice.len() as u64) <= at as u64);
    assert_in_file_matches_read(&log, 0, 3 * 1024 * 1024, None);
    let failed = log.read_in_file(whole.next_offset, 1, None);
    assert!(
        matches!(failed, Err(ReadError::Corrupt { .. })),
        "{failed:?}"
    );
    assert_in_file_matches_read(&log, whole.next_offset, 1, None);
}

/// What one read left in the file or returned: next offset, record count and the bytes.
fn read_in_file_outcome(log: &Log, offset: i64, max_bytes: usize, bound: Option<i64>) -> String {
    match log.read_in_file(offset, max_bytes, bound) {
        Ok(data) => {
            let bytes = match &data.in_file {
                Some(slice) => slice.read().unwrap(),
                None => data.records.clone(),
            };
            format!(
                "next {}, {} records, {} bytes, crc32 {:08x}",
                data.next_offset,
                data.record_count(),
                bytes.len(),
                crc32fast::hash(&bytes)
            )
        }
        Err(e) => format!("error: {e}"),
    }
}

/// The batches a log appended were checked before it wrote them, so its fetches pass
/// over the large ones by their headers alone (nothing of them read into memory) and
/// compute no CRC again; a reopened log trusts nothing it did not write and checks every
/// batch. Both must leave exactly the same batches in the file for every read, and the
/// reopened log must find a damaged byte in a batch the first one wrote.
#[test]
fn reads_of_batches_checked_at_append_are_those_of_a_log_that_checks_them_again() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 2 * 1024 * 1024,
        ..small_config()
    };
    let log = Log::open(dir.path(), config.clone()).unwrap();
    // Batches of 300 B to 180 KiB: runs of large ones (passed over by header) between
    // small ones (read through the check's buffer).
    for i in 0..160usize {
        let (n, value) = [(1, 300), (4, 40_000), (9, 20_000), (2, 1_000)][i % 4];
        log.append(&mut sized_batch(n, value, i as i64), -1)
            .unwrap();
    }
    assert!(log.segment_count() >= 3, "{}", log.segment_count());
    let end = log.offsets().log_end_offset;
    let grid: Vec<(i64, usize, Option<i64>)> = (0..end)
        .step_by(7)
        .chain([end - 1, end])
        .flat_map(|offset| {
            [1, 50_000, 300_000, 4 * 1024 * 1024]
                .into_iter()
                .flat_map(move |max| [None, Some(end / 3)].map(|b| (offset, max, b)))
        })
        .collect();
    let appended: Vec<String> = grid
        .iter()
        .map(|&(o, m, b)| read_in_file_outcome(&log, o, m, b))
        .collect();
    let long = log.read_in_file(0, 4 * 1024 * 1024, None).unwrap();
    assert!(long.in_file.is_some(), "{long:?}");
    log.close().unwrap();

    let reopened = Log::open(dir.path(), config.clone()).unwrap();
    for (&(o, m, b), before) in grid.iter().zip(&appended) {
        let after = read_in_file_outcome(&reopened, o, m, b);
        assert_eq!(&after, before, "at {o}, max {m}, bound {b:?}");
        assert_in_file_matches_read(&reopened, o, m, b);
    }
    reopened.close().unwrap();

    // A flipped bit in the records of a batch the first process wrote (and trusted):
    // a new process checks it and finds it.
    let (_, at) = flip_a_bit_mid_first_segment(dir.path());
    let log = Log::open(dir.path(), config).unwrap();
    let whole = log.read_in_file(0, 4 * 1024 * 1024, None).unwrap();
    let slice = whole.in_file.as_ref().expect("batches before the damage");
    assert!(slice.position() + (slice.len() as u64) <= at as u64);
    let failed = log.read_in_file(whole.next_offset, 4 * 1024 * 1024, None);
    assert!(
        matches!(failed, Err(ReadError::Corrupt { .. })),
        "{failed:?}"
    );
}
