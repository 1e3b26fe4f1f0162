package acpi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
)

// regionMem is guest memory covering [base, base+len(b)) only.
type regionMem struct {
	base uint64
	b    []byte
}

var errOutside = errors.New("outside the region")

func (m *regionMem) Write(gpa uint64, p []byte) error {
	if gpa < m.base || gpa-m.base+uint64(len(p)) > uint64(len(m.b)) {
		return fmt.Errorf("write %#x+%d: %w", gpa, len(p), errOutside)
	}
	copy(m.b[gpa-m.base:], p)
	return nil
}

// at returns n bytes at gpa, failing the test when they are not all inside.
func (m *regionMem) at(t *testing.T, gpa uint64, n int) []byte {
	t.Helper()
	if gpa < m.base || gpa-m.base+uint64(n) > uint64(len(m.b)) {
		t.Fatalf("%d bytes at %#x are outside the region %#x+%#x", n, gpa, m.base, len(m.b))
	}
	return m.b[gpa-m.base : gpa-m.base+uint64(n)]
}

// table returns the whole table at gpa after checking its signature, that
// its length fits, and that it sums to zero.
func (m *regionMem) table(t *testing.T, gpa uint64, sig string) []byte {
	t.Helper()
	h := m.at(t, gpa, headerSize)
	if string(h[:4]) != sig {
		t.Fatalf("table at %#x has signature %q, want %q", gpa, h[:4], sig)
	}
	n := binary.LittleEndian.Uint32(h[4:])
	if n < headerSize {
		t.Fatalf("%s length %d is shorter than its header", sig, n)
	}
	tb := m.at(t, gpa, int(n))
	if s := sum(tb); s != 0 {
		t.Errorf("%s bytes sum to %#x mod 256, want 0", sig, s)
	}
	return tb
}

func sum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return s
}

// testConfig is a machine with three virtio-mmio devices and COM1.
func testConfig(cpus int) Config {
	return Config{
		CPUs:   cpus,
		Serial: true,
		Devices: []Device{
			{Name: "VR00", HID: "LNRO0005", UID: 0, MMIOBase: 0xD0000000, MMIOSize: 0x1000, IRQ: 5},
			{Name: "VR01", HID: "LNRO0005", UID: 1, MMIOBase: 0xD0001000, MMIOSize: 0x1000, IRQ: 6},
			{Name: "VR02", HID: "LNRO0005", UID: 2, MMIOBase: 0xD0002000, MMIOSize: 0x1000, IRQ: 16, EdgeTriggered: true},
		},
	}
}

// written builds cfg and writes it at 0xE0000 in a 128 KiB region.
func written(t *testing.T, cfg Config) (*regionMem, uint64) {
	t.Helper()
	tb, err := Build(cfg)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	m := &regionMem{base: 0xE0000, b: make([]byte, 0x20000)}
	rsdp, err := tb.Write(m, 0xE0000)
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	return m, rsdp
}
