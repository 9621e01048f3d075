//! Explanations.

use super::*;

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
