#!/usr/bin/env bash
# make-rootfs.sh DIR PROBE: a minimal busybox rootfs for integration tests and
# the benchmark. Idempotent: re-running it refreshes the same tree.
#
# Uses Debian's busybox-static, so the tree needs no libc; applet symlinks are
# created here rather than by `busybox --install` inside a chroot, which would
# need root and a mounted /proc.
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 DIR PROBE" >&2
  exit 2
fi
dir=$1
probe=$2
busybox=${BUSYBOX:-/bin/busybox}

if [[ ! -x $busybox ]]; then
  echo "make-rootfs: $busybox not found (apt-get install busybox-static)" >&2
  exit 1
fi
# A dynamic busybox would fail inside the container with a bare ENOENT.
if command -v file >/dev/null && ! file -L "$busybox" | grep -q 'statically linked'; then
  echo "make-rootfs: $busybox is not statically linked (want busybox-static)" >&2
  exit 1
fi
if [[ ! -x $probe ]]; then
  echo "make-rootfs: probe $probe not found or not executable" >&2
  exit 1
fi

mkdir -p "$dir"/{bin,etc,proc,sys,dev,tmp,root}
chmod 1777 "$dir/tmp"
install -m 0755 "$busybox" "$dir/bin/busybox"
install -m 0755 "$probe" "$dir/bin/probe"
# Every applet (httpd, wget, nc, ... for the control plane's examples and
# end-to-end tests), as symlinks in /bin.
for applet in $("$busybox" --list); do
  [[ $applet == busybox ]] || ln -sfn busybox "$dir/bin/$applet"
done

cat >"$dir/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat >"$dir/etc/group" <<'GROUP'
root:x:0:
tty:x:5:
nogroup:x:65534:
GROUP
