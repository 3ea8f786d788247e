//! The admin HTTP listener: liveness, readiness and Prometheus metrics.
//!
//! `GET /health` answers as long as the process serves; `GET /ready` checks that a bootstrap
//! server answers ApiVersions right now (a load balancer should route only to ready
//! instances); `GET /metrics` is the Prometheus text exposition.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tracing::warn;

use crate::server::Shared;
use crate::upstream;

/// Longest a readiness probe waits for the cluster.
const READY_TIMEOUT: Duration = Duration::from_secs(3);

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(shared)
}

pub(crate) async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    let stop = shared.force_close.clone();
    let drained = shared.shutdown.clone();
    let app = router(shared);
    // The admin API stays up while connections drain so probes can watch the shutdown.
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            drained.cancelled().await;
            stop.cancelled().await;
        })
        .await;
    if let Err(e) = result {
        warn!("admin listener failed: {e}");
    }
}

async fn health(State(shared): State<Arc<Shared>>) -> Response {
    let status = if shared.shutdown.is_cancelled() {
        "draining"
    } else {
        "ok"
    };
    Json(json!({ "status": status })).into_response()
}

async fn ready(State(shared): State<Arc<Shared>>) -> Response {
    if shared.shutdown.is_cancelled() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "draining" })),
        )
            .into_response();
    }
    let timeout = READY_TIMEOUT.min(shared.config.request_timeout());
    match upstream::probe(&shared.config.upstream.bootstrap, timeout).await {
        Ok(broker) => Json(json!({ "status": "ready", "broker": broker })).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "unavailable",
                "error": "no bootstrap server answered",
                "details": [format!("{e:#}")],
            })),
        )
            .into_response(),
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.render(),
    )
        .into_response()
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": "not found", "details": [] })),
    )
        .into_response()
}
