//! SIGKILL of a real process in the middle of appending: this test binary runs itself as
//! a child (only the test `crash::crash_child_process_entry_point`) that appends
//! numbered records to a log and prints an acknowledgement line for each append its
//! flush policy says is done. The parent kills it at a random moment, reopens the log,
//! and checks that every acknowledged record is there, intact and in order, that offsets
//! are dense from 0, and that everything else recovered is a clean prefix of what the
//! child was writing.
//!
//! A SIGKILL keeps what reached the page cache, so more than the acknowledged records may
//! survive; the check is acks ⊆ recovered ⊆ attempted, in the child's order. The same
//! directory is used for every iteration, so recovery also runs on logs that were
//! recovered (and killed) before; on odd iterations the parent checks a copy, leaving the
//! killed log for the next child to recover.

use crate::common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Rng, base_seed, copy_dir, try_read_all};
use weir_log::{Compression, FlushPolicy, Log, LogConfig, Record, RecordBatchBuilder};

/// Set in the child's environment to `<policy>:<iteration>:<log dir>`.
const CHILD_ENV: &str = "WEIR_CRASH_CHILD";
const ITERATIONS: u64 = 8;
/// How long the parent waits for the acks it wants before it kills the child anyway.
const ITERATION_DEADLINE: Duration = Duration::from_secs(15);
/// A child whose parent vanished stops by itself after this long.
const CHILD_MAX_RUN: Duration = Duration::from_secs(60);

/// The child's test as the harness names it, `crash::crash_child_process_entry_point`:
/// this module's path without the binary's name, so `--exact` finds it under any module.
fn child_test() -> String {
    let module = module_path!()
        .split_once("::")
        .map_or("", |(_binary, module)| module);
    format!("{module}::crash_child_process_entry_point")
}

/// The child's log config. Odd iterations write past the page cache (`direct_writes`), so
/// recovery meets segments written either way, and a direct write's padding, after a kill.
fn config(policy: FlushPolicy, iteration: u64) -> LogConfig {
    LogConfig {
        direct_writes: iteration % 2 == 1,
        segment_bytes: 64 * 1024,
        segment_age: None,
        index_interval_bytes: 1024,
        index_max_bytes: 64 * 1024,
        flush: policy,
        retention_age: None,
        recovery_checkpoint_interval: Duration::from_millis(20),
        ..LogConfig::default()
    }
}

fn policy_name(policy: FlushPolicy) -> &'static str {
    match policy {
        FlushPolicy::EveryAppend => "every-append",
        FlushPolicy::GroupCommit => "group-commit",
        other => panic!("no crash test for {other:?}"),
    }
}

/// The value of record `seq` of writer `thread` in child run `iteration`; the filler
/// length varies so batches and segment ends fall at many positions.
fn value(iteration: u64, thread: u64, seq: u64) -> String {
    let fill = ((seq * 31 + thread * 7 + iteration * 13) % 200) as usize;
    let c = (b'a' + (seq % 26) as u8) as char;
    format!(
        "i{iteration}-t{thread}-s{seq}-{}",
        c.to_string().repeat(fill)
    )
}

/// Splits a value back into `(iteration, thread, seq)`, checking its filler.
fn parse_value(v: &str) -> Option<(u64, u64, u64)> {
    let mut parts = v.splitn(4, '-');
    let iteration = parts.next()?.strip_prefix('i')?.parse().ok()?;
    let thread = parts.next()?.strip_prefix('t')?.parse().ok()?;
    let seq = parts.next()?.strip_prefix('s')?.parse().ok()?;
    (value(iteration, thread, seq) == v).then_some((iteration, thread, seq))
}

// ---------------------------------------------------------------------------------------
// The child

/// Not a test on its own: the entry point of the child process the SIGKILL tests start.
/// Without `WEIR_CRASH_CHILD` in the environment (a normal test run) it does nothing.
#[test]
fn crash_child_process_entry_point() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.splitn(3, ':');
    let policy = FlushPolicy::parse(parts.next().expect("policy")).expect("known policy");
    let iteration: u64 = parts
        .next()
        .expect("iteration")
        .parse()
        .expect("iteration number");
    let dir = PathBuf::from(parts.next().expect("log dir"));
    let log = Arc::new(Log::open(&dir, config(policy, iteration)).expect("child: open"));
    // The test harness's "test ... " prefix has no newline: keep the first ack off it.
    println!();
    let writers = if policy == FlushPolicy::GroupCommit {
        2
    } else {
        1
    };
    let started = Instant::now();
    let handles: Vec<_> = (0..writers)
        .map(|thread| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                append_until_killed(&log, policy, iteration, thread, started)
            })
        })
        .collect();
    for h in handles {
        h.join().expect("child writer");
    }
}

/// Appends batches of 1..=4 records and acknowledges each on stdout once the policy says
/// it is durable: `ack <base offset> <records> <iteration> <thread> <first seq> end`.
fn append_until_killed(
    log: &Log,
    policy: FlushPolicy,
    iteration: u64,
    thread: u64,
    started: Instant,
) {
    let mut seq = 0u64;
    while started.elapsed() < CHILD_MAX_RUN {
        let n = 1 + (seq * 7 + thread) % 4;
        let compression = if seq % 11 == 5 {
            Compression::Lz4
        } else {
            Compression::None
        };
        let mut b = RecordBatchBuilder::new(compression);
        for s in seq..seq + n {
            b.push(&Record {
                key: Some(Bytes::from(format!("t{thread}"))),
                value: Some(Bytes::from(value(iteration, thread, s))),
                headers: Vec::new(),
                timestamp: s as i64,
            });
        }
        let mut bytes = b.build().expect("valid batch");
        let info = log.append(&mut bytes, -1).expect("child: append");
        if policy == FlushPolicy::GroupCommit {
            log.wait_durable(info.last_offset)
                .expect("child: wait_durable");
        }
        let line = format!(
            "ack {} {n} {iteration} {thread} {seq} end\n",
            info.base_offset
        );
        let mut out = std::io::stdout().lock();
        if out
            .write_all(line.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            return; // the parent is gone
        }
        seq += n;
    }
}

// ---------------------------------------------------------------------------------------
// The parent

/// One acknowledged append, as read from the child's stdout.
fn parse_ack(line: &str) -> Option<(i64, u64, u64, u64, u64)> {
    let f: Vec<&str> = line.split(' ').collect();
    if f.len() != 7 || f[0] != "ack" || f[6] != "end" {
        return None; // not an ack, or cut short by the kill
    }
    Some((
        f[1].parse().ok()?,
        f[2].parse().ok()?,
        f[3].parse().ok()?,
        f[4].parse().ok()?,
        f[5].parse().ok()?,
    ))
}

/// Checks the log in `dir` against everything ever acknowledged.
fn verify(dir: &Path, policy: FlushPolicy, acked: &BTreeMap<i64, String>, ctx: &str) {
    // Recovery does not depend on how the segments were written.
    let log = Log::open(dir, config(policy, 0))
        .unwrap_or_else(|e| panic!("{ctx}: reopen after SIGKILL: {e}"));
    let offsets = log.offsets();
    assert_eq!(offsets.log_start_offset, 0, "{ctx}");
    let seen =
        try_read_all(&log, 0).unwrap_or_else(|e| panic!("{ctx}: reading the recovered log: {e}"));
    assert_eq!(
        seen.len() as i64,
        offsets.log_end_offset,
        "{ctx}: records read vs log end offset"
    );
    // Next expected seq of each (iteration, thread): each writer's records appear in the
    // order it appended them, with no gap, and a later run's only after earlier runs'.
    let mut next_seq: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    let mut last_iteration = 0;
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(s.offset, i as i64, "{ctx}: offsets are dense from 0");
        let v = String::from_utf8_lossy(&s.value);
        let (iteration, thread, seq) = parse_value(&v)
            .unwrap_or_else(|| panic!("{ctx}: garbage at offset {}: {v:?}", s.offset));
        assert!(
            iteration >= last_iteration,
            "{ctx}: offset {} is from run {iteration} after run {last_iteration}",
            s.offset
        );
        last_iteration = iteration;
        let want = next_seq.entry((iteration, thread)).or_insert(0);
        assert_eq!(
            seq, *want,
            "{ctx}: offset {}: run {iteration} writer {thread} skipped or repeated a record",
            s.offset
        );
        *want += 1;
    }
    for (&offset, v) in acked {
        let got = seen
            .get(offset as usize)
            .map(|s| String::from_utf8_lossy(&s.value).into_owned());
        assert_eq!(
            got.as_deref(),
            Some(v.as_str()),
            "{ctx}: acknowledged offset {offset} lost or changed (recovered {} records)",
            seen.len()
        );
    }
}

fn sigkill_mid_append(policy: FlushPolicy, default_seed: u64) {
    let seed = base_seed(default_seed);
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let mut acked: BTreeMap<i64, String> = BTreeMap::new();
    let mut total_acks = 0;
    for iteration in 0..ITERATIONS {
        let target = rng.range(50, 2000);
        let ctx = format!("seed {seed}, {policy:?}, run {iteration} (kill after {target} acks)");
        let stderr_path = scratch.path().join(format!("child-{iteration}.stderr"));
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", &child_test(), "--nocapture", "--test-threads=1"])
            .env(
                CHILD_ENV,
                format!("{}:{iteration}:{}", policy_name(policy), log_dir.display()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("{ctx}: spawning the child: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + ITERATION_DEADLINE;
        let mut lines = Vec::new();
        let mut acks = 0;
        let mut exited_early = false;
        while acks < target {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    acks += u64::from(parse_ack(&line).is_some());
                    lines.push(line);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    exited_early = true;
                    break;
                }
            }
        }
        child.kill().unwrap_or_else(|e| panic!("{ctx}: kill: {e}"));
        let status = child.wait().unwrap();
        // Acks printed before the kill landed count too.
        reader.join().expect("reader thread");
        lines.extend(rx.try_iter());
        let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        assert!(
            !exited_early,
            "{ctx}: the child exited by itself ({status}) after {acks} acks:\n{stderr}"
        );
        let mut run_acks = 0;
        for (base, n, it, thread, first_seq) in lines.iter().filter_map(|l| parse_ack(l)) {
            assert_eq!(it, iteration, "{ctx}: ack from another run");
            for k in 0..n {
                let previous = acked.insert(base + k as i64, value(it, thread, first_seq + k));
                assert!(
                    previous.is_none(),
                    "{ctx}: offset {} acknowledged twice",
                    base + k as i64
                );
            }
            run_acks += 1;
        }
        assert!(
            run_acks > 0,
            "{ctx}: the child acknowledged nothing before the deadline:\n{stderr}"
        );
        total_acks += run_acks;
        if iteration % 2 == 1 && iteration + 1 < ITERATIONS {
            // Check a copy; the next child recovers the killed log itself.
            let copy = scratch.path().join(format!("copy-{iteration}"));
            copy_dir(&log_dir, &copy);
            verify(&copy, policy, &acked, &ctx);
        } else {
            verify(&log_dir, policy, &acked, &ctx);
        }
    }
    assert!(
        total_acks >= ITERATIONS,
        "seed {seed}: {total_acks} acks in all"
    );
}

#[test]
fn acknowledged_records_survive_sigkill_with_fsync_per_append() {
    sigkill_mid_append(FlushPolicy::EveryAppend, 0x5161);
}

#[test]
fn acknowledged_records_survive_sigkill_with_group_commit_from_two_threads() {
    sigkill_mid_append(FlushPolicy::GroupCommit, 0x5162);
}
