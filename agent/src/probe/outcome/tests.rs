use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use super::*;

const TARGET: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 244, 2, 13));
const GATEWAY: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 244, 1, 1));

fn icmp(kind: u8, code: u8, offender: IpAddr) -> Option<Icmp> {
    Some(Icmp {
        kind,
        code,
        offender,
    })
}

/// The errno/errqueue tuples measured in `docs/reference/probe-facts.md`.
#[test]
fn measured_tuples_classify_as_documented() {
    use Transport::*;
    let ms = Duration::from_millis(1);
    let cases = [
        // (transport, errno, icmp, outcome, rejected_by_policy, detail contains)
        (
            Tcp,
            libc::ECONNREFUSED,
            None,
            Outcome::Refused,
            false,
            "TCP RST",
        ),
        (
            Tcp,
            libc::EHOSTUNREACH,
            icmp(3, 13, TARGET),
            Outcome::Unreachable,
            true,
            "admin-prohibited",
        ),
        (
            Tcp,
            libc::EHOSTUNREACH,
            icmp(3, 1, TARGET),
            Outcome::Unreachable,
            false,
            "host-unreachable",
        ),
        (
            Tcp,
            libc::ECONNREFUSED,
            icmp(3, 3, TARGET),
            Outcome::Refused,
            false,
            "port-unreachable",
        ),
        (
            Tcp,
            libc::ENETUNREACH,
            icmp(3, 0, GATEWAY),
            Outcome::Unreachable,
            false,
            "no route",
        ),
        (
            Tcp,
            libc::ENETUNREACH,
            None,
            Outcome::Unreachable,
            false,
            "source's own routing",
        ),
        (
            Tcp,
            libc::EHOSTUNREACH,
            None,
            Outcome::Unreachable,
            false,
            "no ICMP details",
        ),
        (
            Tcp,
            libc::ETIMEDOUT,
            None,
            Outcome::Timeout,
            false,
            "kernel",
        ),
        (
            Udp,
            libc::ECONNREFUSED,
            icmp(3, 3, TARGET),
            Outcome::Refused,
            false,
            "port-unreachable",
        ),
        (
            Udp,
            libc::ECONNREFUSED,
            None,
            Outcome::Refused,
            false,
            "port unreachable",
        ),
        (
            Udp,
            libc::EHOSTUNREACH,
            icmp(3, 13, TARGET),
            Outcome::Unreachable,
            true,
            "rejected by policy",
        ),
        (
            Udp,
            libc::EHOSTUNREACH,
            icmp(3, 1, TARGET),
            Outcome::Unreachable,
            false,
            "10.244.2.13",
        ),
        // Enforcement on a router answers from the router: still policy.
        (
            Tcp,
            libc::EHOSTUNREACH,
            icmp(3, 13, GATEWAY),
            Outcome::Unreachable,
            true,
            "10.244.1.1",
        ),
        (
            Tcp,
            libc::EHOSTUNREACH,
            icmp(3, 10, TARGET),
            Outcome::Unreachable,
            true,
            "host-prohibited",
        ),
        (
            Udp,
            libc::EPERM,
            None,
            Outcome::Error,
            false,
            "firewall in the source",
        ),
        // Local failures send nothing: not probed, never a network outcome.
        (
            Tcp,
            libc::EADDRNOTAVAIL,
            None,
            Outcome::NotProbed,
            false,
            "address",
        ),
        (
            Tcp,
            libc::EMFILE,
            None,
            Outcome::NotProbed,
            false,
            "open files",
        ),
    ];
    for (transport, errno, icmp, outcome, rejected, detail) in cases {
        let observed = classify_errno(transport, errno, icmp, ms);
        let case = format!("{transport:?} errno {errno} {icmp:?}: {observed:?}");
        assert_eq!(observed.outcome, outcome, "{case}");
        assert_eq!(observed.rejected_by_policy, rejected, "{case}");
        assert!(observed.detail.contains(detail), "{case}");
        assert_eq!(observed.errno, Some(errno));
        assert_eq!(observed.icmp, icmp);
        assert_eq!(observed.latency, ms);
    }
}

#[test]
fn icmpv6_admin_prohibited_is_policy() {
    let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let prohibited = Icmp {
        kind: 1,
        code: 1,
        offender: v6,
    };
    assert!(prohibited.is_admin_prohibited());
    assert_eq!(prohibited.name(), "admin-prohibited");
    let no_route = Icmp {
        code: 0,
        ..prohibited
    };
    assert!(!no_route.is_admin_prohibited());
    let observed = classify_errno(
        Transport::Tcp,
        libc::ENETUNREACH,
        Some(no_route),
        Duration::ZERO,
    );
    assert!(
        observed.detail.starts_with("no route"),
        "{}",
        observed.detail
    );
}

#[test]
fn outcome_labels_are_the_design_set() {
    let labels: Vec<&str> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
    assert_eq!(
        labels,
        [
            "open",
            "refused",
            "timeout",
            "unreachable",
            "open_or_filtered",
            "resolved",
            "nxdomain",
            "servfail",
            "dns_timeout",
            "error",
            "not_probed"
        ]
    );
    assert!(Outcome::Refused.is_reachable());
    assert!(!Outcome::Timeout.is_reachable());
    assert!(!Outcome::OpenOrFiltered.is_reachable());
}

#[test]
fn local_errnos_name_why_nothing_was_probed() {
    let cases = [
        (libc::EMFILE, NotProbedReason::AgentOverloaded),
        (libc::ENFILE, NotProbedReason::AgentOverloaded),
        (libc::ENOBUFS, NotProbedReason::AgentOverloaded),
        (libc::ENOMEM, NotProbedReason::AgentOverloaded),
        (libc::EPROTONOSUPPORT, NotProbedReason::UnsupportedProtocol),
        (libc::EAFNOSUPPORT, NotProbedReason::UnsupportedProtocol),
        (libc::EADDRNOTAVAIL, NotProbedReason::ProbeError),
        (libc::EINVAL, NotProbedReason::ProbeError),
    ];
    for (errno, reason) in cases {
        assert_eq!(NotProbedReason::of_errno(errno), reason, "errno {errno}");
        let observed = classify_errno(Transport::Udp, errno, None, Duration::ZERO);
        assert_eq!(observed.outcome, Outcome::NotProbed, "errno {errno}");
        assert_eq!(observed.not_probed, Some(reason), "errno {errno}");
    }
    // The errnos that describe the network stay observations.
    for errno in [
        libc::ECONNREFUSED,
        libc::EHOSTUNREACH,
        libc::ETIMEDOUT,
        libc::EPERM,
    ] {
        let observed = classify_errno(Transport::Tcp, errno, None, Duration::ZERO);
        assert_eq!(observed.not_probed, None, "errno {errno}");
        assert_ne!(observed.outcome, Outcome::NotProbed, "errno {errno}");
    }
}
