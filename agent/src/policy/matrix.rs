//! Every ordered pod pair at once. Per port, each destination gets the set of sources its
//! ingress rules admit and each source the set of destinations its egress rules admit (bit
//! sets over pods, built from the same port and peer checks `evaluate` uses); a cell is then
//! two bit tests. 1,000 x 1,000 pods is a few milliseconds.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::cluster::model::{Peer, Protocol};

use super::bitset::BitSet;
use super::engine::{CompiledPeer, Engine, Side};
use super::verdict::Direction;

/// A port and protocol to evaluate the matrix on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct MatrixPort {
    pub port: u16,
    pub protocol: Protocol,
}

/// One ordered pair on one port. `from`/`to` index `Engine::pods()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatrixCell {
    pub from: usize,
    pub to: usize,
    pub port: MatrixPort,
    pub allowed: bool,
    pub self_traffic: bool,
    pub rules_allowed: bool,
}

/// Peer sets per (policy, rule), per direction: which pods the rule's `from`/`to` admits.
struct PeerSets {
    ingress: Vec<Vec<BitSet>>,
    egress: Vec<Vec<BitSet>>,
}

impl Engine {
    /// Pods that can send or receive traffic (have an IP, not finished), in key order.
    pub fn endpoint_ids(&self) -> Vec<usize> {
        (0..self.pods.len())
            .filter(|&i| self.pods[i].is_endpoint())
            .collect()
    }

    /// Every distinct container port of the endpoint pods, sorted.
    pub fn container_ports(&self) -> Vec<MatrixPort> {
        let set: BTreeSet<MatrixPort> = self
            .endpoint_ids()
            .into_iter()
            .flat_map(|i| {
                self.pods[i].ports.iter().map(|p| MatrixPort {
                    port: p.port,
                    protocol: p.protocol,
                })
            })
            .collect();
        set.into_iter().collect()
    }

    /// The matrix on `ports`, every ordered pair of endpoint pods; with no ports, each
    /// destination on each of its own container ports.
    pub fn matrix(&self, ports: &[MatrixPort]) -> Vec<MatrixCell> {
        let mut cells = Vec::new();
        self.for_each_cell(ports, |cell| cells.push(cell));
        cells
    }

    /// Like [`Engine::matrix`] without collecting: calls `f` for each cell in order (port,
    /// source, destination).
    pub fn for_each_cell(&self, ports: &[MatrixPort], mut f: impl FnMut(MatrixCell)) {
        let result = self.try_for_each_cell(ports, |cell| {
            f(cell);
            Ok::<(), std::convert::Infallible>(())
        });
        match result {
            Ok(()) => {}
            Err(never) => match never {},
        }
    }

    /// Like [`Engine::for_each_cell`], stopping at the first error `f` returns (a writer that
    /// streams the cells out fails on a closed pipe).
    pub fn try_for_each_cell<E>(
        &self,
        ports: &[MatrixPort],
        mut f: impl FnMut(MatrixCell) -> Result<(), E>,
    ) -> Result<(), E> {
        let walk = MatrixWalk::new(self);
        let per_destination = ports.is_empty();
        let ports = if per_destination {
            self.container_ports()
        } else {
            ports.to_vec()
        };
        for port in ports {
            walk.try_for_each_on_port(port, per_destination, &mut f)?;
        }
        Ok(())
    }
}

/// What every port of a matrix shares, computed once: the endpoint pods, each rule's peer
/// set, which pods have IPv4. Walks one port at a time, so a caller can interleave two
/// engines port by port (`whatif`) or report progress.
pub struct MatrixWalk<'e> {
    engine: &'e Engine,
    endpoints: Vec<usize>,
    peer_sets: PeerSets,
    has_v4: Vec<bool>,
}

impl std::fmt::Debug for MatrixWalk<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MatrixWalk")
            .field("endpoints", &self.endpoints.len())
            .finish_non_exhaustive()
    }
}

impl<'e> MatrixWalk<'e> {
    pub fn new(engine: &'e Engine) -> Self {
        Self {
            engine,
            endpoints: engine.endpoint_ids(),
            peer_sets: engine.peer_sets(),
            has_v4: (0..engine.pods.len())
                .map(|i| engine.has_v4(&Side::Pod(i)))
                .collect(),
        }
    }

    /// The endpoint pods (sources of every port), in key order.
    pub fn endpoints(&self) -> &[usize] {
        &self.endpoints
    }

    /// The cells of one port in order (source, destination). `per_destination`: only the
    /// destinations that declare the port as a container port, else every endpoint pod.
    pub fn try_for_each_on_port<E>(
        &self,
        port: MatrixPort,
        per_destination: bool,
        f: &mut impl FnMut(MatrixCell) -> Result<(), E>,
    ) -> Result<(), E> {
        let engine = self.engine;
        let (endpoints, peer_sets, has_v4) = (&self.endpoints, &self.peer_sets, &self.has_v4);
        let destinations: Vec<usize> = if per_destination {
            endpoints
                .iter()
                .copied()
                .filter(|&d| {
                    engine.pods[d]
                        .ports
                        .iter()
                        .any(|p| p.port == port.port && p.protocol == port.protocol)
                })
                .collect()
        } else {
            endpoints.clone()
        };
        if destinations.is_empty() {
            // No cell on this port: skip each source's egress set (whatif walks the ports of
            // both sides, so a port only one side declares is empty on the other).
            return Ok(());
        }
        let ingress: Vec<BitSet> = destinations
            .iter()
            .map(|&d| engine.ingress_sources(d, port, peer_sets))
            .collect();
        for &s in endpoints {
            let egress = engine.egress_destinations(s, port, peer_sets);
            for (&d, admitted) in destinations.iter().zip(&ingress) {
                let mut rules_allowed = egress.contains(d) && admitted.contains(s);
                if has_v4[s] != has_v4[d] {
                    // The peer sets match ipBlocks on each pod's IPv4 address when it has one,
                    // but this pair can only talk IPv6 (E19): evaluate it on its own.
                    let (src, dst) = (engine.side_of_pod(s), engine.side_of_pod(d));
                    rules_allowed = engine
                        .evaluate_sides(&src, &dst, port.port, port.protocol)
                        .rules_allowed;
                } else if engine.is_tier_subject(s) || engine.is_tier_subject(d) {
                    // A cluster-scoped tier applies: the tiers decide around what the peer
                    // sets say NetworkPolicy decides.
                    let sides = (&engine.side_of_pod(s), &engine.side_of_pod(d));
                    rules_allowed = engine.tiered_direction_allows(
                        Direction::Egress,
                        sides,
                        port,
                        egress.contains(d),
                    ) && engine.tiered_direction_allows(
                        Direction::Ingress,
                        sides,
                        port,
                        admitted.contains(s),
                    );
                }
                let self_traffic = s == d;
                f(MatrixCell {
                    from: s,
                    to: d,
                    port,
                    allowed: rules_allowed || self_traffic,
                    self_traffic,
                    rules_allowed,
                })?;
            }
        }
        Ok(())
    }
}

impl Engine {
    fn peer_sets(&self) -> PeerSets {
        let sets = |rules: &[crate::cluster::model::Rule],
                    compiled: &[Vec<CompiledPeer>],
                    ns: usize|
         -> Vec<BitSet> {
            rules
                .iter()
                .zip(compiled)
                .map(|(rule, peers)| self.peer_set(&rule.peers, peers, ns))
                .collect()
        };
        PeerSets {
            ingress: self
                .policies
                .iter()
                .map(|p| sets(&p.policy.ingress, &p.ingress, p.namespace))
                .collect(),
            egress: self
                .policies
                .iter()
                .map(|p| sets(&p.policy.egress, &p.egress, p.namespace))
                .collect(),
        }
    }

    /// The pods a rule's peer list admits as the other endpoint.
    fn peer_set(&self, peers: &[Peer], compiled: &[CompiledPeer], policy_ns: usize) -> BitSet {
        let n = self.pods.len();
        if peers.is_empty() {
            return BitSet::full(n);
        }
        let mut admitted = BitSet::empty(n);
        for (peer, c) in peers.iter().zip(compiled) {
            match (peer, c) {
                (
                    Peer::Pods { .. },
                    CompiledPeer::Pods {
                        pod_selector,
                        namespace_selector,
                    },
                ) => {
                    for i in 0..n {
                        if !matches!(self.side_of_pod(i), Side::Pod(_)) {
                            continue;
                        }
                        let ns = self.pod_namespace[i];
                        let ns_ok = match namespace_selector {
                            Some(sid) => self.namespace_selector_matches[*sid].contains(ns),
                            None => ns == policy_ns,
                        };
                        let pod_ok = pod_selector
                            .is_none_or(|sid| self.pod_selector_matches[sid].contains(i));
                        if ns_ok && pod_ok {
                            admitted.insert(i);
                        }
                    }
                }
                (Peer::IpBlock(block), _) => {
                    for i in 0..n {
                        let side = self.side_of_pod(i);
                        if matches!(side, Side::Pod(_)) && !self.profile.ip_block_matches_pod_ips {
                            continue;
                        }
                        if self.ip_of(&side, true).is_some_and(|ip| block.contains(ip)) {
                            admitted.insert(i);
                        }
                    }
                }
                _ => {}
            }
        }
        admitted
    }

    fn ingress_sources(&self, d: usize, port: MatrixPort, peer_sets: &PeerSets) -> BitSet {
        let n = self.pods.len();
        let isolating = &self.ingress_policies[d];
        if !matches!(self.side_of_pod(d), Side::Pod(_)) || isolating.is_empty() {
            return BitSet::full(n);
        }
        let mut admitted = self.host_pods_on_node_of(d);
        for &pid in isolating {
            let policy = &self.policies[pid].policy;
            for (r, rule) in policy.ingress.iter().enumerate() {
                if self.ports_match(&rule.ports, port.port, port.protocol, Some(d)) {
                    admitted.union_with(&peer_sets.ingress[pid][r]);
                }
            }
        }
        admitted
    }

    fn egress_destinations(&self, s: usize, port: MatrixPort, peer_sets: &PeerSets) -> BitSet {
        let n = self.pods.len();
        let isolating = &self.egress_policies[s];
        if !matches!(self.side_of_pod(s), Side::Pod(_)) || isolating.is_empty() {
            return BitSet::full(n);
        }
        let mut admitted = self.host_pods_on_node_of(s);
        let mut port_ok = BitSet::empty(n);
        for &pid in isolating {
            let policy = &self.policies[pid].policy;
            for (r, rule) in policy.egress.iter().enumerate() {
                let named = rule.ports.iter().any(|p| {
                    matches!(
                        p,
                        crate::cluster::model::PolicyPort::Port {
                            port: Some(crate::cluster::model::PortRef::Name(_)),
                            ..
                        }
                    )
                });
                if named {
                    // Named ports resolve on each destination pod (E17).
                    port_ok.clear();
                    for d in 0..n {
                        // A hostNetwork destination counts as its node: no named ports (E22).
                        let dst_pod = matches!(self.side_of_pod(d), Side::Pod(_)).then_some(d);
                        if self.ports_match(&rule.ports, port.port, port.protocol, dst_pod) {
                            port_ok.insert(d);
                        }
                    }
                    let mut set = peer_sets.egress[pid][r].clone();
                    set.intersect_with(&port_ok);
                    admitted.union_with(&set);
                } else if self.ports_match(&rule.ports, port.port, port.protocol, None) {
                    admitted.union_with(&peer_sets.egress[pid][r]);
                }
            }
        }
        admitted
    }

    /// hostNetwork pods on the same node as `pod`: traffic with them is node-local (E21).
    fn host_pods_on_node_of(&self, pod: usize) -> BitSet {
        let mut set = BitSet::empty(self.pods.len());
        let Some(node) = self.pods[pod].node_name.as_deref() else {
            return set;
        };
        for (i, p) in self.pods.iter().enumerate() {
            if matches!(self.side_of_pod(i), Side::HostPod(_))
                && p.node_name.as_deref() == Some(node)
            {
                set.insert(i);
            }
        }
        set
    }
}

impl Engine {
    /// The full verdict of a matrix cell (for the reason of a denied pair).
    pub fn evaluate_cell(&self, cell: &MatrixCell) -> super::verdict::Verdict {
        self.evaluate_sides(
            &self.side_of_pod(cell.from),
            &self.side_of_pod(cell.to),
            cell.port.port,
            cell.port.protocol,
        )
    }

    /// The deny codes of a matrix cell, equal to [`Engine::evaluate_cell`]'s `reason`,
    /// `direction` and `policies` without building its explanation; `None` when the rules allow.
    pub fn cell_denial(&self, cell: &MatrixCell) -> Option<super::Denial<'_>> {
        self.denial_of_sides(
            &self.side_of_pod(cell.from),
            &self.side_of_pod(cell.to),
            cell.port.port,
            cell.port.protocol,
        )
    }
}
