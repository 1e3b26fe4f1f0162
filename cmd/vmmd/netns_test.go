package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmmd/vmmd/internal/kvmtest"
	"github.com/vmmd/vmmd/internal/nbdkittest"
	"github.com/vmmd/vmmd/internal/testguest"
)

// twoHosts is two network namespaces joined by a veth pair: migrations
// between them cross a real TCP/IP stack, and the link can be cut.
type twoHosts struct {
	nsA, nsB   string
	vethA      string
	addrA      string
	addrB      string
	unavailErr error
}

func newTwoHosts(t *testing.T) *twoHosts {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		if os.Getenv("VMMD_REQUIRE_KVM") == "1" {
			t.Fatalf("iproute2's ip is required: %v", err)
		}
		t.Skipf("no ip command: %v", err)
	}
	id := fmt.Sprintf("%d", os.Getpid()%100000)
	h := &twoHosts{nsA: "vmmdA" + id, nsB: "vmmdB" + id, vethA: "vA" + id, addrA: "10.231.7.1", addrB: "10.231.7.2"}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	t.Cleanup(func() {
		_ = exec.Command("ip", "netns", "del", h.nsA).Run()
		_ = exec.Command("ip", "netns", "del", h.nsB).Run()
	})
	run("netns", "add", h.nsA)
	run("netns", "add", h.nsB)
	run("link", "add", h.vethA, "netns", h.nsA, "type", "veth", "peer", "name", "vB"+id, "netns", h.nsB)
	run("-n", h.nsA, "addr", "add", h.addrA+"/24", "dev", h.vethA)
	run("-n", h.nsB, "addr", "add", h.addrB+"/24", "dev", "vB"+id)
	for _, ns := range []string{h.nsA, h.nsB} {
		run("-n", ns, "link", "set", "lo", "up")
	}
	run("-n", h.nsA, "link", "set", h.vethA, "up")
	run("-n", h.nsB, "link", "set", "vB"+id, "up")
	return h
}

// setLink brings host A's side of the link up or down.
func (h *twoHosts) setLink(t *testing.T, up bool) {
	t.Helper()
	state := map[bool]string{true: "up", false: "down"}[up]
	if out, err := exec.Command("ip", "-n", h.nsA, "link", "set", h.vethA, state).CombinedOutput(); err != nil {
		t.Fatalf("link %s: %v: %s", state, err, out)
	}
}

// startIn starts vmmd inside a namespace; QMP and storage are unix sockets,
// which namespaces do not separate.
func startIn(t *testing.T, ns, bin string, args ...string) (*guest, *qmpTestClient) {
	t.Helper()
	kvmtest.Require(t)
	sock := filepath.Join(nbdkittest.ShortDir(t), "qmp.sock")
	kernel := testguest.Path(t, "vmmd-testguest.elf")
	full := append([]string{"netns", "exec", ns, bin, "--kernel", kernel, "--serial", "stdio", "--log-format", "json",
		"--memory", "128M", "--qmp", "unix:" + sock}, args...)
	p := startProc(t, exec.Command("ip", full...))
	return &guest{p: p}, dialQMP(t, sock)
}

// TestMigrateAcrossNetworkNamespaces moves the guest over TCP between two
// network namespaces and back, then cuts the link in the middle of a
// migration: the source notices within x-handover-timeout, fails the
// migration and runs on with its disk.
func TestMigrateAcrossNetworkNamespaces(t *testing.T) {
	bin := buildVMMD(t)
	h := newTwoHosts(t)
	ctx, cancel := testguest.Deadline(t, 120*time.Second)
	defer cancel()
	img := newImage(t, 16<<20)
	drive := []string{"--drive", "file=" + img + ",id=disk0"}

	a, aq := startIn(t, h.nsA, bin, drive...)
	if _, _, err := a.p.con.Wait(ctx, 0, testguest.ReadyRE); err != nil {
		t.Fatal(err)
	}
	a.do(t, ctx, "disk write 0 0 100 flush", `^OK disk write 0 0 100 flushed=1$`)
	a.do(t, ctx, "mem start 32", `^OK mem start 32$`)
	a.do(t, ctx, "hb 20", `^OK hb 20$`)

	uriB := "tcp:" + h.addrB + ":4444"
	b, bq := startIn(t, h.nsB, bin, append(drive, "--incoming", uriB)...)
	aq.must(t, "migrate-set-parameters", map[string]any{"max-bandwidth": 0})
	if in := migrateTo(t, ctx, aq, uriB); in.Status != "completed" {
		t.Fatalf("A -> B over TCP: %s %q", in.Status, in.ErrorDesc)
	}
	bq.waitStatus(t, ctx, "running")
	heartbeatContinues(t, ctx, a, b)
	b.do(t, ctx, "mem check", `^MEMCHECK ok `)

	// Back to a fresh daemon on A.
	uriA := "tcp:" + h.addrA + ":4445"
	a2, a2q := startIn(t, h.nsA, bin, append(drive, "--incoming", uriA)...)
	bq.must(t, "migrate-set-parameters", map[string]any{"max-bandwidth": 0})
	if in := migrateTo(t, ctx, bq, uriA); in.Status != "completed" {
		t.Fatalf("B -> A over TCP: %s %q", in.Status, in.ErrorDesc)
	}
	a2q.waitStatus(t, ctx, "running")
	heartbeatContinues(t, ctx, b, a2)

	// Cut the link mid-migration: A2 -> B2, slowed down so that it is
	// still sending RAM when the link goes down.
	uriB2 := "tcp:" + h.addrB + ":4446"
	_, b2q := startIn(t, h.nsB, bin, append(drive, "--incoming", uriB2)...)
	a2q.must(t, "migrate-set-parameters", map[string]any{"max-bandwidth": 2 << 20, "x-handover-timeout": 2000})
	a2q.must(t, "migrate", map[string]any{"uri": uriB2})
	for a2q.migInfo(t).Status != "active" {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	h.setLink(t, false)
	t0 := time.Now()
	in := a2q.waitMigration(t, ctx)
	if in.Status != "failed" || !strings.Contains(in.ErrorDesc, "took no data") {
		t.Fatalf("after the link went down: %s %q", in.Status, in.ErrorDesc)
	}
	t.Logf("link down noticed after %v: %s", time.Since(t0).Round(time.Millisecond), in.ErrorDesc)
	a2q.wantStatus(t, "running")
	b2q.wantStatus(t, "inmigrate")
	a2.do(t, ctx, "disk verify 0 0 100", `^VERIFY ok disk=0 records=100$`)
	a2.do(t, ctx, "mem check", `^MEMCHECK ok `)
	h.setLink(t, true)
	noViolations(t, aq, bq, a2q, b2q)
	a2.powerOff(t)
	checkRecords(t, img, "0:100")
}
