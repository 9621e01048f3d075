use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use probe_spec::{PairVerdict, ProbeRequest, ProbeRequestPhase, ProbeRequestStatus};

use super::*;
use crate::cluster::Index;
use crate::cluster::model::PodPhase;
use crate::pair::PairTarget;
use crate::probe::Outcome;
use crate::runtime::fixtures::{index, namespace, pod, probe_request, report};
use std::collections::BTreeMap;

/// shop/web runs on node-1, shop/api on node-2; shop/done has finished, shop/host uses the
/// host network (both on node-1).
fn cluster() -> Index {
    let mut index = pods();
    let service: k8s_openapi::api::core::v1::Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "api", "namespace": "shop"},
        "spec": {"clusterIP": "10.96.0.10", "selector": {"app": "api"},
                 "ports": [{"name": "web", "port": 80, "targetPort": 8080}]}
    }))
    .expect("a Service");
    crate::cluster::index::Apply::apply(
        &mut index,
        crate::cluster::service::Service::try_from(&service).expect("converts"),
    );
    index
}

fn pods() -> Index {
    let mut finished = pod("shop", "done", &[], "10.0.1.9", "node-1");
    finished.phase = PodPhase::Succeeded;
    let mut host = pod("shop", "host", &[], "192.168.0.1", "node-1");
    host.host_network = true;
    index(
        vec![namespace("shop", &[]), namespace("payments", &[])],
        vec![
            pod("payments", "gateway", &[], "10.0.2.30", "node-2"),
            pod("shop", "web", &[("app", "web")], "10.0.1.1", "node-1"),
            pod("shop", "api", &[("app", "api")], "10.0.2.1", "node-2"),
            finished,
            host,
        ],
    )
}

fn request(name: &str, spec: &str) -> (ObjectRef, Arc<ProbeRequest>) {
    (
        ObjectRef::new("shop", name),
        Arc::new(probe_request("shop", name, spec)),
    )
}

fn with_phase(
    (key, request): (ObjectRef, Arc<ProbeRequest>),
    phase: ProbeRequestPhase,
) -> (ObjectRef, Arc<ProbeRequest>) {
    let mut request = (*request).clone();
    request.status = Some(ProbeRequestStatus {
        phase,
        ..ProbeRequestStatus::default()
    });
    (key, Arc::new(request))
}

const TO_API: &str = "  from: {pod: web}\n  to: {pod: {name: api}, port: 8080}\n";

#[test]
fn only_pending_requests_from_this_nodes_pods_run_here() {
    let index = cluster();
    let requests = vec![
        request("new", TO_API),
        with_phase(request("running", TO_API), ProbeRequestPhase::Running),
        with_phase(request("succeeded", TO_API), ProbeRequestPhase::Succeeded),
        with_phase(request("failed", TO_API), ProbeRequestPhase::Failed),
        request(
            "elsewhere",
            "  from: {pod: api}\n  to: {dns: example.com}\n",
        ),
        request(
            "unknown-source",
            "  from: {pod: ghost}\n  to: {dns: example.com}\n",
        ),
        request("handled", TO_API),
    ];
    let handled = HashSet::from(["uid-handled".to_string()]);
    let names: Vec<String> = runnable_here(&requests, &index, "node-1", &handled)
        .into_iter()
        .map(|r| r.key.name.to_string())
        .collect();
    // `running`: left Running by an agent that restarted; nobody else would finish it.
    assert_eq!(names, ["new", "running"]);
}

#[test]
fn requests_resolve_against_the_index() {
    let index = cluster();
    let api = "10.0.2.1".parse().expect("ip");
    let cases: Vec<(&str, &str, Result<PairTarget, &str>)> = vec![
        (
            "pod by port number",
            TO_API,
            Ok(PairTarget::Pod {
                pod: ObjectRef::new("shop", "api"),
                ip: api,
                port: 8080,
                protocol: Protocol::Tcp,
            }),
        ),
        (
            "pod by port name",
            "  from: {pod: web}\n  to: {pod: {name: api, namespace: shop}, port: http}\n",
            Ok(PairTarget::Pod {
                pod: ObjectRef::new("shop", "api"),
                ip: api,
                port: 8080,
                protocol: Protocol::Tcp,
            }),
        ),
        (
            "ip",
            "  from: {pod: web}\n  to: {ip: 192.0.2.10, port: 53, protocol: UDP}\n",
            Ok(PairTarget::Ip {
                ip: "192.0.2.10".parse().expect("ip"),
                port: 53,
                protocol: Protocol::Udp,
            }),
        ),
        (
            "dns",
            "  from: {pod: web}\n  to: {dns: api.shop.svc.cluster.local}\n",
            Ok(PairTarget::Dns {
                name: "api.shop.svc.cluster.local".into(),
            }),
        ),
        (
            "service by port name",
            "  from: {pod: web}\n  to: {service: {name: api}, port: web}\n",
            Ok(PairTarget::Service {
                service: ObjectRef::new("shop", "api"),
                port: 80,
                protocol: Protocol::Tcp,
            }),
        ),
        (
            "unknown service",
            "  from: {pod: web}\n  to: {service: {name: ghost}, port: 80}\n",
            Err("Service shop/ghost is not in the loaded objects"),
        ),
        (
            "unknown destination",
            "  from: {pod: web}\n  to: {pod: {name: ghost}, port: 80}\n",
            Err("destination pod shop/ghost not found"),
        ),
        (
            "undeclared named port",
            "  from: {pod: web}\n  to: {pod: {name: api}, port: grpc}\n",
            Err("destination pod shop/api declares no TCP port named \"grpc\""),
        ),
        (
            "finished destination",
            "  from: {pod: web}\n  to: {pod: {name: done}, port: 80}\n",
            Err("destination pod shop/done has no IP or has finished (Succeeded)"),
        ),
        (
            "hostNetwork source",
            "  from: {pod: host}\n  to: {dns: example.com}\n",
            Err(
                "source pod shop/host uses the node's network (hostNetwork), which NetworkPolicy does not govern",
            ),
        ),
        (
            "finished source",
            "  from: {pod: done}\n  to: {dns: example.com}\n",
            Err("source pod shop/done is not Running"),
        ),
        (
            "invalid spec",
            "  from: {pod: web}\n  to: {pod: {name: api}, port: 8080}\n  timeout: 2h\n",
            Err("invalid spec"),
        ),
        (
            "ip of a pod in this namespace",
            "  from: {pod: web}\n  to: {ip: 10.0.2.1, port: 8080}\n",
            Ok(PairTarget::Ip {
                ip: api,
                port: 8080,
                protocol: Protocol::Tcp,
            }),
        ),
        // Who created the request is unknown to the agent: another namespace's pod must be
        // named as to.pod, where admission checks `get pods` there.
        (
            "ip of a pod in another namespace",
            "  from: {pod: web}\n  to: {ip: 10.0.2.30, port: 8443}\n",
            Err(
                "spec.to.ip 10.0.2.30 is the IP of pod payments/gateway in another namespace: probe it as spec.to.pod",
            ),
        ),
    ];
    for (name, spec, expected) in cases {
        let (key, request) = request("r", spec);
        let got = prepare(&index, &key, &request);
        match (got, expected) {
            (Ok(prepared), Ok(target)) => {
                assert_eq!(prepared.target, target, "{name}");
                assert_eq!(prepared.from, ObjectRef::new("shop", "web"), "{name}");
                assert_eq!(prepared.count, 1, "{name}");
                assert_eq!(prepared.timeout, Duration::from_secs(2), "{name}");
            }
            (Err(message), Err(expected)) => {
                assert!(message.starts_with(expected), "{name}: {message}");
            }
            (got, expected) => panic!("{name}: got {got:?}, expected {expected:?}"),
        }
    }
}

fn times() -> (Time, Time) {
    (Time(Timestamp::UNIX_EPOCH), Time(Timestamp::UNIX_EPOCH))
}

fn target() -> PairTarget {
    PairTarget::Pod {
        pod: ObjectRef::new("shop", "api"),
        ip: "10.0.2.1".parse().expect("ip"),
        port: 8080,
        protocol: Protocol::Tcp,
    }
}

fn probed(outcome: Outcome, verdict: PairVerdict, latency: f64) -> PairReport {
    let mut report = report("shop/paths", "shop/web", "shop/api", verdict, true);
    report.spec = None;
    report.expect = None;
    report.meets_expectation = None;
    report.outcome = outcome;
    report.latency_seconds = latency;
    report.summary = format!("{outcome}").into();
    report
}

#[test]
fn one_probe_succeeds_with_its_diagnosis() {
    let (started, completed) = times();
    let reports = [probed(Outcome::Timeout, PairVerdict::BlockedByPolicy, 2.0)];
    let status = summarize("node-1", &target(), &reports, &started, &completed);
    assert_eq!(status.phase, ProbeRequestPhase::Succeeded);
    assert_eq!(status.node.as_deref(), Some("node-1"));
    assert_eq!(status.target.as_deref(), Some("shop/api:8080/TCP"));
    assert_eq!(status.outcome.as_deref(), Some("timeout"));
    assert!(status.outcomes.is_empty(), "counts only for count > 1");
    assert_eq!(status.verdict, Some(PairVerdict::BlockedByPolicy));
    assert_eq!(status.reason.as_deref(), Some("default_deny"));
    assert_eq!(status.policies, ["shop/deny"]);
    assert_eq!(status.latency_seconds, Some(2.0));
    assert_eq!(status.message, None);
}

#[test]
fn several_probes_report_the_most_frequent_outcome_and_the_median_latency() {
    let (started, completed) = times();
    let reports = [
        probed(Outcome::Timeout, PairVerdict::UnexpectedBlock, 1.0),
        probed(Outcome::Open, PairVerdict::Ok, 0.004),
        probed(Outcome::Open, PairVerdict::Ok, 0.002),
        probed(Outcome::Timeout, PairVerdict::UnexpectedBlock, 1.0),
        probed(Outcome::Open, PairVerdict::Ok, 0.003),
    ];
    let status = summarize("node-1", &target(), &reports, &started, &completed);
    assert_eq!(status.outcome.as_deref(), Some("open"));
    assert_eq!(status.verdict, Some(PairVerdict::Ok));
    assert_eq!(
        status.outcomes,
        BTreeMap::from([("open".to_string(), 3), ("timeout".to_string(), 2)])
    );
    assert_eq!(status.latency_seconds, Some(0.004));

    // A tie goes to the outcome seen first; an even count averages the middle latencies.
    let reports = [
        probed(Outcome::Refused, PairVerdict::Ok, 0.001),
        probed(Outcome::Open, PairVerdict::Ok, 0.003),
    ];
    let status = summarize("node-1", &target(), &reports, &started, &completed);
    assert_eq!(status.outcome.as_deref(), Some("refused"));
    assert_eq!(status.latency_seconds, Some(0.002));
}

#[test]
fn a_probe_that_could_not_run_fails_the_request() {
    let (started, completed) = times();
    let mut report = probed(Outcome::NotProbed, PairVerdict::NotProbed, 0.0);
    report.probe_detail = "cannot enter the source pod's network namespace: no process".into();
    let status = summarize("node-1", &target(), &[report], &started, &completed);
    assert_eq!(status.phase, ProbeRequestPhase::Failed);
    assert_eq!(
        status.message.as_deref(),
        Some(
            "the probe could not run: cannot enter the source pod's network namespace: no process"
        )
    );
    assert_eq!(status.verdict, None);

    let status = summarize("node-1", &target(), &[], &started, &completed);
    assert_eq!(status.phase, ProbeRequestPhase::Failed);
}

#[test]
fn status_targets_name_what_was_probed() {
    assert_eq!(target_label(&target()), "shop/api:8080/TCP");
    let dns = PairTarget::Dns {
        name: "api.shop.svc.cluster.local".into(),
    };
    assert_eq!(target_label(&dns), "api.shop.svc.cluster.local");
    let (started, _) = times();
    let running = running_status("node-1", &dns, &started);
    assert_eq!(running.phase, ProbeRequestPhase::Running);
    assert_eq!(
        running.target.as_deref(),
        Some("api.shop.svc.cluster.local")
    );
}

fn finished(
    request: (ObjectRef, Arc<ProbeRequest>),
    node: &str,
    completed: &str,
) -> (ObjectRef, Arc<ProbeRequest>) {
    let (key, request) = with_phase(request, ProbeRequestPhase::Succeeded);
    let mut request = (*request).clone();
    if let Some(status) = request.status.as_mut() {
        status.node = Some(node.into());
        status.completed_at = Some(Time(completed.parse().expect("time")));
    }
    (key, Arc::new(request))
}

/// An agent keeps what it may run or has run; other nodes' requests never fill its memory.
#[test]
fn each_agent_keeps_only_its_own_nodes_requests() {
    let index = cluster();
    let from_api = "  from: {pod: api}\n  to: {dns: example.com}\n";
    let from_unknown = "  from: {pod: not-yet-seen}\n  to: {dns: example.com}\n";
    let done = "2026-01-01T00:00:00Z";
    let cases = [
        (request("mine", TO_API), true),
        (request("theirs", from_api), false),
        (request("pod-not-seen-yet", from_unknown), true),
        (
            finished(request("finished-here", from_api), "node-1", done),
            true,
        ),
        (
            finished(request("finished-there", TO_API), "node-2", done),
            false,
        ),
    ];
    for ((key, request), kept) in cases {
        assert_eq!(kept_here(&key, &request, &index, "node-1"), kept, "{key}");
    }
}

#[test]
fn finished_requests_expire_after_their_ttl_on_the_node_that_ran_them() {
    let at = |time: &str| -> Timestamp { time.parse().expect("time") };
    let default_ttl = finished(request("r", TO_API), "node-1", "2026-01-01T00:00:00Z");
    let short_ttl = finished(
        request("r", &format!("{TO_API}  ttlSecondsAfterFinished: 0\n")),
        "node-1",
        "2026-01-01T00:00:00Z",
    );
    let cases = [
        (&default_ttl, "node-1", "2026-01-01T00:59:59Z", false),
        (&default_ttl, "node-1", "2026-01-01T01:00:00Z", true),
        (&default_ttl, "node-2", "2026-01-02T00:00:00Z", false),
        (&short_ttl, "node-1", "2026-01-01T00:00:00Z", true),
    ];
    for ((_, request), node, now, expected) in cases {
        assert_eq!(
            expired(request, node, &at(now)),
            expected,
            "{node} at {now}"
        );
    }
    // Still running: never.
    let (_, running) = with_phase(request("r", TO_API), ProbeRequestPhase::Running);
    assert!(!expired(&running, "node-1", &at("2030-01-01T00:00:00Z")));
}

/// The final status of a request that finished during an API outage is written once the API is
/// back (retried with the write backoff), and a refusal (403) is not retried.
#[tokio::test(start_paused = true)]
async fn a_final_status_is_written_after_an_outage_and_a_refusal_is_not_retried() {
    use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};

    let answer = Arc::new(AtomicU16::new(503));
    let (attempts, written) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let router = {
        let (answer, attempts, written) = (answer.clone(), attempts.clone(), written.clone());
        axum::Router::new().route(
            "/apis/netreach.dev/v1alpha1/namespaces/shop/proberequests/check/status",
            axum::routing::patch(move || {
                let (answer, attempts, written) = (answer.clone(), attempts.clone(), written.clone());
                async move {
                    attempts.fetch_add(1, Ordering::Relaxed);
                    let code = answer.load(Ordering::Relaxed);
                    if code != 200 {
                        let body = format!(
                            r#"{{"kind":"Status","apiVersion":"v1","status":"Failure","code":{code}}}"#
                        );
                        return (http::StatusCode::from_u16(code).expect("code"), body);
                    }
                    written.fetch_add(1, Ordering::Relaxed);
                    (http::StatusCode::OK, r#"{"apiVersion":"netreach.dev/v1alpha1","kind":"ProbeRequest","metadata":{"name":"check","namespace":"shop"}}"#.to_string())
                }
            }),
        )
    };
    let writer = RequestStatusWriter::new(kube::Client::new(router, "default"));
    let key = ObjectRef::new("shop", "check");
    let status = ProbeRequestStatus::default();
    let write = tokio::spawn({
        let (writer, key, status) = (writer.clone(), key.clone(), status.clone());
        async move { write_status(&writer, &key, &status, FINAL_STATUS_DEADLINE).await }
    });
    tokio::time::sleep(Duration::from_secs(60)).await;
    answer.store(200, Ordering::Relaxed);
    write.await.expect("the write ends once it lands");
    assert_eq!(written.load(Ordering::Relaxed), 1);
    let during = attempts.load(Ordering::Relaxed);
    assert!(
        (4..=10).contains(&during),
        "{during} attempts for a minute's outage"
    );

    answer.store(403, Ordering::Relaxed);
    let before = attempts.load(Ordering::Relaxed);
    write_status(&writer, &key, &status, FINAL_STATUS_DEADLINE).await;
    assert_eq!(
        attempts.load(Ordering::Relaxed),
        before + 1,
        "403 is not retried"
    );
}
