package machine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/vmmd/vmmd/internal/kvmtest"
	"github.com/vmmd/vmmd/internal/testguest"
	"github.com/vmmd/vmmd/pkg/block"
	"github.com/vmmd/vmmd/pkg/kvm"
)

// guestVM is a machine running the test guest, with its console and events.
type guestVM struct {
	m       *Machine
	con     *testguest.Console
	mu      sync.Mutex
	events  []Event
	eventCh chan Event
}

func (g *guestVM) eventNames() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	for _, e := range g.events {
		out = append(out, e.Name)
	}
	return out
}

func (g *guestVM) send(t *testing.T, line string) {
	t.Helper()
	p := []byte(line + "\n")
	deadline := time.Now().Add(5 * time.Second)
	for len(p) > 0 {
		n := g.m.SerialInput(p)
		p = p[n:]
		if len(p) > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("guest does not read its serial input (sending %q)", line)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// wait waits for a console line matching re after position from.
func (g *guestVM) wait(t *testing.T, from int, re string, d time.Duration) ([]string, int) {
	t.Helper()
	ctx, cancel := testguest.Deadline(t, d)
	defer cancel()
	m, next, err := g.con.Wait(ctx, from, regexp.MustCompile(re))
	if err != nil {
		t.Fatal(err)
	}
	return m, next
}

func startGuest(t *testing.T, cpus int, mem uint64, gate *block.Gate) *guestVM {
	return startImage(t, "vmmd-testguest.elf", cpus, mem, gate)
}

func startImage(t *testing.T, image string, cpus int, mem uint64, gate *block.Gate) *guestVM {
	return startConfig(t, image, Config{CPUs: cpus, Memory: mem, Gate: gate})
}

func startConfig(t *testing.T, image string, cfg Config) *guestVM {
	t.Helper()
	cpus, mem, gate := cfg.CPUs, cfg.Memory, cfg.Gate
	kvmtest.Require(t)
	kernel, err := os.ReadFile(testguest.Path(t, image))
	if err != nil {
		t.Fatal(err)
	}
	sys, err := kvm.Open("/dev/kvm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sys.Close() })
	g := &guestVM{con: testguest.NewConsole(), eventCh: make(chan Event, 64)}
	if testing.Verbose() {
		g.con.Echo = func(l string) { t.Logf("guest: %s", l) }
	}
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel).With().Int("cpus", cpus).Logger()
	g.m, err = New(context.Background(), sys, Config{
		Name: "test", Kernel: kernel, Cmdline: fmt.Sprintf("test=%d", cpus), Memory: mem, CPUs: cpus,
		SerialOut: g.con, Gate: gate, Log: log, NoACPI: cfg.NoACPI, Drives: cfg.Drives, Incoming: cfg.Incoming,
		OnEvent: func(e Event) {
			g.mu.Lock()
			g.events = append(g.events, e)
			g.mu.Unlock()
			select {
			case g.eventCh <- e:
			default:
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := g.m.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
		if v := g.m.InvariantViolations(); v != 0 {
			t.Errorf("invariant violations: %d", v)
		}
	})
	return g
}

func TestBootTestGuest(t *testing.T) {
	tests := []struct {
		image, boot string
		cpus        int
		mem         uint64
	}{
		{"vmmd-testguest.elf", "pvh", 1, 128 << 20},
		{"vmmd-testguest.elf", "pvh", 2, 256 << 20},
		{"vmmd-testguest.elf", "pvh", 4, 512 << 20},
		{"vmmd-testguest.elf", "pvh", 2, 2 << 30},
		{"vmmd-testguest.elf", "pvh", 1, 4 << 30}, // RAM above the 3-4 GiB hole
		{"vmmd-testguest.bzImage", "bzimage", 2, 256 << 20},
		{"vmmd-testguest.bzImage", "bzimage", 4, 2 << 30},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s,cpus=%d,mem=%dM", tc.boot, tc.cpus, tc.mem>>20), func(t *testing.T) {
			g := startImage(t, tc.image, tc.cpus, tc.mem, nil)
			if s := g.m.State(); s != StatePrelaunch {
				t.Fatalf("state before start = %s, want prelaunch", s)
			}
			if err := g.m.Resume(context.Background(), CauseStart); err != nil {
				t.Fatal(err)
			}
			m, _ := g.wait(t, 0, testguest.ReadyRE.String(), 30*time.Second)
			if m[1] != tc.boot || m[2] != strconv.Itoa(tc.cpus) || m[3] != strconv.FormatUint(tc.mem>>20, 10) {
				t.Errorf("readiness line %q: want boot=%s cpus=%d mem=%dM", m[0], tc.boot, tc.cpus, tc.mem>>20)
			}
			if m[5] != fmt.Sprintf("test=%d", tc.cpus) {
				t.Errorf("cmdline = %q, want test=%d", m[5], tc.cpus)
			}
			if s := g.m.State(); s != StateRunning {
				t.Errorf("state = %s, want running", s)
			}
		})
	}
}

func TestPauseResumeHeartbeat(t *testing.T) {
	g := startGuest(t, 2, 256<<20, nil)
	ctx := context.Background()
	if err := g.m.Resume(ctx, CauseStart); err != nil {
		t.Fatal(err)
	}
	_, pos := g.wait(t, 0, testguest.ReadyRE.String(), 30*time.Second)
	g.send(t, "hb 50")
	_, pos = g.wait(t, pos, `^HB \d+$`, 10*time.Second)

	if err := g.m.Pause(ctx, StatePaused); err != nil {
		t.Fatal(err)
	}
	if s := g.m.State(); s != StatePaused {
		t.Fatalf("state after pause = %s", s)
	}
	// Let output already queued in the UART drain, then expect silence.
	time.Sleep(200 * time.Millisecond)
	last := testguest.LastHeartbeat(g.con.Lines())
	mark := g.con.Mark()
	time.Sleep(600 * time.Millisecond)
	for _, l := range g.con.Lines()[mark:] {
		if testguest.HeartbeatRE.MatchString(l) {
			t.Fatalf("heartbeat while paused: %q", l)
		}
	}
	if err := g.m.Resume(ctx, CauseCont); err != nil {
		t.Fatal(err)
	}
	m, _ := g.wait(t, mark, `^HB (\d+)$`, 10*time.Second)
	if n, _ := strconv.Atoi(m[1]); n != last+1 {
		t.Errorf("first heartbeat after resume = %d, want %d (continue where it stopped)", n, last+1)
	}
	names := g.eventNames()
	if want := []string{"RESUME", "STOP", "RESUME"}; fmt.Sprint(names) != fmt.Sprint(want) {
		t.Errorf("events = %v, want %v", names, want)
	}
	// stop twice and cont twice are no-ops, as in QEMU.
	if err := g.m.Resume(ctx, CauseCont); err != nil {
		t.Errorf("cont while running: %v", err)
	}
}

func TestGuestResetReboots(t *testing.T) {
	g := startGuest(t, 2, 256<<20, nil)
	if err := g.m.Resume(context.Background(), CauseStart); err != nil {
		t.Fatal(err)
	}
	_, pos := g.wait(t, 0, testguest.ReadyRE.String(), 30*time.Second)
	g.send(t, "reset")
	_, pos = g.wait(t, pos, `^GUEST-RESET`, 10*time.Second)
	m, _ := g.wait(t, pos, testguest.ReadyRE.String(), 30*time.Second)
	if m[2] != "2" {
		t.Errorf("after reset: %q, want cpus=2 (APs reset and brought up again)", m[0])
	}
	if s := g.m.State(); s != StateRunning {
		t.Errorf("state after reset = %s, want running", s)
	}
	found := false
	for _, n := range g.eventNames() {
		found = found || n == "RESET"
	}
	if !found {
		t.Errorf("no RESET event: %v", g.eventNames())
	}
}

func TestGuestPowerOff(t *testing.T) {
	g := startGuest(t, 1, 128<<20, nil)
	if err := g.m.Resume(context.Background(), CauseStart); err != nil {
		t.Fatal(err)
	}
	_, pos := g.wait(t, 0, testguest.ReadyRE.String(), 30*time.Second)
	g.send(t, "poweroff")
	g.wait(t, pos, `^GUEST-POWEROFF`, 10*time.Second)
	select {
	case <-g.m.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("machine did not finish after the guest powered off")
	}
	if r := g.m.Exit(); r != ExitPowerOff {
		t.Errorf("exit = %s, want poweroff", r)
	}
	if s := g.m.State(); s != StateShutdown {
		t.Errorf("state = %s, want shutdown", s)
	}
	if err := g.m.Resume(context.Background(), CauseCont); !errors.Is(err, ErrResetRequired) {
		t.Errorf("cont after shutdown: %v, want %v", err, ErrResetRequired)
	}
}

// inactiveDrive stands in for a disk left inactive by a failed migration;
// the real drives arrive with the disks issue.
type inactiveDrive struct{ active bool }

func (d *inactiveDrive) Name() string { return "disk0" }
func (d *inactiveDrive) Active() bool { return d.active }
func (d *inactiveDrive) Activate(context.Context) error {
	return errors.New(`Failed to get "write" lock`)
}
func (d *inactiveDrive) Inactivate(context.Context) error {
	d.active = false
	return nil
}

func TestGateRefusesStartWithInactiveDisk(t *testing.T) {
	g := startGuest(t, 1, 128<<20, block.NewGate(&inactiveDrive{}))
	err := g.m.Resume(context.Background(), CauseStart)
	var ge *GateError
	if !errors.As(err, &ge) || ge.Cause != CauseStart {
		t.Fatalf("Resume with an inactive disk = %v, want a GateError", err)
	}
	if s := g.m.State(); s != StatePrelaunch {
		t.Errorf("state after refused start = %s, want prelaunch (unchanged)", s)
	}
	time.Sleep(300 * time.Millisecond)
	if lines := g.con.Lines(); len(lines) != 0 {
		t.Errorf("guest ran although the gate refused: %q", lines)
	}
}

// TestMemoryWorkloadAndCPUID runs the migration-style memory workload across
// a pause, checks the checker can fail, and reads back the CPUID vmmd set.
func TestMemoryWorkloadAndCPUID(t *testing.T) {
	g := startGuest(t, 2, 256<<20, nil)
	ctx := context.Background()
	if err := g.m.Resume(ctx, CauseStart); err != nil {
		t.Fatal(err)
	}
	_, pos := g.wait(t, 0, testguest.ReadyRE.String(), 30*time.Second)
	g.send(t, "mem start 64")
	_, pos = g.wait(t, pos, `^OK mem start 64$`, 20*time.Second)
	time.Sleep(200 * time.Millisecond)
	if err := g.m.Pause(ctx, StatePaused); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if err := g.m.Resume(ctx, CauseCont); err != nil {
		t.Fatal(err)
	}
	g.send(t, "mem check")
	m, pos := g.wait(t, pos, `^MEMCHECK (\S+) .*passes=(\d+)`, 10*time.Second)
	if m[1] != "ok" {
		t.Fatalf("memory check after pause/resume: %q", m[0])
	}
	if n, _ := strconv.Atoi(m[2]); n < 1 {
		t.Errorf("workload made no complete pass: %q", m[0])
	}
	// The checker must be able to fail: corrupt one page and look again.
	g.send(t, "mem stop")
	_, pos = g.wait(t, pos, `^OK mem stop$`, 5*time.Second)
	g.send(t, "mem poke 100 77")
	_, pos = g.wait(t, pos, `^OK mem poke$`, 5*time.Second)
	g.send(t, "mem check")
	m, pos = g.wait(t, pos, `^MEMCHECK (\S+)`, 10*time.Second)
	if m[1] != "bad" {
		t.Errorf("mem check after a poke = %q, want bad", m[0])
	}
	// CPUID as the guest sees it at CPL0: the TSC-frequency leaf vmmd adds.
	g.send(t, "cpuid 0x40000010")
	m, _ = g.wait(t, pos, `^CPUID 0x([0-9a-f]+) 0x([0-9a-f]+)`, 5*time.Second)
	if khz, _ := strconv.ParseUint(m[1], 16, 32); khz < 100_000 {
		t.Errorf("TSC kHz leaf = %q, want the host TSC frequency", m[0])
	}
}

// TestGuestExceptionKeepsVMMRunning: a guest that faults is the guest's
// problem; vmmd keeps running and can still pause and stop it.
func TestGuestExceptionKeepsVMMRunning(t *testing.T) {
	g := startGuest(t, 1, 128<<20, nil)
	ctx := context.Background()
	if err := g.m.Resume(ctx, CauseStart); err != nil {
		t.Fatal(err)
	}
	_, pos := g.wait(t, 0, testguest.ReadyRE.String(), 30*time.Second)
	g.send(t, "crash")
	g.wait(t, pos, `^GUEST-EXCEPTION vec=6 `, 10*time.Second)
	if err := g.m.Pause(ctx, StatePaused); err != nil {
		t.Fatal(err)
	}
	if s := g.m.State(); s != StatePaused {
		t.Errorf("state = %s, want paused", s)
	}
}

// TestInternalErrorStopsVM: an exit vmmd cannot handle (here KVM's emulator
// failing on an MMIO access) stops the VM in internal-error, never the
// daemon; cont is refused with QEMU's text; a reset brings the guest back.
func TestInternalErrorStopsVM(t *testing.T) {
	g := startGuest(t, 2, 128<<20, nil)
	ctx := context.Background()
	if err := g.m.Resume(ctx, CauseStart); err != nil {
		t.Fatal(err)
	}
	_, pos := g.wait(t, 0, testguest.ReadyRE.String(), 30*time.Second)
	g.send(t, "emufail")
	_, pos = g.wait(t, pos, `^GUEST-EMUFAIL$`, 10*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for g.m.State() != StateInternalError {
		if time.Now().After(deadline) {
			t.Fatalf("state = %s, want internal-error; console: %q", g.m.State(), g.con.Lines())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := g.m.Resume(ctx, CauseCont); !errors.Is(err, ErrResetRequired) {
		t.Errorf("cont in internal-error = %v, want %q", err, ErrResetRequired)
	}
	if err := g.m.Reset(ctx, "host-qmp-system-reset"); err != nil {
		t.Fatal(err)
	}
	if s := g.m.State(); s != StatePrelaunch {
		t.Errorf("state after reset from internal-error = %s, want prelaunch", s)
	}
	if err := g.m.Resume(ctx, CauseCont); err != nil {
		t.Fatal(err)
	}
	g.wait(t, pos, testguest.ReadyRE.String(), 30*time.Second)
	names := fmt.Sprint(g.eventNames())
	if names != "[RESUME STOP RESET RESUME]" {
		t.Errorf("events = %s, want [RESUME STOP RESET RESUME]", names)
	}
}

// TestACPIAndMPTable: the guest finds its CPUs through vmmd's ACPI MADT (or
// the MP table with ACPI off) and powers off through the FADT's sleep
// control register.
func TestACPIAndMPTable(t *testing.T) {
	for _, noACPI := range []bool{false, true} {
		t.Run(fmt.Sprintf("noacpi=%v", noACPI), func(t *testing.T) {
			g := startConfig(t, "vmmd-testguest.elf", Config{CPUs: 4, Memory: 128 << 20, NoACPI: noACPI})
			if err := g.m.Resume(context.Background(), CauseStart); err != nil {
				t.Fatal(err)
			}
			_, pos := g.wait(t, 0, testguest.ReadyRE.String(), 30*time.Second)
			g.send(t, "diag")
			m, pos := g.wait(t, pos, `^DIAG .*acpi=(\d) madt_cpus=(\d+) mp_cpus=(\d+) reset_reg=(\S+) sleep_reg=(\S+)`, 10*time.Second)
			want := []string{"1", "4", "0", "0xcf9", "0x3c0"}
			if noACPI {
				want = []string{"0", "0", "4", "0x0", "0x0"}
			}
			if fmt.Sprint(m[1:]) != fmt.Sprint(want) {
				t.Errorf("guest saw acpi, madt_cpus, mp_cpus, reset, sleep = %v, want %v (%q)", m[1:], want, m[0])
			}
			g.send(t, "poweroff")
			g.wait(t, pos, `^GUEST-POWEROFF`, 10*time.Second)
			select {
			case <-g.m.Done():
			case <-time.After(10 * time.Second):
				t.Fatal("no power-off")
			}
		})
	}
}
