#!/usr/bin/env bash
# Installs every Debian 12 package berth needs to build, test and benchmark.
# Idempotent: packages already present are skipped, and apt is not touched at
# all when nothing is missing. Run as root.
set -euo pipefail

packages=(
  # toolchain
  build-essential g++ cmake make pkg-config clang-format
  # libraries (see README "Dependencies")
  libseccomp-dev libcap-dev nlohmann-json3-dev libspdlog-dev libfmt-dev
  libcli11-dev catch2
  # SHA-256 of the seccomp filter cache keys (nettle: no provider set-up
  # on first use, and links statically without warnings)
  nettle-dev
  # task networking (netns/): netlink and nftables
  libnl-3-dev libnl-route-3-dev libnftables-dev
  # images and root filesystems (rootfs-tools/): layer archives, registry
  # client; mkfs.ext4 for size-limited writable layers
  libarchive-dev libcurl4-openssl-dev e2fsprogs
  # static probe binary for the integration tests (libc.a comes with libc6-dev)
  libc6-dev
  # test and benchmark fixtures: the busybox rootfs and the baseline runtime
  busybox-static runc
  # baseline of the network benchmark: the CNI bridge plugin
  containernetworking-plugins
  # image tests: skopeo makes OCI layouts / docker archives and pushes to a
  # local registry (docker-registry, the CNCF distribution registry);
  # htpasswd -B writes its basic-auth file
  skopeo docker-registry apache2-utils
  # the control plane (controlplane/, berthd, berth): HTTP with Boost.Beast
  # on Asio, durable state in SQLite, SigV4 HMACs with OpenSSL, the TOML
  # config (toml++)
  libboost1.81-dev libsqlite3-dev libssl-dev libtomlplusplus-dev
  # the API's real clients in the tests: the AWS CLI v2 and boto3
  awscli python3-boto3 curl
  # tools the tests use on the host
  iproute2 util-linux procps nftables
  # the pure cgroup v2 test machine (scripts/vm/, `make test-v2`): qemu with
  # software emulation boots Debian's own kernel (the host may run another
  # one) from an initramfs of busybox-static, bash and that kernel's modules
  # (kmod's modprobe resolves their dependencies, cpio packs the image, file
  # checks that busybox is static)
  qemu-system-x86 linux-image-amd64 kmod cpio file
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]}; run this script as root" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
