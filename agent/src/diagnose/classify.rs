//! The decision table: outcome x policy prediction x health -> verdict and reason.
//!
//! | outcome | policy allows / no prediction | policy denies |
//! |---|---|---|
//! | open, resolved | `ok` | `policy_not_enforced` (policy reason) |
//! | refused | `ok`, reason `destination_not_ready` or `not_listening` | `blocked_by_policy` (policy reason) |
//! | nxdomain, servfail | `ok`, reason `dns_failure` | `policy_not_enforced` (policy reason) |
//! | timeout, unreachable, open_or_filtered, dns_timeout, error | `unexpected_block`, fault chain | `blocked_by_policy` (policy reason) |
//!
//! Fault chain (DESIGN.md, first that holds): `cni_unhealthy`, `node_not_ready`,
//! `destination_not_ready`, `not_listening`, `dns_failure`, `unknown`.

use probe_spec::PairVerdict;

use crate::policy::Verdict;
use crate::probe::Outcome;

use super::Reason;
use super::health::Health;

/// What the policy engine predicts for the flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Policy {
    Allows,
    Denies(crate::policy::Reason),
    /// No prediction (a DNS name without a known server, a host name): outcome-only logic.
    Unknown,
}

impl Policy {
    pub(super) fn of(verdict: Option<&Verdict>) -> Self {
        match verdict {
            None => Policy::Unknown,
            Some(v) if v.allowed => Policy::Allows,
            // A denying verdict always carries a reason; default_deny is its floor.
            Some(v) => Policy::Denies(v.reason.unwrap_or(crate::policy::Reason::DefaultDeny)),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Classified {
    pub(super) verdict: PairVerdict,
    /// `None` only for a clean `ok`.
    pub(super) reason: Option<Reason>,
    pub(super) policy: Policy,
}

pub(super) fn classify(outcome: Outcome, policy: Policy, health: &Health) -> Classified {
    use Outcome::*;
    let (verdict, reason) = match (outcome, policy) {
        (Open | Resolved, Policy::Denies(r)) => {
            (PairVerdict::PolicyNotEnforced, Some(Reason::Policy(r)))
        }
        (Open | Resolved, _) => (PairVerdict::Ok, None),
        // A refusal cannot tell an application's reset from a CNI that rejects with a reset or
        // an ICMP port-unreachable: with a deny predicted it agrees with the policy.
        (Refused, Policy::Denies(r)) => (PairVerdict::BlockedByPolicy, Some(Reason::Policy(r))),
        (Refused, _) => {
            let reason = if health.unready_destination().is_some() {
                Reason::DestinationNotReady
            } else {
                Reason::NotListening
            };
            (PairVerdict::Ok, Some(reason))
        }
        (Nxdomain | Servfail, Policy::Denies(r)) => {
            (PairVerdict::PolicyNotEnforced, Some(Reason::Policy(r)))
        }
        (Nxdomain | Servfail, _) => (PairVerdict::Ok, Some(Reason::DnsFailure)),
        (Timeout | Unreachable | OpenOrFiltered | DnsTimeout | Error, Policy::Denies(r)) => {
            (PairVerdict::BlockedByPolicy, Some(Reason::Policy(r)))
        }
        (Timeout | Unreachable | OpenOrFiltered | DnsTimeout | Error, _) => (
            PairVerdict::UnexpectedBlock,
            Some(fault_chain(outcome, health)),
        ),
    };
    Classified {
        verdict,
        reason,
        policy,
    }
}

/// The first fault reason that holds, in DESIGN.md's order.
pub(super) fn fault_chain(outcome: Outcome, health: &Health) -> Reason {
    if health.unhealthy_cni().is_some() {
        Reason::CniUnhealthy
    } else if health.unready_node().is_some() {
        Reason::NodeNotReady
    } else if health.unready_destination().is_some() {
        Reason::DestinationNotReady
    } else if outcome == Outcome::Refused {
        Reason::NotListening
    } else if is_dns_failure(outcome) {
        Reason::DnsFailure
    } else {
        Reason::Unknown
    }
}

pub(super) fn is_dns_failure(outcome: Outcome) -> bool {
    matches!(
        outcome,
        Outcome::Nxdomain | Outcome::Servfail | Outcome::DnsTimeout
    )
}
