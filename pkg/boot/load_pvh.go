package boot

import "fmt"

// pvhInitrdLimit is where a PVH initrd must end: the start info holds 64-bit
// addresses, but a 32-bit entry can only reach the first 4 GiB.
const pvhInitrdLimit = 1 << 32

// reservedArea is a guest-physical range below 1 MiB a PVH segment must not
// overlap.
type reservedArea struct {
	start, end uint64
	what       string
}

// pvhReserved lists what Load writes for a PVH boot below 1 MiB, and the
// part of the first MiB the memory map does not give the guest. Everything
// else in RAM is free for PT_LOAD segments (an AP trampoline, say).
func pvhReserved() []reservedArea {
	return []reservedArea{
		{0, pageSize, "real-mode IVT, BIOS data area and GDT"},
		{StartInfoAddr, StartInfoAddr + startInfoArea, "hvm_start_info, memmap and modlist"},
		{CmdlineAddr, CmdlineAddr + pvhCmdlineMax + 1, "command line"},
		{EBDAAddr, HighMemAddr, "EBDA and BIOS area"},
	}
}

// loadPVH loads a PVH ELF for its 32-bit entry point.
func loadPVH(mem Memory, l *ramLayout, img *pvhImage, cfg Config, cpus int) (*Entry, error) {
	// The initrd goes above the kernel and never below 1 MiB.
	kernelEnd := uint64(HighMemAddr)
	for _, s := range img.segments {
		end := s.paddr + s.memsz
		for _, r := range pvhReserved() {
			if s.paddr < r.end && end > r.start {
				return nil, fmt.Errorf("PT_LOAD segment %d [%#x, %#x) overlaps the %s at [%#x, %#x)", s.index, s.paddr, end, r.what, r.start, r.end)
			}
		}
		if !l.inRAM(s.paddr, s.memsz) {
			return nil, fmt.Errorf("PT_LOAD segment %d [%#x, %#x) does not fit in %s", s.index, s.paddr, end, l.describe())
		}
		kernelEnd = max(kernelEnd, end)
	}
	cmdline, err := cmdlineBytes(cfg.Cmdline, pvhCmdlineMax, "vmmd's PVH limit")
	if err != nil {
		return nil, err
	}
	si := startInfo{
		cmdline: CmdlineAddr,
		rsdp:    l.rsdp,
		memmap:  l.memmap,
	}
	if len(cfg.Initrd) > 0 {
		addr, err := placeInitrd(uint64(len(cfg.Initrd)), kernelEnd, min(uint64(pvhInitrdLimit), l.lowEnd))
		if err != nil {
			return nil, err
		}
		si.modules = append(si.modules, pvhModule{addr: addr, size: uint64(len(cfg.Initrd))})
	}
	info, err := startInfoBytes(si)
	if err != nil {
		return nil, err
	}
	if err := (lowArea{mode: Mode32, cpus: cpus, cmdline: cmdline}).write(mem); err != nil {
		return nil, err
	}
	if err := write(mem, StartInfoAddr, info, "hvm_start_info"); err != nil {
		return nil, err
	}
	for _, s := range img.segments {
		what := fmt.Sprintf("PT_LOAD segment %d", s.index)
		if err := write(mem, s.paddr, s.data, what); err != nil {
			return nil, err
		}
		if err := zero(mem, s.paddr+uint64(len(s.data)), s.memsz-uint64(len(s.data)), what+" BSS"); err != nil {
			return nil, err
		}
	}
	for _, m := range si.modules {
		if err := write(mem, m.addr, cfg.Initrd, "initrd"); err != nil {
			return nil, err
		}
	}
	return &Entry{
		Kind:         KindPVH,
		Mode:         Mode32,
		RIP:          img.entry,
		RBX:          StartInfoAddr,
		CR0:          cr0PE | cr0ET,
		GDTBase:      GDTAddr,
		GDTLimit:     GDTLimit,
		CodeSelector: CodeSelector,
		DataSelector: DataSelector,
		TSSSelector:  TSSSelector,
	}, nil
}
