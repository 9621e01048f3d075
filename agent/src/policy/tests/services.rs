//! Services.

use super::*;

#[test]
fn e18_addresses_that_are_not_pods_or_nodes_are_external() {
    // A Service ClusterIP is not a pod: callers predict against endpoint pods; the engine
    // matches such an address only by ipBlock.
    let world = base().policy(
        policy("web", "p")
            .select(sel(&[("app", "client")]))
            .egress(rule().peer(nss(all()))),
    );
    let engine = world.clone_with(
        policy("web", "q")
            .select(sel(&[("app", "client")]))
            .egress(rule().peer(ip_block("10.96.0.0/12", &[]))),
    );
    let selectors_only = world.engine();
    let v = eval(&selectors_only, "web/client", "10.96.0.10", 80, Tcp);
    assert!(!v.allowed);
    assert_eq!(v.reason, Some(Reason::PodSelectorMismatch));
    assert!(
        matches!(&v.ingress, DirectionVerdict::NotApplicable { why } if why.contains("not a pod")),
        "{:?}",
        v.ingress
    );
    check(
        &engine,
        &[
            "web/client -> 10.96.0.10 80/TCP allow  # E18 Service range by ipBlock",
            "web/client -> shop/api 8080/TCP allow  # E18 endpoint pod by selector",
        ],
    );
}
