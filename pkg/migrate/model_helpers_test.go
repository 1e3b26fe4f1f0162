package migrate

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"

	"github.com/rs/zerolog"

	"github.com/vmmd/vmmd/pkg/block"
	"github.com/vmmd/vmmd/pkg/machine"
	"github.com/vmmd/vmmd/pkg/memory"
)

// The model test's world: vmmd processes ("sides", each a Migrator over a
// fakeVM) that share the guest's storage, whose image locks decide which of
// them may have a disk active.

const (
	modelRAM    = memory.MinSize
	modelDrives = 2
	// Short, so that a hung storage server costs little test time; the
	// handover bound stays generous for -race.
	modelInactivateTimeout = 30   // ms
	modelHandoverTimeout   = 5000 // ms
	// modelSlowBandwidth stretches pre-copy (~70 ms for an untouched guest)
	// so that operator commands and faults land in the middle of it.
	modelSlowBandwidth = 512 << 10
)

var errImageLocked = errors.New(`failed to get "write" lock: is another process using the image?`)

// imageLocks are the shared storage's image locks, one per disk (a file's
// OFD locks, an NBD server that admits one writer). Without them nothing
// would stop an operator's cont on a postmigrate source while the
// destination runs; with them, at most one side has a given disk active.
type imageLocks struct {
	mu      sync.Mutex
	holder  map[string]int // disk name -> side id; absent when free
	refused int            // activations refused because another side held the lock
}

func newImageLocks() *imageLocks { return &imageLocks{holder: map[string]int{}} }

// releaseAll drops the locks a side holds: its process has gone, and the
// kernel (or the NBD server) lets go of what it held.
func (l *imageLocks) releaseAll(side int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for name, h := range l.holder {
		if h == side {
			delete(l.holder, name)
		}
	}
}

// lockedDrive is a fakeDrive behind the shared image lock. Activation takes
// the lock (and fails while another side holds it); an inactive drive gives
// it back. Like block.Drive, activating an active drive is a no-op even
// when the storage is down.
type lockedDrive struct {
	*fakeDrive
	side  int
	locks *imageLocks
}

// Activate holds the lock table throughout, so that "active" and "holds the
// lock" change together as the invariant check sees them.
func (d *lockedDrive) Activate(ctx context.Context) error {
	d.locks.mu.Lock()
	defer d.locks.mu.Unlock()
	if d.fakeDrive.Active() {
		return nil
	}
	if h, ok := d.locks.holder[d.name]; ok && h != d.side {
		d.locks.refused++
		return fmt.Errorf("%w (vmmd %d holds %s)", errImageLocked, h, d.name)
	}
	if err := d.fakeDrive.Activate(ctx); err != nil {
		return err
	}
	d.locks.holder[d.name] = d.side
	return nil
}

// Inactivate may block (a hung storage server), so the lock table is taken
// only to give the lock back once the drive is inactive.
func (d *lockedDrive) Inactivate(ctx context.Context) error {
	err := d.fakeDrive.Inactivate(ctx)
	d.locks.mu.Lock()
	defer d.locks.mu.Unlock()
	if !d.fakeDrive.Active() && d.locks.holder[d.name] == d.side {
		delete(d.locks.holder, d.name)
	}
	return err
}

// driveFaults is one drive's injected faults and activation, read together.
type driveFaults struct {
	active, flushFails, down, hangs bool
}

func (d *lockedDrive) faults() driveFaults {
	d.mu.Lock()
	defer d.mu.Unlock()
	return driveFaults{active: d.active, flushFails: d.failInactivate != nil, down: d.failActivate != nil, hangs: d.hang}
}

// statusLog records the statuses of the MIGRATION events a side sends, in
// the order a QMP client would see them.
type statusLog struct {
	mu  sync.Mutex
	seq []Status
}

func (l *statusLog) emit(name string, data map[string]any) {
	if name != "MIGRATION" {
		return
	}
	s, _ := data["status"].(string)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq = append(l.seq, Status(s))
}

// check returns an error naming the first move the status machine forbids.
func (l *statusLog) check() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	prev := StatusNone
	for i, s := range l.seq {
		if !canMove(prev, s) {
			return fmt.Errorf("MIGRATION event %d moves %s -> %s (events %v)", i, prev, s, l.seq)
		}
		prev = s
	}
	return nil
}

// modelSide is one vmmd process of the model.
type modelSide struct {
	id     int
	vm     *fakeVM
	mig    *Migrator
	drives []*lockedDrive
	events *statusLog
	// stopped: the operator's last word here was a stop that took effect
	// (or, in inmigrate, that cleared autostart). Nothing may run the guest
	// on this side until a cont is acknowledged.
	stopped bool
	retired bool
}

func (s *modelSide) String() string { return fmt.Sprintf("vmmd%d", s.id) }

// newModelSide starts a vmmd in state with its disks active (holding the
// image locks) or inactive (an incoming side).
func newModelSide(id int, locks *imageLocks, state machine.RunState, active bool) (*modelSide, error) {
	fds := make([]*fakeDrive, modelDrives)
	lds := make([]*lockedDrive, modelDrives)
	acts := make([]block.Activatable, modelDrives)
	for i := range fds {
		fds[i] = &fakeDrive{name: fmt.Sprintf("disk%d", i), active: active}
		lds[i] = &lockedDrive{fakeDrive: fds[i], side: id, locks: locks}
		acts[i] = lds[i]
	}
	if active {
		locks.mu.Lock()
		for _, d := range fds {
			if h, ok := locks.holder[d.name]; ok {
				locks.mu.Unlock()
				return nil, fmt.Errorf("start vmmd%d: vmmd%d holds %s", id, h, d.name)
			}
			locks.holder[d.name] = id
		}
		locks.mu.Unlock()
	}
	vm := newFakeVM(modelRAM, state, fds...)
	// The gate must go through the image locks, not around them.
	vm.gate = block.NewGate(acts...)
	ev := &statusLog{}
	mig := New(Config{VM: vm, Log: zerolog.Nop(), Emit: ev.emit,
		Incoming: state == machine.StateInMigrate, Autostart: true})
	s := &modelSide{id: id, vm: vm, mig: mig, drives: lds, events: ev}
	if err := mig.SetParameters(func(p *Parameters) {
		p.InactivateTimeout, p.HandoverTimeout, p.MaxBandwidth = modelInactivateTimeout, modelHandoverTimeout, 0
	}); err != nil {
		s.close()
		return nil, fmt.Errorf("set parameters: %w", err)
	}
	if err := mig.SetCapabilities([]Capability{{Capability: "events", State: true}}); err != nil {
		s.close()
		return nil, fmt.Errorf("set capabilities: %w", err)
	}
	return s, nil
}

// close ends the process: migrations are cancelled and waited for, its image
// locks are released and its guest RAM unmapped.
func (s *modelSide) close() {
	if s.retired {
		return
	}
	s.retired = true
	s.mig.Close()
	s.drives[0].locks.releaseAll(s.id)
	s.vm.ram.Close()
}

func (s *modelSide) setLoadFailure(on bool) {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	s.vm.failLoad = nil
	if on {
		s.vm.failLoad = errors.New("vCPU 0: bad LAPIC state")
	}
}

func (s *modelSide) allInactive() bool {
	for _, d := range s.drives {
		if d.Active() {
			return false
		}
	}
	return true
}

// observation is what an operator sees of a side with query-status and
// query-migrate.
type observation struct {
	state  machine.RunState
	status Status
	desc   string
}

func (o observation) quiet() bool { return !o.status.inProgress() }

func observe(s *modelSide) observation {
	in := s.mig.Info()
	return observation{state: s.vm.State(), status: in.Status, desc: in.ErrorDesc}
}

// sideView is one side in an atomic snapshot of the world.
type sideView struct {
	side          *modelSide
	state         machine.RunState
	mayBeInactive bool
	active        []bool
}

// snapshot reads every live side's run state, gate and drives, and the image
// locks, as of one instant. Lock order: every fakeVM.mu by side id (nothing
// else takes two), then each gate (briefly), then the lock table, then the
// drives, which is the order Resume takes them in.
func snapshot(live []*modelSide, locks *imageLocks) ([]sideView, map[string]int) {
	for _, s := range live {
		s.vm.mu.Lock()
	}
	defer func() {
		for _, s := range live {
			s.vm.mu.Unlock()
		}
	}()
	views := make([]sideView, len(live))
	for i, s := range live {
		views[i] = sideView{side: s, state: s.vm.state, mayBeInactive: s.vm.gate.MayBeInactive()}
	}
	locks.mu.Lock()
	defer locks.mu.Unlock()
	for i, s := range live {
		for _, d := range s.drives {
			views[i].active = append(views[i].active, d.fakeDrive.Active())
		}
	}
	return views, maps.Clone(locks.holder)
}
