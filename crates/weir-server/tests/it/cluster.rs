//! Brokers in one process on 127.0.0.1. Three controller voters: the cluster forms, a
//! replicated topic keeps every acknowledged record on every replica, and a leader that
//! stops hands its partitions to an in-sync follower with nothing lost. A fourth broker
//! outside the voter set (an observer) registers, hosts and leads partitions, and
//! follows the metadata through a change of active controller.

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use weir_proto::v1::groups_client::GroupsClient;
use weir_proto::v1::*;
use weir_server::{RunningServer, ServerConfig, Voter};

const VOTERS: i32 = 3;

struct Node {
    id: i32,
    addr: SocketAddr,
    config: ServerConfig,
    server: Option<RunningServer>,
    _dir: tempfile::TempDir,
}

/// A port free now (bound then released): the voters' addresses must be known before
/// the brokers start. Taken below the kernel's ephemeral range (32768 and up by default),
/// from a counter seeded by the process id: a port the system picks (port 0) is in that
/// range, and between its release and the broker's bind an outgoing connection of a test
/// running beside it could take it ("binding the gRPC listener": seen once four tests ran
/// at once). The counter keeps this process from handing one port out twice.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    const FIRST: u16 = 20_000;
    const SPAN: u16 = 12_000;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let seed = (std::process::id() % u32::from(SPAN)) as u16;
    for _ in 0..SPAN {
        let port = FIRST + (seed + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + SPAN);
}

/// The rack each test broker registers with: two racks.
fn rack_of(id: i32) -> String {
    format!("rack-{}", id % 2)
}

/// Nodes 1 to `nodes`, of which 1 to [`VOTERS`] are the controller voters.
async fn start_cluster(nodes: i32) -> Vec<Node> {
    // RUST_LOG=info shows what the brokers do.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let ports: Vec<u16> = (0..nodes).map(|_| free_port()).collect();
    let voters: Vec<Voter> = (1..=VOTERS)
        .map(|id| Voter {
            id,
            addr: format!("127.0.0.1:{}", ports[(id - 1) as usize]),
        })
        .collect();
    let mut started_nodes = Vec::new();
    for id in 1..=nodes {
        let dir = tempfile::tempdir().unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", ports[(id - 1) as usize])
            .parse()
            .unwrap();
        let config = ServerConfig {
            kafka_listen: None,
            data_dir: dir.path().to_path_buf(),
            listen: addr,
            admin_listen: Some("127.0.0.1:0".parse().unwrap()),
            node_id: id,
            controller_voters: voters.clone(),
            rack: Some(rack_of(id)),
            ..ServerConfig::default()
        };
        started_nodes.push(Node {
            id,
            addr,
            config,
            server: None,
            _dir: dir,
        });
    }
    let mut nodes = started_nodes;
    let started =
        futures_util::future::join_all(nodes.iter().map(|n| weir_server::start(n.config.clone())))
            .await;
    for (node, server) in nodes.iter_mut().zip(started) {
        node.server = Some(server.expect("broker starts"));
    }
    nodes
}

/// The three voters, started and every one registered and unfenced.
async fn formed_cluster() -> Vec<Node> {
    let nodes = start_cluster(VOTERS).await;
    let first = nodes[0].addr;
    eventually(
        Duration::from_secs(20),
        "three unfenced brokers",
        || async { unfenced_brokers(first).await == 3 },
    )
    .await;
    nodes
}

async fn stop_all(nodes: &mut [Node]) {
    for node in nodes.iter_mut() {
        if let Some(server) = node.server.take() {
            server.shutdown().await.expect("graceful stop");
        }
    }
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
            allow_auto_create: false,
        })
        .await
        .ok()?
        .into_inner()
        .topic
}

async fn describe_cluster(addr: SocketAddr) -> Option<DescribeClusterResponse> {
    let mut c = connect(addr).await;
    Some(
        c.admin
            .describe_cluster(DescribeClusterRequest {})
            .await
            .ok()?
            .into_inner(),
    )
}

async fn unfenced_brokers(addr: SocketAddr) -> usize {
    describe_cluster(addr)
        .await
        .map_or(0, |c| c.brokers.iter().filter(|b| !b.fenced).count())
}

async fn create_topic(addr: SocketAddr, name: &str, partitions: u32, replication_factor: u32) {
    let mut admin = connect(addr).await;
    admin
        .admin
        .create_topic(CreateTopicRequest {
            name: name.into(),
            partitions,
            replication_factor,
            configs: [("min.insync.replicas".to_string(), "2".to_string())].into(),
        })
        .await
        .expect("topic created");
}

/// Whether every partition of `topic`, as the broker at `addr` sees it, has a leader and
/// `isr` in-sync replicas.
async fn settled(addr: SocketAddr, topic: &str, isr: usize) -> bool {
    describe(addr, topic).await.is_some_and(|t| {
        t.partitions
            .iter()
            .all(|p| p.leader > 0 && p.isr.len() == isr)
    })
}

async fn produce_all(
    addr: SocketAddr,
    topic: &str,
    partition: u32,
    values: &[String],
) -> Result<(), tonic::Status> {
    let mut c = connect(addr).await;
    let response = c
        .producer
        .produce(ProduceRequest {
            topic: topic.into(),
            partitions: vec![PartitionRecords {
                partition,
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
        let mut nodes = formed_cluster().await;
        let first = nodes[0].addr;
        create_topic(first, "replicated", 1, 3).await;
        // The partition's leader, once every replica has taken up its role.
        eventually(
            Duration::from_secs(10),
            "a leader and a full ISR",
            || async { settled(first, "replicated", 3).await },
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
        produce_all(leader_addr, "replicated", 0, &first_batch)
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
        produce_all(new_addr, "replicated", 0, &second_batch)
            .await
            .expect("acks=all produce on the new leader (2 in-sync replicas remain)");
        // Its metrics say so: under-replicated partitions (this one, and the
        // __consumer_offsets partitions it now leads), and every partition led.
        let node = nodes.iter().find(|n| n.id == new_leader).unwrap();
        let admin = node.server.as_ref().unwrap().admin_addr.unwrap();
        eventually(
            Duration::from_secs(10),
            "the new leader reports the partition under-replicated",
            || async {
                let (_, body) = http_get(admin, "/metrics").await;
                let under = body
                    .lines()
                    .find_map(|l| l.strip_prefix("weir_under_replicated_partitions "))
                    .and_then(|v| v.parse::<u32>().ok());
                under.is_some_and(|n| n >= 1)
                    && body.lines().any(|l| l == "weir_offline_partitions 0")
            },
        )
        .await;

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
        stop_all(&mut nodes).await;
    })
    .await;
}

/// The active controller's node stops slowly: a client holds a request half sent, so
/// the graceful stop waits for it with the listeners already closed to new requests.
/// Once its controlled shutdown is done the node leaves the metadata quorum, so the
/// other voters elect a controller meanwhile and nobody fences them. Before, the
/// stopping node kept leading the quorum, heard none of their heartbeats and fenced
/// both after the 2 s session timeout, leaving every partition without a leader (seen
/// once in 30 restarts of the compose cluster, whose controller's stop took 2.7 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_controller_hands_the_quorum_over_before_its_listeners_close() {
    bounded(async {
        let mut nodes = formed_cluster().await;
        let first = nodes[0].addr;
        let controller = describe_cluster(first).await.unwrap().controller_id;
        assert!(controller > 0, "an active controller");
        let controller_addr = addr_of(&nodes, controller);
        let held = half_sent_request(controller_addr).await;

        let node = nodes.iter_mut().find(|n| n.id == controller).unwrap();
        let server = node.server.take().unwrap();
        let stopping = tokio::spawn(server.shutdown());
        let survivor = nodes.iter().find(|n| n.id != controller).unwrap().addr;
        eventually(
            Duration::from_secs(10),
            "another voter elected controller while the old one is still stopping",
            || async {
                describe_cluster(survivor)
                    .await
                    .is_some_and(|c| c.controller_id > 0 && c.controller_id != controller)
            },
        )
        .await;
        assert!(
            !stopping.is_finished(),
            "the stop is held by the half-sent request"
        );
        // Two session timeouts: the survivors heartbeat to the new controller and stay
        // unfenced (the stopping node, which leads nothing, may be fenced).
        let watch_until = tokio::time::Instant::now() + Duration::from_secs(4);
        while tokio::time::Instant::now() < watch_until {
            let cluster = describe_cluster(survivor)
                .await
                .expect("a survivor answers");
            for broker in cluster.brokers.iter().filter(|b| b.broker_id != controller) {
                assert!(
                    !broker.fenced,
                    "broker {} fenced while the old controller stopped: {cluster:?}",
                    broker.broker_id
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop(held);
        tokio::time::timeout(Duration::from_secs(10), stopping)
            .await
            .expect("the stop ends once the request is gone")
            .unwrap()
            .expect("graceful stop");
        stop_all(&mut nodes).await;
    })
    .await;
}

/// An HTTP/2 connection to `addr` with one gRPC request whose message is announced
/// (100 bytes) but never sent: a graceful stop of that broker waits for it until the
/// returned handle is dropped.
async fn half_sent_request(addr: SocketAddr) -> HalfSent {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::post(format!("http://{addr}/weir.v1.Admin/DescribeCluster"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (_response, mut body) = client.send_request(request, false).unwrap();
    // The gRPC message prefix: not compressed, 100 bytes to follow.
    body.send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 100]), false)
        .unwrap();
    HalfSent { connection, body }
}

/// See [`half_sent_request`]; dropping it cancels the request and closes the connection.
struct HalfSent {
    connection: tokio::task::JoinHandle<Result<(), h2::Error>>,
    body: h2::SendStream<bytes::Bytes>,
}

impl Drop for HalfSent {
    fn drop(&mut self) {
        self.body.send_reset(h2::Reason::CANCEL);
        self.connection.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_broker_hosts_leads_restarts_and_follows_a_controller_change() {
    bounded(async {
        let observer_id = VOTERS + 1;
        let mut nodes = start_cluster(VOTERS + 1).await;
        let observer = nodes.iter().find(|n| n.id == observer_id).unwrap().addr;
        // The observer registers and is unfenced once its image has caught up.
        eventually(
            Duration::from_secs(20),
            "four unfenced brokers, seen by the observer",
            || async { unfenced_brokers(observer).await == 4 },
        )
        .await;
        let cluster = describe_cluster(observer).await.unwrap();
        assert!(
            (1..=VOTERS).contains(&cluster.controller_id),
            "the observer names a voter as the controller: {cluster:?}"
        );
        for b in &cluster.brokers {
            assert_eq!(b.voter, b.broker_id != observer_id, "{cluster:?}");
            assert_eq!(b.rack, rack_of(b.broker_id), "{cluster:?}");
        }

        // Admin calls on the observer reach the controller; placement spreads four
        // leaders over four brokers, so the observer leads one of them.
        create_topic(observer, "spread", 4, 2).await;
        eventually(
            Duration::from_secs(10),
            "every partition led, with a full ISR, seen by the observer",
            || async { settled(observer, "spread", 2).await },
        )
        .await;
        let spread = describe(observer, "spread").await.unwrap();
        for p in &spread.partitions {
            assert_ne!(
                rack_of(p.replicas[0]),
                rack_of(p.replicas[1]),
                "replicas in different racks: {spread:?}"
            );
        }
        let led = spread
            .partitions
            .iter()
            .find(|p| p.leader == observer_id)
            .unwrap_or_else(|| panic!("the observer leads no partition: {spread:?}"));
        let (partition, follower) = (
            led.partition,
            *led.replicas.iter().find(|r| **r != observer_id).unwrap(),
        );
        let values: Vec<String> = (0..50).map(|i| format!("observed-{i}")).collect();
        produce_all(observer, "spread", partition, &values)
            .await
            .expect("acks=all produce on the observer, which leads the partition");
        let read_back = |addr: SocketAddr| async move {
            let mut c = connect(addr).await;
            c.fetch_all("spread", partition, 0)
                .await
                .into_iter()
                .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
                .collect::<Vec<String>>()
        };
        assert_eq!(read_back(observer).await, values);

        // A restarted observer starts from an empty image, fetches it whole, keeps its
        // partitions' data and rejoins their ISRs.
        let restarted = restart(&mut nodes, observer_id).await;
        eventually(
            Duration::from_secs(20),
            "the restarted observer back in every ISR it belongs to",
            || async {
                unfenced_brokers(restarted).await == 4 && settled(restarted, "spread", 2).await
            },
        )
        .await;
        // Its copy is whole: with the other replica stopped, it leads again and serves
        // every record.
        stop(&mut nodes, follower).await;
        eventually(
            Duration::from_secs(15),
            "the observer leads its partition again",
            || async {
                describe(restarted, "spread")
                    .await
                    .is_some_and(|t| t.partitions[partition as usize].leader == observer_id)
            },
        )
        .await;
        assert_eq!(read_back(restarted).await, values);
        start_again(&mut nodes, follower).await;
        eventually(
            Duration::from_secs(20),
            "four unfenced brokers again",
            || async { unfenced_brokers(restarted).await == 4 },
        )
        .await;

        // The active controller stops; the observer finds the next one and keeps
        // following: a topic created through it afterwards shows up in its image.
        // The observer forgets the controller when a call to it fails (the restart of
        // `follower` may just have moved it): wait until it names one again.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        let controller = loop {
            let id = describe_cluster(restarted)
                .await
                .map_or(-1, |c| c.controller_id);
            if id > 0 {
                break id;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no controller named"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        stop(&mut nodes, controller).await;
        eventually(
            Duration::from_secs(15),
            "the observer names a new controller",
            || async {
                describe_cluster(restarted)
                    .await
                    .is_some_and(|c| c.controller_id > 0 && c.controller_id != controller)
            },
        )
        .await;
        create_topic(restarted, "after", 2, 2).await;
        eventually(
            Duration::from_secs(10),
            "the topic created after the change, led, seen by the observer",
            || async { settled(restarted, "after", 2).await },
        )
        .await;
        stop_all(&mut nodes).await;
    })
    .await;
}

/// Stops node `id` gracefully.
/// A broker's web console in a cluster: the cluster page lists every broker with its
/// disk use, the group list holds the groups every broker coordinates, each with its
/// coordinator and its lag, a group another broker coordinates has its page (described
/// there), and a partition another broker leads is a clear answer naming that broker
/// and its address (421), not an obscure failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_s_console_names_the_leader_of_a_partition_it_does_not_lead() {
    let mut nodes = formed_cluster().await;
    let first = nodes[0].addr;
    let admin = nodes[0].server.as_ref().unwrap().admin_addr.unwrap();
    connect(first)
        .await
        .admin
        .create_topic(CreateTopicRequest {
            name: "spread".into(),
            partitions: 6,
            replication_factor: 1,
            configs: Default::default(),
        })
        .await
        .expect("topic created");
    eventually(Duration::from_secs(20), "spread has leaders", || async {
        settled(first, "spread", 1).await
    })
    .await;
    let topic = describe(first, "spread").await.unwrap();
    let elsewhere = topic
        .partitions
        .iter()
        .find(|p| p.leader != nodes[0].id)
        .expect("six partitions over three brokers: some led by another");
    let leader_addr = addr_of(&nodes, elsewhere.leader);

    let (status, page) = http_get(admin, "/console/").await;
    assert!(status.contains("200"), "{status}");
    assert!(page.contains(">3 of 3<"), "three brokers alive: {page}");
    assert_eq!(
        page.matches(" replicas</td>").count(),
        3,
        "every broker's disk use, asked of each: {page}"
    );

    // Five records in spread/0, at its leader: every group below commits offset 0.
    let spread0 = topic.partitions[0].leader;
    let values: Vec<String> = (0..5).map(|i| format!("r{i}")).collect();
    produce_all(addr_of(&nodes, spread0), "spread", 0, &values)
        .await
        .expect("produced at the leader");

    // Groups whose offsets live on each broker: a commit goes to the coordinator, which
    // takes it whether or not it hosts spread/0 (one broker does; it was refused as
    // NOT_LEADER by the others before).
    let mut coordinators = std::collections::BTreeMap::new();
    for i in 0..12 {
        let group = format!("billing-{i}");
        // Each broker opens its groups once it is unfenced, shortly after the cluster
        // forms: until then finding a coordinator and committing are UNAVAILABLE
        // (retriable).
        let found = std::sync::Mutex::new(None);
        eventually(
            Duration::from_secs(20),
            "a commit at the coordinator",
            || async {
                match commit_at_coordinator(&nodes, first, &group).await {
                    Ok(coordinator) => {
                        *found.lock().unwrap() = Some(coordinator);
                        true
                    }
                    Err(s) if s.code() == tonic::Code::Unavailable => false,
                    Err(s) => panic!("commit at the coordinator: {s:?}"),
                }
            },
        )
        .await;
        coordinators.insert(group, found.into_inner().unwrap().unwrap());
    }
    let (group, coordinator) = coordinators
        .iter()
        .find(|(_, c)| **c != nodes[0].id)
        .expect("twelve groups over three brokers' __consumer_offsets partitions");
    let (status, page) = http_get(admin, "/console/groups").await;
    assert!(status.contains("200"), "{status}");
    for listed in coordinators.keys() {
        assert!(page.contains(&format!(">{listed}</a>")), "{listed}: {page}");
    }
    let row = page
        .split("<tr>")
        .find(|row| row.contains(&format!(">{group}</a>")))
        .unwrap();
    assert!(
        row.contains(&format!("<td class=\"num\">{coordinator}</td>")),
        "{group} is coordinated by broker {coordinator}: {row}"
    );
    assert!(!page.contains("is not listed"), "{page}");
    // Its lag, asked of its coordinator: offset 0 committed of spread/0's 5 records.
    assert!(
        row.contains(">5</td>"),
        "{group}'s lag from broker {coordinator}: {row}"
    );
    // Its page here, described by its coordinator; changes are made there.
    let (status, page) = http_get(admin, &format!("/console/groups/{group}")).await;
    assert!(status.contains("200"), "{status}: {page}");
    assert!(
        page.contains(&format!("<dd id=\"coordinator\">broker {coordinator}</dd>")),
        "{page}"
    );
    assert!(page.contains("id=\"changed-elsewhere\""), "{page}");
    let offsets = page
        .split("<table id=\"offsets\">")
        .nth(1)
        .expect("offsets table");
    assert!(offsets.contains(">spread</a>"), "{offsets}");
    assert!(
        offsets.contains("offset=0\">0</a>"),
        "committed 0: {offsets}"
    );

    // A coordinator that hosts no replica of spread/0 asks its leader for the lag.
    let (group, coordinator) = coordinators
        .iter()
        .find(|(_, c)| **c != spread0)
        .expect("groups coordinated by the two brokers without spread/0");
    let described = connect(addr_of(&nodes, *coordinator))
        .await
        .admin
        .describe_group(DescribeGroupRequest {
            group_id: group.clone(),
            ..Default::default()
        })
        .await
        .expect("described at the coordinator")
        .into_inner();
    let progress = &described.offsets[0];
    assert_eq!(
        (
            progress.committed_offset,
            progress.high_watermark,
            progress.lag
        ),
        (0, 5, 5),
        "{group} at broker {coordinator}, spread/0 led by {spread0}: {described:?}"
    );
    // And for the bounds of an offset reset: to the end, and to a timestamp (every
    // record was written after the Unix epoch began, so the first one).
    let reset = |to| ResetOffsetsRequest {
        group_id: group.clone(),
        topics: vec![TopicPartitions {
            topic: "spread".into(),
            partitions: vec![0],
        }],
        spec: Some(OffsetResetSpec { to: Some(to) }),
        dry_run: false,
    };
    let mut at_coordinator = connect(addr_of(&nodes, *coordinator)).await.admin;
    for (to, expected) in [
        (
            offset_reset_spec::To::Position(OffsetPosition::Latest.into()),
            5,
        ),
        (offset_reset_spec::To::TimestampMs(1), 0),
    ] {
        let plan = at_coordinator
            .reset_offsets(reset(to))
            .await
            .unwrap_or_else(|e| panic!("{to:?} at broker {coordinator}: {e:?}"))
            .into_inner();
        assert_eq!(plan.partitions[0].new_offset, expected, "{to:?}: {plan:?}");
    }
    let (status, page) = http_get(
        admin,
        &format!("/console/topics/spread/partitions/{}", elsewhere.partition),
    )
    .await;
    assert!(status.contains("421"), "{status}: {page}");
    assert!(page.contains("NOT_LEADER"), "{page}");
    assert!(
        page.contains(&format!(
            "Broker {} leads this partition (client address {leader_addr})",
            elsewhere.leader
        )),
        "{page}"
    );
    let (status, page) = http_get(admin, "/console/topics/spread").await;
    assert!(status.contains("200"), "{status}");
    assert!(
        page.contains(&format!(
            "not on this broker: ask broker {}",
            elsewhere.leader
        )),
        "{page}"
    );
    stop_all(&mut nodes).await;
}

/// Commits offset 0 of spread/0 for `group` at its coordinator, found through `first`;
/// the coordinator's id.
async fn commit_at_coordinator(
    nodes: &[Node],
    first: SocketAddr,
    group: &str,
) -> Result<i32, tonic::Status> {
    let found = GroupsClient::new(connect(first).await.channel)
        .find_coordinator(FindCoordinatorRequest {
            group_id: group.into(),
            r#type: CoordinatorType::Group as i32,
        })
        .await?
        .into_inner();
    GroupsClient::new(connect(addr_of(nodes, found.broker_id)).await.channel)
        .commit_offsets(CommitOffsetsRequest {
            group_id: group.into(),
            member_id: String::new(),
            member_epoch: -1,
            topics: vec![TopicOffsetCommit {
                topic: "spread".into(),
                partitions: vec![PartitionOffsetCommit {
                    partition: 0,
                    offset: 0,
                    metadata: String::new(),
                }],
            }],
        })
        .await?;
    Ok(found.broker_id)
}

async fn stop(nodes: &mut [Node], id: i32) {
    let node = nodes.iter_mut().find(|n| n.id == id).unwrap();
    node.server
        .take()
        .expect("running")
        .shutdown()
        .await
        .expect("graceful stop");
}

/// Stops node `id` gracefully and starts it again on its data directory; its address.
async fn restart(nodes: &mut [Node], id: i32) -> SocketAddr {
    stop(nodes, id).await;
    start_again(nodes, id).await
}

/// Starts the stopped node `id` again on its data directory; its address.
///
/// In one process, a stopped broker's last tasks may still hold its data directory's
/// lock for a moment after `shutdown` returns (seen once under a loaded full test run:
/// "the data directory is in use by another broker"); a restarted process never meets
/// that. So a start refused for the lock is tried again for up to 5 s; a lock held for
/// good still fails the test.
async fn start_again(nodes: &mut [Node], id: i32) -> SocketAddr {
    let node = nodes.iter_mut().find(|n| n.id == id).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let server = loop {
        match weir_server::start(node.config.clone()).await {
            Ok(server) => break server,
            Err(e)
                if format!("{e:#}").contains("in use by another broker")
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("broker starts again: {e:#}"),
        }
    };
    node.server = Some(server);
    node.addr
}

/// The values of partition `partition` of `topic` read through the broker at `addr`.
async fn read_values(addr: SocketAddr, topic: &str, partition: u32) -> Vec<String> {
    let mut c = connect(addr).await;
    c.fetch_all(topic, partition, 0)
        .await
        .into_iter()
        .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
        .collect()
}

/// The address of node `id`.
fn addr_of(nodes: &[Node], id: i32) -> SocketAddr {
    nodes.iter().find(|n| n.id == id).unwrap().addr
}

/// Waits until the broker `id` knows it leads partition 0 of `topic`; its address.
async fn leader_ready(nodes: &[Node], topic: &str, id: i32) -> SocketAddr {
    let addr = addr_of(nodes, id);
    eventually(
        Duration::from_secs(10),
        "the leader knows it leads",
        || async {
            describe(addr, topic)
                .await
                .is_some_and(|t| t.partitions[0].leader == id)
        },
    )
    .await;
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reassignment_moves_the_leader_replica_to_a_new_broker_with_nothing_lost() {
    bounded(async {
        let mut nodes = start_cluster(VOTERS + 1).await;
        let first = nodes[0].addr;
        eventually(Duration::from_secs(20), "four unfenced brokers", || async {
            unfenced_brokers(first).await == 4
        })
        .await;
        create_topic(first, "moving", 1, 3).await;
        eventually(
            Duration::from_secs(10),
            "a leader and a full ISR",
            || async { settled(first, "moving", 3).await },
        )
        .await;
        let before = describe(first, "moving").await.unwrap();
        let topic_id = before.topic_id.clone();
        let p = &before.partitions[0];
        let (old_leader, replicas) = (p.leader, p.replicas.clone());
        let newcomer = (1..=4).find(|b| !replicas.contains(b)).unwrap();
        let leader_addr = leader_ready(&nodes, "moving", old_leader).await;
        let first_batch: Vec<String> = (0..300).map(|i| format!("before-{i}")).collect();
        produce_all(leader_addr, "moving", 0, &first_batch)
            .await
            .expect("acks=all produce");

        // The leader's copy moves to the newcomer, which becomes the preferred leader.
        let target: Vec<i32> = std::iter::once(newcomer)
            .chain(replicas.iter().copied().filter(|b| *b != old_leader))
            .collect();
        let mut admin = connect(first).await;
        let started = admin
            .admin
            .alter_partition_reassignments(AlterPartitionReassignmentsRequest {
                topic: "moving".into(),
                partitions: vec![PartitionReassignment {
                    partition: 0,
                    replicas: target.clone(),
                    cancel: false,
                }],
                throttle_bytes_per_sec: 1_000_000,
            })
            .await
            .expect("reassignment starts")
            .into_inner()
            .topic
            .unwrap();
        let moving = &started.partitions[0];
        // Started, or (if the newcomer caught up at once) already complete.
        if !moving.adding_replicas.is_empty() {
            assert_eq!(moving.adding_replicas, vec![newcomer], "{moving:?}");
            assert_eq!(moving.removing_replicas, vec![old_leader], "{moving:?}");
            assert_eq!(moving.reassignment_throttle_bytes_per_sec, 1_000_000);
        }
        eventually(Duration::from_secs(30), "the move completes", || async {
            describe(first, "moving").await.is_some_and(|t| {
                let p = &t.partitions[0];
                p.replicas == target && p.adding_replicas.is_empty() && p.isr.len() == 3
            })
        })
        .await;
        let after = describe(first, "moving").await.unwrap();
        assert_eq!(after.partitions[0].leader, newcomer, "{after:?}");

        // The old leader let go of its copy: its directory is gone.
        let old_dir = nodes
            .iter()
            .find(|n| n.id == old_leader)
            .unwrap()
            .config
            .data_dir
            .join("topics")
            .join(&topic_id)
            .join("0");
        eventually(Duration::from_secs(10), "the old copy deleted", || async {
            !old_dir.exists()
        })
        .await;

        // The new leader takes acks=all writes, and holds every record once, in order.
        let new_addr = leader_ready(&nodes, "moving", newcomer).await;
        let second_batch: Vec<String> = (0..100).map(|i| format!("after-{i}")).collect();
        produce_all(new_addr, "moving", 0, &second_batch)
            .await
            .expect("acks=all produce on the new leader");
        let expected: Vec<String> = first_batch.into_iter().chain(second_batch).collect();
        assert_eq!(read_values(new_addr, "moving", 0).await, expected);

        // The metrics tell: one active controller, the election the move made (seen by
        // every broker), nothing moving.
        let mut active = 0;
        for node in &nodes {
            let admin = node.server.as_ref().unwrap().admin_addr.unwrap();
            let (_, body) = http_get(admin, "/metrics").await;
            let metric = |name: &str| {
                body.lines()
                    .find_map(|l| l.strip_prefix(&format!("{name} ")))
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or_else(|| panic!("{name} missing: {body}"))
            };
            active += metric("weir_active_controller");
            assert!(metric("weir_leader_elections_total") >= 1);
            assert_eq!(metric("weir_reassigning_partitions"), 0);
        }
        assert_eq!(active, 1);

        // Bad moves are refused with INVALID_ARGUMENT and change nothing.
        for (replicas, cancel, want) in [
            (vec![newcomer, newcomer], false, "twice"),
            (vec![1, 2, 99], false, "99"),
            (vec![], true, "no reassignment is in progress"),
        ] {
            let err = admin
                .admin
                .alter_partition_reassignments(AlterPartitionReassignmentsRequest {
                    topic: "moving".into(),
                    partitions: vec![PartitionReassignment {
                        partition: 0,
                        replicas,
                        cancel,
                    }],
                    throttle_bytes_per_sec: 0,
                })
                .await
                .unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
            assert!(err.message().contains(want), "{want}: {}", err.message());
        }
        assert_eq!(
            describe(first, "moving").await.unwrap().partitions[0].replicas,
            target
        );
        stop_all(&mut nodes).await;
    })
    .await;
}

/// The broker coordinating share group `group`, as the broker at `addr` answers.
async fn share_coordinator(addr: SocketAddr, group: &str) -> Option<i32> {
    let c = connect(addr).await;
    let found = weir_proto::v1::groups_client::GroupsClient::new(c.channel)
        .find_coordinator(FindCoordinatorRequest {
            group_id: group.into(),
            r#type: CoordinatorType::Share as i32,
        })
        .await
        .ok()?
        .into_inner();
    (found.broker_id > 0).then_some(found.broker_id)
}

/// Waits (at most 20 s) until the broker at `addr` names a share coordinator of `group`
/// other than `not`.
async fn found_share_coordinator(addr: SocketAddr, group: &str, not: Option<i32>) -> i32 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(id) = share_coordinator(addr, group).await
            && Some(id) != not
        {
            return id;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no share coordinator for {group}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Share-fetches through the broker at `addr` until `want` records came back (a
/// coordinator that follows the partition sees records a replication round trip late).
async fn share_fetch_until(
    addr: SocketAddr,
    group: &str,
    member: &str,
    want: usize,
) -> Vec<SharedRecord> {
    let c = connect(addr).await;
    let mut q = weir_proto::v1::queues_client::QueuesClient::new(c.channel);
    let mut got = Vec::new();
    // A failover's load and leader moves take seconds here, but the CI machine runs this
    // binary's 90 tests on 2 cores at once: 20 s was once not enough there.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while got.len() < want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {want} records",
            got.len()
        );
        match q
            .share_fetch(ShareFetchRequest {
                group_id: group.into(),
                member_id: member.into(),
                topics: vec!["jobs".into()],
                max_records: (want - got.len()) as u32,
                max_wait_ms: 500,
                start: ShareStart::Earliest as i32,
                acknowledgements: vec![],
                partitions: vec![],
            })
            .await
        {
            Ok(answer) => got.extend(answer.into_inner().records),
            // The coordinator is still loading or moving: ask again.
            Err(s) if s.code() == tonic::Code::Unavailable => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(s) => panic!("share fetch: {s:?}"),
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_group_keeps_its_accepts_and_delivery_counts_when_its_coordinator_stops() {
    let mut nodes = formed_cluster().await;
    let first = nodes[0].addr;
    create_topic(first, "jobs", 1, 3).await;
    eventually(Duration::from_secs(20), "jobs settled", || async {
        settled(first, "jobs", 3).await
    })
    .await;
    let values: Vec<String> = (0..10).map(|i| format!("job-{i}")).collect();
    produce_all(
        leader_ready(
            &nodes,
            "jobs",
            describe(first, "jobs").await.unwrap().partitions[0].leader,
        )
        .await,
        "jobs",
        0,
        &values,
    )
    .await
    .expect("produced");

    let coordinator = found_share_coordinator(first, "billing", None).await;
    let held = share_fetch_until(addr_of(&nodes, coordinator), "billing", "a", 10).await;
    let mut offsets: Vec<i64> = held
        .iter()
        .map(|r| r.record.as_ref().unwrap().offset)
        .collect();
    offsets.sort_unstable();
    assert_eq!(offsets, (0..10).collect::<Vec<i64>>());
    let c = connect(addr_of(&nodes, coordinator)).await;
    let accepted = weir_proto::v1::queues_client::QueuesClient::new(c.channel)
        .share_acknowledge(ShareAcknowledgeRequest {
            group_id: "billing".into(),
            member_id: "a".into(),
            acknowledgements: vec![ShareAck {
                topic: "jobs".into(),
                partition: 0,
                first_offset: 0,
                last_offset: 4,
                r#type: AckType::Accept as i32,
                delay_ms: 0,
            }],
            leaving: false,
        })
        .await
        .expect("acknowledged")
        .into_inner();
    assert!(accepted.results[0].not_held.is_empty(), "{accepted:?}");

    // The coordinator's broker stops; another takes __share_group_state's partition over.
    stop(&mut nodes, coordinator).await;
    let survivor = nodes.iter().find(|n| n.id != coordinator).unwrap().addr;
    let next = found_share_coordinator(survivor, "billing", Some(coordinator)).await;
    let again = share_fetch_until(addr_of(&nodes, next), "billing", "b", 5).await;
    let mut offsets: Vec<i64> = again
        .iter()
        .map(|r| r.record.as_ref().unwrap().offset)
        .collect();
    offsets.sort_unstable();
    assert_eq!(
        offsets,
        [5, 6, 7, 8, 9],
        "the accepted ones never come back"
    );
    assert!(
        again.iter().all(|r| r.delivery_count == 2),
        "their first delivery is remembered: {again:?}"
    );
    stop_all(&mut nodes).await;
}

/// A share group reads the partitions its coordinator hosts no replica of at their
/// leaders: a topic with one replica per partition, spread over the three brokers, is
/// consumed whole through the coordinator, and a fetch waiting on it sees a record
/// produced on another broker after it started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_group_reads_partitions_its_coordinator_hosts_no_replica_of() {
    let mut nodes = formed_cluster().await;
    let first = nodes[0].addr;
    connect(first)
        .await
        .admin
        .create_topic(CreateTopicRequest {
            name: "jobs".into(),
            partitions: 3,
            replication_factor: 1,
            configs: Default::default(),
        })
        .await
        .expect("topic created");
    eventually(Duration::from_secs(20), "jobs settled", || async {
        settled(first, "jobs", 1).await
    })
    .await;
    let leaders: Vec<i32> = describe(first, "jobs")
        .await
        .unwrap()
        .partitions
        .iter()
        .map(|p| p.leader)
        .collect();
    let coordinator = found_share_coordinator(first, "spread", None).await;
    let remote = (0..3u32)
        .find(|p| leaders[*p as usize] != coordinator)
        .expect("three single-replica partitions are not all on the coordinator");
    let mut expected = Vec::new();
    for (p, leader) in leaders.iter().enumerate() {
        let values: Vec<String> = (0..10).map(|i| format!("p{p}-{i}")).collect();
        let addr = addr_of(&nodes, *leader);
        eventually(Duration::from_secs(10), "produced", || {
            let values = values.clone();
            async move { produce_all(addr, "jobs", p as u32, &values).await.is_ok() }
        })
        .await;
        expected.extend(values.into_iter().map(|v| (p as u32, v)));
    }

    let value = |r: &SharedRecord| {
        let record = r.record.as_ref().unwrap();
        String::from_utf8(record.value.clone().unwrap().to_vec()).unwrap()
    };
    let at = addr_of(&nodes, coordinator);
    let got = share_fetch_until(at, "spread", "a", 30).await;
    let mut seen: Vec<(u32, String)> = got.iter().map(|r| (r.partition, value(r))).collect();
    seen.sort();
    expected.sort();
    assert_eq!(seen, expected, "every record once, from every partition");

    // The fetch starts waiting before the record is produced on the remote leader.
    let late = addr_of(&nodes, leaders[remote as usize]);
    let producer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        produce_all(late, "jobs", remote, &["late".to_string()]).await
    });
    let more = share_fetch_until(at, "spread", "a", 1).await;
    producer.await.unwrap().expect("produced late");
    assert_eq!(more.len(), 1);
    assert_eq!(
        (more[0].partition, value(&more[0])),
        (remote, "late".to_string())
    );
    stop_all(&mut nodes).await;
}
