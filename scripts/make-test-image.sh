#!/usr/bin/env bash
# make-test-image.sh [--probe PATH] [--ref-name NAME] [--extra SRC:DEST]... OUT_DIR
#
# Builds a small busybox image as an OCI image layout in OUT_DIR, offline:
# pure bash + tar + gzip + sha256sum, no registry, no skopeo. Tests and the
# benchmark import it (or convert it with skopeo) instead of pulling.
#
# The image is deterministic: fixed mtimes, names sorted, numeric owner 0,
# `gzip -n` (no name or timestamp in the gzip header), so the same inputs give
# the same digests on every run and every host with the same tar/gzip.
#
# Layer contents: /bin/busybox (Debian's busybox-static, so no libc is needed)
# with symlinks for common applets, /etc/passwd and /etc/group (root, nobody),
# /tmp (1777), /root, empty /proc /sys /dev mount points; with --probe the
# static probe binary at /probe (0755); with --extra a file or directory
# copied to DEST (mode kept, owner 0).
set -euo pipefail

usage() {
  cat >&2 <<'USAGE'
usage: make-test-image.sh [--probe PATH] [--ref-name NAME] [--extra SRC:DEST]... OUT_DIR
  --probe PATH       add the static probe binary at /probe (mode 0755)
  --ref-name NAME    index.json annotation org.opencontainers.image.ref.name (default: latest)
  --extra SRC:DEST   copy file or directory SRC to absolute path DEST in the image (repeatable)
  OUT_DIR            created; must not exist or be empty
USAGE
  exit 2
}

die() {
  echo "make-test-image: $*" >&2
  exit 1
}

probe=""
ref_name="latest"
extras=()
out=""
while [[ $# -gt 0 ]]; do
  case $1 in
  --probe)
    [[ $# -ge 2 ]] || usage
    probe=$2
    shift 2
    ;;
  --ref-name)
    [[ $# -ge 2 ]] || usage
    ref_name=$2
    shift 2
    ;;
  --extra)
    [[ $# -ge 2 ]] || usage
    extras+=("$2")
    shift 2
    ;;
  -h | --help) usage ;;
  --) shift; break ;;
  -*)
    echo "make-test-image: unknown option $1" >&2
    usage
    ;;
  *)
    [[ -z $out ]] || { echo "make-test-image: more than one OUT_DIR ($out, $1)" >&2; usage; }
    out=$1
    shift
    ;;
  esac
done
if [[ $# -gt 0 ]]; then
  [[ -z $out && $# -eq 1 ]] || usage
  out=$1
fi
[[ -n $out ]] || usage

busybox=${BUSYBOX:-/bin/busybox}
[[ -x $busybox ]] || die "$busybox not found (apt-get install busybox-static)"
# A dynamic busybox would fail inside the container with a bare ENOENT.
if command -v file >/dev/null && ! file -L "$busybox" | grep -q 'statically linked'; then
  die "$busybox is not statically linked (want busybox-static)"
fi
if [[ -n $probe ]]; then
  [[ -f $probe && -x $probe ]] || die "--probe $probe: not an executable file"
fi
# The name goes into JSON unescaped: allow only reference characters.
[[ $ref_name =~ ^[A-Za-z0-9][A-Za-z0-9._:/@-]*$ ]] ||
  die "--ref-name '$ref_name': want letters, digits and . _ : / @ - only"
for e in "${extras[@]}"; do
  [[ $e == *:* ]] || die "--extra '$e': want SRC:DEST"
  src=${e%%:*}
  dest=${e#*:}
  [[ -e $src || -L $src ]] || die "--extra '$e': $src does not exist"
  [[ $dest == /* ]] || die "--extra '$e': DEST must be an absolute path"
  [[ /$dest/ != */../* && /$dest/ != */./* ]] || die "--extra '$e': DEST must not contain . or .."
  [[ ${dest%/} != "" ]] || die "--extra '$e': DEST must not be /"
done

for tool in tar gzip sha256sum; do
  command -v "$tool" >/dev/null || die "$tool not found"
done

if [[ -e $out && ! -d $out ]]; then
  die "$out exists and is not a directory"
fi
if [[ -d $out && -n $(ls -A "$out") ]]; then
  die "$out exists and is not empty"
fi
created_out=0
if [[ ! -d $out ]]; then
  mkdir -p "$out"
  created_out=1
fi
out=$(cd "$out" && pwd)
stage="$out/.stage"

# On failure leave OUT_DIR as we found it (absent or empty); always drop the
# staging tree.
finish() {
  local rc=$?
  rm -rf "$stage"
  if [[ $rc -ne 0 ]]; then
    if [[ $created_out -eq 1 ]]; then
      rm -rf "$out"
    else
      find "$out" -mindepth 1 -delete 2>/dev/null || true
    fi
  fi
}
trap finish EXIT

umask 022
root="$stage/rootfs"
mkdir -p "$root"/{bin,etc,proc,sys,dev,tmp,root}
chmod 1777 "$root/tmp"
chmod 0700 "$root/root"
install -m 0755 "$busybox" "$root/bin/busybox"
for applet in sh ls cat echo sleep true false env id mkdir rm cp mv ln ps kill wc \
  grep sed head tail touch chmod stat uname hostname printf test yes seq sort uniq \
  find xargs nc wget ip ifconfig; do
  ln -s busybox "$root/bin/$applet"
done
cat >"$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat >"$root/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
GROUP
chmod 0644 "$root/etc/passwd" "$root/etc/group"
if [[ -n $probe ]]; then
  install -m 0755 "$probe" "$root/probe"
fi
for e in "${extras[@]}"; do
  src=${e%%:*}
  dest=${e#*:}
  dest=${dest%/}
  mkdir -p "$root$(dirname "$dest")"
  rm -rf "${root:?}$dest"
  cp -a --no-preserve=ownership "$src" "$root$dest"
done

blobs="$out/blobs/sha256"
mkdir -p "$blobs"

# put_blob FILE: moves FILE into blobs/sha256/<digest>, prints "digest size".
put_blob() {
  local file=$1 hex size
  hex=$(sha256sum "$file" | cut -d' ' -f1)
  size=$(stat -c %s "$file")
  mv "$file" "$blobs/$hex"
  echo "sha256:$hex $size"
}

# Deterministic tar: sorted names, mtime 0, owner 0, GNU format (no pax
# headers carrying atime/ctime). Top-level names are passed sorted so members
# carry no "./" prefix, as `docker save` layers do.
mapfile -t top < <(cd "$root" && find . -mindepth 1 -maxdepth 1 -printf '%P\n' | LC_ALL=C sort)
LC_ALL=C tar -C "$root" --format=gnu --sort=name --mtime=@0 --owner=0 --group=0 \
  --numeric-owner --no-acls --no-xattrs --no-selinux -cf "$stage/layer.tar" -- "${top[@]}"
diff_id="sha256:$(sha256sum "$stage/layer.tar" | cut -d' ' -f1)"
gzip -n -9 "$stage/layer.tar"
read -r layer_digest layer_size < <(put_blob "$stage/layer.tar.gz")

case $(uname -m) in
x86_64) arch=amd64 ;;
aarch64) arch=arm64 ;;
*) arch=$(uname -m) ;;
esac

printf '%s' '{"architecture":"'"$arch"'","os":"linux",'\
'"config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],'\
'"Cmd":["/bin/sh"],"WorkingDir":"/"},'\
'"rootfs":{"type":"layers","diff_ids":["'"$diff_id"'"]}}' >"$stage/config.json"
read -r config_digest config_size < <(put_blob "$stage/config.json")

printf '%s' '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'\
'"config":{"mediaType":"application/vnd.oci.image.config.v1+json",'\
'"digest":"'"$config_digest"'","size":'"$config_size"'},'\
'"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip",'\
'"digest":"'"$layer_digest"'","size":'"$layer_size"'}]}' >"$stage/manifest.json"
read -r manifest_digest manifest_size < <(put_blob "$stage/manifest.json")

printf '%s' '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",'\
'"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json",'\
'"digest":"'"$manifest_digest"'","size":'"$manifest_size"','\
'"platform":{"architecture":"'"$arch"'","os":"linux"},'\
'"annotations":{"org.opencontainers.image.ref.name":"'"$ref_name"'"}}]}' >"$out/index.json"
printf '%s' '{"imageLayoutVersion":"1.0.0"}' >"$out/oci-layout"

echo "make-test-image: $out: manifest $manifest_digest (ref $ref_name)"
