package block

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// fakeDrive is a unit-test stand-in; the real drives are tested against
// real files and nbdkit.
type fakeDrive struct {
	name          string
	active        bool
	failActivate  error
	failInactive  error
	activateCalls int
}

func (f *fakeDrive) Name() string { return f.name }
func (f *fakeDrive) Active() bool { return f.active }
func (f *fakeDrive) Activate(context.Context) error {
	f.activateCalls++
	if f.failActivate != nil {
		return f.failActivate
	}
	f.active = true
	return nil
}
func (f *fakeDrive) Inactivate(context.Context) error {
	if f.failInactive != nil {
		return f.failInactive
	}
	f.active = false
	return nil
}

func TestGateNoDrivesOpens(t *testing.T) {
	g := NewGate()
	if err := g.ReactivateAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !g.AllActive() || g.MayBeInactive() {
		t.Fatal("empty gate should be open")
	}
}

func TestGateMarksBeforeInactivating(t *testing.T) {
	ctx := context.Background()
	a := &fakeDrive{name: "disk0", active: true}
	b := &fakeDrive{name: "disk1", active: true, failInactive: errors.New("flush: EIO")}
	c := &fakeDrive{name: "disk2", active: true}
	g := NewGate(a, b, c)
	err := g.InactivateAll(ctx)
	if err == nil || !strings.Contains(err.Error(), "inactivate disk1: flush: EIO") {
		t.Fatalf("InactivateAll error = %v, want the disk1 flush failure", err)
	}
	if !g.MayBeInactive() {
		t.Fatal("a half-failed inactivation must leave the gate marked possibly inactive")
	}
	if a.active || c.active || !b.active {
		t.Fatalf("every drive must be tried: a=%v b=%v c=%v", a.active, b.active, c.active)
	}
	// Idempotent: a second inactivation of already inactive drives is fine.
	b.failInactive = nil
	if err := g.InactivateAll(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestGateReactivateTriesEveryDrive(t *testing.T) {
	ctx := context.Background()
	a := &fakeDrive{name: "disk0", failActivate: errors.New(`Failed to get "write" lock`)}
	b := &fakeDrive{name: "disk1"}
	g := NewGate(a, b)
	if err := g.InactivateAll(ctx); err != nil {
		t.Fatal(err)
	}
	err := g.ReactivateAll(ctx)
	if err == nil || !errors.Is(err, ErrNotAllActive) || !strings.Contains(err.Error(), "disk0") {
		t.Fatalf("ReactivateAll error = %v, want disk0 still inactive", err)
	}
	if b.activateCalls != 1 {
		t.Fatal("disk1 must be tried even though disk0 failed first")
	}
	if b.active {
		t.Fatal("disk1 must be given back when the reactivation as a whole fails")
	}
	if !g.MayBeInactive() || g.AllActive() {
		t.Fatal("gate must stay closed while a drive is inactive")
	}
	a.failActivate = nil
	if err := g.ReactivateAll(ctx); err != nil {
		t.Fatal(err)
	}
	if g.MayBeInactive() || !g.AllActive() {
		t.Fatal("gate must open once all drives are active")
	}
}

func TestGateAddInactive(t *testing.T) {
	g := NewGate()
	g.Add(&fakeDrive{name: "in"})
	if !g.MayBeInactive() {
		t.Fatal("adding an inactive drive must close the gate")
	}
}

func TestGateSingleDrive(t *testing.T) {
	ctx := context.Background()
	a := &fakeDrive{name: "disk0", active: true}
	b := &fakeDrive{name: "disk1", active: true}
	g := NewGate(a, b)
	if err := g.Inactivate(ctx, a); err != nil {
		t.Fatal(err)
	}
	if !g.MayBeInactive() || g.AllActive() {
		t.Fatal("one inactive drive must close the gate")
	}
	b.failActivate = errors.New("nope")
	if err := g.Activate(ctx, a); err != nil {
		t.Fatal(err)
	}
	if g.MayBeInactive() {
		t.Fatal("all drives active again: the gate must open")
	}
}
