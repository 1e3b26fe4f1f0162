package boot

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
)

func TestBzImageValidation(t *testing.T) {
	le := binary.LittleEndian
	valid := func() []byte { return buildBzImage(bzSpec{}) }
	cases := []struct {
		name  string
		image func() []byte
		want  string
	}{
		{"ELF passed as bzImage", func() []byte { return buildPVH(true, 8) }, "no HdrS magic at 0x202): the file is an ELF"},
		{"empty file", func() []byte { return nil }, "no HdrS magic at 0x202"},
		{"no HdrS", func() []byte { b := valid(); copy(b[hdrMagic:], "HdrT"); return b }, "no HdrS magic at 0x202"},
		{"truncated inside header", func() []byte { return valid()[:0x220] }, "bzImage truncated: 544 bytes, the protocol 2.15 setup header needs 0x268"},
		{"bad boot_flag", func() []byte { b := valid(); le.PutUint16(b[hdrBootFlag:], 0x1234); return b }, "boot_flag at 0x1FE is 0x1234, want 0xAA55"},
		{"protocol 2.05", func() []byte { b := valid(); le.PutUint16(b[hdrVersion:], 0x0205); return b }, "bzImage protocol 2.05 too old: need >= 2.06 with XLF_KERNEL_64"},
		{"protocol 2.10", func() []byte { b := valid(); le.PutUint16(b[hdrVersion:], 0x020A); return b }, "protocol 2.10 has no xloadflags"},
		{"no XLF_KERNEL_64", func() []byte { b := valid(); le.PutUint16(b[hdrXloadflags:], 0x2); return b }, "XLF_KERNEL_64 not set in xloadflags 0x2"},
		{"not LOADED_HIGH", func() []byte { b := valid(); b[hdrLoadflags] = 0; return b }, "lack LOADED_HIGH"},
		{"setup_sects beyond file", func() []byte { b := valid(); b[hdrSetupSects] = 200; return b }, "setup_sects 200 puts the protected-mode kernel at 0x19200, at or beyond the end"},
		{"setup_sects 0 means 4", func() []byte { b := valid(); b[hdrSetupSects] = 0; return b }, ""},
		{"protected-mode part truncated", func() []byte { return valid()[:5*512+1000] }, "bzImage truncated: protected-mode kernel is 1000 bytes, syssize says 65536"},
		{"header shorter than 2.12", func() []byte { b := valid(); b[hdrJump+1] = 0x30; return b }, "setup header ends at 0x232"},
		{"kernel_alignment not power of two", func() []byte { b := valid(); le.PutUint32(b[hdrKernelAlignment:], 0x300000); return b }, "kernel_alignment 0x300000 is not a power of two"},
		{"kernel_alignment zero", func() []byte { b := valid(); le.PutUint32(b[hdrKernelAlignment:], 0); return b }, "kernel_alignment 0x0"},
		{"init_size zero", func() []byte { b := valid(); le.PutUint32(b[hdrInitSize:], 0); return b }, "init_size is 0"},
		{"not relocatable, pref_address low", func() []byte {
			b := valid()
			b[hdrRelocatable] = 0
			le.PutUint64(b[hdrPrefAddress:], 0x10000)
			return b
		}, "pref_address 0x10000 is not between 1 MiB and 4 GiB"},
		{"pref_address above 4 GiB", func() []byte { b := valid(); le.PutUint64(b[hdrPrefAddress:], 1<<40); return b }, "pref_address 0x10000000000 is above 4 GiB"},
		{"not relocatable, fine", func() []byte { b := valid(); b[hdrRelocatable] = 0; return b }, ""},
		{"valid", valid, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img := c.image()
			_, err := parseBzImage(img)
			kind, derr := Detect(img)
			if c.want == "" {
				if err != nil || derr != nil {
					t.Fatalf("parse: %v; Detect: %v; want success", err, derr)
				}
				if kind != KindBzImage {
					t.Fatalf("Detect = %v, want bzImage", kind)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("parse error = %v, want it to contain %q", err, c.want)
			}
			if derr == nil && c.name != "ELF passed as bzImage" {
				t.Fatalf("Detect accepted an image parseBzImage refuses (%v)", err)
			}
		})
	}
}

func TestDetect(t *testing.T) {
	noteless := buildELF(elfSpec{class64: true, segs: []elfSeg{{paddr: mib, data: pattern(64, 1)}}})
	badDesc := buildELF(elfSpec{class64: true, segs: []elfSeg{{paddr: mib, data: pattern(64, 1)}},
		notes: []elfNote{{name: "Xen", typ: xenElfnotePhys32Entry, desc: []byte{1, 2}}}})
	highEntry := buildELF(elfSpec{class64: true, segs: []elfSeg{{paddr: mib, data: pattern(64, 1)}},
		notes: []elfNote{pvhNote(1<<33, 8)}})
	outside := buildELF(elfSpec{segs: []elfSeg{{paddr: mib, data: pattern(64, 1)}}, notes: []elfNote{pvhNote(3*mib, 4)}})
	arm := buildELF(elfSpec{class64: true, machine: 183, segs: []elfSeg{{paddr: mib, data: pattern(64, 1)}}, notes: []elfNote{pvhNote(mib, 4)}})
	bssBad := buildPVH(false, 4)
	// Make the first PT_LOAD claim more file bytes than memory bytes.
	phoff := 52 + 32 // second program header (the first is PT_NOTE)
	binary.LittleEndian.PutUint32(bssBad[phoff+20:], 16)
	cases := []struct {
		name  string
		image []byte
		kind  Kind
		want  string
	}{
		{"PVH ELF64 desc 8", buildPVH(true, 8), KindPVH, ""},
		{"PVH ELF64 desc 4", buildPVH(true, 4), KindPVH, ""},
		{"PVH ELF32 desc 4", buildPVH(false, 4), KindPVH, ""},
		{"PVH ELF32 desc 8", buildPVH(false, 8), KindPVH, ""},
		{"PVH ELF64 8-byte aligned notes", buildELF(elfSpec{class64: true, align8: true,
			segs:  []elfSeg{{paddr: mib, data: pattern(64, 1)}},
			notes: []elfNote{{name: "LINUX", typ: 1, desc: []byte{1, 2, 3}}, pvhNote(mib, 4)}}), KindPVH, ""},
		{"bzImage", buildBzImage(bzSpec{}), KindBzImage, ""},
		{"empty", nil, 0, "not a bzImage (no HdrS magic at 0x202) and not an ELF with a PVH entry note"},
		{"garbage", bytes.Repeat([]byte{0x90}, 4096), 0, "not a bzImage (no HdrS magic at 0x202) and not an ELF with a PVH entry note"},
		{"ELF without note", noteless, 0, "ELF without XEN_ELFNOTE_PHYS32_ENTRY: vmmd needs a PVH-capable ELF"},
		{"note desc 2 bytes", badDesc, 0, "descriptor is 2 bytes, want 4 or 8"},
		{"entry above 4 GiB", highEntry, 0, "is not a 32-bit address"},
		{"entry outside segments", outside, 0, "PVH entry point 0x300000 lies in no PT_LOAD segment"},
		{"not x86", arm, 0, "vmmd needs an x86"},
		{"filesz > memsz", bssBad, 0, "file size 0x2000 exceeds memory size 0x10"},
		{"truncated ELF", buildPVH(true, 8)[:100], 0, "ELF"},
		{"truncated segment data", buildPVH(true, 8)[:1000], 0, "beyond the end of the 1000-byte file"},
		{"ELF magic only", []byte("\x7fELF"), 0, "parse ELF"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			kind, err := Detect(c.image)
			if c.want == "" {
				if err != nil {
					t.Fatalf("Detect: %v", err)
				}
				if kind != c.kind {
					t.Fatalf("Detect = %v, want %v", kind, c.kind)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Detect error = %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestKindAndModeStrings(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{KindPVH.String(), "PVH ELF"},
		{KindBzImage.String(), "bzImage"},
		{Kind(9).String(), "Kind(9)"},
		{Mode32.String(), "32-bit protected mode"},
		{Mode64.String(), "64-bit long mode"},
	} {
		if c.got != c.want {
			t.Errorf("String() = %q, want %q", c.got, c.want)
		}
	}
}

// TestBootParams loads a bzImage into guests of several sizes and checks the
// zero page, its e820 table and the entry state.
func TestBootParams(t *testing.T) {
	cases := []struct {
		size uint64
		e820 []memEntry
	}{
		{128 * mib, []memEntry{{0, 0x9FC00, 1}, {0x9FC00, 0x400, 2}, {0xF0000, 0x10000, 2}, {mib, 127 * mib, 1}}},
		{256 * mib, []memEntry{{0, 0x9FC00, 1}, {0x9FC00, 0x400, 2}, {0xF0000, 0x10000, 2}, {mib, 255 * mib, 1}}},
		{2 * gib, []memEntry{{0, 0x9FC00, 1}, {0x9FC00, 0x400, 2}, {0xF0000, 0x10000, 2}, {mib, 2*gib - mib, 1}}},
		{3 * gib, []memEntry{{0, 0x9FC00, 1}, {0x9FC00, 0x400, 2}, {0xF0000, 0x10000, 2}, {mib, 3*gib - mib, 1}}},
		{5 * gib, []memEntry{{0, 0x9FC00, 1}, {0x9FC00, 0x400, 2}, {0xF0000, 0x10000, 2}, {mib, 3*gib - mib, 1}, {4 * gib, 2 * gib, 1}}},
	}
	for _, c := range cases {
		t.Run(formatSize(c.size), func(t *testing.T) {
			mem := newMem(t, c.size)
			image := buildBzImage(bzSpec{})
			initrd := pattern(3*mib+5, 0x33)
			cmdline := "console=ttyS0 root=/dev/vda"
			e, err := Load(mem, Config{Kernel: image, Initrd: initrd, Cmdline: cmdline, CPUs: 2})
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			bp := readMem(t, mem, BootParamsAddr, bootParamsSize)

			// Setup header copied from the image, then the loader's fields.
			hdrEnd := 0x202 + int(image[0x201])
			for off := hdrStart; off < hdrEnd; off++ {
				switch {
				case off == hdrVidMode, off == hdrVidMode+1, off == hdrTypeOfLoader, off == hdrLoadflags,
					off >= hdrRamdiskImage && off < hdrRamdiskSize+4,
					off >= hdrHeapEndPtr && off < hdrHeapEndPtr+2,
					off >= hdrCmdLinePtr && off < hdrCmdLinePtr+4:
					continue
				}
				if bp[off] != image[off] {
					t.Fatalf("boot_params[%#x] = %#x, image has %#x", off, bp[off], image[off])
				}
			}
			if bp[0x26C] != 0 {
				t.Errorf("byte after the setup header was copied: %#x", bp[0x26C])
			}
			if bp[0x1EF] != 0 {
				t.Errorf("sentinel = %#x, want 0", bp[0x1EF])
			}
			checks := []struct {
				name      string
				got, want uint64
			}{
				{"type_of_loader", uint64(bp[hdrTypeOfLoader]), 0xFF},
				{"loadflags", uint64(bp[hdrLoadflags]), loadedHigh | canUseHeap},
				{"heap_end_ptr", uint64(u16(bp, hdrHeapEndPtr)), 0xFE00},
				{"vid_mode", uint64(u16(bp, hdrVidMode)), 0xFFFF},
				{"cmd_line_ptr", uint64(u32(bp, hdrCmdLinePtr)), CmdlineAddr},
				{"ext_cmd_line_ptr", uint64(u32(bp, bpExtCmdLinePtr)), 0},
				{"ramdisk_size", uint64(u32(bp, hdrRamdiskSize)), uint64(len(initrd))},
				{"ext_ramdisk_size", uint64(u32(bp, bpExtRamdiskSize)), 0},
				{"ext_ramdisk_image", uint64(u32(bp, bpExtRamdiskImage)), 0},
				{"acpi_rsdp_addr", u64(bp, bpAcpiRsdpAddr), 0},
				{"e820_entries", uint64(bp[bpE820Entries]), uint64(len(c.e820))},
			}
			for _, ck := range checks {
				if ck.got != ck.want {
					t.Errorf("%s = %#x, want %#x", ck.name, ck.got, ck.want)
				}
			}
			for i, want := range c.e820 {
				o := bpE820Table + i*e820EntrySize
				got := memEntry{u64(bp, o), u64(bp, o+8), u32(bp, o+16)}
				if got != want {
					t.Errorf("e820[%d] = %+v, want %+v", i, got, want)
				}
			}
			if rest := bp[bpE820Table+len(c.e820)*e820EntrySize : bpE820Table+bpE820Max*e820EntrySize]; !bytes.Equal(rest, make([]byte, len(rest))) {
				t.Errorf("e820 table has data past entry %d", len(c.e820))
			}

			// Initrd: where boot_params says, page aligned, under 2 GiB
			// (initrd_addr_max 0x7FFFFFFF), above the kernel.
			rd := uint64(u32(bp, hdrRamdiskImage))
			if rd%pageSize != 0 || rd+uint64(len(initrd)) > min(c.size, 2*gib) || rd < 16*mib+4*mib {
				t.Errorf("initrd at %#x (+%#x) misplaced", rd, len(initrd))
			}
			if want := (min(c.size, 2*gib) - uint64(len(initrd))) &^ (pageSize - 1); rd != want {
				t.Errorf("initrd at %#x, want the highest page-aligned place %#x", rd, want)
			}
			if !bytes.Equal(readMem(t, mem, rd, len(initrd)), initrd) {
				t.Errorf("initrd bytes at %#x differ", rd)
			}
			if got := readMem(t, mem, CmdlineAddr, len(cmdline)+1); string(got) != cmdline+"\x00" {
				t.Errorf("cmdline in memory = %q", got)
			}
			if !bytes.Equal(readMem(t, mem, HighMemAddr, len(image)-5*512), image[5*512:]) {
				t.Errorf("protected-mode kernel at 1 MiB differs from the image")
			}
			want := Entry{
				Kind: KindBzImage, Mode: Mode64,
				RIP: 0x100200, RSP: 0x8FF0, RSI: 0x7000,
				CR0: 0x80000011, CR3: 0x9000, CR4: 0x20, EFER: 0x500,
				GDTBase: 0x500, GDTLimit: 0x27,
				CodeSelector: 0x10, DataSelector: 0x18, TSSSelector: 0x20,
			}
			if *e != want {
				t.Errorf("entry = %+v\nwant    %+v", *e, want)
			}
		})
	}
}

func formatSize(n uint64) string {
	if n%gib == 0 {
		return fmt.Sprintf("%dGiB", n/gib)
	}
	return fmt.Sprintf("%dMiB", n/mib)
}

// TestSetupHeaderCopyBounded checks that a jump offset pointing far past the
// header copies no more than boot_params has room for before its own fields.
func TestSetupHeaderCopyBounded(t *testing.T) {
	image := buildBzImage(bzSpec{})
	image[0x201] = 0xFF // header "ends" at 0x301
	for off := hdrMaxEnd; off < 0x301; off++ {
		image[off] = 0xAB
	}
	mem := newMem(t, 64*mib)
	if _, err := Load(mem, Config{Kernel: image}); err != nil {
		t.Fatalf("Load: %v", err)
	}
	bp := readMem(t, mem, BootParamsAddr, bootParamsSize)
	if bp[hdrMaxEnd-1] != image[hdrMaxEnd-1] {
		t.Errorf("header byte %#x not copied", hdrMaxEnd-1)
	}
	for off := hdrMaxEnd; off < bpE820Table; off++ {
		if bp[off] != 0 {
			t.Fatalf("boot_params[%#x] = %#x: image bytes past 0x290 were copied", off, bp[off])
		}
	}
}

func TestBzImageLoadErrors(t *testing.T) {
	cases := []struct {
		name string
		spec bzSpec
		cfg  func(*Config)
		size uint64
		want string
	}{
		{"cmdline longer than cmdline_size", bzSpec{cmdlineSize: 16}, func(c *Config) { c.Cmdline = strings.Repeat("x", 17) }, 64 * mib,
			"cmdline is 17 bytes; at most 16 are accepted (the kernel's cmdline_size)"},
		{"cmdline exactly cmdline_size", bzSpec{cmdlineSize: 16}, func(c *Config) { c.Cmdline = strings.Repeat("x", 16) }, 64 * mib, ""},
		{"cmdline with NUL", bzSpec{}, func(c *Config) { c.Cmdline = "a\x00b" }, 64 * mib, "cmdline has a NUL byte at offset 1"},
		{"kernel does not fit", bzSpec{initSize: 60 * mib}, func(*Config) {}, 64 * mib,
			"kernel needs guest RAM up to 0x4c00000"},
		{"initrd too big", bzSpec{}, func(c *Config) { c.Initrd = make([]byte, 50*mib) }, 64 * mib,
			"initrd of 52428800 bytes does not fit: it must lie between the kernel end 0x1400000 and 0x4000000, 46137344 bytes"},
		{"initrd_addr_max below kernel", bzSpec{initrdAddrMax: 0x13FFFFF}, func(c *Config) { c.Initrd = make([]byte, 10) }, 64 * mib,
			"between the kernel end 0x1400000 and 0x1400000, 0 bytes"},
		{"too many CPUs", bzSpec{}, func(c *Config) { c.CPUs = MaxCPUs + 1 }, 64 * mib, "41 CPUs, want 1 to 40"},
		{"negative CPUs", bzSpec{}, func(c *Config) { c.CPUs = -1 }, 64 * mib, "-1 CPUs"},
		{"max CPUs", bzSpec{}, func(c *Config) { c.CPUs = MaxCPUs }, 64 * mib, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := Config{Kernel: buildBzImage(c.spec)}
			c.cfg(&cfg)
			_, err := Load(newMem(t, c.size), cfg)
			if c.want == "" {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Load error = %v, want it to contain %q", err, c.want)
			}
		})
	}
}
