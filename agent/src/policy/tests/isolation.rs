//! Isolation and combination.

use super::*;

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
