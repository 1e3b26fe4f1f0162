package machine

import (
	"errors"
	"strings"
	"testing"

	"github.com/vmmd/vmmd/pkg/kvm"
)

// TestUsableXCRs: an empty XCR set, what KVM_GET_XCRS answers on a host
// without XSAVE, is saved as no XCRs, so that the destination never calls
// KVM_SET_XCRS, which such a host refuses.
func TestUsableXCRs(t *testing.T) {
	if x := usableXCRs(kvm.XCRs{}, nil); x != nil {
		t.Errorf("zero XCRs: got %+v, want nil", *x)
	}
	if x := usableXCRs(kvm.XCRs{NrXCRs: 1}, errors.New("KVM_GET_XCRS: invalid argument")); x != nil {
		t.Errorf("an error: got %+v, want nil", *x)
	}
	in := kvm.XCRs{NrXCRs: 1, XCRs: [kvm.MaxXCRs]kvm.XCR{{XCR: 0, Value: 7}}}
	x := usableXCRs(in, nil)
	if x == nil || *x != in {
		t.Errorf("XCR0=7: got %v, want %+v", x, in)
	}
}

// TestCheckCPUIDDynamicBits: the bits KVM derives from CR4, XCR0 and the
// APIC base differ between a guest that has run and a fresh vCPU; they
// must not refuse a migration, while a real feature difference in the same
// registers still does.
func TestCheckCPUIDDynamicBits(t *testing.T) {
	sig := kvm.CPUIDFlagSignificantIndex
	fresh := []kvm.CPUIDEntry{
		{Function: 0, EAX: 0xd},
		{Function: 1, ECX: 1<<26 | 1<<31, EDX: 1 << 9},
		{Function: 7, Index: 0, Flags: sig, EBX: 1, ECX: 1 << 3},
		{Function: 0xD, Index: 0, Flags: sig, EAX: 7, EBX: 576, ECX: 832},
		{Function: 0xD, Index: 1, Flags: sig, EAX: 1, EBX: 0},
	}
	ran := append([]kvm.CPUIDEntry(nil), fresh...)
	ran[1].ECX |= cpuid1ECXOSXSAVE
	ran[2].ECX |= cpuid7ECXOSPKE
	ran[3].EBX = 832
	ran[4].EBX = 840
	if err := checkCPUID(0, ran, fresh); err != nil {
		t.Errorf("a guest that has run against a fresh vCPU: %v", err)
	}
	ran[1].EDX &^= cpuid1EDXAPIC // the guest disabled its APIC
	if err := checkCPUID(0, ran, fresh); err != nil {
		t.Errorf("APIC disabled by the guest: %v", err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(e []kvm.CPUIDEntry)
		want   string
	}{
		{"XSAVE feature", func(e []kvm.CPUIDEntry) { e[1].ECX &^= 1 << 26 }, "CPUID leaf 0x1.0"},
		{"PKU feature", func(e []kvm.CPUIDEntry) { e[2].ECX &^= 1 << 3 }, "CPUID leaf 0x7.0"},
		{"XCR0 bits supported", func(e []kvm.CPUIDEntry) { e[3].EAX = 3 }, "CPUID leaf 0xd.0"},
		{"XSAVE maximum size", func(e []kvm.CPUIDEntry) { e[3].ECX = 2696 }, "CPUID leaf 0xd.0"},
	} {
		local := append([]kvm.CPUIDEntry(nil), fresh...)
		tc.mutate(local)
		if err := checkCPUID(0, ran, local); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s differs: checkCPUID = %v, want an error naming %s", tc.name, err, tc.want)
		}
	}
}
