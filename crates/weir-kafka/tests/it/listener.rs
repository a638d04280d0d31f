//! The listener over real TCP on 127.0.0.1, spoken to as a Kafka client speaks: requests
//! encoded and responses decoded by kafka-protocol's client side.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, FetchRequest, FetchResponse, MetadataRequest,
    MetadataResponse, ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use weir_kafka::apis::{UNSUPPORTED_VERSION, codec_versions};
use weir_kafka::{
    ConnectionInfo, Handler, HandlerError, Limits, MAX_IN_FLIGHT_PER_CONNECTION,
    MAX_REQUEST_FRAME_BYTES, Request, Response, SUPPORTED,
};

/// How long a test waits for anything before it fails.
const DEADLINE: Duration = Duration::from_secs(20);

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {DEADLINE:?}"))
}

/// A handler of the listener's own table: it is never called (ApiVersions is answered
/// by the listener).
struct ApiVersionsOnly;

impl Handler for ApiVersionsOnly {
    async fn handle(&self, _: &ConnectionInfo, request: Request) -> Result<Response, HandlerError> {
        panic!("{:?} is not served", request.api_key);
    }
}

/// What the gated handler has seen, watched by the tests.
#[derive(Debug, Default, Clone)]
struct Seen {
    /// Requests `handle` was called for, by correlation id, in call order.
    called: Vec<i32>,
    /// Requests answered, in the order they finished.
    finished: Vec<i32>,
    /// The most requests between call and finish at once.
    most_in_flight: usize,
}

/// Serves Metadata, and Produce and Fetch with empty answers. A request whose
/// correlation id has a gate waits for it to open; correlation ids from 1000 are answered
/// with no response, from 2000 with an error.
struct Gated {
    table: Vec<(ApiKey, i16, i16)>,
    gates: Mutex<HashMap<i32, oneshot::Receiver<()>>>,
    seen: watch::Sender<Seen>,
    /// Metadata requests are not pipelined ([`Handler::pipelined`]): each runs alone.
    alone: bool,
}

impl Gated {
    fn new() -> Arc<Gated> {
        Arc::new(Gated::with_alone(false))
    }

    fn with_alone(alone: bool) -> Gated {
        let metadata = codec_versions(ApiKey::Metadata);
        Gated {
            table: vec![
                (ApiKey::ApiVersions, 0, 4),
                (ApiKey::Metadata, metadata.min, metadata.max),
                (ApiKey::Produce, 9, 9),
                (ApiKey::Fetch, 12, 12),
            ],
            gates: Mutex::new(HashMap::new()),
            seen: watch::Sender::new(Seen::default()),
            alone,
        }
    }

    /// Closes the gate of `correlation_id`; the returned sender opens it.
    fn gate(&self, correlation_id: i32) -> oneshot::Sender<()> {
        let (open, gate) = oneshot::channel();
        self.gates.lock().unwrap().insert(correlation_id, gate);
        open
    }

    async fn wait_for(&self, what: &str, condition: impl Fn(&Seen) -> bool) -> Seen {
        let mut seen = self.seen.subscribe();
        within(what, seen.wait_for(|s| condition(s)))
            .await
            .expect("the handler lives as long as the test")
            .clone()
    }
}

impl Handler for Gated {
    fn supported_apis(&self) -> &[(ApiKey, i16, i16)] {
        &self.table
    }

    fn pipelined(&self, _: ApiKey) -> bool {
        !self.alone
    }

    async fn handle(&self, _: &ConnectionInfo, request: Request) -> Result<Response, HandlerError> {
        match request.api_key {
            ApiKey::Produce => drop(request.decode_body::<ProduceRequest>()?),
            ApiKey::Fetch => drop(request.decode_body::<FetchRequest>()?),
            _ => drop(request.decode_body::<MetadataRequest>()?),
        }
        let id = request.correlation_id;
        self.seen.send_modify(|s| {
            s.called.push(id);
            s.most_in_flight = s.most_in_flight.max(s.called.len() - s.finished.len());
        });
        let gate = self.gates.lock().unwrap().remove(&id);
        if let Some(gate) = gate {
            gate.await.expect("the test opens every gate it closes");
        }
        self.seen.send_modify(|s| s.finished.push(id));
        match id {
            2000.. => Err(HandlerError::Broker {
                source: "refused by the test".into(),
            }),
            1000.. => Ok(Response::Silent),
            _ if request.api_key == ApiKey::Produce => {
                Response::encode(&ProduceResponse::default(), request.api_version)
            }
            _ if request.api_key == ApiKey::Fetch => {
                Response::encode(&FetchResponse::default(), request.api_version)
            }
            _ => Response::encode(
                &MetadataResponse::default().with_throttle_time_ms(id),
                request.api_version,
            ),
        }
    }
}

struct Running {
    addr: std::net::SocketAddr,
    stop: watch::Sender<bool>,
    serve: JoinHandle<()>,
}

async fn start<H: Handler>(handler: Arc<H>) -> Running {
    start_with(handler, Limits::default()).await
}

async fn start_with<H: Handler>(handler: Arc<H>, limits: Limits) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopping) = watch::channel(false);
    let serve = tokio::spawn(weir_kafka::serve_with_limits(
        listener, handler, stopping, limits,
    ));
    Running { addr, stop, serve }
}

async fn connect(running: &Running) -> TcpStream {
    within("connect", TcpStream::connect(running.addr))
        .await
        .unwrap()
}

/// A request frame as a client encodes it: header at the version the api version asks
/// for, then the body (raw bytes, for versions kafka-protocol cannot encode).
fn frame(api_key: i16, api_version: i16, correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(api_key)
        .with_request_api_version(api_version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("weir-test")));
    let header_version = ApiKey::try_from(api_key)
        .map(|key| key.request_header_version(api_version))
        .unwrap_or(1);
    let mut payload = BytesMut::new();
    header.encode(&mut payload, header_version).unwrap();
    payload.put_slice(body);
    let mut out = (payload.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&payload);
    out
}

fn encoded<M: Encodable>(message: &M, version: i16) -> Vec<u8> {
    let mut out = BytesMut::new();
    message.encode(&mut out, version).unwrap();
    out.to_vec()
}

fn api_versions_request(version: i16, correlation_id: i32) -> Vec<u8> {
    let body = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("weir-test"))
        .with_client_software_version(StrBytes::from_static_str("0.1.0"));
    frame(
        ApiKey::ApiVersions as i16,
        version,
        correlation_id,
        &encoded(&body, version),
    )
}

fn metadata_request(version: i16, correlation_id: i32) -> Vec<u8> {
    frame(
        ApiKey::Metadata as i16,
        version,
        correlation_id,
        &encoded(&MetadataRequest::default(), version),
    )
}

/// The next response frame, or `None` when the listener closed the connection (EOF or
/// reset: a close with unread bytes resets).
async fn next_response(stream: &mut TcpStream) -> Option<Bytes> {
    within("a response or the close", async {
        let mut length = [0u8; 4];
        match stream.read_exact(&mut length).await {
            Ok(_) => {}
            Err(err) if closed(&err) => return None,
            Err(err) => panic!("reading a response: {err}"),
        }
        let mut payload = vec![0u8; i32::from_be_bytes(length) as usize];
        stream.read_exact(&mut payload).await.unwrap();
        Some(Bytes::from(payload))
    })
    .await
}

fn closed(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
    )
}

/// Splits a response into its header (at the version the api and version ask for) and
/// body.
fn response_header(mut payload: Bytes, api_key: ApiKey, version: i16) -> (i32, Bytes) {
    let header =
        ResponseHeader::decode(&mut payload, api_key.response_header_version(version)).unwrap();
    (header.correlation_id, payload)
}

fn decode_all<M: Decodable>(mut body: Bytes, version: i16) -> M {
    let message = M::decode(&mut body, version).unwrap();
    assert!(!body.has_remaining(), "{} bytes left over", body.len());
    message
}

async fn api_versions(
    stream: &mut TcpStream,
    version: i16,
    correlation_id: i32,
) -> ApiVersionsResponse {
    stream
        .write_all(&api_versions_request(version, correlation_id))
        .await
        .unwrap();
    let payload = next_response(stream).await.expect("an ApiVersions answer");
    let (id, body) = response_header(payload, ApiKey::ApiVersions, version);
    assert_eq!(id, correlation_id);
    decode_all(body, version)
}

fn rows(response: &ApiVersionsResponse) -> Vec<(i16, i16, i16)> {
    response
        .api_keys
        .iter()
        .map(|row| (row.api_key, row.min_version, row.max_version))
        .collect()
}

async fn assert_closed(stream: &mut TcpStream) {
    if let Some(payload) = next_response(stream).await {
        panic!("expected the close, got a {}-byte response", payload.len());
    }
}

#[tokio::test]
async fn api_versions_round_trips_at_v0_v3_and_v4() {
    let running = start(Arc::new(ApiVersionsOnly)).await;
    let expected: Vec<_> = SUPPORTED
        .iter()
        .map(|&(key, min, max)| (key as i16, min, max))
        .collect();
    for version in [0, 3, 4] {
        let mut stream = connect(&running).await;
        let response = api_versions(&mut stream, version, 100 + i32::from(version)).await;
        assert_eq!(response.error_code, 0, "v{version}");
        assert_eq!(rows(&response), expected, "v{version}");
        assert_eq!(response.throttle_time_ms, 0);
        assert!(response.supported_features.is_empty());
        assert!(response.finalized_features.is_empty());
    }
}

#[tokio::test]
async fn api_versions_above_the_served_range_is_answered_at_v0_and_the_connection_stays() {
    let running = start(Arc::new(ApiVersionsOnly)).await;
    let mut stream = connect(&running).await;
    // A v5 client: header v2, a body this listener cannot know.
    let request = frame(ApiKey::ApiVersions as i16, 5, 7, b"\x0bfuture-body\x00");
    stream.write_all(&request).await.unwrap();
    let payload = next_response(&mut stream).await.expect("an answer");
    let (id, body) = response_header(payload, ApiKey::ApiVersions, 0);
    assert_eq!(id, 7);
    let response: ApiVersionsResponse = decode_all(body, 0);
    assert_eq!(response.error_code, UNSUPPORTED_VERSION);
    assert_eq!(rows(&response), [(ApiKey::ApiVersions as i16, 0, 4)]);
    // The client retries at the highest version in that row, on the same connection.
    let response = api_versions(&mut stream, 4, 8).await;
    assert_eq!(response.error_code, 0);
}

#[tokio::test]
async fn an_unknown_api_key_or_unserved_version_closes_after_the_answers_before_it() {
    let running = start(Gated::new()).await;
    let metadata = codec_versions(ApiKey::Metadata);
    for (name, unserved) in [
        ("unknown key 1000", frame(1000, 0, 2, b"")),
        ("unknown key -1", frame(-1, 0, 2, b"")),
        (
            "Produce, not served",
            frame(ApiKey::Produce as i16, 9, 2, b""),
        ),
        (
            "Metadata above its served range",
            frame(ApiKey::Metadata as i16, metadata.max + 1, 2, b""),
        ),
    ] {
        let mut stream = connect(&running).await;
        let mut pipelined = api_versions_request(3, 1);
        pipelined.extend_from_slice(&unserved);
        pipelined.extend_from_slice(&api_versions_request(3, 3));
        stream.write_all(&pipelined).await.unwrap();
        let payload = next_response(&mut stream).await.expect(name);
        let (id, _) = response_header(payload, ApiKey::ApiVersions, 3);
        assert_eq!(id, 1, "{name}");
        assert_closed(&mut stream).await;
    }
}

#[tokio::test]
async fn an_oversize_or_negative_length_closes_the_connection_without_waiting_for_a_body() {
    let running = start(Arc::new(ApiVersionsOnly)).await;
    for length in [MAX_REQUEST_FRAME_BYTES as i32 + 1, i32::MAX, -1, i32::MIN] {
        let mut stream = connect(&running).await;
        // Only the length: a listener that waited for the body would never close.
        stream.write_all(&length.to_be_bytes()).await.unwrap();
        assert_closed(&mut stream).await;
    }
}

#[tokio::test]
async fn garbage_closes_the_connection_and_the_listener_accepts_the_next() {
    let running = start(Arc::new(ApiVersionsOnly)).await;
    let short_header = [0, 0, 0, 3, 0, 18, 0];
    let mut bad_client_id = frame(ApiKey::ApiVersions as i16, 0, 1, b"");
    bad_client_id[12] = 0x7f; // client id length 0x7f.. past the frame's end
    for garbage in [
        &b"GET / HTTP/1.1\r\nHost: weir\r\n\r\n"[..],
        &short_header[..],
        &bad_client_id[..],
        &[0, 0, 0, 0][..],
    ] {
        let mut stream = connect(&running).await;
        stream.write_all(garbage).await.unwrap();
        assert_closed(&mut stream).await;
        let mut next = connect(&running).await;
        assert_eq!(api_versions(&mut next, 3, 9).await.error_code, 0);
    }
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_when_they_finish_out_of_order() {
    let handler = Gated::new();
    let running = start(handler.clone()).await;
    let mut stream = connect(&running).await;
    let count = 10;
    let mut gates: Vec<_> = (0..count).map(|id| handler.gate(id)).collect();
    let mut pipelined = Vec::new();
    for id in 0..count {
        // Versions below and from the first flexible one (v9: response header v1).
        pipelined.extend_from_slice(&metadata_request(if id % 2 == 0 { 3 } else { 12 }, id));
    }
    stream.write_all(&pipelined).await.unwrap();
    handler
        .wait_for("all called", |s| s.called.len() == count as usize)
        .await;
    // Finish them last to first, each after the one before it has finished.
    for id in (0..count).rev() {
        gates.pop().unwrap().send(()).unwrap();
        handler
            .wait_for("finished", |s| s.finished.last() == Some(&id))
            .await;
    }
    let seen = handler.seen.borrow().clone();
    assert_eq!(seen.finished, (0..count).rev().collect::<Vec<_>>());
    for id in 0..count {
        let version = if id % 2 == 0 { 3 } else { 12 };
        let payload = next_response(&mut stream).await.expect("an answer");
        let (correlation_id, body) = response_header(payload, ApiKey::Metadata, version);
        assert_eq!(correlation_id, id);
        let response: MetadataResponse = decode_all(body, version);
        assert_eq!(response.throttle_time_ms, id);
    }
}

/// Requests that are not pipelined run one at a time, as Kafka runs every request: each
/// starts once the one before it is answered, though all were sent at once.
#[tokio::test]
async fn requests_that_run_alone_start_after_the_one_before_is_answered() {
    let handler = Arc::new(Gated::with_alone(true));
    let running = start(handler.clone()).await;
    let mut stream = connect(&running).await;
    let count = 4;
    let mut gates: Vec<_> = (0..count).map(|id| handler.gate(id)).collect();
    let mut pipelined = Vec::new();
    for id in 0..count {
        pipelined.extend_from_slice(&metadata_request(12, id));
    }
    stream.write_all(&pipelined).await.unwrap();
    // Opened first to last, each once its request is the one running.
    for id in 0..count {
        handler
            .wait_for("the next one called", |s| s.called.last() == Some(&id))
            .await;
        gates.remove(0).send(()).unwrap();
        let payload = next_response(&mut stream).await.expect("an answer");
        let (correlation_id, _) = response_header(payload, ApiKey::Metadata, 12);
        assert_eq!(correlation_id, id);
    }
    let seen = handler.seen.borrow().clone();
    assert_eq!(seen.called, (0..count).collect::<Vec<_>>());
    assert_eq!(seen.most_in_flight, 1, "never two at once: {seen:?}");
}

/// Produces and fetches are pipelined, but a fetch read while a produce of its
/// connection is in flight starts only once that produce is answered, so it sees what
/// the produce appended, as it would in Kafka.
#[tokio::test]
async fn a_fetch_after_a_produce_starts_once_the_produce_is_answered() {
    let handler = Gated::new();
    let running = start(handler.clone()).await;
    let mut stream = connect(&running).await;
    let produce = frame(
        ApiKey::Produce as i16,
        9,
        0,
        &encoded(&ProduceRequest::default().with_acks(-1), 9),
    );
    let fetch = |id| {
        frame(
            ApiKey::Fetch as i16,
            12,
            id,
            &encoded(&FetchRequest::default(), 12),
        )
    };
    // Two fetches first: with no produce in flight they run side by side.
    let first = handler.gate(10);
    stream
        .write_all(&[fetch(10), fetch(11)].concat())
        .await
        .unwrap();
    handler
        .wait_for("both fetches called", |s| s.called == [10, 11])
        .await;
    first.send(()).unwrap();
    for id in [10, 11] {
        let payload = next_response(&mut stream).await.expect("an answer");
        assert_eq!(response_header(payload, ApiKey::Fetch, 12).0, id);
    }
    // A produce held open, then a fetch: the fetch waits for the produce's answer.
    let produced = handler.gate(0);
    stream
        .write_all(&[produce, fetch(1)].concat())
        .await
        .unwrap();
    handler
        .wait_for("the produce called", |s| s.called.last() == Some(&0))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        handler.seen.borrow().called.last(),
        Some(&0),
        "the fetch started before the produce was answered"
    );
    produced.send(()).unwrap();
    let payload = next_response(&mut stream)
        .await
        .expect("the produce's answer");
    assert_eq!(response_header(payload, ApiKey::Produce, 9).0, 0);
    let payload = next_response(&mut stream)
        .await
        .expect("the fetch's answer");
    assert_eq!(response_header(payload, ApiKey::Fetch, 12).0, 1);
    assert_eq!(handler.seen.borrow().called, [10, 11, 0, 1]);
}

#[tokio::test]
async fn no_more_than_the_in_flight_limit_is_read_before_the_oldest_is_answered() {
    let handler = Gated::new();
    let running = start(handler.clone()).await;
    let mut stream = connect(&running).await;
    let limit = MAX_IN_FLIGHT_PER_CONNECTION as i32;
    let count = limit + 5;
    let mut gates: Vec<_> = (0..count).map(|id| Some(handler.gate(id))).collect();
    let pipelined: Vec<u8> = (0..count).flat_map(|id| metadata_request(4, id)).collect();
    stream.write_all(&pipelined).await.unwrap();
    handler
        .wait_for("the limit called", |s| s.called.len() >= limit as usize)
        .await;
    for id in 0..count {
        gates[id as usize].take().unwrap().send(()).unwrap();
        let payload = next_response(&mut stream).await.expect("an answer");
        assert_eq!(response_header(payload, ApiKey::Metadata, 4).0, id);
    }
    let seen = handler.seen.borrow().clone();
    assert_eq!(seen.most_in_flight, MAX_IN_FLIGHT_PER_CONNECTION);
    assert_eq!(seen.called, (0..count).collect::<Vec<_>>());
}

#[tokio::test]
async fn no_more_than_the_in_flight_bytes_are_read_before_the_oldest_is_answered() {
    let handler = Gated::new();
    // Frames just over half the budget: two fill it, the third waits for an answer.
    let limits = Limits {
        max_in_flight_request_bytes: 1000,
        ..Limits::default()
    };
    let running = start_with(handler.clone(), limits).await;
    let mut stream = connect(&running).await;
    let count = 3;
    let mut gates: Vec<_> = (0..count).map(|id| Some(handler.gate(id))).collect();
    let mut pipelined = Vec::new();
    for id in 0..count {
        let mut body = encoded(&MetadataRequest::default(), 4);
        body.resize(limits.max_in_flight_request_bytes / 2 + 1, 0);
        pipelined.extend_from_slice(&frame(ApiKey::Metadata as i16, 4, id, &body));
    }
    // One write: the listener has all three frames at once and stops after two.
    stream.write_all(&pipelined).await.unwrap();
    handler
        .wait_for("two called", |s| s.called.len() >= 2)
        .await;
    for id in 0..count {
        gates[id as usize].take().unwrap().send(()).unwrap();
        let payload = next_response(&mut stream).await.expect("an answer");
        assert_eq!(response_header(payload, ApiKey::Metadata, 4).0, id);
    }
    let seen = handler.seen.borrow().clone();
    assert_eq!(seen.most_in_flight, 2);
    assert_eq!(seen.called, [0, 1, 2]);
}

#[tokio::test]
async fn a_frame_over_a_lowered_limit_closes_the_connection() {
    let limits = Limits {
        max_request_frame_bytes: 64,
        ..Limits::default()
    };
    let running = start_with(Arc::new(ApiVersionsOnly), limits).await;
    let mut stream = connect(&running).await;
    let mut pipelined = api_versions_request(3, 1);
    assert!(pipelined.len() <= 4 + 64);
    pipelined.extend_from_slice(&65i32.to_be_bytes());
    stream.write_all(&pipelined).await.unwrap();
    let payload = next_response(&mut stream).await.expect("the answer before");
    assert_eq!(response_header(payload, ApiKey::ApiVersions, 3).0, 1);
    assert_closed(&mut stream).await;
}

#[tokio::test]
async fn a_silent_answer_sends_nothing_and_the_next_answer_follows() {
    let handler = Gated::new();
    let running = start(handler.clone()).await;
    let mut stream = connect(&running).await;
    let mut pipelined = metadata_request(9, 1000);
    pipelined.extend_from_slice(&metadata_request(9, 1));
    stream.write_all(&pipelined).await.unwrap();
    let payload = next_response(&mut stream).await.expect("an answer");
    assert_eq!(response_header(payload, ApiKey::Metadata, 9).0, 1);
}

#[tokio::test]
async fn a_handler_error_closes_the_connection_after_the_answers_before_it() {
    let handler = Gated::new();
    let running = start(handler.clone()).await;
    let mut stream = connect(&running).await;
    let mut pipelined = metadata_request(9, 1);
    pipelined.extend_from_slice(&metadata_request(9, 2000));
    pipelined.extend_from_slice(&metadata_request(9, 2));
    // A body that does not decode is an error too.
    pipelined.extend_from_slice(&frame(ApiKey::Metadata as i16, 9, 3, b"\xff"));
    stream.write_all(&pipelined).await.unwrap();
    let payload = next_response(&mut stream).await.expect("an answer");
    assert_eq!(response_header(payload, ApiKey::Metadata, 9).0, 1);
    assert_closed(&mut stream).await;

    let mut stream = connect(&running).await;
    let mut pipelined = metadata_request(9, 4);
    pipelined.extend_from_slice(&frame(ApiKey::Metadata as i16, 9, 5, b"\xff"));
    stream.write_all(&pipelined).await.unwrap();
    let payload = next_response(&mut stream).await.expect("an answer");
    assert_eq!(response_header(payload, ApiKey::Metadata, 9).0, 4);
    assert_closed(&mut stream).await;
}

#[tokio::test]
async fn stopping_answers_what_is_in_flight_then_closes_and_serve_returns() {
    let handler = Gated::new();
    let running = start(handler.clone()).await;
    let mut stream = connect(&running).await;
    let open = handler.gate(1);
    stream.write_all(&metadata_request(9, 1)).await.unwrap();
    handler.wait_for("called", |s| s.called == [1]).await;
    running.stop.send(true).unwrap();
    // A request sent after the stop is not read.
    stream.write_all(&metadata_request(9, 2)).await.unwrap();
    open.send(()).unwrap();
    let payload = next_response(&mut stream)
        .await
        .expect("the answer in flight");
    assert_eq!(response_header(payload, ApiKey::Metadata, 9).0, 1);
    assert_closed(&mut stream).await;
    within("serve returns", running.serve).await.unwrap();
    assert_eq!(handler.seen.borrow().called, [1]);
}

/// Answers ApiVersions only, and is cut off from its cluster while the test says so.
struct CutOff {
    cut_off: watch::Sender<bool>,
}

impl Handler for CutOff {
    async fn handle(&self, _: &ConnectionInfo, request: Request) -> Result<Response, HandlerError> {
        panic!("{:?} is not served", request.api_key);
    }

    fn is_cut_off(&self) -> bool {
        *self.cut_off.borrow()
    }

    async fn until_cut_off(&self) {
        let mut cut_off = self.cut_off.subscribe();
        let _ = cut_off.wait_for(|c| *c).await;
    }
}

#[tokio::test]
async fn a_cut_off_broker_closes_its_connections_and_turns_new_ones_away_until_it_is_back() {
    let handler = Arc::new(CutOff {
        cut_off: watch::Sender::new(false),
    });
    let running = start(handler.clone()).await;
    let mut open = connect(&running).await;
    assert_eq!(api_versions(&mut open, 3, 1).await.error_code, 0);

    handler.cut_off.send_replace(true);
    assert_closed(&mut open).await;
    // Accepted (the listener is up) and closed before any answer.
    for _ in 0..3 {
        let mut turned_away = connect(&running).await;
        let _ = turned_away.write_all(&api_versions_request(3, 2)).await;
        assert_closed(&mut turned_away).await;
    }

    handler.cut_off.send_replace(false);
    let mut back = connect(&running).await;
    assert_eq!(api_versions(&mut back, 3, 3).await.error_code, 0);
    // And it stays open.
    assert_eq!(api_versions(&mut back, 3, 4).await.error_code, 0);
}

/// Answers Metadata with the principal of the connection's client certificate, if any,
/// as the cluster id.
struct Whoami;

impl Handler for Whoami {
    fn supported_apis(&self) -> &[(ApiKey, i16, i16)] {
        &[(ApiKey::ApiVersions, 0, 4), (ApiKey::Metadata, 9, 9)]
    }

    async fn handle(
        &self,
        connection: &ConnectionInfo,
        request: Request,
    ) -> Result<Response, HandlerError> {
        let _: MetadataRequest = request.decode_body()?;
        assert!(connection.tls);
        let principal = connection.certificate_principal.clone();
        Response::encode(
            &MetadataResponse::default().with_cluster_id(principal.map(StrBytes::from_string)),
            request.api_version,
        )
    }
}

/// A TLS Kafka listener with mutual TLS (`weir dev certs` in a temporary directory)
/// served by `handler`: its address and the certificates' directory.
async fn tls_listener<H: Handler>(handler: Arc<H>) -> (std::net::SocketAddr, tempfile::TempDir) {
    use weir_security::tls::{ServerTls, TlsFiles};

    let dir = tempfile::tempdir().unwrap();
    weir_security::certs::generate(&[])
        .unwrap()
        .write(dir.path())
        .unwrap();
    let path = |name: &str| dir.path().join(name);
    let tls = ServerTls::load(
        "kafka",
        TlsFiles {
            cert: path("node.pem"),
            key: path("node-key.pem"),
            client_ca: Some(path("ca.pem")),
        },
        &[],
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopping) = watch::channel(false);
    // The listener serves until the test's runtime ends.
    std::mem::forget(stop);
    let options = weir_kafka::Options {
        tls: Some(tls),
        ..Default::default()
    };
    tokio::spawn(weir_kafka::serve_with(listener, handler, stopping, options));
    (addr, dir)
}

/// A Metadata request over TLS, with the client certificate `identity` (a `weir dev
/// certs` stem) or none: the cluster id answered, or `Err` if the connection was closed
/// without an answer.
async fn metadata_over_tls(
    addr: std::net::SocketAddr,
    dir: &std::path::Path,
    identity: Option<&str>,
) -> Result<Option<String>, io::Error> {
    use tokio_rustls::TlsConnector;
    use tokio_rustls::rustls::pki_types::ServerName;
    use weir_security::tls::client_config;

    let identity = identity.map(|stem| {
        (
            dir.join(format!("{stem}.pem")),
            dir.join(format!("{stem}-key.pem")),
        )
    });
    let config = client_config(
        &dir.join("ca.pem"),
        identity.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
        &[],
    )
    .unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut stream = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    stream.write_all(&metadata_request(9, 5)).await?;
    let mut length = [0u8; 4];
    within("an answer over TLS", stream.read_exact(&mut length)).await?;
    let mut payload = vec![0u8; i32::from_be_bytes(length) as usize];
    stream.read_exact(&mut payload).await?;
    let (id, body) = response_header(Bytes::from(payload), ApiKey::Metadata, 9);
    assert_eq!(id, 5);
    let response: MetadataResponse = decode_all(body, 9);
    Ok(response.cluster_id.map(|c| c.to_string()))
}

#[tokio::test]
async fn over_tls_requests_are_answered_a_certificate_names_the_principal_and_plaintext_is_closed()
{
    let (addr, dir) = tls_listener(Arc::new(Whoami)).await;
    assert_eq!(
        metadata_over_tls(addr, dir.path(), Some("client"))
            .await
            .unwrap(),
        Some("client".to_owned())
    );
    assert_eq!(
        metadata_over_tls(addr, dir.path(), None).await.unwrap(),
        None
    );

    // A Kafka client that speaks plaintext: closed, nothing answered.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain.write_all(&api_versions_request(3, 1)).await.unwrap();
    assert_closed(&mut plain).await;
}

/// Refuses the certificate naming `client` and takes any other as `User:<name>-checked`,
/// as the core decides what a certificate proves.
struct Picky;

impl weir_kafka::sasl::SaslAuthority for Picky {
    fn required(&self) -> bool {
        false
    }

    fn start(
        &self,
        _: &ConnectionInfo,
        _: &str,
    ) -> Result<weir_broker::authn::Exchange, weir_broker::BrokerError> {
        Err(weir_broker::BrokerError::new(
            weir_broker::Reason::UnsupportedMechanism,
            "no SASL here",
        ))
    }

    fn step<'a>(
        &'a self,
        _: &'a ConnectionInfo,
        _: &'a mut weir_broker::authn::Exchange,
        _: &'a [u8],
    ) -> weir_kafka::sasl::StepFuture<'a> {
        unreachable!("no exchange starts")
    }

    fn certificate<'a>(
        &'a self,
        ctx: &'a weir_broker::RequestContext,
        principal: String,
    ) -> weir_kafka::sasl::CertificateFuture<'a> {
        assert!(ctx.peer.is_some_and(|p| p.ip().is_loopback()));
        Box::pin(async move {
            if principal == "client" {
                return Err(weir_broker::BrokerError::new(
                    weir_broker::Reason::AuthenticationFailed,
                    "not this one",
                ));
            }
            Ok(weir_broker::authn::Authenticated {
                user: format!("{principal}-checked"),
                mechanism: weir_broker::authn::Mechanism::Certificate,
            })
        })
    }
}

/// [`Whoami`] whose certificates are decided by [`Picky`].
struct PickyWhoami;

impl Handler for PickyWhoami {
    fn supported_apis(&self) -> &[(ApiKey, i16, i16)] {
        Whoami.supported_apis()
    }

    async fn handle(
        &self,
        connection: &ConnectionInfo,
        request: Request,
    ) -> Result<Response, HandlerError> {
        Whoami.handle(connection, request).await
    }

    fn sasl(&self) -> Option<&dyn weir_kafka::sasl::SaslAuthority> {
        Some(&Picky)
    }
}

#[tokio::test]
async fn a_certificate_is_the_principal_the_authority_makes_of_it_and_a_refused_one_closes() {
    let (addr, dir) = tls_listener(Arc::new(PickyWhoami)).await;
    assert_eq!(
        metadata_over_tls(addr, dir.path(), Some("admin"))
            .await
            .unwrap(),
        Some("admin-checked".to_owned())
    );
    // The handshake succeeds (the chain is good); the connection is then closed unanswered.
    assert!(
        metadata_over_tls(addr, dir.path(), Some("client"))
            .await
            .is_err()
    );
    // No certificate: nothing to refuse.
    assert_eq!(
        metadata_over_tls(addr, dir.path(), None).await.unwrap(),
        None
    );
}

/// [`start_with`] with a broker-wide budget shared with whoever else holds it.
async fn start_budgeted<H: Handler>(
    handler: Arc<H>,
    budget: Arc<weir_broker::budget::Budget>,
) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopping) = watch::channel(false);
    let options = weir_kafka::Options {
        budget,
        ..Default::default()
    };
    let serve = tokio::spawn(weir_kafka::serve_with(listener, handler, stopping, options));
    Running { addr, stop, serve }
}

fn budget(connections: usize, bytes: usize) -> Arc<weir_broker::budget::Budget> {
    Arc::new(weir_broker::budget::Budget::new(
        weir_broker::budget::BudgetLimits {
            max_connections: connections,
            max_in_flight_request_bytes: bytes,
            max_consume_streams: 1,
        },
    ))
}

#[tokio::test]
async fn the_broker_wide_request_budget_holds_back_another_connection_until_an_answer() {
    let handler = Gated::new();
    let budget = budget(10, 1000);
    let running = start_budgeted(handler.clone(), budget.clone()).await;
    let mut first = connect(&running).await;
    let mut second = connect(&running).await;
    let request = |id| {
        let mut body = encoded(&MetadataRequest::default(), 4);
        body.resize(600, 0);
        frame(ApiKey::Metadata as i16, 4, id, &body)
    };
    let open_first = handler.gate(0);
    first.write_all(&request(0)).await.unwrap();
    handler
        .wait_for("the first called", |s| s.called == [0])
        .await;
    // The frame after its length prefix: header and body.
    assert_eq!(budget.in_flight_request_bytes(), request(0).len() - 4);
    // The second connection's frame does not fit beside the first: it is not read.
    second.write_all(&request(1)).await.unwrap();
    let waited = tokio::time::timeout(
        Duration::from_millis(300),
        handler.wait_for("never", |s| s.called.len() > 1),
    );
    assert!(waited.await.is_err(), "{:?}", handler.seen.borrow());
    open_first.send(()).unwrap();
    let payload = next_response(&mut first).await.expect("the first answer");
    assert_eq!(response_header(payload, ApiKey::Metadata, 4).0, 0);
    let payload = next_response(&mut second).await.expect("the second answer");
    assert_eq!(response_header(payload, ApiKey::Metadata, 4).0, 1);
    assert_eq!(handler.seen.borrow().most_in_flight, 1);
    within("the budget emptied", async {
        while budget.in_flight_request_bytes() != 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_at_once_and_the_others_served() {
    let budget = budget(2, 1 << 20);
    let running = start_budgeted(Arc::new(ApiVersionsOnly), budget.clone()).await;
    let mut first = connect(&running).await;
    let mut second = connect(&running).await;
    // Answered: the listener has taken both connections' slots.
    for stream in [&mut first, &mut second] {
        api_versions(stream, 3, 1).await;
    }
    let mut third = connect(&running).await;
    assert_closed(&mut third).await;
    assert_eq!(budget.refused_connections(), 1);
    api_versions(&mut first, 3, 2).await;
    drop(second);
    // Its slot comes back once the listener sees it closed.
    let mut fourth = within("a connection let in again", async {
        loop {
            let mut stream = connect(&running).await;
            // Refused ones may be reset before the write.
            let written = stream.write_all(&api_versions_request(3, 3)).await;
            if written.is_ok() && next_response(&mut stream).await.is_some() {
                return stream;
            }
        }
    })
    .await;
    api_versions(&mut fourth, 3, 4).await;
    assert_eq!(budget.connections(), 2);
}
