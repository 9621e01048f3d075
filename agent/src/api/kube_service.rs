//! [`KubeProbeService`]: the agent's [`ProbeService`], backed by the Kubernetes API and the
//! probe pipeline.
//!
//! ```text
//! bearer token ──TokenReview (authentication.k8s.io/v1)──> UserInfo | not authenticated
//! UserInfo + namespace ──SubjectAccessReview (authorization.k8s.io/v1):
//!                          create proberequests.netreach.dev in the source namespace──> allowed?
//! ProbeCall ──snapshot of Index + ChangeLog──> PairTarget ──OnDemandProber (Pipeline)──> PairReport
//! ```
//!
//! Both reviews are `create` calls with the agent's own credentials (its ClusterRole needs
//! `create` on `tokenreviews` and `subjectaccessreviews`); any failure to get an answer is
//! [`ServiceError::Unavailable`] (503), never a silent allow. Probes run against a copy of the
//! index and change log taken under their read locks, so no lock is held across the probe's
//! `.await`. The prober is an [`OnDemandProber`] behind an `Arc`: the agent passes its
//! [`Pipeline`]; tests pass a fake and need neither root nor network namespaces.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::{Api, Client};
use parking_lot::RwLock;
use tracing::{debug, info, warn};

use super::{
    BoxFuture, PairReport, ProbeCall, ProbeCallTarget, ProbeService, ServiceError, UserInfo,
};
use crate::cluster::Index;
use crate::cluster::changes::ChangeLog;
use crate::cluster::model::ObjectRef;
use crate::cluster::watch::ClusterView;
use crate::run::Pipeline;
use crate::schedule::PairTarget;

/// The API group of the resource SubjectAccessReview asks about.
pub const PROBE_REQUEST_GROUP: &str = "netreach.dev";
/// The resource SubjectAccessReview asks about.
pub const PROBE_REQUEST_RESOURCE: &str = "proberequests";
/// The verb SubjectAccessReview asks about.
pub const PROBE_REQUEST_VERB: &str = "create";

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

/// Runs one on-demand probe against a snapshot of the cluster view; [`Pipeline`] is the real
/// one.
pub trait OnDemandProber: Send + Sync + 'static {
    /// Probes `target` from `from`, predicts and diagnoses it (see [`Pipeline::probe_once`]).
    fn probe_once<'a>(
        &'a self,
        index: &'a Index,
        from: &'a ObjectRef,
        target: PairTarget,
        timeout: Duration,
        changes: &'a ChangeLog,
    ) -> BoxFuture<'a, PairReport>;
}

impl OnDemandProber for Pipeline {
    fn probe_once<'a>(
        &'a self,
        index: &'a Index,
        from: &'a ObjectRef,
        target: PairTarget,
        timeout: Duration,
        changes: &'a ChangeLog,
    ) -> BoxFuture<'a, PairReport> {
        Box::pin(Pipeline::probe_once(
            self, index, from, target, timeout, changes,
        ))
    }
}

/// The agent's [`ProbeService`]: TokenReview, SubjectAccessReview and the probe pipeline.
/// Cloning is cheap: every field is shared.
#[derive(Clone)]
pub struct KubeProbeService {
    client: Client,
    index: Arc<RwLock<Index>>,
    changes: Arc<RwLock<ChangeLog>>,
    prober: Arc<dyn OnDemandProber>,
}

impl fmt::Debug for KubeProbeService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeProbeService").finish_non_exhaustive()
    }
}

impl KubeProbeService {
    /// A service over the shared index and change log (the same `Arc`s the watchers write).
    pub fn new(
        client: Client,
        index: Arc<RwLock<Index>>,
        changes: Arc<RwLock<ChangeLog>>,
        prober: Arc<dyn OnDemandProber>,
    ) -> Self {
        Self {
            client,
            index,
            changes,
            prober,
        }
    }

    /// A service over a live [`ClusterView`].
    pub fn from_view(client: Client, view: &ClusterView, prober: Arc<dyn OnDemandProber>) -> Self {
        Self::new(client, view.index.clone(), view.changes.clone(), prober)
    }

    async fn review_token(&self, token: &str) -> Result<Option<UserInfo>, ReviewError> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: None,
            },
            ..TokenReview::default()
        };
        let reviewed = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(ReviewError::TokenReview)?;
        Ok(user_of(reviewed))
    }

    async fn review_access(&self, user: &UserInfo, namespace: &str) -> Result<bool, ReviewError> {
        let review = access_review(user, namespace);
        let reviewed = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(ReviewError::SubjectAccessReview)?;
        let status = reviewed.status.unwrap_or_default();
        if let Some(error) = status.evaluation_error.as_deref().filter(|e| !e.is_empty()) {
            warn!(user = %user.username, %namespace, %error, allowed = status.allowed, "SubjectAccessReview evaluation error");
        }
        debug!(user = %user.username, %namespace, allowed = status.allowed, reason = status.reason.as_deref().unwrap_or(""), "SubjectAccessReview");
        Ok(status.allowed)
    }

    /// Copies of the index and change log, taken under their read locks.
    fn snapshot(&self) -> (Index, ChangeLog) {
        let index = self.index.read().clone();
        let changes = self.changes.read().clone();
        (index, changes)
    }
}

impl ProbeService for KubeProbeService {
    fn authenticate<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Option<UserInfo>, ServiceError>> {
        Box::pin(async move {
            self.review_token(token)
                .await
                .map_err(ServiceError::unavailable)
        })
    }

    fn authorize<'a>(
        &'a self,
        user: &'a UserInfo,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<bool, ServiceError>> {
        Box::pin(async move {
            self.review_access(user, namespace)
                .await
                .map_err(ServiceError::unavailable)
        })
    }

    fn probe(&self, call: ProbeCall) -> BoxFuture<'_, Result<PairReport, ServiceError>> {
        Box::pin(async move {
            let (index, changes) = self.snapshot();
            if index.pod(&call.from).is_none() {
                return Err(ServiceError::Rejected(format!(
                    "source pod {} is gone",
                    call.from
                )));
            }
            let target = pair_target(&index, &call.target)?;
            info!(user = %call.requested_by, from = %call.from, %target, "probing on demand");
            Ok(self
                .prober
                .probe_once(&index, &call.from, target, call.timeout, &changes)
                .await)
        })
    }
}

/// The caller of a reviewed token: `None` unless `status.authenticated` is true and names a user.
fn user_of(review: TokenReview) -> Option<UserInfo> {
    let status = review.status?;
    if status.authenticated != Some(true) {
        if let Some(error) = status.error.as_deref().filter(|e| !e.is_empty()) {
            debug!(%error, "token not authenticated");
        }
        return None;
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

/// May `user` create `proberequests.netreach.dev` in `namespace`?
fn access_review(user: &UserInfo, namespace: &str) -> SubjectAccessReview {
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.username.clone()),
            uid: user.uid.clone(),
            groups: (!user.groups.is_empty()).then(|| user.groups.clone()),
            extra: (!user.extra.is_empty()).then(|| user.extra.clone()),
            resource_attributes: Some(ResourceAttributes {
                group: Some(PROBE_REQUEST_GROUP.into()),
                resource: Some(PROBE_REQUEST_RESOURCE.into()),
                verb: Some(PROBE_REQUEST_VERB.into()),
                namespace: Some(namespace.into()),
                ..ResourceAttributes::default()
            }),
            non_resource_attributes: None,
        },
        ..SubjectAccessReview::default()
    }
}

/// The pipeline's target for an API call, with a pod target re-resolved in the snapshot (the
/// pod may have gone or changed its IP since the API checked it).
fn pair_target(index: &Index, target: &ProbeCallTarget) -> Result<PairTarget, ServiceError> {
    Ok(match target {
        ProbeCallTarget::Pod {
            pod,
            port,
            protocol,
            ..
        } => {
            let destination = index
                .pod(pod)
                .ok_or_else(|| ServiceError::Rejected(format!("destination pod {pod} is gone")))?;
            let ip = destination.ips.first().copied().ok_or_else(|| {
                ServiceError::Rejected(format!("destination pod {pod} has no IP"))
            })?;
            PairTarget::Pod {
                pod: pod.clone(),
                ip,
                port: *port,
                protocol: *protocol,
            }
        }
        ProbeCallTarget::Ip { ip, port, protocol } => PairTarget::Ip {
            ip: *ip,
            port: *port,
            protocol: *protocol,
        },
        ProbeCallTarget::Dns { name } => PairTarget::Dns { name: name.clone() },
    })
}

#[cfg(test)]
pub(crate) mod mock_api;
#[cfg(test)]
mod tests;
