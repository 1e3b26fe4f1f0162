package machine

import (
	"errors"
	"testing"
)

func TestTransitionTable(t *testing.T) {
	// Spot checks of edges QEMU allows and forbids, including the absences
	// that matter for migration safety.
	tests := []struct {
		from, to RunState
		ok       bool
	}{
		{StatePrelaunch, StateRunning, true},
		{StatePrelaunch, StateInMigrate, true},
		{StateRunning, StatePaused, true},
		{StatePaused, StateRunning, true},
		{StateRunning, StateFinishMigrate, true},
		{StateFinishMigrate, StatePostMigrate, true},
		{StatePostMigrate, StateRunning, true},
		{StateRunning, StatePostMigrate, false}, // why cont in finish-migrate is refused
		{StatePostMigrate, StatePaused, false},  // stop is a no-op in postmigrate
		{StateShutdown, StateRunning, false},    // reset first
		{StateInternalError, StateRunning, false},
		{StateRunning, StatePrelaunch, false},
		{StateRunning, StateRunning, true}, // same state: no-op
		{StateInMigrate, StateRunning, true},
	}
	for _, tc := range tests {
		if got := CanTransition(tc.from, tc.to); got != tc.ok {
			t.Errorf("CanTransition(%s, %s) = %v, want %v", tc.from, tc.to, got, tc.ok)
		}
	}
}

func TestTransitionTableClosed(t *testing.T) {
	known := map[RunState]bool{}
	for _, s := range States() {
		known[s] = true
	}
	edges := 0
	for from, tos := range transitions() {
		if !known[from] {
			t.Errorf("table has unknown source state %q", from)
		}
		seen := map[RunState]bool{}
		for _, to := range tos {
			if !known[to] {
				t.Errorf("%s -> unknown state %q", from, to)
			}
			if to == from {
				t.Errorf("%s lists itself; same-state is implicit", from)
			}
			if seen[to] {
				t.Errorf("%s -> %s listed twice", from, to)
			}
			seen[to] = true
			edges++
		}
	}
	// QEMU's 85 edges restricted to our ten states: 9+3+3+4+3+3+8+6+3+3.
	if edges != 45 {
		t.Errorf("table has %d edges, want 45", edges)
	}
	for _, s := range States() {
		if _, ok := transitions()[s]; !ok {
			t.Errorf("state %s has no row", s)
		}
	}
}

func TestTransitionErrorText(t *testing.T) {
	err := checkTransition(StateShutdown, StateRunning)
	var te *TransitionError
	if !errors.As(err, &te) || err.Error() != "invalid runstate transition: 'shutdown' -> 'running'" {
		t.Fatalf("err = %v", err)
	}
}
