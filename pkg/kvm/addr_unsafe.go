package kvm

import "unsafe"

// HostAddr returns the address of mem's first byte, for
// UserMemoryRegion.UserspaceAddr, or 0 for an empty slice. mem must be
// memory the Go garbage collector does not manage (an mmap), because KVM
// keeps using the address after this call returns.
func HostAddr(mem []byte) uint64 {
	if len(mem) == 0 {
		return 0
	}
	return uint64(uintptr(unsafe.Pointer(&mem[0])))
}
