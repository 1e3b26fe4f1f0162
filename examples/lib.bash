# lib.bash: what every example needs, sourced (not run) after setting `me` to
# the script's name. It checks the tools, makes a work directory that is
# removed with every process started here when the script exits, starts the
# shared disk in nbdkit, and gives small helpers over vmmd and vmmctl.
# VMMD, VMMCTL and KERNEL override the paths.

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VMMD=${VMMD:-$root/bin/vmmd}
VMMCTL=${VMMCTL:-$root/bin/vmmctl}
KERNEL=${KERNEL:-$root/build/guest/vmmd-testguest.elf}
for f in "$VMMD" "$VMMCTL" "$KERNEL"; do
	[[ -e $f ]] || { echo "$me: $f missing (run make && make guest)" >&2; exit 2; }
done
for tool in nbdkit jq; do
	command -v "$tool" >/dev/null || { echo "$me: $tool not installed" >&2; exit 2; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/vmmd-${me%.sh}.XXXXXX")
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
	[[ $got == "$2" ]] || { echo "$me: $1 is $got, want $2" >&2; exit 1; }
	echo "$1: $got"
}

# Shared storage: a 64 MiB disk in nbdkit's memory.
nbdkit -f -U "$work/nbd.sock" --exit-with-parent memory 64M &
pids+=($!)
wait_for "$!" "$work/nbd.sock"
