//! The index: the current set of namespaces, nodes, pods and NetworkPolicies.
//!
//! Sources (kube watchers, snapshot files) feed it through [`Apply`]: `apply` one object,
//! `delete` one by key, or `reset` a kind to a complete list (a relist), which also removes
//! objects deleted while a watch was down. The index is plain data with no I/O; the policy
//! engine compiles a snapshot of it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::model::{Labels, NAMESPACE_NAME_LABEL, Namespace, NetworkPolicy, Node, ObjectRef, Pod};

#[derive(Clone, Debug, Default)]
pub struct Index {
    namespaces: BTreeMap<String, Namespace>,
    nodes: BTreeMap<String, Node>,
    pods: BTreeMap<ObjectRef, Pod>,
    policies: BTreeMap<ObjectRef, NetworkPolicy>,
    /// Policies that exist but could not be converted even in fail-closed form (e.g. an
    /// invalid podSelector): verdicts in their namespace carry a warning instead of silently
    /// allowing what they might deny.
    unloadable_policies: BTreeMap<ObjectRef, String>,
    /// Bumped on every change, so derived views know when to rebuild.
    revision: u64,
}

/// How a source feeds objects of one kind into the index.
pub trait Apply<T> {
    type Key;
    fn apply(&mut self, obj: T);
    fn delete(&mut self, key: &Self::Key);
    /// Replaces every object of this kind with `objs` (a full relist).
    fn reset(&mut self, objs: Vec<T>);
}

macro_rules! impl_apply {
    ($ty:ty, $field:ident, $key:ty, |$o:ident| $key_of:expr) => {
        impl Apply<$ty> for Index {
            type Key = $key;
            fn apply(&mut self, $o: $ty) {
                self.revision += 1;
                self.$field.insert($key_of, $o);
            }
            fn delete(&mut self, key: &$key) {
                if self.$field.remove(key).is_some() {
                    self.revision += 1;
                }
            }
            fn reset(&mut self, objs: Vec<$ty>) {
                self.revision += 1;
                self.$field = objs.into_iter().map(|$o| ($key_of, $o)).collect();
            }
        }
    };
}

impl_apply!(Namespace, namespaces, String, |o| o.name.clone());
impl_apply!(Node, nodes, String, |o| o.name.clone());
impl_apply!(Pod, pods, ObjectRef, |o| o.key());
impl Apply<NetworkPolicy> for Index {
    type Key = ObjectRef;
    fn apply(&mut self, policy: NetworkPolicy) {
        self.revision += 1;
        self.unloadable_policies.remove(&policy.key());
        self.policies.insert(policy.key(), policy);
    }
    fn delete(&mut self, key: &ObjectRef) {
        let removed =
            self.policies.remove(key).is_some() | self.unloadable_policies.remove(key).is_some();
        if removed {
            self.revision += 1;
        }
    }
    fn reset(&mut self, policies: Vec<NetworkPolicy>) {
        self.revision += 1;
        self.unloadable_policies.clear();
        self.policies = policies.into_iter().map(|p| (p.key(), p)).collect();
    }
}

impl Index {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn namespaces(&self) -> impl Iterator<Item = &Namespace> {
        self.namespaces.values()
    }

    pub fn namespace(&self, name: &str) -> Option<&Namespace> {
        self.namespaces.get(name)
    }

    /// A namespace's labels. A namespace that was not loaded (offline files often hold only
    /// pods and policies) gets the one label the control plane always sets (E10).
    pub fn namespace_labels(&self, name: &str) -> Labels {
        match self.namespaces.get(name) {
            Some(ns) => ns.labels.clone(),
            None => Labels::from([(NAMESPACE_NAME_LABEL.to_string(), name.to_string())]),
        }
    }

    /// Every namespace that has a pod or a policy or was loaded, sorted.
    pub fn namespace_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.namespaces.keys().cloned().collect();
        names.extend(self.pods.keys().map(|k| k.namespace.to_string()));
        names.extend(self.policies.keys().map(|k| k.namespace.to_string()));
        names.sort();
        names.dedup();
        names
    }

    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values()
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.get(name)
    }

    /// The node that owns an address, if any.
    pub fn node_by_ip(&self, ip: IpAddr) -> Option<&Node> {
        self.nodes.values().find(|n| n.addresses.contains(&ip))
    }

    pub fn pods(&self) -> impl Iterator<Item = &Pod> {
        self.pods.values()
    }

    pub fn pod(&self, key: &ObjectRef) -> Option<&Pod> {
        self.pods.get(key)
    }

    /// The live pod (an endpoint, not hostNetwork) that holds `ip`, if any (E23: finished pods
    /// never match, so a reused IP does not inherit their labels).
    pub fn pod_by_ip(&self, ip: IpAddr) -> Option<&Pod> {
        self.pods
            .values()
            .find(|p| p.is_endpoint() && !p.host_network && p.ips.contains(&ip))
    }

    pub fn policies(&self) -> impl Iterator<Item = &NetworkPolicy> {
        self.policies.values()
    }

    pub fn policy(&self, key: &ObjectRef) -> Option<&NetworkPolicy> {
        self.policies.get(key)
    }

    /// The policies of one namespace, in name order.
    pub fn policies_in<'a>(
        &'a self,
        namespace: &'a str,
    ) -> impl Iterator<Item = &'a NetworkPolicy> + 'a {
        let start = ObjectRef::new(namespace, "");
        self.policies
            .range(start..)
            .take_while(move |(k, _)| *k.namespace == *namespace)
            .map(|(_, p)| p)
    }

    /// Records a policy that could not be loaded at all, with why.
    pub fn mark_unloadable_policy(&mut self, key: ObjectRef, reason: String) {
        self.revision += 1;
        self.policies.remove(&key);
        self.unloadable_policies.insert(key, reason);
    }

    /// Policies of a namespace that could not be loaded, with why.
    pub fn unloadable_policies_in<'a>(
        &'a self,
        namespace: &'a str,
    ) -> impl Iterator<Item = (&'a ObjectRef, &'a String)> + 'a {
        self.unloadable_policies
            .iter()
            .filter(move |(k, _)| *k.namespace == *namespace)
    }

    pub fn counts(&self) -> IndexCounts {
        IndexCounts {
            namespaces: self.namespaces.len(),
            nodes: self.nodes.len(),
            pods: self.pods.len(),
            policies: self.policies.len(),
        }
    }
}

/// Sizes of the index, for summaries and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct IndexCounts {
    pub namespaces: usize,
    pub nodes: usize,
    pub pods: usize,
    pub policies: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::model::PodPhase;
    use crate::cluster::selector::Selector;

    fn pod(ns: &str, name: &str) -> Pod {
        Pod {
            namespace: ns.into(),
            name: name.into(),
            uid: format!("uid-{ns}-{name}"),
            labels: Labels::new(),
            node_name: None,
            host_network: false,
            ips: vec![],
            phase: PodPhase::Running,
            ready: true,
            terminating: false,
            ports: vec![],
            restarts: 0,
            mesh: None,
        }
    }

    fn policy(ns: &str, name: &str) -> NetworkPolicy {
        NetworkPolicy {
            namespace: ns.into(),
            name: name.into(),
            pod_selector: Selector::everything(),
            isolates_ingress: true,
            isolates_egress: false,
            ingress: vec![],
            egress: vec![],
            warnings: vec![],
        }
    }

    #[test]
    fn apply_delete_reset() {
        let mut index = Index::new();
        index.apply(pod("a", "one"));
        index.apply(pod("a", "two"));
        index.apply(pod("b", "one"));
        assert_eq!(index.counts().pods, 3);
        Apply::<Pod>::delete(&mut index, &ObjectRef::new("a", "two"));
        assert_eq!(index.counts().pods, 2);
        // A relist that no longer contains b/one removes it (deleted during a watch gap).
        index.reset(vec![pod("a", "one"), pod("c", "three")]);
        let keys: Vec<String> = index.pods().map(|p| p.key().to_string()).collect();
        assert_eq!(keys, ["a/one", "c/three"]);
    }

    #[test]
    fn policies_are_grouped_by_namespace() {
        let mut index = Index::new();
        for (ns, name) in [("a", "p1"), ("ab", "p2"), ("a", "p0"), ("b", "p3")] {
            index.apply(policy(ns, name));
        }
        let names: Vec<&str> = index.policies_in("a").map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["p0", "p1"]);
        assert_eq!(index.policies_in("zz").count(), 0);
    }

    #[test]
    fn missing_namespace_gets_the_name_label() {
        let index = Index::new();
        assert_eq!(
            index
                .namespace_labels("shop")
                .get(NAMESPACE_NAME_LABEL)
                .map(String::as_str),
            Some("shop")
        );
    }
}
