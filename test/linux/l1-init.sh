#!/bin/sh
# L1 /init (Debian kernel in QEMU TCG with SVM): load kvm-amd, boot the Debian
# kernel under vmmd, check its readiness line, report L1-RESULT, power off.
# Options from L1's kernel command line (unknown key=value become env):
#   l2cpus (2), l2mem (256M), l2timeout (seconds, 300), l2append (extra L2 cmdline;
#   "+" stands for a space), vmmdlog (vmmd --log-level, info)
export PATH=/bin:/sbin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev; mount -t tmpfs tmp /tmp
up() { cut -d' ' -f1 /proc/uptime; }
echo "L1-INIT uptime=$(up)"
result() { echo "L1-RESULT $*"; }
finish() { echo "L1-DONE uptime=$(up)"; sync; poweroff -f; sleep 10; }

for m in irqbypass ccp kvm kvm-amd; do
  insmod /lib/modules/$m.ko || echo "L1: insmod $m failed"
done
if [ ! -c /dev/kvm ]; then
  dmesg | grep -iE 'kvm|svm' | tail -20
  result fail "no /dev/kvm after loading kvm-amd"
  finish
fi
echo "L1: kvm_amd npt=$(cat /sys/module/kvm_amd/parameters/npt) nested=$(cat /sys/module/kvm_amd/parameters/nested)"

CPUS=${l2cpus:-2}
MEM=${l2mem:-256M}
TO=${l2timeout:-300}
APP="console=ttyS0 mitigations=off panic=-1 $(echo "${l2append:-}" | tr + ' ')"
echo "L1: vmmd --kernel /vmlinuz --initrd /l2.cpio.gz --memory $MEM --cpus $CPUS append='$APP' (uptime $(up))"
T0=$(up)
: > /tmp/l2.log
/bin/vmmd --kernel /vmlinuz --initrd /l2.cpio.gz --append "$APP" \
  --memory "$MEM" --cpus "$CPUS" --serial stdio --drive file=/disk.img,id=disk0 \
  --log-format console --log-level "${vmmdlog:-info}" </dev/null >/tmp/l2.log 2>/tmp/vmmd.err &
VP=$!
# vmmd exits 0 on SIGTERM, so the watchdog leaves a mark before it kills.
( sleep "$TO"; touch /tmp/timedout; kill $VP ) 2>/dev/null &
WP=$!
TR=""
while kill -0 $VP 2>/dev/null; do
  if [ -z "$TR" ] && grep -q '^L2-READY' /tmp/l2.log; then
    TR=$(up); echo "L1: L2-READY seen $(echo "$TR $T0" | awk '{print $1-$2}')s after vmmd start"
  fi
  sleep 0.2
done
wait $VP; RC=$?
kill $WP 2>/dev/null
T1=$(up)
[ -z "$TR" ] && grep -q '^L2-READY' /tmp/l2.log && TR=$T1
echo "--- L2 console (full):"; sed 's/^/L2| /' /tmp/l2.log
echo "L1: vmmd exited rc=$RC after $(echo "$T1 $T0" | awk '{print $1-$2}')s"
echo "--- vmmd stderr:"; sed 's/^/vmmd| /' /tmp/vmmd.err | tail -40
READY=$(grep -a '^L2-READY' /tmp/l2.log | head -1 | tr -d '\r')
echo "L1: ready line: $READY"
fail=""
[ -n "$READY" ] || fail="$fail no-L2-READY"
[ -n "$READY" ] && { echo "$READY" | grep -q "cpus=$CPUS" || fail="$fail cpus!=$CPUS"; }
[ -n "$READY" ] && { echo "$READY" | grep -q 'disks=.*vda' || fail="$fail no-vda"; }
grep -a -q 'L2-DISK0 VMMD-DISK-MARKER' /tmp/l2.log || fail="$fail disk-marker-not-read"
[ -e /tmp/timedout ] && fail="$fail timeout-${TO}s"
[ "$RC" = 0 ] || fail="$fail vmmd-rc=$RC"
if [ -z "$fail" ]; then
  result pass "l2_boot_s=$(echo "$TR $T0" | awk '{print $1-$2}') vmmd_total_s=$(echo "$T1 $T0" | awk '{print $1-$2}')"
else
  result fail "$fail"
fi
finish
