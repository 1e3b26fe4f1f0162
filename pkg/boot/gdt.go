package boot

import "encoding/binary"

// GDT descriptors. The accessed bit is preset in code and data descriptors
// so the CPU never has to write to the table.
const (
	gdtCode64 = 0x00AF9B000000FFFF // base 0, limit 4 GiB, L=1, present, DPL0, execute/read
	gdtCode32 = 0x00CF9B000000FFFF // base 0, limit 4 GiB, D=1, present, DPL0, execute/read
	gdtData   = 0x00CF93000000FFFF // base 0, limit 4 GiB, present, DPL0, read/write
	gdtTSS32  = 0x00008B0000000067 // base 0, limit 0x67, present, 32-bit busy TSS
	// gdtEntries is null, unused, code, data, TSS.
	gdtEntries = 5
)

// GDTLimit is the limit of the boot GDT (its size - 1).
const GDTLimit = gdtEntries*8 - 1

// gdtBytes builds the boot GDT for the given mode.
func gdtBytes(mode Mode) []byte {
	code := uint64(gdtCode32)
	if mode == Mode64 {
		code = gdtCode64
	}
	entries := [gdtEntries]uint64{0, 0, code, gdtData, gdtTSS32}
	b := make([]byte, 8*gdtEntries)
	for i, e := range entries {
		binary.LittleEndian.PutUint64(b[8*i:], e)
	}
	return b
}
