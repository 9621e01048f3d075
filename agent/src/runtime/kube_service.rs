//! [`KubeProbeService`]: the agent's [`ProbeService`], backed by the Kubernetes API and the
//! probe pipeline.
//!
//! ```text
//! bearer token ──TokenReview (authentication.k8s.io/v1, audiences per TokenUse)──> UserInfo | not authenticated
//! UserInfo + Access ──SubjectAccessReview (authorization.k8s.io/v1)──> allowed?
//!   Access: create proberequests.netreach.dev in a namespace | get pods in a namespace
//!           | get a non-resource URL (/metrics, /v1/pairs)
//! ProbeCall ──> PairTarget ──OnDemandProber (the pipeline on a shared snapshot)──> PairReport
//! ```
//!
//! For on-demand probes TokenReview asks for the audience `netreach` (configurable) and accepts
//! only a token the API server confirms for it: a token minted for another audience (the pod's
//! own API token, a token for another service) is not authenticated, and a token a caller hands
//! the agent is worthless against the API server. Reads of `/metrics` and `/v1/pairs` accept
//! the API server's own audience by default, so Prometheus scrapes with its service-account
//! token (the kube-rbac-proxy convention). Both reviews are `create` calls with the agent's own credentials (its ClusterRole needs
//! `create` on `tokenreviews` and `subjectaccessreviews`); any failure to get an answer is
//! [`ServiceError::Unavailable`] (503), never a silent allow. The prober is an
//! [`OnDemandProber`] behind an `Arc`: the agent passes its `ViewProber` (the pipeline on one
//! snapshot of the view shared by every on-demand probe, so no lock is held across a probe's
//! `.await` and no request copies the index); tests pass a fake and need neither root nor
//! network namespaces.

use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::{Api, Client};
use tracing::{debug, info, warn};

use crate::api::{
    Access, BoxFuture, DEFAULT_AUDIENCE, OnDemandProber, PROBE_REQUEST_GROUP,
    PROBE_REQUEST_RESOURCE, PROBE_REQUEST_VERB, ProbeCall, ProbeService, ServiceError, TokenUse,
    UserInfo,
};
use crate::pair::PairReport;

/// Why a review could not be answered (wrapped in [`ServiceError::Unavailable`]).
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("TokenReview failed: {0}")]
    TokenReview(#[source] kube::Error),
    #[error("SubjectAccessReview failed: {0}")]
    SubjectAccessReview(#[source] kube::Error),
}

impl ReviewError {
    /// A bounded label for failure counters.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ReviewError::TokenReview(_) => "token_review",
            ReviewError::SubjectAccessReview(_) => "subject_access_review",
        }
    }
}

/// The agent's [`ProbeService`]: TokenReview, SubjectAccessReview and the probe pipeline.
/// Cloning is cheap: every field is shared.
#[derive(Clone)]
pub struct KubeProbeService {
    client: Client,
    prober: Arc<dyn OnDemandProber>,
    probe_audiences: Vec<String>,
    read_audiences: Vec<String>,
}

impl fmt::Debug for KubeProbeService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeProbeService")
            .field("probe_audiences", &self.probe_audiences)
            .field("read_audiences", &self.read_audiences)
            .finish_non_exhaustive()
    }
}

impl KubeProbeService {
    pub fn new(client: Client, prober: Arc<dyn OnDemandProber>) -> Self {
        Self {
            client,
            prober,
            probe_audiences: vec![DEFAULT_AUDIENCE.to_string()],
            read_audiences: Vec::new(),
        }
    }

    /// Audiences for each [`TokenUse`]: on-demand probes (default [`DEFAULT_AUDIENCE`]) and
    /// reads of `/metrics` and `/v1/pairs` (default none). An empty list sends TokenReviews
    /// without audiences, so the API server checks the token against its own.
    pub fn with_audiences(mut self, probe: Vec<String>, read: Vec<String>) -> Self {
        self.probe_audiences = probe;
        self.read_audiences = read;
        self
    }

    fn audiences(&self, token_use: TokenUse) -> &[String] {
        match token_use {
            TokenUse::Probe => &self.probe_audiences,
            TokenUse::Read => &self.read_audiences,
        }
    }

    async fn review_token(
        &self,
        token: &str,
        token_use: TokenUse,
    ) -> Result<Option<UserInfo>, ReviewError> {
        let audiences = self.audiences(token_use);
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: (!audiences.is_empty()).then(|| audiences.to_vec()),
            },
            ..TokenReview::default()
        };
        let reviewed = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(ReviewError::TokenReview)?;
        Ok(user_of(reviewed, audiences))
    }

    async fn review_access(&self, user: &UserInfo, access: &Access) -> Result<bool, ReviewError> {
        let review = access_review(user, access);
        let reviewed = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(ReviewError::SubjectAccessReview)?;
        let status = reviewed.status.unwrap_or_default();
        if let Some(error) = status.evaluation_error.as_deref().filter(|e| !e.is_empty()) {
            warn!(user = %user.username, %access, %error, allowed = status.allowed, "SubjectAccessReview evaluation error");
        }
        debug!(user = %user.username, %access, allowed = status.allowed, reason = status.reason.as_deref().unwrap_or(""), "SubjectAccessReview");
        Ok(status.allowed)
    }
}

impl ProbeService for KubeProbeService {
    fn authenticate<'a>(
        &'a self,
        token: &'a str,
        token_use: TokenUse,
    ) -> BoxFuture<'a, Result<Option<UserInfo>, ServiceError>> {
        Box::pin(async move {
            self.review_token(token, token_use)
                .await
                .map_err(ServiceError::unavailable)
        })
    }

    fn authorize<'a>(
        &'a self,
        user: &'a UserInfo,
        access: &'a Access,
    ) -> BoxFuture<'a, Result<bool, ServiceError>> {
        Box::pin(async move {
            self.review_access(user, access)
                .await
                .map_err(ServiceError::unavailable)
        })
    }

    fn probe(&self, call: ProbeCall) -> BoxFuture<'_, Result<PairReport, ServiceError>> {
        Box::pin(async move {
            let target = call.target;
            info!(user = %call.requested_by, from = %call.from, %target, "probing on demand");
            self.prober
                .probe_once(&call.from, target, call.timeout)
                .await
                .map_err(ServiceError::Rejected)
        })
    }
}

/// The caller of a reviewed token: `None` unless `status.authenticated` is true, names a user
/// and, when `audiences` were asked for, confirms one of them (an API server that ignores
/// audiences returns none, and then the token's audience is unknown).
fn user_of(review: TokenReview, audiences: &[String]) -> Option<UserInfo> {
    let status = review.status?;
    if status.authenticated != Some(true) {
        if let Some(error) = status.error.as_deref().filter(|e| !e.is_empty()) {
            debug!(%error, "token not authenticated");
        }
        return None;
    }
    if !audiences.is_empty() {
        let confirmed = status.audiences.as_deref().unwrap_or_default();
        if !confirmed
            .iter()
            .any(|audience| audiences.contains(audience))
        {
            warn!(
                asked = ?audiences,
                ?confirmed,
                "TokenReview did not confirm the audience; treating the token as invalid"
            );
            return None;
        }
    }
    let user = status.user?;
    let username = user.username.filter(|name| !name.is_empty());
    let Some(username) = username else {
        warn!("TokenReview authenticated a token without a username; treating it as invalid");
        return None;
    };
    Some(UserInfo {
        username,
        uid: user.uid.filter(|uid| !uid.is_empty()),
        groups: user.groups.unwrap_or_default(),
        extra: user.extra.unwrap_or_default(),
    })
}

/// May `user` do `access`?
fn access_review(user: &UserInfo, access: &Access) -> SubjectAccessReview {
    let (resource_attributes, non_resource_attributes) = match access {
        Access::CreateProbeRequests { namespace } => (
            Some(ResourceAttributes {
                group: Some(PROBE_REQUEST_GROUP.into()),
                resource: Some(PROBE_REQUEST_RESOURCE.into()),
                verb: Some(PROBE_REQUEST_VERB.into()),
                namespace: Some(namespace.clone()),
                ..ResourceAttributes::default()
            }),
            None,
        ),
        Access::GetPods { namespace } => (
            Some(ResourceAttributes {
                group: Some(String::new()),
                resource: Some("pods".into()),
                verb: Some("get".into()),
                namespace: Some(namespace.clone()),
                ..ResourceAttributes::default()
            }),
            None,
        ),
        Access::GetUrl { path } => (
            None,
            Some(NonResourceAttributes {
                path: Some((*path).to_string()),
                verb: Some("get".into()),
            }),
        ),
    };
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.username.clone()),
            uid: user.uid.clone(),
            groups: (!user.groups.is_empty()).then(|| user.groups.clone()),
            extra: (!user.extra.is_empty()).then(|| user.extra.clone()),
            resource_attributes,
            non_resource_attributes,
        },
        ..SubjectAccessReview::default()
    }
}

#[cfg(test)]
mod tests;
