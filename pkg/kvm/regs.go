package kvm

import "fmt"

// Regs mirrors struct kvm_regs: the general-purpose registers.
type Regs struct {
	RAX, RBX, RCX, RDX uint64
	RSI, RDI, RSP, RBP uint64
	R8, R9, R10, R11   uint64
	R12, R13, R14, R15 uint64
	RIP, RFLAGS        uint64
}

// Segment mirrors struct kvm_segment.
type Segment struct {
	Base     uint64
	Limit    uint32
	Selector uint16
	Type     uint8
	Present  uint8
	DPL      uint8
	DB       uint8
	S        uint8
	L        uint8
	G        uint8
	AVL      uint8
	Unusable uint8
	Padding  uint8
}

// DTable mirrors struct kvm_dtable (GDTR, IDTR).
type DTable struct {
	Base    uint64
	Limit   uint16
	Padding [3]uint16
}

// Sregs mirrors struct kvm_sregs: segment, control and system registers.
type Sregs struct {
	CS, DS, ES, FS, GS, SS Segment
	TR, LDT                Segment
	GDT, IDT               DTable
	CR0, CR2, CR3, CR4     uint64
	CR8                    uint64
	EFER                   uint64
	APICBase               uint64
	// InterruptBitmap has the bit of an external interrupt vector KVM has
	// queued but not yet injected (at most one bit set).
	InterruptBitmap [4]uint64
}

// FPU mirrors struct kvm_fpu (legacy x87/SSE state in FXSAVE terms).
// Linux neither reports nor applies MXCSR through KVM_GET_FPU/KVM_SET_FPU
// (observed: it always reads 0 and a set is dropped); save and restore it
// through XSave, whose legacy area holds it at Region[6].
type FPU struct {
	FPR        [8][16]uint8
	FCW        uint16
	FSW        uint16
	FTWX       uint8
	Pad1       uint8
	LastOpcode uint16
	LastIP     uint64
	LastDP     uint64
	XMM        [16][16]uint8
	MXCSR      uint32
	Pad2       uint32
}

// XSave mirrors struct kvm_xsave (the fixed 4 KiB form, KVM_GET_XSAVE).
type XSave struct {
	Region [1024]uint32
}

// XCR mirrors struct kvm_xcr.
type XCR struct {
	XCR      uint32
	Reserved uint32
	Value    uint64
}

// MaxXCRs is KVM_MAX_XCRS.
const MaxXCRs = 16

// XCRs mirrors struct kvm_xcrs.
type XCRs struct {
	NrXCRs  uint32
	Flags   uint32
	XCRs    [MaxXCRs]XCR
	Padding [16]uint64
}

// GetRegs runs KVM_GET_REGS.
func (c *VCPU) GetRegs() (Regs, error) {
	var r Regs
	err := getVCPU(c, "KVM_GET_REGS", kvmGetRegs, &r)
	return r, err
}

// SetRegs runs KVM_SET_REGS.
func (c *VCPU) SetRegs(r Regs) error { return setVCPU(c, "KVM_SET_REGS", kvmSetRegs, &r) }

// GetSregs runs KVM_GET_SREGS.
func (c *VCPU) GetSregs() (Sregs, error) {
	var s Sregs
	err := getVCPU(c, "KVM_GET_SREGS", kvmGetSregs, &s)
	return s, err
}

// SetSregs runs KVM_SET_SREGS.
func (c *VCPU) SetSregs(s Sregs) error { return setVCPU(c, "KVM_SET_SREGS", kvmSetSregs, &s) }

// GetFPU runs KVM_GET_FPU.
func (c *VCPU) GetFPU() (FPU, error) {
	var f FPU
	err := getVCPU(c, "KVM_GET_FPU", kvmGetFPU, &f)
	return f, err
}

// SetFPU runs KVM_SET_FPU.
func (c *VCPU) SetFPU(f FPU) error { return setVCPU(c, "KVM_SET_FPU", kvmSetFPU, &f) }

// GetXSave runs KVM_GET_XSAVE. Hosts without XSAVE (and KVM flavours that
// hide it from guests) fail it; the error wraps the errno.
func (c *VCPU) GetXSave() (*XSave, error) {
	x := &XSave{}
	if err := getVCPU(c, "KVM_GET_XSAVE", kvmGetXSave, x); err != nil {
		return nil, err
	}
	return x, nil
}

// SetXSave runs KVM_SET_XSAVE.
func (c *VCPU) SetXSave(x *XSave) error {
	if x == nil {
		return fmt.Errorf("KVM_SET_XSAVE: vCPU %d: nil state", c.id)
	}
	return setVCPU(c, "KVM_SET_XSAVE", kvmSetXSave, x)
}

// GetXCRs runs KVM_GET_XCRS.
func (c *VCPU) GetXCRs() (XCRs, error) {
	var x XCRs
	err := getVCPU(c, "KVM_GET_XCRS", kvmGetXCRs, &x)
	return x, err
}

// SetXCRs runs KVM_SET_XCRS.
func (c *VCPU) SetXCRs(x XCRs) error {
	if x.NrXCRs > MaxXCRs {
		return fmt.Errorf("KVM_SET_XCRS: vCPU %d: %d XCRs, at most %d", c.id, x.NrXCRs, MaxXCRs)
	}
	return setVCPU(c, "KVM_SET_XCRS", kvmSetXCRs, &x)
}

// getVCPU runs a vCPU ioctl that fills *arg (or, through setVCPU, reads
// it: the ioctl direction is in req, the wrapper is the same).
func getVCPU[T any](c *VCPU, name string, req uintptr, arg *T) error {
	return c.fd.with(name, func(fd int) error {
		if _, err := ioctlPtr(fd, req, arg); err != nil {
			return fmt.Errorf("%s: vCPU %d: %w", name, c.id, err)
		}
		return nil
	})
}

// setVCPU runs a vCPU ioctl that reads *arg.
func setVCPU[T any](c *VCPU, name string, req uintptr, arg *T) error {
	return getVCPU(c, name, req, arg)
}
