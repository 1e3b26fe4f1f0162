package stream

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"testing"
)

func sentinels() []error {
	return []error{ErrBadMagic, ErrVersion, ErrTruncated, ErrChecksum, ErrTooLarge, ErrSequence, ErrUnknownKind, ErrMalformed}
}

// FuzzReader feeds arbitrary bytes to a Reader. Beyond not panicking, it
// checks that every failure is a FormatError with a sentinel, that memory
// stays proportional to the input, and that whatever was accepted encodes
// back to exactly the bytes it was read from (the format is canonical, so
// the reader cannot be accepting anything the writer would not produce).
//
// With fix set, the checksums in the input are recomputed first, so that
// mutations reach the checks behind the checksum (sequence, kinds, payload
// shapes, RAM batches) instead of nearly all dying at it.
//
// Run it with a short minimisation time, e.g.
// go test -fuzz=FuzzReader -fuzztime=60s -fuzzminimizetime=5s: with the
// default 60 s, minimising one multi-kilobyte input stalls the run.
func FuzzReader(f *testing.F) {
	valid, ends := encode(f, allKinds(f))
	f.Add(valid, false)
	f.Add(valid[:ends[2]+5], false)
	f.Add(header(Magic, Version, 0), false)
	f.Add(append(header(Magic, Version, 0), frame(byte(KindRAM), [3]byte{}, 0, 1<<31, nil)...), false)
	f.Add(append(header(Magic, Version, 0), frame(byte(KindRAM), [3]byte{}, 0, 24, binary.LittleEndian.AppendUint64(make([]byte, 16), 0x3001))...), true)

	f.Fuzz(func(t *testing.T, data []byte, fix bool) {
		if fix {
			data = fixChecksums(data)
		}
		r := NewReader(bytes.NewReader(data), 0)
		var secs []Section
		err := r.ReadHeader()
		for err == nil {
			var s Section
			if s, err = r.Next(); err != nil {
				break
			}
			switch s.Kind {
			case KindRAM:
				_ = DecodeRAM(s.Payload, func(e RAMEntry) error {
					checkEntry(t, e)
					return nil
				})
			case KindPass:
				if _, perr := ParsePass(s.Payload); perr != nil {
					t.Fatalf("Next accepted a pass section ParsePass refuses: %v", perr)
				}
			case KindAbort:
				if _, perr := ParseAbort(s.Payload); perr != nil {
					t.Fatalf("Next accepted an abort section ParseAbort refuses: %v", perr)
				}
			}
			s.Payload = bytes.Clone(s.Payload)
			secs = append(secs, s)
		}

		if err != io.EOF {
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v (%T) is not a FormatError", err, err)
			}
			known := false
			for _, s := range sentinels() {
				known = known || errors.Is(err, s)
			}
			if !known || fe.Error() == "" {
				t.Fatalf("FormatError %+v wraps no sentinel", fe)
			}
		}
		if n := r.Bytes(); n > uint64(len(data)) || (err == io.EOF && n != uint64(len(data))) {
			t.Fatalf("reader consumed %d of %d bytes (end: %v)", n, len(data), err)
		}
		if limit := max(firstChunk, 2*len(data)); cap(r.buf) > limit {
			t.Fatalf("payload buffer grew to %d bytes for a %d-byte input", cap(r.buf), len(data))
		}

		if r.ready {
			var out bytes.Buffer
			w := NewWriter(&out)
			if werr := w.WriteHeader(); werr != nil {
				t.Fatal(werr)
			}
			for _, s := range secs {
				if werr := w.WriteSection(s.Kind, s.Payload); werr != nil {
					t.Fatalf("re-encoding accepted section %d (%s): %v", s.Seq, s.Kind, werr)
				}
			}
			if werr := w.Flush(); werr != nil {
				t.Fatal(werr)
			}
			end := HeaderSize
			if len(secs) > 0 {
				last := secs[len(secs)-1]
				end = int(last.Offset) + FrameOverhead + len(last.Payload)
			}
			if !bytes.Equal(out.Bytes(), data[:end]) {
				t.Fatalf("accepted %d bytes do not re-encode to themselves", end)
			}
		}
	})
}

// fixChecksums returns a copy of data with the header checksum and the
// checksum of every complete frame recomputed, following the length fields.
func fixChecksums(data []byte) []byte {
	data = bytes.Clone(data)
	if len(data) < HeaderSize {
		return data
	}
	le := binary.LittleEndian
	le.PutUint32(data[16:], crc32.Checksum(data[:16], castagnoli()))
	for off := HeaderSize; off+FrameHeaderSize <= len(data); {
		end := uint64(off) + FrameHeaderSize + uint64(le.Uint32(data[off+8:]))
		if end+4 > uint64(len(data)) {
			break
		}
		le.PutUint32(data[end:], crc32.Checksum(data[off:end], castagnoli()))
		off = int(end) + 4
	}
	return data
}

// checkEntry checks the shape of an entry DecodeRAM accepted.
func checkEntry(t *testing.T, e RAMEntry) {
	t.Helper()
	switch {
	case e.GPA%PageSize != 0:
		t.Fatalf("DecodeRAM gave unaligned gpa 0x%x", e.GPA)
	case e.Zero && (e.Delta || e.Data != nil):
		t.Fatalf("zero entry at 0x%x with delta %v and %d bytes", e.GPA, e.Delta, len(e.Data))
	case e.Delta && (len(e.Data) == 0 || len(e.Data) > MaxDelta || checkDelta(e.Data) != ""):
		t.Fatalf("delta entry at 0x%x of %d bytes: %q", e.GPA, len(e.Data), checkDelta(e.Data))
	case !e.Zero && !e.Delta && len(e.Data) != PageSize:
		t.Fatalf("page at 0x%x with %d bytes", e.GPA, len(e.Data))
	}
}

// FuzzDecodeRAM feeds arbitrary payloads to DecodeRAM: it must not panic,
// must either account for every byte or fail with ErrMalformed at an entry
// boundary, and must agree with RAMBatch about what it accepted. Run it with
// -fuzzminimizetime=5s, as FuzzReader.
func FuzzDecodeRAM(f *testing.F) {
	var b RAMBatch
	page := make([]byte, PageSize)
	b.Add(0, page)
	page[5] = 9
	b.Add(0x7000, page)
	prev := bytes.Clone(page)
	page[100], page[4000] = 1, 2
	b.AddDelta(0x9000, page, prev)
	f.Add(bytes.Clone(b.Payload()))
	f.Add(b.Payload()[:RAMEntryHeader+100])
	f.Add(binary.LittleEndian.AppendUint64(nil, 0x1002))
	f.Add([]byte{1, 2, 3})

	f.Fuzz(func(t *testing.T, payload []byte) {
		var entries []ramEntry
		consumed := 0
		err := DecodeRAM(payload, func(e RAMEntry) error {
			checkEntry(t, e)
			consumed += RAMEntryHeader + len(e.Data)
			if e.Delta {
				// A delta applied to any page re-encodes, against that
				// page, to a delta that gives the same result.
				consumed += DeltaLenSize
				base := make([]byte, PageSize)
				for i := range base {
					base[i] = byte(i)
				}
				want := bytes.Clone(base)
				if err := ApplyDelta(want, e.Data); err != nil {
					t.Fatalf("DecodeRAM accepted a delta ApplyDelta refuses: %v", err)
				}
				var db RAMBatch
				prev := bytes.Clone(base)
				switch db.AddDelta(e.GPA, want, prev) {
				case DeltaSent:
					got := bytes.Clone(base)
					if err := DecodeRAM(db.Payload(), func(d RAMEntry) error { return ApplyDelta(got, d.Data) }); err != nil {
						t.Fatalf("re-encoded delta: %v", err)
					}
					if !bytes.Equal(got, want) {
						t.Fatal("re-encoded delta gives another page")
					}
				case DeltaUnchanged:
					if !bytes.Equal(want, base) {
						t.Fatal("AddDelta called a changed page unchanged")
					}
				}
				if !bytes.Equal(prev, want) && db.Pages() == 1 {
					t.Fatal("AddDelta left prev different from what it sent")
				}
				return nil
			}
			entries = append(entries, ramEntry{e.GPA, e.Zero, e.Data})
			return nil
		})
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) || !errors.Is(err, ErrMalformed) || !fe.InPayload {
				t.Fatalf("error %v is not a malformed-payload FormatError", err)
			}
			if fe.Offset != uint64(consumed) {
				t.Fatalf("error at payload byte %d, but entries end at %d", fe.Offset, consumed)
			}
			return
		}
		if consumed != len(payload) {
			t.Fatalf("accepted payload of %d bytes but entries cover %d", len(payload), consumed)
		}
		// Pages that are zero but were sent with data re-encode smaller, so
		// compare what the pages say, not the bytes.
		var rb RAMBatch
		zero := make([]byte, PageSize)
		for _, e := range entries {
			d := e.data
			if e.zero {
				d = zero
			}
			rb.Add(e.gpa, d)
		}
		again := decodeAll(t, rb.Payload())
		if rb.Err() != nil || len(again) != len(entries) {
			t.Fatalf("re-encoding: %v, %d of %d pages", rb.Err(), len(again), len(entries))
		}
		for i, e := range again {
			if e.gpa != entries[i].gpa || e.zero != IsZeroPage(entries[i].data) {
				t.Fatalf("entry %d changed on re-encoding", i)
			}
		}
	})
}
