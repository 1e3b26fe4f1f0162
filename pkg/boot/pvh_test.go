package boot

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/vmmd/vmmd/pkg/memory"
)

// TestStartInfo loads PVH kernels of both ELF classes and reads
// hvm_start_info, its memmap and module list back from guest memory.
func TestStartInfo(t *testing.T) {
	cases := []struct {
		name    string
		class64 bool
		desc    int
		size    uint64
		initrd  []byte
		memmap  []memEntry
		cmdline string
	}{
		{"ELF64 desc8 128MiB initrd", true, 8, 128 * mib, pattern(1*mib+123, 9),
			[]memEntry{{0, 0x9FC00, 1}, {0x9FC00, 0x400, 2}, {0xF0000, 0x10000, 2}, {mib, 127 * mib, 1}}, "console=ttyS0 quiet"},
		{"ELF32 desc4 no initrd", false, 4, 64 * mib, nil,
			[]memEntry{{0, 0x9FC00, 1}, {0x9FC00, 0x400, 2}, {0xF0000, 0x10000, 2}, {mib, 63 * mib, 1}}, ""},
		{"ELF64 desc4 5GiB", true, 4, 5 * gib, pattern(8192, 3),
			[]memEntry{{0, 0x9FC00, 1}, {0x9FC00, 0x400, 2}, {0xF0000, 0x10000, 2}, {mib, 3*gib - mib, 1}, {4 * gib, 2 * gib, 1}}, strings.Repeat("a", pvhCmdlineMax)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mem := newMem(t, c.size)
			// Dirty the kernel's BSS as a previous boot would have.
			if err := mem.Write(2*mib+4096, bytes.Repeat([]byte{0xEE}, 64<<10)); err != nil {
				t.Fatal(err)
			}
			kernel := buildPVH(c.class64, c.desc)
			e, err := Load(mem, Config{Kernel: kernel, Initrd: c.initrd, Cmdline: c.cmdline, CPUs: 1})
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			want := Entry{
				Kind: KindPVH, Mode: Mode32,
				RIP: mib + 16, RBX: 0x6000, CR0: 0x11,
				GDTBase: 0x500, GDTLimit: 0x27,
				CodeSelector: 0x10, DataSelector: 0x18, TSSSelector: 0x20,
			}
			if *e != want {
				t.Errorf("entry = %+v\nwant    %+v", *e, want)
			}
			si := readMem(t, mem, StartInfoAddr, 56)
			nmods := uint32(0)
			if len(c.initrd) > 0 {
				nmods = 1
			}
			checks := []struct {
				name      string
				got, want uint64
			}{
				{"magic", uint64(u32(si, 0)), 0x336ec578},
				{"version", uint64(u32(si, 4)), 1},
				{"flags", uint64(u32(si, 8)), 0},
				{"nr_modules", uint64(u32(si, 12)), uint64(nmods)},
				{"cmdline_paddr", u64(si, 24), CmdlineAddr},
				{"rsdp_paddr", u64(si, 32), 0},
				{"memmap_paddr", u64(si, 40), PVHMemmapAddr},
				{"memmap_entries", uint64(u32(si, 48)), uint64(len(c.memmap))},
				{"reserved", uint64(u32(si, 52)), 0},
			}
			if nmods > 0 {
				checks = append(checks, struct {
					name      string
					got, want uint64
				}{"modlist_paddr", u64(si, 16), PVHModlistAddr})
			}
			for _, ck := range checks {
				if ck.got != ck.want {
					t.Errorf("%s = %#x, want %#x", ck.name, ck.got, ck.want)
				}
			}
			if got := readMem(t, mem, u64(si, 24), len(c.cmdline)+1); string(got) != c.cmdline+"\x00" {
				t.Errorf("cmdline at cmdline_paddr = %.40q..., want %.40q", got, c.cmdline)
			}
			mm := readMem(t, mem, u64(si, 40), len(c.memmap)*24)
			for i, w := range c.memmap {
				got := memEntry{u64(mm, 24*i), u64(mm, 24*i+8), u32(mm, 24*i+16)}
				if got != w || u32(mm, 24*i+20) != 0 {
					t.Errorf("memmap[%d] = %+v, want %+v", i, got, w)
				}
			}
			if nmods > 0 {
				mod := readMem(t, mem, PVHModlistAddr, 32)
				addr, size := u64(mod, 0), u64(mod, 8)
				if size != uint64(len(c.initrd)) || u64(mod, 16) != 0 || u64(mod, 24) != 0 {
					t.Errorf("module 0 = paddr %#x size %#x cmdline %#x, want size %#x", addr, size, u64(mod, 16), len(c.initrd))
				}
				if addr%pageSize != 0 || addr < 2*mib+4096+64<<10 || addr+size > min(c.size, memory.HoleStart) {
					t.Errorf("module 0 at %#x+%#x misplaced", addr, size)
				}
				if !bytes.Equal(readMem(t, mem, addr, len(c.initrd)), c.initrd) {
					t.Errorf("initrd bytes at %#x differ", addr)
				}
			}
			if got := readMem(t, mem, mib, 8192); !bytes.Equal(got, pattern(8192, 1)) {
				t.Errorf("text segment at 1 MiB differs")
			}
			if got := readMem(t, mem, 2*mib, 4096); !bytes.Equal(got, pattern(4096, 2)) {
				t.Errorf("data segment at 2 MiB differs")
			}
			if got := readMem(t, mem, 2*mib+4096, 64<<10); !bytes.Equal(got, make([]byte, 64<<10)) {
				t.Errorf("BSS after the data segment is not zeroed")
			}
		})
	}
}

func TestPVHLoadErrors(t *testing.T) {
	seg := func(paddr, memsz uint64) []byte {
		return buildELF(elfSpec{class64: true,
			segs:  []elfSeg{{paddr: paddr, data: pattern(4096, 1), memsz: memsz}},
			notes: []elfNote{pvhNote(paddr, 8)}})
	}
	cases := []struct {
		name   string
		kernel []byte
		cfg    Config
		want   string
	}{
		{"segment on the GDT", seg(0x500, 0), Config{}, "PT_LOAD segment 1 [0x500, 0x1500) overlaps the real-mode IVT, BIOS data area and GDT at [0x0, 0x1000)"},
		{"segment on start info", seg(0x5800, 0), Config{}, "PT_LOAD segment 1 [0x5800, 0x6800) overlaps the hvm_start_info, memmap and modlist at [0x6000, 0x7000)"},
		{"segment one byte into start info", seg(0x5001, 0x1000), Config{}, "PT_LOAD segment 1 [0x5001, 0x6001) overlaps the hvm_start_info"},
		{"segment right below start info", seg(0x5000, 0), Config{}, ""},
		{"segment right after start info", seg(0x7000, 0), Config{}, ""},
		{"segment on the cmdline", seg(0x20800, 0), Config{}, "overlaps the command line at [0x20000, 0x21000)"},
		{"segment into the EBDA", seg(0x9F000, 0x1000+1), Config{}, "PT_LOAD segment 1 [0x9f000, 0xa0001) overlaps the EBDA and BIOS area at [0x9fc00, 0x100000)"},
		{"segment in the BIOS area", seg(0xF0000, 0), Config{}, "overlaps the EBDA and BIOS area"},
		{"segment beyond RAM", seg(60*mib, 8*mib), Config{}, "PT_LOAD segment 1 [0x3c00000, 0x4400000) does not fit in guest RAM [0x0, 0x4000000)"},
		{"segment in the MMIO hole", seg(memory.HoleStart, 0), Config{}, "does not fit in guest RAM"},
		{"cmdline too long", buildPVH(true, 8), Config{Cmdline: strings.Repeat("x", 4096)}, "cmdline is 4096 bytes; at most 4095 are accepted (vmmd's PVH limit)"},
		{"initrd too big", buildPVH(true, 8), Config{Initrd: make([]byte, 63*mib)},
			"initrd of 66060288 bytes does not fit: it must lie between the kernel end 0x211000 and 0x4000000, 64942080 bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.cfg.Kernel = c.kernel
			_, err := Load(newMem(t, 64*mib), c.cfg)
			if c.want == "" {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Load error = %v, want it to contain %q", err, c.want)
			}
			if !strings.HasPrefix(err.Error(), "load PVH ELF: ") {
				t.Errorf("error %q does not name the operation", err)
			}
		})
	}
}

// TestPVHLowSegment checks that a segment in free memory below 1 MiB (an AP
// trampoline) loads, and that the initrd still goes above 1 MiB.
func TestPVHLowSegment(t *testing.T) {
	kernel := buildELF(elfSpec{class64: true,
		segs:  []elfSeg{{paddr: 0x8000, data: pattern(4096, 1)}, {paddr: 0x1000, data: pattern(0x5000, 2)}},
		notes: []elfNote{pvhNote(0x8000, 4)}})
	mem := newMem(t, 16*mib)
	e, err := Load(mem, Config{Kernel: kernel, Initrd: pattern(15*mib-4096, 8)})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if e.RIP != 0x8000 {
		t.Errorf("RIP = %#x", e.RIP)
	}
	if !bytes.Equal(readMem(t, mem, 0x8000, 4096), pattern(4096, 1)) || !bytes.Equal(readMem(t, mem, 0x1000, 0x5000), pattern(0x5000, 2)) {
		t.Errorf("low segments not loaded")
	}
	if mod := readMem(t, mem, PVHModlistAddr, 8); u64(mod, 0) != mib+4096 {
		t.Errorf("initrd at %#x, want %#x", u64(mod, 0), mib+4096)
	}
	_, err = Load(mem, Config{Kernel: kernel, Initrd: make([]byte, 15*mib+1)})
	if err == nil || !strings.Contains(err.Error(), "between the kernel end 0x100000 and 0x1000000") {
		t.Errorf("an initrd below 1 MiB was not refused: %v", err)
	}
}

// TestLoadWritesNothingOnError checks that validation precedes writing.
func TestLoadWritesNothingOnError(t *testing.T) {
	mem := newFakeMem(memory.Region{GPA: 0, Size: 64 * mib})
	_, err := Load(mem, Config{Kernel: buildPVH(true, 8), Initrd: make([]byte, 63*mib)})
	if err == nil {
		t.Fatal("Load accepted an initrd that cannot fit")
	}
	if len(mem.pages) != 0 {
		t.Errorf("a failed Load wrote %d pages", len(mem.pages))
	}
}

func TestScanNotes(t *testing.T) {
	le := binary.LittleEndian
	note := func(align int, name string, typ uint32, desc []byte) []byte {
		b := make([]byte, 12)
		le.PutUint32(b[0:], uint32(len(name)+1))
		le.PutUint32(b[4:], uint32(len(desc)))
		le.PutUint32(b[8:], typ)
		b = append(append(b, name...), 0)
		for len(b)%align != 0 {
			b = append(b, 0)
		}
		b = append(b, desc...)
		for len(b)%align != 0 {
			b = append(b, 0)
		}
		return b
	}
	entry4 := []byte{0x78, 0x56, 0x34, 0x12}
	cases := []struct {
		name  string
		notes []byte
		align uint64
		want  uint64
		found bool
		err   string
	}{
		{"align 4", append(note(4, "GNU", 3, []byte{1, 2, 3, 4, 5}), note(4, "Xen", 18, entry4)...), 4, 0x12345678, true, ""},
		// 8-byte aligned notes (GNU properties): a 5-byte name pads the
		// descriptor to offset 24, not 12+8.
		{"align 8", append(note(8, "GNU", 5, make([]byte, 12)), note(8, "Xenon", 1, []byte{9})...), 8, 0, false, ""},
		{"align 8 found", append(note(8, "LINUX", 1, make([]byte, 3)), note(8, "Xen", 18, entry4)...), 8, 0x12345678, true, ""},
		{"other owner, same type", note(4, "Xe", 18, entry4), 4, 0, false, ""},
		{"truncated", note(4, "Xen", 18, entry4)[:18], 4, 0, false, "runs past the 18-byte segment"},
		{"huge namesz", []byte{0xFF, 0xFF, 0xFF, 0xFF, 4, 0, 0, 0, 18, 0, 0, 0}, 4, 0, false, "runs past"},
		{"trailing bytes ignored", append(note(4, "Xen", 18, entry4), 1, 2, 3), 4, 0x12345678, true, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, found, err := scanNotes(c.notes, le, c.align)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error = %v, want %q", err, c.err)
				}
				return
			}
			if err != nil || got != c.want || found != c.found {
				t.Fatalf("scanNotes = %#x, %v, %v; want %#x, %v", got, found, err, c.want, c.found)
			}
		})
	}
}
