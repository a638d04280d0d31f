//! Three brokers in one process, each a controller voter, on 127.0.0.1: the cluster
//! forms, a replicated topic keeps every acknowledged record on every replica, and a
//! leader that stops hands its partitions to an in-sync follower with nothing lost.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use weir_proto::v1::*;
use weir_server::{RunningServer, ServerConfig, Voter};

const NODES: i32 = 3;

struct Node {
    id: i32,
    addr: SocketAddr,
    config: ServerConfig,
    server: Option<RunningServer>,
    _dir: tempfile::TempDir,
}

/// A port free now (bound then released): the voters' addresses must be known before
/// the brokers start.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_cluster() -> Vec<Node> {
    // RUST_LOG=info shows what the brokers do.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let ports: Vec<u16> = (0..NODES).map(|_| free_port()).collect();
    let voters: Vec<Voter> = (1..=NODES)
        .map(|id| Voter {
            id,
            addr: format!("127.0.0.1:{}", ports[(id - 1) as usize]),
        })
        .collect();
    let mut nodes = Vec::new();
    for id in 1..=NODES {
        let dir = tempfile::tempdir().unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", ports[(id - 1) as usize])
            .parse()
            .unwrap();
        let config = ServerConfig {
            data_dir: dir.path().to_path_buf(),
            listen: addr,
            admin_listen: None,
            node_id: id,
            controller_voters: voters.clone(),
            ..ServerConfig::default()
        };
        nodes.push(Node {
            id,
            addr,
            config,
            server: None,
            _dir: dir,
        });
    }
    let started =
        futures_util::future::join_all(nodes.iter().map(|n| weir_server::start(n.config.clone())))
            .await;
    for (node, server) in nodes.iter_mut().zip(started) {
        node.server = Some(server.expect("broker starts"));
    }
    nodes
}

/// Waits until `check` holds, for at most `limit`.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn describe(addr: SocketAddr, topic: &str) -> Option<TopicDescription> {
    let mut c = connect(addr).await;
    c.admin
        .describe_topic(DescribeTopicRequest {
            name: topic.to_string(),
        })
        .await
        .ok()?
        .into_inner()
        .topic
}

async fn unfenced_brokers(addr: SocketAddr) -> usize {
    let mut c = connect(addr).await;
    match c.admin.describe_cluster(DescribeClusterRequest {}).await {
        Ok(r) => r.into_inner().brokers.iter().filter(|b| !b.fenced).count(),
        Err(_) => 0,
    }
}

async fn produce_all(
    addr: SocketAddr,
    topic: &str,
    values: &[String],
) -> Result<(), tonic::Status> {
    let mut c = connect(addr).await;
    let response = c
        .producer
        .produce(ProduceRequest {
            topic: topic.into(),
            partitions: vec![PartitionRecords {
                partition: 0,
                data: Some(partition_records::Data::Records(RecordList {
                    records: values
                        .iter()
                        .map(|v| weir_proto::v1::Record {
                            value: Some(v.clone().into_bytes().into()),
                            ..Default::default()
                        })
                        .collect(),
                })),
                ..Default::default()
            }],
            acks: Acks::All as i32,
            ..Default::default()
        })
        .await?
        .into_inner();
    match response.results[0].error.as_ref() {
        None => Ok(()),
        Some(e) => Err(tonic::Status::new(
            tonic::Code::from(e.code),
            e.message.clone(),
        )),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicated_topic_survives_its_leader_stopping() {
    bounded(async {
        let mut nodes = start_cluster().await;
        let first = nodes[0].addr;
        eventually(
            Duration::from_secs(20),
            "three unfenced brokers",
            || async { unfenced_brokers(first).await == 3 },
        )
        .await;
        let mut admin = connect(first).await;
        admin
            .admin
            .create_topic(CreateTopicRequest {
                name: "replicated".into(),
                partitions: 1,
                replication_factor: 3,
                configs: [("min.insync.replicas".to_string(), "2".to_string())].into(),
            })
            .await
            .expect("topic created");
        // The partition's leader, once every replica has taken up its role.
        eventually(
            Duration::from_secs(10),
            "a leader and a full ISR",
            || async {
                describe(first, "replicated").await.is_some_and(|t| {
                    let p = &t.partitions[0];
                    p.leader > 0 && p.isr.len() == 3
                })
            },
        )
        .await;
        let leader = describe(first, "replicated").await.unwrap().partitions[0].leader;
        let leader_addr = nodes.iter().find(|n| n.id == leader).unwrap().addr;
        // Each broker applies the metadata on its own; the leader knows it leads soon.
        eventually(
            Duration::from_secs(10),
            "the leader knows it leads",
            || async {
                describe(leader_addr, "replicated")
                    .await
                    .is_some_and(|t| t.partitions[0].leader == leader)
            },
        )
        .await;
        let first_batch: Vec<String> = (0..100).map(|i| format!("before-{i}")).collect();
        produce_all(leader_addr, "replicated", &first_batch)
            .await
            .expect("acks=all produce on the leader");

        // Every replica holds them: read each one's log through its own broker after
        // it becomes leader below; first, stop the leader gracefully (controlled
        // shutdown moves leadership to an in-sync follower).
        let stopped = nodes.iter_mut().find(|n| n.id == leader).unwrap();
        stopped
            .server
            .take()
            .unwrap()
            .shutdown()
            .await
            .expect("graceful stop");
        let survivor = nodes.iter().find(|n| n.id != leader).unwrap().addr;
        eventually(Duration::from_secs(10), "a new leader", || async {
            describe(survivor, "replicated").await.is_some_and(|t| {
                let l = t.partitions[0].leader;
                l > 0 && l != leader
            })
        })
        .await;
        let new_leader = describe(survivor, "replicated").await.unwrap().partitions[0].leader;
        let new_addr = nodes.iter().find(|n| n.id == new_leader).unwrap().addr;
        eventually(
            Duration::from_secs(10),
            "the new leader knows it leads",
            || async {
                describe(new_addr, "replicated")
                    .await
                    .is_some_and(|t| t.partitions[0].leader == new_leader)
            },
        )
        .await;
        let second_batch: Vec<String> = (0..100).map(|i| format!("after-{i}")).collect();
        produce_all(new_addr, "replicated", &second_batch)
            .await
            .expect("acks=all produce on the new leader (2 in-sync replicas remain)");

        // Nothing lost, nothing doubled, in order.
        let mut c = connect(new_addr).await;
        let values: Vec<String> = c
            .fetch_all("replicated", 0, 0)
            .await
            .into_iter()
            .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
            .collect();
        let expected: Vec<String> = first_batch.into_iter().chain(second_batch).collect();
        assert_eq!(values, expected);

        for node in nodes.iter_mut() {
            if let Some(server) = node.server.take() {
                server.shutdown().await.expect("graceful stop");
            }
        }
    })
    .await;
}
