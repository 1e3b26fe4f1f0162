package serial

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
)

// OutputBufferSize is how many transmitted bytes may wait for the output
// writer. At console speeds it covers a long burst (a boot log) while the
// terminal or socket catches up; beyond it bytes are dropped, not waited
// for (see the package doc).
const OutputBufferSize = 64 << 10

// writeChunk is the most the writer goroutine hands to one Write.
const writeChunk = 4096

// output is the transmit path: a bounded ring filled by vCPUs (under the
// UART's lock) and drained by one writer goroutine, so bytes reach w in
// the order the guest wrote them.
type output struct {
	w io.Writer

	// mu protects the fields below. The writer goroutine holds it only to
	// copy a chunk out, never across Write.
	mu   sync.Mutex
	buf  [OutputBufferSize]byte
	head int // index of the oldest buffered byte
	n    int // buffered bytes
	// queued counts bytes ever accepted into buf; done counts bytes the
	// writer has finished with (written, or lost to a write error).
	queued, done uint64
	// progress, if not nil, is closed (and reset to nil) when done
	// advances or the output closes; Flush waits on it.
	progress chan struct{}
	closed   bool
	err      error // the first write error

	dropped atomic.Uint64
	// kick gets a token when bytes are queued, waking the writer.
	kick chan struct{}
	// exited is closed when the writer goroutine returns.
	exited chan struct{}
}

func newOutput(w io.Writer) *output {
	return &output{w: w, kick: make(chan struct{}, 1), exited: make(chan struct{})}
}

// push queues one byte, or drops and counts it if the buffer is full or
// closed. It never blocks.
func (o *output) push(b byte) {
	o.mu.Lock()
	if o.closed || o.n == len(o.buf) {
		o.mu.Unlock()
		o.dropped.Add(1)
		return
	}
	o.buf[(o.head+o.n)%len(o.buf)] = b
	o.n++
	o.queued++
	o.mu.Unlock()
	select {
	case o.kick <- struct{}{}:
	default:
	}
}

// run is the writer goroutine. It exits when stop is closed, after the
// Write in progress, if any, returns.
func (o *output) run(stop <-chan struct{}) {
	defer close(o.exited)
	chunk := make([]byte, writeChunk)
	for {
		select {
		case <-stop:
			o.shut()
			return
		case <-o.kick:
		}
		for {
			n := o.take(chunk)
			if n == 0 {
				break
			}
			m, err := o.w.Write(chunk[:n])
			o.finish(n, m, err)
			select {
			case <-stop:
				o.shut()
				return
			default:
			}
		}
	}
}

// take moves up to len(dst) of the oldest buffered bytes into dst.
func (o *output) take(dst []byte) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := min(len(dst), o.n)
	first := min(n, len(o.buf)-o.head)
	copy(dst, o.buf[o.head:o.head+first])
	copy(dst[first:n], o.buf[:n-first])
	o.head = (o.head + n) % len(o.buf)
	o.n -= n
	return n
}

// finish records the outcome of writing n bytes, of which Write reported m.
func (o *output) finish(n, m int, err error) {
	m = max(0, min(m, n)) // a Writer breaking its contract must not skew the counts
	if err == nil && m < n {
		err = io.ErrShortWrite
	}
	if m < n {
		o.dropped.Add(uint64(n - m))
	}
	o.mu.Lock()
	o.done += uint64(n)
	if err != nil && o.err == nil {
		o.err = err
	}
	o.wakeLocked()
	o.mu.Unlock()
}

// shut stops accepting bytes and discards (counting) what is buffered.
func (o *output) shut() {
	o.mu.Lock()
	o.closed = true
	o.dropped.Add(uint64(o.n))
	o.n = 0
	o.wakeLocked()
	o.mu.Unlock()
}

func (o *output) wakeLocked() {
	if o.progress != nil {
		close(o.progress)
		o.progress = nil
	}
}

// flush waits until every byte queued before the call has been handed to
// the writer. stop is the UART's closed channel: once it is closed the
// writer will not take more bytes, even if it is still stuck in a Write.
func (o *output) flush(ctx context.Context, stop <-chan struct{}) error {
	o.mu.Lock()
	target := o.queued
	for o.done < target {
		if o.closed {
			o.mu.Unlock()
			return fmt.Errorf("flush serial output: %w", ErrClosed)
		}
		if o.progress == nil {
			o.progress = make(chan struct{})
		}
		ch := o.progress
		o.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("flush serial output: %w", ctx.Err())
		case <-stop:
			// The writer takes nothing more after Close, even if it
			// is still inside a Write.
			o.mu.Lock()
			if o.done < target {
				o.mu.Unlock()
				return fmt.Errorf("flush serial output: %w", ErrClosed)
			}
			continue
		}
		o.mu.Lock()
	}
	err := o.err
	o.mu.Unlock()
	if err != nil {
		return fmt.Errorf("write serial output: %w", err)
	}
	return nil
}

// Flush waits until every byte the guest transmitted before the call has
// been written to the output writer, or ctx ends, or the UART is closed
// (ErrClosed). Like bufio.Writer, a write error is sticky: once a Write to
// the output failed, Flush returns that first error (the bytes are counted
// in Dropped).
func (u *UART) Flush(ctx context.Context) error { return u.out.flush(ctx, u.closed) }

// Dropped returns how many transmitted bytes never reached the output
// writer: the buffer was full (the writer was slower than the guest), the
// UART was closed, or a Write failed.
func (u *UART) Dropped() uint64 { return u.out.dropped.Load() }
