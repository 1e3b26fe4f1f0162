#!/bin/sh
# L1 /init (Debian kernel in QEMU TCG with SVM): load kvm-amd, run the L2
# scenarios (Debian's kernel under vmmd), print one "L1-SCENARIO name
# pass|fail|skip why" line each, "L1-METRIC key=value..." lines, then
# "L1-RESULT pass|fail" (pass iff no scenario failed), and power off.
#
# Every L2 console line is streamed live as "L2[run]| ..." and every vmmd log
# line as "vmmd[run]| ...", so a stalled boot shows where it stopped. A run
# that outlives its timeout gets a state dump ("L1-DIAG [run] ..."): vmmd's
# threads and their kernel stacks, KVM's exit counters, 1 s of KVM trace
# events (guest RIPs, named: L2 runs with nokaslr and L1's kallsyms fits), QMP
# query-status, then SIGQUIT so Go prints every goroutine; then it is killed.
# A VM held open by /bin/kvmhold for the whole boot keeps the runs under test
# from live-patching L1's kernel (see below).
#
# Scenario groups (l2groups, default "a q b c": qemu-ref right after smp1, so
# the two boots it compares see the same host load; l2repeat=N repeats them):
#   a  smp1        1 vCPU: readiness line lists cpus=1 and vda, host's disk marker read
#      disk-write  (same run) L2 writes its marker at sector 2048 and syncs; after
#                  vmmd exits, /disk.img holds it
#   b  smp2        2 vCPUs: readiness line lists cpus=2 and vda, host's marker read
#      reboot      (same run) L2 reboots -f on first boot through the kernel's
#                  default path (l2reboot=acpi; l2reboot=k uses the i8042,
#                  l2reboot=0 skips it); vmmd resets the VM, L2 boots again
#                  (second L2-READY) and powers off; vmmd exits 0
#      qmp         (same run) over --qmp with /bin/qmpc: stop, query-status says
#                  paused, cont, query-status says running
#   c  pvh         1 vCPU, Debian's kernel as the uncompressed vmlinux (PVH entry)
#   q  qemu-ref    the same kernel, initramfs and disk under qemu-system-x86_64
#                  -enable-kvm -M microvm,rtc=on, 1 vCPU: L2 boot time beside
#                  smp1's, printed as a ratio (informational: never fails the run)
#   s  stress      2 vCPUs, no reboot or QMP: a plain boot, for l2repeat loops
# Options from L1's kernel command line (unknown key=value become env):
#   l2mem (256M), l2timeout (seconds per vmmd or qemu run, 240), l2append (extra L2
#   cmdline; "+" stands for a space), vmmdlog (vmmd --log-level, debug),
#   l2reboot (acpi, k or 0), l2groups (separated by "," or "+" on the
#   kernel command line; "none": no scenario), l2repeat,
#   l2kaslr (0: L2 gets nokaslr), l1syms (see below), l1hold (1), l1pokes (0)
export PATH=/bin:/sbin:/usr/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev; mount -t tmpfs tmp /tmp
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
up() { cut -d' ' -f1 /proc/uptime; }
sub() { echo "$1 $2" | awk '{printf "%.2f", $1-$2}'; }
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
# Where L1's kernel and KVM modules sit (KASLR), to name RIPs in a dump of a dying L1.
echo "L1: _text=$(grep ' _text$' /proc/kallsyms | cut -d' ' -f1) $(awk '$1 ~ /^kvm/ {printf "%s@%s ", $1, $6}' /proc/modules)"
# symlookup FILE: name the code addresses listed in FILE, one ITEM a line:
# k:XXXXXXXX (the low 32 bits of a link-time kernel address, i.e. one from
# a nokaslr kernel: L2, or L1 corrected for its KASLR offset), a:XXXXXXXX
# (the low 32 bits of an address in this L1 as it runs now) or MODULE:XXXX
# (offset into a module). Prints "L1-SYM ITEM symbol+offset".
# L1 and L2 run the same kernel build, so L1's kallsyms names L2's code
# too. Only text symbols count; the low 32 bits are enough since kernel
# and modules share the top 32.
symlookup() {
  awk -v text="$(grep ' _text$' /proc/kallsyms | cut -c9-16)" -v mods="$(awk '{printf "%s=%s ", $1, substr($6, 11)}' /proc/modules)" -v want="$1" '
    BEGIN {
      n = split(mods, m, " ")
      for (i = 1; i <= n; i++) { split(m[i], kv, "="); base[kv[1]] = ("0x" kv[2]) + 0 }
      while ((getline w < want) > 0) {
        split(w, p, ":")
        if (p[1] == "k") t = ("0x" p[2]) + ("0x" text) - 2164260864
        else if (p[1] == "a") t = ("0x" p[2]) + 0
        else if (p[1] in base) t = base[p[1]] + ("0x" p[2])
        else continue
        nt++; item[nt] = w; addr[nt] = t; best[nt] = -1
      }
    }
    $2 == "t" || $2 == "T" {
      a = ("0x" substr($1, 9)) + 0
      for (i = 1; i <= nt; i++)
        if (a <= addr[i] && a > best[i]) { best[i] = a; name[i] = $3 ($4 != "" ? " " $4 : "") }
    }
    END {
      for (i = 1; i <= nt; i++)
        if (best[i] < 0 || addr[i] - best[i] > 1048576) printf "L1-SYM %s (no symbol near)\n", item[i]
        else printf "L1-SYM %s %s+0x%x\n", item[i], name[i], addr[i] - best[i]
    }' /proc/kallsyms
}
# l1syms=ITEM,...: addresses from an earlier L1 boot's dump, which run-l1.sh
# passes after L1 died.
if [ -n "${l1syms:-}" ]; then
  echo "$l1syms" | tr ',' '\n' > /tmp/syms.want
  symlookup /tmp/syms.want
fi
echo "L1: kvm_amd npt=$(cat /sys/module/kvm_amd/parameters/npt) nested=$(cat /sys/module/kvm_amd/parameters/nested) clocksource=$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"

# kvmhold keeps a VM open for the whole L1 boot, so that the VMs under test
# flip no static key and never toggle SVM: each flip live-patches L1's
# kernel text, which QEMU's TCG has been seen to hang in (see
# kvmhold/main.go). l1hold=0 leaves it out.
if [ "${l1hold:-1}" = 1 ]; then
  /bin/kvmhold > /tmp/kvmhold.out 2>&1 &
  n=0
  while [ $n -lt 100 ] && ! grep -q holding /tmp/kvmhold.out; do sleep 0.1; n=$((n+1)); done
  echo "L1: $(cat /tmp/kvmhold.out)"
fi
# l1pokes=1 counts L1 kernel text patches (text_poke_bp_batch, with the
# caller's stack) during each vmmd run: there should be none.
T=/sys/kernel/tracing
if [ "${l1pokes:-0}" = 1 ]; then
  echo 'p:kp_poke text_poke_bp_batch' >> $T/kprobe_events && echo stacktrace > $T/events/kprobes/kp_poke/trigger &&
    echo 1 > $T/events/kprobes/kp_poke/enable && echo "L1: counting kernel text patches" ||
    echo "L1: no kprobe on text_poke_bp_batch"
fi
# pokes NAME: report and reset the text patches counted so far.
pokes() {
  [ "${l1pokes:-0}" = 1 ] || return 0
  n=$(grep -c 'kp_poke:' $T/trace)
  echo "L1: [$1] $n kernel text patch batches; callers:"
  grep -A12 'kp_poke:' $T/trace | grep -o '=> [a-z_0-9.]*' | sort | uniq -c | sort -rn | head -15 | sed "s/^/L1: [$1]   /"
  echo > $T/trace
}

MEM=${l2mem:-256M}
TO=${l2timeout:-240}
BASE="console=ttyS0 mitigations=off panic=-1"
[ "${l2kaslr:-0}" = 1 ] || BASE="$BASE nokaslr"

# stream NAME PREFIX FILE: copy the FIFO /tmp/NAME.PREFIX.fifo to the console
# (each line prefixed PREFIX[NAME]|, colour codes and CRs removed) and to
# FILE. The first L2-READY line's L1 uptime goes to /tmp/NAME.ready.
stream() {
  awk -v p="$2[$1]| " -v f="$3" -v r="/tmp/$1.ready" '{
      gsub(/\033\[[0-9;]*m/, ""); sub(/\r$/, "")
      print p $0; fflush()
      print $0 >> f; fflush(f)
      if (!seen && $0 ~ /^L2-READY/) {
        seen = 1; getline u < "/proc/uptime"; close("/proc/uptime")
        split(u, a, " "); print a[1] > r; close(r)
      }
    }' < "/tmp/$1.$2.fifo"
}

# diag NAME PID: dump what vmmd and KVM are doing, for a run that stalled.
diag() {
  n=$1 p=$2 d="L1-DIAG [$1]"
  echo "$d vmmd pid $p still running after ${TO}s; last L2 line: $(tail -n1 /tmp/$n.log)"
  for t in /proc/$p/task/*; do
    echo "$d thread ${t##*/} state=$(cut -d' ' -f3 $t/stat) wchan=$(cat $t/wchan 2>/dev/null)"
    if grep -q kvm "$t/stack" 2>/dev/null; then sed "s/^/$d   /" "$t/stack"; fi
  done
  for v in /sys/kernel/debug/kvm/$p-*; do
    [ -d "$v" ] || continue
    echo "$d kvm stats (non-zero): $(cd "$v" && grep -s -v '^0$' exits halt_exits halt_wakeup io_exits mmio_exits irq_exits irq_injections nmi_injections signal_exits request_irq_exits insn_emulation insn_emulation_fail hypercalls irq_window_exits nmi_window_exits host_state_reload 2>/dev/null | tr '\n' ' ')"
    for c in "$v"/vcpu*; do
      [ -d "$c" ] && echo "$d ${c##*/}: guest_mode=$(cat $c/guest_mode 2>/dev/null) tsc-offset=$(cat $c/tsc-offset 2>/dev/null)"
    done
  done
  [ -S /tmp/$n.qmp ] && qmpc /tmp/$n.qmp query-status 2>&1 | sed "s/^/$d qmp /"
  T=/sys/kernel/tracing
  if [ -d $T/events/kvm ]; then
    echo 0 > $T/tracing_on; echo > $T/trace; echo 4096 > $T/buffer_size_kb
    echo 1 > $T/events/kvm/enable
    echo 1 > $T/tracing_on; sleep 1; echo 0 > $T/tracing_on
    echo 0 > $T/events/kvm/enable
    # The newest events only: text processing is slow under TCG.
    grep -v '^#' $T/trace | tail -n 3000 > /tmp/$n.trace
    echo "$d trace: last $(wc -l < /tmp/$n.trace) kvm events of 1 s; by vCPU and exit reason:"
    grep -o 'kvm_exit: vcpu [0-9]* reason [A-Za-z_0-9]*\( excp\)\?' /tmp/$n.trace | sort | uniq -c | sed "s/^/$d   /"
    echo "$d last exits per vCPU (rip = L2 guest RIP):"
    for c in 0 1 2 3; do
      grep "kvm_exit: vcpu $c " /tmp/$n.trace | tail -4 | sed "s/^ *//; s/^/$d   /"
    done
    # A RIP is named twice: as L2's (nokaslr, link-time) and as an address
    # in this L1, which it should never be (it has been, under QEMU's TCG:
    # L2 resumed at kvm_amd's post-VMRUN RIP).
    echo "$d code at those RIPs, as L2's (k:) and as L1's (a:):"
    grep -o 'rip 0xffffffff[0-9a-f]*' /tmp/$n.trace | cut -c15-22 | sort | uniq -c | sort -rn | head -8 |
      awk '{print "k:" $2; print "a:" $2}' > /tmp/$n.rips
    symlookup /tmp/$n.rips | sed "s/^/$d   /"
    echo "$d other events (last 40):"
    grep -v 'kvm_exit:\|kvm_entry:' /tmp/$n.trace | tail -40 | sed "s/^ *//; s/^/$d   /"
  fi
  echo "$d SIGQUIT to vmmd: its goroutine dump follows on vmmd[$n]"
  kill -QUIT "$p"
}

# runvm NAME CPUS KERNEL EXTRA-APPEND [VMMDFLAGS]: run vmmd once with L2
# (console in /tmp/NAME.log, log in /tmp/NAME.err). Sets RC (exit code), TR
# (seconds from start to the first L2-READY, or empty), TT (seconds vmmd
# ran), TIMEDOUT (non-empty if the watchdog stopped vmmd).
runvm() {
  name=$1 cpus=$2 kern=$3
  app="$BASE $4 $(echo "${l2append:-}" | tr + ' ')"
  log=/tmp/$name.log
  echo "L1: [$name] vmmd --kernel $kern --initrd /l2.cpio.gz --memory $MEM --cpus $cpus append='$app' (uptime $(up))"
  rm -f /tmp/$name.timedout /tmp/$name.ready /tmp/$name.*.fifo /tmp/$name.qmp
  : > "$log"; : > /tmp/$name.err
  mkfifo /tmp/$name.L2.fifo /tmp/$name.vmmd.fifo
  stream "$name" L2 "$log" & sp1=$!
  stream "$name" vmmd /tmp/$name.err & sp2=$!
  t0=$(up)
  /bin/vmmd --kernel "$kern" --initrd /l2.cpio.gz --append "$app" \
    --memory "$MEM" --cpus "$cpus" --serial stdio --drive file=/disk.img,id=disk0 \
    --qmp unix:/tmp/$name.qmp --log-format console --log-level "${vmmdlog:-debug}" $5 \
    </dev/null >/tmp/$name.L2.fifo 2>/tmp/$name.vmmd.fifo &
  vp=$!
  [ "$name" = smp2 ] && qmpseq /tmp/$name.qmp &
  ( sleep "$TO"; kill -0 $vp 2>/dev/null || exit 0
    touch /tmp/$name.timedout; diag "$name" $vp; sleep 5; kill -KILL $vp ) 2>/dev/null &
  wp=$!
  wait $vp; RC=$?
  t1=$(up)
  kill $wp 2>/dev/null
  wait $sp1 $sp2
  TT=$(sub "$t1" "$t0")
  TR=""; [ -s /tmp/$name.ready ] && TR=$(sub "$(cat /tmp/$name.ready)" "$t0")
  TIMEDOUT=""; [ -e /tmp/$name.timedout ] && TIMEDOUT=1
  echo "L1: [$name] vmmd exited rc=$RC after ${TT}s; first L2-READY after ${TR:-never}s"
  pokes "$name"
}

# qmpseq SOCKET: while L2 boots, stop it, check it is paused, continue it,
# check it runs again; replies in /tmp/qmp.out.
qmpseq() {
  n=0
  while [ $n -lt 50 ] && [ ! -S "$1" ]; do sleep 0.1; n=$((n+1)); done
  sleep 2
  { qmpc "$1" stop query-status; sleep 1; qmpc "$1" cont query-status; } >/tmp/qmp.out 2>&1
  echo "qmpseq-done rc=$?" >>/tmp/qmp.out
}

# checkready NAME CPUS: failure words for the first readiness line of NAME's run.
checkready() {
  ready=$(grep -a '^L2-READY' "/tmp/$1.log" | head -1)
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

# group_a: smp1 + disk-write, one run, 1 vCPU.
group_a() {
  dd if=/dev/zero of=/disk.img bs=512 seek=2048 count=1 conv=notrunc 2>/dev/null
  runvm smp1 1 /vmlinuz vmmdtest=write
  scenario smp1 "$(checkready smp1 1)$(common)" "l2_boot_s=$TR vmmd_total_s=$TT"
  f=$(common)
  grep -a -q '^L2-WRITE done rc=0' /tmp/smp1.log || f="$f no-L2-WRITE"
  got=$(dd if=/disk.img bs=512 skip=2048 count=1 2>/dev/null | head -c 26)
  [ "$got" = "L2-WROTE-MARKER-9876543210" ] || f="$f image-sector2048='$got'"
  dd if=/disk.img bs=512 count=1 2>/dev/null | grep -q VMMD-DISK-MARKER || f="$f host-marker-clobbered"
  scenario disk-write "$f" "image holds L2's marker at sector 2048"
  VMMD1=$TR
  echo "L1-METRIC smp1_l2_boot_s=$TR smp1_vmmd_total_s=$TT"
}

# group_b: smp2 + reboot + qmp, one run, 2 vCPUs.
group_b() {
  RB=${l2reboot:-acpi}
  # The reboot flag lives on the disk: clear it so this run's first boot
  # reboots.
  dd if=/dev/zero of=/disk.img bs=512 seek=4096 count=1 conv=notrunc 2>/dev/null
  case $RB in
    acpi) runvm smp2 2 /vmlinuz vmmdtest=reboot ;;
    k) runvm smp2 2 /vmlinuz "vmmdtest=reboot reboot=k" ;;
    *) runvm smp2 2 /vmlinuz vmmdtest=none ;;
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
  echo "L1-METRIC smp2_l2_boot_s=$TR smp2_vmmd_total_s=$TT"
  sed 's/^/qmp| /' /tmp/qmp.out
  f=""
  grep -q '^qmpseq-done rc=0' /tmp/qmp.out || f="$f qmpc-failed"
  grep -q '^stop {"return"' /tmp/qmp.out || f="$f stop-not-ok"
  grep '^query-status' /tmp/qmp.out | head -1 | grep -q '"paused"' || f="$f not-paused-after-stop"
  grep -q '^cont {"return"' /tmp/qmp.out || f="$f cont-not-ok"
  grep '^query-status' /tmp/qmp.out | sed -n 2p | grep -q '"running"' || f="$f not-running-after-cont"
  scenario qmp "$f" "stop/query-status/cont/query-status during the smp2 boot"
}

# group_c: the same kernel as an uncompressed ELF vmlinux, entered through
# its PVH note.
group_c() {
  runvm pvh 1 /vmlinux vmmdtest=none
  scenario pvh "$(checkready pvh 1)$(common)" "vmlinux via PVH, l2_boot_s=$TR vmmd_total_s=$TT"
  echo "L1-METRIC pvh_l2_boot_s=$TR pvh_vmmd_total_s=$TT"
}

# group_s: a plain 2-vCPU boot (for l2repeat stress loops).
group_s() {
  runvm stress 2 /vmlinuz vmmdtest=none
  scenario stress "$(checkready stress 2)$(common)" "l2_boot_s=$TR vmmd_total_s=$TT"
  echo "L1-METRIC stress_l2_boot_s=$TR stress_vmmd_total_s=$TT"
}

# group_q: QEMU boots the same L2 (kernel, initramfs, a copy of the disk,
# 1 vCPU, 256 MiB) on the same kvm-amd, for the boot-time ratio against smp1.
# microvm with rtc=on is QEMU's fastest here (without an RTC the kernel's
# rtc_cmos probe polls for ~11 s); its ACPI DSDT lists the virtio-mmio disk
# as vmmd's does.
group_q() {
  name=qemu
  rm -f /tmp/$name.ready /tmp/$name.*.fifo
  : > /tmp/$name.log; : > /tmp/$name.err
  cp /disk.img /tmp/qdisk.img
  mkfifo /tmp/$name.L2.fifo /tmp/$name.qemu.fifo
  stream $name L2 /tmp/$name.log & sp1=$!
  stream $name qemu /tmp/$name.err & sp2=$!
  app="$BASE vmmdtest=none"
  echo "L1: [$name] qemu-system-x86_64 -enable-kvm -M microvm,rtc=on -smp 1 -m 256 append='$app' (uptime $(up))"
  t0=$(up)
  qemu-system-x86_64 -enable-kvm -M microvm,rtc=on -cpu host -m 256 -smp 1 \
    -nodefaults -no-user-config -display none -serial stdio \
    -kernel /vmlinuz -initrd /l2.cpio.gz -append "$app" \
    -drive file=/tmp/qdisk.img,if=none,id=d0,format=raw -device virtio-blk-device,drive=d0 \
    </dev/null >/tmp/$name.L2.fifo 2>/tmp/$name.qemu.fifo &
  qp=$!
  ( sleep "$TO"; kill $qp ) 2>/dev/null &
  wp=$!
  wait $qp; RC=$?
  t1=$(up)
  kill $wp 2>/dev/null
  wait $sp1 $sp2
  QR=""; [ -s /tmp/$name.ready ] && QR=$(sub "$(cat /tmp/$name.ready)" "$t0")
  echo "L1: [$name] qemu exited rc=$RC after $(sub "$t1" "$t0")s; L2-READY after ${QR:-never}s"
  if [ -z "$QR" ]; then
    echo "L1-SCENARIO qemu-ref skip qemu did not boot L2 (rc=$RC): no ratio"
  elif [ -z "$VMMD1" ]; then
    echo "L1-SCENARIO qemu-ref skip qemu_l2_boot_s=$QR but smp1 has no boot time: no ratio"
  else
    ratio=$(echo "$VMMD1 $QR" | awk '{printf "%.2f", $1/$2}')
    echo "L1-METRIC qemu_l2_boot_s=$QR vmmd_l2_boot_s=$VMMD1 vmmd_over_qemu=$ratio"
    echo "L1-SCENARIO qemu-ref pass L2 boot: vmmd ${VMMD1}s, qemu ${QR}s, ratio vmmd/qemu $ratio (1 vCPU, bzImage, same L1)"
  fi
}

VMMD1=""
i=1
while [ $i -le "${l2repeat:-1}" ]; do
  [ "${l2repeat:-1}" = 1 ] || echo "L1: repetition $i of $l2repeat"
  for g in $(echo "${l2groups:-a q b c}" | tr ',+' '  '); do
    case $g in
      a|b|c|q|s) group_$g ;;
      none) ;;
      *) echo "L1: unknown group '$g' in l2groups" ; ALLFAIL="$ALLFAIL bad-group-$g" ;;
    esac
  done
  i=$((i+1))
done

if [ -z "$ALLFAIL" ]; then
  result pass
else
  result fail "$ALLFAIL"
fi
finish
