//! `POST /v1/probe`: one on-demand probe from a pod on this node, for a caller Kubernetes
//! allows to create `proberequests.netreach.dev` in the source pod's namespace.
//!
//! ```text
//! request ─> slot (bounded in-flight probes, else 503)
//!         ─> bearer token ─ProbeService::authenticate (TokenReview)─> 401 | 503
//!         ─> per-caller token bucket ─> 429 + Retry-After
//!         ─> JSON body (size limit ─> 413) ─validate─> 400
//!         ─ProbeService::authorize (SubjectAccessReview in the source namespace)─> 403 | 503
//!         ─> index: source pod on this node and probeable, destination pod and port ─> 404/409/422
//!         ─ProbeService::probe─> PairReport (200) | 503 | 504
//! ```
//!
//! Never an open port scanner: every probe runs from a pod the caller may create ProbeRequests
//! for, one target and port at a time, rate limited per caller. Targets are pods, DNS names,
//! or IP addresses (never loopback, link-local, multicast, broadcast or unspecified:
//! `probe_spec::refused_target`); IPs are allowed because an operator with that permission can
//! create the same probe as a ProbeRequest.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, StatusCode, header};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use probe_spec::{PodRef, ProbeRequestSpec, RequestSource, RequestTarget, RequestTargetKind};
use serde::Deserialize;
use tracing::{info, warn};

use super::{ApiError, AppState, PairReport, ProbeCall, ProbeCallTarget, ServiceError};
use crate::cluster::Index;
use crate::cluster::model::{ObjectRef, PodPhase, Protocol};

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
    timeout: Duration,
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
                pod: from.name.clone(),
            },
            to: RequestTarget {
                pod: to.map(|to| PodRef {
                    namespace: Some(to.namespace),
                    name: to.name,
                }),
                ip: self.ip,
                dns: self.dns,
                port: self.port,
                protocol: self.protocol,
            },
            timeout: self.timeout.unwrap_or_else(|| "2s".into()),
            count: 1,
        };
        if let Err(errors) = spec.validate() {
            let problems: Vec<String> = errors
                .errors()
                .iter()
                .map(|error| format!("{}: {}", body_field(&error.path), error.message))
                .collect();
            return Err(invalid(problems.join("; ")));
        }
        let timeout = spec
            .timeout()
            .map_err(|e| invalid(format!("timeout: {e}")))?;
        Ok(CheckedBody {
            from,
            spec,
            timeout,
        })
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
    body: Result<Json<ProbeBody>, JsonRejection>,
) -> Result<Json<PairReport>, ApiError> {
    let _slot = state
        .probe_slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Overloaded)?;
    let token = bearer_token(&headers)?;
    let auth_timeout = state.limits.auth_timeout;

    let user = tokio::time::timeout(auth_timeout, state.probes.authenticate(token))
        .await
        .map_err(|_| ApiError::AuthUnavailable("TokenReview timed out".into()))?
        .map_err(auth_unavailable)?
        .ok_or(ApiError::InvalidToken)?;

    state
        .rate_limiter
        .check(&user.username, tokio::time::Instant::now().into_std())
        .map_err(|retry_after| {
            info!(user = %user.username, "probe request rate limited");
            ApiError::RateLimited { retry_after }
        })?;

    let Json(body) =
        body.map_err(|rejection| body_error(&rejection, state.limits.max_body_bytes))?;
    let checked = body.check()?;

    let allowed = tokio::time::timeout(
        auth_timeout,
        state.probes.authorize(&user, &checked.from.namespace),
    )
    .await
    .map_err(|_| ApiError::AuthUnavailable("SubjectAccessReview timed out".into()))?
    .map_err(auth_unavailable)?;
    if !allowed {
        info!(user = %user.username, namespace = %checked.from.namespace, "probe request forbidden");
        return Err(ApiError::Forbidden {
            user: user.username,
            namespace: checked.from.namespace,
        });
    }

    let call = resolve(&state.index.read(), &state.node, &user.username, checked)?;
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

/// The token of an `Authorization: Bearer <token>` header.
fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::MissingToken)?;
    let value = value.to_str().map_err(|_| ApiError::InvalidToken)?;
    let (scheme, token) = value.split_once(' ').ok_or(ApiError::MissingToken)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(ApiError::MissingToken);
    }
    Ok(token)
}

fn auth_unavailable(error: ServiceError) -> ApiError {
    warn!(%error, "cannot check an API caller");
    ApiError::AuthUnavailable(error.to_string())
}

fn body_error(rejection: &JsonRejection, limit: usize) -> ApiError {
    match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge { limit },
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(rejection.body_text()),
        _ => ApiError::InvalidRequest(rejection.body_text()),
    }
}

/// Checks the request against the index (the source runs on this node and can be probed from,
/// the destination pod exists and declares the port) and resolves it into a [`ProbeCall`].
fn resolve(
    index: &Index,
    node: &str,
    requested_by: &str,
    checked: CheckedBody,
) -> Result<ProbeCall, ApiError> {
    let CheckedBody {
        from,
        spec,
        timeout,
    } = checked;
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
    let not_probeable = |why: &str| ApiError::SourceNotProbeable {
        pod: from.clone(),
        why: why.to_string(),
    };
    if source.host_network {
        return Err(not_probeable(
            "it uses the node's network (hostNetwork), which NetworkPolicy does not govern",
        ));
    }
    if source.terminating {
        return Err(not_probeable("it is terminating"));
    }
    if source.phase != PodPhase::Running {
        return Err(not_probeable(&format!(
            "it is {:?}, not Running",
            source.phase
        )));
    }
    if source.ips.is_empty() {
        return Err(not_probeable("it has no IP yet"));
    }

    let Some(kind) = spec.to.kind() else {
        return Err(ApiError::InvalidRequest(
            "set exactly one of to, ip or dns".into(),
        ));
    };
    let target = match kind {
        RequestTargetKind::Pod {
            pod,
            port,
            protocol,
        } => {
            let key = ObjectRef::new(
                pod.namespace.as_deref().unwrap_or(&from.namespace),
                &pod.name,
            );
            let protocol = model_protocol(protocol);
            let destination = index
                .pod(&key)
                .ok_or_else(|| ApiError::DestinationNotFound(key.clone()))?;
            let ip = match (destination.is_endpoint(), destination.ips.first()) {
                (true, Some(ip)) => *ip,
                (false, Some(_)) => {
                    return Err(ApiError::DestinationNotProbeable {
                        pod: key,
                        why: format!("it has finished ({:?})", destination.phase),
                    });
                }
                (_, None) => {
                    return Err(ApiError::DestinationNotProbeable {
                        pod: key,
                        why: "it has no IP yet".into(),
                    });
                }
            };
            let port = match port {
                IntOrString::Int(number) => u16::try_from(*number).map_err(|_| {
                    ApiError::InvalidRequest(format!("port: {number} is out of range"))
                })?,
                IntOrString::String(name) => destination
                    .resolve_named_port(name, protocol)
                    .ok_or_else(|| ApiError::PortNotDeclared {
                        pod: key.clone(),
                        port: name.clone(),
                        protocol: protocol.to_string(),
                    })?,
            };
            ProbeCallTarget::Pod {
                pod: key,
                ip,
                port,
                protocol,
            }
        }
        RequestTargetKind::Ip { ip, port, protocol } => {
            if let Some(message) = probe_spec::refused_target_message(ip) {
                return Err(ApiError::TargetNotAllowed(format!("ip: {message}")));
            }
            ProbeCallTarget::Ip {
                ip,
                port,
                protocol: model_protocol(protocol),
            }
        }
        RequestTargetKind::Dns(name) => ProbeCallTarget::Dns {
            name: name.to_string(),
        },
    };
    Ok(ProbeCall {
        requested_by: requested_by.to_string(),
        from,
        target,
        timeout,
    })
}

fn model_protocol(protocol: probe_spec::Protocol) -> Protocol {
    match protocol {
        probe_spec::Protocol::Tcp => Protocol::Tcp,
        probe_spec::Protocol::Udp => Protocol::Udp,
        probe_spec::Protocol::Sctp => Protocol::Sctp,
    }
}
