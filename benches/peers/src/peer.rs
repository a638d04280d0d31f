//! What the workloads ask of a peer, and the adapters that answer through each peer's
//! official Rust client: [`jetstream`] (async-nats), [`redis_streams`] (redis) and
//! [`rabbitmq_stream`] (rabbitmq-stream-client, behind the `rabbitmq` feature) and
//! [`kafka_wire`] (librdkafka through rdkafka, behind the `kafka` feature: any broker that
//! speaks Kafka's protocol, Weir's Kafka listener among them).
//!
//! The workloads are generic over [`Peer`], so every peer runs the same loops with the same
//! windows; only what is specific to a protocol lives in an adapter: how a batch of records
//! is sent and acknowledged, how records are read back, and what an ack means there.

pub mod jetstream;
#[cfg(feature = "kafka")]
pub mod kafka_wire;
#[cfg(feature = "rabbitmq")]
pub mod rabbitmq_stream;
pub mod redis_streams;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use clap::ValueEnum;

use crate::result::{Acks, Durability};

/// The peers this bench drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PeerKind {
    /// NATS JetStream (file storage), through async-nats.
    Nats,
    /// Redis Streams (XADD/XREAD, AOF), through the redis crate.
    Redis,
    /// RabbitMQ streams (stream protocol), through rabbitmq-stream-client. Needs the
    /// `rabbitmq` cargo feature.
    Rabbitmq,
    /// Any broker speaking Kafka's wire protocol (Weir's Kafka listener, Tansu), through
    /// librdkafka. Needs the `kafka` cargo feature; `--system` names the broker.
    Kafka,
}

impl PeerKind {
    /// The name results carry in `system`.
    pub fn name(self) -> &'static str {
        match self {
            PeerKind::Nats => "nats",
            PeerKind::Redis => "redis",
            PeerKind::Rabbitmq => "rabbitmq",
            PeerKind::Kafka => "kafka",
        }
    }

    /// The port `benches/run-peers.sh` starts this peer on (none is the peer's default
    /// port, so a bench never lands on a server it did not mean to load).
    pub fn default_port(self) -> u16 {
        match self {
            PeerKind::Nats => 17422,
            PeerKind::Redis => 17479,
            PeerKind::Rabbitmq => 17452,
            PeerKind::Kafka => 17409,
        }
    }
}

/// A connection to a peer, able to set up streams and hand out producers and consumers.
pub trait Peer: Send + Sync + 'static {
    type Producer: Producer;
    type Subscription: Subscription;

    /// Server name and version (`nats-server 2.9.10`).
    fn server(&self) -> String;

    /// Client library and version (`async-nats 0.51.0`).
    fn client(&self) -> String;

    /// Makes later appends acknowledge at `durability` where the server can be told so at
    /// run time, and says what an ack will then mean.
    fn set_durability(
        &mut self,
        durability: Durability,
    ) -> impl Future<Output = anyhow::Result<Acks>> + Send;

    /// Deletes `stream` if it exists and creates it empty.
    fn recreate_stream(&self, stream: &str) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Records in `stream`, `None` if it does not exist or the peer cannot say.
    fn stream_len(&self, stream: &str) -> impl Future<Output = anyhow::Result<Option<u64>>> + Send;

    /// A producer appending to `stream`, sized for `window_records` unacknowledged records.
    fn producer(
        &self,
        stream: &str,
        window_records: usize,
    ) -> impl Future<Output = anyhow::Result<Self::Producer>> + Send;

    /// A consumer reading `stream` from its first record, fetching up to `fetch_records`
    /// at a time.
    fn subscribe(
        &self,
        stream: &str,
        fetch_records: usize,
    ) -> impl Future<Output = anyhow::Result<Self::Subscription>> + Send;
}

/// Appends records to one stream.
pub trait Producer: Send + Sync + 'static {
    /// Sends `records` in order and resolves once every one is acknowledged (or fails).
    /// The future owns what it needs, so callers keep several in flight: that is the
    /// pipelining, and it is the same for every peer.
    fn append(
        &self,
        records: Vec<Bytes>,
    ) -> impl Future<Output = anyhow::Result<()>> + Send + 'static;
}

/// Reads one stream in order.
pub trait Subscription: Send + 'static {
    /// Waits up to `wait` for records and passes each payload to `visit`, as many as have
    /// arrived (a bounded batch); returns how many. 0 means none arrived in time.
    fn next_batch<F>(
        &mut self,
        wait: Duration,
        visit: F,
    ) -> impl Future<Output = anyhow::Result<usize>> + Send
    where
        F: FnMut(&[u8]) + Send;
}

/// How to reach a peer's server, and the bounds of talking to it.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    /// A loopback address (checked when the command line is parsed).
    pub addr: SocketAddr,
    /// How long connecting and each control request (create, delete, info) may take.
    pub request_timeout: Duration,
}

/// Most records a subscription hands out per `next_batch`, so a consumer that never
/// catches up still returns to its caller (for progress and deadlines) regularly.
pub const MAX_RECORDS_PER_POLL: usize = 65_536;
