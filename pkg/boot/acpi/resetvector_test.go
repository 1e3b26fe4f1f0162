package acpi

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// TestResetVectorDoesTheFADTReset decodes the code Write leaves at F000:FFF0
// and checks it writes the FADT's reset value to the FADT's reset register
// (the one reset path every vmmd machine handles), then halts in a loop.
func TestResetVectorDoesTheFADTReset(t *testing.T) {
	m, rsdpAddr := written(t, testConfig(2))
	f, _, _ := rootTables(t, m, rsdpAddr)
	regPort := binary.LittleEndian.Uint64(f[fadtResetRegOff+4:])
	regValue := f[fadtResetValueOff]

	code := m.at(t, ResetVectorAddr, resetVectorSize)
	// cli; mov al, imm8; mov dx, imm16; out dx, al; hlt; jmp -3 (to hlt).
	if code[0] != 0xFA || code[1] != 0xB0 || code[3] != 0xBA || code[6] != 0xEE || code[7] != 0xF4 || code[8] != 0xEB {
		t.Fatalf("reset vector holds % x, want cli; mov al; mov dx; out dx, al; hlt; jmp", code)
	}
	if got := code[2]; got != regValue {
		t.Errorf("reset vector writes %#x, FADT reset value is %#x", got, regValue)
	}
	if got := uint64(binary.LittleEndian.Uint16(code[4:])); got != regPort {
		t.Errorf("reset vector writes port %#x, FADT reset register is %#x", got, regPort)
	}
	if target := 10 + int(int8(code[9])); target != 7 {
		t.Errorf("jmp at offset 8 lands at offset %d, want 7 (the hlt)", target)
	}
	if !isZero(code[10:]) {
		t.Errorf("bytes after the code are % x, want zero", code[10:])
	}
	if !bytes.Equal(code[:10], ResetVectorCode()) {
		t.Errorf("memory at the reset vector differs from ResetVectorCode")
	}
}

// TestTablesOverlappingTheResetVector: a base that would put the tables
// over F000:FFF0 is refused rather than clobbering either.
func TestTablesOverlappingTheResetVector(t *testing.T) {
	tb, err := Build(testConfig(1))
	if err != nil {
		t.Fatal(err)
	}
	m := &regionMem{base: 0xE0000, b: make([]byte, 0x30000)}
	for _, base := range []uint64{ResetVectorAddr - tb.Len() + 1, ResetVectorAddr - 8, ResetVectorAddr} {
		if _, err := tb.Write(m, base); err == nil {
			t.Errorf("Write at %#x (tables to %#x) succeeded over the reset vector", base, base+tb.Len())
		}
	}
	// Just below it is fine.
	if _, err := tb.Write(m, (ResetVectorAddr-tb.Len())&^15); err != nil {
		t.Errorf("Write ending below the reset vector: %v", err)
	}
}
