//! Where the agent's memory goes at 10,000 pairs on one node: the live heap of each structure
//! it keeps for the 100 x 100 scenario (`agent/scenarios/scale-100x100.yaml`: 100 pods, one
//! ProbeSpec from every pod to every pod, 9,900 pairs; here every pod is on `node-1`, so one
//! agent owns them all), counted by a global allocator, per indexed pod and per pair, then the
//! process RSS. One in ten destinations is isolated by a default-deny policy, so a tenth of the
//! pairs are `blocked_by_policy` with their full explanation; the rest are `ok`, as the
//! pipeline reports them.
//!
//! Run: `cargo bench -p netreach --bench memory`; `-- --agent-only` runs only the scheduler and
//! prints the process RSS while it runs: an agent at 9,900 pairs, in this bench's smaller
//! binary (no kube client, no API server).
//!
//! Last, the whole agent: a real [`ProbeLoop`] with a prober that diagnoses without a network,
//! run until every pair has been probed once; its row is all the agent then holds (the view,
//! the snapshot, timetable, reports, published pairs, metrics).
//!
//! Two columns: `requested` is what the code asked for; `malloc` adds what glibc's malloc
//! makes of it (16-byte chunks with an 8-byte header, at least 32 bytes), which is what the
//! heap holds resident. The metrics table costs the same whatever `--pair-metrics` says;
//! the setting decides what a scrape builds (the scrape rows: the peak above the table).

#![allow(clippy::print_stdout)]
// The counting allocator: `GlobalAlloc` is an unsafe trait; it forwards to `System`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use netreach::cluster::changes::ChangeLog;
use netreach::cluster::load::Loaded;
use netreach::cluster::synthetic::{SyntheticSpec, cluster_yaml};
use netreach::cluster::watch::{ClusterView, CniAgentMatcher, Readiness};
use netreach::cluster::{Index, Spec};
use netreach::diagnose;
use netreach::pair::{Pair, PairReport};
use netreach::pipeline::{PairReports, PipelineConfig, ProbeContext, assess_observation};
use netreach::policy::{Engine, Profile};
use netreach::probe::{Observation, Outcome};
use netreach::report::metrics::{Exposition, Metrics, PairKey, PairSeries, PairState};
use netreach::runtime::probe_loop::{ProbeLoop, ProbeLoopConfig, ProbeLoopOutputs, SpecSummaries};
use netreach::runtime::prober::{PairProber, ProbeJob, ViewSnapshot};
use netreach::schedule::{Plan, Timetable, TimetableConfig, plan};
use probe_spec::ProbeSpec;
use prometheus::Registry;
use serde_json::{Value, json};
use tokio::sync::watch;

// === The counting allocator ===

struct Counting;

static REQUESTED: AtomicUsize = AtomicUsize::new(0);
static CHUNKS: AtomicUsize = AtomicUsize::new(0);
static PEAK_CHUNKS: AtomicUsize = AtomicUsize::new(0);

/// What glibc's malloc takes for `size` bytes: an 8-byte header, 16-byte granules, 32 bytes
/// at least (large blocks are mmapped, a page at a time).
fn chunk(size: usize) -> usize {
    if size >= 128 * 1024 {
        (size + 8).div_ceil(4096) * 4096
    } else {
        ((size + 8).div_ceil(16) * 16).max(32)
    }
}

fn grew(size: usize) {
    REQUESTED.fetch_add(size, Ordering::Relaxed);
    let now = CHUNKS.fetch_add(chunk(size), Ordering::Relaxed) + chunk(size);
    PEAK_CHUNKS.fetch_max(now, Ordering::Relaxed);
}

fn shrank(size: usize) {
    REQUESTED.fetch_sub(size, Ordering::Relaxed);
    CHUNKS.fetch_sub(chunk(size), Ordering::Relaxed);
}

// SAFETY: every call forwards to `System` with the caller's arguments; the counters only
// observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `GlobalAlloc::alloc`.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `GlobalAlloc::alloc_zeroed`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract for `GlobalAlloc::dealloc`.
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract for `GlobalAlloc::realloc`.
        let moved = unsafe { System.realloc(ptr, layout, new_size) };
        if !moved.is_null() {
            shrank(layout.size());
            grew(new_size);
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Live heap now: (requested, malloc chunks).
fn live() -> (usize, usize) {
    (
        REQUESTED.load(Ordering::Relaxed),
        CHUNKS.load(Ordering::Relaxed),
    )
}

/// Builds a value and returns it with the live heap it added (what it keeps, not what
/// building it took on the way).
fn measure<T>(build: impl FnOnce() -> T) -> (T, (usize, usize)) {
    let (requested, chunks) = live();
    let value = build();
    let (requested_after, chunks_after) = live();
    (
        value,
        (
            requested_after.saturating_sub(requested),
            chunks_after.saturating_sub(chunks),
        ),
    )
}

// === The cluster ===

const SCENARIO: &str = include_str!("../scenarios/scale-100x100.yaml");
/// Every tenth destination pod is isolated for ingress with no rule: blocked.
const DENIED_EVERY: usize = 10;

/// The node every pod runs on here: one agent owns all the pairs.
const NODE: &str = "node-1";

/// The scenario's objects, every pod on [`NODE`], every tenth labelled `deny: "true"`, and a
/// default-deny policy selecting those.
fn objects() -> Vec<Value> {
    let scenario: Value = serde_yaml_ng::from_str(SCENARIO).expect("the scenario parses");
    let mut objects = scenario["objects"].as_array().cloned().expect("objects");
    let mut pods = 0;
    for object in &mut objects {
        if object["kind"] == "Pod" {
            object["spec"]["nodeName"] = json!(NODE);
            if pods % DENIED_EVERY == 0 {
                object["metadata"]["labels"]["deny"] = json!("true");
            }
            pods += 1;
        }
    }
    objects.push(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "deny-some", "namespace": "load"},
        "spec": {"podSelector": {"matchLabels": {"deny": "true"}}, "policyTypes": ["Ingress"]}
    }));
    objects
}

fn load(objects: &[Value]) -> (Index, Vec<ProbeSpec>) {
    let mut loaded = Loaded::new();
    for object in objects {
        loaded.load_value("scale-100x100", object.clone());
    }
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    let specs = loaded
        .custom_objects
        .iter()
        .map(|(_, value)| serde_json::from_value(value.clone()).expect("a ProbeSpec"))
        .collect();
    (loaded.index, specs)
}

/// What the probe of `pair` saw: open, or a timeout where the policy drops it.
fn observation(index: &Index, pair: &Pair) -> Observation {
    let denied = pair
        .target
        .pod()
        .and_then(|pod| index.pod(pod))
        .is_some_and(|pod| pod.labels.contains_key("deny"));
    let (outcome, latency, detail) = if denied {
        (
            Outcome::Timeout,
            Duration::from_secs(2),
            "no answer to the connection request (TCP SYN, SCTP INIT) within 2s (dropped?)",
        )
    } else {
        (Outcome::Open, Duration::from_micros(310), "connected")
    };
    Observation {
        outcome,
        latency,
        icmp: None,
        rejected_by_policy: false,
        errno: None,
        detail: detail.to_string(),
        answers: Vec::new(),
        not_probed: None,
        expects_reply: false,
        mesh_redirected: false,
    }
}

// === The table ===

struct Row {
    component: String,
    bytes: (usize, usize),
    /// Bytes per what: ("pod", 100).
    per: Option<(&'static str, usize)>,
}

fn row(
    component: impl Into<String>,
    bytes: (usize, usize),
    per: Option<(&'static str, usize)>,
) -> Row {
    Row {
        component: component.into(),
        bytes,
        per,
    }
}

fn print(rows: &[Row]) {
    println!(
        "{:<64} {:>12} {:>12} {:>16}",
        "component", "requested", "malloc", "malloc per unit"
    );
    for Row {
        component,
        bytes: (requested, chunks),
        per,
    } in rows
    {
        let per = per.map_or(String::new(), |(unit, n)| {
            format!("{} / {unit}", chunks / n.max(1))
        });
        println!("{component:<64} {requested:>12} {chunks:>12} {per:>16}");
    }
}

/// A scrape, as `GET /metrics` encodes it; returns the peak heap above `base`.
fn scrape_peak(exposition: &Exposition) -> usize {
    let base = CHUNKS.load(Ordering::Relaxed);
    PEAK_CHUNKS.store(base, Ordering::Relaxed);
    let body = exposition.encode().expect("encode");
    drop(body);
    PEAK_CHUNKS.load(Ordering::Relaxed) - base
}

/// The agent's `--concurrency` default.
const CONCURRENCY: usize = 64;

/// Runs a real scheduler over `objects` until it has published every pair once; returns the
/// live heap it then holds (everything built here: view, scheduler, metrics, prober) and
/// the pairs published.
fn agent_steady_state(
    index: &Index,
    specs: &[ProbeSpec],
    context: Arc<ProbeContext>,
) -> ((usize, usize), usize) {
    // As the agent's: two workers (`cli::runtime`).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("a runtime");
    let (requested, chunks) = live();
    let view = ClusterView::with_readiness(CniAgentMatcher::builtin(), Readiness::ready());
    *view.index.write() = index.clone();
    for spec in specs {
        let key = netreach::cluster::model::ObjectRef::new(
            spec.metadata.namespace.as_deref().unwrap_or_default(),
            spec.metadata.name.as_deref().unwrap_or_default(),
        );
        view.specs.write().insert(key, spec.clone());
    }
    let registry = Registry::new();
    let metrics = Arc::new(Metrics::register(&registry).expect("metrics register"));
    let (pairs_tx, mut pairs) = watch::channel(Arc::new(Vec::new()));
    let (specs_tx, _specs) = watch::channel(Arc::new(SpecSummaries::new()));
    let prober: Arc<dyn PairProber> = Arc::new(
        move |view: Arc<ViewSnapshot>, job: ProbeJob| -> BoxFuture<'static, PairReports> {
            let context = context.clone();
            Box::pin(async move {
                let observation = observation(&view.index, &job.pair);
                PairReports::one(assess_observation(
                    &context,
                    &view.index,
                    &view.changes,
                    &job.pair,
                    observation,
                    job.expect,
                    &diagnose::Config::default(),
                ))
            })
        },
    );
    let scheduler = ProbeLoop::new(
        ProbeLoopConfig::new(NODE, CONCURRENCY, Duration::from_secs(1)),
        view.clone(),
        prober,
        ProbeLoopOutputs {
            metrics: metrics.clone(),
            pairs: pairs_tx,
            specs: specs_tx,
            events: None,
            progress: None,
        },
        Instant::now(),
    );
    let (stop, stopped) = watch::channel(false);
    runtime.block_on(async {
        let running = tokio::spawn(scheduler.run(stopped));
        let want = index.pods().count() * (index.pods().count() - 1);
        pairs
            .wait_for(|published| published.len() >= want)
            .await
            .expect("the scheduler publishes");
        // One more publish interval: what is in flight lands, the steady state remains.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let held = live();
        let published = pairs.borrow().len();
        if agent_only() {
            println!(
                "agent process while running: {}, {}, {}, {}, {}",
                status("VmRSS"),
                status("VmHWM"),
                status("RssAnon"),
                status("RssFile"),
                status("Threads"),
            );
        }
        let _ = stop.send(true);
        let _ = running.await;
        (
            (
                held.0.saturating_sub(requested),
                held.1.saturating_sub(chunks),
            ),
            published,
        )
    })
}

/// `-- --agent-only`: the scheduler alone, for the process RSS.
fn agent_only() -> bool {
    std::env::args().any(|arg| arg == "--agent-only")
}

fn status(field: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|line| line.starts_with(field))
        .map_or_else(
            || format!("{field} ?"),
            |line| line.split_whitespace().collect::<Vec<_>>().join(" "),
        )
}

fn main() {
    let started = Instant::now();
    let mut rows = Vec::new();

    let (objects, object_bytes) = measure(objects);
    let ((index, probe_specs), bytes) = measure(|| load(&objects));
    drop(objects);
    if agent_only() {
        let context = Arc::new(ProbeContext::new(
            &index,
            &ChangeLog::default(),
            &PipelineConfig::default(),
        ));
        let ((_, chunks), published) = agent_steady_state(&index, &probe_specs, context);
        println!(
            "agent at {published} pairs: heap {chunks} bytes in malloc chunks ({} / pair)",
            chunks / published.max(1),
        );
        return;
    }
    let pods = index.pods().count();
    rows.push(row(
        "scenario objects as JSON values (what the demo's testbed keeps)",
        object_bytes,
        Some(("pod", pods)),
    ));
    rows.push(row(
        format!("Index ({pods} pods, 1 policy)"),
        bytes,
        Some(("pod", pods)),
    ));

    let changes = ChangeLog::default();
    let config = PipelineConfig::default();
    let (context, bytes) = measure(|| Arc::new(ProbeContext::new(&index, &changes, &config)));
    rows.push(row(
        "policy Engine + CNI health (this index)",
        bytes,
        Some(("pod", pods)),
    ));

    let specs: Vec<Spec> = probe_specs
        .iter()
        .map(|spec| Spec::try_from(spec).expect("a valid ProbeSpec"))
        .collect();
    let (plans, bytes) = measure(|| {
        specs
            .iter()
            .map(|spec| plan(&index, spec, NODE).expect("the spec plans"))
            .collect::<Vec<Plan>>()
    });
    let pairs: usize = plans.iter().map(|plan| plan.pairs.len()).sum();
    rows.push(row(
        "plans (schedule::plan, transient)",
        bytes,
        Some(("pair", pairs)),
    ));

    let origin = Instant::now();
    let (timetable, bytes) = measure(|| {
        let mut timetable = Timetable::new(origin, TimetableConfig::default());
        for plan in &plans {
            timetable.sync(plan, origin);
        }
        timetable
    });
    rows.push(row("scheduler Timetable", bytes, Some(("pair", pairs))));

    let expect = plans.first().map(|plan| plan.expect).unwrap_or_default();
    let diagnose_config = diagnose::Config::default();
    let (reports, bytes) = measure(|| {
        timetable
            .pairs()
            .map(|pair| {
                assess_observation(
                    &context,
                    &index,
                    &changes,
                    pair,
                    observation(&index, pair),
                    expect,
                    &diagnose_config,
                )
            })
            .collect::<Vec<PairReport>>()
    });
    let blocked = reports
        .iter()
        .filter(|r| r.meets_expectation == Some(false))
        .count();
    rows.push(row(
        format!(
            "PairReports ({} ok, {blocked} blocked)",
            reports.len() - blocked
        ),
        bytes,
        Some(("pair", reports.len())),
    ));
    let inline = std::mem::size_of::<PairReport>();
    rows.push(row(
        format!("  of which the report structs ({inline} bytes each)"),
        (inline * reports.len(), inline * reports.len()),
        Some(("pair", reports.len())),
    ));
    rows.push(row(
        "  of which texts (pieces shared between reports), policies",
        (
            bytes.0.saturating_sub(inline * reports.len()),
            bytes.1.saturating_sub(inline * reports.len()),
        ),
        Some(("pair", reports.len())),
    ));
    for series in [PairSeries::Exceptions, PairSeries::All] {
        let registry = Arc::new(Registry::new());
        let (metrics, bytes) = measure(|| {
            let metrics = Metrics::register(&registry).expect("metrics register");
            metrics.pairs.set_series(series);
            for report in &reports {
                if let Some(key) = PairKey::of(report) {
                    metrics.pairs.set(&key, &PairState::from(report));
                }
            }
            metrics
        });
        rows.push(row(
            format!("Metrics registry, --pair-metrics {series}"),
            bytes,
            Some(("pair", reports.len())),
        ));
        let peak = scrape_peak(&Exposition::new(registry, &metrics));
        rows.push(row(
            format!("  one scrape with {series} (transient peak)"),
            (peak, peak),
            Some(("pair", reports.len())),
        ));
        drop(metrics);
    }

    let synthetic = cluster_yaml(SyntheticSpec::BENCH);
    let (big, bytes) = measure(|| {
        let mut loaded = Loaded::new();
        loaded.load_str("synthetic", &synthetic);
        loaded.index
    });
    let big_pods = big.pods().count();
    let big_policies = big.policies().count();
    rows.push(row(
        format!("Index (synthetic: {big_pods} pods, {big_policies} policies)"),
        bytes,
        Some(("pod", big_pods)),
    ));
    let (engine, bytes) = measure(|| Engine::new(&big, Profile::default()));
    rows.push(row(
        "policy Engine (synthetic cluster)",
        bytes,
        Some(("pod", big_pods)),
    ));
    drop((engine, big));

    drop((plans, timetable, reports));
    let (bytes, published) = agent_steady_state(&index, &probe_specs, context.clone());
    rows.push(row(
        format!("agent: ProbeLoop::run, every pair probed ({published} reports)"),
        bytes,
        Some(("pair", published)),
    ));

    println!(
        "netreach memory at {pairs} pairs ({pods} pods, all on {NODE}), live heap per structure:"
    );
    print(&rows);
    println!(
        "\nprocess: {}, {}, heap now {} bytes in malloc chunks ({:.1} s)",
        status("VmRSS"),
        status("VmHWM"),
        live().1,
        started.elapsed().as_secs_f64()
    );
}
