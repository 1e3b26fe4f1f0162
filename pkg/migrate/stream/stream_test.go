package stream

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
)

func TestRoundTripEveryKind(t *testing.T) {
	secs := allKinds(t)
	// A payload larger than both the writer's buffer and the reader's first
	// chunk, to take the direct-write and buffer-growth paths.
	big := bytes.Repeat([]byte(`{"x":1},`), 70<<10)
	secs = append(secs, testSection{KindDevice, big})
	data, ends := encode(t, secs)

	for name, r := range map[string]io.Reader{
		"whole":    bytes.NewReader(data),
		"one-byte": iotest.OneByteReader(bytes.NewReader(data)),
		"data-err": iotest.DataErrReader(bytes.NewReader(data)),
	} {
		t.Run(name, func(t *testing.T) {
			got, sr, err := readAll(r, 0)
			if err != io.EOF {
				t.Fatalf("end of stream: %v, want io.EOF itself", err)
			}
			if len(got) != len(secs) {
				t.Fatalf("read %d sections, wrote %d", len(got), len(secs))
			}
			off := HeaderSize
			for i, s := range got {
				if s.Kind != secs[i].kind || s.Seq != uint32(i) || !bytes.Equal(s.Payload, secs[i].payload) {
					t.Errorf("section %d: got %s seq %d %d bytes, want %s seq %d %d bytes",
						i, s.Kind, s.Seq, len(s.Payload), secs[i].kind, i, len(secs[i].payload))
				}
				if s.Offset != uint64(off) {
					t.Errorf("section %d: offset %d, want %d", i, s.Offset, off)
				}
				off = ends[i]
			}
			if sr.Bytes() != uint64(len(data)) {
				t.Errorf("reader Bytes() = %d, want %d", sr.Bytes(), len(data))
			}
			if _, err := sr.Next(); err != io.EOF {
				t.Errorf("Next after EOF: %v, want io.EOF again", err)
			}
		})
	}
}

func TestKindString(t *testing.T) {
	want := map[Kind]string{
		KindConfig: "config", KindRAM: "ram", KindDevice: "device", KindEnd: "end", KindPass: "pass",
		KindAccept: "accept", KindReady: "ready", KindCommit: "commit", KindAbort: "abort",
		0: "kind(0)", 42: "kind(42)", 255: "kind(255)",
	}
	for k, s := range want {
		if k.String() != s {
			t.Errorf("Kind(%d).String() = %q, want %q", uint8(k), k.String(), s)
		}
		if k.Known() != !strings.HasPrefix(s, "kind(") {
			t.Errorf("Kind(%d).Known() = %v", uint8(k), k.Known())
		}
	}
	known := 0
	for k := range 256 {
		if Kind(k).Known() {
			known++
		}
	}
	if known != 9 {
		t.Errorf("%d known kinds, want 9", known)
	}
}

func TestHeaderErrors(t *testing.T) {
	good := header(Magic, Version, 0)
	badSum := slices.Clone(good)
	badSum[17] ^= 0x40
	tests := []struct {
		name   string
		data   []byte
		want   error
		detail string
	}{
		{"empty", nil, ErrTruncated, "after 0 of 20 header bytes"},
		{"short magic", []byte("VMMD"), ErrTruncated, "after 4 of 20 header bytes"},
		{"short after magic", good[:13], ErrTruncated, "after 13 of 20 header bytes"},
		{"http", []byte("HTTP/1.1 400 Bad Request\r\n"), ErrBadMagic, `got "HTTP/1.1"`},
		{"bad magic short stream", []byte("QEVMxxxx"), ErrBadMagic, `want "VMMDMIG\x00"`},
		{"version 3", header(Magic, 3, 0), ErrVersion, "got 3, want 2"},
		{"version 0", header(Magic, 0, 0), ErrVersion, "got 0, want 2"},
		{"checksum", badSum, ErrChecksum, "got 0x"},
		{"flags", header(Magic, Version, 4), ErrMalformed, "flags 0x4"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(bytes.NewReader(tc.data), 0)
			err := r.ReadHeader()
			fe := wantFormatError(t, err, tc.want)
			if !fe.Header || fe.Offset != 0 {
				t.Errorf("FormatError %+v: want Header at offset 0", fe)
			}
			if !strings.Contains(err.Error(), tc.detail) || !strings.HasPrefix(err.Error(), "migration stream: header at byte 0: ") {
				t.Errorf("error text %q lacks %q", err, tc.detail)
			}
			if _, err2 := r.Next(); err2 != err {
				t.Errorf("Next after failed header: %v, want the same error", err2)
			}
		})
	}
	if err := NewReader(bytes.NewReader(good), 0).ReadHeader(); err != nil {
		t.Fatalf("good header: %v", err)
	}
}

func TestSectionErrors(t *testing.T) {
	hdr := header(Magic, Version, 0)
	zero := [3]byte{}
	ok := frame(byte(KindConfig), zero, 0, 2, []byte("{}"))
	flipped := slices.Clone(ok)
	flipped[FrameHeaderSize] ^= 0x08 // a payload bit
	seqFlip := slices.Clone(ok)
	seqFlip[4] ^= 0x01 // seq, checksum not fixed up
	lenFlip := slices.Clone(ok)
	lenFlip[8] ^= 0x01 // payload length, checksum not fixed up: eats a checksum byte
	tests := []struct {
		name   string
		frames [][]byte
		max    int
		want   error
		seq    uint32
		kind   Kind
		detail string
	}{
		{"checksum in payload", [][]byte{flipped}, 0, ErrChecksum, 0, KindConfig, "checksum mismatch (got 0x"},
		{"checksum in seq", [][]byte{seqFlip}, 0, ErrChecksum, 0, KindConfig, "checksum mismatch"},
		{"length off by one", [][]byte{lenFlip}, 0, ErrTruncated, 0, KindConfig, "after 3 of 4 checksum bytes"},
		{"sequence skipped", [][]byte{ok, frame(byte(KindRAM), zero, 2, 0, nil)}, 0, ErrSequence, 1, KindRAM, "got 2, want 1"},
		{"sequence repeated", [][]byte{ok, frame(byte(KindRAM), zero, 0, 0, nil)}, 0, ErrSequence, 1, KindRAM, "got 0, want 1"},
		{"sequence not from 0", [][]byte{frame(byte(KindConfig), zero, 1, 0, nil)}, 0, ErrSequence, 0, KindConfig, "got 1, want 0"},
		{"padding", [][]byte{frame(byte(KindConfig), [3]byte{0, 1, 0}, 0, 0, nil)}, 0, ErrMalformed, 0, KindConfig, "reserved bytes 00 01 00"},
		{"unknown kind", [][]byte{frame(42, zero, 0, 0, nil)}, 0, ErrUnknownKind, 0, 42, "section 0 (kind(42))"},
		{"kind zero", [][]byte{frame(0, zero, 0, 0, nil)}, 0, ErrUnknownKind, 0, 0, "kind byte 0"},
		{"too large", [][]byte{frame(byte(KindRAM), zero, 0, 1<<31, nil)}, 0, ErrTooLarge, 0, KindRAM, "payload is 2147483648 bytes, limit 16777216"},
		{"max u32", [][]byte{frame(byte(KindRAM), zero, 0, 1<<32-1, nil)}, 0, ErrTooLarge, 0, KindRAM, "limit"},
		{"over custom max", [][]byte{frame(byte(KindDevice), zero, 0, 101, make([]byte, 101))}, 100, ErrTooLarge, 0, KindDevice, "101 bytes, limit 100"},
		{"end with payload", [][]byte{frame(byte(KindEnd), zero, 0, 1, []byte{0})}, 0, ErrMalformed, 0, KindEnd, "end section carries 1 payload bytes"},
		{"commit with payload", [][]byte{frame(byte(KindCommit), zero, 0, 3, []byte("yes"))}, 0, ErrMalformed, 0, KindCommit, "want none"},
		{"short pass", [][]byte{frame(byte(KindPass), zero, 0, 3, []byte{1, 0, 0})}, 0, ErrMalformed, 0, KindPass, "pass payload is 3 bytes, want 4"},
		{"abort too long", [][]byte{frame(byte(KindAbort), zero, 0, 4097, bytes.Repeat([]byte("x"), 4097))}, 0, ErrMalformed, 0, KindAbort, "4097 bytes, limit 4096"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := slices.Concat(append([][]byte{hdr}, tc.frames...)...)
			r := NewReader(bytes.NewReader(data), tc.max)
			if err := r.ReadHeader(); err != nil {
				t.Fatal(err)
			}
			var err error
			var offset uint64
			for i := 0; err == nil; i++ {
				offset = r.Bytes()
				_, err = r.Next()
			}
			fe := wantFormatError(t, err, tc.want)
			if fe.Seq != tc.seq || fe.Kind != tc.kind || fe.Offset != offset || fe.Header || fe.InPayload {
				t.Errorf("FormatError %+v: want seq %d kind %s offset %d", fe, tc.seq, tc.kind, offset)
			}
			if !strings.Contains(err.Error(), tc.detail) {
				t.Errorf("error text %q lacks %q", err, tc.detail)
			}
			if _, err2 := r.Next(); err2 != err {
				t.Errorf("second Next: %v, want the same (sticky) error", err2)
			}
		})
	}
}

func TestLimitIsInclusive(t *testing.T) {
	data := slices.Concat(header(Magic, Version, 0), frame(byte(KindDevice), [3]byte{}, 0, 100, make([]byte, 100)))
	got, _, err := readAll(bytes.NewReader(data), 100)
	if err != io.EOF || len(got) != 1 || len(got[0].Payload) != 100 {
		t.Fatalf("payload of exactly the limit: %d sections, %v", len(got), err)
	}
}

func TestErrorText(t *testing.T) {
	secs := allKinds(t)[:3]
	data, ends := encode(t, secs)
	data[ends[1]+FrameHeaderSize+100] ^= 1 // inside the RAM section's payload
	_, _, err := readAll(bytes.NewReader(data), 0)
	want := regexp.MustCompile(fmt.Sprintf(`^migration stream: section 2 \(ram\) at byte %d: checksum mismatch \(got 0x[0-9a-f]{8}, want 0x[0-9a-f]{8}\)$`, ends[1]))
	if err == nil || !want.MatchString(err.Error()) {
		t.Fatalf("error text %q does not match %s", err, want)
	}
}

// TestTruncationEveryOffset cuts a valid stream at every byte: the reader
// must say io.EOF exactly at section boundaries and ErrTruncated anywhere
// else, and never anything else.
func TestTruncationEveryOffset(t *testing.T) {
	data, ends := encode(t, allKinds(t))
	for cut := 0; cut <= len(data); cut++ {
		got, sr, err := readAll(bytes.NewReader(data[:cut]), 0)
		boundary := slices.Index(ends, cut)
		switch {
		case cut == HeaderSize || boundary >= 0:
			if err != io.EOF {
				t.Fatalf("cut at boundary %d: %v, want io.EOF", cut, err)
			}
			if len(got) != boundary+1 {
				t.Fatalf("cut at %d: %d sections, want %d", cut, len(got), boundary+1)
			}
		default:
			fe := wantFormatError(t, err, ErrTruncated)
			if fe.Header != (cut < HeaderSize) {
				t.Fatalf("cut at %d: %v", cut, err)
			}
			if !strings.Contains(fe.Detail, "stream ended after") {
				t.Fatalf("cut at %d: detail %q", cut, fe.Detail)
			}
		}
		if sr.Bytes() != uint64(cut) {
			t.Fatalf("cut at %d: reader consumed %d bytes", cut, sr.Bytes())
		}
	}
}

// TestHugeLengthDoesNotAllocate checks that lengths are judged before
// memory is committed to them: a frame claiming 2 GiB costs nothing, and one
// claiming almost the limit but carrying 10 bytes costs one small chunk.
func TestHugeLengthDoesNotAllocate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		length uint32
		want   error
	}{
		{"over limit", 1 << 31, ErrTooLarge},
		{"lying length", DefaultMaxPayload, ErrTruncated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := frame(byte(KindRAM), [3]byte{}, 0, tc.length, make([]byte, 10))
			r := NewReader(bytes.NewReader(slices.Concat(header(Magic, Version, 0), f[:FrameHeaderSize+10])), 0)
			if err := r.ReadHeader(); err != nil {
				t.Fatal(err)
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := r.Next()
			runtime.ReadMemStats(&after)
			wantFormatError(t, err, tc.want)
			if n := after.TotalAlloc - before.TotalAlloc; n > 2*firstChunk {
				t.Errorf("Next allocated %d bytes for a %d-byte claim", n, tc.length)
			}
		})
	}
}

type failingReader struct {
	data []byte
	err  error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, f.err
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

func TestReadErrorsAreNotFormatErrors(t *testing.T) {
	data, ends := encode(t, allKinds(t))
	boom := errors.New("connection reset by peer")
	for _, cut := range []int{5, HeaderSize, HeaderSize + 3, ends[0] + FrameHeaderSize + 1} {
		_, _, err := readAll(&failingReader{data: data[:cut], err: boom}, 0)
		var fe *FormatError
		if !errors.Is(err, boom) || errors.As(err, &fe) {
			t.Errorf("cut %d: %v, want the read error unconverted", cut, err)
		}
		if !strings.HasPrefix(err.Error(), "migration stream: read ") {
			t.Errorf("cut %d: %q does not name the operation", cut, err)
		}
	}
}

func TestCallOrder(t *testing.T) {
	data, _ := encode(t, nil)
	r := NewReader(bytes.NewReader(data), 0)
	if _, err := r.Next(); err == nil || !strings.Contains(err.Error(), "header not read") {
		t.Errorf("Next before ReadHeader: %v", err)
	}
	if err := r.ReadHeader(); err != nil {
		t.Fatal(err)
	}
	if err := r.ReadHeader(); err == nil {
		t.Error("second ReadHeader succeeded")
	}

	w := NewWriter(io.Discard)
	if err := w.WriteSection(KindEnd, nil); err == nil || !strings.Contains(err.Error(), "header not written") {
		t.Errorf("WriteSection before WriteHeader: %v", err)
	}
	if err := w.WriteHeader(); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteHeader(); err == nil {
		t.Error("second WriteHeader succeeded")
	}
}

func TestWriterRefusesBadSections(t *testing.T) {
	w := NewWriter(io.Discard)
	if err := w.WriteHeader(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		kind    Kind
		payload []byte
		want    error
	}{
		{0, nil, ErrUnknownKind},
		{6, nil, ErrUnknownKind},
		{KindEnd, []byte{1}, ErrMalformed},
		{KindReady, []byte("x"), ErrMalformed},
		{KindPass, []byte{1, 2}, ErrMalformed},
		{KindAbort, make([]byte, MaxAbortReason+1), ErrMalformed},
	} {
		if err := w.WriteSection(tc.kind, tc.payload); !errors.Is(err, tc.want) {
			t.Errorf("WriteSection(%s, %d bytes): %v, want %v", tc.kind, len(tc.payload), err, tc.want)
		}
	}
	// Refused sections must not use up sequence numbers.
	var buf bytes.Buffer
	w = NewWriter(&buf)
	_ = w.WriteHeader()
	_ = w.WriteSection(KindEnd, []byte{1})
	if err := w.WriteSection(KindEnd, nil); err != nil {
		t.Fatal(err)
	}
	got, _, err := readAll(&buf, 0)
	if err != io.EOF || len(got) != 1 || got[0].Seq != 0 {
		t.Errorf("after a refused section: %v %v", got, err)
	}
}

type errWriter struct{ n int }

func (e *errWriter) Write(p []byte) (int, error) {
	e.n++
	return 0, errors.New("broken pipe")
}

func TestWriterErrors(t *testing.T) {
	ew := &errWriter{}
	w := NewWriter(ew)
	if err := w.WriteHeader(); err != nil {
		t.Fatalf("buffered header failed early: %v", err)
	}
	err := w.WriteSection(KindAbort, AbortPayload("cancelled"))
	if err == nil || !strings.Contains(err.Error(), "broken pipe") || !strings.Contains(err.Error(), "flush") {
		t.Errorf("abort on a broken connection: %v", err)
	}
	if err := w.Flush(); err == nil {
		t.Error("Flush after a failed write succeeded")
	}
}

func TestControlSectionsFlush(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	if err := w.WriteHeader(); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteSection(KindConfig, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if buf.Len() != 0 || w.Bytes() != 0 {
		t.Fatalf("config section not buffered: %d bytes out, Bytes() %d", buf.Len(), w.Bytes())
	}
	for _, k := range []Kind{KindEnd, KindAccept, KindReady, KindCommit} {
		if err := w.WriteSection(k, nil); err != nil {
			t.Fatal(err)
		}
		if uint64(buf.Len()) != w.Bytes() || w.Bytes() == 0 {
			t.Errorf("%s section left in the buffer: %d bytes out, Bytes() %d", k, buf.Len(), w.Bytes())
		}
	}
}

func TestPassAndAbortPayloads(t *testing.T) {
	for _, n := range []uint32{0, 1, 7, 1<<32 - 1} {
		got, err := ParsePass(PassPayload(n))
		if err != nil || got != n {
			t.Errorf("ParsePass(PassPayload(%d)) = %d, %v", n, got, err)
		}
	}
	if _, err := ParsePass([]byte{1, 2, 3, 4, 5}); !errors.Is(err, ErrMalformed) {
		t.Errorf("ParsePass of 5 bytes: %v", err)
	}

	long := strings.Repeat("é", MaxAbortReason) // 2 bytes each: the cut falls inside none
	p := AbortPayload("x" + long)
	if len(p) != MaxAbortReason-1 {
		t.Errorf("AbortPayload cut to %d bytes, want %d (rune boundary)", len(p), MaxAbortReason-1)
	}
	for _, reason := range []string{"", "timeout waiting for ready", string(p), "bad \xff utf8"} {
		got, err := ParseAbort(AbortPayload(reason))
		if err != nil || (reason != "bad \xff utf8" && got != reason) {
			t.Errorf("ParseAbort(AbortPayload(%.20q)) = %.20q, %v", reason, got, err)
		}
	}
	if got, _ := ParseAbort(AbortPayload("bad \xff utf8")); got != "bad \uFFFD utf8" {
		t.Errorf("invalid UTF-8 became %q", got)
	}
	// A reason cut inside a character still arrives, repaired.
	if got, err := ParseAbort([]byte("disk0: \xc3")); err != nil || got != "disk0: \uFFFD" {
		t.Errorf("ParseAbort of a cut character: %q, %v", got, err)
	}
	if _, err := ParseAbort(make([]byte, MaxAbortReason+1)); !errors.Is(err, ErrMalformed) {
		t.Errorf("ParseAbort of an over-long reason: %v", err)
	}
}

func TestLocate(t *testing.T) {
	s := Section{Kind: KindRAM, Seq: 12, Offset: 81234}
	if s.Locate(nil) != nil {
		t.Error("Locate(nil) != nil")
	}
	err := s.Locate(DecodeRAM([]byte{1, 2, 3}, nil))
	fe := wantFormatError(t, err, ErrMalformed)
	if fe.InPayload || fe.Seq != 12 || fe.Offset != 81234 {
		t.Errorf("located error %+v", fe)
	}
	want := "migration stream: section 12 (ram) at byte 81234: malformed (payload byte 0: entry 0: 3 bytes left, need 8 for the address word)"
	if err.Error() != want {
		t.Errorf("located error text\n%q, want\n%q", err, want)
	}
	boom := errors.New("gpa outside RAM")
	err = s.Locate(fmt.Errorf("page at gpa 0x1000: %w", boom))
	if !errors.Is(err, boom) || err.Error() != "migration stream: section 12 (ram) at byte 81234: page at gpa 0x1000: gpa outside RAM" {
		t.Errorf("located callback error: %v", err)
	}
}

// TestBytesConcurrently reads both counters from another goroutine while a
// stream flows through a pipe; run with -race.
func TestBytesConcurrently(t *testing.T) {
	pr, pw := io.Pipe()
	w := NewWriter(pw)
	r := NewReader(pr, 0)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var lastW, lastR uint64
		for {
			select {
			case <-done:
				return
			default:
			}
			nw, nr := w.Bytes(), r.Bytes()
			if nw < lastW || nr < lastR {
				t.Errorf("Bytes went backwards: writer %d->%d, reader %d->%d", lastW, nw, lastR, nr)
				return
			}
			lastW, lastR = nw, nr
			runtime.Gosched()
		}
	})
	var werr error
	wg.Go(func() {
		defer pw.Close()
		if werr = w.WriteHeader(); werr != nil {
			return
		}
		var b RAMBatch
		page := bytes.Repeat([]byte{0xa5}, PageSize)
		for i := range 64 {
			b.Reset()
			for j := range 16 {
				b.Add(uint64(i*16+j)*PageSize, page)
			}
			if werr = w.WriteSection(KindRAM, b.Payload()); werr != nil {
				return
			}
		}
		werr = w.WriteSection(KindEnd, nil)
	})
	var secs []Section
	err := r.ReadHeader()
	for err == nil {
		var s Section
		if s, err = r.Next(); err == nil {
			secs = append(secs, s)
		}
	}
	pr.Close() // unblocks the writer if the reader gave up early
	close(done)
	wg.Wait()
	if werr != nil || err != io.EOF || len(secs) != 65 {
		t.Fatalf("writer %v, reader %v after %d sections", werr, err, len(secs))
	}
	if w.Bytes() != r.Bytes() {
		t.Errorf("writer sent %d bytes, reader consumed %d", w.Bytes(), r.Bytes())
	}
}
