package serial

import (
	"sync/atomic"
	"testing"
)

// These tests replay what Linux's 8250 driver (drivers/tty/serial/8250/
// 8250_port.c) does to the chip, and check it reaches the conclusions we
// need: a 16550A, no THRE or TXEN bugs, working interrupt-driven I/O.

// linuxAutoconfig follows autoconfig() and autoconfig_16550a() and returns
// the port type it would settle on.
func linuxAutoconfig(t *testing.T, u *UART) string {
	t.Helper()
	scratch := in(u, regIER)
	out(u, regIER, 0)
	scratch2 := in(u, regIER) & 0x0f
	out(u, regIER, 0x0f)
	scratch3 := in(u, regIER) & 0x0f
	out(u, regIER, scratch)
	if scratch2 != 0 || scratch3 != 0x0f {
		return "none (IER test failed)"
	}
	saveMCR, saveLCR := in(u, regMCR), in(u, regLCR)
	out(u, regMCR, mcrLoop|0x0a)
	status1 := in(u, regMSR) & 0xf0
	out(u, regMCR, saveMCR)
	if status1 != 0x90 {
		return "none (LOOP test failed)"
	}
	out(u, regLCR, 0xbf)
	out(u, regIIR, 0) // EFR
	out(u, regLCR, 0)
	out(u, regIIR, fcrEnable)
	typ := "unknown"
	switch in(u, regIIR) >> 6 {
	case 0:
		typ = "16450"
	case 2:
		typ = "16550"
	case 3:
		typ = linuxAutoconfig16550A(u)
	}
	out(u, regLCR, saveLCR)
	// Reset the UART.
	out(u, regMCR, saveMCR)
	out(u, regIIR, fcrEnable)
	out(u, regIIR, fcrEnable|fcrClearRx|fcrClearTx)
	out(u, regIIR, 0)
	in(u, regData)
	out(u, regIER, 0)
	return typ
}

func linuxAutoconfig16550A(u *UART) string {
	out(u, regLCR, lcrDLAB)
	if in(u, regIIR) == 0 { // EFR read
		return "16650 (EFRv1)"
	}
	out(u, regLCR, 0xbf)
	if in(u, regIIR) == 0 {
		return "16650V2 (EFRv2)"
	}
	out(u, regLCR, 0)
	status1 := in(u, regMCR)
	out(u, regLCR, 0xe0)
	status2 := in(u, regIIR) // EXCR1
	if (status2^status1)&mcrLoop == 0 {
		out(u, regLCR, 0)
		out(u, regMCR, status1^mcrLoop)
		out(u, regLCR, 0xe0)
		status2 = in(u, regIIR)
		out(u, regLCR, 0)
		out(u, regMCR, status1)
		if (status2^status1)&mcrLoop != 0 {
			return "NS16550A"
		}
	}
	out(u, regLCR, 0)
	out(u, regIIR, fcrEnable|0x20)
	s1 := in(u, regIIR) >> 5
	out(u, regIIR, fcrEnable)
	out(u, regLCR, lcrDLAB)
	out(u, regIIR, fcrEnable|0x20)
	s2 := in(u, regIIR) >> 5
	out(u, regIIR, fcrEnable)
	out(u, regLCR, 0)
	if s1 == 6 && s2 == 7 {
		return "16750"
	}
	iersave := in(u, regIER)
	out(u, regIER, iersave&^0x40)
	if in(u, regIER)&0x40 == 0 {
		out(u, regIER, iersave|0x40)
		if in(u, regIER)&0x40 != 0 {
			return "XScale"
		}
	}
	out(u, regIER, iersave)
	return "16550A"
}

func TestLinuxDetects16550A(t *testing.T) {
	u, _, _ := newTest(t)
	if got := linuxAutoconfig(t, u); got != "16550A" {
		t.Fatalf("Linux would detect %q, want 16550A", got)
	}
}

func TestLinuxStartupFindsNoBugs(t *testing.T) {
	u, _, _ := newTest(t)
	linuxAutoconfig(t, u)
	// serial8250_do_startup
	out(u, regIIR, fcrEnable)
	out(u, regIIR, fcrEnable|fcrClearRx|fcrClearTx)
	out(u, regIIR, 0)
	in(u, regLSR)
	in(u, regData)
	in(u, regIIR)
	in(u, regMSR)
	if in(u, regLSR) == 0xff {
		t.Fatal("LSR reads 0xff: Linux gives up on the port")
	}
	// The UART_BUG_THRE test.
	out(u, regIER, ierTHRE)
	iir1 := in(u, regIIR)
	out(u, regIER, 0)
	out(u, regIER, ierTHRE)
	iir := in(u, regIIR)
	out(u, regIER, 0)
	if iir1&iirNoInt == 0 && iir&iirNoInt != 0 {
		t.Error("THRE not re-asserted when ETBEI is toggled: Linux sets UART_BUG_THRE and polls with a timer")
	}
	if iir1&iirNoInt != 0 {
		t.Error("no THRE interrupt when ETBEI is enabled")
	}
	// The UART_BUG_TXEN test.
	out(u, regLCR, 0x03)
	out(u, regMCR, mcrDTR|mcrRTS|mcrOut2)
	out(u, regIER, ierTHRE)
	lsr := in(u, regLSR)
	iir = in(u, regIIR)
	out(u, regIER, 0)
	if lsr&lsrTEMT != 0 && iir&iirNoInt != 0 {
		t.Error("no THRE interrupt with the transmitter empty: Linux sets UART_BUG_TXEN")
	}
}

// TestLinuxInterruptDrivenIO runs a model of serial8250_interrupt: on each
// edge it loops over IIR, drains the receiver while LSR.DR, and refills THR
// (16 bytes, the 16550A's tx_loadsz) while THRE, turning ETBEI off when the
// transmit buffer is empty.
func TestLinuxInterruptDrivenIO(t *testing.T) {
	var irr atomic.Int32 // the PIC's request latch for our line
	var lastLevel atomic.Bool
	line := func(irq uint32, level bool) error {
		if level && !lastLevel.Load() {
			irr.Add(1) // edge-triggered: only rising edges latch
		}
		lastLevel.Store(level)
		return nil
	}
	o := &syncBuf{}
	u := New(COM1IRQ, line, o)
	t.Cleanup(func() { closeAndJoin(t, u) })
	linuxAutoconfig(t, u)
	out(u, regLCR, 0x03)
	out(u, regIIR, fcrEnable|fcrClearRx|fcrClearTx|0x80)
	out(u, regMCR, mcrDTR|mcrRTS|mcrOut2)
	out(u, regIER, ierRDA|ierRLS)

	tx := []byte("Linux version 6.1.0 ... console [ttyS0] enabled\n")
	var rx []byte
	ier := byte(ierRDA | ierRLS)
	startTx := func() {
		if ier&ierTHRE == 0 {
			ier |= ierTHRE
			out(u, regIER, ier)
		}
	}
	handle := func() int {
		handled := 0
		for pass := 0; pass < 512; pass++ {
			iir := in(u, regIIR)
			if iir&iirNoInt != 0 {
				return handled
			}
			handled++
			lsr := in(u, regLSR)
			for lsr&lsrDR != 0 {
				rx = append(rx, in(u, regData))
				lsr = in(u, regLSR)
			}
			if lsr&lsrTHRE != 0 && ier&ierTHRE != 0 {
				if len(tx) == 0 {
					ier &^= ierTHRE
					out(u, regIER, ier)
					continue
				}
				n := min(16, len(tx))
				for _, b := range tx[:n] {
					out(u, regData, b)
				}
				tx = tx[n:]
			}
		}
		t.Fatal("interrupt handler looped 512 times")
		return handled
	}
	run := func() {
		for i := 0; irr.Load() > 0; i++ {
			if i > 1000 {
				t.Fatal("interrupt storm")
			}
			irr.Add(-1)
			handle()
		}
	}
	want := string(tx)
	startTx()
	run()
	u.Input([]byte("root\n"))
	run()
	if err := u.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := string(o.bytes()); got != want {
		t.Errorf("transmitted %q, want %q", got, want)
	}
	if string(rx) != "root\n" {
		t.Errorf("received %q", rx)
	}
	if len(tx) != 0 || ier&ierTHRE != 0 {
		t.Errorf("transmit not finished: %d bytes left, IER %#02x", len(tx), ier)
	}
}
