use super::*;

const UID: &str = "1b4f6c2e-8a3d-4e5f-9a0b-1c2d3e4f5a6b";
const UID_UNDERSCORED: &str = "1b4f6c2e_8a3d_4e5f_9a0b_1c2d3e4f5a6b";
const STATIC_UID: &str = "6d3f0a1e8b2c4d5e9f0a1b2c3d4e5f60";
const CID: &str = "3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a";

fn expect(kind: ContainerKind, uid: &str, id: Option<&str>) -> Option<PodCgroup> {
    Some(PodCgroup {
        pod_uid: uid.to_string(),
        container_kind: kind,
        container_id: id.map(str::to_string),
    })
}

#[test]
fn parses_every_known_layout() {
    use ContainerKind::*;
    let cases: Vec<(&str, String, Option<PodCgroup>)> = vec![
        (
            "containerd, systemd driver, cgroup v2",
            format!(
                "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_UNDERSCORED}.slice/cri-containerd-{CID}.scope\n"
            ),
            expect(Containerd, UID, Some(CID)),
        ),
        (
            "guaranteed QoS (no class slice), systemd driver",
            format!(
                "0::/kubepods.slice/kubepods-pod{UID_UNDERSCORED}.slice/cri-containerd-{CID}.scope\n"
            ),
            expect(Containerd, UID, Some(CID)),
        ),
        (
            "CRI-O, systemd driver",
            format!(
                "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_UNDERSCORED}.slice/crio-{CID}.scope\n"
            ),
            expect(CriO, UID, Some(CID)),
        ),
        (
            "CRI-O conmon is recognised (the scan skips it)",
            format!(
                "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_UNDERSCORED}.slice/crio-conmon-{CID}.scope\n"
            ),
            expect(Conmon, UID, Some(CID)),
        ),
        (
            "docker, systemd driver",
            format!(
                "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_UNDERSCORED}.slice/docker-{CID}.scope\n"
            ),
            expect(Docker, UID, Some(CID)),
        ),
        (
            "cgroupfs driver, bare id, cgroup v2",
            format!("0::/kubepods/burstable/pod{UID}/{CID}\n"),
            expect(Bare, UID, Some(CID)),
        ),
        (
            "cgroupfs driver, guaranteed QoS",
            format!("0::/kubepods/pod{UID}/{CID}\n"),
            expect(Bare, UID, Some(CID)),
        ),
        (
            "cgroup v1 only (every controller line, no 0:: line)",
            format!(
                "12:memory:/kubepods/besteffort/pod{UID}/{CID}\n11:pids:/kubepods/besteffort/pod{UID}/{CID}\n1:name=systemd:/kubepods/besteffort/pod{UID}/{CID}\n"
            ),
            expect(Bare, UID, Some(CID)),
        ),
        (
            "hybrid: 0:: is / (runtime only uses v1), falls back to v1 lines",
            format!(
                "9:name=systemd:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_UNDERSCORED}.slice/cri-containerd-{CID}.scope\n4:memory:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_UNDERSCORED}.slice/cri-containerd-{CID}.scope\n0::/\n"
            ),
            expect(Containerd, UID, Some(CID)),
        ),
        (
            "hybrid: the 0:: line wins over a different v1 line",
            format!(
                "4:memory:/kubepods/burstable/pod6d3f0a1e-0000-4000-8000-000000000000/{CID}\n0::/kubepods/burstable/pod{UID}/{CID}\n"
            ),
            expect(Bare, UID, Some(CID)),
        ),
        (
            "kind: kubelet-kubepods nesting",
            format!(
                "0::/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_UNDERSCORED}.slice/cri-containerd-{CID}.scope\n"
            ),
            expect(Containerd, UID, Some(CID)),
        ),
        (
            "relative path from a private cgroup namespace",
            format!(
                "0::/../../kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_UNDERSCORED}.slice/cri-containerd-{CID}.scope\n"
            ),
            expect(Containerd, UID, Some(CID)),
        ),
        (
            "static pod: 32-hex config hash as UID, systemd driver",
            format!(
                "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{STATIC_UID}.slice/cri-containerd-{CID}.scope\n"
            ),
            expect(Containerd, STATIC_UID, Some(CID)),
        ),
        (
            "static pod, cgroupfs driver",
            format!("0::/kubepods/burstable/pod{STATIC_UID}/{CID}\n"),
            expect(Bare, STATIC_UID, Some(CID)),
        ),
        (
            "process in the pod slice itself",
            format!("0::/kubepods.slice/kubepods-pod{UID_UNDERSCORED}.slice\n"),
            expect(PodLevel, UID, None),
        ),
        (
            "uppercase UID is normalised",
            format!("0::/kubepods/pod{}/{CID}\n", UID.to_uppercase()),
            expect(Bare, UID, Some(CID)),
        ),
        (
            "cgroupfs below a prefix (kind with the cgroupfs driver)",
            format!("0::/kubelet/kubepods/besteffort/pod{UID}/{CID}\n"),
            expect(Bare, UID, Some(CID)),
        ),
        (
            "unrecognised container component is still the pod",
            format!("0::/kubepods/besteffort/pod{UID}/sandbox-thing\n"),
            expect(Other, UID, Some("sandbox-thing")),
        ),
    ];
    assert!(cases.len() >= 9);
    for (name, contents, expected) in cases {
        assert_eq!(parse_proc_cgroup(&contents), expected, "case: {name}");
    }
}

#[test]
fn rejects_paths_that_are_not_pods() {
    let negatives: Vec<(&str, String)> = vec![
        ("empty file", String::new()),
        ("root cgroup", "0::/\n".to_string()),
        (
            "a login session",
            "0::/user.slice/user-1000.slice/session-3.scope\n".to_string(),
        ),
        (
            "the container runtime itself",
            "0::/system.slice/containerd.service\n".to_string(),
        ),
        (
            "a QoS slice without a pod",
            "0::/kubepods.slice/kubepods-burstable.slice\n".to_string(),
        ),
        (
            "pod directory without a kubepods ancestor",
            format!("0::/somewhere/pod{UID}/{CID}\n"),
        ),
        (
            "malformed UID",
            format!("0::/kubepods/burstable/podnot-a-uid/{CID}\n"),
        ),
        (
            "UID with a wrong group length",
            "0::/kubepods/pod1b4f6c2e-8a3d-4e5f-9a0b-1c2d3e4f5a6/x\n".to_string(),
        ),
        (
            "systemd slice that is not kubepods",
            format!("0::/system.slice/foo-pod{UID_UNDERSCORED}.slice/x.scope\n"),
        ),
        (
            "plain docker outside Kubernetes",
            format!("0::/docker/{CID}\n"),
        ),
        ("garbage without colons", "kubepods pod\n".to_string()),
        (
            "31-hex hash is not a static pod UID",
            format!("0::/kubepods/pod{}/x\n", &STATIC_UID[1..]),
        ),
    ];
    for (name, contents) in negatives {
        assert_eq!(parse_proc_cgroup(&contents), None, "case: {name}");
    }
}

#[test]
fn conmon_is_the_only_kind_outside_the_pod_netns() {
    use ContainerKind::*;
    for kind in [Containerd, CriO, Docker, Bare, PodLevel, Other] {
        assert!(kind.may_share_pod_netns(), "{}", kind.as_str());
    }
    assert!(!Conmon.may_share_pod_netns());
}
