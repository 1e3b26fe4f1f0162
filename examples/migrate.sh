#!/usr/bin/env bash
# migrate.sh: live-migrate a guest between two vmmd daemons that share a disk
# served by nbdkit, then check that it runs on the destination.
#
#   make && make guest && examples/migrate.sh
#
# Needs bin/vmmd, bin/vmmctl, the test guest, nbdkit and jq. VMMD, VMMCTL and
# KERNEL override the paths. Everything lives in a temporary directory that
# is removed, with every process started here, when the script exits.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
VMMD=${VMMD:-$root/bin/vmmd}
VMMCTL=${VMMCTL:-$root/bin/vmmctl}
KERNEL=${KERNEL:-$root/build/guest/vmmd-testguest.elf}
for f in "$VMMD" "$VMMCTL" "$KERNEL"; do
	[[ -e $f ]] || { echo "migrate.sh: $f missing (run make && make guest)" >&2; exit 2; }
done
for tool in nbdkit jq; do
	command -v "$tool" >/dev/null || { echo "migrate.sh: $tool not installed" >&2; exit 2; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/vmmd-migrate.XXXXXX")
pids=()
cleanup() {
	local rc=$?
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if ((rc != 0)); then
		for log in "$work"/*.log; do [[ -e $log ]] && { echo "--- $log"; tail -n 20 "$log"; }; done >&2
	fi
	rm -rf "$work"
}
trap cleanup EXIT
# A signal ends the script through exit, so the EXIT trap cleans up.
trap 'exit 143' INT TERM

# wait_for PID PATH: until PATH exists, or fail if PID has died.
wait_for() {
	for _ in $(seq 200); do
		[[ -S $2 ]] && return 0
		kill -0 "$1" 2>/dev/null || { echo "process $1 died before creating $2" >&2; return 1; }
		sleep 0.05
	done
	echo "timed out waiting for $2" >&2
	return 1
}

# start_vmmd NAME [FLAG...]: a daemon with QMP at $work/NAME.qmp on the shared disk.
start_vmmd() {
	local name=$1
	shift
	"$VMMD" --kernel "$KERNEL" --memory 128M --serial none --name "$name" \
		--qmp "unix:$work/$name.qmp" \
		--drive "file=nbd+unix:///?socket=$work/nbd.sock,id=disk0" \
		--log-format json "$@" >"$work/$name.log" 2>&1 &
	pids+=($!)
	wait_for "$!" "$work/$name.qmp"
}

# ctl NAME ARGS...: vmmctl against daemon NAME.
ctl() { "$VMMCTL" --socket "$work/$1.qmp" "${@:2}"; }

# state NAME: the run state (running, paused, inmigrate, postmigrate, ...).
state() { ctl "$1" -o json status | jq -r .status; }

# want_state NAME STATE: fail unless daemon NAME is in STATE.
want_state() {
	local got
	got=$(state "$1")
	[[ $got == "$2" ]] || { echo "migrate.sh: $1 is $got, want $2" >&2; exit 1; }
	echo "$1: $got"
}

# Shared storage: a 64 MiB disk in nbdkit's memory.
nbdkit -f -U "$work/nbd.sock" --exit-with-parent memory 64M &
pids+=($!)
wait_for "$!" "$work/nbd.sock"

start_vmmd src
start_vmmd dst --incoming "unix:$work/mig.sock"
want_state src running
want_state dst inmigrate

# Migrate, showing progress; exits non-zero (and says why) if it fails.
ctl src migrate "unix:$work/mig.sock" --wait --downtime-limit 100

want_state dst running
want_state src postmigrate
# The disk changed hands: active (writable) on the destination only.
disk_active() { ctl "$1" -o json block list | jq -r '.[] | select(.device == "disk0") | .active'; }
if [[ $(disk_active dst) != true || $(disk_active src) != false ]]; then
	echo "migrate.sh: disk0 active on dst: $(disk_active dst), on src: $(disk_active src); want true, false" >&2
	exit 1
fi
echo "disk0: active on dst, inactive on src"

ctl src quit
echo "migrate.sh: OK"
