package machine

import "github.com/vmmd/vmmd/pkg/kvm"

// KVM's timing leaf (VMware's convention, understood by Linux and by our
// test guest): EAX = TSC frequency in kHz, EBX = LAPIC bus frequency in kHz.
const (
	cpuidHypervisorBase = 0x40000000
	cpuidTiming         = 0x40000010
	lapicBusKHz         = 1_000_000 // KVM's LAPIC timer counts nanoseconds
)

// CPUID.1:ECX bits vmmd sets itself, as QEMU does: they describe the
// virtual platform, not the host CPU, so KVM_GET_SUPPORTED_CPUID leaves
// them clear.
const (
	cpuid1ECXTSCDeadline = 1 << 24 // the in-kernel LAPIC emulates the TSC-deadline timer
	cpuid1ECXHypervisor  = 1 << 31 // "running under a hypervisor"
)

// guestCPUID derives vCPU id's CPUID from what KVM supports. It adjusts
// topology, sets the hypervisor bit (without it Linux never looks for
// KVM's leaves, finds no kvm-clock, cannot calibrate its TSC on a
// hardware-reduced ACPI platform and hangs at boot: seen in the nested
// harness), sets TSC-deadline when KVM emulates it, and adds the timing
// leaf; it never adds a CPU feature KVM cannot give.
func guestCPUID(supported *kvm.CPUID, id, ncpu int, tscKHz uint32, tscDeadline bool) *kvm.CPUID {
	out := &kvm.CPUID{Entries: make([]kvm.CPUIDEntry, 0, len(supported.Entries)+1)}
	hasTiming := false
	for _, e := range supported.Entries {
		switch e.Function {
		case 1:
			e.EBX = e.EBX&0x0000FFFF | uint32(ncpu&0xFF)<<16 | uint32(id&0xFF)<<24
			e.ECX |= cpuid1ECXHypervisor
			if tscDeadline {
				e.ECX |= cpuid1ECXTSCDeadline
			}
			if ncpu > 1 {
				e.EDX |= 1 << 28 // HTT: more than one logical processor in the package
			}
		case 0xB, 0x1F:
			e.EDX = uint32(id) // x2APIC id, in every sub-leaf
		case cpuidHypervisorBase:
			if tscKHz != 0 && e.EAX < cpuidTiming {
				e.EAX = cpuidTiming
			}
		case cpuidTiming:
			hasTiming = true
			if tscKHz != 0 {
				e.EAX, e.EBX = tscKHz, lapicBusKHz
			}
		}
		out.Entries = append(out.Entries, e)
	}
	if tscKHz != 0 && !hasTiming {
		out.Entries = append(out.Entries, kvm.CPUIDEntry{Function: cpuidTiming, EAX: tscKHz, EBX: lapicBusKHz})
	}
	return out
}
