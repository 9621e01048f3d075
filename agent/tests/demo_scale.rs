//! File descriptors at scale (root, testbed): `netreach demo --once` on a generated scenario
//! of 100 source pods x 100 destinations (10,000 pairs) under a container runtime's open-files
//! limit of 1,024 probes every pair (no `not_probed`, no false block) and peaks at no more than
//! 400 descriptors. Prints the peak, the figure the design's fd bound is checked with:
//!
//! ```sh
//! cargo test --release -p netreach --test demo_scale -- --nocapture
//! ```

mod netns_support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const NODES: usize = 4;
const PODS_PER_NODE: usize = 25;
/// The issue's bound for 100 source pods.
const MAX_FDS: usize = 400;
/// Probes in flight per simulated node: the demo runs one agent runtime per node in one
/// process, so four nodes at 16 hold the 64 probes in flight of one agent at its default
/// `--concurrency`, the load the bound is for.
const CONCURRENCY_PER_NODE: usize = 64 / NODES;

/// 100 pods over four nodes, each listening on 8080, one ProbeSpec from every pod to every pod.
fn scenario() -> String {
    let mut out = String::from("name: fd-scale\nnodes: [");
    let nodes: Vec<String> = (1..=NODES).map(|n| format!("node-{n}")).collect();
    out.push_str(&nodes.join(", "));
    out.push_str("]\nobjects:\n  - {apiVersion: v1, kind: Namespace, metadata: {name: load}}\n");
    for node in 1..=NODES {
        for i in 0..PODS_PER_NODE {
            let _ = write!(
                out,
                "  - apiVersion: v1\n    kind: Pod\n    metadata: {{name: p{node}-{i}, namespace: load, labels: {{app: load}}}}\n    spec: {{nodeName: node-{node}, containers: [{{name: c, ports: [{{containerPort: 8080}}]}}]}}\n    status: {{phase: Running, podIP: 10.244.{node}.{}, conditions: [{{type: Ready, status: \"True\"}}]}}\n",
                10 + i
            );
        }
    }
    out.push_str(
        "  - apiVersion: netreach.dev/v1alpha1\n    kind: ProbeSpec\n    metadata: {name: mesh-of-all, namespace: load}\n    spec:\n      from: {podSelector: {matchLabels: {app: load}}}\n      to: [{podSelector: {matchLabels: {app: load}}, ports: [{port: 8080}]}]\n      maxPairs: 10000\n      interval: 60s\n      timeout: 2s\n",
    );
    out
}

/// Open descriptors of `pid` now, by kind (`socket`, `net` namespaces, `pipe`, `anon_inode`,
/// files); empty once it is gone.
fn fd_kinds(pid: u32) -> BTreeMap<String, usize> {
    let mut kinds = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return kinds;
    };
    for entry in dir.flatten() {
        let target = std::fs::read_link(entry.path())
            .map(|t| t.to_string_lossy().into_owned())
            .unwrap_or_default();
        let kind = match target.split_once(':') {
            Some((kind, _)) if !target.starts_with('/') => kind.to_string(),
            _ => "file".to_string(),
        };
        *kinds.entry(kind).or_insert(0) += 1;
    }
    kinds
}

#[test]
fn ten_thousand_pairs_fit_in_400_descriptors_under_a_1024_limit() {
    if !netns_support::is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = std::env::temp_dir().join(format!("netreach-fd-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("scenario.yaml");
    std::fs::write(&path, scenario()).expect("write scenario");

    let (pairs, peak, peak_kinds, elapsed) = run_demo_under_limit(&path);
    let _ = std::fs::remove_dir_all(&dir);
    println!("fd-scale: descriptors at the peak by kind: {peak_kinds:?}");
    println!(
        "fd-scale: {} pairs from {} source pods, peak {peak} open descriptors (bound {MAX_FDS}), {:.1} s",
        pairs.len(),
        NODES * PODS_PER_NODE,
        elapsed.as_secs_f64()
    );
    assert!(pairs.len() >= 9_900, "{} pairs", pairs.len());
    let mut by_verdict = BTreeMap::<String, usize>::new();
    for pair in &pairs {
        *by_verdict
            .entry(pair["verdict"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    let mut failing = BTreeMap::<String, usize>::new();
    for pair in pairs.iter().filter(|p| p["verdict"] != "ok") {
        let from = pair["from"].as_str().unwrap_or("?");
        let to = pair["to"].as_str().unwrap_or("?");
        *failing
            .entry(format!("from {}", &from[..from.len().min(7)]))
            .or_default() += 1;
        *failing
            .entry(format!("to {}", &to[..to.len().min(7)]))
            .or_default() += 1;
        *failing.entry(format!("from {from}")).or_default() += 1;
    }
    if !failing.is_empty() {
        eprintln!("pairs not ok, by source and destination: {failing:?}");
    }
    assert_eq!(
        by_verdict.keys().collect::<Vec<_>>(),
        ["ok"],
        "every pair is probed and open: {by_verdict:?}"
    );
    assert!(
        peak <= MAX_FDS,
        "peak {peak} descriptors for 100 source pods"
    );
}

/// Runs the demo with soft and hard RLIMIT_NOFILE at 1,024 and samples its descriptors.
fn run_demo_under_limit(path: &Path) -> (Vec<Value>, usize, BTreeMap<String, usize>, Duration) {
    let started = Instant::now();
    let mut child = Command::new("prlimit")
        .arg("--nofile=1024:1024")
        .arg(env!("CARGO_BIN_EXE_netreach"))
        .args(["demo", "--once", "--format", "json", "--concurrency"])
        .arg(CONCURRENCY_PER_NODE.to_string())
        .arg("--scenario")
        .arg(path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run netreach demo under prlimit");
    let pid = child.id();
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let mut stdout = stdout;
        std::io::Read::read_to_string(&mut stdout, &mut text).map(|_| text)
    });
    let mut peak = 0;
    let mut peak_kinds = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let kinds = fd_kinds(pid);
        let total: usize = kinds.values().sum();
        if total > peak {
            peak = total;
            peak_kinds = kinds;
        }
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("demo did not finish in 10 minutes");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let status = child.wait().expect("wait");
    let mut stderr = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut err, &mut stderr);
    }
    assert!(status.success(), "demo failed: {stderr}");
    let text = reader.join().expect("reader").expect("stdout");
    let v: Value = serde_json::from_str(&text).expect("json");
    (
        v["pairs"].as_array().cloned().expect("pairs"),
        peak,
        peak_kinds,
        started.elapsed(),
    )
}
