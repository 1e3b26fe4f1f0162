package blk

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/vmmd/vmmd/pkg/devices/virtio"
	"github.com/vmmd/vmmd/pkg/devices/virtio/virtiotest"
	"github.com/vmmd/vmmd/pkg/memory"
)

const (
	testBase   = 0xd000_0000
	testIRQ    = 5
	ringDesc   = 0x10000
	ringAvail  = 0x11000
	ringUsed   = 0x12000
	hdrArea    = 0x200000 // request headers, 0x100 apart
	statusArea = 0x300000 // status bytes, 0x10 apart
	dataArea   = 0x400000
)

type vbuf = virtiotest.Buf

// call is one backend call.
type call struct {
	op  Op
	off int64
	n   int
}

// fakeDisk is an in-memory Backend with failure injection and a gate that
// holds requests until released.
type fakeDisk struct {
	mu       sync.Mutex
	data     []byte
	ro       bool
	id       string
	fail     map[Op]error
	failN    map[Op]int // failures left per op; <0 forever
	gate     chan struct{}
	started  chan Op
	calls    []call
	flushes  int
	inflight int
	maxSeen  int
}

func newDisk(size int) *fakeDisk {
	return &fakeDisk{data: make([]byte, size), id: "drive0", fail: map[Op]error{}, failN: map[Op]int{}}
}

// failNext makes the next n calls of op fail with err (n < 0: forever).
func (f *fakeDisk) failNext(op Op, n int, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[op], f.failN[op] = err, n
}

// hold makes requests wait until release; started gets each op as it
// begins.
func (f *fakeDisk) hold() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gate = make(chan struct{})
	f.started = make(chan Op, 1024)
}

func (f *fakeDisk) release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.gate != nil {
		close(f.gate)
		f.gate = nil
	}
}

func (f *fakeDisk) enter(ctx context.Context, op Op, off int64, n int) error {
	f.mu.Lock()
	f.calls = append(f.calls, call{op, off, n})
	f.inflight++
	f.maxSeen = max(f.maxSeen, f.inflight)
	gate, started := f.gate, f.started
	f.mu.Unlock()
	if started != nil {
		started <- op
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			f.leave()
			return ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if left := f.failN[op]; left != 0 {
		if left > 0 {
			f.failN[op]--
		}
		f.inflight--
		return f.fail[op]
	}
	return nil
}

func (f *fakeDisk) leave() {
	f.mu.Lock()
	f.inflight--
	f.mu.Unlock()
}

func (f *fakeDisk) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if err := f.enter(ctx, OpRead, off, len(p)); err != nil {
		return 0, err
	}
	defer f.leave()
	f.mu.Lock()
	defer f.mu.Unlock()
	if off < 0 || off+int64(len(p)) > int64(len(f.data)) {
		return 0, errors.New("fake disk: read out of range")
	}
	return copy(p, f.data[off:]), nil
}

func (f *fakeDisk) WriteAt(ctx context.Context, p []byte, off int64) (int, error) {
	if err := f.enter(ctx, OpWrite, off, len(p)); err != nil {
		return 0, err
	}
	defer f.leave()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ro {
		return 0, errors.New("fake disk: write to read-only disk")
	}
	if off < 0 || off+int64(len(p)) > int64(len(f.data)) {
		return 0, errors.New("fake disk: write out of range")
	}
	return copy(f.data[off:], p), nil
}

func (f *fakeDisk) Flush(ctx context.Context) error {
	if err := f.enter(ctx, OpFlush, 0, 0); err != nil {
		return err
	}
	defer f.leave()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.flushes++
	return nil
}

func (f *fakeDisk) Size() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return uint64(len(f.data))
}

func (f *fakeDisk) ReadOnly() bool { return f.ro }
func (f *fakeDisk) ID() string     { return f.id }

func (f *fakeDisk) bytes(off, n int) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]byte(nil), f.data[off:off+n]...)
}

func (f *fakeDisk) put(off int, b []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	copy(f.data[off:], b)
}

func (f *fakeDisk) flushCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.flushes
}

func (f *fakeDisk) callLog() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

// stopRec records OnStop calls.
type stopRec struct {
	mu   sync.Mutex
	ops  []Op
	errs []error
}

func (s *stopRec) onStop(op Op, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ops = append(s.ops, op)
	s.errs = append(s.errs, err)
}

func (s *stopRec) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ops)
}

// env is a block device over real guest memory with a test driver.
type env struct {
	t     testing.TB
	mem   *memory.Memory
	disk  *fakeDisk
	dev   *Device
	drv   *virtiotest.Driver
	stops *stopRec
	slot  uint64
	lines []bool
	mu    sync.Mutex
}

type envOpt func(*Config)

func newEnv(t testing.TB, disk *fakeDisk, opts ...envOpt) *env {
	t.Helper()
	mem, err := memory.New(memory.MinSize)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mem.Close() })
	return newEnvMem(t, mem, disk, opts...)
}

func newEnvMem(t testing.TB, mem *memory.Memory, disk *fakeDisk, opts ...envOpt) *env {
	t.Helper()
	e := &env{t: t, mem: mem, disk: disk, stops: &stopRec{}}
	c := Config{
		Backend: disk,
		Memory:  mem,
		Base:    testBase,
		IRQ:     testIRQ,
		IRQLine: func(irq uint32, level bool) error {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.lines = append(e.lines, level)
			return nil
		},
		OnStop: e.stops.onStop,
	}
	for _, o := range opts {
		o(&c)
	}
	dev, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	e.dev = dev
	e.drv = virtiotest.New(dev, testBase, mem)
	return e
}

func layout() virtiotest.Layout {
	return virtiotest.Layout{Size: 64, Desc: ringDesc, Avail: ringAvail, Used: ringUsed,
		ExtraFeatureAccept: FeatureSegMax | FeatureBlkSize | FeatureFlush | FeatureRO}
}

func (e *env) up(l virtiotest.Layout) {
	e.t.Helper()
	if err := e.drv.Init(l); err != nil {
		e.t.Fatal(err)
	}
}

// header writes a request header into a fresh slot and returns its
// address and the slot's status byte address (set to 0xff).
func (e *env) header(typ uint32, sector uint64) (hdr, status uint64) {
	e.t.Helper()
	slot := e.slot % 4096
	e.slot++
	hdr, status = hdrArea+slot*0x100, statusArea+slot*0x10
	var b [16]byte
	binary.LittleEndian.PutUint32(b[0:], typ)
	binary.LittleEndian.PutUint64(b[8:], sector)
	if err := e.mem.Write(hdr, b[:]); err != nil {
		e.t.Fatal(err)
	}
	if err := e.mem.Write(status, []byte{0xff}); err != nil {
		e.t.Fatal(err)
	}
	return hdr, status
}

// request posts a standard three-part request (header, data buffers,
// status) and returns its head and status address.
func (e *env) request(typ uint32, sector uint64, data ...vbuf) (uint16, uint64) {
	e.t.Helper()
	hdr, status := e.header(typ, sector)
	bufs := append([]vbuf{{Addr: hdr, Len: 16}}, data...)
	bufs = append(bufs, vbuf{Addr: status, Len: 1, Write: true})
	return e.drv.Post(bufs), status
}

// wait waits until n chains have been used.
func (e *env) wait(n uint16) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.drv.WaitUsed(ctx, n); err != nil {
		e.t.Fatal(err)
	}
}

// do posts a request, waits for it and returns its status and used length.
func (e *env) do(typ uint32, sector uint64, data ...vbuf) (byte, uint32) {
	e.t.Helper()
	before := e.drv.UsedIdx()
	head, status := e.request(typ, sector, data...)
	e.wait(before + 1)
	id, n := e.drv.Used(before)
	if id != uint32(head) {
		e.t.Fatalf("used element id %d, want %d", id, head)
	}
	return e.statusAt(status), n
}

func (e *env) statusAt(gpa uint64) byte {
	e.t.Helper()
	var b [1]byte
	if err := e.mem.Read(gpa, b[:]); err != nil {
		e.t.Fatal(err)
	}
	return b[0]
}

func (e *env) read(gpa uint64, n int) []byte {
	e.t.Helper()
	b := make([]byte, n)
	if err := e.mem.Read(gpa, b); err != nil {
		e.t.Fatal(err)
	}
	return b
}

func (e *env) write(gpa uint64, b []byte) {
	e.t.Helper()
	if err := e.mem.Write(gpa, b); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) needsReset() bool {
	return e.drv.Read32(virtio.RegStatus)&virtio.StatusNeedsReset != 0
}

// dirtyPages takes the device-dirty bitmap of low RAM.
func (e *env) dirtyPages() map[uint64]bool {
	e.t.Helper()
	w := make([]uint64, e.mem.DirtyWords(0))
	if err := e.mem.TakeDirty(0, w); err != nil {
		e.t.Fatal(err)
	}
	out := map[uint64]bool{}
	for i, v := range w {
		for b := range 64 {
			if v&(1<<b) != 0 {
				out[uint64(i*64+b)] = true
			}
		}
	}
	return out
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ seed
	}
	return b
}

// eventually polls cond for up to 5 s.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// waitStarted waits for n backend calls to begin on a held disk.
func waitStarted(t testing.TB, d *fakeDisk, n int) {
	t.Helper()
	for range n {
		select {
		case <-d.started:
		case <-time.After(5 * time.Second):
			t.Fatal("backend call did not start")
		}
	}
}
