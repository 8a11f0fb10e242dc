#!/usr/bin/env bash
# Fails when a ctest run skipped a test that tests/expected-skips.txt does not
# list. Tests skip with BERTH_SKIP (tests/skip.h), which ctest reports as
# "Skipped"; `ctest --output-junit FILE` records them as <skipped>.
#
#   scripts/check-skips.sh tests/expected-skips.txt build/ctest-junit.xml [more.xml...]
#
# The expected list has one skip a line, `test name | why it skips on the CI
# host`; `#` starts a comment. Every skip of the run is printed with its
# reason; the unexpected ones are named, and the exit status is 1.
set -euo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 EXPECTED-SKIPS JUNIT-XML..." >&2
  exit 2
fi
expected_file=$1
shift

# "name<TAB>reason" for each expected skip.
expected=$(sed -e '/^[[:space:]]*#/d' -e '/^[[:space:]]*$/d' "$expected_file" |
  awk -F' [|] ' '{ name=$1; sub(/[[:space:]]+$/, "", name); reason=$0; sub(/^[^|]*[|] */, "", reason); print name "\t" reason }')

# "name<TAB>message<TAB>BERTH-SKIPPED reason" for each skipped test case.
skipped=""
for junit in "$@"; do
  if [ ! -s "$junit" ]; then
    echo "check-skips: $junit is missing or empty (did ctest run with --output-junit?)" >&2
    exit 1
  fi
  skipped+=$(awk '
    function unxml(s) {
      gsub(/&quot;/, "\"", s); gsub(/&apos;/, "\047", s); gsub(/&lt;/, "<", s);
      gsub(/&gt;/, ">", s); gsub(/&amp;/, "\\&", s); return s
    }
    function flush() {
      if (name != "" && skip != "") print unxml(name) "\t" unxml(skip) "\t" unxml(why)
      name = ""; skip = ""; why = ""
    }
    /<testcase / {
      flush()
      if (match($0, /name="[^"]*"/)) name = substr($0, RSTART + 6, RLENGTH - 7)
      if (match($0, /status="[^"]*"/)) {
        st = substr($0, RSTART + 8, RLENGTH - 9)
        if (st == "disabled") skip = "disabled"
      }
    }
    /<skipped/ {
      skip = "skipped"
      if (match($0, /message="[^"]*"/)) skip = substr($0, RSTART + 9, RLENGTH - 10)
    }
    /BERTH-SKIPPED: / && why == "" {
      why = $0; sub(/.*BERTH-SKIPPED: /, "", why)
    }
    END { flush() }
  ' "$junit")
  skipped+=$'\n'
done

unexpected=0
n_skipped=0
while IFS=$'\t' read -r name message why; do
  [ -n "$name" ] || continue
  n_skipped=$((n_skipped + 1))
  listed=$(awk -F'\t' -v n="$name" '$1 == n { print $2; exit }' <<<"$expected")
  if [ -n "$listed" ]; then
    echo "check-skips: expected skip: $name"
    echo "    because: $listed"
  else
    unexpected=$((unexpected + 1))
    echo "check-skips: UNEXPECTED SKIP: $name" >&2
    echo "    the test says: ${why:-($message)}" >&2
  fi
done <<<"$skipped"

if [ "$unexpected" -gt 0 ]; then
  echo "check-skips: FAILED: $unexpected test(s) skipped that must run on this host." >&2
  echo "    Fix the host (scripts/install-deps.sh, run as root) or the test; a skip that is" >&2
  echo "    right for the CI host goes into $expected_file with its reason." >&2
  exit 1
fi
echo "check-skips: $n_skipped skipped, all expected ($expected_file)"
