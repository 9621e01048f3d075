#!/usr/bin/env python3
"""Live alert test: a real Prometheus server loads the netreach alert rules, scrapes
`netreach demo` running the built-in runbook scenario, and fires the alerts the scenario calls
for. As root (the demo builds network namespaces). Standard library only.

    tests/alerts/live_test.py        # NETREACH_BIN, PROMETHEUS_BIN, PROMTOOL_BIN optional

1. Copies deploy/prometheus/netreach-alerts.yaml with every `for:` shortened to 5s (by sed, and
   checked: nothing else differs), so the rules cannot drift from the real ones in substance.
2. Starts `netreach demo --listen 127.0.0.1:<port> --interval 2s --rounds 60` (bounded: it
   exits by itself after 60 rounds) and Prometheus on 127.0.0.1 with its TSDB in a temp dir,
   scraping the demo every 1s and evaluating the rules every 1s; both under `timeout`.
3. Polls /api/v1/alerts (at most LIVE_TIMEOUT seconds, default 90) until
   NetworkPolicyBlockingTraffic fires for the default-deny pair shop/frontend ->
   billing/invoices:8080 (and the scenario's other broken pairs fire their alerts), then checks
   that nothing fires for the healthy pair shop/frontend -> shop/cart:8080 and that the
   agent alerts stay silent, and NetreachCNIAgentUnhealthy fires for the not-ready CNI agent.
4. Runs every Grafana dashboard query against the same Prometheus: each must be valid, and
   return data when the demo exports the metrics it reads.

Both processes are stopped by PID on exit (also on Ctrl-C and SIGTERM) and the temp dir is
removed. Prints `ok - ...` / `not ok - ...` per check; exits 1 if any failed.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import check_alerts  # noqa: E402  (same folder)

RULES = os.path.join(ROOT, "deploy/prometheus/netreach-alerts.yaml")
DASHBOARD = os.path.join(ROOT, "charts/netreach/files/dashboards/netreach.json")
TIMEOUT = float(os.environ.get("LIVE_TIMEOUT", "90"))
TEST_FOR = "5s"

# What the built-in runbook scenario (agent/scenarios/runbook.yaml) must fire: (alert, dst).
EXPECTED_FIRING = {
    ("NetworkPolicyBlockingTraffic", "billing/invoices"),
    ("NetworkPolicyBlockingTraffic", "shop/api"),
    ("NetworkPolicyBlockingTraffic", "payments/ledger"),
    ("NetworkPolicyBlockingTraffic", "payments/gateway"),
    ("NetworkPolicyBlockingTraffic", "api.shop.svc.cluster.local"),
    ("NetworkUnexpectedBlock", "shop/catalog"),
    ("NetworkPolicyNotEnforced", "legacy/app"),
    ("NetworkPairExpectationNotMet", "shop/search"),
}
# Alerts that must stay silent on the demo: its agents are up and probing, and its only failing
# DNS lookup is blocked by policy.
EXPECTED_SILENT = {"NetreachDNSFailing", "NetreachAgentDown", "NetreachProbesStale"}
# The scenario's CNI agent on node-2 is not ready (the cni_unhealthy class), and the demo runs
# the agent's view metrics, so this one fires for it (pending or firing), and only for it.
CNI_UNHEALTHY = {"cni_pod": "kube-system/calico-node-b", "cni_node": "node-2"}


class Stop(Exception):
    """SIGTERM: unwind through the cleanup."""


def on_sigterm(signum, frame):
    raise Stop(f"signal {signum}")


class Result:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, ok, what, detail=""):
        if ok:
            self.passed += 1
            print(f"ok - {what}")
        else:
            self.failed += 1
            print(f"not ok - {what}" + (f": {detail}" if detail else ""))
        return ok


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=3):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode("utf-8", "replace")


def wait_for(url, proc, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            status, _ = http_get(url, timeout=1)
            if status == 200:
                return True
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.3)
    return False


def tool(env, default):
    path = os.environ.get(env) or shutil.which(default)
    if not path:
        sys.exit(f"{default} not found (apt-get install prometheus, or set {env})")
    return path


def netreach_bin():
    path = os.environ.get("NETREACH_BIN")
    if path:
        return path
    subprocess.run(["cargo", "build", "-q", "--locked", "-p", "netreach"], cwd=ROOT, check=True)
    return os.path.join(os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target"), "debug", "netreach")


def test_rules(tmp, promtool, res):
    """The rules with `for:` shortened by sed; nothing else may differ."""
    out = os.path.join(tmp, "netreach-alerts.test.yaml")
    with open(out, "w") as f:
        subprocess.run(["sed", "-E", rf"s/^(\s*for:\s*)[0-9]+[smh]\s*$/\1{TEST_FOR}/", RULES],
                       stdout=f, check=True)
    with open(RULES) as f:
        orig = f.read().split("\n")
    with open(out) as f:
        copy = f.read().split("\n")
    changed = [(a, b) for a, b in zip(orig, copy) if a != b]
    alerts = len(re.findall(r"^\s*- alert:", "\n".join(orig), re.M))
    res.check(len(orig) == len(copy) and len(changed) == alerts
              and all(re.match(r"^\s*for:", a) and b.strip() == f"for: {TEST_FOR}" for a, b in changed),
              f"test rules differ from {os.path.relpath(RULES, ROOT)} only in the {alerts} `for:` lines",
              f"{len(changed)} changed lines")
    check = subprocess.run([promtool, "check", "rules", out], capture_output=True, text=True)
    res.check(check.returncode == 0, "promtool check rules accepts the test copy", check.stdout + check.stderr)
    return out


def alerts(prom):
    _, body = http_get(f"{prom}/api/v1/alerts")
    return json.loads(body)["data"]["alerts"]


def firing_pairs(all_alerts):
    return {(a["labels"].get("alertname"), a["labels"].get("dst"))
            for a in all_alerts if a.get("state") == "firing"}


def run(res, tmp, procs, logs):
    """The test; `procs` and `logs` are filled in as they start, for main() to clean up."""
    promtool = tool("PROMTOOL_BIN", "promtool")
    prometheus = tool("PROMETHEUS_BIN", "prometheus")
    netreach = netreach_bin()
    rules = test_rules(tmp, promtool, res)

    demo_port, prom_port = free_port(), free_port()
    demo_url = f"http://127.0.0.1:{demo_port}"
    prom = f"http://127.0.0.1:{prom_port}"
    config = os.path.join(tmp, "prometheus.yml")
    with open(config, "w") as f:
        f.write(f"""global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - {rules}
scrape_configs:
  - job_name: netreach-demo
    static_configs:
      - targets: ['127.0.0.1:{demo_port}']
""")
    for name in ("demo", "prometheus"):
        logs[name] = open(os.path.join(tmp, f"{name}.log"), "w")
    # Both run under coreutils `timeout`, so that even a test killed with SIGKILL leaves
    # nothing running for long; SIGTERM to `timeout` is passed on to the process.
    bound = ["timeout", "--kill-after=10", str(int(TIMEOUT) + 120)]
    procs["demo"] = subprocess.Popen(
        bound + [netreach, "demo", "--listen", f"127.0.0.1:{demo_port}", "--interval", "2s",
         "--rounds", "60"],
        stdout=subprocess.DEVNULL, stderr=logs["demo"], stdin=subprocess.DEVNULL)
    print(f"# netreach demo pid {procs['demo'].pid} on {demo_url}")
    if not res.check(wait_for(f"{demo_url}/metrics", procs["demo"], 60),
                     "netreach demo serves /metrics"):
        return
    procs["prometheus"] = subprocess.Popen(
        bound + [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp}/data",
         f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
        stdout=logs["prometheus"], stderr=logs["prometheus"], stdin=subprocess.DEVNULL)
    print(f"# prometheus pid {procs['prometheus'].pid} on {prom}")
    if not res.check(wait_for(f"{prom}/-/ready", procs["prometheus"], 30),
                     "Prometheus is ready"):
        return
    _, body = http_get(f"{prom}/api/v1/rules")
    groups = json.loads(body)["data"]["groups"]
    loaded = {r["name"] for g in groups for r in g["rules"]}
    names = set(re.findall(r"^\s*- alert:\s*(\S+)", open(RULES).read(), re.M))
    res.check(loaded == names, f"Prometheus loaded the {len(names)} netreach alerts", sorted(loaded ^ names))

    # --- wait for the alerts (bounded) ---------------------------------------------------
    start = time.monotonic()
    deadline = start + TIMEOUT
    got = []
    while time.monotonic() < deadline:
        try:
            got = alerts(prom)
        except (OSError, urllib.error.URLError, ValueError):
            got = []
        if EXPECTED_FIRING <= firing_pairs(got):
            break
        if procs["demo"].poll() is not None or procs["prometheus"].poll() is not None:
            break
        time.sleep(1)
    waited = time.monotonic() - start
    firing = firing_pairs(got)
    blocked = [a for a in got if a["state"] == "firing"
               and a["labels"].get("alertname") == "NetworkPolicyBlockingTraffic"
               and a["labels"].get("dst") == "billing/invoices"]
    res.check(bool(blocked),
              f"NetworkPolicyBlockingTraffic fires for shop/frontend -> billing/invoices:8080 ({waited:.0f}s)",
              f"firing: {sorted(firing)}")
    if blocked:
        a = blocked[0]
        want = {"src": "shop/frontend", "port": "8080", "protocol": "TCP",
                "spec": "shop/frontend-paths", "verdict": "blocked_by_policy",
                "reason": "default_deny", "direction": "ingress",
                "policy": "billing/default-deny", "severity": "critical"}
        res.check(all(a["labels"].get(k) == v for k, v in want.items()),
                  "its labels name the pair, the policy billing/default-deny and the reason default_deny",
                  json.dumps(a["labels"]))
        ann = a.get("annotations", {})
        res.check("billing/default-deny" in ann.get("summary", "")
                  and "default_deny" in ann.get("summary", "")
                  and ann.get("runbook_url", "").endswith("/docs/runbooks/NetworkPolicyBlockingTraffic.md"),
                  "its summary names the policy and reason, its runbook_url the runbook page",
                  json.dumps(ann))
    for alert, dst in sorted(EXPECTED_FIRING - {("NetworkPolicyBlockingTraffic", "billing/invoices")}):
        res.check((alert, dst) in firing, f"{alert} fires for dst={dst}")

    # --- what must stay silent --------------------------------------------------------
    time.sleep(3)  # a few more scrapes and evaluations (pending counts as a failure below)
    got = alerts(prom)
    cart = [a for a in got if a["labels"].get("dst") == "shop/cart"]
    res.check(not cart, "no alert (firing or pending) for the healthy pair shop/frontend -> shop/cart:8080",
              json.dumps([a["labels"] for a in cart]))
    for name in sorted(EXPECTED_SILENT):
        hits = [a for a in got if a["labels"].get("alertname") == name]
        res.check(not hits, f"{name} stays silent", json.dumps([a["labels"] for a in hits]))
    cni = [a for a in got if a["labels"].get("alertname") == "NetreachCNIAgentUnhealthy"]
    res.check(bool(cni) and all(all(a["labels"].get(k) == v for k, v in CNI_UNHEALTHY.items())
                                for a in cni),
              "NetreachCNIAgentUnhealthy fires for the not-ready kube-system/calico-node-b on node-2",
              json.dumps([a["labels"] for a in cni]))
    extra = {p for p in firing_pairs(got)
             if p not in EXPECTED_FIRING and p != ("NetreachCNIAgentUnhealthy", None)}
    res.check(not extra, "nothing else fires", sorted(extra))

    # --- the dashboard's queries on the same data ----------------------------------------
    _, metrics_text = http_get(f"{demo_url}/metrics")
    exported = set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", metrics_text, re.M))
    bad, empty = [], []
    queries = check_alerts.dashboard_queries(DASHBOARD)
    for title, ref, expr in queries:
        url = f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            _, body = http_get(url)
            data = json.loads(body)
        except (OSError, urllib.error.URLError, ValueError) as e:
            bad.append(f"{title}/{ref}: {e}")
            continue
        if data.get("status") != "success":
            bad.append(f"{title}/{ref}: {data.get('error')}")
            continue
        metrics = check_alerts.promql_refs(expr)[0]
        if metrics <= exported and not data["data"]["result"]:
            empty.append(f"{title}/{ref}")
    res.check(not bad, f"Prometheus runs all {len(queries)} dashboard queries", "; ".join(bad))
    res.check(not empty, "every dashboard query whose metrics the demo exports returns data",
              "; ".join(empty))


def stop(procs, logs):
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # the demo tears its namespaces down on SIGTERM
    for name, proc in procs.items():
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            print(f"# {name} (pid {proc.pid}) ignored SIGTERM: killing it")
            proc.kill()
            proc.wait()
    for f in logs.values():
        f.close()
    procs.clear()
    logs.clear()


def main():
    if os.geteuid() != 0:
        print("not ok - live alert test needs root (netreach demo builds network namespaces)")
        return 1
    signal.signal(signal.SIGTERM, on_sigterm)
    res = Result()
    tmp = tempfile.mkdtemp(prefix="netreach-alerts-live-")
    procs, logs = {}, {}
    try:
        run(res, tmp, procs, logs)
    except Stop as e:
        res.check(False, "live test finished", str(e))
    finally:
        stop(procs, logs)
        if res.failed:
            for name in ("demo", "prometheus"):
                path = os.path.join(tmp, f"{name}.log")
                if os.path.exists(path):
                    with open(path, errors="replace") as f:
                        tail = f.read()[-3000:]
                    print(f"# --- {name} log (tail) ---")
                    print("\n".join("# " + l for l in tail.splitlines()))
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"live test: {res.passed} checks passed, {res.failed} failed")
    return 1 if res.failed else 0


if __name__ == "__main__":
    sys.exit(main())
