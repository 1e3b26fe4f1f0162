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
# Scenario groups (l2groups, default "a q b c m": qemu-ref right after smp1, so
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
#   m  migrate     2 vCPUs, vmmdtest=migrate: the running guest migrates from
#                  one vmmd to another (--incoming) over a unix socket, disk on
#                  the shared /disk.img; it keeps counting on the destination,
#                  its disk records read back; see group_m
#      migrate-back (same run) a second hop to a third vmmd; the guest powers
#                  off there; every record written since the first hop is in
#                  /disk.img
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

# startvm NAME CPUS KERNEL EXTRA-APPEND [VMMDFLAGS]: start vmmd with L2 in
# the background (console in /tmp/NAME.log, log in /tmp/NAME.err, QMP on
# /tmp/NAME.qmp), with its console streams and a watchdog that dumps and
# kills it after $TO seconds. waitvm NAME collects it.
startvm() {
  name=$1 cpus=$2 kern=$3
  app="$BASE $4 $(echo "${l2append:-}" | tr + ' ')"
  log=/tmp/$name.log
  echo "L1: [$name] vmmd --kernel $kern --initrd /l2.cpio.gz --memory $MEM --cpus $cpus append='$app' $5 (uptime $(up))"
  rm -f /tmp/$name.timedout /tmp/$name.ready /tmp/$name.*.fifo /tmp/$name.qmp /tmp/$name.done
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
  ( sleep "$TO"; kill -0 $vp 2>/dev/null || exit 0
    touch /tmp/$name.timedout; diag "$name" $vp; sleep 5; kill -KILL $vp ) 2>/dev/null &
  echo "$vp $sp1 $sp2 $! $t0" > /tmp/$name.run
}

# vmpid NAME: the pid of NAME's vmmd.
vmpid() { cut -d' ' -f1 "/tmp/$1.run"; }

# waitvm NAME: wait for NAME's vmmd to exit. Sets RC (exit code), TR
# (seconds from start to the first L2-READY, or empty), TT (seconds vmmd
# ran), TIMEDOUT (non-empty if the watchdog stopped vmmd).
waitvm() {
  read -r vp sp1 sp2 wp t0 < "/tmp/$1.run"
  wait "$vp"; RC=$?
  t1=$(up)
  kill "$wp" 2>/dev/null
  wait "$sp1" "$sp2"
  TT=$(sub "$t1" "$t0")
  TR=""; [ -s /tmp/$1.ready ] && TR=$(sub "$(cat /tmp/$1.ready)" "$t0")
  TIMEDOUT=""; [ -e /tmp/$1.timedout ] && TIMEDOUT=1
  echo "L1: [$1] vmmd exited rc=$RC after ${TT}s; first L2-READY after ${TR:-never}s"
  touch "/tmp/$1.done"
  pokes "$1"
}

# runvm NAME CPUS KERNEL EXTRA-APPEND [VMMDFLAGS]: run vmmd once with L2
# (startvm, then waitvm).
runvm() {
  startvm "$@"
  [ "$1" = smp2 ] && qmpseq /tmp/$1.qmp &
  waitvm "$1"
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

# --- live migration (group m) ---
# The tick lines of vmmdtest=migrate (l2-init.sh): "L2-TICK n cpu=C up=S end".
# A line is complete only with its "end": a line cut at the switchover is
# split between two consoles.
TICKRE='^L2-TICK [0-9]+ cpu=[0-9]+ up=[0-9.]+ end$'
# ticks NAME: "n up" for each complete tick line on NAME's console.
ticks() { grep -a -E "$TICKRE" "/tmp/$1.log" | awk '{ sub(/^up=/, "", $4); print $2, $4 }'; }
# nticks NAME: how many complete tick lines NAME's console has.
nticks() { grep -a -c -E "$TICKRE" "/tmp/$1.log"; }
# waitfor SECONDS COMMAND...: run COMMAND every 0.2 s until it succeeds
# (0) or SECONDS have passed (1).
waitfor() {
  wt=$1; shift
  wend=$(($(cut -d. -f1 /proc/uptime) + wt))
  until "$@"; do
    [ "$(cut -d. -f1 /proc/uptime)" -lt "$wend" ] || return 1
    sleep 0.2
  done
}
dead() { ! kill -0 "$(vmpid "$1")" 2>/dev/null; }
# ticking NAME N: NAME's console has N complete ticks, or its vmmd is gone.
ticking() { [ "$(nticks "$1")" -ge "$2" ] || dead "$1"; }
# qstatus NAME: the run state query-status reports ("" if QMP fails).
qstatus() { qmpc "/tmp/$1.qmp" query-status 2>/dev/null | jfield status; }
isstatus() { [ "$(qstatus "$1")" = "$2" ]; }
# jfield KEY: KEY's value (a string or number) in the JSON on stdin.
jfield() { grep -o -E "\"$1\": *(\"[^\"]*\"|[0-9]+)" | head -1 | sed -E 's/^[^:]*: *"?//; s/"$//'; }
# migdone NAME: query-migrate on NAME, kept in /tmp/NAME.qm, says the
# migration finished (or QMP is gone).
migdone() {
  qmpc "/tmp/$1.qmp" query-migrate > "/tmp/$1.qm" 2>&1 || return 0
  case $(jfield status < "/tmp/$1.qm") in completed|failed|cancelled) return 0 ;; esac
  return 1
}
# endvm NAME: quit NAME's vmmd over QMP if it still runs, kill it if it
# has not exited 20 s later, and collect it (waitvm).
endvm() {
  if ! dead "$1"; then
    qmpc "/tmp/$1.qmp" quit >/dev/null 2>&1
    waitfor 20 dead "$1" || { echo "L1: [$1] still running 20 s after quit; killing it"; kill -KILL "$(vmpid "$1")"; }
  fi
  waitvm "$1"
}
# troubles NAME: failure words for kernel trouble and failed ticks on
# NAME's console.
troubles() {
  n=$(grep -a -c '^L2-TICK-FAIL' "/tmp/$1.log")
  [ "$n" = 0 ] || printf ' %s-tick-failures=%s(%s)' "$1" "$n" "$(grep -a '^L2-TICK-FAIL' "/tmp/$1.log" | head -1 | tr ' ' _)"
  grep -a -q -E 'BUG:|Oops|Call Trace|rcu.*stall|soft lockup|hung_task|Kernel panic' "/tmp/$1.log" && printf ' %s-kernel-trouble' "$1"
  true
}

# seam FROM TO: check how the guest's tick count and clock crossed from
# FROM's console to TO's. Appends failure words to HF; sets H_LAST, H_FIRST,
# H_GAP and H_SEAM (see hop).
seam() {
  from=$1 to=$2 H_SEAM="" H_GAP=""
  H_LAST=$(ticks "$from" | tail -1 | cut -d' ' -f1)
  lastup=$(ticks "$from" | tail -1 | cut -d' ' -f2)
  H_FIRST=$(ticks "$to" | head -1 | cut -d' ' -f1)
  firstup=$(ticks "$to" | head -1 | cut -d' ' -f2)
  if [ -z "$H_LAST" ] || [ -z "$H_FIRST" ]; then
    HF="$HF no-ticks-to-compare"
    return
  fi
  # The seam: either TO's first tick is the next one, or the line between
  # was cut at the switchover, and FROM's last line and TO's first line
  # together are exactly that tick's line: no byte lost or repeated.
  if [ "$H_FIRST" = $((H_LAST + 1)) ]; then
    H_SEAM=clean
  elif [ "$H_FIRST" = $((H_LAST + 2)) ]; then
    joined="$(tail -n 1 "/tmp/$from.log")$(head -n 1 "/tmp/$to.log")"
    if echo "$joined" | grep -q -E "$TICKRE" && [ "$(echo "$joined" | cut -d' ' -f2)" = $((H_LAST + 1)) ]; then
      H_SEAM=split
    else
      HF="$HF seam-garbled(from:'$(tail -n 1 "/tmp/$from.log" | tr ' ' _)',to:'$(head -n 1 "/tmp/$to.log" | tr ' ' _)')"
    fi
  else
    HF="$HF tick-jump-from-$H_LAST-to-$H_FIRST"
  fi
  # Ticks on TO run on without a gap, and the guest's clock neither went
  # back nor jumped, across the seam (kvmclock and the TSC restored) or
  # later (timers running at the right rate).
  g=$(ticks "$to" | awk 'NR > 1 && $1 != p + 1 { printf "%s->%s ", p, $1 } { p = $1 }')
  [ -z "$g" ] || HF="$HF $to-tick-gaps($(echo $g | tr ' ' ,))"
  g=$(ticks "$to" | awk 'NR > 1 && !($2 > u && $2 < u + 10) { printf "%s@%s->%s ", $1, u, $2 } { u = $2 }')
  [ -z "$g" ] || HF="$HF $to-clock-steps($(echo $g | tr ' ' ,))"
  H_GAP=$(sub "$firstup" "$lastup")
  echo "$H_GAP" | awk '{ exit !($1 > 0 && $1 < 20) }' || HF="$HF uptime-gap=${H_GAP}s"
}

# hop FROM TO: migrate the ticking guest from vmmd FROM to vmmd TO (which
# waits with --incoming unix:/tmp/TO.mig), check the handover, and quit
# FROM. Sets HF (failure words, empty if all is well), H_TOTAL and H_DOWN
# (query-migrate's total-time and downtime, ms), H_LAST (FROM's last
# complete tick), H_FIRST (TO's first), H_GAP (L2 uptime from H_LAST's tick
# to H_FIRST's, s), H_SEAM (how the console crossed: clean or split).
hop() {
  from=$1 to=$2
  HF="" H_TOTAL="" H_DOWN="" H_LAST="" H_FIRST="" H_GAP="" H_SEAM=""
  waitfor 30 isstatus "$to" inmigrate || HF="$HF $to-not-inmigrate($(qstatus "$to"))"
  # The guest counts a few ticks on FROM first.
  want=$(($(nticks "$from") + 4))
  waitfor 60 ticking "$from" $want
  [ "$(nticks "$from")" -ge $want ] || HF="$HF $from-not-ticking($(nticks "$from")-ticks)"
  [ -z "$HF" ] || return 0
  echo "L1: [$from->$to] migrate at tick $(ticks "$from" | tail -1 | cut -d' ' -f1) (uptime $(up))"
  r=$(qmpc "/tmp/$from.qmp" "migrate {\"uri\":\"unix:/tmp/$to.mig\"}" 2>&1)
  echo "L1: [$from->$to] $r"
  case $r in *'"return"'*) ;; *) HF="$HF migrate-refused"; return 0 ;; esac
  waitfor 120 migdone "$from" || HF="$HF migration-unfinished-after-120s"
  qm=$(cat "/tmp/$from.qm")
  echo "L1: [$from->$to] $qm (uptime $(up))"
  st=$(echo "$qm" | jfield status)
  H_TOTAL=$(echo "$qm" | jfield total-time)
  H_DOWN=$(echo "$qm" | jfield downtime)
  [ "$st" = completed ] || { HF="$HF migration-$st($(echo "$qm" | jfield error-desc | tr ' ' _))"; return 0; }
  s=$(qstatus "$from")
  [ "$s" = postmigrate ] || HF="$HF $from-is-$s-not-postmigrate"
  waitfor 20 isstatus "$to" running || HF="$HF $to-is-$(qstatus "$to")-not-running"
  # Quit FROM so that its console is complete (its stream has ended).
  endvm "$from"
  [ "$RC" = 0 ] || HF="$HF $from-vmmd-rc=$RC"
  # The guest goes on counting on TO: 8 more ticks.
  waitfor 60 ticking "$to" 8
  ntick=$(nticks "$to")
  if [ "$ntick" -lt 8 ]; then
    HF="$HF $to-ticks=$ntick-of-8-in-60s(last-line:'$(tail -n 1 "/tmp/$to.log" | tr ' ' _)')"
    if ! dead "$to"; then diag "$to" "$(vmpid "$to")"; waitfor 10 dead "$to"; fi
  fi
  seam "$from" "$to"
  HF="$HF$(troubles "$to")"
  echo "L1: [$from->$to] total ${H_TOTAL}ms downtime ${H_DOWN}ms; last tick on $from $H_LAST, first on $to $H_FIRST ($H_SEAM), L2 uptime gap ${H_GAP}s"
  return 0
}

# recorded NAME AFTER: check that every tick above AFTER on NAME's console
# has its record in /disk.img (/tmp/mig.recs, read after the last vmmd
# exited). Sets RF (failure words) and NREC (how many were checked).
recorded() {
  ticks "$1" | awk -v after="$2" '$1 > after { print $1 }' > /tmp/$1.want
  NREC=$(wc -l < /tmp/$1.want)
  miss=$(awk 'NR == FNR { have[$2] = 1; next } !($1 in have) { printf "%s,", $1 }' /tmp/mig.recs /tmp/$1.want)
  RF=""
  [ -z "$miss" ] || RF="$RF $1-records-missing-on-disk($miss)"
  [ "$NREC" -gt 0 ] || RF="$RF $1-no-ticks-to-check"
}

# group_m: live migration of a running stock Debian guest, 2 vCPUs, between
# vmmds in this L1: mig-a boots it, it migrates over a unix socket to mig-b
# (started with --incoming) and then on to a fresh mig-c (the guest going
# "back": the first vmmd is postmigrate and has quit, as on a real host),
# its disk the shared file /disk.img all along. The guest's tick loop
# (vmmdtest=migrate) writes and reads back a disk record per tick; after
# each hop its console must continue the count where it stopped, with no
# failed read-back and a sane clock. At the end L1 sets the stop flag on
# the disk, the guest powers itself off on mig-c, and the disk file must
# hold the record of every tick counted after the first migration.
#   migrate       the hop a -> b and the guest running on b
#   migrate-back  the hop b -> c, the guest running on and powering off c,
#                 every record on the disk
group_m() {
  # The tick ring and the stop flag start empty.
  dd if=/dev/zero of=/disk.img bs=512 seek=8191 count=4097 conv=notrunc 2>/dev/null
  rm -f /tmp/mig-*.mig /tmp/mig-*.run
  A_LAST="" B_LAST="" M1="" M2=""
  startvm mig-a 2 /vmlinuz vmmdtest=migrate
  startvm mig-b 2 /vmlinuz vmmdtest=migrate "--incoming unix:/tmp/mig-b.mig"
  F1="" F2=""
  waitfor "$TO" ticking mig-a 1
  [ "$(nticks mig-a)" -ge 1 ] || F1="$F1 mig-a-no-ticks($(tail -n 1 /tmp/mig-a.log | tr ' ' _))"
  [ -z "$F1" ] && F1="$(checkready mig-a 2)"
  if [ -z "$F1" ]; then
    hop mig-a mig-b
    F1="$HF$(troubles mig-a)"
    A_LAST=$H_LAST
    [ -n "$H_DOWN" ] && echo "L1-METRIC migrate_total_ms=$H_TOTAL migrate_downtime_ms=$H_DOWN"
    M1="a->b total=${H_TOTAL}ms downtime=${H_DOWN}ms last_a_tick=$H_LAST first_b_tick=$H_FIRST seam=$H_SEAM l2_uptime_gap=${H_GAP}s"
  fi
  if [ -z "$F1" ]; then
    startvm mig-c 2 /vmlinuz vmmdtest=migrate "--incoming unix:/tmp/mig-c.mig"
    hop mig-b mig-c
    F2=$HF
    B_LAST=$H_LAST
    [ -n "$H_DOWN" ] && echo "L1-METRIC migrate_back_total_ms=$H_TOTAL migrate_back_downtime_ms=$H_DOWN"
    M2="b->c total=${H_TOTAL}ms downtime=${H_DOWN}ms last_b_tick=$H_LAST first_c_tick=$H_FIRST seam=$H_SEAM l2_uptime_gap=${H_GAP}s"
    # The guest stops counting when it reads the stop flag through vmmd
    # and powers off: vmmd exits 0 on its own.
    printf 'L2-STOP\n' | dd of=/disk.img bs=512 seek=8191 conv=notrunc 2>/dev/null
    waitfor 30 dead mig-c || F2="$F2 no-guest-poweroff-30s-after-stop-flag"
    endvm mig-c
    [ "$RC" = 0 ] || F2="$F2 mig-c-vmmd-rc=$RC"
    grep -a -q '^L2-TICK-END' /tmp/mig-c.log || F2="$F2 no-L2-TICK-END"
    F2="$F2$(troubles mig-c)"
  else
    F2=" not-run(the-first-hop-failed)"
  fi
  # Whatever a failure left running or uncollected.
  for v in mig-a mig-b mig-c; do
    if [ -e /tmp/$v.run ] && [ ! -e /tmp/$v.done ]; then endvm $v; fi
  done
  dd if=/disk.img bs=512 skip=8192 count=4096 2>/dev/null | tr -s '\000' '\n' | grep -a '^L2-REC ' > /tmp/mig.recs
  if [ -n "$A_LAST" ]; then
    recorded mig-b "$A_LAST"
    F1="$F1$RF"
    M1="$M1 b_ticks_on_disk=$NREC"
  fi
  if [ -n "$B_LAST" ] && [ "$F2" != " not-run(the-first-hop-failed)" ]; then
    recorded mig-c "$B_LAST"
    F2="$F2$RF"
    M2="$M2 c_ticks_on_disk=$NREC"
  fi
  scenario migrate "$F1" "$M1"
  scenario migrate-back "$F2" "$M2"
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
  for g in $(echo "${l2groups:-a q b c m}" | tr ',+' '  '); do
    case $g in
      a|b|c|m|q|s) group_$g ;;
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
