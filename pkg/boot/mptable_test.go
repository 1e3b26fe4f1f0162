package boot

import (
	"fmt"
	"strings"
	"testing"
)

func sum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return s
}

func TestMPTable(t *testing.T) {
	for _, cpus := range []int{1, 2, 4, MaxCPUs} {
		t.Run(fmt.Sprintf("%dCPUs", cpus), func(t *testing.T) {
			mem := newMem(t, 64*mib)
			if _, err := Load(mem, Config{Kernel: buildBzImage(bzSpec{}), CPUs: cpus}); err != nil {
				t.Fatalf("Load: %v", err)
			}
			bda := readMem(t, mem, BDAAddr, 0x20)
			if u16(bda, 0x0E) != 0x9FC0 || u16(bda, 0x13) != 639 {
				t.Errorf("BDA EBDA segment %#x, base memory %d KiB; want 0x9FC0, 639", u16(bda, 0x0E), u16(bda, 0x13))
			}
			fp := readMem(t, mem, EBDAAddr, 16)
			if string(fp[:4]) != "_MP_" || fp[8] != 1 || fp[9] != 4 || sum(fp) != 0 {
				t.Fatalf("floating pointer % x: bad signature, length, revision or checksum", fp)
			}
			cfgAddr := uint64(u32(fp, 4))
			hdr := readMem(t, mem, cfgAddr, 44)
			if string(hdr[:4]) != "PCMP" || hdr[6] != 4 || u32(hdr, 36) != LAPICAddr {
				t.Fatalf("config header % x: bad signature, revision or LAPIC address", hdr)
			}
			length := int(u16(hdr, 4))
			if cfgAddr+uint64(length) > EBDAEnd {
				t.Fatalf("config table [%#x, +%d) leaves the EBDA", cfgAddr, length)
			}
			tbl := readMem(t, mem, cfgAddr, length)
			if sum(tbl) != 0 {
				t.Errorf("config table checksum: bytes sum to %#x", sum(tbl))
			}
			var (
				cpuIDs   []int
				bsp      []int
				buses    []string
				ioapics  [][3]uint32 // id, version, address
				ioints   = map[byte]byte{}
				lints    [][3]byte // type, dest apic, LINTIN#
				nEntries int
			)
			for off := 44; off < length; nEntries++ {
				switch tbl[off] {
				case mpEntryCPU:
					e := tbl[off : off+20]
					if e[3]&mpCPUEnabled == 0 || e[2] != mpLAPICVer {
						t.Errorf("CPU entry % x not enabled or wrong APIC version", e)
					}
					cpuIDs = append(cpuIDs, int(e[1]))
					if e[3]&mpCPUBSP != 0 {
						bsp = append(bsp, int(e[1]))
					}
					off += 20
				case mpEntryBus:
					buses = append(buses, string(tbl[off+2:off+8]))
					off += 8
				case mpEntryIOAPIC:
					e := tbl[off : off+8]
					if e[3] != 1 {
						t.Errorf("IOAPIC entry not enabled")
					}
					ioapics = append(ioapics, [3]uint32{uint32(e[1]), uint32(e[2]), u32(e, 4)})
					off += 8
				case mpEntryIOInt:
					e := tbl[off : off+8]
					if e[1] != mpIntINT || u16(e, 2) != 0 || e[4] != 0 || e[6] != byte(cpus) {
						t.Errorf("I/O interrupt entry % x", e)
					}
					if _, dup := ioints[e[5]]; dup {
						t.Errorf("two entries for IRQ %d", e[5])
					}
					ioints[e[5]] = e[7]
					off += 8
				case mpEntryLocalInt:
					e := tbl[off : off+8]
					lints = append(lints, [3]byte{e[1], e[6], e[7]})
					off += 8
				default:
					t.Fatalf("unknown entry type %d at offset %d", tbl[off], off)
				}
			}
			if int(u16(hdr, 34)) != nEntries {
				t.Errorf("entry count %d, table has %d", u16(hdr, 34), nEntries)
			}
			if len(cpuIDs) != cpus {
				t.Fatalf("%d CPU entries, want %d", len(cpuIDs), cpus)
			}
			for i, id := range cpuIDs {
				if id != i {
					t.Errorf("CPU entry %d has APIC id %d", i, id)
				}
			}
			if len(bsp) != 1 || bsp[0] != 0 {
				t.Errorf("BSP flags on APIC ids %v, want [0]", bsp)
			}
			if len(buses) != 1 || buses[0] != "ISA   " {
				t.Errorf("buses %q, want [\"ISA   \"]", buses)
			}
			if len(ioapics) != 1 || ioapics[0] != [3]uint32{uint32(cpus), 0x11, 0xFEC00000} {
				t.Errorf("IOAPIC entries %x, want id %d ver 0x11 at 0xFEC00000", ioapics, cpus)
			}
			for irq := byte(0); irq < 16; irq++ {
				pin, ok := ioints[irq]
				switch {
				case irq == 2:
					if ok {
						t.Errorf("IRQ 2 (cascade) has an entry to pin %d", pin)
					}
				case irq == 0:
					if !ok || pin != 2 {
						t.Errorf("IRQ 0 -> pin %d (present %v), want pin 2", pin, ok)
					}
				default:
					if !ok || pin != irq {
						t.Errorf("IRQ %d -> pin %d (present %v), want identity", irq, pin, ok)
					}
				}
			}
			if len(lints) != 2 || lints[0] != [3]byte{mpIntExtINT, 0xFF, 0} || lints[1] != [3]byte{mpIntNMI, 0xFF, 1} {
				t.Errorf("local interrupts %v, want ExtINT on LINT0 and NMI on LINT1 for all APICs", lints)
			}
		})
	}
}

func TestMPTableCPUBounds(t *testing.T) {
	for _, n := range []int{0, -3, MaxCPUs + 1} {
		if _, err := mpTableBytes(n); err == nil || !strings.Contains(err.Error(), "want 1 to 40") {
			t.Errorf("mpTableBytes(%d) error = %v", n, err)
		}
	}
	if _, err := Load(newFakeMem(), Config{CPUs: 0}); err == nil || !strings.Contains(err.Error(), "no RAM regions") {
		t.Errorf("CPUs 0 should mean 1 and fail later on memory; got %v", err)
	}
}
