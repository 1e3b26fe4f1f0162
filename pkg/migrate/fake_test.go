package migrate

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/vmmd/vmmd/pkg/block"
	"github.com/vmmd/vmmd/pkg/machine"
	"github.com/vmmd/vmmd/pkg/memory"
)

// fakeDrive is a disk whose inactivation and activation a test controls.
type fakeDrive struct {
	name string

	mu             sync.Mutex
	active         bool
	failInactivate error
	failActivate   error
	hang           bool // inactivation blocks until its context ends
	inactivations  int
}

func (d *fakeDrive) Name() string { return d.name }
func (d *fakeDrive) Active() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.active
}

func (d *fakeDrive) Activate(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.failActivate != nil {
		return d.failActivate
	}
	d.active = true
	return nil
}

func (d *fakeDrive) Inactivate(ctx context.Context) error {
	d.mu.Lock()
	hang := d.hang
	d.mu.Unlock()
	if hang {
		<-ctx.Done()
		return fmt.Errorf("flush: %w", ctx.Err())
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.active {
		return nil
	}
	d.inactivations++
	if d.failInactivate != nil {
		return d.failInactivate
	}
	d.active = false
	return nil
}

func (d *fakeDrive) set(f func(d *fakeDrive)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f(d)
}

// fakeVM is a VM without KVM: real guest memory (mmap) and a real gate,
// a run state that follows the machine's table, and a "guest" that, while
// running, dirties the pages a test lists.
type fakeVM struct {
	ram    *memory.Memory
	gate   *block.Gate
	drives []*fakeDrive
	cfg    machine.MigrationConfig

	mu      sync.Mutex
	state   machine.RunState
	logging bool
	dirty   map[uint64]bool
	loaded  *machine.State
	resumes []machine.Cause

	violations atomic.Int64 // "vCPU starts" with an inactive drive
	failLoad   error
}

func newFakeVM(size uint64, state machine.RunState, drives ...*fakeDrive) *fakeVM {
	ram, err := memory.New(size)
	if err != nil {
		panic(err)
	}
	acts := make([]block.Activatable, len(drives))
	cfg := machine.MigrationConfig{Memory: size, CPUs: 1}
	for i, d := range drives {
		acts[i] = d
		cfg.Drives = append(cfg.Drives, machine.MigrationDrive{ID: d.name})
	}
	return &fakeVM{ram: ram, gate: block.NewGate(acts...), drives: drives, cfg: cfg, state: state, dirty: map[uint64]bool{}}
}

func (v *fakeVM) State() machine.RunState {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.state
}

func (v *fakeVM) Pause(ctx context.Context, s machine.RunState) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.state.Running() {
		return nil
	}
	if !machine.CanTransition(v.state, s) {
		return &machine.TransitionError{From: v.state, To: s}
	}
	v.state = s
	return nil
}

func (v *fakeVM) StopForMigration(ctx context.Context) (machine.RunState, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	was := v.state
	if !machine.CanTransition(was, machine.StateFinishMigrate) {
		return was, &machine.TransitionError{From: was, To: machine.StateFinishMigrate}
	}
	v.state = machine.StateFinishMigrate
	return was, nil
}

// Resume is the fake's only way to "run", and asks the gate like the real one.
func (v *fakeVM) Resume(ctx context.Context, c machine.Cause) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.state == machine.StateFinishMigrate && c == machine.CauseCont {
		return machine.ErrMigrationNotFinal
	}
	if v.state == machine.StateInMigrate && c != machine.CauseIncomingDone {
		return machine.ErrWaitingForIncoming
	}
	if !machine.CanTransition(v.state, machine.StateRunning) {
		return &machine.TransitionError{From: v.state, To: machine.StateRunning}
	}
	if err := v.gate.ReactivateAll(ctx); err != nil {
		return &machine.GateError{Cause: c, Err: err}
	}
	for _, d := range v.drives {
		if !d.Active() {
			v.violations.Add(1)
		}
	}
	v.state = machine.StateRunning
	v.resumes = append(v.resumes, c)
	return nil
}

func (v *fakeVM) EnterState(s machine.RunState) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if s == machine.StateRunning || v.state.Running() {
		return errors.New("EnterState cannot start or stop vCPUs")
	}
	if !machine.CanTransition(v.state, s) {
		return &machine.TransitionError{From: v.state, To: s}
	}
	v.state = s
	return nil
}

func (v *fakeVM) Gate() *block.Gate                        { return v.gate }
func (v *fakeVM) MigrationConfig() machine.MigrationConfig { return v.cfg }
func (v *fakeVM) RAM() *memory.Memory                      { return v.ram }

func (v *fakeVM) SaveState(_ context.Context, was machine.RunState) (*machine.State, error) {
	if v.State().Running() {
		return nil, errors.New("save state: the VM is running")
	}
	return &machine.State{Version: machine.StateVersion, RunState: was, Config: v.cfg}, nil
}

func (v *fakeVM) LoadState(_ context.Context, s *machine.State) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.failLoad != nil {
		return v.failLoad
	}
	if v.state != machine.StateInMigrate {
		return fmt.Errorf("load state in %s", v.state)
	}
	v.loaded = s
	return nil
}

func (v *fakeVM) StartDirtyLog() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.logging = true
	return nil
}

func (v *fakeVM) StopDirtyLog() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.logging = false
	return nil
}

// touch is the fake guest writing a page (the dirty log records it).
func (v *fakeVM) touch(gpa uint64, b byte) {
	p, err := v.ram.Slice(gpa, pageSize)
	if err != nil {
		panic(err)
	}
	p[0] = b
	v.mu.Lock()
	v.dirty[gpa] = true
	v.mu.Unlock()
}

func (v *fakeVM) SyncDirty(fn func(r memory.Region, bits []uint64) error) error {
	v.mu.Lock()
	d := v.dirty
	v.dirty = map[uint64]bool{}
	v.mu.Unlock()
	for _, r := range v.ram.Regions() {
		bits := make([]uint64, (r.Size/pageSize+63)/64)
		for gpa := range d {
			if gpa >= r.GPA && gpa < r.End() {
				p := (gpa - r.GPA) / pageSize
				bits[p/64] |= 1 << (p % 64)
			}
		}
		if err := fn(r, bits); err != nil {
			return err
		}
	}
	return nil
}
