//! Client quotas over Kafka against a `weir serve` process: the AlterClientQuotas and
//! DescribeClientQuotas apis (set, describe with each match type, remove, validate-only,
//! bad input refused per entry), seen the same by `weir quota` over gRPC; and a
//! request-time quota (`request_percentage`) holding a busy Kafka client back while
//! another user is not.
//!
//! None of the pinned Kafka clients offers the client-quota admin calls (kafka-python
//! 3.0's KafkaAdminClient, confluent-kafka 2.16's AdminClient and aiokafka 0.14's admin
//! client have no describe/alter client quotas), so the admin apis are spoken here at the
//! protocol level with the workspace's kafka-protocol crate, as a client encodes them.
//! The busy client is confluent-kafka (librdkafka), whose `throttle_cb` reports the
//! `throttle_time_ms` of the broker's answers (`tests/kafka/request_quota.py`).

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use common::secure::{Serve, weir_fed};
use common::*;
use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, ApiKey, ApiVersionsRequest,
    ApiVersionsResponse, DescribeClientQuotasRequest, DescribeClientQuotasResponse, RequestHeader,
    ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use serde_json::Value;

const INVALID_REQUEST: i16 = 42;

/// A `weir serve` process with a Kafka listener, on free loopback ports.
fn serve(args: &[&str]) -> Serve {
    let args: Vec<String> = ["--kafka-listen", "127.0.0.1:0"]
        .iter()
        .chain(args)
        .map(|a| a.to_string())
        .collect();
    Serve::start(&args, &[])
}

/// `serve`'s Kafka listener.
fn kafka_addr(serve: &Serve) -> String {
    serve.kafka.clone().expect("a Kafka listener")
}

/// `weir ARGS` against `serve`, with `stdin`; its stdout, requiring success.
fn weir_ok(serve: &Serve, args: &[&str], stdin: &str) -> String {
    let (out, _) = weir_fed(&serve.addr, &[], args, stdin.as_bytes());
    assert!(out.status.success(), "weir {args:?}: {}", stderr(&out));
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// A Kafka connection speaking one request at a time, every read bounded.
struct Kafka {
    stream: TcpStream,
    correlation_id: i32,
}

impl Kafka {
    fn connect(addr: &str) -> Kafka {
        let stream = TcpStream::connect(addr).expect("connect to the Kafka listener");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        Kafka {
            stream,
            correlation_id: 0,
        }
    }

    fn call<Q: Encodable, R: Decodable>(&mut self, key: ApiKey, version: i16, request: &Q) -> R {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("quota-test")));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, key.request_header_version(version))
            .unwrap();
        request.encode(&mut body, version).unwrap();
        self.stream
            .write_all(&(body.len() as i32).to_be_bytes())
            .unwrap();
        self.stream.write_all(&body).unwrap();
        let mut length = [0u8; 4];
        self.stream.read_exact(&mut length).expect("an answer");
        let mut payload = vec![0u8; i32::from_be_bytes(length) as usize];
        self.stream.read_exact(&mut payload).expect("an answer");
        let mut payload = bytes::Bytes::from(payload);
        let header =
            ResponseHeader::decode(&mut payload, key.response_header_version(version)).unwrap();
        assert_eq!(header.correlation_id, self.correlation_id);
        let answer = R::decode(&mut payload, version).unwrap();
        assert!(!payload.has_remaining(), "bytes left over");
        answer
    }

    fn alter(&mut self, entries: Vec<EntryData>, validate_only: bool) -> Vec<(i16, String)> {
        let answer: AlterClientQuotasResponse = self.call(
            ApiKey::AlterClientQuotas,
            1,
            &AlterClientQuotasRequest::default()
                .with_entries(entries)
                .with_validate_only(validate_only),
        );
        answer
            .entries
            .iter()
            .map(|e| {
                let message = e.error_message.as_ref().map(|m| m.to_string());
                (e.error_code, message.unwrap_or_default())
            })
            .collect()
    }

    /// Entities (as `user=NAME,client-id=NAME`, `<default>` for a null name) and their
    /// `key=value` pairs, sorted; or the top-level error.
    fn describe(
        &mut self,
        components: Vec<ComponentData>,
        strict: bool,
    ) -> Result<Vec<(String, String)>, (i16, String)> {
        let answer: DescribeClientQuotasResponse = self.call(
            ApiKey::DescribeClientQuotas,
            1,
            &DescribeClientQuotasRequest::default()
                .with_components(components)
                .with_strict(strict),
        );
        if answer.error_code != 0 {
            let message = answer.error_message.map(|m| m.to_string());
            return Err((answer.error_code, message.unwrap_or_default()));
        }
        let mut found: Vec<(String, String)> = answer
            .entries
            .unwrap_or_default()
            .into_iter()
            .map(|entry| {
                let entity: Vec<String> = entry
                    .entity
                    .iter()
                    .map(|p| {
                        let name = p.entity_name.as_ref().map(|n| n.to_string());
                        format!(
                            "{}={}",
                            p.entity_type,
                            name.as_deref().unwrap_or("<default>")
                        )
                    })
                    .collect();
                let mut values: Vec<String> = entry
                    .values
                    .iter()
                    .map(|v| format!("{}={}", v.key, v.value))
                    .collect();
                values.sort();
                (entity.join(","), values.join(" "))
            })
            .collect();
        found.sort();
        Ok(found)
    }
}

fn entity(parts: &[(&'static str, Option<&'static str>)]) -> Vec<EntityData> {
    parts
        .iter()
        .map(|(entity_type, name)| {
            EntityData::default()
                .with_entity_type(StrBytes::from_static_str(entity_type))
                .with_entity_name(name.map(StrBytes::from_static_str))
        })
        .collect()
}

fn set(key: &'static str, value: f64) -> OpData {
    OpData::default()
        .with_key(StrBytes::from_static_str(key))
        .with_value(value)
}

fn remove(key: &'static str) -> OpData {
    OpData::default()
        .with_key(StrBytes::from_static_str(key))
        .with_remove(true)
}

fn entry(parts: &[(&'static str, Option<&'static str>)], ops: Vec<OpData>) -> EntryData {
    EntryData::default()
        .with_entity(entity(parts))
        .with_ops(ops)
}

fn component(
    entity_type: &'static str,
    match_type: i8,
    name: Option<&'static str>,
) -> ComponentData {
    ComponentData::default()
        .with_entity_type(StrBytes::from_static_str(entity_type))
        .with_match_type(match_type)
        .with_match(name.map(StrBytes::from_static_str))
}

fn pairs(rows: &[(&str, &str)]) -> Vec<(String, String)> {
    rows.iter()
        .map(|(e, v)| (e.to_string(), v.to_string()))
        .collect()
}

#[test]
fn kafka_client_quota_apis_set_describe_and_remove_what_weir_quota_sees() {
    let broker = serve(&[]);
    let mut kafka = Kafka::connect(&kafka_addr(&broker));

    // Advertised in ApiVersions.
    let versions: ApiVersionsResponse =
        kafka.call(ApiKey::ApiVersions, 2, &ApiVersionsRequest::default());
    for key in [ApiKey::DescribeClientQuotas, ApiKey::AlterClientQuotas] {
        let row = versions
            .api_keys
            .iter()
            .find(|k| k.api_key == key as i16)
            .unwrap_or_else(|| panic!("{key:?} is not advertised"));
        assert_eq!((row.min_version, row.max_version), (0, 1), "{key:?}");
    }

    let alice = [("user", Some("alice"))];
    let made = kafka.alter(
        vec![
            entry(
                &alice,
                vec![
                    set("producer_byte_rate", 1048576.0),
                    set("request_percentage", 50.0),
                ],
            ),
            entry(&[("user", None)], vec![set("consumer_byte_rate", 2e6)]),
            entry(
                &[("user", Some("alice")), ("client-id", Some("etl"))],
                vec![set("request_percentage", 5.0)],
            ),
            entry(
                &[("client-id", None)],
                vec![set("request_percentage", 70.0)],
            ),
        ],
        false,
    );
    assert_eq!(made, vec![(0, String::new()); 4]);
    // Set by `weir quota` over gRPC, seen over Kafka below.
    let cli = weir_ok(
        &broker,
        &[
            "quota",
            "set",
            "--principal",
            "User:erin",
            "--request-percentage",
            "30",
        ],
        "",
    );
    assert_eq!(cli, "user=erin: request_percentage = 30% of a thread\n");

    let everything = pairs(&[
        ("client-id=<default>", "request_percentage=70"),
        ("user=<default>", "consumer_byte_rate=2000000"),
        (
            "user=alice",
            "producer_byte_rate=1048576 request_percentage=50",
        ),
        ("user=alice,client-id=etl", "request_percentage=5"),
        ("user=erin", "request_percentage=30"),
    ]);
    assert_eq!(kafka.describe(vec![], false), Ok(everything.clone()));
    // Exact, loose and strict.
    let exact_alice = vec![component("user", 0, Some("alice"))];
    assert_eq!(
        kafka.describe(exact_alice.clone(), false),
        Ok(pairs(&[
            (
                "user=alice",
                "producer_byte_rate=1048576 request_percentage=50"
            ),
            ("user=alice,client-id=etl", "request_percentage=5"),
        ]))
    );
    assert_eq!(
        kafka.describe(exact_alice.clone(), true),
        Ok(pairs(&[(
            "user=alice",
            "producer_byte_rate=1048576 request_percentage=50"
        )]))
    );
    // Default.
    assert_eq!(
        kafka.describe(vec![component("user", 1, None)], false),
        Ok(pairs(&[("user=<default>", "consumer_byte_rate=2000000")]))
    );
    // Any, loose and strict.
    let any_client = vec![component("client-id", 2, None)];
    assert_eq!(
        kafka.describe(any_client.clone(), false),
        Ok(pairs(&[
            ("client-id=<default>", "request_percentage=70"),
            ("user=alice,client-id=etl", "request_percentage=5"),
        ]))
    );
    assert_eq!(
        kafka.describe(any_client, true),
        Ok(pairs(&[("client-id=<default>", "request_percentage=70")]))
    );
    // A bad filter is refused with a reason.
    let refused = kafka
        .describe(vec![component("user", 0, None)], false)
        .unwrap_err();
    assert_eq!(refused.0, INVALID_REQUEST, "{refused:?}");
    assert!(refused.1.contains("needs a name"), "{refused:?}");

    // validate_only: checked (a bad entry still refused), nothing changes.
    let checked = kafka.alter(
        vec![
            entry(
                &[("user", Some("bob"))],
                vec![set("producer_byte_rate", 1000.0)],
            ),
            entry(&alice, vec![remove("producer_byte_rate")]),
            entry(
                &[("user", Some("bob"))],
                vec![set("request_percentage", 0.5)],
            ),
        ],
        true,
    );
    assert_eq!(checked[0], (0, String::new()));
    assert_eq!(checked[1], (0, String::new()));
    assert_eq!(checked[2].0, INVALID_REQUEST, "{checked:?}");
    assert!(checked[2].1.contains("whole number"), "{checked:?}");
    assert_eq!(kafka.describe(vec![], false), Ok(everything));

    // Bad keys and values are refused entry by entry; the good entry is made.
    let mixed = kafka.alter(
        vec![
            entry(
                &[("user", Some("carol"))],
                vec![set("controller_mutation_rate", 5.0)],
            ),
            entry(
                &[("user", Some("dave"))],
                vec![set("producer_byte_rate", 1000.0)],
            ),
            entry(
                &[("user", Some("carol"))],
                vec![set("consumer_byte_rate", -3.0)],
            ),
            entry(
                &[("ip", Some("10.0.0.1"))],
                vec![set("request_percentage", 10.0)],
            ),
            entry(
                &[("user", Some("carol"))],
                vec![set("request_percentage", 0.0)],
            ),
        ],
        false,
    );
    let reasons = [
        "unknown quota key",
        "",
        "positive",
        "not supported",
        "at least 1 percent",
    ];
    for (i, ((code, message), why)) in mixed.iter().zip(reasons).enumerate() {
        match why {
            "" => assert_eq!((*code, message.as_str()), (0, ""), "entry {i}"),
            why => {
                assert_eq!(*code, INVALID_REQUEST, "entry {i}: {message}");
                assert!(message.contains(why), "entry {i}: {message}");
            }
        }
    }
    assert_eq!(
        kafka.describe(vec![component("user", 0, Some("carol"))], false),
        Ok(vec![])
    );

    // Removed over Kafka: one key, then every key of an entity; `weir quota list` agrees.
    let removed = kafka.alter(
        vec![
            entry(&alice, vec![remove("request_percentage")]),
            entry(
                &[("user", Some("alice")), ("client-id", Some("etl"))],
                vec![remove("request_percentage")],
            ),
        ],
        false,
    );
    assert_eq!(removed, vec![(0, String::new()); 2]);
    assert_eq!(
        kafka.describe(exact_alice, false),
        Ok(pairs(&[("user=alice", "producer_byte_rate=1048576")]))
    );
    let listed: Value = serde_json::from_str(&weir_ok(
        &broker,
        &["quota", "list", "--format", "json"],
        "",
    ))
    .expect("JSON");
    let shown: Vec<String> = listed
        .as_array()
        .expect("an array")
        .iter()
        .map(|q| format!("{} {}", q["entity"].as_str().unwrap(), q["values"]))
        .collect();
    let mut shown = shown;
    shown.sort();
    assert_eq!(
        shown,
        vec![
            "client-id=<default> {\"request_percentage\":70}".to_string(),
            "user=<default> {\"consumer_byte_rate\":2000000}".to_string(),
            "user=alice {\"producer_byte_rate\":1048576}".to_string(),
            "user=dave {\"producer_byte_rate\":1000}".to_string(),
            "user=erin {\"request_percentage\":30}".to_string(),
        ]
    );
}

#[test]
fn a_request_percentage_holds_a_busy_kafka_client_back_and_not_another_user() {
    // 1% of a thread: 10 ms of the broker's thread time per second, measured over
    // windows of 100 ms (at least 1 s).
    const PERCENT: f64 = 1.0;
    const SECONDS: f64 = 4.0;
    let python = installed("tests/python/setup.sh");
    let broker = serve(&["--quota-window-ms", "100"]);
    for user in ["busy", "calm"] {
        weir_ok(
            &broker,
            &["user", "create", user, "--mechanism", "SCRAM-SHA-256"],
            "secret-1\n",
        );
    }
    weir_ok(
        &broker,
        &[
            "quota",
            "set",
            "--principal",
            "User:busy",
            "--request-percentage",
            "1",
        ],
        "",
    );
    let script = repo_root().join("tests/kafka/request_quota.py");
    let script = script.to_string_lossy().into_owned();
    let run = |user: &'static str| {
        let (python, script, kafka) = (python.clone(), script.clone(), kafka_addr(&broker));
        std::thread::spawn(move || {
            let out = run_ok(
                &python,
                &[&script, &kafka, user, "secret-1", &SECONDS.to_string()],
            );
            let line: Value = serde_json::from_str(out.trim()).expect("one JSON line");
            line
        })
    };
    let (busy, calm) = (run("busy"), run("calm"));
    let (busy, calm) = (
        busy.join().expect("busy client"),
        calm.join().expect("calm client"),
    );
    let rate = |v: &Value| v["requests"].as_f64().unwrap() / v["seconds"].as_f64().unwrap();
    eprintln!("busy: {busy}\ncalm: {calm}");
    // The busy client was told it was held back, and was.
    assert!(busy["throttled"].as_u64().unwrap() > 0, "{busy}");
    assert!(busy["max_throttle_ms"].as_u64().unwrap() > 0, "{busy}");
    // The other user, without a quota, never was, and got far more done.
    assert_eq!(calm["throttled"].as_u64(), Some(0), "{calm}");
    assert!(rate(&calm) > 3.0 * rate(&busy), "busy {busy}, calm {calm}");
    // What the busy user's requests cost the broker stayed near its share: 1% of a
    // thread over the run, plus the first second's worth the windows let through, with
    // room for the request in flight when the hold starts.
    let spent = metric(
        &broker.admin,
        "weir_quota_request_thread_seconds_total{entity=\"user=busy\",kind=\"request\"}",
    )
    .expect("the busy user's thread time series");
    let allowed = PERCENT / 100.0 * (busy["seconds"].as_f64().unwrap() + 1.0);
    assert!(spent > 0.0, "no thread time counted");
    assert!(
        spent < 2.0 * allowed + 0.02,
        "{spent} s of thread time against {allowed} s"
    );
    let held = metric(
        &broker.admin,
        "weir_quota_throttled_requests_total{entity=\"user=busy\",kind=\"request\"}",
    )
    .expect("the busy user's throttle series");
    assert!(held > 0.0, "{held}");
}
