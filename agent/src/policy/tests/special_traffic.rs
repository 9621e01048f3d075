//! Special traffic.

use super::*;

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
