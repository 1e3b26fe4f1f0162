package machine

import (
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
