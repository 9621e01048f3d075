//! Reading a file from inside a pod, as the pod sees it, without letting the pod point the
//! privileged agent anywhere else.
//!
//! Data flow: `/proc/PID/root` opened as a directory handle -> `openat2(RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS)` of the path relative to it (absolute symlinks and `..` stay inside
//! the pod's root; `/proc/self/root`-style magic links are refused), `O_NONBLOCK` (a FIFO
//! cannot hang the open) -> `fstat`: regular files only (`/dev/zero`, FIFOs, sockets and
//! directories are refused before any read) -> at most `limit` bytes read (one more to tell
//! an oversized file). Blocking: callers on the async runtime wrap it in `spawn_blocking` with
//! a timeout (a regular file on a hung filesystem can still block a read).

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};

/// The most a pod file may hold (resolv.conf is a few hundred bytes).
pub const MAX_POD_FILE_BYTES: usize = 64 * 1024;

/// Why a pod file was not read.
#[derive(Debug, thiserror::Error)]
pub enum PodFileError {
    #[error("{root}: cannot open the pod's root: {source}")]
    Root {
        root: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} (inside {root}): {source}")]
    Open {
        root: PathBuf,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} (inside {root}) is a {kind}, not a regular file")]
    NotRegular {
        root: PathBuf,
        path: PathBuf,
        kind: &'static str,
    },
    #[error("{path} (inside {root}) is larger than {limit} bytes")]
    TooLarge {
        root: PathBuf,
        path: PathBuf,
        limit: usize,
    },
    #[error("{path} (inside {root}): read failed: {source}")]
    Read {
        root: PathBuf,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `path` (relative to the pod's `/`, e.g. `etc/resolv.conf`) as process `pid` sees it,
/// through `/proc/PID/root`.
pub fn read_pod_file(pid: u32, path: &Path, limit: usize) -> Result<Vec<u8>, PodFileError> {
    read_in_root(Path::new(&format!("/proc/{pid}/root")), path, limit)
}

/// [`read_pod_file`] below any directory taken as the root.
pub fn read_in_root(root: &Path, path: &Path, limit: usize) -> Result<Vec<u8>, PodFileError> {
    let root_fd = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| PodFileError::Root {
        root: root.to_path_buf(),
        source: errno.into(),
    })?;
    let relative = path.strip_prefix("/").unwrap_or(path);
    let open_error = |errno: rustix::io::Errno| PodFileError::Open {
        root: root.to_path_buf(),
        path: path.to_path_buf(),
        source: errno.into(),
    };
    let stat_error = |errno: rustix::io::Errno| PodFileError::Read {
        root: root.to_path_buf(),
        path: path.to_path_buf(),
        source: errno.into(),
    };
    // Resolved to an O_PATH handle first: a device or FIFO is looked at, never opened (an open
    // of a device can have side effects).
    let handle: OwnedFd = rustix::fs::openat2(
        &root_fd,
        relative,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(open_error)?;
    let stat = rustix::fs::fstat(&handle).map_err(stat_error)?;
    let kind = FileType::from_raw_mode(stat.st_mode);
    if kind != FileType::RegularFile {
        return Err(PodFileError::NotRegular {
            root: root.to_path_buf(),
            path: path.to_path_buf(),
            kind: type_name(kind),
        });
    }
    // Re-opened for reading through our own descriptor, so it is the inode just checked.
    let file: OwnedFd = rustix::fs::open(
        format!("/proc/self/fd/{}", handle.as_raw_fd()),
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(open_error)?;
    let reopened = rustix::fs::fstat(&file).map_err(stat_error)?;
    if (reopened.st_dev, reopened.st_ino) != (stat.st_dev, stat.st_ino) {
        return Err(PodFileError::NotRegular {
            root: root.to_path_buf(),
            path: path.to_path_buf(),
            kind: "file replaced while being opened",
        });
    }
    let mut contents = Vec::new();
    std::fs::File::from(file)
        .take(limit as u64 + 1)
        .read_to_end(&mut contents)
        .map_err(|source| PodFileError::Read {
            root: root.to_path_buf(),
            path: path.to_path_buf(),
            source,
        })?;
    if contents.len() > limit {
        return Err(PodFileError::TooLarge {
            root: root.to_path_buf(),
            path: path.to_path_buf(),
            limit,
        });
    }
    Ok(contents)
}

fn type_name(kind: FileType) -> &'static str {
    match kind {
        FileType::RegularFile => "regular file",
        FileType::Directory => "directory",
        FileType::Symlink => "symlink",
        FileType::Fifo => "FIFO",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        _ => "special file",
    }
}

#[cfg(test)]
mod tests;
