//! The scheduler's step driven by hand: a fake prober whose data plane enforces exactly the
//! policies in the snapshot (so a policy change shows at the next probe), clocks set by the test.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use probe_spec::{PairVerdict, ProbeSpec};
use prometheus::Registry;
use tokio::sync::{mpsc, watch};

use super::*;
use crate::cluster::changes::ChangeKind;
use crate::cluster::index::Apply;
use crate::cluster::model::{ObjectRef, Protocol};
use crate::cluster::watch::{CniAgentMatcher, Readiness, WatchedKind};
use crate::pair::{PairReason, PairTarget, PublishedPairs};
use crate::probe::NotProbedReason;
use crate::report::events::EventReason;
use crate::report::metrics::Exposition;
use crate::runtime::fixtures::{
    cluster_probe_spec, index, namespace, pod, policy, probe_spec, report, report_to,
};
use crate::runtime::prober::{Now, ProbeJob, ViewSnapshot};
use futures::future::BoxFuture;

const SPEC: &str = "shop/paths";

fn spec() -> ProbeSpec {
    probe_spec(
        "shop",
        "paths",
        "  from: {podSelector: {matchLabels: {app: web}}}\n  to:\n    - podSelector: {matchLabels: {tier: backend}}\n      ports: [{port: 8080}]\n  interval: 10s\n  timeout: 1s\n",
    )
}

/// shop/web on node-1 probes shop/api and shop/db (both on node-2).
fn view() -> ClusterView {
    let view = ClusterView::with_readiness(CniAgentMatcher::builtin(), Readiness::ready());
    *view.index.write() = index(
        vec![namespace("shop", &[])],
        vec![
            pod("shop", "web", &[("app", "web")], "10.0.1.1", "node-1"),
            pod(
                "shop",
                "api",
                &[("app", "api"), ("tier", "backend")],
                "10.0.2.1",
                "node-2",
            ),
            pod(
                "shop",
                "db",
                &[("app", "db"), ("tier", "backend")],
                "10.0.2.2",
                "node-2",
            ),
        ],
    );
    view.specs
        .write()
        .insert(ObjectRef::new("shop", "paths"), spec());
    view
}

/// Reachable unless a policy in the snapshot isolates the destination's ingress.
fn enforcing_prober() -> Arc<dyn PairProber> {
    Arc::new(
        |view: Arc<ViewSnapshot>, job: ProbeJob| -> BoxFuture<'static, PairReports> {
            Box::pin(async move {
                let to = job.pair.target.pod().expect("pod target").clone();
                let labels = view.index.pod(&to).expect("destination").labels.clone();
                let denied = view.index.policies().any(|p| {
                    *p.namespace == *to.namespace
                        && p.isolates_ingress
                        && p.pod_selector.matches(&labels)
                });
                let verdict = if denied {
                    PairVerdict::BlockedByPolicy
                } else {
                    PairVerdict::Ok
                };
                PairReports::one(report(
                    &job.pair.spec.to_string(),
                    &job.pair.from.to_string(),
                    &to.to_string(),
                    verdict,
                    !denied,
                ))
            })
        },
    )
}

/// Both clocks, `secs` after the test's origin.
struct Clock {
    instant: Instant,
    wall: SystemTime,
}

impl Clock {
    fn new() -> Self {
        Self {
            instant: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    fn at(&self, secs: f64) -> Now {
        let offset = Duration::from_secs_f64(secs);
        Now {
            instant: self.instant + offset,
            wall: self.wall + offset,
        }
    }
}

struct Harness {
    scheduler: ProbeLoop,
    view: ClusterView,
    exposition: Exposition,
    metrics: Arc<Metrics>,
    pairs: watch::Receiver<PublishedPairs>,
    specs: watch::Receiver<Arc<SpecSummaries>>,
    events: mpsc::Receiver<EventNotice>,
    progress: watch::Receiver<Progress>,
    clock: Clock,
}

fn harness(concurrency: usize) -> Harness {
    harness_with(view(), enforcing_prober(), concurrency)
}

fn harness_with(view: ClusterView, prober: Arc<dyn PairProber>, concurrency: usize) -> Harness {
    let registry = Arc::new(Registry::new());
    let metrics = Arc::new(Metrics::register(&registry).expect("metrics register"));
    let exposition = Exposition::new(registry, &metrics);
    // Every pair's series, so the tests can follow each pair in /metrics.
    metrics
        .pairs
        .set_series(crate::report::metrics::PairSeries::All);
    let (pairs_tx, pairs) = watch::channel(Arc::new(Vec::new()));
    let (specs_tx, specs) = watch::channel(Arc::new(SpecSummaries::new()));
    let (events_tx, events) = mpsc::channel(16);
    let (progress_tx, progress) = watch::channel(Progress::default());
    let clock = Clock::new();
    let scheduler = ProbeLoop::new(
        ProbeLoopConfig::new("node-1", concurrency, Duration::from_secs(1)),
        view.clone(),
        prober,
        ProbeLoopOutputs {
            metrics: metrics.clone(),
            pairs: pairs_tx,
            specs: specs_tx,
            events: Some(events_tx),
            progress: Some(progress_tx),
        },
        clock.instant,
    );
    Harness {
        scheduler,
        view,
        exposition,
        metrics,
        pairs,
        specs,
        events,
        progress,
        clock,
    }
}

impl Harness {
    /// Waits for every probe in flight and takes each result in at `now`.
    async fn finish_all(&mut self, now: Now) -> Vec<(PairId, Option<Finished>)> {
        let mut finished = Vec::new();
        while let Some((id, report)) = self.scheduler.in_flight.next().await {
            finished.push((id, self.scheduler.finish(now, id, report)));
        }
        finished.sort_by_key(|(id, _)| *id);
        finished
    }

    fn pair_to(&self, destination: &str) -> PairId {
        let to = destination.parse::<ObjectRef>().expect("ns/name");
        self.scheduler
            .timetable
            .pairs()
            .find(|p| p.target.pod() == Some(&to))
            .map(|p| p.id)
            .expect("pair planned")
    }

    fn metrics_text(&self) -> String {
        String::from_utf8(self.exposition.encode().expect("encode")).expect("utf-8")
    }
}

#[tokio::test]
async fn a_step_plans_probes_reports_and_reprobes_on_a_policy_change() {
    let mut h = harness(64);

    // Start: both pairs planned, first slots spread over the first interval.
    let step = h.scheduler.step(h.clock.at(0.0));
    assert_eq!(step.added.len(), 2);
    assert!(step.started.is_empty(), "nothing is due at the origin");
    let summary = h
        .specs
        .borrow()
        .get(&SpecRef::Namespaced(ObjectRef::new("shop", "paths")))
        .cloned();
    let summary = summary.expect("spec summary published");
    assert_eq!(summary.planned, 2);
    let planned = Progress {
        plans: 1,
        pairs: 2,
        probed: 0,
        rounds: 0,
    };
    assert_eq!(*h.progress.borrow(), planned, "planned, nothing probed");
    assert_eq!(summary.generation, Some(3));
    assert_eq!(summary.problem, None);

    // One interval (+ jitter) later both are due; different paths, so both start.
    let step = h.scheduler.step(h.clock.at(13.0));
    assert_eq!(step.started.len(), 2);
    assert!(step.added.is_empty() && step.reprobe.is_empty());
    let finished = h.finish_all(h.clock.at(13.1)).await;
    for (_, finished) in &finished {
        let finished = finished.as_ref().expect("pair still planned");
        assert_eq!(finished.transitions.len(), 1);
        assert!(finished.transitions[0].effect_observed, "first observation");
        assert_eq!(finished.transitions[0].event, None);
        assert_eq!(finished.change_to_effect, None, "no change pending");
    }
    h.scheduler.publish(h.clock.at(13.1).instant, false);
    let published = h.pairs.borrow().clone();
    assert_eq!(published.len(), 2);
    assert!(published.iter().all(|r| r.verdict == PairVerdict::Ok));
    let progress = *h.progress.borrow();
    assert_eq!((progress.probed, progress.rounds), (2, 1), "one full round");
    assert_eq!(h.metrics.pairs.len(), 2);

    // A deny policy on shop/api, seen at 13.5 s: that pair (only) is re-probed at once...
    let deny = policy("shop", "deny-api", &[("app", "api")], true, false);
    h.view.index.write().apply(deny.clone());
    h.view.changes.write().push(
        h.clock.at(13.5).wall,
        ChangeKind::PolicyCreated {
            policy: ObjectRef::new("shop", "deny-api"),
            new: Some(Arc::new(deny)),
        },
    );
    let api = h.pair_to("shop/api");
    let step = h.scheduler.step(h.clock.at(14.2));
    assert_eq!(step.reprobe, [api]);
    assert_eq!(
        step.started,
        [api],
        "due at once, the path spacing has passed"
    );

    // ... and the blocked observation is its effect, 0.8 s after the change.
    let finished = h.finish_all(h.clock.at(14.3)).await;
    let (id, finished) = &finished[0];
    assert_eq!(*id, api);
    let finished = finished.as_ref().expect("pair still planned");
    assert!(finished.transitions[0].effect_observed);
    assert_eq!(
        finished.transitions[0].event,
        Some(EventReason::NetworkPolicyDenied)
    );
    let elapsed = finished.change_to_effect.expect("effect measured");
    assert!(
        (elapsed.as_secs_f64() - 0.8).abs() < 1e-3,
        "change to effect {elapsed:?}"
    );
    let text = h.metrics_text();
    assert!(
        text.contains("netreach_policy_change_to_effect_seconds_count 1"),
        "{text}"
    );
    assert!(text.contains("verdict=\"blocked_by_policy\""), "{text}");

    let event = h.events.try_recv().expect("an Event was queued");
    assert_eq!(event.reason, EventReason::NetworkPolicyDenied);
    assert_eq!(event.target.pod, ObjectRef::new("shop", "web"));
    assert_eq!(event.target.uid.as_deref(), Some("uid-shop-web"));

    h.scheduler.publish(h.clock.at(14.3).instant, false);
    let blocked: Vec<String> = h
        .pairs
        .borrow()
        .iter()
        .filter(|r| r.verdict == PairVerdict::BlockedByPolicy)
        .filter_map(|r| Some(r.to()?.to_string()))
        .collect();
    assert_eq!(blocked, ["shop/api"]);

    // A repeat of the same verdict raises no second Event.
    let step = h.scheduler.step(h.clock.at(40.0));
    assert!(!step.started.is_empty());
    h.finish_all(h.clock.at(40.1)).await;
    assert!(
        h.events.try_recv().is_err(),
        "no Event without a transition"
    );

    // The pair's history: ok, then blocked from the re-probe on; three probes counted.
    h.scheduler.publish(h.clock.at(40.1).instant, true);
    let published = h.pairs.borrow().clone();
    let api_report = published
        .iter()
        .find(|r| r.to().is_some_and(|to| to.to_string() == "shop/api"))
        .expect("the api pair");
    let history = api_report.history.as_ref().expect("a history").lock();
    let periods: Vec<(PairVerdict, bool)> = history
        .periods
        .iter()
        .map(|p| (p.verdict, p.end.is_some()))
        .collect();
    assert_eq!(
        periods,
        [
            (PairVerdict::Ok, true),
            (PairVerdict::BlockedByPolicy, false)
        ]
    );
    assert_eq!(history.probes.total(), 3);
    assert_eq!(history.periods[1].policies, api_report.policies);
    assert!(!api_report.policies.is_empty());
    drop(history);

    // The spec goes away: its pairs, series and published reports go too.
    h.view
        .specs
        .write()
        .remove(&ObjectRef::new("shop", "paths"));
    let step = h.scheduler.step(h.clock.at(42.0));
    assert_eq!(step.removed.len(), 2);
    assert!(step.started.is_empty());
    h.scheduler.publish(h.clock.at(42.0).instant, false);
    assert!(h.pairs.borrow().is_empty());
    assert!(h.specs.borrow().is_empty());
    assert_eq!(h.metrics.pairs.len(), 0);
    assert!(
        !h.metrics_text().contains(SPEC),
        "every series of the spec is gone"
    );
}

#[tokio::test]
async fn the_concurrency_limit_bounds_probes_in_flight() {
    let mut h = harness(1);
    h.scheduler.step(h.clock.at(0.0));
    let step = h.scheduler.step(h.clock.at(13.0));
    assert_eq!(step.started.len(), 1, "one slot");
    let step = h.scheduler.step(h.clock.at(13.0));
    assert!(step.started.is_empty(), "the slot is taken");
    h.finish_all(h.clock.at(13.1)).await;
    let step = h.scheduler.step(h.clock.at(13.2));
    assert_eq!(step.started.len(), 1, "the other pair takes the freed slot");
}

#[tokio::test]
async fn a_pair_removed_while_probed_is_discarded() {
    let mut h = harness(64);
    h.scheduler.step(h.clock.at(0.0));
    assert_eq!(h.scheduler.step(h.clock.at(13.0)).started.len(), 2);
    // shop/db stops being a backend while its probe runs.
    let mut db = pod("shop", "db", &[("app", "db")], "10.0.2.2", "node-2");
    db.restarts = 0;
    h.view.index.write().apply(db);
    let step = h.scheduler.step(h.clock.at(14.5));
    assert_eq!(step.removed.len(), 1);
    let finished = h.finish_all(h.clock.at(14.6)).await;
    let discarded = finished.iter().filter(|(_, f)| f.is_none()).count();
    assert_eq!(discarded, 1);
    h.scheduler.publish(h.clock.at(14.6).instant, true);
    let to: Vec<String> = h
        .pairs
        .borrow()
        .iter()
        .filter_map(|r| Some(r.to()?.to_string()))
        .collect();
    assert_eq!(to, ["shop/api"]);
}

#[tokio::test]
async fn cluster_probe_specs_are_planned_beside_probe_specs_and_narrowing_is_summarised() {
    let mut h = harness(64);
    h.view.index.write().apply(namespace("batch", &[]));
    h.view
        .index
        .write()
        .apply(pod("batch", "job", &[("app", "web")], "10.0.1.9", "node-1"));
    // The same selectors: the ProbeSpec in shop reaches batch too, and is narrowed.
    let body = "  from: {podSelector: {matchLabels: {app: web}}, namespaceSelector: {}}\n  to:\n    - podSelector: {matchLabels: {tier: backend}}\n      namespaceSelector: {}\n      ports: [{port: 8080}]\n  interval: 10s\n  timeout: 1s\n";
    h.view.specs.write().insert(
        ObjectRef::new("shop", "paths"),
        probe_spec("shop", "paths", body),
    );
    h.view
        .cluster_specs
        .write()
        .insert("paths".into(), cluster_probe_spec("paths", body));

    let step = h.scheduler.step(h.clock.at(0.0));
    // ProbeSpec: shop/web only (2 pairs); ClusterProbeSpec: shop/web and batch/job (4 pairs).
    assert_eq!(step.added.len(), 6);
    let summaries = h.specs.borrow().clone();
    let namespaced = &summaries[&SpecRef::Namespaced(ObjectRef::new("shop", "paths"))];
    assert_eq!(namespaced.planned, 2);
    let narrowed = namespaced.sources_narrowed.as_deref().expect("narrowed");
    assert!(narrowed.contains("other than shop (batch)"), "{narrowed}");
    let cluster = &summaries[&SpecRef::Cluster("paths".into())];
    assert_eq!(cluster.planned, 4);
    assert_eq!(cluster.sources_narrowed, None);

    h.view.cluster_specs.write().remove(&"paths".to_string());
    let step = h.scheduler.step(h.clock.at(2.0));
    assert_eq!(
        step.removed.len(),
        4,
        "the ClusterProbeSpec's pairs go with it"
    );
    assert!(
        !h.specs
            .borrow()
            .contains_key(&SpecRef::Cluster("paths".into()))
    );
}

#[tokio::test]
async fn an_invalid_spec_is_summarised_with_its_problem() {
    let mut h = harness(64);
    h.scheduler.step(h.clock.at(0.0));
    let mut broken = spec();
    broken.spec.interval = "often".into();
    h.view
        .specs
        .write()
        .insert(ObjectRef::new("shop", "paths"), broken);
    let step = h.scheduler.step(h.clock.at(2.0));
    assert_eq!(step.removed.len(), 2, "its pairs are no longer probed");
    let summary = h
        .specs
        .borrow()
        .get(&SpecRef::Namespaced(ObjectRef::new("shop", "paths")))
        .cloned()
        .expect("still summarised");
    assert_eq!(summary.planned, 0);
    let problem = summary.problem.expect("a problem");
    assert!(problem.contains("spec.interval"), "{problem}");
}

// === Host targets ===

const HOST: &str = "api.example";

/// What the fake DNS answers for [`HOST`]: the addresses, each with the verdict its probe
/// gets; none: the name does not resolve.
type Answers = Arc<parking_lot::Mutex<Vec<(&'static str, PairVerdict)>>>;

/// One report per answered address (`to` the pod for shop/api's 10.0.2.1), or one
/// `resolve_failed` report when there is no answer.
fn host_prober(answers: Answers) -> Arc<dyn PairProber> {
    Arc::new(
        move |_view: Arc<ViewSnapshot>, job: ProbeJob| -> BoxFuture<'static, PairReports> {
            let answers = answers.lock().clone();
            Box::pin(async move {
                let spec = job.pair.spec.to_string();
                let from = job.pair.from.to_string();
                let reports: Vec<PairReport> = answers
                    .iter()
                    .map(|&(address, verdict)| {
                        let ip = address.parse().expect("an address");
                        let target = if address == "10.0.2.1" {
                            PairTarget::Pod {
                                pod: ObjectRef::new("shop", "api"),
                                ip,
                                port: 8080,
                                protocol: Protocol::Tcp,
                            }
                        } else {
                            PairTarget::Ip {
                                ip,
                                port: 8080,
                                protocol: Protocol::Tcp,
                            }
                        };
                        let mut report =
                            report_to(&spec, &from, target, verdict, verdict.reachable());
                        report.host = Some(HOST.into());
                        report
                    })
                    .collect();
                PairReports::from_vec(reports).unwrap_or_else(|| {
                    let target = job.pair.target.clone();
                    let mut report = report_to(&spec, &from, target, PairVerdict::NotProbed, false);
                    report.host = Some(HOST.into());
                    report.reason = Some(PairReason::NotProbed(NotProbedReason::ResolveFailed));
                    report.outcome = crate::probe::Outcome::NotProbed;
                    report.meets_expectation = None;
                    PairReports::one(report)
                })
            })
        },
    )
}

impl Harness {
    /// Steps a second at a time from `from` until the pair is due, probes it and takes the
    /// result in; returns when that was and what finishing made of it.
    async fn probe_once_due(&mut self, from: f64) -> (f64, Finished) {
        let mut at = from;
        while self.scheduler.step(self.clock.at(at)).started.is_empty() {
            at += 1.0;
            assert!(at < from + 30.0, "the pair came due within 30 s");
        }
        let finished = self.finish_all(self.clock.at(at)).await;
        self.scheduler.publish(self.clock.at(at).instant, true);
        let (_, finished) = finished.into_iter().next().expect("one pair finished");
        (at, finished.expect("pair still planned"))
    }

    /// The published reports as (to, verdict), sorted.
    fn published(&self) -> Vec<(String, PairVerdict)> {
        let mut pairs: Vec<(String, PairVerdict)> = self
            .pairs
            .borrow()
            .iter()
            .map(|r| (r.destination().to_string(), r.verdict))
            .collect();
        pairs.sort();
        pairs
    }
}

#[tokio::test]
async fn a_host_pair_reports_each_address_and_forgets_the_vanished_ones() {
    let view = view();
    view.specs.write().insert(
        ObjectRef::new("shop", "hosts"),
        probe_spec(
            "shop",
            "hosts",
            "  from: {podSelector: {matchLabels: {app: web}}}\n  to:\n    - host: api.example\n      ports: [{port: 8080}]\n  interval: 10s\n  timeout: 1s\n",
        ),
    );
    view.specs.write().remove(&ObjectRef::new("shop", "paths"));
    let answers: Answers = Arc::new(parking_lot::Mutex::new(vec![
        ("10.0.2.1", PairVerdict::Ok),
        ("192.0.2.10", PairVerdict::Ok),
    ]));
    let mut h = harness_with(view, host_prober(answers.clone()), 64);
    assert_eq!(
        h.scheduler.step(h.clock.at(0.0)).added.len(),
        1,
        "one host pair"
    );

    // Two addresses: two reports, two series told apart from pod pairs by `host`.
    let (at, finished) = h.probe_once_due(1.0).await;
    assert_eq!(finished.transitions.len(), 2);
    assert_eq!(
        h.published(),
        [
            ("192.0.2.10".to_string(), PairVerdict::Ok),
            ("shop/api".to_string(), PairVerdict::Ok),
        ]
    );
    assert_eq!(h.metrics.pairs.len(), 2);
    let text = h.metrics_text();
    assert!(
        text.contains(r#"dst="shop/api",host="api.example",port="8080""#),
        "{text}"
    );

    // The name drops shop/api and 192.0.2.10 gets blocked: its report and series stay (with
    // an Event for the transition), shop/api's go.
    *answers.lock() = vec![("192.0.2.10", PairVerdict::BlockedByPolicy)];
    let (at, finished) = h.probe_once_due(at + 1.0).await;
    assert_eq!(
        finished.transitions[0].event,
        Some(EventReason::NetworkPolicyDenied)
    );
    assert_eq!(
        h.published(),
        [("192.0.2.10".to_string(), PairVerdict::BlockedByPolicy)]
    );
    assert_eq!(h.metrics.pairs.len(), 1);
    let text = h.metrics_text();
    assert!(
        !text.contains(r#"dst="shop/api""#),
        "no stale series: {text}"
    );
    assert!(h.events.try_recv().is_ok(), "the block raised an Event");

    // The name stops resolving: one not_probed pair named by the host, nothing else.
    answers.lock().clear();
    let (at, finished) = h.probe_once_due(at + 1.0).await;
    assert_eq!(finished.transitions[0].event, None);
    assert_eq!(h.published(), [(HOST.to_string(), PairVerdict::NotProbed)]);
    assert_eq!(h.metrics.pairs.len(), 1);
    assert!(
        h.metrics_text()
            .contains(r#"dst="api.example",host="api.example""#),
        "{}",
        h.metrics_text()
    );

    // It resolves again, still blocked: the failed lookup in between raises no second Event.
    *answers.lock() = vec![("192.0.2.10", PairVerdict::BlockedByPolicy)];
    let (_, finished) = h.probe_once_due(at + 1.0).await;
    assert_eq!(finished.transitions[0].event, None);
    assert!(h.events.try_recv().is_err(), "no second Event");
    assert_eq!(
        h.published(),
        [("192.0.2.10".to_string(), PairVerdict::BlockedByPolicy)]
    );
    assert_eq!(h.metrics.pairs.len(), 1, "the not_probed series went");
}

/// While the view is stale (a watch failing for longer than `view_stale_after`), a probe
/// whose prediction would newly raise blocked_by_policy keeps the pair's last verdict, flagged,
/// and raises no Event; once the watch is served again the verdict comes through.
#[tokio::test]
async fn a_stale_view_holds_new_policy_verdicts() {
    let mut h = harness(64);
    h.scheduler.step(h.clock.at(0.0));
    h.scheduler.step(h.clock.at(13.0));
    h.finish_all(h.clock.at(13.1)).await;
    let api = h.pair_to("shop/api");

    // The policy watch has been failing for a minute; a deny policy is in the (stale) index.
    let minute_ago = h.clock.at(14.0).wall - Duration::from_secs(60);
    let ms = minute_ago
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after the epoch")
        .as_millis() as u64;
    h.view
        .stats
        .get(WatchedKind::NetworkPolicies)
        .failing_since_ms
        .store(ms, std::sync::atomic::Ordering::Relaxed);
    let deny = policy("shop", "deny-api", &[("app", "api")], true, false);
    h.view.index.write().apply(deny.clone());
    h.view.changes.write().push(
        h.clock.at(14.0).wall,
        ChangeKind::PolicyCreated {
            policy: ObjectRef::new("shop", "deny-api"),
            new: Some(Arc::new(deny)),
        },
    );
    let step = h.scheduler.step(h.clock.at(14.2));
    assert_eq!(step.started, [api]);
    let finished = h.finish_all(h.clock.at(14.3)).await;
    let transition = &finished[0].1.as_ref().expect("planned").transitions[0];
    assert_eq!(transition.event, None, "no Event from a stale prediction");
    h.scheduler.publish(h.clock.at(14.3).instant, true);
    let held = h
        .pairs
        .borrow()
        .iter()
        .find(|r| r.to().is_some_and(|to| to.to_string() == "shop/api"))
        .cloned()
        .expect("the api pair");
    assert_eq!(held.verdict, PairVerdict::Ok, "the last verdict is kept");
    assert_eq!(
        held.view_stale.names().collect::<Vec<_>>(),
        ["networkpolicies"]
    );
    assert!(
        held.summary.contains("held: the cluster view is stale"),
        "{}",
        held.summary
    );
    let wire = serde_json::to_value(&*held).expect("json");
    assert_eq!(wire["view_stale"], serde_json::json!(["networkpolicies"]));

    // Served again: the next probe raises the verdict, with its Event.
    h.view
        .stats
        .get(WatchedKind::NetworkPolicies)
        .failing_since_ms
        .store(0, std::sync::atomic::Ordering::Relaxed);
    let step = h.scheduler.step(h.clock.at(40.0));
    assert!(step.started.contains(&api));
    let finished = h.finish_all(h.clock.at(40.1)).await;
    let api_finished = finished
        .iter()
        .find(|(id, _)| *id == api)
        .and_then(|(_, f)| f.as_ref())
        .expect("api probed");
    assert_eq!(
        api_finished.transitions[0].event,
        Some(EventReason::NetworkPolicyDenied)
    );
}
