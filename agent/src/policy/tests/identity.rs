//! Namespace and identity.

use super::*;

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
