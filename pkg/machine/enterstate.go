package machine

import (
	"context"
	"errors"
	"fmt"
)

// EnterState moves a stopped VM from one non-running state to another
// without starting or stopping anything: finish-migrate -> postmigrate
// (the destination committed), finish-migrate -> paused (the migration
// failed and the gate refused to resume), inmigrate -> paused (state
// loaded, no autostart), paused -> finish-migrate (migrating a paused VM).
// The transition table decides; StateRunning is refused (only Resume starts
// vCPUs), and so is any change while the vCPUs run. No event is sent (the
// caller sends the migration events); the change is logged.
func (m *Machine) EnterState(s RunState) error {
	if s == StateRunning {
		return errors.New("enter state running: only Resume starts vCPUs")
	}
	if !knownState(s) {
		return fmt.Errorf("enter state %q: unknown run state", s)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed.Load() {
		return ErrClosed
	}
	if m.running || m.state.Running() {
		return fmt.Errorf("enter state %s: the VM is running; stop it first", s)
	}
	if err := checkTransition(m.state, s); err != nil {
		return err
	}
	m.setState(s)
	return nil
}

// StopForMigration puts the VM in finish-migrate in one step and returns
// the state it was in: a running VM is stopped (vCPUs parked, disk I/O
// drained, STOP sent), a stopped one just changes state. Doing both under
// one lock matters: a separate "is it running?" then "pause" would let an
// operator's stop and cont slip in between, and the guest would run while
// the migration inactivates its disks. In finish-migrate, cont is refused.
func (m *Machine) StopForMigration(ctx context.Context) (RunState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed.Load() {
		return "", ErrClosed
	}
	was := m.state
	if err := checkTransition(was, StateFinishMigrate); err != nil {
		return was, err
	}
	if was.Running() || m.running {
		if err := m.stopVCPUs(ctx); err != nil {
			return was, fmt.Errorf("stop for migration: %w", err)
		}
		if err := m.pauseDisks(ctx); err != nil {
			m.log.Warn().Err(err).Msg("disks did not quiesce")
		}
		m.setState(StateFinishMigrate)
		m.emit("STOP", nil)
		return was, nil
	}
	m.setState(StateFinishMigrate)
	return was, nil
}

// ErrRunning is returned by WhileStopped when the vCPUs run.
var ErrRunning = errors.New("Cannot inactivate disks while the VM is running: stop it first")

// WhileStopped runs fn with the run state held: no Resume can start the
// vCPUs until fn returns. It refuses (ErrRunning) if they run. The monitor
// inactivates disks this way, so that no resume path can slip in between
// its "is it stopped?" and the inactivation.
func (m *Machine) WhileStopped(fn func() error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.running || m.state.Running() {
		return ErrRunning
	}
	return fn()
}
