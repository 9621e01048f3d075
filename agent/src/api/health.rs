//! `/healthz`, `/readyz` and `/metrics`: plain-text endpoints for the kubelet and Prometheus.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use prometheus::TEXT_FORMAT;

use super::{ApiError, AppState};

/// Liveness: the server answers.
pub(super) async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: 503 until the agent has completed its first full sync of the cluster view.
pub(super) async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if *state.ready.borrow() {
        (StatusCode::OK, "ok")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: waiting for the first full sync of the cluster view",
        )
    }
}

/// The registry and the pair table in the Prometheus text exposition format. Writing 10,000
/// pairs takes milliseconds, so it runs on the blocking pool rather than on a runtime worker;
/// the heap pages the encoding freed are given back at once (a scrape is the agent's largest
/// transient allocation).
pub(super) async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let exposition = state.metrics.clone();
    let body = tokio::task::spawn_blocking(move || {
        let body = exposition.encode();
        crate::malloc::trim();
        body
    })
    .await
    .map_err(|error| ApiError::Internal(format!("metrics task failed: {error}")))?
    .map_err(|error| ApiError::Internal(format!("cannot encode metrics: {error}")))?;
    Ok(([(header::CONTENT_TYPE, TEXT_FORMAT)], body))
}
