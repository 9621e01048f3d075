//! The `/proc` scan from a pod UID to its network namespace.
//!
//! Data flow: `/proc/*/cgroup` -> [`parse_proc_cgroup`] -> processes of the UID (conmon
//! dropped) -> each one's `/proc/PID/ns/net` inode, `comm` and start time -> those in the
//! agent's own netns (`/proc/self/ns/net`, never `/proc/1`, which even root may not read)
//! dropped -> none left: `HostNetwork`; several inodes: ambiguous -> sandbox = `pause`, else
//! the oldest; app = the oldest non-`pause` -> open `/proc/SANDBOX/ns/net` -> re-read its cgroup
//! and start time and compare the fd's inode (a PID reused in between fails the check, and the
//! scan is retried a bounded number of times).
//!
//! Blocking file I/O: call it from `spawn_blocking` in async code (it never calls setns).
//! Cost is about 12 µs per process on the host.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use tracing::{debug, debug_span, warn};

use super::cgroup::{ContainerKind, parse_proc_cgroup};
use super::handle::{NetnsHandle, SELF_NETNS_PATH, netns_inode};
use super::{Error, PodNetns, Resolution, Result};

/// Scans are repeated at most this often when a PID is reused mid-scan.
const MAX_SCAN_ATTEMPTS: usize = 3;
const PAUSE_COMM: &str = "pause";

/// One process of the pod, as seen during the scan.
#[derive(Clone, Debug)]
struct Member {
    pid: u32,
    kind: ContainerKind,
    netns_inode: u64,
    comm: String,
    /// Start time in clock ticks since boot (`/proc/PID/stat` field 22).
    start_ticks: u64,
}

/// Finds the network namespace of the pod with `uid` on this node.
pub fn resolve_pod(uid: &str) -> Result<Resolution> {
    let uid = uid.trim().to_ascii_lowercase();
    let span = debug_span!("resolve_pod", %uid);
    let _entered = span.enter();
    let home_inode = netns_inode(SELF_NETNS_PATH).map_err(|source| Error::Proc {
        path: PathBuf::from(SELF_NETNS_PATH),
        source,
    })?;
    let mut last_error = None;
    for attempt in 0..MAX_SCAN_ATTEMPTS {
        match resolve_once(&uid, home_inode) {
            Err(error @ Error::PidReused { .. }) => {
                debug!(attempt, %error, "retrying scan");
                last_error = Some(error);
            }
            other => return other,
        }
    }
    Err(last_error.unwrap_or(Error::PodNotFound { uid }))
}

fn resolve_once(uid: &str, home_inode: u64) -> Result<Resolution> {
    let (members, in_host_netns) = pod_members(uid, home_inode)?;
    if members.is_empty() {
        return if in_host_netns > 0 {
            debug!(
                processes = in_host_netns,
                "all processes share the agent's netns"
            );
            Ok(Resolution::HostNetwork {
                uid: uid.to_string(),
            })
        } else {
            Err(Error::PodNotFound {
                uid: uid.to_string(),
            })
        };
    }
    let mut inodes: Vec<u64> = members.iter().map(|m| m.netns_inode).collect();
    inodes.sort_unstable();
    inodes.dedup();
    if inodes.len() > 1 {
        return Err(Error::Ambiguous {
            uid: uid.to_string(),
            inodes,
        });
    }
    let oldest_first =
        |a: &&Member, b: &&Member| (a.start_ticks, a.pid).cmp(&(b.start_ticks, b.pid));
    let sandbox = members
        .iter()
        .filter(|m| m.comm == PAUSE_COMM)
        .min_by(oldest_first)
        .or_else(|| members.iter().min_by(oldest_first))
        .ok_or_else(|| Error::PodNotFound {
            uid: uid.to_string(),
        })?;
    let app_pid = members
        .iter()
        .filter(|m| m.comm != PAUSE_COMM)
        .min_by(oldest_first)
        .map(|m| m.pid);
    let handle = open_and_recheck(uid, sandbox)?;
    debug!(
        sandbox_pid = sandbox.pid,
        ?app_pid,
        inode = handle.inode(),
        "pod netns found"
    );
    Ok(Resolution::Pod(PodNetns {
        uid: uid.to_string(),
        sandbox_pid: sandbox.pid,
        app_pid,
        handle,
        sandbox_start_ticks: sandbox.start_ticks,
    }))
}

/// The pod's processes outside the agent's netns, and how many share the agent's netns.
fn pod_members(uid: &str, home_inode: u64) -> Result<(Vec<Member>, usize)> {
    let proc_dir = Path::new("/proc");
    let entries = fs::read_dir(proc_dir).map_err(|source| Error::Proc {
        path: proc_dir.to_path_buf(),
        source,
    })?;
    let mut members = Vec::new();
    let mut in_host_netns = 0usize;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        // Processes come and go during the scan: anything unreadable is skipped.
        let Ok(contents) = fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
            continue;
        };
        let Some(cgroup) = parse_proc_cgroup(&contents) else {
            continue;
        };
        if cgroup.pod_uid != uid || !cgroup.container_kind.may_share_pod_netns() {
            continue;
        }
        let member = match read_member(pid, cgroup.container_kind) {
            Ok(member) => member,
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => {
                warn!(pid, %error, "cannot inspect a process of the pod");
                continue;
            }
        };
        if member.netns_inode == home_inode {
            in_host_netns += 1;
        } else {
            members.push(member);
        }
    }
    Ok((members, in_host_netns))
}

fn read_member(pid: u32, kind: ContainerKind) -> io::Result<Member> {
    let netns_inode = netns_inode(format!("/proc/{pid}/ns/net"))?;
    let comm = fs::read_to_string(format!("/proc/{pid}/comm"))?
        .trim_end()
        .to_string();
    let start_ticks = read_start_ticks(pid)?;
    Ok(Member {
        pid,
        kind,
        netns_inode,
        comm,
        start_ticks,
    })
}

/// Whether `pod`'s handle still names the pod's current namespace: its sandbox process is the
/// same process (same PID and start time) and still lives in the handle's namespace. A pod
/// whose sandbox was recreated under the same UID, or that is gone, fails this.
/// Blocking: two small `/proc` reads.
pub fn sandbox_unchanged(pod: &PodNetns) -> bool {
    let pid = pod.sandbox_pid;
    read_start_ticks(pid).is_ok_and(|ticks| ticks == pod.sandbox_start_ticks)
        && netns_inode(format!("/proc/{pid}/ns/net")).is_ok_and(|inode| inode == pod.handle.inode())
}

fn read_start_ticks(pid: u32) -> io::Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_start_ticks(&stat)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed /proc/PID/stat"))
}

/// Field 22 of `/proc/PID/stat`; `comm` (field 2) may contain spaces and parentheses, so
/// fields are counted after its last `)`.
pub(crate) fn parse_start_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // after_comm starts at field 3 (state), so field 22 is the 20th.
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

fn open_and_recheck(uid: &str, sandbox: &Member) -> Result<NetnsHandle> {
    let pid = sandbox.pid;
    let reused = || Error::PidReused {
        uid: uid.to_string(),
        pid,
    };
    let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
    let origin = format!(
        "{} (pod {uid}, {} {}, {})",
        path.display(),
        sandbox.comm,
        pid,
        sandbox.kind.as_str()
    );
    let handle = match NetnsHandle::open_with_origin(&path, origin) {
        Ok(handle) => handle,
        Err(Error::Gone { .. }) => return Err(reused()),
        Err(error) => return Err(error),
    };
    // The fd is open: whatever the PID is now, the handle pins what it pointed at. Make sure
    // that was still our process.
    let still_ours = fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .ok()
        .and_then(|contents| parse_proc_cgroup(&contents))
        .is_some_and(|cgroup| cgroup.pod_uid == uid);
    let same_start = read_start_ticks(pid).ok() == Some(sandbox.start_ticks);
    if !still_ours || !same_start || handle.inode() != sandbox.netns_inode {
        return Err(reused());
    }
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::parse_start_ticks;

    #[test]
    fn start_time_survives_odd_process_names() {
        let stat = "4242 (we ird) (name)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_start_ticks(stat), Some(987_654));
        assert_eq!(parse_start_ticks("garbage"), None);
        assert_eq!(parse_start_ticks("1 (x) S 1 2"), None);
    }
}
