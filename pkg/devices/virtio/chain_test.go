package virtio

import (
	"bytes"
	"slices"
	"testing"
)

func TestSubGatherScatter(t *testing.T) {
	a, b, c := []byte("abcd"), []byte("ef"), []byte("ghij")
	bufs := []Buffer{{GPA: 0x100, Data: a}, {GPA: 0x200, Data: b}, {GPA: 0x300, Data: c}}
	if n := TotalLen(bufs); n != 10 {
		t.Fatalf("TotalLen %d", n)
	}
	for _, tc := range []struct {
		off, n uint64
		want   string
		gpas   []uint64
	}{
		{0, 10, "abcdefghij", []uint64{0x100, 0x200, 0x300}},
		{3, 4, "defg", []uint64{0x103, 0x200, 0x300}},
		{4, 2, "ef", []uint64{0x200}},
		{9, 5, "j", []uint64{0x303}},
		{10, 1, "", nil},
		{2, 0, "", nil},
	} {
		s := Sub(bufs, tc.off, tc.n)
		var got []byte
		var gpas []uint64
		for _, x := range s {
			got = append(got, x.Data...)
			gpas = append(gpas, x.GPA)
		}
		if string(got) != tc.want || !slices.Equal(gpas, tc.gpas) {
			t.Errorf("Sub(%d, %d) = %q at %#x, want %q at %#x", tc.off, tc.n, got, gpas, tc.want, tc.gpas)
		}
	}
	dst := make([]byte, 7)
	if n := Gather(dst, bufs); n != 7 || string(dst) != "abcdefg" {
		t.Errorf("Gather = %d %q", n, dst)
	}
	if n := Scatter(bufs, []byte("0123456789XYZ")); n != 10 {
		t.Errorf("Scatter copied %d", n)
	}
	if !bytes.Equal(a, []byte("0123")) || !bytes.Equal(b, []byte("45")) || !bytes.Equal(c, []byte("6789")) {
		t.Errorf("Scatter left %q %q %q", a, b, c)
	}
	if n := Scatter(bufs, []byte("zz")); n != 2 || string(a) != "zz23" {
		t.Errorf("short Scatter = %d, %q", n, a)
	}
}
