//! Services and EndpointSlices: what a Service name and port lead to.
//!
//! ```text
//! corev1::Service ──TryFrom──> Service {cluster IPs, ports (port, protocol, targetPort), selector}
//! discovery/v1 EndpointSlice ──TryFrom──> EndpointSlice {service, ports (name -> number), endpoints}
//!                                           │
//! resolve(index, service, port) ──> ResolvedService {ClusterIP, the Service port, endpoints:
//!                                    [{pod, ip, port (the targetPort resolved for that endpoint)}]}
//! ```
//!
//! The endpoints come from the Service's EndpointSlices, as kube-proxy reads them: a slice port
//! with the Service port's name carries the number its targetPort resolved to for the endpoints
//! of that slice, so a named targetPort may differ per endpoint. A dump without slices (offline
//! `explain`) falls back to the selector: the Running pods it selects, the targetPort resolved
//! on each pod's container ports, as the EndpointSlice controller would. Headless Services have
//! no ClusterIP (their names resolve to the endpoints); ExternalName Services have neither.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use k8s_openapi::api::core::v1 as corev1;
use k8s_openapi::api::discovery::v1 as discoveryv1;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Index;
use super::convert::{ConvertError, DEFAULT_NAMESPACE, FieldProblem};
use super::model::{Labels, ObjectRef, PodPhase, PortRef, Protocol};

/// The label an EndpointSlice names its Service with.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A Service port's `targetPort`: a number, or a container-port name resolved per endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetPort {
    Number(u16),
    Name(String),
}

impl fmt::Display for TargetPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetPort::Number(n) => write!(f, "{n}"),
            TargetPort::Name(name) => f.write_str(name),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    /// Required when the Service has several ports.
    pub name: Option<String>,
    pub port: u16,
    pub protocol: Protocol,
    pub target_port: TargetPort,
}

/// How a Service is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceKind {
    /// A virtual IP kube-proxy (or an eBPF load balancer) spreads over the endpoints.
    ClusterIp,
    /// `clusterIP: None`: the name resolves to the endpoints themselves.
    Headless,
    /// A DNS alias to another name: no endpoints, nothing netreach can probe as a Service.
    ExternalName,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub namespace: String,
    pub name: String,
    pub kind: ServiceKind,
    /// `spec.clusterIPs` (or `spec.clusterIP`), in order; empty for headless and ExternalName.
    pub cluster_ips: Vec<IpAddr>,
    pub ports: Vec<ServicePort>,
    /// `None`: no selector (endpoints are managed by hand, through EndpointSlices).
    pub selector: Option<Labels>,
}

impl Service {
    pub fn key(&self) -> ObjectRef {
        ObjectRef::new(self.namespace.as_str(), self.name.as_str())
    }

    /// The port `port` names: its number, or its name; a Service with one port also answers
    /// to that port's number when asked by the protocol alone.
    pub fn port(&self, port: &PortRef, protocol: Protocol) -> Option<&ServicePort> {
        self.ports.iter().find(|p| {
            p.protocol == protocol
                && match port {
                    PortRef::Number(n) => p.port == *n,
                    PortRef::Name(name) => p.name.as_deref() == Some(name.as_str()),
                }
        })
    }
}

/// One endpoint of a slice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceEndpoint {
    pub addresses: Vec<IpAddr>,
    /// `conditions.ready` (unset means ready, as the API documents).
    pub ready: bool,
    /// The pod behind it (`targetRef` of kind Pod).
    pub pod: Option<ObjectRef>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlicePort {
    pub name: Option<String>,
    /// `None`: every port (a slice of a Service without ports).
    pub port: Option<u16>,
    pub protocol: Protocol,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointSlice {
    pub namespace: String,
    pub name: String,
    /// The `kubernetes.io/service-name` label.
    pub service: String,
    pub ports: Vec<SlicePort>,
    pub endpoints: Vec<SliceEndpoint>,
}

impl EndpointSlice {
    pub fn key(&self) -> ObjectRef {
        ObjectRef::new(self.namespace.as_str(), self.name.as_str())
    }
}

// === Conversion ===

fn named(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> (String, String) {
    let namespace = meta
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
    (namespace, meta.name.clone().unwrap_or_default())
}

fn port_number(value: i32) -> Result<u16, String> {
    u16::try_from(value)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{value} is not a port number (1-65535)"))
}

fn protocol(value: Option<&str>) -> Result<Protocol, String> {
    value.map_or(Ok(Protocol::Tcp), str::parse)
}

impl TryFrom<&corev1::Service> for Service {
    type Error = ConvertError;

    fn try_from(service: &corev1::Service) -> Result<Self, ConvertError> {
        let (namespace, name) = named(&service.metadata);
        let mut problems = Vec::new();
        if name.is_empty() {
            problems.push(FieldProblem::new("metadata.name", "is required"));
        }
        let spec = service.spec.clone().unwrap_or_default();
        let headless = spec.cluster_ip.as_deref() == Some("None");
        let kind = if spec.type_.as_deref() == Some("ExternalName") {
            ServiceKind::ExternalName
        } else if headless {
            ServiceKind::Headless
        } else {
            ServiceKind::ClusterIp
        };
        let mut cluster_ips = Vec::new();
        if kind == ServiceKind::ClusterIp {
            let texts = spec
                .cluster_ips
                .clone()
                .filter(|ips| !ips.is_empty())
                .or_else(|| spec.cluster_ip.clone().map(|ip| vec![ip]))
                .unwrap_or_default();
            for (i, text) in texts.iter().enumerate() {
                match text.parse::<IpAddr>() {
                    Ok(ip) => cluster_ips.push(ip),
                    Err(_) => problems.push(FieldProblem::new(
                        format!("spec.clusterIPs[{i}]"),
                        format!("{text:?} is not an IP address"),
                    )),
                }
            }
        }
        let mut ports = Vec::new();
        for (i, port) in spec.ports.unwrap_or_default().iter().enumerate() {
            let field = |f: &str| format!("spec.ports[{i}].{f}");
            let number = port_number(port.port).map_err(|m| FieldProblem::new(field("port"), m));
            let proto = protocol(port.protocol.as_deref())
                .map_err(|m| FieldProblem::new(field("protocol"), m));
            let target = match &port.target_port {
                None => number.clone().map(TargetPort::Number),
                Some(IntOrString::Int(n)) => port_number(*n)
                    .map(TargetPort::Number)
                    .map_err(|m| FieldProblem::new(field("targetPort"), m)),
                Some(IntOrString::String(s)) => match s.parse::<i32>() {
                    Ok(n) => port_number(n)
                        .map(TargetPort::Number)
                        .map_err(|m| FieldProblem::new(field("targetPort"), m)),
                    Err(_) if !s.is_empty() => Ok(TargetPort::Name(s.clone())),
                    Err(_) => Err(FieldProblem::new(field("targetPort"), "is empty")),
                },
            };
            match (number, proto, target) {
                (Ok(port_number), Ok(protocol), Ok(target_port)) => ports.push(ServicePort {
                    name: port.name.clone().filter(|n| !n.is_empty()),
                    port: port_number,
                    protocol,
                    target_port,
                }),
                (a, b, c) => problems.extend([a.err(), b.err(), c.err()].into_iter().flatten()),
            }
        }
        if !problems.is_empty() {
            return Err(ConvertError::new(
                "Service",
                format!("{namespace}/{name}"),
                problems,
            ));
        }
        Ok(Service {
            namespace,
            name,
            kind,
            cluster_ips,
            ports,
            selector: spec.selector.filter(|s| !s.is_empty()),
        })
    }
}

impl TryFrom<&discoveryv1::EndpointSlice> for EndpointSlice {
    type Error = ConvertError;

    fn try_from(slice: &discoveryv1::EndpointSlice) -> Result<Self, ConvertError> {
        let (namespace, name) = named(&slice.metadata);
        let mut problems = Vec::new();
        if name.is_empty() {
            problems.push(FieldProblem::new("metadata.name", "is required"));
        }
        let service = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
            .cloned()
            .unwrap_or_default();
        if service.is_empty() {
            problems.push(FieldProblem::new(
                format!("metadata.labels[{SERVICE_NAME_LABEL}]"),
                "is required: the slice names no Service",
            ));
        }
        let mut ports = Vec::new();
        for (i, port) in slice
            .ports
            .as_deref()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let number = port.port.map(port_number).transpose();
            match (number, protocol(port.protocol.as_deref())) {
                (Ok(number), Ok(protocol)) => ports.push(SlicePort {
                    name: port.name.clone().filter(|n| !n.is_empty()),
                    port: number,
                    protocol,
                }),
                (Err(m), _) => problems.push(FieldProblem::new(format!("ports[{i}].port"), m)),
                (_, Err(m)) => problems.push(FieldProblem::new(format!("ports[{i}].protocol"), m)),
            }
        }
        let mut endpoints = Vec::new();
        for (i, endpoint) in slice.endpoints.iter().enumerate() {
            let mut addresses = Vec::new();
            for (j, text) in endpoint.addresses.iter().enumerate() {
                match text.parse::<IpAddr>() {
                    Ok(ip) => addresses.push(ip),
                    // An FQDN slice (addressType FQDN) holds names, not addresses: skipped.
                    Err(_) if slice.address_type == "FQDN" => {}
                    Err(_) => problems.push(FieldProblem::new(
                        format!("endpoints[{i}].addresses[{j}]"),
                        format!("{text:?} is not an IP address"),
                    )),
                }
            }
            let pod = endpoint
                .target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref() == Some("Pod"))
                .and_then(|r| {
                    let name = r.name.as_deref().filter(|n| !n.is_empty())?;
                    let ns = r.namespace.as_deref().unwrap_or(&namespace);
                    Some(ObjectRef::new(ns, name))
                });
            endpoints.push(SliceEndpoint {
                addresses,
                ready: endpoint
                    .conditions
                    .as_ref()
                    .and_then(|c| c.ready)
                    .unwrap_or(true),
                pod,
            });
        }
        if !problems.is_empty() {
            return Err(ConvertError::new(
                "EndpointSlice",
                format!("{namespace}/{name}"),
                problems,
            ));
        }
        Ok(EndpointSlice {
            namespace,
            name,
            service,
            ports,
            endpoints,
        })
    }
}

// === Resolution ===

/// One endpoint a Service port leads to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServiceEndpoint {
    /// The pod behind the endpoint, when known.
    pub pod: Option<ObjectRef>,
    pub ip: IpAddr,
    /// The targetPort, resolved for this endpoint.
    pub port: u16,
}

/// Where the endpoints came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointSource {
    EndpointSlices,
    /// No slice names the Service (an offline dump without them): the selector's pods.
    Selector,
}

/// A Service port and the ready endpoints it leads to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedService {
    pub service: ObjectRef,
    pub kind: ServiceKind,
    /// The first ClusterIP (`None` for headless and ExternalName Services).
    pub cluster_ip: Option<IpAddr>,
    pub port: ServicePort,
    /// Ready endpoints, sorted, each once.
    pub endpoints: Vec<ServiceEndpoint>,
    /// Endpoints that exist but are not ready (not probed, named in explanations).
    pub not_ready: usize,
    pub source: EndpointSource,
}

/// Why a Service target resolves to nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    #[error("Service {0} is not in the loaded objects")]
    UnknownService(ObjectRef),
    #[error("Service {service} has no {protocol} port {port} (ports: {ports})")]
    UnknownPort {
        service: ObjectRef,
        port: PortRef,
        protocol: Protocol,
        ports: String,
    },
    #[error("Service {0} is an ExternalName alias: it has no endpoints to probe")]
    ExternalName(ObjectRef),
}

/// Resolves `service`'s `port` in `index`: its ClusterIP and its ready endpoints (see the module
/// docs). Pure.
pub fn resolve(
    index: &Index,
    service: &ObjectRef,
    port: &PortRef,
    protocol: Protocol,
) -> Result<ResolvedService, ServiceError> {
    let svc = index
        .service(service)
        .ok_or_else(|| ServiceError::UnknownService(service.clone()))?;
    if svc.kind == ServiceKind::ExternalName {
        return Err(ServiceError::ExternalName(service.clone()));
    }
    let service_port = svc
        .port(port, protocol)
        .ok_or_else(|| ServiceError::UnknownPort {
            service: service.clone(),
            port: port.clone(),
            protocol,
            ports: describe_ports(svc),
        })?
        .clone();
    let family = svc.cluster_ips.first().map(IpAddr::is_ipv4);
    let slices: Vec<&EndpointSlice> = index.endpoint_slices_of(service).collect();
    let mut endpoints = BTreeSet::new();
    let mut not_ready = 0;
    let source = if slices.is_empty() && svc.selector.is_some() {
        for pod in index.pods_in(&svc.namespace) {
            let selected = svc
                .selector
                .as_ref()
                .is_some_and(|selector| selector.iter().all(|(k, v)| pod.labels.get(k) == Some(v)));
            if !selected || pod.phase != PodPhase::Running {
                continue;
            }
            let Some(ip) = pod
                .ips
                .iter()
                .copied()
                .find(|ip| family.is_none_or(|v4| ip.is_ipv4() == v4))
            else {
                continue;
            };
            let number = match &service_port.target_port {
                TargetPort::Number(n) => Some(*n),
                TargetPort::Name(name) => pod.resolve_named_port(name, protocol),
            };
            let Some(number) = number else { continue };
            if pod.ready && !pod.terminating {
                endpoints.insert(ServiceEndpoint {
                    pod: Some(pod.key()),
                    ip,
                    port: number,
                });
            } else {
                not_ready += 1;
            }
        }
        EndpointSource::Selector
    } else {
        for slice in slices {
            let Some(number) = slice
                .ports
                .iter()
                .find(|p| p.name == service_port.name && p.protocol == protocol)
                .and_then(|p| p.port)
            else {
                continue;
            };
            for endpoint in &slice.endpoints {
                let Some(ip) = endpoint
                    .addresses
                    .iter()
                    .copied()
                    .find(|ip| family.is_none_or(|v4| ip.is_ipv4() == v4))
                else {
                    continue;
                };
                if endpoint.ready {
                    endpoints.insert(ServiceEndpoint {
                        pod: endpoint.pod.clone(),
                        ip,
                        port: number,
                    });
                } else {
                    not_ready += 1;
                }
            }
        }
        EndpointSource::EndpointSlices
    };
    Ok(ResolvedService {
        service: service.clone(),
        kind: svc.kind,
        cluster_ip: svc.cluster_ips.first().copied(),
        port: service_port,
        endpoints: endpoints.into_iter().collect(),
        not_ready,
        source,
    })
}

/// `http=80/TCP->8080, 53/UDP->dns` for messages.
pub fn describe_ports(service: &Service) -> String {
    if service.ports.is_empty() {
        return "none".into();
    }
    service
        .ports
        .iter()
        .map(|p| match &p.name {
            Some(name) => format!("{name}={}/{}->{}", p.port, p.protocol, p.target_port),
            None => format!("{}/{}->{}", p.port, p.protocol, p.target_port),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;
