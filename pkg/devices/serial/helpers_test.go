package serial

import (
	"bytes"
	"sync"
	"testing"
	"time"
)

// irqRec records calls to the IRQ line.
type irqRec struct {
	mu     sync.Mutex
	levels []bool
	irqs   []uint32
	fail   error
}

func (r *irqRec) line(irq uint32, level bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	r.levels = append(r.levels, level)
	r.irqs = append(r.irqs, irq)
	return nil
}

// pulses returns the number of raise-then-lower pairs, failing the test if
// the calls are not exactly such pairs on the expected line.
func (r *irqRec) pulses(t *testing.T) int {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.levels)%2 != 0 {
		t.Fatalf("IRQ line calls %v: not raise/lower pairs", r.levels)
	}
	for i, l := range r.levels {
		if l != (i%2 == 0) {
			t.Fatalf("IRQ line calls %v: call %d is %v", r.levels, i, l)
		}
		if r.irqs[i] != COM1IRQ {
			t.Fatalf("IRQ line call %d on irq %d, want %d", i, r.irqs[i], COM1IRQ)
		}
	}
	return len(r.levels) / 2
}

// syncBuf is a goroutine-safe bytes.Buffer.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

// newTest returns a COM1 UART wired to a recording IRQ line and a buffer,
// closed (and its writer goroutine joined) when the test ends.
func newTest(t *testing.T) (*UART, *irqRec, *syncBuf) {
	t.Helper()
	irq := &irqRec{}
	out := &syncBuf{}
	u := New(COM1IRQ, irq.line, out)
	t.Cleanup(func() { closeAndJoin(t, u) })
	return u, irq, out
}

func closeAndJoin(t *testing.T, u *UART) {
	t.Helper()
	if err := u.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	select {
	case <-u.out.exited:
	case <-time.After(10 * time.Second):
		t.Error("writer goroutine did not exit after Close")
	}
}

func in(u *UART, reg int) byte {
	b := []byte{0}
	u.PortIn(COM1Base+uint16(reg), b)
	return b[0]
}

func out(u *UART, reg int, v byte) {
	u.PortOut(COM1Base+uint16(reg), []byte{v})
}
