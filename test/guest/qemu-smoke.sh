#!/bin/bash
# Builds the test guest and runs the QEMU smoke checks (qemu-smoke.py).
# Usage: test/guest/qemu-smoke.sh [--quick] [-v]   (OUT=... to use another build dir)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-$here/../../build/guest}
make -s -C "$here" OUT="$(mkdir -p "$out" && cd "$out" && pwd)" all shim
exec python3 "$here/qemu-smoke.py" --elf "$out/vmmd-testguest.elf" \
	--bzimage "$out/vmmd-testguest.bzImage" --shim "$out/obj/bz64shim.elf" "$@"
