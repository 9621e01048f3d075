//! Defaulting and shape of rules (engine side).

use super::*;

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
