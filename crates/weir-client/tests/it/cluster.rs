//! The client against three real brokers in one process (each a controller voter, on
//! 127.0.0.1): a producer and a consumer bootstrapped from the partition's leader keep
//! working when that leader stops and another takes over, and the log holds every
//! record once, in order.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use weir_client::{
    Admin, Consumer, ConsumerConfig, ConsumerRecord, Producer, ProducerConfig, ProducerRecord,
    SeekTo,
};
use weir_server::{RunningServer, ServerConfig, Voter};

/// Longest the test waits for the cluster to do something (form, elect, replicate).
const WAIT: Duration = Duration::from_secs(30);

struct Node {
    id: i32,
    addr: SocketAddr,
    server: Option<RunningServer>,
    _dir: tempfile::TempDir,
}

/// A port free now (bound, then released): every voter's address is in every node's
/// configuration before any starts.
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn start_cluster() -> Result<Vec<Node>> {
    let ports = [free_port()?, free_port()?, free_port()?];
    let voters: Vec<Voter> = (1..=3)
        .map(|id| Voter {
            id,
            addr: format!("127.0.0.1:{}", ports[id as usize - 1]),
        })
        .collect();
    let mut configs = Vec::new();
    let mut nodes = Vec::new();
    for id in 1..=3 {
        let dir = tempfile::tempdir()?;
        let addr: SocketAddr = format!("127.0.0.1:{}", ports[id as usize - 1]).parse()?;
        configs.push(ServerConfig {
            kafka_listen: None,
            data_dir: dir.path().to_path_buf(),
            listen: addr,
            admin_listen: None,
            node_id: id,
            controller_voters: voters.clone(),
            ..ServerConfig::default()
        });
        nodes.push(Node {
            id,
            addr,
            server: None,
            _dir: dir,
        });
    }
    // Together: a voter may wait for the others to form the quorum.
    let [a, b, c] = [configs[0].clone(), configs[1].clone(), configs[2].clone()];
    let (a, b, c) = tokio::join!(
        weir_server::start(a),
        weir_server::start(b),
        weir_server::start(c)
    );
    for (node, server) in nodes.iter_mut().zip([a, b, c]) {
        node.server = Some(server.with_context(|| format!("broker {} starts", node.id))?);
    }
    Ok(nodes)
}

/// Waits until `check` holds, failing after [`WAIT`] with `what`.
async fn eventually<F, Fut>(what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !check().await {
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The partition's leader as `at` describes it, if it has one and a full ISR.
async fn settled_leader(at: SocketAddr, topic: &str) -> Option<i32> {
    let admin = Admin::connect(&[at.to_string()]).await.ok()?;
    let p = admin.describe_topic(topic).await.ok()?.partitions.remove(0);
    (p.leader > 0 && p.isr.len() == 3).then_some(p.leader)
}

/// Polls until `count` records arrived (or fails after [`WAIT`]).
async fn consume(consumer: &mut Consumer, count: usize) -> Result<Vec<String>> {
    let deadline = Instant::now() + WAIT;
    let mut out: Vec<ConsumerRecord> = Vec::with_capacity(count);
    while out.len() < count {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {count} records arrived",
            out.len()
        );
        out.extend(
            consumer
                .poll(count - out.len(), Duration::from_millis(200))
                .await?,
        );
    }
    Ok(out
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect())
}

async fn produce(producer: &Producer, prefix: &str) -> Result<()> {
    let mut deliveries = Vec::new();
    for i in 0..100 {
        let record = ProducerRecord::new("replicated", format!("{prefix}-{i}")).partition(0);
        deliveries.push(producer.send(record).await?);
    }
    producer.flush().await;
    for delivery in deliveries {
        delivery.await?;
    }
    Ok(())
}

fn values(prefix: &str) -> Vec<String> {
    (0..100).map(|i| format!("{prefix}-{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_follow_a_partition_to_its_new_leader() -> Result<()> {
    tokio::time::timeout(Duration::from_secs(180), run())
        .await
        .context("the test took over 180 s")?
}

async fn run() -> Result<()> {
    let mut nodes = start_cluster().await?;
    let all: Vec<String> = nodes.iter().map(|n| n.addr.to_string()).collect();
    let admin = Admin::connect(&all).await?;
    eventually("three unfenced brokers", || async {
        admin
            .describe_cluster()
            .await
            .is_ok_and(|c| c.brokers.iter().filter(|b| !b.fenced).count() == 3)
    })
    .await?;
    admin
        .create_topic(
            "replicated",
            1,
            3,
            [("min.insync.replicas".to_owned(), "2".to_owned())].into(),
        )
        .await?;
    let first = nodes[0].addr;
    eventually("a leader with a full ISR", || async {
        settled_leader(first, "replicated").await.is_some()
    })
    .await?;
    let leader = settled_leader(first, "replicated")
        .await
        .context("a leader")?;
    let leader_addr = nodes
        .iter()
        .find(|n| n.id == leader)
        .context("its node")?
        .addr;
    eventually("the leader to know it leads", || async {
        settled_leader(leader_addr, "replicated").await == Some(leader)
    })
    .await?;

    // Bootstrapped from the leader first: when it stops, metadata must come from the
    // others.
    let mut bootstrap = vec![leader_addr.to_string()];
    bootstrap.extend(
        all.iter()
            .filter(|a| **a != leader_addr.to_string())
            .cloned(),
    );
    let producer = Producer::connect(ProducerConfig {
        brokers: bootstrap.clone(),
        ..ProducerConfig::default()
    })
    .await?;
    let mut consumer = Consumer::connect(ConsumerConfig {
        brokers: bootstrap.clone(),
        ..ConsumerConfig::default()
    })
    .await?;
    consumer.assign(&[("replicated", 0)]);
    consumer.seek("replicated", 0, SeekTo::Beginning).await?;

    produce(&producer, "before").await?;
    assert_eq!(consume(&mut consumer, 100).await?, values("before"));

    // The leader stops (a controlled shutdown hands the partition to an in-sync
    // follower); both clients carry on with the new leader.
    let stopped = nodes
        .iter_mut()
        .find(|n| n.id == leader)
        .context("the leader's node")?;
    stopped.server.take().context("running")?.shutdown().await?;
    produce(&producer, "after").await?;
    assert_eq!(
        consume(&mut consumer, 100).await?,
        values("after"),
        "the consumer resumed where it was: nothing skipped, nothing twice"
    );
    assert!(
        consumer
            .poll(10, Duration::from_millis(300))
            .await?
            .is_empty()
    );
    producer.close().await;

    // The log, read afresh from a survivor: every record once, in order.
    let survivor = nodes
        .iter()
        .find(|n| n.server.is_some())
        .context("a survivor")?
        .addr;
    let mut reader = Consumer::connect(ConsumerConfig {
        brokers: vec![survivor.to_string()],
        ..ConsumerConfig::default()
    })
    .await?;
    reader.assign(&[("replicated", 0)]);
    let mut expected = values("before");
    expected.extend(values("after"));
    assert_eq!(consume(&mut reader, 200).await?, expected);

    for node in &mut nodes {
        if let Some(server) = node.server.take() {
            server.shutdown().await?;
        }
    }
    Ok(())
}
