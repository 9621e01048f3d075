//! The system calls behind [`super::factory`]: `setns`, `socket` and `SIOCGSKNS`.
//!
//! This file is the crate's one documented exception to `deny(unsafe_code)` for namespaces
//! (the other is `probe::errqueue`). Every `unsafe` block is a single FFI call on a file
//! descriptor the caller borrows or that the call just returned; none dereferences memory.
//!
//! The namespace window lives in [`sockets_in_netns`]: `setns(target)`, `socket()` × n,
//! `setns(home)`. Nothing inside the window allocates, formats, logs, awaits or can panic, and
//! a drop guard returns the thread home even on unwind. If returning home fails, the process
//! aborts: a thread stranded in a pod's network namespace would silently send the agent's own
//! traffic (API calls, DNS) from that pod.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

/// What `socket(2)` is asked for, as raw `c_int`s (`SOCK_CLOEXEC` is always added), and the
/// filesystem uid the socket is made with: netfilter's owner match (`-m owner --uid-owner`,
/// nft `meta skuid`) reads the fsuid of the thread that called `socket()`, so a socket made
/// with a service-mesh proxy's uid passes the mesh's redirect rules as the proxy's own
/// upstream connections do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct RawSocketKind {
    pub domain: i32,
    pub ty: i32,
    pub protocol: i32,
    pub fsuid: Option<u32>,
}

/// Why a batch could not be (fully) created. The thread is home again in every case.
#[derive(Debug)]
pub(crate) enum WindowError {
    /// `setns(target)` failed: the thread never left home.
    Enter(io::Error),
    /// `socket()` failed part way; the sockets already made were closed.
    Socket(io::Error),
    /// The thread could not take the requested fsuid (no CAP_SETUID): no socket was made.
    Identity { fsuid: u32 },
}

#[cfg(target_os = "linux")]
mod imp {
    use std::fs::File;
    use std::io;
    use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
    use std::os::unix::fs::MetadataExt;

    use super::{RawSocketKind, WindowError};

    /// Returns the calling thread to `home` when dropped, including during unwinding.
    struct ReturnHome<'a> {
        home: BorrowedFd<'a>,
    }

    impl Drop for ReturnHome<'_> {
        fn drop(&mut self) {
            // SAFETY: FFI call with a live borrowed fd; only changes this thread's netns.
            let rc = unsafe { libc::setns(self.home.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                // Cannot go home: every later socket or connection of this thread would
                // originate in a pod. Abort rather than continue in the wrong namespace.
                std::process::abort();
            }
        }
    }

    /// This thread's filesystem uid, set for one window and restored when dropped (also when
    /// unwinding). fsuid is per thread: only the hop thread that owns the window changes it.
    struct FsuidGuard {
        previous: libc::uid_t,
    }

    /// `setfsuid(-1)` changes nothing and returns the current fsuid.
    fn current_fsuid() -> libc::uid_t {
        // SAFETY: FFI call with an integer argument; -1 is never a valid uid, so no change.
        unsafe { libc::setfsuid(libc::uid_t::MAX) as libc::uid_t }
    }

    impl FsuidGuard {
        /// Sets the fsuid, or `None` when the kernel refused it (setfsuid reports failure
        /// only by leaving the fsuid as it was).
        fn take(fsuid: u32) -> Option<Self> {
            // SAFETY: FFI call with an integer argument; changes only this thread's fsuid.
            let previous = unsafe { libc::setfsuid(fsuid) } as libc::uid_t;
            if current_fsuid() == fsuid {
                Some(Self { previous })
            } else {
                None
            }
        }
    }

    impl Drop for FsuidGuard {
        fn drop(&mut self) {
            // SAFETY: FFI call with an integer argument; changes only this thread's fsuid.
            unsafe { libc::setfsuid(self.previous) };
            if current_fsuid() != self.previous {
                // A hop thread that kept a pod proxy's uid would make every later socket
                // with it: abort rather than continue with the wrong identity.
                std::process::abort();
            }
        }
    }

    pub(crate) fn sockets_in_netns(
        home: BorrowedFd<'_>,
        target: BorrowedFd<'_>,
        kind: RawSocketKind,
        count: usize,
    ) -> Result<Vec<OwnedFd>, WindowError> {
        // Allocated before entering: the window itself does not allocate.
        let mut raw: Vec<RawFd> = vec![-1; count];
        let mut created = 0usize;
        let mut failure: Option<io::Error> = None;
        {
            // SAFETY: FFI call with a live borrowed fd; only changes this thread's netns.
            if unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(WindowError::Enter(io::Error::last_os_error()));
            }
            let return_home = ReturnHome { home };
            // Declared after `return_home`, so dropped (fsuid restored) before going home.
            let identity = match kind.fsuid {
                Some(fsuid) => match FsuidGuard::take(fsuid) {
                    Some(guard) => Some(guard),
                    None => {
                        drop(return_home);
                        return Err(WindowError::Identity { fsuid });
                    }
                },
                None => None,
            };
            for slot in raw.iter_mut() {
                // SAFETY: FFI call with plain integer arguments.
                let fd = unsafe {
                    libc::socket(kind.domain, kind.ty | libc::SOCK_CLOEXEC, kind.protocol)
                };
                if fd < 0 {
                    failure = Some(io::Error::last_os_error());
                    break;
                }
                *slot = fd;
                created += 1;
            }
            drop(identity);
            drop(return_home);
        }
        // Home again: from here on anything may fail or panic without consequence for the
        // thread's namespace.
        let owned: Vec<OwnedFd> = raw
            .into_iter()
            .take(created)
            // SAFETY: each fd was just returned by socket(2) and is owned by nobody else.
            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
            .collect();
        match failure {
            None => Ok(owned),
            Some(source) => Err(WindowError::Socket(source)),
        }
    }

    pub(crate) fn socket_netns_inode(socket: BorrowedFd<'_>) -> io::Result<u64> {
        // SAFETY: FFI call with a live borrowed fd; SIOCGSKNS takes no argument pointer and
        // returns a new fd that we own.
        let ns_fd = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGSKNS as _) };
        if ns_fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the ioctl returned a fresh fd owned by nobody else.
        let ns_file = File::from(unsafe { OwnedFd::from_raw_fd(ns_fd) });
        Ok(ns_file.metadata()?.ino())
    }

    /// Moves the calling thread into a new, empty network namespace. Tests only: the thread
    /// must be a throwaway `std::thread` that exits right after.
    #[cfg(test)]
    pub(crate) fn unshare_netns_on_this_thread() -> io::Result<()> {
        // SAFETY: FFI call with an integer flag; only changes this thread's netns.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Enters `target` on the calling thread and stays there. Tests only (to prove the
    /// factory's own guard), on a throwaway thread.
    #[cfg(test)]
    pub(crate) fn enter_netns_on_this_thread(target: BorrowedFd<'_>) -> io::Result<()> {
        // SAFETY: FFI call with a live borrowed fd; only changes this thread's netns.
        if unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The drop guard alone, for a test that panics inside a window on a throwaway thread.
    #[cfg(test)]
    pub(crate) fn with_return_home_guard<R>(home: BorrowedFd<'_>, body: impl FnOnce() -> R) -> R {
        let _return_home = ReturnHome { home };
        body()
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::io;
    use std::os::fd::{BorrowedFd, OwnedFd};

    use super::{RawSocketKind, WindowError};

    fn unsupported() -> io::Error {
        io::Error::new(io::ErrorKind::Unsupported, "network namespaces need Linux")
    }

    pub(crate) fn sockets_in_netns(
        _home: BorrowedFd<'_>,
        _target: BorrowedFd<'_>,
        _kind: RawSocketKind,
        _count: usize,
    ) -> Result<Vec<OwnedFd>, WindowError> {
        Err(WindowError::Enter(unsupported()))
    }

    pub(crate) fn socket_netns_inode(_socket: BorrowedFd<'_>) -> io::Result<u64> {
        Err(unsupported())
    }
}

/// Enters `target`, creates `count` sockets of `kind`, returns to `home`. Aborts the process
/// if it cannot return. On a socket failure the sockets already made are closed.
pub(crate) fn sockets_in_netns(
    home: BorrowedFd<'_>,
    target: BorrowedFd<'_>,
    kind: RawSocketKind,
    count: usize,
) -> Result<Vec<OwnedFd>, WindowError> {
    imp::sockets_in_netns(home, target, kind, count)
}

/// The open-files limit before and after [`raise_nofile_limit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NofileLimit {
    pub soft_before: u64,
    pub soft: u64,
    pub hard: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit: container runtimes hand out a soft limit
/// of 1,024, which a node with many source pods exhausts (each pinned netns is a descriptor).
pub fn raise_nofile_limit() -> io::Result<NofileLimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit through a valid pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let soft_before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads one rlimit through a valid pointer.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        limit = raised;
    }
    Ok(NofileLimit {
        soft_before,
        soft: limit.rlim_cur,
        hard: limit.rlim_max,
    })
}

/// The inode of the network namespace a socket belongs to (`SIOCGSKNS` + `fstat`).
pub(crate) fn socket_netns_inode(socket: BorrowedFd<'_>) -> io::Result<u64> {
    imp::socket_netns_inode(socket)
}

#[cfg(all(test, target_os = "linux"))]
pub(crate) use imp::{
    enter_netns_on_this_thread, unshare_netns_on_this_thread, with_return_home_guard,
};
