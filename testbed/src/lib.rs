//! A simulated Kubernetes cluster on one Linux host, built from a scenario file.
//!
//! [`Scenario`] (docs/design.md, "Scenario file") → [`Testbed::start`] → a router network namespace
//! with no uplink and one bridge per node, one netns per pod with its IP and default route,
//! a `pause` holder and an app listener per pod in kubepods-style cgroups (containerd, CRI-O,
//! cgroupfs and docker layouts; cgroup v1, v2 and hybrid hosts), the pod's own resolv.conf,
//! dnsmasq as cluster DNS, and the scenario's enforcement rules and faults as nftables rules.
//! The agent then finds the pods exactly as on a real node: by UID in `/proc/*/cgroup`.
//!
//! Safety: every name carries a per-run prefix; all addresses are in 10.244.0.0/16 and exist
//! only inside namespaces the run created; nothing is connected to the host netns. Everything
//! is removed on drop, on panic (drop during unwinding) and, with
//! [`install_signal_teardown`], on SIGINT/SIGTERM. A run whose process died leaves leftovers
//! that [`Testbed::start`] refuses to start over and [`cleanup_leftovers`] (or the
//! `testbed-cleanup` binary) removes.
//!
//! ```no_run
//! let scenario = testbed::Scenario::from_file("scenario.yaml")?;
//! let tb = testbed::Testbed::start(&scenario)?;
//! let api = tb.pod("shop", "api").expect("in the scenario");
//! println!("{} is in {:?}", api.uid, api.netns_path);
//! # Ok::<(), testbed::Error>(())
//! ```
#![deny(unsafe_code)]

mod cgroup;
mod cleanup;
mod cmd;
mod error;
mod names;
mod nft;
mod plan;
pub mod scenario;
mod services;
mod testbed;

pub use cgroup::{CgroupHierarchy, CgroupLayout, cgroup_hierarchies};
pub use cleanup::{
    CleanupReport, Leftover, cleanup_leftovers, install_signal_teardown, residue, scan_leftovers,
};
pub use error::{Error, Result};
pub use names::{ETC_NETNS_DIR, NETNS_DIR, RUN_ROOT};
pub use scenario::{
    Action, ClosedPort, Dataplane, DnsAnswer, DnsConfig, Fault, Ipv4Cidr, Peer, PodRef, Protocol,
    Rule, RuleProtocol, Scenario,
};
pub use testbed::{
    DnsHandle, NodeHandle, PodHandle, SERVFAIL_UPSTREAM, TIMEOUT_UPSTREAM, Testbed, dnsmasq_args,
};
