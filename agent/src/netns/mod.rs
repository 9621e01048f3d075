//! Pod network namespaces: finding them and making sockets inside them. The ONLY module that
//! calls `setns`.
//!
//! Data flow:
//! - pod UID -> [`scan::resolve_pod`]: `/proc/*/cgroup` parsed by [`cgroup`] -> the pod's
//!   processes grouped by `/proc/PID/ns/net` inode, the agent's own netns (conmon, hostNetwork)
//!   dropped -> sandbox (`pause`, else oldest) and app PIDs -> `/proc/PID/ns/net` opened and
//!   re-checked against PID reuse -> [`Resolution`]: a [`PodNetns`] or `HostNetwork`.
//! - [`PodNetnsRegistry`] caches the [`NetnsHandle`] per UID (the open fd pins the namespace
//!   across container restarts) and drops it on `forget(uid)`; it validates a new handle by
//!   binding the pod IP in it.
//! - [`SocketFactory`] turns a handle into sockets: a hop thread owned by this module enters the
//!   namespace, calls `socket()`, returns home, and each socket is verified with `SIOCGSKNS`.
//!   Tokio threads never change namespace. `--netns PATH` and `--pid PID` map to
//!   [`NetnsHandle::open`] and [`NetnsHandle::from_pid`].
//!
//! Unsafe code: only in `sys` (setns, socket, ioctl), documented there.

pub mod cgroup;
mod factory;
mod handle;
mod pod_file;
mod registry;
pub mod scan;
mod spares;
mod sys;

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub use factory::{FactoryConfig, MAX_BATCH, SocketFactory, threads_outside};
pub use handle::{
    NetnsHandle, SELF_NETNS_PATH, THREAD_NETNS_PATH, current_thread_netns_inode, netns_inode,
};
pub use pod_file::{MAX_POD_FILE_BYTES, PodFileError, read_in_root, read_pod_file};
pub use registry::{PodNetnsRegistry, REVALIDATE_EVERY};
pub use scan::resolve_pod;
pub use spares::{DEFAULT_SPARE_BUDGET, MAX_SPARES, SPARE_BATCH, SpareBudget};
pub use sys::{NofileLimit, raise_nofile_limit};

/// The inode of the network namespace `socket` belongs to (`SIOCGSKNS`), for checks such as
/// "this socket really lives in the pod".
pub fn socket_netns_inode(socket: &impl std::os::fd::AsFd) -> io::Result<u64> {
    sys::socket_netns_inode(socket.as_fd())
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A pod's network namespace, found from its UID.
#[derive(Clone, Debug)]
pub struct PodNetns {
    /// The pod UID (API form).
    pub uid: String,
    /// The sandbox process whose netns was opened (`pause`, else the oldest process).
    pub sandbox_pid: u32,
    /// An application container's process, whose mount namespace has the pod's
    /// `/etc/resolv.conf`. `None` when only the sandbox runs.
    pub app_pid: Option<u32>,
    pub handle: NetnsHandle,
    /// The sandbox process's start time (clock ticks since boot, `/proc/PID/stat` field 22):
    /// with `sandbox_pid` it names the process even after its PID is reused.
    pub sandbox_start_ticks: u64,
}

impl PodNetns {
    /// The pod's resolv.conf as its containers see it: through an app container's root
    /// (the pause image may have none), else through the sandbox's.
    pub fn resolv_conf_path(&self) -> PathBuf {
        let pid = self.app_pid.unwrap_or(self.sandbox_pid);
        PathBuf::from(format!("/proc/{pid}/root/etc/resolv.conf"))
    }

    /// Reads the pod's `/etc/resolv.conf` inside its root ([`read_pod_file`]: symlinks
    /// cannot leave the pod, only a regular file of at most 64 KiB is read).
    pub fn read_resolv_conf(&self) -> Result<Vec<u8>> {
        let pid = self.app_pid.unwrap_or(self.sandbox_pid);
        Ok(read_pod_file(
            pid,
            Path::new(RESOLV_CONF),
            MAX_POD_FILE_BYTES,
        )?)
    }
}

/// A pod's resolver configuration, relative to its root.
pub const RESOLV_CONF: &str = "etc/resolv.conf";

/// Where a pod's traffic originates.
#[derive(Clone, Debug)]
pub enum Resolution {
    /// The pod has its own network namespace.
    Pod(PodNetns),
    /// Every process of the pod shares the agent's namespace (hostNetwork): not probe-able
    /// from inside, and NetworkPolicy does not apply to it.
    HostNetwork { uid: String },
}

/// Failures of this module. Outcomes of probes are not errors; these are reasons a probe could
/// not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: no such network namespace (gone, or the pod is not on this node)", path.display())]
    Gone { path: PathBuf },
    #[error("cannot open {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not a network namespace file", path.display())]
    NotANetns { path: PathBuf },
    #[error("cannot read {}: {source}", path.display())]
    Proc {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no process of pod {uid} on this node")]
    PodNotFound { uid: String },
    #[error("pod {uid}: its processes are in {} different network namespaces ({inodes:?})", inodes.len())]
    Ambiguous { uid: String, inodes: Vec<u64> },
    #[error("pod {uid}: process {pid} changed while its netns was opened (PID reuse race)")]
    PidReused { uid: String, pid: u32 },
    #[error("{ip} is not an address in {netns}: stale handle or the wrong pod")]
    AddressNotLocal { ip: IpAddr, netns: String },
    #[error("cannot enter {netns}: {source}")]
    Enter {
        netns: String,
        #[source]
        source: io::Error,
    },
    #[error("socket(): {source}")]
    Socket {
        #[source]
        source: io::Error,
    },
    #[error("cannot check a new socket's namespace (SIOCGSKNS): {source}")]
    Verify {
        #[source]
        source: io::Error,
    },
    #[error("socket was born in netns {actual}, expected {expected}; closed")]
    WrongNetns { expected: u64, actual: u64 },
    #[error("a socket batch must hold 1..={MAX_BATCH} sockets, not {count}")]
    BatchSize { count: usize },
    #[error("the socket factory's hop thread failed this request")]
    HopFailed,
    #[error("the /proc scan task failed")]
    ScanFailed,
    #[error("hop thread started in netns {inode}, not home {home}")]
    NotHome { inode: u64, home: u64 },
    #[error(transparent)]
    PodFile(#[from] PodFileError),
    #[error("cannot make a socket as uid {fsuid} (CAP_SETUID missing?)")]
    Identity { fsuid: u32 },
    #[error("cannot start a hop thread: {source}")]
    Spawn {
        #[source]
        source: io::Error,
    },
}

impl Error {
    pub(crate) fn open(path: &Path, source: io::Error) -> Self {
        if source.kind() == io::ErrorKind::NotFound {
            Error::Gone {
                path: path.to_path_buf(),
            }
        } else {
            Error::Open {
                path: path.to_path_buf(),
                source,
            }
        }
    }

    /// A bounded label for failure counters.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Gone { .. } => "netns_gone",
            Error::Open { source, .. } if source.kind() == io::ErrorKind::PermissionDenied => {
                "permission_denied"
            }
            Error::Open { .. } => "open_failed",
            Error::NotANetns { .. } => "not_a_netns",
            Error::Proc { .. } => "proc_unreadable",
            Error::PodNotFound { .. } => "pod_not_found",
            Error::Ambiguous { .. } => "ambiguous",
            Error::PidReused { .. } => "pid_reused",
            Error::AddressNotLocal { .. } => "stale_netns",
            Error::Enter { .. } => "setns_failed",
            Error::Socket { .. } => "socket_failed",
            Error::Verify { .. } => "verify_failed",
            Error::WrongNetns { .. } => "wrong_netns",
            Error::BatchSize { .. } => "batch_size",
            Error::HopFailed => "hop_failed",
            Error::ScanFailed => "scan_failed",
            Error::NotHome { .. } => "not_home",
            Error::Spawn { .. } => "spawn_failed",
            Error::Identity { .. } => "identity_failed",
            Error::PodFile(_) => "pod_file_unreadable",
        }
    }
}
