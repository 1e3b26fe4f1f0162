package machine

import (
	"context"
	"errors"
	"fmt"
	"time"
)

type requestKind int

const (
	reqPowerOff requestKind = iota
	reqReset
	reqPanic
	reqInternalError
	reqIOError
)

// request is something a vCPU thread or device needs the controller to do.
// vCPU threads cannot do it themselves: stopping the VM waits for every
// vCPU, including the one asking.
type request struct {
	kind  requestKind
	why   string
	drive string // reqIOError: which drive
	op    string // reqIOError: read, write or flush
}

// post hands a request to the controller without blocking a vCPU thread. The
// queue is generous; if a guest floods it (say, writing the reset port in a
// loop) the excess is dropped, since the queued request has the same effect.
func (m *Machine) post(r request) {
	select {
	case m.requests <- r:
	default:
		m.log.Debug().Int("kind", int(r.kind)).Msg("machine request queue full; dropped a duplicate")
	}
}

// control serves requests from vCPU threads and devices until ctx ends.
func (m *Machine) control(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-m.requests:
			m.handle(ctx, r)
		}
	}
}

func (m *Machine) handle(ctx context.Context, r request) {
	switch r.kind {
	case reqPowerOff:
		m.log.Info().Msg("guest powered off")
		if err := m.Pause(ctx, StateShutdown); err != nil {
			m.log.Error().Err(err).Msg("stop after guest poweroff")
		}
		m.emit("SHUTDOWN", map[string]any{"guest": true, "reason": "guest-shutdown"})
		m.finish(ExitPowerOff)
	case reqReset:
		if err := m.Reset(ctx, r.why); err != nil && !errors.Is(err, ErrClosed) {
			m.log.Error().Err(err).Msg("guest reset failed")
		}
	case reqPanic:
		m.log.Error().Msg("guest reported a crash")
		if err := m.Pause(ctx, StateGuestPanicked); err != nil {
			m.log.Error().Err(err).Msg("stop after guest panic")
		}
		m.emit("GUEST_PANICKED", map[string]any{"action": "pause"})
	case reqInternalError:
		if err := m.Pause(ctx, StateInternalError); err != nil {
			m.log.Error().Err(err).Msg("stop after internal error")
		}
	case reqIOError:
		// werror/rerror=stop: QEMU stops the VM in io-error and tells the
		// client which device failed; cont retries the request.
		m.log.Error().Str("drive", r.drive).Str("operation", r.op).Str("error", r.why).
			Msg("disk I/O error: VM stopped (error policy stop); cont retries")
		// QEMU's order: BLOCK_IO_ERROR, then the STOP of the VM it causes.
		m.emit("BLOCK_IO_ERROR", map[string]any{"device": r.drive, "node-name": r.drive,
			"operation": r.op, "action": "stop", "nospace": false, "reason": r.why})
		if err := m.Pause(ctx, StateIOError); err != nil {
			m.log.Error().Err(err).Msg("stop after disk I/O error")
		}
	}
}

// GateError is returned by Resume when the block reactivation gate refuses:
// some disk could not be activated. The VM state is unchanged.
type GateError struct {
	Cause Cause
	Err   error
}

// Error says which resume path the gate refused and why.
func (e *GateError) Error() string {
	return fmt.Sprintf("cannot resume (%s): %v", e.Cause, e.Err)
}

// Unwrap returns the gate's error, for errors.Is and errors.As.
func (e *GateError) Unwrap() error { return e.Err }

// Errors with QEMU's texts, for the monitor to pass on.
var (
	ErrResetRequired     = errors.New("Resetting the Virtual Machine is required")
	ErrMigrationNotFinal = errors.New("Migration is not finalized yet")
	ErrClosed            = errors.New("the VM has been shut down")
)

// Resume is the only way vCPUs start. It reactivates every disk through the
// gate first and refuses, leaving the state unchanged, if any disk stays
// inactive. cause says which of the resume paths this is.
func (m *Machine) Resume(ctx context.Context, cause Cause) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed.Load() {
		return ErrClosed
	}
	switch m.state {
	case StateInternalError, StateShutdown:
		return ErrResetRequired
	case StateFinishMigrate:
		if cause == CauseCont {
			return ErrMigrationNotFinal
		}
	}
	if m.running && m.state == StateRunning {
		return nil // already running: cont is a no-op, as in QEMU
	}
	if m.needState || (m.state == StateInMigrate && cause != CauseIncomingDone) {
		// Only the migration engine, after commit, may start an incoming
		// guest; cont during inmigrate is the monitor's autostart request.
		return ErrWaitingForIncoming
	}
	if err := checkTransition(m.state, StateRunning); err != nil {
		return err
	}
	if err := m.gate.ReactivateAll(ctx); err != nil {
		m.log.Error().Err(err).Str("cause", string(cause)).Str("state", string(m.state)).
			Msg("refusing to start vCPUs: a disk is inactive")
		m.emit("VMMD_RESUME_REFUSED", map[string]any{"cause": string(cause), "error": err.Error()})
		return &GateError{Cause: cause, Err: err}
	}
	was := m.state
	if was == StateIOError && cause == CauseCont {
		cause = CauseIOErrorResume
	}
	m.setState(StateRunning)
	m.resumeDisks()
	m.startVCPUs()
	if cause == CauseReset {
		m.resetLog.Info().Msg("vCPUs restarted after reset")
	} else {
		m.log.Info().Str("cause", string(cause)).Msg("vCPUs started")
	}
	if was != StateRunning {
		// A reset restarts vCPUs without leaving running: QEMU sends only RESET.
		m.emit("RESUME", nil)
	}
	return nil
}

// Pause stops the vCPUs (if they run) and moves to state, which is
// StatePaused for an operator's stop. Like QEMU, it does nothing when the VM
// is not running, except for states that record why the VM stopped.
func (m *Machine) Pause(ctx context.Context, state RunState) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.state.Running() {
		switch state {
		case StateShutdown, StateInternalError, StateGuestPanicked:
			// A stopped VM can still power off or fail (a vCPU parked itself).
			if err := m.stopVCPUs(ctx); err != nil {
				return err
			}
			if CanTransition(m.state, state) {
				m.setState(state)
			}
		}
		return nil
	}
	if err := checkTransition(m.state, state); err != nil {
		return err
	}
	if err := m.stopVCPUs(ctx); err != nil {
		return err
	}
	// A stopped VM has no disk I/O in flight (migration and snapshots rely
	// on it). A device that could not drain in time is logged, not fatal:
	// the VM is stopped either way.
	if err := m.pauseDisks(ctx); err != nil {
		m.log.Warn().Err(err).Msg("disks did not quiesce")
	}
	m.setState(state)
	m.emit("STOP", nil)
	return nil
}

// Reset puts the machine back to its power-on state and reboots the guest.
// A running VM restarts through Resume (and so through the gate); a stopped
// one stays stopped, in prelaunch, as QEMU does.
func (m *Machine) Reset(ctx context.Context, why string) error {
	m.mu.Lock()
	if m.closed.Load() {
		m.mu.Unlock()
		return ErrClosed
	}
	wasRunning := m.state.Running()
	if err := m.stopVCPUs(ctx); err != nil {
		m.mu.Unlock()
		return fmt.Errorf("reset: %w", err)
	}
	err := m.resetLocked(ctx)
	if err == nil && !wasRunning && m.state != StateInMigrate && m.state != StateFinishMigrate {
		if terr := checkTransition(m.state, StatePrelaunch); terr == nil {
			m.setState(StatePrelaunch)
		}
	}
	m.mu.Unlock()
	if err != nil {
		m.log.Error().Err(err).Msg("reset failed; VM stopped in internal-error")
		_ = m.Pause(ctx, StateInternalError)
		return fmt.Errorf("reset: %w", err)
	}
	m.emit("RESET", map[string]any{"guest": why == "guest-reset", "reason": why})
	if wasRunning {
		// Resume goes through the gate like every other start.
		return m.Resume(ctx, CauseReset)
	}
	return nil
}

func (m *Machine) setState(s RunState) {
	if m.state != s {
		m.log.Info().Str("from", string(m.state)).Str("to", string(s)).Msg("run state")
	}
	m.state = s
}

// Emit sends an event that is not a state change of the machine (the
// monitor's POWERDOWN and quit's SHUTDOWN), through the same path as the
// machine's own events.
func (m *Machine) Emit(name string, data map[string]any) { m.emit(name, data) }

func (m *Machine) emit(name string, data map[string]any) {
	if m.cfg.OnEvent != nil {
		m.cfg.OnEvent(Event{Name: name, Data: data, Time: time.Now()})
	}
}

// startVCPUs lets every vCPU enter the guest. Only Resume may call it
// (TestOnlyResumeStartsVCPUs enforces that). Caller holds m.mu.
func (m *Machine) startVCPUs() {
	if m.running {
		return
	}
	m.stop.Store(false)
	for _, v := range m.vcpus {
		v.cpu.SetImmediateExit(false)
		v.runDone = make(chan error, 1)
		v.reqs <- vcpuReq{run: true, done: v.runDone}
	}
	m.running = true
}

// stopVCPUs makes every vCPU leave KVM_RUN and park, and returns only when
// all have. Kicks are repeated because a signal can land just before a vCPU
// enters KVM_RUN; immediate_exit covers that case, the repetition is belt
// and braces. Caller holds m.mu.
func (m *Machine) stopVCPUs(ctx context.Context) error {
	if !m.running {
		return nil
	}
	m.stop.Store(true)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for _, v := range m.vcpus {
		v.kick()
	}
	for _, v := range m.vcpus {
		for waiting := true; waiting; {
			select {
			case <-v.runDone:
				waiting = false
			case <-tick.C:
				v.kick()
			case <-ctx.Done():
				return fmt.Errorf("stop vCPU %d: %w", v.id, ctx.Err())
			}
		}
	}
	m.running = false
	return nil
}
