package acpi

import (
	"encoding/binary"
	"fmt"
)

// Interrupt controller addresses, the same ones the MP table gives.
const (
	// LAPICAddr is the local APIC base every CPU uses.
	LAPICAddr = 0xFEE00000
	// IOAPICAddr is the IOAPIC base.
	IOAPICAddr = 0xFEC00000
	// IOAPICPins is how many inputs KVM's in-kernel IOAPIC has; device
	// interrupts must be below it.
	IOAPICPins = 24
	// MaxCPUs is the most CPUs the MADT can describe with xAPIC entries
	// while leaving APIC id MaxCPUs for the IOAPIC.
	MaxCPUs = 254

	madtRevision       = 5 // ACPI 6.x
	madtFixedSize      = headerSize + 8
	madtFlagPCATCompat = 1 // dual 8259s are present (KVM's in-kernel PIC)

	madtLAPIC     = 0
	madtIOAPIC    = 1
	madtISO       = 2
	madtLAPICNMI  = 4
	madtLAPICSize = 8
	madtIOAPICSz  = 12
	madtISOSize   = 10
	madtNMISize   = 6

	madtLAPICEnabled = 1
	// MPS INTI flags: polarity in bits 0-1, trigger mode in bits 2-3.
	mpsActiveHigh = 0x1
	mpsEdge       = 0x1 << 2
	mpsLevel      = 0x3 << 2

	isaIRQs = 16
)

// madt builds the Multiple APIC Description Table for cpus CPUs. levelISA
// lists ISA IRQs (below 16) that devices use level-triggered: each gets an
// override so Linux programs its IOAPIC pin as the device's _CRS says
// rather than with the ISA default of edge.
func madt(cpus int, levelISA []uint32) ([]byte, error) {
	if cpus < 1 || cpus > MaxCPUs {
		return nil, fmt.Errorf("MADT: %d CPUs, want 1 to %d", cpus, MaxCPUs)
	}
	le := binary.LittleEndian
	size := madtFixedSize + cpus*madtLAPICSize + madtIOAPICSz + (1+len(levelISA))*madtISOSize + madtNMISize
	t := newTable("APIC", madtRevision, size)
	le.PutUint32(t[headerSize:], LAPICAddr)
	le.PutUint32(t[headerSize+4:], madtFlagPCATCompat)
	off := madtFixedSize
	for i := 0; i < cpus; i++ {
		e := t[off : off+madtLAPICSize]
		e[0], e[1] = madtLAPIC, madtLAPICSize
		e[2] = byte(i) // ACPI processor UID
		e[3] = byte(i) // APIC id
		le.PutUint32(e[4:], madtLAPICEnabled)
		off += madtLAPICSize
	}
	e := t[off : off+madtIOAPICSz]
	e[0], e[1] = madtIOAPIC, madtIOAPICSz
	e[2] = byte(cpus)
	le.PutUint32(e[4:], IOAPICAddr)
	le.PutUint32(e[8:], 0) // GSI base
	off += madtIOAPICSz
	iso := func(irq byte, gsi uint32, flags uint16) {
		e := t[off : off+madtISOSize]
		e[0], e[1] = madtISO, madtISOSize
		e[2] = 0 // ISA bus
		e[3] = irq
		le.PutUint32(e[4:], gsi)
		le.PutUint16(e[8:], flags)
		off += madtISOSize
	}
	// The PIT's IRQ0 is wired to IOAPIC pin 2, as on every PC.
	iso(0, 2, mpsActiveHigh|mpsEdge)
	for _, irq := range levelISA {
		if irq >= isaIRQs || irq == 0 || irq == 2 {
			return nil, fmt.Errorf("MADT: level-triggered ISA IRQ %d, want 1 or 3 to 15", irq)
		}
		iso(byte(irq), irq, mpsActiveHigh|mpsLevel)
	}
	// LINT1 of every CPU is NMI, as the MP table also says.
	e = t[off : off+madtNMISize]
	e[0], e[1] = madtLAPICNMI, madtNMISize
	e[2] = 0xFF // all processors
	le.PutUint16(e[3:], mpsActiveHigh|mpsEdge)
	e[5] = 1 // LINT1
	return finishTable(t), nil
}
