use k8s_openapi::jiff::Timestamp;
use probe_spec::{Expectation, PairVerdict};

use super::*;
use crate::pair::PairTarget;
use crate::runtime::fixtures::{report, report_to};

/// The spec every report here belongs to.
fn paths() -> SpecRef {
    "shop/paths".parse().expect("a spec")
}

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).expect("timestamp")
}

fn summary() -> SpecSummary {
    SpecSummary {
        generation: Some(7),
        expect: Expectation::Allow,
        planned: 3,
        problem: None,
        sources_narrowed: None,
    }
}

#[test]
fn a_node_report_counts_verdicts_and_lists_failing_pairs_newest_first() {
    let mut pairs = vec![
        report("shop/paths", "shop/web", "shop/api", PairVerdict::Ok, true),
        report(
            "shop/paths",
            "shop/web",
            "shop/db",
            PairVerdict::BlockedByPolicy,
            false,
        ),
        report(
            "shop/paths",
            "shop/web",
            "shop/cache",
            PairVerdict::UnexpectedBlock,
            false,
        ),
        report(
            "other/spec",
            "other/a",
            "other/b",
            PairVerdict::BlockedByPolicy,
            false,
        ),
    ];
    pairs[1].last_probe = at(100);
    pairs[2].last_probe = at(200);
    let mut since = FailingSince::default();
    let report = node_report(&paths(), &summary(), &pairs, &mut since, 5);
    assert_eq!(report.observed_generation, Some(7));
    assert_eq!(report.counts.ok, 1);
    assert_eq!(report.counts.blocked_by_policy, 1);
    assert_eq!(report.counts.unexpected_block, 1);
    assert_eq!(report.counts.policy_not_enforced, 0);
    assert_eq!(report.failing, 2);
    let failing: Vec<(&str, Timestamp)> = report
        .last_failing_pairs
        .iter()
        .map(|p| (p.to.as_str(), p.since.0))
        .collect();
    assert_eq!(failing, [("shop/cache", at(200)), ("shop/db", at(100))]);
    let db = &report.last_failing_pairs[1];
    assert_eq!(db.from, "shop/web");
    assert_eq!(db.port, Some(8080));
    assert_eq!(db.protocol, Some(probe_spec::Protocol::Tcp));
    assert_eq!(db.reason.as_deref(), Some("default_deny"));
    assert_eq!(db.policy.as_deref(), Some("shop/deny"));
    assert_eq!(report.problem, None);

    // A later probe of a pair that still fails keeps its first failing time.
    pairs[1].last_probe = at(300);
    pairs[1].verdict = PairVerdict::UnexpectedBlock;
    let report = node_report(&paths(), &summary(), &pairs, &mut since, 1);
    assert_eq!(report.last_failing_pairs.len(), 1, "capped");
    assert_eq!(report.last_failing_pairs[0].to, "shop/cache");
    assert_eq!(report.failing, 2, "the count is not capped");

    // Once it recovers (a tick in which it did not fail) and fails again, the streak starts
    // anew.
    since.end_tick();
    since.end_tick();
    let report = node_report(&paths(), &summary(), &pairs, &mut since, 5);
    assert_eq!(report.last_failing_pairs[0].to, "shop/db");
    assert_eq!(report.last_failing_pairs[0].since.0, at(300));
}

#[test]
fn a_spec_is_first_reported_once_every_planned_pair_was_probed() {
    let mut since = FailingSince::default();
    let pairs = vec![
        report("shop/paths", "shop/web", "shop/api", PairVerdict::Ok, true),
        report("shop/paths", "shop/web", "shop/db", PairVerdict::Ok, true),
    ];
    let partial = node_report(&paths(), &summary(), &pairs, &mut since, 5);
    let probed = probed_pairs(&paths(), &pairs);
    assert_eq!(probed, 2);
    assert!(
        !ready_to_report(&summary(), &partial, probed, false),
        "2 of 3 probed"
    );
    assert!(
        ready_to_report(&summary(), &partial, probed, true),
        "reported before: always"
    );

    let all_probed = SpecSummary {
        planned: 2,
        ..summary()
    };
    assert!(ready_to_report(&all_probed, &partial, probed, false));

    // A host pair's reports, one per resolved address, are one planned pair.
    let mut with_host = pairs.clone();
    let addresses = [
        report(
            "shop/paths",
            "shop/web",
            "shop/cache",
            PairVerdict::Ok,
            true,
        ),
        report_to(
            "shop/paths",
            "shop/web",
            PairTarget::Ip {
                ip: "192.0.2.10".parse().expect("ip"),
                port: 8080,
                protocol: Protocol::Tcp,
            },
            PairVerdict::Ok,
            true,
        ),
    ];
    for mut address in addresses {
        address.host = Some("cache.example".into());
        with_host.push(address);
    }
    let partial = node_report(&paths(), &summary(), &with_host, &mut since, 5);
    assert_eq!(
        partial.counts.get(PairVerdict::Ok),
        4,
        "counted per address"
    );
    let probed = probed_pairs(&paths(), &with_host);
    assert_eq!(probed, 3);
    assert!(ready_to_report(&summary(), &partial, probed, false));

    let nothing_planned = SpecSummary {
        planned: 0,
        ..summary()
    };
    let empty = node_report(
        &paths(),
        &nothing_planned,
        &[] as &[PairReport],
        &mut since,
        5,
    );
    assert!(
        ready_to_report(&nothing_planned, &empty, 0, false),
        "no pairs here: withdraw this node's entry"
    );

    let broken = SpecSummary {
        planned: 0,
        problem: Some("spec.interval: invalid".into()),
        ..summary()
    };
    let report = node_report(&paths(), &broken, &[] as &[PairReport], &mut since, 5);
    assert_eq!(report.problem.as_deref(), Some("spec.interval: invalid"));
    assert!(ready_to_report(&broken, &report, 0, false));

    // Narrowed down to no source: no pairs, but an entry that carries the condition.
    let narrowed = SpecSummary {
        planned: 0,
        sources_narrowed: Some("other than shop (billing)".into()),
        ..summary()
    };
    let report = node_report(&paths(), &narrowed, &[] as &[PairReport], &mut since, 5);
    assert!(!report.is_empty(), "keeps this node's entry");
    assert!(ready_to_report(&narrowed, &report, 0, false));
}

#[test]
fn a_failing_pair_carries_its_recent_changes_and_probe_counts() {
    use crate::pair::PairHistory;
    use crate::probe::Outcome;
    let mut history = PairHistory::new(at(0));
    // Seven alternations: only the last five periods go to the status.
    for i in 0..7 {
        let verdict = if i % 2 == 0 {
            PairVerdict::Ok
        } else {
            PairVerdict::BlockedByPolicy
        };
        let outcome = if i % 2 == 0 {
            Outcome::Open
        } else {
            Outcome::Timeout
        };
        history.observe(&crate::runtime::fixtures::report_at(
            at(i * 10),
            verdict,
            outcome,
        ));
    }
    let mut pair = report("shop/paths", "shop/web", "shop/db", PairVerdict::Ok, false);
    pair.history = Some(crate::pair::SharedHistory::new(history));
    let mut since = FailingSince::default();
    let report = node_report(&paths(), &summary(), &[pair], &mut since, 5);
    let failing = &report.last_failing_pairs[0];
    let starts: Vec<Timestamp> = failing.recent_changes.iter().map(|c| c.start.0).collect();
    assert_eq!(starts, [at(20), at(30), at(40), at(50), at(60)]);
    assert_eq!(failing.recent_changes[4].end, None);
    assert_eq!(
        failing.recent_changes[3].reason.as_deref(),
        Some("default_deny")
    );
    assert_eq!(failing.probes.get("open"), Some(&4));
    assert_eq!(failing.probes.get("timeout"), Some(&3));
}

/// A status write that fails while the API is down is written again after the write backoff
/// (at most 30 s), not only at the next interval, and with the newest report.
#[tokio::test(start_paused = true)]
async fn a_status_write_that_failed_is_retried_within_the_backoff() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use axum::routing::get;

    use crate::report::status::{SpecStatusWriter, StatusConfig};
    use crate::runtime::probe_loop::SpecSummaries;

    let down = Arc::new(AtomicBool::new(true));
    let patched = Arc::new(AtomicUsize::new(0));
    let object = serde_json::json!({"apiVersion": "netreach.dev/v1alpha1", "kind": "ProbeSpec",
        "metadata": {"name": "paths", "namespace": "shop", "resourceVersion": "1"},
        "spec": {"from": {"podSelector": {}}, "to": []}});
    let unavailable = (
        http::StatusCode::SERVICE_UNAVAILABLE,
        r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"ServiceUnavailable","code":503}"#
            .to_string(),
    );
    let router = {
        let (down_get, down_patch, patched) = (down.clone(), down.clone(), patched.clone());
        let (object, unavailable_get, unavailable_patch) =
            (object.clone(), unavailable.clone(), unavailable.clone());
        let base = "/apis/netreach.dev/v1alpha1/namespaces/shop/probespecs/paths";
        axum::Router::new()
            .route(
                base,
                get(move || {
                    let (down, object, unavailable) =
                        (down_get.clone(), object.clone(), unavailable_get.clone());
                    async move {
                        if down.load(Ordering::Relaxed) {
                            return unavailable;
                        }
                        (http::StatusCode::OK, object.to_string())
                    }
                }),
            )
            .route(
                &format!("{base}/status"),
                axum::routing::patch(move |body: axum::body::Bytes| {
                    let (down, patched, unavailable) = (
                        down_patch.clone(),
                        patched.clone(),
                        unavailable_patch.clone(),
                    );
                    async move {
                        if down.load(Ordering::Relaxed) {
                            return unavailable;
                        }
                        patched.fetch_add(1, Ordering::Relaxed);
                        (
                            http::StatusCode::OK,
                            String::from_utf8_lossy(&body).into_owned(),
                        )
                    }
                }),
            )
    };
    let writer = SpecStatusWriter::new(
        kube::Client::new(router, "default"),
        StatusConfig::for_node("node-1"),
    );
    let mut summaries = SpecSummaries::new();
    summaries.insert(paths(), summary());
    let (_specs_tx, specs) = watch::channel(Arc::new(summaries));
    let pairs: Vec<Arc<PairReport>> = ["shop/a", "shop/b", "shop/c"]
        .into_iter()
        .map(|to| Arc::new(report("shop/paths", "shop/web", to, PairVerdict::Ok, true)))
        .collect();
    let (_pairs_tx, pairs) = watch::channel(Arc::new(pairs));
    let (_ready_tx, ready) = watch::channel(true);
    let (_stop_tx, stop) = watch::channel(false);
    let interval = Duration::from_secs(300);
    let task = tokio::spawn(write_spec_statuses(
        writer, specs, pairs, ready, interval, stop,
    ));

    // The first write is due at 300 s and fails; the API comes back at 310 s.
    tokio::time::sleep(Duration::from_secs(310)).await;
    assert_eq!(patched.load(Ordering::Relaxed), 0);
    down.store(false, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert_eq!(
        patched.load(Ordering::Relaxed),
        1,
        "written within the backoff, long before the next interval"
    );
    task.abort();
}
