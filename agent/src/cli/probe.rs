//! `netreach probe`: run TCP, UDP or DNS probes from inside a pod's network namespace.
//!
//! - **Local mode** (`--netns PATH | --pid PID | --pod-uid UID`, needs root): the probes run
//!   here, inside a network namespace on this node — a pod's (by UID), a process's (by PID) or
//!   a named one (by path) — and print outcome counts, latency percentiles and errors.
//! - **Cluster mode** (`--from NS/POD`): a ProbeRequest asks the agent on the source pod's node
//!   to probe and diagnose; see [`super::probe_cluster`].
//!
//! `--to` is read by mode: `IP:PORT[/PROTO]` locally, `NS/POD` or `IP` (with `--port`) against
//! a cluster.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use parking_lot::Mutex;
use serde_json::json;

use super::Format;
use super::input::PortArg;
use super::probe_cluster::{self, ClusterArgs};
use crate::cluster::Protocol;
use crate::cluster::model::Mesh;
use crate::netns::{
    MAX_POD_FILE_BYTES, NetnsHandle, RESOLV_CONF, Resolution, SocketFactory, read_pod_file,
    resolve_pod,
};
use crate::probe::{DnsConfig, NotProbedReason, Observation, Outcome, Prober};

/// Probe a target from inside a pod's network namespace: here (local mode, needs root) or
/// through the netreach agent on the pod's node (cluster mode).
///
/// Local mode: pick the namespace with exactly one of --netns, --pid or --pod-uid, and the
/// target with --to IP:PORT[/PROTO] or --dns NAME. Every probe's socket is created inside that
/// namespace, so it meets exactly the NetworkPolicy the pod's own traffic meets.
///
/// Cluster mode: --from NS/POD and a target, --to NS/POD|svc/NS/NAME|IP with --port
/// PORT[/PROTO], or --dns NAME. Creates a ProbeRequest through the kubeconfig, waits for the
/// agent on the source pod's node, and prints its diagnosis. A Service is probed through its
/// ClusterIP and at each ready endpoint (partially_blocked names the blocked ones).
///
/// Example (local): netreach probe --pod-uid 6b1f4a52-... --to 10.244.2.12:8443/TCP --count 10
///
/// Example (cluster): netreach probe --from shop/frontend --to payments/gateway --port 8443
///
/// Example (a Service): netreach probe --from shop/frontend --to svc/shop/api --port 80
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["netns", "pid", "pod_uid", "from"])))]
#[command(group(clap::ArgGroup::new("target").required(true).args(["to", "dns"])))]
pub struct Args {
    /// Local mode: a network namespace file, e.g. /run/netns/NAME or /proc/PID/ns/net.
    #[arg(long, value_name = "PATH")]
    netns: Option<PathBuf>,
    /// Local mode: a process whose network namespace to use; DNS probes read its
    /// /etc/resolv.conf.
    #[arg(long, value_name = "PID")]
    pid: Option<u32>,
    /// Local mode: a pod UID on this node, found through its processes' cgroups.
    #[arg(long, value_name = "UID")]
    pod_uid: Option<String>,
    /// Cluster mode: the source pod, `namespace/name` (or `name` in --namespace).
    #[arg(long, value_name = "NS/POD")]
    from: Option<String>,
    /// Cluster mode: the source pod's namespace, where the ProbeRequest is created. Default:
    /// the namespace in --from, else the kubeconfig's.
    #[arg(long, short = 'n', value_name = "NS", conflicts_with_all = LOCAL_FLAGS)]
    namespace: Option<String>,
    /// Target. Local mode: `10.244.1.3:80`, `10.244.1.3:53/UDP`, `[fd00::3]:443/TCP`.
    /// Cluster mode: a pod `payments/gateway`, a Service `svc/shop/api` or an IP
    /// `10.244.1.3`, with --port.
    #[arg(long, value_name = "IP:PORT[/PROTO] | NS/POD | svc/NS/NAME | IP")]
    to: Option<String>,
    /// Cluster mode: the target port, a number or (for pods) a container-port name (for a
    /// Service: its port number or name), with an optional protocol: `8443`, `53/UDP`, `http`.
    /// Default protocol TCP.
    #[arg(long, value_name = "PORT[/PROTO]", conflicts_with_all = LOCAL_FLAGS)]
    port: Option<PortArg>,
    /// A DNS name to resolve (A records) with the source's own resolv.conf (locally, needs
    /// --pid or --pod-uid, whose process shows it).
    #[arg(long, value_name = "NAME")]
    dns: Option<String>,
    /// How many probes to run (at most 100 in cluster mode).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    count: u32,
    /// Local mode: how many probes may be in flight at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096), conflicts_with = "from")]
    concurrency: u32,
    /// Per-probe timeout (`300ms`, `3s`). Default: 3s for TCP, 2s for UDP and DNS locally; 2s
    /// in cluster mode (at most 1m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Cluster mode: how long to wait for the agent's answer.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "30s", conflicts_with_all = LOCAL_FLAGS)]
    wait_timeout: Duration,
    /// Output format: text or json.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Local mode: the service mesh whose sidecar redirects the pod's outbound TCP to a local
    /// proxy. TCP probes are then made with the identity the mesh's own rules exempt (istio:
    /// uid 1337; linkerd: uid 2102; istio-ambient: packet mark 0x539), so they meet the network
    /// and not the proxy. With `none` in a meshed pod, every TCP port reads open.
    #[arg(long, value_enum, default_value = "none", conflicts_with = "from")]
    mesh: MeshArg,
}

/// `--mesh`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MeshArg {
    None,
    Istio,
    Linkerd,
    IstioAmbient,
}

impl MeshArg {
    fn mesh(self) -> Option<Mesh> {
        match self {
            MeshArg::None => None,
            MeshArg::Istio => Some(Mesh::Istio {
                uid: Mesh::ISTIO_PROXY_UID,
                gid: Mesh::ISTIO_PROXY_UID,
            }),
            MeshArg::Linkerd => Some(Mesh::Linkerd {
                uid: Mesh::LINKERD_PROXY_UID,
            }),
            MeshArg::IstioAmbient => Some(Mesh::IstioAmbient),
        }
    }
}

/// The flags that pick local mode; cluster-only flags conflict with them.
const LOCAL_FLAGS: [&str; 3] = ["netns", "pid", "pod_uid"];

fn parse_duration(s: &str) -> Result<Duration, String> {
    probe_spec::parse_duration(s).map_err(|e| e.to_string())
}

/// `--to` in local mode, with a hint when it looks like a cluster-mode target.
fn parse_local_target(to: &str) -> anyhow::Result<TargetArg> {
    to.parse::<TargetArg>().map_err(|error| {
        if to.parse::<IpAddr>().is_ok() || to.contains('/') && !to.contains(':') {
            anyhow::anyhow!(
                "--to {to}: {error}; without --from, --to is IP:PORT[/PROTO] (NS/POD and --port need --from NS/POD)"
            )
        } else {
            anyhow::anyhow!("--to {to}: {error}")
        }
    })
}

/// `IP:PORT[/PROTO]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetArg {
    pub addr: SocketAddr,
    pub protocol: Protocol,
}

impl FromStr for TargetArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, protocol) = match s.rsplit_once('/') {
            Some((a, p)) => (a, p.parse::<Protocol>()?),
            None => (s, Protocol::Tcp),
        };
        let addr: SocketAddr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not IP:PORT (IPv6 as [addr]:port)"))?;
        if addr.port() == 0 {
            return Err("port 0 cannot be probed".into());
        }
        Ok(Self { addr, protocol })
    }
}

/// What one run probes.
#[derive(Clone, Debug)]
enum Target {
    Socket(TargetArg),
    Dns(String, Arc<DnsConfig>),
}

impl Target {
    fn label(&self) -> String {
        match self {
            Target::Socket(t) => format!("{}/{}", t.addr, t.protocol),
            Target::Dns(name, _) => format!("dns:{name}"),
        }
    }
}

/// Results gathered across workers.
#[derive(Debug, Default)]
struct Tally {
    outcomes: BTreeMap<&'static str, u64>,
    latencies: Vec<Duration>,
    details: BTreeMap<String, u64>,
    answers: Vec<IpAddr>,
    failed_to_run: BTreeMap<String, u64>,
}

impl Tally {
    fn record(&mut self, result: Result<Observation, crate::probe::Error>) {
        match result {
            // Nothing was sent (no SCTP in this kernel, out of descriptors, ...).
            Ok(obs) if obs.outcome == Outcome::NotProbed => {
                *self.failed_to_run.entry(obs.detail).or_default() += 1;
            }
            Ok(obs) => {
                *self.outcomes.entry(obs.outcome.as_str()).or_default() += 1;
                self.latencies.push(obs.latency);
                // An `open` through a mesh proxy is no reachability: say so.
                if (!matches!(obs.outcome, Outcome::Open | Outcome::Resolved)
                    || obs.mesh_redirected)
                    && !obs.detail.is_empty()
                {
                    *self.details.entry(obs.detail).or_default() += 1;
                }
                for ip in obs.answers {
                    if !self.answers.contains(&ip) {
                        self.answers.push(ip);
                    }
                }
            }
            Err(e) => *self.failed_to_run.entry(e.to_string()).or_default() += 1,
        }
    }
}

impl Args {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let Self {
            netns,
            pid,
            pod_uid,
            from,
            namespace,
            to,
            port,
            dns,
            count,
            concurrency,
            timeout,
            wait_timeout,
            format,
            mesh,
        } = self;
        if let Some(from) = from {
            return probe_cluster::run(ClusterArgs {
                from,
                namespace,
                to,
                port,
                dns,
                count,
                timeout,
                wait_timeout,
                format,
            });
        }
        let to = to.as_deref().map(parse_local_target).transpose()?;
        if !super::running_as_root() {
            bail!(
                "netreach probe needs root: entering a network namespace takes CAP_SYS_ADMIN (try sudo)"
            );
        }
        let (handle, resolv_conf_pid) = open_namespace(netns, pid, pod_uid)?;
        let target = match (to, dns) {
            (Some(t), _) => Target::Socket(t),
            (None, Some(name)) => {
                let config = match resolv_conf_pid {
                    Some(pid) => {
                        let path = format!("/proc/{pid}/root/etc/resolv.conf");
                        // The same bounded, in-root read the agent does: a symlink or FIFO in
                        // the pod cannot point this root process elsewhere or hang it. A file
                        // that fails is named with the agent's not_probed reason.
                        let not_probed = || {
                            format!(
                                "not probed ({}): the pod's resolv.conf",
                                NotProbedReason::PodFileUnreadable.as_str()
                            )
                        };
                        let bytes = read_pod_file(pid, Path::new(RESOLV_CONF), MAX_POD_FILE_BYTES)
                            .with_context(not_probed)?;
                        DnsConfig::from_resolv_conf(&bytes, path).with_context(not_probed)?
                    }
                    None => bail!(
                        "--dns needs --pid or --pod-uid: a bare --netns has no resolv.conf to read"
                    ),
                };
                Target::Dns(name, Arc::new(config))
            }
            (None, None) => bail!("give a target: --to IP:PORT[/PROTO] or --dns NAME"),
        };
        let timeout = timeout.unwrap_or(match &target {
            Target::Socket(TargetArg {
                protocol: Protocol::Tcp,
                ..
            }) => crate::probe::DEFAULT_TCP_TIMEOUT,
            Target::Socket(_) => crate::probe::DEFAULT_UDP_TIMEOUT,
            Target::Dns(..) => crate::probe::DEFAULT_DNS_TIMEOUT,
        });

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let started = Instant::now();
        let tally = runtime.block_on(run_probes(
            handle.clone(),
            target.clone(),
            count,
            concurrency,
            timeout,
            mesh.mesh(),
        ))?;
        let elapsed = started.elapsed();
        print_report(
            format,
            &handle,
            &target,
            count,
            concurrency,
            elapsed,
            &tally,
        )?;
        Ok(if tally.failed_to_run.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(super::EXIT_BAD_INPUT)
        })
    }
}

/// Opens the chosen namespace; also returns the PID whose root shows its resolv.conf.
fn open_namespace(
    netns: Option<PathBuf>,
    pid: Option<u32>,
    pod_uid: Option<String>,
) -> anyhow::Result<(NetnsHandle, Option<u32>)> {
    if let Some(path) = netns {
        return Ok((NetnsHandle::open(&path)?, None));
    }
    if let Some(pid) = pid {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            bail!("process {pid} does not exist");
        }
        return Ok((NetnsHandle::from_pid(pid)?, Some(pid)));
    }
    let uid = pod_uid.context("one of --netns, --pid or --pod-uid is required")?;
    let resolution = resolve_pod(&uid).map_err(|error| match error {
        crate::netns::Error::PodNotFound { uid } => anyhow::anyhow!(
            "pod {uid} is not on this node: no process here runs in its cgroups (is it scheduled on this node, and running?)"
        ),
        other => anyhow::anyhow!("{other} (is the pod scheduled on this node?)"),
    })?;
    match resolution {
        Resolution::Pod(pod) => {
            let resolv_pid = pod.app_pid.unwrap_or(pod.sandbox_pid);
            Ok((pod.handle, Some(resolv_pid)))
        }
        Resolution::HostNetwork { uid } => {
            bail!(
                "pod {uid} uses the host network: it has no network namespace of its own and NetworkPolicy does not apply to it; probe from the node instead"
            )
        }
    }
}

async fn run_probes(
    handle: NetnsHandle,
    target: Target,
    count: u32,
    concurrency: u32,
    timeout: Duration,
    mesh: Option<Mesh>,
) -> anyhow::Result<Tally> {
    let factory = SocketFactory::start().context("starting the socket factory")?;
    let prober = Arc::new(Prober::new(factory));
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let total = count as usize;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.min(count) {
        let (prober, next, done, tally, handle, target) = (
            prober.clone(),
            next.clone(),
            done.clone(),
            tally.clone(),
            handle.clone(),
            target.clone(),
        );
        workers.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let result = match &target {
                    Target::Socket(TargetArg { addr, protocol }) => {
                        prober
                            .probe_from(&handle, *addr, *protocol, timeout, mesh)
                            .await
                    }
                    Target::Dns(name, config) => {
                        prober.probe_dns(&handle, config, name, timeout).await
                    }
                };
                tally.lock().record(result);
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let progress = std::io::stderr().is_terminal() && total > 1;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    loop {
        tokio::select! {
            joined = workers.join_next() => match joined {
                Some(result) => result.context("a probe worker panicked")?,
                None => break,
            },
            _ = ticker.tick(), if progress => {
                eprint!("\r{} of {} probes done", done.load(Ordering::Relaxed), total);
            }
        }
    }
    if progress {
        eprintln!("\r{total} of {total} probes done");
    }
    let tally = std::mem::take(&mut *tally.lock());
    Ok(tally)
}

/// Nearest-rank percentile of sorted latencies, in seconds.
fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64()
}

fn print_report(
    format: Format,
    handle: &NetnsHandle,
    target: &Target,
    count: u32,
    concurrency: u32,
    elapsed: Duration,
    tally: &Tally,
) -> anyhow::Result<()> {
    let mut sorted = tally.latencies.clone();
    sorted.sort_unstable();
    let (p50, p90, p99) = (
        percentile(&sorted, 50.0),
        percentile(&sorted, 90.0),
        percentile(&sorted, 99.0),
    );
    let max = sorted.last().map_or(0.0, Duration::as_secs_f64);
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            let mut value = json!({
                "target": target.label(),
                "netns": handle.origin(),
                "count": count,
                "concurrency": concurrency,
                "outcomes": tally.outcomes,
                "latency_seconds": {"p50": p50, "p90": p90, "p99": p99, "max": max},
                "duration_seconds": elapsed.as_secs_f64(),
                "errors": tally.details.iter().map(|(d, n)| json!({"detail": d, "count": n})).collect::<Vec<_>>(),
                "failed_to_run": tally.failed_to_run.iter().map(|(d, n)| json!({"error": d, "count": n})).collect::<Vec<_>>(),
            });
            if let Target::Dns(..) = target {
                value["answers"] = json!(
                    tally
                        .answers
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                );
            }
            serde_json::to_writer_pretty(&mut out, &value)?;
            writeln!(out)?;
        }
        _ => {
            let rate = f64::from(count) / elapsed.as_secs_f64().max(1e-9);
            writeln!(
                out,
                "{} from {}: {count} probe(s) in {:.3} s ({rate:.0}/s, concurrency {concurrency})",
                target.label(),
                handle.origin(),
                elapsed.as_secs_f64()
            )?;
            for (outcome, n) in &tally.outcomes {
                writeln!(out, "  {outcome:<17} {n}")?;
            }
            if !sorted.is_empty() {
                writeln!(
                    out,
                    "  latency           p50 {}  p90 {}  p99 {}  max {}",
                    ms(p50),
                    ms(p90),
                    ms(p99),
                    ms(max)
                )?;
            }
            if !tally.answers.is_empty() {
                let answers: Vec<String> = tally.answers.iter().map(ToString::to_string).collect();
                writeln!(out, "  answers           {}", answers.join(", "))?;
            }
            for (detail, n) in &tally.details {
                writeln!(out, "  {n} x {detail}")?;
            }
            for (error, n) in &tally.failed_to_run {
                writeln!(out, "  {n} x could not run: {error}")?;
            }
        }
    }
    Ok(())
}

fn ms(seconds: f64) -> String {
    format!("{:.3} ms", seconds * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_parsing_table() {
        let cases: &[(&str, Option<(&str, Protocol)>)] = &[
            ("10.244.1.3:80", Some(("10.244.1.3:80", Protocol::Tcp))),
            ("10.244.1.3:53/UDP", Some(("10.244.1.3:53", Protocol::Udp))),
            ("10.244.1.3:53/udp", Some(("10.244.1.3:53", Protocol::Udp))),
            ("[fd00::3]:443/TCP", Some(("[fd00::3]:443", Protocol::Tcp))),
            ("10.244.1.3", None),
            ("10.244.1.3:0", None),
            (
                "10.244.1.3:80/SCTP",
                Some(("10.244.1.3:80", Protocol::Sctp)),
            ),
            ("host:80", None),
        ];
        for (input, want) in cases {
            let got = input
                .parse::<TargetArg>()
                .ok()
                .map(|t| (t.addr.to_string(), t.protocol));
            assert_eq!(got, want.map(|(a, p)| (a.to_string(), p)), "{input}");
        }
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&sorted, 50.0), 0.050);
        assert_eq!(percentile(&sorted, 99.0), 0.099);
        assert_eq!(percentile(&sorted, 100.0), 0.100);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }
}
