//! The JSON of a pair, pinned: every kind of destination reads into a typed report and writes
//! back byte for byte, and a typed report writes the contract's field names and codes.

use serde_json::{Value, json};

use super::*;
use crate::pair::Text;
use crate::policy;
use crate::probe::NotProbedReason;

/// A pair's JSON with the fields every report has, plus `fields` (`null`: leave it out).
fn pair(fields: Value) -> Value {
    let mut pair = json!({
        "spec": "shop/paths",
        "from": "shop/web",
        "outcome": "open",
        "policy_allowed": true,
        "verdict": "ok",
        "reason": "",
        "policies": [],
        "summary": "shop/web -> ...: ok (open)",
        "explanation": "",
        "latency_seconds": 0.5,
        "last_probe": "2025-06-01T12:00:00Z",
        "expect": "Allow",
        "meets_expectation": true
    });
    let object = pair.as_object_mut().expect("an object");
    for (key, value) in fields.as_object().expect("an object") {
        if value.is_null() {
            object.remove(key);
        } else {
            object.insert(key.clone(), value.clone());
        }
    }
    pair
}

#[test]
fn every_kind_of_pair_reads_into_its_target_and_writes_back_unchanged() {
    let cases: Vec<(&str, Value, PairTarget)> = vec![
        (
            "a pod",
            pair(json!({"to": "shop/api", "ip": "10.244.1.11", "port": 8080, "protocol": "TCP"})),
            PairTarget::Pod {
                pod: ObjectRef::new("shop", "api"),
                ip: "10.244.1.11".parse().expect("ip"),
                port: 8080,
                protocol: Protocol::Tcp,
            },
        ),
        (
            "an IPv6 address",
            pair(json!({"to": "fd00::10", "ip": "fd00::10", "port": 443, "protocol": "UDP"})),
            PairTarget::Ip {
                ip: "fd00::10".parse().expect("ip"),
                port: 443,
                protocol: Protocol::Udp,
            },
        ),
        (
            "a DNS name",
            pair(json!({"dns": "api.shop.svc.cluster.local", "outcome": "resolved"})),
            PairTarget::Dns {
                name: "api.shop.svc.cluster.local".into(),
            },
        ),
        (
            "a host name resolved to a pod",
            pair(
                json!({"to": "shop/api", "host": "api.example", "ip": "10.244.1.11", "port": 443, "protocol": "TCP"}),
            ),
            PairTarget::Pod {
                pod: ObjectRef::new("shop", "api"),
                ip: "10.244.1.11".parse().expect("ip"),
                port: 443,
                protocol: Protocol::Tcp,
            },
        ),
        (
            "a host name that did not resolve",
            pair(json!({
                "to": "api.example", "host": "api.example", "port": 443, "protocol": "TCP",
                "outcome": "not_probed", "verdict": "not_probed", "reason": "resolve_failed",
                "explanation": "summary\nobserved: not_probed\n\nprobe: host api.example did not resolve",
                "meets_expectation": null
            })),
            PairTarget::Host {
                name: "api.example".into(),
                port: 443,
                protocol: Protocol::Tcp,
            },
        ),
    ];
    for (case, json, target) in cases {
        let report: PairReport = serde_json::from_value(json.clone()).expect(case);
        assert_eq!(report.target, target, "{case}");
        assert_eq!(serde_json::to_value(&report).expect(case), json, "{case}");
    }
}

#[test]
fn a_typed_report_writes_the_contract_names_and_codes() {
    let report = PairReport {
        spec: Some(SpecRef::Cluster("cluster-dns".into())),
        from: ObjectRef::new("shop", "web"),
        mesh: Some("istio".into()),
        target: PairTarget::Pod {
            pod: ObjectRef::new("payments", "gateway"),
            ip: "10.244.2.30".parse().expect("ip"),
            port: 8443,
            protocol: Protocol::Tcp,
        },
        host: None,
        outcome: Outcome::Timeout,
        policy_allowed: false,
        verdict: PairVerdict::BlockedByPolicy,
        reason: Some(PairReason::Policy(
            policy::Reason::NamespaceSelectorMismatch,
        )),
        direction: Some(Direction::Ingress),
        policies: vec![ObjectRef::new("payments", "gateway-ingress").into()],
        summary: "blocked".into(),
        explanation: Text::from("why\n"),
        probe_detail: "connect timed out".into(),
        hints: vec!["a hint".into()],
        latency_seconds: 2.0,
        last_probe: "2025-06-01T12:00:00Z".parse().expect("time"),
        expect: Some(Expectation::Allow),
        meets_expectation: Some(false),
        endpoints: vec![],
        history: Some(crate::pair::SharedHistory::new(history())),
        view_stale: crate::cluster::watch::WatchedKinds::default(),
    };
    let json = serde_json::to_string(&report).expect("json");
    assert_eq!(
        json,
        concat!(
            r#"{"spec":"cluster-dns","from":"shop/web","mesh":"istio","to":"payments/gateway","#,
            r#""ip":"10.244.2.30","port":8443,"protocol":"TCP","outcome":"timeout","#,
            r#""policy_allowed":false,"verdict":"blocked_by_policy","#,
            r#""reason":"namespace_selector_mismatch","direction":"ingress","#,
            r#""policies":["payments/gateway-ingress"],"summary":"blocked","#,
            r#""explanation":"why\n\nprobe: connect timed out","hints":["a hint"],"#,
            r#""latency_seconds":2.0,"last_probe":"2025-06-01T12:00:00Z","expect":"Allow","#,
            r#""meets_expectation":false,"history":{"since":"2025-06-01T11:00:00Z","#,
            r#""probes":{"open":3,"timeout":1},"periods":[{"start":"2025-06-01T11:00:00Z","#,
            r#""end":"2025-06-01T12:00:00Z","verdict":"ok","reason":""},"#,
            r#"{"start":"2025-06-01T12:00:00Z","verdict":"blocked_by_policy","#,
            r#""reason":"namespace_selector_mismatch","policies":["payments/gateway-ingress"]}]}}"#
        )
    );
    let back: PairReport = serde_json::from_str(&json).expect("reads back");
    assert_eq!(back, report);
}

/// Three open probes, then a block: two periods.
fn history() -> crate::pair::PairHistory {
    use crate::pair::history::VerdictPeriod;
    let time = |t: &str| t.parse().expect("time");
    let mut history = crate::pair::PairHistory::new(time("2025-06-01T11:00:00Z"));
    history.probes.set(Outcome::Open, 3);
    history.probes.set(Outcome::Timeout, 1);
    history.periods.push_back(VerdictPeriod {
        start: time("2025-06-01T11:00:00Z"),
        end: Some(time("2025-06-01T12:00:00Z")),
        verdict: PairVerdict::Ok,
        reason: None,
        policies: vec![],
    });
    history.periods.push_back(VerdictPeriod {
        start: time("2025-06-01T12:00:00Z"),
        end: None,
        verdict: PairVerdict::BlockedByPolicy,
        reason: Some(PairReason::Policy(
            policy::Reason::NamespaceSelectorMismatch,
        )),
        policies: vec![ObjectRef::new("payments", "gateway-ingress").into()],
    });
    history
}

#[test]
fn json_that_names_no_valid_pair_is_refused() {
    let cases = [
        (
            "no destination",
            pair(json!({})),
            "none of to, service and dns",
        ),
        (
            "a Service without a port",
            pair(json!({"service": "shop/api"})),
            "no port",
        ),
        (
            "a source without namespace",
            pair(json!({"from": "web", "dns": "a.example"})),
            "from",
        ),
        (
            "an unknown reason",
            pair(json!({"dns": "a.example", "reason": "bad_luck"})),
            "bad_luck",
        ),
        (
            "a pod without its address",
            pair(json!({"to": "shop/api", "port": 80})),
            "no ip",
        ),
        (
            "a destination without a port",
            pair(json!({"to": "10.0.0.1"})),
            "no port",
        ),
    ];
    for (case, json, message) in cases {
        let error = serde_json::from_value::<PairReport>(json).expect_err(case);
        assert!(error.to_string().contains(message), "{case}: {error}");
    }
}

#[test]
fn a_not_probed_reason_reads_back_typed() {
    let json = pair(json!({
        "dns": "a.example", "outcome": "not_probed", "verdict": "not_probed",
        "reason": "agent_overloaded"
    }));
    let report: PairReport = serde_json::from_value(json).expect("json");
    assert_eq!(
        report.not_probed_reason(),
        Some(NotProbedReason::AgentOverloaded)
    );
}

#[test]
fn policies_read_back_as_namespaced_or_cluster_scoped() {
    use crate::cluster::model::PolicyRef;
    let cases: &[(&str, Option<PolicyRef>)] = &[
        ("shop/deny", Some(ObjectRef::new("shop", "deny").into())),
        (
            "ClusterNetworkPolicy/protect",
            Some(PolicyRef::Cluster("ClusterNetworkPolicy/protect".into())),
        ),
        (
            "BaselineAdminNetworkPolicy/default",
            Some(PolicyRef::Cluster(
                "BaselineAdminNetworkPolicy/default".into(),
            )),
        ),
        ("shop", None),
        ("ClusterNetworkPolicy/", None),
        ("a/b/c", None),
    ];
    for (text, want) in cases {
        let got = text.parse::<PolicyRef>().ok();
        assert_eq!(&got, want, "{text}");
        if let Some(policy) = got {
            assert_eq!(policy.to_string(), *text, "written back unchanged");
        }
    }
}
