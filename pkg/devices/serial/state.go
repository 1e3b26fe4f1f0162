package serial

import (
	"errors"
	"fmt"
)

// State is a UART's complete guest-visible state, for migration and
// snapshots. It holds plain values only; output not yet written belongs to
// the source's output writer and is not part of it.
type State struct {
	// DLL and DLM are the divisor latch.
	DLL, DLM byte
	// IER is the interrupt enable register (low 4 bits).
	IER byte
	// FCR holds the FIFO enable and receive trigger bits of the last FCR
	// write (FCR itself is write-only).
	FCR byte
	// LCR and MCR are the line and modem control registers.
	LCR, MCR byte
	// LSR is what a read of LSR would return now (DR, THRE, TEMT and the
	// error bits).
	LSR byte
	// MSR is what a read of MSR would return now (lines and delta bits).
	MSR byte
	// SCR is the scratch register.
	SCR byte
	// THREPending is the latched THR-empty interrupt, not yet acknowledged
	// by an IIR read or a THR write.
	THREPending bool
	// IRQLevel is the level of the UART's interrupt output. The irqchip's
	// own state travels separately, so restoring does not pulse the line;
	// it only decides whether the next pending interrupt is a new edge.
	IRQLevel bool
	// RxFIFO holds the received bytes the guest has not read, oldest
	// first.
	RxFIFO []byte
}

// errBadState is wrapped by every SetState refusal.
var errBadState = errors.New("invalid serial state")

// State returns a snapshot of the registers and the receive FIFO.
func (u *UART) State() State {
	u.mu.Lock()
	defer u.mu.Unlock()
	return State{
		DLL:         u.dll,
		DLM:         u.dlm,
		IER:         u.ier,
		FCR:         u.fcr,
		LCR:         u.lcr,
		MCR:         u.mcr,
		LSR:         u.lsrLocked(),
		MSR:         u.msrLocked(),
		SCR:         u.scr,
		THREPending: u.thrPending,
		IRQLevel:    u.intrHigh,
		RxFIFO:      u.rx.bytes(),
	}
}

// SetState loads s, as saved by State, replacing all registers and the
// receive FIFO. It checks s for consistency first and changes nothing if it
// is invalid. It does not touch the IRQ line (see State.IRQLevel).
func (u *UART) SetState(s State) error {
	if err := s.validate(); err != nil {
		return fmt.Errorf("restore serial state: %w", err)
	}
	u.mu.Lock()
	u.dll, u.dlm = s.DLL, s.DLM
	u.ier, u.fcr, u.lcr, u.mcr, u.scr = s.IER, s.FCR, s.LCR, s.MCR, s.SCR
	u.lsrErr = s.LSR & lsrErr
	u.msrDelta = s.MSR & msrDelta
	u.thrPending, u.intrHigh = s.THREPending, s.IRQLevel
	u.rx.reset()
	u.rx.write(s.RxFIFO)
	u.mu.Unlock()
	u.signalSpace()
	return nil
}

func (s *State) validate() error {
	switch {
	case s.IER&^ierMask != 0:
		return fmt.Errorf("%w: IER %#02x has reserved bits set", errBadState, s.IER)
	case s.FCR&^fcrKept != 0:
		return fmt.Errorf("%w: FCR %#02x has bits other than enable and trigger level", errBadState, s.FCR)
	case s.MCR&^mcrMask != 0:
		return fmt.Errorf("%w: MCR %#02x has reserved bits set", errBadState, s.MCR)
	case len(s.RxFIFO) > RxFIFOSize:
		return fmt.Errorf("%w: %d bytes in the receive FIFO, more than its %d", errBadState, len(s.RxFIFO), RxFIFOSize)
	case (s.LSR&lsrDR != 0) != (len(s.RxFIFO) > 0):
		return fmt.Errorf("%w: LSR.DR=%v but the receive FIFO holds %d bytes", errBadState, s.LSR&lsrDR != 0, len(s.RxFIFO))
	case s.MSR&msrLines != linesFor(s.MCR):
		return fmt.Errorf("%w: MSR lines %#02x do not match MCR %#02x (want %#02x)", errBadState, s.MSR&msrLines, s.MCR, linesFor(s.MCR))
	}
	return nil
}
