#!/usr/bin/env bash
# storage-failure.sh: the shared storage fails while the source hands the
# disk over; the script detects the failed migration, recovers the source
# (restore the storage, then cont if the source did not resume by itself)
# and retries on a fresh destination.
#
#   make && make guest && examples/storage-failure.sh
#
# The failure is injected in the source vmmd (vmmctl block inject: every
# flush of disk0 fails with EIO), the stand-in for an NFS or NBD server that
# goes away at the worst moment. Needs bin/vmmd, bin/vmmctl, the test guest,
# nbdkit and jq; VMMD, VMMCTL and KERNEL override the paths.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
VMMD=${VMMD:-$root/bin/vmmd}
VMMCTL=${VMMCTL:-$root/bin/vmmctl}
KERNEL=${KERNEL:-$root/build/guest/vmmd-testguest.elf}
for f in "$VMMD" "$VMMCTL" "$KERNEL"; do
	[[ -e $f ]] || { echo "storage-failure.sh: $f missing (run make && make guest)" >&2; exit 2; }
done
for tool in nbdkit jq; do
	command -v "$tool" >/dev/null || { echo "storage-failure.sh: $tool not installed" >&2; exit 2; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/vmmd-storage-failure.XXXXXX")
pids=()
declare -A pid_of=()
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
	pid_of[$name]=$!
	wait_for "$!" "$work/$name.qmp"
}

# stop_vmmd NAME: end daemon NAME, whatever state it is in.
stop_vmmd() {
	kill "${pid_of[$1]}" 2>/dev/null || true
	wait "${pid_of[$1]}" 2>/dev/null || true
}

# ctl NAME ARGS...: vmmctl against daemon NAME.
ctl() { "$VMMCTL" --socket "$work/$1.qmp" "${@:2}"; }

# state NAME: the run state (running, paused, inmigrate, postmigrate, ...).
state() { ctl "$1" -o json status | jq -r .status; }

# want_state NAME STATE: fail unless daemon NAME is in STATE.
want_state() {
	local got
	got=$(state "$1")
	[[ $got == "$2" ]] || { echo "storage-failure.sh: $1 is $got, want $2" >&2; exit 1; }
	echo "$1: $got"
}

nbdkit -f -U "$work/nbd.sock" --exit-with-parent memory 64M &
pids+=($!)
wait_for "$!" "$work/nbd.sock"

start_vmmd src
start_vmmd dst1 --incoming "unix:$work/mig1.sock"
want_state src running

# The storage breaks: the source cannot flush disk0 any more, so it cannot
# hand the disk over.
ctl src block inject disk0 flush --errno EIO

# The exit code says whether the migration completed; migrate-status says
# what happened.
if ctl src migrate "unix:$work/mig1.sock" --wait; then
	echo "storage-failure.sh: the migration completed although the source cannot flush" >&2
	exit 1
fi
outcome=$(ctl src -o json migrate-status)
echo "detected: migration $(jq -r .status <<<"$outcome"): $(jq -r .error_desc <<<"$outcome")"
# The cause is named: vmmd reports which disk could not be handed over.
if [[ $(jq -r .status <<<"$outcome") != failed || $(jq -r .error_desc <<<"$outcome") != *disk0* ]]; then
	echo "storage-failure.sh: want a failed migration naming disk0, got $outcome" >&2
	exit 1
fi

# Recover: the storage first (here: stop the injected errors; in real life:
# wait for the storage server), then the guest.
ctl src block clear-injections disk0
case $(state src) in
running)
	echo "src: running again (it resumed through the block gate by itself)"
	;;
paused | postmigrate)
	# Never resume the source while the destination may run the guest:
	# that would be two guests writing one disk. Fence the destination
	# first, then cont, which reactivates the disks before the vCPUs run.
	if [[ $(state dst1 2>/dev/null || echo gone) == running ]]; then
		echo "storage-failure.sh: the destination runs the guest; do not resume the source" >&2
		exit 1
	fi
	stop_vmmd dst1
	echo "src: $(state src); cont"
	ctl src cont
	;;
*)
	echo "storage-failure.sh: unexpected source state $(state src)" >&2
	exit 1
	;;
esac
want_state src running

# Retry on a fresh destination: the first one never received the guest.
stop_vmmd dst1
start_vmmd dst2 --incoming "unix:$work/mig2.sock"
ctl src migrate "unix:$work/mig2.sock" --wait
want_state dst2 running
want_state src postmigrate
ctl src quit
echo "storage-failure.sh: OK"
