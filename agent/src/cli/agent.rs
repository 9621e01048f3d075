//! `netreach agent`: the DaemonSet process. Flags (each also read from an environment variable)
//! become an [`AgentConfig`]; [`crate::runtime::run`] does the rest.
//!
//! ```text
//! flags / NETREACH_* / NODE_NAME ──> Args ──into_config()──> AgentConfig ──agent::run──> Ok: exit 0
//!                                                                              └─ Err: termination log, exit 1
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use clap::builder::BoolishValueParser;
use tracing::error;

use crate::api::AuthMode;
use crate::api::tls::TlsSource;
use crate::cluster::watch::WatchScope;
use crate::policy::Profile;
use crate::report::metrics::PairSeries;
use crate::runtime::lifecycle::write_termination_log;
use crate::runtime::{AgentConfig, ApiServing};

/// Run the node agent (the DaemonSet process): probe this node's ProbeSpec pairs from inside
/// their source pods, run ProbeRequests, and report metrics, Events and status.
///
/// Every flag can also be set through the environment variable named in its help; NODE_NAME
/// usually comes from the downward API (`fieldRef: spec.nodeName`).
///
/// The API (/metrics, /v1/pairs, /v1/probe) is served over HTTPS, with the certificate from
/// --tls-cert-file/--tls-key-file or, without them, a self-signed one generated at start.
/// Callers present a bearer token for the audience `netreach` (`kubectl create token SA
/// --audience netreach`) and need RBAC: `get` on the non-resource URL `/metrics` or
/// `/v1/pairs`, `create proberequests` in a probe's source namespace. /healthz and /readyz
/// are also served in plain HTTP on --health-listen for the kubelet.
///
/// Example: NODE_NAME=node-1 netreach agent --listen 0.0.0.0:9464
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The node this agent runs on; its pods are the sources it probes from.
    #[arg(long, env = "NODE_NAME", value_name = "NODE")]
    node_name: String,
    /// Where to serve /metrics, /v1/pairs and /v1/probe (HTTPS).
    #[arg(
        long,
        env = "NETREACH_LISTEN",
        value_name = "ADDR",
        default_value = "0.0.0.0:9464"
    )]
    listen: SocketAddr,
    /// Where to serve /healthz and /readyz in plain HTTP, for the kubelet.
    #[arg(
        long,
        env = "NETREACH_HEALTH_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:9465"
    )]
    health_listen: SocketAddr,
    /// The API's certificate chain (PEM, leaf first); re-read when it changes. Without it
    /// (and --tls-key-file), a self-signed certificate is generated at start.
    #[arg(
        long,
        env = "NETREACH_TLS_CERT_FILE",
        value_name = "PATH",
        requires = "tls_key_file"
    )]
    tls_cert_file: Option<PathBuf>,
    /// The private key of --tls-cert-file (PEM).
    #[arg(
        long,
        env = "NETREACH_TLS_KEY_FILE",
        value_name = "PATH",
        requires = "tls_cert_file"
    )]
    tls_key_file: Option<PathBuf>,
    /// Names and addresses in the self-signed certificate (comma-separated); default: the node
    /// name and POD_IP.
    #[arg(
        long,
        env = "NETREACH_TLS_SELF_SIGNED_NAMES",
        value_name = "NAMES",
        value_delimiter = ','
    )]
    tls_self_signed_names: Vec<String>,
    /// Check API callers with TokenReview and SubjectAccessReview. `--api-auth=false` lets
    /// anyone who reaches --listen read pairs and metrics and run probes: a trusted network only.
    #[arg(
        long,
        env = "NETREACH_API_AUTH",
        value_name = "BOOL",
        default_value = "true",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    api_auth: bool,
    /// The audiences a caller's token must be issued for (comma-separated).
    #[arg(
        long,
        env = "NETREACH_API_AUDIENCES",
        value_name = "AUDIENCES",
        value_delimiter = ',',
        default_value = crate::api::DEFAULT_AUDIENCE
    )]
    api_audiences: Vec<String>,
    /// The audiences a token for /metrics and /v1/pairs must be issued for (comma-separated);
    /// empty: the API server's own, so Prometheus scrapes with its service-account token.
    #[arg(
        long,
        env = "NETREACH_READ_AUDIENCES",
        value_name = "AUDIENCES",
        value_delimiter = ','
    )]
    read_audiences: Vec<String>,
    /// Open API connections at once; more are closed as soon as they arrive.
    #[arg(
        long,
        env = "NETREACH_API_MAX_CONNECTIONS",
        default_value_t = 256,
        value_parser = clap::value_parser!(u32).range(1..=65536)
    )]
    api_max_connections: u32,
    /// The pod's IP (downward API `status.podIP`), put in the self-signed certificate.
    #[arg(long, env = "POD_IP", value_name = "IP")]
    pod_ip: Option<String>,
    /// How the CNI treats what the NetworkPolicy API leaves open (see `explain --help`).
    #[arg(long, env = "NETREACH_PROFILE", default_value = "upstream", value_parser = Profile::from_str)]
    profile: Profile,
    /// Scheduled probes in flight at once, across every ProbeSpec.
    #[arg(
        long,
        env = "NETREACH_CONCURRENCY",
        default_value_t = 64,
        value_parser = clap::value_parser!(u32).range(1..=4096)
    )]
    concurrency: u32,
    /// An extra CNI agent pod selector, `[namespace/]key=value[,key=value...]` (namespace
    /// defaults to kube-system), next to the built-in ones (calico-node, cilium, ...).
    #[arg(long, env = "NETREACH_CNI_SELECTOR", value_name = "SELECTOR")]
    cni_selector: Option<String>,
    /// Publish Warning Events on source pods (NetworkPolicyDenied, ProbeFailed);
    /// `--events=false` turns them off.
    #[arg(
        long,
        env = "NETREACH_EVENTS",
        value_name = "BOOL",
        default_value = "true",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    events: bool,
    /// How often this node's share of each ProbeSpec status is written.
    #[arg(
        long,
        env = "NETREACH_STATUS_INTERVAL",
        value_name = "DURATION",
        default_value = "30s",
        value_parser = positive_duration
    )]
    status_interval: Duration,
    /// How long a watch may fail before the view of its resource counts as stale: then
    /// `netreach_view_stale` is 1, pairs are flagged, and no new blocked_by_policy or
    /// policy_not_enforced is raised from the stale prediction.
    #[arg(
        long,
        env = "NETREACH_VIEW_STALE_AFTER",
        value_name = "DURATION",
        default_value = "30s",
        value_parser = positive_duration
    )]
    view_stale_after: Duration,
    /// Where the reason of a fatal exit is written (Kubernetes shows it in the pod's status).
    #[arg(
        long,
        env = "NETREACH_TERMINATION_LOG",
        value_name = "PATH",
        default_value = "/dev/termination-log"
    )]
    termination_log: PathBuf,
    /// After SIGTERM, how long probes and ProbeRequests in flight may still take.
    #[arg(
        long,
        env = "NETREACH_SHUTDOWN_GRACE",
        value_name = "DURATION",
        default_value = "5s",
        value_parser = parse_duration
    )]
    shutdown_grace: Duration,
    /// Which pairs get per-pair metric series: all, exceptions (pairs that are not ok or miss
    /// their expectation; the default: healthy pairs are counted in netreach_spec_pairs only)
    /// or none.
    #[arg(
        long,
        env = "NETREACH_PAIR_METRICS",
        value_name = "WHICH",
        default_value = "exceptions",
        value_parser = PairSeries::from_str
    )]
    pair_metrics: PairSeries,
    /// Which pods the agent watches: node (this node's pods, the CNI agents and the pods its
    /// ProbeSpecs select; the default) or cluster (every pod, in one watch).
    #[arg(
        long,
        env = "NETREACH_WATCH_SCOPE",
        value_name = "SCOPE",
        default_value = "node",
        value_parser = WatchScope::from_str
    )]
    watch_scope: WatchScope,
}

/// The trimmed, non-empty items of a comma-separated flag.
fn non_empty(items: Vec<String>) -> Vec<String> {
    items
        .into_iter()
        .map(|item| item.trim().to_string())
        .filter(|item| !item.is_empty())
        .collect()
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    probe_spec::parse_duration(s).map_err(|e| e.to_string())
}

fn positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        Duration::ZERO => Err("must be longer than 0s".into()),
        duration => Ok(duration),
    }
}

impl Args {
    /// The typed configuration.
    pub fn into_config(self) -> AgentConfig {
        let Self {
            node_name,
            listen,
            health_listen,
            tls_cert_file,
            tls_key_file,
            tls_self_signed_names,
            api_auth,
            api_audiences,
            read_audiences,
            api_max_connections,
            pod_ip,
            profile,
            concurrency,
            cni_selector,
            events,
            status_interval,
            view_stale_after,
            termination_log,
            shutdown_grace,
            pair_metrics,
            watch_scope,
        } = self;
        let tls = match (tls_cert_file, tls_key_file) {
            (Some(cert), Some(key)) => TlsSource::Files { cert, key },
            _ => {
                let mut names = non_empty(tls_self_signed_names);
                if names.is_empty() {
                    names.push(node_name.clone());
                    names.extend(pod_ip.filter(|ip| !ip.is_empty()));
                    if !listen.ip().is_unspecified() {
                        names.push(listen.ip().to_string());
                    }
                }
                TlsSource::SelfSigned { names }
            }
        };
        let api = ApiServing {
            health_listen,
            tls,
            auth: if api_auth {
                AuthMode::Enabled
            } else {
                AuthMode::Disabled
            },
            audiences: non_empty(api_audiences),
            read_audiences: non_empty(read_audiences),
            max_connections: api_max_connections as usize,
        };
        AgentConfig {
            api,
            node_name,
            listen,
            profile,
            concurrency: concurrency as usize,
            cni_selector: cni_selector.filter(|s| !s.trim().is_empty()),
            events,
            status_interval,
            view_stale_after,
            termination_log,
            shutdown_grace,
            pair_metrics,
            watch_scope,
        }
    }

    pub fn run(self) -> anyhow::Result<ExitCode> {
        let config = self.into_config();
        let termination_log = config.termination_log.clone();
        let runtime = super::runtime("netreach-agent").context("starting the async runtime")?;
        let result = runtime.block_on(crate::runtime::run(config));
        // Tasks still parked (aborted ones, blocking reads) must not hold the exit up.
        runtime.shutdown_timeout(Duration::from_secs(1));
        match result {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(failure) => {
                let reason = format!("netreach agent: {}", error_chain(&failure));
                error!(error = %reason, kind = failure.metric_label(), "exiting");
                write_termination_log(&termination_log, &reason);
                Ok(ExitCode::FAILURE)
            }
        }
    }
}

/// An error and its causes on one line, `outer: cause: root`, without repeating a cause
/// that the outer message already quotes.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !line.contains(&cause_text) {
            line.push_str(": ");
            line.push_str(&cause_text);
        }
        source = cause.source();
    }
    line
}

#[cfg(test)]
mod tests;
