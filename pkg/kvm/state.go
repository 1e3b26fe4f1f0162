package kvm

import "fmt"

// LAPICState mirrors struct kvm_lapic_state: the 1 KiB local APIC register
// page, in xAPIC layout unless x2APIC API flags say otherwise.
type LAPICState struct {
	Regs [1024]uint8
}

// MPState mirrors struct kvm_mp_state.
type MPState uint32

// MP states (KVM_MP_STATE_*).
const (
	MPStateRunnable      MPState = 0
	MPStateUninitialized MPState = 1
	MPStateInitReceived  MPState = 2
	MPStateHalted        MPState = 3
	MPStateSipiReceived  MPState = 4
	MPStateStopped       MPState = 5
	MPStateCheckStop     MPState = 6
	MPStateOperating     MPState = 7
	MPStateLoad          MPState = 8
	MPStateAPResetHold   MPState = 9
)

// String returns the KVM_MP_STATE_* name without the prefix.
func (s MPState) String() string {
	names := [...]string{"RUNNABLE", "UNINITIALIZED", "INIT_RECEIVED", "HALTED",
		"SIPI_RECEIVED", "STOPPED", "CHECK_STOP", "OPERATING", "LOAD", "AP_RESET_HOLD"}
	if int(s) < len(names) {
		return names[s]
	}
	return fmt.Sprintf("MPState(%d)", uint32(s))
}

// VCPUEventsException is the exception part of struct kvm_vcpu_events.
type VCPUEventsException struct {
	Injected     uint8
	Nr           uint8
	HasErrorCode uint8
	Pending      uint8
	ErrorCode    uint32
}

// VCPUEventsInterrupt is the interrupt part of struct kvm_vcpu_events.
type VCPUEventsInterrupt struct {
	Injected uint8
	Nr       uint8
	Soft     uint8
	Shadow   uint8
}

// VCPUEventsNMI is the nmi part of struct kvm_vcpu_events.
type VCPUEventsNMI struct {
	Injected uint8
	Pending  uint8
	Masked   uint8
	Pad      uint8
}

// VCPUEventsSMI is the smi part of struct kvm_vcpu_events.
type VCPUEventsSMI struct {
	SMM          uint8
	Pending      uint8
	SMMInsideNMI uint8
	LatchedInit  uint8
}

// VCPUEvents mirrors struct kvm_vcpu_events: pending and injected events.
type VCPUEvents struct {
	Exception           VCPUEventsException
	Interrupt           VCPUEventsInterrupt
	NMI                 VCPUEventsNMI
	SIPIVector          uint32
	Flags               uint32
	SMI                 VCPUEventsSMI
	TripleFaultPending  uint8
	Reserved            [26]uint8
	ExceptionHasPayload uint8
	ExceptionPayload    uint64
}

// VCPUEvents.Flags bits (KVM_VCPUEVENT_VALID_*): which optional fields
// SetVCPUEvents should apply.
const (
	VCPUEventValidNMIPending  uint32 = 0x01
	VCPUEventValidSIPIVector  uint32 = 0x02
	VCPUEventValidShadow      uint32 = 0x04
	VCPUEventValidSMM         uint32 = 0x08
	VCPUEventValidPayload     uint32 = 0x10
	VCPUEventValidTripleFault uint32 = 0x20
)

// DebugRegs mirrors struct kvm_debugregs.
type DebugRegs struct {
	DB       [4]uint64
	DR6      uint64
	DR7      uint64
	Flags    uint64
	Reserved [9]uint64
}

// GetLAPIC runs KVM_GET_LAPIC (needs the in-kernel irqchip).
func (c *VCPU) GetLAPIC() (*LAPICState, error) {
	l := &LAPICState{}
	if err := getVCPU(c, "KVM_GET_LAPIC", kvmGetLAPIC, l); err != nil {
		return nil, err
	}
	return l, nil
}

// SetLAPIC runs KVM_SET_LAPIC.
func (c *VCPU) SetLAPIC(l *LAPICState) error {
	if l == nil {
		return fmt.Errorf("KVM_SET_LAPIC: vCPU %d: nil state", c.id)
	}
	return setVCPU(c, "KVM_SET_LAPIC", kvmSetLAPIC, l)
}

// GetMPState runs KVM_GET_MP_STATE.
func (c *VCPU) GetMPState() (MPState, error) {
	var s MPState
	err := getVCPU(c, "KVM_GET_MP_STATE", kvmGetMPState, &s)
	return s, err
}

// SetMPState runs KVM_SET_MP_STATE.
func (c *VCPU) SetMPState(s MPState) error {
	return setVCPU(c, "KVM_SET_MP_STATE", kvmSetMPState, &s)
}

// GetVCPUEvents runs KVM_GET_VCPU_EVENTS.
func (c *VCPU) GetVCPUEvents() (VCPUEvents, error) {
	var e VCPUEvents
	err := getVCPU(c, "KVM_GET_VCPU_EVENTS", kvmGetVCPUEvents, &e)
	return e, err
}

// SetVCPUEvents runs KVM_SET_VCPU_EVENTS.
func (c *VCPU) SetVCPUEvents(e VCPUEvents) error {
	return setVCPU(c, "KVM_SET_VCPU_EVENTS", kvmSetVCPUEvents, &e)
}

// GetDebugRegs runs KVM_GET_DEBUGREGS.
func (c *VCPU) GetDebugRegs() (DebugRegs, error) {
	var d DebugRegs
	err := getVCPU(c, "KVM_GET_DEBUGREGS", kvmGetDebugRegs, &d)
	return d, err
}

// SetDebugRegs runs KVM_SET_DEBUGREGS.
func (c *VCPU) SetDebugRegs(d DebugRegs) error {
	return setVCPU(c, "KVM_SET_DEBUGREGS", kvmSetDebugRegs, &d)
}

// SetCPUID2 runs KVM_SET_CPUID2. Linux refuses to change CPUID after the
// vCPU has run, except to set the identical table.
func (c *VCPU) SetCPUID2(id *CPUID) error {
	const name = "KVM_SET_CPUID2"
	if id == nil {
		return fmt.Errorf("%s: vCPU %d: nil CPUID", name, c.id)
	}
	if len(id.Entries) > maxCPUIDEntries {
		return fmt.Errorf("%s: vCPU %d: %d entries, at most %d", name, c.id, len(id.Entries), maxCPUIDEntries)
	}
	buf := marshalCPUID2(len(id.Entries), id.Entries)
	return c.fd.with(name, func(fd int) error {
		if _, err := ioctlBuf(fd, kvmSetCPUID2, buf); err != nil {
			return fmt.Errorf("%s: vCPU %d: %w", name, c.id, err)
		}
		return nil
	})
}

// GetCPUID2 runs KVM_GET_CPUID2: the table set by SetCPUID2.
func (c *VCPU) GetCPUID2() (*CPUID, error) {
	const name = "KVM_GET_CPUID2"
	var out *CPUID
	err := c.fd.with(name, func(fd int) error {
		var err error
		out, err = getCPUID2(fd, name, kvmGetCPUID2)
		if err != nil {
			return fmt.Errorf("vCPU %d: %w", c.id, err)
		}
		return nil
	})
	return out, err
}

// GetMSRs runs KVM_GET_MSRS for entries' indices and fills their Data in
// place. It returns how many were read: KVM stops at the first MSR it
// refuses, so n < len(entries) means entries[n] is not readable.
func (c *VCPU) GetMSRs(entries []MSREntry) (int, error) {
	var n int
	err := c.fd.with("KVM_GET_MSRS", func(fd int) error {
		var err error
		n, err = msrsIoctl(fd, "KVM_GET_MSRS", kvmGetMSRs, entries, true)
		if err != nil {
			return fmt.Errorf("vCPU %d: %w", c.id, err)
		}
		return nil
	})
	return n, err
}

// SetMSRs runs KVM_SET_MSRS and returns how many entries were written; KVM
// stops at the first MSR it refuses.
func (c *VCPU) SetMSRs(entries []MSREntry) (int, error) {
	var n int
	err := c.fd.with("KVM_SET_MSRS", func(fd int) error {
		var err error
		n, err = msrsIoctl(fd, "KVM_SET_MSRS", kvmSetMSRs, entries, false)
		if err != nil {
			return fmt.Errorf("vCPU %d: %w", c.id, err)
		}
		return nil
	})
	return n, err
}

// GetTSCKHz runs KVM_GET_TSC_KHZ: the guest TSC frequency.
func (c *VCPU) GetTSCKHz() (uint32, error) {
	n, err := ioctlValue(&c.fd, "KVM_GET_TSC_KHZ", kvmGetTSCKHz, 0)
	if err != nil {
		return 0, fmt.Errorf("%w (vCPU %d)", err, c.id)
	}
	return uint32(n), nil
}

// SetTSCKHz runs KVM_SET_TSC_KHZ (needs CapTSCControl, and TSC scaling in
// hardware unless khz is the host rate).
func (c *VCPU) SetTSCKHz(khz uint32) error {
	if khz == 0 {
		return fmt.Errorf("KVM_SET_TSC_KHZ: vCPU %d: zero frequency", c.id)
	}
	if _, err := ioctlValue(&c.fd, "KVM_SET_TSC_KHZ", kvmSetTSCKHz, uintptr(khz)); err != nil {
		return fmt.Errorf("%w (vCPU %d)", err, c.id)
	}
	return nil
}
