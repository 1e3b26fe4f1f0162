package serial

import (
	"errors"
	"testing"
)

func TestPowerOnRegisters(t *testing.T) {
	u, irq, _ := newTest(t)
	tests := []struct {
		name string
		reg  int
		want byte
	}{
		{"IER", regIER, 0x00},
		{"IIR", regIIR, iirNoInt},
		{"LCR", regLCR, 0x00},
		{"MCR", regMCR, mcrOut2},
		{"LSR", regLSR, lsrTHRE | lsrTEMT},
		{"MSR", regMSR, msrDCD | msrDSR | msrCTS},
		{"SCR", regSCR, 0x00},
		{"RBR empty", regData, 0x00},
	}
	for _, tc := range tests {
		if got := in(u, tc.reg); got != tc.want {
			t.Errorf("%s = %#02x, want %#02x", tc.name, got, tc.want)
		}
	}
	out(u, regLCR, lcrDLAB)
	if dll, dlm := in(u, regData), in(u, regIER); dll != 0x0c || dlm != 0 {
		t.Errorf("divisor = %#02x/%#02x, want 0x0c/0x00 (9600 baud)", dll, dlm)
	}
	if n := irq.pulses(t); n != 0 {
		t.Errorf("%d interrupts at power-on, want 0", n)
	}
}

func TestRegisterWriteRead(t *testing.T) {
	tests := []struct {
		name  string
		reg   int
		write byte
		want  byte
	}{
		{"SCR keeps any value", regSCR, 0xa5, 0xa5},
		{"IER upper bits read 0", regIER, 0xff, 0x0f},
		{"IER zero", regIER, 0x00, 0x00},
		{"LCR keeps all bits", regLCR, 0x7f, 0x7f},
		{"MCR upper bits read 0", regMCR, 0xef, 0x0f},
		{"LSR is read-only", regLSR, 0x00, lsrTHRE | lsrTEMT},
		{"MSR is read-only", regMSR, 0x00, msrDCD | msrDSR | msrCTS},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, _, _ := newTest(t)
			out(u, tc.reg, tc.write)
			if got := in(u, tc.reg); got != tc.want {
				t.Errorf("wrote %#02x, read %#02x, want %#02x", tc.write, got, tc.want)
			}
		})
	}
}

func TestDLAB(t *testing.T) {
	u, irq, o := newTest(t)
	out(u, regIER, ierRDA)
	out(u, regLCR, 0x83) // DLAB, 8N1
	out(u, regData, 0x01)
	out(u, regIER, 0x00)
	if got := in(u, regData); got != 0x01 {
		t.Errorf("DLL = %#02x, want 0x01", got)
	}
	if got := in(u, regIER); got != 0x00 {
		t.Errorf("DLM = %#02x, want 0x00", got)
	}
	out(u, regIER, 0x12)
	out(u, regLCR, 0x03)
	if got := in(u, regIER); got != ierRDA {
		t.Errorf("IER after DLAB writes = %#02x, want %#02x (unchanged)", got, ierRDA)
	}
	if err := u.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(o.bytes()) != 0 {
		t.Errorf("a DLL write was transmitted: %q", o.bytes())
	}
	out(u, regLCR, lcrDLAB)
	if dll, dlm := in(u, regData), in(u, regIER); dll != 0x01 || dlm != 0x12 {
		t.Errorf("divisor = %#02x/%#02x, want 0x01/0x12", dll, dlm)
	}
	// The receive FIFO is not read through DLL.
	u.Input([]byte("z"))
	if got := in(u, regData); got != 0x01 {
		t.Errorf("DLL with data waiting = %#02x", got)
	}
	out(u, regLCR, 0)
	if got := in(u, regData); got != 'z' {
		t.Errorf("RBR = %q, want 'z'", got)
	}
	_ = irq.pulses(t)
}

func TestFCRAndIIRFIFOBits(t *testing.T) {
	tests := []struct {
		fcr      byte
		wantIIR  byte
		wantKept byte
	}{
		{0x00, 0x01, 0x00},
		{0x01, 0xc1, 0x01},
		{0x07, 0xc1, 0x01}, // clear bits self-clear
		{0xc7, 0xc1, 0xc1}, // trigger level kept
		{0x27, 0xc1, 0x01}, // 64-byte FIFO bit ignored: not a 16750
		{0xc6, 0x01, 0xc0},
	}
	for _, tc := range tests {
		u, _, _ := newTest(t)
		out(u, regIIR, tc.fcr)
		if got := in(u, regIIR); got != tc.wantIIR {
			t.Errorf("FCR %#02x: IIR = %#02x, want %#02x", tc.fcr, got, tc.wantIIR)
		}
		if got := u.State().FCR; got != tc.wantKept {
			t.Errorf("FCR %#02x: kept %#02x, want %#02x", tc.fcr, got, tc.wantKept)
		}
	}
}

func TestFCRClearsReceiver(t *testing.T) {
	tests := []struct {
		name      string
		before    byte // FCR before the input arrives
		fcr       byte
		wantClear bool
	}{
		{"clear RX", 0x01, 0x03, true},
		{"clear TX only", 0x01, 0x05, false},
		{"enable FIFOs", 0x00, 0x01, true},
		{"disable FIFOs", 0x01, 0x00, true},
		{"same mode", 0x01, 0xc1, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, _, _ := newTest(t)
			out(u, regIIR, tc.before)
			u.Input([]byte("abc"))
			out(u, regIIR, tc.fcr)
			cleared := in(u, regLSR)&lsrDR == 0
			if cleared != tc.wantClear {
				t.Errorf("receiver cleared = %v, want %v", cleared, tc.wantClear)
			}
		})
	}
}

func TestTHREInterrupt(t *testing.T) {
	u, irq, _ := newTest(t)
	out(u, regIER, ierTHRE)
	if n := irq.pulses(t); n != 1 {
		t.Fatalf("enabling ETBEI with THR empty: %d interrupts, want 1", n)
	}
	if got := in(u, regIIR); got != iirTHRE {
		t.Fatalf("IIR = %#02x, want THRE", got)
	}
	if got := in(u, regIIR); got != iirNoInt {
		t.Fatalf("IIR after acknowledging THRE = %#02x, want no interrupt", got)
	}
	out(u, regData, 'a')
	if n := irq.pulses(t); n != 2 {
		t.Fatalf("after a transmit: %d interrupts, want 2", n)
	}
	// Writes while the interrupt is still pending are not new edges.
	out(u, regData, 'b')
	out(u, regData, 'c')
	if n := irq.pulses(t); n != 2 {
		t.Fatalf("transmits with THRE pending: %d interrupts, want still 2", n)
	}
	if got := in(u, regIIR); got != iirTHRE {
		t.Fatalf("IIR = %#02x, want THRE", got)
	}
	// Rewriting IER with ETBEI already set does not re-arm THRE.
	out(u, regIER, ierTHRE)
	if got := in(u, regIIR); got != iirNoInt {
		t.Errorf("IIR after rewriting the same IER = %#02x, want no interrupt", got)
	}
	// Off and on again re-asserts it (Linux's UART_BUG_THRE test).
	out(u, regIER, 0)
	out(u, regIER, ierTHRE)
	if got := in(u, regIIR); got != iirTHRE {
		t.Errorf("IIR after toggling ETBEI = %#02x, want THRE", got)
	}
	if n := irq.pulses(t); n != 3 {
		t.Errorf("%d interrupts, want 3", n)
	}
	// With ETBEI off, transmitting raises nothing.
	out(u, regIER, 0)
	out(u, regData, 'd')
	if got := in(u, regIIR); got != iirNoInt {
		t.Errorf("IIR with ETBEI off = %#02x", got)
	}
	if n := irq.pulses(t); n != 3 {
		t.Errorf("%d interrupts with ETBEI off, want 3", n)
	}
}

func TestRDAInterrupt(t *testing.T) {
	u, irq, _ := newTest(t)
	u.Input([]byte("ab"))
	if n := irq.pulses(t); n != 0 {
		t.Fatalf("data with ERBFI off raised %d interrupts", n)
	}
	if in(u, regLSR)&lsrDR == 0 {
		t.Fatal("LSR.DR clear with data waiting")
	}
	out(u, regIER, ierRDA)
	if n := irq.pulses(t); n != 1 {
		t.Fatalf("enabling ERBFI with data waiting: %d interrupts, want 1", n)
	}
	if got := in(u, regIIR); got != iirRDA {
		t.Fatalf("IIR = %#02x, want RDA", got)
	}
	if got := in(u, regIIR); got != iirRDA {
		t.Fatalf("IIR read must not acknowledge RDA: %#02x", got)
	}
	if got := in(u, regData); got != 'a' {
		t.Fatalf("RBR = %q", got)
	}
	u.Input([]byte("c")) // while still pending: no new edge
	if n := irq.pulses(t); n != 1 {
		t.Fatalf("%d interrupts, want 1", n)
	}
	for _, want := range []byte("bc") {
		if got := in(u, regData); got != want {
			t.Fatalf("RBR = %q, want %q", got, want)
		}
	}
	if got, lsr := in(u, regIIR), in(u, regLSR); got != iirNoInt || lsr&lsrDR != 0 {
		t.Fatalf("after draining: IIR %#02x LSR %#02x", got, lsr)
	}
	u.Input([]byte("d"))
	if n := irq.pulses(t); n != 2 {
		t.Fatalf("new data after draining: %d interrupts, want 2", n)
	}
}

// overrun fills the receive FIFO through loopback and sends one more byte,
// leaving LSR.OE set, then leaves loopback.
func overrun(u *UART) {
	mcr := in(u, regMCR)
	out(u, regMCR, mcr|mcrLoop)
	for range RxFIFOSize + 1 {
		out(u, regData, 'x')
	}
	out(u, regMCR, mcr)
}

func TestInterruptPriority(t *testing.T) {
	tests := []struct {
		name  string
		ier   byte
		setup func(u *UART)
		want  []byte // successive IIR values, acknowledging each source
	}{
		{
			name: "all four", ier: ierMask,
			setup: func(u *UART) { overrun(u) }, // also leaves RDA, THRE and a modem delta
			want:  []byte{iirRLS, iirRDA, iirTHRE, iirMS, iirNoInt},
		},
		{
			name: "RLS masked", ier: ierRDA | ierTHRE,
			setup: func(u *UART) { overrun(u) },
			want:  []byte{iirRDA, iirTHRE, iirNoInt},
		},
		{
			name: "THRE before modem status", ier: ierTHRE | ierMS,
			setup: func(u *UART) { out(u, regMCR, mcrLoop|mcrRTS) },
			want:  []byte{iirTHRE, iirMS, iirNoInt},
		},
		{
			name: "RDA before THRE", ier: ierRDA | ierTHRE,
			setup: func(u *UART) { u.Input([]byte("q")) },
			want:  []byte{iirRDA, iirTHRE, iirNoInt},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, irq, _ := newTest(t)
			tc.setup(u)
			out(u, regIER, tc.ier)
			for i, want := range tc.want {
				got := in(u, regIIR)
				if got != want {
					t.Fatalf("IIR read %d = %#02x, want %#02x", i, got, want)
				}
				// Acknowledge the way the 8250 driver does.
				switch got {
				case iirRLS:
					in(u, regLSR)
				case iirRDA:
					for in(u, regLSR)&lsrDR != 0 {
						in(u, regData)
					}
				case iirMS:
					in(u, regMSR)
				}
			}
			if n := irq.pulses(t); n < 1 {
				t.Errorf("no interrupt raised")
			}
		})
	}
}

func TestLoopback(t *testing.T) {
	u, irq, o := newTest(t)
	out(u, regIER, ierRDA)
	out(u, regMCR, mcrLoop)
	out(u, regData, 'L')
	if n := irq.pulses(t); n != 1 {
		t.Errorf("looped-back byte raised %d interrupts, want 1 (RDA)", n)
	}
	if lsr := in(u, regLSR); lsr&lsrDR == 0 {
		t.Fatalf("LSR %#02x: looped-back byte not received", lsr)
	}
	if got := in(u, regData); got != 'L' {
		t.Errorf("RBR = %q, want 'L'", got)
	}
	// External input is disconnected in loopback.
	if n := u.Input([]byte("ext")); n != 3 {
		t.Errorf("Input in loopback = %d, want 3 (consumed)", n)
	}
	if lsr := in(u, regLSR); lsr&lsrDR != 0 {
		t.Error("external input reached the receiver in loopback")
	}
	out(u, regMCR, mcrOut2)
	if err := u.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := o.bytes(); len(got) != 0 {
		t.Errorf("loopback byte was sent to the output: %q", got)
	}
}

func TestMSRLines(t *testing.T) {
	tests := []struct {
		mcr  byte
		want byte // MSR & 0xf0
	}{
		{0x00, 0xb0}, {0x0f, 0xb0}, // not in loopback: a ready terminal
		{mcrLoop, 0x00},
		{mcrLoop | mcrRTS, msrCTS},
		{mcrLoop | mcrDTR, msrDSR},
		{mcrLoop | mcrOut1, msrRI},
		{mcrLoop | mcrOut2, msrDCD},
		{mcrLoop | 0x0a, 0x90}, // Linux autoconfig's loopback check
		{mcrLoop | 0x0f, 0xf0},
	}
	for _, tc := range tests {
		u, _, _ := newTest(t)
		out(u, regMCR, tc.mcr)
		if got := in(u, regMSR) & msrLines; got != tc.want {
			t.Errorf("MCR %#02x: MSR lines %#02x, want %#02x", tc.mcr, got, tc.want)
		}
	}
}

func TestMSRDeltas(t *testing.T) {
	u, _, _ := newTest(t)
	in(u, regMSR)
	out(u, regMCR, mcrLoop|mcrOut1|mcrOut2) // CTS, DSR fall; RI rises; DCD stays
	if got := in(u, regMSR); got != msrRI|msrDCD|msrDCTS|msrDDSR {
		t.Errorf("MSR = %#02x, want %#02x", got, msrRI|msrDCD|msrDCTS|msrDDSR)
	}
	if got := in(u, regMSR); got&msrDelta != 0 {
		t.Errorf("MSR deltas not cleared by the read: %#02x", got)
	}
	out(u, regMCR, mcrLoop|mcrOut2) // RI trailing edge
	if got := in(u, regMSR); got&msrDelta != msrTERI {
		t.Errorf("MSR after RI falls = %#02x, want TERI only", got)
	}
}

func TestOverrunSetsOE(t *testing.T) {
	u, _, _ := newTest(t)
	overrun(u)
	lsr := in(u, regLSR)
	if lsr&lsrOE == 0 || lsr&lsrDR == 0 {
		t.Fatalf("LSR after overrun = %#02x, want OE and DR", lsr)
	}
	if lsr = in(u, regLSR); lsr&lsrOE != 0 {
		t.Errorf("OE not cleared by reading LSR: %#02x", lsr)
	}
	if n := len(u.State().RxFIFO); n != RxFIFOSize {
		t.Errorf("FIFO holds %d bytes, want %d", n, RxFIFOSize)
	}
}

func TestWideAccess(t *testing.T) {
	u, _, _ := newTest(t)
	out(u, regSCR, 0x5a)
	out(u, regLCR, lcrDLAB)
	u.PortOut(COM1Base, []byte{0x34, 0x12})
	d := make([]byte, 2)
	u.PortIn(COM1Base, d)
	if d[0] != 0x34 || d[1] != 0x12 {
		t.Errorf("16-bit divisor read = % x, want 34 12", d)
	}
	d = make([]byte, 4)
	u.PortIn(COM1Base+regMSR, d)
	if d[0] != resetLines || d[1] != 0x5a || d[2] != 0xff || d[3] != 0xff {
		t.Errorf("32-bit read at MSR = % x, want b0 5a ff ff", d)
	}
	u.PortOut(COM1Base+regSCR, []byte{1, 2, 3, 4}) // bytes past the UART are ignored
	if got := in(u, regSCR); got != 1 {
		t.Errorf("SCR = %#02x", got)
	}
	u.PortIn(COM1Base, nil)
	u.PortOut(COM1Base, nil)
}

func TestOtherBases(t *testing.T) {
	u, _, _ := newTest(t)
	b := []byte{0}
	u.PortOut(0x2f8+regSCR, []byte{0x77})
	u.PortIn(0x2f8+regSCR, b)
	if b[0] != 0x77 {
		t.Errorf("COM2 SCR = %#02x", b[0])
	}
}

func TestIRQFailureRecorded(t *testing.T) {
	irq := &irqRec{fail: errors.New("KVM_IRQ_LINE: bad fd")}
	u := New(COM1IRQ, irq.line, nil)
	t.Cleanup(func() { closeAndJoin(t, u) })
	out(u, regIER, ierTHRE)
	in(u, regIIR)
	out(u, regData, 'x')
	n, err := u.IRQFailures()
	if n != 2 || err == nil || err.Error() != "KVM_IRQ_LINE: bad fd" {
		t.Errorf("IRQFailures() = %d, %v; want 2 and the first error", n, err)
	}
}

func TestNilIRQLine(t *testing.T) {
	u := New(COM1IRQ, nil, nil)
	t.Cleanup(func() { closeAndJoin(t, u) })
	out(u, regIER, ierMask)
	out(u, regData, 'x')
	if got := in(u, regIIR); got != iirTHRE {
		t.Errorf("IIR = %#02x", got)
	}
}

func TestReset(t *testing.T) {
	u, _, _ := newTest(t)
	out(u, regIER, ierMask)
	out(u, regLCR, 0x9b)
	out(u, regMCR, 0x1f)
	out(u, regSCR, 9)
	u.Input([]byte("abc"))
	u.Reset()
	fresh := New(COM1IRQ, nil, nil)
	t.Cleanup(func() { closeAndJoin(t, fresh) })
	got, want := u.State(), fresh.State()
	if got.IER != want.IER || got.LCR != want.LCR || got.MCR != want.MCR || got.SCR != want.SCR ||
		got.LSR != want.LSR || got.MSR != want.MSR || len(got.RxFIFO) != 0 || got.IRQLevel {
		t.Errorf("after Reset: %+v, want %+v", got, want)
	}
}

func TestRegisterAccessDoesNotAllocate(t *testing.T) {
	u, _, _ := newTest(t)
	out(u, regIER, ierMask)
	b := []byte{0}
	for name, f := range map[string]func(){
		"THR write": func() { u.PortOut(COM1Base, b) },
		"LSR read":  func() { u.PortIn(COM1Base+regLSR, b) },
		"IIR read":  func() { u.PortIn(COM1Base+regIIR, b) },
		"RBR read":  func() { u.Input(b); u.PortIn(COM1Base, b) },
	} {
		if n := testing.AllocsPerRun(200, f); n != 0 {
			t.Errorf("%s: %v allocations, want 0", name, n)
		}
	}
}
