package virtio

import (
	"encoding/binary"
	"errors"
	"sync"
	"testing"

	"github.com/vmmd/vmmd/pkg/devices/virtio/virtiotest"
	"github.com/vmmd/vmmd/pkg/memory"
)

const (
	testBase  = 0xd000_0000
	testIRQ   = 5
	testDesc  = 0x10000
	testAvail = 0x11000
	testUsed  = 0x12000
	testData  = 0x100000
)

// fakeDev is a virtio.Device that records what the transport tells it.
type fakeDev struct {
	mu          sync.Mutex
	activations int
	features    uint64
	resets      int
	notifies    []int
	activateErr error
	cfg         [8]byte
	cfgWrites   int
}

func (f *fakeDev) DeviceID() uint32       { return 42 }
func (f *fakeDev) DeviceFeatures() uint64 { return 1<<3 | 1<<40 }
func (f *fakeDev) NumQueues() int         { return 2 }

func (f *fakeDev) ReadConfig(off uint64, data []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if off < uint64(len(f.cfg)) {
		copy(data, f.cfg[off:])
	}
}

func (f *fakeDev) WriteConfig(off uint64, data []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cfgWrites++
}

func (f *fakeDev) Activate(features uint64, queues []*Queue) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.activations++
	f.features = features
	return f.activateErr
}

func (f *fakeDev) Reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resets++
}

func (f *fakeDev) QueueNotify(i int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.notifies = append(f.notifies, i)
}

// irqRec records IRQ line calls.
type irqRec struct {
	mu     sync.Mutex
	levels []bool
	fail   error
}

func (r *irqRec) line(irq uint32, level bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if irq != testIRQ {
		return errors.New("wrong irq")
	}
	if r.fail != nil {
		return r.fail
	}
	r.levels = append(r.levels, level)
	return nil
}

func (r *irqRec) calls() []bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]bool(nil), r.levels...)
}

// env is a transport over real guest memory with a fake device.
type env struct {
	mem  *memory.Memory
	dev  *fakeDev
	irq  *irqRec
	tr   *Transport
	drv  *virtiotest.Driver
	errs []error
	mu   sync.Mutex
}

func newEnv(t testing.TB, c Config) *env {
	t.Helper()
	mem, err := memory.New(memory.MinSize)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mem.Close() })
	e := &env{mem: mem, dev: &fakeDev{}, irq: &irqRec{}}
	c.Base = testBase
	c.IRQ = testIRQ
	c.IRQLine = e.irq.line
	c.Memory = mem
	c.OnError = func(err error) {
		e.mu.Lock()
		e.errs = append(e.errs, err)
		e.mu.Unlock()
	}
	tr, err := NewTransport(e.dev, c)
	if err != nil {
		t.Fatal(err)
	}
	e.tr = tr
	e.drv = virtiotest.New(tr, testBase, mem)
	return e
}

func layout(size uint16) virtiotest.Layout {
	return virtiotest.Layout{Size: size, Desc: testDesc, Avail: testAvail, Used: testUsed}
}

// up initialises the device with a queue of size entries.
func (e *env) up(t testing.TB, l virtiotest.Layout) *Queue {
	t.Helper()
	if err := e.drv.Init(l); err != nil {
		t.Fatal(err)
	}
	q := e.tr.Queues()[0]
	if !q.Active() {
		t.Fatalf("queue 0 not active after DRIVER_OK (status %#x, broken %v)", e.tr.Status(), e.tr.Broken())
	}
	return q
}

func (e *env) read32(off uint64) uint32 { return e.drv.Read32(off) }

func (e *env) write32(off uint64, v uint32) { e.drv.Write32(off, v) }

func (e *env) needsReset() bool { return e.tr.Status()&StatusNeedsReset != 0 }

func le16(b []byte) uint16 { return binary.LittleEndian.Uint16(b) }
