package acpi

import (
	"fmt"
	"math"
)

// Device is one virtio-mmio (or other MMIO) device to describe in the DSDT.
type Device struct {
	// Name is the device's 4-character AML name, e.g. "VR00".
	Name string
	// HID is its _HID: "LNRO0005" for virtio-mmio. A 7-character PNP id
	// ("PNP0501") is compressed as ASL's EISAID() would.
	HID string
	// UID is its _UID, distinguishing devices with the same HID.
	UID int
	// MMIOBase and MMIOSize are the register window; it must lie below
	// 4 GiB (it is described with Memory32Fixed).
	MMIOBase, MMIOSize uint64
	// IRQ is the IOAPIC pin (GSI) the device raises.
	IRQ uint32
	// EdgeTriggered describes the line as edge-triggered; the default is
	// level-triggered, active-high, which suits a device that holds its
	// line up while its interrupt status is non-zero.
	EdgeTriggered bool
}

// Config is the machine the tables describe.
type Config struct {
	// CPUs is the number of vCPUs, with APIC ids 0..CPUs-1.
	CPUs int
	// Devices are the MMIO devices, in DSDT order.
	Devices []Device
	// Serial adds COM1 (COM1Port, COM1IRQ) to the DSDT.
	Serial bool
}

// Tables is a built, address-independent set of ACPI tables; Write places
// them in guest memory.
type Tables struct {
	madt, dsdt []byte
}

// Memory is where Tables.Write puts the tables.
type Memory interface {
	Write(gpa uint64, p []byte) error
}

// Build validates cfg and builds its tables.
func Build(cfg Config) (Tables, error) {
	if err := validate(cfg); err != nil {
		return Tables{}, fmt.Errorf("ACPI tables: %w", err)
	}
	var level []uint32
	for _, d := range cfg.Devices {
		if !d.EdgeTriggered && d.IRQ < isaIRQs {
			level = append(level, d.IRQ)
		}
	}
	m, err := madt(cfg.CPUs, level)
	if err != nil {
		return Tables{}, fmt.Errorf("ACPI tables: %w", err)
	}
	d, err := dsdt(cfg)
	if err != nil {
		return Tables{}, fmt.Errorf("ACPI tables: %w", err)
	}
	return Tables{madt: m, dsdt: d}, nil
}

// validate rejects configurations the tables cannot describe or that would
// give the guest conflicting resources.
func validate(cfg Config) error {
	if cfg.CPUs < 1 || cfg.CPUs > MaxCPUs {
		return fmt.Errorf("%d CPUs, want 1 to %d", cfg.CPUs, MaxCPUs)
	}
	names := map[string]bool{}
	irqs := map[uint32]string{}
	if cfg.Serial {
		names[com1Name] = true
		irqs[COM1IRQ] = com1Name
	}
	for i, d := range cfg.Devices {
		if err := validNameSeg(d.Name); err != nil {
			return fmt.Errorf("device %d: %w", i, err)
		}
		if names[d.Name] {
			return fmt.Errorf("device %d: name %s used twice", i, d.Name)
		}
		names[d.Name] = true
		if _, err := amlHID(d.HID); err != nil {
			return fmt.Errorf("device %s: %w", d.Name, err)
		}
		if d.UID < 0 {
			return fmt.Errorf("device %s: _UID %d is negative", d.Name, d.UID)
		}
		if d.MMIOSize == 0 || d.MMIOSize > math.MaxUint32 || d.MMIOBase > math.MaxUint32-d.MMIOSize+1 {
			return fmt.Errorf("device %s: MMIO window %#x+%#x must be non-empty and end at or below 4 GiB", d.Name, d.MMIOBase, d.MMIOSize)
		}
		if d.IRQ >= IOAPICPins || d.IRQ == 0 || d.IRQ == 2 {
			return fmt.Errorf("device %s: IRQ %d, want 1 or 3 to %d (0 and 2 are the timer's)", d.Name, d.IRQ, IOAPICPins-1)
		}
		if other, ok := irqs[d.IRQ]; ok {
			return fmt.Errorf("device %s: IRQ %d is also %s's", d.Name, d.IRQ, other)
		}
		irqs[d.IRQ] = d.Name
		for _, o := range cfg.Devices[:i] {
			if d.MMIOBase < o.MMIOBase+o.MMIOSize && o.MMIOBase < d.MMIOBase+d.MMIOSize {
				return fmt.Errorf("device %s: MMIO window %#x+%#x overlaps %s's", d.Name, d.MMIOBase, d.MMIOSize, o.Name)
			}
		}
	}
	return nil
}

// layout is where each table goes for a given base.
type layout struct {
	rsdp, xsdt, fadt, madt, dsdt, end uint64
}

// tableAlign keeps every table 8-byte aligned.
const tableAlign = 8

func alignUp(v, a uint64) uint64 { return (v + a - 1) &^ (a - 1) }

func (t Tables) layout(base uint64) (layout, error) {
	if t.madt == nil || t.dsdt == nil {
		return layout{}, fmt.Errorf("tables were not made by Build")
	}
	if base > math.MaxUint64-(1<<20) {
		return layout{}, fmt.Errorf("base %#x is too close to the top of the address space", base)
	}
	var l layout
	l.rsdp = alignUp(base, rsdpAlign)
	l.xsdt = alignUp(l.rsdp+rsdpSize, tableAlign)
	l.fadt = alignUp(l.xsdt+headerSize+2*8, tableAlign)
	l.madt = alignUp(l.fadt+fadtSize, tableAlign)
	l.dsdt = alignUp(l.madt+uint64(len(t.madt)), tableAlign)
	l.end = l.dsdt + uint64(len(t.dsdt))
	return l, nil
}

// Len is how many bytes Write uses from base, when base is 16-byte aligned;
// otherwise add the padding up to the next 16-byte boundary. It is 0 for a
// Tables not made by Build.
func (t Tables) Len() uint64 {
	l, err := t.layout(0)
	if err != nil {
		return 0
	}
	return l.end
}

// Write puts the RSDP at base rounded up to 16 bytes and the XSDT, FADT,
// MADT and DSDT after it, and returns the RSDP's address. The tables take
// Len bytes; the caller chooses a base where they fit (0xE0000, in the
// BIOS area Linux scans for the RSDP, leaves room up to 0xFFFFF). Write
// also puts ResetVectorCode at ResetVectorAddr, which the FADT's
// hardware-reduced flag makes necessary (see ResetVectorAddr), so mem must
// cover it too; tables that would overlap it are refused.
func (t Tables) Write(mem Memory, base uint64) (rsdpAddr uint64, err error) {
	l, err := t.layout(base)
	if err != nil {
		return 0, fmt.Errorf("write ACPI tables: %w", err)
	}
	if l.rsdp < ResetVectorAddr+resetVectorSize && ResetVectorAddr < l.end {
		return 0, fmt.Errorf("write ACPI tables: tables at %#x-%#x overlap the reset vector at %#x", l.rsdp, l.end-1, ResetVectorAddr)
	}
	parts := []struct {
		name string
		gpa  uint64
		b    []byte
	}{
		{"RSDP", l.rsdp, rsdp(l.xsdt)},
		{"XSDT", l.xsdt, xsdt(l.fadt, l.madt)},
		{"FADT", l.fadt, fadt(l.dsdt)},
		{"MADT", l.madt, t.madt},
		{"DSDT", l.dsdt, t.dsdt},
		{"reset vector code", ResetVectorAddr, ResetVectorCode()},
	}
	for _, p := range parts {
		if err := mem.Write(p.gpa, p.b); err != nil {
			return 0, fmt.Errorf("write ACPI %s at %#x: %w", p.name, p.gpa, err)
		}
	}
	return l.rsdp, nil
}
