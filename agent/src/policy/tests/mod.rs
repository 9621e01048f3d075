//! Table-driven tests of the policy engine: one or more per item of
//! `docs/reference/netpol-semantics.md` (E0–E25), the explanation structure, and a cross-check of
//! `Engine::matrix` against `Engine::evaluate` on a pseudo-random cluster.
//!
//! Fixtures build `model` types directly (no YAML): conversion and defaulting (E1, E5, E6, E10,
//! E13, E16, E19, E24) are tested at the conversion layer; here only the engine side is.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use super::*;
use crate::cluster::index::{Apply, Index};
use crate::cluster::model::{
    Cidr, ContainerPort, IpBlock, Labels, NAMESPACE_NAME_LABEL, Namespace, NetworkPolicy, Node,
    ObjectRef, Peer, Pod, PodPhase, PolicyPort, PortRef, Protocol, Rule,
};
use crate::cluster::selector::Selector;

use Protocol::{Sctp, Tcp, Udp};

// === Fixtures (shared by the submodules) ===

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A namespace with the name label injected, as the converter does (E10).
fn ns(name: &str, pairs: &[(&str, &str)]) -> Namespace {
    let mut labels = labels(pairs);
    labels.insert(NAMESPACE_NAME_LABEL.into(), name.into());
    Namespace {
        name: name.into(),
        labels,
    }
}

fn node(name: &str, ip: &str) -> Node {
    Node {
        name: name.into(),
        addresses: vec![ip.parse().unwrap()],
        ready: true,
        problems: vec![],
        labels: Labels::new(),
    }
}

/// A running pod; `ips` is comma-separated (empty: no IP yet), `node` empty: unscheduled.
fn pod(ns: &str, name: &str, pairs: &[(&str, &str)], ips: &str, node: &str) -> Pod {
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

trait PodExt {
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
fn policy(ns: &str, name: &str) -> NetworkPolicy {
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

trait PolicyExt {
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
fn rule() -> Rule {
    Rule::default()
}

trait RuleExt {
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

fn sel(pairs: &[(&str, &str)]) -> Selector {
    Selector::from_labels(pairs.iter().copied())
}

fn all() -> Selector {
    Selector::everything()
}

/// A selector with one matchExpressions requirement.
fn expr(key: &str, op: &str, values: &[&str]) -> Selector {
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
fn pods(selector: Selector) -> Peer {
    Peer::Pods {
        pod_selector: Some(selector),
        namespace_selector: None,
    }
}

/// `namespaceSelector` only (E8).
fn nss(selector: Selector) -> Peer {
    Peer::Pods {
        pod_selector: None,
        namespace_selector: Some(selector),
    }
}

/// Both selectors in one peer: AND (E9).
fn pods_in(namespaces: Selector, pods: Selector) -> Peer {
    Peer::Pods {
        pod_selector: Some(pods),
        namespace_selector: Some(namespaces),
    }
}

fn ip_block(cidr: &str, except: &[&str]) -> Peer {
    Peer::IpBlock(IpBlock {
        cidr: cidr.parse::<Cidr>().unwrap(),
        except: except.iter().map(|e| e.parse::<Cidr>().unwrap()).collect(),
    })
}

fn invalid_peer(reason: &str) -> Peer {
    Peer::Invalid {
        reason: reason.into(),
    }
}

fn port(protocol: Protocol, n: u16) -> PolicyPort {
    PolicyPort::Port {
        protocol,
        port: Some(PortRef::Number(n)),
        end_port: None,
    }
}

fn tcp(n: u16) -> PolicyPort {
    port(Tcp, n)
}

fn range(protocol: Protocol, n: u16, end: u16) -> PolicyPort {
    PolicyPort::Port {
        protocol,
        port: Some(PortRef::Number(n)),
        end_port: Some(end),
    }
}

fn named(name: &str, protocol: Protocol) -> PolicyPort {
    PolicyPort::Port {
        protocol,
        port: Some(PortRef::Name(name.into())),
        end_port: None,
    }
}

fn any_port(protocol: Protocol) -> PolicyPort {
    PolicyPort::Port {
        protocol,
        port: None,
        end_port: None,
    }
}

fn invalid_port(reason: &str) -> PolicyPort {
    PolicyPort::Invalid {
        reason: reason.into(),
    }
}

#[derive(Default)]
struct World {
    index: Index,
}

impl World {
    fn ns(mut self, n: Namespace) -> Self {
        self.index.apply(n);
        self
    }
    fn node(mut self, n: Node) -> Self {
        self.index.apply(n);
        self
    }
    fn pod(mut self, p: Pod) -> Self {
        self.index.apply(p);
        self
    }
    fn policy(mut self, p: NetworkPolicy) -> Self {
        self.index.apply(p);
        self
    }
    fn engine(&self) -> Engine {
        Engine::new(&self.index, Profile::UPSTREAM)
    }
    fn engine_with(&self, profile: Profile) -> Engine {
        Engine::new(&self.index, profile)
    }
    /// An engine over this world plus one more policy.
    fn clone_with(&self, p: NetworkPolicy) -> Engine {
        let mut index = self.index.clone();
        index.apply(p);
        Engine::new(&index, Profile::UPSTREAM)
    }
}

/// Three namespaces, three nodes, pods with named ports, and a hostNetwork pod on n1 and n2.
fn base() -> World {
    World::default()
        .ns(ns("shop", &[("team", "shop")]))
        .ns(ns("web", &[("team", "frontend")]))
        .ns(ns("ops", &[("team", "ops"), ("env", "prod")]))
        .node(node("n1", "192.168.0.1"))
        .node(node("n2", "192.168.0.2"))
        .node(node("n3", "192.168.0.3"))
        .pod(
            pod(
                "shop",
                "db",
                &[("app", "db"), ("tier", "data")],
                "10.0.1.1",
                "n1",
            )
            .with_port("pg", 5432, Tcp),
        )
        .pod(
            pod(
                "shop",
                "api",
                &[("app", "api"), ("tier", "backend")],
                "10.0.1.2",
                "n1",
            )
            .with_port("http", 8080, Tcp)
            .with_port("metrics", 9090, Tcp)
            .with_port("dns", 53, Udp),
        )
        .pod(
            pod("shop", "cache", &[("app", "cache")], "10.0.1.3", "n2")
                .with_port("http", 6379, Tcp),
        )
        .pod(pod(
            "shop",
            "client",
            &[("role", "client")],
            "10.0.1.4",
            "n2",
        ))
        .pod(pod("web", "ui", &[("app", "ui")], "10.0.2.1", "n2").with_port("http", 80, Tcp))
        .pod(
            pod(
                "web",
                "client",
                &[("app", "client"), ("role", "client")],
                "10.0.2.2",
                "n1",
            )
            .with_port("http", 9999, Tcp),
        )
        .pod(pod("ops", "probe", &[("app", "probe")], "10.0.3.1", "n3"))
        .pod(pod("ops", "agent-1", &[("app", "agent")], "192.168.0.1", "n1").host_network())
        .pod(pod("ops", "agent-2", &[("app", "agent")], "192.168.0.2", "n2").host_network())
}

fn flow(from: &str, to: &str, port: u16, protocol: Protocol) -> Flow {
    Flow {
        from: from.parse().unwrap(),
        to: to.parse().unwrap(),
        port,
        protocol,
    }
}

fn eval(engine: &Engine, from: &str, to: &str, port: u16, protocol: Protocol) -> Verdict {
    let f = flow(from, to, port, protocol);
    let verdict = engine
        .evaluate(&f)
        .unwrap_or_else(|e| panic!("{from} -> {to}: {e}"));
    assert_matrix_agrees(engine, &f, &verdict);
    verdict
}

/// When both ends are pods, the matrix cell must say what `evaluate` says.
fn assert_matrix_agrees(engine: &Engine, f: &Flow, verdict: &Verdict) {
    let (Endpoint::Pod(a), Endpoint::Pod(b)) = (&f.from, &f.to) else {
        return;
    };
    let (Some(a), Some(b)) = (engine.pod_id(a), engine.pod_id(b)) else {
        return;
    };
    let port = MatrixPort {
        port: f.port,
        protocol: f.protocol,
    };
    let cell = engine
        .matrix(&[port])
        .into_iter()
        .find(|c| c.from == a && c.to == b)
        .expect("cell for an endpoint pair");
    assert_eq!(
        (cell.allowed, cell.rules_allowed, cell.self_traffic),
        (verdict.allowed, verdict.rules_allowed, verdict.self_traffic),
        "matrix disagrees with evaluate for {} -> {} {}/{}",
        f.from,
        f.to,
        f.port,
        f.protocol
    );
}

/// A table row: `"FROM -> TO PORT/PROTOCOL VERDICT  # name"`, endpoints as `ns/pod` or an IP;
/// VERDICT is `allow`, `deny` or `deny:REASON` (a reason code, also checked).
struct Case<'a> {
    name: &'a str,
    from: &'a str,
    to: &'a str,
    port: u16,
    protocol: Protocol,
    allowed: bool,
    reason: Option<&'a str>,
}

fn parse_case(row: &str) -> Case<'_> {
    let (spec, name) = row.split_once(" # ").unwrap_or((row, row));
    let parts: Vec<&str> = spec.split_whitespace().collect();
    let [from, "->", to, port_proto, want] = parts[..] else {
        panic!("bad table row {row:?}")
    };
    let (port, protocol) = port_proto.split_once('/').expect("PORT/PROTOCOL");
    let (allowed, reason) = match want.split_once(':') {
        None if want == "allow" => (true, None),
        None if want == "deny" => (false, None),
        Some(("deny", reason)) => (false, Some(reason)),
        _ => panic!("bad verdict {want:?} in {row:?}"),
    };
    Case {
        name: name.trim(),
        from,
        to,
        port: port.parse().unwrap(),
        protocol: protocol.parse().unwrap(),
        allowed,
        reason,
    }
}

fn check(engine: &Engine, rows: &[&str]) {
    for row in rows {
        let case = parse_case(row);
        let Case {
            name,
            from,
            to,
            port,
            protocol,
            ..
        } = case;
        let verdict = eval(engine, from, to, port, protocol);
        let why = || {
            format!(
                "{name} ({}): {from} -> {to} {port}/{protocol}\n{}",
                engine.profile(),
                explain::render(&flow(from, to, port, protocol), &verdict)
            )
        };
        assert_eq!(verdict.allowed, case.allowed, "{}", why());
        if case.reason.is_some() {
            assert_eq!(verdict.reason.map(Reason::as_str), case.reason, "{}", why());
        }
    }
}

fn denied(part: &DirectionVerdict) -> &[PolicyMisses] {
    match part {
        DirectionVerdict::Denied { policies } => policies,
        other => panic!("expected a denial, got {other:?}"),
    }
}

fn keys(names: &[&str]) -> Vec<ObjectRef> {
    names.iter().map(|n| n.parse().unwrap()).collect()
}

fn render(engine: &Engine, from: &str, to: &str, port: u16, protocol: Protocol) -> String {
    let f = flow(from, to, port, protocol);
    explain::render(&f, &engine.evaluate(&f).unwrap())
}

mod cross_check;
mod explanations;
mod identity;
mod ip_block;
mod isolation;
mod peers;
mod ports;
mod rules;
mod services;
mod special_traffic;
