//! The agent's HTTP API (axum): `router(state)` builds every route over shared state.
//!
//! | route | who may call | what |
//! |---|---|---|
//! | `GET /metrics` | `get` on the non-resource URL `/metrics` | the Prometheus registry, text exposition format |
//! | `GET /v1/pairs` | `get` on `/v1/pairs` | this node's pairs with diagnoses; filters `spec`, `verdict`, `from`, `to`, `namespace` |
//! | `POST /v1/probe` | `create proberequests` in the source namespace (+ `get pods` in another destination namespace) | one on-demand probe |
//! | `GET /`, `/ui/app.js`, `/ui/app.css` | anyone (static, no cluster data) | the web page; its data comes from `/v1/pairs` |
//! | `GET /healthz` | anyone | 200 `ok` while the server runs |
//! | `GET /readyz` | anyone | 503 until the first full sync of the cluster view, then 200 |
//!
//! Callers authenticate with a bearer token (TokenReview, audience `netreach`) and are
//! authorized by SubjectAccessReview, both through [`auth::Gate`] (see there). The agent serves
//! [`router`] over TLS with bounded connections ([`serve`]), and [`health_router`] (the two
//! health checks only) in plain HTTP on a loopback port for the kubelet.
//!
//! [`AppState`] holds the shared things, not copies: the registry, the index behind its lock,
//! and `watch` receivers for readiness and the published pairs. Errors are one [`ApiError`]
//! type rendered as `{"error": code, "message": ...}`. Every request is answered within
//! [`ApiLimits::request_timeout`].

pub mod auth;
mod error;
mod health;
mod pairs;
mod probe;
mod rate_limit;
pub mod serve;
mod service;
pub mod tls;
pub mod ui;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::Uri;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use parking_lot::RwLock;
use tokio::sync::{Semaphore, watch};

use crate::cluster::Index;
use crate::cluster::watch::PodLookup;
use crate::pair::PublishedPairs;
use crate::report::metrics::Exposition;

pub use auth::{Access, AuthMode, Gate, ReviewTtl, TokenUse};
pub use error::{ApiError, ErrorBody};
pub use pairs::{PairsQuery, PairsResponse};
pub use probe::ProbeBody;
pub use rate_limit::{RateLimit, RateLimiter};
pub use service::{
    BoxError, BoxFuture, DEFAULT_AUDIENCE, OnDemandProber, PROBE_REQUEST_GROUP,
    PROBE_REQUEST_RESOURCE, PROBE_REQUEST_VERB, ProbeCall, ProbeCallTarget, ProbeService,
    ServiceError, UserInfo,
};

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
    /// How long an authenticated caller may take to send a request body.
    pub body_timeout: Duration,
    /// Any request is answered within this (408 when it runs out); longer than the longest
    /// probe (1 minute) plus its margin and the reviews.
    pub request_timeout: Duration,
    /// How long TokenReview and SubjectAccessReview answers are trusted.
    pub review_ttl: ReviewTtl,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 16 * 1024,
            rate_limit: RateLimit::default(),
            max_concurrent_probes: 8,
            auth_timeout: Duration::from_secs(5),
            probe_deadline_margin: Duration::from_secs(5),
            body_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(90),
            review_ttl: ReviewTtl::default(),
        }
    }
}

/// What every handler shares. Cloning is cheap: every field is shared.
#[derive(Clone)]
pub struct AppState {
    /// The node this agent runs on (`NODE_NAME`).
    pub node: Arc<str>,
    /// What `/metrics` serves: the registry and the pair table.
    pub metrics: Exposition,
    pub index: Arc<RwLock<Index>>,
    /// `true` once the first full sync is done.
    pub ready: watch::Receiver<bool>,
    /// This node's pairs, as last published.
    pub pairs: watch::Receiver<PublishedPairs>,
    pub probes: Arc<dyn ProbeService>,
    pub limits: ApiLimits,
    gate: Arc<Gate>,
    rate_limiter: Arc<RateLimiter>,
    probe_slots: Arc<Semaphore>,
    /// A node-scoped view's on-demand lookup of destinations its watches do not hold.
    lookup: Option<Arc<PodLookup>>,
}

impl AppState {
    /// State with the default [`ApiLimits`] and auth enabled.
    pub fn new(
        node: impl Into<Arc<str>>,
        metrics: impl Into<Exposition>,
        index: Arc<RwLock<Index>>,
        ready: watch::Receiver<bool>,
        pairs: watch::Receiver<PublishedPairs>,
        probes: Arc<dyn ProbeService>,
    ) -> Self {
        let limits = ApiLimits::default();
        Self {
            node: node.into(),
            metrics: metrics.into(),
            index,
            ready,
            pairs,
            gate: Arc::new(Gate::new(
                AuthMode::Enabled,
                probes.clone(),
                limits.auth_timeout,
                limits.review_ttl,
            )),
            probes,
            limits,
            rate_limiter: Arc::new(RateLimiter::new(limits.rate_limit)),
            probe_slots: Arc::new(Semaphore::new(limits.max_concurrent_probes)),
            lookup: None,
        }
    }

    /// Fetches on-demand destinations the index lacks before resolving a probe (node scope).
    pub fn with_lookup(mut self, lookup: Option<Arc<PodLookup>>) -> Self {
        self.lookup = lookup;
        self
    }

    /// Replaces the limits (and starts the rate limiter and review caches afresh).
    pub fn with_limits(mut self, limits: ApiLimits) -> Self {
        self.limits = limits;
        self.rate_limiter = Arc::new(RateLimiter::new(limits.rate_limit));
        self.probe_slots = Arc::new(Semaphore::new(limits.max_concurrent_probes));
        self.gate = Arc::new(Gate::new(
            self.gate.mode(),
            self.probes.clone(),
            limits.auth_timeout,
            limits.review_ttl,
        ));
        self
    }

    /// Turns authentication and authorization on or off (off: a trusted network only).
    pub fn with_auth(mut self, mode: AuthMode) -> Self {
        self.gate = Arc::new(Gate::new(
            mode,
            self.probes.clone(),
            self.limits.auth_timeout,
            self.limits.review_ttl,
        ));
        self
    }

    pub fn auth_mode(&self) -> AuthMode {
        self.gate.mode()
    }
}

impl fmt::Debug for AppState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppState")
            .field("node", &self.node)
            .field("ready", &*self.ready.borrow())
            .field("pairs", &self.pairs.borrow().len())
            .field("limits", &self.limits)
            .field("gate", &self.gate)
            .finish_non_exhaustive()
    }
}

/// Every route of the API over `state`.
pub fn router(state: AppState) -> Router {
    let max_body_bytes = state.limits.max_body_bytes;
    let readers = Router::new()
        .route("/metrics", get(health::metrics))
        .route("/v1/pairs", get(pairs::list_pairs))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_url_access,
        ));
    ui::routes(Router::new())
        .merge(readers)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/v1/probe", post(probe::probe))
        .fallback(route_not_found)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            answer_within_timeout,
        ))
        .with_state(state)
}

/// `/healthz` and `/readyz` only, unauthenticated, for the kubelet on a loopback port.
pub fn health_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .fallback(route_not_found)
        .with_state(state)
}

/// The non-resource URLs that SubjectAccessReview asks about, by route.
fn url_of(path: &str) -> Option<&'static str> {
    match path {
        "/metrics" => Some("/metrics"),
        "/v1/pairs" => Some("/v1/pairs"),
        _ => None,
    }
}

/// Authenticates the caller and checks `get` on the route's URL before the handler runs.
async fn require_url_access(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let path = url_of(request.uri().path())
        .ok_or_else(|| ApiError::RouteNotFound(request.uri().path().to_string()))?;
    let user = state
        .gate
        .authenticate(request.headers(), TokenUse::Read)
        .await?;
    state.gate.authorize(&user, Access::GetUrl { path }).await?;
    Ok(next.run(request).await)
}

async fn answer_within_timeout(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let limit = state.limits.request_timeout;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::RequestTimeout(limit).into_response(),
    }
}

async fn route_not_found(uri: Uri) -> ApiError {
    ApiError::RouteNotFound(uri.path().to_string())
}
