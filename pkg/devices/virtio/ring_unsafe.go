package virtio

import (
	"encoding/binary"
	"sync/atomic"
	"unsafe"
)

// ringView is a host view of one part of a split virtqueue (avail or used
// ring), widened to 4-byte boundaries so that every 16-bit field can be
// accessed through the aligned 32-bit word holding it (see the package
// documentation). b starts at a 4-aligned host address and its length is a
// multiple of 4; off is where the ring itself starts within b.
type ringView struct {
	b   []byte
	off uint64
	gpa uint64 // guest-physical address of b[0]
}

// hostAligned4 reports whether b starts at a 4-byte aligned host address,
// which atomic 32-bit accesses need. It holds for guest RAM mapped at page
// boundaries.
func hostAligned4(b []byte) bool {
	return uintptr(unsafe.Pointer(unsafe.SliceData(b)))%4 == 0
}

// word returns the aligned 32-bit word at byte offset o (a multiple of 4)
// of b. The index expression bounds-checks the whole word.
func (r *ringView) word(o uint64) *uint32 {
	return (*uint32)(unsafe.Pointer(&r.b[o : o+4][0]))
}

// load16 atomically loads the little-endian 16-bit field at byte offset i
// of the ring (i is even).
func (r *ringView) load16(i uint64) uint16 {
	o := r.off + i
	var w [4]byte
	binary.NativeEndian.PutUint32(w[:], atomic.LoadUint32(r.word(o&^3)))
	return binary.LittleEndian.Uint16(w[o&3:])
}

// store32 atomically stores v, little-endian, at byte offset i of the ring
// (r.off+i is a multiple of 4).
func (r *ringView) store32(i uint64, v uint32) {
	var w [4]byte
	binary.LittleEndian.PutUint32(w[:], v)
	atomic.StoreUint32(r.word(r.off+i), binary.NativeEndian.Uint32(w[:]))
}

// casRetries bounds the compare-and-swap loop of store16: a guest that
// rewrites the neighbouring bytes without pause must not hold the device
// goroutine forever.
const casRetries = 64

// store16 atomically replaces the 16-bit field at byte offset i of the
// ring, leaving the other half of its 32-bit word (which may belong to the
// guest) unchanged. If the guest keeps changing that other half, it gives
// up after casRetries attempts and stores the value with plain byte
// stores; the guest has then broken the ring layout itself.
func (r *ringView) store16(i uint64, v uint16) {
	o := r.off + i
	p := r.word(o &^ 3)
	for range casRetries {
		old := atomic.LoadUint32(p)
		var w [4]byte
		binary.NativeEndian.PutUint32(w[:], old)
		binary.LittleEndian.PutUint16(w[o&3:], v)
		if atomic.CompareAndSwapUint32(p, old, binary.NativeEndian.Uint32(w[:])) {
			return
		}
	}
	binary.LittleEndian.PutUint16(r.b[o:o+2], v)
}
