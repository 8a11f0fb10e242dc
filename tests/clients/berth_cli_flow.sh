#!/usr/bin/env bash
# The berth CLI against a running berthd: run --wait exit codes (job 0,
# failing 3, oom 137 with its reason), logs, register + run FAMILY:REV with
# --env, ps / describe / stop of a long-running task (with its bill),
# clusters, berth usage (table, -o csv, -o json, verify), and the error and
# usage exit codes.
#
# Environment:
#   BERTH             the CLI, default build/bin/berth of this checkout
#   BERTH_HOST        berthd's address (default unix:///run/berth/berthd.sock)
#   BERTH_TEST_IMAGE  replaces the examples' image
#   SKIP_OOM=1        leaves out the OOM task (hosts without memory accounting)
# Exit status 0 when every check passed; otherwise 1 with "berth_cli_flow: FAIL: ...".
set -euo pipefail
export FLOW=berth_cli_flow
here=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=lib.sh
source "$here/lib.sh"

BERTH=${BERTH:-$here/../../build/bin/berth}
[[ -x $BERTH ]] || fail "$BERTH not found (cmake --build build --target berth)"
examples=$here/../../examples
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The examples with BERTH_TEST_IMAGE as their image.
for f in job failing oom; do
  with_image "$examples/$f.json" "${BERTH_TEST_IMAGE:-}" "$tmp/$f.json"
done

# expect_rc STATUS ARGS...: runs the CLI with ARGS (stdout in $tmp/out,
# stderr in $tmp/err) and checks its exit status.
expect_rc() {
  local want=$1 rc=0
  shift
  "$BERTH" "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
  [[ $rc == "$want" ]] || fail "berth $*: exit status $rc, expected $want; stderr: $(cat "$tmp/err")"
}
out() { cat "$tmp/out"; }
err() { cat "$tmp/err"; }

step "run job.json --wait"
expect_rc 0 run "$tmp/job.json" --wait
id=$(out)
expect_match "task id" "$id" '^[0-9a-f]{32}$'
expect_rc 0 logs "${id:0:12}"
expect_contains "job logs" "$(out)" "hello from a berth job"
expect_contains "job logs" "$(out)" "GREETING=hi"

step "run failing.json --wait"
expect_rc 3 run "$tmp/failing.json" --wait
expect_contains "failing message" "$(err)" "exited with code 3"
failing_id=$(out)
expect_rc 0 logs "$failing_id"
expect_contains "stderr of the task on stderr" "$(err)" "about to fail"

if [[ ${SKIP_OOM:-0} != 1 ]]; then
  step "run oom.json --wait"
  expect_rc 137 run "$tmp/oom.json" --wait
  expect_contains "oom message" "$(err)" "OutOfMemoryError"
  expect_rc 0 describe "$(out)"
  expect_contains "describe of the OOM task" "$(out)" \
    "OutOfMemoryError: Container killed due to memory usage"
else
  echo "$FLOW: SKIPPED: the OOM task (SKIP_OOM=1)" >&2
fi

step "register + run FAMILY:REV --env"
expect_rc 0 register "$tmp/job.json"
rev=$(out)
expect_match "register output" "$rev" '^job:[0-9]+$'
expect_rc 0 run "$rev" --wait -e GREETING=from-cli
expect_rc 0 logs "$(out)"
expect_contains "overridden env" "$(out)" "GREETING=from-cli"

step "ps, describe, stop of a long-running task"
definition_json "cli-flow-$(unique_suffix)" "${BERTH_TEST_IMAGE:-busybox:latest}" \
  "exec sleep 600" >"$tmp/sleep.json"
expect_rc 0 run "$tmp/sleep.json"
sleeper=$(out)
end=$((SECONDS + 120))
while :; do
  expect_rc 0 -o json describe "$sleeper"
  last=$(out | pyq 'd["task"]["lastStatus"]')
  [[ $last == RUNNING ]] && break
  [[ $last == STOPPED ]] && fail "task $sleeper stopped: $(out)"
  ((SECONDS < end)) || fail "task $sleeper still $last after 120s"
  sleep 0.2
done
expect_rc 0 ps
expect_contains "ps header" "$(out)" "TASK ID"
expect_match "ps row" "$(out)" "${sleeper:0:12} +[^ ]+ +[^ ]+ +RUNNING"
expect_rc 0 describe "$sleeper"
expect_contains "describe" "$(out)" "Status:         RUNNING"
expect_rc 0 stop "${sleeper:0:12}" --reason "cli flow"
expect_eq "stop output" "$(out)" "$sleeper"
end=$((SECONDS + 120))
while :; do
  expect_rc 0 -o json describe "$sleeper"
  [[ $(out | pyq 'd["task"]["lastStatus"]') == STOPPED ]] && break
  ((SECONDS < end)) || fail "task $sleeper not STOPPED 120s after stop"
  sleep 0.2
done
expect_eq "stoppedReason" "$(out | pyq 'd["task"]["stoppedReason"]')" "cli flow"
expect_rc 0 ps
[[ $(out) != *"${sleeper:0:12}"* ]] || fail "ps still lists the stopped task: $(out)"
expect_rc 0 ps -a
expect_match "ps -a row" "$(out)" "${sleeper:0:12} .*STOPPED"

step "the stopped task's bill: describe, usage, usage verify"
end=$((SECONDS + 120))
while :; do
  expect_rc 0 describe "$sleeper"
  [[ $(out) == *"(final)"* ]] && break
  ((SECONDS < end)) || fail "describe of $sleeper: no final bill after 120s: $(out)"
  sleep 0.2
done
expect_match "describe's bill" "$(out)" $'(^|\n)Billed: +[1-9][0-9]* s, \\$[0-9]+\\.[0-9]{6} \\(final\\)\n'
expect_rc 0 usage --group-by task --from 1970-01-01
expect_match "usage header" "$(out)" '^KEY +TASKS +BILLED-S +vCPU-S +GB-S +CPU-USED-S +NET-IN +NET-OUT +AMOUNT'
expect_match "usage row of the task" "$(out)" $'\n'"$sleeper"' +1 +[1-9][0-9]* +[0-9]+\.[0-9]{3} .* [0-9]+\.[0-9]{6}'$'\n'
expect_match "usage total" "$(out)" $'\nTOTAL +[1-9][0-9]* +[1-9][0-9]* .* [0-9]+\.[0-9]{6}$'
expect_rc 0 usage --group-by task --from 0 -o csv
expect_eq "csv header" "$(out | head -n 1 | tr -d '\r')" \
  "key,tasks,billed_seconds,vcpu_seconds,gb_seconds,cpu_used_seconds,net_in_bytes,net_out_bytes,amount_usd"
expect_match "csv row of the task" "$(out | tr -d '\r')" $'\n'"$sleeper"',1,[1-9][0-9]*,[0-9.]+,[0-9.]+,[0-9.]+,[0-9]+,[0-9]+,[0-9]+\.[0-9]{6}('$'\n''|$)'
[[ $(out) == *$'\r\n'* ]] || fail "csv lines do not end in CRLF"
expect_rc 0 -o json usage --group-by family --from 0
expect_eq "json total = sum of the lines" \
  "$(out | pyq 'd["total"]["amountMicroUsd"] == sum(l["amountMicroUsd"] for l in d["lineItems"])')" True
expect_rc 0 usage verify
expect_match "usage verify" "$(out)" '^ledger of account [0-9]{12}: [1-9][0-9]* records?, chain intact, head [0-9a-f]{64}$'
expect_rc 2 usage --group-by week
expect_rc 2 -o csv ps
expect_rc 1 usage --from yesterday
expect_contains "usage --from yesterday" "$(err)" "berth: InvalidParameterException: from "

step "clusters"
expect_rc 0 clusters
expect_match "clusters" "$(out)" $'(^|\n)default +ACTIVE'

step "errors and usage"
expect_rc 1 describe 0123456789abcdef0123456789abcdef
expect_contains "describe unknown" "$(err)" "berth: ResourceNotFoundException: "
echo '{"family": "x"}' >"$tmp/bad.json"
expect_rc 1 register "$tmp/bad.json"
expect_match "register without containers" "$(err)" '^berth: [A-Za-z]+Exception: '
expect_rc 2 run
expect_rc 2 --host ftp://x ps
expect_rc 1 --host unix://"$tmp"/none.sock ps
expect_contains "no daemon" "$(err)" "cannot connect to berthd at unix://$tmp/none.sock"

step "PASS"
