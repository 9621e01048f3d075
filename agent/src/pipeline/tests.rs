//! Host targets without a network: a lookup's outcome -> the addresses or the pair's
//! `not_probed` observation, and one resolved address -> its prediction and report.

use std::time::Duration;

use probe_spec::PairVerdict;

use super::*;
use crate::cluster::SpecRef;
use crate::cluster::load::Loaded;
use crate::report::metrics::PairKey;

const HOST: &str = "api.example";

/// shop/web (the source, egress only to 192.0.2.0/24 and the pod network), shop/api (open to
/// all), billing/invoices (default deny ingress).
const CLUSTER: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Namespace
metadata: {name: billing}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {nodeName: node-1, containers: [{name: web, image: web}]}
status: {phase: Running, podIP: 10.244.1.10, conditions: [{type: Ready, status: "True"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: api, namespace: shop, labels: {app: api}}
spec: {nodeName: node-1, containers: [{name: api, image: api, ports: [{containerPort: 443}]}]}
status: {phase: Running, podIP: 10.244.1.20, conditions: [{type: Ready, status: "True"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: invoices, namespace: billing, labels: {app: invoices}}
spec: {nodeName: node-2, containers: [{name: inv, image: inv, ports: [{containerPort: 443}]}]}
status: {phase: Running, podIP: 10.244.2.30, conditions: [{type: Ready, status: "True"}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny, namespace: billing}
spec: {podSelector: {}, policyTypes: [Ingress]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-egress, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  egress:
    - to: [{ipBlock: {cidr: 192.0.2.0/24}}, {ipBlock: {cidr: 10.244.0.0/16}}]
"#;

fn index() -> Index {
    let mut loaded = Loaded::new();
    loaded.load_str("cluster.yaml", CLUSTER);
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    assert!(loaded.parse_errors.is_empty(), "{:?}", loaded.parse_errors);
    loaded.index
}

fn host_pair() -> Pair {
    let spec = SpecRef::Namespaced(ObjectRef::new("shop", "hosts"));
    let from = ObjectRef::new("shop", "web");
    let target = PairTarget::Host {
        name: HOST.into(),
        port: 443,
        protocol: Protocol::Tcp,
    };
    Pair {
        id: crate::pair::pair_id(&spec, &from, &target),
        spec,
        from,
        target,
    }
}

fn observed(outcome: Outcome) -> Observation {
    Observation::new(outcome, Duration::from_millis(3), format!("saw {outcome}"))
}

fn lookup(outcome: Outcome, answers: &[&str]) -> Observation {
    let mut observation = observed(outcome);
    observation.answers = answers.iter().map(|a| a.parse().expect("ip")).collect();
    observation
}

#[test]
fn a_lookup_gives_addresses_or_a_pair_that_was_not_probed() {
    let unreadable = Observation::not_probed(
        NotProbedReason::PodFileUnreadable,
        "cannot read resolv.conf",
    );
    // (case, lookup, addresses or (reason, words in the detail))
    type Want = Result<Vec<&'static str>, (NotProbedReason, &'static str)>;
    let cases: Vec<(&str, Observation, Want)> = vec![
        (
            "A and AAAA answers, in answer order",
            lookup(Outcome::Resolved, &["10.244.1.20", "fd00::20"]),
            Ok(vec!["10.244.1.20", "fd00::20"]),
        ),
        (
            "NXDOMAIN",
            lookup(Outcome::Nxdomain, &[]),
            Err((NotProbedReason::ResolveFailed, "(nxdomain)")),
        ),
        (
            "SERVFAIL",
            lookup(Outcome::Servfail, &[]),
            Err((NotProbedReason::ResolveFailed, "(servfail)")),
        ),
        (
            "no answer in time",
            lookup(Outcome::DnsTimeout, &[]),
            Err((NotProbedReason::ResolveFailed, "(dns_timeout)")),
        ),
        (
            "the name exists without an address (NODATA)",
            lookup(Outcome::Resolved, &[]),
            Err((NotProbedReason::ResolveFailed, "(resolved)")),
        ),
        (
            "a blocked lookup is the dns targets' business",
            lookup(Outcome::Unreachable, &[]),
            Err((NotProbedReason::ResolveFailed, "(unreachable)")),
        ),
        (
            "a lookup that could not run keeps its reason",
            unreadable,
            Err((
                NotProbedReason::PodFileUnreadable,
                "cannot read resolv.conf",
            )),
        ),
    ];
    for (case, lookup, want) in cases {
        match (host_addresses(HOST, lookup), want) {
            (Ok(resolved), Ok(addresses)) => {
                let addresses: Vec<IpAddr> =
                    addresses.iter().map(|a| a.parse().expect("ip")).collect();
                assert_eq!(resolved.addresses, addresses, "{case}");
            }
            (Err(observation), Err((reason, words))) => {
                assert_eq!(observation.outcome, Outcome::NotProbed, "{case}");
                assert_eq!(observation.not_probed, Some(reason), "{case}");
                assert!(observation.detail.contains(HOST), "{case}: {observation:?}");
                assert!(
                    observation.detail.contains(words),
                    "{case}: {observation:?}"
                );
            }
            (got, want) => panic!("{case}: got {got:?}, want {want:?}"),
        }
    }
}

/// What a host pair's report must say for one address.
struct Expected {
    to: &'static str,
    ip: Option<&'static str>,
    verdict: PairVerdict,
    reason: &'static str,
    policy_allowed: bool,
    policies: &'static [&'static str],
}

#[test]
fn a_resolved_address_is_predicted_like_the_pod_or_ip_it_is() {
    let index = index();
    let engine = Engine::new(&index, Profile::default());
    let changes = ChangeLog::default();
    let text = SharedText::default();
    let view = View {
        index: &index,
        engine: &engine,
        cni: &[],
        changes: &changes,
        text: &text,
    };
    let pair = host_pair();
    let at = |address: &str, outcome: Outcome| -> Probed {
        let ip: IpAddr = address.parse().expect("ip");
        let targets = schedule::host_targets(&index, &[ip], 443, Protocol::Tcp);
        Probed {
            target: targets.targets[0].clone(),
            host: Some(HOST.into()),
            observation: observed(outcome),
            dns_server: None,
        }
    };
    let unresolved = host_addresses(HOST, lookup(Outcome::Nxdomain, &[]))
        .expect_err("NXDOMAIN does not resolve");
    let cases: Vec<(&str, Probed, Expected)> = vec![
        (
            "a pod's address, allowed: that pod, ok",
            at("10.244.1.20", Outcome::Open),
            Expected {
                to: "shop/api",
                ip: Some("10.244.1.20"),
                verdict: PairVerdict::Ok,
                reason: "",
                policy_allowed: true,
                policies: &["shop/web-egress"],
            },
        ),
        (
            "a pod's address behind a default deny: that pod's policy decides",
            at("10.244.2.30", Outcome::Timeout),
            Expected {
                to: "billing/invoices",
                ip: Some("10.244.2.30"),
                verdict: PairVerdict::BlockedByPolicy,
                reason: "default_deny",
                policy_allowed: false,
                policies: &["billing/default-deny"],
            },
        ),
        (
            "a foreign address inside the egress ipBlock: ok",
            at("192.0.2.10", Outcome::Open),
            Expected {
                to: "192.0.2.10",
                ip: Some("192.0.2.10"),
                verdict: PairVerdict::Ok,
                reason: "",
                policy_allowed: true,
                policies: &["shop/web-egress"],
            },
        ),
        (
            "a foreign address outside every ipBlock: blocked by the egress policy",
            at("198.51.100.7", Outcome::Timeout),
            Expected {
                to: "198.51.100.7",
                ip: Some("198.51.100.7"),
                verdict: PairVerdict::BlockedByPolicy,
                reason: "ip_block_mismatch",
                policy_allowed: false,
                policies: &["shop/web-egress"],
            },
        ),
        (
            "a name that did not resolve: one pair, not probed, no prediction",
            Probed::of(&pair, unresolved),
            Expected {
                to: HOST,
                ip: None,
                verdict: PairVerdict::NotProbed,
                reason: "resolve_failed",
                policy_allowed: true,
                policies: &[],
            },
        ),
    ];
    for (case, probed, want) in cases {
        let report = assess(
            &pair,
            probed,
            Expectation::Allow,
            None,
            view,
            &diagnose::Config::default(),
        );
        assert_eq!(
            report.spec.as_ref().map(ToString::to_string).as_deref(),
            Some("shop/hosts"),
            "{case}"
        );
        assert_eq!(report.from, ObjectRef::new("shop", "web"), "{case}");
        assert_eq!(report.host.as_deref(), Some(HOST), "{case}");
        assert_eq!(
            report.to().map(|to| to.to_string()).as_deref(),
            Some(want.to),
            "{case}"
        );
        assert_eq!(
            report.ip().map(|ip| ip.to_string()).as_deref(),
            want.ip,
            "{case}"
        );
        assert_eq!(
            (report.port(), report.protocol()),
            (Some(443), Some(Protocol::Tcp))
        );
        assert_eq!(
            report.verdict, want.verdict,
            "{case}: {}",
            report.explanation
        );
        assert_eq!(
            report.reason_code(),
            want.reason,
            "{case}: {}",
            report.explanation
        );
        assert_eq!(report.policy_allowed, want.policy_allowed, "{case}");
        let policies: Vec<String> = report.policies.iter().map(ToString::to_string).collect();
        assert_eq!(policies, want.policies, "{case}");
        assert!(report.summary.contains(HOST), "{case}: {}", report.summary);
        // The metric series: one per address, `dst` the destination, `host` the name.
        let key = PairKey::of(&report).expect("a spec pair has a series");
        assert_eq!(key.dst, want.to, "{case}");
        assert_eq!(key.host.as_deref(), Some(HOST), "{case}");
    }
}

#[test]
fn one_or_more_keeps_its_order_and_is_never_empty() {
    assert_eq!(OneOrMore::<u8>::from_vec(vec![]), None);
    let values = OneOrMore::from_vec(vec![1, 2, 3]).expect("three");
    assert_eq!(*values.first(), 1);
    assert_eq!(values.iter().copied().collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(values.clone().map(|v| v * 10).into_vec(), [10, 20, 30]);
    assert_eq!(values.into_iter().collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(OneOrMore::one(7).into_first(), 7);
}

/// The ClusterIP probe as the Service verdict reads it: a refusal is the load balancer's own
/// reject only when the Service has no endpoint to answer.
#[test]
fn a_cluster_ip_probe_reads_as_reachable_blocked_or_undecided() {
    use crate::diagnose::service::ClusterIpProbe;
    let cases = [
        (None, 2, ClusterIpProbe::Absent),
        (Some(Outcome::Open), 2, ClusterIpProbe::Reachable),
        (Some(Outcome::Refused), 2, ClusterIpProbe::Reachable),
        (Some(Outcome::Refused), 0, ClusterIpProbe::Blocked),
        (Some(Outcome::Timeout), 2, ClusterIpProbe::Blocked),
        (Some(Outcome::Unreachable), 2, ClusterIpProbe::Blocked),
        (Some(Outcome::OpenOrFiltered), 2, ClusterIpProbe::Undecided),
    ];
    for (outcome, endpoints, want) in cases {
        let observation = outcome.map(observed);
        assert_eq!(
            cluster_ip_state(observation.as_ref(), endpoints),
            want,
            "{outcome:?} with {endpoints} endpoints"
        );
    }
    let not_probed = Observation::not_probed(NotProbedReason::AgentOverloaded, "busy");
    assert_eq!(
        cluster_ip_state(Some(&not_probed), 1),
        ClusterIpProbe::NotProbed(crate::pair::PairReason::NotProbed(
            NotProbedReason::AgentOverloaded
        ))
    );
}
