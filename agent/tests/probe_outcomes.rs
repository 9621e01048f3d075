//! Every TCP and UDP outcome, produced for real: a prober in the "src" pod netns probes a "dst"
//! pod on another "node" through a router namespace, with nftables in dst (and the router)
//! playing the enforcement. Servers in dst are sockets made by the same factory. ICMP rate
//! limiting is off inside these namespaces, so each probe sees its ICMP. Needs root and nft.

#[macro_use]
mod netns_support;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use netns_support::{DST_IP, NO_ROUTE_IP, ROUTER_SRC_SIDE, Topology, ip, tool_exists};
use netreach::netns::{NetnsHandle, SocketFactory};
use netreach::probe::{Observation, Outcome, Prober};
use socket2::{Domain, Type};
use tokio::net::{TcpListener, UdpSocket};

const TCP_OPEN: u16 = 8080;
const TCP_CLOSED: u16 = 8081;
const TCP_RESET: u16 = 8082;
const TCP_DROP: u16 = 8083;
const TCP_ADMIN_PROHIBITED: u16 = 8084;
const TCP_HOST_UNREACHABLE: u16 = 8085;
const TCP_ROUTER_PROHIBITED: u16 = 8086;
const UDP_ECHO: u16 = 5300;
const UDP_CLOSED: u16 = 5301;
const UDP_DROP: u16 = 5302;
const UDP_ADMIN_PROHIBITED: u16 = 5303;
const UDP_HOST_UNREACHABLE: u16 = 5304;
const UDP_DNS: u16 = 53;

/// Short: only the drop/silence cases wait this long.
const SHORT: Duration = Duration::from_millis(300);
/// Generous: answered cases return in well under a millisecond; this only bounds a hang.
const GENEROUS: Duration = Duration::from_secs(3);

/// The topology, its rules and servers, and a prober with a handle on src.
struct Lab {
    topology: Topology,
    prober: Prober,
    src: NetnsHandle,
}

impl Lab {
    async fn new() -> Self {
        let topology = Topology::new();
        // Tests that need the rules check for nft themselves.
        if tool_exists("nft") {
            topology.dst.nft(&format!(
                "table ip nrnt {{
                    chain input {{
                        type filter hook input priority 0; policy accept;
                        tcp dport {TCP_RESET} reject with tcp reset
                        tcp dport {TCP_DROP} drop
                        tcp dport {TCP_ADMIN_PROHIBITED} reject with icmp type admin-prohibited
                        tcp dport {TCP_HOST_UNREACHABLE} reject with icmp type host-unreachable
                        udp dport {UDP_DROP} drop
                        udp dport {UDP_ADMIN_PROHIBITED} reject with icmp type admin-prohibited
                        udp dport {UDP_HOST_UNREACHABLE} reject with icmp type host-unreachable
                    }}
                }}"
            ));
            // Enforcement on the path (a node/router), answering from the router's address.
            topology.router.nft(&format!(
                "table ip nrnt {{
                    chain forward {{
                        type filter hook forward priority 0; policy accept;
                        tcp dport {TCP_ROUTER_PROHIBITED} reject with icmp type admin-prohibited
                    }}
                }}"
            ));
        }
        let factory = SocketFactory::start().expect("lab setup");
        let dst = NetnsHandle::open(topology.dst.path()).expect("lab setup");
        let src = NetnsHandle::open(topology.src.path()).expect("lab setup");
        for port in [
            TCP_OPEN,
            TCP_RESET,
            TCP_DROP,
            TCP_ADMIN_PROHIBITED,
            TCP_HOST_UNREACHABLE,
            TCP_ROUTER_PROHIBITED,
        ] {
            spawn_tcp_listener(&factory, &dst, port).await;
        }
        for port in [
            UDP_ECHO,
            UDP_DROP,
            UDP_ADMIN_PROHIBITED,
            UDP_HOST_UNREACHABLE,
            UDP_DNS,
        ] {
            spawn_udp_echo(&factory, &dst, port).await;
        }
        Lab {
            topology,
            prober: Prober::new(factory),
            src,
        }
    }

    async fn tcp(&self, to: IpAddr, port: u16, timeout: Duration) -> Observation {
        self.prober
            .probe_tcp(&self.src, SocketAddr::new(to, port), timeout)
            .await
            .expect("lab setup")
    }

    async fn udp(&self, port: u16, timeout: Duration) -> Observation {
        self.prober
            .probe_udp(&self.src, SocketAddr::new(ip(DST_IP), port), timeout)
            .await
            .expect("lab setup")
    }
}

/// A listener that accepts and drops connections, made in `netns` by the factory.
async fn spawn_tcp_listener(factory: &SocketFactory, netns: &NetnsHandle, port: u16) {
    let socket = factory
        .socket(netns, Domain::IPV4, Type::STREAM, None)
        .await
        .expect("lab setup");
    socket.set_reuse_address(true).expect("lab setup");
    socket
        .bind(&SocketAddr::new(ip(DST_IP), port).into())
        .expect("lab setup");
    socket.listen(64).expect("lab setup");
    socket.set_nonblocking(true).expect("lab setup");
    let listener = TcpListener::from_std(socket.into()).expect("lab setup");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
}

/// A UDP echo responder made in `netns` by the factory.
async fn spawn_udp_echo(factory: &SocketFactory, netns: &NetnsHandle, port: u16) {
    let socket = factory
        .socket(netns, Domain::IPV4, Type::DGRAM, None)
        .await
        .expect("lab setup");
    socket
        .bind(&SocketAddr::new(ip(DST_IP), port).into())
        .expect("lab setup");
    socket.set_nonblocking(true).expect("lab setup");
    let socket = UdpSocket::from_std(socket.into()).expect("lab setup");
    tokio::spawn(async move {
        let mut buffer = [0u8; 1500];
        while let Ok((len, peer)) = socket.recv_from(&mut buffer).await {
            let _ = socket.send_to(&buffer[..len], peer).await;
        }
    });
}

fn assert_icmp(observation: &Observation, kind: u8, code: u8, offender: IpAddr) {
    let icmp = observation
        .icmp
        .unwrap_or_else(|| panic!("no ICMP details: {observation:?}"));
    assert_eq!(
        (icmp.kind, icmp.code, icmp.offender),
        (kind, code, offender),
        "{observation:?}"
    );
}

fn nft_available() -> bool {
    let available = tool_exists("nft");
    if !available {
        eprintln!("skipped: needs nft (Debian package nftables)");
    }
    available
}

// === TCP ===

#[tokio::test]
async fn tcp_open() {
    require_root!();
    if !nft_available() {
        return;
    }
    let lab = Lab::new().await;
    let observed = lab.tcp(ip(DST_IP), TCP_OPEN, GENEROUS).await;
    assert_eq!(observed.outcome, Outcome::Open, "{observed:?}");
    assert_eq!((observed.errno, observed.icmp), (None, None));
    assert!(observed.latency < GENEROUS);
}

#[tokio::test]
async fn tcp_refused_by_a_closed_port_and_by_an_nft_reset() {
    require_root!();
    if !nft_available() {
        return;
    }
    let lab = Lab::new().await;
    for port in [TCP_CLOSED, TCP_RESET] {
        let observed = lab.tcp(ip(DST_IP), port, GENEROUS).await;
        assert_eq!(
            observed.outcome,
            Outcome::Refused,
            "port {port}: {observed:?}"
        );
        assert_eq!(observed.errno, Some(libc::ECONNREFUSED));
        // A RST leaves nothing in the error queue: distinguishable from ICMP.
        assert_eq!(observed.icmp, None, "port {port}");
        assert!(!observed.rejected_by_policy);
    }
}

#[tokio::test]
async fn tcp_timeout_when_dropped() {
    require_root!();
    if !nft_available() {
        return;
    }
    let lab = Lab::new().await;
    let observed = lab.tcp(ip(DST_IP), TCP_DROP, SHORT).await;
    assert_eq!(observed.outcome, Outcome::Timeout, "{observed:?}");
    assert!(observed.latency >= SHORT);
    assert!(observed.latency < GENEROUS, "did not hang");
    assert_eq!((observed.errno, observed.icmp), (None, None));
}

#[tokio::test]
async fn tcp_unreachable_admin_prohibited_is_rejected_by_policy() {
    require_root!();
    if !nft_available() {
        return;
    }
    let lab = Lab::new().await;
    let observed = lab.tcp(ip(DST_IP), TCP_ADMIN_PROHIBITED, GENEROUS).await;
    assert_eq!(observed.outcome, Outcome::Unreachable, "{observed:?}");
    assert_eq!(observed.errno, Some(libc::EHOSTUNREACH));
    assert_icmp(&observed, 3, 13, ip(DST_IP));
    assert!(observed.rejected_by_policy);
    assert!(
        observed.detail.contains("rejected by policy"),
        "{}",
        observed.detail
    );

    // Enforcement on the router: the same verdict, sent by the router.
    let observed = lab.tcp(ip(DST_IP), TCP_ROUTER_PROHIBITED, GENEROUS).await;
    assert_eq!(observed.outcome, Outcome::Unreachable, "{observed:?}");
    assert_icmp(&observed, 3, 13, ip(ROUTER_SRC_SIDE));
    assert!(observed.rejected_by_policy);
}

#[tokio::test]
async fn tcp_unreachable_host_unreachable() {
    require_root!();
    if !nft_available() {
        return;
    }
    let lab = Lab::new().await;
    let observed = lab.tcp(ip(DST_IP), TCP_HOST_UNREACHABLE, GENEROUS).await;
    assert_eq!(observed.outcome, Outcome::Unreachable, "{observed:?}");
    assert_eq!(observed.errno, Some(libc::EHOSTUNREACH));
    assert_icmp(&observed, 3, 1, ip(DST_IP));
    assert!(!observed.rejected_by_policy);
}

#[tokio::test]
async fn tcp_unreachable_no_route_at_the_router() {
    require_root!();
    let lab = Lab::new().await;
    let observed = lab.tcp(ip(NO_ROUTE_IP), TCP_OPEN, GENEROUS).await;
    assert_eq!(observed.outcome, Outcome::Unreachable, "{observed:?}");
    assert_eq!(observed.errno, Some(libc::ENETUNREACH));
    assert_icmp(&observed, 3, 0, ip(ROUTER_SRC_SIDE));
    assert!(!observed.rejected_by_policy);
    assert!(
        observed.detail.starts_with("no route"),
        "{}",
        observed.detail
    );
}

#[tokio::test]
async fn tcp_unreachable_no_route_in_the_source() {
    require_root!();
    let lab = Lab::new().await;
    lab.topology.src.ip(&["route", "del", "default"]);
    let observed = lab.tcp(ip(DST_IP), TCP_OPEN, GENEROUS).await;
    assert_eq!(observed.outcome, Outcome::Unreachable, "{observed:?}");
    assert_eq!(observed.errno, Some(libc::ENETUNREACH));
    assert_eq!(observed.icmp, None);
}

// === UDP ===

#[tokio::test]
async fn udp_reply_is_open_also_for_a_dns_payload() {
    require_root!();
    if !nft_available() {
        return;
    }
    let lab = Lab::new().await;
    for port in [UDP_ECHO, UDP_DNS] {
        let observed = lab.udp(port, GENEROUS).await;
        assert_eq!(observed.outcome, Outcome::Open, "port {port}: {observed:?}");
        assert!(observed.latency < GENEROUS);
    }
}

#[tokio::test]
async fn udp_closed_port_is_refused_with_port_unreachable() {
    require_root!();
    let lab = Lab::new().await;
    let observed = lab.udp(UDP_CLOSED, GENEROUS).await;
    assert_eq!(observed.outcome, Outcome::Refused, "{observed:?}");
    assert_eq!(observed.errno, Some(libc::ECONNREFUSED));
    assert_icmp(&observed, 3, 3, ip(DST_IP));
}

#[tokio::test]
async fn udp_silence_is_open_or_filtered() {
    require_root!();
    if !nft_available() {
        return;
    }
    let lab = Lab::new().await;
    let observed = lab.udp(UDP_DROP, SHORT).await;
    assert_eq!(observed.outcome, Outcome::OpenOrFiltered, "{observed:?}");
    assert!(observed.latency >= SHORT && observed.latency < GENEROUS);
}

#[tokio::test]
async fn udp_unreachable_admin_prohibited_and_host_unreachable() {
    require_root!();
    if !nft_available() {
        return;
    }
    let lab = Lab::new().await;
    let observed = lab.udp(UDP_ADMIN_PROHIBITED, GENEROUS).await;
    assert_eq!(observed.outcome, Outcome::Unreachable, "{observed:?}");
    assert_icmp(&observed, 3, 13, ip(DST_IP));
    assert!(observed.rejected_by_policy);

    // Without IP_RECVERR this soft error would be silence.
    let observed = lab.udp(UDP_HOST_UNREACHABLE, GENEROUS).await;
    assert_eq!(observed.outcome, Outcome::Unreachable, "{observed:?}");
    assert_eq!(observed.errno, Some(libc::EHOSTUNREACH));
    assert_icmp(&observed, 3, 1, ip(DST_IP));
    assert!(!observed.rejected_by_policy);
}
