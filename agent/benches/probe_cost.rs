//! What one TCP probe costs, side by side on ONE testbed pair (issue 3, item 6): CPU µs per
//! probe and probes/s of
//!
//! - (a) the floor: a blocking connect + close loop on a dedicated thread that entered the
//!   source pod's netns once (closing with `SO_LINGER 0`, as netreach does; a FIN-close variant
//!   is reported for information),
//! - (b) `netreach probe --netns SRC --to DST:PORT/TCP --count 20000 --concurrency 64`, a child
//!   process (CPU = its utime + stime from `wait4`),
//! - (c) `ip netns exec SRC nc -z -w1 DST PORT` in a loop (CPU of each child from `wait4`),
//! - (d) prometheus-blackbox-exporter in the source netns, listening on the source pod's IP,
//!   driven through `/probe?module=tcp_connect` with keep-alive HTTP/1.1 GETs from a thread in
//!   the source netns (CPU = the exporter's utime + stime from `/proc/PID/stat`),
//!
//! plus the peak RSS of `netreach probe` with 1,000 probes in flight (to a port behind a `drop`
//! rule). Prints a table and the targets as PASS/MISS; asserts nothing (a benchmark).
//!
//! ```sh
//! make bench-probe                                   # = cargo bench -p netreach --bench probe_cost
//! cargo bench -p netreach --bench probe_cost -- --quick          # or PROBE_COST_QUICK=1
//! cargo bench -p netreach --bench probe_cost -- --rounds 5 --floor 50000 --netreach 50000
//! ```
//!
//! Flags (after `--`): `--quick`, `--rounds N` (alternating (a)/(b) rounds, medians reported),
//! `--floor N`, `--floor-fin N`, `--netreach N`, `--concurrency C`, `--nc N`, `--blackbox N`,
//! `--inflight N`. `NETREACH_BIN=PATH` measures another binary.
//!
//! Needs root (prints `skipped` otherwise), iproute2, nftables, dnsmasq-base, python3 (the
//! testbed), and for (c)/(d) the Debian packages `netcat-openbsd` and
//! `prometheus-blackbox-exporter` (a variant whose tool is missing is reported as skipped).
//! All traffic stays inside the testbed's namespaces; child processes are killed by PID; the
//! testbed tears itself down on drop and on Ctrl-C.
//!
//! Unsafe code: four FFI calls that std does not wrap (`setns` on the bench's own measuring
//! thread, `clock_gettime(CLOCK_THREAD_CPUTIME_ID)`, `wait4`, `sysconf`), each on values owned
//! by the calling frame. The agent's rule "only the netns module calls setns" is about the
//! agent; this bench thread enters the pod once, never leaves, and exits.
#![allow(unsafe_code)]
#![allow(clippy::print_stdout)]

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use socket2::{Domain, SockAddr, Socket, Type};
use testbed::{PodHandle, Scenario, Testbed};

/// Served by the bench's own listener in the dst netns (see [`Listener`]), not by the
/// testbed's Python app: a blocking connect loop outruns the app's accept loop, overflows its
/// backlog of 128 and then waits out 1 s SYN retransmits.
const OPEN_PORT: u16 = 9000;
/// Accept queue of that listener (`net.core.somaxconn` caps it).
const LISTEN_BACKLOG: i32 = 4096;
const DROP_PORT: u16 = 8082;
const BLACKBOX_PORT: u16 = 9115;
const BLACKBOX_BIN: &str = "/usr/bin/prometheus-blackbox-exporter";

/// The pair: `bench/src` on node-1 probes `bench/dst` on node-2 (through the router netns);
/// dst's 9000 is served by the bench (undeclared, so the app leaves it free), 8082 is behind a
/// `drop` rule for src.
const SCENARIO: &str = r"
name: probe-cost
nodes: [node-1, node-2]
objects:
  - {apiVersion: v1, kind: Namespace, metadata: {name: bench}}
  - apiVersion: v1
    kind: Pod
    metadata: {name: src, namespace: bench, labels: {app: src}}
    spec: {nodeName: node-1, containers: [{name: src}]}
    status: {phase: Running, podIP: 10.244.1.10}
  - apiVersion: v1
    kind: Pod
    metadata: {name: dst, namespace: bench, labels: {app: dst}}
    spec:
      nodeName: node-2
      containers:
        - name: dst
          ports:
            - {name: open, containerPort: 8080}
            - {name: dropped, containerPort: 8082}
    status: {phase: Running, podIP: 10.244.2.10}
dataplane:
  rules:
    - {action: drop, from: bench/src, to: bench/dst, port: 8082, protocol: TCP}
";

// === configuration ===

#[derive(Clone, Debug)]
struct Config {
    rounds: usize,
    floor: u64,
    floor_fin: u64,
    netreach: u64,
    concurrency: u64,
    nc: u64,
    blackbox: u64,
    inflight: u64,
}

impl Config {
    fn full() -> Self {
        Self {
            rounds: 5,
            floor: 20_000,
            floor_fin: 5_000,
            netreach: 20_000,
            concurrency: 64,
            nc: 300,
            blackbox: 2_000,
            inflight: 1_000,
        }
    }

    fn quick() -> Self {
        Self {
            rounds: 1,
            floor: 2_000,
            floor_fin: 1_000,
            netreach: 2_000,
            concurrency: 64,
            nc: 30,
            blackbox: 200,
            inflight: 1_000,
        }
    }

    fn from_args() -> Result<Self, String> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let quick = args.iter().any(|a| a == "--quick")
            || std::env::var("PROBE_COST_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        let mut config = if quick { Self::quick() } else { Self::full() };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = |name: &str| -> Result<u64, String> {
                it.next()
                    .and_then(|v| v.replace('_', "").parse().ok())
                    .filter(|v| *v > 0)
                    .ok_or_else(|| format!("{name} needs a positive number"))
            };
            match arg.as_str() {
                // cargo bench passes --bench to harness = false benches.
                "--bench" | "--quick" => {}
                "--rounds" => config.rounds = value(arg)? as usize,
                "--floor" => config.floor = value(arg)?,
                "--floor-fin" => config.floor_fin = value(arg)?,
                "--netreach" => config.netreach = value(arg)?,
                "--concurrency" => config.concurrency = value(arg)?.min(4096),
                "--nc" => config.nc = value(arg)?,
                "--blackbox" => config.blackbox = value(arg)?,
                "--inflight" => config.inflight = value(arg)?.min(4096),
                "--help" | "-h" => return Err(String::new()),
                // Filters and flags meant for other benches are ignored.
                _ => {}
            }
        }
        Ok(config)
    }
}

// === results ===

#[derive(Clone, Debug)]
struct Measured {
    probes: u64,
    /// Probes that did not end as expected (not open / not `probe_success 1` / not timeout).
    failures: u64,
    cpu: Duration,
    wall: Duration,
    note: String,
}

impl Measured {
    fn cpu_us_per_probe(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.probes.max(1) as f64
    }

    fn rate(&self) -> f64 {
        self.probes as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

/// The median round by CPU per probe.
fn median(mut rounds: Vec<Measured>) -> Option<Measured> {
    rounds.sort_by(|a, b| a.cpu_us_per_probe().total_cmp(&b.cpu_us_per_probe()));
    let n = rounds.len();
    (n > 0).then(|| rounds.swap_remove(n / 2))
}

// === FFI (see the crate docs) ===

fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: FFI call writing into a timespec owned by this frame.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Moves the calling thread into the network namespace at `path` for good, and checks it.
fn enter_netns_for_good(path: &Path) -> io::Result<()> {
    let file = File::open(path)?;
    // SAFETY: FFI call with a live fd; changes only the calling thread's netns.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let now = std::fs::metadata("/proc/thread-self/ns/net")?.ino();
    if now != file.metadata()?.ino() {
        return Err(io::Error::other("setns did not move the thread"));
    }
    Ok(())
}

/// Runs `body` on a fresh thread that entered `netns` first; the thread exits afterwards.
fn on_thread_in<T: Send + 'static>(
    netns: &Path,
    name: &str,
    body: impl FnOnce() -> T + Send + 'static,
) -> T {
    let netns = netns.to_path_buf();
    thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            enter_netns_for_good(&netns)
                .unwrap_or_else(|e| panic!("entering {}: {e}", netns.display()));
            body()
        })
        .expect("spawn a bench thread")
        .join()
        .expect("bench thread panicked")
}

/// How a reaped child ended and what it used.
struct Reaped {
    exit_code: Option<i32>,
    cpu: Duration,
    max_rss_kib: u64,
}

/// Reaps `child` with `wait4`, which returns its own resource usage (utime, stime, maxrss).
/// `Child::wait` must not be called afterwards.
fn wait4_child(child: &Child) -> io::Result<Reaped> {
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data; all-zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: FFI call with pointers to locals of this frame.
        let rc = unsafe { libc::wait4(pid, &raw mut status, 0, &raw mut usage) };
        if rc == pid {
            break;
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ok(Reaped {
        exit_code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        max_rss_kib: usage.ru_maxrss as u64,
    })
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: FFI call with an integer argument.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as u64 } else { 100 }
}

// === /proc ===

/// utime + stime of a live process (all its threads), from `/proc/PID/stat`.
fn process_cpu(pid: u32) -> io::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_comm = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(|| io::Error::other("malformed stat"))?;
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are the 12th and 13th after the comm.
    let ticks = |i: usize| -> io::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| io::Error::other("malformed stat"))
    };
    let total = ticks(11)? + ticks(12)?;
    Ok(Duration::from_nanos(
        total * 1_000_000_000 / clock_ticks_per_second(),
    ))
}

/// A `kB` field of `/proc/PID/status` (`VmHWM`, `VmRSS`).
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// `/proc/loadavg`'s first three fields: other work on the machine skews CPU times too.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

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

fn tool_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

// === the binary under test ===

/// `NETREACH_BIN`, else the binary cargo built for this bench (bench profile = release
/// settings), else `target/release/netreach`.
fn netreach_binary() -> Result<(PathBuf, &'static str), String> {
    if let Some(path) = std::env::var_os("NETREACH_BIN") {
        return Ok((PathBuf::from(path), "NETREACH_BIN"));
    }
    if let Some(path) = option_env!("CARGO_BIN_EXE_netreach").map(PathBuf::from)
        && path.is_file()
    {
        return Ok((
            path,
            "built by cargo bench (bench profile, release settings)",
        ));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target.join("release/netreach");
    if path.is_file() {
        return Ok((path, "target/release (cargo build --release -p netreach)"));
    }
    Err(format!(
        "no netreach binary: run `cargo build --release -p netreach` or set NETREACH_BIN ({} missing)",
        path.display()
    ))
}

// === (a) the floor ===

/// `count` blocking connect + close from a thread that entered `netns` once; CPU of that
/// thread only. `rst`: close with `SO_LINGER 0` (no TIME_WAIT), else a normal FIN close.
fn floor(netns: &Path, target: SocketAddr, count: u64, rst: bool) -> Measured {
    on_thread_in(netns, "floor", move || {
        let addr = SockAddr::from(target);
        let mut failures = 0;
        let cpu0 = thread_cpu_time();
        let wall0 = Instant::now();
        for _ in 0..count {
            let socket = match Socket::new(Domain::IPV4, Type::STREAM, None) {
                Ok(s) => s,
                Err(_) => {
                    failures += 1;
                    continue;
                }
            };
            if socket.connect(&addr).is_err() {
                failures += 1;
                continue;
            }
            if rst && socket.set_linger(Some(Duration::ZERO)).is_err() {
                failures += 1;
            }
            drop(socket);
        }
        let wall = wall0.elapsed();
        let cpu = thread_cpu_time() - cpu0;
        Measured {
            probes: count,
            failures,
            cpu,
            wall,
            note: if rst {
                "1 thread, blocking, SO_LINGER 0 close".into()
            } else {
                "1 thread, blocking, FIN close".into()
            },
        }
    })
}

// === the destination's listener ===

/// A listener on dst's IP:[`OPEN_PORT`], on a bench thread inside the dst netns: accepts and
/// closes as fast as the kernel hands connections over. Its CPU is in no variant's account.
/// Stopped (socket closed, thread joined) on drop, before the testbed tears the netns down.
struct Listener {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<u64>>,
}

impl Listener {
    fn start(netns: &Path, addr: SocketAddrV4) -> io::Result<Self> {
        let netns = netns.to_path_buf();
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<io::Result<()>>();
        let thread = {
            let stop = stop.clone();
            thread::Builder::new()
                .name("dst-listener".into())
                .spawn(move || {
                    let listener = enter_netns_for_good(&netns).and_then(|()| {
                        let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
                        socket.set_reuse_address(true)?;
                        socket.bind(&SocketAddr::from(addr).into())?;
                        socket.listen(LISTEN_BACKLOG)?;
                        // accept() honours SO_RCVTIMEO: wake up to look at `stop`.
                        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
                        Ok(socket)
                    });
                    let listener = match listener {
                        Ok(l) => {
                            let _ = ready_tx.send(Ok(()));
                            l
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return 0;
                        }
                    };
                    let mut accepted = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        if let Ok((conn, _)) = listener.accept() {
                            accepted += 1;
                            drop(conn);
                        }
                    }
                    accepted
                })?
        };
        ready_rx
            .recv()
            .map_err(|_| io::Error::other("listener thread died"))??;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// === (b) netreach probe, and the RSS run ===

struct NetreachRun {
    measured: Measured,
    report: Value,
    /// ru_maxrss of the child.
    max_rss_kib: u64,
    /// Highest VmHWM seen while sampling `/proc/PID/status`.
    sampled_hwm_kib: u64,
    /// `(RssAnon, RssFile)` of the sample with the highest VmRSS: heap and stacks versus
    /// pages of the (large, debug-info carrying) binary and libraries.
    peak_split_kib: (u64, u64),
}

#[derive(Default)]
struct MemorySamples {
    hwm: u64,
    rss: u64,
    split: (u64, u64),
}

/// Runs `netreach probe ARGS --format json` and reaps it with `wait4`. `sample_memory`: watch
/// `/proc/PID/status` every 10 ms meanwhile (the RSS run only; the CPU runs are left alone).
fn run_netreach(
    bin: &Path,
    args: &[String],
    expect: &str,
    count: u64,
    sample_memory: bool,
) -> Result<NetreachRun, String> {
    let wall0 = Instant::now();
    let mut child = Command::new(bin)
        .arg("probe")
        .args(args)
        .args(["--format", "json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
    let pid = child.id();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut seen = MemorySamples::default();
            while sample_memory && !stop.load(Ordering::Relaxed) {
                if let Some(hwm) = status_kib(pid, "VmHWM") {
                    seen.hwm = seen.hwm.max(hwm);
                }
                if let Some(rss) = status_kib(pid, "VmRSS")
                    && rss > seen.rss
                {
                    seen.rss = rss;
                    seen.split = (
                        status_kib(pid, "RssAnon").unwrap_or(0),
                        status_kib(pid, "RssFile").unwrap_or(0),
                    );
                }
                thread::sleep(Duration::from_millis(10));
            }
            seen
        })
    };
    let mut stderr_pipe = child.stderr.take().expect("piped stderr");
    let stderr_reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text);
        text
    });
    let mut stdout = String::new();
    if let Some(mut pipe) = child.stdout.take() {
        let _ = pipe.read_to_string(&mut stdout);
    }
    // The child is at most a zombie now (stdout closed at exit): its PID cannot be reused
    // before wait4, so the sampler reads only this process.
    stop.store(true, Ordering::Relaxed);
    let sampled = sampler.join().unwrap_or_default();
    let reaped = wait4_child(&child).map_err(|e| format!("wait4: {e}"))?;
    let wall = wall0.elapsed();
    let stderr = stderr_reader.join().unwrap_or_default();
    if reaped.exit_code != Some(0) {
        return Err(format!(
            "netreach probe {} exited with {:?}: {}",
            args.join(" "),
            reaped.exit_code,
            stderr.trim()
        ));
    }
    let report: Value =
        serde_json::from_str(&stdout).map_err(|e| format!("netreach JSON ({e}): {stdout}"))?;
    let matched = report["outcomes"][expect].as_u64().unwrap_or(0);
    let probe_wall = report["duration_seconds"]
        .as_f64()
        .map_or(wall, Duration::from_secs_f64);
    Ok(NetreachRun {
        measured: Measured {
            probes: count,
            failures: count.saturating_sub(matched),
            cpu: reaped.cpu,
            wall: probe_wall,
            note: format!("{:.0} ms process wall", wall.as_secs_f64() * 1e3),
        },
        report,
        max_rss_kib: reaped.max_rss_kib,
        sampled_hwm_kib: sampled.hwm,
        peak_split_kib: sampled.split,
    })
}

// === (c) nc ===

fn nc_loop(netns_name: &str, target: SocketAddrV4, count: u64) -> Result<Measured, String> {
    let (ip, port) = (target.ip().to_string(), target.port().to_string());
    let mut cpu = Duration::ZERO;
    let mut failures = 0;
    let wall0 = Instant::now();
    for _ in 0..count {
        let child = Command::new("ip")
            .args(["netns", "exec", netns_name, "nc", "-z", "-w1", &ip, &port])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn ip netns exec nc: {e}"))?;
        let reaped = wait4_child(&child).map_err(|e| format!("wait4: {e}"))?;
        cpu += reaped.cpu;
        if reaped.exit_code != Some(0) {
            failures += 1;
        }
    }
    Ok(Measured {
        probes: count,
        failures,
        cpu,
        wall: wall0.elapsed(),
        note: "a fresh process per probe".into(),
    })
}

// === (d) blackbox_exporter ===

/// The exporter process; killed by PID and reaped on drop.
struct Exporter {
    child: Child,
    dir: PathBuf,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_exporter(netns_name: &str, listen: SocketAddrV4) -> Result<Exporter, String> {
    let dir = std::env::temp_dir().join(format!("netreach-probe-cost-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let config = dir.join("blackbox.yml");
    std::fs::write(
        &config,
        "modules:\n  tcp_connect:\n    prober: tcp\n    timeout: 5s\n",
    )
    .map_err(|e| format!("{}: {e}", config.display()))?;
    let log = File::create(dir.join("exporter.log")).map_err(|e| format!("log file: {e}"))?;
    let child = Command::new("ip")
        .args(["netns", "exec", netns_name, BLACKBOX_BIN])
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address={listen}"))
        .arg("--log.level=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("spawn the exporter: {e}"))?;
    Ok(Exporter { child, dir })
}

/// One keep-alive HTTP/1.1 connection to the exporter.
struct Http {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    host: String,
}

impl Http {
    fn connect(addr: SocketAddrV4) -> io::Result<Self> {
        let stream = TcpStream::connect_timeout(&addr.into(), Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            writer: stream.try_clone()?,
            reader: BufReader::new(stream),
            host: addr.to_string(),
        })
    }

    /// GET `path`; returns (status, body, whether the server keeps the connection).
    fn get(&mut self, path: &str) -> io::Result<(u16, String, bool)> {
        write!(
            self.writer,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: netreach-probe-cost\r\n\r\n",
            self.host
        )?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad status line {line:?}")))?;
        let (mut length, mut chunked, mut keep) = (None, false, true);
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.parse::<usize>().ok(),
                    "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                    "connection" => keep = !value.eq_ignore_ascii_case("close"),
                    _ => {}
                }
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.reader.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| io::Error::other(format!("bad chunk size {line:?}")))?;
                let mut chunk = vec![0; size + 2];
                self.reader.read_exact(&mut chunk)?;
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else if let Some(length) = length {
            body.resize(length, 0);
            self.reader.read_exact(&mut body)?;
        } else {
            self.reader.read_to_end(&mut body)?;
            keep = false;
        }
        Ok((status, String::from_utf8_lossy(&body).into_owned(), keep))
    }
}

fn blackbox(
    netns_path: &Path,
    netns_name: &str,
    listen: SocketAddrV4,
    target: SocketAddrV4,
    count: u64,
) -> Result<Measured, String> {
    let exporter = start_exporter(netns_name, listen)?;
    let pid = exporter.child.id();
    let path = format!("/probe?module=tcp_connect&target={target}");
    let result = on_thread_in(netns_path, "blackbox-driver", move || {
        // Wait for the listener (bounded).
        let mut http = None;
        for _ in 0..100 {
            match Http::connect(listen) {
                Ok(h) => {
                    http = Some(h);
                    break;
                }
                Err(_) => thread::sleep(Duration::from_millis(50)),
            }
        }
        let mut http = http.ok_or_else(|| "the exporter did not listen within 5 s".to_string())?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if !comm.starts_with("prometheus-bla") {
            return Err(format!("PID {pid} is {comm:?}, not the exporter"));
        }
        let request = |http: &mut Http| -> Result<bool, String> {
            let (status, body, keep) = http.get(&path).map_err(|e| format!("GET: {e}"))?;
            if !keep {
                *http = Http::connect(listen).map_err(|e| format!("reconnect: {e}"))?;
            }
            Ok(status == 200 && body.lines().any(|l| l == "probe_success 1"))
        };
        // Warm-up (Go runtime, connection), not measured.
        for _ in 0..20 {
            request(&mut http)?;
        }
        let mut failures = 0;
        let cpu0 = process_cpu(pid).map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
        let wall0 = Instant::now();
        for _ in 0..count {
            if !request(&mut http)? {
                failures += 1;
            }
        }
        let wall = wall0.elapsed();
        let cpu = process_cpu(pid).map_err(|e| format!("/proc/{pid}/stat: {e}"))? - cpu0;
        Ok(Measured {
            probes: count,
            failures,
            cpu,
            wall,
            note: format!("exporter CPU only; {BLACKBOX_BIN}, keep-alive GETs"),
        })
    });
    drop(exporter);
    result
}

// === report ===

fn ratio(x: f64, base: f64) -> f64 {
    x / base.max(1e-9)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "MISS" }
}

fn row(label: &str, m: &Measured, base: Option<f64>) {
    let vs = base.map_or_else(
        || "-".to_string(),
        |b| format!("{:.2}x", ratio(m.cpu_us_per_probe(), b)),
    );
    let failures = if m.failures > 0 {
        format!("  [{} unexpected]", m.failures)
    } else {
        String::new()
    };
    println!(
        "{label:<46} {:>7} {:>13.1} {:>10.0} {:>8}   {}{failures}",
        m.probes,
        m.cpu_us_per_probe(),
        m.rate(),
        vs,
        m.note
    );
}

fn pod<'a>(tb: &'a Testbed, name: &str) -> &'a PodHandle {
    tb.pod("bench", name)
        .unwrap_or_else(|| panic!("bench/{name} is in the scenario"))
}

fn main() {
    let config = match Config::from_args() {
        Ok(c) => c,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("probe_cost: {message}");
            }
            eprintln!(
                "usage: cargo bench -p netreach --bench probe_cost -- [--quick] [--rounds N] [--floor N] [--floor-fin N] [--netreach N] [--concurrency C] [--nc N] [--blackbox N] [--inflight N]"
            );
            std::process::exit(if message.is_empty() { 0 } else { 2 });
        }
    };
    if !is_root() {
        println!("probe_cost: skipped (needs root: it builds a testbed and enters pod namespaces)");
        return;
    }
    let (bin, bin_source) = match netreach_binary() {
        Ok(found) => found,
        Err(message) => {
            eprintln!("probe_cost: {message}");
            std::process::exit(2);
        }
    };
    if let Err(error) = testbed::install_signal_teardown() {
        eprintln!("probe_cost: no Ctrl-C teardown ({error}); the testbed still goes on drop");
    }
    let scenario = Scenario::from_yaml(SCENARIO, "probe_cost scenario").expect("valid scenario");
    let tb =
        Testbed::start(&scenario).expect("testbed starts (root, iproute2, nft, dnsmasq, python3)");
    let (src, dst) = (pod(&tb, "src"), pod(&tb, "dst"));
    let src_ip = src.ip.expect("src has an IP");
    let dst_ip = dst.ip.expect("dst has an IP");
    let src_name = src.netns_name.clone().expect("src has a netns");
    let src_path = src.netns_path.clone().expect("src has a netns path");
    let open = SocketAddrV4::new(dst_ip, OPEN_PORT);
    let dst_path = dst.netns_path.clone().expect("dst has a netns path");
    let listener = Listener::start(&dst_path, open).expect("listener in the dst netns");
    let dropped = SocketAddrV4::new(dst_ip, DROP_PORT);

    println!("probe_cost: {config:?}");
    println!(
        "testbed {} (setup {:.0} ms): {} {src_ip} on {} -> {} {dst_ip} on {}, src netns {}",
        tb.prefix(),
        tb.setup_time().as_secs_f64() * 1e3,
        src.pod_ref(),
        src.node,
        dst.pod_ref(),
        dst.node,
        src_path.display()
    );
    println!("netreach binary: {} ({bin_source})", bin.display());
    println!(
        "cores: {}, load average before: {}",
        thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );

    // Warm caches (neighbours, slabs, page cache of the binary).
    let _ = floor(&src_path, open.into(), 500, true);
    let netreach_args = |count: u64, concurrency: u64, to: SocketAddrV4, timeout: Option<&str>| {
        let mut args = vec![
            "--netns".to_string(),
            src_path.display().to_string(),
            "--to".into(),
            format!("{to}/TCP"),
            "--count".into(),
            count.to_string(),
            "--concurrency".into(),
            concurrency.to_string(),
        ];
        if let Some(t) = timeout {
            args.extend(["--timeout".into(), t.into()]);
        }
        args
    };
    if let Err(e) = run_netreach(
        &bin,
        &netreach_args(200, 64, open, None),
        "open",
        200,
        false,
    ) {
        eprintln!("probe_cost: warm-up run failed: {e}");
        std::process::exit(2);
    }

    // (a) and (b), alternating rounds.
    let (mut floors, mut probes) = (Vec::new(), Vec::new());
    for round in 1..=config.rounds {
        let a = floor(&src_path, open.into(), config.floor, true);
        let b = run_netreach(
            &bin,
            &netreach_args(config.netreach, config.concurrency, open, None),
            "open",
            config.netreach,
            false,
        );
        print!(
            "round {round}/{}: (a) {:.1} µs/probe {:.0}/s",
            config.rounds,
            a.cpu_us_per_probe(),
            a.rate()
        );
        match b {
            Ok(run) => {
                println!(
                    "   (b) {:.1} µs/probe {:.0}/s (p50 {:.3} ms, outcomes {})",
                    run.measured.cpu_us_per_probe(),
                    run.measured.rate(),
                    run.report["latency_seconds"]["p50"].as_f64().unwrap_or(0.0) * 1e3,
                    run.report["outcomes"]
                );
                probes.push(run.measured);
            }
            Err(e) => println!("   (b) failed: {e}"),
        }
        floors.push(a);
    }
    let best = |rounds: &[Measured]| {
        rounds
            .iter()
            .map(Measured::cpu_us_per_probe)
            .min_by(f64::total_cmp)
    };
    let (a_best, b_best) = (best(&floors), best(&probes));
    let a = median(floors).expect("at least one round");
    let b = median(probes);

    // (c) nc, (d) blackbox_exporter.
    let c = if tool_path("nc").is_some() {
        nc_loop(&src_name, open, config.nc)
    } else {
        Err("nc not installed (Debian package netcat-openbsd)".into())
    };
    let d = if Path::new(BLACKBOX_BIN).is_file() {
        blackbox(
            &src_path,
            &src_name,
            SocketAddrV4::new(src_ip, BLACKBOX_PORT),
            open,
            config.blackbox,
        )
    } else {
        Err(format!(
            "{BLACKBOX_BIN} not installed (Debian package prometheus-blackbox-exporter)"
        ))
    };
    // For information: the floor with a normal close (leaves TIME_WAIT in the source netns,
    // so it runs after the others and with fewer connects).
    let a_fin = floor(&src_path, open.into(), config.floor_fin, false);

    // Peak RSS with `inflight` probes in flight at once: all wait out the timeout behind the
    // drop rule.
    let rss = run_netreach(
        &bin,
        &netreach_args(config.inflight, config.inflight, dropped, Some("2s")),
        "timeout",
        config.inflight,
        true,
    );

    drop(listener);
    drop(tb);

    // === table ===
    let base = a.cpu_us_per_probe();
    println!();
    println!(
        "{:<46} {:>7} {:>13} {:>10} {:>8}   notes",
        "variant (TCP connect to an open port)", "probes", "CPU µs/probe", "probes/s", "vs (a)"
    );
    row(
        "(a) floor: connect+close, thread in src netns",
        &a,
        Some(base),
    );
    match &b {
        Some(b) => row(
            &format!("(b) netreach probe --concurrency {}", config.concurrency),
            b,
            Some(base),
        ),
        None => println!("{:<46} failed (see above)", "(b) netreach probe"),
    }
    match &c {
        Ok(c) => row("(c) ip netns exec SRC nc -z -w1", c, Some(base)),
        Err(e) => println!("{:<46} skipped: {e}", "(c) ip netns exec SRC nc -z -w1"),
    }
    match &d {
        Ok(d) => row("(d) blackbox_exporter /probe tcp_connect", d, Some(base)),
        Err(e) => println!(
            "{:<46} skipped: {e}",
            "(d) blackbox_exporter /probe tcp_connect"
        ),
    }
    row(
        "(a') floor with FIN close (information)",
        &a_fin,
        Some(base),
    );
    println!(
        "(a) and (b): median of {} round(s) by CPU; (b) probes/s over its probing time, CPU over the whole process",
        config.rounds
    );
    if let (Some(a_best), Some(b_best)) = (a_best, b_best) {
        println!(
            "best rounds: (a) {a_best:.1} µs, (b) {b_best:.1} µs, (b)/(a) {:.2} (other load on the machine only adds CPU time)",
            ratio(b_best, a_best)
        );
    }
    println!("load average after: {}", load_average());
    println!(
        "note: between these veth-connected namespaces the kernel completes the handshake inside connect(), for (a) and (b) alike; netreach then skips the runtime registration (agent/src/probe/tcp.rs)"
    );

    println!();
    println!("targets:");
    let b_us = b.as_ref().map(Measured::cpu_us_per_probe);
    match b_us {
        Some(b_us) => {
            let r = ratio(b_us, base);
            println!(
                "  (b)/(a) = {r:>6.2}   target <= 1.25   {}",
                verdict(r <= 1.25)
            );
            match &c {
                Ok(c) => {
                    let r = ratio(c.cpu_us_per_probe(), b_us);
                    println!(
                        "  (c)/(b) = {r:>6.1}   target >= 35     {}",
                        verdict(r >= 35.0)
                    );
                }
                Err(_) => println!("  (c)/(b)   not measured"),
            }
            match &d {
                Ok(d) => {
                    let r = ratio(d.cpu_us_per_probe(), b_us);
                    println!(
                        "  (d)/(b) = {r:>6.1}   target >= 10     {}",
                        verdict(r >= 10.0)
                    );
                }
                Err(_) => println!("  (d)/(b)   not measured"),
            }
        }
        None => println!("  (b) failed: no ratios"),
    }
    match &rss {
        Ok(run) => {
            let peak_kib = run.max_rss_kib.max(run.sampled_hwm_kib);
            let mib = peak_kib as f64 / 1024.0;
            println!(
                "  peak RSS, {} probes in flight = {mib:.1} MiB   target < 15 MiB   {}",
                config.inflight,
                verdict(mib < 15.0)
            );
            println!(
                "    ru_maxrss {} KiB, sampled VmHWM {} KiB (at the peak: RssAnon {} KiB, RssFile {} KiB); {} of {} timed out, all in flight together: {:.2} s",
                run.max_rss_kib,
                run.sampled_hwm_kib,
                run.peak_split_kib.0,
                run.peak_split_kib.1,
                config.inflight - run.measured.failures,
                config.inflight,
                run.report["duration_seconds"].as_f64().unwrap_or(0.0),
            );
        }
        Err(e) => println!("  peak RSS: run failed: {e}"),
    }
}
