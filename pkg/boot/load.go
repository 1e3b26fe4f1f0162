package boot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/vmmd/vmmd/pkg/boot/acpi"
)

// Config is what to boot.
type Config struct {
	// Kernel is the kernel image: a PVH ELF or a bzImage.
	Kernel []byte
	// Initrd is the initial ramdisk; empty for none.
	Initrd []byte
	// Cmdline is the kernel command line.
	Cmdline string
	// CPUs is the number of vCPUs the MP table lists (0 means 1).
	CPUs int
	// ACPI, if set, describes devices for ACPI tables (RSDP, XSDT, FADT,
	// MADT, DSDT) written at ACPIAddr and announced to the kernel; its CPU
	// count is taken from CPUs. Stock distro kernels find virtio-mmio
	// devices only this way.
	ACPI *acpi.Config
}

// ACPIAddr is where the ACPI tables go: the BIOS area that e820 already
// reserves and where Linux also scans for the RSDP.
const ACPIAddr = 0xF0000

// acpiLimit is the end of the area the tables may use.
const acpiLimit = 0x100000

// Entry is the CPU state the boot protocol requires of the boot vCPU. All
// segment registers are flat (base 0, limit 4 GiB): CS uses CodeSelector,
// DS, ES, FS, GS and SS use DataSelector, TR uses TSSSelector. Interrupts
// are off (RFLAGS = 2).
type Entry struct {
	// Kind is the boot protocol of the loaded kernel.
	Kind Kind
	// Mode is the CPU mode to start in.
	Mode Mode
	// RIP is the entry point. RSP is the initial stack (0 for PVH, which
	// has none). RBX is the hvm_start_info address for PVH, RSI the
	// boot_params address for bzImage; the other is 0.
	RIP, RSP, RSI, RBX uint64
	// CR0, CR3, CR4 and EFER select the mode: paging off for Mode32,
	// PAE long mode on the identity map at PML4Addr for Mode64.
	CR0, CR3, CR4, EFER uint64
	// GDTBase and GDTLimit describe the GDT written at GDTAddr.
	GDTBase  uint64
	GDTLimit uint16
	// CodeSelector and DataSelector index that GDT.
	CodeSelector, DataSelector uint16
	// TSSSelector indexes a 32-bit busy TSS descriptor for TR.
	TSSSelector uint16
}

// Control register bits used at entry.
const (
	cr0PE   = 1 << 0
	cr0ET   = 1 << 4
	cr0PG   = 1 << 31
	cr4PAE  = 1 << 5
	eferLME = 1 << 8
	eferLMA = 1 << 10
)

// Load writes the kernel, initrd, command line, boot information (boot_params
// or hvm_start_info with the memory map), the GDT, the page tables (bzImage)
// and the MP table into guest memory at the addresses the package
// documentation lists, and returns the boot vCPU's entry state. It validates
// everything it can before writing anything.
func Load(mem Memory, cfg Config) (*Entry, error) {
	if mem == nil {
		return nil, errors.New("load kernel: no guest memory")
	}
	cpus := cfg.CPUs
	if cpus == 0 {
		cpus = 1
	}
	if cpus < 1 || cpus > MaxCPUs {
		return nil, fmt.Errorf("load kernel: %d CPUs, want 1 to %d", cfg.CPUs, MaxCPUs)
	}
	layout, err := newRAMLayout(mem.Regions())
	if err != nil {
		return nil, fmt.Errorf("load kernel: %w", err)
	}
	k, err := parseKernel(cfg.Kernel)
	if err != nil {
		return nil, fmt.Errorf("load kernel: %w", err)
	}
	var tables *acpi.Tables
	if cfg.ACPI != nil {
		ac := *cfg.ACPI
		ac.CPUs = cpus
		t, err := acpi.Build(ac)
		if err != nil {
			return nil, fmt.Errorf("load kernel: %w", err)
		}
		if ACPIAddr+t.Len() > acpiLimit {
			return nil, fmt.Errorf("load kernel: ACPI tables need %d bytes, more than the %d at %#x", t.Len(), acpiLimit-ACPIAddr, ACPIAddr)
		}
		tables = &t
		layout.rsdp = ACPIAddr
	}
	var entry *Entry
	if k.bz != nil {
		entry, err = loadBzImage(mem, layout, k.bz, cfg, cpus)
	} else {
		entry, err = loadPVH(mem, layout, k.pvh, cfg, cpus)
	}
	if err != nil {
		return nil, fmt.Errorf("load %v: %w", k.kind(), err)
	}
	if tables != nil {
		rsdp, err := tables.Write(mem, ACPIAddr)
		if err != nil {
			return nil, fmt.Errorf("load kernel: write ACPI tables: %w", err)
		}
		if rsdp != layout.rsdp {
			return nil, fmt.Errorf("load kernel: RSDP written at %#x, announced at %#x", rsdp, layout.rsdp)
		}
	}
	return entry, nil
}

// cmdlineBytes checks the command line and returns it NUL-terminated.
func cmdlineBytes(cmdline string, maxLen uint64, limitName string) ([]byte, error) {
	if i := strings.IndexByte(cmdline, 0); i >= 0 {
		return nil, fmt.Errorf("cmdline has a NUL byte at offset %d", i)
	}
	maxLen = min(maxLen, cmdlineLimit-1)
	if uint64(len(cmdline)) > maxLen {
		return nil, fmt.Errorf("cmdline is %d bytes; at most %d are accepted (%s)", len(cmdline), maxLen, limitName)
	}
	return append([]byte(cmdline), 0), nil
}

// lowArea is everything below 1 MiB both protocols share.
type lowArea struct {
	mode    Mode
	cpus    int
	cmdline []byte // NUL-terminated
}

// write puts the BIOS data area fields, GDT, MP table and command line into
// guest memory.
func (a lowArea) write(mem Memory) error {
	ebda, err := mpTableBytes(a.cpus)
	if err != nil {
		return err
	}
	// Only the two BDA fields a kernel may use to find the EBDA are set.
	var u16 [2]byte
	binary.LittleEndian.PutUint16(u16[:], EBDAAddr>>4)
	if err := write(mem, BDAAddr+0x0E, u16[:], "BDA EBDA segment"); err != nil {
		return err
	}
	binary.LittleEndian.PutUint16(u16[:], EBDAAddr>>10)
	if err := write(mem, BDAAddr+0x13, u16[:], "BDA base memory size"); err != nil {
		return err
	}
	if err := write(mem, GDTAddr, gdtBytes(a.mode), "GDT"); err != nil {
		return err
	}
	if err := write(mem, EBDAAddr, ebda, "MP table"); err != nil {
		return err
	}
	return write(mem, CmdlineAddr, a.cmdline, "cmdline")
}

// write copies p to gpa, naming what failed.
func write(mem Memory, gpa uint64, p []byte, what string) error {
	if err := mem.Write(gpa, p); err != nil {
		return fmt.Errorf("write %s at %#x (%d bytes): %w", what, gpa, len(p), err)
	}
	return nil
}

// zeroChunk bounds the buffer used to clear guest memory.
const zeroChunk = 1 << 20

// zero clears [gpa, gpa+n) of guest memory: Load may run on RAM a previous
// boot used, so BSS and padding cannot be assumed to be zero.
func zero(mem Memory, gpa, n uint64, what string) error {
	if n == 0 {
		return nil
	}
	buf := make([]byte, min(n, zeroChunk))
	for n > 0 {
		c := min(n, uint64(len(buf)))
		if err := write(mem, gpa, buf[:c], what); err != nil {
			return err
		}
		gpa += c
		n -= c
	}
	return nil
}
