package machine

import (
	"fmt"

	"github.com/vmmd/vmmd/pkg/kvm"
)

// run enters KVM_RUN until the machine asks the vCPUs to stop, or the guest
// does something only the controller can handle. It is the only caller of
// VCPU.Run, and it is reached only through startVCPUs, i.e. through Resume.
func (v *vcpu) run() error {
	if !v.m.gate.AllActive() {
		// Resume checked the gate; this catches any path that did not.
		v.m.violations.Add(1)
		v.log.Error().Msg("INVARIANT VIOLATED: vCPU entering the guest while a disk is inactive")
	}
	for {
		if v.m.stop.Load() {
			return nil
		}
		reason, err := v.cpu.Run()
		if err != nil {
			v.fatal(fmt.Sprintf("KVM_RUN failed: %v", err))
			return errParked
		}
		switch reason {
		case kvm.ExitIntr:
			// A kick, or some other signal: re-check the stop flag.
		case kvm.ExitIO:
			if err := v.handleIO(); err != nil {
				v.fatal(err.Error())
				return errParked
			}
		case kvm.ExitMMIO:
			if err := v.handleMMIO(); err != nil {
				v.fatal(err.Error())
				return errParked
			}
		case kvm.ExitHLT:
			// Only without an in-kernel LAPIC; re-entering is correct.
		case kvm.ExitShutdown:
			// Triple fault. Real hardware (and QEMU) reset the machine.
			v.m.resetLog.Warn().Msg("guest triple-faulted; resetting the VM")
			v.m.post(request{kind: reqReset, why: "guest-reset"})
			return errParked
		case kvm.ExitSystemEvent:
			typ, _ := v.cpu.SystemEvent()
			switch typ {
			case kvm.SystemEventShutdown:
				v.m.post(request{kind: reqPowerOff})
			case kvm.SystemEventReset:
				v.m.post(request{kind: reqReset, why: "guest-reset"})
			case kvm.SystemEventCrash:
				v.m.post(request{kind: reqPanic})
			default:
				v.fatal(fmt.Sprintf("unknown KVM system event %d", typ))
			}
			return errParked
		case kvm.ExitInternalError:
			sub, data := v.cpu.InternalError()
			v.fatal(fmt.Sprintf("KVM internal error, suberror %d, data %#x", sub, data))
			return errParked
		case kvm.ExitFailEntry:
			hw, cpu := v.cpu.FailEntry()
			v.fatal(fmt.Sprintf("KVM failed to enter the guest: hardware reason %#x on host CPU %d", hw, cpu))
			return errParked
		default:
			v.fatal(fmt.Sprintf("unexpected exit %v", reason))
			return errParked
		}
	}
}

func (v *vcpu) handleIO() error {
	io, err := v.cpu.IO()
	if err != nil {
		return fmt.Errorf("port I/O exit: %w", err)
	}
	size := int(io.Size)
	for i := 0; i < int(io.Count); i++ {
		chunk := io.Data[i*size : (i+1)*size]
		if io.Out {
			v.m.bus.PortOut(io.Port, chunk)
		} else {
			v.m.bus.PortIn(io.Port, chunk)
		}
	}
	return nil
}

func (v *vcpu) handleMMIO() error {
	mm, err := v.cpu.MMIO()
	if err != nil {
		return fmt.Errorf("MMIO exit: %w", err)
	}
	if mm.Write {
		v.m.bus.MMIOWrite(mm.Addr, mm.Data)
	} else {
		v.m.bus.MMIORead(mm.Addr, mm.Data)
	}
	return nil
}

// fatal logs the vCPU's registers and asks the controller to stop the VM in
// internal-error. The daemon keeps running: an operator can inspect and
// reset the guest.
func (v *vcpu) fatal(why string) {
	ev := v.log.Error().Str("reason", why)
	if r, err := v.cpu.GetRegs(); err == nil {
		ev = ev.Str("rip", hex(r.RIP)).Str("rsp", hex(r.RSP)).Str("rflags", hex(r.RFLAGS)).
			Str("rax", hex(r.RAX)).Str("rbx", hex(r.RBX)).Str("rcx", hex(r.RCX)).Str("rdx", hex(r.RDX)).
			Str("rsi", hex(r.RSI)).Str("rdi", hex(r.RDI)).Str("rbp", hex(r.RBP))
	}
	if s, err := v.cpu.GetSregs(); err == nil {
		ev = ev.Str("cr0", hex(s.CR0)).Str("cr2", hex(s.CR2)).Str("cr3", hex(s.CR3)).Str("cr4", hex(s.CR4)).
			Str("efer", hex(s.EFER)).Str("cs", fmt.Sprintf("%#x/base=%#x/l=%d/dpl=%d", s.CS.Selector, s.CS.Base, s.CS.L, s.CS.DPL))
	}
	ev.Msg("vCPU stopped: guest cannot continue")
	v.m.post(request{kind: reqInternalError, why: why})
}

func hex(v uint64) string { return fmt.Sprintf("%#x", v) }
