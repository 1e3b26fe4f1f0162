package stream

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"sync/atomic"
)

// writeBufferSize batches many small sections (and the frame headers of
// large ones) into few writes on the connection.
const writeBufferSize = 256 << 10

// Writer encodes one direction of a migration stream. It is not safe for
// concurrent use, except Bytes, which another goroutine may call at any time.
type Writer struct {
	bw      *bufio.Writer
	table   *crc32.Table
	seq     uint32
	started bool
	frame   [FrameHeaderSize]byte
	n       atomic.Uint64
}

// countingWriter counts what actually reaches the connection, so that
// Bytes measures transfer, not buffering.
type countingWriter struct {
	w io.Writer
	n *atomic.Uint64
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(uint64(n))
	return n, err
}

// NewWriter returns a Writer that writes to w through a 256 KiB buffer.
func NewWriter(w io.Writer) *Writer {
	sw := &Writer{table: castagnoli()}
	sw.bw = bufio.NewWriterSize(countingWriter{w: w, n: &sw.n}, writeBufferSize)
	return sw
}

// WriteHeader writes the stream header; it must come first, exactly once.
func (w *Writer) WriteHeader() error {
	if w.started {
		return errors.New("migration stream: write header: header already written")
	}
	w.started = true
	var h [HeaderSize]byte
	copy(h[:], Magic)
	binary.LittleEndian.PutUint32(h[8:], Version)
	binary.LittleEndian.PutUint32(h[12:], 0)
	binary.LittleEndian.PutUint32(h[16:], crc32.Checksum(h[:16], w.table))
	if _, err := w.bw.Write(h[:]); err != nil {
		return fmt.Errorf("migration stream: write header: %w", err)
	}
	return nil
}

// WriteSection appends one section to the buffer. Sections the peer waits
// for before it sends anything (End, Accept, Ready, Commit, Abort) are
// flushed at once, so a missing Flush cannot deadlock the two sides; other
// sections reach the connection when the buffer fills or on Flush.
//
// The payloads of End, Accept, Ready and Commit must be empty, Pass's must
// come from PassPayload and Abort's must be at most MaxAbortReason bytes
// (AbortPayload makes one from any string): the reader rejects anything
// else, so the writer refuses it here, where the bug is.
func (w *Writer) WriteSection(k Kind, payload []byte) error {
	if !w.started {
		return fmt.Errorf("migration stream: write %s section: header not written yet", k)
	}
	if !k.Known() {
		return fmt.Errorf("migration stream: write section: %w %d", ErrUnknownKind, uint8(k))
	}
	if uint64(len(payload)) > math.MaxUint32 {
		return fmt.Errorf("migration stream: write %s section: %w (%d bytes)", k, ErrTooLarge, len(payload))
	}
	if err := checkShape(k, payload); err != nil {
		return fmt.Errorf("migration stream: write section: %w: %w", ErrMalformed, err)
	}
	f := w.frame[:]
	f[0] = byte(k)
	f[1], f[2], f[3] = 0, 0, 0
	binary.LittleEndian.PutUint32(f[4:], w.seq)
	binary.LittleEndian.PutUint32(f[8:], uint32(len(payload)))
	sum := crc32.Update(crc32.Checksum(f, w.table), w.table, payload)
	var tail [4]byte
	binary.LittleEndian.PutUint32(tail[:], sum)
	for _, b := range [][]byte{f, payload, tail[:]} {
		if _, err := w.bw.Write(b); err != nil {
			return fmt.Errorf("migration stream: write section %d (%s): %w", w.seq, k, err)
		}
	}
	w.seq++
	switch k {
	case KindEnd, KindAccept, KindReady, KindCommit, KindAbort:
		return w.Flush()
	}
	return nil
}

// Flush writes any buffered data to the connection.
func (w *Writer) Flush() error {
	if err := w.bw.Flush(); err != nil {
		return fmt.Errorf("migration stream: flush: %w", err)
	}
	return nil
}

// Bytes returns how many bytes, framing included, have reached the
// underlying writer; data still buffered is not counted until it is
// flushed. Safe to call from any goroutine.
func (w *Writer) Bytes() uint64 { return w.n.Load() }
