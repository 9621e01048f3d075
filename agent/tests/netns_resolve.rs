//! The `/proc` resolver on real processes in kubepods-style cgroups: containerd/systemd,
//! CRI-O with conmon, cgroupfs with a static pod and no pause, cgroup v1 (hybrid hosts),
//! hostNetwork, ambiguity, unknown pods, and the registry's pod-IP validation. Needs root.

#[macro_use]
mod netns_support;

use std::net::IpAddr;

use netns_support::{Netns, PodProcesses, cgroup_v1_systemd_root, cgroup_v2_root, unique_prefix};
use netreach::netns::{
    NetnsHandle, PodNetnsRegistry, Resolution, SocketFactory, netns_inode, resolve_pod,
};
use netreach::probe::DnsConfig;

/// A random-looking but unique pod UID per call.
fn new_uid() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    let seed = format!("{:032x}", nanos ^ (u128::from(std::process::id()) << 64));
    let seed = &seed[seed.len() - 32..];
    format!(
        "{}-{}-4{}-8{}-{}",
        &seed[..8],
        &seed[8..12],
        &seed[13..16],
        &seed[17..20],
        &seed[20..32]
    )
}

fn systemd_pod_path(top: &str, uid: &str, container: &str) -> String {
    let slice_uid = uid.replace('-', "_");
    format!(
        "{top}/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{slice_uid}.slice/{container}"
    )
}

fn pod_of(resolution: Resolution) -> netreach::netns::PodNetns {
    match resolution {
        Resolution::Pod(pod) => pod,
        Resolution::HostNetwork { uid } => panic!("{uid} resolved as hostNetwork"),
    }
}

const CID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn containerd_systemd_pod_resolves_to_pause_with_the_app_for_resolv_conf() {
    require_root!();
    let Some(v2) = cgroup_v2_root() else { return };
    let netns = Netns::create(format!("{}-pod", unique_prefix()));
    let mut procs = PodProcesses::new();
    procs.resolv_conf_for(
        &netns,
        "search ns1.svc.cluster.local\nnameserver 10.244.250.53\noptions ndots:5\n",
    );
    let uid = new_uid();
    let top = procs.top();
    let sandbox_cg = procs.cgroup(
        &v2,
        &systemd_pod_path(&top, &uid, &format!("cri-containerd-{CID}.scope")),
    );
    let app_cg = procs.cgroup(
        &v2,
        &systemd_pod_path(&top, &uid, &format!("cri-containerd-{}.scope", &CID[..60])),
    );
    let pause = procs.spawn("pause", Some(&netns), &sandbox_cg);
    let app = procs.spawn("app", Some(&netns), &app_cg);

    let pod = pod_of(resolve_pod(&uid).unwrap());
    assert_eq!(pod.uid, uid);
    assert_eq!(pod.sandbox_pid, pause);
    assert_eq!(pod.app_pid, Some(app));
    assert_eq!(pod.handle.inode(), netns_inode(netns.path()).unwrap());
    // Upper-case input is the same pod.
    let again = pod_of(resolve_pod(&uid.to_uppercase()).unwrap());
    assert_eq!(again.handle.inode(), pod.handle.inode());

    // The pod's resolv.conf, read through the app's mount namespace, not the host's.
    let dns = DnsConfig::for_pod(&pod).unwrap();
    assert_eq!(
        dns.nameservers(),
        vec!["10.244.250.53".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(dns.ndots(), 5);
}

#[test]
fn crio_conmon_in_the_host_netns_is_skipped() {
    require_root!();
    let Some(v2) = cgroup_v2_root() else { return };
    let netns = Netns::create(format!("{}-pod", unique_prefix()));
    let mut procs = PodProcesses::new();
    let uid = new_uid();
    let top = procs.top();
    let conmon_cg = procs.cgroup(
        &v2,
        &systemd_pod_path(&top, &uid, &format!("crio-conmon-{CID}.scope")),
    );
    let sandbox_cg = procs.cgroup(
        &v2,
        &systemd_pod_path(&top, &uid, &format!("crio-{CID}.scope")),
    );
    // conmon starts first (it is older), in the host netns.
    procs.spawn("conmon", None, &conmon_cg);
    let pause = procs.spawn("pause", Some(&netns), &sandbox_cg);

    let pod = pod_of(resolve_pod(&uid).unwrap());
    assert_eq!(pod.sandbox_pid, pause);
    assert_eq!(pod.app_pid, None, "only pause runs");
    assert_eq!(pod.handle.inode(), netns_inode(netns.path()).unwrap());
}

#[test]
fn cgroupfs_static_pod_without_pause_uses_the_oldest_process() {
    require_root!();
    let Some(v2) = cgroup_v2_root() else { return };
    let netns = Netns::create(format!("{}-pod", unique_prefix()));
    let mut procs = PodProcesses::new();
    // A static pod's UID is the 32-hex config hash.
    let uid = new_uid().replace('-', "");
    let top = procs.top();
    let container_cg = procs.cgroup(&v2, &format!("{top}/kubepods/besteffort/pod{uid}/{CID}"));
    let first = procs.spawn("app", Some(&netns), &container_cg);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let _second = procs.spawn("app", Some(&netns), &container_cg);

    let pod = pod_of(resolve_pod(&uid).unwrap());
    assert_eq!(
        pod.sandbox_pid, first,
        "oldest process when there is no pause"
    );
    assert_eq!(pod.app_pid, Some(first));
    assert_eq!(pod.handle.inode(), netns_inode(netns.path()).unwrap());
}

#[test]
fn cgroup_v1_lines_are_the_fallback_on_hybrid_hosts() {
    require_root!();
    let Some(v1) = cgroup_v1_systemd_root() else {
        eprintln!("skipped: no cgroup v1 name=systemd hierarchy");
        return;
    };
    let netns = Netns::create(format!("{}-pod", unique_prefix()));
    let mut procs = PodProcesses::new();
    let uid = new_uid();
    let top = procs.top();
    let docker_cg = procs.cgroup(
        &v1,
        &systemd_pod_path(&top, &uid, &format!("docker-{CID}.scope")),
    );
    let pause = procs.spawn("pause", Some(&netns), &docker_cg);
    let pod = pod_of(resolve_pod(&uid).unwrap());
    assert_eq!(pod.sandbox_pid, pause);
    assert_eq!(pod.handle.inode(), netns_inode(netns.path()).unwrap());
}

#[test]
fn host_network_pod_is_reported_not_probeable() {
    require_root!();
    let Some(v2) = cgroup_v2_root() else { return };
    let mut procs = PodProcesses::new();
    let uid = new_uid();
    let top = procs.top();
    let cg = procs.cgroup(
        &v2,
        &systemd_pod_path(&top, &uid, &format!("cri-containerd-{CID}.scope")),
    );
    procs.spawn("pause", None, &cg);
    procs.spawn("app", None, &cg);
    match resolve_pod(&uid).unwrap() {
        Resolution::HostNetwork { uid: reported } => assert_eq!(reported, uid),
        Resolution::Pod(pod) => panic!("hostNetwork pod resolved to {pod:?}"),
    }
}

#[test]
fn two_namespaces_for_one_pod_is_ambiguous_and_unknown_pods_are_not_found() {
    require_root!();
    let Some(v2) = cgroup_v2_root() else { return };
    let first = Netns::create(format!("{}-a", unique_prefix()));
    let second = Netns::create(format!("{}-b", unique_prefix()));
    let mut procs = PodProcesses::new();
    let uid = new_uid();
    let top = procs.top();
    let cg = procs.cgroup(&v2, &format!("{top}/kubepods/pod{uid}/{CID}"));
    procs.spawn("pause", Some(&first), &cg);
    procs.spawn("app", Some(&second), &cg);
    let error = resolve_pod(&uid).unwrap_err();
    assert_eq!(error.metric_label(), "ambiguous", "{error}");

    let error = resolve_pod(&new_uid()).unwrap_err();
    assert_eq!(error.metric_label(), "pod_not_found", "{error}");
}

#[tokio::test]
async fn the_registry_validates_with_the_pod_ip_caches_and_forgets() {
    require_root!();
    let Some(v2) = cgroup_v2_root() else { return };
    let netns = Netns::create(format!("{}-pod", unique_prefix()));
    netns.ip(&["addr", "add", "10.244.250.33/32", "dev", "lo"]);
    let mut procs = PodProcesses::new();
    let uid = new_uid();
    let top = procs.top();
    let cg = procs.cgroup(
        &v2,
        &systemd_pod_path(&top, &uid, &format!("cri-containerd-{CID}.scope")),
    );
    procs.spawn("pause", Some(&netns), &cg);

    let factory = SocketFactory::start().unwrap();
    let registry = PodNetnsRegistry::new();
    let wrong_ip: IpAddr = "10.244.250.34".parse().unwrap();
    let error = registry
        .resolve(&factory, &uid, Some(wrong_ip))
        .await
        .unwrap_err();
    assert_eq!(error.metric_label(), "stale_netns", "{error}");
    assert!(registry.is_empty(), "an unvalidated handle is not cached");

    let pod_ip: IpAddr = "10.244.250.33".parse().unwrap();
    let pod = pod_of(
        registry
            .resolve(&factory, &uid, Some(pod_ip))
            .await
            .unwrap(),
    );
    assert_eq!(registry.len(), 1);
    let by_path = NetnsHandle::open(netns.path()).unwrap();
    assert!(pod.handle.same_netns(&by_path));
    // Cached: found again even with the processes gone.
    drop(procs);
    let cached = pod_of(registry.resolve(&factory, &uid, None).await.unwrap());
    assert!(cached.handle.same_netns(&by_path));
    assert!(registry.forget(&uid));
    assert!(!registry.forget(&uid));
    assert!(registry.get(&uid).is_none());
}

/// A pod whose sandbox is recreated under the same UID (new netns, new holder process): the
/// cached handle is checked again after `REVALIDATE_EVERY` (sandbox PID, start time and netns
/// inode), found stale, dropped, and the next resolve opens the new namespace. Without this a
/// dead namespace would be probed for ever (every probe a false block).
#[tokio::test]
async fn a_recreated_sandbox_is_resolved_again() {
    require_root!();
    let Some(v2) = cgroup_v2_root() else { return };
    let first = Netns::create(format!("{}-old", unique_prefix()));
    let mut procs = PodProcesses::new();
    let uid = new_uid();
    let top = procs.top();
    let old_cg = procs.cgroup(
        &v2,
        &systemd_pod_path(&top, &uid, &format!("cri-containerd-{CID}.scope")),
    );
    let old_pause = procs.spawn("pause", Some(&first), &old_cg);

    let factory = SocketFactory::start().unwrap();
    let registry = PodNetnsRegistry::new();
    let before = pod_of(registry.resolve(&factory, &uid, None).await.unwrap());
    assert_eq!(before.sandbox_pid, old_pause);
    assert_eq!(before.handle.inode(), netns_inode(first.path()).unwrap());

    // The sandbox dies and comes back: a new pause in a new netns, same pod UID.
    procs.kill(old_pause);
    let second = Netns::create(format!("{}-new", unique_prefix()));
    let new_cg = procs.cgroup(
        &v2,
        &systemd_pod_path(&top, &uid, &format!("cri-containerd-{}.scope", &CID[..63])),
    );
    let new_pause = procs.spawn("pause", Some(&second), &new_cg);
    tokio::time::sleep(netreach::netns::REVALIDATE_EVERY + std::time::Duration::from_millis(100))
        .await;

    let after = pod_of(registry.resolve(&factory, &uid, None).await.unwrap());
    assert_eq!(after.sandbox_pid, new_pause);
    assert_eq!(after.handle.inode(), netns_inode(second.path()).unwrap());
    assert!(!after.handle.same_netns(&before.handle));
    assert_eq!(registry.len(), 1);
    // The old handle is no longer the registry's (only this test's copy keeps it open).
    assert!(
        registry
            .get(&uid)
            .is_some_and(|pod| pod.handle.same_netns(&after.handle))
    );

    // A pod that is gone for good: evicted, and resolving says so.
    procs.kill(new_pause);
    tokio::time::sleep(netreach::netns::REVALIDATE_EVERY + std::time::Duration::from_millis(100))
        .await;
    let error = registry.resolve(&factory, &uid, None).await.unwrap_err();
    assert_eq!(error.metric_label(), "pod_not_found", "{error}");
    assert!(registry.is_empty());
}
