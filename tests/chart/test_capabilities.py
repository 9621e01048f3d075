"""The chart's capability set is sufficient and minimal, proven on this kernel.

A fake pod is built the way a node has one: a network namespace, a kubepods-style cgroup
holding its sandbox process, which runs as uid 65535 like pause, in its own mount namespace
with its own resolv.conf; in the namespace, a TCP listener, dnsmasq answering one name, and an
Istio-style sidecar redirect (nat output: TCP to port 9 from anyone but uid 1337 goes to the
listener, as the mesh's rules send it to the local proxy).
The built `netreach probe --pod-uid` (the agent's own /proc resolver and socket factory) then
runs as root with exactly the capabilities the rendered DaemonSet adds (bounding set, as the
container runtime applies them, plus no_new_privs): TCP, UDP and DNS probes must work. With any
one of them removed, probing must fail. Needs root and Linux; CI runs as root.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from conftest import AGENT_BIN, agent_container, run

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: netns, cgroups, setpriv")

DNS_NAME = "api.shop.svc.cluster.local"
DNS_ANSWER = "10.244.1.11"


@dataclass
class FakePod:
    uid: str
    netns: str
    sandbox_pid: int


def cgroup_root() -> pathlib.Path:
    if pathlib.Path("/sys/fs/cgroup/cgroup.controllers").exists():
        return pathlib.Path("/sys/fs/cgroup")
    hybrid = pathlib.Path("/sys/fs/cgroup/unified")
    if (hybrid / "cgroup.controllers").exists():
        return hybrid
    pytest.skip("no cgroup v2 hierarchy to place the fake pod in")


def wait_for(what: str, check, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def listening(netns: str, spec: str) -> bool:
    out = run(["ip", "netns", "exec", netns, "ss", "-Hln", *spec.split()]).stdout
    return bool(out.strip())


@pytest.fixture(scope="module")
def fake_pod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakePod]:
    tag = uuid.uuid4().hex[:8]
    uid = str(uuid.uuid4())
    netns = f"nrcap-{tag}"
    top = cgroup_root() / f"netreach-chartcap-{tag}"
    leaf = (
        top
        / "kubepods.slice"
        / "kubepods-besteffort.slice"
        / f"kubepods-besteffort-pod{uid.replace('-', '_')}.slice"
        / f"cri-containerd-{uuid.uuid4().hex}{uuid.uuid4().hex}.scope"
    )
    resolv = tmp_path_factory.mktemp("pod") / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions ndots:1 timeout:1 attempts:1\n")
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(*cmd: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, *cmd],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        procs.append(proc)
        return proc

    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
        leaf.mkdir(parents=True)
        sandbox = spawn(
            "unshare", "-m", "--propagation", "private", "sh", "-c",
            f"mount --bind {resolv} /etc/resolv.conf && "
            "exec setpriv --reuid 65535 --regid 65535 --clear-groups sleep 600",
        )
        (leaf / "cgroup.procs").write_text(str(sandbox.pid))
        comm = pathlib.Path(f"/proc/{sandbox.pid}/comm")
        wait_for("the sandbox process", lambda: comm.exists() and comm.read_text().strip() == "sleep")
        spawn(
            sys.executable, "-c",
            "import socket\n"
            "s = socket.create_server(('127.0.0.1', 8080))\n"
            "while True: s.accept()[0].close()\n",
        )
        spawn(
            "dnsmasq", "--keep-in-foreground", "--listen-address=127.0.0.1", "--bind-interfaces",
            "--no-resolv", "--no-hosts", "--pid-file=", "--user=root",
            f"--address=/{DNS_NAME}/{DNS_ANSWER}",
        )
        # The mesh's capture, reduced to one port: a probe made as uid 1337 reaches port 9
        # (nothing listens: refused); made as anyone else it lands on the listener (open).
        subprocess.run(
            ["ip", "netns", "exec", netns, "nft", "-f", "-"],
            input=(
                "table ip netreach_capmesh {\n"
                "  chain output {\n"
                "    type nat hook output priority -100; policy accept;\n"
                "    tcp dport 9 meta skuid != 1337 redirect to :8080\n"
                "  }\n"
                "}\n"
            ).encode(),
            check=True,
        )
        wait_for("the TCP listener", lambda: listening(netns, "-t sport = :8080"))
        wait_for("dnsmasq", lambda: listening(netns, "-u sport = :53"))
        yield FakePod(uid=uid, netns=netns, sandbox_pid=sandbox.pid)
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if top.exists():
            for cgroup in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                wait_for(f"{cgroup} to empty", lambda c=cgroup: not (c / "cgroup.procs").read_text().strip())
                cgroup.rmdir()
            top.rmdir()
        subprocess.run(["ip", "netns", "del", netns], check=False)


def probe(pod: FakePod, caps: set[str], *target: str) -> dict:
    """`netreach probe` as uid 0 with only `caps` (Kubernetes names) and no_new_privs."""
    assert AGENT_BIN.exists(), f"{AGENT_BIN} is missing: build it with `cargo build -p netreach`"
    bounding = ",".join(["-all"] + [f"+{c.lower()}" for c in sorted(caps)])
    cmd = [
        "setpriv", "--bounding-set", bounding, "--inh-caps", "-all", "--no-new-privs", "--",
        str(AGENT_BIN), "probe", "--pod-uid", pod.uid, *target,
        "--count", "2", "--timeout", "1s", "--format", "json",
    ]  # fmt: skip
    result = run(cmd)
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        report = {"outcomes": {}, "fatal": result.stderr.strip()}
    report["exit"] = result.returncode
    return report


def chart_caps(default) -> set[str]:
    return set(agent_container(default)["securityContext"]["capabilities"]["add"])


TARGETS = {
    "tcp-open": (["--to", "127.0.0.1:8080/TCP"], "open"),
    "tcp-past-mesh": (["--to", "127.0.0.1:9/TCP", "--mesh", "istio"], "refused"),
    "udp-closed": (["--to", "127.0.0.1:9/UDP"], "refused"),
    "dns": (["--dns", DNS_NAME], "resolved"),
}


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_chart_capabilities_suffice(fake_pod: FakePod, default, target: str) -> None:
    args, outcome = TARGETS[target]
    report = probe(fake_pod, chart_caps(default), *args)
    assert report["exit"] == 0 and report["outcomes"] == {outcome: 2}, report
    if target == "dns":
        assert DNS_ANSWER in report["answers"], report


# What each capability is for, and the probe that fails without it (its outcome must not be
# the one the full set gives).
NEEDED_FOR = {
    "SYS_ADMIN": "tcp-open",
    "SYS_PTRACE": "tcp-open",
    "NET_ADMIN": "tcp-open",
    "SETUID": "tcp-past-mesh",
}


@pytest.mark.parametrize("missing", sorted(NEEDED_FOR))
def test_each_capability_is_needed(fake_pod: FakePod, default, missing: str) -> None:
    caps = chart_caps(default)
    assert missing in caps
    assert set(NEEDED_FOR) == caps, "every added capability has a probe that needs it"
    args, outcome = TARGETS[NEEDED_FOR[missing]]
    report = probe(fake_pod, caps - {missing}, *args)
    assert report["outcomes"].get(outcome, 0) == 0, f"probing worked without {missing}: {report}"
