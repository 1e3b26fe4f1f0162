package kvm

import "fmt"

// irqfd mirrors struct kvm_irqfd.
type irqfd struct {
	FD         uint32
	GSI        uint32
	Flags      uint32
	ResampleFD uint32
	Pad        [16]uint8
}

// IRQFD flags (KVM_IRQFD_FLAG_*).
const (
	IRQFDFlagDeassign uint32 = 1 << 0
	IRQFDFlagResample uint32 = 1 << 1
)

// IRQFD runs KVM_IRQFD: a write to eventfd fd raises GSI gsi (with
// IRQFDFlagDeassign, removes the binding). For IRQFDFlagResample use
// IRQFDResample.
func (v *VM) IRQFD(fd int, gsi uint32, flags uint32) error {
	return v.irqfd(fd, gsi, flags, 0)
}

// IRQFDResample binds fd to a level-triggered GSI: KVM raises it on an
// eventfd write and, when the guest acknowledges it, lowers it and signals
// resampleFD so the device can re-assert it if still pending.
func (v *VM) IRQFDResample(fd int, gsi uint32, resampleFD int) error {
	if resampleFD < 0 {
		return fmt.Errorf("KVM_IRQFD: gsi %d: negative resample fd %d", gsi, resampleFD)
	}
	return v.irqfd(fd, gsi, IRQFDFlagResample, uint32(resampleFD))
}

func (v *VM) irqfd(fd int, gsi, flags, resample uint32) error {
	if fd < 0 {
		return fmt.Errorf("KVM_IRQFD: gsi %d: negative fd %d", gsi, fd)
	}
	a := irqfd{FD: uint32(fd), GSI: gsi, Flags: flags, ResampleFD: resample}
	if err := ioctlNamed(&v.fd, "KVM_IRQFD", kvmIRQFD, &a); err != nil {
		return fmt.Errorf("%w (fd %d gsi %d flags %#x)", err, fd, gsi, flags)
	}
	return nil
}

// ioeventfd mirrors struct kvm_ioeventfd.
type ioeventfd struct {
	DataMatch uint64
	Addr      uint64
	Len       uint32
	FD        int32
	Flags     uint32
	Pad       [36]uint8
}

// IOEventFD flags (KVM_IOEVENTFD_FLAG_*).
const (
	IOEventFDFlagDataMatch uint32 = 1 << 0
	IOEventFDFlagPIO       uint32 = 1 << 1
	IOEventFDFlagDeassign  uint32 = 1 << 2
)

// IOEvent describes a KVM_IOEVENTFD binding.
type IOEvent struct {
	// Addr is the guest physical (or, with IOEventFDFlagPIO, port) address.
	Addr uint64
	// Len is the access width in bytes (1, 2, 4 or 8), or 0 for any width.
	Len uint32
	// FD is the eventfd KVM signals instead of exiting.
	FD int
	// DataMatch is the value to match with IOEventFDFlagDataMatch.
	DataMatch uint64
	// Flags combines IOEventFDFlag* values.
	Flags uint32
}

// IOEventFD runs KVM_IOEVENTFD: guest writes matching e signal e.FD instead
// of exiting to userspace (with IOEventFDFlagDeassign, removes it).
func (v *VM) IOEventFD(e IOEvent) error {
	const name = "KVM_IOEVENTFD"
	switch e.Len {
	case 0, 1, 2, 4, 8:
	default:
		return fmt.Errorf("%s: address %#x: length %d is not 0, 1, 2, 4 or 8", name, e.Addr, e.Len)
	}
	if e.FD < 0 || e.FD > 1<<31-1 {
		return fmt.Errorf("%s: address %#x: bad fd %d", name, e.Addr, e.FD)
	}
	a := ioeventfd{DataMatch: e.DataMatch, Addr: e.Addr, Len: e.Len, FD: int32(e.FD), Flags: e.Flags}
	if err := ioctlNamed(&v.fd, name, kvmIOEventFD, &a); err != nil {
		return fmt.Errorf("%w (address %#x len %d flags %#x)", err, e.Addr, e.Len, e.Flags)
	}
	return nil
}

// MSI mirrors struct kvm_msi.
type MSI struct {
	AddressLo uint32
	AddressHi uint32
	Data      uint32
	Flags     uint32
	DevID     uint32
	Pad       [12]uint8
}

// SignalMSI runs KVM_SIGNAL_MSI. It returns whether the interrupt was
// delivered (false: the guest blocked it).
func (v *VM) SignalMSI(m MSI) (bool, error) {
	var r uintptr
	err := v.fd.with("KVM_SIGNAL_MSI", func(fd int) error {
		var err error
		r, err = ioctlPtr(fd, kvmSignalMSI, &m)
		if err != nil {
			return fmt.Errorf("KVM_SIGNAL_MSI: address %#x data %#x: %w", uint64(m.AddressHi)<<32|uint64(m.AddressLo), m.Data, err)
		}
		return nil
	})
	return r > 0, err
}

// EnableCapArgs mirrors struct kvm_enable_cap.
type EnableCapArgs struct {
	Cap   Cap
	Flags uint32
	Args  [4]uint64
	Pad   [64]uint8
}

// EnableCap runs KVM_ENABLE_CAP on the VM.
func (v *VM) EnableCap(a EnableCapArgs) error {
	if err := ioctlNamed(&v.fd, "KVM_ENABLE_CAP", kvmEnableCap, &a); err != nil {
		return fmt.Errorf("%w (%v)", err, a.Cap)
	}
	return nil
}

// EnableCap runs KVM_ENABLE_CAP on the vCPU.
func (c *VCPU) EnableCap(a EnableCapArgs) error {
	if err := setVCPU(c, "KVM_ENABLE_CAP", kvmEnableCap, &a); err != nil {
		return fmt.Errorf("%w (%v)", err, a.Cap)
	}
	return nil
}

// kvmInterruptArg mirrors struct kvm_interrupt.
type kvmInterruptArg struct {
	IRQ uint32
}

// Interrupt runs KVM_INTERRUPT: queues external interrupt vector irq. Only
// without an in-kernel irqchip, when ReadyForInterruptInjection is true.
func (c *VCPU) Interrupt(vector uint32) error {
	if vector > 255 {
		return fmt.Errorf("KVM_INTERRUPT: vCPU %d: vector %d out of range", c.id, vector)
	}
	a := kvmInterruptArg{IRQ: vector}
	return setVCPU(c, "KVM_INTERRUPT", kvmInterrupt, &a)
}

// NMI runs KVM_NMI: queues a non-maskable interrupt.
func (c *VCPU) NMI() error {
	_, err := ioctlValue(&c.fd, "KVM_NMI", kvmNMI, 0)
	return err
}

// KVMClockCtrl runs KVM_KVMCLOCK_CTRL: tells a guest using kvmclock that
// it was paused, so its soft-lockup watchdog does not fire on resume.
// EINVAL means the guest has not enabled kvmclock.
func (c *VCPU) KVMClockCtrl() error {
	_, err := ioctlValue(&c.fd, "KVM_KVMCLOCK_CTRL", kvmKVMClockCtrl, 0)
	return err
}

// Translation mirrors struct kvm_translation.
type Translation struct {
	LinearAddress   uint64
	PhysicalAddress uint64
	Valid           uint8
	Writeable       uint8
	Usermode        uint8
	Pad             [5]uint8
}

// Translate runs KVM_TRANSLATE: walks the guest page tables for a linear
// address with the vCPU's current paging mode.
func (c *VCPU) Translate(linear uint64) (Translation, error) {
	t := Translation{LinearAddress: linear}
	err := getVCPU(c, "KVM_TRANSLATE", kvmTranslate, &t)
	return t, err
}

// GuestDebug mirrors struct kvm_guest_debug (x86).
type GuestDebug struct {
	Control  uint32
	Pad      uint32
	DebugReg [8]uint64
}

// GuestDebug.Control bits (KVM_GUESTDBG_*).
const (
	GuestDebugEnable     uint32 = 0x00000001
	GuestDebugSingleStep uint32 = 0x00000002
	GuestDebugUseSWBP    uint32 = 0x00010000
	GuestDebugUseHWBP    uint32 = 0x00020000
	GuestDebugInjectDB   uint32 = 0x00040000
	GuestDebugInjectBP   uint32 = 0x00080000
	GuestDebugBlockIRQ   uint32 = 0x00100000
)

// SetGuestDebug runs KVM_SET_GUEST_DEBUG.
func (c *VCPU) SetGuestDebug(d GuestDebug) error {
	return setVCPU(c, "KVM_SET_GUEST_DEBUG", kvmSetGuestDebug, &d)
}
