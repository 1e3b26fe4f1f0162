// Package virtiotest is a minimal virtio-mmio driver for tests: it
// negotiates features through the registers, lays out one split virtqueue
// in guest memory, posts descriptor chains and reads the used ring, the
// way a guest driver would.
package virtiotest

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/vmmd/vmmd/pkg/devices"
)

// Register offsets, status and feature bits, repeated from package virtio
// (which tests this package's users' internals, so it cannot be imported).
const (
	RegDeviceFeatures    = 0x010
	RegDeviceFeaturesSel = 0x014
	RegDriverFeatures    = 0x020
	RegDriverFeaturesSel = 0x024
	RegQueueSel          = 0x030
	RegQueueNum          = 0x038
	RegQueueReady        = 0x044
	RegQueueNotify       = 0x050
	RegStatus            = 0x070
	RegQueueDescLow      = 0x080
	RegQueueDescHigh     = 0x084
	RegQueueDriverLow    = 0x090
	RegQueueDriverHigh   = 0x094
	RegQueueDeviceLow    = 0x0a0
	RegQueueDeviceHigh   = 0x0a4

	StatusAcknowledge = 1
	StatusDriver      = 2
	StatusDriverOK    = 4
	StatusFeaturesOK  = 8

	FeatureIndirectDesc = 1 << 28
	FeatureEventIdx     = 1 << 29
	FeatureVersion1     = 1 << 32
)

// Memory is the guest memory the driver writes its rings into.
type Memory interface {
	Read(gpa uint64, p []byte) error
	Write(gpa uint64, p []byte) error
}

// Buf is one buffer of a chain to post.
type Buf struct {
	Addr  uint64
	Len   uint32
	Write bool // device-writable
}

// Layout places a queue's parts in guest memory.
type Layout struct {
	Size               uint16
	Desc, Avail, Used  uint64
	DisableIndirect    bool
	DisableEventIdx    bool
	ExtraFeatureAccept uint64 // device-type features to accept (ANDed with the offer)
}

// Driver drives one virtio-mmio device with one queue (queue 0).
type Driver struct {
	Dev  devices.MMIODevice
	Base uint64
	Mem  Memory

	L        Layout
	features uint64
	availIdx uint16
	nextDesc uint16
	err      error
}

// New returns a driver for the device at base.
func New(dev devices.MMIODevice, base uint64, mem Memory) *Driver {
	return &Driver{Dev: dev, Base: base, Mem: mem}
}

// Read32 reads a register.
func (d *Driver) Read32(off uint64) uint32 {
	var b [4]byte
	d.Dev.MMIORead(d.Base+off, b[:])
	return binary.LittleEndian.Uint32(b[:])
}

// Write32 writes a register.
func (d *Driver) Write32(off uint64, v uint32) {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	d.Dev.MMIOWrite(d.Base+off, b[:])
}

// Features returns the negotiated features.
func (d *Driver) Features() uint64 { return d.features }

// Negotiate resets the device and runs the status and feature handshake
// up to FEATURES_OK, accepting VERSION_1, the ring features the layout
// allows and the device-type features it names.
func (d *Driver) Negotiate(l Layout) error {
	d.L = l
	d.availIdx, d.nextDesc = 0, 0
	d.Write32(RegStatus, 0)
	d.Write32(RegStatus, StatusAcknowledge)
	d.Write32(RegStatus, StatusAcknowledge|StatusDriver)
	d.Write32(RegDeviceFeaturesSel, 0)
	lo := d.Read32(RegDeviceFeatures)
	d.Write32(RegDeviceFeaturesSel, 1)
	hi := d.Read32(RegDeviceFeatures)
	offered := uint64(hi)<<32 | uint64(lo)
	want := uint64(FeatureVersion1) | l.ExtraFeatureAccept
	if !l.DisableIndirect {
		want |= FeatureIndirectDesc
	}
	if !l.DisableEventIdx {
		want |= FeatureEventIdx
	}
	d.features = offered & want
	d.Write32(RegDriverFeaturesSel, 0)
	d.Write32(RegDriverFeatures, uint32(d.features))
	d.Write32(RegDriverFeaturesSel, 1)
	d.Write32(RegDriverFeatures, uint32(d.features>>32))
	d.Write32(RegStatus, StatusAcknowledge|StatusDriver|StatusFeaturesOK)
	if d.Read32(RegStatus)&StatusFeaturesOK == 0 {
		return fmt.Errorf("device refused features %#x", d.features)
	}
	return nil
}

// SetupQueue programs queue 0 and makes it ready. The rings are zeroed
// first, as a driver allocating them does.
func (d *Driver) SetupQueue() error {
	l := d.L
	zero := make([]byte, 16*int(l.Size))
	for _, z := range []struct {
		gpa uint64
		n   int
	}{{l.Desc, 16 * int(l.Size)}, {l.Avail, 6 + 2*int(l.Size)}, {l.Used, 6 + 8*int(l.Size)}} {
		if err := d.Mem.Write(z.gpa, zero[:min(z.n, len(zero))]); err != nil {
			return fmt.Errorf("zero ring at %#x: %w", z.gpa, err)
		}
		if z.n > len(zero) {
			if err := d.Mem.Write(z.gpa+uint64(len(zero)), make([]byte, z.n-len(zero))); err != nil {
				return fmt.Errorf("zero ring at %#x: %w", z.gpa, err)
			}
		}
	}
	d.Write32(RegQueueSel, 0)
	d.Write32(RegQueueNum, uint32(l.Size))
	d.Write32(RegQueueDescLow, uint32(l.Desc))
	d.Write32(RegQueueDescHigh, uint32(l.Desc>>32))
	d.Write32(RegQueueDriverLow, uint32(l.Avail))
	d.Write32(RegQueueDriverHigh, uint32(l.Avail>>32))
	d.Write32(RegQueueDeviceLow, uint32(l.Used))
	d.Write32(RegQueueDeviceHigh, uint32(l.Used>>32))
	d.Write32(RegQueueReady, 1)
	if d.Read32(RegQueueReady) != 1 {
		return fmt.Errorf("queue 0 not ready (status %#x)", d.Read32(RegStatus))
	}
	return nil
}

// DriverOK sets DRIVER_OK.
func (d *Driver) DriverOK() {
	d.Write32(RegStatus, StatusAcknowledge|StatusDriver|StatusFeaturesOK|StatusDriverOK)
}

// Init runs Negotiate, SetupQueue and DriverOK.
func (d *Driver) Init(l Layout) error {
	if err := d.Negotiate(l); err != nil {
		return err
	}
	if err := d.SetupQueue(); err != nil {
		return err
	}
	d.DriverOK()
	return nil
}

func (d *Driver) put16(gpa uint64, v uint16) {
	var b [2]byte
	binary.LittleEndian.PutUint16(b[:], v)
	d.must(d.Mem.Write(gpa, b[:]))
}

func (d *Driver) get16(gpa uint64) uint16 {
	var b [2]byte
	d.must(d.Mem.Read(gpa, b[:]))
	return binary.LittleEndian.Uint16(b[:])
}

// must records the first guest-memory error; ring accesses outside RAM
// are a bug in the test's layout, reported by Err.
func (d *Driver) must(err error) {
	if err != nil && d.err == nil {
		d.err = fmt.Errorf("virtiotest: %w", err)
	}
}

// Err returns the first guest-memory access error the driver hit.
func (d *Driver) Err() error { return d.err }

// Desc writes descriptor i of the ring's table (or of a table at gpa).
func (d *Driver) Desc(table uint64, i uint16, addr uint64, length uint32, flags, next uint16) {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[0:], addr)
	binary.LittleEndian.PutUint32(b[8:], length)
	binary.LittleEndian.PutUint16(b[12:], flags)
	binary.LittleEndian.PutUint16(b[14:], next)
	d.must(d.Mem.Write(table+16*uint64(i), b[:]))
}

// Descriptor flags.
const (
	FNext     = 1
	FWrite    = 2
	FIndirect = 4
)

// Chain writes bufs as a chain of ring descriptors (allocated round-robin)
// and returns its head, without making it available.
func (d *Driver) Chain(bufs []Buf) uint16 {
	head := d.nextDesc
	for i, b := range bufs {
		idx := d.nextDesc
		d.nextDesc = (d.nextDesc + 1) % d.L.Size
		var flags uint16
		if b.Write {
			flags |= FWrite
		}
		next := uint16(0)
		if i+1 < len(bufs) {
			flags |= FNext
			next = d.nextDesc
		}
		d.Desc(d.L.Desc, idx, b.Addr, b.Len, flags, next)
	}
	return head
}

// IndirectChain writes bufs into an indirect table at table and a ring
// descriptor pointing at it, and returns that descriptor's index.
func (d *Driver) IndirectChain(table uint64, bufs []Buf) uint16 {
	for i, b := range bufs {
		var flags uint16
		if b.Write {
			flags |= FWrite
		}
		next := uint16(0)
		if i+1 < len(bufs) {
			flags |= FNext
			next = uint16(i + 1)
		}
		d.Desc(table, uint16(i), b.Addr, b.Len, flags, next)
	}
	head := d.nextDesc
	d.nextDesc = (d.nextDesc + 1) % d.L.Size
	d.Desc(d.L.Desc, head, table, uint32(16*len(bufs)), FIndirect, 0)
	return head
}

// Publish makes head available (ring entry, then the index).
func (d *Driver) Publish(head uint16) {
	d.put16(d.L.Avail+4+2*uint64(d.availIdx%d.L.Size), head)
	d.availIdx++
	d.put16(d.L.Avail+2, d.availIdx)
}

// SetAvailIdx overwrites avail.idx (for malformed-ring tests).
func (d *Driver) SetAvailIdx(v uint16) {
	d.availIdx = v
	d.put16(d.L.Avail+2, v)
}

// PutAvailEntry overwrites avail.ring[slot].
func (d *Driver) PutAvailEntry(slot, head uint16) {
	d.put16(d.L.Avail+4+2*uint64(slot), head)
}

// Post writes bufs as a chain, publishes it and notifies; it returns the head.
func (d *Driver) Post(bufs []Buf) uint16 {
	h := d.Chain(bufs)
	d.Publish(h)
	d.Notify()
	return h
}

// Notify writes QueueNotify for queue 0.
func (d *Driver) Notify() { d.Write32(RegQueueNotify, 0) }

// SetAvailFlags writes avail.flags.
func (d *Driver) SetAvailFlags(v uint16) { d.put16(d.L.Avail, v) }

// SetUsedEvent writes used_event (the avail ring's tail).
func (d *Driver) SetUsedEvent(v uint16) { d.put16(d.L.Avail+4+2*uint64(d.L.Size), v) }

// AvailEvent reads avail_event (the used ring's tail).
func (d *Driver) AvailEvent() uint16 { return d.get16(d.L.Used + 4 + 8*uint64(d.L.Size)) }

// UsedFlags reads used.flags.
func (d *Driver) UsedFlags() uint16 { return d.get16(d.L.Used) }

// UsedIdx reads used.idx.
func (d *Driver) UsedIdx() uint16 { return d.get16(d.L.Used + 2) }

// AvailIdx returns the driver's avail index.
func (d *Driver) AvailIdx() uint16 { return d.availIdx }

// Used reads used element i (taken modulo the size).
func (d *Driver) Used(i uint16) (id, length uint32) {
	var b [8]byte
	d.must(d.Mem.Read(d.L.Used+4+8*uint64(i%d.L.Size), b[:]))
	return binary.LittleEndian.Uint32(b[0:]), binary.LittleEndian.Uint32(b[4:])
}

// WaitUsed polls until used.idx reaches n (modular comparison) or ctx ends.
func (d *Driver) WaitUsed(ctx context.Context, n uint16) error {
	for {
		if int16(d.UsedIdx()-n) >= 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("used index %d, want %d (status %#x): %w", d.UsedIdx(), n, d.Read32(RegStatus), ctx.Err())
		case <-time.After(200 * time.Microsecond):
		}
	}
}
