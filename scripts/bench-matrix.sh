#!/usr/bin/env bash
# The offline JSON matrix benchmark (issue 10, item 7) in one run: builds the baseline netreach
# (BASELINE_REV, default 5d3c226, the commit before the streaming JSON writer) from
# `git archive`, installs network-config-analyzer 2.1.0 into .venv-bench when no `nca` is
# found, then runs `cargo bench --bench matrix_json` with both. Arguments go to the bench
# (`--runs N`, `--keep DIR`). The baseline binary is kept in TARGET/bench-baseline/ for the
# next run.
set -euo pipefail
cd "$(dirname "$0")/.."
rev=$(git rev-parse --short "${BASELINE_REV:-5d3c226}")
target=${CARGO_TARGET_DIR:-$PWD/target}
baseline=$target/bench-baseline/netreach-$rev

if [[ ! -x $baseline ]]; then
  echo "baseline: building netreach at $rev" >&2
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  mkdir "$scratch/src" "$scratch/target"
  git archive "$rev" | tar -x -C "$scratch/src"
  # git archive stamps files with the commit time. Its own target dir, seeded with this
  # one's release artifacts: the dependencies are reused, and the fresh stamps make cargo
  # build the workspace crates from the baseline's sources (not take this tree's for them).
  find "$scratch/src" -type f -exec touch {} +
  [[ -d $target/release ]] && cp -a "$target/release" "$scratch/target/"
  CARGO_TARGET_DIR=$scratch/target cargo build -q --release --locked -p netreach \
    --manifest-path "$scratch/src/Cargo.toml"
  mkdir -p "$(dirname "$baseline")"
  cp "$scratch/target/release/netreach" "$baseline"
  rm -rf "$scratch"
fi

if [[ -z ${NCA_BIN:-} ]] && ! command -v nca >/dev/null && [[ ! -x .venv-bench/bin/nca ]]; then
  echo "nca: installing network-config-analyzer==2.1.0 into .venv-bench" >&2
  # Without it the bench skips the comparison and says how to install it.
  python3 -m venv .venv-bench && .venv-bench/bin/pip install -q network-config-analyzer==2.1.0 ||
    echo "nca: install failed; the comparison is skipped" >&2
fi

NETREACH_BASELINE_BIN=$baseline CARGO_TARGET_DIR=$target \
  cargo bench -q --locked -p netreach --bench matrix_json -- "$@"
