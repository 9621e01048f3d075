use k8s_openapi::api::core::v1 as corev1;
use k8s_openapi::api::networking::v1 as netv1;

use super::*;
use crate::testing::labels;

// === Fixtures ===

fn from_yaml<T: serde::de::DeserializeOwned>(yaml: &str) -> T {
    serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("fixture does not parse: {e}\n{yaml}"))
}

/// A NetworkPolicy `shop/test` with the given spec (YAML flow or block text).
fn mk_policy(spec: &str) -> netv1::NetworkPolicy {
    let indented: String = spec.lines().map(|l| format!("  {l}\n")).collect();
    from_yaml(&format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: test, namespace: shop}}\nspec:\n{indented}"
    ))
}

fn convert_policy(spec: &str) -> Result<NetworkPolicy> {
    NetworkPolicy::try_from(&mk_policy(spec))
}

fn valid_policy(spec: &str) -> NetworkPolicy {
    convert_policy(spec).unwrap_or_else(|e| panic!("policy must be valid: {e}\n{spec}"))
}

fn mk_pod(yaml: &str) -> corev1::Pod {
    from_yaml(&format!("apiVersion: v1\nkind: Pod\n{yaml}"))
}

fn fields(err: &ConvertError) -> Vec<&str> {
    err.problems.iter().map(|p| p.field.as_str()).collect()
}

// === NetworkPolicy defaulting ===

#[test]
fn policy_types_defaulting_e1() {
    // (case, spec, isolates ingress, isolates egress)
    let cases = [
        ("absent, no egress", "podSelector: {}", true, false),
        (
            "absent, egress: [] does not isolate egress",
            "podSelector: {}\negress: []",
            true,
            false,
        ),
        (
            "absent, egress rules isolate egress",
            "podSelector: {}\negress: [{}]",
            true,
            true,
        ),
        (
            "empty list is defaulted too",
            "podSelector: {}\npolicyTypes: []\negress: [{}]",
            true,
            true,
        ),
        (
            "explicit Egress only",
            "podSelector: {}\npolicyTypes: [Egress]",
            false,
            true,
        ),
        (
            "explicit both",
            "podSelector: {}\npolicyTypes: [Ingress, Egress]",
            true,
            true,
        ),
        (
            "explicit Ingress with egress rules",
            "podSelector: {}\npolicyTypes: [Ingress]\negress: [{}]",
            true,
            false,
        ),
    ];
    for (case, spec, ingress, egress) in cases {
        let policy = valid_policy(spec);
        assert_eq!(
            (policy.isolates_ingress, policy.isolates_egress),
            (ingress, egress),
            "{case}"
        );
    }
}

#[test]
fn policy_types_validation() {
    let cases = [
        (
            "unknown type",
            "podSelector: {}\npolicyTypes: [Ingress, Sideways]",
            vec!["spec.policyTypes[1]"],
        ),
        (
            "lowercase",
            "podSelector: {}\npolicyTypes: [ingress]",
            vec!["spec.policyTypes[0]"],
        ),
        (
            "three types",
            "podSelector: {}\npolicyTypes: [Ingress, Egress, Ingress]",
            vec!["spec.policyTypes"],
        ),
    ];
    for (case, spec, want) in cases {
        let err = convert_policy(spec).expect_err(case);
        assert_eq!(fields(&err), want, "{case}");
        assert!(
            err.degraded.is_none(),
            "{case}: invalid policyTypes leave nothing to degrade to"
        );
    }
}

#[test]
fn inert_rules_are_warnings() {
    let policy =
        valid_policy("podSelector: {}\npolicyTypes: [Egress]\ningress: [{}]\negress: [{}, {}]");
    assert_eq!(policy.warnings.len(), 1, "{:?}", policy.warnings);
    assert!(
        policy.warnings[0].starts_with("spec.ingress: 1 rule(s) are inert"),
        "{:?}",
        policy.warnings
    );
    let policy = valid_policy("podSelector: {}\npolicyTypes: [Ingress]\negress: [{}]");
    assert_eq!(policy.warnings.len(), 1);
    assert!(policy.warnings[0].contains("does not include Egress"));
    assert!(
        valid_policy("podSelector: {}\ningress: [{}]")
            .warnings
            .is_empty()
    );
}

#[test]
fn missing_spec_and_null_pod_selector_select_all_e2() {
    let no_spec: netv1::NetworkPolicy = from_yaml(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: test, namespace: shop}",
    );
    let null_selector = mk_policy("podSelector: null");
    for np in [no_spec, null_selector] {
        let policy = NetworkPolicy::try_from(&np).expect("valid");
        assert!(policy.pod_selector.is_empty());
        assert!(policy.isolates_ingress && !policy.isolates_egress);
        assert!(policy.ingress.is_empty() && policy.egress.is_empty());
    }
}

#[test]
fn absent_and_empty_rule_lists_are_the_same_e3() {
    let absent = valid_policy("podSelector: {}\npolicyTypes: [Ingress, Egress]");
    let empty =
        valid_policy("podSelector: {}\npolicyTypes: [Ingress, Egress]\ningress: []\negress: []");
    assert_eq!(absent, empty);
    assert!(absent.ingress.is_empty());
    // One empty rule is allow-all: a rule with no ports and no peers.
    let allow_all = valid_policy("podSelector: {}\ningress: [{}]");
    assert_eq!(allow_all.ingress, vec![Rule::default()]);
}

#[test]
fn port_defaulting_e5() {
    let tcp_all = PolicyPort::Port {
        protocol: Protocol::Tcp,
        port: None,
        end_port: None,
    };
    let cases = [
        (
            "ports: [{}] is all TCP ports",
            "[{}]",
            vec![tcp_all.clone()],
        ),
        ("protocol only", "[{protocol: TCP}]", vec![tcp_all]),
        (
            "UDP all ports",
            "[{protocol: UDP}]",
            vec![PolicyPort::Port {
                protocol: Protocol::Udp,
                port: None,
                end_port: None,
            }],
        ),
        (
            "numeric port defaults to TCP",
            "[{port: 80}]",
            vec![PolicyPort::Port {
                protocol: Protocol::Tcp,
                port: Some(PortRef::Number(80)),
                end_port: None,
            }],
        ),
        (
            "named SCTP port",
            "[{port: http-alt, protocol: SCTP}]",
            vec![PolicyPort::Port {
                protocol: Protocol::Sctp,
                port: Some(PortRef::Name("http-alt".into())),
                end_port: None,
            }],
        ),
        (
            "range",
            "[{port: 32000, endPort: 32768}]",
            vec![PolicyPort::Port {
                protocol: Protocol::Tcp,
                port: Some(PortRef::Number(32000)),
                end_port: Some(32768),
            }],
        ),
        (
            "range of one",
            "[{port: 53, endPort: 53, protocol: UDP}]",
            vec![PolicyPort::Port {
                protocol: Protocol::Udp,
                port: Some(PortRef::Number(53)),
                end_port: Some(53),
            }],
        ),
        ("no ports entry means all ports", "[]", vec![]),
    ];
    for (case, ports, want) in cases {
        let policy = valid_policy(&format!("podSelector: {{}}\ningress: [{{ports: {ports}}}]"));
        assert_eq!(policy.ingress[0].ports, want, "{case}");
    }
}

#[test]
fn invalid_ports_degrade_to_invalid_entries_e16_e17() {
    // (case, ports entry, problem field)
    let cases = [
        (
            "endPort without port",
            "{endPort: 90}",
            "spec.ingress[0].ports[1].endPort",
        ),
        (
            "endPort with named port",
            "{port: http, endPort: 90}",
            "spec.ingress[0].ports[1].endPort",
        ),
        (
            "endPort below port",
            "{port: 100, endPort: 90}",
            "spec.ingress[0].ports[1].endPort",
        ),
        (
            "endPort out of range",
            "{port: 100, endPort: 70000}",
            "spec.ingress[0].ports[1].endPort",
        ),
        ("port zero", "{port: 0}", "spec.ingress[0].ports[1].port"),
        (
            "port too big",
            "{port: 65536}",
            "spec.ingress[0].ports[1].port",
        ),
        (
            "negative port",
            "{port: -1}",
            "spec.ingress[0].ports[1].port",
        ),
        (
            "name too long",
            "{port: abcdefghijklmnop}",
            "spec.ingress[0].ports[1].port",
        ),
        (
            "uppercase name",
            "{port: HTTP}",
            "spec.ingress[0].ports[1].port",
        ),
        (
            "quoted number",
            "{port: \"80\"}",
            "spec.ingress[0].ports[1].port",
        ),
        (
            "leading hyphen",
            "{port: -http}",
            "spec.ingress[0].ports[1].port",
        ),
        (
            "double hyphen",
            "{port: a--b}",
            "spec.ingress[0].ports[1].port",
        ),
        (
            "lowercase protocol",
            "{port: 80, protocol: tcp}",
            "spec.ingress[0].ports[1].protocol",
        ),
        (
            "ICMP",
            "{protocol: ICMP}",
            "spec.ingress[0].ports[1].protocol",
        ),
    ];
    for (case, entry, field) in cases {
        let err = convert_policy(&format!(
            "podSelector: {{}}\ningress: [{{ports: [{{port: 443}}, {entry}]}}]"
        ))
        .expect_err(case);
        assert_eq!(fields(&err), [field], "{case}: {err}");
        let degraded = err
            .degraded
            .as_ref()
            .unwrap_or_else(|| panic!("{case}: a degraded policy"));
        let ports = &degraded.ingress[0].ports;
        assert_eq!(
            ports.len(),
            2,
            "{case}: invalid entries are kept, never dropped"
        );
        assert_eq!(
            ports[0],
            PolicyPort::Port {
                protocol: Protocol::Tcp,
                port: Some(PortRef::Number(443)),
                end_port: None
            }
        );
        match &ports[1] {
            PolicyPort::Invalid { reason } => {
                assert!(reason.starts_with(field), "{case}: {reason}")
            }
            other => panic!("{case}: expected Invalid, got {other:?}"),
        }
    }
}

#[test]
fn port_name_validation_e17() {
    for good in ["http", "h", "metrics-9090", "a1", "abcdefghijklmno", "9p"] {
        assert_eq!(validate_port_name(good), Ok(()), "{good}");
    }
    for bad in [
        "",
        "80",
        "HTTP",
        "http_alt",
        "-http",
        "http-",
        "a--b",
        "abcdefghijklmnop",
        "ht tp",
        "é",
    ] {
        assert!(validate_port_name(bad).is_err(), "{bad:?} must be invalid");
    }
}

// === Peers ===

#[test]
fn peers_convert() {
    let policy = valid_policy(
        "podSelector: {matchLabels: {app: db}}
ingress:
- from:
  - podSelector: {matchLabels: {app: api}}
  - namespaceSelector: {}
  - namespaceSelector: {matchLabels: {team: a}}
    podSelector: {matchExpressions: [{key: tier, operator: NotIn, values: [x]}]}
  - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}",
    );
    let peers = &policy.ingress[0].peers;
    assert_eq!(peers.len(), 4);
    assert_eq!(
        peers[0],
        Peer::Pods {
            pod_selector: Some(Selector::from_labels([("app", "api")])),
            namespace_selector: None
        }
    );
    assert_eq!(
        peers[1],
        Peer::Pods {
            pod_selector: None,
            namespace_selector: Some(Selector::everything())
        }
    );
    match &peers[2] {
        Peer::Pods {
            pod_selector: Some(pods),
            namespace_selector: Some(ns),
        } => {
            assert_eq!(ns.to_string(), "{team: a}");
            assert_eq!(pods.to_string(), "{tier notin (x)}");
        }
        other => panic!("expected both selectors, got {other:?}"),
    }
    match &peers[3] {
        Peer::IpBlock(block) => {
            assert_eq!(block.cidr.to_string(), "10.0.0.0/8");
            assert_eq!(
                block
                    .except
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>(),
                ["10.1.0.0/16"]
            );
        }
        other => panic!("expected an ipBlock, got {other:?}"),
    }
}

#[test]
fn invalid_peers_degrade_to_invalid_entries_e6_e13_e19() {
    // (case, peer, problem fields)
    let cases = [
        ("empty peer", "{}", vec!["spec.egress[0].to[1]"]),
        (
            "ipBlock and podSelector",
            "{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}",
            vec!["spec.egress[0].to[1]"],
        ),
        (
            "ipBlock and namespaceSelector",
            "{ipBlock: {cidr: 10.0.0.0/8}, namespaceSelector: {}}",
            vec!["spec.egress[0].to[1]"],
        ),
        (
            "bad operator",
            "{namespaceSelector: {matchExpressions: [{key: a, operator: Equals, values: [b]}]}}",
            vec!["spec.egress[0].to[1].namespaceSelector.matchExpressions[0].operator"],
        ),
        (
            "In without values",
            "{podSelector: {matchExpressions: [{key: a, operator: In}]}}",
            vec!["spec.egress[0].to[1].podSelector.matchExpressions[0].values"],
        ),
        (
            "both selectors invalid",
            "{podSelector: {matchLabels: {a: 'b c'}}, namespaceSelector: {matchLabels: {'bad key': x}}}",
            vec![
                "spec.egress[0].to[1].podSelector.matchLabels.a",
                "spec.egress[0].to[1].namespaceSelector.matchLabels.bad key",
            ],
        ),
        (
            "bad CIDR",
            "{ipBlock: {cidr: 10.0.0.300/8}}",
            vec!["spec.egress[0].to[1].ipBlock.cidr"],
        ),
        (
            "prefix too long",
            "{ipBlock: {cidr: 10.0.0.0/40}}",
            vec!["spec.egress[0].to[1].ipBlock.cidr"],
        ),
        (
            "missing CIDR",
            "{ipBlock: {}}",
            vec!["spec.egress[0].to[1].ipBlock.cidr"],
        ),
        (
            "except outside cidr",
            "{ipBlock: {cidr: 10.0.0.0/16, except: [10.0.1.0/24, 192.168.0.0/24]}}",
            vec!["spec.egress[0].to[1].ipBlock.except[1]"],
        ),
        (
            "except equal to cidr",
            "{ipBlock: {cidr: 10.0.0.0/16, except: [10.0.0.0/16]}}",
            vec!["spec.egress[0].to[1].ipBlock.except[0]"],
        ),
        (
            "except of another family",
            "{ipBlock: {cidr: 10.0.0.0/8, except: ['fd00::/64']}}",
            vec!["spec.egress[0].to[1].ipBlock.except[0]"],
        ),
        (
            "unparsable except",
            "{ipBlock: {cidr: 10.0.0.0/8, except: [nope]}}",
            vec!["spec.egress[0].to[1].ipBlock.except[0]"],
        ),
    ];
    for (case, peer, want) in cases {
        let err = convert_policy(&format!(
            "podSelector: {{}}\negress: [{{to: [{{podSelector: {{}}}}, {peer}]}}]"
        ))
        .expect_err(case);
        assert_eq!(fields(&err), want, "{case}: {err}");
        assert_eq!(err.metric_label(), "degraded");
        let degraded = err
            .degraded
            .as_ref()
            .unwrap_or_else(|| panic!("{case}: a degraded policy"));
        let peers = &degraded.egress[0].peers;
        assert_eq!(
            peers.len(),
            2,
            "{case}: invalid peers are kept, never dropped"
        );
        assert!(matches!(peers[0], Peer::Pods { .. }), "{case}");
        match &peers[1] {
            Peer::Invalid { reason } => assert!(reason.starts_with(want[0]), "{case}: {reason}"),
            other => panic!("{case}: expected Invalid, got {other:?}"),
        }
    }
}

#[test]
fn sloppy_cidrs_are_accepted_e19() {
    let cases = [
        ("interface address form", "192.168.1.1/24", "192.168.1.0/24"),
        ("leading zeros", "010.000.000.000/8", "10.0.0.0/8"),
        ("IPv6 host bits", "fd00::1/64", "fd00::/64"),
        ("surrounding spaces", " 10.0.0.0/8 ", "10.0.0.0/8"),
    ];
    for (case, cidr, want) in cases {
        let policy = valid_policy(&format!(
            "podSelector: {{}}\ningress: [{{from: [{{ipBlock: {{cidr: '{cidr}'}}}}]}}]"
        ));
        match &policy.ingress[0].peers[0] {
            Peer::IpBlock(block) => assert_eq!(block.cidr.to_string(), want, "{case}"),
            other => panic!("{case}: {other:?}"),
        }
    }
    // A sloppy except is compared after masking too.
    let policy = valid_policy(
        "podSelector: {}\ningress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.2.3/16]}}]}]",
    );
    assert!(
        matches!(&policy.ingress[0].peers[0], Peer::IpBlock(b) if b.except[0].to_string() == "10.1.0.0/16")
    );
}

#[test]
fn invalid_pod_selector_or_name_gives_no_degraded_policy() {
    let err = convert_policy(
        "podSelector: {matchExpressions: [{key: app, operator: Is}]}\ningress: [{from: [{}]}]",
    )
    .expect_err("invalid");
    assert_eq!(
        fields(&err),
        [
            "spec.podSelector.matchExpressions[0].operator",
            "spec.ingress[0].from[0]"
        ]
    );
    assert!(err.degraded.is_none());
    assert_eq!(err.metric_label(), "rejected");

    let unnamed: netv1::NetworkPolicy =
        from_yaml("metadata: {namespace: shop}\nspec: {podSelector: {}}");
    let err = NetworkPolicy::try_from(&unnamed).expect_err("no name");
    assert_eq!(fields(&err), ["metadata.name"]);
    assert_eq!(err.object, "shop/<unnamed>");
    assert!(err.degraded.is_none());
}

#[test]
fn error_display_names_object_and_fields() {
    let err = convert_policy(
        "podSelector: {}\ningress: [{from: [{}], ports: [{port: http, endPort: 90}]}]",
    )
    .expect_err("invalid");
    assert_eq!(
        err.to_string(),
        "NetworkPolicy shop/test: spec.ingress[0].ports[0].endPort: may not be specified when port is a named port; \
         spec.ingress[0].from[0]: must specify a peer (podSelector, namespaceSelector or ipBlock)"
    );
}

#[test]
fn policy_namespace_defaults_e24() {
    let np: netv1::NetworkPolicy = from_yaml("metadata: {name: deny}\nspec: {podSelector: {}}");
    let policy = NetworkPolicy::try_from(&np).expect("valid");
    assert_eq!(policy.key().to_string(), "default/deny");
}

// === Namespaces ===

#[test]
fn namespace_name_label_e10() {
    let cases = [
        (
            "absent is injected",
            "metadata: {name: shop, labels: {team: a}}",
            labels(&[("team", "a"), (NAMESPACE_NAME_LABEL, "shop")]),
        ),
        (
            "no labels at all",
            "metadata: {name: shop}",
            labels(&[(NAMESPACE_NAME_LABEL, "shop")]),
        ),
        (
            "a wrong value is what the control plane overwrites",
            "metadata: {name: shop, labels: {kubernetes.io/metadata.name: other}}",
            labels(&[(NAMESPACE_NAME_LABEL, "shop")]),
        ),
    ];
    for (case, yaml, want) in cases {
        let ns: corev1::Namespace = from_yaml(yaml);
        let ns = Namespace::try_from(&ns).expect(case);
        assert_eq!(ns.name, "shop");
        assert_eq!(ns.labels, want, "{case}");
    }
    let unnamed: corev1::Namespace = from_yaml("metadata: {labels: {a: b}}");
    assert_eq!(
        fields(&Namespace::try_from(&unnamed).expect_err("no name")),
        ["metadata.name"]
    );
}

// === Nodes ===

#[test]
fn node_addresses_and_conditions() {
    let node: corev1::Node = from_yaml(
        "metadata: {name: node-1, labels: {zone: a}}
status:
  addresses:
  - {type: Hostname, address: node-1}
  - {type: InternalIP, address: 10.0.0.1}
  - {type: ExternalIP, address: '2001:db8::1'}
  - {type: InternalDNS, address: node-1.internal}
  conditions:
  - {type: Ready, status: 'True'}
  - {type: MemoryPressure, status: 'False'}
  - {type: DiskPressure, status: 'True'}
  - {type: NetworkUnavailable, status: 'True'}
  - {type: PIDPressure, status: Unknown}",
    );
    let node = Node::try_from(&node).expect("valid");
    assert_eq!(
        node.addresses,
        [
            "10.0.0.1".parse::<IpAddr>().unwrap(),
            "2001:db8::1".parse().unwrap()
        ]
    );
    assert!(node.ready);
    assert_eq!(node.problems, ["DiskPressure", "NetworkUnavailable"]);
    assert_eq!(node.labels, labels(&[("zone", "a")]));

    let not_ready: corev1::Node = from_yaml(
        "metadata: {name: node-2}\nstatus: {conditions: [{type: Ready, status: Unknown}]}",
    );
    let not_ready = Node::try_from(&not_ready).expect("valid");
    assert!(!not_ready.ready && not_ready.problems.is_empty() && not_ready.addresses.is_empty());

    let bad: corev1::Node =
        from_yaml("metadata: {name: n}\nstatus: {addresses: [{type: InternalIP, address: nope}]}");
    assert_eq!(
        fields(&Node::try_from(&bad).expect_err("bad IP")),
        ["status.addresses[0].address"]
    );
}

// === Pods ===

#[test]
fn pod_converts() {
    let pod = mk_pod(
        "metadata: {name: web, namespace: shop, uid: u-1, labels: {app: web}, deletionTimestamp: '2024-05-01T10:00:00Z'}
spec:
  nodeName: node-1
  containers:
  - name: app
    ports: [{name: http, containerPort: 8080}, {containerPort: 53, protocol: UDP}]
  - name: sidecar
    ports: [{name: metrics, containerPort: 9090, protocol: TCP}]
status:
  phase: Running
  podIP: 10.244.1.5
  podIPs: [{ip: 10.244.1.5}, {ip: 'fd00::5'}]
  conditions: [{type: Ready, status: 'True'}]
  containerStatuses:
  - {name: app, ready: true, restartCount: 2, image: x, imageID: y}
  - {name: sidecar, ready: true, restartCount: 3, image: x, imageID: y}",
    );
    let pod = Pod::try_from(&pod).expect("valid");
    assert_eq!(pod.key().to_string(), "shop/web");
    assert_eq!(pod.uid, "u-1");
    assert_eq!(pod.node_name.as_deref(), Some("node-1"));
    assert_eq!(
        pod.ips,
        [
            "10.244.1.5".parse::<IpAddr>().unwrap(),
            "fd00::5".parse().unwrap()
        ]
    );
    assert_eq!(pod.phase, PodPhase::Running);
    assert!(pod.ready && pod.terminating && !pod.host_network);
    assert_eq!(pod.restarts, 5);
    assert_eq!(
        pod.ports,
        [
            ContainerPort {
                name: Some("http".into()),
                port: 8080,
                protocol: Protocol::Tcp
            },
            ContainerPort {
                name: None,
                port: 53,
                protocol: Protocol::Udp
            },
            ContainerPort {
                name: Some("metrics".into()),
                port: 9090,
                protocol: Protocol::Tcp
            },
        ]
    );
    assert_eq!(pod.resolve_named_port("metrics", Protocol::Tcp), Some(9090));
}

#[test]
fn pod_lifecycle_table_e23_e24() {
    // (case, pod YAML after `kind: Pod`, namespace, ips, phase, ready, hostNetwork, endpoint)
    let cases = [
        (
            "no namespace is default (E24)",
            "metadata: {name: p}\nstatus: {phase: Running, podIP: 10.0.0.1}",
            "default",
            1,
            PodPhase::Running,
            false,
            false,
            true,
        ),
        (
            "pending without IP",
            "metadata: {name: p, namespace: a}\nstatus: {phase: Pending}",
            "a",
            0,
            PodPhase::Pending,
            false,
            false,
            false,
        ),
        (
            "no status at all",
            "metadata: {name: p, namespace: a}\nspec: {containers: [{name: c}]}",
            "a",
            0,
            PodPhase::Unknown,
            false,
            false,
            false,
        ),
        (
            "empty podIP",
            "metadata: {name: p, namespace: a}\nstatus: {phase: Running, podIP: ''}",
            "a",
            0,
            PodPhase::Running,
            false,
            false,
            false,
        ),
        (
            "podIP only",
            "metadata: {name: p, namespace: a}\nstatus: {phase: Running, podIP: 10.0.0.2}",
            "a",
            1,
            PodPhase::Running,
            false,
            false,
            true,
        ),
        (
            "succeeded keeps IP, not an endpoint",
            "metadata: {name: p, namespace: a}\nstatus: {phase: Succeeded, podIP: 10.0.0.3}",
            "a",
            1,
            PodPhase::Succeeded,
            false,
            false,
            false,
        ),
        (
            "hostNetwork pod has the node IP",
            "metadata: {name: cni, namespace: kube-system}\nspec: {hostNetwork: true, containers: []}\nstatus: {phase: Running, podIP: 10.0.0.10, conditions: [{type: Ready, status: 'True'}]}",
            "kube-system",
            1,
            PodPhase::Running,
            true,
            true,
            true,
        ),
        (
            "not ready",
            "metadata: {name: p, namespace: a}\nstatus: {phase: Running, podIP: 10.0.0.4, conditions: [{type: Ready, status: 'False'}]}",
            "a",
            1,
            PodPhase::Running,
            false,
            false,
            true,
        ),
    ];
    for (case, yaml, namespace, ips, phase, ready, host_network, endpoint) in cases {
        let pod = Pod::try_from(&mk_pod(yaml)).unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(pod.namespace, namespace, "{case}");
        assert_eq!(pod.ips.len(), ips, "{case}");
        assert_eq!(pod.phase, phase, "{case}");
        assert_eq!(pod.ready, ready, "{case}");
        assert_eq!(pod.host_network, host_network, "{case}");
        assert_eq!(pod.is_endpoint(), endpoint, "{case}");
        assert!(!pod.terminating && pod.ports.is_empty(), "{case}");
    }
}

#[test]
fn invalid_pods_name_the_field() {
    let cases = [
        (
            "bad podIP",
            "metadata: {name: p}\nstatus: {podIP: 10.0.0.999}",
            vec!["status.podIP"],
        ),
        (
            "bad podIPs entry",
            "metadata: {name: p}\nstatus: {podIPs: [{ip: 10.0.0.1}, {ip: x}]}",
            vec!["status.podIPs[1].ip"],
        ),
        (
            "bad phase",
            "metadata: {name: p}\nstatus: {phase: Sleeping}",
            vec!["status.phase"],
        ),
        (
            "unknown protocol",
            "metadata: {name: p}\nspec: {containers: [{name: a}, {name: b, ports: [{containerPort: 80, protocol: HTTP}]}]}",
            vec!["spec.containers[1].ports[0].protocol"],
        ),
        (
            "port out of range",
            "metadata: {name: p}\nspec: {containers: [{name: a, ports: [{containerPort: 80}, {containerPort: 70000}]}]}",
            vec!["spec.containers[0].ports[1].containerPort"],
        ),
        (
            "missing containerPort",
            "metadata: {name: p}\nspec: {containers: [{name: a, ports: [{name: http}]}]}",
            vec!["spec.containers[0].ports[0].containerPort"],
        ),
        (
            "bad port name",
            "metadata: {name: p}\nspec: {containers: [{name: a, ports: [{name: Web_Port, containerPort: 80}]}]}",
            vec!["spec.containers[0].ports[0].name"],
        ),
        ("no name", "metadata: {namespace: a}", vec!["metadata.name"]),
    ];
    for (case, yaml, want) in cases {
        let err = Pod::try_from(&mk_pod(yaml)).expect_err(case);
        assert_eq!(fields(&err), want, "{case}: {err}");
        assert_eq!(err.kind, "Pod");
        assert!(err.degraded.is_none());
    }
    let err = Pod::try_from(&mk_pod(
        "metadata: {name: p, namespace: shop}\nstatus: {podIP: nope}",
    ))
    .expect_err("bad");
    assert_eq!(
        err.to_string(),
        "Pod shop/p: status.podIP: \"nope\" is not a valid IP address"
    );
}

#[test]
fn negative_restart_counts_do_not_panic() {
    let pod = mk_pod(
        "metadata: {name: p}\nstatus: {containerStatuses: [{name: a, restartCount: -5, ready: false, image: x, imageID: y}, {name: b, restartCount: 2147483647, ready: false, image: x, imageID: y}, {name: c, restartCount: 2147483647, ready: false, image: x, imageID: y}, {name: d, restartCount: 2, ready: false, image: x, imageID: y}]}",
    );
    assert_eq!(Pod::try_from(&pod).expect("valid").restarts, u32::MAX);
}

/// The mesh whose redirect rules live in a pod's netns, and the identity they exempt.
#[test]
fn mesh_detection_from_annotations_and_proxy_containers() {
    let istio = |uid, gid| Some(Mesh::Istio { uid, gid });
    let cases: &[(&str, &str, Option<Mesh>)] = &[
        ("no mesh", "spec: {containers: [{name: app}]}", None),
        (
            "istio sidecar container, defaults",
            "spec: {containers: [{name: app}, {name: istio-proxy}]}",
            istio(1337, 1337),
        ),
        (
            "istio status annotation alone",
            "metadata: {annotations: {sidecar.istio.io/status: '{\"containers\":[\"istio-proxy\"]}'}}\nspec: {containers: [{name: app}]}",
            istio(1337, 1337),
        ),
        (
            "istio proxy uid and gid from its security context (OpenShift ranges)",
            "spec: {containers: [{name: app}, {name: istio-proxy, securityContext: {runAsUser: 1000670000, runAsGroup: 1000670001}}]}",
            istio(1000670000, 1000670001),
        ),
        (
            "istio TPROXY: the proxy runs as root, its rules still exempt 1337",
            "spec: {containers: [{name: istio-proxy, securityContext: {runAsUser: 0, runAsGroup: 1337}}]}",
            istio(1337, 1337),
        ),
        (
            "istio native sidecar among the init containers",
            "spec: {initContainers: [{name: istio-proxy, restartPolicy: Always}], containers: [{name: app}]}",
            istio(1337, 1337),
        ),
        (
            "istio interception NONE: no redirect",
            "metadata: {annotations: {sidecar.istio.io/interceptionMode: NONE}}\nspec: {containers: [{name: istio-proxy}]}",
            None,
        ),
        (
            "linkerd proxy container, default uid",
            "spec: {containers: [{name: app}, {name: linkerd-proxy}]}",
            Some(Mesh::Linkerd { uid: 2102 }),
        ),
        (
            "linkerd version annotation with a uid override",
            "metadata: {annotations: {linkerd.io/proxy-version: stable-2.14.10, config.linkerd.io/proxy-uid: '4242'}}\nspec: {containers: [{name: app}]}",
            Some(Mesh::Linkerd { uid: 4242 }),
        ),
        (
            "linkerd: the container's runAsUser wins over the annotation",
            "metadata: {annotations: {config.linkerd.io/proxy-uid: '4242'}}\nspec: {containers: [{name: linkerd-proxy, securityContext: {runAsUser: 3000}}]}",
            Some(Mesh::Linkerd { uid: 3000 }),
        ),
        (
            "linkerd: a malformed uid annotation falls back to the default",
            "metadata: {annotations: {linkerd.io/proxy-version: x, config.linkerd.io/proxy-uid: lots}}\nspec: {containers: [{name: app}]}",
            Some(Mesh::Linkerd { uid: 2102 }),
        ),
        (
            "istio ambient, enabled",
            "metadata: {annotations: {ambient.istio.io/redirection: enabled}}\nspec: {containers: [{name: app}]}",
            Some(Mesh::IstioAmbient),
        ),
        (
            "istio ambient, pending: rules in place, traffic captured",
            "metadata: {annotations: {ambient.istio.io/redirection: pending}}\nspec: {containers: [{name: app}]}",
            Some(Mesh::IstioAmbient),
        ),
        (
            "istio ambient, disabled",
            "metadata: {annotations: {ambient.istio.io/redirection: disabled}}\nspec: {containers: [{name: app}]}",
            None,
        ),
        (
            "a negative runAsUser is ignored",
            "spec: {containers: [{name: istio-proxy, securityContext: {runAsUser: -5}}]}",
            istio(1337, 1337),
        ),
    ];
    for (name, yaml, want) in cases {
        let mut doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml).expect("yaml");
        let meta = doc
            .as_mapping_mut()
            .expect("mapping")
            .entry("metadata".into())
            .or_insert_with(|| serde_yaml_ng::Value::Mapping(Default::default()));
        meta.as_mapping_mut()
            .expect("metadata mapping")
            .insert("name".into(), "web".into());
        let pod: corev1::Pod = serde_yaml_ng::from_value(doc).expect("pod");
        let converted = Pod::try_from(&pod).expect(name);
        assert_eq!(converted.mesh, *want, "{name}");
    }
}
