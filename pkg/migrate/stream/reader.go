package stream

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync/atomic"
)

const (
	readBufferSize = 64 << 10
	// firstChunk is how much payload buffer is allocated before any
	// payload byte has arrived; the buffer then at most doubles per chunk
	// received, so a length field that lies costs at most twice the bytes
	// the peer really sent, not the whole limit.
	firstChunk = 64 << 10
)

// Reader decodes one direction of a migration stream. It is not safe for
// concurrent use, except Bytes, which another goroutine may call at any time.
//
// Errors are sticky: once Next or ReadHeader has failed, every later call
// returns the same error, because the stream can no longer be trusted to be
// in step.
type Reader struct {
	br      *bufio.Reader
	max     int
	table   *crc32.Table
	buf     []byte
	seq     uint32
	started bool
	ready   bool
	err     error
	n       atomic.Uint64
}

// NewReader returns a Reader over r that rejects payloads longer than
// maxPayload bytes; 0 (or a negative value) means DefaultMaxPayload.
func NewReader(r io.Reader, maxPayload int) *Reader {
	if maxPayload <= 0 {
		maxPayload = DefaultMaxPayload
	}
	return &Reader{br: bufio.NewReaderSize(r, readBufferSize), max: maxPayload, table: castagnoli()}
}

// Bytes returns how many stream bytes, framing included, have been
// consumed. Safe to call from any goroutine.
func (r *Reader) Bytes() uint64 { return r.n.Load() }

func (r *Reader) fail(err error) error {
	r.err = err
	return err
}

// read fills p and counts what it got, so that offsets stay exact even when
// the stream breaks in the middle of a field.
func (r *Reader) read(p []byte) (int, error) {
	n, err := io.ReadFull(r.br, p)
	r.n.Add(uint64(n))
	return n, err
}

// ReadHeader reads and checks the stream header; it must be called once,
// before Next.
func (r *Reader) ReadHeader() error {
	if r.err != nil {
		return r.err
	}
	if r.started {
		return errors.New("migration stream: read header: header already read")
	}
	r.started = true
	herr := func(err error, detail string) error {
		return r.fail(&FormatError{Header: true, Err: err, Detail: detail})
	}
	var h [HeaderSize]byte
	// The magic is checked before the rest is read, so that a peer that is
	// not vmmd at all gets "bad magic" even if it sent fewer than 20 bytes.
	got := 0
	for _, part := range [][]byte{h[:len(Magic)], h[len(Magic):]} {
		n, err := r.read(part)
		got += n
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return herr(ErrTruncated, fmt.Sprintf("stream ended after %d of %d header bytes", got, HeaderSize))
			}
			return r.fail(fmt.Errorf("migration stream: read header: %w", err))
		}
		if got == len(Magic) && string(h[:len(Magic)]) != Magic {
			return herr(ErrBadMagic, fmt.Sprintf("got %q, want %q", h[:len(Magic)], Magic))
		}
	}
	// Version before checksum: a future version may lay out the rest of
	// its header differently, and "unsupported version" is the useful news.
	if v := binary.LittleEndian.Uint32(h[8:]); v != Version {
		return herr(ErrVersion, fmt.Sprintf("got %d, want %d", v, Version))
	}
	if got, want := binary.LittleEndian.Uint32(h[16:]), crc32.Checksum(h[:16], r.table); got != want {
		return herr(ErrChecksum, fmt.Sprintf("got 0x%08x, want 0x%08x", got, want))
	}
	if f := binary.LittleEndian.Uint32(h[12:]); f != 0 {
		return herr(ErrMalformed, fmt.Sprintf("flags 0x%x set; version %d defines none", f, Version))
	}
	r.ready = true
	return nil
}

// Next reads, checks and returns the next section. At a clean end of
// stream, exactly between two sections, it returns io.EOF itself (not
// wrapped); a stream that ends anywhere else gives ErrTruncated.
//
// The returned Payload aliases the Reader's buffer: it is overwritten by the
// next call to Next, so copy whatever must outlive it.
func (r *Reader) Next() (Section, error) {
	if r.err != nil {
		return Section{}, r.err
	}
	if !r.ready {
		return Section{}, errors.New("migration stream: read section: header not read yet")
	}
	start := r.n.Load()
	var kind Kind
	serr := func(err error, detail string) (Section, error) {
		return Section{}, r.fail(&FormatError{Offset: start, Seq: r.seq, Kind: kind, Err: err, Detail: detail})
	}
	ioerr := func(what string, got, want int, err error) (Section, error) {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return serr(ErrTruncated, fmt.Sprintf("stream ended after %d of %d %s bytes", got, want, what))
		}
		return Section{}, r.fail(fmt.Errorf("migration stream: read section %d at byte %d: %w", r.seq, start, err))
	}

	var f [FrameHeaderSize]byte
	if n, err := r.read(f[:]); err != nil {
		if n == 0 && err == io.EOF {
			return Section{}, r.fail(io.EOF)
		}
		return ioerr("frame header", n, len(f), err)
	}
	kind = Kind(f[0])
	seq := binary.LittleEndian.Uint32(f[4:])
	length := binary.LittleEndian.Uint32(f[8:])
	if uint64(length) > uint64(r.max) {
		return serr(ErrTooLarge, fmt.Sprintf("payload is %d bytes, limit %d", length, r.max))
	}
	payload, n, err := r.readPayload(int(length))
	if err != nil {
		return ioerr("payload", n, int(length), err)
	}
	var tail [4]byte
	if n, err := r.read(tail[:]); err != nil {
		return ioerr("checksum", n, len(tail), err)
	}
	// The checksum is verified before the fields it covers are judged, so
	// that damage in transit is reported as such rather than as whatever
	// nonsense the damaged field now says.
	sum := crc32.Update(crc32.Checksum(f[:], r.table), r.table, payload)
	if got := binary.LittleEndian.Uint32(tail[:]); got != sum {
		return serr(ErrChecksum, fmt.Sprintf("got 0x%08x, want 0x%08x", got, sum))
	}
	if f[1]|f[2]|f[3] != 0 {
		return serr(ErrMalformed, fmt.Sprintf("reserved bytes % x are not zero", f[1:4]))
	}
	if seq != r.seq {
		return serr(ErrSequence, fmt.Sprintf("got %d, want %d", seq, r.seq))
	}
	if !kind.Known() {
		return serr(ErrUnknownKind, fmt.Sprintf("kind byte %d", uint8(kind)))
	}
	if err := checkShape(kind, payload); err != nil {
		return serr(ErrMalformed, err.Error())
	}
	r.seq++
	return Section{Kind: kind, Seq: seq, Payload: payload, Offset: start}, nil
}

// readPayload reads n bytes into the reusable buffer, growing it only as
// data arrives (see firstChunk). It returns how many bytes it got.
func (r *Reader) readPayload(n int) ([]byte, int, error) {
	if n <= cap(r.buf) {
		b := r.buf[:n]
		got, err := r.read(b)
		return b, got, err
	}
	b := r.buf[:0]
	for len(b) < n {
		if len(b) == cap(b) {
			c := min(max(2*cap(b), firstChunk), n)
			nb := make([]byte, len(b), c)
			copy(nb, b)
			b = nb
			r.buf = b
		}
		got, err := r.read(b[len(b):cap(b)])
		b = b[:len(b)+got]
		if err != nil {
			return b, len(b), err
		}
	}
	return b, n, nil
}
