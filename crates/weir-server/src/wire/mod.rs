//! An experimental binary TCP data path beside gRPC, for measurement: how much of a
//! produce's or a fetch's cost is gRPC's (HTTP/2 framing, flow control, protobuf) and how
//! much the broker's own (validation, CRC, the log).
//!
//! Off by default (`wire_listen` in [`crate::ServerConfig`], `weir serve
//! --experimental-wire-listen`). It serves PRODUCE and FETCH of one partition per
//! request, on this broker, through the same code as the gRPC services:
//! [`crate::produce::submit`] and `finish` for a produce, [`crate::consume::fetch_one`]
//! (raw batches) for a fetch. There is no authentication, no metadata, no leader routing
//! (a request to a partition this broker does not lead gets the same NOT_LEADER error a
//! gRPC one would) and no long-poll (a fetch at the high watermark answers at once with
//! no batches). The frames are described in `frame`.
//!
//! One task per connection reads frames into a `BytesMut` and splits each off frozen, so
//! a PRODUCE's batches reach the log as a slice of the read buffer. Up to
//! [`MAX_IN_FLIGHT_PER_STREAM`] requests are in flight per connection (as on a
//! ProduceStream); beyond that the task stops reading and TCP slows the client. Answers
//! go back in request order, a FETCH's batches written after their head with one
//! vectored write, uncopied. A frame that cannot be read (too large, too short, an
//! unknown kind, a malformed body) is answered, after the requests before it, with an
//! ERROR frame, and the connection closes.

mod frame;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use frame::{BadFrame, Fetch, Head, LENGTH_BYTES, Produce, Request, WireAcks};
pub use frame::{FRAME_HEAD_ALLOWANCE, MAX_FETCH_BYTES};

use weir_broker::{BrokerError, RequestContext, produce};

use crate::consume::{self, DEFAULT_PARTITION_FETCH_BYTES};
use crate::produce::MAX_IN_FLIGHT_PER_STREAM;
use crate::{Broker, status};

/// Bytes a connection's read buffer gets when it needs room and no frame says how much.
const READ_BUFFER_BYTES: usize = 1024 * 1024;
/// Wait before accepting again after accept failed (out of file descriptors, say).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// Longest a stopping broker waits for wire connections to answer what they read.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// One answer, written in request order: a head, then (FETCH) the batches.
struct Answer {
    head: Bytes,
    body: Bytes,
    /// An ERROR frame: the connection closes after it.
    close: bool,
}

type Pending = Pin<Box<dyn Future<Output = Answer> + Send>>;

/// Accepts connections until shutdown starts, then waits (at most [`DRAIN_TIMEOUT`]) for
/// them to answer what they read.
pub(crate) async fn serve(
    broker: Arc<Broker>,
    listener: TcpListener,
    mut stopping: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = crate::until_stopping(&mut stopping) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(connection(broker.clone(), stream, peer));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "wire listener: accept failed");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            "wire connections still open after the drain timeout; closing them"
        );
        connections.abort_all();
    }
}

async fn connection(broker: Arc<Broker>, stream: TcpStream, peer: SocketAddr) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(%peer, error = %e, "wire connection: TCP_NODELAY failed");
    }
    if let Err(e) = run(broker, stream).await {
        tracing::debug!(%peer, error = %e, "wire connection ended with an error");
    }
}

/// Serves one connection until the client closes it, a bad frame, or shutdown.
async fn run(broker: Arc<Broker>, stream: TcpStream) -> std::io::Result<()> {
    let (mut reader, mut writer) = stream.into_split();
    let limit = broker
        .core
        .max_request_bytes()
        .saturating_add(FRAME_HEAD_ALLOWANCE);
    let mut buf = BytesMut::with_capacity(READ_BUFFER_BYTES);
    let mut in_flight: FuturesOrdered<Pending> = FuturesOrdered::new();
    let mut shutdown = broker.core.shutdown_signal();
    let mut reading = true;
    loop {
        // Every whole frame buffered, while there is room in flight.
        while reading && in_flight.len() < MAX_IN_FLIGHT_PER_STREAM {
            match frame::head(&buf, limit) {
                None => break,
                Some(Err((head, bad))) => {
                    in_flight.push_back(refused(head.correlation_id, bad));
                    reading = false;
                }
                Some(Ok(head)) => {
                    let total = LENGTH_BYTES + head.length;
                    if buf.len() < total {
                        // The frame is checked against the limit: room for all of it.
                        buf.reserve(total - buf.len());
                        break;
                    }
                    let mut whole = buf.split_to(total);
                    whole.advance(LENGTH_BYTES);
                    match frame::request(head, whole.freeze()) {
                        Ok(request) => in_flight.push_back(handle(&broker, head, request).await),
                        Err(bad) => {
                            in_flight.push_back(refused(head.correlation_id, bad));
                            reading = false;
                        }
                    }
                }
            }
        }
        if !reading && in_flight.is_empty() {
            break;
        }
        if buf.capacity() == buf.len() {
            buf.reserve(READ_BUFFER_BYTES);
        }
        tokio::select! {
            biased;
            Some(answer) = in_flight.next(), if !in_flight.is_empty() => {
                let mut out = answer.head.chain(answer.body);
                writer.write_all_buf(&mut out).await?;
                if answer.close {
                    break;
                }
            }
            () = crate::until_stopping(&mut shutdown), if reading => reading = false,
            read = reader.read_buf(&mut buf), if reading && in_flight.len() < MAX_IN_FLIGHT_PER_STREAM => {
                if read? == 0 {
                    if !buf.is_empty() {
                        tracing::debug!(bytes = buf.len(), "wire connection closed inside a frame");
                    }
                    reading = false;
                }
            }
        }
    }
    writer.shutdown().await
}

/// An ERROR answer for a frame that could not be read.
fn refused(correlation_id: u64, bad: BadFrame) -> Pending {
    Box::pin(std::future::ready(Answer {
        head: frame::error(correlation_id, &bad),
        body: Bytes::new(),
        close: true,
    }))
}

/// Starts `request`: a produce is checked and queued on its partition here, in read
/// order (as on a ProduceStream); its answer, and a fetch, complete in the returned
/// future.
async fn handle(broker: &Arc<Broker>, head: Head, request: Request) -> Pending {
    let id = head.correlation_id;
    match request {
        Request::Produce(p) => submit(broker, id, p).await,
        Request::Fetch(f) => Box::pin(fetch(broker.clone(), id, f)),
    }
}

fn produce_answer(id: u64, code: u32, base_offset: i64, message: &str) -> Answer {
    Answer {
        head: frame::produce_response(id, code, base_offset, message),
        body: Bytes::new(),
        close: false,
    }
}

async fn submit(broker: &Arc<Broker>, id: u64, p: Produce) -> Pending {
    let ctx = RequestContext::anonymous(weir_broker::Listener::Wire, None);
    let request = produce::ProduceRequest {
        topic: p.topic,
        acks: match p.acks {
            WireAcks::None => produce::Acks::None,
            WireAcks::Leader => produce::Acks::Leader,
            WireAcks::All => produce::Acks::All,
        },
        timeout: (p.timeout_ms > 0).then(|| Duration::from_millis(p.timeout_ms.into())),
        partitions: vec![produce::PartitionProduce {
            partition: p.partition,
            data: Ok(produce::ProduceData::Batches {
                bytes: p.batches,
                compression: None,
            }),
        }],
    };
    let code = |e: &BrokerError| status::code(&e.reason) as u32;
    match produce::submit(&broker.core, &ctx, request).await {
        Ok(pending) => Box::pin(async move {
            match pending.finish().await.pop().map(|r| r.outcome) {
                Some(Ok(appended)) => produce_answer(id, 0, appended.base_offset, ""),
                Some(Err(e)) => produce_answer(id, code(&e), -1, &e.message),
                None => produce_answer(
                    id,
                    tonic::Code::Internal as u32,
                    -1,
                    "the produce answered no partition",
                ),
            }
        }),
        Err(e) => Box::pin(std::future::ready(produce_answer(
            id,
            code(&e),
            -1,
            &e.message,
        ))),
    }
}

/// A FETCH: the partition's stored batches from `offset`, through the core's fetch.
async fn fetch(broker: Arc<Broker>, id: u64, f: Fetch) -> Answer {
    let answer = |code: u32, high_watermark: i64, next_offset: i64, message: &str, batches| {
        let head = frame::fetch_response_head(
            id,
            code,
            high_watermark,
            next_offset,
            message,
            Bytes::len(&batches),
        );
        Answer {
            head,
            body: batches,
            close: false,
        }
    };
    let ctx = RequestContext::anonymous(weir_broker::Listener::Wire, None);
    let max_bytes = match f.max_bytes {
        0 => DEFAULT_PARTITION_FETCH_BYTES,
        n => n as usize,
    }
    .min(MAX_FETCH_BYTES);
    let code = |e: &BrokerError| status::code(&e.reason) as u32;
    match consume::fetch_raw(&broker, &ctx, &f.topic, f.partition, f.offset, max_bytes).await {
        Err(e) => answer(code(&e), -1, f.offset, &e.message, Bytes::new()),
        Ok(result) => match result.data {
            Err(e) => answer(
                code(&e),
                result.high_watermark,
                f.offset,
                &e.message,
                Bytes::new(),
            ),
            Ok(None) => answer(0, result.high_watermark, f.offset, "", Bytes::new()),
            Ok(Some(data)) => answer(0, result.high_watermark, data.next_offset, "", data.records),
        },
    }
}
