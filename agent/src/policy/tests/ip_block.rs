//! ipBlock.

use super::*;

#[test]
fn e19_ip_block_except_and_pod_ips_per_profile() {
    let world = base().policy(
        policy("web", "p")
            .select(sel(&[("app", "client")]))
            .egress(rule().peer(ip_block("10.0.0.0/16", &["10.0.1.0/24"])))
            // Interface-address form: host bits are masked (E19 sloppy parsing).
            .egress(rule().peer(ip_block("203.0.113.77/24", &[]))),
    );
    let upstream = world.engine();
    let external_only = world.engine_with(Profile::IPBLOCK_EXTERNAL_ONLY);
    check(
        &upstream,
        &[
            "web/client -> web/ui 80/TCP allow  # E19 pod IP in the block (upstream)",
            "web/client -> shop/db 80/TCP deny:ip_block_mismatch  # E19 pod IP in except (upstream)",
            "web/client -> 10.0.9.9 80/TCP allow  # E19 external in the block",
            "web/client -> 10.0.1.200 80/TCP deny:ip_block_mismatch  # E19 external in except",
            "web/client -> 10.1.0.1 80/TCP deny:ip_block_mismatch  # E19 outside the block",
            "web/client -> 203.0.113.5 80/TCP allow  # E19 masked interface-address CIDR",
            "web/client -> fd00::1 80/TCP deny:ip_block_mismatch  # E19 IPv6 never matches an IPv4 block",
        ],
    );
    check(
        &external_only,
        &[
            "web/client -> web/ui 80/TCP deny:ip_block_mismatch  # E19 pod IP in the block (external-only)",
            "web/client -> 10.0.9.9 80/TCP allow  # E19 external in the block (external-only)",
            "web/client -> 10.0.1.200 80/TCP deny:ip_block_mismatch  # E19 external in except (external-only)",
        ],
    );
    // Except excludes, and the explanation says so.
    let v = eval(&upstream, "web/client", "shop/db", 80, Tcp);
    match &v.closest_rule().unwrap().1.peer {
        Some(PeerMiss::IpBlock {
            excepted,
            ip,
            blocks,
            ..
        }) => {
            assert!(*excepted);
            assert_eq!(ip, "10.0.1.1");
            assert_eq!(blocks, &["10.0.0.0/16 except 10.0.1.0/24"]);
        }
        other => panic!("{other:?}"),
    }
    let text = render(&upstream, "web/client", "shop/db", 80, Tcp);
    assert!(
        text.contains("10.0.1.1 is in an except range of ipBlock 10.0.0.0/16 except 10.0.1.0/24"),
        "{text}"
    );
    // Matching a pod IP is implementation-defined in both directions of the answer.
    let v = eval(&upstream, "web/client", "web/ui", 80, Tcp);
    assert!(
        v.notes
            .iter()
            .any(|n| n.contains("implementation-defined") && n.contains("10.0.2.1")),
        "{:?}",
        v.notes
    );
    let text = render(&external_only, "web/client", "web/ui", 80, Tcp);
    assert!(
        text.contains("implementation-defined") && text.contains("ipblock-external-only"),
        "{text}"
    );

    // Ingress from a pod by ipBlock follows the same switch.
    let world = base().policy(
        policy("shop", "p")
            .select(sel(&[("app", "db")]))
            .ingress(rule().peer(ip_block("10.0.2.0/24", &[]))),
    );
    assert!(
        eval(&world.engine(), "web/ui", "shop/db", 5432, Tcp).allowed,
        "E19 ingress from a pod IP (upstream)"
    );
    assert!(
        !eval(
            &world.engine_with(Profile::IPBLOCK_EXTERNAL_ONLY),
            "web/ui",
            "shop/db",
            5432,
            Tcp
        )
        .allowed,
        "E19 ingress from a pod IP (external-only)"
    );
}

#[test]
fn e19_ipv6_blocks_match_ipv6_addresses() {
    let world = World::default()
        .ns(ns("v6", &[]))
        .pod(pod("v6", "a", &[("app", "a")], "fd00:1::1", "n1"))
        .pod(pod("v6", "b", &[("app", "b")], "fd00:1::2", "n1"))
        .policy(
            policy("v6", "p")
                .select(sel(&[("app", "a")]))
                .egress(rule().peer(ip_block("fd00:1::/64", &["fd00:1::2/128"]))),
        );
    let engine = world.engine();
    check(
        &engine,
        &[
            "v6/a -> fd00:1::99 80/TCP allow  # E19 IPv6 external in block",
            "v6/a -> v6/b 80/TCP deny  # E19 IPv6 pod in except",
            "v6/a -> fd00:2::1 80/TCP deny  # E19 IPv6 outside",
            "v6/a -> 10.0.0.1 80/TCP deny  # E19 IPv4 address vs IPv6 block",
        ],
    );
}

#[test]
fn e19_dual_stack_uses_the_address_family_of_the_flow() {
    // a and c are dual-stack; b is IPv6-only, so a <-> b can only be IPv6.
    let world = World::default()
        .ns(ns("ds", &[]))
        .pod(pod("ds", "a", &[("app", "a")], "10.0.0.1,fd00::1", "n1"))
        .pod(pod("ds", "b", &[("app", "b")], "fd00::2", "n1"))
        .pod(pod("ds", "c", &[("app", "c")], "10.0.0.3,fd00::3", "n1"));
    let v4_block = world.clone_with(
        policy("ds", "p")
            .select(all())
            .ingress(rule().peer(ip_block("10.0.0.0/8", &[]))),
    );
    let v6_block = world.clone_with(
        policy("ds", "p")
            .select(all())
            .ingress(rule().peer(ip_block("fd00::/64", &[]))),
    );
    check(
        &v4_block,
        &["ds/a -> ds/b 80/TCP deny  # E19 v6-only destination: the source's IPv6 address counts"],
    );
    check(
        &v6_block,
        &[
            "ds/a -> ds/b 80/TCP allow  # E19 v6-only destination, IPv6 block",
            "ds/b -> ds/a 80/TCP allow  # E19 v6-only source, IPv6 block",
        ],
    );
    check(
        &v4_block,
        &[
            "ds/b -> ds/a 80/TCP deny  # E19 v6-only source, IPv4 block",
            "ds/a -> ds/c 80/TCP allow  # E19 dual-stack pair, IPv4 block",
        ],
    );
    let v = eval(&v4_block, "ds/a", "ds/b", 80, Tcp);
    match &v.closest_rule().unwrap().1.peer {
        Some(PeerMiss::IpBlock { ip, .. }) => assert_eq!(ip, "fd00::1"),
        other => panic!("{other:?}"),
    }
}
