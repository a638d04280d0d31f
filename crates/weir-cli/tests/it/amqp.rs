//! RabbitMQ's clients against the AMQP 0-9-1 listener (docs/amqp.md): pika running
//! RabbitMQ's tutorials 1 and 2 as they are written (`tests/amqp/*.py`, pika pinned with
//! the other clients and installed by `tests/python/setup.sh`), a pika message read back
//! by Weir's own CLI, a pika consumer told by `basic.cancel` that its queue was deleted,
//! and frames a client should not send, through a raw socket, each closing the
//! connection with the spec's reply code.

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
fn amqp_broker() -> (Broker, u16) {
    let broker = Broker::start(weir_server::ServerConfig {
        admin_listen: None,
        amqp_listen: Some("127.0.0.1:0".parse().expect("address")),
        ..Default::default()
    });
    let port = broker
        .server
        .as_ref()
        .and_then(|s| s.amqp_addr)
        .expect("an AMQP listener")
        .port();
    (broker, port)
}

#[test]
fn pika_hello_world_gets_every_message_once_in_order() {
    let python = python();
    let (_broker, port) = amqp_broker();
    let out = run_ok(
        &python,
        &[&script("hello_world.py"), &port.to_string(), "hello", "50"],
    );
    let lines = json_lines(&out);
    let received: Vec<&str> = lines[0]["received"]
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
    let python = python();
    let (broker, port) = amqp_broker();
    let count = 20;
    let out = run_ok(
        &python,
        &[
            &script("work_queues.py"),
            &port.to_string(),
            "tasks",
            &count.to_string(),
        ],
    );
    let lines = json_lines(&out);
    let result = &lines[0];
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
    let python = python();
    let (_broker, port) = amqp_broker();
    let out = run_ok(
        &python,
        &[&script("cancel_notify.py"), &port.to_string(), "doomed"],
    );
    let lines = json_lines(&out);
    let result = &lines[0];
    assert_eq!(result["offered"], Value::Bool(true), "{result}");
    // pika's cancel callback saw basic.cancel for its own consumer tag, within the
    // script's 30 s bound, and the channel stayed open (a cancel is not an error).
    assert_eq!(result["cancelled"], Value::Bool(true), "{result}");
    assert_eq!(result["channel_open"], Value::Bool(true), "{result}");
}
