//! Node identity and cluster settings through a real broker: the data directory's stamp
//! (refusing another node's directory, stamping an old one, refusing a corrupt stamp),
//! the cluster flags' validation, and the address DescribeCluster advertises.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;

use common::*;
use weir_proto::v1::*;
use weir_server::{ServerConfig, Voter};

async fn describe_cluster(addr: SocketAddr) -> DescribeClusterResponse {
    connect(addr)
        .await
        .admin
        .describe_cluster(DescribeClusterRequest {})
        .await
        .expect("DescribeCluster")
        .into_inner()
}

fn node(dir: &Path, node_id: i32) -> ServerConfig {
    ServerConfig {
        kafka_listen: None,
        node_id,
        ..config(dir)
    }
}

fn voters(specs: &[&str]) -> Vec<Voter> {
    specs.iter().map(|s| s.parse().expect("voter")).collect()
}

#[tokio::test]
async fn a_directory_refuses_another_node_id_and_keeps_its_cluster() {
    bounded(async {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("weir-data");
        let server = weir_server::start(node(&dir, 1)).await.unwrap();
        let first = describe_cluster(server.addr).await;
        assert_eq!((first.controller_id, first.brokers[0].broker_id), (1, 1));
        server.shutdown().await.unwrap();

        let err = weir_server::start(node(&dir, 2)).await.unwrap_err();
        let message = format!("{err:#}");
        assert!(
            message.contains(&format!(
                "data directory {} belongs to node 1",
                dir.display()
            )),
            "{message}"
        );
        assert!(message.contains("node id 2"), "{message}");

        let server = weir_server::start(node(&dir, 1)).await.unwrap();
        let again = describe_cluster(server.addr).await;
        assert_eq!(again.cluster_id, first.cluster_id);
        server.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_directory_from_before_stamps_opens_unchanged_and_is_stamped() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        // What a single-node broker of before stamps and the quorum leaves: topics and
        // metadata.weir only.
        let legacy = weir_cluster::ClusterMetadata {
            cluster_id: "c-from-before".into(),
            topics: [(
                "kept".to_string(),
                weir_cluster::metadata::TopicMetadata {
                    name: "kept".into(),
                    topic_id: "kept-id".into(),
                    replication_factor: 1,
                    configs: Default::default(),
                    partitions: (0..2)
                        .map(|_| weir_cluster::metadata::PartitionAssignment {
                            replicas: vec![0],
                            leader: 0,
                            leader_epoch: 0,
                        })
                        .collect(),
                },
            )]
            .into(),
        };
        legacy.store(dir.path()).unwrap();
        let before = DescribeClusterResponse {
            cluster_id: "c-from-before".into(),
            ..Default::default()
        };

        let server = weir_server::start(node(dir.path(), 7)).await.unwrap();
        let after = describe_cluster(server.addr).await;
        assert_eq!(after.cluster_id, before.cluster_id);
        assert_eq!(after.brokers[0].broker_id, 7);
        let mut c = connect(server.addr).await;
        let topics = c
            .admin
            .list_topics(ListTopicsRequest {
                include_internal: false,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .topics;
        assert_eq!(
            topics
                .iter()
                .map(|t| (t.name.as_str(), t.partitions))
                .collect::<Vec<_>>(),
            [("kept", 2)]
        );
        server.shutdown().await.unwrap();

        let err = weir_server::start(node(dir.path(), 0)).await.unwrap_err();
        assert!(format!("{err:#}").contains("belongs to node 7"), "{err:#}");
    })
    .await;
}

#[tokio::test]
async fn a_corrupt_stamp_stops_the_broker_and_is_left_as_found() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        start(dir.path()).await.shutdown().await.unwrap();
        let path = dir.path().join(weir_cluster::IDENTITY_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[20] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();

        let err = weir_server::start(config(dir.path())).await.unwrap_err();
        let message = format!("{err:#}");
        assert!(
            message.contains(&path.display().to_string()) && message.contains("corrupt"),
            "{message}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    })
    .await;
}

#[tokio::test]
async fn a_stamp_copied_from_another_cluster_is_refused() {
    bounded(async {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let cluster_a = {
            let server = start(a.path()).await;
            let id = describe_cluster(server.addr).await.cluster_id;
            server.shutdown().await.unwrap();
            id
        };
        start(b.path()).await.shutdown().await.unwrap();
        std::fs::copy(
            b.path().join(weir_cluster::IDENTITY_FILE),
            a.path().join(weir_cluster::IDENTITY_FILE),
        )
        .unwrap();

        let err = weir_server::start(config(a.path())).await.unwrap_err();
        let message = format!("{err:#}");
        assert!(
            message.contains("different clusters") && message.contains(&cluster_a),
            "{message}"
        );
    })
    .await;
}

#[tokio::test]
async fn bad_cluster_settings_are_refused_before_the_directory_is_touched() {
    bounded(async {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("weir-data");
        for (config, expected) in [
            (
                ServerConfig {
                    kafka_listen: None,
                    controller_voters: voters(&["1@127.0.0.1:9292", "1@127.0.0.1:9392"]),
                    ..config(&dir)
                },
                "listed twice",
            ),
            (
                ServerConfig {
                    kafka_listen: None,
                    advertise: Some("no-port".into()),
                    ..config(&dir)
                },
                "\"no-port\"",
            ),
            (node(&dir, -1), "negative"),
        ] {
            let err = weir_server::start(config).await.unwrap_err();
            assert!(format!("{err:#}").contains(expected), "{err:#}");
            assert!(!dir.exists(), "{expected}: nothing is created");
        }
    })
    .await;
}

/// Voter addresses nobody listens on: ports bound and released.
fn silent_voters() -> Vec<Voter> {
    (1..=3)
        .map(|id| {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            Voter {
                id,
                addr: format!("127.0.0.1:{port}"),
            }
        })
        .collect()
}

#[tokio::test]
async fn a_node_outside_the_voters_starts_as_an_observer_and_waits_for_a_controller() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = weir_server::start(ServerConfig {
            kafka_listen: None,
            controller_voters: silent_voters(),
            ..node(dir.path(), 4)
        })
        .await
        .expect("an observer starts without a controller");
        // Nothing to follow yet: no controller, and only itself, fenced, as an observer.
        let cluster = describe_cluster(server.addr).await;
        assert_eq!(cluster.controller_id, -1, "{cluster:?}");
        assert_eq!(cluster.brokers.len(), 1, "{cluster:?}");
        let me = &cluster.brokers[0];
        assert!(me.broker_id == 4 && me.fenced && !me.voter, "{cluster:?}");
        // It runs no quorum: no Raft storage is created.
        assert!(!dir.path().join("metadata").exists());
        server.shutdown().await.expect("graceful stop");
    })
    .await;
}

#[tokio::test]
async fn a_single_node_directory_cannot_start_as_an_observer() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("metadata.weir"),
            b"a single node's metadata",
        )
        .unwrap();
        let err = weir_server::start(ServerConfig {
            kafka_listen: None,
            controller_voters: silent_voters(),
            ..node(dir.path(), 4)
        })
        .await
        .unwrap_err();
        let message = format!("{err:#}");
        assert!(
            message.contains("metadata.weir") && message.contains("only a controller voter"),
            "{message}"
        );
    })
    .await;
}

#[tokio::test]
async fn describe_cluster_reports_the_advertised_address() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = weir_server::start(ServerConfig {
            kafka_listen: None,
            listen: "0.0.0.0:0".parse().unwrap(),
            advertise: Some("127.0.0.1:19092".into()),
            ..config(dir.path())
        })
        .await
        .unwrap();
        let reached = SocketAddr::from(([127, 0, 0, 1], server.addr.port()));
        let broker = describe_cluster(reached).await.brokers.remove(0);
        assert_eq!((broker.host.as_str(), broker.port), ("127.0.0.1", 19092));
        server.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn describe_cluster_reports_a_specific_bound_address() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path()).await;
        let broker = describe_cluster(server.addr).await.brokers.remove(0);
        assert_eq!(
            (broker.host.as_str(), broker.port),
            ("127.0.0.1", u32::from(server.addr.port()))
        );
        server.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn listening_on_every_interface_advertises_a_host_name_not_the_wildcard() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = weir_server::start(ServerConfig {
            kafka_listen: None,
            listen: "0.0.0.0:0".parse().unwrap(),
            ..config(dir.path())
        })
        .await
        .unwrap();
        let reached = SocketAddr::from(([127, 0, 0, 1], server.addr.port()));
        let broker = describe_cluster(reached).await.brokers.remove(0);
        assert!(
            !broker.host.is_empty() && broker.host != "0.0.0.0",
            "{broker:?}"
        );
        assert_eq!(broker.port, u32::from(server.addr.port()));
        server.shutdown().await.unwrap();
    })
    .await;
}

/// An observer of a one-voter cluster, started on a fresh directory, joins that cluster:
/// its directory is stamped with the voter's cluster id, and it is unfenced.
#[tokio::test]
async fn an_observer_of_a_single_voter_joins_its_cluster() {
    bounded(async {
        let (voter_dir, observer_dir) =
            (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let voters = vec![Voter {
            id: 1,
            addr: format!("127.0.0.1:{port}"),
        }];
        // The observer first: it must not make up a cluster of its own meanwhile.
        let observer = weir_server::start(ServerConfig {
            kafka_listen: None,
            controller_voters: voters.clone(),
            ..node(observer_dir.path(), 2)
        })
        .await
        .expect("the observer starts");
        let voter = weir_server::start(ServerConfig {
            kafka_listen: None,
            listen: format!("127.0.0.1:{port}").parse().unwrap(),
            controller_voters: voters,
            ..node(voter_dir.path(), 1)
        })
        .await
        .expect("the voter starts");
        wait_until("both brokers unfenced", || async {
            let cluster = describe_cluster(voter.addr).await;
            cluster.brokers.len() == 2 && cluster.brokers.iter().all(|b| !b.fenced)
        })
        .await;
        let stamp = |dir: &Path| {
            weir_cluster::NodeIdentity::load(dir)
                .unwrap()
                .expect("stamped")
                .cluster_id()
                .to_string()
        };
        assert_eq!(stamp(observer_dir.path()), stamp(voter_dir.path()));
        observer.shutdown().await.expect("graceful stop");
        voter.shutdown().await.expect("graceful stop");
    })
    .await;
}
