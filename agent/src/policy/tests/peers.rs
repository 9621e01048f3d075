//! Peers and selectors.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use super::*;

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
