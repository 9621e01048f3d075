//! Recognising CNI agent pods in the index, for the diagnosis' "is the CNI healthy on the
//! source and destination nodes?" step.
//!
//! The CNI agents are ordinary pods (a DaemonSet, one per node), so the cluster-wide pod
//! watch already delivers them; no separate watch is needed. A [`CniAgentMatcher`] picks them
//! out by namespace and labels: the common CNIs' labels are built in, and one extra selector
//! can be configured (`--cni-agent-selector`). The same functions serve snapshot modes.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::cluster::Index;
use crate::cluster::model::{ObjectRef, Pod};
use crate::cluster::selector::{Operator, Selector};

use super::Error;

/// The namespace of every built-in CNI agent selector.
pub const KUBE_SYSTEM: &str = "kube-system";

/// Built-in CNI agents: name, namespaces, label key and value. Operator-managed installs of
/// Calico and Cilium use their own namespaces as well.
const BUILTIN: &[(&str, &[&str], &str, &str)] = &[
    (
        "calico-node",
        &[KUBE_SYSTEM, "calico-system"],
        "k8s-app",
        "calico-node",
    ),
    ("cilium", &[KUBE_SYSTEM, "cilium"], "k8s-app", "cilium"),
    (
        "kube-flannel",
        &[KUBE_SYSTEM, "kube-flannel"],
        "app",
        "flannel",
    ),
    ("weave-net", &[KUBE_SYSTEM], "name", "weave-net"),
    ("antrea-agent", &[KUBE_SYSTEM], "component", "antrea-agent"),
    ("aws-node", &[KUBE_SYSTEM], "k8s-app", "aws-node"),
    ("kube-router", &[KUBE_SYSTEM], "k8s-app", "kube-router"),
    ("kindnet", &[KUBE_SYSTEM], "app", "kindnet"),
];

/// One rule: pods in one of `namespaces` whose labels match `selector` are agents of `cni`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    cni: String,
    namespaces: Vec<String>,
    selector: Selector,
}

/// Picks the CNI agent pods out of the pods of a cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CniAgentMatcher {
    rules: Vec<Rule>,
}

impl Default for CniAgentMatcher {
    fn default() -> Self {
        Self::builtin()
    }
}

/// The health of one CNI agent pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CniAgentStatus {
    pub pod: ObjectRef,
    /// Which CNI (`calico-node`, `cilium`, ..., or `custom` for the configured selector).
    pub cni: String,
    /// The pod's `Ready` condition is `True` and it is Running and not terminating.
    pub ready: bool,
    /// Sum of its containers' restart counts.
    pub restarts: u32,
}

impl CniAgentMatcher {
    /// The built-in selectors of calico-node, cilium, kube-flannel, weave-net, antrea-agent,
    /// aws-node, kube-router and kindnet.
    pub fn builtin() -> Self {
        let rules = BUILTIN
            .iter()
            .map(|(cni, namespaces, key, value)| Rule {
                cni: (*cni).to_string(),
                namespaces: namespaces.iter().map(|ns| (*ns).to_string()).collect(),
                selector: Selector::from_labels([(*key, *value)]),
            })
            .collect();
        Self { rules }
    }

    /// Adds a configured selector, `[namespace/]key=value[,key=value...]` (namespace defaults to
    /// kube-system); its pods are reported as CNI `custom`.
    pub fn with_extra(mut self, spec: &str) -> Result<Self, Error> {
        let invalid = |message: String| Error::InvalidCniSelector {
            selector: spec.to_string(),
            message,
        };
        let (namespace, selector) = match spec.split_once('/') {
            Some((ns, sel)) if !ns.is_empty() => (ns, sel),
            Some(_) => return Err(invalid("the namespace before / is empty".into())),
            None => (KUBE_SYSTEM, spec),
        };
        let mut match_labels = BTreeMap::new();
        for term in selector.split(',').map(str::trim) {
            let (key, value) = term
                .split_once("==")
                .or_else(|| term.split_once('='))
                .ok_or_else(|| invalid(format!("{term:?} is not key=value")))?;
            match_labels.insert(key.trim().to_string(), value.trim().to_string());
        }
        let selector = Selector::try_from(&LabelSelector {
            match_labels: Some(match_labels),
            match_expressions: None,
        })
        .map_err(|e| invalid(e.to_string()))?;
        self.rules.push(Rule {
            cni: "custom".into(),
            namespaces: vec![namespace.to_string()],
            selector,
        });
        Ok(self)
    }

    /// Label selectors (API syntax) that together select every pod some rule matches, for
    /// cluster-wide watches of the CNI agents: the built-in rules' `key=value` pairs merged per
    /// key (`k8s-app in (aws-node,calico-node,...)`), the configured rule as it is. Namespaces
    /// are not part of them: [`Self::cni_of`] still checks each pod's namespace.
    pub fn watch_selectors(&self) -> Vec<String> {
        let mut by_key: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        let mut others = Vec::new();
        for rule in &self.rules {
            match rule.selector.requirements() {
                [single] if single.operator == Operator::In => by_key
                    .entry(single.key.as_str())
                    .or_default()
                    .extend(single.values.iter().map(String::as_str)),
                _ => others.push(rule.selector.to_query()),
            }
        }
        let mut selectors: Vec<String> = by_key
            .into_iter()
            .map(|(key, mut values)| {
                values.sort_unstable();
                values.dedup();
                match values.as_slice() {
                    [one] => format!("{key}={one}"),
                    _ => format!("{key} in ({})", values.join(",")),
                }
            })
            .collect();
        selectors.extend(others);
        selectors.sort();
        selectors.dedup();
        selectors
    }

    /// The CNI whose agent `pod` is, if any.
    pub fn cni_of(&self, pod: &Pod) -> Option<&str> {
        self.rules
            .iter()
            .find(|r| r.namespaces.contains(&pod.namespace) && r.selector.matches(&pod.labels))
            .map(|r| r.cni.as_str())
    }

    /// The status of `pod` if it is a CNI agent.
    pub fn status(&self, pod: &Pod) -> Option<CniAgentStatus> {
        let cni = self.cni_of(pod)?;
        Some(CniAgentStatus {
            pod: pod.key(),
            cni: cni.to_string(),
            ready: pod.ready
                && pod.phase == crate::cluster::model::PodPhase::Running
                && !pod.terminating,
            restarts: pod.restarts,
        })
    }
}

/// The CNI agent pods scheduled on `node`, sorted by pod. An empty list means the agent is
/// missing (or the CNI is not one the matcher knows).
pub fn cni_agents_on(index: &Index, matcher: &CniAgentMatcher, node: &str) -> Vec<CniAgentStatus> {
    let mut agents: Vec<CniAgentStatus> = index
        .pods()
        .filter(|p| p.node_name.as_deref() == Some(node))
        .filter_map(|p| matcher.status(p))
        .collect();
    agents.sort_by(|a, b| a.pod.cmp(&b.pod));
    agents
}

/// Every CNI agent pod by node, in one pass over the pods (for per-node metrics).
pub fn cni_agents_by_node(
    index: &Index,
    matcher: &CniAgentMatcher,
) -> BTreeMap<String, Vec<CniAgentStatus>> {
    let mut by_node: BTreeMap<String, Vec<CniAgentStatus>> = BTreeMap::new();
    for pod in index.pods() {
        if let (Some(node), Some(status)) = (pod.node_name.as_ref(), matcher.status(pod)) {
            by_node.entry(node.clone()).or_default().push(status);
        }
    }
    by_node
}
