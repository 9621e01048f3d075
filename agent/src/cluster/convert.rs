//! Conversion at the edge: `k8s_openapi` objects -> the validated types of [`super::model`].
//!
//! Every source (kube watchers, snapshot files read by [`super::load`]) deserializes an object
//! into its `k8s_openapi` type and converts it here, once, before it enters the
//! [`super::Index`]. Conversion defaults what the API server defaults (policyTypes E1, port
//! protocol E5, the namespace name label E10, the `default` namespace E24) and validates what
//! the API server validates (policyTypes, ports and endPort E16, named ports E17, peers E6,
//! ipBlock E19, selectors E13), so offline files behave like a live cluster.
//!
//! Failing conversion never panics. A [`ConvertError`] lists every problem with its field path.
//! NetworkPolicies fail closed: when only peers or ports are invalid, the error carries a
//! degraded policy in which each invalid entry is [`Peer::Invalid`] / [`PolicyPort::Invalid`],
//! which match nothing, so an invalid selector never silently allows traffic.

use std::fmt;
use std::net::IpAddr;

use k8s_openapi::api::core::v1 as corev1;
use k8s_openapi::api::networking::v1 as netv1;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::model::{
    Cidr, ContainerPort, IpBlock, Mesh, NAMESPACE_NAME_LABEL, Namespace, NetworkPolicy, Node, Peer,
    Pod, PodPhase, PolicyPort, PortRef, Protocol, Rule, parse_ip_lenient,
};
use super::selector::Selector;

pub type Result<T, E = ConvertError> = std::result::Result<T, E>;

/// The namespace of a namespaced object whose `metadata.namespace` is empty (E24).
pub const DEFAULT_NAMESPACE: &str = "default";

/// Node conditions that are healthy when `True`; every other `True` condition is a problem
/// (the convention of the kubelet and node-problem-detector).
const HEALTHY_NODE_CONDITIONS: &[&str] = &["Ready"];

// === Errors ===

/// One invalid field: its path from the object root and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldProblem {
    /// e.g. `spec.ingress[0].from[1].namespaceSelector.matchExpressions[0].operator`.
    pub field: String,
    pub message: String,
}

impl FieldProblem {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// An object that failed conversion, with every problem found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {object}: {}", join_problems(.problems))]
pub struct ConvertError {
    /// `Namespace`, `Node`, `Pod` or `NetworkPolicy`.
    pub kind: &'static str,
    /// `namespace/name` for namespaced kinds, `name` otherwise.
    pub object: String,
    pub problems: Vec<FieldProblem>,
    /// A NetworkPolicy with valid name, podSelector and policyTypes but invalid peers or ports,
    /// with those entries replaced by `Invalid` ones that match nothing (fail closed). Sources
    /// should apply it and report the problems.
    pub degraded: Option<Box<NetworkPolicy>>,
}

impl ConvertError {
    pub(crate) fn new(kind: &'static str, object: String, problems: Vec<FieldProblem>) -> Self {
        Self {
            kind,
            object,
            problems,
            degraded: None,
        }
    }

    /// A bounded label for failure counters.
    pub fn metric_label(&self) -> &'static str {
        if self.degraded.is_some() {
            "degraded"
        } else {
            "rejected"
        }
    }
}

fn join_problems(problems: &[FieldProblem]) -> String {
    let parts: Vec<String> = problems.iter().map(ToString::to_string).collect();
    parts.join("; ")
}

// === Metadata helpers ===

fn name_of(meta: &ObjectMeta) -> Option<&str> {
    meta.name.as_deref().filter(|n| !n.is_empty())
}

/// `metadata.namespace`, or `default` when a file leaves it out (E24).
fn namespace_of(meta: &ObjectMeta) -> &str {
    meta.namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(DEFAULT_NAMESPACE)
}

fn missing_name() -> FieldProblem {
    FieldProblem::new("metadata.name", "is required")
}

/// `ns/name` (or `ns/<unnamed>`) for messages.
fn namespaced_label(meta: &ObjectMeta) -> String {
    format!(
        "{}/{}",
        namespace_of(meta),
        name_of(meta).unwrap_or("<unnamed>")
    )
}

// === impl Namespace ===

impl TryFrom<&corev1::Namespace> for Namespace {
    type Error = ConvertError;

    fn try_from(ns: &corev1::Namespace) -> Result<Self> {
        let Some(name) = name_of(&ns.metadata) else {
            return Err(ConvertError::new(
                "Namespace",
                "<unnamed>".into(),
                vec![missing_name()],
            ));
        };
        let mut labels = ns.metadata.labels.clone().unwrap_or_default();
        // The control plane sets this label on every namespace (E10); files often omit it.
        labels.insert(NAMESPACE_NAME_LABEL.to_string(), name.to_string());
        Ok(Namespace {
            name: name.to_string(),
            labels,
        })
    }
}

// === impl Node ===

impl TryFrom<&corev1::Node> for Node {
    type Error = ConvertError;

    fn try_from(node: &corev1::Node) -> Result<Self> {
        let Some(name) = name_of(&node.metadata) else {
            return Err(ConvertError::new(
                "Node",
                "<unnamed>".into(),
                vec![missing_name()],
            ));
        };
        let mut problems = Vec::new();
        let status = node.status.as_ref();
        let mut addresses = Vec::new();
        for (i, addr) in status
            .and_then(|s| s.addresses.as_deref())
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            if !matches!(addr.type_.as_str(), "InternalIP" | "ExternalIP") {
                continue;
            }
            match parse_ip(&addr.address) {
                Ok(ip) if !addresses.contains(&ip) => addresses.push(ip),
                Ok(_) => {}
                Err(message) => problems.push(FieldProblem::new(
                    format!("status.addresses[{i}].address"),
                    message,
                )),
            }
        }
        let conditions = status
            .and_then(|s| s.conditions.as_deref())
            .unwrap_or_default();
        let ready = conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let node_problems = conditions
            .iter()
            .filter(|c| c.status == "True" && !HEALTHY_NODE_CONDITIONS.contains(&c.type_.as_str()))
            .map(|c| c.type_.clone())
            .collect();
        if !problems.is_empty() {
            return Err(ConvertError::new("Node", name.to_string(), problems));
        }
        Ok(Node {
            name: name.to_string(),
            addresses,
            ready,
            problems: node_problems,
            labels: node.metadata.labels.clone().unwrap_or_default(),
        })
    }
}

// === impl Pod ===

impl TryFrom<&corev1::Pod> for Pod {
    type Error = ConvertError;

    fn try_from(pod: &corev1::Pod) -> Result<Self> {
        let meta = &pod.metadata;
        let mut problems = Vec::new();
        if name_of(meta).is_none() {
            problems.push(missing_name());
        }
        let spec = pod.spec.as_ref();
        let status = pod.status.as_ref();

        let ips = pod_ips(status, &mut problems);
        let phase = match status.and_then(|s| s.phase.as_deref()) {
            None => PodPhase::Unknown,
            Some(phase) => phase.parse().unwrap_or_else(|message: String| {
                problems.push(FieldProblem::new("status.phase", message));
                PodPhase::Unknown
            }),
        };
        let mut ports = Vec::new();
        for (i, container) in spec
            .map(|s| s.containers.as_slice())
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            for (j, port) in container
                .ports
                .as_deref()
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                let path = format!("spec.containers[{i}].ports[{j}]");
                if let Some(port) = container_port(&path, port, &mut problems) {
                    ports.push(port);
                }
            }
        }
        if !problems.is_empty() {
            return Err(ConvertError::new("Pod", namespaced_label(meta), problems));
        }

        let conditions = status
            .and_then(|s| s.conditions.as_deref())
            .unwrap_or_default();
        let restarts = status
            .and_then(|s| s.container_statuses.as_deref())
            .unwrap_or_default()
            .iter()
            .map(|c| u32::try_from(c.restart_count).unwrap_or(0))
            .fold(0u32, u32::saturating_add);
        Ok(Pod {
            namespace: namespace_of(meta).to_string(),
            name: name_of(meta).unwrap_or_default().to_string(),
            uid: meta.uid.clone().unwrap_or_default(),
            labels: meta.labels.clone().unwrap_or_default(),
            node_name: spec
                .and_then(|s| s.node_name.clone())
                .filter(|n| !n.is_empty()),
            host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
            ips,
            phase,
            ready: conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True"),
            terminating: meta.deletion_timestamp.is_some(),
            ports,
            restarts,
            mesh: mesh_of(pod),
        })
    }
}

/// Istio's sidecar injection record; present on every injected pod.
pub const ISTIO_STATUS_ANNOTATION: &str = "sidecar.istio.io/status";
/// `REDIRECT` (default), `TPROXY` or `NONE` (no capture at all).
pub const ISTIO_INTERCEPTION_ANNOTATION: &str = "sidecar.istio.io/interceptionMode";
/// Set by the Istio CNI agent once a pod's in-pod (ambient) redirection is installed.
pub const AMBIENT_REDIRECTION_ANNOTATION: &str = "ambient.istio.io/redirection";
/// Set by Linkerd's injector on every meshed pod.
pub const LINKERD_VERSION_ANNOTATION: &str = "linkerd.io/proxy-version";
/// Linkerd's per-pod proxy uid override.
pub const LINKERD_UID_ANNOTATION: &str = "config.linkerd.io/proxy-uid";
/// The annotations mesh detection reads (the watcher keeps only these).
pub const MESH_ANNOTATIONS: [&str; 5] = [
    ISTIO_STATUS_ANNOTATION,
    ISTIO_INTERCEPTION_ANNOTATION,
    AMBIENT_REDIRECTION_ANNOTATION,
    LINKERD_VERSION_ANNOTATION,
    LINKERD_UID_ANNOTATION,
];
/// The proxy containers mesh detection looks for (as containers, or as native sidecars
/// among the init containers).
pub const MESH_PROXY_CONTAINERS: [&str; 2] = ["istio-proxy", "linkerd-proxy"];

/// The mesh whose redirect rules live in the pod's netns, from its annotations and proxy
/// container: Istio sidecar (`istio-proxy` or `sidecar.istio.io/status`), Linkerd
/// (`linkerd-proxy` or `linkerd.io/proxy-version`), Istio ambient
/// (`ambient.istio.io/redirection: enabled|pending`). The exempt uid is the proxy container's
/// `runAsUser` (a root proxy, as in Istio's TPROXY mode, still has `-u 1337` in its rules),
/// else the mesh's default. Malformed values fall back to the defaults; they never fail the pod.
fn mesh_of(pod: &corev1::Pod) -> Option<Mesh> {
    let annotations = pod.metadata.annotations.as_ref();
    let annotation = |key: &str| annotations.and_then(|a| a.get(key)).map(String::as_str);
    let spec = pod.spec.as_ref();
    let proxy = |name: &str| {
        spec.and_then(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
                .find(|c| c.name == name)
        })
    };
    let run_as = |container: Option<&corev1::Container>| {
        let context = container?.security_context.as_ref()?;
        Some((
            context.run_as_user.and_then(|u| u32::try_from(u).ok()),
            context.run_as_group.and_then(|g| u32::try_from(g).ok()),
        ))
    };
    let istio_proxy = proxy("istio-proxy");
    if istio_proxy.is_some() || annotation(ISTIO_STATUS_ANNOTATION).is_some() {
        if annotation(ISTIO_INTERCEPTION_ANNOTATION).is_some_and(|m| m.eq_ignore_ascii_case("NONE"))
        {
            return None;
        }
        let (user, group) = run_as(istio_proxy).unwrap_or((None, None));
        let uid = user.filter(|u| *u != 0).unwrap_or(Mesh::ISTIO_PROXY_UID);
        let gid = group.filter(|g| *g != 0).unwrap_or(uid);
        return Some(Mesh::Istio { uid, gid });
    }
    let linkerd_proxy = proxy("linkerd-proxy");
    if linkerd_proxy.is_some() || annotation(LINKERD_VERSION_ANNOTATION).is_some() {
        let uid = run_as(linkerd_proxy)
            .and_then(|(user, _)| user)
            .filter(|u| *u != 0)
            .or_else(|| annotation(LINKERD_UID_ANNOTATION)?.trim().parse().ok())
            .unwrap_or(Mesh::LINKERD_PROXY_UID);
        return Some(Mesh::Linkerd { uid });
    }
    match annotation(AMBIENT_REDIRECTION_ANNOTATION) {
        Some("enabled" | "pending") => Some(Mesh::IstioAmbient),
        _ => None,
    }
}

/// `status.podIPs` in order, or `status.podIP` when the list is absent (older objects).
fn pod_ips(status: Option<&corev1::PodStatus>, problems: &mut Vec<FieldProblem>) -> Vec<IpAddr> {
    let Some(status) = status else {
        return Vec::new();
    };
    let mut ips = Vec::new();
    let listed = status.pod_ips.as_deref().unwrap_or_default();
    if listed.is_empty()
        && let Some(ip) = status.pod_ip.as_deref().filter(|ip| !ip.is_empty())
    {
        match parse_ip(ip) {
            Ok(ip) => ips.push(ip),
            Err(message) => problems.push(FieldProblem::new("status.podIP", message)),
        }
    }
    for (i, entry) in listed.iter().enumerate() {
        match parse_ip(&entry.ip) {
            Ok(ip) if !ips.contains(&ip) => ips.push(ip),
            Ok(_) => {}
            Err(message) => {
                problems.push(FieldProblem::new(format!("status.podIPs[{i}].ip"), message))
            }
        }
    }
    ips
}

fn container_port(
    path: &str,
    port: &corev1::ContainerPort,
    problems: &mut Vec<FieldProblem>,
) -> Option<ContainerPort> {
    let before = problems.len();
    let number = port_number(port.container_port)
        .map_err(|message| {
            problems.push(FieldProblem::new(format!("{path}.containerPort"), message))
        })
        .ok();
    let protocol = parse_protocol(port.protocol.as_deref())
        .map_err(|message| problems.push(FieldProblem::new(format!("{path}.protocol"), message)))
        .ok();
    let name = port.name.clone().filter(|n| !n.is_empty());
    if let Some(name) = &name
        && let Err(message) = validate_port_name(name)
    {
        problems.push(FieldProblem::new(format!("{path}.name"), message));
    }
    match (number, protocol) {
        (Some(port), Some(protocol)) if problems.len() == before => Some(ContainerPort {
            name,
            port,
            protocol,
        }),
        _ => None,
    }
}

// === impl NetworkPolicy ===

impl TryFrom<&netv1::NetworkPolicy> for NetworkPolicy {
    type Error = ConvertError;

    fn try_from(np: &netv1::NetworkPolicy) -> Result<Self> {
        let meta = &np.metadata;
        let object = namespaced_label(meta);
        // Problems that leave no policy to degrade to: which pods it isolates is unknown.
        let mut fatal = Vec::new();
        if name_of(meta).is_none() {
            fatal.push(missing_name());
        }
        // `spec` is required; a missing one is the empty spec: all pods, ingress-isolated (E2).
        let empty_spec = netv1::NetworkPolicySpec::default();
        let spec = np.spec.as_ref().unwrap_or(&empty_spec);

        let pod_selector = match &spec.pod_selector {
            None => Selector::everything(),
            Some(sel) => selector("spec.podSelector", sel).unwrap_or_else(|problem| {
                fatal.push(problem);
                Selector::everything()
            }),
        };
        let has_egress_rules = spec.egress.as_ref().is_some_and(|rules| !rules.is_empty());
        let (isolates_ingress, isolates_egress) =
            policy_types(spec.policy_types.as_deref(), has_egress_rules, &mut fatal);

        let mut problems = Vec::new();
        let ingress: Vec<Rule> = spec
            .ingress
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, rule)| {
                convert_rule(
                    &format!("spec.ingress[{i}]"),
                    "from",
                    rule.ports.as_deref(),
                    rule.from.as_deref(),
                    &mut problems,
                )
            })
            .collect();
        let egress: Vec<Rule> = spec
            .egress
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, rule)| {
                convert_rule(
                    &format!("spec.egress[{i}]"),
                    "to",
                    rule.ports.as_deref(),
                    rule.to.as_deref(),
                    &mut problems,
                )
            })
            .collect();

        let mut warnings = Vec::new();
        if !isolates_ingress && !ingress.is_empty() {
            warnings.push(format!(
                "spec.ingress: {} rule(s) are inert because policyTypes does not include Ingress",
                ingress.len()
            ));
        }
        if !isolates_egress && !egress.is_empty() {
            warnings.push(format!(
                "spec.egress: {} rule(s) are inert because policyTypes does not include Egress",
                egress.len()
            ));
        }

        if !fatal.is_empty() {
            fatal.extend(problems);
            return Err(ConvertError::new("NetworkPolicy", object, fatal));
        }
        let policy = NetworkPolicy {
            namespace: namespace_of(meta).to_string(),
            name: name_of(meta).unwrap_or_default().to_string(),
            pod_selector,
            isolates_ingress,
            isolates_egress,
            ingress,
            egress,
            warnings,
        };
        if problems.is_empty() {
            Ok(policy)
        } else {
            Err(ConvertError {
                kind: "NetworkPolicy",
                object,
                problems,
                degraded: Some(Box::new(policy)),
            })
        }
    }
}

/// Defaults and validates `spec.policyTypes` (E1): absent or empty means Ingress, plus Egress
/// iff there are egress rules (`egress: []` does not isolate egress).
fn policy_types(
    types: Option<&[String]>,
    has_egress_rules: bool,
    fatal: &mut Vec<FieldProblem>,
) -> (bool, bool) {
    let types = match types {
        None | Some([]) => return (true, has_egress_rules),
        Some(types) => types,
    };
    if types.len() > 2 {
        fatal.push(FieldProblem::new(
            "spec.policyTypes",
            format!("must contain at most 2 values, got {}", types.len()),
        ));
    }
    let (mut ingress, mut egress) = (false, false);
    for (i, t) in types.iter().enumerate() {
        match t.as_str() {
            "Ingress" => ingress = true,
            "Egress" => egress = true,
            other => fatal.push(FieldProblem::new(
                format!("spec.policyTypes[{i}]"),
                format!("unsupported value {other:?} (expected Ingress or Egress)"),
            )),
        }
    }
    (ingress, egress)
}

fn convert_rule(
    path: &str,
    peers_field: &str,
    ports: Option<&[netv1::NetworkPolicyPort]>,
    peers: Option<&[netv1::NetworkPolicyPeer]>,
    problems: &mut Vec<FieldProblem>,
) -> Rule {
    let ports = ports
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(j, port)| {
            convert_port(&format!("{path}.ports[{j}]"), port).unwrap_or_else(|found| {
                let reason = join_problems(&found);
                problems.extend(found);
                PolicyPort::Invalid { reason }
            })
        })
        .collect();
    let peers = peers
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(j, peer)| {
            convert_peer(&format!("{path}.{peers_field}[{j}]"), peer).unwrap_or_else(|found| {
                let reason = join_problems(&found);
                problems.extend(found);
                Peer::Invalid { reason }
            })
        })
        .collect();
    Rule { ports, peers }
}

/// One `ports` entry: protocol defaults to TCP (E5, E14); `endPort` needs a numeric `port`
/// no greater than itself (E16); a named port must be an IANA_SVC_NAME (E17).
fn convert_port(
    path: &str,
    port: &netv1::NetworkPolicyPort,
) -> Result<PolicyPort, Vec<FieldProblem>> {
    let mut problems = Vec::new();
    let protocol = parse_protocol(port.protocol.as_deref())
        .map_err(|message| problems.push(FieldProblem::new(format!("{path}.protocol"), message)))
        .ok();
    let port_ref = match &port.port {
        None => None,
        Some(IntOrString::Int(n)) => port_number(*n)
            .map_err(|message| problems.push(FieldProblem::new(format!("{path}.port"), message)))
            .ok()
            .map(PortRef::Number),
        Some(IntOrString::String(name)) => validate_port_name(name)
            .map_err(|message| problems.push(FieldProblem::new(format!("{path}.port"), message)))
            .ok()
            .map(|()| PortRef::Name(name.clone())),
    };
    let end_port = match port.end_port {
        None => None,
        Some(end) => {
            let field = format!("{path}.endPort");
            match &port.port {
                None => problems.push(FieldProblem::new(
                    &field,
                    "may not be specified when port is not specified",
                )),
                Some(IntOrString::String(_)) => problems.push(FieldProblem::new(
                    &field,
                    "may not be specified when port is a named port",
                )),
                Some(IntOrString::Int(start)) if end < *start => problems.push(FieldProblem::new(
                    &field,
                    format!("must be greater than or equal to port ({start}), got {end}"),
                )),
                Some(IntOrString::Int(_)) => {}
            }
            port_number(end)
                .map_err(|message| problems.push(FieldProblem::new(&field, message)))
                .ok()
        }
    };
    match protocol {
        Some(protocol) if problems.is_empty() => Ok(PolicyPort::Port {
            protocol,
            port: port_ref,
            end_port,
        }),
        _ => Err(problems),
    }
}

/// One `from`/`to` entry: exactly one of a selector pair or an ipBlock (E6).
fn convert_peer(path: &str, peer: &netv1::NetworkPolicyPeer) -> Result<Peer, Vec<FieldProblem>> {
    let has_selector = peer.pod_selector.is_some() || peer.namespace_selector.is_some();
    match &peer.ip_block {
        Some(_) if has_selector => Err(vec![FieldProblem::new(
            path,
            "may not specify both ipBlock and another peer",
        )]),
        Some(block) => convert_ip_block(&format!("{path}.ipBlock"), block).map(Peer::IpBlock),
        None if !has_selector => Err(vec![FieldProblem::new(
            path,
            "must specify a peer (podSelector, namespaceSelector or ipBlock)",
        )]),
        None => {
            let mut problems = Vec::new();
            let mut convert = |field: &str, sel: &Option<LabelSelector>| {
                sel.as_ref().and_then(|sel| {
                    selector(&format!("{path}.{field}"), sel)
                        .map_err(|p| problems.push(p))
                        .ok()
                })
            };
            let pod_selector = convert("podSelector", &peer.pod_selector);
            let namespace_selector = convert("namespaceSelector", &peer.namespace_selector);
            if problems.is_empty() {
                Ok(Peer::Pods {
                    pod_selector,
                    namespace_selector,
                })
            } else {
                Err(problems)
            }
        }
    }
}

/// `cidr` parsed sloppily (host bits masked, legacy leading zeros); each `except` must be a
/// strict subset of it in the same address family (E19).
fn convert_ip_block(path: &str, block: &netv1::IPBlock) -> Result<IpBlock, Vec<FieldProblem>> {
    let mut problems = Vec::new();
    let cidr = if block.cidr.trim().is_empty() {
        problems.push(FieldProblem::new(format!("{path}.cidr"), "is required"));
        None
    } else {
        block
            .cidr
            .trim()
            .parse::<Cidr>()
            .map_err(|m| problems.push(FieldProblem::new(format!("{path}.cidr"), m)))
            .ok()
    };
    let mut except = Vec::new();
    for (k, text) in block.except.iter().flatten().enumerate() {
        let field = format!("{path}.except[{k}]");
        let Ok(inner) = text
            .trim()
            .parse::<Cidr>()
            .map_err(|m| problems.push(FieldProblem::new(&field, m)))
        else {
            continue;
        };
        if let Some(outer) = cidr {
            if inner.addr().is_ipv4() != outer.addr().is_ipv4() {
                problems.push(FieldProblem::new(
                    &field,
                    format!("{inner} is not in the address family of cidr {outer}"),
                ));
            } else if !outer.strictly_contains(&inner) {
                problems.push(FieldProblem::new(
                    &field,
                    format!("{inner} must be a strict subset of cidr {outer}"),
                ));
            }
        }
        except.push(inner);
    }
    match cidr {
        Some(cidr) if problems.is_empty() => Ok(IpBlock { cidr, except }),
        _ => Err(problems),
    }
}

/// Builds a selector, prefixing its error field with the selector's own path.
fn selector(path: &str, sel: &LabelSelector) -> Result<Selector, FieldProblem> {
    Selector::try_from(sel).map_err(|e| FieldProblem::new(format!("{path}.{}", e.field), e.message))
}

// === Shared validation ===

/// A protocol as the API server accepts it: exactly `TCP`, `UDP` or `SCTP`; absent is TCP.
fn parse_protocol(protocol: Option<&str>) -> Result<Protocol, String> {
    match protocol {
        None | Some("TCP") => Ok(Protocol::Tcp),
        Some("UDP") => Ok(Protocol::Udp),
        Some("SCTP") => Ok(Protocol::Sctp),
        Some(other) => Err(format!(
            "unsupported value {other:?} (expected TCP, UDP or SCTP)"
        )),
    }
}

fn port_number(n: i32) -> Result<u16, String> {
    u16::try_from(n)
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| format!("must be between 1 and 65535, inclusive, got {n}"))
}

fn parse_ip(text: &str) -> Result<IpAddr, String> {
    parse_ip_lenient(text.trim()).ok_or_else(|| format!("{text:?} is not a valid IP address"))
}

/// Validates a port name (IANA_SVC_NAME, `IsValidPortName`, E17): 1–15 characters of
/// `[a-z0-9-]`, at least one letter, no leading, trailing or doubled `-`.
pub fn validate_port_name(name: &str) -> Result<(), String> {
    let why = if name.is_empty() || name.len() > 15 {
        "must be 1 to 15 characters long"
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        "may contain only lowercase letters, digits and '-'"
    } else if !name.bytes().any(|b| b.is_ascii_lowercase()) {
        "must contain at least one letter (a port number must not be quoted)"
    } else if name.starts_with('-') || name.ends_with('-') {
        "must start and end with a letter or digit"
    } else if name.contains("--") {
        "must not contain consecutive '-'"
    } else {
        return Ok(());
    };
    Err(format!("invalid port name {name:?}: {why}"))
}

#[cfg(test)]
mod tests;
