//! `netreach demo` end to end on the testbed (root): the built-in scenario and the example
//! scenarios each produce exactly their `expect` list, and live mode serves the verdicts on
//! /metrics and /v1/pairs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn expectations(scenario: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(scenario).expect("scenario");
    let doc: Value = serde_yaml_ng::from_str(&text).expect("scenario yaml");
    doc["expect"].as_array().cloned().expect("expect list")
}

/// Whether a report is the pair an expectation names.
fn same_pair(expect: &Value, report: &Value) -> bool {
    let keys = [
        "spec", "from", "to", "service", "host", "dns", "port", "protocol",
    ];
    keys.iter()
        .all(|k| expect.get(*k).is_none() || expect[*k] == report[*k])
}

fn run_once(scenario: &Path) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_netreach"))
        .args(["demo", "--once", "--format", "json", "--scenario"])
        .arg(scenario)
        .output()
        .expect("run netreach demo");
    assert!(
        out.status.success(),
        "demo failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["problems"], serde_json::json!([]), "{v}");
    v["pairs"].as_array().cloned().expect("pairs")
}

/// Whether this kernel can make SCTP sockets (the module may be absent or blacklisted).
fn kernel_has_sctp() -> bool {
    socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::SCTP),
    )
    .is_ok()
}

/// An expectation as it applies on this kernel: `with_sctp` replaces fields where the kernel
/// has SCTP, and is dropped either way.
fn for_this_kernel(mut expect: Value) -> Value {
    let with_sctp = expect.as_object_mut().and_then(|o| o.remove("with_sctp"));
    if let (Some(Value::Object(with)), true) = (with_sctp, kernel_has_sctp()) {
        for (key, value) in with {
            expect[key.as_str()] = value;
        }
    }
    expect
}

fn check_scenario(relative: &str) {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let scenario = repo().join(relative);
    let expect: Vec<Value> = expectations(&scenario)
        .into_iter()
        .map(for_this_kernel)
        .collect();
    let reports = run_once(&scenario);
    assert_eq!(
        reports.len(),
        expect.len(),
        "{relative}: every pair has an expectation and vice versa: {reports:#?}"
    );
    for e in &expect {
        let found: Vec<&Value> = reports.iter().filter(|r| same_pair(e, r)).collect();
        assert_eq!(
            found.len(),
            1,
            "{relative}: expected exactly one report for {e}"
        );
        let r = found[0];
        for (key, want) in e.as_object().expect("object") {
            assert_eq!(
                &r[key.as_str()],
                want,
                "{relative}: {key} of {e}\nreport: {r:#}"
            );
        }
        // Every report explains itself and carries a one-line summary.
        assert!(!r["summary"].as_str().unwrap_or("").is_empty(), "{r}");
        assert!(!r["explanation"].as_str().unwrap_or("").is_empty(), "{r}");
    }
}

#[test]
fn builtin_runbook_scenario_matches_its_expectations() {
    check_scenario("agent/scenarios/runbook.yaml");
}

#[test]
fn egress_and_named_ports_scenario() {
    check_scenario("examples/scenarios/egress-and-named-ports.yaml");
}

#[test]
fn cni_rejects_scenario() {
    check_scenario("examples/scenarios/cni-rejects.yaml");
}

#[test]
fn dns_failures_scenario() {
    check_scenario("examples/scenarios/dns-failures.yaml");
}

#[test]
fn node_not_ready_scenario() {
    check_scenario("examples/scenarios/node-not-ready.yaml");
}

/// Meshed sources (Istio sidecar, Linkerd, Istio ambient) whose pods redirect all TCP to a
/// local accept-all proxy: a blocked port still reads blocked_by_policy, because the probe
/// is made with the identity each mesh exempts. Plus UDP silence (inconclusive) and SCTP.
#[test]
fn mesh_udp_sctp_scenario() {
    check_scenario("examples/scenarios/mesh-udp-sctp.yaml");
}

#[test]
fn tenancy_scenario() {
    check_scenario("examples/scenarios/tenancy.yaml");
}

#[test]
fn host_targets_scenario() {
    check_scenario("examples/scenarios/host-targets.yaml");
}

/// Service pairs: partially blocked, ok, blocked by policy, no ready endpoints and a broken
/// Service path, each endpoint reported on its own targetPort.
#[test]
fn services_scenario_matches_its_expectations() {
    check_scenario("examples/scenarios/services.yaml");
}

fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut stream =
        TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

#[test]
fn live_mode_serves_verdicts_on_metrics_and_the_api() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    // A port unlikely to clash; loopback only.
    let addr = format!("127.0.0.1:{}", 20000 + std::process::id() % 20000);
    let mut child = Command::new(env!("CARGO_BIN_EXE_netreach"))
        .args([
            "demo",
            "--rounds",
            "3",
            "--interval",
            "2s",
            "--listen",
            &addr,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start demo");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut metrics = String::new();
    while Instant::now() < deadline {
        // Blocked pairs take their timeout: wait until the whole first round is in.
        if let Some((200, body)) = http_get(&addr, "/metrics")
            && body.contains("dst=\"billing/invoices\"")
            && body.contains("netreach_spec_pairs{")
        {
            metrics = body;
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let pairs = http_get(&addr, "/v1/pairs");
    let ready = http_get(&addr, "/readyz");
    let status = child.wait().expect("demo exits by itself after its rounds");
    let mut stderr = String::new();
    let _ = child
        .stderr
        .take()
        .map(|mut s| s.read_to_string(&mut stderr));
    assert!(status.success(), "demo failed: {stderr}");

    let blocked = metrics
        .lines()
        .find(|l| l.starts_with("netreach_pair_verdict{") && l.contains("dst=\"billing/invoices\""))
        .unwrap_or_else(|| panic!("no verdict series for billing/invoices:\n{metrics}"));
    assert!(
        blocked.contains("verdict=\"blocked_by_policy\"")
            && blocked.contains("reason=\"default_deny\""),
        "{blocked}"
    );
    assert!(
        blocked.contains("policy=\"billing/default-deny\"") && blocked.ends_with(" 1"),
        "{blocked}"
    );
    // A healthy pair has no series of its own (`--pair-metrics exceptions`, the default): the
    // spec counts hold it.
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("netreach_pair_") && l.contains("dst=\"shop/cart\"")),
        "a healthy pair has series:\n{metrics}"
    );
    let ok_pairs: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("netreach_spec_pairs{") && l.contains("verdict=\"ok\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(ok_pairs >= 1.0, "healthy pairs counted:\n{metrics}");
    assert!(metrics.contains("netreach_probes_total{"), "probe counters");

    let (code, body) = pairs.expect("/v1/pairs answered");
    assert_eq!(code, 200);
    let v: Value = serde_json::from_str(&body).expect("json");
    assert!(v["pairs"].as_array().is_some_and(|p| p.len() == 11), "{v}");
    assert_eq!(ready.map(|(c, _)| c), Some(200));
}

/// One node, a client and two servers; a ProbeSpec from the client to every `role: server`
/// pod on 8080, probed every second.
const LIVE_SCENARIO: &str = r#"
name: live-edit
nodes: [node-1]
objects:
  - {apiVersion: v1, kind: Namespace, metadata: {name: live}}
  - apiVersion: v1
    kind: Pod
    metadata: {name: client, namespace: live, labels: {app: client}}
    spec: {nodeName: node-1, containers: [{name: c}]}
    status: {phase: Running, podIP: 10.244.1.10}
  - apiVersion: v1
    kind: Pod
    metadata: {name: server-a, namespace: live, labels: {app: server-a, role: server}}
    spec: {nodeName: node-1, containers: [{name: s, ports: [{containerPort: 8080}]}]}
    status: {phase: Running, podIP: 10.244.1.11}
  - apiVersion: v1
    kind: Pod
    metadata: {name: server-b, namespace: live, labels: {app: server-b, role: server}}
    spec: {nodeName: node-1, containers: [{name: s, ports: [{containerPort: 8080}]}]}
    status: {phase: Running, podIP: 10.244.1.12}
  - apiVersion: netreach.dev/v1alpha1
    kind: ProbeSpec
    metadata: {name: to-servers, namespace: live}
    spec:
      from: {podSelector: {matchLabels: {app: client}}}
      to: [{podSelector: {matchLabels: {role: server}}, ports: [{port: 8080}]}]
      interval: 1s
      timeout: 1s
"#;

/// What the edit appends: a deny-all policy on server-a, and the data plane that enforces it.
const DENY_SERVER_A: &str = r#"
  - apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: deny-server-a, namespace: live}
    spec: {podSelector: {matchLabels: {app: server-a}}, policyTypes: [Ingress]}
dataplane:
  rules:
    - {action: drop, from: live/client, to: live/server-a}
"#;

/// The verdict of the pair towards `to` in `/v1/pairs`, if it is there.
fn verdict_towards(addr: &str, to: &str) -> Option<String> {
    let (_, body) = http_get(addr, "/v1/pairs")?;
    let v: Value = serde_json::from_str(&body).ok()?;
    v["pairs"]
        .as_array()?
        .iter()
        .find(|p| p["to"] == to)
        .and_then(|p| p["verdict"].as_str())
        .map(str::to_string)
}

/// Stops a demo this test started (SIGINT: the testbed tears down and exits) however the
/// test ends.
struct InterruptOnDrop(u32);

impl Drop for InterruptOnDrop {
    fn drop(&mut self) {
        // By the PID of the child this test started.
        let _ = Command::new("kill")
            .args(["-INT", &self.0.to_string()])
            .status();
    }
}

/// Polls `check` every 200 ms until it holds or `within` passes.
fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

#[test]
fn live_mode_applies_edits_of_the_scenario_file_as_watch_events() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = std::env::temp_dir().join(format!("netreach-live-edit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("scenario.yaml");
    std::fs::write(&file, LIVE_SCENARIO).expect("write scenario");
    let addr = format!("127.0.0.1:{}", 20000 + (std::process::id() + 7919) % 20000);
    let mut child = Command::new(env!("CARGO_BIN_EXE_netreach"))
        .args(["demo", "--format", "json", "--listen", &addr, "--scenario"])
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start demo");
    let stop = InterruptOnDrop(child.id());

    let both_ok = eventually(Duration::from_secs(30), || {
        verdict_towards(&addr, "live/server-a").as_deref() == Some("ok")
            && verdict_towards(&addr, "live/server-b").as_deref() == Some("ok")
    });
    assert!(both_ok, "both servers reachable at first");

    // A policy and its enforcement added: the pair is re-probed at once and reads blocked,
    // with its change-to-effect time measured.
    std::fs::write(&file, format!("{LIVE_SCENARIO}{DENY_SERVER_A}")).expect("edit");
    let blocked = eventually(Duration::from_secs(15), || {
        verdict_towards(&addr, "live/server-a").as_deref() == Some("blocked_by_policy")
    });
    assert!(blocked, "server-a blocked after the edit");
    let measured = eventually(Duration::from_secs(10), || {
        http_get(&addr, "/metrics").is_some_and(|(_, body)| {
            body.lines().any(|l| {
                l.starts_with("netreach_policy_change_to_effect_seconds_count")
                    && l.rsplit(' ').next().and_then(|n| n.parse::<f64>().ok()) >= Some(1.0)
            })
        })
    });
    assert!(
        measured,
        "netreach_policy_change_to_effect_seconds observed the change"
    );

    // A label edited: server-b is no longer a `role: server`, so its pair goes away.
    let relabelled = format!("{LIVE_SCENARIO}{DENY_SERVER_A}").replace(
        "{app: server-b, role: server}",
        "{app: server-b, role: retired}",
    );
    std::fs::write(&file, relabelled).expect("edit labels");
    let gone = eventually(Duration::from_secs(15), || {
        http_get(&addr, "/v1/pairs").is_some_and(|(code, body)| {
            code == 200 && body.contains("live/server-a") && !body.contains("live/server-b")
        })
    });
    assert!(gone, "server-b's pair removed after its label changed");

    drop(stop);
    let status = child.wait().expect("demo exits on SIGINT");
    let mut stderr = String::new();
    let _ = child
        .stderr
        .take()
        .map(|mut s| s.read_to_string(&mut stderr));
    assert!(
        stderr.contains("scenario edit applied: applied NetworkPolicy live/deny-server-a"),
        "the edit is reported: {stderr}"
    );
    assert!(stderr.contains("dataplane.rules reloaded"), "{stderr}");
    assert!(
        status.success() || status.code() == Some(130),
        "demo ended badly: {status:?}\n{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Where the browser test leaves its screenshot (a CI artefact).
fn artifact_dir() -> PathBuf {
    repo().join("target").join("test-artifacts")
}

/// Debian's Chromium, if installed. `.ci/run` installs it; on CI its absence is a failure, not
/// a skip, so the browser test cannot pass by not running.
fn chromium() -> Option<PathBuf> {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    if found.is_none() && std::env::var_os("CI").is_some() {
        panic!("chromium is not installed (apt-get install chromium; .ci/run does)");
    }
    found
}

/// Runs headless Chromium on `url` with its own profile and no background networking (the
/// machine has no uplink); `extra` picks the output. Killed after 90 s.
fn headless(chromium: &Path, url: &str, extra: &[String]) -> String {
    let profile = std::env::temp_dir().join(format!(
        "netreach-chromium-{}-{}",
        std::process::id(),
        extra.len()
    ));
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1400,1800",
            // Long enough for the page's fetch of /v1/pairs and its render.
            "--virtual-time-budget=8000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let pid = child.id();
    let watchdog = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(90));
        // By the PID of the browser this test started (a no-op once it has exited).
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    });
    let mut out = String::new();
    let _ = child.stdout.take().map(|mut s| s.read_to_string(&mut out));
    let _ = child.wait();
    drop(watchdog);
    let _ = std::fs::remove_dir_all(&profile);
    out
}

/// The web page of `netreach demo`, rendered by a real browser: its counts, its pairs with
/// verdicts, reasons and policy names, the explanation of the worst pair, the matrix, and a
/// screenshot kept in target/test-artifacts/.
#[test]
fn the_web_page_renders_the_pairs_in_headless_chromium() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let Some(chromium) = chromium() else {
        eprintln!("skipped: chromium is not installed");
        return;
    };
    let addr = format!("127.0.0.1:{}", 20000 + (std::process::id() + 4099) % 20000);
    let mut child = Command::new(env!("CARGO_BIN_EXE_netreach"))
        .args(["demo", "--interval", "2s", "--listen", &addr])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start demo");
    let stop = InterruptOnDrop(child.id());
    let all_in = eventually(Duration::from_secs(60), || {
        http_get(&addr, "/v1/pairs").is_some_and(|(code, body)| {
            code == 200
                && serde_json::from_str::<Value>(&body)
                    .is_ok_and(|v| v["pairs"].as_array().is_some_and(|p| p.len() == 11))
        })
    });
    assert!(all_in, "the demo published its 11 pairs");

    let url = format!("http://{addr}/");
    let dom = headless(&chromium, &url, &["--dump-dom".to_string()]);
    let dir = artifact_dir();
    std::fs::create_dir_all(&dir).expect("artifact dir");
    std::fs::write(dir.join("web-page.html"), &dom).expect("keep the DOM");
    let screenshot = dir.join("web-page.png");
    let _ = std::fs::remove_file(&screenshot);
    headless(
        &chromium,
        &url,
        &[format!("--screenshot={}", screenshot.display())],
    );

    drop(stop);
    let _ = child.wait();

    // What the page rendered from /v1/pairs (not in the page's own bytes).
    for wanted in [
        "billing/invoices",     // a destination
        "blocked by policy",    // a verdict, in words
        "default_deny",         // a reason code
        "billing/default-deny", // a policy name
        "Pairs by verdict",
        "Outage history",
        "Probed since",
        "sources x", // a matrix per spec
    ] {
        assert!(
            dom.contains(wanted),
            "{wanted:?} not rendered; DOM kept in {}",
            dir.display()
        );
    }
    // The worst pair's explanation, in the words `explain` uses.
    assert!(
        dom.contains("not isolated (no policy selects it for"),
        "no explanation rendered; DOM kept in {}",
        dir.display()
    );
    // The counts: eleven pairs in all.
    assert!(
        dom.contains("11 of 11"),
        "the pair count; DOM in {}",
        dir.display()
    );
    let png = std::fs::read(&screenshot).expect("a screenshot was written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
}
