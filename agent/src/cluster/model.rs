//! Validated internal types for the Kubernetes objects netreach reasons about.
//!
//! Objects arrive as `k8s_openapi` types (from kube watchers or snapshot files) and are
//! converted once, at the edge, into these types (see `convert`). Everything downstream — the
//! index, the policy engine, the scheduler — sees only these: defaulted the way the API server
//! defaults them, with unused fields dropped.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use super::selector::Labels;
use super::selector::Selector;

/// The label the control plane sets on every namespace, holding its name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// `namespace/name` of a namespaced object. The names are shared, not copied: the thousands
/// of pairs, reports and timetable entries that name one pod hold the same two strings.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectRef {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
}

impl ObjectRef {
    pub fn new(namespace: impl Into<Arc<str>>, name: impl Into<Arc<str>>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl FromStr for ObjectRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(Self::new(ns, name))
            }
            _ => Err(format!("expected namespace/name, got {s:?}")),
        }
    }
}

/// A policy a verdict names: a NetworkPolicy (`namespace/name`) or a cluster-scoped tiered
/// policy (`ClusterNetworkPolicy/name`, `AdminNetworkPolicy/name`,
/// `BaselineAdminNetworkPolicy/name`). The two never collide: a namespace is a lowercase DNS
/// label, a kind starts with a capital.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyRef {
    Namespaced(ObjectRef),
    /// The tiered policy's key, `Kind/name`.
    Cluster(Arc<str>),
}

impl PolicyRef {
    /// The NetworkPolicy, if it is one.
    pub fn namespaced(&self) -> Option<&ObjectRef> {
        match self {
            PolicyRef::Namespaced(key) => Some(key),
            PolicyRef::Cluster(_) => None,
        }
    }
}

impl From<ObjectRef> for PolicyRef {
    fn from(key: ObjectRef) -> Self {
        PolicyRef::Namespaced(key)
    }
}

impl fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyRef::Namespaced(key) => key.fmt(f),
            PolicyRef::Cluster(key) => f.write_str(key),
        }
    }
}

impl FromStr for PolicyRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('/') {
            Some((kind, name))
                if kind.starts_with(|c: char| c.is_ascii_uppercase())
                    && !name.is_empty()
                    && !name.contains('/') =>
            {
                Ok(PolicyRef::Cluster(s.into()))
            }
            _ => s
                .parse()
                .map(PolicyRef::Namespaced)
                .map_err(|_| format!("expected namespace/name or Kind/name, got {s:?}")),
        }
    }
}

/// One API a kind is served under: group, version, plural.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServedAs {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
}

impl ServedAs {
    /// `group/version`.
    pub fn api_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }
}

// === Protocol and ports ===

/// An L4 protocol NetworkPolicy can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub const ALL: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }
}

/// The one conversion from the CRD types' protocol.
impl From<probe_spec::Protocol> for Protocol {
    fn from(protocol: probe_spec::Protocol) -> Self {
        match protocol {
            probe_spec::Protocol::Tcp => Protocol::Tcp,
            probe_spec::Protocol::Udp => Protocol::Udp,
            probe_spec::Protocol::Sctp => Protocol::Sctp,
        }
    }
}

/// And back, for statuses and ProbeRequests the agent writes.
impl From<Protocol> for probe_spec::Protocol {
    fn from(protocol: Protocol) -> Self {
        match protocol {
            Protocol::Tcp => probe_spec::Protocol::Tcp,
            Protocol::Udp => probe_spec::Protocol::Udp,
            Protocol::Sctp => probe_spec::Protocol::Sctp,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "TCP" => Ok(Protocol::Tcp),
            "UDP" => Ok(Protocol::Udp),
            "SCTP" => Ok(Protocol::Sctp),
            _ => Err(format!(
                "unknown protocol {s:?} (expected TCP, UDP or SCTP)"
            )),
        }
    }
}

/// A port a container declares; named ports in policies resolve against these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerPort {
    /// The IANA_SVC_NAME, if the port is named.
    pub name: Option<String>,
    pub port: u16,
    pub protocol: Protocol,
}

// === Namespaces, nodes, pods ===

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    pub name: String,
    /// Labels including `kubernetes.io/metadata.name` (injected when a file omits it).
    pub labels: Labels,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    /// InternalIP/ExternalIP addresses from `status.addresses`.
    pub addresses: Vec<IpAddr>,
    /// `Ready` condition is `True`.
    pub ready: bool,
    /// Other conditions that are `True` and mean trouble (MemoryPressure, NetworkUnavailable, ...).
    pub problems: Vec<String>,
    pub labels: Labels,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PodPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

impl FromStr for PodPhase {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "Pending" => PodPhase::Pending,
            "Running" => PodPhase::Running,
            "Succeeded" => PodPhase::Succeeded,
            "Failed" => PodPhase::Failed,
            "Unknown" | "" => PodPhase::Unknown,
            other => return Err(format!("unknown pod phase {other:?}")),
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub labels: Labels,
    pub node_name: Option<String>,
    /// `spec.hostNetwork`: the pod shares its node's network namespace (E22).
    pub host_network: bool,
    /// `status.podIPs` (or `status.podIP`), in order; empty while the pod has no IP.
    pub ips: Vec<IpAddr>,
    pub phase: PodPhase,
    /// The `Ready` condition is `True`.
    pub ready: bool,
    /// `metadata.deletionTimestamp` is set.
    pub terminating: bool,
    /// Container ports of all (non-init) containers, in declaration order.
    pub ports: Vec<ContainerPort>,
    /// Sum of the containers' restart counts (CNI agent health uses it).
    pub restarts: u32,
    /// The service mesh that redirects the pod's outbound traffic inside its netns, if any.
    pub mesh: Option<Mesh>,
}

/// A service-mesh data plane whose rules in the pod's own netns redirect outbound TCP to a
/// local proxy, and the identity those rules exempt (the proxy's own upstream connections).
/// A probe socket made with that identity meets the network as the proxy's upstream does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mesh {
    /// Istio sidecar: `ISTIO_OUTPUT` returns for sockets owned by the proxy uid (or gid) and
    /// redirects all other TCP to 15001.
    Istio { uid: u32, gid: u32 },
    /// Linkerd: `PROXY_INIT_OUTPUT` returns for the proxy uid and redirects other TCP to 4140.
    Linkerd { uid: u32 },
    /// Istio ambient, in-pod redirection: TCP whose packet mark is not `0x539/0xfff` (the mark
    /// ztunnel puts on its own sockets) goes to ztunnel on 15001; no uid is exempt.
    IstioAmbient,
}

impl Mesh {
    /// Istio's default proxy uid and gid (`istio-proxy`).
    pub const ISTIO_PROXY_UID: u32 = 1337;
    /// Linkerd's default proxy uid.
    pub const LINKERD_PROXY_UID: u32 = 2102;
    /// The packet mark ztunnel sets on its sockets, and the mask the ambient rules test.
    pub const AMBIENT_MARK: u32 = 0x539;

    /// `istio`, `linkerd`, `istio-ambient` (JSON and CLI).
    pub fn kind(self) -> &'static str {
        match self {
            Mesh::Istio { .. } => "istio",
            Mesh::Linkerd { .. } => "linkerd",
            Mesh::IstioAmbient => "istio-ambient",
        }
    }
}

impl fmt::Display for Mesh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind())
    }
}

impl Pod {
    pub fn key(&self) -> ObjectRef {
        ObjectRef::new(self.namespace.as_str(), self.name.as_str())
    }

    /// Whether traffic can be addressed to this pod at all (E23): it has an IP and has not
    /// finished. A finished pod's IP may already belong to another pod.
    pub fn is_endpoint(&self) -> bool {
        !self.ips.is_empty() && !matches!(self.phase, PodPhase::Succeeded | PodPhase::Failed)
    }

    /// Resolves a named port on this pod for a protocol (E17): the first container port with
    /// that name and protocol.
    pub fn resolve_named_port(&self, name: &str, protocol: Protocol) -> Option<u16> {
        self.ports
            .iter()
            .find(|p| p.protocol == protocol && p.name.as_deref() == Some(name))
            .map(|p| p.port)
    }
}

// === NetworkPolicy ===

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkPolicy {
    pub namespace: String,
    pub name: String,
    /// `spec.podSelector`; empty selects every pod of the namespace (E2).
    pub pod_selector: Selector,
    /// `Ingress` is in the (defaulted) policyTypes (E1).
    pub isolates_ingress: bool,
    /// `Egress` is in the (defaulted) policyTypes (E1).
    pub isolates_egress: bool,
    /// Ingress rules; empty with `isolates_ingress` means deny all ingress (E3).
    pub ingress: Vec<Rule>,
    /// Egress rules; empty with `isolates_egress` means deny all egress (E3).
    pub egress: Vec<Rule>,
    /// Things that are accepted by the API but probably not what the author meant, e.g.
    /// ingress rules while policyTypes lacks Ingress (the rules are inert).
    pub warnings: Vec<String>,
}

impl NetworkPolicy {
    pub fn key(&self) -> ObjectRef {
        ObjectRef::new(self.namespace.as_str(), self.name.as_str())
    }
}

/// One ingress or egress rule: traffic matches when it matches one of the ports AND one of the
/// peers. An empty list matches everything (E4, E5).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Rule {
    pub ports: Vec<PolicyPort>,
    pub peers: Vec<Peer>,
}

/// One entry of a rule's `ports`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyPort {
    /// A valid port entry. `port: None` means every port of the protocol (E5).
    Port {
        protocol: Protocol,
        port: Option<PortRef>,
        end_port: Option<u16>,
    },
    /// An entry that failed validation; it matches nothing (fail closed) and says why.
    Invalid { reason: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortRef {
    Number(u16),
    /// A container port name, resolved on the destination pod (E17).
    Name(String),
}

impl fmt::Display for PortRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortRef::Number(n) => write!(f, "{n}"),
            PortRef::Name(s) => f.write_str(s),
        }
    }
}

/// One entry of a rule's `from`/`to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    /// Pods chosen by selectors. Both present: AND (E9). Only `pod_selector`: pods of the
    /// policy's namespace (E7). Only `namespace_selector`: all pods of those namespaces (E8).
    Pods {
        pod_selector: Option<Selector>,
        namespace_selector: Option<Selector>,
    },
    IpBlock(IpBlock),
    /// A peer that failed validation; it matches nothing (fail closed) and says why.
    Invalid {
        reason: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpBlock {
    pub cidr: Cidr,
    /// Each a strict subset of `cidr`; addresses inside are excluded (E19).
    pub except: Vec<Cidr>,
}

impl IpBlock {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.cidr.contains(ip) && !self.except.iter().any(|e| e.contains(ip))
    }
}

/// An IPv4 or IPv6 prefix with host bits cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Builds a prefix, clearing host bits (legacy "interface address" form, E19).
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then(|| Self {
            addr: mask(addr, prefix),
            prefix,
        })
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        same_family(self.addr, ip) && mask(ip, self.prefix) == self.addr
    }

    /// `other` lies inside `self` and is smaller (what `except` requires).
    pub fn strictly_contains(&self, other: &Cidr) -> bool {
        same_family(self.addr, other.addr)
            && other.prefix > self.prefix
            && self.contains(other.addr)
    }
}

fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix))
            };
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix))
            };
            IpAddr::V6((bits & m).into())
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = String;
    /// Parses sloppily like the API server does for legacy fields (E19): host bits are
    /// masked and IPv4 octets may carry leading zeros (`010.001.0.0/16`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ip, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR (missing /prefix)"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| format!("{s:?} has an invalid prefix length"))?;
        let addr =
            parse_ip_lenient(ip).ok_or_else(|| format!("{s:?} has an invalid IP address"))?;
        Cidr::new(addr, prefix)
            .ok_or_else(|| format!("{s:?} has a prefix length too long for its address family"))
    }
}

/// Parses an IP, also accepting IPv4 octets with leading zeros (decimal, as Go's legacy parser).
pub fn parse_ip_lenient(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    let octets: Vec<&str> = s.split('.').collect();
    if octets.len() != 4 {
        return None;
    }
    let mut out = [0u8; 4];
    for (slot, part) in out.iter_mut().zip(&octets) {
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *slot = part.parse().ok()?;
    }
    Some(IpAddr::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parsing_table() {
        let cases: &[(&str, Option<&str>)] = &[
            ("10.0.0.0/8", Some("10.0.0.0/8")),
            ("192.168.1.1/24", Some("192.168.1.0/24")),
            ("010.244.001.000/24", Some("10.244.1.0/24")),
            ("fd00::1/64", Some("fd00::/64")),
            ("0.0.0.0/0", Some("0.0.0.0/0")),
            ("10.0.0.0/33", None),
            ("10.0.0.0", None),
            ("bogus/8", None),
            ("10.0.0.256/8", None),
        ];
        for (input, want) in cases {
            let got = input.parse::<Cidr>().ok().map(|c| c.to_string());
            assert_eq!(got.as_deref(), *want, "parsing {input}");
        }
    }

    #[test]
    fn cidr_containment() {
        let net: Cidr = "10.244.0.0/16".parse().unwrap();
        assert!(net.contains("10.244.9.9".parse().unwrap()));
        assert!(!net.contains("10.245.0.1".parse().unwrap()));
        assert!(!net.contains("fd00::1".parse().unwrap()));
        assert!(net.strictly_contains(&"10.244.1.0/24".parse().unwrap()));
        assert!(!net.strictly_contains(&"10.244.0.0/16".parse().unwrap()));
        assert!(!net.strictly_contains(&"10.0.0.0/8".parse().unwrap()));
        let block = IpBlock {
            cidr: net,
            except: vec!["10.244.1.0/24".parse().unwrap()],
        };
        assert!(block.contains("10.244.2.1".parse().unwrap()));
        assert!(!block.contains("10.244.1.1".parse().unwrap()));
    }

    #[test]
    fn object_ref_parsing() {
        assert_eq!(
            "shop/web".parse::<ObjectRef>(),
            Ok(ObjectRef::new("shop", "web"))
        );
        assert!("web".parse::<ObjectRef>().is_err());
        assert!("a/b/c".parse::<ObjectRef>().is_err());
        assert!("/b".parse::<ObjectRef>().is_err());
    }
}
