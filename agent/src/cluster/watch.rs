//! The live cluster view: kube watchers feeding the shared [`Index`] and the CR stores.
//!
//! ```text
//! kube API ──watcher()──.modify(strip)──.default_backoff()──> Feed ──> Sink ──> Index (+ ChangeLog)
//!  Pods, Namespaces, Nodes, NetworkPolicies                         │      └─> SpecStore (ProbeSpecs,
//!  ProbeSpecs, ClusterProbeSpecs, ProbeRequests (DeserializeGuard)  │           ClusterProbeSpecs,
//!                                                                   │           ProbeRequests)
//!                                                                   └──> Readiness, WatchStats, updates
//! ```
//!
//! - **What is watched.** Pods as far as this node's pairs need them ([`WatchScope::Node`], the
//!   default): this node's pods, the CNI agents, and the pods the specs select, through a set
//!   of watches [`scope::plan_pod_watches`] derives from the specs; or every pod in one watch
//!   ([`WatchScope::Cluster`], also the fallback past a bound of selectors). The CNI agent pods
//!   are recognised by a [`CniAgentMatcher`] ([`cni_agents_on`]). Namespaces, Nodes,
//!   NetworkPolicies, ProbeSpecs, ClusterProbeSpecs and ProbeRequests are watched
//!   cluster-wide; the cluster-scoped policy tiers and the CNI-native policies too, where the
//!   API serves them ([`optional`]: discovery first, again every few minutes); Services and
//!   EndpointSlices cluster-wide (a Service pair reads them at every probe). [`ClusterView::specs`] hands the scheduler both spec kinds as one list of
//!   [`Spec`]s.
//! - **Dynamic pod watches.** The pod-watch supervisor ([`Watchers::run`] in node scope)
//!   re-plans when the specs change: it starts the new watches first and stops the ones no
//!   longer needed (releasing their pods) only once every planned watch has listed (make
//!   before break). A spec reaches the scheduler only when the watches its pairs depend on
//!   have listed; until then [`ClusterView::specs`] keeps the version that was ready (or
//!   leaves a new spec out), so no pair is planned from a half-listed destination set.
//! - **Relists.** The pure mapping in [`feed`] turns `Init … InitApply … InitDone` into one
//!   `reset`, so objects deleted during a watch gap disappear.
//! - **Bad objects.** Objects failing conversion are logged with kind and namespace/name and
//!   skipped (policies enter in their fail-closed degraded form, or are marked unloadable);
//!   CRs are read through `DeserializeGuard`. A watch never dies of one object.
//! - **Errors.** Watch errors are retried with `.default_backoff()` and counted per resource
//!   in [`WatchStats`]. A watch stream that *ends* is fatal: [`Watchers::run`] returns.
//! - **Readiness.** [`Readiness`] turns true once every watch has completed its first list
//!   (for pods in node scope: every watch of the first plan, made once the specs have listed).
//! - **Updates.** Every applied change bumps a `tokio::sync::watch` counter
//!   ([`ClusterView::subscribe`]), so the scheduler wakes without polling.
//!
//! Locks are `parking_lot` and never held across an `.await`: one event is handled under the
//! index and change-log write locks, then they are released.

use std::collections::BTreeSet;
use std::fmt;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use std::collections::BTreeMap;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1 as corev1;
use k8s_openapi::api::networking::v1 as netv1;
use kube::core::DeserializeGuard;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource};
use parking_lot::{Mutex, RwLock};
use probe_spec::{ClusterProbeSpec, ProbeRequest, ProbeSpec};
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch as signal};
use tokio::task::{AbortHandle, JoinSet};
use tracing::{Instrument, debug, info, info_span, warn};

use super::changes::ChangeLog;
use super::index::{Index, PodCoverage, PodOwner};
use super::spec::{Spec, SpecRef};

pub mod backoff;
pub mod cni;
pub mod feed;
pub mod lookup;
pub mod optional;
pub mod scope;
pub mod snapshot;
pub mod store;

pub use cni::{CniAgentMatcher, CniAgentStatus, cni_agents_by_node, cni_agents_on};
pub use feed::{CoreObject, CoreSink, Feed, Handled, PolicyItem, Sink, StoreKey, Strip};
pub use lookup::PodLookup;
pub use scope::{Fallback, PodWatch, PodWatchPlan, WatchScope, plan_pod_watches};
pub use snapshot::{Played, SnapshotSource};
pub use store::SpecStore;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why the cluster view stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A watch stream ended; watchers retry errors forever, so this is a bug or a shutdown.
    #[error("the {kind} watch ended")]
    Ended { kind: WatchedKind },
    /// The configured CNI agent selector does not parse.
    #[error("invalid CNI agent selector {selector:?}: {message}")]
    InvalidCniSelector { selector: String, message: String },
}

impl Error {
    /// A bounded label for failure counters.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Ended { .. } => "watch_ended",
            Error::InvalidCniSelector { .. } => "invalid_cni_selector",
        }
    }
}

/// A bounded label for a watcher error (the reason a watch restarted).
pub fn watcher_error_label(error: &watcher::Error) -> &'static str {
    match error {
        watcher::Error::InitialListFailed(_) => "initial_list_failed",
        watcher::Error::WatchStartFailed(_) => "watch_start_failed",
        watcher::Error::WatchError(_) => "watch_error",
        watcher::Error::WatchFailed(_) => "watch_failed",
        watcher::Error::NoResourceVersion => "no_resource_version",
    }
}

// === WatchedKind ===

/// The resources the agent watches (a bounded metric label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WatchedKind {
    Pods,
    Namespaces,
    Nodes,
    NetworkPolicies,
    ProbeSpecs,
    ClusterProbeSpecs,
    ProbeRequests,
    /// ClusterNetworkPolicies, AdminNetworkPolicies, BaselineAdminNetworkPolicies, where
    /// served ([`optional`]).
    ClusterPolicies,
    /// Cilium, Calico and Antrea policies, where served ([`optional`]).
    CniPolicies,
    Services,
    EndpointSlices,
}

impl WatchedKind {
    pub const ALL: [WatchedKind; 11] = [
        WatchedKind::Pods,
        WatchedKind::Namespaces,
        WatchedKind::Nodes,
        WatchedKind::NetworkPolicies,
        WatchedKind::ProbeSpecs,
        WatchedKind::ClusterProbeSpecs,
        WatchedKind::ProbeRequests,
        WatchedKind::ClusterPolicies,
        WatchedKind::CniPolicies,
        WatchedKind::Services,
        WatchedKind::EndpointSlices,
    ];

    /// `pods`, `namespaces`, `nodes`, `networkpolicies`, `probespecs`, `clusterprobespecs`,
    /// `proberequests`, `clusterpolicies`, `cnipolicies`, `services`, `endpointslices`.
    pub fn as_str(self) -> &'static str {
        match self {
            WatchedKind::Pods => "pods",
            WatchedKind::Namespaces => "namespaces",
            WatchedKind::Nodes => "nodes",
            WatchedKind::NetworkPolicies => "networkpolicies",
            WatchedKind::ProbeSpecs => "probespecs",
            WatchedKind::ClusterProbeSpecs => "clusterprobespecs",
            WatchedKind::ProbeRequests => "proberequests",
            WatchedKind::ClusterPolicies => "clusterpolicies",
            WatchedKind::CniPolicies => "cnipolicies",
            WatchedKind::Services => "services",
            WatchedKind::EndpointSlices => "endpointslices",
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// A set of [`WatchedKind`]s in two bytes (a report names the resources stale when it was
/// made; every report holds one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct WatchedKinds(u16);

impl WatchedKinds {
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn contains(self, kind: WatchedKind) -> bool {
        self.0 & (1 << kind.slot()) != 0
    }

    /// In [`WatchedKind::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = WatchedKind> {
        WatchedKind::ALL
            .into_iter()
            .filter(move |kind| self.contains(*kind))
    }

    /// The kinds' names ([`WatchedKind::as_str`]), in [`WatchedKind::ALL`] order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        self.iter().map(WatchedKind::as_str)
    }
}

impl FromIterator<WatchedKind> for WatchedKinds {
    fn from_iter<I: IntoIterator<Item = WatchedKind>>(kinds: I) -> Self {
        Self(
            kinds
                .into_iter()
                .fold(0, |set, kind| set | (1 << kind.slot())),
        )
    }
}

/// `pods, networkpolicies`.
impl fmt::Display for WatchedKinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, name) in self.names().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(name)?;
        }
        Ok(())
    }
}

impl fmt::Display for WatchedKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === Readiness ===

/// Turns ready once every registered watch has completed its first list.
#[derive(Clone, Debug)]
pub struct Readiness {
    pending: Arc<Mutex<BTreeSet<WatchedKind>>>,
    tx: Arc<signal::Sender<bool>>,
}

impl Readiness {
    /// Waits for the initial sync of each of `kinds`.
    pub fn new(kinds: impl IntoIterator<Item = WatchedKind>) -> Self {
        let pending: BTreeSet<WatchedKind> = kinds.into_iter().collect();
        let (tx, _) = signal::channel(pending.is_empty());
        Self {
            pending: Arc::new(Mutex::new(pending)),
            tx: Arc::new(tx),
        }
    }

    /// Already ready (snapshot modes).
    pub fn ready() -> Self {
        Self::new([])
    }

    /// Records the first complete list of `kind`.
    pub fn mark_synced(&self, kind: WatchedKind) {
        let mut pending = self.pending.lock();
        if pending.remove(&kind) && pending.is_empty() {
            info!("every watch has synced; ready");
            self.tx.send_replace(true);
        }
    }

    pub fn is_ready(&self) -> bool {
        *self.tx.borrow()
    }

    /// Whether `kind` has completed its first list (or was never waited for).
    pub fn is_synced(&self, kind: WatchedKind) -> bool {
        !self.pending.lock().contains(&kind)
    }

    /// The watches still waiting for their first list (for `/readyz` bodies).
    pub fn pending(&self) -> Vec<WatchedKind> {
        self.pending.lock().iter().copied().collect()
    }

    pub fn subscribe(&self) -> signal::Receiver<bool> {
        self.tx.subscribe()
    }

    /// Resolves once ready.
    pub async fn wait(&self) {
        let mut rx = self.subscribe();
        // The sender lives in `self`, so this cannot fail while we wait.
        let _ = rx.wait_for(|ready| *ready).await;
    }
}

// === WatchStats ===

/// Counters of one watched resource.
#[derive(Debug, Default)]
pub struct KindStats {
    /// Watch errors; each one restarts the watch after a backoff.
    pub restarts: AtomicU64,
    /// Completed lists (the initial one and every relist).
    pub relists: AtomicU64,
    /// Objects applied or removed.
    pub events: AtomicU64,
    /// Objects skipped because they failed conversion.
    pub skipped: AtomicU64,
    /// Since when the watch has been failing (milliseconds since the Unix epoch); 0 while it
    /// is served. Set by the first error, cleared by the next event.
    pub failing_since_ms: AtomicU64,
}

impl KindStats {
    fn failed(&self, at: SystemTime) {
        let ms = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(1, |d| d.as_millis().max(1) as u64);
        let _ = self
            .failing_since_ms
            .compare_exchange(0, ms, Ordering::Relaxed, Ordering::Relaxed);
    }

    fn served(&self) {
        self.failing_since_ms.store(0, Ordering::Relaxed);
    }

    /// Since when the watch has been failing, if it is.
    pub fn failing_since(&self) -> Option<SystemTime> {
        match self.failing_since_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(ms)),
        }
    }
}

/// Counters per watched resource, read at scrape time by the metrics collector.
#[derive(Debug, Default)]
pub struct WatchStats {
    kinds: [KindStats; WatchedKind::ALL.len()],
}

impl WatchStats {
    pub fn get(&self, kind: WatchedKind) -> &KindStats {
        &self.kinds[kind.slot()]
    }

    pub fn restarts(&self, kind: WatchedKind) -> u64 {
        self.get(kind).restarts.load(Ordering::Relaxed)
    }

    /// The resources whose watch has been failing for longer than `after` at `now`: the
    /// view of them may be stale (deletions and changes since then are not in it).
    pub fn stale(&self, now: SystemTime, after: std::time::Duration) -> WatchedKinds {
        WatchedKind::ALL
            .into_iter()
            .filter(|kind| {
                self.get(*kind)
                    .failing_since()
                    .is_some_and(|since| now.duration_since(since).unwrap_or_default() > after)
            })
            .collect()
    }

    fn record(&self, kind: WatchedKind, handled: Handled) {
        let stats = self.get(kind);
        let counter = match handled {
            Handled::ListStarted | Handled::Buffered | Handled::Unchanged => return,
            Handled::Synced { .. } => &stats.relists,
            Handled::Applied | Handled::Removed => &stats.events,
            Handled::Skipped => &stats.skipped,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

// === ClusterView ===

/// The shared, live view of the cluster: cheap to clone, read by every other component.
#[derive(Clone, Debug)]
pub struct ClusterView {
    pub index: Arc<RwLock<Index>>,
    pub changes: Arc<RwLock<ChangeLog>>,
    pub specs: Arc<RwLock<SpecStore<ProbeSpec>>>,
    pub cluster_specs: Arc<RwLock<SpecStore<ClusterProbeSpec, String>>>,
    pub requests: Arc<RwLock<SpecStore<ProbeRequest>>>,
    pub cni: Arc<CniAgentMatcher>,
    pub readiness: Readiness,
    pub stats: Arc<WatchStats>,
    /// Node scope: the specs whose pod watches have listed (see [`ClusterView::specs`]);
    /// `None` when every spec is served as it is (cluster scope, snapshots).
    ready_specs: Arc<RwLock<Option<ReadySpecs>>>,
    /// Node scope: fetches the on-demand destinations the watches do not hold.
    lookup: Arc<std::sync::OnceLock<Arc<PodLookup>>>,
    updates: Arc<signal::Sender<u64>>,
}

/// The specs handed to the scheduler in node scope, and a counter of their changes.
#[derive(Clone, Debug, Default)]
struct ReadySpecs {
    specs: Vec<Spec>,
    revision: u64,
}

impl ClusterView {
    /// An empty view that turns ready after every watch of [`Watchers`] has synced.
    pub fn new(cni: CniAgentMatcher) -> Self {
        Self::with_readiness(cni, Readiness::new(WatchedKind::ALL))
    }

    pub fn with_readiness(cni: CniAgentMatcher, readiness: Readiness) -> Self {
        let (updates, _) = signal::channel(0);
        Self {
            index: Arc::default(),
            changes: Arc::default(),
            specs: Arc::default(),
            cluster_specs: Arc::default(),
            requests: Arc::default(),
            cni: Arc::new(cni),
            readiness,
            stats: Arc::default(),
            ready_specs: Arc::default(),
            lookup: Arc::default(),
            updates: Arc::new(updates),
        }
    }

    /// A counter bumped after every change to the index or the stores.
    pub fn subscribe(&self) -> signal::Receiver<u64> {
        self.updates.subscribe()
    }

    /// Signals subscribers that something changed (sources other than the watchers, e.g.
    /// snapshot loading, call this after writing the index).
    pub fn notify(&self) {
        self.updates.send_modify(|n| *n += 1);
    }

    /// The specs to plan: every ProbeSpec and ClusterProbeSpec, keyed as their stores key
    /// them (ProbeSpecs first, each kind in key order). In node scope, only those whose pod
    /// watches have listed, each in the latest version that was ready.
    pub fn specs(&self) -> Vec<Spec> {
        if let Some(ready) = &*self.ready_specs.read() {
            return ready.specs.clone();
        }
        self.current_specs()
    }

    /// The on-demand lookup of a node-scoped view (`None`: every pod is watched, or a
    /// snapshot).
    pub fn lookup(&self) -> Option<Arc<PodLookup>> {
        self.lookup.get().cloned()
    }

    /// Every spec as the stores hold it now, ready or not.
    pub fn current_specs(&self) -> Vec<Spec> {
        let namespaced = self.specs.read();
        let cluster = self.cluster_specs.read();
        let namespaced = namespaced.iter().map(|(key, spec)| Spec {
            key: SpecRef::Namespaced(key.clone()),
            generation: spec.metadata.generation,
            spec: spec.spec.clone(),
        });
        let cluster = cluster.iter().map(|(name, spec)| Spec {
            key: SpecRef::Cluster(name.as_str().into()),
            generation: spec.metadata.generation,
            spec: spec.spec.0.clone(),
        });
        namespaced.chain(cluster).collect()
    }

    /// Moves whenever a ProbeSpec or ClusterProbeSpec changes (or, in node scope, becomes
    /// ready).
    pub fn specs_revision(&self) -> u64 {
        let ready = self.ready_specs.read().as_ref().map_or(0, |r| r.revision);
        self.stored_specs_revision() + ready
    }

    /// Moves whenever a stored ProbeSpec or ClusterProbeSpec changes.
    fn stored_specs_revision(&self) -> u64 {
        self.specs.read().revision() + self.cluster_specs.read().revision()
    }

    /// Runs `f` on a sink into the index and the change log, under their write locks (the
    /// index first, as every writer takes them).
    pub fn with_core_sink<R>(&self, f: impl FnOnce(&mut CoreSink<'_>) -> R) -> R {
        let mut index = self.index.write();
        let mut changes = self.changes.write();
        let mut sink = CoreSink {
            index: &mut index,
            changes: &mut changes,
            cni: &self.cni,
            pods: PodOwner::ALL,
        };
        f(&mut sink)
    }

    /// Runs `f` on the index and the change log under their write locks (index first).
    pub fn with_index_and_changes<R>(&self, f: impl FnOnce(&mut Index, &mut ChangeLog) -> R) -> R {
        let mut index = self.index.write();
        let mut changes = self.changes.write();
        f(&mut index, &mut changes)
    }

    /// Node scope: from now on [`Self::specs`] serves only ready specs (none yet).
    fn gate_specs(&self) {
        self.ready_specs
            .write()
            .get_or_insert_with(ReadySpecs::default);
    }

    /// Serves `specs` as the ready ones; wakes subscribers when they changed.
    fn publish_ready_specs(&self, specs: Vec<Spec>) {
        let changed = {
            let mut ready = self.ready_specs.write();
            let ready = ready.get_or_insert_with(ReadySpecs::default);
            if ready.specs == specs {
                false
            } else {
                ready.specs = specs;
                ready.revision += 1;
                true
            }
        };
        if changed {
            self.notify();
        }
    }

    /// The CNI agent pods on `node`, with readiness and restarts.
    pub fn cni_agents_on(&self, node: &str) -> Vec<CniAgentStatus> {
        cni_agents_on(&self.index.read(), &self.cni, node)
    }
}

// === Watchers ===

/// How an agent watches pods: the scope, its node, and the bound on selector watches.
#[derive(Clone, Debug)]
pub struct PodScope {
    pub scope: WatchScope,
    pub node: String,
    /// Spec-derived selector watches before the cluster-wide watch takes over.
    pub max_selectors: usize,
}

impl PodScope {
    /// Every pod, in one watch.
    pub fn cluster() -> Self {
        Self {
            scope: WatchScope::Cluster,
            node: String::new(),
            max_selectors: scope::DEFAULT_MAX_SELECTOR_WATCHES,
        }
    }

    /// This node's pods and what its specs select.
    pub fn node(node: &str) -> Self {
        Self {
            scope: WatchScope::Node,
            node: node.to_string(),
            max_selectors: scope::DEFAULT_MAX_SELECTOR_WATCHES,
        }
    }
}

/// The kube watchers of one agent.
#[derive(Clone)]
pub struct Watchers {
    client: Client,
    view: ClusterView,
    config: watcher::Config,
    pods: PodScope,
    /// How often the optional kinds' APIs are discovered again ([`optional::REDISCOVER`]).
    rediscover: std::time::Duration,
}

impl fmt::Debug for Watchers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watchers").finish_non_exhaustive()
    }
}

impl Watchers {
    /// Watchers of every pod ([`PodScope::cluster`]); see [`Self::with_pod_scope`].
    pub fn new(client: Client, view: ClusterView) -> Self {
        Self {
            client,
            view,
            config: watcher::Config::default(),
            pods: PodScope::cluster(),
            rediscover: optional::REDISCOVER,
        }
    }

    /// Sets how often the optional kinds' APIs are discovered again (tests shorten it).
    pub fn with_rediscovery(mut self, every: std::time::Duration) -> Self {
        self.rediscover = every;
        self
    }

    /// Sets how pods are watched; node scope also gives the view its on-demand
    /// [`PodLookup`].
    pub fn with_pod_scope(mut self, pods: PodScope) -> Self {
        if pods.scope == WatchScope::Node {
            let lookup = PodLookup::new(self.client.clone(), self.view.index.clone());
            // A view gets one lookup; a second node-scoped Watchers shares it.
            let _ = self.view.lookup.set(Arc::new(lookup));
        }
        self.pods = pods;
        self
    }

    pub fn view(&self) -> &ClusterView {
        &self.view
    }

    /// Runs every watch; returns when the first one ends (fatal for the agent).
    pub async fn run(self) -> Error {
        let feeds: Vec<BoxFuture<'static, Error>> = WatchedKind::ALL
            .into_iter()
            .map(|kind| self.clone().watch(kind))
            .collect();
        futures::future::select_all(feeds).await.0
    }

    /// The future that drives one watch, in its own span.
    pub fn watch(self, kind: WatchedKind) -> BoxFuture<'static, Error> {
        let span = info_span!("watch", resource = kind.as_str());
        match kind {
            WatchedKind::Pods => match self.pods.scope {
                WatchScope::Cluster => {
                    let (watch, view) = (PodWatch::everything(), self.view.clone());
                    let on_synced = move || view.readiness.mark_synced(WatchedKind::Pods);
                    Box::pin(
                        self.pod_watch(watch, PodOwner::ALL, on_synced)
                            .instrument(span),
                    )
                }
                WatchScope::Node => Box::pin(self.supervise_pod_watches().instrument(span)),
            },
            WatchedKind::Namespaces => {
                Box::pin(self.core::<corev1::Namespace>(kind).instrument(span))
            }
            WatchedKind::Nodes => Box::pin(self.core::<corev1::Node>(kind).instrument(span)),
            WatchedKind::NetworkPolicies => {
                Box::pin(self.core::<netv1::NetworkPolicy>(kind).instrument(span))
            }
            WatchedKind::ProbeSpecs => {
                let store = self.view.specs.clone();
                Box::pin(self.custom::<ProbeSpec, _>(kind, store).instrument(span))
            }
            WatchedKind::ClusterProbeSpecs => {
                let store = self.view.cluster_specs.clone();
                Box::pin(
                    self.custom::<ClusterProbeSpec, _>(kind, store)
                        .instrument(span),
                )
            }
            WatchedKind::ProbeRequests => {
                let store = self.view.requests.clone();
                Box::pin(self.custom::<ProbeRequest, _>(kind, store).instrument(span))
            }
            WatchedKind::ClusterPolicies | WatchedKind::CniPolicies => {
                Box::pin(self.optional_watches(kind).instrument(span))
            }
            WatchedKind::Services => Box::pin(self.core::<corev1::Service>(kind).instrument(span)),
            WatchedKind::EndpointSlices => Box::pin(
                self.core::<k8s_openapi::api::discovery::v1::EndpointSlice>(kind)
                    .instrument(span),
            ),
        }
    }

    async fn core<K>(self, kind: WatchedKind) -> Error
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug + Send + Strip,
        K: CoreObject + 'static,
        for<'a> CoreSink<'a>: Sink<K, Item = K::Model>,
    {
        let api: Api<K> = Api::all(self.client.clone());
        let view = self.view.clone();
        let mut feed: Feed<K::Model> = Feed::new();
        let readiness = self.view.readiness.clone();
        let on_synced = move || readiness.mark_synced(kind);
        let handle = move |event, at| view.with_core_sink(|sink| feed.handle(sink, event, at));
        drive(api, self.config, kind, &self.view, handle, on_synced).await
    }

    /// One pod watch feeding the index as `owner`; `on_synced` runs after its first list.
    async fn pod_watch(
        self,
        watch: PodWatch,
        owner: PodOwner,
        on_synced: impl FnOnce() + Send,
    ) -> Error {
        let api: Api<corev1::Pod> = match &watch.namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        let mut config = self.config.clone();
        if !watch.labels.is_empty() {
            config = config.labels(&watch.labels);
        }
        if !watch.fields.is_empty() {
            config = config.fields(&watch.fields);
        }
        let view = self.view.clone();
        let answers = watch.answers_address();
        let mut feed: Feed<crate::cluster::model::Pod> = Feed::new();
        let handle = move |event, at| {
            let mut index = view.index.write();
            let mut changes = view.changes.write();
            let handled = {
                let mut sink = CoreSink {
                    index: &mut index,
                    changes: &mut changes,
                    cni: &view.cni,
                    pods: owner,
                };
                feed.handle(&mut sink, event, at)
            };
            // A listed `status.podIP=` watch knows whose the address is, even when no one's.
            if let (Handled::Synced { .. }, Some(ip)) = (handled, answers) {
                index.mark_address_answered(owner, ip);
            }
            handled
        };
        drive(
            api,
            config,
            WatchedKind::Pods,
            &self.view,
            handle,
            on_synced,
        )
        .await
    }

    /// Node scope: keeps the pod watches in line with the specs ([`plan_pod_watches`]); see
    /// the module docs. Returns when one of the watches ends.
    async fn supervise_pod_watches(self) -> Error {
        let view = self.view.clone();
        view.gate_specs();
        view.index.write().set_coverage(PodCoverage::Partial);
        let mut updates = view.subscribe();
        // The watch set is derived from the specs: wait for their first list.
        while !(view.readiness.is_synced(WatchedKind::ProbeSpecs)
            && view.readiness.is_synced(WatchedKind::ClusterProbeSpecs))
        {
            if updates.changed().await.is_err() {
                return Error::Ended {
                    kind: WatchedKind::Pods,
                };
            }
        }
        let mut supervisor = PodWatchSupervisor::new(self);
        let (synced_tx, mut synced_rx) = mpsc::unbounded_channel();
        loop {
            // Every index change wakes this loop: re-plan and settle only when specs moved or
            // a watch listed.
            let mut dirty = supervisor.replan_if_specs_moved(&synced_tx);
            if std::mem::take(&mut supervisor.listed) {
                dirty = true;
            }
            if dirty {
                supervisor.settle();
            }
            tokio::select! {
                Some(owner) = synced_rx.recv() => supervisor.synced(owner),
                ended = supervisor.tasks.join_next(), if !supervisor.tasks.is_empty() => {
                    match ended {
                        Some(Ok(error)) => return error,
                        Some(Err(error)) if error.is_panic() => {
                            return Error::Ended { kind: WatchedKind::Pods };
                        }
                        // Aborted on purpose (no longer needed).
                        _ => {}
                    }
                }
                changed = updates.changed() => {
                    if changed.is_err() {
                        return Error::Ended { kind: WatchedKind::Pods };
                    }
                }
            }
        }
    }

    async fn custom<K, Key>(self, kind: WatchedKind, store: Arc<RwLock<SpecStore<K, Key>>>) -> Error
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug + PartialEq,
        K: Send + Sync + 'static,
        Key: StoreKey + Send + Sync + 'static,
        DeserializeGuard<K>: Strip,
    {
        let api: Api<DeserializeGuard<K>> = Api::all(self.client.clone());
        let mut feed = Feed::new();
        let readiness = self.view.readiness.clone();
        let on_synced = move || readiness.mark_synced(kind);
        let handle = move |event, at| feed.handle(&mut *store.write(), event, at);
        drive(api, self.config, kind, &self.view, handle, on_synced).await
    }
}

/// Polls one watch stream forever, handing each event to `handle` (which holds the locks).
async fn drive<K>(
    api: Api<K>,
    config: watcher::Config,
    kind: WatchedKind,
    view: &ClusterView,
    mut handle: impl FnMut(Event<K>, SystemTime) -> Handled + Send,
    on_synced: impl FnOnce() + Send,
) -> Error
where
    K: Resource + Clone + DeserializeOwned + fmt::Debug + Send + Strip + 'static,
{
    let mut on_synced = Some(on_synced);
    let stream = watcher::watcher(api, config).modify(Strip::strip);
    let mut stream = pin!(stream);
    let mut backoff = backoff::WatchBackoff::new(backoff::WatchBackoff::seed(kind.slot() as u64));
    while let Some(item) = stream.next().await {
        match item {
            Ok(event) => {
                backoff.reset();
                view.stats.get(kind).served();
                let handled = handle(event, SystemTime::now());
                view.stats.record(kind, handled);
                match handled {
                    Handled::Synced { first } => {
                        if first {
                            info!("initial list applied");
                            if let Some(on_synced) = on_synced.take() {
                                on_synced();
                            }
                        }
                        view.notify();
                    }
                    Handled::Applied | Handled::Removed | Handled::Skipped => view.notify(),
                    Handled::ListStarted | Handled::Buffered | Handled::Unchanged => {}
                }
            }
            Err(error) => {
                let stats = view.stats.get(kind);
                stats.restarts.fetch_add(1, Ordering::Relaxed);
                stats.failed(SystemTime::now());
                // 410: the API answered that the resourceVersion expired; the watcher relists
                // on its next poll, at once.
                let delay = if backoff::is_gone(&error) {
                    std::time::Duration::ZERO
                } else {
                    backoff.next_delay()
                };
                warn!(
                    reason = watcher_error_label(&error),
                    %error,
                    ?delay,
                    "watch failed; retrying"
                );
                tokio::time::sleep(delay).await;
            }
        }
    }
    Error::Ended { kind }
}

// === The pod-watch supervisor ===

/// A running pod watch.
#[derive(Debug)]
struct RunningWatch {
    owner: PodOwner,
    abort: AbortHandle,
    synced: bool,
}

/// The state of [`Watchers::supervise_pod_watches`]: the current plan, the watches running
/// (some of them maybe no longer planned, kept until the plan has listed) and their tasks.
struct PodWatchSupervisor {
    watchers: Watchers,
    plan: PodWatchPlan,
    /// The specs the plan was made from, and the stores' revision then.
    specs: Vec<Spec>,
    planned_at: Option<u64>,
    running: BTreeMap<PodWatch, RunningWatch>,
    tasks: JoinSet<Error>,
    next_owner: u32,
    /// A watch listed since the last settle.
    listed: bool,
}

impl PodWatchSupervisor {
    fn new(watchers: Watchers) -> Self {
        Self {
            watchers,
            plan: PodWatchPlan::default(),
            specs: Vec::new(),
            planned_at: None,
            running: BTreeMap::new(),
            tasks: JoinSet::new(),
            next_owner: 1,
            listed: false,
        }
    }

    fn view(&self) -> &ClusterView {
        &self.watchers.view
    }

    /// Re-plans when the stored specs moved, and starts the watches the plan adds; returns
    /// whether it re-planned.
    fn replan_if_specs_moved(&mut self, synced: &mpsc::UnboundedSender<PodOwner>) -> bool {
        let revision = self.view().stored_specs_revision();
        if self.planned_at == Some(revision) {
            return false;
        }
        self.planned_at = Some(revision);
        self.specs = self.view().current_specs();
        let scope = &self.watchers.pods;
        let plan = plan_pod_watches(
            &self.specs,
            &scope.node,
            &self.view().cni,
            scope.max_selectors,
        );
        if plan.fallback != self.plan.fallback {
            match &plan.fallback {
                Some(why) => warn!(reason = %why, "watching every pod of the cluster"),
                None => info!("watching pods by node and selector"),
            }
        }
        for watch in &plan.watches {
            if !self.running.contains_key(watch) {
                self.start(watch.clone(), synced.clone());
            }
        }
        self.plan = plan;
        true
    }

    fn start(&mut self, watch: PodWatch, synced: mpsc::UnboundedSender<PodOwner>) {
        let owner = PodOwner(self.next_owner);
        self.next_owner += 1;
        info!(%watch, owner = owner.0, "starting pod watch");
        let span = info_span!("pod_watch", %watch);
        let on_synced = move || {
            // The supervisor only stops listening when it returns.
            let _ = synced.send(owner);
        };
        let task = self
            .watchers
            .clone()
            .pod_watch(watch.clone(), owner, on_synced)
            .instrument(span);
        let abort = self.tasks.spawn(task);
        self.running.insert(
            watch,
            RunningWatch {
                owner,
                abort,
                synced: false,
            },
        );
    }

    fn synced(&mut self, owner: PodOwner) {
        if let Some(running) = self.running.values_mut().find(|r| r.owner == owner) {
            running.synced = true;
            self.listed = true;
        }
    }

    fn is_synced(&self, watch: &PodWatch) -> bool {
        self.running.get(watch).is_some_and(|r| r.synced)
    }

    /// Publishes the specs whose watches have listed; once the whole plan has, stops the
    /// watches it no longer needs and marks pods synced.
    fn settle(&mut self) {
        let ready: Vec<Spec> = {
            let previous = self.view().specs();
            self.specs
                .iter()
                .filter_map(|spec| {
                    let needs = self.plan.needs.get(&spec.key);
                    if needs.is_none_or(|needs| needs.iter().all(|w| self.is_synced(w))) {
                        Some(spec.clone())
                    } else {
                        // The version that was ready, if any, until the new one is.
                        previous.iter().find(|p| p.key == spec.key).cloned()
                    }
                })
                .collect()
        };
        if !self.plan.watches.iter().all(|w| self.is_synced(w)) {
            self.view().publish_ready_specs(ready);
            return;
        }
        let unplanned: Vec<PodWatch> = self
            .running
            .keys()
            .filter(|w| !self.plan.watches.contains(*w))
            .cloned()
            .collect();
        let coverage = if self.plan.is_complete() {
            PodCoverage::Complete
        } else {
            PodCoverage::Partial
        };
        let view = self.watchers.view.clone();
        let moved = {
            let mut index = view.index.write();
            let moved = !unplanned.is_empty() || index.coverage() != coverage;
            for watch in unplanned {
                if let Some(running) = self.running.remove(&watch) {
                    debug!(%watch, "stopping pod watch no longer needed");
                    running.abort.abort();
                    index.release_pods_of(running.owner);
                }
            }
            if index.coverage() != coverage {
                index.set_coverage(coverage);
            }
            moved
        };
        self.view().publish_ready_specs(ready);
        self.view().readiness.mark_synced(WatchedKind::Pods);
        if moved {
            self.view().notify();
        }
    }
}

#[cfg(test)]
mod tests;
