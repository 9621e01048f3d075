//! `netreach probe` cluster mode through the binary, without a cluster: how the flags of the
//! two modes combine, the errors found before any API call, and "no kubeconfig". The kube calls
//! themselves are tested against a mocked API server beside the code (`cli::probe_cluster`).

use std::process::{Command, Output};

/// Runs `netreach probe ARGS` with a kubeconfig that does not exist and no in-cluster
/// environment, so nothing can reach a real cluster.
fn probe(args: &[&str]) -> Output {
    let home = std::env::temp_dir().join("netreach-probe-cluster-test-home");
    Command::new(env!("CARGO_BIN_EXE_netreach"))
        .arg("probe")
        .args(args)
        .env("KUBECONFIG", home.join("no-such-kubeconfig"))
        .env("HOME", &home)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .output()
        .expect("netreach runs")
}

/// Expects exit code 2 and every `needle` in stderr.
fn assert_fails_with(args: &[&str], needles: &[&str]) {
    let out = probe(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "netreach probe {args:?}: {stderr}"
    );
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "netreach probe {args:?}: stderr lacks {needle:?}: {stderr}"
        );
    }
    assert!(out.stdout.is_empty(), "nothing on stdout: {args:?}");
}

#[test]
fn probe_cluster_without_a_kubeconfig_cannot_reach_a_cluster() {
    assert_fails_with(
        &[
            "--from",
            "shop/frontend",
            "--to",
            "payments/gateway",
            "--port",
            "8443",
        ],
        &["error: cannot reach a cluster: ", "no-such-kubeconfig"],
    );
}

#[test]
fn probe_cluster_flags_exclude_local_mode() {
    // One source: local flags or --from, not both and not none.
    assert_fails_with(
        &[
            "--from",
            "shop/frontend",
            "--netns",
            "/proc/self/ns/net",
            "--dns",
            "example.com",
        ],
        &["cannot be used with"],
    );
    assert_fails_with(
        &["--to", "127.0.0.1:9"],
        &["--netns", "--pid", "--pod-uid", "--from"],
    );
    // Cluster-only flags do not go with local mode; --concurrency is local only.
    for flag in [
        ["--port", "80"],
        ["--namespace", "shop"],
        ["--wait-timeout", "5s"],
    ] {
        let mut args = vec!["--netns", "/proc/self/ns/net", "--to", "127.0.0.1:9"];
        args.extend(flag);
        assert_fails_with(&args, &["'--netns <PATH>' cannot be used with", flag[0]]);
    }
    assert_fails_with(
        &[
            "--from",
            "shop/frontend",
            "--dns",
            "example.com",
            "--concurrency",
            "4",
        ],
        &["--concurrency", "cannot be used with"],
    );
}

#[test]
fn probe_cluster_reads_to_by_mode() {
    // Cluster mode: the local form of --to is refused before any API call, with the fix.
    assert_fails_with(
        &["--from", "shop/frontend", "--to", "10.0.0.1:80/TCP"],
        &["--to 10.0.0.1 --port 80/TCP"],
    );
    assert_fails_with(
        &["--from", "shop/frontend", "--to", "payments/gateway"],
        &["needs --port"],
    );
    assert_fails_with(
        &[
            "--from",
            "shop/frontend",
            "--dns",
            "example.com",
            "--count",
            "101",
        ],
        &["--count: 101 is out of range"],
    );
    // Local mode: a cluster-mode target says what local mode takes.
    assert_fails_with(
        &["--netns", "/proc/self/ns/net", "--to", "payments/gateway"],
        &["--to payments/gateway", "IP:PORT[/PROTO]", "--from"],
    );
}
