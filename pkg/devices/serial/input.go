package serial

import (
	"context"
	"fmt"
)

// Input queues p for the guest to read from RBR and returns how many bytes
// fit in the receive FIFO. It never blocks. Bytes that did not fit were not
// received: the caller still has them and may retry (InputWait does), so
// they do not set LSR.OE, which would make Linux insert a spurious NUL with
// the overrun flag into the tty.
//
// In loopback mode the receiver is disconnected from the line, as on the
// chip, so p is consumed and discarded (the whole length is returned).
func (u *UART) Input(p []byte) int {
	u.mu.Lock()
	var n int
	if u.mcr&mcrLoop != 0 {
		n = len(p)
	} else {
		n = u.rx.write(p)
	}
	pulse := u.updateLocked()
	u.mu.Unlock()
	if pulse {
		u.pulse()
	}
	return n
}

// InputWait queues all of p, waiting while the receive FIFO is full for the
// guest to read. It returns how many bytes were queued, and ctx's error or
// ErrClosed if it stopped early. Only one InputWait at a time is expected
// (one input source per UART); concurrent callers each make progress but
// may interleave their bytes.
func (u *UART) InputWait(ctx context.Context, p []byte) (int, error) {
	total := 0
	for {
		total += u.Input(p[total:])
		if total == len(p) {
			return total, nil
		}
		select {
		case <-u.space:
		case <-ctx.Done():
			return total, fmt.Errorf("serial input: %w", ctx.Err())
		case <-u.closed:
			return total, fmt.Errorf("serial input: %w", ErrClosed)
		}
	}
}
