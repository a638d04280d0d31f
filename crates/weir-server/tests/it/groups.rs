//! Consumer groups through the raw gRPC API, as a thin client (Python, grpcurl) would use
//! them: join, revoke-then-assign hand-over, commits and their fencing, the admin calls,
//! restart, and every bad input with its code.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use tonic::Code;
use tonic::transport::Channel;
use weir_proto::v1::groups_client::GroupsClient;
use weir_proto::v1::*;

fn groups(clients: &Clients) -> GroupsClient<Channel> {
    GroupsClient::new(clients.channel.clone())
}

fn join(group: &str, topics: &[&str]) -> HeartbeatRequest {
    HeartbeatRequest {
        group_id: group.into(),
        member_epoch: 0,
        client_id: "thin-client".into(),
        topics: topics.iter().map(|t| t.to_string()).collect(),
        ..HeartbeatRequest::default()
    }
}

/// A member's state as a thin client keeps it.
#[derive(Debug, Default)]
struct Member {
    id: String,
    epoch: i32,
    owned: BTreeSet<(String, u32)>,
}

impl Member {
    /// Heartbeats with what it owns, then releases whatever the answer no longer lists
    /// (a real client would commit first) and takes what it lists.
    async fn beat(&mut self, client: &mut GroupsClient<Channel>, group: &str) -> HeartbeatResponse {
        let mut owned: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for (t, p) in &self.owned {
            owned.entry(t.clone()).or_default().push(*p);
        }
        let response = client
            .heartbeat(HeartbeatRequest {
                group_id: group.into(),
                member_id: self.id.clone(),
                member_epoch: self.epoch,
                owned_partitions: owned
                    .into_iter()
                    .map(|(topic, partitions)| TopicPartitions { topic, partitions })
                    .collect(),
                ..HeartbeatRequest::default()
            })
            .await
            .expect("heartbeat")
            .into_inner();
        self.apply(&response);
        response
    }

    fn apply(&mut self, response: &HeartbeatResponse) {
        self.id = response.member_id.clone();
        self.epoch = response.member_epoch;
        self.owned = assignment(response);
    }
}

fn assignment(response: &HeartbeatResponse) -> BTreeSet<(String, u32)> {
    response
        .assignment
        .iter()
        .flat_map(|tp| tp.partitions.iter().map(|p| (tp.topic.clone(), *p)))
        .collect()
}

fn commit(
    group: &str,
    member: &Member,
    topic: &str,
    offsets: &[(u32, i64)],
) -> CommitOffsetsRequest {
    CommitOffsetsRequest {
        group_id: group.into(),
        member_id: member.id.clone(),
        member_epoch: member.epoch,
        topics: vec![TopicOffsetCommit {
            topic: topic.into(),
            partitions: offsets
                .iter()
                .map(|&(partition, offset)| PartitionOffsetCommit {
                    partition,
                    offset,
                    metadata: String::new(),
                })
                .collect(),
        }],
    }
}

async fn committed(
    client: &mut GroupsClient<Channel>,
    group: &str,
) -> BTreeMap<(String, u32), i64> {
    client
        .fetch_offsets(FetchOffsetsRequest {
            group_id: group.into(),
            topics: vec![],
        })
        .await
        .expect("fetch offsets")
        .into_inner()
        .offsets
        .into_iter()
        .map(|o| ((o.topic, o.partition), o.offset))
        .collect()
}

fn assert_code<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, needle: &str) {
    let status = result.expect_err("the call must fail");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(needle),
        "{needle:?} not in {:?}",
        status.message()
    );
}

#[tokio::test]
async fn a_thin_client_joins_hands_over_partitions_commits_and_leaves() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path()).await;
        let mut c = connect(server.addr).await;
        c.create("orders", 6, &[]).await;
        let mut g = groups(&c);

        // Alone, the first member gets every partition at once.
        let mut a = Member::default();
        a.apply(
            &g.heartbeat(join("billing", &["orders"]))
                .await
                .unwrap()
                .into_inner(),
        );
        assert!(!a.id.is_empty());
        assert!(a.epoch > 0);
        assert_eq!(a.owned.len(), 6);

        g.commit_offsets(commit("billing", &a, "orders", &[(0, 5), (1, 7)]))
            .await
            .unwrap();
        let offsets = committed(&mut g, "billing").await;
        assert_eq!(offsets[&("orders".to_string(), 0)], 5);
        assert_eq!(offsets[&("orders".to_string(), 1)], 7);

        // Commits that must be refused, each saying why.
        let stale = Member {
            epoch: a.epoch + 3,
            id: a.id.clone(),
            ..Member::default()
        };
        assert_code(
            g.commit_offsets(commit("billing", &stale, "orders", &[(0, 9)]))
                .await,
            Code::FailedPrecondition,
            "epoch",
        );
        let stranger = Member {
            id: "no-such-member".into(),
            epoch: 1,
            ..Member::default()
        };
        assert_code(
            g.commit_offsets(commit("billing", &stranger, "orders", &[(0, 9)]))
                .await,
            Code::FailedPrecondition,
            "no-such-member",
        );
        let outsider = Member::default();
        assert_code(
            g.commit_offsets(commit("billing", &outsider, "orders", &[(0, 9)]))
                .await,
            Code::FailedPrecondition,
            "member",
        );
        assert_code(
            g.commit_offsets(commit("billing", &a, "orders", &[(0, -4)]))
                .await,
            Code::InvalidArgument,
            "",
        );
        assert_code(
            g.commit_offsets(commit("billing", &a, "nope", &[(0, 1)]))
                .await,
            Code::NotFound,
            "nope",
        );
        assert_eq!(
            committed(&mut g, "billing").await[&("orders".to_string(), 0)],
            5
        );

        // A second member joins: it gets nothing A still owns until A releases it.
        let mut b = Member::default();
        b.apply(
            &g.heartbeat(join("billing", &["orders"]))
                .await
                .unwrap()
                .into_inner(),
        );
        assert!(b.owned.is_empty(), "A owns every partition: {b:?}");
        let mut rounds = 0;
        loop {
            let overlap: Vec<_> = a.owned.intersection(&b.owned).collect();
            assert!(overlap.is_empty(), "owned by both: {overlap:?}");
            if a.owned.len() == 3 && b.owned.len() == 3 {
                break;
            }
            rounds += 1;
            assert!(rounds < 10, "no balance after {rounds} rounds: {a:?} {b:?}");
            a.beat(&mut g, "billing").await;
            let overlap: Vec<_> = a.owned.intersection(&b.owned).collect();
            assert!(overlap.is_empty(), "owned by both: {overlap:?}");
            b.beat(&mut g, "billing").await;
        }
        // The old epoch of A can no longer commit once it moved on; the new one can.
        g.commit_offsets(commit("billing", &a, "orders", &[(2, 3)]))
            .await
            .unwrap();

        let described = c
            .admin
            .describe_group(DescribeGroupRequest {
                group_id: "billing".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(described.state(), GroupState::Stable);
        assert_eq!(described.members.len(), 2);
        let p0 = described
            .offsets
            .iter()
            .find(|o| o.topic == "orders" && o.partition == 0)
            .unwrap();
        assert_eq!((p0.committed_offset, p0.high_watermark, p0.lag), (5, 0, 0));
        assert!(!p0.member_id.is_empty());

        // With live members the group cannot be deleted or reset.
        assert_code(
            c.admin
                .delete_group(DeleteGroupRequest {
                    group_id: "billing".into(),
                })
                .await,
            Code::FailedPrecondition,
            "member",
        );
        let reset = |dry_run| ResetOffsetsRequest {
            group_id: "billing".into(),
            topics: vec![TopicPartitions {
                topic: "orders".into(),
                partitions: vec![],
            }],
            spec: Some(OffsetResetSpec {
                to: Some(offset_reset_spec::To::Position(
                    OffsetPosition::Earliest.into(),
                )),
            }),
            dry_run,
        };
        assert_code(
            c.admin.reset_offsets(reset(false)).await,
            Code::FailedPrecondition,
            "member",
        );

        // Both leave; now reset shows its plan, applies it, and delete works.
        for m in [&mut a, &mut b] {
            m.epoch = -1;
            m.beat(&mut g, "billing").await;
        }
        let listed = c
            .admin
            .list_groups(ListGroupsRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(listed.groups.len(), 1);
        assert_eq!(
            (listed.groups[0].state(), listed.groups[0].members),
            (GroupState::Empty, 0)
        );
        assert_eq!(listed.next_page_token, "");
        let plan = c
            .admin
            .reset_offsets(reset(true))
            .await
            .unwrap()
            .into_inner();
        assert!(!plan.applied);
        assert_eq!(plan.partitions.len(), 6);
        let p0 = plan.partitions.iter().find(|p| p.partition == 0).unwrap();
        assert_eq!((p0.previous_offset, p0.new_offset), (5, 0));
        assert_eq!(
            committed(&mut g, "billing").await[&("orders".to_string(), 0)],
            5
        );
        assert!(
            c.admin
                .reset_offsets(reset(false))
                .await
                .unwrap()
                .into_inner()
                .applied
        );
        assert_eq!(
            committed(&mut g, "billing").await[&("orders".to_string(), 0)],
            0
        );
        c.admin
            .delete_group(DeleteGroupRequest {
                group_id: "billing".into(),
            })
            .await
            .unwrap();
        assert_code(
            c.admin
                .describe_group(DescribeGroupRequest {
                    group_id: "billing".into(),
                    ..Default::default()
                })
                .await,
            Code::NotFound,
            "billing",
        );
        server.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn bad_group_input_gets_the_right_code() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path()).await;
        let mut c = connect(server.addr).await;
        c.create("t", 2, &[]).await;
        let mut g = groups(&c);

        assert_code(
            c.admin
                .describe_group(DescribeGroupRequest {
                    group_id: "ghost".into(),
                    ..Default::default()
                })
                .await,
            Code::NotFound,
            "ghost",
        );
        assert_code(
            c.admin
                .delete_group(DeleteGroupRequest {
                    group_id: "ghost".into(),
                })
                .await,
            Code::NotFound,
            "ghost",
        );
        let regex = HeartbeatRequest {
            topic_regex: "orders(".into(),
            ..join("g", &[])
        };
        assert_code(g.heartbeat(regex).await, Code::InvalidArgument, "orders(");
        assert_code(
            // Any non-empty group id of at most 249 bytes is valid, as in Kafka.
            g.heartbeat(join(&"g".repeat(250), &["t"])).await,
            Code::InvalidArgument,
            "group",
        );
        assert_code(g.heartbeat(join("g", &[])).await, Code::InvalidArgument, "");
        let unknown = HeartbeatRequest {
            member_id: "never-joined".into(),
            member_epoch: 3,
            ..join("g", &["t"])
        };
        assert_code(
            g.heartbeat(unknown).await,
            Code::FailedPrecondition,
            "never-joined",
        );
        let no_spec = ResetOffsetsRequest {
            group_id: "g".into(),
            topics: vec![TopicPartitions {
                topic: "t".into(),
                partitions: vec![],
            }],
            spec: None,
            dry_run: true,
        };
        assert_code(
            c.admin.reset_offsets(no_spec).await,
            Code::InvalidArgument,
            "spec",
        );
        // An unset position selects nothing: not "earliest", as `earliest: false` did.
        let unspecified = ResetOffsetsRequest {
            group_id: "g".into(),
            topics: vec![TopicPartitions {
                topic: "t".into(),
                partitions: vec![],
            }],
            spec: Some(OffsetResetSpec {
                to: Some(offset_reset_spec::To::Position(
                    OffsetPosition::Unspecified.into(),
                )),
            }),
            dry_run: false,
        };
        assert_code(
            c.admin.reset_offsets(unspecified).await,
            Code::InvalidArgument,
            "OFFSET_POSITION_UNSPECIFIED",
        );
        assert_code(
            c.admin
                .describe_group(DescribeGroupRequest {
                    group_id: "g".into(),
                    ..Default::default()
                })
                .await,
            Code::NotFound,
            "g",
        );

        // The offsets topic exists, is listed as internal, and belongs to the broker.
        let topics = c
            .admin
            .list_topics(ListTopicsRequest {
                include_internal: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .topics;
        let offsets = topics
            .iter()
            .find(|t| t.name == "__consumer_offsets")
            .expect("__consumer_offsets exists");
        assert!(offsets.internal);
        assert_eq!(offsets.partitions, weir_server::DEFAULT_OFFSETS_PARTITIONS);
        let produce = c
            .producer
            .produce(ProduceRequest {
                topic: "__consumer_offsets".into(),
                partitions: vec![plain(0, &["x".to_string()], Compression::None)],
                acks: Acks::Leader as i32,
                timeout_ms: 0,
                transactional_id: String::new(),
            })
            .await;
        assert_code(produce, Code::InvalidArgument, "internal");
        for result in [
            c.admin
                .delete_topic(DeleteTopicRequest {
                    name: "__consumer_offsets".into(),
                })
                .await
                .map(|_| ()),
            c.admin
                .create_topic(CreateTopicRequest {
                    name: "__mine".into(),
                    partitions: 1,
                    replication_factor: 0,
                    configs: Default::default(),
                })
                .await
                .map(|_| ()),
        ] {
            assert_code(result, Code::InvalidArgument, "reserved");
        }
        server.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn committed_offsets_epochs_and_members_survive_a_restart() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path()).await;
        let mut c = connect(server.addr).await;
        c.create("events", 3, &[]).await;
        let mut g = groups(&c);
        let mut m = Member::default();
        m.apply(
            &g.heartbeat(join("audit", &["events"]))
                .await
                .unwrap()
                .into_inner(),
        );
        g.commit_offsets(commit("audit", &m, "events", &[(0, 11), (1, 22), (2, 33)]))
            .await
            .unwrap();
        let epoch_before = m.epoch;
        server.shutdown().await.unwrap();

        let server = start(dir.path()).await;
        let c = connect(server.addr).await;
        let mut g = groups(&c);
        let offsets = committed(&mut g, "audit").await;
        assert_eq!(
            offsets.values().copied().collect::<Vec<_>>(),
            [11, 22, 33],
            "{offsets:?}"
        );
        // The member survives the restart (its member record is in __consumer_offsets):
        // it goes on at its epoch with its partitions, without rejoining.
        let kept = m.beat_result(&mut g, "audit").await.unwrap();
        assert_eq!(kept.member_id, m.id);
        assert_eq!(kept.member_epoch, epoch_before);
        assert_eq!(assignment(&kept), m.owned);
        // A newcomer gets a higher epoch: epochs never go back.
        let mut again = Member::default();
        again.apply(
            &g.heartbeat(join("audit", &["events"]))
                .await
                .unwrap()
                .into_inner(),
        );
        assert!(
            again.epoch > epoch_before,
            "{} <= {epoch_before}",
            again.epoch
        );
        server.shutdown().await.unwrap();
    })
    .await;
}

impl Member {
    async fn beat_result(
        &self,
        client: &mut GroupsClient<Channel>,
        group: &str,
    ) -> Result<HeartbeatResponse, tonic::Status> {
        client
            .heartbeat(HeartbeatRequest {
                group_id: group.into(),
                member_id: self.id.clone(),
                member_epoch: self.epoch,
                ..HeartbeatRequest::default()
            })
            .await
            .map(tonic::Response::into_inner)
    }
}

#[tokio::test]
async fn metrics_show_group_members_and_lag() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path()).await;
        let mut c = connect(server.addr).await;
        c.create("m", 1, &[]).await;
        let values: Vec<String> = (0..10).map(|i| format!("v{i}")).collect();
        c.produce(ProduceRequest {
            topic: "m".into(),
            partitions: vec![plain(0, &values, Compression::None)],
            acks: Acks::Leader as i32,
            timeout_ms: 0,
            transactional_id: String::new(),
        })
        .await;
        let mut g = groups(&c);
        let mut m = Member::default();
        m.apply(
            &g.heartbeat(join("watchers", &["m"]))
                .await
                .unwrap()
                .into_inner(),
        );
        g.commit_offsets(commit("watchers", &m, "m", &[(0, 4)]))
            .await
            .unwrap();
        let (_, body) = http_get(server.admin_addr.unwrap(), "/metrics").await;
        for line in [
            "weir_group_members{group=\"watchers\"} 1",
            "weir_group_lag{group=\"watchers\",topic=\"m\",partition=\"0\"} 6",
            "weir_group_committed_offset{group=\"watchers\",topic=\"m\",partition=\"0\"} 4",
            "weir_offset_commits_total 1",
        ] {
            assert!(body.contains(line), "{line} not in:\n{body}");
        }
        server.shutdown().await.unwrap();
    })
    .await;
}

/// Bytes of every `.log` segment of a topic's partitions.
fn log_bytes(data_dir: &std::path::Path, topic_id: &str) -> u64 {
    let mut total = 0;
    for partition in std::fs::read_dir(data_dir.join("topics").join(topic_id)).unwrap() {
        for file in std::fs::read_dir(partition.unwrap().path()).unwrap() {
            let file = file.unwrap();
            if file.path().extension().is_some_and(|e| e == "log") {
                total += file.metadata().unwrap().len();
            }
        }
    }
    total
}

#[tokio::test]
async fn compaction_keeps_the_offsets_log_small_and_replay_reads_the_compacted_log() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let config = weir_server::ServerConfig {
            kafka_listen: None,
            retention_check_interval_ms: 50,
            offsets_partitions: 1,
            ..common::config(dir.path())
        };
        let server = weir_server::start(config.clone()).await.unwrap();
        let mut c = connect(server.addr).await;
        c.create("clicks", 4, &[]).await;
        // Small segments, so most of the offsets log is in closed segments compaction
        // may rewrite.
        c.admin
            .alter_topic_config(AlterTopicConfigRequest {
                name: "__consumer_offsets".into(),
                set: [("segment.bytes".to_string(), "4096".to_string())].into(),
                reset: vec![],
            })
            .await
            .unwrap();
        let topic_id = c
            .admin
            .describe_topic(DescribeTopicRequest {
                name: "__consumer_offsets".into(),
                allow_auto_create: false,
            })
            .await
            .unwrap()
            .into_inner()
            .topic
            .unwrap()
            .topic_id;
        let mut g = groups(&c);
        // Commits from outside the group (no member): a member would have to heartbeat
        // through the 800 commits, which take longer than a session when fsync is slow.
        let m = Member::default();
        const COMMITS: i64 = 800;
        for i in 1..=COMMITS {
            let offsets: Vec<(u32, i64)> = (0..4).map(|p| (p, i * 10 + i64::from(p))).collect();
            g.commit_offsets(commit("counters", &m, "clicks", &offsets))
                .await
                .unwrap();
        }
        // Each commit is one batch of four records, about 250 bytes: 800 of them are
        // about 200 KB before compaction (which runs meanwhile, every 50 ms). The newest
        // value of each of the four keys fits in a few segments.
        let hw = c.latest("__consumer_offsets", 0).await;
        assert!(hw >= COMMITS * 4, "only {hw} records in the offsets log");
        wait_until("the offsets log is compacted", || {
            let now = log_bytes(dir.path(), &topic_id);
            async move { now < 40_000 }
        })
        .await;

        // A restart replays the compacted log (gaps, header-only batches) to the same
        // committed offsets.
        server.shutdown().await.unwrap();
        let server = weir_server::start(config).await.unwrap();
        let c = connect(server.addr).await;
        let offsets = committed(&mut groups(&c), "counters").await;
        let expected: Vec<i64> = (0..4).map(|p| COMMITS * 10 + p).collect();
        assert_eq!(offsets.values().copied().collect::<Vec<_>>(), expected);
        server.shutdown().await.unwrap();
    })
    .await;
}

/// Every page of ListGroups, followed from the first token to the last.
async fn all_group_pages(c: &mut Clients, page_size: u32) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = c
            .admin
            .list_groups(ListGroupsRequest {
                page_size,
                page_token,
            })
            .await
            .expect("list groups")
            .into_inner();
        pages.push(page.groups.into_iter().map(|g| g.group_id).collect());
        if page.next_page_token.is_empty() {
            return pages;
        }
        page_token = page.next_page_token;
    }
}

#[tokio::test]
async fn list_groups_pages_cover_every_group_once_and_clamp_the_page_size() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path()).await;
        let mut c = connect(server.addr).await;
        c.create("t", 1, &[]).await;
        // More groups than the largest page, each made by a commit from outside it.
        let count = weir_server::MAX_PAGE_SIZE as usize + 5;
        let ids: Vec<String> = (0..count).map(|i| format!("g{i:05}")).collect();
        for chunk in ids.chunks(100) {
            let commits = chunk.iter().map(|id| {
                let mut g = groups(&c);
                let request = commit(id, &Member::default(), "t", &[(0, 1)]);
                async move { g.commit_offsets(request).await.expect("commit") }
            });
            futures_util::future::join_all(commits).await;
        }

        // Small pages: every group once, in id order, each page full but the last.
        let pages = all_group_pages(&mut c, 7).await;
        assert_eq!(pages.len(), count.div_ceil(7));
        assert!(pages[..pages.len() - 1].iter().all(|p| p.len() == 7));
        assert_eq!(pages.concat(), ids);

        // 0 is the default size; a size past the maximum is clamped to it.
        let default = all_group_pages(&mut c, 0).await;
        assert_eq!(default[0].len(), weir_server::DEFAULT_PAGE_SIZE as usize);
        assert_eq!(default.concat(), ids);
        let clamped = all_group_pages(&mut c, u32::MAX).await;
        let sizes: Vec<usize> = clamped.iter().map(Vec::len).collect();
        assert_eq!(sizes, [weir_server::MAX_PAGE_SIZE as usize, 5]);
        assert_eq!(clamped.concat(), ids);

        // A made-up token, and a token of another listing, are refused.
        let topics_token = c
            .admin
            .list_topics(ListTopicsRequest {
                include_internal: true,
                page_size: 1,
                page_token: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .next_page_token;
        assert!(!topics_token.is_empty(), "two topics, pages of one");
        for page_token in ["g00003".to_owned(), topics_token] {
            assert_code(
                c.admin
                    .list_groups(ListGroupsRequest {
                        page_size: 0,
                        page_token,
                    })
                    .await,
                Code::InvalidArgument,
                "page_token",
            );
        }
        server.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn describe_group_pages_its_members() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path()).await;
        let mut c = connect(server.addr).await;
        c.create("orders", 4, &[]).await;
        let mut g = groups(&c);
        let mut members = Vec::new();
        for _ in 0..5 {
            let mut m = Member::default();
            m.apply(
                &g.heartbeat(join("pages", &["orders"]))
                    .await
                    .unwrap()
                    .into_inner(),
            );
            members.push(m);
        }
        let mut expected: Vec<String> = members.iter().map(|m| m.id.clone()).collect();
        expected.sort();

        let mut listed = Vec::new();
        let mut page_token = String::new();
        let mut pages = 0;
        loop {
            let page = c
                .admin
                .describe_group(DescribeGroupRequest {
                    group_id: "pages".into(),
                    page_size: 2,
                    page_token,
                })
                .await
                .unwrap()
                .into_inner();
            pages += 1;
            assert!(page.members.len() <= 2);
            // Every page describes the whole group besides its members.
            assert_eq!(page.group_id, "pages");
            assert_ne!(page.state(), GroupState::Unspecified);
            assert_eq!(page.offsets.len(), 4, "{page:?}");
            listed.extend(page.members.into_iter().map(|m| m.member_id));
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        assert_eq!(pages, 3);
        assert_eq!(listed, expected);

        assert_code(
            c.admin
                .describe_group(DescribeGroupRequest {
                    group_id: "pages".into(),
                    page_size: 2,
                    page_token: "members:zz".into(),
                })
                .await,
            Code::InvalidArgument,
            "page_token",
        );
        server.shutdown().await.unwrap();
    })
    .await;
}
