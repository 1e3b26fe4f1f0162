package serial

import "testing"

// BenchmarkTHRWrite measures the vCPU-side cost of one console byte: the
// THR write plus the LSR poll a driver does.
func BenchmarkTHRWrite(b *testing.B) {
	u := New(COM1IRQ, func(uint32, bool) error { return nil }, nil)
	defer u.Close()
	out(u, regIER, ierRDA|ierTHRE)
	data := []byte{'x'}
	for b.Loop() {
		u.PortOut(COM1Base, data)
		u.PortIn(COM1Base+regLSR, data)
		if data[0]&lsrTHRE == 0 {
			b.Fatalf("LSR = %#x: THRE clear right after a write, the vCPU would wait", data[0])
		}
		data[0] = 'x'
	}
}
