#!/usr/bin/env bash
# evacuate.sh: empty a host for maintenance and bring the guest back. The
# guest runs on host "a", moves to host "b", host a's daemon goes away (the
# maintenance), a new daemon on a takes the guest back from b.
#
#   make && make guest && examples/evacuate.sh
#
# Both "hosts" are daemons on this machine with a disk shared through
# nbdkit. Needs bin/vmmd, bin/vmmctl, the test guest, nbdkit and jq (see lib.bash).
set -euo pipefail

me=evacuate.sh
# shellcheck source=examples/lib.bash
source "$(dirname "$0")/lib.bash"

# evacuate FROM TO: move the guest from daemon FROM to the waiting daemon TO,
# check it runs there, and stop FROM.
evacuate() {
	echo "== $1 -> $2"
	want_state "$2" inmigrate
	ctl "$1" migrate "unix:$work/$2.mig" --wait
	want_state "$2" running
	want_state "$1" postmigrate
	ctl "$1" quit
	wait "${pid_of[$1]}" || true
}

start_vmmd a1
want_state a1 running

start_vmmd b --incoming "unix:$work/b.mig"
evacuate a1 b

echo "== host a is empty: maintenance happens here"

start_vmmd a2 --incoming "unix:$work/a2.mig"
evacuate b a2

want_state a2 running
ctl a2 quit
echo "evacuate.sh: OK"
