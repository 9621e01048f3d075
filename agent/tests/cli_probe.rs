//! `netreach probe` end to end: the real binary against a testbed scenario
//! (`tests/data/scenarios/probe-cli.yaml`), one namespace selector per case (`--pod-uid`,
//! `--pid`, `--netns`), TCP open / refused / timeout, DNS through the pod's own resolv.conf,
//! and the error messages with exit code 2. Needs root (CI runs as root); otherwise each test
//! prints `skipped` and passes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use testbed::{PodHandle, Testbed};

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// The scenario's testbed, or `None` (with a note) when not root.
fn testbed(test: &str) -> Option<Testbed> {
    if !is_root() {
        eprintln!("skipped {test}: needs root (CI runs as root)");
        return None;
    }
    let scenario =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/scenarios/probe-cli.yaml");
    Some(Testbed::start_file(&scenario).expect("testbed starts"))
}

fn pod<'a>(tb: &'a Testbed, namespace: &str, name: &str) -> &'a PodHandle {
    tb.pod(namespace, name)
        .unwrap_or_else(|| panic!("{namespace}/{name} is in the scenario"))
}

/// `ip:port/TCP` of a pod.
fn tcp(pod: &PodHandle, port: u16) -> String {
    format!("{}:{port}/TCP", pod.ip.expect("pod has an IP"))
}

fn netreach(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netreach"))
        .arg("probe")
        .args(args)
        .output()
        .expect("run netreach")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs a probe with `--format json`, expects exit 0 and returns the parsed report.
fn probe_json(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    let out = netreach(&all);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "netreach probe {all:?}\nstdout: {text}\nstderr: {}",
        stderr(&out)
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("JSON ({e}): {text}"))
}

/// Exactly `outcome: count` among the outcomes, nothing that failed to run.
fn assert_all(report: &Value, outcome: &str, count: u64) {
    assert_eq!(report["count"], count, "{report:#}");
    let outcomes = report["outcomes"].as_object().expect("outcomes object");
    assert_eq!(outcomes.len(), 1, "only {outcome}: {report:#}");
    assert_eq!(outcomes[outcome], count, "{report:#}");
    assert_eq!(report["failed_to_run"], serde_json::json!([]), "{report:#}");
}

/// The four percentiles are numbers, ordered, and at least `min_seconds`.
fn assert_latencies(report: &Value, min_seconds: f64) {
    let latency = &report["latency_seconds"];
    let get = |key: &str| {
        latency[key]
            .as_f64()
            .unwrap_or_else(|| panic!("latency_seconds.{key} is a number: {report:#}"))
    };
    let (p50, p90, p99, max) = (get("p50"), get("p90"), get("p99"), get("max"));
    assert!(
        min_seconds <= p50 && p50 <= p90 && p90 <= p99 && p99 <= max,
        "{report:#}"
    );
    assert!(report["duration_seconds"].as_f64().is_some(), "{report:#}");
}

/// Expects exit code 2 and `needle` in stderr; returns stderr.
fn assert_fails_with(args: &[&str], needle: &str) -> String {
    let out = netreach(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "netreach probe {args:?}: {err}");
    assert!(
        err.contains(needle),
        "netreach probe {args:?}: stderr lacks {needle:?}: {err}"
    );
    assert!(out.stdout.is_empty(), "no report on error");
    err
}

#[test]
fn pod_uid_to_an_open_port_is_open_with_latencies() {
    let Some(tb) = testbed("pod_uid_to_an_open_port_is_open_with_latencies") else {
        return;
    };
    let (client, server) = (pod(&tb, "demo", "client"), pod(&tb, "demo", "server"));
    let report = probe_json(&[
        "--pod-uid",
        &client.uid,
        "--to",
        &tcp(server, 8080),
        "--count",
        "20",
        "--concurrency",
        "4",
    ]);
    assert_all(&report, "open", 20);
    assert_latencies(&report, 0.0);
    assert_eq!(report["concurrency"], 4, "{report:#}");
    assert_eq!(report["target"], "10.244.2.10:8080/TCP", "{report:#}");
    assert_eq!(report["errors"], serde_json::json!([]), "{report:#}");

    // The text format says the same.
    let out = netreach(&["--pod-uid", &client.uid, "--to", &tcp(server, 8080)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        text.contains("1 probe(s)") && text.contains("open"),
        "{text}"
    );
}

#[test]
fn pid_to_a_closed_port_is_refused() {
    let Some(tb) = testbed("pid_to_a_closed_port_is_refused") else {
        return;
    };
    let (client, server) = (pod(&tb, "demo", "client"), pod(&tb, "demo", "server"));
    let app_pid = client
        .app_pid
        .expect("client has an app process")
        .to_string();
    let report = probe_json(&[
        "--pid",
        &app_pid,
        "--to",
        &tcp(server, 8081),
        "--count",
        "5",
        "--concurrency",
        "5",
    ]);
    assert_all(&report, "refused", 5);
    assert_latencies(&report, 0.0);
    assert!(
        report["netns"]
            .as_str()
            .is_some_and(|n| n.contains(&app_pid)),
        "{report:#}"
    );
}

#[test]
fn netns_path_through_a_drop_rule_times_out() {
    let Some(tb) = testbed("netns_path_through_a_drop_rule_times_out") else {
        return;
    };
    let (client, server) = (pod(&tb, "demo", "client"), pod(&tb, "demo", "server"));
    let name = client.netns_name.as_deref().expect("client has a netns");
    let path = format!("/run/netns/{name}");
    let report = probe_json(&[
        "--netns",
        &path,
        "--to",
        &tcp(server, 8082),
        "--count",
        "3",
        "--concurrency",
        "3",
        "--timeout",
        "300ms",
    ]);
    assert_all(&report, "timeout", 3);
    assert_latencies(&report, 0.3);
    let max = report["latency_seconds"]["max"]
        .as_f64()
        .unwrap_or(f64::MAX);
    assert!(max < 2.0, "the timeout bounds each probe: {report:#}");
    let errors = report["errors"].as_array().expect("errors array");
    assert!(
        errors.iter().any(|e| e["detail"]
            .as_str()
            .is_some_and(|d| d.contains("no answer"))
            && e["count"] == 3),
        "{report:#}"
    );
}

#[test]
fn pod_uid_dns_resolves_with_the_pods_resolv_conf() {
    let Some(tb) = testbed("pod_uid_dns_resolves_with_the_pods_resolv_conf") else {
        return;
    };
    let client = pod(&tb, "demo", "client");
    // A short name walks the pod's search list (demo.svc.cluster.local first); the FQDN with
    // a trailing dot is one query.
    for name in ["server", "server.demo.svc.cluster.local."] {
        let report = probe_json(&["--pod-uid", &client.uid, "--dns", name, "--count", "2"]);
        assert_all(&report, "resolved", 2);
        assert_latencies(&report, 0.0);
        assert_eq!(
            report["answers"],
            serde_json::json!(["10.244.2.10"]),
            "{name}: {report:#}"
        );
        assert_eq!(report["target"], format!("dns:{name}"), "{report:#}");
    }
    // A bare netns path has no resolv.conf to read.
    let name = client.netns_name.as_deref().expect("client has a netns");
    assert_fails_with(
        &["--netns", &format!("/run/netns/{name}"), "--dns", "server"],
        "--dns needs --pid or --pod-uid",
    );
}

#[test]
fn errors_exit_2_with_a_clear_message() {
    let Some(tb) = testbed("errors_exit_2_with_a_clear_message") else {
        return;
    };
    let server = pod(&tb, "demo", "server");
    let target = tcp(server, 8080);

    // A hostNetwork pod shares the node's namespace: nothing to probe from inside.
    let host = pod(&tb, "kube-system", "cni-node-1");
    let err = assert_fails_with(&["--pod-uid", &host.uid, "--to", &target], "host network");
    assert!(err.contains(&host.uid), "{err}");

    // A UID no process on this node carries.
    let unknown = "0b9e4c1a-5d2f-4e8b-9a67-3c1d2e4f5a6b";
    let err = assert_fails_with(&["--pod-uid", unknown, "--to", &target], "not on this node");
    assert!(err.contains(unknown), "{err}");

    // A process that does not exist.
    assert_fails_with(&["--pid", "999999999", "--to", &target], "does not exist");

    // A namespace that existed and is gone: the testbed is torn down first.
    let client = pod(&tb, "demo", "client");
    let path = format!(
        "/run/netns/{}",
        client.netns_name.as_deref().expect("client has a netns")
    );
    assert!(
        Path::new(&path).exists(),
        "{path} exists while the testbed runs"
    );
    tb.teardown().expect("clean teardown");
    assert!(!Path::new(&path).exists(), "{path} is gone after teardown");
    let err = assert_fails_with(
        &["--netns", &path, "--to", "10.244.2.10:8080/TCP"],
        "no such network namespace",
    );
    assert!(err.contains(&path), "{err}");

    // Not root: a clear message before anything is opened (needs setpriv, util-linux).
    let nobody = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_netreach"))
        .args([
            "probe",
            "--netns",
            "/proc/self/ns/net",
            "--to",
            "127.0.0.1:9/TCP",
        ])
        .output();
    match nobody {
        Ok(out) if stderr(&out).starts_with("setpriv:") => eprintln!(
            "not-root check skipped: setpriv could not run the binary as nobody: {}",
            stderr(&out).trim()
        ),
        Ok(out) => {
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "as nobody: {err}");
            assert!(err.contains("needs root"), "{err}");
        }
        Err(error) => eprintln!("not-root check skipped: setpriv unavailable ({error})"),
    }
}

/// In a pod whose mesh redirects all TCP to a local accept-all proxy (the testbed installs
/// what the mesh's init container does), a probe made as anyone reads every port open; with
/// `--mesh` it is made with the identity the mesh exempts and sees the real drop. An SCTP
/// probe on a kernel without SCTP did not run: exit 2, named.
#[test]
fn mesh_identity_gets_past_the_sidecar_redirect() {
    if !is_root() {
        eprintln!("skipped: needs root (CI runs as root)");
        return;
    }
    let scenario =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/scenarios/mesh-udp-sctp.yaml");
    let tb = Testbed::start_file(&scenario).expect("testbed starts");
    let backend = pod(&tb, "shop", "backend");
    let blocked = tcp(backend, 9090);
    let open = tcp(backend, 8080);
    for (client, mesh) in [
        ("istio-client", "istio"),
        ("linkerd-client", "linkerd"),
        ("ambient-client", "istio-ambient"),
    ] {
        let uid = pod(&tb, "shop", client).uid.clone();
        let common = ["--pod-uid", uid.as_str(), "--timeout", "300ms"];
        // Through the proxy: the dropped port looks open.
        let naive = probe_json(&[&common[..], &["--to", &blocked, "--mesh", "none"]].concat());
        assert_all(&naive, "open", 1);
        // Past it: the drop shows, and the open port is still open.
        let past = probe_json(&[&common[..], &["--to", &blocked, "--mesh", mesh]].concat());
        assert_all(&past, "timeout", 1);
        let past = probe_json(&[&common[..], &["--to", &open, "--mesh", mesh]].concat());
        assert_all(&past, "open", 1);
    }
    let sctp_supported = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::SCTP),
    )
    .is_ok();
    if !sctp_supported {
        let uid = pod(&tb, "shop", "istio-client").uid.clone();
        let sctp = format!("{}:3868/SCTP", backend.ip.expect("ip"));
        let out = netreach(&["--pod-uid", &uid, "--to", &sctp, "--timeout", "300ms"]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Protocol not supported"), "{text}");
    }
}

/// Out of file descriptors, a probe does not run, and says so: never a network outcome. With
/// an open-files limit of 12 (just above what the process needs to start), forty concurrent
/// probes of a closed local port either run (`refused`) or fail to run with EMFILE
/// (`failed_to_run`, exit 2): no timeout, no unreachable, nothing that would read as a block.
#[test]
fn out_of_descriptors_is_not_a_network_outcome() {
    if !is_root() {
        eprintln!("skipped: needs root (CI runs as root)");
        return;
    }
    let name = format!("nrfd-{}", std::process::id());
    let netns = PathBuf::from("/run/netns").join(&name);
    let ok = Command::new("ip").args(["netns", "add", &name]).status();
    assert!(ok.is_ok_and(|s| s.success()), "ip netns add {name}");
    let _ = Command::new("ip")
        .args(["-n", &name, "link", "set", "lo", "up"])
        .status();
    let out = Command::new("prlimit")
        .arg("--nofile=12:12")
        .arg(env!("CARGO_BIN_EXE_netreach"))
        .args(["probe", "--netns"])
        .arg(&netns)
        .args([
            "--to",
            "127.0.0.1:9/TCP",
            "--count",
            "40",
            "--concurrency",
            "40",
            "--format",
            "json",
        ])
        .output()
        .expect("run netreach under prlimit");
    let _ = Command::new("ip").args(["netns", "del", &name]).status();
    let text = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("JSON ({e}): {text} {}", stderr(&out)));
    let outcomes = report["outcomes"].as_object().expect("outcomes");
    assert!(
        outcomes.keys().all(|k| k == "refused"),
        "only refusals may be observed: {report:#}"
    );
    let ran = outcomes.get("refused").and_then(Value::as_u64).unwrap_or(0);
    let failed: u64 = report["failed_to_run"]
        .as_array()
        .expect("failed_to_run")
        .iter()
        .map(|f| {
            assert!(
                f["error"]
                    .as_str()
                    .unwrap_or("")
                    .contains("Too many open files"),
                "{report:#}"
            );
            f["count"].as_u64().unwrap_or(0)
        })
        .sum();
    assert_eq!(ran + failed, 40, "{report:#}");
    assert!(failed > 0, "the limit was hit: {report:#}");
    assert_eq!(
        out.status.code(),
        Some(2),
        "a probe that did not run is exit 2"
    );
}
