//! A pod's root filesystem built in a temporary directory, and a holder process chroot'ed into
//! it inside a test network namespace: what a container is to the agent (`/proc/PID/root` is
//! the directory built here, `/proc/PID/ns/net` the test namespace).
//!
//! The holder is `ip netns exec <ns> sh -c 'mount --bind …; exec chroot <root> /bin/sleep'`:
//! `ip netns exec` gives it a mount namespace of its own (mounts are slaves of the node's, so
//! nothing done there reaches the node), where the node's `/dev/zero` and `/proc` are
//! bind-mounted into the root as a container runtime would; they vanish with the process.
//! `/bin/sleep` and the libraries `ldd` lists are copied into the root so it runs there. On
//! drop the holder is killed by PID and the directory removed.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{Netns, run};

/// A directory standing in for a container's root, removed on drop.
#[derive(Debug)]
pub struct PodRoot {
    /// The root itself (absolute, no symlinks: what `/proc/PID/root` of the holder reads).
    pub dir: PathBuf,
}

impl PodRoot {
    /// `<tmp>/<name>` with `bin/sleep` (and its libraries), an empty `etc/`, `tmp/`, and the
    /// mount points `dev/zero` and `proc/` the holder binds the node's into.
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir()
            .canonicalize()
            .expect("temp dir")
            .join(name);
        let _ = fs::remove_dir_all(&dir);
        let root = PodRoot { dir };
        for sub in ["bin", "etc", "dev", "proc", "tmp"] {
            fs::create_dir_all(root.dir.join(sub)).expect("pod root dirs");
        }
        fs::write(root.dir.join("dev/zero"), "").expect("dev/zero mount point");
        root.copy_from_node(Path::new("/bin/sleep"));
        for library in libraries_of("/bin/sleep") {
            root.copy_from_node(&library);
        }
        root
    }

    /// `relative` below the root, as the node sees it.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.join(relative.trim_start_matches('/'))
    }

    /// Removes whatever is at `relative` (a file, link or FIFO; not a directory).
    pub fn clear(&self, relative: &str) {
        let _ = fs::remove_file(self.path(relative));
    }

    /// A regular file at `relative` (parents created), replacing what was there.
    pub fn write(&self, relative: &str, contents: &str) {
        let path = self.path(relative);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        self.clear(relative);
        fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// A symlink at `relative` pointing at `target` (taken literally, as the pod wrote it).
    pub fn symlink(&self, relative: &str, target: &str) {
        self.clear(relative);
        symlink(target, self.path(relative)).expect("symlink");
    }

    /// A FIFO at `relative` that nobody writes to.
    pub fn fifo(&self, relative: &str) {
        self.clear(relative);
        run(
            "mkfifo",
            &[self.path(relative).to_str().expect("utf-8 path")],
        );
    }

    /// A sparse file of `len` bytes at `relative` that starts with `head`: as large as asked,
    /// but it costs no disk.
    pub fn sparse(&self, relative: &str, head: &str, len: u64) {
        self.write(relative, head);
        let file = fs::OpenOptions::new()
            .write(true)
            .open(self.path(relative))
            .expect("open sparse file");
        file.set_len(len).expect("set_len");
    }

    fn copy_from_node(&self, path: &Path) {
        let to = self.path(path.to_str().expect("utf-8 path"));
        fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        fs::copy(path, &to).unwrap_or_else(|e| panic!("copy {}: {e}", path.display()));
    }
}

impl Drop for PodRoot {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The shared libraries (and loader) `ldd` lists for `binary`; none for a static one.
fn libraries_of(binary: &str) -> Vec<PathBuf> {
    let output = Command::new("ldd").arg(binary).output().expect("run ldd");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            line.split_whitespace()
                .find(|word| word.starts_with('/'))
                .map(PathBuf::from)
        })
        .filter(|path| path.is_file())
        .collect()
}

/// A process chroot'ed into a [`PodRoot`] in a test netns (a 300 s sleep), killed on drop.
#[derive(Debug)]
pub struct ChrootHolder {
    child: Child,
    pub pid: u32,
}

impl ChrootHolder {
    pub fn spawn(netns: &Netns, root: &PodRoot) -> Self {
        let root_dir = root.dir.to_str().expect("utf-8 path");
        let child = Command::new("ip")
            .args(["netns", "exec", &netns.name, "sh", "-c"])
            .arg(
                r#"mount --bind /dev/zero "$1/dev/zero" && mount --bind /proc "$1/proc" && exec chroot "$1" /bin/sleep 300"#,
            )
            .args(["sh", root_dir])
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the chroot holder");
        let pid = child.id();
        let mut holder = ChrootHolder { child, pid };
        // `ip netns exec`, `sh` and `chroot` each exec the next: the PID ends up as the sleep,
        // rooted in the pod root.
        for _ in 0..400 {
            if let Ok(Some(status)) = holder.child.try_wait() {
                let mut err = String::new();
                if let Some(mut stderr) = holder.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut stderr, &mut err);
                }
                panic!("the chroot holder exited ({status}): {err}");
            }
            let rooted = fs::read_link(format!("/proc/{pid}/root")).is_ok_and(|r| r == root.dir);
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if rooted && comm.trim() == "sleep" {
                return holder;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("the chroot holder {pid} did not reach its root within 2 s");
    }
}

impl Drop for ChrootHolder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
