#!/usr/bin/env bash
# run.sh [options] -- COMMAND...: runs COMMAND (a bash command line) as root in
# the pure cgroup v2 test machine (scripts/vm/build-image.sh) and exits with
# its exit code. COMMAND runs in /tmp of the VM with BIN_DIR and SRC_DIR at
# the same absolute paths as on the host, so tests find the binaries and the
# scripts compiled into them. Its output is printed as it runs; the whole
# serial console is kept in the log file.
#
#   --build DIR     the build dir (default: build); DIR/bin goes into the VM
#   --cache DIR     image cache (default: DIR-of-build/vm)
#   --log FILE      the console log (default: BUILD/vm/last-run.log)
#   --timeout SEC   kill the VM after SEC seconds (default: 1800)
#   --cgroup MODE   root (default): tests run in the root cgroup; leaf: in
#                   /berth-vm/runner, a leaf below a subtree with controllers
#                   enabled, as under systemd
#
# The VM: qemu-system-x86_64 with software emulation (TCG), 2 CPUs, 2 GiB, no
# network device. BERTH_VM_KVM=1 uses /dev/kvm instead (off by default: the
# development machines' nested KVM aborts qemu on an MSR write). The kernel command line
# has cgroup_no_v1=all, so every controller is on cgroup v2.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=build cache="" log="" timeout=1800 cgroup=root
while [[ $# -gt 0 ]]; do
  case $1 in
    --build) build=$2; shift 2 ;;
    --cache) cache=$2; shift 2 ;;
    --log) log=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    --cgroup) cgroup=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "usage: $0 [--build DIR] [--cache DIR] [--log FILE] [--timeout SEC] [--cgroup root|leaf] -- COMMAND..." >&2; exit 2 ;;
  esac
done
[[ $# -gt 0 ]] || { echo "vm/run: no command" >&2; exit 2; }
build=$(cd "$build" && pwd)
cache=${cache:-$build/vm}
log=${log:-$cache/last-run.log}
bin=$build/bin
[[ -d $bin ]] || { echo "vm/run: $bin missing (build first)" >&2; exit 1; }

image=$("$here/build-image.sh" "$cache")

work=$(mktemp -d "${TMPDIR:-/tmp}/berth-vm.XXXXXX")
trap 'rm -rf "$work"' EXIT
stage=$work/stage
mkdir -p "$stage"/{bin,lib,src/tests}
# The binaries, and the shared libraries they need (the VM has only the
# libraries bash needs).
cp -a "$bin"/. "$stage/bin/"
for f in "$stage"/bin/*; do
  [[ -f $f && -x $f ]] || continue
  # (ldd fails on the static ones)
  for lib in $(ldd "$f" 2>/dev/null | grep -o '/[^ ]*' || true); do
    [[ -e $stage/lib/$(basename "$lib") ]] || cp -L "$lib" "$stage/lib/"
  done
done
rm -f "$stage/lib/ld-linux-x86-64.so.2"
# What the tests read from the source tree.
cp -a "$src/scripts" "$stage/src/"
cp -a "$src/tests/scripts" "$src/tests/data" "$stage/src/tests/"
cat >"$stage/vm.conf" <<CONF
SRC_DIR='$src'
BIN_DIR='$bin'
VM_CGROUP='$cgroup'
CONF
{
  echo "set -o pipefail"
  printf '%s\n' "$*"
} >"$stage/run"
size_mb=$(($(du -sm "$stage" | cut -f1) * 5 / 4 + 64))
mkfs.ext4 -q -F -L berth-payload -d "$stage" "$work/payload.img" "${size_mb}M" >/dev/null

accel=tcg cpu=max
[[ ${BERTH_VM_KVM:-0} == 1 && -w /dev/kvm ]] && accel=kvm cpu=host
mkdir -p "$(dirname "$log")"
echo "vm/run: kernel $(cat "$image/kernel-version"), accel $accel, payload ${size_mb} MiB, log $log" >&2
start=$(date +%s)
set +e
timeout --foreground -k 10 "$timeout" qemu-system-x86_64 \
  -machine q35 -accel "$accel" -cpu "$cpu" -smp 2 -m 2G \
  -display none -monitor none -serial stdio -no-reboot -nic none \
  -kernel "$image/vmlinuz" -initrd "$image/initramfs.cpio.gz" \
  -append "console=ttyS0 quiet loglevel=4 panic=-1 cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1 rdinit=/init" \
  -drive "file=$work/payload.img,format=raw,if=virtio" </dev/null 2>&1 | tee "$log"
qrc=${PIPESTATUS[0]}
set -e
echo "vm/run: the VM ran $(($(date +%s) - start)) s (qemu exit $qrc)" >&2
rc=$(tr -d '\r' <"$log" | sed -n 's/^BERTH-VM-EXIT: \([0-9]*\)$/\1/p' | tail -1)
if [[ -z $rc ]]; then
  echo "vm/run: no exit code on the console (timeout or crash; qemu exit $qrc)" >&2
  exit 124
fi
exit "$rc"
