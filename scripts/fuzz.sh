#!/usr/bin/env bash
# fuzz.sh [DURATION [LANE/LANES]] — run every Go fuzz target for DURATION
# (default 30s), one after another, and stop at the first finding. With
# LANE/LANES (e.g. 0/2) only every LANES-th target starting at LANE runs, so
# long runs can be split over CPUs. `make fuzz` runs it;
# findings land in the package's testdata/fuzz and become regression tests
# that `go test` replays from then on.
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-30s}
lane=${2:-0/1}
lane_i=${lane%/*} lanes=${lane#*/}
mapfile -t targets < <(grep -rl --include='*_test.go' '^func Fuzz' pkg internal cmd 2>/dev/null |
	while read -r f; do
		for fn in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //'); do
			echo "./$(dirname "$f") $fn"
		done
	done | sort -u)
echo "fuzz: ${#targets[@]} targets, ${dur} each, lane ${lane}"
for i in "${!targets[@]}"; do
	(( i % lanes == lane_i )) || continue
	t=${targets[$i]}
	read -r pkg fn <<<"$t"
	start=$(date +%s)
	# Minimising a large input with Go's default 60 s stalls the run at
	# 0 execs/s on these machines; 5 s is plenty.
	if ! go test "$pkg" -run='^$' -fuzz="^${fn}\$" -fuzztime="$dur" -fuzzminimizetime=5s -parallel=1 >"/tmp/fuzz-${fn}.log" 2>&1; then
		echo "FAIL $pkg $fn (see /tmp/fuzz-${fn}.log)"
		tail -20 "/tmp/fuzz-${fn}.log"
		exit 1
	fi
	execs=$(grep -o 'execs: [0-9]*' "/tmp/fuzz-${fn}.log" | tail -1 | awk '{print $2}')
	echo "ok   $pkg $fn $(( $(date +%s) - start ))s execs=${execs:-?}"
done
