//! Which pods an agent watches: the pure half of node-scoped watches.
//!
//! Evaluating a pair needs its source pod, its destination pod, both namespaces and their
//! policies; the stable sample of a spec (`schedule::plan`) also ranks every source the spec
//! selects, cluster-wide. So a node-scoped agent ([`WatchScope::Node`]) watches pods through a
//! set of watches derived from the specs ([`plan_pod_watches`]) instead of every pod:
//!
//! ```text
//! this node's pods           fieldSelector spec.nodeName=<node>           (sources, local CNI agent)
//! CNI agents, every node     labelSelector per built-in key, e.g. k8s-app in (calico-node,...)
//! each spec's sources        labelSelector from.podSelector   (in the ProbeSpec's namespace)
//! each pod target            labelSelector podSelector        (the spec's namespace, or every
//!                                                               namespace with a namespaceSelector)
//! each ip target             fieldSelector status.podIP=<ip>  (is the address a pod, and whose?)
//! ```
//!
//! Identical watches are deduplicated (two specs with one selector share a watch). Past
//! `max_selectors` spec-derived watches, or when a spec selects every pod of the cluster (a
//! ClusterProbeSpec `from: {}`), the plan falls back to the one cluster-wide pod watch
//! ([`Fallback`]): then the index is complete again. Namespaces, Nodes and NetworkPolicies stay
//! cluster-wide (few, small, and a pair's policies are those of both its namespaces).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use probe_spec::TargetKind;

use crate::cluster::selector::Selector;
use crate::cluster::spec::{Spec, SpecRef};

use super::cni::CniAgentMatcher;

/// The default bound on spec-derived pod watches before the cluster-wide watch takes over.
pub const DEFAULT_MAX_SELECTOR_WATCHES: usize = 64;

/// How much of the cluster's pods an agent watches (`--watch-scope`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WatchScope {
    /// This node's pods and what its specs select ([`plan_pod_watches`]).
    #[default]
    Node,
    /// Every pod of the cluster, in one watch.
    Cluster,
}

impl WatchScope {
    pub fn as_str(self) -> &'static str {
        match self {
            WatchScope::Node => "node",
            WatchScope::Cluster => "cluster",
        }
    }
}

impl fmt::Display for WatchScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WatchScope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "node" => Ok(WatchScope::Node),
            "cluster" => Ok(WatchScope::Cluster),
            other => Err(format!("{other:?} is not a watch scope (node, cluster)")),
        }
    }
}

/// One pod watch: a list+watch of pods in one namespace (or all) with optional selectors.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodWatch {
    /// `None`: every namespace.
    pub namespace: Option<String>,
    /// `labelSelector=`, API syntax; empty: every pod.
    pub labels: String,
    /// `fieldSelector=`; empty: none.
    pub fields: String,
}

impl PodWatch {
    /// Every pod of the cluster.
    pub fn everything() -> Self {
        Self::selected(None, String::new())
    }

    /// The pods scheduled on `node`.
    pub fn on_node(node: &str) -> Self {
        Self {
            namespace: None,
            labels: String::new(),
            fields: format!("spec.nodeName={node}"),
        }
    }

    /// The pod (if any) holding `ip`.
    pub fn address(ip: IpAddr) -> Self {
        Self {
            namespace: None,
            labels: String::new(),
            fields: format!("status.podIP={ip}"),
        }
    }

    /// The pods `labels` selects in `namespace` (every namespace: `None`).
    pub fn selected(namespace: Option<String>, labels: String) -> Self {
        Self {
            namespace,
            labels,
            fields: String::new(),
        }
    }

    /// Every pod of the cluster, with no selector at all.
    pub fn is_everything(&self) -> bool {
        self.namespace.is_none() && self.labels.is_empty() && self.fields.is_empty()
    }

    /// The address a `status.podIP=` watch answers for.
    pub fn answers_address(&self) -> Option<IpAddr> {
        self.fields.strip_prefix("status.podIP=")?.parse().ok()
    }
}

impl fmt::Display for PodWatch {
    /// `pods in shop labelSelector=app=web`, `pods fieldSelector=spec.nodeName=node-1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("pods")?;
        if let Some(ns) = &self.namespace {
            write!(f, " in {ns}")?;
        }
        if !self.labels.is_empty() {
            write!(f, " labelSelector={}", self.labels)?;
        }
        if !self.fields.is_empty() {
            write!(f, " fieldSelector={}", self.fields)?;
        }
        if self.is_everything() {
            f.write_str(" (every pod)")?;
        }
        Ok(())
    }
}

/// Why a node-scoped agent watches every pod after all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fallback {
    /// The specs need more distinct selector watches than the bound.
    TooManySelectors { needed: usize, bound: usize },
    /// A spec selects every pod of the cluster (e.g. a ClusterProbeSpec `from: {}`).
    SelectsEverything { spec: SpecRef },
    /// A spec probes a Service: its endpoints may be any pod (each is predicted as a pod).
    ServiceTarget { spec: SpecRef },
}

impl fmt::Display for Fallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fallback::TooManySelectors { needed, bound } => write!(
                f,
                "the specs need {needed} pod selector watches, more than the bound {bound}"
            ),
            Fallback::SelectsEverything { spec } => {
                write!(f, "{} {spec} selects every pod of the cluster", spec.kind())
            }
            Fallback::ServiceTarget { spec } => write!(
                f,
                "{} {spec} probes a Service, whose endpoints may be any pod",
                spec.kind()
            ),
        }
    }
}

/// The pod watches of one agent, and which of them each spec's pairs depend on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodWatchPlan {
    pub watches: BTreeSet<PodWatch>,
    /// The watches a spec's sample and pairs are computed from (besides this node's and the
    /// CNI agents'): a spec is planned only once these have synced.
    pub needs: BTreeMap<SpecRef, BTreeSet<PodWatch>>,
    /// Set when the plan is the one cluster-wide watch because selectors would not do.
    pub fallback: Option<Fallback>,
}

impl PodWatchPlan {
    /// The cluster-wide design: one watch of every pod.
    pub fn everything(specs: &[Spec], fallback: Option<Fallback>) -> Self {
        let all = BTreeSet::from([PodWatch::everything()]);
        Self {
            needs: specs.iter().map(|s| (s.key.clone(), all.clone())).collect(),
            watches: all,
            fallback,
        }
    }

    /// Whether this plan holds every pod (then the index is complete).
    pub fn is_complete(&self) -> bool {
        self.watches.iter().any(PodWatch::is_everything)
    }
}

/// The pod watches of the agent on `node` for `specs` ([`WatchScope::Node`]); see the module
/// docs. A selector that does not parse adds no watch: the planner reports that spec's problem.
pub fn plan_pod_watches(
    specs: &[Spec],
    node: &str,
    cni: &CniAgentMatcher,
    max_selectors: usize,
) -> PodWatchPlan {
    let mut needs: BTreeMap<SpecRef, BTreeSet<PodWatch>> = BTreeMap::new();
    for spec in specs {
        let probes_service = spec
            .spec
            .to
            .iter()
            .any(|t| matches!(t.kind(), Some(TargetKind::Service { .. })));
        if probes_service {
            let fallback = Fallback::ServiceTarget {
                spec: spec.key.clone(),
            };
            return PodWatchPlan::everything(specs, Some(fallback));
        }
        let watches = spec_watches(spec);
        if watches.iter().any(PodWatch::is_everything) {
            let fallback = Fallback::SelectsEverything {
                spec: spec.key.clone(),
            };
            return PodWatchPlan::everything(specs, Some(fallback));
        }
        needs.insert(spec.key.clone(), watches);
    }
    let selected: BTreeSet<PodWatch> = needs.values().flatten().cloned().collect();
    if selected.len() > max_selectors {
        let fallback = Fallback::TooManySelectors {
            needed: selected.len(),
            bound: max_selectors,
        };
        return PodWatchPlan::everything(specs, Some(fallback));
    }
    let mut watches = selected;
    watches.insert(PodWatch::on_node(node));
    watches.extend(
        cni.watch_selectors()
            .into_iter()
            .map(|labels| PodWatch::selected(None, labels)),
    );
    PodWatchPlan {
        watches,
        needs,
        fallback: None,
    }
}

/// The selector watches one spec's pairs depend on.
fn spec_watches(spec: &Spec) -> BTreeSet<PodWatch> {
    // A ProbeSpec's sources are narrowed to its namespace, and a pod target without a
    // namespaceSelector means that namespace; a ClusterProbeSpec means every namespace.
    let own = spec.key.namespace().map(str::to_string);
    let mut out = BTreeSet::new();
    let sources = query(&spec.spec.from.pod_selector);
    if let Some(labels) = sources {
        out.insert(PodWatch::selected(own.clone(), labels));
    }
    for target in &spec.spec.to {
        match target.kind() {
            Some(TargetKind::Pods {
                pod_selector,
                namespace_selector,
                ..
            }) => {
                let labels = match pod_selector {
                    Some(selector) => query(selector),
                    None => Some(String::new()),
                };
                // Namespace selectors are matched locally (namespaces are all held).
                let namespace = match namespace_selector {
                    Some(_) => None,
                    None => own.clone(),
                };
                if let Some(labels) = labels {
                    out.insert(PodWatch::selected(namespace, labels));
                }
            }
            Some(TargetKind::Ip { ip, .. }) => {
                out.insert(PodWatch::address(ip));
            }
            Some(TargetKind::Dns(_) | TargetKind::Host { .. } | TargetKind::Service { .. })
            | None => {}
        }
    }
    out
}

fn query(selector: &LabelSelector) -> Option<String> {
    Selector::try_from(selector).ok().map(|s| s.to_query())
}

#[cfg(test)]
mod tests;
