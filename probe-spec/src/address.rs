//! Addresses a probe must never target, wherever a target enters (ProbeSpec `ip`, ProbeRequest,
//! `POST /v1/probe`, the addresses a `host` target resolves to).
//!
//! The agent is privileged and runs in the pod's netns: loopback would reach the pod's own
//! sidecars and admin ports, link-local reaches the cloud metadata service (169.254.169.254)
//! and the node's link partners, and multicast, broadcast or the unspecified address are not
//! a destination at all.

use std::net::IpAddr;

/// Why `ip` is refused as a probe target, or `None` for an ordinary unicast address.
pub fn refused_target(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => Some("the unspecified address"),
        IpAddr::V4(v4) if v4.is_loopback() => Some("a loopback address"),
        IpAddr::V4(v4) if v4.is_link_local() => {
            Some("a link-local address (169.254.0.0/16: cloud metadata, node-local services)")
        }
        IpAddr::V4(v4) if v4.is_multicast() => Some("a multicast address"),
        IpAddr::V4(v4) if v4.is_broadcast() => Some("the broadcast address"),
        IpAddr::V6(v6) if v6.is_unspecified() => Some("the unspecified address"),
        IpAddr::V6(v6) if v6.is_loopback() => Some("a loopback address"),
        IpAddr::V6(v6) if v6.is_unicast_link_local() => Some("a link-local address (fe80::/10)"),
        IpAddr::V6(v6) if v6.is_multicast() => Some("a multicast address"),
        // An IPv4-mapped address is the IPv4 address it maps.
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .and_then(|v4| refused_target(IpAddr::V4(v4))),
        IpAddr::V4(_) => None,
    }
}

/// Why an `ip` field's text is not a probe target: not an address at all, or a refused one.
pub fn ip_target_problem(text: &str) -> Option<String> {
    match text.parse::<IpAddr>() {
        Err(_) => Some(format!("{text:?} is not an IPv4 or IPv6 address")),
        Ok(ip) => refused_target_message(ip),
    }
}

/// The validation message for a refused `ip`.
pub fn refused_target_message(ip: IpAddr) -> Option<String> {
    refused_target(ip).map(|why| format!("{ip} is {why}: probes never target it"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ordinary_unicast_addresses_are_targets() {
        let cases = [
            ("10.244.1.10", None),
            ("192.0.2.1", None),
            ("fd00::10", None),
            ("2001:db8::1", None),
            ("127.0.0.1", Some("a loopback address")),
            ("127.8.9.10", Some("a loopback address")),
            ("::1", Some("a loopback address")),
            ("169.254.169.254", Some("link-local")),
            ("fe80::1", Some("link-local")),
            ("224.0.0.1", Some("multicast")),
            ("ff02::1", Some("multicast")),
            ("255.255.255.255", Some("broadcast")),
            ("0.0.0.0", Some("unspecified")),
            ("::", Some("unspecified")),
            ("::ffff:127.0.0.1", Some("a loopback address")),
            ("::ffff:169.254.169.254", Some("link-local")),
            ("::ffff:10.244.1.10", None),
        ];
        for (ip, want) in cases {
            let got = refused_target(ip.parse().expect(ip));
            match want {
                None => assert_eq!(got, None, "{ip}"),
                Some(fragment) => assert!(
                    got.is_some_and(|why| why.contains(fragment)),
                    "{ip}: {got:?}"
                ),
            }
        }
    }
}
