package boot

import (
	"bytes"
	"testing"

	"github.com/vmmd/vmmd/pkg/memory"
)

// FuzzDetectAndLoad feeds arbitrary kernel images (and command lines,
// initrd sizes and CPU counts) to Detect and Load: they must return errors,
// never panic, and agree with each other.
func FuzzDetectAndLoad(f *testing.F) {
	bz := buildBzImage(bzSpec{kernelSize: 4096})
	pvh64 := buildPVH(true, 8)
	pvh32 := buildPVH(false, 4)
	for _, seed := range [][]byte{
		bz, pvh64, pvh32,
		bz[:0x300], pvh64[:200], pvh32[:120],
		[]byte(elfMagic), nil, bytes.Repeat([]byte{0xFF}, 1024),
	} {
		f.Add(seed, "console=ttyS0", uint16(100), uint8(2))
	}
	f.Add(bz, "", uint16(0), uint8(0))
	f.Add(pvh64, "a\x00b", uint16(65535), uint8(41))

	// One guest for the whole run: Load must cope with memory a previous
	// boot left dirty anyway.
	mem, err := memory.New(32 * mib)
	if err != nil {
		f.Fatalf("memory.New: %v", err)
	}
	f.Cleanup(func() { _ = mem.Close() })

	f.Fuzz(func(t *testing.T, kernel []byte, cmdline string, initrdPages uint16, cpus uint8) {
		kind, derr := Detect(kernel)
		initrd := make([]byte, int(initrdPages)*37)
		e, lerr := Load(mem, Config{Kernel: kernel, Initrd: initrd, Cmdline: cmdline, CPUs: int(cpus)})
		if derr != nil {
			if lerr == nil {
				t.Fatalf("Detect refused (%v) but Load accepted", derr)
			}
			return
		}
		if lerr != nil {
			return
		}
		if e.Kind != kind {
			t.Fatalf("Detect says %v, Load says %v", kind, e.Kind)
		}
		if e.RIP < HighMemAddr || e.RIP >= 32*mib {
			t.Fatalf("entry point %#x outside the loaded kernel's RAM", e.RIP)
		}
	})
}
