// Package block owns the guest's disks: backends, activation state, image
// locks and the block reactivation gate through which every vCPU start passes.
package block

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Activatable is a disk the gate can inactivate (hand over to another
// process) and reactivate (take back). Implementations must be idempotent:
// inactivating an inactive disk or activating an active one is a no-op.
type Activatable interface {
	// Name identifies the disk in errors and logs (the drive id).
	Name() string
	// Active reports whether the disk is active (image lock held, writable).
	Active() bool
	// Activate takes the image lock back and re-reads the size.
	Activate(ctx context.Context) error
	// Inactivate drains in-flight requests, flushes and releases the lock.
	Inactivate(ctx context.Context) error
}

// ErrNotAllActive is wrapped by ReactivateAll when a disk stays inactive.
var ErrNotAllActive = errors.New("not every disk is active")

// Gate is the block reactivation gate. It knows every disk of the guest and
// whether any of them may be inactive. machine.Resume asks it before starting
// vCPUs; nothing else may start them.
type Gate struct {
	mu            sync.Mutex
	drives        []Activatable
	mayBeInactive bool
}

// NewGate returns a gate over the given disks. A gate with no disks always
// opens; it is still called, so the path exists before disks do.
func NewGate(drives ...Activatable) *Gate {
	g := &Gate{drives: append([]Activatable(nil), drives...)}
	for _, d := range drives {
		if !d.Active() {
			g.mayBeInactive = true // an incoming VM opens its disks inactive
		}
	}
	return g
}

// Add registers another disk. A disk that is added inactive (an incoming
// migration opens its disks inactive) marks the gate as possibly inactive.
func (g *Gate) Add(d Activatable) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.drives = append(g.drives, d)
	if !d.Active() {
		g.mayBeInactive = true
	}
}

// MayBeInactive reports whether some disk may be inactive. It becomes true
// before the first inactivation is attempted and false only once every disk
// has been reactivated.
func (g *Gate) MayBeInactive() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.mayBeInactive
}

// AllActive reports whether every disk is active right now. vCPU entry checks
// this to count violations of the invariant in tests.
func (g *Gate) AllActive() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, d := range g.drives {
		if !d.Active() {
			return false
		}
	}
	return true
}

// InactivateAll marks the disks as possibly inactive first, so that no resume
// path can slip through while inactivation is half done, then inactivates
// every disk. It tries all of them and returns every failure joined.
func (g *Gate) InactivateAll(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.mayBeInactive = true
	var errs []error
	for _, d := range g.drives {
		if err := d.Inactivate(ctx); err != nil {
			errs = append(errs, fmt.Errorf("inactivate %s: %w", d.Name(), err))
		}
	}
	return errors.Join(errs...)
}

// ReactivateAll activates every disk, trying all of them even after a
// failure, and clears the possibly-inactive mark only when every disk is
// active. It is the check machine.Resume makes before starting vCPUs.
func (g *Gate) ReactivateAll(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	var taken []Activatable
	var failures []error
	for _, d := range g.drives {
		wasActive := d.Active()
		if err := d.Activate(ctx); err != nil {
			failures = append(failures, fmt.Errorf("activate %s: %w", d.Name(), err))
			continue
		}
		if !wasActive {
			taken = append(taken, d)
		}
	}
	for _, d := range g.drives {
		if !d.Active() {
			failures = append(failures, fmt.Errorf("%w: %s is still inactive", ErrNotAllActive, d.Name()))
		}
	}
	if len(failures) == 0 {
		g.mayBeInactive = false
		return nil
	}
	// A side that cannot run must not sit on some of the images: give back
	// what this call took, or two sides could each hold part of the disks
	// and neither could ever take them all (found by the handover model).
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	for _, d := range taken {
		if err := d.Inactivate(rctx); err != nil {
			failures = append(failures, fmt.Errorf("release %s again: %w", d.Name(), err))
		}
	}
	return errors.Join(failures...)
}

// releaseTimeout bounds giving images back after a failed reactivation.
const releaseTimeout = 5 * time.Second

// Inactivate inactivates one disk, marking the gate first like
// InactivateAll, so no resume can slip through half way.
func (g *Gate) Inactivate(ctx context.Context, d Activatable) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.mayBeInactive = true
	if err := d.Inactivate(ctx); err != nil {
		return fmt.Errorf("inactivate %s: %w", d.Name(), err)
	}
	return nil
}

// Activate activates one disk and opens the gate if that made every disk
// active.
func (g *Gate) Activate(ctx context.Context, d Activatable) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := d.Activate(ctx); err != nil {
		return fmt.Errorf("activate %s: %w", d.Name(), err)
	}
	for _, x := range g.drives {
		if !x.Active() {
			return nil
		}
	}
	g.mayBeInactive = false
	return nil
}
