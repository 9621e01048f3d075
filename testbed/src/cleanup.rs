//! Teardown by name: everything of a run prefix (processes, netns, cgroups, `/etc/netns` dirs,
//! run dir), leftovers of dead runs, and teardown of live testbeds on SIGINT/SIGTERM.
//!
//! Processes are found by membership, never by command name: every process in one of the run's
//! cgroups or in one of its network namespaces is SIGKILLed by PID. Namespaces are removed like
//! `ip netns del` does (detach the bind mount, unlink); the veths, bridges and nftables tables
//! inside go with them. Cgroups are removed deepest first once empty.

use std::{
    collections::BTreeSet,
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::{Arc, OnceLock, Weak},
    thread,
    time::Duration,
};

use parking_lot::Mutex;

use crate::{
    Error, Result,
    cgroup::{self, CgroupHierarchy},
    cmd,
    names::{self, ETC_NETNS_DIR, NETNS_DIR, RUN_ROOT},
};

/// Something that belongs to a dead testbed run.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Leftover {
    /// The run's prefix (`nrtb-…`).
    pub prefix: String,
    /// The path found (a netns handle, cgroup dir, `/etc/netns` dir or run dir).
    pub path: PathBuf,
}

/// What [`cleanup_leftovers`] removed.
#[derive(Debug, Clone, Default)]
pub struct CleanupReport {
    /// Prefixes of the dead runs that were cleaned up.
    pub prefixes: Vec<String>,
    /// What was found and removed.
    pub removed: Vec<Leftover>,
    /// PIDs that were killed.
    pub killed: Vec<u32>,
}

/// Everything that exists on this host for run `prefix`, whether the run is alive or not:
/// netns handles, `/etc/netns` dirs, cgroup dirs and the run dir. Empty after a complete
/// teardown.
pub fn residue(prefix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in [NETNS_DIR, ETC_NETNS_DIR] {
        if let Ok(entries) = fs::read_dir(dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if names::prefix_of_netns(&name) == Some(prefix) {
                    out.push(e.path());
                }
            }
        }
    }
    for h in cgroup::cgroup_hierarchies().unwrap_or_default() {
        let d = h.run_dir(prefix);
        if d.exists() {
            out.push(d);
        }
    }
    let run = names::run_dir(prefix);
    if run.exists() {
        out.push(run);
    }
    out.sort();
    out
}

/// Every testbed run prefix that has something on this host.
fn all_prefixes() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut scan = |dir: &Path, f: &dyn Fn(&str) -> Option<String>| {
        if let Ok(entries) = fs::read_dir(dir) {
            for e in entries.flatten() {
                if let Some(p) = f(&e.file_name().to_string_lossy()) {
                    out.insert(p);
                }
            }
        }
    };
    scan(Path::new(RUN_ROOT), &|n| {
        names::is_prefix(n).then(|| n.to_string())
    });
    scan(Path::new(NETNS_DIR), &|n| {
        names::prefix_of_netns(n).map(str::to_string)
    });
    scan(Path::new(ETC_NETNS_DIR), &|n| {
        names::prefix_of_netns(n).map(str::to_string)
    });
    for h in cgroup::cgroup_hierarchies().unwrap_or_default() {
        scan(&h.mount_point, &|n| {
            names::prefix_of_cgroup(n).map(str::to_string)
        });
    }
    out
}

/// Leftovers of testbed runs whose owner process is dead (runs of live processes, this one
/// included, are not listed).
pub fn scan_leftovers() -> Vec<Leftover> {
    let mut out = Vec::new();
    for prefix in all_prefixes() {
        if names::run_alive(&prefix) {
            continue;
        }
        out.extend(residue(&prefix).into_iter().map(|path| Leftover {
            prefix: prefix.clone(),
            path,
        }));
    }
    out
}

/// Removes every leftover of dead testbed runs (see [`scan_leftovers`]): kills their processes
/// by PID, deletes their netns, cgroups, `/etc/netns` dirs and run dirs. Runs of live processes
/// are left alone. Fails if something could not be removed.
pub fn cleanup_leftovers() -> Result<CleanupReport> {
    let leftovers = scan_leftovers();
    let prefixes: BTreeSet<String> = leftovers.iter().map(|l| l.prefix.clone()).collect();
    let mut report = CleanupReport {
        prefixes: prefixes.iter().cloned().collect(),
        removed: leftovers,
        killed: Vec::new(),
    };
    let mut problems = Vec::new();
    for prefix in &prefixes {
        let (killed, left) = cleanup_prefix(prefix);
        report.killed.extend(killed);
        problems.extend(left);
    }
    if problems.is_empty() {
        Ok(report)
    } else {
        Err(Error::Teardown {
            prefix: prefixes.into_iter().collect::<Vec<_>>().join(","),
            items: problems,
        })
    }
}

/// Removes everything of run `prefix`. Returns the PIDs killed and what could not be removed.
pub(crate) fn cleanup_prefix(prefix: &str) -> (Vec<u32>, Vec<String>) {
    let hier = cgroup::cgroup_hierarchies().unwrap_or_default();
    let netns: Vec<PathBuf> = residue(prefix)
        .into_iter()
        .filter(|p| p.starts_with(NETNS_DIR))
        .collect();
    let killed = kill_members(prefix, &hier, &netns);
    let mut problems = Vec::new();

    for ns in &netns {
        // Like `ip netns del`: detach the bind mount, then remove the handle.
        let _ = rustix::mount::unmount(ns, rustix::mount::UnmountFlags::DETACH);
        if let Err(e) = fs::remove_file(ns)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            problems.push(format!("netns {}: {e}", ns.display()));
        }
    }
    for h in &hier {
        if let Err(e) = cgroup::remove_tree(&h.run_dir(prefix)) {
            problems.push(format!("cgroup {e}"));
        }
    }
    for p in residue(prefix) {
        if (p.starts_with(ETC_NETNS_DIR) || p.starts_with(RUN_ROOT))
            && let Err(e) = fs::remove_dir_all(&p)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            problems.push(format!("{}: {e}", p.display()));
        }
    }
    problems.extend(
        residue(prefix)
            .into_iter()
            .map(|p| format!("{} still exists", p.display())),
    );
    problems.dedup();
    (killed, problems)
}

/// SIGKILLs every process in the run's cgroups or network namespaces and waits (bounded) for
/// them to be gone.
fn kill_members(prefix: &str, hier: &[CgroupHierarchy], netns: &[PathBuf]) -> Vec<u32> {
    let inodes: BTreeSet<(u64, u64)> = netns
        .iter()
        .filter_map(|p| fs::metadata(p).ok())
        .map(|m| (m.dev(), m.ino()))
        .collect();
    let members = || {
        let mut pids: BTreeSet<u32> = hier
            .iter()
            .flat_map(|h| cgroup::procs_under(&h.run_dir(prefix)))
            .collect();
        if !inodes.is_empty() {
            pids.extend(pids_in_netns(&inodes));
        }
        pids.remove(&std::process::id());
        pids
    };
    let mut killed = BTreeSet::new();
    for _ in 0..50 {
        let pids = members();
        if pids.is_empty() {
            break;
        }
        for &pid in &pids {
            if let Some(p) = i32::try_from(pid)
                .ok()
                .and_then(rustix::process::Pid::from_raw)
            {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            }
            killed.insert(pid);
        }
        thread::sleep(Duration::from_millis(20));
    }
    killed.into_iter().collect()
}

/// PIDs whose network namespace is one of `inodes` (`(dev, ino)` of the nsfs handles).
fn pids_in_netns(inodes: &BTreeSet<(u64, u64)>) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::metadata(format!("/proc/{pid}/ns/net"))
                .is_ok_and(|m| inodes.contains(&(m.dev(), m.ino())))
        })
        .collect()
}

// === live testbeds and signals ===

/// Teardown state shared between a [`Testbed`](crate::Testbed), the signal thread and the
/// registry of live testbeds.
#[derive(Debug)]
pub(crate) struct Live {
    pub prefix: String,
    /// The long-lived processes spawned for the run; `None` once torn down.
    pub children: Mutex<Option<Vec<std::process::Child>>>,
    /// One pipe whose read end is every long-lived child's stdin and whose write end only this
    /// process holds: when the run is torn down, or this process dies, every child reads end
    /// of file and exits. One pipe for all children, not one each: at 100 pods a pipe per pod
    /// would cost the process a hundred descriptors.
    stdin: Mutex<Option<(std::io::PipeReader, std::io::PipeWriter)>>,
}

static LIVE: Mutex<Vec<Weak<Live>>> = parking_lot::const_mutex(Vec::new());
static SIGNALS: OnceLock<()> = OnceLock::new();

impl Live {
    /// Registers a new run so that [`install_signal_teardown`] can find it.
    pub(crate) fn register(prefix: String) -> Arc<Live> {
        let live = Arc::new(Live {
            prefix,
            children: Mutex::new(Some(Vec::new())),
            stdin: Mutex::new(std::io::pipe().ok()),
        });
        let mut all = LIVE.lock();
        all.retain(|w| w.strong_count() > 0);
        all.push(Arc::downgrade(&live));
        live
    }

    /// Keeps `child` for teardown; if the run is already torn down, kills it at once.
    pub(crate) fn adopt(&self, mut child: std::process::Child) -> Result<()> {
        let mut guard = self.children.lock();
        match guard.as_mut() {
            Some(children) => {
                children.push(child);
                Ok(())
            }
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(Error::Teardown {
                    prefix: self.prefix.clone(),
                    items: vec!["torn down while starting (signal?)".into()],
                })
            }
        }
    }

    /// A stdin for a long-lived child: the shared pipe's read end (see `stdin`).
    pub(crate) fn child_stdin(&self) -> Result<std::process::Stdio> {
        let guard = self.stdin.lock();
        let (reader, _) = guard.as_ref().ok_or_else(|| Error::Teardown {
            prefix: self.prefix.clone(),
            items: vec!["no stdin pipe (torn down, or pipe() failed)".into()],
        })?;
        let reader = reader
            .try_clone()
            .map_err(|e| Error::io("duplicate", "the children's stdin pipe", e))?;
        Ok(reader.into())
    }

    /// Tears the run down (once; later calls return `Ok`). Holds the lock throughout so a
    /// concurrent signal teardown waits for this one.
    pub(crate) fn teardown(&self) -> Result<()> {
        let mut guard = self.children.lock();
        let Some(children) = guard.take() else {
            return Ok(());
        };
        // End of file on every child's stdin: they exit by themselves while we kill them.
        self.stdin.lock().take();
        for mut c in children {
            let _ = c.kill();
            let _ = cmd::wait_timeout(&mut c, Duration::from_secs(5));
        }
        let (_, problems) = cleanup_prefix(&self.prefix);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Teardown {
                prefix: self.prefix.clone(),
                items: problems,
            })
        }
    }
}

/// Makes SIGINT and SIGTERM tear down every live testbed of this process, then exit with
/// status 130. Call it once early in binaries (tests need not: Drop and unwinding cover
/// them). Further calls do nothing.
pub fn install_signal_teardown() -> Result<()> {
    if SIGNALS.get().is_some() {
        return Ok(());
    }
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .map_err(|e| Error::io("install handlers for", "SIGINT/SIGTERM", e))?;
    thread::Builder::new()
        .name("testbed-signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                tracing::warn!(signal = sig, "tearing down live testbeds");
                teardown_all();
                std::process::exit(130);
            }
        })
        .map_err(|e| Error::io("spawn", "testbed-signals thread", e))?;
    let _ = SIGNALS.set(());
    Ok(())
}

/// Tears down every live testbed of this process.
fn teardown_all() {
    let live: Vec<Arc<Live>> = LIVE.lock().iter().filter_map(Weak::upgrade).collect();
    for l in live {
        if let Err(error) = l.teardown() {
            tracing::error!(%error, "testbed teardown after signal");
        }
    }
}
