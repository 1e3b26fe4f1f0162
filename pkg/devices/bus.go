package devices

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
)

// ErrOverlap is returned (wrapped) when a registration would claim an
// address that another device already owns.
var ErrOverlap = errors.New("range overlaps a registered device")

// ErrInvalidRange is returned (wrapped) for an empty range, a range that runs
// past the end of its address space, or a nil device.
var ErrInvalidRange = errors.New("invalid range")

// maxUnclaimedMMIO bounds how many distinct unclaimed MMIO addresses are
// counted one by one: the guest chooses them, and the table must not grow
// without limit. Further addresses are counted under UnclaimedOverflow.
const maxUnclaimedMMIO = 1024

// UnclaimedOverflow is the key under which UnclaimedMMIO counts accesses to
// addresses beyond the first 1024 distinct ones.
const UnclaimedOverflow = ^uint64(0)

// entry is one registered range, [base, last], in a snapshot table.
type entry[D any] struct {
	base, last uint64
	dev        D
	name       string
}

// table is an immutable snapshot of one address space's registrations,
// sorted by base with no overlaps. A new registration builds a new table.
type table[D any] struct {
	entries []entry[D]
}

// find returns the entry containing addr. It is a hand-written binary search
// rather than sort.Search so the hot path has no closure call per probe.
func (t *table[D]) find(addr uint64) (*entry[D], bool) {
	lo, hi := 0, len(t.entries)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if t.entries[mid].base <= addr {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	// lo is the first entry whose base is above addr.
	if lo == 0 {
		return nil, false
	}
	e := &t.entries[lo-1]
	if addr > e.last {
		return nil, false
	}
	return e, true
}

// with returns a copy of t with e inserted, or an error naming the entry e
// overlaps.
func (t *table[D]) with(e entry[D], space string, width int) (*table[D], error) {
	i := sort.Search(len(t.entries), func(i int) bool { return t.entries[i].base > e.base })
	for _, j := range []int{i - 1, i} {
		if j < 0 || j >= len(t.entries) {
			continue
		}
		o := t.entries[j]
		if e.base <= o.last && o.base <= e.last {
			return nil, fmt.Errorf("register %s range %#0*x-%#0*x %q: %w: %#0*x-%#0*x %q",
				space, width, e.base, width, e.last, e.name, ErrOverlap, width, o.base, width, o.last, o.name)
		}
	}
	n := &table[D]{entries: make([]entry[D], 0, len(t.entries)+1)}
	n.entries = append(n.entries, t.entries[:i]...)
	n.entries = append(n.entries, e)
	n.entries = append(n.entries, t.entries[i:]...)
	return n, nil
}

// Bus routes port I/O and MMIO accesses to registered devices. Port and MMIO
// addresses are separate spaces. Accesses nobody claims never fail the guest:
// reads return all-ones (what an ISA bus with nothing on it floats to) and
// writes are dropped; both are counted per address for a debug log.
//
// An access is routed by its first byte: a device owns every access that
// starts inside its range, even one that runs past its end.
//
// The zero Bus is not usable; call NewBus.
type Bus struct {
	// regMu serialises registrations (copy-on-write of the tables).
	regMu sync.Mutex
	// ports and mmio are replaced whole under regMu and read lock-free.
	ports atomic.Pointer[table[PortDevice]]
	mmio  atomic.Pointer[table[MMIODevice]]

	// countMu protects the unclaimed counters. Unclaimed accesses are
	// probes, not the hot path; a map keeps memory proportional to what the
	// guest actually touched.
	countMu         sync.Mutex
	unclaimedPorts  map[uint16]uint64
	unclaimedMMIO   map[uint64]uint64
	unclaimedMMIOOv uint64
}

// NewBus returns an empty Bus.
func NewBus() *Bus {
	b := &Bus{
		unclaimedPorts: make(map[uint16]uint64),
		unclaimedMMIO:  make(map[uint64]uint64),
	}
	b.ports.Store(&table[PortDevice]{})
	b.mmio.Store(&table[MMIODevice]{})
	return b
}

// RegisterPort claims ports [base, base+size) for d. It refuses an empty
// range, one past port 0xffff, a nil device, and any overlap with an earlier
// registration (ErrOverlap, naming both ranges).
func (b *Bus) RegisterPort(base, size uint16, d PortDevice, name string) error {
	last := uint64(base) + uint64(size) - 1
	switch {
	case d == nil:
		return fmt.Errorf("register port range %#04x+%d %q: %w: nil device", base, size, name, ErrInvalidRange)
	case size == 0:
		return fmt.Errorf("register port range %#04x+0 %q: %w: size 0", base, name, ErrInvalidRange)
	case last > 0xffff:
		return fmt.Errorf("register port range %#04x+%d %q: %w: ends past port 0xffff", base, size, name, ErrInvalidRange)
	}
	b.regMu.Lock()
	defer b.regMu.Unlock()
	t, err := b.ports.Load().with(entry[PortDevice]{base: uint64(base), last: last, dev: d, name: name}, "port", 4)
	if err != nil {
		return err
	}
	b.ports.Store(t)
	return nil
}

// RegisterMMIO claims guest-physical [base, base+size) for d, with the same
// refusals as RegisterPort (a range may end at the very top of the address
// space, but not wrap around it).
func (b *Bus) RegisterMMIO(base, size uint64, d MMIODevice, name string) error {
	last := base + size - 1
	switch {
	case d == nil:
		return fmt.Errorf("register MMIO range %#x+%#x %q: %w: nil device", base, size, name, ErrInvalidRange)
	case size == 0:
		return fmt.Errorf("register MMIO range %#x+0 %q: %w: size 0", base, name, ErrInvalidRange)
	case last < base:
		return fmt.Errorf("register MMIO range %#x+%#x %q: %w: wraps past the top of the address space", base, size, name, ErrInvalidRange)
	}
	b.regMu.Lock()
	defer b.regMu.Unlock()
	t, err := b.mmio.Load().with(entry[MMIODevice]{base: base, last: last, dev: d, name: name}, "MMIO", 0)
	if err != nil {
		return err
	}
	b.mmio.Store(t)
	return nil
}

// PortIn reads from port into data, or fills data with 0xff when no device
// claims port.
func (b *Bus) PortIn(port uint16, data []byte) {
	if e, ok := b.ports.Load().find(uint64(port)); ok {
		e.dev.PortIn(port, data)
		return
	}
	fillOnes(data)
	b.countPort(port)
}

// PortOut writes data to port, or drops it when no device claims port.
func (b *Bus) PortOut(port uint16, data []byte) {
	if e, ok := b.ports.Load().find(uint64(port)); ok {
		e.dev.PortOut(port, data)
		return
	}
	b.countPort(port)
}

// MMIORead reads from guest-physical addr into data, or fills data with 0xff
// when no device claims addr.
func (b *Bus) MMIORead(addr uint64, data []byte) {
	if e, ok := b.mmio.Load().find(addr); ok {
		e.dev.MMIORead(addr, data)
		return
	}
	fillOnes(data)
	b.countMMIO(addr)
}

// MMIOWrite writes data to guest-physical addr, or drops it when no device
// claims addr.
func (b *Bus) MMIOWrite(addr uint64, data []byte) {
	if e, ok := b.mmio.Load().find(addr); ok {
		e.dev.MMIOWrite(addr, data)
		return
	}
	b.countMMIO(addr)
}

// Unclaimed returns a copy of the per-port counts of accesses (reads and
// writes) that no device claimed.
func (b *Bus) Unclaimed() map[uint16]uint64 {
	b.countMu.Lock()
	defer b.countMu.Unlock()
	m := make(map[uint16]uint64, len(b.unclaimedPorts))
	for k, v := range b.unclaimedPorts {
		m[k] = v
	}
	return m
}

// UnclaimedMMIO returns a copy of the per-address counts of unclaimed MMIO
// accesses. Only the first 1024 distinct addresses are counted by address;
// the rest are summed under UnclaimedOverflow.
func (b *Bus) UnclaimedMMIO() map[uint64]uint64 {
	b.countMu.Lock()
	defer b.countMu.Unlock()
	m := make(map[uint64]uint64, len(b.unclaimedMMIO)+1)
	for k, v := range b.unclaimedMMIO {
		m[k] = v
	}
	if b.unclaimedMMIOOv != 0 {
		m[UnclaimedOverflow] += b.unclaimedMMIOOv
	}
	return m
}

func (b *Bus) countPort(port uint16) {
	b.countMu.Lock()
	b.unclaimedPorts[port]++
	b.countMu.Unlock()
}

func (b *Bus) countMMIO(addr uint64) {
	b.countMu.Lock()
	if _, ok := b.unclaimedMMIO[addr]; ok || len(b.unclaimedMMIO) < maxUnclaimedMMIO {
		b.unclaimedMMIO[addr]++
	} else {
		b.unclaimedMMIOOv++
	}
	b.countMu.Unlock()
}

// fillOnes sets every byte of data to 0xff.
func fillOnes(data []byte) {
	for i := range data {
		data[i] = 0xff
	}
}
