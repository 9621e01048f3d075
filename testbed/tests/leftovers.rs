//! Leftovers of dead runs: a fake one (state of a dead PID) and a real one (the owner process
//! SIGKILLed mid-run) are both refused by `Testbed::start` and removed by `cleanup_leftovers`.
//! One test only: while leftovers exist, no testbed of this binary can start. Needs root.
#![allow(clippy::unwrap_used)] // helpers of a test binary: a failed unwrap is a failed test

mod common;

use std::{
    fs,
    os::unix::fs::MetadataExt as _,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{alive, assert_gone, root_or_skip, start};
use testbed::{Error, Testbed};

const SCENARIO: &str = r#"
name: leftovers
nodes: [node-1]
objects:
  - apiVersion: v1
    kind: Pod
    metadata: {name: a, namespace: ns}
    spec: {nodeName: node-1, containers: [{name: c, ports: [{containerPort: 80}]}]}
    status: {phase: Running, podIP: 10.244.1.10}
  - apiVersion: v1
    kind: Pod
    metadata: {name: b, namespace: ns}
    spec: {nodeName: node-1, containers: [{name: c}]}
    status: {phase: Running, podIP: 10.244.1.11}
  - apiVersion: v1
    kind: Pod
    metadata: {name: h, namespace: ns}
    spec: {nodeName: node-1, hostNetwork: true, containers: [{name: c}]}
    status: {phase: Running}
"#;

fn base36(mut n: u32) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(digits[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap()
}

/// A PID that just died.
fn dead_pid() -> u32 {
    let mut c = Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

fn expect_refused() -> String {
    let scenario = testbed::Scenario::from_yaml(SCENARIO, "<test>").unwrap();
    match Testbed::start(&scenario) {
        Err(e @ Error::Leftovers { .. }) => e.to_string(),
        Err(e) => panic!("expected a leftovers error, got {e}"),
        Ok(tb) => panic!("started over leftovers as {}", tb.prefix()),
    }
}

/// Run as a child by `leftovers_are_refused_then_cleaned_up`: starts a testbed, reports, waits
/// to be SIGKILLed (so nothing tears down).
#[test]
#[ignore = "the child process of leftovers_are_refused_then_cleaned_up"]
fn killed_owner_child() {
    let Some(report) = std::env::var_os("TESTBED_KILLED_CHILD") else {
        return;
    };
    let tb = start(SCENARIO);
    let pids: Vec<String> = common::all_pids(&tb).iter().map(u32::to_string).collect();
    let tmp = Path::new(&report).with_extension("tmp");
    fs::write(&tmp, format!("{} {}", tb.prefix(), pids.join(" "))).unwrap();
    fs::rename(&tmp, &report).unwrap();
    std::thread::sleep(Duration::from_secs(30));
    std::process::abort(); // never tear down
}

#[test]
fn leftovers_are_refused_then_cleaned_up() {
    if !root_or_skip("leftovers_are_refused_then_cleaned_up") {
        return;
    }
    // Start clean (a previous crashed run would make this test meaningless).
    testbed::cleanup_leftovers().unwrap();

    // 1. A fake leftover: the state of a dead PID, a netns, an /etc/netns dir, a cgroup.
    let prefix = format!("nrtb-{}-0", base36(dead_pid()));
    let run = Path::new(testbed::RUN_ROOT).join(&prefix);
    fs::create_dir_all(&run).unwrap();
    fs::write(
        run.join("state.json"),
        r#"{"owner_pid": 1, "owner_start_time": 1, "scenario": "fake"}"#,
    )
    .unwrap();
    let netns = format!("{prefix}-p0");
    let out = Command::new("ip")
        .args(["netns", "add", &netns])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs::create_dir_all(Path::new(testbed::ETC_NETNS_DIR).join(&netns)).unwrap();
    // A process inside the leftover netns (found by its netns, not by its name).
    let mut stray = Command::new("ip")
        .args(["netns", "exec", &netns, "sleep", "30"])
        .spawn()
        .unwrap();
    let ns_ino = fs::metadata(Path::new(testbed::NETNS_DIR).join(&netns))
        .unwrap()
        .ino();
    let deadline = Instant::now() + Duration::from_secs(5);
    while fs::metadata(format!("/proc/{}/ns/net", stray.id()))
        .map(|m| m.ino())
        .ok()
        != Some(ns_ino)
    {
        assert!(
            Instant::now() < deadline,
            "stray process never entered the netns"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let hier = testbed::cgroup_hierarchies().unwrap();
    for h in &hier {
        fs::create_dir_all(
            h.mount_point
                .join(format!("netreach-testbed-{prefix}/kubepods/x")),
        )
        .unwrap();
    }
    let found = testbed::scan_leftovers();
    assert!(found.iter().all(|l| l.prefix == prefix), "{found:?}");
    assert_eq!(found.len(), 3 + hier.len(), "{found:?}");
    let msg = expect_refused();
    assert!(
        msg.contains(&netns) && msg.contains("testbed-cleanup"),
        "{msg}"
    );
    let report = testbed::cleanup_leftovers().unwrap();
    assert_eq!(report.prefixes, std::slice::from_ref(&prefix));
    assert!(report.killed.contains(&stray.id()), "{report:?}");
    let status = stray.wait().unwrap();
    assert!(!status.success(), "killed: {status}");
    assert_gone(&prefix, &[]);

    // 2. A real one: the owner process is SIGKILLed with its testbed up.
    let path = std::env::temp_dir().join(format!("testbed-killed-{}", std::process::id()));
    let _ = fs::remove_file(&path);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "killed_owner_child",
            "--ignored",
            "--test-threads=1",
        ])
        .env("TESTBED_KILLED_CHILD", &path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() && Instant::now() < deadline {
        assert!(child.try_wait().unwrap().is_none(), "child exited early");
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = fs::read_to_string(&path).unwrap();
    let _ = fs::remove_file(&path);
    let mut words = text.split_whitespace();
    let prefix = words.next().unwrap().to_string();
    let pids: Vec<u32> = words.map(|w| w.parse().unwrap()).collect();
    child.kill().unwrap();
    child.wait().unwrap();

    let holders: Vec<u32> = pids.iter().copied().filter(|&p| alive(p)).collect();
    assert!(!holders.is_empty(), "the holders outlive their owner");
    let found = testbed::scan_leftovers();
    assert!(found.iter().any(|l| l.prefix == prefix), "{found:?}");
    let msg = expect_refused();
    assert!(msg.contains(&prefix), "{msg}");
    let report = testbed::cleanup_leftovers().unwrap();
    // The holders (`pause infinity`) were killed; the apps may have exited on their own (their
    // stdin closed with the owner).
    assert!(!report.killed.is_empty(), "{report:?}");
    for pid in &holders {
        assert!(
            report.killed.contains(pid) || !alive(*pid),
            "{pid} not killed: {report:?}"
        );
    }
    assert_gone(&prefix, &pids);
    assert!(testbed::scan_leftovers().is_empty());

    // 3. Clean again: starting works.
    let tb = start(SCENARIO);
    let prefix = tb.prefix().to_string();
    drop(tb);
    assert_gone(&prefix, &[]);
}
