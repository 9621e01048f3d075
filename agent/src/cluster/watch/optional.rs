//! The kinds watched only where the API serves them: the cluster-scoped policy tiers
//! (`policy.networking.k8s.io`: ClusterNetworkPolicy v1alpha2, AdminNetworkPolicy and
//! BaselineAdminNetworkPolicy v1alpha1) and the CNI-native policies (Cilium, Calico, Antrea).
//!
//! ```text
//! every REDISCOVER (sooner after a failed discovery):
//!   GET /apis/<group>/<version> for each candidate API ──> served set (404: not served)
//!   choose(): per kind, the first of its APIs that is served
//!     newly served ──> start a watch (Api<DynamicObject>) ──> TieredSink / CniPolicySink ──> Index
//!     no longer served, or served elsewhere ──> stop it, forget its objects
//! ```
//!
//! A cluster without these CRDs is normal: nothing is watched and the slot
//! ([`WatchedKind::ClusterPolicies`], [`WatchedKind::CniPolicies`]) turns ready after the first
//! discovery. With them, it turns ready once every served kind has listed, so no prediction
//! is made without the tiers that decide it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;
use tracing::{Instrument, info, info_span, warn};

use crate::cluster::changes::{ChangeKind, ChangeLog, PolicyOp};
use crate::cluster::cni_policy::{CniPolicy, CniPolicyKind};
use crate::cluster::index::{Apply, Index};
use crate::cluster::model::ServedAs;
use crate::cluster::tiered::{TieredKind, TieredPolicy};

use super::feed::{Converted, Feed, Sink, Strip};
use super::{ClusterView, Error, WatchedKind, Watchers, drive};

/// How often the served APIs are looked up again (a CRD installed later is picked up).
pub const REDISCOVER: Duration = Duration::from_secs(300);
/// The first retry after a discovery that failed (doubling up to [`REDISCOVER`]).
const DISCOVERY_RETRY: Duration = Duration::from_secs(2);

/// One optional kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OptionalKind {
    Tiered(TieredKind),
    Cni(CniPolicyKind),
}

impl OptionalKind {
    /// The optional kinds of a watch slot.
    pub fn of_slot(slot: WatchedKind) -> Vec<OptionalKind> {
        match slot {
            WatchedKind::ClusterPolicies => TieredKind::ALL.map(OptionalKind::Tiered).to_vec(),
            WatchedKind::CniPolicies => CniPolicyKind::ALL.map(OptionalKind::Cni).to_vec(),
            _ => Vec::new(),
        }
    }

    /// Its APIs, preferred first.
    pub fn served_as(self) -> &'static [ServedAs] {
        match self {
            OptionalKind::Tiered(kind) => kind.served_as(),
            OptionalKind::Cni(kind) => kind.served_as(),
        }
    }

    /// The object kind in the API.
    pub fn api_kind(self) -> &'static str {
        match self {
            OptionalKind::Tiered(kind) => kind.as_str(),
            OptionalKind::Cni(kind) => kind.api_kind(),
        }
    }
}

impl std::fmt::Display for OptionalKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OptionalKind::Tiered(kind) => f.write_str(kind.as_str()),
            OptionalKind::Cni(kind) => f.write_str(kind.as_str()),
        }
    }
}

/// Per kind, the API to watch: the first of its APIs in `served`. Pure.
pub fn choose(
    kinds: &[OptionalKind],
    served: &BTreeSet<ServedAs>,
) -> BTreeMap<OptionalKind, ServedAs> {
    kinds
        .iter()
        .filter_map(|kind| {
            let api = kind.served_as().iter().find(|api| served.contains(api))?;
            Some((*kind, *api))
        })
        .collect()
}

/// Which of `kinds`' APIs the API server serves: one discovery request per group version; a
/// 404 means the group version is not served.
pub async fn discover(
    client: &Client,
    kinds: &[OptionalKind],
) -> Result<BTreeSet<ServedAs>, kube::Error> {
    let wanted: BTreeSet<ServedAs> = kinds
        .iter()
        .flat_map(|k| k.served_as().iter().copied())
        .collect();
    let group_versions: BTreeSet<String> = wanted.iter().map(ServedAs::api_version).collect();
    let mut served = BTreeSet::new();
    for group_version in group_versions {
        let resources = match client.list_api_group_resources(&group_version).await {
            Ok(list) => list.resources,
            Err(kube::Error::Api(status)) if status.code == 404 => continue,
            Err(error) => return Err(error),
        };
        served.extend(wanted.iter().copied().filter(|api| {
            api.api_version() == group_version && resources.iter().any(|r| r.name == api.plural)
        }));
    }
    Ok(served)
}

/// A running watch of one optional kind.
struct Running {
    api: ServedAs,
    abort: AbortHandle,
    synced: bool,
}

impl Watchers {
    /// Watches the optional kinds of `slot` where they are served (see the module docs).
    /// Returns when one of the watches ends.
    pub(super) async fn optional_watches(self, slot: WatchedKind) -> Error {
        let kinds = OptionalKind::of_slot(slot);
        let mut running: BTreeMap<OptionalKind, Running> = BTreeMap::new();
        let mut tasks: JoinSet<Error> = JoinSet::new();
        let (synced_tx, mut synced_rx) = mpsc::unbounded_channel::<OptionalKind>();
        let mut discovered = false;
        let mut retry = DISCOVERY_RETRY;
        let mut next = Instant::now();
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(next) => {
                    match discover(&self.client, &kinds).await {
                        Ok(served) => {
                            let chosen = choose(&kinds, &served);
                            self.apply_choice(&chosen, &mut running, &mut tasks, &synced_tx);
                            discovered = true;
                            retry = DISCOVERY_RETRY;
                            next = Instant::now() + self.rediscover;
                        }
                        Err(error) => {
                            self.view.stats.get(slot).restarts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            warn!(%error, retry_in = ?retry, "API discovery failed; retrying");
                            next = Instant::now() + retry;
                            retry = (retry * 2).min(self.rediscover);
                        }
                    }
                }
                Some(kind) = synced_rx.recv() => {
                    if let Some(r) = running.get_mut(&kind) {
                        r.synced = true;
                    }
                }
                ended = tasks.join_next(), if !tasks.is_empty() => {
                    match ended {
                        Some(Ok(error)) => return error,
                        Some(Err(error)) if error.is_panic() => return Error::Ended { kind: slot },
                        _ => {}
                    }
                }
            }
            if discovered && running.values().all(|r| r.synced) {
                self.view.readiness.mark_synced(slot);
            }
        }
    }

    /// Starts the watches `chosen` adds, stops those it drops or moves (forgetting their
    /// objects).
    fn apply_choice(
        &self,
        chosen: &BTreeMap<OptionalKind, ServedAs>,
        running: &mut BTreeMap<OptionalKind, Running>,
        tasks: &mut JoinSet<Error>,
        synced: &mpsc::UnboundedSender<OptionalKind>,
    ) {
        let stale: Vec<OptionalKind> = running
            .iter()
            .filter(|(kind, r)| chosen.get(kind) != Some(&r.api))
            .map(|(kind, _)| *kind)
            .collect();
        for kind in stale {
            if let Some(r) = running.remove(&kind) {
                info!(%kind, api = %r.api.api_version(), "no longer served; forgetting its objects");
                r.abort.abort();
                forget(&self.view, kind);
            }
        }
        for (kind, api) in chosen {
            if running.contains_key(kind) {
                continue;
            }
            info!(%kind, api = %api.api_version(), "served; watching");
            let abort = tasks.spawn(self.clone().optional_watch(*kind, *api, synced.clone()));
            running.insert(
                *kind,
                Running {
                    api: *api,
                    abort,
                    synced: false,
                },
            );
        }
    }

    /// One watch of an optional kind through `api`.
    fn optional_watch(
        self,
        kind: OptionalKind,
        api: ServedAs,
        synced: mpsc::UnboundedSender<OptionalKind>,
    ) -> impl std::future::Future<Output = Error> + Send + 'static {
        let slot = match kind {
            OptionalKind::Tiered(_) => WatchedKind::ClusterPolicies,
            OptionalKind::Cni(_) => WatchedKind::CniPolicies,
        };
        let resource = ApiResource {
            group: api.group.to_string(),
            version: api.version.to_string(),
            api_version: api.api_version(),
            kind: kind.api_kind().to_string(),
            plural: api.plural.to_string(),
        };
        let objects: Api<DynamicObject> = Api::all_with(self.client.clone(), &resource);
        let api_version = resource.api_version;
        let on_synced = move || {
            // The supervisor only stops listening when it returns.
            let _ = synced.send(kind);
        };
        let span = info_span!("optional_watch", %kind);
        let view = self.view.clone();
        let config = self.config.clone();
        async move {
            match kind {
                OptionalKind::Tiered(tiered) => {
                    let mut feed: Feed<TieredPolicy> = Feed::new();
                    let handle = move |event, at| {
                        view.with_index_and_changes(|index, changes| {
                            let mut sink = TieredSink {
                                index,
                                changes,
                                kind: tiered,
                                api_version: &api_version,
                            };
                            feed.handle(&mut sink, event, at)
                        })
                    };
                    drive(objects, config, slot, &self.view, handle, on_synced).await
                }
                OptionalKind::Cni(cni) => {
                    let mut feed: Feed<CniPolicy> = Feed::new();
                    let handle = move |event, at| {
                        view.with_index_and_changes(|index, changes| {
                            let mut sink = CniPolicySink {
                                index,
                                changes,
                                kind: cni,
                            };
                            feed.handle(&mut sink, event, at)
                        })
                    };
                    drive(objects, config, slot, &self.view, handle, on_synced).await
                }
            }
        }
        .instrument(span)
    }
}

/// Forgets every object of `kind` (its API is no longer served).
fn forget(view: &ClusterView, kind: OptionalKind) {
    let at = SystemTime::now();
    view.with_index_and_changes(|index, changes| match kind {
        OptionalKind::Tiered(tiered) => {
            TieredSink {
                index,
                changes,
                kind: tiered,
                api_version: "",
            }
            .reset(Vec::new(), false, at);
        }
        OptionalKind::Cni(cni) => CniPolicySink {
            index,
            changes,
            kind: cni,
        }
        .reset(Vec::new(), false, at),
    });
    view.notify();
}

impl Strip for DynamicObject {
    fn strip(&mut self) {
        super::feed::strip_meta(&mut self.metadata);
    }
}

fn cluster_name(obj: &DynamicObject) -> Option<String> {
    obj.metadata.name.clone().filter(|n| !n.is_empty())
}

// === TieredSink ===

/// ClusterNetworkPolicies, AdminNetworkPolicies or BaselineAdminNetworkPolicies (one kind per
/// sink) into the index, changes into the change log. Keyed by name.
#[derive(Debug)]
pub struct TieredSink<'a> {
    pub index: &'a mut Index,
    pub changes: &'a mut ChangeLog,
    pub kind: TieredKind,
    /// The `apiVersion` the objects come from (their type when an event omits it).
    pub api_version: &'a str,
}

impl TieredSink<'_> {
    fn key(&self, name: &str) -> String {
        format!("{}/{name}", self.kind.as_str())
    }

    fn changed(&mut self, key: String, op: PolicyOp, at: SystemTime) {
        self.changes.push(
            at,
            ChangeKind::OtherPolicy {
                policy: key,
                namespace: None,
                op,
            },
        );
    }
}

impl Sink<DynamicObject> for TieredSink<'_> {
    type Item = TieredPolicy;
    type Key = String;

    fn convert(&self, obj: DynamicObject) -> Converted<TieredPolicy, String> {
        let name = cluster_name(&obj);
        let mut value = serde_json::to_value(&obj).unwrap_or(Value::Null);
        if let Some(map) = value.as_object_mut() {
            // Watch events carry the type; a test double may not.
            map.entry("apiVersion")
                .or_insert_with(|| Value::from(self.api_version));
            map.entry("kind")
                .or_insert_with(|| Value::from(self.kind.as_str()));
        }
        match TieredPolicy::try_from(&value) {
            Ok(policy) => {
                for (direction, rules) in [("ingress", &policy.ingress), ("egress", &policy.egress)]
                {
                    for (i, rule) in rules.iter().enumerate() {
                        if let Some(why) = &rule.invalid {
                            warn!(policy = %policy.key(), field = %format!("spec.{direction}[{i}]"), %why, "rule fails closed");
                        }
                    }
                }
                Converted::Item(policy)
            }
            Err(error) => {
                warn!(
                    kind = self.kind.as_str(),
                    object = name.as_deref().unwrap_or("<unnamed>"),
                    field = %error.field,
                    %error,
                    "skipping policy that does not validate"
                );
                Converted::Invalid(name)
            }
        }
    }

    fn key_of(obj: &DynamicObject) -> Option<String> {
        cluster_name(obj)
    }

    fn apply(&mut self, policy: TieredPolicy, at: SystemTime) -> bool {
        let key = policy.key();
        let op = match self.index.tiered_policy(&key) {
            Some(old) if *old == policy => return false,
            Some(_) => PolicyOp::Updated,
            None => PolicyOp::Created,
        };
        self.changed(key, op, at);
        self.index.apply(policy);
        true
    }

    fn remove(&mut self, name: &String, at: SystemTime) {
        let key = self.key(name);
        if self.index.tiered_policy(&key).is_some() {
            self.changed(key.clone(), PolicyOp::Deleted, at);
            Apply::<TieredPolicy>::delete(self.index, &key);
        }
    }

    fn reset(&mut self, items: Vec<TieredPolicy>, first: bool, at: SystemTime) {
        if !first {
            let mut old: BTreeMap<String, TieredPolicy> = self
                .index
                .tiered_policies()
                .filter(|p| p.kind == self.kind)
                .map(|p| (p.key(), p.clone()))
                .collect();
            for policy in &items {
                match old.remove(&policy.key()) {
                    Some(previous) if previous == *policy => {}
                    Some(_) => self.changed(policy.key(), PolicyOp::Updated, at),
                    None => self.changed(policy.key(), PolicyOp::Created, at),
                }
            }
            for key in old.into_keys() {
                self.changed(key, PolicyOp::Deleted, at);
            }
        }
        self.index.reset_tiered(self.kind, items);
    }
}

// === CniPolicySink ===

/// One CNI-native policy kind into the index (names only), creations and deletions into the
/// change log. Keyed by namespace (for a namespaced kind) and name.
#[derive(Debug)]
pub struct CniPolicySink<'a> {
    pub index: &'a mut Index,
    pub changes: &'a mut ChangeLog,
    pub kind: CniPolicyKind,
}

impl CniPolicySink<'_> {
    fn policy(&self, (namespace, name): &(Option<String>, String)) -> CniPolicy {
        CniPolicy {
            kind: self.kind,
            namespace: namespace.as_deref().map(Into::into),
            name: name.as_str().into(),
        }
    }

    fn changed(&mut self, policy: &CniPolicy, op: PolicyOp, at: SystemTime) {
        self.changes.push(
            at,
            ChangeKind::OtherPolicy {
                policy: policy.to_string(),
                namespace: policy.namespace.as_deref().map(str::to_string),
                op,
            },
        );
    }
}

fn namespaced_name(obj: &DynamicObject, namespaced: bool) -> Option<(Option<String>, String)> {
    let name = cluster_name(obj)?;
    let namespace = obj.metadata.namespace.clone().filter(|n| !n.is_empty());
    match (namespaced, namespace) {
        (true, None) => None,
        (true, namespace) => Some((namespace, name)),
        (false, _) => Some((None, name)),
    }
}

impl Sink<DynamicObject> for CniPolicySink<'_> {
    type Item = CniPolicy;
    type Key = (Option<String>, String);

    fn convert(&self, obj: DynamicObject) -> Converted<CniPolicy, Self::Key> {
        match namespaced_name(&obj, self.kind.namespaced()) {
            Some(key) => Converted::Item(self.policy(&key)),
            None => {
                warn!(
                    kind = self.kind.as_str(),
                    "skipping a policy without a name or namespace"
                );
                Converted::Invalid(None)
            }
        }
    }

    /// The kind is the sink's, so a namespaced key is taken whenever a namespace is set.
    fn key_of(obj: &DynamicObject) -> Option<Self::Key> {
        let namespaced = obj
            .metadata
            .namespace
            .as_deref()
            .is_some_and(|n| !n.is_empty());
        namespaced_name(obj, namespaced)
    }

    fn apply(&mut self, policy: CniPolicy, at: SystemTime) -> bool {
        if self.index.has_cni_policy(&policy) {
            return false;
        }
        self.changed(&policy, PolicyOp::Created, at);
        self.index.apply(policy);
        true
    }

    fn remove(&mut self, key: &Self::Key, at: SystemTime) {
        let policy = self.policy(key);
        if self.index.has_cni_policy(&policy) {
            self.changed(&policy, PolicyOp::Deleted, at);
            Apply::<CniPolicy>::delete(self.index, &policy);
        }
    }

    fn reset(&mut self, items: Vec<CniPolicy>, first: bool, at: SystemTime) {
        if !first {
            let old: BTreeSet<CniPolicy> = self
                .index
                .cni_policies()
                .filter(|p| p.kind == self.kind)
                .cloned()
                .collect();
            let new: BTreeSet<CniPolicy> = items.iter().cloned().collect();
            for created in new.difference(&old) {
                self.changed(created, PolicyOp::Created, at);
            }
            for deleted in old.difference(&new) {
                self.changed(deleted, PolicyOp::Deleted, at);
            }
        }
        self.index.reset_cni_policies(self.kind, items);
    }
}

#[cfg(test)]
mod tests;
