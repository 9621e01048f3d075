"""values.yaml documents every value, and values.schema.json knows every value.

A value is documented by a `# --` comment directly above its key, or above an ancestor key
whose whole content is the value (e.g. `resources`, `tolerations`). Section keys such as
`agent:` carry no value of their own and need no `# --`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from conftest import CHART

KEY = re.compile(r"^(?P<indent> *)(?:- )?(?P<key>[A-Za-z_][\w./-]*|\"[^\"]+\"):(?: |$)")


def documented_leaves() -> tuple[list[str], list[str]]:
    """Walks values.yaml; returns (documented, undocumented) leaf paths."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    documented: list[str] = []
    undocumented: list[str] = []
    stack: list[tuple[int, str, bool]] = []  # (indent, key, has `# --`)
    comment_above = False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("# --"):
            comment_above = True
            continue
        if stripped.startswith("#"):
            continue
        if not stripped:
            comment_above = False
            continue
        match = KEY.match(line)
        if not match:  # a list item or scalar inside a documented value
            comment_above = False
            continue
        indent = len(match.group("indent"))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key = match.group("key")
        path = ".".join([k for _, k, _ in stack] + [key])
        is_leaf = not line.rstrip().endswith(":")
        covered = comment_above or any(doc for _, _, doc in stack)
        if is_leaf:
            (documented if covered else undocumented).append(path)
        stack.append((indent, key, comment_above))
        comment_above = False
    return documented, undocumented


def test_every_value_has_a_comment() -> None:
    documented, undocumented = documented_leaves()
    assert len(documented) > 40
    assert undocumented == []


def schema_paths(schema: dict[str, Any], prefix: str = "") -> set[str]:
    paths = set()
    for key, sub in schema.get("properties", {}).items():
        path = f"{prefix}{key}"
        paths.add(path)
        if sub.get("type") == "object" and sub.get("additionalProperties") is False:
            paths |= schema_paths(sub, path + ".")
    return paths


def value_paths(values: Any, prefix: str = "") -> set[str]:
    paths = set()
    if isinstance(values, dict):
        for key, sub in values.items():
            paths.add(prefix + key)
            paths |= value_paths(sub, prefix + key + ".")
    return paths


def test_schema_is_strict_and_covers_the_defaults() -> None:
    import yaml

    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    closed = schema_paths(schema)
    # Every closed section of the schema lists exactly the keys values.yaml has, so a value
    # cannot be added to one file and forgotten in the other.
    for section, sub in schema["properties"].items():
        if sub.get("additionalProperties") is False and isinstance(values.get(section), dict):
            declared = {k for k in sub["properties"]}
            present = set(values[section])
            optional = declared - set(sub.get("required", []))
            assert present <= declared, f"{section}: not in the schema: {present - declared}"
            assert declared - present <= optional, f"{section}: missing from values.yaml"
    for path in value_paths(values):
        top = path.split(".")[0]
        assert top in closed, f"{path} is not in values.schema.json"
