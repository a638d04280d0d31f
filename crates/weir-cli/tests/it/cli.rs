//! The real `weir` binary against a real broker started in-process on 127.0.0.1:0: topic
//! management, produce and consume round trips, following, encodings, errors, broken
//! pipes and a short bench run. Every wait has a deadline; nothing sleeps.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::Value;
use weir_client::partitioner::partition_for_key;

use crate::common::KillOnDrop;

/// Longest any single `weir` invocation may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait for one line from a following consumer before producing again.
const LINE_WAIT: Duration = Duration::from_millis(300);

/// A broker in this process, on its own runtime so tests stay plain synchronous code.
struct Broker {
    runtime: tokio::runtime::Runtime,
    server: Option<weir_server::RunningServer>,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Broker {
    fn start() -> Broker {
        let dir = tempfile::tempdir().expect("temp dir");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let server = Self::serve(&runtime, dir.path());
        let addr = server.addr.to_string();
        Broker {
            runtime,
            server: Some(server),
            addr,
            _dir: dir,
        }
    }

    fn serve(
        runtime: &tokio::runtime::Runtime,
        dir: &std::path::Path,
    ) -> weir_server::RunningServer {
        runtime
            .block_on(weir_server::start(weir_server::ServerConfig {
                kafka_listen: None,
                data_dir: dir.to_path_buf(),
                listen: "127.0.0.1:0".parse().expect("address"),
                admin_listen: None,
                ..Default::default()
            }))
            .expect("broker starts")
    }

    /// Stops the broker, runs `change` on its data directory, and starts it there again
    /// (on a new port).
    fn restart_after<T>(&mut self, change: impl FnOnce(&std::path::Path) -> T) -> T {
        let server = self.server.take().expect("running");
        self.runtime
            .block_on(server.shutdown())
            .expect("broker stops");
        let changed = change(self._dir.path());
        let server = Self::serve(&self.runtime, self._dir.path());
        self.addr = server.addr.to_string();
        self.server = Some(server);
        changed
    }

    /// `weir ARGS` pointed at this broker (through WEIR_BROKERS, as a user would).
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
        command
            .args(args)
            .env("WEIR_BROKERS", &self.addr)
            .env_remove("RUST_LOG");
        command
    }

    /// Runs `weir ARGS` with `stdin`, waits (bounded) and returns its output.
    fn run(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("weir starts");
        let mut input = child.stdin.take().expect("stdin");
        let stdin = stdin.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(&stdin);
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let output = rx
            .recv_timeout(COMMAND_TIMEOUT)
            .unwrap_or_else(|_| panic!("weir {args:?} did not finish in {COMMAND_TIMEOUT:?}"))
            .expect("weir runs");
        writer.join().expect("stdin writer");
        output
    }

    /// Runs `weir ARGS` and requires success; returns stdout.
    fn ok(&self, args: &[&str], stdin: &[u8]) -> String {
        let output = self.run(args, stdin);
        assert!(
            output.status.success(),
            "weir {args:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("UTF-8 output")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = self.runtime.block_on(server.shutdown());
        }
    }
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?} is not JSON: {e}")))
        .collect()
}

#[test]
fn topic_commands_round_trip_in_text_and_json() {
    let broker = Broker::start();
    let created = broker.ok(
        &[
            "topic",
            "create",
            "orders",
            "--partitions",
            "2",
            "--config",
            "retention.ms=60000",
        ],
        b"",
    );
    assert!(created.contains("orders"), "{created}");

    let listed = json_lines(&broker.ok(&["topic", "list", "--format", "json"], b""));
    assert_eq!(listed.len(), 1);
    let topics = listed[0].as_array().expect("an array of topics");
    assert_eq!(topics.len(), 1);
    assert_eq!(topics[0]["name"], "orders");
    assert_eq!(topics[0]["partitions"], 2);
    assert!(broker.ok(&["topic", "list"], b"").contains("orders"));

    let described =
        &json_lines(&broker.ok(&["topic", "describe", "orders", "--format", "json"], b""))[0];
    assert_eq!(
        described["partitions"]
            .as_array()
            .expect("partitions")
            .len(),
        2
    );
    let retention = described["configs"]
        .as_array()
        .expect("configs")
        .iter()
        .find(|c| c["name"] == "retention.ms")
        .expect("retention.ms listed");
    assert_eq!(retention["value"], "60000");
    assert_eq!(retention["is_default"], false);

    broker.ok(&["topic", "add-partitions", "orders", "--num", "3"], b"");
    let described =
        &json_lines(&broker.ok(&["topic", "describe", "orders", "--format", "json"], b""))[0];
    assert_eq!(
        described["partitions"]
            .as_array()
            .expect("partitions")
            .len(),
        5
    );

    let altered = &json_lines(&broker.ok(
        &[
            "topic",
            "alter-config",
            "orders",
            "--set",
            "segment.ms=120000",
            "--delete",
            "retention.ms",
            "--format",
            "json",
        ],
        b"",
    ))[0];
    let value_of = |name: &str| {
        altered
            .as_array()
            .expect("config entries")
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("{name} listed"))
            .clone()
    };
    assert_eq!(value_of("segment.ms")["value"], "120000");
    assert_eq!(value_of("retention.ms")["is_default"], true);

    broker.ok(&["topic", "delete", "orders"], b"");
    let listed = json_lines(&broker.ok(&["topic", "list", "--format", "json"], b""));
    assert_eq!(listed[0].as_array().expect("array").len(), 0);

    // A second delete names the topic in its error.
    let again = broker.run(&["topic", "delete", "orders"], b"");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("orders"));
}

#[test]
fn produced_lines_come_back_in_order_with_keys_and_headers() {
    let broker = Broker::start();
    const PARTITIONS: u32 = 3;
    broker.ok(&["topic", "create", "events", "--partitions", "3"], b"");
    let mut input = String::new();
    let mut sent: Vec<(String, String)> = Vec::new();
    for i in 0..200 {
        let (key, value) = (format!("user-{}", i % 7), format!("event {i}"));
        input.push_str(&format!("{key}:{value}\n"));
        sent.push((key, value));
    }
    let produced = broker.ok(
        &[
            "produce",
            "events",
            "--key-separator",
            ":",
            "--header",
            "source=test",
            "--header",
            "v=1",
            "--verbose",
        ],
        input.as_bytes(),
    );
    assert_eq!(
        produced.lines().count(),
        sent.len(),
        "one offset per record"
    );

    let records = json_lines(&broker.ok(
        &[
            "consume",
            "events",
            "--from",
            "beginning",
            "--format",
            "json",
        ],
        b"",
    ));
    assert_eq!(records.len(), sent.len());
    // Per partition: dense offsets from 0 in order; per key: one partition (Kafka's
    // murmur2 choice) and the send order.
    let mut next_offset: BTreeMap<u64, i64> = BTreeMap::new();
    let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &records {
        assert_eq!(r["topic"], "events");
        let partition = r["partition"].as_u64().expect("partition");
        let offset = r["offset"].as_i64().expect("offset");
        let expected = next_offset.entry(partition).or_insert(0);
        assert_eq!(offset, *expected, "partition {partition} in offset order");
        *expected += 1;
        let key = r["key"].as_str().expect("key").to_owned();
        assert_eq!(
            partition as u32,
            partition_for_key(key.as_bytes(), PARTITIONS),
            "{key}"
        );
        assert_eq!(
            r["headers"],
            serde_json::json!([{"key": "source", "value": "test"}, {"key": "v", "value": "1"}])
        );
        assert!(r["timestamp"].as_i64().expect("timestamp") > 0);
        by_key
            .entry(key)
            .or_default()
            .push(r["value"].as_str().expect("value").to_owned());
    }
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, value) in sent {
        expected.entry(key).or_default().push(value);
    }
    assert_eq!(by_key, expected);

    // --count stops early; --partition reads one partition; text prints values.
    let two = broker.ok(&["consume", "events", "--count", "2"], b"");
    assert_eq!(two.lines().count(), 2);
    let (busiest, count) = next_offset
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(p, n)| (p.to_string(), *n as usize))
        .expect("a partition");
    let one = broker.ok(
        &[
            "consume",
            "events",
            "--partition",
            &busiest,
            "--print-keys",
            "--key-separator",
            "=",
        ],
        b"",
    );
    assert_eq!(one.lines().count(), count);
    assert!(
        one.lines()
            .all(|l| l.starts_with("user-") && l.contains("=event ")),
        "{one}"
    );
    // From an offset, and from the end (nothing to read, exits at once).
    let from = broker.ok(
        &[
            "consume",
            "events",
            "--partition",
            &busiest,
            "--from",
            "1",
            "--format",
            "json",
        ],
        b"",
    );
    let from = json_lines(&from);
    assert_eq!(from.len(), count - 1);
    assert_eq!(from[0]["offset"], 1);
    assert_eq!(broker.ok(&["consume", "events", "--from", "end"], b""), "");
}

#[test]
fn follow_from_the_end_sees_records_produced_afterwards() {
    let broker = Broker::start();
    broker.ok(&["topic", "create", "live", "--partitions", "2"], b"");
    broker.ok(&["produce", "live"], b"old\n");
    let mut consumer = KillOnDrop(
        broker
            .command(&[
                "consume", "live", "--from", "end", "--follow", "--format", "json",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("weir consume starts"),
    );
    let rx = lines_of(consumer.0.stdout.take().expect("stdout"));
    // The consumer positions itself at the end at some point after it starts; produce
    // until a record shows up, so the test never guesses how long that takes.
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let line = loop {
        assert!(Instant::now() < deadline, "no record reached the follower");
        broker.ok(&["produce", "live"], b"new\n");
        if let Ok(line) = rx.recv_timeout(LINE_WAIT) {
            break line;
        }
    };
    let record: Value = serde_json::from_str(&line).expect("JSON");
    assert_eq!(
        record["value"], "new",
        "the record from before the start is skipped"
    );
    assert!(
        consumer.0.try_wait().expect("status").is_none(),
        "--follow keeps running"
    );
}

#[test]
fn base64_encoding_carries_binary_values() {
    let broker = Broker::start();
    broker.ok(&["topic", "create", "bin", "--partitions", "1"], b"");
    let value: &[u8] = &[0xff, 0x00, 0x80, 0xfe, b'x'];
    let mut input = b"k\x01:".to_vec();
    input.extend_from_slice(value);
    input.push(b'\n');
    broker.ok(&["produce", "bin", "--key-separator", ":"], &input);
    let out = broker.ok(
        &["consume", "bin", "--format", "json", "--encoding", "base64"],
        b"",
    );
    let record = &json_lines(&out)[0];
    let decode = |v: &Value| {
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("a string"))
            .expect("base64")
    };
    assert_eq!(decode(&record["value"]), value);
    assert_eq!(decode(&record["key"]), b"k\x01");
}

#[test]
fn healthcheck_passes_on_a_serving_broker_and_fails_on_anything_else() {
    let mut broker = Broker::start();
    let serving = broker.ok(&["healthcheck", "--address", &broker.addr.clone()], b"");
    assert_eq!(serving.trim(), "SERVING");
    // The image's HEALTHCHECK names no address: it comes from the environment.
    let output = broker
        .command(&["healthcheck"])
        .env("WEIR_HEALTHCHECK_ADDRESS", &broker.addr)
        .output()
        .expect("weir runs");
    assert!(output.status.success(), "{output:?}");
    // Bad flags are usage errors.
    for args in [
        &["healthcheck", "--address", "nohost"][..],
        &["healthcheck", "--timeout-ms", "0"][..],
    ] {
        let output = broker.run(args, b"");
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
    }
    // Nothing listening: exit 1, saying which address.
    let addr = broker.addr.clone();
    let server = broker.server.take().expect("running");
    broker
        .runtime
        .block_on(server.shutdown())
        .expect("shutdown");
    let output = broker.run(
        &["healthcheck", "--address", &addr, "--timeout-ms", "2000"],
        b"",
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains(&addr));
}

#[test]
fn errors_name_the_problem_and_fail() {
    let broker = Broker::start();
    let output = broker.run(&["consume", "no-such-topic"], b"");
    assert!(!output.status.success());
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no-such-topic"), "{stderr}");
    assert!(output.stdout.is_empty());
    // A producer's topic is created on first use (the broker's default, as in Kafka);
    // reading it then works.
    broker.ok(&["produce", "new-topic"], b"x\n");
    assert_eq!(broker.ok(&["consume", "new-topic"], b""), "x\n");
    broker.ok(&["topic", "create", "t", "--partitions", "1"], b"");
    // A bad --from is a usage error (exit 2), found before anything is done.
    let output = broker.run(&["consume", "t", "--from", "yesterday"], b"");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--from"));
    // An unreachable broker says so and how to fix it.
    let output = broker.run(&["topic", "list", "--brokers", "127.0.0.1:1"], b"");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("weir serve"));
}

#[test]
fn a_closed_stdout_is_not_an_error() {
    let broker = Broker::start();
    broker.ok(&["topic", "create", "many", "--partitions", "1"], b"");
    // Far more than a pipe buffer, so the writer meets the closed pipe.
    let input: String = (0..100_000).map(|i| format!("record {i}\n")).collect();
    broker.ok(&["produce", "many"], input.as_bytes());
    let mut child = KillOnDrop(
        broker
            .command(&["consume", "many"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("weir consume starts"),
    );
    let mut stdout = BufReader::new(child.0.stdout.take().expect("stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("a line");
    assert_eq!(first, "record 0\n");
    drop(stdout); // like `| head -1`
    let mut stderr = child.0.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        let _ = tx.send(text);
    });
    let stderr = rx.recv_timeout(COMMAND_TIMEOUT).expect("weir exits");
    let status = child.0.wait().expect("status");
    assert!(status.success(), "{status}: {stderr}");
    assert_eq!(stderr, "", "quietly");
}

#[test]
fn bench_e2e_reports_a_peer_bench_line() {
    let broker = Broker::start();
    let out = broker.ok(
        &[
            "bench",
            "e2e",
            "--topic",
            "e2e",
            "--record-size",
            "1KiB",
            "--rate",
            "2000",
            "--duration",
            "1s",
            "--warmup",
            "500ms",
            "--acks",
            "all",
            "--topic-config",
            "flush.policy=group-commit",
            "--report-schema",
            "peer",
        ],
        b"",
    );
    let line: Value = serde_json::from_str(out.lines().last().expect("a line")).expect("JSON");
    assert_eq!(line["schema"], "weir-peer-bench/1");
    assert_eq!(line["system"], "weir");
    assert_eq!(line["workload"], "latency");
    assert_eq!(line["record_bytes"], 1024);
    assert_eq!(line["acks"]["durability"], "durable");
    assert_eq!(line["acks"]["fsync_before_ack"], true);
    let latency = &line["latency"];
    assert_eq!(latency["sent"], 3000);
    assert_eq!(latency["received"], 3000);
    assert_eq!(latency["duplicates"], 0);
    assert_eq!(latency["warmup_secs"], 0.5);
    assert!(latency["p99_ms"].as_f64().expect("p99") >= latency["p50_ms"].as_f64().expect("p50"));
    assert!(latency["ack_p99_ms"].as_f64().is_some());
    assert!(latency["send_lag_p99_ms"].as_f64().is_some());
}

#[test]
fn bench_produce_reports_json_on_its_last_line() {
    let broker = Broker::start();
    let out = broker.ok(
        &[
            "bench",
            "produce",
            "--count",
            "20000",
            "--topic",
            "bench",
            "--partitions",
            "2",
            "--format",
            "json",
        ],
        b"",
    );
    let report: Value = serde_json::from_str(out.lines().last().expect("a line")).expect("JSON");
    assert_eq!(report["records"], 20000);
    assert!(report["records_per_sec"].as_f64().expect("a number") > 0.0);
    assert!(
        report["latency_p99_ms"].as_f64().expect("a number")
            >= report["latency_p50_ms"].as_f64().expect("a number")
    );
    // The same with one `send` per record instead of `send_all` chunks.
    let out = broker.ok(
        &[
            "bench",
            "produce",
            "--count",
            "20000",
            "--topic",
            "bench",
            "--per-record",
            "--format",
            "json",
        ],
        b"",
    );
    let report: Value = serde_json::from_str(out.lines().last().expect("a line")).expect("JSON");
    assert_eq!(report["records"], 20000);
    assert_eq!(report["latency"], "send to acknowledgement");
    // The topic was created with the partitions asked for.
    let described =
        &json_lines(&broker.ok(&["topic", "describe", "bench", "--format", "json"], b""))[0];
    assert_eq!(
        described["partitions"]
            .as_array()
            .expect("partitions")
            .len(),
        2
    );
}

// ---- Consumer groups ----

/// `(partition, offset)` of every record in JSON lines.
fn positions(records: &[Value]) -> Vec<(u64, i64)> {
    records
        .iter()
        .map(|r| {
            (
                r["partition"].as_u64().expect("partition"),
                r["offset"].as_i64().expect("offset"),
            )
        })
        .collect()
}

/// The group as `weir group describe --format json` shows it.
fn describe_group(broker: &Broker, group: &str) -> Value {
    let out = broker.ok(&["group", "describe", group, "--format", "json"], b"");
    let mut docs = json_lines(&out);
    assert_eq!(docs.len(), 1, "one document: {out}");
    docs.remove(0)
}

/// Sum of a numeric field over the group's partitions.
fn offsets_sum(group: &Value, field: &str) -> i64 {
    group["offsets"]
        .as_array()
        .expect("offsets")
        .iter()
        .map(|o| o[field].as_i64().unwrap_or(0))
        .sum()
}

/// Produces `count` keyed lines (spread over the partitions).
fn produce_keyed(broker: &Broker, topic: &str, from: usize, count: usize) {
    let input: String = (from..from + count)
        .map(|i| format!("key-{i}:value-{i}\n"))
        .collect();
    broker.ok(
        &["produce", topic, "--key-separator", ":"],
        input.as_bytes(),
    );
}

#[test]
fn consume_with_a_group_resumes_where_the_previous_run_stopped_and_describe_shows_lag() {
    let broker = Broker::start();
    broker.ok(&["topic", "create", "jobs", "--partitions", "3"], b"");
    produce_keyed(&broker, "jobs", 0, 30);
    let consume = |extra: &[&str]| -> Vec<(u64, i64)> {
        let mut args = vec!["consume", "jobs", "--group", "workers", "--format", "json"];
        args.extend_from_slice(extra);
        positions(&json_lines(&broker.ok(&args, b"")))
    };
    let first = consume(&["--count", "10"]);
    assert_eq!(first.len(), 10);

    // What was printed is committed, and nothing more; nobody is a member any more.
    let group = describe_group(&broker, "workers");
    assert_eq!(group["group_id"], "workers");
    assert_eq!(group["state"], "empty");
    assert_eq!(group["members"].as_array().expect("members").len(), 0);
    assert_eq!(offsets_sum(&group, "committed_offset"), 10);
    assert_eq!(offsets_sum(&group, "high_watermark"), 30);
    assert_eq!(offsets_sum(&group, "lag"), 20, "{group}");
    for o in group["offsets"].as_array().expect("offsets") {
        let printed = first
            .iter()
            .filter(|(p, _)| *p == o["partition"].as_u64().expect("partition"))
            .count() as i64;
        assert_eq!(o["committed_offset"].as_i64().unwrap_or(0), printed, "{o}");
        assert_eq!(
            o["lag"].as_i64().expect("lag"),
            o["high_watermark"].as_i64().expect("hw") - printed
        );
    }
    let text = broker.ok(&["group", "describe", "workers"], b"");
    assert!(text.contains("LAG") && text.contains("jobs"), "{text}");

    // The second run starts after the first; the third (no --count) reads the rest and
    // stops at the end of the log.
    let second = consume(&["--count", "10"]);
    let third = consume(&[]);
    assert_eq!((second.len(), third.len()), (10, 10));
    let mut all: Vec<(u64, i64)> = first.iter().chain(&second).chain(&third).copied().collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 30, "every record once over three runs");
    let group = describe_group(&broker, "workers");
    assert_eq!(offsets_sum(&group, "lag"), 0);
    // Nothing left: exits at once with nothing.
    assert_eq!(consume(&[]), []);

    let listed = json_lines(&broker.ok(&["group", "list", "--format", "json"], b""));
    assert_eq!(
        listed[0],
        serde_json::json!([{"group_id": "workers", "state": "empty", "members": 0}])
    );
}

/// A supervisor's SIGTERM ends a following group consumer as Ctrl-C does: it commits
/// exactly what it printed, leaves the group and exits 0.
#[test]
fn a_sigterm_ends_a_following_group_consumer_once_it_commits_what_it_printed() {
    let broker = Broker::start();
    broker.ok(&["topic", "create", "jobs", "--partitions", "3"], b"");
    produce_keyed(&broker, "jobs", 0, 30);
    let args = ["consume", "jobs", "--group", "workers", "--follow"];
    let mut child = broker
        .command(&[&args[..], &["--format", "json"]].concat())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir consume starts");
    let rx = lines_of(child.stdout.take().expect("stdout"));
    let mut child = KillOnDrop(child);
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let mut printed = Vec::new();
    while printed.len() < 30 {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => printed.push(line),
            Err(_) => panic!("printed {} of 30 records: {printed:?}", printed.len()),
        }
    }
    child.terminate();
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        printed.push(line);
    }
    let status = child.0.wait().expect("weir consume exits");
    let mut stderr = String::new();
    if let Some(mut err) = child.0.stderr.take() {
        let _ = err.read_to_string(&mut stderr);
    }
    assert!(
        status.success(),
        "weir {args:?} ended with {status:?}: {stderr}"
    );
    assert_eq!(positions(&json_lines(&printed.join("\n"))).len(), 30);
    let group = describe_group(&broker, "workers");
    assert_eq!(offsets_sum(&group, "committed_offset"), 30, "{group}");
    assert_eq!(group["members"].as_array().expect("members").len(), 0);
}

#[test]
fn reset_offsets_is_a_dry_run_unless_execute() {
    let broker = Broker::start();
    broker.ok(&["topic", "create", "replay", "--partitions", "2"], b"");
    produce_keyed(&broker, "replay", 0, 20);
    let read = broker.ok(&["consume", "replay", "--group", "audit"], b"");
    assert_eq!(read.lines().count(), 20);
    assert_eq!(offsets_sum(&describe_group(&broker, "audit"), "lag"), 0);

    // Without --execute: the plan, and nothing changes.
    let output = broker.run(
        &[
            "group",
            "reset-offsets",
            "audit",
            "--topic",
            "replay",
            "--to-earliest",
            "--format",
            "json",
        ],
        b"",
    );
    assert!(output.status.success());
    let plan = &json_lines(&String::from_utf8_lossy(&output.stdout))[0];
    assert_eq!(plan["applied"], false);
    assert_eq!(plan["partitions"].as_array().expect("partitions").len(), 2);
    assert!(
        plan["partitions"]
            .as_array()
            .expect("partitions")
            .iter()
            .all(|p| p["new_offset"] == 0)
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--execute"),
        "the dry run says how to apply it"
    );
    assert_eq!(offsets_sum(&describe_group(&broker, "audit"), "lag"), 0);

    // With --execute: applied; the group reads everything again.
    let applied = &json_lines(&broker.ok(
        &[
            "group",
            "reset-offsets",
            "audit",
            "--topic",
            "replay:1",
            "--to-earliest",
            "--execute",
            "--format",
            "json",
        ],
        b"",
    ))[0];
    assert_eq!(applied["applied"], true);
    assert_eq!(
        applied["partitions"].as_array().expect("partitions").len(),
        1
    );
    let group = describe_group(&broker, "audit");
    let lag_of = |p: u64| {
        group["offsets"]
            .as_array()
            .expect("offsets")
            .iter()
            .find(|o| o["partition"] == p)
            .expect("partition listed")["lag"]
            .as_i64()
            .expect("lag")
    };
    assert_eq!(lag_of(0), 0);
    assert!(lag_of(1) > 0);
    let again = json_lines(&broker.ok(
        &["consume", "replay", "--group", "audit", "--format", "json"],
        b"",
    ));
    assert_eq!(again.len() as i64, lag_of(1));
    assert!(again.iter().all(|r| r["partition"] == 1));

    // Bad values are usage errors.
    for args in [
        &["group", "reset-offsets", "audit", "--topic", "replay"][..],
        &["group", "reset-offsets", "audit", "--to-latest"][..],
        &[
            "group",
            "reset-offsets",
            "audit",
            "--topic",
            "replay:x",
            "--to-latest",
        ][..],
        &[
            "group",
            "reset-offsets",
            "audit",
            "--topic",
            "replay",
            "--to-datetime",
            "May 1st",
        ][..],
        &[
            "group",
            "reset-offsets",
            "audit",
            "--topic",
            "replay",
            "--to-latest",
            "--dry-run",
            "--execute",
        ][..],
    ] {
        assert_eq!(broker.run(args, b"").status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn a_group_with_live_members_cannot_be_deleted_and_ctrl_c_commits_what_was_printed() {
    let broker = Broker::start();
    broker.ok(&["topic", "create", "live-jobs", "--partitions", "2"], b"");
    produce_keyed(&broker, "live-jobs", 0, 10);
    let mut follower = KillOnDrop(
        broker
            .command(&[
                "consume",
                "live-jobs",
                "--group",
                "busy",
                "--follow",
                "--format",
                "json",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("weir consume starts"),
    );
    let rx = lines_of(follower.0.stdout.take().expect("stdout"));
    let mut printed = 0;
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    while printed < 10 {
        assert!(
            Instant::now() < deadline,
            "the follower printed {printed} of 10"
        );
        if rx.recv_timeout(LINE_WAIT).is_ok() {
            printed += 1;
        }
    }

    // A member is in the group: deleting it is refused, saying why.
    let output = broker.run(&["group", "delete", "busy"], b"");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("failed precondition"), "{stderr}");
    assert!(stderr.contains("live members"), "{stderr}");
    let group = describe_group(&broker, "busy");
    assert_eq!(group["members"].as_array().expect("members").len(), 1);
    assert_eq!(group["members"][0]["client_id"], "weir-cli");

    // More records while it follows; then Ctrl-C: it commits what it printed and leaves.
    produce_keyed(&broker, "live-jobs", 10, 5);
    while printed < 15 {
        assert!(
            Instant::now() < deadline,
            "the follower printed {printed} of 15"
        );
        if rx.recv_timeout(LINE_WAIT).is_ok() {
            printed += 1;
        }
    }
    let interrupt = Command::new("kill")
        .args(["-INT", &follower.0.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(interrupt.success());
    let (status_tx, status_rx) = mpsc::channel();
    let mut child = std::mem::replace(
        &mut follower.0,
        Command::new("true").spawn().expect("true runs"),
    );
    std::thread::spawn(move || {
        let _ = status_tx.send(child.wait());
    });
    let status = status_rx
        .recv_timeout(COMMAND_TIMEOUT)
        .expect("weir exits after Ctrl-C")
        .expect("status");
    assert!(status.success(), "{status}");
    let group = describe_group(&broker, "busy");
    assert_eq!(
        group["members"].as_array().expect("members").len(),
        0,
        "it left"
    );
    assert_eq!(offsets_sum(&group, "committed_offset"), 15);
    assert_eq!(offsets_sum(&group, "lag"), 0);

    // Without members the group can be deleted; afterwards it is unknown.
    broker.ok(&["group", "delete", "busy"], b"");
    let output = broker.run(&["group", "describe", "busy"], b"");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("weir group list"));
}

/// `weir ARGS` with no broker around, bounded; returns its output.
fn weir(args: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir starts");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(COMMAND_TIMEOUT)
        .unwrap_or_else(|_| panic!("weir {args:?} did not finish in {COMMAND_TIMEOUT:?}"))
        .expect("weir runs")
}

/// `weir serve ARGS` started in the background, and its log (stderr) line by line.
fn spawn_serve(args: &[&str]) -> (KillOnDrop, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("serve")
        .args(args)
        .env_remove("RUST_LOG")
        // Not Kafka's port 9092: tests run side by side.
        .env("WEIR_KAFKA_LISTEN", "none")
        // Nor RabbitMQ's port 5672.
        .env("WEIR_AMQP_LISTEN", "none")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir serve starts");
    let log = lines_of(child.stderr.take().expect("stderr"));
    (KillOnDrop(child), log)
}

/// The lines of a child's output as they come, read by a thread of their own to the end
/// (so the child never blocks on a full pipe, even when nobody reads them any more).
fn lines_of(output: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines() {
            let _ = tx.send(line.unwrap_or_default());
        }
    });
    rx
}

/// `weir serve ARGS` in the background, once it logs that it is listening (or panics
/// with what it printed if it exits or does not get there in time).
fn serve(args: &[&str]) -> KillOnDrop {
    let (child, rx) = spawn_serve(args);
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let mut seen = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("broker listening") => return child,
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
            }
            Err(_) => panic!("weir serve {args:?} did not start listening:\n{seen}"),
        }
    }
}

/// A supervisor's SIGTERM that comes while the broker is still starting (here: at its
/// first log line, while it opens its internal topics' 48 logs and loads their
/// coordinators) stops it cleanly once it has started: exit status 0 and a clean
/// shutdown, where a signal with no listener yet would kill it half-way.
#[test]
fn a_sigterm_while_the_broker_starts_stops_it_cleanly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().to_string_lossy().into_owned();
    let (mut child, rx) = spawn_serve(&[
        "--data-dir",
        &data,
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "off",
    ]);
    let first = rx
        .recv_timeout(COMMAND_TIMEOUT)
        .expect("weir serve logs a first line");
    child.terminate();
    let mut log = vec![first];
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        log.push(line);
    }
    let status = child.0.wait().expect("weir serve exits");
    let log = log.join("\n");
    assert!(status.success(), "weir serve ended with {status:?}:\n{log}");
    for expected in ["broker listening", "SIGTERM received", "shutdown complete"] {
        assert!(log.contains(expected), "no {expected:?} in:\n{log}");
    }
}

#[test]
fn serve_help_explains_the_cluster_flags_with_a_three_node_example() {
    let output = weir(&["serve", "--help"]);
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).expect("UTF-8 help");
    for flag in [
        "--node-id",
        "--controller-voters",
        "--internal-listen",
        "--advertise",
        "WEIR_NODE_ID",
        "WEIR_CONTROLLER_VOTERS",
        "WEIR_INTERNAL_LISTEN",
        "WEIR_ADVERTISE",
        "--node-id 3 --data-dir D3",
        "1@127.0.0.1:9292,2@127.0.0.1:9392,3@127.0.0.1:9492",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
    assert!(
        !help.contains("--broker-id"),
        "the old name stays hidden:\n{help}"
    );
}

#[test]
fn dev_cluster_refuses_a_voter_count_it_cannot_run_before_starting_anything() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("dev");
    let data = data.to_str().expect("UTF-8 path");
    for (flags, expected) in [
        (&["--nodes", "2", "--voters", "3"][..], "--voters 3"),
        (&["--nodes", "3", "--voters", "0"], "--voters 0"),
        (&["--nodes", "12", "--voters", "10"], "at most 9"),
        (&["--nodes", "17"], "--nodes 17"),
    ] {
        let mut args = vec!["dev", "cluster", "--data-dir", data];
        args.extend_from_slice(flags);
        let output = weir(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flags:?}: {stderr}");
        assert!(stderr.contains(expected), "{flags:?}: {stderr}");
        assert!(!dir.path().join("dev").exists(), "{flags:?}");
    }
}

#[test]
fn serve_refuses_bad_cluster_flags_before_touching_the_data_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("weir-data");
    let data = data.to_str().expect("UTF-8 path");
    for (flags, expected) in [
        (
            &["--controller-voters", "1@127.0.0.1:9292,1@127.0.0.1:9392"][..],
            "listed twice",
        ),
        (
            &["--controller-voters", "1@127.0.0.1"],
            "--controller-voters",
        ),
        (&["--advertise", "0.0.0.0:9292"], "--advertise"),
        (&["--node-id", "-3"], "negative"),
    ] {
        let mut args = vec!["serve", "--data-dir", data, "--listen", "127.0.0.1:0"];
        args.extend_from_slice(flags);
        let output = weir(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flags:?}: {stderr}");
        assert!(stderr.contains(expected), "{flags:?}: {stderr}");
        assert!(!dir.path().join("weir-data").exists(), "{flags:?}");
    }
}

#[test]
fn serve_refuses_a_data_directory_stamped_for_another_node() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("weir-data");
    let data = data.to_str().expect("UTF-8 path");
    let flags = |id_flag: &'static str, id: &'static str| {
        [
            "--data-dir",
            data,
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "off",
            id_flag,
            id,
        ]
    };
    drop(serve(&flags("--node-id", "1")));

    let mut args = vec!["serve"];
    args.extend(flags("--node-id", "2"));
    let output = weir(&args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("data directory {data} belongs to node 1"))
            && stderr.contains("node id 2"),
        "{stderr}"
    );

    // The old flag name still names the same node.
    drop(serve(&flags("--broker-id", "1")));
}

#[test]
fn cluster_describe_lists_the_broker_at_its_advertised_address() {
    let broker = Broker::start();
    let described = &json_lines(&broker.ok(&["cluster", "describe", "--format", "json"], b""))[0];
    assert!(
        !described["cluster_id"]
            .as_str()
            .expect("a cluster id")
            .is_empty(),
        "{described}"
    );
    assert_eq!(described["controller_id"], 0);
    let brokers = described["brokers"].as_array().expect("brokers");
    assert_eq!(brokers.len(), 1, "{described}");
    assert_eq!(brokers[0]["broker_id"], 0);
    assert_eq!(brokers[0]["address"], broker.addr.as_str());
    assert_eq!(brokers[0]["controller"], true);
    assert_eq!(brokers[0]["rack"], Value::Null);

    let text = broker.ok(&["cluster", "describe"], b"");
    let row = text
        .lines()
        .find(|l| l.contains(&broker.addr))
        .unwrap_or_else(|| panic!("no row for {}:\n{text}", broker.addr));
    assert!(
        row.trim_start().starts_with('0') && row.ends_with("controller"),
        "{row}"
    );
}

#[test]
fn topics_take_a_replication_factor_and_describe_shows_leader_replicas_and_isr() {
    let broker = Broker::start();
    let created = broker.ok(
        &[
            "topic",
            "create",
            "copied",
            "-p",
            "2",
            "--replication-factor",
            "1",
        ],
        b"",
    );
    assert!(
        created.contains("2 partition(s), 1 replica(s) each"),
        "{created}"
    );

    let described =
        &json_lines(&broker.ok(&["topic", "describe", "copied", "--format", "json"], b""))[0];
    let partitions = described["partitions"].as_array().expect("partitions");
    assert_eq!(partitions.len(), 2);
    for p in partitions {
        assert_eq!(p["leader"], 0, "{p}");
        assert_eq!(p["replicas"], serde_json::json!([0]), "{p}");
        assert_eq!(p["isr"], serde_json::json!([0]), "{p}");
    }
    let text = broker.ok(&["topic", "describe", "copied"], b"");
    assert!(
        text.contains("LEADER") && text.contains("REPLICAS") && text.contains("ISR"),
        "{text}"
    );

    // Zero copies is a usage error, found before the broker is asked.
    let output = broker.run(
        &["topic", "create", "none", "--replication-factor", "0"],
        b"",
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--replication-factor"));
    // More copies than brokers is the broker's refusal.
    let output = broker.run(&["topic", "create", "too-many", "-r", "2"], b"");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("invalid argument"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_bootstrap_list_uses_the_first_broker_that_answers_and_names_those_that_did_not() {
    let broker = Broker::start();
    let list = format!("127.0.0.1:1,{}", broker.addr);
    let output = broker.run(&["topic", "create", "boot", "--brokers", &list], b"");
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("127.0.0.1:1"),
        "says which failed: {stderr}"
    );
    assert!(
        broker
            .ok(&["produce", "boot", "--brokers", &list], b"a\nb\n")
            .is_empty()
    );
    assert_eq!(
        broker.ok(&["consume", "boot", "--brokers", &list], b""),
        "a\nb\n"
    );

    let output = broker.run(
        &["topic", "list", "--brokers", "127.0.0.1:1,127.0.0.1:2"],
        b"",
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("127.0.0.1:1, 127.0.0.1:2") && stderr.contains("weir serve"),
        "{stderr}"
    );
}

#[test]
fn cluster_and_topic_help_show_examples() {
    for (args, expected) in [
        (
            &["cluster", "--help"][..],
            "weir cluster describe --format json",
        ),
        (
            &["cluster", "describe", "--help"],
            "--brokers 10.0.0.1:9292,10.0.0.2:9292",
        ),
        (&["topic", "create", "--help"], "--replication-factor"),
        (&["topic", "create", "--help"], "-r 3"),
        (&["topic", "describe", "--help"], "ISR"),
        (&["--help"], "weir cluster describe"),
    ] {
        let output = weir(args);
        assert!(output.status.success(), "{args:?}");
        let help = String::from_utf8(output.stdout).expect("UTF-8 help");
        assert!(
            help.contains(expected),
            "{expected} missing from {args:?}:\n{help}"
        );
    }
}

/// A port free on 127.0.0.1 a moment ago (the broker binds it right after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Partitions cost no descriptor while idle (weir-log parks them; a new one has no file
/// until its first append): a broker whose hard limit is 256 descriptors creates a topic
/// of 1,000 partitions, takes records into some of them, and serves them again after a
/// restart under the same limit. Before parking, the create failed near partition 250
/// with "Too many open files".
#[test]
fn a_broker_limited_to_256_descriptors_holds_1000_partitions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let addr = format!("127.0.0.1:{}", free_port());
    // A hard limit of 256 descriptors, which the broker cannot raise.
    let start = || -> KillOnDrop {
        let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
        command
            .args([
                "serve",
                "--kafka-listen",
                "none",
                "--amqp-listen",
                "none",
                "--admin-listen",
                "off",
                "--listen",
                &addr,
                "--data-dir",
            ])
            .arg(&data)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: setrlimit is async-signal-safe and touches only the child's own limits.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                let limit = libc::rlimit {
                    rlim_cur: 256,
                    rlim_max: 256,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().expect("weir serve starts");
        let stderr = child.stderr.take().expect("stderr");
        let broker = KillOnDrop(child);
        let lines = BufReader::new(stderr).lines();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in lines {
                let _ = tx.send(line.unwrap_or_default());
            }
        });
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains("broker listening") => break,
                Ok(_) => {}
                Err(_) => panic!("the broker did not start"),
            }
        }
        broker
    };
    let broker = start();
    let at = |args: &[&str]| -> Output {
        let mut full = args.to_vec();
        full.extend(["--brokers", addr.as_str()]);
        weir(&full)
    };
    let created = at(&["topic", "create", "big", "--partitions", "1000"]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let descriptors = std::fs::read_dir(format!("/proc/{}/fd", broker.0.id()))
        .expect("the broker's descriptors")
        .count();
    assert!(descriptors < 64, "{descriptors} descriptors open");

    let mut produce = Command::new(env!("CARGO_BIN_EXE_weir"));
    let produced = produce
        .args(["produce", "big", "--brokers", &addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().expect("stdin").write_all(b"a\nb\nc\n")?;
            c.wait_with_output()
        })
        .expect("weir produce runs");
    assert!(
        produced.status.success(),
        "{}",
        String::from_utf8_lossy(&produced.stderr)
    );
    let consume = || {
        let consumed = at(&["consume", "big", "--from", "beginning"]);
        let mut values: Vec<String> = String::from_utf8_lossy(&consumed.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        values.sort();
        values
    };
    assert_eq!(consume(), ["a", "b", "c"]);
    // Killed and started again under the same limit: the records are served again.
    drop(broker);
    let _broker = start();
    assert_eq!(consume(), ["a", "b", "c"]);
}

/// Finds the first compressed batch stored under a stopped broker's `data_dir`, inverts
/// bytes in the middle of its records section and recomputes its CRC: a batch that
/// passes every integrity check but cannot be decoded. Returns its first offset and the
/// offset after it.
fn damage_first_compressed_batch(data_dir: &std::path::Path) -> (i64, i64) {
    let topics = data_dir.join("topics");
    for topic in std::fs::read_dir(&topics).expect("topics") {
        let partition = topic.expect("entry").path().join("0");
        for file in std::fs::read_dir(&partition).expect("partition") {
            let path = file.expect("entry").path();
            if path.extension().is_none_or(|e| e != "log") {
                continue;
            }
            let mut bytes = std::fs::read(&path).expect("segment");
            let mut at = 0;
            while let Ok(len) = weir_batch::framed_len(&bytes[at..]) {
                let batch = &mut bytes[at..at + len];
                let header = weir_batch::BatchHeader::parse(batch);
                if header.compression().expect("codec") != weir_batch::Compression::None {
                    let middle = weir_batch::HEADER_BYTES + (len - weir_batch::HEADER_BYTES) / 2;
                    for byte in &mut batch[middle..middle + 16] {
                        *byte = !*byte;
                    }
                    weir_batch::reseal(batch, header.record_count);
                    std::fs::write(&path, &bytes).expect("write segment");
                    return (header.base_offset, header.next_offset());
                }
                at += len;
            }
        }
    }
    panic!("no compressed batch under {}", topics.display());
}

#[test]
fn consume_stops_after_the_records_before_a_corrupt_batch_unless_told_to_skip_it() {
    let mut broker = Broker::start();
    broker.ok(&["topic", "create", "t", "--partitions", "1"], b"");
    let middle: String = (0..50).map(|i| format!("b{i}\n")).collect();
    broker.ok(&["produce", "t"], b"a0\na1\n");
    broker.ok(
        &["produce", "t", "--compression", "zstd"],
        middle.as_bytes(),
    );
    broker.ok(&["produce", "t"], b"c\n");
    let (offset, next_offset) = broker.restart_after(damage_first_compressed_batch);
    assert_eq!(offset, 2, "the zstd records start at 2");

    // Without the flag: the records before it, then a failure that says how to go on.
    let output = broker.run(&["consume", "t"], b"");
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "a0\na1\n");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "t/0: the records at offsets 2..{next_offset} cannot be read"
        )) && stderr.contains("--skip-corrupt")
            && stderr.contains(&format!("--from {next_offset}")),
        "{stderr}"
    );

    // With it: everything else, and a warning naming what was skipped.
    let output = broker.run(&["consume", "t", "--skip-corrupt"], b"");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let mut expected: Vec<String> = vec!["a0".into(), "a1".into()];
    expected.extend((next_offset - 2..50).map(|i| format!("b{i}")));
    expected.push("c".into());
    let stdout = String::from_utf8(output.stdout).expect("UTF-8");
    assert_eq!(stdout.lines().collect::<Vec<_>>(), expected);
    assert!(
        stderr.contains(&format!(
            "warning: t/0: skipped the records at offsets 2..{next_offset}"
        )),
        "{stderr}"
    );
}
