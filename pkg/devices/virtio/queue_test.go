package virtio

import (
	"errors"
	"slices"
	"testing"

	"github.com/vmmd/vmmd/pkg/devices/virtio/virtiotest"
	"github.com/vmmd/vmmd/pkg/memory"
)

type vbuf = virtiotest.Buf

func mustPop(t *testing.T, q *Queue) *Chain {
	t.Helper()
	c, err := q.Pop()
	if err != nil {
		t.Fatalf("Pop: %v", err)
	}
	if c == nil {
		t.Fatal("Pop: nothing available")
	}
	return c
}

func gpas(bufs []Buffer) []uint64 {
	var out []uint64
	for _, b := range bufs {
		out = append(out, b.GPA)
	}
	return out
}

func TestPopPush(t *testing.T) {
	e := newEnv(t, Config{})
	q := e.up(t, layout(8))
	if c, err := q.Pop(); c != nil || err != nil {
		t.Fatalf("empty queue popped %v, %v", c, err)
	}
	if err := e.mem.Write(testData, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	head := e.drv.Post([]vbuf{
		{Addr: testData, Len: 5},
		{Addr: testData + 0x1000, Len: 0}, // dropped
		{Addr: testData + 0x2000, Len: 100, Write: true},
		{Addr: testData + 0x3000, Len: 1, Write: true},
	})
	c := mustPop(t, q)
	if c.Head != head || c.ReadableLen() != 5 || c.WritableLen() != 101 {
		t.Fatalf("chain head %d readable %d writable %d", c.Head, c.ReadableLen(), c.WritableLen())
	}
	if string(c.Readable[0].Data) != "hello" {
		t.Errorf("readable data %q", c.Readable[0].Data)
	}
	if got := gpas(c.Writable); !slices.Equal(got, []uint64{testData + 0x2000, testData + 0x3000}) {
		t.Errorf("writable %#x", got)
	}
	if !q.Push(c, 1000) { // clamped to 101
		t.Fatal("Push refused")
	}
	if e.drv.UsedIdx() != 1 {
		t.Fatalf("used idx %d", e.drv.UsedIdx())
	}
	if id, n := e.drv.Used(0); id != uint32(head) || n != 101 {
		t.Errorf("used element (%d, %d), want (%d, 101)", id, n, head)
	}
	if e.read32(RegInterruptStatus) != IntUsedBuffer || !slices.Equal(e.irq.calls(), []bool{true}) {
		t.Errorf("interrupt status %#x, line %v", e.read32(RegInterruptStatus), e.irq.calls())
	}
	// Pushing to another queue, or twice after reset, is refused.
	if e.tr.Queues()[1].Push(c, 0) {
		t.Error("chain pushed to the wrong queue")
	}
	// The used ring page was marked dirty.
	words := make([]uint64, e.mem.DirtyWords(0))
	if err := e.mem.TakeDirty(0, words); err != nil {
		t.Fatal(err)
	}
	if page := testUsed / memory.PageSize; words[page/64]&(1<<(page%64)) == 0 {
		t.Error("used ring page not marked dirty")
	}
}

func TestStaleChainDropped(t *testing.T) {
	e := newEnv(t, Config{})
	q := e.up(t, layout(8))
	e.drv.Post([]vbuf{{Addr: testData, Len: 16, Write: true}})
	c := mustPop(t, q)
	e.up(t, layout(8)) // reset and set up again
	if q.Push(c, 1) {
		t.Error("chain from before the reset pushed")
	}
	if e.drv.UsedIdx() != 0 {
		t.Errorf("used idx %d", e.drv.UsedIdx())
	}
}

func TestIndirectChain(t *testing.T) {
	e := newEnv(t, Config{})
	q := e.up(t, layout(8))
	const table = 0x20000
	head := e.drv.IndirectChain(table, []vbuf{
		{Addr: testData, Len: 16},
		{Addr: testData + 0x1000, Len: 4096, Write: true},
		{Addr: testData + 0x2000, Len: 1, Write: true},
	})
	e.drv.Publish(head)
	c := mustPop(t, q)
	if c.Head != head || c.ReadableLen() != 16 || c.WritableLen() != 4097 || len(c.Writable) != 2 {
		t.Fatalf("indirect chain: head %d readable %d writable %d", c.Head, c.ReadableLen(), c.WritableLen())
	}
}

func TestInterruptSuppression(t *testing.T) {
	e := newEnv(t, Config{DisableEventIdx: true})
	q := e.up(t, layout(8))
	e.drv.SetAvailFlags(1) // VRING_AVAIL_F_NO_INTERRUPT
	e.drv.Post([]vbuf{{Addr: testData, Len: 1, Write: true}})
	q.Push(mustPop(t, q), 1)
	if e.read32(RegInterruptStatus) != 0 || len(e.irq.calls()) != 0 {
		t.Error("interrupted although the driver suppressed it")
	}
	e.drv.SetAvailFlags(0)
	e.drv.Post([]vbuf{{Addr: testData, Len: 1, Write: true}})
	q.Push(mustPop(t, q), 1)
	if e.read32(RegInterruptStatus) != IntUsedBuffer {
		t.Error("no interrupt")
	}
	// NO_NOTIFY is set and cleared in used.flags.
	q.DisableNotify()
	if e.drv.UsedFlags() != 1 {
		t.Errorf("used.flags %d after DisableNotify", e.drv.UsedFlags())
	}
	if q.EnableNotify() {
		t.Error("EnableNotify reported buffers on an empty ring")
	}
	if e.drv.UsedFlags() != 0 {
		t.Errorf("used.flags %d after EnableNotify", e.drv.UsedFlags())
	}
	e.drv.Publish(e.drv.Chain([]vbuf{{Addr: testData, Len: 1, Write: true}}))
	if !q.EnableNotify() {
		t.Error("EnableNotify missed a new buffer")
	}
}

func TestEventIdx(t *testing.T) {
	e := newEnv(t, Config{})
	q := e.up(t, layout(8))
	if e.drv.Features()&FeatureEventIdx == 0 {
		t.Fatal("EVENT_IDX not negotiated")
	}
	// used_event = 1: interrupt when the used index passes 1, not at 0->1.
	e.drv.SetUsedEvent(1)
	for i := range 3 {
		e.drv.Post([]vbuf{{Addr: testData, Len: 1, Write: true}})
		q.Push(mustPop(t, q), 1)
		want := uint32(0)
		if i >= 1 {
			want = IntUsedBuffer
		}
		if got := e.read32(RegInterruptStatus); got != want {
			t.Errorf("after %d pushes interrupt status %#x, want %#x", i+1, got, want)
		}
	}
	if got := e.irq.calls(); !slices.Equal(got, []bool{true}) {
		t.Errorf("line calls %v", got)
	}
	// avail_event tells the driver which index to notify at.
	if q.EnableNotify() {
		t.Error("EnableNotify reported buffers on an empty ring")
	}
	if got := e.drv.AvailEvent(); got != 3 {
		t.Errorf("avail_event %d, want 3", got)
	}
	// DisableNotify does not touch used.flags with EVENT_IDX.
	q.DisableNotify()
	if e.drv.UsedFlags() != 0 {
		t.Error("used.flags set with EVENT_IDX")
	}
}

func TestQueueDeactivate(t *testing.T) {
	e := newEnv(t, Config{})
	q := e.up(t, layout(8))
	e.drv.Post([]vbuf{{Addr: testData, Len: 1, Write: true}})
	e.write32(RegQueueSel, 0)
	e.write32(RegQueueReady, 0)
	if c, err := q.Pop(); c != nil || err != nil {
		t.Errorf("disabled queue popped %v, %v", c, err)
	}
	if _, err := q.ChainAt(0); err == nil {
		t.Error("ChainAt on a disabled queue succeeded")
	}
}

// TestMalformedChains posts broken rings and chains; each must put the
// device into NEEDS_RESET with a configuration-change interrupt, and the
// queue must stay quiet afterwards.
func TestMalformedChains(t *testing.T) {
	const ramEnd = 16 << 20
	cases := []struct {
		name  string
		noInd bool
		setup func(d *virtiotest.Driver)
	}{
		{"avail index jumps past the size", false, func(d *virtiotest.Driver) {
			d.SetAvailIdx(9)
		}},
		{"avail index moves backwards", false, func(d *virtiotest.Driver) {
			d.SetAvailIdx(0xffff)
		}},
		{"head index out of range", false, func(d *virtiotest.Driver) {
			d.PutAvailEntry(0, 8)
			d.SetAvailIdx(1)
		}},
		{"next index out of range", false, func(d *virtiotest.Driver) {
			d.Desc(testDesc, 0, testData, 16, virtiotest.FNext, 200)
			d.Publish(0)
		}},
		{"self loop", false, func(d *virtiotest.Driver) {
			d.Desc(testDesc, 0, testData, 16, virtiotest.FNext, 0)
			d.Publish(0)
		}},
		{"two-descriptor loop", false, func(d *virtiotest.Driver) {
			d.Desc(testDesc, 0, testData, 16, virtiotest.FNext, 1)
			d.Desc(testDesc, 1, testData, 16, virtiotest.FNext, 0)
			d.Publish(0)
		}},
		{"buffer in the MMIO hole", false, func(d *virtiotest.Driver) {
			d.Publish(d.Chain([]vbuf{{Addr: 0xd000_0000, Len: 4}}))
		}},
		{"buffer past the end of RAM", false, func(d *virtiotest.Driver) {
			d.Publish(d.Chain([]vbuf{{Addr: ramEnd - 8, Len: 16, Write: true}}))
		}},
		{"buffer wraps around", false, func(d *virtiotest.Driver) {
			d.Publish(d.Chain([]vbuf{{Addr: 0xffff_ffff_ffff_fff0, Len: 0x20}}))
		}},
		{"readable after writable", false, func(d *virtiotest.Driver) {
			d.Publish(d.Chain([]vbuf{{Addr: testData, Len: 1, Write: true}, {Addr: testData, Len: 1}}))
		}},
		{"indirect not negotiated", true, func(d *virtiotest.Driver) {
			d.Publish(d.IndirectChain(0x20000, []vbuf{{Addr: testData, Len: 1}}))
		}},
		{"indirect length not a multiple of 16", false, func(d *virtiotest.Driver) {
			d.Desc(testDesc, 0, 0x20000, 24, virtiotest.FIndirect, 0)
			d.Publish(0)
		}},
		{"indirect length 0", false, func(d *virtiotest.Driver) {
			d.Desc(testDesc, 0, 0x20000, 0, virtiotest.FIndirect, 0)
			d.Publish(0)
		}},
		{"indirect table too long", false, func(d *virtiotest.Driver) {
			d.Desc(testDesc, 0, 0x20000, 16*(MaxIndirect+1), virtiotest.FIndirect, 0)
			d.Publish(0)
		}},
		{"indirect table outside RAM", false, func(d *virtiotest.Driver) {
			d.Desc(testDesc, 0, ramEnd-16, 32, virtiotest.FIndirect, 0)
			d.Publish(0)
		}},
		{"indirect with NEXT", false, func(d *virtiotest.Driver) {
			d.Desc(testDesc, 0, 0x20000, 16, virtiotest.FIndirect|virtiotest.FNext, 1)
			d.Desc(0x20000, 0, testData, 1, 0, 0)
			d.Publish(0)
		}},
		{"indirect not at the head", false, func(d *virtiotest.Driver) {
			d.Desc(testDesc, 0, testData, 16, virtiotest.FNext, 1)
			d.Desc(testDesc, 1, 0x20000, 16, virtiotest.FIndirect, 0)
			d.Desc(0x20000, 0, testData, 1, 0, 0)
			d.Publish(0)
		}},
		{"nested indirect", false, func(d *virtiotest.Driver) {
			d.Desc(testDesc, 0, 0x20000, 16, virtiotest.FIndirect, 0)
			d.Desc(0x20000, 0, 0x21000, 16, virtiotest.FIndirect, 0)
			d.Publish(0)
		}},
		{"loop inside an indirect table", false, func(d *virtiotest.Driver) {
			d.Desc(testDesc, 0, 0x20000, 32, virtiotest.FIndirect, 0)
			d.Desc(0x20000, 0, testData, 1, virtiotest.FNext, 1)
			d.Desc(0x20000, 1, testData, 1, virtiotest.FNext, 0)
			d.Publish(0)
		}},
		{"indirect next out of its table", false, func(d *virtiotest.Driver) {
			d.Desc(testDesc, 0, 0x20000, 32, virtiotest.FIndirect, 0)
			d.Desc(0x20000, 0, testData, 1, virtiotest.FNext, 2)
			d.Publish(0)
		}},
		{"chain over 4 GiB", false, func(d *virtiotest.Driver) {
			// 300 readable descriptors of 15 MiB in an indirect table:
			// 4.5 GB, more than a used element can report.
			const n = 300
			for i := range uint16(n) {
				d.Desc(0x20000, i, 0, 15<<20, virtiotest.FNext, i+1)
			}
			d.Desc(0x20000, n-1, 0, 15<<20, 0, 0)
			d.Desc(testDesc, 0, 0x20000, 16*n, virtiotest.FIndirect, 0)
			d.Publish(0)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, Config{})
			l := layout(8)
			l.DisableIndirect = c.noInd
			q := e.up(t, l)
			c.setup(e.drv)
			if err := e.drv.Err(); err != nil {
				t.Fatal(err)
			}
			ch, err := q.Pop()
			if ch != nil || !errors.Is(err, ErrMalformed) {
				t.Fatalf("Pop = %v, %v; want ErrMalformed", ch, err)
			}
			if !e.needsReset() || !errors.Is(e.tr.Broken(), ErrMalformed) {
				t.Errorf("status %#x broken %v", e.tr.Status(), e.tr.Broken())
			}
			if e.read32(RegInterruptStatus)&IntConfigChange == 0 {
				t.Error("no configuration-change interrupt")
			}
			if ch, err := q.Pop(); ch != nil || err != nil {
				t.Errorf("broken queue popped again: %v, %v", ch, err)
			}
			if q.EnableNotify() || q.Active() {
				t.Error("broken queue still active")
			}
			e.mu.Lock()
			n := len(e.errs)
			e.mu.Unlock()
			if n != 1 {
				t.Errorf("%d errors reported, want 1", n)
			}
			// The driver recovers by resetting.
			q = e.up(t, l)
			e.drv.Post([]vbuf{{Addr: testData, Len: 1, Write: true}})
			q.Push(mustPop(t, q), 1)
		})
	}
}

func TestQueueFail(t *testing.T) {
	e := newEnv(t, Config{})
	q := e.up(t, layout(8))
	e.drv.Post([]vbuf{{Addr: testData, Len: 1, Write: true}})
	c := mustPop(t, q)
	q.Fail(errors.New("request without a header"))
	if !e.needsReset() || q.Push(c, 1) {
		t.Error("failed queue accepted a push")
	}
}

func TestStateRoundTrip(t *testing.T) {
	e := newEnv(t, Config{})
	q := e.up(t, layout(8))
	for range 3 {
		e.drv.Post([]vbuf{{Addr: testData, Len: 1, Write: true}})
	}
	q.Push(mustPop(t, q), 1)
	mustPop(t, q) // popped, not pushed
	e.tr.ConfigChanged()
	s := e.tr.State()
	if s.Queues[0].LastAvail != 2 || s.Queues[0].UsedIdx != 1 || s.InterruptStatus != IntUsedBuffer|IntConfigChange {
		t.Fatalf("state %+v", s)
	}

	// A second transport on the same memory, as a migration destination.
	e2 := &env{mem: e.mem, dev: &fakeDev{}, irq: &irqRec{}}
	tr2, err := NewTransport(e2.dev, Config{Base: testBase, IRQ: testIRQ, IRQLine: e2.irq.line, Memory: e.mem})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr2.SetState(s); err != nil {
		t.Fatal(err)
	}
	if got := tr2.State(); !equalState(got, s) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, s)
	}
	if e2.dev.activations != 1 || e2.dev.features != s.DriverFeatures {
		t.Errorf("destination activations %d features %#x", e2.dev.activations, e2.dev.features)
	}
	if got := e2.irq.calls(); !slices.Equal(got, []bool{true}) {
		t.Errorf("destination line %v, want raised", got)
	}
	// The destination continues where the source stopped.
	q2 := tr2.Queues()[0]
	c := mustPop(t, q2)
	if c.Head != 2 {
		t.Errorf("destination popped head %d, want 2", c.Head)
	}
	q2.Push(c, 1)
	if e.drv.UsedIdx() != 2 {
		t.Errorf("used idx %d, want 2", e.drv.UsedIdx())
	}
	if _, err := q2.ChainAt(1); err != nil {
		t.Errorf("ChainAt(1): %v", err)
	}
}

func equalState(a, b State) bool {
	return a.Status == b.Status && a.DeviceFeaturesSel == b.DeviceFeaturesSel &&
		a.DriverFeaturesSel == b.DriverFeaturesSel && a.QueueSel == b.QueueSel &&
		a.DriverFeatures == b.DriverFeatures && a.InterruptStatus == b.InterruptStatus &&
		a.ConfigGeneration == b.ConfigGeneration && slices.Equal(a.Queues, b.Queues)
}

func TestSetStateRefusesBadState(t *testing.T) {
	e := newEnv(t, Config{})
	e.up(t, layout(8))
	good := e.tr.State()
	mod := func(f func(*State)) State {
		s := good
		s.Queues = slices.Clone(good.Queues)
		f(&s)
		return s
	}
	bad := map[string]State{
		"unknown status bit":         mod(func(s *State) { s.Status |= 16 }),
		"DRIVER_OK without FEATURES": mod(func(s *State) { s.Status &^= StatusFeaturesOK }),
		"unoffered feature":          mod(func(s *State) { s.DriverFeatures |= 1 << 50 }),
		"no VERSION_1":               mod(func(s *State) { s.DriverFeatures &^= FeatureVersion1 }),
		"unknown interrupt bit":      mod(func(s *State) { s.InterruptStatus = 4 }),
		"queue count":                mod(func(s *State) { s.Queues = s.Queues[:1] }),
		"queue size 3":               mod(func(s *State) { s.Queues[0].Size = 3 }),
		"ring outside RAM":           mod(func(s *State) { s.Queues[0].DeviceAddr = 0xc000_0000 }),
		"too many outstanding":       mod(func(s *State) { s.Queues[0].LastAvail = 9 }),
	}
	for name, s := range bad {
		if err := e.tr.SetState(s); !errors.Is(err, ErrBadState) {
			t.Errorf("%s: SetState = %v, want ErrBadState", name, err)
		}
	}
	if !equalState(e.tr.State(), good) {
		t.Error("refused SetState changed the transport")
	}
}
