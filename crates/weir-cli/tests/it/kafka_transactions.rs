//! Transactions as Kafka clients see them (issue 44):
//! - the partition side alone: transactional batches and their commit and abort markers
//!   written through the broker's core, then read by confluent-kafka consumers at
//!   `isolation.level` read_committed and read_uncommitted through the Kafka listener
//!   (`tests/kafka/read_committed.py`);
//! - end to end: confluent-kafka transactional producers against the transaction
//!   coordinator (commit, abort, fencing by a second instance of the transactional id),
//!   read back at both isolation levels (`tests/kafka/transactions_confluent.py`);
//! - consume-transform-produce: confluent-kafka's `send_offsets_to_transaction`
//!   (TxnOffsetCommit), the group's offsets following committed transactions only
//!   (`tests/kafka/txn_offsets_confluent.py`);
//! - Weir's own readers at both isolation levels: `weir consume --isolation` and gRPC
//!   Fetch of records and of raw batches.

use crate::common;

use bytes::Bytes;
use common::*;
use serde_json::Value;
use weir_batch::{Compression, Record, RecordBatchBuilder};
use weir_broker::produce::{self, Acks, PartitionProduce, ProduceData, ProduceRequest};
use weir_broker::security::Operation;
use weir_broker::transactions::{TxnMarkers, write_txn_markers};
use weir_broker::{Listener, RequestContext, producers};

const TOPIC: &str = "txn-orders";

/// One batch of `values` from `producer` (transactional unless `producer` is `None`).
fn batch(producer: Option<(i64, i16, i32)>, values: &[&str]) -> Bytes {
    let mut b = RecordBatchBuilder::new(Compression::None);
    if let Some((id, epoch, seq)) = producer {
        b = b
            .producer_id(id)
            .producer_epoch(epoch)
            .base_sequence(seq)
            .transactional();
    }
    for v in values {
        b.push(&Record {
            key: None,
            value: Some(Bytes::from(v.to_string())),
            headers: Vec::new(),
            timestamp: 1_700_000_000_000,
        });
    }
    b.build().expect("a valid batch").freeze()
}

/// Appends `bytes` to partition 0 through the core. A transactional batch goes with the
/// verification guard its partition gives (the partition side alone: this fixture's
/// transactions have no coordinator, which a listener would ask before appending).
async fn produce(broker: &std::sync::Arc<weir_broker::Broker>, ctx: &RequestContext, bytes: Bytes) {
    let header = weir_batch::BatchHeader::parse(&bytes);
    let mut verification = None;
    if header.is_transactional() {
        let partition = broker
            .topic_for(ctx, Operation::Write, TOPIC)
            .and_then(|t| Ok(t.partition(0)?))
            .expect("the topic's partition");
        let guard = partition
            .begin_verification(header.producer_id, header.producer_epoch)
            .await
            .expect("a guard");
        verification = Some(guard.guard);
    }
    let pending = produce::submit(
        broker,
        ctx,
        ProduceRequest {
            topic: TOPIC.to_string(),
            acks: Acks::All,
            timeout: None,
            partitions: vec![PartitionProduce {
                partition: 0,
                data: Ok(ProduceData::Batches {
                    bytes,
                    compression: None,
                    verification,
                }),
            }],
        },
    )
    .await
    .expect("the produce is accepted");
    for result in pending.finish().await {
        result.outcome.expect("the batch is appended");
    }
}

async fn end(
    broker: &std::sync::Arc<weir_broker::Broker>,
    ctx: &RequestContext,
    (producer_id, producer_epoch): (i64, i16),
    commit: bool,
) {
    let markers = [TxnMarkers {
        producer_id,
        producer_epoch,
        commit,
        coordinator_epoch: 0,
        topics: vec![(TOPIC.to_string(), vec![0])],
    }];
    let answers = write_txn_markers(broker, ctx, &markers, None)
        .await
        .expect("markers are accepted");
    for written in answers.into_iter().flatten() {
        written.outcome.expect("the marker is appended");
    }
}

/// A broker with a Kafka listener and topic [`TOPIC`] (one partition) holding, through
/// the core: a committed and an aborted transaction interleaved, plain records, and a
/// transaction still open. Offsets: c-0 0, c-1 1, a-0 2, a-1 3, plain-0 4, c-2 5, a-2 6,
/// abort marker 7, commit marker 8, plain-1 9, o-0 10, plain-2 11.
fn broker_with_mixed_transactions() -> Broker {
    let broker = Broker::start_with_kafka(weir_server::ServerConfig {
        admin_listen: None,
        ..Default::default()
    });
    broker.ok(&["topic", "create", TOPIC, "--partitions", "1"], "");
    let core = broker.server.as_ref().expect("running").core();
    broker.block_on(async {
        let ctx = RequestContext::anonymous(Listener::GRPC, None);
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(
                producers::init_producer_id(&core, &ctx, None)
                    .await
                    .unwrap(),
            );
        }
        let (committed, aborted, open) = (ids[0], ids[1], ids[2]);
        let txn = |(id, epoch): (i64, i16), seq| Some((id, epoch, seq));
        produce(&core, &ctx, batch(txn(committed, 0), &["c-0", "c-1"])).await;
        produce(&core, &ctx, batch(txn(aborted, 0), &["a-0", "a-1"])).await;
        produce(&core, &ctx, batch(None, &["plain-0"])).await;
        produce(&core, &ctx, batch(txn(committed, 2), &["c-2"])).await;
        produce(&core, &ctx, batch(txn(aborted, 2), &["a-2"])).await;
        end(&core, &ctx, aborted, false).await;
        end(&core, &ctx, committed, true).await;
        produce(&core, &ctx, batch(None, &["plain-1"])).await;
        // Still open: read_committed stops before it (the last stable offset).
        produce(&core, &ctx, batch(txn(open, 0), &["o-0"])).await;
        produce(&core, &ctx, batch(None, &["plain-2"])).await;
    });
    broker
}

/// What a read committed reader of [`broker_with_mixed_transactions`] sees.
const COMMITTED: [&str; 5] = ["c-0", "c-1", "plain-0", "c-2", "plain-1"];
/// What a read uncommitted reader sees: every record, no transaction marker.
const UNCOMMITTED: [&str; 10] = [
    "c-0", "c-1", "a-0", "a-1", "plain-0", "c-2", "a-2", "plain-1", "o-0", "plain-2",
];

#[test]
fn read_committed_consumers_see_exactly_the_committed_transaction() {
    let python = installed("tests/python/setup.sh");
    let broker = broker_with_mixed_transactions();
    let kafka = broker.kafka.clone().expect("a Kafka listener");
    let script = repo_root().join("tests/kafka/read_committed.py");
    let out = run_ok(
        &python,
        &[&script.to_string_lossy(), &kafka, TOPIC, "5", "10"],
    );
    let lines = json_lines(&out);
    let read = |isolation: &str| -> &Value {
        lines
            .iter()
            .find(|l| l["isolation"] == isolation)
            .unwrap_or_else(|| panic!("no {isolation} line in {out}"))
    };
    let values = |line: &Value| -> Vec<String> {
        line["values"]
            .as_array()
            .expect("values")
            .iter()
            .map(|v| v.as_str().expect("a string").to_string())
            .collect()
    };
    let committed = read("read_committed");
    assert_eq!(values(committed), COMMITTED, "{out}");
    assert_eq!(committed["high"], 10, "ListOffsets answers the LSO: {out}");
    let uncommitted = read("read_uncommitted");
    assert_eq!(values(uncommitted), UNCOMMITTED, "{out}");
    assert_eq!(uncommitted["high"], 12, "{out}");
}

/// `weir consume --isolation read-committed` (the Rust client's Consume streams, raw
/// batches the broker filtered) and gRPC Fetch of decoded records and of raw batches,
/// at both levels: the same records Kafka's read_committed consumers see, never a
/// transaction marker as a record, and the end of the log at the last stable offset.
#[test]
fn grpc_readers_and_weir_consume_read_committed_as_kafka_consumers_do() {
    let broker = broker_with_mixed_transactions();
    let lines = |out: String| -> Vec<String> { out.lines().map(str::to_owned).collect() };
    // Without --follow the command stops at the end it looked up: the last stable offset
    // (10) under read committed, so the open transaction does not hold it up.
    assert_eq!(
        lines(broker.ok(&["consume", TOPIC, "--isolation", "read-committed"], "")),
        COMMITTED
    );
    assert_eq!(lines(broker.ok(&["consume", TOPIC], "")), UNCOMMITTED);
    let group = broker.ok(
        &[
            "consume",
            TOPIC,
            "--group",
            "txn-readers",
            "--isolation",
            "read-committed",
            "--format",
            "json",
        ],
        "",
    );
    let offsets: Vec<i64> = json_lines(&group)
        .iter()
        .map(|r| r["offset"].as_i64().expect("an offset"))
        .collect();
    assert_eq!(offsets, [0, 1, 4, 5, 9], "{group}");

    use weir_proto::v1 as pb;
    let fetch = |format: pb::RecordFormat, isolation: i32| {
        let addr = format!("http://{}", broker.addr);
        broker.block_on(async move {
            let mut client = pb::consumer_client::ConsumerClient::connect(addr)
                .await
                .expect("connects");
            client
                .fetch(pb::FetchRequest {
                    topic: TOPIC.to_string(),
                    partitions: vec![pb::PartitionFetch {
                        partition: 0,
                        offset: 0,
                        max_bytes: 0,
                    }],
                    format: format as i32,
                    isolation,
                    ..Default::default()
                })
                .await
        })
    };
    let committed = pb::IsolationLevel::ReadCommitted as i32;
    let uncommitted = pb::IsolationLevel::ReadUncommitted as i32;
    let decoded = |isolation| -> (Vec<String>, pb::PartitionFetchResult) {
        let mut answer = fetch(pb::RecordFormat::Records, isolation)
            .expect("the fetch is answered")
            .into_inner();
        let result = answer.results.remove(0);
        assert_eq!(result.error, None);
        let values = result
            .records
            .iter()
            .map(|r| String::from_utf8(r.value.clone().expect("a value").to_vec()).expect("text"))
            .collect();
        (values, result)
    };
    let (values, result) = decoded(committed);
    assert_eq!(values, COMMITTED);
    assert_eq!(
        (
            result.last_stable_offset,
            result.high_watermark,
            result.next_offset
        ),
        (10, 12, 10)
    );
    let (values, result) = decoded(uncommitted);
    assert_eq!(
        values, UNCOMMITTED,
        "no transaction marker comes back as a record"
    );
    assert_eq!(result.next_offset, 12);

    // Raw batches: read committed leaves out the aborted batches and the markers.
    let mut answer = fetch(pb::RecordFormat::Batches, committed)
        .expect("the fetch is answered")
        .into_inner();
    let batches = answer.results.remove(0).batches;
    let (mut at, mut values) = (0, Vec::new());
    while at < batches.len() {
        let len = weir_batch::framed_len(&batches[at..]).expect("a whole batch");
        let batch = batches.slice(at..at + len);
        assert!(!weir_batch::BatchHeader::parse(&batch).is_control());
        for r in weir_batch::decode_records(&batch).expect("decodes") {
            values.push(String::from_utf8(r.value.expect("a value").to_vec()).unwrap());
        }
        at += len;
    }
    assert_eq!(values, COMMITTED);

    // An isolation level the proto does not define is refused, not read as a default.
    let refused = fetch(pb::RecordFormat::Records, 7).expect_err("refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().contains("isolation"),
        "{}",
        refused.message()
    );
}

#[test]
fn confluent_kafka_transactions_commit_abort_and_fence() {
    let python = installed("tests/python/setup.sh");
    let broker = Broker::start_with_kafka(weir_server::ServerConfig {
        admin_listen: None,
        ..Default::default()
    });
    let kafka = broker.kafka.clone().expect("a Kafka listener");
    broker.ok(&["topic", "create", "txn-e2e", "--partitions", "1"], "");
    let script = repo_root().join("tests/kafka/transactions_confluent.py");
    let out = run_ok(&python, &[&script.to_string_lossy(), &kafka, "txn-e2e"]);
    let lines = json_lines(&out);
    let line = |step: &str, isolation: Option<&str>| -> &Value {
        lines
            .iter()
            .find(|l| l["step"] == step && isolation.is_none_or(|i| l["isolation"] == i))
            .unwrap_or_else(|| panic!("no {step} {isolation:?} line in {out}"))
    };
    let values = |line: &Value| -> Vec<String> {
        line["values"]
            .as_array()
            .expect("values")
            .iter()
            .map(|v| v.as_str().expect("a string").to_string())
            .collect()
    };
    assert_eq!(
        values(line("read", Some("read_committed"))),
        ["c-0", "c-1", "c-2", "c-3"],
        "read_committed sees exactly the committed records: {out}"
    );
    assert_eq!(
        values(line("read", Some("read_uncommitted"))),
        ["c-0", "c-1", "c-2", "a-0", "a-1", "a-2", "c-3"],
        "read_uncommitted sees both transactions: {out}"
    );
    let fence = line("fence", None);
    assert!(
        ["_FENCED", "PRODUCER_FENCED", "INVALID_PRODUCER_EPOCH"]
            .contains(&fence["error"].as_str().unwrap_or_default()),
        "the fenced producer's next transaction fails with a fencing error: {out}"
    );
    // Fatal, as librdkafka makes every fencing (a produce's INVALID_PRODUCER_EPOCH, an
    // add's or an end's PRODUCER_FENCED): the zombie must not go on.
    assert_eq!(fence["fatal"], true, "the fencing error is fatal: {out}");
    assert_eq!(line("second", None)["ok"], true, "{out}");
    // kafka-python's admin client: DescribeTransactions at the id's coordinator and
    // ListTransactions.
    let described = line("describe", None);
    assert_eq!(described["state"], "CompleteCommit", "{out}");
    assert_eq!(described["timeout_ms"], 60_000, "{out}");
    assert_eq!(
        described["producer_epoch"], 1,
        "the second instance's epoch, one above the fenced one's: {out}"
    );
    assert_eq!(
        line("list", None)["ids"],
        serde_json::json!(["weir-txn-test"]),
        "{out}"
    );
}

/// A consume-transform-produce loop: the input offsets sent with a transaction become
/// the group's committed offsets when it commits and are dropped when it aborts; a new
/// consumer of the group resumes from the last committed transaction, so the
/// read_committed output holds each input once.
#[test]
fn confluent_kafka_send_offsets_to_transaction_commits_with_the_transaction() {
    let python = installed("tests/python/setup.sh");
    let broker = Broker::start_with_kafka(weir_server::ServerConfig {
        admin_listen: None,
        ..Default::default()
    });
    let kafka = broker.kafka.clone().expect("a Kafka listener");
    broker.ok(&["topic", "create", "ctp-in", "--partitions", "1"], "");
    broker.ok(&["topic", "create", "ctp-out", "--partitions", "1"], "");
    let script = repo_root().join("tests/kafka/txn_offsets_confluent.py");
    let out = run_ok(
        &python,
        &[&script.to_string_lossy(), &kafka, "ctp-in", "ctp-out"],
    );
    let lines = json_lines(&out);
    let committed = |after: &str| -> i64 {
        lines
            .iter()
            .find(|l| l["step"] == "committed" && l["after"] == after)
            .and_then(|l| l["offset"].as_i64())
            .unwrap_or_else(|| panic!("no committed offset after {after} in {out}"))
    };
    let values = |step: &str| -> Vec<String> {
        lines
            .iter()
            .find(|l| l["step"] == step)
            .and_then(|l| l["values"].as_array())
            .unwrap_or_else(|| panic!("no {step} line in {out}"))
            .iter()
            .map(|v| v.as_str().expect("a string").to_string())
            .collect()
    };
    assert_eq!(
        committed("commit"),
        3,
        "the committed transaction's offsets: {out}"
    );
    assert_eq!(
        committed("abort"),
        3,
        "an aborted transaction's are dropped: {out}"
    );
    assert_eq!(
        values("resumed"),
        ["i-3", "i-4", "i-5"],
        "a new consumer resumes from the last committed transaction: {out}"
    );
    assert_eq!(committed("resumed"), 6, "{out}");
    assert_eq!(
        values("output"),
        ["o-i-0", "o-i-1", "o-i-2", "o-i-3", "o-i-4", "o-i-5"],
        "read_committed output holds each input once: {out}"
    );
}

/// Kafka's ACLs on transactional ids, through the core every listener uses: without an
/// ACL, InitProducerId and FindCoordinator for a transactional id are
/// TRANSACTIONAL_ID_AUTHORIZATION_FAILED; Write on the id allows both (Write implies
/// Describe), and only on that id.
#[test]
fn transactional_ids_need_write_and_describe_acls() {
    use std::time::{Duration, Instant};
    use weir_broker::security::{AclBinding, Operation, PatternType, Permission, ResourceType};
    use weir_broker::{Reason, security_admin, transactions};

    // With authorization on, brokers prove who they are to each other with certificates.
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
        authorization: true,
        ..Default::default()
    });
    let core = broker.server.as_ref().expect("running").core();
    broker.block_on(async {
        let client = RequestContext::anonymous(Listener::GRPC, None);
        let admin = RequestContext::anonymous(Listener::INTERNAL, None);
        let deadline = Instant::now() + Duration::from_secs(30);
        while core.transactions().is_err() {
            assert!(
                Instant::now() < deadline,
                "the transaction coordinator never opened"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let not_authorized = Reason::NotAuthorized {
            resource_type: ResourceType::TransactionalId,
        };
        let init = |id: &'static str| {
            let (core, client) = (core.clone(), client.clone());
            async move { transactions::init_producer_id(&core, &client, id, 60_000, None).await }
        };
        assert_eq!(init("acl-tx").await.unwrap_err().reason, not_authorized);
        assert_eq!(
            transactions::find_coordinator(&core, &client, "acl-tx")
                .unwrap_err()
                .reason,
            not_authorized
        );
        security_admin::create_acls(
            &core,
            &admin,
            vec![AclBinding {
                resource_type: ResourceType::TransactionalId,
                resource_name: "acl-tx".into(),
                pattern_type: PatternType::Literal,
                principal: "User:ANONYMOUS".into(),
                host: "*".into(),
                operation: Operation::Write,
                permission: Permission::Allow,
            }],
        )
        .await
        .expect("the ACL is created");
        // The ACL applies once the metadata carrying it reaches this broker.
        let producer = loop {
            match init("acl-tx").await {
                Ok(p) => break p,
                Err(e) if e.reason == not_authorized && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("InitProducerId with Write on the id: {e}"),
            }
        };
        assert_eq!(producer.epoch, 0);
        transactions::find_coordinator(&core, &client, "acl-tx")
            .expect("Write on the id implies Describe");
        assert_eq!(init("other-tx").await.unwrap_err().reason, not_authorized);
    });
}

/// KIP-890: a transactional offset commit for a group whose `__consumer_offsets`
/// partition the transaction does not hold (no AddOffsetsToTxn) is refused as
/// TRANSACTION_ABORTABLE (INVALID_TXN_STATE to the TxnOffsetCommit versions served),
/// nothing written; after AddOffsetsToTxn it is taken.
#[test]
fn a_transactional_offset_commit_needs_the_groups_offsets_in_the_transaction() {
    use std::time::{Duration, Instant};
    use weir_broker::Reason;
    use weir_broker::groups::{self, OffsetCommit};
    use weir_broker::transactions::{self, TxnError};

    let broker = Broker::start_with_kafka(weir_server::ServerConfig {
        admin_listen: None,
        ..Default::default()
    });
    broker.ok(&["topic", "create", "tocv", "--partitions", "1"], "");
    let core = broker.server.as_ref().expect("running").core();
    broker.block_on(async {
        let ctx = RequestContext::anonymous(Listener::GRPC, None);
        let deadline = Instant::now() + Duration::from_secs(30);
        let producer = loop {
            match transactions::init_producer_id(&core, &ctx, "tocv-tx", 60_000, None).await {
                Ok(p) => break p,
                Err(e) => {
                    assert!(Instant::now() < deadline, "InitProducerId: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        let offsets = || {
            vec![OffsetCommit {
                topic: "tocv".into(),
                partition: 0,
                offset: 7,
                metadata: String::new(),
                leader_epoch: None,
            }]
        };
        let commit = || {
            let (core, ctx) = (core.clone(), ctx.clone());
            async move {
                transactions::txn_offset_commit(
                    &core,
                    &ctx,
                    "tocv-tx",
                    producer,
                    "tocv-g",
                    None,
                    offsets(),
                )
                .await
            }
        };
        let refused = commit().await.unwrap_err();
        assert_eq!(
            refused.reason,
            Reason::Transaction(TxnError::TransactionAbortable),
            "{refused}"
        );
        let fetched = groups::fetch_offsets(&core, &ctx, "tocv-g", None)
            .await
            .unwrap();
        assert!(
            fetched.iter().all(|o| o.offset.is_none()),
            "nothing pending or committed: {fetched:?}"
        );
        transactions::add_offsets_to_txn(&core, &ctx, "tocv-tx", producer, "tocv-g")
            .await
            .unwrap();
        let taken = commit().await.unwrap();
        assert!(taken.iter().all(|p| p.result.is_ok()), "{taken:?}");
    });
}
