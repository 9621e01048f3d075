//! Kubepods-style cgroups for the simulated pods, in every hierarchy the resolver may read.
//!
//! Hierarchies come from `/proc/self/mountinfo`: the cgroup v2 mount (`/sys/fs/cgroup` on a
//! pure-v2 host, `/sys/fs/cgroup/unified` on a hybrid one) and the v1 `name=systemd` and `pids`
//! hierarchies when mounted. Each run nests its tree under `<mount>/netreach-testbed-<prefix>/`
//! so cleanup is by name; under it a pod's processes sit where the kubelet would put them for
//! the pod's [`CgroupLayout`].

use std::{
    fs,
    io::{self, Write as _},
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use crate::{Error, Result, names};

/// The container-runtime / cgroup-driver combinations the testbed rotates through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CgroupLayout {
    /// containerd with the systemd driver, Burstable QoS:
    /// `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice/cri-containerd-<id>.scope`.
    ContainerdSystemd,
    /// CRI-O with the systemd driver, BestEffort QoS:
    /// `kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid_>.slice/crio-<id>.scope`,
    /// plus a `crio-conmon-<id>.scope` process in the host netns.
    CrioSystemd,
    /// The cgroupfs driver, BestEffort QoS: `kubepods/besteffort/pod<uid>/<id>`.
    Cgroupfs,
    /// cri-dockerd with the systemd driver, Guaranteed QoS:
    /// `kubepods.slice/kubepods-pod<uid_>.slice/docker-<id>.scope`.
    Docker,
}

impl CgroupLayout {
    /// Every layout, in rotation order.
    pub const ALL: [CgroupLayout; 4] = [
        CgroupLayout::ContainerdSystemd,
        CgroupLayout::CrioSystemd,
        CgroupLayout::Cgroupfs,
        CgroupLayout::Docker,
    ];

    /// The pod's cgroup, relative to the run's parent cgroup.
    pub fn pod_dir(self, uid: &str) -> String {
        let u = uid.replace('-', "_");
        match self {
            CgroupLayout::ContainerdSystemd => {
                format!("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice")
            }
            CgroupLayout::CrioSystemd => {
                format!("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{u}.slice")
            }
            CgroupLayout::Cgroupfs => format!("kubepods/besteffort/pod{uid}"),
            CgroupLayout::Docker => format!("kubepods.slice/kubepods-pod{u}.slice"),
        }
    }

    /// A container's cgroup (last component) for container id `id` (64 hex digits).
    pub fn container_leaf(self, id: &str) -> String {
        match self {
            CgroupLayout::ContainerdSystemd => format!("cri-containerd-{id}.scope"),
            CgroupLayout::CrioSystemd => format!("crio-{id}.scope"),
            CgroupLayout::Cgroupfs => id.to_string(),
            CgroupLayout::Docker => format!("docker-{id}.scope"),
        }
    }

    /// The conmon cgroup (last component) for a CRI-O container, `None` for other runtimes.
    pub fn conmon_leaf(self, id: &str) -> Option<String> {
        (self == CgroupLayout::CrioSystemd).then(|| format!("crio-conmon-{id}.scope"))
    }
}

/// A mounted cgroup hierarchy the testbed uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupHierarchy {
    /// Where it is mounted, e.g. `/sys/fs/cgroup/unified`.
    pub mount_point: PathBuf,
    /// The controller field of its `/proc/PID/cgroup` lines: `""` for v2, `name=systemd` or
    /// `pids` for v1.
    pub controllers: String,
}

impl CgroupHierarchy {
    /// Whether this is the unified (v2) hierarchy.
    pub fn is_v2(&self) -> bool {
        self.controllers.is_empty()
    }

    /// The run's parent cgroup directory in this hierarchy.
    pub(crate) fn run_dir(&self, prefix: &str) -> PathBuf {
        self.mount_point.join(names::cgroup_dir_name(prefix))
    }
}

/// The hierarchies the testbed puts processes in: cgroup v2, and v1 `name=systemd` and `pids`
/// where mounted (a hybrid host has all three).
pub fn cgroup_hierarchies() -> Result<Vec<CgroupHierarchy>> {
    const MOUNTINFO: &str = "/proc/self/mountinfo";
    let text = fs::read_to_string(MOUNTINFO).map_err(|e| Error::io("read", MOUNTINFO, e))?;
    let mut out: Vec<CgroupHierarchy> = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut l = left.split(' ');
        let (Some(root), Some(mount)) = (l.nth(3), l.next()) else {
            continue;
        };
        let mut r = right.split(' ');
        let (Some(fstype), Some(_src), Some(opts)) = (r.next(), r.next(), r.next()) else {
            continue;
        };
        if root != "/" {
            continue;
        }
        let controllers = match fstype {
            "cgroup2" => String::new(),
            "cgroup" => {
                let opts: Vec<&str> = opts.split(',').collect();
                if opts.contains(&"name=systemd") {
                    "name=systemd".to_string()
                } else if opts.contains(&"pids") && opts.iter().all(|o| !o.starts_with("name=")) {
                    "pids".to_string()
                } else {
                    continue;
                }
            }
            _ => continue,
        };
        if out.iter().any(|h| h.controllers == controllers) {
            continue;
        }
        out.push(CgroupHierarchy {
            mount_point: PathBuf::from(unescape_mount(mount)),
            controllers,
        });
    }
    if out.is_empty() {
        return Err(Error::io(
            "find cgroup hierarchies in",
            MOUNTINFO,
            io::Error::new(
                io::ErrorKind::NotFound,
                "no cgroup2, name=systemd or pids mount",
            ),
        ));
    }
    Ok(out)
}

/// mountinfo escapes spaces and friends as `\040`-style octal.
fn unescape_mount(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let oct: String = chars.by_ref().take(3).collect();
            if let Ok(n) = u8::from_str_radix(&oct, 8) {
                out.push(char::from(n));
                continue;
            }
            out.push(c);
            out.push_str(&oct);
        } else {
            out.push(c);
        }
    }
    out
}

/// Creates `rel` (under the run's parent) in every hierarchy.
pub(crate) fn create(hier: &[CgroupHierarchy], prefix: &str, rel: &str) -> Result<()> {
    for h in hier {
        let dir = h.run_dir(prefix).join(rel);
        fs::create_dir_all(&dir).map_err(|e| Error::io("create cgroup", &dir, e))?;
    }
    Ok(())
}

/// Moves process `pid` into `rel` (under the run's parent) in every hierarchy.
pub(crate) fn attach(hier: &[CgroupHierarchy], prefix: &str, rel: &str, pid: u32) -> Result<()> {
    for h in hier {
        let procs = h.run_dir(prefix).join(rel).join("cgroup.procs");
        fs::OpenOptions::new()
            .write(true)
            .open(&procs)
            .and_then(|mut f| f.write_all(pid.to_string().as_bytes()))
            .map_err(|e| Error::io(&format!("move pid {pid} into"), &procs, e))?;
    }
    Ok(())
}

/// Every PID in `dir` and its descendants (bounded depth).
pub(crate) fn procs_under(dir: &Path) -> Vec<u32> {
    let mut out = Vec::new();
    walk(dir, 0, &mut |d| {
        if let Ok(s) = fs::read_to_string(d.join("cgroup.procs")) {
            out.extend(s.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
    });
    out
}

/// Removes `dir` and every cgroup below it, deepest first, waiting (bounded) for cgroups that
/// are still busy because their last process is exiting.
pub(crate) fn remove_tree(dir: &Path) -> io::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let mut dirs = Vec::new();
    walk(dir, 0, &mut |d| dirs.push(d.to_path_buf()));
    // Deepest first: longer paths are below shorter ones.
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for d in dirs {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            match fs::remove_dir(&d) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) if Instant::now() < deadline && e.raw_os_error() == Some(16) => {
                    thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", d.display()))),
            }
        }
    }
    Ok(())
}

/// Calls `f` on `dir` and each sub-directory, parents first (depth at most 16).
fn walk(dir: &Path, depth: usize, f: &mut dyn FnMut(&Path)) {
    if depth > 16 {
        return;
    }
    f(dir);
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            walk(&e.path(), depth + 1, f);
        }
    }
}

/// 64 hex digits for a container id (two kernel UUIDs without dashes).
pub(crate) fn container_id() -> Result<String> {
    let a = names::random_uuid()?;
    let b = names::random_uuid()?;
    Ok(format!("{a}{b}").replace('-', ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_name_the_pod_like_the_kubelet() {
        let uid = "0b6c1f2e-1111-2222-3333-444455556666";
        assert_eq!(
            CgroupLayout::ContainerdSystemd.pod_dir(uid),
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0b6c1f2e_1111_2222_3333_444455556666.slice"
        );
        assert_eq!(
            CgroupLayout::Cgroupfs.pod_dir(uid),
            "kubepods/besteffort/pod0b6c1f2e-1111-2222-3333-444455556666"
        );
        assert_eq!(CgroupLayout::Docker.container_leaf("ab"), "docker-ab.scope");
        assert_eq!(
            CgroupLayout::CrioSystemd.conmon_leaf("ab").as_deref(),
            Some("crio-conmon-ab.scope")
        );
        assert_eq!(CgroupLayout::Cgroupfs.conmon_leaf("ab"), None);
    }

    #[test]
    fn mount_points_are_unescaped() {
        assert_eq!(unescape_mount(r"/a\040b"), "/a b");
        assert_eq!(unescape_mount("/sys/fs/cgroup"), "/sys/fs/cgroup");
    }

    #[test]
    fn container_ids_are_64_hex() {
        let id = container_id().unwrap();
        assert_eq!(id.len(), 64);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
