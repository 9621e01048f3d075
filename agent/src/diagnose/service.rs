//! A Service pair's verdict, from its endpoints' and its ClusterIP's. Pure.
//!
//! Each ready endpoint is probed directly on its resolved targetPort and diagnosed as the pod
//! pair it is; the ClusterIP is probed on the Service port. First that holds:
//!
//! | ClusterIP probe | endpoints | verdict | reason |
//! |---|---|---|---|
//! | not probed | any | `not_probed` | the probe's |
//! | any | none ready | `ok` if the ClusterIP answers, else `unexpected_block` | `no_ready_endpoints` |
//! | any | some `unexpected_block` | `unexpected_block` | the first one's |
//! | any | some `blocked_by_policy`, others reachable | `partially_blocked` | the blocked ones' |
//! | blocked or absent | every decided one `blocked_by_policy` | `blocked_by_policy` | theirs |
//! | reachable | every decided one `blocked_by_policy` | `policy_not_enforced` | theirs |
//! | any | some `policy_not_enforced` | `policy_not_enforced` | theirs |
//! | blocked | every decided one reachable | `unexpected_block` | `service_path_broken` |
//! | reachable or absent (headless) | every decided one reachable | `ok` | the first endpoint's (e.g. `not_listening`), or none |
//! | not decided | none decided | `inconclusive` / `not_probed` | the first endpoint's |
//!
//! A Service pair's `policies` are those of its blocked endpoints, each once, in endpoint order.
//! An endpoint that decides nothing (`not_probed`, `inconclusive`) never makes the Service
//! blocked or broken.

use probe_spec::PairVerdict;

use crate::cluster::model::PolicyRef;
use crate::pair::PairReason;

/// What the probe of the ClusterIP saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterIpProbe {
    /// A headless Service: there is no ClusterIP.
    Absent,
    Reachable,
    Blocked,
    /// The probe ran and decided nothing (UDP silence).
    Undecided,
    NotProbed(PairReason),
}

/// One endpoint's own diagnosis (as a pod pair).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointVerdict {
    pub verdict: PairVerdict,
    pub reason: Option<PairReason>,
    pub policies: Vec<PolicyRef>,
}

/// The Service pair's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceVerdict {
    pub verdict: PairVerdict,
    pub reason: Option<PairReason>,
    pub policies: Vec<PolicyRef>,
    /// Indexes (into the endpoints given) of the endpoints blocked by policy.
    pub blocked: Vec<usize>,
}

fn verdict(verdict: PairVerdict, reason: Option<PairReason>) -> ServiceVerdict {
    ServiceVerdict {
        verdict,
        reason,
        policies: Vec::new(),
        blocked: Vec::new(),
    }
}

/// Decides a Service pair (see the module docs' table).
pub fn decide(cluster_ip: ClusterIpProbe, endpoints: &[EndpointVerdict]) -> ServiceVerdict {
    if let ClusterIpProbe::NotProbed(reason) = cluster_ip {
        return verdict(PairVerdict::NotProbed, Some(reason));
    }
    if endpoints.is_empty() {
        return if cluster_ip == ClusterIpProbe::Reachable {
            verdict(PairVerdict::Ok, Some(PairReason::NoReadyEndpoints))
        } else {
            verdict(
                PairVerdict::UnexpectedBlock,
                Some(PairReason::NoReadyEndpoints),
            )
        };
    }
    let with = |v: PairVerdict| endpoints.iter().position(|e| e.verdict == v);
    if let Some(i) = with(PairVerdict::UnexpectedBlock) {
        return verdict(PairVerdict::UnexpectedBlock, endpoints[i].reason);
    }
    let blocked: Vec<usize> = endpoints
        .iter()
        .enumerate()
        .filter(|(_, e)| e.verdict == PairVerdict::BlockedByPolicy)
        .map(|(i, _)| i)
        .collect();
    let reachable = endpoints.iter().any(|e| e.verdict.reachable());
    if let Some(&first) = blocked.first() {
        let mut policies: Vec<PolicyRef> = Vec::new();
        for &i in &blocked {
            for policy in &endpoints[i].policies {
                if !policies.contains(policy) {
                    policies.push(policy.clone());
                }
            }
        }
        let kind = if reachable {
            PairVerdict::PartiallyBlocked
        } else if cluster_ip == ClusterIpProbe::Reachable {
            PairVerdict::PolicyNotEnforced
        } else {
            PairVerdict::BlockedByPolicy
        };
        return ServiceVerdict {
            verdict: kind,
            reason: endpoints[first].reason,
            policies,
            blocked,
        };
    }
    if let Some(i) = with(PairVerdict::PolicyNotEnforced) {
        let mut out = verdict(PairVerdict::PolicyNotEnforced, endpoints[i].reason);
        out.policies = endpoints[i].policies.clone();
        return out;
    }
    if reachable {
        if cluster_ip == ClusterIpProbe::Blocked {
            return verdict(
                PairVerdict::UnexpectedBlock,
                Some(PairReason::ServicePathBroken),
            );
        }
        let first = endpoints.iter().find(|e| e.verdict.reachable());
        let mut out = verdict(PairVerdict::Ok, first.and_then(|e| e.reason));
        out.policies = first.map(|e| e.policies.clone()).unwrap_or_default();
        return out;
    }
    // Nothing decided: say what the endpoints say, never more.
    let first = &endpoints[0];
    verdict(first.verdict, first.reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::model::ObjectRef;
    use crate::policy::Reason;
    use crate::probe::NotProbedReason;

    fn ok() -> EndpointVerdict {
        EndpointVerdict {
            verdict: PairVerdict::Ok,
            reason: None,
            policies: vec![],
        }
    }

    fn blocked(policy: &str) -> EndpointVerdict {
        EndpointVerdict {
            verdict: PairVerdict::BlockedByPolicy,
            reason: Some(PairReason::Policy(Reason::PodSelectorMismatch)),
            policies: vec![PolicyRef::from(ObjectRef::new("shop", policy))],
        }
    }

    fn faulty(reason: PairReason) -> EndpointVerdict {
        EndpointVerdict {
            verdict: PairVerdict::UnexpectedBlock,
            reason: Some(reason),
            policies: vec![],
        }
    }

    fn silent() -> EndpointVerdict {
        EndpointVerdict {
            verdict: PairVerdict::Inconclusive,
            reason: Some(PairReason::UdpSilence),
            policies: vec![],
        }
    }

    #[test]
    fn decision_table() {
        use ClusterIpProbe::*;
        let selector = Some(PairReason::Policy(Reason::PodSelectorMismatch));
        let not_probed = PairReason::NotProbed(NotProbedReason::NetnsNotFound);
        type Case = (
            &'static str,
            ClusterIpProbe,
            Vec<EndpointVerdict>,
            PairVerdict,
            Option<PairReason>,
            &'static [&'static str],
            &'static [usize],
        );
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            ("all reachable", Reachable, vec![ok(), ok()], PairVerdict::Ok, None, &[], &[]),
            ("headless, all reachable", Absent, vec![ok()], PairVerdict::Ok, None, &[], &[]),
            ("every endpoint blocked", Blocked, vec![blocked("a"), blocked("b"), blocked("a")],
             PairVerdict::BlockedByPolicy, selector, &["shop/a", "shop/b"], &[0, 1, 2]),
            ("some blocked: partial, named", Reachable, vec![ok(), blocked("a"), ok()],
             PairVerdict::PartiallyBlocked, selector, &["shop/a"], &[1]),
            ("some blocked, ClusterIP happened to pick a blocked one", Blocked, vec![blocked("a"), ok()],
             PairVerdict::PartiallyBlocked, selector, &["shop/a"], &[0]),
            ("every endpoint blocked but the ClusterIP answers", Reachable, vec![blocked("a")],
             PairVerdict::PolicyNotEnforced, selector, &["shop/a"], &[0]),
            ("no ready endpoints", Blocked, vec![], PairVerdict::UnexpectedBlock, Some(PairReason::NoReadyEndpoints), &[], &[]),
            ("no ready endpoints, headless", Absent, vec![], PairVerdict::UnexpectedBlock, Some(PairReason::NoReadyEndpoints), &[], &[]),
            ("endpoints reachable, ClusterIP not: kube-proxy", Blocked, vec![ok(), ok()],
             PairVerdict::UnexpectedBlock, Some(PairReason::ServicePathBroken), &[], &[]),
            ("an endpoint's own fault wins", Blocked, vec![ok(), faulty(PairReason::CniUnhealthy), blocked("a")],
             PairVerdict::UnexpectedBlock, Some(PairReason::CniUnhealthy), &[], &[]),
            ("ClusterIP not probed", NotProbed(not_probed), vec![ok()], PairVerdict::NotProbed, Some(not_probed), &[], &[]),
            ("nothing decided: never a block", Blocked, vec![silent(), silent()],
             PairVerdict::Inconclusive, Some(PairReason::UdpSilence), &[], &[]),
            ("silence beside a reachable endpoint, ClusterIP silent", Undecided, vec![silent(), ok()], PairVerdict::Ok, None, &[], &[]),
        ];
        for (name, cluster_ip, endpoints, want, reason, policies, blocked_at) in cases {
            let got = decide(cluster_ip, &endpoints);
            assert_eq!(got.verdict, want, "{name}");
            assert_eq!(got.reason, reason, "{name}");
            let names: Vec<String> = got.policies.iter().map(ToString::to_string).collect();
            assert_eq!(names, policies, "{name}");
            assert_eq!(got.blocked, blocked_at, "{name}");
        }
    }
}
