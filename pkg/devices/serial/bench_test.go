package serial

import "testing"

func BenchmarkTHRWrite(b *testing.B) {
	u := New(COM1IRQ, func(uint32, bool) error { return nil }, nil)
	defer u.Close()
	out(u, regIER, ierRDA|ierTHRE)
	data := []byte{'x'}
	for b.Loop() {
		u.PortOut(COM1Base, data)
		u.PortIn(COM1Base+regLSR, data)
	}
}
