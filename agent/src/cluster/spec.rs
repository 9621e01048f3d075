//! The two kinds of probe spec as the agent plans them, converted at the edge.
//!
//! ```text
//! ProbeSpec (namespaced) ────────TryFrom──┐
//!                                         ├──> Spec { key: SpecRef, generation, spec: ProbeSpecSpec }
//! ClusterProbeSpec (cluster-scoped) ─TryFrom┘
//! ```
//!
//! [`SpecRef`] is a spec's identity wherever it travels: pairs, pair ids, the `spec` field of
//! `/v1/pairs` and the CLI's JSON, the `spec` metric label, status and logs. A ProbeSpec is
//! `namespace/name`, a ClusterProbeSpec its bare `name`: a Kubernetes name never holds a `/`,
//! so the two forms cannot be mistaken for each other, and [`SpecRef::from_str`] reads both.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use probe_spec::{ClusterProbeSpec, ProbeSpec, ProbeSpecSpec};

use super::model::ObjectRef;

/// Which spec a pair comes from: a ProbeSpec by namespace/name, a ClusterProbeSpec by name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SpecRef {
    Namespaced(ObjectRef),
    /// Shared, like an [`ObjectRef`]'s names: every pair of the spec holds it.
    Cluster(Arc<str>),
}

impl SpecRef {
    /// `ProbeSpec` or `ClusterProbeSpec`.
    pub fn kind(&self) -> &'static str {
        match self {
            SpecRef::Namespaced(_) => "ProbeSpec",
            SpecRef::Cluster(_) => "ClusterProbeSpec",
        }
    }

    /// The namespace of a ProbeSpec; `None` for a ClusterProbeSpec.
    pub fn namespace(&self) -> Option<&str> {
        match self {
            SpecRef::Namespaced(key) => Some(&key.namespace),
            SpecRef::Cluster(_) => None,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            SpecRef::Namespaced(key) => &key.name,
            SpecRef::Cluster(name) => name,
        }
    }
}

impl From<ObjectRef> for SpecRef {
    fn from(key: ObjectRef) -> Self {
        SpecRef::Namespaced(key)
    }
}

impl fmt::Display for SpecRef {
    /// `shop/frontend-paths` for a ProbeSpec, `cluster-dns` for a ClusterProbeSpec.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecRef::Namespaced(key) => key.fmt(f),
            SpecRef::Cluster(name) => f.write_str(name),
        }
    }
}

impl FromStr for SpecRef {
    type Err = String;

    /// `namespace/name` is a ProbeSpec, a bare `name` a ClusterProbeSpec.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains('/') {
            s.parse().map(SpecRef::Namespaced)
        } else if s.is_empty() {
            Err(
                "expected namespace/name (a ProbeSpec) or name (a ClusterProbeSpec), got \"\""
                    .into(),
            )
        } else {
            Ok(SpecRef::Cluster(s.into()))
        }
    }
}

// === Spec ===

/// A ProbeSpec or ClusterProbeSpec, reduced to what planning and status need.
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    pub key: SpecRef,
    /// `metadata.generation`, for `status.observedGeneration`.
    pub generation: Option<i64>,
    pub spec: ProbeSpecSpec,
}

/// Why an object cannot be a [`Spec`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("a {kind} has no metadata.name")]
    NoName { kind: &'static str },
    #[error("ProbeSpec {name:?} has no namespace")]
    NoNamespace { name: String },
}

impl SpecError {
    /// A bounded label for failure counters.
    pub fn metric_label(&self) -> &'static str {
        match self {
            SpecError::NoName { .. } => "no_name",
            SpecError::NoNamespace { .. } => "no_namespace",
        }
    }
}

fn name_of(name: Option<&String>, kind: &'static str) -> Result<String, SpecError> {
    name.filter(|name| !name.is_empty())
        .cloned()
        .ok_or(SpecError::NoName { kind })
}

impl TryFrom<&ProbeSpec> for Spec {
    type Error = SpecError;

    fn try_from(spec: &ProbeSpec) -> Result<Self, SpecError> {
        let name = name_of(spec.metadata.name.as_ref(), "ProbeSpec")?;
        let namespace = spec
            .metadata
            .namespace
            .clone()
            .filter(|ns| !ns.is_empty())
            .ok_or_else(|| SpecError::NoNamespace { name: name.clone() })?;
        Ok(Self {
            key: SpecRef::Namespaced(ObjectRef::new(namespace, name)),
            generation: spec.metadata.generation,
            spec: spec.spec.clone(),
        })
    }
}

impl TryFrom<&ClusterProbeSpec> for Spec {
    type Error = SpecError;

    fn try_from(spec: &ClusterProbeSpec) -> Result<Self, SpecError> {
        Ok(Self {
            key: SpecRef::Cluster(name_of(spec.metadata.name.as_ref(), "ClusterProbeSpec")?.into()),
            generation: spec.metadata.generation,
            spec: spec.spec.0.clone(),
        })
    }
}

#[cfg(test)]
mod tests;
