//! `weir queue` as a user runs it: two `--exec` workers started together share a topic's
//! tasks, every task runs once (one that fails runs again after its backoff), SIGTERM
//! stops the workers cleanly, and `weir queue describe` then shows nothing left to do;
//! plus the mistakes a user makes first.

use crate::common;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{Broker, KillOnDrop, finish, json_lines, stderr, weir_command};
use serde_json::Value;

/// How long the workers may take to run every task (they need about a second).
const WORK_DEADLINE: Duration = Duration::from_secs(20);
/// How long a worker may take to exit after SIGTERM: the job in hand, one poll (1 s) and
/// its last acknowledgements.
const EXIT_DEADLINE: Duration = Duration::from_secs(10);
/// Pause between two looks at the workers' files or processes.
const LOOK_INTERVAL: Duration = Duration::from_millis(50);

/// The worker's job: appends `OFFSET:PARTITION:VALUE:DELIVERY` to the worker's own file
/// (`$OUT`; a worker runs one job at a time, so lines never interleave) and fails
/// `fail-once` on its first delivery.
const JOB: &str = r#"v=$(cat); echo "$WEIR_OFFSET:$WEIR_PARTITION:$v:$WEIR_DELIVERY_COUNT" >> "$OUT"; if [ "$v" = fail-once ] && [ "$WEIR_DELIVERY_COUNT" = 1 ]; then exit 1; fi"#;

/// One job run, as the job wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Run {
    partition: u32,
    offset: i64,
    delivery: u32,
}

fn broker() -> Broker {
    Broker::start(weir_server::ServerConfig {
        admin_listen: None,
        ..Default::default()
    })
}

/// `weir queue consume tasks --group workers ... --exec JOB`, its jobs writing to `out`,
/// its stderr to `log`.
fn worker(broker: &Broker, out: &Path, log: &Path) -> KillOnDrop {
    let child = broker
        .command(&[
            "queue",
            "consume",
            "tasks",
            "--group",
            "workers",
            "--start",
            "earliest",
            "--exec",
            JOB,
            "--retry-backoff-ms",
            "100",
        ])
        .env("OUT", out)
        .stdout(Stdio::null())
        .stderr(File::create(log).expect("the worker's log"))
        .spawn()
        .expect("weir queue consume starts");
    KillOnDrop(child)
}

fn read(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => panic!("reading {}: {e}", path.display()),
    }
}

/// Every job run the workers' files hold, by value.
fn runs(outs: &[PathBuf]) -> BTreeMap<String, Vec<Run>> {
    let mut runs: BTreeMap<String, Vec<Run>> = BTreeMap::new();
    for out in outs {
        // Only whole lines: a job may be writing its line as the file is read.
        for line in read(out)
            .split_inclusive('\n')
            .filter_map(|l| l.strip_suffix('\n'))
        {
            let fields: Vec<&str> = line.split(':').collect();
            let [offset, partition, value, delivery] = fields[..] else {
                panic!(
                    "{line:?} in {} is not OFFSET:PARTITION:VALUE:DELIVERY",
                    out.display()
                );
            };
            runs.entry(value.to_owned()).or_default().push(Run {
                partition: partition.parse().expect("WEIR_PARTITION"),
                offset: offset.parse().expect("WEIR_OFFSET"),
                delivery: delivery.parse().expect("WEIR_DELIVERY_COUNT"),
            });
        }
    }
    for list in runs.values_mut() {
        list.sort_by_key(|r| r.delivery);
    }
    runs
}

fn wait_exit(worker: &mut KillOnDrop, deadline: Instant) -> ExitStatus {
    loop {
        if let Some(status) = worker.0.try_wait().expect("the worker's status") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "a worker did not exit within {EXIT_DEADLINE:?} of SIGTERM"
        );
        std::thread::sleep(LOOK_INTERVAL);
    }
}

/// Two workers share 21 tasks over two partitions: each task runs once, on the partition
/// and offset it was produced at, except `fail-once`, whose first run fails and which
/// then runs again (delivery 2, after the 100 ms backoff). After SIGTERM both workers
/// exit 0 and the group has nothing left: every share-partition's window is empty at the
/// high watermark.
#[test]
fn two_exec_workers_run_every_task_once_and_retry_the_one_that_failed() {
    let broker = broker();
    broker.ok(&["topic", "create", "tasks", "--partitions", "2"], "");
    // Even tasks and fail-once on partition 0, odd tasks on partition 1: where each was
    // produced is known, so the WEIR_PARTITION and WEIR_OFFSET the jobs saw can be checked.
    let even: Vec<String> = (0..20).step_by(2).map(|i| format!("task-{i}")).collect();
    let odd: Vec<String> = (1..20).step_by(2).map(|i| format!("task-{i}")).collect();
    broker.ok(
        &["produce", "tasks", "--partition", "0"],
        &format!("{}\nfail-once\n", even.join("\n")),
    );
    broker.ok(
        &["produce", "tasks", "--partition", "1"],
        &format!("{}\n", odd.join("\n")),
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let outs: Vec<PathBuf> = (1..=2)
        .map(|n| dir.path().join(format!("worker-{n}.txt")))
        .collect();
    let logs: Vec<PathBuf> = (1..=2)
        .map(|n| dir.path().join(format!("worker-{n}.log")))
        .collect();
    let mut workers: Vec<KillOnDrop> = outs
        .iter()
        .zip(&logs)
        .map(|(out, log)| worker(&broker, out, log))
        .collect();

    // 20 tasks once, fail-once twice.
    let deadline = Instant::now() + WORK_DEADLINE;
    let total = |runs: &BTreeMap<String, Vec<Run>>| runs.values().map(Vec::len).sum::<usize>();
    while total(&runs(&outs)) < 22 {
        assert!(
            Instant::now() < deadline,
            "the workers ran {} of 22 jobs in {WORK_DEADLINE:?}: {:?}\n{}\n{}",
            total(&runs(&outs)),
            runs(&outs),
            read(&logs[0]),
            read(&logs[1])
        );
        std::thread::sleep(LOOK_INTERVAL);
    }

    for worker in &workers {
        worker.terminate();
    }
    let deadline = Instant::now() + EXIT_DEADLINE;
    for (worker, log) in workers.iter_mut().zip(&logs) {
        let status = wait_exit(worker, deadline);
        assert!(status.success(), "{status}: {}", read(log));
    }

    let runs = runs(&outs);
    let mut expected: BTreeMap<String, Vec<Run>> = BTreeMap::new();
    for (partition, values) in [(0, &even), (1, &odd)] {
        for (offset, value) in (0..).zip(values.iter()) {
            let run = Run {
                partition,
                offset,
                delivery: 1,
            };
            expected.insert(value.clone(), vec![run]);
        }
    }
    let fail_once = Run {
        partition: 0,
        offset: 10,
        delivery: 1,
    };
    expected.insert(
        "fail-once".to_owned(),
        vec![
            fail_once,
            Run {
                delivery: 2,
                ..fail_once
            },
        ],
    );
    assert_eq!(runs, expected);
    let logged = format!("{}{}", read(&logs[0]), read(&logs[1]));
    assert!(
        logged.contains("tasks/0@10 (delivery 1): the command exited with status 1; released"),
        "the failure is reported on stderr: {logged}"
    );

    let described: Value =
        serde_json::from_str(&broker.ok(&["queue", "describe", "workers", "--format", "json"], ""))
            .expect("JSON");
    assert_eq!(described["group_id"], "workers");
    let partitions = described["partitions"].as_array().expect("partitions");
    let mut windows: Vec<(u64, i64, i64, i64)> = partitions
        .iter()
        .map(|p| {
            assert_eq!(p["topic"], "tasks", "{p}");
            for count in ["available", "delayed", "acquired", "archived_pending"] {
                assert_eq!(p[count], 0, "{count}: {p}");
            }
            assert_eq!(p["oldest_unfinished_offset"], Value::Null, "{p}");
            (
                p["partition"].as_u64().expect("partition"),
                p["start_offset"].as_i64().expect("start"),
                p["end_offset"].as_i64().expect("end"),
                p["high_watermark"].as_i64().expect("high watermark"),
            )
        })
        .collect();
    windows.sort_unstable();
    assert_eq!(windows, [(0, 11, 11, 11), (1, 10, 10, 10)], "{described}");
}

/// A consume without `--group` is a usage error (exit 2) before any work; describing a
/// group nobody used fails (exit 1) saying it has no state, and how it gets some.
#[test]
fn a_missing_group_is_a_usage_error_and_an_unknown_group_has_no_state() {
    let args = ["queue", "consume", "tasks"];
    let output = finish(weir_command(&args), &args);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("--group"), "{text}");
    assert!(output.stdout.is_empty());

    let broker = broker();
    let output = broker.run(&["queue", "describe", "no-such-group"]);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("share group \"no-such-group\" has no state")
            && text.contains("weir queue consume TOPIC --group no-such-group"),
        "{text}"
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn rejected_tasks_go_to_the_dead_letter_topic_and_redrive_sends_them_back_once() {
    let broker = broker();
    broker.ok(&["topic", "create", "tasks", "--partitions", "1"], "");
    broker.ok(&["topic", "create", "tasks-dlq", "--partitions", "1"], "");
    broker.ok(
        &[
            "queue",
            "configure",
            "workers",
            "--dead-letter-topic",
            "tasks-dlq",
        ],
        "",
    );
    broker.ok(&["produce", "tasks"], "a\nb\n");
    broker.ok(
        &[
            "queue", "consume", "tasks", "--group", "workers", "--start", "earliest", "--ack",
            "reject", "--count", "2",
        ],
        "",
    );
    let dead = broker.ok(
        &[
            "consume",
            "tasks-dlq",
            "--from",
            "beginning",
            "--count",
            "2",
        ],
        "",
    );
    assert_eq!(dead.lines().collect::<Vec<_>>(), ["a", "b"], "{dead}");

    let moved = broker.ok(&["queue", "redrive", "tasks-dlq"], "");
    assert!(moved.contains("redrove 2 dead letter(s)"), "{moved}");
    let again = broker.ok(&["queue", "redrive", "tasks-dlq"], "");
    assert!(
        again.contains("redrove 0 dead letter(s)"),
        "a second redrive sends nothing: {again}"
    );

    // Back in tasks, once, without the dead-letter headers; the group takes them again.
    let all = broker.ok(
        &["consume", "tasks", "--from", "beginning", "--count", "4"],
        "",
    );
    assert_eq!(
        all.lines().collect::<Vec<_>>(),
        ["a", "b", "a", "b"],
        "{all}"
    );
    let json = broker.ok(
        &[
            "consume", "tasks", "--from", "2", "--count", "2", "--format", "json",
        ],
        "",
    );
    assert_eq!(json.lines().count(), 2, "{json}");
    assert!(!json.contains("weir-dlq-"), "{json}");
    let taken = broker.ok(
        &[
            "queue", "consume", "tasks", "--group", "workers", "--count", "2",
        ],
        "",
    );
    assert_eq!(taken.lines().collect::<Vec<_>>(), ["a", "b"], "{taken}");
}

/// `--filter` routes only matching tasks to the group; `describe` shows the filter and
/// how many it skipped; a bad filter is a usage error, one over the broker's limits its
/// INVALID_ARGUMENT.
#[test]
fn a_filtered_group_takes_only_matching_tasks() {
    let broker = broker();
    broker.ok(&["topic", "create", "tasks", "--partitions", "1"], "");
    broker.ok(
        &["queue", "configure", "mailers", "--filter", "type=email"],
        "",
    );
    broker.ok(&["produce", "tasks", "--header", "type=sms"], "s1\n");
    broker.ok(&["produce", "tasks", "--header", "type=email"], "e1\ne2\n");
    broker.ok(&["produce", "tasks"], "n1\n");
    broker.ok(&["produce", "tasks", "--header", "type=email"], "e3\n");
    let taken = broker.ok(
        &[
            "queue", "consume", "tasks", "--group", "mailers", "--start", "earliest", "--count",
            "3",
        ],
        "",
    );
    assert_eq!(
        taken.lines().collect::<Vec<_>>(),
        ["e1", "e2", "e3"],
        "{taken}"
    );
    let described = broker.ok(&["queue", "describe", "mailers", "--format", "json"], "");
    let info: Value = serde_json::from_str(&described).unwrap();
    assert_eq!(
        info["filter"],
        serde_json::json!(["type=email"]),
        "{described}"
    );
    let p = &info["partitions"][0];
    assert_eq!(
        (p["start_offset"].as_i64(), p["filtered_out"].as_u64()),
        (Some(5), Some(2))
    );
    let text = broker.ok(&["queue", "describe", "mailers"], "");
    assert!(text.contains("FILTER          'type=email'"), "{text}");

    let output = broker.run(&["queue", "configure", "mailers", "--filter", "type"]);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("KEY=VALUE, KEY^=PREFIX"), "{text}");
    let mut args = vec!["queue", "configure", "mailers"];
    let conditions: Vec<String> = (0..17).map(|i| format!("k{i}=v")).collect();
    for c in &conditions {
        args.extend(["--filter", c.as_str()]);
    }
    let output = broker.run(&args);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("at most 16 conditions"), "{text}");
    let cleared = broker.ok(&["queue", "configure", "mailers", "--clear-filter"], "");
    assert!(
        cleared.contains("FILTER          - (every record"),
        "{cleared}"
    );
}

/// `weir queue list`, `reset`, `purge` and `delete` as an operator runs them: a held
/// record keeps the group from being reset, a reset makes the group deliver again from the
/// new start, a purge skips the backlog, deleting a topic's state or the whole group
/// forgets it.
#[test]
fn list_reset_and_delete_a_queue() {
    let broker = broker();
    broker.ok(&["topic", "create", "tasks", "--partitions", "1"], "");
    broker.ok(&["produce", "tasks"], "a\nb\nc\nd\n");
    let taken = broker.ok(
        &[
            "queue", "consume", "tasks", "--group", "workers", "--start", "earliest", "--count",
            "2",
        ],
        "",
    );
    assert_eq!(taken.lines().collect::<Vec<_>>(), ["a", "b"], "{taken}");

    let listed = broker.ok(&["queue", "list", "--format", "json"], "");
    let groups: Vec<Value> = json_lines(&listed);
    assert_eq!(groups.len(), 1, "{listed}");
    assert_eq!(groups[0]["group_id"], "workers", "{listed}");

    // A worker killed while it holds a record: its lock (8 s here: long enough that a
    // slow machine still asks within it) keeps the group busy until it runs out.
    broker.ok(
        &["queue", "configure", "workers", "--lock-duration", "8s"],
        "",
    );
    let mut holder = KillOnDrop(
        broker
            .command(&[
                "queue", "consume", "tasks", "--group", "workers", "--exec", "sleep 30",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("a worker starts"),
    );
    let deadline = Instant::now() + WORK_DEADLINE;
    loop {
        let described = broker.ok(&["queue", "describe", "workers", "--format", "json"], "");
        if json_lines(&described)[0]["partitions"][0]["acquired"] == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the worker took nothing: {described}"
        );
        std::thread::sleep(LOOK_INTERVAL);
    }
    holder.0.kill().expect("the worker is killed");
    holder.0.wait().expect("the worker is reaped");
    let reset_args = [
        "queue",
        "reset",
        "workers",
        "--topic",
        "tasks",
        "--to-earliest",
    ];
    let refused = broker.run(&reset_args);
    let text = stderr(&refused);
    assert_eq!(refused.status.code(), Some(1), "{text}");
    assert!(
        text.contains("is in use") && text.contains("hint: stop"),
        "{text}"
    );

    // Idle once the lock runs out: back to the log start; everything is delivered again,
    // from a count of 1.
    let reset_json = [&reset_args[..], &["--format", "json"]].concat();
    let deadline = Instant::now() + WORK_DEADLINE;
    let reset = loop {
        let out = broker.run(&reset_json);
        if out.status.success() {
            break String::from_utf8(out.stdout).expect("utf-8");
        }
        assert!(
            Instant::now() < deadline && stderr(&out).contains("is in use"),
            "{}",
            stderr(&out)
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let lines = json_lines(&reset);
    assert_eq!(lines.len(), 1, "{reset}");
    assert_eq!(lines[0]["start_offset"], 0, "{reset}");
    let again = broker.ok(
        &[
            "queue", "consume", "tasks", "--group", "workers", "--count", "4", "--format", "json",
        ],
        "",
    );
    let values: Vec<String> = json_lines(&again)
        .iter()
        .map(|r| r["value"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(values, ["a", "b", "c", "d"], "{again}");

    // A purge skips the backlog: the group's next record is the first produced after it.
    broker.ok(&["produce", "tasks"], "e\nf\n");
    let purged = broker.ok(
        &[
            "queue", "purge", "workers", "--topic", "tasks", "--format", "json",
        ],
        "",
    );
    assert_eq!(
        json_lines(&purged)[0]["start_offset"],
        6,
        "past e and f: {purged}"
    );
    broker.ok(&["produce", "tasks"], "g\n");
    let next = broker.ok(
        &[
            "queue", "consume", "tasks", "--group", "workers", "--count", "1",
        ],
        "",
    );
    assert_eq!(next.trim(), "g", "{next}");
    let past = broker.run(&[
        "queue",
        "reset",
        "workers",
        "--topic",
        "tasks",
        "--to-offset",
        "9",
    ]);
    assert_eq!(past.status.code(), Some(1), "{}", stderr(&past));
    assert!(String::from_utf8_lossy(&past.stdout).contains("high watermark"));

    // Forget the topic's state, then the group.
    let forgot = broker.ok(&["queue", "delete", "workers", "--topic", "tasks"], "");
    assert!(forgot.contains("forgot its state of tasks"), "{forgot}");
    broker.ok(&["queue", "delete", "workers"], "");
    assert!(
        broker
            .ok(&["queue", "list"], "")
            .lines()
            .all(|l| !l.starts_with("workers"))
    );
    let gone = broker.run(&["queue", "describe", "workers"]);
    assert_eq!(gone.status.code(), Some(1), "{}", stderr(&gone));
}
