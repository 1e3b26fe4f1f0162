package kvm

import (
	"sync/atomic"
	"unsafe"
)

// runWord0 is the first 32-bit word of kvm_run: request_interrupt_window,
// immediate_exit and two padding bytes. The kernel only reads it, so an
// atomic read-modify-write on it from Go is a plain byte store as far as
// KVM is concerned; doing it atomically makes concurrent setters (the vCPU
// goroutine and whoever kicks it) race-free under the Go memory model too.
// The mapping is page aligned, so the word is aligned.
func runWord0(run []byte) *uint32 {
	return (*uint32)(unsafe.Pointer(&run[0]))
}

// setRunByte stores v into byte off (0 to 3) of kvm_run's first word.
func setRunByte(run []byte, off uint, v uint8) {
	w := runWord0(run)
	shift := 8 * off // little endian: byte off is bits 8*off..8*off+7
	for {
		old := atomic.LoadUint32(w)
		nw := old&^(0xff<<shift) | uint32(v)<<shift
		if old == nw || atomic.CompareAndSwapUint32(w, old, nw) {
			return
		}
	}
}
