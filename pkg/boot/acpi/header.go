package acpi

import "encoding/binary"

// Identity written into every table header.
const (
	oemID          = "VMMD  "
	oemTableID     = "VMMDVM  "
	oemRevision    = 1
	creatorID      = "VMMD"
	creatorRev     = 1
	headerSize     = 36
	headerChecksum = 9 // offset of the checksum byte in a table header
)

// checksum returns the byte that makes the sum of b plus it 0 mod 256.
func checksum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return -s
}

// newTable returns a table of size bytes with its header filled in except
// the checksum, which finishTable sets once the body is final.
func newTable(sig string, rev byte, size int) []byte {
	t := make([]byte, size)
	copy(t[0:4], sig)
	binary.LittleEndian.PutUint32(t[4:], uint32(size))
	t[8] = rev
	copy(t[10:16], oemID)
	copy(t[16:24], oemTableID)
	binary.LittleEndian.PutUint32(t[24:], oemRevision)
	copy(t[28:32], creatorID)
	binary.LittleEndian.PutUint32(t[32:], creatorRev)
	return t
}

// finishTable sets the header checksum of t.
func finishTable(t []byte) []byte {
	t[headerChecksum] = 0
	t[headerChecksum] = checksum(t)
	return t
}
