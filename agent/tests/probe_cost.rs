//! Cost measurements, not assertions (ignored by default; timing has no place in CI):
//!
//! ```text
//! cargo test --release -p netreach --test probe_cost -- --ignored --nocapture --test-threads 1
//! ```
//!
//! Prints CPU µs (this process: caller, runtime, hop thread, and the kernel work charged to
//! them) and wall µs per socket from the factory (one at a time, batched) and per TCP probe
//! (sequential, 64 in flight), next to a tokio connect on sockets made beforehand (the same
//! path minus the factory hop). The listener is a separate process in the dst netns, so its
//! CPU is not counted. Needs root, nft not needed, python3 for the listener.

#[macro_use]
mod netns_support;

use std::net::SocketAddr;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use netns_support::{DST_IP, Topology, ip};
use netreach::netns::{NetnsHandle, SocketFactory};
use netreach::probe::{Outcome, Prober};
use socket2::{Domain, Type};

/// Process CPU time (all threads, user + system) from /proc/self/stat, in µs.
fn process_cpu_micros() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("stat");
    let after_comm = &stat[stat.rfind(')').expect("comm") + 1..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are the 12th and 13th after comm; ticks of 10 ms.
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    ticks as f64 * 10_000.0
}

struct Measured {
    cpu_us: f64,
    wall_us: f64,
}

async fn measure<F, Fut>(count: usize, run: F) -> Measured
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let cpu = process_cpu_micros();
    let wall = Instant::now();
    run().await;
    Measured {
        cpu_us: (process_cpu_micros() - cpu) / count as f64,
        wall_us: wall.elapsed().as_secs_f64() * 1e6 / count as f64,
    }
}

struct Listener(Child);

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn python_listener(netns: &str, addr: SocketAddr) -> Listener {
    let program = format!(
        "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
         s.bind(('{}',{}))\ns.listen(4096)\nwhile True:\n    c,_=s.accept()\n    c.close()\n",
        addr.ip(),
        addr.port()
    );
    let child = Command::new("ip")
        .args(["netns", "exec", netns, "python3", "-c", &program])
        .spawn()
        .expect("python3 listener");
    Listener(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run with --ignored --nocapture in release"]
async fn factory_and_tcp_probe_cost() {
    require_root!();
    let topology = Topology::new();
    let target = SocketAddr::new(ip(DST_IP), 8080);
    let _listener = python_listener(&topology.dst.name, target);
    let factory = SocketFactory::start().expect("factory");
    let prober = Prober::new(factory.clone());
    let src = NetnsHandle::open(topology.src.path()).expect("src");
    // Wait for the listener (bounded).
    for _ in 0..100 {
        let probe = prober.probe_tcp(&src, target, Duration::from_secs(1)).await;
        if probe.is_ok_and(|o| o.outcome == Outcome::Open) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    const SOCKETS: usize = 20_000;
    let single = measure(SOCKETS, || async {
        for _ in 0..SOCKETS {
            drop(
                factory
                    .socket(&src, Domain::IPV4, Type::STREAM, None)
                    .await
                    .expect("socket"),
            );
        }
    })
    .await;
    let batched = measure(SOCKETS, || async {
        for _ in 0..SOCKETS / 64 {
            drop(
                factory
                    .sockets(&src, 64, Domain::IPV4, Type::STREAM, None)
                    .await
                    .expect("batch"),
            );
        }
    })
    .await;
    let at_home = factory.home().clone();
    let home = measure(SOCKETS, || async {
        for _ in 0..SOCKETS {
            drop(
                factory
                    .socket(&at_home, Domain::IPV4, Type::STREAM, None)
                    .await
                    .expect("socket"),
            );
        }
    })
    .await;
    println!(
        "factory socket, one per hop : {:7.1} µs CPU {:7.1} µs wall",
        single.cpu_us, single.wall_us
    );
    println!(
        "factory socket, 64 per hop  : {:7.1} µs CPU {:7.1} µs wall",
        batched.cpu_us, batched.wall_us
    );
    println!(
        "home socket (no hop)        : {:7.1} µs CPU {:7.1} µs wall",
        home.cpu_us, home.wall_us
    );

    const PROBES: usize = 20_000;
    for concurrency in [1usize, 64] {
        let probe = measure(PROBES, || async {
            let mut tasks = tokio::task::JoinSet::new();
            for worker in 0..concurrency {
                let prober = prober.clone();
                let src = src.clone();
                let share = PROBES / concurrency + usize::from(worker < PROBES % concurrency);
                tasks.spawn(async move {
                    for _ in 0..share {
                        let observed = prober
                            .probe_tcp(&src, target, Duration::from_secs(3))
                            .await
                            .expect("probe");
                        assert_eq!(observed.outcome, Outcome::Open, "{observed:?}");
                    }
                });
            }
            while let Some(done) = tasks.join_next().await {
                done.expect("worker");
            }
        })
        .await;
        println!(
            "probe_tcp, {concurrency:2} in flight      : {:7.1} µs CPU {:7.1} µs wall",
            probe.cpu_us, probe.wall_us
        );

        // The same connects on sockets made beforehand in batches: the path minus the hop.
        let premade = measure(PROBES, || async {
            let mut tasks = tokio::task::JoinSet::new();
            for worker in 0..concurrency {
                let factory = factory.clone();
                let src = src.clone();
                let share = PROBES / concurrency + usize::from(worker < PROBES % concurrency);
                tasks.spawn(async move {
                    let mut sockets = Vec::new();
                    for _ in 0..share {
                        if sockets.is_empty() {
                            sockets = factory
                                .sockets(&src, 64, Domain::IPV4, Type::STREAM.nonblocking(), None)
                                .await
                                .expect("batch");
                        }
                        let socket = sockets.pop().expect("socket");
                        let stream = tokio::net::TcpSocket::from_std_stream(socket.into())
                            .connect(target)
                            .await
                            .expect("connect");
                        socket2::SockRef::from(&stream)
                            .set_linger(Some(Duration::ZERO))
                            .expect("linger");
                    }
                });
            }
            while let Some(done) = tasks.join_next().await {
                done.expect("worker");
            }
        })
        .await;
        println!(
            "premade sockets, {concurrency:2} in flight: {:7.1} µs CPU {:7.1} µs wall",
            premade.cpu_us, premade.wall_us
        );
    }
}
