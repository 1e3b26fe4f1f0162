#!/usr/bin/env bash
# Boot the nested harness: L1 (Debian kernel) under QEMU TCG with an emulated
# SVM CPU; L1 runs vmmd on its real kvm-amd. Exit 0 iff L1 reports
# "L1-RESULT pass". Log (host-timestamped): build/linux/l1.log or $LOG.
# Env: CPU (qemu64,+svm,+npt), TIMEOUT (host seconds, 600), EXTRA (L1 cmdline).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=build/linux
CPU=${CPU:-qemu64,+svm,+npt}
TIMEOUT=${TIMEOUT:-300}
LOG=${LOG:-$OUT/l1.log}
for f in "$OUT/vmlinuz" "$OUT/l1.cpio.gz"; do
  [ -s "$f" ] || { echo "run-l1: $f missing (run test/linux/build-l1.sh)" >&2; exit 2; }
done
start=$(date +%s.%N)
timeout --foreground -k 5 "$TIMEOUT" qemu-system-x86_64 -accel tcg -M q35 -cpu "$CPU" -m 2G -smp 2 \
  -nographic -no-reboot -kernel "$OUT/vmlinuz" -initrd "$OUT/l1.cpio.gz" \
  -append "console=ttyS0 mitigations=off panic=-1 ${EXTRA:-}" </dev/null 2>&1 |
  while IFS= read -r line; do
    printf '[%7.2f] %s\n' "$(echo "$(date +%s.%N) - $start" | bc)" "$line"
  done | tee "$LOG"
rc=${PIPESTATUS[0]}
echo "run-l1: qemu rc=$rc, wall $(echo "$(date +%s.%N) - $start" | bc)s, log $LOG"
grep -q 'L1-RESULT pass' "$LOG"
