//! End to end on the real testbed (not the hand-made fixtures of `netns_support`): each test
//! starts its own simulated cluster from `data/scenarios/probes-two-nodes.yaml` (unique prefix,
//! torn down on drop), finds pods exactly as the agent does on a node — by UID through
//! `netreach::netns::resolve_pod` on `/proc` — and probes through `SocketFactory` + `Prober`:
//! every cgroup layout and hostNetwork, sockets leaving from the pod, every TCP/UDP/DNS outcome
//! through the testbed's nftables rules and dnsmasq, DNS blocked by a drop rule, and the
//! `node-isolated` fault. Needs root (CI runs as root); otherwise each test prints
//! "skipped: needs root" and passes.
//!
//! ICMP is rate limited in the testbed's namespaces (a burst of ~6, then 1/s per destination):
//! every test sends at most a few ICMP-answered probes per (responder, source) pair.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use netreach::netns::{
    PodNetns, PodNetnsRegistry, Resolution, SocketFactory, netns_inode, resolve_pod,
    socket_netns_inode,
};
use netreach::probe::{DnsConfig, Observation, Outcome, Prober};
use socket2::{Domain, Type};
use testbed::{CgroupLayout, Fault, PodHandle, Scenario, Testbed};
use tokio::runtime::Runtime;

const SCENARIO: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/scenarios/probes-two-nodes.yaml"
);

/// For probes that are answered (in well under a millisecond): only bounds a hang, and leaves
/// room for a SYN retransmit to draw a rate-limited ICMP.
const ANSWERED: Duration = Duration::from_secs(3);
/// For probes whose expected outcome is a timeout or silence.
const SHORT: Duration = Duration::from_millis(500);

/// Ports of `payments/gateway` (node-2), one enforcement action each (see the scenario).
const GW_OPEN: u16 = 8443;
const GW_CLOSED: u16 = 8444;
const GW_RESET: u16 = 8445;
const GW_DROP: u16 = 8446;
const GW_ADMIN: u16 = 8447;
const GW_HOST: u16 = 8448;
const GW_UDP_ECHO: u16 = 5353;
const GW_UDP_CLOSED: u16 = 5354;
const GW_UDP_DROP: u16 = 5355;
/// In 10.244.0.0/16 but on no node: the router has no route for it.
const NO_ROUTE: Ipv4Addr = Ipv4Addr::new(10, 244, 99, 5);

/// One test's cluster, runtime and prober. Field order is drop order: the prober's pooled
/// sockets close before the testbed tears the namespaces down.
struct Lab {
    prober: Prober,
    rt: Runtime,
    tb: Testbed,
}

impl Lab {
    /// The scenario's testbed, or `None` (after saying so) when not root.
    fn start() -> Option<Self> {
        if !is_root() {
            eprintln!("skipped: needs root");
            return None;
        }
        let scenario = Scenario::from_file(SCENARIO).expect("scenario parses");
        let tb = Testbed::start(&scenario).expect("testbed starts");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let prober = Prober::new(SocketFactory::start().expect("socket factory"));
        Some(Self { prober, rt, tb })
    }

    fn factory(&self) -> &SocketFactory {
        self.prober.factory()
    }

    fn pod(&self, namespace: &str, name: &str) -> &PodHandle {
        self.tb
            .pod(namespace, name)
            .unwrap_or_else(|| panic!("{namespace}/{name} is in the scenario"))
    }

    fn ip(&self, namespace: &str, name: &str) -> Ipv4Addr {
        self.pod(namespace, name)
            .ip
            .unwrap_or_else(|| panic!("{namespace}/{name} has an IP"))
    }

    fn addr(&self, namespace: &str, name: &str, port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.ip(namespace, name)), port)
    }

    /// The pod's netns, found by UID as the agent finds it.
    fn netns(&self, namespace: &str, name: &str) -> PodNetns {
        let pod = self.pod(namespace, name);
        match resolve_pod(&pod.uid) {
            Ok(Resolution::Pod(found)) => found,
            Ok(Resolution::HostNetwork { .. }) => panic!("{namespace}/{name}: hostNetwork"),
            Err(error) => panic!("{namespace}/{name} ({}): {error}", pod.uid),
        }
    }

    fn tcp(&self, from: &PodNetns, to: SocketAddr, timeout: Duration) -> Observation {
        self.rt
            .block_on(self.prober.probe_tcp(&from.handle, to, timeout))
            .expect("TCP probe runs")
    }

    fn udp(&self, from: &PodNetns, to: SocketAddr, timeout: Duration) -> Observation {
        self.rt
            .block_on(self.prober.probe_udp(&from.handle, to, timeout))
            .expect("UDP probe runs")
    }

    fn dns(&self, from: &PodNetns, name: &str, timeout: Duration) -> Observation {
        let config = DnsConfig::for_pod(from).expect("the pod's resolv.conf");
        self.rt
            .block_on(self.prober.probe_dns(&from.handle, &config, name, timeout))
            .expect("DNS probe runs")
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("Uid:"))?;
            line.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

fn v4(ip: Ipv4Addr) -> IpAddr {
    IpAddr::V4(ip)
}

/// Asserts the outcome, printing the whole observation when it differs.
#[track_caller]
fn expect_outcome(what: &str, observation: &Observation, outcome: Outcome) {
    assert_eq!(observation.outcome, outcome, "{what}: {observation:?}");
}

/// An ICMP-answered `unreachable`: errno, ICMP type 3 `code` from `offender`, policy flag.
#[track_caller]
fn expect_unreachable(
    what: &str,
    observation: &Observation,
    errno: i32,
    code: u8,
    offender: Ipv4Addr,
    rejected_by_policy: bool,
) {
    expect_outcome(what, observation, Outcome::Unreachable);
    assert_eq!(observation.errno, Some(errno), "{what}: {observation:?}");
    let icmp = observation
        .icmp
        .unwrap_or_else(|| panic!("{what}: no ICMP details: {observation:?}"));
    assert_eq!(
        (icmp.kind, icmp.code, icmp.offender),
        (3, code, v4(offender)),
        "{what}: {observation:?}"
    );
    assert_eq!(
        observation.rejected_by_policy, rejected_by_policy,
        "{what}: {observation:?}"
    );
}

/// A timeout-like outcome took (about) the whole timeout, not much more.
#[track_caller]
fn expect_waited(what: &str, observation: &Observation, timeout: Duration) {
    assert!(
        observation.latency >= timeout - Duration::from_millis(20)
            && observation.latency < timeout + Duration::from_secs(2),
        "{what}: latency {:?} for a {timeout:?} timeout",
        observation.latency
    );
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim_end()
        .to_string()
}

/// Every pod the testbed built is found by its UID: the `pause` sandbox of each cgroup layout
/// (containerd/systemd, CRI-O with conmon skipped, cgroupfs, docker), the very namespace behind
/// `/run/netns/<name>`, the app process for resolv.conf; hostNetwork pods as `HostNetwork`;
/// pods without processes not at all. The registry validates a handle by the pod IP.
#[test]
fn resolver_finds_every_pod_by_uid_for_every_cgroup_layout() {
    let Some(lab) = Lab::start() else { return };
    let home = netns_inode("/proc/self/ns/net").expect("own netns");
    let dns_ip = lab.tb.dns().expect("scenario has DNS").ip;
    let mut layouts = HashSet::new();
    let mut host_network = HashSet::new();
    for pod in lab.tb.pods() {
        let who = format!(
            "{} ({:?}, uid {})",
            pod.pod_ref(),
            pod.cgroup_layout,
            pod.uid
        );
        let resolution = resolve_pod(&pod.uid).unwrap_or_else(|e| panic!("{who}: {e}"));
        // Where the testbed put the sandbox really is a kubepods cgroup of that layout.
        let cgroups = std::fs::read_to_string(format!("/proc/{}/cgroup", pod.pause_pid))
            .unwrap_or_else(|e| panic!("{who}: {e}"));
        assert!(cgroups.contains(&pod.sandbox_cgroup), "{who}: {cgroups}");
        if pod.host_network {
            match resolution {
                Resolution::HostNetwork { uid } => assert_eq!(uid, pod.uid, "{who}"),
                Resolution::Pod(found) => panic!("{who}: hostNetwork pod resolved to {found:?}"),
            }
            assert_eq!(
                netns_inode(format!("/proc/{}/ns/net", pod.pause_pid)).ok(),
                Some(home),
                "{who}: its pause runs in the host netns"
            );
            host_network.insert(pod.cgroup_layout);
            continue;
        }
        let Resolution::Pod(found) = resolution else {
            panic!("{who}: resolved as hostNetwork");
        };
        assert_eq!(found.uid, pod.uid, "{who}");
        assert_eq!(found.sandbox_pid, pod.pause_pid, "{who}: sandbox");
        assert_eq!(comm(found.sandbox_pid), "pause", "{who}");
        // The app process (resolv.conf is read through its root). In the DNS pod dnsmasq shares
        // the app container: either one is right.
        let dnsmasq = lab
            .tb
            .dns()
            .filter(|d| d.pod == pod.pod_ref())
            .map(|d| d.pid);
        assert!(
            found.app_pid == pod.app_pid || (found.app_pid.is_some() && found.app_pid == dnsmasq),
            "{who}: app process {:?}, expected {:?}",
            found.app_pid,
            pod.app_pid
        );
        if let Some(conmon) = pod.conmon_pid {
            assert_eq!(pod.cgroup_layout, CgroupLayout::CrioSystemd, "{who}");
            assert_eq!(comm(conmon), "conmon", "{who}");
            assert_eq!(
                netns_inode(format!("/proc/{conmon}/ns/net")).ok(),
                Some(home),
                "{who}: conmon lives in the host netns"
            );
            assert_ne!(Some(conmon), found.app_pid, "{who}: conmon skipped");
        }
        let netns_path = pod.netns_path.as_ref().expect("pod has a netns");
        let run_netns = netns_inode(netns_path).expect("/run/netns entry");
        assert_eq!(found.handle.inode(), run_netns, "{who}: {netns_path:?}");
        assert_ne!(found.handle.inode(), home, "{who}");
        // The resolv.conf read through the app's root is the pod's own (its namespace first in
        // the search list, the cluster DNS as nameserver), not the host's.
        let config = DnsConfig::for_pod(&found).unwrap_or_else(|e| panic!("{who}: {e}"));
        assert_eq!(config.nameservers(), vec![v4(dns_ip)], "{who}");
        let search = config.search();
        assert!(
            search.first().is_some_and(
                |s| s.trim_end_matches('.') == format!("{}.svc.cluster.local", pod.namespace)
            ),
            "{who}: search {search:?}"
        );
        assert_eq!(config.ndots(), 5, "{who}");
        layouts.insert(pod.cgroup_layout);
    }
    for layout in CgroupLayout::ALL {
        assert!(layouts.contains(&layout), "no pod with layout {layout:?}");
    }
    assert!(
        host_network.contains(&CgroupLayout::CrioSystemd),
        "a hostNetwork CRI-O pod (pause and conmon both in the host netns): {host_network:?}"
    );

    // Not running (phase Succeeded) and unknown UIDs: not on this node.
    let cron_uid = lab
        .tb
        .objects()
        .iter()
        .find(|o| o["kind"] == "Pod" && o["metadata"]["name"] == "cron")
        .and_then(|o| o["metadata"]["uid"].as_str().map(str::to_string))
        .expect("cron has a generated uid");
    for uid in [cron_uid.as_str(), "00000000-0000-4000-8000-000000000000"] {
        match resolve_pod(uid) {
            Err(netreach::netns::Error::PodNotFound { .. }) => {}
            other => panic!("{uid}: expected PodNotFound, got {other:?}"),
        }
    }

    // The registry: a handle validated by binding the pod IP is cached; the wrong IP (another
    // pod's) is refused as stale; hostNetwork is not cached.
    let registry = PodNetnsRegistry::new();
    let gateway = lab.pod("payments", "gateway");
    let resolved = lab
        .rt
        .block_on(registry.resolve(lab.factory(), &gateway.uid, gateway.ip.map(v4)))
        .expect("gateway validates with its own IP");
    assert!(matches!(resolved, Resolution::Pod(_)));
    assert_eq!(registry.len(), 1);
    let api = lab.pod("shop", "api");
    match lab
        .rt
        .block_on(registry.resolve(lab.factory(), &api.uid, gateway.ip.map(v4)))
    {
        Err(netreach::netns::Error::AddressNotLocal { .. }) => {}
        other => panic!("api's netns with gateway's IP: expected AddressNotLocal, got {other:?}"),
    }
    let cni = lab.pod("kube-system", "cni-node-2");
    let resolved = lab
        .rt
        .block_on(registry.resolve(lab.factory(), &cni.uid, None))
        .expect("hostNetwork pod resolves");
    assert!(matches!(resolved, Resolution::HostNetwork { .. }));
    assert_eq!(registry.len(), 1, "only the validated gateway is cached");
}

/// A probe's socket really leaves from the source pod: listeners made by the factory inside the
/// destination pods accept the probes and see the source pod's IP as peer, across nodes and on
/// one node, TCP and UDP. The host netns cannot even bind those IPs.
#[test]
fn sockets_leave_from_the_pod_and_the_destination_sees_the_pod_ip() {
    let Some(lab) = Lab::start() else { return };
    let frontend = lab.netns("shop", "frontend");
    let frontend_ip = v4(lab.ip("shop", "frontend"));
    let factory = lab.factory();

    // The test process itself is in the host netns, where no pod IP exists.
    let error = std::net::TcpListener::bind(lab.addr("payments", "gateway", 0))
        .expect_err("the gateway IP is not local in the host netns");
    assert_eq!(error.raw_os_error(), Some(libc::EADDRNOTAVAIL), "{error}");

    for (namespace, name, port) in [("payments", "gateway", 18443), ("shop", "api", 18080)] {
        let dst = lab.netns(namespace, name);
        let listen_addr = lab.addr(namespace, name, port);
        let peer = lab.rt.block_on(async {
            let socket = factory
                .socket(&dst.handle, Domain::IPV4, Type::STREAM, None)
                .await
                .expect("socket in the destination netns");
            assert_eq!(socket_netns_inode(&socket).ok(), Some(dst.handle.inode()));
            socket.set_reuse_address(true).expect("SO_REUSEADDR");
            socket
                .bind(&listen_addr.into())
                .expect("the pod IP is local in the pod's netns");
            socket.listen(16).expect("listen");
            socket.set_nonblocking(true).expect("non-blocking");
            let listener = tokio::net::TcpListener::from_std(socket.into()).expect("listener");
            let accepting = tokio::spawn(async move {
                tokio::time::timeout(ANSWERED, listener.accept())
                    .await
                    .map(|accepted| accepted.map(|(_, peer)| peer))
            });
            let observation = probe_tcp_answered(&lab.prober, &frontend, listen_addr).await;
            expect_outcome(
                &format!("TCP to {listen_addr}"),
                &observation,
                Outcome::Open,
            );
            accepting
                .await
                .expect("accept task")
                .expect("accepted in time")
                .expect("accept")
        });
        assert_eq!(
            peer.ip(),
            frontend_ip,
            "TCP peer seen by {namespace}/{name}"
        );

        let udp_addr = lab.addr(namespace, name, port + 1);
        let peer = lab.rt.block_on(async {
            let socket = factory
                .socket(&dst.handle, Domain::IPV4, Type::DGRAM, None)
                .await
                .expect("socket in the destination netns");
            socket.bind(&udp_addr.into()).expect("bind the pod IP");
            socket.set_nonblocking(true).expect("non-blocking");
            let server = tokio::net::UdpSocket::from_std(socket.into()).expect("UDP socket");
            let serving = tokio::spawn(async move {
                let mut buffer = [0u8; 512];
                let (len, peer) = tokio::time::timeout(ANSWERED, server.recv_from(&mut buffer))
                    .await
                    .expect("a datagram in time")
                    .expect("recv_from");
                server
                    .send_to(&buffer[..len], peer)
                    .await
                    .expect("echo back");
                peer
            });
            let observation = lab
                .prober
                .probe_udp(&frontend.handle, udp_addr, ANSWERED)
                .await
                .expect("UDP probe runs");
            expect_outcome(&format!("UDP to {udp_addr}"), &observation, Outcome::Open);
            serving.await.expect("UDP server task")
        });
        assert_eq!(
            peer.ip(),
            frontend_ip,
            "UDP peer seen by {namespace}/{name}"
        );
    }
    assert_eq!(
        factory.hop_threads_not_home().expect("hop threads' netns"),
        Vec::new(),
        "no hop thread left in a pod netns"
    );
}

async fn probe_tcp_answered(prober: &Prober, from: &PodNetns, to: SocketAddr) -> Observation {
    prober
        .probe_tcp(&from.handle, to, ANSWERED)
        .await
        .expect("TCP probe runs")
}

/// Every TCP outcome from shop/frontend (node-1) through the gateway's (node-2) rules: open,
/// refused by a closed port and by `reject-tcp-reset` (RST: no ICMP), timeout by `drop`,
/// unreachable by admin-prohibited (rejected by policy) and host-unreachable (from the target),
/// and no route (net-unreachable from the node's gateway). First match wins on the ledger.
#[test]
fn tcp_outcomes_through_the_testbed_rules() {
    let Some(lab) = Lab::start() else { return };
    let frontend = lab.netns("shop", "frontend");
    let gateway_ip = lab.ip("payments", "gateway");
    let gw = |port| lab.addr("payments", "gateway", port);

    let open = lab.tcp(&frontend, gw(GW_OPEN), ANSWERED);
    expect_outcome("open port", &open, Outcome::Open);
    assert_eq!((open.errno, open.icmp), (None, None), "{open:?}");

    for (what, port) in [("closed port", GW_CLOSED), ("reject-tcp-reset", GW_RESET)] {
        let refused = lab.tcp(&frontend, gw(port), ANSWERED);
        expect_outcome(what, &refused, Outcome::Refused);
        assert_eq!(
            refused.errno,
            Some(libc::ECONNREFUSED),
            "{what}: {refused:?}"
        );
        assert_eq!(
            refused.icmp, None,
            "{what}: a RST queues no ICMP: {refused:?}"
        );
        assert!(!refused.rejected_by_policy, "{what}: {refused:?}");
    }

    let dropped = lab.tcp(&frontend, gw(GW_DROP), SHORT);
    expect_outcome("drop", &dropped, Outcome::Timeout);
    expect_waited("drop", &dropped, SHORT);

    let admin = lab.tcp(&frontend, gw(GW_ADMIN), ANSWERED);
    expect_unreachable(
        "reject-icmp-admin",
        &admin,
        libc::EHOSTUNREACH,
        13,
        gateway_ip,
        true,
    );
    let host = lab.tcp(&frontend, gw(GW_HOST), ANSWERED);
    expect_unreachable(
        "reject-icmp-host",
        &host,
        libc::EHOSTUNREACH,
        1,
        gateway_ip,
        false,
    );

    let node_1_gateway = lab.tb.nodes()[0].gateway;
    let no_route = lab.tcp(&frontend, SocketAddr::new(v4(NO_ROUTE), 80), ANSWERED);
    expect_unreachable(
        "no route in the router",
        &no_route,
        libc::ENETUNREACH,
        0,
        node_1_gateway,
        false,
    );

    // payments/ledger: `accept` from batch/reporter before `reject-icmp-admin` from everyone.
    let ledger = lab.addr("payments", "ledger", 5432);
    let rejected = lab.tcp(&frontend, ledger, ANSWERED);
    expect_unreachable(
        "ledger from frontend",
        &rejected,
        libc::EHOSTUNREACH,
        13,
        lab.ip("payments", "ledger"),
        true,
    );
    let reporter = lab.netns("batch", "reporter");
    expect_outcome(
        "ledger from reporter (accept first)",
        &lab.tcp(&reporter, ledger, ANSWERED),
        Outcome::Open,
    );
}

/// Every UDP outcome from shop/frontend to the gateway: a reply (`open`), ICMP port-unreachable
/// (`refused`), silence from a `drop` (`open_or_filtered`); a real DNS query on port 53 gets
/// dnsmasq's answer; admin-prohibited on UDP is a policy reject.
#[test]
fn udp_outcomes_through_the_testbed_rules() {
    let Some(lab) = Lab::start() else { return };
    let frontend = lab.netns("shop", "frontend");
    let gateway_ip = lab.ip("payments", "gateway");
    let gw = |port| lab.addr("payments", "gateway", port);

    let echo = lab.udp(&frontend, gw(GW_UDP_ECHO), ANSWERED);
    expect_outcome("UDP echo", &echo, Outcome::Open);

    let closed = lab.udp(&frontend, gw(GW_UDP_CLOSED), ANSWERED);
    expect_outcome("UDP closed port", &closed, Outcome::Refused);
    assert_eq!(closed.errno, Some(libc::ECONNREFUSED), "{closed:?}");
    let icmp = closed.icmp.expect("port-unreachable details");
    assert_eq!(
        (icmp.kind, icmp.code, icmp.offender),
        (3, 3, v4(gateway_ip))
    );

    let dropped = lab.udp(&frontend, gw(GW_UDP_DROP), SHORT);
    expect_outcome("UDP drop", &dropped, Outcome::OpenOrFiltered);
    expect_waited("UDP drop", &dropped, SHORT);

    let dns = lab.tb.dns().expect("scenario has DNS").ip;
    let query = lab.udp(&frontend, SocketAddr::new(v4(dns), 53), ANSWERED);
    expect_outcome("UDP DNS query to dnsmasq", &query, Outcome::Open);

    let ledger_ip = lab.ip("payments", "ledger");
    let admin = lab.udp(&frontend, SocketAddr::new(v4(ledger_ip), 5432), ANSWERED);
    expect_unreachable(
        "UDP to the ledger (reject-icmp-admin, any protocol)",
        &admin,
        libc::EHOSTUNREACH,
        13,
        ledger_ip,
        true,
    );
}

/// DNS through hickory with the pod's own resolv.conf (read through `/proc/<app>/root`) and
/// sockets born in the pod: resolved (answers equal the record, FQDN and short name through the
/// pod's search list), NXDOMAIN, SERVFAIL and a timeout from the `TIMEOUT` record. The same
/// short name from a pod in another namespace does not resolve: its search list differs.
#[test]
fn dns_outcomes_with_the_pods_own_resolv_conf() {
    let Some(lab) = Lab::start() else { return };
    let frontend = lab.netns("shop", "frontend");
    let api_ip = v4(lab.ip("shop", "api"));
    let gateway_ip = v4(lab.ip("payments", "gateway"));

    let fqdn = lab.dns(&frontend, "api.shop.svc.cluster.local.", ANSWERED);
    expect_outcome("FQDN", &fqdn, Outcome::Resolved);
    assert_eq!(fqdn.answers, vec![api_ip], "{fqdn:?}");

    let short = lab.dns(&frontend, "api", ANSWERED);
    expect_outcome(
        "short name in the pod's namespace",
        &short,
        Outcome::Resolved,
    );
    assert_eq!(short.answers, vec![api_ip], "{short:?}");

    let other_namespace = lab.dns(&frontend, "gateway.payments", ANSWERED);
    expect_outcome("<svc>.<namespace>", &other_namespace, Outcome::Resolved);
    assert_eq!(
        other_namespace.answers,
        vec![gateway_ip],
        "{other_namespace:?}"
    );

    for name in [
        "gone.shop.svc.cluster.local.",
        "nope.shop.svc.cluster.local.",
    ] {
        let nx = lab.dns(&frontend, name, ANSWERED);
        expect_outcome(name, &nx, Outcome::Nxdomain);
        assert!(nx.answers.is_empty(), "{nx:?}");
    }

    let servfail = lab.dns(&frontend, "broken.shop.svc.cluster.local.", ANSWERED);
    expect_outcome("SERVFAIL record", &servfail, Outcome::Servfail);

    let timeout = Duration::from_millis(600);
    let slow = lab.dns(&frontend, "slow.shop.svc.cluster.local.", timeout);
    expect_outcome("TIMEOUT record", &slow, Outcome::DnsTimeout);
    expect_waited("TIMEOUT record", &slow, timeout);

    // batch/reporter's search list starts with batch.svc.cluster.local: `api` is not there.
    let reporter = lab.netns("batch", "reporter");
    let elsewhere = lab.dns(&reporter, "api", ANSWERED);
    expect_outcome(
        "`api` from the batch namespace",
        &elsewhere,
        Outcome::Nxdomain,
    );
}

/// DNS blocked by policy: the drop rule from batch/worker to the DNS pod on 53/UDP makes its
/// lookups time out, while other pods resolve; dnsmasq's query log has their queries and none
/// from the worker (dropped before dnsmasq). The rule is UDP only: TCP 53 stays open.
#[test]
fn dns_blocked_by_an_egress_drop_times_out_and_never_reaches_dnsmasq() {
    let Some(lab) = Lab::start() else { return };
    let dns = lab.tb.dns().expect("scenario has DNS").clone();
    let worker = lab.netns("batch", "worker");
    let frontend = lab.netns("shop", "frontend");
    let reporter = lab.netns("batch", "reporter");
    let name = "api.shop.svc.cluster.local.";
    let api_ip = v4(lab.ip("shop", "api"));

    let timeout = Duration::from_millis(700);
    let blocked = lab.dns(&worker, name, timeout);
    expect_outcome("DNS from the blocked worker", &blocked, Outcome::DnsTimeout);
    expect_waited("DNS from the blocked worker", &blocked, timeout);

    for (who, pod) in [("frontend", &frontend), ("reporter", &reporter)] {
        let resolved = lab.dns(pod, name, ANSWERED);
        expect_outcome(who, &resolved, Outcome::Resolved);
        assert_eq!(resolved.answers, vec![api_ip], "{who}: {resolved:?}");
    }

    // A short name, as the pod's own lookups go through its search list: still a timeout.
    let short = lab.dns(&worker, "api.shop", timeout);
    expect_outcome(
        "short name from the blocked worker",
        &short,
        Outcome::DnsTimeout,
    );
    expect_waited("short name from the blocked worker", &short, timeout);

    let dns_53 = SocketAddr::new(v4(dns.ip), 53);
    let silent = lab.udp(&worker, dns_53, SHORT);
    expect_outcome("UDP 53 from the worker", &silent, Outcome::OpenOrFiltered);

    let from = |pod: &str| format!(" from {}", lab.ip("batch", pod));
    let frontend_from = format!(" from {}", lab.ip("shop", "frontend"));
    let mut log = String::new();
    for _ in 0..40 {
        log = std::fs::read_to_string(&dns.log_path).unwrap_or_default();
        if log.contains(&frontend_from) && log.contains(&from("reporter")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        log.contains(&frontend_from) && log.contains(&from("reporter")),
        "the other pods' queries are logged:\n{log}"
    );
    assert!(
        !log.contains(&from("worker")),
        "no query from the worker reached dnsmasq:\n{log}"
    );

    // The rule matches UDP only: the worker still connects to TCP 53.
    let tcp = lab.tcp(&worker, dns_53, ANSWERED);
    expect_outcome(
        "TCP 53 from the worker (rule is UDP only)",
        &tcp,
        Outcome::Open,
    );
}

/// The `node-isolated` fault on node-2: probes to, from and within node-2 time out while node-1
/// traffic still flows; lifting the fault restores the cross-node path.
#[test]
fn node_isolated_fault_makes_cross_node_probes_time_out() {
    let Some(lab) = Lab::start() else { return };
    let frontend = lab.netns("shop", "frontend");
    let reporter = lab.netns("batch", "reporter");
    let gateway = lab.addr("payments", "gateway", GW_OPEN);
    let gateway_echo = lab.addr("payments", "gateway", GW_UDP_ECHO);
    let api = lab.addr("shop", "api", 8080);
    let frontend_web = lab.addr("shop", "frontend", 8080);

    expect_outcome(
        "before the fault",
        &lab.tcp(&frontend, gateway, ANSWERED),
        Outcome::Open,
    );
    lab.tb
        .set_faults(&[Fault::NodeIsolated {
            node: "node-2".to_string(),
        }])
        .expect("fault installed");

    // The timeouts run side by side: one SHORT wait for all of them.
    let (into, out_of, within, udp, same_node) = lab.rt.block_on(async {
        let p = &lab.prober;
        tokio::join!(
            p.probe_tcp(&frontend.handle, gateway, SHORT),
            p.probe_tcp(&reporter.handle, frontend_web, SHORT),
            p.probe_tcp(&reporter.handle, gateway, SHORT),
            p.probe_udp(&frontend.handle, gateway_echo, SHORT),
            p.probe_tcp(&frontend.handle, api, ANSWERED),
        )
    });
    for (what, observation) in [
        ("node-1 -> node-2", into),
        ("node-2 -> node-1", out_of),
        ("within node-2", within),
    ] {
        let observation = observation.expect("TCP probe runs");
        expect_outcome(what, &observation, Outcome::Timeout);
        expect_waited(what, &observation, SHORT);
    }
    expect_outcome(
        "UDP node-1 -> node-2",
        &udp.expect("UDP probe runs"),
        Outcome::OpenOrFiltered,
    );
    expect_outcome(
        "within node-1",
        &same_node.expect("TCP probe runs"),
        Outcome::Open,
    );

    lab.tb.set_faults(&[]).expect("fault lifted");
    expect_outcome(
        "after the fault",
        &lab.tcp(&frontend, gateway, ANSWERED),
        Outcome::Open,
    );
}
