package serial

import (
	"context"
	"testing"
	"time"
)

// FuzzUART drives a UART with arbitrary port accesses and input. It must
// never panic, and after every step the registers must stay within what a
// 16550A can show; at the end its state must restore into a fresh UART.
//
// Each step takes 3 bytes: op, value, extra. op bits 0-2 select the
// register, bit 3 read/write, bits 4-5 the width (1, 2, 4 or 0 bytes), bit 6
// feeds extra%8 bytes of input instead, bit 7 picks an unaligned base.
func FuzzUART(f *testing.F) {
	f.Add([]byte{0x08 | regIER, 0x0f, 0, 0x08 | regData, 'a', 0, regIIR, 0, 0})
	f.Add([]byte{0x08 | regMCR, 0x1f, 0, 0x08 | regData, 'b', 0, regData, 0, 0, regLSR, 0, 0})
	f.Add([]byte{0x08 | regLCR, 0x80, 0, 0x28 | regData, 1, 2, 0x40, 0, 7, 0x38 | regMSR, 0, 0})
	f.Fuzz(func(t *testing.T, script []byte) {
		irq := &irqRec{}
		u := New(COM1IRQ, irq.line, nil)
		defer u.Close()
		buf := make([]byte, 4)
		for i := 0; i+2 < len(script); i += 3 {
			op, v, extra := script[i], script[i+1], script[i+2]
			reg := uint16(op & 7)
			base := uint16(COM1Base)
			if op&0x80 != 0 {
				base = 0xfffe // register numbers wrap; must still not panic
			}
			width := []int{1, 2, 4, 0}[(op>>4)&3]
			data := buf[:width]
			for j := range data {
				data[j] = v + byte(j)
			}
			switch {
			case op&0x40 != 0:
				u.Input(script[i:min(len(script), i+int(extra%8))])
			case op&0x08 != 0:
				u.PortOut(base+reg, data)
			default:
				u.PortIn(base+reg, data)
			}
			checkInvariants(t, u)
		}
		_ = irq.pulses(t)
		st := u.State()
		v := New(COM1IRQ, nil, nil)
		defer v.Close()
		if err := v.SetState(st); err != nil {
			t.Fatalf("state of a live UART does not restore: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := u.Flush(ctx); err != nil {
			t.Fatalf("Flush: %v", err)
		}
	})
}

func checkInvariants(t *testing.T, u *UART) {
	t.Helper()
	u.mu.Lock()
	iir, lsr := u.iirLocked(), u.lsrLocked()
	ier, mcr := u.ier, u.mcr
	n := u.rx.len()
	high := u.intrHigh
	u.mu.Unlock()
	switch iir & iirID {
	case iirNoInt, iirRLS, iirRDA, iirTHRE, iirMS:
	default:
		t.Fatalf("IIR %#02x: impossible interrupt ID", iir)
	}
	if iir&0x30 != 0 {
		t.Fatalf("IIR %#02x: reserved bits set", iir)
	}
	if lsr&(lsrTHRE|lsrTEMT) != lsrTHRE|lsrTEMT {
		t.Fatalf("LSR %#02x: transmitter not empty", lsr)
	}
	if (lsr&lsrDR != 0) != (n > 0) {
		t.Fatalf("LSR %#02x with %d bytes in the FIFO", lsr, n)
	}
	if ier&^ierMask != 0 || mcr&^mcrMask != 0 {
		t.Fatalf("IER %#02x / MCR %#02x: reserved bits stored", ier, mcr)
	}
	if n > RxFIFOSize {
		t.Fatalf("FIFO holds %d bytes", n)
	}
	if high != (iir&iirNoInt == 0) {
		t.Fatalf("INTR level %v with IIR %#02x", high, iir)
	}
}
