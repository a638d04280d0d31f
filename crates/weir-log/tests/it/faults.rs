//! Fault injection through the storage seam: writes torn at any byte, crashes that drop
//! what was not fsynced, failed fsyncs, and bit flips in segment, index and checkpoint
//! files. After each fault the log must reopen to a clean, dense prefix of what was
//! appended that holds every offset it reported durable, and corruption must surface as
//! `ReadError::Corrupt` naming the file and position, never as wrong data or a panic.
//!
//! Every scenario is driven by a seeded PRNG; the seed is in every assertion message.
//! `WEIR_TEST_SEED=<n>` replays (or explores) other seeds.

use crate::common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::{Rng, base_seed, batches_in, segment_files, try_read_all};
use weir_log::storage::{FaultPlan, FaultyStorage, FileStorage, Storage, StorageFile};
use weir_log::{
    AppendError, Compression, FlushPolicy, Log, LogConfig, MaintenanceError, ReadError, Record,
    RecordBatchBuilder,
};

/// The value of the record at `offset`: its number plus filler of a length that depends
/// on it, so a record that comes back at the wrong offset or damaged is seen.
fn value_of(offset: i64) -> String {
    let fill = (offset * 37 % 150) as usize;
    let c = (b'a' + (offset % 26) as u8) as char;
    format!("r{offset}-{}", c.to_string().repeat(fill))
}

fn timestamp_of(offset: i64) -> i64 {
    // Mostly rising, with some jitter.
    1_000 + offset * 3 + (offset * 7919 % 11) - 5
}

fn make_batch(first: i64, n: usize, compression: Compression) -> BytesMut {
    let mut b = RecordBatchBuilder::new(compression);
    for offset in first..first + n as i64 {
        b.push(&Record {
            key: Some(Bytes::from(format!("k{}", offset % 5))),
            value: Some(Bytes::from(value_of(offset))),
            headers: Vec::new(),
            timestamp: timestamp_of(offset),
        });
    }
    b.build().expect("valid batch")
}

fn config(policy: FlushPolicy, checkpoint_every_sync: bool) -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        segment_age: None,
        index_interval_bytes: 128,
        index_max_bytes: 4096,
        flush: policy,
        retention_age: None,
        recovery_checkpoint_interval: if checkpoint_every_sync {
            Duration::ZERO
        } else {
            Duration::from_secs(3600)
        },
        ..LogConfig::default()
    }
}

/// What a test knows about a log: what it tried to append, and what the log said was
/// durable.
#[derive(Debug, Default)]
struct History {
    /// Number of records appended (or attempted: an append that failed may still have
    /// reached the disk). Record `i` is `value_of(i)`.
    attempted: i64,
    /// Every offset below this was reported durable.
    durable: i64,
}

/// One random step: an append (maybe followed by `wait_durable`), or a roll. Returns the
/// error of the first operation that failed.
fn step(log: &Log, rng: &mut Rng, h: &mut History) -> Result<(), String> {
    if rng.one_in(12) {
        return log.roll().map_err(|e| format!("roll: {e}"));
    }
    let n = rng.range(1, 9) as usize;
    let compression = if rng.one_in(4) {
        Compression::ALL[rng.range(0, 5) as usize]
    } else {
        Compression::None
    };
    let first = h.attempted;
    let mut b = make_batch(first, n, compression);
    h.attempted += n as i64;
    let info = log
        .append(&mut b, -1)
        .map_err(|e| format!("append at {first}: {e}"))?;
    assert_eq!(info.base_offset, first, "the log assigns the next offset");
    match log.config().flush {
        FlushPolicy::EveryAppend => h.durable = h.attempted,
        FlushPolicy::GroupCommit if rng.one_in(3) => {
            log.wait_durable(info.last_offset)
                .map_err(|e| format!("wait_durable({}): {e}", info.last_offset))?;
            h.durable = h.attempted;
        }
        _ => {}
    }
    Ok(())
}

/// Reopens `dir` with the real file system and checks it holds a clean, dense prefix of
/// what was attempted that includes everything reported durable; then appends two records
/// at the recovered end and closes cleanly. Updates `h` to what the log now holds.
fn check_recovered(dir: &Path, config: &LogConfig, h: &mut History, ctx: &str) {
    let log =
        Log::open(dir, config.clone()).unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
    let offsets = log.offsets();
    assert_eq!(offsets.log_start_offset, 0, "{ctx}");
    let seen =
        try_read_all(&log, 0).unwrap_or_else(|e| panic!("{ctx}: reading the recovered log: {e}"));
    let len = seen.len() as i64;
    assert_eq!(
        offsets.log_end_offset, len,
        "{ctx}: log end offset vs records read"
    );
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(s.offset, i as i64, "{ctx}: offsets are dense from 0");
        assert_eq!(
            String::from_utf8_lossy(&s.value),
            value_of(s.offset),
            "{ctx}: value at offset {}",
            s.offset
        );
        assert_eq!(
            s.timestamp,
            timestamp_of(s.offset),
            "{ctx}: timestamp at offset {}",
            s.offset
        );
    }
    assert!(
        len <= h.attempted,
        "{ctx}: recovered {len} records but only {} were appended",
        h.attempted
    );
    assert!(
        len >= h.durable,
        "{ctx}: recovered {len} records but {} were reported durable",
        h.durable
    );
    // Appending continues at the recovered end.
    let mut b = make_batch(len, 2, Compression::None);
    let info = log
        .append(&mut b, -1)
        .unwrap_or_else(|e| panic!("{ctx}: append after recovery: {e}"));
    assert_eq!(
        info.base_offset, len,
        "{ctx}: append after recovery continues at the end"
    );
    let tail = try_read_all(&log, len).unwrap_or_else(|e| panic!("{ctx}: {e}"));
    let tail: Vec<String> = tail
        .iter()
        .map(|s| String::from_utf8_lossy(&s.value).into_owned())
        .collect();
    assert_eq!(tail, [value_of(len), value_of(len + 1)], "{ctx}");
    // And the whole log reads through, recovered part and new records alike.
    let all =
        try_read_all(&log, 0).unwrap_or_else(|e| panic!("{ctx}: reading after the append: {e}"));
    assert_eq!(all.len() as i64, len + 2, "{ctx}: records after the append");
    log.close().unwrap_or_else(|e| panic!("{ctx}: close: {e}"));
    h.attempted = len + 2;
    h.durable = len + 2;
}

// ---------------------------------------------------------------------------------------
// Torn writes

/// Counts the bytes written through it, to know how far a scenario writes.
#[derive(Debug, Default, Clone)]
struct CountingStorage {
    written: Arc<AtomicU64>,
}

#[derive(Debug)]
struct CountingFile {
    inner: Arc<dyn StorageFile>,
    written: Arc<AtomicU64>,
}

impl StorageFile for CountingFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> std::io::Result<usize> {
        self.inner.read_at(buf, pos)
    }
    fn write_all_at(&self, buf: &[u8], pos: u64) -> std::io::Result<()> {
        self.written.fetch_add(buf.len() as u64, Ordering::Relaxed);
        self.inner.write_all_at(buf, pos)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.inner.sync_data()
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.inner.set_len(len)
    }
    fn size(&self) -> std::io::Result<u64> {
        self.inner.size()
    }
}

impl Storage for CountingStorage {
    fn open(&self, path: &Path, create: bool) -> std::io::Result<Arc<dyn StorageFile>> {
        let inner = FileStorage.open(path, create)?;
        Ok(Arc::new(CountingFile {
            inner,
            written: Arc::clone(&self.written),
        }))
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        FileStorage.remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        FileStorage.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        FileStorage.sync_dir(dir)
    }
}

const TORN_SCENARIO_STEPS: usize = 40;

fn torn_scenario_config(seed: u64) -> LogConfig {
    config(FlushPolicy::GroupCommit, seed.is_multiple_of(2))
}

/// Runs the torn-write scenario of `seed` without faults; returns the bytes it writes.
fn bytes_written_by_scenario(seed: u64) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let storage = CountingStorage::default();
    let log = Log::open_with_storage(
        dir.path(),
        torn_scenario_config(seed),
        Arc::new(storage.clone()),
    )
    .unwrap();
    let (mut rng, mut h) = (Rng::new(seed), History::default());
    for _ in 0..TORN_SCENARIO_STEPS {
        step(&log, &mut rng, &mut h)
            .unwrap_or_else(|e| panic!("seed {seed}: fault-free run failed: {e}"));
    }
    drop(log);
    storage.written.load(Ordering::Relaxed)
}

/// Runs the scenario of `seed` with the write that passes byte `tear_at` torn (which
/// crashes the storage), then checks recovery.
fn run_torn(seed: u64, tear_at: u64, total: u64) {
    let ctx = format!("seed {seed}, write torn at byte {tear_at} of {total}");
    let dir = tempfile::tempdir().unwrap();
    let config = torn_scenario_config(seed);
    let storage = FaultyStorage::new(FaultPlan {
        torn_write_after_bytes: Some(tear_at),
        ..FaultPlan::default()
    });
    let mut h = History::default();
    match Log::open_with_storage(dir.path(), config.clone(), Arc::new(storage.clone())) {
        Err(e) => assert!(
            storage.is_crashed(),
            "{ctx}: open failed without a tear: {e}"
        ),
        Ok(log) => {
            let mut rng = Rng::new(seed);
            for _ in 0..TORN_SCENARIO_STEPS {
                if step(&log, &mut rng, &mut h).is_err() {
                    break;
                }
            }
            // A crashed storage refuses everything from then on.
            if storage.is_crashed() {
                let mut b = make_batch(h.attempted, 1, Compression::None);
                assert!(
                    log.append(&mut b, -1).is_err(),
                    "{ctx}: append after the crash succeeded"
                );
            }
            drop(log);
        }
    }
    assert!(storage.is_crashed(), "{ctx}: the tear never fired");
    check_recovered(dir.path(), &config, &mut h, &ctx);
}

#[test]
fn a_write_torn_at_any_byte_recovers_to_a_prefix_with_every_durable_offset() {
    let seed = base_seed(0x7041);
    let total = bytes_written_by_scenario(seed);
    assert!(
        total > 10_000,
        "seed {seed}: the scenario writes {total} bytes; expected several segments"
    );
    // A sweep over the byte positions, with a stride that drifts so the tear lands at
    // every position within batch headers over the run.
    let stride = total / 200 + 1;
    let mut tear_at = 0;
    let mut runs = 0u64;
    while tear_at < total {
        run_torn(seed, tear_at, total);
        runs += 1;
        tear_at += stride + runs % 17;
    }
    assert!(runs >= 150, "{runs} cut points");
}

#[test]
fn torn_writes_in_random_scenarios_recover_to_a_prefix_with_every_durable_offset() {
    let base = base_seed(0x7042);
    let mut rng = Rng::new(base);
    for i in 0..40 {
        let seed = base.wrapping_add(1000 + i);
        let total = bytes_written_by_scenario(seed);
        run_torn(seed, rng.range(0, total), total);
    }
}

// ---------------------------------------------------------------------------------------
// Crashes that drop unsynced bytes

#[test]
fn a_crash_that_drops_unsynced_bytes_recovers_to_a_prefix_with_every_durable_offset() {
    let base = base_seed(0xC0A5);
    for i in 0..30u64 {
        let seed = base.wrapping_add(i);
        let mut rng = Rng::new(seed);
        let policy = if rng.one_in(2) {
            FlushPolicy::GroupCommit
        } else {
            FlushPolicy::EveryAppend
        };
        let config = config(policy, rng.one_in(2));
        let dir = tempfile::tempdir().unwrap();
        let mut h = History::default();
        // Several crashes in a row: recovery also runs on logs that were recovered before.
        for round in 0..3 {
            let storage = FaultyStorage::default();
            let log = Log::open_with_storage(dir.path(), config.clone(), Arc::new(storage.clone()))
                .unwrap_or_else(|e| panic!("seed {seed} round {round}: open: {e}"));
            for _ in 0..rng.range(5, 60) {
                step(&log, &mut rng, &mut h)
                    .unwrap_or_else(|e| panic!("seed {seed} round {round}: {e}"));
            }
            // Either every unsynced byte is lost, or a random part of each file's
            // unsynced tail reached the disk anyway.
            let drop_all = rng.one_in(2);
            let mut keep_rng = rng.clone();
            storage
                .crash(|_, unsynced| {
                    if drop_all {
                        0
                    } else {
                        keep_rng.next_u64() % (unsynced + 1)
                    }
                })
                .unwrap();
            rng.next_u64();
            drop(log);
            let ctx = format!(
                "seed {seed} round {round} ({policy:?}, all unsynced bytes dropped: {drop_all})"
            );
            check_recovered(dir.path(), &config, &mut h, &ctx);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Failed fsync

#[test]
fn a_failed_fsync_is_reported_to_the_waiter_and_fails_the_log() {
    let base = base_seed(0xF5);
    // Large segments and no periodic checkpoint: after the one sync of open, every sync is
    // a group commit's `wait_durable`.
    let config = LogConfig {
        segment_bytes: 1 << 20,
        ..config(FlushPolicy::GroupCommit, false)
    };
    for fail_sync in 2..=12u64 {
        let seed = base.wrapping_add(fail_sync);
        let ctx = format!("seed {seed}, sync #{fail_sync} fails");
        let mut rng = Rng::new(seed);
        let dir = tempfile::tempdir().unwrap();
        let storage = FaultyStorage::new(FaultPlan {
            fail_sync_number: Some(fail_sync),
            ..FaultPlan::default()
        });
        let log =
            Log::open_with_storage(dir.path(), config.clone(), Arc::new(storage.clone())).unwrap();
        let mut h = History::default();
        let failed_at = loop {
            for _ in 0..rng.range(1, 4) {
                let mut b = make_batch(h.attempted, rng.range(1, 6) as usize, Compression::None);
                let info = log
                    .append(&mut b, -1)
                    .unwrap_or_else(|e| panic!("{ctx}: append before the failure: {e}"));
                assert_eq!(info.base_offset, h.attempted);
                h.attempted = info.last_offset + 1;
            }
            let last = h.attempted - 1;
            match log.wait_durable(last) {
                Ok(()) => h.durable = h.attempted,
                Err(MaintenanceError::Io { path, .. }) => {
                    assert!(
                        path.extension().is_some_and(|e| e == "log"),
                        "{ctx}: error names {}",
                        path.display()
                    );
                    break last;
                }
                Err(e) => {
                    panic!("{ctx}: wait_durable failed with {e:?}; expected the fsync's I/O error")
                }
            }
            assert!(h.attempted < 1000, "{ctx}: the fsync never failed");
        };
        // What the failed sync covered is not durable, now or later.
        assert!(
            log.offsets().flushed_offset <= h.durable,
            "{ctx}: {:?} after the failure",
            log.offsets()
        );
        assert!(
            log.wait_durable(failed_at).is_err(),
            "{ctx}: a retried wait_durable claimed durability"
        );
        assert!(log.offsets().flushed_offset <= h.durable, "{ctx}");
        let mut b = make_batch(h.attempted, 1, Compression::None);
        match log.append(&mut b, -1) {
            Err(AppendError::Failed { .. }) => {}
            other => panic!("{ctx}: append after a failed fsync gave {other:?}"),
        }
        assert!(log.flush().is_err(), "{ctx}: flush after a failed fsync");
        assert!(log.failure().is_some(), "{ctx}: the log says it failed");
        // Reads stop at the last durable point, whatever bound the reader gives: the
        // tail above it may not be what is on disk.
        let flushed = log.offsets().flushed_offset;
        let mut offset = 0;
        loop {
            let data = log.read(offset, 1 << 16, None).unwrap();
            if data.records.is_empty() {
                break;
            }
            for batch in data.batches() {
                let header = weir_log::BatchHeader::parse(&batch);
                assert!(
                    header.last_offset() < flushed,
                    "{ctx}: a failed log served offset {} above its flushed offset {flushed}",
                    header.last_offset()
                );
            }
            offset = data.next_offset;
        }
        assert_eq!(offset, flushed, "{ctx}: everything durable is still served");
        // The machine dies: only what was synced survives.
        storage.crash(|_, _| 0).unwrap();
        drop(log);
        let durable = h.durable;
        check_recovered(dir.path(), &config, &mut h, &ctx);
        // Nothing unsynced was kept: exactly what was reported durable is left (the check
        // appended two records after it).
        assert_eq!(h.attempted - 2, durable, "{ctx}: records recovered");
    }
}

#[test]
fn a_failed_fsync_anywhere_never_loses_what_was_reported_durable() {
    let base = base_seed(0xF6);
    for fail_sync in 1..=60u64 {
        let seed = base.wrapping_add(fail_sync);
        let mut rng = Rng::new(seed);
        let config = config(FlushPolicy::GroupCommit, rng.one_in(2));
        let ctx = format!(
            "seed {seed}, sync #{fail_sync} fails ({:?})",
            config.recovery_checkpoint_interval
        );
        let dir = tempfile::tempdir().unwrap();
        let storage = FaultyStorage::new(FaultPlan {
            fail_sync_number: Some(fail_sync),
            ..FaultPlan::default()
        });
        let mut h = History::default();
        match Log::open_with_storage(dir.path(), config.clone(), Arc::new(storage.clone())) {
            Err(_) => assert_eq!(fail_sync, 1, "{ctx}: only the first sync belongs to open"),
            Ok(log) => {
                let mut first_error: Option<String> = None;
                for _ in 0..60 {
                    let durable_before = h.durable;
                    match step(&log, &mut rng, &mut h) {
                        Ok(()) => {
                            if let Some(e) = &first_error {
                                // Only a failed checkpoint write (the data sync before it
                                // succeeded) may be followed by new durability claims.
                                assert!(
                                    h.durable == durable_before || failed_in_a_checkpoint_write(e),
                                    "{ctx}: durability reported after the log failed with: {e}"
                                );
                            }
                        }
                        Err(e) => {
                            first_error.get_or_insert(e);
                        }
                    }
                }
                storage.crash(|_, _| 0).unwrap();
                drop(log);
            }
        }
        check_recovered(dir.path(), &config, &mut h, &ctx);
    }
}

fn failed_in_a_checkpoint_write(e: &str) -> bool {
    e.contains(".checkpoint")
}

// ---------------------------------------------------------------------------------------
// Bit flips

/// A batch as it lies in a segment file.
fn flip_config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        ..config(FlushPolicy::None, false)
    }
}

/// Fills a log with random batches and closes it cleanly; returns the record count.
fn fill_and_close(dir: &Path, rng: &mut Rng) -> i64 {
    let log = Log::open(dir, flip_config()).unwrap();
    let mut h = History::default();
    while log.segment_count() < 6 {
        let n = rng.range(1, 9) as usize;
        let compression = if rng.one_in(4) {
            Compression::ALL[rng.range(0, 5) as usize]
        } else {
            Compression::None
        };
        let mut b = make_batch(h.attempted, n, compression);
        log.append(&mut b, -1).unwrap();
        h.attempted += n as i64;
    }
    log.close().unwrap();
    h.attempted
}

fn flip_bit(path: &Path, byte: u64, bit: u32) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[byte as usize] ^= 1 << bit;
    std::fs::write(path, &bytes).unwrap();
}

/// Checks that `read(offset)` returned the batch holding `offset` with the right records.
fn check_read_ok(ctx: &str, offset: i64, data: &weir_log::FetchData) {
    let batch = data
        .batches()
        .next()
        .unwrap_or_else(|| panic!("{ctx}: read at {offset} returned nothing"));
    let records = weir_log::decode_records(&batch)
        .unwrap_or_else(|e| panic!("{ctx}: decoding at {offset}: {e}"));
    let first = records.first().map(|r| r.offset);
    let last = records.last().map(|r| r.offset);
    assert!(
        first <= Some(offset) && Some(offset) <= last,
        "{ctx}: read at {offset} returned {first:?}..={last:?}"
    );
    for r in &records {
        let value = r.value.as_deref().map(String::from_utf8_lossy);
        assert_eq!(
            value.as_deref(),
            Some(value_of(r.offset).as_str()),
            "{ctx}: value at offset {}",
            r.offset
        );
        assert_eq!(r.timestamp, timestamp_of(r.offset), "{ctx}");
    }
}

#[test]
fn a_flipped_bit_in_a_closed_segment_is_reported_at_the_damaged_batch_and_nothing_else_changes() {
    let base = base_seed(0xB17);
    for i in 0..40u64 {
        let seed = base.wrapping_add(i);
        let mut rng = Rng::new(seed);
        let dir = tempfile::tempdir().unwrap();
        let count = fill_and_close(dir.path(), &mut rng);
        let segments = segment_files(dir.path());
        let (seg_base, seg_path) =
            segments[rng.range(0, segments.len() as u64 - 1) as usize].clone();
        let bytes = std::fs::read(&seg_path).unwrap();
        let batches = batches_in(&bytes);
        // Every other case hits a batch header (its first 61 bytes); every fourth the base
        // offset, which is outside the CRC.
        let victim = batches[rng.range(0, batches.len() as u64) as usize];
        let byte = match i % 4 {
            0 => victim.position + rng.range(0, 8),
            2 => victim.position + rng.range(0, 61),
            _ => rng.range(0, bytes.len() as u64),
        };
        let bit = rng.range(0, 8) as u32;
        let damaged = *batches
            .iter()
            .find(|b| b.position <= byte && byte < b.position + b.len)
            .unwrap();
        let ctx = format!(
            "seed {seed}: bit {bit} of byte {byte} in {} (batch {}..={} at {})",
            seg_path.display(),
            damaged.base,
            damaged.last,
            damaged.position
        );
        flip_bit(&seg_path, byte, bit);

        let log =
            Log::open(dir.path(), flip_config()).unwrap_or_else(|e| panic!("{ctx}: open: {e}"));
        assert_eq!(
            log.offsets().log_end_offset,
            count,
            "{ctx}: a closed segment's damage does not cut the log"
        );
        let seg_end = segments
            .iter()
            .map(|s| s.0)
            .find(|b| *b > seg_base)
            .unwrap();
        let interval = u64::from(flip_config().index_interval_bytes);
        let mut offset = 0;
        while offset < count {
            let result = log.read(offset, 1, None);
            let in_segment = (seg_base..seg_end).contains(&offset);
            match result {
                Ok(data) => {
                    // The leader epoch (bytes 12..16 of a batch) is outside the CRC by the
                    // format's design and carries no record data: a flip there is not
                    // detected, but every record still reads back right.
                    let in_epoch = (12..16).contains(&(byte - damaged.position));
                    assert!(
                        in_epoch || !(damaged.base..=damaged.last).contains(&offset),
                        "{ctx}: read of damaged offset {offset} succeeded"
                    );
                    check_read_ok(&ctx, offset, &data);
                }
                Err(ReadError::Corrupt { path, position, .. }) => {
                    assert!(
                        in_segment,
                        "{ctx}: offset {offset} in another segment reads as corrupt"
                    );
                    assert_eq!(path, seg_path, "{ctx}: corruption names the damaged file");
                    assert!(
                        position == damaged.position
                            || (position <= byte && byte - position <= interval),
                        "{ctx}: read at {offset} reports position {position}"
                    );
                    assert!(
                        offset >= damaged.base,
                        "{ctx}: intact offset {offset} before the damaged batch is unreadable"
                    );
                }
                Err(e) => panic!("{ctx}: read at {offset}: {e:?}"),
            }
            offset += 1 + rng.range(0, 3) as i64;
        }
    }
}

#[test]
fn flipped_bits_in_indexes_and_the_recovery_checkpoint_do_not_change_what_is_read() {
    let base = base_seed(0x1D5);
    for i in 0..40u64 {
        let seed = base.wrapping_add(i);
        let mut rng = Rng::new(seed);
        let dir = tempfile::tempdir().unwrap();
        let count = fill_and_close(dir.path(), &mut rng);
        let segments = segment_files(dir.path());
        let (_, seg_path) = &segments[rng.range(0, segments.len() as u64) as usize];
        let target = match i % 4 {
            0 | 1 => seg_path.with_extension("index"),
            2 => seg_path.with_extension("timeindex"),
            _ => dir.path().join("recovery-point.checkpoint"),
        };
        let len = std::fs::metadata(&target).unwrap().len();
        if len == 0 {
            continue;
        }
        let byte = rng.range(0, len);
        let bit = rng.range(0, 8) as u32;
        let ctx = format!(
            "seed {seed}: bit {bit} of byte {byte} in {}",
            target.display()
        );
        flip_bit(&target, byte, bit);

        let log =
            Log::open(dir.path(), flip_config()).unwrap_or_else(|e| panic!("{ctx}: open: {e}"));
        assert_eq!(log.offsets().log_end_offset, count, "{ctx}");
        let seen = try_read_all(&log, 0).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        assert_eq!(seen.len() as i64, count, "{ctx}: records read");
        for (i, s) in seen.iter().enumerate() {
            assert_eq!(
                (s.offset, String::from_utf8_lossy(&s.value).into_owned()),
                (i as i64, value_of(i as i64)),
                "{ctx}"
            );
        }
        for _ in 0..50 {
            let offset = rng.range(0, count as u64) as i64;
            let data = log
                .read(offset, 1, None)
                .unwrap_or_else(|e| panic!("{ctx}: read at {offset}: {e}"));
            check_read_ok(&ctx, offset, &data);
            // Time-index entries are checked against the batch they name, so a damaged
            // one cannot steer the lookup past the right answer.
            let ts = timestamp_of(offset);
            let expected = (0..count).find(|o| timestamp_of(*o) >= ts);
            let got = log
                .offset_for_timestamp(ts)
                .unwrap_or_else(|e| panic!("{ctx}: offset_for_timestamp({ts}): {e}"));
            assert_eq!(got, expected, "{ctx}: offset_for_timestamp({ts})");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Rolls defer the closed segment's sync

/// Appends `n` records in one batch after `h.attempted`.
fn append_records(log: &Log, h: &mut History, n: usize) -> i64 {
    let first = h.attempted;
    let mut b = make_batch(first, n, Compression::None);
    h.attempted += n as i64;
    log.append(&mut b, -1).unwrap().last_offset
}

/// A config whose segments roll only when the test says so.
fn roll_config(policy: FlushPolicy) -> LogConfig {
    LogConfig {
        segment_bytes: 1 << 20,
        ..config(policy, true)
    }
}

#[test]
fn a_roll_does_not_sync_the_closed_segment_under_the_log_lock() {
    let dir = tempfile::tempdir().unwrap();
    let storage = FaultyStorage::default();
    let config = roll_config(FlushPolicy::GroupCommit);
    let log = Log::open_with_storage(dir.path(), config, Arc::new(storage.clone())).unwrap();
    let mut h = History::default();
    for _ in 0..5 {
        append_records(&log, &mut h, 4);
    }
    let (_, first) = segment_files(dir.path()).remove(0);
    let before = storage.syncs_of(&first);
    log.roll().unwrap();
    assert_eq!(log.segment_count(), 2);
    assert_eq!(
        storage.syncs_of(&first),
        before,
        "the roll synced the segment it closed"
    );
    // The next flush syncs it.
    log.flush().unwrap();
    assert!(
        storage.syncs_of(&first) > before,
        "the flush synced the rolled segment"
    );
}

#[test]
fn after_a_roll_the_flushed_offset_waits_for_a_flush_that_covers_the_closed_segment() {
    for how in ["flush", "wait_durable", "flush_rolled", "close"] {
        let dir = tempfile::tempdir().unwrap();
        let storage = FaultyStorage::default();
        let config = roll_config(FlushPolicy::GroupCommit);
        let log =
            Log::open_with_storage(dir.path(), config.clone(), Arc::new(storage.clone())).unwrap();
        let mut h = History::default();
        let last = append_records(&log, &mut h, 10);
        assert_eq!(log.offsets().flushed_offset, 0, "{how}");
        log.roll().unwrap();
        assert_eq!(
            log.offsets().flushed_offset,
            0,
            "{how}: a roll must not claim the closed segment is durable"
        );
        append_records(&log, &mut h, 3);
        assert_eq!(log.offsets().flushed_offset, 0, "{how}");
        let (_, first) = segment_files(dir.path()).remove(0);
        match how {
            "flush" => {
                log.flush().unwrap();
                assert_eq!(log.offsets().flushed_offset, 13, "{how}");
            }
            "wait_durable" => {
                log.wait_durable(last).unwrap();
                assert!(log.offsets().flushed_offset > last, "{how}");
            }
            "flush_rolled" => {
                log.flush_rolled().unwrap();
                assert_eq!(
                    log.offsets().flushed_offset,
                    10,
                    "{how}: covers the rolled segment, not the active one"
                );
            }
            _ => {
                log.close().unwrap();
                assert_eq!(storage.syncs_of(&first), 1, "{how}");
                continue;
            }
        }
        assert_eq!(
            storage.syncs_of(&first),
            1,
            "{how}: the closed segment was synced"
        );
        // What was reported durable survives a crash that drops everything unsynced.
        let durable = log.offsets().flushed_offset;
        storage.crash(|_, _| 0).unwrap();
        drop(log);
        h.durable = durable;
        check_recovered(dir.path(), &config, &mut h, how);
    }
}

#[test]
fn a_crash_after_a_roll_that_nothing_synced_recovers_a_prefix_with_every_durable_record() {
    let base = base_seed(0x4011);
    for i in 0..24u64 {
        let seed = base.wrapping_add(i);
        let mut rng = Rng::new(seed);
        let policy = if i % 3 == 0 {
            FlushPolicy::EveryAppend
        } else {
            FlushPolicy::GroupCommit
        };
        let config = roll_config(policy);
        let dir = tempfile::tempdir().unwrap();
        let storage = FaultyStorage::default();
        let log =
            Log::open_with_storage(dir.path(), config.clone(), Arc::new(storage.clone())).unwrap();
        let mut h = History::default();
        // Some durable records first, maybe.
        if rng.one_in(2) {
            let last = append_records(&log, &mut h, 5);
            log.wait_durable(last).unwrap();
            h.durable = h.attempted;
        }
        // Unsynced records, a roll, and more records; maybe several rolls.
        for _ in 0..rng.range(1, 4) {
            for _ in 0..rng.range(1, 5) {
                append_records(&log, &mut h, rng.range(1, 6) as usize);
            }
            log.roll().unwrap();
        }
        for _ in 0..rng.range(0, 4) {
            append_records(&log, &mut h, rng.range(1, 6) as usize);
        }
        if policy == FlushPolicy::EveryAppend {
            h.durable = h.attempted;
        } else {
            // The first segment closed with unsynced bytes and nothing synced it since.
            let (_, first) = segment_files(dir.path()).remove(0);
            let synced_before = if h.durable > 0 { 1 } else { 0 };
            assert_eq!(
                storage.syncs_of(&first),
                synced_before,
                "seed {seed}: the rolled segment was synced by the roll"
            );
            assert_eq!(log.offsets().flushed_offset, h.durable, "seed {seed}");
        }
        let drop_all = rng.one_in(2);
        let mut keep_rng = rng.clone();
        storage
            .crash(|_, unsynced| {
                if drop_all {
                    0
                } else {
                    keep_rng.next_u64() % (unsynced + 1)
                }
            })
            .unwrap();
        drop(log);
        let ctx = format!("seed {seed} ({policy:?}, all unsynced bytes dropped: {drop_all})");
        check_recovered(dir.path(), &config, &mut h, &ctx);
    }
}

#[test]
fn retention_or_truncation_of_a_segment_waiting_for_its_sync_is_harmless() {
    for case in [
        "retention",
        "truncate-below",
        "truncate-into",
        "delete-records",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let storage = FaultyStorage::default();
        let config = LogConfig {
            retention_bytes: Some(1),
            ..roll_config(FlushPolicy::GroupCommit)
        };
        let log =
            Log::open_with_storage(dir.path(), config.clone(), Arc::new(storage.clone())).unwrap();
        let mut h = History::default();
        for seg in 0..3 {
            append_records(&log, &mut h, 5);
            append_records(&log, &mut h, 5);
            if seg < 2 {
                log.roll().unwrap();
            }
        }
        let expected_end = match case {
            "retention" => {
                let out = log.apply_retention(0).unwrap();
                assert_eq!(out.segments_deleted, 2, "{case}");
                30
            }
            "truncate-below" => {
                log.truncate_to(5).unwrap();
                5
            }
            "truncate-into" => {
                log.truncate_to(15).unwrap();
                15
            }
            _ => {
                assert_eq!(log.delete_records_before(30).unwrap(), 30, "{case}");
                30
            }
        };
        log.flush().unwrap();
        log.flush_rolled().unwrap();
        let offsets = log.offsets();
        assert_eq!(offsets.log_end_offset, expected_end, "{case}");
        assert_eq!(offsets.flushed_offset, expected_end, "{case}");
        let start = offsets.log_start_offset;
        storage.crash(|_, _| 0).unwrap();
        drop(log);
        let log = Log::open(dir.path(), config.clone()).unwrap();
        let offsets = log.offsets();
        assert_eq!(offsets.log_end_offset, expected_end, "{case}");
        assert_eq!(offsets.log_start_offset, start, "{case}");
        let seen = try_read_all(&log, start).unwrap();
        assert_eq!(seen.len() as i64, expected_end - start, "{case}");
        for s in &seen {
            assert_eq!(
                String::from_utf8_lossy(&s.value),
                value_of(s.offset),
                "{case}"
            );
        }
    }
}

/// A log closed cleanly reopens without syncing or writing anything (its recovery point
/// already names its end, which is what makes a broker's restart with thousands of
/// partitions fast) and holds every record; one whose process died after more appends
/// still scans the tail past that point, keeps it and checkpoints it.
#[test]
fn a_clean_reopen_writes_nothing_and_an_unclean_one_still_recovers_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(FlushPolicy::GroupCommit, false);
    let mut h = History::default();
    let check = |log: &Log, h: &History, ctx: &str| {
        let seen = try_read_all(log, 0).unwrap();
        assert_eq!(seen.len() as i64, h.attempted, "{ctx}");
        for s in &seen {
            assert_eq!(
                String::from_utf8_lossy(&s.value),
                value_of(s.offset),
                "{ctx}"
            );
        }
    };

    let log = Log::open_with_storage(dir.path(), config.clone(), Arc::new(FileStorage)).unwrap();
    for _ in 0..10 {
        append_records(&log, &mut h, 4);
    }
    assert!(
        log.segment_count() > 1,
        "the test wants closed segments too"
    );
    log.close().unwrap();

    // Clean: nothing is synced, renamed or written on the way in.
    let storage = FaultyStorage::new(FaultPlan::default());
    let log =
        Log::open_with_storage(dir.path(), config.clone(), Arc::new(storage.clone())).unwrap();
    assert_eq!(storage.operations(), 0, "a clean open changes nothing");
    assert_eq!(log.offsets().log_end_offset, h.attempted);
    check(&log, &h, "after a clean close");

    // Unclean: more appends, then the process dies (every byte written reaches the disk,
    // none of it synced or checkpointed).
    for _ in 0..5 {
        append_records(&log, &mut h, 4);
    }
    storage.crash(|_, unsynced| unsynced).unwrap();
    drop(log);
    let storage = FaultyStorage::new(FaultPlan::default());
    let log =
        Log::open_with_storage(dir.path(), config.clone(), Arc::new(storage.clone())).unwrap();
    assert!(
        storage.operations() > 0,
        "the tail past the recovery point is synced and checkpointed"
    );
    assert_eq!(log.offsets().log_end_offset, h.attempted);
    check(&log, &h, "after a process kill");
    log.close().unwrap();

    // Clean again once closed.
    let storage = FaultyStorage::new(FaultPlan::default());
    let log = Log::open_with_storage(dir.path(), config, Arc::new(storage.clone())).unwrap();
    assert_eq!(storage.operations(), 0, "a clean open changes nothing");
    check(&log, &h, "after the second clean close");
}

/// A new log in an empty directory writes no recovery point and syncs nothing (a broker
/// creating 10,000 partitions would pay two syncs each): a crash right after leaves at
/// worst fewer files, which the next open creates again, and the log works as new.
#[test]
fn a_new_log_syncs_nothing_and_a_crash_right_after_its_creation_leaves_a_working_log() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(FlushPolicy::GroupCommit, false);
    let point = dir.path().join("recovery-point.checkpoint");
    let storage = FaultyStorage::new(FaultPlan::default());
    let log =
        Log::open_with_storage(dir.path(), config.clone(), Arc::new(storage.clone())).unwrap();
    assert!(!point.exists(), "a new log writes no recovery point");
    let log_file = dir.path().join(format!("{:020}.log", 0));
    assert_eq!(storage.syncs_of(&log_file), 0);
    storage.crash(|_, _| 0).unwrap();
    drop(log);

    let mut h = History::default();
    let log = Log::open_with_storage(dir.path(), config.clone(), Arc::new(FileStorage)).unwrap();
    assert_eq!(log.offsets().log_end_offset, 0);
    let last = append_records(&log, &mut h, 5);
    log.wait_durable(last).unwrap();
    log.close().unwrap();
    assert!(point.exists(), "the close writes the recovery point");

    let storage = FaultyStorage::new(FaultPlan::default());
    let log = Log::open_with_storage(dir.path(), config, Arc::new(storage.clone())).unwrap();
    assert_eq!(storage.operations(), 0, "a clean open changes nothing");
    let seen = try_read_all(&log, 0).unwrap();
    assert_eq!(seen.len(), 5);
}

/// A full disk when a new leader epoch must be recorded (the soak's finding: it failed
/// the log, and the broker stopped): the append is refused as storage-full, the log is
/// not failed and keeps serving reads, nothing of the append is written, and once space
/// is freed the same append goes through with its epoch recorded, on disk too. The
/// follower's path (an append of replicated batches of a new epoch) alike.
#[test]
fn a_full_disk_refuses_a_new_leader_epoch_without_failing_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(FlushPolicy::EveryAppend, false);
    let (storage, log) = on_faulty_disk(dir.path(), &config);
    log.append(&mut common::batch("e0", 3, 1), 0).unwrap();

    storage.fill(true);
    let refused = log.append(&mut common::batch("e1", 2, 2), 1).unwrap_err();
    assert!(refused.is_storage_full(), "{refused:?}");
    assert_eq!(log.offsets().log_end_offset, 3, "nothing written");
    assert_eq!(
        try_read_all(&log, 0).unwrap().len(),
        3,
        "reads still served"
    );
    let epochs: Vec<(i32, i64)> = log
        .leader_epochs()
        .iter()
        .map(|e| (e.epoch, e.start_offset))
        .collect();
    assert_eq!(epochs, [(0, 0)], "the refused epoch is not kept");

    storage.fill(false);
    log.append(&mut common::batch("e1", 2, 2), 1).unwrap();
    // A follower's copy of a newer leader's batches, refused and then taken the same way.
    let mut replicated = common::batch("e2", 1, 3);
    let replicated_epoch: i32 = 2;
    {
        // Stamp the batch as its leader would: offset 5, epoch 2.
        let bytes = &mut replicated[..];
        bytes[0..8].copy_from_slice(&5i64.to_be_bytes());
        bytes[12..16].copy_from_slice(&replicated_epoch.to_be_bytes());
    }
    storage.fill(true);
    let refused = log.append_replicated(&replicated).unwrap_err();
    assert!(refused.is_storage_full(), "{refused:?}");
    storage.fill(false);
    log.append_replicated(&replicated).unwrap();
    let expected = [(0, 0), (1, 3), (2, 5)];
    let epochs: Vec<(i32, i64)> = log
        .leader_epochs()
        .iter()
        .map(|e| (e.epoch, e.start_offset))
        .collect();
    assert_eq!(epochs, expected);
    log.close().unwrap();

    let log = Log::open_with_storage(dir.path(), config, Arc::new(FileStorage)).unwrap();
    let epochs: Vec<(i32, i64)> = log
        .leader_epochs()
        .iter()
        .map(|e| (e.epoch, e.start_offset))
        .collect();
    assert_eq!(epochs, expected, "the history on disk");
    assert_eq!(try_read_all(&log, 0).unwrap().len(), 6);
}

/// A full disk at a segment roll (the soak's finding: the roll's producer snapshot ran
/// out of space, which failed the log, so its leadership ended and its waiting appends
/// were answered as failed): the append is refused as storage-full, the log is not
/// failed, and once space is freed appends go on, rolling as before. Whatever was
/// appended reads back in order after a reopen.
#[test]
fn a_full_disk_at_a_roll_refuses_the_append_without_failing_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(FlushPolicy::GroupCommit, false);
    let (storage, log) = on_faulty_disk(dir.path(), &config);
    let mut h = History::default();
    let mut refused_rolls = 0;
    // Each round fills the disk for one append, then appends with space; the segments
    // are small, so some of the refused appends are ones that would roll.
    while log.segment_count() < 4 {
        let segments = log.segment_count();
        storage.fill(true);
        let mut b = make_batch(h.attempted, 4, Compression::None);
        let refused = log.append(&mut b, -1).unwrap_err();
        assert!(refused.is_storage_full(), "{refused:?}");
        assert_eq!(log.failure(), None, "a full disk failed the log");
        refused_rolls += usize::from(log.segment_count() > segments);
        storage.fill(false);
        append_records(&log, &mut h, 4);
    }
    assert!(refused_rolls > 0, "no roll met the full disk");
    log.close().unwrap();

    let log = Log::open_with_storage(dir.path(), config, Arc::new(FileStorage)).unwrap();
    assert_holds_every_attempt(&log, &h);
}

/// Parking an idle log on a full disk (its producer snapshot and recovery point cannot
/// be written): it stays open and healthy, and parks once space is freed.
#[test]
fn a_full_disk_leaves_an_idle_log_open_until_it_can_be_parked() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(FlushPolicy::GroupCommit, false);
    let (storage, log) = on_faulty_disk(dir.path(), &config);
    let mut h = History::default();
    append_records(&log, &mut h, 4);
    storage.fill(true);
    assert!(
        !log.park_if_idle(Duration::ZERO).unwrap(),
        "parked without its checkpoints"
    );
    assert_eq!(log.failure(), None);
    assert!(!log.is_parked());
    storage.fill(false);
    assert!(log.park_if_idle(Duration::ZERO).unwrap());
    append_records(&log, &mut h, 4);
    assert_eq!(try_read_all(&log, 0).unwrap().len(), 8);
}

/// A follower cutting what diverged, on a full disk, and a broker reopening a log that
/// was not closed cleanly, on a full disk (the soak's broker stopped there: the reopen of
/// a failed log ran out of space and took the data directory offline): both go through,
/// the checkpoints that would claim what was cut removed rather than left stale, and the
/// log reads back exactly what it holds, then and after space returns and a reopen.
#[test]
fn a_full_disk_does_not_stop_a_truncation_or_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(FlushPolicy::GroupCommit, true);
    let (storage, log) = on_faulty_disk(dir.path(), &config);
    let mut h = History::default();
    for epoch in 0..3 {
        for _ in 0..6 {
            let mut b = make_batch(h.attempted, 4, Compression::None);
            log.append(&mut b, epoch).unwrap();
            h.attempted += 4;
        }
        log.flush().unwrap();
    }
    assert!(log.segment_count() > 2);
    let cut = h.attempted / 2 + 2; // inside a batch: the cut ends at its start
    storage.fill(true);
    log.truncate_to(cut).unwrap();
    assert_eq!(log.failure(), None);
    let end = log.offsets().log_end_offset;
    assert!(end <= cut && end > 0, "{end}");
    assert_eq!(try_read_all(&log, 0).unwrap().len() as i64, end);
    // Dropped, not closed (a failed log is dropped so): its reopen recovers, still full.
    drop(log);
    let log =
        Log::open_with_storage(dir.path(), config.clone(), Arc::new(storage.clone())).unwrap();
    assert_eq!(log.offsets().log_end_offset, end);
    storage.fill(false);
    h.attempted = end;
    append_records(&log, &mut h, 4);
    drop(log);
    let log = Log::open_with_storage(dir.path(), config, Arc::new(FileStorage)).unwrap();
    assert_holds_every_attempt(&log, &h);
}

/// The log holds every record `h` attempted, in order, once each: `value_of(0..)`.
fn assert_holds_every_attempt(log: &Log, h: &History) {
    let values: Vec<String> = try_read_all(log, 0)
        .unwrap()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.value).into_owned())
        .collect();
    let expected: Vec<String> = (0..h.attempted).map(value_of).collect();
    assert_eq!(values, expected);
}

/// A log in `dir` on a [`FaultyStorage`] with no faults planned (the full-disk tests fill
/// it by hand), and that storage.
fn on_faulty_disk(dir: &Path, config: &LogConfig) -> (FaultyStorage, Log) {
    let storage = FaultyStorage::new(FaultPlan::default());
    let log = Log::open_with_storage(dir, config.clone(), Arc::new(storage.clone())).unwrap();
    (storage, log)
}
