#!/usr/bin/env bash
# test-v2.sh [--quick] [BUILD_DIR]: runs the privileged tests that touch
# cgroups in the pure cgroup v2 test machine (scripts/vm/run.sh), from the
# integration test binary of BUILD_DIR (default: build), and exits with its
# exit code. `make test-v2` runs the full set, `make test` the --quick one.
#
# Full: the v2 driver on the real kernel, limits (OOM, pids, CPU quota,
# stats), device rules, the container lifecycle (kill, delete), isolation
# and security, and the shim's tests (but its 200-task load test).
# Quick: the v2 driver, device rules, limits and the microhost cgroup layout
# ([microhost], ~4 s in the VM).
# BERTH_VM_TESTS overrides the Catch2 test spec.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
quick=0
if [[ ${1:-} == --quick ]]; then
  quick=1
  shift
fi
build=${1:-build}
if [[ $quick == 1 ]]; then
  spec='[cgroup-v2],[devices],[limits],[microhost]'
  timeout=1200
else
  spec='[cgroup],[cgroup-v2],[limits],[devices],[lifecycle],[isolation],[security],[shim]~[shim-200]'
  timeout=3600
fi
spec=${BERTH_VM_TESTS:-$spec}
[[ -x $build/bin/berth-integration-tests ]] || {
  echo "test-v2: $build/bin/berth-integration-tests missing (build first)" >&2
  exit 1
}
log=$build/vm/test-v2.log
set +e
"$here/run.sh" --build "$build" --timeout "$timeout" --cgroup "${BERTH_VM_CGROUP:-root}" \
  --log "$log" -- \
  "\"\$BIN_DIR/berth-integration-tests\" --use-colour no --durations yes '$spec'"
rc=$?
set -e
[[ $rc == 0 ]] || exit "$rc"
# Skips are visible here too: the binary prints `BERTH-SKIPPED: <reason>`
# for each test that did not run, and every reason must be one the VM
# expects (tests/expected-skips-v2.txt: a substring of the reason a line).
expected=$here/../../tests/expected-skips-v2.txt
unexpected=0
while IFS= read -r why; do
  ok=0
  while IFS= read -r pat; do
    [[ -z $pat || $pat == \#* ]] && continue
    [[ $why == *"$pat"* ]] && { ok=1; break; }
  done <"$expected"
  if [[ $ok == 1 ]]; then
    echo "test-v2: expected skip: $why"
  else
    echo "test-v2: UNEXPECTED SKIP in the v2 VM: $why" >&2
    unexpected=$((unexpected + 1))
  fi
done < <(tr -d '\r' <"$log" | sed -n 's/^BERTH-SKIPPED: //p')
if [[ $unexpected -gt 0 ]]; then
  echo "test-v2: FAILED: $unexpected test(s) skipped in the v2 VM that must run there" >&2
  exit 1
fi
exit 0
