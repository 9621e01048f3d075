//! netreach API types: the `ProbeSpec`, `ClusterProbeSpec` and `ProbeRequest` custom resources
//! (group `netreach.dev`, version `v1alpha1`; ClusterProbeSpec is cluster-scoped).
//!
//! This crate holds types only and does no I/O. Objects flow through it like this:
//!
//! ```text
//! YAML / the apiserver ──serde──> ProbeSpec, ClusterProbeSpec, ProbeRequest ──validate()──> the agent
//!                                         │
//!                                   crds_yaml() ──> `netreach crd`, charts/netreach/crds/
//! ```
//!
//! - [`probe_spec`]: `ProbeSpec`, a continuous assertion that paths stay open (`expect: Allow`)
//!   or closed (`expect: Deny`), with counts by verdict and the last failing pairs in status.
//! - [`cluster_probe_spec`]: `ClusterProbeSpec`, the same assertion cluster-wide: its sources
//!   may be in any namespace, where a ProbeSpec's are narrowed to its own.
//! - [`probe_request`]: `ProbeRequest`, one on-demand probe whose result lands in status.
//! - [`port`], [`verdict`], [`duration`]: the vocabulary both share.
//! - [`validation`]: the field-path errors of `validate()`, for objects that never met the
//!   CRD schema (snapshot files, an outdated CRD).
//! - [`crd`]: the generated CRDs; a test fails when the committed YAML drifts from them.
#![forbid(unsafe_code)]

#[macro_use]
mod spec_kind;

pub mod address;
pub mod cluster_probe_spec;
pub mod crd;
pub mod duration;
pub mod port;
pub mod probe_request;
pub mod probe_spec;
mod schema;
pub mod validation;
pub mod verdict;

#[cfg(test)]
mod test_support;

pub use address::{refused_target, refused_target_message};
pub use cluster_probe_spec::{ClusterProbeSpec, ClusterProbeSpecSpec};
pub use crd::{crds, crds_yaml};
pub use duration::{DurationError, format_duration, parse_duration};
pub use port::{PortSpec, Protocol};
pub use probe_request::{
    DEFAULT_TTL_SECONDS_AFTER_FINISHED, MAX_TTL_SECONDS_AFTER_FINISHED, PodRef, ProbeRequest,
    ProbeRequestPhase, ProbeRequestSpec, ProbeRequestStatus, RequestSource, RequestTarget,
    RequestTargetKind,
};
pub use probe_spec::{
    Expectation, FailingPair, MAX_RECENT_CHANGES, NodeContribution, ProbeSource, ProbeSpec,
    ProbeSpecSpec, ProbeSpecStatus, ProbeTarget, ServiceRef, TargetKind, VerdictChange,
    VerdictCounts,
};
pub use validation::{FieldError, ValidationErrors};
pub use verdict::{Direction, PairVerdict};
