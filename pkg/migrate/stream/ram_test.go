package stream

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

type ramEntry struct {
	gpa  uint64
	zero bool
	data []byte
}

func decodeAll(t testing.TB, payload []byte) []ramEntry {
	t.Helper()
	var out []ramEntry
	err := DecodeRAM(payload, func(e RAMEntry) error {
		if e.Delta {
			t.Fatalf("decodeAll: delta entry at gpa 0x%x", e.GPA)
		}
		out = append(out, ramEntry{e.GPA, e.Zero, bytes.Clone(e.Data)})
		return nil
	})
	if err != nil {
		t.Fatalf("DecodeRAM: %v", err)
	}
	return out
}

func TestRAMBatchRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, PageSize)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	firstByte := make([]byte, PageSize)
	firstByte[0] = 1
	lastByte := make([]byte, PageSize)
	lastByte[PageSize-1] = 0x80
	pages := []ramEntry{
		{0, true, make([]byte, PageSize)},
		{0x1000, false, random},
		{0xfffff000, false, firstByte},
		{0x1_0000_0000, false, lastByte},
		{1<<52 - PageSize, true, make([]byte, PageSize)},
	}

	var b RAMBatch
	for round := range 2 { // the second round checks that Reset really empties
		b.Reset()
		wantLen := 0
		for _, p := range pages {
			if zero := b.Add(p.gpa, p.data); zero != p.zero {
				t.Fatalf("Add(0x%x) zero = %v, want %v", p.gpa, zero, p.zero)
			}
			wantLen += RAMEntryHeader
			if !p.zero {
				wantLen += PageSize
			}
		}
		if b.Err() != nil || b.Pages() != len(pages) || b.Len() != wantLen || len(b.Payload()) != wantLen {
			t.Fatalf("round %d: err %v, %d pages, %d bytes; want %d pages, %d bytes", round, b.Err(), b.Pages(), b.Len(), len(pages), wantLen)
		}
		got := decodeAll(t, b.Payload())
		if len(got) != len(pages) {
			t.Fatalf("decoded %d pages, want %d", len(got), len(pages))
		}
		for i, g := range got {
			p := pages[i]
			if g.gpa != p.gpa || g.zero != p.zero || (!p.zero && !bytes.Equal(g.data, p.data)) || (p.zero && g.data != nil) {
				t.Errorf("page %d: got gpa 0x%x zero %v %d bytes, want gpa 0x%x zero %v", i, g.gpa, g.zero, len(g.data), p.gpa, p.zero)
			}
		}
	}
	if got := decodeAll(t, nil); len(got) != 0 {
		t.Errorf("empty payload decoded to %d pages", len(got))
	}
}

func TestRAMBatchMisuse(t *testing.T) {
	var b RAMBatch
	page := make([]byte, PageSize)
	b.Add(0x1000, page)
	b.Add(0x1800, page)
	b.Add(0x2000, page[:100])
	if b.Pages() != 1 || b.Len() != RAMEntryHeader {
		t.Errorf("misused Adds changed the batch: %d pages, %d bytes", b.Pages(), b.Len())
	}
	if err := b.Err(); err == nil || !strings.Contains(err.Error(), "0x1800: address not page-aligned") {
		t.Errorf("Err() = %v, want the first mistake", err)
	}
	b.Reset()
	if b.Err() != nil || b.Pages() != 0 || b.Len() != 0 {
		t.Errorf("Reset left err %v, %d pages, %d bytes", b.Err(), b.Pages(), b.Len())
	}
}

func TestDecodeRAMMalformed(t *testing.T) {
	word := func(w uint64) []byte { return binary.LittleEndian.AppendUint64(nil, w) }
	zeroEntry := word(0x5000 | RAMFlagZero)
	tests := []struct {
		name    string
		payload []byte
		off     uint64
		detail  string
	}{
		{"short word", []byte{0, 0x10, 0, 0, 0}, 0, "entry 0: 5 bytes left, need 8"},
		{"short word after entry", append(bytes.Clone(zeroEntry), 1), 8, "entry 1: 1 bytes left"},
		{"unknown flag", word(0x5000 | 4), 0, "unknown flag bits 0x004"},
		{"unaligned gpa", append(bytes.Clone(zeroEntry), word(0x6123)...), 8, "entry 1: address word 0x0000000000006123 has unknown flag bits 0x120"},
		{"short page", append(word(0x7000), make([]byte, PageSize-1)...), 0, "page at gpa 0x7000 has 4095 data bytes, want 4096"},
		{"missing page", word(0x7000), 0, "has 0 data bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			err := DecodeRAM(tc.payload, func(RAMEntry) error { calls++; return nil })
			fe := wantFormatError(t, err, ErrMalformed)
			if !fe.InPayload || fe.Kind != KindRAM || fe.Offset != tc.off {
				t.Errorf("FormatError %+v, want in ram payload at %d", fe, tc.off)
			}
			if !strings.Contains(err.Error(), tc.detail) {
				t.Errorf("error %q lacks %q", err, tc.detail)
			}
			if calls != int(tc.off/RAMEntryHeader) {
				t.Errorf("fn called %d times before the bad entry", calls)
			}
		})
	}
}

func TestDecodeRAMCallbackError(t *testing.T) {
	var b RAMBatch
	page := make([]byte, PageSize)
	page[10] = 1
	b.Add(0x1000, page)
	b.Add(0x9000, page)
	boom := errors.New("outside guest RAM")
	err := DecodeRAM(b.Payload(), func(e RAMEntry) error {
		if e.GPA == 0x9000 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) || err.Error() != "page at gpa 0x9000: outside guest RAM" {
		t.Errorf("callback error came back as %v", err)
	}
}

func TestIsZeroPage(t *testing.T) {
	for n := range 200 {
		p := make([]byte, n)
		if !IsZeroPage(p) {
			t.Fatalf("zero slice of %d bytes not zero", n)
		}
		for i := range n {
			p[i] = 0x01 << (i % 8)
			if IsZeroPage(p) {
				t.Fatalf("%d bytes with byte %d set reported zero", n, i)
			}
			p[i] = 0
		}
	}
	p := make([]byte, PageSize)
	for _, i := range []int{0, 63, 64, 2047, PageSize - 8, PageSize - 1} {
		p[i] = 0xff
		if IsZeroPage(p) {
			t.Errorf("page with byte %d set reported zero", i)
		}
		p[i] = 0
	}
}

// BenchmarkRAMBatch measures encoding and decoding a 256 KiB batch where a
// quarter of the pages are zero, a typical mix for a booted guest.
func BenchmarkRAMBatch(b *testing.B) {
	const pages = 64
	mem := make([]byte, pages*PageSize)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range mem {
		if (i/PageSize)%4 != 0 {
			mem[i] = byte(rng.Uint32())
		}
	}
	var batch RAMBatch
	var sum byte
	b.SetBytes(int64(len(mem)))
	b.ReportAllocs()
	for b.Loop() {
		batch.Reset()
		for i := range pages {
			batch.Add(uint64(i)*PageSize, mem[i*PageSize:(i+1)*PageSize])
		}
		err := DecodeRAM(batch.Payload(), func(e RAMEntry) error {
			if !e.Zero {
				sum += e.Data[0]
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	_ = sum
}

// BenchmarkIsZeroPage measures the worst case: a zero page is read whole.
func BenchmarkIsZeroPage(b *testing.B) {
	p := make([]byte, PageSize)
	b.SetBytes(PageSize)
	for b.Loop() {
		if !IsZeroPage(p) {
			b.Fatal("zero page not zero")
		}
	}
}

// AddDelta against the previous contents gives the destination exactly the
// new page, keeps prev equal to it, and falls back to a whole page when too
// much changed.
func TestRAMDelta(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	old := make([]byte, PageSize)
	for i := range old {
		old[i] = byte(rng.Uint32())
	}
	cases := []struct {
		name    string
		change  func(p []byte)
		want    DeltaResult
		maxSize int
	}{
		{"unchanged", func([]byte) {}, DeltaUnchanged, 0},
		{"one byte", func(p []byte) { p[777]++ }, DeltaSent, RAMEntryHeader + DeltaLenSize + deltaRunHeader + 8},
		{"first and last byte", func(p []byte) { p[0]++; p[PageSize-1]++ }, DeltaSent, RAMEntryHeader + DeltaLenSize + 2*(deltaRunHeader+8)},
		{"a byte per 64", func(p []byte) {
			for i := 5; i < PageSize; i += 64 {
				p[i]++
			}
		}, DeltaSent, RAMEntryHeader + DeltaLenSize + 64*(deltaRunHeader+8)},
		{"a 300-byte run across blocks", func(p []byte) {
			for i := 60; i < 360; i++ {
				p[i] ^= 0xff
			}
		}, DeltaSent, RAMEntryHeader + DeltaLenSize + deltaRunHeader + 312},
		{"everything", func(p []byte) {
			for i := range p {
				p[i] ^= 0x5a
			}
		}, DeltaTooBig, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			page := bytes.Clone(old)
			c.change(page)
			prev := bytes.Clone(old)
			var b RAMBatch
			got := b.AddDelta(0x3000, page, prev)
			if got != c.want {
				t.Fatalf("AddDelta = %d, want %d", got, c.want)
			}
			if got != DeltaSent {
				if b.Len() != 0 || b.Pages() != 0 {
					t.Fatalf("nothing sent, but the batch holds %d bytes", b.Len())
				}
				return
			}
			if b.Len() > c.maxSize {
				t.Errorf("delta is %d bytes, want at most %d", b.Len(), c.maxSize)
			}
			if !bytes.Equal(prev, page) {
				t.Error("prev differs from the page after the delta")
			}
			dst := bytes.Clone(old)
			err := DecodeRAM(b.Payload(), func(e RAMEntry) error {
				if !e.Delta || e.GPA != 0x3000 {
					t.Fatalf("entry %+v, want a delta at 0x3000", e)
				}
				return ApplyDelta(dst, e.Data)
			})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(dst, page) {
				t.Error("the destination's page differs after the delta")
			}
		})
	}
}

func TestDecodeRAMBadDelta(t *testing.T) {
	entry := func(runs ...uint16) []byte {
		var d []byte
		for i := 0; i+1 < len(runs); i += 2 {
			d = binary.LittleEndian.AppendUint16(d, runs[i])
			d = binary.LittleEndian.AppendUint16(d, runs[i+1])
			d = append(d, make([]byte, runs[i+1])...)
		}
		p := binary.LittleEndian.AppendUint64(nil, 0x4000|RAMFlagDelta)
		p = binary.LittleEndian.AppendUint16(p, uint16(len(d)))
		return append(p, d...)
	}
	for _, c := range []struct {
		name    string
		payload []byte
		detail  string
	}{
		{"empty run", entry(0, 0), "is empty"},
		{"past the page", entry(4090, 8), "goes past the page"},
		{"overlapping runs", entry(0, 16, 8, 8), "before the end of the previous run"},
		{"no length", binary.LittleEndian.AppendUint64(nil, 0x4000|RAMFlagDelta), "has no length"},
		{"zero and delta", binary.LittleEndian.AppendUint64(nil, 0x4000|RAMFlagDelta|RAMFlagZero), "both zero page and delta"},
		{"short", entry(0, 16)[:20], "of its"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := DecodeRAM(c.payload, nil)
			wantFormatError(t, err, ErrMalformed)
			if !strings.Contains(err.Error(), c.detail) {
				t.Errorf("error %q lacks %q", err, c.detail)
			}
		})
	}
}
