//! Pod files on the testbed (issue 9, item 1): a holder process chroot'ed into a pod root built
//! here, in a test netns, whose `/etc/resolv.conf` is hostile, read the way the agent
//! (`DnsConfig::load`), `read_pod_file` and `netreach probe --pid … --dns` read it.
//!
//! Each attack is first shown to work against a plain read of `/proc/PID/root/etc/resolv.conf`
//! (what the agent did before), then shown to fail:
//! - a symlink, absolute, `../..` or through `/proc/self/root` / `/proc/1/root`, to a path that
//!   exists on the node and in the pod with different nameservers: the pod's copy is read, or
//!   (magic links) the file is refused; end to end, the DNS probe asks the pod's nameserver;
//! - `/dev/zero` (the node's, bind-mounted into the pod as a runtime does), a FIFO with no
//!   writer, a directory, a 200 MiB sparse file: refused before any read, at once, as
//!   `not_probed` / `pod_file_unreadable` naming the path and why.
//!
//! Everything lives in one netns (`nrnt-<pid>-<n>-pod`, 10.244.251.0/24 on a veth pair with
//! both ends inside, no uplink) with two dnsmasq instances: the pod's nameserver and the node's decoy. Needs root,
//! iproute2, util-linux (`mount`), coreutils (`chroot`) and dnsmasq; otherwise each test prints
//! `skipped` and passes.

#[macro_use]
mod netns_support;

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use netns_support::pod_root::{ChrootHolder, PodRoot};
use netns_support::{Netns, tool_exists, unique_prefix};
use netreach::netns::{
    MAX_POD_FILE_BYTES, NetnsHandle, PodFileError, PodNetns, RESOLV_CONF, read_pod_file,
};
use netreach::probe::dns::POD_FILE_TIMEOUT;
use netreach::probe::{DnsConfig, NotProbedReason};
use serde_json::Value;

/// The pod's nameserver and the address it gives `web.nrnt.test`.
const POD_DNS: Ipv4Addr = Ipv4Addr::new(10, 244, 251, 53);
const POD_ANSWER: Ipv4Addr = Ipv4Addr::new(10, 244, 251, 80);
/// The nameserver only the node's copy names, and its (different) answer.
const NODE_DNS: Ipv4Addr = Ipv4Addr::new(10, 244, 251, 99);
const NODE_ANSWER: Ipv4Addr = Ipv4Addr::new(10, 244, 251, 81);
const NAME: &str = "web.nrnt.test.";
/// Generous bounds that only a hang exceeds.
const NO_HANG: Duration = Duration::from_secs(10);
const CLI_NO_HANG: Duration = Duration::from_secs(30);
/// The most heap `netreach probe` may use on a hostile resolv.conf: ample for a probe, well
/// below the 200 MiB file read whole.
const CLI_DATA_LIMIT: u64 = 128 << 20;

fn resolv_conf(nameserver: Ipv4Addr) -> String {
    format!("nameserver {nameserver}\noptions ndots:1\n")
}

/// Skips the test (with a note) unless root with the tools the lab needs.
macro_rules! require_lab_tools {
    () => {
        require_root!();
        if !tool_exists("dnsmasq") || !Path::new("/usr/sbin/chroot").exists() {
            eprintln!("skipped: needs dnsmasq (dnsmasq-base) and chroot (coreutils)");
            return;
        }
    };
}

// === The lab ===

/// One pod: a netns, a root, a holder chroot'ed into it, and on the node a file at the same
/// absolute path as one in the pod (`shared`) with the decoy nameserver. Fields drop in order:
/// dnsmasq and the holder are killed before the directories go, the netns last.
struct Lab {
    dns: Vec<Dnsmasq>,
    holder: ChrootHolder,
    root: PodRoot,
    _node_dir: NodeDir,
    /// Absolute path, the same on the node and in the pod.
    shared: PathBuf,
    _netns: Netns,
}

impl Lab {
    /// With `with_dns`, the netns gets both nameservers (dnsmasq); without, only addresses.
    fn new(with_dns: bool) -> Self {
        let prefix = unique_prefix();
        let netns = Netns::create(format!("{prefix}-pod"));
        netns.ip(&["link", "add", "nr0", "type", "veth", "peer", "name", "nr1"]);
        for addr in [POD_DNS, NODE_DNS] {
            netns.ip(&["addr", "add", &format!("{addr}/24"), "dev", "nr0"]);
        }
        for dev in ["nr0", "nr1"] {
            netns.ip(&["link", "set", dev, "up"]);
        }
        let node_dir = NodeDir::new(&format!("{prefix}-node"));
        let shared = node_dir.0.join("resolv.conf");
        fs::write(&shared, resolv_conf(NODE_DNS)).expect("the node's copy");
        let root = PodRoot::new(&format!("{prefix}-root"));
        root.write(shared.to_str().expect("utf-8"), &resolv_conf(POD_DNS));
        root.write(RESOLV_CONF, &resolv_conf(POD_DNS));
        let holder = ChrootHolder::spawn(&netns, &root);
        let dns = if with_dns {
            vec![
                Dnsmasq::start(&netns, &node_dir, POD_DNS, POD_ANSWER),
                Dnsmasq::start(&netns, &node_dir, NODE_DNS, NODE_ANSWER),
            ]
        } else {
            Vec::new()
        };
        Lab {
            dns,
            holder,
            root,
            _node_dir: node_dir,
            shared,
            _netns: netns,
        }
    }

    fn pid(&self) -> u32 {
        self.holder.pid
    }

    /// The pod as the agent's resolver finds it: the holder is its app container.
    fn pod(&self) -> PodNetns {
        PodNetns {
            uid: "0f0f0f0f-9e11-4c1a-8d2b-000000000001".into(),
            sandbox_pid: self.pid(),
            app_pid: Some(self.pid()),
            handle: NetnsHandle::from_pid(self.pid()).expect("the holder's netns"),
            sandbox_start_ticks: 0,
        }
    }

    /// What the agent read before: a plain open of `/proc/PID/root/etc/resolv.conf`, which
    /// follows the pod's symlinks from the reader's root.
    fn plain_read(&self) -> std::io::Result<String> {
        fs::read_to_string(format!("/proc/{}/root/{RESOLV_CONF}", self.pid()))
    }

    /// `read_pod_file` of the pod's resolv.conf, failing the test if it does not return
    /// within [`NO_HANG`] (the reading thread is left blocked then; the test has failed).
    fn safe_read(&self) -> Result<Vec<u8>, PodFileError> {
        let pid = self.pid();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(read_pod_file(
                pid,
                Path::new(RESOLV_CONF),
                MAX_POD_FILE_BYTES,
            ));
        });
        rx.recv_timeout(NO_HANG)
            .unwrap_or_else(|_| panic!("read_pod_file hung for {NO_HANG:?}"))
    }
}

/// A node-side scratch directory (the decoy file, dnsmasq's logs), removed on drop.
struct NodeDir(PathBuf);

impl NodeDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir()
            .canonicalize()
            .expect("temp dir")
            .join(name);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("node dir");
        NodeDir(dir)
    }
}

impl Drop for NodeDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// dnsmasq in the lab's netns on `listen`:53, answering `web.nrnt.test` with `answer` and
/// NXDOMAIN otherwise, logging queries; killed (by PID) on drop.
struct Dnsmasq {
    child: Child,
    log: PathBuf,
}

impl Dnsmasq {
    fn start(netns: &Netns, dir: &NodeDir, listen: Ipv4Addr, answer: Ipv4Addr) -> Self {
        let log = dir.0.join(format!("dnsmasq-{listen}.log"));
        let child = Command::new("ip")
            .args(["netns", "exec", &netns.name, "dnsmasq"])
            .args(testbed::dnsmasq_args(
                listen,
                &dir.0.join(format!("dnsmasq-{listen}.pid")),
                &log,
            ))
            .arg(format!("--host-record=web.nrnt.test,{answer}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn dnsmasq");
        let mut dnsmasq = Dnsmasq { child, log };
        let pid = dnsmasq.child.id();
        let want = format!("{:08X}:0035", u32::from_ne_bytes(listen.octets()));
        for _ in 0..500 {
            if let Ok(Some(status)) = dnsmasq.child.try_wait() {
                panic!("dnsmasq on {listen} exited: {status}");
            }
            let udp = fs::read_to_string(format!("/proc/{pid}/net/udp")).unwrap_or_default();
            if udp.contains(&want) {
                return dnsmasq;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("dnsmasq on {listen} not listening within 5 s");
    }

    fn queries(&self) -> String {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains("query["))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `netreach probe ARGS`, killed and failed if it runs longer than [`CLI_NO_HANG`]. With
/// `data_limit`, under `prlimit --data` (RLIMIT_DATA: the heap and private writable mappings),
/// so reading far more than a resolv.conf aborts it instead of filling the machine's memory.
fn netreach_probe(args: &[&str], data_limit: Option<u64>) -> Output {
    let binary = env!("CARGO_BIN_EXE_netreach");
    let mut command = match data_limit {
        Some(bytes) => {
            let mut prlimit = Command::new("prlimit");
            prlimit.arg(format!("--data={bytes}:{bytes}")).arg(binary);
            prlimit
        }
        None => Command::new(binary),
    };
    let mut child = command
        .arg("probe")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run netreach");
    let started = Instant::now();
    while started.elapsed() < CLI_NO_HANG {
        if child.try_wait().expect("wait netreach").is_some() {
            return child.wait_with_output().expect("netreach output");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("netreach probe {args:?} hung for {CLI_NO_HANG:?}");
}

// === Symlinks ===

/// The links a pod can plant to reach the node's copy of `shared`, by name.
fn escaping_links(lab: &Lab) -> Vec<(&'static str, String)> {
    let shared = lab.shared.to_str().expect("utf-8").to_string();
    vec![
        ("absolute", shared.clone()),
        ("dotdot", format!("{}{}", "../".repeat(16), &shared[1..])),
        ("proc-self-root", format!("/proc/self/root{shared}")),
        ("proc-1-root", format!("/proc/1/root{shared}")),
    ]
}

/// The original attack, reproduced: through a plain read the pod makes the agent use the
/// node's file; through `read_pod_file` and `DnsConfig::load` an absolute or `../..` link
/// resolves inside the pod's root (its nameserver), and a link through `/proc/*/root` (a
/// magic link) is refused as `pod_file_unreadable`.
#[tokio::test]
async fn symlinks_in_a_chroot_resolve_inside_the_pod_root() {
    require_lab_tools!();
    let lab = Lab::new(false);
    let node_copy = resolv_conf(NODE_DNS);
    let pod_copy = resolv_conf(POD_DNS);
    let pid1_root = fs::read_link("/proc/1/root");
    let pid1_shares_our_root = pid1_root.as_ref().is_ok_and(|r| r == Path::new("/"));
    // Where PID 1 is off limits even to us (a sandbox whose init has capabilities we lack),
    // /proc/1/root is EACCES before it can be ELOOP.
    let pid1_errno = match &pid1_root {
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => libc::EACCES,
        _ => libc::ELOOP,
    };
    for (name, target) in escaping_links(&lab) {
        lab.root.symlink(RESOLV_CONF, &target);

        // Before: the plain read follows the link out of the pod.
        if name != "proc-1-root" || pid1_shares_our_root {
            assert_eq!(
                lab.plain_read().ok().as_deref(),
                Some(node_copy.as_str()),
                "{name}: the attack reproduces on a plain read"
            );
        }

        // Now: the pod's copy, or refused.
        let safe = lab.safe_read();
        let loaded = DnsConfig::load(&lab.pod()).await;
        match name {
            "absolute" | "dotdot" => {
                assert_eq!(safe.expect(name), pod_copy.as_bytes(), "{name}");
                let config = loaded.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(config.nameservers(), vec![IpAddr::V4(POD_DNS)], "{name}");
            }
            _ => {
                let error = safe.expect_err(name);
                let errno = if name == "proc-1-root" {
                    pid1_errno
                } else {
                    libc::ELOOP
                };
                assert!(
                    matches!(&error, PodFileError::Open { source, .. }
                        if source.raw_os_error() == Some(errno)),
                    "{name}: a magic link is refused: {error}"
                );
                let error = loaded.expect_err(name);
                assert_eq!(
                    error.not_probed_reason(),
                    NotProbedReason::PodFileUnreadable,
                    "{name}: {error}"
                );
                let message = error.to_string();
                let root = format!("/proc/{}/root", lab.pid());
                assert!(
                    message.contains(&root) && message.contains("etc/resolv.conf"),
                    "{name}: names the path: {message}"
                );
            }
        }
    }
}

/// End to end: `netreach probe --pid --dns` asks the nameserver of the pod's copy (its dnsmasq
/// logs the query, the decoy's does not) for an absolute and a `../..` link; the decoy is a
/// working nameserver with a different answer, so asking it would have shown.
#[test]
fn probe_pid_dns_asks_the_pods_nameserver_through_a_symlink() {
    require_lab_tools!();
    let lab = Lab::new(true);
    let pid = lab.pid().to_string();
    let probe = || {
        let out = netreach_probe(
            &[
                "--pid",
                &pid,
                "--dns",
                NAME,
                "--timeout",
                "2s",
                "--format",
                "json",
            ],
            None,
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "stdout: {text}\nstderr: {err}");
        serde_json::from_str::<Value>(&text).unwrap_or_else(|e| panic!("JSON ({e}): {text}"))
    };

    // The decoy answers when asked: a plain file naming it gets its answer.
    lab.root.write(RESOLV_CONF, &resolv_conf(NODE_DNS));
    let report = probe();
    assert_eq!(
        report["answers"],
        serde_json::json!([NODE_ANSWER.to_string()]),
        "{report:#}"
    );
    assert!(
        lab.dns[1].queries().contains("web.nrnt.test"),
        "the decoy was asked"
    );
    let decoy_before = lab.dns[1].queries();

    for (name, target) in escaping_links(&lab).into_iter().take(2) {
        lab.root.symlink(RESOLV_CONF, &target);
        assert_eq!(
            lab.plain_read().ok(),
            Some(resolv_conf(NODE_DNS)),
            "{name}: a plain read gets the node's copy"
        );
        let report = probe();
        assert_eq!(
            report["outcomes"],
            serde_json::json!({"resolved": 1}),
            "{name}: {report:#}"
        );
        assert_eq!(
            report["answers"],
            serde_json::json!([POD_ANSWER.to_string()]),
            "{name}: the pod's nameserver answered: {report:#}"
        );
    }
    assert_eq!(
        lab.dns[1].queries(),
        decoy_before,
        "the decoy was not asked again"
    );
    assert!(
        lab.dns[0].queries().contains("web.nrnt.test"),
        "the pod's nameserver was asked"
    );
}

// === Files that hang or exhaust ===

/// What the pod can put at (or link from) its resolv.conf to hang or exhaust a reader, and
/// what the refusal says.
const HOSTILE: [(&str, &str); 4] = [
    ("dev-zero", "is a character device, not a regular file"),
    ("fifo", "is a FIFO, not a regular file"),
    ("directory", "is a directory, not a regular file"),
    ("huge", "is larger than 65536 bytes"),
];

/// Plants the hostile file `name` at the pod's resolv.conf.
fn plant(lab: &Lab, name: &str) {
    match name {
        // The node's /dev/zero, bind-mounted into the pod.
        "dev-zero" => lab.root.symlink(RESOLV_CONF, "/dev/zero"),
        "fifo" => lab.root.fifo(RESOLV_CONF),
        "directory" => lab.root.symlink(RESOLV_CONF, "/etc"),
        // 200 MiB that starts like a valid resolv.conf: sparse, so it costs no disk.
        "huge" => lab
            .root
            .sparse(RESOLV_CONF, &resolv_conf(POD_DNS), 200 << 20),
        other => panic!("no hostile file {other}"),
    }
}

/// Each hostile file is refused at once by `read_pod_file` (the right variant, no bytes read
/// past the limit) and by `DnsConfig::load` as `pod_file_unreadable` naming the path and why,
/// never as the load timeout (which would mean the read hung).
#[tokio::test]
async fn devices_fifos_and_huge_files_in_a_chroot_are_refused() {
    require_lab_tools!();
    let lab = Lab::new(false);
    for (name, why) in HOSTILE {
        plant(&lab, name);
        let error = lab.safe_read().expect_err(name);
        let expected = match name {
            "dev-zero" => matches!(
                error,
                PodFileError::NotRegular {
                    kind: "character device",
                    ..
                }
            ),
            "fifo" => matches!(error, PodFileError::NotRegular { kind: "FIFO", .. }),
            "directory" => matches!(
                error,
                PodFileError::NotRegular {
                    kind: "directory",
                    ..
                }
            ),
            _ => matches!(
                error,
                PodFileError::TooLarge {
                    limit: MAX_POD_FILE_BYTES,
                    ..
                }
            ),
        };
        assert!(expected, "{name}: {error}");

        let started = Instant::now();
        let error = DnsConfig::load(&lab.pod()).await.expect_err(name);
        assert!(
            started.elapsed() < POD_FILE_TIMEOUT,
            "{name}: refused before the timeout"
        );
        assert_eq!(
            error.not_probed_reason(),
            NotProbedReason::PodFileUnreadable,
            "{name}: {error}"
        );
        let message = error.to_string();
        assert!(message.contains(why), "{name}: says why: {message}");
        assert!(
            message.contains(&format!("/proc/{}/root", lab.pid())),
            "{name}: names the path: {message}"
        );
    }
}

/// End to end: `netreach probe --pid --dns` with each hostile file exits 2 at once (it used to
/// hang on the FIFO and read /dev/zero until memory ran out), within 128 MiB of heap, saying
/// `not probed (pod_file_unreadable)` with the path and why, and prints no report.
#[test]
fn probe_pid_dns_with_a_hostile_resolv_conf_is_not_probed() {
    require_lab_tools!();
    if !tool_exists("prlimit") {
        eprintln!("skipped: needs prlimit (util-linux)");
        return;
    }
    let lab = Lab::new(false);
    let pid = lab.pid().to_string();
    for (name, why) in HOSTILE {
        plant(&lab, name);
        let out = netreach_probe(
            &["--pid", &pid, "--dns", NAME, "--timeout", "1s"],
            Some(CLI_DATA_LIMIT),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(out.stdout.is_empty(), "{name}: no report: {err}");
        for needle in [
            "not probed (pod_file_unreadable)",
            "etc/resolv.conf",
            &format!("/proc/{pid}/root"),
            why,
        ] {
            assert!(
                err.contains(needle),
                "{name}: stderr lacks {needle:?}: {err}"
            );
        }
    }
}
