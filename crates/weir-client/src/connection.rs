//! Connections to brokers: address parsing, one tuned tonic [`Channel`] per connection
//! wrapped in a [`BrokerChannel`] that bounds every request and names its broker in every
//! failure, and the check that a bootstrap address is a broker at all.
//!
//! Every client (producer, consumer, admin) talks over a channel built here, so the
//! settings that decide throughput live in one place: TCP_NODELAY (Nagle's algorithm
//! stalls small pipelined requests for tens of milliseconds), HTTP/2 windows much larger
//! than the 64 KiB default (which caps one stream at a window per round trip), and
//! message-size limits large enough for a full batch request or fetch response.
//!
//! # Timeouts
//!
//! [`Timeouts::connect`] bounds making a connection to a bootstrap broker: the TCP
//! connection, then the broker's first gRPC answer (a `DescribeCluster`, the cheapest
//! request every broker serves). A TCP connection alone proves little: a port that
//! accepts connections and never answers (a stopped process, a proxy with nothing behind
//! it) would otherwise make the first request wait until HTTP/2 keep-alive gives up,
//! [`KEEP_ALIVE_INTERVAL`] + [`KEEP_ALIVE_TIMEOUT`] later. [`Timeouts::request`] bounds
//! every request on every connection until its answer starts (for a stream: until the
//! broker accepted it; how a stream then progresses is its caller's business). Either
//! failure names the broker ([`BrokerFailure`]).
//!
//! # TLS
//!
//! With [`ConnectOptions::tls`] set, every connection (bootstrap and learnt brokers
//! alike) speaks TLS, trusting the CAs of [`ClientTls`] (not the system's: a Weir
//! cluster has its own CA) and presenting its client certificate, if it has one, to a
//! broker that asks (mutual TLS). Addresses may then be written `https://host:port` or
//! `host:port`; an `https://` address without TLS options is refused, as is `http://`
//! with them, rather than guessed at. The TLS is weir-security's (`TlsDialer`), the same
//! the brokers dial each other with.

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::body::Body;
use tonic::codegen::{Service, http};
use tonic::transport::{Channel, Endpoint};
use weir_proto::v1 as pb;
use weir_proto::v1::admin_client::AdminClient;
use weir_security::dial::TlsDialer;

use crate::error::ClientError;
use crate::outage;

/// The broker address used when none is given.
pub const DEFAULT_BROKER: &str = "127.0.0.1:9292";
/// HTTP/2 flow-control window of each stream: a produce or consume stream may have this
/// much unacknowledged data on the wire, several batches at the default batch size.
pub const STREAM_WINDOW_BYTES: u32 = 4 * 1024 * 1024;
/// HTTP/2 flow-control window of the whole connection, shared by its streams.
pub const CONNECTION_WINDOW_BYTES: u32 = 16 * 1024 * 1024;
/// Largest HTTP/2 frame the client accepts: a consume stream's 1 MiB messages arrive in
/// one frame each instead of 64 of the protocol's default 16 KiB.
pub const MAX_FRAME_BYTES: u32 = 1024 * 1024;
/// Largest gRPC message the client sends or accepts: a produce request carries one
/// batch per partition, a fetch response up to 50 MiB by the broker's default, and a
/// single batch may reach `weir_batch::MAX_BATCH_BYTES` (64 MiB).
pub const MAX_MESSAGE_BYTES: usize = weir_batch::MAX_BATCH_BYTES + 1024 * 1024;
/// Long-lived streams (one `Consume` per followed partition) this client opens on one
/// connection before it opens another to the same broker. A broker allows 256
/// concurrent streams per connection (`weir_server::MAX_CONCURRENT_STREAMS_PER_CONNECTION`)
/// and a stream past that waits until another ends, which for a `Consume` stream may
/// be never; half the limit leaves room for the unary requests (metadata, offset
/// lookups, commits) that share the first connection.
pub const MAX_STREAMS_PER_CONNECTION: usize = 128;
/// Default of [`Timeouts::connect`]: a broker on a working network answers in
/// milliseconds, so a few seconds tell a dead address from a slow one.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Default of [`Timeouts::request`] (Kafka's `request.timeout.ms`). Creating a topic of
/// thousands of partitions is the slowest request there is.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A connection with requests in flight that has read nothing for this long is sent an
/// HTTP/2 ping (a busy connection never is; an idle one with no request is left alone).
/// As the brokers' connections to each other (`weir_grpc::internal`), so a broker cut
/// off behind a firewall that drops its packets, or a network that silently stops
/// delivering, is found within [`KEEP_ALIVE_INTERVAL`] + [`KEEP_ALIVE_TIMEOUT`] (3 s) of
/// its last answer rather than at the request timeout (30 s): the request fails as
/// unreachable and the client refreshes its metadata and retries, reaching the leader
/// elected in the meantime (docs/replication.md § What a client sees).
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(1);
/// How long a keep-alive ping may go unanswered before the connection is dropped.
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a client waits for brokers (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Making a connection: TCP, then (for a bootstrap broker) its first gRPC answer.
    pub connect: Duration,
    /// One request, until its answer starts.
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: DEFAULT_CONNECT_TIMEOUT,
            request: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

impl Timeouts {
    /// Refuses zero timeouts (nothing could ever answer in time).
    pub fn check(&self) -> Result<(), ClientError> {
        if self.connect.is_zero() || self.request.is_zero() {
            return Err(ClientError::Config(format!(
                "timeouts must be above zero, not {self:?}"
            )));
        }
        Ok(())
    }
}

/// TLS to brokers: the CAs trusted, for mutual TLS the client's certificate, and the
/// user the client authenticates as, if any (a password travels only over TLS, so it is
/// set here). Cheap to clone.
#[derive(Clone)]
pub struct ClientTls {
    dialer: TlsDialer,
    /// The `authorization` header sent with every call (`Basic`, the user and password).
    credentials: Option<http::HeaderValue>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("dialer", &self.dialer)
            .field("credentials", &self.credentials.as_ref().map(|_| ".."))
            .finish()
    }
}

impl ClientTls {
    /// Trusts the CAs in the PEM file `ca`; with `identity` (certificate chain and key
    /// PEM files), presents that client certificate to brokers that ask for one.
    pub fn from_files(
        ca: &Path,
        identity: Option<(&Path, &Path)>,
    ) -> Result<ClientTls, ClientError> {
        let dialer = TlsDialer::from_files(ca, identity)
            .map_err(|e| ClientError::Config(format!("TLS: {e}")))?;
        Ok(ClientTls {
            dialer,
            credentials: None,
        })
    }

    /// Authenticates every call with the API token `token` (`weir_<id>_<secret>`, made
    /// by `weir token create` or [`Admin::create_token`](crate::Admin::create_token)),
    /// as the token's owner: call credentials `authorization: Bearer <token>`.
    pub fn with_token(mut self, token: &str) -> Result<ClientTls, ClientError> {
        weir_security::token::parse_token(token.trim())
            .map_err(|e| ClientError::Config(format!("API token: {e}")))?;
        let mut header =
            http::HeaderValue::from_str(&weir_security::token::bearer_header(token.trim()))
                .map_err(|_| ClientError::Config("an API token has a control character".into()))?;
        header.set_sensitive(true);
        self.credentials = Some(header);
        Ok(self)
    }

    /// Authenticates every call as `user` with `password` (call credentials, checked by
    /// the broker against the user's SCRAM credentials).
    pub fn with_user(mut self, user: &str, password: &str) -> Result<ClientTls, ClientError> {
        let mut header =
            http::HeaderValue::from_str(&weir_security::sasl::basic_auth_header(user, password))
                .map_err(|_| {
                    ClientError::Config("a user name or password has a control character".into())
                })?;
        header.set_sensitive(true);
        self.credentials = Some(header);
        Ok(self)
    }
}

/// How a client reaches brokers: its [`Timeouts`] and, for brokers that speak TLS, its
/// [`ClientTls`] (`None`: plaintext).
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// How long connecting and each request may take.
    pub timeouts: Timeouts,
    /// TLS to every broker; `None`: plaintext.
    pub tls: Option<ClientTls>,
}

impl From<Timeouts> for ConnectOptions {
    fn from(timeouts: Timeouts) -> ConnectOptions {
        ConnectOptions {
            timeouts,
            tls: None,
        }
    }
}

/// Why a broker could not be used: its address and what happened. The text is one
/// sentence naming the broker; [`ClientError::Connect`] holds one per address tried.
#[derive(Debug, Clone)]
pub struct BrokerFailure {
    /// The address as given or learnt (`host:port`).
    pub address: String,
    /// What happened.
    pub reason: FailureReason,
    /// The transport error behind it, if there was one.
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

/// What went wrong with a broker (see [`BrokerFailure`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureReason {
    /// Nothing listens at the address: the connection was refused.
    Refused,
    /// No TCP connection within this long (the connect timeout).
    ConnectTimedOut(Duration),
    /// The TCP connection was made, but no gRPC answer came within this long (the
    /// connect timeout): a stopped or overloaded broker, or not a broker at all.
    Silent(Duration),
    /// No answer to a request within this long (the request timeout, or the request's
    /// own deadline).
    RequestTimedOut(Duration),
    /// Something answered, but not with gRPC (what it answered: an HTTP status and
    /// content type). Typically the broker's HTTP (metrics and health) port.
    NotGrpc(String),
    /// The connection could not be made for another reason (a name that does not
    /// resolve, a network that is unreachable).
    ConnectFailed(String),
    /// The broker stopped answering on an open connection: a keep-alive ping went
    /// unanswered for this long ([`KEEP_ALIVE_TIMEOUT`]). Packets dropped on the way (a
    /// network cut, a firewall), or a broker host that froze.
    Stalled(Duration),
    /// The connection broke during a request.
    Broken(String),
}

impl BrokerFailure {
    pub(crate) fn new(address: &str, reason: FailureReason) -> BrokerFailure {
        BrokerFailure {
            address: address.to_owned(),
            reason,
            source: None,
        }
    }

    fn with_source(mut self, source: Arc<dyn std::error::Error + Send + Sync>) -> BrokerFailure {
        self.source = Some(source);
        self
    }

    /// What happened, without the address (for a list of several brokers).
    pub fn reason_text(&self) -> String {
        match &self.reason {
            FailureReason::Refused => "connection refused".to_owned(),
            FailureReason::ConnectTimedOut(waited) => {
                format!("no connection within {}", human_duration(*waited))
            }
            FailureReason::Silent(waited) => format!(
                "accepted the connection but did not answer within {}",
                human_duration(*waited)
            ),
            FailureReason::RequestTimedOut(waited) => {
                format!("no answer within {}", human_duration(*waited))
            }
            FailureReason::Stalled(waited) => format!(
                "stopped answering (a keep-alive ping went unanswered for {})",
                human_duration(*waited)
            ),
            FailureReason::NotGrpc(answer) => format!("answered, but not with gRPC ({answer})"),
            FailureReason::ConnectFailed(why) | FailureReason::Broken(why) => why.clone(),
        }
    }

    /// The gRPC status a request failing this way gets (and keeps as its source).
    fn into_status(self) -> tonic::Status {
        let code = match self.reason {
            FailureReason::Silent(_) | FailureReason::RequestTimedOut(_) => {
                tonic::Code::DeadlineExceeded
            }
            // Nothing a retry can fix, and the code tonic gives an HTTP 404.
            FailureReason::NotGrpc(_) => tonic::Code::Unimplemented,
            _ => tonic::Code::Unavailable,
        };
        let mut status = tonic::Status::new(code, self.to_string());
        status.set_source(Arc::new(self));
        status
    }
}

impl std::fmt::Display for BrokerFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let address = &self.address;
        match &self.reason {
            FailureReason::Refused
            | FailureReason::ConnectTimedOut(_)
            | FailureReason::ConnectFailed(_) => {
                write!(
                    f,
                    "could not connect to broker {address}: {}",
                    self.reason_text()
                )
            }
            FailureReason::Silent(waited) => write!(
                f,
                "broker {address} accepted the connection but did not answer within {}",
                human_duration(*waited)
            ),
            FailureReason::RequestTimedOut(waited) => write!(
                f,
                "broker {address} did not answer within {}",
                human_duration(*waited)
            ),
            FailureReason::Stalled(_) => {
                write!(f, "broker {address} {}", self.reason_text())
            }
            FailureReason::NotGrpc(answer) => {
                write!(f, "{address} answered, but not with gRPC ({answer})")
            }
            FailureReason::Broken(why) => {
                write!(f, "the connection to broker {address} broke: {why}")
            }
        }
    }
}

impl std::error::Error for BrokerFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// `3 s`, `500 ms`, `1.5 s`.
pub fn human_duration(d: Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{} ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// A connection to one broker: a tonic [`Channel`] that bounds every request by the
/// request timeout, refuses answers that are not gRPC, and turns every transport failure
/// into a status naming the broker (a [`BrokerFailure`] as its source, which
/// [`ClientError`] recognises). Cheap to clone: clones share the connection.
#[derive(Debug, Clone)]
pub struct BrokerChannel {
    channel: Channel,
    address: Arc<str>,
    timeouts: Timeouts,
    /// Sent as the `authorization` header of every call.
    credentials: Option<http::HeaderValue>,
}

impl BrokerChannel {
    /// The broker's address.
    pub fn address(&self) -> &str {
        &self.address
    }
}

type ResponseFuture =
    Pin<Box<dyn std::future::Future<Output = Result<http::Response<Body>, tonic::Status>> + Send>>;

impl Service<http::Request<Body>> for BrokerChannel {
    type Response = http::Response<Body>;
    type Error = tonic::Status;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::poll_ready(&mut self.channel, cx)
            .map_err(|error| classify(&self.address, error, self.timeouts).into_status())
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        if let Some(credentials) = &self.credentials {
            request
                .headers_mut()
                .insert(http::header::AUTHORIZATION, credentials.clone());
        }
        let call = Service::call(&mut self.channel, request);
        let address = self.address.clone();
        let timeouts = self.timeouts;
        let timeout = timeouts.request;
        Box::pin(async move {
            let started = tokio::time::Instant::now();
            let response = match tokio::time::timeout(timeout, call).await {
                Ok(Ok(response)) => response,
                Ok(Err(error)) => {
                    let mut failure = classify(&address, error, timeouts);
                    if let FailureReason::RequestTimedOut(waited) = &mut failure.reason {
                        // The request's own, shorter deadline.
                        *waited = started.elapsed().min(timeout);
                    }
                    return Err(failure.into_status());
                }
                Err(_) => {
                    return Err(BrokerFailure::new(
                        &address,
                        FailureReason::RequestTimedOut(timeout),
                    )
                    .into_status());
                }
            };
            match not_grpc(&response) {
                None => Ok(response),
                Some(answer) => {
                    Err(BrokerFailure::new(&address, FailureReason::NotGrpc(answer)).into_status())
                }
            }
        })
    }
}

/// What a response that is not gRPC was (`HTTP 404`, `HTTP 200, text/html`), or `None`
/// for a gRPC response (HTTP 200, `application/grpc` content; a gRPC error is still
/// HTTP 200, with its status in the headers or trailers).
fn not_grpc(response: &http::Response<Body>) -> Option<String> {
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let grpc = content_type.is_some_and(|t| t.starts_with("application/grpc"));
    if response.status() == http::StatusCode::OK && grpc {
        return None;
    }
    let status = response.status();
    let mut what = format!("HTTP {}", status.as_u16());
    if let Some(reason) = status.canonical_reason() {
        what.push(' ');
        what.push_str(reason);
    }
    match content_type {
        Some(t) if !grpc => what.push_str(&format!(", {t}")),
        None => what.push_str(", no content type"),
        _ => {}
    }
    Some(what)
}

/// A transport error on the connection to `address`, as a [`BrokerFailure`].
fn classify(address: &str, error: tonic::transport::Error, timeouts: Timeouts) -> BrokerFailure {
    let error: Arc<dyn std::error::Error + Send + Sync> = Arc::new(error);
    let reason = reason_of(&*error, timeouts);
    BrokerFailure::new(address, reason).with_source(error)
}

fn reason_of(error: &(dyn std::error::Error + 'static), timeouts: Timeouts) -> FailureReason {
    let mut connecting = false;
    let mut io_kind = None;
    let mut cause = Some(error);
    let mut root = error;
    while let Some(c) = cause {
        if c.downcast_ref::<tonic::TimeoutExpired>().is_some() {
            // The request's own deadline (`grpc-timeout`), shorter than the channel's.
            return FailureReason::RequestTimedOut(timeouts.request);
        }
        connecting |= c.downcast_ref::<tonic::ConnectError>().is_some();
        // hyper's only timeout on an open HTTP/2 connection is its keep-alive.
        if !connecting
            && c.downcast_ref::<hyper::Error>()
                .is_some_and(hyper::Error::is_timeout)
        {
            return FailureReason::Stalled(KEEP_ALIVE_TIMEOUT);
        }
        if io_kind.is_none() {
            io_kind = c.downcast_ref::<std::io::Error>().map(std::io::Error::kind);
        }
        root = c;
        cause = c.source();
    }
    match io_kind {
        Some(std::io::ErrorKind::ConnectionRefused) => FailureReason::Refused,
        Some(std::io::ErrorKind::TimedOut) if connecting => {
            FailureReason::ConnectTimedOut(timeouts.connect)
        }
        _ if connecting => FailureReason::ConnectFailed(root.to_string()),
        _ => FailureReason::Broken(chain(error)),
    }
}

/// Turns `host:port` or `http://host:port` into a URI with a scheme.
pub fn broker_uri(address: &str) -> String {
    let address = address.trim();
    if address.contains("://") {
        address.to_owned()
    } else {
        format!("http://{address}")
    }
}

/// The URI a channel to `address` is built on: `http://`, also for TLS, which the
/// dialler does beneath the channel (see weir-security `dial`). An `https://` address
/// without TLS options, or `http://` with them, is refused.
fn channel_uri(address: &str, tls: bool) -> Result<String, ClientError> {
    let uri = broker_uri(address);
    match (uri.strip_prefix("https://"), tls) {
        (Some(rest), true) => Ok(format!("http://{rest}")),
        (Some(_), false) => Err(ClientError::Config(format!(
            "broker address {address:?} asks for TLS: give the CA that signed the brokers' \
             certificates (--tls-ca, WEIR_TLS_CA)"
        ))),
        (None, true) if uri.starts_with("http://") && address.contains("://") => {
            Err(ClientError::Config(format!(
                "broker address {address:?} asks for plaintext, but TLS options are given: \
                 write it host:port or https://host:port"
            )))
        }
        (None, _) => Ok(uri),
    }
}

/// A channel over `endpoint`, through `tls` if given; connecting now or on first use.
async fn open(
    endpoint: Endpoint,
    tls: Option<&ClientTls>,
) -> Result<Channel, tonic::transport::Error> {
    match tls {
        Some(tls) => endpoint.connect_with_connector(tls.dialer.clone()).await,
        None => endpoint.connect().await,
    }
}

fn open_lazy(endpoint: Endpoint, tls: Option<&ClientTls>) -> Channel {
    match tls {
        Some(tls) => endpoint.connect_with_connector_lazy(tls.dialer.clone()),
        None => endpoint.connect_lazy(),
    }
}

/// Builds the tuned endpoint for one broker address.
fn endpoint(address: &str, options: &ConnectOptions) -> Result<Endpoint, ClientError> {
    let uri = channel_uri(address, options.tls.is_some())?;
    let timeouts = options.timeouts;
    let endpoint = Endpoint::from_shared(uri.clone())
        .map_err(|e| ClientError::Config(format!("bad broker address {address:?}: {e}")))?;
    Ok(endpoint
        .tcp_nodelay(true)
        .connect_timeout(timeouts.connect)
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT))
}

/// The addresses in `brokers`, each entry split at commas (`"a:1,b:2"` is two), blanks
/// dropped; [`DEFAULT_BROKER`] if none is left.
pub fn bootstrap_addresses(brokers: &[String]) -> Vec<String> {
    let addresses: Vec<String> = brokers
        .iter()
        .flat_map(|entry| entry.split(','))
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect();
    if addresses.is_empty() {
        vec![DEFAULT_BROKER.to_owned()]
    } else {
        addresses
    }
}

/// Connects to the first broker in `brokers` that answers, in order (entries may be
/// comma-separated lists). An empty list means [`DEFAULT_BROKER`].
///
/// The channel reconnects by itself after a connection drops (to the same broker); a
/// request made while it is down fails with [`ClientError::Unavailable`].
pub async fn connect(
    brokers: &[String],
    options: &ConnectOptions,
) -> Result<BrokerChannel, ClientError> {
    Ok(connect_first(brokers, options).await?.1)
}

/// [`connect`], also returning the address that answered. Each address that did not is
/// logged (warn) with why, and named in the error if none answered.
pub async fn connect_first(
    brokers: &[String],
    options: &ConnectOptions,
) -> Result<(String, BrokerChannel), ClientError> {
    options.timeouts.check()?;
    let addresses = bootstrap_addresses(brokers);
    let mut failures: Vec<BrokerFailure> = Vec::new();
    for address in &addresses {
        match connect_one(address, options).await? {
            Ok(channel) => {
                for failure in &failures {
                    // Once per streak and interval: reconnecting clients come this way
                    // again and again while a broker is down.
                    if let Some(failures) = outage::bootstrap_unanswered(&failure.address) {
                        tracing::warn!(address = %failure.address, error = %failure.reason_text(), connected = %address, failures, "broker did not answer; connected to a later one in the list (logged again while it stays unanswered, with the failures counted since)");
                    }
                }
                outage::bootstrap_answered(address);
                return Ok((address.clone(), channel));
            }
            Err(failure) => {
                tracing::debug!(address = %address, error = %failure, "broker connection failed");
                failures.push(failure);
            }
        }
    }
    Err(ClientError::Connect { failures })
}

/// Connects to `address` and waits for its first gRPC answer, both within the connect
/// timeout (see the module docs). The outer error is a bad address.
async fn connect_one(
    address: &str,
    options: &ConnectOptions,
) -> Result<Result<BrokerChannel, BrokerFailure>, ClientError> {
    let started = tokio::time::Instant::now();
    let timeouts = options.timeouts;
    let endpoint = endpoint(address, options)?;
    let connecting = open(endpoint, options.tls.as_ref());
    let channel = match tokio::time::timeout(timeouts.connect, connecting).await {
        Ok(Ok(channel)) => channel,
        Ok(Err(error)) => return Ok(Err(classify(address, error, timeouts))),
        Err(_) => {
            return Ok(Err(BrokerFailure::new(
                address,
                FailureReason::ConnectTimedOut(timeouts.connect),
            )));
        }
    };
    let channel = BrokerChannel {
        channel,
        address: Arc::from(address),
        timeouts,
        credentials: credentials(options),
    };
    let left = timeouts.connect.saturating_sub(started.elapsed());
    let mut probe = AdminClient::new(channel.clone());
    let mut request = tonic::Request::new(pb::DescribeClusterRequest {});
    request.set_timeout(left.max(Duration::from_millis(1)));
    let answer = tokio::time::timeout(left, probe.describe_cluster(request)).await;
    Ok(match answer {
        Ok(Ok(_)) => Ok(channel),
        Ok(Err(status)) => match broker_failure(&status) {
            Some(failure) => Err(match failure.reason {
                // The probe's deadline is the connect timeout; and a keep-alive ping that
                // went unanswered before it (interval + timeout is about as long as the
                // default connect timeout, so under load either fires first) means the
                // same of a broker that never answered anything: it is silent.
                FailureReason::RequestTimedOut(_) | FailureReason::Stalled(_) => {
                    BrokerFailure::new(address, FailureReason::Silent(timeouts.connect))
                }
                _ => failure.clone(),
            }),
            // A refusal from the broker itself: it speaks gRPC, which is what was asked.
            None => Ok(channel),
        },
        Err(_) => Err(BrokerFailure::new(
            address,
            FailureReason::Silent(timeouts.connect),
        )),
    })
}

/// The [`BrokerFailure`] behind a status made by a [`BrokerChannel`], if it is one.
pub(crate) fn broker_failure(status: &tonic::Status) -> Option<&BrokerFailure> {
    std::error::Error::source(status).and_then(|s| s.downcast_ref::<BrokerFailure>())
}

/// `error` and its causes, `: `-separated (a transport error's own text is only
/// "transport error"), repeated messages dropped.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let message = c.to_string();
        if !text.ends_with(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        cause = c.source();
    }
    text
}

/// A channel to `address` that connects on first use (and reconnects after a drop):
/// connections to brokers learnt from metadata, so that a dead one costs a failed
/// request (retried elsewhere) rather than a wait here.
pub fn lazy(address: &str, options: &ConnectOptions) -> Result<BrokerChannel, ClientError> {
    Ok(BrokerChannel {
        channel: open_lazy(endpoint(address, options)?, options.tls.as_ref()),
        address: Arc::from(address),
        timeouts: options.timeouts,
        credentials: credentials(options),
    })
}

/// The call credentials `options` carry.
fn credentials(options: &ConnectOptions) -> Option<http::HeaderValue> {
    options.tls.as_ref().and_then(|tls| tls.credentials.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scheme_is_added_only_when_missing() {
        assert_eq!(broker_uri("127.0.0.1:9292"), "http://127.0.0.1:9292");
        assert_eq!(broker_uri(" localhost:1 "), "http://localhost:1");
        assert_eq!(broker_uri("http://b:9292"), "http://b:9292");
        assert_eq!(broker_uri("https://b:9292"), "https://b:9292");
    }

    #[test]
    fn the_scheme_must_agree_with_the_tls_options() {
        assert_eq!(channel_uri("b:1", false).unwrap(), "http://b:1");
        assert_eq!(channel_uri("b:1", true).unwrap(), "http://b:1");
        assert_eq!(channel_uri("https://b:1", true).unwrap(), "http://b:1");
        let err = channel_uri("https://b:1", false).unwrap_err().to_string();
        assert!(err.contains("--tls-ca"), "{err}");
        let err = channel_uri("http://b:1", true).unwrap_err().to_string();
        assert!(err.contains("https://host:port"), "{err}");
    }

    #[test]
    fn a_bad_address_is_a_config_error() {
        assert!(matches!(
            endpoint("not a uri", &ConnectOptions::default()),
            Err(ClientError::Config(_))
        ));
    }

    #[tokio::test]
    async fn an_unreachable_broker_is_a_connect_error_saying_refused_once() {
        // Port 1 on loopback: nothing listens there, the connect is refused at once.
        let error = connect(&["127.0.0.1:1".to_owned()], &ConnectOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(error, ClientError::Connect { .. }), "{error:?}");
        assert!(error.is_retriable());
        assert_eq!(
            error.to_string(),
            "could not connect to broker 127.0.0.1:1: connection refused"
        );
    }

    #[test]
    fn entries_may_be_comma_separated_lists() {
        let given = vec![" a:1, b:2 ".to_owned(), String::new(), "c:3".to_owned()];
        assert_eq!(bootstrap_addresses(&given), ["a:1", "b:2", "c:3"]);
        assert_eq!(bootstrap_addresses(&[]), [DEFAULT_BROKER]);
        assert_eq!(bootstrap_addresses(&[",".to_owned()]), [DEFAULT_BROKER]);
    }

    #[tokio::test]
    async fn every_unreachable_broker_is_named() {
        let error = connect(
            &["127.0.0.1:1,127.0.0.1:2".to_owned()],
            &ConnectOptions::default(),
        )
        .await
        .unwrap_err();
        let ClientError::Connect { failures } = &error else {
            panic!("{error:?}");
        };
        let tried: Vec<&str> = failures.iter().map(|f| f.address.as_str()).collect();
        assert_eq!(tried, ["127.0.0.1:1", "127.0.0.1:2"]);
        assert_eq!(
            error.to_string(),
            "could not connect to any broker of 127.0.0.1:1, 127.0.0.1:2: connection refused"
        );
    }

    /// A port that accepts connections and never answers fails within the connect
    /// timeout, saying so, instead of when HTTP/2 keep-alive gives up (50 s).
    #[tokio::test]
    async fn a_port_that_accepts_and_never_answers_fails_within_the_connect_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                open.push(socket);
            }
        });
        let timeouts = Timeouts {
            connect: Duration::from_millis(300),
            ..Timeouts::default()
        };
        let started = std::time::Instant::now();
        let error = tokio::time::timeout(
            Duration::from_secs(20),
            connect(std::slice::from_ref(&address), &timeouts.into()),
        )
        .await
        .expect("bounded by the connect timeout")
        .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5), "{error}");
        let ClientError::Connect { failures } = &error else {
            panic!("{error:?}");
        };
        assert_eq!(
            failures[0].reason,
            FailureReason::Silent(Duration::from_millis(300))
        );
        assert_eq!(
            error.to_string(),
            format!("broker {address} accepted the connection but did not answer within 300 ms")
        );
        held.abort();
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(human_duration(Duration::from_millis(300)), "300 ms");
        assert_eq!(human_duration(Duration::from_secs(3)), "3 s");
        assert_eq!(human_duration(Duration::from_millis(1500)), "1.5 s");
    }

    #[test]
    fn zero_timeouts_are_refused() {
        let zero = Timeouts {
            connect: Duration::ZERO,
            ..Timeouts::default()
        };
        assert!(matches!(zero.check(), Err(ClientError::Config(_))));
        assert!(Timeouts::default().check().is_ok());
    }
}
