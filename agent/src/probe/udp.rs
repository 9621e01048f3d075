//! UDP probe on a connected socket that already lives in the source pod's netns.
//!
//! Data flow: factory socket (non-blocking) -> `IP_RECVERR` on (without it host-unreachable
//! is ignored on UDP) -> `connect()` (so ICMP errors are reported at all) -> send a
//! protocol-aware payload (a real DNS query on port 53, a short text otherwise) -> tokio
//! `AsyncFd` waits for readable/error, bounded by the timeout -> a datagram is `open`,
//! `ECONNREFUSED` `refused`, `EHOSTUNREACH`/`ENETUNREACH` `unreachable` (ICMP details from the
//! error queue), silence `open_or_filtered`.
//!
//! Responders rate-limit ICMP per destination (a burst of ~6, then 1/s): a closed port probed
//! back to back goes silent, so keep ~1 s between probes of one pair (see
//! [`super::PairSpacing`]).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use socket2::Socket;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tracing::{debug, warn};

use super::errqueue;
use super::outcome::{NotProbedReason, Observation, Outcome, Transport, classify_errno};
use super::{Error, Result};

/// The DNS port: probes send a real query there.
pub const DNS_PORT: u16 = 53;
/// Payload for ports without a known protocol (echo servers send it back).
const GENERIC_PAYLOAD: &[u8] = b"netreach probe\n";
/// The name the DNS payload asks for: served locally by every cluster DNS in the default
/// cluster domain, so the answer never waits on an upstream.
const DNS_PROBE_NAME: &str = "kubernetes.default.svc.cluster.local";

enum Exchange {
    Reply(usize),
    Failed(io::Error),
    Silence,
}

pub(super) async fn probe(
    socket: Socket,
    target: SocketAddr,
    timeout: Duration,
) -> Result<Observation> {
    if let Err(error) = errqueue::enable_recv_err(socket.as_fd(), target.is_ipv6()) {
        warn!(%error, "IP_RECVERR unavailable: host-unreachable will look like silence");
    }
    let started = Instant::now();
    if let Err(error) = socket.connect(&target.into()) {
        let latency = started.elapsed();
        return Ok(observe(
            Exchange::Failed(error),
            socket.as_fd(),
            latency,
            timeout,
        ));
    }
    let socket = UdpSocket::from_std(socket.into()).map_err(|source| Error::Runtime { source })?;
    let payload = payload_for(target.port());
    let exchange = tokio::time::timeout(timeout, async {
        // A fresh UDP socket has room in its send buffer: the send completes at once.
        match socket.send(&payload).await {
            Ok(_) => wait_reply(&socket).await,
            Err(error) => Exchange::Failed(error),
        }
    })
    .await
    .unwrap_or(Exchange::Silence);
    let latency = started.elapsed();
    let mut observation = observe(exchange, socket.as_fd(), latency, timeout);
    observation.expects_reply = target.port() == DNS_PORT;
    Ok(observation)
}

/// Waits for a datagram or a socket error (an ICMP error surfaces as `EPOLLERR`, not as
/// readability, hence the error interest).
async fn wait_reply(socket: &UdpSocket) -> Exchange {
    let mut buffer = [0u8; 512];
    loop {
        if let Err(error) = socket.ready(Interest::READABLE | Interest::ERROR).await {
            return Exchange::Failed(error);
        }
        match socket.try_recv(&mut buffer) {
            Ok(bytes) => return Exchange::Reply(bytes),
            // Readiness cleared by try_recv; wait again.
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                if let Ok(Some(error)) = socket.take_error() {
                    return Exchange::Failed(error);
                }
            }
            Err(error) => return Exchange::Failed(error),
        }
    }
}

fn observe(
    exchange: Exchange,
    socket: BorrowedFd<'_>,
    latency: Duration,
    timeout: Duration,
) -> Observation {
    match exchange {
        Exchange::Reply(bytes) => {
            Observation::new(Outcome::Open, latency, format!("{bytes}-byte reply"))
        }
        Exchange::Silence => Observation::new(
            Outcome::OpenOrFiltered,
            latency,
            format!("no reply and no ICMP error within {timeout:?}"),
        ),
        Exchange::Failed(error) => match error.raw_os_error() {
            Some(errno) => {
                let icmp = errqueue::read_icmp_error(socket).unwrap_or_else(|error| {
                    debug!(%error, "error queue unreadable");
                    None
                });
                classify_errno(Transport::Udp, errno, icmp, latency)
            }
            None => Observation::not_probed(NotProbedReason::ProbeError, error.to_string()),
        },
    }
}

/// What to send to `port`: a DNS query on 53, a short text elsewhere.
pub fn payload_for(port: u16) -> Vec<u8> {
    if port == DNS_PORT {
        dns_query(DNS_PROBE_NAME, query_id())
    } else {
        GENERIC_PAYLOAD.to_vec()
    }
}

/// A standard recursive query for the A record of `name` (RFC 1035 §4.1).
pub fn dns_query(name: &str, id: u16) -> Vec<u8> {
    let mut query = Vec::with_capacity(12 + name.len() + 6);
    query.extend_from_slice(&id.to_be_bytes());
    query.extend_from_slice(&[0x01, 0x00]); // RD
    query.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // 1 question
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        let label = &label.as_bytes()[..label.len().min(63)];
        query.push(label.len() as u8);
        query.extend_from_slice(label);
    }
    query.push(0);
    query.extend_from_slice(&[0, 1, 0, 1]); // A, IN
    query
}

fn query_id() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos ^ (nanos >> 16)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_payload_is_a_wire_format_query() {
        let query = dns_query("kubernetes.default.svc.cluster.local.", 0xbeef);
        assert_eq!(&query[..4], &[0xbe, 0xef, 0x01, 0x00]);
        assert_eq!(&query[4..6], &[0, 1]);
        assert_eq!(query[12], 10);
        assert_eq!(&query[13..23], b"kubernetes");
        assert_eq!(&query[query.len() - 5..], &[0, 0, 1, 0, 1]);
        assert_eq!(payload_for(80), GENERIC_PAYLOAD);
        assert_eq!(payload_for(53)[12], 10);
    }
}
