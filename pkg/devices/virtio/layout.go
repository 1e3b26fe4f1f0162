package virtio

import (
	"fmt"
	"math"
)

// Sizes of the split virtqueue parts for a queue of n entries (virtio 1.2,
// section 2.7), including the event-index fields, which drivers allocate
// whether or not EVENT_IDX is negotiated.
func descTableLen(n uint16) uint64 { return 16 * uint64(n) }
func availRingLen(n uint16) uint64 { return 6 + 2*uint64(n) }
func usedRingLen(n uint16) uint64  { return 6 + 8*uint64(n) }

// Byte offsets inside the rings.
const (
	availIdxOff  = 2
	availRingOff = 4
	usedIdxOff   = 2
	usedRingOff  = 4
	usedElemLen  = 8
)

// rings are the validated host views of a queue's three parts.
type rings struct {
	desc    []byte
	descGPA uint64
	avail   ringView
	used    ringView
}

// checkRange checks that [gpa, gpa+n) does not wrap around the address
// space.
func checkRange(what string, gpa, n uint64) error {
	if gpa > math.MaxUint64-n {
		return fmt.Errorf("%w: %s at %#x+%#x wraps around the address space", ErrMalformed, what, gpa, n)
	}
	return nil
}

// mapRing returns the widened view of a ring part (see ringView).
func mapRing(mem Memory, what string, gpa, n uint64) (ringView, error) {
	if err := checkRange(what, gpa, n+3); err != nil {
		return ringView{}, err
	}
	lo := gpa &^ 3
	hi := (gpa + n + 3) &^ 3
	b, err := mem.Slice(lo, hi-lo)
	if err != nil {
		return ringView{}, fmt.Errorf("%w: %s at %#x+%#x: %w", ErrMalformed, what, gpa, n, err)
	}
	if !hostAligned4(b) {
		return ringView{}, fmt.Errorf("%w: %s at %#x: host mapping is not 4-byte aligned", ErrMalformed, what, gpa)
	}
	return ringView{b: b, off: gpa - lo, gpa: lo}, nil
}

// validateRings checks a queue's size and ring addresses as the driver
// configured them and maps the rings.
func validateRings(mem Memory, max uint16, c queueConfig) (rings, error) {
	n := c.size
	switch {
	case n == 0:
		return rings{}, fmt.Errorf("%w: queue size is 0", ErrMalformed)
	case n > max:
		return rings{}, fmt.Errorf("%w: queue size %d is above the maximum %d", ErrMalformed, n, max)
	case n&(n-1) != 0:
		return rings{}, fmt.Errorf("%w: queue size %d is not a power of two", ErrMalformed, n)
	case c.desc%16 != 0:
		return rings{}, fmt.Errorf("%w: descriptor table at %#x is not 16-byte aligned", ErrMalformed, c.desc)
	case c.driver%2 != 0:
		return rings{}, fmt.Errorf("%w: available ring at %#x is not 2-byte aligned", ErrMalformed, c.driver)
	case c.device%4 != 0:
		return rings{}, fmt.Errorf("%w: used ring at %#x is not 4-byte aligned", ErrMalformed, c.device)
	}
	var r rings
	if err := checkRange("descriptor table", c.desc, descTableLen(n)); err != nil {
		return rings{}, err
	}
	d, err := mem.Slice(c.desc, descTableLen(n))
	if err != nil {
		return rings{}, fmt.Errorf("%w: descriptor table at %#x+%#x: %w", ErrMalformed, c.desc, descTableLen(n), err)
	}
	r.desc, r.descGPA = d, c.desc
	if r.avail, err = mapRing(mem, "available ring", c.driver, availRingLen(n)); err != nil {
		return rings{}, err
	}
	if r.used, err = mapRing(mem, "used ring", c.device, usedRingLen(n)); err != nil {
		return rings{}, err
	}
	return r, nil
}
