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

me=migrate.sh
# shellcheck source=examples/lib.bash
source "$(dirname "$0")/lib.bash"

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
