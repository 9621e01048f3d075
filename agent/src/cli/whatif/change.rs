//! The change `whatif` evaluates: objects applied (created, or replaced by kind, namespace and
//! name, as `kubectl apply` would) and objects deleted by reference, on a copy of the index.

use std::fmt;
use std::str::FromStr;

use anyhow::bail;

use crate::cluster::Index;
use crate::cluster::cni_policy::CniPolicy;
use crate::cluster::index::Apply;
use crate::cluster::load::Loaded;
use crate::cluster::model::{Namespace, NetworkPolicy, Node, ObjectRef, Pod};
use crate::cluster::service::{EndpointSlice, Service};
use crate::cluster::tiered::{TieredKind, TieredPolicy};

/// A kind `--delete` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteKind {
    Namespace,
    Node,
    Pod,
    NetworkPolicy,
    Service,
    EndpointSlice,
    Tiered(TieredKind),
}

impl DeleteKind {
    /// Names as kubectl takes them: kind, plural, short name, any case.
    const NAMES: &'static [(&'static str, DeleteKind)] = &[
        ("namespace", DeleteKind::Namespace),
        ("namespaces", DeleteKind::Namespace),
        ("ns", DeleteKind::Namespace),
        ("node", DeleteKind::Node),
        ("nodes", DeleteKind::Node),
        ("no", DeleteKind::Node),
        ("pod", DeleteKind::Pod),
        ("pods", DeleteKind::Pod),
        ("po", DeleteKind::Pod),
        ("networkpolicy", DeleteKind::NetworkPolicy),
        ("networkpolicies", DeleteKind::NetworkPolicy),
        ("netpol", DeleteKind::NetworkPolicy),
        ("service", DeleteKind::Service),
        ("services", DeleteKind::Service),
        ("svc", DeleteKind::Service),
        ("endpointslice", DeleteKind::EndpointSlice),
        ("endpointslices", DeleteKind::EndpointSlice),
        (
            "clusternetworkpolicy",
            DeleteKind::Tiered(TieredKind::ClusterNetworkPolicy),
        ),
        (
            "clusternetworkpolicies",
            DeleteKind::Tiered(TieredKind::ClusterNetworkPolicy),
        ),
        ("cnp", DeleteKind::Tiered(TieredKind::ClusterNetworkPolicy)),
        (
            "adminnetworkpolicy",
            DeleteKind::Tiered(TieredKind::AdminNetworkPolicy),
        ),
        (
            "adminnetworkpolicies",
            DeleteKind::Tiered(TieredKind::AdminNetworkPolicy),
        ),
        ("anp", DeleteKind::Tiered(TieredKind::AdminNetworkPolicy)),
        (
            "baselineadminnetworkpolicy",
            DeleteKind::Tiered(TieredKind::BaselineAdminNetworkPolicy),
        ),
        (
            "baselineadminnetworkpolicies",
            DeleteKind::Tiered(TieredKind::BaselineAdminNetworkPolicy),
        ),
        (
            "banp",
            DeleteKind::Tiered(TieredKind::BaselineAdminNetworkPolicy),
        ),
    ];

    fn namespaced(self) -> bool {
        matches!(
            self,
            DeleteKind::Pod
                | DeleteKind::NetworkPolicy
                | DeleteKind::Service
                | DeleteKind::EndpointSlice
        )
    }

    fn as_str(self) -> &'static str {
        match self {
            DeleteKind::Namespace => "Namespace",
            DeleteKind::Node => "Node",
            DeleteKind::Pod => "Pod",
            DeleteKind::NetworkPolicy => "NetworkPolicy",
            DeleteKind::Service => "Service",
            DeleteKind::EndpointSlice => "EndpointSlice",
            DeleteKind::Tiered(kind) => kind.as_str(),
        }
    }
}

/// `--delete KIND/NAMESPACE/NAME` (namespaced kinds) or `KIND/NAME` (cluster-scoped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteRef {
    pub kind: DeleteKind,
    pub namespace: Option<String>,
    pub name: String,
}

impl fmt::Display for DeleteRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{ns}/{}", self.kind.as_str(), self.name),
            None => write!(f, "{}/{}", self.kind.as_str(), self.name),
        }
    }
}

impl FromStr for DeleteRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        let kind_name = parts[0].to_ascii_lowercase();
        let kind = DeleteKind::NAMES
            .iter()
            .find(|(name, _)| *name == kind_name)
            .map(|(_, kind)| *kind)
            .ok_or_else(|| {
                format!(
                    "{:?} is not a kind whatif can delete (namespace, node, pod, networkpolicy, \
                     service, endpointslice, clusternetworkpolicy, adminnetworkpolicy, \
                     baselineadminnetworkpolicy)",
                    parts[0]
                )
            })?;
        match (kind.namespaced(), parts.as_slice()) {
            (true, [_, ns, name]) if !ns.is_empty() && !name.is_empty() => Ok(Self {
                kind,
                namespace: Some(ns.to_string()),
                name: name.to_string(),
            }),
            (false, [_, name]) if !name.is_empty() => Ok(Self {
                kind,
                namespace: None,
                name: name.to_string(),
            }),
            (true, _) => Err(format!("expected {}/NAMESPACE/NAME, got {s:?}", kind_name)),
            (false, _) => Err(format!("expected {kind_name}/NAME, got {s:?}")),
        }
    }
}

/// What applying and deleting did, for the summary line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub created: usize,
    pub replaced: usize,
    /// Objects deleted, those named and those a deleted namespace held.
    pub deleted: usize,
}

/// The index after the change: `applied`'s objects created or replaced in a copy of `before`,
/// then `deletes` removed. A deleted object that does not exist is an error naming it, as
/// `kubectl delete` says NotFound: a typo must not read as "nothing flips".
pub fn after_change(
    before: &Index,
    applied: &Loaded,
    deletes: &[DeleteRef],
) -> anyhow::Result<(Index, Applied)> {
    let mut after = before.clone();
    let mut summary = Applied::default();
    let mut count = |existed: bool| {
        if existed {
            summary.replaced += 1
        } else {
            summary.created += 1
        }
    };
    let new = &applied.index;
    for namespace in new.namespaces() {
        count(after.namespace(&namespace.name).is_some());
        after.apply(namespace.clone());
    }
    for node in new.nodes() {
        count(after.node(&node.name).is_some());
        after.apply(node.clone());
    }
    for pod in new.pods() {
        let existing = after.pod(&pod.key());
        count(existing.is_some());
        after.apply(keep_status(pod.clone(), existing));
    }
    for policy in new.policies() {
        count(after.policy(&policy.key()).is_some());
        after.apply(policy.clone());
    }
    for (key, reason) in new.unloadable_policies() {
        count(after.policy(key).is_some());
        Apply::<NetworkPolicy>::delete(&mut after, key);
        after.mark_unloadable_policy(key.clone(), reason.clone());
    }
    for policy in new.tiered_policies() {
        count(after.tiered_policy(&policy.key()).is_some());
        after.apply(policy.clone());
    }
    for service in new.services() {
        count(after.service(&service.key()).is_some());
        after.apply(service.clone());
    }
    for slice in new.endpoint_slices() {
        count(after.endpoint_slices().any(|s| s.key() == slice.key()));
        after.apply(slice.clone());
    }
    for policy in new.cni_policies() {
        count(after.has_cni_policy(policy));
        after.apply(policy.clone());
    }
    for delete in deletes {
        summary.deleted += delete_one(&mut after, delete)?;
    }
    Ok((after, summary))
}

/// `kubectl apply` of a pod manifest leaves its status alone: a manifest without one (no IP)
/// keeps the running pod's IPs, phase, readiness and node.
fn keep_status(mut pod: Pod, existing: Option<&Pod>) -> Pod {
    if let (true, Some(existing)) = (pod.ips.is_empty(), existing) {
        pod.ips = existing.ips.clone();
        pod.phase = existing.phase;
        pod.ready = existing.ready;
        pod.restarts = existing.restarts;
        if pod.node_name.is_none() {
            pod.node_name = existing.node_name.clone();
        }
    }
    pod
}

/// Deletes one object (a namespace with everything in it); returns how many went.
fn delete_one(index: &mut Index, delete: &DeleteRef) -> anyhow::Result<usize> {
    let key = || {
        ObjectRef::new(
            delete.namespace.as_deref().unwrap_or_default(),
            &*delete.name,
        )
    };
    let found = match delete.kind {
        DeleteKind::Namespace => {
            if index.namespace(&delete.name).is_none() {
                not_found(delete)?;
            }
            return Ok(1 + delete_namespace(index, &delete.name));
        }
        DeleteKind::Node => Apply::<Node>::delete(index, &delete.name.to_string()),
        DeleteKind::Pod => Apply::<Pod>::delete(index, &key()),
        // An unloadable policy counts: it is in the input, and deleting it is a change.
        DeleteKind::NetworkPolicy => Apply::<NetworkPolicy>::delete(index, &key()),
        DeleteKind::Service => Apply::<Service>::delete(index, &key()),
        DeleteKind::EndpointSlice => Apply::<EndpointSlice>::delete(index, &key()),
        DeleteKind::Tiered(kind) => {
            Apply::<TieredPolicy>::delete(index, &TieredPolicy::key_of(kind, &delete.name))
        }
    };
    if !found {
        not_found(delete)?;
    }
    Ok(1)
}

fn not_found(delete: &DeleteRef) -> anyhow::Result<()> {
    bail!("--delete {delete}: no such object in the input (check the kind, namespace and name)")
}

/// Removes a namespace's pods, policies, Services, EndpointSlices and CNI-native policies, as
/// the API server's namespace deletion does; returns how many.
fn delete_namespace(index: &mut Index, namespace: &str) -> usize {
    Apply::<Namespace>::delete(index, &namespace.to_string());
    let pods: Vec<ObjectRef> = index.pods_in(namespace).map(Pod::key).collect();
    let policies: Vec<ObjectRef> = index
        .policies_in(namespace)
        .map(NetworkPolicy::key)
        .chain(
            index
                .unloadable_policies_in(namespace)
                .map(|(k, _)| k.clone()),
        )
        .collect();
    let services: Vec<ObjectRef> = index
        .services()
        .filter(|s| *s.namespace == *namespace)
        .map(Service::key)
        .collect();
    let slices: Vec<ObjectRef> = index
        .endpoint_slices()
        .filter(|s| *s.namespace == *namespace)
        .map(EndpointSlice::key)
        .collect();
    let cni: Vec<CniPolicy> = index
        .cni_policies()
        .filter(|p| p.namespace.as_deref() == Some(namespace))
        .cloned()
        .collect();
    let count = pods.len() + policies.len() + services.len() + slices.len() + cni.len();
    for key in &pods {
        Apply::<Pod>::delete(index, key);
    }
    for key in &policies {
        Apply::<NetworkPolicy>::delete(index, key);
    }
    for key in &services {
        Apply::<Service>::delete(index, key);
    }
    for key in &slices {
        Apply::<EndpointSlice>::delete(index, key);
    }
    for policy in &cni {
        Apply::<CniPolicy>::delete(index, policy);
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::PolicyExt;

    /// An applied file with nothing but a policy that cannot be loaded replaces the loaded
    /// one of that name (its namespace is in no other object of the file).
    #[test]
    fn an_unloadable_policy_alone_in_the_applied_file_replaces_the_loaded_one() {
        let key = ObjectRef::new("shop", "deny-all");
        let mut before = Index::default();
        before.apply(crate::testing::policy("shop", "deny-all").deny_ingress());
        assert!(before.policy(&key).is_some());
        let mut applied = Loaded::default();
        applied
            .index
            .mark_unloadable_policy(key.clone(), "spec: invalid".to_string());

        let (after, summary) = after_change(&before, &applied, &[]).expect("applied");
        assert!(after.policy(&key).is_none());
        assert_eq!(
            after.unloadable_policies_in("shop").collect::<Vec<_>>(),
            [(&key, &"spec: invalid".to_string())]
        );
        assert_eq!(summary.replaced, 1);
    }

    #[test]
    fn delete_ref_table() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            (
                "networkpolicy/shop/deny-all",
                Ok("NetworkPolicy/shop/deny-all"),
            ),
            ("netpol/shop/deny-all", Ok("NetworkPolicy/shop/deny-all")),
            ("NetworkPolicy/shop/x", Ok("NetworkPolicy/shop/x")),
            ("pod/shop/api", Ok("Pod/shop/api")),
            ("svc/shop/cart", Ok("Service/shop/cart")),
            ("ns/shop", Ok("Namespace/shop")),
            ("cnp/no-web", Ok("ClusterNetworkPolicy/no-web")),
            ("anp/a", Ok("AdminNetworkPolicy/a")),
            ("banp/default", Ok("BaselineAdminNetworkPolicy/default")),
            ("pod/api", Err("expected pod/NAMESPACE/NAME")),
            ("ns/shop/x", Err("expected ns/NAME")),
            (
                "networkpolicy/shop/",
                Err("expected networkpolicy/NAMESPACE/NAME"),
            ),
            ("deployment/shop/api", Err("not a kind whatif can delete")),
        ];
        for (input, want) in cases {
            let got = input.parse::<DeleteRef>().map(|r| r.to_string());
            match (got, want) {
                (Ok(got), Ok(want)) => assert_eq!(got, *want, "{input}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "{input}: {got}"),
                (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
    }
}
