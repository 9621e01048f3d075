"""Security and wiring properties of the rendered agent, for every value set.

The capability set and the RBAC rules are compared as exact sets: adding anything to the chart
fails here first, and has to be argued for in the template comments (and in
test_capabilities.py, which proves each capability is needed on a real kernel).
"""

from __future__ import annotations

import re
from typing import Any

from conftest import AGENT_BIN, CHART, VALUE_SETS, Rendered, agent_container, env_of, run

# Each capability is needed by the agent for one syscall (see templates/daemonset.yaml).
CAPABILITIES = {"SYS_ADMIN", "SYS_PTRACE", "NET_ADMIN", "SETUID"}

# (apiGroup, resource, verb): exactly what the agent calls.
RBAC = {
    *{("", r, v) for r in ("pods", "namespaces", "nodes") for v in ("get", "list", "watch")},
    *{("networking.k8s.io", "networkpolicies", v) for v in ("get", "list", "watch")},
    *{("", "services", v) for v in ("list", "watch")},
    *{("discovery.k8s.io", "endpointslices", v) for v in ("list", "watch")},
    *{("netreach.dev", r, v) for r in ("probespecs", "clusterprobespecs", "proberequests") for v in ("get", "list", "watch")},
    *{("policy.networking.k8s.io", r, v) for r in ("clusternetworkpolicies", "adminnetworkpolicies", "baselineadminnetworkpolicies") for v in ("list", "watch")},
    *{("cilium.io", r, v) for r in ("ciliumnetworkpolicies", "ciliumclusterwidenetworkpolicies") for v in ("list", "watch")},
    *{(g, r, v) for g in ("projectcalico.org", "crd.projectcalico.org") for r in ("networkpolicies", "globalnetworkpolicies") for v in ("list", "watch")},
    *{("crd.antrea.io", r, v) for r in ("networkpolicies", "clusternetworkpolicies") for v in ("list", "watch")},
    ("netreach.dev", "probespecs/status", "patch"),
    ("netreach.dev", "clusterprobespecs/status", "patch"),
    ("netreach.dev", "proberequests/status", "patch"),
    ("netreach.dev", "proberequests", "delete"),
    ("events.k8s.io", "events", "create"),
    ("events.k8s.io", "events", "patch"),
    ("authentication.k8s.io", "tokenreviews", "create"),
    ("authorization.k8s.io", "subjectaccessreviews", "create"),
}


def pod_spec(rendered: Rendered) -> dict[str, Any]:
    return rendered.one("DaemonSet")["spec"]["template"]["spec"]


def test_container_security_context(value_set: tuple[str, dict[str, Any]], rendered_sets: dict[str, Rendered]) -> None:
    name, _ = value_set
    ctx = agent_container(rendered_sets[name])["securityContext"]
    assert ctx["capabilities"]["drop"] == ["ALL"]
    assert set(ctx["capabilities"]["add"]) == CAPABILITIES
    assert len(ctx["capabilities"]["add"]) == len(CAPABILITIES)
    assert ctx["privileged"] is False
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["runAsUser"] == 0 and ctx["runAsNonRoot"] is False
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "privileged" not in pod_spec(rendered_sets[name]).get("securityContext", {})


def test_host_namespaces(value_set: tuple[str, dict[str, Any]], rendered_sets: dict[str, Rendered]) -> None:
    name, _ = value_set
    spec = pod_spec(rendered_sets[name])
    assert spec["hostPID"] is True
    assert spec["hostNetwork"] is True
    assert spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert "hostIPC" not in spec
    volumes = spec.get("volumes", [])
    assert all(set(v) == {"name", "secret"} for v in volumes), "the agent needs no host path: /proc comes with hostPID"


def test_agent_wiring(value_set: tuple[str, dict[str, Any]], rendered_sets: dict[str, Rendered]) -> None:
    name, _ = value_set
    rendered = rendered_sets[name]
    ds = rendered.one("DaemonSet")
    container = agent_container(rendered)
    env = env_of(container)
    assert env["NODE_NAME"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert env["NETREACH_TERMINATION_LOG"] == container["terminationMessagePath"] == "/dev/termination-log"
    (port,) = container["ports"]
    assert port["name"] == "metrics" and port["protocol"] == "TCP"
    assert env["NETREACH_LISTEN"].endswith(f":{port['containerPort']}")
    # The kubelet's checks go to the plain-HTTP health port on loopback, not the HTTPS API.
    health_port = int(env["NETREACH_HEALTH_LISTEN"].removeprefix("127.0.0.1:"))
    assert health_port != port["containerPort"]
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert container[probe]["httpGet"] == {"host": "127.0.0.1", "path": path, "port": health_port}
    assert env["NETREACH_API_AUTH"] == "true", "auth is on in every value set"
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    strategy = ds["spec"]["updateStrategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxSurge"] == 0
    assert strategy["rollingUpdate"]["maxUnavailable"] == VALUE_SETS[name].get("maxUnavailable", 1)
    selector = ds["spec"]["selector"]["matchLabels"]
    assert selector.items() <= ds["spec"]["template"]["metadata"]["labels"].items()


def test_default_scheduling_reaches_every_node(default: Rendered) -> None:
    spec = pod_spec(default)
    assert spec["tolerations"] == [{"operator": "Exists"}]
    assert spec["priorityClassName"] == "system-node-critical"
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert "affinity" not in spec
    container = agent_container(default)
    assert container["image"] == "example.invalid/netreach:0.1.0"
    env = env_of(container)
    assert env["NETREACH_LISTEN"] == "0.0.0.0:9464"
    assert "NETREACH_CNI_SELECTOR" not in env


def test_custom_values_reach_the_pod(rendered_sets: dict[str, Rendered]) -> None:
    values = VALUE_SETS["custom"]
    rendered = rendered_sets["custom"]
    spec = pod_spec(rendered)
    container = agent_container(rendered)
    env = env_of(container)
    assert spec["tolerations"] == values["tolerations"]
    assert spec["nodeSelector"] == values["nodeSelector"]
    assert spec["affinity"] == values["affinity"]
    assert spec["priorityClassName"] == "netreach-critical"
    assert spec["imagePullSecrets"] == [{"name": "registry-credentials"}]
    assert spec["serviceAccountName"] == "netreach-agent"
    assert spec["terminationGracePeriodSeconds"] == 45
    assert container["resources"] == values["resources"]
    assert container["image"] == "registry.example.com/platform/netreach@" + values["image"]["digest"]
    assert container["livenessProbe"]["periodSeconds"] == 20
    assert env["NETREACH_LISTEN"] == "[::]:19464"
    assert env["NETREACH_CNI_SELECTOR"] == "kube-system/app=my-cni,tier=node"
    assert env["NETREACH_PROFILE"] == "ipblock-external-only"
    assert env["NETREACH_CONCURRENCY"] == "16"
    assert env["NETREACH_EVENTS"] == "false"
    assert env["RUST_LOG"] == "info,netreach=debug"
    ctx = container["securityContext"]
    assert ctx["appArmorProfile"] == {"type": "RuntimeDefault"}
    assert ctx["seLinuxOptions"] == {"type": "spc_t"}
    pod_meta = rendered.one("DaemonSet")["spec"]["template"]["metadata"]
    assert pod_meta["annotations"] == values["podAnnotations"]
    assert pod_meta["labels"]["team"] == "platform"
    assert rendered.one("Service")["spec"]["ports"][0]["port"] == 19464


def test_minimal_uses_the_given_service_account(rendered_sets: dict[str, Rendered]) -> None:
    spec = pod_spec(rendered_sets["minimal"])
    assert spec["serviceAccountName"] == "netreach-preprovisioned"
    assert "priorityClassName" not in spec


def rbac_tuples(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    tuples = set()
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, f"unexpected rule fields: {rule}"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    tuples.add((group, resource, verb))
    return tuples


def test_rbac_is_exactly_what_the_agent_calls(value_set: tuple[str, dict[str, Any]], rendered_sets: dict[str, Rendered]) -> None:
    name, _ = value_set
    rendered = rendered_sets[name]
    if name == "minimal":
        assert not rendered.all("ClusterRole") and not rendered.all("ClusterRoleBinding")
        return
    (role,) = [r for r in rendered.all("ClusterRole") if "rules" in r and not r["metadata"]["name"].endswith("-reader")]
    assert rbac_tuples(role) == RBAC
    assert not any("*" in part for t in rbac_tuples(role) for part in t)
    (binding,) = [b for b in rendered.all("ClusterRoleBinding") if not b["metadata"]["name"].endswith("-reader")]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    (subject,) = binding["subjects"]
    account = rendered.one("ServiceAccount")
    assert subject == {
        "kind": "ServiceAccount",
        "name": account["metadata"]["name"],
        "namespace": account["metadata"]["namespace"],
    }
    assert pod_spec(rendered)["serviceAccountName"] == account["metadata"]["name"]


def test_each_capability_names_its_syscall() -> None:
    """In the template, every added capability is preceded by a comment naming a syscall."""
    lines = (CHART / "templates" / "daemonset.yaml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "add:")
    seen = set()
    comment: list[str] = []
    for line in lines[start + 1 :]:
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped)
        elif stripped.startswith("- "):
            cap = stripped[2:]
            text = " ".join(comment)
            assert re.search(r"\b[a-z_]+\([^)]*\)", text), f"{cap}: no syscall named in {text!r}"
            seen.add(cap)
            comment = []
        else:
            break
    assert seen == CAPABILITIES


# === the chart and the binary agree on the agent's settings ===


def agent_flags() -> dict[str, str | None]:
    """Env var -> default, from `netreach agent --help` of the built binary."""
    assert AGENT_BIN.exists(), f"{AGENT_BIN} is missing: build it with `cargo build -p netreach`"
    result = run([str(AGENT_BIN), "agent", "--help"])
    assert result.returncode == 0, result.stderr
    flags: dict[str, str | None] = {}
    for block in re.split(r"\n(?=\s+(?:-\w, )?--)", result.stdout):
        env = re.search(r"\[env: ([A-Z_]+)=", block)
        if env:
            default = re.search(r"\[default: ([^\]]+)\]", block)
            flags[env.group(1)] = default.group(1) if default else None
    return flags


def test_env_vars_are_agent_flags(value_set: tuple[str, dict[str, Any]], rendered_sets: dict[str, Rendered]) -> None:
    name, _ = value_set
    flags = agent_flags()
    env = env_of(agent_container(rendered_sets[name]))
    assert "NODE_NAME" in flags
    unknown = set(env) - set(flags) - {"RUST_LOG"}
    assert not unknown, f"the chart sets variables the agent does not read: {unknown}"


def test_default_values_match_agent_defaults(default: Rendered) -> None:
    flags = agent_flags()
    env = env_of(agent_container(default))
    for var, value in env.items():
        if var in flags and flags[var] is not None:
            assert value == flags[var], f"{var}: chart {value!r}, agent default {flags[var]!r}"
