//! Builders shared by the agent tests: pods, namespaces, policies, ProbeSpecs, ProbeRequests
//! and diagnosed reports.

use std::net::IpAddr;

use k8s_openapi::jiff::Timestamp;
use probe_spec::{ClusterProbeSpec, Expectation, PairVerdict, ProbeRequest, ProbeSpec};

use crate::cluster::model::{ObjectRef, Pod, Protocol};
use crate::pair::{PairReason, PairReport, PairTarget, Text};
use crate::probe::{NotProbedReason, Outcome};
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

/// A diagnosed pod-to-pod pair of `spec` on port 8080/TCP (`spec`, `from` and `to` as
/// `ns/name`; a `spec` without `/` is a ClusterProbeSpec).
pub(crate) fn report(
    spec: &str,
    from: &str,
    to: &str,
    verdict: PairVerdict,
    meets_expectation: bool,
) -> PairReport {
    let target = PairTarget::Pod {
        pod: to.parse().expect("fixture destination pod"),
        ip: IpAddr::from([10, 244, 1, 1]),
        port: 8080,
        protocol: Protocol::Tcp,
    };
    report_to(spec, from, target, verdict, meets_expectation)
}

/// A diagnosed pair of `spec` from `from` to `target`.
pub(crate) fn report_to(
    spec: &str,
    from: &str,
    target: PairTarget,
    verdict: PairVerdict,
    meets_expectation: bool,
) -> PairReport {
    let reachable = verdict.reachable();
    PairReport {
        spec: Some(spec.parse().expect("fixture spec")),
        from: from.parse().expect("fixture source pod"),
        mesh: None,
        summary: format!("{from} -> {target}: {verdict}").into(),
        target,
        host: None,
        outcome: if reachable {
            Outcome::Open
        } else {
            Outcome::Timeout
        },
        policy_allowed: matches!(verdict, PairVerdict::Ok | PairVerdict::UnexpectedBlock),
        verdict,
        reason: match verdict {
            PairVerdict::Ok => None,
            PairVerdict::BlockedByPolicy
            | PairVerdict::PolicyNotEnforced
            | PairVerdict::PartiallyBlocked => {
                Some(PairReason::Policy(crate::policy::Reason::DefaultDeny))
            }
            PairVerdict::UnexpectedBlock => Some(PairReason::Unknown),
            PairVerdict::NotProbed => Some(PairReason::NotProbed(NotProbedReason::NetnsNotFound)),
            PairVerdict::Inconclusive => Some(PairReason::UdpSilence),
        },
        direction: None,
        policies: match verdict {
            PairVerdict::BlockedByPolicy | PairVerdict::PolicyNotEnforced => {
                vec![ObjectRef::new("shop", "deny").into()]
            }
            _ => vec![],
        },
        explanation: Text::default(),
        probe_detail: "".into(),
        hints: vec![],
        latency_seconds: 0.001,
        last_probe: Timestamp::UNIX_EPOCH,
        expect: Some(Expectation::Allow),
        meets_expectation: Some(meets_expectation),
        endpoints: vec![],
        history: None,
        view_stale: crate::cluster::watch::WatchedKinds::default(),
    }
}

/// A report of one probe at `at` with `verdict` and `outcome` (for histories).
pub(crate) fn report_at(at: Timestamp, verdict: PairVerdict, outcome: Outcome) -> PairReport {
    let mut report = report("shop/paths", "shop/a", "shop/b", verdict, true);
    report.last_probe = at;
    report.outcome = outcome;
    report
}
