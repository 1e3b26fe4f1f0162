package blk

import "context"

// Backend is the storage behind the device (the machine adapts its block
// drives to it). Methods that block take the device's context, which is
// cancelled when the device is closed; backends apply their own timeouts.
type Backend interface {
	// ReadAt reads len(p) bytes at byte offset off. Offsets and lengths
	// are multiples of 512. A short count with a nil error is treated as
	// an error.
	ReadAt(ctx context.Context, p []byte, off int64) (int, error)
	// WriteAt writes p at byte offset off, with the same rules.
	WriteAt(ctx context.Context, p []byte, off int64) (int, error)
	// Flush makes completed writes durable.
	Flush(ctx context.Context) error
	// Size returns the image size in bytes.
	Size() uint64
	// ReadOnly reports whether the image may not be written.
	ReadOnly() bool
	// ID returns the drive's identifier, answered to GET_ID (at most 20
	// bytes are sent).
	ID() string
}

// Op names the operation of a failed request, for the error policy.
type Op string

// The operations. The values match package block's operation names.
const (
	OpRead  Op = "read"
	OpWrite Op = "write"
	OpFlush Op = "flush"
)

// Action is what the device does about a failed backend request.
type Action int

// The actions.
const (
	// ActionReport completes the request with VIRTIO_BLK_S_IOERR.
	ActionReport Action = iota
	// ActionIgnore completes the request as if it had succeeded.
	ActionIgnore
	// ActionStop keeps the request pending and stops the device taking
	// new ones; OnStop is called and the request is retried on Resume.
	ActionStop
)

// String returns the action's werror/rerror name.
func (a Action) String() string {
	switch a {
	case ActionReport:
		return "report"
	case ActionIgnore:
		return "ignore"
	case ActionStop:
		return "stop"
	}
	return "unknown"
}

// ErrorPolicy decides what to do about a backend error. A nil policy
// reports every error; unknown actions are treated as report.
type ErrorPolicy func(op Op, err error) Action
