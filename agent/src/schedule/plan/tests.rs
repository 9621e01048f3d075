//! Planning: selection, named ports, skipping, stable sampling across nodes, errors.

use std::collections::BTreeSet;

use super::*;
use crate::cluster::SpecRef;
use crate::cluster::index::Apply;
use crate::pair::pair_id;
use crate::schedule::fixtures::{cluster_probe_spec, index, key, namespace, pod, probe_spec};

/// shop: frontend-1 (node-1), frontend-2 (node-2), api (node-2); payments: gateway (node-1).
fn shop() -> Index {
    index(
        vec![
            namespace("shop", &[("team", "shop")]),
            namespace("payments", &[("team", "payments")]),
        ],
        vec![
            pod(
                "shop",
                "frontend-1",
                &[("app", "frontend")],
                "10.244.1.10",
                "node-1",
            ),
            pod(
                "shop",
                "frontend-2",
                &[("app", "frontend")],
                "10.244.2.10",
                "node-2",
            ),
            pod("shop", "api", &[("app", "api")], "10.244.2.11", "node-2"),
            pod(
                "payments",
                "gateway",
                &[("app", "gateway")],
                "10.244.1.20",
                "node-1",
            ),
        ],
    )
}

const FRONTEND_PATHS: &str = "  from: {podSelector: {matchLabels: {app: frontend}}}
  to:
    - podSelector: {matchLabels: {app: api}}
      ports: [{port: 8080}, {port: http}, {port: dns, protocol: UDP}]
    - namespaceSelector: {matchLabels: {team: payments}}
      podSelector: {matchLabels: {app: gateway}}
      ports: [{port: 8443}]
    - dns: api.shop.svc.cluster.local
    - ip: 192.0.2.10
      ports: [{port: 443}]
    - host: example.com
      ports: [{port: 443}]
  interval: 30s
  timeout: 2s
";

fn rendered(plan: &Plan) -> Vec<String> {
    let mut out: Vec<String> = plan.pairs.iter().map(ToString::to_string).collect();
    out.sort();
    out
}

#[test]
fn pairs_of_this_node_with_named_ports_resolved_and_duplicates_collapsed() {
    let index = shop();
    let spec = probe_spec("shop", "frontend-paths", FRONTEND_PATHS);
    let plan = plan(&index, &spec, "node-1").unwrap();
    assert_eq!(plan.spec, SpecRef::Namespaced(key("shop/frontend-paths")));
    assert_eq!(plan.narrowed, None);
    assert_eq!(plan.interval, Duration::from_secs(30));
    assert_eq!(plan.timeout, Duration::from_secs(2));
    assert_eq!(plan.expect, Expectation::Allow);
    // `8080` and `http` are one pair; `dns` resolves to 53/UDP on the api pod.
    assert_eq!(
        rendered(&plan),
        [
            "shop/frontend-1 -> 192.0.2.10:443/TCP",
            "shop/frontend-1 -> dns api.shop.svc.cluster.local",
            "shop/frontend-1 -> example.com:443/TCP",
            "shop/frontend-1 -> payments/gateway:8443/TCP",
            "shop/frontend-1 -> shop/api:53/UDP",
            "shop/frontend-1 -> shop/api:8080/TCP",
        ]
    );
    let api = plan
        .pairs
        .iter()
        .find(|p| p.target.pod() == Some(&key("shop/api")))
        .unwrap();
    assert_eq!(api.target.ip(), Some("10.244.2.11".parse().unwrap()));
    assert_eq!(plan.candidates, 12, "2 sources x 6 destinations");
    assert_eq!(plan.sampled, 12);
    assert_eq!(plan.skipped, Skipped::default());
    // Ids are the public pair_id of (spec, from, target), and sorted.
    for pair in &plan.pairs {
        assert_eq!(pair.id, pair_id(&pair.spec, &pair.from, &pair.target));
    }
    assert!(plan.pairs.windows(2).all(|w| w[0].id < w[1].id));
    // node-2 gets the other source's six pairs.
    assert_eq!(plan_for(&index, &spec, "node-2").len(), 6);
}

fn plan_for(index: &Index, spec: &Spec, node: &str) -> Vec<Pair> {
    plan(index, spec, node).unwrap().pairs
}

/// How a table case's spec is created.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// A ProbeSpec in `shop`.
    InShop,
    /// A ClusterProbeSpec.
    Cluster,
}

#[test]
fn namespace_selectors_on_sources_and_targets() {
    use Kind::{Cluster, InShop};
    let index = shop();
    let cases: &[(&str, Kind, &str, &[&str])] = &[
        (
            "absent from.namespaceSelector: the spec's namespace only (gateway is not a source)",
            InShop,
            "  from: {podSelector: {}}\n  to: [{podSelector: {matchLabels: {app: gateway}}, namespaceSelector: {}, ports: [{port: 1}]}]\n",
            &["shop/frontend-1 -> payments/gateway:1/TCP"],
        ),
        (
            "from.namespaceSelector {} of a ProbeSpec: narrowed to its namespace",
            InShop,
            "  from: {podSelector: {matchLabels: {app: gateway}}, namespaceSelector: {}}\n  to: [{podSelector: {matchLabels: {app: api}}, ports: [{port: 1}]}]\n",
            &[],
        ),
        (
            "from.namespaceSelector {} of a ClusterProbeSpec: every namespace",
            Cluster,
            "  from: {podSelector: {matchLabels: {app: gateway}}, namespaceSelector: {}}\n  to: [{podSelector: {matchLabels: {app: api}}, namespaceSelector: {matchLabels: {team: shop}}, ports: [{port: 1}]}]\n",
            &["payments/gateway -> shop/api:1/TCP"],
        ),
        (
            "absent selectors of a ClusterProbeSpec: every namespace, for sources and targets",
            Cluster,
            "  from: {podSelector: {matchLabels: {app: gateway}}}\n  to: [{podSelector: {matchLabels: {app: api}}, ports: [{port: 1}]}]\n",
            &["payments/gateway -> shop/api:1/TCP"],
        ),
        (
            "target namespaceSelector alone: every pod of those namespaces",
            InShop,
            "  from: {podSelector: {matchLabels: {app: frontend}}}\n  to: [{namespaceSelector: {matchLabels: {team: payments}}, ports: [{port: 2}]}]\n",
            &["shop/frontend-1 -> payments/gateway:2/TCP"],
        ),
        (
            "target podSelector alone: the spec's namespace",
            InShop,
            "  from: {podSelector: {matchLabels: {app: frontend}}}\n  to: [{podSelector: {matchLabels: {app: gateway}}, ports: [{port: 2}]}]\n",
            &[],
        ),
        (
            "matchExpressions",
            InShop,
            "  from: {podSelector: {matchExpressions: [{key: app, operator: NotIn, values: [api]}]}}\n  to: [{ip: 192.0.2.1, ports: [{port: 3}]}]\n",
            &["shop/frontend-1 -> 192.0.2.1:3/TCP"],
        ),
    ];
    for (name, kind, body, want) in cases {
        let spec = match kind {
            InShop => probe_spec("shop", "s", body),
            Cluster => cluster_probe_spec("s", body),
        };
        assert_eq!(
            rendered(&plan(&index, &spec, "node-1").unwrap()),
            *want,
            "{name}"
        );
    }
}

#[test]
fn a_probe_spec_reaching_other_namespaces_plans_its_own_and_says_what_it_left_out() {
    let index = shop();
    let body = "  from: {podSelector: {}, namespaceSelector: {}}\n  to: [{dns: a.b}]\n";
    let narrowed = plan(&index, &probe_spec("shop", "s", body), "node-1").unwrap();
    assert_eq!(rendered(&narrowed), ["shop/frontend-1 -> dns a.b"]);
    let left_out = narrowed.narrowed.expect("narrowed");
    assert_eq!(left_out.ignored, ["payments"]);
    assert_eq!(left_out.selector, "{}");

    let cluster = plan(&index, &cluster_probe_spec("s", body), "node-1").unwrap();
    assert_eq!(
        rendered(&cluster),
        ["payments/gateway -> dns a.b", "shop/frontend-1 -> dns a.b"]
    );
    assert_eq!(cluster.narrowed, None, "a ClusterProbeSpec is not narrowed");
}

#[test]
fn pair_ids_tell_the_spec_kinds_apart() {
    let from = key("shop/frontend-1");
    let target = PairTarget::Dns { name: "a.b".into() };
    let ids: Vec<PairId> = [
        SpecRef::Namespaced(key("shop/a")),
        SpecRef::Namespaced(key("default/a")),
        SpecRef::Cluster("a".into()),
        SpecRef::Cluster("shop/a".into()),
        SpecRef::Cluster("b".into()),
    ]
    .iter()
    .map(|spec| pair_id(spec, &from, &target))
    .collect();
    let distinct: BTreeSet<PairId> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), ids.len(), "{ids:?}");
    // A ProbeSpec's ids are those of earlier agent versions (pinned): agents of different
    // versions sample the same pairs during a rolling upgrade.
    assert_eq!(ids[0], PairId(392_035_619_218_298_677));
}

#[test]
fn pods_that_cannot_take_part_are_skipped_and_counted_not_failed() {
    type Edit = fn(&mut Pod);
    let cases: &[(&str, Edit, Option<SkipReason>)] = &[
        ("running", |_| {}, None),
        (
            "terminating",
            |p| p.terminating = true,
            Some(SkipReason::Terminating),
        ),
        (
            "pending",
            |p| p.phase = PodPhase::Pending,
            Some(SkipReason::NotRunning),
        ),
        (
            "succeeded",
            |p| p.phase = PodPhase::Succeeded,
            Some(SkipReason::NotRunning),
        ),
        ("no IP", |p| p.ips.clear(), Some(SkipReason::NoIp)),
        (
            "hostNetwork",
            |p| p.host_network = true,
            Some(SkipReason::HostNetwork),
        ),
        (
            "terminating wins over not running",
            |p| {
                p.terminating = true;
                p.phase = PodPhase::Failed;
            },
            Some(SkipReason::Terminating),
        ),
    ];
    let spec = probe_spec(
        "shop",
        "s",
        "  from: {podSelector: {matchLabels: {role: client}}}\n  to: [{podSelector: {matchLabels: {role: server}}, ports: [{port: 80}]}]\n",
    );
    for (name, edit, reason) in cases {
        // As a source on this node.
        let mut source = pod(
            "shop",
            "client",
            &[("role", "client")],
            "10.244.1.2",
            "node-1",
        );
        edit(&mut source);
        let server = pod(
            "shop",
            "server",
            &[("role", "server")],
            "10.244.2.2",
            "node-2",
        );
        let plan_ = plan(&index(vec![], vec![source, server]), &spec, "node-1").unwrap();
        let as_source_skipped = match reason {
            // A hostNetwork pod is a fine destination but no source.
            Some(r) => {
                assert!(plan_.pairs.is_empty(), "{name}: source probed");
                assert_eq!(plan_.skipped.sources.get(*r), 1, "{name}");
                assert_eq!(plan_.skipped.sources.total(), 1, "{name}");
                true
            }
            None => {
                assert_eq!(plan_.pairs.len(), 1, "{name}");
                false
            }
        };
        assert!(as_source_skipped == reason.is_some());
        // The same pod on another node is not this node's business.
        assert_eq!(
            plan(
                &index(
                    vec![],
                    vec![{
                        let mut p = pod(
                            "shop",
                            "client",
                            &[("role", "client")],
                            "10.244.3.2",
                            "node-3",
                        );
                        edit(&mut p);
                        p
                    }]
                ),
                &spec,
                "node-1"
            )
            .unwrap()
            .skipped
            .sources
            .total(),
            0,
            "{name}: other node's pod counted"
        );

        // As a destination.
        let client = pod(
            "shop",
            "client",
            &[("role", "client")],
            "10.244.1.2",
            "node-1",
        );
        let mut server = pod(
            "shop",
            "server",
            &[("role", "server")],
            "10.244.2.2",
            "node-2",
        );
        edit(&mut server);
        let plan_ = plan(&index(vec![], vec![client, server]), &spec, "node-1").unwrap();
        match reason {
            Some(SkipReason::HostNetwork) | None => assert_eq!(plan_.pairs.len(), 1, "{name}"),
            Some(r) => {
                assert!(plan_.pairs.is_empty(), "{name}: destination probed");
                assert_eq!(plan_.skipped.destinations.get(*r), 1, "{name}");
                assert_eq!(plan_.candidates, 0, "{name}");
            }
        }
    }
}

#[test]
fn unresolved_named_ports_and_self_pairs_are_counted() {
    let index = shop();
    let spec = probe_spec(
        "shop",
        "s",
        "  from: {podSelector: {}}\n  to: [{podSelector: {}, ports: [{port: grpc}, {port: http}]}]\n",
    );
    let plan = plan(&index, &spec, "node-2").unwrap();
    // 3 shop pods: `grpc` resolves on none, `http` on all; each pod skips itself.
    assert_eq!(plan.skipped.unresolved_ports, 3);
    assert_eq!(plan.skipped.self_pairs, 3);
    assert_eq!(plan.candidates, 6);
    assert_eq!(
        rendered(&plan),
        [
            "shop/api -> shop/frontend-1:8080/TCP",
            "shop/api -> shop/frontend-2:8080/TCP",
            "shop/frontend-2 -> shop/api:8080/TCP",
            "shop/frontend-2 -> shop/frontend-1:8080/TCP",
        ]
    );
}

/// A cluster of `nodes` x `per_node` sources and as many servers with three ports.
fn big_cluster(nodes: usize, per_node: usize) -> Index {
    let mut pods = Vec::new();
    for n in 1..=nodes {
        for i in 0..per_node {
            let node = format!("node-{n}");
            pods.push(pod(
                "load",
                &format!("client-{n}-{i}"),
                &[("role", "client")],
                &format!("10.244.{n}.{}", i + 1),
                &node,
            ));
            pods.push(pod(
                "load",
                &format!("server-{n}-{i}"),
                &[("role", "server")],
                &format!("10.244.{n}.{}", i + 101),
                &node,
            ));
        }
    }
    index(vec![namespace("load", &[])], pods)
}

fn load_spec(max_pairs: u32) -> Spec {
    probe_spec(
        "load",
        "mesh",
        &format!(
            "  from: {{podSelector: {{matchLabels: {{role: client}}}}}}\n  to: [{{podSelector: {{matchLabels: {{role: server}}}}, ports: [{{port: 80}}, {{port: 443}}, {{port: 53, protocol: UDP}}]}}]\n  maxPairs: {max_pairs}\n"
        ),
    )
}

#[test]
fn sampling_is_stable_and_nodes_agree_without_talking() {
    let nodes = ["node-1", "node-2", "node-3"];
    let index = big_cluster(3, 10); // 30 sources x 30 servers x 3 ports = 2700 candidates
    for max_pairs in [1u32, 7, 50, 500, 2700, 5000] {
        let spec = load_spec(max_pairs);
        let plans: Vec<Plan> = nodes
            .iter()
            .map(|n| plan(&index, &spec, n).unwrap())
            .collect();
        let mut all: Vec<PairId> = Vec::new();
        for (plan, node) in plans.iter().zip(nodes) {
            assert_eq!(plan.candidates, 2700);
            assert_eq!(plan.sampled, 2700.min(max_pairs as usize));
            assert_eq!(plan.skipped.sampled_out, 2700 - plan.sampled);
            for pair in &plan.pairs {
                let source = index.pod(&pair.from).unwrap();
                assert_eq!(
                    source.node_name.as_deref(),
                    Some(node),
                    "pair of another node"
                );
            }
            all.extend(plan.pairs.iter().map(|p| p.id));
        }
        // The nodes' shares are disjoint and make up exactly the sample.
        let unique: BTreeSet<PairId> = all.iter().copied().collect();
        assert_eq!(
            unique.len(),
            all.len(),
            "maxPairs {max_pairs}: a pair on two nodes"
        );
        assert_eq!(
            all.len(),
            2700.min(max_pairs as usize),
            "maxPairs {max_pairs}"
        );
        // ... and the sample is the lowest ids of the unbounded plan.
        let everything: BTreeSet<PairId> = nodes
            .iter()
            .flat_map(|n| plan_for(&index, &load_spec(10_000), n))
            .map(|p| p.id)
            .collect();
        let lowest: BTreeSet<PairId> = everything
            .iter()
            .copied()
            .take(max_pairs as usize)
            .collect();
        assert_eq!(unique, lowest, "maxPairs {max_pairs}");
    }
}

#[test]
fn sampling_does_not_depend_on_index_history_or_pod_ips() {
    let spec = load_spec(40);
    let before = plan_for(&big_cluster(2, 8), &spec, "node-1");
    // Same objects applied in reverse order, and every pod IP changed: same pairs (ids do not
    // hash IPs; targets carry the new IPs).
    let mut pods: Vec<Pod> = big_cluster(2, 8).pods().cloned().collect();
    pods.reverse();
    let mut index = Index::new();
    for mut p in pods {
        p.ips = vec![
            format!(
                "10.99.{}.{}",
                p.name.len(),
                p.name.len() + p.namespace.len()
            )
            .parse()
            .unwrap(),
        ];
        index.apply(p);
    }
    let after = plan_for(&index, &spec, "node-1");
    let ids = |v: &[Pair]| {
        v.iter()
            .map(|p| (p.id, p.from.clone(), p.target.pod().cloned()))
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&before), ids(&after));
    // A pod that stops running leaves the sample and a new pair takes its place, on every
    // node alike; the rest of the sample stays.
    let mut index = big_cluster(2, 8);
    let mut gone = index.pod(&key("load/client-1-0")).unwrap().clone();
    gone.phase = PodPhase::Failed;
    index.apply(gone);
    let shrunk = plan(&index, &spec, "node-1").unwrap();
    assert_eq!(shrunk.sampled, 40);
    assert_eq!(shrunk.skipped.sources.not_running, 1);
    let kept = before
        .iter()
        .filter(|p| p.from != key("load/client-1-0"))
        .all(|p| shrunk.pairs.iter().any(|q| q.id == p.id));
    assert!(kept, "pairs of other sources must stay in the sample");
}

#[test]
fn errors_name_the_field_and_have_bounded_labels() {
    let index = shop();
    let cases: Vec<(Spec, &str, &str)> = vec![
        (
            cluster_probe_spec(
                "s",
                "  from: {podSelector: {}, namespaceSelector: {matchLabels: {'bad key!': x}}}\n  to: [{dns: a.b}]\n",
            ),
            "invalid_selector",
            "ClusterProbeSpec s: spec.from.namespaceSelector",
        ),
        (
            probe_spec(
                "shop",
                "s",
                "  from: {podSelector: {matchLabels: {'bad key!': x}}}\n  to: [{dns: a.b}]\n",
            ),
            "invalid_selector",
            "ProbeSpec shop/s: spec.from.podSelector: matchLabels.bad key!",
        ),
        (
            probe_spec(
                "shop",
                "s",
                "  from: {podSelector: {}}\n  to: [{dns: a.b}, {dns: a.b, ip: 1.2.3.4}]\n",
            ),
            "invalid_target",
            "spec.to[1]",
        ),
        (
            probe_spec(
                "shop",
                "s",
                "  from: {podSelector: {}}\n  to: [{ip: 1.2.3.4, ports: [{port: 70000}]}]\n",
            ),
            "invalid_port",
            "spec.to[0].ports[0].port: 70000",
        ),
        (
            probe_spec(
                "shop",
                "s",
                "  from: {podSelector: {}}\n  to: [{host: a.b, ports: [{port: http}]}]\n",
            ),
            "invalid_port",
            "\"http\" is not a port number",
        ),
        (
            probe_spec(
                "shop",
                "s",
                "  from: {podSelector: {}}\n  to: [{dns: a.b}]\n  interval: 1.5s\n",
            ),
            "invalid_duration",
            "spec.interval",
        ),
        (
            probe_spec(
                "shop",
                "s",
                "  from: {podSelector: {}}\n  to: [{podSelector: {matchExpressions: [{key: a, operator: In}]}, ports: [{port: 1}]}]\n",
            ),
            "invalid_selector",
            "spec.to[0].podSelector",
        ),
        (
            probe_spec(
                "shop",
                "s",
                "  from: {podSelector: {}}\n  to: [{dns: a.b}, {ip: 169.254.169.254, ports: [{port: 80}]}]\n",
            ),
            "refused_target",
            "spec.to[1].ip: 169.254.169.254 is a link-local address",
        ),
        (
            probe_spec(
                "shop",
                "s",
                "  from: {podSelector: {}}\n  to: [{ip: 127.0.0.1, ports: [{port: 15000}]}]\n",
            ),
            "refused_target",
            "is a loopback address",
        ),
    ];
    for (spec, label, fragment) in cases {
        let error = plan(&index, &spec, "node-1").unwrap_err();
        assert_eq!(error.metric_label(), label, "{error}");
        assert!(error.to_string().contains(fragment), "{error}");
    }
}

#[test]
fn targets_render_for_humans() {
    let cases = [
        (
            PairTarget::Ip {
                ip: "fd00::1".parse().unwrap(),
                port: 53,
                protocol: Protocol::Udp,
            },
            "[fd00::1]:53/UDP",
        ),
        (PairTarget::Dns { name: "a.b".into() }, "dns a.b"),
        (
            PairTarget::Host {
                name: "a.b".into(),
                port: 443,
                protocol: Protocol::Tcp,
            },
            "a.b:443/TCP",
        ),
    ];
    for (target, want) in cases {
        assert_eq!(target.to_string(), want);
    }
    assert_eq!(PairId(0xab).to_string(), "00000000000000ab");
}

/// A Service target: one pair per (source, Service port), the port named by number or by the
/// Service port's name; a name the Service does not have, or a Service not (yet) known, leaves
/// that port out (counted); a ClusterProbeSpec must name the Service's namespace.
#[test]
fn service_targets_are_one_pair_per_source_and_service_port() {
    let mut index = shop();
    let service = serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "api", "namespace": "shop"},
        "spec": {"clusterIP": "10.244.255.10", "selector": {"app": "api"},
                 "ports": [{"name": "web", "port": 80, "targetPort": 8080},
                           {"name": "dns", "port": 53, "protocol": "UDP"}]}
    });
    let service: k8s_openapi::api::core::v1::Service = serde_json::from_value(service).unwrap();
    index.apply(crate::cluster::service::Service::try_from(&service).unwrap());
    let spec = probe_spec(
        "shop",
        "api-service",
        "  from: {podSelector: {matchLabels: {app: frontend}}}
  to:
    - service: {name: api}
      ports: [{port: 80}, {port: web}, {port: dns, protocol: UDP}, {port: grpc}]
    - service: {name: other, namespace: payments}
      ports: [{port: 443}, {port: https}]
",
    );
    let planned = plan(&index, &spec, "node-1").unwrap();
    assert_eq!(
        rendered(&planned),
        [
            "shop/frontend-1 -> svc payments/other:443/TCP",
            "shop/frontend-1 -> svc shop/api:53/UDP",
            "shop/frontend-1 -> svc shop/api:80/TCP",
        ],
        "80 and web are one pair; grpc and https do not resolve"
    );
    assert_eq!(planned.skipped.unresolved_ports, 2);
    let cluster = cluster_probe_spec(
        "api-everywhere",
        "  from: {podSelector: {}}
  to: [{service: {name: api}, ports: [{port: 80}]}]
",
    );
    let error = plan(&index, &cluster, "node-1").unwrap_err().to_string();
    assert!(
        error.contains("spec.to[0].service.namespace is required"),
        "{error}"
    );
}
