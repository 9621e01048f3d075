//! What the agent's resolver will read: each pod's processes in kubepods-style cgroups (every
//! layout, every hierarchy), in the right netns, with the pod's resolv.conf; and the objects
//! with the UIDs those cgroups carry. Needs root (CI runs as root).
#![allow(clippy::unwrap_used)] // helpers of a test binary: a failed unwrap is a failed test

mod common;

use std::{collections::HashSet, fs, os::unix::fs::MetadataExt as _, path::Path};

use common::root_or_skip;
use serde_json::Value;
use testbed::{CgroupLayout, Scenario, Testbed};

fn ten_pods() -> Testbed {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/ten-pods.yaml");
    Testbed::start(&Scenario::from_file(path).unwrap()).unwrap()
}

fn netns_ino(path: &str) -> u64 {
    fs::metadata(path).unwrap().ino()
}

/// `(controllers, path)` of each line of `/proc/<pid>/cgroup`.
fn cgroup_lines(pid: u32) -> Vec<(String, String)> {
    fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, ctl, path) = (parts.next()?, parts.next()?, parts.next()?);
            Some((ctl.to_string(), path.to_string()))
        })
        .collect()
}

fn assert_in_cgroup(tb: &Testbed, pid: u32, want: &str) {
    let lines = cgroup_lines(pid);
    for h in tb.cgroup_hierarchies() {
        let line = lines.iter().find(|(ctl, _)| *ctl == h.controllers);
        assert_eq!(
            line.map(|(_, p)| p.as_str()),
            Some(want),
            "pid {pid} in hierarchy {:?}: {lines:?}",
            h.controllers
        );
    }
}

#[test]
fn ten_pods_setup_time() {
    if !root_or_skip("ten_pods_setup_time") {
        return;
    }
    let tb = ten_pods();
    assert_eq!(tb.pods().len(), 10);
    assert_eq!(tb.nodes().len(), 2);
    // A measurement, not an assertion (the target is < 2 s).
    println!("setup of 10 pods on 2 nodes took {:?}", tb.setup_time());
}

#[test]
fn every_pod_sits_in_its_kubepods_cgroup_and_netns() {
    if !root_or_skip("every_pod_sits_in_its_kubepods_cgroup_and_netns") {
        return;
    }
    let tb = ten_pods();
    let hier = tb.cgroup_hierarchies();
    assert!(hier.iter().any(|h| h.is_v2()), "{hier:?}");
    if Path::new("/sys/fs/cgroup/unified").is_dir() {
        // Hybrid host: v1 lines must carry the pod too.
        let ctls: Vec<&str> = hier.iter().map(|h| h.controllers.as_str()).collect();
        assert!(
            ctls.contains(&"name=systemd") && ctls.contains(&"pids"),
            "{ctls:?}"
        );
    }
    let host_ns = netns_ino("/proc/self/ns/net");
    let mut layouts = HashSet::new();
    for p in tb.pods() {
        let pause = p.pause_pid;
        let comm = fs::read_to_string(format!("/proc/{pause}/comm")).unwrap();
        assert_eq!(comm.trim(), "pause", "{}/{}", p.namespace, p.name);
        assert_in_cgroup(&tb, pause, &p.sandbox_cgroup);
        let uid_ = p.uid.replace('-', "_");
        let (pod_part, leaf) = match p.cgroup_layout {
            CgroupLayout::ContainerdSystemd => (
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/"
                ),
                format!("cri-containerd-{}.scope", p.sandbox_id),
            ),
            CgroupLayout::CrioSystemd => (
                format!(
                    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/"
                ),
                format!("crio-{}.scope", p.sandbox_id),
            ),
            CgroupLayout::Cgroupfs => (
                format!("/kubepods/besteffort/pod{}/", p.uid),
                p.sandbox_id.clone(),
            ),
            CgroupLayout::Docker => (
                format!("/kubepods.slice/kubepods-pod{uid_}.slice/"),
                format!("docker-{}.scope", p.sandbox_id),
            ),
        };
        assert!(
            p.sandbox_cgroup.starts_with("/netreach-testbed-nrtb-"),
            "{}",
            p.sandbox_cgroup
        );
        assert!(
            p.sandbox_cgroup.contains(&pod_part),
            "{} !~ {pod_part}",
            p.sandbox_cgroup
        );
        assert!(
            p.sandbox_cgroup.ends_with(&format!("/{leaf}")),
            "{}",
            p.sandbox_cgroup
        );
        assert_eq!(p.sandbox_id.len(), 64);

        let pause_ns = netns_ino(&format!("/proc/{pause}/ns/net"));
        if p.host_network {
            assert_eq!(pause_ns, host_ns, "hostNetwork pause is in the host netns");
            assert!(p.netns_path.is_none() && p.app_pid.is_none() && p.ip.is_none());
        } else {
            layouts.insert(p.cgroup_layout);
            let path = p.netns_path.as_ref().unwrap();
            assert_eq!(pause_ns, fs::metadata(path).unwrap().ino());
            assert_ne!(pause_ns, host_ns);
            let app = p.app_pid.unwrap();
            assert_in_cgroup(&tb, app, &p.app_cgroup);
            assert_eq!(netns_ino(&format!("/proc/{app}/ns/net")), pause_ns);
            assert!(p.app_cgroup.contains(&pod_part) && p.app_cgroup != p.sandbox_cgroup);
            let resolv = fs::read_to_string(format!("/proc/{app}/root/etc/resolv.conf")).unwrap();
            assert!(
                resolv.contains(&format!("search {}.svc.cluster.local ", p.namespace))
                    && resolv.contains("nameserver 10.244.1.2")
                    && resolv.contains("options ndots:5"),
                "{resolv}"
            );
        }
        match (p.cgroup_layout, p.conmon_pid) {
            (CgroupLayout::CrioSystemd, Some(conmon)) => {
                assert_eq!(
                    netns_ino(&format!("/proc/{conmon}/ns/net")),
                    host_ns,
                    "conmon in host netns"
                );
                let (pod_dir, _) = p.sandbox_cgroup.rsplit_once('/').unwrap();
                let want = format!("{pod_dir}/crio-conmon-{}.scope", p.sandbox_id);
                assert_in_cgroup(&tb, conmon, &want);
                let comm = fs::read_to_string(format!("/proc/{conmon}/comm")).unwrap();
                assert_eq!(comm.trim(), "conmon");
            }
            (CgroupLayout::CrioSystemd, None) => panic!("CRI-O pod without conmon"),
            (_, conmon) => assert_eq!(conmon, None),
        }
    }
    assert_eq!(layouts.len(), 4, "every layout on a netns pod: {layouts:?}");
    // dnsmasq runs in the DNS pod's app container cgroup and netns.
    let dns = tb.dns().unwrap();
    let coredns = tb.pod("kube-system", "coredns").unwrap();
    assert_in_cgroup(&tb, dns.pid, &coredns.app_cgroup);
}

#[test]
fn objects_carry_the_uids_of_the_cgroups() {
    if !root_or_skip("objects_carry_the_uids_of_the_cgroups") {
        return;
    }
    let tb = ten_pods();
    let objects = tb.objects();
    assert_eq!(objects.len(), tb.scenario().objects.len());
    for o in &objects {
        let uid = o.pointer("/metadata/uid").and_then(Value::as_str).unwrap();
        assert_eq!(uid.len(), 36, "{o}");
        assert_eq!(&uid[14..15], "4", "a UUID v4: {uid}");
    }
    for p in tb.pods() {
        let obj = objects
            .iter()
            .find(|o| {
                o["kind"] == "Pod"
                    && o["metadata"]["name"] == p.name.as_str()
                    && o["metadata"]["namespace"] == p.namespace.as_str()
            })
            .unwrap();
        assert_eq!(obj["metadata"]["uid"], p.uid.as_str());
        assert!(
            p.sandbox_cgroup.contains(&p.uid)
                || p.sandbox_cgroup.contains(&p.uid.replace('-', "_"))
        );
    }
    // The YAML stream and the file hold the same objects.
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&tb.objects_yaml())
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    assert_eq!(docs, objects);
    assert_eq!(
        fs::read_to_string(tb.objects_path()).unwrap(),
        tb.objects_yaml()
    );
}
