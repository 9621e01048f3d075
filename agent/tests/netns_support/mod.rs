//! Minimal fixtures for the netns/probe integration tests: named network namespaces, a
//! src–router–dst topology on veth pairs, nftables rules, kubepods-style cgroups with
//! processes in them, pod root filesystems with a process chroot'ed into them (`pod_root`). Every name starts with `nrnt-<pid>-<n>`; everything is torn down by name
//! or PID on drop (also during a panic's unwinding). Addresses come from 10.244.250.0/24 and
//! live only inside namespaces created here. Needs root, `ip` (iproute2) and `nft`.
#![allow(dead_code)]

pub mod pod_root;

use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

/// `nrnt-<pid>-<n>`: unique per fixture in this run; the PID lets a later run find leftovers.
pub fn unique_prefix() -> String {
    format!(
        "nrnt-{}-{}",
        std::process::id(),
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// Skips the test (with a note) unless running as root with `ip` and `nft` available.
#[macro_export]
macro_rules! require_root {
    () => {
        if !netns_support::is_root() || !netns_support::tool_exists("ip") {
            eprintln!("skipped: needs root and iproute2");
            return;
        }
    };
}

pub fn tool_exists(tool: &str) -> bool {
    Command::new(tool)
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Runs a command, panicking with its stderr if it fails.
pub fn run(program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

// === Netns ===

/// A named network namespace (`/run/netns/<name>`), deleted on drop.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn create(name: String) -> Self {
        remove_leftovers_of_dead_runs();
        run("ip", &["netns", "add", &name]);
        let netns = Netns { name };
        netns.ip(&["link", "set", "lo", "up"]);
        // Deterministic ICMP errors: no per-destination rate limit inside our namespaces.
        netns.exec(&["sysctl", "-qw", "net.ipv4.icmp_ratelimit=0"]);
        netns
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }

    /// `ip -n <name> ARGS`.
    pub fn ip(&self, args: &[&str]) {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run("ip", &full);
    }

    /// `ip netns exec <name> ARGS`.
    pub fn exec(&self, args: &[&str]) {
        let mut full = vec!["netns", "exec", self.name.as_str()];
        full.extend_from_slice(args);
        run("ip", &full);
    }

    /// Loads an nftables ruleset inside the namespace.
    pub fn nft(&self, ruleset: &str) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nft");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(ruleset.as_bytes())
            .expect("write ruleset");
        let output = child.wait_with_output().expect("nft");
        assert!(
            output.status.success(),
            "nft: {}\n{ruleset}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// Deletes `nrnt-<pid>-*` namespaces of test runs whose process is gone (killed mid-run).
fn remove_leftovers_of_dead_runs() {
    let Ok(entries) = fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten().take(10_000) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("nrnt-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
    }
}

// === Topology ===

pub const SRC_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 250, 2);
pub const ROUTER_SRC_SIDE: Ipv4Addr = Ipv4Addr::new(10, 244, 250, 1);
pub const ROUTER_DST_SIDE: Ipv4Addr = Ipv4Addr::new(10, 244, 250, 17);
pub const DST_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 250, 18);
/// Routed by nobody: the router answers ICMP net-unreachable.
pub const NO_ROUTE_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 250, 100);

/// Two "pods" on different "nodes": src (10.244.250.2/28) – router – dst (10.244.250.18/28).
/// The router has no uplink and no default route.
#[derive(Debug)]
pub struct Topology {
    pub src: Netns,
    pub router: Netns,
    pub dst: Netns,
}

impl Topology {
    pub fn new() -> Self {
        let prefix = unique_prefix();
        let src = Netns::create(format!("{prefix}-src"));
        let router = Netns::create(format!("{prefix}-rtr"));
        let dst = Netns::create(format!("{prefix}-dst"));
        src.ip(&[
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            "to-src",
            "netns",
            &router.name,
        ]);
        dst.ip(&[
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            "to-dst",
            "netns",
            &router.name,
        ]);
        src.ip(&["addr", "add", &format!("{SRC_IP}/28"), "dev", "eth0"]);
        dst.ip(&["addr", "add", &format!("{DST_IP}/28"), "dev", "eth0"]);
        router.ip(&[
            "addr",
            "add",
            &format!("{ROUTER_SRC_SIDE}/28"),
            "dev",
            "to-src",
        ]);
        router.ip(&[
            "addr",
            "add",
            &format!("{ROUTER_DST_SIDE}/28"),
            "dev",
            "to-dst",
        ]);
        for (netns, dev) in [
            (&src, "eth0"),
            (&dst, "eth0"),
            (&router, "to-src"),
            (&router, "to-dst"),
        ] {
            netns.ip(&["link", "set", dev, "up"]);
        }
        src.ip(&[
            "route",
            "add",
            "default",
            "via",
            &ROUTER_SRC_SIDE.to_string(),
        ]);
        dst.ip(&[
            "route",
            "add",
            "default",
            "via",
            &ROUTER_DST_SIDE.to_string(),
        ]);
        router.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        Topology { src, router, dst }
    }
}

pub fn ip(addr: Ipv4Addr) -> IpAddr {
    IpAddr::V4(addr)
}

// === Cgroups and processes ===

/// Where cgroup v2 is mounted: `/sys/fs/cgroup` on a pure v2 host, `/sys/fs/cgroup/unified`
/// on a hybrid one.
pub fn cgroup_v2_root() -> Option<PathBuf> {
    let pure = Path::new("/sys/fs/cgroup/cgroup.controllers");
    if pure.exists() {
        return Some(PathBuf::from("/sys/fs/cgroup"));
    }
    let hybrid = Path::new("/sys/fs/cgroup/unified/cgroup.procs");
    hybrid
        .exists()
        .then(|| PathBuf::from("/sys/fs/cgroup/unified"))
}

/// The v1 `name=systemd` hierarchy, on hybrid and v1 hosts.
pub fn cgroup_v1_systemd_root() -> Option<PathBuf> {
    let path = Path::new("/sys/fs/cgroup/systemd/tasks");
    path.exists()
        .then(|| PathBuf::from("/sys/fs/cgroup/systemd"))
}

/// Cgroup directories and processes of simulated pods; on drop the processes are killed (by
/// PID, via their `Child`) and the directories removed deepest first.
#[derive(Debug)]
pub struct PodProcesses {
    prefix: String,
    bin_dir: PathBuf,
    children: Vec<Child>,
    dirs: Vec<PathBuf>,
    etc_netns: Vec<PathBuf>,
}

impl PodProcesses {
    pub fn new() -> Self {
        let prefix = unique_prefix();
        let bin_dir = std::env::temp_dir().join(&prefix);
        fs::create_dir_all(&bin_dir).expect("bin dir");
        // `sleep` under the names the resolver looks at (comm = file name).
        for name in ["pause", "app", "conmon"] {
            fs::copy("/bin/sleep", bin_dir.join(name)).expect("copy sleep");
        }
        PodProcesses {
            prefix,
            bin_dir,
            children: Vec::new(),
            dirs: Vec::new(),
            etc_netns: Vec::new(),
        }
    }

    /// A unique top directory name below which this fixture builds its kubepods tree.
    pub fn top(&self) -> String {
        format!("{}.slice", self.prefix)
    }

    /// Creates `root/relative` (and its parents, remembered for removal).
    pub fn cgroup(&mut self, root: &Path, relative: &str) -> PathBuf {
        let mut path = root.to_path_buf();
        for component in relative.split('/').filter(|c| !c.is_empty()) {
            path.push(component);
            if !path.exists() {
                fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
                self.dirs.push(path.clone());
            }
        }
        path
    }

    /// Gives `ip netns exec <netns>` processes this resolv.conf (it bind-mounts
    /// `/etc/netns/<name>/resolv.conf` over `/etc/resolv.conf` in their mount namespace).
    pub fn resolv_conf_for(&mut self, netns: &Netns, contents: &str) {
        let dir = PathBuf::from(format!("/etc/netns/{}", netns.name));
        fs::create_dir_all(&dir).expect("/etc/netns dir");
        fs::write(dir.join("resolv.conf"), contents).expect("resolv.conf");
        self.etc_netns.push(dir);
    }

    /// Starts `comm` (pause/app/conmon: a 300 s sleep) in `netns` (None: the host's) and moves
    /// it into the cgroup directory `cgroup`. Returns its PID.
    pub fn spawn(&mut self, comm: &str, netns: Option<&Netns>, cgroup: &Path) -> u32 {
        let binary = self.bin_dir.join(comm);
        let binary = binary.to_str().expect("utf-8 path");
        let child = match netns {
            Some(netns) => Command::new("ip")
                .args(["netns", "exec", &netns.name, binary, "300"])
                .spawn(),
            None => Command::new(binary).arg("300").spawn(),
        }
        .expect("spawn pod process");
        let pid = child.id();
        self.children.push(child);
        fs::write(cgroup.join("cgroup.procs"), pid.to_string())
            .unwrap_or_else(|e| panic!("move {pid} into {}: {e}", cgroup.display()));
        // `ip netns exec` execs the binary: wait until comm shows it.
        for _ in 0..200 {
            if fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        pid
    }
}

impl PodProcesses {
    /// Kills and reaps one of the processes this fixture started (a pod's sandbox going away).
    pub fn kill(&mut self, pid: u32) {
        if let Some(i) = self.children.iter().position(|c| c.id() == pid) {
            let mut child = self.children.remove(i);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PodProcesses {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for dir in self.dirs.iter().rev() {
            // A cgroup empties asynchronously after its last process is reaped.
            for _ in 0..100 {
                if fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        for dir in &self.etc_netns {
            let _ = fs::remove_dir_all(dir);
        }
        let _ = fs::remove_dir_all(&self.bin_dir);
    }
}
