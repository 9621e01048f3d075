//! The `ProbeRequest` custom resource: one on-demand probe from a pod.
//!
//! `netreach probe` creates a ProbeRequest and waits; the agent on the source pod's node runs
//! the probe `count` times and writes the outcome and diagnosis to `status`. Kubernetes RBAC on
//! `proberequests` decides who may probe from which namespace, so the source pod is always in
//! the request's own namespace. The spec is immutable: a new question is a new ProbeRequest.

use std::{net::IpAddr, time::Duration};

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod status;

pub use status::{ProbeRequestPhase, ProbeRequestStatus};

use crate::{
    duration::{DURATION_MAX_LENGTH, DURATION_PATTERN, DurationError, parse_duration},
    port::{Protocol, check_port},
    probe_spec::check_duration,
    validation::{
        DNS_NAME_MAX_LENGTH, DNS_NAME_PATTERN, NAMESPACE_PATTERN, OBJECT_NAME_PATTERN, Problems,
        ValidationErrors, dns_name_problem, namespace_problem, object_name_problem,
    },
};

/// The longest timeout of one probe in a ProbeRequest.
pub const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The most probes one ProbeRequest may run.
pub const MAX_REQUEST_COUNT: u32 = 100;
/// How long a finished ProbeRequest is kept by default (`ttlSecondsAfterFinished`).
pub const DEFAULT_TTL_SECONDS_AFTER_FINISHED: u32 = 3600;
/// The longest a finished ProbeRequest may be kept: a week.
pub const MAX_TTL_SECONDS_AFTER_FINISHED: u32 = 7 * 24 * 3600;

/// The desired state of a ProbeRequest: one probe from a pod to a target, run `count` times.
// clippy takes the repeated `type_ = ...` keys of the printcolumn(...) entries for duplicated
// attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "netreach.dev",
    version = "v1alpha1",
    kind = "ProbeRequest",
    namespaced,
    status = "ProbeRequestStatus",
    derive = "PartialEq",
    shortname = "nrpr",
    category = "netreach",
    doc = "An on-demand probe from a pod in this namespace; the agent on the pod's node runs it once and writes the result and diagnosis to status.",
    printcolumn(name = "From", type_ = "string", json_path = ".spec.from.pod"),
    printcolumn(name = "Target", type_ = "string", json_path = ".status.target"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Verdict", type_ = "string", json_path = ".status.verdict"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.reason"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self == oldSelf").message("spec is immutable; create a new ProbeRequest"))]
#[serde(rename_all = "camelCase")]
pub struct ProbeRequestSpec {
    /// The source pod, in the ProbeRequest's namespace.
    pub from: RequestSource,
    /// The destination: exactly one of pod, ip or dns.
    pub to: RequestTarget,
    /// How long one probe waits for an answer, e.g. "2s" (default) or "500ms"; longer than 0s and at most 1m.
    #[serde(default = "default_timeout")]
    #[schemars(length(max = DURATION_MAX_LENGTH), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = Rule::new("!self.matches('^([0-9]+(ms|s|m|h))+$') || (duration(self) > duration('0s') && duration(self) <= duration('1m'))")
        .message("timeout must be longer than 0s and at most 1m"))]
    pub timeout: String,
    /// How many times to probe (1..100, default 1).
    #[serde(default = "default_count")]
    #[schemars(range(min = 1, max = MAX_REQUEST_COUNT))]
    pub count: u32,
    /// Seconds after the request finishes (Succeeded or Failed) when the agent that ran it
    /// deletes it (default 3600, at most a week; 0: as soon as the result is written).
    #[serde(default = "default_ttl_seconds_after_finished")]
    #[schemars(range(max = MAX_TTL_SECONDS_AFTER_FINISHED))]
    pub ttl_seconds_after_finished: u32,
}

fn default_ttl_seconds_after_finished() -> u32 {
    DEFAULT_TTL_SECONDS_AFTER_FINISHED
}

fn default_timeout() -> String {
    "2s".into()
}

fn default_count() -> u32 {
    1
}

/// The source of a ProbeRequest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestSource {
    /// Name of the source pod; the probe runs inside its network namespace.
    #[schemars(length(min = 1, max = 253), regex(pattern = OBJECT_NAME_PATTERN))]
    pub pod: String,
}

/// The destination of a ProbeRequest: exactly one of pod, service, ip or dns; pod, service and ip need a port.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[x_kube(
    validation = Rule::new("(has(self.pod) ? 1 : 0) + (has(self.service) ? 1 : 0) + (has(self.ip) ? 1 : 0) + (has(self.dns) ? 1 : 0) == 1")
        .message("to sets exactly one of: pod, service, ip, dns"),
    validation = Rule::new("has(self.dns) ? !has(self.port) : has(self.port)")
        .message("pod, service and ip targets need a port; a dns target takes none")
        .field_path(".port"),
    validation = Rule::new("has(self.pod) || has(self.service) || !has(self.port) || type(self.port) == int")
        .message("a named port needs a pod or service target; give a port number for an ip target")
        .field_path(".port"),
)]
#[serde(rename_all = "camelCase")]
pub struct RequestTarget {
    /// A destination pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodRef>,
    /// A Service (its namespace defaults to the request's): probed through its ClusterIP on the Service port, and each ready endpoint directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<crate::ServiceRef>,
    /// An IPv4 or IPv6 address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 45))]
    #[x_kube(validation = Rule::new("isIP(self)").message("ip must be an IPv4 or IPv6 address"))]
    pub ip: Option<String>,
    /// A DNS name to resolve from the source pod, with its own resolv.conf.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = DNS_NAME_MAX_LENGTH), regex(pattern = DNS_NAME_PATTERN))]
    pub dns: Option<String>,
    /// Port number (1..65535), or a container-port name of the destination pod (a Service port name for a service); required for pod, service and ip targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::port")]
    pub port: Option<IntOrString>,
    /// Transport protocol: TCP (default), UDP or SCTP; ignored for dns targets.
    #[serde(default)]
    pub protocol: Protocol,
}

/// A pod by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodRef {
    /// The pod's namespace; absent means the ProbeRequest's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = NAMESPACE_PATTERN))]
    pub namespace: Option<String>,
    /// The pod's name.
    #[schemars(length(min = 1, max = 253), regex(pattern = OBJECT_NAME_PATTERN))]
    pub name: String,
}

// === impl ProbeRequestSpec ===

impl ProbeRequest {
    /// Checks the spec; see [`ProbeRequestSpec::validate`].
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        self.spec.validate()
    }
}

impl ProbeRequestSpec {
    /// The timeout of one probe.
    pub fn timeout(&self) -> Result<Duration, DurationError> {
        parse_duration(&self.timeout)
    }

    /// How long the request is kept once finished.
    pub fn ttl_after_finished(&self) -> Duration {
        Duration::from_secs(u64::from(self.ttl_seconds_after_finished))
    }

    /// Checks everything the CRD schema checks and reports each problem with its field path
    /// (`spec.to.port: 70000 is out of range 1..65535`).
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut problems = Problems::default();
        if let Some(problem) = object_name_problem(&self.from.pod) {
            problems.push("spec.from.pod", problem);
        }
        self.to.check("spec.to", &mut problems);
        match check_duration("spec.timeout", &self.timeout, &mut problems) {
            Some(Duration::ZERO) => problems.push("spec.timeout", "must be longer than 0s"),
            Some(timeout) if timeout > MAX_REQUEST_TIMEOUT => {
                problems.push(
                    "spec.timeout",
                    format!("{:?} is longer than the maximum 1m", self.timeout),
                );
            }
            _ => {}
        }
        if self.ttl_seconds_after_finished > MAX_TTL_SECONDS_AFTER_FINISHED {
            problems.push(
                "spec.ttlSecondsAfterFinished",
                format!(
                    "{} is longer than the maximum {MAX_TTL_SECONDS_AFTER_FINISHED} (a week)",
                    self.ttl_seconds_after_finished
                ),
            );
        }
        if !(1..=MAX_REQUEST_COUNT).contains(&self.count) {
            problems.push(
                "spec.count",
                format!("{} is out of range 1..{MAX_REQUEST_COUNT}", self.count),
            );
        }
        problems.into_result()
    }
}

// === impl RequestTarget ===

/// A borrowed, typed view of a [`RequestTarget`] that sets exactly one kind.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RequestTargetKind<'a> {
    /// A pod, probed on a port.
    Pod {
        /// The pod; its namespace defaults to the request's.
        pod: &'a PodRef,
        /// The port number or container-port name.
        port: &'a IntOrString,
        /// The protocol.
        protocol: Protocol,
    },
    /// An IP address, probed on a port number.
    Ip {
        /// The address.
        ip: IpAddr,
        /// The port number.
        port: u16,
        /// The protocol.
        protocol: Protocol,
    },
    /// A Service, probed on a Service port (number or name).
    Service {
        /// The Service; its namespace defaults to the request's.
        service: &'a crate::ServiceRef,
        /// The Service port number or name.
        port: &'a IntOrString,
        /// The protocol.
        protocol: Protocol,
    },
    /// A DNS name to resolve.
    Dns(&'a str),
}

impl RequestTarget {
    /// The target's kind, or `None` when the target is invalid ([`ProbeRequestSpec::validate`]
    /// says why).
    pub fn kind(&self) -> Option<RequestTargetKind<'_>> {
        let protocol = self.protocol;
        if let Some(service) = &self.service {
            return match (&self.pod, &self.ip, &self.dns, &self.port) {
                (None, None, None, Some(port)) => Some(RequestTargetKind::Service {
                    service,
                    port,
                    protocol,
                }),
                _ => None,
            };
        }
        match (&self.pod, &self.ip, &self.dns, &self.port) {
            (Some(pod), None, None, Some(port)) => Some(RequestTargetKind::Pod {
                pod,
                port,
                protocol,
            }),
            (None, Some(ip), None, Some(IntOrString::Int(port))) => Some(RequestTargetKind::Ip {
                ip: ip.parse().ok()?,
                port: u16::try_from(*port).ok().filter(|port| *port != 0)?,
                protocol,
            }),
            (None, None, Some(name), None) => Some(RequestTargetKind::Dns(name)),
            _ => None,
        }
    }

    fn check(&self, path: &str, problems: &mut Problems) {
        let kinds: Vec<&str> = [
            (self.pod.is_some(), "pod"),
            (self.service.is_some(), "service"),
            (self.ip.is_some(), "ip"),
            (self.dns.is_some(), "dns"),
        ]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect();
        match kinds.as_slice() {
            [] => problems.push(path, "set one of pod, service, ip or dns"),
            [_] => {}
            several => problems.push(
                path,
                format!("sets {}; to is exactly one of them", several.join(" and ")),
            ),
        }

        if let Some(pod) = &self.pod {
            if let Some(problem) = pod.namespace.as_deref().and_then(namespace_problem) {
                problems.push(format!("{path}.pod.namespace"), problem);
            }
            if let Some(problem) = object_name_problem(&pod.name) {
                problems.push(format!("{path}.pod.name"), problem);
            }
        }
        if let Some(service) = &self.service {
            if let Some(problem) = object_name_problem(&service.name) {
                problems.push(format!("{path}.service.name"), problem);
            }
            if let Some(problem) = service.namespace.as_deref().and_then(namespace_problem) {
                problems.push(format!("{path}.service.namespace"), problem);
            }
        }
        if let Some(problem) = self
            .ip
            .as_deref()
            .and_then(crate::address::ip_target_problem)
        {
            problems.push(format!("{path}.ip"), problem);
        }
        if let Some(problem) = self.dns.as_deref().and_then(dns_name_problem) {
            problems.push(format!("{path}.dns"), problem);
        }

        match (&self.port, self.dns.is_some()) {
            (Some(_), true) => problems.push(format!("{path}.port"), "a dns target takes no port"),
            (None, false) => problems.push(
                format!("{path}.port"),
                "pod, service and ip targets need a port",
            ),
            (Some(port), false) => check_port(
                port,
                self.pod.is_some() || self.service.is_some(),
                &format!("{path}.port"),
                problems,
            ),
            (None, true) => {}
        }
    }
}

#[cfg(test)]
mod tests;
