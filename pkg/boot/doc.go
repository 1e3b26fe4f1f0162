// Package boot loads a guest kernel into guest memory and describes the
// machine to it, for the two x86 boot protocols vmmd supports:
//
//   - PVH: an ELF kernel carrying a XEN_ELFNOTE_PHYS32_ENTRY note is loaded
//     segment by segment at its physical addresses and entered in 32-bit
//     protected mode with paging off, EBX pointing at an hvm_start_info.
//   - bzImage: the Linux boot protocol (2.12 or newer with XLF_KERNEL_64). The
//     protected-mode kernel is loaded at 1 MiB and entered at its 64-bit entry
//     point (load address + 0x200) in long mode, RSI pointing at boot_params.
//
// Load writes everything the boot vCPU needs and returns its register state
// as an Entry; it never starts a vCPU.
//
// # Guest physical layout
//
// The layout is fixed; the test guest relies on parts of it.
//
//	0x00400 - 0x004FF  BIOS data area: EBDA segment (0x40E), base memory KiB (0x413)
//	0x00500            GDT: 0x00 null, 0x08 unused, 0x10 code, 0x18 data, 0x20 TSS
//	                   (code is 64-bit for bzImage, 32-bit for PVH)
//	0x06000            hvm_start_info (PVH), 56 bytes
//	0x06040            PVH memory map (hvm_memmap_table_entry[])
//	0x06800            PVH module list (hvm_modlist_entry[]; module 0 = initrd)
//	0x07000 - 0x07FFF  boot_params, the "zero page" (bzImage)
//	0x08FF0            initial RSP for bzImage (stack below the page tables)
//	0x09000            PML4 (bzImage)
//	0x0A000            PDPT (bzImage)
//	0x0B000 - 0x0EFFF  4 page directories: identity map of 0-4 GiB in 2 MiB pages
//	                   (never 1 GiB pages: they triple-fault on PVM hosts)
//	0x20000            kernel command line, NUL-terminated
//	0x9FC00 - 0x9FFFF  EBDA: MP floating pointer, then the MP configuration table
//	0xF0000 - 0xFFFFF  reserved (BIOS area), left empty
//	0x100000           kernel: the bzImage protected-mode part; PVH segments go
//	                   at their p_paddr anywhere in RAM that avoids the first
//	                   page, 0x6000-0x6FFF, 0x20000-0x20FFF and 0x9FC00-1 MiB
//	                   (so a guest may link an AP trampoline at 0x8000)
//	top of low RAM     initrd, page aligned, as high as the protocol allows
//
// The memory map handed to the guest (e820 for bzImage, the hvm_start_info
// memmap for PVH) is the same for both protocols:
//
//	RAM       [0, 0x9FC00)
//	reserved  [0x9FC00, 0xA0000)          EBDA
//	reserved  [0xF0000, 0x100000)         BIOS area
//	RAM       [0x100000, min(size, 3 GiB))
//	RAM       [4 GiB, 4 GiB + size - 3 GiB)  only for guests bigger than 3 GiB
//
// Like Firecracker, the MMIO hole [3 GiB, 4 GiB) is not listed at all.
package boot
