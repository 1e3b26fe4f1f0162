#!/usr/bin/env bash
# verify.sh: model-check the migration handover and the block reactivation
# gate (pkg/migrate/model/handover.pml) with spin.
#
# The correct model is checked exhaustively in both storage modes (image
# locks; no locks, as with NBD) and must show no error. Each deliberately
# broken variant must be caught: if spin finds nothing in one of them, the
# model has lost its teeth and this script fails too. Prints one line per
# run with the states explored; exits non-zero on any unexpected result.
#
# Needs spin (Debian package "spin") and a C compiler.
set -euo pipefail
cd "$(dirname "$0")/.."

model=pkg/migrate/model/handover.pml
depth=20000  # -m: search depth bound; reaching it fails the run

for tool in spin "${CC:-gcc}"; do
  command -v "$tool" >/dev/null || { echo "verify: $tool not found (Debian: apt-get install spin gcc)" >&2; exit 2; }
done
[ -f "$model" ] || { echo "verify: $model missing" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
name=$(basename "$model")

# expect|label|spin -D flags. "pass" must explore the whole state space with
# no error; "fail:PROP" must violate exactly that property (the prop_ name
# in the model's assertion), so a broken variant caught for the wrong reason
# (a typo, a deadlock) does not count.
runs=(
  "pass|locks (file backend)|"
  "pass|no locks (NBD)|-DNOLOCK"
  "pass|FRAME_ATOMIC: commit as source.go does it, locks|-DFRAME_ATOMIC"
  "pass|FRAME_ATOMIC, no locks|-DNOLOCK -DFRAME_ATOMIC"
  "fail:s_gated|BUGGY_RESUME: auto-resume without the gate|-DBUGGY_RESUME"
  "fail:no_auto_after_commit|BUGGY_COMMIT: resume after a COMMIT send error|-DBUGGY_COMMIT"
  "fail:one_holder|BUGGY_COMMIT, no locks|-DNOLOCK -DBUGGY_COMMIT"
  "fail:s_gated|BUGGY_PAUSED_STOP: paused VM not forced to finish-migrate|-DBUGGY_PAUSED_STOP"
  "fail:s_gated|BUGGY_STOP_RACE: stop races stopGuest's state check|-DBUGGY_STOP_RACE"
  "fail:d_committed|BUGGY_DEST_CONT: cont starts an uncommitted destination|-DBUGGY_DEST_CONT"
  "fail:s_flag|BUGGY_FLAG: mayBeInactive set after inactivating|-DBUGGY_FLAG"
  "fail:recoverable|NO_ROLLBACK: failed ReactivateAll keeps its locks|-DNO_ROLLBACK"
  "fail:one_holder|UNINFORMED: cont on postmigrate source, no locks|-DNOLOCK -DUNINFORMED"
)

# one run: generate, compile, search; records its wall time in ms
run() {
  local dir=$1 flags=$2 start
  start=$(date +%s%N)
  # shellcheck disable=SC2086 # flags is a list of -D options
  (cd "$dir" && spin $flags -a "$name" >spin.out 2>&1) || { echo "spin -a failed" >"$dir/fail"; return; }
  (cd "$dir" && "${CC:-gcc}" -O2 -DSAFETY -o pan pan.c >cc.out 2>&1) || { echo "compiling pan failed" >"$dir/fail"; return; }
  (cd "$dir" && ./pan -m"$depth" >pan.out 2>&1) || true
  echo $(( ($(date +%s%N) - start) / 1000000 )) >"$dir/ms"
}

# The runs are independent: use every CPU.
jobs_max=$(nproc 2>/dev/null || echo 2)
i=0
for r in "${runs[@]}"; do
  IFS='|' read -r _ _ flags <<<"$r"
  mkdir "$work/run$i"
  cp "$model" "$work/run$i/"
  while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n || true; done
  run "$work/run$i" "$flags" &
  i=$((i + 1))
done
wait

bad=0
total=0
for r in "${runs[@]}"; do
  IFS='|' read -r expect label flags <<<"$r"
  dir="$work/run$total"
  if [ -f "$dir/fail" ]; then
    echo "verify: $label ($flags): $(cat "$dir/fail"):" >&2
    cat "$dir"/spin.out "$dir"/cc.out 2>/dev/null >&2
    exit 2
  fi
  ms=$(cat "$dir/ms")
  out="$dir/pan.out"
  errors=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' "$out" | tail -1)
  states=$(sed -n 's/^ *\([0-9.e+]*\) states, stored.*/\1/p' "$out" | tail -1)
  reached=$(sed -n 's/.*depth reached \([0-9]*\).*/\1/p' "$out" | tail -1)
  total=$((total + 1))
  if [ -z "$errors" ] || [ -z "$states" ]; then
    echo "verify: cannot read pan's result for $label:" >&2; cat "$out" >&2; exit 2
  fi
  violated=$(grep -m1 -o 'prop_[a-z_]*' "$out" || true)
  violated=${violated#prop_}
  if [ "$errors" != 0 ] && [ -z "$violated" ]; then
    violated=$(grep -m1 -o 'invalid end state\|assertion violated' "$out" || echo "error")
  fi
  verdict=ok
  if grep -q 'max search depth too small' "$out"; then
    verdict="FAILED: search depth bound $depth reached, search incomplete"
  elif [ "$expect" = pass ] && [ "$errors" != 0 ]; then
    verdict="FAILED: violation in the correct model"
  elif [ "$expect" = pass ] && grep -q 'Search not completed' "$out"; then
    verdict="FAILED: search not completed"
  elif [ "$expect" != pass ] && [ "$errors" = 0 ]; then
    verdict="FAILED: the broken variant was not caught"
  elif [ "$expect" != pass ] && [ "$violated" != "${expect#fail:}" ]; then
    verdict="FAILED: caught, but for $violated, not ${expect#fail:}"
  fi
  what="errors: $errors"
  [ "$errors" = 0 ] || what="$what, violates $violated"
  printf '%-62s states %9s  depth %5s  %3d.%01ds  %-40s %s\n' \
    "$label" "$states" "$reached" $((ms / 1000)) $((ms % 1000 / 100)) "$what" "$verdict"
  if [ "$verdict" != ok ]; then
    bad=$((bad + 1))
    if [ "$errors" != 0 ]; then
      # shellcheck disable=SC2086
      (cd "$dir" && spin $flags -t -p -g -l "$name" | tail -60) >&2 || true
    fi
  fi
done

if [ "$bad" -ne 0 ]; then
  echo "verify: $bad of $total runs gave an unexpected result" >&2
  exit 1
fi
echo "verify: ok: $total runs; no violation in the correct model (both storage modes, both commit styles); every broken variant caught"
