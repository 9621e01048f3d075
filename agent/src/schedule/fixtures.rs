//! Builders shared by the schedule tests: pods, namespaces, policies and specs of both kinds.

use probe_spec::{ClusterProbeSpec, ProbeSpec};

use crate::cluster::model::{NetworkPolicy, Pod, Protocol};
use crate::cluster::{Spec, SpecRef};
use crate::testing::{self, PodExt, PolicyExt};

use crate::pair::{Pair, PairTarget, pair_id};

pub(crate) use crate::testing::{index, key, namespace};

/// A Running, Ready pod with ports `http` 8080/TCP and `dns` 53/UDP; `ip` empty: no IP.
pub(crate) fn pod(ns: &str, name: &str, pairs: &[(&str, &str)], ip: &str, node: &str) -> Pod {
    testing::pod(ns, name, pairs, ip, node)
        .with_port("http", 8080, Protocol::Tcp)
        .with_port("dns", 53, Protocol::Udp)
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

/// A policy selecting `selects` that isolates ingress and/or egress, with no rules (deny).
pub(crate) fn policy(
    ns: &str,
    name: &str,
    selects: &[(&str, &str)],
    ingress: bool,
    egress: bool,
) -> NetworkPolicy {
    testing::policy(ns, name)
        .select(testing::sel(selects))
        .types(ingress, egress)
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
