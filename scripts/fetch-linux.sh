#!/usr/bin/env bash
# Fetch Debian's stock kernel (the package linux-image-amd64 points to) into
# build/linux/ for the bzImage smoke test. Nothing is installed system-wide.
set -euo pipefail
out=${1:-build/linux}
mkdir -p "$out"
if [ -s "$out/vmlinuz" ]; then
  echo "fetch-linux: $out/vmlinuz already there ($(cat "$out/package" 2>/dev/null))"
  exit 0
fi
pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
if [ -z "$pkg" ]; then
  echo "fetch-linux: cannot resolve linux-image-amd64 (run apt-get update first)" >&2
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# apt's sandbox user cannot write into root-owned temp dirs; download as root.
(cd "$tmp" && apt-get download -o APT::Sandbox::User=root "$pkg" >/dev/null)
dpkg-deb --fsys-tarfile "$tmp"/"$pkg"_*.deb | tar -x -C "$tmp" ./boot/
cp "$tmp"/boot/vmlinuz-* "$out/vmlinuz"
cp "$tmp"/boot/config-* "$out/config"
echo "$pkg" > "$out/package"
echo "fetch-linux: $pkg -> $out/vmlinuz ($(stat -c %s "$out/vmlinuz") bytes)"
