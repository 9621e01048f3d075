//! What a [`Testbed`](super::Testbed) exposes about its nodes, pods and DNS server.

use std::{net::Ipv4Addr, path::PathBuf};

use crate::{
    cgroup::CgroupLayout,
    scenario::{Ipv4Cidr, PodRef, Protocol},
};

/// A simulated node: a bridge in the router namespace.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NodeHandle {
    /// Node name from the scenario.
    pub name: String,
    /// 1-based index.
    pub index: u8,
    /// Pod CIDR, `10.244.<index>.0/24`.
    pub cidr: Ipv4Cidr,
    /// Gateway on the bridge, `10.244.<index>.1`.
    pub gateway: Ipv4Addr,
    /// Bridge name inside the router namespace, `br<index>`.
    pub bridge: String,
}

/// A simulated pod (one `Running` Pod with a node).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PodHandle {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `metadata.uid` (from the scenario, or generated).
    pub uid: String,
    /// Node name.
    pub node: String,
    /// Pod IP; `None` for hostNetwork pods.
    pub ip: Option<Ipv4Addr>,
    /// `spec.hostNetwork`: no netns of its own; its processes run in the host netns.
    pub host_network: bool,
    /// Name of its netns (`ip netns` name); `None` for hostNetwork pods.
    pub netns_name: Option<String>,
    /// `/run/netns/<netns_name>`; `None` for hostNetwork pods.
    pub netns_path: Option<PathBuf>,
    /// The holder process (`comm` is `pause`), in the sandbox container's cgroup.
    pub pause_pid: u32,
    /// The app process serving the listeners, in the app container's cgroup; it sees the pod's
    /// resolv.conf at `/proc/<app_pid>/root/etc/resolv.conf`. `None` for hostNetwork pods.
    pub app_pid: Option<u32>,
    /// CRI-O's conmon (in the pod's cgroup but in the host netns), for [`CgroupLayout::CrioSystemd`].
    pub conmon_pid: Option<u32>,
    /// Which runtime / driver layout its cgroups follow.
    pub cgroup_layout: CgroupLayout,
    /// The sandbox (pause) container's cgroup as `/proc/<pid>/cgroup` shows it in every
    /// hierarchy, e.g. `/netreach-testbed-<prefix>/kubepods.slice/…/cri-containerd-<id>.scope`.
    pub sandbox_cgroup: String,
    /// The app container's cgroup, same form.
    pub app_cgroup: String,
    /// Sandbox container id (64 hex digits).
    pub sandbox_id: String,
    /// App container id (64 hex digits).
    pub app_container_id: String,
    /// Listeners served (container ports minus `closed` minus the DNS server's port 53).
    pub listeners: Vec<(Protocol, u16)>,
    /// Router-side veth of its `eth0` (in the router netns); `None` for hostNetwork pods.
    pub veth: Option<String>,
    /// The app container's cgroup relative to the run's parent cgroup.
    pub(crate) app_rel: String,
}

impl PodHandle {
    /// `namespace/name`.
    pub fn pod_ref(&self) -> PodRef {
        PodRef::new(&self.namespace, &self.name)
    }
}

/// The cluster DNS server.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DnsHandle {
    /// The pod dnsmasq runs in.
    pub pod: PodRef,
    /// Its IP (port 53, UDP and TCP).
    pub ip: Ipv4Addr,
    /// dnsmasq's PID (in the pod's app container cgroup).
    pub pid: u32,
    /// dnsmasq's query log.
    pub log_path: PathBuf,
}
