//! The codes of a denied flow (reason, direction, isolating policies) without its explanation.
//!
//! `evaluate` renders every rule's miss as sentences (selectors, labels, wanted ports); the JSON
//! matrix prints only the codes, for up to millions of denied pairs. This is the same walk as
//! `evaluate` (same rule order, same closest-rule choice) keeping only kinds, with no
//! allocation. The tests hold it equal to [`Verdict`]'s `reason`, `direction` and `policies`.

use super::tiers::TierQuery;
use super::*;
use crate::policy::verdict::{
    PeerMissKind, PolicyTier, Reason, TierAction, miss_closeness, miss_reason,
};

/// Why the rules deny a flow, as codes: the fields the JSON matrix prints for a denied pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Denial<'a> {
    /// The reason of the closest rule of the denying direction.
    pub reason: Reason,
    /// The denying direction (ingress when both deny).
    pub direction: Direction,
    egress: DenyingPolicies<'a>,
    ingress: DenyingPolicies<'a>,
}

/// What denies one direction: its isolating NetworkPolicies, or a tiered policy's rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DenyingPolicies<'a> {
    NetworkPolicies(&'a [usize]),
    Tiered(usize),
}

impl DenyingPolicies<'_> {
    const NONE: Self = DenyingPolicies::NetworkPolicies(&[]);
}

impl Denial<'_> {
    /// Whether the rules of `direction` deny (both may; `direction` names the one reported).
    pub fn denies(&self, direction: Direction) -> bool {
        match self.side(direction) {
            DenyingPolicies::NetworkPolicies(ids) => !ids.is_empty(),
            DenyingPolicies::Tiered(_) => true,
        }
    }

    fn side(&self, direction: Direction) -> DenyingPolicies<'_> {
        match direction {
            Direction::Egress => self.egress,
            Direction::Ingress => self.ingress,
        }
    }

    /// The tiered policy (for [`Engine::tiered_key`]) whose rule denies `direction`, if one does.
    pub fn tiered_policy(&self, direction: Direction) -> Option<usize> {
        match self.side(direction) {
            DenyingPolicies::Tiered(id) => Some(id),
            DenyingPolicies::NetworkPolicies(_) => None,
        }
    }

    /// The denying policies' names, egress first: `Verdict::policies`.
    pub fn policy_names(&self, engine: &Engine) -> Vec<String> {
        [Direction::Egress, Direction::Ingress]
            .into_iter()
            .flat_map(|direction| match self.side(direction) {
                DenyingPolicies::NetworkPolicies(ids) => ids
                    .iter()
                    .map(|&id| engine.policy_key(id).to_string())
                    .collect::<Vec<_>>(),
                DenyingPolicies::Tiered(id) => vec![engine.tiered_key(id)],
            })
            .collect()
    }
}

impl Engine {
    /// `namespace/name` of a compiled policy.
    pub fn policy_key(&self, id: usize) -> ObjectRef {
        self.policies[id].policy.key()
    }

    /// [`Engine::evaluate_sides`] reduced to its deny codes; `None` when the rules allow.
    pub(crate) fn denial_of_sides(
        &self,
        src: &Side,
        dst: &Side,
        port: u16,
        protocol: Protocol,
    ) -> Option<Denial<'_>> {
        let egress = self.direction_denial(Direction::Egress, src, dst, port, protocol);
        let ingress = self.direction_denial(Direction::Ingress, src, dst, port, protocol);
        let (reason, direction) = match (ingress, egress) {
            (Some((reason, _)), _) => (reason, Direction::Ingress),
            (None, Some((reason, _))) => (reason, Direction::Egress),
            (None, None) => return None,
        };
        Some(Denial {
            reason,
            direction,
            egress: egress.map_or(DenyingPolicies::NONE, |(_, by)| by),
            ingress: ingress.map_or(DenyingPolicies::NONE, |(_, by)| by),
        })
    }

    /// One direction, as `direction_verdict` decides it: the Admin tier, NetworkPolicy's
    /// closest rule, the Baseline tier; the reason and what denies, when it denies.
    fn direction_denial(
        &self,
        direction: Direction,
        src: &Side,
        dst: &Side,
        port: u16,
        protocol: Protocol,
    ) -> Option<(Reason, DenyingPolicies<'_>)> {
        let tier = |tier: PolicyTier| {
            TierQuery::of(self, tier, direction, (src, dst), port, protocol)
                .and_then(|query| self.tier_walk(&query, &mut Vec::new()))
        };
        let tier_denial = |tier: PolicyTier, (pid, _, action): (usize, usize, TierAction)| {
            (action != TierAction::Accept).then_some((
                match tier {
                    PolicyTier::Admin => Reason::AdminDeny,
                    PolicyTier::Baseline => Reason::BaselineDeny,
                },
                DenyingPolicies::Tiered(pid),
            ))
        };
        if let Some(hit) = tier(PolicyTier::Admin) {
            return tier_denial(PolicyTier::Admin, hit);
        }
        if let Ok(walk) = self.rule_walk(direction, src, dst) {
            let reason = self.closest_miss(&walk, port, protocol)?;
            return Some((reason, DenyingPolicies::NetworkPolicies(walk.isolating)));
        }
        tier(PolicyTier::Baseline).and_then(|hit| tier_denial(PolicyTier::Baseline, hit))
    }

    /// Mirrors `decide`: `None` when a rule matches, else the reason of the closest rule
    /// (`default_deny` when the isolating policies have no rule for this direction).
    fn closest_miss(
        &self,
        walk: &RuleWalk<'_, '_>,
        port: u16,
        protocol: Protocol,
    ) -> Option<Reason> {
        // (closeness, reason) of the closest rule so far; the first of equals wins, as in
        // `Verdict::closest_rule`.
        let mut closest: Option<((u8, u8), Reason)> = None;
        for &pid in walk.isolating {
            let compiled = &self.policies[pid];
            for (rule, peers) in compiled.rules(walk.direction) {
                let port_miss = (!self.ports_match(&rule.ports, port, protocol, walk.port_pod))
                    .then(|| self.port_miss_reason(&rule.ports, protocol, walk.port_pod));
                let peer_miss = self.peer_miss_kind(compiled, &rule.peers, peers, walk);
                if port_miss.is_none() && peer_miss.is_none() {
                    return None;
                }
                let closeness = miss_closeness(port_miss.is_some(), peer_miss);
                if closest.is_none_or(|(best, _)| closeness < best) {
                    closest = Some((closeness, miss_reason(peer_miss, port_miss)));
                }
            }
        }
        Some(closest.map_or(Reason::DefaultDeny, |(_, reason)| reason))
    }

    /// Mirrors `port_miss`: the reason of a rule whose ports do not cover the flow.
    fn port_miss_reason(
        &self,
        ports: &[PolicyPort],
        protocol: Protocol,
        dst_pod: Option<usize>,
    ) -> Reason {
        let mut any_valid = false;
        let mut unresolved = false;
        for entry in ports {
            let PolicyPort::Port {
                protocol: p,
                port: want,
                ..
            } = entry
            else {
                continue;
            };
            any_valid = true;
            if let Some(PortRef::Name(name)) = want
                && *p == protocol
                && dst_pod
                    .and_then(|d| self.named_port_of(d, name, protocol))
                    .is_none()
            {
                unresolved = true;
            }
        }
        if !any_valid {
            Reason::InvalidRule
        } else if unresolved {
            Reason::NamedPortUnresolved
        } else {
            Reason::PortNotAllowed
        }
    }

    /// Mirrors `check_peers`: `None` when a peer admits the walk's other endpoint, else the
    /// closest miss.
    fn peer_miss_kind(
        &self,
        policy: &CompiledPolicy,
        peers: &[Peer],
        compiled: &[CompiledPeer],
        walk: &RuleWalk<'_, '_>,
    ) -> Option<PeerMissKind> {
        if peers.is_empty() {
            return None;
        }
        let mut best: Option<PeerMissKind> = None;
        for (peer, c) in peers.iter().zip(compiled) {
            let miss = match (peer, c) {
                (
                    Peer::Pods { .. },
                    CompiledPeer::Pods {
                        pod_selector,
                        namespace_selector,
                    },
                ) => self.pod_peer_miss(policy, *pod_selector, *namespace_selector, walk.peer),
                (Peer::IpBlock(block), _) => {
                    (!self.ip_block_admits(block, walk)).then_some(PeerMissKind::IpBlock)
                }
                _ => Some(PeerMissKind::Invalid),
            };
            let miss = miss?;
            if best.is_none_or(|b| miss.rank() < b.rank()) {
                best = Some(miss);
            }
        }
        Some(best.unwrap_or(PeerMissKind::Invalid))
    }

    /// Mirrors `check_pod_peer`.
    fn pod_peer_miss(
        &self,
        policy: &CompiledPolicy,
        pod_selector: Option<usize>,
        namespace_selector: Option<usize>,
        other: &Side,
    ) -> Option<PeerMissKind> {
        let Side::Pod(id) = *other else {
            return Some(PeerMissKind::NotAPod);
        };
        let ns = self.pod_namespace[id];
        let namespace_ok = match namespace_selector {
            Some(sid) => self.namespace_selector_matches[sid].contains(ns),
            None => ns == policy.namespace,
        };
        if !namespace_ok {
            return Some(PeerMissKind::Namespace);
        }
        if pod_selector.is_some_and(|sid| !self.pod_selector_matches[sid].contains(id)) {
            return Some(PeerMissKind::PodSelector);
        }
        None
    }

    /// Mirrors `check_ip_block`: whether the block admits the other endpoint's address.
    fn ip_block_admits(
        &self,
        block: &crate::cluster::model::IpBlock,
        walk: &RuleWalk<'_, '_>,
    ) -> bool {
        let other = walk.peer;
        if matches!(other, Side::Pod(_)) && !self.profile.ip_block_matches_pod_ips {
            return false;
        }
        // The address family is only needed here: most rules have no ipBlock.
        let family_v4 = self.flow_is_v4(walk.subject, other);
        self.ip_of(other, family_v4)
            .is_some_and(|ip| block.contains(ip))
    }
}
