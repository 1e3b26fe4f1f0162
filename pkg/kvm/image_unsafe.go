package kvm

import "unsafe"

// Image is the set of KVM structures whose Go value is exactly the
// kernel's memory image (layout_test.go checks each against the C
// headers), so their bytes can be saved and loaded as they are.
type Image interface {
	Regs | Sregs | FPU | XCRs | VCPUEvents | DebugRegs | PITState2 | ClockData | CPUIDEntry
}

// ImageBytes returns the bytes of *p, aliasing it: writing to the slice
// writes *p. Migration encodes the device state with it, in the guest's
// downtime, where reflection-based encoders cost tenths of a millisecond.
// The bytes are in host order; KVM state only moves between x86-64 hosts.
func ImageBytes[T Image](p *T) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(p)), unsafe.Sizeof(*p))
}

// ImagesBytes is ImageBytes for a slice of structures.
func ImagesBytes[T Image](s []T) []byte {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), uintptr(len(s))*unsafe.Sizeof(s[0]))
}
