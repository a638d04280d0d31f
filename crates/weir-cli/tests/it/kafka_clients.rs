//! The Kafka clients Weir's users run, against a broker's Kafka listener: kafka-python,
//! confluent-kafka (librdkafka) and aiokafka through the scripts in `tests/kafka/`, kcat,
//! and records crossing between Kafka clients and Weir's own CLI in both directions.
//! The clients are installed, pinned, by `tests/python/setup.sh` (one shared venv) and
//! `tests/kafka/setup-kcat.sh`.

use crate::common;

use std::path::PathBuf;

use common::*;
use serde_json::Value;
use weir_client::partitioner::partition_for_key;

fn python() -> PathBuf {
    installed("tests/python/setup.sh")
}

fn script(name: &str) -> String {
    repo_root()
        .join("tests/kafka")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn kafka_broker() -> Broker {
    Broker::start_with_kafka(weir_server::ServerConfig {
        admin_listen: None,
        ..Default::default()
    })
}

/// Every record a client script printed landed where Weir's own client puts its key
/// (both use Kafka's murmur2 partitioner).
fn assert_partitioned_as_weir_does(lines: &[Value], partitions: u32, expected: usize) {
    assert_eq!(lines.len(), expected, "one line per record");
    for line in lines {
        let key = line["key"].as_str().expect("a key");
        assert_eq!(
            line["partition"].as_u64().expect("a partition") as u32,
            partition_for_key(key.as_bytes(), partitions),
            "{line}"
        );
    }
}

#[test]
fn kafka_python_produces_consumes_and_administers() {
    let python = python();
    let broker = kafka_broker();
    let kafka = broker.kafka.clone().expect("a Kafka listener");
    let out = run_ok(
        &python,
        &[&script("kafka_python_client.py"), &kafka, "kp-orders"],
    );
    assert_partitioned_as_weir_does(&json_lines(&out), 3, 200);
    // Weir's own view of the topic the Kafka admin client created.
    let described = broker.ok(&["topic", "describe", "kp-orders", "--format", "json"], "");
    assert!(described.contains("kp-orders"), "{described}");
}

#[test]
fn confluent_kafka_idempotent_producer_and_consumer() {
    let python = python();
    let broker = kafka_broker();
    let kafka = broker.kafka.clone().expect("a Kafka listener");
    let out = run_ok(
        &python,
        &[&script("confluent_kafka_client.py"), &kafka, "ck-orders"],
    );
    assert_partitioned_as_weir_does(&json_lines(&out), 4, 1000);
}

/// Fetches of a megabyte a partition, which the broker sends from its segment files
/// (`sendfile`), pass librdkafka's and kafka-python's CRC checks and come back whole, in
/// order, each record once.
#[test]
fn large_fetches_sent_from_segment_files_read_back_whole() {
    let python = python();
    let broker = kafka_broker();
    let kafka = broker.kafka.clone().expect("a Kafka listener");
    let out = run_ok(&python, &[&script("large_fetch.py"), &kafka, "big-reads"]);
    let counts = json_lines(&out);
    assert_eq!(counts.len(), 1, "{out}");
    assert_eq!(counts[0]["confluent_kafka"], 20_000, "{out}");
    assert_eq!(counts[0]["kafka_python"], 4_000, "{out}");
}

#[test]
fn kafka_admin_clients_configure_grow_trim_and_describe() {
    let python = python();
    let broker = kafka_broker();
    let kafka = broker.kafka.clone().expect("a Kafka listener");
    let out = run_ok(&python, &[&script("kafka_admin.py"), &kafka, "adm"]);
    let done = json_lines(&out);
    assert_eq!(done.len(), 1, "{out}");

    // What the Kafka admin clients changed, as Weir's own CLI shows it.
    let describe = |topic: &str| -> Value {
        let out = broker.ok(&["topic", "describe", topic, "--format", "json"], "");
        serde_json::from_str(out.trim()).expect("one JSON topic")
    };
    let config = |topic: &Value, key: &str| -> (String, bool) {
        let entry = topic["configs"]
            .as_array()
            .expect("configs")
            .iter()
            .find(|c| c["name"] == key)
            .unwrap_or_else(|| panic!("{key} in {topic}"));
        (
            entry["value"].as_str().expect("a value").to_owned(),
            entry["is_default"].as_bool().expect("is_default"),
        )
    };
    let log_starts = |topic: &Value| -> Vec<i64> {
        topic["partitions"]
            .as_array()
            .expect("partitions")
            .iter()
            .map(|p| p["log_start_offset"].as_i64().expect("log start"))
            .collect()
    };

    let kp = describe("adm");
    assert_eq!(config(&kp, "retention.ms"), ("3600000".into(), false));
    assert!(config(&kp, "max.message.bytes").1, "reset by kafka-python");
    assert_eq!(config(&kp, "cleanup.policy"), ("delete".into(), true));
    assert_eq!(log_starts(&kp), [4, 0, 0]);

    let ck = describe("adm-ck");
    assert_eq!(config(&ck, "retention.ms"), ("3600000".into(), false));
    assert_eq!(config(&ck, "segment.ms"), ("7200000".into(), false));
    assert_eq!(log_starts(&ck), [0, 6]);
}

/// Groups as Kafka's admin clients read them: described (a classic group with a static
/// member id, a KIP-848 group), offsets with metadata and leader epochs round-tripped,
/// OffsetDelete, and the authorized operations of topics, the cluster and groups.
#[test]
fn kafka_admin_clients_describe_groups_and_round_trip_offsets() {
    let python = python();
    let broker = kafka_broker();
    let kafka = broker.kafka.clone().expect("a Kafka listener");
    let out = run_ok(&python, &[&script("groups_admin.py"), &kafka, "gadm"]);
    let done = json_lines(&out);
    assert_eq!(done.len(), 1, "{out}");

    // What OffsetDelete left, as Weir's own CLI shows it: the offsets group keeps only
    // partition 2 (its 0 and 1 were deleted).
    let described = broker.ok(
        &["group", "describe", "gadm-offsets", "--format", "json"],
        "",
    );
    let group: Value = serde_json::from_str(described.trim()).expect("one JSON group");
    let committed: Vec<(u64, i64)> = group["offsets"]
        .as_array()
        .expect("offsets")
        .iter()
        .filter(|o| o["committed_offset"].as_i64().is_some_and(|c| c >= 0))
        .map(|o| {
            (
                o["partition"].as_u64().expect("partition"),
                o["committed_offset"].as_i64().expect("offset"),
            )
        })
        .collect();
    assert_eq!(committed, [(2, 9)], "{described}");
}

#[test]
fn aiokafka_sends_and_reads_in_order() {
    let python = python();
    let broker = kafka_broker();
    let kafka = broker.kafka.clone().expect("a Kafka listener");
    run_ok(&python, &[&script("aiokafka_client.py"), &kafka, "aio"]);
}

#[test]
fn kcat_lists_produces_and_consumes() {
    let kcat = installed("tests/kafka/setup-kcat.sh");
    let broker = kafka_broker();
    let kafka = broker.kafka.clone().expect("a Kafka listener");
    // Produce keyed records from stdin (the topic is created on first use).
    let child = std::process::Command::new(&kcat)
        .args(["-b", &kafka, "-P", "-t", "kc", "-K", ":"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kcat starts");
    let mut child = child;
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(b"a:first\nb:second\na:third\n")
            .expect("writes");
    }
    let output = wait_output(child, &["kcat -P"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let consumed = run_ok(
        &kcat,
        &["-b", &kafka, "-C", "-t", "kc", "-e", "-f", "%k=%s@%o\n"],
    );
    assert_eq!(consumed, "a=first@0\nb=second@1\na=third@2\n");
    let listed = run_ok(&kcat, &["-b", &kafka, "-L", "-t", "kc"]);
    let port = kafka.rsplit(':').next().expect("a port");
    assert!(
        listed.contains(&format!("broker 0 at 127.0.0.1:{port} (controller)")),
        "{listed}"
    );
    assert!(
        listed.contains("partition 0, leader 0, replicas: 0, isrs: 0"),
        "{listed}"
    );
}

/// Key, value, headers, timestamp and offset, as both sides print them.
fn record_view(v: &Value) -> (i64, i64, String, String, Vec<(String, String)>) {
    let headers = match &v["headers"] {
        Value::Array(items) => items
            .iter()
            .map(|h| match h {
                // kafka-python's lines: [key, value]; weir's: {"key": .., "value": ..}.
                Value::Array(kv) => (
                    kv[0].as_str().unwrap().to_owned(),
                    kv[1].as_str().unwrap().to_owned(),
                ),
                other => (
                    other["key"].as_str().unwrap().to_owned(),
                    other["value"].as_str().unwrap().to_owned(),
                ),
            })
            .collect(),
        _ => Vec::new(),
    };
    (
        v["offset"].as_i64().expect("offset"),
        v["timestamp"].as_i64().expect("timestamp"),
        v["key"].as_str().unwrap_or_default().to_owned(),
        v["value"].as_str().expect("value").to_owned(),
        headers,
    )
}

#[test]
fn records_cross_between_kafka_python_and_weir_byte_identical() {
    let python = python();
    let broker = kafka_broker();
    let kafka = broker.kafka.clone().expect("a Kafka listener");

    // kafka-python writes, `weir consume` reads.
    let produced = run_ok(
        &python,
        &[
            &script("cross_protocol.py"),
            "produce",
            &kafka,
            "from-kafka",
        ],
    );
    let consumed = broker.ok(&["consume", "from-kafka", "--format", "json"], "");
    let produced: Vec<_> = json_lines(&produced).iter().map(record_view).collect();
    let consumed: Vec<_> = json_lines(&consumed).iter().map(record_view).collect();
    assert_eq!(produced.len(), 20);
    assert_eq!(consumed, produced);

    // `weir produce` writes, kafka-python reads.
    broker.ok(
        &[
            "produce",
            "from-weir",
            "--key-separator",
            ":",
            "--header",
            "source=weir",
        ],
        "user-1:paid\nuser-2:shipped\nuser-1:refunded\n",
    );
    let written = broker.ok(&["consume", "from-weir", "--format", "json"], "");
    let read = run_ok(
        &python,
        &[
            &script("cross_protocol.py"),
            "consume",
            &kafka,
            "from-weir",
            "3",
        ],
    );
    let written: Vec<_> = json_lines(&written).iter().map(record_view).collect();
    let read: Vec<_> = json_lines(&read).iter().map(record_view).collect();
    assert_eq!(written.len(), 3);
    assert_eq!(read, written);
    assert_eq!(read[1].2, "user-2");
    assert_eq!(read[1].4, vec![("source".to_owned(), "weir".to_owned())]);
}

/// Celery on Weir through kombu's Kafka transport (`confluentkafka://`): a client queues
/// tasks, a worker runs every one of them (each appends its argument to a file).
#[test]
fn a_celery_worker_runs_the_tasks_a_client_sends() {
    const TASKS: usize = 10;
    let python = python();
    let broker = kafka_broker();
    let kafka = broker.kafka.clone().expect("a Kafka listener");
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("done");
    let env = |command: &mut std::process::Command| {
        command
            .current_dir(repo_root().join("tests/kafka"))
            .env("CELERY_BROKER_URL", format!("confluentkafka://{kafka}"))
            .env("CELERY_OUT", &out)
            .stdin(std::process::Stdio::null());
    };
    let mut send = std::process::Command::new(&python);
    send.args(["celery_tasks.py", "send", &TASKS.to_string()]);
    env(&mut send);
    let sent = finish(send, &["celery_tasks.py send"]);
    assert!(sent.status.success(), "{}", stderr(&sent));

    let mut worker = std::process::Command::new(&python);
    worker.args([
        "-m",
        "celery",
        "-A",
        "celery_tasks",
        "worker",
        "--pool=solo",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "--loglevel=INFO",
    ]);
    env(&mut worker);
    let log = dir.path().join("worker.log");
    let log_file = std::fs::File::create(&log).expect("worker log");
    let worker = KillOnDrop(
        worker
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file)
            .spawn()
            .expect("the worker starts"),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let done = loop {
        let done: Vec<usize> = std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .map(|l| l.parse().expect("a task number"))
            .collect();
        if done.len() >= TASKS || std::time::Instant::now() > deadline {
            break done;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    drop(worker);
    let mut sorted = done.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (0..TASKS).collect::<Vec<_>>(),
        "tasks run: {done:?}\nworker log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

#[test]
fn kafka_clients_over_tls_with_client_certificates() {
    let python = python();
    let certs = tempfile::tempdir().expect("temp dir");
    let made = weir_command(&["dev", "certs", "--out", &certs.path().to_string_lossy()])
        .output()
        .expect("weir dev certs");
    assert!(made.status.success(), "{}", stderr(&made));
    let broker = Broker::start_with_kafka(weir_server::ServerConfig {
        admin_listen: None,
        kafka_tls_cert: Some(certs.path().join("node.pem")),
        kafka_tls_key: Some(certs.path().join("node-key.pem")),
        kafka_tls_client_ca: Some(certs.path().join("ca.pem")),
        ..Default::default()
    });
    let kafka = broker.kafka.clone().expect("a Kafka listener");
    broker.ok(&["topic", "create", "tls-orders", "--partitions", "1"], "");
    let out = run_ok(
        &python,
        &[
            &script("tls_clients.py"),
            &kafka,
            &certs.path().to_string_lossy(),
            "tls-orders",
        ],
    );
    eprint!("{out}");
    assert!(out.contains("confluent-kafka over TLS"), "{out}");
    assert!(out.contains("kafka-python over TLS"), "{out}");
    assert!(out.contains("an untrusted broker certificate"), "{out}");
    // Weir's own CLI reads the same records (gRPC, plaintext): 50 + 50.
    let read = broker.ok(
        &[
            "consume",
            "tls-orders",
            "--from",
            "beginning",
            "--count",
            "100",
        ],
        "",
    );
    assert_eq!(read.lines().count(), 100, "{read}");
}

#[test]
fn kafka_clients_with_scram_over_tls_and_acls() {
    let python = python();
    let certs = tempfile::tempdir().expect("temp dir");
    let made = weir_command(&["dev", "certs", "--out", &certs.path().to_string_lossy()])
        .output()
        .expect("weir dev certs");
    assert!(made.status.success(), "{}", stderr(&made));
    let broker = Broker::start_with_kafka(weir_server::ServerConfig {
        admin_listen: None,
        tls_cert: Some(certs.path().join("node.pem")),
        tls_key: Some(certs.path().join("node-key.pem")),
        tls_client_ca: Some(certs.path().join("ca.pem")),
        authentication: weir_server::Authentication::Required,
        authorization: true,
        admin_user: Some("admin".into()),
        admin_password: Some(weir_server::Secret("admin-secret".into())),
        auto_create_topics: false,
        ..Default::default()
    });
    let kafka = broker.kafka.clone().expect("a Kafka listener");
    let out = run_ok(
        &python,
        &[
            &script("sasl_acl_clients.py"),
            &kafka,
            &certs.path().to_string_lossy(),
            "admin",
            "admin-secret",
        ],
    );
    eprint!("{out}");
    for check in [
        "the bootstrap admin authenticates",
        "5 ACLs created",
        "records written to orders and read back",
        "not secret",
        "alice's authorized operations",
        "TopicAuthorizationFailedError",
        "DENY READ wins",
        "bob (no ACL) sees no topic",
        "TOPIC_AUTHORIZATION_FAILED for an existing and a missing topic alike",
        "the controller's own refusals, nothing created",
        "PLAIN over TLS",
        "alice with a wrong password: refused",
        "mallory with a made-up password: refused",
        "DeleteAcls removed",
    ] {
        assert!(out.contains(check), "missing {check:?} in:\n{out}");
    }
}
