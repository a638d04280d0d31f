//! The API from another language: `tests/python/interop.py` drives a broker through
//! grpcio with its defaults (stubs generated from `proto/` at run time) and checks what a
//! Python user relies on: the reason of a whole-call error through
//! `grpc_status.rpc_status.from_call` and of a per-partition error, the idempotent
//! producer with plain records, default fetches of 10 partitions that fit grpcio's
//! 4 MiB receive limit, offset lookups by the OffsetPosition enum (UNSPECIFIED refused),
//! and ListTopics followed page by page. `tests/python/setup.sh` installs the pinned client from PyPI into
//! `tests/python/.venv` on first use.

use crate::common;

use std::path::PathBuf;
use std::process::Command;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_grpcio_client_gets_reasons_idempotence_and_fetches_within_4_mib() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let setup = root.join("tests/python/setup.sh");
    let installed = tokio::task::spawn_blocking(move || Command::new("bash").arg(setup).output())
        .await
        .unwrap()
        .expect("runs tests/python/setup.sh");
    assert!(
        installed.status.success(),
        "tests/python/setup.sh failed: {}",
        String::from_utf8_lossy(&installed.stderr)
    );
    let python = String::from_utf8(installed.stdout)
        .unwrap()
        .trim()
        .to_owned();

    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let (script, proto) = (root.join("tests/python/interop.py"), root.join("proto"));
    let address = server.addr.to_string();
    let run = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .args(["--kill-after=10", "300", &python])
            .arg(script)
            .args(["--address", &address, "--proto-dir"])
            .arg(proto)
            .output()
    })
    .await
    .unwrap()
    .expect("runs interop.py");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr),
    );
    println!("{stdout}");
    assert!(
        run.status.success(),
        "interop.py failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("reason UNKNOWN_TOPIC"), "{stdout}");
    server.shutdown().await.unwrap();
}

/// The user guide's Python worker (`tests/python/queue_worker.py`, shown in
/// docs/guide.md as it is)
/// against a broker: every task done once, a flaky one retried after its backoff, a
/// poison one rejected after its tries and found in the dead-letter topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guide_s_python_queue_worker_does_retries_and_dead_letters() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = root.join("tests/python/queue_worker.py");
    let guide = std::fs::read_to_string(root.join("docs/guide.md")).unwrap();
    let shown = std::fs::read_to_string(&script).unwrap();
    assert!(
        guide.contains(&format!("```python\n{shown}```")),
        "docs/guide.md shows tests/python/queue_worker.py as it is"
    );
    let setup = root.join("tests/python/setup.sh");
    let installed = tokio::task::spawn_blocking(move || Command::new("bash").arg(setup).output())
        .await
        .unwrap()
        .expect("runs tests/python/setup.sh");
    assert!(installed.status.success());
    let python = String::from_utf8(installed.stdout)
        .unwrap()
        .trim()
        .to_owned();

    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = connect(server.addr).await;
    c.create("tasks", 1, &[]).await;
    c.create("tasks-dlq", 1, &[]).await;
    weir_proto::v1::queues_client::QueuesClient::new(c.channel.clone())
        .configure_share_group(weir_proto::v1::ConfigureShareGroupRequest {
            group_id: "workers".into(),
            dead_letter_topic: Some("tasks-dlq".into()),
            ..Default::default()
        })
        .await
        .expect("configured");
    let mut values: Vec<String> = (0..10).map(|i| format!("task-{i}")).collect();
    values.extend(["flaky-1", "flaky-2", "poison-1"].map(String::from));
    let produced = c
        .produce(request(
            "tasks",
            vec![plain(0, &values, weir_proto::v1::Compression::None)],
            weir_proto::v1::Acks::All,
        ))
        .await;
    assert!(produced.results[0].error.is_none());

    let (proto, address) = (root.join("proto"), server.addr.to_string());
    let run = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .args(["--kill-after=10", "120", &python])
            .arg(script)
            .args(["--address", &address, "--count", "13", "--proto-dir"])
            .arg(proto)
            .output()
    })
    .await
    .unwrap()
    .expect("runs queue_worker.py");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "queue_worker.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("finished 13 tasks"), "{stdout}");
    for i in 0..10 {
        assert_eq!(
            stdout.matches(&format!("task task-{i} ")).count(),
            1,
            "{stdout}"
        );
    }
    assert!(stdout.contains("task flaky-1 (delivery 2)"), "{stdout}");
    assert!(!stdout.contains("task flaky-1 (delivery 3)"), "{stdout}");
    assert!(stdout.contains("task poison-1 (delivery 3)"), "{stdout}");
    let dead: Vec<String> = c
        .fetch_all("tasks-dlq", 0, 0)
        .await
        .into_iter()
        .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
        .collect();
    assert_eq!(dead, ["poison-1"]);
    server.shutdown().await.unwrap();
}
