package boot

// Fixed guest-physical addresses of everything Load writes. See the package
// documentation for the whole map.
const (
	// BDAAddr is the BIOS data area; Load sets the EBDA segment and the base
	// memory size there so kernels that look for the EBDA through it find it.
	BDAAddr = 0x400
	// GDTAddr is where the boot GDT lives.
	GDTAddr = 0x500
	// StartInfoAddr is the PVH hvm_start_info; RBX points here at PVH entry.
	StartInfoAddr = 0x6000
	// PVHMemmapAddr is the PVH memory map, right after hvm_start_info.
	PVHMemmapAddr = 0x6040
	// PVHModlistAddr is the PVH module list.
	PVHModlistAddr = 0x6800
	// BootParamsAddr is the bzImage boot_params (zero page); RSI points here.
	BootParamsAddr = 0x7000
	// BzImageStack is the initial RSP for bzImage entry.
	BzImageStack = 0x8FF0
	// PML4Addr is the top-level page table for long-mode entry (CR3).
	PML4Addr = 0x9000
	// PDPTAddr is the page-directory-pointer table.
	PDPTAddr = 0xA000
	// PDAddr is the first of four page directories (0xB000-0xEFFF).
	PDAddr = 0xB000
	// CmdlineAddr is where the NUL-terminated kernel command line is written.
	CmdlineAddr = 0x20000
	// EBDAAddr is the extended BIOS data area holding the MP tables.
	EBDAAddr = 0x9FC00
	// EBDAEnd is the end of the EBDA (start of the legacy VGA hole).
	EBDAEnd = 0xA0000
	// BIOSAreaAddr is the start of the reserved BIOS area below 1 MiB.
	BIOSAreaAddr = 0xF0000
	// HighMemAddr is 1 MiB: the bzImage load address, and the lowest
	// address of an initrd.
	HighMemAddr = 0x100000
)

// Segment selectors of the boot GDT.
const (
	// CodeSelector is the flat code segment (__BOOT_CS for bzImage).
	CodeSelector = 0x10
	// DataSelector is the flat data segment (__BOOT_DS for bzImage).
	DataSelector = 0x18
	// TSSSelector is a 32-bit busy TSS (base 0, limit 0x67) for TR.
	TSSSelector = 0x20
)

const (
	pageSize = 0x1000
	// cmdlineLimit is the room between CmdlineAddr and the EBDA, whatever the
	// kernel claims to accept.
	cmdlineLimit = EBDAAddr - CmdlineAddr
	// pvhCmdlineMax is the longest PVH command line accepted (Linux's
	// COMMAND_LINE_SIZE is 2048 by default; PVH itself sets no limit).
	pvhCmdlineMax = 4095
)

func alignUp(x, a uint64) uint64   { return (x + a - 1) &^ (a - 1) }
func alignDown(x, a uint64) uint64 { return x &^ (a - 1) }
