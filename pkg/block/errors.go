package block

import (
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// Sentinel errors. Errors from the drive and its backends wrap one of these
// (and, where the cause is a system error, the syscall.Errno as well), so
// callers test with errors.Is instead of matching text.
var (
	// ErrIO marks a failed backend request: the storage answered with an
	// error, timed out or went away. Only these errors are subject to the
	// werror/rerror policy; the others below are bad requests.
	ErrIO = errors.New("I/O error")
	// ErrTimeout marks a backend request that did not complete within the
	// drive's timeout. Errors wrapping it also wrap ErrIO.
	ErrTimeout = errors.New("timed out")
	// ErrInactive marks a request refused because the drive is inactive.
	ErrInactive = errors.New("drive is inactive")
	// ErrReadOnly marks a write refused because the drive is read-only.
	ErrReadOnly = errors.New("drive is read-only")
	// ErrInvalidRequest marks a request outside the disk or not aligned to
	// its block size.
	ErrInvalidRequest = errors.New("invalid request")
	// ErrClosed marks use of a closed drive or backend.
	ErrClosed = errors.New("closed")
)

// IOError is a failed read, write or flush as the device emulation sees it.
// It wraps ErrIO and the backend's cause (a syscall.Errno, ErrTimeout, an
// injected fault, a broken connection).
type IOError struct {
	Op  Op    // OpRead, OpWrite or OpFlush
	Off int64 // byte offset; 0 for flush
	Len int   // byte count; 0 for flush
	Err error // the cause
}

// Error names the operation and the cause, e.g.
// "write 4096 bytes at offset 8192: timed out after 5s".
func (e *IOError) Error() string {
	if e.Op == OpFlush {
		return fmt.Sprintf("flush: %v", e.Err)
	}
	return fmt.Sprintf("%s %d bytes at offset %d: %v", e.Op, e.Len, e.Off, e.Err)
}

// Unwrap returns ErrIO and the cause, so errors.Is works for both.
func (e *IOError) Unwrap() []error { return []error{ErrIO, e.Err} }

// InactiveError is a request refused on an inactive drive. Its text is
// QEMU's ("Permission 'write' unavailable on inactive node").
type InactiveError struct {
	Perm string // "write" or "consistent read"
}

// Error returns QEMU's text for the refused permission.
func (e *InactiveError) Error() string {
	return fmt.Sprintf("Permission '%s' unavailable on inactive node", e.Perm)
}

// Unwrap makes errors.Is(err, ErrInactive) true.
func (e *InactiveError) Unwrap() error { return ErrInactive }

// LockError is an image lock held by another process (or another open file
// description in this one). Its text is exactly QEMU's, because management
// tools match it; the path and the lock byte are logged, not put in the text.
type LockError struct {
	Perm   string // QEMU permission name, "write" in practice
	Shared bool   // we could not share the permission (we only read)
	Path   string // image path, for logs
	Byte   int64  // lock byte that conflicted, for logs
}

// Error returns `Failed to get "write" lock` or
// `Failed to get shared "write" lock`, as QEMU does.
func (e *LockError) Error() string {
	if e.Shared {
		return fmt.Sprintf("Failed to get shared %q lock", e.Perm)
	}
	return fmt.Sprintf("Failed to get %q lock", e.Perm)
}

// InjectedError is a failure produced by a fault rule, not by the storage.
type InjectedError struct {
	Op    Op
	Errno syscall.Errno
}

// Error reads like "input/output error (EIO, injected)".
func (e *InjectedError) Error() string {
	return fmt.Sprintf("%v (%s, injected)", e.Errno, errnoName(e.Errno))
}

// Unwrap makes errors.Is(err, syscall.EIO) (or whichever errno) true.
func (e *InjectedError) Unwrap() error { return e.Errno }

// timeoutError is a request that exceeded its timeout.
type timeoutError struct {
	what    string
	timeout string
}

// Error names what timed out and the limit.
func (e *timeoutError) Error() string { return fmt.Sprintf("%s timed out after %s", e.what, e.timeout) }

// Unwrap makes the error match both ErrTimeout and ErrIO.
func (e *timeoutError) Unwrap() []error { return []error{ErrTimeout, ErrIO} }

// errnoName returns the symbolic name ("EIO") of an errno, or its number.
func errnoName(e syscall.Errno) string {
	if n := unix.ErrnoName(e); n != "" {
		return n
	}
	return fmt.Sprintf("errno %d", int(e))
}
