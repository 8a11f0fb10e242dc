#!/usr/bin/env bash
# `make demo`: berthd on its embedded defaults, in a scratch state dir and
# with its own bridge, subnet, cgroup subtree and nftables table (so it runs
# beside a real berthd without touching it), runs the example task
# definitions of examples/ end to end through its unix socket with the
# berth CLI, prints their status and logs, ends with the bill of what it
# ran (berth usage, once the tasks have stopped), and stops everything it
# started.
#
# The image is a busybox root filesystem made here from Debian's
# busybox-static and imported with berth-rootfs as "busybox:latest": the
# demo needs no network.
set -euo pipefail
build=${1:-build}
bin=$(cd "$build/bin" && pwd)
here=$(cd "$(dirname "$0")/.." && pwd)
# Short paths: the run dir holds unix sockets (108-byte limit).
work=$(mktemp -d /tmp/bdemo.XXXXXX)
tag=$(basename "$work" | tr -dc 'a-z0-9' | tail -c 6)
sock="$work/run/berthd.sock"
berth() { "$bin/berth" --host "unix://$sock" "$@"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

berthd_pid=""
cleanup() {
  set +e
  if [[ -n $berthd_pid ]] && kill -0 "$berthd_pid" 2>/dev/null; then
    # Stop what is still running, then berthd, then what the instance made.
    for id in $(berth -o json ps 2>/dev/null | python3 -c \
      'import json,sys; [print(t["taskArn"].rsplit("/",1)[1]) for t in json.load(sys.stdin).get("tasks",[])]' 2>/dev/null); do
      berth stop "$id" >/dev/null 2>&1
    done
    for _ in $(seq 1 100); do
      [[ -z $(berth -o json ps 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin).get("tasks",[])) or "")' 2>/dev/null) ]] && break
      sleep 0.2
    done
    kill -TERM "$berthd_pid"
    wait "$berthd_pid" 2>/dev/null
  fi
  "$bin/berthd" --config "$work/berthd.toml" --teardown >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

say "image: busybox root filesystem -> berth-rootfs import busybox:latest"
bash "$here/tests/scripts/make-rootfs.sh" "$work/rootfs" "$bin/berth-probe" >/dev/null
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
"$bin/berth-rootfs" --store "$work/images" import --name busybox:latest "$work/rootfs.tar" | tail -1

cat >"$work/berthd.toml" <<EOF
state_dir = "$work/state"
run_dir = "$work/run"
images_dir = "$work/images"
bridge = "bdemo$tag"
subnet = "10.213.0.0/24"
cgroup_name = "berth-demo-$tag"
nft_table = "berth_demo_$tag"
warm_pool = 2
EOF

say "berthd (state in $work/state, socket $sock)"
"$bin/berthd" --config "$work/berthd.toml" >"$work/berthd.log" 2>&1 &
berthd_pid=$!
for _ in $(seq 1 300); do
  [[ -S $sock ]] && berth clusters >/dev/null 2>&1 && break
  kill -0 "$berthd_pid" 2>/dev/null || { cat "$work/berthd.log"; exit 1; }
  sleep 0.1
done
berth clusters

say "a one-shot job: berth run examples/job.json --wait"
job=$(berth run "$here/examples/job.json" --wait)
echo "task $job exited 0; its log (berth logs $job):"
berth logs "$job"

say "a web server with a sidecar and a port mapping: examples/web-sidecar.json"
web=$(berth run "$here/examples/web-sidecar.json")
for _ in $(seq 1 300); do
  [[ $(berth -o json describe "$web" | python3 -c 'import json,sys; print(json.load(sys.stdin)["task"]["lastStatus"])') == RUNNING ]] && break
  sleep 0.1
done
berth ps
port=$(berth -o json describe "$web" | python3 -c '
import json,sys
t=json.load(sys.stdin)["task"]
print([b["hostPort"] for c in t["containers"] for b in c.get("networkBindings",[])][0])')
say "the web server through its host port: curl http://127.0.0.1:$port/"
for _ in $(seq 1 100); do
  out=$(curl -sf --max-time 2 "http://127.0.0.1:$port/" 2>/dev/null) && break
  sleep 0.1
done
echo "$out"
for _ in $(seq 1 100); do
  berth logs "$web" sidecar 2>/dev/null | grep -q . && break
  sleep 0.1
done
say "the sidecar's log: berth logs $web sidecar"
berth logs "$web" sidecar | tail -3
say "berth describe $web"
berth describe "$web"
berth stop "$web" >/dev/null
say "a task that fails: berth run examples/failing.json --wait"
status=0
berth run "$here/examples/failing.json" --wait || status=$?
echo "exit code: $status (the essential container's)"
[[ $status -eq 3 ]]

say "every task of the demo: berth ps -a"
berth ps -a

# The bill: once every task has stopped and its bill is final (the meter
# writes the final ledger records when a task stops).
for _ in $(seq 1 300); do
  [[ $(berth -o json ps -a | python3 -c '
import json,sys
ts=json.load(sys.stdin)["tasks"]
print(all(t["lastStatus"] == "STOPPED" and t.get("berthBilling", {}).get("final") for t in ts))') == True ]] && break
  sleep 0.1
done
say "the bill of what the demo ran: berth usage --group-by task"
berth usage --group-by task
# shellcheck disable=SC2016 # Python source, not shell
berth -o json usage | python3 -c '
import json,sys
t=json.load(sys.stdin)["total"]
m, n, s = t["amountMicroUsd"], t["tasks"], t["billedSeconds"]  # integers: no float on the money path
print(f"total: ${m // 1000000}.{m % 1000000:06d} for {n} tasks, {s} billed seconds")'

