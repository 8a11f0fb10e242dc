#!/usr/bin/env bash
# The real AWS CLI v2 against a running berthd's TCP listener:
# register-task-definition, run-task, describe-tasks, `wait tasks-running`,
# list-tasks, stop-task, `wait tasks-stopped`, and an error case (an unknown
# task definition: exit code 254 and ClientException).
#
# Environment:
#   BERTH_ENDPOINT      http://127.0.0.1:PORT (required)
#   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY   an account's key from berthd's config (required)
#   AWS_DEFAULT_REGION  default us-east-1 (berthd's --region)
#   BERTH_TEST_IMAGE    image of the test task, default busybox:latest
#   AWS                 the CLI, default /usr/bin/aws
# Exit status 0 when every check passed; otherwise 1 with "aws_cli_flow: FAIL: ...".
set -euo pipefail
export FLOW=aws_cli_flow
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

aws_flow_setup
trap 'rm -rf "$HOME"' EXIT

SUFFIX=$(unique_suffix)
CLUSTER=awscli-$SUFFIX
FAMILY=awscli-flow-$SUFFIX

step "create-cluster $CLUSTER"
out=$(ecs create-cluster --cluster-name "$CLUSTER") || fail "create-cluster failed"
expect_eq "cluster status" "$(pyq 'd["cluster"]["status"]' <<<"$out")" ACTIVE

step "register-task-definition $FAMILY"
def=$(definition_json "$FAMILY" "$IMAGE" "echo started; exec sleep 600")
out=$(ecs register-task-definition --cli-input-json "$def") || fail "register-task-definition failed"
expect_eq "family" "$(pyq 'd["taskDefinition"]["family"]' <<<"$out")" "$FAMILY"
expect_eq "revision" "$(pyq 'd["taskDefinition"]["revision"]' <<<"$out")" 1
expect_eq "definition status" "$(pyq 'd["taskDefinition"]["status"]' <<<"$out")" ACTIVE
DEF_ARN=$(pyq 'd["taskDefinition"]["taskDefinitionArn"]' <<<"$out")
expect_match "taskDefinitionArn" "$DEF_ARN" "^arn:aws:ecs:$REGION:[0-9]{12}:task-definition/$FAMILY:1\$"

step "run-task"
out=$(ecs run-task --cluster "$CLUSTER" --task-definition "$FAMILY:1" --count 1 \
  --launch-type FARGATE --started-by aws-cli-flow) || fail "run-task failed"
expect_eq "run-task failures" "$(pyq 'len(d.get("failures", []))' <<<"$out")" 0
expect_eq "run-task tasks" "$(pyq 'len(d["tasks"])' <<<"$out")" 1
TASK_ARN=$(pyq 'd["tasks"][0]["taskArn"]' <<<"$out")
expect_match "taskArn" "$TASK_ARN" "^arn:aws:ecs:$REGION:[0-9]{12}:task/$CLUSTER/[0-9a-f]{32}\$"
expect_match "lastStatus after run-task" "$(pyq 'd["tasks"][0]["lastStatus"]' <<<"$out")" \
  '^(PROVISIONING|PENDING|ACTIVATING|RUNNING)$'
expect_eq "startedBy" "$(pyq 'd["tasks"][0]["startedBy"]' <<<"$out")" aws-cli-flow

step "wait tasks-running $TASK_ARN"
ecs wait tasks-running --cluster "$CLUSTER" --tasks "$TASK_ARN" ||
  fail "wait tasks-running failed (status $?)"

step "describe-tasks"
out=$(ecs describe-tasks --cluster "$CLUSTER" --tasks "$TASK_ARN") || fail "describe-tasks failed"
expect_eq "describe failures" "$(pyq 'len(d["failures"])' <<<"$out")" 0
expect_eq "lastStatus" "$(pyq 'd["tasks"][0]["lastStatus"]' <<<"$out")" RUNNING
expect_eq "taskDefinitionArn" "$(pyq 'd["tasks"][0]["taskDefinitionArn"]' <<<"$out")" "$DEF_ARN"
expect_eq "container status" "$(pyq 'd["tasks"][0]["containers"][0]["lastStatus"]' <<<"$out")" RUNNING
ip=$(pyq 'd["tasks"][0]["containers"][0]["networkInterfaces"][0]["privateIpv4Address"]' <<<"$out")
expect_match "task IP" "$ip" '^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$'
expect_match "startedAt" "$(pyq 'd["tasks"][0]["startedAt"]' <<<"$out")" '^[0-9]{4}-'

step "list-tasks (RUNNING)"
out=$(ecs list-tasks --cluster "$CLUSTER") || fail "list-tasks failed"
expect_eq "list-tasks" "$(pyq 'd["taskArns"]' <<<"$out")" "[\"$TASK_ARN\"]"
out=$(ecs list-tasks --cluster "$CLUSTER" --family "$FAMILY") || fail "list-tasks --family failed"
expect_eq "list-tasks --family" "$(pyq 'd["taskArns"]' <<<"$out")" "[\"$TASK_ARN\"]"

step "stop-task"
out=$(ecs stop-task --cluster "$CLUSTER" --task "$TASK_ARN" --reason "aws cli flow") ||
  fail "stop-task failed"
expect_eq "desiredStatus after stop" "$(pyq 'd["task"]["desiredStatus"]' <<<"$out")" STOPPED

step "wait tasks-stopped"
ecs wait tasks-stopped --cluster "$CLUSTER" --tasks "$TASK_ARN" ||
  fail "wait tasks-stopped failed (status $?)"

out=$(ecs describe-tasks --cluster "$CLUSTER" --tasks "$TASK_ARN") || fail "describe-tasks failed"
expect_eq "lastStatus" "$(pyq 'd["tasks"][0]["lastStatus"]' <<<"$out")" STOPPED
expect_eq "stopCode" "$(pyq 'd["tasks"][0]["stopCode"]' <<<"$out")" UserInitiated
expect_eq "stoppedReason" "$(pyq 'd["tasks"][0]["stoppedReason"]' <<<"$out")" "aws cli flow"
expect_match "exitCode" "$(pyq 'd["tasks"][0]["containers"][0].get("exitCode")' <<<"$out")" '^[0-9]+$'
expect_match "stoppedAt" "$(pyq 'd["tasks"][0]["stoppedAt"]' <<<"$out")" '^[0-9]{4}-'

step "list-tasks after the stop"
out=$(ecs list-tasks --cluster "$CLUSTER") || fail "list-tasks failed"
expect_eq "list-tasks RUNNING" "$(pyq 'd["taskArns"]' <<<"$out")" "[]"
out=$(ecs list-tasks --cluster "$CLUSTER" --desired-status STOPPED) || fail "list-tasks failed"
expect_eq "list-tasks STOPPED" "$(pyq 'd["taskArns"]' <<<"$out")" "[\"$TASK_ARN\"]"

step "error: describe-task-definition of an unknown family"
set +e
err=$(ecs describe-task-definition --task-definition "no-such-family-$SUFFIX" 2>&1 >/dev/null)
rc=$?
set -e
expect_eq "exit code of a service error" "$rc" 254
expect_contains "error text" "$err" "ClientException"

step "clean up"
ecs deregister-task-definition --task-definition "$FAMILY:1" >/dev/null ||
  fail "deregister-task-definition failed"
ecs delete-cluster --cluster "$CLUSTER" >/dev/null || step "warning: delete-cluster failed"

step "PASS"
