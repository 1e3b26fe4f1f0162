package boot

import (
	"fmt"

	"github.com/vmmd/vmmd/pkg/memory"
)

// Memory is the guest RAM Load writes into. *memory.Memory implements it.
type Memory interface {
	Read(gpa uint64, p []byte) error
	Write(gpa uint64, p []byte) error
	Regions() []memory.Region
}

// Memory map entry types, shared by e820 and the PVH memmap
// (XEN_HVM_MEMMAP_TYPE_RAM / _RESERVED use the same values).
const (
	memTypeRAM      = 1
	memTypeReserved = 2
)

// memEntry is one memory map entry as both protocols describe it.
type memEntry struct {
	Addr, Size uint64
	Type       uint32
}

// ramLayout is the validated view of guest RAM that placement decisions use.
type ramLayout struct {
	regions []memory.Region
	// lowEnd is the end of the RAM region that starts at 0, capped at the
	// MMIO hole: the kernel, its boot data and the initrd all live below it.
	lowEnd uint64
	memmap []memEntry
	// rsdp is where the ACPI RSDP will be, 0 without ACPI tables; the boot
	// information of either protocol announces it.
	rsdp uint64
}

// newRAMLayout checks the RAM regions and builds the guest memory map.
func newRAMLayout(regions []memory.Region) (*ramLayout, error) {
	if len(regions) == 0 {
		return nil, fmt.Errorf("guest memory has no RAM regions")
	}
	var prevEnd uint64
	for i, r := range regions {
		if r.Size == 0 {
			return nil, fmt.Errorf("guest RAM region %d at %#x is empty", i, r.GPA)
		}
		if r.GPA+r.Size < r.GPA {
			return nil, fmt.Errorf("guest RAM region %d [%#x, +%#x) wraps around the address space", i, r.GPA, r.Size)
		}
		if i > 0 && r.GPA < prevEnd {
			return nil, fmt.Errorf("guest RAM region %d at %#x overlaps or precedes the region before it (ends %#x)", i, r.GPA, prevEnd)
		}
		prevEnd = r.GPA + r.Size
	}
	low := regions[0]
	if low.GPA != 0 {
		return nil, fmt.Errorf("guest RAM starts at %#x: the boot protocols need RAM at address 0", low.GPA)
	}
	lowEnd := min(low.Size, memory.HoleStart)
	if lowEnd <= HighMemAddr {
		return nil, fmt.Errorf("guest RAM below the MMIO hole is %#x bytes: the kernel needs RAM above 1 MiB", lowEnd)
	}
	mm := []memEntry{
		{0, EBDAAddr, memTypeRAM},
		{EBDAAddr, EBDAEnd - EBDAAddr, memTypeReserved},
		{BIOSAreaAddr, HighMemAddr - BIOSAreaAddr, memTypeReserved},
		{HighMemAddr, lowEnd - HighMemAddr, memTypeRAM},
	}
	// RAM of the low region that overlaps the MMIO hole (never the case with
	// memory.New) is not described: the guest must not use it.
	for _, r := range regions[1:] {
		mm = append(mm, memEntry{r.GPA, r.Size, memTypeRAM})
	}
	return &ramLayout{regions: regions, lowEnd: lowEnd, memmap: mm}, nil
}

// inRAM reports whether [addr, addr+size) lies inside one RAM region.
func (l *ramLayout) inRAM(addr, size uint64) bool {
	if addr+size < addr {
		return false
	}
	for _, r := range l.regions {
		if addr >= r.GPA && addr+size <= r.GPA+r.Size {
			return true
		}
	}
	return false
}

// describe renders the RAM regions for error messages.
func (l *ramLayout) describe() string {
	s := ""
	for i, r := range l.regions {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("[%#x, %#x)", r.GPA, r.GPA+r.Size)
	}
	return "guest RAM " + s
}
