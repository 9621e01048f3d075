//! Builders shared by the agent tests: pods, namespaces, policies, ProbeSpecs, ProbeRequests
//! and diagnosed reports.

use k8s_openapi::jiff::Timestamp;
use probe_spec::{ClusterProbeSpec, Expectation, PairVerdict, ProbeRequest, ProbeSpec};

use crate::api::PairReport;
use crate::cluster::model::{Pod, Protocol};
use crate::probe::Outcome;
use crate::testing::{self, PodExt};

pub(crate) use crate::schedule::fixtures::policy;
pub(crate) use crate::testing::{index, labels, namespace};

/// A Running, Ready pod on `node` with port `http` 8080/TCP; `ip` empty: no IP.
pub(crate) fn pod(ns: &str, name: &str, pairs: &[(&str, &str)], ip: &str, node: &str) -> Pod {
    testing::pod(ns, name, pairs, ip, node).with_port("http", 8080, Protocol::Tcp)
}

/// A ProbeSpec from YAML (the `spec:` body, indented by two spaces).
pub(crate) fn probe_spec(ns: &str, name: &str, spec: &str) -> ProbeSpec {
    let yaml = format!(
        "apiVersion: netreach.dev/v1alpha1\nkind: ProbeSpec\nmetadata: {{name: {name}, namespace: {ns}, generation: 3}}\nspec:\n{spec}"
    );
    serde_yaml_ng::from_str(&yaml).expect("fixture ProbeSpec parses")
}

/// A ClusterProbeSpec from YAML (the `spec:` body, indented by two spaces).
pub(crate) fn cluster_probe_spec(name: &str, spec: &str) -> ClusterProbeSpec {
    let yaml = format!(
        "apiVersion: netreach.dev/v1alpha1\nkind: ClusterProbeSpec\nmetadata: {{name: {name}, generation: 1}}\nspec:\n{spec}"
    );
    serde_yaml_ng::from_str(&yaml).expect("fixture ClusterProbeSpec parses")
}

/// A ProbeRequest from YAML (the `spec:` body, indented by two spaces).
pub(crate) fn probe_request(ns: &str, name: &str, spec: &str) -> ProbeRequest {
    let yaml = format!(
        "apiVersion: netreach.dev/v1alpha1\nkind: ProbeRequest\nmetadata: {{name: {name}, namespace: {ns}, uid: uid-{name}}}\nspec:\n{spec}"
    );
    serde_yaml_ng::from_str(&yaml).expect("fixture ProbeRequest parses")
}

/// A diagnosed pod-to-pod pair of `spec` on port 8080/TCP.
pub(crate) fn report(
    spec: &str,
    from: &str,
    to: &str,
    verdict: PairVerdict,
    meets_expectation: bool,
) -> PairReport {
    let reachable = verdict.reachable();
    PairReport {
        spec: Some(spec.into()),
        from: from.into(),
        mesh: None,
        to: Some(to.into()),
        host: None,
        ip: None,
        dns: None,
        port: Some(8080),
        protocol: Some(Protocol::Tcp),
        outcome: if reachable {
            Outcome::Open
        } else {
            Outcome::Timeout
        },
        policy_allowed: matches!(verdict, PairVerdict::Ok | PairVerdict::UnexpectedBlock),
        verdict,
        reason: match verdict {
            PairVerdict::Ok => String::new(),
            PairVerdict::BlockedByPolicy | PairVerdict::PolicyNotEnforced => "default_deny".into(),
            PairVerdict::UnexpectedBlock => "unknown".into(),
            PairVerdict::NotProbed => "netns_not_found".into(),
            PairVerdict::Inconclusive => "udp_silence".into(),
        },
        direction: None,
        policies: match verdict {
            PairVerdict::BlockedByPolicy | PairVerdict::PolicyNotEnforced => {
                vec!["shop/deny".into()]
            }
            _ => vec![],
        },
        summary: format!("{from} -> {to}: {verdict}"),
        explanation: String::new(),
        hints: vec![],
        latency_seconds: 0.001,
        last_probe: Timestamp::UNIX_EPOCH,
        expect: Some(Expectation::Allow),
        meets_expectation: Some(meets_expectation),
    }
}
