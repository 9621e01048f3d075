//! Which pairs a cluster change can affect, so they are re-probed at once.
//!
//! NetworkPolicy is namespaced and decides on the pods it selects, so every flow a change can
//! alter has an endpoint that the change touches:
//! - a policy create/update/delete: pairs whose destination pod the old or the new policy
//!   selects for ingress, or whose source pod it selects for egress;
//! - a namespace's labels: pairs with a source or destination pod in that namespace (rule
//!   `namespaceSelector`s are matched against the *other* endpoint's namespace);
//! - a pod's labels: that pod's pairs (as source or destination).
//!
//! DNS and host targets have no destination pod known before probing: they count as affected
//! through their source, and by any namespace label change (their server's namespace is
//! unknown; such changes are rare). A policy change on the DNS server's own ingress is not
//! traced to DNS pairs (the server is not part of the pair); periodic probing covers it.
//!
//! Pairs that a change adds or removes through the ProbeSpec's own selectors come from
//! re-planning: [`super::Timetable::sync`] reports them as `added` / `removed`.

use crate::cluster::Index;
use crate::cluster::model::{NetworkPolicy, ObjectRef, Pod};

use crate::pair::{Pair, PairId, PairTarget};

/// A change that can alter the verdict of existing pairs.
#[derive(Clone, Copy, Debug)]
pub enum ClusterChange<'a> {
    /// Created (`old` None), updated, or deleted (`new` None).
    Policy {
        old: Option<&'a NetworkPolicy>,
        new: Option<&'a NetworkPolicy>,
    },
    NamespaceLabels {
        namespace: &'a str,
    },
    PodLabels {
        pod: &'a ObjectRef,
    },
    /// A cluster-scoped policy: any pair may be touched.
    Everything,
}

/// The ids of `pairs` that `change` can affect, sorted. `index` supplies pod labels and maps
/// IP targets to pods; for a policy change either the old or the new view works (pod labels
/// did not change).
pub fn affected_pairs<'a>(
    pairs: impl IntoIterator<Item = &'a Pair>,
    index: &Index,
    change: &ClusterChange<'_>,
) -> Vec<PairId> {
    let mut ids: Vec<PairId> = pairs
        .into_iter()
        .filter(|pair| affects(index, change, pair))
        .map(|pair| pair.id)
        .collect();
    ids.sort();
    ids
}

fn affects(index: &Index, change: &ClusterChange<'_>, pair: &Pair) -> bool {
    let destination = destination_pod(index, &pair.target);
    match change {
        ClusterChange::Policy { old, new } => [old, new].into_iter().flatten().any(|policy| {
            (policy.isolates_egress && selects(index, policy, &pair.from))
                || (policy.isolates_ingress
                    && destination
                        .as_ref()
                        .is_some_and(|dst| selects(index, policy, dst)))
        }),
        ClusterChange::NamespaceLabels { namespace } => {
            *pair.from.namespace == **namespace
                || destination
                    .as_ref()
                    .is_some_and(|dst| *dst.namespace == **namespace)
                || matches!(
                    pair.target,
                    PairTarget::Dns { .. } | PairTarget::Host { .. }
                )
        }
        ClusterChange::PodLabels { pod } => {
            pair.from == **pod || destination.as_ref() == Some(*pod)
        }
        ClusterChange::Everything => true,
    }
}

/// The pod behind a target: a pod target's pod, or the live pod holding an IP target's address.
fn destination_pod(index: &Index, target: &PairTarget) -> Option<ObjectRef> {
    match target {
        PairTarget::Pod { pod, .. } => Some(pod.clone()),
        PairTarget::Ip { ip, .. } => index.pod_by_ip(*ip).map(Pod::key),
        PairTarget::Host { .. } | PairTarget::Dns { .. } | PairTarget::Service { .. } => None,
    }
}

/// Whether `policy` selects the pod. A pod missing from the index (deleted meanwhile) counts
/// as selected when it is in the policy's namespace: re-probing too much is cheap, missing an
/// effect is not.
fn selects(index: &Index, policy: &NetworkPolicy, pod: &ObjectRef) -> bool {
    *policy.namespace == *pod.namespace
        && index
            .pod(pod)
            .is_none_or(|p| policy.pod_selector.matches(&p.labels))
}

#[cfg(test)]
mod tests;
