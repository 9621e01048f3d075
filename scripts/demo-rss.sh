#!/usr/bin/env bash
# Resident memory of `netreach demo` at scale (as root): runs the demo on a scenario (default:
# the 100 x 100 one, 9,900 pairs at a 10 s interval), waits for ROUNDS rounds, then prints
# VmRSS / VmHWM / threads and where the resident memory is (anonymous vs file-backed), and
# stops the demo with Ctrl-C (it tears its testbed down).
#
#   scripts/demo-rss.sh [--bin PATH] [--scenario FILE] [--rounds N] [--format table|json] [-- DEMO ARGS...]
#
# Default binary: target/release/netreach (`make build`); CARGO_TARGET_DIR is honoured.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin="${CARGO_TARGET_DIR:-$root/target}/release/netreach"
scenario="$root/agent/scenarios/scale-100x100.yaml"
rounds=3
format=table
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$2; shift 2 ;;
    --scenario) scenario=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --format) format=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -x "$bin" ] || { echo "no binary at $bin (cargo build --release -p netreach)" >&2; exit 2; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# A round ends with its summary line (table) or its "problems" key (json).
case "$format" in
  table) marker='^[0-9]+ pairs: ' ;;
  json) marker='"problems"' ;;
  *) echo "--format table|json" >&2; exit 2 ;;
esac
"$bin" demo --scenario "$scenario" --interval 10s --format "$format" --listen 127.0.0.1:0 "${extra[@]}" \
  >"$out/stdout" 2>"$out/stderr" &
pid=$!
started=$(date +%s)
peak_rss=0
while kill -0 "$pid" 2>/dev/null; do
  done_rounds=$(grep -cE "$marker" "$out/stdout" 2>/dev/null || true)
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
  [ "${rss:-0}" -gt "$peak_rss" ] && peak_rss=$rss
  if [ "${done_rounds:-0}" -ge "$rounds" ]; then
    # Let the round's output settle, then read the steady state between rounds.
    sleep 2
    echo "after $done_rounds rounds ($(( $(date +%s) - started )) s):"
    grep -E '^(VmRSS|VmHWM|RssAnon|RssFile|Threads)' "/proc/$pid/status"
    awk '/^(Rss|Anonymous|Private_Dirty|Shared_Clean)/' "/proc/$pid/smaps_rollup"
    echo "resident kB by kind of mapping:"
    # Anonymous mappings of a thread's stack size (plus its guard page) are thread stacks;
    # larger ones up to 64 MiB are malloc arenas of other threads; [heap] is the main arena.
    awk -v bin="$bin" '
      /^[0-9a-f]+-[0-9a-f]+ / { name = $6 }
      /^Size:/ {
        size = $2
        if (name == bin || name ~ /netreach/) kind = "binary (text, data)"
        else if (name ~ /\.so/) kind = "shared libraries"
        else if (name == "[heap]") kind = "[heap] (main malloc arena)"
        else if (name == "[stack]") kind = "[stack] (main thread)"
        else if (name ~ /^\[/) kind = name
        else if (name == "" && size <= 8196) kind = "anon <= 8 MiB (thread stacks, small mmaps)"
        else if (name == "") kind = "anon > 8 MiB (other malloc arenas, large mmaps)"
        else kind = "other files"
      }
      /^Rss:/ { rss[kind] += $2 }
      END { for (k in rss) printf "%8d %s\n", rss[k], k }' "/proc/$pid/smaps" | sort -rn
    echo "threads by name:"
    for task in /proc/"$pid"/task/*; do cat "$task/comm"; done | sort | uniq -c | sort -rn
    kill -INT "$pid"
    wait "$pid" || true
    exit 0
  fi
  sleep 0.5
done
echo "the demo exited early:" >&2
tail -20 "$out/stderr" >&2
exit 1
