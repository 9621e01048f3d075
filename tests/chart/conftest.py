"""Shared pieces of the chart checks.

values/*.yaml + chart ──helm-python-sdk (Helm's own engine, offline)──> manifests ──> objects
                                                                            │
                      kubernetes-validate --strict, security and RBAC asserts, lint

Tools come from the venv that scripts/chart-test.sh builds from requirements-test.txt, so the
checks run the pinned versions whatever is on PATH.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml
from helm_python import _native
from helm_python import chart as helm_chart

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "netreach"
VALUES_DIR = pathlib.Path(__file__).resolve().parent / "values"
VENV_BIN = pathlib.Path(sys.executable).parent
# The agent binary `make test` built: NETREACH_BIN, else cargo's target dir (CARGO_TARGET_DIR
# or ./target).
AGENT_BIN = pathlib.Path(
    os.environ.get("NETREACH_BIN")
    or pathlib.Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target") / "debug" / "netreach"
)

RELEASE = "netreach"
NAMESPACE = "netreach-system"
OPERATOR_API = "monitoring.coreos.com/v1"


def load_value_sets() -> dict[str, dict[str, Any]]:
    """The chart's defaults ("default") plus every file in values/, by file stem."""
    sets: dict[str, dict[str, Any]] = {"default": {}}
    for path in sorted(VALUES_DIR.glob("*.yaml")):
        sets[path.stem] = yaml.safe_load(path.read_text()) or {}
    return sets


VALUE_SETS = load_value_sets()


@dataclass
class Rendered:
    """One rendering of the chart: the manifests by template and the objects they hold."""

    files: dict[str, str]
    objects: list[dict[str, Any]] = field(default_factory=list)

    @property
    def notes(self) -> str:
        return next(text for path, text in self.files.items() if path.endswith("NOTES.txt"))

    def kinds(self) -> list[str]:
        return sorted(obj["kind"] for obj in self.objects)

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [obj for obj in self.objects if obj["kind"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.all(kind)
        assert len(found) == 1, f"expected one {kind}, found {len(found)}: {self.kinds()}"
        return found[0]


def render(values: dict[str, Any], api_versions: tuple[str, ...] = ()) -> Rendered:
    """Renders the chart as `helm template` would, optionally with extra cluster API versions."""
    with helm_chart.Chart.load(CHART) as chart:
        if api_versions:
            # Chart.render() does not expose the library's `api_versions` option (what
            # .Capabilities.APIVersions holds, like `helm template --api-versions`); the native
            # call behind it takes it with the other render options.
            options = {"name": RELEASE, "namespace": NAMESPACE, "api_versions": list(api_versions)}
            files = json.loads(
                _native.call_string(
                    "helm_render", chart._raw(), json.dumps(values), json.dumps(options)
                )
            )
        else:
            files = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    rendered = Rendered(files=files)
    for path, text in sorted(files.items()):
        if path.endswith(".txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                rendered.objects.append(doc)
    return rendered


@pytest.fixture(scope="session", params=sorted(VALUE_SETS), ids=str)
def value_set(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    return request.param, VALUE_SETS[request.param]


@pytest.fixture(scope="session")
def rendered_sets() -> dict[str, Rendered]:
    return {name: render(values) for name, values in VALUE_SETS.items()}


@pytest.fixture(scope="session")
def default() -> Rendered:
    return render({})


def agent_container(rendered: Rendered) -> dict[str, Any]:
    pod = rendered.one("DaemonSet")["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == "agent"]
    return container


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Runs a tool, capturing text output; never raises on a non-zero exit."""
    return subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)
