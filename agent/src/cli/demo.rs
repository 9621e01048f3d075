//! `netreach demo`: builds a simulated cluster from a scenario (a built-in one reproduces
//! every class of the runbook) and runs the agent's runtime on it: one scheduler per simulated
//! node (timetable, jitter, spacing, change-triggered re-probes), the Event and status writers
//! (into an in-memory API the demo prints), the metrics and the HTTP API. Objects come from the
//! scenario file through a snapshot source instead of kube watchers; in live mode the file is
//! watched and its edits are played as watch events ([`edits`]).
//!
//! ```text
//! scenario file ──Testbed::start──> netns pods, nftables, dnsmasq (the data plane)
//!      │  objects ──SnapshotSource::play──> ClusterView ──> agent::spawn_node (per node) ──> pairs, progress
//!      └─ (live) edits, polled ──edits::guard_pods──┘          Events, statuses ──> MemoryApi ──> printed
//! ```

mod edits;
mod output;
mod run;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};

use super::Format;
use crate::policy::Profile;
use crate::report::metrics::PairSeries;

/// The built-in scenario: every class of the runbook on two simulated nodes.
pub const BUILTIN_SCENARIO: &str = include_str!("../../scenarios/runbook.yaml");

/// Run the agent on a simulated cluster built on this host (needs root).
///
/// Builds network namespaces for the scenario's pods behind a router with no uplink,
/// kubepods-style cgroups, nftables enforcement and dnsmasq DNS, then runs the agent's runtime
/// for every simulated node: each ProbeSpec pair is probed from inside its source pod on the
/// agent's timetable and diagnosed; Events and ProbeSpec statuses are written to an in-memory
/// API and printed. Live mode serves /metrics and /v1/pairs and watches the scenario file:
/// edit its objects (add or remove a policy, change a label) and the affected pairs are
/// re-probed at once. Everything is torn down on exit, on Ctrl-C and on errors.
///
/// Example: netreach demo --once --format json
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A scenario file (format: testbed/README.md); default: the built-in runbook scenario.
    /// In live mode it is watched for edits.
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    /// Probe every pair once (at once, not spread over the interval), print the pairs with
    /// the Events and statuses written, tear everything down and exit.
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
    /// Live mode: stop once every pair has been probed this many times (0: until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    rounds: u32,
    /// Probe every pair this often, replacing each ProbeSpec's `spec.interval`.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    interval: Option<Duration>,
    /// Probes in flight at once, per simulated node (as `netreach agent --concurrency`).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// How the CNI treats what the API leaves open (see `explain --help`).
    #[arg(long, default_value = "upstream", value_parser = Profile::from_str)]
    profile: Profile,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    probe_spec::parse_duration(s).map_err(|e| e.to_string())
}

impl Args {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        if !super::running_as_root() {
            bail!(
                "netreach demo needs root: it builds network namespaces, cgroups and nftables rules (try sudo)"
            );
        }
        let scenario = match &self.scenario {
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
        let runtime = super::runtime("netreach-demo").context("starting the async runtime")?;
        let result = runtime.block_on(run::run(self, &bed));
        drop(runtime);
        bed.teardown()
            .context("tearing down the simulated cluster")?;
        result?;
        Ok(ExitCode::SUCCESS)
    }
}
