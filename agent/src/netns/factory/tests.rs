//! Unit tests of the factory against anonymous namespaces (`unshare` on a throwaway thread:
//! nothing to name, nothing to tear down; the namespace dies with its last fd). Need root.

use std::os::fd::AsFd;
use std::panic;

use socket2::{Domain, Type};

use super::*;
use crate::netns::SpareBudget;
use crate::netns::handle::THREAD_NETNS_PATH;

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
    };
}

/// A fresh, empty network namespace held only by the returned handle.
fn anonymous_netns() -> NetnsHandle {
    thread::spawn(|| {
        sys::unshare_netns_on_this_thread().expect("unshare(CLONE_NEWNET)");
        NetnsHandle::open(THREAD_NETNS_PATH).expect("open own netns")
    })
    .join()
    .expect("netns thread")
}

#[tokio::test]
async fn sockets_live_in_the_target_netns_not_home() {
    require_root!();
    let factory = SocketFactory::start().unwrap();
    let pod = anonymous_netns();
    assert!(!pod.same_netns(factory.home()));
    let socket = factory
        .socket(&pod, Domain::IPV4, Type::STREAM, None)
        .await
        .unwrap();
    assert_eq!(
        sys::socket_netns_inode(socket.as_fd()).unwrap(),
        pod.inode()
    );
    let in_pod = threads_outside(factory.home())
        .unwrap()
        .into_iter()
        .filter(|(_, inode)| *inode == pod.inode())
        .count();
    assert_eq!(in_pod, 0);
}

#[tokio::test]
async fn a_batch_is_one_hop_and_all_in_the_target() {
    require_root!();
    let factory = SocketFactory::start().unwrap();
    let pod = anonymous_netns();
    let sockets = factory
        .sockets(&pod, 64, Domain::IPV4, Type::DGRAM, None)
        .await
        .unwrap();
    assert_eq!(sockets.len(), 64);
    for socket in &sockets {
        assert_eq!(
            sys::socket_netns_inode(socket.as_fd()).unwrap(),
            pod.inode()
        );
    }
    for count in [0, MAX_BATCH + 1] {
        let error = factory
            .sockets(&pod, count, Domain::IPV4, Type::DGRAM, None)
            .await
            .unwrap_err();
        assert_eq!(error.metric_label(), "batch_size");
    }
}

#[tokio::test]
async fn home_sockets_need_no_hop() {
    require_root!();
    let factory = SocketFactory::start().unwrap();
    let home = factory.home().clone();
    let socket = factory
        .socket(&home, Domain::IPV6, Type::STREAM, None)
        .await
        .unwrap();
    assert_eq!(
        sys::socket_netns_inode(socket.as_fd()).unwrap(),
        home.inode()
    );
}

/// (a) A panic on the request path is caught outside the namespace window; afterwards no
/// thread of the process is in a foreign netns, and the hop thread still serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_request_leaves_no_thread_outside_home() {
    require_root!();
    let factory = SocketFactory::with_config(FactoryConfig {
        hop_threads: 2,
        ..FactoryConfig::default()
    })
    .unwrap();
    let pod = anonymous_netns();
    for _ in 0..2 {
        // One panic per lane (requests are spread round-robin).
        factory.panic_on_next_request();
        let error = factory
            .socket(&pod, Domain::IPV4, Type::STREAM, None)
            .await
            .unwrap_err();
        assert_eq!(error.metric_label(), "hop_failed");
        // Other tests of this binary run in parallel with throwaway threads in their own
        // namespaces; this test's namespace must hold no thread at all.
        let stranded: Vec<_> = threads_outside(factory.home())
            .unwrap()
            .into_iter()
            .filter(|(_, inode)| *inode == pod.inode())
            .collect();
        assert_eq!(stranded, vec![], "a thread was left in the pod netns");
        assert_eq!(factory.hop_threads_not_home().unwrap(), vec![]);
    }
    // Both lanes still serve (round-robin): their threads survived the caught panics.
    for _ in 0..2 {
        let socket = factory
            .socket(&pod, Domain::IPV4, Type::STREAM, None)
            .await
            .unwrap();
        assert_eq!(
            sys::socket_netns_inode(socket.as_fd()).unwrap(),
            pod.inode()
        );
    }
}

#[tokio::test]
async fn pooled_sockets_come_from_one_hop_per_batch() {
    require_root!();
    let factory = SocketFactory::start().unwrap();
    let pod = anonymous_netns();
    let stream = pod.spares(raw_kind(Domain::IPV4, Type::STREAM, None));
    let first = factory
        .pooled_socket(&pod, Domain::IPV4, Type::STREAM, None)
        .await
        .unwrap();
    assert_eq!(factory.hops(), 1);
    assert_eq!(stream.len(), crate::netns::SPARE_BATCH - 1);
    for waiting in (0..crate::netns::SPARE_BATCH - 1).rev() {
        let socket = factory
            .pooled_socket(&pod, Domain::IPV4, Type::STREAM, None)
            .await
            .unwrap();
        assert_eq!(
            sys::socket_netns_inode(socket.as_fd()).unwrap(),
            pod.inode()
        );
        assert_eq!(stream.len(), waiting);
    }
    assert_eq!(factory.hops(), 1, "all from the first batch");
    // Other kinds are kept apart.
    let datagram = pod.spares(raw_kind(Domain::IPV4, Type::DGRAM, None));
    let _udp = factory
        .pooled_socket(&pod, Domain::IPV4, Type::DGRAM, None)
        .await
        .unwrap();
    assert_eq!(datagram.len(), crate::netns::SPARE_BATCH - 1);
    assert_eq!(stream.len(), 0);
    // The cap holds.
    let many = factory
        .sockets(&pod, MAX_BATCH, Domain::IPV4, Type::DGRAM, None)
        .await
        .unwrap();
    datagram.keep(many, &SpareBudget::new(usize::MAX), 0);
    assert_eq!(datagram.len(), crate::netns::MAX_SPARES);
    drop(first);
}

/// The factory-wide budget caps the spares of every namespace together; taking a spare or
/// dropping its namespace gives the room back, and an exhausted budget shrinks refills.
#[tokio::test]
async fn the_spare_budget_bounds_spares_across_namespaces() {
    require_root!();
    let factory = SocketFactory::with_config(FactoryConfig {
        spare_budget: 20,
        ..FactoryConfig::default()
    })
    .unwrap();
    let pods: Vec<NetnsHandle> = (0..4).map(|_| anonymous_netns()).collect();
    let mut in_use = Vec::new();
    for pod in &pods {
        in_use.push(
            factory
                .pooled_socket(pod, Domain::IPV4, Type::STREAM, None)
                .await
                .unwrap(),
        );
        assert!(factory.spares_held() <= 20, "{}", factory.spares_held());
    }
    // 15 spares after the first pod, 5 after the second, none for the last two: the budget
    // is reserved before each hop, so no refill ever makes more than it may keep.
    assert_eq!(factory.spares_held(), 20);
    assert_eq!(
        pods[1]
            .spares(raw_kind(Domain::IPV4, Type::STREAM, None))
            .len(),
        5
    );
    let last = pods[3].spares(raw_kind(Domain::IPV4, Type::STREAM, None));
    assert_eq!(last.len(), 0);
    // Taking a spare returns its room.
    let first = pods[0].spares(raw_kind(Domain::IPV4, Type::STREAM, None));
    let before = first.len();
    in_use.push(
        factory
            .pooled_socket(&pods[0], Domain::IPV4, Type::STREAM, None)
            .await
            .unwrap(),
    );
    assert_eq!(first.len(), before - 1);
    assert_eq!(factory.spares_held(), 19);
    // A namespace that goes away takes its spares' room with it.
    drop(first);
    let mut pods = pods;
    let gone = pods.remove(0);
    drop(gone);
    assert_eq!(factory.spares_held(), 5);
}

/// A burst of callers on an empty pool costs one hop: everyone gets a socket from one batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_on_an_empty_pool_is_one_refill() {
    require_root!();
    let factory = SocketFactory::start().unwrap();
    let pod = anonymous_netns();
    let stream = pod.spares(raw_kind(Domain::IPV4, Type::STREAM, None));
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let factory = factory.clone();
        let pod = pod.clone();
        tasks.push(tokio::spawn(async move {
            factory
                .pooled_socket(&pod, Domain::IPV4, Type::STREAM, None)
                .await
        }));
    }
    let mut sockets = Vec::new();
    for task in tasks {
        sockets.push(task.await.unwrap().unwrap());
    }
    assert_eq!(sockets.len(), 40);
    // Queued callers share a refill: a handful of hops, not one per caller.
    assert!(
        factory.hops() <= 3,
        "{} hops for 40 sockets",
        factory.hops()
    );
    assert!(stream.len() < crate::netns::MAX_SPARES);
}

/// The drop guard of the window returns a thread home even when the window unwinds.
#[test]
fn the_window_guard_returns_home_on_unwind() {
    require_root!();
    let home = NetnsHandle::current_process().unwrap();
    let pod = anonymous_netns();
    let home_for_thread = home.clone();
    let inode_after = thread::spawn(move || {
        sys::enter_netns_on_this_thread(pod.as_fd()).unwrap();
        assert_eq!(current_thread_netns_inode().unwrap(), pod.inode());
        let unwound = panic::catch_unwind(panic::AssertUnwindSafe(|| {
            sys::with_return_home_guard(home_for_thread.as_fd(), || {
                panic!("panic inside a namespace window");
            })
        }));
        assert!(unwound.is_err());
        current_thread_netns_inode().unwrap()
    })
    .join()
    .unwrap();
    assert_eq!(inode_after, home.inode());
}

#[test]
fn handles_refuse_files_that_are_not_namespaces() {
    let error = NetnsHandle::open("/proc/self/status").unwrap_err();
    assert_eq!(error.metric_label(), "not_a_netns");
    let error = NetnsHandle::open("/run/netns/nrnt-does-not-exist").unwrap_err();
    assert_eq!(error.metric_label(), "netns_gone");
}
