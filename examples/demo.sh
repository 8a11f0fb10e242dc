#!/usr/bin/env bash
# `make demo`, for now: runs an example container under berth-runtime — a
# busybox rootfs with the default profile (all namespaces, capabilities cut
# to the default set, seccomp allowlist, no_new_privileges) plus a 64 MiB
# memory limit — and shows what it sees from the inside. Everything it
# creates is removed on exit. The control plane (berthd) will take over this
# demo once it exists.
set -euo pipefail
build=${1:-build}
bin=$(cd "$build/bin" && pwd)
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/berth-demo.XXXXXX)
root="$work/state"
id="demo-$$"
cleanup() {
  "$bin/berth-runtime" --root "$root" delete --force "$id" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

bash "$here/tests/scripts/make-rootfs.sh" "$work/bundle/rootfs" "$bin/berth-probe" >/dev/null
"$bin/berth-runtime" spec --bundle "$work/bundle"
# The default spec runs `sh`; give it a memory limit (the spec's own format).
sed -i 's/"resources": {/"resources": {\n      "memory": {"limit": 67108864, "swap": 67108864},\n      "pids": {"limit": 64},/' \
  "$work/bundle/config.json"

echo "== berth-runtime run (busybox, default profile, 64 MiB, 64 pids)"
status=0
"$bin/berth-runtime" --root "$root" run --bundle "$work/bundle" "$id" <<'SCRIPT' || status=$?
echo "hostname:     $(hostname)"
echo "pid of sh:    $$ (pid 1 of its own pid namespace)"
echo "user:         $(id)"
grep -E '^(CapEff|CapBnd|Seccomp|NoNewPrivs)' /proc/self/status | sed 's/^/status:       /'
echo "cgroup:       $(grep -m1 -E 'memory|^0::' /proc/self/cgroup) (its own cgroup namespace)"
echo "mounts:       $(wc -l < /proc/self/mountinfo) (the host's are not visible)"
/bin/probe syscall-denied 2>/dev/null | sed 's/^/seccomp:      /' || true
echo "exiting with 7"
exit 7
SCRIPT
echo "== exit code: $status (expected 7)"
[ "$status" -eq 7 ]
