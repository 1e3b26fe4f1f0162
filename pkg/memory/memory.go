// Package memory owns guest RAM: anonymous mappings outside the Go heap,
// laid out around the 32-bit MMIO hole, with every guest-physical access
// bounds-checked so that an address chosen by the guest can never make vmmd
// touch memory it does not own.
package memory

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Guest-physical layout constants. RAM fills [0, HoleStart); the range
// [HoleStart, 4 GiB) is the MMIO hole (LAPIC, IOAPIC, virtio-mmio windows);
// RAM beyond HoleStart continues at HighStart.
const (
	HoleStart = 0xC000_0000
	HighStart = 1 << 32
	PageSize  = 4096

	// MinSize is the smallest guest vmmd accepts: the boot area below
	// 1 MiB, a kernel and a little working memory.
	MinSize = 16 << 20
	// MaxSize caps the guest at 1 TiB; the host's own limit is checked by
	// the caller, which knows how much memory the host has.
	MaxSize = 1 << 40
)

// ErrOutOfRange is returned (wrapped) when a guest-physical range is not
// entirely inside one RAM region.
var ErrOutOfRange = errors.New("guest-physical range outside guest RAM")

// Region is a contiguous range of guest RAM.
type Region struct {
	GPA  uint64
	Size uint64
}

// End returns the first guest-physical address after the region.
func (r Region) End() uint64 { return r.GPA + r.Size }

type slot struct {
	Region
	host  []byte // mmap'ed, len == Size
	dirty dirtyBitmap
}

// Memory is the guest's RAM. It is safe for concurrent use: the mappings
// never move while the Memory is open, and the bytes themselves are shared
// with the guest, which is never synchronised with anyway.
type Memory struct {
	size  uint64
	slots []slot
}

// New maps size bytes of guest RAM. size must be a multiple of the page size
// and within [MinSize, MaxSize].
func New(size uint64) (*Memory, error) {
	if size < MinSize {
		return nil, fmt.Errorf("guest memory %s is too small: vmmd needs at least %s", FormatSize(size), FormatSize(MinSize))
	}
	if size > MaxSize {
		return nil, fmt.Errorf("guest memory %s is too large: vmmd supports at most %s", FormatSize(size), FormatSize(MaxSize))
	}
	if size%PageSize != 0 {
		return nil, fmt.Errorf("guest memory %d bytes is not a multiple of the %d-byte page size", size, PageSize)
	}
	m := &Memory{size: size}
	regions := []Region{{GPA: 0, Size: min(size, HoleStart)}}
	if size > HoleStart {
		regions = append(regions, Region{GPA: HighStart, Size: size - HoleStart})
	}
	for _, r := range regions {
		// MAP_NORESERVE: a large, mostly untouched guest must not be refused
		// by overcommit accounting; pages are allocated as the guest touches them.
		b, err := unix.Mmap(-1, 0, int(r.Size), unix.PROT_READ|unix.PROT_WRITE,
			unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("map %s of guest RAM at %#x: %w", FormatSize(r.Size), r.GPA, err)
		}
		// Guest RAM must not be copied into a child if vmmd ever forks a
		// helper; failure is harmless, so it is ignored.
		_ = unix.Madvise(b, unix.MADV_DONTFORK)
		// Transparent huge pages, as QEMU asks for: fewer TLB misses for the
		// guest and cheaper large copies by device emulation. Advisory only.
		_ = unix.Madvise(b, unix.MADV_HUGEPAGE)
		m.slots = append(m.slots, slot{Region: r, host: b, dirty: newDirtyBitmap(r.Size)})
	}
	return m, nil
}

// Size returns the guest RAM size in bytes.
func (m *Memory) Size() uint64 { return m.size }

// Regions returns the RAM regions in ascending guest-physical order.
func (m *Memory) Regions() []Region {
	out := make([]Region, len(m.slots))
	for i, s := range m.slots {
		out[i] = s.Region
	}
	return out
}

// Slice returns the host bytes backing [gpa, gpa+n). The range must lie in
// one region. The slice aliases guest memory: the guest may change it at any
// time, so callers copy what they validate before using it.
func (m *Memory) Slice(gpa, n uint64) ([]byte, error) {
	for i := range m.slots {
		s := &m.slots[i]
		if gpa >= s.GPA && gpa-s.GPA <= s.Size && n <= s.Size-(gpa-s.GPA) {
			off := gpa - s.GPA
			return s.host[off : off+n : off+n], nil
		}
	}
	return nil, fmt.Errorf("%w: [%#x, +%#x)", ErrOutOfRange, gpa, n)
}

// Read copies guest memory at gpa into p.
func (m *Memory) Read(gpa uint64, p []byte) error {
	b, err := m.Slice(gpa, uint64(len(p)))
	if err != nil {
		return fmt.Errorf("read guest memory: %w", err)
	}
	copy(p, b)
	return nil
}

// Write copies p into guest memory at gpa.
func (m *Memory) Write(gpa uint64, p []byte) error {
	b, err := m.Slice(gpa, uint64(len(p)))
	if err != nil {
		return fmt.Errorf("write guest memory: %w", err)
	}
	copy(b, p)
	return nil
}

// Discard drops the contents of all guest RAM: every page reads as zero
// again and gives its memory back. For a VM that will receive its RAM
// from an incoming migration, so that nothing but the stream is in it.
func (m *Memory) Discard() error {
	for _, s := range m.slots {
		if err := unix.Madvise(s.host, unix.MADV_DONTNEED); err != nil {
			return fmt.Errorf("discard guest RAM at %#x: %w", s.GPA, err)
		}
	}
	return nil
}

// Close unmaps guest RAM. The Memory must not be used afterwards.
func (m *Memory) Close() error {
	var errs []error
	for _, s := range m.slots {
		if s.host != nil {
			if err := unix.Munmap(s.host); err != nil {
				errs = append(errs, fmt.Errorf("unmap guest RAM at %#x: %w", s.GPA, err))
			}
		}
	}
	m.slots = nil
	return errors.Join(errs...)
}
