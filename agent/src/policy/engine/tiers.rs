//! The cluster-scoped tiers around NetworkPolicy, per direction:
//!
//! ```text
//! Admin tier (by priority, rules in order): Accept -> allowed, nothing below is read
//!                                           Deny   -> denied
//!                                           Pass   -> leave the Admin tier
//!   └─> NetworkPolicy: final for a pod a policy isolates in this direction
//!         └─> Baseline tier (same walk)  └─> default allow
//! ```
//!
//! Subjects and `namespaces`/`pods` peers are pod-network pods only (hostNetwork pods never
//! are); `networks` match any address in the CIDRs, pod addresses included; `nodes` match a
//! node's addresses, so never a pod-network pod; `domainNames` cannot be decided by a static
//! evaluator and never match (with a note). A rule that did not validate fails closed: an
//! Accept rule matches nothing, a Deny or Pass rule denies everything.

use crate::cluster::tiered::{PolicyTier, TierAction, TieredPeer, TieredPolicy, TieredPort};

use super::super::verdict::TierHit;
use super::*;

/// One direction of a flow, asked of one tier.
#[derive(Clone, Copy, Debug)]
pub(super) struct TierQuery<'s> {
    pub(super) tier: PolicyTier,
    pub(super) direction: Direction,
    /// The pod the tier's policies must select (the destination for ingress).
    pub(super) subject: usize,
    /// The other end, matched against the rules' peers.
    pub(super) peer: &'s Side,
    pub(super) port: u16,
    pub(super) protocol: Protocol,
    /// The destination pod, on which named ports resolve.
    pub(super) port_pod: Option<usize>,
}

impl<'s> TierQuery<'s> {
    /// `direction` of the flow `src` -> `dst` for `tier`, when a tiered policy selects its
    /// subject (a pod-network pod).
    pub(super) fn of(
        engine: &Engine,
        tier: PolicyTier,
        direction: Direction,
        (src, dst): (&'s Side, &'s Side),
        port: u16,
        protocol: Protocol,
    ) -> Option<Self> {
        let (subject, peer) = match direction {
            Direction::Ingress => (dst, src),
            Direction::Egress => (src, dst),
        };
        let Side::Pod(subject) = *subject else {
            return None;
        };
        engine.is_tier_subject(subject).then_some(Self {
            tier,
            direction,
            subject,
            peer,
            port,
            protocol,
            port_pod: match dst {
                Side::Pod(d) => Some(*d),
                _ => None,
            },
        })
    }
}

impl Engine {
    /// The tiered policies in evaluation order (Admin by priority, then Baseline by priority;
    /// name breaks ties) and, per pod, the ones whose subject selects it.
    pub(super) fn compile_tiered(
        index: &Index,
        pods: &[Pod],
        pod_namespace: &[usize],
        namespace_labels: &[Labels],
    ) -> (Vec<TieredPolicy>, Vec<Vec<usize>>, Vec<TierPeerPods>) {
        let mut policies: Vec<TieredPolicy> = index.tiered_policies().cloned().collect();
        policies.sort_by_cached_key(|p| (p.tier, p.priority, p.key()));
        // The pod-network pods each `namespaces` / `pods` peer matches, once, so a walk over
        // a million cells reads a bit instead of matching labels.
        let peer_pods = |rules: &[crate::cluster::tiered::TieredRule]| -> Vec<Vec<Option<BitSet>>> {
            rules
                .iter()
                .map(|rule| {
                    rule.peers
                        .iter()
                        .map(|peer| {
                            let matches = |i: usize, pod: &Pod| {
                                let ns = &namespace_labels[pod_namespace[i]];
                                match peer {
                                    TieredPeer::Namespaces(sel) => Some(sel.matches(ns)),
                                    TieredPeer::Pods {
                                        namespace_selector,
                                        pod_selector,
                                    } => Some(
                                        namespace_selector.matches(ns)
                                            && pod_selector.matches(&pod.labels),
                                    ),
                                    _ => None,
                                }
                            };
                            if !matches!(peer, TieredPeer::Namespaces(_) | TieredPeer::Pods { .. })
                            {
                                return None;
                            }
                            let mut set = BitSet::empty(pods.len());
                            for (i, pod) in pods.iter().enumerate() {
                                if matches(i, pod) == Some(true) {
                                    set.insert(i);
                                }
                            }
                            Some(set)
                        })
                        .collect()
                })
                .collect()
        };
        let peer_sets: Vec<TierPeerPods> = policies
            .iter()
            .map(|policy| TierPeerPods {
                ingress: peer_pods(&policy.ingress),
                egress: peer_pods(&policy.egress),
            })
            .collect();
        let mut subject_of = vec![Vec::new(); pods.len()];
        for (pid, policy) in policies.iter().enumerate() {
            for (i, pod) in pods.iter().enumerate() {
                if pod.host_network {
                    continue;
                }
                let ns = &namespace_labels[pod_namespace[i]];
                let selected = match &policy.subject {
                    crate::cluster::tiered::TieredSubject::Namespaces(sel) => sel.matches(ns),
                    crate::cluster::tiered::TieredSubject::Pods {
                        namespace_selector,
                        pod_selector,
                    } => namespace_selector.matches(ns) && pod_selector.matches(&pod.labels),
                };
                if selected {
                    subject_of[i].push(pid);
                }
            }
        }
        (policies, subject_of, peer_sets)
    }

    /// Whether any tiered policy applies to the pod in either direction.
    pub(crate) fn is_tier_subject(&self, pod: usize) -> bool {
        !self.tier_subject_of[pod].is_empty()
    }

    /// The first decision of `query`'s tier: an Accept or Deny hit, or `None` when no rule
    /// matched or a Pass rule handed the flow on.
    pub(super) fn tier_decision(
        &self,
        query: &TierQuery<'_>,
        notes: &mut Vec<String>,
    ) -> Option<TierHit> {
        let (pid, index, action) = self.tier_walk(query, notes)?;
        let TierQuery {
            tier,
            direction,
            subject,
            ..
        } = *query;
        let policy = &self.tiered[pid];
        let rule = match direction {
            Direction::Ingress => &policy.ingress[index],
            Direction::Egress => &policy.egress[index],
        };
        let overlapping = self.tier_subject_of[subject].iter().any(|&other| {
            let o = &self.tiered[other];
            other != pid && o.tier == tier && o.priority == policy.priority
        });
        if overlapping {
            notes.push(format!(
                "implementation-defined: {} shares priority {} with another {tier} tier policy selecting this pod; which one is read first is up to the implementation",
                policy.key(),
                policy.priority,
            ));
        }
        Some(TierHit {
            tier,
            policy: policy.key(),
            priority: policy.priority,
            rule: rule.name.clone(),
            index,
            action,
            invalid: rule.invalid.clone(),
        })
    }

    /// The walk of [`Engine::tier_decision`] as ids: the tiered policy, the rule's index and
    /// its action (Accept or Deny; an invalid rule denies).
    pub(super) fn tier_walk(
        &self,
        query: &TierQuery<'_>,
        notes: &mut Vec<String>,
    ) -> Option<(usize, usize, TierAction)> {
        let TierQuery {
            tier,
            direction,
            subject,
            peer,
            port,
            protocol,
            port_pod,
        } = *query;
        for &pid in &self.tier_subject_of[subject] {
            let policy = &self.tiered[pid];
            if policy.tier != tier {
                continue;
            }
            let rules = match direction {
                Direction::Ingress => &policy.ingress,
                Direction::Egress => &policy.egress,
            };
            let peer_sets = match direction {
                Direction::Ingress => &self.tier_peer_pods[pid].ingress,
                Direction::Egress => &self.tier_peer_pods[pid].egress,
            };
            for (index, rule) in rules.iter().enumerate() {
                let matched = if rule.invalid.is_some() {
                    rule.action != TierAction::Accept
                } else {
                    self.tier_ports_match(rule.ports.as_deref(), port, protocol, port_pod)
                        && rule.peers.iter().zip(&peer_sets[index]).any(|(p, set)| {
                            match (set, peer) {
                                // Precomputed: a pod-network pod against a pod peer.
                                (Some(set), Side::Pod(pod)) => set.contains(*pod),
                                _ => self.tier_peer_matches(p, peer, notes),
                            }
                        })
                };
                if !matched {
                    continue;
                }
                return match (rule.invalid.is_some(), rule.action) {
                    (true, _) => Some((pid, index, TierAction::Deny)),
                    (false, TierAction::Pass) => None,
                    (false, action) => Some((pid, index, action)),
                };
            }
        }
        None
    }

    /// Whether one direction allows the flow `sides` (as `direction_verdict` decides it), given
    /// what NetworkPolicy alone says (`network_policy_allows`, from the matrix's peer sets):
    /// the Admin tier, then NetworkPolicy when it selects the pod, then the Baseline tier.
    pub(crate) fn tiered_direction_allows(
        &self,
        direction: Direction,
        sides: (&Side, &Side),
        port: crate::policy::MatrixPort,
        network_policy_allows: bool,
    ) -> bool {
        let decide = |tier: PolicyTier| {
            TierQuery::of(self, tier, direction, sides, port.port, port.protocol)
                .and_then(|query| self.tier_walk(&query, &mut Vec::new()))
                .map(|(_, _, action)| action == TierAction::Accept)
        };
        if let Some(allowed) = decide(PolicyTier::Admin) {
            return allowed;
        }
        if self.rule_walk(direction, sides.0, sides.1).is_ok() {
            return network_policy_allows;
        }
        decide(PolicyTier::Baseline).unwrap_or(network_policy_allows)
    }

    /// `Kind/name` of a tiered policy.
    /// How many tiered policies the engine holds (their ids are `0..count`).
    pub fn tiered_count(&self) -> usize {
        self.tiered.len()
    }

    pub fn tiered_key(&self, id: usize) -> String {
        self.tiered[id].key()
    }

    fn tier_ports_match(
        &self,
        ports: Option<&[TieredPort]>,
        port: u16,
        protocol: Protocol,
        port_pod: Option<usize>,
    ) -> bool {
        let Some(ports) = ports else {
            return true;
        };
        ports.iter().any(|p| match p {
            TieredPort::Number {
                protocol: want,
                port: number,
            } => *want == protocol && *number == port,
            TieredPort::Range {
                protocol: want,
                start,
                end,
            } => *want == protocol && (*start..=*end).contains(&port),
            TieredPort::Named(name) => port_pod.is_some_and(|pod| {
                self.pods[pod].ports.iter().any(|cp| {
                    cp.name.as_deref() == Some(name.as_str())
                        && cp.port == port
                        && cp.protocol == protocol
                })
            }),
        })
    }

    fn tier_peer_matches(&self, peer: &TieredPeer, side: &Side, notes: &mut Vec<String>) -> bool {
        let node_of = |side: &Side| -> Option<&Node> {
            match side {
                Side::HostPod(p) => {
                    let name = self.pods[*p].node_name.as_deref()?;
                    self.nodes.iter().find(|n| n.name == name)
                }
                Side::Node { name, .. } => self.nodes.iter().find(|n| &n.name == name),
                _ => None,
            }
        };
        match (peer, side) {
            (TieredPeer::Namespaces(sel), Side::Pod(p)) => {
                sel.matches(&self.namespace_labels[self.pod_namespace[*p]])
            }
            (
                TieredPeer::Pods {
                    namespace_selector,
                    pod_selector,
                },
                Side::Pod(p),
            ) => {
                namespace_selector.matches(&self.namespace_labels[self.pod_namespace[*p]])
                    && pod_selector.matches(&self.pods[*p].labels)
            }
            (TieredPeer::Namespaces(_) | TieredPeer::Pods { .. }, _) => false,
            (TieredPeer::Networks(cidrs), side) => {
                let addresses: Vec<IpAddr> = match side {
                    Side::Pod(p) | Side::HostPod(p) => self.pods[*p].ips.clone(),
                    Side::Node { ip, .. } | Side::External(ip) => vec![*ip],
                };
                addresses
                    .iter()
                    .any(|ip| cidrs.iter().any(|c| c.contains(*ip)))
            }
            (TieredPeer::Nodes(sel), side) => node_of(side).is_some_and(|n| sel.matches(&n.labels)),
            (TieredPeer::DomainNames(names), Side::External(ip)) => {
                notes.push(format!(
                    "implementation-defined: whether {ip} is one of the domain names {} depends on DNS at the time of the connection; netreach does not match it",
                    names.join(", ")
                ));
                false
            }
            (TieredPeer::DomainNames(_), _) => false,
        }
    }
}

/// The pods each `namespaces` / `pods` peer of a tiered policy's rules matches (`None` for
/// the other peer kinds), per direction, rule and peer.
#[derive(Clone, Debug, Default)]
pub(crate) struct TierPeerPods {
    pub(crate) ingress: Vec<Vec<Option<BitSet>>>,
    pub(crate) egress: Vec<Vec<Option<BitSet>>>,
}
