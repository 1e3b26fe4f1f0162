package stream

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"testing"
)

// testSection is a section to write in tests.
type testSection struct {
	kind    Kind
	payload []byte
}

// allKinds is one section of every kind with a payload of the right shape.
func allKinds(t testing.TB) []testSection {
	var b RAMBatch
	page := make([]byte, PageSize)
	b.Add(0x1000, page)
	for i := range page {
		page[i] = byte(i*7 + 1)
	}
	b.Add(0x2000, page)
	if b.Err() != nil {
		t.Fatal(b.Err())
	}
	return []testSection{
		{KindConfig, []byte(`{"memory":268435456,"cpus":2}`)},
		{KindPass, PassPayload(0)},
		{KindRAM, append([]byte(nil), b.Payload()...)},
		{KindDevice, []byte(`{"serial":{"ier":1}}`)},
		{KindEnd, nil},
		{KindAccept, nil},
		{KindReady, nil},
		{KindCommit, nil},
		{KindAbort, []byte("disk0: inactivate: flush: EIO")},
	}
}

// encode writes a complete stream of secs and returns it with the offset at
// which each section ends.
func encode(t testing.TB, secs []testSection) ([]byte, []int) {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	if err := w.WriteHeader(); err != nil {
		t.Fatal(err)
	}
	var ends []int
	total := HeaderSize
	for _, s := range secs {
		if err := w.WriteSection(s.kind, s.payload); err != nil {
			t.Fatalf("WriteSection(%s): %v", s.kind, err)
		}
		total += FrameOverhead + len(s.payload)
		ends = append(ends, total)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if w.Bytes() != uint64(buf.Len()) || buf.Len() != total {
		t.Fatalf("writer Bytes() = %d, buffer %d, expected %d", w.Bytes(), buf.Len(), total)
	}
	return buf.Bytes(), ends
}

// header returns a stream header with the given fields and a correct
// checksum.
func header(magic string, version, flags uint32) []byte {
	h := make([]byte, HeaderSize)
	copy(h, magic)
	binary.LittleEndian.PutUint32(h[8:], version)
	binary.LittleEndian.PutUint32(h[12:], flags)
	binary.LittleEndian.PutUint32(h[16:], crc32.Checksum(h[:16], castagnoli()))
	return h
}

// frame hand-builds a section with a correct checksum over whatever fields
// it is given, so that tests can make frames a Writer never would.
func frame(kind byte, pad [3]byte, seq, length uint32, payload []byte) []byte {
	f := []byte{kind, pad[0], pad[1], pad[2]}
	f = binary.LittleEndian.AppendUint32(f, seq)
	f = binary.LittleEndian.AppendUint32(f, length)
	f = append(f, payload...)
	return binary.LittleEndian.AppendUint32(f, crc32.Checksum(f, castagnoli()))
}

// readAll reads a stream to its first error, returning the sections (with
// copied payloads) and that error.
func readAll(r io.Reader, maxPayload int) ([]Section, *Reader, error) {
	sr := NewReader(r, maxPayload)
	if err := sr.ReadHeader(); err != nil {
		return nil, sr, err
	}
	var out []Section
	for {
		s, err := sr.Next()
		if err != nil {
			return out, sr, err
		}
		s.Payload = append([]byte(nil), s.Payload...)
		out = append(out, s)
	}
}

// wantFormatError checks that err is a *FormatError wrapping sentinel and
// returns it.
func wantFormatError(t *testing.T, err, sentinel error) *FormatError {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("error %v, want %v", err, sentinel)
	}
	var fe *FormatError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T) is not a *FormatError", err, err)
	}
	return fe
}
