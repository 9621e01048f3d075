//! `POST /v1/probe`: one on-demand probe from a pod on this node, for a caller Kubernetes
//! allows to create `proberequests.netreach.dev` in the source pod's namespace.
//!
//! ```text
//! request ─> bearer token ─Gate::authenticate (TokenReview, cached)─> 401 | 503
//!         ─> per-caller token bucket ─> 429 + Retry-After
//!         ─> JSON body, read only now (type ─> 415, size ─> 413, slow ─> 408) ─validate─> 400
//!         ─Gate::authorize (create proberequests in the source namespace)─> 403 | 503
//!         ─> index: source pod on this node and probeable, destination pod and port ─> 404/409/422
//!         ─Gate::authorize (get pods in a destination namespace other than the source's)─> 403
//!         ─> slot (bounded in-flight probes, else 503)
//!         ─ProbeService::probe─> PairReport (200) | 503 | 504
//! ```
//!
//! Nothing costly happens before authentication: an unauthenticated request never takes a
//! probe slot and its body is never read.
//!
//! Never an open port scanner: every probe runs from a pod the caller may create ProbeRequests
//! for, one target and port at a time, rate limited per caller. Targets are pods, DNS names,
//! or IP addresses (never loopback, link-local, multicast, broadcast or unspecified:
//! `probe_spec::refused_target`); IPs are allowed because an operator with that permission can
//! create the same probe as a ProbeRequest.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use probe_spec::{PodRef, ProbeRequestSpec, RequestSource, RequestTarget};
use serde::Deserialize;
use tracing::{info, warn};

use super::auth::{Access, TokenUse};
use super::{ApiError, ApiLimits, AppState, ProbeCall, ProbeCallTarget, ServiceError};
use crate::cluster::Index;
use crate::cluster::model::ObjectRef;
use crate::pair::{PairReport, PairTarget};
use crate::schedule::{RequestError, not_probeable, resolve_request};

/// The JSON body of `POST /v1/probe`: `from` a pod, to exactly one of `to` (a pod), `ip` or
/// `dns`; pods and IPs need a `port` (a number, or a container-port name for pods).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeBody {
    /// The source pod, `namespace/name`.
    pub from: String,
    /// A destination pod, `namespace/name`.
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub dns: Option<String>,
    #[serde(default)]
    pub port: Option<IntOrString>,
    /// TCP (default), UDP or SCTP.
    #[serde(default)]
    pub protocol: probe_spec::Protocol,
    /// How long the probe waits, e.g. `2s` (default); at most `1m`.
    #[serde(default)]
    pub timeout: Option<String>,
}

/// A [`ProbeBody`] that passed the same checks as a ProbeRequest.
struct CheckedBody {
    from: ObjectRef,
    spec: ProbeRequestSpec,
}

impl ProbeBody {
    /// Checks the body with `ProbeRequestSpec::validate`, naming the body's fields.
    fn check(self) -> Result<CheckedBody, ApiError> {
        let invalid = |message: String| ApiError::InvalidRequest(message);
        let from: ObjectRef = self
            .from
            .parse()
            .map_err(|e| invalid(format!("from: {e}")))?;
        let to = self
            .to
            .as_deref()
            .map(|to| {
                to.parse::<ObjectRef>()
                    .map_err(|e| invalid(format!("to: {e}")))
            })
            .transpose()?;
        let spec = ProbeRequestSpec {
            from: RequestSource {
                pod: from.name.to_string(),
            },
            to: RequestTarget {
                pod: to.map(|to| PodRef {
                    namespace: Some(to.namespace.to_string()),
                    name: to.name.to_string(),
                }),
                // The HTTP API probes pods, IPs and DNS names; Services go through a
                // ProbeRequest (`netreach probe --to svc/NS/NAME`).
                service: None,
                ip: self.ip,
                dns: self.dns,
                port: self.port,
                protocol: self.protocol,
            },
            timeout: self.timeout.unwrap_or_else(|| "2s".into()),
            count: 1,
            ttl_seconds_after_finished: probe_spec::DEFAULT_TTL_SECONDS_AFTER_FINISHED,
        };
        if let Err(errors) = spec.validate() {
            let problems: Vec<String> = errors
                .errors()
                .iter()
                .map(|error| format!("{}: {}", body_field(&error.path), error.message))
                .collect();
            return Err(invalid(problems.join("; ")));
        }
        Ok(CheckedBody { from, spec })
    }
}

/// The body field a ProbeRequest field path stands for.
fn body_field(path: &str) -> &str {
    let path = path.strip_prefix("spec.").unwrap_or(path);
    if path.starts_with("from") {
        "from"
    } else if path.starts_with("to.pod") || path == "to" {
        "to"
    } else {
        path.strip_prefix("to.").unwrap_or(path)
    }
}

pub(super) async fn probe(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<PairReport>, ApiError> {
    let user = state.gate.authenticate(&headers, TokenUse::Probe).await?;
    state
        .rate_limiter
        .check(&user.username, tokio::time::Instant::now().into_std())
        .map_err(|retry_after| {
            info!(user = %user.username, "probe request rate limited");
            ApiError::RateLimited { retry_after }
        })?;

    let body = read_json_body(&headers, body, &state.limits).await?;
    let checked = body.check()?;
    state
        .gate
        .authorize(
            &user,
            Access::CreateProbeRequests {
                namespace: checked.from.namespace.to_string(),
            },
        )
        .await?;

    // A node-scoped view fetches a destination its watches do not hold (never a guess: what
    // cannot be fetched stays unknown).
    if let Some(lookup) = &state.lookup {
        lookup
            .fetch_destination(&checked.from.namespace, &checked.spec.to)
            .await;
    }
    let (call, destination_namespace) = {
        let index = state.index.read();
        let call = resolve(&index, &state.node, &user.username, checked)?;
        let namespace = destination_namespace(&index, &call);
        (call, namespace)
    };
    // The report names the destination pod, its IP, ports and the policies of its namespace:
    // a caller must be able to read pods there.
    if let Some(namespace) =
        destination_namespace.filter(|namespace| **namespace != *call.from.namespace)
    {
        state
            .gate
            .authorize(&user, Access::GetPods { namespace })
            .await?;
    }

    let _slot = state
        .probe_slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Overloaded)?;
    info!(user = %call.requested_by, from = %call.from, target = %call.target, "on-demand probe");
    let deadline = call.timeout + state.limits.probe_deadline_margin;
    let report = tokio::time::timeout(deadline, state.probes.probe(call))
        .await
        .map_err(|_| ApiError::ProbeTimeout(deadline))?
        .map_err(|error| match error {
            ServiceError::Unavailable(source) => {
                warn!(error = %source, "on-demand probe could not run");
                ApiError::ProbeUnavailable(source.to_string())
            }
            ServiceError::Rejected(message) => ApiError::TargetNotAllowed(message),
        })?;
    Ok(Json(report))
}

/// The namespace of the pod a call's report would describe: a destination pod, or the pod
/// that owns a destination IP.
fn destination_namespace(index: &Index, call: &ProbeCall) -> Option<String> {
    match &call.target {
        ProbeCallTarget::Pod { pod, .. } => Some(pod.namespace.to_string()),
        ProbeCallTarget::Ip { ip, .. } => index.pod_by_ip(*ip).map(|pod| pod.namespace.clone()),
        ProbeCallTarget::Service { service, .. } => Some(service.namespace.to_string()),
        ProbeCallTarget::Dns { .. } | ProbeCallTarget::Host { .. } => None,
    }
}

/// The JSON body, read only now that the caller is authenticated: `application/json`, at most
/// `max_body_bytes`, within `body_timeout`.
async fn read_json_body(
    headers: &HeaderMap,
    body: Body,
    limits: &ApiLimits,
) -> Result<ProbeBody, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence != "application/json" && !essence.ends_with("+json") {
        return Err(ApiError::UnsupportedMediaType(
            "Expected request with `Content-Type: application/json`".into(),
        ));
    }
    let limit = limits.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let collected = tokio::time::timeout(limits.body_timeout, Limited::new(body, limit).collect())
        .await
        .map_err(|_| ApiError::RequestTimeout(limits.body_timeout))?;
    let bytes = match collected {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        Err(error) => {
            return Err(ApiError::InvalidRequest(format!(
                "cannot read the request body: {error}"
            )));
        }
    };
    serde_json::from_slice(&bytes).map_err(|error| {
        ApiError::InvalidRequest(format!(
            "Failed to deserialize the JSON body into the target type: {error}"
        ))
    })
}

/// Checks the request against the index (the source runs on this node and can be probed from,
/// the destination pod exists and declares the port) and resolves it into a [`ProbeCall`], with
/// the resolution ProbeRequests use ([`resolve_request`]).
fn resolve(
    index: &Index,
    node: &str,
    requested_by: &str,
    checked: CheckedBody,
) -> Result<ProbeCall, ApiError> {
    let CheckedBody { from, spec, .. } = checked;
    let source = index
        .pod(&from)
        .ok_or_else(|| ApiError::SourceNotFound(from.clone()))?;
    if source.node_name.as_deref() != Some(node) {
        return Err(ApiError::SourceNotOnThisNode {
            pod: from,
            pod_node: source.node_name.clone(),
            this_node: node.to_string(),
        });
    }
    let resolved = resolve_request(index, &from.namespace, &spec).map_err(api_error)?;
    if let PairTarget::Host { .. } = resolved.target {
        return Err(ApiError::InvalidRequest(
            "host targets are for ProbeSpecs; use dns or ip".into(),
        ));
    }
    Ok(ProbeCall {
        requested_by: requested_by.to_string(),
        from: resolved.from,
        target: resolved.target,
        timeout: resolved.timeout,
    })
}

/// The status code and body field of each way a request does not resolve.
fn api_error(error: RequestError) -> ApiError {
    match error {
        RequestError::InvalidSpec(message) => ApiError::InvalidRequest(message),
        RequestError::Service(error) => ApiError::InvalidRequest(error.to_string()),
        RequestError::NoTarget => {
            ApiError::InvalidRequest("set exactly one of to, ip or dns".into())
        }
        RequestError::PortOutOfRange(number) => {
            ApiError::InvalidRequest(format!("port: {number} is out of range"))
        }
        RequestError::SourceNotFound(pod) => ApiError::SourceNotFound(pod),
        RequestError::SourceNotProbeable { pod, reason } => ApiError::SourceNotProbeable {
            pod,
            why: format!("it {}", not_probeable(reason)),
        },
        RequestError::DestinationNotFound(pod) => ApiError::DestinationNotFound(pod),
        RequestError::DestinationNotProbeable { pod, phase } => ApiError::DestinationNotProbeable {
            pod,
            why: format!("it has no IP or has finished ({phase:?})"),
        },
        RequestError::PortNotDeclared {
            pod,
            port,
            protocol,
        } => ApiError::PortNotDeclared {
            pod,
            port,
            protocol: protocol.to_string(),
        },
        RequestError::RefusedTarget(message) => {
            ApiError::TargetNotAllowed(format!("ip: {message}"))
        }
    }
}
