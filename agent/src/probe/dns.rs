//! DNS probes: hickory-resolver with every socket born in the pod's netns and the pod's own
//! resolv.conf.
//!
//! Data flow: the pod's resolv.conf bytes (read through `/proc/<app pid>/root/etc/resolv.conf`,
//! [`DnsConfig::for_pod`]) -> `parse_resolv_conf` -> options forced for probing (no cache, no
//! hosts file — hickory would read the AGENT's /etc/hosts — one attempt, our timeout, the pod's
//! own ephemeral port range, one request at a time) -> a fresh `Resolver` whose
//! `PodNetnsRuntime` asks the [`SocketFactory`] for every UDP/TCP socket, at most
//! [`MAX_SOCKETS_PER_PROBE`] -> `lookup(name, A)` bounded by the timeout -> `resolved` (with
//! answers), `nxdomain`, `servfail`, `dns_timeout` or `error`.
//!
//! A host target's name goes the same way with [`Lookup::HostAddresses`]: A and AAAA queried
//! in parallel (as a dual-stack client resolves), twice the socket budget, the same outcomes;
//! the answers are the addresses the pair then probes.
//!
//! A name with a trailing dot is one query. A shorter name walks the pod's search list as the
//! pod's libc would (the first hit wins), so `web.other` finds `web.other.svc.cluster.local.`.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hickory_resolver::Resolver;
use hickory_resolver::config::{LookupIpStrategy, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::iocompat::AsyncIoTokioAsStd;
use hickory_resolver::net::runtime::{RuntimeProvider, TokioHandle, TokioTime};
use hickory_resolver::net::{DnsError as HickoryDnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RecordType;
use socket2::{Domain, Type};

use super::outcome::{NotProbedReason, Observation, Outcome};
use crate::netns::{NetnsHandle, PodNetns, SocketFactory};

/// Sockets one DNS probe may create (UDP per query, TCP on truncation), across the search list.
pub const MAX_SOCKETS_PER_PROBE: usize = 8;

/// What a lookup asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// A `dns` target: the name's A records.
    ARecords,
    /// A `host` target: the name's A and AAAA records, queried in parallel.
    HostAddresses,
}

impl Lookup {
    /// The record types asked for, for messages.
    fn records(self) -> &'static str {
        match self {
            Lookup::ARecords => "A",
            Lookup::HostAddresses => "A or AAAA",
        }
    }

    /// Two queries per searched name need twice the sockets of one.
    fn socket_budget(self) -> usize {
        match self {
            Lookup::ARecords => MAX_SOCKETS_PER_PROBE,
            Lookup::HostAddresses => 2 * MAX_SOCKETS_PER_PROBE,
        }
    }
}

/// Default TCP connect timeout when hickory passes none.
const TCP_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long reading a pod's resolv.conf may take.
pub const POD_FILE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a DNS probe could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("cannot read resolv.conf of {origin}: {source}")]
    ResolvConfUnreadable {
        origin: String,
        #[source]
        source: crate::netns::Error,
    },
    #[error("invalid resolv.conf from {origin}: {message}")]
    ResolvConfInvalid { origin: String, message: String },
    #[error("resolv.conf from {origin} names no nameserver")]
    NoNameservers { origin: String },
    #[error("invalid DNS name {name:?}: {message}")]
    InvalidName { name: String, message: String },
    #[error("cannot build the resolver: {message}")]
    Build { message: String },
}

impl DnsError {
    /// A bounded label for failure counters.
    pub fn metric_label(&self) -> &'static str {
        match self {
            DnsError::ResolvConfUnreadable { .. } => "resolv_conf_unreadable",
            DnsError::ResolvConfInvalid { .. } => "resolv_conf_invalid",
            DnsError::NoNameservers { .. } => "no_nameservers",
            DnsError::InvalidName { .. } => "invalid_name",
            DnsError::Build { .. } => "resolver_build",
        }
    }

    /// Why a lookup with this error did not run.
    pub fn not_probed_reason(&self) -> NotProbedReason {
        match self {
            DnsError::ResolvConfUnreadable { .. }
            | DnsError::ResolvConfInvalid { .. }
            | DnsError::NoNameservers { .. } => NotProbedReason::PodFileUnreadable,
            DnsError::InvalidName { .. } | DnsError::Build { .. } => NotProbedReason::ProbeError,
        }
    }
}

/// A pod's resolver configuration (nameservers, search list, ndots) from its resolv.conf.
#[derive(Clone, Debug)]
pub struct DnsConfig {
    config: ResolverConfig,
    options: ResolverOpts,
    origin: String,
}

impl DnsConfig {
    /// Parses resolv.conf contents; `origin` names where they came from, for messages.
    pub fn from_resolv_conf(contents: &[u8], origin: impl Into<String>) -> Result<Self, DnsError> {
        let origin = origin.into();
        let (config, options) = hickory_resolver::system_conf::parse_resolv_conf(contents)
            .map_err(|error| DnsError::ResolvConfInvalid {
                origin: origin.clone(),
                message: error.to_string(),
            })?;
        if config.name_servers.is_empty() {
            return Err(DnsError::NoNameservers { origin });
        }
        Ok(Self {
            config,
            options,
            origin,
        })
    }

    /// The pod's resolv.conf as its app container sees it (`/proc/<app pid>/root/…`).
    /// [`Self::for_pod`] off the async runtime, within [`POD_FILE_TIMEOUT`]: the read is
    /// bounded and cannot block on a FIFO or device, but a regular file on a hung filesystem
    /// could still stall it, and with it the scheduler that awaits the probe.
    pub async fn load(pod: &PodNetns) -> Result<Self, DnsError> {
        let origin = pod.resolv_conf_path().display().to_string();
        let unreadable = |why: String| DnsError::ResolvConfUnreadable {
            origin: origin.clone(),
            source: crate::netns::Error::Proc {
                path: pod.resolv_conf_path(),
                source: std::io::Error::other(why),
            },
        };
        let owned = pod.clone();
        let read = tokio::task::spawn_blocking(move || Self::for_pod(&owned));
        match tokio::time::timeout(POD_FILE_TIMEOUT, read).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(unreadable("the reading task failed".into())),
            Err(_) => Err(unreadable(format!(
                "not read within {POD_FILE_TIMEOUT:?} (a hung filesystem?)"
            ))),
        }
    }

    pub fn for_pod(pod: &PodNetns) -> Result<Self, DnsError> {
        let origin = pod.resolv_conf_path().display().to_string();
        let contents = pod
            .read_resolv_conf()
            .map_err(|source| DnsError::ResolvConfUnreadable {
                origin: origin.clone(),
                source,
            })?;
        Self::from_resolv_conf(&contents, origin)
    }

    pub fn nameservers(&self) -> Vec<IpAddr> {
        self.config.name_servers.iter().map(|ns| ns.ip).collect()
    }

    pub fn search(&self) -> Vec<String> {
        self.config
            .search
            .iter()
            .map(|name| name.to_string())
            .collect()
    }

    /// Where the configuration came from (a path, for messages).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn ndots(&self) -> usize {
        self.options.ndots
    }

    /// Options for one probe: see the module docs for why each is forced.
    fn probe_options(&self, timeout: Duration, lookup: Lookup) -> ResolverOpts {
        let mut options = self.options.clone();
        if lookup == Lookup::HostAddresses {
            options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        }
        options.use_hosts_file = ResolveHosts::Never;
        options.cache_size = 0;
        options.attempts = 1;
        options.timeout = timeout;
        options.os_port_selection = true;
        options.num_concurrent_reqs = 1;
        options.try_tcp_on_error = false;
        options
    }
}

/// One lookup of `name` from `netns`: `resolved` with the answers (`Lookup::ARecords`: A;
/// `Lookup::HostAddresses`: A then AAAA), `nxdomain`, `servfail`, `dns_timeout`, or what a
/// socket error says.
pub(super) async fn probe(
    factory: &SocketFactory,
    netns: &NetnsHandle,
    config: &DnsConfig,
    name: &str,
    lookup: Lookup,
    timeout: Duration,
) -> Result<Observation, super::Error> {
    let runtime = PodNetnsRuntime::new(factory.clone(), netns.clone(), lookup.socket_budget());
    let sockets = runtime.sockets_created.clone();
    let resolver = Resolver::builder_with_config(config.config.clone(), runtime)
        .with_options(config.probe_options(timeout, lookup))
        .build()
        .map_err(|error| DnsError::Build {
            message: error.to_string(),
        })?;
    let query_name = hickory_resolver::proto::rr::Name::from_utf8(name).map_err(|error| {
        DnsError::InvalidName {
            name: name.to_string(),
            message: error.to_string(),
        }
    })?;
    let started = Instant::now();
    let looking_up = async {
        match lookup {
            Lookup::ARecords => resolver.lookup(query_name, RecordType::A).await,
            Lookup::HostAddresses => resolver
                .lookup_ip(query_name)
                .await
                .map(hickory_resolver::lookup::Lookup::from),
        }
    };
    let looked_up = tokio::time::timeout(timeout, looking_up).await;
    let latency = started.elapsed();
    let mut observation = match looked_up {
        Err(_elapsed) => Observation::new(
            Outcome::DnsTimeout,
            latency,
            format!(
                "no answer within {timeout:?} from {:?} (config {})",
                config.nameservers(),
                config.origin()
            ),
        ),
        Ok(Ok(answer)) => {
            let answers: Vec<IpAddr> = answer
                .answers()
                .iter()
                .filter_map(|record| record.data.ip_addr())
                .collect();
            let queried = answer.query().name().to_string();
            let mut observation = Observation::new(
                Outcome::Resolved,
                latency,
                if answers.is_empty() {
                    format!("{queried}: no {} record", lookup.records())
                } else {
                    format!("{queried} -> {answers:?}")
                },
            );
            observation.answers = answers;
            observation
        }
        Ok(Err(error)) => classify_lookup_error(&error, lookup, latency),
    };
    observation.detail = format!(
        "{} ({} socket{} in the pod netns)",
        observation.detail,
        sockets.load(Ordering::Relaxed),
        if sockets.load(Ordering::Relaxed) == 1 {
            ""
        } else {
            "s"
        }
    );
    Ok(observation)
}

fn classify_lookup_error(error: &NetError, lookup: Lookup, latency: Duration) -> Observation {
    let (outcome, detail) = match error {
        NetError::Dns(HickoryDnsError::NoRecordsFound(no_records)) => {
            match no_records.response_code {
                ResponseCode::NXDomain => (
                    Outcome::Nxdomain,
                    format!("NXDOMAIN for {}", no_records.query.name()),
                ),
                ResponseCode::NoError => (
                    Outcome::Resolved,
                    format!(
                        "{}: exists but has no {} record (NODATA)",
                        no_records.query.name(),
                        lookup.records()
                    ),
                ),
                code => (Outcome::Servfail, format!("response code {code}")),
            }
        }
        NetError::Dns(HickoryDnsError::ResponseCode(code)) => match *code {
            ResponseCode::ServFail | ResponseCode::Refused => {
                (Outcome::Servfail, format!("response code {code}"))
            }
            ResponseCode::NXDomain => (Outcome::Nxdomain, "NXDOMAIN".to_string()),
            // The server answered, with a code no lookup should get: a failing server.
            code => (Outcome::Servfail, format!("response code {code}")),
        },
        NetError::Timeout => (Outcome::DnsTimeout, "request timed out".to_string()),
        // A socket error: the errno says whether the network answered (refused,
        // unreachable) or the agent failed locally (not probed).
        NetError::Io(io_error) => match io_error.raw_os_error() {
            Some(errno) => {
                return super::outcome::classify_errno(
                    super::outcome::Transport::Udp,
                    errno,
                    None,
                    latency,
                );
            }
            None => {
                return Observation::not_probed(NotProbedReason::ProbeError, io_error.to_string());
            }
        },
        other => {
            return Observation::not_probed(NotProbedReason::ProbeError, other.to_string());
        }
    };
    Observation::new(outcome, latency, detail)
}

// === PodNetnsRuntime ===

/// A hickory runtime whose sockets all come from the [`SocketFactory`] (born in the pod's
/// netns); timers and I/O are plain tokio.
#[derive(Clone)]
struct PodNetnsRuntime {
    factory: SocketFactory,
    netns: NetnsHandle,
    handle: TokioHandle,
    sockets_created: Arc<AtomicUsize>,
    /// The most sockets this lookup may create.
    socket_budget: usize,
}

impl PodNetnsRuntime {
    fn new(factory: SocketFactory, netns: NetnsHandle, socket_budget: usize) -> Self {
        Self {
            factory,
            netns,
            handle: TokioHandle::default(),
            sockets_created: Arc::new(AtomicUsize::new(0)),
            socket_budget,
        }
    }

    /// A socket in the pod netns, counted against the lookup's socket budget.
    async fn pod_socket(&self, peer: SocketAddr, ty: Type) -> io::Result<socket2::Socket> {
        if self.sockets_created.fetch_add(1, Ordering::Relaxed) >= self.socket_budget {
            return Err(io::Error::other("DNS probe socket budget exhausted"));
        }
        self.factory
            .socket(
                &self.netns,
                Domain::for_address(peer),
                ty.nonblocking(),
                None,
            )
            .await
            .map_err(io::Error::other)
    }
}

type BoxedIo<T> = Pin<Box<dyn Send + Future<Output = io::Result<T>>>>;

impl RuntimeProvider for PodNetnsRuntime {
    type Handle = TokioHandle;
    type Timer = TokioTime;
    type Udp = tokio::net::UdpSocket;
    type Tcp = AsyncIoTokioAsStd<tokio::net::TcpStream>;

    fn create_handle(&self) -> Self::Handle {
        self.handle.clone()
    }

    fn connect_tcp(
        &self,
        server_addr: SocketAddr,
        bind_addr: Option<SocketAddr>,
        timeout: Option<Duration>,
    ) -> BoxedIo<Self::Tcp> {
        let runtime = self.clone();
        Box::pin(async move {
            let socket = runtime.pod_socket(server_addr, Type::STREAM).await?;
            if let Some(bind_addr) = bind_addr {
                socket.bind(&bind_addr.into())?;
            }
            socket.set_tcp_nodelay(true)?;
            let connecting =
                tokio::net::TcpSocket::from_std_stream(socket.into()).connect(server_addr);
            let stream = tokio::time::timeout(timeout.unwrap_or(TCP_CONNECT_TIMEOUT), connecting)
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TCP connect timed out"))??;
            Ok(AsyncIoTokioAsStd(stream))
        })
    }

    fn bind_udp(&self, local_addr: SocketAddr, server_addr: SocketAddr) -> BoxedIo<Self::Udp> {
        let runtime = self.clone();
        Box::pin(async move {
            let socket = runtime.pod_socket(server_addr, Type::DGRAM).await?;
            socket.bind(&local_addr.into())?;
            tokio::net::UdpSocket::from_std(socket.into())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD_RESOLV_CONF: &[u8] = b"search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.244.2.12\noptions ndots:5\n";

    #[test]
    fn pod_resolv_conf_is_parsed_and_probe_options_are_forced() {
        let config = DnsConfig::from_resolv_conf(POD_RESOLV_CONF, "test").unwrap();
        assert_eq!(
            config.nameservers(),
            vec!["10.244.2.12".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(config.ndots(), 5);
        assert_eq!(config.search().len(), 3);
        let options = config.probe_options(Duration::from_millis(500), Lookup::ARecords);
        assert_eq!(options.use_hosts_file, ResolveHosts::Never);
        assert_eq!(options.cache_size, 0);
        assert_eq!(options.attempts, 1);
        assert_eq!(options.timeout, Duration::from_millis(500));
        assert!(options.os_port_selection);
        // A host target asks for both families at once, with the same forced options.
        let host = config.probe_options(Duration::from_millis(500), Lookup::HostAddresses);
        assert_eq!(host.ip_strategy, LookupIpStrategy::Ipv4AndIpv6);
        assert_eq!(host.cache_size, 0);
        assert_eq!(host.attempts, 1);
    }

    #[test]
    fn resolv_conf_without_nameserver_is_refused() {
        // hickory refuses it itself; our own check backs that up.
        let error = DnsConfig::from_resolv_conf(b"search x\n", "test").unwrap_err();
        assert!(
            matches!(
                error.metric_label(),
                "resolv_conf_invalid" | "no_nameservers"
            ),
            "{error}"
        );
    }
}
