//! The kube calls of cluster mode, each a small function over a [`Client`] with a typed
//! [`Error`]: look up the source pod's node, create the ProbeRequest, read it until the agent
//! answers.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use kube::{Api, Client};
use probe_spec::{ProbeRequest, ProbeRequestPhase, ProbeRequestStatus, format_duration};
use tokio::time::Instant;
use tracing::debug;

use super::plan::Plan;
use crate::cluster::model::ObjectRef;

/// How often the CLI reads the ProbeRequest while it waits.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a cluster-mode probe could not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach a cluster: {0}")]
    Unreachable(#[source] kube::Error),
    #[error("the cluster did not accept your credentials: {0}")]
    Unauthorized(String),
    #[error("not allowed to create proberequests in namespace {namespace}: {message}")]
    CreateForbidden { namespace: String, message: String },
    #[error(
        "not allowed to read proberequests in namespace {namespace}, so the result cannot be shown \
         (ProbeRequest {request} was created): {message}"
    )]
    ReadForbidden {
        namespace: String,
        request: ObjectRef,
        message: String,
    },
    #[error("the ProbeRequest CRD is not installed: kubectl apply -f charts/netreach/crds/")]
    CrdMissing,
    #[error("namespace {0} not found")]
    NamespaceNotFound(String),
    #[error("source pod {0} not found")]
    SourceNotFound(ObjectRef),
    #[error("the cluster rejected the ProbeRequest: {0}")]
    Invalid(String),
    #[error("ProbeRequest {0} was deleted before an agent answered")]
    Deleted(ObjectRef),
    #[error(
        "no agent answered within {}: is netreach running on the source pod's node?{}",
        format_duration(*waited),
        node_hint(node.as_deref(), request)
    )]
    NoAgent {
        waited: Duration,
        request: ObjectRef,
        node: Option<String>,
    },
    #[error(
        "the agent{} started ProbeRequest {request} but did not finish within {}",
        node.as_deref().map(|n| format!(" on node {n}")).unwrap_or_default(),
        format_duration(*waited)
    )]
    Unfinished {
        waited: Duration,
        request: ObjectRef,
        node: Option<String>,
    },
    #[error("the Kubernetes API failed: {0}")]
    Api(#[source] kube::Error),
}

fn node_hint(node: Option<&str>, request: &ObjectRef) -> String {
    match node {
        Some(node) => format!(" (node {node}; ProbeRequest {request} is left in place)"),
        None => format!(" (ProbeRequest {request} is left in place)"),
    }
}

/// The HTTP status and message of an API error; `None` when the API did not answer at all.
fn api_status(error: &kube::Error) -> Option<(u16, &kube::core::Status)> {
    match error {
        kube::Error::Api(status) => Some((status.code, status)),
        _ => None,
    }
}

/// Errors every call maps the same way: no answer, or rejected credentials.
fn common(error: kube::Error) -> Error {
    match api_status(&error) {
        None => match error {
            kube::Error::SerdeError(_) => Error::Api(error),
            error => Error::Unreachable(error),
        },
        Some((401, status)) => Error::Unauthorized(status.message.clone()),
        Some(_) => Error::Api(error),
    }
}

/// The node the source pod runs on: `Ok(None)` when it is not scheduled yet or the caller may
/// not read pods (the probe still goes ahead); an error when the pod does not exist or the
/// cluster does not answer.
pub async fn source_node(client: &Client, pod: &ObjectRef) -> Result<Option<String>> {
    match Api::<Pod>::namespaced(client.clone(), &pod.namespace)
        .get(&pod.name)
        .await
    {
        Ok(found) => Ok(found.spec.and_then(|spec| spec.node_name)),
        Err(error) => match api_status(&error) {
            Some((404, _)) => Err(Error::SourceNotFound(pod.clone())),
            Some((401, _)) | None => Err(common(error)),
            Some((code, status)) => {
                debug!(%pod, code, message = %status.message, "cannot read the source pod; going ahead");
                Ok(None)
            }
        },
    }
}

/// Creates `request`; returns it as the API server stored it (with its generated name).
pub async fn create(client: &Client, request: &ProbeRequest) -> Result<ProbeRequest> {
    let namespace = request.metadata.namespace.clone().unwrap_or_default();
    Api::<ProbeRequest>::namespaced(client.clone(), &namespace)
        .create(&PostParams::default(), request)
        .await
        .map_err(|error| match api_status(&error) {
            Some((403, status)) => Error::CreateForbidden {
                namespace,
                message: status.message.clone(),
            },
            // The API server answers a resource it does not serve with a plain-text 404; a
            // missing namespace is a `Status` naming it.
            Some((404, status)) => match &status.details {
                Some(details) if details.kind == "namespaces" => {
                    Error::NamespaceNotFound(namespace)
                }
                _ => Error::CrdMissing,
            },
            Some((400 | 422, status)) => Error::Invalid(status.message.clone()),
            _ => common(error),
        })
}

/// How long to wait for the agent, and how often to look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wait {
    pub timeout: Duration,
    pub poll: Duration,
}

/// Where the wait stands, for the progress line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress<'a> {
    pub elapsed: Duration,
    /// The node whose agent should answer: from the status once it names one, else the source
    /// pod's.
    pub node: Option<&'a str>,
    pub phase: ProbeRequestPhase,
}

impl Progress<'_> {
    /// `waiting for the agent on node node-1 ... 3s`.
    pub fn line(&self) -> String {
        format!("{} ... {}s", self.what(), self.elapsed.as_secs())
    }

    /// `waiting for the agent on node node-1`.
    pub fn what(&self) -> String {
        let node = match self.node {
            Some(node) => format!("on node {node}"),
            None => "on the source pod's node".to_string(),
        };
        match self.phase {
            ProbeRequestPhase::Running => format!("the agent {node} is probing"),
            _ => format!("waiting for the agent {node}"),
        }
    }
}

/// The finished status of ProbeRequest `request` (phase Succeeded or Failed), reading it every
/// `wait.poll` until `wait.timeout`. Server errors and dropped connections are retried until
/// then; `progress` hears about every look.
pub async fn wait_for_result(
    client: &Client,
    request: &ObjectRef,
    node: Option<&str>,
    wait: Wait,
    progress: &mut dyn FnMut(&Progress<'_>),
) -> Result<ProbeRequestStatus> {
    let api = Api::<ProbeRequest>::namespaced(client.clone(), &request.namespace);
    let started = Instant::now();
    let deadline = started + wait.timeout;
    let mut node = node.map(str::to_string);
    let mut phase = ProbeRequestPhase::Pending;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, api.get(&request.name)).await {
            Ok(Ok(found)) => {
                if let Some(status) = found.status {
                    if let Some(name) = &status.node {
                        node = Some(name.clone());
                    }
                    if matches!(
                        status.phase,
                        ProbeRequestPhase::Succeeded | ProbeRequestPhase::Failed
                    ) {
                        return Ok(status);
                    }
                    phase = status.phase;
                }
            }
            Ok(Err(error)) => match api_status(&error) {
                Some((404, _)) => return Err(Error::Deleted(request.clone())),
                Some((403, status)) => {
                    return Err(Error::ReadForbidden {
                        namespace: request.namespace.to_string(),
                        request: request.clone(),
                        message: status.message.clone(),
                    });
                }
                Some((401, _)) => return Err(common(error)),
                _ => debug!(%request, %error, "reading the ProbeRequest failed; retrying"),
            },
            Err(_elapsed) => {}
        }
        let now = Instant::now();
        if now >= deadline {
            let waited = wait.timeout;
            let request = request.clone();
            return Err(match phase {
                ProbeRequestPhase::Running => Error::Unfinished {
                    waited,
                    request,
                    node,
                },
                _ => Error::NoAgent {
                    waited,
                    request,
                    node,
                },
            });
        }
        progress(&Progress {
            elapsed: now - started,
            node: node.as_deref(),
            phase,
        });
        tokio::time::sleep(wait.poll.min(deadline - now)).await;
    }
}

/// What a finished run produced.
#[derive(Clone, Debug, PartialEq)]
pub struct Finished {
    /// The ProbeRequest, `namespace/name`.
    pub request: ObjectRef,
    pub status: ProbeRequestStatus,
}

/// Looks up the source's node, creates the ProbeRequest and waits for its result.
pub(in crate::cli) async fn execute(
    client: &Client,
    plan: &Plan,
    wait: Wait,
    progress: &mut dyn FnMut(&Progress<'_>),
) -> Result<Finished> {
    let default_namespace = client.default_namespace().to_string();
    let source = plan.source(&default_namespace);
    let node = source_node(client, &source).await?;
    let created = create(client, &plan.request(&default_namespace)).await?;
    let request = ObjectRef::new(
        source.namespace,
        created.metadata.name.clone().unwrap_or_default(),
    );
    debug!(%request, "created the ProbeRequest");
    let status = wait_for_result(client, &request, node.as_deref(), wait, progress).await?;
    Ok(Finished { request, status })
}
