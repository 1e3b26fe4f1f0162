package devices

import (
	"testing"
	"time"
)

func BenchmarkBusPortOutClaimed(b *testing.B) {
	bus := NewBus()
	for i := range uint16(12) {
		if err := bus.RegisterPort(0x100+i*0x10, 8, &recDev{}, "d"); err != nil {
			b.Fatal(err)
		}
	}
	if err := NewDebugPort(time.Now(), nil).Register(bus); err != nil {
		b.Fatal(err)
	}
	data := []byte{0}
	for b.Loop() {
		bus.PortOut(DebugPortAddr, data)
	}
}
