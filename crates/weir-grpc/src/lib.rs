//! The gRPC adapter: Weir's public gRPC API (Producer, Consumer, Admin, Groups, Queues,
//! with health and reflection) over the protocol-neutral core (`weir-broker`), the
//! brokers' internal services (`internal/`: fetch sessions, controller calls, Raft,
//! transactions, reports, forwarded share-group calls and produces) with the clients
//! by which one broker reaches another's, the tower layers every client call passes
//! (over-size requests, the broker-wide budget, authentication, request quotas, the
//! listener), and the gRPC clients by which one broker reads another's public services
//! (share reads, dead letters). A sibling of the Kafka, AMQP and console adapters;
//! `weir-server` assembles them into the broker process.
//!
//! Errors become `tonic::Status` in one place, `status.rs`.
//!
//! Architecture invariant: this crate knows the API (prost types, via `weir-proto`) and
//! the core; nothing below it sees a prost type, and it never knows the on-disk layout.

mod admin;
mod authn;
mod budget;
mod consume;
mod consume_body;
mod convert;
mod groups;
mod grpc;
pub mod internal;
mod oversize;
mod page;
mod produce;
mod queues;
mod request_quota;
mod security_admin;
mod share_reads;
mod status;
mod tokens;
mod transactions;

use std::sync::Arc;

use weir_cluster::TopicRegistry;
use weir_cluster::controller::records::Endpoints;

pub use admin::AdminService;
pub use consume::{
    CONSUME_CHANNEL_CAPACITY, ConsumerService, DEFAULT_FETCH_MAX_BYTES,
    DEFAULT_PARTITION_FETCH_BYTES, MAX_FETCH_WAIT,
};
pub use groups::GroupsService;
pub use grpc::{GrpcServices, ListenerLayer};
pub use page::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, MAX_PAGE_TOKEN_CHARS};
pub use produce::{
    DEFAULT_PRODUCE_TIMEOUT, MAX_IN_FLIGHT_PER_STREAM, PRODUCE_STREAM_RESPONSE_BUFFER,
    ProducerService,
};
pub use queues::QueuesService;
pub use share_reads::GrpcRemoteLog;
pub use transactions::{DEFAULT_TRANSACTION_TIMEOUT_MS, TransactionsService};
pub use weir_broker::Metrics;

/// Largest gRPC response the broker sends (the core's limit on any answer).
pub use weir_broker::limits::MAX_RESPONSE_BYTES;
/// HTTP/2 per-stream flow-control window. tonic's 64 KiB default caps one stream's
/// throughput on a fast link well below what the log can take.
pub const STREAM_WINDOW_BYTES: u32 = 4 * 1024 * 1024;
/// HTTP/2 per-connection flow-control window (several busy streams share it).
pub const CONNECTION_WINDOW_BYTES: u32 = 16 * 1024 * 1024;
/// Largest HTTP/2 frame the broker accepts (it tells peers in its SETTINGS). The
/// protocol's default, 16 KiB, splits a 1 MiB produce request into 64 DATA frames,
/// each a frame header, a flow-control step and a poll of the connection.
pub const MAX_FRAME_BYTES: u32 = 1024 * 1024;
/// Concurrent streams per client connection; with the windows above this bounds what
/// one connection can make the broker buffer.
pub const MAX_CONCURRENT_STREAMS_PER_CONNECTION: u32 = 256;

/// What the services share: the protocol-neutral core, and what only the gRPC
/// listeners know (the addresses DescribeCluster hands out).
#[derive(Debug)]
pub struct Broker {
    /// The protocol-neutral core every listener serves.
    pub core: Arc<weir_broker::Broker>,
    /// The listeners this broker advertises, as it registers them: what metadata
    /// answers show for it before it is registered.
    pub this_broker: Endpoints,
    /// How this broker dials other brokers' listeners (share reads, dead letters,
    /// forwards): TLS when the listeners speak it.
    pub peer_tls: Option<weir_security::dial::TlsDialer>,
    /// The broker-wide budget every client listener takes from.
    pub budget: Arc<weir_broker::budget::Budget>,
}

impl Broker {
    /// The core's topic registry.
    pub fn registry(&self) -> &Arc<TopicRegistry> {
        self.core.registry()
    }

    /// The core's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        self.core.metrics()
    }
}

pub use weir_broker::until_stopping;

/// The core's context for a gRPC request: the one the request-time quota's layer made
/// for the call (`request_quota`), or else (a call it does not count) one built by
/// [`grpc_context_of`].
pub(crate) fn grpc_context<T>(request: &tonic::Request<T>) -> weir_broker::RequestContext {
    match request.extensions().get::<weir_broker::RequestContext>() {
        Some(ctx) => ctx.clone(),
        None => grpc_context_of(request.extensions()),
    }
}

/// The core's context for a gRPC call, from its extensions: the only place one is
/// built. The user the core authenticated for the call (`authn`: its call credentials,
/// a password or an API token, else its verified client certificate's principal) is
/// the principal; otherwise the request is anonymous.
pub(crate) fn grpc_context_of(extensions: &::http::Extensions) -> weir_broker::RequestContext {
    let peer = authn::peer_addr(extensions);
    // The listener the call came in on ([`ListenerLayer`]); the client
    // listener's for a router without one.
    let listener = extensions
        .get::<weir_broker::Listener>()
        .copied()
        .unwrap_or(weir_broker::Listener::GRPC);
    let mut context = weir_broker::RequestContext::anonymous(listener, peer);
    let user = extensions.get::<authn::AuthenticatedUser>();
    context.authenticated_by_token = user.is_some_and(|u| u.by_token);
    if let Some(user) = user {
        context.principal = weir_broker::Principal::User(user.name.clone());
    }
    context
}

#[cfg(test)]
mod tests {
    use tonic::transport::server::Connected;
    use weir_broker::Principal;
    use weir_security::dial::TlsDialer;
    use weir_security::tls::{ALPN_H2, ServerTls, TlsFiles, accept};

    use super::{authn, grpc_context};

    /// A request as tonic hands it to a service, over a real TLS connection on loopback
    /// whose client presented `identity` (a `weir dev certs` stem) or no certificate.
    async fn request_over_tls(identity: Option<&str>) -> tonic::Request<()> {
        let dir = tempfile::tempdir().unwrap();
        weir_security::certs::generate(&[])
            .unwrap()
            .write(dir.path())
            .unwrap();
        let files = TlsFiles {
            cert: dir.path().join("node.pem"),
            key: dir.path().join("node-key.pem"),
            client_ca: Some(dir.path().join("ca.pem")),
        };
        let tls = ServerTls::load("test", files, &[ALPN_H2]).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            accept(&tls, stream).await.unwrap()
        });
        let (cert, key) = identity.map_or((None, None), |stem| {
            (
                Some(dir.path().join(format!("{stem}.pem"))),
                Some(dir.path().join(format!("{stem}-key.pem"))),
            )
        });
        let dialer = TlsDialer::from_files(
            &dir.path().join("ca.pem"),
            cert.as_deref().zip(key.as_deref()),
        )
        .unwrap();
        let _client = dialer.connect("127.0.0.1", port).await.unwrap();
        let stream = server.await.unwrap();
        let mut request = tonic::Request::new(());
        request.extensions_mut().insert(stream.connect_info());
        request
    }

    #[tokio::test]
    async fn a_client_certificate_is_presented_to_the_core_and_names_no_principal_by_itself() {
        let request = request_over_tls(Some("admin")).await;
        // What `AuthLayer` hands the core ...
        assert_eq!(
            authn::tls_principal(request.extensions()).as_deref(),
            Some("admin")
        );
        // ... which alone makes it the principal (an `AuthenticatedUser`), never the
        // bare certificate.
        let context = grpc_context(&request);
        assert_eq!(context.principal, Principal::Anonymous);
        assert!(context.peer.is_some_and(|p| p.ip().is_loopback()));

        let request = request_over_tls(None).await;
        assert_eq!(authn::tls_principal(request.extensions()), None);
        let context = grpc_context(&request);
        assert_eq!(context.principal, Principal::Anonymous);
        assert!(context.peer.is_some());
    }
}
