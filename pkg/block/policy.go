package block

import (
	"errors"
	"fmt"
	"syscall"
)

// Op names a drive operation, for error policies, fault rules and errors.
type Op string

// The operations. Read, write and flush are guest requests; inactivate and
// activate are the gate's (fault rules may target all five).
const (
	OpRead       Op = "read"
	OpWrite      Op = "write"
	OpFlush      Op = "flush"
	OpInactivate Op = "inactivate"
	OpActivate   Op = "activate"
)

// ParseOp parses an operation name.
func ParseOp(s string) (Op, error) {
	switch op := Op(s); op {
	case OpRead, OpWrite, OpFlush, OpInactivate, OpActivate:
		return op, nil
	}
	return "", fmt.Errorf("unknown operation %q: use read, write, flush, inactivate or activate", s)
}

// Action is what the device does when a guest request fails (QEMU's
// BlockdevOnError, without enospc and auto).
type Action string

// The actions. QEMU's default werror is "enospc" (stop on ENOSPC, report
// anything else); vmmd has no enospc action, so its werror default is report.
const (
	// ActionReport returns an error status to the guest.
	ActionReport Action = "report"
	// ActionStop pauses the VM in run state io-error; cont retries.
	ActionStop Action = "stop"
	// ActionIgnore completes the request as if it had succeeded.
	ActionIgnore Action = "ignore"
)

// ParseAction parses a werror/rerror value.
func ParseAction(s string) (Action, error) {
	switch a := Action(s); a {
	case ActionReport, ActionStop, ActionIgnore:
		return a, nil
	case "enospc", "auto":
		return "", fmt.Errorf("%q is not supported (vmmd has no %s action): use report, stop or ignore", s, s)
	}
	return "", fmt.Errorf("%q is not valid: use report, stop or ignore", s)
}

// PolicyFor returns the action for a failed guest request of the given kind:
// rerror for reads, werror for writes and flushes (as QEMU's virtio-blk
// does). Inactivate and activate are not guest requests: their failures are
// always reported to whoever asked.
func (s DriveSpec) PolicyFor(op Op) Action {
	switch op {
	case OpRead:
		return s.RError
	case OpWrite, OpFlush:
		return s.WError
	}
	return ActionReport
}

// IOStatus is QEMU's BlockDeviceIoStatus, shown by query-block.
type IOStatus string

// The I/O statuses. A drive is ok until the machine stops the VM for one of
// its errors; cont resets it.
const (
	IOStatusOK      IOStatus = "ok"
	IOStatusFailed  IOStatus = "failed"
	IOStatusNoSpace IOStatus = "nospace"
)

// IOStatusOf returns the I/O status a stop for err should record: nospace
// for ENOSPC, failed otherwise, ok for nil.
func IOStatusOf(err error) IOStatus {
	switch {
	case err == nil:
		return IOStatusOK
	case errors.Is(err, syscall.ENOSPC):
		return IOStatusNoSpace
	}
	return IOStatusFailed
}
