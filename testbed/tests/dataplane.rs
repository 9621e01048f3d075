//! The simulated network: reachability across and within nodes, closed ports, UDP echo, every
//! enforcement action, replacing rules, and both faults. Needs root (CI runs as root).
#![allow(clippy::unwrap_used)] // helpers of a test binary: a failed unwrap is a failed test

mod common;

use std::{net::Ipv4Addr, time::Duration};

use common::{connect, outcome, root_or_skip, start, udp_echo};
use testbed::{Fault, Rule};

const T: Duration = Duration::from_millis(1500);

/// a and c on node-1, b on node-2.
fn scenario(name: &str, dataplane: &str) -> String {
    format!(
        r#"
name: {name}
nodes: [node-1, node-2]
objects:
  - {{apiVersion: v1, kind: Namespace, metadata: {{name: ns}}}}
  - apiVersion: v1
    kind: Pod
    metadata: {{name: a, namespace: ns}}
    spec: {{nodeName: node-1, containers: [{{name: c, ports: [{{containerPort: 8080}}]}}]}}
    status: {{phase: Running, podIP: 10.244.1.10}}
  - apiVersion: v1
    kind: Pod
    metadata: {{name: b, namespace: ns}}
    spec:
      nodeName: node-2
      containers:
        - name: c
          ports:
            - {{containerPort: 8080}}
            - {{containerPort: 7000}}
            - {{containerPort: 9000}}
            - {{containerPort: 9001}}
            - {{containerPort: 9002}}
            - {{containerPort: 9003}}
            - {{containerPort: 9004}}
            - {{containerPort: 9005}}
            - {{containerPort: 5353, protocol: UDP}}
    status: {{phase: Running, podIP: 10.244.2.10}}
  - apiVersion: v1
    kind: Pod
    metadata: {{name: c, namespace: ns}}
    spec: {{nodeName: node-1, containers: [{{name: c, ports: [{{containerPort: 8080}}]}}]}}
    status: {{phase: Running, podIP: 10.244.1.11}}
{dataplane}
"#
    )
}

/// Interfaces of the host netns.
fn host_links() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

const A: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 10);
const B: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 10);
const C: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 11);

#[test]
fn two_nodes_come_up_and_pods_reach_each_other() {
    if !root_or_skip("two_nodes_come_up_and_pods_reach_each_other") {
        return;
    }
    let links_before = host_links();
    let host_routes = std::fs::read_to_string("/proc/net/route").unwrap();
    let tb = start(&scenario(
        "reach",
        "dataplane:\n  closed: [{pod: ns/b, port: 7000, protocol: TCP}]\n",
    ));
    // Nothing was added to the host netns: no interface, no route.
    assert_eq!(host_links(), links_before);
    assert_eq!(
        std::fs::read_to_string("/proc/net/route").unwrap(),
        host_routes
    );
    eprintln!("setup took {:?}", tb.setup_time());
    assert_eq!(tb.nodes().len(), 2);
    assert_eq!(tb.pods().len(), 3);
    let a = tb.pod("ns", "a").unwrap();
    let c = tb.pod("ns", "c").unwrap();

    assert_eq!(outcome(&connect(a, B, 8080, T)), "open", "across nodes");
    assert_eq!(outcome(&connect(a, C, 8080, T)), "open", "within a node");
    assert_eq!(outcome(&connect(c, A, 8080, T)), "open");
    assert_eq!(outcome(&connect(a, B, 7000, T)), "refused", "closed port");
    assert_eq!(
        outcome(&connect(a, B, 12345, T)),
        "refused",
        "undeclared port"
    );
    assert_eq!(
        outcome(&connect(a, Ipv4Addr::new(10, 244, 9, 9), 80, T)),
        "enetunreach",
        "no route in the router"
    );
    assert_eq!(udp_echo(a, B, 5353, T).unwrap(), b"netreach-echo");
    // The app answers on every declared port and nothing else.
    let b = tb.pod("ns", "b").unwrap();
    assert!(!b.listeners.iter().any(|(_, p)| *p == 7000));
    assert_eq!(b.listeners.len(), 8);
}

#[test]
fn rules_drop_reject_and_accept_first_match_wins() {
    if !root_or_skip("rules_drop_reject_and_accept_first_match_wins") {
        return;
    }
    let tb = start(&scenario(
        "rules",
        r#"dataplane:
  rules:
    - {action: drop, from: ns/a, to: ns/b, port: 9000, protocol: TCP}
    - {action: reject-icmp-admin, from: ns/a, to: ns/b, port: 9001}
    - {action: reject-tcp-reset, from: ns/a, to: ns/b, port: 9002, protocol: TCP}
    - {action: reject-icmp-host, from: ns/a, to: ns/b, port: 9003}
    - {action: reject-icmp-port, from: ns/a, to: ns/b, port: 9004}
    - {action: reject-icmp-net, from: ns/a, to: ns/b, port: 9005}
    - {action: reject-icmp-admin, from: ns/c, to: ns/b, port: 5353, protocol: UDP}
    - {action: accept, from: 10.244.1.11, to: ns/b}
    - {action: drop, from: 10.244.1.0/24, to: ns/b, port: 8080}
"#,
    ));
    let a = tb.pod("ns", "a").unwrap();
    let c = tb.pod("ns", "c").unwrap();
    assert_eq!(outcome(&connect(a, B, 9000, T)), "timeout", "drop");
    assert_eq!(
        outcome(&connect(a, B, 9001, T)),
        "ehostunreach",
        "admin-prohibited"
    );
    assert_eq!(outcome(&connect(a, B, 9002, T)), "refused", "tcp reset");
    assert_eq!(
        outcome(&connect(a, B, 9003, T)),
        "ehostunreach",
        "host-unreachable"
    );
    assert_eq!(
        outcome(&connect(a, B, 9004, T)),
        "refused",
        "port-unreachable"
    );
    assert_eq!(
        outcome(&connect(a, B, 9005, T)),
        "enetunreach",
        "net-unreachable"
    );
    assert_eq!(outcome(&connect(a, B, 8080, T)), "timeout", "CIDR drop");
    assert_eq!(
        outcome(&connect(c, B, 8080, T)),
        "open",
        "accept matched first"
    );
    let udp = udp_echo(c, B, 5353, T).unwrap_err();
    assert_eq!(udp.raw_os_error(), Some(113), "UDP admin-prohibited: {udp}");
    // Rules apply to the destination only: b reaches a.
    let b = tb.pod("ns", "b").unwrap();
    assert_eq!(outcome(&connect(b, A, 8080, T)), "open");

    // Replacing the rules takes effect at once.
    let only: Rule =
        serde_yaml_ng::from_str("{action: drop, from: ns/c, to: ns/b, port: 8080}").unwrap();
    tb.set_rules(&[only]).unwrap();
    assert_eq!(outcome(&connect(a, B, 9000, T)), "open");
    assert_eq!(outcome(&connect(a, B, 8080, T)), "open");
    assert_eq!(outcome(&connect(c, B, 8080, T)), "timeout");
    tb.set_rules(&[]).unwrap();
    assert_eq!(outcome(&connect(c, B, 8080, T)), "open");
    let bad: Rule = serde_yaml_ng::from_str("{action: drop, from: ns/zz, to: ns/b}").unwrap();
    let err = tb.set_rules(&[bad]).unwrap_err().to_string();
    assert!(err.contains("rules[0]") && err.contains("ns/zz"), "{err}");
}

#[test]
fn node_isolated_drops_everything_of_the_node() {
    if !root_or_skip("node_isolated_drops_everything_of_the_node") {
        return;
    }
    let tb = start(&scenario(
        "isolated",
        "dataplane:\n  faults: [{kind: node-isolated, node: node-1}]\n",
    ));
    let a = tb.pod("ns", "a").unwrap();
    let b = tb.pod("ns", "b").unwrap();
    assert_eq!(
        outcome(&connect(a, B, 8080, T)),
        "timeout",
        "out of the node"
    );
    assert_eq!(outcome(&connect(b, A, 8080, T)), "timeout", "into the node");
    assert_eq!(
        outcome(&connect(a, C, 8080, T)),
        "timeout",
        "within the node"
    );
    tb.set_faults(&[]).unwrap();
    assert_eq!(outcome(&connect(a, B, 8080, T)), "open");
    assert_eq!(outcome(&connect(a, C, 8080, T)), "open");
    tb.set_faults(&[Fault::NodeIsolated {
        node: "node-2".into(),
    }])
    .unwrap();
    assert_eq!(outcome(&connect(a, B, 8080, T)), "timeout");
    assert_eq!(outcome(&connect(a, C, 8080, T)), "open");
    let err = tb
        .set_faults(&[Fault::BridgeDropAll {
            node: "node-9".into(),
        }])
        .unwrap_err()
        .to_string();
    assert!(err.contains("node-9"), "{err}");
}

#[test]
fn bridge_drop_all_makes_the_node_unreachable() {
    if !root_or_skip("bridge_drop_all_makes_the_node_unreachable") {
        return;
    }
    let tb = start(&scenario(
        "bridge-drop",
        "dataplane:\n  faults: [{kind: bridge-drop-all, node: node-2}]\n",
    ));
    let a = tb.pod("ns", "a").unwrap();
    // The router's ARP for b fails: ICMP host-unreachable from the gateway after ~3 s.
    let r = connect(a, B, 8080, Duration::from_secs(6));
    assert_eq!(outcome(&r), "ehostunreach", "{r:?}");
    assert_eq!(
        outcome(&connect(a, C, 8080, T)),
        "open",
        "node-1 unaffected"
    );
}
