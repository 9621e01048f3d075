#!/usr/bin/env bash
# The alert rules, their promtool unit tests, the Grafana dashboard and the live Prometheus
# test (as root). Needs promtool and prometheus (Debian package `prometheus`) and python3;
# the chart render check also needs helm-python-sdk in $CHART_PYTHON (default: .venv-test's
# Python when scripts/chart-test.sh has built it) and is skipped without it. Prints one
# PASS/FAIL/SKIP line per check, the output of failures, and `N passed, N failed` last;
# exits 1 on any failure.
#
#   ./scripts/alerts-test.sh            # everything
#   ALERTS_LIVE=0 ./scripts/alerts-test.sh   # without the live Prometheus test
set -u
cd "$(dirname "$0")/.." || exit 1

RULES=deploy/prometheus/netreach-alerts.yaml
CHART_RULES=charts/netreach/files/netreach-alerts.yaml
TESTS=deploy/prometheus/tests
DASHBOARD=charts/netreach/files/dashboards/netreach.json
METRICS_DOC=docs/metrics.md
PROMTOOL=${PROMTOOL_BIN:-promtool}
# The interpreter itself, not a wrapper (a pyenv shim would not pass SIGTERM on to it).
PYTHON=${PYTHON:-$(python3 -c 'import sys; print(sys.executable)')}
# helm-python-sdk: the venv scripts/chart-test.sh builds from requirements-test.txt, if there.
if [ -z "${CHART_PYTHON:-}" ] && [ -x .venv-test/bin/python ]; then
  CHART_PYTHON=.venv-test/bin/python
fi
CHART_PYTHON=${CHART_PYTHON:-$PYTHON}

passed=0 failed=0 skipped=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# run NAME CMD...: one check; its output is shown only when it fails (exit 77: skipped).
run() {
  local name=$1 rc
  shift
  "$@" </dev/null >"$work/out" 2>&1
  rc=$?
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1))
    echo "PASS: $name"
  elif [ "$rc" -eq 77 ]; then
    skipped=$((skipped + 1))
    echo "SKIP: $name ($(tail -n 1 "$work/out"))"
  else
    failed=$((failed + 1))
    echo "FAIL: $name"
    sed 's/^/    /' "$work/out"
  fi
}

have_tools() {
  command -v "$PROMTOOL" >/dev/null && command -v "${PROMETHEUS_BIN:-prometheus}" >/dev/null \
    && "$PROMTOOL" --version
}

# The chart embeds a byte-identical copy of the plain rules file.
rules_in_sync() {
  cmp "$RULES" "$CHART_RULES" || {
    echo "$CHART_RULES differs from $RULES: cp $RULES $CHART_RULES"
    return 1
  }
}

# Without its `for:`, an alert must fail the unit tests (they check it does not fire early).
for_is_tested() {
  local alert=$1 dir="$work/mutant-$1"
  mkdir -p "$dir/tests"
  cp "$TESTS"/*.yaml "$dir/tests/"
  awk -v A="$alert" '/^[[:space:]]*- alert:/ { cur = $3 } !(cur == A && $1 == "for:")' \
    "$RULES" >"$dir/netreach-alerts.yaml"
  if cmp -s "$RULES" "$dir/netreach-alerts.yaml"; then
    echo "$alert has no for: line to remove"
    return 1
  fi
  if "$PROMTOOL" test rules "$dir"/tests/*.yaml >"$dir/out" 2>&1; then
    echo "the unit tests still pass with the for: of $alert removed"
    return 1
  fi
}

dashboard_parses() {
  "$PROMTOOL" check rules "$work/dashboard-rules.yaml"
}

run "promtool and prometheus are installed (apt-get install prometheus)" have_tools
run "chart rules $CHART_RULES identical to $RULES" rules_in_sync
run "promtool check rules $RULES" "$PROMTOOL" check rules "$RULES"
run "promtool test rules $TESTS/*.yaml" "$PROMTOOL" test rules "$TESTS"/*.yaml
while read -r alert; do
  run "unit tests catch $alert without its for:" for_is_tested "$alert"
done < <(sed -n 's/^[[:space:]]*- alert:[[:space:]]*\([A-Za-z0-9_]*\).*/\1/p' "$RULES")
run "rules: severity, annotations, runbook pages, unit tests, documented metrics" \
  "$PYTHON" tests/alerts/check_alerts.py rules "$RULES" "$TESTS" docs/runbooks "$METRICS_DOC"
run "dashboard: JSON, variables, datasource, documented metrics and labels" \
  "$PYTHON" tests/alerts/check_alerts.py dashboard "$DASHBOARD" "$METRICS_DOC" "$work/dashboard-rules.yaml"
run "dashboard: every query parses (promtool)" dashboard_parses
run "chart: PrometheusRule and dashboard ConfigMap embed the files (helm-python-sdk)" \
  "$CHART_PYTHON" tests/alerts/check_chart.py charts/netreach "$RULES" "$DASHBOARD"
if [ "${ALERTS_LIVE:-1}" != 0 ]; then
  run "live: Prometheus fires NetworkPolicyBlockingTraffic on netreach demo (tests/alerts/live_test.py)" \
    "$PYTHON" tests/alerts/live_test.py
fi

if [ "$skipped" -gt 0 ]; then
  echo "alerts: $passed passed, $failed failed, $skipped skipped"
else
  echo "alerts: $passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
