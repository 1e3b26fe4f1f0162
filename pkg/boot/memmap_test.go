package boot

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/vmmd/vmmd/pkg/memory"
)

func TestRealMemoryIsMemory(t *testing.T) {
	var m Memory = newMem(t, memory.MinSize)
	if got := m.Regions(); len(got) != 1 || got[0].GPA != 0 || got[0].Size != memory.MinSize {
		t.Errorf("Regions() = %+v", got)
	}
}

func TestRAMLayout(t *testing.T) {
	lowMap := func(end uint64) []memEntry {
		return []memEntry{{0, 0x9FC00, 1}, {0x9FC00, 0x400, 2}, {0xF0000, 0x10000, 2}, {mib, end - mib, 1}}
	}
	cases := []struct {
		name    string
		regions []memory.Region
		lowEnd  uint64
		memmap  []memEntry
		want    string
	}{
		{"128MiB", []memory.Region{{GPA: 0, Size: 128 * mib}}, 128 * mib, lowMap(128 * mib), ""},
		{"3GiB", []memory.Region{{GPA: 0, Size: 3 * gib}}, 3 * gib, lowMap(3 * gib), ""},
		{"8GiB", []memory.Region{{GPA: 0, Size: 3 * gib}, {GPA: 4 * gib, Size: 5 * gib}}, 3 * gib,
			append(lowMap(3*gib), memEntry{4 * gib, 5 * gib, 1}), ""},
		{"low region runs into the hole", []memory.Region{{GPA: 0, Size: 4 * gib}}, 3 * gib, lowMap(3 * gib), ""},
		{"none", nil, 0, nil, "no RAM regions"},
		{"not at 0", []memory.Region{{GPA: mib, Size: 64 * mib}}, 0, nil, "guest RAM starts at 0x100000"},
		{"only 1 MiB", []memory.Region{{GPA: 0, Size: mib}}, 0, nil, "kernel needs RAM above 1 MiB"},
		{"empty region", []memory.Region{{GPA: 0, Size: 64 * mib}, {GPA: 4 * gib, Size: 0}}, 0, nil, "region 1 at 0x100000000 is empty"},
		{"overlap", []memory.Region{{GPA: 0, Size: 64 * mib}, {GPA: 32 * mib, Size: mib}}, 0, nil, "overlaps or precedes"},
		{"wraps", []memory.Region{{GPA: 0, Size: 64 * mib}, {GPA: 1 << 63, Size: 1 << 63}}, 0, nil, "wraps around"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l, err := newRAMLayout(c.regions)
			if c.want != "" {
				if err == nil || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("error = %v, want it to contain %q", err, c.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if l.lowEnd != c.lowEnd {
				t.Errorf("lowEnd = %#x, want %#x", l.lowEnd, c.lowEnd)
			}
			if !reflect.DeepEqual(l.memmap, c.memmap) {
				t.Errorf("memmap = %+v\nwant     %+v", l.memmap, c.memmap)
			}
		})
	}
}

// TestLoadOutOfRangeWrapped checks that a memory error reaches the caller
// wrapped, with the operation named.
func TestLoadOutOfRangeWrapped(t *testing.T) {
	// The fake claims RAM it then refuses to hold above 16 MiB.
	mem := &refusingMem{fakeMem: newFakeMem(memory.Region{GPA: 0, Size: 64 * mib}), limit: 16 * mib}
	_, err := Load(mem, Config{Kernel: buildBzImage(bzSpec{}), Initrd: make([]byte, mib)})
	if !errors.Is(err, memory.ErrOutOfRange) {
		t.Fatalf("Load error = %v, want memory.ErrOutOfRange", err)
	}
	if !strings.Contains(err.Error(), "write initrd at ") {
		t.Errorf("error %q does not name what was written", err)
	}
}

type refusingMem struct {
	*fakeMem
	limit uint64
}

func (m *refusingMem) Write(gpa uint64, p []byte) error {
	if gpa+uint64(len(p)) > m.limit {
		return fmt.Errorf("%w: refused above %#x", memory.ErrOutOfRange, m.limit)
	}
	return m.fakeMem.Write(gpa, p)
}
