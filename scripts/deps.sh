#!/usr/bin/env bash
# Install what a fresh Debian 12 machine lacks to build and test vmmd.
set -euo pipefail
pkgs=(gcc binutils make python3 qemu-system-x86 qemu-utils nbdkit socat busybox-static cpio kmod acpica-tools jq spin iproute2)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
command -v go >/dev/null || export PATH=$PATH:/usr/local/go/bin
go mod download
echo "deps: ok"
