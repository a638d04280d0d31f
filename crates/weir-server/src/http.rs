//! The admin HTTP endpoint (axum): `GET /metrics` in Prometheus text format,
//! `GET /health` (200 while serving, 503 once shutting down), and the web console
//! (`weir-console`) under `/console`, with `/` redirecting to it. Over TLS when the
//! broker has a certificate for it (`tls_cert` or `admin_tls_cert`): every route, so an
//! operator's probes use https.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{ConnectInfo, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::serve::IncomingStream;
use axum::{Extension, Router};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use weir_security::tls::{ServerTls, TlsIncoming};

use crate::{Broker, until_stopping};

/// Serves `app` on `listener` until `stopping`, over TLS with `tls`. Each request
/// carries the client's address (`ConnectInfo<SocketAddr>`): the console serves changes
/// to local clients only.
pub(crate) fn serve(
    app: Router,
    listener: TcpListener,
    tls: Option<Arc<ServerTls>>,
    mut stopping: watch::Receiver<bool>,
) -> JoinHandle<std::io::Result<()>> {
    let stopped = async move { until_stopping(&mut stopping).await };
    match tls {
        Some(tls) => {
            let listener = TlsListener(weir_security::tls::incoming(tls, listener));
            tokio::spawn(async move {
                axum::serve(listener, WithPeer(app))
                    .with_graceful_shutdown(stopped)
                    .await
            })
        }
        None => tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(stopped)
            .await
        }),
    }
}

/// The admin listener's connections with TLS set up (weir-security's handshakes).
struct TlsListener(TlsIncoming);

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.0.next().await {
            Some(accepted) => accepted,
            // The accepting task ended with the runtime: nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// The router for each TLS connection, with the client's address as axum's
/// `into_make_service_with_connect_info` gives it for plain TCP (which only knows
/// `TcpListener`).
#[derive(Clone)]
struct WithPeer(Router);

impl tower::Service<IncomingStream<'_, TlsListener>> for WithPeer {
    type Response = Router;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Router, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, connection: IncomingStream<'_, TlsListener>) -> Self::Future {
        let peer = *connection.remote_addr();
        std::future::ready(Ok(self.0.clone().layer(Extension(ConnectInfo(peer)))))
    }
}

/// The admin routes. Starts the console's sampler (see `weir_console::router`).
pub(crate) fn router(broker: Arc<Broker>) -> Router {
    // Shown on the console's cluster page until this broker is registered.
    let this_broker = broker.this_broker.clone();
    let console = weir_console::router(broker.core.clone(), this_broker).layer(
        axum::middleware::from_fn_with_state(broker.core.clone(), console_auth),
    );
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .with_state(broker)
        .merge(console)
}

/// The console on a secured broker (authentication required, or authorization on): HTTP
/// basic credentials of a user, or an API token (`Authorization: Bearer weir_...`, its
/// owner the user), checked as gRPC call credentials are. The request then reaches the
/// console with a [`weir_broker::RequestContext`] of that user in its extensions, and the
/// core authorises each of its operations as for any other listener: she sees the
/// topics and groups her ACLs let her describe. `/health` and `/metrics` stay open, for
/// probes and scrapers.
async fn console_auth(
    State(core): State<Arc<weir_broker::Broker>>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let authentication = core.authentication();
    if !authentication.required(weir_broker::Listener::HTTP) {
        return next.run(request).await;
    }
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let mut ctx = weir_broker::RequestContext::anonymous(weir_broker::Listener::HTTP, peer);
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let refused = match header {
        Some(header) => match authentication.authenticate_header(&ctx, header).await {
            Ok(who) => {
                who.apply(&mut ctx);
                request.extensions_mut().insert(ctx);
                return next.run(request).await;
            }
            Err(err) => err,
        },
        None => weir_broker::BrokerError::new(
            weir_broker::Reason::AuthenticationFailed,
            "the console needs a user and password, or an API token",
        ),
    };
    // The console's table of reasons to HTTP statuses: 401 for a refusal, 503 when the
    // broker could not check the password now.
    let status = weir_console::status_of(&refused.reason);
    let body = format!("{}\n", refused.message);
    if status == StatusCode::UNAUTHORIZED {
        // Both challenges in one value (RFC 9110 § 11.6.1): a second header of the same
        // name would replace the first.
        let challenge = "Basic realm=\"weir\", charset=\"UTF-8\", Bearer realm=\"weir\"";
        (status, [(header::WWW_AUTHENTICATE, challenge)], body).into_response()
    } else if status == StatusCode::SERVICE_UNAVAILABLE {
        (status, [(header::RETRY_AFTER, "1")], body).into_response()
    } else {
        (status, body).into_response()
    }
}

async fn metrics(State(broker): State<Arc<Broker>>) -> impl IntoResponse {
    let mut body = broker
        .metrics()
        .render(
            broker.registry(),
            broker.core.groups_if_up().map(|g| g.as_ref()),
        )
        .await;
    body.push_str(&broker.core.quotas().render());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}

async fn health(State(broker): State<Arc<Broker>>) -> impl IntoResponse {
    if broker.core.is_stopping() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else {
        (StatusCode::OK, "ok\n")
    }
}
