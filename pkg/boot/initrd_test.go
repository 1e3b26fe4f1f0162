package boot

import (
	"strings"
	"testing"
)

func TestPlaceInitrd(t *testing.T) {
	cases := []struct {
		name               string
		size, floor, limit uint64
		want               uint64
		err                string
	}{
		{"top of RAM", 0x1000, 0x200000, 0x8000000, 0x7FFF000, ""},
		{"unaligned size rounds down", 0x1001, 0x200000, 0x8000000, 0x7FFE000, ""},
		{"unaligned limit", 0x1000, 0x200000, 0x7FFFFFF, 0x7FFE000, ""},
		{"exactly fits", 0x10000, 0x200000, 0x210000, 0x200000, ""},
		{"unaligned floor rounds up", 0x10000, 0x200001, 0x211000, 0x201000, ""},
		{"one page too big", 0x11000, 0x200000, 0x210000, 0, "initrd of 69632 bytes does not fit: it must lie between the kernel end 0x200000 and 0x210000, 65536 bytes"},
		{"bigger than the limit", 0x10000, 0, 0x1000, 0, "does not fit"},
		{"floor above limit", 0x1000, 0x300000, 0x200000, 0, ", 0 bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := placeInitrd(c.size, c.floor, c.limit)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error = %v, want it to contain %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want || got%pageSize != 0 || got+c.size > c.limit || got < c.floor {
				t.Errorf("placeInitrd = %#x, want %#x", got, c.want)
			}
		})
	}
}

// TestInitrdPlacementBzImage checks placement against the kernel's own
// limits: below initrd_addr_max, above init_size from the decompression
// address, and below the end of RAM.
func TestInitrdPlacementBzImage(t *testing.T) {
	cases := []struct {
		name    string
		spec    bzSpec
		memSize uint64
		initrd  uint64
		want    uint64
	}{
		{"limited by RAM", bzSpec{}, 128 * mib, 5 * mib, 123 * mib},
		{"limited by initrd_addr_max", bzSpec{initrdAddrMax: 0x37FFFFFF}, 2 * gib, 5 * mib, 0x38000000 - 5*mib},
		{"limited by 3 GiB hole", bzSpec{initrdAddrMax: 0xFFFFFFFF}, 5 * gib, 5 * mib, 3*gib - 5*mib},
		// init_size from 16 MiB (LOAD_PHYSICAL_ADDR) ends at 56 MiB: the
		// initrd fits right above it.
		{"just above init_size", bzSpec{initSize: 40 * mib}, 64 * mib, 8 * mib, 56 * mib},
		// A kernel that is not relocatable decompresses at pref_address.
		{"fixed kernel: above pref_address + init_size", bzSpec{fixed: true, prefAddress: 32 * mib, initSize: 8 * mib}, 48 * mib, 8 * mib, 40 * mib},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mem := newMem(t, c.memSize)
			if _, err := Load(mem, Config{Kernel: buildBzImage(c.spec), Initrd: make([]byte, c.initrd)}); err != nil {
				t.Fatalf("Load: %v", err)
			}
			bp := readMem(t, mem, BootParamsAddr, bootParamsSize)
			got := uint64(u32(bp, hdrRamdiskImage)) | uint64(u32(bp, bpExtRamdiskImage))<<32
			if got != c.want {
				t.Errorf("initrd at %#x, want %#x", got, c.want)
			}
		})
	}
	// One byte more than fits above init_size is refused.
	mem := newMem(t, 64*mib)
	_, err := Load(mem, Config{Kernel: buildBzImage(bzSpec{initSize: 40 * mib}), Initrd: make([]byte, 8*mib+1)})
	if err == nil || !strings.Contains(err.Error(), "between the kernel end 0x3800000 and 0x4000000") {
		t.Fatalf("Load error = %v, want the initrd refused above init_size", err)
	}
	_, err = Load(mem, Config{Kernel: buildBzImage(bzSpec{fixed: true, prefAddress: 32 * mib, initSize: 8 * mib}), Initrd: make([]byte, 24*mib+1)})
	if err == nil || !strings.Contains(err.Error(), "between the kernel end 0x2800000 and 0x4000000") {
		t.Fatalf("Load error = %v, want the initrd refused below pref_address + init_size", err)
	}
}
