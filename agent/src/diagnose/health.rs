//! The health view a diagnosis needs: the CNI agents and node conditions of the source and
//! destination nodes, and the destination pod's readiness (runbook Diagnosis step 6 and the
//! checks docs/design.md orders after it).

use std::fmt::Write;

use crate::cluster::Index;
use crate::cluster::model::ObjectRef;

/// A CNI agent pod (calico-node, cilium, ...), as the cluster view tracks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CniHealth {
    /// The node it runs on.
    pub node: String,
    pub pod: ObjectRef,
    /// The pod's Ready condition is True.
    pub ready: bool,
    /// Container restarts within the caller's recent window (e.g. the last 15 minutes), e.g.
    /// from `cluster::changes::ChangeLog::cni_restarts_in_window`.
    pub restarts_in_window: u32,
}

impl CniHealth {
    pub fn is_healthy(&self) -> bool {
        self.ready && self.restarts_in_window == 0
    }

    /// "CNI agent kube-system/calico-node-b on node-2 is not ready and restarted 3 times recently".
    pub fn describe(&self) -> String {
        let mut out = format!("CNI agent {} on {}", self.pod, self.node);
        let restarts = match self.restarts_in_window {
            0 => String::new(),
            n => format!("restarted {} recently", times(n)),
        };
        match (self.ready, restarts.is_empty()) {
            (true, true) => out.push_str(" is ready"),
            (true, false) => {
                let _ = write!(out, " {restarts}");
            }
            (false, true) => out.push_str(" is not ready"),
            (false, false) => {
                let _ = write!(out, " is not ready and {restarts}");
            }
        }
        out
    }
}

/// One node's conditions and CNI agents.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeHealth {
    pub name: String,
    /// The Ready condition; `None` when no Node object is known.
    pub ready: Option<bool>,
    /// Other trouble conditions that are True (`Node::problems`).
    pub problems: Vec<String>,
    /// The CNI agent pods on this node (usually one).
    pub cni: Vec<CniHealth>,
}

/// The node condition that takes pod networking down besides `Ready`.
pub const NETWORK_UNAVAILABLE: &str = "NetworkUnavailable";

impl NodeHealth {
    /// Ready (or unknown) and without `NetworkUnavailable`. Other problems (MemoryPressure,
    /// DiskPressure, ...) are listed in the explanation but do not explain a block.
    pub fn network_ready(&self) -> bool {
        self.ready != Some(false) && !self.problems.iter().any(|p| p == NETWORK_UNAVAILABLE)
    }

    /// "node node-2 is not ready (NetworkUnavailable)".
    pub fn describe(&self) -> String {
        let state = match self.ready {
            Some(true) => "is ready",
            Some(false) => "is not ready",
            None => "has no Node object (condition unknown)",
        };
        let mut out = format!("node {} {state}", self.name);
        if !self.problems.is_empty() {
            let _ = write!(out, " ({})", self.problems.join(", "));
        }
        out
    }
}

/// Whether the destination pod is Ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodReadiness {
    pub pod: ObjectRef,
    pub ready: bool,
}

/// Health around one pair. Empty (`Health::default()`) means nothing is known, which is
/// never a finding.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    pub source_node: Option<NodeHealth>,
    pub destination_node: Option<NodeHealth>,
    /// The pod behind the destination: a pod target, an IP target that is a pod, or the DNS
    /// server of a DNS target. Also scopes the change hints.
    pub destination: Option<PodReadiness>,
}

impl Health {
    /// Builds the view from the index and the CNI agents: the nodes of `from` and of
    /// `destination` (when they are pods in the index), their conditions and agents.
    pub fn gather(
        index: &Index,
        cni_agents: &[CniHealth],
        from: &ObjectRef,
        destination: Option<&ObjectRef>,
    ) -> Self {
        let node_of = |pod: &ObjectRef| -> Option<NodeHealth> {
            let name = index.pod(pod)?.node_name.clone()?;
            let node = index.node(&name);
            Some(NodeHealth {
                ready: node.map(|n| n.ready),
                problems: node.map(|n| n.problems.clone()).unwrap_or_default(),
                cni: cni_agents
                    .iter()
                    .filter(|c| c.node == name)
                    .cloned()
                    .collect(),
                name,
            })
        };
        Self {
            source_node: node_of(from),
            destination_node: destination.and_then(node_of),
            destination: destination.and_then(|d| {
                index.pod(d).map(|p| PodReadiness {
                    pod: d.clone(),
                    ready: p.ready,
                })
            }),
        }
    }

    /// The source and destination nodes with their role, each node once.
    pub fn nodes(&self) -> Vec<(&'static str, &NodeHealth)> {
        match (&self.source_node, &self.destination_node) {
            (Some(s), Some(d)) if s.name == d.name => vec![("source and destination node", s)],
            (s, d) => s
                .iter()
                .map(|n| ("source node", n))
                .chain(d.iter().map(|n| ("destination node", n)))
                .collect(),
        }
    }

    /// The first CNI agent that is not ready or restarted recently (source node first).
    pub fn unhealthy_cni(&self) -> Option<&CniHealth> {
        self.nodes()
            .into_iter()
            .flat_map(|(_, n)| n.cni.iter())
            .find(|c| !c.is_healthy())
    }

    /// The first node whose pod network is down (source node first).
    pub fn unready_node(&self) -> Option<&NodeHealth> {
        self.nodes()
            .into_iter()
            .map(|(_, n)| n)
            .find(|n| !n.network_ready())
    }

    /// The destination pod, when it is known and not Ready.
    pub fn unready_destination(&self) -> Option<&ObjectRef> {
        self.destination
            .as_ref()
            .filter(|d| !d.ready)
            .map(|d| &d.pod)
    }

    /// Every CNI agent that restarted recently, each once.
    pub fn restarted_cni(&self) -> Vec<&CniHealth> {
        self.nodes()
            .into_iter()
            .flat_map(|(_, n)| n.cni.iter())
            .filter(|c| c.restarts_in_window > 0)
            .collect()
    }
}

/// "once", "2 times".
pub(super) fn times(n: u32) -> String {
    match n {
        1 => "once".to_string(),
        n => format!("{n} times"),
    }
}
