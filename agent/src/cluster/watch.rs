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
//! - **What is watched.** Pods cluster-wide: destinations can be anywhere, and this node's pods
//!   (the sources) are a subset, so a second, `spec.nodeName`-scoped watch would only duplicate
//!   objects. The CNI agent pods are recognised in that same watch by a [`CniAgentMatcher`]
//!   ([`cni_agents_on`]). Namespaces, Nodes, NetworkPolicies, ProbeSpecs, ClusterProbeSpecs and
//!   ProbeRequests are watched cluster-wide too. [`ClusterView::specs`] hands the scheduler
//!   both spec kinds as one list of [`Spec`]s.
//! - **Relists.** The pure mapping in [`feed`] turns `Init … InitApply … InitDone` into one
//!   `reset`, so objects deleted during a watch gap disappear.
//! - **Bad objects.** Objects failing conversion are logged with kind and namespace/name and
//!   skipped (policies enter in their fail-closed degraded form, or are marked unloadable);
//!   CRs are read through `DeserializeGuard`. A watch never dies of one object.
//! - **Errors.** Watch errors are retried with `.default_backoff()` and counted per resource
//!   in [`WatchStats`]. A watch stream that *ends* is fatal: [`Watchers::run`] returns.
//! - **Readiness.** [`Readiness`] turns true once every watch has completed its first list.
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
use tokio::sync::watch as signal;
use tracing::{Instrument, info, info_span, warn};

use super::changes::ChangeLog;
use super::index::Index;
use super::spec::{Spec, SpecRef};

pub mod cni;
pub mod feed;
pub mod store;

pub use cni::{CniAgentMatcher, CniAgentStatus, cni_agents_by_node, cni_agents_on};
pub use feed::{CoreObject, CoreSink, Feed, Handled, PolicyItem, Sink, StoreKey, Strip};
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
}

impl WatchedKind {
    pub const ALL: [WatchedKind; 7] = [
        WatchedKind::Pods,
        WatchedKind::Namespaces,
        WatchedKind::Nodes,
        WatchedKind::NetworkPolicies,
        WatchedKind::ProbeSpecs,
        WatchedKind::ClusterProbeSpecs,
        WatchedKind::ProbeRequests,
    ];

    /// `pods`, `namespaces`, `nodes`, `networkpolicies`, `probespecs`, `clusterprobespecs`,
    /// `proberequests`.
    pub fn as_str(self) -> &'static str {
        match self {
            WatchedKind::Pods => "pods",
            WatchedKind::Namespaces => "namespaces",
            WatchedKind::Nodes => "nodes",
            WatchedKind::NetworkPolicies => "networkpolicies",
            WatchedKind::ProbeSpecs => "probespecs",
            WatchedKind::ClusterProbeSpecs => "clusterprobespecs",
            WatchedKind::ProbeRequests => "proberequests",
        }
    }

    fn slot(self) -> usize {
        self as usize
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
    updates: Arc<signal::Sender<u64>>,
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

    /// Every ProbeSpec and ClusterProbeSpec, keyed as their stores key them (ProbeSpecs first,
    /// each kind in key order).
    pub fn specs(&self) -> Vec<Spec> {
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

    /// Moves whenever a ProbeSpec or ClusterProbeSpec changes.
    pub fn specs_revision(&self) -> u64 {
        self.specs.read().revision() + self.cluster_specs.read().revision()
    }

    /// The CNI agent pods on `node`, with readiness and restarts.
    pub fn cni_agents_on(&self, node: &str) -> Vec<CniAgentStatus> {
        cni_agents_on(&self.index.read(), &self.cni, node)
    }
}

// === Watchers ===

/// The kube watchers of one agent.
#[derive(Clone)]
pub struct Watchers {
    client: Client,
    view: ClusterView,
    config: watcher::Config,
}

impl fmt::Debug for Watchers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watchers").finish_non_exhaustive()
    }
}

impl Watchers {
    pub fn new(client: Client, view: ClusterView) -> Self {
        Self {
            client,
            view,
            config: watcher::Config::default(),
        }
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
            WatchedKind::Pods => Box::pin(self.core::<corev1::Pod>(kind).instrument(span)),
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
        drive(api, self.config, kind, &self.view, move |event, at| {
            let mut index = view.index.write();
            let mut changes = view.changes.write();
            let mut sink = CoreSink {
                index: &mut index,
                changes: &mut changes,
                cni: &view.cni,
            };
            feed.handle(&mut sink, event, at)
        })
        .await
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
        drive(api, self.config, kind, &self.view, move |event, at| {
            feed.handle(&mut *store.write(), event, at)
        })
        .await
    }
}

/// Polls one watch stream forever, handing each event to `handle` (which holds the locks).
async fn drive<K>(
    api: Api<K>,
    config: watcher::Config,
    kind: WatchedKind,
    view: &ClusterView,
    mut handle: impl FnMut(Event<K>, SystemTime) -> Handled + Send,
) -> Error
where
    K: Resource + Clone + DeserializeOwned + fmt::Debug + Send + Strip + 'static,
{
    let stream = watcher::watcher(api, config)
        .modify(Strip::strip)
        .default_backoff();
    let mut stream = pin!(stream);
    while let Some(item) = stream.next().await {
        match item {
            Ok(event) => {
                let handled = handle(event, SystemTime::now());
                view.stats.record(kind, handled);
                match handled {
                    Handled::Synced { first } => {
                        if first {
                            info!("initial list applied");
                            view.readiness.mark_synced(kind);
                        }
                        view.notify();
                    }
                    Handled::Applied | Handled::Removed | Handled::Skipped => view.notify(),
                    Handled::ListStarted | Handled::Buffered | Handled::Unchanged => {}
                }
            }
            Err(error) => {
                view.stats
                    .get(kind)
                    .restarts
                    .fetch_add(1, Ordering::Relaxed);
                warn!(
                    reason = watcher_error_label(&error),
                    %error,
                    "watch failed; retrying after backoff"
                );
            }
        }
    }
    Error::Ended { kind }
}

#[cfg(test)]
mod tests;
