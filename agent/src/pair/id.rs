//! A pair and its identity: what one probe goes from and to, and the stable [`PairId`] every
//! agent computes alike (the sampling rank of [`crate::schedule::plan()`], the key of the
//! timetable).

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use crate::cluster::SpecRef;
use crate::cluster::model::{ObjectRef, Protocol};

use super::hash::{StableHasher, combine};

/// A pair's identity: a stable hash of (spec, source pod, destination). The same on every node
/// and across agent versions; it is also the pair's sampling rank.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PairId(pub u64);

impl fmt::Display for PairId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// One thing to probe: from a source pod (in its netns) to a target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pair {
    pub id: PairId,
    /// The ProbeSpec or ClusterProbeSpec this pair comes from.
    pub spec: SpecRef,
    /// The source pod; the probe runs in its network namespace.
    pub from: ObjectRef,
    pub target: PairTarget,
}

impl fmt::Display for Pair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}", self.from, self.target)
    }
}

/// Where a pair probes to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PairTarget {
    /// A destination pod at its (first) IP; a named port is already resolved on that pod.
    Pod {
        pod: ObjectRef,
        ip: IpAddr,
        port: u16,
        protocol: Protocol,
    },
    Ip {
        ip: IpAddr,
        port: u16,
        protocol: Protocol,
    },
    /// A host name, resolved from the source pod at probe time, then probed on a port.
    Host {
        name: Arc<str>,
        port: u16,
        protocol: Protocol,
    },
    /// A DNS name to resolve from the source pod with its own resolv.conf.
    Dns { name: Arc<str> },
    /// A Service port: probed through the ClusterIP, and each ready endpoint directly.
    Service {
        service: ObjectRef,
        /// The Service port (not a targetPort).
        port: u16,
        protocol: Protocol,
    },
}

impl PairTarget {
    /// The Service, for Service targets.
    pub fn service(&self) -> Option<&ObjectRef> {
        match self {
            PairTarget::Service { service, .. } => Some(service),
            _ => None,
        }
    }

    /// The destination pod, for pod targets.
    pub fn pod(&self) -> Option<&ObjectRef> {
        match self {
            PairTarget::Pod { pod, .. } => Some(pod),
            _ => None,
        }
    }

    /// The address probed, when it is known before probing.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            PairTarget::Pod { ip, .. } | PairTarget::Ip { ip, .. } => Some(*ip),
            PairTarget::Host { .. } | PairTarget::Dns { .. } | PairTarget::Service { .. } => None,
        }
    }

    /// The name of a host or DNS target.
    pub fn name(&self) -> Option<&str> {
        match self {
            PairTarget::Host { name, .. } | PairTarget::Dns { name } => Some(name),
            PairTarget::Pod { .. } | PairTarget::Ip { .. } | PairTarget::Service { .. } => None,
        }
    }

    /// Port and protocol; `None` for DNS targets.
    pub fn port(&self) -> Option<(u16, Protocol)> {
        match self {
            PairTarget::Pod { port, protocol, .. }
            | PairTarget::Ip { port, protocol, .. }
            | PairTarget::Host { port, protocol, .. }
            | PairTarget::Service { port, protocol, .. } => Some((*port, *protocol)),
            PairTarget::Dns { .. } => None,
        }
    }

    /// The identity hash of the destination, without the pod IP (a recreated pod keeps its
    /// pairs and their sampling rank).
    pub(crate) fn identity_hash(&self) -> u64 {
        let mut h = StableHasher::new("netreach/target/v1");
        match self {
            PairTarget::Pod {
                pod,
                port,
                protocol,
                ..
            } => h
                .str("pod")
                .str(&pod.namespace)
                .str(&pod.name)
                .u64(u64::from(*port))
                .str(protocol.as_str()),
            PairTarget::Ip { ip, port, protocol } => h
                .str("ip")
                .str(&ip.to_string())
                .u64(u64::from(*port))
                .str(protocol.as_str()),
            PairTarget::Host {
                name,
                port,
                protocol,
            } => h
                .str("host")
                .str(name)
                .u64(u64::from(*port))
                .str(protocol.as_str()),
            PairTarget::Dns { name } => h.str("dns").str(name),
            PairTarget::Service {
                service,
                port,
                protocol,
            } => h
                .str("service")
                .str(&service.namespace)
                .str(&service.name)
                .u64(u64::from(*port))
                .str(protocol.as_str()),
        };
        h.finish()
    }
}

impl fmt::Display for PairTarget {
    /// `payments/gateway:8443/TCP`, `192.0.2.10:443/TCP`, `[fd00::1]:53/UDP`, `dns NAME`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PairTarget::Pod {
                pod,
                port,
                protocol,
                ..
            } => write!(f, "{pod}:{port}/{protocol}"),
            PairTarget::Ip {
                ip: IpAddr::V6(ip),
                port,
                protocol,
            } => write!(f, "[{ip}]:{port}/{protocol}"),
            PairTarget::Ip { ip, port, protocol } => write!(f, "{ip}:{port}/{protocol}"),
            PairTarget::Host {
                name,
                port,
                protocol,
            } => write!(f, "{name}:{port}/{protocol}"),
            PairTarget::Dns { name } => write!(f, "dns {name}"),
            PairTarget::Service {
                service,
                port,
                protocol,
            } => write!(f, "svc {service}:{port}/{protocol}"),
        }
    }
}

/// The identity of (spec, source pod): combined with a target's hash into the [`PairId`].
/// A ProbeSpec hashes as it always has (ids stay stable across agent versions); a
/// ClusterProbeSpec hashes in its own domain, so it never shares ids with a ProbeSpec.
pub(crate) fn source_hash(spec: &SpecRef, from: &ObjectRef) -> u64 {
    let mut h = match spec {
        SpecRef::Namespaced(spec) => {
            let mut h = StableHasher::new("netreach/pair/v1");
            h.str(&spec.namespace).str(&spec.name);
            h
        }
        SpecRef::Cluster(name) => {
            let mut h = StableHasher::new("netreach/cluster-pair/v1");
            h.str(name);
            h
        }
    };
    h.str(&from.namespace).str(&from.name).finish()
}

/// The id of a pair; [`crate::schedule::plan()`] uses the same function, so callers can name a
/// pair directly.
pub fn pair_id(spec: &SpecRef, from: &ObjectRef, target: &PairTarget) -> PairId {
    PairId(combine(source_hash(spec, from), target.identity_hash()))
}
