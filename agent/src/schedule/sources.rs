//! Tenancy: the namespaces a spec may probe from.
//!
//! A ProbeSpec is namespaced, and `create probespecs` is a namespace-level permission: its
//! sources are the pods of its own namespace only. A `from.namespaceSelector` that reaches
//! other namespaces (`{}`, or labels that other tenants' namespaces carry) is narrowed to the
//! spec's own namespace, and what it would have reached is returned as [`Narrowed`] so the
//! author sees it in the `SourcesNarrowed` condition. A ClusterProbeSpec (a cluster-level
//! permission) is not narrowed. Destinations are never narrowed: probing other namespaces'
//! pods is what a connectivity check is for.
//!
//! ```text
//! from.namespaceSelector ──matches──> selected namespaces ──ProbeSpec──> ∩ {own} + Narrowed(rest)
//!   absent: {own} (ProbeSpec),                            └─ClusterProbeSpec──> all of them
//!           every namespace (ClusterProbeSpec)
//! ```

use std::collections::BTreeSet;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use probe_spec::ProbeSource;

use crate::cluster::{Index, Selector, SpecRef};

use super::{Error, Result};

/// How many ignored namespaces a [`Narrowed`] message names before it counts the rest.
const MAX_NAMED_NAMESPACES: usize = 10;

/// The namespaces a spec's sources are chosen from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceNamespaces {
    pub namespaces: BTreeSet<String>,
    /// What a ProbeSpec's selector reached beyond its own namespace, if anything.
    pub narrowed: Option<Narrowed>,
}

/// What narrowing left out of a ProbeSpec's sources.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Narrowed {
    /// The spec's own namespace, the only one it probes from.
    pub own: String,
    /// `from.namespaceSelector` as compact JSON (`{}`, `{"matchLabels":{"team":"a"}}`).
    pub selector: String,
    /// The other namespaces it selects, sorted.
    pub ignored: Vec<String>,
}

impl fmt::Display for Narrowed {
    /// The `SourcesNarrowed` condition's message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            own,
            selector,
            ignored,
        } = self;
        write!(
            f,
            "from.namespaceSelector {selector} also selects {} namespace(s) other than {own} (",
            ignored.len()
        )?;
        let named = ignored.len().min(MAX_NAMED_NAMESPACES);
        f.write_str(&ignored[..named].join(", "))?;
        if ignored.len() > named {
            write!(f, " and {} more", ignored.len() - named)?;
        }
        write!(
            f,
            "); a ProbeSpec probes only from pods in its own namespace, so only {own} is probed from. A ClusterProbeSpec may probe from other namespaces."
        )
    }
}

/// Parses a label selector of `spec`, naming the field when it does not parse.
pub(super) fn selector(
    spec: &SpecRef,
    field: String,
    selector: &LabelSelector,
) -> Result<Selector> {
    Selector::try_from(selector).map_err(|source| Error::InvalidSelector {
        spec: spec.clone(),
        field,
        source,
    })
}

/// The namespaces an optional selector of `spec` chooses: absent means the spec's own
/// namespace, or every namespace for a ClusterProbeSpec.
pub(super) fn namespaces(
    index: &Index,
    spec: &SpecRef,
    field: String,
    namespace_selector: Option<&LabelSelector>,
) -> Result<BTreeSet<String>> {
    let all = || index.namespace_names().into_iter().collect();
    Ok(match (namespace_selector, spec.namespace()) {
        (None, Some(own)) => BTreeSet::from([own.to_string()]),
        (None, None) => all(),
        (Some(sel), _) => {
            let sel = selector(spec, field, sel)?;
            index
                .namespace_names()
                .into_iter()
                .filter(|ns| sel.matches(&index.namespace_labels(ns)))
                .collect()
        }
    })
}

/// The namespaces `spec` probes from: `from.namespaceSelector`'s, narrowed to the spec's own
/// namespace for a ProbeSpec.
pub fn source_namespaces(
    index: &Index,
    spec: &SpecRef,
    from: &ProbeSource,
) -> Result<SourceNamespaces> {
    let selected = namespaces(
        index,
        spec,
        "spec.from.namespaceSelector".into(),
        from.namespace_selector.as_ref(),
    )?;
    let Some(own) = spec.namespace() else {
        return Ok(SourceNamespaces {
            namespaces: selected,
            narrowed: None,
        });
    };
    let (kept, ignored): (BTreeSet<String>, BTreeSet<String>) =
        selected.into_iter().partition(|ns| ns == own);
    let narrowed = (!ignored.is_empty()).then(|| Narrowed {
        own: own.to_string(),
        selector: from
            .namespace_selector
            .as_ref()
            .and_then(|sel| serde_json::to_string(sel).ok())
            .unwrap_or_default(),
        ignored: ignored.into_iter().collect(),
    });
    Ok(SourceNamespaces {
        namespaces: kept,
        narrowed,
    })
}

#[cfg(test)]
mod tests;
