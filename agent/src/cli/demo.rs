//! `netreach demo`: builds a simulated cluster from a scenario (a built-in one reproduces
//! every class of the runbook), runs the agent pipeline against it, serves metrics and the
//! API, and prints the pairs with their diagnoses.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use parking_lot::RwLock;
use probe_spec::{ClusterProbeSpec, ProbeSpec};
use prometheus::Registry;
use tokio::sync::watch;

use super::Format;
use crate::api::{self, AppState};
use crate::cluster::Spec;
use crate::cluster::changes::ChangeLog;
use crate::cluster::load::Loaded;
use crate::netns::SocketFactory;
use crate::pair::{PairReport, PublishedPairs};
use crate::policy::Profile;
use crate::probe::Prober;
use crate::report::metrics::{IndexCollector, Metrics, PairKey, PairSeries, PairState};
use crate::run::{NodeScope, Pipeline, PipelineConfig};

/// The built-in scenario: every class of the runbook on two simulated nodes.
pub const BUILTIN_SCENARIO: &str = include_str!("../../scenarios/runbook.yaml");

/// Run the agent pipeline on a simulated cluster built on this host (needs root).
///
/// Builds network namespaces for the scenario's pods behind a router with no uplink,
/// kubepods-style cgroups, nftables enforcement and dnsmasq DNS, then probes every
/// ProbeSpec pair from inside its source pod and diagnoses it. Everything is torn down on
/// exit, on Ctrl-C and on errors.
///
/// Example: netreach demo --once --format json
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A scenario file (format: testbed/README.md); default: the built-in runbook scenario.
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    /// Run one round, print it, tear everything down and exit.
    #[arg(long)]
    once: bool,
    /// Output format: table (a refreshing table in live mode) or json.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Where to serve /metrics, /healthz, /readyz and /v1/pairs (live mode).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9464")]
    listen: SocketAddr,
    /// Which pairs get per-pair metric series on /metrics (live mode): all, exceptions (pairs
    /// that are not ok or miss their expectation) or none; as `netreach agent --pair-metrics`.
    #[arg(long, value_name = "WHICH", default_value = "exceptions", value_parser = PairSeries::from_str)]
    pair_metrics: PairSeries,
    /// Live mode: stop after this many rounds (0: until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    rounds: u32,
    /// Live mode: time between rounds (default: the shortest ProbeSpec interval).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    interval: Option<Duration>,
    /// How the CNI treats what the API leaves open (see `explain --help`).
    #[arg(long, default_value = "upstream", value_parser = Profile::from_str)]
    profile: Profile,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    probe_spec::parse_duration(s).map_err(|e| e.to_string())
}

impl Args {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let Self {
            scenario,
            once,
            format,
            listen,
            pair_metrics,
            rounds,
            interval,
            profile,
        } = self;
        if !super::running_as_root() {
            bail!(
                "netreach demo needs root: it builds network namespaces, cgroups and nftables rules (try sudo)"
            );
        }
        let scenario = match &scenario {
            Some(path) => testbed::Scenario::from_file(path)
                .with_context(|| format!("reading scenario {}", path.display()))?,
            None => testbed::Scenario::from_yaml(BUILTIN_SCENARIO, "built-in runbook scenario")
                .context("the built-in scenario")?,
        };
        testbed::install_signal_teardown().context("installing the Ctrl-C teardown")?;
        eprintln!(
            "building the simulated cluster of scenario {:?} ...",
            scenario.name
        );
        let bed = testbed::Testbed::start(&scenario).context("building the simulated cluster")?;
        eprintln!(
            "{} pods up in {:.2} s (prefix {})",
            bed.pods().len(),
            bed.setup_time().as_secs_f64(),
            bed.prefix()
        );

        let mut loaded = Loaded::new();
        for object in bed.objects() {
            loaded.load_value(&format!("scenario {}", scenario.name), object);
        }
        for problem in &loaded.problems {
            eprintln!("warning: {problem}");
        }
        let specs = probe_specs(&loaded)?;
        if specs.is_empty() {
            bail!("the scenario declares no ProbeSpec or ClusterProbeSpec: nothing to probe");
        }
        let interval = interval.unwrap_or_else(|| shortest_interval(&specs));

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let result = runtime.block_on(async move {
            let factory = SocketFactory::start().context("starting the socket factory")?;
            let pipeline = Pipeline::new(
                Prober::new(factory),
                PipelineConfig {
                    profile,
                    ..PipelineConfig::default()
                },
            );
            let index = Arc::new(RwLock::new(loaded.index));
            let changes = ChangeLog::default();
            let registry = Arc::new(Registry::new());
            let metrics = Metrics::register(&registry).context("registering metrics")?;
            metrics.pairs.set_series(pair_metrics);
            IndexCollector::register(&registry, index.clone())
                .context("registering the index collector")?;

            if once {
                let snapshot = index.read().clone();
                let round = pipeline
                    .round(&snapshot, &specs, &NodeScope::All, &changes)
                    .await;
                publish_metrics(&metrics, &round.reports);
                print_round(format, &round.reports, &round.problems, false)?;
                return anyhow::Ok(());
            }

            let (ready_tx, ready_rx) = watch::channel(true);
            let (pairs_tx, pairs_rx) = watch::channel(PublishedPairs::default());
            let state = AppState::new(
                "demo",
                registry.clone(),
                index.clone(),
                ready_rx,
                pairs_rx,
                Arc::new(NoKubeApi),
            )
            // No API server to review tokens with: the demo's API is open, so it belongs on
            // loopback.
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
            let mut server = tokio::spawn(api::serve::serve(
                listener,
                api::router(state),
                api::serve::ServeConfig::default(),
                api::serve::ConnectionMetrics::register(&registry)?,
                std::future::pending(),
            ));
            let mut round_no = 0u32;
            loop {
                round_no += 1;
                let snapshot = index.read().clone();
                let round = pipeline
                    .round(&snapshot, &specs, &NodeScope::All, &changes)
                    .await;
                publish_metrics(&metrics, &round.reports);
                print_round(
                    format,
                    &round.reports,
                    &round.problems,
                    std::io::stdout().is_terminal(),
                )?;
                pairs_tx.send_replace(Arc::new(round.reports.into_iter().map(Arc::new).collect()));
                if rounds != 0 && round_no >= rounds {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = tokio::signal::ctrl_c() => break,
                    stopped = &mut server => bail!("the HTTP server stopped: {stopped:?}"),
                }
            }
            server.abort();
            drop(ready_tx);
            anyhow::Ok(())
        });
        drop(runtime);
        bed.teardown()
            .context("tearing down the simulated cluster")?;
        result?;
        Ok(ExitCode::SUCCESS)
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

/// The scenario's ProbeSpecs and ClusterProbeSpecs, validated; an invalid one is an error
/// naming it. A ProbeSpec without a namespace is in `default`, as kubectl would create it.
fn probe_specs(loaded: &Loaded) -> anyhow::Result<Vec<Spec>> {
    let mut specs = Vec::new();
    for (source, value) in &loaded.custom_objects {
        let converted = match value.get("kind").and_then(|k| k.as_str()) {
            Some("ProbeSpec") => {
                let mut spec: ProbeSpec = serde_json::from_value(value.clone())
                    .with_context(|| format!("{source}: a ProbeSpec does not parse"))?;
                spec.metadata
                    .namespace
                    .get_or_insert_with(|| "default".into());
                spec.validate().map(|()| Spec::try_from(&spec))
            }
            Some("ClusterProbeSpec") => {
                let spec: ClusterProbeSpec = serde_json::from_value(value.clone())
                    .with_context(|| format!("{source}: a ClusterProbeSpec does not parse"))?;
                spec.validate().map(|()| Spec::try_from(&spec))
            }
            _ => continue,
        };
        let kind = value
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or_default();
        let name = value
            .pointer("/metadata/name")
            .and_then(|n| n.as_str())
            .unwrap_or_default();
        let spec = converted
            .map_err(|e| anyhow::anyhow!("{source}: {kind} {name}: {e}"))?
            .map_err(|e| anyhow::anyhow!("{source}: {e}"))?;
        specs.push(spec);
    }
    Ok(specs)
}

fn shortest_interval(specs: &[Spec]) -> Duration {
    specs
        .iter()
        .filter_map(|s| s.spec.interval().ok())
        .min()
        .unwrap_or(Duration::from_secs(10))
}

fn publish_metrics(metrics: &Metrics, reports: &[PairReport]) {
    let keys: Vec<_> = reports.iter().filter_map(PairKey::of).collect();
    metrics.pairs.retain(|key| keys.contains(key));
    for report in reports {
        if let Some(key) = PairKey::of(report) {
            metrics.pairs.set(&key, &PairState::from(report));
            let spec = &key.spec;
            metrics.observe_attempt(
                spec,
                key.protocol,
                report.outcome,
                report.not_probed_reason(),
                Duration::from_secs_f64(report.latency_seconds),
            );
        }
    }
}

fn print_round(
    format: Format,
    reports: &[PairReport],
    problems: &[String],
    refresh: bool,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if format == Format::Json {
        serde_json::to_writer_pretty(
            &mut out,
            &serde_json::json!({ "pairs": reports, "problems": problems }),
        )?;
        writeln!(out)?;
        return Ok(());
    }
    if refresh {
        write!(out, "\x1b[2J\x1b[H")?;
    }
    let rows: Vec<[String; 7]> = reports
        .iter()
        .map(|r| {
            let mut to = r.target.to_string();
            // A host target's address: which name it came from (not when it did not resolve:
            // the target is the name then).
            if let Some(host) = r.host.as_ref().filter(|_| r.target.name().is_none()) {
                to.push_str(&format!(" (host {host})"));
            }
            [
                format!("{} -> {to}", r.from),
                r.verdict.as_str().to_string(),
                r.reason.map_or("-", |reason| reason.as_str()).to_string(),
                if r.policies.is_empty() {
                    "-".into()
                } else {
                    let names: Vec<String> = r.policies.iter().map(ToString::to_string).collect();
                    names.join(",")
                },
                r.outcome.as_str().to_string(),
                format!("{:.2} ms", r.latency_seconds * 1000.0),
                match r.meets_expectation {
                    Some(false) => "NO".into(),
                    Some(true) => "yes".into(),
                    // not_probed / inconclusive decide nothing.
                    None => "-".into(),
                },
            ]
        })
        .collect();
    let header = [
        "PAIR",
        "VERDICT",
        "REASON",
        "POLICY",
        "OUTCOME",
        "LATENCY",
        "MEETS EXPECT",
    ];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    writeln!(out, "{}", line(&header.map(String::from)))?;
    for row in &rows {
        writeln!(out, "{}", line(row))?;
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in reports {
        *counts.entry(r.verdict.as_str()).or_default() += 1;
    }
    let summary: Vec<String> = counts.iter().map(|(v, n)| format!("{n} {v}")).collect();
    writeln!(out, "\n{} pairs: {}", reports.len(), summary.join(", "))?;
    for r in reports
        .iter()
        .filter(|r| r.meets_expectation == Some(false))
    {
        writeln!(out, "  {}", r.summary)?;
    }
    for problem in problems {
        writeln!(out, "problem: {problem}")?;
    }
    Ok(())
}
