//! The gRPC listeners: the client services (health, reflection, Producer, Consumer,
//! Admin, Groups, Queues, Transactions) behind the oversize, budget, authentication and request-quota
//! layers; the internal services (replication, controller, quorum, transactions) on the internal
//! listener, or on the client listener when there is none; and serving a bound gRPC
//! listener with them. tonic's server keeps its own accept loop and HTTP/2 limits: the
//! connection cap is the budget's (`budget::capped`), TLS weir-security's.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use weir_broker::Listener;
use weir_cluster::node::ClusterNode;
use weir_proto::v1::admin_server::AdminServer;
use weir_proto::v1::consumer_server::ConsumerServer;
use weir_proto::v1::groups_server::GroupsServer;
use weir_proto::v1::producer_server::ProducerServer;
use weir_proto::v1::queues_server::QueuesServer;
use weir_proto::v1::transactions_server::TransactionsServer;

use tokio::net::TcpListener;
use weir_security::tls::ServerTls;

use crate::{
    AdminService, Broker, CONNECTION_WINDOW_BYTES, ConsumerService, GroupsService,
    MAX_CONCURRENT_STREAMS_PER_CONNECTION, MAX_FRAME_BYTES, MAX_RESPONSE_BYTES, ProducerService,
    QueuesService, STREAM_WINDOW_BYTES, TransactionsService, authn, budget, consume_body, internal,
    oversize, request_quota, until_stopping,
};

/// Serves a tonic router on `listener` until `stopping`, with TLS set up by
/// weir-security when `tls` is given (the connection types differ, hence a macro). A
/// client listener's connections each take a slot from `budget` (`budget::capped`).
macro_rules! serve_grpc {
    ($router:expr, $listener:expr, $tls:expr, $stopping:expr, capped by $budget:expr, $name:expr) => {{
        let mut stopping = $stopping;
        let signal = async move { until_stopping(&mut stopping).await };
        match $tls {
            Some(tls) => tokio::spawn($router.serve_with_incoming_shutdown(
                budget::capped(weir_security::tls::incoming(tls, $listener), $budget, $name),
                signal,
            )),
            None => tokio::spawn($router.serve_with_incoming_shutdown(
                budget::capped(
                    TcpIncoming::from($listener).with_nodelay(Some(true)),
                    $budget,
                    $name,
                ),
                signal,
            )),
        }
    }};
    ($router:expr, $listener:expr, $tls:expr, $stopping:expr) => {{
        let mut stopping = $stopping;
        let signal = async move { until_stopping(&mut stopping).await };
        match $tls {
            Some(tls) => tokio::spawn($router.serve_with_incoming_shutdown(
                weir_security::tls::incoming(tls, $listener),
                signal,
            )),
            None => tokio::spawn($router.serve_with_incoming_shutdown(
                TcpIncoming::from($listener).with_nodelay(Some(true)),
                signal,
            )),
        }
    }};
}

/// The gRPC services, made once and served on every gRPC listener.
pub struct GrpcServices {
    broker: Arc<Broker>,
    stopping: watch::Receiver<bool>,
    /// The client services: health, reflection, Producer, Consumer, Admin, Groups,
    /// Queues.
    client: Routes,
    /// The internal services (replication, controller, transactions, and the quorum's on
    /// a voter).
    internal: Routes,
    /// The client services and the internal ones, for the client listener of a broker
    /// without an internal listener of its own.
    client_and_internal: Routes,
    /// Whether the broker has an internal listener (`--internal-listen`).
    internal_listener: bool,
}

impl std::fmt::Debug for GrpcServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // tonic's routes print nothing useful.
        f.debug_struct("GrpcServices")
            .field("internal_listener", &self.internal_listener)
            .finish_non_exhaustive()
    }
}

impl GrpcServices {
    /// The services over `broker`; the internal ones serve `node`, with `controller`
    /// answering the controller calls of other brokers. `health` is the health service
    /// whose reporter the broker turns NOT_SERVING at shutdown.
    pub fn new<H>(
        broker: &Arc<Broker>,
        node: &ClusterNode,
        controller: Arc<dyn internal::ControllerHandler>,
        health: H,
        internal_listener: bool,
        stopping: watch::Receiver<bool>,
    ) -> anyhow::Result<GrpcServices>
    where
        H: tower::Service<
                ::http::Request<tonic::body::Body>,
                Error = std::convert::Infallible,
                Response = ::http::Response<tonic::body::Body>,
            > + tonic::server::NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        H::Future: Send + 'static,
    {
        Self::with_health(
            broker,
            node,
            controller,
            Routes::new(health),
            internal_listener,
            stopping,
        )
    }

    /// [`new`](Self::new) past its one generic step: `client` holds the health service.
    /// Not generic, so every service's server code is compiled here rather than in the
    /// crate that makes the services (docs/ARCHITECTURE.md § Build time).
    fn with_health(
        broker: &Arc<Broker>,
        node: &ClusterNode,
        controller: Arc<dyn internal::ControllerHandler>,
        client: Routes,
        internal_listener: bool,
        stopping: watch::Receiver<bool>,
    ) -> anyhow::Result<GrpcServices> {
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(weir_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let max_request = broker.core.max_request_bytes();
        let consumer_service = ConsumerService::new(broker.clone());
        let client = client
            .add_service(reflection().build_v1()?)
            .add_service(reflection().build_v1alpha()?)
            .add_service(
                ProducerServer::new(ProducerService::new(broker.clone()))
                    .max_decoding_message_size(max_request)
                    .max_encoding_message_size(MAX_RESPONSE_BYTES),
            )
            .add_service(consume_body::ConsumerRoutes::new(
                consumer_service.clone(),
                ConsumerServer::new(consumer_service)
                    .max_decoding_message_size(max_request)
                    .max_encoding_message_size(MAX_RESPONSE_BYTES),
            ))
            .add_service(
                AdminServer::new(AdminService::new(broker.clone()))
                    .max_decoding_message_size(max_request)
                    .max_encoding_message_size(MAX_RESPONSE_BYTES),
            )
            .add_service(
                GroupsServer::new(GroupsService::new(broker.clone()))
                    .max_decoding_message_size(max_request)
                    .max_encoding_message_size(MAX_RESPONSE_BYTES),
            )
            .add_service(
                QueuesServer::new(QueuesService::new(broker.clone()))
                    .max_decoding_message_size(max_request)
                    .max_encoding_message_size(MAX_RESPONSE_BYTES),
            )
            .add_service(
                TransactionsServer::new(TransactionsService::new(broker.clone()))
                    .max_decoding_message_size(max_request)
                    .max_encoding_message_size(MAX_RESPONSE_BYTES),
            );
        // An observer votes in no quorum: it has no Raft service.
        let add_internal = |routes: Routes| {
            let routes = routes
                .add_service(internal::replication_service(
                    broker.registry().clone(),
                    stopping.clone(),
                ))
                .add_service(internal::controller_service(controller.clone()))
                .add_service(internal::transactions_service(broker.core.clone()))
                .add_service(internal::reports_service(broker.core.clone()))
                .add_service(internal::forward_service(broker.core.clone()));
            match node.quorum() {
                Some(quorum) => {
                    routes.add_service(internal::quorum_service(quorum.as_ref().clone()))
                }
                None => routes,
            }
        };
        let internal = add_internal(Routes::default());
        let client_and_internal = add_internal(client.clone());
        Ok(GrpcServices {
            broker: broker.clone(),
            stopping,
            client,
            internal,
            client_and_internal,
            internal_listener,
        })
    }

    /// Serves `bound` until the broker stops: the internal services on the internal
    /// listener, the client services (with the internal ones on the client listener of
    /// a broker without an internal listener) on any other.
    pub fn serve(
        &self,
        listener: Listener,
        sockets: Vec<TcpListener>,
        tls: Option<Arc<ServerTls>>,
    ) -> Vec<JoinHandle<anyhow::Result<()>>> {
        let stopping = self.stopping.clone();
        sockets
            .into_iter()
            .map(|socket| {
                let task = if listener == Listener::GRPC_INTERNAL {
                    serve_grpc!(
                        internal::server_builder()
                            .layer(authn::AuthLayer {
                                core: self.broker.core.clone(),
                            })
                            .add_routes(self.internal.clone()),
                        socket,
                        tls.clone(),
                        stopping.clone()
                    )
                } else {
                    let routes = if listener == Listener::GRPC && !self.internal_listener {
                        self.client_and_internal.clone()
                    } else {
                        self.client.clone()
                    };
                    // The client listener's HTTP/2 limits, and the layers every client
                    // call passes.
                    let mut server = Server::builder()
                        // Outermost: every layer and service below reads the listener.
                        .layer(ListenerLayer(listener))
                        .initial_stream_window_size(STREAM_WINDOW_BYTES)
                        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
                        .max_frame_size(MAX_FRAME_BYTES)
                        .max_concurrent_streams(MAX_CONCURRENT_STREAMS_PER_CONNECTION)
                        .layer(oversize::OversizeLayer {
                            limit_bytes: self.broker.core.max_request_bytes(),
                        })
                        .layer(budget::RequestBudgetLayer {
                            budget: self.broker.budget.clone(),
                        })
                        .layer(authn::AuthLayer {
                            core: self.broker.core.clone(),
                        })
                        // Inside the authentication layer: it counts the caller's requests.
                        .layer(request_quota::RequestQuotaLayer {
                            core: self.broker.core.clone(),
                        })
                        .trace_fn(|req| tracing::info_span!("rpc", method = %req.uri().path()));
                    serve_grpc!(
                        server.add_routes(routes),
                        socket,
                        tls.clone(),
                        stopping.clone(),
                        capped by self.broker.budget.clone(),
                        listener.name
                    )
                };
                tokio::spawn(async move {
                    task.await
                        .map_err(anyhow::Error::from)
                        .and_then(|served| served.map_err(anyhow::Error::from))
                })
            })
            .collect()
    }
}

/// A tower layer over a gRPC router: stamps each request with the listener it arrived
/// on (read back by `grpc_context_of`), so the core's `RequestContext` (and the
/// addresses metadata answers hand out) follow the listener.
#[derive(Debug, Clone, Copy)]
pub struct ListenerLayer(pub Listener);

impl<S> tower::Layer<S> for ListenerLayer {
    type Service = ListenerService<S>;

    fn layer(&self, inner: S) -> ListenerService<S> {
        ListenerService {
            inner,
            listener: self.0,
        }
    }
}

/// See [`ListenerLayer`].
#[derive(Debug, Clone)]
pub struct ListenerService<S> {
    inner: S,
    listener: Listener,
}

impl<S, B> tower::Service<::http::Request<B>> for ListenerService<S>
where
    S: tower::Service<::http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: ::http::Request<B>) -> S::Future {
        request.extensions_mut().insert(self.listener);
        self.inner.call(request)
    }
}
