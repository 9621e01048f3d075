#!/usr/bin/env bash
# Fails when the test suite left anything behind: network namespaces of the testbed
# (nrtb-*) or of the agent's own netns fixtures (nrnt-*), testbed cgroups, run dirs or
# /etc/netns entries, or processes still inside such a namespace. Changes nothing.
set -u
found=0
say() { printf 'leftover: %s\n' "$*"; found=1; }

while read -r name _; do
  case "$name" in nrtb-*|nrnt-*) say "network namespace $name" ;; esac
done < <(ip netns list 2>/dev/null)

for dir in /sys/fs/cgroup /sys/fs/cgroup/unified /sys/fs/cgroup/systemd /sys/fs/cgroup/pids; do
  for cg in "$dir"/netreach-testbed-*; do
    [ -e "$cg" ] && say "cgroup $cg"
  done
done
for d in /etc/netns/nrtb-* /etc/netns/nrnt-* /run/netreach-testbed/nrtb-*; do
  [ -e "$d" ] && say "$d"
done

if [ "$found" -ne 0 ]; then
  echo "the tests left the above behind; \`make clean-testbed\` removes testbed leftovers" >&2
  exit 1
fi
echo "no leftovers: no test netns, cgroup, run dir or /etc/netns entry remains"
