//! [`SocketFactory`]: sockets born in another network namespace, without ever moving a tokio
//! thread.
//!
//! Data flow: `socket(&handle, …)` (any async task) -> request over a channel -> a hop thread
//! owned by this module -> `setns(pod)`, `socket()` × n, `setns(home)` ([`super::sys`]) ->
//! each socket checked with `SIOCGSKNS` against the handle's inode -> reply over a oneshot.
//! Sockets carry their namespace with them, so everything after creation (options, bind,
//! connect, I/O) happens on the normal runtime.
//!
//! Why threads of our own: a tokio blocking thread that panics inside a namespace window is
//! caught and reused, and the next unrelated task (say the API client's `getaddrinfo`) would
//! then run inside the pod. Here the window cannot panic, a drop guard returns home on unwind,
//! returning home failing aborts the process, and a request that panics after the window is
//! caught, the thread's namespace re-checked (abort if not home), and the thread keeps serving.
//!
//! One hop costs a cross-thread wake-up each way (~5 µs CPU measured, against ~2.5 µs for a
//! socket made at home); `sockets(&handle, n, …)` spreads it over a batch, and
//! `pooled_socket` (the probes' path) keeps the rest of a batch as spares in the handle, which
//! close with it.

use std::fs;
use std::os::fd::AsFd;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::oneshot;
use tracing::{debug, error, info_span, warn};

use super::handle::{NetnsHandle, current_thread_netns_inode, netns_inode};
use super::spares::{DEFAULT_SPARE_BUDGET, SpareBudget};
use super::sys::{self, RawSocketKind, WindowError};
use super::{Error, Result};

/// Largest batch one hop will create.
pub const MAX_BATCH: usize = 1024;

/// How many hop threads to run. One is enough for tens of thousands of sockets per second;
/// more only help when many netns are probed at once on many cores.
#[derive(Clone, Copy, Debug)]
pub struct FactoryConfig {
    pub hop_threads: usize,
    /// Spare sockets held at once across every namespace (see [`SpareBudget`]).
    pub spare_budget: usize,
}

impl Default for FactoryConfig {
    fn default() -> Self {
        Self {
            hop_threads: 1,
            spare_budget: DEFAULT_SPARE_BUDGET,
        }
    }
}

/// Creates sockets inside network namespaces on threads it owns. Cheap to clone; the hop
/// threads exit when the last clone is dropped.
#[derive(Clone)]
pub struct SocketFactory {
    shared: Arc<Shared>,
}

struct Shared {
    home: NetnsHandle,
    lanes: Vec<mpsc::Sender<Request>>,
    /// Kernel thread ids of the hop threads, for [`SocketFactory::hop_threads_not_home`].
    hop_tids: Vec<u32>,
    next_lane: AtomicUsize,
    hop: Arc<HopState>,
    spare_budget: Arc<SpareBudget>,
}

/// What every hop thread shares (not the senders: the threads must not keep themselves alive).
struct HopState {
    home: NetnsHandle,
    /// Requests served (one namespace hop each).
    hops: AtomicU64,
    #[cfg(test)]
    panic_after_create: std::sync::atomic::AtomicBool,
}

struct Request {
    target: NetnsHandle,
    kind: RawSocketKind,
    count: usize,
    reply: oneshot::Sender<Result<Vec<Socket>>>,
}

// === impl SocketFactory ===

impl SocketFactory {
    /// Starts a factory with one hop thread; home is this process's netns (`/proc/self/ns/net`).
    pub fn start() -> Result<Self> {
        Self::with_config(FactoryConfig::default())
    }

    pub fn with_config(config: FactoryConfig) -> Result<Self> {
        let home = NetnsHandle::current_process()?;
        let hop = Arc::new(HopState {
            home: home.clone(),
            hops: AtomicU64::new(0),
            #[cfg(test)]
            panic_after_create: std::sync::atomic::AtomicBool::new(false),
        });
        let mut lanes = Vec::new();
        let mut hop_tids = Vec::new();
        for lane in 0..config.hop_threads.max(1) {
            let (sender, tid) = spawn_hop_thread(lane, hop.clone())?;
            lanes.push(sender);
            hop_tids.push(tid);
        }
        Ok(Self {
            shared: Arc::new(Shared {
                home,
                lanes,
                hop_tids,
                next_lane: AtomicUsize::new(0),
                hop,
                spare_budget: SpareBudget::new(config.spare_budget),
            }),
        })
    }

    /// The namespace the hop threads return to.
    pub fn home(&self) -> &NetnsHandle {
        &self.shared.home
    }

    /// Namespace hops served so far (batches count once): a counter for metrics and tests.
    pub fn hops(&self) -> u64 {
        self.shared.hop.hops.load(Ordering::Relaxed)
    }

    /// Hop threads whose netns is not home right now, as `(tid, inode)`. Between requests every
    /// hop thread is home, so with no request in flight this must be empty; a thread serving a
    /// request may legitimately be inside its window.
    pub fn hop_threads_not_home(&self) -> std::io::Result<Vec<(u32, u64)>> {
        let mut not_home = Vec::new();
        for &tid in &self.shared.hop_tids {
            let inode = netns_inode(format!("/proc/self/task/{tid}/ns/net"))?;
            if inode != self.shared.home.inode() {
                not_home.push((tid, inode));
            }
        }
        Ok(not_home)
    }

    /// One socket in `netns`, verified to live there. Set options after it returns.
    pub async fn socket(
        &self,
        netns: &NetnsHandle,
        domain: Domain,
        ty: Type,
        protocol: Option<Protocol>,
    ) -> Result<Socket> {
        let mut sockets = self.sockets(netns, 1, domain, ty, protocol).await?;
        sockets.pop().ok_or(Error::HopFailed)
    }

    /// `count` sockets in `netns` for the price of one hop. All or nothing.
    pub async fn sockets(
        &self,
        netns: &NetnsHandle,
        count: usize,
        domain: Domain,
        ty: Type,
        protocol: Option<Protocol>,
    ) -> Result<Vec<Socket>> {
        self.sockets_of(netns, count, raw_kind(domain, ty, protocol))
            .await
    }

    async fn sockets_of(
        &self,
        netns: &NetnsHandle,
        count: usize,
        kind: RawSocketKind,
    ) -> Result<Vec<Socket>> {
        match self.submit(netns, count, kind)? {
            Submitted::Done(result) => result,
            Submitted::Pending(reply) => reply.await.map_err(|_| Error::HopFailed)?,
        }
    }

    /// One socket like [`Self::socket`], taken from the spares waiting in the handle. When none
    /// is left, callers queue and ONE hop makes a batch for all of them (at least
    /// [`super::SPARE_BATCH`]); what is not taken waits in the handle (at most
    /// [`super::MAX_SPARES`]) and closes with it. Spreads the hop's cost over a batch on the
    /// probe hot path.
    pub async fn pooled_socket(
        &self,
        netns: &NetnsHandle,
        domain: Domain,
        ty: Type,
        protocol: Option<Protocol>,
    ) -> Result<Socket> {
        self.pooled_socket_as(netns, domain, ty, protocol, None)
            .await
    }

    /// [`Self::pooled_socket`] made with filesystem uid `fsuid` (a service-mesh proxy's uid,
    /// which the mesh's redirect rules exempt). Sockets of each identity have spares of their
    /// own. Without CAP_SETUID: [`Error::Identity`].
    pub async fn pooled_socket_as(
        &self,
        netns: &NetnsHandle,
        domain: Domain,
        ty: Type,
        protocol: Option<Protocol>,
        fsuid: Option<u32>,
    ) -> Result<Socket> {
        let kind = RawSocketKind {
            fsuid,
            ..raw_kind(domain, ty, protocol)
        };
        let spares = netns.spares(kind);
        if let Some(spare) = spares.take() {
            return Ok(spare);
        }
        let queued = spares.queue();
        let _refilling = spares.refill.lock().await;
        // Whoever held the lock before may have refilled for us.
        if let Some(spare) = spares.take() {
            return Ok(spare);
        }
        let budget = &self.shared.spare_budget;
        let refill = spares.plan_refill(budget);
        drop(queued);
        let mut sockets = match self.sockets_of(netns, refill.batch, kind).await {
            Ok(sockets) => sockets,
            // Out of descriptors for a whole batch (a batch is all or nothing): one socket,
            // no spares, may still fit. Under fd pressure probes go on one at a time.
            Err(Error::Socket { source })
                if refill.batch > 1
                    && matches!(source.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) =>
            {
                budget.give_back(refill.reserved);
                return self
                    .sockets_of(netns, 1, kind)
                    .await?
                    .pop()
                    .ok_or(Error::HopFailed);
            }
            Err(error) => {
                budget.give_back(refill.reserved);
                return Err(error);
            }
        };
        let Some(socket) = sockets.pop() else {
            budget.give_back(refill.reserved);
            return Err(Error::HopFailed);
        };
        spares.keep(sockets, budget, refill.reserved);
        Ok(socket)
    }

    /// Spare sockets held now across every namespace.
    pub fn spares_held(&self) -> usize {
        self.shared.spare_budget.held()
    }

    /// [`Self::sockets`] for threads outside any async runtime (benchmarks, sync callers).
    /// Panics if called from inside a tokio runtime, like every blocking receive.
    pub fn sockets_blocking(
        &self,
        netns: &NetnsHandle,
        count: usize,
        domain: Domain,
        ty: Type,
        protocol: Option<Protocol>,
    ) -> Result<Vec<Socket>> {
        match self.submit(netns, count, raw_kind(domain, ty, protocol))? {
            Submitted::Done(result) => result,
            Submitted::Pending(reply) => reply.blocking_recv().map_err(|_| Error::HopFailed)?,
        }
    }

    /// Checks that `ip` is a local address inside `netns` by binding a UDP socket to `ip:0`.
    /// `EADDRNOTAVAIL` means the handle is stale or belongs to another pod.
    pub async fn check_address_is_local(
        &self,
        netns: &NetnsHandle,
        ip: std::net::IpAddr,
    ) -> Result<()> {
        let local = std::net::SocketAddr::new(ip, 0);
        let socket = self
            .socket(netns, Domain::for_address(local), Type::DGRAM, None)
            .await?;
        socket.bind(&local.into()).map_err(|source| {
            if source.raw_os_error() == Some(libc::EADDRNOTAVAIL) {
                Error::AddressNotLocal {
                    ip,
                    netns: netns.to_string(),
                }
            } else {
                Error::Socket { source }
            }
        })
    }

    fn submit(&self, netns: &NetnsHandle, count: usize, kind: RawSocketKind) -> Result<Submitted> {
        if count == 0 || count > MAX_BATCH {
            return Err(Error::BatchSize { count });
        }
        // A socket with another identity is made on a hop thread even at home: fsuid, like
        // the namespace, changes only on threads this module owns.
        if netns.same_netns(&self.shared.home) && kind.fsuid.is_none() {
            // No namespace switch needed: create right here.
            return Ok(Submitted::Done(create_at_home(netns, kind, count)));
        }
        let (reply, receive) = oneshot::channel();
        let lane = self.shared.next_lane.fetch_add(1, Ordering::Relaxed) % self.shared.lanes.len();
        let request = Request {
            target: netns.clone(),
            kind,
            count,
            reply,
        };
        self.shared.lanes[lane]
            .send(request)
            .map_err(|_| Error::HopFailed)?;
        Ok(Submitted::Pending(receive))
    }

    /// Test hook: the next request panics on its hop thread right after its sockets were made
    /// (outside the namespace window).
    #[cfg(test)]
    pub(crate) fn panic_on_next_request(&self) {
        self.shared
            .hop
            .panic_after_create
            .store(true, Ordering::SeqCst);
    }
}

impl std::fmt::Debug for SocketFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketFactory")
            .field("home", &self.shared.home)
            .field("hop_threads", &self.shared.lanes.len())
            .finish()
    }
}

fn raw_kind(domain: Domain, ty: Type, protocol: Option<Protocol>) -> RawSocketKind {
    RawSocketKind {
        domain: domain.into(),
        ty: ty.into(),
        protocol: protocol.map(i32::from).unwrap_or(0),
        fsuid: None,
    }
}

enum Submitted {
    Done(Result<Vec<Socket>>),
    Pending(oneshot::Receiver<Result<Vec<Socket>>>),
}

// === hop threads ===

fn spawn_hop_thread(lane: usize, hop: Arc<HopState>) -> Result<(mpsc::Sender<Request>, u32)> {
    let (requests_tx, requests_rx) = mpsc::channel::<Request>();
    let (ready_tx, ready_rx) = mpsc::channel::<Result<u32>>();
    thread::Builder::new()
        .name(format!("netreach-netns-hop-{lane}"))
        .spawn(move || {
            let span = info_span!("netns_hop", lane);
            let _entered = span.enter();
            // A new thread inherits its creator's netns; refuse to serve from anywhere but home.
            let born_home = match current_thread_netns_inode() {
                Ok(inode) if inode == hop.home.inode() => current_tid(),
                Ok(inode) => Err(Error::NotHome {
                    inode,
                    home: hop.home.inode(),
                }),
                Err(source) => Err(Error::Socket { source }),
            };
            let ok = born_home.is_ok();
            let _ = ready_tx.send(born_home);
            if ok {
                serve_requests(&hop, &requests_rx);
            }
        })
        .map_err(|source| Error::Spawn { source })?;
    let tid = ready_rx.recv().map_err(|_| Error::HopFailed)??;
    Ok((requests_tx, tid))
}

/// The calling thread's kernel id, from the `/proc/thread-self` link (`<pid>/task/<tid>`).
fn current_tid() -> Result<u32> {
    let path = std::path::Path::new("/proc/thread-self");
    let target = fs::read_link(path).map_err(|source| Error::Proc {
        path: path.to_path_buf(),
        source,
    })?;
    target
        .file_name()
        .and_then(|name| name.to_str())
        .and_then(|name| name.parse().ok())
        .ok_or_else(|| Error::Proc {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "no thread id"),
        })
}

fn serve_requests(hop: &HopState, requests: &mpsc::Receiver<Request>) {
    while let Ok(request) = requests.recv() {
        let served = panic::catch_unwind(AssertUnwindSafe(|| serve(hop, request)));
        if served.is_err() {
            // The reply sender was dropped during unwinding: the caller sees `HopFailed`.
            ensure_home_or_abort(&hop.home);
            warn!("a socket request panicked outside the namespace window; thread is home");
        }
    }
    debug!("socket factory dropped; hop thread exits");
}

fn serve(hop: &HopState, request: Request) {
    let Request {
        target,
        kind,
        count,
        reply,
    } = request;
    let result = create_in_netns(&hop.home, &target, kind, count);
    hop.hops.fetch_add(1, Ordering::Relaxed);
    #[cfg(test)]
    if hop.panic_after_create.swap(false, Ordering::SeqCst) {
        panic!("injected test panic after socket creation");
    }
    // The caller may have given up (timeout); its sockets are then closed here.
    let _ = reply.send(result);
}

fn create_in_netns(
    home: &NetnsHandle,
    target: &NetnsHandle,
    kind: RawSocketKind,
    count: usize,
) -> Result<Vec<Socket>> {
    let fds =
        sys::sockets_in_netns(home.as_fd(), target.as_fd(), kind, count).map_err(|error| {
            match error {
                WindowError::Enter(source) => Error::Enter {
                    netns: target.to_string(),
                    source,
                },
                WindowError::Socket(source) => Error::Socket { source },
                WindowError::Identity { fsuid } => Error::Identity { fsuid },
            }
        })?;
    verify(target, fds.into_iter().map(Socket::from).collect())
}

fn create_at_home(home: &NetnsHandle, kind: RawSocketKind, count: usize) -> Result<Vec<Socket>> {
    let mut sockets = Vec::with_capacity(count);
    for _ in 0..count {
        let socket = Socket::new(
            Domain::from(kind.domain),
            Type::from(kind.ty),
            (kind.protocol != 0).then(|| Protocol::from(kind.protocol)),
        )
        .map_err(|source| Error::Socket { source })?;
        sockets.push(socket);
    }
    verify(home, sockets)
}

/// The batch must report the target's namespace inode (`SIOCGSKNS`); otherwise all its
/// sockets are closed.
///
/// Checked on the batch's first and last socket, which proves every socket of it: a socket
/// belongs for life to the namespace its creating thread was in at `socket()`, and a batch is
/// one uninterrupted run of `socket()` calls on one thread (for a hop, inside one window of
/// [`sys::sockets_in_netns`]) with nothing in between that could change the thread's namespace
/// (only `setns`/`unshare` on that thread itself can). So the namespace was the same for all of
/// them and the first and last sockets bracket the run. Each check costs an ioctl that opens a
/// namespace fd, an fstat and a close (~1 µs); per socket it was a measurable share of a probe.
fn verify(target: &NetnsHandle, sockets: Vec<Socket>) -> Result<Vec<Socket>> {
    let bracket: &[&Socket] = match sockets.as_slice() {
        [] => &[],
        [only] => &[only],
        [first, .., last] => &[first, last],
    };
    for socket in bracket {
        let actual =
            sys::socket_netns_inode(socket.as_fd()).map_err(|source| Error::Verify { source })?;
        if actual != target.inode() {
            error!(expected = target.inode(), actual, netns = %target, "socket born in the wrong netns");
            return Err(Error::WrongNetns {
                expected: target.inode(),
                actual,
            });
        }
    }
    Ok(sockets)
}

fn ensure_home_or_abort(home: &NetnsHandle) {
    match current_thread_netns_inode() {
        Ok(inode) if inode == home.inode() => {}
        _ => std::process::abort(),
    }
}

/// Threads of this process whose network namespace is not `home`, as `(tid, inode)`.
/// Defence in depth: the agent can run it at startup or periodically; tests run it after
/// provoked failures.
pub fn threads_outside(home: &NetnsHandle) -> std::io::Result<Vec<(u32, u64)>> {
    let mut outside = Vec::new();
    for entry in fs::read_dir("/proc/self/task")? {
        let entry = entry?;
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        match netns_inode(entry.path().join("ns/net")) {
            Ok(inode) if inode != home.inode() => outside.push((tid, inode)),
            Ok(_) => {}
            // The thread exited between listing and stat.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
    }
    Ok(outside)
}

#[cfg(test)]
mod tests;
