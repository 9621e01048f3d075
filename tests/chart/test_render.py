"""The chart renders, lints and validates for every value set, and renders what each set asks.

Validation runs the real `kubernetes-validate --strict` CLI on every rendered object against the
oldest Kubernetes the chart declares (1.30), the one the agent is built against (k8s-openapi
v1_34) and the newest the pinned package knows. Prometheus Operator kinds are not in its
schemas: they are skipped by name (SKIPPED_KINDS), and any other unknown kind fails the test.
"""

from __future__ import annotations

import pathlib
import re
from typing import Any

import pytest
import yaml
from helm_python import chart as helm_chart
from helm_python.errors import HelmValuesError

from conftest import (
    CHART,
    NAMESPACE,
    OPERATOR_API,
    VALUE_SETS,
    VENV_BIN,
    Rendered,
    render,
    run,
)

KUBE_VERSIONS = ["1.30.0", "1.34.0", "1.37.0"]
# Custom resources of the Prometheus Operator: kubernetes-validate has no schema for them.
SKIPPED_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("cert-manager.io/v1", "Certificate"),
}
# Kinds a value set may render more than once: the agent's ClusterRole and the two reader
# roles (with their bindings).
REPEATED_KINDS = {"ClusterRole", "ClusterRoleBinding"}
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}

CORE = {
    "ClusterRole",
    "ClusterRoleBinding",
    "DaemonSet",
    "NetworkPolicy",
    "Service",
    "ServiceAccount",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
}
# What each value set must render, by kind.
EXPECTED_KINDS = {
    "default": CORE,
    "custom": CORE,
    "operator": CORE | {"ServiceMonitor", "PrometheusRule"},
    "dashboard": CORE | {"ConfigMap"},
    "minimal": {"DaemonSet"},
    "tls": CORE | {"Certificate", "ServiceMonitor", "PrometheusRule"},
}


def test_every_value_set_has_expectations() -> None:
    assert set(VALUE_SETS) == set(EXPECTED_KINDS)


def test_renders_expected_kinds(value_set: tuple[str, dict[str, Any]], rendered_sets: dict[str, Rendered]) -> None:
    name, _ = value_set
    rendered = rendered_sets[name]
    assert set(rendered.kinds()) == EXPECTED_KINDS[name]
    singles = [kind for kind in rendered.kinds() if kind not in REPEATED_KINDS]
    assert len(singles) == len(set(singles)), "one object per kind"
    for obj in rendered.objects:
        meta = obj["metadata"]
        assert meta["labels"]["app.kubernetes.io/name"] == "netreach"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        if obj["kind"] not in CLUSTER_SCOPED:
            assert "namespace" in meta, f"{obj['kind']} has no namespace"


def test_lint_strict(value_set: tuple[str, dict[str, Any]]) -> None:
    _, values = value_set
    report = helm_chart.lint(str(CHART), values, strict=True, namespace=NAMESPACE)
    assert report["errors"] == [], report
    serious = [m for m in report["messages"] if m["severity"] >= 2]
    assert serious == [], serious


def _validate(objects: list[dict[str, Any]], tmp_path: pathlib.Path) -> None:
    """Runs kubernetes-validate --strict on each object; each must pass on every version."""
    files = []
    for i, obj in enumerate(objects):
        if (obj["apiVersion"], obj["kind"]) in SKIPPED_KINDS:
            continue
        path = tmp_path / f"{i:02d}-{obj['kind'].lower()}.yaml"
        path.write_text(yaml.safe_dump(obj))
        files.append(path)
    assert files, "nothing to validate"
    cmd = [str(VENV_BIN / "kubernetes-validate"), "--strict"]
    for version in KUBE_VERSIONS:
        cmd += ["-k", version]
    result = run(cmd + [str(f) for f in files])
    lines = result.stdout.splitlines()
    problems = [line for line in lines if not line.startswith("INFO ")]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr
    passed = [line for line in lines if re.match(r"^INFO .* passed for resource ", line)]
    assert len(passed) == len(files) * len(KUBE_VERSIONS), result.stdout


def test_kubernetes_validate_strict(
    value_set: tuple[str, dict[str, Any]], rendered_sets: dict[str, Rendered], tmp_path: pathlib.Path
) -> None:
    name, _ = value_set
    _validate(rendered_sets[name].objects, tmp_path)


def test_only_known_kinds_are_skipped(rendered_sets: dict[str, Rendered]) -> None:
    skipped = {
        (obj["apiVersion"], obj["kind"])
        for rendered in rendered_sets.values()
        for obj in rendered.objects
        if (obj["apiVersion"], obj["kind"]) in SKIPPED_KINDS
    }
    assert skipped == SKIPPED_KINDS, "the value sets must exercise every skipped kind"


def test_crds_validate(tmp_path: pathlib.Path) -> None:
    with helm_chart.Chart.load(CHART) as chart:
        crds = [doc for crd in chart.crds for doc in yaml.safe_load_all(crd["data"]) if doc]
    assert sorted(c["metadata"]["name"] for c in crds) == [
        "clusterprobespecs.netreach.dev",
        "proberequests.netreach.dev",
        "probespecs.netreach.dev",
    ]
    _validate(crds, tmp_path)


# === the "auto" switches: on exactly when the cluster serves the Prometheus Operator API ===


def test_auto_is_off_without_operator_api(default: Rendered) -> None:
    assert VALUE_SETS["default"] == {}
    kinds = default.kinds()
    assert "ServiceMonitor" not in kinds and "PrometheusRule" not in kinds
    assert "no ServiceMonitor was created" in default.notes


def test_auto_is_on_with_operator_api() -> None:
    rendered = render({}, api_versions=(OPERATOR_API,))
    assert {"ServiceMonitor", "PrometheusRule"} <= set(rendered.kinds())
    assert "ConfigMap" not in rendered.kinds(), "the dashboard defaults to off, not auto"
    rendered = render({"dashboard": {"enabled": "auto"}}, api_versions=(OPERATOR_API,))
    assert "ConfigMap" in rendered.kinds()


def test_explicit_false_beats_operator_api() -> None:
    values = {"serviceMonitor": {"enabled": False}, "prometheusRule": {"enabled": False}}
    kinds = render(values, api_versions=(OPERATOR_API,)).kinds()
    assert "ServiceMonitor" not in kinds and "PrometheusRule" not in kinds


def test_service_monitor_scrapes_the_metrics_port(rendered_sets: dict[str, Rendered]) -> None:
    rendered = rendered_sets["operator"]
    monitor = rendered.one("ServiceMonitor")
    service = rendered.one("Service")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    assert endpoint["interval"] == "15s" and endpoint["scrapeTimeout"] == "5s"
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE]
    assert "ServiceMonitor" in rendered.notes


def test_prometheus_rule_uses_runbook_base(rendered_sets: dict[str, Rendered]) -> None:
    rule = rendered_sets["operator"].one("PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    urls = [
        r["annotations"]["runbook_url"]
        for group in rule["spec"]["groups"]
        for r in group["rules"]
        if "alert" in r
    ]
    assert urls and all(u.startswith("https://git.example.com/netreach/docs/runbooks/") for u in urls)


def test_dashboard_configmap(rendered_sets: dict[str, Rendered]) -> None:
    cm = rendered_sets["dashboard"].one("ConfigMap")
    assert cm["metadata"]["namespace"] == "monitoring"
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"]["grafana_folder"] == "Networking"
    (body,) = cm["data"].values()
    assert yaml.safe_load(body)["panels"], "the dashboard JSON has panels"


def test_metrics_service_is_headless(default: Rendered) -> None:
    service = default.one("Service")
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9464, "targetPort": "metrics", "protocol": "TCP"}
    ]
    pod_labels = default.one("DaemonSet")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_network_policy_admits_only_the_agent_port(rendered_sets: dict[str, Rendered]) -> None:
    policy = rendered_sets["default"].one("NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    assert policy["ingress"] == [{"ports": [{"port": 9464, "protocol": "TCP"}]}]
    custom = rendered_sets["custom"].one("NetworkPolicy")["spec"]
    (rule,) = custom["ingress"]
    assert rule["ports"] == [{"port": 19464, "protocol": "TCP"}]
    assert rule["from"] == VALUE_SETS["custom"]["networkPolicy"]["from"]


def test_notes_tell_how_to_declare_and_read_results(rendered_sets: dict[str, Rendered]) -> None:
    for rendered in rendered_sets.values():
        notes = rendered.notes
        assert "kind: ProbeSpec" in notes
        assert "kubectl get probespecs" in notes
        assert "pod-security.kubernetes.io/enforce=privileged" in notes
    assert "placeholder" in rendered_sets["default"].notes
    assert "placeholder" not in rendered_sets["custom"].notes


# === values.schema.json rejects what the agent would reject, before anything is installed ===


@pytest.mark.parametrize(
    "values, complaint",
    [
        ({"agent": {"bogus": 1}}, "additional properties 'bogus'"),
        ({"bogus": 1}, "additional properties 'bogus'"),
        ({"agent": {"profile": "strict"}}, "/agent/profile"),
        ({"agent": {"statusInterval": "1.5s"}}, "/agent/statusInterval"),
        ({"agent": {"port": 70000}}, "/agent/port"),
        ({"serviceMonitor": {"enabled": "yes"}}, "/serviceMonitor/enabled"),
        ({"dashboard": {"enabled": "on"}}, "/dashboard/enabled"),
        ({"maxUnavailable": 0}, "/maxUnavailable"),
        ({"image": {"digest": "latest"}}, "/image/digest"),
        ({"appArmorProfile": {"type": "Localhost"}}, "localhostProfile"),
        ({"tolerations": [{"operator": "Maybe"}]}, "/tolerations/0/operator"),
        ({"agent": {"api": {"auth": "no"}}}, "/agent/api/auth"),
        ({"agent": {"api": {"audiences": ""}}}, "/agent/api/audiences"),
        ({"agent": {"api": {"maxConnections": 0}}}, "/agent/api/maxConnections"),
        ({"metricsReader": {"subjects": [{"kind": "Robot", "name": "x"}]}}, "/metricsReader/subjects/0/kind"),
    ],
)
def test_schema_rejects(values: dict[str, Any], complaint: str) -> None:
    with pytest.raises(HelmValuesError, match=re.escape(complaint)):
        render(values)


# === HTTPS and who may read: the ServiceMonitor's TLS and token, the reader roles ===


def test_service_monitor_scrapes_over_https_with_its_token(rendered_sets: dict[str, Rendered]) -> None:
    (self_signed,) = rendered_sets["operator"].one("ServiceMonitor")["spec"]["endpoints"]
    (verified,) = rendered_sets["tls"].one("ServiceMonitor")["spec"]["endpoints"]
    for endpoint in (self_signed, verified):
        assert endpoint["scheme"] == "https"
        assert endpoint["bearerTokenFile"] == "/var/run/secrets/kubernetes.io/serviceaccount/token"
    # Self-signed at start: nothing to verify against.
    assert self_signed["tlsConfig"] == {"insecureSkipVerify": True}
    # cert-manager: verified with the Secret's CA, under the Service's name.
    assert verified["tlsConfig"] == {
        "ca": {"secret": {"name": "netreach-tls", "key": "ca.crt"}},
        "serverName": f"netreach.{NAMESPACE}.svc",
    }
    certificate = rendered_sets["tls"].one("Certificate")["spec"]
    assert certificate["secretName"] == "netreach-tls"
    assert f"netreach.{NAMESPACE}.svc" in certificate["dnsNames"]
    assert certificate["issuerRef"] == {"kind": "ClusterIssuer", "name": "cluster-ca"}
    assert certificate["usages"] == ["server auth"]


def test_the_agent_reads_the_certificate_secret(rendered_sets: dict[str, Rendered]) -> None:
    from conftest import agent_container, env_of

    for name, secret in (("tls", "netreach-tls"), ("default", None)):
        rendered = rendered_sets[name]
        env = env_of(agent_container(rendered))
        pod = rendered.one("DaemonSet")["spec"]["template"]["spec"]
        if secret is None:
            assert "NETREACH_TLS_CERT_FILE" not in env and "volumes" not in pod
            continue
        assert env["NETREACH_TLS_CERT_FILE"] == "/etc/netreach/tls/tls.crt"
        assert env["NETREACH_TLS_KEY_FILE"] == "/etc/netreach/tls/tls.key"
        (volume,) = pod["volumes"]
        assert volume["secret"]["secretName"] == secret
        (mount,) = agent_container(rendered)["volumeMounts"]
        assert mount == {"name": volume["name"], "mountPath": "/etc/netreach/tls", "readOnly": True}


def test_pairs_reader_service_account_for_netreach_ui() -> None:
    rendered = render({"metricsReader": {"pairsReaderServiceAccount": True}})
    bindings = {b["metadata"]["name"]: b for b in rendered.all("ClusterRoleBinding")}
    reader = bindings["netreach-pairs-reader"]
    assert reader["roleRef"]["name"] == "netreach-pairs-reader"
    assert reader["subjects"] == [{"kind": "ServiceAccount", "name": "netreach-pairs-reader", "namespace": NAMESPACE}]
    accounts = {a["metadata"]["name"]: a for a in rendered.all("ServiceAccount")}
    assert accounts["netreach-pairs-reader"]["automountServiceAccountToken"] is False
    assert accounts["netreach-pairs-reader"]["metadata"]["namespace"] == NAMESPACE


def test_reader_roles_grant_get_on_their_url_only(rendered_sets: dict[str, Rendered]) -> None:
    rendered = rendered_sets["tls"]
    roles = {role["metadata"]["name"]: role["rules"] for role in rendered.all("ClusterRole")}
    assert roles["netreach-metrics-reader"] == [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]
    assert roles["netreach-pairs-reader"] == [{"nonResourceURLs": ["/v1/pairs"], "verbs": ["get"]}]
    bindings = {b["metadata"]["name"]: b for b in rendered.all("ClusterRoleBinding")}
    prometheus = bindings["netreach-metrics-reader"]
    assert prometheus["roleRef"]["name"] == "netreach-metrics-reader"
    assert prometheus["subjects"] == [
        {"kind": "ServiceAccount", "name": "kube-prometheus-stack-prometheus", "namespace": "monitoring"}
    ]
    # Without subjects, the roles exist and nothing is bound to them.
    default_bindings = [b["metadata"]["name"] for b in rendered_sets["default"].all("ClusterRoleBinding")]
    assert default_bindings == ["netreach"]


def test_certificate_needs_an_issuer() -> None:
    with pytest.raises(Exception, match="issuerRef.name"):
        render({"tls": {"certManager": {"enabled": True}}})


def test_admission_policy_checks_get_pods_in_a_destination_namespace(default: Rendered) -> None:
    policy = default.one("ValidatingAdmissionPolicy")["spec"]
    binding = default.one("ValidatingAdmissionPolicyBinding")["spec"]
    assert binding == {"policyName": "netreach-proberequest-destination", "validationActions": ["Deny"]}
    assert policy["failurePolicy"] == "Fail"
    (rule,) = policy["matchConstraints"]["resourceRules"]
    assert rule["resources"] == ["proberequests"] and rule["operations"] == ["CREATE"]
    (validation,) = policy["validations"]
    assert validation["reason"] == "Forbidden"
    expression = " ".join(validation["expression"].split())
    assert "authorizer.group('').resource('pods').namespace(variables.destinationNamespace).check('get').allowed()" in expression
    # CEL escapes the reserved word: the field is spec.to.pod.namespace.
    assert "object.spec.to.pod.__namespace__" in policy["variables"][0]["expression"]
    # A Service target's endpoints are pods of its namespace: the same check applies there.
    assert "object.spec.to.service.__namespace__" in policy["variables"][0]["expression"]
