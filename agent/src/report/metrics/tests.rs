use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use probe_spec::{Direction, PairVerdict};
use prometheus::Registry;

use super::*;
use crate::cluster::index::Apply;
use crate::cluster::model::{Labels, Namespace};
use crate::pair::PairReason;

/// Metrics with every pair's series (`--pair-metrics all`): these tests follow series through
/// their lifecycle; `which_pairs_get_series` covers the modes.
fn registry_with_metrics() -> (Exposition, Metrics) {
    let registry = Arc::new(Registry::new());
    let metrics = Metrics::register(&registry).expect("metrics register");
    metrics.pairs.set_series(PairSeries::All);
    (Exposition::new(registry, &metrics), metrics)
}

/// What `/metrics` serves.
fn render(exposition: &Exposition) -> String {
    String::from_utf8(exposition.encode().expect("encode")).expect("utf-8")
}

/// The sample lines of one metric (no HELP/TYPE), sorted.
fn samples(text: &str, metric: &str) -> Vec<String> {
    let mut lines: Vec<String> = text
        .lines()
        .filter(|line| {
            line.strip_prefix(metric)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

/// A reason by its code.
fn reason(code: &str) -> PairReason {
    code.parse().expect("a known reason code")
}

fn key(spec: &str, src: &str, dst: &str, port: u16) -> PairKey {
    PairKey {
        spec: spec.into(),
        src: src.into(),
        dst: dst.into(),
        host: None,
        port: Some(port),
        protocol: ProtocolLabel::Tcp,
        service: None,
    }
}

fn blocked_by(policy: &str) -> PairState {
    PairState {
        verdict: PairVerdict::BlockedByPolicy,
        reason: Some(reason("default_deny")),
        direction: Some(Direction::Ingress),
        policy: policy.into(),
        policy_allowed: false,
        expectation_met: Some(false),
    }
}

fn ok() -> PairState {
    PairState {
        verdict: PairVerdict::Ok,
        reason: None,
        direction: None,
        policy: String::new(),
        policy_allowed: true,
        expectation_met: Some(true),
    }
}

#[test]
fn probe_counters_and_histogram_appear() {
    let (registry, metrics) = registry_with_metrics();
    metrics.observe_probe(
        "shop/paths",
        ProtocolLabel::Tcp,
        Outcome::Open,
        Duration::from_micros(300),
    );
    metrics.observe_probe(
        "shop/paths",
        ProtocolLabel::Tcp,
        Outcome::Timeout,
        Duration::from_secs(2),
    );
    metrics.record_probe_error("shop/paths", "netns");
    let text = render(&registry);

    assert_eq!(
        samples(&text, "netreach_probes_total"),
        [
            r#"netreach_probes_total{outcome="open",protocol="TCP",spec="shop/paths"} 1"#,
            r#"netreach_probes_total{outcome="timeout",protocol="TCP",spec="shop/paths"} 1"#,
        ]
    );
    assert!(text.contains(
        r#"netreach_probe_duration_seconds_bucket{protocol="TCP",spec="shop/paths",le="0.0005"} 1"#
    ));
    assert!(
        text.contains(
            r#"netreach_probe_duration_seconds_count{protocol="TCP",spec="shop/paths"} 2"#
        )
    );
    assert!(text.contains(r#"netreach_probe_errors_total{error="netns",spec="shop/paths"} 1"#));
    assert!(text.contains(&format!(
        r#"netreach_build_info{{version="{}"}} 1"#,
        env!("CARGO_PKG_VERSION")
    )));
    assert!(text.contains("# TYPE netreach_probe_duration_seconds histogram"));
    assert!(text.contains("# TYPE netreach_probes_total counter"));
}

#[test]
fn pair_series_appear_with_every_label() {
    let (registry, metrics) = registry_with_metrics();
    let frontend = key("shop/paths", "shop/frontend", "payments/gateway", 8443);
    metrics
        .pairs
        .set(&frontend, &blocked_by("payments/default-deny"));
    let text = render(&registry);

    let pair = r#"dst="payments/gateway",host="",port="8443",protocol="TCP",service="",spec="shop/paths",src="shop/frontend""#;
    assert_eq!(
        samples(&text, "netreach_pair_up"),
        [format!("netreach_pair_up{{{pair}}} 0")]
    );
    assert_eq!(
        samples(&text, "netreach_pair_policy_allowed"),
        [format!("netreach_pair_policy_allowed{{{pair}}} 0")]
    );
    assert_eq!(
        samples(&text, "netreach_pair_expectation_met"),
        [format!("netreach_pair_expectation_met{{{pair}}} 0")]
    );
    assert_eq!(
        samples(&text, "netreach_pair_verdict"),
        [
            r#"netreach_pair_verdict{direction="ingress",dst="payments/gateway",host="",policy="payments/default-deny",port="8443",protocol="TCP",reason="default_deny",service="",spec="shop/paths",src="shop/frontend",verdict="blocked_by_policy"} 1"#
        ]
    );
    assert_eq!(
        samples(&text, "netreach_spec_pairs"),
        [
            r#"netreach_spec_pairs{spec="shop/paths",verdict="blocked_by_policy"} 1"#,
            r#"netreach_spec_pairs{spec="shop/paths",verdict="inconclusive"} 0"#,
            r#"netreach_spec_pairs{spec="shop/paths",verdict="not_probed"} 0"#,
            r#"netreach_spec_pairs{spec="shop/paths",verdict="ok"} 0"#,
            r#"netreach_spec_pairs{spec="shop/paths",verdict="partially_blocked"} 0"#,
            r#"netreach_spec_pairs{spec="shop/paths",verdict="policy_not_enforced"} 0"#,
            r#"netreach_spec_pairs{spec="shop/paths",verdict="unexpected_block"} 0"#,
        ]
    );
}

#[test]
fn a_verdict_change_replaces_the_verdict_series() {
    let (registry, metrics) = registry_with_metrics();
    let pair = key("shop/paths", "shop/frontend", "payments/gateway", 8443);
    metrics
        .pairs
        .set(&pair, &blocked_by("payments/default-deny"));
    metrics.pairs.set(&pair, &ok());
    let text = render(&registry);

    let verdicts = samples(&text, "netreach_pair_verdict");
    assert_eq!(verdicts.len(), 1, "{verdicts:?}");
    assert!(verdicts[0].contains(r#"verdict="ok""#), "{verdicts:?}");
    assert!(!text.contains("blocked_by_policy\"} 1"));
    assert!(text.contains(r#"netreach_pair_up{dst="payments/gateway""#));
    assert!(text.contains(r#"netreach_spec_pairs{spec="shop/paths",verdict="ok"} 1"#));
    assert!(
        text.contains(r#"netreach_spec_pairs{spec="shop/paths",verdict="blocked_by_policy"} 0"#)
    );

    // Same verdict, another deciding policy: still one series, with the new policy.
    metrics.pairs.set(&pair, &blocked_by("payments/a"));
    metrics.pairs.set(&pair, &blocked_by("payments/b"));
    let verdicts = samples(&render(&registry), "netreach_pair_verdict");
    assert_eq!(verdicts.len(), 1, "{verdicts:?}");
    assert!(
        verdicts[0].contains(r#"policy="payments/b""#),
        "{verdicts:?}"
    );
}

#[test]
fn removing_a_pair_removes_all_its_series() {
    let (registry, metrics) = registry_with_metrics();
    let gone = key("shop/paths", "shop/frontend", "payments/gateway", 8443);
    let kept = key("shop/paths", "shop/frontend", "shop/api", 8080);
    metrics
        .pairs
        .set(&gone, &blocked_by("payments/default-deny"));
    metrics.pairs.set(&kept, &ok());

    assert!(metrics.pairs.remove(&gone));
    assert!(!metrics.pairs.remove(&gone), "already removed");
    let text = render(&registry);
    assert!(!text.contains("payments/gateway"), "{text}");
    for metric in [
        "netreach_pair_up",
        "netreach_pair_policy_allowed",
        "netreach_pair_expectation_met",
        "netreach_pair_verdict",
    ] {
        assert_eq!(samples(&text, metric).len(), 1, "{metric}: {text}");
    }
    assert!(
        text.contains(r#"netreach_spec_pairs{spec="shop/paths",verdict="blocked_by_policy"} 0"#)
    );

    // The spec's last pair takes the spec's counts with it.
    metrics.pairs.retain(|_| false);
    let text = render(&registry);
    assert!(samples(&text, "netreach_spec_pairs").is_empty(), "{text}");
    assert!(samples(&text, "netreach_pair_up").is_empty(), "{text}");
    assert!(metrics.pairs.is_empty());
}

#[test]
fn retain_keeps_only_the_pairs_asked_for() {
    let (registry, metrics) = registry_with_metrics();
    for port in [80, 81, 82, 83] {
        metrics
            .pairs
            .set(&key("shop/paths", "shop/frontend", "shop/api", port), &ok());
    }
    metrics
        .pairs
        .retain(|key| key.port.is_some_and(|p| p % 2 == 0));
    assert_eq!(metrics.pairs.len(), 2);
    let text = render(&registry);
    assert_eq!(samples(&text, "netreach_pair_verdict").len(), 2);
    assert!(text.contains(r#"netreach_spec_pairs{spec="shop/paths",verdict="ok"} 2"#));
}

#[test]
fn cardinality_stays_bounded_by_the_pairs() {
    let (registry, metrics) = registry_with_metrics();
    let pairs: Vec<PairKey> = (0..50)
        .map(|i| key("shop/paths", &format!("shop/src-{i}"), "shop/api", 8080))
        .collect();
    let states = [
        ok(),
        blocked_by("shop/a"),
        blocked_by("shop/b"),
        PairState {
            verdict: PairVerdict::UnexpectedBlock,
            reason: Some(reason("cni_unhealthy")),
            direction: None,
            policy: String::new(),
            policy_allowed: true,
            expectation_met: Some(false),
        },
    ];
    for round in 0..20 {
        for (i, pair) in pairs.iter().enumerate() {
            metrics.pairs.set(pair, &states[(i + round) % states.len()]);
        }
    }
    let text = render(&registry);
    for metric in [
        "netreach_pair_up",
        "netreach_pair_policy_allowed",
        "netreach_pair_expectation_met",
        "netreach_pair_verdict",
    ] {
        assert_eq!(samples(&text, metric).len(), pairs.len(), "{metric}");
    }
    assert_eq!(
        samples(&text, "netreach_spec_pairs").len(),
        PairVerdict::ALL.len()
    );
    let total: i64 = samples(&text, "netreach_spec_pairs")
        .iter()
        .map(|line| line.rsplit(' ').next().and_then(|v| v.parse::<i64>().ok()))
        .map(|value| value.expect("sample value"))
        .sum();
    assert_eq!(total, 50);
}

#[test]
fn removing_a_spec_removes_its_counters_and_pairs() {
    let (registry, metrics) = registry_with_metrics();
    for spec in ["shop/gone", "shop/kept"] {
        metrics.observe_probe(spec, ProtocolLabel::Udp, Outcome::Refused, Duration::ZERO);
        metrics.observe_probe(spec, ProtocolLabel::Dns, Outcome::Nxdomain, Duration::ZERO);
        metrics.record_probe_error(spec, "netns");
        metrics.pairs.set(&key(spec, "shop/a", "shop/b", 53), &ok());
    }
    metrics.remove_spec("shop/gone");
    let text = render(&registry);
    assert!(!text.contains("shop/gone"), "{text}");
    assert_eq!(samples(&text, "netreach_probes_total").len(), 2);
    assert_eq!(samples(&text, "netreach_pair_verdict").len(), 1);
}

#[test]
fn cni_agents_are_replaced_as_a_set() {
    let (registry, metrics) = registry_with_metrics();
    let agent = |node: &str, ready| CniAgentState {
        node: node.into(),
        pod: format!("kube-system/calico-{node}"),
        ready,
    };
    metrics.set_cni_agents([agent("node-1", true), agent("node-2", false)]);
    metrics.set_cni_agents([agent("node-1", false)]);
    let text = render(&registry);
    assert_eq!(
        samples(&text, "netreach_cni_agent_ready"),
        [r#"netreach_cni_agent_ready{cni_node="node-1",cni_pod="kube-system/calico-node-1"} 0"#]
    );
}

#[test]
fn watch_restarts_and_change_to_effect() {
    let (registry, metrics) = registry_with_metrics();
    metrics.init_watch_restarts(&["pods", "networkpolicies"]);
    metrics.record_watch_restart("pods");
    metrics.observe_policy_change_to_effect(Duration::from_millis(700));
    let text = render(&registry);
    assert_eq!(
        samples(&text, "netreach_watch_restarts_total"),
        [
            r#"netreach_watch_restarts_total{resource="networkpolicies"} 0"#,
            r#"netreach_watch_restarts_total{resource="pods"} 1"#,
        ]
    );
    assert!(text.contains(r#"netreach_policy_change_to_effect_seconds_bucket{le="1"} 1"#));
    assert!(text.contains("netreach_policy_change_to_effect_seconds_sum 0.7"));
}

#[test]
fn index_objects_are_read_at_scrape_time() {
    let registry = Arc::new(Registry::new());
    let index = Arc::new(RwLock::new(Index::new()));
    IndexCollector::register(&registry, index.clone()).expect("register collector");
    let registry = Exposition::from(registry);
    assert!(render(&registry).contains(r#"netreach_index_objects{kind="namespaces"} 0"#));

    index.write().apply(Namespace {
        name: "shop".into(),
        labels: Labels::new(),
    });
    let text = render(&registry);
    assert_eq!(
        samples(&text, "netreach_index_objects"),
        [
            r#"netreach_index_objects{kind="namespaces"} 1"#,
            r#"netreach_index_objects{kind="networkpolicies"} 0"#,
            r#"netreach_index_objects{kind="nodes"} 0"#,
            r#"netreach_index_objects{kind="pods"} 0"#,
        ]
    );
    // Registering twice is refused rather than double counting.
    assert!(IndexCollector::register(registry.registry(), index).is_err());
}

/// A pair that was not probed (or is inconclusive) keeps its verdict and policy series but
/// has no reachability or expectation series: nothing was observed to put there.
#[test]
fn undecided_pairs_have_no_reachability_or_expectation_series() {
    let (registry, metrics) = registry_with_metrics();
    let pair = key("shop/paths", "shop/frontend", "payments/gateway", 8443);
    metrics.pairs.set(
        &pair,
        &PairState {
            verdict: PairVerdict::NotProbed,
            reason: Some(reason("netns_not_found")),
            direction: None,
            policy: String::new(),
            policy_allowed: false,
            expectation_met: None,
        },
    );
    metrics.observe_attempt(
        "shop/paths",
        ProtocolLabel::Tcp,
        Outcome::NotProbed,
        Some(crate::probe::NotProbedReason::NetnsNotFound),
        Duration::ZERO,
    );
    let text = render(&registry);
    assert!(samples(&text, "netreach_pair_up").is_empty(), "{text}");
    assert!(samples(&text, "netreach_pair_expectation_met").is_empty());
    assert_eq!(samples(&text, "netreach_pair_policy_allowed").len(), 1);
    assert_eq!(
        samples(&text, "netreach_pair_verdict"),
        [
            r#"netreach_pair_verdict{direction="",dst="payments/gateway",host="",policy="",port="8443",protocol="TCP",reason="netns_not_found",service="",spec="shop/paths",src="shop/frontend",verdict="not_probed"} 1"#
        ]
    );
    assert!(samples(&text, "netreach_probes_total").is_empty());
    assert!(
        text.contains(
            r#"netreach_probe_errors_total{error="netns_not_found",spec="shop/paths"} 1"#
        )
    );
}

/// By default only the exceptions get per-pair series; the spec counts always count every pair.
#[test]
fn which_pairs_get_series() {
    let ok = PairState {
        verdict: PairVerdict::Ok,
        reason: None,
        direction: None,
        policy: String::new(),
        policy_allowed: true,
        expectation_met: Some(true),
    };
    let blocked = PairState {
        verdict: PairVerdict::BlockedByPolicy,
        reason: Some(reason("default_deny")),
        direction: Some(Direction::Ingress),
        policy: "pay/default-deny".into(),
        policy_allowed: false,
        expectation_met: Some(false),
    };
    let ok_but_unmet = PairState {
        expectation_met: Some(false),
        ..ok.clone()
    };
    let not_probed = PairState {
        verdict: PairVerdict::NotProbed,
        expectation_met: None,
        ..ok.clone()
    };
    let cases = [
        (PairSeries::All, 4),
        (PairSeries::Exceptions, 3),
        (PairSeries::None, 0),
    ];
    for (series, pairs_with_series) in cases {
        let (registry, metrics) = registry_with_metrics();
        metrics.pairs.set_series(series);
        for (i, state) in [&ok, &blocked, &ok_but_unmet, &not_probed]
            .iter()
            .enumerate()
        {
            metrics.pairs.set(
                &key("shop/paths", "shop/web", &format!("shop/api-{i}"), 80),
                state,
            );
        }
        let text = render(&registry);
        assert_eq!(
            samples(&text, "netreach_pair_verdict").len(),
            pairs_with_series,
            "{series}"
        );
        assert_eq!(
            samples(&text, "netreach_pair_policy_allowed").len(),
            pairs_with_series,
            "{series}"
        );
        let counted: f64 = samples(&text, "netreach_spec_pairs")
            .iter()
            .map(|line| {
                line.rsplit(' ')
                    .next()
                    .unwrap_or("0")
                    .parse::<f64>()
                    .unwrap_or(0.0)
            })
            .sum();
        assert_eq!(counted, 4.0, "{series}: every pair is counted");
    }
    assert_eq!("exceptions".parse(), Ok(PairSeries::Exceptions));
    assert!("some".parse::<PairSeries>().is_err());
}

/// The pair families are written by hand; they must read exactly as prometheus' own encoder
/// writes the same samples (escaping included: a host target's name is the caller's text).
#[test]
fn pair_text_is_what_the_prometheus_encoder_writes_for_the_same_samples() {
    let (exposition, metrics) = registry_with_metrics();
    let odd_host = PairKey {
        host: Some("we\"ird\\host\nname".into()),
        port: None,
        protocol: ProtocolLabel::Dns,
        ..key("shop/dns", "shop/web", "", 0)
    };
    let pairs = [
        (key("shop/paths", "shop/web", "shop/api", 8080), ok()),
        (
            key("shop/paths", "shop/web", "billing/db", 5432),
            blocked_by("billing/deny"),
        ),
        (
            odd_host,
            PairState {
                expectation_met: None,
                ..blocked_by("")
            },
        ),
    ];
    for (key, state) in &pairs {
        metrics.pairs.set(key, state);
    }

    // The same samples through prometheus' own vectors and encoder.
    let reference = Registry::new();
    let gauge = |name: &str, help: &str, labels: &[&str]| {
        let vec = prometheus::IntGaugeVec::new(
            prometheus::Opts::new(name, help).namespace(NAMESPACE),
            labels,
        )
        .expect("gauge");
        reference.register(Box::new(vec.clone())).expect("register");
        vec
    };
    let text_of = |family: &str| family_text(&render(&exposition), family).to_string();
    let help_of = |family: &str| -> String {
        let text = text_of(family);
        let line = text.lines().next().expect("help line");
        line[format!("# HELP netreach_{family} ").len()..]
            .replace("\\n", "\n")
            .replace("\\\\", "\\")
    };
    let labels: Vec<&str> = PAIR_LABELS.to_vec();
    let verdict_labels: Vec<&str> = PAIR_LABELS.iter().chain(&VERDICT_LABELS).copied().collect();
    let up = gauge("pair_up", &help_of("pair_up"), &labels);
    let allowed = gauge(
        "pair_policy_allowed",
        &help_of("pair_policy_allowed"),
        &labels,
    );
    let met = gauge(
        "pair_expectation_met",
        &help_of("pair_expectation_met"),
        &labels,
    );
    let verdict = gauge("pair_verdict", &help_of("pair_verdict"), &verdict_labels);
    let spec_pairs = gauge("spec_pairs", &help_of("spec_pairs"), &["spec", "verdict"]);
    let mut counts: std::collections::BTreeMap<(String, PairVerdict), i64> = Default::default();
    for (key, state) in &pairs {
        let port = key.port.map(|p| p.to_string()).unwrap_or_default();
        let host = key.host.clone().unwrap_or_default();
        let service = key.service.clone().unwrap_or_default();
        let values = [
            key.spec.as_str(),
            key.src.as_str(),
            key.dst.as_str(),
            host.as_str(),
            port.as_str(),
            key.protocol.as_str(),
            service.as_str(),
        ];
        if state.verdict.is_decided() {
            up.with_label_values(&values)
                .set(i64::from(state.verdict.reachable()));
        }
        allowed
            .with_label_values(&values)
            .set(i64::from(state.policy_allowed));
        if let Some(m) = state.expectation_met {
            met.with_label_values(&values).set(i64::from(m));
        }
        let mut all = values.to_vec();
        all.extend([
            state.verdict.as_str(),
            state.reason.map_or("", PairReason::as_str),
            state.direction.map_or("", Direction::as_str),
            state.policy.as_str(),
        ]);
        verdict.with_label_values(&all).set(1);
        *counts.entry((key.spec.clone(), state.verdict)).or_default() += 1;
    }
    for spec in ["shop/dns", "shop/paths"] {
        for v in PairVerdict::ALL {
            spec_pairs
                .with_label_values(&[spec, v.as_str()])
                .set(counts.get(&(spec.to_string(), v)).copied().unwrap_or(0));
        }
    }
    let expected = {
        let mut buffer = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&reference.gather(), &mut buffer)
            .expect("encode");
        String::from_utf8(buffer).expect("utf-8")
    };
    for family in [
        "pair_up",
        "pair_policy_allowed",
        "pair_expectation_met",
        "pair_verdict",
        "spec_pairs",
    ] {
        let sorted = |text: &str| {
            let mut lines: Vec<&str> = text.lines().collect();
            lines.sort_unstable();
            lines.join("\n")
        };
        assert_eq!(
            sorted(&text_of(family)),
            sorted(family_text(&expected, family)),
            "{family}"
        );
    }
    assert!(text_of("pair_up").contains(r#"host="we\"ird\\host\nname""#));
}

/// One family of an exposition: its `# HELP` line up to the next family's.
fn family_text<'a>(text: &'a str, family: &str) -> &'a str {
    let start = text
        .find(&format!("# HELP netreach_{family} "))
        .unwrap_or_else(|| panic!("no family netreach_{family}"));
    let end = text[start + 1..]
        .find("# HELP ")
        .map_or(text.len(), |i| start + 1 + i);
    &text[start..end]
}
