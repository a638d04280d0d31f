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
pub mod properties;
mod queues;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;
use weir_broker::budget::Budget;
use weir_broker::{Broker, Listener, Protocol};

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

/// How the listener runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The broker-wide budget this listener takes connections from.
    pub budget: Arc<Budget>,
}

/// How long the accept loop waits after a failed accept (out of file descriptors).
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(50);

/// What every connection of one listener shares: the core, and what this broker
/// remembers of the queues declared through it.
#[derive(Debug)]
pub(crate) struct Shared {
    pub broker: Arc<Broker>,
    /// Queue name to what this broker knows of it beyond the metadata (the connection
    /// holding an exclusive queue).
    pub declared: Mutex<HashMap<String, queues::Declared>>,
    /// Queue name to the consumers this listener runs on it.
    pub consumers: Mutex<HashMap<String, u32>>,
}

/// Accepts AMQP connections on `listener` until `stopping` turns true (or its sender is
/// dropped), then closes every connection (320 CONNECTION_FORCED) and returns.
pub async fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    mut stopping: watch::Receiver<bool>,
    options: Options,
) {
    let shared = Arc::new(Shared {
        broker,
        declared: Mutex::new(HashMap::new()),
        consumers: Mutex::new(HashMap::new()),
    });
    let mut connections = JoinSet::new();
    let mut next_id = 0u64;
    while !*stopping.borrow_and_update() {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Some(slot) = options.budget.try_connection("amqp") else {
                        tracing::debug!(%peer, "closed an AMQP connection: at max_connections");
                        drop(stream);
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let id = next_id;
                    next_id += 1;
                    let span = tracing::debug_span!("amqp_connection", id, %peer);
                    let shared = shared.clone();
                    let stopping = stopping.clone();
                    connections.spawn(
                        async move {
                            let _slot = slot;
                            connection::run(stream, peer, shared, stopping).await;
                        }
                        .instrument(span),
                    );
                }
                Err(err) => {
                    tracing::warn!(error = %err, "accepting an AMQP connection failed");
                    tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                }
            },
            changed = stopping.changed() => if changed.is_err() {
                break;
            },
            Some(joined) = connections.join_next(), if !connections.is_empty() => {
                log_panic(joined);
            }
        }
    }
    drop(listener);
    while let Some(joined) = connections.join_next().await {
        log_panic(joined);
    }
}

fn log_panic(joined: Result<(), tokio::task::JoinError>) {
    if let Err(err) = joined
        && err.is_panic()
    {
        tracing::error!(error = %err, "an AMQP connection task panicked");
    }
}
