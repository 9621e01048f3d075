//! The streaming writer against the reference it replaced: serde_json of the contract's row
//! struct, with each denied pair's reason taken from its full verdict.

use serde::Serialize;

use super::*;
use crate::cluster::load::{Loaded, load_str};
use crate::policy::{Profile, Reason};

/// One row of the JSON contract, as the writer before the streaming one built it.
#[derive(Serialize)]
struct PairRow<'a> {
    from: String,
    to: String,
    port: u16,
    protocol: &'a str,
    allowed: bool,
    #[serde(rename = "self")]
    self_traffic: bool,
    rules_allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<Reason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    direction: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    policies: Vec<String>,
}

fn reference_json(engine: &Engine, cells: &[MatrixCell], incomplete: bool) -> Vec<u8> {
    let pods = engine.pods();
    let mut out = format!("{{\"incomplete\":{incomplete},\"pairs\":[").into_bytes();
    for (i, cell) in cells.iter().enumerate() {
        out.extend_from_slice(if i > 0 { b",\n" } else { b"\n" });
        let mut row = PairRow {
            from: pods[cell.from].key().to_string(),
            to: pods[cell.to].key().to_string(),
            port: cell.port.port,
            protocol: cell.port.protocol.as_str(),
            allowed: cell.allowed,
            self_traffic: cell.self_traffic,
            rules_allowed: cell.rules_allowed,
            reason: None,
            direction: None,
            policies: Vec::new(),
        };
        if !cell.rules_allowed {
            let verdict = engine.evaluate_cell(cell);
            row.reason = verdict.reason;
            row.direction = verdict.direction.map(|d| d.as_str());
            row.policies = verdict.policies;
        }
        serde_json::to_writer(&mut out, &row).expect("serialize");
    }
    out.extend_from_slice(b"\n]}\n");
    out
}

fn streamed_json(engine: &Engine, ports: &[MatrixPort], incomplete: bool) -> Vec<u8> {
    let mut writer = JsonMatrixWriter::begin(engine, Vec::new(), incomplete);
    engine
        .try_for_each_cell(ports, |cell| writer.row(&cell))
        .expect("write to memory");
    writer.finish().expect("write to memory")
}

fn load(yaml: &str) -> Loaded {
    let mut loaded = Loaded::default();
    load_str("dump.yaml", yaml, &mut loaded);
    assert!(
        loaded.parse_errors.is_empty(),
        "fixture parses: {:?}",
        loaded.parse_errors
    );
    loaded
}

/// Names that need JSON escaping (quote, backslash, tab, non-ASCII), a default deny, selector
/// and namespace misses, an ipBlock with except, a named port some pods lack, endPort, an
/// egress-only policy, a hostNetwork pod, an IPv6-only pod next to IPv4 ones, and a pod
/// without an IP (not an endpoint).
const VARIED: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: shop}}
---
apiVersion: v1
kind: Namespace
metadata: {name: pay, labels: {team: payments}}
---
apiVersion: v1
kind: Pod
metadata: {name: "we\"ird\\pod", namespace: shop, labels: {app: web}}
spec: {nodeName: n1, containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}
status: {phase: Running, podIP: 10.0.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: "café\tü", namespace: shop, labels: {app: api}}
spec: {nodeName: n1, containers: [{name: c, ports: [{containerPort: 8080}, {containerPort: 53, protocol: UDP}]}]}
status: {phase: Running, podIP: 10.0.0.3}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: shop, labels: {app: db}}
spec: {nodeName: n2, containers: [{name: c, ports: [{name: http, containerPort: 5432}]}]}
status: {phase: Running, podIP: 10.0.1.4}
---
apiVersion: v1
kind: Pod
metadata: {name: gateway, namespace: pay, labels: {app: gateway}}
spec: {nodeName: n2, containers: [{name: c, ports: [{containerPort: 8443}]}]}
status: {phase: Running, podIP: 10.0.9.5}
---
apiVersion: v1
kind: Pod
metadata: {name: v6only, namespace: pay, labels: {app: gateway}}
spec: {nodeName: n2, containers: [{name: c, ports: [{containerPort: 8080}]}]}
status: {phase: Running, podIP: "fd00::6", podIPs: [{ip: "fd00::6"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: host-agent, namespace: pay, labels: {app: web}}
spec: {nodeName: n1, hostNetwork: true, containers: [{name: c, ports: [{containerPort: 9100}]}]}
status: {phase: Running, podIP: 192.168.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: pending, namespace: shop, labels: {app: web}}
spec: {containers: [{name: c}]}
status: {phase: Pending}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: "deny\"all", namespace: shop}
spec: {podSelector: {}, policyTypes: [Ingress]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api-from-web, namespace: shop}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{port: http}, {port: 8000, endPort: 8100}]
  - from: [{namespaceSelector: {matchLabels: {team: payments}}, podSelector: {matchLabels: {app: nope}}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-from-pay, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {team: payments}}}, {ipBlock: {cidr: 10.0.0.0/16, except: [10.0.0.0/24]}}]
    ports: [{port: http}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: egress-dns-only, namespace: pay}
spec:
  podSelector: {matchLabels: {app: gateway}}
  policyTypes: [Egress]
  egress:
  - to: [{namespaceSelector: {}}]
    ports: [{port: 53, protocol: UDP}]
"#;

#[test]
fn streamed_json_is_the_reference_serialization_byte_for_byte() {
    let loaded = load(VARIED);
    let engine = Engine::new(&loaded.index, Profile::UPSTREAM);
    let explicit = [
        MatrixPort {
            port: 8080,
            protocol: crate::cluster::Protocol::Tcp,
        },
        MatrixPort {
            port: 53,
            protocol: crate::cluster::Protocol::Udp,
        },
    ];
    // (ports, incomplete): every destination on its own ports, explicit ports, and no cells.
    let cases: [(&[MatrixPort], bool); 3] = [(&[], false), (&explicit, true), (&[], true)];
    for (ports, incomplete) in cases {
        let want = reference_json(&engine, &engine.matrix(ports), incomplete);
        let got = streamed_json(&engine, ports, incomplete);
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "ports {ports:?}, incomplete {incomplete}"
        );
    }

    // The fixture exercises what the writer must get right.
    let text = String::from_utf8(streamed_json(&engine, &[], false)).expect("utf-8");
    for needle in [
        r#""from":"shop/we\"ird\\pod""#,
        r#""to":"shop/café\tü""#,
        r#""self":true,"rules_allowed":false,"reason""#,
        r#""policies":["shop/api-from-web","shop/deny\"all"]"#,
        r#""reason":"default_deny""#,
        r#""reason":"pod_selector_mismatch""#,
        r#""reason":"namespace_selector_mismatch""#,
        r#""reason":"ip_block_mismatch""#,
        r#""reason":"port_not_allowed","direction":"egress""#,
        // Both directions deny: egress's policies first, as in the verdict.
        r#""direction":"ingress","policies":["pay/egress-dns-only","shop/api-from-web""#,
        r#""from":"pay/v6only""#,
        r#""from":"pay/host-agent""#,
    ] {
        assert!(text.contains(needle), "no {needle} in\n{text}");
    }
    assert!(
        !text.contains("pending"),
        "a pod without an IP is no endpoint"
    );
    let parsed: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert!(
        parsed["pairs"]
            .as_array()
            .is_some_and(|rows| rows.len() > 20)
    );
}

#[cfg(feature = "demo")]
#[test]
fn streamed_json_equals_the_reference_on_a_synthetic_cluster() {
    use crate::cluster::synthetic::{SyntheticSpec, cluster_yaml};
    let loaded = load(&cluster_yaml(SyntheticSpec {
        namespaces: 6,
        pods: 60,
        policies: 30,
        seed: 7,
    }));
    for profile in Profile::ALL {
        let engine = Engine::new(&loaded.index, profile.clone());
        let want = reference_json(&engine, &engine.matrix(&[]), false);
        assert!(String::from_utf8_lossy(&want).contains("\"policies\""));
        assert!(
            streamed_json(&engine, &[], false) == want,
            "profile {profile}: streamed JSON differs from the reference"
        );
    }
}
