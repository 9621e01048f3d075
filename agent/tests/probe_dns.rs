//! DNS probes for real: hickory-resolver with sockets from the src pod's netns, against a tiny
//! authoritative responder in the dst pod's netns (made by the same factory): resolved via the
//! pod's search list, NXDOMAIN, SERVFAIL, and a timeout when the router drops DNS. The
//! responder records who asked, proving the queries left from the pod's IP. Needs root and nft.

#[macro_use]
mod netns_support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use netns_support::{DST_IP, SRC_IP, Topology, ip, tool_exists};
use netreach::netns::{NetnsHandle, SocketFactory};
use netreach::probe::{DnsConfig, Outcome, Prober};
use parking_lot::Mutex;
use socket2::{Domain, Type};
use tokio::net::UdpSocket;

const TIMEOUT: Duration = Duration::from_secs(2);
const SHORT: Duration = Duration::from_millis(300);
const WEB_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 250, 18);

/// The pod's resolv.conf, as the kubelet would write it (cluster domain `nrnt.test`).
fn pod_resolv_conf() -> String {
    format!(
        "search ns1.svc.nrnt.test svc.nrnt.test nrnt.test\nnameserver {DST_IP}\noptions ndots:5\n"
    )
}

struct DnsLab {
    topology: Topology,
    prober: Prober,
    src: NetnsHandle,
    config: DnsConfig,
    askers: Arc<Mutex<Vec<IpAddr>>>,
}

impl DnsLab {
    async fn new() -> Self {
        let topology = Topology::new();
        let factory = SocketFactory::start().expect("lab setup");
        let dst = NetnsHandle::open(topology.dst.path()).expect("lab setup");
        let src = NetnsHandle::open(topology.src.path()).expect("lab setup");
        let askers = Arc::new(Mutex::new(Vec::new()));
        spawn_responder(&factory, &dst, askers.clone()).await;
        let config =
            DnsConfig::from_resolv_conf(pod_resolv_conf().as_bytes(), "test").expect("lab setup");
        DnsLab {
            topology,
            prober: Prober::new(factory),
            src,
            config,
            askers,
        }
    }

    async fn lookup(&self, name: &str, timeout: Duration) -> netreach::probe::Observation {
        self.prober
            .probe_dns(&self.src, &self.config, name, timeout)
            .await
            .expect("lab setup")
    }
}

/// Answers `web.*` with an A record, `fail.*` with SERVFAIL, everything else NXDOMAIN.
async fn spawn_responder(
    factory: &SocketFactory,
    netns: &NetnsHandle,
    askers: Arc<Mutex<Vec<IpAddr>>>,
) {
    let socket = factory
        .socket(netns, Domain::IPV4, Type::DGRAM, None)
        .await
        .expect("lab setup");
    socket
        .bind(&SocketAddr::new(ip(DST_IP), 53).into())
        .expect("lab setup");
    socket.set_nonblocking(true).expect("lab setup");
    let socket = UdpSocket::from_std(socket.into()).expect("lab setup");
    tokio::spawn(async move {
        let mut buffer = [0u8; 1500];
        while let Ok((len, peer)) = socket.recv_from(&mut buffer).await {
            askers.lock().push(peer.ip());
            if let Some(reply) = answer(&buffer[..len]) {
                let _ = socket.send_to(&reply, peer).await;
            }
        }
    });
}

fn answer(query: &[u8]) -> Option<Vec<u8>> {
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*query.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    let question_end = at + 4;
    query.get(at..question_end)?;
    let (rcode, address) = match labels.first().map(String::as_str) {
        Some("web") => (0u8, Some(WEB_IP)),
        Some("fail") => (2, None),
        _ => (3, None),
    };
    let mut reply = query[..question_end].to_vec();
    reply[2] = 0x80 | 0x04 | (query[2] & 0x01); // QR, AA, RD copied
    reply[3] = 0x80 | rcode; // RA
    reply[4..12].copy_from_slice(&[0, 1, 0, u8::from(address.is_some()), 0, 0, 0, 0]);
    if let Some(address) = address {
        reply.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4]);
        reply.extend_from_slice(&address.octets());
    }
    Some(reply)
}

#[tokio::test]
async fn short_name_resolves_through_the_pod_search_list_from_the_pod_ip() {
    require_root!();
    let lab = DnsLab::new().await;
    let observed = lab.lookup("web", TIMEOUT).await;
    assert_eq!(observed.outcome, Outcome::Resolved, "{observed:?}");
    assert_eq!(observed.answers, vec![IpAddr::V4(WEB_IP)]);
    assert!(
        observed.detail.contains("web.ns1.svc.nrnt.test."),
        "{}",
        observed.detail
    );
    let fqdn = lab.lookup("web.svc.nrnt.test.", TIMEOUT).await;
    assert_eq!(fqdn.outcome, Outcome::Resolved, "{fqdn:?}");
    let askers = lab.askers.lock().clone();
    assert!(!askers.is_empty());
    assert!(
        askers.iter().all(|asker| *asker == IpAddr::V4(SRC_IP)),
        "{askers:?}"
    );
}

#[tokio::test]
async fn nxdomain_and_servfail() {
    require_root!();
    let lab = DnsLab::new().await;
    let observed = lab.lookup("missing.nrnt.test.", TIMEOUT).await;
    assert_eq!(observed.outcome, Outcome::Nxdomain, "{observed:?}");
    assert!(observed.answers.is_empty());
    // One FQDN query: one socket.
    assert!(
        observed.detail.contains("(1 socket "),
        "{}",
        observed.detail
    );

    let observed = lab.lookup("fail.nrnt.test.", TIMEOUT).await;
    assert_eq!(observed.outcome, Outcome::Servfail, "{observed:?}");
}

#[tokio::test]
async fn dns_blocked_by_a_drop_times_out() {
    require_root!();
    if !tool_exists("nft") {
        eprintln!("skipped: needs nft (Debian package nftables)");
        return;
    }
    let lab = DnsLab::new().await;
    lab.topology.router.nft(
        "table ip nrnt {
            chain forward {
                type filter hook forward priority 0; policy accept;
                udp dport 53 drop
                tcp dport 53 drop
            }
        }",
    );
    let observed = lab.lookup("web.svc.nrnt.test.", SHORT).await;
    assert_eq!(observed.outcome, Outcome::DnsTimeout, "{observed:?}");
    assert!(
        observed.latency < TIMEOUT,
        "did not hang: {:?}",
        observed.latency
    );
    assert!(lab.askers.lock().is_empty());
}
