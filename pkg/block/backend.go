package block

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"
)

// WriteFlags modify a write.
type WriteFlags uint32

// WriteFUA asks for the write to be on stable storage when it completes
// (NBD_CMD_FLAG_FUA; a write plus fdatasync for files).
const WriteFUA WriteFlags = 1 << 0

// Backend is the storage under a drive: a raw file or an NBD export. Every
// method that can block takes a context and also applies the backend's own
// timeout, so a hung server gives an error wrapping ErrTimeout, never a hang.
//
// A backend starts released (no image lock, no NBD connection) and knows
// its size. Acquire and Release are what a drive's Activate and Inactivate
// do to the storage; both are idempotent.
type Backend interface {
	// ReadAt fills p from offset off. Offset and length must be multiples
	// of BlockSize; p itself may have any alignment.
	ReadAt(ctx context.Context, p []byte, off int64) error
	// WriteAt writes p at offset off, with the same alignment rule.
	WriteAt(ctx context.Context, p []byte, off int64, flags WriteFlags) error
	// Flush makes completed writes durable.
	Flush(ctx context.Context) error
	// Acquire takes the image for this process (file: image locks; NBD:
	// connect) and re-reads the size. On a backend that is acquired but
	// broken (Err is not nil) it repairs what it can (NBD reconnects).
	Acquire(ctx context.Context) error
	// Release gives the image up (file: drop the locks; NBD: disconnect).
	// The caller has drained and flushed first.
	Release(ctx context.Context) error
	// Err is nil when the backend can serve requests, otherwise why not
	// (released, connection broken, an earlier request stuck in the kernel).
	Err() error
	// Size is the image size in bytes as last read.
	Size() int64
	// BlockSize is the request alignment in bytes (512 or more, a power
	// of two); the guest device should advertise it.
	BlockSize() int
	// Describe names the storage for query-block: the path or the URI.
	Describe() string
	// Close releases everything (bounded by ctx and the timeout). Further
	// calls fail with ErrClosed.
	Close(ctx context.Context) error
}

// BackendOptions configure a backend.
type BackendOptions struct {
	// ReadOnly opens the image read-only.
	ReadOnly bool
	// Direct bypasses the host page cache (files only).
	Direct bool
	// Timeout bounds every operation; 0 means DefaultTimeout.
	Timeout time.Duration
	// ReconnectInterval is the least time between two reconnection
	// attempts an NBD backend makes on its own after its connection broke;
	// 0 means one second. Activate always tries at once.
	ReconnectInterval time.Duration
	// Log receives warnings and details (lock holders, reconnects). The
	// zero value discards them.
	Log zerolog.Logger
}

func (o BackendOptions) timeout() time.Duration {
	if o.Timeout <= 0 {
		return DefaultTimeout
	}
	return o.Timeout
}

// OpenBackend opens the storage a spec names, released (see Backend).
func OpenBackend(ctx context.Context, spec DriveSpec, log zerolog.Logger) (Backend, error) {
	opts := BackendOptions{
		ReadOnly: spec.ReadOnly,
		Direct:   spec.Cache == CacheNone,
		Timeout:  spec.IOTimeout(),
		Log:      log,
	}
	if spec.IsNBD() {
		addr, err := ParseNBDURI(spec.File)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", spec.File, err)
		}
		return OpenNBD(ctx, addr, opts)
	}
	return OpenFile(ctx, spec.File, opts)
}

// deadline returns the earlier of now+timeout and ctx's deadline.
func deadline(ctx context.Context, timeout time.Duration) time.Time {
	d := time.Now().Add(timeout)
	if cd, ok := ctx.Deadline(); ok && cd.Before(d) {
		return cd
	}
	return d
}

// checkAligned refuses requests a backend cannot serve.
func checkAligned(op Op, off int64, n int, bs int) error {
	if off < 0 || off%int64(bs) != 0 || n%bs != 0 {
		return fmt.Errorf("%s %d bytes at offset %d: %w: not aligned to the %d-byte block size", op, n, off, ErrInvalidRequest, bs)
	}
	return nil
}
