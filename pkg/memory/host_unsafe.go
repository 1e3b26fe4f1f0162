package memory

import "unsafe"

// HostAddr returns the host virtual address backing region i, for
// KVM_SET_USER_MEMORY_REGION. The mapping is outside the Go heap and never
// moves while the Memory is open, so handing its address to the kernel is safe.
func (m *Memory) HostAddr(i int) uintptr {
	return uintptr(unsafe.Pointer(unsafe.SliceData(m.slots[i].host)))
}
