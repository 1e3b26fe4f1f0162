#!/bin/sh
# L1 /init (Debian kernel in QEMU TCG with SVM): load kvm-amd, run the L2
# scenarios (Debian's kernel under vmmd), print one "L1-SCENARIO name pass|fail
# why" line each, then "L1-RESULT pass|fail" (pass iff all passed), power off.
# Scenarios, all in this one L1 boot:
#   smp1        1 vCPU: readiness line lists cpus=1 and vda, host's disk marker read
#   disk-write  (same run) L2 writes its marker at sector 2048 and syncs; after
#               vmmd exits, /disk.img holds it
#   smp2        2 vCPUs: readiness line lists cpus=2 and vda, host's marker read
#   reboot      (same run) L2 reboots -f on first boot; vmmd resets the VM, L2
#               boots again (second L2-READY), powers off; vmmd exits 0. L2
#               reboots through the i8042 (reboot=k) by default: the kernel's
#               default ACPI reset-register path hangs under vmmd today
#               (l2reboot=acpi tries it; l2reboot=0 skips the reboot)
#   qmp         (same run) over --qmp unix:/tmp/q.sock with /bin/qmpc: stop,
#               query-status says paused, cont, query-status says running
#   pvh         1 vCPU, Debian's kernel as the uncompressed vmlinux (PVH entry):
#               readiness line lists cpus=1 and vda, host's marker read
# Options from L1's kernel command line (unknown key=value become env):
#   l2mem (256M), l2timeout (seconds per vmmd run, 90), l2append (extra L2
#   cmdline; "+" stands for a space), vmmdlog (vmmd --log-level, info),
#   l2reboot (k, acpi or 0: L2's reboot path in the smp2 run), l2pvh (1; 0 skips pvh)
export PATH=/bin:/sbin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev; mount -t tmpfs tmp /tmp
up() { cut -d' ' -f1 /proc/uptime; }
sub() { echo "$1 $2" | awk '{print $1-$2}'; }
echo "L1-INIT uptime=$(up)"
result() { echo "L1-RESULT $*"; }
finish() { echo "L1-DONE uptime=$(up)"; sync; poweroff -f; sleep 10; }
ALLFAIL=""
# scenario NAME FAILS INFO: report one scenario (pass iff FAILS is empty).
scenario() {
  if [ -z "$2" ]; then
    echo "L1-SCENARIO $1 pass $3"
  else
    echo "L1-SCENARIO $1 fail$2 ($3)"
    ALLFAIL="$ALLFAIL $1"
  fi
}

for m in irqbypass ccp kvm kvm-amd; do
  insmod /lib/modules/$m.ko || echo "L1: insmod $m failed"
done
if [ ! -c /dev/kvm ]; then
  dmesg | grep -iE 'kvm|svm' | tail -20
  result fail "no /dev/kvm after loading kvm-amd"
  finish
fi
echo "L1: kvm_amd npt=$(cat /sys/module/kvm_amd/parameters/npt) nested=$(cat /sys/module/kvm_amd/parameters/nested)"

MEM=${l2mem:-256M}
KERNEL=/vmlinuz
TO=${l2timeout:-90}

# runvm NAME CPUS EXTRA [VMMDFLAGS]: run vmmd once with L2; console in /tmp/NAME.log.
# Sets RC (vmmd exit code), TR (seconds to first L2-READY, or empty), TT
# (seconds vmmd ran), TIMEDOUT (non-empty if the watchdog killed vmmd).
runvm() {
  name=$1 cpus=$2
  app="console=ttyS0 mitigations=off panic=-1 $3 $(echo "${l2append:-}" | tr + ' ')"
  log=/tmp/$name.log
  echo "L1: [$name] vmmd --kernel $KERNEL --initrd /l2.cpio.gz --memory $MEM --cpus $cpus append='$app' (uptime $(up))"
  rm -f /tmp/timedout
  t0=$(up)
  : > "$log"
  /bin/vmmd --kernel "$KERNEL" --initrd /l2.cpio.gz --append "$app" \
    --memory "$MEM" --cpus "$cpus" --serial stdio --drive file=/disk.img,id=disk0 \
    --log-format console --log-level "${vmmdlog:-info}" $4 </dev/null >"$log" 2>/tmp/$name.err &
  vp=$!
  [ -n "$4" ] && qmpseq &
  # vmmd exits 0 on SIGTERM, so the watchdog leaves a mark before it kills.
  ( sleep "$TO"; touch /tmp/timedout; kill $vp ) 2>/dev/null &
  wp=$!
  TR=""
  while kill -0 $vp 2>/dev/null; do
    if [ -z "$TR" ] && grep -q '^L2-READY' "$log"; then
      TR=$(sub "$(up)" "$t0"); echo "L1: [$name] L2-READY seen ${TR}s after vmmd start"
    fi
    sleep 0.2
  done
  wait $vp; RC=$?
  kill $wp 2>/dev/null
  t1=$(up)
  TT=$(sub "$t1" "$t0")
  [ -z "$TR" ] && grep -q '^L2-READY' "$log" && TR=$TT
  TIMEDOUT=""; [ -e /tmp/timedout ] && TIMEDOUT=1
  echo "--- [$name] L2 console (full):"; sed "s/^/L2[$name]| /" "$log"
  echo "L1: [$name] vmmd exited rc=$RC after ${TT}s"
  echo "--- [$name] vmmd stderr:"; sed "s/^/vmmd[$name]| /" /tmp/$name.err | tail -40
}

# qmpseq: while L2 boots, stop it, check it is paused, continue it, check it
# runs again; replies in /tmp/qmp.out.
qmpseq() {
  n=0
  while [ $n -lt 50 ] && [ ! -S /tmp/q.sock ]; do sleep 0.1; n=$((n+1)); done
  sleep 2
  { qmpc /tmp/q.sock stop query-status; sleep 1; qmpc /tmp/q.sock cont query-status; } >/tmp/qmp.out 2>&1
  echo "qmpseq-done rc=$?" >>/tmp/qmp.out
}

# checkready NAME CPUS: failure words for the first readiness line of NAME's run.
checkready() {
  ready=$(grep -a '^L2-READY' "/tmp/$1.log" | head -1 | tr -d '\r')
  echo "L1: [$1] ready line: $ready" >&2
  f=""
  [ -n "$ready" ] || f="$f no-L2-READY"
  [ -n "$ready" ] && { echo "$ready" | grep -q "cpus=$2 " || f="$f cpus!=$2"; }
  [ -n "$ready" ] && { echo "$ready" | grep -q 'disks=[^ ]*vda' || f="$f no-vda"; }
  grep -a -q 'L2-DISK0 VMMD-DISK-MARKER' "/tmp/$1.log" || f="$f disk-marker-not-read"
  echo "$f"
}
# common: failure words for how vmmd ended.
common() {
  f=""
  [ -n "$TIMEDOUT" ] && f="$f timeout-${TO}s"
  [ "$RC" = 0 ] || f="$f vmmd-rc=$RC"
  echo "$f"
}

# smp1 + disk-write: one run, 1 vCPU.
runvm smp1 1 vmmdtest=write
scenario smp1 "$(checkready smp1 1)$(common)" "l2_boot_s=$TR vmmd_total_s=$TT"
f=$(common)
grep -a -q '^L2-WRITE done rc=0' /tmp/smp1.log || f="$f no-L2-WRITE"
got=$(dd if=/disk.img bs=512 skip=2048 count=1 2>/dev/null | head -c 26)
[ "$got" = "L2-WROTE-MARKER-9876543210" ] || f="$f image-sector2048='$got'"
dd if=/disk.img bs=512 count=1 2>/dev/null | grep -q VMMD-DISK-MARKER || f="$f host-marker-clobbered"
scenario disk-write "$f" "image holds L2's marker at sector 2048"
S1=$TT

# smp2 + reboot + qmp: one run, 2 vCPUs. l2reboot picks L2's reboot path.
RB=${l2reboot:-k}
case $RB in
  k) runvm smp2 2 "vmmdtest=reboot reboot=k" "--qmp unix:/tmp/q.sock" ;;
  acpi) runvm smp2 2 vmmdtest=reboot "--qmp unix:/tmp/q.sock" ;;
  *) runvm smp2 2 vmmdtest=none "--qmp unix:/tmp/q.sock" ;;
esac
scenario smp2 "$(checkready smp2 2)$(common)" "l2_boot_s=$TR vmmd_total_s=$TT"
if [ "$RB" = k ] || [ "$RB" = acpi ]; then
  f=$(common)
  grep -a -q '^L2-REBOOTING' /tmp/smp2.log || f="$f no-L2-REBOOTING"
  n=$(grep -a -c '^L2-READY' /tmp/smp2.log)
  [ "$n" = 2 ] || f="$f l2-ready-count=$n"
  grep -a -q '^L2-SECOND-BOOT' /tmp/smp2.log || f="$f no-L2-SECOND-BOOT"
  scenario reboot "$f" "reboot path $RB, two boots in one vmmd run, ${TT}s"
else
  echo "L1-SCENARIO reboot skip l2reboot=$RB"
fi
S2=$TT
echo "--- qmp:"; sed 's/^/qmp| /' /tmp/qmp.out
f=""
grep -q '^qmpseq-done rc=0' /tmp/qmp.out || f="$f qmpc-failed"
grep -q '^stop {"return"' /tmp/qmp.out || f="$f stop-not-ok"
grep '^query-status' /tmp/qmp.out | head -1 | grep -q '"paused"' || f="$f not-paused-after-stop"
grep -q '^cont {"return"' /tmp/qmp.out || f="$f cont-not-ok"
grep '^query-status' /tmp/qmp.out | sed -n 2p | grep -q '"running"' || f="$f not-running-after-cont"
scenario qmp "$f" "stop/query-status/cont/query-status during the smp2 boot"

# pvh: the same kernel as an uncompressed ELF vmlinux, entered through its
# PVH note.
S3=skipped
if [ "${l2pvh:-1}" = 1 ]; then
  KERNEL=/vmlinux
  runvm pvh 1 vmmdtest=none
  scenario pvh "$(checkready pvh 1)$(common)" "vmlinux via PVH, l2_boot_s=$TR vmmd_total_s=$TT"
  S3=$TT
else
  echo "L1-SCENARIO pvh skip l2pvh=${l2pvh}"
fi

if [ -z "$ALLFAIL" ]; then
  result pass "smp1+disk-write_s=$S1 smp2+qmp_s=$S2 pvh_s=$S3"
else
  result fail "$ALLFAIL"
fi
finish
