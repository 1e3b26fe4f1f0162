package migrate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// limiter paces the outgoing stream to max-bandwidth. It measures from the
// last rate change, so a new limit applies at once without a burst or a
// penalty for what was sent before.
type limiter struct {
	mu    sync.Mutex
	rate  uint64 // bytes per second; 0 = unlimited
	since time.Time
	sent  uint64
	// off: the guest is stopped; nothing may slow the rest of the stream
	// down, not even a max-bandwidth set meanwhile.
	off bool
}

func newLimiter(rate uint64) *limiter { return &limiter{rate: rate, since: time.Now()} }

func (l *limiter) setRate(rate uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.off {
		return
	}
	l.rate, l.since, l.sent = rate, time.Now(), 0
}

// disable lifts the limit for good (switchover).
func (l *limiter) disable() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rate, l.off = 0, true
}

// wait accounts n bytes and sleeps until sending them keeps within the rate.
func (l *limiter) wait(ctx context.Context, n int) error {
	l.mu.Lock()
	if l.rate == 0 {
		l.mu.Unlock()
		return nil
	}
	l.sent += uint64(n)
	due := l.since.Add(time.Duration(float64(l.sent) / float64(l.rate) * float64(time.Second)))
	l.mu.Unlock()
	d := time.Until(due)
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// limitedWriter paces writes through a limiter. On a network connection
// it also bounds each write: a destination (or link) that stops taking data
// fails the migration after stall instead of hanging it until TCP gives up
// minutes later.
type limitedWriter struct {
	ctx   context.Context
	w     io.Writer
	l     *limiter
	stall time.Duration
}

func (w limitedWriter) Write(p []byte) (int, error) {
	if err := w.l.wait(w.ctx, len(p)); err != nil {
		return 0, err
	}
	c, ok := w.w.(net.Conn)
	if !ok || w.stall <= 0 {
		return w.w.Write(p)
	}
	if err := c.SetWriteDeadline(time.Now().Add(w.stall)); err != nil {
		return 0, err
	}
	n, err := c.Write(p)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("the destination took no data for %v (x-handover-timeout): %w", w.stall, err)
	}
	return n, err
}
