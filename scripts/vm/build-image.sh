#!/usr/bin/env bash
# build-image.sh CACHE_DIR: builds (or finds cached) the pure cgroup v2 test
# machine and prints the directory holding it: `vmlinuz` (Debian's own
# kernel, package linux-image-amd64) and `initramfs.cpio.gz`, the whole root
# filesystem: Debian's busybox-static, bash and coreutils' install, the kernel modules the VM
# needs (virtio disk, ext4, overlay, veth) from the same kernel package, and
# scripts/vm/init. Nothing is downloaded: every file comes from an installed
# Debian package (scripts/install-deps.sh installs them).
#
# The image is cached in CACHE_DIR/<key>, where the key hashes this script,
# the init, and the versions of the packages the files come from; a change
# to any of them builds a new image (older ones are removed).
set -euo pipefail

[[ $# -eq 1 ]] || { echo "usage: $0 CACHE_DIR" >&2; exit 2; }
cache=$1
here=$(cd "$(dirname "$0")" && pwd)

die() { echo "vm/build-image: $*" >&2; exit 1; }

# The newest installed Debian kernel (the host may run another one).
kver=""
for k in /boot/vmlinuz-*; do
  [[ -e $k ]] || continue
  v=${k#/boot/vmlinuz-}
  [[ -d /lib/modules/$v/kernel ]] || continue
  if [[ -z $kver ]] || dpkg --compare-versions "$v" gt "$kver"; then kver=$v; fi
done
[[ -n $kver ]] || die "no Debian kernel in /boot (apt-get install linux-image-amd64)"
[[ -x /bin/busybox ]] && file -L /bin/busybox | grep -q 'statically linked' ||
  die "/bin/busybox is not Debian's busybox-static"

# Modules, in load order (each with its dependencies first).
modules=(virtio_pci virtio_blk ext4 overlay veth)

pkgver() { dpkg-query -W -f='${Package}=${Version} ' "$@" 2>/dev/null || true; }
key=$( {
  sha256sum "$here/build-image.sh" "$here/init"
  echo "kernel=$kver modules=${modules[*]}"
  pkgver "linux-image-$kver" busybox-static bash coreutils libc6 libtinfo6 libacl1 libattr1 libselinux1 libpcre2-8-0
} | sha256sum | cut -c1-16)
out=$cache/$key
if [[ -f $out/initramfs.cpio.gz && -f $out/vmlinuz ]]; then
  echo "$out"
  exit 0
fi

mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root
mkdir -p "$root"/{bin,dev,etc,lib,lib64,mnt,proc,sys,tmp,run,root,payload,newroot}
mkdir -p "$root/lib/x86_64-linux-gnu"
chmod 1777 "$root/tmp"
ln -s bin "$root/sbin"
mkdir -p "$root/usr"
ln -s ../bin "$root/usr/bin"
ln -s ../bin "$root/usr/sbin"
ln -s ../lib "$root/usr/lib"

install -m 0755 /bin/busybox "$root/bin/busybox"
for a in $(/bin/busybox --list); do
  [[ $a == busybox ]] || ln -sf busybox "$root/bin/$a"
done
# bash (the tests' helper scripts are bash) and its shared libraries.
install -m 0755 /bin/bash "$root/bin/bash"
copy_libs() {
  local lib
  for lib in $(ldd "$1" | grep -o '/[^ ]*'); do
    [[ -e $root$lib ]] || { mkdir -p "$root$(dirname "$lib")"; cp -L "$lib" "$root$lib"; }
  done
}
copy_libs /bin/bash
# Tools the tests' scripts use that Debian's busybox lacks (coreutils).
for tool in install; do
  install -m 0755 "$(command -v "$tool")" "$root/bin/$tool"
  copy_libs "$root/bin/$tool"
done

# Kernel modules from the kernel package, and their load order.
: >"$root/etc/modules.order"
for m in "${modules[@]}"; do
  while read -r cmd path _; do
    [[ $cmd == insmod ]] || continue
    grep -qxF "$path" "$root/etc/modules.order" && continue
    mkdir -p "$root$(dirname "$path")"
    cp "$path" "$root$path"
    echo "$path" >>"$root/etc/modules.order"
  done < <(modprobe -S "$kver" --show-depends "$m")
done

echo "root:x:0:0:root:/root:/bin/sh" >"$root/etc/passwd"
echo "nobody:x:65534:65534:nobody:/:/bin/false" >>"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
install -m 0755 "$here/init" "$root/init"
echo "$kver" >"$root/etc/berth-vm-kernel"

(cd "$root" && find . -print0 | sort -z | cpio --null -o -H newc --quiet) | gzip -1 >"$tmp/initramfs.cpio.gz"
cp "/boot/vmlinuz-$kver" "$tmp/vmlinuz"
echo "$kver" >"$tmp/kernel-version"
rm -rf "$root"
# Keep only the newest image.
find "$cache" -mindepth 1 -maxdepth 1 -type d ! -name '.build.*' -exec rm -rf {} +
mv "$tmp" "$out"
trap - EXIT
echo "vm/build-image: built $out (kernel $kver)" >&2
echo "$out"
