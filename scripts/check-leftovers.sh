#!/usr/bin/env bash
# Fails when the test suite left anything behind: network namespaces of the testbed
# (nrtb-<owner pid base36>-*) or of the agent's netns fixtures (nrnt-<owner pid>-*), testbed
# cgroups, run dirs or /etc/netns entries. Runs whose owner process is still alive (another
# test run on this machine) are not leftovers. Changes nothing.
set -u
found=0
say() { printf 'leftover: %s\n' "$*"; found=1; }

# The owner PID encoded in a name, or nothing.
owner_of() {
  local name=$1 id
  case "$name" in
    nrtb-*) id=${name#nrtb-}; id=${id%%-*}; [[ $id =~ ^[0-9a-z]+$ ]] && echo $((36#$id)) ;;
    nrnt-*) id=${name#nrnt-}; id=${id%%-*}; [[ $id =~ ^[0-9]+$ ]] && echo "$id" ;;
  esac
}

# Whether a name belongs to a run whose owner is gone.
dead_run() {
  local pid
  pid=$(owner_of "$1")
  [ -z "$pid" ] || [ ! -d "/proc/$pid" ]
}

check() {
  local what=$1 name=$2
  case "$name" in nrtb-*|nrnt-*) dead_run "$name" && say "$what" ;; esac
}

while read -r name _; do
  check "network namespace $name" "$name"
done < <(ip netns list 2>/dev/null)

for dir in /sys/fs/cgroup /sys/fs/cgroup/unified /sys/fs/cgroup/systemd /sys/fs/cgroup/pids; do
  for cg in "$dir"/netreach-testbed-*; do
    [ -e "$cg" ] && check "cgroup $cg" "${cg##*/netreach-testbed-}"
  done
done
for d in /etc/netns/nrtb-* /etc/netns/nrnt-* /run/netreach-testbed/nrtb-*; do
  [ -e "$d" ] && check "$d" "${d##*/}"
done

if [ "$found" -ne 0 ]; then
  echo "the tests left the above behind; \`make clean-testbed\` removes testbed leftovers" >&2
  exit 1
fi
echo "no leftovers: no test netns, cgroup, run dir or /etc/netns entry of a finished run remains"
