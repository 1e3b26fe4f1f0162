package serial

// RxFIFOSize is the receive FIFO's capacity in bytes. A real 16550A has 16;
// a deeper one lets an input burst (a pasted line, a test script) wait for
// a guest that reads slowly, without the input goroutine having to retry
// byte by byte.
const RxFIFOSize = 4096

// fifo is a fixed ring of received bytes. It never allocates.
type fifo struct {
	buf  [RxFIFOSize]byte
	head int // index of the oldest byte
	n    int // bytes held
}

func (f *fifo) len() int  { return f.n }
func (f *fifo) free() int { return len(f.buf) - f.n }
func (f *fifo) reset()    { f.head, f.n = 0, 0 }

// push appends b, or reports false when the FIFO is full.
func (f *fifo) push(b byte) bool {
	if f.n == len(f.buf) {
		return false
	}
	f.buf[(f.head+f.n)%len(f.buf)] = b
	f.n++
	return true
}

// pop removes the oldest byte, or reports false (and 0) when empty.
func (f *fifo) pop() (byte, bool) {
	if f.n == 0 {
		return 0, false
	}
	b := f.buf[f.head]
	f.head = (f.head + 1) % len(f.buf)
	f.n--
	return b, true
}

// write appends as much of p as fits and returns how much that was.
func (f *fifo) write(p []byte) int {
	n := min(len(p), f.free())
	for _, b := range p[:n] {
		f.buf[(f.head+f.n)%len(f.buf)] = b
		f.n++
	}
	return n
}

// bytes returns a copy of the held bytes, oldest first.
func (f *fifo) bytes() []byte {
	out := make([]byte, f.n)
	for i := range out {
		out[i] = f.buf[(f.head+i)%len(f.buf)]
	}
	return out
}
