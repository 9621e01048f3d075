//! `/healthz`, `/readyz` and `/metrics`: plain-text endpoints for the kubelet and Prometheus.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use prometheus::{Encoder, TEXT_FORMAT, TextEncoder};

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

/// The registry in the Prometheus text exposition format. Gathering 10,000 pairs takes tens
/// of milliseconds, so it runs on the blocking pool rather than on a runtime worker.
pub(super) async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let registry = state.registry.clone();
    let body = tokio::task::spawn_blocking(move || {
        let mut body = Vec::with_capacity(64 * 1024);
        TextEncoder::new()
            .encode(&registry.gather(), &mut body)
            .map(|()| body)
    })
    .await
    .map_err(|error| ApiError::Internal(format!("metrics task failed: {error}")))?
    .map_err(|error| ApiError::Internal(format!("cannot encode metrics: {error}")))?;
    Ok(([(header::CONTENT_TYPE, TEXT_FORMAT)], body))
}
