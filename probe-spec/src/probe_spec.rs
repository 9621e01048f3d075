//! The `ProbeSpec` custom resource: a continuous assertion about network paths.
//!
//! A ProbeSpec names source pods (`from`), a list of targets (`to`) and the intent (`expect`).
//! Every agent probes the pairs whose source pod runs on its node, every `interval`, and writes
//! the counts by verdict and the last failing pairs to `status`.
//!
//! The schema rejects what the agent cannot run; the rules that JSON Schema cannot express are
//! CEL rules (`x-kubernetes-validations`), and [`ProbeSpecSpec::validate`] repeats every check
//! for objects that did not pass through the apiserver. The interval minimum works in two
//! steps: a `pattern` admits only the grammar of [`crate::parse_duration`], then a CEL rule
//! compares `duration(self)` with `duration('1s')`; the rule passes strings that miss the
//! pattern, so a malformed duration gets the pattern's error rather than a CEL evaluation error.
//! The `isIP()` rule on `ip` needs Kubernetes 1.31 or later.
//!
//! Submodules: `target` holds the targets (`to`), `status` what the agents report.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod status;
mod target;

pub use status::{
    FailingPair, MAX_RECENT_CHANGES, NodeContribution, ProbeSpecStatus, VerdictChange,
    VerdictCounts,
};
pub use target::{ProbeTarget, ServiceRef, TargetKind};

use crate::{
    duration::{DURATION_MAX_LENGTH, DURATION_PATTERN, DurationError, parse_duration},
    validation::{Problems, ValidationErrors, check_label_selector},
    verdict::PairVerdict,
};

/// The shortest probe interval.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// The most targets one ProbeSpec may list.
pub const MAX_TARGETS: usize = 64;
/// The most ports one target may list.
pub const MAX_PORTS_PER_TARGET: usize = 32;
/// The largest `maxPairs`.
pub const MAX_PAIRS_LIMIT: u32 = 10_000;
/// The most entries in `status.lastFailingPairs`.
pub const MAX_LAST_FAILING_PAIRS: usize = 20;
/// The most agents' entries in `status.nodes`, whatever the node count (failing ones first).
pub const MAX_NODE_ENTRIES: usize = 32;
/// Condition type: the agents have loaded the spec and probe its pairs.
pub const CONDITION_READY: &str = "Ready";
/// Condition type: every probed pair meets `expect`.
pub const CONDITION_SATISFIED: &str = "Satisfied";
/// Condition type: `from.namespaceSelector` of a (namespaced) ProbeSpec reaches other
/// namespaces, which are ignored: a ProbeSpec probes only from its own namespace.
pub const CONDITION_SOURCES_NARROWED: &str = "SourcesNarrowed";

probe_spec_kind! {
/// The desired state of a ProbeSpec: which paths to probe, how often, and what to expect.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
kube(
    kind = "ProbeSpec",
    namespaced,
    shortname = "nrps",
    doc = "A continuous assertion about network paths: netreach probes them from inside the source pods and reports whether each meets `expect`."
)
#[x_kube(validation = Rule::new("!self.timeout.matches('^([0-9]+(ms|s|m|h))+$') || !self.interval.matches('^([0-9]+(ms|s|m|h))+$') || duration(self.timeout) <= duration(self.interval)")
    .message("timeout must not be longer than interval")
    .field_path(".timeout"))]
#[serde(rename_all = "camelCase")]
pub struct ProbeSpecSpec {
    /// The source pods; probes run inside their network namespaces.
    pub from: ProbeSource,
    /// The destinations to probe from every source pod.
    #[schemars(length(min = 1, max = MAX_TARGETS))]
    pub to: Vec<ProbeTarget>,
    /// The intent: Allow (default) alerts when a pair is blocked, Deny alerts when a pair is reachable.
    #[serde(default)]
    pub expect: Expectation,
    /// How often each pair is probed, e.g. "30s", "1m" or "1m30s" (units ms, s, m, h); at least 1s.
    #[serde(default = "default_interval")]
    #[schemars(length(max = DURATION_MAX_LENGTH), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = Rule::new("!self.matches('^([0-9]+(ms|s|m|h))+$') || duration(self) >= duration('1s')").message("interval must be at least 1s"))]
    pub interval: String,
    /// How long one probe waits for an answer, e.g. "2s" (default) or "500ms"; longer than 0s and not longer than interval.
    #[serde(default = "default_timeout")]
    #[schemars(length(max = DURATION_MAX_LENGTH), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = Rule::new("!self.matches('^([0-9]+(ms|s|m|h))+$') || duration(self) > duration('0s')").message("timeout must be longer than 0s"))]
    pub timeout: String,
    /// The most (source, destination, port) pairs to probe, sampled stably across nodes (default 100).
    #[serde(default = "default_max_pairs")]
    #[schemars(range(min = 1, max = MAX_PAIRS_LIMIT))]
    pub max_pairs: u32,
}
}

fn default_interval() -> String {
    "30s".into()
}

fn default_timeout() -> String {
    "2s".into()
}

fn default_max_pairs() -> u32 {
    100
}

/// The source pods of a ProbeSpec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbeSource {
    /// Selects the source pods; `{}` selects every pod.
    pub pod_selector: LabelSelector,
    /// Selects the namespaces of the source pods. A ProbeSpec probes only from its own namespace: absent means that namespace, and a selector that also reaches other namespaces is narrowed to it (condition SourcesNarrowed). A ClusterProbeSpec may select any namespace; there absent and `{}` mean every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
}

/// What a ProbeSpec expects of its pairs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Expectation {
    /// Every pair must be reachable; a blocked pair is a failure.
    #[default]
    Allow,
    /// Every pair must be blocked; a reachable pair is a failure.
    Deny,
}

impl Expectation {
    /// Whether a pair with this verdict meets the expectation; `None` when the verdict
    /// decides nothing (`not_probed`, `inconclusive`).
    pub fn is_met_by(self, verdict: PairVerdict) -> Option<bool> {
        if !verdict.is_decided() {
            return None;
        }
        Some(match self {
            // Part of the Service is open and part closed: neither intent holds.
            _ if verdict == PairVerdict::PartiallyBlocked => false,
            Expectation::Allow => verdict.reachable(),
            Expectation::Deny => !verdict.reachable(),
        })
    }
}

// === impl ProbeSpecSpec ===

impl ProbeSpec {
    /// Checks the spec; see [`ProbeSpecSpec::validate`].
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        self.spec.validate()
    }
}

impl ProbeSpecSpec {
    /// The probe interval.
    pub fn interval(&self) -> Result<Duration, DurationError> {
        parse_duration(&self.interval)
    }

    /// The timeout of one probe.
    pub fn timeout(&self) -> Result<Duration, DurationError> {
        parse_duration(&self.timeout)
    }

    /// Checks everything the CRD schema checks, plus label-selector syntax, and reports each
    /// problem with its field path (`spec.to[1].ports[0].port: 70000 is out of range 1..65535`).
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut problems = Problems::default();
        check_label_selector(
            &self.from.pod_selector,
            "spec.from.podSelector",
            &mut problems,
        );
        if let Some(selector) = &self.from.namespace_selector {
            check_label_selector(selector, "spec.from.namespaceSelector", &mut problems);
        }

        if self.to.is_empty() {
            problems.push("spec.to", "list at least one target");
        } else if self.to.len() > MAX_TARGETS {
            problems.push(
                "spec.to",
                format!(
                    "{} targets; at most {MAX_TARGETS} are allowed",
                    self.to.len()
                ),
            );
        }
        for (index, target) in self.to.iter().enumerate() {
            target.check(&format!("spec.to[{index}]"), &mut problems);
        }

        let interval = check_duration("spec.interval", &self.interval, &mut problems);
        if let Some(interval) = interval
            && interval < MIN_INTERVAL
        {
            problems.push(
                "spec.interval",
                format!("{:?} is shorter than the minimum 1s", self.interval),
            );
        }
        let timeout = check_duration("spec.timeout", &self.timeout, &mut problems);
        match (timeout, interval) {
            (Some(Duration::ZERO), _) => problems.push("spec.timeout", "must be longer than 0s"),
            (Some(timeout), Some(interval)) if timeout > interval => problems.push(
                "spec.timeout",
                format!(
                    "{:?} is longer than interval {:?}",
                    self.timeout, self.interval
                ),
            ),
            _ => {}
        }

        if !(1..=MAX_PAIRS_LIMIT).contains(&self.max_pairs) {
            problems.push(
                "spec.maxPairs",
                format!("{} is out of range 1..{MAX_PAIRS_LIMIT}", self.max_pairs),
            );
        }
        problems.into_result()
    }
}

/// Parses a duration field, recording a problem when it does not parse.
pub(crate) fn check_duration(path: &str, value: &str, problems: &mut Problems) -> Option<Duration> {
    parse_duration(value)
        .map_err(|error| problems.push(path, error.to_string()))
        .ok()
}

#[cfg(test)]
mod tests;
