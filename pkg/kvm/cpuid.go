package kvm

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// CPUIDEntry mirrors struct kvm_cpuid_entry2.
type CPUIDEntry struct {
	Function uint32
	Index    uint32
	Flags    uint32
	EAX      uint32
	EBX      uint32
	ECX      uint32
	EDX      uint32
	Padding  [3]uint32
}

// CPUID entry flags (KVM_CPUID_FLAG_*).
const (
	// CPUIDFlagSignificantIndex says the entry applies only to its Index.
	CPUIDFlagSignificantIndex uint32 = 1 << 0
	// CPUIDFlagStatefulFunc and CPUIDFlagStateReadNext are for the legacy
	// leaf 2 iteration protocol.
	CPUIDFlagStatefulFunc  uint32 = 1 << 1
	CPUIDFlagStateReadNext uint32 = 1 << 2
)

// CPUID is the entry list of a struct kvm_cpuid2.
type CPUID struct {
	Entries []CPUIDEntry
}

// Find returns the entry for function (and index, when the entry's index is
// significant), or nil if there is none. The pointer aliases c.Entries so
// callers can edit the entry in place.
func (c *CPUID) Find(function, index uint32) *CPUIDEntry {
	if c == nil {
		return nil
	}
	for i := range c.Entries {
		e := &c.Entries[i]
		if e.Function != function {
			continue
		}
		if e.Flags&CPUIDFlagSignificantIndex != 0 && e.Index != index {
			continue
		}
		return e
	}
	return nil
}

// Clone returns a deep copy.
func (c *CPUID) Clone() *CPUID {
	if c == nil {
		return nil
	}
	return &CPUID{Entries: append([]CPUIDEntry(nil), c.Entries...)}
}

const (
	cpuidEntrySize = 40
	// maxCPUIDEntries bounds buffer growth; the kernel's own limit
	// (KVM_MAX_CPUID_ENTRIES) is 256.
	maxCPUIDEntries = 1 << 12
)

// marshalCPUID2 lays out struct kvm_cpuid2 with room for n entries and the
// given entries filled in.
func marshalCPUID2(n int, entries []CPUIDEntry) []byte {
	buf := make([]byte, sizeofCPUID2+n*cpuidEntrySize)
	binary.LittleEndian.PutUint32(buf[0:], uint32(n))
	for i, e := range entries {
		b := buf[sizeofCPUID2+i*cpuidEntrySize:]
		for j, v := range [...]uint32{e.Function, e.Index, e.Flags, e.EAX, e.EBX, e.ECX, e.EDX, e.Padding[0], e.Padding[1], e.Padding[2]} {
			binary.LittleEndian.PutUint32(b[4*j:], v)
		}
	}
	return buf
}

// unmarshalCPUID2 decodes a struct kvm_cpuid2 filled by the kernel.
func unmarshalCPUID2(buf []byte) (*CPUID, error) {
	if len(buf) < sizeofCPUID2 {
		return nil, fmt.Errorf("kvm_cpuid2 buffer of %d bytes is too short", len(buf))
	}
	n := int(binary.LittleEndian.Uint32(buf))
	if n > (len(buf)-sizeofCPUID2)/cpuidEntrySize {
		return nil, fmt.Errorf("kvm_cpuid2 claims %d entries, buffer holds %d", n, (len(buf)-sizeofCPUID2)/cpuidEntrySize)
	}
	c := &CPUID{Entries: make([]CPUIDEntry, n)}
	for i := range c.Entries {
		b := buf[sizeofCPUID2+i*cpuidEntrySize:]
		u := func(j int) uint32 { return binary.LittleEndian.Uint32(b[4*j:]) }
		c.Entries[i] = CPUIDEntry{
			Function: u(0), Index: u(1), Flags: u(2),
			EAX: u(3), EBX: u(4), ECX: u(5), EDX: u(6),
			Padding: [3]uint32{u(7), u(8), u(9)},
		}
	}
	return c, nil
}

// getCPUID2 runs a kvm_cpuid2-returning ioctl (see queryCPUID2).
func getCPUID2(fd int, name string, req uintptr) (*CPUID, error) {
	return queryCPUID2(name, func(buf []byte) error {
		_, err := ioctlBuf(fd, req, buf)
		return err
	})
}

// queryCPUID2 runs a kvm_cpuid2-returning ioctl through do, doubling the
// buffer on E2BIG, and returns exactly the entries the kernel filled in.
//
// Before Linux 6.4 KVM_GET_CPUID2 reports its entry count neither on
// success (nent stays what the caller passed) nor on E2BIG (the kernel
// copies the header back only on success), so a reply whose nent is the
// whole buffer may end in unfilled, zeroed entries: a zero leaf 0 that
// compares unequal to the real one (seen on Debian's 6.1, where every
// migration was refused over "CPUID leaf 0x0.0"). Then the count is the
// smallest buffer the ioctl accepts, E2BIG meaning "too small", found by
// bisection.
func queryCPUID2(name string, do func([]byte) error) (*CPUID, error) {
	n := 128
	tooSmall := -1 // the largest size known to be refused with E2BIG
	var buf []byte
	for {
		buf = marshalCPUID2(n, nil)
		err := do(buf)
		if errors.Is(err, unix.E2BIG) && n < maxCPUIDEntries {
			tooSmall = n
			n *= 2
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		break
	}
	if int(binary.LittleEndian.Uint32(buf)) == n {
		for n-tooSmall > 1 {
			mid := tooSmall + (n-tooSmall)/2
			b := marshalCPUID2(mid, nil)
			err := do(b)
			switch {
			case err == nil:
				n, buf = mid, b
			case errors.Is(err, unix.E2BIG):
				tooSmall = mid
			default:
				return nil, fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	c, err := unmarshalCPUID2(buf)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return c, nil
}
