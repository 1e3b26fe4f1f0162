package machine

import (
	"errors"
	"fmt"
	"math/bits"

	"github.com/vmmd/vmmd/pkg/devices/serial"
	"github.com/vmmd/vmmd/pkg/devices/virtio/blk"
	"github.com/vmmd/vmmd/pkg/kvm"
)

// StateVersion is the version of State this vmmd writes and reads. Bump it
// whenever a field changes meaning; LoadState refuses any other. Version
// 2: the binary form.
const StateVersion = 2

// Sizes of the binary blobs in State, as KVM defines them.
const (
	lapicSize  = len(kvm.LAPICState{}.Regs)
	xsaveSize  = 4 * len(kvm.XSave{}.Region)
	irqchipLen = len(kvm.IRQChip{}.Chip)
	// maxStateMSRs bounds the MSR list of one vCPU. KVM's own index list
	// has a few hundred entries at most; anything far larger is hostile.
	maxStateMSRs = 4096
	// maxStateCPUID bounds a vCPU's CPUID table (KVM allows 256 entries).
	maxStateCPUID = 256
)

// State is the whole device state of a VM, without RAM: what a destination
// needs, besides memory, to continue the guest. Migration sends it in its
// binary form (MarshalBinary, stateenc.go); it is JSON-encodable too, for
// logs and tests (a few KiB per vCPU). Binary KVM structures whose size the decoder
// cannot enforce (LAPIC page, XSAVE area, irqchip state) are byte strings
// with their exact length checked by Validate.
type State struct {
	// Version is StateVersion.
	Version int `json:"version"`
	// RunState is the state the source was in before it stopped for the
	// migration: the destination autostarts only if it was running.
	RunState RunState `json:"run-state"`
	// Config is the source's configuration, checked again on load.
	Config MigrationConfig `json:"config"`
	// VCPUs are in vCPU id order.
	VCPUs []VCPUState `json:"vcpus"`
	// PICMaster, PICSlave and IOAPIC are the in-kernel irqchip states
	// (kvm_irqchip.chip, 512 bytes each).
	PICMaster []byte `json:"pic-master"`
	PICSlave  []byte `json:"pic-slave"`
	IOAPIC    []byte `json:"ioapic"`
	// PIT is the in-kernel i8254 (KVM_GET_PIT2).
	PIT kvm.PITState2 `json:"pit"`
	// Clock is kvmclock (KVM_GET_CLOCK).
	Clock kvm.ClockData `json:"clock"`
	// Serial is COM1.
	Serial serial.State `json:"serial"`
	// Disks are the virtio-blk devices, in drive order.
	Disks []blk.State `json:"disks"`
}

// VCPUState is one vCPU's architectural state.
type VCPUState struct {
	// ID is the vCPU id (its index).
	ID int `json:"id"`
	// Regs, Sregs and FPU are KVM_GET_REGS, KVM_GET_SREGS, KVM_GET_FPU.
	Regs  kvm.Regs  `json:"regs"`
	Sregs kvm.Sregs `json:"sregs"`
	FPU   kvm.FPU   `json:"fpu"`
	// XSave is struct kvm_xsave (4096 bytes); empty when the host has no
	// KVM_GET_XSAVE. It carries MXCSR, which KVM_GET_FPU loses.
	XSave []byte `json:"xsave,omitempty"`
	// XCRs is nil when the host has no KVM_GET_XCRS or reports no XCRs
	// (no XSAVE: KVM_SET_XCRS would refuse even an empty set).
	XCRs *kvm.XCRs `json:"xcrs,omitempty"`
	// MSRs are every MSR KVM lists (KVM_GET_MSR_INDEX_LIST) that this vCPU
	// could read: TSC, kvmclock and PV MSRs, syscall MSRs, ...
	MSRs []MSR `json:"msrs"`
	// TSCKHz is the guest TSC frequency (0: unknown).
	TSCKHz uint32 `json:"tsc-khz"`
	// LAPIC is struct kvm_lapic_state (1024 bytes).
	LAPIC []byte `json:"lapic"`
	// MPState, Events and Debug are KVM_GET_MP_STATE,
	// KVM_GET_VCPU_EVENTS and KVM_GET_DEBUGREGS.
	MPState kvm.MPState    `json:"mp-state"`
	Events  kvm.VCPUEvents `json:"events"`
	Debug   kvm.DebugRegs  `json:"debug-regs"`
	// CPUID is the table the guest saw; the destination must show the same.
	CPUID []kvm.CPUIDEntry `json:"cpuid"`
}

// MSR is one model-specific register.
type MSR struct {
	// Index is the MSR number; Data its value.
	Index uint32 `json:"index"`
	Data  uint64 `json:"data"`
}

// ErrBadState is wrapped by every refusal of a State as malformed.
var ErrBadState = errors.New("invalid VM state")

func badState(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadState, fmt.Sprintf(format, args...))
}

// knownState reports whether s is a run state vmmd implements.
func knownState(s RunState) bool {
	for _, k := range States() {
		if k == s {
			return true
		}
	}
	return false
}

// Validate checks everything about s that does not depend on a host or a
// VM: version, run state, blob sizes, counts and value ranges. LoadState
// calls it and then checks s against the VM. It never panics, whatever s
// holds.
func (s *State) Validate() error {
	if s == nil {
		return badState("no state")
	}
	if s.Version != StateVersion {
		return badState("version %d, this vmmd reads version %d", s.Version, StateVersion)
	}
	if !knownState(s.RunState) {
		return badState("unknown run state %q", s.RunState)
	}
	if s.Config.CPUs < 1 || s.Config.CPUs > 254 {
		return badState("config has %d vCPUs", s.Config.CPUs)
	}
	if len(s.VCPUs) != s.Config.CPUs {
		return badState("%d vCPU states for a config of %d vCPUs", len(s.VCPUs), s.Config.CPUs)
	}
	for i := range s.VCPUs {
		if err := s.VCPUs[i].validate(i); err != nil {
			return err
		}
	}
	for _, c := range []struct {
		name string
		b    []byte
	}{{"PIC master", s.PICMaster}, {"PIC slave", s.PICSlave}, {"IOAPIC", s.IOAPIC}} {
		if len(c.b) != irqchipLen {
			return badState("%s state is %d bytes, want %d", c.name, len(c.b), irqchipLen)
		}
	}
	if len(s.Disks) != len(s.Config.Drives) {
		return badState("%d disk states for a config of %d drives", len(s.Disks), len(s.Config.Drives))
	}
	if len(s.Serial.RxFIFO) > serial.RxFIFOSize {
		return badState("serial: %d bytes in the receive FIFO, more than its %d", len(s.Serial.RxFIFO), serial.RxFIFOSize)
	}
	return nil
}

func (v *VCPUState) validate(i int) error {
	if v.ID != i {
		return badState("vCPU state %d has id %d", i, v.ID)
	}
	if len(v.LAPIC) != lapicSize {
		return badState("vCPU %d: LAPIC state is %d bytes, want %d", i, len(v.LAPIC), lapicSize)
	}
	if len(v.XSave) != 0 && len(v.XSave) != xsaveSize {
		return badState("vCPU %d: XSAVE state is %d bytes, want %d", i, len(v.XSave), xsaveSize)
	}
	if v.XCRs != nil && v.XCRs.NrXCRs > kvm.MaxXCRs {
		return badState("vCPU %d: %d XCRs, at most %d", i, v.XCRs.NrXCRs, kvm.MaxXCRs)
	}
	if len(v.MSRs) > maxStateMSRs {
		return badState("vCPU %d: %d MSRs, at most %d", i, len(v.MSRs), maxStateMSRs)
	}
	seen := make(map[uint32]bool, len(v.MSRs))
	for _, m := range v.MSRs {
		if seen[m.Index] {
			return badState("vCPU %d: MSR %#x listed twice", i, m.Index)
		}
		seen[m.Index] = true
	}
	if len(v.CPUID) > maxStateCPUID {
		return badState("vCPU %d: %d CPUID entries, at most %d", i, len(v.CPUID), maxStateCPUID)
	}
	if v.MPState > kvm.MPStateAPResetHold {
		return badState("vCPU %d: unknown MP state %d", i, uint32(v.MPState))
	}
	if n := bits.OnesCount64(v.Sregs.InterruptBitmap[0]) + bits.OnesCount64(v.Sregs.InterruptBitmap[1]) +
		bits.OnesCount64(v.Sregs.InterruptBitmap[2]) + bits.OnesCount64(v.Sregs.InterruptBitmap[3]); n > 1 {
		return badState("vCPU %d: %d pending interrupts in sregs, at most 1", i, n)
	}
	e := &v.Events
	const knownEventFlags = kvm.VCPUEventValidNMIPending | kvm.VCPUEventValidSIPIVector | kvm.VCPUEventValidShadow |
		kvm.VCPUEventValidSMM | kvm.VCPUEventValidPayload | kvm.VCPUEventValidTripleFault
	switch {
	case e.Flags&^knownEventFlags != 0:
		return badState("vCPU %d: events flags %#x have unknown bits", i, e.Flags)
	case e.Exception.Nr >= 32:
		return badState("vCPU %d: exception vector %d (0-31)", i, e.Exception.Nr)
	case e.Exception.Injected > 1 || e.Exception.Pending > 1 || e.Exception.HasErrorCode > 1 ||
		e.Interrupt.Injected > 1 || e.Interrupt.Soft > 1 || e.NMI.Injected > 1 || e.NMI.Pending > 1 || e.NMI.Masked > 1:
		return badState("vCPU %d: event flags must be 0 or 1", i)
	case e.SMI.SMM != 0 || e.SMI.Pending != 0:
		return badState("vCPU %d: system management mode is not supported", i)
	}
	if v.Debug.Flags != 0 || v.Debug.DR6>>32 != 0 || v.Debug.DR7>>32 != 0 {
		return badState("vCPU %d: debug registers: flags %#x, DR6 %#x, DR7 %#x (upper halves must be 0)", i, v.Debug.Flags, v.Debug.DR6, v.Debug.DR7)
	}
	return nil
}
