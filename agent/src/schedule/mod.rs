//! Scheduling: which pairs this node probes, and when. Pure: no I/O, no clocks (every `now`
//! is a parameter), deterministic.
//!
//! ```text
//! Index + Spec + NODE_NAME ──plan()──> Plan { pairs of this node, skipped counts, narrowed }
//!                                              │ sync()
//!                                              v
//!              Timetable ──ready(now, limit)──> probe ──complete(id, now)
//!                  ^                                  └─record_observation(id, now, changed)
//!                  │ mark_due_now(ids, change_time)          └─> Some(change-to-effect time)
//! watch event ──affected_pairs(index, change)  (+ re-plan: sync() reports added pairs)
//! ```
//!
//! - [`source_namespaces`]: where a spec's sources may be. A ProbeSpec probes only from its
//!   own namespace: a `from.namespaceSelector` that reaches others is narrowed, and what it
//!   left out is reported ([`Narrowed`], the `SourcesNarrowed` condition). A ClusterProbeSpec
//!   is not narrowed.
//! - [`plan`]: sources x destinations of a spec (either kind), pods that cannot take part skipped and
//!   counted, `maxPairs` applied by stable cluster-wide sampling (every node ranks all pairs
//!   by the same hash and keeps the same lowest `maxPairs`, then probes its own share).
//! - [`Timetable`]: per-pair grid with a phase spread and ±10% deterministic jitter, a global
//!   concurrency limit, at least 1 s between probes of one (source pod, destination) path.
//! - [`affected_pairs`]: the pairs a NetworkPolicy, namespace-label or pod-label change can
//!   alter, to re-probe at once.
//! - [`host_targets`]: at probe time, the addresses a host pair's name resolved to, as the
//!   pod or IP targets it probes (at most [`MAX_HOST_ADDRESSES`]).
//!
//! On a change the caller: records `change_time`, computes `affected_pairs` against its
//! pairs, re-plans the specs and `sync`s (new pairs in `added`), then calls `mark_due_now`
//! with both lists.

#[cfg(test)]
pub(crate) mod fixtures;
mod host;
mod plan;
mod reprobe;
mod request;
mod sources;
mod timetable;

pub use host::{HostTargets, MAX_HOST_ADDRESSES, host_targets};
pub use plan::{Plan, SkipCounts, SkipReason, Skipped, eligibility, plan};
pub use reprobe::{ClusterChange, affected_pairs};
pub use request::{RequestError, ResolvedRequest, not_probeable, resolve_request};
pub use sources::{Narrowed, SourceNamespaces, source_namespaces};
pub use timetable::{FirstProbe, SyncChanges, Timetable, TimetableConfig};

use crate::cluster::SpecRef;
use crate::cluster::selector::SelectorError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a ProbeSpec or ClusterProbeSpec cannot be planned. Specs that passed the CRD schema
/// (or `ProbeSpec::validate`) never fail here.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("{} {spec}: {field}: {source}", spec.kind())]
    InvalidSelector {
        spec: SpecRef,
        field: String,
        #[source]
        source: SelectorError,
    },
    #[error(
        "{} {spec}: spec.to[{index}] does not set exactly one valid target kind",
        spec.kind()
    )]
    InvalidTarget { spec: SpecRef, index: usize },
    #[error(
        "{} {spec}: spec.to[{index}].service.namespace is required: a cluster-scoped spec has no namespace of its own",
        spec.kind()
    )]
    ServiceNamespace { spec: SpecRef, index: usize },
    #[error(
        "{} {spec}: {field}: {value} is not a port number in 1..65535 (named ports need a pod target)",
        spec.kind()
    )]
    InvalidPort {
        spec: SpecRef,
        field: String,
        value: String,
    },
    #[error("{} {spec}: spec.to[{index}].ip: {message}", spec.kind())]
    RefusedTarget {
        spec: SpecRef,
        index: usize,
        message: String,
    },
    #[error("{} {spec}: {field}: {source}", spec.kind())]
    InvalidDuration {
        spec: SpecRef,
        field: &'static str,
        #[source]
        source: probe_spec::DurationError,
    },
}

impl Error {
    /// A bounded label for failure counters.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::InvalidSelector { .. } => "invalid_selector",
            Error::InvalidTarget { .. } | Error::ServiceNamespace { .. } => "invalid_target",
            Error::InvalidPort { .. } => "invalid_port",
            Error::InvalidDuration { .. } => "invalid_duration",
            Error::RefusedTarget { .. } => "refused_target",
        }
    }
}
