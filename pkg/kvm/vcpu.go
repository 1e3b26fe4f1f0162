package kvm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// VCPU is one virtual CPU: its descriptor and its mapped kvm_run area.
//
// Run and the exit accessors belong to one goroutine (the vCPU thread);
// SetImmediateExit may be called from any goroutine. Close waits for an
// in-flight Run to return, so stop the vCPU before closing it.
type VCPU struct {
	id int
	// fd's lock also guards run: readers use the mapping under RLock, Close
	// unmaps it under Lock.
	fd  fdOwner
	run []byte
	// tid is the thread inside KVM_RUN, or 0, for Kick.
	tid atomic.Int32
}

// ID returns the vCPU id given to CreateVCPU (its initial APIC id).
func (c *VCPU) ID() int { return c.id }

// FD returns the raw descriptor, or -1 after Close. The VCPU still owns it.
func (c *VCPU) FD() int { return c.fd.raw() }

// Close unmaps kvm_run and closes the descriptor. It is idempotent.
func (c *VCPU) Close() error {
	c.fd.mu.Lock()
	defer c.fd.mu.Unlock()
	if c.fd.closed {
		return nil
	}
	c.fd.closed = true
	var errs []error
	if err := unix.Munmap(c.run); err != nil {
		errs = append(errs, fmt.Errorf("munmap kvm_run of vCPU %d: %w", c.id, err))
	}
	c.run = nil
	if err := unix.Close(c.fd.fd); err != nil {
		errs = append(errs, fmt.Errorf("close vCPU %d fd %d: %w", c.id, c.fd.fd, err))
	}
	return errors.Join(errs...)
}

// withRun runs f with the descriptor and the kvm_run mapping.
func (c *VCPU) withRun(op string, f func(fd int, run []byte) error) error {
	c.fd.mu.RLock()
	defer c.fd.mu.RUnlock()
	if c.fd.closed {
		return fmt.Errorf("%s: vCPU %d: %w", op, c.id, ErrClosed)
	}
	return f(c.fd.fd, c.run)
}

// Run does one KVM_RUN and returns why the vCPU stopped. A signal or a set
// immediate_exit makes KVM return EINTR (EAGAIN on some paths); Run reports
// those as ExitIntr with a nil error, leaving the decision to the caller.
// It never loops.
func (c *VCPU) Run() (ExitReason, error) {
	var reason ExitReason
	err := c.withRun("KVM_RUN", func(fd int, run []byte) error {
		c.tid.Store(int32(unix.Gettid()))
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), kvmRun, 0)
		c.tid.Store(0)
		switch errno {
		case 0:
			reason = ExitReason(binary.LittleEndian.Uint32(run[runExitReason:]))
			return nil
		case unix.EINTR, unix.EAGAIN:
			reason = ExitIntr
			return nil
		}
		return fmt.Errorf("KVM_RUN: vCPU %d: %w", c.id, errno)
	})
	return reason, err
}

// SetImmediateExit sets or clears kvm_run.immediate_exit. While it is set,
// KVM_RUN returns at once with ExitIntr (after completing pending I/O), so
// setting it and then signalling the vCPU thread stops the vCPU without a
// lost wake-up. Safe from any goroutine: it is a single atomic store into
// the shared page, which the kernel reads at each entry, and it takes no
// lock a running Run holds against it. It does nothing once Close has begun.
func (c *VCPU) SetImmediateExit(on bool) {
	c.setRunFlag(runImmediateExit, on)
}

// Kick makes a running or about-to-run KVM_RUN return ExitIntr: it sets
// immediate_exit, then sends SIGURG to the thread inside KVM_RUN, if any.
// SIGURG is the signal the Go runtime already uses for preemption, so it is
// harmless wherever it lands. Kick is reliable only when the goroutine
// calling Run is locked to its thread (runtime.LockOSThread); otherwise it
// may signal the thread the goroutine left. The caller clears
// immediate_exit (SetImmediateExit(false)) before running the vCPU again.
func (c *VCPU) Kick() error {
	c.SetImmediateExit(true)
	tid := c.tid.Load()
	if tid == 0 {
		return nil
	}
	if err := unix.Tgkill(unix.Getpid(), int(tid), unix.SIGURG); err != nil && err != unix.ESRCH {
		return fmt.Errorf("kick vCPU %d: tgkill thread %d: %w", c.id, tid, err)
	}
	return nil
}

// SetRequestInterruptWindow sets kvm_run.request_interrupt_window: KVM exits
// with ExitIRQWindowOpen as soon as the guest can take an interrupt. Only
// useful without an in-kernel irqchip.
func (c *VCPU) SetRequestInterruptWindow(on bool) {
	c.setRunFlag(runRequestInterruptWindow, on)
}

func (c *VCPU) setRunFlag(off uint, on bool) {
	// TryRLock: a pending Close must not block the kicker, and a vCPU being
	// closed needs no kick.
	if !c.fd.mu.TryRLock() {
		return
	}
	defer c.fd.mu.RUnlock()
	if c.fd.closed {
		return
	}
	var v uint8
	if on {
		v = 1
	}
	setRunByte(c.run, off, v)
}

// runState reads fields of kvm_run valid after any exit.
func (c *VCPU) runState(op string, f func(run []byte)) error {
	return c.withRun(op, func(_ int, run []byte) error {
		f(run)
		return nil
	})
}

// ExitReason returns kvm_run.exit_reason as left by the last Run.
func (c *VCPU) ExitReason() ExitReason {
	var r ExitReason
	_ = c.runState("exit reason", func(run []byte) {
		r = ExitReason(binary.LittleEndian.Uint32(run[runExitReason:]))
	})
	return r
}

// ReadyForInterruptInjection returns kvm_run.ready_for_interrupt_injection.
func (c *VCPU) ReadyForInterruptInjection() bool {
	var v bool
	_ = c.runState("ready_for_interrupt_injection", func(run []byte) { v = run[runReadyForInjection] != 0 })
	return v
}

// IFFlag returns kvm_run.if_flag, the guest's RFLAGS.IF at exit.
func (c *VCPU) IFFlag() bool {
	var v bool
	_ = c.runState("if_flag", func(run []byte) { v = run[runIFFlag] != 0 })
	return v
}

// RunFlags returns kvm_run.flags (RunFlagSMM, RunFlagBusLock).
func (c *VCPU) RunFlags() uint16 {
	var v uint16
	_ = c.runState("flags", func(run []byte) { v = binary.LittleEndian.Uint16(run[runFlags:]) })
	return v
}

// expect checks that the last exit was want before a payload is read.
func expect(run []byte, want ExitReason) error {
	if got := ExitReason(binary.LittleEndian.Uint32(run[runExitReason:])); got != want {
		return fmt.Errorf("last exit was %v, not %v", got, want)
	}
	return nil
}

// IO returns the ExitIO payload. Data aliases the kvm_run mapping; the
// kernel-provided offset and length are checked against the mapping, so a
// bad value is an error, not a fault.
func (c *VCPU) IO() (IOExit, error) {
	var e IOExit
	err := c.withRun("KVM_EXIT_IO", func(_ int, run []byte) error {
		if err := expect(run, ExitIO); err != nil {
			return fmt.Errorf("KVM_EXIT_IO: %w", err)
		}
		e.Out = run[runIODirection] == ioDirOut
		e.Size = run[runIOSize]
		e.Port = binary.LittleEndian.Uint16(run[runIOPort:])
		e.Count = binary.LittleEndian.Uint32(run[runIOCount:])
		off := binary.LittleEndian.Uint64(run[runIODataOffset:])
		if e.Size != 1 && e.Size != 2 && e.Size != 4 {
			return fmt.Errorf("KVM_EXIT_IO: port %#x: access size %d is not 1, 2 or 4", e.Port, e.Size)
		}
		n := uint64(e.Size) * uint64(e.Count)
		limit := uint64(len(run))
		if off > limit || n > limit-off {
			return fmt.Errorf("KVM_EXIT_IO: port %#x: data at offset %#x, %d bytes, outside the %d-byte kvm_run mapping", e.Port, off, n, limit)
		}
		e.Data = run[off : off+n : off+n]
		return nil
	})
	return e, err
}

// MMIO returns the ExitMMIO payload. Data aliases kvm_run.mmio.data.
func (c *VCPU) MMIO() (MMIOExit, error) {
	var e MMIOExit
	err := c.withRun("KVM_EXIT_MMIO", func(_ int, run []byte) error {
		if err := expect(run, ExitMMIO); err != nil {
			return fmt.Errorf("KVM_EXIT_MMIO: %w", err)
		}
		e.Addr = binary.LittleEndian.Uint64(run[runMMIOPhysAddr:])
		e.Write = run[runMMIOIsWrite] != 0
		n := binary.LittleEndian.Uint32(run[runMMIOLen:])
		if n == 0 || n > 8 {
			return fmt.Errorf("KVM_EXIT_MMIO: address %#x: length %d is not 1 to 8", e.Addr, n)
		}
		e.Data = run[runMMIOData : runMMIOData+n : runMMIOData+n]
		return nil
	})
	return e, err
}

// readData reads up to runMaxData words at off, ndata of them.
func readData(run []byte, ndataOff, dataOff int) []uint64 {
	n := binary.LittleEndian.Uint32(run[ndataOff:])
	if n > runMaxData {
		n = runMaxData
	}
	out := make([]uint64, n)
	for i := range out {
		out[i] = binary.LittleEndian.Uint64(run[dataOff+8*i:])
	}
	return out
}

// SystemEvent returns the ExitSystemEvent payload: the type
// (SystemEventShutdown, SystemEventReset, SystemEventCrash, ...) and its
// data words (at most 16). It returns 0, nil if the last exit was another.
func (c *VCPU) SystemEvent() (typ uint32, data []uint64) {
	_ = c.withRun("KVM_EXIT_SYSTEM_EVENT", func(_ int, run []byte) error {
		if expect(run, ExitSystemEvent) != nil {
			return nil
		}
		typ = binary.LittleEndian.Uint32(run[runEventType:])
		data = readData(run, runEventNData, runEventData)
		return nil
	})
	return typ, data
}

// InternalError returns the ExitInternalError payload: the suberror
// (InternalErrorEmulation, ...) and its data words (at most 16). It returns
// 0, nil if the last exit was another.
func (c *VCPU) InternalError() (suberror uint32, data []uint64) {
	_ = c.withRun("KVM_EXIT_INTERNAL_ERROR", func(_ int, run []byte) error {
		if expect(run, ExitInternalError) != nil {
			return nil
		}
		suberror = binary.LittleEndian.Uint32(run[runInternalSuberror:])
		data = readData(run, runInternalNData, runInternalData)
		return nil
	})
	return suberror, data
}

// FailEntry returns the ExitFailEntry payload: the hardware entry failure
// reason and the host CPU. It returns zeros if the last exit was another.
func (c *VCPU) FailEntry() (reason uint64, cpu uint32) {
	_ = c.withRun("KVM_EXIT_FAIL_ENTRY", func(_ int, run []byte) error {
		if expect(run, ExitFailEntry) != nil {
			return nil
		}
		reason = binary.LittleEndian.Uint64(run[runFailEntryReason:])
		cpu = binary.LittleEndian.Uint32(run[runFailEntryCPU:])
		return nil
	})
	return reason, cpu
}

// Exception returns the ExitException payload: vector and error code.
func (c *VCPU) Exception() (vector, errorCode uint32, err error) {
	err = c.withRun("KVM_EXIT_EXCEPTION", func(_ int, run []byte) error {
		if err := expect(run, ExitException); err != nil {
			return fmt.Errorf("KVM_EXIT_EXCEPTION: %w", err)
		}
		vector = binary.LittleEndian.Uint32(run[runExException:])
		errorCode = binary.LittleEndian.Uint32(run[runExErrorCode:])
		return nil
	})
	return vector, errorCode, err
}

// Debug returns the ExitDebug payload.
func (c *VCPU) Debug() (DebugExit, error) {
	var d DebugExit
	err := c.withRun("KVM_EXIT_DEBUG", func(_ int, run []byte) error {
		if err := expect(run, ExitDebug); err != nil {
			return fmt.Errorf("KVM_EXIT_DEBUG: %w", err)
		}
		d.Exception = binary.LittleEndian.Uint32(run[runDebugException:])
		d.PC = binary.LittleEndian.Uint64(run[runDebugPC:])
		d.DR6 = binary.LittleEndian.Uint64(run[runDebugDR6:])
		d.DR7 = binary.LittleEndian.Uint64(run[runDebugDR7:])
		return nil
	})
	return d, err
}

// HardwareExitReason returns kvm_run.hw.hardware_exit_reason, the vendor
// exit code behind an ExitUnknown. It returns 0 after any other exit.
func (c *VCPU) HardwareExitReason() uint64 {
	var v uint64
	_ = c.runState("KVM_EXIT_UNKNOWN", func(run []byte) {
		if expect(run, ExitUnknown) == nil {
			v = binary.LittleEndian.Uint64(run[runHWExitReason:])
		}
	})
	return v
}

// MSRExit is the payload of ExitX86RDMSR and ExitX86WRMSR (with
// KVM_CAP_X86_USER_SPACE_MSR enabled).
type MSRExit struct {
	// Reason is KVM_MSR_EXIT_REASON_* (why KVM did not handle it).
	Reason uint32
	Index  uint32
	// Data is the value written (WRMSR); for RDMSR, set it with
	// CompleteMSR.
	Data uint64
}

// MSR returns the ExitX86RDMSR/ExitX86WRMSR payload.
func (c *VCPU) MSR() (MSRExit, error) {
	var e MSRExit
	err := c.withRun("KVM_EXIT_X86_MSR", func(_ int, run []byte) error {
		if expect(run, ExitX86RDMSR) != nil && expect(run, ExitX86WRMSR) != nil {
			return fmt.Errorf("KVM_EXIT_X86_MSR: last exit was %v", ExitReason(binary.LittleEndian.Uint32(run[runExitReason:])))
		}
		e.Reason = binary.LittleEndian.Uint32(run[runMSRReason:])
		e.Index = binary.LittleEndian.Uint32(run[runMSRIndex:])
		e.Data = binary.LittleEndian.Uint64(run[runMSRData:])
		return nil
	})
	return e, err
}

// CompleteMSR answers an MSR exit before the next Run: data is the value an
// RDMSR returns; fail makes KVM inject #GP instead.
func (c *VCPU) CompleteMSR(data uint64, fail bool) error {
	return c.withRun("KVM_EXIT_X86_MSR", func(_ int, run []byte) error {
		if expect(run, ExitX86RDMSR) != nil && expect(run, ExitX86WRMSR) != nil {
			return fmt.Errorf("KVM_EXIT_X86_MSR: last exit was %v", ExitReason(binary.LittleEndian.Uint32(run[runExitReason:])))
		}
		binary.LittleEndian.PutUint64(run[runMSRData:], data)
		run[runMSRError] = 0
		if fail {
			run[runMSRError] = 1
		}
		return nil
	})
}
