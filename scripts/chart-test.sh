#!/usr/bin/env bash
# Chart, image and capability checks (tests/chart): renders the Helm chart with the real Helm
# engine for every value set, lints it, validates every object with kubernetes-validate
# --strict, asserts the security properties and RBAC, runs hadolint on the Dockerfile, and
# proves the capability set on this kernel (as root). Tools come from .venv-test/, built from
# requirements-test.txt (pinned). Prints pytest's summary line; fails when pytest fails or
# collects no test.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv-test
stamp="$venv/.requirements"
if [ ! -x "$venv/bin/python" ] || ! cmp -s requirements-test.txt "$stamp"; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements-test.txt
  cp requirements-test.txt "$stamp"
fi

# The checks compare the chart with `netreach agent --help` and run `netreach probe`.
cargo build -q --locked -p netreach

set +e
"$venv/bin/python" -m pytest tests/chart -q -p no:cacheprovider "$@"
status=$?
set -e
case $status in
  0) ;;
  5) echo "chart-test: pytest collected no test" >&2; exit 1 ;;
  *) exit "$status" ;;
esac
