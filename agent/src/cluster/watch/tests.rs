//! Tests of the watches: the event -> index mapping as a pure function over sequences of
//! `watcher::Event`s, and one run of the real watcher against a mocked API server.

use std::pin::pin;
use std::time::{Duration, SystemTime};

use http::{Request, Response};
use k8s_openapi::api::core::v1 as corev1;
use k8s_openapi::api::networking::v1 as netv1;
use kube::client::Body;
use kube::core::DeserializeGuard;
use kube::runtime::watcher::Event;
use serde_json::{Value, json};

use super::*;
use crate::cluster::changes::ChangeKind;
use crate::cluster::model::{Labels, ObjectRef, Peer};
use crate::cluster::spec::SpecRef;

// === Fixtures ===

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

fn labels(pairs: &[(&str, &str)]) -> Value {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), json!(v)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn pod_json(ns: &str, name: &str, lbls: &[(&str, &str)], ip: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": ns, "uid": format!("uid-{name}"),
            "resourceVersion": "1",
            "labels": labels(lbls),
            "annotations": {"big": "x"},
            "managedFields": [{"manager": "kubectl"}],
        },
        "spec": {
            "nodeName": "node-1",
            "containers": [{"name": "c", "ports": [{"containerPort": 80}]}],
        },
        "status": {
            "phase": "Running", "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    })
}

fn pod(ns: &str, name: &str, lbls: &[(&str, &str)]) -> corev1::Pod {
    serde_json::from_value(pod_json(ns, name, lbls, "10.244.1.10")).unwrap()
}

fn namespace(name: &str, lbls: &[(&str, &str)]) -> corev1::Namespace {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": labels(lbls)},
    }))
    .unwrap()
}

fn policy(ns: &str, name: &str, spec: Value) -> netv1::NetworkPolicy {
    serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }))
    .unwrap()
}

fn deny_all(ns: &str, name: &str) -> netv1::NetworkPolicy {
    policy(ns, name, json!({"podSelector": {}}))
}

/// Feeds `events` through a fresh feed of one core kind and returns what each did.
struct Core {
    index: Index,
    changes: ChangeLog,
    cni: CniAgentMatcher,
}

impl Core {
    fn new() -> Self {
        Self {
            index: Index::new(),
            changes: ChangeLog::default(),
            cni: CniAgentMatcher::builtin(),
        }
    }

    fn feed<K, I>(&mut self, feed: &mut Feed<I>, events: Vec<Event<K>>, t: u64) -> Vec<Handled>
    where
        for<'a> CoreSink<'a>: Sink<K, Item = I>,
    {
        events
            .into_iter()
            .map(|event| {
                let mut sink = CoreSink {
                    pods: crate::cluster::index::PodOwner::ALL,
                    index: &mut self.index,
                    changes: &mut self.changes,
                    cni: &self.cni,
                };
                feed.handle(&mut sink, event, at(t))
            })
            .collect()
    }

    fn pod_names(&self) -> Vec<String> {
        self.index.pods().map(|p| p.key().to_string()).collect()
    }

    fn change_kinds(&self) -> Vec<&'static str> {
        self.changes.iter().map(|c| c.kind.as_str()).collect()
    }
}

fn relist<K>(objs: Vec<K>) -> Vec<Event<K>> {
    let mut events = vec![Event::Init];
    events.extend(objs.into_iter().map(Event::InitApply));
    events.push(Event::InitDone);
    events
}

// === Pure mapping ===

#[test]
fn relist_removes_objects_missing_from_the_new_list() {
    let mut core = Core::new();
    let mut feed = Feed::new();
    let handled = core.feed(
        &mut feed,
        relist(vec![pod("a", "one", &[]), pod("a", "two", &[])]),
        0,
    );
    assert_eq!(
        handled,
        [
            Handled::ListStarted,
            Handled::Buffered,
            Handled::Buffered,
            Handled::Synced { first: true }
        ]
    );
    assert!(feed.synced());
    core.feed(
        &mut feed,
        vec![
            Event::Apply(pod("b", "three", &[])),
            Event::Delete(pod("a", "one", &[])),
        ],
        1,
    );
    assert_eq!(core.pod_names(), ["a/two", "b/three"]);

    // The watch broke; a/two was deleted and c/four created meanwhile.
    let handled = core.feed(
        &mut feed,
        relist(vec![pod("b", "three", &[]), pod("c", "four", &[])]),
        2,
    );
    assert_eq!(handled.last(), Some(&Handled::Synced { first: false }));
    assert_eq!(core.pod_names(), ["b/three", "c/four"]);
}

#[test]
fn the_index_keeps_serving_the_old_list_until_init_done() {
    let mut core = Core::new();
    let mut feed = Feed::new();
    core.feed(&mut feed, relist(vec![pod("a", "one", &[])]), 0);
    core.feed(
        &mut feed,
        vec![Event::Init, Event::InitApply(pod("a", "two", &[]))],
        1,
    );
    assert_eq!(
        core.pod_names(),
        ["a/one"],
        "a relist in progress is buffered"
    );
    core.feed(&mut feed, vec![Event::<corev1::Pod>::InitDone], 1);
    assert_eq!(core.pod_names(), ["a/two"]);
}

#[test]
fn updates_replace_and_label_changes_are_recorded_with_before_and_after() {
    let mut core = Core::new();
    let mut pods = Feed::new();
    let mut namespaces = Feed::new();
    core.feed(
        &mut namespaces,
        relist(vec![namespace("pay", &[("team", "pay")])]),
        0,
    );
    core.feed(
        &mut pods,
        relist(vec![pod("pay", "gw", &[("app", "gw")])]),
        0,
    );
    assert!(core.changes.is_empty(), "the initial sync records nothing");

    core.feed(
        &mut pods,
        vec![
            Event::Apply(pod("pay", "gw", &[("app", "gateway")])),
            // Same labels: no change.
            Event::Apply(pod("pay", "gw", &[("app", "gateway")])),
            // A new pod is not a label change.
            Event::Apply(pod("pay", "new", &[("app", "x")])),
        ],
        10,
    );
    // The namespace's labels change while the watch is down: seen at the relist.
    core.feed(
        &mut namespaces,
        relist(vec![namespace("pay", &[("team", "payments")])]),
        20,
    );

    let changes: Vec<_> = core.changes.iter().collect();
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0].at, at(10));
    assert_eq!(
        changes[0].kind,
        ChangeKind::PodLabels {
            pod: ObjectRef::new("pay", "gw"),
            before: Labels::from([("app".into(), "gw".into())]),
            after: Labels::from([("app".into(), "gateway".into())]),
        }
    );
    let ChangeKind::NamespaceLabels {
        namespace,
        before,
        after,
    } = &changes[1].kind
    else {
        panic!(
            "expected a namespace label change, got {:?}",
            changes[1].kind
        );
    };
    assert_eq!(namespace, "pay");
    assert_eq!(before.get("team").map(String::as_str), Some("pay"));
    assert_eq!(after.get("team").map(String::as_str), Some("payments"));
    assert_eq!(
        core.index
            .pod(&ObjectRef::new("pay", "gw"))
            .unwrap()
            .labels
            .get("app")
            .map(String::as_str),
        Some("gateway")
    );
}

#[test]
fn a_malformed_object_is_skipped_and_later_valid_ones_still_apply() {
    let mut core = Core::new();
    let mut feed = Feed::new();
    let bad = |name: &str| -> corev1::Pod {
        serde_json::from_value(pod_json("a", name, &[], "not-an-ip")).unwrap()
    };
    let handled = core.feed(
        &mut feed,
        relist(vec![
            pod("a", "one", &[]),
            bad("broken"),
            pod("a", "two", &[]),
        ]),
        0,
    );
    assert_eq!(handled[2], Handled::Skipped);
    assert_eq!(core.pod_names(), ["a/one", "a/two"]);

    let handled = core.feed(
        &mut feed,
        vec![
            // An update that breaks a known pod removes the stale valid version.
            Event::Apply(bad("one")),
            Event::Apply(pod("a", "three", &[])),
        ],
        1,
    );
    assert_eq!(handled, [Handled::Skipped, Handled::Applied]);
    assert_eq!(core.pod_names(), ["a/three", "a/two"]);
}

#[test]
fn watched_objects_are_stripped_before_conversion() {
    let mut p = pod("a", "one", &[]);
    Strip::strip(&mut p);
    assert!(p.metadata.annotations.is_none());
    assert!(p.metadata.managed_fields.is_none());
    // What the conversion needs survives.
    let converted = crate::cluster::model::Pod::try_from(&p).unwrap();
    assert_eq!(converted.ports.len(), 1);
    assert!(converted.ready);
}

#[test]
fn policy_changes_and_fail_closed_conversion() {
    let mut core = Core::new();
    let mut feed = Feed::new();
    core.feed(&mut feed, relist(vec![deny_all("shop", "deny")]), 0);
    assert!(core.changes.is_empty());

    let invalid_peer = policy(
        "shop",
        "bad-peer",
        json!({"podSelector": {}, "ingress": [{"from": [
            {"podSelector": {"matchExpressions": [{"key": "app", "operator": "Bogus"}]}}
        ]}]}),
    );
    let invalid_target = policy(
        "shop",
        "bad-target",
        json!({"podSelector": {"matchExpressions": [{"key": "app", "operator": "Bogus"}]}}),
    );
    let handled = core.feed(
        &mut feed,
        vec![
            Event::Apply(invalid_peer),
            Event::Apply(invalid_target.clone()),
            Event::Apply(policy(
                "shop",
                "deny",
                json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
            )),
            Event::Apply(policy(
                "shop",
                "deny",
                json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
            )),
        ],
        5,
    );
    assert_eq!(handled, [Handled::Applied; 4]);
    // Degraded: the invalid peer matches nothing.
    let degraded = core
        .index
        .policy(&ObjectRef::new("shop", "bad-peer"))
        .unwrap();
    assert!(matches!(degraded.ingress[0].peers[0], Peer::Invalid { .. }));
    // No podSelector to degrade to: known, but unloadable.
    let unloadable: Vec<String> = core
        .index
        .unloadable_policies_in("shop")
        .map(|(k, _)| k.to_string())
        .collect();
    assert_eq!(unloadable, ["shop/bad-target"]);
    assert_eq!(
        core.change_kinds(),
        ["policy_created", "policy_created", "policy_updated"],
        "re-applying an identical policy is not an update"
    );

    // Relist: `deny` was deleted during the gap; the unloadable one stays marked.
    core.feed(
        &mut feed,
        relist(vec![
            invalid_target,
            policy(
                "shop",
                "bad-peer",
                json!({"podSelector": {}, "ingress": [{"from": [
                    {"podSelector": {"matchExpressions": [{"key": "app", "operator": "Bogus"}]}}
                ]}]}),
            ),
        ]),
        9,
    );
    assert_eq!(
        core.change_kinds(),
        [
            "policy_created",
            "policy_created",
            "policy_updated",
            "policy_deleted"
        ]
    );
    let last = core.changes.iter().last().unwrap();
    assert_eq!(last.kind.policy(), Some(&ObjectRef::new("shop", "deny")));
    assert!(
        matches!(&last.kind, ChangeKind::PolicyDeleted { old: Some(p), .. } if p.isolates_egress)
    );
    assert_eq!(core.index.unloadable_policies_in("shop").count(), 1);

    core.feed(
        &mut feed,
        vec![Event::Delete(deny_all("shop", "bad-target"))],
        10,
    );
    assert_eq!(core.index.unloadable_policies_in("shop").count(), 0);
    assert_eq!(core.change_kinds().last(), Some(&"policy_deleted"));
}

#[test]
fn cni_agents_are_recognised_from_the_pod_watch() {
    let mut core = Core::new();
    let mut feed = Feed::new();
    let agent = |name: &str, node: &str, ready: &str, restarts: i32| -> corev1::Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "kube-system", "labels": {"k8s-app": "calico-node"}},
            "spec": {"nodeName": node, "hostNetwork": true, "containers": [{"name": "calico-node"}]},
            "status": {
                "phase": "Running", "podIP": "192.168.0.1",
                "conditions": [{"type": "Ready", "status": ready}],
                "containerStatuses": [{
                    "name": "calico-node", "image": "calico", "imageID": "", "ready": true,
                    "restartCount": restarts,
                }],
            },
        }))
        .unwrap()
    };
    // Same labels outside kube-system: not an agent.
    let mut impostor = pod("shop", "calico-node-fake", &[("k8s-app", "calico-node")]);
    impostor.spec.as_mut().unwrap().node_name = Some("node-1".into());
    core.feed(
        &mut feed,
        relist(vec![
            agent("calico-node-a", "node-1", "True", 0),
            agent("calico-node-b", "node-2", "False", 4),
            impostor,
        ]),
        0,
    );
    let on_1 = cni_agents_on(&core.index, &core.cni, "node-1");
    assert_eq!(
        on_1,
        [CniAgentStatus {
            pod: ObjectRef::new("kube-system", "calico-node-a"),
            cni: "calico-node".into(),
            ready: true,
            restarts: 0,
        }]
    );
    let on_2 = cni_agents_on(&core.index, &core.cni, "node-2");
    assert!(!on_2[0].ready);
    assert_eq!(on_2[0].restarts, 4);
    assert!(cni_agents_on(&core.index, &core.cni, "node-3").is_empty());
    assert_eq!(cni_agents_by_node(&core.index, &core.cni).len(), 2);

    core.feed(
        &mut feed,
        vec![Event::Apply(agent("calico-node-a", "node-1", "True", 1))],
        30,
    );
    let restarts: Vec<_> = core
        .changes
        .cni_restarts_since("node-1", at(0))
        .map(|c| c.kind.describe())
        .collect();
    assert_eq!(
        restarts,
        ["CNI agent kube-system/calico-node-a on node node-1 restarted (1 restarts)"]
    );
}

#[test]
fn builtin_and_configured_cni_selectors() {
    let model = |ns: &str, lbls: &[(&str, &str)]| {
        let mut p = crate::cluster::model::Pod::try_from(&pod(ns, "x", lbls)).unwrap();
        p.namespace = ns.into();
        p
    };
    let builtin = CniAgentMatcher::builtin();
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Option<&'a str>);
    let table: &[Case] = &[
        (
            "kube-system",
            &[("k8s-app", "calico-node")],
            Some("calico-node"),
        ),
        (
            "calico-system",
            &[("k8s-app", "calico-node")],
            Some("calico-node"),
        ),
        ("kube-system", &[("k8s-app", "cilium")], Some("cilium")),
        ("kube-system", &[("app", "flannel")], Some("kube-flannel")),
        ("kube-system", &[("name", "weave-net")], Some("weave-net")),
        (
            "kube-system",
            &[("component", "antrea-agent")],
            Some("antrea-agent"),
        ),
        ("kube-system", &[("k8s-app", "aws-node")], Some("aws-node")),
        (
            "kube-system",
            &[("k8s-app", "kube-router")],
            Some("kube-router"),
        ),
        ("kube-system", &[("app", "kindnet")], Some("kindnet")),
        ("kube-system", &[("k8s-app", "kube-dns")], None),
        ("default", &[("k8s-app", "cilium")], None),
    ];
    for (ns, lbls, want) in table {
        assert_eq!(builtin.cni_of(&model(ns, lbls)), *want, "{ns} {lbls:?}");
    }
    let custom = CniAgentMatcher::builtin()
        .with_extra("net-system/app=my-cni, tier==node")
        .unwrap();
    assert_eq!(
        custom.cni_of(&model("net-system", &[("app", "my-cni"), ("tier", "node")])),
        Some("custom")
    );
    assert_eq!(
        custom.cni_of(&model("net-system", &[("app", "my-cni")])),
        None
    );
    for bad in ["app", "/app=x", "bad key!=x"] {
        let err = CniAgentMatcher::builtin().with_extra(bad).unwrap_err();
        assert_eq!(err.metric_label(), "invalid_cni_selector", "{bad}");
    }
}

// === Custom resources ===

fn probe_spec_json(name: &str, generation: i64, status: Value) -> Value {
    json!({
        "apiVersion": "netreach.dev/v1alpha1", "kind": "ProbeSpec",
        "metadata": {"name": name, "namespace": "shop", "generation": generation, "resourceVersion": "7"},
        "spec": {"from": {"podSelector": {}}, "to": [{"dns": "api.shop.svc.cluster.local"}]},
        "status": status,
    })
}

#[test]
fn malformed_custom_resources_are_skipped_through_deserialize_guard() {
    let guard = |v: Value| -> DeserializeGuard<ProbeSpec> {
        let mut obj: DeserializeGuard<ProbeSpec> = serde_json::from_value(v).unwrap();
        obj.strip();
        obj
    };
    let malformed = json!({
        "apiVersion": "netreach.dev/v1alpha1", "kind": "ProbeSpec",
        "metadata": {"name": "broken", "namespace": "shop"},
        "spec": {"from": "not-an-object"},
    });
    let mut store = SpecStore::<ProbeSpec>::new();
    let mut feed = Feed::new();
    let handled: Vec<Handled> = relist(vec![
        guard(probe_spec_json("a", 1, json!({}))),
        guard(malformed.clone()),
        guard(probe_spec_json("b", 1, json!({}))),
    ])
    .into_iter()
    .map(|e| feed.handle(&mut store, e, at(0)))
    .collect();
    assert_eq!(handled[2], Handled::Skipped);
    let names: Vec<String> = store.iter().map(|(k, _)| k.to_string()).collect();
    assert_eq!(names, ["shop/a", "shop/b"]);
    let revision = store.revision();

    // A status-only update (another agent's write) changes nothing the scheduler reads.
    let status_only = guard(probe_spec_json("a", 1, json!({"counts": {"ok": 3}})));
    assert_eq!(
        feed.handle(&mut store, Event::Apply(status_only), at(1)),
        Handled::Unchanged
    );
    assert_eq!(store.revision(), revision);
    assert_eq!(
        feed.handle(
            &mut store,
            Event::Apply(guard(probe_spec_json("a", 2, json!({})))),
            at(2)
        ),
        Handled::Applied
    );
    // Malformed update of a known object: removed, not kept stale.
    let mut broken_a = malformed;
    broken_a["metadata"]["name"] = json!("a");
    feed.handle(&mut store, Event::Apply(guard(broken_a)), at(3));
    assert!(store.get(&ObjectRef::new("shop", "a")).is_none());
    assert_eq!(store.len(), 1);
}

fn cluster_probe_spec_json(name: &str, generation: i64, status: Value) -> Value {
    json!({
        "apiVersion": "netreach.dev/v1alpha1", "kind": "ClusterProbeSpec",
        "metadata": {"name": name, "generation": generation, "resourceVersion": "7"},
        "spec": {"from": {"podSelector": {}, "namespaceSelector": {}}, "to": [{"dns": "api.shop.svc.cluster.local"}]},
        "status": status,
    })
}

#[test]
fn cluster_probe_specs_are_kept_by_name_and_listed_beside_probe_specs() {
    fn guard<K>(v: Value) -> DeserializeGuard<K>
    where
        DeserializeGuard<K>: Strip + serde::de::DeserializeOwned,
    {
        let mut obj: DeserializeGuard<K> = serde_json::from_value(v).unwrap();
        obj.strip();
        obj
    }
    let view = ClusterView::with_readiness(CniAgentMatcher::builtin(), Readiness::ready());
    let mut feed = Feed::new();
    for event in relist(vec![guard::<ClusterProbeSpec>(cluster_probe_spec_json(
        "everywhere",
        1,
        json!({}),
    ))]) {
        feed.handle(&mut *view.cluster_specs.write(), event, at(0));
    }
    let mut feed = Feed::new();
    for event in relist(vec![guard::<ProbeSpec>(probe_spec_json("a", 4, json!({})))]) {
        feed.handle(&mut *view.specs.write(), event, at(0));
    }
    let revision = view.specs_revision();

    let specs = view.specs();
    let keys: Vec<String> = specs.iter().map(|s| s.key.to_string()).collect();
    assert_eq!(keys, ["shop/a", "everywhere"]);
    assert_eq!(specs[1].key, SpecRef::Cluster("everywhere".into()));
    assert_eq!(specs[0].generation, Some(4));

    // The agents' own status writes do not move the revision; a spec change does.
    let mut feed = Feed::<(String, ClusterProbeSpec)>::new();
    let mut store = view.cluster_specs.write();
    let status_only = guard(cluster_probe_spec_json(
        "everywhere",
        1,
        json!({"counts": {"ok": 3}}),
    ));
    assert_eq!(
        feed.handle(&mut *store, Event::Apply(status_only), at(1)),
        Handled::Unchanged
    );
    drop(store);
    assert_eq!(view.specs_revision(), revision);
    let deleted = guard(cluster_probe_spec_json("everywhere", 1, json!({})));
    feed.handle(
        &mut *view.cluster_specs.write(),
        Event::Delete(deleted),
        at(2),
    );
    assert!(view.specs_revision() > revision);
    assert_eq!(view.specs().len(), 1);
}

#[test]
fn readiness_waits_for_every_watch() {
    let readiness = Readiness::new([WatchedKind::Pods, WatchedKind::Nodes]);
    let rx = readiness.subscribe();
    assert!(!readiness.is_ready());
    readiness.mark_synced(WatchedKind::Pods);
    readiness.mark_synced(WatchedKind::Pods);
    assert!(!readiness.is_ready());
    assert_eq!(readiness.pending(), [WatchedKind::Nodes]);
    readiness.mark_synced(WatchedKind::Nodes);
    assert!(readiness.is_ready());
    assert!(*rx.borrow());
    assert!(Readiness::ready().is_ready());
}

// === The real watcher against a mocked API server ===

/// LIST then WATCH of ClusterProbeSpecs, cluster-wide: the store fills by name and readiness
/// waits for it like for every other watch.
#[tokio::test]
async fn the_cluster_probe_spec_watcher_fills_its_store() {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let view = ClusterView::with_readiness(
        CniAgentMatcher::builtin(),
        Readiness::new([WatchedKind::ClusterProbeSpecs]),
    );
    let mut updates = view.subscribe();
    let watch =
        tokio::spawn(Watchers::new(client, view.clone()).watch(WatchedKind::ClusterProbeSpecs));

    let server = tokio::spawn(async move {
        let mut handle = pin!(handle);
        let (request, send) = handle.next_request().await.expect("LIST");
        assert_eq!(
            request.uri().path(),
            "/apis/netreach.dev/v1alpha1/clusterprobespecs"
        );
        let list = json!({
            "apiVersion": "netreach.dev/v1alpha1", "kind": "ClusterProbeSpecList",
            "metadata": {"resourceVersion": "100"},
            "items": [
                cluster_probe_spec_json("everywhere", 1, json!({})),
                {"apiVersion": "netreach.dev/v1alpha1", "kind": "ClusterProbeSpec",
                 "metadata": {"name": "broken"}, "spec": {"from": 1}},
            ],
        });
        send.send_response(Response::new(Body::from(
            serde_json::to_vec(&list).unwrap(),
        )));
        // The WATCH: left unanswered, the service kept open.
        let _watch = handle.next_request().await;
        std::future::pending::<()>().await;
    });

    let wait = async {
        while view.cluster_specs.read().is_empty() {
            updates.changed().await.expect("view dropped");
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("the watcher did not fill the store");
    tokio::time::timeout(Duration::from_secs(1), view.readiness.wait())
        .await
        .expect("not ready after the initial list");
    let names: Vec<String> = view.specs().iter().map(|s| s.key.to_string()).collect();
    assert_eq!(names, ["everywhere"]);
    let stats = view.stats.get(WatchedKind::ClusterProbeSpecs);
    assert_eq!(stats.skipped.load(Ordering::Relaxed), 1);

    watch.abort();
    server.abort();
}

/// LIST then WATCH of pods: the index fills, readiness flips, a watch event applies.
#[tokio::test]
async fn the_pod_watcher_populates_the_index_and_flips_readiness() {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let view = ClusterView::with_readiness(
        CniAgentMatcher::builtin(),
        Readiness::new([WatchedKind::Pods]),
    );
    let mut updates = view.subscribe();
    let watch = tokio::spawn(Watchers::new(client, view.clone()).watch(WatchedKind::Pods));

    let server = tokio::spawn(async move {
        let mut handle = pin!(handle);
        let (request, send) = handle.next_request().await.expect("LIST");
        assert_eq!(request.method(), http::Method::GET);
        assert_eq!(request.uri().path(), "/api/v1/pods");
        assert!(!request.uri().query().unwrap_or("").contains("watch=true"));
        let list = json!({
            "apiVersion": "v1", "kind": "PodList",
            "metadata": {"resourceVersion": "100"},
            "items": [
                pod_json("shop", "frontend", &[("app", "frontend")], "10.244.1.10"),
                pod_json("shop", "broken", &[], "not-an-ip"),
                pod_json("pay", "gateway", &[("app", "gateway")], "10.244.2.10"),
            ],
        });
        send.send_response(Response::new(Body::from(
            serde_json::to_vec(&list).unwrap(),
        )));

        let (request, send) = handle.next_request().await.expect("WATCH");
        let query = request.uri().query().unwrap_or("").to_string();
        assert_eq!(request.uri().path(), "/api/v1/pods");
        assert!(query.contains("watch=true"), "{query}");
        assert!(query.contains("resourceVersion=100"), "{query}");
        let mut added = pod_json("shop", "api", &[("app", "api")], "10.244.1.11");
        added["metadata"]["resourceVersion"] = json!("101");
        let mut body = serde_json::to_vec(&json!({"type": "ADDED", "object": added})).unwrap();
        body.push(b'\n');
        send.send_response(Response::new(Body::from(body)));
        // The watch is re-opened after the body ends; leave that request unanswered (and the
        // service open: dropping the handle would fail the watch).
        let _reopened = handle.next_request().await;
        std::future::pending::<()>().await;
    });

    let wait = async {
        loop {
            if view.index.read().counts().pods == 3 {
                break;
            }
            updates.changed().await.expect("view dropped");
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("the watcher did not populate the index");
    tokio::time::timeout(Duration::from_secs(1), view.readiness.wait())
        .await
        .expect("not ready after the initial list");

    let names: Vec<String> = view
        .index
        .read()
        .pods()
        .map(|p| p.key().to_string())
        .collect();
    assert_eq!(names, ["pay/gateway", "shop/api", "shop/frontend"]);
    let stats = view.stats.get(WatchedKind::Pods);
    assert_eq!(stats.relists.load(Ordering::Relaxed), 1);
    assert_eq!(stats.skipped.load(Ordering::Relaxed), 1);
    assert_eq!(view.stats.restarts(WatchedKind::Pods), 0);

    watch.abort();
    server.abort();
}

// === Node-scoped pod watches against the fake API ===

fn pod_on(ns: &str, name: &str, lbls: &[(&str, &str)], ip: &str, node: &str) -> Value {
    let mut pod = pod_json(ns, name, lbls, ip);
    pod["spec"]["nodeName"] = json!(node);
    pod
}

fn spec_json(name: &str, to: Value) -> Value {
    json!({
        "apiVersion": "netreach.dev/v1alpha1", "kind": "ProbeSpec",
        "metadata": {"name": name, "namespace": "shop", "generation": 1},
        "spec": {"from": {"podSelector": {"matchLabels": {"app": "web"}}}, "to": to},
    })
}

fn index_pods(view: &ClusterView) -> Vec<String> {
    view.index
        .read()
        .pods()
        .map(|p| p.key().to_string())
        .collect()
}

pub(super) async fn eventually(
    view: &ClusterView,
    what: &str,
    mut done: impl FnMut(&ClusterView) -> bool,
) {
    let mut updates = view.subscribe();
    let wait = async {
        while !done(view) {
            let _ = tokio::time::timeout(Duration::from_millis(50), updates.changed()).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

/// The node-scoped agent opens this node's watch, the CNI agents' and its specs' selector
/// watches (never a watch of every pod), holds only those pods, and follows a spec change:
/// a new destination selector is listed before the spec reaches the scheduler, and dropped
/// with its pods once the spec is gone.
#[tokio::test]
async fn node_scoped_watches_follow_the_specs() {
    use crate::cluster::fake_api::FakeApi;
    use crate::cluster::index::PodCoverage;

    let api = FakeApi::new();
    for (name, labels) in [
        ("shop", json!({"team": "shop"})),
        ("pay", json!({"team": "pay"})),
    ] {
        api.apply(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": labels}}));
    }
    for pod in [
        pod_on("shop", "web-1", &[("app", "web")], "10.0.1.1", "node-1"),
        pod_on("shop", "web-2", &[("app", "web")], "10.0.2.1", "node-2"),
        pod_on("shop", "api-1", &[("app", "api")], "10.0.2.2", "node-2"),
        pod_on("shop", "db-1", &[("app", "db")], "10.0.1.3", "node-1"),
        pod_on("pay", "gw", &[("app", "gateway")], "10.0.2.3", "node-2"),
        pod_on("pay", "noise", &[("app", "noise")], "10.0.2.4", "node-2"),
        pod_on(
            "kube-system",
            "calico-node-x",
            &[("k8s-app", "calico-node")],
            "10.0.2.9",
            "node-2",
        ),
    ] {
        api.apply(pod);
    }
    api.apply(spec_json(
        "a",
        json!([{"podSelector": {"matchLabels": {"app": "api"}}, "ports": [{"port": 80}]}]),
    ));

    let client = Client::new(api.router(), "default");
    let view = ClusterView::new(CniAgentMatcher::builtin());
    let watchers = Watchers::new(client, view.clone()).with_pod_scope(PodScope::node("node-1"));
    let run = tokio::spawn(watchers.run());
    tokio::time::timeout(Duration::from_secs(10), view.readiness.wait())
        .await
        .expect("ready once every first watch listed");

    let pod_lists: Vec<String> = api
        .requests()
        .into_iter()
        .filter(|r| r.contains("pods") && !r.contains("watch=true"))
        .collect();
    let mut expected = vec![
        "GET /api/v1/namespaces/shop/pods?labelSelector=app=api",
        "GET /api/v1/namespaces/shop/pods?labelSelector=app=web",
        "GET /api/v1/pods?fieldSelector=spec.nodeName=node-1",
        "GET /api/v1/pods?labelSelector=app in (flannel,kindnet)",
        "GET /api/v1/pods?labelSelector=component=antrea-agent",
        "GET /api/v1/pods?labelSelector=k8s-app in (aws-node,calico-node,cilium,kube-router)",
        "GET /api/v1/pods?labelSelector=name=weave-net",
    ];
    expected.sort_unstable();
    let mut got = pod_lists.clone();
    got.sort();
    assert_eq!(got, expected);
    assert_eq!(
        index_pods(&view),
        [
            "kube-system/calico-node-x",
            "shop/api-1",
            "shop/db-1",
            "shop/web-1",
            "shop/web-2"
        ]
    );
    assert_eq!(view.index.read().coverage(), PodCoverage::Partial);
    let spec_names = |view: &ClusterView| -> Vec<String> {
        view.specs().iter().map(|s| s.key.to_string()).collect()
    };
    assert_eq!(spec_names(&view), ["shop/a"]);

    // A spec with a new destination selector (every namespace): listed before it is served.
    api.apply(spec_json(
        "b",
        json!([{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "gateway"}},
                "ports": [{"port": 443}]}]),
    ));
    eventually(&view, "spec b served", |v| spec_names(v).len() == 2).await;
    assert!(
        index_pods(&view).contains(&"pay/gw".to_string()),
        "served only after its destinations were listed: {:?}",
        index_pods(&view)
    );
    assert!(
        api.requests()
            .contains(&"GET /api/v1/pods?labelSelector=app=gateway".to_string())
    );

    // A watched destination changes: the event arrives through its selector watch.
    api.apply(pod_on(
        "pay",
        "gw-2",
        &[("app", "gateway")],
        "10.0.2.5",
        "node-2",
    ));
    eventually(&view, "the new gateway pod", |v| {
        index_pods(v).contains(&"pay/gw-2".to_string())
    })
    .await;

    // Spec b goes: its watch stops and its pods leave; the shared ones stay.
    api.delete(&spec_json("b", json!([])));
    eventually(&view, "pay pods released", |v| {
        !index_pods(v).iter().any(|p| p.starts_with("pay/"))
    })
    .await;
    assert_eq!(spec_names(&view), ["shop/a"]);
    assert!(index_pods(&view).contains(&"shop/api-1".to_string()));
    assert!(!index_pods(&view).contains(&"pay/noise".to_string()));

    run.abort();
}

/// Watchers over `api`, once their first full sync is done (abort the handle to stop them).
async fn watching(
    api: &crate::cluster::fake_api::FakeApi,
) -> (ClusterView, tokio::task::JoinHandle<Error>) {
    let client = Client::new(api.router(), "default");
    let view = ClusterView::new(CniAgentMatcher::builtin());
    let run = tokio::spawn(Watchers::new(client, view.clone()).run());
    tokio::time::timeout(Duration::from_secs(10), view.readiness.wait())
        .await
        .expect("ready");
    (view, run)
}

/// The cluster scope is the single watch of every pod it always was.
#[tokio::test]
async fn cluster_scoped_pods_are_one_watch_of_every_pod() {
    use crate::cluster::fake_api::FakeApi;

    let api = FakeApi::new();
    api.apply(pod_on(
        "pay",
        "noise",
        &[("app", "noise")],
        "10.0.2.4",
        "node-2",
    ));
    let (view, run) = watching(&api).await;
    let pod_requests: Vec<String> = api
        .requests()
        .into_iter()
        .filter(|r| r.contains("pods"))
        .collect();
    assert_eq!(pod_requests[0], "GET /api/v1/pods");
    assert!(
        pod_requests
            .iter()
            .all(|r| r.starts_with("GET /api/v1/pods"))
    );
    assert_eq!(index_pods(&view), ["pay/noise"]);
    run.abort();
}

/// A 60 s outage of the API server that loses its watch history, with a NetworkPolicy and a
/// ProbeSpec deleted while it is down: every watch fails and says since when; once the API is
/// back, every watch is served again and the deletions are in the view within 15 s (the
/// backoff's 5 s cap, then a relist after the 410). Virtual time: the 60 s pass at once.
#[tokio::test(start_paused = true)]
async fn after_an_outage_every_watch_is_back_and_deletions_are_seen_within_seconds() {
    use crate::cluster::fake_api::FakeApi;

    let api = FakeApi::new();
    api.apply(json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "shop", "labels": {"team": "shop"}}}));
    api.apply(pod_on(
        "shop",
        "web-1",
        &[("app", "web")],
        "10.0.1.1",
        "node-1",
    ));
    let deny = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "deny", "namespace": "shop"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}});
    api.apply(deny.clone());
    let spec = spec_json(
        "a",
        json!([{"podSelector": {"matchLabels": {"app": "web"}}, "ports": [{"port": 80}]}]),
    );
    api.apply(spec.clone());

    let (view, run) = watching(&api).await;
    let watches = api.open_watches();
    assert!(watches >= 6, "{watches} watches open");
    let restarts = |view: &ClusterView| -> u64 {
        WatchedKind::ALL
            .iter()
            .map(|k| view.stats.restarts(*k))
            .sum()
    };
    let restarts_before = restarts(&view);

    // Down for 60 s; the policy and the spec are deleted half-way.
    api.go_down();
    tokio::time::sleep(Duration::from_secs(30)).await;
    api.delete(&deny);
    api.delete(&spec);
    tokio::time::sleep(Duration::from_secs(30)).await;
    let failing: Vec<WatchedKind> = WatchedKind::ALL
        .iter()
        .copied()
        .filter(|k| view.stats.get(*k).failing_since().is_some())
        .collect();
    for kind in [
        WatchedKind::Pods,
        WatchedKind::Namespaces,
        WatchedKind::NetworkPolicies,
        WatchedKind::ProbeSpecs,
    ] {
        assert!(failing.contains(&kind), "{kind:?} not failing: {failing:?}");
    }
    assert!(
        view.index
            .read()
            .policy(&ObjectRef::new("shop", "deny"))
            .is_some()
    );

    api.come_back(true);
    let back = tokio::time::Instant::now();
    let complete = |view: &ClusterView| {
        view.index
            .read()
            .policy(&ObjectRef::new("shop", "deny"))
            .is_none()
            && view.specs().is_empty()
            && WatchedKind::ALL
                .iter()
                .all(|k| view.stats.get(*k).failing_since().is_none())
            && api.open_watches() == watches
    };
    while !complete(&view) {
        assert!(
            back.elapsed() < Duration::from_secs(15),
            "the view was not complete 15 s after the API came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = back.elapsed();
    eprintln!(
        "outage recovery: complete view {:.1} s after the API came back",
        took.as_secs_f64()
    );
    assert!(restarts(&view) > restarts_before, "restart counters rise");
    run.abort();
}

/// A 410 Gone on an open watch (a compacted history) relists at once: no backoff.
#[tokio::test(start_paused = true)]
async fn a_410_on_a_watch_relists_at_once() {
    use crate::cluster::fake_api::FakeApi;

    let api = FakeApi::new();
    api.apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}));
    let (view, run) = watching(&api).await;
    let relists = |view: &ClusterView| {
        view.stats
            .get(WatchedKind::Namespaces)
            .relists
            .load(Ordering::Relaxed)
    };
    let before = relists(&view);
    api.expire_watches();
    let started = tokio::time::Instant::now();
    while relists(&view) == before {
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "no relist within 100 ms of the 410"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(view.stats.restarts(WatchedKind::Namespaces) >= 1);
    run.abort();
}

#[test]
fn a_set_of_watched_kinds_names_its_members_in_order() {
    let cases: [(&[WatchedKind], &str); 3] = [
        (&[], ""),
        (&[WatchedKind::NetworkPolicies], "networkpolicies"),
        (
            &[
                WatchedKind::EndpointSlices,
                WatchedKind::Pods,
                WatchedKind::Pods,
            ],
            "pods, endpointslices",
        ),
    ];
    for (kinds, shown) in cases {
        let set: WatchedKinds = kinds.iter().copied().collect();
        assert_eq!(set.to_string(), shown);
        assert_eq!(set.is_empty(), kinds.is_empty());
        for kind in WatchedKind::ALL {
            assert_eq!(set.contains(kind), kinds.contains(&kind), "{kind:?}");
        }
    }
    assert!(WatchedKind::ALL.len() <= 16, "the set is 16 bits");
}
