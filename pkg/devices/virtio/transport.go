package virtio

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/vmmd/vmmd/pkg/devices"
)

// Device is a virtio device type (block, network, ...) behind a Transport.
// The transport calls these methods without holding its locks, on vCPU
// goroutines: none of them may block on device work.
type Device interface {
	// DeviceID returns the virtio device ID (2 for a block device).
	DeviceID() uint32
	// DeviceFeatures returns the device-type feature bits the device
	// offers; the transport adds its own (VERSION_1 and the ring
	// features).
	DeviceFeatures() uint64
	// NumQueues returns how many virtqueues the device has.
	NumQueues() int
	// ReadConfig fills data from the configuration space at offset off.
	// data arrives zeroed; bytes past the end of the space stay zero.
	ReadConfig(off uint64, data []byte)
	// WriteConfig writes data to the configuration space at offset off;
	// read-only fields ignore it.
	WriteConfig(off uint64, data []byte)
	// Activate starts the device once the driver has set DRIVER_OK, with
	// the negotiated features and all the device's queues (in order). An
	// error puts the device into DEVICE_NEEDS_RESET.
	Activate(features uint64, queues []*Queue) error
	// Reset stops the device after the driver wrote 0 to Status. Chains
	// still in flight are discarded when pushed.
	Reset()
	// QueueNotify tells the device that the driver added buffers to
	// queue index (always a valid index).
	QueueNotify(index int)
}

// Config configures a Transport.
type Config struct {
	// Base is the guest-physical address of the MMIO window, aligned to
	// WindowSize.
	Base uint64
	// IRQ is the interrupt line (GSI) of the in-kernel irqchip.
	IRQ uint32
	// IRQLine drives the line (the machine passes kvm's VM.IRQLine). Nil
	// means no interrupts, for polling drivers and tests.
	IRQLine devices.IRQLine
	// Memory is guest RAM.
	Memory Memory
	// QueueMax is the largest queue size offered (a power of two, at most
	// MaxQueueSize); 0 means DefaultQueueMax.
	QueueMax uint16
	// DisableEventIdx and DisableIndirect withhold VIRTIO_F_EVENT_IDX and
	// VIRTIO_F_INDIRECT_DESC from the offered features.
	DisableEventIdx, DisableIndirect bool
	// OnError, if set, hears about problems the guest cannot be told
	// about directly: why the device needs a reset, failed IRQ line
	// calls. It may be called with the transport's locks held, so it
	// must only record or log, never call back into the device.
	OnError func(error)
}

// Transport is a virtio-mmio version 2 transport: the register window of
// one device. It implements devices.MMIODevice; register accesses may come
// from several vCPUs at once.
type Transport struct {
	dev     Device
	devID   uint32
	mem     Memory
	base    uint64
	irq     uint32
	line    devices.IRQLine
	onError func(error)
	offered uint64
	queues  []*Queue

	// mu protects the registers and the queues' configuration. It is held
	// for register arithmetic and the IRQ line ioctl (so that line levels
	// follow status changes in order), never across Device calls.
	mu          sync.Mutex
	status      uint32
	devFeatSel  uint32
	drvFeatSel  uint32
	drvFeatures uint64
	queueSel    uint32
	intStatus   uint32
	lineHigh    bool
	configGen   uint32
	broken      error

	irqFailures atomic.Uint64
}

// NewTransport returns a transport for dev in its reset state.
func NewTransport(dev Device, c Config) (*Transport, error) {
	max := c.QueueMax
	if max == 0 {
		max = DefaultQueueMax
	}
	switch {
	case dev == nil:
		return nil, fmt.Errorf("new virtio-mmio transport: no device")
	case c.Memory == nil:
		return nil, fmt.Errorf("new virtio-mmio transport: no guest memory")
	case c.Base%WindowSize != 0:
		return nil, fmt.Errorf("new virtio-mmio transport: base %#x is not aligned to the %#x-byte window", c.Base, WindowSize)
	case max > MaxQueueSize || max&(max-1) != 0:
		return nil, fmt.Errorf("new virtio-mmio transport: maximum queue size %d is not a power of two up to %d", max, MaxQueueSize)
	case dev.NumQueues() < 1 || dev.NumQueues() > 1024:
		return nil, fmt.Errorf("new virtio-mmio transport: device has %d queues, want 1 to 1024", dev.NumQueues())
	}
	t := &Transport{
		dev:     dev,
		devID:   dev.DeviceID(),
		mem:     c.Memory,
		base:    c.Base,
		irq:     c.IRQ,
		line:    c.IRQLine,
		onError: c.OnError,
		offered: dev.DeviceFeatures() | FeatureVersion1 | FeatureEventIdx | FeatureIndirectDesc,
	}
	if c.DisableEventIdx {
		t.offered &^= FeatureEventIdx
	}
	if c.DisableIndirect {
		t.offered &^= FeatureIndirectDesc
	}
	for i := range dev.NumQueues() {
		t.queues = append(t.queues, &Queue{t: t, index: i, max: max})
	}
	return t, nil
}

// Queues returns the device's queues, in order.
func (t *Transport) Queues() []*Queue { return t.queues }

// OfferedFeatures returns every feature bit the device offers.
func (t *Transport) OfferedFeatures() uint64 { return t.offered }

// Features returns the features the driver accepted (valid once
// FEATURES_OK is set).
func (t *Transport) Features() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.drvFeatures
}

// Status returns the device status register.
func (t *Transport) Status() uint32 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.status
}

// Broken returns why the device set DEVICE_NEEDS_RESET, or nil.
func (t *Transport) Broken() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.broken
}

// IRQFailures returns how many IRQ line calls failed.
func (t *Transport) IRQFailures() uint64 { return t.irqFailures.Load() }

// Notify does what a guest write of index to QueueNotify does, for an
// ioeventfd handler that sees the write instead of the transport.
func (t *Transport) Notify(index int) {
	if index >= 0 && index < len(t.queues) {
		t.dev.QueueNotify(index)
	}
}

// ConfigChanged tells the driver that the configuration space changed:
// it bumps ConfigGeneration and, once the driver is up, sends a
// configuration-change interrupt.
func (t *Transport) ConfigChanged() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.configGen++
	if t.status&StatusDriverOK != 0 {
		t.interruptLocked(IntConfigChange)
	}
}

// Reset resets the device as a driver write of 0 to Status does (for a
// machine reset).
func (t *Transport) Reset() {
	t.mu.Lock()
	t.resetLocked()
	t.mu.Unlock()
	t.dev.Reset()
}

// report passes err to OnError.
func (t *Transport) report(err error) {
	if t.onError != nil {
		t.onError(err)
	}
}

// needsReset sets DEVICE_NEEDS_RESET (once until reset), remembers why and
// tells a running driver with a configuration-change interrupt.
func (t *Transport) needsReset(err error) {
	t.mu.Lock()
	first := t.needsResetLocked(err)
	t.mu.Unlock()
	if first {
		t.report(fmt.Errorf("virtio device %d needs reset: %w", t.devID, err))
	}
}

func (t *Transport) needsResetLocked(err error) bool {
	if t.status&StatusNeedsReset != 0 {
		return false
	}
	t.status |= StatusNeedsReset
	t.broken = err
	if t.status&StatusDriverOK != 0 {
		t.interruptLocked(IntConfigChange)
	}
	return true
}
