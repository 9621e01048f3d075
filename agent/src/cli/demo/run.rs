//! The demo's main loop: the agent's runtime for every simulated node, fed by the scenario's
//! objects, until one full round (`--once`), `--rounds`, Ctrl-C or a failed task.

use std::collections::BTreeSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, anyhow, bail};
use prometheus::Registry;
use serde_json::Value;
use tokio::sync::watch;

use super::output::{self, Printed};
use super::{Args, edits};
use crate::api::serve::{ConnectionMetrics, ServeConfig};
use crate::api::{self, AppState};
use crate::cluster::watch::{ClusterView, CniAgentMatcher, SnapshotSource};
use crate::netns::SocketFactory;
use crate::pair::{PairReport, PublishedPairs};
use crate::pipeline::{Pipeline, PipelineConfig};
use crate::probe::Prober;
use crate::report::memory_api::MemoryApi;
use crate::report::metrics::{Exposition, IndexCollector, Metrics};
use crate::runtime::lifecycle::CriticalTasks;
use crate::runtime::{self as runtime, NodeOutputs, NodeTasks, Shared};
use crate::schedule::{FirstProbe, TimetableConfig};

/// How often statuses are written (the agent's default is 30 s; the demo shows them sooner).
const STATUS_INTERVAL: Duration = Duration::from_secs(1);
/// How often the demo looks at progress, the scenario file and the Events.
const TICK: Duration = Duration::from_millis(250);
/// How long probes in flight get at the end.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// The largest scenario file a live edit reads.
const MAX_SCENARIO_BYTES: u64 = 16 * 1024 * 1024;

pub(super) async fn run(args: Args, bed: &testbed::Testbed) -> anyhow::Result<()> {
    let Args {
        scenario: scenario_path,
        once,
        format,
        listen,
        pair_metrics,
        rounds,
        interval,
        concurrency,
        profile,
    } = args;
    let view = ClusterView::new(CniAgentMatcher::builtin());
    let mut source = SnapshotSource::new();
    let mut running = bed.objects();
    let shown = with_interval(&running, interval);
    let played = source.play(&view, &shown, SystemTime::now());
    for problem in &played.problems {
        eprintln!("warning: {problem}");
    }
    if view.specs().is_empty() {
        bail!("the scenario declares no ProbeSpec or ClusterProbeSpec: nothing to probe");
    }
    let api = MemoryApi::new();
    api.sync(&shown);

    let registry = Arc::new(Registry::new());
    let metrics = Arc::new(Metrics::register(&registry).context("registering metrics")?);
    metrics.pairs.set_series(pair_metrics);
    let exposition = Exposition::new(registry.clone(), &metrics);
    IndexCollector::register(&registry, view.index.clone())
        .context("registering the index collector")?;
    let factory = SocketFactory::start().context("starting the socket factory")?;
    let pipeline = Arc::new(Pipeline::new(
        Prober::new(factory),
        PipelineConfig {
            profile,
            ..PipelineConfig::default()
        },
    ));

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut tasks = CriticalTasks::new();
    let shared = Shared {
        view: view.clone(),
        pipeline,
        metrics: metrics.clone(),
        client: api.client(),
    };
    let timetable = TimetableConfig {
        first_probe: FirstProbe::Immediately,
        ..TimetableConfig::default()
    };
    let nodes: Vec<NodeOutputs> = bed
        .scenario()
        .nodes
        .iter()
        .map(|node| {
            let tasks_of_node = NodeTasks {
                node: node.clone(),
                concurrency,
                events: true,
                status_interval: STATUS_INTERVAL,
                shutdown_grace: SHUTDOWN_GRACE,
                timetable: timetable.clone(),
                view_stale_after: crate::runtime::view_metrics::STALE_AFTER,
            };
            runtime::spawn_node(&mut tasks, &shared, tasks_of_node, &shutdown_rx)
        })
        .collect();
    runtime::spawn_view_metrics(
        &mut tasks,
        &view,
        metrics,
        crate::runtime::view_metrics::STALE_AFTER,
        &shutdown_rx,
    );
    runtime::spawn_malloc_trim(&mut tasks, &shutdown_rx);
    if !once {
        serve_api(&mut tasks, &view, exposition, &nodes, listen, &shutdown_rx).await?;
    }

    let mut file = scenario_path
        .as_deref()
        .filter(|_| !once)
        .map(ScenarioFile::new);
    let mut dataplane = bed.scenario().clone();
    let mut printed = Printed::new(format, !once && std::io::stdout().is_terminal());
    let result = loop {
        tokio::select! {
            exit = tasks.next_exit() => break Err(anyhow!("the {} task stopped: {}", exit.task, exit.reason)),
            _ = tokio::signal::ctrl_c() => break Ok(()),
            () = tokio::time::sleep(TICK) => {}
        }
        let done = rounds_done(&nodes);
        if once {
            if done.is_some_and(|n| n >= 1) {
                // Let the status writers' next tick and the Event queue catch up.
                tokio::time::sleep(STATUS_INTERVAL + Duration::from_millis(500)).await;
                let (events, _) = api.events_after(0);
                break printed.print(&all_pairs(&nodes), &problems(&nodes), &events, &api);
            }
            continue;
        }
        if let Some(file) = &mut file
            && let Some(text) = file.poll()
        {
            let context = EditContext {
                bed,
                view: &view,
                api: &api,
                interval,
            };
            context.apply(
                &text,
                file.path(),
                &mut dataplane,
                &mut running,
                &mut source,
            );
        }
        if let Err(error) = printed.live(done, &all_pairs(&nodes), &problems(&nodes), &api) {
            break Err(error);
        }
        if rounds != 0 && done.is_some_and(|n| n >= u64::from(rounds)) {
            break Ok(());
        }
    };
    shutdown_tx.send_replace(true);
    tasks.stop(SHUTDOWN_GRACE + Duration::from_secs(2)).await;
    result
}

/// Serves /metrics, /healthz, /readyz and /v1/pairs (every node's pairs) on `listen`.
async fn serve_api(
    tasks: &mut CriticalTasks,
    view: &ClusterView,
    exposition: Exposition,
    nodes: &[NodeOutputs],
    listen: std::net::SocketAddr,
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let pairs = spawn_pair_merge(tasks, nodes);
    let state = AppState::new(
        "demo",
        exposition,
        view.index.clone(),
        view.readiness.subscribe(),
        pairs,
        Arc::new(NoKubeApi),
    )
    // No API server to review tokens with: the demo's API is open, so it belongs on loopback.
    .with_auth(api::AuthMode::Disabled);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    if !listen.ip().is_loopback() {
        eprintln!(
            "warning: the demo's API has no authentication and {listen} is not a loopback address; anyone who reaches it can read the simulated cluster's pairs"
        );
    }
    eprintln!("serving /metrics, /healthz, /readyz and /v1/pairs on http://{listen}");
    eprintln!("web page: http://{listen}/");
    let config = ServeConfig {
        shutdown_grace: SHUTDOWN_GRACE,
        ..ServeConfig::default()
    };
    let connections =
        ConnectionMetrics::register(state.metrics.registry()).context("registering metrics")?;
    runtime::spawn_server(
        tasks,
        "http",
        (listener, api::router(state)),
        config,
        connections,
        shutdown.clone(),
    );
    Ok(())
}

/// Every node's pairs in one list, kept current by a task, for `/v1/pairs`.
fn spawn_pair_merge(
    tasks: &mut CriticalTasks,
    nodes: &[NodeOutputs],
) -> watch::Receiver<PublishedPairs> {
    let mut receivers: Vec<_> = nodes.iter().map(|n| n.pairs.clone()).collect();
    let (merged_tx, merged_rx) = watch::channel(PublishedPairs::default());
    tasks.spawn("pairs", async move {
        loop {
            let mut pairs: Vec<Arc<PairReport>> = receivers
                .iter_mut()
                .flat_map(|r| r.borrow_and_update().iter().cloned().collect::<Vec<_>>())
                .collect();
            pairs.sort_by(|a, b| a.listing_order(b));
            merged_tx.send_replace(Arc::new(pairs));
            let changes = receivers.iter_mut().map(|r| Box::pin(r.changed()));
            if futures::future::select_all(changes).await.0.is_err() {
                return Err("a scheduler's pairs channel closed".into());
            }
        }
    });
    merged_rx
}

/// Full rounds over every node's pairs: the fewest probes any planned pair has had; `None`
/// until every node has planned. With no pairs at all, `u64::MAX`.
fn rounds_done(nodes: &[NodeOutputs]) -> Option<u64> {
    let mut fewest = u64::MAX;
    for node in nodes {
        let progress = *node.progress.borrow();
        if progress.plans == 0 {
            return None;
        }
        if progress.pairs > 0 {
            fewest = fewest.min(progress.rounds);
        }
    }
    Some(fewest)
}

fn all_pairs(nodes: &[NodeOutputs]) -> Vec<PairReport> {
    let mut pairs: Vec<PairReport> = nodes
        .iter()
        .flat_map(|n| {
            n.pairs
                .borrow()
                .iter()
                .map(|report| PairReport::clone(report))
                .collect::<Vec<_>>()
        })
        .collect();
    pairs.sort_by(PairReport::listing_order);
    pairs
}

/// Why specs could not be planned, once each (every node plans every spec).
fn problems(nodes: &[NodeOutputs]) -> Vec<String> {
    let problems: BTreeSet<String> = nodes
        .iter()
        .flat_map(|n| {
            n.specs
                .borrow()
                .values()
                .filter_map(|s| s.problem.clone())
                .collect::<Vec<_>>()
        })
        .collect();
    problems.into_iter().collect()
}

/// The objects as the view gets them: with `--interval`, every ProbeSpec's and
/// ClusterProbeSpec's `spec.interval` replaced.
fn with_interval(objects: &[Value], interval: Option<Duration>) -> Vec<Value> {
    let mut objects = objects.to_vec();
    let Some(interval) = interval else {
        return objects;
    };
    for object in &mut objects {
        let kind = object.get("kind").and_then(Value::as_str);
        if matches!(kind, Some("ProbeSpec" | "ClusterProbeSpec"))
            && let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut)
        {
            spec.insert(
                "interval".into(),
                Value::String(format!("{}ms", interval.as_millis())),
            );
        }
    }
    objects
}

/// The scenario file, polled for edits.
struct ScenarioFile {
    path: PathBuf,
    /// Length, modification time and content hash of the version last read.
    seen: Option<(u64, Option<SystemTime>, u64)>,
}

impl ScenarioFile {
    fn new(path: &Path) -> Self {
        let mut file = Self {
            path: path.to_path_buf(),
            seen: None,
        };
        // The version the demo started with is not an edit.
        let _ = file.poll();
        file
    }

    fn path(&self) -> &Path {
        &self.path
    }

    /// The file's text when it changed since the last poll.
    fn poll(&mut self) -> Option<String> {
        let meta = std::fs::metadata(&self.path).ok()?;
        let (len, modified) = (meta.len(), meta.modified().ok());
        if self.seen.is_some_and(|(l, m, _)| l == len && m == modified) {
            return None;
        }
        let mut text = String::new();
        std::fs::File::open(&self.path)
            .ok()?
            .take(MAX_SCENARIO_BYTES)
            .read_to_string(&mut text)
            .ok()?;
        let mut hasher = DefaultHasher::new();
        text.hash(&mut hasher);
        let hash = hasher.finish();
        let changed = self.seen.is_some_and(|(_, _, h)| h != hash);
        self.seen = Some((len, modified, hash));
        changed.then_some(text)
    }
}

/// What applying an edit of the scenario file touches.
struct EditContext<'a> {
    bed: &'a testbed::Testbed,
    view: &'a ClusterView,
    api: &'a MemoryApi,
    interval: Option<Duration>,
}

impl EditContext<'_> {
    /// Applies an edited scenario: objects as watch events, `dataplane.rules` and faults
    /// reloaded; reports on stderr what it did and what it kept as started.
    fn apply(
        &self,
        text: &str,
        path: &Path,
        dataplane: &mut testbed::Scenario,
        running: &mut Vec<Value>,
        source: &mut SnapshotSource,
    ) {
        let edited = match testbed::Scenario::from_yaml(text, &path.display().to_string()) {
            Ok(edited) => edited,
            Err(error) => {
                eprintln!("scenario edit not applied: {error}");
                return;
            }
        };
        let mut objects = edited.objects.clone();
        edits::keep_uids(running, &mut objects);
        for note in edits::guard_pods(running, &mut objects) {
            eprintln!("scenario edit: {note}");
        }
        let changes = edits::dataplane_changes(dataplane, &edited);
        if changes.rules {
            match self.bed.set_rules(&edited.dataplane.rules) {
                Ok(()) => {
                    eprintln!("scenario edit: dataplane.rules reloaded");
                    dataplane.dataplane.rules = edited.dataplane.rules.clone();
                }
                Err(error) => eprintln!("scenario edit: dataplane.rules not reloaded: {error}"),
            }
        }
        if changes.faults {
            let faults: Vec<testbed::Fault> = edited.all_faults().cloned().collect();
            match self.bed.set_faults(&faults) {
                Ok(()) => {
                    eprintln!("scenario edit: faults reloaded");
                    dataplane.dataplane.faults = faults;
                    dataplane.faults.clear();
                }
                Err(error) => eprintln!("scenario edit: faults not reloaded: {error}"),
            }
        }
        for field in changes.kept {
            eprintln!(
                "scenario edit: {field} changed; kept as started (restart the demo to change it)"
            );
        }
        let shown = with_interval(&objects, self.interval);
        let played = source.play(self.view, &shown, SystemTime::now());
        self.api.sync(&shown);
        for problem in &played.problems {
            eprintln!("scenario edit: {problem}");
        }
        if played.changed() {
            eprintln!(
                "scenario edit applied: {}",
                output::edit_summary(&played.applied, &played.deleted)
            );
        }
        *running = objects;
    }
}

/// The demo has no Kubernetes API: its API runs with auth disabled, and `POST /v1/probe`
/// answers 422 saying that on-demand probes need `netreach agent`.
struct NoKubeApi;

impl api::ProbeService for NoKubeApi {
    fn authenticate<'a>(
        &'a self,
        _token: &'a str,
        _token_use: api::TokenUse,
    ) -> api::BoxFuture<'a, Result<Option<api::UserInfo>, api::ServiceError>> {
        Box::pin(async {
            Err(api::ServiceError::Unavailable("netreach demo has no Kubernetes API for TokenReview; on-demand probes need `netreach agent`".into()))
        })
    }
    fn authorize<'a>(
        &'a self,
        _user: &'a api::UserInfo,
        _access: &'a api::Access,
    ) -> api::BoxFuture<'a, Result<bool, api::ServiceError>> {
        Box::pin(async { Ok(false) })
    }
    fn probe(
        &self,
        _call: api::ProbeCall,
    ) -> api::BoxFuture<'_, Result<PairReport, api::ServiceError>> {
        Box::pin(async {
            Err(api::ServiceError::Rejected(
                "on-demand probes need `netreach agent`".into(),
            ))
        })
    }
}
