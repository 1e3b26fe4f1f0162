package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/vmmd/vmmd/internal/nbdkittest"
	"github.com/vmmd/vmmd/internal/testguest"
)

// migInfo is the part of query-migrate the tests look at.
type migInfo struct {
	Status    string `json:"status"`
	ErrorDesc string `json:"error-desc"`
	TotalTime int64  `json:"total-time"`
	Downtime  int64  `json:"downtime"`
	RAM       *struct {
		Transferred    uint64 `json:"transferred"`
		Total          uint64 `json:"total"`
		Duplicate      uint64 `json:"duplicate"`
		Normal         uint64 `json:"normal"`
		DirtySyncCount uint64 `json:"dirty-sync-count"`
	} `json:"ram"`
	// Steps is vmmd's x-vmmd-downtime-steps (a completed source).
	Steps map[string]float64 `json:"x-vmmd-downtime-steps"`
}

func (c *qmpTestClient) migInfo(t *testing.T) migInfo {
	t.Helper()
	var in migInfo
	if err := json.Unmarshal(c.must(t, "query-migrate", nil), &in); err != nil {
		t.Fatalf("query-migrate: %v", err)
	}
	return in
}

// waitMigration polls query-migrate until the status is final.
func (c *qmpTestClient) waitMigration(t *testing.T, ctx context.Context) migInfo {
	t.Helper()
	for {
		in := c.migInfo(t)
		switch in.Status {
		case "completed", "failed", "cancelled":
			return in
		}
		select {
		case <-ctx.Done():
			t.Fatalf("migration still %q when the test timed out", in.Status)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitStatus polls query-status until it reports want.
func (c *qmpTestClient) waitStatus(t *testing.T, ctx context.Context, want string) {
	t.Helper()
	for {
		got, _ := c.status(t)
		if got == want {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("run state %q, want %q", got, want)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// startDestination starts a vmmd waiting for an incoming migration on a
// unix socket, with the same flags as the source.
func startDestination(t *testing.T, bin string, flags ...string) (*guest, *qmpTestClient, string) {
	t.Helper()
	dir := nbdkittest.ShortDir(t)
	sock := filepath.Join(dir, "qmp.sock")
	mig := "unix:" + filepath.Join(dir, "mig.sock")
	p := startVMMD(t, bin, append([]string{"--memory", "128M", "--qmp", "unix:" + sock, "--incoming", mig}, flags...)...)
	q := dialQMP(t, sock)
	q.wantStatus(t, "inmigrate")
	return &guest{p: p}, q, mig
}

// heartbeat waits for a heartbeat line on g and returns its number.
func (g *guest) heartbeat(t *testing.T, ctx context.Context) int {
	t.Helper()
	line := g.expect(t, ctx, `^HB \d+$`)
	n, err := strconv.Atoi(regexp.MustCompile(`\d+`).FindString(line))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// heartbeatContinues checks that the guest's heartbeat goes on at the
// destination exactly where it stopped at the source, without restarting. A
// line the guest was printing at the moment it stopped is split between the
// two consoles (the source printed "HB 1", the destination prints "5"), so
// the destination's output is read as the continuation of the source's.
func heartbeatContinues(t *testing.T, ctx context.Context, from, to *guest) {
	t.Helper()
	to.heartbeat(t, ctx)
	// The source writes its console asynchronously: wait until the last
	// of it (an unfinished line included) has arrived.
	if err := from.p.con.Settle(ctx, 200*time.Millisecond); err != nil {
		t.Fatalf("source console: %v", err)
	}
	last := testguest.LastHeartbeat(from.p.con.Lines())
	first := testguest.FirstHeartbeat(testguest.Continued(from.p.con, to.p.con))
	if first != last+1 {
		t.Errorf("heartbeat did not continue: destination's first %d, source's last %d (source's unfinished line %q)",
			first, last, from.p.con.Partial())
	}
}
