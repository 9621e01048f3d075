//! [`NetnsHandle`]: an open network-namespace file descriptor, its inode and where it came
//! from. Holding the fd pins the namespace, so probes keep working through container restarts;
//! dropping the last clone releases it.

use std::fmt;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::spares::{KindSpares, Spares};
use super::sys::RawSocketKind;
use super::{Error, Result};

/// The agent's own network namespace as the kernel shows it to this process.
pub const SELF_NETNS_PATH: &str = "/proc/self/ns/net";
/// The calling thread's network namespace.
pub const THREAD_NETNS_PATH: &str = "/proc/thread-self/ns/net";

/// An open network namespace. Cheap to clone (the fd is shared); the namespace stays alive
/// while any clone does.
#[derive(Clone)]
pub struct NetnsHandle {
    inner: Arc<HandleInner>,
}

struct HandleInner {
    /// Sockets made ahead in this namespace by [`super::SocketFactory::pooled_socket`], per
    /// kind; they close (and stop pinning the namespace) when the last clone drops.
    spares: Spares,
    fd: OwnedFd,
    /// Namespace inode (`st_ino` of the nsfs file): the namespace's identity.
    inode: u64,
    /// Where the fd was opened, for messages: `/run/netns/x`, `/proc/1234/ns/net (pod …)`.
    origin: String,
}

impl NetnsHandle {
    /// Opens a namespace file such as `/run/netns/NAME` (the CLI's `--netns PATH`) or
    /// `/proc/PID/ns/net`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        Self::open_with_origin(path, path.display().to_string())
    }

    /// Opens the namespace of process `pid` (the CLI's `--pid PID`).
    pub fn from_pid(pid: u32) -> Result<Self> {
        let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
        Self::open_with_origin(&path, format!("{} (pid {pid})", path.display()))
    }

    /// The agent's own (home) namespace.
    pub fn current_process() -> Result<Self> {
        Self::open_with_origin(Path::new(SELF_NETNS_PATH), SELF_NETNS_PATH.to_string())
    }

    pub(crate) fn open_with_origin(path: &Path, origin: String) -> Result<Self> {
        let file = File::open(path).map_err(|source| Error::open(path, source))?;
        let meta = file
            .metadata()
            .map_err(|source| Error::open(path, source))?;
        let home_dev = std::fs::metadata(SELF_NETNS_PATH)
            .map_err(|source| Error::open(Path::new(SELF_NETNS_PATH), source))?
            .dev();
        if meta.dev() != home_dev {
            return Err(Error::NotANetns {
                path: path.to_path_buf(),
            });
        }
        Ok(Self::from_parts(OwnedFd::from(file), meta.ino(), origin))
    }

    pub(crate) fn from_parts(fd: OwnedFd, inode: u64, origin: String) -> Self {
        Self {
            inner: Arc::new(HandleInner {
                spares: Spares::default(),
                fd,
                inode,
                origin,
            }),
        }
    }

    /// The namespace's inode; equal inodes mean the same namespace.
    pub fn inode(&self) -> u64 {
        self.inner.inode
    }

    /// Where the handle was opened from, for messages.
    pub fn origin(&self) -> &str {
        &self.inner.origin
    }

    /// The spare sockets of `kind` kept in this handle.
    pub(crate) fn spares(&self, kind: RawSocketKind) -> Arc<KindSpares> {
        self.inner.spares.of(kind)
    }

    /// Whether `other` is the same namespace.
    pub fn same_netns(&self, other: &NetnsHandle) -> bool {
        self.inode() == other.inode()
    }
}

impl AsFd for NetnsHandle {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.fd.as_fd()
    }
}

impl fmt::Debug for NetnsHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetnsHandle")
            .field("inode", &self.inner.inode)
            .field("origin", &self.inner.origin)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for NetnsHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "net:[{}] from {}", self.inner.inode, self.inner.origin)
    }
}

/// The inode of the network namespace at `path` (`/proc/PID/ns/net`, `/run/netns/x`).
pub fn netns_inode(path: impl AsRef<Path>) -> std::io::Result<u64> {
    Ok(std::fs::metadata(path)?.ino())
}

/// The inode of the calling thread's network namespace.
pub fn current_thread_netns_inode() -> std::io::Result<u64> {
    netns_inode(THREAD_NETNS_PATH)
}
