package block

import (
	"fmt"
	"syscall"
	"testing"
)

func TestPolicyFor(t *testing.T) {
	s := DriveSpec{WError: ActionStop, RError: ActionIgnore}
	for op, want := range map[Op]Action{
		OpRead: ActionIgnore, OpWrite: ActionStop, OpFlush: ActionStop,
		OpInactivate: ActionReport, OpActivate: ActionReport,
	} {
		if got := s.PolicyFor(op); got != want {
			t.Errorf("PolicyFor(%s) = %s, want %s", op, got, want)
		}
	}
}

func TestParseActionAndOp(t *testing.T) {
	for _, s := range []string{"report", "stop", "ignore"} {
		if a, err := ParseAction(s); err != nil || string(a) != s {
			t.Errorf("ParseAction(%q) = %q, %v", s, a, err)
		}
	}
	for _, s := range []string{"", "enospc", "auto", "STOP"} {
		if _, err := ParseAction(s); err == nil {
			t.Errorf("ParseAction(%q) succeeded", s)
		}
	}
	for _, s := range []string{"read", "write", "flush", "inactivate", "activate"} {
		if op, err := ParseOp(s); err != nil || string(op) != s {
			t.Errorf("ParseOp(%q) = %q, %v", s, op, err)
		}
	}
	if _, err := ParseOp("trim"); err == nil {
		t.Error("ParseOp(trim) succeeded")
	}
}

func TestIOStatusOf(t *testing.T) {
	if IOStatusOf(nil) != IOStatusOK {
		t.Error("nil is not ok")
	}
	if got := IOStatusOf(&IOError{Op: OpWrite, Err: fmt.Errorf("x: %w", syscall.ENOSPC)}); got != IOStatusNoSpace {
		t.Errorf("ENOSPC gives %s", got)
	}
	if got := IOStatusOf(&IOError{Op: OpWrite, Err: syscall.EIO}); got != IOStatusFailed {
		t.Errorf("EIO gives %s", got)
	}
}
