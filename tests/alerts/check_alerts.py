#!/usr/bin/env python3
"""Static checks of the alert rules and the Grafana dashboard (standard library only).

    check_alerts.py rules RULES_FILE TESTS_DIR RUNBOOK_DIR METRICS_DOC
    check_alerts.py dashboard DASHBOARD_JSON METRICS_DOC PROMTOOL_RULES_OUT

`rules`: every alert has `for:`, a severity, summary/description/runbook_url annotations, a
runbook page `RUNBOOK_DIR/<alert>.md` that its runbook_url names, a firing expectation in a
promtool unit test under TESTS_DIR, and its expression uses only metrics and labels documented
in METRICS_DOC (plus Prometheus's own `up`).

`dashboard`: the JSON is well-formed, schemaVersion >= 36, a `datasource` variable and
`spec`/`node` variables exist, every panel and target uses `${datasource}`, panel ids are
unique, every expression uses only documented metrics and labels; it writes every expression
(Grafana variables replaced by plain values) as a recording rule to PROMTOOL_RULES_OUT, so that
`promtool check rules` proves they parse.

Each failed check prints `FAIL: ...`; the exit code is 1 if any failed. The live test imports
`dashboard_queries` to run the same expressions against a real Prometheus.
"""

import json
import os
import re
import sys

# PromQL functions and aggregations (Prometheus 2.x).
FUNCTIONS = {
    "abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh",
    "avg_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh",
    "count_over_time", "day_of_month", "day_of_week", "day_of_year", "days_in_month", "deg",
    "delta", "deriv", "exp", "floor", "histogram_quantile", "holt_winters", "hour", "idelta",
    "increase", "irate", "label_join", "label_replace", "last_over_time", "ln", "log10", "log2",
    "max_over_time", "min_over_time", "minute", "month", "pi", "predict_linear",
    "present_over_time", "quantile_over_time", "rad", "rate", "resets", "round", "scalar", "sgn",
    "sin", "sinh", "sort", "sort_desc", "sqrt", "stddev_over_time", "stdvar_over_time",
    "sum_over_time", "tan", "tanh", "time", "timestamp", "vector", "year",
    # aggregations
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk",
    "topk", "quantile",
}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", "by", "without",
            "on", "ignoring", "group_left", "group_right"}
# Labels Prometheus adds to every scraped series (and the Operator's ServiceMonitor).
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service", "endpoint", "container", "node"}
# Metrics that are not netreach's but that the rules may use.
EXTRA_METRICS = {"up": {"job", "instance"}}

# Grafana variables -> values that make a valid PromQL expression.
GRAFANA_VARS = [
    ("${datasource}", ""), ("$__rate_interval", "1m"), ("$__interval", "1m"),
    ("$__range", "1h"), ("${spec}", ".*"), ("$spec", ".*"), ("${node}", ".*"), ("$node", ".*"),
]


class Checker:
    def __init__(self):
        self.failed = 0
        self.passed = 0

    def check(self, ok, what):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            print(f"FAIL: {what}")
        return ok


# === metrics.md ===

def documented_metrics(path):
    """{series name: set of label names} from the summary table of docs/metrics.md."""
    out = {}
    prev = set()
    row = re.compile(r"^\|\s*`(netreach_[a-z0-9_]+)`\s*\|\s*([^|]+)\|\s*([^|]*)\|")
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = row.match(line)
            if not m:
                continue
            name, kind, labels_cell = m.group(1), m.group(2).strip(), m.group(3).strip()
            labels = set(re.findall(r"[a-z_]+", labels_cell.replace("same", "")))
            if labels_cell.startswith("same"):
                labels |= prev
            prev = labels
            if kind.startswith("histogram"):
                out[name + "_bucket"] = labels | {"le"}
                out[name + "_sum"] = set(labels)
                out[name + "_count"] = set(labels)
            else:
                out[name] = labels
    return out


# === PromQL scanning ===

STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}")
TOKEN = re.compile(r"\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[a-zA-Z]*|[a-zA-Z_:][a-zA-Z0-9_:]*")


def substitute_grafana(expr):
    for var, value in GRAFANA_VARS:
        expr = expr.replace(var, value)
    return expr


def promql_refs(expr):
    """(metrics, {metric: label names in its matchers}, unknown functions, grouping labels)."""
    text = STRING.sub('""', expr)
    grouping = set()
    for m in GROUPING.finditer(text):
        grouping |= {l.strip() for l in m.group(2).split(",") if l.strip()}
    matchers = {}
    for m in SELECTOR.finditer(text):
        name = m.group(1) or ""
        labels = set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", m.group(2)))
        if name in FUNCTIONS or name in KEYWORDS:
            name = ""
        matchers.setdefault(name, set()).update(labels)
    text = GROUPING.sub(" ", text)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\$\{[^}]*\}|\$[a-zA-Z_]+", " ", text)
    metrics, unknown = set(), set()
    for m in TOKEN.finditer(text):
        tok = m.group(0)
        if tok[0].isdigit() or tok.lower() in KEYWORDS:
            continue
        if text[m.end():].lstrip().startswith("("):
            if tok not in FUNCTIONS:
                unknown.add(tok)
            continue
        metrics.add(tok)
    return metrics, matchers, unknown, grouping


def check_expr(c, where, expr, documented, extra=None):
    known = dict(documented)
    known.update(extra or {})
    metrics, matchers, unknown, _ = promql_refs(expr)
    c.check(not unknown, f"{where}: unknown PromQL functions {sorted(unknown)}")
    c.check(bool(metrics), f"{where}: no metric in {expr!r}")
    for metric in sorted(metrics):
        if not c.check(metric in known, f"{where}: metric {metric} is not in docs/metrics.md"):
            continue
        bad = matchers.get(metric, set()) - known[metric] - TARGET_LABELS - {"__name__"}
        c.check(not bad, f"{where}: {metric} has no label(s) {sorted(bad)} in docs/metrics.md")
    return metrics


# === rules ===

def parse_rules(path):
    """The alerts of a rules file in this repository's layout (`- alert:` items with `expr: |`
    blocks and flat `labels`/`annotations`); line-based, so it needs no YAML library."""
    alerts = []
    cur = None
    block = None  # (key, indent) of the mapping or block scalar being read
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        m = re.match(r"^\s*- alert:\s*(\S+)\s*$", line)
        if m:
            cur = {"alert": m.group(1), "labels": {}, "annotations": {}, "expr": "", "for": None}
            alerts.append(cur)
            block = None
        elif cur is not None and stripped and not stripped.startswith("#"):
            if block and indent > block[1]:
                key = block[0]
                kv = re.match(r"^([a-z_]+):\s*(.*)$", stripped)
                if key in ("labels", "annotations") and kv:
                    value = kv.group(2)
                    if value in (">-", "|", "|-", ">"):
                        parts = []
                        j = i + 1
                        while j < len(lines) and (not lines[j].strip() or
                                                  len(lines[j]) - len(lines[j].lstrip()) > indent):
                            parts.append(lines[j].strip())
                            j += 1
                        value = " ".join(p for p in parts if p)
                        i = j - 1
                    cur[key][kv.group(1)] = value.strip('"')
                elif key == "expr":
                    cur["expr"] += stripped + "\n"
            else:
                block = None
                kv = re.match(r"^([a-z_]+):\s*(.*)$", stripped)
                if kv:
                    key, value = kv.group(1), kv.group(2)
                    if key == "for":
                        cur["for"] = value
                    elif key == "expr":
                        if value in ("|", "|-", ">-", ">"):
                            block = ("expr", indent)
                        else:
                            cur["expr"] = value
                    elif key in ("labels", "annotations"):
                        block = (key, indent)
                    elif key in ("record", "name", "rules", "interval"):
                        cur = None if key in ("record", "name") else cur
        i += 1
    return alerts


def check_rules(rules_path, tests_dir, runbook_dir, metrics_doc):
    c = Checker()
    documented = documented_metrics(metrics_doc)
    c.check(len(documented) >= 10, f"{metrics_doc}: found only {len(documented)} metrics")
    with open(rules_path, encoding="utf-8") as f:
        alert_lines = len(re.findall(r"^\s*- alert:", f.read(), re.M))
    alerts = parse_rules(rules_path)
    c.check(alerts and len(alerts) == alert_lines,
            f"{rules_path}: parsed {len(alerts)} of {alert_lines} alerts")
    tests = ""
    for name in sorted(os.listdir(tests_dir)):
        if name.endswith((".yaml", ".yml")):
            with open(os.path.join(tests_dir, name), encoding="utf-8") as f:
                tests += f.read()
    # alertname: X followed (before the next alertname) by a non-empty exp_alerts list.
    fired = set(re.findall(r"alertname:\s*(\S+)\s*\n\s*exp_alerts:\s*\n", tests))
    silent = set(re.findall(r"alertname:\s*(\S+)\s*\n\s*exp_alerts:\s*\[\]", tests))
    for a in alerts:
        name = a["alert"]
        c.check(a["for"], f"{name}: no `for:`")
        c.check(a["labels"].get("severity") in ("critical", "warning", "info"),
                f"{name}: severity label missing or not critical/warning/info")
        for key in ("summary", "description", "runbook_url"):
            c.check(a["annotations"].get(key), f"{name}: annotation {key} missing")
        url = a["annotations"].get("runbook_url", "")
        c.check(url.endswith(f"/docs/runbooks/{name}.md"),
                f"{name}: runbook_url {url!r} does not end in /docs/runbooks/{name}.md")
        page = os.path.join(runbook_dir, f"{name}.md")
        if c.check(os.path.isfile(page), f"{name}: runbook page {page} missing"):
            with open(page, encoding="utf-8") as f:
                text = f.read()
            c.check(text.startswith(f"# {name}\n"), f"{page}: does not start with '# {name}'")
            c.check("What to check next" in text, f"{page}: no 'What to check next' section")
        c.check(name in fired, f"{name}: no promtool unit test expects it to fire")
        c.check(name in silent, f"{name}: no promtool unit test expects it to stay silent")
        check_expr(c, f"alert {name}", a["expr"], documented, EXTRA_METRICS)
    print(f"rules: {len(alerts)} alerts, {c.passed} checks passed, {c.failed} failed")
    return c.failed == 0


# === dashboard ===

def walk_panels(panels):
    for p in panels:
        yield p
        yield from walk_panels(p.get("panels", []))


def dashboard_queries(path):
    """[(panel title, refId, expression with Grafana variables substituted)]."""
    with open(path, encoding="utf-8") as f:
        dash = json.load(f)
    out = []
    for p in walk_panels(dash.get("panels", [])):
        for t in p.get("targets", []):
            if "expr" in t:
                out.append((p.get("title", ""), t.get("refId", ""), substitute_grafana(t["expr"])))
    return out


def check_dashboard(path, metrics_doc, rules_out):
    c = Checker()
    documented = documented_metrics(metrics_doc)
    try:
        with open(path, encoding="utf-8") as f:
            dash = json.load(f)
    except (OSError, ValueError) as e:
        c.check(False, f"{path}: not well-formed JSON: {e}")
        return False
    c.check(isinstance(dash.get("schemaVersion"), int) and dash["schemaVersion"] >= 36,
            f"schemaVersion {dash.get('schemaVersion')!r} is not >= 36")
    for key in ("title", "uid", "panels", "templating"):
        c.check(key in dash, f"dashboard has no {key}")
    c.check(dash.get("id") is None, "dashboard id must be null (Grafana assigns it)")
    variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    ds = variables.get("datasource", {})
    c.check(ds.get("type") == "datasource" and ds.get("query") == "prometheus",
            "no `datasource` variable of type datasource for prometheus")
    for name in ("spec", "node"):
        v = variables.get(name)
        if c.check(v is not None, f"no `{name}` template variable"):
            c.check(v.get("datasource", {}).get("uid") == "${datasource}",
                    f"variable {name}: datasource is not ${{datasource}}")
            q = v.get("query")
            q = q.get("query", "") if isinstance(q, dict) else (q or "")
            m = re.match(r"^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*([a-z_]+)\s*\)$", q)
            if c.check(m, f"variable {name}: query {q!r} is not label_values(metric, label)"):
                c.check(m.group(1) in documented and m.group(2) in documented[m.group(1)],
                        f"variable {name}: {m.group(1)}/{m.group(2)} not in docs/metrics.md")
    ids = set()
    rules = []
    for p in walk_panels(dash.get("panels", [])):
        title = p.get("title", "?")
        c.check(isinstance(p.get("id"), int) and p["id"] not in ids, f"panel {title!r}: id missing or duplicate")
        ids.add(p.get("id"))
        grid = p.get("gridPos", {})
        c.check(all(k in grid for k in ("x", "y", "w", "h")) and grid.get("x", 0) + grid.get("w", 0) <= 24,
                f"panel {title!r}: gridPos missing or wider than 24")
        if p.get("type") == "row":
            continue
        c.check(p.get("datasource", {}).get("uid") == "${datasource}",
                f"panel {title!r}: datasource is not ${{datasource}}")
        targets = p.get("targets", [])
        c.check(targets, f"panel {title!r}: no targets")
        for t in targets:
            where = f"panel {title!r} target {t.get('refId')}"
            c.check(t.get("datasource", {}).get("uid") == "${datasource}",
                    f"{where}: datasource is not ${{datasource}}")
            expr = t.get("expr", "")
            if not c.check(expr.strip(), f"{where}: no expr"):
                continue
            check_expr(c, where, expr, documented)
            rules.append({"record": f"dashboard:panel{p['id']}:{t.get('refId', 'A')}",
                          "expr": substitute_grafana(expr)})
    # JSON is YAML: promtool reads this as a rules file.
    with open(rules_out, "w", encoding="utf-8") as f:
        json.dump({"groups": [{"name": "netreach-dashboard", "rules": rules}]}, f, indent=1)
    print(f"dashboard: {len(ids)} panels, {len(rules)} queries, {c.passed} checks passed, {c.failed} failed")
    return c.failed == 0


def main(argv):
    if len(argv) == 6 and argv[1] == "rules":
        return 0 if check_rules(*argv[2:]) else 1
    if len(argv) == 5 and argv[1] == "dashboard":
        return 0 if check_dashboard(*argv[2:]) else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
