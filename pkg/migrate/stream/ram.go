package stream

import (
	"encoding/binary"
	"fmt"
)

// A RAM section's payload is a sequence of entries: a u64 holding the
// page's guest-physical address with flags in its low 12 bits, followed by
// PageSize bytes of data unless the page is a zero page. Zero pages are sent
// as a flag because guests have many, and 8 bytes beat 4 KiB.
const (
	// RAMEntryHeader is the size of the address word before each page.
	RAMEntryHeader = 8
	// RAMFlagZero marks a page whose bytes are all zero; no data follows.
	RAMFlagZero = 1 << 0

	ramFlagMask = PageSize - 1
)

// RAMBatch builds the payload of a RAM section. The zero value is ready to
// use; Reset lets one batch (and its buffer) be reused for the next section.
type RAMBatch struct {
	buf   []byte
	pages int
	err   error
}

// Reset empties the batch, keeping its buffer, and clears Err.
func (b *RAMBatch) Reset() {
	b.buf = b.buf[:0]
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
	if !zero {
		b.buf = append(b.buf, page...)
	}
	b.pages++
	return zero
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
// each page: data is the page's PageSize bytes (aliasing payload), or nil
// for a zero page. fn may be nil to validate only. Entries before a
// malformed one have already been passed to fn when the error is returned.
//
// A malformed payload gives a *FormatError wrapping ErrMalformed whose
// Offset is the entry's offset in the payload (Section.Locate turns it into
// a stream position); an error from fn is returned wrapped with the page's
// address.
func DecodeRAM(payload []byte, fn func(gpa uint64, zero bool, data []byte) error) error {
	for i, off := 0, 0; off < len(payload); i++ {
		rest := len(payload) - off
		if rest < RAMEntryHeader {
			return payloadError(KindRAM, off, fmt.Sprintf("entry %d: %d bytes left, need %d for the address word", i, rest, RAMEntryHeader))
		}
		word := binary.LittleEndian.Uint64(payload[off:])
		gpa, flags := word&^uint64(ramFlagMask), word&ramFlagMask
		if bad := flags &^ RAMFlagZero; bad != 0 {
			return payloadError(KindRAM, off, fmt.Sprintf("entry %d: address word 0x%016x has unknown flag bits 0x%03x (or the address is not page-aligned)", i, word, bad))
		}
		off += RAMEntryHeader
		zero := flags&RAMFlagZero != 0
		var data []byte
		if !zero {
			if rest := len(payload) - off; rest < PageSize {
				return payloadError(KindRAM, off-RAMEntryHeader, fmt.Sprintf("entry %d: page at gpa 0x%x has %d data bytes, want %d", i, gpa, rest, PageSize))
			}
			data = payload[off : off+PageSize : off+PageSize]
			off += PageSize
		}
		if fn != nil {
			if err := fn(gpa, zero, data); err != nil {
				return fmt.Errorf("page at gpa 0x%x: %w", gpa, err)
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
