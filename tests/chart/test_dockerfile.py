"""The Dockerfile passes hadolint with no finding, and keeps the image's contract.

No container engine runs here, so the image itself is not built: these checks read the file.
"""

from __future__ import annotations

import json
import re

from conftest import ROOT, VENV_BIN, run

DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_hadolint_clean() -> None:
    result = run([str(VENV_BIN / "hadolint"), "--format", "json", "--failure-threshold", "style", str(DOCKERFILE)])
    findings = json.loads(result.stdout or "[]")
    assert findings == [] and result.returncode == 0, result.stdout + result.stderr


def test_every_hadolint_ignore_is_explained() -> None:
    """Each `# hadolint ignore=RULE` follows a comment block that gives the reason."""
    lines = DOCKERFILE.read_text().splitlines()
    ignores = 0
    for i, line in enumerate(lines):
        match = re.match(r"#\s*hadolint ignore=(\S+)", line.strip())
        if not match:
            continue
        ignores += 1
        block = []
        for above in reversed(lines[:i]):
            if not above.startswith("#"):
                break
            block.append(above)
        reason = " ".join(block)
        for rule in match.group(1).split(","):
            explained = rule in reason or (rule == "DL3002" and "root" in reason)
            assert explained, f"{rule} is ignored without a reason above it"
    assert ignores <= 2, "a new ignore: fix the finding instead, or argue for it here"


def test_multi_stage_locked_static_build() -> None:
    steps = instructions()
    froms = [args for word, args in steps if word == "FROM"]
    assert len(froms) == 2
    assert froms[0].startswith("rust:") and froms[0].endswith(" AS builder")
    assert froms[1].startswith(("gcr.io/distroless/static", "scratch"))
    runs = " ".join(args for word, args in steps if word == "RUN")
    # The size-optimised profile of Cargo.toml, whose numbers `make bench-agent-rss` reports.
    assert "cargo build --profile daemonset --locked -p netreach" in runs
    assert "/daemonset/netreach\" /netreach" in runs
    # The DaemonSet binary leaves out `netreach demo` and the testbed it drives.
    assert "--no-default-features" in runs
    assert "unknown-linux-musl" in runs
    assert "--mount=type=cache,target=/usr/local/cargo/registry" in runs
    assert "--mount=type=cache,target=/src/target" in runs


def test_final_stage_contract() -> None:
    steps = instructions()
    final = steps[max(i for i, (word, _) in enumerate(steps) if word == "FROM") :]
    words = [word for word, _ in final]
    assert "RUN" not in words, "the final stage has no shell to run anything"
    assert ("COPY", "--from=builder /netreach /netreach") in final
    assert ("ENTRYPOINT", '["/netreach", "agent"]') in final
    assert ("USER", "0:0") in final
    labels = " ".join(args for word, args in final if word == "LABEL")
    for key in ("title", "description", "version", "licenses", "source"):
        assert f"org.opencontainers.image.{key}=" in labels
    text = DOCKERFILE.read_text()
    assert re.search(r"#.*setns.*\n(#.*\n)*# hadolint ignore=DL3002\nUSER 0:0", text), (
        "USER 0:0 must come with the comment that says why the agent needs root"
    )


def test_dockerignore_keeps_the_context_small() -> None:
    entries = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {"target/", ".git/", ".venv-test/"} <= entries
