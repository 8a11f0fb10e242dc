# shellcheck shell=bash
# Helpers shared by the client flow scripts (sourced, not run).
# Assertions print "<flow>: FAIL: <what>" and exit 1; JSON is read with
# python3 (no jq on the test machines).

FLOW=${FLOW:-flow}

fail() {
  echo "$FLOW: FAIL: $*" >&2
  exit 1
}

step() { echo "$FLOW: $*" >&2; }

# pyq EXPR: evaluates the Python expression EXPR with `d` bound to the JSON
# document on stdin and prints the result (JSON for lists/dicts).
pyq() {
  python3 -c '
import json, sys
d = json.load(sys.stdin)
v = eval(sys.argv[1])
print(json.dumps(v) if isinstance(v, (list, dict)) else ("" if v is None else v))
' "$1"
}

expect_eq() { # NAME ACTUAL EXPECTED
  [[ "$2" == "$3" ]] || fail "$1: expected '$3', got '$2'"
}

expect_match() { # NAME ACTUAL REGEX
  [[ "$2" =~ $3 ]] || fail "$1: '$2' does not match /$3/"
}

expect_contains() { # NAME HAYSTACK NEEDLE
  [[ "$2" == *"$3"* ]] || fail "$1: '$3' not found in: $2"
}

# A unique suffix for names this run creates.
unique_suffix() { python3 -c 'import uuid; print(uuid.uuid4().hex[:10])'; }

# definition_json FAMILY IMAGE COMMAND [NAME [PORT]]: a minimal Fargate task
# definition whose one essential container (default name "main") runs
# COMMAND with sh -c, with a port mapping of PORT when given.
definition_json() {
  python3 -c '
import json, sys
family, image, command = sys.argv[1:4]
name = sys.argv[4] if len(sys.argv) > 4 else "main"
c = {"name": name, "image": image, "essential": True,
     "command": ["sh", "-c", command], "stopTimeout": 2}
if len(sys.argv) > 5:
    c["portMappings"] = [{"containerPort": int(sys.argv[5]), "protocol": "tcp"}]
print(json.dumps({
    "family": family,
    "requiresCompatibilities": ["FARGATE"],
    "networkMode": "awsvpc",
    "cpu": "256",
    "memory": "512",
    "containerDefinitions": [c],
}))
' "$@"
}

# aws_flow_setup: checks the environment of the AWS CLI flows (BERTH_ENDPOINT,
# the keys, the CLI), sets REGION, IMAGE and AWS, gives the CLI a scratch
# HOME (no ~/.aws config or credentials of the machine leak in, no
# instance-metadata lookups; the caller removes it: `rm -rf "$HOME"` in its
# EXIT trap) and defines `ecs ARGS...`: `aws ecs ARGS...` against berthd.
aws_flow_setup() {
  : "${BERTH_ENDPOINT:?set BERTH_ENDPOINT=http://127.0.0.1:PORT}"
  : "${AWS_ACCESS_KEY_ID:?set AWS_ACCESS_KEY_ID}"
  : "${AWS_SECRET_ACCESS_KEY:?set AWS_SECRET_ACCESS_KEY}"
  REGION=${AWS_DEFAULT_REGION:-us-east-1}
  # shellcheck disable=SC2034 # used by the flows that source this file
  IMAGE=${BERTH_TEST_IMAGE:-busybox:latest}
  AWS=${AWS:-/usr/bin/aws}
  [[ -x $AWS ]] || fail "$AWS not found (Debian package awscli)"
  HOME=$(mktemp -d)
  export HOME AWS_EC2_METADATA_DISABLED=true AWS_PAGER="" AWS_RETRY_MODE=standard AWS_MAX_ATTEMPTS=2
  unset AWS_PROFILE AWS_CONFIG_FILE AWS_SHARED_CREDENTIALS_FILE
}

ecs() {
  "$AWS" --endpoint-url "$BERTH_ENDPOINT" --region "$REGION" --output json \
    --cli-read-timeout 120 ecs "$@"
}

# with_image SRC IMAGE DST: writes the task definition SRC to DST with every
# container's image replaced by IMAGE (unchanged when IMAGE is empty).
with_image() {
  python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
if sys.argv[2]:
    for c in d["containerDefinitions"]:
        c["image"] = sys.argv[2]
json.dump(d, open(sys.argv[3], "w"))
' "$1" "$2" "$3"
}
