//! Subcommands. Each parses its own flags (clap derive, every flag documented) and returns an
//! exit status; `main` maps errors to exit code 2 (bad input) after printing them.
//!
//! Exit codes (contract): 0 success, 1 a flow is denied (`explain --exit-code`), 2 bad input.

mod agent;
mod crd;
#[cfg(feature = "demo")]
mod demo;
mod explain;
mod input;
mod kube_client;
mod matrix;
mod probe;
mod probe_cluster;
mod progress;
mod ui;
mod whatif;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// netreach: is this pod-to-pod path open, and if not, which NetworkPolicy rule blocks it?
///
/// Offline commands (explain, matrix, whatif) read Kubernetes objects from YAML/JSON files, for
/// example the output of `kubectl get pods,namespaces,networkpolicies -A -o yaml`.
#[derive(Debug, Parser)]
#[command(name = "netreach", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Explain(explain::Args),
    Matrix(matrix::Args),
    Whatif(whatif::Args),
    Ui(ui::Args),
    Probe(probe::Args),
    Crd(crd::Args),
    #[cfg(feature = "demo")]
    Demo(demo::Args),
    Agent(agent::Args),
}

/// Exit code for a flow denied with `explain --exit-code`.
pub const EXIT_DENIED: u8 = 1;
/// Exit code for bad input: missing paths, files or documents that do not parse (unless
/// --keep-going), invalid objects (with --strict), unknown pods, bad flags.
pub const EXIT_BAD_INPUT: u8 = 2;

/// The name the binary answers to as a kubectl plugin (`kubectl netreach ...` runs it).
pub const KUBECTL_PLUGIN_NAME: &str = "kubectl-netreach";

/// Whether the process was started as the kubectl plugin (through a `kubectl-netreach` link
/// or copy), from its first argument.
fn invoked_as_plugin() -> bool {
    std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .and_then(|path| path.file_name().map(|name| name == KUBECTL_PLUGIN_NAME))
        .unwrap_or(false)
}

/// Parses the command line; as the kubectl plugin, usage and help say `kubectl netreach`.
fn parse() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let mut command = Cli::command();
    if invoked_as_plugin() {
        command = command.bin_name("kubectl netreach");
    }
    let matches = command.get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit())
}

pub fn main() -> ExitCode {
    let cli = parse();
    // The agent is a long-running service: its lifecycle is logged at info by default.
    let default_level = match cli.command {
        Command::Agent(_) => "info",
        _ => "warn",
    };
    init_tracing(default_level);
    let probes = match &cli.command {
        Command::Agent(_) | Command::Probe(_) => true,
        #[cfg(feature = "demo")]
        Command::Demo(_) => true,
        _ => false,
    };
    if probes {
        raise_nofile_limit();
    }
    let result = match cli.command {
        Command::Explain(args) => args.run(),
        Command::Matrix(args) => args.run(),
        Command::Whatif(args) => args.run(),
        Command::Ui(args) => args.run(),
        Command::Probe(args) => args.run(),
        Command::Crd(args) => args.run(),
        #[cfg(feature = "demo")]
        Command::Demo(args) => args.run(),
        Command::Agent(args) => args.run(),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "error: {error:#}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

/// Raises the soft open-files limit to the hard one for the commands that hold pod namespaces
/// and probe sockets, and logs both.
fn raise_nofile_limit() {
    match crate::netns::raise_nofile_limit() {
        Ok(limit) => tracing::info!(
            soft_before = limit.soft_before,
            soft = limit.soft,
            hard = limit.hard,
            "RLIMIT_NOFILE"
        ),
        Err(error) => tracing::warn!(%error, "cannot raise RLIMIT_NOFILE"),
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (else `default_level`).
fn init_tracing(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

/// Output format of the offline commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Human-readable text.
    Text,
    /// A compact grid per port (matrix only).
    Table,
    /// JSON, following the documented contract.
    Json,
}

/// Async worker threads of `agent` and `demo`: probing is I/O-bound (10,000 pairs at a 10 s
/// interval take 0.07 cores), so a big node's core count must not become as many threads,
/// each with its stack and malloc arena.
const WORKER_THREADS: usize = 2;
/// Threads for blocking work (scanning /proc for a pod's sandbox, reading a pod's
/// resolv.conf): each call is short, so more calls queue instead of adding threads (tokio's
/// default is 512).
const BLOCKING_THREADS: usize = 8;

/// The async runtime of the long-running commands, its threads named `name`.
pub(crate) fn runtime(name: &str) -> std::io::Result<tokio::runtime::Runtime> {
    crate::malloc::limit_arenas();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .max_blocking_threads(BLOCKING_THREADS)
        .thread_name(name)
        .enable_all()
        .build()
}

/// Whether this process runs as root (effective UID 0), for commands that need it.
pub(crate) fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}
