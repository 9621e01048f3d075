//! Ports and protocols.

use super::*;

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
