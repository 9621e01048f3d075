//! The `ClusterProbeSpec` custom resource: a [`ProbeSpec`](crate::ProbeSpec) without a
//! namespace, for the cluster operator.
//!
//! A namespaced ProbeSpec probes only from pods in its own namespace (a `from.namespaceSelector`
//! that reaches further is narrowed by the agents), so `create probespecs` in one namespace
//! grants no probing from other tenants' pods. A ClusterProbeSpec may select source pods in any
//! namespace; creating one is a cluster-level permission. Both kinds share the spec type
//! ([`ProbeSpecSpec`]) and the status type ([`ProbeSpecStatus`]); the spec is a newtype so
//! kube-derive can generate a second kind over it, and it derefs to the shared type.
//!
//! Where a ProbeSpec defaults to its own namespace (`from.namespaceSelector` or a pod target's
//! `namespaceSelector` absent), a ClusterProbeSpec means every namespace.

use std::ops::Deref;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::probe_spec::{ProbeSpecSpec, ProbeSpecStatus};
use crate::validation::ValidationErrors;

probe_spec_kind! {
/// The desired state of a ClusterProbeSpec: the same fields as a ProbeSpec's.
#[derive(CustomResource, JsonSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
kube(
    kind = "ClusterProbeSpec",
    shortname = "nrcps",
    doc = "A cluster-wide continuous assertion about network paths: like a ProbeSpec, but its source pods may be in any namespace."
)
pub struct ClusterProbeSpecSpec(pub ProbeSpecSpec);
}

impl Deref for ClusterProbeSpecSpec {
    type Target = ProbeSpecSpec;

    fn deref(&self) -> &ProbeSpecSpec {
        &self.0
    }
}

impl From<ProbeSpecSpec> for ClusterProbeSpecSpec {
    fn from(spec: ProbeSpecSpec) -> Self {
        Self(spec)
    }
}

impl ClusterProbeSpec {
    /// Checks the spec; see [`ProbeSpecSpec::validate`].
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        self.spec.validate()
    }
}

#[cfg(test)]
mod tests;
