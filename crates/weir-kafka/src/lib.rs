//! The Kafka protocol adapter of Weir: a TCP listener that speaks Kafka's wire protocol
//! so Kafka clients (librdkafka and its bindings, kafka-python, aiokafka, kcat) can use
//! a Weir broker. It decodes requests, calls the broker core through [`Handler`], and
//! encodes the answers.
//!
//! ```text
//!  client ──frame──▶ frame.rs (length, limit, request header)
//!                       │
//!                       ▼
//!                connection/ ────ApiVersions──▶ apis.rs (the table of served versions)
//!                       │
//!                       ▼ every other served api
//!                 Handler::handle (the broker core)
//!                       │
//!  client ◀──answers, in request order (length + response header + body chunks)
//! ```
//!
//! The messages are kafka-protocol's generated types; this crate writes none by hand.
//! What Kafka does at the edges (an unknown api or version closes the connection; an
//! ApiVersions request of a version above the served range is answered at v0 with
//! UNSUPPORTED_VERSION, KIP-511) is kept exactly; the module docs say where.
//!
//! Architecture invariant: this crate must never know storage or gRPC. It depends on
//! no `weir-log`, `weir-cluster` or `weir-server`, and on no tonic, prost or
//! `weir-proto`: the broker core is behind [`Handler`], which speaks Kafka messages.

pub mod apis;
pub mod connection;
pub mod frame;
pub mod handler;
pub mod handlers;
pub mod sasl;
pub mod share_sessions;
#[cfg(test)]
mod testing;

pub use apis::SUPPORTED;
pub use connection::{
    Limits, MAX_IN_FLIGHT_PER_CONNECTION, MAX_IN_FLIGHT_REQUEST_BYTES_PER_CONNECTION, Options,
    serve, serve_broker, serve_with, serve_with_limits,
};
pub use frame::{MAX_REQUEST_FRAME_BYTES, Request};
pub use handler::{Chunk, ConnectionInfo, Handler, HandlerError, Pending, Response, Shared};
pub use handlers::KafkaBroker;
