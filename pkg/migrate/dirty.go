package migrate

import (
	"fmt"
	"math/bits"

	"github.com/vmmd/vmmd/pkg/memory"
)

// dirtySet is the pages still to send: one bit per page per RAM region, the
// layout KVM_GET_DIRTY_LOG uses.
type dirtySet struct {
	regions []memory.Region
	words   [][]uint64
}

func newDirtySet(ram *memory.Memory) dirtySet {
	rs := ram.Regions()
	d := dirtySet{regions: rs, words: make([][]uint64, len(rs))}
	for i, r := range rs {
		pages := (r.Size + pageSize - 1) / pageSize
		d.words[i] = make([]uint64, (pages+63)/64)
	}
	return d
}

// all marks every page.
func (d dirtySet) all() {
	for i, r := range d.regions {
		pages := (r.Size + pageSize - 1) / pageSize
		w := d.words[i]
		for k := range w {
			w[k] = ^uint64(0)
		}
		if rem := pages % 64; rem != 0 {
			w[len(w)-1] = 1<<rem - 1
		}
	}
}

// or adds a region's bitmap (SyncDirty's callback).
func (d dirtySet) or(r memory.Region, b []uint64) error {
	for i, have := range d.regions {
		if have.GPA != r.GPA {
			continue
		}
		w := d.words[i]
		if len(b) > len(w) {
			b = b[:len(w)]
		}
		for k, v := range b {
			w[k] |= v
		}
		return nil
	}
	return fmt.Errorf("dirty log for unknown RAM region at %#x", r.GPA)
}

func (d dirtySet) count() uint64 {
	var n uint64
	for _, w := range d.words {
		for _, v := range w {
			n += uint64(bits.OnesCount64(v))
		}
	}
	return n
}

// take calls fn for every marked page, clearing it first, in address order.
func (d dirtySet) take(fn func(gpa uint64) error) error {
	for i, r := range d.regions {
		w := d.words[i]
		for k := range w {
			v := w[k]
			w[k] = 0
			for v != 0 {
				b := bits.TrailingZeros64(v)
				v &= v - 1
				if err := fn(r.GPA + (uint64(k)*64+uint64(b))*pageSize); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// set marks the page at gpa; outside RAM it does nothing.
func (d dirtySet) set(gpa uint64) {
	if i, k, ok := d.locate(gpa); ok {
		d.words[i][k/64] |= 1 << (k % 64)
	}
}

// has reports whether the page at gpa is marked.
func (d dirtySet) has(gpa uint64) bool {
	i, k, ok := d.locate(gpa)
	return ok && d.words[i][k/64]&(1<<(k%64)) != 0
}

func (d dirtySet) locate(gpa uint64) (region int, page uint64, ok bool) {
	return locatePage(d.regions, gpa)
}

// locatePage finds the region holding gpa and the page's number in it.
func locatePage(regions []memory.Region, gpa uint64) (region int, page uint64, ok bool) {
	for i, r := range regions {
		if gpa >= r.GPA && gpa-r.GPA < r.Size {
			return i, (gpa - r.GPA) / pageSize, true
		}
	}
	return 0, 0, false
}
