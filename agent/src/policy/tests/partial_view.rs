//! A partial view (node-scoped watches): an address no held pod or node has is unknown, not
//! external, unless the source's egress denies it whoever holds it.

use super::*;
use crate::cluster::index::PodCoverage;

/// The engine of `base()` plus `policies`, holding only part of the cluster's pods.
fn partial(policies: Vec<NetworkPolicy>) -> Engine {
    let mut world = base();
    for p in policies {
        world = world.policy(p);
    }
    world.index.set_coverage(PodCoverage::Partial);
    world.engine()
}

fn to_unknown(port: u16, protocol: Protocol) -> Flow {
    Flow {
        from: Endpoint::Pod(key("shop/cache")),
        to: Endpoint::Ip("10.96.0.10".parse().unwrap()),
        port,
        protocol,
    }
}

#[test]
fn egress_decides_an_unknown_destination_only_when_no_pod_could_change_the_answer() {
    let cache = || policy("shop", "egress").select(sel(&[("app", "cache")]));
    let cases: Vec<(&str, Vec<NetworkPolicy>, Option<bool>)> = vec![
        (
            "not isolated: the destination's ingress decides",
            vec![],
            None,
        ),
        (
            "default-deny egress: denied whoever holds it",
            vec![cache().deny_egress()],
            Some(false),
        ),
        (
            "an ipBlock rule that does not cover the address: denied",
            vec![cache().egress(rule().peer(ip_block("192.0.2.0/24", &[])))],
            Some(false),
        ),
        (
            "an ipBlock rule that covers it: egress allows, ingress unknown",
            vec![cache().egress(rule().peer(ip_block("10.96.0.0/12", &[])))],
            None,
        ),
        (
            "a namespace selector could match a pod holding it",
            vec![cache().egress(rule().peer(nss(sel(&[("team", "ops")]))))],
            None,
        ),
        (
            "a named port could be a pod's",
            vec![
                cache().egress(
                    rule()
                        .peer(ip_block("192.0.2.0/24", &[]))
                        .port(named("dns", Udp)),
                ),
            ],
            None,
        ),
        (
            "a rule on another port only: denied",
            vec![cache().egress(rule().peer(ip_block("10.96.0.0/12", &[])).port(tcp(443)))],
            Some(false),
        ),
    ];
    for (name, policies, want) in cases {
        let engine = partial(policies);
        match (engine.evaluate(&to_unknown(53, Udp)), want) {
            (Err(ResolveError::UnknownAddress(_)), None) => {}
            (Ok(verdict), Some(allowed)) => {
                assert_eq!(verdict.allowed, allowed, "{name}");
                assert_eq!(verdict.direction, Some(Direction::Egress), "{name}");
                assert!(
                    verdict.notes.iter().any(|n| n.contains("whoever holds it")),
                    "{name}: {:?}",
                    verdict.notes
                );
            }
            (got, _) => panic!("{name}: {got:?}"),
        }
    }
}
