//! The runbook's fallback hints ("If no policy misconfiguration is found"), attached to a
//! diagnosis when they hold: a namespace label, a policy or a pod's labels changed shortly
//! before the first failure; several policies select the pod; a CNI agent restarted.

use std::collections::BTreeSet;
use std::fmt;
use std::time::{Duration, SystemTime};

use probe_spec::{Direction, format_duration};

pub use crate::cluster::changes::PolicyOp;
use crate::cluster::changes::{Change, ChangeKind};
use crate::cluster::model::{Labels, ObjectRef};
use crate::cluster::selector::display_labels;
use crate::policy::{DirectionVerdict, Endpoint};

use super::{Config, Input};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hint {
    NamespaceLabelChanged {
        namespace: String,
        labels_before: Labels,
        labels_after: Labels,
        /// When the agent saw the change.
        at: SystemTime,
        /// How long before the first failure.
        before_failure: Duration,
    },
    PolicyChanged {
        policy: ObjectRef,
        op: PolicyOp,
        at: SystemTime,
        before_failure: Duration,
    },
    /// A cluster-scoped or CNI-native policy changed (`ClusterNetworkPolicy/name`,
    /// `CiliumNetworkPolicy shop/l7`).
    OtherPolicyChanged {
        policy: String,
        op: PolicyOp,
        at: SystemTime,
        before_failure: Duration,
    },
    PodLabelsChanged {
        pod: ObjectRef,
        labels_before: Labels,
        labels_after: Labels,
        at: SystemTime,
        before_failure: Duration,
    },
    /// At least two policies select the pod in this direction: any one isolates it, and only
    /// the union of their rules is allowed.
    OverlappingPolicies {
        /// The pod (or address) they select, as written in the flow.
        pod: String,
        direction: Direction,
        policies: Vec<ObjectRef>,
    },
    CniRestarted {
        pod: ObjectRef,
        node: String,
        restarts: u32,
    },
}

impl Hint {
    /// A bounded code for JSON and metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            Hint::NamespaceLabelChanged { .. } => "namespace_label_changed",
            Hint::PolicyChanged { .. } | Hint::OtherPolicyChanged { .. } => "policy_changed",
            Hint::PodLabelsChanged { .. } => "pod_labels_changed",
            Hint::OverlappingPolicies { .. } => "overlapping_policies",
            Hint::CniRestarted { .. } => "cni_restarted",
        }
    }
}

impl fmt::Display for Hint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hint::NamespaceLabelChanged {
                namespace,
                labels_before,
                labels_after,
                before_failure,
                ..
            } => write!(
                f,
                "the labels of namespace {namespace} changed {} before the first failure ({} -> {}): namespace selectors may no longer match",
                format_duration(*before_failure),
                display_labels(labels_before),
                display_labels(labels_after)
            ),
            Hint::PolicyChanged {
                policy,
                op,
                before_failure,
                ..
            } => write!(
                f,
                "NetworkPolicy {policy} was {op} {} before the first failure",
                format_duration(*before_failure)
            ),
            Hint::OtherPolicyChanged {
                policy,
                op,
                before_failure,
                ..
            } => write!(
                f,
                "{policy} was {op} {} before the first failure",
                format_duration(*before_failure)
            ),
            Hint::PodLabelsChanged {
                pod,
                labels_before,
                labels_after,
                before_failure,
                ..
            } => write!(
                f,
                "the labels of pod {pod} changed {} before the first failure ({} -> {}): pod selectors may no longer match",
                format_duration(*before_failure),
                display_labels(labels_before),
                display_labels(labels_after)
            ),
            Hint::OverlappingPolicies {
                pod,
                direction,
                policies,
            } => {
                let names: Vec<String> = policies.iter().map(ToString::to_string).collect();
                write!(
                    f,
                    "{} policies select {pod} for {direction} ({}): any one isolates it and only the union of their rules is allowed",
                    policies.len(),
                    names.join(", ")
                )
            }
            Hint::CniRestarted {
                pod,
                node,
                restarts,
            } => write!(
                f,
                "CNI agent {pod} on {node} restarted {} recently: policy enforcement may have been inconsistent or delayed",
                super::health::times(*restarts)
            ),
        }
    }
}

/// Every hint that holds for the pair, in a stable order: changes (oldest first), overlapping
/// policies (ingress, then egress), CNI restarts.
pub(super) fn gather(input: &Input<'_>, config: &Config) -> Vec<Hint> {
    let mut hints = change_hints(input, config);
    if let Some(prediction) = &input.prediction {
        let verdict = prediction.verdict;
        for (direction, part, endpoint) in [
            (Direction::Ingress, &verdict.ingress, &prediction.flow.to),
            (Direction::Egress, &verdict.egress, &prediction.flow.from),
        ] {
            let policies = selecting_policies(part);
            if policies.len() >= 2 {
                hints.push(Hint::OverlappingPolicies {
                    pod: endpoint_name(endpoint),
                    direction,
                    policies,
                });
            }
        }
    }
    hints.extend(
        input
            .health
            .restarted_cni()
            .into_iter()
            .map(|c| Hint::CniRestarted {
                pod: c.pod.clone(),
                node: c.node.clone(),
                restarts: c.restarts_in_window,
            }),
    );
    hints
}

/// Changes to the two endpoints' namespaces, their labels or the policies there, seen within
/// `change_window` before the first failure; the latest change per object, oldest first.
fn change_hints(input: &Input<'_>, config: &Config) -> Vec<Hint> {
    let Some(first_failure) = input.first_failure else {
        return Vec::new();
    };
    let destination = input.health.destination.as_ref().map(|d| &d.pod);
    let mut namespaces: Vec<&str> = vec![&input.from.namespace];
    let mut pods: Vec<ObjectRef> = vec![input.from.clone()];
    if let Some(d) = destination {
        namespaces.push(&d.namespace);
        pods.push(d.clone());
    }
    let mut seen = BTreeSet::new();
    // Newest first, so the first change seen per object is its latest.
    let mut hints: Vec<Hint> = input
        .changes
        .affecting_before(first_failure, config.change_window, &namespaces, &pods)
        .filter_map(|change| {
            let hint = hint_of(change, first_failure)?;
            seen.insert(subject(&change.kind)).then_some(hint)
        })
        .collect();
    hints.reverse();
    hints
}

fn hint_of(change: &Change, first_failure: SystemTime) -> Option<Hint> {
    let at = change.at;
    let before_failure = first_failure.duration_since(at).unwrap_or_default();
    let policy = |policy: &ObjectRef, op| Hint::PolicyChanged {
        policy: policy.clone(),
        op,
        at,
        before_failure,
    };
    Some(match &change.kind {
        ChangeKind::NamespaceLabels {
            namespace,
            before,
            after,
        } => Hint::NamespaceLabelChanged {
            namespace: namespace.clone(),
            labels_before: before.clone(),
            labels_after: after.clone(),
            at,
            before_failure,
        },
        ChangeKind::PodLabels { pod, before, after } => Hint::PodLabelsChanged {
            pod: pod.clone(),
            labels_before: before.clone(),
            labels_after: after.clone(),
            at,
            before_failure,
        },
        ChangeKind::PolicyCreated { policy: p, .. } => policy(p, PolicyOp::Created),
        ChangeKind::PolicyUpdated { policy: p, .. } => policy(p, PolicyOp::Updated),
        ChangeKind::PolicyDeleted { policy: p, .. } => policy(p, PolicyOp::Deleted),
        ChangeKind::OtherPolicy { policy, op, .. } => Hint::OtherPolicyChanged {
            policy: policy.clone(),
            op: *op,
            at,
            before_failure,
        },
        // CNI restarts come from the health view (`Hint::CniRestarted`).
        ChangeKind::CniAgentRestarted { .. } => return None,
    })
}

/// The object a change is about, to keep one hint per object.
fn subject(kind: &ChangeKind) -> (&'static str, String) {
    match kind {
        ChangeKind::NamespaceLabels { namespace, .. } => ("namespace", namespace.clone()),
        ChangeKind::PodLabels { pod, .. } | ChangeKind::CniAgentRestarted { pod, .. } => {
            ("pod", pod.to_string())
        }
        ChangeKind::PolicyCreated { policy, .. }
        | ChangeKind::PolicyUpdated { policy, .. }
        | ChangeKind::PolicyDeleted { policy, .. } => ("policy", policy.to_string()),
        ChangeKind::OtherPolicy { policy, .. } => ("policy", policy.clone()),
    }
}

/// Every policy that selects the pod of one direction (and isolates it for that direction).
pub(super) fn selecting_policies(part: &DirectionVerdict) -> Vec<ObjectRef> {
    match part {
        DirectionVerdict::Allowed { isolating, .. } => isolating.clone(),
        DirectionVerdict::Denied { policies } => {
            policies.iter().map(|p| p.policy.clone()).collect()
        }
        DirectionVerdict::NotIsolated
        | DirectionVerdict::NotApplicable { .. }
        | DirectionVerdict::NodeLocal
        | DirectionVerdict::Tiered(_) => Vec::new(),
    }
}

fn endpoint_name(endpoint: &Endpoint) -> String {
    endpoint.to_string()
}
