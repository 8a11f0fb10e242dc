#!/usr/bin/env bash
# bench/run.sh BUILD_DIR: runs the benchmarks against the binaries in
# BUILD_DIR/bin and prints each result beside its baseline.
#
#   BENCH_ROUNDS  rounds per runtime (default 100)
#   BENCH_BERTH   the runtime under test (default BUILD_DIR/bin/berth-runtime)
#   BENCH_RUNC    the baseline (default: runc on PATH, else /usr/sbin/runc)
#   BENCH_NET_ROUNDS  rounds of the network benchmark (default 200)
#   BENCH_CNI_PATH    the CNI plugins, its baseline (default /usr/lib/cni)
#   BENCH_ROOTFS_ROUNDS  rounds of the rootfs-ready benchmark (default 200)
#   BENCH_IMPORT_MB      size of the generated image to import (default 100; 0 skips)
#   BENCH_IMPORT_RUNS    imports (and tar runs) per layer kind (default 3)
#   CP_BENCH_TASKS, CP_BENCH_IDLE, CP_BENCH_CHURN_S, CP_BENCH_DESCRIBE_S: the
#                        control plane benchmark (bench/cp_bench.py)
#
# Everything it creates lives in one temp dir, removed on exit (containers
# left by a failed round are force-deleted first).
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$1" && pwd)
berth=${BENCH_BERTH:-$build/bin/berth-runtime}
runc=${BENCH_RUNC:-$(command -v runc || echo /usr/sbin/runc)}
rounds=${BENCH_ROUNDS:-100}
probe=$build/bin/berth-probe
bench=$build/bin/berth-runtime-bench

for bin in "$berth" "$runc" "$probe" "$bench"; do
  if [[ ! -x $bin ]]; then
    echo "bench: $bin not found or not executable (make build; runc comes from scripts/install-deps.sh)" >&2
    exit 1
  fi
done
if [[ $(id -u) -ne 0 ]]; then
  echo "bench: must run as root (containers need namespaces and cgroups)" >&2
  exit 1
fi

work=$(mktemp -d /tmp/berth-bench.XXXXXX)
cleanup() {
  local rt bin state
  for rt in berth runc; do
    bin=$berth
    [[ $rt == runc ]] && bin=$runc
    for state in "$work/root-$rt"/*/; do
      [[ -d $state ]] || continue
      "$bin" --root "$work/root-$rt" delete --force "$(basename "$state")" >/dev/null 2>&1 || true
    done
  done
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/bundle" "$work/root-berth" "$work/root-runc"
bash "$here/../tests/scripts/make-rootfs.sh" "$work/bundle/rootfs" "$probe"
if ! "$berth" --root "$work/root-berth" spec --bundle "$work/bundle"; then
  echo "bench: \`$berth spec\` failed" >&2
  exit 1
fi

"$bench" --berth "$berth" --runc "$runc" --bundle "$work/bundle" --work "$work" \
  --rounds "$rounds"

# Task networking: create and release of a microhost network, the netns
# library beside the CNI bridge plugin. It cleans up after itself (bridges,
# netns mounts, its own temp dir), also when interrupted.
netbench=$build/bin/berth-netns-bench
if [[ ! -x $netbench ]]; then
  echo "bench: $netbench not found or not executable (make build)" >&2
  exit 1
fi
"$netbench" --rounds "${BENCH_NET_ROUNDS:-200}" --cni-path "${BENCH_CNI_PATH:-/usr/lib/cni}"

# The image store: overlay root filesystem ready from a local image (the test
# image, imported into a private store), and import of a generated image
# beside tar -x of the same layers. The bench keeps its stores and generated
# files in its own temp dir and removes them (and any mount) at exit; the
# test image lives in $work.
rootfsbench=$build/bin/berth-rootfs-bench
if [[ ! -x $rootfsbench ]]; then
  echo "bench: $rootfsbench not found or not executable (make build)" >&2
  exit 1
fi
bash "$here/../scripts/make-test-image.sh" --probe "$probe" "$work/test-image" >/dev/null
"$rootfsbench" --image "$work/test-image" --rounds "${BENCH_ROOTFS_ROUNDS:-200}" \
  --import-mb "${BENCH_IMPORT_MB:-100}" --import-runs "${BENCH_IMPORT_RUNS:-3}"

# The task shim: memory of 200 berth-shim processes running at once.
bash "$here/shim_rss.sh" "$build" "${BENCH_SHIM_TASKS:-200}"

# The control plane: RunTask -> RUNNING with and without the warm pool,
# churn, DescribeTasks rate, memory per idle task (bench/cp_bench.py; its
# own berthd in a scratch dir). CP_BENCH_TASKS, CP_BENCH_IDLE,
# CP_BENCH_CHURN_S, CP_BENCH_DESCRIBE_S size it.
python3 "$here/cp_bench.py" "$build/bin"
