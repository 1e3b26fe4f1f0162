package blk

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"

	"github.com/vmmd/vmmd/pkg/devices"
	"github.com/vmmd/vmmd/pkg/devices/virtio"
)

// DefaultMaxInFlight is how many requests run at once unless Config says
// otherwise.
const DefaultMaxInFlight = 32

// Config configures a Device.
type Config struct {
	// Backend is the storage.
	Backend Backend
	// Memory is guest RAM.
	Memory virtio.Memory
	// Base is the guest-physical address of the MMIO window (aligned to
	// virtio.WindowSize).
	Base uint64
	// IRQ and IRQLine are the interrupt line and its driver (nil: none).
	IRQ     uint32
	IRQLine devices.IRQLine
	// Policy decides about backend errors (nil: report them).
	Policy ErrorPolicy
	// OnStop is called, from a device goroutine and without device locks
	// held, when a request fails and the policy says stop. It may call
	// Pause.
	OnStop func(op Op, err error)
	// OnError hears why the device needed a reset and failed IRQ calls
	// (see virtio.Config.OnError).
	OnError func(error)
	// QueueSize is the maximum queue size offered (0: 256).
	QueueSize uint16
	// MaxInFlight bounds the requests run at once (0: DefaultMaxInFlight).
	MaxInFlight int
	// DisableEventIdx and DisableIndirect withhold those ring features.
	DisableEventIdx, DisableIndirect bool
}

// Device is a virtio-blk device with its virtio-mmio transport. It
// implements devices.MMIODevice. Close it before unmapping guest memory.
type Device struct {
	backend  Backend
	mem      virtio.Memory
	t        *virtio.Transport
	policy   ErrorPolicy
	onStop   func(Op, error)
	onError  func(error)
	features uint64
	segMax   uint32
	id       [IDLen]byte
	// capacity is the size in sectors, read on vCPUs.
	capacity atomic.Uint64

	ctx       context.Context
	cancel    context.CancelFunc
	kick      chan struct{}
	executors int
	wg        sync.WaitGroup // the executors
	bounce    sync.Pool

	// mu protects the request bookkeeping below. Lock order: mu, then
	// the transport's and queues' locks.
	mu       sync.Mutex
	q        *virtio.Queue // nil until the driver activates the device
	gen      uint64        // counts resets; requests of an older one are dropped
	paused   bool
	closed   bool
	inflight int
	idle     chan struct{} // closed when inflight drops to 0, for Pause
	retry    []*request    // stopped requests, retried first on Resume

	stats counters
}

// New returns a device in its reset state and starts its executor
// goroutines; Close stops them.
func New(c Config) (*Device, error) {
	if c.Backend == nil {
		return nil, fmt.Errorf("new virtio-blk device: no backend")
	}
	if c.MaxInFlight < 0 {
		return nil, fmt.Errorf("new virtio-blk device %q: MaxInFlight %d is negative", c.Backend.ID(), c.MaxInFlight)
	}
	maxInFlight := c.MaxInFlight
	if maxInFlight == 0 {
		maxInFlight = DefaultMaxInFlight
	}
	d := &Device{
		backend:   c.Backend,
		mem:       c.Memory,
		policy:    c.Policy,
		onStop:    c.OnStop,
		onError:   c.OnError,
		features:  FeatureSegMax | FeatureBlkSize | FeatureFlush,
		kick:      make(chan struct{}, 1),
		executors: maxInFlight,
	}
	if c.Backend.ReadOnly() {
		d.features |= FeatureRO
	}
	copy(d.id[:], c.Backend.ID())
	d.setCapacity()
	d.bounce.New = func() any {
		b := make([]byte, maxChunk)
		return &b
	}
	t, err := virtio.NewTransport((*vdev)(d), virtio.Config{
		Base:            c.Base,
		IRQ:             c.IRQ,
		IRQLine:         c.IRQLine,
		Memory:          c.Memory,
		QueueMax:        c.QueueSize,
		DisableEventIdx: c.DisableEventIdx,
		DisableIndirect: c.DisableIndirect,
		OnError:         c.OnError,
	})
	if err != nil {
		return nil, fmt.Errorf("new virtio-blk device %q: %w", c.Backend.ID(), err)
	}
	d.t = t
	// Two descriptors of every chain carry the header and the status.
	d.segMax = max(uint32(t.Queues()[0].MaxSize()), 3) - 2
	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.wg.Add(d.executors)
	for range d.executors {
		go d.run()
	}
	return d, nil
}

// setCapacity reads the backend's size into the capacity field; bytes past
// the last whole sector are not addressable, and the capacity is capped so
// that byte offsets fit in an int64.
func (d *Device) setCapacity() {
	d.capacity.Store(min(d.backend.Size()/SectorSize, math.MaxInt64/SectorSize))
}

// Transport returns the device's virtio-mmio transport.
func (d *Device) Transport() *virtio.Transport { return d.t }

// MMIORead implements devices.MMIODevice.
func (d *Device) MMIORead(addr uint64, data []byte) { d.t.MMIORead(addr, data) }

// MMIOWrite implements devices.MMIODevice.
func (d *Device) MMIOWrite(addr uint64, data []byte) { d.t.MMIOWrite(addr, data) }

// Notify wakes an executor for queue index, as a QueueNotify write does
// (for an ioeventfd handler). It never blocks.
func (d *Device) Notify(index int) {
	if index == 0 {
		d.wake()
	}
}

func (d *Device) wake() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// Resize re-reads the backend's size and tells the driver that the
// capacity changed.
func (d *Device) Resize() {
	d.setCapacity()
	d.t.ConfigChanged()
}

// Capacity returns the size announced to the guest, in 512-byte sectors.
func (d *Device) Capacity() uint64 { return d.capacity.Load() }

// Pause stops taking requests from the ring and waits until none is in
// flight, or ctx ends (then it returns an error and stays paused, with
// requests still running). Requests stopped by the error policy are not
// in flight; they wait for Resume. Pausing a paused device waits again.
func (d *Device) Pause(ctx context.Context) error {
	d.mu.Lock()
	d.paused = true
	n := d.inflight
	if n == 0 {
		d.mu.Unlock()
		return nil
	}
	if d.idle == nil {
		d.idle = make(chan struct{})
	}
	idle := d.idle
	d.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("pause virtio-blk %q: %d requests still in flight: %w", d.backend.ID(), n, ctx.Err())
	}
}

// Resume takes requests again, retrying stopped ones first.
func (d *Device) Resume() {
	d.mu.Lock()
	d.paused = false
	d.mu.Unlock()
	d.wake()
}

// Paused reports whether the device is paused (by Pause, or by a request
// the error policy stopped).
func (d *Device) Paused() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.paused
}

// Pending returns how many stopped requests wait for Resume.
func (d *Device) Pending() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.retry)
}

// Close stops the executors, cancels backend requests in flight through the
// context and waits for them; their results are dropped. The device must
// not be used afterwards, except that MMIO accesses stay harmless.
func (d *Device) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.mu.Unlock()
	d.cancel()
	d.wg.Wait()
	return nil
}

// activate is the transport's Activate: the driver set DRIVER_OK.
func (d *Device) activate(queues []*virtio.Queue) error {
	if len(queues) < 1 || !queues[0].Active() {
		return fmt.Errorf("virtio-blk %q: request queue 0 is not ready", d.backend.ID())
	}
	d.mu.Lock()
	d.q = queues[0]
	d.mu.Unlock()
	d.wake()
	return nil
}

// reset is the transport's Reset: forget the queue and stopped requests;
// requests in flight are dropped when they finish.
func (d *Device) reset() {
	d.mu.Lock()
	d.q = nil
	d.gen++
	d.retry = nil
	d.mu.Unlock()
}
