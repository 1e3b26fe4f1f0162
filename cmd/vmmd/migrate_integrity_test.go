package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/vmmd/vmmd/internal/testguest"
)

// TestMigrationIntegrityRoundTrips moves a guest that is busy (the memory
// workload incrementing every page, a dirtying workload, a heartbeat and
// disk writes) between daemons 20 times (10 round trips). After every hop
// the memory checker must find every page consistent, the heartbeat must
// continue where it stopped, and every acknowledged disk record must read
// back; at the end the image holds them all.
func TestMigrationIntegrityRoundTrips(t *testing.T) {
	const hops = 20
	bin := buildVMMD(t)
	ctx, cancel := testguest.Deadline(t, 240*time.Second)
	defer cancel()
	img := newImage(t, 64<<20)
	drive := "file=" + img + ",id=disk0"
	flags := []string{"--cpus", "2", "--drive", drive}
	cur, cq := bootGuest(t, ctx, bin, 1, flags...)
	cur.do(t, ctx, "mem start 32", `^OK mem start 32$`)
	cur.do(t, ctx, "dirty 5000 16", `^OK dirty 5000 16$`)
	cur.do(t, ctx, "hb 20", `^OK hb 20$`)
	records := 0
	var downtimes []int64
	for hop := 0; hop < hops; hop++ {
		cur.do(t, ctx, fmt.Sprintf("disk write 0 %d 50 flush", records), fmt.Sprintf(`^OK disk write 0 %d 50 flushed=1$`, records))
		records += 50
		cur.heartbeat(t, ctx)
		next, nq, uri := startDestination(t, bin, flags...)
		// Unlimited bandwidth: the memory workload rewrites its 32 MiB
		// every few milliseconds, which QEMU's default 128 MiB/s cannot
		// outrun within the 300 ms downtime limit.
		cq.must(t, "migrate-set-parameters", map[string]any{"max-bandwidth": 0})
		in := migrateTo(t, ctx, cq, uri)
		if in.Status != "completed" {
			t.Fatalf("hop %d: %s: %s", hop, in.Status, in.ErrorDesc)
		}
		downtimes = append(downtimes, in.Downtime)
		cq.wantStatus(t, "postmigrate")
		nq.waitStatus(t, ctx, "running")
		heartbeatContinues(t, ctx, cur, next)
		next.do(t, ctx, "mem check", `^MEMCHECK ok `)
		next.do(t, ctx, fmt.Sprintf("disk verify 0 0 %d", records), fmt.Sprintf(`^VERIFY ok disk=0 records=%d$`, records))
		noViolations(t, cq, nq)
		// The old daemon is done with the guest; quit it as an operator would.
		cq.must(t, "quit", nil)
		waitExit(t, cur.p, 10*time.Second)
		cur, cq = next, nq
	}
	cur.powerOff(t)
	checkRecords(t, img, fmt.Sprintf("0:%d", records))
	t.Logf("%d hops, downtimes (ms): %v", hops, downtimes)
}
