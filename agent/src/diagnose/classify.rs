//! The decision table: outcome x policy prediction x health -> verdict and reason.
//!
//! | outcome | policy allows / no prediction | policy denies |
//! |---|---|---|
//! | open, resolved | `ok` | `policy_not_enforced` (policy reason) |
//! | refused | `ok`, reason `destination_not_ready` or `not_listening` | `blocked_by_policy` (policy reason) |
//! | nxdomain, servfail | `ok`, reason `dns_failure` | `policy_not_enforced` (policy reason) |
//! | timeout, unreachable, open_or_filtered, dns_timeout, error | `unexpected_block`, fault chain | `blocked_by_policy` (policy reason) |
//! | open_or_filtered, no reply expected (UDP silence) | `inconclusive`, `udp_silence` | `blocked_by_policy` (policy reason) |
//! | open through an unbypassable mesh redirect | `inconclusive`, `mesh_redirect` | `inconclusive`, `mesh_redirect` |
//! | not_probed | `not_probed`, the probe's reason | `not_probed`, the probe's reason |
//!
//! `not_probed` and `inconclusive` never become a policy verdict: nothing that was not
//! observed is reported. UDP silence agrees with a deny, so it stays `blocked_by_policy`
//! there; where the policies allow, silence proves nothing (open|filtered) unless the probe
//! spoke a protocol whose server must answer (DNS on 53), which makes it a loss.
//!
//! Fault chain (docs/design.md, first that holds): `cni_unhealthy`, `node_not_ready`,
//! `destination_not_ready`, `not_listening`, `dns_failure`, `cni_native_policy` (a Cilium,
//! Calico or Antrea policy may select the source or the destination), `unknown`.

use probe_spec::PairVerdict;

use crate::policy::Verdict;
use crate::probe::{NotProbedReason, Outcome};

use super::health::Health;
use crate::pair::PairReason;

/// What the policy engine predicts for the flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Policy {
    Allows,
    Denies(crate::policy::Reason),
    /// No prediction (a DNS name without a known server, a host name): outcome-only logic.
    Unknown,
    /// No prediction because the destination address is not known to a partial view (it may
    /// be a pod the agent does not watch): a block then decides nothing.
    DestinationUnknown,
}

impl Policy {
    pub(super) fn of(verdict: Option<&Verdict>, destination_unknown: bool) -> Self {
        match verdict {
            None if destination_unknown => Policy::DestinationUnknown,
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
    pub(super) reason: Option<PairReason>,
    pub(super) policy: Policy,
}

/// The facts of one observation the table reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Observed {
    pub(super) outcome: Outcome,
    pub(super) not_probed: Option<NotProbedReason>,
    pub(super) expects_reply: bool,
    pub(super) mesh_redirected: bool,
    /// A CNI-native policy may select the source or the destination (the prediction is
    /// incomplete).
    pub(super) cni_native_policy: bool,
}

impl Observed {
    pub(super) fn of(input: &super::Input<'_>) -> Self {
        Self {
            outcome: input.outcome,
            not_probed: input.not_probed,
            expects_reply: input.expects_reply,
            mesh_redirected: input.mesh_redirected,
            cni_native_policy: input
                .prediction
                .is_some_and(|p| !p.verdict.cni_policies.is_empty()),
        }
    }
}

pub(super) fn classify(observed: &Observed, policy: Policy, health: &Health) -> Classified {
    use Outcome::*;
    let outcome = observed.outcome;
    if observed.mesh_redirected && outcome == Open {
        return Classified {
            verdict: PairVerdict::Inconclusive,
            reason: Some(PairReason::MeshRedirect),
            policy,
        };
    }
    let (verdict, reason) = match (outcome, policy) {
        (OpenOrFiltered, Policy::Allows | Policy::Unknown | Policy::DestinationUnknown)
            if !observed.expects_reply =>
        {
            (PairVerdict::Inconclusive, Some(PairReason::UdpSilence))
        }
        (Open | Resolved, Policy::Denies(r)) => {
            (PairVerdict::PolicyNotEnforced, Some(PairReason::Policy(r)))
        }
        (Open | Resolved, _) => (PairVerdict::Ok, None),
        // A refusal cannot tell an application's reset from a CNI that rejects with a reset or
        // an ICMP port-unreachable: with a deny predicted it agrees with the policy.
        (Refused, Policy::Denies(r)) => (PairVerdict::BlockedByPolicy, Some(PairReason::Policy(r))),
        (Refused, _) => {
            let reason = if health.unready_destination().is_some() {
                PairReason::DestinationNotReady
            } else {
                PairReason::NotListening
            };
            (PairVerdict::Ok, Some(reason))
        }
        (Nxdomain | Servfail, Policy::Denies(r)) => {
            (PairVerdict::PolicyNotEnforced, Some(PairReason::Policy(r)))
        }
        (Nxdomain | Servfail, _) => (PairVerdict::Ok, Some(PairReason::DnsFailure)),
        (Timeout | Unreachable | OpenOrFiltered | DnsTimeout | Error, Policy::Denies(r)) => {
            (PairVerdict::BlockedByPolicy, Some(PairReason::Policy(r)))
        }
        // Blocked, and no policy prediction for want of the destination: a fault or a policy
        // alike, so nothing is claimed (never `unexpected_block`).
        (
            Timeout | Unreachable | OpenOrFiltered | DnsTimeout | Error,
            Policy::DestinationUnknown,
        ) => (
            PairVerdict::Inconclusive,
            Some(PairReason::DestinationUnknown),
        ),
        (Timeout | Unreachable | OpenOrFiltered | DnsTimeout | Error, _) => (
            PairVerdict::UnexpectedBlock,
            Some(fault_chain(outcome, health, observed.cni_native_policy)),
        ),
        (NotProbed, _) => (
            PairVerdict::NotProbed,
            Some(PairReason::NotProbed(
                observed.not_probed.unwrap_or(NotProbedReason::ProbeError),
            )),
        ),
    };
    Classified {
        verdict,
        reason,
        policy,
    }
}

/// The first fault reason that holds, in docs/design.md's order.
pub(super) fn fault_chain(
    outcome: Outcome,
    health: &Health,
    cni_native_policy: bool,
) -> PairReason {
    if health.unhealthy_cni().is_some() {
        PairReason::CniUnhealthy
    } else if health.unready_node().is_some() {
        PairReason::NodeNotReady
    } else if health.unready_destination().is_some() {
        PairReason::DestinationNotReady
    } else if outcome == Outcome::Refused {
        PairReason::NotListening
    } else if is_dns_failure(outcome) {
        PairReason::DnsFailure
    } else if cni_native_policy {
        PairReason::CniNativePolicy
    } else {
        PairReason::Unknown
    }
}

pub(super) fn is_dns_failure(outcome: Outcome) -> bool {
    matches!(
        outcome,
        Outcome::Nxdomain | Outcome::Servfail | Outcome::DnsTimeout
    )
}
