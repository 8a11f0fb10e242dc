#!/usr/bin/env bash
# `make demo`: berthd on its embedded defaults, in a scratch state dir and
# with its own bridge, subnet, cgroup subtree and nftables table (so it runs
# beside a real berthd without touching it), runs the example task
# definitions of examples/ end to end through its unix socket with the
# berth CLI, prints their status and logs, runs a service of two web
# servers behind berth's load balancer and shows it survive a task killed
# with SIGKILL, ends with the bill of what it ran (berth usage, once the
# tasks have stopped), and stops everything it started.
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
service_created=""
cleanup() {
  set +e
  if [[ -n $berthd_pid ]] && kill -0 "$berthd_pid" 2>/dev/null; then
    # A service left (the demo failed half-way) is deleted first, or its
    # tasks would be replaced as they are stopped.
    if [[ -n $service_created ]]; then
      curl -s --max-time 30 --unix-socket "$sock" \
        -H "X-Amz-Target: AmazonEC2ContainerServiceV20141113.DeleteService" \
        -d '{"service":"demo-web","force":true}' http://berth/ >/dev/null 2>&1
      for _ in $(seq 1 300); do
        [[ -z $(berth -o json ps 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin).get("tasks",[])) or "")' 2>/dev/null) ]] && break
        sleep 0.2
      done
    fi
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

# A service behind berth's own load balancer (issue 13), over the ECS API
# on the socket: two web servers on a host listener port; one is killed
# with SIGKILL, the supervisor replaces it, the listener keeps answering.
ecs() { # OPERATION JSON
  curl -sS --fail-with-body --max-time 60 --unix-socket "$sock" \
    -H "X-Amz-Target: AmazonEC2ContainerServiceV20141113.$1" \
    -H "Content-Type: application/x-amz-json-1.1" -d "$2" http://berth/
}
jq_() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
service_state() { # "running pending deployments rolloutState"
  ecs DescribeServices '{"services":["demo-web"]}' | jq_ '" ".join(str(x) for x in (
    d["services"][0]["runningCount"], d["services"][0]["pendingCount"],
    len(d["services"][0]["deployments"]), d["services"][0]["deployments"][0]["rolloutState"]))'
}
wait_stable() { # DESIRED: running == DESIRED, nothing pending, one COMPLETED deployment
  for _ in $(seq 1 600); do
    [[ $(service_state 2>/dev/null) == "$1 0 1 COMPLETED" ]] && return 0
    sleep 0.2
  done
  echo "the service did not become stable: $(service_state)" >&2
  return 1
}
service_tasks() {
  ecs ListTasks '{"serviceName":"demo-web"}' | jq_ '" ".join(a.rsplit("/",1)[1] for a in d["taskArns"])'
}
fetch() { # the listener's answer, retried for up to 60 s
  for _ in $(seq 1 300); do
    curl -sf --max-time 2 "http://127.0.0.1:$listener/" && return 0
    sleep 0.2
  done
  echo "no answer on the listener port $listener" >&2
  return 1
}
listener=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
say "a service of 2 web servers behind berth's load balancer on port $listener"
# shellcheck disable=SC2016 # $(hostname) is the task's shell's
ecs RegisterTaskDefinition '{"family":"demo-web","requiresCompatibilities":["FARGATE"],
  "networkMode":"awsvpc","cpu":"256","memory":"512","containerDefinitions":[{"name":"web",
  "image":"busybox:latest","portMappings":[{"containerPort":8080}],"command":["sh","-c",
  "mkdir -p /tmp/www && echo hello from task $(hostname) > /tmp/www/index.html && httpd -p 8080 -h /tmp/www && trap \"exit 143\" TERM; while true; do sleep 3600 & wait; done"]}]}' >/dev/null
service_created=1
ecs CreateService "{\"serviceName\":\"demo-web\",\"taskDefinition\":\"demo-web\",\"desiredCount\":2,
  \"loadBalancers\":[{\"containerName\":\"web\",\"containerPort\":8080,\"berthListenerPort\":$listener}]}" |
  jq_ '"service " + d["service"]["serviceArn"] + ": " + d["service"]["status"]'
wait_stable 2
berth ps
for _ in 1 2 3 4; do fetch; done

victim=$(service_tasks | cut -d' ' -f1)
pid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["containers"][0]["pid"])' \
  "$work/state/tasks/$victim/state.json")
grep -q "$victim" "/proc/$pid/cgroup" # it is that task's process
say "kill -9 the process of task $victim (pid $pid)"
kill -9 "$pid"
for _ in $(seq 1 600); do
  [[ " $(service_tasks 2>/dev/null) " != *" $victim "* ]] && [[ $(service_state 2>/dev/null) == "2 0 1 COMPLETED" ]] && break
  sleep 0.2
done
wait_stable 2
say "the supervisor replaced it: the service's tasks and events"
berth ps
ecs DescribeServices '{"services":["demo-web"]}' | jq_ '"\n".join(e["message"] for e in d["services"][0]["events"][:3])'
say "the listener keeps answering: curl http://127.0.0.1:$listener/"
for _ in 1 2 3 4; do fetch; done

say "delete the service"
ecs DeleteService '{"service":"demo-web","force":true}' | jq_ '"service status: " + d["service"]["status"]'
for _ in $(seq 1 600); do
  [[ $(ecs DescribeServices '{"services":["demo-web"]}' | jq_ 'd["services"][0]["status"]') == INACTIVE ]] && break
  sleep 0.2
done
service_created=""

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

