package acpi

import (
	"bytes"
	"testing"
)

func TestPkgLengthForms(t *testing.T) {
	cases := []struct {
		n    int
		want []byte
	}{
		{0, []byte{0x01}},
		{0x3E, []byte{0x3F}},              // largest 1-byte form
		{0x3F, []byte{0x41, 0x04}},        // total 0x41
		{0xFFD, []byte{0x4F, 0xFF}},       // largest 2-byte form: total 0xFFF
		{0xFFE, []byte{0x81, 0x00, 0x01}}, // total 0x1001
		{0xFFFFC, []byte{0x8F, 0xFF, 0xFF}},
		{0xFFFFD, []byte{0xC1, 0x00, 0x00, 0x01}}, // total 0x100001
	}
	for _, c := range cases {
		got, err := amlPkgLength(c.n)
		if err != nil {
			t.Fatalf("amlPkgLength(%#x): %v", c.n, err)
		}
		if !bytes.Equal(got, c.want) {
			t.Errorf("amlPkgLength(%#x) = % x, want % x", c.n, got, c.want)
		}
	}
	if _, err := amlPkgLength(amlMaxPkgLength); err == nil {
		t.Errorf("amlPkgLength(%#x) accepted a length that does not fit", amlMaxPkgLength)
	}
	if _, err := amlPkgLength(-1); err == nil {
		t.Errorf("amlPkgLength(-1) accepted a negative length")
	}
}

func TestIntegerForms(t *testing.T) {
	cases := []struct {
		v    uint64
		want []byte
	}{
		{0, []byte{0x00}},
		{1, []byte{0x01}},
		{2, []byte{0x0A, 0x02}},
		{0xFF, []byte{0x0A, 0xFF}},
		{0x100, []byte{0x0B, 0x00, 0x01}},
		{0xFFFF, []byte{0x0B, 0xFF, 0xFF}},
		{0x10000, []byte{0x0C, 0x00, 0x00, 0x01, 0x00}},
		{0xD0000000, []byte{0x0C, 0x00, 0x00, 0x00, 0xD0}},
		{0x100000000, []byte{0x0E, 0, 0, 0, 0, 1, 0, 0, 0}},
		{0x0123456789ABCDEF, []byte{0x0E, 0xEF, 0xCD, 0xAB, 0x89, 0x67, 0x45, 0x23, 0x01}},
	}
	for _, c := range cases {
		if got := amlInteger(c.v); !bytes.Equal(got, c.want) {
			t.Errorf("amlInteger(%#x) = % x, want % x", c.v, got, c.want)
		}
	}
}

func TestEISAID(t *testing.T) {
	cases := map[string]uint32{
		"PNP0501": 0x0105D041,
		"PNP0A03": 0x030AD041,
		"PNP0C0C": 0x0C0CD041,
	}
	for id, want := range cases {
		got, err := eisaID(id)
		if err != nil || got != want {
			t.Errorf("eisaID(%q) = %#x, %v; want %#x", id, got, err, want)
		}
	}
	hid, err := amlHID("PNP0501")
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte{0x0C, 0x41, 0xD0, 0x05, 0x01}; !bytes.Equal(hid, want) {
		t.Errorf("amlHID(PNP0501) = % x, want % x", hid, want)
	}
	for _, bad := range []string{"PNP050", "pnp0501", "PNP05G1", "1NP0501"} {
		if _, err := eisaID(bad); err == nil {
			t.Errorf("eisaID(%q) accepted a malformed id", bad)
		}
	}
	// LNRO0005 is not an EISA id, so it stays a string.
	hid, err = amlHID("LNRO0005")
	if err != nil {
		t.Fatal(err)
	}
	if want := append(append([]byte{0x0D}, "LNRO0005"...), 0); !bytes.Equal(hid, want) {
		t.Errorf("amlHID(LNRO0005) = % x, want % x", hid, want)
	}
}

func TestNameStrings(t *testing.T) {
	cases := []struct {
		path string
		want []byte
	}{
		{"VR00", []byte("VR00")},
		{`\_SB_`, []byte(`\_SB_`)},
		{`\_SB_.COM1`, append([]byte{'\\', 0x2E}, "_SB_COM1"...)},
		{`_SB_.PCI0.ISA_`, append([]byte{0x2F, 3}, "_SB_PCI0ISA_"...)},
		{`\`, []byte{'\\', 0}},
	}
	for _, c := range cases {
		got, err := amlNameString(c.path)
		if err != nil || !bytes.Equal(got, c.want) {
			t.Errorf("amlNameString(%q) = % x, %v; want % x", c.path, got, err, c.want)
		}
	}
	for _, bad := range []string{"VR0", "VR000", "0VR0", "vr00", `\_SB_.`, "VR-0"} {
		if _, err := amlNameString(bad); err == nil {
			t.Errorf("amlNameString(%q) accepted a bad name", bad)
		}
	}
}

func TestStringRejectsNonASCII(t *testing.T) {
	if _, err := amlString("a\x00b"); err == nil {
		t.Error("amlString accepted an embedded NUL")
	}
	if _, err := amlString("é"); err == nil {
		t.Error("amlString accepted non-ASCII")
	}
}

func TestResourceDescriptors(t *testing.T) {
	mem := resMemory32Fixed(true, 0xD0000000, 0x1000)
	wantMem := []byte{0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xD0, 0x00, 0x10, 0x00, 0x00}
	if !bytes.Equal(mem, wantMem) {
		t.Errorf("Memory32Fixed = % x, want % x", mem, wantMem)
	}
	io := resIO(0x3F8, 0x3F8, 0, 8)
	wantIO := []byte{0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x00, 0x08}
	if !bytes.Equal(io, wantIO) {
		t.Errorf("IO = % x, want % x", io, wantIO)
	}
	lvl := resInterrupt(irqMode{}, 5)
	wantLvl := []byte{0x89, 0x06, 0x00, 0x01, 0x01, 0x05, 0x00, 0x00, 0x00}
	if !bytes.Equal(lvl, wantLvl) {
		t.Errorf("Interrupt(Level, ActiveHigh, Exclusive) = % x, want % x", lvl, wantLvl)
	}
	edge := resInterrupt(irqMode{edge: true, activeLow: true, shared: true}, 4)
	if edge[3] != 0x0F {
		t.Errorf("Interrupt(Edge, ActiveLow, Shared) flags = %#x, want 0x0f", edge[3])
	}
	tmpl, err := resourceTemplate(io)
	if err != nil {
		t.Fatal(err)
	}
	// Buffer, PkgLength 13 (itself + BytePrefix 10 + 10 data bytes).
	wantTmpl := append(append([]byte{0x11, 0x0D, 0x0A, 0x0A}, wantIO...), 0x79, 0x00)
	if !bytes.Equal(tmpl, wantTmpl) {
		t.Errorf("ResourceTemplate(IO) = % x, want % x", tmpl, wantTmpl)
	}
}

func TestS5Package(t *testing.T) {
	got, err := s5AML()
	if err != nil {
		t.Fatal(err)
	}
	want := append(append([]byte{0x08}, `\_S5_`...), 0x12, 0x07, 0x04, 0x0A, 0x05, 0x00, 0x00, 0x00)
	if !bytes.Equal(got, want) {
		t.Errorf("\\_S5 = % x, want % x", got, want)
	}
}
