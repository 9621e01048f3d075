//! TCP connect probe on a socket that already lives in the source pod's netns.
//!
//! Data flow: factory socket (non-blocking) -> `IP_RECVERR` on -> `connect()` (`EINPROGRESS`)
//! -> already settled? (`getpeername`, then `SO_ERROR`) -> otherwise tokio waits for
//! writable/error, bounded by the timeout -> `SO_ERROR` -> on failure the error queue names the
//! ICMP message and its sender -> [`classify_errno`].
//!
//! The "already settled" check: between pods of one node (veth pairs) the kernel runs the whole
//! handshake, or the RST, inside `connect()` itself, which still says `EINPROGRESS`. Two cheap
//! syscalls then spare the runtime registration (two `epoll_ctl`), the timer and the wake-up,
//! which cost more than the probe's own connect there; when the answer has to cross a real
//! network they add well under a microsecond.
//! The socket stays ours the whole time (no consuming `connect` future), so the error queue is
//! read from the same fd. A successful connection is closed with `SO_LINGER 0` (RST): no
//! TIME_WAIT left in the pod's netns, so probes never eat the pod's ephemeral ports.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use socket2::{SockRef, Socket};
use tokio::io::Interest;
use tokio::net::TcpStream;
use tracing::{debug, warn};

use super::errqueue;
use super::outcome::{NotProbedReason, Observation, Outcome, Transport, classify_errno};
use super::{Error, Result};

/// How a connect attempt ended.
enum Connect {
    Connected,
    Failed(io::Error),
    TimedOut,
}

/// The probe socket: still plain when connect finished at once, registered with the runtime
/// when it had to wait. Either way ours, for the error queue and linger.
enum Held {
    Plain(Socket),
    Registered(TcpStream),
}

impl AsFd for Held {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Held::Plain(socket) => socket.as_fd(),
            Held::Registered(stream) => stream.as_fd(),
        }
    }
}

pub(super) async fn probe(
    socket: Socket,
    target: SocketAddr,
    timeout: Duration,
) -> Result<Observation> {
    if let Err(error) = errqueue::enable_recv_err(socket.as_fd(), target.is_ipv6()) {
        warn!(%error, "IP_RECVERR unavailable: no ICMP details for this probe");
    }
    let started = Instant::now();
    let (ended, held) = match socket.connect(&target.into()) {
        Ok(()) => (Connect::Connected, Held::Plain(socket)),
        Err(error) if error.raw_os_error() == Some(libc::EINPROGRESS) => match settled(&socket) {
            Some(ended) => (ended, Held::Plain(socket)),
            None => {
                let stream = TcpStream::from_std(socket.into())
                    .map_err(|source| Error::Runtime { source })?;
                let ended = tokio::time::timeout(timeout, wait_connected(&stream))
                    .await
                    .unwrap_or(Connect::TimedOut);
                (ended, Held::Registered(stream))
            }
        },
        Err(error) => (Connect::Failed(error), Held::Plain(socket)),
    };
    let latency = started.elapsed();
    let observation = match ended {
        Connect::Connected => {
            if let Err(error) = SockRef::from(&held).set_linger(Some(Duration::ZERO)) {
                warn!(%error, "SO_LINGER 0 failed: the connection closes with FIN");
            }
            Observation::new(Outcome::Open, latency, "connected")
        }
        Connect::TimedOut => Observation::new(
            Outcome::Timeout,
            latency,
            format!(
                "no answer to the connection request (TCP SYN, SCTP INIT) within {timeout:?} (dropped?)"
            ),
        ),
        Connect::Failed(error) => match error.raw_os_error() {
            Some(errno) => {
                let icmp = errqueue::read_icmp_error(held.as_fd()).unwrap_or_else(|error| {
                    debug!(%error, "error queue unreadable");
                    None
                });
                classify_errno(Transport::Tcp, errno, icmp, latency)
            }
            None => Observation::not_probed(NotProbedReason::ProbeError, error.to_string()),
        },
    };
    Ok(observation)
}

/// Whether a connect that said `EINPROGRESS` has already ended: a peer address means
/// established (`getpeername` fails with `ENOTCONN` in `SYN_SENT` and after a failure), a
/// pending `SO_ERROR` means failed. `None`: still in progress, wait for it.
fn settled(socket: &Socket) -> Option<Connect> {
    if socket.peer_addr().is_ok() {
        return Some(Connect::Connected);
    }
    match socket.take_error() {
        Ok(Some(error)) => Some(Connect::Failed(error)),
        Ok(None) | Err(_) => None,
    }
}

/// Waits until the in-progress connect completes. A socket in SYN_SENT is never writable, so
/// writable without a pending error means connected; anything else is waited out (the caller
/// bounds the whole wait with the probe timeout).
async fn wait_connected(stream: &TcpStream) -> Connect {
    let interest = Interest::WRITABLE | Interest::ERROR;
    loop {
        let ready = match stream.ready(interest).await {
            Ok(ready) => ready,
            Err(error) => return Connect::Failed(error),
        };
        match stream.take_error() {
            Ok(Some(error)) | Err(error) => return Connect::Failed(error),
            Ok(None) if ready.is_writable() => return Connect::Connected,
            Ok(None) => {
                // Returning WouldBlock from try_io clears the stale readiness.
                let _ = stream.try_io(interest, || {
                    Err::<(), _>(io::Error::from(io::ErrorKind::WouldBlock))
                });
            }
        }
    }
}
