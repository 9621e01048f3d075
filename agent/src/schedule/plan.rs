//! Pair planning: a spec (ProbeSpec or ClusterProbeSpec) + index + this node's name -> the
//! pairs this node probes.
//!
//! 1. Source pods: `from.podSelector` in the namespaces of [`source_namespaces`] (a
//!    ProbeSpec's own namespace only; a ClusterProbeSpec's `from.namespaceSelector`, absent
//!    meaning every namespace), cluster-wide.
//! 2. Destination entries, independent of the source: each pod target's pods x ports (named
//!    ports resolved on each destination pod), each ip/host target's ports, each dns name;
//!    duplicates (two targets naming the same pod and port) collapse.
//! 3. Pods that cannot take part (terminating, not Running, no IP; hostNetwork sources) are
//!    left out and counted in [`Skipped`], never reported as failures. Self pairs too.
//! 4. Stable sampling: every cluster-wide candidate pair is ranked by a stable hash of (spec,
//!    source, destination) — its [`PairId`] — and the `maxPairs` lowest are kept. Every agent
//!    computes the same ranking from the same index, so together they probe exactly the
//!    sample, without talking to each other.
//! 5. This node keeps the sampled pairs whose source pod runs on it.

use std::collections::{BTreeSet, BinaryHeap, HashSet};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use probe_spec::{Expectation, PortSpec, ProbeSpecSpec, TargetKind};

use crate::cluster::model::{ObjectRef, Pod, PodPhase, PortRef, Protocol};
use crate::cluster::{Index, Selector, Spec, SpecRef};

use super::sources::{Narrowed, namespaces, selector, source_namespaces};
use super::{Error, Result};
use crate::pair::hash::combine;
use crate::pair::{Pair, PairId, PairTarget, source_hash};

// === Skipping ===

/// Why a pod takes no part in probing. Not failures: nothing is reported for them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// `metadata.deletionTimestamp` is set.
    Terminating,
    /// Phase is not Running (Pending, Succeeded, Failed, Unknown).
    NotRunning,
    NoIp,
    /// A hostNetwork source has no netns of its own: its probes would meet no pod policy.
    HostNetwork,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Terminating => "terminating",
            SkipReason::NotRunning => "not_running",
            SkipReason::NoIp => "no_ip",
            SkipReason::HostNetwork => "host_network",
        }
    }
}

/// Whether a pod can be probed from (`as_source`) or to; the first reason that holds.
pub fn eligibility(pod: &Pod, as_source: bool) -> Result<(), SkipReason> {
    if pod.terminating {
        Err(SkipReason::Terminating)
    } else if pod.phase != PodPhase::Running {
        Err(SkipReason::NotRunning)
    } else if pod.ips.is_empty() {
        Err(SkipReason::NoIp)
    } else if as_source && pod.host_network {
        Err(SkipReason::HostNetwork)
    } else {
        Ok(())
    }
}

/// Pods left out, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SkipCounts {
    pub terminating: usize,
    pub not_running: usize,
    pub no_ip: usize,
    pub host_network: usize,
}

impl SkipCounts {
    pub fn get(&self, reason: SkipReason) -> usize {
        match reason {
            SkipReason::Terminating => self.terminating,
            SkipReason::NotRunning => self.not_running,
            SkipReason::NoIp => self.no_ip,
            SkipReason::HostNetwork => self.host_network,
        }
    }

    pub fn total(&self) -> usize {
        self.terminating + self.not_running + self.no_ip + self.host_network
    }

    fn add(&mut self, reason: SkipReason) {
        let count = match reason {
            SkipReason::Terminating => &mut self.terminating,
            SkipReason::NotRunning => &mut self.not_running,
            SkipReason::NoIp => &mut self.no_ip,
            SkipReason::HostNetwork => &mut self.host_network,
        };
        *count += 1;
    }
}

/// What a plan left out, and why. None of it is a failure.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Selected source pods on this node that are not probed from.
    pub sources: SkipCounts,
    /// Selected destination pods (cluster-wide, each counted once) that are not probed.
    pub destinations: SkipCounts,
    /// (destination pod, named port) combinations the pod does not declare.
    pub unresolved_ports: usize,
    /// Cluster-wide pairs whose source is also the destination (always allowed, E20).
    pub self_pairs: usize,
    /// Cluster-wide candidate pairs beyond `maxPairs`.
    pub sampled_out: usize,
}

// === Plan ===

/// The pairs of one spec that this node probes.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub spec: SpecRef,
    pub interval: Duration,
    pub timeout: Duration,
    pub expect: Expectation,
    /// This node's share of the sample, sorted by id.
    pub pairs: Vec<Pair>,
    /// Cluster-wide candidate pairs before sampling.
    pub candidates: usize,
    /// Cluster-wide pairs in the sample (at most `maxPairs`); `pairs` is this node's share.
    pub sampled: usize,
    pub skipped: Skipped,
    /// The namespaces a ProbeSpec's `from.namespaceSelector` reaches besides its own, left out.
    pub narrowed: Option<Narrowed>,
}

/// A destination of the spec, computed once and crossed with every source.
struct Destination {
    target: PairTarget,
    hash: u64,
}

/// Plans the pairs of `spec` whose source pod runs on `node`.
pub fn plan(index: &Index, spec: &Spec, node: &str) -> Result<Plan> {
    let Spec {
        key: spec_ref,
        spec,
        ..
    } = spec;
    let duration = |field: &'static str, value: &str| {
        probe_spec::parse_duration(value).map_err(|source| Error::InvalidDuration {
            spec: spec_ref.clone(),
            field,
            source,
        })
    };
    let interval = duration("spec.interval", &spec.interval)?;
    let timeout = duration("spec.timeout", &spec.timeout)?;

    let mut skipped = Skipped::default();
    let (sources, narrowed) = select_sources(index, spec, spec_ref, node, &mut skipped)?;
    let destinations = select_destinations(index, spec, spec_ref, &mut skipped)?;

    // Rank every cluster-wide candidate and keep the `maxPairs` lowest ids (a max-heap of
    // the current best bounds memory by maxPairs, not by the candidate count).
    let max_pairs = spec.max_pairs as usize;
    let mut best: BinaryHeap<(u64, usize, usize)> = BinaryHeap::with_capacity(max_pairs + 1);
    let mut candidates = 0usize;
    // One key per source, shared by all its pairs.
    let source_keys: Vec<ObjectRef> = sources.iter().map(|pod| pod.key()).collect();
    for (s, key) in source_keys.iter().enumerate() {
        let from_hash = source_hash(spec_ref, key);
        for (d, destination) in destinations.iter().enumerate() {
            if destination.target.pod() == Some(key) {
                skipped.self_pairs += 1;
                continue;
            }
            candidates += 1;
            let id = combine(from_hash, destination.hash);
            if best.len() < max_pairs {
                best.push((id, s, d));
            } else if best.peek().is_some_and(|&(worst, _, _)| id < worst) {
                best.pop();
                best.push((id, s, d));
            }
        }
    }
    let sampled = best.len();
    skipped.sampled_out = candidates - sampled;

    let mut pairs: Vec<Pair> = best
        .into_iter()
        .filter(|&(_, s, _)| sources[s].node_name.as_deref() == Some(node))
        .map(|(id, s, d)| Pair {
            id: PairId(id),
            spec: spec_ref.clone(),
            from: source_keys[s].clone(),
            target: destinations[d].target.clone(),
        })
        .collect();
    pairs.sort_by_key(|p| p.id);
    Ok(Plan {
        spec: spec_ref.clone(),
        interval,
        timeout,
        expect: spec.expect,
        pairs,
        candidates,
        sampled,
        skipped,
        narrowed,
    })
}

/// Eligible source pods, cluster-wide, in key order, and what narrowing left out; counts this
/// node's skipped sources.
fn select_sources<'a>(
    index: &'a Index,
    spec: &ProbeSpecSpec,
    spec_ref: &SpecRef,
    node: &str,
    skipped: &mut Skipped,
) -> Result<(Vec<&'a Pod>, Option<Narrowed>)> {
    let from = &spec.from;
    let pod_selector = selector(spec_ref, "spec.from.podSelector".into(), &from.pod_selector)?;
    let namespaces = source_namespaces(index, spec_ref, from)?;
    let mut sources = Vec::new();
    for pod in index.pods() {
        if !namespaces.namespaces.contains(&pod.namespace) || !pod_selector.matches(&pod.labels) {
            continue;
        }
        match eligibility(pod, true) {
            Ok(()) => sources.push(pod),
            Err(reason) if pod.node_name.as_deref() == Some(node) => skipped.sources.add(reason),
            Err(_) => {}
        }
    }
    Ok((sources, namespaces.narrowed))
}

/// Every destination of the spec, deduplicated, in spec order.
fn select_destinations(
    index: &Index,
    spec: &ProbeSpecSpec,
    spec_ref: &SpecRef,
    skipped: &mut Skipped,
) -> Result<Vec<Destination>> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut skipped_pods: BTreeSet<(SkipReason, ObjectRef)> = BTreeSet::new();
    let mut push = |target: PairTarget| {
        let hash = target.identity_hash();
        if seen.insert(hash) {
            out.push(Destination { target, hash });
        }
    };
    for (t, target) in spec.to.iter().enumerate() {
        let kind = target.kind().ok_or_else(|| Error::InvalidTarget {
            spec: spec_ref.clone(),
            index: t,
        })?;
        match kind {
            TargetKind::Pods {
                pod_selector,
                namespace_selector,
                ports,
            } => {
                let pod_selector = match pod_selector {
                    Some(sel) => selector(spec_ref, format!("spec.to[{t}].podSelector"), sel)?,
                    None => Selector::everything(),
                };
                let namespaces = namespaces(
                    index,
                    spec_ref,
                    format!("spec.to[{t}].namespaceSelector"),
                    namespace_selector,
                )?;
                for pod in index.pods() {
                    if !namespaces.contains(&pod.namespace) || !pod_selector.matches(&pod.labels) {
                        continue;
                    }
                    if let Err(reason) = eligibility(pod, false) {
                        skipped_pods.insert((reason, pod.key()));
                        continue;
                    }
                    for (p, port) in ports.iter().enumerate() {
                        let protocol = Protocol::from(port.protocol);
                        let number = match &port.port {
                            IntOrString::String(name) => {
                                match pod.resolve_named_port(name, protocol) {
                                    Some(number) => number,
                                    None => {
                                        skipped.unresolved_ports += 1;
                                        continue;
                                    }
                                }
                            }
                            IntOrString::Int(_) => port_number(spec_ref, t, p, port)?,
                        };
                        push(PairTarget::Pod {
                            pod: pod.key(),
                            ip: pod.ips[0],
                            port: number,
                            protocol,
                        });
                    }
                }
            }
            TargetKind::Ip { ip, ports } => {
                // The CRD schema only checks the syntax: loopback, cloud metadata and the
                // like are refused here too, whoever created the spec.
                if let Some(message) = probe_spec::refused_target_message(ip) {
                    return Err(Error::RefusedTarget {
                        spec: spec_ref.clone(),
                        index: t,
                        message,
                    });
                }
                for (p, port) in ports.iter().enumerate() {
                    push(PairTarget::Ip {
                        ip,
                        port: port_number(spec_ref, t, p, port)?,
                        protocol: Protocol::from(port.protocol),
                    });
                }
            }
            TargetKind::Host { host, ports } => {
                for (p, port) in ports.iter().enumerate() {
                    push(PairTarget::Host {
                        name: host.into(),
                        port: port_number(spec_ref, t, p, port)?,
                        protocol: Protocol::from(port.protocol),
                    });
                }
            }
            TargetKind::Service { service, ports } => {
                let namespace = match (&service.namespace, spec_ref.namespace()) {
                    (Some(ns), _) => ns.as_str(),
                    (None, Some(own)) => own,
                    (None, None) => {
                        return Err(Error::ServiceNamespace {
                            spec: spec_ref.clone(),
                            index: t,
                        });
                    }
                };
                let key = ObjectRef::new(namespace, service.name.as_str());
                for (p, port) in ports.iter().enumerate() {
                    let protocol = Protocol::from(port.protocol);
                    let number = match &port.port {
                        // A Service port name resolves on the Service, when it is known.
                        IntOrString::String(name) => {
                            let resolved = index.service(&key).and_then(|svc| {
                                svc.port(&PortRef::Name(name.clone()), protocol)
                                    .map(|p| p.port)
                            });
                            match resolved {
                                Some(number) => number,
                                None => {
                                    skipped.unresolved_ports += 1;
                                    continue;
                                }
                            }
                        }
                        IntOrString::Int(_) => port_number(spec_ref, t, p, port)?,
                    };
                    push(PairTarget::Service {
                        service: key.clone(),
                        port: number,
                        protocol,
                    });
                }
            }
            TargetKind::Dns(name) => push(PairTarget::Dns { name: name.into() }),
        }
    }
    for (reason, _) in skipped_pods {
        skipped.destinations.add(reason);
    }
    Ok(out)
}

/// A numeric port in 1..=65535; a name here means a named port on a non-pod target.
fn port_number(spec: &SpecRef, target: usize, index: usize, port: &PortSpec) -> Result<u16> {
    match &port.port {
        IntOrString::Int(n) => u16::try_from(*n).ok().filter(|n| *n != 0),
        IntOrString::String(_) => None,
    }
    .ok_or_else(|| Error::InvalidPort {
        spec: spec.clone(),
        field: format!("spec.to[{target}].ports[{index}].port"),
        value: match &port.port {
            IntOrString::Int(n) => n.to_string(),
            IntOrString::String(s) => format!("{s:?}"),
        },
    })
}

#[cfg(test)]
mod tests;
