package virtio

import (
	"encoding/binary"
	"fmt"
	"sync"
)

// queueConfig is what the driver writes into a queue's registers.
type queueConfig struct {
	size   uint16
	ready  bool
	desc   uint64
	driver uint64
	device uint64
}

// Queue is one split virtqueue of a Transport. Devices pop descriptor
// chains, process them and push them back; all methods are safe for
// concurrent use, and none blocks for longer than walking one chain.
type Queue struct {
	t     *Transport
	index int
	max   uint16

	// cfg holds the queue's registers; protected by t.mu.
	cfg queueConfig

	// mu protects the runtime state below.
	mu sync.Mutex
	r  rings
	// mapped is set when the driver made the queue ready and the rings
	// passed validation; active when, in addition, the driver set
	// DRIVER_OK. Only an active queue hands out chains.
	mapped, active bool
	// broken is set when the driver corrupted the queue; it stays set
	// until reset.
	broken bool
	// gen counts resets, so that chains popped before one are discarded.
	gen                uint64
	size               uint16
	eventIdx, indirect bool
	// lastAvail is the avail index of the next chain to pop; usedIdx the
	// used index the device publishes.
	lastAvail, usedIdx uint16
	usedFlags          uint16
}

// Index returns the queue's number within its device.
func (q *Queue) Index() int { return q.index }

// MaxSize returns the largest size the device offers for the queue.
func (q *Queue) MaxSize() uint16 { return q.max }

// Size returns the size the driver chose, valid once the queue is ready.
func (q *Queue) Size() uint16 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.size
}

// Active reports whether the queue hands out chains (ready, validated,
// DRIVER_OK set and not broken).
func (q *Queue) Active() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.active && !q.broken
}

// Pop returns the next available chain, or nil when there is none or the
// queue is not active. A malformed ring or chain puts the device into
// DEVICE_NEEDS_RESET and is returned as an error wrapping ErrMalformed;
// the queue then hands out nothing until the driver resets the device.
func (q *Queue) Pop() (*Chain, error) {
	q.mu.Lock()
	c, err := q.popLocked()
	q.mu.Unlock()
	if err != nil {
		q.Fail(err)
		return nil, err
	}
	return c, nil
}

func (q *Queue) popLocked() (*Chain, error) {
	if !q.active || q.broken {
		return nil, nil
	}
	avail := q.r.avail.load16(availIdxOff)
	if avail == q.lastAvail {
		return nil, nil
	}
	if avail-q.lastAvail > q.size || avail-q.usedIdx > q.size {
		return nil, fmt.Errorf("%w: available index moved to %d with %d popped and %d used in a queue of %d",
			ErrMalformed, avail, q.lastAvail, q.usedIdx, q.size)
	}
	slot := uint64(q.lastAvail & (q.size - 1))
	head := q.r.avail.load16(availRingOff + 2*slot)
	c, err := q.readChainLocked(head)
	if err != nil {
		return nil, err
	}
	q.lastAvail++
	return c, nil
}

// Push returns a processed chain to the driver through the used ring,
// reporting written bytes written into its writable buffers (clamped to
// their length), and interrupts the driver unless it suppressed that. It
// returns false and writes nothing if the chain was popped before a reset
// or the queue is broken or no longer active.
func (q *Queue) Push(c *Chain, written uint32) bool {
	if c == nil || c.q != q {
		return false
	}
	if w := c.WritableLen(); uint64(written) > w {
		written = uint32(w)
	}
	q.mu.Lock()
	if !q.active || q.broken || c.gen != q.gen {
		q.mu.Unlock()
		return false
	}
	slot := uint64(q.usedIdx & (q.size - 1))
	eo := q.r.used.off + usedRingOff + slot*usedElemLen
	e := q.r.used.b[eo : eo+usedElemLen]
	binary.LittleEndian.PutUint32(e[0:], uint32(c.Head))
	binary.LittleEndian.PutUint32(e[4:], written)
	old := q.usedIdx
	q.usedIdx++
	q.publishLocked()
	need := q.needInterruptLocked(old, q.usedIdx)
	err := q.t.mem.MarkDirty(q.r.used.gpa+eo, usedElemLen)
	q.mu.Unlock()
	if err != nil {
		q.t.report(fmt.Errorf("queue %d: mark used element dirty: %w", q.index, err))
	}
	if need {
		q.t.interrupt(IntUsedBuffer)
	}
	return true
}

// publishLocked stores used.flags and used.idx (one aligned word, both
// device-owned) and marks it dirty.
func (q *Queue) publishLocked() {
	q.r.used.store32(0, uint32(q.usedFlags)|uint32(q.usedIdx)<<16)
	if err := q.t.mem.MarkDirty(q.r.used.gpa+q.r.used.off, 4); err != nil {
		q.t.report(fmt.Errorf("queue %d: mark used index dirty: %w", q.index, err))
	}
}

// Fail marks the queue broken and puts the device into
// DEVICE_NEEDS_RESET, for a device that found a request it cannot even
// answer (for virtio-blk, one without a status byte).
func (q *Queue) Fail(err error) {
	q.mu.Lock()
	q.broken = true
	q.mu.Unlock()
	q.t.needsReset(fmt.Errorf("queue %d: %w", q.index, err))
}

// mapRings installs validated rings for a queue made ready; indices start
// at 0. Called with t.mu held.
func (q *Queue) mapRings(r rings, size uint16) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.r, q.size = r, size
	q.mapped, q.active, q.broken = true, false, false
	q.lastAvail, q.usedIdx, q.usedFlags = 0, 0, 0
	q.gen++
}

// activate lets a mapped queue hand out chains, with the negotiated ring
// features. Called with t.mu held.
func (q *Queue) activate(features uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.eventIdx = features&FeatureEventIdx != 0
	q.indirect = features&FeatureIndirectDesc != 0
	q.active = q.mapped
}

// unmap stops the queue and forgets its rings (reset or QueueReady=0).
// Called with t.mu held.
func (q *Queue) unmap() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.r = rings{}
	q.mapped, q.active, q.broken = false, false, false
	q.size, q.lastAvail, q.usedIdx, q.usedFlags = 0, 0, 0, 0
	q.eventIdx, q.indirect = false, false
	q.gen++
}
