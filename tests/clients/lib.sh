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

# definition_json FAMILY IMAGE COMMAND: a minimal Fargate task definition
# whose one essential container runs COMMAND with sh -c.
definition_json() {
  python3 -c '
import json, sys
family, image, command = sys.argv[1:4]
print(json.dumps({
    "family": family,
    "requiresCompatibilities": ["FARGATE"],
    "networkMode": "awsvpc",
    "cpu": "256",
    "memory": "512",
    "containerDefinitions": [{
        "name": "main", "image": image, "essential": True,
        "command": ["sh", "-c", command], "stopTimeout": 2,
    }],
}))
' "$1" "$2" "$3"
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
