package devices

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestResetPorts(t *testing.T) {
	tests := []struct {
		name      string
		port      uint16
		data      []byte
		wantReset bool
	}{
		{name: "i8042 pulse reset", port: I8042CommandPort, data: []byte{0xfe}, wantReset: true},
		{name: "i8042 other command", port: I8042CommandPort, data: []byte{0xad}},
		{name: "i8042 0xfe to data port", port: I8042DataPort, data: []byte{0xfe}},
		{name: "rcr hard reset select only", port: ResetControlPort, data: []byte{0x02}},
		{name: "rcr reset cpu", port: ResetControlPort, data: []byte{0x06}, wantReset: true},
		{name: "rcr full reset", port: ResetControlPort, data: []byte{0x0e}, wantReset: true},
		{name: "rcr bit 2 only", port: ResetControlPort, data: []byte{0x04}, wantReset: true},
		{name: "empty write", port: ResetControlPort, data: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var resets atomic.Int32
			r := NewResetPorts(func() { resets.Add(1) })
			b := NewBus()
			if err := r.Register(b); err != nil {
				t.Fatal(err)
			}
			b.PortOut(tc.port, tc.data)
			if got := resets.Load() == 1; got != tc.wantReset {
				t.Errorf("reset called %d times, want reset=%v", resets.Load(), tc.wantReset)
			}
		})
	}
}

func TestResetPortsReads(t *testing.T) {
	r := NewResetPorts(nil) // nil callback: a reset request must not panic
	b := NewBus()
	if err := r.Register(b); err != nil {
		t.Fatal(err)
	}
	one := []byte{0xaa}
	for _, p := range []uint16{I8042DataPort, I8042CommandPort} {
		b.PortIn(p, one)
		if one[0] != 0 {
			t.Errorf("read of %#x = %#x, want 0", p, one[0])
		}
	}
	b.PortIn(ResetControlPort, one)
	if one[0] != 0 {
		t.Errorf("RCR before any write = %#x, want 0", one[0])
	}
	b.PortOut(ResetControlPort, []byte{0x06})
	b.PortOut(I8042CommandPort, []byte{0xfe})
	b.PortIn(ResetControlPort, one)
	if one[0] != 0x06 {
		t.Errorf("RCR after writing 0x06 = %#x, want the last value", one[0])
	}
	if b.Unclaimed()[0x61] != 0 {
		t.Error("0x61 belongs to the in-kernel PIT")
	}
	two := []byte{0, 0}
	r.PortIn(I8042CommandPort, two)
	if two[0] != 0 || two[1] != 0xff {
		t.Errorf("wide read at 0x64 = % x, want 00 ff", two)
	}
}

func TestPowerPort(t *testing.T) {
	tests := []struct {
		name    string
		port    uint16
		data    []byte
		wantOff bool
	}{
		{name: "test guest 0x2000", port: PM1aControlPort, data: []byte{0x00, 0x20}, wantOff: true},
		{name: "S5 with SLP_TYP 5", port: PM1aControlPort, data: []byte{0x00, 0x34}, wantOff: true},
		{name: "SLP_TYP without SLP_EN", port: PM1aControlPort, data: []byte{0x00, 0x14}},
		{name: "low byte only", port: PM1aControlPort, data: []byte{0xff}},
		{name: "high byte alone", port: PM1aControlPort + 1, data: []byte{0x20}, wantOff: true},
		{name: "dword write", port: PM1aControlPort, data: []byte{0x00, 0x20, 0xff, 0xff}, wantOff: true},
		{name: "zero", port: PM1aControlPort, data: []byte{0, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var offs atomic.Int32
			p := NewPowerPort(func() { offs.Add(1) })
			b := NewBus()
			if err := p.Register(b); err != nil {
				t.Fatal(err)
			}
			b.PortOut(tc.port, tc.data)
			if got := offs.Load() == 1; got != tc.wantOff {
				t.Errorf("power-off called %d times, want off=%v", offs.Load(), tc.wantOff)
			}
			v := []byte{0, 0}
			b.PortIn(PM1aControlPort, v)
			if v[1]&0x20 != 0 {
				t.Errorf("SLP_EN reads back set: % x", v)
			}
			if v[0]&1 != 1 {
				t.Errorf("SCI_EN reads clear: % x", v)
			}
		})
	}
}

func TestPowerPortKeepsSleepType(t *testing.T) {
	p := NewPowerPort(nil)
	p.PortOut(PM1aControlPort, []byte{0x00, 0x34})
	v := []byte{0, 0, 0, 0}
	p.PortIn(PM1aControlPort, v)
	if v[0] != 0x01 || v[1] != 0x14 || v[2] != 0xff || v[3] != 0xff {
		t.Errorf("PM1a after 0x3400 = % x, want 01 14 ff ff (SLP_TYP kept, SLP_EN cleared)", v)
	}
}

func TestDebugPort(t *testing.T) {
	start := time.Now()
	type call struct {
		code  byte
		since time.Duration
	}
	var mu sync.Mutex
	var calls []call
	d := NewDebugPort(start, func(code byte, since time.Duration) {
		mu.Lock()
		calls = append(calls, call{code, since})
		mu.Unlock()
	})
	if _, ok := d.FirstWrite(); ok {
		t.Error("FirstWrite reports a write before any")
	}
	b := NewBus()
	if err := d.Register(b); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond)
	codes := []byte{0x40, 0x41, 0x00, 0xff}
	for _, c := range codes {
		b.PortOut(DebugPortAddr, []byte{c})
	}
	b.PortOut(DebugPortAddr, []byte{0x42, 0x99}) // wide: only the byte at 0x80
	b.PortOut(DebugPortAddr, nil)
	codes = append(codes, 0x42)
	if len(calls) != len(codes) {
		t.Fatalf("%d callbacks, want %d", len(calls), len(codes))
	}
	for i, c := range calls {
		if c.code != codes[i] {
			t.Errorf("call %d: code %#x, want %#x", i, c.code, codes[i])
		}
		if c.since < 2*time.Millisecond {
			t.Errorf("call %d: since %v, want at least the 2ms slept", i, c.since)
		}
		if i > 0 && c.since < calls[i-1].since {
			t.Errorf("call %d: time went backwards", i)
		}
	}
	first, ok := d.FirstWrite()
	if !ok || first != calls[0].since {
		t.Errorf("FirstWrite() = %v, %v; want %v, true", first, ok, calls[0].since)
	}
	if d.Writes() != uint64(len(codes)) {
		t.Errorf("Writes() = %d, want %d", d.Writes(), len(codes))
	}
	r := []byte{0xaa, 0xbb}
	b.PortIn(DebugPortAddr, r)
	if r[0] != 0 || r[1] != 0 {
		t.Errorf("read = % x, want zeros", r)
	}
}

func TestDebugPortFutureStart(t *testing.T) {
	d := NewDebugPort(time.Now().Add(time.Hour), nil)
	d.PortOut(DebugPortAddr, []byte{1})
	if first, ok := d.FirstWrite(); !ok || first != 0 {
		t.Errorf("FirstWrite() = %v, %v; want 0, true", first, ok)
	}
}

func TestRTC(t *testing.T) {
	// Thursday 2026-03-05 07:08:59 UTC, given in another zone to check the
	// conversion.
	at := time.Date(2026, 3, 5, 7, 8, 59, 0, time.UTC).In(time.FixedZone("X", -5*3600))
	q := NewQuietPorts()
	q.now = func() time.Time { return at }
	b := NewBus()
	if err := q.Register(b); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		index byte
		want  byte
	}{
		{0x00, 0x59}, {0x02, 0x08}, {0x04, 0x07}, {0x06, 0x05}, {0x07, 0x05},
		{0x08, 0x03}, {0x09, 0x26}, {0x32, 0x20},
		{0x0a, 0x26}, {0x0b, 0x02}, {0x0c, 0x00}, {0x0d, 0x80},
		{0x01, 0}, {0x03, 0}, {0x05, 0}, {0x0e, 0}, {0x10, 0}, {0x7f, 0},
		{0x80 | 0x04, 0x07}, // bit 7 is the NMI mask, not part of the index
	}
	for _, tc := range tests {
		b.PortOut(CMOSIndexPort, []byte{tc.index})
		v := []byte{0}
		b.PortIn(CMOSDataPort, v)
		if v[0] != tc.want {
			t.Errorf("CMOS[%#x] = %#x, want %#x", tc.index, v[0], tc.want)
		}
	}
	// Writes to the data port are ignored (the RTC is read-only).
	b.PortOut(CMOSIndexPort, []byte{0x00})
	b.PortOut(CMOSDataPort, []byte{0x11})
	v := []byte{0}
	b.PortIn(CMOSDataPort, v)
	if v[0] != 0x59 {
		t.Errorf("seconds after a write = %#x, want 0x59", v[0])
	}
	b.PortIn(CMOSIndexPort, v)
	if v[0] != 0xff {
		t.Errorf("index port read = %#x, want 0xff", v[0])
	}
}

func TestRTCBCDRanges(t *testing.T) {
	tests := []struct {
		at   time.Time
		reg  byte
		want byte
	}{
		{time.Date(1999, 12, 31, 23, 59, 58, 0, time.UTC), rtcYear, 0x99},
		{time.Date(1999, 12, 31, 23, 59, 58, 0, time.UTC), rtcCentury, 0x19},
		{time.Date(1999, 12, 31, 23, 59, 58, 0, time.UTC), rtcHours, 0x23},
		{time.Date(1999, 12, 31, 23, 59, 58, 0, time.UTC), rtcMonth, 0x12},
		{time.Date(1999, 12, 31, 23, 59, 58, 0, time.UTC), rtcDayOfMonth, 0x31},
		{time.Date(2000, 1, 2, 0, 0, 0, 0, time.UTC), rtcDayOfWeek, 0x01}, // Sunday
		{time.Date(2000, 1, 8, 0, 0, 0, 0, time.UTC), rtcDayOfWeek, 0x07}, // Saturday
		{time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), rtcYear, 0x00},
	}
	for _, tc := range tests {
		if got := rtcRead(tc.reg, tc.at); got != tc.want {
			t.Errorf("rtcRead(%#x, %v) = %#x, want %#x", tc.reg, tc.at, got, tc.want)
		}
	}
}

func TestQuietPorts(t *testing.T) {
	q := NewQuietPorts()
	b := NewBus()
	if err := q.Register(b); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		port uint16
		size int
		want []byte
	}{
		{SystemControlPortA, 1, []byte{0x02}},
		{0x87, 1, []byte{0x00}},
		{0x81, 1, []byte{0x00}},
		{0x8f, 1, []byte{0x00}},
		{PCIConfigAddress, 4, []byte{0xff, 0xff, 0xff, 0xff}},
		{PCIConfigAddress + 2, 1, []byte{0xff}},
		{PCIConfigData, 4, []byte{0xff, 0xff, 0xff, 0xff}},
		{PCIConfigData + 2, 2, []byte{0xff, 0xff}},
	}
	for _, tc := range tests {
		// Linux's pci_check_type1 writes the enable bit, then reads it back.
		b.PortOut(tc.port, []byte{0x00, 0x00, 0x00, 0x80}[:tc.size])
		got := make([]byte, tc.size)
		b.PortIn(tc.port, got)
		if string(got) != string(tc.want) {
			t.Errorf("PortIn(%#x, %d) = % x, want % x", tc.port, tc.size, got, tc.want)
		}
	}
	if n := len(b.Unclaimed()); n != 0 {
		t.Errorf("quiet ports counted as unclaimed: %v", b.Unclaimed())
	}
	// Ports the in-kernel irqchip and PIT own must stay free.
	for _, p := range []uint16{0x20, 0x21, 0x40, 0x43, 0x61, 0xa0, 0xa1, ResetControlPort, DebugPortAddr} {
		if err := b.RegisterPort(p, 1, &recDev{}, "probe"); err != nil {
			t.Errorf("QuietPorts claims %#x: %v", p, err)
		}
	}
}

func TestPlatformSetRegistersWithoutOverlap(t *testing.T) {
	b := NewBus()
	for _, reg := range []func(*Bus) error{
		NewResetPorts(nil).Register,
		NewPowerPort(nil).Register,
		NewDebugPort(time.Now(), nil).Register,
		NewQuietPorts().Register,
	} {
		if err := reg(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.RegisterPort(0x3f8, 8, &recDev{}, "serial0"); err != nil {
		t.Fatal(err)
	}
	// 0xCF9 goes to the reset device even inside the PCI address dword.
	var resets atomic.Int32
	b2 := NewBus()
	if err := NewResetPorts(func() { resets.Add(1) }).Register(b2); err != nil {
		t.Fatal(err)
	}
	if err := NewQuietPorts().Register(b2); err != nil {
		t.Fatal(err)
	}
	b2.PortOut(ResetControlPort, []byte{0x06})
	b2.PortOut(PCIConfigAddress, []byte{0, 0, 0, 0x80})
	if resets.Load() != 1 {
		t.Errorf("resets = %d, want 1 (0xcf9 byte write only)", resets.Load())
	}
}
