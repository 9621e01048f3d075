//! Names of everything a run creates, and who owns a run.
//!
//! A run's prefix is `nrtb-<owner pid in base 36>-<counter>`. From it:
//! - run dir `/run/netreach-testbed/<prefix>/` with `state.json` (owner PID and start time);
//! - netns `<prefix>-r` (router) and `<prefix>-p<k>` (pod `k`), bind-mounted in `/run/netns/`;
//! - `/etc/netns/<prefix>-p<k>/resolv.conf`;
//! - cgroups `<hierarchy>/netreach-testbed-<prefix>/…`.
//!
//! Interfaces live only inside those namespaces, so their names (`br<i>`, `v<k>`, `eth0`) need
//! not be unique on the host. A run is dead when its owner process is gone (PID and start time
//! no longer match); its leftovers are then safe to remove by name.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Where run directories live.
pub const RUN_ROOT: &str = "/run/netreach-testbed";
/// Where `ip netns` keeps its namespace handles.
pub const NETNS_DIR: &str = "/run/netns";
/// Where `ip netns exec` finds per-namespace `/etc` overrides.
pub const ETC_NETNS_DIR: &str = "/etc/netns";
/// The first component of every prefix.
pub const STEM: &str = "nrtb";
/// The first part of every run's parent cgroup name.
pub const CGROUP_STEM: &str = "netreach-testbed-";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// What `state.json` records about a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct State {
    pub owner_pid: u32,
    /// Field 22 of `/proc/<owner_pid>/stat` (clock ticks since boot), against PID reuse.
    pub owner_start_time: u64,
    pub scenario: String,
}

/// The router namespace's name.
pub(crate) fn router_netns(prefix: &str) -> String {
    format!("{prefix}-r")
}

/// Pod `k`'s namespace name.
pub(crate) fn pod_netns(prefix: &str, k: usize) -> String {
    format!("{prefix}-p{k}")
}

/// The run's parent cgroup's name.
pub(crate) fn cgroup_dir_name(prefix: &str) -> String {
    format!("{CGROUP_STEM}{prefix}")
}

/// The run directory.
pub(crate) fn run_dir(prefix: &str) -> PathBuf {
    Path::new(RUN_ROOT).join(prefix)
}

fn base36(mut n: u32) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// Whether `s` is a run prefix (`nrtb-<base36>-<decimal>`).
pub(crate) fn is_prefix(s: &str) -> bool {
    let mut parts = s.split('-');
    parts.next() == Some(STEM)
        && parts.next().is_some_and(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
        })
        && parts
            .next()
            .is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        && parts.next().is_none()
}

/// The prefix of a testbed netns or `/etc/netns` entry (`<prefix>-r`, `<prefix>-p<k>`).
pub(crate) fn prefix_of_netns(name: &str) -> Option<&str> {
    let (prefix, suffix) = name.rsplit_once('-')?;
    let ok_suffix = suffix == "r"
        || suffix
            .strip_prefix('p')
            .is_some_and(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_digit()));
    (ok_suffix && is_prefix(prefix)).then_some(prefix)
}

/// The prefix of a testbed parent cgroup name.
pub(crate) fn prefix_of_cgroup(name: &str) -> Option<&str> {
    name.strip_prefix(CGROUP_STEM).filter(|p| is_prefix(p))
}

/// The owner PID encoded in a prefix.
fn pid_of_prefix(prefix: &str) -> Option<u32> {
    u32::from_str_radix(prefix.split('-').nth(1)?, 36).ok()
}

/// Start time (field 22 of `/proc/PID/stat`) of a live process.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields resume after the last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Reads a run's `state.json`.
pub(crate) fn read_state(prefix: &str) -> Option<State> {
    let text = fs::read_to_string(run_dir(prefix).join("state.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// Whether the run `prefix` may still be in use. Without a state file the run counts as
/// alive while the PID in its name exists (it may be starting): never remove what might live.
pub(crate) fn run_alive(prefix: &str) -> bool {
    match read_state(prefix) {
        Some(s) => start_time(s.owner_pid) == Some(s.owner_start_time),
        None => {
            pid_of_prefix(prefix).is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
        }
    }
}

/// Allocates a fresh prefix for this process and creates its run dir and `state.json`
/// (before anything else exists, so a crash at any later point leaves a recognisable run).
pub(crate) fn allocate(scenario: &str) -> Result<(String, PathBuf)> {
    let pid = std::process::id();
    let owner_start_time = start_time(pid).unwrap_or_default();
    fs::create_dir_all(RUN_ROOT).map_err(|e| Error::io("create", RUN_ROOT, e))?;
    for _ in 0..1000 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("{STEM}-{}-{n}", base36(pid));
        let dir = run_dir(&prefix);
        let taken = Path::new(NETNS_DIR).join(router_netns(&prefix)).exists();
        match fs::create_dir(&dir) {
            Ok(()) if !taken => {}
            Ok(()) => {
                let _ = fs::remove_dir(&dir);
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io("create", &dir, e)),
        }
        let state = State {
            owner_pid: pid,
            owner_start_time,
            scenario: scenario.to_string(),
        };
        let tmp = dir.join("state.json.tmp");
        let text = serde_json::to_string_pretty(&state).unwrap_or_default();
        let written = fs::write(&tmp, text)
            .and_then(|()| fs::rename(&tmp, dir.join("state.json")))
            .map_err(|e| Error::io("write", &tmp, e));
        if let Err(e) = written {
            let _ = fs::remove_dir_all(&dir);
            return Err(e);
        }
        return Ok((prefix, dir));
    }
    Err(Error::io(
        "allocate a run prefix under",
        RUN_ROOT,
        std::io::Error::new(std::io::ErrorKind::AlreadyExists, "1000 prefixes taken"),
    ))
}

/// A fresh random UUID from the kernel.
pub(crate) fn random_uuid() -> crate::Result<String> {
    const PATH: &str = "/proc/sys/kernel/random/uuid";
    let s = std::fs::read_to_string(PATH).map_err(|e| crate::Error::io("read", PATH, e))?;
    Ok(s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_round_trip() {
        assert_eq!(base36(0), "0");
        assert_eq!(base36(36), "10");
        assert_eq!(
            pid_of_prefix(&format!("nrtb-{}-3", base36(4_194_303))),
            Some(4_194_303)
        );
        assert!(is_prefix("nrtb-2ll-0"));
        assert!(!is_prefix("nrtb-2ll"));
        assert!(!is_prefix("nrtb-2LL-0"));
        assert!(!is_prefix("other-2ll-0"));
        assert_eq!(prefix_of_netns("nrtb-2ll-0-r"), Some("nrtb-2ll-0"));
        assert_eq!(prefix_of_netns("nrtb-2ll-0-p12"), Some("nrtb-2ll-0"));
        assert_eq!(prefix_of_netns("nrtb-2ll-0-x"), None);
        assert_eq!(prefix_of_netns("cni-1234-r"), None);
        assert_eq!(
            prefix_of_cgroup("netreach-testbed-nrtb-a-1"),
            Some("nrtb-a-1")
        );
        assert_eq!(prefix_of_cgroup("kubepods.slice"), None);
    }

    #[test]
    fn longest_names_fit() {
        // pid_max is at most 2^22; netns names have no IFNAMSIZ limit but stay short anyway.
        let p = format!("nrtb-{}-{}", base36(4_194_304), u32::MAX);
        assert!(pod_netns(&p, 9999).len() < 40);
    }

    #[test]
    fn own_start_time_is_readable() {
        assert!(start_time(std::process::id()).is_some());
    }
}
