//! The metadata quorum end to end over an in-memory transport (tokio channels; a node
//! can be cut off): elections, commits on every voter, failover, catch-up through a
//! snapshot, restarts, the legacy `metadata.weir` migration.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use weir_cluster::BrokerId;
use weir_cluster::controller::{MetadataImage, MetadataRecord};
use weir_cluster::metadata::{ClusterMetadata, METADATA_FILE, PartitionAssignment, TopicMetadata};
use weir_cluster::quorum::{
    LegacyMigration, MetadataDelta, Quorum, QuorumConfig, QuorumError, QuorumStatus,
    QuorumTransport, RpcFuture, RpcKind, TransportError,
};

/// How long any one condition may take to hold.
const DEADLINE: Duration = Duration::from_secs(15);
/// How long the remaining voters may take to elect a new leader after losing one: a few
/// election timeouts (500-1000 ms by default).
const FAILOVER_DEADLINE: Duration = Duration::from_secs(5);
/// Requests queued to one node before senders wait.
const INBOX_DEPTH: usize = 256;

type Inbox = mpsc::Sender<(Vec<u8>, oneshot::Sender<Vec<u8>>)>;

/// The in-memory network: one inbox per listening node, and the nodes cut off.
#[derive(Default)]
struct Network {
    inboxes: Mutex<HashMap<BrokerId, Inbox>>,
    cut: Mutex<HashSet<BrokerId>>,
}

impl Network {
    fn is_cut(&self, node: BrokerId) -> bool {
        self.cut.lock().unwrap().contains(&node)
    }

    fn cut_off(&self, node: BrokerId) {
        self.cut.lock().unwrap().insert(node);
    }

    fn reconnect(&self, node: BrokerId) {
        self.cut.lock().unwrap().remove(&node);
    }

    /// Serves `quorum`'s RPCs from its inbox, each on its own task.
    fn listen(&self, quorum: Quorum) {
        let (tx, mut rx) = mpsc::channel::<(Vec<u8>, oneshot::Sender<Vec<u8>>)>(INBOX_DEPTH);
        self.inboxes.lock().unwrap().insert(quorum.node(), tx);
        tokio::spawn(async move {
            while let Some((request, reply)) = rx.recv().await {
                let quorum = quorum.clone();
                tokio::spawn(async move {
                    let bytes = quorum
                        .handle_rpc(&request)
                        .await
                        .expect("a well-formed RPC");
                    let _ = reply.send(bytes);
                });
            }
        });
    }

    fn stop_listening(&self, node: BrokerId) {
        self.inboxes.lock().unwrap().remove(&node);
    }
}

/// One node's end of the network.
struct Transport {
    from: BrokerId,
    network: Arc<Network>,
}

impl QuorumTransport for Transport {
    fn send<'a>(
        &'a self,
        target: BrokerId,
        address: &'a str,
        _kind: RpcKind,
        request: Vec<u8>,
    ) -> RpcFuture<'a> {
        Box::pin(async move {
            let unreachable = |why: &str| TransportError::Unreachable {
                target,
                address: address.to_string(),
                source: why.to_string().into(),
            };
            if self.network.is_cut(self.from) || self.network.is_cut(target) {
                return Err(unreachable("cut off"));
            }
            let inbox = self.network.inboxes.lock().unwrap().get(&target).cloned();
            let inbox = inbox.ok_or_else(|| unreachable("not listening"))?;
            let (tx, rx) = oneshot::channel();
            inbox
                .send((request, tx))
                .await
                .map_err(|_| unreachable("stopped"))?;
            let reply = rx.await.map_err(|_| TransportError::Failed {
                target,
                address: address.to_string(),
                source: "no reply".into(),
            })?;
            if self.network.is_cut(self.from) || self.network.is_cut(target) {
                return Err(unreachable("cut off"));
            }
            Ok(reply)
        })
    }
}

/// Voters on one in-memory network, each with its own data directory.
struct Cluster {
    network: Arc<Network>,
    voters: Vec<(BrokerId, String)>,
    config: QuorumConfig,
    dirs: BTreeMap<BrokerId, tempfile::TempDir>,
    nodes: BTreeMap<BrokerId, Quorum>,
}

impl Cluster {
    async fn start(ids: &[BrokerId], config: QuorumConfig) -> Cluster {
        let mut cluster = Cluster {
            network: Arc::default(),
            voters: ids
                .iter()
                .map(|id| (*id, format!("voter-{id}:9093")))
                .collect(),
            config,
            dirs: ids
                .iter()
                .map(|id| (*id, tempfile::tempdir().unwrap()))
                .collect(),
            nodes: BTreeMap::new(),
        };
        for id in ids {
            cluster.start_node(*id).await;
        }
        cluster
    }

    fn metadata_dir(&self, id: BrokerId) -> PathBuf {
        self.dirs[&id].path().join("metadata")
    }

    async fn start_node(&mut self, id: BrokerId) -> Quorum {
        let transport = Arc::new(Transport {
            from: id,
            network: Arc::clone(&self.network),
        });
        let quorum = Quorum::start(
            id,
            self.voters.clone(),
            self.metadata_dir(id),
            transport,
            self.config.clone(),
        )
        .await
        .unwrap();
        self.network.listen(quorum.clone());
        self.network.reconnect(id);
        self.nodes.insert(id, quorum.clone());
        quorum
    }

    async fn stop_node(&mut self, id: BrokerId) {
        self.network.cut_off(id);
        self.network.stop_listening(id);
        let quorum = self.nodes.remove(&id).unwrap();
        quorum.shutdown().await.unwrap();
    }

    fn node(&self, id: BrokerId) -> &Quorum {
        &self.nodes[&id]
    }

    /// Waits until every running node knows the same leader and that leader knows it
    /// leads, within `deadline`.
    async fn leader(&self, deadline: Duration) -> BrokerId {
        let started = Instant::now();
        let any = self.nodes.values().next().unwrap();
        let running = |s: &QuorumStatus| s.leader.is_some_and(|l| self.nodes.contains_key(&l));
        let status = any.wait_until(deadline, running).await.unwrap();
        let leader = status.leader.unwrap();
        let left = deadline.saturating_sub(started.elapsed());
        self.node(leader)
            .wait_until(left, |s| s.is_leader)
            .await
            .unwrap();
        for node in self.nodes.values() {
            let left = deadline.saturating_sub(started.elapsed());
            node.wait_until(left, |s| s.leader == Some(leader))
                .await
                .unwrap();
        }
        leader
    }

    /// Waits until every running node has applied up to metadata offset `next`, and
    /// returns their images, which must be equal.
    async fn images_at(&self, next: i64) -> Arc<MetadataImage> {
        let mut images = Vec::new();
        for node in self.nodes.values() {
            images.push(image_at(node, next).await);
        }
        for image in &images[1..] {
            assert_eq!(image, &images[0]);
        }
        images.swap_remove(0)
    }
}

/// Waits until `node` has applied up to metadata offset `next` and returns its image.
async fn image_at(node: &Quorum, next: i64) -> Arc<MetadataImage> {
    let mut images = node.subscribe();
    let waited = tokio::time::timeout(DEADLINE, images.wait_for(|i| i.next_offset() >= next));
    let image = waited
        .await
        .unwrap_or_else(|_| {
            panic!(
                "node {} did not reach offset {next}: {:?}",
                node.node(),
                node.status()
            )
        })
        .unwrap()
        .clone();
    assert_eq!(image.next_offset(), next);
    image
}

fn cluster_created() -> MetadataRecord {
    MetadataRecord::ClusterCreated {
        cluster_id: "cluster-q".into(),
    }
}

fn topic_created(i: usize) -> MetadataRecord {
    MetadataRecord::TopicCreated {
        name: format!("topic-{i}"),
        topic_id: format!("id-{i}"),
        configs: BTreeMap::new(),
    }
}

fn config_changed(i: usize, value: &str) -> MetadataRecord {
    MetadataRecord::TopicConfigChanged {
        topic_id: format!("id-{i}"),
        key: "retention.ms".into(),
        value: Some(value.into()),
    }
}

/// Snapshots every 4 entries and nothing kept behind them, so a lagging voter can only
/// catch up through a snapshot.
fn snapshotting_config() -> QuorumConfig {
    QuorumConfig {
        snapshot_every_entries: 4,
        entries_kept_after_snapshot: 0,
        log_segment_bytes_max: 1024,
        ..QuorumConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_voters_elect_a_leader_and_commit_on_all_of_them() {
    let cluster = Cluster::start(&[1, 2, 3], QuorumConfig::default()).await;
    let leader = cluster.leader(DEADLINE).await;
    let q = cluster.node(leader);
    assert!(q.is_leader());
    assert_eq!(q.leader(), Some(leader));

    // One proposal's records commit together; offsets count records, not Raft entries.
    let first = q
        .propose(vec![cluster_created(), topic_created(0)])
        .await
        .unwrap();
    assert_eq!(first, 0);
    assert_eq!(q.propose(vec![config_changed(0, "5")]).await.unwrap(), 2);
    let image = cluster.images_at(3).await;

    let mut expected = MetadataImage::new();
    for record in [cluster_created(), topic_created(0), config_changed(0, "5")] {
        expected.apply(&record).unwrap();
    }
    assert_eq!(*image, expected);

    // Observers' view: the records since an offset.
    match q.records_since(1, 10).unwrap() {
        MetadataDelta::Records {
            first_offset,
            records,
        } => {
            assert_eq!(first_offset, 1);
            assert_eq!(records, vec![topic_created(0), config_changed(0, "5")]);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        q.records_since(3, 10).unwrap(),
        MetadataDelta::Records { records, .. } if records.is_empty()
    ));
    assert!(matches!(
        q.records_since(4, 10),
        Err(QuorumError::OffsetAhead {
            offset: 4,
            next_offset: 3
        })
    ));

    // A pre-replication data directory is not migrated into a multi-voter quorum.
    let data_dir = tempfile::tempdir().unwrap();
    legacy_metadata().store(data_dir.path()).unwrap();
    assert!(matches!(
        q.migrate_legacy(data_dir.path()).await,
        Err(QuorumError::LegacyNeedsSingleVoter { voters: 3, .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposal_on_a_follower_is_refused_naming_the_leader() {
    let cluster = Cluster::start(&[1, 2, 3], QuorumConfig::default()).await;
    let leader = cluster.leader(DEADLINE).await;
    let follower = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap();
    assert!(!cluster.node(follower).is_leader());
    match cluster
        .node(follower)
        .propose(vec![cluster_created()])
        .await
    {
        Err(QuorumError::NotLeader { leader: named }) => assert_eq!(named, Some(leader)),
        other => panic!("{other:?}"),
    }
    // Nothing was committed by the refused proposal.
    assert_eq!(
        cluster
            .node(leader)
            .propose(vec![cluster_created()])
            .await
            .unwrap(),
        0
    );
    cluster.images_at(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_leader_is_replaced_and_the_new_one_accepts_proposals() {
    let mut cluster = Cluster::start(&[1, 2, 3], QuorumConfig::default()).await;
    let old = cluster.leader(DEADLINE).await;
    cluster
        .node(old)
        .propose(vec![cluster_created(), topic_created(0)])
        .await
        .unwrap();
    cluster.images_at(2).await;

    cluster.stop_node(old).await;
    let lost = Instant::now();
    let new = cluster.leader(FAILOVER_DEADLINE).await;
    let failover = lost.elapsed();
    assert_ne!(new, old);
    assert!(failover < FAILOVER_DEADLINE, "failover took {failover:?}");

    assert_eq!(
        cluster
            .node(new)
            .propose(vec![topic_created(1)])
            .await
            .unwrap(),
        2
    );
    let image = cluster.images_at(3).await;

    // The old leader restarts as a follower and catches up from its log and the leader.
    cluster.start_node(old).await;
    assert_eq!(cluster.leader(DEADLINE).await, new);
    assert_eq!(image_at(cluster.node(old), 3).await, image);
}

/// What lets a voter's broker renew its lease through a controller failover
/// (`quorum/elections.rs`): each surviving voter knows when the new leader's election
/// vouched for it, and the new leader heard from it no earlier than that, so it counts
/// that broker's session from no earlier either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_election_vouches_for_each_voter_no_later_than_the_new_leader_heard_from_it() {
    let mut cluster = Cluster::start(&[1, 2, 3], QuorumConfig::default()).await;
    let old = cluster.leader(DEADLINE).await;
    cluster.stop_node(old).await;
    let new = cluster.leader(FAILOVER_DEADLINE).await;
    assert_ne!(new, old);
    let other = [1, 2, 3]
        .into_iter()
        .find(|&n| n != old && n != new)
        .unwrap();
    // The follower sees the election once the leader's first AppendEntries arrives.
    let deadline = Instant::now() + DEADLINE;
    let voted = loop {
        if cluster.node(other).elected_leader().map(|(_, l)| l) == Some(new) {
            break cluster.node(other).elected_at();
        }
        assert!(
            Instant::now() < deadline,
            "node {other} never saw {new} elected"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let voted =
        voted.unwrap_or_else(|| panic!("node {other} voted for {new}: it was the only voter left"));
    let heard = cluster.node(new).last_heard()[&other];
    assert!(
        voted <= heard,
        "the new leader counts node {other} from {heard:?}, before its vote at {voted:?}"
    );
    let campaigned = cluster
        .node(new)
        .elected_at()
        .expect("the winner knows when its campaign was granted");
    let heard_candidate = cluster.node(other).last_heard()[&new];
    assert!(
        campaigned <= heard_candidate,
        "node {other} heard the campaign at {heard_candidate:?}, before it was sent at {campaigned:?}"
    );
    assert!(campaigned <= voted, "the vote came after the request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_voter_catches_up_through_a_snapshot_after_the_log_was_purged() {
    let mut cluster = Cluster::start(&[1, 2, 3], snapshotting_config()).await;
    let leader = cluster.leader(DEADLINE).await;
    cluster
        .node(leader)
        .propose(vec![cluster_created()])
        .await
        .unwrap();
    cluster.images_at(1).await;
    let lagging = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap();
    let behind = cluster.node(lagging).status().last_log_index.unwrap();
    cluster.stop_node(lagging).await;

    // Enough entries that the leader snapshots and purges past the lagging voter's log.
    for i in 0..20 {
        let offset = cluster
            .node(leader)
            .propose(vec![topic_created(i)])
            .await
            .unwrap();
        assert_eq!(offset, 1 + i as i64);
    }
    let status = cluster
        .node(leader)
        .wait_until(DEADLINE, |s| s.purged_index.is_some_and(|p| p > behind))
        .await
        .unwrap();
    let purged = status.purged_index.unwrap();

    let restarted = cluster.start_node(lagging).await;
    let image = cluster.images_at(21).await;
    assert_eq!(image_at(&restarted, 21).await, image);
    // It holds a snapshot at least as new as the purge point: what it caught up from.
    restarted
        .wait_until(DEADLINE, |s| s.snapshot_index.is_some_and(|i| i >= purged))
        .await
        .unwrap();
    // Records from before its snapshot are not in its memory: an observer asking it
    // from offset 0 gets the whole image.
    match restarted.records_since(0, 5).unwrap() {
        MetadataDelta::Image(whole) => assert_eq!(whole, image),
        other => panic!("{other:?}"),
    }

    // And it keeps following.
    cluster
        .node(leader)
        .propose(vec![config_changed(3, "9")])
        .await
        .unwrap();
    cluster.images_at(22).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_voter_commits_at_once_and_replays_after_a_restart() {
    let mut cluster = Cluster::start(&[0], snapshotting_config()).await;
    let q = cluster.node(0).clone();
    assert_eq!(cluster.leader(DEADLINE).await, 0);
    assert_eq!(q.propose(vec![cluster_created()]).await.unwrap(), 0);
    let mut next = 1;
    for i in 0..9 {
        let records = vec![topic_created(i), config_changed(i, "7")];
        assert_eq!(q.propose(records).await.unwrap(), next);
        next += 2;
    }
    let before = image_at(&q, next).await;
    let status = q
        .wait_until(DEADLINE, |s| s.snapshot_index.is_some())
        .await
        .unwrap();
    assert!(status.snapshot_index < status.last_log_index, "{status:?}");

    cluster.stop_node(0).await;
    let q = cluster.start_node(0).await;
    // Replayed from the snapshot plus the log after it.
    assert_eq!(image_at(&q, next).await, before);
    assert_eq!(cluster.leader(DEADLINE).await, 0);
    assert_eq!(q.propose(vec![topic_created(100)]).await.unwrap(), next);
    image_at(&q, next + 1).await;
}

/// Whether `Quorum::stopped` is still pending after a while (300 ms).
async fn not_stopped(q: &Quorum) -> bool {
    tokio::time::timeout(Duration::from_millis(300), q.stopped())
        .await
        .is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_record_that_does_not_apply_stops_the_quorum() {
    let cluster = Cluster::start(&[0], QuorumConfig::default()).await;
    let q = cluster.node(0);
    cluster.leader(DEADLINE).await;
    q.propose(vec![cluster_created()]).await.unwrap();
    let before = image_at(q, 1).await;
    assert!(
        not_stopped(q).await,
        "stopped() resolved while the core runs"
    );
    // The first record applies, the second (a second ClusterCreated) does not: the
    // entry applies not at all, and the quorum stops instead of skipping it.
    let err = q
        .propose(vec![topic_created(0), cluster_created()])
        .await
        .unwrap_err();
    assert!(matches!(err, QuorumError::Stopped(_)), "{err}");
    assert_eq!(q.image(), before);
    assert!(matches!(
        q.propose(vec![topic_created(1)]).await,
        Err(QuorumError::Stopped(_))
    ));
    // What the broker waits on to stop itself (weir-server's `wait`): it resolves, with
    // why.
    let reason = tokio::time::timeout(DEADLINE, q.stopped())
        .await
        .expect("stopped() resolves once the core stopped by itself");
    assert!(!reason.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_asked_for_is_not_a_stop() {
    let mut cluster = Cluster::start(&[0], QuorumConfig::default()).await;
    let q = cluster.node(0).clone();
    cluster.leader(DEADLINE).await;
    q.propose(vec![cluster_created()]).await.unwrap();
    cluster.stop_node(0).await;
    // A broker shutting down its quorum must not read that as a failure of it.
    assert!(not_stopped(&q).await, "stopped() resolved after a shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voter_sets_are_checked_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let network = Arc::new(Network::default());
    let start = |node: BrokerId, voters: Vec<(BrokerId, String)>, dir: &Path| {
        let transport = Arc::new(Transport {
            from: node,
            network: Arc::clone(&network),
        });
        Quorum::start(
            node,
            voters,
            dir.to_path_buf(),
            transport,
            QuorumConfig::default(),
        )
    };
    let voters = || vec![(1, "a:1".to_string()), (2, "b:1".to_string())];
    match start(7, voters(), dir.path()).await {
        Err(QuorumError::NotAVoter { node: 7, voters }) => assert_eq!(voters, vec![1, 2]),
        other => panic!("{other:?}"),
    }
    for bad in [
        vec![],
        vec![(1, "a:1".to_string()), (1, "b:1".to_string())],
        vec![(-1, "a:1".to_string())],
        vec![(1, " ".to_string())],
    ] {
        assert!(matches!(
            start(1, bad, dir.path()).await,
            Err(QuorumError::InvalidVoters(_))
        ));
    }
    // A store formed with one voter set refuses another.
    let q = start(1, voters(), dir.path()).await.unwrap();
    q.shutdown().await.unwrap();
    let other = vec![(1, "a:1".to_string()), (3, "c:1".to_string())];
    match start(1, other, dir.path()).await {
        Err(QuorumError::VotersChanged {
            stored, configured, ..
        }) => {
            assert_eq!(stored, vec![1, 2]);
            assert_eq!(configured, vec![1, 3]);
        }
        other => panic!("{other:?}"),
    }
}

fn legacy_metadata() -> ClusterMetadata {
    let topic = |name: &str, id: &str, partitions: usize| TopicMetadata {
        name: name.into(),
        topic_id: id.into(),
        replication_factor: 1,
        configs: [("retention.ms".to_string(), "1000".to_string())].into(),
        partitions: vec![
            PartitionAssignment {
                replicas: vec![0],
                leader: 0,
                leader_epoch: 4,
            };
            partitions
        ],
    };
    ClusterMetadata {
        cluster_id: "legacy-cluster".into(),
        topics: [
            ("orders".to_string(), topic("orders", "id-orders", 3)),
            ("audit".to_string(), topic("audit", "id-audit", 1)),
        ]
        .into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_metadata_becomes_the_first_entry_exactly_once() {
    let mut cluster = Cluster::start(&[0], QuorumConfig::default()).await;
    let data_dir = cluster.dirs[&0].path().to_path_buf();
    let q = cluster.node(0).clone();
    let legacy = legacy_metadata();
    let expected = MetadataImage::from_legacy(legacy.clone(), 0).unwrap();
    legacy.store(&data_dir).unwrap();

    let migrated = data_dir.join(format!("{METADATA_FILE}.migrated"));
    assert_eq!(
        q.migrate_legacy(&data_dir).await.unwrap(),
        LegacyMigration::Migrated {
            topics: 2,
            renamed_to: migrated.clone()
        }
    );
    assert!(!data_dir.join(METADATA_FILE).exists());
    assert!(migrated.exists());
    assert_eq!(*q.image(), expected);
    assert_eq!(
        q.migrate_legacy(&data_dir).await.unwrap(),
        LegacyMigration::NothingToMigrate
    );

    // Records follow the migrated image, from offset 0.
    assert_eq!(
        q.propose(vec![MetadataRecord::TopicConfigChanged {
            topic_id: "id-audit".into(),
            key: "retention.ms".into(),
            value: None,
        }])
        .await
        .unwrap(),
        0
    );
    let after = image_at(&q, 1).await;

    // A crash after the commit but before the rename: the file is back, and is only
    // renamed, not applied again.
    cluster.stop_node(0).await;
    std::fs::copy(&migrated, data_dir.join(METADATA_FILE)).unwrap();
    let q = cluster.start_node(0).await;
    assert_eq!(image_at(&q, 1).await, after);
    assert_eq!(
        q.migrate_legacy(&data_dir).await.unwrap(),
        LegacyMigration::AlreadyMigrated {
            renamed_to: migrated.clone()
        }
    );
    assert!(!data_dir.join(METADATA_FILE).exists());
    assert_eq!(q.image(), after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_metadata_is_refused_by_a_quorum_that_has_other_metadata() {
    let cluster = Cluster::start(&[0], QuorumConfig::default()).await;
    let data_dir = cluster.dirs[&0].path().to_path_buf();
    let q = cluster.node(0);
    cluster.leader(DEADLINE).await;
    q.propose(vec![cluster_created()]).await.unwrap();
    legacy_metadata().store(&data_dir).unwrap();
    assert!(matches!(
        q.migrate_legacy(&data_dir).await,
        Err(QuorumError::LegacyConflict { .. })
    ));
    // Left in place for the operator.
    assert!(data_dir.join(METADATA_FILE).exists());
}
