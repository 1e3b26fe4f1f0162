package main

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmmd/vmmd/internal/testguest"
)

// maxRSSGrowthGuest bounds how much vmmd's RSS may grow over a series of
// guest attacks, measured after a warm-up that made both disks' buffers
// resident.
const maxRSSGrowthGuest = 8 << 20

// evilAttack is one `evil` command of the test guest (test/guest/evil.c)
// and the warning vmmd must log about it.
type evilAttack struct {
	variant string
	log     string
}

// TestHostileGuest has the test guest break the virtio rules on disk 0
// (descriptors outside RAM, looping and overlong chains, a nonsense avail
// index, a notification flood) and checks, for every attack: vmmd stays up
// and answers query-status within a second throughout, the device sets
// DEVICE_NEEDS_RESET (or, for the flood, keeps working), vmmd logs one
// warning naming the fault, the guest still answers ping, the second disk
// still writes and verifies records, a driver reset brings disk 0 back,
// and vmmd's RSS stays flat.
func TestHostileGuest(t *testing.T) {
	bin := buildVMMD(t)
	const chain = `virtio-blk device error: virtio device 2 needs reset: queue 0: `
	kinds := []struct {
		kind    string
		attacks []evilAttack
	}{
		{"oob", []evilAttack{
			{"high", `chain 48: descriptor 49 buffer 0x10000000000\+0x200: guest-physical range outside guest RAM`},
			{"edge", `chain 48: descriptor 49 buffer 0x7ffff00\+0x200: guest-physical range outside guest RAM`},
			{"hole", `chain 48: descriptor 49 buffer 0xd0000000\+0x200: guest-physical range outside guest RAM`},
			{"wrap", `chain 48: descriptor 49: malformed virtqueue: buffer at 0xffffffffffffff00\+0x200 wraps around the address space`},
		}},
		{"loop", []evilAttack{
			{"self", `malformed virtqueue: chain 48 is longer than its table of 64 descriptors`},
			{"pair", `malformed virtqueue: chain 48 is longer than its table of 64 descriptors`},
		}},
		{"long", []evilAttack{
			{"ring", `malformed virtqueue: chain 0 is longer than its table of 64 descriptors`},
			{"beyond", `malformed virtqueue: chain 48: descriptor index 69 is outside its table of 64`},
		}},
		{"idx", []evilAttack{
			{"jump", `malformed virtqueue: available index moved to \d+ with \d+ popped and \d+ used in a queue of 64`},
			{"back", `malformed virtqueue: available index moved to \d+ with \d+ popped and \d+ used in a queue of 64`},
		}},
	}
	for _, k := range kinds {
		t.Run(k.kind, func(t *testing.T) {
			ctx, cancel := testguest.Deadline(t, 60*time.Second)
			defer cancel()
			g, q := bootHostileGuest(t, ctx, bin)
			pid := g.p.cmd.Process.Pid
			rss0 := vmRSS(t, pid)
			// Records of disk 1 written during the attacks, after the
			// warm-up's.
			next := 2048
			for _, a := range k.attacks {
				cmd := fmt.Sprintf("evil %s 0 %s", k.kind, a.variant)
				off := len(g.p.stderr.String())
				probe := startProbe(t, q.sock, 20*time.Millisecond)
				line := g.do(t, ctx, cmd, `^EVIL `+k.kind+` disk=0 variant=`+a.variant+` `)
				n, worst := probe.stop(t, cmd)
				m := regexp.MustCompile(`result=(\S+) .* dev_status=0x([0-9a-f]+) .* usec=(\d+)$`).FindStringSubmatch(line)
				if m == nil || m[1] != "needs_reset" {
					t.Fatalf("%s: %q, want result=needs_reset", cmd, line)
				}
				if st, _ := strconv.ParseUint(m[2], 16, 32); st&0x40 == 0 {
					t.Errorf("%s: device status 0x%s lacks DEVICE_NEEDS_RESET", cmd, m[2])
				}
				e := waitLog(t, ctx, g.p, off, regexp.MustCompile(regexp.QuoteMeta(chain)+`.*`+a.log))
				g.do(t, ctx, "ping", `^PONG$`)
				g.do(t, ctx, fmt.Sprintf("disk write 1 %d 256 flush", next), fmt.Sprintf(`^OK disk write 1 %d 256 flushed=1$`, next))
				g.do(t, ctx, fmt.Sprintf("disk verify 1 %d 256", next), `^VERIFY ok disk=1 records=256$`)
				next += 256
				g.do(t, ctx, "disk reset 0", `^OK disk reset 0 id=disk0$`)
				if c := countLog(g.p, off, regexp.MustCompile(`needs reset`)); c != 1 {
					t.Errorf("%s: %d needs-reset warnings, want exactly 1", cmd, c)
				}
				t.Logf("%s: detected after %s µs; %d QMP probes during it, slowest %v; log: %s", cmd, m[3], n, worst, e.Error)
			}
			// The attacked disk works again after the driver's reset.
			g.do(t, ctx, "disk write 0 0 2048 flush", `^OK disk write 0 0 2048 flushed=1$`)
			g.do(t, ctx, "disk verify 0 0 2048", `^VERIFY ok disk=0 records=2048$`)
			g.do(t, ctx, "disk verify 1 0 "+strconv.Itoa(next), `^VERIFY ok disk=1 records=`+strconv.Itoa(next)+`$`)
			rss1 := vmRSS(t, pid)
			t.Logf("vmmd RSS %s before the %s attacks, %s after (%+d KiB)", inMiB(rss0), k.kind, inMiB(rss1), (rss1-rss0)>>10)
			if rss1-rss0 > maxRSSGrowthGuest {
				t.Errorf("vmmd RSS grew by %s over the %s attacks (limit %s)", inMiB(rss1-rss0), k.kind, inMiB(maxRSSGrowthGuest))
			}
			stillServing(t, ctx, g, q.sock)
		})
	}
	t.Run("flood", func(t *testing.T) {
		ctx, cancel := testguest.Deadline(t, 60*time.Second)
		defer cancel()
		g, q := bootHostileGuest(t, ctx, bin)
		pid := g.p.cmd.Process.Pid
		rss0 := vmRSS(t, pid)
		for _, f := range []struct {
			n     int
			queue int
			path  string
		}{
			{100000, 0, "ioeventfd"},        // the queue's own index: KVM signals vmmd's eventfd
			{20000, 7, "MMIO exit to vmmd"}, // no such queue: every write exits to a vCPU goroutine
		} {
			off := len(g.p.stderr.String())
			cpu0 := cpuTicks(t, pid)
			probe := startProbe(t, q.sock, 20*time.Millisecond)
			cmd := fmt.Sprintf("evil flood 0 %d %d", f.n, f.queue)
			line := g.do(t, ctx, cmd, fmt.Sprintf(`^EVIL flood disk=0 queue=%d notifies=%d `, f.queue, f.n))
			n, worst := probe.stop(t, cmd)
			cpu := cpuTicks(t, pid) - cpu0
			m := regexp.MustCompile(`usec=(\d+) ns_per_notify=(\d+) result=(\S+) status=(\S+)`).FindStringSubmatch(line)
			if m == nil || m[3] != "ok" || m[4] != "ok" {
				t.Fatalf("%s: %q, want result=ok status=ok (the queue still answers GET_ID)", cmd, line)
			}
			// Notifications without buffers are legal: no log line each.
			if grown := len(g.p.stderr.String()) - off; grown > 4096 {
				t.Errorf("%s: vmmd logged %d bytes during the flood:\n%s", cmd, grown, lastBytes(g.p.stderr.String()[off:], 2000))
			}
			g.do(t, ctx, "ping", `^PONG$`)
			t.Logf("%s (%s): %s µs, %s ns per notify; vmmd used %d ms of CPU; %d QMP probes during it, slowest %v",
				cmd, f.path, m[1], m[2], cpu*10, n, worst)
		}
		g.do(t, ctx, "disk write 1 2048 512 flush", `^OK disk write 1 2048 512 flushed=1$`)
		g.do(t, ctx, "disk verify 1 0 2560", `^VERIFY ok disk=1 records=2560$`)
		g.do(t, ctx, "disk write 0 2048 512 flush", `^OK disk write 0 2048 512 flushed=1$`)
		g.do(t, ctx, "disk verify 0 0 2560", `^VERIFY ok disk=0 records=2560$`)
		rss1 := vmRSS(t, pid)
		t.Logf("vmmd RSS %s before the floods, %s after (%+d KiB)", inMiB(rss0), inMiB(rss1), (rss1-rss0)>>10)
		if rss1-rss0 > maxRSSGrowthGuest {
			t.Errorf("vmmd RSS grew by %s over the floods (limit %s)", inMiB(rss1-rss0), inMiB(maxRSSGrowthGuest))
		}
		stillServing(t, ctx, g, q.sock)
	})
}

// bootHostileGuest boots the test guest on two fresh 64 MiB disks, gives
// evil commands 5 s to see the device react, and writes and verifies 2048
// records (16 requests in flight) on each disk, so that every data buffer
// is resident before RSS is first measured.
func bootHostileGuest(t *testing.T, ctx context.Context, bin string) (*guest, *qmpTestClient) {
	t.Helper()
	d0, d1 := newImage(t, 64<<20), newImage(t, 64<<20)
	g, q := bootGuest(t, ctx, bin, 2, "--drive", "file="+d0+",id=disk0", "--drive", "file="+d1+",id=disk1")
	g.do(t, ctx, "disk timeout 5000", `^OK disk timeout 5000$`)
	for _, d := range []string{"0", "1"} {
		g.do(t, ctx, "disk write "+d+" 0 2048 flush", `^OK disk write `+d+` 0 2048 flushed=1$`)
		g.do(t, ctx, "disk verify "+d+" 0 2048", `^VERIFY ok disk=`+d+` records=2048$`)
	}
	return g, q
}

// cpuTicks returns the user plus system CPU time of pid in clock ticks
// (1/100 s on Linux), from /proc/PID/stat.
func cpuTicks(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("read stat of vmmd: %v", err)
	}
	// The command name may hold spaces; fields start after its ')'.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		t.Fatalf("short /proc/%d/stat: %q", pid, s)
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	k, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("/proc/%d/stat utime/stime: %q", pid, s)
	}
	return u + k
}
