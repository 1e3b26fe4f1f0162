package kvm_test

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vmmd/vmmd/pkg/kvm"
)

// irqchipVM is a VM with the in-kernel irqchip and PIT and one vCPU.
func irqchipVM(t *testing.T, s *kvm.System) (*kvm.VM, *kvm.VCPU) {
	t.Helper()
	vm := newVM(t, s)
	if err := vm.SetTSSAddr(0xfffbd000); err != nil {
		t.Fatalf("SetTSSAddr: %v", err)
	}
	if err := vm.SetIdentityMapAddr(0xfffbc000); err != nil {
		t.Fatalf("SetIdentityMapAddr: %v", err)
	}
	if err := vm.CreateIRQChip(); err != nil {
		t.Fatalf("CreateIRQChip: %v", err)
	}
	if err := vm.CreatePIT2(kvm.PITSpeakerDummy); err != nil {
		t.Fatalf("CreatePIT2: %v", err)
	}
	return vm, newVCPU(t, s, vm, 0)
}

func TestRegsRoundTrip(t *testing.T) {
	s := openSystem(t)
	_, c := irqchipVM(t, s)

	want := kvm.Regs{RAX: 1, RBX: 2, RCX: 3, RDX: 4, RSI: 5, RDI: 6, RSP: 7, RBP: 8,
		R8: 9, R9: 10, R10: 11, R11: 12, R12: 13, R13: 14, R14: 15, R15: 16, RIP: 0xfff0, RFLAGS: 0x202}
	if err := c.SetRegs(want); err != nil {
		t.Fatalf("SetRegs: %v", err)
	}
	got, err := c.GetRegs()
	if err != nil {
		t.Fatalf("GetRegs: %v", err)
	}
	if got != want {
		t.Errorf("GetRegs = %+v, want %+v", got, want)
	}

	sr, err := c.GetSregs()
	if err != nil {
		t.Fatalf("GetSregs: %v", err)
	}
	if sr.CS.Selector != 0xf000 || sr.CR0&1 != 0 {
		t.Errorf("reset sregs: CS %+v CR0 %#x, want real mode at f000", sr.CS, sr.CR0)
	}
	sr.DS.Base, sr.DS.Selector = 0x12340, 0x1234
	sr.CR2 = 0xdead000
	if err := c.SetSregs(sr); err != nil {
		t.Fatalf("SetSregs: %v", err)
	}
	sr2, err := c.GetSregs()
	if err != nil {
		t.Fatalf("GetSregs: %v", err)
	}
	if sr2.DS != sr.DS || sr2.CR2 != sr.CR2 || sr2.CS != sr.CS || sr2.GDT != sr.GDT || sr2.EFER != sr.EFER {
		t.Errorf("sregs round trip: got DS %+v CR2 %#x, want DS %+v CR2 %#x", sr2.DS, sr2.CR2, sr.DS, sr.CR2)
	}

	f, err := c.GetFPU()
	if err != nil {
		t.Fatalf("GetFPU: %v", err)
	}
	// MXCSR is not checked: KVM_GET_FPU/KVM_SET_FPU do not carry it.
	if f.FCW != 0x37f {
		t.Errorf("reset FPU: FCW %#x, want 0x37f", f.FCW)
	}
	f.XMM[3][5] = 0xa5
	f.FPR[2][1] = 0x5a
	f.FCW = 0x27f
	if err := c.SetFPU(f); err != nil {
		t.Fatalf("SetFPU: %v", err)
	}
	f2, err := c.GetFPU()
	if err != nil {
		t.Fatalf("GetFPU: %v", err)
	}
	if f2.XMM[3][5] != 0xa5 || f2.FPR[2][1] != 0x5a || f2.FCW != 0x27f {
		t.Errorf("FPU round trip lost data: XMM3[5] %#x FPR2[1] %#x FCW %#x", f2.XMM[3][5], f2.FPR[2][1], f2.FCW)
	}

	if n, _ := s.CheckExtension(kvm.CapXCRS); n > 0 {
		x, err := c.GetXCRs()
		if err != nil {
			t.Fatalf("GetXCRs: %v", err)
		}
		if x.NrXCRs == 0 || x.XCRs[0].XCR != 0 || x.XCRs[0].Value&1 == 0 {
			t.Errorf("XCRs %+v: want XCR0 with x87 bit", x.XCRs[:x.NrXCRs])
		}
		if err := c.SetXCRs(x); err != nil {
			t.Fatalf("SetXCRs: %v", err)
		}
		x2, err := c.GetXCRs()
		if err != nil {
			t.Fatalf("GetXCRs: %v", err)
		}
		if x2 != x {
			t.Errorf("XCRs round trip: %+v, want %+v", x2, x)
		}
	} else {
		t.Log("no KVM_CAP_XCRS: XCRs not tested")
	}
}

func TestXSave(t *testing.T) {
	s := openSystem(t)
	n, err := s.CheckExtension(kvm.CapXSave)
	if err != nil {
		t.Fatalf("CheckExtension: %v", err)
	}
	vm := newVM(t, s)
	c := newVCPU(t, s, vm, 0)
	x, err := c.GetXSave()
	if n == 0 {
		t.Logf("no KVM_CAP_XSAVE; KVM_GET_XSAVE gives %v", err)
		return
	}
	if err != nil {
		t.Fatalf("KVM_CAP_XSAVE=%d but GetXSave: %v", n, err)
	}
	// The legacy area's FCW (bytes 0-1) resets to 0x37f.
	if x.Region[0]&0xffff != 0x37f {
		t.Errorf("XSAVE FCW = %#x, want 0x37f", x.Region[0]&0xffff)
	}
	if err := c.SetXSave(x); err != nil {
		t.Fatalf("SetXSave: %v", err)
	}
}

func TestVCPUIRQChipState(t *testing.T) {
	s := openSystem(t)
	_, c := irqchipVM(t, s)

	l, err := c.GetLAPIC()
	if err != nil {
		t.Fatalf("GetLAPIC: %v", err)
	}
	if id := l.Regs[0x23]; id != 0 { // APIC ID register, bits 31:24
		t.Errorf("LAPIC ID of vCPU 0 = %d", id)
	}
	l.Regs[0xf0] = 0xff // spurious vector
	l.Regs[0xf1] = 0x01 // APIC software enable
	if err := c.SetLAPIC(l); err != nil {
		t.Fatalf("SetLAPIC: %v", err)
	}
	l2, err := c.GetLAPIC()
	if err != nil {
		t.Fatalf("GetLAPIC: %v", err)
	}
	if l2.Regs[0xf0] != 0xff || l2.Regs[0xf1]&1 != 1 {
		t.Errorf("LAPIC SVR after set = %#x%02x, want 0x1ff", l2.Regs[0xf1], l2.Regs[0xf0])
	}

	mp, err := c.GetMPState()
	if err != nil {
		t.Fatalf("GetMPState: %v", err)
	}
	if mp != kvm.MPStateRunnable {
		t.Errorf("BSP MP state %v, want RUNNABLE", mp)
	}
	if err := c.SetMPState(kvm.MPStateHalted); err != nil {
		t.Fatalf("SetMPState: %v", err)
	}
	if mp, err := c.GetMPState(); err != nil || mp != kvm.MPStateHalted {
		t.Errorf("MP state after set = %v, %v; want HALTED", mp, err)
	}
	if err := c.SetMPState(kvm.MPStateRunnable); err != nil {
		t.Fatalf("SetMPState: %v", err)
	}

	ev, err := c.GetVCPUEvents()
	if err != nil {
		t.Fatalf("GetVCPUEvents: %v", err)
	}
	ev.NMI.Masked = 1
	ev.Flags = kvm.VCPUEventValidNMIPending | kvm.VCPUEventValidShadow
	if err := c.SetVCPUEvents(ev); err != nil {
		t.Fatalf("SetVCPUEvents: %v", err)
	}
	ev2, err := c.GetVCPUEvents()
	if err != nil {
		t.Fatalf("GetVCPUEvents: %v", err)
	}
	if ev2.NMI.Masked != 1 {
		t.Errorf("VCPUEvents NMI.Masked = %d after setting 1", ev2.NMI.Masked)
	}

	d, err := c.GetDebugRegs()
	if err != nil {
		t.Fatalf("GetDebugRegs: %v", err)
	}
	if d.DR7 != 0x400 {
		t.Errorf("reset DR7 = %#x, want 0x400", d.DR7)
	}
	d.DB[1] = 0x4000
	if err := c.SetDebugRegs(d); err != nil {
		t.Fatalf("SetDebugRegs: %v", err)
	}
	if d2, err := c.GetDebugRegs(); err != nil || d2.DB[1] != 0x4000 {
		t.Errorf("DebugRegs after set: DB1 %#x, %v", d2.DB[1], err)
	}

	const msrTSC = 0x10
	ms := []kvm.MSREntry{{Index: msrTSC}}
	if n, err := c.SetMSRs([]kvm.MSREntry{{Index: msrTSC, Data: 1 << 40}}); err != nil || n != 1 {
		t.Fatalf("SetMSRs(TSC) = %d, %v", n, err)
	}
	n, err := c.GetMSRs(ms)
	if err != nil || n != 1 {
		t.Fatalf("GetMSRs(TSC) = %d, %v", n, err)
	}
	if ms[0].Data < 1<<40 {
		t.Errorf("TSC after setting 2^40 reads %#x", ms[0].Data)
	}
	if n, err := c.GetMSRs([]kvm.MSREntry{{Index: msrTSC}, {Index: 0xdeadbeef}}); err != nil || n != 1 {
		t.Errorf("GetMSRs with a bogus second MSR = %d, %v; want 1, nil", n, err)
	}

	khz, err := c.GetTSCKHz()
	if err != nil || khz == 0 {
		t.Errorf("GetTSCKHz = %d, %v", khz, err)
	}
	t.Logf("guest TSC %d kHz", khz)
}

func TestVMIRQChipState(t *testing.T) {
	s := openSystem(t)
	vm, _ := irqchipVM(t, s)

	for _, id := range []uint32{kvm.IRQChipPICMaster, kvm.IRQChipPICSlave, kvm.IRQChipIOAPIC} {
		chip, err := vm.GetIRQChip(id)
		if err != nil {
			t.Fatalf("GetIRQChip(%d): %v", id, err)
		}
		if chip.ChipID != id {
			t.Errorf("GetIRQChip(%d) returned chip %d", id, chip.ChipID)
		}
		if err := vm.SetIRQChip(chip); err != nil {
			t.Fatalf("SetIRQChip(%d): %v", id, err)
		}
	}
	io, err := vm.GetIRQChip(kvm.IRQChipIOAPIC)
	if err != nil {
		t.Fatalf("GetIRQChip: %v", err)
	}
	st, err := io.IOAPIC()
	if err != nil {
		t.Fatalf("IOAPIC(): %v", err)
	}
	if st.BaseAddress != 0xfec00000 {
		t.Errorf("IOAPIC base %#x, want 0xfec00000", st.BaseAddress)
	}
	st.RedirTbl[5] = 0x10035 // masked, vector 0x35
	if err := io.SetIOAPIC(st); err != nil {
		t.Fatalf("SetIOAPIC: %v", err)
	}
	if err := vm.SetIRQChip(io); err != nil {
		t.Fatalf("SetIRQChip: %v", err)
	}
	io2, err := vm.GetIRQChip(kvm.IRQChipIOAPIC)
	if err != nil {
		t.Fatalf("GetIRQChip: %v", err)
	}
	if st2, _ := io2.IOAPIC(); st2.RedirTbl[5] != 0x10035 {
		t.Errorf("IOAPIC redirection entry 5 = %#x after setting 0x10035", st2.RedirTbl[5])
	}
	pic, err := vm.GetIRQChip(kvm.IRQChipPICMaster)
	if err != nil {
		t.Fatalf("GetIRQChip: %v", err)
	}
	if _, err := pic.IOAPIC(); err == nil {
		t.Error("IOAPIC() on a PIC did not fail")
	}
	if _, err := vm.GetIRQChip(7); err == nil {
		t.Error("GetIRQChip(7) did not fail")
	}

	if err := vm.IRQLine(4, true); err != nil {
		t.Fatalf("IRQLine: %v", err)
	}
	if err := vm.IRQLine(4, false); err != nil {
		t.Fatalf("IRQLine: %v", err)
	}

	pit, err := vm.GetPIT2()
	if err != nil {
		t.Fatalf("GetPIT2: %v", err)
	}
	if err := vm.SetPIT2(pit); err != nil {
		t.Fatalf("SetPIT2: %v", err)
	}

	clk, err := vm.GetClock()
	if err != nil {
		t.Fatalf("GetClock: %v", err)
	}
	t.Logf("kvmclock %d ns flags %#x realtime %d host_tsc %d", clk.Clock, clk.Flags, clk.Realtime, clk.HostTSC)
	target := clk.Clock + 1_000_000_000_000
	if err := vm.SetClock(&kvm.ClockData{Clock: target}); err != nil {
		t.Fatalf("SetClock: %v", err)
	}
	clk2, err := vm.GetClock()
	if err != nil {
		t.Fatalf("GetClock: %v", err)
	}
	if clk2.Clock < target {
		t.Errorf("kvmclock after SetClock(%d) = %d", target, clk2.Clock)
	}

	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatalf("eventfd: %v", err)
	}
	defer unix.Close(efd)
	if err := vm.IRQFD(efd, 5, 0); err != nil {
		t.Fatalf("IRQFD: %v", err)
	}
	if err := vm.IRQFD(efd, 5, kvm.IRQFDFlagDeassign); err != nil {
		t.Fatalf("IRQFD deassign: %v", err)
	}
}

// TestIOEventFD binds the serial port to an eventfd: the guest's OUT then
// signals it without an exit, so the first exit is HLT.
func TestIOEventFD(t *testing.T) {
	s := openSystem(t)
	vm := newVM(t, s)
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatalf("eventfd: %v", err)
	}
	defer unix.Close(efd)
	if err := vm.IOEventFD(kvm.IOEvent{Addr: 0x3f8, Len: 1, FD: efd, Flags: kvm.IOEventFDFlagPIO}); err != nil {
		t.Fatalf("IOEventFD: %v", err)
	}
	if err := vm.IOEventFD(kvm.IOEvent{Addr: 0x3f8, Len: 3, FD: efd}); err == nil {
		t.Error("IOEventFD with length 3 did not fail")
	}
	c, _ := realModeVCPU(t, s, vm)
	if r := runUntil(t, c); r != kvm.ExitHLT {
		t.Fatalf("exit %v, want HLT (the OUT should have gone to the eventfd)", r)
	}
	var buf [8]byte
	if _, err := unix.Read(efd, buf[:]); err != nil {
		t.Fatalf("eventfd not signalled: %v", err)
	}
}

// TestReport logs what this host's KVM offers; it fails only if a query
// that every KVM supports fails.
func TestReport(t *testing.T) {
	s := openSystem(t)
	for c := kvm.Cap(0); c < 240; c++ {
		n, err := s.CheckExtension(c)
		if err != nil {
			t.Fatalf("CheckExtension(%v): %v", c, err)
		}
		if n != 0 {
			t.Logf("cap %v = %d", c, n)
		}
	}
	id, err := s.SupportedCPUID()
	if err != nil {
		t.Fatalf("SupportedCPUID: %v", err)
	}
	t.Logf("supported CPUID: %d entries", len(id.Entries))
	for _, e := range id.Entries {
		t.Logf("  leaf %#x.%d flags %d: %08x %08x %08x %08x", e.Function, e.Index, e.Flags, e.EAX, e.EBX, e.ECX, e.EDX)
	}
	if em, err := s.EmulatedCPUID(); err != nil {
		t.Logf("EmulatedCPUID: %v", err)
	} else {
		t.Logf("emulated CPUID: %d entries", len(em.Entries))
	}
	msrs, err := s.MSRIndexList()
	if err != nil {
		t.Fatalf("MSRIndexList: %v", err)
	}
	t.Logf("MSR index list (%d): %#x", len(msrs), msrs)
	if fl, err := s.MSRFeatureIndexList(); err != nil {
		t.Logf("MSRFeatureIndexList: %v", err)
	} else {
		es := make([]kvm.MSREntry, len(fl))
		for i, idx := range fl {
			es[i].Index = idx
		}
		n, err := s.FeatureMSRs(es)
		t.Logf("feature MSRs (%d): read %d, %v: %+v", len(fl), n, err, es)
	}

	vm := newVM(t, s)
	var c *kvm.VCPU
	probe := func(name string, err error) {
		var errno unix.Errno
		if errors.As(err, &errno) {
			t.Logf("%s fails: %v (%s)", name, err, unix.ErrnoName(errno))
		} else if err != nil {
			t.Logf("%s fails: %v", name, err)
		} else {
			t.Logf("%s ok", name)
		}
	}
	// These two must precede vCPU creation.
	probe("KVM_SET_TSS_ADDR", vm.SetTSSAddr(0xfffbd000))
	probe("KVM_SET_IDENTITY_MAP_ADDR", vm.SetIdentityMapAddr(0xfffbc000))
	c = newVCPU(t, s, vm, 0)
	_, err = c.GetXSave()
	probe("KVM_GET_XSAVE", err)
	_, err = c.GetXCRs()
	probe("KVM_GET_XCRS", err)
	_, err = c.GetLAPIC()
	probe("KVM_GET_LAPIC (no irqchip)", err)
	_, err = c.GetVCPUEvents()
	probe("KVM_GET_VCPU_EVENTS", err)
	_, err = c.GetDebugRegs()
	probe("KVM_GET_DEBUGREGS", err)
	khz, err := c.GetTSCKHz()
	probe("KVM_GET_TSC_KHZ", err)
	if err == nil {
		probe("KVM_SET_TSC_KHZ (same rate)", c.SetTSCKHz(khz))
	}
	probe("KVM_KVMCLOCK_CTRL", c.KVMClockCtrl())
	_, err = c.Translate(0x1000)
	probe("KVM_TRANSLATE", err)
	probe("KVM_SET_GUEST_DEBUG", c.SetGuestDebug(kvm.GuestDebug{Control: kvm.GuestDebugEnable | kvm.GuestDebugSingleStep}))
	probe("KVM_SET_GUEST_DEBUG off", c.SetGuestDebug(kvm.GuestDebug{}))
	probe("KVM_NMI (no irqchip)", c.NMI())
	probe("KVM_INTERRUPT", c.Interrupt(0x20))
	_, err = vm.GetClock()
	probe("KVM_GET_CLOCK", err)
	_, err = c.GetCPUID2()
	probe("KVM_GET_CPUID2", err)
	_, err = vm.SignalMSI(kvm.MSI{AddressLo: 0xfee00000, Data: 0x30})
	probe("KVM_SIGNAL_MSI (no irqchip)", err)
}
