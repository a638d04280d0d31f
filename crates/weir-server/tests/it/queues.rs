//! Share groups (queues) through the raw gRPC API, as a thin client would use them:
//! several members taking every record once with per-record acknowledgements, release
//! with a delay, the delivery limit, lock expiry and the late acknowledgement it refuses,
//! delivery times from a header, state across a restart, header filters, and bad input
//! with its codes.

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use tonic::Code;
use tonic::transport::Channel;
use weir_proto::v1::queues_client::QueuesClient;
use weir_proto::v1::*;
use weir_server::{RunningServer, ServerConfig};

const TOPIC: &str = "tasks";

fn queues(c: &Clients) -> QueuesClient<Channel> {
    QueuesClient::new(c.channel.clone())
}

/// A broker whose share groups lock records for `lock_ms` and deliver each at most
/// `limit` times.
async fn start_with(dir: &Path, lock_ms: u64, limit: u16) -> RunningServer {
    weir_server::start(ServerConfig {
        share_record_lock_duration_ms: lock_ms,
        share_delivery_count_limit: limit,
        ..config(dir)
    })
    .await
    .expect("server starts")
}

async fn produce_values(c: &mut Clients, partition: u32, values: &[String]) {
    let r = c
        .produce(request(
            TOPIC,
            vec![plain(partition, values, Compression::None)],
            Acks::All,
        ))
        .await;
    assert!(r.results.iter().all(|p| p.error.is_none()), "{r:?}");
}

fn fetch_req(
    group: &str,
    member: &str,
    max_wait_ms: u32,
    acks: Vec<ShareAck>,
) -> ShareFetchRequest {
    ShareFetchRequest {
        group_id: group.into(),
        member_id: member.into(),
        topics: vec![TOPIC.into()],
        max_records: 0,
        max_wait_ms,
        start: ShareStart::Earliest as i32,
        acknowledgements: acks,
        partitions: Vec::new(),
    }
}

fn ack(r: &SharedRecord, kind: AckType, delay_ms: u64) -> ShareAck {
    let offset = r.record.as_ref().unwrap().offset;
    ShareAck {
        topic: r.topic.clone(),
        partition: r.partition,
        first_offset: offset,
        last_offset: offset,
        r#type: kind as i32,
        delay_ms,
    }
}

fn value_of(r: &SharedRecord) -> String {
    String::from_utf8(r.record.as_ref().unwrap().value.clone().unwrap().to_vec()).unwrap()
}

async fn fetch(q: &mut QueuesClient<Channel>, req: ShareFetchRequest) -> ShareFetchResponse {
    q.share_fetch(req).await.expect("share fetch").into_inner()
}

#[tokio::test]
async fn four_members_take_every_record_exactly_once_with_per_record_acks() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start_with(dir.path(), 30_000, 5).await;
        let mut c = connect(server.addr).await;
        c.create(TOPIC, 2, &[]).await;
        let mut expected = BTreeSet::new();
        for p in 0..2u32 {
            let values: Vec<String> = (0..500).map(|i| format!("p{p}-{i}")).collect();
            expected.extend(values.iter().cloned());
            produce_values(&mut c, p, &values).await;
        }
        let mut members = Vec::new();
        for m in 0..4 {
            let mut q = queues(&c);
            members.push(tokio::spawn(async move {
                let member = format!("worker-{m}");
                let mut taken = Vec::new();
                let mut acks = Vec::new();
                loop {
                    let mut req = fetch_req("work", &member, 200, std::mem::take(&mut acks));
                    req.max_records = 37;
                    let got = fetch(&mut q, req).await;
                    for result in &got.ack_results {
                        assert_eq!(result.error, None, "{result:?}");
                        assert!(result.not_held.is_empty(), "{result:?}");
                    }
                    if got.records.is_empty() && acks.is_empty() {
                        return taken;
                    }
                    for r in &got.records {
                        assert_eq!(r.delivery_count, 1, "{r:?}");
                        taken.push(value_of(r));
                        acks.push(ack(r, AckType::Accept, 0));
                    }
                }
            }));
        }
        let mut all = Vec::new();
        for m in members {
            all.extend(m.await.unwrap());
        }
        let got: BTreeSet<String> = all.iter().cloned().collect();
        assert_eq!(all.len(), expected.len(), "no record twice");
        assert_eq!(got, expected, "every record once");

        let described = queues(&c)
            .describe_share_group(DescribeShareGroupRequest {
                group_id: "work".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(described.partitions.len(), 2);
        for p in &described.partitions {
            assert_eq!(
                (p.start_offset, p.end_offset, p.high_watermark),
                (500, 500, 500)
            );
            assert_eq!((p.available, p.acquired, p.delayed), (0, 0, 0));
            assert_eq!(p.oldest_unfinished_offset, None);
        }
        server.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_release_with_a_delay_redelivers_later_and_the_limit_archives() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start_with(dir.path(), 30_000, 3).await;
        let mut c = connect(server.addr).await;
        c.create(TOPIC, 1, &[]).await;
        produce_values(&mut c, 0, &["poison".to_string(), "fine".to_string()]).await;
        let mut q = queues(&c);

        let mut first = fetch(&mut q, fetch_req("retry", "a", 0, vec![])).await;
        assert_eq!(first.records.len(), 2);
        let poison = first.records.remove(0);
        let fine = first.records.remove(0);
        assert_eq!(poison.delivery_count, 1);
        // Each delivery is released with a 300 ms delay (Celery's retry countdown), by
        // whoever holds it; the third release reaches the limit of 3 and archives it.
        let mut current = poison;
        let mut holder = "a";
        for delivery in 1..=3u32 {
            assert_eq!(value_of(&current), "poison");
            assert_eq!(current.delivery_count, delivery);
            let released_at = Instant::now();
            let acks = vec![ack(&current, AckType::Release, 300)];
            let answer = fetch(&mut q, fetch_req("retry", holder, 0, acks)).await;
            assert_eq!(answer.ack_results[0].error, None);
            assert!(answer.ack_results[0].not_held.is_empty());
            assert!(
                answer.records.is_empty(),
                "not before its delay: {answer:?}"
            );
            if delivery == 3 {
                let again = fetch(&mut q, fetch_req("retry", "b", 800, vec![])).await;
                assert!(again.records.is_empty(), "archived at the limit: {again:?}");
                break;
            }
            let again = fetch(&mut q, fetch_req("retry", "b", 5_000, vec![])).await;
            assert_eq!(again.records.len(), 1, "{again:?}");
            assert!(
                released_at.elapsed() >= Duration::from_millis(290),
                "came back after {:?}",
                released_at.elapsed()
            );
            current = again.records.into_iter().next().unwrap();
            holder = "b";
            // b holds it now: a's acknowledgement is refused and changes nothing.
            let stale = q
                .share_acknowledge(ShareAcknowledgeRequest {
                    group_id: "retry".into(),
                    member_id: "a".into(),
                    acknowledgements: vec![ack(&current, AckType::Accept, 0)],
                    leaving: false,
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(stale.results[0].not_held, [0]);
            // RENEW keeps it (SQS's ChangeMessageVisibility).
            let renewed = q
                .share_acknowledge(ShareAcknowledgeRequest {
                    group_id: "retry".into(),
                    member_id: "b".into(),
                    acknowledgements: vec![ack(&current, AckType::Renew, 0)],
                    leaving: false,
                })
                .await
                .unwrap()
                .into_inner();
            assert!(renewed.results[0].not_held.is_empty());
        }
        // The poison record is archived; "fine" is still held by a; accepting it finishes
        // the partition.
        let done = q
            .share_acknowledge(ShareAcknowledgeRequest {
                group_id: "retry".into(),
                member_id: "a".into(),
                acknowledgements: vec![ack(&fine, AckType::Accept, 0)],
                leaving: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(done.results[0].not_held.is_empty(), "{done:?}");
        let described = q
            .describe_share_group(DescribeShareGroupRequest {
                group_id: "retry".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(described.delivery_count_limit, 3);
        assert_eq!(described.partitions[0].start_offset, 2, "{described:?}");
        server.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn an_expired_lock_goes_to_another_member_and_the_late_ack_is_refused() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start_with(dir.path(), 400, 5).await;
        let mut c = connect(server.addr).await;
        c.create(TOPIC, 1, &[]).await;
        produce_values(&mut c, 0, &["slow".to_string()]).await;
        let mut q = queues(&c);
        let held = fetch(&mut q, fetch_req("vis", "slow-worker", 0, vec![])).await;
        assert_eq!(held.records.len(), 1);
        let deadline = held.records[0].lock_deadline_ms;
        assert!(deadline > 0);
        // Nobody else gets it while the lock holds...
        let other = fetch(&mut q, fetch_req("vis", "fast-worker", 0, vec![])).await;
        assert!(other.records.is_empty());
        // ...and a waiting fetch gets it when the lock ends.
        let started = Instant::now();
        let other = fetch(&mut q, fetch_req("vis", "fast-worker", 5_000, vec![])).await;
        assert_eq!(other.records.len(), 1, "{other:?}");
        assert_eq!(other.records[0].delivery_count, 2);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        let late = q
            .share_acknowledge(ShareAcknowledgeRequest {
                group_id: "vis".into(),
                member_id: "slow-worker".into(),
                acknowledgements: vec![ack(&held.records[0], AckType::Accept, 0)],
                leaving: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(late.results[0].not_held, [0], "{late:?}");
        let done = q
            .share_acknowledge(ShareAcknowledgeRequest {
                group_id: "vis".into(),
                member_id: "fast-worker".into(),
                acknowledgements: vec![ack(&other.records[0], AckType::Accept, 0)],
                leaving: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(done.results[0].not_held.is_empty());
        server.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn accepts_locks_and_delivery_counts_survive_a_restart() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start_with(dir.path(), 30_000, 5).await;
        let mut c = connect(server.addr).await;
        c.create(TOPIC, 1, &[]).await;
        let values: Vec<String> = (0..10).map(|i| format!("task-{i}")).collect();
        produce_values(&mut c, 0, &values).await;
        let mut q = queues(&c);
        let got = fetch(&mut q, fetch_req("durable", "a", 0, vec![])).await;
        assert_eq!(got.records.len(), 10);
        let acks: Vec<ShareAck> = got.records[..5]
            .iter()
            .map(|r| ack(r, AckType::Accept, 0))
            .collect();
        let answer = q
            .share_acknowledge(ShareAcknowledgeRequest {
                group_id: "durable".into(),
                member_id: "a".into(),
                acknowledgements: acks,
                leaving: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(answer.results.iter().all(|r| r.not_held.is_empty()));
        server.shutdown().await.unwrap();

        let server = start_with(dir.path(), 30_000, 5).await;
        let c = connect(server.addr).await;
        let mut q = queues(&c);
        // The accepted five are done; the other five are still a's: their locks outlive
        // the restart (docs/queues.md, promise 3), so b gets nothing.
        let held = fetch(&mut q, fetch_req("durable", "b", 0, vec![])).await;
        assert!(held.records.is_empty(), "{held:?}");
        // a lets them go; b gets them, their first delivery remembered.
        let released = q
            .share_acknowledge(ShareAcknowledgeRequest {
                group_id: "durable".into(),
                member_id: "a".into(),
                acknowledgements: got.records[5..]
                    .iter()
                    .map(|r| ack(r, AckType::Release, 0))
                    .collect(),
                leaving: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(
            released.results.iter().all(|r| r.not_held.is_empty()),
            "a still holds its records after the restart: {released:?}"
        );
        let again = fetch(&mut q, fetch_req("durable", "b", 0, vec![])).await;
        let values: Vec<String> = again.records.iter().map(value_of).collect();
        assert_eq!(values, ["task-5", "task-6", "task-7", "task-8", "task-9"]);
        assert!(
            again.records.iter().all(|r| r.delivery_count == 2),
            "{again:?}"
        );
        server.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_deliver_at_header_holds_a_record_back_until_its_time() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start_with(dir.path(), 30_000, 5).await;
        let mut c = connect(server.addr).await;
        c.create(TOPIC, 1, &[]).await;
        let at = weir_broker::now_ms() + 600;
        let records = vec![
            Record {
                value: value("later"),
                headers: vec![RecordHeader {
                    key: "weir-deliver-at".into(),
                    value: value(&at.to_string()),
                }],
                ..Record::default()
            },
            Record {
                value: value("now"),
                ..Record::default()
            },
        ];
        let r = c
            .produce(request(
                TOPIC,
                vec![PartitionRecords {
                    partition: 0,
                    data: Some(partition_records::Data::Records(RecordList { records })),
                    ..PartitionRecords::default()
                }],
                Acks::All,
            ))
            .await;
        assert!(r.results[0].error.is_none());
        let mut q = queues(&c);
        let first = fetch(&mut q, fetch_req("eta", "a", 0, vec![])).await;
        let values: Vec<String> = first.records.iter().map(value_of).collect();
        assert_eq!(values, ["now"]);
        let later = fetch(&mut q, fetch_req("eta", "a", 5_000, vec![])).await;
        let values: Vec<String> = later.records.iter().map(value_of).collect();
        assert_eq!(values, ["later"]);
        assert!(weir_broker::now_ms() >= at, "delivered early");
        server.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn bad_share_requests_get_clear_codes() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start_with(dir.path(), 30_000, 5).await;
        let mut c = connect(server.addr).await;
        c.create(TOPIC, 1, &[]).await;
        let mut q = queues(&c);
        let code = |r: Result<tonic::Response<ShareFetchResponse>, tonic::Status>| {
            r.map(|_| ()).unwrap_err().code()
        };
        assert_eq!(
            code(q.share_fetch(fetch_req("g", "", 0, vec![])).await),
            Code::InvalidArgument,
            "empty member id"
        );
        assert_eq!(
            // Any non-empty group id of at most 249 bytes is valid, as in Kafka.
            code(
                q.share_fetch(fetch_req(&"g".repeat(250), "m", 0, vec![]))
                    .await
            ),
            Code::InvalidArgument,
            "a group id over 249 bytes"
        );
        let mut unknown = fetch_req("g", "m", 0, vec![]);
        unknown.topics = vec!["nope".into()];
        assert_eq!(code(q.share_fetch(unknown).await), Code::NotFound);
        let mut too_many = fetch_req("g", "m", 0, vec![]);
        too_many.max_records = 1_000_000;
        assert_eq!(code(q.share_fetch(too_many).await), Code::InvalidArgument);
        let unspecified = ShareAck {
            topic: TOPIC.into(),
            partition: 0,
            first_offset: 0,
            last_offset: 0,
            r#type: AckType::Unspecified as i32,
            delay_ms: 0,
        };
        assert_eq!(
            code(
                q.share_fetch(fetch_req("g", "m", 0, vec![unspecified.clone()]))
                    .await
            ),
            Code::InvalidArgument
        );
        // Per-entry refusals: the rest of the request goes on.
        let long_delay = ShareAck {
            r#type: AckType::Release as i32,
            delay_ms: 8 * 24 * 3600 * 1000,
            ..unspecified.clone()
        };
        let backwards = ShareAck {
            r#type: AckType::Accept as i32,
            first_offset: 5,
            last_offset: 1,
            ..unspecified.clone()
        };
        let never_held = ShareAck {
            r#type: AckType::Accept as i32,
            first_offset: 0,
            last_offset: 2,
            ..unspecified.clone()
        };
        let answer = q
            .share_acknowledge(ShareAcknowledgeRequest {
                group_id: "g".into(),
                member_id: "m".into(),
                acknowledgements: vec![long_delay, backwards, never_held],
                leaving: false,
            })
            .await
            .unwrap()
            .into_inner();
        let codes: Vec<Option<i32>> = answer
            .results
            .iter()
            .map(|r| r.error.as_ref().map(|e| e.code))
            .collect();
        assert_eq!(
            codes,
            [
                Some(Code::InvalidArgument as i32),
                Some(Code::InvalidArgument as i32),
                None
            ]
        );
        assert_eq!(answer.results[2].not_held, [0, 1, 2]);
        let missing = q
            .describe_share_group(DescribeShareGroupRequest {
                group_id: "never-used".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
        server.shutdown().await.unwrap();
    })
    .await;
}

fn header<'a>(r: &'a ConsumedRecord, key: &str) -> &'a str {
    let h = r.headers.iter().find(|h| h.key == key).expect(key);
    std::str::from_utf8(h.value.as_ref().unwrap()).unwrap()
}

#[tokio::test]
async fn rejected_and_over_the_limit_records_are_copied_to_the_dead_letter_topic() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start_with(dir.path(), 30_000, 5).await;
        let mut c = connect(server.addr).await;
        c.create(TOPIC, 1, &[]).await;
        c.create("tasks-dlq", 1, &[]).await;
        let mut q = queues(&c);
        let configure = |topic: &str, limit: u32| ConfigureShareGroupRequest {
            group_id: "dl".into(),
            lock_duration_ms: None,
            delivery_count_limit: Some(limit),
            dead_letter_topic: Some(topic.into()),
            filter: None,
            start: None,
        };
        let missing = q
            .configure_share_group(configure("no-such-topic", 2))
            .await
            .unwrap_err();
        assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
        let zero = q
            .configure_share_group(configure("tasks-dlq", 0))
            .await
            .unwrap_err();
        assert_eq!(zero.code(), Code::InvalidArgument, "{zero:?}");
        let set = q
            .configure_share_group(configure("tasks-dlq", 2))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (set.delivery_count_limit, set.dead_letter_topic.as_str()),
            (2, "tasks-dlq")
        );
        assert_eq!(set.lock_duration_ms, 30_000, "the broker's default");

        produce_values(&mut c, 0, &["bad".into(), "poison".into(), "good".into()]).await;
        let got = fetch(&mut q, fetch_req("dl", "m", 0, vec![])).await;
        assert_eq!(got.records.len(), 3);
        let acks = vec![
            ack(&got.records[0], AckType::Reject, 0),
            ack(&got.records[1], AckType::Release, 0),
            ack(&got.records[2], AckType::Accept, 0),
        ];
        let again = fetch(&mut q, fetch_req("dl", "m", 2_000, acks)).await;
        assert_eq!(again.records.len(), 1);
        assert_eq!(value_of(&again.records[0]), "poison");
        assert_eq!(again.records[0].delivery_count, 2);
        // Released at the limit: archived, and copied with the reject.
        let last = fetch(
            &mut q,
            fetch_req(
                "dl",
                "m",
                0,
                vec![ack(&again.records[0], AckType::Release, 0)],
            ),
        )
        .await;
        assert!(last.records.is_empty());

        let dead = c.fetch_all("tasks-dlq", 0, 0).await;
        let summary: Vec<(String, &str, &str, &str, &str)> = dead
            .iter()
            .map(|r| {
                (
                    String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap(),
                    header(r, "weir-dlq-source-offset"),
                    header(r, "weir-dlq-reason"),
                    header(r, "weir-dlq-delivery-count"),
                    header(r, "weir-dlq-source-topic"),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("bad".to_string(), "0", "rejected", "1", TOPIC),
                ("poison".to_string(), "1", "delivery-limit", "2", TOPIC),
            ]
        );
        assert_eq!(header(&dead[0], "weir-dlq-group"), "dl");
        assert_eq!(header(&dead[0], "h"), "hv", "the record's own headers stay");
        let described = q
            .describe_share_group(DescribeShareGroupRequest {
                group_id: "dl".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(described.partitions[0].start_offset, 3, "{described:?}");
        assert_eq!(described.partitions[0].archived_pending, 0);
        server.shutdown().await.unwrap();
    })
    .await;
}

/// A record with value `v` and the headers `headers`.
fn with_headers(v: &str, headers: &[(&str, &str)]) -> Record {
    Record {
        value: value(v),
        headers: headers
            .iter()
            .map(|(k, v)| RecordHeader {
                key: (*k).into(),
                value: value(v),
            })
            .collect(),
        ..Record::default()
    }
}

async fn produce_records(c: &mut Clients, records: Vec<Record>) {
    let r = c
        .produce(request(
            TOPIC,
            vec![PartitionRecords {
                partition: 0,
                data: Some(partition_records::Data::Records(RecordList { records })),
                ..PartitionRecords::default()
            }],
            Acks::All,
        ))
        .await;
    assert!(r.results.iter().all(|p| p.error.is_none()), "{r:?}");
}

fn equals(key: &str, v: &str) -> HeaderCondition {
    HeaderCondition {
        key: key.into(),
        value_match: Some(header_condition::ValueMatch::Equals(v.into())),
    }
}

fn filter_request(group: &str, filter: Option<Vec<HeaderCondition>>) -> ConfigureShareGroupRequest {
    ConfigureShareGroupRequest {
        group_id: group.into(),
        filter: filter.map(|conditions| HeaderFilter { conditions }),
        ..ConfigureShareGroupRequest::default()
    }
}

#[tokio::test]
async fn a_filtered_group_gets_exactly_the_matching_records_and_its_start_passes_the_rest() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start_with(dir.path(), 30_000, 5).await;
        let mut c = connect(server.addr).await;
        c.create(TOPIC, 1, &[]).await;
        let mut q = queues(&c);
        let email_eu = vec![
            equals("type", "email"),
            HeaderCondition {
                key: "region".into(),
                value_match: Some(header_condition::ValueMatch::Prefix("eu-".into())),
            },
        ];
        let set = q
            .configure_share_group(filter_request("mailers", Some(email_eu.clone())))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(set.filter.unwrap().conditions, email_eu);

        // 60 records: a third email in eu-*, the rest sms, email elsewhere, or no header.
        let mut records = Vec::new();
        let mut wanted = BTreeSet::new();
        for i in 0..60 {
            let v = format!("task-{i}");
            records.push(match i % 6 {
                0 | 3 => {
                    wanted.insert(v.clone());
                    with_headers(&v, &[("region", "eu-west-1"), ("type", "email")])
                }
                1 => with_headers(&v, &[("type", "sms"), ("region", "eu-west-1")]),
                2 => with_headers(&v, &[("type", "email"), ("region", "us-east-1")]),
                4 => with_headers(&v, &[("type", "emails"), ("region", "eu-north-1")]),
                _ => with_headers(&v, &[]),
            });
        }
        produce_records(&mut c, records).await;

        // Two members, a few records at a time, accepting each.
        let mut got: Vec<(String, Vec<(String, String)>)> = Vec::new();
        let mut acks: [Vec<ShareAck>; 2] = [Vec::new(), Vec::new()];
        let started = Instant::now();
        while got.len() < wanted.len() && started.elapsed() < Duration::from_secs(20) {
            for (m, pending) in acks.iter_mut().enumerate() {
                let mut req = fetch_req("mailers", &format!("m{m}"), 200, std::mem::take(pending));
                req.max_records = 3;
                let answer = fetch(&mut q, req).await;
                assert!(
                    answer
                        .ack_results
                        .iter()
                        .all(|r| r.error.is_none() && r.not_held.is_empty())
                );
                for r in &answer.records {
                    assert_eq!(r.delivery_count, 1);
                    let record = r.record.as_ref().unwrap();
                    let headers = record
                        .headers
                        .iter()
                        .map(|h| {
                            let v = h.value.as_ref().unwrap();
                            (h.key.clone(), String::from_utf8(v.to_vec()).unwrap())
                        })
                        .collect();
                    got.push((value_of(r), headers));
                    pending.push(ack(r, AckType::Accept, 0));
                }
            }
        }
        for (m, pending) in acks.into_iter().enumerate() {
            let done = q
                .share_acknowledge(ShareAcknowledgeRequest {
                    group_id: "mailers".into(),
                    member_id: format!("m{m}"),
                    acknowledgements: pending,
                    leaving: false,
                })
                .await
                .unwrap()
                .into_inner();
            assert!(
                done.results
                    .iter()
                    .all(|r| r.error.is_none() && r.not_held.is_empty())
            );
        }
        let values: BTreeSet<String> = got.iter().map(|(v, _)| v.clone()).collect();
        assert_eq!(values.len(), got.len(), "a record was delivered twice");
        assert_eq!(values, wanted);
        for (v, headers) in &got {
            assert_eq!(
                headers,
                &[
                    ("region".to_owned(), "eu-west-1".to_owned()),
                    ("type".to_owned(), "email".to_owned())
                ],
                "{v} arrived whole"
            );
        }
        // Nothing more comes; the start is past every skipped record.
        let none = fetch(&mut q, fetch_req("mailers", "m0", 300, vec![])).await;
        assert!(none.records.is_empty());
        let described = q
            .describe_share_group(DescribeShareGroupRequest {
                group_id: "mailers".into(),
            })
            .await
            .unwrap()
            .into_inner();
        let p = &described.partitions[0];
        assert_eq!(
            (p.start_offset, p.end_offset, p.high_watermark),
            (60, 60, 60)
        );
        assert_eq!(p.filtered_out, 40);
        assert_eq!((p.available, p.acquired, p.archived_pending), (0, 0, 0));

        // Configured again without a filter field: the filter stays. An empty one removes it.
        let kept = q
            .configure_share_group(ConfigureShareGroupRequest {
                group_id: "mailers".into(),
                delivery_count_limit: Some(3),
                ..ConfigureShareGroupRequest::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(kept.filter.unwrap().conditions.len(), 2);
        assert_eq!(kept.delivery_count_limit, 3);
        let cleared = q
            .configure_share_group(filter_request("mailers", Some(vec![])))
            .await
            .unwrap()
            .into_inner();
        assert!(cleared.filter.is_none_or(|f| f.conditions.is_empty()));
        produce_records(&mut c, vec![with_headers("plain", &[])]).await;
        let plain = fetch(&mut q, fetch_req("mailers", "m0", 2_000, vec![])).await;
        assert_eq!(
            plain.records.iter().map(value_of).collect::<Vec<_>>(),
            ["plain"]
        );
        server.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_new_filter_applies_to_records_in_the_window_not_yet_delivered() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start_with(dir.path(), 30_000, 5).await;
        let mut c = connect(server.addr).await;
        c.create(TOPIC, 1, &[]).await;
        let mut q = queues(&c);
        let records = (0..10)
            .map(|i| {
                let kind = if i % 2 == 0 { "email" } else { "sms" };
                with_headers(&format!("{kind}-{i}"), &[("type", kind)])
            })
            .collect();
        produce_records(&mut c, records).await;
        // One record delivered (email-0, held), the other nine taken into the window.
        let mut one = fetch_req("switch", "a", 2_000, vec![]);
        one.max_records = 1;
        let first = fetch(&mut q, one).await;
        assert_eq!(
            first.records.iter().map(value_of).collect::<Vec<_>>(),
            ["email-0"]
        );

        let any_of = HeaderCondition {
            key: "type".into(),
            value_match: Some(header_condition::ValueMatch::AnyOf(HeaderValues {
                values: vec!["sms".into(), "push".into()],
            })),
        };
        q.configure_share_group(filter_request("switch", Some(vec![any_of])))
            .await
            .unwrap();
        // email-0 was delivered before: released, it comes back; the other emails never do.
        let rest = fetch(
            &mut q,
            fetch_req(
                "switch",
                "a",
                2_000,
                vec![ack(&first.records[0], AckType::Release, 0)],
            ),
        )
        .await;
        let values: Vec<String> = rest.records.iter().map(value_of).collect();
        assert_eq!(
            values,
            ["email-0", "sms-1", "sms-3", "sms-5", "sms-7", "sms-9"]
        );
        let described = q
            .describe_share_group(DescribeShareGroupRequest {
                group_id: "switch".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(described.partitions[0].filtered_out, 4);
        server.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_bad_filter_is_invalid_argument_with_what_is_wrong() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start_with(dir.path(), 30_000, 5).await;
        let c = connect(server.addr).await;
        let mut q = queues(&c);
        let no_match = HeaderCondition {
            key: "type".into(),
            value_match: None,
        };
        let too_many = (0..17).map(|i| equals(&format!("k{i}"), "v")).collect();
        let empty_key = vec![equals("", "v")];
        let no_values = vec![HeaderCondition {
            key: "type".into(),
            value_match: Some(header_condition::ValueMatch::AnyOf(HeaderValues::default())),
        }];
        for (filter, says) in [
            (vec![no_match], "sets none of equals, prefix or any_of"),
            (too_many, "at most 16 conditions; this one has 17"),
            (empty_key, "header key is 1 to 255 bytes"),
            (no_values, "lists 0 values"),
        ] {
            let error = q
                .configure_share_group(filter_request("bad", Some(filter)))
                .await
                .unwrap_err();
            assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
            assert!(error.message().contains(says), "{error:?}");
        }
        // Nothing was made.
        let missing = q
            .describe_share_group(DescribeShareGroupRequest {
                group_id: "bad".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(missing.code(), Code::NotFound);
        server.shutdown().await.unwrap();
    })
    .await;
}

/// A group that sets where it starts (Kafka's `share.auto.offset.reset`) starts there
/// whatever its first fetch asks, and describe shows the setting.
#[tokio::test]
async fn a_group_s_own_start_wins_over_the_fetch_s() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start_with(dir.path(), 30_000, 5).await;
        let mut c = connect(server.addr).await;
        c.create(TOPIC, 1, &[]).await;
        let values: Vec<String> = (0..5).map(|i| format!("old-{i}")).collect();
        produce_values(&mut c, 0, &values).await;
        let mut q = queues(&c);
        let set = q
            .configure_share_group(ConfigureShareGroupRequest {
                group_id: "from-start".into(),
                start: Some(ShareStart::Earliest as i32),
                ..ConfigureShareGroupRequest::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(set.start, Some(ShareStart::Earliest as i32));
        let latest = ShareFetchRequest {
            start: ShareStart::Latest as i32,
            ..fetch_req("from-start", "m1", 2_000, vec![])
        };
        let got = q.share_fetch(latest).await.unwrap().into_inner().records;
        let read: Vec<String> = got
            .iter()
            .map(|r| {
                String::from_utf8(r.record.as_ref().unwrap().value.clone().unwrap().to_vec())
                    .unwrap()
            })
            .collect();
        assert_eq!(read, values);
        // Without the setting the same fetch starts at the end.
        let none = ShareFetchRequest {
            start: ShareStart::Latest as i32,
            ..fetch_req("from-end", "m1", 200, vec![])
        };
        assert!(
            q.share_fetch(none)
                .await
                .unwrap()
                .into_inner()
                .records
                .is_empty()
        );
        let bad = q
            .configure_share_group(ConfigureShareGroupRequest {
                group_id: "from-start".into(),
                start: Some(7),
                ..ConfigureShareGroupRequest::default()
            })
            .await
            .unwrap_err();
        assert_eq!(bad.code(), Code::InvalidArgument, "{bad:?}");
        server.shutdown().await.unwrap();
    })
    .await
}

/// A member that leaves (`leaving`) gives back what it still holds at once: another
/// member gets those records without waiting for the lock, as their second delivery.
#[tokio::test]
async fn a_leaving_member_s_records_go_to_others_at_once() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        // A lock far longer than the test: only the leave can hand the records on.
        let server = start_with(dir.path(), 600_000, 5).await;
        let mut c = connect(server.addr).await;
        c.create(TOPIC, 1, &[]).await;
        let values: Vec<String> = (0..4).map(|i| format!("job-{i}")).collect();
        produce_values(&mut c, 0, &values).await;
        let mut q = queues(&c);
        let held = q
            .share_fetch(fetch_req("leavers", "a", 2_000, vec![]))
            .await
            .unwrap()
            .into_inner()
            .records;
        assert_eq!(held.len(), 4);
        // a finishes the first and leaves holding the other three.
        q.share_acknowledge(ShareAcknowledgeRequest {
            group_id: "leavers".into(),
            member_id: "a".into(),
            acknowledgements: vec![ack(&held[0], AckType::Accept, 0)],
            leaving: true,
        })
        .await
        .unwrap();
        let taken = q
            .share_fetch(fetch_req("leavers", "b", 2_000, vec![]))
            .await
            .unwrap()
            .into_inner()
            .records;
        let got: Vec<(i64, u32)> = taken
            .iter()
            .map(|r| (r.record.as_ref().unwrap().offset, r.delivery_count))
            .collect();
        assert_eq!(got, [(1, 2), (2, 2), (3, 2)]);
        server.shutdown().await.unwrap();
    })
    .await
}

/// A reset start and a deleted group are durable: after a restart the group delivers
/// from the new start, and a deleted group (state and settings) stays deleted.
#[tokio::test]
async fn a_reset_start_and_a_deleted_group_survive_a_restart() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start_with(dir.path(), 30_000, 5).await;
        let mut c = connect(server.addr).await;
        c.create(TOPIC, 1, &[]).await;
        let values: Vec<String> = (0..10).map(|i| format!("task-{i}")).collect();
        produce_values(&mut c, 0, &values).await;
        let mut q = queues(&c);
        // Two groups with state: "moved" holds 10 records, so it is busy.
        let got = fetch(&mut q, fetch_req("moved", "a", 0, vec![])).await;
        assert_eq!(got.records.len(), 10);
        fetch(&mut q, fetch_req("dropped", "a", 0, vec![])).await;
        // Its member leaves, giving its records back: the group is idle.
        q.share_acknowledge(ShareAcknowledgeRequest {
            group_id: "dropped".into(),
            member_id: "a".into(),
            acknowledgements: vec![],
            leaving: true,
        })
        .await
        .unwrap();
        q.configure_share_group(ConfigureShareGroupRequest {
            group_id: "dropped".into(),
            delivery_count_limit: Some(2),
            ..Default::default()
        })
        .await
        .unwrap();
        let reset = |to| ResetShareGroupRequest {
            group_id: "moved".into(),
            partitions: vec![ShareStartReset {
                topic: TOPIC.into(),
                partition: 0,
                to: Some(to),
            }],
        };
        let busy = q
            .reset_share_group(reset(share_start_reset::To::Offset(6)))
            .await
            .unwrap_err();
        assert_eq!(busy.code(), Code::FailedPrecondition, "{busy:?}");
        q.share_acknowledge(ShareAcknowledgeRequest {
            group_id: "moved".into(),
            member_id: "a".into(),
            acknowledgements: got
                .records
                .iter()
                .map(|r| ack(r, AckType::Release, 0))
                .collect(),
            leaving: false,
        })
        .await
        .unwrap();
        let moved = q
            .reset_share_group(reset(share_start_reset::To::Offset(6)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(moved.results.len(), 1);
        assert_eq!(
            (
                moved.results[0].error.is_none(),
                moved.results[0].start_offset
            ),
            (true, 6),
            "{moved:?}"
        );
        q.delete_share_group(DeleteShareGroupRequest {
            group_id: "dropped".into(),
            topics: vec![],
        })
        .await
        .unwrap();
        let listed = q
            .list_share_groups(ListShareGroupsRequest {})
            .await
            .unwrap()
            .into_inner();
        let ids: Vec<&str> = listed.groups.iter().map(|g| g.group_id.as_str()).collect();
        assert_eq!(ids, ["moved"]);
        server.shutdown().await.unwrap();

        let server = start_with(dir.path(), 30_000, 5).await;
        let c = connect(server.addr).await;
        let mut q = queues(&c);
        let again = fetch(&mut q, fetch_req("moved", "b", 0, vec![])).await;
        let values: Vec<String> = again.records.iter().map(value_of).collect();
        assert_eq!(values, ["task-6", "task-7", "task-8", "task-9"]);
        // The window went with the reset: first deliveries again.
        assert!(
            again.records.iter().all(|r| r.delivery_count == 1),
            "{again:?}"
        );
        let gone = q
            .describe_share_group(DescribeShareGroupRequest {
                group_id: "dropped".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(gone.code(), Code::NotFound, "{gone:?}");
        let unknown = q
            .delete_share_group(DeleteShareGroupRequest {
                group_id: "dropped".into(),
                topics: vec![],
            })
            .await
            .unwrap_err();
        assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
        server.shutdown().await.unwrap();
    })
    .await;
}
