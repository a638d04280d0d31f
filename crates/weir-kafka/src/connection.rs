//! The listener: [`serve`] accepts connections, and one task per connection reads request
//! frames, dispatches them (ApiVersions to [`apis`], the rest to the [`Handler`]), keeps up
//! to [`MAX_IN_FLIGHT_PER_CONNECTION`] requests (and
//! [`MAX_IN_FLIGHT_REQUEST_BYTES_PER_CONNECTION`] bytes of them) in flight and writes the
//! answers in request order: in-memory chunks with vectored writes, record batches left
//! in their segment files ([`Chunk::File`]) with `sendfile` on a plain socket. A request
//! the handler does not pipeline ([`Handler::pipelined`]) runs alone, as Kafka runs
//! each: after every request before it is answered, and before the next is read. So
//! does a fetch read while a produce of the connection is in flight, so that it sees
//! what the produce appended.
//!
//! What closes a connection, after the answers to the requests before it are written
//! (Kafka's `SocketServer` closes it for each): a frame that cannot be read (negative or
//! oversize length, truncated), a header that does not decode, an unknown api key, an api
//! or version that is not served (except ApiVersions, see [`apis::answer_api_versions`]),
//! and a [`HandlerError`]. Each is one `warn` line with the peer and the reason. The
//! listener kit's close signal (the broker stopping, or cut off from its cluster:
//! [`Handler::is_cut_off`]) stops the reading the same way, quietly.
//!
//! Accepting is the listener kit's (`weir_broker::listener_kit`, [`serve_with`]): a
//! connection slot from [`Options::budget`] (weir-broker's broker-wide budget, shared
//! with the other listeners; at the cap a new connection is closed at once), new
//! connections turned away while the broker is cut off, TLS with [`Options::tls`]
//! (weir-security's `tls::accept`: plaintext is refused and logged there), and a client
//! certificate's principal checked by the core ([`SaslAuthority::certificate`]) before
//! it names the connection ([`ConnectionInfo::certificate_principal`]). The budget also
//! caps the request bytes in flight: a frame's length is read first, room for it is
//! taken from the budget (waiting, so TCP makes the client wait) and given back once
//! its answer is written.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::future::{self, Either, FutureExt};
use futures_util::stream::{FuturesOrdered, StreamExt};
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use kafka_protocol::protocol::Encodable;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use weir_broker::authn::Authenticated;
use weir_broker::budget::{Budget, RequestBytesPermit};
use weir_broker::fetch::FileSlice;
use weir_broker::listener_kit::{self, Closing, Connection, ConnectionHandler, WriteHalf};
use weir_broker::{BrokerError, Listener, RequestContext};
use weir_security::tls::ServerTls;

use crate::apis;
use crate::frame::{self, MAX_REQUEST_FRAME_BYTES, Request};
use crate::handler::{Chunk, ConnectionInfo, Handler, HandlerError, Response};
use crate::sasl::{self, SaslAuthority, SaslState};

/// How many requests of one connection are decoded and not yet answered at most. Kafka
/// clients pipeline (librdkafka sends many produce requests before the first answer);
/// past this the listener stops reading the connection until the oldest is answered.
pub const MAX_IN_FLIGHT_PER_CONNECTION: usize = 64;

/// How many bytes of request frames one connection has in flight before the listener
/// stops reading it (it always reads one request when none is in flight, so a frame up
/// to [`MAX_REQUEST_FRAME_BYTES`] still gets in). With the frame being read, this bounds
/// a connection's request memory to this plus one frame, where the count alone would
/// allow 64 frames of 100 MiB.
pub const MAX_IN_FLIGHT_REQUEST_BYTES_PER_CONNECTION: usize = 64 * 1024 * 1024;

/// The bounds of one connection: the defaults are the named constants; a broker may
/// lower them (or raise the frame limit, as Kafka's `socket.request.max.bytes` allows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest request frame, after the length prefix.
    pub max_request_frame_bytes: usize,
    /// Requests decoded and not yet answered.
    pub max_in_flight: usize,
    /// Bytes of request frames decoded and not yet answered.
    pub max_in_flight_request_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_frame_bytes: MAX_REQUEST_FRAME_BYTES,
            max_in_flight: MAX_IN_FLIGHT_PER_CONNECTION,
            max_in_flight_request_bytes: MAX_IN_FLIGHT_REQUEST_BYTES_PER_CONNECTION,
        }
    }
}

/// How a listener serves its connections.
#[derive(Debug, Clone)]
pub struct Options {
    pub limits: Limits,
    /// TLS on every connection; `None`: plaintext.
    pub tls: Option<Arc<ServerTls>>,
    /// The broker-wide budget this listener takes connections and request bytes from
    /// (the default: no caps).
    pub budget: Arc<Budget>,
    /// The listener, as logs and the per-listener connection counters name it (the
    /// default: [`Listener::KAFKA`]).
    pub listener: Listener,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            limits: Limits::default(),
            tls: None,
            budget: Arc::default(),
            listener: Listener::KAFKA,
        }
    }
}

/// Accepts Kafka connections on `listener` until `stopping` turns true (or its sender is
/// dropped), then stops reading new requests on every connection, answers what is in
/// flight, closes the connections and returns.
///
/// Panics if `handler.supported_apis()` is not a table kafka-protocol can serve
/// ([`apis::check_table`]): that is a bug in the handler.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    stopping: watch::Receiver<bool>,
) {
    serve_with_limits(listener, handler, stopping, Limits::default()).await;
}

/// [`serve`] with other [`Limits`] than the defaults.
pub async fn serve_with_limits<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    stopping: watch::Receiver<bool>,
    limits: Limits,
) {
    let options = Options {
        limits,
        ..Options::default()
    };
    serve_with(listener, handler, stopping, options).await;
}

/// [`serve`] with other [`Options`] than the defaults: the listener kit
/// (`weir_broker::listener_kit`) accepts, admits and closes the connections; each is
/// served by [`connection`].
pub async fn serve_with<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    stopping: watch::Receiver<bool>,
    options: Options,
) {
    let Options {
        limits,
        tls,
        budget,
        listener: name,
    } = options;
    assert!(
        limits.max_in_flight > 0 && limits.max_in_flight_request_bytes > 0,
        "a connection must be able to have a request in flight: {limits:?}"
    );
    if let Err(err) = apis::check_table(handler.supported_apis()) {
        panic!("the Kafka handler's table of served versions cannot be served: {err}");
    }
    let kit = listener_kit::Options {
        listener: name,
        tls,
        budget: budget.clone(),
        // Kafka's clients keep idle connections (a producer between batches); Kafka's
        // `connections.max.idle.ms` is not served.
        idle_timeout: None,
    };
    let connections = Arc::new(KafkaConnections {
        handler,
        limits,
        budget,
    });
    listener_kit::serve(listener, connections, stopping, kit).await;
}

/// A Kafka listener's side of the listener kit: each admitted connection served by
/// [`connection`], the kit's questions answered by the [`Handler`].
struct KafkaConnections<H> {
    handler: Arc<H>,
    limits: Limits,
    budget: Arc<Budget>,
}

impl<H: Handler> ConnectionHandler for KafkaConnections<H> {
    async fn serve(&self, admitted: Connection, closing: Closing) {
        let info = ConnectionInfo {
            id: admitted.id,
            peer: admitted.peer,
            local: admitted.local,
            tls: admitted.stream.is_tls(),
            certificate_principal: admitted.certificate.map(|user| user.user),
            sasl_principal: std::sync::OnceLock::new(),
        };
        // Split so the writer can reach a plain socket for `sendfile`.
        let (reader, writer) = admitted.stream.into_split();
        connection(
            reader,
            writer,
            info,
            &*self.handler,
            closing,
            self.limits,
            &self.budget,
        )
        .await;
    }

    fn is_cut_off(&self) -> bool {
        self.handler.is_cut_off()
    }

    async fn until_cut_off(&self) {
        self.handler.until_cut_off().await;
    }

    async fn authenticate_certificate(
        &self,
        ctx: &RequestContext,
        principal: String,
    ) -> Result<Authenticated, BrokerError> {
        match self.handler.sasl() {
            Some(authority) => authority.certificate(ctx, principal).await,
            None => sasl::NoUsers.certificate(ctx, principal).await,
        }
    }
}

/// An answer waiting for its turn: what the response header needs, and the response.
struct Answer {
    api_key: ApiKey,
    /// The version the response is encoded at (v0 for an ApiVersions request above the
    /// served range).
    response_version: i16,
    correlation_id: i32,
    /// The request frame's length, counted against
    /// [`MAX_IN_FLIGHT_REQUEST_BYTES_PER_CONNECTION`] until the answer is written.
    request_bytes: usize,
    result: Result<Response, HandlerError>,
    /// The request ran alone ([`Handler::pipelined`] false): reading resumes once this is
    /// answered.
    alone: bool,
}

/// The [`Answer`] a started request's result becomes (one function, so every request the
/// handler starts is the same type of future in flight).
fn answered(
    api_key: ApiKey,
    response_version: i16,
    correlation_id: i32,
    request_bytes: usize,
    alone: bool,
) -> impl FnOnce(Result<Response, HandlerError>) -> Answer {
    move |result| Answer {
        api_key,
        response_version,
        correlation_id,
        request_bytes,
        result,
        alone,
    }
}

/// Why a connection stops reading; logged once, after the answers before it.
enum Close {
    /// The peer closed between frames, or the listener is stopping: nothing to log.
    Quietly,
    Frame(frame::FrameError),
    Header(frame::HeaderError),
    NotServed {
        api_key: ApiKey,
        api_version: i16,
        correlation_id: i32,
    },
    /// A request other than ApiVersions or SASL before authenticating, where it is
    /// required.
    Unauthenticated {
        api_key: ApiKey,
    },
    /// A failed SASL exchange (answered, and audited, by `sasl`).
    AuthenticationFailed,
}

/// Serves one connection: reads requests, starts them in order, writes the answers in
/// order; stops reading when `closing` fires, answers what is in flight and closes.
async fn connection<H: Handler, R: AsyncRead + Send + Unpin, W: AnswerWriter + Send>(
    mut reader: R,
    mut writer: W,
    info: ConnectionInfo,
    handler: &H,
    mut closing: Closing,
    limits: Limits,
    budget: &Arc<Budget>,
) {
    let info = &info;
    let table = handler.supported_apis();
    let mut buf = BytesMut::new();
    let mut in_flight = FuturesOrdered::new();
    let mut in_flight_bytes = 0usize;
    // Each request's room in the broker-wide budget, in request order like `in_flight`:
    // given back once its answer is written. `reserved`: taken for the frame being read.
    let mut budgeted: VecDeque<RequestBytesPermit> = VecDeque::new();
    let mut reserved: Option<RequestBytesPermit> = None;
    let mut close: Option<Close> = None;
    let mut sasl_state = SaslState::default();
    // Kafka answers one request of a connection at a time, so each sees what the one
    // before it did (a consumer's committed() right after an asynchronous commit). Here
    // only produces and fetches run alongside each other (their order is kept where it
    // matters: a produce queues its appends in `Handler::start`); any other request
    // waits in `held` until everything before it is answered, then runs `alone`, and
    // nothing after it is read until it is answered.
    let mut held: Option<(Request, usize, RequestBytesPermit)> = None;
    let mut alone = false;
    // Produces in flight: a fetch read while one is must see what it appended (Kafka
    // answers the produce before it reads the fetch), so it waits in `held` as well.
    let mut produces_in_flight = 0usize;
    let authority = handler.sasl();
    let must_authenticate = authority.is_some_and(|a| a.required());
    loop {
        if in_flight.is_empty()
            && let Some((request, request_bytes, permit)) = held.take()
        {
            let api_key = request.api_key;
            let (response_version, correlation_id) = (request.api_version, request.correlation_id);
            let handled = handler.start(info, request).await.map(answered(
                api_key,
                response_version,
                correlation_id,
                request_bytes,
                true,
            ));
            alone = true;
            if api_key == ApiKey::Produce {
                produces_in_flight += 1;
            }
            in_flight_bytes += request_bytes;
            budgeted.push_back(permit);
            in_flight.push_back(Either::Left(handled));
        }
        let reading = close.is_none();
        if !reading && in_flight.is_empty() {
            break;
        }
        tokio::select! {
            // Answers first: they free room for more requests.
            biased;
            Some(answer) = in_flight.next(), if !in_flight.is_empty() => {
                let answer: Answer = answer;
                in_flight_bytes -= answer.request_bytes;
                alone &= !answer.alone;
                if answer.api_key == ApiKey::Produce {
                    produces_in_flight -= 1;
                }
                let written = write_answer(&mut writer, answer).await;
                budgeted.pop_front();
                if let Err(reason) = written {
                    match reason {
                        WriteError::Io(err) => tracing::debug!(
                            peer = %info.peer, error = %err, "writing a Kafka response failed"
                        ),
                        WriteError::Handler(err) => tracing::warn!(
                            peer = %info.peer, reason = %err, "closing the Kafka connection"
                        ),
                    }
                    // The answers after this one would be out of order: drop them.
                    return;
                }
            }
            // Then the close (the broker stopping or cut off), so that no request is read
            // once it is seen.
            reason = closing.wait(), if reading => {
                tracing::debug!(peer = %info.peer, reason = reason.text(), "closing a Kafka connection");
                close = Some(Close::Quietly);
            }
            read = read_budgeted(&mut reader, &mut buf, limits.max_request_frame_bytes, budget, &mut reserved),
                if reading
                    && held.is_none()
                    && !alone
                    && in_flight.len() < limits.max_in_flight
                    && in_flight_bytes < limits.max_in_flight_request_bytes =>
            {
                let Some(permit) = reserved.take() else {
                    // The peer closed, or the frame could not be read: nothing was reserved
                    // or it goes back now.
                    close = Some(match read {
                        Ok(_) => Close::Quietly,
                        Err(err) => Close::Frame(err),
                    });
                    continue;
                };
                let request = match read {
                    Ok(Some(bytes)) => {
                        let request_bytes = bytes.len();
                        frame::decode_request(bytes)
                            .map(|request| (request, request_bytes))
                            .map_err(Close::Header)
                    }
                    Ok(None) => Err(Close::Quietly),
                    Err(err) => Err(Close::Frame(err)),
                };
                let (request, request_bytes) = match request {
                    Ok(decoded) => decoded,
                    Err(why) => {
                        close = Some(why);
                        continue;
                    }
                };
                tracing::trace!(
                    api_key = ?request.api_key,
                    api_version = request.api_version,
                    correlation_id = request.correlation_id,
                    "request"
                );
                let api_key = request.api_key;
                let correlation_id = request.correlation_id;
                if must_authenticate
                    && info.principal().is_none()
                    && !sasl::allowed_before_authentication(api_key)
                {
                    close = Some(Close::Unauthenticated { api_key });
                    continue;
                }
                if matches!(api_key, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate)
                    && apis::is_served(table, api_key, request.api_version)
                {
                    // Answered here, in order, with nothing else in flight: they change
                    // who the connection is.
                    let result = match authority {
                        Some(authority) => {
                            sasl::answer(authority, info, &mut sasl_state, &request).await
                        }
                        None => sasl::answer(&sasl::NoUsers, info, &mut sasl_state, &request).await,
                    };
                    let result = result.map(|(response, after)| {
                        match after {
                            sasl::After::Continue => {}
                            sasl::After::Authenticated(user) => {
                                let _ = info.sasl_principal.set(user);
                            }
                            sasl::After::Close => close = Some(Close::AuthenticationFailed),
                        }
                        response
                    });
                    in_flight_bytes += request_bytes;
                    budgeted.push_back(permit);
                    in_flight.push_back(Either::Right(future::ready(Answer {
                        api_key,
                        response_version: request.api_version,
                        correlation_id,
                        request_bytes,
                        result,
                        alone: false,
                    })));
                    continue;
                }
                if api_key == ApiKey::ApiVersions {
                    let answer = match apis::answer_api_versions(&request, table) {
                        Ok((response_version, response)) => Answer {
                            api_key,
                            response_version,
                            correlation_id,
                            request_bytes,
                            result: Ok(response),
                            alone: false,
                        },
                        Err(err) => Answer {
                            api_key,
                            response_version: request.api_version,
                            correlation_id,
                            request_bytes,
                            result: Err(err),
                            alone: false,
                        },
                    };
                    in_flight_bytes += request_bytes;
                    budgeted.push_back(permit);
                    in_flight.push_back(Either::Right(future::ready(answer)));
                } else if apis::is_served(table, api_key, request.api_version) {
                    if !handler.pipelined(api_key)
                        || (api_key == ApiKey::Fetch && produces_in_flight > 0)
                    {
                        // Started at the top of the loop once nothing is in flight.
                        held = Some((request, request_bytes, permit));
                        continue;
                    }
                    let response_version = request.api_version;
                    // The in-order part (a produce queues its appends) runs here, before the
                    // next request is read; the rest completes in flight.
                    let handled = handler.start(info, request).await.map(answered(
                        api_key,
                        response_version,
                        correlation_id,
                        request_bytes,
                        false,
                    ));
                    in_flight_bytes += request_bytes;
                    budgeted.push_back(permit);
                    in_flight.push_back(Either::Left(handled));
                    if api_key == ApiKey::Produce {
                        produces_in_flight += 1;
                    }
                } else {
                    close = Some(Close::NotServed {
                        api_key,
                        api_version: request.api_version,
                        correlation_id,
                    });
                }
            }
        }
    }
    let failed_authentication = matches!(close, Some(Close::AuthenticationFailed));
    let reason = match close {
        // A client that drops its connection (a reset) is not a protocol fault.
        Some(Close::Frame(frame::FrameError::Io(err))) => {
            tracing::debug!(peer = %info.peer, error = %err, "Kafka connection ended");
            String::new()
        }
        Some(Close::Frame(err)) => err.to_string(),
        Some(Close::Header(err)) => err.to_string(),
        Some(Close::NotServed {
            api_key,
            api_version,
            correlation_id,
        }) => format!("{api_key:?} v{api_version} (correlation id {correlation_id}) is not served"),
        Some(Close::Unauthenticated { api_key }) => format!(
            "{api_key:?} before authenticating: this listener requires SASL authentication (or a client certificate)"
        ),
        Some(Close::Quietly | Close::AuthenticationFailed) | None => String::new(),
    };
    if !reason.is_empty() {
        tracing::warn!(peer = %info.peer, %reason, "closing the Kafka connection");
    }
    if failed_authentication {
        // As Kafka (connection.failed.authentication.delay.ms): the client reads the
        // failure before the close, and guessing passwords goes slower.
        tokio::time::sleep(sasl::FAILED_AUTHENTICATION_DELAY).await;
    }
    // FIN after the last answer, so the client reads the answers before the close.
    let _ = writer.shutdown().await;
}

/// Reads the next frame as [`frame::read_frame`], taking room for it from the broker-wide
/// budget once its length is known and before its body is read (into `reserved`, so a
/// call dropped by the `select!` keeps what it took). While the budget is full this waits
/// and reads nothing more: the socket's buffers fill and the client waits.
async fn read_budgeted<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    max_frame_bytes: usize,
    budget: &Arc<Budget>,
    reserved: &mut Option<RequestBytesPermit>,
) -> Result<Option<Bytes>, frame::FrameError> {
    if reserved.is_none() {
        let Some(length) = frame::read_frame_length(reader, buf, max_frame_bytes).await? else {
            return Ok(None);
        };
        *reserved = Some(budget.request_bytes(length).await);
    }
    frame::read_frame(reader, buf, max_frame_bytes).await
}

enum WriteError {
    Io(io::Error),
    Handler(HandlerError),
}

/// A connection's writing half, and the socket under it if `sendfile` can reach it.
trait AnswerWriter: AsyncWrite + Unpin {
    /// The plain TCP socket this writes to; `None` where the bytes must pass through the
    /// writer (TLS encrypts them), so file chunks are read and written.
    fn socket(&self) -> Option<&TcpStream> {
        None
    }
}

impl AnswerWriter for OwnedWriteHalf {
    fn socket(&self) -> Option<&TcpStream> {
        Some(self.as_ref())
    }
}

impl AnswerWriter for WriteHalf {
    fn socket(&self) -> Option<&TcpStream> {
        WriteHalf::socket(self)
    }
}

/// Writes one answer: length, response header (its version from the api key and the
/// response version), then the body's chunks in order: runs of in-memory chunks in one
/// vectored write where the socket takes it, file chunks with `sendfile`.
async fn write_answer<W: AnswerWriter>(writer: &mut W, answer: Answer) -> Result<(), WriteError> {
    let chunks = match answer.result {
        Ok(Response::Body(chunks)) => chunks,
        Ok(Response::Silent) => return Ok(()),
        Err(err) => return Err(WriteError::Handler(err)),
    };
    let header_version = answer
        .api_key
        .response_header_version(answer.response_version);
    let header = ResponseHeader::default().with_correlation_id(answer.correlation_id);
    let encode_error = |source: Box<dyn std::error::Error + Send + Sync>| {
        WriteError::Handler(HandlerError::Encode {
            version: answer.response_version,
            source,
        })
    };
    let header_bytes = header
        .compute_size(header_version)
        .map_err(|e| encode_error(e.into()))?;
    let body_bytes: usize = chunks.iter().map(Chunk::len).sum();
    let length = i32::try_from(header_bytes + body_bytes).map_err(|_| {
        encode_error(format!("a response of {body_bytes} bytes does not fit a frame").into())
    })?;
    let mut prefix = BytesMut::with_capacity(4 + header_bytes);
    prefix.put_i32(length);
    header
        .encode(&mut prefix, header_version)
        .map_err(|e| encode_error(e.into()))?;
    let mut rest = &chunks[..];
    let mut in_memory: Vec<IoSlice<'_>> = vec![IoSlice::new(&prefix)];
    loop {
        let run = rest
            .iter()
            .position(|chunk| matches!(chunk, Chunk::File(_)))
            .unwrap_or(rest.len());
        in_memory.extend(rest[..run].iter().filter_map(|chunk| match chunk {
            Chunk::Bytes(bytes) if !bytes.is_empty() => Some(IoSlice::new(bytes)),
            _ => None,
        }));
        write_all_vectored(writer, &mut in_memory)
            .await
            .map_err(WriteError::Io)?;
        in_memory.clear();
        let Some((Chunk::File(slice), after)) = rest[run..].split_first() else {
            return Ok(());
        };
        match writer.socket() {
            Some(socket) => send_file(socket, slice).await,
            None => match slice.read() {
                Ok(bytes) => writer.write_all(&bytes).await,
                Err(err) => Err(err),
            },
        }
        .map_err(WriteError::Io)?;
        rest = after;
    }
}

/// Sends `slice` from its file to `socket` with `sendfile`: the kernel hands the page
/// cache's pages to the socket, and the bytes never pass through the broker's memory.
async fn send_file(socket: &TcpStream, slice: &FileSlice) -> io::Result<()> {
    let mut position = slice.position();
    let end = position + slice.len() as u64;
    while position < end {
        socket.writable().await?;
        let left = usize::try_from(end - position).unwrap_or(usize::MAX);
        let sent = socket.try_io(Interest::WRITABLE, || {
            rustix::fs::sendfile(socket, slice.file(), Some(&mut position), left)
                .map_err(io::Error::from)
        });
        match sent {
            // The file ends before the slice: it was cut short under the fetch. The answer
            // cannot be finished, so the connection closes and the client fetches again.
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the segment file ended before the fetched batches did",
                ));
            }
            // `sendfile` moved `position` past what it sent.
            Ok(_) => {}
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

async fn write_all_vectored<W: AsyncWrite + Unpin>(
    writer: &mut W,
    mut slices: &mut [IoSlice<'_>],
) -> io::Result<()> {
    while !slices.is_empty() {
        let written = writer.write_vectored(slices).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, written);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `step` bytes a call, from the first slice only.
    struct Trickle {
        written: Vec<u8>,
        step: usize,
    }

    impl AnswerWriter for Trickle {}

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            let n = buf.len().min(self.step);
            self.written.extend_from_slice(&buf[..n]);
            std::task::Poll::Ready(Ok(n))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn an_answer_is_length_header_and_chunks_however_the_socket_splits_it() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for step in [1, 3, 1000] {
            let mut writer = Trickle {
                written: Vec::new(),
                step,
            };
            let answer = Answer {
                api_key: ApiKey::Metadata,
                // Metadata v9 is flexible: response header v1, with its tagged fields.
                response_version: 9,
                correlation_id: 0x0102_0304,
                request_bytes: 0,
                alone: false,
                result: Ok(Response::Body(vec![
                    Chunk::Bytes(Bytes::from_static(b"ab")),
                    Chunk::Bytes(Bytes::new()),
                    Chunk::Bytes(Bytes::from_static(b"cde")),
                ])),
            };
            runtime
                .block_on(write_answer(&mut writer, answer))
                .unwrap_or_else(|_| panic!("step {step}"));
            assert_eq!(writer.written, b"\0\0\0\x0a\x01\x02\x03\x04\0abcde");
        }
    }

    fn with_file(slice: &FileSlice) -> Answer {
        Answer {
            api_key: ApiKey::Fetch,
            response_version: 4,
            correlation_id: 7,
            request_bytes: 0,
            alone: false,
            result: Ok(Response::Body(vec![
                Chunk::Bytes(Bytes::from_static(b"ab")),
                Chunk::File(slice.clone()),
                Chunk::Bytes(Bytes::from_static(b"cd")),
                Chunk::File(slice.clone()),
            ])),
        }
    }

    fn expected_with_file(slice: &FileSlice) -> Vec<u8> {
        let records = slice.read().unwrap();
        let length = 4 + 2 * (2 + records.len());
        let mut expected = (length as i32).to_be_bytes().to_vec();
        expected.extend_from_slice(&7i32.to_be_bytes());
        for tail in [b"ab", b"cd"] {
            expected.extend_from_slice(tail);
            expected.extend_from_slice(&records);
        }
        expected
    }

    #[test]
    fn file_chunks_are_sent_from_the_file_between_the_bytes_around_them() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (_log, slice) = crate::testing::file_slice(dir.path(), 60);
        assert!(slice.len() > 4 * 1024 * 1024, "larger than a socket buffer");
        let expected = expected_with_file(&slice);
        let received = runtime.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let client = TcpStream::connect(listener.local_addr().unwrap());
            let (client, accepted) = tokio::join!(client, listener.accept());
            let (mut client, (server, _)) = (client.unwrap(), accepted.unwrap());
            let (_reader, mut writer) = server.into_split();
            assert!(
                writer.socket().is_some(),
                "a plain socket sends with sendfile"
            );
            let reading = tokio::spawn(async move {
                let mut received = Vec::new();
                tokio::io::AsyncReadExt::read_to_end(&mut client, &mut received)
                    .await
                    .unwrap();
                received
            });
            assert!(write_answer(&mut writer, with_file(&slice)).await.is_ok());
            writer.shutdown().await.unwrap();
            reading.await.unwrap()
        });
        assert!(received == expected, "the answer's bytes differ");
    }

    #[test]
    fn a_writer_without_a_socket_reads_file_chunks_and_writes_them() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (_log, slice) = crate::testing::file_slice(dir.path(), 3);
        let mut writer = Trickle {
            written: Vec::new(),
            step: 100_000,
        };
        assert!(
            runtime
                .block_on(write_answer(&mut writer, with_file(&slice)))
                .is_ok()
        );
        assert!(writer.written == expected_with_file(&slice));
    }

    #[test]
    fn a_silent_answer_writes_nothing() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut writer = Trickle {
            written: Vec::new(),
            step: 10,
        };
        let answer = Answer {
            api_key: ApiKey::Produce,
            response_version: 9,
            correlation_id: 1,
            request_bytes: 0,
            alone: false,
            result: Ok(Response::Silent),
        };
        assert!(runtime.block_on(write_answer(&mut writer, answer)).is_ok());
        assert!(writer.written.is_empty());
    }
}
