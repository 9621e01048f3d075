//! Compiling an index into match caches, and evaluating one flow with a full explanation.
//!
//! - `compile`: the index into per-pod and per-policy match caches ([`Engine::new`]), and
//!   endpoints resolved to sides;
//! - `evaluate`: one flow, both directions, every rule and peer checked ([`Engine::evaluate`]);
//! - `render`: the sentences an explanation is made of (why a pod is not subject, why a port
//!   missed);
//! - `denial`: a denied flow's codes (reason, direction, policies) without the sentences, for
//!   the JSON matrix.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use crate::cluster::Index;
use crate::cluster::model::{
    Labels, NetworkPolicy, Node, ObjectRef, Peer, Pod, PolicyPort, PortRef, Protocol, Rule,
};
use crate::cluster::selector::{Selector, display_labels};

use super::bitset::BitSet;
use super::profile::Profile;
use super::verdict::{
    Direction, DirectionVerdict, PeerMiss, PolicyMisses, PortMiss, RuleMiss, RuleRef, Tier, Verdict,
};

/// One end of a flow, as a user names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Pod(ObjectRef),
    /// An address: resolved to the live pod or node that owns it, else an external address.
    Ip(IpAddr),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Pod(key) => write!(f, "{key}"),
            Endpoint::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

impl std::str::FromStr for Endpoint {
    type Err = String;
    /// `ns/pod` or an IP address.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Endpoint::Ip(ip));
        }
        s.parse::<ObjectRef>()
            .map(Endpoint::Pod)
            .map_err(|_| format!("expected namespace/pod or an IP address, got {s:?}"))
    }
}

/// A connection attempt: source, destination, destination port and protocol.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Flow {
    pub from: Endpoint,
    pub to: Endpoint,
    pub port: u16,
    pub protocol: Protocol,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("pod {0} is not in the loaded objects")]
    UnknownPod(ObjectRef),
    #[error("pod {0} has no IP address (phase {1}); it cannot send or receive traffic")]
    NotAnEndpoint(ObjectRef, String),
    /// A partial view (node-scoped watches) holds no pod or node with this address, and no
    /// watch answered for it: it may be a pod the view does not hold, so it is not judged as
    /// an external address.
    #[error(
        "address {0} is not known to this agent's partial view (it may be a pod it does not watch)"
    )]
    UnknownAddress(std::net::IpAddr),
}

/// A flow endpoint resolved against the compiled index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    /// A pod that policies select (not hostNetwork in the default profile).
    Pod(usize),
    /// A hostNetwork pod: policies see its node's address (E22).
    HostPod(usize),
    Node {
        name: String,
        ip: IpAddr,
    },
    External(IpAddr),
}

pub(crate) struct CompiledPolicy {
    pub(crate) policy: NetworkPolicy,
    pub(crate) namespace: usize,
    pub(crate) ingress: Vec<Vec<CompiledPeer>>,
    pub(crate) egress: Vec<Vec<CompiledPeer>>,
}

impl CompiledPolicy {
    /// The rules of one direction with their compiled peers.
    pub(crate) fn rules(
        &self,
        direction: Direction,
    ) -> impl Iterator<Item = (&Rule, &Vec<CompiledPeer>)> {
        let (rules, peers) = match direction {
            Direction::Ingress => (&self.policy.ingress, &self.ingress),
            Direction::Egress => (&self.policy.egress, &self.egress),
        };
        rules.iter().zip(peers)
    }
}

/// One direction of a flow, ready for its rules to be checked.
pub(crate) struct RuleWalk<'e, 's> {
    pub(crate) direction: Direction,
    /// The policies that select `subject` and isolate it in this direction.
    pub(crate) isolating: &'e [usize],
    /// The endpoint the policies select (the destination for ingress).
    pub(crate) subject: &'s Side,
    /// The other endpoint, matched against the rules' peers.
    pub(crate) peer: &'s Side,
    /// The destination pod, on which named ports resolve (E17).
    pub(crate) port_pod: Option<usize>,
}

/// Why a direction does not restrict a flow, decided before any rule is read.
pub(crate) enum Unrestricted<'s> {
    /// The endpoint on this side is not a pod policies select (E22).
    NotSubject(&'s Side),
    /// No policy isolates the pod in this direction (E0).
    NotIsolated,
    /// The other endpoint is the pod's own node (E21).
    NodeLocal,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum CompiledPeer {
    Pods {
        pod_selector: Option<usize>,
        namespace_selector: Option<usize>,
    },
    IpBlock,
    Invalid,
}

/// A compiled, immutable snapshot of an index for evaluating flows.
pub struct Engine {
    pub(crate) profile: Profile,
    pub(crate) pods: Vec<Pod>,
    pub(crate) pod_namespace: Vec<usize>,
    pod_ids: HashMap<ObjectRef, usize>,
    pub(crate) namespaces: Vec<String>,
    namespace_labels: Vec<Labels>,
    /// Per namespace: policies that exist but could not be loaded (verdicts carry a warning).
    namespace_warnings: Vec<Vec<String>>,
    /// Per namespace: the CNI-native policies that may select its pods (its own and the
    /// cluster-wide ones), as named to a reader.
    pub(crate) namespace_cni_policies: Vec<Vec<String>>,
    nodes: Vec<Node>,
    /// A partial view: the addresses a watch answered for (any other address no held pod or
    /// node has is unknown, not external). `None`: every pod is held.
    partial_view: Option<std::collections::BTreeSet<std::net::IpAddr>>,
    pub(crate) policies: Vec<CompiledPolicy>,
    /// Interned pod selectors: which pods' labels each matches.
    pub(crate) pod_selector_matches: Vec<BitSet>,
    /// Interned namespace selectors: which namespaces' labels each matches.
    pub(crate) namespace_selector_matches: Vec<BitSet>,
    /// Per pod: the policies that select it and isolate ingress / egress.
    pub(crate) ingress_policies: Vec<Vec<usize>>,
    pub(crate) egress_policies: Vec<Vec<usize>>,
    /// The cluster-scoped tiered policies, in evaluation order.
    pub(crate) tiered: Vec<crate::cluster::tiered::TieredPolicy>,
    /// Per pod: the tiered policies whose subject selects it, in evaluation order.
    pub(crate) tier_subject_of: Vec<Vec<usize>>,
    /// Per tiered policy: the pods its rules' pod peers match.
    pub(crate) tier_peer_pods: Vec<tiers::TierPeerPods>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("profile", &self.profile.name)
            .field("pods", &self.pods.len())
            .field("namespaces", &self.namespaces.len())
            .field("policies", &self.policies.len())
            .finish()
    }
}

mod compile;
mod denial;
mod evaluate;
mod render;
mod tiers;

pub use denial::Denial;
