#!/usr/bin/env bash
# curl over berthd's unix socket with the native endpoints: POST
# examples/job.json to /v1/tasks, GET /v1/tasks/{id} until STOPPED, the
# task's logs, GET /v1/tasks, the task's bill (berthBilling), GET /v1/usage
# (groupBy, another account's usage refused, bad parameters) and
# /v1/usage/verify, and the ECS error shape of a 404 and of malformed JSON.
#
# Environment:
#   BERTH_SOCKET      berthd's socket, default /run/berth/berthd.sock
#   BERTH_TEST_IMAGE  replaces the example's image (e.g. 127.0.0.1:5000/berth-test/busybox:latest)
#   BERTH_CLUSTER     cluster to run in (default: berthd's default cluster)
#   DEADLINE          seconds to wait for STOPPED, default 120
# Exit status 0 when every check passed; otherwise 1 with "curl_flow: FAIL: ...".
set -euo pipefail
export FLOW=curl_flow
here=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=lib.sh
source "$here/lib.sh"

SOCK=${BERTH_SOCKET:-/run/berth/berthd.sock}
DEADLINE=${DEADLINE:-120}
JOB=$here/../../examples/job.json
[[ -S $SOCK ]] || fail "$SOCK is not a socket (is berthd running?)"
[[ -f $JOB ]] || fail "$JOB not found"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# api METHOD PATH [curl args...]: the body on stdout; the HTTP status in
# $tmp/status.
api() {
  local method=$1 path=$2
  shift 2
  curl -sS --unix-socket "$SOCK" -X "$method" -o "$tmp/body" -w '%{http_code}' \
    "$@" "http://berth$path" >"$tmp/status" || fail "curl $method $path failed"
  cat "$tmp/body"
}
status() { cat "$tmp/status"; }

definition=$tmp/job.json
with_image "$JOB" "${BERTH_TEST_IMAGE:-}" "$definition"
query=
[[ -n ${BERTH_CLUSTER:-} ]] && query="?cluster=$BERTH_CLUSTER"

step "POST /v1/tasks$query with $JOB"
out=$(api POST "/v1/tasks$query" -H 'Content-Type: application/json' -d @"$definition")
expect_eq "POST /v1/tasks status" "$(status)" 200
TASK_ARN=$(pyq 'd["task"]["taskArn"]' <<<"$out")
expect_match "taskArn" "$TASK_ARN" '^arn:aws:ecs:[a-z0-9-]+:[0-9]{12}:task/[A-Za-z0-9_-]+/[0-9a-f]{32}$'
ID=${TASK_ARN##*/}
expect_match "task definition" "$(pyq 'd["task"]["taskDefinitionArn"]' <<<"$out")" ':task-definition/job:[0-9]+$'

step "GET /v1/tasks/$ID until STOPPED"
end=$((SECONDS + DEADLINE))
while :; do
  out=$(api GET "/v1/tasks/$ID")
  expect_eq "GET /v1/tasks/{id} status" "$(status)" 200
  last=$(pyq 'd["task"]["lastStatus"]' <<<"$out")
  [[ $last == STOPPED ]] && break
  ((SECONDS < end)) || fail "task $ID still $last after ${DEADLINE}s"
  sleep 0.2
done
expect_eq "stopCode" "$(pyq 'd["task"]["stopCode"]' <<<"$out")" EssentialContainerExited
expect_eq "exitCode" "$(pyq 'd["task"]["containers"][0]["exitCode"]' <<<"$out")" 0
for field in createdAt startedAt stoppedAt; do
  expect_match "$field" "$(pyq "d['task'].get('$field')" <<<"$out")" '^[0-9]+(\.[0-9]+)?$'
done

step "GET /v1/tasks/$ID/logs"
logs=$(api GET "/v1/tasks/$ID/logs")
expect_eq "logs status" "$(status)" 200
expect_contains "logs" "$logs" "hello from a berth job"
expect_contains "logs" "$logs" "GREETING=hi"
# CRI lines: "<RFC3339Nano> stdout F <text>".
first=$(head -n 1 <<<"$logs")
expect_match "CRI log line" "$first" '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z stdout F '
logs=$(api GET "/v1/tasks/$ID/logs?container=job&follow=true")
expect_eq "followed logs of a stopped task status" "$(status)" 200
expect_contains "followed logs" "$logs" "done"

step "GET /v1/tasks?status=STOPPED"
out=$(api GET "/v1/tasks?status=STOPPED")
expect_eq "GET /v1/tasks status" "$(status)" 200
expect_eq "listed" "$(pyq "[t['taskArn'] for t in d['tasks'] if t['taskArn'] == '$TASK_ARN']" <<<"$out")" \
  "[\"$TASK_ARN\"]"

step "berthBilling of the stopped task"
end=$((SECONDS + DEADLINE))
while :; do
  out=$(api GET "/v1/tasks/$ID")
  expect_eq "GET /v1/tasks/{id} status" "$(status)" 200
  [[ $(pyq 'd["task"].get("berthBilling", {}).get("final")' <<<"$out") == True ]] && break
  ((SECONDS < end)) || fail "task $ID: no final berthBilling after ${DEADLINE}s: $out"
  sleep 0.2
done
expect_match "billedSeconds" "$(pyq 'd["task"]["berthBilling"]["billedSeconds"]' <<<"$out")" '^[1-9][0-9]*$'
expect_match "amountMicroUsd" "$(pyq 'd["task"]["berthBilling"]["amountMicroUsd"]' <<<"$out")" '^[0-9]+$'
out=$(api GET "/v1/tasks?status=STOPPED")
expect_eq "berthBilling in GET /v1/tasks" \
  "$(pyq "[t['berthBilling']['final'] for t in d['tasks'] if t['taskArn'] == '$TASK_ARN']" <<<"$out")" "[true]"

step "GET /v1/usage"
ACCOUNT=$(cut -d: -f5 <<<"$TASK_ARN")
out=$(api GET "/v1/usage?groupBy=task&from=0")
expect_eq "GET /v1/usage status" "$(status)" 200
expect_eq "usage account" "$(pyq 'd["account"]' <<<"$out")" "$ACCOUNT"
expect_match "the task's line" "$(pyq "[l['amountMicroUsd'] for l in d['lineItems'] if l['key'] == '$ID']" <<<"$out")" \
  '^\[[0-9]+\]$'
expect_eq "total = sum of the lines" \
  "$(pyq 'd["total"]["amountMicroUsd"] == sum(l["amountMicroUsd"] for l in d["lineItems"])' <<<"$out")" True
for group in family service day; do
  out=$(api GET "/v1/usage?groupBy=$group&from=1970-01-01&to=2999-01-01T00:00:00Z")
  expect_eq "GET /v1/usage?groupBy=$group status" "$(status)" 200
  expect_eq "groupBy=$group total" \
    "$(pyq 'd["total"]["amountMicroUsd"] == sum(l["amountMicroUsd"] for l in d["lineItems"])' <<<"$out")" True
done
out=$(api GET "/v1/usage?groupBy=family&from=0")
expect_match "the job family's line" "$(pyq "[l['key'] for l in d['lineItems'] if l['key'] == 'job']" <<<"$out")" \
  '^\["job"\]$'
other=111111111111
[[ $ACCOUNT == "$other" ]] && other=222222222222
out=$(api GET "/v1/usage?account=$other")
expect_eq "another account's usage status" "$(status)" 403
expect_eq "another account's usage __type" "$(pyq 'd["__type"].split("#")[-1]' <<<"$out")" AccessDeniedException
expect_contains "another account's usage message" "$(pyq 'd.get("message") or d.get("Message")' <<<"$out")" "$other"
out=$(api GET "/v1/usage?account=$ACCOUNT&from=0")
expect_eq "own account named status" "$(status)" 200
for bad in "from=yesterday" "to=2026-13-01" "groupBy=week" "from=2026-12-05T00:00:00"; do
  out=$(api GET "/v1/usage?$bad")
  expect_eq "GET /v1/usage?$bad status" "$(status)" 400
  expect_eq "GET /v1/usage?$bad __type" "$(pyq 'd["__type"].split("#")[-1]' <<<"$out")" InvalidParameterException
  expect_contains "GET /v1/usage?$bad message" "$(pyq 'd.get("message") or d.get("Message")' <<<"$out")" "${bad%%=*}"
done

step "GET /v1/usage/verify"
out=$(api GET /v1/usage/verify)
expect_eq "verify status" "$(status)" 200
expect_eq "verify ok" "$(pyq 'd["ok"]' <<<"$out")" True
expect_eq "verify account" "$(pyq 'd["account"]' <<<"$out")" "$ACCOUNT"
expect_match "verify records" "$(pyq 'd["records"]' <<<"$out")" '^[1-9][0-9]*$'
expect_match "verify head" "$(pyq 'd["head"]' <<<"$out")" '^[0-9a-f]{64}$'
expect_eq "verify problems" "$(pyq 'd["problems"]' <<<"$out")" "[]"

step "errors"
unknown=$(python3 -c 'import uuid; print(uuid.uuid4().hex)')
out=$(api GET "/v1/tasks/$unknown")
expect_eq "unknown task status" "$(status)" 404
expect_eq "unknown task __type" "$(pyq 'd["__type"].split("#")[-1]' <<<"$out")" ResourceNotFoundException
out=$(api POST /v1/tasks -H 'Content-Type: application/json' --data-raw '{"containerDefinitions": [')
expect_eq "malformed JSON status" "$(status)" 400
expect_match "malformed JSON __type" "$(pyq 'd["__type"].split("#")[-1]' <<<"$out")" 'Exception$'
[[ -n $(pyq 'd.get("message") or d.get("Message")' <<<"$out") ]] || fail "malformed JSON: no message"
health=$(api GET /healthz)
expect_eq "/healthz" "$(status) $health" "200 ok"

step "PASS"
