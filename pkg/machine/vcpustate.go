package machine

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/vmmd/vmmd/pkg/kvm"
)

// MSRs that need special handling on restore.
const (
	msrTSC         = 0x10
	msrTSCDeadline = 0x6e0
)

// tscTolerancePPM is how far the destination's TSC frequency may be from
// the source's without rescaling, as QEMU allows: NTP absorbs it.
const tscTolerancePPM = 250

// saveVCPUFull captures everything about one vCPU for migration. It runs on
// the vCPU's thread. MP state comes first (reading it makes KVM process
// pending INIT/SIPI, which changes the rest) and events last.
//
// cpuid is the table the vCPU was given, as KVM reported it at creation:
// it never changes but in the bits KVM derives from the vCPU's state, which
// the destination does not compare (dynamicCPUID), and reading it again
// here would cost an ioctl (a bisection of several before Linux 6.4) in
// the downtime.
func saveVCPUFull(c *kvm.VCPU, msrIndex []uint32, cpuid []kvm.CPUIDEntry) (VCPUState, error) {
	s := VCPUState{ID: c.ID()}
	var err error
	if s.MPState, err = c.GetMPState(); err != nil {
		return s, err
	}
	if s.Regs, err = c.GetRegs(); err != nil {
		return s, err
	}
	if s.Sregs, err = c.GetSregs(); err != nil {
		return s, err
	}
	if s.FPU, err = c.GetFPU(); err != nil {
		return s, err
	}
	// XSAVE and XCRs are optional: a host may refuse either ioctl, and
	// then the FPU state above is all there is.
	if x, err := c.GetXSave(); err == nil {
		s.XSave = xsaveBytes(x)
	}
	s.XCRs = usableXCRs(c.GetXCRs())
	if s.MSRs, err = readMSRs(c, msrIndex); err != nil {
		return s, err
	}
	if khz, err := c.GetTSCKHz(); err == nil {
		s.TSCKHz = khz
	}
	l, err := c.GetLAPIC()
	if err != nil {
		return s, err
	}
	s.LAPIC = append([]byte(nil), l.Regs[:]...)
	if s.Debug, err = c.GetDebugRegs(); err != nil {
		return s, err
	}
	s.CPUID = cpuid
	if s.Events, err = c.GetVCPUEvents(); err != nil {
		return s, err
	}
	return s, nil
}

// readMSRs reads every MSR in index that the vCPU lets userspace read.
// KVM_GET_MSRS stops at the first MSR it refuses (one the vCPU's CPUID
// does not have, or one the host keeps to itself); that one is skipped and
// the read continues after it.
func readMSRs(c *kvm.VCPU, index []uint32) ([]MSR, error) {
	entries := make([]kvm.MSREntry, len(index))
	for i, idx := range index {
		entries[i].Index = idx
	}
	out := make([]MSR, 0, len(index))
	for rest := entries; len(rest) > 0; {
		n, err := c.GetMSRs(rest)
		if err != nil {
			return nil, err
		}
		for _, e := range rest[:n] {
			out = append(out, MSR{Index: e.Index, Data: e.Data})
		}
		if n < len(rest) {
			n++ // rest[n] is not readable
		}
		rest = rest[n:]
	}
	return out, nil
}

// restoreVCPUFull loads s into a vCPU that has never run, on its thread.
// The order is what KVM requires: SREGS (CR0/CR4/EFER, APIC base) before
// anything that depends on the mode; REGS before EVENTS (SET_REGS drops
// pending exceptions); FPU, then XSAVE which supersedes it; XCRs; MSRs,
// including the TSC and the kvmclock/PV MSRs; the LAPIC after SREGS (the
// APIC base MSR enables it); the TSC deadline MSR again after the LAPIC
// (KVM ignores it unless the LAPIC timer is in TSC-deadline mode, as QEMU
// notes); MP state; events; debug registers.
func restoreVCPUFull(c *kvm.VCPU, s *VCPUState) error {
	if err := c.SetSregs(s.Sregs); err != nil {
		return err
	}
	if err := c.SetRegs(s.Regs); err != nil {
		return err
	}
	if err := c.SetFPU(s.FPU); err != nil {
		return err
	}
	if len(s.XSave) != 0 {
		x, err := xsaveFromBytes(s.XSave)
		if err != nil {
			return err
		}
		if err := c.SetXSave(x); err != nil {
			return err
		}
	}
	// An empty set is no XCRs (see usableXCRs): KVM_SET_XCRS would refuse
	// it on a host without XSAVE.
	if s.XCRs != nil && s.XCRs.NrXCRs > 0 {
		if err := c.SetXCRs(*s.XCRs); err != nil {
			return err
		}
	}
	var deadline []kvm.MSREntry
	entries := make([]kvm.MSREntry, 0, len(s.MSRs))
	for _, m := range s.MSRs {
		e := kvm.MSREntry{Index: m.Index, Data: m.Data}
		if m.Index == msrTSCDeadline {
			deadline = append(deadline, e)
			continue
		}
		entries = append(entries, e)
	}
	if err := writeMSRs(c, entries); err != nil {
		return err
	}
	var l kvm.LAPICState
	if len(s.LAPIC) != len(l.Regs) {
		return fmt.Errorf("LAPIC state is %d bytes, want %d", len(s.LAPIC), len(l.Regs))
	}
	copy(l.Regs[:], s.LAPIC)
	if err := c.SetLAPIC(&l); err != nil {
		return err
	}
	if err := writeMSRs(c, deadline); err != nil {
		return err
	}
	if err := c.SetMPState(s.MPState); err != nil {
		return err
	}
	ev := s.Events
	// KVM_GET_VCPU_EVENTS fills the SIPI vector but does not flag it.
	ev.Flags |= kvm.VCPUEventValidSIPIVector
	if err := c.SetVCPUEvents(ev); err != nil {
		return err
	}
	return c.SetDebugRegs(s.Debug)
}

// usableXCRs returns what KVM_GET_XCRS answered if there is anything to
// migrate, else nil. A host without XSAVE answers with zero XCRs rather
// than an error (Linux 6.1, kvm_vcpu_ioctl_x86_get_xcrs) but refuses
// KVM_SET_XCRS with EINVAL even for zero: saving that empty set made every
// migration between two such hosts fail (the nested harness's L1, an
// emulated CPU without XSAVE).
func usableXCRs(x kvm.XCRs, err error) *kvm.XCRs {
	if err != nil || x.NrXCRs == 0 {
		return nil
	}
	return &x
}

func writeMSRs(c *kvm.VCPU, entries []kvm.MSREntry) error {
	n, err := c.SetMSRs(entries)
	if err != nil {
		return err
	}
	if n < len(entries) {
		return fmt.Errorf("KVM_SET_MSRS: vCPU %d: KVM refused MSR %#x (value %#x)", c.ID(), entries[n].Index, entries[n].Data)
	}
	return nil
}

func xsaveBytes(x *kvm.XSave) []byte {
	b := make([]byte, xsaveSize)
	for i, w := range x.Region {
		binary.LittleEndian.PutUint32(b[4*i:], w)
	}
	return b
}

func xsaveFromBytes(b []byte) (*kvm.XSave, error) {
	if len(b) != xsaveSize {
		return nil, fmt.Errorf("XSAVE state is %d bytes, want %d", len(b), xsaveSize)
	}
	x := &kvm.XSave{}
	for i := range x.Region {
		x.Region[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	return x, nil
}

// checkCPUID compares the guest's CPUID on the source with this vCPU's.
// The guest has already looked at it, so any difference is a feature that
// could vanish under it. The timing leaf's TSC frequency is left to the
// TSC check, which knows the tolerance, and the bits KVM derives from the
// vCPU's state are left out (see dynamicCPUID).
func checkCPUID(id int, source, local []kvm.CPUIDEntry) error {
	type key struct{ fn, idx uint32 }
	k := func(e kvm.CPUIDEntry) key {
		if e.Flags&kvm.CPUIDFlagSignificantIndex == 0 {
			return key{e.Function, 0}
		}
		return key{e.Function, e.Index}
	}
	have := make(map[key]kvm.CPUIDEntry, len(local))
	for _, e := range local {
		have[k(e)] = e
	}
	var errs []error
	seen := make(map[key]bool, len(source))
	for _, s := range source {
		kk := k(s)
		seen[kk] = true
		l, ok := have[kk]
		if !ok {
			errs = append(errs, fmt.Errorf("vCPU %d: CPUID leaf %#x.%d: the source has it, this host does not", id, kk.fn, kk.idx))
			continue
		}
		ms, ml := dynamicCPUID(s), dynamicCPUID(l)
		if s.Function == cpuidTiming {
			ms.EAX, ml.EAX = 0, 0
		}
		if ms.EAX != ml.EAX || ms.EBX != ml.EBX || ms.ECX != ml.ECX || ms.EDX != ml.EDX {
			errs = append(errs, fmt.Errorf("vCPU %d: CPUID leaf %#x.%d: source has %08x %08x %08x %08x, this host %08x %08x %08x %08x",
				id, kk.fn, kk.idx, s.EAX, s.EBX, s.ECX, s.EDX, l.EAX, l.EBX, l.ECX, l.EDX))
		}
	}
	for _, l := range local {
		if kk := k(l); !seen[kk] {
			errs = append(errs, fmt.Errorf("vCPU %d: CPUID leaf %#x.%d: this host has it, the source does not", id, kk.fn, kk.idx))
		}
	}
	if len(errs) > 8 {
		errs = append(errs[:8], fmt.Errorf("and %d more CPUID differences", len(errs)-8))
	}
	return errors.Join(errs...)
}

// CPUID bits that KVM recomputes from the vCPU's state
// (kvm_update_cpuid_runtime) whenever CR4, XCR0 or the APIC base change.
const (
	cpuid1ECXOSXSAVE = 1 << 27 // CR4.OSXSAVE
	cpuid1EDXAPIC    = 1 << 9  // IA32_APIC_BASE enable
	cpuid7ECXOSPKE   = 1 << 4  // CR4.PKE
	cpuidXSave       = 0xD     // sub-leaves 0 and 1: EBX is the XSAVE area size for the XCR0 (and XSS) in use
)

// dynamicCPUID returns e without the bits KVM_GET_CPUID2 reports from the
// vCPU's state rather than from the table it was given: a guest that has
// run (CR4.OSXSAVE and CR4.PKE set, XCR0 beyond x87|SSE) differs there from
// the destination's fresh vCPU without any feature differing, and its
// restored CR4, XCR0 and APIC base make KVM recompute them to match.
// Comparing them refused the migration of a Linux guest that enables
// protection keys (seen in the nested harness with L1 on QEMU's -cpu max:
// "CPUID leaf 0x7.0: source has ... 0001021c ..., this host ... 0001020c");
// OSXSAVE, the APIC bit and the XSAVE sizes change the same way in
// kvm_update_cpuid_runtime.
func dynamicCPUID(e kvm.CPUIDEntry) kvm.CPUIDEntry {
	switch {
	case e.Function == 1:
		e.ECX &^= cpuid1ECXOSXSAVE
		e.EDX &^= cpuid1EDXAPIC
	case e.Function == 7 && e.Index == 0:
		e.ECX &^= cpuid7ECXOSPKE
	case e.Function == cpuidXSave && (e.Index == 0 || e.Index == 1):
		e.EBX = 0
	}
	return e
}

// tscClose reports whether two TSC frequencies are within tolerance.
func tscClose(a, b uint32) bool {
	d := int64(a) - int64(b)
	if d < 0 {
		d = -d
	}
	return d*1_000_000 <= int64(b)*tscTolerancePPM
}
