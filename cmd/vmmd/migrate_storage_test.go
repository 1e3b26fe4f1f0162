package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmmd/vmmd/internal/nbdkittest"
	"github.com/vmmd/vmmd/internal/testguest"
)

// sharedDisk is an image file served by nbdkit's sh plugin, whose flush
// fails with EIO while a trigger file exists: shared storage that can fail
// exactly when the migration source flushes to hand its disk over.
type sharedDisk struct {
	img, trigger, sock string
	args               []string
	srv                *nbdkittest.Server
}

func newSharedDisk(t *testing.T) *sharedDisk {
	t.Helper()
	nbdkittest.Require(t)
	dir := nbdkittest.ShortDir(t)
	d := &sharedDisk{img: newImage(t, 16<<20), trigger: filepath.Join(dir, "fail-flush"), sock: filepath.Join(dir, "nbd.sock")}
	script := filepath.Join(dir, "disk.sh")
	body := fmt.Sprintf(`#!/bin/bash
img=%q; trigger=%q
case "$1" in
  get_size) stat -L -c %%s "$img" ;;
  can_write|can_flush) exit 0 ;;
  can_trim|can_zero|can_extents|is_rotational|can_multi_conn) exit 3 ;;
  thread_model) echo parallel ;;
  pread) dd if="$img" skip="$4" count="$3" iflag=skip_bytes,count_bytes status=none || exit 1 ;;
  pwrite) dd of="$img" seek="$4" oflag=seek_bytes conv=notrunc status=none || exit 1 ;;
  flush) if [ -e "$trigger" ]; then echo "EIO injected flush failure" >&2; exit 1; fi; sync "$img" ;;
  *) exit 2 ;;
esac
`, d.img, d.trigger)
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	d.args = []string{"sh", script}
	d.srv = nbdkittest.StartAt(t, d.sock, d.args...)
	return d
}

func (d *sharedDisk) drive(id string) string {
	return fmt.Sprintf("file=nbd+unix:///?socket=%s,id=%s,timeout=2s", d.sock, id)
}

func (d *sharedDisk) failFlush(t *testing.T, on bool) {
	t.Helper()
	if on {
		if err := os.WriteFile(d.trigger, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		return
	}
	if err := os.Remove(d.trigger); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
}

// kill makes the storage server vanish; restart brings a new one up on the
// same socket, so the NBD client must reconnect.
func (d *sharedDisk) kill(t *testing.T) {
	t.Helper()
	d.srv.Signal(t, syscall.SIGKILL)
	// nbdkittest reaps the process; wait until it is gone (a second Wait
	// on the same Cmd would block forever).
	pid := d.srv.Cmd.Process.Pid
	for deadline := time.Now().Add(5 * time.Second); syscall.Kill(pid, 0) == nil; {
		if time.Now().After(deadline) {
			t.Fatalf("nbdkit %d still exists 5 s after SIGKILL", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (d *sharedDisk) restart(t *testing.T) {
	t.Helper()
	_ = os.Remove(d.sock) // a killed server leaves its socket behind
	d.srv = nbdkittest.StartAt(t, d.sock, d.args...)
}

// gate reads x-vmmd-query-gate.
func (c *qmpTestClient) gate(t *testing.T) (violations uint64, allActive bool) {
	t.Helper()
	var g struct {
		Violations uint64 `json:"invariant-violations"`
		AllActive  bool   `json:"all-active"`
	}
	if err := json.Unmarshal(c.must(t, "x-vmmd-query-gate", nil), &g); err != nil {
		t.Fatal(err)
	}
	return g.Violations, g.AllActive
}

// noViolations fails the test if a daemon ever started a vCPU with a disk
// inactive.
func noViolations(t *testing.T, qs ...*qmpTestClient) {
	t.Helper()
	for i, q := range qs {
		if n, _ := q.gate(t); n != 0 {
			t.Errorf("daemon %d: %d vCPU starts with an inactive disk", i, n)
		}
	}
}

// migrateTo runs migrate and waits for its final status.
func migrateTo(t *testing.T, ctx context.Context, q *qmpTestClient, uri string) migInfo {
	t.Helper()
	q.must(t, "migrate", map[string]any{"uri": uri})
	return q.waitMigration(t, ctx)
}

// TestMigrationSurvivesStorageFailure is the seed scenario of the mission:
// source and destination share a disk on nbdkit, the guest has written and
// flushed records, and the storage fails exactly when the source hands the
// disk over: its flush fails, it hangs past the inactivation timeout, or
// the server is gone. The migration must fail with the real cause, the
// source must run again only with every disk active, no acknowledged write
// may be lost, and once storage is back a migration succeeds, and a third
// one brings the guest back to a new daemon on the source side.
func TestMigrationSurvivesStorageFailure(t *testing.T) {
	for _, fault := range []string{"flush-eio", "hang", "killed"} {
		t.Run(fault, func(t *testing.T) {
			bin := buildVMMD(t)
			ctx, cancel := testguest.Deadline(t, 120*time.Second)
			defer cancel()
			disk := newSharedDisk(t)
			src, sq := bootGuest(t, ctx, bin, 1, "--drive", disk.drive("disk0"))
			dst, dq, uri := startDestination(t, bin, "--drive", disk.drive("disk0"))
			src.do(t, ctx, "disk write 0 0 200 flush", `^OK disk write 0 0 200 flushed=1$`)
			src.do(t, ctx, "hb 20", `^OK hb 20$`)
			sq.must(t, "migrate-set-parameters", map[string]any{"x-inactivate-timeout": 1500})

			switch fault {
			case "flush-eio":
				disk.failFlush(t, true)
			case "hang":
				disk.srv.Signal(t, syscall.SIGSTOP)
			case "killed":
				disk.kill(t)
			}
			in := migrateTo(t, ctx, sq, uri)
			t.Logf("failed migration: %s: %s", in.Status, in.ErrorDesc)
			if in.Status != "failed" || !strings.Contains(in.ErrorDesc, "inactivate disks") {
				t.Fatalf("migration %s %q, want failed with the inactivation cause", in.Status, in.ErrorDesc)
			}
			switch fault {
			case "flush-eio":
				// The flush failed but the disk never let go: it is active
				// and the guest runs on at once.
				sq.wantStatus(t, "running")
				disk.failFlush(t, false)
			case "hang", "killed":
				// The disk cannot be taken back while storage is down: the
				// guest stays paused and cont says why.
				sq.wantStatus(t, "paused")
				if _, err := sq.run(t, "cont", nil); err == nil {
					t.Fatal("cont succeeded while the storage is down")
				} else {
					t.Logf("cont while storage is down: %v", err)
				}
				sq.wantStatus(t, "paused")
				if fault == "hang" {
					disk.srv.Signal(t, syscall.SIGCONT)
				} else {
					disk.restart(t)
				}
				sq.must(t, "cont", nil)
				sq.wantStatus(t, "running")
			}
			if _, ok := sq.gate(t); !ok {
				t.Fatal("source runs with a disk inactive")
			}
			dq.wantStatus(t, "inmigrate")
			src.heartbeat(t, ctx)
			src.do(t, ctx, "disk verify 0 0 200", `^VERIFY ok disk=0 records=200$`)
			src.do(t, ctx, "disk write 0 200 100 flush", `^OK disk write 0 200 100 flushed=1$`)

			// Storage is back: the destination listens again and the guest moves.
			dq.must(t, "migrate-incoming", map[string]any{"uri": uri})
			if in := migrateTo(t, ctx, sq, uri); in.Status != "completed" {
				t.Fatalf("second migration %s: %s", in.Status, in.ErrorDesc)
			}
			sq.wantStatus(t, "postmigrate")
			dq.waitStatus(t, ctx, "running")
			heartbeatContinues(t, ctx, src, dst)
			dst.do(t, ctx, "disk verify 0 0 300", `^VERIFY ok disk=0 records=300$`)
			dst.do(t, ctx, "disk write 0 300 100 flush", `^OK disk write 0 300 100 flushed=1$`)

			// Ping-pong: back to a new daemon on the source side.
			back, bq, uri2 := startDestination(t, bin, "--drive", disk.drive("disk0"))
			if in := migrateTo(t, ctx, dq, uri2); in.Status != "completed" {
				t.Fatalf("third migration %s: %s", in.Status, in.ErrorDesc)
			}
			bq.waitStatus(t, ctx, "running")
			back.do(t, ctx, "disk verify 0 0 400", `^VERIFY ok disk=0 records=400$`)
			noViolations(t, sq, dq, bq)
			back.powerOff(t)
			checkRecords(t, disk.img, "0:400")
		})
	}
}
