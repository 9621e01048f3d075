//! What a probe observed: the bounded [`Outcome`], the ICMP message behind an error, and the
//! pure classification from errno (+ error-queue ICMP) to outcome. No I/O.
//!
//! Classification (`docs/reference/probe-facts.md`, "Outcome classification"):
//!
//! | result | outcome |
//! |---|---|
//! | connected / reply | `open` |
//! | `ECONNREFUSED` (RST, or ICMP port-unreachable) | `refused` |
//! | `EHOSTUNREACH`, `ENETUNREACH` | `unreachable`, refined by the ICMP type/code/sender |
//! | our TCP timeout, kernel `ETIMEDOUT` | `timeout` |
//! | UDP silence | `open_or_filtered` |
//! | anything else | `error` (errno kept) |
//!
//! An ICMP "administratively prohibited" (v4 type 3 code 13, or 9/10; v6 type 1 code 1) marks
//! the observation `rejected_by_policy`, whoever sent it: a target's own firewall answers from
//! the target's address, enforcement on a node or router from that hop's address.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// The bounded result of one probe (docs/design.md, "Probing").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    Open,
    Refused,
    Timeout,
    Unreachable,
    OpenOrFiltered,
    Resolved,
    Nxdomain,
    Servfail,
    DnsTimeout,
    /// The probe failed with a local error that says something about the source side (a
    /// firewall in the source pod's netns refused the packet: `EPERM`/`EACCES`).
    Error,
    /// The probe could not run; [`Observation::not_probed`] says why. Nothing was observed.
    NotProbed,
}

impl Outcome {
    pub const ALL: [Outcome; 11] = [
        Outcome::Open,
        Outcome::Refused,
        Outcome::Timeout,
        Outcome::Unreachable,
        Outcome::OpenOrFiltered,
        Outcome::Resolved,
        Outcome::Nxdomain,
        Outcome::Servfail,
        Outcome::DnsTimeout,
        Outcome::Error,
        Outcome::NotProbed,
    ];

    /// The label used in metrics and JSON.
    /// The outcome with this code (`open`, `timeout`, ...).
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|outcome| outcome.as_str() == code)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Open => "open",
            Outcome::Refused => "refused",
            Outcome::Timeout => "timeout",
            Outcome::Unreachable => "unreachable",
            Outcome::OpenOrFiltered => "open_or_filtered",
            Outcome::Resolved => "resolved",
            Outcome::Nxdomain => "nxdomain",
            Outcome::Servfail => "servfail",
            Outcome::DnsTimeout => "dns_timeout",
            Outcome::Error => "error",
            Outcome::NotProbed => "not_probed",
        }
    }

    /// Whether the network delivered the probe to something that answered (a refused port is
    /// reachable for the network).
    pub fn is_reachable(self) -> bool {
        matches!(
            self,
            Outcome::Open
                | Outcome::Refused
                | Outcome::Resolved
                | Outcome::Nxdomain
                | Outcome::Servfail
        )
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a probe could not run (bounded: JSON, metric labels, alerts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NotProbedReason {
    /// The source pod's network namespace was not found on this node (gone, not started yet,
    /// recreated, or its handle went stale).
    NetnsNotFound,
    /// The source pod uses the host network: a probe from it would not meet pod policy.
    HostNetworkSource,
    /// The protocol cannot be probed here (no SCTP in this kernel, an address family the
    /// pod netns lacks).
    UnsupportedProtocol,
    /// A file the probe needs from the pod (resolv.conf) could not be read safely.
    PodFileUnreadable,
    /// A host target's name did not resolve from the source pod.
    ResolveFailed,
    /// The target is an address probes never go to (loopback, link-local such as the cloud
    /// metadata service, multicast, broadcast, unspecified): a host resolved only to such.
    RefusedTarget,
    /// The agent is out of file descriptors, sockets, memory or probe slots.
    AgentOverloaded,
    /// Any other local failure (the detail names it).
    ProbeError,
}

impl NotProbedReason {
    pub const ALL: [NotProbedReason; 8] = [
        NotProbedReason::NetnsNotFound,
        NotProbedReason::HostNetworkSource,
        NotProbedReason::UnsupportedProtocol,
        NotProbedReason::PodFileUnreadable,
        NotProbedReason::ResolveFailed,
        NotProbedReason::RefusedTarget,
        NotProbedReason::AgentOverloaded,
        NotProbedReason::ProbeError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotProbedReason::NetnsNotFound => "netns_not_found",
            NotProbedReason::HostNetworkSource => "host_network_source",
            NotProbedReason::UnsupportedProtocol => "unsupported_protocol",
            NotProbedReason::PodFileUnreadable => "pod_file_unreadable",
            NotProbedReason::ResolveFailed => "resolve_failed",
            NotProbedReason::RefusedTarget => "refused_target",
            NotProbedReason::AgentOverloaded => "agent_overloaded",
            NotProbedReason::ProbeError => "probe_error",
        }
    }

    /// The reason with this code (`netns_not_found`, ...).
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.as_str() == code)
    }

    /// The reason a local errno stands for: running out of descriptors, buffers or memory is
    /// the agent's overload; a missing protocol or family is unsupported.
    pub fn of_errno(errno: i32) -> Self {
        match errno {
            libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EAGAIN => {
                NotProbedReason::AgentOverloaded
            }
            libc::EPROTONOSUPPORT
            | libc::EAFNOSUPPORT
            | libc::ESOCKTNOSUPPORT
            | libc::EPFNOSUPPORT
            | libc::EOPNOTSUPP => NotProbedReason::UnsupportedProtocol,
            _ => NotProbedReason::ProbeError,
        }
    }
}

impl fmt::Display for NotProbedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An ICMP error the kernel queued for the probe's socket (`IP_RECVERR` / `IPV6_RECVERR`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Icmp {
    /// ICMP type (`kind` because `type` is a keyword): 3 = destination unreachable (v4),
    /// 1 = destination unreachable (v6).
    pub kind: u8,
    pub code: u8,
    /// Who sent it: the target itself, or a router on the way.
    pub offender: IpAddr,
}

impl Icmp {
    /// "Communication administratively prohibited": a firewall/policy said no.
    pub fn is_admin_prohibited(&self) -> bool {
        match self.offender {
            IpAddr::V4(_) => self.kind == 3 && matches!(self.code, 9 | 10 | 13),
            IpAddr::V6(_) => self.kind == 1 && self.code == 1,
        }
    }

    /// nft's name for the message (`admin-prohibited`, `host-unreachable`, …).
    pub fn name(&self) -> &'static str {
        match (self.offender.is_ipv4(), self.kind, self.code) {
            (true, 3, 0) => "net-unreachable",
            (true, 3, 1) => "host-unreachable",
            (true, 3, 2) => "prot-unreachable",
            (true, 3, 3) => "port-unreachable",
            (true, 3, 4) => "frag-needed",
            (true, 3, 9) => "net-prohibited",
            (true, 3, 10) => "host-prohibited",
            (true, 3, 13) => "admin-prohibited",
            (true, 3, _) => "dest-unreachable",
            (true, 11, _) => "time-exceeded",
            (false, 1, 0) => "no-route",
            (false, 1, 1) => "admin-prohibited",
            (false, 1, 3) => "addr-unreachable",
            (false, 1, 4) => "port-unreachable",
            (false, 1, 5) => "policy-fail",
            (false, 1, 6) => "reject-route",
            (false, 1, _) => "dest-unreachable",
            (false, 3, _) => "time-exceeded",
            _ => "icmp-error",
        }
    }
}

impl fmt::Display for Icmp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ICMP {} ({}/{}) from {}",
            self.name(),
            self.kind,
            self.code,
            self.offender
        )
    }
}

/// Everything one probe saw.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    pub outcome: Outcome,
    /// From the first packet sent (connect/send/query) to the outcome; the timeout when
    /// nothing came back.
    pub latency: Duration,
    /// The ICMP error behind a refused/unreachable outcome, when the kernel queued one.
    pub icmp: Option<Icmp>,
    /// An ICMP administratively-prohibited came back (see the module docs).
    pub rejected_by_policy: bool,
    /// The errno the socket reported, if any.
    pub errno: Option<i32>,
    /// One line for humans: "connection refused (TCP RST)", "rejected by policy: ICMP …".
    pub detail: String,
    /// DNS probes: the A/AAAA answers. Empty otherwise.
    pub answers: Vec<IpAddr>,
    /// Why the probe did not run; set exactly when the outcome is `not_probed`.
    pub not_probed: Option<NotProbedReason>,
    /// The probe spoke an application protocol whose server must answer (a DNS query on UDP
    /// 53), so UDP silence means the datagram or its reply was lost, not an ignored payload.
    pub expects_reply: bool,
    /// The source pod's service mesh redirected the probe to its local proxy and the probe
    /// could not bypass it: an `open` came from the proxy, not the destination.
    pub mesh_redirected: bool,
}

impl Observation {
    pub(crate) fn new(outcome: Outcome, latency: Duration, detail: impl Into<String>) -> Self {
        Self {
            outcome,
            latency,
            icmp: None,
            rejected_by_policy: false,
            errno: None,
            detail: detail.into(),
            answers: Vec::new(),
            not_probed: None,
            expects_reply: false,
            mesh_redirected: false,
        }
    }

    /// A probe that could not run: nothing was observed.
    pub fn not_probed(reason: NotProbedReason, detail: impl Into<String>) -> Self {
        Self {
            not_probed: Some(reason),
            ..Self::new(Outcome::NotProbed, Duration::ZERO, detail)
        }
    }
}

/// Which transport an errno came from; UDP and TCP differ only in what silence means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transport {
    Tcp,
    Udp,
}

/// errno (+ the queued ICMP, if any) -> observation.
pub(crate) fn classify_errno(
    transport: Transport,
    errno: i32,
    icmp: Option<Icmp>,
    latency: Duration,
) -> Observation {
    let (outcome, detail) = match (errno, icmp) {
        (libc::ECONNREFUSED, Some(icmp)) => (Outcome::Refused, format!("refused: {icmp}")),
        (libc::ECONNREFUSED, None) => (
            Outcome::Refused,
            match transport {
                Transport::Tcp => "connection refused (TCP RST)".to_string(),
                Transport::Udp => "port unreachable".to_string(),
            },
        ),
        (libc::EHOSTUNREACH | libc::ENETUNREACH, Some(icmp)) if icmp.is_admin_prohibited() => {
            (Outcome::Unreachable, format!("rejected by policy: {icmp}"))
        }
        (libc::EHOSTUNREACH | libc::ENETUNREACH, Some(icmp)) => {
            let what = if icmp.name() == "net-unreachable" || icmp.name() == "no-route" {
                "no route"
            } else {
                "unreachable"
            };
            (Outcome::Unreachable, format!("{what}: {icmp}"))
        }
        (libc::ENETUNREACH, None) => (
            Outcome::Unreachable,
            "no route (from the source's own routing table)".to_string(),
        ),
        (libc::EHOSTUNREACH, None) => (
            Outcome::Unreachable,
            "host unreachable (no ICMP details)".to_string(),
        ),
        (libc::ETIMEDOUT, _) => (Outcome::Timeout, "kernel connect timeout".to_string()),
        (libc::EPERM | libc::EACCES, _) => (
            Outcome::Error,
            format!(
                "{} (a firewall in the source netns refused the packet)",
                std::io::Error::from_raw_os_error(errno)
            ),
        ),
        // Any other errno is local to the agent: no packet left, nothing was observed.
        _ => {
            let mut observation = Observation::not_probed(
                NotProbedReason::of_errno(errno),
                std::io::Error::from_raw_os_error(errno).to_string(),
            );
            observation.latency = latency;
            observation.errno = Some(errno);
            return observation;
        }
    };
    Observation {
        outcome,
        latency,
        rejected_by_policy: icmp.is_some_and(|icmp| icmp.is_admin_prohibited())
            && outcome == Outcome::Unreachable,
        icmp,
        errno: Some(errno),
        detail,
        answers: Vec::new(),
        not_probed: None,
        expects_reply: false,
        mesh_redirected: false,
    }
}

#[cfg(test)]
mod tests;
