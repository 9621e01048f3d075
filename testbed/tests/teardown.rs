//! Teardown leaves nothing: not after `teardown()`, not after a drop, not after a panic in a
//! test closure, not after SIGTERM with `install_signal_teardown`. Needs root (CI runs as root).
#![allow(clippy::unwrap_used)] // helpers of a test binary: a failed unwrap is a failed test

mod common;

use std::{
    panic,
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use common::{alive, all_pids, assert_gone, root_or_skip, start};

const SCENARIO: &str = r#"
name: teardown
nodes: [node-1, node-2]
objects:
  - apiVersion: v1
    kind: Pod
    metadata: {name: dns, namespace: kube-system}
    spec: {nodeName: node-1, containers: [{name: d}]}
    status: {phase: Running, podIP: 10.244.1.2}
  - apiVersion: v1
    kind: Pod
    metadata: {name: a, namespace: ns}
    spec: {nodeName: node-1, containers: [{name: c, ports: [{containerPort: 80}, {containerPort: 81, protocol: UDP}]}]}
    status: {phase: Running, podIP: 10.244.1.10}
  - apiVersion: v1
    kind: Pod
    metadata: {name: b, namespace: ns}
    spec: {nodeName: node-2, containers: [{name: c, ports: [{containerPort: 80}]}]}
    status: {phase: Running, podIP: 10.244.2.10}
  - apiVersion: v1
    kind: Pod
    metadata: {name: agent, namespace: kube-system}
    spec: {nodeName: node-2, hostNetwork: true, containers: [{name: c}]}
    status: {phase: Running}
  - apiVersion: v1
    kind: Pod
    metadata: {name: crio, namespace: ns}
    spec: {nodeName: node-2, containers: [{name: c}]}
    status: {phase: Running, podIP: 10.244.2.11}
dataplane:
  dns: {pod: kube-system/dns, records: {x.ns.svc.cluster.local: SERVFAIL}}
  rules: [{action: drop, from: ns/a, to: ns/b}]
  faults: [{kind: node-isolated, node: node-2}]
"#;

#[test]
fn explicit_teardown_leaves_nothing() {
    if !root_or_skip("explicit_teardown_leaves_nothing") {
        return;
    }
    let tb = start(SCENARIO);
    let prefix = tb.prefix().to_string();
    let pids = all_pids(&tb);
    assert!(pids.len() >= 9, "{pids:?}");
    assert!(!testbed::residue(&prefix).is_empty());
    tb.teardown().unwrap();
    assert_gone(&prefix, &pids);
}

#[test]
fn drop_leaves_nothing() {
    if !root_or_skip("drop_leaves_nothing") {
        return;
    }
    let tb = start(SCENARIO);
    let prefix = tb.prefix().to_string();
    let pids = all_pids(&tb);
    drop(tb);
    assert_gone(&prefix, &pids);
}

#[test]
fn a_panic_inside_a_test_closure_leaves_nothing() {
    if !root_or_skip("a_panic_inside_a_test_closure_leaves_nothing") {
        return;
    }
    let (tx, rx) = mpsc::channel();
    let result = panic::catch_unwind(move || {
        let tb = start(SCENARIO);
        tx.send((tb.prefix().to_string(), all_pids(&tb))).unwrap();
        panic!("deliberate panic with a live testbed");
    });
    assert!(result.is_err());
    let (prefix, pids) = rx.recv().unwrap();
    assert_gone(&prefix, &pids);
}

/// Run as a child process by `sigterm_tears_down_and_exits_130`: starts a testbed, installs
/// the signal teardown, reports its prefix and PIDs, then waits to be signalled.
#[test]
#[ignore = "the child process of sigterm_tears_down_and_exits_130"]
fn signal_child() {
    let Some(report) = std::env::var_os("TESTBED_SIGNAL_CHILD") else {
        return; // Only meaningful as the child.
    };
    testbed::install_signal_teardown().unwrap();
    let tb = start(SCENARIO);
    let pids: Vec<String> = all_pids(&tb).iter().map(u32::to_string).collect();
    let tmp = Path::new(&report).with_extension("tmp");
    std::fs::write(&tmp, format!("{} {}", tb.prefix(), pids.join(" "))).unwrap();
    std::fs::rename(&tmp, &report).unwrap();
    std::thread::sleep(Duration::from_secs(30));
    panic!("was not signalled");
}

#[test]
fn sigterm_tears_down_and_exits_130() {
    if !root_or_skip("sigterm_tears_down_and_exits_130") {
        return;
    }
    let report = std::env::temp_dir().join(format!("testbed-signal-{}", std::process::id()));
    let _ = std::fs::remove_file(&report);
    let stderr = report.with_extension("stderr");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "signal_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("TESTBED_SIGNAL_CHILD", &report)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let child_stderr = || std::fs::read_to_string(&stderr).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !report.exists() && Instant::now() < deadline {
        assert!(
            child.try_wait().unwrap().is_none(),
            "child exited early: {}",
            child_stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = std::fs::read_to_string(&report).unwrap();
    let _ = std::fs::remove_file(&report);
    let mut words = text.split_whitespace();
    let prefix = words.next().unwrap().to_string();
    let pids: Vec<u32> = words.map(|w| w.parse().unwrap()).collect();
    assert!(pids.iter().all(|&p| alive(p)));
    let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status}: {}", child_stderr());
    let _ = std::fs::remove_file(&stderr);
    assert_gone(&prefix, &pids);
}
