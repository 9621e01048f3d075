//! Prometheus metrics through one owned [`Registry`], with no globals.
//!
//! Data flow:
//!
//! ```text
//! Registry::new() ──Metrics::register()──> Metrics (handles) ──passed to──> scheduler, watchers
//!       │        │                          └─ .pairs: PairMetrics (a table, written at scrape)
//!       │        └─IndexCollector::register(index)  (index sizes, read at scrape time)
//!       └──Exposition { registry, pairs }──encode()──> GET /metrics
//!            gather() ──> TextEncoder, then PairMetrics::encode_text (no protobuf per series)
//! ```
//!
//! - Probe counters and the duration histogram are labelled by spec and protocol only; the
//!   per-pair series live in [`PairMetrics`], are bounded by the specs' `maxPairs` (the
//!   scheduler's guarantee) and disappear with their pair.
//! - Every label value is a bounded code (verdict, reason, outcome, error) or an object the
//!   operator declared (a ProbeSpec and the pairs it samples, a CNI agent pod).
//! - Names, types, labels and cardinality bounds are listed in `docs/metrics.md`.

mod pairs;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::cluster::Index;
use crate::cluster::model::Protocol;
use crate::probe::{NotProbedReason, Outcome};

pub use pairs::{PAIR_LABELS, PairKey, PairMetrics, PairSeries, PairState, VERDICT_LABELS};

/// The prefix of every metric name.
pub const NAMESPACE: &str = "netreach";

/// Buckets of `netreach_probe_duration_seconds`: 0.1 ms (same-node pods) to 10 s (the longest
/// sensible timeout), about 2.5x apart.
pub const PROBE_DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Buckets of `netreach_policy_change_to_effect_seconds`: watch delivery plus a re-probe is
/// sub-second when all is well; minutes mean a slow CNI.
pub const CHANGE_TO_EFFECT_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// The `protocol` label: a transport protocol, or `DNS` for name lookups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProtocolLabel {
    Tcp,
    Udp,
    Sctp,
    Dns,
}

impl ProtocolLabel {
    pub const ALL: [ProtocolLabel; 4] = [
        ProtocolLabel::Tcp,
        ProtocolLabel::Udp,
        ProtocolLabel::Sctp,
        ProtocolLabel::Dns,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProtocolLabel::Tcp => "TCP",
            ProtocolLabel::Udp => "UDP",
            ProtocolLabel::Sctp => "SCTP",
            ProtocolLabel::Dns => "DNS",
        }
    }
}

impl fmt::Display for ProtocolLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Protocol> for ProtocolLabel {
    fn from(protocol: Protocol) -> Self {
        match protocol {
            Protocol::Tcp => ProtocolLabel::Tcp,
            Protocol::Udp => ProtocolLabel::Udp,
            Protocol::Sctp => ProtocolLabel::Sctp,
        }
    }
}

impl From<probe_spec::Protocol> for ProtocolLabel {
    fn from(protocol: probe_spec::Protocol) -> Self {
        match protocol {
            probe_spec::Protocol::Tcp => ProtocolLabel::Tcp,
            probe_spec::Protocol::Udp => ProtocolLabel::Udp,
            probe_spec::Protocol::Sctp => ProtocolLabel::Sctp,
        }
    }
}

/// A CNI agent pod and whether it is ready, for `netreach_cni_agent_ready`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CniAgentState {
    /// The node the agent runs on.
    pub node: String,
    /// The agent pod, `namespace/name`.
    pub pod: String,
    pub ready: bool,
}

// === impl Exposition ===

/// What `GET /metrics` serves: the registry's families, then the pair table's, which
/// [`PairMetrics::encode_text`] writes without building a protobuf family per series. Cloning
/// shares both.
#[derive(Clone, Debug)]
pub struct Exposition {
    registry: Arc<Registry>,
    pairs: Option<PairMetrics>,
}

impl Exposition {
    /// The registry `metrics` were registered in, and their pair table.
    pub fn new(registry: Arc<Registry>, metrics: &Metrics) -> Self {
        Self {
            registry,
            pairs: Some(metrics.pairs.clone()),
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Everything, in the Prometheus text exposition format.
    pub fn encode(&self) -> prometheus::Result<Vec<u8>> {
        let mut body = Vec::with_capacity(64 * 1024);
        TextEncoder::new().encode(&self.registry.gather(), &mut body)?;
        if let Some(pairs) = &self.pairs {
            pairs.encode_text(&mut body);
        }
        Ok(body)
    }
}

/// A registry without a pair table (servers and tests that record no pairs).
impl From<Arc<Registry>> for Exposition {
    fn from(registry: Arc<Registry>) -> Self {
        Self {
            registry,
            pairs: None,
        }
    }
}

// === impl Metrics ===

/// Handles to every metric the agent updates. Built once by [`Metrics::register`] and passed
/// to whoever records; cloning is not needed (share it behind an `Arc`).
#[derive(Debug)]
pub struct Metrics {
    /// `netreach_probes_total{spec,protocol,outcome}`.
    probes: IntCounterVec,
    /// `netreach_probe_duration_seconds{spec,protocol}`.
    probe_duration: HistogramVec,
    /// `netreach_probe_errors_total{spec,error}`.
    probe_errors: IntCounterVec,
    /// The error labels seen per spec, so [`Metrics::remove_spec`] can delete them.
    probe_error_labels: Mutex<HashMap<String, BTreeSet<&'static str>>>,
    /// Per-pair series and the per-spec counts derived from them.
    pub pairs: PairMetrics,
    /// `netreach_cni_agent_ready{cni_node,cni_pod}`.
    cni_agent_ready: IntGaugeVec,
    /// The CNI agents currently exported, so vanished ones can be deleted.
    cni_agents: Mutex<BTreeSet<(String, String)>>,
    /// `netreach_watch_restarts_total{resource}`.
    watch_restarts: IntCounterVec,
    /// `netreach_view_stale{resource}`.
    view_stale: IntGaugeVec,
    /// `netreach_policy_change_to_effect_seconds`.
    policy_change_to_effect: Histogram,
}

impl Metrics {
    /// Creates every metric and registers it in `registry`, with `netreach_build_info` set.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let probes = IntCounterVec::new(
            opts(
                "probes_total",
                "Probes run, by ProbeSpec, protocol and observed outcome.",
            ),
            &["spec", "protocol", "outcome"],
        )?;
        let probe_duration = HistogramVec::new(
            HistogramOpts::new(
                "probe_duration_seconds",
                "Time from the first packet of a probe to its outcome (the timeout when nothing came back).",
            )
            .namespace(NAMESPACE)
            .buckets(PROBE_DURATION_BUCKETS.to_vec()),
            &["spec", "protocol"],
        )?;
        let probe_errors = IntCounterVec::new(
            opts(
                "probe_errors_total",
                "Probes that could not run at all, by their not_probed reason (netns_not_found, agent_overloaded, ...).",
            ),
            &["spec", "error"],
        )?;
        let pairs = PairMetrics::default();
        let cni_agent_ready = IntGaugeVec::new(
            opts(
                "cni_agent_ready",
                "1 when the CNI agent pod on a node is ready, 0 when it is not.",
            ),
            &["cni_node", "cni_pod"],
        )?;
        let watch_restarts = IntCounterVec::new(
            opts(
                "watch_restarts_total",
                "Times a Kubernetes watch ended and was restarted, by resource.",
            ),
            &["resource"],
        )?;
        let view_stale = IntGaugeVec::new(
            opts(
                "view_stale",
                "1 while the watch of a resource has been failing for longer than --view-stale-after: the agent's view of it may miss changes, and predictions are held.",
            ),
            &["resource"],
        )?;
        let policy_change_to_effect = Histogram::with_opts(
            HistogramOpts::new(
                "policy_change_to_effect_seconds",
                "Time from a NetworkPolicy, namespace-label or pod-label change to the first probe that observed its effect.",
            )
            .namespace(NAMESPACE)
            .buckets(CHANGE_TO_EFFECT_BUCKETS.to_vec()),
        )?;
        let build_info = IntGaugeVec::new(
            opts("build_info", "Always 1; the labels name the running build."),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);

        registry.register(Box::new(probes.clone()))?;
        registry.register(Box::new(probe_duration.clone()))?;
        registry.register(Box::new(probe_errors.clone()))?;
        registry.register(Box::new(cni_agent_ready.clone()))?;
        registry.register(Box::new(watch_restarts.clone()))?;
        registry.register(Box::new(view_stale.clone()))?;
        registry.register(Box::new(policy_change_to_effect.clone()))?;
        registry.register(Box::new(build_info))?;

        Ok(Self {
            probes,
            probe_duration,
            probe_errors,
            probe_error_labels: Mutex::default(),
            pairs,
            cni_agent_ready,
            cni_agents: Mutex::default(),
            watch_restarts,
            view_stale,
            policy_change_to_effect,
        })
    }

    /// Counts one probe of `spec` (`namespace/name`) and observes its latency.
    pub fn observe_probe(
        &self,
        spec: &str,
        protocol: ProtocolLabel,
        outcome: Outcome,
        latency: Duration,
    ) {
        self.probes
            .with_label_values(&[spec, protocol.as_str(), outcome.as_str()])
            .inc();
        self.probe_duration
            .with_label_values(&[spec, protocol.as_str()])
            .observe(latency.as_secs_f64());
    }

    /// One attempt to probe a pair of `spec`: a probe that ran is counted by outcome with its
    /// latency; one that could not run only in `netreach_probe_errors_total` by its reason.
    pub fn observe_attempt(
        &self,
        spec: &str,
        protocol: ProtocolLabel,
        outcome: Outcome,
        not_probed: Option<NotProbedReason>,
        latency: Duration,
    ) {
        match (outcome, not_probed) {
            (Outcome::NotProbed, reason) => {
                let reason = reason.unwrap_or(NotProbedReason::ProbeError);
                self.record_probe_error(spec, reason.as_str());
            }
            (outcome, _) => self.observe_probe(spec, protocol, outcome, latency),
        }
    }

    /// Counts a probe of `spec` that could not run; `error` is a bounded code (a
    /// [`NotProbedReason`]).
    pub fn record_probe_error(&self, spec: &str, error: &'static str) {
        self.probe_errors.with_label_values(&[spec, error]).inc();
        let mut seen = self.probe_error_labels.lock();
        if !seen.get(spec).is_some_and(|labels| labels.contains(error)) {
            seen.entry(spec.to_string()).or_default().insert(error);
        }
    }

    /// Deletes every series of a ProbeSpec that no longer exists: its probe counters and
    /// histograms, its errors and all of its pairs.
    pub fn remove_spec(&self, spec: &str) {
        for protocol in ProtocolLabel::ALL {
            // Absent series are not an error worth reporting: the spec may never have probed.
            let _ = self
                .probe_duration
                .remove_label_values(&[spec, protocol.as_str()]);
            for outcome in Outcome::ALL {
                let _ =
                    self.probes
                        .remove_label_values(&[spec, protocol.as_str(), outcome.as_str()]);
            }
        }
        if let Some(errors) = self.probe_error_labels.lock().remove(spec) {
            for error in errors {
                let _ = self.probe_errors.remove_label_values(&[spec, error]);
            }
        }
        self.pairs.retain(|key| key.spec != spec);
    }

    /// Replaces the exported CNI agents with `agents`: agents that are gone lose their series.
    pub fn set_cni_agents(&self, agents: impl IntoIterator<Item = CniAgentState>) {
        let mut exported = self.cni_agents.lock();
        let mut current = BTreeSet::new();
        for agent in agents {
            self.cni_agent_ready
                .with_label_values(&[agent.node.as_str(), agent.pod.as_str()])
                .set(i64::from(agent.ready));
            current.insert((agent.node, agent.pod));
        }
        for (node, pod) in exported.difference(&current) {
            let _ = self
                .cni_agent_ready
                .remove_label_values(&[node.as_str(), pod.as_str()]);
        }
        *exported = current;
    }

    /// Starts `netreach_watch_restarts_total` at 0 for each watched resource, so a first
    /// restart shows as an increase.
    pub fn init_watch_restarts(&self, resources: &[&'static str]) {
        for resource in resources {
            self.watch_restarts.with_label_values(&[*resource]);
            self.view_stale.with_label_values(&[*resource]).set(0);
        }
    }

    /// Sets `netreach_view_stale{resource}`.
    pub fn set_view_stale(&self, resource: &str, stale: bool) {
        self.view_stale
            .with_label_values(&[resource])
            .set(i64::from(stale));
    }

    /// Counts a restart of the watch on `resource` (`pods`, `networkpolicies`, ...).
    pub fn record_watch_restart(&self, resource: &'static str) {
        self.watch_restarts.with_label_values(&[resource]).inc();
    }

    /// Observes the time from a cluster change to the first probe that reflected it.
    pub fn observe_policy_change_to_effect(&self, elapsed: Duration) {
        self.policy_change_to_effect.observe(elapsed.as_secs_f64());
    }
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace(NAMESPACE)
}

// === impl IndexCollector ===

/// `netreach_index_objects{kind}`: the index sizes, read under the index's read lock when
/// Prometheus scrapes, so they are never stale and cost nothing between scrapes.
#[derive(Debug)]
pub struct IndexCollector {
    index: Arc<RwLock<Index>>,
    /// Not registered itself: a scratch vector that renders the family on each collect.
    objects: IntGaugeVec,
}

impl IndexCollector {
    /// Registers a collector over `index` in `registry`.
    pub fn register(registry: &Registry, index: Arc<RwLock<Index>>) -> prometheus::Result<()> {
        let objects = IntGaugeVec::new(
            opts(
                "index_objects",
                "Objects in the agent's cluster index, by kind (read at scrape time).",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(Self { index, objects }))
    }
}

impl Collector for IndexCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.objects.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let counts = self.index.read().counts();
        for (kind, count) in [
            ("namespaces", counts.namespaces),
            ("nodes", counts.nodes),
            ("pods", counts.pods),
            ("networkpolicies", counts.policies),
        ] {
            self.objects
                .with_label_values(&[kind])
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        self.objects.collect()
    }
}

#[cfg(test)]
mod tests;
