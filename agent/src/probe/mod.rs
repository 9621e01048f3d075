//! Probes from inside a pod's network namespace: TCP connect, UDP exchange, DNS lookup, each
//! classified into the bounded outcomes of docs/design.md.
//!
//! Data flow: [`Prober::probe_tcp`] / [`Prober::probe_udp`] -> a socket from the
//! [`SocketFactory`] (born in the pod netns, verified) -> `tcp` / `udp` on the normal tokio
//! runtime (`IP_RECVERR`, non-blocking connect or connected send/recv, bounded by a timeout,
//! latency from an `Instant`) -> on failure the error queue (`errqueue`) names the ICMP
//! message and sender -> `outcome::classify_errno` -> [`Observation`].
//! [`Prober::probe_dns`] goes through hickory-resolver with a runtime provider whose sockets
//! come from the same factory (`dns`); so does [`Prober::resolve_host`], which finds a host
//! target's addresses (A and AAAA) before they are probed.
//!
//! Rate limits (`docs/reference/probe-facts.md`): responders send ~1 ICMP error per second per
//! destination after a burst, so probe one pair at most about once a second
//! ([`PairSpacing`]) and give TCP at least 1.5 s, ideally [`DEFAULT_TCP_TIMEOUT`], so a SYN
//! retransmit can draw a fresh, rate-limited ICMP.

pub mod dns;
mod errqueue;
pub mod outcome;
mod spacing;
mod tcp;
mod udp;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Type};
use tracing::{Instrument, debug, debug_span, warn};

use crate::cluster::model::{Mesh, Protocol};
use crate::netns::{self, NetnsHandle, SocketFactory};

pub use dns::{DnsConfig, DnsError, Lookup};
pub use outcome::{Icmp, NotProbedReason, Observation, Outcome};
pub use spacing::{DEFAULT_PAIR_SPACING, Pair, PairSpacing};
pub use udp::{DNS_PORT, dns_query, payload_for};

/// TCP timeout: long enough for one SYN retransmit (1 s) to surface a rate-limited ICMP.
pub const DEFAULT_TCP_TIMEOUT: Duration = Duration::from_secs(3);
/// UDP: how long silence must last to count as `open_or_filtered`.
pub const DEFAULT_UDP_TIMEOUT: Duration = Duration::from_secs(2);
/// DNS: one attempt, this long.
pub const DEFAULT_DNS_TIMEOUT: Duration = Duration::from_secs(2);

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a probe could not run at all. What a probe observed, failures included, is an
/// [`Observation`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Netns(#[from] netns::Error),
    #[error("cannot register the probe socket with the runtime: {source}")]
    Runtime {
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Dns(#[from] DnsError),
}

impl Error {
    /// A bounded label for failure counters.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Netns(error) => error.metric_label(),
            Error::Runtime { .. } => "runtime",
            Error::Dns(error) => error.metric_label(),
        }
    }

    /// Why the probe did not run, as the pair's `not_probed` reason.
    pub fn not_probed_reason(&self) -> NotProbedReason {
        match self {
            Error::Netns(error) => NotProbedReason::from(error),
            Error::Runtime { source } => source
                .raw_os_error()
                .map_or(NotProbedReason::ProbeError, NotProbedReason::of_errno),
            Error::Dns(error) => error.not_probed_reason(),
        }
    }
}

/// Runs probes from pod namespaces. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Prober {
    factory: SocketFactory,
}

impl Prober {
    pub fn new(factory: SocketFactory) -> Self {
        Self { factory }
    }

    pub fn factory(&self) -> &SocketFactory {
        &self.factory
    }

    /// TCP connect from `netns` to `target`: `open`, `refused`, `timeout`, `unreachable` (with
    /// ICMP details) or `error`.
    pub async fn probe_tcp(
        &self,
        netns: &NetnsHandle,
        target: SocketAddr,
        timeout: Duration,
    ) -> Result<Observation> {
        let span = debug_span!("probe_tcp", %target, netns = netns.inode());
        self.probe_socket(netns, target, Type::STREAM, timeout)
            .instrument(span)
            .await
    }

    /// UDP exchange from `netns` to `target`: `open` (a reply), `refused`, `unreachable`,
    /// `open_or_filtered` (silence) or `error`.
    pub async fn probe_udp(
        &self,
        netns: &NetnsHandle,
        target: SocketAddr,
        timeout: Duration,
    ) -> Result<Observation> {
        let span = debug_span!("probe_udp", %target, netns = netns.inode());
        self.probe_socket(netns, target, Type::DGRAM, timeout)
            .instrument(span)
            .await
    }

    /// A probe of `target` over `protocol` from a source pod whose service mesh (if any)
    /// redirects outbound TCP to a local proxy. The TCP socket is made with the identity the
    /// mesh's own rules exempt, so the probe meets the network as the proxy's upstream
    /// connection does: the proxy's uid (Istio, Linkerd; fsuid set on the hop thread before
    /// `socket()`) or ztunnel's packet mark (Istio ambient; `SO_MARK`). Meshes redirect only
    /// TCP: UDP and SCTP go out as they are. When the identity cannot be taken (no
    /// CAP_SETUID, no CAP_NET_ADMIN) the probe runs anyway and is flagged
    /// `mesh_redirected`, so an `open` from the proxy never reads as reachability.
    pub async fn probe_from(
        &self,
        netns: &NetnsHandle,
        target: SocketAddr,
        protocol: Protocol,
        timeout: Duration,
        mesh: Option<Mesh>,
    ) -> Result<Observation> {
        match (protocol, mesh) {
            (Protocol::Udp, _) => self.probe_udp(netns, target, timeout).await,
            (Protocol::Sctp, _) => self.probe_sctp(netns, target, timeout).await,
            (Protocol::Tcp, None) => self.probe_tcp(netns, target, timeout).await,
            (Protocol::Tcp, Some(mesh)) => {
                let span = debug_span!("probe_tcp", %target, netns = netns.inode(), %mesh);
                self.probe_tcp_past(netns, target, timeout, mesh)
                    .instrument(span)
                    .await
            }
        }
    }

    async fn probe_tcp_past(
        &self,
        netns: &NetnsHandle,
        target: SocketAddr,
        timeout: Duration,
        mesh: Mesh,
    ) -> Result<Observation> {
        let domain = Domain::for_address(target);
        let ty = Type::STREAM.nonblocking();
        let (socket, bypassed) = match mesh {
            Mesh::Istio { uid, .. } | Mesh::Linkerd { uid } => {
                match self
                    .factory
                    .pooled_socket_as(netns, domain, ty, None, Some(uid))
                    .await
                {
                    Ok(socket) => (socket, true),
                    Err(netns::Error::Identity { fsuid }) => {
                        warn!(fsuid, %mesh, "cannot take the mesh proxy's uid: the probe goes through the proxy");
                        (
                            self.factory.pooled_socket(netns, domain, ty, None).await?,
                            false,
                        )
                    }
                    Err(error) => return Err(error.into()),
                }
            }
            Mesh::IstioAmbient => {
                let socket = self.factory.pooled_socket(netns, domain, ty, None).await?;
                let marked = socket.set_mark(Mesh::AMBIENT_MARK);
                if let Err(error) = &marked {
                    warn!(%error, "cannot mark the probe for ztunnel: the probe goes through it");
                }
                (socket, marked.is_ok())
            }
        };
        let mut observation = tcp::probe(socket, target, timeout).await?;
        if !bypassed {
            observation.mesh_redirected = true;
            observation.detail.push_str(&format!(
                " (through the {mesh} proxy: its redirect could not be bypassed)"
            ));
        }
        debug!(outcome = %observation.outcome, latency = ?observation.latency, bypassed, "probed");
        Ok(observation)
    }

    /// SCTP association from `netns` to `target` (one-to-one style socket, connected like
    /// TCP): INIT answered by INIT-ACK is `open`, an ABORT `refused`, silence `timeout`. On a
    /// kernel without SCTP the socket cannot be made: an error whose not-probed reason is
    /// `unsupported_protocol`, found at run time.
    pub async fn probe_sctp(
        &self,
        netns: &NetnsHandle,
        target: SocketAddr,
        timeout: Duration,
    ) -> Result<Observation> {
        let span = debug_span!("probe_sctp", %target, netns = netns.inode());
        self.probe_on(
            netns,
            target,
            Type::STREAM,
            Some(socket2::Protocol::SCTP),
            timeout,
        )
        .instrument(span)
        .await
    }

    /// One TCP (`STREAM`) or UDP (`DGRAM`) probe on a socket made in `netns`.
    async fn probe_socket(
        &self,
        netns: &NetnsHandle,
        target: SocketAddr,
        kind: Type,
        timeout: Duration,
    ) -> Result<Observation> {
        self.probe_on(netns, target, kind, None, timeout).await
    }

    /// A connect-style probe (`STREAM`: TCP or SCTP) or a UDP exchange (`DGRAM`).
    async fn probe_on(
        &self,
        netns: &NetnsHandle,
        target: SocketAddr,
        kind: Type,
        protocol: Option<socket2::Protocol>,
        timeout: Duration,
    ) -> Result<Observation> {
        let socket = self
            .factory
            .pooled_socket(
                netns,
                Domain::for_address(target),
                kind.nonblocking(),
                protocol,
            )
            .await?;
        let observation = if kind == Type::STREAM {
            tcp::probe(socket, target, timeout).await?
        } else {
            udp::probe(socket, target, timeout).await?
        };
        debug!(outcome = %observation.outcome, latency = ?observation.latency, "probed");
        Ok(observation)
    }

    /// DNS lookup of `name` (A records) from `netns` with the pod's resolver configuration:
    /// `resolved` (with answers), `nxdomain`, `servfail`, `dns_timeout` or `error`.
    pub async fn probe_dns(
        &self,
        netns: &NetnsHandle,
        config: &DnsConfig,
        name: &str,
        timeout: Duration,
    ) -> Result<Observation> {
        let span = debug_span!("probe_dns", %name, netns = netns.inode());
        self.lookup(netns, config, name, Lookup::ARecords, timeout)
            .instrument(span)
            .await
    }

    /// A host target's addresses: `name`'s A and AAAA records looked up from `netns` with the
    /// pod's resolver configuration, in parallel, within `timeout`. The outcomes are a DNS
    /// probe's; a `resolved` observation lists the addresses in `answers` (A first).
    pub async fn resolve_host(
        &self,
        netns: &NetnsHandle,
        config: &DnsConfig,
        name: &str,
        timeout: Duration,
    ) -> Result<Observation> {
        let span = debug_span!("resolve_host", %name, netns = netns.inode());
        self.lookup(netns, config, name, Lookup::HostAddresses, timeout)
            .instrument(span)
            .await
    }

    async fn lookup(
        &self,
        netns: &NetnsHandle,
        config: &DnsConfig,
        name: &str,
        lookup: Lookup,
        timeout: Duration,
    ) -> Result<Observation> {
        let observation = dns::probe(&self.factory, netns, config, name, lookup, timeout).await?;
        debug!(outcome = %observation.outcome, latency = ?observation.latency, "probed");
        Ok(observation)
    }
}

impl From<&netns::Error> for NotProbedReason {
    /// Why a probe that needed this netns or socket did not run: a netns that is gone or
    /// cannot be told apart is `netns_not_found`; running out of descriptors, memory or
    /// threads is `agent_overloaded`; a protocol the kernel lacks is `unsupported_protocol`.
    fn from(error: &netns::Error) -> Self {
        use netns::Error as E;
        let of_io = |source: &io::Error| {
            source
                .raw_os_error()
                .map_or(NotProbedReason::ProbeError, NotProbedReason::of_errno)
        };
        match error {
            E::Gone { .. }
            | E::NotANetns { .. }
            | E::PodNotFound { .. }
            | E::Ambiguous { .. }
            | E::PidReused { .. }
            | E::AddressNotLocal { .. }
            | E::WrongNetns { .. } => NotProbedReason::NetnsNotFound,
            E::Open { source, .. } | E::Proc { source, .. } => match of_io(source) {
                NotProbedReason::AgentOverloaded => NotProbedReason::AgentOverloaded,
                _ if source.raw_os_error() == Some(libc::ESRCH) => NotProbedReason::NetnsNotFound,
                _ => NotProbedReason::ProbeError,
            },
            E::Socket { source } | E::Verify { source } | E::Enter { source, .. } => of_io(source),
            E::Spawn { .. } => NotProbedReason::AgentOverloaded,
            E::BatchSize { .. }
            | E::HopFailed
            | E::ScanFailed
            | E::NotHome { .. }
            | E::Identity { .. } => NotProbedReason::ProbeError,
            E::PodFile(_) => NotProbedReason::PodFileUnreadable,
        }
    }
}
