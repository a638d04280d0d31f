//! Transactions through the gRPC API, as a client in another language uses them
//! (transactions.proto): FindCoordinator for the transactional id, InitProducerId,
//! AddPartitions, produces that name the transactional id, transactional offsets, and
//! EndTransaction. Checked as a reader checks: a read-committed fetch sees exactly the
//! committed records, a read-uncommitted one sees the aborted ones too; committed
//! offsets appear only when their transaction commits; a second instance fences the
//! first; and what a partition was not verified for is refused, nothing appended.

use crate::common;

use common::*;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;
use weir_proto::v1::groups_client::GroupsClient;
use weir_proto::v1::transactions_client::TransactionsClient;
use weir_proto::v1::*;

const TXN_ID: &str = "copier-1";

/// Plain records `values` of producer `ids` at `sequence`, for partition `partition`.
fn numbered(partition: u32, values: &[&str], ids: (i64, i32), sequence: i32) -> PartitionRecords {
    let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
    PartitionRecords {
        producer_id: Some(ids.0),
        producer_epoch: ids.1,
        base_sequence: sequence,
        ..plain(partition, &values, Compression::None)
    }
}

/// A transactional produce of `partitions` to topic `t`, acks=all.
fn txn_request(partitions: Vec<PartitionRecords>) -> ProduceRequest {
    ProduceRequest {
        transactional_id: TXN_ID.into(),
        ..request("t", partitions, Acks::All)
    }
}

/// InitProducerId, retried as a client retries it while the coordinator aborts an
/// older instance's open transaction (UNAVAILABLE, CONCURRENT_TRANSACTIONS).
async fn init(txns: &mut TransactionsClient<Channel>) -> (i64, i32) {
    loop {
        let answer = txns
            .init_producer_id(InitTransactionsRequest {
                transactional_id: TXN_ID.into(),
                transaction_timeout_ms: 0,
            })
            .await;
        match answer {
            Ok(r) => return (r.get_ref().producer_id, r.get_ref().producer_epoch),
            Err(e) if reason(&e) == "CONCURRENT_TRANSACTIONS" => {
                assert_eq!(e.code(), Code::Unavailable, "{e:?}");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => panic!("init producer id: {e:?}"),
        }
    }
}

async fn add(
    txns: &mut TransactionsClient<Channel>,
    ids: (i64, i32),
    partitions: &[u32],
) -> Result<AddPartitionsResponse, tonic::Status> {
    txns.add_partitions(AddPartitionsRequest {
        transactional_id: TXN_ID.into(),
        producer_id: ids.0,
        producer_epoch: ids.1,
        topics: vec![TopicPartitions {
            topic: "t".into(),
            partitions: partitions.to_vec(),
        }],
    })
    .await
    .map(tonic::Response::into_inner)
}

async fn end(
    txns: &mut TransactionsClient<Channel>,
    ids: (i64, i32),
    commit: bool,
) -> Result<EndTransactionResponse, tonic::Status> {
    txns.end_transaction(EndTransactionRequest {
        transactional_id: TXN_ID.into(),
        producer_id: ids.0,
        producer_epoch: ids.1,
        commit,
    })
    .await
    .map(tonic::Response::into_inner)
}

/// The values of partition `partition` of `t` a reader at `isolation` sees.
async fn read(c: &mut Clients, partition: u32, isolation: IsolationLevel) -> Vec<String> {
    let r = c
        .consumer
        .fetch(FetchRequest {
            topic: "t".into(),
            partitions: vec![PartitionFetch {
                partition,
                offset: 0,
                max_bytes: 0,
            }],
            format: RecordFormat::Records as i32,
            isolation: isolation as i32,
            ..Default::default()
        })
        .await
        .expect("fetch")
        .into_inner()
        .results
        .remove(0);
    assert_eq!(r.error, None);
    r.records
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
        .collect()
}

/// The last stable offset of partition `partition` of `t`: where a read-committed
/// reader's end is.
async fn last_stable_offset(c: &mut Clients, partition: u32) -> i64 {
    c.consumer
        .list_offsets(ListOffsetsRequest {
            topic: "t".into(),
            partitions: vec![PartitionOffsetQuery {
                partition,
                spec: Some(OffsetSpec {
                    spec: Some(position(OffsetPosition::Latest)),
                }),
            }],
            isolation: IsolationLevel::ReadCommitted as i32,
        })
        .await
        .expect("list offsets")
        .into_inner()
        .results
        .remove(0)
        .offset
}

/// The ErrorInfo reason of a refused call.
fn reason(status: &tonic::Status) -> String {
    status
        .get_details_error_info()
        .map(|info| info.reason)
        .unwrap_or_default()
}

#[tokio::test]
async fn a_grpc_transaction_commits_and_aborts_and_read_committed_sees_only_the_committed() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path()).await;
        let mut c = connect(server.addr).await;
        c.create("t", 2, &[]).await;

        // The coordinator of the id is this broker, found as a client finds it.
        let found = GroupsClient::new(c.channel.clone())
            .find_coordinator(FindCoordinatorRequest {
                group_id: TXN_ID.into(),
                r#type: CoordinatorType::Transaction as i32,
            })
            .await
            .expect("find coordinator")
            .into_inner();
        assert_eq!(found.port, u32::from(server.addr.port()));
        let mut txns = TransactionsClient::new(c.channel.clone());
        let ids = init(&mut txns).await;

        // One transaction over both partitions, committed.
        add(&mut txns, ids, &[0, 1])
            .await
            .expect("partitions added");
        let produced = c
            .produce(txn_request(vec![
                numbered(0, &["a0", "a1"], ids, 0),
                numbered(1, &["b0"], ids, 0),
            ]))
            .await;
        assert!(
            produced.results.iter().all(|r| r.error.is_none()),
            "{produced:?}"
        );
        let next = end(&mut txns, ids, true).await.expect("committed");
        assert_eq!((next.producer_id, next.producer_epoch), ids);

        // A second, aborted.
        add(&mut txns, ids, &[0]).await.expect("partition added");
        let produced = c
            .produce(txn_request(vec![numbered(0, &["x0", "x1"], ids, 2)]))
            .await;
        assert_eq!(produced.results[0].error, None);
        end(&mut txns, ids, false).await.expect("aborted");

        // A third, committed: the reader skips the aborted records between.
        add(&mut txns, ids, &[0]).await.expect("partition added");
        let produced = c
            .produce(txn_request(vec![numbered(0, &["c0"], ids, 4)]))
            .await;
        assert_eq!(produced.results[0].error, None);
        end(&mut txns, ids, true).await.expect("committed");

        // The markers land after the answer: wait for the last one.
        let want = ["a0", "a1", "c0"].map(String::from).to_vec();
        wait_until("the third transaction's marker", || {
            let mut c = c.clone();
            let want = want.clone();
            async move { read(&mut c, 0, IsolationLevel::ReadCommitted).await == want }
        })
        .await;
        assert_eq!(
            read(&mut c, 1, IsolationLevel::ReadCommitted).await,
            vec!["b0".to_string()]
        );
        assert_eq!(
            read(&mut c, 0, IsolationLevel::ReadUncommitted).await,
            ["a0", "a1", "x0", "x1", "c0"].map(String::from).to_vec()
        );
    })
    .await;
}

#[tokio::test]
async fn grpc_transactional_offsets_appear_when_the_transaction_commits() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path()).await;
        let mut c = connect(server.addr).await;
        c.create("t", 1, &[]).await;
        let mut txns = TransactionsClient::new(c.channel.clone());
        let mut groups = GroupsClient::new(c.channel.clone());
        let ids = init(&mut txns).await;
        let committed = |groups: &mut GroupsClient<Channel>| {
            let mut groups = groups.clone();
            async move {
                let offset = groups
                    .fetch_offsets(FetchOffsetsRequest {
                        group_id: "g".into(),
                        topics: vec![TopicPartitions {
                            topic: "t".into(),
                            partitions: vec![0],
                        }],
                    })
                    .await
                    .expect("fetch offsets")
                    .into_inner()
                    .offsets[0]
                    .clone();
                (offset.offset, offset.pending)
            }
        };
        let commit_in_txn = |txns: &mut TransactionsClient<Channel>, offset: i64| {
            let mut txns = txns.clone();
            async move {
                txns.commit_offsets(TransactionalCommitRequest {
                    transactional_id: TXN_ID.into(),
                    producer_id: ids.0,
                    producer_epoch: ids.1,
                    group_id: "g".into(),
                    topics: vec![TopicOffsetCommit {
                        topic: "t".into(),
                        partitions: vec![PartitionOffsetCommit {
                            partition: 0,
                            offset,
                            metadata: String::new(),
                        }],
                    }],
                    ..Default::default()
                })
                .await
            }
        };

        // Without AddOffsets first, the commit is refused.
        let refused = commit_in_txn(&mut txns, 3).await.expect_err("not added");
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");

        let add_offsets = AddOffsetsRequest {
            transactional_id: TXN_ID.into(),
            producer_id: ids.0,
            producer_epoch: ids.1,
            group_id: "g".into(),
        };
        txns.add_offsets(add_offsets.clone())
            .await
            .expect("offsets added");
        let results = commit_in_txn(&mut txns, 7)
            .await
            .expect("committed in the transaction")
            .into_inner()
            .results;
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].error, None);
        assert_eq!(
            committed(&mut groups).await,
            (-1, true),
            "not visible before the commit, and said to be pending"
        );
        end(&mut txns, ids, true).await.expect("committed");
        wait_until("the offset's commit marker", || {
            let mut groups = groups.clone();
            async move { committed(&mut groups).await == (7, false) }
        })
        .await;

        // An aborted transaction's offset never appears.
        txns.add_offsets(add_offsets).await.expect("offsets added");
        commit_in_txn(&mut txns, 9).await.expect("written");
        assert_eq!(committed(&mut groups).await, (7, true));
        end(&mut txns, ids, false).await.expect("aborted");
        wait_until("the offset's abort marker", || {
            let mut groups = groups.clone();
            async move { !committed(&mut groups).await.1 }
        })
        .await;
        assert_eq!(committed(&mut groups).await, (7, false));
    })
    .await;
}

#[tokio::test]
async fn grpc_transactions_refuse_what_was_not_verified_and_fence_an_older_instance() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path()).await;
        let mut c = connect(server.addr).await;
        c.create("t", 2, &[]).await;
        let mut txns = TransactionsClient::new(c.channel.clone());
        let ids = init(&mut txns).await;

        // A transactional batch in a produce that names no transactional id.
        let mut builder = weir_log::RecordBatchBuilder::new(weir_log::Compression::None)
            .producer_id(ids.0)
            .producer_epoch(ids.1 as i16)
            .base_sequence(0)
            .transactional();
        builder.push(&weir_log::Record {
            key: None,
            value: value("stray"),
            headers: vec![],
            timestamp: 1,
        });
        let stray = builder.build().unwrap().freeze();
        let r = c
            .produce(request("t", vec![packed(0, stray.clone())], Acks::All))
            .await;
        let error = r.results[0].error.clone().expect("refused");
        assert_eq!(error.code, Code::InvalidArgument as i32, "{error:?}");
        assert!(error.message.contains("transactional id"), "{error:?}");

        // The same batch naming the id, to a partition the transaction does not hold.
        let r = c
            .produce(ProduceRequest {
                transactional_id: TXN_ID.into(),
                ..request("t", vec![packed(0, stray)], Acks::All)
            })
            .await;
        let error = r.results[0].error.clone().expect("refused");
        assert_eq!(error.code, Code::FailedPrecondition as i32, "{error:?}");
        assert_eq!(error.reason, "TRANSACTION_ABORTABLE", "{error:?}");
        // Nothing was appended, and no transaction hangs on the partition.
        assert_eq!(c.latest("t", 0).await, 0);
        assert_eq!(
            read(&mut c, 0, IsolationLevel::ReadUncommitted).await,
            Vec::<String>::new()
        );

        // A second instance fences the first, whose transaction it aborts.
        add(&mut txns, ids, &[1]).await.expect("added");
        let r = c
            .produce(txn_request(vec![numbered(1, &["old"], ids, 0)]))
            .await;
        assert_eq!(r.results[0].error, None);
        let newer = init(&mut txns).await;
        assert_eq!(newer.0, ids.0);
        assert!(newer.1 > ids.1, "{newer:?} after {ids:?}");
        let fenced = end(&mut txns, ids, true).await.expect_err("fenced");
        assert_eq!(fenced.code(), Code::FailedPrecondition, "{fenced:?}");
        assert_eq!(reason(&fenced), "PRODUCER_FENCED", "{fenced:?}");
        let fenced = add(&mut txns, ids, &[0]).await.expect_err("fenced");
        assert_eq!(reason(&fenced), "PRODUCER_FENCED", "{fenced:?}");
        let r = c
            .produce(txn_request(vec![numbered(1, &["late"], ids, 1)]))
            .await;
        let error = r.results[0].error.clone().expect("refused");
        assert_eq!(error.code, Code::FailedPrecondition as i32, "{error:?}");
        wait_until("the fenced transaction's abort marker", || {
            let mut c = c.clone();
            async move { last_stable_offset(&mut c, 1).await == 2 }
        })
        .await;
        assert_eq!(
            read(&mut c, 1, IsolationLevel::ReadCommitted).await,
            Vec::<String>::new()
        );

        // Bad input: the right code, by name.
        let bad = txns
            .init_producer_id(InitTransactionsRequest {
                transactional_id: String::new(),
                transaction_timeout_ms: 0,
            })
            .await
            .expect_err("empty id");
        assert_eq!(bad.code(), Code::InvalidArgument, "{bad:?}");
        let bad = txns
            .init_producer_id(InitTransactionsRequest {
                transactional_id: TXN_ID.into(),
                transaction_timeout_ms: 16 * 60 * 1000,
            })
            .await
            .expect_err("over the maximum timeout");
        assert_eq!(bad.code(), Code::InvalidArgument, "{bad:?}");
        let bad = add(&mut txns, (newer.0, 70_000), &[0])
            .await
            .expect_err("epoch out of range");
        assert_eq!(bad.code(), Code::InvalidArgument, "{bad:?}");
        let unknown = add(&mut txns, newer, &[9])
            .await
            .expect_err("no partition 9");
        assert_eq!(unknown.code(), Code::InvalidArgument, "{unknown:?}");
        assert_eq!(reason(&unknown), "UNKNOWN_PARTITION", "{unknown:?}");
        let mut request = AddPartitionsRequest {
            transactional_id: TXN_ID.into(),
            producer_id: newer.0,
            producer_epoch: newer.1,
            topics: vec![TopicPartitions {
                topic: "nope".into(),
                partitions: vec![0],
            }],
        };
        let unknown = txns
            .add_partitions(request.clone())
            .await
            .expect_err("no topic nope");
        assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
        request.topics[0].topic = "t".into();
        txns.add_partitions(request)
            .await
            .expect("the newer instance adds");
    })
    .await;
}
