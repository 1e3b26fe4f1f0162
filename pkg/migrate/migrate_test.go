package migrate

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/vmmd/vmmd/pkg/machine"
)

const testRAM = 32 << 20

func sockDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "mig")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

type side struct {
	vm  *fakeVM
	mig *Migrator
}

func newSide(t *testing.T, vm *fakeVM, incoming bool) side {
	t.Helper()
	mig := New(Config{VM: vm, Log: zerolog.Nop(), Incoming: incoming, Autostart: true})
	t.Cleanup(mig.Close)
	// Fast failure paths in tests; the defaults are for real storage.
	if err := mig.SetParameters(func(p *Parameters) {
		p.InactivateTimeout, p.HandoverTimeout, p.MaxBandwidth = 300, 2000, 0
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if n := vm.violations.Load(); n != 0 {
			t.Errorf("%d vCPU starts with an inactive drive", n)
		}
	})
	return side{vm: vm, mig: mig}
}

func drives(names ...string) []*fakeDrive {
	out := make([]*fakeDrive, len(names))
	for i, n := range names {
		out[i] = &fakeDrive{name: n, active: true}
	}
	return out
}

func inactiveCopies(ds []*fakeDrive) []*fakeDrive {
	out := make([]*fakeDrive, len(ds))
	for i, d := range ds {
		out[i] = &fakeDrive{name: d.name}
	}
	return out
}

// pair builds a running source and a destination waiting on a unix socket.
func pair(t *testing.T, names ...string) (src, dst side, uri string) {
	t.Helper()
	ds := drives(names...)
	src = newSide(t, newFakeVM(testRAM, machine.StateRunning, ds...), false)
	dst = newSide(t, newFakeVM(testRAM, machine.StateInMigrate, inactiveCopies(ds)...), true)
	uri = "unix:" + filepath.Join(sockDir(t), "mig.sock")
	if err := dst.mig.Incoming(context.Background(), uri); err != nil {
		t.Fatal(err)
	}
	return src, dst, uri
}

func wait(t *testing.T, m *Migrator) Info {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := m.Wait(ctx); err != nil {
		t.Fatalf("migration did not finish: %v (%+v)", err, m.Info())
	}
	return m.Info()
}

func fill(vm *fakeVM) {
	for gpa := uint64(0); gpa < testRAM; gpa += 3 * pageSize {
		vm.touch(gpa, byte(gpa/pageSize)|1)
	}
}

func sameRAM(t *testing.T, a, b *fakeVM) {
	t.Helper()
	for _, r := range a.ram.Regions() {
		x, _ := a.ram.Slice(r.GPA, r.Size)
		y, err := b.ram.Slice(r.GPA, r.Size)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(x, y) {
			t.Fatalf("RAM differs in region %#x", r.GPA)
		}
	}
}

func wantState(t *testing.T, what string, vm *fakeVM, want machine.RunState) {
	t.Helper()
	if got := vm.State(); got != want {
		t.Errorf("%s run state %s, want %s", what, got, want)
	}
}

func wantActive(t *testing.T, what string, ds []*fakeDrive, want bool) {
	t.Helper()
	for _, d := range ds {
		if d.Active() != want {
			t.Errorf("%s drive %s active=%v, want %v", what, d.name, d.Active(), want)
		}
	}
}

// checkDowntimeSteps: a completed source says where the downtime went, in
// steps that cannot be negative and add up to no more than the downtime.
func checkDowntimeSteps(t *testing.T, in Info) {
	t.Helper()
	st := in.DowntimeSteps
	if st == nil || in.Downtime == nil {
		t.Fatalf("completed source: no downtime or no x-vmmd-downtime-steps: %+v", in)
	}
	steps := []float64{st.Stop, st.Inactivate, st.LastPages, st.DeviceState, st.DestinationLoad, st.Commit}
	sum := 0.0
	for _, v := range steps {
		if v < 0 {
			t.Errorf("negative downtime step: %+v", *st)
		}
		sum += v
	}
	if sum > float64(*in.Downtime)+1 {
		t.Errorf("downtime steps add up to %.3f ms, more than the downtime %d ms: %+v", sum, *in.Downtime, *st)
	}
	if st.DeviceState <= 0 || st.DestinationLoad <= 0 {
		t.Errorf("device state or the destination's load took no time at all: %+v", *st)
	}
}

func TestMigrateRunningGuest(t *testing.T) {
	src, dst, uri := pair(t, "disk0", "disk1")
	// The guest keeps writing while pre-copy runs; the upper half of RAM
	// keeps zero pages.
	in, _ := migrateRewriting(t, src, dst, uri, testRAM/pageSize/2)
	wantState(t, "source", src.vm, machine.StatePostMigrate)
	wantState(t, "destination", dst.vm, machine.StateRunning)
	wantActive(t, "source", src.vm.drives, false)
	wantActive(t, "destination", dst.vm.drives, true)
	if in.RAM == nil || in.RAM.Total != testRAM || in.RAM.Normal == 0 || in.RAM.Duplicate == 0 || in.Downtime == nil {
		t.Errorf("query-migrate figures missing: %+v", in)
	}
	checkDowntimeSteps(t, in)
	if d := dst.mig.Info(); d.DowntimeSteps != nil {
		t.Errorf("the destination reports downtime steps: %+v", d.DowntimeSteps)
	}
	// A second migrate from postmigrate is refused with QEMU's text.
	if err := src.mig.Migrate(context.Background(), uri); !errors.Is(err, ErrPostMigrate) {
		t.Errorf("migrate from postmigrate: %v", err)
	}
}

func TestConfigMismatchRefusedBeforeRAM(t *testing.T) {
	ds := drives("disk0")
	src := newSide(t, newFakeVM(testRAM, machine.StateRunning, ds...), false)
	dvm := newFakeVM(testRAM*2, machine.StateInMigrate, &fakeDrive{name: "data"})
	dst := newSide(t, dvm, true)
	uri := "unix:" + filepath.Join(sockDir(t), "m.sock")
	if err := dst.mig.Incoming(context.Background(), uri); err != nil {
		t.Fatal(err)
	}
	if err := src.mig.Migrate(context.Background(), uri); err != nil {
		t.Fatal(err)
	}
	in := wait(t, src.mig)
	if in.Status != StatusFailed || !strings.Contains(in.ErrorDesc, "memory") || !strings.Contains(in.ErrorDesc, "data") {
		t.Fatalf("source: %s %q, want a refusal naming memory and the drive id", in.Status, in.ErrorDesc)
	}
	wantState(t, "source", src.vm, machine.StateRunning)
	wantActive(t, "source", ds, true)
	wantState(t, "destination", dvm, machine.StateInMigrate)
	if out := wait(t, dst.mig); out.Status != StatusFailed {
		t.Errorf("destination status %s", out.Status)
	}
}

// The mission's scenario: the second of two disks fails to flush when the
// source inactivates. The source must reactivate both and only then run.
func TestInactivationFailureResumesThroughGate(t *testing.T) {
	src, dst, uri := pair(t, "disk0", "disk1")
	src.vm.drives[1].set(func(d *fakeDrive) { d.failInactivate = errors.New("flush: " + syscall.EIO.Error()) })
	if err := src.mig.Migrate(context.Background(), uri); err != nil {
		t.Fatal(err)
	}
	in := wait(t, src.mig)
	if in.Status != StatusFailed || !strings.Contains(in.ErrorDesc, "inactivate disk1: flush: input/output error") {
		t.Fatalf("source: %s %q", in.Status, in.ErrorDesc)
	}
	wantState(t, "source", src.vm, machine.StateRunning)
	wantActive(t, "source", src.vm.drives, true)
	if src.vm.gate.MayBeInactive() {
		t.Error("gate still marks disks as possibly inactive")
	}
	wantState(t, "destination", dst.vm, machine.StateInMigrate)
	wantActive(t, "destination", dst.vm.drives, false)
	// Storage is back: the next attempt succeeds.
	src.vm.drives[1].set(func(d *fakeDrive) { d.failInactivate = nil })
	if out := wait(t, dst.mig); out.Status != StatusFailed {
		t.Fatalf("destination %s", out.Status)
	}
	if err := dst.mig.Incoming(context.Background(), uri); err != nil {
		t.Fatalf("retry migrate-incoming: %v", err)
	}
	if err := src.mig.Migrate(context.Background(), uri); err != nil {
		t.Fatal(err)
	}
	if in := wait(t, src.mig); in.Status != StatusCompleted {
		t.Fatalf("second migration: %s %q", in.Status, in.ErrorDesc)
	}
	wait(t, dst.mig)
	wantState(t, "destination", dst.vm, machine.StateRunning)
}

func TestStorageDownSourceStaysPausedUntilCont(t *testing.T) {
	src, _, uri := pair(t, "disk0", "disk1")
	d1 := src.vm.drives[1]
	// Inactivation of disk0 succeeds, disk1's flush fails, and disk0
	// cannot be taken back either: the storage server is gone.
	src.vm.drives[0].set(func(d *fakeDrive) { d.failActivate = errors.New("connect: connection refused") })
	d1.set(func(d *fakeDrive) { d.failInactivate = errors.New("flush: EIO") })
	if err := src.mig.Migrate(context.Background(), uri); err != nil {
		t.Fatal(err)
	}
	in := wait(t, src.mig)
	if in.Status != StatusFailed || !strings.Contains(in.ErrorDesc, "stays paused") || !strings.Contains(in.ErrorDesc, "connection refused") {
		t.Fatalf("source: %s %q", in.Status, in.ErrorDesc)
	}
	wantState(t, "source", src.vm, machine.StatePaused)
	if !src.vm.gate.MayBeInactive() {
		t.Error("gate forgot that a disk is inactive")
	}
	if err := src.vm.Resume(context.Background(), machine.CauseCont); err == nil {
		t.Fatal("cont succeeded with a disk inactive")
	}
	wantState(t, "source", src.vm, machine.StatePaused)
	src.vm.drives[0].set(func(d *fakeDrive) { d.failActivate = nil })
	if err := src.vm.Resume(context.Background(), machine.CauseCont); err != nil {
		t.Fatalf("cont after storage came back: %v", err)
	}
	wantActive(t, "source", src.vm.drives, true)
}

func TestInactivationHangTimesOut(t *testing.T) {
	src, _, uri := pair(t, "disk0")
	src.vm.drives[0].set(func(d *fakeDrive) { d.hang = true })
	t0 := time.Now()
	if err := src.mig.Migrate(context.Background(), uri); err != nil {
		t.Fatal(err)
	}
	in := wait(t, src.mig)
	if in.Status != StatusFailed || !strings.Contains(in.ErrorDesc, "x-inactivate-timeout") {
		t.Fatalf("source: %s %q", in.Status, in.ErrorDesc)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("a hung disk held the migration for %v", d)
	}
	wantState(t, "source", src.vm, machine.StateRunning)
}

func TestCancelDuringPrecopy(t *testing.T) {
	src, dst, uri := pair(t, "disk0")
	fill(src.vm)
	if err := src.mig.SetParameters(func(p *Parameters) { p.MaxBandwidth = 1 << 20 }); err != nil {
		t.Fatal(err)
	}
	if err := src.mig.Migrate(context.Background(), uri); err != nil {
		t.Fatal(err)
	}
	for src.mig.Info().Status != StatusActive {
		time.Sleep(time.Millisecond)
	}
	src.mig.Cancel()
	in := wait(t, src.mig)
	if in.Status != StatusCancelled {
		t.Fatalf("source: %s %q", in.Status, in.ErrorDesc)
	}
	wantState(t, "source", src.vm, machine.StateRunning)
	wantActive(t, "source", src.vm.drives, true)
	if out := wait(t, dst.mig); out.Status != StatusFailed {
		t.Errorf("destination %s", out.Status)
	}
	wantState(t, "destination", dst.vm, machine.StateInMigrate)
}

func TestDestinationLoadFailureResumesSource(t *testing.T) {
	src, dst, uri := pair(t, "disk0")
	dst.vm.failLoad = errors.New("vCPU 0: bad LAPIC")
	if err := src.mig.Migrate(context.Background(), uri); err != nil {
		t.Fatal(err)
	}
	in := wait(t, src.mig)
	if in.Status != StatusFailed || !strings.Contains(in.ErrorDesc, "bad LAPIC") {
		t.Fatalf("source: %s %q", in.Status, in.ErrorDesc)
	}
	wantState(t, "source", src.vm, machine.StateRunning)
	wantActive(t, "source", src.vm.drives, true)
	wantState(t, "destination", dst.vm, machine.StateInMigrate)
	wantActive(t, "destination", dst.vm.drives, false)
}

func TestSaveToFileAndRestore(t *testing.T) {
	ds := drives("disk0")
	src := newSide(t, newFakeVM(testRAM, machine.StateRunning, ds...), false)
	fill(src.vm)
	uri := "file:" + filepath.Join(t.TempDir(), "vm.state")
	if err := src.mig.Migrate(context.Background(), uri); err != nil {
		t.Fatal(err)
	}
	if in := wait(t, src.mig); in.Status != StatusCompleted {
		t.Fatalf("save: %s %q", in.Status, in.ErrorDesc)
	}
	wantState(t, "source", src.vm, machine.StatePostMigrate)
	dst := newSide(t, newFakeVM(testRAM, machine.StateInMigrate, inactiveCopies(ds)...), true)
	if err := dst.mig.Incoming(context.Background(), uri); err != nil {
		t.Fatal(err)
	}
	if in := wait(t, dst.mig); in.Status != StatusCompleted {
		t.Fatalf("restore: %s %q", in.Status, in.ErrorDesc)
	}
	wantState(t, "destination", dst.vm, machine.StateRunning)
	sameRAM(t, src.vm, dst.vm)
}

// QEMU gitlab #2395: a paused guest migrated A -> B -> A asserted on the
// second inactivation. Here the paused guest goes back and forth and stays
// paused, with disks that are inactive until cont.
func TestPausedGuestPingPong(t *testing.T) {
	ds := drives("disk0", "disk1")
	cur := newSide(t, newFakeVM(testRAM, machine.StatePaused, ds...), false)
	for i := 0; i < 4; i++ {
		next := newSide(t, newFakeVM(testRAM, machine.StateInMigrate, inactiveCopies(cur.vm.drives)...), true)
		uri := "unix:" + filepath.Join(sockDir(t), "m.sock")
		if err := next.mig.Incoming(context.Background(), uri); err != nil {
			t.Fatal(err)
		}
		if err := cur.mig.Migrate(context.Background(), uri); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		if in := wait(t, cur.mig); in.Status != StatusCompleted {
			t.Fatalf("round %d: %s %q", i, in.Status, in.ErrorDesc)
		}
		wait(t, next.mig)
		wantState(t, "arrived", next.vm, machine.StatePaused)
		wantActive(t, "arrived", next.vm.drives, false)
		cur = next
	}
	if err := cur.vm.Resume(context.Background(), machine.CauseCont); err != nil {
		t.Fatalf("cont at the end: %v", err)
	}
	wantActive(t, "final", cur.vm.drives, true)
}

func TestRefusals(t *testing.T) {
	vm := newFakeVM(testRAM, machine.StateInMigrate)
	s := newSide(t, vm, false)
	if err := s.mig.Migrate(context.Background(), "unix:/nonexistent"); !errors.Is(err, ErrWaitingIncoming) {
		t.Errorf("migrate while inmigrate: %v", err)
	}
	if err := s.mig.Incoming(context.Background(), "unix:/tmp/x"); !errors.Is(err, ErrNoIncomingOption) {
		t.Errorf("migrate-incoming without --incoming: %v", err)
	}
	for _, bad := range []string{"exec:cat", "nope", "tcp:", "tcp:host", "unix:", "file:a,offset=1"} {
		if _, err := ParseURI(bad); err == nil {
			t.Errorf("ParseURI(%q) accepted", bad)
		}
	}
	if err := s.mig.SetParameters(func(p *Parameters) { p.DowntimeLimit = 3_000_000 }); err == nil {
		t.Error("downtime-limit 3000 s accepted")
	}
	if err := s.mig.SetCapabilities([]Capability{{Capability: "postcopy-ram", State: true}}); err == nil {
		t.Error("postcopy-ram accepted")
	}
}
