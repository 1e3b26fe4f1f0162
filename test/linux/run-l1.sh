#!/usr/bin/env bash
# Boot the nested harness: L1 (Debian kernel) under QEMU TCG with an emulated
# SVM CPU; L1 runs vmmd on its real kvm-amd (see l1-init.sh for the
# scenarios). Exit 0 iff L1 reports "L1-RESULT pass". The console is shown
# live with host timestamps and kept in build/linux/l1.log (or $LOG); a
# summary of the scenario, metric and diagnostic lines ends the output.
#
# Retry: if L1 itself dies or hangs (no L1-RESULT line) while every scenario
# it finished had passed, and it printed no kernel panic, Oops or vmmd stall
# dump, the whole L1 boot is run again, at most RETRIES times, announced
# with "run-l1: RETRY" and counted in the summary; the next boot also names
# the dead L1's code addresses (L1-SYM lines). The deaths seen here were
# QEMU's (see PIN below): L1 triple-faulting right after VMRUN in kvm_amd,
# and L1 freezing in kernel live patching (see kvmhold in l1-init.sh). vmmd
# is a process inside L1: its bugs end as a failed scenario (the per-run
# watchdog in L1), never as a dead L1. A failed scenario, a vmmd stall or
# an L1 panic is never retried.
#
# Env: CPU (qemu64,+svm,+npt), ACCEL (tcg), SMP (L1 CPUs, 2), PIN (host CPU
# for QEMU, the first one allowed; empty: not pinned), TIMEOUT (host
# seconds per L1 boot, 900),
# SILENCE (host seconds without a harness line, i.e. anything but L1 kernel
# messages, after which L1 counts as hung: its CPUs are dumped over QMP and
# QEMU stops; 300), RETRIES (1), EXTRA (L1 cmdline, e.g.
# "l2groups=s l2repeat=5").
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=build/linux
CPU=${CPU:-qemu64,+svm,+npt}
ACCEL=${ACCEL:-tcg}
SMP=${SMP:-2}
# QEMU runs on one host CPU (PIN; PIN= turns pinning off). Its TCG threads
# for L1's two CPUs then never run at the same instant, which keeps them
# out of a race in QEMU 7.2's emulation of SVM that mixes L1's and L2's
# state at VMRUN/#VMEXIT (seen with both threads running in parallel on an
# idle host: L1 triple-faulting on its own IDT right after VMRUN with L2's
# GS base and registers loaded, or L2 resuming at L1's post-VMRUN RIP). On
# this 2-core host pinned runs were as fast as unpinned ones: L1 is mostly
# one busy CPU.
PIN=${PIN-$(python3 -c 'import os; print(min(os.sched_getaffinity(0)))')}
TIMEOUT=${TIMEOUT:-900}
RETRIES=${RETRIES:-1}
LOG=${LOG:-$OUT/l1.log}
QLOG=$OUT/l1-qemu.log
QMP=$OUT/l1-qmp.sock
for f in "$OUT/vmlinuz" "$OUT/l1.cpio.gz"; do
  [ -s "$f" ] || { echo "run-l1: $f missing (run test/linux/build-l1.sh)" >&2; exit 2; }
done

# boot: one L1 boot; sets rc (QEMU's exit code).
boot() {
  rm -f "$QMP"
  # -d cpu_reset: QEMU logs every CPU reset of L1 with the registers it had,
  # so an L1 that dies without a word (triple fault) leaves its last state
  # in $QLOG. That needs a real reset, hence no -no-reboot: tslog.py stops
  # QEMU when L1's firmware starts a second time.
  timeout --foreground -k 5 "$TIMEOUT" ${PIN:+taskset -c "$PIN"} qemu-system-x86_64 -accel "$ACCEL" -M q35 -cpu "$CPU" -m 2G -smp "$SMP" \
    -nographic -kernel "$OUT/vmlinuz" -initrd "$OUT/l1.cpio.gz" \
    -d cpu_reset,guest_errors -D "$QLOG" -qmp "unix:$QMP,server=on,wait=off" \
    -append "console=ttyS0 mitigations=off panic=-1 ${EXTRA:-}" </dev/null 2>&1 |
    python3 -u test/linux/tslog.py --qmp "$QMP" --silence "${SILENCE:-300}" | tee "$LOG"
  rc=${PIPESTATUS[0]}
}

# died: L1 ended without a result line. Prints what is known about why.
died() {
  grep -a -q '\] L1-RESULT' "$LOG" && return 1
  echo "run-l1: L1 ENDED WITHOUT A RESULT (qemu rc=$rc): L1 itself died or hung."
  # Power-on and INIT resets find the CPU in real or 32-bit mode; QEMU dumps
  # 64-bit registers (RAX=...) only for a CPU reset from long mode, i.e.
  # L1 dying (triple fault).
  echo "run-l1: L1 CPU resets from long mode (QEMU -d cpu_reset, $QLOG):"
  awk '/^CPU Reset/ { if (keep) printf "%s", blk; blk = ""; keep = 0 }
       { blk = blk $0 "\n" }
       /^RAX=/ { keep = 1 }
       END { if (keep) printf "%s", blk }' "$QLOG" | grep -v '^\(XMM\|FPR\|YMM\|ZMM\|Opmask\)' | head -60
  return 0
}

# retryable: the death is L1's alone (see the header).
retryable() {
  ! grep -a -q -E '\] (L1-SCENARIO [^ ]+ fail|L1-DIAG)|Kernel panic|Oops|BUG: unable|general protection fault' "$LOG"
}

rm -f "$LOG".died* "$LOG.syms" "$QLOG".died* "$QLOG.dead" "$QLOG.syms"
start=$(date +%s.%N)
attempt=0
BASEEXTRA=${EXTRA:-}
syms=""
while :; do
  boot
  died || break
  # The next L1 boot names where this one's CPUs were (L1-SYM lines).
  syms=$(python3 test/linux/tslog.py --l1syms "$LOG" "$QLOG")
  retryable || break
  [ "$attempt" -lt "$RETRIES" ] || break
  attempt=$((attempt + 1))
  mv "$LOG" "$LOG.died$attempt"; cp "$QLOG" "$QLOG.died$attempt"
  echo "run-l1: RETRY $attempt of $RETRIES: L1 died with no scenario failed (logs kept as $LOG.died$attempt, $QLOG.died$attempt); booting L1 again"
  EXTRA="$BASEEXTRA${syms:+ l1syms=$syms}"
  syms=""
done
if [ -n "$syms" ]; then
  # No retry followed: a short L1 boot, no scenarios, only names the code.
  echo "run-l1: booting L1 once more only to name the dead L1's code addresses"
  deadrc=$rc
  cp "$QLOG" "$QLOG.dead"
  EXTRA="l2groups=none l1syms=$syms" LOG="$LOG.syms" QLOG="$QLOG.syms" boot >/dev/null
  rc=$deadrc
  grep -a 'L1-SYM' "$LOG.syms"
fi
wall=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
echo "=== run-l1 summary ($LOG)"
grep -a -h -E '\] (L1-SCENARIO|L1-METRIC|L1-RESULT|L1-SYM|L1-DIAG .* still running)' "$LOG"
[ -e "$LOG.syms" ] && grep -a -h 'L1-SYM' "$LOG.syms"
echo "run-l1: L1 boots $((attempt + 1)), retries after an L1 death: $attempt; qemu rc=$rc, wall ${wall}s"
grep -a -q '\] L1-RESULT pass' "$LOG"
