//! Which pairs each kind of change re-probes.

use super::*;
use crate::cluster::model::Protocol;
use crate::schedule::fixtures::{index, key, namespace, pair, pod, pod_target, policy};

/// shop/frontend (node-1) -> shop/api, payments/gateway, an IP that is payments/ledger, an
/// external IP, a DNS name and a host; plus shop/batch -> shop/api.
fn pairs() -> Vec<(&'static str, Pair)> {
    vec![
        (
            "fe->api",
            pair("shop/frontend", pod_target("shop/api", "10.0.0.2", 8080)),
        ),
        (
            "fe->gw",
            pair(
                "shop/frontend",
                pod_target("payments/gateway", "10.0.1.2", 8443),
            ),
        ),
        (
            "fe->ledger-ip",
            pair(
                "shop/frontend",
                PairTarget::Ip {
                    ip: "10.0.1.3".parse().unwrap(),
                    port: 5432,
                    protocol: Protocol::Tcp,
                },
            ),
        ),
        (
            "fe->external",
            pair(
                "shop/frontend",
                PairTarget::Ip {
                    ip: "192.0.2.10".parse().unwrap(),
                    port: 443,
                    protocol: Protocol::Tcp,
                },
            ),
        ),
        (
            "fe->dns",
            pair(
                "shop/frontend",
                PairTarget::Dns {
                    name: "api.shop.svc.cluster.local".into(),
                },
            ),
        ),
        (
            "fe->host",
            pair(
                "shop/frontend",
                PairTarget::Host {
                    name: "example.com".into(),
                    port: 443,
                    protocol: Protocol::Tcp,
                },
            ),
        ),
        (
            "batch->api",
            pair("shop/batch", pod_target("shop/api", "10.0.0.2", 8080)),
        ),
    ]
}

fn cluster() -> Index {
    index(
        vec![namespace("shop", &[]), namespace("payments", &[])],
        vec![
            pod(
                "shop",
                "frontend",
                &[("app", "frontend")],
                "10.0.0.1",
                "node-1",
            ),
            pod("shop", "api", &[("app", "api")], "10.0.0.2", "node-2"),
            pod("shop", "batch", &[("app", "batch")], "10.0.0.3", "node-1"),
            pod(
                "payments",
                "gateway",
                &[("app", "gateway")],
                "10.0.1.2",
                "node-2",
            ),
            pod(
                "payments",
                "ledger",
                &[("app", "ledger")],
                "10.0.1.3",
                "node-2",
            ),
        ],
    )
}

#[test]
fn each_change_kind_reprobes_the_pairs_it_can_affect() {
    let index = cluster();
    let pairs = pairs();
    let ingress_api = policy("shop", "api-in", &[("app", "api")], true, false);
    let egress_fe = policy("shop", "fe-out", &[("app", "frontend")], false, true);
    let egress_api = policy("shop", "api-out", &[("app", "api")], false, true);
    let deny_all_payments = policy("payments", "deny-all", &[], true, true);
    let ingress_frontend_only = policy("shop", "fe-in", &[("app", "frontend")], true, false);
    let ingress_ledger = policy("payments", "ledger-in", &[("app", "ledger")], true, false);
    let no_match = policy("shop", "nothing", &[("app", "nope")], true, true);
    let frontend = key("shop/frontend");
    let api = key("shop/api");
    let gateway = key("payments/gateway");
    let ledger = key("payments/ledger");
    let cases: Vec<(&str, ClusterChange<'_>, &[&str])> = vec![
        (
            "ingress policy on api created",
            ClusterChange::Policy {
                old: None,
                new: Some(&ingress_api),
            },
            &["fe->api", "batch->api"],
        ),
        (
            "egress policy on frontend deleted: every frontend pair, DNS and host included",
            ClusterChange::Policy {
                old: Some(&egress_fe),
                new: None,
            },
            &[
                "fe->api",
                "fe->gw",
                "fe->ledger-ip",
                "fe->external",
                "fe->dns",
                "fe->host",
            ],
        ),
        (
            "egress policy on api: api is no source here",
            ClusterChange::Policy {
                old: None,
                new: Some(&egress_api),
            },
            &[],
        ),
        (
            "ingress on frontend: frontend is no destination",
            ClusterChange::Policy {
                old: Some(&ingress_frontend_only),
                new: None,
            },
            &[],
        ),
        (
            "update from ingress-on-api to egress-on-frontend: old and new both count",
            ClusterChange::Policy {
                old: Some(&ingress_api),
                new: Some(&egress_fe),
            },
            &[
                "fe->api",
                "fe->gw",
                "fe->ledger-ip",
                "fe->external",
                "fe->dns",
                "fe->host",
                "batch->api",
            ],
        ),
        (
            "deny-all in payments: destinations there, the IP target resolved to ledger",
            ClusterChange::Policy {
                old: None,
                new: Some(&deny_all_payments),
            },
            &["fe->gw", "fe->ledger-ip"],
        ),
        (
            "ingress on ledger reaches the IP target",
            ClusterChange::Policy {
                old: None,
                new: Some(&ingress_ledger),
            },
            &["fe->ledger-ip"],
        ),
        (
            "a policy selecting nobody",
            ClusterChange::Policy {
                old: None,
                new: Some(&no_match),
            },
            &[],
        ),
        (
            "payments labels: pairs into payments, plus DNS and host (server namespace unknown)",
            ClusterChange::NamespaceLabels {
                namespace: "payments",
            },
            &["fe->gw", "fe->ledger-ip", "fe->dns", "fe->host"],
        ),
        (
            "shop labels: every pair has a shop pod",
            ClusterChange::NamespaceLabels { namespace: "shop" },
            &[
                "fe->api",
                "fe->gw",
                "fe->ledger-ip",
                "fe->external",
                "fe->dns",
                "fe->host",
                "batch->api",
            ],
        ),
        (
            "unrelated namespace labels: only DNS and host",
            ClusterChange::NamespaceLabels {
                namespace: "monitoring",
            },
            &["fe->dns", "fe->host"],
        ),
        (
            "api labels",
            ClusterChange::PodLabels { pod: &api },
            &["fe->api", "batch->api"],
        ),
        (
            "frontend labels",
            ClusterChange::PodLabels { pod: &frontend },
            &[
                "fe->api",
                "fe->gw",
                "fe->ledger-ip",
                "fe->external",
                "fe->dns",
                "fe->host",
            ],
        ),
        (
            "gateway labels",
            ClusterChange::PodLabels { pod: &gateway },
            &["fe->gw"],
        ),
        (
            "ledger labels reach the IP target",
            ClusterChange::PodLabels { pod: &ledger },
            &["fe->ledger-ip"],
        ),
    ];
    for (name, change, want) in cases {
        let got = affected_pairs(pairs.iter().map(|(_, p)| p), &index, &change);
        let mut want_ids: Vec<PairId> = pairs
            .iter()
            .filter(|(n, _)| want.contains(n))
            .map(|(_, p)| p.id)
            .collect();
        want_ids.sort();
        let names = |ids: &[PairId]| -> Vec<&str> {
            pairs
                .iter()
                .filter(|(_, p)| ids.contains(&p.id))
                .map(|(n, _)| *n)
                .collect()
        };
        assert_eq!(names(&got), names(&want_ids), "{name}");
        assert_eq!(got, want_ids, "{name}: sorted ids");
    }
}

#[test]
fn a_deleted_destination_pod_counts_as_selected_in_its_namespace() {
    let mut index = cluster();
    crate::cluster::index::Apply::<crate::cluster::model::Pod>::delete(
        &mut index,
        &key("shop/api"),
    );
    let pairs = pairs();
    let narrow = policy("shop", "api-in", &[("app", "api")], true, false);
    let got = affected_pairs(
        pairs.iter().map(|(_, p)| p),
        &index,
        &ClusterChange::Policy {
            old: None,
            new: Some(&narrow),
        },
    );
    assert_eq!(got.len(), 2, "both pairs to the vanished api pod");
}
