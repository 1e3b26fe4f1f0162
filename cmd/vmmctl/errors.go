package main

import (
	"errors"
	"strings"
)

// Exit codes are part of vmmctl's interface to scripts.
const (
	exitOK      = 0
	exitQMP     = 1
	exitUsage   = 2
	exitConnect = 3
)

// usageError marks bad flags or arguments (exit 2).
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// connectError marks a failure to reach the QMP socket (exit 3).
type connectError struct {
	socket string
	err    error
}

func (e *connectError) Error() string {
	return "vmmctl: cannot reach vmmd at " + e.socket + ": " + e.err.Error()
}
func (e *connectError) Unwrap() error { return e.err }

// qmpError is an error reply from the server or a failure mid-conversation
// (exit 1).
type qmpError struct {
	cmd string
	err error
}

func (e *qmpError) Error() string { return "error: " + e.err.Error() }
func (e *qmpError) Unwrap() error { return e.err }

// classify maps an error returned by cobra to an exit code and the message
// printed on stderr.
func classify(err error) (int, string) {
	var ue *usageError
	var ce *connectError
	var qe *qmpError
	switch {
	case errors.As(err, &ce):
		return exitConnect, ce.Error()
	case errors.As(err, &qe):
		return exitQMP, qe.Error()
	case errors.As(err, &ue):
		return exitUsage, "vmmctl: " + ue.Error() + "\nRun 'vmmctl --help' for usage."
	}
	// Cobra's own argument errors (unknown command, ...) are not typed.
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand", "flag needs", "invalid argument", "accepts ", "requires "} {
		if strings.HasPrefix(msg, p) {
			return exitUsage, "vmmctl: " + msg + "\nRun 'vmmctl --help' for usage."
		}
	}
	return exitQMP, "error: " + msg
}

// usagef marks err as a usage error (exit 2).
func usagef(err error) error { return &usageError{err: err} }
