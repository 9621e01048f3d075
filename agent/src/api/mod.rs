//! The agent's HTTP API (axum): `router(state)` builds every route over shared state.
//!
//! | route | what |
//! |---|---|
//! | `GET /metrics` | the Prometheus registry, text exposition format |
//! | `GET /healthz` | 200 `ok` while the server runs |
//! | `GET /readyz` | 503 until the first full sync of the cluster view, then 200 |
//! | `GET /v1/pairs` | this node's pairs with diagnoses; filters `spec`, `verdict`, `from`, `to`, `namespace` |
//! | `POST /v1/probe` | one on-demand probe, authenticated and authorized through Kubernetes |
//!
//! [`AppState`] holds the shared things, not copies: the registry, the index behind its lock,
//! and `watch` receivers for readiness and the published pairs. Errors are one [`ApiError`]
//! type rendered as `{"error": code, "message": ...}`.

mod error;
mod health;
mod kube_service;
mod pairs;
mod probe;
mod rate_limit;
mod service;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Uri;
use axum::routing::{get, post};
use parking_lot::RwLock;
use prometheus::Registry;
use tokio::sync::{Semaphore, watch};

use crate::cluster::Index;

pub use error::{ApiError, ErrorBody};
pub use kube_service::{
    KubeProbeService, OnDemandProber, PROBE_REQUEST_GROUP, PROBE_REQUEST_RESOURCE,
    PROBE_REQUEST_VERB, ReviewError,
};
pub use pairs::{PairReport, PairsQuery, PairsResponse};
pub use probe::ProbeBody;
pub use rate_limit::{RateLimit, RateLimiter};
pub use service::{
    BoxError, BoxFuture, ProbeCall, ProbeCallTarget, ProbeService, ServiceError, UserInfo,
};

/// The scripted API server of the kube-backed tests, shared with the CLI's tests.
#[cfg(test)]
pub(crate) use kube_service::mock_api;

/// The bounds that keep the API cheap and safe to expose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiLimits {
    /// The largest request body; larger ones get 413.
    pub max_body_bytes: usize,
    /// On-demand probes per caller.
    pub rate_limit: RateLimit,
    /// On-demand probes (with their TokenReview and SubjectAccessReview) in flight at once;
    /// more get 503 with `Retry-After`.
    pub max_concurrent_probes: usize,
    /// How long TokenReview and SubjectAccessReview may take before the request gets 503.
    pub auth_timeout: Duration,
    /// Added to a probe's own timeout before the request gets 504.
    pub probe_deadline_margin: Duration,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 16 * 1024,
            rate_limit: RateLimit::default(),
            max_concurrent_probes: 8,
            auth_timeout: Duration::from_secs(5),
            probe_deadline_margin: Duration::from_secs(5),
        }
    }
}

/// What every handler shares. Cloning is cheap: every field is shared.
#[derive(Clone)]
pub struct AppState {
    /// The node this agent runs on (`NODE_NAME`).
    pub node: Arc<str>,
    pub registry: Arc<Registry>,
    pub index: Arc<RwLock<Index>>,
    /// `true` once the first full sync is done.
    pub ready: watch::Receiver<bool>,
    /// This node's pairs, as last published.
    pub pairs: watch::Receiver<Arc<Vec<PairReport>>>,
    pub probes: Arc<dyn ProbeService>,
    pub limits: ApiLimits,
    rate_limiter: Arc<RateLimiter>,
    probe_slots: Arc<Semaphore>,
}

impl AppState {
    /// State with the default [`ApiLimits`].
    pub fn new(
        node: impl Into<Arc<str>>,
        registry: Arc<Registry>,
        index: Arc<RwLock<Index>>,
        ready: watch::Receiver<bool>,
        pairs: watch::Receiver<Arc<Vec<PairReport>>>,
        probes: Arc<dyn ProbeService>,
    ) -> Self {
        let limits = ApiLimits::default();
        Self {
            node: node.into(),
            registry,
            index,
            ready,
            pairs,
            probes,
            limits,
            rate_limiter: Arc::new(RateLimiter::new(limits.rate_limit)),
            probe_slots: Arc::new(Semaphore::new(limits.max_concurrent_probes)),
        }
    }

    /// Replaces the limits (and starts the rate limiter afresh).
    pub fn with_limits(mut self, limits: ApiLimits) -> Self {
        self.limits = limits;
        self.rate_limiter = Arc::new(RateLimiter::new(limits.rate_limit));
        self.probe_slots = Arc::new(Semaphore::new(limits.max_concurrent_probes));
        self
    }
}

impl fmt::Debug for AppState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppState")
            .field("node", &self.node)
            .field("ready", &*self.ready.borrow())
            .field("pairs", &self.pairs.borrow().len())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Every route of the API over `state`.
pub fn router(state: AppState) -> Router {
    let max_body_bytes = state.limits.max_body_bytes;
    Router::new()
        .route("/metrics", get(health::metrics))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/v1/pairs", get(pairs::list_pairs))
        .route("/v1/probe", post(probe::probe))
        .fallback(route_not_found)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

async fn route_not_found(uri: Uri) -> ApiError {
    ApiError::RouteNotFound(uri.path().to_string())
}
