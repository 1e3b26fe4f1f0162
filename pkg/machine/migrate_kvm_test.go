package machine

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmmd/vmmd/internal/testguest"
	"github.com/vmmd/vmmd/pkg/block"
	"github.com/vmmd/vmmd/pkg/memory"
)

// testDrive opens a drive on path; inactive as a migration destination does.
func testDrive(t *testing.T, path string, inactive bool) *block.Drive {
	t.Helper()
	spec, err := block.ParseDriveSpec("file=" + path + ",id=disk0,format=raw")
	if err != nil {
		t.Fatal(err)
	}
	d, err := block.OpenDrive(context.Background(), spec, block.OpenOptions{Inactive: inactive})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close(context.Background()) })
	return d
}

// copyRAM copies every page of src's RAM into dst's.
func copyRAM(t *testing.T, src, dst *Machine) {
	t.Helper()
	for _, r := range src.RAM().Regions() {
		b, err := src.RAM().Slice(r.GPA, r.Size)
		if err != nil {
			t.Fatal(err)
		}
		if err := dst.RAM().Write(r.GPA, b); err != nil {
			t.Fatal(err)
		}
	}
}

// copyDirty copies the pages SyncDirty reports and returns how many.
func copyDirty(t *testing.T, src, dst *Machine) int {
	t.Helper()
	n := 0
	err := src.SyncDirty(func(r memory.Region, bm []uint64) error {
		for w, word := range bm {
			for word != 0 {
				b := bits.TrailingZeros64(word)
				word &^= 1 << b
				gpa := r.GPA + uint64(w*64+b)*memory.PageSize
				p, err := src.RAM().Slice(gpa, memory.PageSize)
				if err != nil {
					return err
				}
				if err := dst.RAM().Write(gpa, p); err != nil {
					return err
				}
				n++
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// settle waits until con has had no new byte for 300 ms (at most 10 s).
func settle(t *testing.T, con *testguest.Console) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := con.Settle(ctx, 300*time.Millisecond); err != nil {
		t.Fatalf("the stopped source's console: %v", err)
	}
}

// TestMigrateInProcess migrates a running test guest (heartbeat, the memory
// workload, a disk) into a second machine in the same process, as the
// engine does: dirty logging, a full RAM pass and dirty passes while the
// guest runs, stop, final pass, device state through JSON, load, resume.
func TestMigrateInProcess(t *testing.T) {
	for _, cpus := range []int{1, 2} {
		t.Run(fmt.Sprintf("cpus=%d", cpus), func(t *testing.T) { testMigrate(t, cpus) })
	}
}

func testMigrate(t *testing.T, cpus int) {
	ctx := context.Background()
	img := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(img, make([]byte, 16<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := Config{CPUs: cpus, Memory: 256 << 20}
	cfg.Drives = []*block.Drive{testDrive(t, img, false)}
	src := startConfig(t, "vmmd-testguest.elf", cfg)
	cfg.Drives, cfg.Incoming = []*block.Drive{testDrive(t, img, true)}, true
	dst := startConfig(t, "vmmd-testguest.elf", cfg)

	if s := dst.m.State(); s != StateInMigrate {
		t.Fatalf("incoming VM state = %s, want inmigrate", s)
	}
	if err := dst.m.Resume(ctx, CauseCont); !errors.Is(err, ErrWaitingForIncoming) {
		t.Fatalf("Resume before LoadState = %v, want %v", err, ErrWaitingForIncoming)
	}
	if err := src.m.Resume(ctx, CauseStart); err != nil {
		t.Fatal(err)
	}
	m, pos := src.wait(t, 0, testguest.ReadyRE.String(), 30*time.Second)
	if m[2] != strconv.Itoa(cpus) {
		t.Fatalf("source: %q, want cpus=%d", m[0], cpus)
	}
	src.send(t, "disk write 0 0 64 flush")
	_, pos = src.wait(t, pos, `^OK disk write 0 0 64 flushed=1$`, 20*time.Second)
	src.send(t, "mem start 64")
	_, pos = src.wait(t, pos, `^OK mem start 64$`, 20*time.Second)
	src.send(t, "hb 50")
	_, _ = src.wait(t, pos, `^HB \d+$`, 10*time.Second)
	if _, err := src.m.SaveState(ctx, StateRunning); err == nil {
		t.Fatal("SaveState on a running VM succeeded")
	}

	if err := src.m.StartDirtyLog(); err != nil {
		t.Fatal(err)
	}
	copyRAM(t, src.m, dst.m)
	for round := range 3 {
		time.Sleep(100 * time.Millisecond)
		t.Logf("dirty pass %d while running: %d pages", round, copyDirty(t, src.m, dst.m))
	}
	// Give the workload time to dirty pages again, so that the final pass
	// (with the guest stopped) matters and the memory check can catch a
	// page it misses.
	time.Sleep(100 * time.Millisecond)
	if err := src.m.Pause(ctx, StateFinishMigrate); err != nil {
		t.Fatal(err)
	}
	if s := src.m.State(); s != StateFinishMigrate {
		t.Fatalf("source state = %s, want finish-migrate", s)
	}
	if err := src.m.EnterState(StateRunning); err == nil {
		t.Error("EnterState(running) succeeded")
	}
	if err := src.m.Gate().InactivateAll(ctx); err != nil {
		t.Fatal(err)
	}
	final := copyDirty(t, src.m, dst.m)
	t.Logf("final pass: %d pages", final)
	if final == 0 {
		t.Error("the final dirty pass found no page: the running guest wrote none since the last pass?")
	}
	st, err := src.m.SaveState(ctx, StateRunning)
	if err != nil {
		t.Fatal(err)
	}
	data, err := st.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("device state: %d bytes, %d MSRs on vCPU 0, xsave=%v xcrs=%v", len(data),
		len(st.VCPUs[0].MSRs), len(st.VCPUs[0].XSave) > 0, st.VCPUs[0].XCRs != nil)
	decode := func() *State {
		var s State
		if err := s.UnmarshalBinary(data); err != nil {
			t.Fatal(err)
		}
		return &s
	}
	rejectHostile(t, dst.m, decode)

	// The stopped source prints nothing new, but what it printed before the
	// stop may still be on its way to the test's console reader (a fixed
	// 200 ms was too short on a loaded CI machine): wait until it is quiet.
	settle(t, src.con)
	last := testguest.LastHeartbeat(src.con.Lines())
	if err := dst.m.LoadState(ctx, decode()); err != nil {
		t.Fatal(err)
	}
	if s := dst.m.State(); s != StateInMigrate {
		t.Errorf("state after LoadState = %s, want inmigrate", s)
	}
	if err := src.m.EnterState(StatePostMigrate); err != nil {
		t.Fatal(err)
	}
	if err := src.m.StopDirtyLog(); err != nil {
		t.Fatal(err)
	}
	if err := dst.m.Resume(ctx, CauseIncomingDone); err != nil {
		t.Fatal(err)
	}
	_, pos = dst.wait(t, 0, `^HB (\d+)$`, 10*time.Second)
	// The guest may have stopped in the middle of a line: the source
	// printed "HB 1", the destination prints "5".
	if n := testguest.FirstHeartbeat(testguest.Continued(src.con, dst.con)); n != last+1 {
		t.Errorf("first heartbeat on the destination = %d, want %d (source's last + 1); source's unfinished line %q, destination's first lines %q",
			n, last+1, src.con.Partial(), dst.con.Lines()[:min(3, len(dst.con.Lines()))])
	}
	if lines := dst.con.Lines(); len(lines) > 0 && strings.HasPrefix(lines[0], "GUEST-READY") {
		t.Errorf("destination rebooted: %q", lines[0])
	}
	dst.send(t, "mem check")
	mc, pos := dst.wait(t, pos, `^MEMCHECK (\S+)`, 10*time.Second)
	if mc[1] != "ok" {
		t.Errorf("memory check on the destination: %q", mc[0])
	}
	dst.send(t, "mem status")
	ms1, pos := dst.wait(t, pos, `^MEM (\S+) passes=(\d+)`, 10*time.Second)
	time.Sleep(300 * time.Millisecond)
	dst.send(t, "mem status")
	ms2, pos := dst.wait(t, pos, `^MEM (\S+) passes=(\d+)`, 10*time.Second)
	if p1, _ := strconv.Atoi(ms1[2]); ms2[1] != "running" || mustAtoi(ms2[2]) <= p1 {
		t.Errorf("memory workload does not continue: %q then %q", ms1[0], ms2[0])
	}
	dst.send(t, "disk verify 0 0 64")
	v, pos := dst.wait(t, pos, `^(VERIFY|DISK-ERROR) .*`, 20*time.Second)
	if !strings.HasPrefix(v[0], "VERIFY ok") {
		t.Errorf("disk on the destination: %q", v[0])
	}
	dst.send(t, "cpus")
	c, pos := dst.wait(t, pos, `^CPUS online=(\d+)`, 10*time.Second)
	if c[1] != strconv.Itoa(cpus) {
		t.Errorf("destination: %q, want online=%d", c[0], cpus)
	}
	if cpus > 1 {
		// The APs' LAPICs and MP state came across: INIT/SIPI brings them
		// up again after a reset of the destination.
		dst.send(t, "reset")
		r, _ := dst.wait(t, pos, testguest.ReadyRE.String(), 30*time.Second)
		if r[2] != strconv.Itoa(cpus) {
			t.Errorf("destination after reset: %q, want cpus=%d", r[0], cpus)
		}
	}
	// The source is done: stopped for good, its disk given away.
	if s := src.m.State(); s != StatePostMigrate {
		t.Errorf("source state = %s, want postmigrate", s)
	}
	mark := src.con.Mark()
	time.Sleep(200 * time.Millisecond)
	if l := src.con.Lines()[mark:]; len(l) != 0 {
		t.Errorf("source printed after the handover: %q", l)
	}
}

func mustAtoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// rejectHostile offers dst broken variants of a good state: each must be
// refused with a precise error, and leave dst able to load the good one.
func rejectHostile(t *testing.T, dst *Machine, good func() *State) {
	t.Helper()
	tests := []struct {
		name, want string
		mutate     func(s *State)
	}{
		{"version", "version 9", func(s *State) { s.Version = 9 }},
		{"fewer vCPUs", "vCPU states for a config", func(s *State) { s.VCPUs = s.VCPUs[:len(s.VCPUs)-1] }},
		{"more vCPUs", "this VM has", func(s *State) {
			s.VCPUs = append(s.VCPUs, s.VCPUs[0])
			s.VCPUs[len(s.VCPUs)-1].ID = len(s.VCPUs) - 1
			s.Config.CPUs++
		}},
		{"truncated LAPIC", "LAPIC state is 100 bytes", func(s *State) { s.VCPUs[0].LAPIC = s.VCPUs[0].LAPIC[:100] }},
		{"absurd MSR count", "MSRs, at most", func(s *State) { s.VCPUs[0].MSRs = make([]MSR, 100000) }},
		{"unknown MSR", "MSR 0xdeadbeef", func(s *State) { s.VCPUs[0].MSRs = append(s.VCPUs[0].MSRs, MSR{Index: 0xdeadbeef}) }},
		{"CPUID", "CPUID leaf 0x1.0", func(s *State) {
			for i := range s.VCPUs[0].CPUID {
				if s.VCPUs[0].CPUID[i].Function == 1 {
					s.VCPUs[0].CPUID[i].ECX ^= 1 << 30
				}
			}
		}},
		{"memory", "memory: source has 512 MiB", func(s *State) { s.Config.Memory = 512 << 20 }},
		{"drive id", `drive 0: source has id "data"`, func(s *State) { s.Config.Drives[0].ID = "data" }},
		{"irqchip", "IOAPIC state is 3 bytes", func(s *State) { s.IOAPIC = []byte{1, 2, 3} }},
		{"virtio ring outside RAM", "queue 0: descriptor table", func(s *State) {
			s.Disks[0].Transport.Queues[0].DescAddr = 1 << 40
		}},
		{"virtio queue count", "queues saved", func(s *State) { s.Disks[0].Transport.Queues = nil }},
		{"pending request", "pending request", func(s *State) { s.Disks[0].Pending = []uint16{60000} }},
		{"serial", "receive FIFO", func(s *State) { s.Serial.RxFIFO = make([]byte, 1<<20) }},
		{"events", "exception vector", func(s *State) { s.VCPUs[0].Events.Exception.Nr = 200 }},
		{"run state", "unknown run state", func(s *State) { s.RunState = "dancing" }},
	}
	for _, tc := range tests {
		s := good()
		tc.mutate(s)
		err := dst.LoadState(context.Background(), s)
		if err == nil {
			t.Errorf("%s: LoadState accepted a broken state", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: LoadState = %v, want it to mention %q", tc.name, err, tc.want)
		}
	}
	if err := dst.LoadState(context.Background(), nil); err == nil {
		t.Error("LoadState(nil) succeeded")
	}
}

// dirtySet collects the pages SyncDirty reports, by guest-physical address.
func dirtySet(t *testing.T, m *Machine, into map[uint64]bool) {
	t.Helper()
	err := m.SyncDirty(func(r memory.Region, bm []uint64) error {
		for w, word := range bm {
			for word != 0 {
				b := bits.TrailingZeros64(word)
				word &^= 1 << b
				into[r.GPA+uint64(w*64+b)*memory.PageSize] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func countIn(set map[uint64]bool, lo, hi uint64) int {
	n := 0
	for gpa := range set {
		if gpa >= lo && gpa < hi {
			n++
		}
	}
	return n
}

// TestDirtyLog checks that SyncDirty reports exactly the pages the running
// guest writes (KVM's log, at 4 KiB granularity, on this host's KVM) and
// the pages device emulation writes (the device bitmap, OR-ed in).
func TestDirtyLog(t *testing.T) {
	img := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(img, make([]byte, 16<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	g := startConfig(t, "vmmd-testguest.elf", Config{CPUs: 1, Memory: 128 << 20,
		Drives: []*block.Drive{testDrive(t, img, false)}})
	ctx := context.Background()
	if err := g.m.Resume(ctx, CauseStart); err != nil {
		t.Fatal(err)
	}
	_, pos := g.wait(t, 0, testguest.ReadyRE.String(), 30*time.Second)
	g.send(t, "disk write 0 0 16 flush")
	_, pos = g.wait(t, pos, `^OK disk write 0 0 16 flushed=1$`, 20*time.Second)
	if err := g.m.SyncDirty(func(memory.Region, []uint64) error { return nil }); err == nil {
		t.Fatal("SyncDirty before StartDirtyLog succeeded")
	}
	const devPage = 40 << 20 // nothing in the guest touches it
	if err := g.m.RAM().MarkDirty(devPage+memory.PageSize, 1); err != nil {
		t.Fatal(err)
	}
	if err := g.m.StartDirtyLog(); err != nil {
		t.Fatal(err)
	}

	// Guest writes: `dirty` writes one page after another of [16, 32) MiB.
	const lo, hi = 16 << 20, 32 << 20
	set := map[uint64]bool{}
	g.send(t, "dirty 2000 16")
	_, pos = g.wait(t, pos, `^OK dirty 2000 16$`, 10*time.Second)
	time.Sleep(300 * time.Millisecond)
	dirtySet(t, g.m, set)
	g.send(t, "dirty 0")
	_, pos = g.wait(t, pos, `^OK dirty 0$`, 10*time.Second)
	g.send(t, "dirty status")
	st, pos := g.wait(t, pos, `^DIRTY stopped .*written=(\d+)`, 10*time.Second)
	dirtySet(t, g.m, set)
	written := min(mustAtoi(st[1]), (hi-lo)/memory.PageSize)
	t.Logf("guest wrote %d workload pages; the dirty log has %d", written, countIn(set, lo, hi))
	if got := countIn(set, lo, hi); got != written || written < 100 {
		t.Errorf("dirty log: %d pages of the workload region, the guest wrote %d", got, written)
	}
	if set[devPage+memory.PageSize] {
		t.Error("a page marked before StartDirtyLog was reported")
	}

	// Idle guest: nothing in the workload region.
	clear(set)
	time.Sleep(200 * time.Millisecond)
	dirtySet(t, g.m, set)
	if n := countIn(set, lo, hi); n != 0 {
		t.Errorf("%d workload pages dirty with the workload stopped", n)
	}

	// Device writes: marked pages come out of SyncDirty, once.
	if err := g.m.RAM().MarkDirty(devPage, 2*memory.PageSize+1); err != nil {
		t.Fatal(err)
	}
	clear(set)
	dirtySet(t, g.m, set)
	if !set[devPage] || !set[devPage+memory.PageSize] || !set[devPage+2*memory.PageSize] || set[devPage+3*memory.PageSize] {
		t.Errorf("device-dirty pages [%#x, +3 pages) not reported exactly: %v %v %v %v", uint64(devPage),
			set[devPage], set[devPage+memory.PageSize], set[devPage+2*memory.PageSize], set[devPage+3*memory.PageSize])
	}
	clear(set)
	dirtySet(t, g.m, set)
	if set[devPage] {
		t.Error("device-dirty page reported twice")
	}

	// The virtio-blk device marks what it writes: read data lands in the
	// guest's buffer for disk 0 at 5 MiB; read the device bitmap alone.
	g.send(t, "disk verify 0 0 16")
	v, _ := g.wait(t, pos, `^(VERIFY|DISK-ERROR) .*`, 20*time.Second)
	if !strings.HasPrefix(v[0], "VERIFY ok") {
		t.Fatalf("disk verify: %q", v[0])
	}
	dev := make([]uint64, g.m.RAM().DirtyWords(0))
	if err := g.m.RAM().TakeDirty(0, dev); err != nil {
		t.Fatal(err)
	}
	const buf = 5 << 20 / memory.PageSize
	if dev[buf/64]&(1<<(buf%64)) == 0 || dev[(buf+1)/64]&(1<<((buf+1)%64)) == 0 {
		t.Error("virtio-blk did not mark the pages of the read data (5 MiB) dirty")
	}

	if err := g.m.StopDirtyLog(); err != nil {
		t.Fatal(err)
	}
	if err := g.m.StopDirtyLog(); err != nil {
		t.Errorf("second StopDirtyLog: %v", err)
	}
	if err := g.m.SyncDirty(func(memory.Region, []uint64) error { return nil }); err == nil {
		t.Error("SyncDirty after StopDirtyLog succeeded")
	}
}

// TestEnterState walks the stopped-state moves a migration makes, on a
// destination that has no state yet and on a source that ran.
func TestEnterState(t *testing.T) {
	ctx := context.Background()
	dst := startConfig(t, "vmmd-testguest.elf", Config{CPUs: 1, Memory: 128 << 20, Incoming: true})
	var te *TransitionError
	for _, tc := range []struct {
		to      RunState
		wantErr bool
	}{
		{StateRunning, true}, {"bogus", true}, {StatePaused, false}, {StateFinishMigrate, false},
		{StatePostMigrate, false}, {StatePaused, true},
	} {
		err := dst.m.EnterState(tc.to)
		if (err != nil) != tc.wantErr {
			t.Errorf("EnterState(%s) = %v, want error %v", tc.to, err, tc.wantErr)
		}
	}
	if err := dst.m.EnterState(StatePaused); !errors.As(err, &te) {
		t.Errorf("postmigrate -> paused: %v, want a TransitionError", err)
	}
	// Leaving inmigrate does not make an unloaded destination runnable.
	for _, c := range []Cause{CauseCont, CauseIncomingDone} {
		if err := dst.m.Resume(ctx, c); !errors.Is(err, ErrWaitingForIncoming) {
			t.Errorf("Resume(%s) without LoadState = %v, want %v", c, err, ErrWaitingForIncoming)
		}
	}
	if _, err := dst.m.SaveState(ctx, StatePaused); err == nil {
		t.Error("SaveState of an unloaded destination succeeded")
	}
	if len(dst.con.Lines()) != 0 {
		t.Errorf("the unloaded destination ran: %q", dst.con.Lines())
	}

	src := startGuest(t, 1, 128<<20, nil)
	if err := src.m.Resume(ctx, CauseStart); err != nil {
		t.Fatal(err)
	}
	src.wait(t, 0, testguest.ReadyRE.String(), 30*time.Second)
	if err := src.m.EnterState(StatePaused); err == nil {
		t.Error("EnterState while running succeeded")
	}
	if err := src.m.Pause(ctx, StatePaused); err != nil {
		t.Fatal(err)
	}
	// Migrating a paused VM: paused -> finish-migrate; cont is refused
	// there; a failed migration goes back to paused and cont works again.
	if err := src.m.EnterState(StateFinishMigrate); err != nil {
		t.Fatal(err)
	}
	if err := src.m.Resume(ctx, CauseCont); !errors.Is(err, ErrMigrationNotFinal) {
		t.Errorf("cont in finish-migrate = %v, want %v", err, ErrMigrationNotFinal)
	}
	if _, err := src.m.SaveState(ctx, StatePaused); err != nil {
		t.Errorf("SaveState in finish-migrate: %v", err)
	}
	if err := src.m.EnterState(StatePaused); err != nil {
		t.Fatal(err)
	}
	if err := src.m.Resume(ctx, CauseCont); err != nil {
		t.Errorf("cont after the failed migration: %v", err)
	}
	if s := src.m.State(); s != StateRunning {
		t.Errorf("state = %s, want running", s)
	}
}

// An incoming VM's RAM is all zero until the stream writes it, also after
// a system_reset while it waits: the destination skips the zero pages it
// has not written (migrate.VM).
func TestIncomingRAMStartsZero(t *testing.T) {
	ctx := context.Background()
	dst := startConfig(t, "vmmd-testguest.elf", Config{CPUs: 1, Memory: 128 << 20, Incoming: true})
	allZero := func(when string) {
		t.Helper()
		for _, r := range dst.m.RAM().Regions() {
			b, err := dst.m.RAM().Slice(r.GPA, r.Size)
			if err != nil {
				t.Fatal(err)
			}
			for off := 0; off < len(b); off += 8 {
				if binary.LittleEndian.Uint64(b[off:]) != 0 {
					t.Fatalf("%s: guest RAM at %#x is not zero", when, r.GPA+uint64(off))
				}
			}
		}
	}
	allZero("after creation")
	if err := dst.m.Reset(ctx, "test"); err != nil {
		t.Fatal(err)
	}
	allZero("after a reset while waiting")
	// A VM that is not incoming has its image in RAM: the check above can fail.
	src := startConfig(t, "vmmd-testguest.elf", Config{CPUs: 1, Memory: 128 << 20})
	nonzero := false
	for _, r := range src.m.RAM().Regions() {
		b, _ := src.m.RAM().Slice(r.GPA, r.Size)
		for off := 0; off < len(b) && !nonzero; off += 8 {
			nonzero = binary.LittleEndian.Uint64(b[off:]) != 0
		}
	}
	if !nonzero {
		t.Error("a VM that is not incoming has all-zero RAM: the image was not loaded?")
	}
}
