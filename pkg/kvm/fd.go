package kvm

import (
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// fdOwner owns one raw file descriptor. Ioctls hold the read lock so Close
// cannot close (and the kernel cannot recycle) the number while an ioctl is
// using it.
type fdOwner struct {
	mu     sync.RWMutex
	fd     int
	closed bool
}

// with runs f with the descriptor, or returns ErrClosed wrapped with op.
func (o *fdOwner) with(op string, f func(fd int) error) error {
	o.mu.RLock()
	defer o.mu.RUnlock()
	if o.closed {
		return fmt.Errorf("%s: %w", op, ErrClosed)
	}
	return f(o.fd)
}

// close closes the descriptor once; later calls return nil.
func (o *fdOwner) close(what string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil
	}
	o.closed = true
	if err := unix.Close(o.fd); err != nil {
		return fmt.Errorf("close %s fd %d: %w", what, o.fd, err)
	}
	return nil
}

// raw returns the descriptor number, or -1 once closed.
func (o *fdOwner) raw() int {
	o.mu.RLock()
	defer o.mu.RUnlock()
	if o.closed {
		return -1
	}
	return o.fd
}

// ioctlNamed wraps the common pattern: one ioctl with a pointer argument whose
// error is named after the request.
func ioctlNamed[T any](o *fdOwner, name string, req uintptr, arg *T) error {
	return o.with(name, func(fd int) error {
		if _, err := ioctlPtr(fd, req, arg); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	})
}

// ioctlValue runs an ioctl whose argument is an integer and returns the
// ioctl's non-negative result.
func ioctlValue(o *fdOwner, name string, req, arg uintptr) (int, error) {
	var r uintptr
	err := o.with(name, func(fd int) error {
		var err error
		r, err = ioctlRetry(fd, req, arg)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	})
	return int(r), err
}
