package acpi

import "encoding/binary"

const (
	rsdpSize     = 36
	rsdpV1Size   = 20 // the part the first checksum covers
	rsdpRevision = 2
	rsdpAlign    = 16 // Linux scans the BIOS area on 16-byte boundaries
	xsdtRevision = 1
)

// rsdp builds the Root System Description Pointer for an XSDT at xsdt.
func rsdp(xsdt uint64) []byte {
	b := make([]byte, rsdpSize)
	copy(b[0:8], "RSD PTR ")
	copy(b[9:15], oemID)
	b[15] = rsdpRevision
	// RsdtAddress (b[16:20]) stays 0: revision 2 readers use the XSDT.
	binary.LittleEndian.PutUint32(b[20:], rsdpSize)
	binary.LittleEndian.PutUint64(b[24:], xsdt)
	b[8] = checksum(b[:rsdpV1Size])
	b[32] = checksum(b)
	return b
}

// xsdt builds the Extended System Description Table listing entries.
func xsdt(entries ...uint64) []byte {
	t := newTable("XSDT", xsdtRevision, headerSize+8*len(entries))
	for i, e := range entries {
		binary.LittleEndian.PutUint64(t[headerSize+8*i:], e)
	}
	return finishTable(t)
}
