//! Per-pair series and the per-spec verdict counts derived from them.
//!
//! [`PairMetrics`] keeps one table row per pair (its labels and current [`PairState`]) and a
//! custom [`Collector`] renders the rows when Prometheus scrapes:
//!
//! ```text
//! set(key, state) ─┐                      ┌─> netreach_pair_up              {PAIR_LABELS}
//! remove(key) ─────┼─> table (RwLock) ──collect()─> netreach_pair_policy_allowed
//! retain(keep) ────┘    one row per pair  ├─> netreach_pair_expectation_met
//!                                         ├─> netreach_pair_verdict  {PAIR_LABELS + VERDICT_LABELS}
//!                                         └─> netreach_spec_pairs    {spec, verdict}
//! ```
//!
//! Which rows get per-pair series is the [`PairSeries`] mode (`--pair-metrics`): by default
//! only the exceptions (pairs that are not `ok` or do not meet their expectation), so 10,000
//! healthy pairs cost no per-pair series at all; `netreach_spec_pairs` always counts every row.
//!
//! A series exists exactly while its row does, so a verdict change replaces the pair's
//! `netreach_pair_verdict` series, a removed pair loses all four of its series, and the spec
//! counts always add up to the rows: nothing has to remember which label values to delete.
//! Rows are kept in the order the registry sorts series in (label values in label-name order),
//! which keeps a scrape of 10,000 pairs cheap.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering as AtomicOrdering};

use parking_lot::RwLock;
use probe_spec::{Direction, PairVerdict};
use prometheus::core::{Collector, Desc, Describer};
use prometheus::proto::{Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Opts, Registry};

use super::{NAMESPACE, ProtocolLabel};
use crate::pair::{PairReason, PairReport, StrPool};

/// The labels that identify a pair.
pub const PAIR_LABELS: [&str; 6] = ["spec", "src", "dst", "host", "port", "protocol"];
/// The labels `netreach_pair_verdict` adds to [`PAIR_LABELS`].
pub const VERDICT_LABELS: [&str; 4] = ["verdict", "reason", "direction", "policy"];

/// A pair as its metric labels name it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PairKey {
    /// The spec: `namespace/name` for a ProbeSpec, `name` for a ClusterProbeSpec.
    pub spec: String,
    /// The source pod, `namespace/name`.
    pub src: String,
    /// The destination: a pod's `namespace/name`, an IP address, a host name or a DNS name.
    pub dst: String,
    /// The host name of a host target, whose resolved addresses are the `dst`s of its series
    /// (it tells them apart from a pod target's series with the same `dst`).
    pub host: Option<String>,
    /// The destination port; `None` for DNS lookups.
    pub port: Option<u16>,
    pub protocol: ProtocolLabel,
}

impl PairKey {
    /// The labels of a report's pair; `None` for on-demand probes, which have no series.
    pub fn of(report: &PairReport) -> Option<Self> {
        Some(Self {
            spec: report.spec.as_ref()?.to_string(),
            src: report.from.to_string(),
            dst: report.destination().to_string(),
            host: report.host.as_ref().map(ToString::to_string),
            port: report.port(),
            protocol: report
                .protocol()
                .map_or(ProtocolLabel::Dns, ProtocolLabel::from),
        })
    }
}

/// Which pairs get per-pair series (`--pair-metrics`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PairSeries {
    /// Every pair: four series each.
    All,
    /// Only pairs that are not `ok` or do not meet their expectation (the ones an alert or a
    /// person looks at); the spec counts cover the rest.
    #[default]
    Exceptions,
    /// None: only the per-spec counts and the probe counters and histograms.
    None,
}

impl PairSeries {
    pub const NAMES: [&str; 3] = ["all", "exceptions", "none"];

    pub fn as_str(self) -> &'static str {
        match self {
            PairSeries::All => "all",
            PairSeries::Exceptions => "exceptions",
            PairSeries::None => "none",
        }
    }

    /// Whether a pair in `state` gets its series.
    pub fn includes(self, state: &PairState) -> bool {
        self.shows(state.verdict, state.expectation_met)
    }

    fn shows(self, verdict: PairVerdict, expectation_met: Option<bool>) -> bool {
        match self {
            PairSeries::All => true,
            PairSeries::Exceptions => verdict != PairVerdict::Ok || expectation_met == Some(false),
            PairSeries::None => false,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            PairSeries::All => 0,
            PairSeries::Exceptions => 1,
            PairSeries::None => 2,
        }
    }

    fn from_u8(value: u8) -> Self {
        match value {
            0 => PairSeries::All,
            2 => PairSeries::None,
            _ => PairSeries::Exceptions,
        }
    }
}

impl fmt::Display for PairSeries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PairSeries {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "all" => Ok(PairSeries::All),
            "exceptions" => Ok(PairSeries::Exceptions),
            "none" => Ok(PairSeries::None),
            other => Err(format!(
                "{other:?} is not one of {}",
                PairSeries::NAMES.join(", ")
            )),
        }
    }
}

/// What a pair currently looks like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairState {
    pub verdict: PairVerdict,
    /// The bounded reason code of the verdict (`default_deny`, `cni_unhealthy`, ...); `None`
    /// for a clean `ok` (an empty label).
    pub reason: Option<PairReason>,
    /// The side whose policy decided, when a policy did.
    pub direction: Option<Direction>,
    /// The deciding policies, `namespace/name`, comma-separated; empty when none.
    pub policy: String,
    /// The policy set allows the flow.
    pub policy_allowed: bool,
    /// The verdict meets the spec's `expect`; `None` for `not_probed` and `inconclusive`,
    /// which decide nothing (no `netreach_pair_expectation_met` series then).
    pub expectation_met: Option<bool>,
}

impl PairState {
    /// Joins policy names into the `policy` label value: sorted, deduplicated, comma-separated.
    pub fn policy_label<P: fmt::Display>(policies: &[P]) -> String {
        let mut names: Vec<String> = policies.iter().map(ToString::to_string).collect();
        names.sort_unstable();
        names.dedup();
        names.join(",")
    }
}

impl From<&PairReport> for PairState {
    fn from(report: &PairReport) -> Self {
        Self {
            verdict: report.verdict,
            reason: report.reason,
            direction: report.direction,
            policy: Self::policy_label(&report.policies),
            policy_allowed: report.policy_allowed,
            // On-demand probes have no series; a spec pair without a decision has none either.
            expectation_met: if report.spec.is_some() {
                report.meets_expectation
            } else {
                Some(true)
            },
        }
    }
}

// === impl PairMetrics ===

/// The series of the pairs this node probes. Cloning shares the table.
#[derive(Clone, Debug)]
pub struct PairMetrics {
    table: Arc<RwLock<Table>>,
    series: Arc<AtomicU8>,
}

impl Default for PairMetrics {
    fn default() -> Self {
        Self {
            table: Arc::default(),
            series: Arc::new(AtomicU8::new(PairSeries::default().to_u8())),
        }
    }
}

impl PairMetrics {
    pub(super) fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(PairCollector::new(
            self.table.clone(),
            self.series.clone(),
        )?))
    }

    /// Which pairs get per-pair series from the next scrape on.
    pub fn set_series(&self, series: PairSeries) {
        self.series.store(series.to_u8(), AtomicOrdering::Relaxed);
    }

    pub fn series(&self) -> PairSeries {
        PairSeries::from_u8(self.series.load(AtomicOrdering::Relaxed))
    }

    /// Sets the pair's current state; a changed verdict, reason, direction or policy replaces
    /// its `netreach_pair_verdict` series.
    pub fn set(&self, key: &PairKey, state: &PairState) {
        let mut table = self.table.write();
        let row = table.row(key);
        let state = RowState {
            verdict: state.verdict,
            reason: state.reason,
            direction: state.direction,
            policy: table.labels.get(&state.policy),
            policy_allowed: state.policy_allowed,
            expectation_met: state.expectation_met,
        };
        table.rows.insert(row, state);
    }

    /// Deletes every series of a pair; `false` when the pair was not there.
    pub fn remove(&self, key: &PairKey) -> bool {
        let mut table = self.table.write();
        let row = table.row(key);
        let removed = table.rows.remove(&row).is_some();
        drop(row);
        table.forgot_some();
        removed
    }

    /// Keeps the pairs for which `keep` holds and deletes every series of the others.
    pub fn retain(&self, keep: impl Fn(&PairKey) -> bool) {
        let mut table = self.table.write();
        table.rows.retain(|row, _| keep(&row.pair_key()));
        table.labels.prune();
    }

    /// How many pairs have series.
    pub fn len(&self) -> usize {
        self.table.read().rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One row per pair, its label values held once each in a pool (a source pod's name, the
/// spec, a port are the same string in every row that has them).
#[derive(Debug, Default)]
struct Table {
    rows: BTreeMap<RowKey, RowState>,
    labels: StrPool,
    /// Rows removed since the pool last let go of unused values.
    removed: usize,
}

impl Table {
    /// The row key of `key`, its values from the pool.
    fn row(&mut self, key: &PairKey) -> RowKey {
        let port = key.port.map(|port| port.to_string()).unwrap_or_default();
        RowKey {
            dst: self.labels.get(&key.dst),
            host: self.labels.get(key.host.as_deref().unwrap_or_default()),
            port: self.labels.get(&port),
            protocol: key.protocol,
            spec: self.labels.get(&key.spec),
            src: self.labels.get(&key.src),
        }
    }

    /// A row went: once as many went as remain, the pool drops the values no row holds.
    fn forgot_some(&mut self) {
        self.removed += 1;
        if self.removed > self.rows.len() {
            self.labels.prune();
            self.removed = 0;
        }
    }
}

/// A pair's label values, ordered like the registry orders series: by value, in label-name
/// order (`dst`, `host`, `port`, `protocol`, `spec`, `src`).
#[derive(Clone, Debug, PartialEq, Eq)]
struct RowKey {
    dst: Arc<str>,
    /// Empty unless the pair is a host target's.
    host: Arc<str>,
    /// The port as its label value (empty for DNS), so rows sort like label values do.
    port: Arc<str>,
    protocol: ProtocolLabel,
    spec: Arc<str>,
    src: Arc<str>,
}

impl RowKey {
    fn pair_key(&self) -> PairKey {
        PairKey {
            spec: self.spec.to_string(),
            src: self.src.to_string(),
            dst: self.dst.to_string(),
            host: Some(self.host.to_string()).filter(|host| !host.is_empty()),
            port: self.port.parse().ok(),
            protocol: self.protocol,
        }
    }

    fn sort_tuple(&self) -> (&str, &str, &str, &str, &str, &str) {
        (
            &self.dst,
            &self.host,
            &self.port,
            self.protocol.as_str(),
            &self.spec,
            &self.src,
        )
    }
}

impl Ord for RowKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.sort_tuple().cmp(&other.sort_tuple())
    }
}

impl PartialOrd for RowKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A [`PairState`] in the table, its policy label from the pool.
#[derive(Clone, Debug)]
struct RowState {
    verdict: PairVerdict,
    reason: Option<PairReason>,
    direction: Option<Direction>,
    policy: Arc<str>,
    policy_allowed: bool,
    expectation_met: Option<bool>,
}

// === impl PairCollector ===

/// Renders the table at scrape time.
#[derive(Debug)]
struct PairCollector {
    table: Arc<RwLock<Table>>,
    series: Arc<AtomicU8>,
    up: Desc,
    policy_allowed: Desc,
    expectation_met: Desc,
    verdict: Desc,
    spec_pairs: Desc,
}

impl PairCollector {
    fn new(table: Arc<RwLock<Table>>, series: Arc<AtomicU8>) -> prometheus::Result<Self> {
        let desc = |name: &str, help: &str, labels: &[&str]| {
            Opts::new(name, help)
                .namespace(NAMESPACE)
                .variable_labels(labels.iter().map(|label| label.to_string()).collect())
                .describe()
        };
        let verdict_labels: Vec<&str> =
            PAIR_LABELS.iter().chain(&VERDICT_LABELS).copied().collect();
        Ok(Self {
            table,
            series,
            up: desc(
                "pair_up",
                "1 when the last probe of the pair reached the destination (refused counts as reached), 0 when not; absent while the pair is not_probed or inconclusive.",
                &PAIR_LABELS,
            )?,
            policy_allowed: desc(
                "pair_policy_allowed",
                "1 when the live NetworkPolicy set allows the pair, 0 when it denies it.",
                &PAIR_LABELS,
            )?,
            expectation_met: desc(
                "pair_expectation_met",
                "1 when the pair's verdict meets its ProbeSpec's expect, 0 when it does not; absent while the pair is not_probed or inconclusive.",
                &PAIR_LABELS,
            )?,
            verdict: desc(
                "pair_verdict",
                "1 for the pair's current verdict, with its reason, deciding direction and policies; one series per pair.",
                &verdict_labels,
            )?,
            spec_pairs: desc(
                "spec_pairs",
                "Pairs of a spec this agent probes, by current verdict (every pair, whatever --pair-metrics).",
                &["spec", "verdict"],
            )?,
        })
    }
}

impl Collector for PairCollector {
    fn desc(&self) -> Vec<&Desc> {
        vec![
            &self.up,
            &self.policy_allowed,
            &self.expectation_met,
            &self.verdict,
            &self.spec_pairs,
        ]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let table = &self.table.read().rows;
        let series = PairSeries::from_u8(self.series.load(AtomicOrdering::Relaxed));
        let mut up = Vec::with_capacity(table.len());
        let mut policy_allowed = Vec::with_capacity(table.len());
        let mut expectation_met = Vec::with_capacity(table.len());
        let mut verdict = Vec::with_capacity(table.len());
        let mut spec_counts: HashMap<&str, [u32; PairVerdict::ALL.len()]> = HashMap::new();

        for (row, state) in table.iter() {
            let counts = spec_counts.entry(&row.spec).or_default();
            counts[verdict_slot(state.verdict)] += 1;
            if !series.shows(state.verdict, state.expectation_met) {
                continue;
            }
            // Label pairs in label-name order, as prometheus' own vectors emit them.
            let pair_labels = vec![
                label("dst", &row.dst),
                label("host", &row.host),
                label("port", &row.port),
                label("protocol", row.protocol.as_str()),
                label("spec", &row.spec),
                label("src", &row.src),
            ];
            // Only what was observed gets a reachability or expectation series.
            if state.verdict.is_decided() {
                up.push(gauge(pair_labels.clone(), state.verdict.reachable()));
            }
            if let Some(met) = state.expectation_met {
                expectation_met.push(gauge(pair_labels.clone(), met));
            }
            policy_allowed.push(gauge(pair_labels, state.policy_allowed));
            verdict.push(gauge(
                vec![
                    label("direction", state.direction.map_or("", Direction::as_str)),
                    label("dst", &row.dst),
                    label("host", &row.host),
                    label("policy", &state.policy),
                    label("port", &row.port),
                    label("protocol", row.protocol.as_str()),
                    label("reason", state.reason.map_or("", PairReason::as_str)),
                    label("spec", &row.spec),
                    label("src", &row.src),
                    label("verdict", state.verdict.as_str()),
                ],
                true,
            ));
        }

        let mut spec_pairs = Vec::with_capacity(spec_counts.len() * PairVerdict::ALL.len());
        for (spec, counts) in spec_counts {
            for verdict in PairVerdict::ALL {
                let mut metric = Metric::from_label(vec![
                    label("spec", spec),
                    label("verdict", verdict.as_str()),
                ]);
                let mut value = Gauge::default();
                value.set_value(f64::from(counts[verdict_slot(verdict)]));
                metric.set_gauge(value);
                spec_pairs.push(metric);
            }
        }

        vec![
            family(&self.up, up),
            family(&self.policy_allowed, policy_allowed),
            family(&self.expectation_met, expectation_met),
            family(&self.verdict, verdict),
            family(&self.spec_pairs, spec_pairs),
        ]
    }
}

fn verdict_slot(verdict: PairVerdict) -> usize {
    match verdict {
        PairVerdict::Ok => 0,
        PairVerdict::BlockedByPolicy => 1,
        PairVerdict::PolicyNotEnforced => 2,
        PairVerdict::UnexpectedBlock => 3,
        PairVerdict::NotProbed => 4,
        PairVerdict::Inconclusive => 5,
    }
}

fn label(name: &str, value: &str) -> LabelPair {
    let mut pair = LabelPair::default();
    pair.set_name(name.to_string());
    pair.set_value(value.to_string());
    pair
}

/// A 1/0 gauge sample.
fn gauge(labels: Vec<LabelPair>, value: bool) -> Metric {
    let mut metric = Metric::from_label(labels);
    let mut sample = Gauge::default();
    sample.set_value(if value { 1.0 } else { 0.0 });
    metric.set_gauge(sample);
    metric
}

fn family(desc: &Desc, metrics: Vec<Metric>) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(desc.fq_name.clone());
    family.set_help(desc.help.clone());
    family.set_field_type(MetricType::GAUGE);
    family.set_metric(metrics);
    family
}
