//! The structured verdict of one flow: what each direction decided, which policies isolate,
//! and for every rule the first requirement that failed, with wanted and actual values.

use std::fmt;

use serde::Serialize;

use crate::cluster::model::{ObjectRef, PolicyRef, Protocol};

/// A bounded reason code, used in JSON, metric labels and alerts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Isolated, and no policy has a rule for this direction at all.
    DefaultDeny,
    /// The closest rule's peer matched but its ports did not.
    PortNotAllowed,
    PodSelectorMismatch,
    NamespaceSelectorMismatch,
    IpBlockMismatch,
    /// The closest rule names a port the destination pod does not declare.
    NamedPortUnresolved,
    /// The closest rule failed validation; netreach treats it as matching nothing.
    InvalidRule,
    /// An Admin-tier rule (ClusterNetworkPolicy `tier: Admin`, AdminNetworkPolicy) denies it.
    AdminDeny,
    /// A Baseline-tier rule (ClusterNetworkPolicy `tier: Baseline`, BaselineAdminNetworkPolicy)
    /// denies it.
    BaselineDeny,
}

impl Reason {
    pub const ALL: [Reason; 9] = [
        Reason::DefaultDeny,
        Reason::PortNotAllowed,
        Reason::PodSelectorMismatch,
        Reason::NamespaceSelectorMismatch,
        Reason::IpBlockMismatch,
        Reason::NamedPortUnresolved,
        Reason::InvalidRule,
        Reason::AdminDeny,
        Reason::BaselineDeny,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::DefaultDeny => "default_deny",
            Reason::PortNotAllowed => "port_not_allowed",
            Reason::PodSelectorMismatch => "pod_selector_mismatch",
            Reason::NamespaceSelectorMismatch => "namespace_selector_mismatch",
            Reason::IpBlockMismatch => "ip_block_mismatch",
            Reason::NamedPortUnresolved => "named_port_unresolved",
            Reason::InvalidRule => "invalid_rule",
            Reason::AdminDeny => "admin_deny",
            Reason::BaselineDeny => "baseline_deny",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The policy tier that decided. Only NetworkPolicy exists today; AdminNetworkPolicy and
/// BaselineAdminNetworkPolicy will be evaluated before and after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Tier {
    NetworkPolicy,
}

pub use crate::cluster::tiered::{PolicyTier, TierAction};

/// A rule of a policy: `index` into its ingress or egress list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleRef {
    pub policy: ObjectRef,
    pub index: usize,
}

/// What one direction decided.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum DirectionVerdict {
    /// No policy selects the pod for this direction: everything is allowed (E0).
    NotIsolated,
    /// The endpoint on this side is not a pod policies apply to (an external IP, a node, or a
    /// hostNetwork pod in the default profile), so this direction does not restrict.
    NotApplicable { why: String },
    /// Traffic between a pod and its own node is always allowed (E21).
    NodeLocal,
    /// A rule allows it. `isolating` lists every policy that selects the pod (E25).
    Allowed {
        by: RuleRef,
        tier: Tier,
        isolating: Vec<ObjectRef>,
    },
    /// Isolated and no rule matches: each isolating policy with each rule's miss.
    Denied { policies: Vec<PolicyMisses> },
    /// A cluster-scoped policy's rule decided: an Admin-tier rule before any NetworkPolicy, or
    /// a Baseline-tier rule for a pod no NetworkPolicy selects in this direction.
    Tiered(TierHit),
}

impl DirectionVerdict {
    pub fn allows(&self) -> bool {
        match self {
            DirectionVerdict::Denied { .. } => false,
            DirectionVerdict::Tiered(hit) => hit.action == TierAction::Accept,
            _ => true,
        }
    }
}

/// The rule of a cluster-scoped policy that decided a direction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TierHit {
    pub tier: PolicyTier,
    /// `ClusterNetworkPolicy/name`, `AdminNetworkPolicy/name`, `BaselineAdminNetworkPolicy/name`.
    pub policy: String,
    pub priority: u32,
    /// The rule's `name` and its index in the direction's list.
    pub rule: String,
    pub index: usize,
    /// Accept or Deny (a Pass hands the flow to the next tier and decides nothing).
    pub action: TierAction,
    /// The rule did not validate and failed closed (denies everything).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalid: Option<String>,
}

/// One isolating policy and why each of its rules missed. No rules: the policy allows
/// nothing in this direction (default deny, E3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyMisses {
    pub policy: ObjectRef,
    pub rules: Vec<RuleMiss>,
}

/// Why one rule did not match. `port`/`peer` are `None` when that half matched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleMiss {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<PortMiss>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<PeerMiss>,
}

impl RuleMiss {
    /// How far the rule was from matching: 1 when only one half failed, 2 when both did.
    pub fn distance(&self) -> u8 {
        u8::from(self.port.is_some()) + u8::from(self.peer.is_some())
    }

    /// The reason code of this rule's first failing requirement.
    pub fn reason(&self) -> Reason {
        miss_reason(
            self.peer.as_ref().map(PeerMiss::kind),
            self.port.as_ref().map(PortMiss::reason),
        )
    }

    /// Sort key of the closest rule, lower is closer.
    pub(crate) fn closeness(&self) -> (u8, u8) {
        miss_closeness(self.port.is_some(), self.peer.as_ref().map(PeerMiss::kind))
    }
}

/// A rule's reason code from its peer and port misses (see [`RuleMiss::reason`]).
pub(crate) fn miss_reason(peer: Option<PeerMissKind>, port: Option<Reason>) -> Reason {
    // The peer is checked first: a rule whose peer matched is closer to "the right rule".
    match (peer, port) {
        (Some(peer), _) => peer.reason(),
        (None, Some(port)) => port,
        (None, None) => Reason::InvalidRule,
    }
}

/// How far a rule was from matching: fewer failed halves first, then the closer peer miss.
pub(crate) fn miss_closeness(port_missed: bool, peer: Option<PeerMissKind>) -> (u8, u8) {
    (
        u8::from(port_missed) + u8::from(peer.is_some()),
        peer.map_or(0, PeerMissKind::rank),
    )
}

/// Why a rule's `ports` did not match the flow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PortMiss {
    /// None of the rule's ports covers the flow's port and protocol.
    NotListed {
        wanted: Vec<String>,
        port: u16,
        protocol: Protocol,
        notes: Vec<String>,
    },
    /// A named port the destination pod does not declare for this protocol (E17).
    NamedPortUnresolved {
        name: String,
        protocol: Protocol,
        pod: Option<ObjectRef>,
    },
    /// Every port entry is invalid.
    Invalid { reason: String },
}

impl PortMiss {
    pub fn reason(&self) -> Reason {
        match self {
            PortMiss::NotListed { .. } => Reason::PortNotAllowed,
            PortMiss::NamedPortUnresolved { .. } => Reason::NamedPortUnresolved,
            PortMiss::Invalid { .. } => Reason::InvalidRule,
        }
    }
}

/// Why a rule's peers (`from`/`to`) did not match the other endpoint. With several peers the
/// closest one is kept (a namespace match beats none).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PeerMiss {
    /// `namespaceSelector` does not match the other pod's namespace. `pod_selector`: the
    /// podSelector of the same peer, which the namespace must match AND-ed with (E9).
    NamespaceSelector {
        peer: usize,
        selector: String,
        namespace: String,
        labels: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        pod_selector: Option<String>,
    },
    /// A `podSelector` without `namespaceSelector` only selects pods of the policy's namespace.
    PolicyNamespaceOnly {
        peer: usize,
        policy_namespace: String,
        namespace: String,
    },
    /// The namespace matched but `podSelector` does not match the pod's labels.
    /// `namespace_selector`: the namespaceSelector of the same peer (AND, E9), if any.
    PodSelector {
        peer: usize,
        selector: String,
        pod: ObjectRef,
        labels: String,
        unmet: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        namespace_selector: Option<String>,
    },
    /// Selector peers select pods only; the other endpoint is not a pod policies select.
    NotAPod { peer: usize, endpoint: String },
    /// No ipBlock contains the address (or it is in an `except`).
    IpBlock {
        peer: usize,
        blocks: Vec<String>,
        ip: String,
        excepted: bool,
        notes: Vec<String>,
    },
    /// Every peer is invalid.
    Invalid { reason: String },
}

impl PeerMiss {
    pub fn reason(&self) -> Reason {
        self.kind().reason()
    }

    /// Closeness of a peer miss, lower is closer: a pod-selector miss (namespace matched) is
    /// closer than a namespace miss.
    pub(crate) fn rank(&self) -> u8 {
        self.kind().rank()
    }

    pub(crate) fn kind(&self) -> PeerMissKind {
        match self {
            PeerMiss::NamespaceSelector { .. } | PeerMiss::PolicyNamespaceOnly { .. } => {
                PeerMissKind::Namespace
            }
            PeerMiss::PodSelector { .. } => PeerMissKind::PodSelector,
            PeerMiss::NotAPod { .. } => PeerMissKind::NotAPod,
            PeerMiss::IpBlock { .. } => PeerMissKind::IpBlock,
            PeerMiss::Invalid { .. } => PeerMissKind::Invalid,
        }
    }
}

/// A [`PeerMiss`] without its explanation: what picks the closest rule and names its reason.
/// The JSON matrix computes only this for each denied pair (see `engine::denial`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PeerMissKind {
    /// The namespace matched, the podSelector did not.
    PodSelector,
    IpBlock,
    /// The namespaceSelector, or the policy's own namespace, did not match.
    Namespace,
    NotAPod,
    Invalid,
}

impl PeerMissKind {
    pub(crate) fn reason(self) -> Reason {
        match self {
            PeerMissKind::Namespace => Reason::NamespaceSelectorMismatch,
            PeerMissKind::PodSelector | PeerMissKind::NotAPod => Reason::PodSelectorMismatch,
            PeerMissKind::IpBlock => Reason::IpBlockMismatch,
            PeerMissKind::Invalid => Reason::InvalidRule,
        }
    }

    pub(crate) fn rank(self) -> u8 {
        match self {
            PeerMissKind::PodSelector => 0,
            PeerMissKind::IpBlock => 1,
            PeerMissKind::Namespace => 2,
            PeerMissKind::NotAPod => 3,
            PeerMissKind::Invalid => 4,
        }
    }
}

/// The verdict of one flow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// The final answer: both directions allow, or it is traffic to self.
    pub allowed: bool,
    /// Source and destination are the same pod: always allowed (E20).
    #[serde(rename = "self")]
    pub self_traffic: bool,
    /// What the rules alone say (differs from `allowed` only for self traffic).
    pub rules_allowed: bool,
    pub egress: DirectionVerdict,
    pub ingress: DirectionVerdict,
    /// When the rules deny: the reason code of the closest rule of the denying direction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// The denying direction (ingress when both deny).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// The isolating policies of the denying direction(s), `ns/name`.
    pub policies: Vec<String>,
    /// Implementation-defined behaviour the answer depends on, and policy warnings.
    pub notes: Vec<String>,
    /// CNI-native policies (Cilium, Calico, Antrea) that may select the source or the
    /// destination: not evaluated, so the answer may be incomplete.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cni_policies: Vec<String>,
}

impl Verdict {
    pub(crate) fn new(
        self_traffic: bool,
        egress: DirectionVerdict,
        ingress: DirectionVerdict,
        notes: Vec<String>,
    ) -> Self {
        let rules_allowed = egress.allows() && ingress.allows();
        let denial = |part: &DirectionVerdict| match part {
            DirectionVerdict::Denied { policies } => Some(closest_reason(policies)),
            DirectionVerdict::Tiered(hit) if hit.action != TierAction::Accept => {
                Some(match hit.tier {
                    PolicyTier::Admin => Reason::AdminDeny,
                    PolicyTier::Baseline => Reason::BaselineDeny,
                })
            }
            _ => None,
        };
        let (reason, direction) = match (denial(&ingress), denial(&egress)) {
            (Some(reason), _) => (Some(reason), Some(Direction::Ingress)),
            (None, Some(reason)) => (Some(reason), Some(Direction::Egress)),
            (None, None) => (None, None),
        };
        // The denying policies, egress first: a direction's isolating NetworkPolicies, or the
        // tiered policy whose rule denies it.
        let policies = [&egress, &ingress]
            .into_iter()
            .flat_map(|part| match part {
                DirectionVerdict::Denied { policies } => {
                    policies.iter().map(|p| p.policy.to_string()).collect()
                }
                DirectionVerdict::Tiered(hit) if hit.action != TierAction::Accept => {
                    vec![hit.policy.clone()]
                }
                _ => Vec::new(),
            })
            .collect();
        Self {
            allowed: self_traffic || rules_allowed,
            self_traffic,
            rules_allowed,
            egress,
            ingress,
            reason,
            direction,
            policies,
            notes,
            cni_policies: Vec::new(),
        }
    }

    /// The isolating policies of the denying direction(s), egress first (`policies` as keys).
    pub fn isolating_policies(&self) -> impl Iterator<Item = &ObjectRef> {
        isolating(&self.egress, &self.ingress)
    }

    /// The policies that deny, egress first: each denying direction's isolating
    /// NetworkPolicies, or the tiered policy whose rule denies it.
    pub fn denying_policies(&self) -> Vec<PolicyRef> {
        let mut out: Vec<PolicyRef> = Vec::new();
        for part in [&self.egress, &self.ingress] {
            let refs: Vec<PolicyRef> = match part {
                DirectionVerdict::Denied { policies } => policies
                    .iter()
                    .map(|p| PolicyRef::Namespaced(p.policy.clone()))
                    .collect(),
                DirectionVerdict::Tiered(hit) if hit.action != TierAction::Accept => {
                    vec![PolicyRef::Cluster(hit.policy.as_str().into())]
                }
                _ => Vec::new(),
            };
            for r in refs {
                if !out.contains(&r) {
                    out.push(r);
                }
            }
        }
        out
    }

    /// The policies that allow, egress first: the allowing NetworkPolicy rule's policy, or
    /// the tiered policy whose Accept rule decided the direction.
    pub fn allowing_policies(&self) -> Vec<PolicyRef> {
        let mut out: Vec<PolicyRef> = Vec::new();
        for part in [&self.egress, &self.ingress] {
            let by = match part {
                DirectionVerdict::Allowed { by, .. } => PolicyRef::Namespaced(by.policy.clone()),
                DirectionVerdict::Tiered(hit) if hit.action == TierAction::Accept => {
                    PolicyRef::Cluster(hit.policy.as_str().into())
                }
                _ => continue,
            };
            if !out.contains(&by) {
                out.push(by);
            }
        }
        out
    }

    /// `a CNI-native policy may apply (CiliumNetworkPolicy shop/l7)`, naming at most five
    /// (`... and 2 more`); `None` when none may apply.
    pub fn cni_policies_may_apply(&self) -> Option<String> {
        const NAMED: usize = 5;
        let names = &self.cni_policies;
        if names.is_empty() {
            return None;
        }
        let mut named = names
            .iter()
            .take(NAMED)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if names.len() > NAMED {
            named.push_str(&format!(" and {} more", names.len() - NAMED));
        }
        let which = if names.len() == 1 {
            "a CNI-native policy may apply"
        } else {
            "CNI-native policies may apply"
        };
        Some(format!("{which} ({named})"))
    }

    /// The closest rule of the denying direction, if any rule exists.
    pub fn closest_rule(&self) -> Option<(&ObjectRef, &RuleMiss)> {
        let part = match self.direction? {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        };
        match part {
            DirectionVerdict::Denied { policies } => closest_rule(policies),
            _ => None,
        }
    }
}

fn isolating<'a>(
    egress: &'a DirectionVerdict,
    ingress: &'a DirectionVerdict,
) -> impl Iterator<Item = &'a ObjectRef> {
    [egress, ingress].into_iter().flat_map(|part| {
        match part {
            DirectionVerdict::Denied { policies } => policies.as_slice(),
            _ => &[],
        }
        .iter()
        .map(|misses| &misses.policy)
    })
}

fn closest_rule(policies: &[PolicyMisses]) -> Option<(&ObjectRef, &RuleMiss)> {
    policies
        .iter()
        .flat_map(|p| p.rules.iter().map(move |r| (&p.policy, r)))
        .min_by_key(|(_, r)| r.closeness())
}

/// The reason of the closest rule; `default_deny` when no isolating policy has any rule.
fn closest_reason(policies: &[PolicyMisses]) -> Reason {
    closest_rule(policies).map_or(Reason::DefaultDeny, |(_, r)| r.reason())
}
