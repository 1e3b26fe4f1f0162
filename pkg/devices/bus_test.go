package devices

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// recDev records the last access it saw and answers reads with a fixed byte.
type recDev struct {
	mu      sync.Mutex
	fill    byte
	lastIn  uint64
	lastOut uint64
	outData []byte
	ins     int
	outs    int
}

func (d *recDev) PortIn(port uint16, data []byte) { d.MMIORead(uint64(port), data) }

func (d *recDev) PortOut(port uint16, data []byte) { d.MMIOWrite(uint64(port), data) }

func (d *recDev) MMIORead(addr uint64, data []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ins++
	d.lastIn = addr
	for i := range data {
		data[i] = d.fill
	}
}

func (d *recDev) MMIOWrite(addr uint64, data []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.outs++
	d.lastOut = addr
	d.outData = append(d.outData[:0], data...)
}

func TestRegisterPortRefusals(t *testing.T) {
	tests := []struct {
		name       string
		base, size uint16
		nilDev     bool
		want       error
		wantText   string
	}{
		{name: "exact", base: 0x100, size: 0x10, want: ErrOverlap, wantText: `0x0100-0x010f "existing"`},
		{name: "left edge", base: 0xf8, size: 0x09, want: ErrOverlap},
		{name: "right edge", base: 0x10f, size: 4, want: ErrOverlap},
		{name: "inside", base: 0x104, size: 2, want: ErrOverlap},
		{name: "around", base: 0x80, size: 0x200, want: ErrOverlap},
		{name: "adjacent below", base: 0xf0, size: 0x10},
		{name: "adjacent above", base: 0x110, size: 0x10},
		{name: "size zero", base: 0x300, size: 0, want: ErrInvalidRange},
		{name: "past 0xffff", base: 0xfff0, size: 0x11, want: ErrInvalidRange},
		{name: "ends at 0xffff", base: 0xfff0, size: 0x10},
		{name: "nil device", base: 0x400, size: 1, nilDev: true, want: ErrInvalidRange},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBus()
			if err := b.RegisterPort(0x100, 0x10, &recDev{}, "existing"); err != nil {
				t.Fatalf("first registration: %v", err)
			}
			var d PortDevice = &recDev{}
			if tc.nilDev {
				d = nil
			}
			err := b.RegisterPort(tc.base, tc.size, d, "new")
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("RegisterPort(%#x, %#x) = %v, want %v", tc.base, tc.size, err, tc.want)
			}
			if err != nil && !strings.Contains(err.Error(), `"new"`) {
				t.Errorf("error %q does not name the new range", err)
			}
			if tc.wantText != "" && !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("error %q does not contain %q", err, tc.wantText)
			}
		})
	}
}

func TestRegisterMMIORefusals(t *testing.T) {
	const top = ^uint64(0)
	tests := []struct {
		name       string
		base, size uint64
		want       error
	}{
		{name: "overlap", base: 0xd000_0fff, size: 2, want: ErrOverlap},
		{name: "inside", base: 0xd000_0100, size: 0x10, want: ErrOverlap},
		{name: "adjacent", base: 0xd000_1000, size: 0x1000},
		{name: "size zero", base: 0xe000_0000, size: 0, want: ErrInvalidRange},
		{name: "wraps", base: top - 0xff, size: 0x101, want: ErrInvalidRange},
		{name: "ends at top", base: top - 0xff, size: 0x100},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBus()
			if err := b.RegisterMMIO(0xd000_0000, 0x1000, &recDev{}, "existing"); err != nil {
				t.Fatalf("first registration: %v", err)
			}
			err := b.RegisterMMIO(tc.base, tc.size, &recDev{}, "new")
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("RegisterMMIO(%#x, %#x) = %v, want %v", tc.base, tc.size, err, tc.want)
			}
		})
	}
}

func TestPortAndMMIOSpacesAreSeparate(t *testing.T) {
	b := NewBus()
	if err := b.RegisterPort(0x1000, 0x10, &recDev{}, "port"); err != nil {
		t.Fatal(err)
	}
	if err := b.RegisterMMIO(0x1000, 0x10, &recDev{}, "mmio"); err != nil {
		t.Fatalf("MMIO range at the same numbers as a port range: %v", err)
	}
}

func TestDispatch(t *testing.T) {
	b := NewBus()
	devs := map[string]*recDev{}
	// Registered out of order on purpose: the table must sort.
	for _, r := range []struct {
		base, size uint16
		name       string
		fill       byte
	}{
		{0x3f8, 8, "serial", 0x11},
		{0x60, 1, "kbd", 0x22},
		{0x604, 2, "pm", 0x33},
		{0x80, 1, "post", 0x44},
		{0x70, 2, "cmos", 0x55},
	} {
		d := &recDev{fill: r.fill}
		devs[r.name] = d
		if err := b.RegisterPort(r.base, r.size, d, r.name); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		port uint16
		dev  string // "" = unclaimed
	}{
		{0x3f8, "serial"}, {0x3ff, "serial"}, {0x3f7, ""}, {0x400, ""},
		{0x60, "kbd"}, {0x61, ""}, {0x5f, ""},
		{0x604, "pm"}, {0x605, "pm"}, {0x606, ""},
		{0x80, "post"}, {0x81, ""},
		{0x70, "cmos"}, {0x71, "cmos"}, {0x72, ""},
		{0, ""}, {0xffff, ""},
	}
	for _, tc := range tests {
		data := []byte{0, 0}
		b.PortIn(tc.port, data)
		want := byte(0xff)
		if tc.dev != "" {
			want = devs[tc.dev].fill
			if got := devs[tc.dev].lastIn; got != uint64(tc.port) {
				t.Errorf("port %#x: device %s saw port %#x", tc.port, tc.dev, got)
			}
		}
		if data[0] != want || data[1] != want {
			t.Errorf("PortIn(%#x) = % x, want %#x from %q", tc.port, data, want, tc.dev)
		}
		b.PortOut(tc.port, []byte{0xab, byte(tc.port)})
		if tc.dev != "" {
			d := devs[tc.dev]
			if d.lastOut != uint64(tc.port) || !bytes.Equal(d.outData, []byte{0xab, byte(tc.port)}) {
				t.Errorf("PortOut(%#x): device %s saw port %#x data % x", tc.port, tc.dev, d.lastOut, d.outData)
			}
		}
	}
}

func TestMMIODispatch(t *testing.T) {
	b := NewBus()
	a, c := &recDev{fill: 1}, &recDev{fill: 2}
	if err := b.RegisterMMIO(0xd000_0000, 0x200, a, "virtio0"); err != nil {
		t.Fatal(err)
	}
	if err := b.RegisterMMIO(0xd000_0200, 0x200, c, "virtio1"); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 4)
	b.MMIORead(0xd000_01fc, data)
	if a.lastIn != 0xd000_01fc || data[0] != 1 {
		t.Errorf("read at 0xd00001fc went to the wrong device: data % x", data)
	}
	b.MMIOWrite(0xd000_0200, []byte{9, 8, 7, 6})
	if c.lastOut != 0xd000_0200 || !bytes.Equal(c.outData, []byte{9, 8, 7, 6}) {
		t.Errorf("write at 0xd0000200: device saw %#x % x", c.lastOut, c.outData)
	}
	b.MMIORead(0xd000_0400, data)
	if !bytes.Equal(data, []byte{0xff, 0xff, 0xff, 0xff}) {
		t.Errorf("unclaimed MMIO read = % x, want all-ones", data)
	}
	b.MMIOWrite(0xd000_0400, data)
	b.MMIOWrite(0xfee0_0000, data)
	got := b.UnclaimedMMIO()
	if got[0xd000_0400] != 2 || got[0xfee0_0000] != 1 || len(got) != 2 {
		t.Errorf("UnclaimedMMIO() = %v", got)
	}
}

func TestUnclaimedCounts(t *testing.T) {
	b := NewBus()
	if err := b.RegisterPort(0x3f8, 8, &recDev{}, "serial"); err != nil {
		t.Fatal(err)
	}
	one := []byte{0}
	for range 3 {
		b.PortIn(0x2f8, one)
	}
	b.PortOut(0x2f8, one)
	b.PortOut(0x378, one)
	b.PortIn(0x3f8, one) // claimed: not counted
	got := b.Unclaimed()
	want := map[uint16]uint64{0x2f8: 4, 0x378: 1}
	if len(got) != len(want) || got[0x2f8] != 4 || got[0x378] != 1 {
		t.Fatalf("Unclaimed() = %v, want %v", got, want)
	}
	got[0x2f8] = 100 // a copy: must not change the bus's counts
	if b.Unclaimed()[0x2f8] != 4 {
		t.Error("Unclaimed() returned the bus's own map")
	}
}

func TestUnclaimedMMIOBounded(t *testing.T) {
	b := NewBus()
	one := []byte{0}
	for i := range uint64(maxUnclaimedMMIO + 10) {
		b.MMIOWrite(0x1000_0000+i*8, one)
	}
	b.MMIOWrite(0x1000_0000, one) // known address: still counted by address
	got := b.UnclaimedMMIO()
	if len(got) != maxUnclaimedMMIO+1 {
		t.Errorf("tracked %d keys, want %d addresses plus the overflow key", len(got), maxUnclaimedMMIO)
	}
	if got[UnclaimedOverflow] != 10 {
		t.Errorf("overflow count = %d, want 10", got[UnclaimedOverflow])
	}
	if got[0x1000_0000] != 2 {
		t.Errorf("count at first address = %d, want 2", got[0x1000_0000])
	}
}

func TestDispatchDoesNotAllocate(t *testing.T) {
	b := NewBus()
	for i := range uint16(16) {
		if err := b.RegisterPort(0x100+i*0x10, 8, &recDev{}, "d"); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.RegisterMMIO(0xd000_0000, 0x1000, &recDev{}, "m"); err != nil {
		t.Fatal(err)
	}
	qp, rp, dp := NewQuietPorts(), NewResetPorts(nil), NewDebugPort(time.Now(), func(byte, time.Duration) {})
	data := make([]byte, 4)
	b.PortIn(0x2f8, data) // create the unclaimed counter first
	b.MMIORead(0xe000_0000, data)
	for name, f := range map[string]func(){
		"claimed port":    func() { b.PortOut(0x1a4, data); b.PortIn(0x1a4, data) },
		"unclaimed port":  func() { b.PortIn(0x2f8, data) },
		"claimed MMIO":    func() { b.MMIOWrite(0xd000_0010, data) },
		"unclaimed MMIO":  func() { b.MMIORead(0xe000_0000, data) },
		"debug port":      func() { dp.PortOut(DebugPortAddr, data[:1]) },
		"quiet RTC":       func() { qp.PortIn(CMOSDataPort, data[:1]) },
		"reset port read": func() { rp.PortIn(ResetControlPort, data[:1]) },
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %v allocations per access, want 0", name, n)
		}
	}
}

func TestConcurrentDispatchAndRegistration(t *testing.T) {
	b := NewBus()
	d := &recDev{fill: 7}
	if err := b.RegisterPort(0x10, 1, d, "first"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data := []byte{0}
			for i := range 2000 {
				b.PortIn(0x10, data)
				if data[0] != 7 {
					t.Errorf("read %#x from a registered port", data[0])
					return
				}
				b.PortOut(uint16(0x1000+i%64), data)
				b.MMIORead(uint64(i%8), data)
			}
		}()
	}
	for i := range uint16(50) {
		if err := b.RegisterPort(0x20+i, 1, &recDev{}, "late"); err != nil {
			t.Error(err)
		}
	}
	wg.Wait()
	var total uint64
	for _, n := range b.Unclaimed() {
		total += n
	}
	if total != 4*2000 {
		t.Errorf("unclaimed total = %d, want %d", total, 4*2000)
	}
}
