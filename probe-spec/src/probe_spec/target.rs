//! ProbeSpec targets: the wire shape (`ProbeTarget`, a flat object whose CEL rules demand
//! exactly one kind) and the typed view the agent converts it to (`TargetKind`).

use std::net::IpAddr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::MAX_PORTS_PER_TARGET;
use crate::{
    port::{PortSpec, check_port},
    validation::{
        DNS_NAME_MAX_LENGTH, DNS_NAME_PATTERN, Problems, check_label_selector, dns_name_problem,
    },
};

/// One destination: exactly one of pods (`podSelector` and/or `namespaceSelector`), `service`, `dns`, `ip` or `host`. Pod, service, ip and host targets need `ports`; a dns target takes none.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[x_kube(
    validation = Rule::new(
        "(has(self.podSelector) || has(self.namespaceSelector) ? 1 : 0) + (has(self.service) ? 1 : 0) + (has(self.dns) ? 1 : 0) + (has(self.ip) ? 1 : 0) + (has(self.host) ? 1 : 0) == 1"
    ).message("a target sets exactly one of: podSelector/namespaceSelector, service, dns, ip, host"),
    validation = Rule::new(
        "has(self.dns) ? (!has(self.ports) || size(self.ports) == 0) : (has(self.ports) && size(self.ports) > 0)"
    ).message("pod, ip and host targets need ports; a dns target takes none").field_path(".ports"),
    validation = Rule::new(
        "has(self.podSelector) || has(self.namespaceSelector) || has(self.service) || !has(self.ports) || self.ports.all(p, type(p.port) == int)"
    ).message("named ports need a pod or service target; give port numbers for ip and host targets").field_path(".ports"),
)]
#[serde(rename_all = "camelCase")]
pub struct ProbeTarget {
    /// Selects destination pods, in the ProbeSpec's namespace (every namespace for a ClusterProbeSpec) unless namespaceSelector is set; with namespaceSelector alone, every pod in the selected namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    /// Selects the namespaces of destination pods; `{}` means every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// A Service: probed through its ClusterIP on each of `ports` (a Service port number or name), and each of its ready endpoints directly on the targetPort resolved for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceRef>,
    /// A DNS name to resolve from each source pod, with that pod's own resolv.conf.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = DNS_NAME_MAX_LENGTH), regex(pattern = DNS_NAME_PATTERN))]
    pub dns: Option<String>,
    /// An IPv4 or IPv6 address to probe on ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 45))]
    #[x_kube(validation = Rule::new("isIP(self)").message("ip must be an IPv4 or IPv6 address"))]
    pub ip: Option<String>,
    /// A host name, resolved from each source pod, to probe on ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = DNS_NAME_MAX_LENGTH), regex(pattern = DNS_NAME_PATTERN))]
    pub host: Option<String>,
    /// The ports to probe: required for pod, ip and host targets, absent for dns targets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_PORTS_PER_TARGET))]
    pub ports: Vec<PortSpec>,
}

/// A Service by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRef {
    /// The Service's name.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// The Service's namespace; the ProbeSpec's own when absent (required in a ClusterProbeSpec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub namespace: Option<String>,
}

/// A borrowed, typed view of a [`ProbeTarget`] that sets exactly one kind.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TargetKind<'a> {
    /// Pods chosen by selectors (at least one of the two is set).
    Pods {
        /// Destination pods; absent means every pod in the selected namespaces.
        pod_selector: Option<&'a LabelSelector>,
        /// Destination namespaces; absent means the ProbeSpec's namespace (every namespace
        /// for a ClusterProbeSpec).
        namespace_selector: Option<&'a LabelSelector>,
        /// Ports to probe on each pod.
        ports: &'a [PortSpec],
    },
    /// A Service, on its ports (numbers or Service port names).
    Service {
        service: &'a ServiceRef,
        ports: &'a [PortSpec],
    },
    /// A DNS name to resolve.
    Dns(&'a str),
    /// An IP address to probe on ports.
    Ip {
        /// The address.
        ip: IpAddr,
        /// Ports to probe.
        ports: &'a [PortSpec],
    },
    /// A host name to resolve and probe on ports.
    Host {
        /// The host name.
        host: &'a str,
        /// Ports to probe.
        ports: &'a [PortSpec],
    },
}

impl ProbeTarget {
    /// The target's kind, or `None` when it sets no kind, several kinds, or an unparsable ip
    /// ([`ProbeSpecSpec::validate`](super::ProbeSpecSpec::validate) says which).
    pub fn kind(&self) -> Option<TargetKind<'_>> {
        let ports = self.ports.as_slice();
        if let Some(service) = &self.service {
            return (!self.has_pods()
                && self.dns.is_none()
                && self.ip.is_none()
                && self.host.is_none())
            .then_some(TargetKind::Service { service, ports });
        }
        match (self.has_pods(), &self.dns, &self.ip, &self.host) {
            (true, None, None, None) => Some(TargetKind::Pods {
                pod_selector: self.pod_selector.as_ref(),
                namespace_selector: self.namespace_selector.as_ref(),
                ports,
            }),
            (false, Some(name), None, None) => Some(TargetKind::Dns(name)),
            (false, None, Some(ip), None) => ip.parse().ok().map(|ip| TargetKind::Ip { ip, ports }),
            (false, None, None, Some(host)) => Some(TargetKind::Host { host, ports }),
            _ => None,
        }
    }

    pub(super) fn has_pods(&self) -> bool {
        self.pod_selector.is_some() || self.namespace_selector.is_some()
    }

    pub(super) fn check(&self, path: &str, problems: &mut Problems) {
        let kinds: Vec<&str> = [
            (self.has_pods(), "podSelector/namespaceSelector"),
            (self.service.is_some(), "service"),
            (self.dns.is_some(), "dns"),
            (self.ip.is_some(), "ip"),
            (self.host.is_some(), "host"),
        ]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect();
        match kinds.as_slice() {
            [] => problems.push(
                path,
                "set one of podSelector/namespaceSelector, service, dns, ip or host",
            ),
            [_] => {}
            several => problems.push(
                path,
                format!(
                    "sets {}; a target is exactly one of them",
                    several.join(" and ")
                ),
            ),
        }

        if let Some(selector) = &self.pod_selector {
            check_label_selector(selector, &format!("{path}.podSelector"), problems);
        }
        if let Some(selector) = &self.namespace_selector {
            check_label_selector(selector, &format!("{path}.namespaceSelector"), problems);
        }
        if let Some(service) = &self.service {
            for (field, value) in [
                ("name", Some(&service.name)),
                ("namespace", service.namespace.as_ref()),
            ] {
                if let Some(problem) = value.and_then(|v| dns_label_problem(v)) {
                    problems.push(format!("{path}.service.{field}"), problem);
                }
            }
        }
        if let Some(problem) = self.dns.as_deref().and_then(dns_name_problem) {
            problems.push(format!("{path}.dns"), problem);
        }
        if let Some(problem) = self
            .ip
            .as_deref()
            .and_then(crate::address::ip_target_problem)
        {
            problems.push(format!("{path}.ip"), problem);
        }
        if let Some(problem) = self.host.as_deref().and_then(dns_name_problem) {
            problems.push(format!("{path}.host"), problem);
        }

        if self.dns.is_some() {
            if !self.ports.is_empty() {
                problems.push(format!("{path}.ports"), "a dns target takes no ports");
            }
        } else if self.ports.is_empty() {
            problems.push(
                format!("{path}.ports"),
                "pod, service, ip and host targets need at least one port",
            );
        } else if self.ports.len() > MAX_PORTS_PER_TARGET {
            problems.push(
                format!("{path}.ports"),
                format!(
                    "{} ports; at most {MAX_PORTS_PER_TARGET} are allowed",
                    self.ports.len()
                ),
            );
        }
        for (index, port) in self.ports.iter().enumerate() {
            check_port(
                &port.port,
                self.has_pods() || self.service.is_some(),
                &format!("{path}.ports[{index}].port"),
                problems,
            );
        }
    }
}

/// Why `value` is not a DNS label (a Service's name, a namespace), if it is not.
fn dns_label_problem(value: &str) -> Option<String> {
    let valid = !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    (!valid).then(|| {
        format!("{value:?} is not a DNS label (1-63 lowercase letters, digits or '-', not starting or ending with '-')")
    })
}
