//! Builders shared by the schedule tests: pods, namespaces, policies and specs of both kinds.

use std::net::IpAddr;

use probe_spec::{ClusterProbeSpec, ProbeSpec};

use crate::cluster::index::Apply;
use crate::cluster::model::{
    ContainerPort, Labels, NAMESPACE_NAME_LABEL, Namespace, NetworkPolicy, ObjectRef, Pod,
    PodPhase, Protocol,
};
use crate::cluster::selector::Selector;
use crate::cluster::{Index, Spec, SpecRef};

use crate::pair::{Pair, PairTarget, pair_id};

pub(crate) fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(crate) fn namespace(name: &str, pairs: &[(&str, &str)]) -> Namespace {
    let mut labels = labels(pairs);
    labels.insert(NAMESPACE_NAME_LABEL.into(), name.into());
    Namespace {
        name: name.into(),
        labels,
    }
}

/// A Running, Ready pod with ports `http` 8080/TCP and `dns` 53/UDP; `ip` empty: no IP.
pub(crate) fn pod(ns: &str, name: &str, pairs: &[(&str, &str)], ip: &str, node: &str) -> Pod {
    Pod {
        namespace: ns.into(),
        name: name.into(),
        uid: format!("uid-{ns}-{name}"),
        labels: labels(pairs),
        node_name: Some(node.into()),
        host_network: false,
        ips: ip.parse::<IpAddr>().into_iter().collect(),
        phase: PodPhase::Running,
        ready: true,
        terminating: false,
        ports: vec![
            ContainerPort {
                name: Some("http".into()),
                port: 8080,
                protocol: Protocol::Tcp,
            },
            ContainerPort {
                name: Some("dns".into()),
                port: 53,
                protocol: Protocol::Udp,
            },
        ],
        restarts: 0,
        mesh: None,
    }
}

pub(crate) fn index(namespaces: Vec<Namespace>, pods: Vec<Pod>) -> Index {
    let mut index = Index::new();
    index.reset(namespaces);
    index.reset(pods);
    index
}

/// A ProbeSpec from YAML (the `spec:` body, indented by two spaces), converted to a [`Spec`].
pub(crate) fn probe_spec(ns: &str, name: &str, spec: &str) -> Spec {
    let yaml = format!(
        "apiVersion: netreach.dev/v1alpha1\nkind: ProbeSpec\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{spec}"
    );
    let spec: ProbeSpec = serde_yaml_ng::from_str(&yaml).expect("fixture ProbeSpec parses");
    Spec::try_from(&spec).expect("fixture ProbeSpec converts")
}

/// A ClusterProbeSpec from YAML (the `spec:` body, indented by two spaces), converted to a [`Spec`].
pub(crate) fn cluster_probe_spec(name: &str, spec: &str) -> Spec {
    let yaml = format!(
        "apiVersion: netreach.dev/v1alpha1\nkind: ClusterProbeSpec\nmetadata: {{name: {name}}}\nspec:\n{spec}"
    );
    let spec: ClusterProbeSpec =
        serde_yaml_ng::from_str(&yaml).expect("fixture ClusterProbeSpec parses");
    Spec::try_from(&spec).expect("fixture ClusterProbeSpec converts")
}

pub(crate) fn policy(
    ns: &str,
    name: &str,
    selects: &[(&str, &str)],
    ingress: bool,
    egress: bool,
) -> NetworkPolicy {
    NetworkPolicy {
        namespace: ns.into(),
        name: name.into(),
        pod_selector: Selector::from_labels(selects.iter().copied()),
        isolates_ingress: ingress,
        isolates_egress: egress,
        ingress: vec![],
        egress: vec![],
        warnings: vec![],
    }
}

pub(crate) fn key(s: &str) -> ObjectRef {
    s.parse().expect("fixture key is ns/name")
}

/// A pair of spec `shop/spec` from `from` to `target`.
pub(crate) fn pair(from: &str, target: PairTarget) -> Pair {
    let spec = SpecRef::Namespaced(key("shop/spec"));
    let from = key(from);
    Pair {
        id: pair_id(&spec, &from, &target),
        spec,
        from,
        target,
    }
}

pub(crate) fn pod_target(pod: &str, ip: &str, port: u16) -> PairTarget {
    PairTarget::Pod {
        pod: key(pod),
        ip: ip.parse().expect("fixture ip"),
        port,
        protocol: Protocol::Tcp,
    }
}
