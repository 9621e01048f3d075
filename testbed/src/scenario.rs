//! The scenario file (docs/design.md, "Scenario file"): types, parsing and validation.
//!
//! Data flow: YAML text → [`Scenario`] (serde, unknown fields rejected, the path of a bad field
//! in the error) → [`Scenario::validate`] (pure: every Pod, port, rule, record and fault checked
//! against the nodes and each other; errors name the object) → a plan (private `plan` module)
//! that [`Testbed::start`](crate::Testbed::start) builds. Kubernetes objects are kept verbatim
//! as `serde_json::Value`s; only the fields the testbed needs are read from them.

use std::{collections::BTreeMap, fmt, net::Ipv4Addr, path::Path, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::{Error, Result};

/// A scenario: nodes, Kubernetes objects, the simulated data plane and the expected diagnoses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Scenario name (appears in errors and in the run's state file).
    pub name: String,
    /// Node names; node `i` (counting from 1, in this order) gets the pod CIDR
    /// `10.244.i.0/24`, a bridge `br<i>` and the gateway `10.244.i.1`.
    pub nodes: Vec<String>,
    /// Kubernetes objects as `kubectl get -o yaml` would show them, kept verbatim.
    #[serde(default)]
    pub objects: Vec<Value>,
    /// The simulated data plane.
    #[serde(default)]
    pub dataplane: Dataplane,
    /// Faults given at the top level rather than under `dataplane` (accepted as an alias;
    /// `dataplane.faults` is the documented place). Both lists apply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<Fault>,
    /// Expected diagnoses, kept verbatim for the agent's tests to compare.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expect: Vec<Value>,
}

/// The simulated data plane: closed ports, cluster DNS, enforcement rules, faults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dataplane {
    /// Container ports that get no listener (the app is down).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub closed: Vec<ClosedPort>,
    /// Cluster DNS: dnsmasq in this pod, and every pod's resolv.conf points at it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsConfig>,
    /// The simulated CNI's enforcement, installed in each destination pod's netns; first match
    /// wins, default accept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    /// Injected faults, installed in the router namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<Fault>,
    /// Service-mesh sidecars: in each listed pod's netns, what the mesh's init container
    /// installs (an nftables nat-output redirect of all TCP, except to loopback and except the
    /// proxy's own identity, to a local proxy port) and an accept-all listener on that port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mesh: Vec<MeshSidecar>,
}

/// A pod whose outbound TCP a mesh redirects to a local proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeshSidecar {
    /// The pod, `namespace/name`.
    pub pod: PodRef,
    pub kind: MeshKind,
}

/// Which mesh's redirect rules a pod gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MeshKind {
    /// Istio sidecar: TCP to 15001 unless the socket's owner is uid 1337.
    Istio,
    /// Linkerd: TCP to 4140 unless the socket's owner is uid 2102.
    Linkerd,
    /// Istio ambient: TCP to 15001 unless the packet mark is 0x539/0xfff (ztunnel's).
    IstioAmbient,
}

impl MeshKind {
    /// The local proxy port the redirect sends TCP to.
    pub fn proxy_port(self) -> u16 {
        match self {
            MeshKind::Istio | MeshKind::IstioAmbient => 15001,
            MeshKind::Linkerd => 4140,
        }
    }

    /// The uid whose sockets the redirect leaves alone (none for ambient).
    pub fn exempt_uid(self) -> Option<u32> {
        match self {
            MeshKind::Istio => Some(1337),
            MeshKind::Linkerd => Some(2102),
            MeshKind::IstioAmbient => None,
        }
    }
}

/// A container port without a listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClosedPort {
    /// The pod, `namespace/name`.
    pub pod: PodRef,
    /// The container port.
    pub port: u16,
    /// `TCP` (default) or `UDP`.
    #[serde(default)]
    pub protocol: Protocol,
}

/// Cluster DNS served by dnsmasq in a pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    /// The pod dnsmasq runs in (its netns and IP); usually `kube-system/coredns`.
    pub pod: PodRef,
    /// Name → answer. Names not listed get NXDOMAIN.
    #[serde(default)]
    pub records: BTreeMap<String, DnsAnswer>,
}

/// What the cluster DNS answers for a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsAnswer {
    /// An A record (written as the address).
    A(Ipv4Addr),
    /// NXDOMAIN (written `NXDOMAIN`; the same as leaving the name out).
    NxDomain,
    /// SERVFAIL (written `SERVFAIL`): dnsmasq forwards the name to a responder in the router
    /// namespace that answers SERVFAIL, and passes that on.
    ServFail,
    /// No answer at all (written `TIMEOUT`): dnsmasq forwards the name to a black-holed address
    /// and never replies, so the client times out.
    Timeout,
}

/// An enforcement rule of the simulated CNI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// What happens to matching packets.
    pub action: Action,
    /// Source: a pod (`ns/name`) or a CIDR (`10.244.2.0/24`, or a bare address).
    pub from: Peer,
    /// Destination pod; the rule is installed in its netns (input hook).
    pub to: PodRef,
    /// Destination port; absent = all ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `TCP`, `UDP` or `any` (default).
    #[serde(default)]
    pub protocol: RuleProtocol,
}

/// What an enforcement rule does with a matching packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Silently drop (the client times out).
    Drop,
    /// TCP reset (`ECONNREFUSED`); with protocol `any`, non-TCP packets get ICMP port-unreachable.
    RejectTcpReset,
    /// ICMP administratively prohibited (type 3 code 13, `EHOSTUNREACH`).
    RejectIcmpAdmin,
    /// ICMP port unreachable (type 3 code 3, `ECONNREFUSED`).
    RejectIcmpPort,
    /// ICMP host unreachable (type 3 code 1, `EHOSTUNREACH`).
    RejectIcmpHost,
    /// ICMP net unreachable (type 3 code 0, `ENETUNREACH`).
    RejectIcmpNet,
    /// Accept (ends evaluation; useful before a broader drop).
    Accept,
}

/// The protocol of a container port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

/// The protocol an enforcement rule matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum RuleProtocol {
    /// TCP only.
    Tcp,
    /// UDP only.
    Udp,
    /// Every protocol (with a port: TCP and UDP).
    #[default]
    Any,
}

/// The source of an enforcement rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// A pod; matches its IP.
    Pod(PodRef),
    /// An IPv4 network.
    Cidr(Ipv4Cidr),
}

/// A fault injected into the simulated network (router namespace).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Fault {
    /// All IPv4 traffic to and from that node's pods is dropped silently (also between pods of
    /// the node); ARP still works, so connections time out. Models the node's CNI agent down.
    NodeIsolated {
        /// The node.
        node: String,
    },
    /// The node's bridge drops every frame, ARP included: connections to, from and within the
    /// node fail with `EHOSTUNREACH` once ARP gives up (~3 s).
    BridgeDropAll {
        /// The node.
        node: String,
    },
    /// One Service's ClusterIP loses its programming (kube-proxy or the eBPF load balancer
    /// fails it): its endpoints still answer directly, the ClusterIP does not.
    ServicePathBroken {
        /// The Service, `namespace/name`.
        service: String,
    },
}

impl Fault {
    /// The node the fault applies to (`None` for a Service fault).
    pub fn node(&self) -> Option<&str> {
        match self {
            Fault::NodeIsolated { node } | Fault::BridgeDropAll { node } => Some(node),
            Fault::ServicePathBroken { .. } => None,
        }
    }
}

/// A pod reference, `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// An IPv4 network, normalised to its network address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    /// Network address.
    pub addr: Ipv4Addr,
    /// Prefix length, 0–32.
    pub prefix_len: u8,
}

// === impl Scenario ===

impl Scenario {
    /// Parses a scenario from YAML text. `source_name` (a file name, or `<string>`) appears in
    /// errors together with the path of the bad field.
    pub fn from_yaml(text: &str, source_name: &str) -> Result<Self> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let message = e.into_inner().to_string();
            // serde_yaml_ng often starts its message with the path already.
            let message = match message.strip_prefix(&format!("{path}: ")) {
                Some(rest) => rest.to_string(),
                None => message,
            };
            Error::Parse {
                source_name: source_name.to_string(),
                path,
                message,
            }
        })
    }

    /// Reads and parses a scenario file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
        Self::from_yaml(&text, &path.display().to_string())
    }

    /// Every fault: `dataplane.faults` then the top-level `faults`.
    pub fn all_faults(&self) -> impl Iterator<Item = &Fault> {
        self.dataplane.faults.iter().chain(self.faults.iter())
    }

    /// The pod CIDR of node `index` (counting from 1): `10.244.<index>.0/24`.
    pub fn node_cidr(index: u8) -> Ipv4Cidr {
        Ipv4Cidr {
            addr: Ipv4Addr::new(10, 244, index, 0),
            prefix_len: 24,
        }
    }

    pub(crate) fn invalid(&self, object: impl Into<String>, problem: impl Into<String>) -> Error {
        Error::Invalid {
            scenario: self.name.clone(),
            object: object.into(),
            problem: problem.into(),
        }
    }
}

// === impl PodRef ===

impl PodRef {
    /// A reference to `namespace/name`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for PodRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl FromStr for PodRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(PodRef::new(ns, name))
            }
            _ => Err(format!("`{s}` is not a pod reference `namespace/name`")),
        }
    }
}

// === impl Ipv4Cidr ===

impl Ipv4Cidr {
    /// The netmask as a number.
    fn mask(self) -> u32 {
        if self.prefix_len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix_len))
        }
    }

    /// Whether `ip` lies in this network.
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, len) = s.split_once('/').unwrap_or((s, "32"));
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("`{s}` is not an IPv4 address or CIDR"))?;
        let prefix_len: u8 = match len.parse() {
            Ok(n) if n <= 32 => n,
            _ => return Err(format!("`{s}` has a bad prefix length")),
        };
        let mut cidr = Ipv4Cidr { addr, prefix_len };
        cidr.addr = Ipv4Addr::from(u32::from(addr) & cidr.mask());
        Ok(cidr)
    }
}

// === serde for the string-typed fields ===

macro_rules! serde_via_str {
    ($ty:ty) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    };
}

serde_via_str!(PodRef);
serde_via_str!(Ipv4Cidr);
serde_via_str!(Peer);
serde_via_str!(Protocol);
serde_via_str!(RuleProtocol);
serde_via_str!(DnsAnswer);

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Pod(p) => p.fmt(f),
            Peer::Cidr(c) => c.fmt(f),
        }
    }
}

impl FromStr for Peer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let head = s.split('/').next().unwrap_or(s);
        if head.parse::<Ipv4Addr>().is_ok() {
            s.parse().map(Peer::Cidr)
        } else {
            s.parse()
                .map(Peer::Pod)
                .map_err(|_| format!("`{s}` is neither a pod `namespace/name` nor an IPv4 CIDR"))
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        })
    }
}

impl FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "TCP" => Ok(Protocol::Tcp),
            "UDP" => Ok(Protocol::Udp),
            _ => Err(format!("unknown protocol `{s}`, expected TCP or UDP")),
        }
    }
}

impl fmt::Display for RuleProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RuleProtocol::Tcp => "TCP",
            RuleProtocol::Udp => "UDP",
            RuleProtocol::Any => "any",
        })
    }
}

impl FromStr for RuleProtocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "TCP" => Ok(RuleProtocol::Tcp),
            "UDP" => Ok(RuleProtocol::Udp),
            "ANY" => Ok(RuleProtocol::Any),
            _ => Err(format!("unknown protocol `{s}`, expected TCP, UDP or any")),
        }
    }
}

impl fmt::Display for DnsAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsAnswer::A(ip) => ip.fmt(f),
            DnsAnswer::NxDomain => f.write_str("NXDOMAIN"),
            DnsAnswer::ServFail => f.write_str("SERVFAIL"),
            DnsAnswer::Timeout => f.write_str("TIMEOUT"),
        }
    }
}

impl FromStr for DnsAnswer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "NXDOMAIN" => Ok(DnsAnswer::NxDomain),
            "SERVFAIL" => Ok(DnsAnswer::ServFail),
            "TIMEOUT" => Ok(DnsAnswer::Timeout),
            _ => s.parse().map(DnsAnswer::A).map_err(|_| {
                format!("`{s}` is not an IPv4 address, NXDOMAIN, SERVFAIL or TIMEOUT")
            }),
        }
    }
}

#[cfg(test)]
mod tests;
