//! Per-pair series and the per-spec verdict counts derived from them.
//!
//! [`PairMetrics`] keeps one table row per pair (its labels and current [`PairState`]) and
//! [`PairMetrics::encode_text`] writes the rows when Prometheus scrapes:
//!
//! ```text
//! set(key, state) ─┐                      ┌─> netreach_pair_up              {PAIR_LABELS}
//! remove(key) ─────┼─> table (RwLock) ──encode_text()─> netreach_pair_policy_allowed
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
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering as AtomicOrdering};

use parking_lot::RwLock;
use probe_spec::{Direction, PairVerdict};

use super::{NAMESPACE, ProtocolLabel};
use crate::pair::{PairReason, PairReport, StrPool};

/// The labels that identify a pair.
pub const PAIR_LABELS: [&str; 7] = ["spec", "src", "dst", "host", "port", "protocol", "service"];
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
    /// The destination port (a Service pair's: the Service port); `None` for DNS lookups.
    pub port: Option<u16>,
    pub protocol: ProtocolLabel,
    /// A Service pair's Service, `namespace/name` (its `dst` is `svc/namespace/name`).
    pub service: Option<String>,
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
            service: report.target.service().map(ToString::to_string),
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
            service: self.labels.get(key.service.as_deref().unwrap_or_default()),
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
    /// Empty unless the pair is a Service pair.
    service: Arc<str>,
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
            service: Some(self.service.to_string()).filter(|s| !s.is_empty()),
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

// === the text exposition ===

const HELP_UP: &str = "1 when the last probe of the pair reached the destination (refused counts as reached), 0 when not; absent while the pair is not_probed or inconclusive.";
const HELP_POLICY_ALLOWED: &str =
    "1 when the live NetworkPolicy set allows the pair, 0 when it denies it.";
const HELP_EXPECTATION_MET: &str = "1 when the pair's verdict meets its ProbeSpec's expect, 0 when it does not; absent while the pair is not_probed or inconclusive.";
const HELP_VERDICT: &str = "1 for the pair's current verdict, with its reason, deciding direction and policies; one series per pair.";
const HELP_SPEC_PAIRS: &str =
    "Pairs of a spec this agent probes, by current verdict (every pair, whatever --pair-metrics).";

impl PairMetrics {
    /// The pair families in the Prometheus text format, written straight from the table.
    ///
    /// Not a registry collector on purpose: a collector builds a protobuf `Metric` per series
    /// before the encoder runs, about 2.3 KB each, which made a scrape of 3,000 exception
    /// series an 8 MB spike (measured with heaptrack in `make bench-agent-rss`); this writes
    /// the same lines with no allocation per series. Families without samples are left out,
    /// as the registry leaves them out.
    pub fn encode_text(&self, out: &mut Vec<u8>) {
        let table = self.table.read();
        let series = self.series();
        let shown = || {
            table
                .rows
                .iter()
                .filter(move |(_, state)| series.shows(state.verdict, state.expectation_met))
        };
        write_family(
            out,
            "pair_up",
            HELP_UP,
            shown()
                .filter(|(_, state)| state.verdict.is_decided())
                .map(|(row, state)| (pair_labels(row), u64::from(state.verdict.reachable()))),
        );
        write_family(
            out,
            "pair_policy_allowed",
            HELP_POLICY_ALLOWED,
            shown().map(|(row, state)| (pair_labels(row), u64::from(state.policy_allowed))),
        );
        write_family(
            out,
            "pair_expectation_met",
            HELP_EXPECTATION_MET,
            shown().filter_map(|(row, state)| {
                Some((pair_labels(row), u64::from(state.expectation_met?)))
            }),
        );
        write_family(
            out,
            "pair_verdict",
            HELP_VERDICT,
            shown().map(|(row, state)| {
                let labels = [
                    ("direction", state.direction.map_or("", Direction::as_str)),
                    ("dst", &row.dst),
                    ("host", &row.host),
                    ("policy", &state.policy),
                    ("port", &row.port),
                    ("protocol", row.protocol.as_str()),
                    ("reason", state.reason.map_or("", PairReason::as_str)),
                    ("service", &row.service),
                    ("spec", &row.spec),
                    ("src", &row.src),
                    ("verdict", state.verdict.as_str()),
                ];
                (labels, 1)
            }),
        );
        let mut spec_counts: BTreeMap<&str, [u64; PairVerdict::ALL.len()]> = BTreeMap::new();
        for (row, state) in &table.rows {
            spec_counts.entry(&row.spec).or_default()[verdict_slot(state.verdict)] += 1;
        }
        write_family(
            out,
            "spec_pairs",
            HELP_SPEC_PAIRS,
            spec_counts.iter().flat_map(|(&spec, counts)| {
                PairVerdict::ALL.into_iter().map(move |verdict| {
                    (
                        [("spec", spec), ("verdict", verdict.as_str())],
                        counts[verdict_slot(verdict)],
                    )
                })
            }),
        );
    }
}

/// The labels of a pair's series, in label-name order.
fn pair_labels(row: &RowKey) -> [(&'static str, &str); 7] {
    [
        ("dst", &row.dst),
        ("host", &row.host),
        ("port", &row.port),
        ("protocol", row.protocol.as_str()),
        ("service", &row.service),
        ("spec", &row.spec),
        ("src", &row.src),
    ]
}

/// One gauge family: `# HELP`, `# TYPE`, then a line per sample; nothing without samples.
fn write_family<'a, const N: usize>(
    out: &mut Vec<u8>,
    name: &str,
    help: &str,
    samples: impl Iterator<Item = ([(&'static str, &'a str); N], u64)>,
) {
    let mut samples = samples.peekable();
    if samples.peek().is_none() {
        return;
    }
    out.extend_from_slice(b"# HELP ");
    out.extend_from_slice(NAMESPACE.as_bytes());
    out.push(b'_');
    out.extend_from_slice(name.as_bytes());
    out.push(b' ');
    escape(out, help, false);
    out.extend_from_slice(b"\n# TYPE ");
    out.extend_from_slice(NAMESPACE.as_bytes());
    out.push(b'_');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b" gauge\n");
    for (labels, value) in samples {
        out.extend_from_slice(NAMESPACE.as_bytes());
        out.push(b'_');
        out.extend_from_slice(name.as_bytes());
        for (i, (label, text)) in labels.iter().enumerate() {
            out.push(if i == 0 { b'{' } else { b',' });
            out.extend_from_slice(label.as_bytes());
            out.extend_from_slice(b"=\"");
            escape(out, text, true);
            out.push(b'"');
        }
        if N > 0 {
            out.push(b'}');
        }
        out.push(b' ');
        out.extend_from_slice(value.to_string().as_bytes());
        out.push(b'\n');
    }
}

/// The text format's escaping: backslash and newline, and in label values the double quote.
fn escape(out: &mut Vec<u8>, text: &str, quote: bool) {
    for byte in text.bytes() {
        match byte {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'"' if quote => out.extend_from_slice(b"\\\""),
            other => out.push(other),
        }
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
        PairVerdict::PartiallyBlocked => 6,
    }
}
