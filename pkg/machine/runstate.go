package machine

import "fmt"

// RunState is the VM's run state, named as QEMU names it so that QMP
// clients see the same strings.
type RunState string

// The run states vmmd implements (a subset of QEMU's RunState enum).
const (
	StatePrelaunch     RunState = "prelaunch"
	StateRunning       RunState = "running"
	StatePaused        RunState = "paused"
	StateInMigrate     RunState = "inmigrate"
	StateFinishMigrate RunState = "finish-migrate"
	StatePostMigrate   RunState = "postmigrate"
	StateIOError       RunState = "io-error"
	StateShutdown      RunState = "shutdown"
	StateInternalError RunState = "internal-error"
	StateGuestPanicked RunState = "guest-panicked"
)

// transitions returns QEMU's runstate transition table (system/runstate.c),
// restricted to the states above. It is the single source of truth: every
// state change goes through checkTransition. Setting the current state again
// is always allowed and is a no-op. (A function, not a package variable, so
// nothing can change the table at run time.)
func transitions() map[RunState][]RunState {
	return map[RunState][]RunState{
		StateInMigrate: {StateInternalError, StateIOError, StatePaused, StateRunning,
			StateShutdown, StateGuestPanicked, StateFinishMigrate, StatePrelaunch, StatePostMigrate},
		StateInternalError: {StatePaused, StateFinishMigrate, StatePrelaunch},
		StateIOError:       {StateRunning, StateFinishMigrate, StatePrelaunch},
		StatePaused:        {StateRunning, StateFinishMigrate, StatePostMigrate, StatePrelaunch},
		StatePostMigrate:   {StateRunning, StateFinishMigrate, StatePrelaunch},
		StatePrelaunch:     {StateRunning, StateFinishMigrate, StateInMigrate},
		StateFinishMigrate: {StateRunning, StatePaused, StatePostMigrate, StatePrelaunch,
			StateInternalError, StateIOError, StateShutdown, StateGuestPanicked},
		StateRunning: {StateInternalError, StateIOError, StatePaused, StateFinishMigrate,
			StateShutdown, StateGuestPanicked},
		StateShutdown:      {StatePaused, StateFinishMigrate, StatePrelaunch},
		StateGuestPanicked: {StateRunning, StateFinishMigrate, StatePrelaunch},
	}
}

// States returns every run state vmmd implements, in a stable order.
func States() []RunState {
	return []RunState{StatePrelaunch, StateRunning, StatePaused, StateInMigrate,
		StateFinishMigrate, StatePostMigrate, StateIOError, StateShutdown,
		StateInternalError, StateGuestPanicked}
}

// TransitionError is returned for a state change QEMU's table forbids. It is
// an ordinary error: an illegal transition never crashes vmmd.
type TransitionError struct {
	From, To RunState
}

// Error is QEMU's text for a refused transition.
func (e *TransitionError) Error() string {
	return fmt.Sprintf("invalid runstate transition: '%s' -> '%s'", e.From, e.To)
}

// CanTransition reports whether the table allows from -> to.
func CanTransition(from, to RunState) bool {
	if from == to {
		return true
	}
	for _, s := range transitions()[from] {
		if s == to {
			return true
		}
	}
	return false
}

func checkTransition(from, to RunState) error {
	if !CanTransition(from, to) {
		return &TransitionError{From: from, To: to}
	}
	return nil
}

// Running reports whether the state is one where vCPUs execute. Only
// "running" does, as in QEMU's query-status.
func (s RunState) Running() bool { return s == StateRunning }
