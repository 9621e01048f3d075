//! The test builders every unit test shares: model objects (namespaces, nodes, pods,
//! NetworkPolicies, rules, peers, ports, selectors) built directly, without YAML, with small
//! extension traits for the variations (`pod(..).with_port(..)`, `policy(..).ingress(rule())`).
//! Tests of one module keep only what is specific to them (a world, a spec, a report).

pub(crate) mod mock_api;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use crate::cluster::Index;
use crate::cluster::index::Apply;
use crate::cluster::model::{
    Cidr, ContainerPort, IpBlock, Labels, NAMESPACE_NAME_LABEL, Namespace, NetworkPolicy, Node,
    ObjectRef, Peer, Pod, PodPhase, PolicyPort, PortRef, Protocol, Rule,
};
use crate::cluster::selector::Selector;

use Protocol::Tcp;

/// `namespace/name` as an [`ObjectRef`].
pub(crate) fn key(s: &str) -> ObjectRef {
    s.parse().expect("a test key is ns/name")
}

/// An index of these namespaces and pods.
pub(crate) fn index(namespaces: Vec<Namespace>, pods: Vec<Pod>) -> Index {
    let mut index = Index::new();
    index.reset(namespaces);
    index.reset(pods);
    index
}

pub(crate) fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A namespace with the name label injected, as the converter does (E10).
pub(crate) fn namespace(name: &str, pairs: &[(&str, &str)]) -> Namespace {
    let mut labels = labels(pairs);
    labels.insert(NAMESPACE_NAME_LABEL.into(), name.into());
    Namespace {
        name: name.into(),
        labels,
    }
}

pub(crate) fn node(name: &str, ip: &str) -> Node {
    Node {
        name: name.into(),
        addresses: vec![ip.parse().unwrap()],
        ready: true,
        problems: vec![],
        labels: Labels::new(),
    }
}

/// A running pod; `ips` is comma-separated (empty: no IP yet), `node` empty: unscheduled.
pub(crate) fn pod(ns: &str, name: &str, pairs: &[(&str, &str)], ips: &str, node: &str) -> Pod {
    Pod {
        namespace: ns.into(),
        name: name.into(),
        uid: format!("uid-{ns}-{name}"),
        labels: labels(pairs),
        node_name: (!node.is_empty()).then(|| node.to_string()),
        host_network: false,
        ips: ips
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect(),
        phase: PodPhase::Running,
        ready: true,
        terminating: false,
        ports: vec![],
        restarts: 0,
        mesh: None,
    }
}

pub(crate) trait PodExt {
    fn with_port(self, name: &str, port: u16, protocol: Protocol) -> Pod;
    fn host_network(self) -> Pod;
    fn phase(self, phase: PodPhase) -> Pod;
}

impl PodExt for Pod {
    fn with_port(mut self, name: &str, port: u16, protocol: Protocol) -> Pod {
        self.ports.push(ContainerPort {
            name: (!name.is_empty()).then(|| name.to_string()),
            port,
            protocol,
        });
        self
    }
    fn host_network(mut self) -> Pod {
        self.host_network = true;
        self
    }
    fn phase(mut self, phase: PodPhase) -> Pod {
        self.phase = phase;
        self
    }
}

/// A policy selecting every pod of `ns` that isolates nothing until a rule or type is added.
pub(crate) fn policy(ns: &str, name: &str) -> NetworkPolicy {
    NetworkPolicy {
        namespace: ns.into(),
        name: name.into(),
        pod_selector: Selector::everything(),
        isolates_ingress: false,
        isolates_egress: false,
        ingress: vec![],
        egress: vec![],
        warnings: vec![],
    }
}

pub(crate) trait PolicyExt {
    fn select(self, selector: Selector) -> NetworkPolicy;
    /// Adds an ingress rule and `Ingress` to policyTypes.
    fn ingress(self, rule: Rule) -> NetworkPolicy;
    /// Adds an egress rule and `Egress` to policyTypes.
    fn egress(self, rule: Rule) -> NetworkPolicy;
    fn deny_ingress(self) -> NetworkPolicy;
    fn deny_egress(self) -> NetworkPolicy;
    /// Sets the (defaulted) policyTypes explicitly.
    fn types(self, ingress: bool, egress: bool) -> NetworkPolicy;
    fn warn(self, warning: &str) -> NetworkPolicy;
}

impl PolicyExt for NetworkPolicy {
    fn select(mut self, selector: Selector) -> NetworkPolicy {
        self.pod_selector = selector;
        self
    }
    fn ingress(mut self, rule: Rule) -> NetworkPolicy {
        self.isolates_ingress = true;
        self.ingress.push(rule);
        self
    }
    fn egress(mut self, rule: Rule) -> NetworkPolicy {
        self.isolates_egress = true;
        self.egress.push(rule);
        self
    }
    fn deny_ingress(mut self) -> NetworkPolicy {
        self.isolates_ingress = true;
        self
    }
    fn deny_egress(mut self) -> NetworkPolicy {
        self.isolates_egress = true;
        self
    }
    fn types(mut self, ingress: bool, egress: bool) -> NetworkPolicy {
        self.isolates_ingress = ingress;
        self.isolates_egress = egress;
        self
    }
    fn warn(mut self, warning: &str) -> NetworkPolicy {
        self.warnings.push(warning.into());
        self
    }
}

/// A rule with no ports and no peers: allows everything (E3, E4, E5).
pub(crate) fn rule() -> Rule {
    Rule::default()
}

pub(crate) trait RuleExt {
    fn peer(self, peer: Peer) -> Rule;
    fn port(self, port: PolicyPort) -> Rule;
}

impl RuleExt for Rule {
    fn peer(mut self, peer: Peer) -> Rule {
        self.peers.push(peer);
        self
    }
    fn port(mut self, port: PolicyPort) -> Rule {
        self.ports.push(port);
        self
    }
}

pub(crate) fn sel(pairs: &[(&str, &str)]) -> Selector {
    Selector::from_labels(pairs.iter().copied())
}

pub(crate) fn all() -> Selector {
    Selector::everything()
}

/// A selector with one matchExpressions requirement.
pub(crate) fn expr(key: &str, op: &str, values: &[&str]) -> Selector {
    let requirement = LabelSelectorRequirement {
        key: key.into(),
        operator: op.into(),
        values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
    };
    Selector::try_from(&LabelSelector {
        match_labels: None,
        match_expressions: Some(vec![requirement]),
    })
    .unwrap()
}

/// `podSelector` only (E7).
pub(crate) fn pods(selector: Selector) -> Peer {
    Peer::Pods {
        pod_selector: Some(selector),
        namespace_selector: None,
    }
}

/// `namespaceSelector` only (E8).
pub(crate) fn nss(selector: Selector) -> Peer {
    Peer::Pods {
        pod_selector: None,
        namespace_selector: Some(selector),
    }
}

/// Both selectors in one peer: AND (E9).
pub(crate) fn pods_in(namespaces: Selector, pods: Selector) -> Peer {
    Peer::Pods {
        pod_selector: Some(pods),
        namespace_selector: Some(namespaces),
    }
}

pub(crate) fn ip_block(cidr: &str, except: &[&str]) -> Peer {
    Peer::IpBlock(IpBlock {
        cidr: cidr.parse::<Cidr>().unwrap(),
        except: except.iter().map(|e| e.parse::<Cidr>().unwrap()).collect(),
    })
}

pub(crate) fn invalid_peer(reason: &str) -> Peer {
    Peer::Invalid {
        reason: reason.into(),
    }
}

pub(crate) fn port(protocol: Protocol, n: u16) -> PolicyPort {
    PolicyPort::Port {
        protocol,
        port: Some(PortRef::Number(n)),
        end_port: None,
    }
}

pub(crate) fn tcp(n: u16) -> PolicyPort {
    port(Tcp, n)
}

pub(crate) fn range(protocol: Protocol, n: u16, end: u16) -> PolicyPort {
    PolicyPort::Port {
        protocol,
        port: Some(PortRef::Number(n)),
        end_port: Some(end),
    }
}

pub(crate) fn named(name: &str, protocol: Protocol) -> PolicyPort {
    PolicyPort::Port {
        protocol,
        port: Some(PortRef::Name(name.into())),
        end_port: None,
    }
}

pub(crate) fn any_port(protocol: Protocol) -> PolicyPort {
    PolicyPort::Port {
        protocol,
        port: None,
        end_port: None,
    }
}

pub(crate) fn invalid_port(reason: &str) -> PolicyPort {
    PolicyPort::Invalid {
        reason: reason.into(),
    }
}
