//! The admin HTTP endpoint (axum): `GET /metrics` in Prometheus text format and
//! `GET /health` (200 while serving, 503 once shutting down).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::Broker;

/// The admin routes.
pub(crate) fn router(broker: Arc<Broker>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .with_state(broker)
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
