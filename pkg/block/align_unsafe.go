package block

import "unsafe"

// O_DIRECT needs buffers aligned in memory; these helpers look at buffer
// addresses, which only unsafe can do. Go's heap does not move objects, so
// an address checked here stays valid for the buffer's life.

// alignedBuffer returns n bytes whose first byte is aligned to align (a
// power of two).
func alignedBuffer(n, align int) []byte {
	b := make([]byte, n+align)
	off := int(uintptr(unsafe.Pointer(unsafe.SliceData(b))) & uintptr(align-1))
	if off != 0 {
		off = align - off
	}
	return b[off : off+n : off+n]
}

// isAligned reports whether p starts at an address that is a multiple of
// align (a power of two). An empty slice is aligned.
func isAligned(p []byte, align int) bool {
	if len(p) == 0 {
		return true
	}
	return uintptr(unsafe.Pointer(unsafe.SliceData(p)))&uintptr(align-1) == 0
}
