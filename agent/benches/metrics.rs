//! What `/metrics` costs at 10,000 pairs on one node, for each `--pair-metrics` setting side by
//! side in one run: series exported, bytes per scrape, and the time to gather and encode (the
//! median of 21 scrapes). 9,900 pairs are healthy, 100 blocked by policy (the exceptions).
//!
//! Run: `cargo bench -p netreach --bench metrics`.

#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use netreach::pair::PairReason;
use netreach::policy::Reason;
use netreach::report::metrics::{
    Exposition, Metrics, PairKey, PairSeries, PairState, ProtocolLabel,
};
use probe_spec::{Direction, PairVerdict};
use prometheus::Registry;

const PAIRS: usize = 10_000;
const EXCEPTIONS: usize = 100;
const SCRAPES: usize = 21;

fn state(blocked: bool) -> PairState {
    if blocked {
        PairState {
            verdict: PairVerdict::BlockedByPolicy,
            reason: Some(PairReason::Policy(Reason::DefaultDeny)),
            direction: Some(Direction::Ingress),
            policy: "billing/default-deny".into(),
            policy_allowed: false,
            expectation_met: Some(false),
        }
    } else {
        PairState {
            verdict: PairVerdict::Ok,
            reason: None,
            direction: None,
            policy: String::new(),
            policy_allowed: true,
            expectation_met: Some(true),
        }
    }
}

/// One `GET /metrics` encoding: series, bytes and time.
fn scrape(exposition: &Exposition) -> (usize, usize, Duration) {
    let started = Instant::now();
    let body = exposition.encode().expect("encode");
    let took = started.elapsed();
    let series = body
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty() && !line.starts_with(b"#"))
        .count();
    (series, body.len(), took)
}

fn main() {
    println!(
        "{PAIRS} pairs on one node ({EXCEPTIONS} blocked), /metrics per --pair-metrics setting:"
    );
    println!(
        "{:<12} {:>8} {:>12} {:>14}",
        "setting", "series", "bytes", "scrape (median)"
    );
    for series_setting in [PairSeries::All, PairSeries::Exceptions, PairSeries::None] {
        let registry = Arc::new(Registry::new());
        let metrics = Metrics::register(&registry).expect("register");
        let exposition = Exposition::new(registry, &metrics);
        metrics.pairs.set_series(series_setting);
        for i in 0..PAIRS {
            let key = PairKey {
                spec: format!("shop/paths-{}", i % 100),
                src: format!("shop/web-{}", i / 100),
                dst: format!("shop/api-{}", i % 100),
                host: None,
                port: Some(8080),
                protocol: ProtocolLabel::Tcp,
                service: None,
            };
            metrics
                .pairs
                .set(&key, &state(i % (PAIRS / EXCEPTIONS) == 0));
        }
        let mut runs: Vec<(usize, usize, Duration)> =
            (0..SCRAPES).map(|_| scrape(&exposition)).collect();
        runs.sort_by_key(|run| run.2);
        let (series, bytes, took) = runs[SCRAPES / 2];
        println!(
            "{:<12} {:>8} {:>12} {:>11.1} ms",
            series_setting.as_str(),
            series,
            bytes,
            took.as_secs_f64() * 1000.0
        );
    }
}
