package acpi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

// rootTables follows RSDP -> XSDT -> FADT/MADT -> DSDT and checks each link.
func rootTables(t *testing.T, m *regionMem, rsdpAddr uint64) (fadtB, madtB, dsdtB []byte) {
	t.Helper()
	le := binary.LittleEndian
	r := m.at(t, rsdpAddr, rsdpSize)
	if string(r[:8]) != "RSD PTR " {
		t.Fatalf("RSDP signature %q", r[:8])
	}
	if s := sum(r[:rsdpV1Size]); s != 0 {
		t.Errorf("RSDP first 20 bytes sum to %#x, want 0", s)
	}
	if s := sum(r); s != 0 {
		t.Errorf("RSDP 36 bytes sum to %#x, want 0", s)
	}
	if r[15] != 2 || le.Uint32(r[20:]) != rsdpSize || le.Uint32(r[16:]) != 0 {
		t.Errorf("RSDP revision %d length %d RSDT %#x, want 2, 36, 0", r[15], le.Uint32(r[20:]), le.Uint32(r[16:]))
	}
	x := m.table(t, le.Uint64(r[24:]), "XSDT")
	if len(x) != headerSize+16 {
		t.Fatalf("XSDT length %d, want %d (two entries)", len(x), headerSize+16)
	}
	fadtB = m.table(t, le.Uint64(x[headerSize:]), "FACP")
	madtB = m.table(t, le.Uint64(x[headerSize+8:]), "APIC")
	dsdtB = m.table(t, le.Uint64(fadtB[fadtXDSDTOff:]), "DSDT")
	return fadtB, madtB, dsdtB
}

func TestRootPointersAndChecksums(t *testing.T) {
	m, rsdpAddr := written(t, testConfig(2))
	if rsdpAddr != 0xE0000 {
		t.Errorf("RSDP at %#x, want 0xE0000", rsdpAddr)
	}
	rootTables(t, m, rsdpAddr)
}

func TestUnalignedBaseAndLen(t *testing.T) {
	tb, err := Build(testConfig(1))
	if err != nil {
		t.Fatal(err)
	}
	m := &regionMem{base: 0xE0000, b: make([]byte, 0x20000)}
	rsdpAddr, err := tb.Write(m, 0xE0001)
	if err != nil {
		t.Fatal(err)
	}
	if rsdpAddr != 0xE0010 {
		t.Errorf("RSDP at %#x, want 0xE0010 (16-byte aligned)", rsdpAddr)
	}
	_, _, d := rootTables(t, m, rsdpAddr)
	dsdtAddr := uint64(bytes.Index(m.b, d[:headerSize])) + m.base
	if end := dsdtAddr + uint64(len(d)); end != rsdpAddr+tb.Len() {
		t.Errorf("tables end at %#x, want RSDP + Len = %#x", end, rsdpAddr+tb.Len())
	}
	if tb.Len() > 0x1000 {
		t.Errorf("Len = %#x, want a few KiB at most", tb.Len())
	}
	// Nothing is written past Len but the reset vector's code.
	if tail := m.b[rsdpAddr-m.base+tb.Len() : ResetVectorAddr-m.base]; !isZero(tail) {
		t.Errorf("bytes written between RSDP + Len and the reset vector")
	}
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func TestFADT(t *testing.T) {
	m, r := written(t, testConfig(1))
	f, _, _ := rootTables(t, m, r)
	le := binary.LittleEndian
	if len(f) != 276 || f[8] != 6 || f[fadtMinorOff] != 5 {
		t.Errorf("FADT length %d revision %d.%d, want 276, 6.5", len(f), f[8], f[fadtMinorOff])
	}
	flags := le.Uint32(f[fadtFlagsOff:])
	if flags&(1<<20) == 0 || flags&(1<<10) == 0 {
		t.Errorf("FADT flags %#x lack HW_REDUCED_ACPI or RESET_REG_SUP", flags)
	}
	gas := func(off int, port uint64) {
		t.Helper()
		g := f[off : off+12]
		if g[0] != 1 || g[1] != 8 || g[2] != 0 || g[3] != 1 || le.Uint64(g[4:]) != port {
			t.Errorf("GAS at FADT offset %d = % x, want system I/O, 8 bits, byte access, port %#x", off, g, port)
		}
	}
	gas(116, 0xCF9)
	gas(244, 0x3C0)
	gas(256, 0x3C1)
	if f[128] != 0x06 {
		t.Errorf("RESET_VALUE %#x, want 0x06", f[128])
	}
	if string(f[268:276]) != "VMMD\x00\x00\x00\x00" {
		t.Errorf("hypervisor vendor %q, want VMMD", f[268:276])
	}
	// No legacy blocks: everything from SMI_CMD through GPE1_BASE is zero,
	// as are the X_ PM and GPE blocks.
	if !isZero(f[46:96]) || !isZero(f[148:244]) {
		t.Errorf("FADT has legacy PM/GPE/SCI fields set")
	}
	if le.Uint32(f[40:]) != 0 {
		t.Errorf("32-bit DSDT %#x, want 0 (X_DSDT is used)", le.Uint32(f[40:]))
	}
}

type madtEntry struct {
	typ  byte
	body []byte
}

func madtEntries(t *testing.T, madtB []byte) []madtEntry {
	t.Helper()
	var out []madtEntry
	for off := madtFixedSize; off < len(madtB); {
		if off+2 > len(madtB) || madtB[off+1] < 2 || off+int(madtB[off+1]) > len(madtB) {
			t.Fatalf("MADT entry at offset %d runs past the table (length %d)", off, len(madtB))
		}
		n := int(madtB[off+1])
		out = append(out, madtEntry{madtB[off], madtB[off : off+n]})
		off += n
	}
	return out
}

func TestMADT(t *testing.T) {
	le := binary.LittleEndian
	for _, cpus := range []int{1, 2, 4} {
		m, r := written(t, testConfig(cpus))
		_, a, _ := rootTables(t, m, r)
		if a[8] != madtRevision || le.Uint32(a[36:]) != 0xFEE00000 || le.Uint32(a[40:])&1 != 1 {
			t.Errorf("%d CPUs: MADT revision %d LAPIC %#x flags %#x", cpus, a[8], le.Uint32(a[36:]), le.Uint32(a[40:]))
		}
		var lapics, ioapics int
		isos := map[byte][2]uint32{}
		nmis := 0
		for _, e := range madtEntries(t, a) {
			switch e.typ {
			case 0:
				if e.body[2] != byte(lapics) || e.body[3] != byte(lapics) || le.Uint32(e.body[4:]) != 1 {
					t.Errorf("%d CPUs: local APIC entry %d = % x, want UID=id=%d enabled", cpus, lapics, e.body, lapics)
				}
				lapics++
			case 1:
				if e.body[2] != byte(cpus) || le.Uint32(e.body[4:]) != 0xFEC00000 || le.Uint32(e.body[8:]) != 0 {
					t.Errorf("%d CPUs: IOAPIC entry % x, want id %d at 0xFEC00000 GSI 0", cpus, e.body, cpus)
				}
				ioapics++
			case 2:
				isos[e.body[3]] = [2]uint32{le.Uint32(e.body[4:]), uint32(le.Uint16(e.body[8:]))}
			case 4:
				nmis++
			default:
				t.Errorf("%d CPUs: unexpected MADT entry type %d", cpus, e.typ)
			}
		}
		if lapics != cpus || ioapics != 1 || nmis != 1 {
			t.Errorf("%d CPUs: %d local APICs, %d IOAPICs, %d NMI entries; want %d, 1, 1", cpus, lapics, ioapics, nmis, cpus)
		}
		// IRQ0 -> GSI 2 edge/high; devices at 5 and 6 are level/high;
		// the edge device at 16 needs no override.
		want := map[byte][2]uint32{0: {2, 0x5}, 5: {5, 0xD}, 6: {6, 0xD}}
		if len(isos) != len(want) {
			t.Errorf("%d CPUs: overrides %v, want %v", cpus, isos, want)
		}
		for irq, w := range want {
			if isos[irq] != w {
				t.Errorf("%d CPUs: override for IRQ %d = %v, want GSI %d flags %#x", cpus, irq, isos[irq], w[0], w[1])
			}
		}
	}
}

func TestDSDTContents(t *testing.T) {
	m, r := written(t, testConfig(1))
	_, _, d := rootTables(t, m, r)
	aml := d[headerSize:]
	for _, want := range [][]byte{
		[]byte("LNRO0005\x00"),
		[]byte("VR00"), []byte("VR01"), []byte("VR02"), []byte("COM1"),
		resMemory32Fixed(true, 0xD0001000, 0x1000),
		resInterrupt(irqMode{}, 6),
		resInterrupt(irqMode{edge: true}, 16),
		resIO(0x3F8, 0x3F8, 0, 8),
		resInterrupt(irqMode{edge: true}, 4),
		{0x0C, 0x41, 0xD0, 0x05, 0x01}, // EISAID("PNP0501")
		append([]byte{0x08}, `\_S5_`...),
	} {
		if !bytes.Contains(aml, want) {
			t.Errorf("DSDT AML lacks % x", want)
		}
	}
	if !bytes.HasPrefix(aml, []byte{0x10}) {
		t.Errorf("DSDT AML starts with %#x, want ScopeOp", aml[0])
	}

	noSerial := testConfig(1)
	noSerial.Serial = false
	m, r = written(t, noSerial)
	_, _, d = rootTables(t, m, r)
	if bytes.Contains(d, []byte("COM1")) {
		t.Error("DSDT describes COM1 with Serial false")
	}
}

func TestBuildRejects(t *testing.T) {
	dev := func(f func(*Device)) Config {
		c := testConfig(1)
		f(&c.Devices[1])
		return c
	}
	cases := map[string]Config{
		"no CPUs":        {CPUs: 0},
		"too many CPUs":  {CPUs: MaxCPUs + 1},
		"short name":     dev(func(d *Device) { d.Name = "VR1" }),
		"duplicate name": dev(func(d *Device) { d.Name = "VR00" }),
		"name is COM1":   dev(func(d *Device) { d.Name = "COM1" }),
		"empty HID":      dev(func(d *Device) { d.HID = "" }),
		"negative UID":   dev(func(d *Device) { d.UID = -1 }),
		"zero size":      dev(func(d *Device) { d.MMIOSize = 0 }),
		"above 4 GiB":    dev(func(d *Device) { d.MMIOBase = 0xFFFFF000; d.MMIOSize = 0x2000 }),
		"overlap":        dev(func(d *Device) { d.MMIOBase = 0xD0000800 }),
		"IRQ 0":          dev(func(d *Device) { d.IRQ = 0 }),
		"IRQ 2":          dev(func(d *Device) { d.IRQ = 2 }),
		"IRQ 24":         dev(func(d *Device) { d.IRQ = 24 }),
		"IRQ of COM1":    dev(func(d *Device) { d.IRQ = 4 }),
		"IRQ shared":     dev(func(d *Device) { d.IRQ = 5 }),
		"non-ASCII HID":  dev(func(d *Device) { d.HID = "LNRO\u00e9" }),
	}
	for name, cfg := range cases {
		if _, err := Build(cfg); err == nil {
			t.Errorf("%s: Build accepted %+v", name, cfg)
		} else if !strings.HasPrefix(err.Error(), "ACPI tables: ") {
			t.Errorf("%s: error %q does not name the operation", name, err)
		}
	}
	// The window may end exactly at 4 GiB.
	ok := dev(func(d *Device) { d.MMIOBase = 0xFFFFF000; d.MMIOSize = 0x1000 })
	if _, err := Build(ok); err != nil {
		t.Errorf("window ending at 4 GiB: %v", err)
	}
}

func TestWriteErrors(t *testing.T) {
	if _, err := (Tables{}).Write(&regionMem{b: make([]byte, 0x10000)}, 0); err == nil {
		t.Error("zero Tables wrote without error")
	}
	tb, err := Build(testConfig(1))
	if err != nil {
		t.Fatal(err)
	}
	small := &regionMem{base: 0xE0000, b: make([]byte, 0x100)}
	if _, err := tb.Write(small, 0xE0000); !errors.Is(err, errOutside) {
		t.Errorf("Write into a too-small region: %v, want the memory's error wrapped", err)
	}
	if _, err := tb.Write(small, ^uint64(0)-10); err == nil {
		t.Error("Write at the top of the address space succeeded")
	}
}
