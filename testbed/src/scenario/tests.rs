use super::*;
use crate::plan;

const BASE: &str = r#"
name: t
nodes: [node-1, node-2]
objects:
  - {apiVersion: v1, kind: Namespace, metadata: {name: shop}}
  - apiVersion: v1
    kind: Pod
    metadata: {name: frontend, namespace: shop}
    spec:
      nodeName: node-1
      containers: [{name: web, ports: [{containerPort: 8080}, {containerPort: 53, protocol: UDP}]}]
    status: {phase: Running, podIP: 10.244.1.10}
  - apiVersion: v1
    kind: Pod
    metadata: {name: api, namespace: shop, uid: 11111111-2222-3333-4444-555555555555}
    spec:
      nodeName: node-2
      containers: [{name: api, ports: [{containerPort: 9090}, {containerPort: 80, protocol: SCTP}]}]
    status: {phase: Running, podIP: 10.244.2.10}
  - apiVersion: v1
    kind: Pod
    metadata: {name: cni, namespace: kube-system}
    spec: {nodeName: node-2, hostNetwork: true, containers: [{name: a}]}
    status: {phase: Running, podIP: 192.0.2.5}
  - apiVersion: v1
    kind: Pod
    metadata: {name: pending, namespace: shop}
    spec: {containers: [{name: a, ports: [{containerPort: 1}]}]}
    status: {phase: Pending}
"#;

fn with(extra: &str) -> Scenario {
    Scenario::from_yaml(&format!("{BASE}{extra}"), "<test>").unwrap()
}

fn invalid(s: &Scenario) -> String {
    match s.validate() {
        Err(e @ Error::Invalid { .. }) => e.to_string(),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn the_design_example_parses() {
    let text = r#"
name: shop-incident
nodes: [node-1, node-2]
objects:
  - {apiVersion: v1, kind: Namespace, metadata: {name: shop, labels: {team: shop}}}
dataplane:
  closed: []
  dns:
    pod: kube-system/coredns
    records:
      api.shop.svc.cluster.local: 10.244.1.11
      broken.example: SERVFAIL
      slow.example: TIMEOUT
  rules:
    - action: drop
      from: shop/frontend
      to: payments/gateway
      port: 8443
      protocol: TCP
    - {action: reject-icmp-host, from: 10.244.2.0/24, to: payments/gateway}
  faults:
    - {kind: node-isolated, node: node-2}
    - {kind: bridge-drop-all, node: node-1}
expect:
  - {from: shop/frontend, to: payments/gateway, port: 8443, protocol: TCP, verdict: blocked_by_policy}
"#;
    let s = Scenario::from_yaml(text, "<test>").unwrap();
    assert_eq!(s.nodes, ["node-1", "node-2"]);
    let dns = s.dataplane.dns.as_ref().unwrap();
    assert_eq!(dns.pod, PodRef::new("kube-system", "coredns"));
    assert_eq!(
        dns.records["api.shop.svc.cluster.local"],
        DnsAnswer::A(Ipv4Addr::new(10, 244, 1, 11))
    );
    assert_eq!(dns.records["broken.example"], DnsAnswer::ServFail);
    assert_eq!(s.dataplane.rules[0].action, Action::Drop);
    assert_eq!(s.dataplane.rules[0].port, Some(8443));
    assert_eq!(s.dataplane.rules[1].protocol, RuleProtocol::Any);
    assert_eq!(
        s.dataplane.rules[1].from,
        Peer::Cidr("10.244.2.0/24".parse().unwrap())
    );
    assert_eq!(s.dataplane.faults.len(), 2);
    assert_eq!(s.expect.len(), 1);
    // Round trip.
    let again = serde_yaml_ng::to_string(&s).unwrap();
    assert_eq!(Scenario::from_yaml(&again, "<again>").unwrap(), s);
}

#[test]
fn unknown_fault_kind_names_the_entry() {
    let text = "name: t\nnodes: [a]\ndataplane:\n  faults:\n    - {kind: node-isolated, node: a}\n    - {kind: cable-cut, node: a}\n";
    let err = Scenario::from_yaml(text, "f.yaml").unwrap_err().to_string();
    assert!(err.contains("f.yaml"), "{err}");
    assert!(err.contains("dataplane.faults[1]"), "{err}");
    assert!(err.contains("cable-cut"), "{err}");
}

#[test]
fn unknown_fields_and_bad_values_are_rejected_with_their_path() {
    let err = Scenario::from_yaml("name: t\nnodes: [a]\ndataplane: {rules: [{action: drop, from: a/b, to: c/d, protocl: TCP}]}\n", "x")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("dataplane.rules[0]") && err.contains("protocl"),
        "{err}"
    );
    let err = Scenario::from_yaml(
        "name: t\nnodes: [a]\ndataplane: {rules: [{action: explode, from: a/b, to: c/d}]}\n",
        "x",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("explode"), "{err}");
    let err = Scenario::from_yaml(
        "name: t\nnodes: [a]\ndataplane: {dns: {pod: a/b, records: {x: 1.2.3}}}\n",
        "x",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("dataplane.dns.records.x") || err.contains("1.2.3"),
        "{err}"
    );
    assert!(Scenario::from_yaml("name: t\nnodes: [a]\nsurprise: 1\n", "x").is_err());
}

#[test]
fn the_base_scenario_plans_pods_layouts_and_listeners() {
    let s = with("");
    let p = plan::plan(&s).unwrap();
    let names: Vec<String> = p.pods.iter().map(|p| p.pod.to_string()).collect();
    assert_eq!(names, ["shop/frontend", "shop/api", "kube-system/cni"]);
    assert_eq!(p.pods[0].layout, CgroupLayout::ContainerdSystemd);
    assert_eq!(p.pods[1].layout, CgroupLayout::CrioSystemd);
    // hostNetwork pods rotate on their own.
    assert_eq!(p.pods[2].layout, CgroupLayout::ContainerdSystemd);
    assert!(p.pods[2].host_network && p.pods[2].ip.is_none());
    assert_eq!(
        p.pods[0].listeners,
        [(Protocol::Tcp, 8080), (Protocol::Udp, 53)]
    );
    // SCTP gets no listener.
    assert_eq!(p.pods[1].listeners, [(Protocol::Tcp, 9090)]);
    // Given UIDs are kept; missing ones are fresh UUIDs, in the objects too.
    assert_eq!(p.pods[1].uid, "11111111-2222-3333-4444-555555555555");
    assert_eq!(p.pods[0].uid.len(), 36);
    assert_eq!(
        p.objects[1]
            .pointer("/metadata/uid")
            .and_then(Value::as_str),
        Some(p.pods[0].uid.as_str())
    );
    assert!(p.objects[0].pointer("/metadata/uid").is_some());
    let again = plan::plan(&s).unwrap();
    assert_ne!(again.pods[0].uid, p.pods[0].uid);
}

use crate::cgroup::CgroupLayout;

#[test]
fn pod_errors_name_the_pod() {
    let bad_ip = BASE.replace("podIP: 10.244.2.10", "podIP: 10.244.1.99");
    let s = Scenario::from_yaml(&bad_ip, "x").unwrap();
    let e = invalid(&s);
    assert!(
        e.contains("Pod shop/api") && e.contains("10.244.2.0/24"),
        "{e}"
    );

    let dup = BASE
        .replace("podIP: 10.244.2.10", "podIP: 10.244.1.10")
        .replace(
            "nodeName: node-2\n      containers: [{name: api",
            "nodeName: node-1\n      containers: [{name: api",
        );
    let e = invalid(&Scenario::from_yaml(&dup, "x").unwrap());
    assert!(
        e.contains("Pod shop/api") && e.contains("shop/frontend"),
        "{e}"
    );

    let node = BASE.replace("nodeName: node-1", "nodeName: node-9");
    let e = invalid(&Scenario::from_yaml(&node, "x").unwrap());
    assert!(
        e.contains("Pod shop/frontend") && e.contains("node-9"),
        "{e}"
    );

    let gw = BASE.replace("podIP: 10.244.1.10", "podIP: 10.244.1.1");
    let e = invalid(&Scenario::from_yaml(&gw, "x").unwrap());
    assert!(e.contains("Pod shop/frontend"), "{e}");

    let no_ip = BASE.replace(", podIP: 10.244.1.10", "");
    let e = invalid(&Scenario::from_yaml(&no_ip, "x").unwrap());
    assert!(
        e.contains("Pod shop/frontend") && e.contains("podIP"),
        "{e}"
    );
}

#[test]
fn dataplane_errors_name_the_entry() {
    let e = invalid(&with(
        "dataplane:\n  rules: [{action: drop, from: shop/frontend, to: shop/ghost}]\n",
    ));
    assert!(
        e.contains("dataplane.rules[0]") && e.contains("shop/ghost"),
        "{e}"
    );
    let e = invalid(&with(
        "dataplane:\n  rules: [{action: drop, from: shop/pending, to: shop/api}]\n",
    ));
    assert!(e.contains("not Running"), "{e}");
    let e = invalid(&with(
        "dataplane:\n  rules: [{action: drop, from: shop/api, to: kube-system/cni}]\n",
    ));
    assert!(e.contains("hostNetwork"), "{e}");
    let e = invalid(&with(
        "dataplane:\n  rules: [{action: reject-tcp-reset, from: shop/api, to: shop/frontend, protocol: UDP}]\n",
    ));
    assert!(e.contains("UDP"), "{e}");
    let e = invalid(&with(
        "dataplane:\n  closed: [{pod: shop/api, port: 9091}]\n",
    ));
    assert!(
        e.contains("dataplane.closed[0]") && e.contains("9091/TCP"),
        "{e}"
    );
    let e = invalid(&with(
        "dataplane:\n  faults: [{kind: node-isolated, node: node-7}]\n",
    ));
    assert!(e.contains("node-7"), "{e}");
    let e = invalid(&with("faults: [{kind: bridge-drop-all, node: node-8}]\n"));
    assert!(e.contains("node-8"), "{e}");
    let e = invalid(&with("dataplane:\n  dns: {pod: kube-system/cni}\n"));
    assert!(
        e.contains("dataplane.dns") && e.contains("hostNetwork"),
        "{e}"
    );
}

#[test]
fn closed_ports_and_the_dns_port_get_no_listener() {
    let s = with(
        "dataplane:\n  closed: [{pod: shop/frontend, port: 8080, protocol: TCP}]\n  dns: {pod: shop/api, records: {a.b.: 10.244.1.10}}\n",
    );
    let p = plan::plan(&s).unwrap();
    assert_eq!(p.pods[0].listeners, [(Protocol::Udp, 53)]);
    let dns = p.dns.unwrap();
    assert_eq!(dns.ip, Ipv4Addr::new(10, 244, 2, 10));
    assert!(dns.records.contains_key("a.b"));
}

#[test]
fn cidrs_and_peers_parse() {
    let c: Ipv4Cidr = "10.244.2.77/24".parse().unwrap();
    assert_eq!(c.to_string(), "10.244.2.0/24");
    assert!(c.contains(Ipv4Addr::new(10, 244, 2, 5)));
    assert!(!c.contains(Ipv4Addr::new(10, 244, 3, 5)));
    assert_eq!("10.1.2.3".parse::<Ipv4Cidr>().unwrap().prefix_len, 32);
    assert!("10.1.2.3/33".parse::<Ipv4Cidr>().is_err());
    assert_eq!(
        "0.0.0.0/0".parse::<Ipv4Cidr>().unwrap().to_string(),
        "0.0.0.0/0"
    );
    assert_eq!(
        "ns/pod".parse::<Peer>().unwrap(),
        Peer::Pod(PodRef::new("ns", "pod"))
    );
    assert!("nonsense".parse::<Peer>().is_err());
    assert!("a/b/c".parse::<PodRef>().is_err());
}
