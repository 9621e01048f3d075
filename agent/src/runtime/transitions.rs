//! From the change log to re-probes, and from one observation to the next: the scheduler's
//! pure decisions that are not the timetable's.
//!
//! ```text
//! ChangeLog entry ──cluster_change()──> schedule::ClusterChange ──affected_pairs()──> re-probe ids
//!        └── at (wall clock) ──change_instant()──> Instant on the timetable's clock
//! previous verdict + new verdict ──transition()──> effect observed? + Event reason
//! ```
//!
//! - **Which changes re-probe.** NetworkPolicy create/update/delete, namespace labels and pod
//!   labels; a cluster-scoped (tiered or CNI-native cluster-wide) policy change re-probes every
//!   pair, a namespaced CNI-native one the pairs of its namespace. A policy version that could not be loaded (`None` in the log) has unknown
//!   selectors, so the whole namespace counts as touched: its pairs are re-probed (through
//!   `ClusterChange::NamespaceLabels`, which also re-probes DNS and host pairs; such policies
//!   are rare). A CNI agent restart changes health, not policy: it is diagnosed, not re-probed.
//! - **When the effect shows.** A change has taken effect on a pair when the observed
//!   reachability flips (reachable <-> not reachable), not merely the verdict: right after a
//!   policy change the verdict can move from `ok` to `policy_not_enforced` only because the
//!   prediction changed while the data plane has not caught up; the effect is the later probe
//!   that finds the path closed. The first observation of a pair counts as a flip (a pair the
//!   change brought in has no earlier observation).
//! - **Events.** `report::events::reason_for` decides, on every verdict transition.

use std::time::{Instant, SystemTime};

use probe_spec::{Expectation, PairVerdict};

use crate::cluster::changes::ChangeKind;
use crate::report::events::{EventReason, reason_for};
use crate::schedule::ClusterChange;

/// The schedule's view of a logged change, when it can alter the verdict of existing pairs.
pub fn cluster_change(kind: &ChangeKind) -> Option<ClusterChange<'_>> {
    let change = match kind {
        ChangeKind::NamespaceLabels { namespace, .. } => {
            ClusterChange::NamespaceLabels { namespace }
        }
        ChangeKind::PodLabels { pod, .. } => ClusterChange::PodLabels { pod },
        ChangeKind::PolicyCreated { new: Some(new), .. } => ClusterChange::Policy {
            old: None,
            new: Some(new),
        },
        ChangeKind::PolicyUpdated {
            old: Some(old),
            new: Some(new),
            ..
        } => ClusterChange::Policy {
            old: Some(old),
            new: Some(new),
        },
        ChangeKind::PolicyDeleted { old: Some(old), .. } => ClusterChange::Policy {
            old: Some(old),
            new: None,
        },
        // A version that could not be loaded: its selectors are unknown, so the whole
        // namespace counts as touched (see the module docs).
        ChangeKind::PolicyCreated { policy, new: None }
        | ChangeKind::PolicyUpdated { policy, .. }
        | ChangeKind::PolicyDeleted { policy, old: None } => ClusterChange::NamespaceLabels {
            namespace: &policy.namespace,
        },
        ChangeKind::OtherPolicy {
            namespace: Some(namespace),
            ..
        } => ClusterChange::NamespaceLabels { namespace },
        ChangeKind::OtherPolicy {
            namespace: None, ..
        } => ClusterChange::Everything,
        ChangeKind::CniAgentRestarted { .. } => return None,
    };
    Some(change)
}

/// Whether the change can also add or remove pairs through ProbeSpec selectors (which select
/// pods and namespaces by label), so the pairs a re-plan adds are measured against it too.
pub fn may_change_plans(kind: &ChangeKind) -> bool {
    matches!(
        kind,
        ChangeKind::NamespaceLabels { .. } | ChangeKind::PodLabels { .. }
    )
}

/// When a change seen at wall-clock `at` happened on the monotonic clock, given one reading of
/// both clocks now. A change stamped in the future (clock step) counts as now.
pub fn change_instant(at: SystemTime, wall_now: SystemTime, now: Instant) -> Instant {
    let age = wall_now.duration_since(at).unwrap_or_default();
    now.checked_sub(age).unwrap_or(now)
}

/// What a new observation of a pair means next to the previous one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The observed reachability differs from the previous observation (or there was none):
    /// a pending change has taken effect on this pair.
    pub effect_observed: bool,
    /// The Event the transition deserves, if any.
    pub event: Option<EventReason>,
}

/// Compares a pair's new verdict with its previous decided one. A verdict that decides
/// nothing (`not_probed`, `inconclusive`) observes no effect and raises no Event.
pub fn transition(
    expect: Expectation,
    previous: Option<PairVerdict>,
    current: PairVerdict,
) -> Transition {
    if !current.is_decided() {
        return Transition {
            effect_observed: false,
            event: None,
        };
    }
    Transition {
        effect_observed: previous.is_none_or(|p| p.reachable() != current.reachable()),
        event: reason_for(expect, previous, current),
    }
}

#[cfg(test)]
mod tests;
