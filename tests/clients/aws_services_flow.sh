#!/usr/bin/env bash
# ECS services with the real AWS CLI v2 against a running berthd's TCP
# listener: create-service (with a berth load balancer named
# "berth-<port>" when BERTH_LISTENER_PORT is set), `wait services-stable`,
# describe-services and list-services checks, update-service
# --desired-count 0 and `wait services-stable` again, delete-service and
# `wait services-inactive`, and an error case (create-service of a name in
# use: InvalidParameterException).
#
# Environment:
#   BERTH_ENDPOINT      http://127.0.0.1:PORT (required)
#   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY   an account's key from berthd's config (required)
#   AWS_DEFAULT_REGION  default us-east-1
#   BERTH_LISTENER_PORT a free host port for the service's load balancer (optional)
#   BERTH_TEST_IMAGE    image of the service's task, default busybox:latest
#   AWS                 the CLI, default /usr/bin/aws
# Exit status 0 when every check passed; otherwise 1 with "aws_services_flow: FAIL: ...".
set -euo pipefail
export FLOW=aws_services_flow
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

aws_flow_setup
LISTENER=${BERTH_LISTENER_PORT:-}

SUFFIX=$(unique_suffix)
CLUSTER=awssvc-$SUFFIX
FAMILY=awssvc-web-$SUFFIX
SERVICE=web-$SUFFIX

# Whatever happens, the service goes (force) and the scratch HOME too.
created=""
cleanup() {
  set +e
  if [[ -n $created ]]; then
    ecs delete-service --cluster "$CLUSTER" --service "$SERVICE" --force >/dev/null 2>&1
    ecs wait services-inactive --cluster "$CLUSTER" --services "$SERVICE" >/dev/null 2>&1
  fi
  rm -rf "$HOME"
}
trap cleanup EXIT

step "create-cluster $CLUSTER"
ecs create-cluster --cluster-name "$CLUSTER" >/dev/null || fail "create-cluster failed"

step "register-task-definition $FAMILY (a web server on 8080)"
def=$(definition_json "$FAMILY" "$IMAGE" "mkdir -p /tmp/www && echo aws-cli-service \
> /tmp/www/index.html && httpd -p 8080 -h /tmp/www && trap 'exit 143' TERM; \
while true; do sleep 3600 & wait; done" web 8080)
out=$(ecs register-task-definition --cli-input-json "$def") || fail "register-task-definition failed"
DEF_ARN=$(pyq 'd["taskDefinition"]["taskDefinitionArn"]' <<<"$out")

lb=()
if [[ -n $LISTENER ]]; then
  lb=(--load-balancers "loadBalancerName=berth-$LISTENER,containerName=web,containerPort=8080")
fi
step "create-service $SERVICE (desired 2${LISTENER:+, listener port $LISTENER})"
out=$(ecs create-service --cluster "$CLUSTER" --service-name "$SERVICE" \
  --task-definition "$FAMILY" --desired-count 2 --launch-type FARGATE "${lb[@]}") ||
  fail "create-service failed"
created=1
SERVICE_ARN=$(pyq 'd["service"]["serviceArn"]' <<<"$out")
expect_match "serviceArn" "$SERVICE_ARN" \
  "^arn:aws:ecs:$REGION:[0-9]{12}:service/$CLUSTER/$SERVICE\$"
expect_eq "status" "$(pyq 'd["service"]["status"]' <<<"$out")" ACTIVE
expect_eq "desiredCount" "$(pyq 'd["service"]["desiredCount"]' <<<"$out")" 2
expect_eq "taskDefinition" "$(pyq 'd["service"]["taskDefinition"]' <<<"$out")" "$DEF_ARN"
expect_eq "deployments" "$(pyq 'len(d["service"]["deployments"])' <<<"$out")" 1
expect_eq "deployment status" "$(pyq 'd["service"]["deployments"][0]["status"]' <<<"$out")" PRIMARY

step "wait services-stable"
ecs wait services-stable --cluster "$CLUSTER" --services "$SERVICE" ||
  fail "wait services-stable failed (status $?)"

step "describe-services (the rollout COMPLETED: its tasks have stayed healthy for [services] stable_seconds)"
# The waiter wants runningCount == desiredCount and one deployment; the
# rollout completes once the tasks have been healthy a few seconds more.
for _ in $(seq 1 120); do
  out=$(ecs describe-services --cluster "$CLUSTER" --services "$SERVICE") ||
    fail "describe-services failed"
  [[ $(pyq 'd["services"][0]["deployments"][0]["rolloutState"]' <<<"$out") == COMPLETED ]] && break
  sleep 0.5
done
expect_eq "describe failures" "$(pyq 'len(d["failures"])' <<<"$out")" 0
expect_eq "runningCount" "$(pyq 'd["services"][0]["runningCount"]' <<<"$out")" 2
expect_eq "pendingCount" "$(pyq 'd["services"][0]["pendingCount"]' <<<"$out")" 0
expect_eq "rolloutState" "$(pyq 'd["services"][0]["deployments"][0]["rolloutState"]' <<<"$out")" \
  COMPLETED
expect_contains "events" "$(pyq '[e["message"] for e in d["services"][0]["events"]]' <<<"$out")" \
  "(service $SERVICE) has reached a steady state."
if [[ -n $LISTENER ]]; then
  expect_eq "loadBalancers containerPort" \
    "$(pyq 'd["services"][0]["loadBalancers"][0]["containerPort"]' <<<"$out")" 8080
  expect_eq "loadBalancerName" \
    "$(pyq 'd["services"][0]["loadBalancers"][0]["loadBalancerName"]' <<<"$out")" "berth-$LISTENER"
fi

step "list-services and list-tasks --service-name"
out=$(ecs list-services --cluster "$CLUSTER") || fail "list-services failed"
expect_eq "list-services" "$(pyq 'd["serviceArns"]' <<<"$out")" "[\"$SERVICE_ARN\"]"
out=$(ecs list-tasks --cluster "$CLUSTER" --service-name "$SERVICE") || fail "list-tasks failed"
expect_eq "tasks of the service" "$(pyq 'len(d["taskArns"])' <<<"$out")" 2

step "error: create-service with a name in use"
set +e
err=$(ecs create-service --cluster "$CLUSTER" --service-name "$SERVICE" \
  --task-definition "$FAMILY" --desired-count 1 2>&1 >/dev/null)
rc=$?
set -e
expect_eq "exit code of a service error" "$rc" 254
expect_contains "error text" "$err" "InvalidParameterException"

step "update-service --desired-count 0, wait services-stable"
out=$(ecs update-service --cluster "$CLUSTER" --service "$SERVICE" --desired-count 0) ||
  fail "update-service failed"
expect_eq "desiredCount after update" "$(pyq 'd["service"]["desiredCount"]' <<<"$out")" 0
ecs wait services-stable --cluster "$CLUSTER" --services "$SERVICE" ||
  fail "wait services-stable (0 tasks) failed (status $?)"
out=$(ecs describe-services --cluster "$CLUSTER" --services "$SERVICE") ||
  fail "describe-services failed"
expect_eq "runningCount at 0" "$(pyq 'd["services"][0]["runningCount"]' <<<"$out")" 0
out=$(ecs list-tasks --cluster "$CLUSTER" --service-name "$SERVICE") || fail "list-tasks failed"
expect_eq "running tasks of the service" "$(pyq 'd["taskArns"]' <<<"$out")" "[]"

step "delete-service, wait services-inactive"
out=$(ecs delete-service --cluster "$CLUSTER" --service "$SERVICE") || fail "delete-service failed"
expect_match "status after delete" "$(pyq 'd["service"]["status"]' <<<"$out")" '^(DRAINING|INACTIVE)$'
ecs wait services-inactive --cluster "$CLUSTER" --services "$SERVICE" ||
  fail "wait services-inactive failed (status $?)"
created=""
out=$(ecs list-services --cluster "$CLUSTER") || fail "list-services failed"
expect_eq "list-services after delete" "$(pyq 'd["serviceArns"]' <<<"$out")" "[]"

step "clean up"
ecs deregister-task-definition --task-definition "$FAMILY:1" >/dev/null ||
  fail "deregister-task-definition failed"
ecs delete-cluster --cluster "$CLUSTER" >/dev/null || step "warning: delete-cluster failed"

step "PASS"
