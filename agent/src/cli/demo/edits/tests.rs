//! Live edits: what of an edited scenario reaches the running demo.

use serde_json::{Value, json};

use super::*;

fn pod(name: &str, labels: Value, ip: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "labels": labels},
        "spec": {"nodeName": "node-1", "containers": [{"name": "c"}]},
        "status": {"phase": "Running", "podIP": ip},
    })
}

fn with_uid(mut object: Value, uid: &str) -> Value {
    object["metadata"]["uid"] = json!(uid);
    object
}

#[test]
fn uids_follow_the_running_objects() {
    let running = vec![with_uid(
        pod("web", json!({"app": "web"}), "10.244.1.10"),
        "u-1",
    )];
    let mut edited = vec![
        pod("web", json!({"app": "web2"}), "10.244.1.10"),
        pod("new", json!({}), "10.244.1.11"),
    ];
    keep_uids(&running, &mut edited);
    assert_eq!(edited[0]["metadata"]["uid"], "u-1");
    assert!(edited[1]["metadata"].get("uid").is_none());
}

#[test]
fn pods_change_live_only_in_labels_and_annotations() {
    let running = vec![
        with_uid(pod("web", json!({"app": "web"}), "10.244.1.10"), "u-1"),
        with_uid(pod("api", json!({"app": "api"}), "10.244.1.11"), "u-2"),
        with_uid(pod("gone", json!({}), "10.244.1.12"), "u-3"),
    ];
    let policy = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "p", "namespace": "shop"}});
    let mut edited = vec![
        // Labels changed: taken.
        with_uid(
            pod("web", json!({"app": "web", "tier": "front"}), "10.244.1.10"),
            "u-1",
        ),
        // IP and labels changed: the labels are taken, the IP is kept.
        with_uid(pod("api", json!({"app": "api-v2"}), "10.244.1.99"), "u-2"),
        // New: left out. (`gone` is absent: deleted.)
        pod("new", json!({}), "10.244.1.13"),
        policy.clone(),
    ];
    let notes = guard_pods(&running, &mut edited);
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(
        notes[0].starts_with("Pod shop/api: only labels"),
        "{notes:?}"
    );
    assert!(notes[1].starts_with("Pod shop/new is new"), "{notes:?}");
    assert_eq!(edited.len(), 3);
    assert_eq!(edited[0]["metadata"]["labels"]["tier"], "front");
    assert_eq!(
        edited[1]["status"]["podIP"], "10.244.1.11",
        "the running IP"
    );
    assert_eq!(
        edited[1]["metadata"]["labels"]["app"], "api-v2",
        "the new labels"
    );
    assert_eq!(edited[2], policy);
}

fn scenario(yaml: &str) -> testbed::Scenario {
    testbed::Scenario::from_yaml(yaml, "test").expect("scenario")
}

#[test]
fn dataplane_changes_name_what_reloads_and_what_needs_a_restart() {
    let base = "name: s\nnodes: [node-1]\n";
    let rules =
        "dataplane:\n  rules:\n    - {action: drop, from: 10.244.1.0/24, to: 10.244.1.0/24}\n";
    let faults = "dataplane:\n  faults:\n    - {kind: node-isolated, node: node-1}\n";
    let cases = [
        (base.to_string(), DataplaneChanges::default()),
        (
            format!("{base}{rules}"),
            DataplaneChanges {
                rules: true,
                ..DataplaneChanges::default()
            },
        ),
        (
            format!("{base}{faults}"),
            DataplaneChanges {
                faults: true,
                ..DataplaneChanges::default()
            },
        ),
        (
            "name: s\nnodes: [node-1, node-2]\n".to_string(),
            DataplaneChanges {
                kept: vec!["nodes"],
                ..DataplaneChanges::default()
            },
        ),
    ];
    let running = scenario(base);
    for (edited, want) in cases {
        assert_eq!(
            dataplane_changes(&running, &scenario(&edited)),
            want,
            "{edited}"
        );
    }
}
