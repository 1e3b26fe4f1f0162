package measure

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestParseSmapsRealVMMD uses /proc/PID/smaps of a vmmd process booted with
// 256 MiB, copied while the process was stopped together with its
// smaps_rollup, which reported Rss 4852 kB and Pss 4846 kB.
func TestParseSmapsRealVMMD(t *testing.T) {
	f, err := os.Open("testdata/vmmd-256m.smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	maps, err := ParseSmaps(f)
	if err != nil {
		t.Fatalf("ParseSmaps: %v", err)
	}
	if len(maps) != 32 {
		t.Errorf("got %d mappings, want 32", len(maps))
	}
	first := maps[0]
	if first.Start != 0x400000 || first.End != 0x5c0000 || first.Perms != "r-xp" || first.Path != "/work/main/bin/vmmd" {
		t.Errorf("first mapping = %+v, want 400000-5c0000 r-xp /work/main/bin/vmmd", first)
	}
	u, err := GuestRAMUsage(maps, 256<<20)
	if err != nil {
		t.Fatalf("GuestRAMUsage: %v", err)
	}
	want := Usage{TotalRSSKiB: 4852, TotalPSSKiB: 4846, GuestRAMRSSKiB: 256, GuestRAMMappings: 1, OverheadKiB: 4596}
	if u != want {
		t.Errorf("GuestRAMUsage = %+v, want %+v", u, want)
	}
}

// smapsBlock renders one mapping with the full field list of a 6.x kernel.
func smapsBlock(header string, size, rss, pss uint64) string {
	return fmt.Sprintf(`%s
Size:           %8d kB
KernelPageSize:        4 kB
MMUPageSize:           4 kB
Rss:            %8d kB
Pss:            %8d kB
Pss_Dirty:             0 kB
Shared_Clean:          0 kB
Shared_Dirty:          0 kB
Private_Clean:         0 kB
Private_Dirty:         0 kB
Referenced:            0 kB
Anonymous:             0 kB
KSM:                   0 kB
LazyFree:              0 kB
AnonHugePages:         0 kB
ShmemPmdMapped:        0 kB
FilePmdMapped:         0 kB
Shared_Hugetlb:        0 kB
Private_Hugetlb:       0 kB
Swap:                  0 kB
SwapPss:               0 kB
Locked:                0 kB
THPeligible:           0
VmFlags: rd wr mr mw me ac 
`, header, size, rss, pss)
}

// qemuLikeSmaps mimics QEMU's layout, with decoys for the guest RAM search:
// a PROT_NONE reservation and a file mapping of the same 256 MiB size.
func qemuLikeSmaps() string {
	return strings.Join([]string{
		smapsBlock("55697e08c000-55697e493000 r--p 00000000 fe:00 10166284                   /usr/bin/qemu-system-x86_64", 4124, 4056, 816),
		smapsBlock("5569abd52000-5569ac71f000 rw-p 00000000 00:00 0                          [heap]", 10036, 4256, 4256),
		smapsBlock("7f5600000000-7f5610000000 ---p 00000000 00:00 0 ", 262144, 0, 0),
		smapsBlock("7f5610000000-7f5620000000 rw-s 00000000 fe:00 42                         /tmp/my disk.img (deleted)", 262144, 1024, 512),
		smapsBlock("7f56bfe00000-7f56cfe00000 rw-p 00000000 00:00 0 ", 262144, 2048, 2048),
		smapsBlock("7f56cfe00000-7f56cfe01000 ---p 00000000 00:00 0 ", 4, 0, 0),
		smapsBlock("7f56d9e6e000-7f56d9e71000 rw-s 00000000 00:10 1038                       anon_inode:kvm-vcpu:0", 12, 12, 12),
		smapsBlock("ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]", 4, 0, 0),
	}, "")
}

func TestGuestRAMUsageSkipsDecoys(t *testing.T) {
	maps, err := ParseSmaps(strings.NewReader(qemuLikeSmaps()))
	if err != nil {
		t.Fatalf("ParseSmaps: %v", err)
	}
	if got := maps[3].Path; got != "/tmp/my disk.img (deleted)" {
		t.Errorf("path with spaces = %q", got)
	}
	if got := maps[4].Path; got != "" {
		t.Errorf("anonymous mapping path = %q, want empty", got)
	}
	u, err := GuestRAMUsage(maps, 256<<20)
	if err != nil {
		t.Fatalf("GuestRAMUsage: %v", err)
	}
	want := Usage{
		TotalRSSKiB:      4056 + 4256 + 1024 + 2048 + 12,
		TotalPSSKiB:      816 + 4256 + 512 + 2048 + 12,
		GuestRAMRSSKiB:   2048,
		GuestRAMMappings: 1,
		OverheadKiB:      4056 + 4256 + 1024 + 12,
	}
	if u != want {
		t.Errorf("GuestRAMUsage = %+v, want %+v", u, want)
	}
}

func TestGuestRAMUsageCountsSplitAndMemfdRAM(t *testing.T) {
	text := smapsBlock("7f0000000000-7f0008000000 rw-s 00000000 00:01 7 /memfd:guest-ram (deleted)", 131072, 300, 300) +
		smapsBlock("7f1000000000-7f1008000000 rw-p 00000000 00:00 0", 131072, 200, 200) +
		smapsBlock("00400000-005c0000 r-xp 00000000 fe:00 1 /work/main/bin/vmmd", 1792, 1500, 1500)
	maps, err := ParseSmaps(strings.NewReader(text))
	if err != nil {
		t.Fatalf("ParseSmaps: %v", err)
	}
	u, err := GuestRAMUsage(maps, 128<<20)
	if err != nil {
		t.Fatalf("GuestRAMUsage: %v", err)
	}
	if u.GuestRAMMappings != 2 || u.GuestRAMRSSKiB != 500 || u.OverheadKiB != 1500 || u.TotalRSSKiB != 2000 {
		t.Errorf("GuestRAMUsage = %+v, want 2 RAM mappings, 500 kB RAM, 1500 kB overhead", u)
	}
}

func TestGuestRAMUsageNoMatch(t *testing.T) {
	maps, err := ParseSmaps(strings.NewReader(qemuLikeSmaps()))
	if err != nil {
		t.Fatalf("ParseSmaps: %v", err)
	}
	_, err = GuestRAMUsage(maps, 512<<20)
	var nr *NoGuestRAMError
	if !errors.As(err, &nr) {
		t.Fatalf("GuestRAMUsage(512 MiB) error = %v, want *NoGuestRAMError", err)
	}
	if nr.WantKiB != 524288 || len(nr.Largest) != 1 || nr.Largest[0].SizeKiB != 262144 {
		t.Errorf("NoGuestRAMError = %+v", nr)
	}
	if msg := err.Error(); !strings.Contains(msg, "524288 kB") || !strings.Contains(msg, "7f56bfe00000-7f56cfe00000 rw-p 262144 kB") {
		t.Errorf("error message does not name the size and the candidates: %s", msg)
	}
	if _, err := GuestRAMUsage(maps, 1000); err == nil {
		t.Error("GuestRAMUsage with a size that is not a multiple of 1 KiB: no error")
	}
}

func TestParseSmapsRejectsMalformed(t *testing.T) {
	good := smapsBlock("7f0000000000-7f0000001000 rw-p 00000000 00:00 0", 4, 4, 4)
	cases := map[string]string{
		"empty":             "",
		"rss before header": "Rss: 4 kB\n",
		"no kB unit":        strings.Replace(good, "Rss:                   4 kB", "Rss: 4", 1),
		"negative value":    strings.Replace(good, "Pss:                   4 kB", "Pss: -4 kB", 1),
		"missing rss":       strings.Replace(good, "Rss:                   4 kB\n", "", 1),
		"size vs range":     strings.Replace(good, "Size:                  4 kB", "Size: 8 kB", 1),
		"short header":      strings.Replace(good, "7f0000000000-7f0000001000 rw-p 00000000 00:00 0", "7f0000000000-7f0000001000 rw-p", 1),
		"bad address":       strings.Replace(good, "7f0000000000-", "7g0000000000-", 1),
		"reversed range":    strings.Replace(good, "7f0000000000-7f0000001000", "7f0000001000-7f0000000000", 1),
		"bad perms":         strings.Replace(good, " rw-p ", " rw ", 1),
	}
	for name, text := range cases {
		t.Run(name, func(t *testing.T) {
			if name != "empty" && text == good {
				t.Fatal("test case did not alter the input")
			}
			if maps, err := ParseSmaps(strings.NewReader(text)); err == nil {
				t.Errorf("ParseSmaps accepted malformed text, got %+v", maps)
			}
		})
	}
	if _, err := ParseSmaps(strings.NewReader(good)); err != nil {
		t.Errorf("ParseSmaps rejected the well-formed block: %v", err)
	}
}
