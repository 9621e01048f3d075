//! Tests of the status writers: the pure aggregate, and the exact requests against a mocked API
//! server (`tower_test::mock::pair` + `kube::Client::new`).

use std::time::{Duration, SystemTime};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use probe_spec::{
    Direction, FailingPair, PairVerdict, ProbeRequestPhase, ProbeRequestStatus, Protocol,
};
use serde_json::{Value, json};

use super::*;

// === A scripted API server (crate::testing::mock_api) ===

pub(crate) use crate::testing::mock_api::{MERGE_PATCH, mock_client};

/// A Kubernetes `Status` error body.
pub(crate) fn api_error(code: u16, reason: &str) -> Value {
    crate::testing::mock_api::api_error(code, reason, &format!("{reason} (test)"))
}

// === Fixtures ===

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
}

fn rfc3339(secs: u64) -> String {
    serde_json::to_value(time(at(secs)))
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

fn failing(from: &str, since: u64) -> FailingPair {
    FailingPair {
        from: from.into(),
        to: "pay/gateway".into(),
        port: Some(8443),
        protocol: Some(Protocol::Tcp),
        verdict: PairVerdict::BlockedByPolicy,
        reason: Some("default_deny".into()),
        policy: Some("pay/default-deny".into()),
        since: time(at(since)),
        recent_changes: vec![],
        probes: Default::default(),
    }
}

fn counts(ok: u32, blocked: u32) -> VerdictCounts {
    VerdictCounts {
        ok,
        blocked_by_policy: blocked,
        ..VerdictCounts::default()
    }
}

fn contribution(generation: i64, ok: u32, blocked: u32, updated: u64) -> NodeContribution {
    NodeContribution {
        observed_generation: Some(generation),
        counts: counts(ok, blocked),
        failing: blocked,
        last_failing_pairs: (0..blocked)
            .map(|i| failing(&format!("shop/f{updated}-{i}"), updated + u64::from(i)))
            .collect(),
        problem: None,
        sources_narrowed: None,
        updated_at: time(at(updated)),
    }
}

fn spec_object(rv: &str, status: Value) -> Value {
    json!({
        "apiVersion": "netreach.dev/v1alpha1", "kind": "ProbeSpec",
        "metadata": {"name": "x", "namespace": "shop", "generation": 3, "resourceVersion": rv},
        "spec": {"from": {"podSelector": {}}, "to": [{"dns": "api"}], "expect": "Allow"},
        "status": status,
    })
}

const SPEC_PATH: &str = "/apis/netreach.dev/v1alpha1/namespaces/shop/probespecs/x";

fn writer(client: Client) -> SpecStatusWriter {
    SpecStatusWriter::new(client, StatusConfig::for_node("node-1"))
}

fn spec_ref() -> SpecRef {
    SpecRef::Namespaced(ObjectRef::new("shop", "x"))
}

fn report(ok: u32, blocked: u32) -> NodeReport {
    NodeReport {
        observed_generation: Some(3),
        counts: counts(ok, blocked),
        failing: blocked,
        last_failing_pairs: (0..blocked)
            .map(|i| failing("shop/frontend", u64::from(i)))
            .collect(),
        problem: None,
        sources_narrowed: None,
    }
}

fn condition<'a>(status: &'a ProbeSpecStatus, type_: &str) -> &'a Condition {
    status.conditions.iter().find(|c| c.type_ == type_).unwrap()
}

// === aggregate ===

#[test]
fn aggregate_sums_nodes_and_merges_failing_pairs_newest_first() {
    let nodes = BTreeMap::from([
        ("node-1".to_string(), contribution(3, 10, 15, 100)),
        ("node-2".to_string(), contribution(2, 5, 10, 200)),
    ]);
    let status = aggregate(Expectation::Allow, &nodes, &[], at(300));
    assert_eq!(status.counts, counts(15, 25));
    assert_eq!(
        status.observed_generation,
        Some(2),
        "the oldest generation any node saw"
    );
    assert_eq!(status.last_failing_pairs.len(), MAX_LAST_FAILING_PAIRS);
    assert_eq!(status.last_failing_pairs[0].from, "shop/f200-9");
    assert!(
        status
            .last_failing_pairs
            .windows(2)
            .all(|w| w[0].since.0 >= w[1].since.0)
    );
    let ready = condition(&status, CONDITION_READY);
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", reasons::PROBING)
    );
    assert_eq!(
        ready.message,
        "40 pair(s) probed by 2 agent(s): node-1, node-2"
    );
    let satisfied = condition(&status, CONDITION_SATISFIED);
    assert_eq!(satisfied.status, "False");
    assert_eq!(satisfied.reason, reasons::PAIRS_FAIL_EXPECTATION);
    assert_eq!(
        satisfied.message,
        "25 of 40 pair(s) do not meet expect Allow (15 ok, 25 blocked_by_policy)"
    );
    assert_eq!(satisfied.observed_generation, Some(2));
}

#[test]
fn aggregate_conditions_table_and_transition_times() {
    let one = |c: NodeContribution| BTreeMap::from([("node-1".to_string(), c)]);
    let mut invalid = contribution(1, 0, 0, 0);
    invalid.problem = Some("spec.interval: bogus".into());
    type Case = (
        &'static str,
        BTreeMap<String, NodeContribution>,
        [(&'static str, &'static str); 2],
    );
    let cases: Vec<Case> = vec![
        (
            "no agent reports",
            BTreeMap::new(),
            [("False", reasons::NO_PAIRS), ("Unknown", reasons::NO_PAIRS)],
        ),
        (
            "all ok",
            one(contribution(1, 4, 0, 0)),
            [
                ("True", reasons::PROBING),
                ("True", reasons::ALL_PAIRS_MEET_EXPECTATION),
            ],
        ),
        (
            "invalid spec",
            one(invalid),
            [
                ("False", reasons::INVALID_SPEC),
                ("Unknown", reasons::NO_PAIRS),
            ],
        ),
    ];
    for (name, nodes, want) in cases {
        let status = aggregate(Expectation::Allow, &nodes, &[], at(0));
        let got: Vec<(&str, &str)> = [CONDITION_READY, CONDITION_SATISFIED]
            .iter()
            .map(|t| {
                let c = condition(&status, t);
                (c.status.as_str(), c.reason.as_str())
            })
            .collect();
        assert_eq!(got, want, "{name}");
    }

    // lastTransitionTime moves only when a condition's status changes.
    let nodes = one(contribution(1, 4, 0, 0));
    let first = aggregate(Expectation::Allow, &nodes, &[], at(10));
    let again = aggregate(Expectation::Allow, &nodes, &first.conditions, at(20));
    assert_eq!(
        condition(&again, CONDITION_SATISFIED).last_transition_time,
        time(at(10))
    );
    let failing_nodes = one(contribution(1, 4, 1, 0));
    let flipped = aggregate(
        Expectation::Allow,
        &failing_nodes,
        &again.conditions,
        at(30),
    );
    assert_eq!(
        condition(&flipped, CONDITION_SATISFIED).last_transition_time,
        time(at(30))
    );
    assert_eq!(
        condition(&flipped, CONDITION_READY).last_transition_time,
        time(at(10))
    );
}

#[test]
fn sources_narrowed_condition_is_present_only_while_a_fresh_entry_reports_narrowing() {
    let message = "from.namespaceSelector {} also selects namespaces other than shop, which a ProbeSpec does not probe from: billing, payments";
    let mut narrowed = contribution(1, 4, 0, 0);
    narrowed.sources_narrowed = Some(message.into());
    let mut narrowed_to_nothing = contribution(1, 0, 0, 0);
    narrowed_to_nothing.sources_narrowed = Some(message.into());
    let cases = [
        ("nothing narrowed", vec![contribution(1, 4, 0, 0)], None),
        ("narrowed", vec![narrowed.clone()], Some(message)),
        (
            "one of two nodes reports it",
            vec![contribution(1, 4, 0, 0), narrowed],
            Some(message),
        ),
        ("no pairs left", vec![narrowed_to_nothing], Some(message)),
    ];
    for (name, contributions, want) in cases {
        let nodes: BTreeMap<String, NodeContribution> = contributions
            .into_iter()
            .enumerate()
            .map(|(i, c)| (format!("node-{i}"), c))
            .collect();
        let status = aggregate(Expectation::Allow, &nodes, &[], at(0));
        let got = status
            .conditions
            .iter()
            .find(|c| c.type_ == CONDITION_SOURCES_NARROWED)
            .map(|c| {
                assert_eq!(c.status, "True", "{name}");
                assert_eq!(c.reason, reasons::OTHER_NAMESPACES_IGNORED, "{name}");
                c.message.as_str()
            });
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn a_narrowed_report_is_not_empty() {
    let mut narrowed = NodeReport::default();
    assert!(narrowed.is_empty());
    narrowed.sources_narrowed = Some("payments".into());
    assert!(
        !narrowed.is_empty(),
        "the node keeps its entry, so the condition shows"
    );
}

// === SpecStatusWriter against the mocked API ===

#[tokio::test]
async fn publish_patches_own_node_entry_and_the_aggregate_with_a_precondition() {
    let (client, mut server) = mock_client();
    let writer = writer(client);
    let spec = spec_ref();
    let rep = report(2, 1);
    let other = serde_json::to_value(contribution(3, 5, 0, 990)).unwrap();
    let stale = serde_json::to_value(contribution(2, 7, 0, 1)).unwrap();
    let existing = spec_object(
        "41",
        json!({"nodes": {"node-2": other, "node-9": stale, "node-bad": "garbage"}}),
    );
    let (result, (get, patch)) = tokio::join!(writer.publish_at(&spec, &rep, at(1000)), async {
        let get = server.respond(200, existing).await;
        let patch = server.respond(200, spec_object("42", json!({}))).await;
        (get, patch)
    });
    assert_eq!(result.unwrap(), Written::Patched);
    assert_eq!(
        (get.method, get.path.as_str()),
        (http::Method::GET, SPEC_PATH)
    );

    assert_eq!(patch.method, http::Method::PATCH);
    assert_eq!(patch.path, format!("{SPEC_PATH}/status"));
    assert_eq!(patch.content_type.as_deref(), Some(MERGE_PATCH));
    let body = &patch.body;
    assert_eq!(body["metadata"], json!({"resourceVersion": "41"}));
    let status = &body["status"];
    // Own entry written; the stale one (heartbeat 999 s old) removed; others untouched.
    assert_eq!(
        status["nodes"],
        json!({
            "node-1": {
                "observedGeneration": 3,
                "counts": {"ok": 2, "blockedByPolicy": 1, "policyNotEnforced": 0, "unexpectedBlock": 0, "notProbed": 0, "inconclusive": 0},
                "failing": 1,
                "lastFailingPairs": [{
                    "from": "shop/frontend", "to": "pay/gateway", "port": 8443, "protocol": "TCP",
                    "verdict": "blocked_by_policy", "reason": "default_deny",
                    "policy": "pay/default-deny", "since": rfc3339(0),
                }],
                "updatedAt": rfc3339(1000),
            },
            "node-9": null,
        })
    );
    // The aggregate covers node-1 and node-2.
    assert_eq!(
        status["counts"],
        json!({"ok": 7, "blockedByPolicy": 1, "policyNotEnforced": 0, "unexpectedBlock": 0, "notProbed": 0, "inconclusive": 0})
    );
    assert_eq!(status["observedGeneration"], json!(3));
    assert_eq!(status["lastFailingPairs"].as_array().unwrap().len(), 1);
    let conditions = status["conditions"].as_array().unwrap();
    assert_eq!(conditions[0]["type"], "Ready");
    assert_eq!(conditions[1]["type"], "Satisfied");
    assert_eq!(conditions[1]["status"], "False");
    assert_eq!(conditions[1]["reason"], "PairsFailExpectation");

    // The same report again: nothing to write (until the heartbeat is due).
    let again = writer
        .publish_at(&spec_ref(), &report(2, 1), at(1010))
        .await;
    assert_eq!(again.unwrap(), Written::Unchanged);
    server.expect_none().await;
}

#[tokio::test]
async fn a_cluster_probe_spec_status_is_written_at_its_cluster_scoped_path() {
    let (client, mut server) = mock_client();
    let writer = writer(client);
    let spec = SpecRef::Cluster("x".into());
    let mut existing = spec_object("5", json!({}));
    existing["kind"] = json!("ClusterProbeSpec");
    existing["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("namespace");
    let (one, two) = (report(1, 0), report(2, 0));
    let (result, (get, patch)) = tokio::join!(writer.publish_at(&spec, &one, at(0)), async {
        let get = server.respond(200, existing.clone()).await;
        let patch = server.respond(200, existing.clone()).await;
        (get, patch)
    });
    assert_eq!(result.unwrap(), Written::Patched);
    const PATH: &str = "/apis/netreach.dev/v1alpha1/clusterprobespecs/x";
    assert_eq!(get.path, PATH);
    assert_eq!(patch.path, format!("{PATH}/status"));
    assert_eq!(patch.body["status"]["counts"]["ok"], json!(1));

    // Errors name the kind and the bare name.
    let (result, _) = tokio::join!(writer.publish_at(&spec, &two, at(1)), async {
        server.respond(500, api_error(500, "InternalError")).await
    });
    let error = result.unwrap_err().to_string();
    assert!(error.starts_with("reading ClusterProbeSpec x: "), "{error}");
}

#[tokio::test]
async fn a_conflict_rereads_and_retries() {
    let (client, mut server) = mock_client();
    let writer = writer(client);
    let spec = spec_ref();
    let rep = report(1, 0);
    let (result, versions) = tokio::join!(writer.publish_at(&spec, &rep, at(0)), async {
        let mut versions = Vec::new();
        server.respond(200, spec_object("1", json!({}))).await;
        let p = server.respond(409, api_error(409, "Conflict")).await;
        versions.push(p.body["metadata"]["resourceVersion"].clone());
        // Meanwhile node-2 wrote its entry.
        let node2 = serde_json::to_value(contribution(3, 4, 0, 0)).unwrap();
        server
            .respond(200, spec_object("2", json!({"nodes": {"node-2": node2}})))
            .await;
        let p = server.respond(200, spec_object("3", json!({}))).await;
        versions.push(p.body["metadata"]["resourceVersion"].clone());
        (versions, p.body["status"]["counts"]["ok"].clone())
    });
    assert_eq!(result.unwrap(), Written::Patched);
    assert_eq!(versions.0, [json!("1"), json!("2")]);
    assert_eq!(
        versions.1,
        json!(5),
        "the retry's aggregate includes node-2"
    );
}

#[tokio::test]
async fn api_errors_are_returned_and_a_deleted_spec_is_tolerated() {
    let (client, mut server) = mock_client();
    let writer = writer(client);
    let spec = spec_ref();
    let rep = report(1, 0);

    let (result, _) = tokio::join!(
        writer.publish_at(&spec, &rep, at(0)),
        server.respond(500, api_error(500, "InternalError"))
    );
    let err = result.unwrap_err();
    assert_eq!(err.metric_label(), "get");

    let (result, _) = tokio::join!(writer.publish_at(&spec, &rep, at(0)), async {
        server.respond(200, spec_object("1", json!({}))).await;
        server.respond(500, json!("not even a Status")).await
    });
    assert_eq!(result.unwrap_err().metric_label(), "patch");

    let (result, _) = tokio::join!(
        writer.publish_at(&spec, &rep, at(0)),
        server.respond(404, api_error(404, "NotFound"))
    );
    assert_eq!(result.unwrap(), Written::Gone);
}

#[tokio::test]
async fn an_empty_report_withdraws_the_node_entry_once() {
    let (client, mut server) = mock_client();
    let writer = writer(client);
    let spec = spec_ref();
    let rep = NodeReport::default();
    let mine = serde_json::to_value(contribution(3, 2, 0, 0)).unwrap();
    let (result, patch) = tokio::join!(writer.publish_at(&spec, &rep, at(10)), async {
        server
            .respond(200, spec_object("5", json!({"nodes": {"node-1": mine}})))
            .await;
        server.respond(200, spec_object("6", json!({}))).await
    });
    assert_eq!(result.unwrap(), Written::Patched);
    assert_eq!(patch.body["status"]["nodes"], json!({"node-1": null}));
    assert_eq!(patch.body["status"]["lastFailingPairs"], Value::Null);
    assert_eq!(patch.body["status"]["conditions"][0]["reason"], "NoPairs");

    // Nothing of ours left: the next empty report reads and writes nothing more.
    let (result, _) = tokio::join!(
        writer.publish_at(&spec, &rep, at(20 + 600)),
        server.respond(200, spec_object("6", json!({})))
    );
    assert_eq!(result.unwrap(), Written::Unchanged);
    server.expect_none().await;
}

// === RequestStatusWriter ===

#[tokio::test]
async fn probe_request_status_is_merge_patched_with_explicit_nulls() {
    let (client, mut server) = mock_client();
    let writer = RequestStatusWriter::new(client);
    let status = ProbeRequestStatus {
        phase: ProbeRequestPhase::Succeeded,
        node: Some("node-1".into()),
        target: Some("pay/gateway:8443/TCP".into()),
        outcome: Some("timeout".into()),
        verdict: Some(PairVerdict::BlockedByPolicy),
        reason: Some("default_deny".into()),
        direction: Some(Direction::Ingress),
        policies: vec!["pay/default-deny".into()],
        summary: Some("blocked by pay/default-deny".into()),
        ..ProbeRequestStatus::default()
    };
    let request = ObjectRef::new("shop", "r1");
    let updated = json!({
        "apiVersion": "netreach.dev/v1alpha1", "kind": "ProbeRequest",
        "metadata": {"name": "r1", "namespace": "shop", "resourceVersion": "9"},
        "spec": {"from": {"pod": "frontend"}, "to": {"ip": "10.0.0.1", "port": 80}},
        "status": {"phase": "Succeeded"},
    });
    let (result, patch) = tokio::join!(
        writer.write(&request, &status),
        server.respond(200, updated)
    );
    assert_eq!(result.unwrap(), Written::Patched);
    assert_eq!(patch.method, http::Method::PATCH);
    assert_eq!(
        patch.path,
        "/apis/netreach.dev/v1alpha1/namespaces/shop/proberequests/r1/status"
    );
    assert_eq!(patch.content_type.as_deref(), Some(MERGE_PATCH));
    assert_eq!(
        patch.body,
        json!({"status": {
            "phase": "Succeeded", "node": "node-1", "target": "pay/gateway:8443/TCP",
            "outcome": "timeout", "outcomes": null, "verdict": "blocked_by_policy",
            "reason": "default_deny", "direction": "ingress", "policies": ["pay/default-deny"],
            "summary": "blocked by pay/default-deny", "explanation": null,
            "latencySeconds": null, "startedAt": null, "completedAt": null, "message": null,
        }})
    );

    let (result, _) = tokio::join!(
        writer.write(&request, &status),
        server.respond(404, api_error(404, "NotFound"))
    );
    assert_eq!(result.unwrap(), Written::Gone);
    let (result, _) = tokio::join!(
        writer.write(&request, &status),
        server.respond(500, api_error(500, "InternalError"))
    );
    assert_eq!(result.unwrap_err().metric_label(), "patch");
}

/// A finished request whose TTL ran out is deleted with a UID precondition, so a new request
/// created under the same name survives (409), as does one already gone (404).
#[tokio::test]
async fn expired_probe_requests_are_deleted_by_uid() {
    let (client, mut server) = mock_client();
    let writer = RequestStatusWriter::new(client);
    let request = ObjectRef::new("shop", "r1");
    let deleted = json!({"apiVersion": "v1", "kind": "Status", "status": "Success"});
    let (result, delete) = tokio::join!(
        writer.delete(&request, "uid-1"),
        server.respond(200, deleted)
    );
    assert_eq!(result.unwrap(), Written::Patched);
    assert_eq!(delete.method, http::Method::DELETE);
    assert_eq!(
        delete.path,
        "/apis/netreach.dev/v1alpha1/namespaces/shop/proberequests/r1"
    );
    assert_eq!(delete.body["preconditions"]["uid"], "uid-1");
    for (code, reason) in [(404, "NotFound"), (409, "Conflict")] {
        let (result, _) = tokio::join!(
            writer.delete(&request, "uid-1"),
            server.respond(code, api_error(code, reason))
        );
        assert_eq!(result.unwrap(), Written::Gone, "{code}");
    }
    let (result, _) = tokio::join!(
        writer.delete(&request, "uid-1"),
        server.respond(403, api_error(403, "Forbidden"))
    );
    let error = result.unwrap_err();
    assert_eq!(error.metric_label(), "delete");
    assert!(error.to_string().contains("shop/r1"), "{error}");
}

#[test]
fn the_null_list_covers_every_probe_request_status_field() {
    let full = ProbeRequestStatus {
        phase: ProbeRequestPhase::Failed,
        node: Some(String::new()),
        target: Some(String::new()),
        outcome: Some(String::new()),
        outcomes: [("open".to_string(), 1)].into(),
        verdict: Some(PairVerdict::Ok),
        reason: Some(String::new()),
        direction: Some(Direction::Egress),
        policies: vec![String::new()],
        summary: Some(String::new()),
        explanation: Some(String::new()),
        latency_seconds: Some(0.0),
        started_at: Some(Time(Timestamp::UNIX_EPOCH)),
        completed_at: Some(Time(Timestamp::UNIX_EPOCH)),
        message: Some(String::new()),
    };
    let value = serde_json::to_value(full).unwrap();
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut listed = REQUEST_STATUS_FIELDS.to_vec();
    keys.sort_unstable();
    listed.sort_unstable();
    assert_eq!(keys, listed);
}

/// 5,000 agents write one spec's status: the object keeps at most 32 entries (a few KiB, far
/// from etcd's 1.5 MiB), agents with failing pairs take the slots of all-fine ones, and the
/// aggregate says the pairs fail.
#[test]
fn status_stays_bounded_whatever_the_node_count() {
    let mut object = spec_object("1", json!({}));
    let mut patches = 0;
    for i in 0..5000u64 {
        let node = format!("node-{i:04}");
        let mut config = StatusConfig::for_node(&node);
        config.max_node_entries = MAX_NODE_ENTRIES;
        // Every 50th node has a failing pair.
        let report = if i % 50 == 7 {
            let mut r = report(3, 1);
            r.failing = 1;
            r.last_failing_pairs = vec![failing(&format!("shop/src-{i}"), 100)];
            r
        } else {
            report(4, 0)
        };
        let dynamic: DynamicObject = serde_json::from_value(object.clone()).unwrap();
        let current = parse_current(&dynamic, &spec_ref());
        let Some(patch) = status_patch(&config, current, &report, at(1000)).unwrap() else {
            continue;
        };
        patches += 1;
        merge(&mut object, &patch);
    }
    let nodes = object["status"]["nodes"].as_object().unwrap();
    assert_eq!(nodes.len(), MAX_NODE_ENTRIES);
    assert!(
        nodes.values().all(|n| n["failing"] == json!(1)),
        "failing agents took every slot"
    );
    let size = object["status"].to_string().len();
    assert!(size < 64 * 1024, "status is {size} bytes");
    // Writers: the first 32 agents (node-0007 among them fails), then the next 31 failing
    // ones, each evicting an all-fine entry; the other 4,937 agents write nothing.
    assert_eq!(patches, 32 + 31);
    let status: ProbeSpecStatus = serde_json::from_value(object["status"].clone()).unwrap();
    assert_eq!(condition(&status, "Satisfied").status, "False");
    assert!(condition(&status, "Ready").message.contains("at most 32"));
}

/// A JSON merge patch (RFC 7386) applied to `target`.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (key, value) in p {
                if value.is_null() {
                    t.remove(key);
                } else {
                    merge(t.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}
