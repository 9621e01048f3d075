use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use probe_spec::{Expectation, PairVerdict};

use super::*;
use crate::cluster::changes::PolicyOp;
use crate::cluster::model::ObjectRef;
use crate::report::events::EventReason;
use crate::runtime::fixtures::{labels, policy};

/// A ClusterChange in one comparable line.
fn render(change: Option<ClusterChange<'_>>) -> String {
    let name = |p: Option<&crate::cluster::model::NetworkPolicy>| {
        p.map_or("-".to_string(), |p| format!("{}/{}", p.namespace, p.name))
    };
    match change {
        None => "none".into(),
        Some(ClusterChange::Policy { old, new }) => {
            format!("policy old={} new={}", name(old), name(new))
        }
        Some(ClusterChange::NamespaceLabels { namespace }) => format!("namespace {namespace}"),
        Some(ClusterChange::PodLabels { pod }) => format!("pod {pod}"),
        Some(ClusterChange::Everything) => "everything".into(),
    }
}

#[test]
fn logged_changes_map_to_schedule_changes() {
    let deny = Some(Arc::new(policy(
        "shop",
        "deny",
        &[("app", "api")],
        true,
        false,
    )));
    let allow = Some(Arc::new(policy("shop", "allow", &[], true, false)));
    let policy_ref = ObjectRef::new("shop", "deny");
    let cases: Vec<(&str, ChangeKind, &str)> = vec![
        (
            "namespace labels",
            ChangeKind::NamespaceLabels {
                namespace: "pay".into(),
                before: labels(&[("team", "a")]),
                after: labels(&[("team", "b")]),
            },
            "namespace pay",
        ),
        (
            "pod labels",
            ChangeKind::PodLabels {
                pod: ObjectRef::new("shop", "api-1"),
                before: labels(&[]),
                after: labels(&[("app", "api")]),
            },
            "pod shop/api-1",
        ),
        (
            "policy created",
            ChangeKind::PolicyCreated {
                policy: policy_ref.clone(),
                new: deny.clone(),
            },
            "policy old=- new=shop/deny",
        ),
        (
            "policy updated",
            ChangeKind::PolicyUpdated {
                policy: policy_ref.clone(),
                old: allow.clone(),
                new: deny.clone(),
            },
            "policy old=shop/allow new=shop/deny",
        ),
        (
            "policy deleted",
            ChangeKind::PolicyDeleted {
                policy: policy_ref.clone(),
                old: deny.clone(),
            },
            "policy old=shop/deny new=-",
        ),
        (
            "unloadable policy created: the namespace",
            ChangeKind::PolicyCreated {
                policy: policy_ref.clone(),
                new: None,
            },
            "namespace shop",
        ),
        (
            "update to an unloadable version: the namespace",
            ChangeKind::PolicyUpdated {
                policy: policy_ref.clone(),
                old: allow.clone(),
                new: None,
            },
            "namespace shop",
        ),
        (
            "unloadable policy deleted: the namespace",
            ChangeKind::PolicyDeleted {
                policy: policy_ref.clone(),
                old: None,
            },
            "namespace shop",
        ),
        (
            "CNI restart: diagnosed, not re-probed",
            ChangeKind::CniAgentRestarted {
                pod: ObjectRef::new("kube-system", "calico-node-x"),
                node: Some("node-1".into()),
                before: 0,
                restarts: 1,
            },
            "none",
        ),
        (
            "a cluster-scoped tier: any pair",
            ChangeKind::OtherPolicy {
                policy: "ClusterNetworkPolicy/deny".into(),
                namespace: None,
                op: PolicyOp::Created,
            },
            "everything",
        ),
        (
            "a namespaced CNI-native policy: its namespace's pairs",
            ChangeKind::OtherPolicy {
                policy: "CiliumNetworkPolicy shop/l7".into(),
                namespace: Some("shop".into()),
                op: PolicyOp::Deleted,
            },
            "namespace shop",
        ),
    ];
    for (name, kind, expected) in cases {
        assert_eq!(render(cluster_change(&kind)), expected, "{name}");
    }
}

#[test]
fn only_label_changes_can_change_plans() {
    let ns = ChangeKind::NamespaceLabels {
        namespace: "pay".into(),
        before: labels(&[]),
        after: labels(&[]),
    };
    let pod = ChangeKind::PodLabels {
        pod: ObjectRef::new("shop", "a"),
        before: labels(&[]),
        after: labels(&[]),
    };
    let deleted = ChangeKind::PolicyDeleted {
        policy: ObjectRef::new("shop", "p"),
        old: None,
    };
    assert!(may_change_plans(&ns));
    assert!(may_change_plans(&pod));
    assert!(!may_change_plans(&deleted));
}

#[test]
fn change_times_move_onto_the_monotonic_clock() {
    let now = Instant::now() + Duration::from_secs(3600);
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let cases = [
        (
            "seen 3 s ago",
            wall - Duration::from_secs(3),
            now - Duration::from_secs(3),
        ),
        ("seen now", wall, now),
        (
            "stamped in the future: now",
            wall + Duration::from_secs(5),
            now,
        ),
    ];
    for (name, at, expected) in cases {
        assert_eq!(change_instant(at, wall, now), expected, "{name}");
    }
}

/// expect, previous verdict, current verdict, effect observed, event.
type Case = (
    Expectation,
    Option<PairVerdict>,
    PairVerdict,
    bool,
    Option<EventReason>,
);

#[test]
fn transitions_flag_reachability_flips_and_events() {
    use EventReason::{NetworkPolicyDenied, ProbeFailed};
    use Expectation::{Allow, Deny};
    use PairVerdict::{
        BlockedByPolicy, Inconclusive, NotProbed, Ok, PolicyNotEnforced, UnexpectedBlock,
    };
    #[rustfmt::skip]
    let cases: &[Case] = &[
        // expect, previous, current, effect observed, event
        (Allow, None, Ok, true, None),
        (Allow, None, BlockedByPolicy, true, Some(NetworkPolicyDenied)),
        (Deny, None, BlockedByPolicy, true, None),
        (Allow, Some(Ok), Ok, false, None),
        (Allow, Some(Ok), BlockedByPolicy, true, Some(NetworkPolicyDenied)),
        (Allow, Some(BlockedByPolicy), BlockedByPolicy, false, None),
        (Allow, Some(BlockedByPolicy), Ok, true, None),
        // The prediction moved, the data plane did not (yet): no effect.
        (Allow, Some(Ok), PolicyNotEnforced, false, None),
        (Allow, Some(PolicyNotEnforced), BlockedByPolicy, true, Some(NetworkPolicyDenied)),
        (Allow, Some(UnexpectedBlock), BlockedByPolicy, false, Some(NetworkPolicyDenied)),
        (Deny, Some(Ok), UnexpectedBlock, true, Some(ProbeFailed)),
        (Deny, Some(UnexpectedBlock), UnexpectedBlock, false, None),
        // Nothing observed: no effect, no Event, whatever came before.
        (Allow, None, NotProbed, false, None),
        (Allow, Some(Ok), NotProbed, false, None),
        (Allow, Some(BlockedByPolicy), NotProbed, false, None),
        (Deny, Some(Ok), NotProbed, false, None),
        (Allow, None, Inconclusive, false, None),
        (Allow, Some(Ok), Inconclusive, false, None),
        (Deny, Some(UnexpectedBlock), Inconclusive, false, None),
    ];
    for &(expect, previous, current, effect, event) in cases {
        let got = transition(expect, previous, current);
        assert_eq!(
            got,
            Transition {
                effect_observed: effect,
                event
            },
            "{expect:?} {previous:?} -> {current:?}"
        );
    }
}
