//! The listener kit: everything a connection-oriented protocol's listener does before
//! and around its own bytes, written once (Kafka and AMQP use it; Redis and SQS will).
//! A protocol supplies a [`ConnectionHandler`]: "serve this connection" (its stream,
//! peer, the user its client certificate proved, a signal to close) and asks of the
//! broker whether it is cut off and what a certificate proves. [`serve`] does the rest:
//!
//! - the accept loop, retrying after a failed accept ([`ACCEPT_RETRY_DELAY`]);
//! - a connection slot from the broker-wide [`Budget`] (`max_connections`), or the
//!   connection closed at once (the budget logs it, rate-limited);
//! - new connections turned away while the broker is cut off from its cluster
//!   ([`ConnectionHandler::is_cut_off`]), logged once each way, so clients go to the
//!   other brokers;
//! - TLS through weir-security's `tls::accept` with the configuration current when the
//!   connection arrives (so a certificate reload applies to new connections), plaintext
//!   refused there with its rate-limited line;
//! - a verified client certificate's principal handed to the core
//!   ([`ConnectionHandler::authenticate_certificate`]: `Broker::authentication()` with
//!   `Credentials::Certificate`, so the audit line and any refusal are the core's);
//! - the [`Closing`] signal a connection gets when the broker stops, when it is cut off,
//!   or after [`Options::idle_timeout`] with nothing read: the protocol answers what is
//!   in flight and closes; the accept loop returns once every connection has ended;
//! - per-listener counters ([`ListenerCounts`]: accepted, open, refused by reason);
//! - a connection task's panic logged, the listener serving on.

mod counts;
mod stream;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Interval;
use tracing::Instrument;
use weir_security::tls::{self, ServerTls};

use crate::authn::{Authenticated, Credentials};
use crate::budget::{Budget, ConnectionPermit};
use crate::context::{Listener, RequestContext};
use crate::error::BrokerError;

pub use counts::{ListenerCounts, OpenConnection, Refusal};
pub use stream::{ReadHalf, Stream, WriteHalf};

/// How long the accept loop waits after a failed accept (out of file descriptors) before
/// it tries again.
pub const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(50);

/// Shortest period of the idle check (a quarter of the timeout otherwise).
const MIN_IDLE_CHECK: Duration = Duration::from_millis(10);

/// How a listener's connections are admitted.
#[derive(Debug, Clone)]
pub struct Options {
    /// The listener: its name in logs and metrics, and the listener of the context a
    /// client certificate is authenticated in.
    pub listener: Listener,
    /// TLS on every connection; `None`: plaintext.
    pub tls: Option<Arc<ServerTls>>,
    /// The broker-wide budget connections are taken from (and counted in).
    pub budget: Arc<Budget>,
    /// Close a connection (through [`Closing`], [`CloseReason::Idle`]) once nothing has
    /// been read from its client for this long; `None`: never. A protocol with its own
    /// liveness (AMQP's heartbeats) or whose clients hold idle connections (Kafka) asks
    /// for none.
    pub idle_timeout: Option<Duration>,
}

impl Options {
    /// Plaintext, no caps, no idle timeout.
    pub fn new(listener: Listener) -> Options {
        Options {
            listener,
            tls: None,
            budget: Arc::default(),
            idle_timeout: None,
        }
    }
}

/// Why the kit asks a connection to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The broker is stopping.
    Stopping,
    /// The broker is cut off from its cluster: its clients should go to another.
    CutOff,
    /// Nothing was read for [`Options::idle_timeout`].
    Idle,
}

impl CloseReason {
    /// A few words for a log line or a protocol's close message.
    pub fn text(self) -> &'static str {
        match self {
            CloseReason::Stopping => "broker shutting down",
            CloseReason::CutOff => "broker cut off from its cluster",
            CloseReason::Idle => "connection idle too long",
        }
    }
}

/// The signal a connection handler gets to close: it stops reading requests, answers
/// those in flight, and returns.
#[derive(Debug, Clone)]
pub struct Closing(watch::Receiver<Option<CloseReason>>);

impl Closing {
    /// Why the connection was asked to close, if it was.
    pub fn reason(&self) -> Option<CloseReason> {
        *self.0.borrow()
    }

    /// Resolves once the connection is asked to close (at once if it was). Cancel-safe:
    /// a `select!` loop may call it again.
    pub async fn wait(&mut self) -> CloseReason {
        let reason = self.0.wait_for(Option::is_some).await.map(|r| *r);
        match reason {
            Ok(Some(reason)) => reason,
            // The kit keeps the sender while the handler runs.
            _ => std::future::pending().await,
        }
    }
}

/// An admitted connection, as the kit hands it to its protocol.
#[derive(Debug)]
pub struct Connection {
    /// Numbers the listener's connections from 0, for logs.
    pub id: u64,
    pub listener: Listener,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub stream: Stream,
    /// The user the client's verified TLS certificate proved to the core, if it
    /// presented one.
    pub certificate: Option<Authenticated>,
}

impl Connection {
    /// The core's context for this connection: its listener and peer, and the
    /// certificate's user as the principal (else anonymous).
    pub fn context(&self) -> RequestContext {
        let mut ctx = RequestContext::anonymous(self.listener, Some(self.peer));
        if let Some(user) = &self.certificate {
            user.apply(&mut ctx);
        }
        ctx
    }
}

/// What a protocol supplies to the kit.
pub trait ConnectionHandler: Send + Sync + 'static {
    /// Serves one connection until it ends, or until `closing` fires: then it stops
    /// reading, answers what is in flight and returns (the kit closes the socket when
    /// the stream is dropped).
    fn serve(&self, connection: Connection, closing: Closing) -> impl Future<Output = ()> + Send;

    /// Whether the broker can serve no client for now (cut off from its cluster): new
    /// connections are turned away meanwhile. The broker's is `Broker::is_cut_off`.
    fn is_cut_off(&self) -> bool;

    /// Resolves once [`Self::is_cut_off`] turns true (at once if it is): each open
    /// connection is then asked to close ([`CloseReason::CutOff`]).
    fn until_cut_off(&self) -> impl Future<Output = ()> + Send;

    /// What a verified client certificate naming `principal` proves: the broker's is
    /// [`authenticate_certificate`] (the core decides, audits and may refuse; a refused
    /// connection is closed).
    fn authenticate_certificate(
        &self,
        ctx: &RequestContext,
        principal: String,
    ) -> impl Future<Output = Result<Authenticated, BrokerError>> + Send;
}

/// The core's decision on a client certificate: `Broker::authentication()` with
/// `Credentials::Certificate`, audited there.
pub async fn authenticate_certificate(
    broker: &crate::Broker,
    ctx: &RequestContext,
    principal: String,
) -> Result<Authenticated, BrokerError> {
    broker
        .authentication()
        .authenticate(ctx, Credentials::Certificate(principal))
        .await
}

/// Accepts connections on `socket` and serves each with `handler` until `stopping`
/// turns true (or its sender is dropped); then every connection is asked to close, and
/// this returns once each has.
pub async fn serve<H: ConnectionHandler>(
    socket: TcpListener,
    handler: Arc<H>,
    mut stopping: watch::Receiver<bool>,
    options: Options,
) {
    let name = options.listener.name;
    let counts = options.budget.listener_counts().clone();
    let mut connections = JoinSet::new();
    let mut next_id = 0u64;
    let mut turning_away = false;
    while !*stopping.borrow_and_update() {
        tokio::select! {
            accepted = socket.accept() => match accepted {
                Ok((stream, peer)) if handler.is_cut_off() => {
                    if !turning_away {
                        tracing::warn!(
                            listener = name,
                            "this broker is cut off from the controller quorum: the \
                             listener's connections are closed and new ones turned away \
                             until it is back, so clients go to the other brokers"
                        );
                        turning_away = true;
                    }
                    tracing::debug!(listener = name, %peer, "turned a connection away (cut off)");
                    counts.refused(name, Refusal::CutOff);
                    drop(stream);
                }
                Ok((stream, peer)) => {
                    let Some(slot) = options.budget.try_connection(name) else {
                        // Closed at once: the client sees its connection end and retries
                        // (or tries another broker); the budget logs it, rate-limited.
                        tracing::debug!(listener = name, %peer, "closed a connection: at max_connections");
                        counts.refused(name, Refusal::MaxConnections);
                        drop(stream);
                        continue;
                    };
                    if turning_away {
                        tracing::info!(
                            listener = name,
                            "this broker is back in its cluster: connections are accepted again"
                        );
                        turning_away = false;
                    }
                    let id = next_id;
                    next_id += 1;
                    let span = tracing::debug_span!("connection", listener = name, id, %peer);
                    let admitted = Admitted {
                        id,
                        handler: handler.clone(),
                        stopping: stopping.clone(),
                        options: options.clone(),
                        slot,
                    };
                    connections.spawn(admitted.run(stream).instrument(span));
                }
                Err(err) => {
                    tracing::warn!(listener = name, error = %err, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                }
            },
            changed = stopping.changed() => if changed.is_err() {
                break;
            },
            Some(joined) = connections.join_next(), if !connections.is_empty() => {
                log_panic(name, joined);
            }
        }
    }
    drop(socket);
    while let Some(joined) = connections.join_next().await {
        log_panic(name, joined);
    }
}

fn log_panic(listener: &str, joined: Result<(), tokio::task::JoinError>) {
    if let Err(err) = joined
        && err.is_panic()
    {
        tracing::error!(listener, error = %err, "a connection task panicked");
    }
}

/// A connection that got its slot, and what it is served with.
struct Admitted<H> {
    id: u64,
    handler: Arc<H>,
    stopping: watch::Receiver<bool>,
    options: Options,
    /// The connection's place under `max_connections`, held until it closes.
    slot: ConnectionPermit,
}

impl<H: ConnectionHandler> Admitted<H> {
    /// Sets up TLS if the listener has it, has the core check a client certificate,
    /// and serves the connection, signalling it to close when it must.
    async fn run(self, stream: TcpStream) {
        let Admitted {
            id,
            handler,
            mut stopping,
            options,
            slot: _slot,
        } = self;
        let name = options.listener.name;
        let counts = options.budget.listener_counts();
        let (Ok(peer), Ok(local)) = (stream.peer_addr(), stream.local_addr()) else {
            // The peer is already gone.
            return;
        };
        // Protocols write whole answers at once; Nagle would hold back the last segment
        // of each until the client acknowledges the previous one.
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(error = %err, "TCP_NODELAY");
        }
        let activity = stream::Activity::new();
        let (stream, principal) = match &options.tls {
            None => (Stream::plain(stream, activity.clone()), None),
            Some(tls) => match tls::accept(tls, stream).await {
                Ok(stream) => {
                    let principal = tls::peer_principal(&stream);
                    (Stream::tls(stream, activity.clone()), principal)
                }
                Err(err) => {
                    // Plaintext is logged, rate-limited, by `tls::accept`.
                    if !matches!(err, tls::AcceptError::Plaintext) {
                        tracing::info!(listener = name, %peer, error = %err, "TLS connection refused");
                    }
                    counts.refused(name, Refusal::Tls);
                    return;
                }
            },
        };
        let certificate = match principal {
            None => None,
            Some(principal) => {
                let ctx = RequestContext::anonymous(options.listener, Some(peer));
                match handler.authenticate_certificate(&ctx, principal).await {
                    Ok(user) => Some(user),
                    Err(err) => {
                        tracing::info!(listener = name, %peer, reason = %err, "client certificate refused");
                        counts.refused(name, Refusal::Certificate);
                        return;
                    }
                }
            }
        };
        let connection = Connection {
            id,
            listener: options.listener,
            peer,
            local,
            stream,
            certificate,
        };
        let _open = counts.opened(name);
        let (close, closing) = watch::channel(None);
        let serving = handler.serve(connection, Closing(closing));
        tokio::pin!(serving);
        let cut_off = handler.until_cut_off();
        tokio::pin!(cut_off);
        let mut tick = options.idle_timeout.map(|timeout| {
            let mut tick = tokio::time::interval((timeout / 4).max(MIN_IDLE_CHECK));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick
        });
        let mut signalled = false;
        loop {
            tokio::select! {
                () = &mut serving => return,
                () = crate::until_stopping(&mut stopping), if !signalled => {
                    signalled = true;
                    close.send_replace(Some(CloseReason::Stopping));
                }
                () = &mut cut_off, if !signalled => {
                    tracing::debug!(listener = name, %peer, "closing a connection: cut off");
                    signalled = true;
                    close.send_replace(Some(CloseReason::CutOff));
                }
                () = idle_tick(&mut tick) => {
                    let timeout = options.idle_timeout.unwrap_or(Duration::MAX);
                    let idle = activity.idle_for();
                    if idle >= timeout && !signalled {
                        tracing::debug!(listener = name, %peer, ?idle, "closing an idle connection");
                        signalled = true;
                        close.send_replace(Some(CloseReason::Idle));
                    } else if close.borrow().is_some_and(|r| r == CloseReason::Idle)
                        && idle >= timeout.saturating_mul(2)
                    {
                        // Asked to close a whole timeout ago and still silent: dropped.
                        tracing::debug!(listener = name, %peer, "dropping an idle connection that did not close");
                        return;
                    }
                }
            }
        }
    }
}

/// The next idle check; never without an idle timeout.
async fn idle_tick(tick: &mut Option<Interval>) {
    match tick {
        Some(tick) => {
            tick.tick().await;
        }
        None => std::future::pending().await,
    }
}
