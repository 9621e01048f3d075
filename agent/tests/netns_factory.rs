//! The socket factory against real named namespaces: sockets live in the pod's netns, traffic
//! leaves with the pod's IP, and failures inside the namespace window leave no thread behind.
//! Needs root (CI runs as root).

#[macro_use]
mod netns_support;

use std::net::SocketAddr;
use std::time::Duration;

use netns_support::{DST_IP, Netns, SRC_IP, Topology, unique_prefix};
use netreach::netns::{
    NetnsHandle, SocketFactory, netns_inode, socket_netns_inode, threads_outside,
};
use socket2::{Domain, Protocol, Type};
use tokio::net::{TcpListener, TcpSocket};

/// Threads of this process currently inside `netns` (other tests' namespaces are ignored).
fn threads_inside(factory: &SocketFactory, netns: &NetnsHandle) -> Vec<(u32, u64)> {
    threads_outside(factory.home())
        .expect("list threads")
        .into_iter()
        .filter(|(_, inode)| *inode == netns.inode())
        .collect()
}

/// (b) A socket's netns inode (SIOCGSKNS) is the pod's, for handles opened from a path and
/// from a PID.
#[tokio::test]
async fn sockets_are_born_in_the_pod_netns() {
    require_root!();
    let pod = Netns::create(format!("{}-pod", unique_prefix()));
    let factory = SocketFactory::start().unwrap();
    let handle = NetnsHandle::open(pod.path()).unwrap();
    assert_eq!(handle.inode(), netns_inode(pod.path()).unwrap());
    assert_ne!(handle.inode(), factory.home().inode());

    let sockets = factory
        .sockets(&handle, 16, Domain::IPV4, Type::STREAM, None)
        .await
        .unwrap();
    for socket in &sockets {
        assert_eq!(socket_netns_inode(socket).unwrap(), handle.inode());
    }

    let mut holder = std::process::Command::new("ip")
        .args(["netns", "exec", &pod.name, "sleep", "30"])
        .spawn()
        .unwrap();
    // Wait until the holder has entered the namespace (bounded).
    let by_pid = (0..200)
        .find_map(|_| {
            let opened = NetnsHandle::from_pid(holder.id()).ok()?;
            if opened.inode() == handle.inode() {
                Some(opened)
            } else {
                std::thread::sleep(Duration::from_millis(5));
                None
            }
        })
        .expect("holder entered the pod netns");
    let socket = factory
        .socket(&by_pid, Domain::IPV4, Type::DGRAM, None)
        .await
        .unwrap();
    assert_eq!(socket_netns_inode(&socket).unwrap(), handle.inode());
    let _ = holder.kill();
    let _ = holder.wait();
}

/// (c) A server in another netns sees the pod's IP as the source of a factory socket's
/// connection; the listener itself was made by the factory in the destination netns.
#[tokio::test]
async fn the_server_sees_the_pod_ip_as_source() {
    require_root!();
    let topology = Topology::new();
    let factory = SocketFactory::start().unwrap();
    let src = NetnsHandle::open(topology.src.path()).unwrap();
    let dst = NetnsHandle::open(topology.dst.path()).unwrap();
    let server_addr = SocketAddr::from((DST_IP, 8080));

    let listener = factory
        .socket(&dst, Domain::IPV4, Type::STREAM, None)
        .await
        .unwrap();
    listener.set_reuse_address(true).unwrap();
    listener.bind(&server_addr.into()).unwrap();
    listener.listen(16).unwrap();
    listener.set_nonblocking(true).unwrap();
    let listener = TcpListener::from_std(listener.into()).unwrap();

    let client = factory
        .socket(&src, Domain::IPV4, Type::STREAM, None)
        .await
        .unwrap();
    client.set_nonblocking(true).unwrap();
    let client = TcpSocket::from_std_stream(client.into());
    let (connected, accepted) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(5), client.connect(server_addr)),
        tokio::time::timeout(Duration::from_secs(5), listener.accept()),
    );
    let stream = connected.expect("connect did not hang").expect("connect");
    let (_server_side, peer) = accepted.expect("accept did not hang").expect("accept");
    assert_eq!(peer.ip(), std::net::IpAddr::V4(SRC_IP));
    assert_eq!(
        stream.local_addr().unwrap().ip(),
        std::net::IpAddr::V4(SRC_IP)
    );
}

/// (a) Failures inside the window (socket() refused in the pod netns, a namespace that cannot
/// be entered) under concurrency leave no thread of the process in the pod's netns, and the
/// factory keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failures_in_the_window_leave_no_thread_in_the_pod() {
    require_root!();
    let pod = Netns::create(format!("{}-pod", unique_prefix()));
    let factory = SocketFactory::start().unwrap();
    let handle = NetnsHandle::open(pod.path()).unwrap();

    let mut tasks = Vec::new();
    for i in 0..64 {
        let factory = factory.clone();
        let handle = handle.clone();
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                // TCP over a datagram socket type: socket() fails inside the pod netns.
                factory
                    .sockets(&handle, 4, Domain::IPV4, Type::DGRAM, Some(Protocol::TCP))
                    .await
                    .map(|_| ())
            } else {
                factory
                    .sockets(&handle, 4, Domain::IPV4, Type::DGRAM, None)
                    .await
                    .map(|_| ())
            }
        }));
    }
    let mut failed = 0;
    for (i, task) in tasks.into_iter().enumerate() {
        let result = task.await.unwrap();
        if i % 2 == 0 {
            assert_eq!(result.unwrap_err().metric_label(), "socket_failed");
            failed += 1;
        } else {
            result.unwrap();
        }
    }
    assert_eq!(failed, 32);
    // Only now: while requests are in flight the hop thread is legitimately inside the window.
    assert_eq!(threads_inside(&factory, &handle), vec![]);
    assert_eq!(factory.hop_threads_not_home().unwrap(), vec![]);

    // A netns fd whose namespace cannot be entered (a user namespace's fd is not a netns).
    let not_net = NetnsHandle::open("/proc/self/ns/user").unwrap();
    let error = factory
        .socket(&not_net, Domain::IPV4, Type::DGRAM, None)
        .await
        .unwrap_err();
    assert_eq!(error.metric_label(), "setns_failed");
    assert_eq!(threads_inside(&factory, &handle), vec![]);

    let socket = factory
        .socket(&handle, Domain::IPV4, Type::DGRAM, None)
        .await
        .unwrap();
    assert_eq!(socket_netns_inode(&socket).unwrap(), handle.inode());
}

/// A handle keeps a namespace usable after its name is gone (the fd pins it), and a stale
/// handle is caught by binding the pod IP.
#[tokio::test]
async fn the_fd_pins_the_netns_and_the_pod_ip_check_catches_stale_handles() {
    require_root!();
    let factory = SocketFactory::start().unwrap();
    let handle;
    {
        let pod = Netns::create(format!("{}-pod", unique_prefix()));
        pod.ip(&["addr", "add", "10.244.250.9/32", "dev", "lo"]);
        handle = NetnsHandle::open(pod.path()).unwrap();
        factory
            .check_address_is_local(&handle, "10.244.250.9".parse().unwrap())
            .await
            .unwrap();
    } // `ip netns del` ran here.
    let socket = factory
        .socket(&handle, Domain::IPV4, Type::DGRAM, None)
        .await
        .unwrap();
    assert_eq!(socket_netns_inode(&socket).unwrap(), handle.inode());
    let error = factory
        .check_address_is_local(&handle, "10.244.250.10".parse().unwrap())
        .await
        .unwrap_err();
    assert_eq!(error.metric_label(), "stale_netns");
}
