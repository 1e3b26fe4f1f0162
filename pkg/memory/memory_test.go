package memory

import (
	"errors"
	"math"
	"testing"
)

func TestLayout(t *testing.T) {
	tests := []struct {
		size uint64
		want []Region
	}{
		{128 << 20, []Region{{0, 128 << 20}}},
		{HoleStart, []Region{{0, HoleStart}}},
		{4 << 30, []Region{{0, HoleStart}, {HighStart, 1 << 30}}},
	}
	for _, tc := range tests {
		m, err := New(tc.size)
		if err != nil {
			t.Fatalf("New(%s): %v", FormatSize(tc.size), err)
		}
		got := m.Regions()
		if len(got) != len(tc.want) {
			t.Fatalf("New(%s) regions = %v, want %v", FormatSize(tc.size), got, tc.want)
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("New(%s) region %d = %+v, want %+v", FormatSize(tc.size), i, got[i], tc.want[i])
			}
		}
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSizeLimits(t *testing.T) {
	for _, size := range []uint64{0, MinSize - PageSize, MaxSize + PageSize, MinSize + 1} {
		if m, err := New(size); err == nil {
			m.Close()
			t.Errorf("New(%d) succeeded, want an error", size)
		}
	}
}

func TestBoundsChecked(t *testing.T) {
	const size = 4<<30 + 64<<20
	const end = HighStart + size - HoleStart
	m, err := New(size)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Write(0x1000, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 5)
	if err := m.Read(0x1000, got); err != nil || string(got) != "hello" {
		t.Fatalf("Read = %q, %v", got, err)
	}
	if err := m.Write(HighStart+10, []byte{1, 2}); err != nil {
		t.Fatalf("write high RAM: %v", err)
	}
	bad := []struct {
		gpa uint64
		n   uint64
	}{
		{HoleStart - 2, 4},      // runs into the hole
		{HoleStart, 1},          // in the hole
		{0xFEE00000, 4},         // LAPIC
		{end, 1},                // past the end
		{math.MaxUint64 - 1, 4}, // wraps around
		{HighStart - 1, 2},      // straddles hole and high RAM
		{0, math.MaxUint64},     // absurd length
		{end - 1, 2},            // last byte plus one
	}
	for _, b := range bad {
		if _, err := m.Slice(b.gpa, b.n); !errors.Is(err, ErrOutOfRange) {
			t.Errorf("Slice(%#x, %#x) err = %v, want ErrOutOfRange", b.gpa, b.n, err)
		}
	}
	if _, err := m.Slice(end-1, 1); err != nil {
		t.Errorf("last byte: %v", err)
	}
}

func TestParseSize(t *testing.T) {
	good := map[string]uint64{"256M": 256 << 20, "2G": 2 << 30, "512": 512 << 20, "1GiB": 1 << 30, "64k": 64 << 10, "1T": 1 << 40, "128MB": 128 << 20}
	for in, want := range good {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "M", "-1G", "1.5G", "12X", "99999999999999999999G"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) succeeded, want an error", in)
		}
	}
	if s := FormatSize(256 << 20); s != "256 MiB" {
		t.Errorf("FormatSize = %q", s)
	}
}

func TestDeviceDirtyBitmap(t *testing.T) {
	const size = 4<<30 + 8<<20
	m, err := New(size)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.MarkDirty(PageSize*3+100, PageSize); err != nil { // spans pages 3 and 4
		t.Fatal(err)
	}
	if err := m.MarkDirty(HighStart+PageSize*65, 1); err != nil {
		t.Fatal(err)
	}
	if err := m.MarkDirty(HoleStart, 1); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("MarkDirty in the hole: %v", err)
	}
	low := make([]uint64, m.DirtyWords(0))
	if err := m.TakeDirty(0, low); err != nil {
		t.Fatal(err)
	}
	if low[0] != 1<<3|1<<4 {
		t.Errorf("low bitmap word 0 = %#x, want pages 3 and 4", low[0])
	}
	high := make([]uint64, m.DirtyWords(1))
	if err := m.TakeDirty(1, high); err != nil {
		t.Fatal(err)
	}
	if high[1] != 1<<1 {
		t.Errorf("high bitmap word 1 = %#x, want page 65", high[1])
	}
	// Taking clears.
	again := make([]uint64, m.DirtyWords(0))
	m.TakeDirty(0, again)
	if again[0] != 0 {
		t.Errorf("bitmap not cleared: %#x", again[0])
	}
	if err := m.TakeDirty(0, nil); err == nil {
		t.Error("short destination accepted")
	}
}
