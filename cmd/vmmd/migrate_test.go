package main

import (
	"strings"
	"testing"
	"time"

	"github.com/vmmd/vmmd/internal/testguest"
)

// TestMigrateRunningGuest moves a running guest with a heartbeat and the
// memory workload to a second vmmd: the destination continues the
// heartbeat where the source stopped, the memory checker finds every page
// consistent, and the source ends in postmigrate.
func TestMigrateRunningGuest(t *testing.T) {
	bin := buildVMMD(t)
	ctx, cancel := testguest.Deadline(t, 60*time.Second)
	defer cancel()
	src, sq := bootGuest(t, ctx, bin, 0, "--cpus", "2")
	dst, dq, uri := startDestination(t, bin, "--cpus", "2")
	src.do(t, ctx, "mem start 32", `^OK mem start 32$`)
	src.do(t, ctx, "hb 20", `^OK hb 20$`)
	src.heartbeat(t, ctx)
	sq.must(t, "migrate-set-capabilities", map[string]any{"capabilities": []map[string]any{{"capability": "events", "state": true}}})
	sq.must(t, "migrate", map[string]any{"uri": uri})
	in := sq.waitMigration(t, ctx)
	if in.Status != "completed" {
		t.Fatalf("migration %s: %s", in.Status, in.ErrorDesc)
	}
	sq.wantStatus(t, "postmigrate")
	dq.waitStatus(t, ctx, "running")
	heartbeatContinues(t, ctx, src, dst)
	dst.do(t, ctx, "mem check", `^MEMCHECK ok `)
	t.Logf("migration: total %d ms, downtime %d ms, RAM %+v, steps %v", in.TotalTime, in.Downtime, *in.RAM, in.Steps)
	sum := 0.0
	for _, k := range []string{"stop", "inactivate", "last-pages", "device-state", "destination-load", "commit"} {
		v, ok := in.Steps[k]
		if !ok || v < 0 {
			t.Errorf("x-vmmd-downtime-steps: %q = %v, %v: %v", k, v, ok, in.Steps)
		}
		sum += v
	}
	if sum > float64(in.Downtime)+1 || len(in.Steps) != 6 {
		t.Errorf("x-vmmd-downtime-steps %v (sum %.3f ms) against downtime %d ms", in.Steps, sum, in.Downtime)
	}
	if dst := dq.migInfo(t); dst.Steps != nil {
		t.Errorf("the destination reports downtime steps: %v", dst.Steps)
	}
	for _, l := range strings.Split(src.p.stderr.String(), "\n") {
		if strings.Contains(l, "downtime_steps") {
			t.Logf("source: %s", l)
		}
	}
}
