package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmmd/vmmd/internal/nbdkittest"
	"github.com/vmmd/vmmd/internal/testguest"
)

// filePair boots a source on a 16 MiB image file and a destination
// waiting for it on the same file.
func filePair(t *testing.T, ctx context.Context, bin string) (src *guest, sq *qmpTestClient, dst *guest, dq *qmpTestClient, uri string) {
	t.Helper()
	drive := "file=" + newImage(t, 16<<20) + ",id=disk0"
	src, sq = bootGuest(t, ctx, bin, 1, "--drive", drive)
	dst, dq, uri = startDestination(t, bin, "--drive", drive)
	return src, sq, dst, dq, uri
}

// Frame kinds of pkg/migrate/stream, as the proxy sees them.
const (
	frameReady  = 17
	frameCommit = 18
)

// TestConnectionCutAtCommit: the connection breaks after the source sent
// commit but before the destination got it. The source has committed and
// stays in postmigrate; the destination never got the guest and stays in
// inmigrate: both are stopped, neither runs (no split brain), and the
// operator brings the guest back with cont on the source.
func TestConnectionCutAtCommit(t *testing.T) {
	bin := buildVMMD(t)
	ctx, cancel := testguest.Deadline(t, 60*time.Second)
	defer cancel()
	src, sq, _, dq, uri := filePair(t, ctx, bin)
	src.do(t, ctx, "disk write 0 0 100 flush", `^OK disk write 0 0 100 flushed=1$`)
	proxy := &phaseProxy{hook: func(fromSource bool, kind byte, _ int) proxyAction {
		if fromSource && kind == frameCommit {
			return actCut
		}
		return actForward
	}}
	startPhaseProxy(t, uri, proxy)
	if in := migrateTo(t, ctx, sq, proxy.uri); in.Status != "completed" {
		t.Fatalf("source: %s %q (it sent commit, so it must consider the migration done)", in.Status, in.ErrorDesc)
	}
	sq.wantStatus(t, "postmigrate")
	if in := dq.waitMigration(t, ctx); in.Status != "failed" || !strings.Contains(in.ErrorDesc, "did not commit") {
		t.Fatalf("destination: %s %q", in.Status, in.ErrorDesc)
	}
	dq.wantStatus(t, "inmigrate")
	if _, ok := dq.gate(t); ok {
		t.Error("the destination took the disk without a commit")
	}
	sq.must(t, "cont", nil)
	sq.wantStatus(t, "running")
	src.do(t, ctx, "disk verify 0 0 100", `^VERIFY ok disk=0 records=100$`)
	noViolations(t, sq, dq)
}

// TestDestinationKilledAfterReady: the destination dies after it answered
// ready. The source commits (it cannot know) and stays in postmigrate; the
// disk is free, so cont on the source brings the guest back intact.
func TestDestinationKilledAfterReady(t *testing.T) {
	bin := buildVMMD(t)
	ctx, cancel := testguest.Deadline(t, 60*time.Second)
	defer cancel()
	src, sq, dst, _, uri := filePair(t, ctx, bin)
	src.do(t, ctx, "disk write 0 0 100 flush", `^OK disk write 0 0 100 flushed=1$`)
	proxy := &phaseProxy{hook: func(fromSource bool, kind byte, _ int) proxyAction {
		if !fromSource && kind == frameReady {
			dst.p.cmd.Process.Signal(syscall.SIGKILL)
			<-dst.p.done
		}
		return actForward
	}}
	startPhaseProxy(t, uri, proxy)
	in := migrateTo(t, ctx, sq, proxy.uri)
	t.Logf("source after the destination died at ready: %s %q", in.Status, in.ErrorDesc)
	// Two outcomes are right, depending on whether the commit still left
	// this host: written (completed: the source cannot know the
	// destination died, so it stays in postmigrate and waits for an
	// operator), or not written (failed: nothing can run the guest
	// elsewhere, so the source resumes through the gate).
	switch in.Status {
	case "completed":
		sq.wantStatus(t, "postmigrate")
		sq.must(t, "cont", nil)
	case "failed":
		if !strings.Contains(in.ErrorDesc, "commit") {
			t.Errorf("failure not at commit: %q", in.ErrorDesc)
		}
	default:
		t.Fatalf("source: %s", in.Status)
	}
	sq.wantStatus(t, "running")
	src.do(t, ctx, "disk verify 0 0 100", `^VERIFY ok disk=0 records=100$`)
	noViolations(t, sq)
}

// TestDestinationKilledMidStream: the destination dies while RAM is being
// sent: the source fails the migration and keeps running with its disk.
func TestDestinationKilledMidStream(t *testing.T) {
	bin := buildVMMD(t)
	ctx, cancel := testguest.Deadline(t, 60*time.Second)
	defer cancel()
	src, sq, dst, _, uri := filePair(t, ctx, bin)
	src.do(t, ctx, "mem start 64", `^OK mem start 64$`)
	sq.must(t, "migrate-set-parameters", map[string]any{"max-bandwidth": 4 << 20})
	sq.must(t, "migrate", map[string]any{"uri": uri})
	for sq.migInfo(t).Status != "active" {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	dst.p.cmd.Process.Signal(syscall.SIGKILL)
	in := sq.waitMigration(t, ctx)
	if in.Status != "failed" {
		t.Fatalf("source: %s %q", in.Status, in.ErrorDesc)
	}
	t.Logf("error-desc: %s", in.ErrorDesc)
	sq.wantStatus(t, "running")
	if _, ok := sq.gate(t); !ok {
		t.Error("source disk inactive")
	}
	src.do(t, ctx, "mem check", `^MEMCHECK ok `)
	noViolations(t, sq)
}

// TestMigrateCancelEveryPhase cancels in setup (the destination never
// answers), in active (bandwidth-limited pre-copy) and in device (storage
// hung during inactivation): the status ends cancelled, and the source
// runs again once (and only once) its disk is active.
func TestMigrateCancelEveryPhase(t *testing.T) {
	bin := buildVMMD(t)
	ctx, cancel := testguest.Deadline(t, 120*time.Second)
	defer cancel()
	disk := newSharedDisk(t)
	src, sq := bootGuest(t, ctx, bin, 1, "--drive", disk.drive("disk0"))
	src.do(t, ctx, "mem start 64", `^OK mem start 64$`)
	src.do(t, ctx, "disk write 0 0 50 flush", `^OK disk write 0 0 50 flushed=1$`)

	waitFor := func(status string) {
		t.Helper()
		for {
			s := sq.migInfo(t).Status
			if s == status {
				return
			}
			if s == "failed" || s == "completed" {
				t.Fatalf("migration %s before it reached %s", s, status)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	cancelled := func(want string) {
		t.Helper()
		sq.must(t, "migrate_cancel", nil)
		if in := sq.waitMigration(t, ctx); in.Status != "cancelled" {
			t.Fatalf("after migrate_cancel: %s %q", in.Status, in.ErrorDesc)
		}
		sq.wantStatus(t, want)
	}

	// setup: something listens but never answers.
	mute := filepath.Join(nbdkittest.ShortDir(t), "mute.sock")
	ln, err := net.Listen("unix", mute)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	sq.must(t, "migrate", map[string]any{"uri": "unix:" + mute})
	waitFor("setup")
	cancelled("running")

	// active
	_, dq, uri := startDestination(t, bin, "--drive", disk.drive("disk0"))
	sq.must(t, "migrate-set-parameters", map[string]any{"max-bandwidth": 2 << 20})
	sq.must(t, "migrate", map[string]any{"uri": uri})
	waitFor("active")
	cancelled("running")
	dq.waitMigration(t, ctx)
	dq.wantStatus(t, "inmigrate")

	// device: inactivation hangs on a stopped storage server.
	dq.must(t, "migrate-incoming", map[string]any{"uri": uri})
	sq.must(t, "migrate-set-parameters", map[string]any{"max-bandwidth": 0, "x-inactivate-timeout": 20000})
	src.do(t, ctx, "mem stop", `^OK mem stop$`)
	disk.srv.Signal(t, syscall.SIGSTOP)
	sq.must(t, "migrate", map[string]any{"uri": uri})
	waitFor("device")
	time.Sleep(100 * time.Millisecond)
	cancelled("paused")
	if _, err := sq.run(t, "cont", nil); err == nil {
		t.Fatal("cont succeeded with the storage stopped")
	}
	disk.srv.Signal(t, syscall.SIGCONT)
	sq.must(t, "cont", nil)
	sq.wantStatus(t, "running")
	src.do(t, ctx, "disk verify 0 0 50", `^VERIFY ok disk=0 records=50$`)
	src.do(t, ctx, "mem check", `^MEMCHECK ok `)
	noViolations(t, sq, dq)
	_ = os.Remove(mute)
}
