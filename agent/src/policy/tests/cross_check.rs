//! Cross-check: matrix vs evaluate on a pseudo-random cluster.

use super::*;

/// xorshift64*, fixed seeds: the same clusters every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const NAMESPACES: [&str; 4] = ["alpha", "beta", "gamma", "delta"];
const NODE_IPS: [&str; 3] = ["192.168.0.1", "192.168.0.2", "192.168.0.3"];
const HOST_AND_V6_CIDRS: [&str; 3] = ["192.168.0.0/30", "fd00::/16", "fd00:2::/32"];

fn random_labels(rng: &mut Rng) -> Labels {
    let mut l = Labels::new();
    for (key, values) in [
        ("app", &["web", "api", "db"][..]),
        ("tier", &["front", "back"]),
        ("role", &["client", "server"]),
    ] {
        if rng.chance(70) {
            l.insert(key.into(), rng.pick(values).to_string());
        }
    }
    l
}

fn random_selector(rng: &mut Rng) -> Selector {
    match rng.below(7) {
        0 => all(),
        1 => sel(&[("app", *rng.pick(&["web", "api", "db"]))]),
        2 => sel(&[
            ("tier", *rng.pick(&["front", "back"])),
            ("app", *rng.pick(&["web", "api"])),
        ]),
        3 => expr("tier", "NotIn", &[*rng.pick(&["front", "back"])]),
        4 => expr("role", "DoesNotExist", &[]),
        5 => expr("app", "In", &["web", "db"]),
        _ => expr("role", "Exists", &[]),
    }
}

fn random_ns_selector(rng: &mut Rng) -> Selector {
    match rng.below(5) {
        0 => all(),
        1 => sel(&[("team", *rng.pick(&["red", "blue"]))]),
        2 => sel(&[(NAMESPACE_NAME_LABEL, *rng.pick(&NAMESPACES))]),
        3 => expr("env", "NotIn", &["prod"]),
        _ => expr("env", "Exists", &[]),
    }
}

fn random_peer(rng: &mut Rng) -> Peer {
    match rng.below(9) {
        0 | 1 => pods(random_selector(rng)),
        2 | 3 => nss(random_ns_selector(rng)),
        4 => pods_in(random_ns_selector(rng), random_selector(rng)),
        5 => {
            let n = rng.below(4) + 1;
            ip_block(&format!("10.{n}.0.0/16"), &[&format!("10.{n}.0.0/29")])
        }
        6 => {
            let cidr = *rng.pick(&HOST_AND_V6_CIDRS);
            ip_block(cidr, &[])
        }
        7 => ip_block("0.0.0.0/0", &["10.2.0.0/16"]),
        _ => invalid_peer("random invalid peer"),
    }
}

fn random_port(rng: &mut Rng) -> PolicyPort {
    match rng.below(11) {
        0 => tcp(80),
        1 => tcp(8080),
        2 => named("http", Tcp),
        3 => named("dns", Udp),
        4 => named("dns", Tcp),
        5 => range(Tcp, 8000, 8100),
        6 => any_port(Udp),
        7 => port(Sctp, 7777),
        8 => named("assoc", Sctp),
        9 => any_port(Tcp),
        _ => invalid_port("random invalid port"),
    }
}

fn random_rule(rng: &mut Rng) -> Rule {
    let mut r = rule();
    if rng.chance(60) {
        for _ in 0..=rng.below(2) {
            r.ports.push(random_port(rng));
        }
    }
    if rng.chance(70) {
        for _ in 0..=rng.below(2) {
            r.peers.push(random_peer(rng));
        }
    }
    r
}

fn random_cluster(seed: u64) -> Index {
    let mut rng = Rng(seed);
    let mut index = Index::new();
    // "delta" is never loaded: its labels are only the injected name label (E10).
    for name in &NAMESPACES[..3] {
        let mut l = vec![("team", *rng.pick(&["red", "blue"]))];
        if rng.chance(50) {
            l.push(("env", *rng.pick(&["prod", "dev"])));
        }
        index.apply(ns(name, &l));
    }
    for (i, ip) in NODE_IPS.iter().enumerate() {
        index.apply(node(&format!("n{i}"), ip));
    }
    for i in 0..30 {
        let nsi = rng.below(NAMESPACES.len());
        let mut p = pod(
            NAMESPACES[nsi],
            &format!("p{i:02}"),
            &[],
            &format!("10.{}.0.{}", nsi + 1, i + 2),
            &format!("n{}", rng.below(3)),
        );
        p.labels = random_labels(&mut rng);
        if rng.chance(60) {
            p = p.with_port("http", *rng.pick(&[80, 8080, 8050]), Tcp);
        }
        if rng.chance(30) {
            p = p.with_port("dns", 53, Udp);
        }
        if rng.chance(20) {
            p = p.with_port("assoc", 7777, Sctp);
        }
        if rng.chance(30) {
            p = p.with_port("", 9090, Tcp);
        }
        // Some dual-stack and some IPv6-only pods (E19: the flow's address family).
        match rng.below(10) {
            0 => p
                .ips
                .push(format!("fd00:{}::{:x}", nsi + 1, i + 2).parse().unwrap()),
            1 => p.ips = vec![format!("fd00:{}::{:x}", nsi + 1, i + 2).parse().unwrap()],
            _ => {}
        }
        index.apply(p);
    }
    // hostNetwork pods on two nodes (with named ports and labels that selectors would
    // otherwise match), a pod without an IP, and a finished pod whose IP was reused.
    index.apply(
        pod("alpha", "host", &[("app", "web")], NODE_IPS[1], "n1")
            .host_network()
            .with_port("http", 80, Tcp),
    );
    index.apply(
        pod("gamma", "host", &[("app", "api")], NODE_IPS[2], "n2")
            .host_network()
            .with_port("http", 8080, Tcp)
            .with_port("dns", 53, Udp),
    );
    index.apply(pod("beta", "pending", &[("app", "api")], "", "").phase(PodPhase::Pending));
    index
        .apply(pod("gamma", "done", &[("app", "db")], "10.3.0.5", "n2").phase(PodPhase::Succeeded));
    for i in 0..15 {
        let mut p = policy(
            NAMESPACES[rng.below(NAMESPACES.len())],
            &format!("np{i:02}"),
        );
        p.pod_selector = random_selector(&mut rng);
        match rng.below(4) {
            0 => p.isolates_ingress = true,
            1 => p.isolates_egress = true,
            2 => (p.isolates_ingress, p.isolates_egress) = (true, true),
            // Rules present but the types leave them inert (E1).
            _ => p.isolates_ingress = true,
        }
        for _ in 0..rng.below(4) {
            p.ingress.push(random_rule(&mut rng));
        }
        for _ in 0..rng.below(4) {
            p.egress.push(random_rule(&mut rng));
        }
        index.apply(p);
    }
    index
}

/// What the JSON matrix prints for a pair the rules deny, from the cheap path...
fn denial_codes(
    engine: &Engine,
    cell: &MatrixCell,
) -> (Option<Reason>, Option<Direction>, Vec<String>) {
    match engine.cell_denial(cell) {
        Some(d) => (Some(d.reason), Some(d.direction), d.policy_names(engine)),
        None => (None, None, Vec::new()),
    }
}

/// ...and from the full verdict.
fn verdict_codes(v: &Verdict) -> (Option<Reason>, Option<Direction>, Vec<String>) {
    (v.reason, v.direction, v.policies.clone())
}

#[test]
fn matrix_agrees_with_evaluate_on_a_random_cluster() {
    let ports: Vec<MatrixPort> = [
        (80, Tcp),
        (8080, Tcp),
        (8050, Tcp),
        (8100, Tcp),
        (9090, Tcp),
        (53, Udp),
        (53, Tcp),
        (7777, Sctp),
    ]
    .into_iter()
    .map(|(port, protocol)| MatrixPort { port, protocol })
    .collect();
    let (mut compared, mut allowed) = (0usize, 0usize);
    for seed in 1..=24_u64 {
        let (c, a) = assert_matrix_agrees_everywhere(&random_cluster(seed), seed, &ports);
        compared += c;
        allowed += a;
    }
    // The cluster is not trivially all-allow or all-deny.
    assert!(
        allowed > compared / 10 && allowed < compared * 9 / 10,
        "{allowed} of {compared} allowed"
    );
}

/// Every cell of every port of `ports` (and each destination on its own container ports),
/// under every profile: the matrix and its deny codes equal `evaluate`. Returns the cells
/// compared and how many the rules allow.
fn assert_matrix_agrees_everywhere(
    index: &Index,
    seed: u64,
    ports: &[MatrixPort],
) -> (usize, usize) {
    let (mut compared, mut allowed) = (0usize, 0usize);
    {
        for profile in Profile::ALL {
            let engine = Engine::new(index, profile.clone());
            let endpoints = engine.endpoint_ids();
            assert_eq!(
                endpoints.len(),
                32,
                "30 pods + the hostNetwork pods (seed {seed:#x})"
            );
            for &port in ports {
                let cells = engine.matrix(&[port]);
                assert_eq!(cells.len(), endpoints.len() * endpoints.len());
                for cell in cells {
                    let f = Flow {
                        from: Endpoint::Pod(engine.pods()[cell.from].key()),
                        to: Endpoint::Pod(engine.pods()[cell.to].key()),
                        port: port.port,
                        protocol: port.protocol,
                    };
                    let v = engine.evaluate(&f).unwrap();
                    assert_eq!(
                        (cell.allowed, cell.rules_allowed, cell.self_traffic),
                        (v.allowed, v.rules_allowed, v.self_traffic),
                        "seed {seed:#x}, profile {profile}: matrix disagrees with evaluate\n{}",
                        explain::render(&f, &v)
                    );
                    assert_eq!(
                        denial_codes(&engine, &cell),
                        verdict_codes(&v),
                        "seed {seed:#x}, profile {profile}: cell_denial disagrees with evaluate\n{}",
                        explain::render(&f, &v)
                    );
                    compared += 1;
                    allowed += usize::from(v.rules_allowed);
                }
            }
            // Per-destination mode (no ports): each destination on its own container ports.
            for cell in engine.matrix(&[]) {
                assert!(
                    engine.pods()[cell.to]
                        .ports
                        .iter()
                        .any(|p| p.port == cell.port.port && p.protocol == cell.port.protocol)
                );
                let f = Flow {
                    from: Endpoint::Pod(engine.pods()[cell.from].key()),
                    to: Endpoint::Pod(engine.pods()[cell.to].key()),
                    port: cell.port.port,
                    protocol: cell.port.protocol,
                };
                let v = engine.evaluate(&f).unwrap();
                assert_eq!(
                    (cell.allowed, cell.rules_allowed),
                    (v.allowed, v.rules_allowed),
                    "seed {seed:#x}, {profile}, {f:?}"
                );
                assert_eq!(
                    denial_codes(&engine, &cell),
                    verdict_codes(&v),
                    "seed {seed:#x}, {profile}, {f:?}"
                );
            }
        }
    }
    (compared, allowed)
}

/// Random ClusterNetworkPolicies and AdminNetworkPolicies over the random cluster: every tier,
/// action, peer kind and port form, invalid rules included.
fn random_tiered(rng: &mut Rng, i: usize) -> crate::cluster::tiered::TieredPolicy {
    use serde_json::json;
    let labels = |rng: &mut Rng| match rng.below(3) {
        0 => json!({}),
        1 => json!({"matchLabels": {"app": *rng.pick(&["web", "api", "db"])}}),
        _ => json!({"matchLabels": {"team": *rng.pick(&["red", "blue"])}}),
    };
    let subject = if rng.chance(50) {
        json!({"namespaces": labels(rng)})
    } else {
        json!({"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": *rng.pick(&["web", "api", "db"])}}}})
    };
    let rule = |rng: &mut Rng, egress: bool| {
        let peer = match rng.below(if egress { 6 } else { 3 }) {
            0 => json!({"namespaces": labels(rng)}),
            1 => {
                json!({"pods": {"namespaceSelector": labels(rng), "podSelector": {"matchLabels": {"tier": *rng.pick(&["front", "back"])}}}})
            }
            2 => json!({"serviceAccounts": {}}),
            3 => {
                json!({"networks": [*rng.pick(&["10.1.0.0/16", "10.2.0.0/24", "192.168.0.0/30"])]})
            }
            4 => json!({"nodes": {}}),
            _ => json!({"domainNames": ["example.com"]}),
        };
        let mut r = json!({"name": format!("r{}", rng.below(9)),
                           "action": *rng.pick(&["Accept", "Deny", "Pass"]),
                           if egress { "to" } else { "from" }: [peer]});
        match rng.below(5) {
            0 => r["protocols"] = json!([{"tcp": {"destinationPort": {"number": 8080}}}]),
            1 => {
                r["protocols"] =
                    json!([{"tcp": {"destinationPort": {"range": {"start": 8000, "end": 8100}}}}])
            }
            2 => r["protocols"] = json!([{"destinationNamedPort": "http"}]),
            3 => r["protocols"] = json!([{"udp": {}}]),
            _ => {}
        }
        r
    };
    let ingress: Vec<_> = (0..rng.below(3)).map(|_| rule(rng, false)).collect();
    let egress: Vec<_> = (0..rng.below(3)).map(|_| rule(rng, true)).collect();
    crate::cluster::tiered::TieredPolicy::try_from(&json!({
        "apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
        "metadata": {"name": format!("cnp-{i}")},
        "spec": {"tier": *rng.pick(&["Admin", "Baseline"]), "priority": rng.below(4),
                 "subject": subject, "ingress": ingress, "egress": egress}
    }))
    .expect("a valid policy")
}

#[test]
fn matrix_agrees_with_evaluate_with_cluster_tiers() {
    let ports: Vec<MatrixPort> = [(80, Tcp), (8080, Tcp), (8050, Tcp), (53, Udp)]
        .into_iter()
        .map(|(port, protocol)| MatrixPort { port, protocol })
        .collect();
    let mut compared = 0;
    for seed in 1..=12_u64 {
        let mut index = random_cluster(seed);
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        for i in 0..1 + rng.below(5) {
            index.apply(random_tiered(&mut rng, i));
        }
        compared += assert_matrix_agrees_everywhere(&index, seed, &ports).0;
    }
    assert!(compared > 10_000, "{compared} cells compared");
}

#[test]
fn evaluating_by_pod_ip_equals_evaluating_by_pod_name() {
    let index = random_cluster(99);
    let engine = Engine::new(&index, Profile::UPSTREAM);
    let live: Vec<&Pod> = engine
        .pods()
        .iter()
        .filter(|p| p.is_endpoint() && !p.host_network)
        .collect();
    for a in &live {
        for b in &live {
            let by_name = Flow {
                from: Endpoint::Pod(a.key()),
                to: Endpoint::Pod(b.key()),
                port: 80,
                protocol: Tcp,
            };
            let by_ip = Flow {
                from: Endpoint::Ip(a.ips[0]),
                to: Endpoint::Ip(b.ips[0]),
                port: 80,
                protocol: Tcp,
            };
            let (x, y) = (
                engine.evaluate(&by_name).unwrap(),
                engine.evaluate(&by_ip).unwrap(),
            );
            assert_eq!(
                (x.allowed, x.rules_allowed, x.self_traffic, x.reason),
                (y.allowed, y.rules_allowed, y.self_traffic, y.reason)
            );
        }
    }
}

#[test]
fn whatif_flips_equal_evaluating_every_pair_before_and_after() {
    let ports: Vec<MatrixPort> = [(80, Tcp), (8080, Tcp), (53, Udp)]
        .into_iter()
        .map(|(port, protocol)| MatrixPort { port, protocol })
        .collect();
    let mut flipped = 0usize;
    for seed in 1..=12_u64 {
        let before = random_cluster(seed);
        // The change: one policy gone and every pod of one namespace relabelled.
        let mut after = before.clone();
        let gone = after.policies().nth(seed as usize % 3).map(|p| p.key());
        if let Some(gone) = gone {
            Apply::<NetworkPolicy>::delete(&mut after, &gone);
        }
        let mut rng = Rng(seed * 7919);
        let relabelled: Vec<Pod> = after
            .pods_in(NAMESPACES[seed as usize % NAMESPACES.len()])
            .map(|pod| {
                let mut pod = pod.clone();
                pod.labels = random_labels(&mut rng);
                pod
            })
            .collect();
        for pod in relabelled {
            after.apply(pod);
        }
        let (b, a) = (
            Engine::new(&before, Profile::UPSTREAM),
            Engine::new(&after, Profile::UPSTREAM),
        );
        let comparison = whatif::compare(&b, &a, &ports, |_| {});
        let got: Vec<(usize, usize, MatrixPort, bool)> = comparison
            .flips
            .iter()
            .map(|f| (f.after.from, f.after.to, f.after.port, f.after.allowed))
            .collect();
        let mut want = Vec::new();
        for &port in &ports {
            for &s in &a.endpoint_ids() {
                for &d in &a.endpoint_ids() {
                    if s == d {
                        continue;
                    }
                    let flow = |engine: &Engine| {
                        let pod = |i: usize| Endpoint::Pod(a.pods()[i].key());
                        engine
                            .evaluate(&Flow {
                                from: pod(s),
                                to: pod(d),
                                port: port.port,
                                protocol: port.protocol,
                            })
                            .unwrap()
                            .allowed
                    };
                    let (was, is) = (flow(&b), flow(&a));
                    if was != is {
                        want.push((s, d, port, is));
                    }
                }
            }
        }
        assert_eq!(got, want, "seed {seed}");
        assert_eq!(comparison.only_before + comparison.only_after, 0);
        flipped += want.len();
    }
    assert!(flipped > 20, "the changes flip something: {flipped}");
}
