//! What `POST /v1/probe` needs from Kubernetes and the prober, as a trait object: the agent
//! implements [`ProbeService`] with TokenReview, SubjectAccessReview and its prober; tests use
//! a fake. The API hands [`ProbeService::probe`] a [`ProbeCall`] that it has already
//! authorized and resolved against the index.

use std::collections::BTreeMap;
use std::future::Future;

use std::pin::Pin;
use std::time::Duration;

use super::auth::{Access, TokenUse};
use crate::cluster::model::ObjectRef;
use crate::pair::{PairReport, PairTarget};

/// A boxed future, so [`ProbeService`] can be a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A boxed error from a [`ProbeService`] backend.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the API needs from Kubernetes and the prober. The agent implements it with TokenReview,
/// SubjectAccessReview and its prober; tests use a fake.
pub trait ProbeService: Send + Sync + 'static {
    /// Who holds `token`, presented for `token_use`: `Ok(None)` when the token is not valid
    /// for it (TokenReview `authenticated: false`, or not for the audience that use needs).
    fn authenticate<'a>(
        &'a self,
        token: &'a str,
        token_use: TokenUse,
    ) -> BoxFuture<'a, Result<Option<UserInfo>, ServiceError>>;

    /// Whether `user` may do `access` (SubjectAccessReview).
    fn authorize<'a>(
        &'a self,
        user: &'a UserInfo,
        access: &'a Access,
    ) -> BoxFuture<'a, Result<bool, ServiceError>>;

    /// Runs one probe, checked and resolved by the API, and diagnoses it.
    fn probe(&self, call: ProbeCall) -> BoxFuture<'_, Result<PairReport, ServiceError>>;
}

/// The authenticated caller, as TokenReview reports it (SubjectAccessReview needs all of it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct UserInfo {
    pub username: String,
    pub uid: Option<String>,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// Why a [`ProbeService`] call failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The Kubernetes API or the prober cannot answer now (503).
    #[error("{0}")]
    Unavailable(#[source] BoxError),
    /// The service refuses this probe (422), e.g. the source pod has no network namespace the
    /// agent can enter.
    #[error("{0}")]
    Rejected(String),
}

impl ServiceError {
    pub fn unavailable(error: impl Into<BoxError>) -> Self {
        ServiceError::Unavailable(error.into())
    }
}

/// A probe the API has authorized and resolved against the index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeCall {
    /// The caller's username, for logs and events.
    pub requested_by: String,
    /// The source pod; it runs on this node.
    pub from: ObjectRef,
    pub target: ProbeCallTarget,
    /// How long the probe waits for an answer.
    pub timeout: Duration,
}

/// Where a [`ProbeCall`] probes to: the scheduler's own [`PairTarget`] (a pod at its first IP
/// with a named port already resolved, an IP, or a DNS name; never a host, which only
/// ProbeSpecs take).
pub type ProbeCallTarget = PairTarget;

/// The audience on-demand callers' tokens must carry (`kubectl create token SA --audience netreach`).
pub const DEFAULT_AUDIENCE: &str = "netreach";

/// The API group of the resource SubjectAccessReview asks about.
pub const PROBE_REQUEST_GROUP: &str = "netreach.dev";
/// The resource SubjectAccessReview asks about.
pub const PROBE_REQUEST_RESOURCE: &str = "proberequests";
/// The verb SubjectAccessReview asks about.
pub const PROBE_REQUEST_VERB: &str = "create";

/// Runs one on-demand probe against the latest view of the cluster; the agent's is
/// `runtime::on_demand::ViewProber`.
pub trait OnDemandProber: Send + Sync + 'static {
    /// Probes `target` from `from`, predicts and diagnoses it (see
    /// `Pipeline::probe_once`); `Err` says why it could not run (the source or destination pod
    /// left the view).
    fn probe_once<'a>(
        &'a self,
        from: &'a ObjectRef,
        target: PairTarget,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<PairReport, String>>;
}
