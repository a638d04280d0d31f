//! The web console in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`, installed by `tests/browser/setup.sh`), driven by selenium from
//! `tests/browser/console_browser.py` (the shared venv of `tests/python/setup.sh`),
//! opens the console of a broker with two topics and a lagging group, reads the topic
//! list and the lag, browses to offset 5 of a partition and finds the right record,
//! creates a topic through the form (checked here over gRPC), and saves a screenshot of
//! each page under `<target>/tmp/console-screenshots/`.
//!
//! Where Chromium is missing and cannot be installed (not root, no apt-get), the test
//! says so on stderr (uncaptured: a plain `cargo test` shows it) and stops without
//! checking anything.

use crate::common;

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use common::*;
use weir_proto::v1::groups_client::GroupsClient;
use weir_proto::v1::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_chromium_reads_topics_lag_and_offset_5_and_creates_a_topic() {
    let setup = root().join("tests/browser/setup.sh");
    let browser = tokio::task::spawn_blocking(move || Command::new("bash").arg(setup).output())
        .await
        .unwrap()
        .expect("runs tests/browser/setup.sh");
    if !browser.status.success() {
        // Straight to the process's stderr: the test harness captures println! and
        // eprintln!, and a skip must show in a plain `cargo test` run.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED headless_chromium_reads_topics_lag_and_offset_5_and_creates_a_topic: \
             no Chromium: {}",
            String::from_utf8_lossy(&browser.stderr).trim()
        );
        return;
    }
    let driver = String::from_utf8(browser.stdout).unwrap().trim().to_owned();
    let setup = root().join("tests/python/setup.sh");
    let venv = tokio::task::spawn_blocking(move || Command::new("bash").arg(setup).output())
        .await
        .unwrap()
        .expect("runs tests/python/setup.sh");
    assert!(
        venv.status.success(),
        "tests/python/setup.sh failed: {}",
        String::from_utf8_lossy(&venv.stderr)
    );
    let python = String::from_utf8(venv.stdout).unwrap().trim().to_owned();

    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let admin = server.admin_addr.unwrap();
    let mut c = connect(server.addr).await;
    c.create("orders", 2, &[]).await;
    c.create("audit", 1, &[]).await;
    let values: Vec<String> = (0..10).map(|i| format!("order-{i}")).collect();
    c.produce(request(
        "orders",
        vec![plain(0, &values, Compression::None)],
        Acks::All,
    ))
    .await;
    // A group that read the first 4 records: 6 behind.
    GroupsClient::new(c.channel.clone())
        .commit_offsets(CommitOffsetsRequest {
            group_id: "billing".into(),
            member_id: String::new(),
            member_epoch: -1,
            topics: vec![TopicOffsetCommit {
                topic: "orders".into(),
                partitions: vec![PartitionOffsetCommit {
                    partition: 0,
                    offset: 4,
                    metadata: String::new(),
                }],
            }],
        })
        .await
        .expect("committed");

    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    let script = root().join("tests/browser/console_browser.py");
    let console = format!("http://{admin}");
    let out_arg = out.clone();
    let run = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .args(["--kill-after=10", "120", &python])
            .arg(script)
            .args(["--console", &console, "--driver", &driver, "--out"])
            .arg(out_arg)
            .output()
    })
    .await
    .unwrap()
    .expect("runs console_browser.py");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr),
    );
    assert!(
        run.status.success(),
        "console_browser.py failed:\n{stdout}\n{stderr}"
    );
    let read: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("console_browser.py printed no JSON ({e}):\n{stdout}"));
    println!("the browser read: {read}");
    assert_eq!(read["cluster_title"], "Cluster");
    assert_eq!(read["brokers_alive"], "1 of 1");
    let topics: Vec<&str> = read["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(topics, ["audit", "orders"]);
    assert_eq!(read["group_lag_listed"]["billing"], "6");
    assert_eq!(read["group_lag"], "6");
    assert_eq!(read["record_5"]["value"], "order-5");
    assert_eq!(read["record_5"]["key"], "k-order-5");
    assert!(
        read["url_at_offset_5"]
            .as_str()
            .unwrap()
            .contains("/console/topics/orders/partitions/0?from=offset&offset=5"),
        "{read}"
    );
    assert_eq!(read["created_title"], "Topic created-in-browser");
    assert!(read["live_status"].as_str().unwrap().starts_with("Live:"));
    // The topic the form created, as a client sees it.
    let created = c
        .admin
        .describe_topic(DescribeTopicRequest {
            name: "created-in-browser".into(),
            ..Default::default()
        })
        .await
        .expect("the topic created in the browser exists")
        .into_inner();
    assert_eq!(created.topic.unwrap().partitions.len(), 2);
    for page in [
        "cluster",
        "topics",
        "group",
        "topic",
        "browser",
        "created-topic",
        "live",
    ] {
        let png = out.join(format!("{page}.png"));
        let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
        assert!(bytes.starts_with(b"\x89PNG"), "{} is a PNG", png.display());
    }
    println!("screenshots in {}", out.display());
    server.shutdown().await.unwrap();
}
