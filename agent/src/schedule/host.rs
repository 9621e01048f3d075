//! Host targets at probe time: the addresses a host pair's name resolved to (from the source
//! pod) become the targets it probes, one report each.
//!
//! ```text
//! resolved addresses (A first, then AAAA) ──host_targets(index)──> HostTargets
//!   a live pod's address ──> PairTarget::Pod (predicted and diagnosed like a pod target)
//!   any other address    ──> PairTarget::Ip  (an ipBlock flow)
//! ```
//!
//! Bounded: at most [`MAX_HOST_ADDRESSES`] targets per pair, so one name cannot fan a pair out
//! into unbounded reports and metric series. A pod is probed once, at the first of its
//! addresses in the answer: a dual-stack pod's second address meets the same policies, and
//! its report would repeat the first one's `to` (the pod), so the two could not be told apart.

use std::net::IpAddr;

use crate::cluster::Index;
use crate::cluster::model::{Pod, Protocol};

use crate::pair::PairTarget;

/// The most addresses of one host pair that are probed and reported.
pub const MAX_HOST_ADDRESSES: usize = 16;

/// What a host pair probes, from the addresses its name resolved to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostTargets {
    /// One per probed address, in answer order.
    pub targets: Vec<PairTarget>,
    /// Addresses not probed: repeats, further addresses of a pod already probed, and those
    /// beyond [`MAX_HOST_ADDRESSES`].
    pub left_out: Vec<IpAddr>,
    /// Addresses a probe never targets (loopback, link-local, multicast, broadcast,
    /// unspecified), with why.
    pub refused: Vec<(IpAddr, &'static str)>,
}

/// The targets a host pair on `port`/`protocol` probes for `addresses`; see the module docs.
pub fn host_targets(
    index: &Index,
    addresses: &[IpAddr],
    port: u16,
    protocol: Protocol,
) -> HostTargets {
    let mut out = HostTargets::default();
    for &ip in addresses {
        // A name that resolves to loopback, link-local (cloud metadata), multicast, ... must
        // not turn the agent towards it.
        if let Some(why) = probe_spec::refused_target(ip) {
            out.refused.push((ip, why));
            continue;
        }
        let target = match index.pod_by_ip(ip) {
            Some(pod) => PairTarget::Pod {
                pod: Pod::key(pod),
                ip,
                port,
                protocol,
            },
            None => PairTarget::Ip { ip, port, protocol },
        };
        let repeat = out.targets.iter().any(|seen| match (seen, &target) {
            (PairTarget::Pod { pod: a, .. }, PairTarget::Pod { pod: b, .. }) => a == b,
            (seen, target) => seen.ip() == target.ip(),
        });
        if repeat || out.targets.len() >= MAX_HOST_ADDRESSES {
            out.left_out.push(ip);
        } else {
            out.targets.push(target);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::model::PodPhase;
    use crate::schedule::fixtures::{index, key, namespace, pod};

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    /// shop/api (10.0.0.2, dual-stack fd00::2), shop/done (finished, once 10.0.0.9).
    fn cluster() -> Index {
        let mut api = pod("shop", "api", &[("app", "api")], "10.0.0.2", "node-2");
        api.ips.push(ip("fd00::2"));
        let mut done = pod("shop", "done", &[("app", "done")], "10.0.0.9", "node-2");
        done.phase = PodPhase::Succeeded;
        index(vec![namespace("shop", &[])], vec![api, done])
    }

    fn pod_at(name: &str, address: &str) -> PairTarget {
        PairTarget::Pod {
            pod: key(name),
            ip: ip(address),
            port: 443,
            protocol: Protocol::Tcp,
        }
    }

    fn ip_at(address: &str) -> PairTarget {
        PairTarget::Ip {
            ip: ip(address),
            port: 443,
            protocol: Protocol::Tcp,
        }
    }

    #[test]
    fn addresses_become_pod_or_ip_targets() {
        let index = cluster();
        let many: Vec<String> = (1..=20).map(|n| format!("192.0.2.{n}")).collect();
        // (case, addresses resolved, targets probed, addresses left out)
        type Case<'a> = (&'a str, Vec<&'a str>, Vec<PairTarget>, Vec<&'a str>);
        let cases: Vec<Case<'_>> = vec![
            (
                "a pod's address is that pod",
                vec!["10.0.0.2"],
                vec![pod_at("shop/api", "10.0.0.2")],
                vec![],
            ),
            (
                "a foreign address is an ip target",
                vec!["192.0.2.10"],
                vec![ip_at("192.0.2.10")],
                vec![],
            ),
            (
                "a finished pod's old address is no longer that pod",
                vec!["10.0.0.9"],
                vec![ip_at("10.0.0.9")],
                vec![],
            ),
            (
                "A and AAAA of one dual-stack pod: probed once, at the first",
                vec!["10.0.0.2", "192.0.2.10", "fd00::2"],
                vec![pod_at("shop/api", "10.0.0.2"), ip_at("192.0.2.10")],
                vec!["fd00::2"],
            ),
            (
                "a repeated address is probed once",
                vec!["192.0.2.10", "192.0.2.10", "2001:db8::1"],
                vec![ip_at("192.0.2.10"), ip_at("2001:db8::1")],
                vec!["192.0.2.10"],
            ),
            (
                "beyond the bound: left out",
                many.iter().map(String::as_str).collect(),
                many[..MAX_HOST_ADDRESSES]
                    .iter()
                    .map(|a| ip_at(a))
                    .collect(),
                many[MAX_HOST_ADDRESSES..]
                    .iter()
                    .map(String::as_str)
                    .collect(),
            ),
            ("no address: nothing to probe", vec![], vec![], vec![]),
        ];
        for (name, addresses, targets, left_out) in cases {
            let addresses: Vec<IpAddr> = addresses.into_iter().map(ip).collect();
            let got = host_targets(&index, &addresses, 443, Protocol::Tcp);
            assert_eq!(got.targets, targets, "{name}");
            let left_out: Vec<IpAddr> = left_out.into_iter().map(ip).collect();
            assert_eq!(got.left_out, left_out, "{name}");
        }
    }

    /// A name that resolves to loopback or the cloud metadata address does not turn the
    /// agent towards it: those addresses are refused, the others still probed.
    #[test]
    fn refused_addresses_are_never_targets() {
        let index = cluster();
        let resolved = [
            ip("127.0.0.1"),
            ip("169.254.169.254"),
            ip("192.0.2.10"),
            ip("ff02::1"),
        ];
        let got = host_targets(&index, &resolved, 443, Protocol::Tcp);
        assert_eq!(got.targets, vec![ip_at("192.0.2.10")]);
        let refused: Vec<IpAddr> = got.refused.iter().map(|(ip, _)| *ip).collect();
        assert_eq!(
            refused,
            vec![ip("127.0.0.1"), ip("169.254.169.254"), ip("ff02::1")]
        );
        assert!(got.refused[1].1.contains("link-local"), "{:?}", got.refused);
        assert!(got.left_out.is_empty());
    }
}
