//! Running the system tools the testbed drives (`ip`, `nft`, `dnsmasq`, `python3`), always
//! with a time bound, and turning failures into errors that carry the command and its stderr.

use std::{
    io::Read as _,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use crate::{Error, Result};

/// How long one setup or teardown command may take.
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// Paths of the programs the testbed runs.
#[derive(Debug, Clone)]
pub(crate) struct Tools {
    pub ip: PathBuf,
    pub nft: Option<PathBuf>,
    pub dnsmasq: Option<PathBuf>,
    pub python: PathBuf,
    pub sleep: PathBuf,
}

impl Tools {
    /// Finds the programs; `nft` and `dnsmasq` only when the scenario needs them.
    pub(crate) fn find(need_nft: bool, need_dnsmasq: bool) -> Result<Self> {
        let need = |program: &'static str, package: &'static str| {
            which(program).ok_or(Error::MissingProgram { program, package })
        };
        Ok(Tools {
            ip: need("ip", "iproute2")?,
            nft: if need_nft {
                Some(need("nft", "nftables")?)
            } else {
                which("nft")
            },
            dnsmasq: if need_dnsmasq {
                Some(need("dnsmasq", "dnsmasq-base")?)
            } else {
                None
            },
            python: Path::new("/usr/bin/python3")
                .is_file()
                .then(|| PathBuf::from("/usr/bin/python3"))
                .map_or_else(|| need("python3", "python3"), Ok)?,
            sleep: need("sleep", "coreutils")?,
        })
    }

    /// `nft`, or the error saying which package provides it.
    pub(crate) fn nft(&self) -> Result<&Path> {
        self.nft.as_deref().ok_or(Error::MissingProgram {
            program: "nft",
            package: "nftables",
        })
    }
}

/// Finds `program` in `PATH`, then in the usual system directories (root's sbin included).
pub(crate) fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// The command line, for errors.
pub(crate) fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` to completion within `timeout` and fails unless it exits 0.
pub(crate) fn run(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let out = output(cmd, timeout)?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(Error::Command {
            command: describe(cmd),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Runs `cmd` (stdin closed, stdout and stderr captured) within `timeout`, whatever its exit
/// status. On timeout the process is killed and reaped.
pub(crate) fn output(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io("spawn", cmd.get_program(), e))?;
    let readers = [
        child.stdout.take().map(|mut s| {
            thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = s.read_to_end(&mut buf);
                buf
            })
        }),
        child.stderr.take().map(|mut s| {
            thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = s.read_to_end(&mut buf);
                buf
            })
        }),
    ];
    let status = wait_timeout(&mut child, timeout);
    let [stdout, stderr] = readers.map(|r| r.and_then(|h| h.join().ok()).unwrap_or_default());
    match status {
        Some(status) => Ok(Output {
            status,
            stdout,
            stderr,
        }),
        None => Err(Error::Timeout {
            what: format!("`{}`", describe(cmd)),
            after: timeout,
        }),
    }
}

/// Waits for `child` up to `timeout`; on timeout kills and reaps it and returns `None`.
pub(crate) fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(100);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => {
                thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(10));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// Polls `check` until it returns `Some`, at most `timeout`.
pub(crate) fn poll<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(200);
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}
