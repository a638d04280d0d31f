//! The admin HTTP endpoint (axum): `GET /metrics` in Prometheus text format,
//! `GET /health` (200 while serving, 503 once shutting down), and the web console
//! (`weir-console`) under `/console`, with `/` redirecting to it.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use weir_cluster::controller::records::Endpoints;

use crate::Broker;

/// The admin routes. Starts the console's sampler (see `weir_console::router`).
pub(crate) fn router(broker: Arc<Broker>) -> Router {
    // Shown on the console's cluster page until this broker is registered.
    let this_broker = Endpoints {
        client: broker.advertised.to_string(),
        internal: String::new(),
        external: broker.external_advertised.as_ref().map(ToString::to_string),
        kafka: None,
        kafka_external: None,
    };
    let console = weir_console::router(broker.core.clone(), this_broker);
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .with_state(broker)
        .merge(console)
}

async fn metrics(State(broker): State<Arc<Broker>>) -> impl IntoResponse {
    let body = broker
        .metrics()
        .render(
            broker.registry(),
            broker.core.groups_if_up().map(|g| g.as_ref()),
        )
        .await;
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
