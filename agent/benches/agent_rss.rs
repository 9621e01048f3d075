//! Resident memory of the DaemonSet process at 10,000 pairs (root): `netreach agent` itself, in
//! a process of its own, on one simulated node of the testbed with 100 pods and one ProbeSpec
//! from every pod to every pod (9,900 pairs, 10 s interval; 990 of them blocked by a policy, so
//! explanations and exception series are held too).
//!
//! ```text
//! agent_rss ──Testbed::start──> 100 pods in netns, kubepods cgroups, nftables drops
//!     │ serves on 127.0.0.1: GET (list/watch) ──> cluster::fake_api::FakeApi (the pods, the
//!     │                        writes (status, Events) ──> report::memory_api::MemoryApi  policy, the spec)
//!     └─spawns──> netreach agent --node-name node-1 (KUBECONFIG -> the fake API)
//!                 once /metrics shows every pair probed twice: its RSS over one more
//!                 interval, while scraped, and where the resident memory is
//! ```
//!
//! The agent runs twice side by side on the same testbed: as shipped (per-pair series for the
//! exceptions only), and with `--pair-metrics all` (four series for every pair).
//!
//! Run: `make bench-agent-rss` (builds the DaemonSet binary without the demo feature and
//! passes it as `AGENT_BIN`), or `cargo bench -p netreach --bench agent_rss` for the default
//! build. Needs `curl` for the scrapes (the agent serves HTTPS with a self-signed certificate).
//! `AGENT_WRAPPER=heaptrack` runs each agent under that command (the RSS is then the
//! wrapped agent's, with the wrapper's overhead).
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use http_body_util::BodyExt;
use netreach::cluster::fake_api::FakeApi;
use netreach::report::memory_api::MemoryApi;
use tower::ServiceExt;

const PODS: usize = 100;
/// Destinations whose ingress a default-deny policy closes (and the data plane drops).
const LOCKED: usize = 10;
const PAIRS: u64 = (PODS * (PODS - 1)) as u64;
const INTERVAL_SECS: u64 = 10;
/// The whole run of one agent may take at most this long.
const DEADLINE: Duration = Duration::from_secs(240);
/// The largest request body the fake API reads.
const MAX_BODY: usize = 1024 * 1024;

fn scenario() -> String {
    let mut out = String::from(
        "name: agent-rss\nnodes: [node-1]\nobjects:\n  - {apiVersion: v1, kind: Namespace, metadata: {name: load}}\n",
    );
    for i in 0..PODS {
        let tier = if i < LOCKED { "locked" } else { "open" };
        let _ = write!(
            out,
            "  - apiVersion: v1\n    kind: Pod\n    metadata: {{name: p-{i}, namespace: load, labels: {{app: load, tier: {tier}}}}}\n    spec: {{nodeName: node-1, containers: [{{name: c, ports: [{{containerPort: 8080}}]}}]}}\n    status: {{phase: Running, podIP: 10.244.1.{}, conditions: [{{type: Ready, status: \"True\"}}]}}\n",
            10 + i
        );
    }
    out.push_str(
        "  - apiVersion: networking.k8s.io/v1\n    kind: NetworkPolicy\n    metadata: {name: locked-deny-ingress, namespace: load}\n    spec: {podSelector: {matchLabels: {tier: locked}}, policyTypes: [Ingress]}\n",
    );
    out.push_str(&format!(
        "  - apiVersion: netreach.dev/v1alpha1\n    kind: ProbeSpec\n    metadata: {{name: mesh-of-all, namespace: load}}\n    spec:\n      from: {{podSelector: {{matchLabels: {{app: load}}}}}}\n      to: [{{podSelector: {{matchLabels: {{app: load}}}}, ports: [{{port: 8080}}]}}]\n      maxPairs: 10000\n      interval: {INTERVAL_SECS}s\n      timeout: 2s\n"
    ));
    out.push_str("dataplane:\n  rules:\n");
    for i in 0..LOCKED {
        let _ = writeln!(
            out,
            "    - {{action: drop, from: 10.244.0.0/16, to: load/p-{i}}}"
        );
    }
    out
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// The fake API: reads from the list/watch fake, writes into the in-memory API.
fn serve_api(fake: FakeApi, writes: MemoryApi) -> SocketAddr {
    let reads = fake.router();
    let router = Router::new().fallback(move |request: Request| {
        let (reads, writes) = (reads.clone(), writes.clone());
        async move {
            if request.method() == http::Method::GET {
                return reads
                    .oneshot(request)
                    .await
                    .unwrap_or_else(|never| match never {});
            }
            let (parts, body) = request.into_parts();
            let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
                return http::Response::builder()
                    .status(http::StatusCode::PAYLOAD_TOO_LARGE)
                    .body(Body::empty())
                    .unwrap_or_default();
            };
            let request = http::Request::from_parts(parts, kube::client::Body::from(bytes));
            let (parts, body) = writes.handle(request).await.into_parts();
            let bytes = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            http::Response::from_parts(parts, Body::from(bytes))
        }
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the fake API");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind the fake API");
            let _ = tx.send(listener.local_addr().expect("its address"));
            let _ = axum::serve(listener, router).await;
        });
    });
    rx.recv().expect("the fake API's address")
}

fn write_kubeconfig(dir: &Path, api: SocketAddr) -> PathBuf {
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters: [{{name: fake, cluster: {{server: \"http://{api}\"}}}}]\nusers: [{{name: fake, user: {{}}}}]\ncontexts: [{{name: fake, context: {{cluster: fake, user: fake, namespace: default}}}}]\ncurrent-context: fake\n"
    );
    std::fs::write(&path, text).expect("write the kubeconfig");
    path
}

/// `field` of /proc/PID/status in kB.
fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resident kB by kind of mapping, from /proc/PID/smaps.
fn resident_by_kind(pid: u32) -> BTreeMap<&'static str, u64> {
    let mut kinds = BTreeMap::new();
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps")) else {
        return kinds;
    };
    let mut kind = "";
    let mut size_kb = 0;
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            let name = fields.nth(4).unwrap_or_default();
            kind = if name.contains("netreach") {
                "binary (text, data)"
            } else if name.contains(".so") {
                "shared libraries"
            } else if name == "[heap]" {
                "[heap] (main malloc arena)"
            } else if name.starts_with('[') {
                "[stack], [vdso], ..."
            } else if name.is_empty() {
                "anonymous"
            } else {
                "other files"
            };
        } else if first == "Size:" {
            size_kb = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        } else if first == "Rss:" {
            let rss: u64 = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            // Anonymous mappings up to 8 MiB + a guard page are thread stacks (or small mmaps);
            // larger ones are the other threads' malloc arenas.
            let kind = match kind {
                "anonymous" if size_kb > 8 * 1024 + 4 => "anonymous > 8 MiB (other malloc arenas)",
                "anonymous" => "anonymous <= 8 MiB (thread stacks, small mmaps)",
                other => other,
            };
            *kinds.entry(kind).or_insert(0) += rss;
        }
    }
    kinds
}

/// The agent's /metrics (HTTPS, self-signed: `curl -k`), or `None`.
fn scrape(port: u16) -> Option<String> {
    let output = Command::new("curl")
        .args(["-sk", "--max-time", "5"])
        .arg(format!("https://127.0.0.1:{port}/metrics"))
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The sum of a metric's samples, by the value of `label` (`""` when unlabelled).
fn samples_by(metrics: &str, name: &str, label: &str) -> BTreeMap<String, f64> {
    let mut sums = BTreeMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        let Some(value) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        let key = rest
            .split_once(&format!("{label}=\""))
            .and_then(|(_, after)| after.split_once('"'))
            .map_or(String::new(), |(value, _)| value.to_string());
        *sums.entry(key).or_insert(0.0) += value;
    }
    sums
}

struct Run {
    name: &'static str,
    probes: f64,
    verdicts: BTreeMap<String, f64>,
    series: usize,
    steady_max_kb: u64,
    scraped_max_kb: u64,
    hwm_kb: u64,
    anon_kb: u64,
    file_kb: u64,
    threads: u64,
    kinds: BTreeMap<&'static str, u64>,
}

/// The agent's process; with `AGENT_WRAPPER` (e.g. `heaptrack`), `pid` is the agent below the
/// wrapper.
struct Agent {
    child: Child,
    pid: u32,
}

impl Drop for Agent {
    fn drop(&mut self) {
        // SIGTERM first: the agent stops gracefully and a wrapper (heaptrack) writes its data.
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let until = Instant::now() + Duration::from_secs(15);
        while Instant::now() < until {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The process below `parent` (at any depth) whose executable is `bin`.
fn find_agent(parent: u32, bin: &Path) -> Option<u32> {
    let exe = |pid: u32| std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    let bin = bin.canonicalize().ok()?;
    if exe(parent).as_deref() == Some(bin.as_path()) {
        return Some(parent);
    }
    let children = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
        .unwrap_or_default();
    children
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .find_map(|child| find_agent(child, &bin))
}

fn run_agent(
    name: &'static str,
    bin: &Path,
    kubeconfig: &Path,
    dir: &Path,
    extra_args: &[&str],
) -> Run {
    let (listen, health) = (free_port(), free_port());
    let log = std::fs::File::create(dir.join(format!("agent-{}.log", name.replace(' ', "-"))))
        .expect("agent log");
    let wrapper = std::env::var_os("AGENT_WRAPPER");
    let mut command = match &wrapper {
        Some(wrapper) => {
            let mut command = Command::new(wrapper);
            command.arg(bin);
            command
        }
        None => Command::new(bin),
    };
    command
        .args(["agent", "--node-name", "node-1", "--api-auth=false"])
        .arg(format!("--listen=127.0.0.1:{listen}"))
        .arg(format!("--health-listen=127.0.0.1:{health}"))
        .arg(format!(
            "--termination-log={}",
            dir.join("termination-log").display()
        ))
        .args(extra_args)
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log);
    let child = command.spawn().expect("start netreach agent");
    let started = Instant::now();
    let mut agent = Agent {
        pid: child.id(),
        child,
    };
    while wrapper.is_some() && started.elapsed() < Duration::from_secs(10) {
        if let Some(pid) = find_agent(agent.child.id(), bin) {
            agent.pid = pid;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = agent.pid;
    // Until every pair has been probed twice.
    let mut last = String::new();
    loop {
        assert!(
            started.elapsed() < DEADLINE,
            "{name}: the agent did not probe every pair twice within {DEADLINE:?}; last scrape:\n{}",
            last.lines()
                .filter(|l| l.starts_with("netreach_probes_total"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_secs(2));
        assert!(
            status_kb(pid, "VmRSS").is_some(),
            "{name}: the agent exited; see {}",
            dir.display()
        );
        if let Some(metrics) = scrape(listen) {
            let probes: f64 = samples_by(&metrics, "netreach_probes_total", "")
                .values()
                .sum();
            last = metrics;
            if probes >= 2.0 * PAIRS as f64 {
                break;
            }
        }
    }
    // One more interval unscraped (probing goes on): the steady state; then three scrapes,
    // with the RSS sampled while each runs.
    let sample_every = Duration::from_millis(100);
    let mut steady_max_kb = 0;
    let until = Instant::now() + Duration::from_secs(INTERVAL_SECS);
    while Instant::now() < until {
        steady_max_kb = steady_max_kb.max(status_kb(pid, "VmRSS").unwrap_or(0));
        std::thread::sleep(sample_every);
    }
    let mut scraped_max_kb = steady_max_kb;
    let mut metrics = last;
    for _ in 0..3 {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(scrape(listen));
        });
        let scraped = loop {
            scraped_max_kb = scraped_max_kb.max(status_kb(pid, "VmRSS").unwrap_or(0));
            match rx.recv_timeout(Duration::from_millis(5)) {
                Ok(scraped) => break scraped,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break None,
            }
        };
        metrics = scraped.unwrap_or(metrics);
        std::thread::sleep(Duration::from_secs(1));
    }
    let series = metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count();
    Run {
        name,
        probes: samples_by(&metrics, "netreach_probes_total", "")
            .values()
            .sum(),
        verdicts: samples_by(&metrics, "netreach_spec_pairs", "verdict"),
        series,
        steady_max_kb,
        scraped_max_kb,
        hwm_kb: status_kb(pid, "VmHWM").unwrap_or(0),
        anon_kb: status_kb(pid, "RssAnon").unwrap_or(0),
        file_kb: status_kb(pid, "RssFile").unwrap_or(0),
        threads: status_kb(pid, "Threads").unwrap_or(0),
        kinds: resident_by_kind(pid),
    }
}

fn mib(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

fn main() {
    if !is_root() {
        println!("agent_rss: skipped (needs root: the testbed builds network namespaces)");
        return;
    }
    let bin = std::env::var_os("AGENT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_netreach")));
    let binary_bytes = std::fs::metadata(&bin).map(|m| m.len()).unwrap_or(0);
    println!(
        "agent binary: {} ({:.1} MB on disk, debug info included)",
        bin.display(),
        binary_bytes as f64 / 1e6
    );
    let scenario =
        testbed::Scenario::from_yaml(&scenario(), "agent_rss").expect("the bench's scenario");
    testbed::install_signal_teardown().expect("Ctrl-C teardown");
    let started = Instant::now();
    let bed = testbed::Testbed::start(&scenario).expect("start the testbed");
    println!(
        "testbed: {PODS} pods on node-1 in {:.1}s; {PAIRS} pairs, {LOCKED} destinations closed by a policy",
        started.elapsed().as_secs_f64()
    );
    let objects = bed.objects();
    let fake = FakeApi::new();
    for object in &objects {
        fake.apply(object.clone());
    }
    let writes = MemoryApi::new();
    writes.sync(&objects);
    let api = serve_api(fake, writes.clone());
    let dir = std::env::temp_dir().join(format!("netreach-agent-rss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let kubeconfig = write_kubeconfig(&dir, api);

    let runs = [
        run_agent("as shipped", &bin, &kubeconfig, &dir, &[]),
        run_agent(
            "--pair-metrics all",
            &bin,
            &kubeconfig,
            &dir,
            &["--pair-metrics=all"],
        ),
    ];
    drop(bed);

    println!();
    let row = |label: &str, f: &dyn Fn(&Run) -> String| {
        println!("{label:<52} {:>20} {:>20}", f(&runs[0]), f(&runs[1]));
    };
    row("", &|r| r.name.to_string());
    row("probes run (every pair at least twice)", &|r| {
        format!("{:.0}", r.probes)
    });
    row("pairs by verdict (netreach_spec_pairs)", &|r| {
        r.verdicts
            .iter()
            .filter(|(_, n)| **n > 0.0)
            .map(|(v, n)| format!("{v}={n:.0}"))
            .collect::<Vec<_>>()
            .join(" ")
    });
    row("series per scrape", &|r| r.series.to_string());
    row(
        "VmRSS, steady (max over one interval, sampled 10/s)",
        &|r| mib(r.steady_max_kb),
    );
    row("VmRSS while scraped (max over three scrapes)", &|r| {
        mib(r.scraped_max_kb)
    });
    row("VmHWM (peak since start)", &|r| mib(r.hwm_kb));
    row("RssAnon", &|r| mib(r.anon_kb));
    row("RssFile", &|r| mib(r.file_kb));
    row("threads", &|r| r.threads.to_string());
    let kinds: std::collections::BTreeSet<&str> =
        runs.iter().flat_map(|r| r.kinds.keys().copied()).collect();
    for kind in kinds {
        row(&format!("  resident: {kind}"), &|r| {
            mib(r.kinds.get(kind).copied().unwrap_or(0))
        });
    }
    let target_kb = 30 * 1024;
    for run in &runs {
        println!(
            "{}: steady RSS {} (while scraped {}) against the design's 30 MiB at 10,000 pairs: {}",
            run.name,
            mib(run.steady_max_kb),
            mib(run.scraped_max_kb),
            if run.scraped_max_kb < target_kb {
                "under"
            } else {
                "OVER"
            }
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
