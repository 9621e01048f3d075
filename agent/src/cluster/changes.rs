//! Recent changes to the cluster view, kept for diagnosis and for re-probing.
//!
//! The watch feeds (see [`super::watch`]) compare every object they apply with the version
//! already in the [`super::Index`] and record what can change a verdict: a namespace's labels,
//! a pod's labels, a NetworkPolicy, cluster-scoped policy or CNI-native policy created, updated
//! or deleted, and a CNI agent restart. The
//! log is a bounded ring: the oldest entries fall out when it is full.
//!
//! ```text
//! watch event ──> feed (old vs new) ──> ChangeLog ──> diagnose ("label changed 40 s before
//!                                           │          the first failure")
//!                                           └──────> schedule (re-probe pairs after seq N)
//! ```
//!
//! Times are when the agent *saw* the change (the apiserver does not say when labels changed);
//! a change that happened while a watch was down is seen at the relist that follows.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::model::{Labels, NetworkPolicy, ObjectRef};

/// How many changes a log keeps by default.
pub const DEFAULT_CAPACITY: usize = 1024;

/// One change the agent saw.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// Strictly increasing across the life of the log; consumers remember the last they saw.
    pub seq: u64,
    /// When the agent saw the change.
    pub at: SystemTime,
    pub kind: ChangeKind,
}

/// What happened to a policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PolicyOp {
    Created,
    Updated,
    Deleted,
}

impl PolicyOp {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyOp::Created => "created",
            PolicyOp::Updated => "updated",
            PolicyOp::Deleted => "deleted",
        }
    }
}

impl std::fmt::Display for PolicyOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What changed.
#[derive(Clone, Debug, PartialEq)]
pub enum ChangeKind {
    NamespaceLabels {
        namespace: String,
        before: Labels,
        after: Labels,
    },
    PodLabels {
        pod: ObjectRef,
        before: Labels,
        after: Labels,
    },
    /// `new` is `None` when the policy could not be loaded (it is then unloadable).
    PolicyCreated {
        policy: ObjectRef,
        new: Option<Arc<NetworkPolicy>>,
    },
    /// `old`/`new` are `None` where that version could not be loaded.
    PolicyUpdated {
        policy: ObjectRef,
        old: Option<Arc<NetworkPolicy>>,
        new: Option<Arc<NetworkPolicy>>,
    },
    PolicyDeleted {
        policy: ObjectRef,
        old: Option<Arc<NetworkPolicy>>,
    },
    /// A cluster-scoped tiered policy (`ClusterNetworkPolicy/name`, ...) or a CNI-native
    /// policy (`CiliumNetworkPolicy shop/l7`, ...) was created, updated or deleted.
    OtherPolicy {
        policy: String,
        /// A namespaced CNI-native policy's namespace; `None` for a cluster-wide policy, which
        /// may touch any pod.
        namespace: Option<String>,
        op: PolicyOp,
    },
    /// A CNI agent pod's restart count went up.
    CniAgentRestarted {
        pod: ObjectRef,
        node: Option<String>,
        /// The total restart count of its containers before and after.
        before: u32,
        restarts: u32,
    },
}

impl ChangeKind {
    /// A bounded label: `namespace_labels`, `pod_labels`, `policy_created`, ...
    pub fn as_str(&self) -> &'static str {
        match self {
            ChangeKind::NamespaceLabels { .. } => "namespace_labels",
            ChangeKind::PodLabels { .. } => "pod_labels",
            ChangeKind::PolicyCreated { .. } => "policy_created",
            ChangeKind::PolicyUpdated { .. } => "policy_updated",
            ChangeKind::PolicyDeleted { .. } => "policy_deleted",
            ChangeKind::OtherPolicy { op, .. } => match op {
                PolicyOp::Created => "policy_created",
                PolicyOp::Updated => "policy_updated",
                PolicyOp::Deleted => "policy_deleted",
            },
            ChangeKind::CniAgentRestarted { .. } => "cni_agent_restarted",
        }
    }

    /// The namespace the change happened in (for a namespace: itself).
    pub fn namespace(&self) -> &str {
        match self {
            ChangeKind::NamespaceLabels { namespace, .. } => namespace,
            ChangeKind::PodLabels { pod, .. } | ChangeKind::CniAgentRestarted { pod, .. } => {
                &pod.namespace
            }
            ChangeKind::PolicyCreated { policy, .. }
            | ChangeKind::PolicyUpdated { policy, .. }
            | ChangeKind::PolicyDeleted { policy, .. } => &policy.namespace,
            ChangeKind::OtherPolicy { namespace, .. } => namespace.as_deref().unwrap_or(""),
        }
    }

    /// The policy this change is about, if it is a policy change.
    pub fn policy(&self) -> Option<&ObjectRef> {
        match self {
            ChangeKind::PolicyCreated { policy, .. }
            | ChangeKind::PolicyUpdated { policy, .. }
            | ChangeKind::PolicyDeleted { policy, .. } => Some(policy),
            _ => None,
        }
    }

    /// Whether this change can alter flows from or to pods in `namespaces` or the `pods`
    /// themselves: labels of one of those namespaces or pods, or a policy in one of those
    /// namespaces. (Namespace selectors make *any* namespace label change relevant in theory;
    /// this is the runbook's narrower "the namespaces involved" test.)
    pub fn affects(&self, namespaces: &[&str], pods: &[ObjectRef]) -> bool {
        match self {
            ChangeKind::PodLabels { pod, .. } => pods.contains(pod),
            ChangeKind::CniAgentRestarted { .. } => false,
            ChangeKind::OtherPolicy {
                namespace: None, ..
            } => true,
            _ => namespaces.contains(&self.namespace()),
        }
    }

    /// One line for hints: `namespace payments labels {team: pay} -> {team: payments}`.
    pub fn describe(&self) -> String {
        use super::selector::display_labels as labels;
        match self {
            ChangeKind::NamespaceLabels {
                namespace,
                before,
                after,
            } => format!(
                "namespace {namespace} labels {} -> {}",
                labels(before),
                labels(after)
            ),
            ChangeKind::PodLabels { pod, before, after } => {
                format!("pod {pod} labels {} -> {}", labels(before), labels(after))
            }
            ChangeKind::PolicyCreated { policy, .. } => format!("NetworkPolicy {policy} created"),
            ChangeKind::PolicyUpdated { policy, .. } => format!("NetworkPolicy {policy} updated"),
            ChangeKind::PolicyDeleted { policy, .. } => format!("NetworkPolicy {policy} deleted"),
            ChangeKind::OtherPolicy { policy, op, .. } => format!("{policy} {op}"),
            ChangeKind::CniAgentRestarted {
                pod,
                node,
                restarts,
                ..
            } => format!(
                "CNI agent {pod} on node {} restarted ({restarts} restarts)",
                node.as_deref().unwrap_or("<unscheduled>")
            ),
        }
    }
}

// === impl ChangeLog ===

/// A bounded ring of recent changes, oldest first.
#[derive(Clone, Debug)]
pub struct ChangeLog {
    entries: VecDeque<Change>,
    capacity: usize,
    next_seq: u64,
}

impl Default for ChangeLog {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl ChangeLog {
    /// A log keeping at most `capacity` changes (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            entries: VecDeque::with_capacity(capacity.min(64)),
            capacity,
            next_seq: 1,
        }
    }

    /// Records a change and returns its sequence number.
    pub fn push(&mut self, at: SystemTime, kind: ChangeKind) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(Change { seq, at, kind });
        seq
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The sequence number of the newest change, 0 when nothing was ever recorded.
    pub fn latest_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Every change kept, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Change> {
        self.entries.iter()
    }

    /// Changes recorded after `seq` (for consumers that poll), oldest first.
    pub fn after(&self, seq: u64) -> impl Iterator<Item = &Change> {
        // Sequence numbers are contiguous, so the start is computable.
        let first = self.entries.front().map_or(0, |c| c.seq);
        let skip =
            usize::try_from(seq.saturating_add(1).saturating_sub(first)).unwrap_or(usize::MAX);
        self.entries.iter().skip(skip)
    }

    /// Changes seen in `[from, to]`, oldest first.
    pub fn between(&self, from: SystemTime, to: SystemTime) -> impl Iterator<Item = &Change> {
        self.entries
            .iter()
            .filter(move |c| c.at >= from && c.at <= to)
    }

    /// Changes seen within `window` before `t` (inclusive) that [affect](ChangeKind::affects)
    /// the given namespaces or pods, newest first: the runbook's "did a label or a policy
    /// change shortly before the first failure?".
    pub fn affecting_before<'a>(
        &'a self,
        t: SystemTime,
        window: Duration,
        namespaces: &'a [&'a str],
        pods: &'a [ObjectRef],
    ) -> impl Iterator<Item = &'a Change> + 'a {
        let from = t.checked_sub(window).unwrap_or(SystemTime::UNIX_EPOCH);
        self.entries
            .iter()
            .rev()
            .filter(move |c| c.at >= from && c.at <= t && c.kind.affects(namespaces, pods))
    }

    /// How many times the CNI agent `pod` restarted since `since` (for "restarts in the last
    /// window"; a restart count seen only through a relist is counted when it is seen).
    pub fn cni_restarts_in_window(&self, pod: &ObjectRef, since: SystemTime) -> u32 {
        self.entries
            .iter()
            .filter(|c| c.at >= since)
            .filter_map(|c| match &c.kind {
                ChangeKind::CniAgentRestarted {
                    pod: p,
                    before,
                    restarts,
                    ..
                } if p == pod => Some(restarts.saturating_sub(*before)),
                _ => None,
            })
            .fold(0, u32::saturating_add)
    }

    /// CNI agent restarts on `node` seen since `since`, newest first.
    pub fn cni_restarts_since<'a>(
        &'a self,
        node: &'a str,
        since: SystemTime,
    ) -> impl Iterator<Item = &'a Change> + 'a {
        self.entries.iter().rev().filter(move |c| {
            c.at >= since
                && matches!(&c.kind, ChangeKind::CniAgentRestarted { node: Some(n), .. } if n == node)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn ns_change(ns: &str) -> ChangeKind {
        ChangeKind::NamespaceLabels {
            namespace: ns.into(),
            before: Labels::from([("team".into(), "a".into())]),
            after: Labels::from([("team".into(), "b".into())]),
        }
    }

    #[test]
    fn ring_drops_the_oldest_and_keeps_sequence_numbers() {
        let mut log = ChangeLog::new(2);
        assert_eq!(log.latest_seq(), 0);
        for (i, ns) in ["a", "b", "c"].into_iter().enumerate() {
            log.push(at(i as u64), ns_change(ns));
        }
        let seqs: Vec<u64> = log.iter().map(|c| c.seq).collect();
        assert_eq!(seqs, [2, 3]);
        assert_eq!(log.latest_seq(), 3);
        assert_eq!(
            log.after(0).count(),
            2,
            "older than the ring: everything kept"
        );
        assert_eq!(log.after(2).map(|c| c.seq).collect::<Vec<_>>(), [3]);
        assert_eq!(log.after(3).count(), 0);
        assert_eq!(log.after(u64::MAX).count(), 0);
    }

    #[test]
    fn queries_by_window_and_by_affected_objects() {
        let mut log = ChangeLog::default();
        log.push(at(10), ns_change("shop"));
        log.push(
            at(20),
            ChangeKind::PodLabels {
                pod: ObjectRef::new("pay", "gw"),
                before: Labels::new(),
                after: Labels::new(),
            },
        );
        log.push(
            at(30),
            ChangeKind::PolicyDeleted {
                policy: ObjectRef::new("pay", "allow"),
                old: None,
            },
        );
        log.push(at(40), ns_change("other"));

        assert_eq!(log.between(at(15), at(30)).count(), 2);

        let pods = [ObjectRef::new("pay", "gw")];
        let hits: Vec<&str> = log
            .affecting_before(at(35), Duration::from_secs(30), &["pay"], &pods)
            .map(|c| c.kind.as_str())
            .collect();
        assert_eq!(hits, ["policy_deleted", "pod_labels"]);
        // The pod label change counts only for that pod.
        let hits = log
            .affecting_before(at(35), Duration::from_secs(30), &["pay"], &[])
            .count();
        assert_eq!(hits, 1);
        // Outside the window.
        assert_eq!(
            log.affecting_before(at(35), Duration::from_secs(1), &["shop"], &[])
                .count(),
            0
        );
    }

    #[test]
    fn describes_changes_in_one_line() {
        assert_eq!(
            ns_change("shop").describe(),
            "namespace shop labels {team: a} -> {team: b}"
        );
        let restart = ChangeKind::CniAgentRestarted {
            pod: ObjectRef::new("kube-system", "calico-node-x"),
            node: Some("n1".into()),
            before: 1,
            restarts: 3,
        };
        assert_eq!(
            restart.describe(),
            "CNI agent kube-system/calico-node-x on node n1 restarted (3 restarts)"
        );
        let mut log = ChangeLog::default();
        log.push(at(5), restart);
        assert_eq!(log.cni_restarts_since("n1", at(0)).count(), 1);
        assert_eq!(log.cni_restarts_since("n2", at(0)).count(), 0);
        let pod = ObjectRef::new("kube-system", "calico-node-x");
        assert_eq!(log.cni_restarts_in_window(&pod, at(0)), 2);
        assert_eq!(log.cni_restarts_in_window(&pod, at(6)), 0);
    }
}
