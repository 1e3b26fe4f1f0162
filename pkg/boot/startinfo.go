package boot

import (
	"encoding/binary"
	"fmt"
)

// hvm_start_info, version 1 (xen/include/public/arch-x86/hvm/start_info.h).
const (
	startInfoMagic   = 0x336ec578
	startInfoVersion = 1
	startInfoSize    = 56
	memmapEntrySize  = 24 // hvm_memmap_table_entry
	modlistEntrySize = 32 // hvm_modlist_entry
	// startInfoArea is the page holding start info, memmap and modlist.
	startInfoArea = 0x1000

	memmapMax  = (PVHModlistAddr - PVHMemmapAddr) / memmapEntrySize
	modlistMax = (StartInfoAddr + startInfoArea - PVHModlistAddr) / modlistEntrySize
)

// pvhModule is one hvm_modlist_entry.
type pvhModule struct {
	addr, size uint64
}

// startInfo is what hvm_start_info describes.
type startInfo struct {
	cmdline uint64
	// rsdp is the ACPI RSDP address (rsdp_paddr); 0 until vmmd writes ACPI
	// tables, which tells the kernel to look for ACPI itself.
	rsdp    uint64
	memmap  []memEntry
	modules []pvhModule
}

// startInfoBytes builds the page at StartInfoAddr: hvm_start_info, the
// memory map at PVHMemmapAddr and the module list at PVHModlistAddr.
func startInfoBytes(si startInfo) ([]byte, error) {
	if len(si.memmap) > memmapMax {
		return nil, fmt.Errorf("hvm_start_info: %d memmap entries, at most %d fit", len(si.memmap), memmapMax)
	}
	if len(si.modules) > modlistMax {
		return nil, fmt.Errorf("hvm_start_info: %d modules, at most %d fit", len(si.modules), modlistMax)
	}
	le := binary.LittleEndian
	b := make([]byte, startInfoArea)
	le.PutUint32(b[0:], startInfoMagic)
	le.PutUint32(b[4:], startInfoVersion)
	le.PutUint32(b[8:], 0) // flags
	le.PutUint32(b[12:], uint32(len(si.modules)))
	if len(si.modules) > 0 {
		le.PutUint64(b[16:], PVHModlistAddr)
	}
	le.PutUint64(b[24:], si.cmdline)
	le.PutUint64(b[32:], si.rsdp)
	le.PutUint64(b[40:], PVHMemmapAddr)
	le.PutUint32(b[48:], uint32(len(si.memmap)))
	for i, e := range si.memmap {
		o := PVHMemmapAddr - StartInfoAddr + i*memmapEntrySize
		le.PutUint64(b[o:], e.Addr)
		le.PutUint64(b[o+8:], e.Size)
		le.PutUint32(b[o+16:], e.Type)
	}
	for i, m := range si.modules {
		// cmdline_paddr stays 0: modules carry no command line.
		o := PVHModlistAddr - StartInfoAddr + i*modlistEntrySize
		le.PutUint64(b[o:], m.addr)
		le.PutUint64(b[o+8:], m.size)
	}
	return b, nil
}
