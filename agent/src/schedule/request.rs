//! One resolution of an on-demand request against the index, for both ways one arrives: a
//! ProbeRequest (the runner writes the error to its status) and a `POST /v1/probe` body (the
//! API maps the error to a status code). Pure: reads the index, decides nothing about who
//! asked (authorization and the node check stay with each caller).
//!
//! ```text
//! (namespace, ProbeRequestSpec) ──validate──> source pod in the namespace, probeable
//!                               ──to──> pod (IP, named port resolved) | ip (not refused) | dns
//!                               ──> ResolvedRequest { from, target, timeout, count }
//! ```

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use probe_spec::probe_request::MAX_REQUEST_COUNT;
use probe_spec::{ProbeRequestSpec, RequestTargetKind};

use super::plan::{SkipReason, eligibility};
use crate::cluster::Index;
use crate::cluster::model::{ObjectRef, PodPhase, PortRef, Protocol};
use crate::pair::PairTarget;

/// A request resolved against the index, ready to probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedRequest {
    pub from: ObjectRef,
    pub target: PairTarget,
    pub timeout: Duration,
    pub count: u32,
}

/// Why a request cannot run; the message names the object and field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    #[error("source pod {0} not found")]
    SourceNotFound(ObjectRef),
    #[error("source pod {pod} {}", not_probeable(*reason))]
    SourceNotProbeable { pod: ObjectRef, reason: SkipReason },
    #[error("invalid spec.to: set exactly one of pod, service, ip or dns")]
    NoTarget,
    #[error("{0}")]
    Service(#[from] crate::cluster::service::ServiceError),
    #[error("destination pod {0} not found")]
    DestinationNotFound(ObjectRef),
    #[error("destination pod {pod} has no IP or has finished ({phase:?})")]
    DestinationNotProbeable { pod: ObjectRef, phase: PodPhase },
    #[error("spec.to.port {0} is out of range")]
    PortOutOfRange(i32),
    #[error("destination pod {pod} declares no {protocol} port named {port:?}")]
    PortNotDeclared {
        pod: ObjectRef,
        port: String,
        protocol: Protocol,
    },
    #[error("spec.to.ip: {0}")]
    RefusedTarget(String),
}

/// Why a source pod cannot be probed from, as the end of a sentence.
pub fn not_probeable(reason: SkipReason) -> &'static str {
    match reason {
        SkipReason::Terminating => "is terminating",
        SkipReason::NotRunning => "is not Running",
        SkipReason::NoIp => "has no IP yet",
        SkipReason::HostNetwork => {
            "uses the node's network (hostNetwork), which NetworkPolicy does not govern"
        }
    }
}

/// Resolves `spec`, a request made in `namespace` (its source pod's), against `index`.
pub fn resolve_request(
    index: &Index,
    namespace: &str,
    spec: &ProbeRequestSpec,
) -> Result<ResolvedRequest, RequestError> {
    spec.validate()
        .map_err(|e| RequestError::InvalidSpec(e.to_string()))?;
    let timeout = spec
        .timeout()
        .map_err(|e| RequestError::InvalidSpec(format!("spec.timeout: {e}")))?;
    let from = ObjectRef::new(namespace, spec.from.pod.as_str());
    let source = index
        .pod(&from)
        .ok_or_else(|| RequestError::SourceNotFound(from.clone()))?;
    eligibility(source, true).map_err(|reason| RequestError::SourceNotProbeable {
        pod: from.clone(),
        reason,
    })?;
    let target = match spec.to.kind().ok_or(RequestError::NoTarget)? {
        RequestTargetKind::Pod {
            pod,
            port,
            protocol,
        } => {
            let key = ObjectRef::new(
                pod.namespace.as_deref().unwrap_or(namespace),
                pod.name.as_str(),
            );
            let protocol = Protocol::from(protocol);
            let destination = index
                .pod(&key)
                .ok_or_else(|| RequestError::DestinationNotFound(key.clone()))?;
            let ip = match (destination.is_endpoint(), destination.ips.first()) {
                (true, Some(ip)) => *ip,
                _ => {
                    return Err(RequestError::DestinationNotProbeable {
                        pod: key,
                        phase: destination.phase,
                    });
                }
            };
            let port = match port {
                IntOrString::Int(number) => {
                    u16::try_from(*number).map_err(|_| RequestError::PortOutOfRange(*number))?
                }
                IntOrString::String(name) => destination
                    .resolve_named_port(name, protocol)
                    .ok_or_else(|| RequestError::PortNotDeclared {
                        pod: key.clone(),
                        port: name.clone(),
                        protocol,
                    })?,
            };
            PairTarget::Pod {
                pod: key,
                ip,
                port,
                protocol,
            }
        }
        RequestTargetKind::Ip { ip, port, protocol } => {
            if let Some(message) = probe_spec::refused_target_message(ip) {
                return Err(RequestError::RefusedTarget(message));
            }
            PairTarget::Ip {
                ip,
                port,
                protocol: Protocol::from(protocol),
            }
        }
        RequestTargetKind::Service {
            service,
            port,
            protocol,
        } => {
            let key = ObjectRef::new(
                service.namespace.as_deref().unwrap_or(namespace),
                service.name.as_str(),
            );
            let protocol = Protocol::from(protocol);
            let port = match port {
                IntOrString::Int(number) => PortRef::Number(
                    u16::try_from(*number).map_err(|_| RequestError::PortOutOfRange(*number))?,
                ),
                IntOrString::String(name) => PortRef::Name(name.clone()),
            };
            // Known now, with the port: a request for a missing Service fails at once.
            let resolved = crate::cluster::service::resolve(index, &key, &port, protocol)?;
            PairTarget::Service {
                service: key,
                port: resolved.port.port,
                protocol,
            }
        }
        RequestTargetKind::Dns(name) => PairTarget::Dns { name: name.into() },
    };
    Ok(ResolvedRequest {
        from,
        target,
        timeout,
        count: spec.count.clamp(1, MAX_REQUEST_COUNT),
    })
}
