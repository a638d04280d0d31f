//! The AMQP 0-9-1 adapter of Weir: a TCP listener that speaks RabbitMQ's protocol so
//! its clients (pika, lapin, ...) can use a Weir broker (docs/amqp.md). A queue is a
//! topic and the share group that reads it; this crate decodes frames, calls the broker
//! core, and encodes the answers.
//!
//! ```text
//!  client ──frames──▶ frame.rs (length against frame_max, amq-protocol's decoder)
//!                        │
//!                        ▼
//!                 connection/ (handshake, heartbeats, channels, publishes, acks)
//!                   │          │                         ▲
//!                   ▼          ▼                         │ deliveries, confirms
//!             queues.rs    weir_broker::produce     consume.rs (share fetches)
//! ```
//!
//! Frames and methods are `amq-protocol`'s generated types; this crate writes none by
//! hand. Architecture invariant: it must never know storage or gRPC (no `weir-log`,
//! `weir-cluster`, `weir-server`, tonic or prost): the core is `weir-broker`.

mod connection;
mod consume;
pub mod errors;
mod exchanges;
pub mod frame;
mod overflow;
pub mod properties;
mod queues;
pub mod vhost;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::sync::watch;
use weir_broker::authn::Authenticated;
use weir_broker::budget::Budget;
use weir_broker::listener_kit::{self, Closing, Connection, ConnectionHandler};
use weir_broker::{Broker, BrokerError, Listener, Protocol, RequestContext};
use weir_security::tls::ServerTls;

pub use connection::{
    HEARTBEAT, MAX_BODY_BYTES, MAX_CHANNELS, MAX_CONSUMERS_PER_CHANNEL, MAX_PENDING_PUBLISHES,
    MAX_UNACKED_PER_CONSUMER,
};
pub use frame::{MAX_FRAME_BYTES, MIN_FRAME_BYTES};

/// AMQP 0-9-1, as the broker's listener table knows it (weir-server's `listeners.rs`).
pub const PROTOCOL: Protocol = Protocol {
    name: "amqp",
    default_listener: "amqp",
};

/// The AMQP listener (`--amqp-listen`): the name its address is advertised under.
pub const LISTENER: Listener = Listener {
    name: "amqp",
    protocol: PROTOCOL,
};

/// The AMQP listener over TLS (`--amqps-listen`, RabbitMQ's `amqps` on 5671).
pub const TLS_LISTENER: Listener = Listener {
    name: "amqps",
    protocol: PROTOCOL,
};

/// How the listener runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Which listener this is: [`LISTENER`] or [`TLS_LISTENER`] (connections are counted
    /// and authenticated under its name).
    pub listener: Listener,
    /// The broker-wide budget this listener takes connections from.
    pub budget: Arc<Budget>,
    /// TLS on every connection (the `amqps` listener); `None`: plaintext.
    pub tls: Option<Arc<ServerTls>>,
}

/// What every connection of one listener shares: the core, and what this broker
/// remembers of the queues declared through it.
#[derive(Debug)]
pub(crate) struct Shared {
    pub broker: Arc<Broker>,
    /// The broker-wide budget: publishes take room in it for their bodies.
    pub budget: Arc<Budget>,
    /// Queue name to what this broker knows of it beyond the metadata (the connection
    /// holding an exclusive queue).
    pub declared: Mutex<HashMap<String, queues::Declared>>,
    /// Queues declared through this listener with `x-expires`: when each was last used.
    pub expiring: Mutex<HashMap<String, queues::Expiring>>,
    /// Queue name to the publishes in flight into it, for queues that refuse publishes
    /// past their `x-max-length` (`queues::admit_publish`).
    pub in_flight: Mutex<HashMap<String, u64>>,
}

/// Accepts AMQP connections on `listener` until `stopping` turns true (or its sender is
/// dropped), then closes every connection (320 CONNECTION_FORCED) and returns. The
/// listener kit (`weir_broker::listener_kit`) accepts and admits each connection (a
/// slot from the budget, turned away while the broker is cut off, TLS and a client
/// certificate checked by the core); `connection::run` serves it.
///
/// Boxed so the connection code is compiled in this crate, beside the other adapters,
/// rather than in the crate that starts the listener (an `async fn`'s body is compiled
/// where it is awaited; docs/ARCHITECTURE.md § Build time).
pub fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    stopping: watch::Receiver<bool>,
    options: Options,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(serve_until_stopped(listener, broker, stopping, options))
}

async fn serve_until_stopped(
    listener: TcpListener,
    broker: Arc<Broker>,
    stopping: watch::Receiver<bool>,
    options: Options,
) {
    let shared = Arc::new(Shared {
        broker,
        budget: options.budget.clone(),
        declared: Mutex::new(HashMap::new()),
        expiring: Mutex::new(HashMap::new()),
        in_flight: Mutex::new(HashMap::new()),
    });
    tokio::spawn(queues::expire_unused_queues(
        Arc::downgrade(&shared),
        stopping.clone(),
    ));
    let kit = listener_kit::Options {
        listener: options.listener,
        tls: options.tls,
        budget: options.budget,
        // AMQP's heartbeats find a dead peer (two intervals unheard).
        idle_timeout: None,
    };
    listener_kit::serve(listener, Arc::new(AmqpConnections(shared)), stopping, kit).await;
}

/// An AMQP listener's side of the listener kit.
struct AmqpConnections(Arc<Shared>);

impl ConnectionHandler for AmqpConnections {
    async fn serve(&self, connection: Connection, closing: Closing) {
        connection::run(connection, self.0.clone(), closing).await;
    }

    fn is_cut_off(&self) -> bool {
        self.0.broker.is_cut_off()
    }

    async fn until_cut_off(&self) {
        self.0.broker.until_cut_off().await;
    }

    async fn authenticate_certificate(
        &self,
        ctx: &RequestContext,
        principal: String,
    ) -> Result<Authenticated, BrokerError> {
        listener_kit::authenticate_certificate(&self.0.broker, ctx, principal).await
    }
}
