//! The index: the current set of namespaces, nodes, pods and NetworkPolicies.
//!
//! Sources (kube watchers, snapshot files) feed it through [`Apply`]: `apply` one object,
//! `delete` one by key, or `reset` a kind to a complete list (a relist), which also removes
//! objects deleted while a watch was down. The index is plain data with no I/O; the policy
//! engine compiles a snapshot of it.
//!
//! **Pods from several watches.** A node-scoped agent watches pods through several watches at
//! once (this node's pods by `spec.nodeName`, the pods its specs select by label, the CNI
//! agents); one pod may arrive through more than one. Each watch is a [`PodOwner`]: a pod is in
//! the index while at least one owner holds it, and an owner's relist or release
//! ([`Index::reset_pods_from`], [`Index::release_pods_of`]) touches only what that owner holds.
//! Snapshot sources and the cluster-wide watch use [`PodOwner::ALL`] through [`Apply`].
//!
//! **Coverage.** A node-scoped index does not hold every pod ([`PodCoverage::Partial`]): an
//! address that no held pod or node owns may still be some other pod's, so it is "unknown",
//! never "external", unless a watch of that address (`status.podIP=`) or a lookup has answered
//! for it ([`Index::address_known`]). The policy engine reads this to withhold a prediction
//! rather than evaluate a pod as an ipBlock.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::cni_policy::{CniPolicy, CniPolicyKind};
use super::model::{Labels, NAMESPACE_NAME_LABEL, Namespace, NetworkPolicy, Node, ObjectRef, Pod};
use super::service::{EndpointSlice, Service};
use super::tiered::{TieredKind, TieredPolicy};

/// One source of pods (one watch); see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodOwner(pub u32);

impl PodOwner {
    /// The one owner of a complete source: a snapshot, or the cluster-wide pod watch.
    pub const ALL: PodOwner = PodOwner(0);
}

/// Whether the index holds every pod of the cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PodCoverage {
    /// Every pod (a snapshot, or the cluster-wide watch): an address no pod holds is no pod's.
    #[default]
    Complete,
    /// Only the pods some watch selected: an address no held pod holds may be another pod's.
    Partial,
}

/// A pod and the watches that hold it (usually one; sorted).
#[derive(Clone, Debug)]
struct Held {
    pod: Pod,
    owners: Vec<PodOwner>,
}

#[derive(Clone, Debug, Default)]
pub struct Index {
    namespaces: BTreeMap<String, Namespace>,
    nodes: BTreeMap<String, Node>,
    pods: BTreeMap<ObjectRef, Held>,
    coverage: PodCoverage,
    /// Addresses a watch or lookup answered for (the pod holding it, if any, is held), by the
    /// owner that answered: known even in a partial index.
    answered_addresses: BTreeMap<IpAddr, BTreeSet<PodOwner>>,
    policies: BTreeMap<ObjectRef, NetworkPolicy>,
    /// Policies that exist but could not be converted even in fail-closed form (e.g. an
    /// invalid podSelector): verdicts in their namespace carry a warning instead of silently
    /// allowing what they might deny.
    unloadable_policies: BTreeMap<ObjectRef, String>,
    /// ClusterNetworkPolicies, AdminNetworkPolicies and BaselineAdminNetworkPolicies, by
    /// `Kind/name`.
    tiered: BTreeMap<String, TieredPolicy>,
    /// Cilium, Calico and Antrea policies: known to exist, not evaluated.
    cni_policies: BTreeSet<CniPolicy>,
    services: BTreeMap<ObjectRef, Service>,
    endpoint_slices: BTreeMap<ObjectRef, EndpointSlice>,
    /// Bumped on every change, so derived views know when to rebuild.
    revision: u64,
}

/// How a source feeds objects of one kind into the index.
pub trait Apply<T> {
    type Key;
    fn apply(&mut self, obj: T);
    /// Deletes the object; whether there was one.
    fn delete(&mut self, key: &Self::Key) -> bool;
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
            fn delete(&mut self, key: &$key) -> bool {
                let removed = self.$field.remove(key).is_some();
                if removed {
                    self.revision += 1;
                }
                removed
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
impl_apply!(TieredPolicy, tiered, String, |o| o.key());
impl_apply!(Service, services, ObjectRef, |o| o.key());
impl_apply!(EndpointSlice, endpoint_slices, ObjectRef, |o| o.key());

impl Apply<CniPolicy> for Index {
    type Key = CniPolicy;
    fn apply(&mut self, policy: CniPolicy) {
        if self.cni_policies.insert(policy) {
            self.revision += 1;
        }
    }
    fn delete(&mut self, key: &CniPolicy) -> bool {
        let removed = self.cni_policies.remove(key);
        if removed {
            self.revision += 1;
        }
        removed
    }
    fn reset(&mut self, policies: Vec<CniPolicy>) {
        self.revision += 1;
        self.cni_policies = policies.into_iter().collect();
    }
}

/// Pods of a complete source: owner [`PodOwner::ALL`].
impl Apply<Pod> for Index {
    type Key = ObjectRef;
    fn apply(&mut self, pod: Pod) {
        self.apply_pod_from(PodOwner::ALL, pod);
    }
    fn delete(&mut self, key: &ObjectRef) -> bool {
        self.remove_pod_from(PodOwner::ALL, key)
    }
    fn reset(&mut self, pods: Vec<Pod>) {
        self.reset_pods_from(PodOwner::ALL, pods);
    }
}
impl Apply<NetworkPolicy> for Index {
    type Key = ObjectRef;
    fn apply(&mut self, policy: NetworkPolicy) {
        self.revision += 1;
        self.unloadable_policies.remove(&policy.key());
        self.policies.insert(policy.key(), policy);
    }
    fn delete(&mut self, key: &ObjectRef) -> bool {
        let removed =
            self.policies.remove(key).is_some() | self.unloadable_policies.remove(key).is_some();
        if removed {
            self.revision += 1;
        }
        removed
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
        self.pods.values().map(|held| &held.pod)
    }

    pub fn pod(&self, key: &ObjectRef) -> Option<&Pod> {
        self.pods.get(key).map(|held| &held.pod)
    }

    /// The pods of one namespace.
    pub fn pods_in<'a>(&'a self, namespace: &'a str) -> impl Iterator<Item = &'a Pod> + 'a {
        let start = ObjectRef::new(namespace, "");
        self.pods
            .range(start..)
            .take_while(move |(key, _)| *key.namespace == *namespace)
            .map(|(_, held)| &held.pod)
    }

    pub fn service(&self, key: &ObjectRef) -> Option<&Service> {
        self.services.get(key)
    }

    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.services.values()
    }

    pub fn endpoint_slices(&self) -> impl Iterator<Item = &EndpointSlice> {
        self.endpoint_slices.values()
    }

    /// The EndpointSlices that name `service`.
    pub fn endpoint_slices_of<'a>(
        &'a self,
        service: &'a ObjectRef,
    ) -> impl Iterator<Item = &'a EndpointSlice> + 'a {
        let start = ObjectRef::new(service.namespace.clone(), "");
        self.endpoint_slices
            .range(start..)
            .take_while(move |(key, _)| key.namespace == service.namespace)
            .map(|(_, slice)| slice)
            .filter(move |slice| *slice.service == *service.name)
    }

    /// The Service whose ClusterIP is `ip`, if any.
    pub fn service_by_cluster_ip(&self, ip: IpAddr) -> Option<&Service> {
        self.services.values().find(|s| s.cluster_ips.contains(&ip))
    }

    /// The live pod (an endpoint, not hostNetwork) that holds `ip`, if any (E23: finished pods
    /// never match, so a reused IP does not inherit their labels).
    pub fn pod_by_ip(&self, ip: IpAddr) -> Option<&Pod> {
        self.pods()
            .find(|p| p.is_endpoint() && !p.host_network && p.ips.contains(&ip))
    }

    // --- pods by owner ---

    /// Adds or replaces a pod on behalf of `owner`.
    pub fn apply_pod_from(&mut self, owner: PodOwner, pod: Pod) {
        self.revision += 1;
        match self.pods.get_mut(&pod.key()) {
            Some(held) => {
                held.pod = pod;
                if let Err(at) = held.owners.binary_search(&owner) {
                    held.owners.insert(at, owner);
                }
            }
            None => {
                self.pods.insert(
                    pod.key(),
                    Held {
                        pod,
                        owners: vec![owner],
                    },
                );
            }
        }
    }

    /// `owner` no longer holds the pod (deleted, or no longer selected); it leaves the index
    /// when no other owner holds it. Whether `owner` held it.
    pub fn remove_pod_from(&mut self, owner: PodOwner, key: &ObjectRef) -> bool {
        let Some(held) = self.pods.get_mut(key) else {
            return false;
        };
        let Ok(at) = held.owners.binary_search(&owner) else {
            return false;
        };
        held.owners.remove(at);
        if held.owners.is_empty() {
            self.pods.remove(key);
        }
        self.revision += 1;
        true
    }

    /// Replaces what `owner` holds with `pods` (its relist): pods it no longer lists are
    /// released, pods other owners hold stay.
    pub fn reset_pods_from(&mut self, owner: PodOwner, pods: Vec<Pod>) {
        let listed: BTreeSet<ObjectRef> = pods.iter().map(Pod::key).collect();
        self.release_where(owner, |key| !listed.contains(key));
        for pod in pods {
            self.apply_pod_from(owner, pod);
        }
        self.revision += 1;
    }

    /// Releases everything `owner` holds (its watch was stopped), and the addresses it
    /// answered for.
    pub fn release_pods_of(&mut self, owner: PodOwner) {
        self.release_where(owner, |_| true);
        self.answered_addresses.retain(|_, owners| {
            owners.remove(&owner);
            !owners.is_empty()
        });
        self.revision += 1;
    }

    fn release_where(&mut self, owner: PodOwner, release: impl Fn(&ObjectRef) -> bool) {
        self.pods.retain(|key, held| {
            if release(key)
                && let Ok(at) = held.owners.binary_search(&owner)
            {
                held.owners.remove(at);
            }
            !held.owners.is_empty()
        });
    }

    /// The watches (and lookups) holding the pod `key`; empty when it is not held.
    pub fn owners_of(&self, key: &ObjectRef) -> &[PodOwner] {
        self.pods.get(key).map_or(&[], |held| &held.owners)
    }

    /// `owner` no longer answers for `ip`.
    pub fn forget_address(&mut self, owner: PodOwner, ip: IpAddr) {
        if let Some(owners) = self.answered_addresses.get_mut(&ip) {
            owners.remove(&owner);
            if owners.is_empty() {
                self.answered_addresses.remove(&ip);
            }
            self.revision += 1;
        }
    }

    /// How many pods `owner` holds.
    pub fn pods_of(&self, owner: PodOwner) -> usize {
        self.pods
            .values()
            .filter(|held| held.owners.binary_search(&owner).is_ok())
            .count()
    }

    // --- coverage ---

    pub fn coverage(&self) -> PodCoverage {
        self.coverage
    }

    pub fn set_coverage(&mut self, coverage: PodCoverage) {
        self.revision += 1;
        self.coverage = coverage;
    }

    /// `owner` answered for `ip`: whichever pod holds it is in the index (or none does).
    pub fn mark_address_answered(&mut self, owner: PodOwner, ip: IpAddr) {
        self.revision += 1;
        self.answered_addresses.entry(ip).or_default().insert(owner);
    }

    /// The addresses answered for by a watch or lookup, in a partial index (`None` when the
    /// index is complete: then every address is known).
    pub fn answered_addresses(&self) -> Option<BTreeSet<IpAddr>> {
        match self.coverage {
            PodCoverage::Complete => None,
            PodCoverage::Partial => Some(self.answered_addresses.keys().copied().collect()),
        }
    }

    /// Whether the index knows who holds `ip`: every pod is held, or a held pod or node has
    /// it, or a watch or lookup answered for it. An unknown address may be a pod the index
    /// does not hold, so it must not be judged as an external address.
    pub fn address_known(&self, ip: IpAddr) -> bool {
        self.coverage == PodCoverage::Complete
            || never_a_pod(ip)
            || self.answered_addresses.contains_key(&ip)
            || self.node_by_ip(ip).is_some()
            || self.pods().any(|p| p.is_endpoint() && p.ips.contains(&ip))
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

    /// Every policy that could not be loaded, with why.
    pub fn unloadable_policies(&self) -> impl Iterator<Item = (&ObjectRef, &String)> {
        self.unloadable_policies.iter()
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

    /// A tiered policy by `Kind/name`.
    pub fn tiered_policy(&self, key: &str) -> Option<&TieredPolicy> {
        self.tiered.get(key)
    }

    /// The cluster-scoped tiered policies, by `Kind/name`.
    pub fn tiered_policies(&self) -> impl Iterator<Item = &TieredPolicy> {
        self.tiered.values()
    }

    /// Replaces the tiered policies of one kind (a relist of that kind's watch).
    pub fn reset_tiered(&mut self, kind: TieredKind, policies: Vec<TieredPolicy>) {
        self.revision += 1;
        self.tiered.retain(|_, p| p.kind != kind);
        self.tiered
            .extend(policies.into_iter().map(|p| (p.key(), p)));
    }

    /// The CNI-native policies (see [`super::cni_policy`]).
    pub fn cni_policies(&self) -> impl Iterator<Item = &CniPolicy> {
        self.cni_policies.iter()
    }

    pub fn has_cni_policy(&self, policy: &CniPolicy) -> bool {
        self.cni_policies.contains(policy)
    }

    /// The CNI-native policies that may select a pod of `namespace`: that namespace's and the
    /// cluster-wide ones.
    pub fn cni_policies_for<'a>(
        &'a self,
        namespace: &'a str,
    ) -> impl Iterator<Item = &'a CniPolicy> {
        self.cni_policies
            .iter()
            .filter(move |p| p.namespace.as_deref().is_none_or(|ns| ns == namespace))
    }

    /// Replaces the CNI-native policies of one kind (a relist of that kind's watch).
    pub fn reset_cni_policies(&mut self, kind: CniPolicyKind, policies: Vec<CniPolicy>) {
        self.revision += 1;
        self.cni_policies.retain(|p| p.kind != kind);
        self.cni_policies.extend(policies);
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

/// Loopback and link-local addresses (node-local DNS caches listen on 169.254.20.10) are never
/// a pod's.
pub fn never_a_pod(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_unicast_link_local(),
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
    use crate::testing::{self, PolicyExt};

    fn pod(ns: &str, name: &str) -> Pod {
        testing::pod(ns, name, &[], "", "")
    }

    fn policy(ns: &str, name: &str) -> NetworkPolicy {
        testing::policy(ns, name).deny_ingress()
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

    /// Two watches deliver overlapping pods: each relist and release touches only its own.
    #[test]
    fn pods_stay_while_any_owner_holds_them() {
        let (local, selected) = (PodOwner(1), PodOwner(2));
        let keys =
            |index: &Index| -> Vec<String> { index.pods().map(|p| p.key().to_string()).collect() };
        let mut index = Index::new();
        index.reset_pods_from(local, vec![pod("a", "src"), pod("a", "both")]);
        index.reset_pods_from(selected, vec![pod("b", "dst"), pod("a", "both")]);
        assert_eq!(keys(&index), ["a/both", "a/src", "b/dst"]);
        assert_eq!((index.pods_of(local), index.pods_of(selected)), (2, 2));

        // The local watch relists without a/both: the selector watch still holds it.
        index.reset_pods_from(local, vec![pod("a", "src")]);
        assert_eq!(keys(&index), ["a/both", "a/src", "b/dst"]);
        // A delete seen by one watch only releases that watch's hold.
        index.remove_pod_from(local, &ObjectRef::new("b", "dst"));
        assert_eq!(keys(&index), ["a/both", "a/src", "b/dst"]);
        index.remove_pod_from(selected, &ObjectRef::new("b", "dst"));
        assert_eq!(keys(&index), ["a/both", "a/src"]);
        // A stopped watch releases everything it held.
        index.release_pods_of(selected);
        assert_eq!(keys(&index), ["a/src"]);
    }

    #[test]
    fn a_partial_index_knows_only_the_addresses_it_was_told_about() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let mut held = pod("a", "one");
        held.ips = vec![ip("10.0.0.1")];
        let mut index = Index::new();
        index.apply(held);
        // Complete: no pod holds 10.0.0.9, so it is no pod's.
        assert!(index.address_known(ip("10.0.0.9")));
        index.set_coverage(PodCoverage::Partial);
        let cases = [
            ("10.0.0.1", true),
            ("10.0.0.9", false),
            ("169.254.20.10", true),
            ("fe80::1", true),
        ];
        for (address, known) in cases {
            assert_eq!(index.address_known(ip(address)), known, "{address}");
        }
        // A status.podIP watch answered (no pod has it): known, and forgotten with its watch.
        index.mark_address_answered(PodOwner(7), ip("10.0.0.9"));
        assert!(index.address_known(ip("10.0.0.9")));
        index.release_pods_of(PodOwner(7));
        assert!(!index.address_known(ip("10.0.0.9")));
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
