//! Hostile pod roots, built in a temporary directory that stands in for `/proc/PID/root`:
//! every escape lands inside the root, and nothing that could hang or exhaust the agent is
//! read.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use super::*;

/// A fresh directory acting as a pod's root, with `etc/` and a `secret` of its own.
fn pod_root(test: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("netreach-podroot-{test}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(root.join("etc")).unwrap();
    root
}

const RESOLV: &str = "etc/resolv.conf";

#[test]
fn an_ordinary_file_is_read() {
    let root = pod_root("plain");
    fs::write(root.join(RESOLV), "nameserver 10.244.0.10\n").unwrap();
    let got = read_in_root(&root, Path::new(RESOLV), MAX_POD_FILE_BYTES).unwrap();
    assert_eq!(got, b"nameserver 10.244.0.10\n");
    // A leading slash is the pod's `/`, not the node's.
    let got = read_in_root(&root, Path::new("/etc/resolv.conf"), MAX_POD_FILE_BYTES).unwrap();
    assert_eq!(got, b"nameserver 10.244.0.10\n");
    fs::remove_dir_all(&root).unwrap();
}

/// Symlinks that would leave the pod's root on a plain open resolve inside it: the pod's copy
/// of `/etc/hostname` (or nothing), never the node's.
#[test]
fn symlinks_stay_inside_the_pod_root() {
    let node_hostname = fs::read("/etc/hostname").ok();
    for (name, target) in [
        ("absolute", "/etc/hostname"),
        ("dotdot", "../../../../../../etc/hostname"),
        ("proc-root", "/proc/1/root/etc/hostname"),
    ] {
        let root = pod_root(name);
        fs::write(root.join("etc/hostname"), "pod-copy\n").unwrap();
        symlink(target, root.join(RESOLV)).unwrap();
        let got = read_in_root(&root, Path::new(RESOLV), MAX_POD_FILE_BYTES);
        match got {
            Ok(bytes) => {
                assert_eq!(bytes, b"pod-copy\n", "{name}");
                assert_ne!(Some(bytes), node_hostname, "{name}: read the node's file");
            }
            // `/proc` does not exist inside this root: refused, which is as good.
            Err(error) => assert!(name == "proc-root", "{name}: {error}"),
        }
        fs::remove_dir_all(&root).unwrap();
    }
}

/// What could hang or exhaust the agent is refused before any read: a FIFO (the open does not
/// wait for a writer), a device, a directory, and a file over the limit (not read whole).
#[test]
fn fifos_devices_directories_and_huge_files_are_refused() {
    let root = pod_root("fifo");
    let status = std::process::Command::new("mkfifo")
        .arg(root.join(RESOLV))
        .status()
        .unwrap();
    assert!(status.success());
    let error = read_in_root(&root, Path::new(RESOLV), MAX_POD_FILE_BYTES).unwrap_err();
    assert!(
        matches!(error, PodFileError::NotRegular { kind: "FIFO", .. }),
        "{error}"
    );
    fs::remove_dir_all(&root).unwrap();

    // /dev/zero through a symlink: inside the root there is no /dev/zero; with the node's
    // bind-mounted in, it is a character device.
    let root = pod_root("zero");
    fs::create_dir_all(root.join("dev")).unwrap();
    symlink("/dev/zero", root.join(RESOLV)).unwrap();
    let error = read_in_root(&root, Path::new(RESOLV), MAX_POD_FILE_BYTES).unwrap_err();
    assert!(matches!(error, PodFileError::Open { .. }), "{error}");
    let error =
        read_in_root(Path::new("/"), Path::new("dev/zero"), MAX_POD_FILE_BYTES).unwrap_err();
    assert!(
        matches!(
            error,
            PodFileError::NotRegular {
                kind: "character device",
                ..
            }
        ),
        "{error}"
    );
    fs::remove_dir_all(&root).unwrap();

    let root = pod_root("dir");
    fs::create_dir(root.join(RESOLV)).unwrap();
    let error = read_in_root(&root, Path::new(RESOLV), MAX_POD_FILE_BYTES).unwrap_err();
    assert!(
        matches!(
            error,
            PodFileError::NotRegular {
                kind: "directory",
                ..
            }
        ),
        "{error}"
    );
    fs::remove_dir_all(&root).unwrap();

    let root = pod_root("huge");
    let huge = fs::File::create(root.join(RESOLV)).unwrap();
    huge.set_len(200 * 1024 * 1024).unwrap(); // sparse: costs no disk
    let error = read_in_root(&root, Path::new(RESOLV), MAX_POD_FILE_BYTES).unwrap_err();
    assert!(matches!(error, PodFileError::TooLarge { .. }), "{error}");
    fs::remove_dir_all(&root).unwrap();

    let root = pod_root("missing");
    let error = read_in_root(&root, Path::new(RESOLV), MAX_POD_FILE_BYTES).unwrap_err();
    assert!(matches!(error, PodFileError::Open { .. }), "{error}");
    assert!(error.to_string().contains("etc/resolv.conf"), "{error}");
    fs::remove_dir_all(&root).unwrap();
}
