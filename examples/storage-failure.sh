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

me=storage-failure.sh
# shellcheck source=examples/lib.bash
source "$(dirname "$0")/lib.bash"

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
