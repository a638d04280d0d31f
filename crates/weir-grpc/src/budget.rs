//! The gRPC client listeners' side of the broker-wide budget (weir-broker's `budget`,
//! shared with the Kafka listeners):
//!
//! - [`capped`]: the listener's incoming connections, each holding a connection slot
//!   while it lives; at `max_connections` a new one is dropped as soon as it is accepted
//!   (the client sees the connection close: UNAVAILABLE, retried).
//! - [`RequestBudgetLayer`]: a tower layer that takes room for each request message from
//!   `max_in_flight_request_bytes` as the message's gRPC length prefix arrives, before
//!   tonic buffers the message, and gives it back once the call has its answer. While
//!   there is no room the request body is not read, so HTTP/2 flow control makes the
//!   client wait (what is held meanwhile is one HTTP/2 frame, plus what the stream and
//!   connection windows let the client send ahead).
//!
//! ProduceStream takes its room per request where it reads them (`produce.rs`: a
//! stream's messages are answered one by one, not when the call ends); the internal
//! services (replication, controller, quorum) take none, so `acks=all` appends waiting on
//! followers can never wait on the budget they hold.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use futures_util::{Stream, StreamExt};
use http_body::Frame;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::Status;
use tonic::body::Body;
use tonic::transport::server::Connected;
use weir_broker::budget::{Budget, ConnectionPermit, RequestBytesPermit};
use weir_broker::listener_kit::{OpenConnection, Refusal};

/// Bytes of a gRPC message's prefix: a compression flag and a 4-byte length.
const GRPC_PREFIX_BYTES: usize = 5;

/// Calls that take no room from the request-byte budget: see the module docs.
fn exempt(path: &str) -> bool {
    path == "/weir.v1.Producer/ProduceStream"
        || path.starts_with("/weir.internal.")
        || path.starts_with("/grpc.health.")
        || path.starts_with("/grpc.reflection.")
}

/// An accepted connection with its place under `max_connections`, counted open on its
/// listener (`weir_listener_connections_open`) while it lives.
#[derive(Debug)]
pub(crate) struct Capped<IO> {
    io: IO,
    _slot: ConnectionPermit,
    _open: OpenConnection,
}

/// `incoming`'s connections, each taking a slot from `budget` (dropped at once when
/// there is none), counted in the listener counters the listener kit's listeners count
/// into (accepted, open, refused at `max_connections`), so a gRPC listener shows on
/// `/metrics` as the Kafka and AMQP ones do. A failed TLS handshake never reaches this
/// stream (weir-security's `incoming` drops it), so gRPC has no `tls` refusals.
pub(crate) fn capped<S, IO, E>(
    incoming: S,
    budget: Arc<Budget>,
    listener: &'static str,
) -> impl Stream<Item = Result<Capped<IO>, E>> + Send + 'static
where
    S: Stream<Item = Result<IO, E>> + Send + 'static,
    IO: Send + 'static,
    E: Send + 'static,
{
    incoming.filter_map(move |accepted| {
        let slot = match &accepted {
            Ok(_) => budget.try_connection(listener),
            Err(_) => None,
        };
        let counts = budget.listener_counts();
        std::future::ready(match (accepted, slot) {
            (Ok(io), Some(slot)) => Some(Ok(Capped {
                io,
                _slot: slot,
                _open: counts.opened(listener),
            })),
            // Dropped: the client sees its connection close.
            (Ok(_), None) => {
                counts.refused(listener, Refusal::MaxConnections);
                None
            }
            (Err(e), _) => Some(Err(e)),
        })
    })
}

impl<IO: Connected> Connected for Capped<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Capped<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Capped<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Where a request body is in its gRPC framing: how many bytes of the current message
/// are still to come, and the prefix bytes of the next one seen so far.
#[derive(Debug, Default)]
struct Framing {
    remaining: usize,
    prefix: Vec<u8>,
}

impl Framing {
    /// Consumes `data`; returns the bytes (prefix included) of the messages whose prefix
    /// completed in it.
    fn feed(&mut self, mut data: &[u8]) -> usize {
        let mut started: usize = 0;
        while !data.is_empty() {
            if self.remaining > 0 {
                let n = self.remaining.min(data.len());
                self.remaining -= n;
                data = &data[n..];
                continue;
            }
            let n = (GRPC_PREFIX_BYTES - self.prefix.len()).min(data.len());
            self.prefix.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.prefix.len() == GRPC_PREFIX_BYTES {
                let length = u32::from_be_bytes(
                    self.prefix[1..GRPC_PREFIX_BYTES]
                        .try_into()
                        .expect("4 bytes"),
                ) as usize;
                self.prefix.clear();
                self.remaining = length;
                started = started.saturating_add(GRPC_PREFIX_BYTES.saturating_add(length));
            }
        }
        started
    }
}

/// The room a call's request holds; given back when the call has its answer.
#[derive(Debug, Default)]
struct Held {
    permits: Vec<RequestBytesPermit>,
    answered: bool,
}

type Acquiring = Pin<Box<dyn Future<Output = RequestBytesPermit> + Send>>;

/// A request body that waits for room in the budget before passing on a frame that
/// starts a message.
struct BudgetedBody {
    inner: Body,
    budget: Arc<Budget>,
    framing: Framing,
    held: Arc<Mutex<Held>>,
    /// The frame waiting for room, and the wait.
    waiting: Option<(Frame<Bytes>, Acquiring)>,
}

impl BudgetedBody {
    fn keep(&self, permit: RequestBytesPermit) {
        let mut held = self.held.lock().expect("budget lock");
        // After the answer (a streaming request's later messages) the wait was the point.
        if !held.answered {
            held.permits.push(permit);
        }
    }
}

impl http_body::Body for BudgetedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        if let Some((_, acquiring)) = &mut this.waiting {
            let permit = ready!(acquiring.as_mut().poll(cx));
            let (frame, _) = this.waiting.take().expect("waiting");
            this.keep(permit);
            return Poll::Ready(Some(Ok(frame)));
        }
        let frame = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            other => return Poll::Ready(other),
        };
        let Some(data) = frame.data_ref() else {
            return Poll::Ready(Some(Ok(frame)));
        };
        let started = this.framing.feed(data.chunk());
        if started == 0 {
            return Poll::Ready(Some(Ok(frame)));
        }
        if let Some(permit) = this.budget.try_request_bytes(started) {
            this.keep(permit);
            return Poll::Ready(Some(Ok(frame)));
        }
        let budget = this.budget.clone();
        let mut acquiring: Acquiring = Box::pin(async move { budget.request_bytes(started).await });
        match acquiring.as_mut().poll(cx) {
            Poll::Ready(permit) => {
                this.keep(permit);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                this.waiting = Some((frame, acquiring));
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.waiting.is_none() && self.inner.is_end_stream()
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub(crate) struct RequestBudgetLayer {
    pub(crate) budget: Arc<Budget>,
}

impl<S> tower::Layer<S> for RequestBudgetLayer {
    type Service = RequestBudgetService<S>;

    fn layer(&self, inner: S) -> RequestBudgetService<S> {
        RequestBudgetService {
            inner,
            budget: self.budget.clone(),
        }
    }
}

/// See [`RequestBudgetLayer`].
#[derive(Debug, Clone)]
pub(crate) struct RequestBudgetService<S> {
    inner: S,
    budget: Arc<Budget>,
}

impl<S, B> tower::Service<http::Request<Body>> for RequestBudgetService<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<B>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<B>;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<http::Response<B>, S::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if exempt(request.uri().path()) {
            return Box::pin(self.inner.call(request));
        }
        let held = Arc::new(Mutex::new(Held::default()));
        let budget = self.budget.clone();
        let body_held = held.clone();
        let request = request.map(|inner| {
            Body::new(BudgetedBody {
                inner,
                budget,
                framing: Framing::default(),
                held: body_held,
                waiting: None,
            })
        });
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await;
            let mut held = held.lock().expect("budget lock");
            held.answered = true;
            held.permits.clear();
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(length: u32) -> Vec<u8> {
        let mut m = vec![0];
        m.extend_from_slice(&length.to_be_bytes());
        m.extend(std::iter::repeat_n(7u8, length as usize));
        m
    }

    #[test]
    fn framing_counts_each_message_once_however_frames_split_it() {
        let mut wire = message(10);
        wire.extend(message(0));
        wire.extend(message(300));
        let total = wire.len();
        for step in [1, 2, 5, 7, 64, total] {
            let mut framing = Framing::default();
            let counted: usize = wire.chunks(step).map(|c| framing.feed(c)).sum();
            assert_eq!(counted, total, "step {step}");
        }
    }

    #[test]
    fn only_the_client_data_path_is_budgeted_here() {
        assert!(!exempt("/weir.v1.Producer/Produce"));
        assert!(!exempt("/weir.v1.Consumer/Consume"));
        assert!(exempt("/weir.v1.Producer/ProduceStream"));
        assert!(exempt("/weir.internal.v1.Replication/FetchSession"));
    }
}
