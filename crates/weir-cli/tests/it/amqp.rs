//! RabbitMQ's clients against the AMQP 0-9-1 listener (docs/amqp.md): pika running
//! RabbitMQ's tutorials 1 to 6 as they are written (`tests/amqp/*.py`, pika pinned with
//! the other clients and installed by `tests/python/setup.sh`): queues, work queues,
//! fanout, direct, topic and headers exchanges, RPC; mandatory publishes returned under
//! confirms and bindings that survive a restart; a pika message read back by Weir's own
//! CLI, a pika consumer told by `basic.cancel` that its queue was deleted, and frames a
//! client should not send, through a raw socket, each closing the connection with the
//! spec's reply code; and py-amqp's and kombu's own integration tests
//! (`tests/compat/amqp-suite.sh`).

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use amq_protocol::frame::{AMQPFrame, WriteContext, gen_frame, parse_frame};
use amq_protocol::protocol::{AMQPClass, channel, connection};
use common::*;
use serde_json::Value;

fn python() -> PathBuf {
    installed("tests/python/setup.sh")
}

fn script(name: &str) -> String {
    repo_root()
        .join("tests/amqp")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// A broker with an AMQP listener on a free port; the port.
pub(crate) fn amqp_broker() -> (Broker, u16) {
    // The default data directory: `Broker::start` gives it a temporary one of its own.
    amqp_broker_on(weir_server::ServerConfig::default().data_dir)
}

/// [`amqp_broker`] on the data directory `data_dir` (to start again on it).
fn amqp_broker_on(data_dir: PathBuf) -> (Broker, u16) {
    let broker = Broker::start(weir_server::ServerConfig {
        admin_listen: None,
        amqp_listen: Some("127.0.0.1:0".parse().expect("address")),
        data_dir,
        ..Default::default()
    });
    let port = amqp_port(&broker);
    (broker, port)
}

/// The port of `broker`'s AMQP listener.
pub(crate) fn amqp_port(broker: &Broker) -> u16 {
    broker
        .server
        .as_ref()
        .and_then(|s| s.amqp_addr)
        .expect("an AMQP listener")
        .port()
}

/// Runs `tests/amqp/NAME PORT ARGS...` with the shared venv's Python; the one JSON line
/// it prints.
pub(crate) fn tutorial(name: &str, port: u16, args: &[&str]) -> Value {
    let script = script(name);
    let port = port.to_string();
    let mut argv = vec![script.as_str(), port.as_str()];
    argv.extend_from_slice(args);
    let out = run_ok(&python(), &argv);
    json_lines(&out).swap_remove(0)
}

/// Runs `tests/compat/amqp-suite.sh SUITE` (a client's own integration tests, from its
/// sdist at the pinned version) against a fresh broker; pytest's summary line.
fn client_suite(suite: &str) -> (String, String) {
    // The shared venv first, installed with its own (longer) bound.
    python();
    let (_broker, port) = amqp_broker();
    let script = repo_root().join("tests/compat/amqp-suite.sh");
    let out = run_ok(&script, &[suite, &port.to_string()]);
    let summary = out.lines().last().unwrap_or_default().to_owned();
    (summary, out)
}

/// py-amqp's own integration tests (`t/integration/test_rmq.py`), as its project runs
/// them against RabbitMQ: publishes with and without confirms, `mandatory`, the
/// `immediate` flag refused with RabbitMQ's words, consumes, and a `basic.get` right
/// behind a publish without confirms (which must find the message). Its TLS tests are
/// left out (no amqps listener).
#[test]
fn py_amqp_own_integration_tests_pass() {
    let (summary, out) = client_suite("py-amqp");
    assert!(
        summary.starts_with("12 passed") && !summary.contains("failed"),
        "{out}"
    );
}

/// kombu's own integration tests over py-amqp (`t/integration/test_py_amqp.py`):
/// connections and failover, exchange types, TTLs, ack / reject / requeue, consumer
/// revival. Its priority tests are left out (`x-max-priority` is refused at declare).
#[test]
fn kombu_own_integration_tests_pass() {
    let (summary, out) = client_suite("kombu");
    assert!(
        summary.starts_with("47 passed") && !summary.contains("failed"),
        "{out}"
    );
}

#[test]
fn pika_hello_world_gets_every_message_once_in_order() {
    let (_broker, port) = amqp_broker();
    let result = &tutorial("hello_world.py", port, &["hello", "50"]);
    let received: Vec<&str> = result["received"]
        .as_array()
        .expect("received")
        .iter()
        .map(|v| v.as_str().expect("a body"))
        .collect();
    let expected: Vec<String> = (0..50).map(|i| format!("Hello World! {i}")).collect();
    assert_eq!(received, expected);
}

#[test]
fn pika_work_queues_ack_nack_and_redeliver_what_a_dead_worker_held() {
    let (broker, port) = amqp_broker();
    let count = 20;
    let result = &tutorial("work_queues.py", port, &["tasks", &count.to_string()]);
    assert_eq!(result["ready_after_publish"], count, "{result}");
    assert_eq!(result["redeclare"], 406, "{result}");

    // Prefetch 1, one worker: every task in order, task 2 twice (nacked with requeue,
    // then redelivered at once, marked redelivered), and nothing else twice.
    let deliveries = result["deliveries"].as_array().expect("deliveries");
    let bodies: Vec<&str> = deliveries
        .iter()
        .map(|d| d["body"].as_str().expect("body"))
        .collect();
    let mut expected: Vec<String> = (0..count).map(|i| format!("task {i}")).collect();
    expected.insert(3, "task 2".into());
    assert_eq!(bodies, expected, "{result}");
    for (i, d) in deliveries.iter().enumerate() {
        assert_eq!(d["redelivered"], i == 3, "delivery {i}: {d}");
        assert_eq!(d["delivery_mode"], 2, "{d}");
        assert_eq!(d["content_type"], "text/plain", "{d}");
        assert_eq!(d["headers"]["attempt"], "first", "{d}");
    }
    assert_eq!(deliveries[0]["correlation_id"], "c0");

    // The task a worker held when its connection closed went to the next worker,
    // redelivered; then the queue was empty.
    assert_eq!(result["held"][0]["body"], "held task", "{result}");
    assert_eq!(result["held"][0]["redelivered"], false, "{result}");
    assert_eq!(result["again"][0]["body"], "held task", "{result}");
    assert_eq!(result["again"][0]["redelivered"], true, "{result}");
    assert_eq!(result["empty_after"], true, "{result}");
    assert_eq!(result["returned"], serde_json::json!(["lost"]), "{result}");

    // What pika published is the topic's records, with its properties as headers, as
    // any other client of Weir reads them.
    let consumed = broker.ok(
        &[
            "consume",
            "tasks",
            "--from",
            "beginning",
            "--count",
            "1",
            "--format",
            "json",
        ],
        "",
    );
    let record: Value = serde_json::from_str(consumed.lines().next().expect("a record"))
        .unwrap_or_else(|e| panic!("{consumed}: {e}"));
    let text = record.to_string();
    for part in [
        "task 0",
        "amqp-content-type",
        "text/plain",
        "amqp-correlation-id",
    ] {
        assert!(text.contains(part), "{part} in {text}");
    }
}

/// The bodies of a JSON array of strings.
fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|v| v.as_str().expect("a string"))
        .collect()
}

#[test]
fn pika_publish_subscribe_gives_every_subscriber_every_message_once_in_order() {
    let (_broker, port) = amqp_broker();
    let count = 30;
    let result = &tutorial("publish_subscribe.py", port, &[&count.to_string()]);
    let expected: Vec<String> = (0..count).map(|i| format!("log {i}")).collect();
    // Two exclusive server-named queues bound to the fanout exchange: each got every
    // message published after its bind, once, in order (the one before any bind went
    // nowhere).
    let received = result["received"].as_array().expect("received");
    assert_eq!(received.len(), 2, "{result}");
    for bodies in received {
        assert_eq!(strings(bodies), expected, "{result}");
    }
    assert_eq!(result["first"]["exchange"], "logs", "{result}");
    let queues = strings(&result["queues"]);
    assert!(queues.iter().all(|q| q.starts_with("amq.gen-")), "{result}");
    assert_ne!(queues[0], queues[1]);
    // Their queues went with their connections.
    assert_eq!(result["gone"], serde_json::json!([true, true]), "{result}");
}

#[test]
fn pika_routing_delivers_by_key_and_refuses_as_rabbitmq() {
    let (_broker, port) = amqp_broker();
    let result = &tutorial("routing.py", port, &[]);
    let bodies = |queue: &str| -> Vec<String> {
        result[queue]
            .as_array()
            .unwrap_or_else(|| panic!("{queue}: {result}"))
            .iter()
            .map(|m| m["body"].as_str().expect("body").to_owned())
            .collect()
    };
    // `errors` is bound with `error` only; `all` with three keys (`error` twice is once);
    // `debug` is bound to nothing and reached nobody.
    assert_eq!(bodies("errors"), ["e1", "e2"], "{result}");
    assert_eq!(bodies("all"), ["i1", "w1", "e1", "i2", "e2"], "{result}");
    assert_eq!(result["errors"][0]["exchange"], "direct_logs", "{result}");
    assert_eq!(result["errors"][0]["key"], "error", "{result}");
    // Unbound from `warning`: only the info came.
    assert_eq!(bodies("after_unbind"), ["i3"], "{result}");

    let codes = &result["codes"];
    for (case, code) in [
        ("redeclare_other_type", 406),
        ("passive_missing", 404),
        ("bind_missing_exchange", 404),
        ("bind_missing_queue", 404),
        ("delete_predeclared", 403),
        ("reserved_name", 403),
        ("delete_in_use", 406),
        ("publish_missing_exchange", 404),
    ] {
        assert_eq!(codes[case], code, "{case}: {result}");
    }
    assert_eq!(codes["redeclare_same"], "accepted", "{result}");
    assert_eq!(codes["predeclared_same"], "accepted", "{result}");
    // Its bindings went with the deleted exchange: the new one of that name routed the
    // error nowhere.
    assert_eq!(result["errors_after_delete"], 0, "{result}");
}

#[test]
fn pika_topics_and_headers_route_to_the_matching_queues() {
    let (_broker, port) = amqp_broker();
    let result = &tutorial("topics.py", port, &[]);
    assert_eq!(
        strings(&result["q1"]),
        [
            "quick.orange.rabbit",
            "lazy.orange.elephant",
            "quick.orange.fox"
        ],
        "{result}"
    );
    // lazy.pink.rabbit matches both of q2's bindings and arrives once.
    assert_eq!(
        strings(&result["q2"]),
        [
            "quick.orange.rabbit",
            "lazy.orange.elephant",
            "lazy.brown.fox",
            "lazy.pink.rabbit",
            "lazy.orange.new.rabbit"
        ],
        "{result}"
    );
    assert_eq!(strings(&result["h_all"]), ["pdf report"], "{result}");
    assert_eq!(
        strings(&result["h_any"]),
        ["pdf report", "pdf log"],
        "{result}"
    );
}

#[test]
fn pika_rpc_round_trips_reply_to_and_correlation_id() {
    let (_broker, port) = amqp_broker();
    let count = 10;
    let result = &tutorial("rpc.py", port, &[&count.to_string()]);
    let fib = |n: u64| (0..n).fold((0u64, 1u64), |(a, b), _| (b, a + b)).0;
    let calls = result["calls"].as_array().expect("calls");
    assert_eq!(calls.len(), count, "{result}");
    for (n, call) in calls.iter().enumerate() {
        assert_eq!(call["n"], n, "{result}");
        assert_eq!(call["answer"], fib(n as u64), "call {n}: {result}");
    }
    assert_eq!(result["stray"], 0, "{result}");
}

#[test]
fn pika_mandatory_returns_and_bindings_survive_a_restart() {
    let data = tempfile::tempdir().expect("temp dir");
    let start = || amqp_broker_on(data.path().to_path_buf());
    let (broker, port) = start();
    let result = &tutorial("mandatory_restart.py", port, &["declare"]);
    // The mandatory publish with no route came back (pika raises it once the confirm
    // arrives); the routed one was stored and the non-mandatory unroutable one dropped.
    assert_eq!(strings(&result["unroutable"]), ["nowhere"], "{result}");
    assert_eq!(strings(&result["received"]), ["order 1"], "{result}");
    drop(broker);

    let (_broker, port) = start();
    let result = &tutorial("mandatory_restart.py", port, &["publish"]);
    assert_eq!(result["routed"], true, "{result}");
    // The exchange-to-exchange binding is in the metadata too.
    assert_eq!(result["routed_through_binding"], true, "{result}");
    // The queue's declaration is in the metadata: redeclared otherwise after the restart,
    // it is refused.
    assert_eq!(result["redeclare_after_restart"], 406, "{result}");
    assert_eq!(
        strings(&result["received"]),
        ["order 2", "order 3"],
        "{result}"
    );
}

// --- Frames a client should not send: a raw socket speaking AMQP by hand. ---

const READ_TIMEOUT: Duration = Duration::from_secs(10);

fn write_frame(stream: &mut TcpStream, frame: &AMQPFrame) {
    let (bytes, _) = gen_frame(frame)(WriteContext::from(Vec::new()))
        .expect("encodes")
        .into_inner();
    stream.write_all(&bytes).expect("writes");
}

/// Reads frames until one decodes; panics on a timeout or a closed socket.
fn read_frame(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> AMQPFrame {
    loop {
        if let Ok((rest, frame)) = parse_frame(&buffer[..]) {
            let used = buffer.len() - rest.len();
            buffer.drain(..used);
            return frame;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).expect("reads");
        assert!(n > 0, "the broker closed the socket without a close method");
        buffer.extend_from_slice(&chunk[..n]);
    }
}

fn method(channel: u16, class: AMQPClass) -> AMQPFrame {
    AMQPFrame::Method(channel, class)
}

/// A connection through the protocol header, or through `connection.open` with `open`.
fn connect(port: u16, open: bool) -> (TcpStream, Vec<u8>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connects");
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    stream.write_all(b"AMQP\x00\x00\x09\x01").unwrap();
    let mut buffer = Vec::new();
    let start = read_frame(&mut stream, &mut buffer);
    assert!(
        matches!(
            start,
            AMQPFrame::Method(0, AMQPClass::Connection(connection::AMQPMethod::Start(_)))
        ),
        "{start:?}"
    );
    if open {
        write_frame(
            &mut stream,
            &method(
                0,
                AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
                    client_properties: Default::default(),
                    mechanism: "PLAIN".into(),
                    response: "\0guest\0guest".into(),
                    locale: "en_US".into(),
                })),
            ),
        );
        let tune = read_frame(&mut stream, &mut buffer);
        let AMQPFrame::Method(0, AMQPClass::Connection(connection::AMQPMethod::Tune(tune))) = tune
        else {
            panic!("expected connection.tune, got {tune:?}");
        };
        assert_eq!(tune.frame_max, 131_072);
        write_frame(
            &mut stream,
            &method(
                0,
                AMQPClass::Connection(connection::AMQPMethod::TuneOk(connection::TuneOk {
                    channel_max: 16,
                    frame_max: 4096,
                    heartbeat: 0,
                })),
            ),
        );
        write_frame(
            &mut stream,
            &method(
                0,
                AMQPClass::Connection(connection::AMQPMethod::Open(connection::Open {
                    virtual_host: "/".into(),
                })),
            ),
        );
        let ok = read_frame(&mut stream, &mut buffer);
        assert!(
            matches!(
                ok,
                AMQPFrame::Method(0, AMQPClass::Connection(connection::AMQPMethod::OpenOk(_)))
            ),
            "{ok:?}"
        );
    }
    (stream, buffer)
}

/// The reply code of the `connection.close` the broker sends next.
fn close_code(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> (u16, String) {
    match read_frame(stream, buffer) {
        AMQPFrame::Method(0, AMQPClass::Connection(connection::AMQPMethod::Close(close))) => {
            (close.reply_code, close.reply_text.as_str().to_owned())
        }
        other => panic!("expected connection.close, got {other:?}"),
    }
}

#[test]
fn bad_frames_close_the_connection_with_the_spec_reply_codes() {
    let (_broker, port) = amqp_broker();

    // An unknown class and method: 540 NOT_IMPLEMENTED.
    let (mut stream, mut buffer) = connect(port, true);
    stream
        .write_all(&[1, 0, 1, 0, 0, 0, 4, 0, 99, 0, 10, 0xCE])
        .unwrap();
    let (code, text) = close_code(&mut stream, &mut buffer);
    assert_eq!(code, 540, "{text}");

    // A frame over the frame_max the client tuned (4,096): 501 FRAME_ERROR, from the
    // length alone.
    let (mut stream, mut buffer) = connect(port, true);
    let mut header = vec![3u8, 0, 1];
    header.extend_from_slice(&10_000u32.to_be_bytes());
    stream.write_all(&header).unwrap();
    let (code, text) = close_code(&mut stream, &mut buffer);
    assert_eq!(code, 501, "{text}");
    assert!(text.contains("frame_max"), "{text}");

    // A channel method before the connection is open: 503 COMMAND_INVALID.
    let (mut stream, mut buffer) = connect(port, false);
    write_frame(
        &mut stream,
        &method(
            1,
            AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
        ),
    );
    let (code, text) = close_code(&mut stream, &mut buffer);
    assert_eq!(code, 503, "{text}");

    // A method on a channel that is not open: 504 CHANNEL_ERROR.
    let (mut stream, mut buffer) = connect(port, true);
    write_frame(
        &mut stream,
        &method(
            5,
            AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
                reply_code: 200,
                reply_text: "".into(),
                class_id: 0,
                method_id: 0,
            })),
        ),
    );
    let (code, text) = close_code(&mut stream, &mut buffer);
    assert_eq!(code, 504, "{text}");

    // Another protocol's header is answered with AMQP 0-9-1's, then the socket closes.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    stream.write_all(b"AMQP\x01\x01\x00\x0a").unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    assert_eq!(answer, b"AMQP\x00\x00\x09\x01");
}

#[test]
fn pika_consumer_is_cancelled_by_the_broker_when_its_queue_is_deleted() {
    let (_broker, port) = amqp_broker();
    let result = &tutorial("cancel_notify.py", port, &["doomed"]);
    assert_eq!(result["offered"], Value::Bool(true), "{result}");
    // pika's cancel callback saw basic.cancel for its own consumer tag, within the
    // script's 30 s bound, and the channel stayed open (a cancel is not an error).
    assert_eq!(result["cancelled"], Value::Bool(true), "{result}");
    assert_eq!(result["channel_open"], Value::Bool(true), "{result}");
}

/// The `x-death` entry a dead-lettered message carries, checked as a RabbitMQ user would:
/// which queue it left, why, how often, and where it had been published.
pub(crate) fn assert_death(message: &Value, queue: &str, reason: &str, exchange: &str, key: &str) {
    let deaths = message["x_death"].as_array().expect("x-death is an array");
    assert_eq!(deaths.len(), 1, "{message}");
    let death = &deaths[0];
    assert_eq!(death["queue"], queue, "{message}");
    assert_eq!(death["reason"], reason, "{message}");
    assert_eq!(death["count"], 1, "{message}");
    assert_eq!(death["exchange"], exchange, "{message}");
    assert_eq!(death["routing-keys"], serde_json::json!([key]), "{message}");
    assert!(
        death["time"].as_i64().unwrap_or(0) > 1_600_000_000,
        "{message}"
    );
    assert_eq!(message["x_first_death_queue"], queue, "{message}");
    assert_eq!(message["x_first_death_reason"], reason, "{message}");
    assert_eq!(message["x_first_death_exchange"], exchange, "{message}");
}

#[test]
fn pika_delay_queue_dead_letters_on_ttl_reject_and_delivery_limit() {
    let (_broker, port) = amqp_broker();
    let result = &tutorial("dead_letters.py", port, &[]);

    // The delay queue: all five reach `work` through `dlx`, none before their 1 s TTL,
    // in publish order, each with its death; `audit`, bound alike, gets them too, and
    // nothing is left in `delay`.
    let delayed = result["delayed"].as_array().expect("delayed");
    let bodies: Vec<&str> = delayed
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(
        bodies,
        (0..5).map(|i| format!("delayed {i}")).collect::<Vec<_>>(),
        "{result}"
    );
    for m in delayed {
        let after = m["after_s"].as_f64().unwrap();
        assert!(
            (0.95..10.0).contains(&after),
            "arrived after {after} s: {m}"
        );
        assert_eq!(m["exchange"], "dlx", "{m}");
        assert_eq!(m["routing_key"], "work", "{m}");
        assert_death(m, "delay", "expired", "", "delay");
    }
    assert_eq!(strings_of(&result["audited"], "body").len(), 5, "{result}");
    assert_eq!(result["delay_left"], 0, "{result}");

    // A per-message expiration through the default exchange: the copy has no expiration
    // of its own (it would expire again at once), x-death keeps the original.
    let expired = &result["expired"][0];
    assert_eq!(expired["body"], "expires", "{result}");
    assert!(expired["after_s"].as_f64().unwrap() >= 0.45, "{expired}");
    assert_eq!(expired["expiration"], Value::Null, "{expired}");
    assert_eq!(expired["routing_key"], "work2", "{expired}");
    assert_death(expired, "delay2", "expired", "", "delay2");
    assert_eq!(
        expired["x_death"][0]["original-expiration"], "500",
        "{expired}"
    );

    // Rejected without requeue, and released past x-delivery-limit 1 (two deliveries).
    assert_eq!(result["rejected_first"], "bad job", "{result}");
    assert_eq!(result["flaky_deliveries"], 2, "{result}");
    let failed = result["failed"].as_array().expect("failed");
    assert_eq!(failed.len(), 2, "{result}");
    let by_body = |body: &str| {
        failed
            .iter()
            .find(|m| m["body"] == body)
            .unwrap_or_else(|| panic!("no {body} in {result}"))
    };
    let rejected = by_body("bad job");
    assert_eq!(rejected["routing_key"], "jobs", "{rejected}");
    assert_death(rejected, "jobs", "rejected", "", "jobs");
    assert_death(by_body("flaky job"), "flaky", "delivery_limit", "", "flaky");

    // What RabbitMQ refuses, refused alike, in its words.
    let refusals = &result["refusals"];
    for case in [
        "ttl_as_string",
        "ttl_negative",
        "routing_key_without_dlx",
        "redeclare_other_ttl",
        "expires_zero",
        "expiration_not_a_number",
    ] {
        assert_eq!(refusals[case]["code"], 406, "{case}: {refusals}");
    }
    let text = |case: &str| refusals[case]["text"].as_str().unwrap_or("").to_owned();
    assert!(
        text("ttl_as_string").contains(
            "invalid arg 'x-message-ttl' for queue 'bad1' in vhost '/': {unacceptable_type,longstr}"
        ),
        "{refusals}"
    );
    assert!(
        text("ttl_negative").contains("value_negative"),
        "{refusals}"
    );
    assert!(
        text("routing_key_without_dlx").contains("routing_key_but_no_dlx_defined"),
        "{refusals}"
    );
    assert!(
        text("expiration_not_a_number").contains("invalid expiration 'soon'"),
        "{refusals}"
    );
    assert!(
        text("expires_zero").contains("{value_zero,0}"),
        "{refusals}"
    );

    // x-expires 500 ms: the unused queue is gone soon after, not before; the one a
    // consumer reads stays.
    let gone = result["ephemeral_gone_after_s"]
        .as_f64()
        .expect("the unused queue was deleted");
    assert!((0.45..5.0).contains(&gone), "deleted after {gone} s");
    assert_eq!(result["kept_exists"], true, "{result}");
}

/// The `field` of each entry of the array `value`.
pub(crate) fn strings_of<'a>(value: &'a Value, field: &str) -> Vec<&'a str> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(|m| m[field].as_str()).collect())
        .unwrap_or_default()
}

/// Celery on `pyamqp://`, its default broker: a client `.delay()`s tasks into Weir's
/// AMQP listener and a worker runs each once: plain tasks, one with `bind=True,
/// max_retries=3` that fails twice and succeeds on `self.retry(countdown=1)`, and one with
/// an `eta` 2 s ahead, not run before it; and a result read back through the `rpc://`
/// backend.
#[test]
fn celery_on_pyamqp_runs_tasks_retries_etas_and_rpc_results() {
    const TASKS: usize = 10;
    let python = python();
    let (_broker, port) = amqp_broker();
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("done");
    let env = |command: &mut std::process::Command| {
        command
            .current_dir(repo_root().join("tests/amqp"))
            .env(
                "CELERY_BROKER_URL",
                format!("pyamqp://guest@127.0.0.1:{port}//"),
            )
            .env("CELERY_OUT", &out)
            .stdin(std::process::Stdio::null());
    };
    let mut send = std::process::Command::new(&python);
    send.args(["celery_tasks.py", "send", &TASKS.to_string()]);
    env(&mut send);
    let sent = finish(send, &["celery_tasks.py send"]);
    assert!(sent.status.success(), "{}", stderr(&sent));

    let mut worker = std::process::Command::new(&python);
    worker.args([
        "-m",
        "celery",
        "-A",
        "celery_tasks",
        "worker",
        "--pool=solo",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "--loglevel=INFO",
    ]);
    env(&mut worker);
    let log = dir.path().join("worker.log");
    let log_file = std::fs::File::create(&log).expect("worker log");
    let worker = KillOnDrop(
        worker
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file)
            .spawn()
            .expect("the worker starts"),
    );
    // Each line: what ran, then when (epoch seconds).
    let runs = || -> Vec<(String, f64)> {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (what, at) = l.rsplit_once(' ')?;
                Some((what.to_owned(), at.parse().ok()?))
            })
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let done = loop {
        let done = runs();
        let finished = done.iter().any(|(w, _)| w == "flaky 2")
            && done.iter().any(|(w, _)| w.starts_with("later "))
            && done
                .iter()
                .filter(|(w, _)| w.starts_with("record "))
                .count()
                >= TASKS;
        if finished || std::time::Instant::now() > deadline {
            break done;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    // A result read back through the rpc:// backend, while the worker runs.
    let mut result = std::process::Command::new(&python);
    result.args(["celery_tasks.py", "result"]);
    env(&mut result);
    let result = finish(result, &["celery_tasks.py result"]);
    drop(worker);
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        result.status.success(),
        "{}\nworker log:\n{log}",
        stderr(&result)
    );
    assert_eq!(
        String::from_utf8_lossy(&result.stdout).trim(),
        "5",
        "worker log:\n{log}"
    );
    let mut records: Vec<usize> = done
        .iter()
        .filter_map(|(w, _)| w.strip_prefix("record ")?.parse().ok())
        .collect();
    records.sort_unstable();
    assert_eq!(
        records,
        (0..TASKS).collect::<Vec<_>>(),
        "runs: {done:?}\nworker log:\n{log}"
    );
    // Two failures, then success: three runs, each at least its countdown after the last.
    let flaky: Vec<&(String, f64)> = done
        .iter()
        .filter(|(w, _)| w.starts_with("flaky "))
        .collect();
    let attempts: Vec<&str> = flaky.iter().map(|(w, _)| w.as_str()).collect();
    assert_eq!(
        attempts,
        ["flaky 0", "flaky 1", "flaky 2"],
        "worker log:\n{log}"
    );
    for pair in flaky.windows(2) {
        assert!(pair[1].1 - pair[0].1 >= 0.9, "retried too early: {flaky:?}");
    }
    // The eta task ran once, not before its eta.
    let later: Vec<&(String, f64)> = done
        .iter()
        .filter(|(w, _)| w.starts_with("later "))
        .collect();
    assert_eq!(later.len(), 1, "runs: {done:?}\nworker log:\n{log}");
    let sent_at: f64 = later[0].0["later ".len()..].parse().expect("sent at");
    assert!(later[0].1 - sent_at >= 1.9, "ran before its eta: {later:?}");
}
