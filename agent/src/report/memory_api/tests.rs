//! The in-memory API: routes and merge patches by table, then the real writers against it.

use std::time::{Duration, SystemTime};

use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use probe_spec::{PairVerdict, ProbeSpec, VerdictCounts};
use serde_json::{Value, json};

use super::*;
use crate::cluster::SpecRef;
use crate::cluster::model::ObjectRef;
use crate::report::events::{EventReason, EventRecorder, EventTarget, EventsConfig, Published};
use crate::report::status::{NodeReport, SpecStatusWriter, StatusConfig, Written};

/// group, namespace, resource, name, subresource.
type Parts<'a> = (
    &'a str,
    Option<&'a str>,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
);

#[test]
fn routes_split_core_group_namespaced_and_subresource_paths() {
    let cases: &[(&str, Option<Parts>)] = &[
        (
            "/api/v1/namespaces/shop/pods/web",
            Some(("", Some("shop"), "pods", Some("web"), None)),
        ),
        (
            "/apis/events.k8s.io/v1/namespaces/shop/events",
            Some(("events.k8s.io", Some("shop"), "events", None, None)),
        ),
        (
            "/apis/netreach.dev/v1alpha1/namespaces/shop/probespecs/paths/status",
            Some((
                "netreach.dev",
                Some("shop"),
                "probespecs",
                Some("paths"),
                Some("status"),
            )),
        ),
        (
            "/apis/netreach.dev/v1alpha1/clusterprobespecs/dns",
            Some(("netreach.dev", None, "clusterprobespecs", Some("dns"), None)),
        ),
        // A namespace itself is a cluster-scoped object.
        (
            "/api/v1/namespaces/shop",
            Some(("", None, "namespaces", Some("shop"), None)),
        ),
        ("/healthz", None),
        ("/apis/netreach.dev", None),
    ];
    for (path, want) in cases {
        let got = route(path);
        let want = want.map(|(group, namespace, resource, name, sub)| Route {
            group: group.into(),
            namespace: namespace.map(Into::into),
            resource: resource.into(),
            name: name.map(Into::into),
            subresource: sub.map(Into::into),
        });
        assert_eq!(got, want, "{path}");
    }
}

#[test]
fn merge_patch_follows_rfc_7386() {
    // The RFC's own examples (appendix A), a selection.
    let cases = [
        (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
        (
            json!({"a": "b"}),
            json!({"b": "c"}),
            json!({"a": "b", "b": "c"}),
        ),
        (json!({"a": "b"}), json!({"a": null}), json!({})),
        (
            json!({"a": {"b": "c"}}),
            json!({"a": {"b": "d", "c": null}}),
            json!({"a": {"b": "d"}}),
        ),
        (
            json!({"a": [{"b": "c"}]}),
            json!({"a": [1]}),
            json!({"a": [1]}),
        ),
        (json!(["a", "b"]), json!({"a": "c"}), json!({"a": "c"})),
        (
            json!({"e": null}),
            json!({"a": 1}),
            json!({"e": null, "a": 1}),
        ),
        (
            json!({}),
            json!({"a": {"bb": {"ccc": null}}}),
            json!({"a": {"bb": {}}}),
        ),
    ];
    for (target, patch, want) in cases {
        let mut got = target.clone();
        merge_patch(&mut got, &patch);
        assert_eq!(got, want, "{target} + {patch}");
    }
}

fn probe_spec_object() -> Value {
    json!({
        "apiVersion": "netreach.dev/v1alpha1", "kind": "ProbeSpec",
        "metadata": {"name": "paths", "namespace": "shop"},
        "spec": {"from": {"podSelector": {}}, "to": [{"dns": "api.shop"}]},
    })
}

fn report(ok: u32, blocked: u32) -> NodeReport {
    let mut counts = VerdictCounts::default();
    for _ in 0..ok {
        counts.add(PairVerdict::Ok);
    }
    for _ in 0..blocked {
        counts.add(PairVerdict::BlockedByPolicy);
    }
    NodeReport {
        observed_generation: Some(1),
        counts,
        failing: blocked,
        ..NodeReport::default()
    }
}

#[tokio::test]
async fn spec_status_writers_of_two_nodes_aggregate_in_the_stored_object() {
    let api = MemoryApi::new();
    api.sync(&[probe_spec_object()]);
    let spec = SpecRef::Namespaced(ObjectRef::new("shop", "paths"));
    for (node, ok, blocked) in [("node-1", 3, 0), ("node-2", 1, 2)] {
        let writer = SpecStatusWriter::new(api.client(), StatusConfig::for_node(node));
        let written = writer
            .publish(&spec, &report(ok, blocked))
            .await
            .expect("written");
        assert_eq!(written, Written::Patched, "{node}");
    }
    let stored: ProbeSpec = serde_json::from_value(api.list("probespecs")[0].clone())
        .expect("a ProbeSpec with its status");
    let status = stored.status.expect("status");
    assert_eq!(status.counts.ok, 4);
    assert_eq!(status.counts.blocked_by_policy, 2);

    // A spec edit keeps the status, as the API server does.
    let mut edited = probe_spec_object();
    edited["spec"]["to"] = json!([{"dns": "api.payments"}]);
    api.sync(&[edited]);
    let stored = &api.list("probespecs")[0];
    assert_eq!(stored["spec"]["to"][0]["dns"], "api.payments");
    assert_eq!(stored["status"]["counts"]["ok"], 4);

    // Deleted from the file: gone, and a writer learns it.
    api.sync(&[]);
    let writer = SpecStatusWriter::new(api.client(), StatusConfig::for_node("node-1"));
    let written = writer
        .publish(&spec, &report(1, 0))
        .await
        .expect("answered");
    assert_eq!(written, Written::Gone);
}

#[tokio::test]
async fn a_stale_resource_version_is_a_conflict() {
    let api = MemoryApi::new();
    api.sync(&[probe_spec_object()]);
    let specs: Api<DynamicObject> =
        Api::namespaced_with(api.client(), "shop", &ApiResource::erase::<ProbeSpec>(&()));
    let stale = json!({"metadata": {"resourceVersion": "0"}, "status": {"counts": {}}});
    let error = specs
        .patch_status("paths", &PatchParams::default(), &Patch::Merge(&stale))
        .await
        .expect_err("stale");
    assert!(
        matches!(error, kube::Error::Api(ref s) if s.code == 409),
        "{error}"
    );
    let missing = specs.get("nope").await.expect_err("absent");
    assert!(
        matches!(missing, kube::Error::Api(ref s) if s.code == 404),
        "{missing}"
    );
}

#[tokio::test]
async fn events_are_created_deduplicated_and_bounded() {
    let api = MemoryApi::with_capacity(3);
    let recorder = EventRecorder::new(api.client(), EventsConfig::for_node("node-1"));
    let target = |name: &str| EventTarget {
        pod: ObjectRef::new("shop", name),
        uid: Some(format!("uid-{name}")),
    };
    let now = SystemTime::now();
    let published = recorder
        .publish_at(
            &target("web"),
            EventReason::NetworkPolicyDenied,
            "blocked by shop/deny",
            now,
        )
        .await
        .expect("created");
    assert_eq!(published, Published::Created);
    let again = recorder
        .publish_at(
            &target("web"),
            EventReason::NetworkPolicyDenied,
            "blocked by shop/deny",
            now + Duration::from_secs(1),
        )
        .await
        .expect("answered");
    assert_eq!(again, Published::Deduplicated);
    let (events, seq) = api.events_after(0);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["reason"], "NetworkPolicyDenied");
    assert_eq!(events[0]["regarding"]["name"], "web");
    assert_eq!(events[0]["note"], "blocked by shop/deny");

    // Past the capacity the oldest Events go; the log is bounded the same way.
    for name in ["a", "b", "c", "d"] {
        recorder
            .publish_at(&target(name), EventReason::ProbeFailed, "unreachable", now)
            .await
            .expect("created");
    }
    assert_eq!(api.list("events").len(), 3);
    let (newer, _) = api.events_after(seq);
    assert_eq!(newer.len(), 3, "the log keeps the newest");
    assert_eq!(newer[2]["regarding"]["name"], "d");
}
