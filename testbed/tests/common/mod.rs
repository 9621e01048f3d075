//! Helpers shared by the testbed's integration tests: root check, connecting and querying DNS
//! from inside a pod's netns (setns on a short-lived thread of its own, which exits right after,
//! so no test thread is ever left in a pod's netns), and teardown checks.
#![allow(dead_code)] // each test binary uses a different subset

use std::{
    fs,
    io::{self, ErrorKind},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket},
    os::fd::AsFd as _,
    path::{Path, PathBuf},
    time::Duration,
};

use testbed::{PodHandle, Scenario, Testbed};

/// Whether we are root; prints why the test is skipped otherwise.
pub fn root_or_skip(test: &str) -> bool {
    let root = rustix::process::geteuid().is_root();
    if !root {
        eprintln!("SKIP {test}: the testbed needs root (CI runs as root)");
    }
    root
}

/// Parses and starts a scenario given as YAML.
pub fn start(yaml: &str) -> Testbed {
    let scenario = Scenario::from_yaml(yaml, "<test>").expect("scenario parses");
    Testbed::start(&scenario).expect("testbed starts")
}

/// Runs `f` on a fresh thread that has entered `pod`'s netns; the thread ends with `f`.
pub fn in_pod<T: Send + 'static>(
    pod: &PodHandle,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let path: PathBuf = pod.netns_path.clone().expect("pod has a netns");
    std::thread::spawn(move || {
        let ns = fs::File::open(&path)?;
        rustix::thread::move_into_link_name_space(
            ns.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )?;
        f()
    })
    .join()
    .expect("pod thread panicked")
}

/// TCP connect from `pod` to `to:port`.
pub fn connect(pod: &PodHandle, to: Ipv4Addr, port: u16, timeout: Duration) -> io::Result<()> {
    let addr = SocketAddr::V4(SocketAddrV4::new(to, port));
    in_pod(pod, move || {
        TcpStream::connect_timeout(&addr, timeout).map(drop)
    })
}

/// Short outcome names, as the agent will classify them.
pub fn outcome(r: &io::Result<()>) -> String {
    match r {
        Ok(()) => "open".into(),
        Err(e) if e.kind() == ErrorKind::TimedOut || e.kind() == ErrorKind::WouldBlock => {
            "timeout".into()
        }
        Err(e) => match e.raw_os_error() {
            Some(111) => "refused".into(),
            Some(113) => "ehostunreach".into(),
            Some(101) => "enetunreach".into(),
            _ => format!("error {e}"),
        },
    }
}

/// UDP datagram from `pod` to `to:port` on a connected socket; the reply, if any.
pub fn udp_echo(
    pod: &PodHandle,
    to: Ipv4Addr,
    port: u16,
    timeout: Duration,
) -> io::Result<Vec<u8>> {
    in_pod(pod, move || {
        let s = UdpSocket::bind("0.0.0.0:0")?;
        s.connect(SocketAddrV4::new(to, port))?;
        s.set_read_timeout(Some(timeout))?;
        s.send(b"netreach-echo")?;
        let mut buf = [0u8; 512];
        let n = s.recv(&mut buf)?;
        Ok(buf[..n].to_vec())
    })
}

/// The answer to a DNS A query.
#[derive(Debug, PartialEq, Eq)]
pub enum Dns {
    /// RCODE and the A records.
    Answer(u8, Vec<Ipv4Addr>),
    /// No reply in time.
    Timeout,
}

/// One DNS A query for `name` over UDP from `pod` to `server:53`.
pub fn dns_query(
    pod: &PodHandle,
    server: Ipv4Addr,
    name: &str,
    timeout: Duration,
) -> io::Result<Dns> {
    let name = name.trim_end_matches('.').to_string();
    in_pod(pod, move || {
        let id: u16 = 0x4e52;
        let mut q = Vec::new();
        q.extend_from_slice(&id.to_be_bytes());
        q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        for label in name.split('.') {
            q.push(u8::try_from(label.len()).expect("short label"));
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        let s = UdpSocket::bind("0.0.0.0:0")?;
        s.connect(SocketAddrV4::new(server, 53))?;
        s.set_read_timeout(Some(timeout))?;
        s.send(&q)?;
        let mut buf = [0u8; 1500];
        let n = match s.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Ok(Dns::Timeout);
            }
            Err(e) => return Err(e),
        };
        let r = &buf[..n];
        assert!(
            n >= 12 && r[0..2] == id.to_be_bytes(),
            "a reply to our query"
        );
        let rcode = r[3] & 0x0f;
        let ancount = u16::from_be_bytes([r[6], r[7]]);
        // Skip the question, then read answers (names are compressed pointers or labels).
        let mut i = 12;
        while r[i] != 0 {
            i += 1 + usize::from(r[i]);
        }
        i += 5;
        let mut ips = Vec::new();
        for _ in 0..ancount {
            if r[i] & 0xc0 == 0xc0 {
                i += 2;
            } else {
                while r[i] != 0 {
                    i += 1 + usize::from(r[i]);
                }
                i += 1;
            }
            let rtype = u16::from_be_bytes([r[i], r[i + 1]]);
            let rdlen = usize::from(u16::from_be_bytes([r[i + 8], r[i + 9]]));
            i += 10;
            if rtype == 1 && rdlen == 4 {
                ips.push(Ipv4Addr::new(r[i], r[i + 1], r[i + 2], r[i + 3]));
            }
            i += rdlen;
        }
        Ok(Dns::Answer(rcode, ips))
    })
}

/// Whether process `pid` still exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        let state = s
            .rsplit_once(')')
            .map(|(_, r)| r.trim_start().chars().next());
        !matches!(state, Some(Some('Z' | 'X')))
    })
}

/// Asserts that nothing of run `prefix` and none of `pids` is left.
pub fn assert_gone(prefix: &str, pids: &[u32]) {
    let residue = testbed::residue(prefix);
    assert!(residue.is_empty(), "left after teardown: {residue:?}");
    for &pid in pids {
        assert!(!alive(pid), "process {pid} survived teardown");
    }
    let etc = Path::new(testbed::ETC_NETNS_DIR);
    if let Ok(entries) = fs::read_dir(etc) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(
                !name.starts_with(&format!("{prefix}-")),
                "{name} left in /etc/netns"
            );
        }
    }
}

/// Every PID of a testbed's processes.
pub fn all_pids(tb: &Testbed) -> Vec<u32> {
    let mut pids = Vec::new();
    for p in tb.pods() {
        pids.push(p.pause_pid);
        pids.extend(p.app_pid);
        pids.extend(p.conmon_pid);
    }
    pids.extend(tb.dns().map(|d| d.pid));
    pids
}
