//! CRD generation: the `CustomResourceDefinition`s of every resource, and the YAML that
//! `netreach crd` prints and the Helm chart ships under `charts/netreach/crds/`.
//!
//! The committed copy is checked by `tests/crd_drift.rs`; regenerate it with
//! `cargo run -p netreach -- crd > charts/netreach/crds/netreach.dev_crds.yaml`
//! (or `UPDATE_CRDS=1 cargo test -p probe-spec --test crd_drift`).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::{
    cluster_probe_spec::ClusterProbeSpec, probe_request::ProbeRequest, probe_spec::ProbeSpec,
};

/// The first lines of [`crds_yaml`]: what the file is and how to regenerate it.
pub const CRDS_YAML_HEADER: &str = "\
# Generated from the probe-spec crate; do not edit.
# Regenerate: cargo run -p netreach -- crd > charts/netreach/crds/netreach.dev_crds.yaml
";

/// Every CRD, sorted by name.
pub fn crds() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![
        ProbeSpec::crd(),
        ClusterProbeSpec::crd(),
        ProbeRequest::crd(),
    ];
    crds.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    crds
}

/// Every CRD as one multi-document YAML stream, sorted by name, each document after a `---`
/// line, behind [`CRDS_YAML_HEADER`]. The output depends only on the types, so it is stable.
///
/// # Panics
///
/// Never in practice: a `CustomResourceDefinition` always serializes to YAML.
pub fn crds_yaml() -> String {
    let mut out = String::from(CRDS_YAML_HEADER);
    for crd in crds() {
        let document = serde_yaml_ng::to_string(&crd)
            .expect("a CustomResourceDefinition always serializes to YAML");
        out.push_str("---\n");
        out.push_str(&document);
    }
    out
}

#[cfg(test)]
mod tests;
