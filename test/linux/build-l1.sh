#!/usr/bin/env bash
# Build the nested Linux harness payload under build/linux/:
#   vmmd        static vmmd (runs inside L1)
#   pkg/root    Debian's kernel package, fully extracted (modules)
#   l2.cpio.gz  L2 initramfs: busybox + virtio modules, /init prints L2-READY
#   disk.img    small raw disk with a known marker in sector 0
#   l1.cpio.gz  L1 initramfs: busybox, kvm/kvm-amd (+deps), vmmd, qmpc, L2 kernel (bzImage and vmlinux)+initramfs, disk,
#               and this host's qemu-system-x86_64 with its libraries and firmware (the qemu-ref scenario)
# The kernel for L1 and L2 is the same Debian vmlinuz (make linux).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=$ROOT/build/linux
HERE=$ROOT/test/linux
[ -s "$OUT/vmlinuz" ] || make linux
PKG=$(cat "$OUT/package")
BB=$(command -v busybox)
# A dynamic executable names its loader in a PT_INTERP program header.
if readelf -lW "$(readlink -f "$BB")" | grep -q INTERP; then
  echo "build-l1: $BB is not static (install busybox-static)" >&2; exit 1
fi

# Debian's kernel package, extracted fully (fetch-linux.sh keeps only /boot).
mkdir -p "$OUT/pkg"
if [ ! -d "$OUT/pkg/root/lib/modules" ]; then
  (cd "$OUT/pkg" && apt-get download -o APT::Sandbox::User=root "$PKG" >/dev/null)
  rm -rf "$OUT/pkg/root"; mkdir -p "$OUT/pkg/root"
  dpkg-deb -x "$OUT/pkg/${PKG}"_*.deb "$OUT/pkg/root"
fi
KVER=${PKG#linux-image-}
MODS=$OUT/pkg/root/lib/modules/$KVER
[ -d "$MODS" ] || { echo "build-l1: no modules at $MODS" >&2; exit 1; }

# modpath NAME: the .ko of module NAME in Debian's tree.
modpath() {
  local p
  p=$(find "$MODS/kernel" -name "$1.ko" -o -name "$1.ko.xz" | head -1)
  [ -n "$p" ] || { echo "build-l1: module $1 not found" >&2; exit 1; }
  echo "$p"
}
# putmods DIR NAME...: copy modules (uncompressed) into DIR in the given order.
putmods() {
  local dir=$1; shift
  mkdir -p "$dir"
  for m in "$@"; do
    local p; p=$(modpath "$m")
    case $p in
      *.xz) xz -dc "$p" > "$dir/$m.ko" ;;
      *) cp "$p" "$dir/$m.ko" ;;
    esac
  done
}
# busyroot DIR: a minimal busybox root.
busyroot() {
  local d=$1
  rm -rf "$d"; mkdir -p "$d"/{bin,sbin,proc,sys,dev,tmp,lib/modules,etc}
  cp "$BB" "$d/bin/busybox"
  for a in $("$BB" --list); do [ "$a" = busybox ] || ln -sf busybox "$d/bin/$a"; done
}
mkcpio() { (cd "$1" && find . | cpio -o -H newc --quiet | gzip -1 > "$2"); }

# VMMD=path puts a prebuilt static vmmd (e.g. an experimental build) into L1.
if [ -n "${VMMD:-}" ]; then
  echo "build-l1: using vmmd $VMMD"
  cp "$VMMD" "$OUT/vmmd"
else
  echo "build-l1: static vmmd"
  CGO_ENABLED=0 go build -o "$OUT/vmmd" ./cmd/vmmd
fi

echo "build-l1: L2 initramfs"
L2=$OUT/l2root
busyroot "$L2"
putmods "$L2/lib/modules" virtio_ring virtio virtio_mmio virtio_blk
cp "$HERE/l2-init.sh" "$L2/init"; chmod +x "$L2/init"
mkcpio "$L2" "$OUT/l2.cpio.gz"

echo "build-l1: disk image"
rm -f "$OUT/disk.img"
truncate -s 8M "$OUT/disk.img"
printf 'VMMD-DISK-MARKER-0123456789\n' | dd of="$OUT/disk.img" conv=notrunc status=none

echo "build-l1: L1 initramfs"
L1=$OUT/l1root
busyroot "$L1"
putmods "$L1/lib/modules" irqbypass ccp kvm kvm-amd
cp "$OUT/vmmd" "$L1/bin/vmmd"
CGO_ENABLED=0 go build -o "$L1/bin/qmpc" ./test/linux/qmpc
CGO_ENABLED=0 go build -o "$L1/bin/kvmhold" ./test/linux/kvmhold
cp "$OUT/vmlinuz" "$L1/vmlinuz"
# The same kernel uncompressed (ELF with a PVH note) for the pvh scenario.
python3 - "$OUT/vmlinuz" "$L1/vmlinux" <<'PY'
import lzma, sys
d = open(sys.argv[1], 'rb').read()
i = d.find(b'\xfd7zXZ\x00')
assert i >= 0, 'bzImage payload is not xz'
out = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(d[i:])
assert out[:4] == b'\x7fELF', 'xz payload is not an ELF vmlinux'
open(sys.argv[2], 'wb').write(out)
PY
cp "$OUT/l2.cpio.gz" "$L1/l2.cpio.gz"
cp "$OUT/disk.img" "$L1/disk.img"
# QEMU for the reference boot (qemu-ref): the binary, every library ldd
# names (at the same paths), the loader, and the firmware microvm and direct
# kernel boot read.
Q=$(command -v qemu-system-x86_64)
mkdir -p "$L1/usr/bin" "$L1/usr/share/qemu" "$L1/lib64"
cp "$Q" "$L1/usr/bin/"
for l in $(ldd "$Q" | grep -o '/[^ ]*'); do
  mkdir -p "$L1$(dirname "$l")"; cp -L "$l" "$L1$l"
done
for f in qboot.rom bios-microvm.bin linuxboot_dma.bin pvh.bin; do
  cp -L "/usr/share/qemu/$f" "$L1/usr/share/qemu/"
done
cp "$HERE/l1-init.sh" "$L1/init"; chmod +x "$L1/init"
mkcpio "$L1" "$OUT/l1.cpio.gz"
ls -la "$OUT/l2.cpio.gz" "$OUT/l1.cpio.gz"
