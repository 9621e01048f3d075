//! `netreach agent`: the DaemonSet process. Wires the cluster view, the probe pipeline, the
//! scheduler and the reporters into one long-running agent for one node.
//!
//! ```text
//!                 kube API
//!                    │ watchers (Pods, Namespaces, Nodes, NetworkPolicies, ProbeSpecs, ProbeRequests)
//!                    v
//!   ClusterView { Index, ChangeLog, specs, requests, readiness, stats }
//!      │                      │                           │                    │
//!      │ scheduler            │ ProbeRequest runner       │ view metrics       │ /readyz
//!      v                      v                           v                    │
//!   plan ─> Timetable ─> Pipeline (probe in the source pod's netns ─> policy ─> diagnose)
//!      │ PairReports                 │ status (Running ─> Succeeded/Failed)
//!      ├─> metrics (one Registry) ───┼──────────────> GET /metrics
//!      ├─> Events (queue ─> EventRecorder)
//!      ├─> pairs (watch) ──> GET /v1/pairs, ProbeSpec status writer (every --status-interval)
//!      └─ POST /v1/probe ──> KubeProbeService (TokenReview, SubjectAccessReview) ──> Pipeline
//! ```
//!
//! Every task runs in its own span and is critical: if one ends, the agent writes the reason
//! to the termination log and exits non-zero ([`lifecycle`]). SIGTERM stops it gracefully:
//! no new probes start, probes and ProbeRequests in flight get `--shutdown-grace`, and the
//! process exits 0.

pub mod event_queue;
pub mod kube_service;
pub mod lifecycle;
pub mod on_demand;
pub mod probe_loop;
pub mod prober;
pub mod requests;
pub mod spec_status;
pub mod transitions;
pub mod view_metrics;

#[cfg(test)]
pub(crate) mod fixtures;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::Registry;
use tokio::sync::{mpsc, watch};
use tracing::{Instrument, error, info, info_span, warn};

use crate::api::serve::{ConnectionMetrics, ServeConfig};
use crate::api::tls::TlsSource;
use crate::api::{self, AppState, AuthMode, OnDemandProber, ProbeService};
use crate::cluster::watch::{
    self as cluster_watch, ClusterView, CniAgentMatcher, PodScope, WatchScope, Watchers,
};
use crate::netns::SocketFactory;
use crate::pair::PublishedPairs;
use crate::pipeline::{Pipeline, PipelineConfig};
use crate::policy::Profile;
use crate::probe::Prober;
use crate::report::events::{EventRecorder, EventsConfig};
use crate::report::metrics::{Exposition, IndexCollector, Metrics, PairSeries};
use crate::report::status::{RequestStatusWriter, SpecStatusWriter, StatusConfig};

use self::kube_service::KubeProbeService;
use self::lifecycle::{CriticalTasks, TaskExit, shutdown_signal};
use self::probe_loop::{ProbeLoop, ProbeLoopConfig, ProbeLoopOutputs, Progress, SpecSummaries};
use self::prober::PipelineProber;
use self::requests::{RequestRunner, RequestRunnerConfig};
use crate::schedule::TimetableConfig;

/// Everything the agent is configured with; `netreach agent`'s flags build it, tests build it
/// directly.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The node this agent runs on (`NODE_NAME`, from the downward API).
    pub node_name: String,
    /// Where the HTTP API listens.
    pub listen: SocketAddr,
    /// How the CNI treats what the NetworkPolicy API leaves open.
    pub profile: Profile,
    /// Scheduled probes in flight at once.
    pub concurrency: usize,
    /// An extra CNI agent selector, `[namespace/]key=value[,key=value...]`.
    pub cni_selector: Option<String>,
    /// Publish Kubernetes Events on source pods.
    pub events: bool,
    /// How often ProbeSpec statuses are written.
    pub status_interval: Duration,
    /// How long a watch may fail before its resource's view counts as stale.
    pub view_stale_after: Duration,
    /// Where the reason of a fatal exit is written.
    pub termination_log: PathBuf,
    /// How long probes in flight may take after SIGTERM.
    pub shutdown_grace: Duration,
    /// Which pairs get per-pair metric series.
    pub pair_metrics: PairSeries,
    /// Which pods are watched: this node's and what its specs select, or every pod.
    pub watch_scope: WatchScope,
    /// How the HTTP API is served and who may call it.
    pub api: ApiServing,
}

/// How the HTTP API is served: TLS, auth, bounds, and the kubelet's health port.
#[derive(Clone, Debug)]
pub struct ApiServing {
    /// Where `/healthz` and `/readyz` are served in plain HTTP (loopback: the kubelet of a
    /// hostNetwork pod reaches it).
    pub health_listen: SocketAddr,
    /// The certificate of the API's HTTPS.
    pub tls: TlsSource,
    /// TokenReview and SubjectAccessReview on every API route, or nobody is checked.
    pub auth: AuthMode,
    /// The audiences an on-demand prober's token must carry.
    pub audiences: Vec<String>,
    /// The audiences a reader's token (`/metrics`, `/v1/pairs`) must carry; empty: the API
    /// server's own, so Prometheus's service-account token works.
    pub read_audiences: Vec<String>,
    /// Open API connections at once.
    pub max_connections: usize,
}

impl ApiServing {
    /// HTTPS with a self-signed certificate for `names`, auth on, the default bounds.
    pub fn self_signed(names: Vec<String>, health_listen: SocketAddr) -> Self {
        Self {
            health_listen,
            tls: TlsSource::SelfSigned { names },
            auth: AuthMode::Enabled,
            audiences: vec![api::DEFAULT_AUDIENCE.to_string()],
            read_audiences: Vec::new(),
            max_connections: ServeConfig::default().max_connections,
        }
    }
}

/// Why the agent could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "cannot create a Kubernetes client (no in-cluster service account and no usable kubeconfig): {0}"
    )]
    KubeClient(#[source] kube::Error),
    #[error(transparent)]
    CniSelector(#[from] cluster_watch::Error),
    #[error("registering the metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("starting the socket factory (it opens this process's network namespace): {0}")]
    SocketFactory(#[source] crate::netns::Error),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the API's TLS certificate: {0}")]
    Tls(#[from] crate::api::tls::TlsError),
    #[error("installing the SIGTERM handler: {0}")]
    Signal(#[source] std::io::Error),
    #[error("critical task {} ended: {}", .0.task, .0.reason)]
    TaskEnded(TaskExit),
}

impl Error {
    /// A bounded label for failure counters and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::KubeClient(_) => "kube_client",
            Error::CniSelector(_) => "cni_selector",
            Error::Metrics(_) => "metrics",
            Error::SocketFactory(_) => "socket_factory",
            Error::Listen { .. } => "listen",
            Error::Tls(_) => "tls",
            Error::Signal(_) => "signal",
            Error::TaskEnded(_) => "task_ended",
        }
    }
}

/// Sleeps until `at` (a retry's time); never wakes without one.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Resolves once `shutdown` turns true, or its sender is gone.
pub(crate) async fn stop_requested(shutdown: &mut watch::Receiver<bool>) {
    // An error means the sender is gone: nobody can ask for a stop any more, so stop.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Runs the agent until SIGTERM (`Ok`) or until a critical task ends (`Err`).
pub async fn run(config: AgentConfig) -> Result<(), Error> {
    let AgentConfig {
        node_name,
        listen,
        profile,
        concurrency,
        cni_selector,
        events,
        status_interval,
        view_stale_after,
        termination_log: _,
        shutdown_grace,
        pair_metrics,
        watch_scope,
        api: serving,
    } = config;
    info!(node = %node_name, %listen, profile = profile.name, concurrency, events, watch_scope = %watch_scope, "starting");
    if serving.auth == AuthMode::Disabled {
        warn!(
            "API authentication is disabled (--api-auth=false): anyone who reaches {listen} can read pairs and metrics and run probes"
        );
    }

    // Configuration errors first: they need no cluster to report.
    let tls = api::tls::server_config(&serving.tls)?;
    let mut cni = CniAgentMatcher::builtin();
    if let Some(selector) = &cni_selector {
        cni = cni.with_extra(selector)?;
    }
    let client = kube::Client::try_default()
        .await
        .map_err(Error::KubeClient)?;
    let view = ClusterView::new(cni.clone());

    let registry = Arc::new(Registry::new());
    let metrics = Arc::new(Metrics::register(&registry)?);
    metrics.pairs.set_series(pair_metrics);
    let exposition = Exposition::new(registry.clone(), &metrics);
    IndexCollector::register(&registry, view.index.clone())?;

    let factory = SocketFactory::start().map_err(Error::SocketFactory)?;
    let pipeline = Arc::new(Pipeline::new(
        Prober::new(factory),
        PipelineConfig {
            profile,
            concurrency,
            cni,
            ..PipelineConfig::default()
        },
    ));
    let listener = bind(listen).await?;
    let health_listener = bind(serving.health_listen).await?;
    let connection_metrics = ConnectionMetrics::register(&registry)?;
    let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(Error::Signal)?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut tasks = CriticalTasks::new();

    // Watchers: retry forever; returning at all is fatal.
    let pod_scope = match watch_scope {
        WatchScope::Node => PodScope::node(&node_name),
        WatchScope::Cluster => PodScope::cluster(),
    };
    let watchers = Watchers::new(client.clone(), view.clone()).with_pod_scope(pod_scope);
    tasks.spawn(
        "watchers",
        async move { Err(watchers.run().await.to_string()) }.instrument(info_span!("watchers")),
    );
    if !events {
        info!("events disabled (--events=false)");
    }
    let shared = Shared {
        view: view.clone(),
        pipeline: pipeline.clone(),
        metrics: metrics.clone(),
        client: client.clone(),
    };
    let outputs = spawn_node(
        &mut tasks,
        &shared,
        NodeTasks {
            node: node_name.clone(),
            concurrency,
            events,
            status_interval,
            shutdown_grace,
            timetable: TimetableConfig::default(),
            view_stale_after,
        },
        &shutdown_rx,
    );
    let pairs_rx = outputs.pairs;

    // ProbeRequests.
    let on_demand: Arc<dyn OnDemandProber> =
        Arc::new(on_demand::ViewProber::new(pipeline.clone(), view.clone()));
    let runner = RequestRunner::new(
        RequestRunnerConfig::new(&node_name, shutdown_grace),
        view.clone(),
        on_demand.clone(),
        RequestStatusWriter::new(client.clone()),
    );
    let stop = shutdown_rx.clone();
    tasks.spawn_graceful(
        "proberequests",
        async move {
            runner.run(stop).await;
            Err("the ProbeRequest runner stopped".into())
        }
        .instrument(info_span!("proberequests")),
    );

    spawn_view_metrics(&mut tasks, &view, metrics, view_stale_after, &shutdown_rx);
    spawn_malloc_trim(&mut tasks, &shutdown_rx);

    // HTTP API.
    let probe_service: Arc<dyn ProbeService> = Arc::new(
        KubeProbeService::new(client.clone(), on_demand)
            .with_audiences(serving.audiences.clone(), serving.read_audiences.clone()),
    );
    let state = AppState::new(
        node_name.as_str(),
        exposition,
        view.index.clone(),
        view.readiness.subscribe(),
        pairs_rx,
        probe_service,
    )
    .with_auth(serving.auth)
    .with_lookup(view.lookup());
    let serve_config = ServeConfig {
        max_connections: serving.max_connections,
        shutdown_grace,
        tls: Some(tls),
        ..ServeConfig::default()
    };
    let (router, health_router) = (api::router(state.clone()), api::health_router(state));
    info!(addr = %listen, "serving /metrics, /v1/pairs and /v1/probe over HTTPS");
    spawn_server(
        &mut tasks,
        "http",
        (listener, router),
        serve_config,
        connection_metrics,
        shutdown_rx.clone(),
    );
    info!(addr = %serving.health_listen, "serving /healthz and /readyz");
    let health_config = ServeConfig {
        max_connections: 16,
        shutdown_grace,
        ..ServeConfig::default()
    };
    spawn_server(
        &mut tasks,
        "health",
        (health_listener, health_router),
        health_config,
        ConnectionMetrics::unregistered(),
        shutdown_rx.clone(),
    );

    let signal = tokio::select! {
        exit = tasks.next_exit() => {
            error!(task = exit.task, reason = %exit.reason, "a critical task ended; exiting");
            shutdown_tx.send_replace(true);
            return Err(Error::TaskEnded(exit));
        }
        signal = shutdown_signal(Some(terminate)) => signal,
    };
    info!(%signal, grace = ?shutdown_grace, "shutting down");
    shutdown_tx.send_replace(true);
    // The scheduler and the runner use the grace period themselves; the margin lets them
    // publish and write what they finished.
    tasks.stop(shutdown_grace + Duration::from_secs(2)).await;
    info!("stopped");
    Ok(())
}

/// What every node's tasks in one process share.
#[derive(Clone)]
pub struct Shared {
    pub view: ClusterView,
    pub pipeline: Arc<Pipeline>,
    pub metrics: Arc<Metrics>,
    /// Where Events and statuses are written: the API server, or the demo's in-memory API.
    pub client: kube::Client,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

/// How one node's tasks run.
#[derive(Clone, Debug)]
pub struct NodeTasks {
    /// The node whose source pods are probed.
    pub node: String,
    /// Scheduled probes in flight at once.
    pub concurrency: usize,
    /// Publish Kubernetes Events on source pods.
    pub events: bool,
    /// How often ProbeSpec statuses are written.
    pub status_interval: Duration,
    /// How long probes in flight may take after shutdown.
    pub shutdown_grace: Duration,
    pub timetable: TimetableConfig,
    /// How long a watch may fail before the scheduler holds new policy verdicts.
    pub view_stale_after: Duration,
}

/// What one node's scheduler publishes.
#[derive(Debug)]
pub struct NodeOutputs {
    /// The node's pairs (for `/v1/pairs`; the status writer has its own receiver).
    pub pairs: watch::Receiver<PublishedPairs>,
    /// What the scheduler made of each spec.
    pub specs: watch::Receiver<Arc<SpecSummaries>>,
    pub progress: watch::Receiver<Progress>,
}

/// Spawns the tasks of one node: its scheduler, its Event publisher (with `events`) and its
/// ProbeSpec status writer. The agent runs one node; the demo runs every node of its
/// simulated cluster in one process, as that cluster's agents would.
pub fn spawn_node(
    tasks: &mut CriticalTasks,
    shared: &Shared,
    node: NodeTasks,
    shutdown: &watch::Receiver<bool>,
) -> NodeOutputs {
    let (pairs_tx, pairs_rx) = watch::channel(PublishedPairs::default());
    let (specs_tx, specs_rx) = watch::channel(Arc::new(SpecSummaries::new()));
    let (progress_tx, progress_rx) = watch::channel(Progress::default());
    let span_node = node.node.clone();

    // Events: drained from a queue so a slow API server never stalls probing.
    let event_queue = node.events.then(|| {
        let (tx, rx) = mpsc::channel(event_queue::EVENT_QUEUE);
        let recorder =
            EventRecorder::new(shared.client.clone(), EventsConfig::for_node(&node.node));
        tasks.spawn_graceful(
            "events",
            async move {
                event_queue::publish_events(recorder, rx).await;
                Err("the event queue closed".into())
            }
            .instrument(info_span!("events", node = %span_node)),
        );
        tx
    });

    let mut config = ProbeLoopConfig::new(&node.node, node.concurrency, node.shutdown_grace);
    config.timetable = node.timetable;
    config.view_stale_after = node.view_stale_after;
    let scheduler = ProbeLoop::new(
        config,
        shared.view.clone(),
        Arc::new(PipelineProber::new(shared.pipeline.clone())),
        ProbeLoopOutputs {
            metrics: shared.metrics.clone(),
            pairs: pairs_tx,
            specs: specs_tx,
            events: event_queue,
            progress: Some(progress_tx),
        },
        Instant::now(),
    );
    let stop = shutdown.clone();
    tasks.spawn_graceful(
        "scheduler",
        async move {
            scheduler.run(stop).await;
            Err("the scheduler stopped".into())
        }
        .instrument(info_span!("scheduler", node = %span_node)),
    );

    let writer = SpecStatusWriter::new(shared.client.clone(), StatusConfig::for_node(&node.node));
    let (ready, stop, pairs, specs) = (
        shared.view.readiness.subscribe(),
        shutdown.clone(),
        pairs_rx.clone(),
        specs_rx.clone(),
    );
    let interval = node.status_interval;
    tasks.spawn_graceful(
        "status",
        async move {
            spec_status::write_spec_statuses(writer, specs, pairs, ready, interval, stop).await;
            Err("the status writer stopped".into())
        }
        .instrument(info_span!("status", node = %span_node)),
    );
    NodeOutputs {
        pairs: pairs_rx,
        specs: specs_rx,
        progress: progress_rx,
    }
}

/// Spawns the task that keeps the view's metrics (watch restarts, index sizes) current.
pub fn spawn_view_metrics(
    tasks: &mut CriticalTasks,
    view: &ClusterView,
    metrics: Arc<Metrics>,
    stale_after: Duration,
    shutdown: &watch::Receiver<bool>,
) {
    let (view, stop) = (view.clone(), shutdown.clone());
    tasks.spawn(
        "view-metrics",
        async move {
            view_metrics::refresh_view_metrics(view, metrics, stale_after, stop).await;
            Err("the view metrics task stopped".into())
        }
        .instrument(info_span!("view_metrics")),
    );
}

/// Gives freed heap pages back to the kernel every [`crate::malloc::TRIM_EVERY`], until shutdown.
pub fn spawn_malloc_trim(tasks: &mut CriticalTasks, shutdown: &watch::Receiver<bool>) {
    let stop = shutdown.clone();
    tasks.spawn(
        "malloc-trim",
        async move {
            crate::malloc::trim_until(stop).await;
            Err("the malloc trim task stopped".into())
        }
        .instrument(info_span!("malloc_trim")),
    );
}

/// Serves `router` on `listener` as a critical task named `name`, until shutdown.
pub fn spawn_server(
    tasks: &mut CriticalTasks,
    name: &'static str,
    (listener, router): (tokio::net::TcpListener, axum::Router),
    config: ServeConfig,
    metrics: ConnectionMetrics,
    mut stop: watch::Receiver<bool>,
) {
    let addr = listener
        .local_addr()
        .map(|addr| addr.to_string())
        .unwrap_or_default();
    tasks.spawn_graceful(
        name,
        async move {
            let served = api::serve::serve(listener, router, config, metrics, async move {
                stop_requested(&mut stop).await
            })
            .await;
            match served {
                Ok(()) => Err(format!("the {name} server stopped")),
                Err(error) => Err(format!("the {name} server failed: {error}")),
            }
        }
        .instrument(info_span!("server", name, server.addr = %addr)),
    );
}

async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, Error> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Listen { addr, source })
}

#[cfg(test)]
mod tests;
