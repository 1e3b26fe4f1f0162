package machine

import (
	"testing"

	"github.com/vmmd/vmmd/pkg/kvm"
)

func TestGuestCPUIDTopologyAndTiming(t *testing.T) {
	supported := &kvm.CPUID{Entries: []kvm.CPUIDEntry{
		{Function: 0, EAX: 0xd},
		{Function: 1, EBX: 0xAB_CD_08_00, ECX: 1 << 31, EDX: 1},
		{Function: 0xB, Index: 0, EDX: 7},
		{Function: 0xB, Index: 1, EDX: 7},
		{Function: cpuidHypervisorBase, EAX: 0x40000001},
	}}
	got := guestCPUID(supported, 3, 4, 2_600_000, true)
	l1 := got.Find(1, 0)
	if l1 == nil || l1.EBX>>24 != 3 || (l1.EBX>>16)&0xFF != 4 || l1.EBX&0xFFFF != 0x0800 {
		t.Errorf("leaf 1 EBX = %#x, want APIC id 3, 4 logical CPUs, low half kept", l1.EBX)
	}
	if l1.EDX&(1<<28) == 0 || l1.EDX&1 == 0 || l1.ECX != 1<<31|1<<24 {
		t.Errorf("leaf 1 ECX/EDX = %#x/%#x: want HTT, hypervisor and TSC-deadline set, other bits unchanged", l1.ECX, l1.EDX)
	}
	for _, idx := range []uint32{0, 1} {
		if e := got.Find(0xB, idx); e == nil || e.EDX != 3 {
			t.Errorf("leaf 0xB.%d x2APIC id = %+v, want 3", idx, e)
		}
	}
	if e := got.Find(cpuidHypervisorBase, 0); e == nil || e.EAX != cpuidTiming {
		t.Errorf("hypervisor leaf max = %+v, want %#x", e, cpuidTiming)
	}
	if e := got.Find(cpuidTiming, 0); e == nil || e.EAX != 2_600_000 || e.EBX != lapicBusKHz {
		t.Errorf("timing leaf = %+v", e)
	}
	if len(supported.Entries) != 5 || supported.Entries[1].EBX != 0xAB_CD_08_00 {
		t.Error("guestCPUID modified its input")
	}
	// Without a TSC frequency nothing is added.
	if e := guestCPUID(supported, 0, 1, 0, false).Find(cpuidTiming, 0); e != nil {
		t.Errorf("timing leaf without TSC frequency: %+v", e)
	}
	if l := guestCPUID(supported, 0, 1, 0, false).Find(1, 0); l.EDX&(1<<28) != 0 || l.ECX&(1<<24) != 0 || l.ECX&(1<<31) == 0 {
		t.Errorf("leaf 1 for one vCPU without TSC-deadline: ECX/EDX = %#x/%#x", l.ECX, l.EDX)
	}
}
