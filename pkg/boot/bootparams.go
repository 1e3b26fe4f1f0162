package boot

import (
	"encoding/binary"
	"fmt"
)

// Offsets in boot_params outside the setup header
// (Documentation/arch/x86/zero-page.rst).
const (
	bpAcpiRsdpAddr    = 0x070
	bpExtRamdiskImage = 0x0C0
	bpExtRamdiskSize  = 0x0C4
	bpExtCmdLinePtr   = 0x0C8
	bpE820Entries     = 0x1E8
	bpE820Table       = 0x2D0
	bpE820Max         = 128
	e820EntrySize     = 20
	bootParamsSize    = 0x1000

	// loaderUndefined is type_of_loader 0xFF: a boot loader with no
	// assigned id.
	loaderUndefined = 0xFF
	// heapEnd is heap_end_ptr: the end of the setup heap, relative to the
	// real-mode code; the 64-bit entry does not use it, but CAN_USE_HEAP
	// promises a valid value.
	heapEnd = 0xFE00
	// vidModeNormal asks for the current video mode ("normal").
	vidModeNormal = 0xFFFF
)

// bootParams is what boot_params says beyond the kernel's own header.
type bootParams struct {
	cmdline    uint64
	initrd     uint64
	initrdSize uint64
	// rsdp is the ACPI RSDP address (acpi_rsdp_addr, protocol 2.14); 0 until
	// vmmd writes ACPI tables.
	rsdp   uint64
	memmap []memEntry
}

// bootParamsBytes builds the zero page for a bzImage.
func bootParamsBytes(bz *bzImage, p bootParams) ([]byte, error) {
	if len(p.memmap) > bpE820Max {
		return nil, fmt.Errorf("boot_params: %d e820 entries, at most %d fit", len(p.memmap), bpE820Max)
	}
	le := binary.LittleEndian
	b := make([]byte, bootParamsSize)
	// The kernel's setup header goes in verbatim: fields the loader does not
	// set keep the kernel's own values, as the protocol asks. The sentinel
	// byte (0x1EF) stays 0, so the kernel trusts the fields below 0x1F1.
	copy(b[hdrStart:], bz.header)
	le.PutUint16(b[hdrVidMode:], vidModeNormal)
	b[hdrTypeOfLoader] = loaderUndefined
	b[hdrLoadflags] |= canUseHeap
	le.PutUint16(b[hdrHeapEndPtr:], heapEnd)
	le.PutUint32(b[hdrCmdLinePtr:], uint32(p.cmdline))
	le.PutUint32(b[bpExtCmdLinePtr:], uint32(p.cmdline>>32))
	le.PutUint32(b[hdrRamdiskImage:], uint32(p.initrd))
	le.PutUint32(b[bpExtRamdiskImage:], uint32(p.initrd>>32))
	le.PutUint32(b[hdrRamdiskSize:], uint32(p.initrdSize))
	le.PutUint32(b[bpExtRamdiskSize:], uint32(p.initrdSize>>32))
	le.PutUint64(b[bpAcpiRsdpAddr:], p.rsdp)
	b[bpE820Entries] = byte(len(p.memmap))
	for i, e := range p.memmap {
		o := bpE820Table + i*e820EntrySize
		le.PutUint64(b[o:], e.Addr)
		le.PutUint64(b[o+8:], e.Size)
		le.PutUint32(b[o+16:], e.Type)
	}
	return b, nil
}
