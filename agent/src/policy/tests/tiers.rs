//! The cluster-scoped tiers: Admin before NetworkPolicy, Baseline after it; each action, peer
//! kind and the fail-closed rules. Policies are written as the API's JSON (the conversion is
//! part of what is tested), on the shared `base()` world.

use serde_json::{Value, json};

use super::*;
use crate::cluster::tiered::TieredPolicy;

/// A ClusterNetworkPolicy of `tier` at `priority` whose subject is namespace `shop`.
fn cnp(name: &str, tier: &str, priority: u32, ingress: Value, egress: Value) -> TieredPolicy {
    TieredPolicy::try_from(&json!({
        "apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
        "metadata": {"name": name},
        "spec": {"tier": tier, "priority": priority,
                 "subject": {"namespaces": {"matchLabels": {"team": "shop"}}},
                 "ingress": ingress, "egress": egress}
    }))
    .expect("a valid policy")
}

fn from_web(action: &str) -> Value {
    json!([{"name": "web", "action": action,
            "from": [{"namespaces": {"matchLabels": {"team": "frontend"}}}]}])
}

fn world(policies: Vec<TieredPolicy>) -> World {
    let mut world = base();
    for policy in policies {
        world.index.apply(policy);
    }
    world
}

#[test]
fn tiers_in_order() {
    let np_deny = policy("shop", "deny-all").deny_ingress();
    let cases: Vec<(&str, Vec<TieredPolicy>, bool, &[&str])> = vec![
        (
            "admin deny over no NetworkPolicy",
            vec![cnp("a", "Admin", 1, from_web("Deny"), json!([]))],
            false,
            &[
                "web/ui -> shop/api 8080/TCP deny:admin_deny",
                "ops/probe -> shop/api 8080/TCP allow # other peers untouched",
            ],
        ),
        (
            "admin accept over a NetworkPolicy deny",
            vec![cnp("a", "Admin", 1, from_web("Accept"), json!([]))],
            true,
            &[
                "web/ui -> shop/api 8080/TCP allow",
                "ops/probe -> shop/api 8080/TCP deny:default_deny # NetworkPolicy still decides the rest",
            ],
        ),
        (
            "admin pass hands over to NetworkPolicy",
            vec![
                cnp("a", "Admin", 1, from_web("Pass"), json!([])),
                cnp("b", "Admin", 2, from_web("Deny"), json!([])),
            ],
            true,
            &["web/ui -> shop/api 8080/TCP deny:default_deny # the later admin deny is skipped"],
        ),
        (
            "admin pass, no NetworkPolicy: baseline decides",
            vec![
                cnp("a", "Admin", 1, from_web("Pass"), json!([])),
                cnp("z", "Baseline", 1, from_web("Deny"), json!([])),
            ],
            false,
            &["web/ui -> shop/api 8080/TCP deny:baseline_deny"],
        ),
        (
            "a NetworkPolicy that selects the pod is final over baseline",
            vec![cnp("z", "Baseline", 1, from_web("Accept"), json!([]))],
            true,
            &["web/ui -> shop/api 8080/TCP deny:default_deny"],
        ),
        (
            "priority: the lower number is read first",
            vec![
                cnp("late", "Admin", 9, from_web("Accept"), json!([])),
                cnp("early", "Admin", 2, from_web("Deny"), json!([])),
            ],
            false,
            &["web/ui -> shop/api 8080/TCP deny:admin_deny"],
        ),
        (
            "egress: admin deny at the source",
            vec![cnp(
                "a",
                "Admin",
                1,
                json!([]),
                json!([{"name": "no-ui", "action": "Deny",
                "to": [{"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "ui"}}}}]}]),
            )],
            false,
            &[
                "shop/api -> web/ui 80/TCP deny:admin_deny",
                "shop/api -> web/client 9999/TCP allow",
            ],
        ),
    ];
    for (name, policies, with_np, rows) in cases {
        let mut world = world(policies);
        if with_np {
            world = world.policy(np_deny.clone());
        }
        let engine = world.engine();
        let named: Vec<String> = rows
            .iter()
            .map(|r| {
                if r.contains(" # ") {
                    r.to_string()
                } else {
                    format!("{r} # {name}")
                }
            })
            .collect();
        let named: Vec<&str> = named.iter().map(String::as_str).collect();
        check(&engine, &named);
    }
}

#[test]
fn ports_protocols_and_named_ports() {
    let rule = |protocols: Value| {
        json!([{"name": "r", "action": "Deny", "protocols": protocols,
                "from": [{"namespaces": {"matchLabels": {"team": "frontend"}}}]}])
    };
    let cases: Vec<(&str, Value, &[&str])> = vec![
        (
            "number",
            json!([{"tcp": {"destinationPort": {"number": 8080}}}]),
            &[
                "web/ui -> shop/api 8080/TCP deny",
                "web/ui -> shop/api 9090/TCP allow",
                "web/ui -> shop/api 8080/UDP allow",
            ],
        ),
        (
            "range",
            json!([{"tcp": {"destinationPort": {"range": {"start": 8000, "end": 8100}}}}]),
            &[
                "web/ui -> shop/api 8080/TCP deny",
                "web/ui -> shop/api 9090/TCP allow",
            ],
        ),
        (
            "named port resolves on the destination",
            json!([{"destinationNamedPort": "metrics"}]),
            &[
                "web/ui -> shop/api 9090/TCP deny",
                "web/ui -> shop/api 8080/TCP allow",
                "web/ui -> shop/db 9090/TCP allow",
            ],
        ),
        (
            "protocol without a port",
            json!([{"udp": {}}]),
            &[
                "web/ui -> shop/api 53/UDP deny",
                "web/ui -> shop/api 53/TCP allow",
            ],
        ),
    ];
    for (name, protocols, rows) in cases {
        let engine = world(vec![cnp("p", "Admin", 1, rule(protocols), json!([]))]).engine();
        let named: Vec<String> = rows.iter().map(|r| format!("{r} # {name}")).collect();
        check(
            &engine,
            &named.iter().map(String::as_str).collect::<Vec<_>>(),
        );
    }
}

#[test]
fn peer_kinds() {
    let egress = |to: Value| json!([{"name": "r", "action": "Deny", "to": [to]}]);
    let cases: Vec<(&str, Value, &[&str])> = vec![
        (
            "networks match pod addresses",
            json!({"networks": ["10.0.2.0/24"]}),
            &[
                "shop/api -> web/ui 80/TCP deny",
                "shop/api -> ops/probe 80/TCP allow",
            ],
        ),
        (
            "networks match external addresses",
            json!({"networks": ["203.0.113.0/24"]}),
            &[
                "shop/api -> 203.0.113.9 443/TCP deny",
                "shop/api -> 198.51.100.1 443/TCP allow",
            ],
        ),
        (
            "nodes never match a pod-network pod",
            json!({"nodes": {}}),
            &[
                "shop/api -> web/ui 80/TCP allow",
                "shop/api -> 192.168.0.2 10250/TCP deny",
            ],
        ),
        (
            "domain names never match (implementation-defined)",
            json!({"domainNames": ["example.com"]}),
            &["shop/api -> 203.0.113.9 443/TCP allow"],
        ),
        (
            "pods need both selectors",
            json!({"pods": {"namespaceSelector": {"matchLabels": {"team": "ops"}}, "podSelector": {"matchLabels": {"app": "probe"}}}}),
            &[
                "shop/api -> ops/probe 80/TCP deny",
                "shop/api -> web/ui 80/TCP allow",
            ],
        ),
    ];
    for (name, peer, rows) in cases {
        let engine = world(vec![cnp("p", "Admin", 1, json!([]), egress(peer))]).engine();
        let named: Vec<String> = rows.iter().map(|r| format!("{r} # {name}")).collect();
        check(
            &engine,
            &named.iter().map(String::as_str).collect::<Vec<_>>(),
        );
    }
    let engine = world(vec![cnp(
        "p",
        "Admin",
        1,
        json!([]),
        egress(json!({"domainNames": ["example.com"]})),
    )])
    .engine();
    let verdict = eval(&engine, "shop/api", "203.0.113.9", 443, Tcp);
    assert!(
        verdict
            .notes
            .iter()
            .any(|n| n.starts_with("implementation-defined") && n.contains("example.com")),
        "{:?}",
        verdict.notes
    );
}

/// A rule that did not validate: an Accept rule matches nothing, a Deny or Pass rule denies
/// everything (as Deny).
#[test]
fn invalid_rules_fail_closed() {
    let bad = |action: &str| json!([{"name": "bad", "action": action, "from": [{"serviceAccounts": {}}]}]);
    let cases: [(&str, bool, &str); 3] = [
        (
            "Accept",
            true,
            "web/ui -> shop/api 8080/TCP deny:default_deny # an invalid Accept accepts nothing",
        ),
        (
            "Deny",
            false,
            "ops/probe -> shop/api 8080/TCP deny:admin_deny # an invalid Deny denies everything",
        ),
        (
            "Pass",
            false,
            "ops/probe -> shop/api 8080/TCP deny:admin_deny # an invalid Pass denies everything",
        ),
    ];
    for (action, with_np, row) in cases {
        let mut world = world(vec![cnp("p", "Admin", 1, bad(action), json!([]))]);
        if with_np {
            world = world.policy(policy("shop", "deny-all").deny_ingress());
        }
        let engine = world.engine();
        check(&engine, &[row]);
        let verdict = eval(&engine, "ops/probe", "shop/api", 8080, Tcp);
        if let DirectionVerdict::Tiered(hit) = &verdict.ingress {
            assert!(
                hit.invalid.is_some(),
                "{action}: the hit says the rule is invalid"
            );
        }
    }
}

#[test]
fn host_network_pods_and_self_traffic() {
    let policy = TieredPolicy::try_from(&json!({
        "apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
        "metadata": {"name": "all"},
        "spec": {"tier": "Admin", "priority": 1, "subject": {"namespaces": {}},
                 "ingress": [{"name": "none", "action": "Deny", "from": [{"namespaces": {}}]}]}
    }))
    .expect("valid");
    let engine = world(vec![policy]).engine();
    check(
        &engine,
        &[
            "ops/probe -> ops/agent-1 22/TCP allow # a hostNetwork pod is never a subject",
            "ops/agent-1 -> shop/api 8080/TCP allow # nor a namespaces peer",
            "web/ui -> shop/api 8080/TCP deny:admin_deny # pod-network pods are",
        ],
    );
    let own = eval(&engine, "shop/api", "shop/api", 8080, Tcp);
    assert!(
        own.allowed && own.self_traffic && !own.rules_allowed,
        "a pod reaches itself whatever the rules say"
    );
}

#[test]
fn explanations_name_tier_policy_priority_rule_and_overlaps() {
    let engine = world(vec![
        cnp("first", "Admin", 5, from_web("Deny"), json!([])),
        cnp("second", "Admin", 5, from_web("Accept"), json!([])),
    ])
    .engine();
    let verdict = eval(&engine, "web/ui", "shop/api", 8080, Tcp);
    assert_eq!(verdict.policies, ["ClusterNetworkPolicy/first"]);
    let text = render(&engine, "web/ui", "shop/api", 8080, Tcp);
    assert!(
        text.contains("DENIED by Admin tier ClusterNetworkPolicy/first (priority 5) ingress rule #0 \"web\": Deny"),
        "{text}"
    );
    assert!(
        verdict
            .notes
            .iter()
            .any(|n| n.contains("shares priority 5")),
        "same-priority overlap is implementation-defined: {:?}",
        verdict.notes
    );
}
