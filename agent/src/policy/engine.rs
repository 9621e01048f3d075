//! Compiling an index into match caches, and evaluating one flow with a full explanation.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use crate::cluster::Index;
use crate::cluster::model::{
    Labels, NetworkPolicy, Node, ObjectRef, Peer, Pod, PolicyPort, PortRef, Protocol, Rule,
};
use crate::cluster::selector::{Selector, display_labels};

use super::bitset::BitSet;
use super::profile::Profile;
use super::verdict::{
    DirectionVerdict, PeerMiss, PolicyMisses, PortMiss, RuleMiss, RuleRef, Tier, Verdict,
};

/// One end of a flow, as a user names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Pod(ObjectRef),
    /// An address: resolved to the live pod or node that owns it, else an external address.
    Ip(IpAddr),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Pod(key) => write!(f, "{key}"),
            Endpoint::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

impl std::str::FromStr for Endpoint {
    type Err = String;
    /// `ns/pod` or an IP address.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Endpoint::Ip(ip));
        }
        s.parse::<ObjectRef>()
            .map(Endpoint::Pod)
            .map_err(|_| format!("expected namespace/pod or an IP address, got {s:?}"))
    }
}

/// A connection attempt: source, destination, destination port and protocol.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Flow {
    pub from: Endpoint,
    pub to: Endpoint,
    pub port: u16,
    pub protocol: Protocol,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("pod {0} is not in the loaded objects")]
    UnknownPod(ObjectRef),
    #[error("pod {0} has no IP address (phase {1}); it cannot send or receive traffic")]
    NotAnEndpoint(ObjectRef, String),
}

/// A flow endpoint resolved against the compiled index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    /// A pod that policies select (not hostNetwork in the default profile).
    Pod(usize),
    /// A hostNetwork pod: policies see its node's address (E22).
    HostPod(usize),
    Node {
        name: String,
        ip: IpAddr,
    },
    External(IpAddr),
}

pub(crate) struct CompiledPolicy {
    pub(crate) policy: NetworkPolicy,
    pub(crate) namespace: usize,
    pub(crate) ingress: Vec<Vec<CompiledPeer>>,
    pub(crate) egress: Vec<Vec<CompiledPeer>>,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum CompiledPeer {
    Pods {
        pod_selector: Option<usize>,
        namespace_selector: Option<usize>,
    },
    IpBlock,
    Invalid,
}

/// A compiled, immutable snapshot of an index for evaluating flows.
pub struct Engine {
    pub(crate) profile: Profile,
    pub(crate) pods: Vec<Pod>,
    pub(crate) pod_namespace: Vec<usize>,
    pod_ids: HashMap<ObjectRef, usize>,
    pub(crate) namespaces: Vec<String>,
    namespace_labels: Vec<Labels>,
    /// Per namespace: policies that exist but could not be loaded (verdicts carry a warning).
    namespace_warnings: Vec<Vec<String>>,
    nodes: Vec<Node>,
    pub(crate) policies: Vec<CompiledPolicy>,
    /// Interned pod selectors: which pods' labels each matches.
    pub(crate) pod_selector_matches: Vec<BitSet>,
    /// Interned namespace selectors: which namespaces' labels each matches.
    pub(crate) namespace_selector_matches: Vec<BitSet>,
    /// Per pod: the policies that select it and isolate ingress / egress.
    pub(crate) ingress_policies: Vec<Vec<usize>>,
    pub(crate) egress_policies: Vec<Vec<usize>>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("profile", &self.profile.name)
            .field("pods", &self.pods.len())
            .field("namespaces", &self.namespaces.len())
            .field("policies", &self.policies.len())
            .finish()
    }
}

/// Interns selectors and computes each one's match set once.
struct SelectorCache<'a> {
    ids: HashMap<&'a Selector, usize>,
    matches: Vec<BitSet>,
}

impl<'a> SelectorCache<'a> {
    fn new() -> Self {
        Self {
            ids: HashMap::new(),
            matches: Vec::new(),
        }
    }

    fn intern(&mut self, selector: &'a Selector, labels: &[&Labels]) -> usize {
        if let Some(&id) = self.ids.get(selector) {
            return id;
        }
        let mut set = BitSet::empty(labels.len());
        for (i, l) in labels.iter().enumerate() {
            if selector.matches(l) {
                set.insert(i);
            }
        }
        let id = self.matches.len();
        self.matches.push(set);
        self.ids.insert(selector, id);
        id
    }
}

fn compile_rules<'a>(
    rules: &'a [Rule],
    pod_cache: &mut SelectorCache<'a>,
    ns_cache: &mut SelectorCache<'a>,
    pod_labels: &[&Labels],
    ns_labels: &[&Labels],
) -> Vec<Vec<CompiledPeer>> {
    rules
        .iter()
        .map(|rule| {
            rule.peers
                .iter()
                .map(|peer| match peer {
                    Peer::Pods {
                        pod_selector,
                        namespace_selector,
                    } => CompiledPeer::Pods {
                        pod_selector: pod_selector
                            .as_ref()
                            .map(|s| pod_cache.intern(s, pod_labels)),
                        namespace_selector: namespace_selector
                            .as_ref()
                            .map(|s| ns_cache.intern(s, ns_labels)),
                    },
                    Peer::IpBlock(_) => CompiledPeer::IpBlock,
                    Peer::Invalid { .. } => CompiledPeer::Invalid,
                })
                .collect()
        })
        .collect()
}

impl Engine {
    pub fn new(index: &Index, profile: Profile) -> Self {
        let namespaces = index.namespace_names();
        let ns_ids: HashMap<String, usize> = namespaces
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        let namespace_labels: Vec<Labels> = namespaces
            .iter()
            .map(|n| index.namespace_labels(n))
            .collect();
        let pods: Vec<Pod> = index.pods().cloned().collect();
        let pod_ids = pods.iter().enumerate().map(|(i, p)| (p.key(), i)).collect();
        let pod_namespace: Vec<usize> = pods.iter().map(|p| ns_ids[&p.namespace]).collect();
        let policies_src: Vec<&NetworkPolicy> = index.policies().collect();

        let pod_labels: Vec<&Labels> = pods.iter().map(|p| &p.labels).collect();
        let ns_labels: Vec<&Labels> = namespace_labels.iter().collect();
        let mut pod_cache = SelectorCache::new();
        let mut ns_cache = SelectorCache::new();
        let mut policies = Vec::with_capacity(policies_src.len());
        let mut subject_selector = Vec::with_capacity(policies_src.len());
        for policy in &policies_src {
            subject_selector.push(pod_cache.intern(&policy.pod_selector, &pod_labels));
            let ingress = compile_rules(
                &policy.ingress,
                &mut pod_cache,
                &mut ns_cache,
                &pod_labels,
                &ns_labels,
            );
            let egress = compile_rules(
                &policy.egress,
                &mut pod_cache,
                &mut ns_cache,
                &pod_labels,
                &ns_labels,
            );
            policies.push(CompiledPolicy {
                policy: (*policy).clone(),
                namespace: ns_ids[&policy.namespace],
                ingress,
                egress,
            });
        }

        let mut ingress_policies = vec![Vec::new(); pods.len()];
        let mut egress_policies = vec![Vec::new(); pods.len()];
        for (pid, compiled) in policies.iter().enumerate() {
            let selected = &pod_cache.matches[subject_selector[pid]];
            for (i, pod) in pods.iter().enumerate() {
                // E2: a policy's podSelector never reaches outside its namespace; E22:
                // hostNetwork pods are not subjects in the default profile.
                if pod_namespace[i] != compiled.namespace || !selected.contains(i) {
                    continue;
                }
                if pod.host_network && profile.host_network_as_node {
                    continue;
                }
                if compiled.policy.isolates_ingress {
                    ingress_policies[i].push(pid);
                }
                if compiled.policy.isolates_egress {
                    egress_policies[i].push(pid);
                }
            }
        }

        let namespace_warnings = namespaces
            .iter()
            .map(|ns| {
                index
                    .unloadable_policies_in(ns)
                    .map(|(key, why)| {
                        format!("warning: policy {key} could not be loaded ({why}); it may select this pod, so this verdict may be wrong")
                    })
                    .collect()
            })
            .collect();
        Self {
            profile,
            pods,
            pod_namespace,
            pod_ids,
            namespaces,
            namespace_labels,
            namespace_warnings,
            nodes: index.nodes().cloned().collect(),
            policies,
            pod_selector_matches: pod_cache.matches,
            namespace_selector_matches: ns_cache.matches,
            ingress_policies,
            egress_policies,
        }
    }

    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Pods in key order; matrix cells refer to them by position.
    pub fn pods(&self) -> &[Pod] {
        &self.pods
    }

    pub fn pod_id(&self, key: &ObjectRef) -> Option<usize> {
        self.pod_ids.get(key).copied()
    }

    /// The policies that select a pod and isolate it, ingress then egress, by name.
    pub fn policies_selecting(&self, pod: usize) -> (Vec<ObjectRef>, Vec<ObjectRef>) {
        let names = |ids: &[usize]| ids.iter().map(|&i| self.policies[i].policy.key()).collect();
        (
            names(&self.ingress_policies[pod]),
            names(&self.egress_policies[pod]),
        )
    }

    pub(crate) fn resolve(&self, endpoint: &Endpoint) -> Result<Side, ResolveError> {
        match endpoint {
            Endpoint::Pod(key) => {
                let id = self
                    .pod_id(key)
                    .ok_or_else(|| ResolveError::UnknownPod(key.clone()))?;
                let pod = &self.pods[id];
                if !pod.is_endpoint() {
                    return Err(ResolveError::NotAnEndpoint(
                        key.clone(),
                        format!("{:?}", pod.phase),
                    ));
                }
                Ok(self.side_of_pod(id))
            }
            Endpoint::Ip(ip) => {
                if let Some(id) = self
                    .pods
                    .iter()
                    .position(|p| p.is_endpoint() && !p.host_network && p.ips.contains(ip))
                {
                    return Ok(Side::Pod(id));
                }
                if let Some(node) = self.nodes.iter().find(|n| n.addresses.contains(ip)) {
                    return Ok(Side::Node {
                        name: node.name.clone(),
                        ip: *ip,
                    });
                }
                // No Node object owns it (offline files often omit nodes): a hostNetwork pod's
                // address is still its node's (E21, E22).
                if let Some(id) = self
                    .pods
                    .iter()
                    .position(|p| p.is_endpoint() && p.host_network && p.ips.contains(ip))
                {
                    return Ok(self.side_of_pod(id));
                }
                Ok(Side::External(*ip))
            }
        }
    }

    pub(crate) fn side_of_pod(&self, id: usize) -> Side {
        if self.pods[id].host_network && self.profile.host_network_as_node {
            Side::HostPod(id)
        } else {
            Side::Pod(id)
        }
    }

    /// Evaluates one flow with a full explanation.
    pub fn evaluate(&self, flow: &Flow) -> Result<Verdict, ResolveError> {
        let src = self.resolve(&flow.from)?;
        let dst = self.resolve(&flow.to)?;
        Ok(self.evaluate_sides(&src, &dst, flow.port, flow.protocol))
    }

    pub(crate) fn evaluate_sides(
        &self,
        src: &Side,
        dst: &Side,
        port: u16,
        protocol: Protocol,
    ) -> Verdict {
        let self_traffic = match (src, dst) {
            (Side::Pod(a) | Side::HostPod(a), Side::Pod(b) | Side::HostPod(b)) => a == b,
            _ => self.ip_of(src, true) == self.ip_of(dst, true) && self.ip_of(src, true).is_some(),
        };
        let mut notes = Vec::new();
        let egress = self.egress(src, dst, port, protocol, &mut notes);
        let ingress = self.ingress(src, dst, port, protocol, &mut notes);
        if protocol == Protocol::Sctp && !self.profile.sctp {
            notes.push(format!(
                "implementation-defined: profile {} does not enforce SCTP",
                self.profile
            ));
        }
        for side in [src, dst] {
            if let Side::Pod(id) = side {
                notes.extend(
                    self.namespace_warnings[self.pod_namespace[*id]]
                        .iter()
                        .cloned(),
                );
            }
        }
        notes.dedup();
        Verdict::new(self_traffic, egress, ingress, notes)
    }

    fn ingress(
        &self,
        src: &Side,
        dst: &Side,
        port: u16,
        protocol: Protocol,
        notes: &mut Vec<String>,
    ) -> DirectionVerdict {
        let d = match dst {
            Side::Pod(d) => *d,
            other => {
                return DirectionVerdict::NotApplicable {
                    why: self.not_subject_why(other),
                };
            }
        };
        let isolating = &self.ingress_policies[d];
        if isolating.is_empty() {
            return DirectionVerdict::NotIsolated;
        }
        if self.is_node_of(src, d) {
            return DirectionVerdict::NodeLocal;
        }
        self.decide(
            isolating,
            |p| &p.policy.ingress,
            |p| &p.ingress,
            Some(d),
            src,
            dst,
            port,
            protocol,
            notes,
        )
    }

    fn egress(
        &self,
        src: &Side,
        dst: &Side,
        port: u16,
        protocol: Protocol,
        notes: &mut Vec<String>,
    ) -> DirectionVerdict {
        let s = match src {
            Side::Pod(s) => *s,
            other => {
                return DirectionVerdict::NotApplicable {
                    why: self.not_subject_why(other),
                };
            }
        };
        let isolating = &self.egress_policies[s];
        if isolating.is_empty() {
            return DirectionVerdict::NotIsolated;
        }
        if self.is_node_of(dst, s) {
            return DirectionVerdict::NodeLocal;
        }
        // A hostNetwork destination counts as its node, which has no named ports (E17, E22).
        let dst_pod = match dst {
            Side::Pod(d) => Some(*d),
            _ => None,
        };
        self.decide(
            isolating,
            |p| &p.policy.egress,
            |p| &p.egress,
            dst_pod,
            dst,
            src,
            port,
            protocol,
            notes,
        )
    }

    /// Walks the isolating policies' rules of one direction. `port_pod` resolves named ports
    /// (always the destination pod, E17); `peer` is the other endpoint; `subject` the selected one.
    #[allow(clippy::too_many_arguments)]
    fn decide(
        &self,
        isolating: &[usize],
        rules_of: impl Fn(&CompiledPolicy) -> &Vec<Rule>,
        peers_of: impl Fn(&CompiledPolicy) -> &Vec<Vec<CompiledPeer>>,
        port_pod: Option<usize>,
        peer: &Side,
        subject: &Side,
        port: u16,
        protocol: Protocol,
        notes: &mut Vec<String>,
    ) -> DirectionVerdict {
        let family_v4 = self.flow_is_v4(subject, peer);
        let mut misses = Vec::with_capacity(isolating.len());
        for &pid in isolating {
            let compiled = &self.policies[pid];
            notes.extend(
                compiled
                    .policy
                    .warnings
                    .iter()
                    .map(|w| format!("{}: {w}", compiled.policy.key())),
            );
            let mut rule_misses = Vec::new();
            for (index, (rule, peers)) in rules_of(compiled)
                .iter()
                .zip(peers_of(compiled))
                .enumerate()
            {
                let port_check = self.check_ports(&rule.ports, port, protocol, port_pod);
                let peer_check = self.check_peers(compiled, &rule.peers, peers, peer, family_v4);
                match (port_check, peer_check) {
                    (Ok(mut port_notes), Ok(mut peer_notes)) => {
                        notes.append(&mut port_notes);
                        notes.append(&mut peer_notes);
                        let isolating = isolating
                            .iter()
                            .map(|&i| self.policies[i].policy.key())
                            .collect();
                        return DirectionVerdict::Allowed {
                            by: RuleRef {
                                policy: compiled.policy.key(),
                                index,
                            },
                            tier: Tier::NetworkPolicy,
                            isolating,
                        };
                    }
                    (port, peer) => rule_misses.push(RuleMiss {
                        index,
                        port: port.err(),
                        peer: peer.err(),
                    }),
                }
            }
            misses.push(PolicyMisses {
                policy: compiled.policy.key(),
                rules: rule_misses,
            });
        }
        DirectionVerdict::Denied { policies: misses }
    }

    /// Whether `side` is the node that pod `pod` runs on (E21).
    fn is_node_of(&self, side: &Side, pod: usize) -> bool {
        let Some(node) = self.pods[pod].node_name.as_deref() else {
            return false;
        };
        match side {
            Side::Node { name, .. } => name == node,
            Side::HostPod(h) => self.pods[*h].node_name.as_deref() == Some(node),
            _ => false,
        }
    }

    fn not_subject_why(&self, side: &Side) -> String {
        match side {
            Side::HostPod(id) => format!(
                "{} uses the host network; implementation-defined: profile {} treats it as its node",
                self.pods[*id].key(),
                self.profile
            ),
            Side::Node { name, ip } => format!("{ip} is node {name}"),
            Side::External(ip) => format!("{ip} is not a pod in the cluster"),
            Side::Pod(id) => format!("{} is a pod", self.pods[*id].key()),
        }
    }

    /// The address family of a flow (E19): IPv4 when both ends have an IPv4 address, else IPv6
    /// (a dual-stack pod talks to an IPv6-only pod over IPv6).
    pub(crate) fn flow_is_v4(&self, a: &Side, b: &Side) -> bool {
        self.has_v4(a) && self.has_v4(b)
    }

    pub(crate) fn has_v4(&self, side: &Side) -> bool {
        match side {
            Side::Pod(id) | Side::HostPod(id) => self.pods[*id].ips.iter().any(IpAddr::is_ipv4),
            Side::Node { ip, .. } | Side::External(ip) => ip.is_ipv4(),
        }
    }

    pub(crate) fn ip_of(&self, side: &Side, v4: bool) -> Option<IpAddr> {
        match side {
            Side::Pod(id) | Side::HostPod(id) => {
                let ips = &self.pods[*id].ips;
                ips.iter()
                    .copied()
                    .find(|ip| ip.is_ipv4() == v4)
                    .or_else(|| ips.first().copied())
            }
            Side::Node { ip, .. } | Side::External(ip) => Some(*ip),
        }
    }

    // === Ports ===

    /// Checks a rule's ports against the flow. `Ok` carries implementation-defined notes.
    pub(crate) fn check_ports(
        &self,
        ports: &[PolicyPort],
        port: u16,
        protocol: Protocol,
        dst_pod: Option<usize>,
    ) -> Result<Vec<String>, PortMiss> {
        if self.ports_match(ports, port, protocol, dst_pod) {
            Ok(Vec::new())
        } else {
            Err(self.port_miss(ports, port, protocol, dst_pod))
        }
    }

    /// A named container port of a destination pod (E17).
    fn named_port_of(&self, pod: usize, name: &str, protocol: Protocol) -> Option<u16> {
        self.pods[pod].resolve_named_port(name, protocol)
    }

    /// Whether one of a rule's port entries covers the flow (E5, E14-E17). Allocation-free:
    /// the matrix calls it for every rule and destination.
    pub(crate) fn ports_match(
        &self,
        ports: &[PolicyPort],
        port: u16,
        protocol: Protocol,
        dst_pod: Option<usize>,
    ) -> bool {
        ports.is_empty()
            || ports.iter().any(|entry| match entry {
                PolicyPort::Invalid { .. } => false,
                PolicyPort::Port { protocol: p, .. } if *p != protocol => false,
                PolicyPort::Port { port: None, .. } => true,
                PolicyPort::Port {
                    port: Some(PortRef::Number(n)),
                    end_port: Some(end),
                    ..
                } if self.profile.end_port => (*n..=*end).contains(&port),
                PolicyPort::Port {
                    port: Some(PortRef::Number(n)),
                    ..
                } => port == *n,
                PolicyPort::Port {
                    port: Some(PortRef::Name(name)),
                    ..
                } => dst_pod
                    .and_then(|d| self.named_port_of(d, name, protocol))
                    .is_some_and(|resolved| resolved == port),
            })
    }

    /// Why no port entry covers the flow; only called when `ports_match` is false.
    fn port_miss(
        &self,
        ports: &[PolicyPort],
        port: u16,
        protocol: Protocol,
        dst_pod: Option<usize>,
    ) -> PortMiss {
        let mut unresolved = None;
        let mut invalid = None;
        let mut any_valid = false;
        let mut notes = Vec::new();
        for entry in ports {
            match entry {
                PolicyPort::Invalid { reason } => {
                    invalid.get_or_insert_with(|| reason.clone());
                }
                PolicyPort::Port {
                    protocol: p,
                    port: want,
                    end_port,
                } => {
                    any_valid = true;
                    if *p != protocol {
                        continue;
                    }
                    match (want, end_port) {
                        (Some(PortRef::Number(n)), Some(end))
                            if !self.profile.end_port && (*n..=*end).contains(&port) =>
                        {
                            notes.push(format!(
                                "implementation-defined: profile {} ignores endPort, so {n}-{end} matches only {n}",
                                self.profile
                            ));
                        }
                        (Some(PortRef::Name(name)), _)
                            if dst_pod
                                .and_then(|d| self.named_port_of(d, name, protocol))
                                .is_none() =>
                        {
                            unresolved.get_or_insert_with(|| name.clone());
                        }
                        _ => {}
                    }
                }
            }
        }
        if !any_valid {
            return PortMiss::Invalid {
                reason: invalid.unwrap_or_default(),
            };
        }
        if let Some(name) = unresolved {
            return PortMiss::NamedPortUnresolved {
                name,
                protocol,
                pod: dst_pod.map(|d| self.pods[d].key()),
            };
        }
        let wanted = ports.iter().map(|p| self.render_port(p, dst_pod)).collect();
        PortMiss::NotListed {
            wanted,
            port,
            protocol,
            notes,
        }
    }

    fn render_port(&self, entry: &PolicyPort, dst_pod: Option<usize>) -> String {
        match entry {
            PolicyPort::Invalid { reason } => format!("invalid ({reason})"),
            PolicyPort::Port {
                protocol,
                port: None,
                ..
            } => format!("any {protocol} port"),
            PolicyPort::Port {
                protocol,
                port: Some(PortRef::Number(n)),
                end_port: Some(e),
            } => format!("{n}-{e}/{protocol}"),
            PolicyPort::Port {
                protocol,
                port: Some(PortRef::Number(n)),
                end_port: None,
            } => format!("{n}/{protocol}"),
            PolicyPort::Port {
                protocol,
                port: Some(PortRef::Name(name)),
                ..
            } => match dst_pod.and_then(|d| self.named_port_of(d, name, *protocol)) {
                Some(n) => format!("{name}/{protocol} (= {n})"),
                None => format!("{name}/{protocol}"),
            },
        }
    }

    // === Peers ===

    /// Checks a rule's peers against the other endpoint; on a miss keeps the closest peer.
    // The error is the explanation itself (wanted vs actual, as strings), built once per rule
    // miss; boxing it would only add an allocation.
    #[allow(clippy::result_large_err)]
    pub(crate) fn check_peers(
        &self,
        policy: &CompiledPolicy,
        peers: &[Peer],
        compiled: &[CompiledPeer],
        other: &Side,
        family_v4: bool,
    ) -> Result<Vec<String>, PeerMiss> {
        if peers.is_empty() {
            return Ok(Vec::new());
        }
        let mut best: Option<PeerMiss> = None;
        for (i, (peer, c)) in peers.iter().zip(compiled).enumerate() {
            let result = match (peer, c) {
                (
                    Peer::Pods {
                        pod_selector,
                        namespace_selector,
                    },
                    CompiledPeer::Pods {
                        pod_selector: ps,
                        namespace_selector: ns,
                    },
                ) => self.check_pod_peer(
                    policy,
                    i,
                    pod_selector.as_ref(),
                    namespace_selector.as_ref(),
                    *ps,
                    *ns,
                    other,
                ),
                (Peer::IpBlock(block), _) => self.check_ip_block(i, block, other, family_v4),
                (Peer::Invalid { reason }, _) => Err(PeerMiss::Invalid {
                    reason: reason.clone(),
                }),
                _ => Err(PeerMiss::Invalid {
                    reason: "internal: peer not compiled".into(),
                }),
            };
            match result {
                Ok(notes) => return Ok(notes),
                Err(miss) => {
                    if best.as_ref().is_none_or(|b| miss.rank() < b.rank()) {
                        best = Some(miss);
                    }
                }
            }
        }
        Err(best.unwrap_or(PeerMiss::Invalid {
            reason: "no peers".into(),
        }))
    }

    #[allow(clippy::too_many_arguments, clippy::result_large_err)]
    fn check_pod_peer(
        &self,
        policy: &CompiledPolicy,
        peer: usize,
        pod_selector: Option<&Selector>,
        namespace_selector: Option<&Selector>,
        pod_sel_id: Option<usize>,
        ns_sel_id: Option<usize>,
        other: &Side,
    ) -> Result<Vec<String>, PeerMiss> {
        let id = match other {
            Side::Pod(id) => *id,
            other => {
                let endpoint = match other {
                    Side::HostPod(id) => format!(
                        "{} (hostNetwork; implementation-defined: profile {} does not select it by labels)",
                        self.pods[*id].key(),
                        self.profile
                    ),
                    Side::Node { name, ip } => format!("{ip} (node {name})"),
                    Side::External(ip) => format!("{ip} (not a pod)"),
                    Side::Pod(_) => unreachable!("handled above"),
                };
                return Err(PeerMiss::NotAPod { peer, endpoint });
            }
        };
        let ns = self.pod_namespace[id];
        match (namespace_selector, ns_sel_id) {
            (Some(sel), Some(sid)) => {
                if !self.namespace_selector_matches[sid].contains(ns) {
                    return Err(PeerMiss::NamespaceSelector {
                        peer,
                        selector: sel.to_string(),
                        namespace: self.namespaces[ns].clone(),
                        labels: display_labels(&self.namespace_labels[ns]),
                        pod_selector: pod_selector.map(ToString::to_string),
                    });
                }
            }
            _ => {
                if ns != policy.namespace {
                    return Err(PeerMiss::PolicyNamespaceOnly {
                        peer,
                        policy_namespace: policy.policy.namespace.clone(),
                        namespace: self.namespaces[ns].clone(),
                    });
                }
            }
        }
        if let (Some(sel), Some(sid)) = (pod_selector, pod_sel_id)
            && !self.pod_selector_matches[sid].contains(id)
        {
            let pod = &self.pods[id];
            return Err(PeerMiss::PodSelector {
                peer,
                selector: sel.to_string(),
                pod: pod.key(),
                labels: display_labels(&pod.labels),
                unmet: sel
                    .first_unmet(&pod.labels)
                    .map(|r| r.to_string())
                    .unwrap_or_default(),
                namespace_selector: namespace_selector.map(ToString::to_string),
            });
        }
        Ok(Vec::new())
    }

    // The error is the explanation itself (wanted vs actual, as strings), built once per rule
    // miss; boxing it would only add an allocation.
    #[allow(clippy::result_large_err)]
    fn check_ip_block(
        &self,
        peer: usize,
        block: &crate::cluster::model::IpBlock,
        other: &Side,
        family_v4: bool,
    ) -> Result<Vec<String>, PeerMiss> {
        let render = || {
            let mut s = block.cidr.to_string();
            if !block.except.is_empty() {
                let ex: Vec<String> = block.except.iter().map(|e| e.to_string()).collect();
                s.push_str(&format!(" except {}", ex.join(", ")));
            }
            s
        };
        let Some(ip) = self.ip_of(other, family_v4) else {
            return Err(PeerMiss::IpBlock {
                peer,
                blocks: vec![render()],
                ip: "none".into(),
                excepted: false,
                notes: vec![],
            });
        };
        let mut notes = Vec::new();
        if let Side::Pod(id) = other {
            if !self.profile.ip_block_matches_pod_ips {
                return Err(PeerMiss::IpBlock {
                    peer,
                    blocks: vec![render()],
                    ip: ip.to_string(),
                    excepted: false,
                    notes: vec![format!(
                        "implementation-defined: profile {} does not match ipBlock against pod IPs ({} is pod {})",
                        self.profile,
                        ip,
                        self.pods[*id].key()
                    )],
                });
            }
            if block.contains(ip) {
                notes.push(format!(
                    "implementation-defined: ipBlock {} matched pod IP {ip} (profile {} matches pod IPs, as the upstream e2e suite requires)",
                    render(),
                    self.profile
                ));
                return Ok(notes);
            }
        } else if block.contains(ip) {
            return Ok(notes);
        }
        let excepted = block.cidr.contains(ip);
        Err(PeerMiss::IpBlock {
            peer,
            blocks: vec![render()],
            ip: ip.to_string(),
            excepted,
            notes,
        })
    }
}
