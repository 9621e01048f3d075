//! The snapshot source: a first play lists every kind and makes the view ready; later plays
//! reach the index as the watch events a cluster would send, with their change-log entries.

use std::time::SystemTime;

use serde_json::{Value, json};

use super::*;
use crate::cluster::changes::ChangeKind;
use crate::cluster::model::ObjectRef;
use crate::cluster::watch::{CniAgentMatcher, Readiness};

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

fn pod(name: &str, app: &str, ip: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}"), "labels": {"app": app}},
        "spec": {"nodeName": "node-1", "containers": [{"name": "c", "ports": [{"containerPort": 8080}]}]},
        "status": {"phase": "Running", "podIP": ip},
    })
}

fn deny_all(name: &str) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    })
}

fn probe_spec(name: &str) -> Value {
    json!({
        "apiVersion": "netreach.dev/v1alpha1", "kind": "ProbeSpec",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"from": {"podSelector": {"matchLabels": {"app": "web"}}},
                 "to": [{"podSelector": {}, "ports": [{"port": 8080}]}]},
    })
}

fn deployment() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api", "namespace": "shop"}})
}

fn objects() -> Vec<Value> {
    vec![
        namespace("shop"),
        pod("web", "web", "10.244.1.10"),
        pod("api", "api", "10.244.1.11"),
        probe_spec("paths"),
        deployment(),
    ]
}

fn empty_view() -> ClusterView {
    ClusterView::with_readiness(CniAgentMatcher::builtin(), Readiness::new(WatchedKind::ALL))
}

#[test]
fn the_first_play_lists_every_kind_and_makes_the_view_ready() {
    let view = empty_view();
    let mut source = SnapshotSource::new();
    let played = source.play(&view, &objects(), SystemTime::now());
    assert!(
        view.readiness.is_ready(),
        "every kind listed, even empty ones"
    );
    assert_eq!(played.ignored, 1, "the Deployment is not watched");
    assert!(played.problems.is_empty(), "{:?}", played.problems);
    assert_eq!(
        played.applied,
        [
            "Pod shop/api",
            "Pod shop/web",
            "Namespace shop",
            "ProbeSpec shop/paths"
        ]
    );
    assert_eq!(view.index.read().pods().count(), 2);
    assert_eq!(view.specs.read().len(), 1);
    assert_eq!(view.changes.read().len(), 0, "a list records no changes");

    // The same set again changes nothing.
    let again = source.play(&view, &objects(), SystemTime::now());
    assert!(!again.changed(), "{again:?}");
    assert_eq!(view.changes.read().len(), 0);
}

#[test]
fn later_plays_apply_the_differences_as_watch_events() {
    let view = empty_view();
    let mut source = SnapshotSource::new();
    source.play(&view, &objects(), SystemTime::now());

    // A label edited, a policy added, the ProbeSpec removed.
    let mut edited = objects();
    edited[2] = pod("api", "api-v2", "10.244.1.11");
    edited[3] = deny_all("deny-all");
    let played = source.play(&view, &edited, SystemTime::now());
    assert_eq!(
        played.applied,
        ["Pod shop/api", "NetworkPolicy shop/deny-all"]
    );
    assert_eq!(played.deleted, ["ProbeSpec shop/paths"]);

    let index = view.index.read();
    let api = index.pod(&ObjectRef::new("shop", "api")).expect("api");
    assert_eq!(
        api.labels.get("app").map(String::as_str),
        Some("api-v2"),
        "the new labels"
    );
    assert!(index.policy(&ObjectRef::new("shop", "deny-all")).is_some());
    assert!(view.specs.read().is_empty());
    let kinds: Vec<&'static str> = view
        .changes
        .read()
        .after(0)
        .map(|change| match &change.kind {
            ChangeKind::PodLabels { .. } => "pod labels",
            ChangeKind::PolicyCreated { .. } => "policy created",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["pod labels", "policy created"]);
}

#[test]
fn objects_that_do_not_read_are_problems_naming_them() {
    let view = empty_view();
    let mut source = SnapshotSource::new();
    let mut bad = objects();
    bad[1]["spec"]["containers"] = json!("not a list");
    bad[3]["spec"]["to"] = json!(7);
    bad.push(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {}}));
    let played = source.play(&view, &bad, SystemTime::now());
    assert_eq!(played.problems.len(), 3, "{:?}", played.problems);
    assert!(played.problems[0].contains("has no metadata.name"));
    assert!(
        played.problems[1].starts_with("Pod shop/web: "),
        "{:?}",
        played.problems
    );
    assert!(
        played.problems[2].starts_with("ProbeSpec shop/paths: "),
        "{:?}",
        played.problems
    );
    assert_eq!(played.applied, ["Pod shop/api", "Namespace shop"]);
    assert!(
        view.specs.read().is_empty(),
        "the malformed spec is left out"
    );
    assert!(view.readiness.is_ready());
}

/// Cluster-scoped tiers and CNI-native policies play like the other kinds: listed on the
/// first play, then created, updated and deleted with their change-log entries.
#[test]
fn tiers_and_cni_native_policies_play_as_their_watches_would() {
    let cnp = |action: &str| {
        json!({
            "apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
            "metadata": {"name": "guard"},
            "spec": {"tier": "Admin", "priority": 1, "subject": {"namespaces": {}},
                     "ingress": [{"name": "r", "action": action, "from": [{"namespaces": {}}]}]}
        })
    };
    let cilium = json!({"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
        "metadata": {"name": "l7", "namespace": "shop"}});
    let view = empty_view();
    let mut source = SnapshotSource::new();
    let mut objects = objects();
    objects.push(cnp("Deny"));
    let played = source.play(&view, &objects, SystemTime::UNIX_EPOCH);
    assert!(
        played
            .applied
            .contains(&"ClusterNetworkPolicy guard".to_string()),
        "{played:?}"
    );
    assert!(view.readiness.is_ready());
    assert!(
        view.index
            .read()
            .tiered_policy("ClusterNetworkPolicy/guard")
            .is_some()
    );

    let mut next = objects.clone();
    next.pop();
    next.push(cnp("Accept"));
    next.push(cilium);
    let played = source.play(&view, &next, SystemTime::UNIX_EPOCH);
    assert_eq!(
        played.applied,
        ["ClusterNetworkPolicy guard", "CiliumNetworkPolicy shop/l7"]
    );
    next.retain(|o| o["kind"] != "ClusterNetworkPolicy");
    let played = source.play(&view, &next, SystemTime::UNIX_EPOCH);
    assert_eq!(played.deleted, ["ClusterNetworkPolicy guard"]);
    let changes: Vec<String> = view
        .changes
        .read()
        .iter()
        .filter_map(|c| match &c.kind {
            ChangeKind::OtherPolicy { policy, op, .. } => Some(format!("{policy} {op}")),
            _ => None,
        })
        .collect();
    assert_eq!(
        changes,
        [
            "ClusterNetworkPolicy/guard updated",
            "CiliumNetworkPolicy shop/l7 created",
            "ClusterNetworkPolicy/guard deleted"
        ]
    );
}
