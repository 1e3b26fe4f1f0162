package boot

import "fmt"

// loadBzImage loads a bzImage for its 64-bit entry point.
func loadBzImage(mem Memory, l *ramLayout, bz *bzImage, cfg Config, cpus int) (*Entry, error) {
	if end := bz.footprintEnd(); end > l.lowEnd {
		return nil, fmt.Errorf("kernel needs guest RAM up to %#x (%d bytes at 1 MiB, init_size %#x) but RAM below the MMIO hole ends at %#x",
			end, len(bz.kernel), bz.initSize, l.lowEnd)
	}
	cmdline, err := cmdlineBytes(cfg.Cmdline, bz.cmdlineMax, "the kernel's cmdline_size")
	if err != nil {
		return nil, err
	}
	var initrd uint64
	if len(cfg.Initrd) > 0 {
		limit := min(bz.initrdAddrMax+1, l.lowEnd)
		if initrd, err = placeInitrd(uint64(len(cfg.Initrd)), bz.footprintEnd(), limit); err != nil {
			return nil, err
		}
	}
	bp, err := bootParamsBytes(bz, bootParams{
		cmdline:    CmdlineAddr,
		initrd:     initrd,
		initrdSize: uint64(len(cfg.Initrd)),
		rsdp:       l.rsdp,
		memmap:     l.memmap,
	})
	if err != nil {
		return nil, err
	}
	if err := (lowArea{mode: Mode64, cpus: cpus, cmdline: cmdline}).write(mem); err != nil {
		return nil, err
	}
	if err := write(mem, PML4Addr, pageTableBytes(), "page tables"); err != nil {
		return nil, err
	}
	if err := write(mem, BootParamsAddr, bp, "boot_params"); err != nil {
		return nil, err
	}
	if err := write(mem, HighMemAddr, bz.kernel, "kernel"); err != nil {
		return nil, err
	}
	if len(cfg.Initrd) > 0 {
		if err := write(mem, initrd, cfg.Initrd, "initrd"); err != nil {
			return nil, err
		}
	}
	return &Entry{
		Kind:         KindBzImage,
		Mode:         Mode64,
		RIP:          HighMemAddr + entry64Offset,
		RSP:          BzImageStack,
		RSI:          BootParamsAddr,
		CR0:          cr0PE | cr0ET | cr0PG,
		CR3:          PML4Addr,
		CR4:          cr4PAE,
		EFER:         eferLME | eferLMA,
		GDTBase:      GDTAddr,
		GDTLimit:     GDTLimit,
		CodeSelector: CodeSelector,
		DataSelector: DataSelector,
		TSSSelector:  TSSSelector,
	}, nil
}
