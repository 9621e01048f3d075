#!/usr/bin/env python3
"""Renders the chart's PrometheusRule and dashboard ConfigMap with a real Helm engine
(PyPI `helm-python-sdk`) and checks that they embed the files unchanged:

- prometheusRule.enabled=true: one PrometheusRule whose spec is, line for line,
  deploy/prometheus/netreach-alerts.yaml (the runbook links with the configured base when
  `prometheusRule.runbookBaseUrl` is set), with the chart's standard labels and the extra ones;
- dashboard.enabled=true: one ConfigMap whose `netreach.json` is the dashboard JSON;
- the default values (prometheusRule "auto" without the Operator API, dashboard false) and
  enabled=false: neither object.

    check_chart.py CHART_DIR RULES_FILE DASHBOARD_JSON

Exit 0: passed; 1: failed; 77: skipped (helm-python-sdk is not installed in this Python).
Standard library otherwise: the rendered YAML is compared as text.
"""

import json
import sys

try:
    from helm_python import chart as helm
except ImportError:
    print("SKIP: helm-python-sdk is not installed for", sys.executable)
    sys.exit(77)

PLACEHOLDER = "https://github.com/netreach/netreach/blob/main/docs/runbooks/"
failed = 0


def check(ok, what):
    global failed
    if not ok:
        failed += 1
        print(f"FAIL: {what}")
    return ok


def find(rendered, suffix):
    docs = [text for path, text in rendered.items() if path.endswith(suffix) and text.strip()]
    return docs[0] if len(docs) == 1 else None


def block_after(text, header, indent):
    """The lines after the line `header`, with `indent` spaces removed, while indented."""
    lines = text.split("\n")
    try:
        start = next(i for i, l in enumerate(lines) if l.rstrip() == header) + 1
    except StopIteration:
        return None
    out = []
    for line in lines[start:]:
        if line.strip() and not line.startswith(" " * indent):
            break
        out.append(line[indent:].rstrip())
    while out and not out[-1]:
        out.pop()
    return "\n".join(out)


def main(chart_dir, rules_path, dashboard_path):
    with open(rules_path, encoding="utf-8") as f:
        rules = "\n".join(l.rstrip() for l in f.read().rstrip("\n").split("\n"))
    with open(dashboard_path, encoding="utf-8") as f:
        dashboard = json.load(f)
    with open(f"{chart_dir}/values.schema.json", encoding="utf-8") as f:
        schema = json.load(f)
    c = helm.Chart.load(chart_dir)

    on = {"prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
          "dashboard": {"enabled": True}}
    out = c.render(on, name="netreach", namespace="monitoring")
    rule = find(out, "templates/prometheusrule.yaml")
    if check(rule, "prometheusRule.enabled=true renders one PrometheusRule"):
        check("apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\n" in rule,
              "it is a monitoring.coreos.com/v1 PrometheusRule")
        check("app.kubernetes.io/name: netreach" in rule and "release: kube-prometheus-stack" in rule,
              "it has the standard labels and prometheusRule.labels")
        check("namespace: monitoring" in rule, "it is in the release namespace")
        check(block_after(rule, "spec:", 2) == rules,
              f"its spec is {rules_path}, unchanged")
    cm = find(out, "templates/dashboard-configmap.yaml")
    if check(cm, "dashboard.enabled=true renders one ConfigMap"):
        check("grafana_dashboard: \"1\"" in cm or "grafana_dashboard: '1'" in cm,
              "it carries the Grafana sidecar label grafana_dashboard=1")
        body = block_after(cm, "  netreach.json: |-", 4)
        try:
            check(json.loads(body or "") == dashboard, f"its netreach.json is {dashboard_path}")
        except ValueError as e:
            check(False, f"its netreach.json is not JSON: {e}")

    for values, what in (({}, "the default values"),
                         ({"prometheusRule": {"enabled": False, "labels": {}},
                           "dashboard": {"enabled": False}}, "enabled=false")):
        out = c.render(values, name="netreach", namespace="monitoring")
        check(find(out, "templates/prometheusrule.yaml") is None
              and find(out, "templates/dashboard-configmap.yaml") is None,
              f"{what} render no PrometheusRule (no Operator API offline) and no dashboard")

    props = schema.get("properties", {}).get("prometheusRule", {}).get("properties", {})
    if "runbookBaseUrl" in props:
        base = "https://git.example.com/ops/netreach/-/blob/main/docs/runbooks"
        out = c.render({"prometheusRule": {"enabled": True, "labels": {}, "runbookBaseUrl": base}},
                       name="netreach", namespace="monitoring")
        rule = find(out, "templates/prometheusrule.yaml") or ""
        check(block_after(rule, "spec:", 2) == rules.replace(PLACEHOLDER, base + "/"),
              "prometheusRule.runbookBaseUrl replaces the runbook link base, nothing else")
    else:
        print("note: prometheusRule.runbookBaseUrl is not in values.schema.json yet; "
              "the template supports it (default: the placeholder base)")

    print(f"chart: {'failed' if failed else 'passed'} ({failed} failures)")
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(*sys.argv[1:]))
