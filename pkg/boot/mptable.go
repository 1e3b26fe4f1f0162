package boot

import (
	"encoding/binary"
	"fmt"
)

// MP table (Intel MultiProcessor Specification 1.4), written into the EBDA
// so that a kernel without ACPI finds the CPUs and the IOAPIC.
const (
	// LAPICAddr is the local APIC base every CPU uses.
	LAPICAddr = 0xFEE00000
	// IOAPICAddr is the IOAPIC base.
	IOAPICAddr = 0xFEC00000

	mpFloatSize   = 16
	mpHeaderSize  = 44
	mpCPUSize     = 20
	mpEntrySize   = 8 // bus, IOAPIC, I/O and local interrupt entries
	mpISAIRQs     = 16
	mpIOIntCount  = mpISAIRQs - 1 // IRQ 2 (the PIC cascade) has no entry
	mpLocalInts   = 2
	mpSpecRev     = 4 // 1.4
	mpLAPICVer    = 0x14
	mpIOAPICVer   = 0x11
	mpCPUSig      = 0x600 // family 6
	mpCPUFeatures = 0x201 // FPU | APIC

	mpEntryCPU      = 0
	mpEntryBus      = 1
	mpEntryIOAPIC   = 2
	mpEntryIOInt    = 3
	mpEntryLocalInt = 4

	mpIntINT    = 0
	mpIntNMI    = 1
	mpIntExtINT = 3

	mpCPUEnabled = 1
	mpCPUBSP     = 2

	mpFixedSize = mpFloatSize + mpHeaderSize + mpEntrySize*(2+mpIOIntCount+mpLocalInts)

	// MaxCPUs is the most CPUs whose MP table fits in the 1 KiB EBDA.
	MaxCPUs = (EBDAEnd - EBDAAddr - mpFixedSize) / mpCPUSize
)

// mpTableBytes builds the EBDA contents for cpus CPUs (APIC ids 0..cpus-1,
// IOAPIC id cpus): the floating pointer at EBDAAddr followed by the
// configuration table.
func mpTableBytes(cpus int) ([]byte, error) {
	if cpus < 1 || cpus > MaxCPUs {
		return nil, fmt.Errorf("MP table: %d CPUs, want 1 to %d (what fits in the EBDA)", cpus, MaxCPUs)
	}
	le := binary.LittleEndian
	ebda := make([]byte, EBDAEnd-EBDAAddr)
	const cfgAddr = EBDAAddr + mpFloatSize
	cfg := make([]byte, mpHeaderSize, len(ebda)-mpFloatSize)
	entries := 0
	ioapicID := byte(cpus)

	for id := range cpus {
		e := make([]byte, mpCPUSize)
		e[0] = mpEntryCPU
		e[1] = byte(id)
		e[2] = mpLAPICVer
		e[3] = mpCPUEnabled
		if id == 0 {
			e[3] |= mpCPUBSP
		}
		le.PutUint32(e[4:], mpCPUSig)
		le.PutUint32(e[8:], mpCPUFeatures)
		cfg = append(cfg, e...)
		entries++
	}
	cfg = append(cfg, mpEntryBus, 0, 'I', 'S', 'A', ' ', ' ', ' ')
	entries++
	ioapic := []byte{mpEntryIOAPIC, ioapicID, mpIOAPICVer, 1, 0, 0, 0, 0}
	le.PutUint32(ioapic[4:], IOAPICAddr)
	cfg = append(cfg, ioapic...)
	entries++
	for irq := range byte(mpISAIRQs) {
		pin := irq
		switch irq {
		case 0:
			pin = 2 // the PIT is wired to pin 2, as on QEMU and Firecracker
		case 2:
			continue // pin 2 is taken; IRQ 2 is the PIC cascade (SeaBIOS does the same)
		}
		// Flags 0: polarity and trigger conform to the ISA bus (high, edge).
		cfg = append(cfg, mpEntryIOInt, mpIntINT, 0, 0, 0, irq, ioapicID, pin)
		entries++
	}
	// Local interrupts go to every local APIC (destination 0xFF).
	cfg = append(cfg, mpEntryLocalInt, mpIntExtINT, 0, 0, 0, 0, 0xFF, 0)
	cfg = append(cfg, mpEntryLocalInt, mpIntNMI, 0, 0, 0, 0, 0xFF, 1)
	entries += mpLocalInts

	hdr := cfg[:mpHeaderSize]
	copy(hdr[0:], "PCMP")
	le.PutUint16(hdr[4:], uint16(len(cfg)))
	hdr[6] = mpSpecRev
	copy(hdr[8:], "VMMD    ")
	copy(hdr[16:], "VMMD PC     ")
	le.PutUint16(hdr[34:], uint16(entries))
	le.PutUint32(hdr[36:], LAPICAddr)
	hdr[7] = checksum(cfg)
	copy(ebda[mpFloatSize:], cfg)

	fp := ebda[:mpFloatSize]
	copy(fp, "_MP_")
	le.PutUint32(fp[4:], cfgAddr)
	fp[8] = 1 // length in 16-byte units
	fp[9] = mpSpecRev
	// Feature bytes stay 0: a configuration table is present, and the
	// system uses virtual wire mode (no IMCR).
	fp[10] = checksum(fp)
	return ebda, nil
}

// checksum returns the byte that makes b (with that byte still 0) sum to 0.
func checksum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return -s
}
