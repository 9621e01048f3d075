//! Offline JSON matrix, whole process, side by side in one run (issue 10, item 7):
//!
//! - (a) `netreach matrix -f DUMP --format json > /dev/null` on the synthetic 1,000 pods / 50
//!   namespaces / 200 policies, this build against a baseline binary (the commit before the
//!   streaming writer), with the ratio (target: at least 3x): all ports (each destination on
//!   its 4 container ports, 4,000,000 rows) and `--port 8080/TCP` (1,000,000 rows, the size
//!   of the issue's 170 MB);
//! - (c) the same 1,000 x 200 cluster with 50 generated ClusterNetworkPolicies
//!   (`synthetic::cluster_policies_yaml`), table and JSON, against the cluster without them
//!   (target: under 2 s whole process);
//! - (d) `netreach whatif -f DUMP --apply CHANGE` on the same 1,000 x 200 dump with one
//!   policy edited (issue 12, target: under 3 s whole process), text and JSON, all ports and
//!   one port, with how many pairs flip;
//! - (b) `netreach matrix -f DUMP --format json` (all ports: no `--port`) against
//!   `nca --connectivity -r DUMP -o txt_no_fw_rules --output_endpoints pods`
//!   (network-config-analyzer 2.1.0) on the synthetic 200 pods / 10 namespaces / 40 policies,
//!   with the ratio (target: at least 50x).
//!
//! Both tools read the same generated YAML file (Namespaces, Pods, NetworkPolicies). Each
//! figure is the median of several runs of the whole process (start, load, compute, write to
//! /dev/null, exit): wall-clock seconds, the target's measure, and CPU seconds (user + system,
//! steadier on a shared machine). The baseline's output is also compared byte for byte with
//! this build's. Prints a table and PASS/MISS; asserts nothing (a benchmark).
//!
//! Unsafe code: one FFI call std does not wrap, `getrusage(RUSAGE_CHILDREN)`, into a value
//! owned by the calling frame.
//!
//! ```sh
//! make bench-matrix               # = scripts/bench-matrix.sh: builds the baseline, installs nca
//! NETREACH_BASELINE_BIN=PATH NCA_BIN=PATH cargo bench -p netreach --bench matrix_json
//! cargo bench -p netreach --bench matrix_json -- --runs 9 --keep /tmp/dumps
//! cargo bench -p netreach --bench matrix_json -- --only d    # make bench-whatif
//! ```
//!
//! Flags (after `--`): `--runs N` (runs per figure, default 5), `--keep DIR` (write the dumps
//! there and leave them, to rerun a command by hand), `--only LETTERS` (the sections to run,
//! e.g. `d` or `ac`; default all). Environment: `NETREACH_BIN` (the binary
//! measured as "this build"; default the one cargo built), `NETREACH_BASELINE_BIN` (the old
//! binary; without it (a) prints only this build), `NCA_BIN` (default `nca` on PATH, then
//! `.venv-bench/bin/nca`; without it (b) is skipped with the install command).
#![allow(unsafe_code)]
#![allow(clippy::print_stdout)]

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use netreach::cluster::synthetic::{SyntheticSpec, cluster_policies_yaml, cluster_yaml};

/// The 200-pod cluster of the comparison with network-config-analyzer: the benchmark
/// cluster's proportions at a fifth of the size.
const NCA_SPEC: SyntheticSpec = SyntheticSpec {
    namespaces: 10,
    pods: 200,
    policies: 40,
    seed: 42,
};
const SPEEDUP_TARGET: f64 = 3.0;
/// ClusterNetworkPolicies added to the benchmark cluster in (c).
const CLUSTER_POLICIES: usize = 50;
/// (c)'s target, seconds of wall clock for the whole process.
const TIERED_TARGET_S: f64 = 2.0;
const NCA_TARGET: f64 = 50.0;
/// (d)'s target, seconds of wall clock for the whole process.
const WHATIF_TARGET_S: f64 = 3.0;
const NCA_INSTALL: &str =
    "python3 -m venv .venv-bench && .venv-bench/bin/pip install network-config-analyzer==2.1.0";

struct Options {
    runs: usize,
    keep: Option<PathBuf>,
    only: Option<String>,
}

impl Options {
    fn section(&self, letter: char) -> bool {
        self.only.as_ref().is_none_or(|only| only.contains(letter))
    }
}

fn options() -> Options {
    let mut options = Options {
        runs: 5,
        keep: None,
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => {
                options.runs = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n > 0)
                    .expect("--runs N, N > 0");
            }
            "--keep" => options.keep = Some(args.next().expect("--keep DIR").into()),
            "--only" => options.only = Some(args.next().expect("--only LETTERS")),
            // cargo bench passes `--bench`; other flags are criterion's, not ours.
            _ => {}
        }
    }
    options
}

/// A scratch directory removed on drop, unless the user asked to keep the dumps.
struct DumpDir {
    path: PathBuf,
    remove: bool,
}

impl DumpDir {
    fn new(keep: Option<PathBuf>) -> io::Result<Self> {
        let (path, remove) = match keep {
            Some(path) => (path, false),
            None => (
                std::env::temp_dir().join(format!("netreach-bench-matrix-{}", std::process::id())),
                true,
            ),
        };
        std::fs::create_dir_all(&path)?;
        Ok(Self { path, remove })
    }

    fn write(&self, name: &str, spec: SyntheticSpec) -> io::Result<PathBuf> {
        let path = self.path.join(name);
        std::fs::write(&path, cluster_yaml(spec))?;
        Ok(path)
    }
}

impl Drop for DumpDir {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A command line, kept as words so it can be both run and printed.
struct Cmd {
    program: PathBuf,
    args: Vec<String>,
}

impl Cmd {
    fn new(program: impl Into<PathBuf>, args: &[&str]) -> Self {
        Self {
            program: program.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }

    fn shell(&self) -> String {
        let mut words = vec![self.program.display().to_string()];
        words.extend(self.args.iter().cloned());
        words.join(" ")
    }

    /// Runs once with stdout to `out`, stderr discarded.
    fn run_to(&self, out: Stdio) -> Seconds {
        let cpu_before = children_cpu_seconds();
        let start = Instant::now();
        let status = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("{}: {e}", self.shell()));
        let wall = start.elapsed().as_secs_f64();
        assert!(status.success(), "{} exited with {status}", self.shell());
        Seconds {
            wall,
            cpu: children_cpu_seconds() - cpu_before,
        }
    }

    /// The medians of `runs` runs with stdout to /dev/null.
    fn median(&self, runs: usize) -> Seconds {
        let samples: Vec<Seconds> = (0..runs)
            .map(|_| self.run_to(File::create("/dev/null").expect("/dev/null").into()))
            .collect();
        let median = |pick: fn(&Seconds) -> f64| {
            let mut values: Vec<f64> = samples.iter().map(pick).collect();
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        };
        Seconds {
            wall: median(|s| s.wall),
            cpu: median(|s| s.cpu),
        }
    }
}

/// One measurement of a whole process.
#[derive(Clone, Copy)]
struct Seconds {
    wall: f64,
    /// User + system time of the process (and any children it waited for).
    cpu: f64,
}

impl Seconds {
    fn line(self, label: &str, cmd: &Cmd) -> String {
        format!(
            "  {:>8.3} s wall {:>8.3} s cpu  {label:<10} {}",
            self.wall,
            self.cpu,
            cmd.shell()
        )
    }
}

/// How many times faster `fast` is than `slow`, wall and CPU, against a target on wall.
fn ratio_line(slow: Seconds, fast: Seconds, target: f64) -> String {
    let wall = slow.wall / fast.wall;
    let cpu = slow.cpu / fast.cpu;
    let verdict = if wall >= target { "PASS" } else { "MISS" };
    format!("  {wall:>8.1} x wall {cpu:>8.1} x cpu  faster (target >= {target}x wall): {verdict}")
}

/// User + system seconds of all waited-for children of this process so far.
fn children_cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given, which lives on this frame.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    assert_eq!(rc, 0, "getrusage: {}", io::Error::last_os_error());
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Whether two files hold the same bytes (the outputs are ~170 MB: compared in chunks).
fn same_bytes(a: &Path, b: &Path) -> io::Result<bool> {
    if std::fs::metadata(a)?.len() != std::fs::metadata(b)?.len() {
        return Ok(false);
    }
    let (mut fa, mut fb) = (File::open(a)?, File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// `NCA_BIN`, else `nca` on PATH, else the venv `make bench-matrix` installs into.
fn find_nca() -> Option<PathBuf> {
    if let Some(path) = env_path("NCA_BIN") {
        return Some(path);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nca"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv-bench/bin/nca");
        venv.is_file().then_some(venv)
    })
}

fn main() -> io::Result<()> {
    let options = options();
    let runs = options.runs;
    let netreach =
        env_path("NETREACH_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_netreach").into());
    let dumps = DumpDir::new(options.keep.clone())?;
    let big = dumps.write("cluster-1000x200.yaml", SyntheticSpec::BENCH)?;
    let small = dumps.write("cluster-200x40.yaml", NCA_SPEC)?;
    let (big, small) = (big.display().to_string(), small.display().to_string());
    println!(
        "dumps in {}: 1,000 pods/50 ns/200 policies, 200 pods/10 ns/40 policies; median of {runs} runs, whole process, stdout to /dev/null",
        dumps.path.display()
    );

    // (a) This build against the baseline on the 1,000 x 200 JSON matrix: every destination on
    // its own container ports (4 per pod here), and one port for every pair.
    let baseline_bin = env_path("NETREACH_BASELINE_BIN");
    let variants: [(&str, &[&str]); 2] = [
        ("all ports", &[]),
        ("--port 8080/TCP", &["--port", "8080/TCP"]),
    ];
    for (variant, port_args) in variants {
        if !options.section('a') {
            break;
        }
        let mut args = vec!["matrix", "-f", &big, "--format", "json"];
        args.extend_from_slice(port_args);
        println!("\n(a) 1,000 pods x 200 policies, JSON, {variant}");
        let current = Cmd::new(&netreach, &args);
        let current_s = current.median(runs);
        println!("{}", current_s.line("this build", &current));
        let Some(baseline_bin) = &baseline_bin else {
            println!(
                "  baseline skipped: set NETREACH_BASELINE_BIN to an older netreach (scripts/bench-matrix.sh builds one)"
            );
            continue;
        };
        let baseline = Cmd::new(baseline_bin, &args);
        let baseline_s = baseline.median(runs);
        println!("{}", baseline_s.line("baseline", &baseline));
        println!("{}", ratio_line(baseline_s, current_s, SPEEDUP_TARGET));
        let (a, b) = (
            dumps.path.join("current.json"),
            dumps.path.join("baseline.json"),
        );
        current.run_to(File::create(&a)?.into());
        baseline.run_to(File::create(&b)?.into());
        let same = same_bytes(&a, &b)?;
        println!(
            "  output: {} MB, {}",
            std::fs::metadata(&a)?.len() / 1_000_000,
            if same {
                "the same bytes from both"
            } else {
                "DIFFERS from the baseline"
            }
        );
        std::fs::remove_file(&a)?;
        std::fs::remove_file(&b)?;
    }

    // (c) The same 1,000 x 200 cluster with 50 ClusterNetworkPolicies (issue 11's target: the
    // whole process under 2 s), table and JSON, against the cluster without them.
    if options.section('c') {
        let tiered_path = dumps.path.join("cluster-1000x200-cnp50.yaml");
        let mut tiered = cluster_yaml(SyntheticSpec::BENCH);
        tiered.push_str(&cluster_policies_yaml(
            CLUSTER_POLICIES,
            SyntheticSpec::BENCH.namespaces,
            SyntheticSpec::BENCH.seed,
        ));
        std::fs::write(&tiered_path, tiered)?;
        let tiered_path = tiered_path.display().to_string();
        println!("\n(c) 1,000 pods x 200 policies + {CLUSTER_POLICIES} ClusterNetworkPolicies");
        let variants: [(&str, &[&str]); 3] = [
            (
                "table, 8080/TCP",
                &["--port", "8080/TCP", "--format", "table"],
            ),
            (
                "JSON, 8080/TCP",
                &["--port", "8080/TCP", "--format", "json"],
            ),
            ("JSON, all ports", &["--format", "json"]),
        ];
        for (variant, variant_args) in variants {
            let command = |dump: &str| {
                let mut args = vec!["matrix", "-f", dump];
                args.extend_from_slice(variant_args);
                Cmd::new(&netreach, &args)
            };
            let (without, with) = (command(&big), command(&tiered_path));
            let without_s = without.median(runs);
            let with_s = with.median(runs);
            println!(
                "{}",
                without_s.line(&format!("{variant}, without"), &without)
            );
            println!(
                "{}",
                with_s.line(&format!("{variant}, with {CLUSTER_POLICIES}"), &with)
            );
            println!(
                "  {} (target: under {TIERED_TARGET_S} s whole process)",
                if with_s.wall < TIERED_TARGET_S {
                    "PASS"
                } else {
                    "MISS"
                }
            );
        }
    }

    if options.section('d') {
        whatif_section(&netreach, &dumps, &big, runs)?;
    }
    if !options.section('b') {
        return Ok(());
    }
    // (b) netreach against network-config-analyzer on the 200-pod all-ports matrix.
    println!("\n(b) 200 pods x 40 policies, all ports, against network-config-analyzer");
    let ours = Cmd::new(&netreach, &["matrix", "-f", &small, "--format", "json"]);
    let ours_s = ours.median(runs);
    println!("{}", ours_s.line("netreach", &ours));
    match find_nca() {
        Some(nca_bin) => {
            let nca = Cmd::new(
                &nca_bin,
                &[
                    "--connectivity",
                    "-r",
                    &small,
                    "-o",
                    "txt_no_fw_rules",
                    "--output_endpoints",
                    "pods",
                ],
            );
            let nca_s = nca.median(runs);
            println!("{}", nca_s.line("nca", &nca));
            println!("{}", ratio_line(nca_s, ours_s, NCA_TARGET));
        }
        None => println!("  nca skipped: not installed ({NCA_INSTALL}, or set NCA_BIN)"),
    }
    Ok(())
}

/// (d) `whatif` on the 1,000 x 200 dump with one policy edited: pol-0 replaced by an ingress
/// allow-list that admits only its own namespace on 8080/TCP.
fn whatif_section(netreach: &Path, dumps: &DumpDir, big: &str, runs: usize) -> io::Result<()> {
    let text = std::fs::read_to_string(big)?;
    let namespace = text
        .split("  name: pol-0\n  namespace: ")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .expect("the dump has pol-0")
        .to_string();
    let change = dumps.path.join("pol-0-edited.yaml");
    std::fs::write(
        &change,
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: pol-0\n  namespace: {namespace}\nspec:\n  podSelector: {{}}\n  policyTypes: [Ingress]\n  ingress:\n  - from: [{{podSelector: {{}}}}]\n    ports: [{{port: 8080}}]\n"
        ),
    )?;
    let change = change.display().to_string();
    println!("\n(d) whatif: 1,000 pods x 200 policies, pol-0 ({namespace}) edited");
    let variants: [(&str, &[&str]); 3] = [
        ("text, all ports", &["--format", "text"]),
        ("JSON, all ports", &["--format", "json"]),
        (
            "JSON, 8080/TCP",
            &["--format", "json", "--port", "8080/TCP"],
        ),
    ];
    for (variant, variant_args) in variants {
        let mut args = vec!["whatif", "-f", big, "--apply", &change];
        args.extend_from_slice(variant_args);
        let command = Cmd::new(netreach, &args);
        let seconds = command.median(runs);
        println!("{}", seconds.line(variant, &command));
        println!(
            "  {} (target: under {WHATIF_TARGET_S} s whole process)",
            if seconds.wall < WHATIF_TARGET_S {
                "PASS"
            } else {
                "MISS"
            }
        );
    }
    let out = Command::new(netreach)
        .args(["whatif", "-f", big, "--apply", &change, "--format", "json"])
        .output()?;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("whatif JSON");
    println!(
        "  {} pairs compared, {} allowed -> denied, {} denied -> allowed",
        json["compared"], json["newly_denied"], json["newly_allowed"]
    );
    Ok(())
}
