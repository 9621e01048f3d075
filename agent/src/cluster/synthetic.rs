//! A synthetic cluster for benchmarks and property tests: N pods in M namespaces with P
//! policies that use the whole NetworkPolicy feature set (matchLabels and every
//! matchExpressions operator, namespaceSelector, AND peers, ipBlock with except, named ports,
//! endPort, UDP/SCTP, egress, default deny, allow-all, omitted policyTypes). Deterministic:
//! the same sizes and seed give the same YAML.

use std::fmt::Write;

/// Sizes of a synthetic cluster.
#[derive(Clone, Copy, Debug)]
pub struct SyntheticSpec {
    pub namespaces: usize,
    pub pods: usize,
    pub policies: usize,
    pub seed: u64,
}

impl SyntheticSpec {
    /// The benchmark target: 1,000 pods in 50 namespaces with 200 policies.
    pub const BENCH: SyntheticSpec = SyntheticSpec {
        namespaces: 50,
        pods: 1000,
        policies: 200,
        seed: 42,
    };
}

/// xorshift64*: small, deterministic, good enough for fixtures.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const APPS: [&str; 8] = [
    "web", "api", "db", "cache", "worker", "gateway", "auth", "search",
];
const TIERS: [&str; 3] = ["frontend", "backend", "data"];
const TEAMS: [&str; 5] = ["shop", "payments", "platform", "data", "ml"];

/// Renders the cluster as multi-document YAML (Namespaces, Pods, NetworkPolicies).
pub fn cluster_yaml(spec: SyntheticSpec) -> String {
    let mut rng = Rng(spec.seed.max(1));
    let mut out = String::with_capacity(spec.pods * 900 + spec.policies * 900);
    for n in 0..spec.namespaces {
        let _ = write!(
            out,
            "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns-{n}\n  labels:\n    team: {}\n    env: {}\n",
            TEAMS[n % TEAMS.len()],
            if n % 3 == 0 { "prod" } else { "dev" }
        );
    }
    for p in 0..spec.pods {
        let ns = p % spec.namespaces.max(1);
        let app = APPS[rng.below(APPS.len())];
        let tier = TIERS[rng.below(TIERS.len())];
        let node = p % 4;
        let ip = format!("10.244.{}.{}", p / 250, p % 250 + 2);
        let _ = write!(
            out,
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {app}-{p}\n  namespace: ns-{ns}\n  uid: 00000000-0000-4000-8000-{p:012}\n  labels:\n    app: {app}\n    tier: {tier}\n{}spec:\n  nodeName: node-{node}\n  containers:\n  - name: main\n    ports:\n    - {{name: http, containerPort: 8080, protocol: TCP}}\n    - {{name: metrics, containerPort: 9090}}\n    - {{name: dns, containerPort: 53, protocol: UDP}}\n    - {{containerPort: 80}}\nstatus:\n  phase: Running\n  podIP: {ip}\n  podIPs:\n  - ip: {ip}\n  conditions:\n  - {{type: Ready, status: \"True\"}}\n",
            if rng.chance(30) {
                "    canary: \"true\"\n"
            } else {
                ""
            }
        );
    }
    for i in 0..spec.policies {
        let ns = rng.below(spec.namespaces);
        let _ = write!(
            out,
            "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: pol-{i}\n  namespace: ns-{ns}\nspec:\n"
        );
        out.push_str(&policy_body(&mut rng, i, spec.namespaces));
    }
    out
}

fn selector(rng: &mut Rng, indent: &str) -> String {
    match rng.below(6) {
        0 => format!(
            "{indent}matchLabels: {{app: {}}}\n",
            APPS[rng.below(APPS.len())]
        ),
        1 => format!(
            "{indent}matchLabels: {{app: {}, tier: {}}}\n",
            APPS[rng.below(APPS.len())],
            TIERS[rng.below(TIERS.len())]
        ),
        2 => format!(
            "{indent}matchExpressions:\n{indent}- {{key: app, operator: In, values: [{}, {}]}}\n",
            APPS[rng.below(APPS.len())],
            APPS[rng.below(APPS.len())]
        ),
        3 => format!(
            "{indent}matchExpressions:\n{indent}- {{key: tier, operator: NotIn, values: [{}]}}\n",
            TIERS[rng.below(TIERS.len())]
        ),
        4 => format!(
            "{indent}matchExpressions:\n{indent}- {{key: canary, operator: DoesNotExist}}\n"
        ),
        _ => format!("{indent}matchExpressions:\n{indent}- {{key: canary, operator: Exists}}\n"),
    }
}

fn peer(rng: &mut Rng, namespaces: usize) -> String {
    match rng.below(6) {
        0 => format!("    - podSelector:\n{}", selector(rng, "        ")),
        1 => format!(
            "    - namespaceSelector:\n        matchLabels: {{team: {}}}\n",
            TEAMS[rng.below(TEAMS.len())]
        ),
        2 => format!(
            "    - namespaceSelector:\n        matchLabels: {{kubernetes.io/metadata.name: ns-{}}}\n      podSelector:\n{}",
            rng.below(namespaces),
            selector(rng, "        ")
        ),
        3 => format!(
            "    - namespaceSelector:\n        matchExpressions:\n        - {{key: env, operator: In, values: [prod]}}\n      podSelector:\n{}",
            selector(rng, "        ")
        ),
        4 => format!(
            "    - ipBlock:\n        cidr: 10.244.{o}.0/24\n        except: [10.244.{o}.128/25]\n",
            o = rng.below(4)
        ),
        _ => "    - namespaceSelector: {}\n".to_string(),
    }
}

fn ports(rng: &mut Rng) -> String {
    match rng.below(7) {
        0 => "    ports:\n    - {port: 8080, protocol: TCP}\n".into(),
        1 => "    ports:\n    - {port: http}\n".into(),
        2 => "    ports:\n    - {port: 8000, endPort: 8100}\n".into(),
        3 => {
            "    ports:\n    - {port: dns, protocol: UDP}\n    - {port: 53, protocol: TCP}\n".into()
        }
        4 => "    ports:\n    - {protocol: SCTP}\n".into(),
        5 => "    ports:\n    - {port: 80}\n    - {port: metrics}\n".into(),
        _ => String::new(),
    }
}

fn rules(rng: &mut Rng, key: &str, namespaces: usize) -> String {
    let count = 1 + rng.below(3);
    let mut s = format!("  {key}:\n");
    for _ in 0..count {
        let peer_key = if key == "ingress" { "from" } else { "to" };
        s.push_str("  - ");
        let body_ports = ports(rng);
        let peers: String = (0..1 + rng.below(2))
            .map(|_| peer(rng, namespaces))
            .collect();
        let _ = write!(s, "{peer_key}:\n{peers}");
        s.push_str(&body_ports);
    }
    s
}

fn policy_body(rng: &mut Rng, i: usize, namespaces: usize) -> String {
    let mut s = String::new();
    if i.is_multiple_of(10) {
        // Default deny of the namespace, both directions.
        s.push_str("  podSelector: {}\n  policyTypes: [Ingress, Egress]\n");
        return s;
    }
    if i % 25 == 1 {
        s.push_str("  podSelector: {}\n  ingress:\n  - {}\n");
        return s;
    }
    s.push_str("  podSelector:\n");
    s.push_str(&selector(rng, "    "));
    match rng.below(4) {
        0 => {
            s.push_str(&rules(rng, "ingress", namespaces));
        }
        1 => {
            s.push_str("  policyTypes: [Ingress, Egress]\n");
            s.push_str(&rules(rng, "ingress", namespaces));
            s.push_str(&rules(rng, "egress", namespaces));
        }
        2 => {
            s.push_str("  policyTypes: [Egress]\n");
            s.push_str(&rules(rng, "egress", namespaces));
        }
        _ => {
            s.push_str("  policyTypes: [Ingress]\n");
            s.push_str(&rules(rng, "ingress", namespaces));
        }
    }
    s
}

/// `count` ClusterNetworkPolicies over a cluster of [`cluster_yaml`] with `namespaces`
/// namespaces: Admin (about two in three) and Baseline tiers at distinct priorities, subjects by
/// team or by app, 1-3 rules each of every action, with `namespaces`, `pods` and `networks`
/// peers and `protocols` (numbers, ranges, named ports) or none. Deterministic per `seed`.
pub fn cluster_policies_yaml(count: usize, namespaces: usize, seed: u64) -> String {
    let mut rng = Rng(seed.max(1) ^ 0x5eed);
    let mut out = String::with_capacity(count * 700);
    for i in 0..count {
        let tier = if rng.chance(66) { "Admin" } else { "Baseline" };
        let subject = if rng.chance(50) {
            format!(
                "    namespaces:\n      matchLabels: {{team: {}}}\n",
                TEAMS[rng.below(TEAMS.len())]
            )
        } else {
            format!(
                "    pods:\n      namespaceSelector: {{}}\n      podSelector:\n        matchLabels: {{app: {}}}\n",
                APPS[rng.below(APPS.len())]
            )
        };
        let _ = write!(
            out,
            "---\napiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata:\n  name: cnp-{i}\nspec:\n  tier: {tier}\n  priority: {}\n  subject:\n{subject}",
            i * 3 + 1
        );
        for (key, peer_key) in [("ingress", "from"), ("egress", "to")] {
            if rng.chance(40) {
                continue;
            }
            let _ = writeln!(out, "  {key}:");
            for r in 0..1 + rng.below(3) {
                let action = ["Accept", "Deny", "Pass"][rng.below(3)];
                let peer = match rng.below(4) {
                    0 => format!(
                        "    - namespaces:\n        matchLabels: {{team: {}}}\n",
                        TEAMS[rng.below(TEAMS.len())]
                    ),
                    1 => format!(
                        "    - pods:\n        namespaceSelector:\n          matchLabels: {{kubernetes.io/metadata.name: ns-{}}}\n        podSelector:\n          matchLabels: {{tier: {}}}\n",
                        rng.below(namespaces.max(1)),
                        TIERS[rng.below(TIERS.len())]
                    ),
                    2 if key == "egress" => {
                        format!("    - networks: [10.244.{}.0/24]\n", rng.below(4))
                    }
                    _ => "    - namespaces: {}\n".to_string(),
                };
                let protocols = match rng.below(5) {
                    0 => "    protocols:\n    - tcp: {destinationPort: {number: 8080}}\n",
                    1 => {
                        "    protocols:\n    - tcp: {destinationPort: {range: {start: 8000, end: 9100}}}\n"
                    }
                    2 => "    protocols:\n    - destinationNamedPort: metrics\n",
                    3 => "    protocols:\n    - udp: {destinationPort: {number: 53}}\n",
                    _ => "",
                };
                let _ = write!(
                    out,
                    "  - name: r{r}\n    action: {action}\n    {peer_key}:\n{peer}{protocols}"
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::load::{Loaded, load_str};

    /// The generated cluster policies are all valid (no problem, every one loaded) and every
    /// action and tier occurs.
    #[test]
    fn generated_cluster_policies_load_cleanly() {
        let yaml = cluster_policies_yaml(50, 50, 42);
        let mut loaded = Loaded::default();
        load_str("synthetic.yaml", &yaml, &mut loaded);
        assert!(loaded.parse_errors.is_empty(), "{:?}", loaded.parse_errors);
        assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
        assert_eq!(loaded.index.tiered_policies().count(), 50);
        for needle in [
            "tier: Admin",
            "tier: Baseline",
            "action: Accept",
            "action: Deny",
            "action: Pass",
            "networks:",
            "destinationNamedPort",
        ] {
            assert!(yaml.contains(needle), "{needle} never generated");
        }
    }
}
