package memory

import (
	"fmt"
	"sync/atomic"
)

// KVM's dirty log sees only writes the guest's CPUs make. Pages that device
// emulation writes into guest memory (virtio used rings, read data) are
// recorded here instead; migration ORs both. The bitmap is lock-free because
// device workers mark pages concurrently with the migration thread taking them.
type dirtyBitmap struct {
	words []atomic.Uint64
}

func newDirtyBitmap(size uint64) dirtyBitmap {
	pages := (size + PageSize - 1) / PageSize
	return dirtyBitmap{words: make([]atomic.Uint64, (pages+63)/64)}
}

func (b *dirtyBitmap) mark(first, last uint64) {
	for p := first; p <= last; p++ {
		b.words[p/64].Or(1 << (p % 64))
	}
}

// MarkDirty records that device emulation wrote [gpa, gpa+n). Addresses
// outside RAM are an error and mark nothing.
func (m *Memory) MarkDirty(gpa, n uint64) error {
	if n == 0 {
		return nil
	}
	for i := range m.slots {
		s := &m.slots[i]
		if gpa >= s.GPA && gpa-s.GPA <= s.Size && n <= s.Size-(gpa-s.GPA) {
			off := gpa - s.GPA
			s.dirty.mark(off/PageSize, (off+n-1)/PageSize)
			return nil
		}
	}
	return fmt.Errorf("mark dirty: %w: [%#x, +%#x)", ErrOutOfRange, gpa, n)
}

// TakeDirty ORs region i's device-dirty bits into dst (one bit per page,
// as KVM_GET_DIRTY_LOG lays them out) and clears them. dst must be at least
// DirtyWords(i) long.
func (m *Memory) TakeDirty(i int, dst []uint64) error {
	if i < 0 || i >= len(m.slots) {
		return fmt.Errorf("take dirty bitmap: no region %d", i)
	}
	w := m.slots[i].dirty.words
	if len(dst) < len(w) {
		return fmt.Errorf("take dirty bitmap: %d words given, region %d needs %d", len(dst), i, len(w))
	}
	for j := range w {
		dst[j] |= w[j].Swap(0)
	}
	return nil
}

// DirtyWords returns how many 64-bit words region i's dirty bitmap has.
func (m *Memory) DirtyWords(i int) int { return len(m.slots[i].dirty.words) }
