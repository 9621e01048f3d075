//! The snapshot source: a set of objects (a scenario file's) played into a [`ClusterView`] as
//! the kube watchers would deliver them, through the same [`Feed`]s and sinks.
//!
//! ```text
//! first play:  per kind  Init ─ InitApply(each object) ─ InitDone  ──> readiness: every kind synced
//! next plays:  diff against the last set, by kind and namespace/name:
//!              new or changed ──> Apply     gone ──> Delete     same ──> nothing
//! ```
//!
//! So a label edited in the file reaches the index as a pod `Apply` (a `PodLabels` entry in
//! the change log), a policy added as a `PolicyCreated`, and the scheduler re-probes exactly
//! the pairs it would re-probe in a cluster. Objects of kinds the agent does not watch are
//! counted and ignored; an object that does not deserialize is a problem naming it, and is left
//! out as a watch would never deliver it (its earlier version, if any, is deleted).

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use k8s_openapi::api::core::v1 as corev1;
use k8s_openapi::api::networking::v1 as netv1;
use kube::core::DeserializeGuard;
use kube::runtime::watcher::Event;
use parking_lot::RwLock;
use probe_spec::{ClusterProbeSpec, ProbeRequest, ProbeSpec};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::feed::{CoreObject, CoreSink, Feed, Sink, StoreKey, Strip};
use super::optional::{CniPolicySink, OptionalKind, TieredSink};
use super::store::SpecStore;
use super::{ClusterView, WatchedKind};
use crate::cluster::cni_policy::{CniPolicy, CniPolicyKind};
use crate::cluster::convert::DEFAULT_NAMESPACE;
use crate::cluster::tiered::{TieredKind, TieredPolicy};
use kube::api::DynamicObject;

/// An object's identity across plays: kind, namespace (namespaced kinds), name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ObjectKey {
    kind: WatchedKind,
    /// The API kind within an optional slot (tiers, CNI-native policies).
    optional: Option<OptionalKind>,
    namespace: Option<String>,
    name: String,
}

/// What one [`SnapshotSource::play`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Played {
    /// Objects new or changed since the last play (every object on the first).
    pub applied: Vec<String>,
    /// Objects gone since the last play.
    pub deleted: Vec<String>,
    /// Objects of kinds the agent does not watch (Services, Deployments, ...).
    pub ignored: usize,
    /// Objects that could not be read, each naming the object and why.
    pub problems: Vec<String>,
}

impl Played {
    /// Whether the play changed anything the view holds.
    pub fn changed(&self) -> bool {
        !self.applied.is_empty() || !self.deleted.is_empty()
    }
}

/// Plays object sets into one [`ClusterView`]; see the module docs.
#[derive(Default)]
pub struct SnapshotSource {
    feeds: Feeds,
    /// The objects of the last play, as played.
    current: BTreeMap<ObjectKey, Value>,
    played: bool,
}

impl fmt::Debug for SnapshotSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotSource")
            .field("objects", &self.current.len())
            .field("played", &self.played)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Feeds {
    pods: Feed<<corev1::Pod as CoreObject>::Model>,
    namespaces: Feed<<corev1::Namespace as CoreObject>::Model>,
    nodes: Feed<<corev1::Node as CoreObject>::Model>,
    policies: Feed<<netv1::NetworkPolicy as CoreObject>::Model>,
    specs: Feed<(crate::cluster::model::ObjectRef, ProbeSpec)>,
    cluster_specs: Feed<(String, ClusterProbeSpec)>,
    requests: Feed<(crate::cluster::model::ObjectRef, ProbeRequest)>,
    tiered: BTreeMap<TieredKind, Feed<TieredPolicy>>,
    services: Feed<crate::cluster::service::Service>,
    endpoint_slices: Feed<crate::cluster::service::EndpointSlice>,
    cni: BTreeMap<CniPolicyKind, Feed<CniPolicy>>,
}

/// The watched kind of an object, from its `apiVersion` and `kind`.
fn watched_kind(object: &Value) -> Option<WatchedKind> {
    let api_version = object.get("apiVersion").and_then(Value::as_str)?;
    let kind = object.get("kind").and_then(Value::as_str)?;
    let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
    Some(match (group, kind) {
        ("", "Pod") => WatchedKind::Pods,
        ("", "Namespace") => WatchedKind::Namespaces,
        ("", "Node") => WatchedKind::Nodes,
        ("networking.k8s.io", "NetworkPolicy") => WatchedKind::NetworkPolicies,
        ("netreach.dev", "ProbeSpec") => WatchedKind::ProbeSpecs,
        ("netreach.dev", "ClusterProbeSpec") => WatchedKind::ClusterProbeSpecs,
        ("netreach.dev", "ProbeRequest") => WatchedKind::ProbeRequests,
        ("", "Service") => WatchedKind::Services,
        ("discovery.k8s.io", "EndpointSlice") => WatchedKind::EndpointSlices,
        _ => match optional_kind(object)? {
            OptionalKind::Tiered(_) => WatchedKind::ClusterPolicies,
            OptionalKind::Cni(_) => WatchedKind::CniPolicies,
        },
    })
}

/// The tier or CNI-native policy kind of an object, from its `apiVersion` and `kind`.
fn optional_kind(object: &Value) -> Option<OptionalKind> {
    let api_version = object.get("apiVersion").and_then(Value::as_str)?;
    let kind = object.get("kind").and_then(Value::as_str)?;
    TieredKind::of(api_version, kind)
        .map(OptionalKind::Tiered)
        .or_else(|| CniPolicyKind::of(api_version, kind).map(OptionalKind::Cni))
}

fn is_namespaced(kind: WatchedKind, optional: Option<OptionalKind>) -> bool {
    match optional {
        Some(OptionalKind::Cni(kind)) => kind.namespaced(),
        Some(OptionalKind::Tiered(_)) => false,
        None => !matches!(
            kind,
            WatchedKind::Namespaces | WatchedKind::Nodes | WatchedKind::ClusterProbeSpecs
        ),
    }
}

fn object_key(kind: WatchedKind, object: &Value) -> Option<ObjectKey> {
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())?;
    let optional = optional_kind(object);
    let namespace = is_namespaced(kind, optional).then(|| {
        object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .unwrap_or(DEFAULT_NAMESPACE)
            .to_string()
    });
    Some(ObjectKey {
        kind,
        optional,
        namespace,
        name: name.to_string(),
    })
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            WatchedKind::Pods => "Pod",
            WatchedKind::Namespaces => "Namespace",
            WatchedKind::Nodes => "Node",
            WatchedKind::NetworkPolicies => "NetworkPolicy",
            WatchedKind::ProbeSpecs => "ProbeSpec",
            WatchedKind::ClusterProbeSpecs => "ClusterProbeSpec",
            WatchedKind::ProbeRequests => "ProbeRequest",
            WatchedKind::Services => "Service",
            WatchedKind::EndpointSlices => "EndpointSlice",
            WatchedKind::ClusterPolicies | WatchedKind::CniPolicies => match self.optional {
                Some(OptionalKind::Tiered(kind)) => kind.as_str(),
                Some(OptionalKind::Cni(kind)) => kind.as_str(),
                None => "policy",
            },
        };
        match &self.namespace {
            Some(ns) => write!(f, "{kind} {ns}/{}", self.name),
            None => write!(f, "{kind} {}", self.name),
        }
    }
}

/// One kind's events of a play, typed.
struct KindEvents<K> {
    events: Vec<Event<K>>,
}

impl SnapshotSource {
    pub fn new() -> Self {
        Self::default()
    }

    /// Plays `objects` into `view` at `at`: the first play lists every kind (and makes the view
    /// ready), later plays apply the differences. Two objects with one identity: the last wins.
    pub fn play(&mut self, view: &ClusterView, objects: &[Value], at: SystemTime) -> Played {
        let mut played = Played::default();
        let mut next: BTreeMap<ObjectKey, Value> = BTreeMap::new();
        for (i, object) in objects.iter().enumerate() {
            let Some(kind) = watched_kind(object) else {
                played.ignored += 1;
                continue;
            };
            match object_key(kind, object) {
                Some(key) => {
                    next.insert(key, object.clone());
                }
                None => played
                    .problems
                    .push(format!("object {i} ({kind:?}) has no metadata.name")),
            }
        }
        let first = !self.played;
        let mut changed: Vec<(&ObjectKey, &Value)> = next
            .iter()
            .filter(|(key, value)| first || self.current.get(key) != Some(value))
            .collect();
        changed.sort_by_key(|(key, _)| *key);
        let gone: Vec<ObjectKey> = self
            .current
            .keys()
            .filter(|key| !next.contains_key(key))
            .cloned()
            .collect();
        for kind in WatchedKind::ALL {
            let applies = changed.iter().filter(|(key, _)| key.kind == kind);
            let deletes = gone.iter().filter(|key| key.kind == kind);
            let mut names_applied = Vec::new();
            let mut values = Vec::new();
            for (key, value) in applies {
                names_applied.push(key.to_string());
                values.push((key.to_string(), (*value).clone()));
            }
            let deleted: Vec<(String, Value)> = deletes
                .map(|key| {
                    let value = self.current.get(key).cloned().unwrap_or(Value::Null);
                    (key.to_string(), value)
                })
                .collect();
            if !first && values.is_empty() && deleted.is_empty() {
                continue;
            }
            let problems = self.play_kind(view, kind, first, values, deleted.clone(), at);
            let failed: Vec<&String> = problems.iter().map(|(name, _)| name).collect();
            played.applied.extend(
                names_applied
                    .into_iter()
                    .filter(|name| !failed.contains(&name)),
            );
            played
                .deleted
                .extend(deleted.into_iter().map(|(name, _)| name));
            played.problems.extend(
                problems
                    .into_iter()
                    .map(|(name, problem)| format!("{name}: {problem}")),
            );
            if first {
                view.readiness.mark_synced(kind);
            }
        }
        self.current = next;
        self.played = true;
        view.notify();
        played
    }

    /// Plays one kind's applies and deletes; returns the objects that did not deserialize.
    fn play_kind(
        &mut self,
        view: &ClusterView,
        kind: WatchedKind,
        first: bool,
        applies: Vec<(String, Value)>,
        deletes: Vec<(String, Value)>,
        at: SystemTime,
    ) -> Vec<(String, String)> {
        let feeds = &mut self.feeds;
        match kind {
            WatchedKind::Pods => {
                play_core::<corev1::Pod>(&mut feeds.pods, view, kind, first, (applies, deletes), at)
            }
            WatchedKind::Namespaces => play_core::<corev1::Namespace>(
                &mut feeds.namespaces,
                view,
                kind,
                first,
                (applies, deletes),
                at,
            ),
            WatchedKind::Nodes => play_core::<corev1::Node>(
                &mut feeds.nodes,
                view,
                kind,
                first,
                (applies, deletes),
                at,
            ),
            WatchedKind::NetworkPolicies => play_core::<netv1::NetworkPolicy>(
                &mut feeds.policies,
                view,
                kind,
                first,
                (applies, deletes),
                at,
            ),
            WatchedKind::ProbeSpecs => play_custom(
                &mut feeds.specs,
                &view.specs,
                view,
                kind,
                first,
                (applies, deletes),
                at,
            ),
            WatchedKind::ClusterProbeSpecs => play_custom(
                &mut feeds.cluster_specs,
                &view.cluster_specs,
                view,
                kind,
                first,
                (applies, deletes),
                at,
            ),
            WatchedKind::ProbeRequests => play_custom(
                &mut feeds.requests,
                &view.requests,
                view,
                kind,
                first,
                (applies, deletes),
                at,
            ),
            WatchedKind::ClusterPolicies | WatchedKind::CniPolicies => {
                play_optional(feeds, view, kind, first, (applies, deletes), at)
            }
            WatchedKind::Services => play_core::<corev1::Service>(
                &mut feeds.services,
                view,
                kind,
                first,
                (applies, deletes),
                at,
            ),
            WatchedKind::EndpointSlices => {
                play_core::<k8s_openapi::api::discovery::v1::EndpointSlice>(
                    &mut feeds.endpoint_slices,
                    view,
                    kind,
                    first,
                    (applies, deletes),
                    at,
                )
            }
        }
    }
}

/// Applies and deletes of one kind, each a named object value.
type Changes = (Vec<(String, Value)>, Vec<(String, Value)>);

/// Types one kind's changes into watch events: a list on the first play, applies and deletes
/// after. Objects that do not deserialize are returned as problems and left out.
fn typed_events<K>(
    first: bool,
    (applies, deletes): Changes,
) -> (KindEvents<K>, Vec<(String, String)>)
where
    K: DeserializeOwned + Strip,
{
    let mut problems = Vec::new();
    let mut typed = |name: &String, value: Value| match serde_json::from_value::<K>(value) {
        Ok(mut object) => {
            object.strip();
            Some(object)
        }
        Err(error) => {
            problems.push((name.clone(), error.to_string()));
            None
        }
    };
    let mut events = Vec::new();
    if first {
        events.push(Event::Init);
        for (name, value) in applies {
            events.extend(typed(&name, value).map(Event::InitApply));
        }
        events.push(Event::InitDone);
    } else {
        for (name, value) in deletes {
            events.extend(typed(&name, value).map(Event::Delete));
        }
        for (name, value) in applies {
            events.extend(typed(&name, value).map(Event::Apply));
        }
    }
    (KindEvents { events }, problems)
}

fn play_core<K>(
    feed: &mut Feed<K::Model>,
    view: &ClusterView,
    kind: WatchedKind,
    first: bool,
    changes: Changes,
    at: SystemTime,
) -> Vec<(String, String)>
where
    K: CoreObject + DeserializeOwned + Strip,
    for<'a> CoreSink<'a>: Sink<K, Item = K::Model>,
{
    let (KindEvents { events }, problems) = typed_events::<K>(first, changes);
    view.with_core_sink(|sink| {
        for event in events {
            let handled = feed.handle(sink, event, at);
            view.stats.record(kind, handled);
        }
    });
    problems
}

fn play_custom<K, Key>(
    feed: &mut Feed<(Key, K)>,
    store: &RwLock<SpecStore<K, Key>>,
    view: &ClusterView,
    kind: WatchedKind,
    first: bool,
    changes: Changes,
    at: SystemTime,
) -> Vec<(String, String)>
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + PartialEq,
    Key: StoreKey,
    DeserializeGuard<K>: Strip,
{
    // The guard reads a malformed object as an error the feed skips; say which and why.
    let problems: Vec<(String, String)> = changes
        .0
        .iter()
        .filter_map(|(name, value)| {
            let error = serde_json::from_value::<K>(value.clone()).err()?;
            Some((name.clone(), error.to_string()))
        })
        .collect();
    let (KindEvents { events }, _) = typed_events::<DeserializeGuard<K>>(first, changes);
    let mut store = store.write();
    for event in events {
        let handled = feed.handle(&mut *store, event, at);
        view.stats.record(kind, handled);
    }
    problems
}

/// The tiers or CNI-native policies of a play, each API kind through its own feed and sink
/// (on the first play every kind lists, empty or not, as its watch would).
fn play_optional(
    feeds: &mut Feeds,
    view: &ClusterView,
    slot: WatchedKind,
    first: bool,
    (applies, deletes): Changes,
    at: SystemTime,
) -> Vec<(String, String)> {
    let of_kind = |changes: &[(String, Value)], kind: OptionalKind| -> Vec<(String, Value)> {
        changes
            .iter()
            .filter(|(_, value)| optional_kind(value) == Some(kind))
            .cloned()
            .collect()
    };
    let mut problems = Vec::new();
    for kind in OptionalKind::of_slot(slot) {
        let changes = (of_kind(&applies, kind), of_kind(&deletes, kind));
        if !first && changes.0.is_empty() && changes.1.is_empty() {
            continue;
        }
        let (KindEvents { events }, mut failed) = typed_events::<DynamicObject>(first, changes);
        problems.append(&mut failed);
        view.with_index_and_changes(|index, changes| {
            for event in events {
                let handled = match kind {
                    OptionalKind::Tiered(tiered) => {
                        let api_version = tiered.served_as()[0].api_version();
                        let mut sink = TieredSink {
                            index: &mut *index,
                            changes: &mut *changes,
                            kind: tiered,
                            api_version: &api_version,
                        };
                        feeds
                            .tiered
                            .entry(tiered)
                            .or_default()
                            .handle(&mut sink, event, at)
                    }
                    OptionalKind::Cni(cni) => {
                        let mut sink = CniPolicySink {
                            index: &mut *index,
                            changes: &mut *changes,
                            kind: cni,
                        };
                        feeds
                            .cni
                            .entry(cni)
                            .or_default()
                            .handle(&mut sink, event, at)
                    }
                };
                view.stats.record(slot, handled);
            }
        });
    }
    problems
}

#[cfg(test)]
mod tests;
