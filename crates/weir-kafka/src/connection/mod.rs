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

mod answer;

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::future::{self, BoxFuture, Either, FutureExt};
use futures_util::stream::{FuturesOrdered, StreamExt};
use kafka_protocol::messages::ApiKey;
use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use weir_broker::authn::Authenticated;
use weir_broker::budget::{Budget, RequestBytesPermit};
use weir_broker::listener_kit::{self, Closing, Connection, ConnectionHandler};
use weir_broker::{BrokerError, Listener, RequestContext};
use weir_security::tls::ServerTls;

use crate::apis;
use crate::frame::{self, MAX_REQUEST_FRAME_BYTES, Request};
use crate::handler::{ConnectionInfo, Handler};
use crate::handlers::KafkaBroker;
use crate::sasl::{self, SaslAuthority, SaslState};
use answer::{Answer, AnswerWriter, WriteError, answered, write_answer};

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

/// [`serve_with`] for the broker's own handler, boxed: the connection code for
/// [`KafkaBroker`] is compiled in this crate, beside the other adapters, rather than in
/// the crate that starts the listener (a generic function is compiled where its type
/// arguments are known; docs/ARCHITECTURE.md § Build time).
pub fn serve_broker(
    listener: TcpListener,
    handler: Arc<KafkaBroker>,
    stopping: watch::Receiver<bool>,
    options: Options,
) -> BoxFuture<'static, ()> {
    Box::pin(serve_with(listener, handler, stopping, options))
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
