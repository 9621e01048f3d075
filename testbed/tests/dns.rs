//! Cluster DNS: dnsmasq in the DNS pod answers records, NXDOMAIN, SERVFAIL and silence, and
//! every pod's resolver (its own resolv.conf) uses it. Needs root (CI runs as root).
#![allow(clippy::unwrap_used)] // helpers of a test binary: a failed unwrap is a failed test

mod common;

use std::{net::Ipv4Addr, time::Duration};

use common::{Dns, dns_query, root_or_skip, start};

const SCENARIO: &str = r#"
name: dns
nodes: [node-1, node-2]
objects:
  - apiVersion: v1
    kind: Pod
    metadata: {name: coredns, namespace: kube-system}
    spec:
      nodeName: node-2
      containers: [{name: dns, ports: [{containerPort: 53, protocol: UDP}, {containerPort: 53}, {containerPort: 9153}]}]
    status: {phase: Running, podIP: 10.244.2.2}
  - apiVersion: v1
    kind: Pod
    metadata: {name: client, namespace: shop}
    spec: {nodeName: node-1, containers: [{name: c}]}
    status: {phase: Running, podIP: 10.244.1.10}
  - apiVersion: v1
    kind: Pod
    metadata: {name: blocked, namespace: shop}
    spec: {nodeName: node-1, containers: [{name: c}]}
    status: {phase: Running, podIP: 10.244.1.11}
dataplane:
  dns:
    pod: kube-system/coredns
    records:
      api.shop.svc.cluster.local: 10.244.1.20
      Gateway.Payments.svc.cluster.local.: 10.244.2.20
      broken.shop.svc.cluster.local: SERVFAIL
      slow.shop.svc.cluster.local: TIMEOUT
      gone.shop.svc.cluster.local: NXDOMAIN
  rules:
    - {action: drop, from: shop/blocked, to: kube-system/coredns, port: 53, protocol: UDP}
"#;

const T: Duration = Duration::from_millis(1500);

#[test]
fn dnsmasq_answers_records_nxdomain_servfail_and_silence() {
    if !root_or_skip("dnsmasq_answers_records_nxdomain_servfail_and_silence") {
        return;
    }
    let tb = start(SCENARIO);
    let dns = tb.dns().expect("scenario has DNS");
    assert_eq!(dns.ip, Ipv4Addr::new(10, 244, 2, 2));
    let client = tb.pod("shop", "client").unwrap();
    let q = |name: &str| dns_query(client, dns.ip, name, T).unwrap();

    assert_eq!(
        q("api.shop.svc.cluster.local"),
        Dns::Answer(0, vec![Ipv4Addr::new(10, 244, 1, 20)])
    );
    assert_eq!(
        q("gateway.payments.svc.cluster.local"),
        Dns::Answer(0, vec![Ipv4Addr::new(10, 244, 2, 20)]),
        "names are case-insensitive, trailing dot ignored"
    );
    assert_eq!(
        q("nope.shop.svc.cluster.local"),
        Dns::Answer(3, vec![]),
        "NXDOMAIN"
    );
    assert_eq!(
        q("example.com"),
        Dns::Answer(3, vec![]),
        "NXDOMAIN outside the cluster"
    );
    assert_eq!(q("gone.shop.svc.cluster.local"), Dns::Answer(3, vec![]));
    assert_eq!(
        q("broken.shop.svc.cluster.local"),
        Dns::Answer(2, vec![]),
        "SERVFAIL"
    );
    assert_eq!(
        q("broken.shop.svc.cluster.local"),
        Dns::Answer(2, vec![]),
        "not cached"
    );
    assert_eq!(q("slow.shop.svc.cluster.local"), Dns::Timeout);

    // A drop rule in front of the DNS pod: the query times out, and dnsmasq never saw it.
    let blocked = tb.pod("shop", "blocked").unwrap();
    assert_eq!(
        dns_query(blocked, dns.ip, "api.shop.svc.cluster.local", T).unwrap(),
        Dns::Timeout
    );
    let log = std::fs::read_to_string(&dns.log_path).unwrap();
    assert!(log.contains("from 10.244.1.10"), "{log}");
    assert!(!log.contains("from 10.244.1.11"), "{log}");

    // dnsmasq serves port 53, the app the rest of the DNS pod's ports.
    let coredns = tb.pod("kube-system", "coredns").unwrap();
    assert_eq!(coredns.listeners, [(testbed::Protocol::Tcp, 9153)]);
    assert_eq!(
        common::outcome(&common::connect(client, dns.ip, 9153, T)),
        "open"
    );
}

#[test]
fn pods_resolve_through_their_own_resolv_conf() {
    if !root_or_skip("pods_resolve_through_their_own_resolv_conf") {
        return;
    }
    let tb = start(SCENARIO);
    let client = tb.pod("shop", "client").unwrap();
    let app = client.app_pid.unwrap();
    let resolv = std::fs::read_to_string(format!("/proc/{app}/root/etc/resolv.conf")).unwrap();
    assert_eq!(
        resolv,
        "search shop.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.244.2.2\noptions ndots:5\n"
    );
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    assert_ne!(resolv, host, "not the host's");

    // glibc in the pod: the short name goes through the search list to dnsmasq.
    let python = if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let lookup = |name: &str| {
        let code = format!(
            "import socket\ntry:\n print(socket.gethostbyname('{name}'))\nexcept socket.gaierror as e:\n print('gaierror', e.errno)"
        );
        let out = tb
            .run_in(client, &[python, "-c", &code], Duration::from_secs(10))
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(lookup("api"), "10.244.1.20");
    assert_eq!(lookup("gateway.payments"), "10.244.2.20");
    assert_eq!(lookup("nothing-here"), "gaierror -2", "EAI_NONAME");
}
