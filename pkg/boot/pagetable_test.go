package boot

import (
	"bytes"
	"testing"
)

func TestPageTables(t *testing.T) {
	mem := newMem(t, 64*mib)
	// Stale entries from a previous boot must not survive.
	if err := mem.Write(PML4Addr, bytes.Repeat([]byte{0xFF}, 6*pageSize)); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(mem, Config{Kernel: buildBzImage(bzSpec{})}); err != nil {
		t.Fatalf("Load: %v", err)
	}
	pml4 := readMem(t, mem, PML4Addr, pageSize)
	if got := u64(pml4, 0); got != PDPTAddr|0x3 {
		t.Errorf("PML4[0] = %#x, want %#x", got, PDPTAddr|0x3)
	}
	for i := 1; i < 512; i++ {
		if u64(pml4, 8*i) != 0 {
			t.Errorf("PML4[%d] = %#x, want 0", i, u64(pml4, 8*i))
		}
	}
	pdpt := readMem(t, mem, PDPTAddr, pageSize)
	for i := range 512 {
		e := u64(pdpt, 8*i)
		if e&ptePS != 0 {
			t.Fatalf("PDPT[%d] = %#x has PS set: 1 GiB pages triple-fault here", i, e)
		}
		want := uint64(0)
		if i < 4 {
			want = uint64(PDAddr+i*pageSize) | 0x3
		}
		if e != want {
			t.Errorf("PDPT[%d] = %#x, want %#x", i, e, want)
		}
	}
	for d := range 4 {
		pd := readMem(t, mem, uint64(PDAddr+d*pageSize), pageSize)
		for i := range 512 {
			phys := uint64(d*512+i) * 2 * mib
			if e := u64(pd, 8*i); e != phys|0x83 {
				t.Fatalf("PD%d[%d] = %#x, want %#x (2 MiB page, present, writable)", d, i, e, phys|0x83)
			}
		}
	}
}

func TestGDT(t *testing.T) {
	cases := []struct {
		name   string
		kernel []byte
		code   uint64
	}{
		{"bzImage", buildBzImage(bzSpec{}), 0x00AF9B000000FFFF},
		{"PVH", buildPVH(true, 8), 0x00CF9B000000FFFF},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mem := newMem(t, 64*mib)
			e, err := Load(mem, Config{Kernel: c.kernel})
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			g := readMem(t, mem, e.GDTBase, int(e.GDTLimit)+1)
			want := []uint64{0, 0, c.code, 0x00CF93000000FFFF, 0x00008B0000000067}
			for i, w := range want {
				if got := u64(g, 8*i); got != w {
					t.Errorf("GDT[%#x] = %#016x, want %#016x", 8*i, got, w)
				}
			}
			if u64(g, int(e.CodeSelector)) != c.code || u64(g, int(e.DataSelector)) != 0x00CF93000000FFFF {
				t.Errorf("selectors %#x/%#x do not index the code/data descriptors", e.CodeSelector, e.DataSelector)
			}
		})
	}
}
