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

// === Fixtures ===

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

// === Isolation and combination ===

#[test]
fn e0_isolation_is_per_direction() {
    let world = base()
        .policy(
            policy("shop", "db-deny-in")
                .select(sel(&[("app", "db")]))
                .deny_ingress(),
        )
        .policy(
            policy("web", "client-deny-out")
                .select(sel(&[("app", "client")]))
                .deny_egress(),
        );
    let engine = world.engine();
    check(
        &engine,
        &[
            "shop/api -> shop/db 5432/TCP deny  # E0 ingress-isolated db denies ingress",
            "shop/db -> shop/api 8080/TCP allow  # E0 ingress-isolated db still sends",
            "web/client -> web/ui 80/TCP deny  # E0 egress-isolated client cannot send",
            "web/ui -> web/client 9999/TCP allow  # E0 egress-isolated client still receives",
        ],
    );
    let v = eval(&engine, "shop/api", "shop/db", 5432, Tcp);
    assert_eq!(v.direction, Some(Direction::Ingress));
    assert_eq!(v.egress, DirectionVerdict::NotIsolated);
    assert_eq!(v.policies, ["shop/db-deny-in"]);
    let v = eval(&engine, "web/client", "web/ui", 80, Tcp);
    assert_eq!(v.direction, Some(Direction::Egress));
    assert_eq!(v.ingress, DirectionVerdict::NotIsolated);
    assert_eq!(v.policies, ["web/client-deny-out"]);
    assert_eq!(
        engine.policies_selecting(engine.pod_id(&"shop/db".parse().unwrap()).unwrap()),
        (keys(&["shop/db-deny-in"]), vec![])
    );
}

#[test]
fn e0_both_directions_must_allow() {
    let egress_ok = policy("web", "client-out")
        .select(sel(&[("app", "client")]))
        .egress(rule().peer(nss(all())).port(tcp(5432)));
    let db_in = policy("shop", "db-in")
        .select(sel(&[("app", "db")]))
        .ingress(rule().peer(pods(all())));
    let engine = base().policy(egress_ok.clone()).policy(db_in).engine();
    let v = eval(&engine, "web/client", "shop/db", 5432, Tcp);
    assert!(!v.allowed && !v.rules_allowed);
    assert!(matches!(v.egress, DirectionVerdict::Allowed { .. }));
    assert_eq!(v.direction, Some(Direction::Ingress));
    assert_eq!(v.reason, Some(Reason::NamespaceSelectorMismatch));

    // Ingress allows but egress does not.
    let engine = base()
        .policy(
            policy("web", "client-out")
                .select(sel(&[("app", "client")]))
                .egress(rule().peer(nss(all())).port(tcp(1))),
        )
        .policy(
            policy("shop", "db-in")
                .select(sel(&[("app", "db")]))
                .ingress(rule()),
        )
        .engine();
    let v = eval(&engine, "web/client", "shop/db", 5432, Tcp);
    assert!(!v.allowed);
    assert!(matches!(v.ingress, DirectionVerdict::Allowed { .. }));
    assert_eq!(
        (v.direction, v.reason),
        (Some(Direction::Egress), Some(Reason::PortNotAllowed))
    );

    // Both deny: ingress is reported as the direction; both directions' policies are listed.
    let engine = base()
        .policy(
            policy("web", "client-out")
                .select(sel(&[("app", "client")]))
                .deny_egress(),
        )
        .policy(
            policy("shop", "db-in")
                .select(sel(&[("app", "db")]))
                .deny_ingress(),
        )
        .engine();
    let v = eval(&engine, "web/client", "shop/db", 5432, Tcp);
    assert_eq!(v.direction, Some(Direction::Ingress));
    assert_eq!(v.policies, ["web/client-out", "shop/db-in"]);

    // Both allow.
    let engine = base()
        .policy(egress_ok)
        .policy(
            policy("shop", "db-in")
                .select(sel(&[("app", "db")]))
                .ingress(rule().peer(nss(sel(&[("team", "frontend")])))),
        )
        .engine();
    let v = eval(&engine, "web/client", "shop/db", 5432, Tcp);
    assert!(
        v.allowed
            && v.rules_allowed
            && v.reason.is_none()
            && v.direction.is_none()
            && v.policies.is_empty()
    );
}

// === Defaulting and shape of rules (engine side) ===

#[test]
fn e1_egress_rules_without_egress_type_do_not_isolate_egress() {
    // The converter defaults policyTypes; the engine must honour `isolates_egress`, not the
    // presence of egress rules.
    let inert = policy("web", "inert")
        .select(sel(&[("app", "client")]))
        .egress(rule().peer(pods(sel(&[("app", "nothing")]))))
        .types(true, false)
        .warn("egress rules are inert: policyTypes lacks Egress");
    let engine = base().policy(inert).engine();
    check(
        &engine,
        &[
            "web/client -> shop/db 5432/TCP allow  # E1 egress rules without Egress type: not isolated",
            "web/ui -> web/client 9999/TCP deny  # E1 Ingress type still isolates ingress",
        ],
    );
    assert_eq!(
        eval(&engine, "web/client", "shop/db", 5432, Tcp).egress,
        DirectionVerdict::NotIsolated
    );
    // The policy warning is surfaced when the policy takes part in a decision.
    let v = eval(&engine, "web/ui", "web/client", 9999, Tcp);
    assert!(
        v.notes
            .iter()
            .any(|n| n.contains("web/inert") && n.contains("inert")),
        "{:?}",
        v.notes
    );

    // `egress: []` without the Egress type does not isolate; with it, it denies all egress.
    let cases: &[(&str, NetworkPolicy, bool)] = &[
        (
            "E1 ingress-only policy",
            policy("web", "p")
                .select(sel(&[("app", "client")]))
                .types(true, false),
            true,
        ),
        (
            "E1 explicit Egress, no rules: deny all egress",
            policy("web", "p")
                .select(sel(&[("app", "client")]))
                .deny_egress(),
            false,
        ),
        (
            "E1 egress-only policy does not isolate ingress",
            policy("web", "p")
                .select(sel(&[("app", "ui")]))
                .deny_egress(),
            true,
        ),
    ];
    for (name, p, want) in cases {
        let engine = base().policy(p.clone()).engine();
        let v = eval(&engine, "web/client", "web/ui", 80, Tcp);
        assert_eq!(v.allowed, *want, "{name}");
    }
}

#[test]
fn e2_empty_pod_selector_selects_every_pod_of_its_namespace_only() {
    let engine = base()
        .policy(policy("shop", "deny-all").select(all()).deny_ingress())
        .engine();
    for name in ["shop/db", "shop/api", "shop/cache", "shop/client"] {
        let id = engine.pod_id(&name.parse().unwrap()).unwrap();
        assert_eq!(
            engine.policies_selecting(id).0,
            keys(&["shop/deny-all"]),
            "{name}"
        );
    }
    for name in ["web/ui", "web/client", "ops/probe"] {
        let id = engine.pod_id(&name.parse().unwrap()).unwrap();
        assert!(
            engine.policies_selecting(id).0.is_empty(),
            "E2 never cross-namespace: {name}"
        );
    }
    check(
        &engine,
        &[
            "web/ui -> shop/cache 6379/TCP deny  # E2 shop pods isolated",
            "shop/db -> web/ui 80/TCP allow  # E2 other namespaces untouched",
        ],
    );
}

#[test]
fn e3_empty_rule_list_denies_empty_rule_allows_all() {
    let no_rules = base()
        .policy(
            policy("shop", "p")
                .select(sel(&[("app", "db")]))
                .deny_ingress(),
        )
        .engine();
    let empty_rule = base()
        .policy(
            policy("shop", "p")
                .select(sel(&[("app", "db")]))
                .ingress(rule()),
        )
        .engine();
    check(
        &no_rules,
        &[
            "web/ui -> shop/db 5432/TCP deny  # E3 no rules: deny from a pod",
            "203.0.113.7 -> shop/db 5432/TCP deny  # E3 no rules: deny from outside",
        ],
    );
    check(
        &empty_rule,
        &[
            "web/ui -> shop/db 5432/TCP allow  # E3 [{}]: allow a pod",
            "203.0.113.7 -> shop/db 1/TCP allow  # E3 [{}]: allow outside",
            "ops/probe -> shop/db 53/UDP allow  # E3 [{}]: allow any protocol",
            "ops/probe -> shop/db 9/SCTP allow  # E3 [{}]: allow SCTP",
        ],
    );
    let v = eval(&no_rules, "web/ui", "shop/db", 5432, Tcp);
    assert_eq!(v.reason, Some(Reason::DefaultDeny));
    assert!(v.closest_rule().is_none());
    assert_eq!(
        denied(&v.ingress),
        [PolicyMisses {
            policy: "shop/p".parse().unwrap(),
            rules: vec![]
        }]
    );
    let text = render(&no_rules, "web/ui", "shop/db", 5432, Tcp);
    assert!(
        text.contains("has no ingress rules (default deny)"),
        "{text}"
    );
    assert!(explain::summary(&flow("web/ui", "shop/db", 5432, Tcp), &v).contains("default_deny"));
}

#[test]
fn e4_empty_peers_match_every_source_including_external() {
    let engine = base()
        .policy(
            policy("shop", "p")
                .select(sel(&[("app", "db")]))
                .ingress(rule().port(tcp(5432))),
        )
        .engine();
    check(
        &engine,
        &[
            "web/ui -> shop/db 5432/TCP allow  # E4 other namespace",
            "203.0.113.7 -> shop/db 5432/TCP allow  # E4 external address",
            "192.168.0.3 -> shop/db 5432/TCP allow  # E4 other node",
            "ops/agent-2 -> shop/db 5432/TCP allow  # E4 hostNetwork pod elsewhere",
            "web/ui -> shop/db 5433/TCP deny  # E4 ports still apply",
        ],
    );
    assert_eq!(
        eval(&engine, "web/ui", "shop/db", 5433, Tcp).reason,
        Some(Reason::PortNotAllowed)
    );
    // And for egress: empty `to` matches every destination, including external ones.
    let engine = base()
        .policy(
            policy("shop", "p")
                .select(sel(&[("app", "db")]))
                .egress(rule().port(tcp(443))),
        )
        .engine();
    check(
        &engine,
        &[
            "shop/db -> 198.51.100.1 443/TCP allow  # E4 egress to external",
            "shop/db -> web/ui 443/TCP allow  # E4 egress to a pod",
            "shop/db -> 198.51.100.1 80/TCP deny  # E4 egress other port",
        ],
    );
}

#[test]
fn e5_port_without_number_means_every_port_of_its_protocol() {
    let tcp_only = base()
        .policy(
            policy("shop", "p")
                .select(sel(&[("app", "db")]))
                .ingress(rule().port(any_port(Tcp))),
        )
        .engine();
    let no_ports = base()
        .policy(
            policy("shop", "p")
                .select(sel(&[("app", "db")]))
                .ingress(rule().peer(nss(all()))),
        )
        .engine();
    check(
        &tcp_only,
        &[
            "web/ui -> shop/db 1/TCP allow  # E5 [{protocol: TCP}] port 1",
            "web/ui -> shop/db 65535/TCP allow  # E5 [{protocol: TCP}] port 65535",
            "web/ui -> shop/db 53/UDP deny  # E5 [{protocol: TCP}] not UDP",
            "web/ui -> shop/db 5432/SCTP deny  # E5 [{protocol: TCP}] not SCTP",
        ],
    );
    check(
        &no_ports,
        &[
            "web/ui -> shop/db 5432/TCP allow  # E5 no ports: TCP",
            "web/ui -> shop/db 53/UDP allow  # E5 no ports: UDP",
            "web/ui -> shop/db 7/SCTP allow  # E5 no ports: SCTP",
        ],
    );
    let v = eval(&tcp_only, "web/ui", "shop/db", 53, Udp);
    assert_eq!(v.reason, Some(Reason::PortNotAllowed));
    let text = render(&tcp_only, "web/ui", "shop/db", 53, Udp);
    assert!(
        text.contains("port 53/UDP is not in [any TCP port]"),
        "{text}"
    );
}

#[test]
fn e6_invalid_peer_matches_nothing() {
    let p = policy("shop", "p")
        .select(sel(&[("app", "db")]))
        .ingress(rule().peer(invalid_peer("must specify a peer")));
    let engine = base().policy(p).engine();
    for from in ["shop/api", "web/ui", "203.0.113.7", "ops/agent-2"] {
        let v = eval(&engine, from, "shop/db", 5432, Tcp);
        assert!(!v.allowed, "E6 {from}");
        assert_eq!(v.reason, Some(Reason::InvalidRule), "E6 {from}");
    }
    assert_eq!(Reason::InvalidRule.as_str(), "invalid_rule");
    let text = render(&engine, "shop/api", "shop/db", 5432, Tcp);
    assert!(text.contains("invalid (must specify a peer)"), "{text}");

    // An invalid peer next to a valid one: the valid one still works, the invalid one adds nothing.
    let p = policy("shop", "p").select(sel(&[("app", "db")])).ingress(
        rule()
            .peer(invalid_peer(
                "may not specify both ipBlock and another peer",
            ))
            .peer(pods(sel(&[("app", "api")]))),
    );
    let engine = base().policy(p).engine();
    check(
        &engine,
        &[
            "shop/api -> shop/db 5432/TCP allow  # E6 valid sibling peer allows",
            "shop/cache -> shop/db 5432/TCP deny  # E6 invalid peer adds nothing",
        ],
    );
    // The closest peer miss is the valid one, not the invalid one.
    assert_eq!(
        eval(&engine, "shop/cache", "shop/db", 5432, Tcp).reason,
        Some(Reason::PodSelectorMismatch)
    );
}

// === Peers and selectors ===

#[test]
fn e7_pod_selector_alone_is_scoped_to_the_policy_namespace() {
    let any_in_ns = base()
        .policy(
            policy("shop", "p")
                .select(sel(&[("app", "db")]))
                .ingress(rule().peer(pods(all()))),
        )
        .engine();
    let api_only = base()
        .policy(
            policy("shop", "p")
                .select(sel(&[("app", "db")]))
                .ingress(rule().peer(pods(sel(&[("app", "api")])))),
        )
        .engine();
    // A pod labelled app=api in another namespace must not match.
    let impostor = base()
        .pod(pod("web", "api", &[("app", "api")], "10.0.2.9", "n2"))
        .policy(
            policy("shop", "p")
                .select(sel(&[("app", "db")]))
                .ingress(rule().peer(pods(sel(&[("app", "api")])))),
        )
        .engine();
    check(
        &any_in_ns,
        &[
            "shop/cache -> shop/db 5432/TCP allow  # E7 podSelector {} same namespace",
            "web/ui -> shop/db 5432/TCP deny  # E7 podSelector {} other namespace",
            "203.0.113.7 -> shop/db 5432/TCP deny  # E7 podSelector {} external",
        ],
    );
    check(
        &api_only,
        &[
            "shop/api -> shop/db 5432/TCP allow  # E7 matching pod",
            "shop/cache -> shop/db 5432/TCP deny  # E7 non-matching pod",
        ],
    );
    check(
        &impostor,
        &["web/api -> shop/db 5432/TCP deny  # E7 same labels, other namespace"],
    );
    assert_eq!(
        eval(&any_in_ns, "web/ui", "shop/db", 5432, Tcp).reason,
        Some(Reason::NamespaceSelectorMismatch)
    );
    assert_eq!(
        eval(&api_only, "shop/cache", "shop/db", 5432, Tcp).reason,
        Some(Reason::PodSelectorMismatch)
    );
    let v = eval(&impostor, "web/api", "shop/db", 5432, Tcp);
    let (_, miss) = v.closest_rule().unwrap();
    assert!(
        matches!(&miss.peer, Some(PeerMiss::PolicyNamespaceOnly { policy_namespace, namespace, .. }) if policy_namespace == "shop" && namespace == "web"),
        "{miss:?}"
    );
    let text = render(&api_only, "shop/cache", "shop/db", 5432, Tcp);
    assert!(
        text.contains(
            "podSelector {app: api} does not match pod shop/cache {app: cache} (unmet: app: api)"
        ),
        "{text}"
    );
}

#[test]
fn e8_namespace_selector_alone_selects_every_pod_of_those_namespaces() {
    let frontend = base()
        .policy(
            policy("shop", "p")
                .select(sel(&[("app", "db")]))
                .ingress(rule().peer(nss(sel(&[("team", "frontend")])))),
        )
        .engine();
    let every_ns = base()
        .policy(
            policy("shop", "p")
                .select(sel(&[("app", "db")]))
                .ingress(rule().peer(nss(all()))),
        )
        .engine();
    check(
        &frontend,
        &[
            "web/ui -> shop/db 5432/TCP allow  # E8 selected namespace, any pod",
            "web/client -> shop/db 5432/TCP allow  # E8 selected namespace, another pod",
            "ops/probe -> shop/db 5432/TCP deny  # E8 unselected namespace",
            "shop/api -> shop/db 5432/TCP deny  # E8 not even the policy namespace",
        ],
    );
    check(
        &every_ns,
        &[
            "ops/probe -> shop/db 5432/TCP allow  # E8 {} selects all namespaces",
            "shop/api -> shop/db 5432/TCP allow  # E8 {} includes the own namespace",
            "203.0.113.7 -> shop/db 5432/TCP deny  # E8 {} excludes external IPs",
            "192.168.0.3 -> shop/db 5432/TCP deny  # E8 {} excludes other nodes",
            "ops/agent-2 -> shop/db 5432/TCP deny  # E8 {} excludes hostNetwork pods",
        ],
    );
    assert_eq!(
        eval(&frontend, "ops/probe", "shop/db", 5432, Tcp).reason,
        Some(Reason::NamespaceSelectorMismatch)
    );
    // A selector peer against something that is not a pod is reported as a pod-selector miss.
    let v = eval(&every_ns, "203.0.113.7", "shop/db", 5432, Tcp);
    assert_eq!(v.reason, Some(Reason::PodSelectorMismatch));
    assert!(matches!(
        v.closest_rule().unwrap().1.peer,
        Some(PeerMiss::NotAPod { .. })
    ));
}

#[test]
fn e9_selectors_in_one_peer_are_and_in_separate_peers_or() {
    let and = base()
        .policy(
            policy("shop", "p")
                .select(sel(&[("app", "db")]))
                .ingress(rule().peer(pods_in(
                    sel(&[("team", "frontend")]),
                    sel(&[("role", "client")]),
                ))),
        )
        .engine();
    let or = base()
        .policy(
            policy("shop", "p").select(sel(&[("app", "db")])).ingress(
                rule()
                    .peer(nss(sel(&[("team", "frontend")])))
                    .peer(pods(sel(&[("role", "client")]))),
            ),
        )
        .engine();
    check(
        &and,
        &[
            "web/client -> shop/db 5432/TCP allow  # E9 AND: both match",
            "web/ui -> shop/db 5432/TCP deny  # E9 AND: namespace only",
            "shop/client -> shop/db 5432/TCP deny  # E9 AND: pod labels only",
        ],
    );
    check(
        &or,
        &[
            "web/client -> shop/db 5432/TCP allow  # E9 OR: both match",
            "web/ui -> shop/db 5432/TCP allow  # E9 OR: namespace peer",
            "shop/client -> shop/db 5432/TCP allow  # E9 OR: pod peer in the policy namespace",
            "ops/probe -> shop/db 5432/TCP deny  # E9 OR: neither",
        ],
    );
    assert_eq!(
        eval(&and, "web/ui", "shop/db", 5432, Tcp).reason,
        Some(Reason::PodSelectorMismatch)
    );
    assert_eq!(
        eval(&and, "shop/client", "shop/db", 5432, Tcp).reason,
        Some(Reason::NamespaceSelectorMismatch)
    );
    // The explanation renders the difference between one AND peer and two OR peers.
    let both =
        "peer #0 requires BOTH namespaceSelector {team: frontend} AND podSelector {role: client}";
    let text = render(&and, "shop/client", "shop/db", 5432, Tcp);
    assert!(
        text.contains(&format!(
            "{both}: namespaceSelector {{team: frontend}} does not match namespace shop {{"
        )),
        "{text}"
    );
    let text = render(&and, "web/ui", "shop/db", 5432, Tcp);
    assert!(
        text.contains(&format!(
            "{both}: podSelector {{role: client}} does not match pod web/ui {{app: ui}}"
        )),
        "{text}"
    );
    let text = render(&or, "ops/probe", "shop/db", 5432, Tcp);
    assert!(!text.contains("BOTH"), "{text}");
    assert!(
        text.contains("peer #0: namespaceSelector {team: frontend} does not match namespace ops {"),
        "{text}"
    );
}

#[test]
fn e10_namespace_name_label_for_a_namespace_that_was_not_loaded() {
    // "payments" has pods but no Namespace object (an offline file).
    let world = base()
        .pod(pod(
            "payments",
            "worker",
            &[("app", "worker")],
            "10.0.4.1",
            "n2",
        ))
        .policy(
            policy("shop", "p")
                .select(sel(&[("app", "db")]))
                .ingress(rule().peer(nss(sel(&[(NAMESPACE_NAME_LABEL, "payments")])))),
        );
    assert_eq!(
        world.index.namespace_labels("payments"),
        labels(&[(NAMESPACE_NAME_LABEL, "payments")]),
        "E10 the control-plane label is injected"
    );
    let engine = world.engine();
    check(
        &engine,
        &[
            "payments/worker -> shop/db 5432/TCP allow  # E10 by name, unloaded namespace",
            "web/ui -> shop/db 5432/TCP deny  # E10 by name, other namespace",
        ],
    );
    let text = render(&engine, "web/ui", "shop/db", 5432, Tcp);
    assert!(text.contains("namespaceSelector {kubernetes.io/metadata.name: payments} does not match namespace web {"), "{text}");
}

#[test]
fn e11_match_labels_and_expressions_are_anded_and_empty_values_need_the_key() {
    let world = base()
        .pod(pod(
            "shop",
            "blank",
            &[("app", ""), ("tier", "data")],
            "10.0.1.20",
            "n2",
        ))
        .pod(pod("shop", "nolabels", &[], "10.0.1.21", "n2"));
    let anded = {
        let mut s = LabelSelector {
            match_labels: Some(labels(&[("app", "api")])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "In".into(),
                values: Some(vec!["backend".into()]),
            }]),
        };
        let both = Selector::try_from(&s).unwrap();
        s.match_expressions.as_mut().unwrap()[0].values = Some(vec!["data".into()]);
        (both, Selector::try_from(&s).unwrap())
    };
    let cases: &[(&str, Selector, &str, bool)] = &[
        (
            "E11 matchLabels AND expressions: both hold",
            anded.0.clone(),
            "shop/api",
            true,
        ),
        (
            "E11 matchLabels AND expressions: expression fails",
            anded.1.clone(),
            "shop/api",
            false,
        ),
        (
            "E11 empty value needs the key",
            sel(&[("app", "")]),
            "shop/nolabels",
            false,
        ),
        (
            "E11 empty value matches the empty value",
            sel(&[("app", "")]),
            "shop/blank",
            true,
        ),
        (
            "E11 empty value does not match a value",
            sel(&[("app", "")]),
            "shop/api",
            false,
        ),
        (
            "E11 empty selector matches a pod without labels",
            all(),
            "shop/nolabels",
            true,
        ),
    ];
    for (name, selector, from, want) in cases {
        let engine = world.clone_with(
            policy("shop", "p")
                .select(sel(&[("app", "db")]))
                .ingress(rule().peer(pods(selector.clone()))),
        );
        assert_eq!(
            eval(&engine, from, "shop/db", 5432, Tcp).allowed,
            *want,
            "{name}"
        );
    }
}

#[test]
fn e12_notin_and_doesnotexist_match_a_missing_key() {
    let world = base().pod(pod(
        "shop",
        "front",
        &[("tier", "frontend")],
        "10.0.1.30",
        "n2",
    ));
    // Peer selectors: shop/cache has no `tier` label.
    let cases: &[(&str, Selector, &str, bool)] = &[
        (
            "e12_notin_matches_missing_key",
            expr("tier", "NotIn", &["frontend"]),
            "shop/cache",
            true,
        ),
        (
            "E12 NotIn other value",
            expr("tier", "NotIn", &["frontend"]),
            "shop/api",
            true,
        ),
        (
            "E12 NotIn listed value",
            expr("tier", "NotIn", &["frontend"]),
            "shop/front",
            false,
        ),
        (
            "e12_doesnotexist_matches_missing_key",
            expr("tier", "DoesNotExist", &[]),
            "shop/cache",
            true,
        ),
        (
            "E12 DoesNotExist with the key",
            expr("tier", "DoesNotExist", &[]),
            "shop/api",
            false,
        ),
        (
            "E12 In missing key",
            expr("tier", "In", &["backend"]),
            "shop/cache",
            false,
        ),
        (
            "E12 In listed value",
            expr("tier", "In", &["backend", "frontend"]),
            "shop/api",
            true,
        ),
        (
            "E12 Exists missing key",
            expr("tier", "Exists", &[]),
            "shop/cache",
            false,
        ),
        (
            "E12 Exists with the key",
            expr("tier", "Exists", &[]),
            "shop/front",
            true,
        ),
    ];
    for (name, selector, from, want) in cases {
        let engine = world.clone_with(
            policy("shop", "p")
                .select(sel(&[("app", "db")]))
                .ingress(rule().peer(pods(selector.clone()))),
        );
        let v = eval(&engine, from, "shop/db", 5432, Tcp);
        assert_eq!(v.allowed, *want, "{name}");
        if !want {
            assert_eq!(v.reason, Some(Reason::PodSelectorMismatch), "{name}");
        }
    }
    // As a subject selector: NotIn selects pods lacking the key too.
    let engine = world
        .policy(
            policy("shop", "p")
                .select(expr("tier", "NotIn", &["data"]))
                .deny_ingress(),
        )
        .engine();
    let subject = |name: &str| {
        !engine
            .policies_selecting(engine.pod_id(&name.parse().unwrap()).unwrap())
            .0
            .is_empty()
    };
    assert!(subject("shop/cache"), "E12 NotIn subject without the key");
    assert!(subject("shop/api"), "E12 NotIn subject with another value");
    assert!(
        !subject("shop/db"),
        "E12 NotIn subject with the listed value"
    );
    let text = render(&engine, "web/ui", "shop/api", 8080, Tcp);
    assert!(text.contains("DENIED"), "{text}");
}

#[test]
fn e13_invalid_selectors_and_ports_never_allow() {
    // The converter turns a selector that fails `LabelSelectorAsSelector` into `Peer::Invalid`
    // and an invalid port entry into `PolicyPort::Invalid`; the engine fails closed.
    let invalid_peer_rule = rule().peer(invalid_peer(
        "namespaceSelector.matchExpressions[0].operator: \"Matches\" is not valid",
    ));
    let invalid_port_rule = rule().port(invalid_port("endPort 80 < port 90"));
    let both_invalid = rule()
        .peer(invalid_peer("bad selector"))
        .port(invalid_port("bad port"));
    let mixed_ports = rule().port(invalid_port("bad port")).port(tcp(5432));
    let cases: &[(&str, Rule, u16, bool, Option<Reason>)] = &[
        (
            "E13 invalid peer",
            invalid_peer_rule,
            5432,
            false,
            Some(Reason::InvalidRule),
        ),
        (
            "E13 invalid port",
            invalid_port_rule.clone(),
            5432,
            false,
            Some(Reason::InvalidRule),
        ),
        (
            "E13 invalid port, another port",
            invalid_port_rule,
            90,
            false,
            Some(Reason::InvalidRule),
        ),
        (
            "E13 both invalid",
            both_invalid,
            5432,
            false,
            Some(Reason::InvalidRule),
        ),
        (
            "E13 valid port beside an invalid one",
            mixed_ports.clone(),
            5432,
            true,
            None,
        ),
        (
            "E13 invalid port entry adds nothing",
            mixed_ports,
            90,
            false,
            Some(Reason::PortNotAllowed),
        ),
    ];
    for (name, r, port, want, reason) in cases {
        // The policy still isolates its pods: an invalid rule is not an invalid policy.
        let engine = base()
            .policy(
                policy("shop", "p")
                    .select(sel(&[("app", "db")]))
                    .ingress(r.clone()),
            )
            .engine();
        for from in ["shop/api", "web/ui", "203.0.113.7"] {
            let v = eval(&engine, from, "shop/db", *port, Tcp);
            assert_eq!(v.allowed, *want, "{name} from {from}");
            assert_eq!(v.reason, *reason, "{name} from {from}");
        }
    }
    // Invalid rules in egress too.
    let engine = base()
        .policy(
            policy("shop", "p")
                .select(sel(&[("app", "db")]))
                .egress(rule().peer(invalid_peer("bad"))),
        )
        .engine();
    let v = eval(&engine, "shop/db", "198.51.100.1", 443, Tcp);
    assert_eq!(
        (v.allowed, v.direction, v.reason),
        (false, Some(Direction::Egress), Some(Reason::InvalidRule))
    );
    let text = render(&engine, "shop/db", "198.51.100.1", 443, Tcp);
    assert!(
        text.contains("its peers are invalid (bad) and match nothing"),
        "{text}"
    );
}

// === Ports and protocols ===

#[test]
fn e14_protocols_are_distinct_and_default_tcp_is_not_udp() {
    let tcp53 = base()
        .policy(
            policy("shop", "p")
                .select(sel(&[("app", "api")]))
                .ingress(rule().port(tcp(53))),
        )
        .engine();
    let udp53 = base()
        .policy(
            policy("shop", "p")
                .select(sel(&[("app", "api")]))
                .ingress(rule().port(port(Udp, 53))),
        )
        .engine();
    check(
        &tcp53,
        &[
            "web/ui -> shop/api 53/TCP allow  # E14 TCP rule, TCP flow",
            "web/ui -> shop/api 53/UDP deny:port_not_allowed  # E14 TCP rule, UDP flow",
            "web/ui -> shop/api 53/SCTP deny:port_not_allowed  # E14 TCP rule, SCTP flow",
        ],
    );
    check(
        &udp53,
        &[
            "web/ui -> shop/api 53/UDP allow  # E14 UDP rule, UDP flow",
            "web/ui -> shop/api 53/TCP deny:port_not_allowed  # E14 UDP rule, TCP flow",
        ],
    );
    let text = render(&tcp53, "web/ui", "shop/api", 53, Udp);
    assert!(text.contains("port 53/UDP is not in [53/TCP]"), "{text}");
}

#[test]
fn e15_sctp_only_policy_isolates_and_sctp_is_not_tcp() {
    let engine = base()
        .policy(
            policy("shop", "p")
                .select(sel(&[("app", "db")]))
                .ingress(rule().port(port(Sctp, 5432))),
        )
        .engine();
    check(
        &engine,
        &[
            "web/ui -> shop/db 5432/SCTP allow  # E15 SCTP allowed",
            "web/ui -> shop/db 5432/TCP deny  # E15 TCP on the same number denied",
            "web/ui -> shop/db 5432/UDP deny  # E15 UDP on the same number denied",
        ],
    );
    // The upstream profile enforces SCTP: no implementation-defined note.
    assert!(
        eval(&engine, "web/ui", "shop/db", 5432, Sctp)
            .notes
            .is_empty()
    );
}

#[test]
fn e16_end_port_range_is_inclusive_and_a_profile_switch() {
    let world = base().policy(
        policy("shop", "p")
            .select(sel(&[("app", "db")]))
            .ingress(rule().port(range(Tcp, 8000, 8010))),
    );
    let upstream = world.engine();
    let no_end_port = world.engine_with(Profile::NO_END_PORT);
    check(
        &upstream,
        &[
            "web/ui -> shop/db 7999/TCP deny  # E16 below",
            "web/ui -> shop/db 8000/TCP allow  # E16 first",
            "web/ui -> shop/db 8005/TCP allow  # E16 inside",
            "web/ui -> shop/db 8010/TCP allow  # E16 last (inclusive)",
            "web/ui -> shop/db 8011/TCP deny  # E16 above",
        ],
    );
    check(
        &no_end_port,
        &[
            "web/ui -> shop/db 8000/TCP allow  # E16 no-endport: first port only",
            "web/ui -> shop/db 8005/TCP deny  # E16 no-endport: inside denied",
            "web/ui -> shop/db 8010/TCP deny  # E16 no-endport: last denied",
        ],
    );
    // Range on another protocol does not match.
    assert!(
        !eval(&upstream, "web/ui", "shop/db", 8005, Udp).allowed,
        "E16 range is per protocol"
    );

    // The no-endport denial says it is implementation-defined.
    let v = eval(&no_end_port, "web/ui", "shop/db", 8005, Tcp);
    assert_eq!(v.reason, Some(Reason::PortNotAllowed));
    let (_, miss) = v.closest_rule().unwrap();
    match &miss.port {
        Some(PortMiss::NotListed { wanted, notes, .. }) => {
            assert_eq!(wanted, &["8000-8010/TCP"]);
            assert!(
                notes
                    .iter()
                    .any(|n| n.contains("implementation-defined") && n.contains("no-endport")),
                "{notes:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    let text = render(&no_end_port, "web/ui", "shop/db", 8005, Tcp);
    assert!(text.contains("implementation-defined"), "{text}");
    // Outside the range there is nothing implementation-defined about it.
    let v = eval(&no_end_port, "web/ui", "shop/db", 8011, Tcp);
    match &v.closest_rule().unwrap().1.port {
        Some(PortMiss::NotListed { notes, .. }) => assert!(notes.is_empty(), "{notes:?}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn e17_named_port_resolves_on_the_destination_for_ingress() {
    // One policy over the whole namespace: "http" is 8080 on api and 6379 on cache.
    let engine = base()
        .policy(
            policy("shop", "p")
                .select(all())
                .ingress(rule().port(named("http", Tcp))),
        )
        .engine();
    check(
        &engine,
        &[
            "web/ui -> shop/api 8080/TCP allow  # E17 api http = 8080",
            "web/ui -> shop/api 6379/TCP deny  # E17 api: 6379 is not its http",
            "web/ui -> shop/cache 6379/TCP allow  # E17 cache http = 6379",
            "web/ui -> shop/cache 8080/TCP deny  # E17 cache: 8080 is not its http",
            "web/ui -> shop/api 80/TCP deny  # E17 not resolved on the source (ui http = 80)",
            "web/ui -> shop/db 5432/TCP deny  # E17 db declares no http",
        ],
    );
    assert_eq!(
        eval(&engine, "web/ui", "shop/api", 6379, Tcp).reason,
        Some(Reason::PortNotAllowed)
    );
    let v = eval(&engine, "web/ui", "shop/db", 5432, Tcp);
    assert_eq!(v.reason, Some(Reason::NamedPortUnresolved));
    let (_, miss) = v.closest_rule().unwrap();
    assert_eq!(
        miss.port,
        Some(PortMiss::NamedPortUnresolved {
            name: "http".into(),
            protocol: Tcp,
            pod: Some("shop/db".parse().unwrap())
        })
    );
    let text = render(&engine, "web/ui", "shop/db", 5432, Tcp);
    assert!(
        text.contains("named port http/TCP is not declared by pod shop/db"),
        "{text}"
    );
    let text = render(&engine, "web/ui", "shop/api", 6379, Tcp);
    assert!(text.contains("http/TCP (= 8080)"), "{text}");
}

#[test]
fn e17_named_port_must_match_the_protocol() {
    // api declares dns as 53/UDP only.
    let tcp_rule = base()
        .policy(
            policy("shop", "p")
                .select(sel(&[("app", "api")]))
                .ingress(rule().port(named("dns", Tcp))),
        )
        .engine();
    let udp_rule = base()
        .policy(
            policy("shop", "p")
                .select(sel(&[("app", "api")]))
                .ingress(rule().port(named("dns", Udp))),
        )
        .engine();
    check(
        &udp_rule,
        &[
            "web/ui -> shop/api 53/UDP allow  # E17 dns/UDP rule, UDP flow",
            "web/ui -> shop/api 53/TCP deny:port_not_allowed  # E17 dns/UDP rule, TCP flow",
        ],
    );
    check(
        &tcp_rule,
        &[
            "web/ui -> shop/api 53/TCP deny:named_port_unresolved  # E17 dns/TCP rule, TCP flow: unresolved",
            "web/ui -> shop/api 53/UDP deny:port_not_allowed  # E17 dns/TCP rule, UDP flow",
        ],
    );
}

#[test]
fn e17_egress_named_port_resolves_on_the_destination_pod() {
    // web/client declares its own "http" (9999): egress must not resolve on the source.
    let any_dest = base()
        .policy(
            policy("web", "p")
                .select(sel(&[("app", "client")]))
                .egress(rule().port(named("http", Tcp))),
        )
        .engine();
    check(
        &any_dest,
        &[
            "web/client -> shop/api 8080/TCP allow  # E17 egress, empty to: api http",
            "web/client -> shop/cache 6379/TCP allow  # E17 egress, empty to: cache http",
            "web/client -> web/ui 80/TCP allow  # E17 egress, empty to: ui http",
            "web/client -> shop/api 6379/TCP deny  # E17 egress: another pod's number",
            "web/client -> shop/api 9999/TCP deny  # E17 egress: the source's own number",
            "web/client -> shop/db 5432/TCP deny  # E17 egress: destination without the name",
            "web/client -> 198.51.100.1 8080/TCP deny  # E17 egress: external destination",
        ],
    );
    assert_eq!(
        eval(&any_dest, "web/client", "shop/db", 5432, Tcp).reason,
        Some(Reason::NamedPortUnresolved)
    );
    let v = eval(&any_dest, "web/client", "198.51.100.1", 8080, Tcp);
    assert_eq!(v.reason, Some(Reason::NamedPortUnresolved));
    let text = render(&any_dest, "web/client", "198.51.100.1", 8080, Tcp);
    assert!(
        text.contains("cannot resolve: the destination is not a pod"),
        "{text}"
    );

    // With a `to`: both the peer and the destination's named port must match.
    let to_shop = base()
        .policy(
            policy("web", "p").select(sel(&[("app", "client")])).egress(
                rule()
                    .peer(nss(sel(&[("team", "shop")])))
                    .port(named("http", Tcp)),
            ),
        )
        .engine();
    check(
        &to_shop,
        &[
            "web/client -> shop/cache 6379/TCP allow  # E17 egress with to: match",
            "web/client -> web/ui 80/TCP deny  # E17 egress with to: peer misses",
        ],
    );
}

// === Services ===

#[test]
fn e18_addresses_that_are_not_pods_or_nodes_are_external() {
    // A Service ClusterIP is not a pod: callers predict against endpoint pods; the engine
    // matches such an address only by ipBlock.
    let world = base().policy(
        policy("web", "p")
            .select(sel(&[("app", "client")]))
            .egress(rule().peer(nss(all()))),
    );
    let engine = world.clone_with(
        policy("web", "q")
            .select(sel(&[("app", "client")]))
            .egress(rule().peer(ip_block("10.96.0.0/12", &[]))),
    );
    let selectors_only = world.engine();
    let v = eval(&selectors_only, "web/client", "10.96.0.10", 80, Tcp);
    assert!(!v.allowed);
    assert_eq!(v.reason, Some(Reason::PodSelectorMismatch));
    assert!(
        matches!(&v.ingress, DirectionVerdict::NotApplicable { why } if why.contains("not a pod")),
        "{:?}",
        v.ingress
    );
    check(
        &engine,
        &[
            "web/client -> 10.96.0.10 80/TCP allow  # E18 Service range by ipBlock",
            "web/client -> shop/api 8080/TCP allow  # E18 endpoint pod by selector",
        ],
    );
}

// === ipBlock ===

#[test]
fn e19_ip_block_except_and_pod_ips_per_profile() {
    let world = base().policy(
        policy("web", "p")
            .select(sel(&[("app", "client")]))
            .egress(rule().peer(ip_block("10.0.0.0/16", &["10.0.1.0/24"])))
            // Interface-address form: host bits are masked (E19 sloppy parsing).
            .egress(rule().peer(ip_block("203.0.113.77/24", &[]))),
    );
    let upstream = world.engine();
    let external_only = world.engine_with(Profile::IPBLOCK_EXTERNAL_ONLY);
    check(
        &upstream,
        &[
            "web/client -> web/ui 80/TCP allow  # E19 pod IP in the block (upstream)",
            "web/client -> shop/db 80/TCP deny:ip_block_mismatch  # E19 pod IP in except (upstream)",
            "web/client -> 10.0.9.9 80/TCP allow  # E19 external in the block",
            "web/client -> 10.0.1.200 80/TCP deny:ip_block_mismatch  # E19 external in except",
            "web/client -> 10.1.0.1 80/TCP deny:ip_block_mismatch  # E19 outside the block",
            "web/client -> 203.0.113.5 80/TCP allow  # E19 masked interface-address CIDR",
            "web/client -> fd00::1 80/TCP deny:ip_block_mismatch  # E19 IPv6 never matches an IPv4 block",
        ],
    );
    check(
        &external_only,
        &[
            "web/client -> web/ui 80/TCP deny:ip_block_mismatch  # E19 pod IP in the block (external-only)",
            "web/client -> 10.0.9.9 80/TCP allow  # E19 external in the block (external-only)",
            "web/client -> 10.0.1.200 80/TCP deny:ip_block_mismatch  # E19 external in except (external-only)",
        ],
    );
    // Except excludes, and the explanation says so.
    let v = eval(&upstream, "web/client", "shop/db", 80, Tcp);
    match &v.closest_rule().unwrap().1.peer {
        Some(PeerMiss::IpBlock {
            excepted,
            ip,
            blocks,
            ..
        }) => {
            assert!(*excepted);
            assert_eq!(ip, "10.0.1.1");
            assert_eq!(blocks, &["10.0.0.0/16 except 10.0.1.0/24"]);
        }
        other => panic!("{other:?}"),
    }
    let text = render(&upstream, "web/client", "shop/db", 80, Tcp);
    assert!(
        text.contains("10.0.1.1 is in an except range of ipBlock 10.0.0.0/16 except 10.0.1.0/24"),
        "{text}"
    );
    // Matching a pod IP is implementation-defined in both directions of the answer.
    let v = eval(&upstream, "web/client", "web/ui", 80, Tcp);
    assert!(
        v.notes
            .iter()
            .any(|n| n.contains("implementation-defined") && n.contains("10.0.2.1")),
        "{:?}",
        v.notes
    );
    let text = render(&external_only, "web/client", "web/ui", 80, Tcp);
    assert!(
        text.contains("implementation-defined") && text.contains("ipblock-external-only"),
        "{text}"
    );

    // Ingress from a pod by ipBlock follows the same switch.
    let world = base().policy(
        policy("shop", "p")
            .select(sel(&[("app", "db")]))
            .ingress(rule().peer(ip_block("10.0.2.0/24", &[]))),
    );
    assert!(
        eval(&world.engine(), "web/ui", "shop/db", 5432, Tcp).allowed,
        "E19 ingress from a pod IP (upstream)"
    );
    assert!(
        !eval(
            &world.engine_with(Profile::IPBLOCK_EXTERNAL_ONLY),
            "web/ui",
            "shop/db",
            5432,
            Tcp
        )
        .allowed,
        "E19 ingress from a pod IP (external-only)"
    );
}

#[test]
fn e19_ipv6_blocks_match_ipv6_addresses() {
    let world = World::default()
        .ns(ns("v6", &[]))
        .pod(pod("v6", "a", &[("app", "a")], "fd00:1::1", "n1"))
        .pod(pod("v6", "b", &[("app", "b")], "fd00:1::2", "n1"))
        .policy(
            policy("v6", "p")
                .select(sel(&[("app", "a")]))
                .egress(rule().peer(ip_block("fd00:1::/64", &["fd00:1::2/128"]))),
        );
    let engine = world.engine();
    check(
        &engine,
        &[
            "v6/a -> fd00:1::99 80/TCP allow  # E19 IPv6 external in block",
            "v6/a -> v6/b 80/TCP deny  # E19 IPv6 pod in except",
            "v6/a -> fd00:2::1 80/TCP deny  # E19 IPv6 outside",
            "v6/a -> 10.0.0.1 80/TCP deny  # E19 IPv4 address vs IPv6 block",
        ],
    );
}

#[test]
fn e19_dual_stack_uses_the_address_family_of_the_flow() {
    // a and c are dual-stack; b is IPv6-only, so a <-> b can only be IPv6.
    let world = World::default()
        .ns(ns("ds", &[]))
        .pod(pod("ds", "a", &[("app", "a")], "10.0.0.1,fd00::1", "n1"))
        .pod(pod("ds", "b", &[("app", "b")], "fd00::2", "n1"))
        .pod(pod("ds", "c", &[("app", "c")], "10.0.0.3,fd00::3", "n1"));
    let v4_block = world.clone_with(
        policy("ds", "p")
            .select(all())
            .ingress(rule().peer(ip_block("10.0.0.0/8", &[]))),
    );
    let v6_block = world.clone_with(
        policy("ds", "p")
            .select(all())
            .ingress(rule().peer(ip_block("fd00::/64", &[]))),
    );
    check(
        &v4_block,
        &["ds/a -> ds/b 80/TCP deny  # E19 v6-only destination: the source's IPv6 address counts"],
    );
    check(
        &v6_block,
        &[
            "ds/a -> ds/b 80/TCP allow  # E19 v6-only destination, IPv6 block",
            "ds/b -> ds/a 80/TCP allow  # E19 v6-only source, IPv6 block",
        ],
    );
    check(
        &v4_block,
        &[
            "ds/b -> ds/a 80/TCP deny  # E19 v6-only source, IPv4 block",
            "ds/a -> ds/c 80/TCP allow  # E19 dual-stack pair, IPv4 block",
        ],
    );
    let v = eval(&v4_block, "ds/a", "ds/b", 80, Tcp);
    match &v.closest_rule().unwrap().1.peer {
        Some(PeerMiss::IpBlock { ip, .. }) => assert_eq!(ip, "fd00::1"),
        other => panic!("{other:?}"),
    }
}

// === Special traffic ===

#[test]
fn e20_traffic_to_self_is_allowed_even_when_rules_deny() {
    let engine = base()
        .policy(
            policy("shop", "deny-all")
                .select(all())
                .deny_ingress()
                .deny_egress(),
        )
        .engine();
    for (from, to) in [
        ("shop/db", "shop/db"),
        ("10.0.1.1", "shop/db"),
        ("shop/db", "10.0.1.1"),
    ] {
        let v = eval(&engine, from, to, 5432, Tcp);
        assert!(
            v.allowed && v.self_traffic && !v.rules_allowed,
            "E20 {from} -> {to}: {v:?}"
        );
        assert_eq!(v.reason, Some(Reason::DefaultDeny));
    }
    let text = render(&engine, "shop/db", "shop/db", 5432, Tcp);
    assert!(
        text.contains("ALLOWED (self") && text.contains("the rules alone would deny it"),
        "{text}"
    );
    assert!(
        explain::summary(
            &flow("shop/db", "shop/db", 5432, Tcp),
            &eval(&engine, "shop/db", "shop/db", 5432, Tcp)
        )
        .contains("traffic to itself")
    );
    // Another pod in the same namespace is not self.
    let v = eval(&engine, "shop/api", "shop/db", 5432, Tcp);
    assert!(!v.allowed && !v.self_traffic);
    // Not isolated: self traffic is allowed by the rules too.
    let v = eval(&base().engine(), "shop/db", "shop/db", 5432, Tcp);
    assert!(v.allowed && v.self_traffic && v.rules_allowed);
}

#[test]
fn e21_traffic_with_the_own_node_is_always_allowed() {
    // shop/db runs on n1 (192.168.0.1); ops/agent-1 is hostNetwork on n1, agent-2 on n2.
    let engine = base()
        .policy(
            policy("shop", "deny-all")
                .select(all())
                .deny_ingress()
                .deny_egress(),
        )
        .engine();
    check(
        &engine,
        &[
            "192.168.0.1 -> shop/db 5432/TCP allow  # E21 own node IP -> pod",
            "ops/agent-1 -> shop/db 5432/TCP allow  # E21 hostNetwork pod on the same node -> pod",
            "192.168.0.2 -> shop/db 5432/TCP deny  # E21 other node IP -> pod",
            "ops/agent-2 -> shop/db 5432/TCP deny  # E21 hostNetwork pod on another node -> pod",
            "web/client -> shop/db 5432/TCP deny  # E21 pod on the same node is not the node",
            "shop/db -> 192.168.0.1 10250/TCP allow  # E21 pod -> own node",
            "shop/db -> ops/agent-1 10250/TCP allow  # E21 pod -> hostNetwork pod on own node",
            "shop/db -> 192.168.0.2 10250/TCP deny  # E21 pod -> other node",
        ],
    );
    assert_eq!(
        eval(&engine, "192.168.0.1", "shop/db", 5432, Tcp).ingress,
        DirectionVerdict::NodeLocal
    );
    assert_eq!(
        eval(&engine, "shop/db", "192.168.0.1", 10250, Tcp).egress,
        DirectionVerdict::NodeLocal
    );
    let text = render(&engine, "192.168.0.1", "shop/db", 5432, Tcp);
    assert!(text.contains("its own node is always allowed"), "{text}");
    // Another node's address is an ordinary IP: only an ipBlock admits it.
    let engine = base()
        .policy(
            policy("shop", "p")
                .select(sel(&[("app", "db")]))
                .ingress(rule().peer(ip_block("192.168.0.2/32", &[]))),
        )
        .engine();
    check(
        &engine,
        &[
            "192.168.0.2 -> shop/db 5432/TCP allow  # E21 other node by ipBlock",
            "ops/agent-2 -> shop/db 5432/TCP allow  # E21 hostNetwork pod on the other node by ipBlock",
            "192.168.0.3 -> shop/db 5432/TCP deny  # E21 third node not in the block",
        ],
    );
}

#[test]
fn e21_host_network_pod_address_without_a_node_object_is_node_local() {
    // Offline files often hold no Node objects: a hostNetwork pod's address is still its node's.
    let world = World::default()
        .ns(ns("shop", &[]))
        .ns(ns("ops", &[]))
        .pod(pod("shop", "db", &[("app", "db")], "10.0.1.1", "n1"))
        .pod(pod("ops", "agent-1", &[], "192.168.0.1", "n1").host_network())
        .pod(pod("ops", "agent-2", &[], "192.168.0.2", "n2").host_network())
        .policy(policy("shop", "deny").select(all()).deny_ingress());
    let engine = world.engine();
    check(
        &engine,
        &[
            "192.168.0.1 -> shop/db 5432/TCP allow  # E21 same-node hostNetwork address",
            "192.168.0.2 -> shop/db 5432/TCP deny  # E21 other-node hostNetwork address",
        ],
    );
}

#[test]
fn e22_host_network_pods_are_neither_subjects_nor_selected() {
    let engine = base()
        .policy(
            policy("ops", "deny-all")
                .select(all())
                .deny_ingress()
                .deny_egress(),
        )
        .policy(
            policy("shop", "db")
                .select(sel(&[("app", "db")]))
                .ingress(rule().peer(nss(all())))
                .egress(rule().peer(pods_in(all(), all()))),
        )
        .engine();
    let agent = engine.pod_id(&"ops/agent-2".parse().unwrap()).unwrap();
    assert_eq!(
        engine.policies_selecting(agent),
        (vec![], vec![]),
        "E22 not a subject"
    );
    let probe = engine.pod_id(&"ops/probe".parse().unwrap()).unwrap();
    assert_eq!(
        engine.policies_selecting(probe),
        (keys(&["ops/deny-all"]), keys(&["ops/deny-all"]))
    );
    check(
        &engine,
        &[
            "web/ui -> ops/agent-2 10250/TCP allow  # E22 into a hostNetwork pod: not isolated",
            "ops/agent-2 -> web/ui 80/TCP allow  # E22 from a hostNetwork pod: not isolated",
            "web/ui -> ops/probe 80/TCP deny  # E22 ordinary pod in the same namespace is isolated",
            "ops/agent-2 -> shop/db 5432/TCP deny  # E22 namespaceSelector {} does not select hostNetwork pods",
            "web/ui -> shop/db 5432/TCP allow  # E22 ... but selects ordinary pods",
            "shop/db -> ops/agent-2 10250/TCP deny  # E22 egress peer selectors skip hostNetwork pods",
        ],
    );
    let v = eval(&engine, "web/ui", "ops/agent-2", 10250, Tcp);
    assert!(
        matches!(&v.ingress, DirectionVerdict::NotApplicable { why } if why.contains("host network")),
        "{:?}",
        v.ingress
    );
    let v = eval(&engine, "ops/agent-2", "shop/db", 5432, Tcp);
    assert_eq!(v.reason, Some(Reason::PodSelectorMismatch));
    let text = explain::render(&flow("ops/agent-2", "shop/db", 5432, Tcp), &v);
    assert!(
        text.contains("hostNetwork; implementation-defined"),
        "{text}"
    );
    // "You can allow traffic from a hostNetwork Pod using an ipBlock rule", in every profile.
    let world = base().policy(
        policy("shop", "db")
            .select(sel(&[("app", "db")]))
            .ingress(rule().peer(ip_block("192.168.0.0/24", &[]))),
    );
    for profile in Profile::ALL {
        assert!(
            eval(
                &world.engine_with(profile.clone()),
                "ops/agent-2",
                "shop/db",
                5432,
                Tcp
            )
            .allowed,
            "E22 ipBlock ({profile})"
        );
    }
}

#[test]
fn e22_named_ports_do_not_resolve_on_host_network_pods() {
    // agent-2 is hostNetwork on n2 and declares "http"; its traffic counts as its node's, and a
    // node has no named ports: naming it by pod or by address must give the same answer.
    let world = base()
        .pod(
            pod("ops", "agent-2", &[("app", "agent")], "192.168.0.2", "n2")
                .host_network()
                .with_port("http", 10250, Tcp),
        )
        .policy(
            policy("web", "p")
                .select(sel(&[("app", "client")]))
                .egress(rule().port(named("http", Tcp))),
        );
    let engine = world.engine();
    let by_pod = eval(&engine, "web/client", "ops/agent-2", 10250, Tcp);
    let by_ip = eval(&engine, "web/client", "192.168.0.2", 10250, Tcp);
    assert!(!by_pod.allowed && !by_ip.allowed, "E22 {by_pod:?}");
    assert_eq!(by_pod.reason, Some(Reason::NamedPortUnresolved));
    assert_eq!(by_ip.reason, by_pod.reason);
    // Ordinary pods still resolve it.
    check(
        &engine,
        &["web/client -> shop/api 8080/TCP allow  # E22 ordinary pod"],
    );
}

#[test]
fn e23_pods_without_an_ip_and_finished_pods_are_not_endpoints() {
    let world = base()
        .pod(pod("shop", "pending", &[("app", "api")], "", "").phase(PodPhase::Pending))
        .pod(pod("shop", "old", &[("app", "api")], "10.0.1.99", "n1").phase(PodPhase::Succeeded))
        .pod(pod("shop", "failed", &[("app", "api")], "10.0.1.98", "n1").phase(PodPhase::Failed))
        // A new pod that got the finished pod's IP, without its labels.
        .pod(pod("web", "reuser", &[("app", "other")], "10.0.1.99", "n2"))
        .policy(
            policy("shop", "p")
                .select(sel(&[("app", "db")]))
                .ingress(rule().peer(pods(sel(&[("app", "api")])))),
        );
    let engine = world.engine();
    let err = |from: &str, to: &str| engine.evaluate(&flow(from, to, 5432, Tcp)).unwrap_err();
    assert_eq!(
        err("shop/pending", "shop/db"),
        ResolveError::NotAnEndpoint("shop/pending".parse().unwrap(), "Pending".into())
    );
    assert_eq!(
        err("shop/db", "shop/pending"),
        ResolveError::NotAnEndpoint("shop/pending".parse().unwrap(), "Pending".into())
    );
    assert_eq!(
        err("shop/old", "shop/db"),
        ResolveError::NotAnEndpoint("shop/old".parse().unwrap(), "Succeeded".into())
    );
    assert_eq!(
        err("shop/nope", "shop/db"),
        ResolveError::UnknownPod("shop/nope".parse().unwrap())
    );

    // The reused address resolves to the live pod, not the finished one.
    let only_api = base()
        .pod(pod("shop", "old", &[("app", "api")], "10.0.1.99", "n1").phase(PodPhase::Succeeded))
        .pod(pod("web", "reuser", &[("app", "other")], "10.0.1.99", "n2"))
        .pod(pod("shop", "failed", &[("app", "api")], "10.0.1.98", "n1").phase(PodPhase::Failed))
        .policy(
            policy("shop", "p")
                .select(sel(&[("app", "db")]))
                .ingress(rule().peer(pods(sel(&[("app", "api")])))),
        )
        .engine();
    check(
        &only_api,
        &[
            "10.0.1.99 -> shop/db 5432/TCP deny  # E23 reused IP does not inherit labels",
            "10.0.1.2 -> shop/db 5432/TCP allow  # E23 the live api pod is allowed",
            "10.0.1.98 -> shop/db 5432/TCP deny  # E23 a finished pod's IP is just an address",
        ],
    );
    let v = eval(&only_api, "10.0.1.99", "shop/db", 5432, Tcp);
    assert_eq!(
        v.reason,
        Some(Reason::NamespaceSelectorMismatch),
        "E23 resolved to web/reuser"
    );
    let v = eval(&only_api, "10.0.1.98", "shop/db", 5432, Tcp);
    assert_eq!(
        v.reason,
        Some(Reason::PodSelectorMismatch),
        "E23 resolved to an external address"
    );
    // The matrix only has endpoint pods.
    let ids: Vec<String> = engine
        .endpoint_ids()
        .into_iter()
        .map(|i| engine.pods()[i].key().to_string())
        .collect();
    for gone in ["shop/pending", "shop/old", "shop/failed"] {
        assert!(!ids.iter().any(|k| k == gone), "E23 {gone} in the matrix");
    }
    assert!(ids.iter().any(|k| k == "web/reuser"));
}

// === Namespace and identity ===

#[test]
fn e24_policies_are_namespaced() {
    // Same name in two namespaces: two policies; each one applies only in its namespace and its
    // podSelector peers are scoped to its own namespace.
    let world = base()
        .ns(ns("default", &[]))
        .pod(pod("default", "app", &[("app", "db")], "10.0.5.1", "n3"))
        .policy(
            policy("default", "p")
                .select(sel(&[("app", "db")]))
                .ingress(rule().peer(pods(all()))),
        )
        .policy(
            policy("shop", "p")
                .select(sel(&[("app", "db")]))
                .deny_ingress(),
        );
    let engine = world.engine();
    let id = |k: &str| engine.pod_id(&k.parse().unwrap()).unwrap();
    assert_eq!(
        engine.policies_selecting(id("default/app")).0,
        keys(&["default/p"])
    );
    assert_eq!(
        engine.policies_selecting(id("shop/db")).0,
        keys(&["shop/p"])
    );
    check(
        &engine,
        &[
            "shop/api -> shop/db 5432/TCP deny  # E24 default policy does not open shop/db",
            "shop/api -> default/app 5432/TCP deny  # E24 default policy's podSelector: default pods only",
        ],
    );
    let v = eval(&engine, "shop/api", "default/app", 5432, Tcp);
    assert_eq!(v.policies, ["default/p"]);
    assert_eq!(v.reason, Some(Reason::NamespaceSelectorMismatch));
}

#[test]
fn e25_policies_are_additive_and_every_isolating_policy_is_listed() {
    let narrow_a = policy("shop", "a-api")
        .select(sel(&[("app", "db")]))
        .ingress(rule().peer(pods(sel(&[("app", "api")]))).port(tcp(5432)));
    let narrow_b = policy("shop", "b-frontend")
        .select(sel(&[("tier", "data")]))
        .ingress(rule().peer(nss(sel(&[("team", "frontend")]))));
    let world = base().policy(narrow_a).policy(narrow_b);
    let engine = world.engine();
    check(
        &engine,
        &[
            "shop/api -> shop/db 5432/TCP allow  # E25 allowed by the first policy",
            "web/ui -> shop/db 5432/TCP allow  # E25 allowed by the second policy",
            "ops/probe -> shop/db 5432/TCP deny  # E25 allowed by neither",
        ],
    );
    let v = eval(&engine, "web/ui", "shop/db", 5432, Tcp);
    match &v.ingress {
        DirectionVerdict::Allowed {
            by,
            isolating,
            tier,
        } => {
            assert_eq!(
                by,
                &RuleRef {
                    policy: "shop/b-frontend".parse().unwrap(),
                    index: 0
                }
            );
            assert_eq!(isolating, &keys(&["shop/a-api", "shop/b-frontend"]));
            assert_eq!(*tier, Tier::NetworkPolicy);
        }
        other => panic!("{other:?}"),
    }
    let v = eval(&engine, "ops/probe", "shop/db", 5432, Tcp);
    assert_eq!(v.policies, ["shop/a-api", "shop/b-frontend"]);
    let misses = denied(&v.ingress);
    assert_eq!(misses.len(), 2);
    assert_eq!(
        misses[0].rules[0].peer.as_ref().map(PeerMiss::reason),
        Some(Reason::NamespaceSelectorMismatch)
    );
    assert_eq!(
        misses[1].rules[0].peer.as_ref().map(PeerMiss::reason),
        Some(Reason::NamespaceSelectorMismatch)
    );
    let text = render(&engine, "ops/probe", "shop/db", 5432, Tcp);
    assert!(
        text.contains("isolated by shop/a-api, shop/b-frontend"),
        "{text}"
    );

    // One allow-all policy overrides any number of narrow ones; order does not matter.
    let engine = world.clone_with(policy("shop", "0-allow-all").select(all()).ingress(rule()));
    check(
        &engine,
        &["ops/probe -> shop/db 5432/TCP allow  # E25 allow-all overrides"],
    );
    let v = eval(&engine, "ops/probe", "shop/db", 5432, Tcp);
    assert!(
        matches!(&v.ingress, DirectionVerdict::Allowed { isolating, .. } if isolating.len() == 3),
        "{:?}",
        v.ingress
    );
}

// === Explanations ===

#[test]
fn explain_reason_codes() {
    let db = || policy("shop", "p").select(sel(&[("app", "db")]));
    let cases: &[(&str, NetworkPolicy, &str, Option<Reason>, &str)] = &[
        (
            "no rules",
            db().deny_ingress(),
            "web/ui",
            Some(Reason::DefaultDeny),
            "default_deny",
        ),
        (
            "peer matches, port does not",
            db().ingress(rule().port(tcp(1))),
            "web/ui",
            Some(Reason::PortNotAllowed),
            "port_not_allowed",
        ),
        (
            "pod selector",
            db().ingress(rule().peer(pods(sel(&[("app", "x")])))),
            "shop/api",
            Some(Reason::PodSelectorMismatch),
            "pod_selector_mismatch",
        ),
        (
            "namespace selector",
            db().ingress(rule().peer(nss(sel(&[("team", "x")])))),
            "web/ui",
            Some(Reason::NamespaceSelectorMismatch),
            "namespace_selector_mismatch",
        ),
        (
            "ip block",
            db().ingress(rule().peer(ip_block("172.16.0.0/12", &[]))),
            "web/ui",
            Some(Reason::IpBlockMismatch),
            "ip_block_mismatch",
        ),
        (
            "named port",
            db().ingress(rule().port(named("http", Tcp))),
            "web/ui",
            Some(Reason::NamedPortUnresolved),
            "named_port_unresolved",
        ),
        (
            "invalid",
            db().ingress(rule().peer(invalid_peer("x"))),
            "web/ui",
            Some(Reason::InvalidRule),
            "invalid_rule",
        ),
        ("allowed", db().ingress(rule()), "web/ui", None, ""),
    ];
    for (name, p, from, reason, code) in cases {
        let engine = base().policy(p.clone()).engine();
        let v = eval(&engine, from, "shop/db", 5432, Tcp);
        assert_eq!(v.reason, *reason, "{name}");
        assert_eq!(v.reason.map_or("", Reason::as_str), *code, "{name}");
        let json = serde_json::to_value(&v).unwrap();
        if reason.is_some() {
            assert_eq!(json["reason"], *code, "{name}");
            assert_eq!(json["direction"], "ingress", "{name}");
            assert_eq!(json["policies"], serde_json::json!(["shop/p"]), "{name}");
            assert_eq!(json["ingress"]["decision"], "denied", "{name}");
        } else {
            assert!(json.get("reason").is_none(), "{name}");
            assert_eq!(json["ingress"]["decision"], "allowed", "{name}");
        }
    }
    assert_eq!(Direction::Egress.as_str(), "egress");
    assert_eq!(Direction::Ingress.to_string(), "ingress");
}

#[test]
fn explain_closest_rule_prefers_the_rule_that_came_closest() {
    // Rule #0 fails on both halves; rule #1 matches the port but not the peer.
    let engine = base()
        .policy(
            policy("shop", "p")
                .select(sel(&[("app", "db")]))
                .ingress(rule().peer(nss(sel(&[("team", "x")]))).port(tcp(1)))
                .ingress(rule().peer(pods(sel(&[("app", "x")]))).port(tcp(5432))),
        )
        .engine();
    let v = eval(&engine, "shop/api", "shop/db", 5432, Tcp);
    let (policy_key, miss) = v.closest_rule().unwrap();
    assert_eq!(
        (policy_key.to_string(), miss.index, miss.distance()),
        ("shop/p".into(), 1, 1)
    );
    assert_eq!(v.reason, Some(Reason::PodSelectorMismatch));
    let rules = &denied(&v.ingress)[0].rules;
    assert_eq!(rules.len(), 2, "every rule is listed");
    assert_eq!(rules[0].distance(), 2);
    let text = render(&engine, "shop/api", "shop/db", 5432, Tcp);
    assert!(
        text.contains("rule #1: peer #0: podSelector {app: x} does not match pod shop/api"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("rule #1") && l.ends_with("<- closest")),
        "{text}"
    );
    assert!(
        !text
            .lines()
            .any(|l| l.contains("rule #0") && l.ends_with("<- closest")),
        "{text}"
    );
    assert!(text.contains("(the port matched)"), "{text}");

    // Peer matched but port did not beats both failing: port_not_allowed, even when listed later.
    let engine = base()
        .policy(
            policy("shop", "p")
                .select(sel(&[("app", "db")]))
                .ingress(rule().peer(nss(sel(&[("team", "x")]))).port(tcp(1)))
                .ingress(rule().peer(pods(sel(&[("app", "api")]))).port(tcp(1))),
        )
        .engine();
    let v = eval(&engine, "shop/api", "shop/db", 5432, Tcp);
    assert_eq!(v.closest_rule().unwrap().1.index, 1);
    assert_eq!(v.reason, Some(Reason::PortNotAllowed));
    let text = render(&engine, "shop/api", "shop/db", 5432, Tcp);
    assert!(text.contains("(the peer matched)"), "{text}");
    let summary = explain::summary(&flow("shop/api", "shop/db", 5432, Tcp), &v);
    assert!(
        summary.contains("denied (ingress, port_not_allowed) by shop/p: rule #1"),
        "{summary}"
    );

    // Across policies: the closest rule of any isolating policy wins.
    let engine = base()
        .policy(
            policy("shop", "a")
                .select(sel(&[("app", "db")]))
                .ingress(rule().peer(nss(sel(&[("team", "x")]))).port(tcp(1))),
        )
        .policy(
            policy("shop", "b")
                .select(sel(&[("app", "db")]))
                .ingress(rule().peer(ip_block("172.16.0.0/12", &[]))),
        )
        .engine();
    let v = eval(&engine, "shop/api", "shop/db", 5432, Tcp);
    assert_eq!(v.closest_rule().unwrap().0.to_string(), "shop/b");
    assert_eq!(v.reason, Some(Reason::IpBlockMismatch));
}

#[test]
fn explain_render_namespace_selector_miss() {
    let engine = base()
        .policy(
            policy("web", "ui-in")
                .select(sel(&[("app", "ui")]))
                .ingress(rule().peer(nss(sel(&[("team", "frontend")]))).port(tcp(80))),
        )
        .engine();
    let v = eval(&engine, "shop/api", "web/ui", 80, Tcp);
    assert_eq!(v.reason, Some(Reason::NamespaceSelectorMismatch));
    assert_eq!(v.direction, Some(Direction::Ingress));
    assert_eq!(v.policies, ["web/ui-in"]);
    let text = render(&engine, "shop/api", "web/ui", 80, Tcp);
    assert!(
        text.contains("namespaceSelector {team: frontend} does not match namespace shop {"),
        "{text}"
    );
    assert!(
        text.contains("namespace shop {kubernetes.io/metadata.name: shop, team: shop}"),
        "{text}"
    );
    assert!(
        text.starts_with(
            "shop/api -> web/ui 80/TCP: DENIED (ingress, reason: namespace_selector_mismatch)"
        ),
        "{text}"
    );
    assert!(
        text.contains("egress  shop/api: allowed, not isolated"),
        "{text}"
    );
    assert!(
        text.contains("ingress web/ui: DENIED, isolated by web/ui-in"),
        "{text}"
    );
    let text = render(&engine, "web/client", "web/ui", 80, Tcp);
    assert!(
        text.contains("allowed by web/ui-in ingress rule #0"),
        "{text}"
    );
}

#[test]
fn explain_egress_denial_names_the_egress_direction() {
    let engine = base()
        .policy(
            policy("web", "out")
                .select(sel(&[("app", "client")]))
                .egress(rule().peer(pods(sel(&[("app", "ui")])))),
        )
        .engine();
    let v = eval(&engine, "web/client", "shop/api", 8080, Tcp);
    assert_eq!(
        (v.direction, v.reason),
        (
            Some(Direction::Egress),
            Some(Reason::NamespaceSelectorMismatch)
        )
    );
    assert_eq!(v.policies, ["web/out"]);
    let text = render(&engine, "web/client", "shop/api", 8080, Tcp);
    assert!(
        text.contains("DENIED (egress, reason: namespace_selector_mismatch)"),
        "{text}"
    );
    assert!(
        text.contains("egress  web/client: DENIED, isolated by web/out and no egress rule matches"),
        "{text}"
    );
}

// === Cross-check: matrix vs evaluate on a pseudo-random cluster ===

/// xorshift64*, fixed seeds: the same clusters every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const NAMESPACES: [&str; 4] = ["alpha", "beta", "gamma", "delta"];
const NODE_IPS: [&str; 3] = ["192.168.0.1", "192.168.0.2", "192.168.0.3"];
const HOST_AND_V6_CIDRS: [&str; 3] = ["192.168.0.0/30", "fd00::/16", "fd00:2::/32"];

fn random_labels(rng: &mut Rng) -> Labels {
    let mut l = Labels::new();
    for (key, values) in [
        ("app", &["web", "api", "db"][..]),
        ("tier", &["front", "back"]),
        ("role", &["client", "server"]),
    ] {
        if rng.chance(70) {
            l.insert(key.into(), rng.pick(values).to_string());
        }
    }
    l
}

fn random_selector(rng: &mut Rng) -> Selector {
    match rng.below(7) {
        0 => all(),
        1 => sel(&[("app", *rng.pick(&["web", "api", "db"]))]),
        2 => sel(&[
            ("tier", *rng.pick(&["front", "back"])),
            ("app", *rng.pick(&["web", "api"])),
        ]),
        3 => expr("tier", "NotIn", &[*rng.pick(&["front", "back"])]),
        4 => expr("role", "DoesNotExist", &[]),
        5 => expr("app", "In", &["web", "db"]),
        _ => expr("role", "Exists", &[]),
    }
}

fn random_ns_selector(rng: &mut Rng) -> Selector {
    match rng.below(5) {
        0 => all(),
        1 => sel(&[("team", *rng.pick(&["red", "blue"]))]),
        2 => sel(&[(NAMESPACE_NAME_LABEL, *rng.pick(&NAMESPACES))]),
        3 => expr("env", "NotIn", &["prod"]),
        _ => expr("env", "Exists", &[]),
    }
}

fn random_peer(rng: &mut Rng) -> Peer {
    match rng.below(9) {
        0 | 1 => pods(random_selector(rng)),
        2 | 3 => nss(random_ns_selector(rng)),
        4 => pods_in(random_ns_selector(rng), random_selector(rng)),
        5 => {
            let n = rng.below(4) + 1;
            ip_block(&format!("10.{n}.0.0/16"), &[&format!("10.{n}.0.0/29")])
        }
        6 => {
            let cidr = *rng.pick(&HOST_AND_V6_CIDRS);
            ip_block(cidr, &[])
        }
        7 => ip_block("0.0.0.0/0", &["10.2.0.0/16"]),
        _ => invalid_peer("random invalid peer"),
    }
}

fn random_port(rng: &mut Rng) -> PolicyPort {
    match rng.below(11) {
        0 => tcp(80),
        1 => tcp(8080),
        2 => named("http", Tcp),
        3 => named("dns", Udp),
        4 => named("dns", Tcp),
        5 => range(Tcp, 8000, 8100),
        6 => any_port(Udp),
        7 => port(Sctp, 7777),
        8 => named("assoc", Sctp),
        9 => any_port(Tcp),
        _ => invalid_port("random invalid port"),
    }
}

fn random_rule(rng: &mut Rng) -> Rule {
    let mut r = rule();
    if rng.chance(60) {
        for _ in 0..=rng.below(2) {
            r.ports.push(random_port(rng));
        }
    }
    if rng.chance(70) {
        for _ in 0..=rng.below(2) {
            r.peers.push(random_peer(rng));
        }
    }
    r
}

fn random_cluster(seed: u64) -> Index {
    let mut rng = Rng(seed);
    let mut index = Index::new();
    // "delta" is never loaded: its labels are only the injected name label (E10).
    for name in &NAMESPACES[..3] {
        let mut l = vec![("team", *rng.pick(&["red", "blue"]))];
        if rng.chance(50) {
            l.push(("env", *rng.pick(&["prod", "dev"])));
        }
        index.apply(ns(name, &l));
    }
    for (i, ip) in NODE_IPS.iter().enumerate() {
        index.apply(node(&format!("n{i}"), ip));
    }
    for i in 0..30 {
        let nsi = rng.below(NAMESPACES.len());
        let mut p = pod(
            NAMESPACES[nsi],
            &format!("p{i:02}"),
            &[],
            &format!("10.{}.0.{}", nsi + 1, i + 2),
            &format!("n{}", rng.below(3)),
        );
        p.labels = random_labels(&mut rng);
        if rng.chance(60) {
            p = p.with_port("http", *rng.pick(&[80, 8080, 8050]), Tcp);
        }
        if rng.chance(30) {
            p = p.with_port("dns", 53, Udp);
        }
        if rng.chance(20) {
            p = p.with_port("assoc", 7777, Sctp);
        }
        if rng.chance(30) {
            p = p.with_port("", 9090, Tcp);
        }
        // Some dual-stack and some IPv6-only pods (E19: the flow's address family).
        match rng.below(10) {
            0 => p
                .ips
                .push(format!("fd00:{}::{:x}", nsi + 1, i + 2).parse().unwrap()),
            1 => p.ips = vec![format!("fd00:{}::{:x}", nsi + 1, i + 2).parse().unwrap()],
            _ => {}
        }
        index.apply(p);
    }
    // hostNetwork pods on two nodes (with named ports and labels that selectors would
    // otherwise match), a pod without an IP, and a finished pod whose IP was reused.
    index.apply(
        pod("alpha", "host", &[("app", "web")], NODE_IPS[1], "n1")
            .host_network()
            .with_port("http", 80, Tcp),
    );
    index.apply(
        pod("gamma", "host", &[("app", "api")], NODE_IPS[2], "n2")
            .host_network()
            .with_port("http", 8080, Tcp)
            .with_port("dns", 53, Udp),
    );
    index.apply(pod("beta", "pending", &[("app", "api")], "", "").phase(PodPhase::Pending));
    index
        .apply(pod("gamma", "done", &[("app", "db")], "10.3.0.5", "n2").phase(PodPhase::Succeeded));
    for i in 0..15 {
        let mut p = policy(
            NAMESPACES[rng.below(NAMESPACES.len())],
            &format!("np{i:02}"),
        );
        p.pod_selector = random_selector(&mut rng);
        match rng.below(4) {
            0 => p.isolates_ingress = true,
            1 => p.isolates_egress = true,
            2 => (p.isolates_ingress, p.isolates_egress) = (true, true),
            // Rules present but the types leave them inert (E1).
            _ => p.isolates_ingress = true,
        }
        for _ in 0..rng.below(4) {
            p.ingress.push(random_rule(&mut rng));
        }
        for _ in 0..rng.below(4) {
            p.egress.push(random_rule(&mut rng));
        }
        index.apply(p);
    }
    index
}

/// What the JSON matrix prints for a pair the rules deny, from the cheap path...
fn denial_codes(
    engine: &Engine,
    cell: &MatrixCell,
) -> (Option<Reason>, Option<Direction>, Vec<String>) {
    match engine.cell_denial(cell) {
        Some(d) => (
            Some(d.reason),
            Some(d.direction),
            d.policy_ids()
                .map(|id| engine.policy_key(id).to_string())
                .collect(),
        ),
        None => (None, None, Vec::new()),
    }
}

/// ...and from the full verdict.
fn verdict_codes(v: &Verdict) -> (Option<Reason>, Option<Direction>, Vec<String>) {
    (v.reason, v.direction, v.policies.clone())
}

#[test]
fn matrix_agrees_with_evaluate_on_a_random_cluster() {
    let ports: Vec<MatrixPort> = [
        (80, Tcp),
        (8080, Tcp),
        (8050, Tcp),
        (8100, Tcp),
        (9090, Tcp),
        (53, Udp),
        (53, Tcp),
        (7777, Sctp),
    ]
    .into_iter()
    .map(|(port, protocol)| MatrixPort { port, protocol })
    .collect();
    let mut compared = 0usize;
    let mut allowed = 0usize;
    for seed in 1..=24_u64 {
        let index = random_cluster(seed);
        for profile in Profile::ALL {
            let engine = Engine::new(&index, profile.clone());
            let endpoints = engine.endpoint_ids();
            assert_eq!(
                endpoints.len(),
                32,
                "30 pods + the hostNetwork pods (seed {seed:#x})"
            );
            for &port in &ports {
                let cells = engine.matrix(&[port]);
                assert_eq!(cells.len(), endpoints.len() * endpoints.len());
                for cell in cells {
                    let f = Flow {
                        from: Endpoint::Pod(engine.pods()[cell.from].key()),
                        to: Endpoint::Pod(engine.pods()[cell.to].key()),
                        port: port.port,
                        protocol: port.protocol,
                    };
                    let v = engine.evaluate(&f).unwrap();
                    assert_eq!(
                        (cell.allowed, cell.rules_allowed, cell.self_traffic),
                        (v.allowed, v.rules_allowed, v.self_traffic),
                        "seed {seed:#x}, profile {profile}: matrix disagrees with evaluate\n{}",
                        explain::render(&f, &v)
                    );
                    assert_eq!(
                        denial_codes(&engine, &cell),
                        verdict_codes(&v),
                        "seed {seed:#x}, profile {profile}: cell_denial disagrees with evaluate\n{}",
                        explain::render(&f, &v)
                    );
                    compared += 1;
                    allowed += usize::from(v.rules_allowed);
                }
            }
            // Per-destination mode (no ports): each destination on its own container ports.
            for cell in engine.matrix(&[]) {
                assert!(
                    engine.pods()[cell.to]
                        .ports
                        .iter()
                        .any(|p| p.port == cell.port.port && p.protocol == cell.port.protocol)
                );
                let f = Flow {
                    from: Endpoint::Pod(engine.pods()[cell.from].key()),
                    to: Endpoint::Pod(engine.pods()[cell.to].key()),
                    port: cell.port.port,
                    protocol: cell.port.protocol,
                };
                let v = engine.evaluate(&f).unwrap();
                assert_eq!(
                    (cell.allowed, cell.rules_allowed),
                    (v.allowed, v.rules_allowed),
                    "seed {seed:#x}, {profile}, {f:?}"
                );
                assert_eq!(
                    denial_codes(&engine, &cell),
                    verdict_codes(&v),
                    "seed {seed:#x}, {profile}, {f:?}"
                );
            }
        }
    }
    // The cluster is not trivially all-allow or all-deny.
    assert!(
        allowed > compared / 10 && allowed < compared * 9 / 10,
        "{allowed} of {compared} allowed"
    );
}

#[test]
fn evaluating_by_pod_ip_equals_evaluating_by_pod_name() {
    let index = random_cluster(99);
    let engine = Engine::new(&index, Profile::UPSTREAM);
    let live: Vec<&Pod> = engine
        .pods()
        .iter()
        .filter(|p| p.is_endpoint() && !p.host_network)
        .collect();
    for a in &live {
        for b in &live {
            let by_name = Flow {
                from: Endpoint::Pod(a.key()),
                to: Endpoint::Pod(b.key()),
                port: 80,
                protocol: Tcp,
            };
            let by_ip = Flow {
                from: Endpoint::Ip(a.ips[0]),
                to: Endpoint::Ip(b.ips[0]),
                port: 80,
                protocol: Tcp,
            };
            let (x, y) = (
                engine.evaluate(&by_name).unwrap(),
                engine.evaluate(&by_ip).unwrap(),
            );
            assert_eq!(
                (x.allowed, x.rules_allowed, x.self_traffic, x.reason),
                (y.allowed, y.rules_allowed, y.self_traffic, y.reason)
            );
        }
    }
}
