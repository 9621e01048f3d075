//! Services and EndpointSlices: conversion (each field error named), and what a Service port
//! resolves to: the ClusterIP and the ready endpoints, each on its own resolved targetPort.

use super::*;
use crate::cluster::load::{Loaded, load_str};

/// The shop: `api` (ClusterIP, port 80 -> named targetPort `http`) over three pods, two of
/// them with `http` on 8080 and one (a newer version) on 9090; `db` without slices.
const SHOP: &str = r#"
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Namespace, metadata: {name: shop}}
- apiVersion: v1
  kind: Service
  metadata: {name: api, namespace: shop}
  spec:
    clusterIP: 10.244.255.10
    selector: {app: api}
    ports:
    - {name: web, port: 80, targetPort: http}
    - {name: dns, port: 53, protocol: UDP, targetPort: 5353}
- apiVersion: v1
  kind: Service
  metadata: {name: db, namespace: shop}
  spec:
    clusterIP: 10.244.255.11
    selector: {app: db}
    ports: [{port: 5432, targetPort: pg}]
- apiVersion: v1
  kind: Service
  metadata: {name: peers, namespace: shop}
  spec: {clusterIP: None, selector: {app: db}, ports: [{port: 5432}]}
- apiVersion: v1
  kind: Service
  metadata: {name: alias, namespace: shop}
  spec: {type: ExternalName, externalName: example.com}
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata: {name: api-a, namespace: shop, labels: {kubernetes.io/service-name: api}}
  addressType: IPv4
  ports: [{name: web, port: 8080}, {name: dns, port: 5353, protocol: UDP}]
  endpoints:
  - {addresses: [10.244.1.11], conditions: {ready: true}, targetRef: {kind: Pod, name: api-1, namespace: shop}}
  - {addresses: [10.244.2.12], targetRef: {kind: Pod, name: api-2, namespace: shop}}
  - {addresses: [10.244.2.13], conditions: {ready: false}, targetRef: {kind: Pod, name: api-3, namespace: shop}}
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata: {name: api-b, namespace: shop, labels: {kubernetes.io/service-name: api}}
  addressType: IPv4
  ports: [{name: web, port: 9090}]
  endpoints:
  - {addresses: [10.244.3.14], targetRef: {kind: Pod, name: api-4, namespace: shop}}
- apiVersion: v1
  kind: Pod
  metadata: {name: db-1, namespace: shop, labels: {app: db}}
  spec: {nodeName: n1, containers: [{name: pg, ports: [{name: pg, containerPort: 5432}]}]}
  status: {phase: Running, podIP: 10.244.1.21, conditions: [{type: Ready, status: "True"}]}
- apiVersion: v1
  kind: Pod
  metadata: {name: db-2, namespace: shop, labels: {app: db}}
  spec: {nodeName: n1, containers: [{name: pg, ports: [{name: pg, containerPort: 6432}]}]}
  status: {phase: Running, podIP: 10.244.1.22, conditions: [{type: Ready, status: "False"}]}
"#;

fn shop() -> Loaded {
    let mut loaded = Loaded::default();
    load_str("shop.yaml", SHOP, &mut loaded);
    assert_eq!(loaded.problems, [], "the fixture loads cleanly");
    loaded
}

fn svc(name: &str) -> ObjectRef {
    ObjectRef::new("shop", name)
}

fn endpoints(resolved: &ResolvedService) -> Vec<String> {
    resolved
        .endpoints
        .iter()
        .map(|e| {
            let pod = e.pod.as_ref().map_or("-".to_string(), ToString::to_string);
            format!("{pod} {}:{}", e.ip, e.port)
        })
        .collect()
}

#[test]
fn a_service_port_resolves_to_its_ready_endpoints_on_their_own_target_ports() {
    let loaded = shop();
    assert_eq!(loaded.summary.services, 4);
    assert_eq!(loaded.summary.endpoint_slices, 2);
    let index = &loaded.index;
    let web = resolve(index, &svc("api"), &PortRef::Number(80), Protocol::Tcp).unwrap();
    assert_eq!(web.cluster_ip, Some("10.244.255.10".parse().unwrap()));
    assert_eq!(web.source, EndpointSource::EndpointSlices);
    assert_eq!(
        endpoints(&web),
        [
            "shop/api-1 10.244.1.11:8080",
            "shop/api-2 10.244.2.12:8080",
            "shop/api-4 10.244.3.14:9090",
        ],
        "a named targetPort resolves per slice; an unset ready condition is ready"
    );
    assert_eq!(web.not_ready, 1);
    // By the port's name, and the UDP port (only the slice that carries it).
    let by_name = resolve(
        index,
        &svc("api"),
        &PortRef::Name("web".into()),
        Protocol::Tcp,
    )
    .unwrap();
    assert_eq!(by_name.endpoints, web.endpoints);
    let dns = resolve(index, &svc("api"), &PortRef::Number(53), Protocol::Udp).unwrap();
    assert_eq!(
        endpoints(&dns),
        ["shop/api-1 10.244.1.11:5353", "shop/api-2 10.244.2.12:5353"]
    );
}

#[test]
fn without_slices_the_selector_picks_the_endpoints() {
    let loaded = shop();
    let db = resolve(
        &loaded.index,
        &svc("db"),
        &PortRef::Number(5432),
        Protocol::Tcp,
    )
    .unwrap();
    assert_eq!(db.source, EndpointSource::Selector);
    assert_eq!(endpoints(&db), ["shop/db-1 10.244.1.21:5432"]);
    assert_eq!(db.not_ready, 1, "db-2 is not ready");
    let peers = resolve(
        &loaded.index,
        &svc("peers"),
        &PortRef::Number(5432),
        Protocol::Tcp,
    )
    .unwrap();
    assert_eq!(peers.kind, ServiceKind::Headless);
    assert_eq!(peers.cluster_ip, None);
    assert_eq!(endpoints(&peers), ["shop/db-1 10.244.1.21:5432"]);
}

#[test]
fn what_does_not_resolve_is_named() {
    let loaded = shop();
    let index = &loaded.index;
    let cases = [
        (
            svc("nope"),
            PortRef::Number(80),
            Protocol::Tcp,
            "Service shop/nope is not in the loaded objects",
        ),
        (
            svc("api"),
            PortRef::Number(8080),
            Protocol::Tcp,
            "Service shop/api has no TCP port 8080 (ports: web=80/TCP->http, dns=53/UDP->5353)",
        ),
        (
            svc("api"),
            PortRef::Number(80),
            Protocol::Udp,
            "has no UDP port 80",
        ),
        (
            svc("alias"),
            PortRef::Number(80),
            Protocol::Tcp,
            "ExternalName alias",
        ),
    ];
    for (service, port, protocol, want) in cases {
        let error = resolve(index, &service, &port, protocol)
            .unwrap_err()
            .to_string();
        assert!(error.contains(want), "{error} vs {want}");
    }
}

#[test]
fn malformed_services_and_slices_name_the_field() {
    let text = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: bad, namespace: shop}
  spec: {clusterIP: 300.1.1.1, ports: [{port: 0}, {port: 80, protocol: ICMP}]}
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata: {name: orphan, namespace: shop}
  addressType: IPv4
  endpoints: [{addresses: [not-an-ip]}]
"#;
    let mut loaded = Loaded::default();
    load_str("bad.yaml", text, &mut loaded);
    let fields: Vec<String> = loaded
        .problems
        .iter()
        .flat_map(|p| p.field.clone())
        .collect();
    for want in [
        "spec.clusterIPs[0]",
        "spec.ports[0].port",
        "spec.ports[1].protocol",
        "metadata.labels[kubernetes.io/service-name]",
        "endpoints[0].addresses[0]",
    ] {
        assert!(
            fields.iter().any(|f| f.contains(want)),
            "{want} not in {fields:?}"
        );
    }
    assert_eq!(loaded.index.services().count(), 0);
}
