package stream

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// A RAM section's payload is a sequence of entries: a u64 holding the
// page's guest-physical address with flags in its low 12 bits, followed by
// PageSize bytes of data, nothing for a zero page, or a delta. Zero pages
// are sent as a flag because guests have many, and 8 bytes beat 4 KiB.
//
// A delta (QEMU calls its own kind XBZRLE) changes a page the destination
// already holds from an earlier pass: a u16 length, then that many bytes of
// runs, each a u16 offset, a u16 length (at least 1) and the new bytes, in
// increasing, non-overlapping order within the page. A guest that rewrites
// a few bytes of each page it touches (counters, list links, timestamps)
// then costs a few bytes per page instead of 4 KiB, in the dirty passes and
// above all in the last one, which is downtime.
const (
	// RAMEntryHeader is the size of the address word before each page.
	RAMEntryHeader = 8
	// RAMFlagZero marks a page whose bytes are all zero; no data follows.
	RAMFlagZero = 1 << 0
	// RAMFlagDelta marks a delta against the page's previous contents.
	RAMFlagDelta = 1 << 1
	// MaxDelta is the largest delta encoding; a page that changed more is
	// sent whole.
	MaxDelta = PageSize / 2

	// DeltaLenSize is the size of a delta's length, after its address word.
	DeltaLenSize = 2

	ramFlagMask    = PageSize - 1
	deltaRunHeader = 4
)

// RAMEntry is one decoded entry of a RAM section.
type RAMEntry struct {
	// GPA is the page's guest-physical address.
	GPA uint64
	// Zero and Delta say what the entry holds; both false: a whole page.
	Zero, Delta bool
	// Data is the page's PageSize bytes, the delta's runs (ApplyDelta), or
	// nil for a zero page. It aliases the payload.
	Data []byte
}

// RAMBatch builds the payload of a RAM section. The zero value is ready to
// use; Reset lets one batch (and its buffer) be reused for the next section.
type RAMBatch struct {
	buf   []byte
	last  []byte
	pages int
	err   error
}

// Reset empties the batch, keeping its buffer, and clears Err.
func (b *RAMBatch) Reset() {
	b.buf = b.buf[:0]
	b.last = nil
	b.pages = 0
	b.err = nil
}

// Add appends the page at gpa, whose contents are page, and reports whether
// it was sent as a zero page. gpa must be page-aligned and page exactly
// PageSize bytes long; otherwise nothing is added and Err reports the first
// such mistake, which is a bug in the caller: a batch with Err set must not
// be sent, because it lacks pages.
func (b *RAMBatch) Add(gpa uint64, page []byte) (zero bool) {
	if gpa&ramFlagMask != 0 {
		b.setErr(fmt.Errorf("RAM batch: add page at gpa 0x%x: address not page-aligned", gpa))
		return false
	}
	if len(page) != PageSize {
		b.setErr(fmt.Errorf("RAM batch: add page at gpa 0x%x: page is %d bytes, want %d", gpa, len(page), PageSize))
		return false
	}
	zero = IsZeroPage(page)
	word := gpa
	if zero {
		word |= RAMFlagZero
	}
	b.buf = binary.LittleEndian.AppendUint64(b.buf, word)
	b.last = nil
	if !zero {
		b.buf = append(b.buf, page...)
		b.last = b.buf[len(b.buf)-PageSize:]
	}
	b.pages++
	return zero
}

// LastPage returns the bytes the last Add put in the batch (what the
// destination will hold), or nil if it was a zero page. It aliases the
// batch's buffer, so it is only valid until the next Add or Reset.
func (b *RAMBatch) LastPage() []byte { return b.last }

// DeltaResult says what AddDelta did.
type DeltaResult int

// AddDelta's results.
const (
	// DeltaSent: the batch holds a delta entry for the page.
	DeltaSent DeltaResult = iota
	// DeltaUnchanged: the page equals what the destination holds; nothing
	// was added and nothing needs to be.
	DeltaUnchanged
	// DeltaTooBig: the page changed too much; nothing was added, send it
	// whole with Add.
	DeltaTooBig
)

// AddDelta appends the change from prev, the page's contents as the
// destination holds them, to page, its contents now. page may change while
// this runs (a running guest's memory): the bytes that go into the batch
// are also written into prev, so prev always equals what the destination
// will hold, whatever the guest did meanwhile. gpa and both pages must be
// as for Add.
func (b *RAMBatch) AddDelta(gpa uint64, page, prev []byte) DeltaResult {
	if gpa&ramFlagMask != 0 || len(page) != PageSize || len(prev) != PageSize {
		b.setErr(fmt.Errorf("RAM batch: add delta at gpa 0x%x: bad address or page size", gpa))
		return DeltaTooBig
	}
	start := len(b.buf)
	b.buf = binary.LittleEndian.AppendUint64(b.buf, gpa|RAMFlagDelta)
	b.buf = append(b.buf, 0, 0) // length, filled in below
	body := len(b.buf)
	// Equal 64-byte blocks are skipped with the runtime's vector compare;
	// inside a differing one, runs of differing 8-byte words are sent.
	const block = 64
	le := binary.LittleEndian
	for w := 0; w < PageSize; {
		if w%block == 0 && bytes.Equal(page[w:w+block], prev[w:w+block]) {
			w += block
			continue
		}
		if le.Uint64(page[w:]) == le.Uint64(prev[w:]) {
			w += 8
			continue
		}
		end := w + 8
		for end < PageSize && le.Uint64(page[end:]) != le.Uint64(prev[end:]) {
			end += 8
		}
		if len(b.buf)-body+deltaRunHeader+(end-w) > MaxDelta {
			b.buf = b.buf[:start]
			return DeltaTooBig
		}
		b.buf = le.AppendUint16(b.buf, uint16(w))
		b.buf = le.AppendUint16(b.buf, uint16(end-w))
		b.buf = append(b.buf, page[w:end]...)
		copy(prev[w:end], b.buf[len(b.buf)-(end-w):])
		w = end
	}
	n := len(b.buf) - body
	if n == 0 {
		b.buf = b.buf[:start]
		return DeltaUnchanged
	}
	binary.LittleEndian.PutUint16(b.buf[body-DeltaLenSize:], uint16(n))
	b.last = nil
	b.pages++
	return DeltaSent
}

// checkDelta validates a delta's runs; ApplyDelta relies on it.
func checkDelta(d []byte) string {
	next := 0
	for off := 0; off < len(d); {
		if len(d)-off < deltaRunHeader {
			return fmt.Sprintf("delta run at byte %d: %d bytes left, need %d for its header", off, len(d)-off, deltaRunHeader)
		}
		at := int(binary.LittleEndian.Uint16(d[off:]))
		n := int(binary.LittleEndian.Uint16(d[off+2:]))
		switch {
		case n == 0:
			return fmt.Sprintf("delta run at byte %d is empty", off)
		case at < next:
			return fmt.Sprintf("delta run at byte %d starts at page offset %d, before the end of the previous run (%d)", off, at, next)
		case at+n > PageSize:
			return fmt.Sprintf("delta run at byte %d (page offset %d, %d bytes) goes past the page", off, at, n)
		case len(d)-off-deltaRunHeader < n:
			return fmt.Sprintf("delta run at byte %d has %d of its %d bytes", off, len(d)-off-deltaRunHeader, n)
		}
		next = at + n
		off += deltaRunHeader + n
	}
	return ""
}

// ApplyDelta writes the runs of a delta DecodeRAM accepted (and so
// checked) into page. It does not check the runs' order again, on the
// receiving side's hot path; a run that does not fit is refused, not a
// panic.
func ApplyDelta(page, d []byte) error {
	if len(page) != PageSize {
		return fmt.Errorf("apply delta: page is %d bytes, want %d", len(page), PageSize)
	}
	for off := 0; off < len(d); {
		if len(d)-off < deltaRunHeader {
			return fmt.Errorf("apply delta: run at byte %d is cut short", off)
		}
		at := int(binary.LittleEndian.Uint16(d[off:]))
		n := int(binary.LittleEndian.Uint16(d[off+2:]))
		off += deltaRunHeader
		if at+n > PageSize || len(d)-off < n {
			return fmt.Errorf("apply delta: run at byte %d (page offset %d, %d bytes) does not fit", off-deltaRunHeader, at, n)
		}
		copy(page[at:at+n], d[off:off+n])
		off += n
	}
	return nil
}

func (b *RAMBatch) setErr(err error) {
	if b.err == nil {
		b.err = err
	}
}

// Err returns the first misuse of Add since the last Reset, or nil.
func (b *RAMBatch) Err() error { return b.err }

// Pages returns how many pages the batch holds.
func (b *RAMBatch) Pages() int { return b.pages }

// Len returns the payload size so far, so that callers can send the batch
// before it outgrows the peer's payload limit.
func (b *RAMBatch) Len() int { return len(b.buf) }

// Payload returns the encoded batch. It aliases the batch's buffer, so it
// is only valid until the next Add or Reset.
func (b *RAMBatch) Payload() []byte { return b.buf }

// DecodeRAM checks a RAM section's payload entry by entry and calls fn for
// each entry. fn may be nil to validate only. Entries before a malformed one
// have already been passed to fn when the error is returned; a delta's runs
// are checked before fn sees it.
//
// A malformed payload gives a *FormatError wrapping ErrMalformed whose
// Offset is the entry's offset in the payload (Section.Locate turns it into
// a stream position); an error from fn is returned wrapped with the page's
// address.
func DecodeRAM(payload []byte, fn func(e RAMEntry) error) error {
	for i, off := 0, 0; off < len(payload); i++ {
		rest := len(payload) - off
		if rest < RAMEntryHeader {
			return payloadError(KindRAM, off, fmt.Sprintf("entry %d: %d bytes left, need %d for the address word", i, rest, RAMEntryHeader))
		}
		word := binary.LittleEndian.Uint64(payload[off:])
		e := RAMEntry{GPA: word &^ uint64(ramFlagMask)}
		flags := word & ramFlagMask
		if bad := flags &^ (RAMFlagZero | RAMFlagDelta); bad != 0 {
			return payloadError(KindRAM, off, fmt.Sprintf("entry %d: address word 0x%016x has unknown flag bits 0x%03x (or the address is not page-aligned)", i, word, bad))
		}
		if flags == RAMFlagZero|RAMFlagDelta {
			return payloadError(KindRAM, off, fmt.Sprintf("entry %d: address word 0x%016x says both zero page and delta", i, word))
		}
		e.Zero, e.Delta = flags&RAMFlagZero != 0, flags&RAMFlagDelta != 0
		start := off
		off += RAMEntryHeader
		switch {
		case e.Delta:
			if rest := len(payload) - off; rest < DeltaLenSize {
				return payloadError(KindRAM, start, fmt.Sprintf("entry %d: delta for gpa 0x%x has no length", i, e.GPA))
			}
			n := int(binary.LittleEndian.Uint16(payload[off:]))
			off += DeltaLenSize
			switch {
			case n == 0 || n > MaxDelta:
				return payloadError(KindRAM, start, fmt.Sprintf("entry %d: delta for gpa 0x%x is %d bytes (1 to %d)", i, e.GPA, n, MaxDelta))
			case len(payload)-off < n:
				return payloadError(KindRAM, start, fmt.Sprintf("entry %d: delta for gpa 0x%x has %d of its %d bytes", i, e.GPA, len(payload)-off, n))
			}
			e.Data = payload[off : off+n : off+n]
			if msg := checkDelta(e.Data); msg != "" {
				return payloadError(KindRAM, start, fmt.Sprintf("entry %d: gpa 0x%x: %s", i, e.GPA, msg))
			}
			off += n
		case !e.Zero:
			if rest := len(payload) - off; rest < PageSize {
				return payloadError(KindRAM, start, fmt.Sprintf("entry %d: page at gpa 0x%x has %d data bytes, want %d", i, e.GPA, rest, PageSize))
			}
			e.Data = payload[off : off+PageSize : off+PageSize]
			off += PageSize
		}
		if fn != nil {
			if err := fn(e); err != nil {
				return fmt.Errorf("page at gpa 0x%x: %w", e.GPA, err)
			}
		}
	}
	return nil
}

// IsZeroPage reports whether every byte of p is zero; p may have any length.
func IsZeroPage(p []byte) bool {
	le := binary.LittleEndian
	for len(p) >= 64 {
		_ = p[63]
		if le.Uint64(p[0:])|le.Uint64(p[8:])|le.Uint64(p[16:])|le.Uint64(p[24:])|
			le.Uint64(p[32:])|le.Uint64(p[40:])|le.Uint64(p[48:])|le.Uint64(p[56:]) != 0 {
			return false
		}
		p = p[64:]
	}
	for len(p) >= 8 {
		if le.Uint64(p) != 0 {
			return false
		}
		p = p[8:]
	}
	for _, c := range p {
		if c != 0 {
			return false
		}
	}
	return true
}
