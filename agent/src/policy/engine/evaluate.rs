//! Evaluating one flow: both directions, every policy, rule, peer and port.

use super::super::verdict::PolicyTier;
use super::tiers::TierQuery;
use super::*;

impl Engine {
    /// Evaluates one flow with a full explanation.
    pub fn evaluate(&self, flow: &Flow) -> Result<Verdict, ResolveError> {
        let src = self.resolve(&flow.from)?;
        let dst = match self.resolve(&flow.to) {
            Err(ResolveError::UnknownAddress(ip)) => {
                return self
                    .egress_denies_whoever(&src, ip, flow.port, flow.protocol)
                    .ok_or(ResolveError::UnknownAddress(ip));
            }
            resolved => resolved?,
        };
        Ok(self.evaluate_sides(&src, &dst, flow.port, flow.protocol))
    }

    /// A destination address a partial view does not know (it may be a pod it does not hold)
    /// can still be decided when the source's egress denies it whoever holds it: the source is
    /// egress-isolated and no rule could match a pod there that would not match the address
    /// (every rule's peers are ipBlocks, or invalid, and no rule names a port). The typical
    /// case: a default-deny egress, with DNS to a Service address the view does not hold.
    /// Then the verdict is the one for the address as external, with a note; else `None`.
    fn egress_denies_whoever(
        &self,
        src: &Side,
        ip: IpAddr,
        port: u16,
        protocol: Protocol,
    ) -> Option<Verdict> {
        let Side::Pod(s) = src else {
            return None;
        };
        let isolating = &self.egress_policies[*s];
        let pod_blind = |rule: &Rule, peers: &Vec<CompiledPeer>| {
            let named_port = rule.ports.iter().any(|p| {
                matches!(
                    p,
                    PolicyPort::Port {
                        port: Some(PortRef::Name(_)),
                        ..
                    }
                )
            });
            !named_port
                && !peers.is_empty()
                && peers
                    .iter()
                    .all(|p| matches!(p, CompiledPeer::IpBlock | CompiledPeer::Invalid))
        };
        let decidable = !isolating.is_empty()
            && isolating.iter().all(|&pid| {
                let policy = &self.policies[pid];
                policy
                    .policy
                    .egress
                    .iter()
                    .zip(&policy.egress)
                    .all(|(rule, peers)| pod_blind(rule, peers))
            });
        if !decidable {
            return None;
        }
        let mut verdict = self.evaluate_sides(src, &Side::External(ip), port, protocol);
        if verdict.egress.allows() {
            return None;
        }
        verdict.notes.push(format!(
            "{ip} is not in this agent's view (it may be a pod it does not watch); the source's egress denies it whoever holds it"
        ));
        Some(verdict)
    }

    pub(crate) fn evaluate_sides(
        &self,
        src: &Side,
        dst: &Side,
        port: u16,
        protocol: Protocol,
    ) -> Verdict {
        let self_traffic = match (src, dst) {
            (Side::Pod(a) | Side::HostPod(a), Side::Pod(b) | Side::HostPod(b)) => a == b,
            _ => self.ip_of(src, true) == self.ip_of(dst, true) && self.ip_of(src, true).is_some(),
        };
        let mut notes = Vec::new();
        let egress =
            self.direction_verdict(Direction::Egress, src, dst, port, protocol, &mut notes);
        let ingress =
            self.direction_verdict(Direction::Ingress, src, dst, port, protocol, &mut notes);
        if protocol == Protocol::Sctp && !self.profile.sctp {
            notes.push(format!(
                "implementation-defined: profile {} does not enforce SCTP",
                self.profile
            ));
        }
        for side in [src, dst] {
            if let Side::Pod(id) = side {
                notes.extend(
                    self.namespace_warnings[self.pod_namespace[*id]]
                        .iter()
                        .cloned(),
                );
            }
        }
        let mut cni_policies: Vec<String> = Vec::new();
        for side in [src, dst] {
            if let Side::Pod(id) = side {
                for name in &self.namespace_cni_policies[self.pod_namespace[*id]] {
                    if !cni_policies.contains(name) {
                        cni_policies.push(name.clone());
                    }
                }
            }
        }
        notes.dedup();
        let mut verdict = Verdict::new(self_traffic, egress, ingress, notes);
        verdict.cni_policies = cni_policies;
        if let Some(may_apply) = verdict.cni_policies_may_apply() {
            verdict.notes.push(format!(
                "incomplete: {may_apply}; netreach does not evaluate CNI-native policies, so they may block or allow what this prediction says"
            ));
        }
        verdict
    }

    /// What one direction decides: not restricting before any rule is read, or the walk of
    /// the isolating policies' rules.
    fn direction_verdict(
        &self,
        direction: Direction,
        src: &Side,
        dst: &Side,
        port: u16,
        protocol: Protocol,
        notes: &mut Vec<String>,
    ) -> DirectionVerdict {
        let tier = |tier: PolicyTier, notes: &mut Vec<String>| {
            TierQuery::of(self, tier, direction, (src, dst), port, protocol)
                .and_then(|query| self.tier_decision(&query, notes))
        };
        if let Some(hit) = tier(PolicyTier::Admin, notes) {
            return DirectionVerdict::Tiered(hit);
        }
        let network_policy = match self.rule_walk(direction, src, dst) {
            Err(Unrestricted::NotSubject(side)) => DirectionVerdict::NotApplicable {
                why: self.not_subject_why(side),
            },
            Err(Unrestricted::NotIsolated) => DirectionVerdict::NotIsolated,
            Err(Unrestricted::NodeLocal) => DirectionVerdict::NodeLocal,
            Ok(walk) => return self.decide(&walk, port, protocol, notes),
        };
        // No NetworkPolicy decides for this pod in this direction: the Baseline tier may.
        match tier(PolicyTier::Baseline, notes) {
            Some(hit) => DirectionVerdict::Tiered(hit),
            None => network_policy,
        }
    }

    /// The policies, endpoints and named-port pod one direction's rules are checked with, or
    /// why that direction does not restrict the flow at all. Shared by `decide` and the deny
    /// codes of the matrix, so both read the same rules.
    pub(super) fn rule_walk<'e, 's>(
        &'e self,
        direction: Direction,
        src: &'s Side,
        dst: &'s Side,
    ) -> Result<RuleWalk<'e, 's>, Unrestricted<'s>> {
        let (subject, peer) = match direction {
            Direction::Ingress => (dst, src),
            Direction::Egress => (src, dst),
        };
        let Side::Pod(id) = *subject else {
            return Err(Unrestricted::NotSubject(subject));
        };
        let isolating = match direction {
            Direction::Ingress => &self.ingress_policies[id],
            Direction::Egress => &self.egress_policies[id],
        };
        if isolating.is_empty() {
            return Err(Unrestricted::NotIsolated);
        }
        if self.is_node_of(peer, id) {
            return Err(Unrestricted::NodeLocal);
        }
        // A hostNetwork destination counts as its node, which has no named ports (E17, E22).
        let port_pod = match dst {
            Side::Pod(d) => Some(*d),
            _ => None,
        };
        Ok(RuleWalk {
            direction,
            isolating,
            subject,
            peer,
            port_pod,
        })
    }

    /// Walks the isolating policies' rules of one direction: the first rule that matches
    /// allows, else every rule's miss.
    pub(super) fn decide(
        &self,
        walk: &RuleWalk<'_, '_>,
        port: u16,
        protocol: Protocol,
        notes: &mut Vec<String>,
    ) -> DirectionVerdict {
        let family_v4 = self.flow_is_v4(walk.subject, walk.peer);
        let mut misses = Vec::with_capacity(walk.isolating.len());
        for &pid in walk.isolating {
            let compiled = &self.policies[pid];
            notes.extend(
                compiled
                    .policy
                    .warnings
                    .iter()
                    .map(|w| format!("{}: {w}", compiled.policy.key())),
            );
            let mut rule_misses = Vec::new();
            for (index, (rule, peers)) in compiled.rules(walk.direction).enumerate() {
                let port_check = self.check_ports(&rule.ports, port, protocol, walk.port_pod);
                let peer_check =
                    self.check_peers(compiled, &rule.peers, peers, walk.peer, family_v4);
                match (port_check, peer_check) {
                    (Ok(mut port_notes), Ok(mut peer_notes)) => {
                        notes.append(&mut port_notes);
                        notes.append(&mut peer_notes);
                        let isolating = walk
                            .isolating
                            .iter()
                            .map(|&i| self.policies[i].policy.key())
                            .collect();
                        return DirectionVerdict::Allowed {
                            by: RuleRef {
                                policy: compiled.policy.key(),
                                index,
                            },
                            tier: Tier::NetworkPolicy,
                            isolating,
                        };
                    }
                    (port, peer) => rule_misses.push(RuleMiss {
                        index,
                        port: port.err(),
                        peer: peer.err(),
                    }),
                }
            }
            misses.push(PolicyMisses {
                policy: compiled.policy.key(),
                rules: rule_misses,
            });
        }
        DirectionVerdict::Denied { policies: misses }
    }

    /// Whether `side` is the node that pod `pod` runs on (E21).
    pub(super) fn is_node_of(&self, side: &Side, pod: usize) -> bool {
        let Some(node) = self.pods[pod].node_name.as_deref() else {
            return false;
        };
        match side {
            Side::Node { name, .. } => name == node,
            Side::HostPod(h) => self.pods[*h].node_name.as_deref() == Some(node),
            _ => false,
        }
    }

    /// The address family of a flow (E19): IPv4 when both ends have an IPv4 address, else IPv6
    /// (a dual-stack pod talks to an IPv6-only pod over IPv6).
    pub(crate) fn flow_is_v4(&self, a: &Side, b: &Side) -> bool {
        self.has_v4(a) && self.has_v4(b)
    }

    pub(crate) fn has_v4(&self, side: &Side) -> bool {
        match side {
            Side::Pod(id) | Side::HostPod(id) => self.pods[*id].ips.iter().any(IpAddr::is_ipv4),
            Side::Node { ip, .. } | Side::External(ip) => ip.is_ipv4(),
        }
    }

    pub(crate) fn ip_of(&self, side: &Side, v4: bool) -> Option<IpAddr> {
        match side {
            Side::Pod(id) | Side::HostPod(id) => {
                let ips = &self.pods[*id].ips;
                ips.iter()
                    .copied()
                    .find(|ip| ip.is_ipv4() == v4)
                    .or_else(|| ips.first().copied())
            }
            Side::Node { ip, .. } | Side::External(ip) => Some(*ip),
        }
    }

    // === Ports ===

    /// Checks a rule's ports against the flow. `Ok` carries implementation-defined notes.
    pub(crate) fn check_ports(
        &self,
        ports: &[PolicyPort],
        port: u16,
        protocol: Protocol,
        dst_pod: Option<usize>,
    ) -> Result<Vec<String>, PortMiss> {
        if self.ports_match(ports, port, protocol, dst_pod) {
            Ok(Vec::new())
        } else {
            Err(self.port_miss(ports, port, protocol, dst_pod))
        }
    }

    /// A named container port of a destination pod (E17).
    pub(super) fn named_port_of(&self, pod: usize, name: &str, protocol: Protocol) -> Option<u16> {
        self.pods[pod].resolve_named_port(name, protocol)
    }

    /// Whether one of a rule's port entries covers the flow (E5, E14-E17). Allocation-free:
    /// the matrix calls it for every rule and destination.
    pub(crate) fn ports_match(
        &self,
        ports: &[PolicyPort],
        port: u16,
        protocol: Protocol,
        dst_pod: Option<usize>,
    ) -> bool {
        ports.is_empty()
            || ports.iter().any(|entry| match entry {
                PolicyPort::Invalid { .. } => false,
                PolicyPort::Port { protocol: p, .. } if *p != protocol => false,
                PolicyPort::Port { port: None, .. } => true,
                PolicyPort::Port {
                    port: Some(PortRef::Number(n)),
                    end_port: Some(end),
                    ..
                } if self.profile.end_port => (*n..=*end).contains(&port),
                PolicyPort::Port {
                    port: Some(PortRef::Number(n)),
                    ..
                } => port == *n,
                PolicyPort::Port {
                    port: Some(PortRef::Name(name)),
                    ..
                } => dst_pod
                    .and_then(|d| self.named_port_of(d, name, protocol))
                    .is_some_and(|resolved| resolved == port),
            })
    }

    // === Peers ===

    /// Checks a rule's peers against the other endpoint; on a miss keeps the closest peer.
    // The error is the explanation itself (wanted vs actual, as strings), built once per rule
    // miss; boxing it would only add an allocation.
    #[allow(clippy::result_large_err)]
    pub(crate) fn check_peers(
        &self,
        policy: &CompiledPolicy,
        peers: &[Peer],
        compiled: &[CompiledPeer],
        other: &Side,
        family_v4: bool,
    ) -> Result<Vec<String>, PeerMiss> {
        if peers.is_empty() {
            return Ok(Vec::new());
        }
        let mut best: Option<PeerMiss> = None;
        for (i, (peer, c)) in peers.iter().zip(compiled).enumerate() {
            let result = match (peer, c) {
                (
                    Peer::Pods {
                        pod_selector,
                        namespace_selector,
                    },
                    CompiledPeer::Pods {
                        pod_selector: ps,
                        namespace_selector: ns,
                    },
                ) => self.check_pod_peer(
                    policy,
                    i,
                    pod_selector.as_ref(),
                    namespace_selector.as_ref(),
                    *ps,
                    *ns,
                    other,
                ),
                (Peer::IpBlock(block), _) => self.check_ip_block(i, block, other, family_v4),
                (Peer::Invalid { reason }, _) => Err(PeerMiss::Invalid {
                    reason: reason.clone(),
                }),
                _ => Err(PeerMiss::Invalid {
                    reason: "internal: peer not compiled".into(),
                }),
            };
            match result {
                Ok(notes) => return Ok(notes),
                Err(miss) => {
                    if best.as_ref().is_none_or(|b| miss.rank() < b.rank()) {
                        best = Some(miss);
                    }
                }
            }
        }
        Err(best.unwrap_or(PeerMiss::Invalid {
            reason: "no peers".into(),
        }))
    }

    #[allow(clippy::too_many_arguments, clippy::result_large_err)]
    pub(super) fn check_pod_peer(
        &self,
        policy: &CompiledPolicy,
        peer: usize,
        pod_selector: Option<&Selector>,
        namespace_selector: Option<&Selector>,
        pod_sel_id: Option<usize>,
        ns_sel_id: Option<usize>,
        other: &Side,
    ) -> Result<Vec<String>, PeerMiss> {
        let id = match other {
            Side::Pod(id) => *id,
            other => {
                let endpoint = match other {
                    Side::HostPod(id) => format!(
                        "{} (hostNetwork; implementation-defined: profile {} does not select it by labels)",
                        self.pods[*id].key(),
                        self.profile
                    ),
                    Side::Node { name, ip } => format!("{ip} (node {name})"),
                    Side::External(ip) => format!("{ip} (not a pod)"),
                    Side::Pod(_) => unreachable!("handled above"),
                };
                return Err(PeerMiss::NotAPod { peer, endpoint });
            }
        };
        let ns = self.pod_namespace[id];
        match (namespace_selector, ns_sel_id) {
            (Some(sel), Some(sid)) => {
                if !self.namespace_selector_matches[sid].contains(ns) {
                    return Err(PeerMiss::NamespaceSelector {
                        peer,
                        selector: sel.to_string(),
                        namespace: self.namespaces[ns].clone(),
                        labels: display_labels(&self.namespace_labels[ns]),
                        pod_selector: pod_selector.map(ToString::to_string),
                    });
                }
            }
            _ => {
                if ns != policy.namespace {
                    return Err(PeerMiss::PolicyNamespaceOnly {
                        peer,
                        policy_namespace: policy.policy.namespace.clone(),
                        namespace: self.namespaces[ns].clone(),
                    });
                }
            }
        }
        if let (Some(sel), Some(sid)) = (pod_selector, pod_sel_id)
            && !self.pod_selector_matches[sid].contains(id)
        {
            let pod = &self.pods[id];
            return Err(PeerMiss::PodSelector {
                peer,
                selector: sel.to_string(),
                pod: pod.key(),
                labels: display_labels(&pod.labels),
                unmet: sel
                    .first_unmet(&pod.labels)
                    .map(|r| r.to_string())
                    .unwrap_or_default(),
                namespace_selector: namespace_selector.map(ToString::to_string),
            });
        }
        Ok(Vec::new())
    }

    // The error is the explanation itself (wanted vs actual, as strings), built once per rule
    // miss; boxing it would only add an allocation.

    #[allow(clippy::result_large_err)]
    pub(super) fn check_ip_block(
        &self,
        peer: usize,
        block: &crate::cluster::model::IpBlock,
        other: &Side,
        family_v4: bool,
    ) -> Result<Vec<String>, PeerMiss> {
        let render = || {
            let mut s = block.cidr.to_string();
            if !block.except.is_empty() {
                let ex: Vec<String> = block.except.iter().map(|e| e.to_string()).collect();
                s.push_str(&format!(" except {}", ex.join(", ")));
            }
            s
        };
        let Some(ip) = self.ip_of(other, family_v4) else {
            return Err(PeerMiss::IpBlock {
                peer,
                blocks: vec![render()],
                ip: "none".into(),
                excepted: false,
                notes: vec![],
            });
        };
        let mut notes = Vec::new();
        if let Side::Pod(id) = other {
            if !self.profile.ip_block_matches_pod_ips {
                return Err(PeerMiss::IpBlock {
                    peer,
                    blocks: vec![render()],
                    ip: ip.to_string(),
                    excepted: false,
                    notes: vec![format!(
                        "implementation-defined: profile {} does not match ipBlock against pod IPs ({} is pod {})",
                        self.profile,
                        ip,
                        self.pods[*id].key()
                    )],
                });
            }
            if block.contains(ip) {
                notes.push(format!(
                    "implementation-defined: ipBlock {} matched pod IP {ip} (profile {} matches pod IPs, as the upstream e2e suite requires)",
                    render(),
                    self.profile
                ));
                return Ok(notes);
            }
        } else if block.contains(ip) {
            return Ok(notes);
        }
        let excepted = block.cidr.contains(ip);
        Err(PeerMiss::IpBlock {
            peer,
            blocks: vec![render()],
            ip: ip.to_string(),
            excepted,
            notes,
        })
    }
}
