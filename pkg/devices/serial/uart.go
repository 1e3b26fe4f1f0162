package serial

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"

	"github.com/vmmd/vmmd/pkg/devices"
)

// ErrClosed is returned by InputWait and Flush once the UART is closed.
var ErrClosed = errors.New("serial: UART closed")

// UART is an emulated 16550A. It implements devices.PortDevice for the 8
// ports from an 8-aligned base (registers are selected by the low 3 bits of
// the port). All methods are safe for concurrent use.
type UART struct {
	irq   uint32
	raise devices.IRQLine

	// mu protects the registers below. It is held only for register
	// arithmetic and never across the IRQ ioctl or output I/O.
	mu  sync.Mutex
	dll byte
	dlm byte
	ier byte
	fcr byte // fcrKept bits of the last FCR write
	lcr byte
	mcr byte
	scr byte
	// lsrErr holds the LSR error bits, cleared when LSR is read.
	lsrErr byte
	// msrDelta holds MSR's delta bits, cleared when MSR is read.
	msrDelta byte
	// thrPending latches the THRE interrupt: set when THR empties (after
	// every transmit) or when ETBEI is turned on, cleared by an IIR read
	// that reports it or by a THR write.
	thrPending bool
	// intrHigh is the level of the UART's INTR output (any enabled
	// interrupt pending); its rising edges become pulses on the IRQ line.
	intrHigh bool
	rx       fifo

	// space gets a token (without blocking) whenever the guest frees
	// receive FIFO space, for InputWait.
	space chan struct{}

	out *output
	// closed is closed by Close; it stops the writer goroutine and wakes
	// InputWait and Flush.
	closed    chan struct{}
	closeOnce sync.Once

	irqFailures atomic.Uint64
	// irqErrMu protects irqErr, the first error from the IRQ line.
	irqErrMu sync.Mutex
	irqErr   error
}

// New returns a UART at power-on state that raises interrupt line irq
// through raise (nil: no interrupts, for polling guests and tests) and sends
// transmitted bytes to out (nil discards them). It starts the goroutine that
// writes to out; Close stops it.
func New(irq uint32, raise devices.IRQLine, out io.Writer) *UART {
	if out == nil {
		out = io.Discard
	}
	u := &UART{
		irq:    irq,
		raise:  raise,
		space:  make(chan struct{}, 1),
		closed: make(chan struct{}),
		out:    newOutput(out),
	}
	u.resetLocked()
	go u.out.run(u.closed)
	return u
}

// Reset puts the registers back to their power-on values and empties the
// receive FIFO, as a machine reset does. Output already transmitted is
// still written.
func (u *UART) Reset() {
	u.mu.Lock()
	u.resetLocked()
	u.mu.Unlock()
	u.signalSpace()
}

func (u *UART) resetLocked() {
	u.dll, u.dlm = resetDLL, 0
	u.ier, u.fcr, u.lcr, u.mcr, u.scr = 0, 0, 0, resetMCR, 0
	u.lsrErr, u.msrDelta = 0, 0
	u.thrPending, u.intrHigh = false, false
	u.rx.reset()
}

// PortIn implements devices.PortDevice. Each byte of a wide access reads the
// next register; bytes past the UART's 8 ports read as all-ones.
func (u *UART) PortIn(port uint16, data []byte) {
	off := int(port % PortCount)
	u.mu.Lock()
	freed := false
	for i := range data {
		if off+i >= PortCount {
			data[i] = 0xff
			continue
		}
		var f bool
		data[i], f = u.readLocked(off + i)
		freed = freed || f
	}
	pulse := u.updateLocked()
	u.mu.Unlock()
	if freed {
		u.signalSpace()
	}
	if pulse {
		u.pulse()
	}
}

// PortOut implements devices.PortDevice, byte by byte like PortIn.
func (u *UART) PortOut(port uint16, data []byte) {
	off := int(port % PortCount)
	u.mu.Lock()
	freed := false
	for i, v := range data {
		if off+i >= PortCount {
			break
		}
		freed = u.writeLocked(off+i, v) || freed
	}
	pulse := u.updateLocked()
	u.mu.Unlock()
	if freed {
		u.signalSpace()
	}
	if pulse {
		u.pulse()
	}
}

// readLocked returns register reg and whether the read freed receive space.
func (u *UART) readLocked(reg int) (byte, bool) {
	switch reg {
	case regData:
		if u.lcr&lcrDLAB != 0 {
			return u.dll, false
		}
		b, ok := u.rx.pop()
		return b, ok
	case regIER:
		if u.lcr&lcrDLAB != 0 {
			return u.dlm, false
		}
		return u.ier, false
	case regIIR:
		v := u.iirLocked()
		if v&iirID == iirTHRE {
			// Reading IIR while it reports THRE acknowledges it.
			u.thrPending = false
		}
		return v, false
	case regLCR:
		return u.lcr, false
	case regMCR:
		return u.mcr, false
	case regLSR:
		v := u.lsrLocked()
		u.lsrErr = 0
		return v, false
	case regMSR:
		v := u.msrLocked()
		u.msrDelta = 0
		return v, false
	default: // regSCR
		return u.scr, false
	}
}

// writeLocked writes v to register reg and reports whether receive space
// was freed.
func (u *UART) writeLocked(reg int, v byte) bool {
	switch reg {
	case regData:
		if u.lcr&lcrDLAB != 0 {
			u.dll = v
			return false
		}
		u.transmitLocked(v)
	case regIER:
		if u.lcr&lcrDLAB != 0 {
			u.dlm = v
			return false
		}
		v &= ierMask
		changed := u.ier ^ v
		u.ier = v
		if changed&ierTHRE != 0 {
			// Turning ETBEI on with THR empty (always, here) raises THRE
			// at once; Linux's startup test and Windows rely on it.
			// Turning it off drops the latch, as QEMU does.
			u.thrPending = v&ierTHRE != 0
		}
	case regIIR: // FCR
		freed := false
		if (v^u.fcr)&fcrEnable != 0 || v&fcrClearRx != 0 {
			// Changing FIFO mode resets both FIFOs (datasheet).
			freed = u.rx.len() > 0
			u.rx.reset()
		}
		// fcrClearTx: nothing waits in a transmit FIFO here.
		u.fcr = v & fcrKept
		return freed
	case regLCR:
		u.lcr = v
	case regMCR:
		old := u.msrLinesLocked()
		u.mcr = v & mcrMask
		now := u.msrLinesLocked()
		u.msrDelta |= msrDeltaFor(old, now)
	case regLSR, regMSR:
		// Read-only (LSR writes are a factory test mode).
	default: // regSCR
		u.scr = v
	}
	return false
}

// transmitLocked sends one byte: back into the receiver in loopback mode,
// else to the output writer. THR is empty again at once.
func (u *UART) transmitLocked(v byte) {
	if u.mcr&mcrLoop != 0 {
		if !u.rx.push(v) {
			u.lsrErr |= lsrOE
		}
	} else {
		u.out.push(v)
	}
	u.thrPending = true
}

// iirLocked computes IIR: the highest-priority enabled pending interrupt
// (receiver line status, received data, THR empty, modem status), plus the
// FIFO-enabled bits.
func (u *UART) iirLocked() byte {
	var fifo byte
	if u.fcr&fcrEnable != 0 {
		fifo = iirFIFO
	}
	switch {
	case u.ier&ierRLS != 0 && u.lsrErr != 0:
		return iirRLS | fifo
	case u.ier&ierRDA != 0 && u.rx.len() > 0:
		return iirRDA | fifo
	case u.ier&ierTHRE != 0 && u.thrPending:
		return iirTHRE | fifo
	case u.ier&ierMS != 0 && u.msrDelta != 0:
		return iirMS | fifo
	default:
		return iirNoInt | fifo
	}
}

func (u *UART) lsrLocked() byte {
	v := u.lsrErr | lsrTHRE | lsrTEMT
	if u.rx.len() > 0 {
		v |= lsrDR
	}
	return v
}

func (u *UART) msrLocked() byte { return u.msrLinesLocked() | u.msrDelta }

// msrLinesLocked returns MSR's line bits. In loopback the modem outputs
// are wired back to the inputs (RTS->CTS, DTR->DSR, OUT1->RI, OUT2->DCD);
// Linux's autoconfig checks exactly this. Otherwise a ready terminal is
// attached.
func (u *UART) msrLinesLocked() byte {
	return linesFor(u.mcr)
}

func linesFor(mcr byte) byte {
	if mcr&mcrLoop == 0 {
		return resetLines
	}
	var v byte
	if mcr&mcrRTS != 0 {
		v |= msrCTS
	}
	if mcr&mcrDTR != 0 {
		v |= msrDSR
	}
	if mcr&mcrOut1 != 0 {
		v |= msrRI
	}
	if mcr&mcrOut2 != 0 {
		v |= msrDCD
	}
	return v
}

// msrDeltaFor returns the delta bits for a change of the modem lines from
// old to now: any change of CTS, DSR or DCD, and RI only on its trailing
// edge (TERI).
func msrDeltaFor(old, now byte) byte {
	changed := old ^ now
	var d byte
	if changed&msrCTS != 0 {
		d |= msrDCTS
	}
	if changed&msrDSR != 0 {
		d |= msrDDSR
	}
	if changed&msrDCD != 0 {
		d |= msrDDCD
	}
	if old&msrRI != 0 && now&msrRI == 0 {
		d |= msrTERI
	}
	return d
}

// updateLocked recomputes the INTR output and reports whether it just rose,
// in which case the caller must pulse the IRQ line after unlocking.
func (u *UART) updateLocked() bool {
	pending := u.iirLocked()&iirNoInt == 0
	rose := pending && !u.intrHigh
	u.intrHigh = pending
	return rose
}

// pulse signals a rising edge of INTR to the irqchip as a pulse (level
// true then false). ISA interrupts are edge-triggered: the in-kernel PIC
// latches a rising edge into IRR, and the IOAPIC pin for an ISA IRQ is
// programmed edge-triggered (MP table / MADT default), so it is the 0->1
// transition that delivers the interrupt. Dropping the line right away means
// the next edge needs no later "lower" call, which we could not order
// reliably against other vCPUs, and a line left high can never block a
// later interrupt. Like real hardware, the guest's 8250 handler loops on
// IIR until no interrupt is pending, so a condition arising while INTR is
// already high is not lost; it is not a new edge.
func (u *UART) pulse() {
	if u.raise == nil {
		return
	}
	if err := u.raise(u.irq, true); err != nil {
		u.irqFailed(err)
		return
	}
	if err := u.raise(u.irq, false); err != nil {
		u.irqFailed(err)
	}
}

func (u *UART) irqFailed(err error) {
	u.irqFailures.Add(1)
	u.irqErrMu.Lock()
	if u.irqErr == nil {
		u.irqErr = err
	}
	u.irqErrMu.Unlock()
}

// IRQFailures returns how many times raising or lowering the IRQ line
// failed, and the first such error, so the machine can log it once rather
// than from the vCPU path.
func (u *UART) IRQFailures() (uint64, error) {
	u.irqErrMu.Lock()
	defer u.irqErrMu.Unlock()
	return u.irqFailures.Load(), u.irqErr
}

// signalSpace wakes an InputWait, if any.
func (u *UART) signalSpace() {
	select {
	case u.space <- struct{}{}:
	default:
	}
}

// Close stops the output writer goroutine and wakes InputWait and Flush
// callers with ErrClosed. It does not wait for a Write already in progress
// on the output writer (an io.Writer cannot be interrupted): the goroutine
// exits when that Write returns. Bytes still buffered are discarded and
// counted in Dropped; call Flush first to deliver them. Later transmitted
// bytes are dropped too. The registers keep working. Close always returns
// nil and may be called more than once.
func (u *UART) Close() error {
	u.closeOnce.Do(func() { close(u.closed) })
	return nil
}
