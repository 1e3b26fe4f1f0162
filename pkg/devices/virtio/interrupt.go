package virtio

import "fmt"

// interrupt sets an interrupt status bit and drives the line, if the
// driver is up (see the package documentation for the line discipline).
func (t *Transport) interrupt(bit uint32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.status&StatusDriverOK != 0 {
		t.interruptLocked(bit)
	}
}

func (t *Transport) interruptLocked(bit uint32) {
	old := t.intStatus
	t.intStatus |= bit
	switch {
	case old == 0:
		t.setLineLocked(true)
	case old&bit == 0:
		// A new cause while the line is already high: make a fresh edge
		// so that an edge-triggered pin delivers it too.
		t.setLineLocked(false)
		t.setLineLocked(true)
	}
}

// ackLocked clears acknowledged bits and lowers the line when none is left.
func (t *Transport) ackLocked(v uint32) {
	t.intStatus &^= v
	if t.intStatus == 0 && t.lineHigh {
		t.setLineLocked(false)
	}
}

func (t *Transport) setLineLocked(level bool) {
	t.lineHigh = level
	if t.line == nil {
		return
	}
	if err := t.line(t.irq, level); err != nil {
		t.irqFailures.Add(1)
		t.report(fmt.Errorf("virtio device %d: set IRQ %d to %v: %w", t.devID, t.irq, level, err))
	}
}
