//! The pure half of the watches: `watcher::Event`s -> apply / delete / reset on a store.
//!
//! A [`Feed`] turns one kind's event stream into store operations:
//!
//! ```text
//! Init ─ InitApply* ─ InitDone   ──> one `reset` with every listed object (a relist: objects
//!                                    deleted while the watch was down disappear)
//! Apply(obj)                     ──> convert ─┬─> `apply`
//!                                             └─> invalid: `remove` the stale version, warn
//! Delete(obj)                    ──> `remove`
//! ```
//!
//! A [`Sink`] is where a kind lands: [`CoreSink`] converts core objects at the edge (the
//! `TryFrom` conversions of [`crate::cluster::convert`]) into the [`Index`] and records label and
//! policy changes in the [`ChangeLog`]; a [`SpecStore`] keeps the netreach CRs, read through
//! `DeserializeGuard` so one malformed object is skipped instead of failing the whole list.
//! Nothing here does I/O or locks; the driver in [`super`] holds the locks around one call.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::SystemTime;

use k8s_openapi::api::core::v1 as corev1;
use k8s_openapi::api::discovery::v1 as discoveryv1;
use k8s_openapi::api::networking::v1 as netv1;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::core::DeserializeGuard;
use kube::core::object::HasStatus;
use kube::runtime::watcher::Event;
use probe_spec::{ClusterProbeSpec, ProbeRequest, ProbeSpec};
use tracing::warn;

use crate::cluster::changes::{ChangeKind, ChangeLog};
use crate::cluster::convert::{
    ConvertError, DEFAULT_NAMESPACE, MESH_ANNOTATIONS, MESH_PROXY_CONTAINERS,
};
use crate::cluster::index::{Apply, Index, PodOwner};
use crate::cluster::model::{Namespace, NetworkPolicy, Node, ObjectRef, Pod};
use crate::cluster::service::{EndpointSlice, Service};

use super::cni::CniAgentMatcher;
use super::store::SpecStore;

/// The result of converting one object for a sink.
#[derive(Debug)]
pub enum Converted<I, Key> {
    Item(I),
    /// The object failed conversion (already logged); its key, when it has one, so a stale
    /// valid version can be removed.
    Invalid(Option<Key>),
}

/// Where the objects of one watched kind `K` land.
pub trait Sink<K> {
    type Item;
    type Key;
    /// Converts at the edge; failures are logged with kind and namespace/name.
    fn convert(&self, obj: K) -> Converted<Self::Item, Self::Key>;
    /// The key of an object being deleted (from its metadata; no conversion needed).
    fn key_of(obj: &K) -> Option<Self::Key>;
    /// Returns whether the store changed.
    fn apply(&mut self, item: Self::Item, at: SystemTime) -> bool;
    fn remove(&mut self, key: &Self::Key, at: SystemTime);
    /// Replaces every object of the kind. `first` is the initial sync: nothing it lists is a
    /// "change" worth recording.
    fn reset(&mut self, items: Vec<Self::Item>, first: bool, at: SystemTime);
}

/// What one event did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handled {
    /// `Init`: a (re)list started.
    ListStarted,
    /// `InitApply`: an object was buffered for the coming reset.
    Buffered,
    /// `InitDone`: the store was reset; `first` for the initial sync.
    Synced {
        first: bool,
    },
    Applied,
    /// An `Apply` of an object identical to the stored one.
    Unchanged,
    Removed,
    /// The object failed conversion and was skipped (a stale version was removed).
    Skipped,
}

/// Maps one kind's watch events to [`Sink`] operations; `I` is the sink's item type.
#[derive(Debug)]
pub struct Feed<I> {
    buffer: Option<Vec<I>>,
    synced: bool,
}

impl<I> Default for Feed<I> {
    fn default() -> Self {
        Self {
            buffer: None,
            synced: false,
        }
    }
}

impl<I> Feed<I> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the initial list has been applied.
    pub fn synced(&self) -> bool {
        self.synced
    }

    pub fn handle<K, S>(&mut self, sink: &mut S, event: Event<K>, at: SystemTime) -> Handled
    where
        S: Sink<K, Item = I>,
    {
        match event {
            Event::Init => {
                self.buffer = Some(Vec::new());
                Handled::ListStarted
            }
            Event::InitApply(obj) => match sink.convert(obj) {
                Converted::Item(item) => {
                    self.buffer.get_or_insert_with(Vec::new).push(item);
                    Handled::Buffered
                }
                // Left out of the reset, so a stale version disappears with it.
                Converted::Invalid(_) => Handled::Skipped,
            },
            Event::InitDone => {
                let items = self.buffer.take().unwrap_or_default();
                let first = !self.synced;
                sink.reset(items, first, at);
                self.synced = true;
                Handled::Synced { first }
            }
            Event::Apply(obj) => match sink.convert(obj) {
                Converted::Item(item) => {
                    if sink.apply(item, at) {
                        Handled::Applied
                    } else {
                        Handled::Unchanged
                    }
                }
                Converted::Invalid(key) => {
                    if let Some(key) = key {
                        sink.remove(&key, at);
                    }
                    Handled::Skipped
                }
            },
            Event::Delete(obj) => {
                if let Some(key) = S::key_of(&obj) {
                    sink.remove(&key, at);
                }
                Handled::Removed
            }
        }
    }
}

// === Stripping ===

/// Drops what the agent never reads, right after the watch decodes an object (`.modify()`).
pub trait Strip {
    fn strip(&mut self);
}

pub(super) fn strip_meta(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    meta.annotations = None;
    meta.owner_references = None;
    meta.finalizers = None;
}

impl Strip for corev1::Pod {
    fn strip(&mut self) {
        // Mesh detection reads a few annotations: keep those, drop the rest.
        let annotations = self.metadata.annotations.take().map(|mut all| {
            all.retain(|key, _| MESH_ANNOTATIONS.contains(&key.as_str()));
            all
        });
        strip_meta(&mut self.metadata);
        self.metadata.annotations = annotations.filter(|a| !a.is_empty());
        if let Some(spec) = &mut self.spec {
            spec.volumes = None;
            // Native sidecars (a mesh proxy among the init containers) stay, as a name and
            // a security context.
            spec.init_containers = spec.init_containers.take().map(|inits| {
                inits
                    .into_iter()
                    .filter(|c| MESH_PROXY_CONTAINERS.contains(&c.name.as_str()))
                    .map(|c| corev1::Container {
                        name: c.name,
                        security_context: c.security_context,
                        ..Default::default()
                    })
                    .collect()
            });
            spec.ephemeral_containers = None;
            spec.affinity = None;
            spec.tolerations = None;
            for c in &mut spec.containers {
                c.env = None;
                c.env_from = None;
                c.volume_mounts = None;
                c.command = None;
                c.args = None;
                c.liveness_probe = None;
                c.readiness_probe = None;
                c.startup_probe = None;
                c.resources = None;
            }
        }
        if let Some(status) = &mut self.status {
            status.init_container_statuses = None;
            status.ephemeral_container_statuses = None;
        }
    }
}

impl Strip for corev1::Namespace {
    fn strip(&mut self) {
        strip_meta(&mut self.metadata);
        self.spec = None;
    }
}

impl Strip for corev1::Node {
    fn strip(&mut self) {
        strip_meta(&mut self.metadata);
        self.spec = None;
        if let Some(status) = &mut self.status {
            status.images = None;
            status.volumes_attached = None;
            status.volumes_in_use = None;
            status.node_info = None;
        }
    }
}

impl Strip for netv1::NetworkPolicy {
    fn strip(&mut self) {
        strip_meta(&mut self.metadata);
    }
}

impl Strip for corev1::Service {
    fn strip(&mut self) {
        strip_meta(&mut self.metadata);
        self.status = None;
    }
}

impl Strip for discoveryv1::EndpointSlice {
    fn strip(&mut self) {
        strip_meta(&mut self.metadata);
        for endpoint in &mut self.endpoints {
            endpoint.hints = None;
            endpoint.deprecated_topology = None;
            endpoint.hostname = None;
            endpoint.zone = None;
        }
    }
}

/// The CRs also lose `resourceVersion`, so an object whose only change is its status (the
/// agents' own writes) compares equal in the [`SpecStore`].
fn strip_spec<K: Resource + HasStatus>(guard: &mut DeserializeGuard<K>) {
    let meta = guard.meta_mut();
    strip_meta(meta);
    meta.resource_version = None;
    if let Ok(spec) = &mut guard.0 {
        // Written by the agents (see report::status), never read back from the watch.
        *spec.status_mut() = None;
    }
}

impl Strip for DeserializeGuard<ProbeSpec> {
    fn strip(&mut self) {
        strip_spec(self);
    }
}

impl Strip for DeserializeGuard<ClusterProbeSpec> {
    fn strip(&mut self) {
        strip_spec(self);
    }
}

/// ProbeRequests keep their status: it says whether a request still has to run.
impl Strip for DeserializeGuard<ProbeRequest> {
    fn strip(&mut self) {
        let meta = self.meta_mut();
        strip_meta(meta);
        meta.resource_version = None;
    }
}

// === CoreSink ===

/// A core kind and the validated model it converts into (what its [`Feed`] buffers).
pub trait CoreObject {
    type Model: Send + 'static;
}

impl CoreObject for corev1::Pod {
    type Model = Pod;
}

impl CoreObject for corev1::Namespace {
    type Model = Namespace;
}

impl CoreObject for corev1::Node {
    type Model = Node;
}

impl CoreObject for netv1::NetworkPolicy {
    type Model = PolicyItem;
}

impl CoreObject for corev1::Service {
    type Model = Service;
}

impl CoreObject for discoveryv1::EndpointSlice {
    type Model = EndpointSlice;
}

/// Core objects into the [`Index`], with changes into the [`ChangeLog`].
#[derive(Debug)]
pub struct CoreSink<'a> {
    pub index: &'a mut Index,
    pub changes: &'a mut ChangeLog,
    pub cni: &'a CniAgentMatcher,
    /// The watch pods arrive through ([`PodOwner::ALL`] for the cluster-wide one).
    pub pods: PodOwner,
}

fn warn_skipped(error: &ConvertError) {
    warn!(
        kind = error.kind,
        object = %error.object,
        outcome = error.metric_label(),
        %error,
        "skipping object that failed conversion"
    );
}

/// How a store keys the objects of a kind: [`ObjectRef`] (namespace/name) for a namespaced
/// kind, the name for a cluster-scoped one.
pub trait StoreKey: Ord + Clone + std::fmt::Display + Sized {
    /// The key from an object's metadata; `None` without a name.
    fn of(meta: &ObjectMeta) -> Option<Self>;
}

impl StoreKey for ObjectRef {
    fn of(meta: &ObjectMeta) -> Option<Self> {
        namespaced_key(meta)
    }
}

impl StoreKey for String {
    fn of(meta: &ObjectMeta) -> Option<Self> {
        cluster_key(meta)
    }
}

fn namespaced_key(meta: &ObjectMeta) -> Option<ObjectRef> {
    let name = meta.name.as_deref().filter(|n| !n.is_empty())?;
    let ns = meta
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(DEFAULT_NAMESPACE);
    Some(ObjectRef::new(ns, name))
}

fn cluster_key(meta: &ObjectMeta) -> Option<String> {
    meta.name.clone().filter(|n| !n.is_empty())
}

impl CoreSink<'_> {
    fn namespace_changed(&mut self, old: &Namespace, new: &Namespace, at: SystemTime) {
        if old.labels != new.labels {
            self.changes.push(
                at,
                ChangeKind::NamespaceLabels {
                    namespace: new.name.clone(),
                    before: old.labels.clone(),
                    after: new.labels.clone(),
                },
            );
        }
    }

    fn pod_changed(&mut self, old: &Pod, new: &Pod, at: SystemTime) {
        if old.labels != new.labels {
            self.changes.push(
                at,
                ChangeKind::PodLabels {
                    pod: new.key(),
                    before: old.labels.clone(),
                    after: new.labels.clone(),
                },
            );
        }
        if new.restarts > old.restarts && self.cni.cni_of(new).is_some() {
            self.changes.push(
                at,
                ChangeKind::CniAgentRestarted {
                    pod: new.key(),
                    node: new.node_name.clone(),
                    before: old.restarts,
                    restarts: new.restarts,
                },
            );
        }
    }
}

impl Sink<corev1::Namespace> for CoreSink<'_> {
    type Item = Namespace;
    type Key = String;

    fn convert(&self, obj: corev1::Namespace) -> Converted<Namespace, String> {
        Namespace::try_from(&obj).map_or_else(
            |e| {
                warn_skipped(&e);
                Converted::Invalid(cluster_key(&obj.metadata))
            },
            Converted::Item,
        )
    }

    fn key_of(obj: &corev1::Namespace) -> Option<String> {
        cluster_key(&obj.metadata)
    }

    fn apply(&mut self, ns: Namespace, at: SystemTime) -> bool {
        if let Some(old) = self.index.namespace(&ns.name).cloned() {
            self.namespace_changed(&old, &ns, at);
        }
        self.index.apply(ns);
        true
    }

    fn remove(&mut self, key: &String, _at: SystemTime) {
        Apply::<Namespace>::delete(self.index, key);
    }

    fn reset(&mut self, items: Vec<Namespace>, first: bool, at: SystemTime) {
        if !first {
            let old: BTreeMap<String, Namespace> = self
                .index
                .namespaces()
                .map(|n| (n.name.clone(), n.clone()))
                .collect();
            for ns in &items {
                if let Some(old) = old.get(&ns.name) {
                    self.namespace_changed(old, ns, at);
                }
            }
        }
        self.index.reset(items);
    }
}

impl Sink<corev1::Pod> for CoreSink<'_> {
    type Item = Pod;
    type Key = ObjectRef;

    fn convert(&self, obj: corev1::Pod) -> Converted<Pod, ObjectRef> {
        Pod::try_from(&obj).map_or_else(
            |e| {
                warn_skipped(&e);
                Converted::Invalid(namespaced_key(&obj.metadata))
            },
            Converted::Item,
        )
    }

    fn key_of(obj: &corev1::Pod) -> Option<ObjectRef> {
        namespaced_key(&obj.metadata)
    }

    fn apply(&mut self, pod: Pod, at: SystemTime) -> bool {
        if let Some(old) = self.index.pod(&pod.key()).cloned() {
            self.pod_changed(&old, &pod, at);
        }
        self.index.apply_pod_from(self.pods, pod);
        true
    }

    fn remove(&mut self, key: &ObjectRef, _at: SystemTime) {
        self.index.remove_pod_from(self.pods, key);
    }

    fn reset(&mut self, items: Vec<Pod>, first: bool, at: SystemTime) {
        if !first {
            for pod in &items {
                if let Some(old) = self.index.pod(&pod.key()).cloned() {
                    self.pod_changed(&old, pod, at);
                }
            }
        }
        self.index.reset_pods_from(self.pods, items);
    }
}

impl Sink<corev1::Node> for CoreSink<'_> {
    type Item = Node;
    type Key = String;

    fn convert(&self, obj: corev1::Node) -> Converted<Node, String> {
        Node::try_from(&obj).map_or_else(
            |e| {
                warn_skipped(&e);
                Converted::Invalid(cluster_key(&obj.metadata))
            },
            Converted::Item,
        )
    }

    fn key_of(obj: &corev1::Node) -> Option<String> {
        cluster_key(&obj.metadata)
    }

    fn apply(&mut self, node: Node, _at: SystemTime) -> bool {
        self.index.apply(node);
        true
    }

    fn remove(&mut self, key: &String, _at: SystemTime) {
        Apply::<Node>::delete(self.index, key);
    }

    fn reset(&mut self, items: Vec<Node>, _first: bool, _at: SystemTime) {
        self.index.reset(items);
    }
}

// === Services and EndpointSlices ===

/// A kind kept in the index as it is, keyed by namespace/name: no change-log entries (a
/// Service pair re-reads its Service and slices at every probe).
macro_rules! plain_namespaced_sink {
    ($api:ty, $model:ty) => {
        impl Sink<$api> for CoreSink<'_> {
            type Item = $model;
            type Key = ObjectRef;

            fn convert(&self, obj: $api) -> Converted<$model, ObjectRef> {
                <$model>::try_from(&obj).map_or_else(
                    |e| {
                        warn_skipped(&e);
                        Converted::Invalid(namespaced_key(&obj.metadata))
                    },
                    Converted::Item,
                )
            }

            fn key_of(obj: &$api) -> Option<ObjectRef> {
                namespaced_key(&obj.metadata)
            }

            fn apply(&mut self, item: $model, _at: SystemTime) -> bool {
                self.index.apply(item);
                true
            }

            fn remove(&mut self, key: &ObjectRef, _at: SystemTime) {
                Apply::<$model>::delete(self.index, key);
            }

            fn reset(&mut self, items: Vec<$model>, _first: bool, _at: SystemTime) {
                self.index.reset(items);
            }
        }
    };
}

plain_namespaced_sink!(corev1::Service, Service);
plain_namespaced_sink!(discoveryv1::EndpointSlice, EndpointSlice);

// === NetworkPolicies ===

/// A NetworkPolicy as it enters the index: loaded (possibly in its degraded, fail-closed form)
/// or known to exist but unloadable.
#[derive(Clone, Debug, PartialEq)]
pub enum PolicyItem {
    Loaded(NetworkPolicy),
    Unloadable { key: ObjectRef, reason: String },
}

impl PolicyItem {
    fn key(&self) -> ObjectRef {
        match self {
            PolicyItem::Loaded(p) => p.key(),
            PolicyItem::Unloadable { key, .. } => key.clone(),
        }
    }
}

/// A policy's state in the index: loaded, unloadable (with why), or absent.
#[derive(Clone, Debug, PartialEq)]
enum PolicyState {
    Loaded(Arc<NetworkPolicy>),
    Unloadable(String),
}

impl PolicyState {
    fn policy(&self) -> Option<Arc<NetworkPolicy>> {
        match self {
            PolicyState::Loaded(p) => Some(p.clone()),
            PolicyState::Unloadable(_) => None,
        }
    }
}

impl CoreSink<'_> {
    fn policy_state(&self, key: &ObjectRef) -> Option<PolicyState> {
        if let Some(p) = self.index.policy(key) {
            return Some(PolicyState::Loaded(Arc::new(p.clone())));
        }
        self.index
            .unloadable_policies_in(&key.namespace)
            .find(|(k, _)| *k == key)
            .map(|(_, reason)| PolicyState::Unloadable(reason.clone()))
    }

    fn policy_changed(
        &mut self,
        key: ObjectRef,
        old: Option<PolicyState>,
        new: Option<PolicyState>,
        at: SystemTime,
    ) {
        let kind = match (old, new) {
            (None, None) => return,
            (Some(old), Some(new)) if old == new => return,
            (None, Some(new)) => ChangeKind::PolicyCreated {
                policy: key,
                new: new.policy(),
            },
            (Some(old), None) => ChangeKind::PolicyDeleted {
                policy: key,
                old: old.policy(),
            },
            (Some(old), Some(new)) => ChangeKind::PolicyUpdated {
                policy: key,
                old: old.policy(),
                new: new.policy(),
            },
        };
        self.changes.push(at, kind);
    }
}

impl Sink<netv1::NetworkPolicy> for CoreSink<'_> {
    type Item = PolicyItem;
    type Key = ObjectRef;

    fn convert(&self, obj: netv1::NetworkPolicy) -> Converted<PolicyItem, ObjectRef> {
        match NetworkPolicy::try_from(&obj) {
            Ok(p) => Converted::Item(PolicyItem::Loaded(p)),
            Err(e) => {
                warn_skipped(&e);
                match (e.degraded, namespaced_key(&obj.metadata)) {
                    // Fail closed: invalid peers/ports match nothing.
                    (Some(degraded), _) => Converted::Item(PolicyItem::Loaded(*degraded)),
                    (None, Some(key)) => Converted::Item(PolicyItem::Unloadable {
                        key,
                        reason: join_problems(&e.problems),
                    }),
                    (None, None) => Converted::Invalid(None),
                }
            }
        }
    }

    fn key_of(obj: &netv1::NetworkPolicy) -> Option<ObjectRef> {
        namespaced_key(&obj.metadata)
    }

    fn apply(&mut self, item: PolicyItem, at: SystemTime) -> bool {
        let key = item.key();
        let old = self.policy_state(&key);
        match item {
            PolicyItem::Loaded(p) => {
                let new = PolicyState::Loaded(Arc::new(p.clone()));
                self.policy_changed(key, old, Some(new), at);
                self.index.apply(p);
            }
            PolicyItem::Unloadable { key, reason } => {
                let new = PolicyState::Unloadable(reason.clone());
                self.policy_changed(key.clone(), old, Some(new), at);
                self.index.mark_unloadable_policy(key, reason);
            }
        }
        true
    }

    fn remove(&mut self, key: &ObjectRef, at: SystemTime) {
        let old = self.policy_state(key);
        self.policy_changed(key.clone(), old, None, at);
        Apply::<NetworkPolicy>::delete(self.index, key);
    }

    fn reset(&mut self, items: Vec<PolicyItem>, first: bool, at: SystemTime) {
        if !first {
            // Every key the index knows (unloadable ones are found per namespace).
            let mut namespaces: BTreeSet<String> =
                self.index.namespace_names().into_iter().collect();
            namespaces.extend(items.iter().map(|i| i.key().namespace.to_string()));
            let mut old_keys: BTreeSet<ObjectRef> =
                self.index.policies().map(NetworkPolicy::key).collect();
            for ns in &namespaces {
                old_keys.extend(
                    self.index
                        .unloadable_policies_in(ns)
                        .map(|(k, _)| k.clone()),
                );
            }
            let mut olds: BTreeMap<ObjectRef, PolicyState> = old_keys
                .into_iter()
                .filter_map(|k| self.policy_state(&k).map(|s| (k, s)))
                .collect();
            for item in &items {
                let key = item.key();
                let new = match item {
                    PolicyItem::Loaded(p) => PolicyState::Loaded(Arc::new(p.clone())),
                    PolicyItem::Unloadable { reason, .. } => {
                        PolicyState::Unloadable(reason.clone())
                    }
                };
                let old = olds.remove(&key);
                self.policy_changed(key, old, Some(new), at);
            }
            for (key, old) in olds {
                self.policy_changed(key, Some(old), None, at);
            }
        }
        let mut loaded = Vec::with_capacity(items.len());
        let mut unloadable = Vec::new();
        for item in items {
            match item {
                PolicyItem::Loaded(p) => loaded.push(p),
                PolicyItem::Unloadable { key, reason } => unloadable.push((key, reason)),
            }
        }
        self.index.reset(loaded);
        for (key, reason) in unloadable {
            self.index.mark_unloadable_policy(key, reason);
        }
    }
}

fn join_problems(problems: &[crate::cluster::convert::FieldProblem]) -> String {
    let parts: Vec<String> = problems.iter().map(ToString::to_string).collect();
    parts.join("; ")
}

// === SpecStore ===

/// The netreach CRs, read through `DeserializeGuard`: a malformed object is logged and skipped.
impl<K, Key> Sink<DeserializeGuard<K>> for SpecStore<K, Key>
where
    K: Resource<DynamicType = ()> + PartialEq,
    Key: StoreKey,
{
    type Item = (Key, K);
    type Key = Key;

    fn convert(&self, obj: DeserializeGuard<K>) -> Converted<(Key, K), Key> {
        let key = Key::of(obj.meta());
        match (obj.0, key) {
            (Ok(k), Some(key)) => Converted::Item((key, k)),
            (Ok(_), None) => Converted::Invalid(None),
            (Err(invalid), key) => {
                warn!(
                    kind = %K::kind(&()),
                    object = %key.as_ref().map_or_else(|| "<unnamed>".to_string(), ToString::to_string),
                    error = %invalid.error,
                    "skipping object that failed to deserialize"
                );
                Converted::Invalid(key)
            }
        }
    }

    fn key_of(obj: &DeserializeGuard<K>) -> Option<Key> {
        Key::of(obj.meta())
    }

    fn apply(&mut self, (key, obj): (Key, K), _at: SystemTime) -> bool {
        self.insert(key, obj)
    }

    fn remove(&mut self, key: &Key, _at: SystemTime) {
        SpecStore::remove(self, key);
    }

    fn reset(&mut self, items: Vec<(Key, K)>, _first: bool, _at: SystemTime) {
        self.replace(items);
    }
}
