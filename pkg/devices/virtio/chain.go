package virtio

// Buffer is one validated guest buffer of a descriptor chain: Data aliases
// guest memory at GPA and lies entirely inside guest RAM.
type Buffer struct {
	GPA  uint64
	Data []byte
}

// Chain is a descriptor chain popped from a Queue: the device-readable
// buffers in chain order, then the device-writable ones. Zero-length
// descriptors are dropped. A Chain stays valid until it is pushed back;
// if the device is reset in between, Push discards it.
type Chain struct {
	// Head is the index of the chain's first descriptor, which the used
	// element reports.
	Head uint16
	// Readable are the device-readable buffers.
	Readable []Buffer
	// Writable are the device-writable buffers.
	Writable []Buffer

	q   *Queue
	gen uint64
}

// ReadableLen returns the total length of the readable buffers.
func (c *Chain) ReadableLen() uint64 { return TotalLen(c.Readable) }

// WritableLen returns the total length of the writable buffers.
func (c *Chain) WritableLen() uint64 { return TotalLen(c.Writable) }

// TotalLen returns the summed length of bufs.
func TotalLen(bufs []Buffer) uint64 {
	var n uint64
	for _, b := range bufs {
		n += uint64(len(b.Data))
	}
	return n
}

// Sub returns the buffers covering bytes [off, off+n) of the concatenation
// of bufs, cut at both ends; it is clamped to what bufs hold.
func Sub(bufs []Buffer, off, n uint64) []Buffer {
	var out []Buffer
	for _, b := range bufs {
		if n == 0 {
			break
		}
		l := uint64(len(b.Data))
		if off >= l {
			off -= l
			continue
		}
		take := min(l-off, n)
		out = append(out, Buffer{GPA: b.GPA + off, Data: b.Data[off : off+take]})
		n -= take
		off = 0
	}
	return out
}

// Gather copies the concatenation of bufs into dst, as far as dst holds,
// and returns the number of bytes copied.
func Gather(dst []byte, bufs []Buffer) int {
	n := 0
	for _, b := range bufs {
		if n == len(dst) {
			break
		}
		n += copy(dst[n:], b.Data)
	}
	return n
}

// Scatter copies src across bufs in order, as far as they hold, and
// returns the number of bytes copied. The caller marks the buffers dirty.
func Scatter(bufs []Buffer, src []byte) int {
	n := 0
	for _, b := range bufs {
		if n == len(src) {
			break
		}
		n += copy(b.Data, src[n:])
	}
	return n
}
