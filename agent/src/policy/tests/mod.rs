//! Table-driven tests of the policy engine: one or more per item of
//! `docs/reference/netpol-semantics.md` (E0–E25), the explanation structure, and a cross-check of
//! `Engine::matrix` against `Engine::evaluate` on a pseudo-random cluster.
//!
//! Fixtures build `model` types directly (no YAML): conversion and defaulting (E1, E5, E6, E10,
//! E13, E16, E19, E24) are tested at the conversion layer; here only the engine side is.

use super::*;
use crate::cluster::index::{Apply, Index};
use crate::cluster::model::{
    Labels, NAMESPACE_NAME_LABEL, Namespace, NetworkPolicy, Node, ObjectRef, Peer, Pod, PodPhase,
    PolicyPort, Protocol, Rule,
};
use crate::cluster::selector::Selector;
pub(crate) use crate::testing::namespace as ns;
pub(crate) use crate::testing::*;

use Protocol::{Sctp, Tcp, Udp};

// === Fixtures (shared by the submodules; the builders are crate::testing's) ===

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
mod partial_view;
mod peers;
mod ports;
mod rules;
mod services;
mod special_traffic;
mod tiers;
