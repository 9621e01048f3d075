//! Pure parsing of `/proc/PID/cgroup` into the pod UID and container kind the kubelet encoded
//! in the cgroup path. No I/O: [`super::scan`] feeds it file contents.
//!
//! Data flow: file contents -> lines `ID:CONTROLLERS:PATH` -> the cgroup v2 line (`0::`) first,
//! then every v1 line -> path components -> the pod component (`…kubepods…-pod<uid>.slice` for
//! the systemd driver, `pod<uid>` below a `kubepods` component for cgroupfs) -> the next
//! component names the container (`cri-containerd-<id>.scope`, `crio-<id>.scope`,
//! `crio-conmon-<id>.scope`, `docker-<id>.scope`, or a bare `<id>`).
//!
//! Handles cgroup v1, v2 and hybrid hosts, `kubelet-kubepods-…` nesting (kind), relative paths
//! such as `0::/../../kubepods.slice/…` seen from a private cgroup namespace, UIDs written with
//! `_` in systemd slice names, and static pods whose UID is a 32-hex config hash.

/// Who runs the process, according to the container component of its cgroup path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContainerKind {
    /// `cri-containerd-<id>.scope` (containerd, systemd driver).
    Containerd,
    /// `crio-<id>.scope` (CRI-O).
    CriO,
    /// `crio-conmon-<id>.scope`: CRI-O's monitor. In the pod's cgroup but in the HOST netns.
    Conmon,
    /// `docker-<id>.scope` (dockershim / cri-dockerd, systemd driver).
    Docker,
    /// A bare `<id>` (cgroupfs driver, any runtime).
    Bare,
    /// The process sits in the pod cgroup itself, not in a container below it.
    PodLevel,
    /// A container component in a form not recognised; still the pod's process.
    Other,
}

impl ContainerKind {
    /// Whether processes of this kind can live in the pod's network namespace.
    pub fn may_share_pod_netns(self) -> bool {
        !matches!(self, ContainerKind::Conmon)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ContainerKind::Containerd => "containerd",
            ContainerKind::CriO => "cri-o",
            ContainerKind::Conmon => "conmon",
            ContainerKind::Docker => "docker",
            ContainerKind::Bare => "bare",
            ContainerKind::PodLevel => "pod-level",
            ContainerKind::Other => "other",
        }
    }
}

/// What a cgroup path says about a process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodCgroup {
    /// The pod UID in its API form (lowercase, `-` separated; a static pod's 32-hex hash as is).
    pub pod_uid: String,
    pub container_kind: ContainerKind,
    /// The container id from the component, when there is one.
    pub container_id: Option<String>,
}

/// Parses the contents of `/proc/PID/cgroup`. The `0::` line wins when it names a pod;
/// otherwise the first v1 line that does.
pub fn parse_proc_cgroup(contents: &str) -> Option<PodCgroup> {
    let mut v1_paths = Vec::new();
    for line in contents.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            if let Some(found) = parse_cgroup_path(path) {
                return Some(found);
            }
        } else {
            v1_paths.push(path);
        }
    }
    v1_paths.into_iter().find_map(parse_cgroup_path)
}

/// Parses one cgroup path (`/kubepods.slice/…/cri-containerd-<id>.scope`).
pub fn parse_cgroup_path(path: &str) -> Option<PodCgroup> {
    let components: Vec<&str> = path
        .trim()
        .split('/')
        .filter(|c| !c.is_empty() && *c != "." && *c != "..")
        .collect();
    for (index, component) in components.iter().enumerate() {
        let ancestors = &components[..index];
        let Some(pod_uid) = pod_uid_from_systemd_slice(component)
            .or_else(|| pod_uid_from_cgroupfs_dir(component, ancestors))
        else {
            continue;
        };
        let (container_kind, container_id) = match components.get(index + 1) {
            None => (ContainerKind::PodLevel, None),
            Some(next) => parse_container_component(next),
        };
        return Some(PodCgroup {
            pod_uid,
            container_kind,
            container_id,
        });
    }
    None
}

/// `kubepods-burstable-pod1b4f_…_9e.slice`, `kubelet-kubepods-pod….slice`, `kubepods-pod….slice`.
fn pod_uid_from_systemd_slice(component: &str) -> Option<String> {
    let stem = component.strip_suffix(".slice")?;
    let (prefix, raw_uid) = stem.rsplit_once("-pod")?;
    if !prefix.split('-').any(|word| word == "kubepods") {
        return None;
    }
    normalize_uid(&raw_uid.replace('_', "-"))
}

/// `pod<uid>` directly below `kubepods`, `kubepods/burstable` or `kubepods/besteffort`.
fn pod_uid_from_cgroupfs_dir(component: &str, ancestors: &[&str]) -> Option<String> {
    let raw_uid = component.strip_prefix("pod")?;
    let under_kubepods = match ancestors {
        [.., parent] if is_kubepods_dir(parent) => true,
        [.., grandparent, qos] if is_kubepods_dir(grandparent) => {
            matches!(*qos, "burstable" | "besteffort" | "guaranteed")
        }
        _ => false,
    };
    if !under_kubepods {
        return None;
    }
    normalize_uid(raw_uid)
}

fn is_kubepods_dir(component: &str) -> bool {
    component == "kubepods" || component == "kubepods.slice"
}

/// Accepts an RFC 4122 UUID (8-4-4-4-12 hex) or a 32-hex static-pod config hash; returns it
/// lowercased.
fn normalize_uid(raw: &str) -> Option<String> {
    let is_hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    let groups: Vec<&str> = raw.split('-').collect();
    let uuid_shape = groups.len() == 5
        && groups
            .iter()
            .zip([8usize, 4, 4, 4, 12])
            .all(|(group, len)| group.len() == len && is_hex(group));
    let hash_shape = raw.len() == 32 && is_hex(raw);
    (uuid_shape || hash_shape).then(|| raw.to_ascii_lowercase())
}

fn parse_container_component(component: &str) -> (ContainerKind, Option<String>) {
    let stem = component.strip_suffix(".scope").unwrap_or(component);
    let prefixed = [
        ("cri-containerd-", ContainerKind::Containerd),
        ("crio-conmon-", ContainerKind::Conmon),
        ("crio-", ContainerKind::CriO),
        ("docker-", ContainerKind::Docker),
    ];
    for (prefix, kind) in prefixed {
        if let Some(id) = stem.strip_prefix(prefix) {
            return (kind, Some(id.to_string()));
        }
    }
    if stem.len() >= 12 && stem.bytes().all(|b| b.is_ascii_hexdigit()) {
        return (ContainerKind::Bare, Some(stem.to_string()));
    }
    (ContainerKind::Other, Some(component.to_string()))
}

#[cfg(test)]
mod tests;
