package virtio

import (
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/vmmd/vmmd/pkg/devices/virtio/virtiotest"
)

func TestIdentification(t *testing.T) {
	e := newEnv(t, Config{})
	for _, c := range []struct {
		off  uint64
		want uint32
	}{
		{RegMagicValue, 0x74726976},
		{RegVersion, 2},
		{RegDeviceID, 42},
		{RegVendorID, VendorID},
		{RegQueueNumMax, 256},
		{RegStatus, 0},
		{RegInterruptStatus, 0},
		{RegConfigGeneration, 0},
		{RegSHMLenLow, 0xffffffff},
		{RegSHMLenHigh, 0xffffffff},
	} {
		if got := e.read32(c.off); got != c.want {
			t.Errorf("register %#x = %#x, want %#x", c.off, got, c.want)
		}
	}
}

func TestNewTransportRefusesBadConfig(t *testing.T) {
	e := newEnv(t, Config{})
	for name, c := range map[string]Config{
		"unaligned base":  {Base: 0x1234, Memory: e.mem},
		"no memory":       {Base: testBase},
		"queue max 3":     {Base: testBase, Memory: e.mem, QueueMax: 3},
		"queue max 65535": {Base: testBase, Memory: e.mem, QueueMax: 65535},
	} {
		if _, err := NewTransport(&fakeDev{}, c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := NewTransport(nil, Config{Memory: e.mem}); err == nil {
		t.Error("nil device accepted")
	}
}

func TestFeatureNegotiation(t *testing.T) {
	e := newEnv(t, Config{})
	e.write32(RegDeviceFeaturesSel, 0)
	lo := e.read32(RegDeviceFeatures)
	e.write32(RegDeviceFeaturesSel, 1)
	hi := e.read32(RegDeviceFeatures)
	e.write32(RegDeviceFeaturesSel, 2)
	if v := e.read32(RegDeviceFeatures); v != 0 {
		t.Errorf("feature word 2 = %#x, want 0", v)
	}
	want := uint64(1<<3|1<<40) | FeatureVersion1 | FeatureEventIdx | FeatureIndirectDesc
	if got := uint64(hi)<<32 | uint64(lo); got != want {
		t.Fatalf("offered %#x, want %#x", got, want)
	}

	negotiate := func(features uint64) uint32 {
		e.write32(RegStatus, 0)
		e.write32(RegStatus, StatusAcknowledge|StatusDriver)
		e.write32(RegDriverFeaturesSel, 0)
		e.write32(RegDriverFeatures, uint32(features))
		e.write32(RegDriverFeaturesSel, 1)
		e.write32(RegDriverFeatures, uint32(features>>32))
		e.write32(RegStatus, StatusAcknowledge|StatusDriver|StatusFeaturesOK)
		return e.read32(RegStatus)
	}
	if s := negotiate(FeatureVersion1 | 1<<3); s&StatusFeaturesOK == 0 {
		t.Errorf("subset with VERSION_1 refused: status %#x", s)
	}
	if f := e.tr.Features(); f != FeatureVersion1|1<<3 {
		t.Errorf("negotiated %#x", f)
	}
	// Once FEATURES_OK is set, feature writes are ignored.
	e.write32(RegDriverFeaturesSel, 0)
	e.write32(RegDriverFeatures, 0xffffffff)
	if f := e.tr.Features(); f != FeatureVersion1|1<<3 {
		t.Errorf("features changed after FEATURES_OK: %#x", f)
	}
	if s := negotiate(FeatureVersion1 | 1<<4); s&StatusFeaturesOK != 0 {
		t.Errorf("unoffered feature bit 4 accepted: status %#x", s)
	}
	if s := negotiate(1 << 3); s&StatusFeaturesOK != 0 {
		t.Errorf("features without VERSION_1 accepted: status %#x", s)
	}
	// DRIVER_OK without FEATURES_OK does not stick and activates nothing.
	e.write32(RegStatus, StatusAcknowledge|StatusDriver|StatusDriverOK)
	if s := e.read32(RegStatus); s&StatusDriverOK != 0 {
		t.Errorf("DRIVER_OK accepted without FEATURES_OK: %#x", s)
	}
	if e.dev.activations != 0 {
		t.Errorf("device activated %d times without FEATURES_OK", e.dev.activations)
	}
	// The driver cannot set NEEDS_RESET.
	e.write32(RegStatus, StatusAcknowledge|StatusNeedsReset)
	if s := e.read32(RegStatus); s&StatusNeedsReset != 0 {
		t.Errorf("driver set NEEDS_RESET: %#x", s)
	}
}

func TestDisabledRingFeatures(t *testing.T) {
	e := newEnv(t, Config{DisableEventIdx: true, DisableIndirect: true})
	if e.tr.OfferedFeatures()&(FeatureEventIdx|FeatureIndirectDesc) != 0 {
		t.Errorf("offered %#x", e.tr.OfferedFeatures())
	}
	e.write32(RegStatus, StatusAcknowledge|StatusDriver)
	e.write32(RegDriverFeaturesSel, 0)
	e.write32(RegDriverFeatures, FeatureEventIdx)
	e.write32(RegDriverFeaturesSel, 1)
	e.write32(RegDriverFeatures, 1)
	e.write32(RegStatus, StatusAcknowledge|StatusDriver|StatusFeaturesOK)
	if e.read32(RegStatus)&StatusFeaturesOK != 0 {
		t.Error("withheld EVENT_IDX accepted")
	}
}

func TestQueueRegisters(t *testing.T) {
	e := newEnv(t, Config{QueueMax: 64})
	for sel, want := range map[uint32]uint32{0: 64, 1: 64, 2: 0, 0xffffffff: 0} {
		e.write32(RegQueueSel, sel)
		if got := e.read32(RegQueueNumMax); got != want {
			t.Errorf("QueueNumMax for queue %d = %d, want %d", sel, got, want)
		}
		e.write32(RegQueueReady, 1) // no queue 2: ignored, no panic
	}
	l := layout(64)
	if err := e.drv.Negotiate(l); err != nil {
		t.Fatal(err)
	}
	if err := e.drv.SetupQueue(); err != nil {
		t.Fatal(err)
	}
	// Write-only registers read as zero.
	for _, off := range []uint64{RegQueueNum, RegQueueDescLow, RegQueueDriverLow, RegQueueDeviceHigh, RegDriverFeatures, RegQueueNotify, RegInterruptACK} {
		if v := e.read32(off); v != 0 {
			t.Errorf("write-only register %#x reads %#x", off, v)
		}
	}
	// Configuration is frozen while the queue is ready.
	e.write32(RegQueueDescLow, 0x20000)
	e.write32(RegQueueNum, 32)
	s := e.tr.State()
	if s.Queues[0].DescAddr != testDesc || s.Queues[0].Size != 64 {
		t.Errorf("ready queue reconfigured: %+v", s.Queues[0])
	}
	e.write32(RegQueueReady, 0)
	if e.read32(RegQueueReady) != 0 {
		t.Error("QueueReady still 1 after writing 0")
	}
	e.write32(RegQueueNum, 32)
	if s := e.tr.State(); s.Queues[0].Size != 32 {
		t.Errorf("size of a disabled queue not writable: %d", s.Queues[0].Size)
	}
	e.write32(RegQueueNum, 1<<16)
	if s := e.tr.State(); s.Queues[0].Size != 0 {
		t.Errorf("QueueNum 65536 stored as %d, want 0", s.Queues[0].Size)
	}
}

func TestBadAccessesIgnored(t *testing.T) {
	e := newEnv(t, Config{})
	e.up(t, layout(16))
	status := e.read32(RegStatus)
	check := func(name string, addr uint64, n int) {
		t.Helper()
		b := make([]byte, n)
		for i := range b {
			b[i] = 0xaa
		}
		e.tr.MMIORead(addr, b)
		for _, v := range b {
			if v != 0 {
				t.Errorf("%s: read %x, want zeros", name, b)
				return
			}
		}
	}
	check("byte read of magic", testBase, 1)
	check("word read of magic", testBase, 2)
	check("8-byte read of magic", testBase, 8)
	check("unaligned read", testBase+1, 4)
	check("read at 0x02", testBase+2, 4)
	check("below the window", testBase-4, 4)
	check("past the window", testBase+WindowSize, 4)
	check("unknown register", testBase+0x0f0, 4)
	check("empty read", testBase, 0)
	// Wrong-width writes change nothing.
	e.tr.MMIOWrite(testBase+RegStatus, []byte{0})
	e.tr.MMIOWrite(testBase+RegStatus, []byte{0, 0})
	e.tr.MMIOWrite(testBase+RegStatus, make([]byte, 8))
	e.tr.MMIOWrite(testBase+RegStatus+1, make([]byte, 4))
	e.tr.MMIOWrite(testBase+RegStatus, nil)
	e.tr.MMIOWrite(testBase-8, make([]byte, 4))
	if got := e.read32(RegStatus); got != status {
		t.Errorf("status %#x after bad writes, want %#x", got, status)
	}
	// Read-only registers ignore writes.
	e.write32(RegMagicValue, 0)
	e.write32(RegQueueNumMax, 1)
	if e.read32(RegMagicValue) != MagicValue {
		t.Error("magic value writable")
	}
	// Config space: any width, zeros past the device's space.
	e.dev.cfg = [8]byte{1, 2, 3, 4, 5, 6, 7, 8}
	b := make([]byte, 8)
	e.tr.MMIORead(testBase+ConfigOffset+6, b)
	if !slices.Equal(b, []byte{7, 8, 0, 0, 0, 0, 0, 0}) {
		t.Errorf("config read = %v", b)
	}
	e.tr.MMIORead(testBase+WindowSize-1, b)
	e.tr.MMIOWrite(testBase+ConfigOffset, []byte{1})
	if e.dev.cfgWrites != 1 {
		t.Errorf("config writes reached the device %d times", e.dev.cfgWrites)
	}
}

func TestNotifyAndReset(t *testing.T) {
	e := newEnv(t, Config{})
	e.up(t, layout(16))
	e.write32(RegQueueNotify, 1)
	e.write32(RegQueueNotify, 2)     // no such queue
	e.write32(RegQueueNotify, 1<<20) // nor this
	e.tr.Notify(-1)                  // nor this
	if !slices.Equal(e.dev.notifies, []int{1}) {
		t.Errorf("notifies %v, want [1]", e.dev.notifies)
	}
	if e.dev.activations != 1 || e.dev.features&FeatureVersion1 == 0 {
		t.Errorf("activations %d features %#x", e.dev.activations, e.dev.features)
	}
	e.tr.interrupt(IntUsedBuffer)
	resets := e.dev.resets
	e.write32(RegStatus, 0)
	if s := e.read32(RegStatus); s != 0 {
		t.Errorf("status after reset %#x", s)
	}
	if e.read32(RegQueueReady) != 0 || e.tr.Queues()[0].Active() {
		t.Error("queue still ready after reset")
	}
	if e.read32(RegInterruptStatus) != 0 {
		t.Error("interrupt status survived reset")
	}
	if calls := e.irq.calls(); !slices.Equal(calls, []bool{true, false}) {
		t.Errorf("IRQ line calls %v, want raise then lower", calls)
	}
	if e.dev.resets != resets+1 {
		t.Errorf("device reset %d times, want %d", e.dev.resets, resets+1)
	}
	if e.tr.Features() != 0 {
		t.Error("features survived reset")
	}
}

func TestInterruptLine(t *testing.T) {
	e := newEnv(t, Config{})
	// No interrupts before DRIVER_OK.
	e.tr.interrupt(IntUsedBuffer)
	e.tr.ConfigChanged()
	if len(e.irq.calls()) != 0 || e.read32(RegInterruptStatus) != 0 {
		t.Fatal("interrupt before DRIVER_OK")
	}
	if e.read32(RegConfigGeneration) != 1 {
		t.Error("config generation not bumped")
	}
	e.up(t, layout(16))
	e.tr.interrupt(IntUsedBuffer)
	e.tr.interrupt(IntUsedBuffer) // same cause: no new edge
	if got := e.irq.calls(); !slices.Equal(got, []bool{true}) {
		t.Fatalf("calls %v", got)
	}
	e.tr.ConfigChanged() // new cause while high: fresh edge
	if got := e.irq.calls(); !slices.Equal(got, []bool{true, false, true}) {
		t.Fatalf("calls %v", got)
	}
	if v := e.read32(RegInterruptStatus); v != IntUsedBuffer|IntConfigChange {
		t.Errorf("interrupt status %#x", v)
	}
	e.write32(RegInterruptACK, IntUsedBuffer)
	if got := e.irq.calls(); len(got) != 3 {
		t.Errorf("partial ACK changed the line: %v", got)
	}
	e.write32(RegInterruptACK, IntConfigChange)
	if got := e.irq.calls(); !slices.Equal(got, []bool{true, false, true, false}) {
		t.Errorf("calls %v", got)
	}
	if e.read32(RegConfigGeneration) != 2 {
		t.Error("config generation not bumped")
	}
	e.irq.mu.Lock()
	e.irq.fail = errors.New("no irqchip")
	e.irq.mu.Unlock()
	e.tr.interrupt(IntUsedBuffer)
	if e.tr.IRQFailures() != 1 {
		t.Errorf("IRQ failures %d", e.tr.IRQFailures())
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.errs) == 0 || !strings.Contains(e.errs[len(e.errs)-1].Error(), "no irqchip") {
		t.Errorf("IRQ failure not reported: %v", e.errs)
	}
}

func TestActivateErrorNeedsReset(t *testing.T) {
	e := newEnv(t, Config{})
	e.dev.activateErr = errors.New("backend gone")
	if err := e.drv.Init(layout(16)); err != nil {
		t.Fatal(err)
	}
	if !e.needsReset() || !strings.Contains(e.tr.Broken().Error(), "backend gone") {
		t.Errorf("status %#x broken %v", e.tr.Status(), e.tr.Broken())
	}
	if e.read32(RegInterruptStatus)&IntConfigChange == 0 {
		t.Error("no configuration-change interrupt")
	}
}

func TestBadQueueConfigNeedsReset(t *testing.T) {
	const ramEnd = 16 << 20
	cases := []struct {
		name              string
		size              uint32
		desc, avail, used uint64
	}{
		{"size 0", 0, testDesc, testAvail, testUsed},
		{"size 3", 3, testDesc, testAvail, testUsed},
		{"size above max", 512, testDesc, testAvail, testUsed},
		{"size 65536", 1 << 16, testDesc, testAvail, testUsed},
		{"descriptor table misaligned", 16, testDesc + 8, testAvail, testUsed},
		{"avail ring odd", 16, testDesc, testAvail + 1, testUsed},
		{"used ring misaligned", 16, testDesc, testAvail, testUsed + 2},
		{"descriptor table in the MMIO hole", 16, 0xc000_0000, testAvail, testUsed},
		{"used ring crosses the end of RAM", 16, testDesc, testAvail, ramEnd - 64},
		{"avail ring ends past RAM", 256, testDesc, ramEnd - 512, testUsed},
		{"descriptor table wraps", 16, 0xffff_ffff_ffff_fff0, testAvail, testUsed},
		{"avail ring wraps", 16, testDesc, 0xffff_ffff_ffff_fffe, testUsed},
		{"used ring wraps", 16, testDesc, testAvail, 0xffff_ffff_ffff_fffc},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, Config{})
			if err := e.drv.Negotiate(layout(16)); err != nil {
				t.Fatal(err)
			}
			e.write32(RegQueueSel, 0)
			e.write32(RegQueueNum, c.size)
			e.write32(RegQueueDescLow, uint32(c.desc))
			e.write32(RegQueueDescHigh, uint32(c.desc>>32))
			e.write32(RegQueueDriverLow, uint32(c.avail))
			e.write32(RegQueueDriverHigh, uint32(c.avail>>32))
			e.write32(RegQueueDeviceLow, uint32(c.used))
			e.write32(RegQueueDeviceHigh, uint32(c.used>>32))
			e.write32(RegQueueReady, 1)
			if e.read32(RegQueueReady) != 0 {
				t.Error("bad queue became ready")
			}
			if !e.needsReset() || !errors.Is(e.tr.Broken(), ErrMalformed) {
				t.Errorf("status %#x, broken %v", e.tr.Status(), e.tr.Broken())
			}
			// Reset recovers.
			e.write32(RegStatus, 0)
			if e.needsReset() || e.tr.Broken() != nil {
				t.Error("NEEDS_RESET survived reset")
			}
		})
	}
}

func TestCmdlineArg(t *testing.T) {
	for _, c := range []struct {
		base, size uint64
		irq        uint32
		want       string
	}{
		{0xd000_0000, 0x1000, 5, "virtio_mmio.device=4K@0xd0000000:5"},
		{0xd000_1000, 0x200, 6, "virtio_mmio.device=512@0xd0001000:6"},
		{0xd010_0000, 1 << 20, 12, "virtio_mmio.device=1M@0xd0100000:12"},
	} {
		if got := CmdlineArg(c.base, c.size, c.irq); got != c.want {
			t.Errorf("CmdlineArg(%#x, %#x, %d) = %q, want %q", c.base, c.size, c.irq, got, c.want)
		}
	}
}

func TestDeviceConfigLittleEndian(t *testing.T) {
	e := newEnv(t, Config{})
	binary.LittleEndian.PutUint32(e.dev.cfg[:], 0x11223344)
	if v := e.read32(ConfigOffset); v != 0x11223344 {
		t.Errorf("config word %#x", v)
	}
}

func TestDriverConstantsMatch(t *testing.T) {
	pairs := map[string][2]uint64{
		"RegDeviceFeatures":    {RegDeviceFeatures, virtiotest.RegDeviceFeatures},
		"RegDeviceFeaturesSel": {RegDeviceFeaturesSel, virtiotest.RegDeviceFeaturesSel},
		"RegDriverFeatures":    {RegDriverFeatures, virtiotest.RegDriverFeatures},
		"RegDriverFeaturesSel": {RegDriverFeaturesSel, virtiotest.RegDriverFeaturesSel},
		"RegQueueSel":          {RegQueueSel, virtiotest.RegQueueSel},
		"RegQueueNum":          {RegQueueNum, virtiotest.RegQueueNum},
		"RegQueueReady":        {RegQueueReady, virtiotest.RegQueueReady},
		"RegQueueNotify":       {RegQueueNotify, virtiotest.RegQueueNotify},
		"RegStatus":            {RegStatus, virtiotest.RegStatus},
		"RegQueueDescLow":      {RegQueueDescLow, virtiotest.RegQueueDescLow},
		"RegQueueDescHigh":     {RegQueueDescHigh, virtiotest.RegQueueDescHigh},
		"RegQueueDriverLow":    {RegQueueDriverLow, virtiotest.RegQueueDriverLow},
		"RegQueueDriverHigh":   {RegQueueDriverHigh, virtiotest.RegQueueDriverHigh},
		"RegQueueDeviceLow":    {RegQueueDeviceLow, virtiotest.RegQueueDeviceLow},
		"RegQueueDeviceHigh":   {RegQueueDeviceHigh, virtiotest.RegQueueDeviceHigh},
		"StatusAcknowledge":    {StatusAcknowledge, virtiotest.StatusAcknowledge},
		"StatusDriver":         {StatusDriver, virtiotest.StatusDriver},
		"StatusDriverOK":       {StatusDriverOK, virtiotest.StatusDriverOK},
		"StatusFeaturesOK":     {StatusFeaturesOK, virtiotest.StatusFeaturesOK},
		"FeatureIndirectDesc":  {FeatureIndirectDesc, virtiotest.FeatureIndirectDesc},
		"FeatureEventIdx":      {FeatureEventIdx, virtiotest.FeatureEventIdx},
		"FeatureVersion1":      {FeatureVersion1, virtiotest.FeatureVersion1},
		"FNext":                {descFNext, virtiotest.FNext},
		"FWrite":               {descFWrite, virtiotest.FWrite},
		"FIndirect":            {descFIndirect, virtiotest.FIndirect},
	}
	for name, p := range pairs {
		if p[0] != p[1] {
			t.Errorf("%s: virtio %#x, virtiotest %#x", name, p[0], p[1])
		}
	}
}
