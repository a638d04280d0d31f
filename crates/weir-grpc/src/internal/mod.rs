//! The brokers' internal gRPC API (`weir.internal.v1`, `proto/weir/internal/v1/`): what
//! brokers say to each other, served on the internal listener and never offered through
//! reflection.
//!
//! - `fetch_session`: `Replication.FetchSession`, one follower's bidirectional stream to
//!   one leader ([`FetchSessionService`] over a [`FetchServer`], and
//!   [`GrpcFetchSessions`], the follower's [`FetchSessions`]).
//! - `controller`: `Controller.Call` and `Controller.FetchMetadata` ([`ControllerService`]
//!   over a [`ControllerHandler`], and [`GrpcControllerClient`]).
//! - `quorum`: `Quorum.Raft`, openraft's RPCs as bytes ([`QuorumService`] over a
//!   [`Quorum`], and [`GrpcQuorumTransport`], the quorum's [`QuorumTransport`]).
//! - `transactions`: `Transactions.WriteTxnMarkers`, a transaction coordinator's
//!   markers written by the leaders of its partitions, and
//!   `Transactions.VerifyPartitions`, a partition leader's produce-time check at the
//!   coordinator ([`TransactionsService`] over the broker core; [`GrpcMarkerWriter`], the
//!   coordinator's [`MarkerWriter`] that groups partitions by leader; and
//!   [`GrpcTxnVerifier`], the core's way to a coordinator on another broker).
//! - `reports`: `Reports.Groups`, `Reports.Disk`, `Reports.Offsets` and
//!   `Reports.DescribeGroups`, each broker's part of a cluster-wide answer ([`ReportsService`], and [`GrpcPeerReports`], the core's
//!   [`PeerReports`]).
//! - `forward`: `Forward`, share-group calls carried to a group's share coordinator and
//!   produces carried to a partition's leader ([`ForwardService`] over the broker core,
//!   and [`GrpcForwarder`], the core's [`ShareForwarder`] and [`ProduceForwarder`]).
//! - `convert`: the wire forms of the cluster's types; `peers`: one lazily connected
//!   channel per peer address.
//!
//! The service constructors here ([`replication_service`], [`controller_service`],
//! [`quorum_service`], [`transactions_service`], [`reports_service`], [`forward_service`])
//! set each service's message limits, and [`server_builder`] the
//! transport settings; the broker adds the services to the internal listener's server.
//! Failures become `tonic::Status` in one place, the end of this file.
//!
//! [`FetchServer`]: weir_cluster::replication::FetchServer
//! [`FetchSessions`]: weir_cluster::replication::FetchSessions
//! [`Quorum`]: weir_cluster::quorum::Quorum
//! [`QuorumTransport`]: weir_cluster::quorum::QuorumTransport
//! [`MarkerWriter`]: weir_cluster::txn::MarkerWriter
//! [`PeerReports`]: weir_broker::cluster_reports::PeerReports
//! [`ShareForwarder`]: weir_broker::shares::ShareForwarder
//! [`ProduceForwarder`]: weir_broker::produce::ProduceForwarder

mod controller;
mod convert;
mod fetch_session;
mod forward;
pub mod peers;
mod quorum;
mod reports;
mod transactions;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tonic::transport::Server;
use tonic::{Code, Status};
use weir_cluster::quorum::{MAX_RPC_BYTES, Quorum};
use weir_cluster::replication::FetchServer;
use weir_proto::internal::v1::controller_server::ControllerServer;
use weir_proto::internal::v1::forward_server::ForwardServer;
use weir_proto::internal::v1::quorum_server::QuorumServer;
use weir_proto::internal::v1::replication_server::ReplicationServer;
use weir_proto::internal::v1::reports_server::ReportsServer;
use weir_proto::internal::v1::transactions_server::TransactionsServer;

use crate::{CONNECTION_WINDOW_BYTES, MAX_CONCURRENT_STREAMS_PER_CONNECTION, STREAM_WINDOW_BYTES};

pub use controller::{
    CONTROLLER_WIRE_VERSION, ControllerClientError, ControllerHandler, ControllerHandlerError,
    ControllerService, DEFAULT_CONTROLLER_CALL_TIMEOUT, GrpcControllerClient,
    MAX_METADATA_RECORDS_PER_FETCH,
};
pub use fetch_session::{
    FetchSessionService, GrpcFetchSessions, MAX_OUTSTANDING_FETCHES_PER_SESSION,
    MAX_PARTITION_FETCH_BYTES, SESSION_MESSAGE_TARGET_BYTES, SESSION_OPEN_TIMEOUT,
};
pub(crate) use forward::core_error;
pub use forward::{ForwardService, GrpcForwarder};
pub use quorum::{GrpcQuorumTransport, QuorumService};
pub use reports::{GrpcPeerReports, ReportsService};
pub use transactions::{
    GrpcMarkerWriter, GrpcTxnVerifier, MARKER_CALL_TIMEOUT, TransactionsService,
    VERIFY_CALL_TIMEOUT,
};

/// Largest fetch session request message: [`MAX_FETCHES_PER_MESSAGE`](weir_cluster::replication::MAX_FETCHES_PER_MESSAGE) fetches of a few
/// dozen bytes each, with room for long topic ids.
pub const MAX_SESSION_REQUEST_BYTES: usize = 4 * 1024 * 1024;
/// Largest fetch session response message: answers ready together fill a message up to
/// [`SESSION_MESSAGE_TARGET_BYTES`] of batches, and the last one added may bring up to
/// [`MAX_PARTITION_FETCH_BYTES`] plus one batch over it (a fetch always returns at least
/// one batch, up to `MAX_BATCH_BYTES`).
pub const MAX_SESSION_RESPONSE_BYTES: usize = SESSION_MESSAGE_TARGET_BYTES
    + MAX_PARTITION_FETCH_BYTES as usize
    + weir_cluster::storage::MAX_BATCH_BYTES
    + FRAMING_ALLOWANCE_BYTES;
/// Largest controller call or metadata fetch request (a request is a few hundred bytes;
/// a topic's configs a few KiB).
pub const MAX_CONTROLLER_REQUEST_BYTES: usize = 4 * 1024 * 1024;
/// Largest controller reply: a metadata fetch may answer with the whole image, which is
/// at most a snapshot's size.
pub const MAX_CONTROLLER_REPLY_BYTES: usize = MAX_RPC_BYTES;
/// Largest quorum message either way: the quorum's own limit plus the protobuf framing.
pub const MAX_RAFT_MESSAGE_BYTES: usize = MAX_RPC_BYTES + FRAMING_ALLOWANCE_BYTES;
/// Largest WriteTxnMarkers message either way: at most
/// [`MAX_PARTITIONS_PER_REQUEST`](weir_broker::limits::MAX_PARTITIONS_PER_REQUEST)
/// partitions, each a topic name and a few numbers.
pub const MAX_MARKER_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Largest report message either way: a broker's groups (tens of bytes each) or its
/// topics' disk use, for a broker with hundreds of thousands of either.
pub const MAX_REPORT_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// Largest forwarded message either way: a share fetch's answer, at most what a public
/// call's may be, or a produce's one batch, with the framing around them.
pub const MAX_FORWARD_MESSAGE_BYTES: usize =
    weir_broker::limits::MAX_RESPONSE_BYTES + FRAMING_ALLOWANCE_BYTES;
/// Room for protobuf field tags and lengths around the payloads the limits above count.
const FRAMING_ALLOWANCE_BYTES: usize = 1024 * 1024;

/// How long a peer may take to accept a TCP connection. Short: peers are on the same
/// network, and a voter or leader that does not answer is better treated as down soon.
pub const PEER_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// HTTP/2 keep-alive ping interval on connections to peers (sent even when idle), so a
/// peer that vanished without closing its connections (power loss, network cut, a
/// paused process) is noticed without waiting for TCP.
pub const PEER_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
/// A keep-alive ping unanswered this long closes the connection: every call and session
/// on it fails (sessions end, and the follower re-opens one).
pub const PEER_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(2);

/// The `Replication` service (fetch sessions) over `server`, the leader side of
/// replication, with its message limits. Sessions end when `stopping` turns true.
pub fn replication_service(
    server: Arc<dyn FetchServer>,
    stopping: watch::Receiver<bool>,
) -> ReplicationServer<FetchSessionService> {
    ReplicationServer::new(FetchSessionService::new(server, stopping))
        .max_decoding_message_size(MAX_SESSION_REQUEST_BYTES)
        .max_encoding_message_size(MAX_SESSION_RESPONSE_BYTES)
}

/// The `Controller` service over `handler`, with its message limits.
pub fn controller_service(
    handler: Arc<dyn ControllerHandler>,
) -> ControllerServer<ControllerService> {
    ControllerServer::new(ControllerService::new(handler))
        .max_decoding_message_size(MAX_CONTROLLER_REQUEST_BYTES)
        .max_encoding_message_size(MAX_CONTROLLER_REPLY_BYTES)
}

/// The `Quorum` service over this voter's `quorum`, with its message limits. Voters
/// only: on a broker outside the voter set, peers get UNIMPLEMENTED, which their
/// transport treats as unreachable.
pub fn quorum_service(quorum: Quorum) -> QuorumServer<QuorumService> {
    QuorumServer::new(QuorumService::new(quorum))
        .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES)
}

/// The `Transactions` service (transaction markers written here for a coordinator on
/// another broker) over the broker `core`, with its message limits.
pub fn transactions_service(
    core: Arc<weir_broker::Broker>,
) -> TransactionsServer<TransactionsService> {
    TransactionsServer::new(TransactionsService::new(core))
        .max_decoding_message_size(MAX_MARKER_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MARKER_MESSAGE_BYTES)
}

/// The `Reports` service (this broker's part of a cluster-wide answer) over the broker
/// `core`, with its message limits.
pub fn reports_service(core: Arc<weir_broker::Broker>) -> ReportsServer<ReportsService> {
    ReportsServer::new(ReportsService::new(core))
        .max_decoding_message_size(MAX_REPORT_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_REPORT_MESSAGE_BYTES)
}

/// The `Forward` service (calls other brokers' clients made, run here) over the broker
/// `core`, with its message limits.
pub fn forward_service(core: Arc<weir_broker::Broker>) -> ForwardServer<ForwardService> {
    ForwardServer::new(ForwardService::new(core))
        .max_decoding_message_size(MAX_FORWARD_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_FORWARD_MESSAGE_BYTES)
}

/// A tonic server set up for the internal listener: the HTTP/2 windows of the public one
/// (replication moves MiB batches), its stream limit, and keep-alive pings so a vanished
/// follower's session ends. The caller adds the services and serves with `TCP_NODELAY`
/// (`TcpIncoming::with_nodelay`).
pub fn server_builder() -> Server {
    Server::builder()
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .max_frame_size(crate::MAX_FRAME_BYTES)
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS_PER_CONNECTION)
        .http2_keepalive_interval(Some(PEER_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(PEER_KEEPALIVE_TIMEOUT))
        .trace_fn(|req| tracing::info_span!("internal_rpc", method = %req.uri().path()))
}

// The statuses of the internal services' failures are built in `status.rs` with every
// other status (`crate::status::internal`).
use crate::status::internal::{
    handler_status, malformed, oversized, quorum_status, shutting_down, too_many_fetches,
    wire_version_mismatch, wrong_voter,
};

/// Whether a failed call to a peer means the peer is not there (or cannot serve this
/// build's call) rather than that one call broke: the caller backs off before trying
/// that peer again instead of retrying at once.
fn peer_unreachable(status: &Status) -> bool {
    match status.code() {
        // Connection refused or reset, name not resolved, keep-alive expired, server
        // shutting down.
        Code::Unavailable
        // Not a voter, or a build without the service.
        | Code::Unimplemented
        // Another wire version, or meant for another node: retrying at once is futile.
        | Code::InvalidArgument
        | Code::FailedPrecondition
        // The connection broke under the call (h2 reset, a proxy or load balancer that
        // accepts and drops): tonic reports it as Cancelled, or as Unknown "transport
        // error". Retried at once, a stopped voter behind a proxy drew about 290 failed
        // calls a second, each logged (docs/replication.md § Found 8).
        | Code::Cancelled => true,
        Code::Unknown => status.message().starts_with("transport error"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_connection_makes_a_peer_unreachable_but_an_answer_does_not() {
        assert!(peer_unreachable(&Status::unavailable("connection refused")));
        assert!(peer_unreachable(&Status::cancelled("h2 protocol error")));
        assert!(peer_unreachable(&Status::unknown(
            "transport error: connection reset"
        )));
        assert!(!peer_unreachable(&Status::unknown(
            "the state machine failed"
        )));
        assert!(!peer_unreachable(&Status::internal("a bug")));
        assert!(!peer_unreachable(&Status::deadline_exceeded("slow")));
    }
}
