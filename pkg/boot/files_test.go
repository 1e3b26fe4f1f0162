package boot

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// Build outputs other parts of the project produce; the tests below use
// them when present and skip, saying so, when not.
const (
	testGuestPath = "../../build/guest/vmmd-testguest.elf"
	linuxDir      = "../../build/linux"
)

func readOptional(t *testing.T, path, what string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		t.Skipf("%s not built: %s is absent", what, path)
	}
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	abs, _ := filepath.Abs(path)
	t.Logf("using %s %s (%d bytes)", what, abs, len(b))
	return b
}

func TestTestGuest(t *testing.T) {
	kernel := readOptional(t, testGuestPath, "test guest")
	kind, err := Detect(kernel)
	if err != nil || kind != KindPVH {
		t.Fatalf("Detect = %v, %v; want PVH ELF", kind, err)
	}
	img, err := parsePVH(kernel)
	if err != nil {
		t.Fatal(err)
	}
	mem := newMem(t, 256*mib)
	e, err := Load(mem, Config{Kernel: kernel, Initrd: pattern(10000, 4), Cmdline: "console=ttyS0", CPUs: 2})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	t.Logf("entry %#x, %d PT_LOAD segments", e.RIP, len(img.segments))
	if e.Mode != Mode32 || e.RIP != img.entry || e.RBX != StartInfoAddr {
		t.Errorf("entry = %+v", *e)
	}
	for _, s := range img.segments {
		if got := readMem(t, mem, s.paddr, len(s.data)); !bytes.Equal(got, s.data) {
			t.Errorf("segment %d at %#x differs from the file", s.index, s.paddr)
		}
	}
	if si := readMem(t, mem, StartInfoAddr, 4); u32(si, 0) != startInfoMagic {
		t.Errorf("hvm_start_info magic = %#x", u32(si, 0))
	}
}

func TestDebianKernel(t *testing.T) {
	matches, err := filepath.Glob(filepath.Join(linuxDir, "vmlinuz*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(matches) == 0 {
		t.Skipf("no Debian kernel: %s/vmlinuz* is absent", linuxDir)
	}
	for _, path := range matches {
		t.Run(filepath.Base(path), func(t *testing.T) {
			kernel := readOptional(t, path, "Debian kernel")
			kind, err := Detect(kernel)
			if err != nil || kind != KindBzImage {
				t.Fatalf("Detect = %v, %v; want bzImage", kind, err)
			}
			bz, err := parseBzImage(kernel)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("protocol %s, %d-byte protected-mode kernel, init_size %#x, pref_address %#x, kernel_alignment %#x, relocatable %v, cmdline_size %d, initrd_addr_max %#x",
				protoString(bz.version), len(bz.kernel), bz.initSize, bz.prefAddress, bz.alignment, bz.relocatable, bz.cmdlineMax, bz.initrdAddrMax)
			mem := newMem(t, 512*mib)
			initrd := pattern(2*mib, 7)
			e, err := Load(mem, Config{Kernel: kernel, Initrd: initrd, Cmdline: "console=ttyS0 earlyprintk=serial", CPUs: 2})
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if e.RIP != 0x100200 || e.Mode != Mode64 {
				t.Errorf("entry = %+v", *e)
			}
			bp := readMem(t, mem, BootParamsAddr, bootParamsSize)
			if string(bp[hdrMagic:hdrMagic+4]) != "HdrS" || u16(bp, hdrVersion) != bz.version {
				t.Errorf("setup header not copied into boot_params")
			}
			rd := uint64(u32(bp, hdrRamdiskImage))
			if rd < bz.footprintEnd() || rd+uint64(len(initrd)) > bz.initrdAddrMax+1 || rd%pageSize != 0 {
				t.Errorf("initrd at %#x overlaps the kernel (ends %#x) or breaks initrd_addr_max", rd, bz.footprintEnd())
			}
			if !bytes.Equal(readMem(t, mem, HighMemAddr, 4096), bz.kernel[:4096]) {
				t.Errorf("kernel not at 1 MiB")
			}
		})
	}
}

// TestDebianVmlinux checks Detect and Load on an uncompressed Debian
// vmlinux (ELF64 with a PVH note), if one has been extracted next to the
// vmlinuz.
func TestDebianVmlinux(t *testing.T) {
	matches, err := filepath.Glob(filepath.Join(linuxDir, "vmlinux*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(matches) == 0 {
		t.Skipf("no Debian vmlinux: %s/vmlinux* is absent", linuxDir)
	}
	for _, path := range matches {
		t.Run(filepath.Base(path), func(t *testing.T) {
			kernel := readOptional(t, path, "Debian vmlinux")
			img, err := parsePVH(kernel)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			mem := newMem(t, 512*mib)
			e, err := Load(mem, Config{Kernel: kernel, Initrd: pattern(mib, 5), Cmdline: "console=ttyS0", CPUs: 2})
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			t.Logf("PVH entry %#x, %d segments", e.RIP, len(img.segments))
			if e.Kind != KindPVH || e.RIP != img.entry {
				t.Errorf("entry = %+v", *e)
			}
		})
	}
}
