use std::time::Duration;

use kube::runtime::watcher::Event;
use serde_json::{Value, json};

use super::*;
use crate::cluster::fake_api::FakeApi;
use crate::cluster::watch::CniAgentMatcher;
use crate::cluster::watch::tests::eventually;

fn served(apis: &[(&'static str, &'static str, &'static str)]) -> BTreeSet<ServedAs> {
    apis.iter()
        .map(|(group, version, plural)| ServedAs {
            group,
            version,
            plural,
        })
        .collect()
}

#[test]
fn each_kind_watches_the_first_of_its_apis_that_is_served() {
    let calico = OptionalKind::Cni(CniPolicyKind::CalicoNetworkPolicy);
    let cnp = OptionalKind::Tiered(TieredKind::ClusterNetworkPolicy);
    let anp = OptionalKind::Tiered(TieredKind::AdminNetworkPolicy);
    let kinds = [calico, cnp, anp];
    type Case = (
        &'static str,
        BTreeSet<ServedAs>,
        Vec<(OptionalKind, &'static str)>,
    );
    let cases: Vec<Case> = vec![
        ("nothing served", served(&[]), vec![]),
        (
            "the CRDs of Calico only",
            served(&[("crd.projectcalico.org", "v1", "networkpolicies")]),
            vec![(calico, "crd.projectcalico.org/v1")],
        ),
        (
            "Calico's API server in front of its CRDs: the v3 API",
            served(&[
                ("crd.projectcalico.org", "v1", "networkpolicies"),
                ("projectcalico.org", "v3", "networkpolicies"),
            ]),
            vec![(calico, "projectcalico.org/v3")],
        ),
        (
            "ClusterNetworkPolicy without the v1alpha1 kinds",
            served(&[(
                "policy.networking.k8s.io",
                "v1alpha2",
                "clusternetworkpolicies",
            )]),
            vec![(cnp, "policy.networking.k8s.io/v1alpha2")],
        ),
    ];
    for (name, served, want) in cases {
        let got: Vec<(OptionalKind, String)> = choose(&kinds, &served)
            .into_iter()
            .map(|(kind, api)| (kind, api.api_version()))
            .collect();
        let want: Vec<(OptionalKind, String)> =
            want.into_iter().map(|(k, v)| (k, v.to_string())).collect();
        assert_eq!(got, want, "{name}");
    }
}

fn cnp_json(name: &str, action: &str) -> Value {
    json!({
        "apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
        "metadata": {"name": name},
        "spec": {"tier": "Admin", "priority": 5,
                 "subject": {"namespaces": {}},
                 "ingress": [{"name": "r", "action": action,
                              "from": [{"namespaces": {"matchLabels": {"team": "x"}}}]}]}
    })
}

fn dynamic(value: Value) -> DynamicObject {
    serde_json::from_value(value).expect("an object")
}

fn other_policy_changes(changes: &ChangeLog) -> Vec<String> {
    changes
        .iter()
        .filter_map(|c| match &c.kind {
            ChangeKind::OtherPolicy { policy, op, .. } => Some(format!("{policy} {op}")),
            _ => None,
        })
        .collect()
}

#[test]
fn tiered_sink_records_creations_updates_and_deletions_after_the_first_list() {
    let mut index = Index::new();
    let mut changes = ChangeLog::default();
    let mut feed: Feed<TieredPolicy> = Feed::new();
    let at = SystemTime::UNIX_EPOCH;
    let mut play = |event: Event<DynamicObject>, index: &mut Index, changes: &mut ChangeLog| {
        let mut sink = TieredSink {
            index,
            changes,
            kind: TieredKind::ClusterNetworkPolicy,
            api_version: "policy.networking.k8s.io/v1alpha2",
        };
        feed.handle(&mut sink, event, at)
    };
    for event in [
        Event::Init,
        Event::InitApply(dynamic(cnp_json("a", "Deny"))),
        Event::InitDone,
    ] {
        play(event, &mut index, &mut changes);
    }
    assert!(
        other_policy_changes(&changes).is_empty(),
        "the first list is no change"
    );
    assert!(index.tiered_policy("ClusterNetworkPolicy/a").is_some());

    play(
        Event::Apply(dynamic(cnp_json("b", "Accept"))),
        &mut index,
        &mut changes,
    );
    play(
        Event::Apply(dynamic(cnp_json("b", "Accept"))),
        &mut index,
        &mut changes,
    );
    play(
        Event::Apply(dynamic(cnp_json("a", "Pass"))),
        &mut index,
        &mut changes,
    );
    play(
        Event::Delete(dynamic(cnp_json("b", "Accept"))),
        &mut index,
        &mut changes,
    );
    // A relist that lost `a` while the watch was down.
    for event in [Event::Init, Event::InitDone] {
        play(event, &mut index, &mut changes);
    }
    assert_eq!(
        other_policy_changes(&changes),
        [
            "ClusterNetworkPolicy/b created",
            "ClusterNetworkPolicy/a updated",
            "ClusterNetworkPolicy/b deleted",
            "ClusterNetworkPolicy/a deleted",
        ]
    );
    assert_eq!(index.tiered_policies().count(), 0);

    // One that does not validate is not loaded, and its stale version goes.
    play(
        Event::Apply(dynamic(cnp_json("c", "Deny"))),
        &mut index,
        &mut changes,
    );
    let mut broken = cnp_json("c", "Deny");
    broken["spec"]["priority"] = json!(-1);
    let handled = play(Event::Apply(dynamic(broken)), &mut index, &mut changes);
    assert_eq!(handled, super::super::Handled::Skipped);
    assert!(index.tiered_policy("ClusterNetworkPolicy/c").is_none());
}

#[test]
fn cni_policy_sink_keeps_names_per_kind() {
    let mut index = Index::new();
    let mut changes = ChangeLog::default();
    let at = SystemTime::UNIX_EPOCH;
    let cilium = |name: &str| {
        dynamic(
            json!({"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
            "metadata": {"name": name, "namespace": "shop"}}),
        )
    };
    let mut feed: Feed<CniPolicy> = Feed::new();
    for event in [Event::Init, Event::InitApply(cilium("l7")), Event::InitDone] {
        let mut sink = CniPolicySink {
            index: &mut index,
            changes: &mut changes,
            kind: CniPolicyKind::CiliumNetworkPolicy,
        };
        feed.handle(&mut sink, event, at);
    }
    // Another kind's relist leaves Cilium's alone.
    let mut calico: Feed<CniPolicy> = Feed::new();
    for event in [Event::Init, Event::InitDone] {
        let mut sink = CniPolicySink {
            index: &mut index,
            changes: &mut changes,
            kind: CniPolicyKind::CalicoGlobalNetworkPolicy,
        };
        calico.handle(&mut sink, event, at);
    }
    let names: Vec<String> = index
        .cni_policies_for("shop")
        .map(ToString::to_string)
        .collect();
    assert_eq!(names, ["CiliumNetworkPolicy shop/l7"]);
    assert_eq!(index.cni_policies_for("other").count(), 0);
    let mut sink = CniPolicySink {
        index: &mut index,
        changes: &mut changes,
        kind: CniPolicyKind::CiliumNetworkPolicy,
    };
    feed.handle(&mut sink, Event::Delete(cilium("l7")), at);
    assert_eq!(index.cni_policies().count(), 0);
    assert_eq!(
        other_policy_changes(&changes),
        ["CiliumNetworkPolicy shop/l7 deleted"]
    );
}

fn tiered_keys(view: &ClusterView) -> Vec<String> {
    view.index
        .read()
        .tiered_policies()
        .map(TieredPolicy::key)
        .collect()
}

/// A cluster without the CRDs: discovery answers 404, nothing is watched, the view is ready.
#[tokio::test]
async fn a_cluster_without_the_crds_is_ready_with_no_tiers() {
    let api = FakeApi::new();
    let view = ClusterView::new(CniAgentMatcher::builtin());
    let run = tokio::spawn(Watchers::new(Client::new(api.router(), "default"), view.clone()).run());
    tokio::time::timeout(Duration::from_secs(10), view.readiness.wait())
        .await
        .expect("ready without the optional kinds");
    let requests = api.requests();
    for discovery in [
        "GET /apis/policy.networking.k8s.io/v1alpha2",
        "GET /apis/policy.networking.k8s.io/v1alpha1",
        "GET /apis/cilium.io/v2",
        "GET /apis/crd.projectcalico.org/v1",
        "GET /apis/projectcalico.org/v3",
        "GET /apis/crd.antrea.io/v1beta1",
    ] {
        assert!(
            requests.iter().any(|r| r == discovery),
            "{discovery} in {requests:?}"
        );
    }
    assert!(
        !requests
            .iter()
            .any(|r| r.contains("networkpolicies.") || r.contains("clusternetworkpolicies")),
        "no watch of what is not served: {requests:?}"
    );
    assert!(tiered_keys(&view).is_empty());
    run.abort();
}

/// Served kinds are listed before the view is ready, then followed; a CRD installed later is
/// found by rediscovery, and one removed is forgotten.
#[tokio::test]
async fn served_tiers_and_cni_policies_are_watched_and_followed() {
    let api = FakeApi::new();
    api.serve_kind(
        "policy.networking.k8s.io/v1alpha2",
        "ClusterNetworkPolicy",
        "clusternetworkpolicies",
        false,
    );
    api.serve_kind(
        "cilium.io/v2",
        "CiliumNetworkPolicy",
        "ciliumnetworkpolicies",
        true,
    );
    api.apply(cnp_json("deny-x", "Deny"));
    api.apply(
        json!({"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
        "metadata": {"name": "l7", "namespace": "shop"}}),
    );

    let view = ClusterView::new(CniAgentMatcher::builtin());
    let watchers = Watchers::new(Client::new(api.router(), "default"), view.clone())
        .with_rediscovery(Duration::from_millis(100));
    let run = tokio::spawn(watchers.run());
    tokio::time::timeout(Duration::from_secs(10), view.readiness.wait())
        .await
        .expect("ready once the served kinds listed");
    assert_eq!(
        tiered_keys(&view),
        ["ClusterNetworkPolicy/deny-x"],
        "listed before ready"
    );
    let cni: Vec<String> = view
        .index
        .read()
        .cni_policies()
        .map(ToString::to_string)
        .collect();
    assert_eq!(cni, ["CiliumNetworkPolicy shop/l7"]);

    // Followed: a new policy is a change that re-probes every pair.
    api.apply(cnp_json("allow-y", "Accept"));
    eventually(&view, "the new ClusterNetworkPolicy", |v| {
        tiered_keys(v).len() == 2
    })
    .await;
    assert!(
        other_policy_changes(&view.changes.read())
            .contains(&"ClusterNetworkPolicy/allow-y created".to_string())
    );

    // A CRD installed later.
    api.serve_kind(
        "policy.networking.k8s.io/v1alpha1",
        "BaselineAdminNetworkPolicy",
        "baselineadminnetworkpolicies",
        false,
    );
    api.apply(json!({
        "apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "BaselineAdminNetworkPolicy",
        "metadata": {"name": "default"},
        "spec": {"subject": {"namespaces": {}}, "ingress": [{"name": "deny", "action": "Deny",
                 "from": [{"namespaces": {}}]}]}
    }));
    eventually(&view, "the baseline policy", |v| {
        tiered_keys(v).contains(&"BaselineAdminNetworkPolicy/default".to_string())
    })
    .await;

    // A CRD removed: its objects are forgotten.
    api.unserve_kind("policy.networking.k8s.io/v1alpha2", "ClusterNetworkPolicy");
    eventually(&view, "the ClusterNetworkPolicies forgotten", |v| {
        tiered_keys(v) == ["BaselineAdminNetworkPolicy/default"]
    })
    .await;
    run.abort();
}
