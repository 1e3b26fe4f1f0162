// Package stream is vmmd's live-migration wire format: a versioned header
// followed by framed sections, each carrying a kind, a sequence number, a
// length and a CRC-32C checksum.
//
// Both directions of a migration connection use the same format, each with
// its own header and its own sequence numbers. The source sends Config, then
// Pass and RAM sections, Device and End; the destination answers on the
// return path with Accept, Ready or Abort; the source finishes with Commit
// (or Abort).
//
// Layout, little-endian throughout:
//
//	header:  magic [8]byte "VMMDMIG\x00" | version u32 | flags u32 | crc32c of the previous 16 bytes u32
//	section: kind u8 | 3 zero bytes | seq u32 | length u32 | payload | crc32c of frame header and payload u32
//
// The Reader trusts nothing it receives: every length is checked against a
// maximum before memory is allocated for it, and every problem is reported
// as a *FormatError naming the section and the byte offset, so that a
// corrupt or hostile peer costs a clear error, never a crash.
package stream

import (
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
)

// Format constants.
const (
	// Magic opens every stream, so that a wrong peer or a wrong file is
	// recognised before anything else is interpreted.
	Magic = "VMMDMIG\x00"
	// Version is the only format version this package reads and writes
	// (2: RAM delta entries and the binary device state).
	Version = 2
	// DefaultMaxPayload is the largest section payload a Reader accepts
	// when its constructor is given 0.
	DefaultMaxPayload = 16 << 20
	// PageSize is the guest page size RAM batches are made of.
	PageSize = 4096
	// HeaderSize is the size of the stream header.
	HeaderSize = 20
	// FrameHeaderSize is the size of a section's header (kind, padding,
	// seq, length); the payload follows it.
	FrameHeaderSize = 12
	// FrameOverhead is the number of bytes a section adds around its
	// payload: the frame header and the trailing checksum.
	FrameOverhead = FrameHeaderSize + 4
	// MaxAbortReason bounds the reason text of an Abort section.
	MaxAbortReason = 4 << 10
)

// Kind says what a section carries.
type Kind uint8

// Section kinds. Kinds 1-15 travel from source to destination, 16 and up on
// the return path; Abort travels either way.
const (
	KindConfig Kind = 1 // JSON: source's machine configuration (destination checks it first)
	KindRAM    Kind = 2 // a batch of pages, see RAMBatch and DecodeRAM
	KindDevice Kind = 3 // JSON: device state
	KindEnd    Kind = 4 // end of the source's stream (empty payload)
	KindPass   Kind = 5 // start of a RAM pass: payload u32 pass number, see PassPayload

	KindAccept Kind = 16 // configuration accepted, destination ready to receive RAM (empty)
	KindReady  Kind = 17 // everything loaded; waiting for commit (empty)
	KindCommit Kind = 18 // source -> destination: you own the VM now (empty)
	KindAbort  Kind = 19 // either direction: UTF-8 reason text, at most MaxAbortReason bytes (see AbortPayload, ParseAbort)
)

// String returns the kind's lower-case name, or "kind(N)" for a kind this
// version does not define.
func (k Kind) String() string {
	switch k {
	case KindConfig:
		return "config"
	case KindRAM:
		return "ram"
	case KindDevice:
		return "device"
	case KindEnd:
		return "end"
	case KindPass:
		return "pass"
	case KindAccept:
		return "accept"
	case KindReady:
		return "ready"
	case KindCommit:
		return "commit"
	case KindAbort:
		return "abort"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Known reports whether this version of the format defines k.
func (k Kind) Known() bool {
	switch k {
	case KindConfig, KindRAM, KindDevice, KindEnd, KindPass,
		KindAccept, KindReady, KindCommit, KindAbort:
		return true
	}
	return false
}

// Section is one decoded frame.
type Section struct {
	Kind Kind
	// Seq counts sections from 0 in each direction.
	Seq uint32
	// Payload is only valid until the next call to Reader.Next.
	Payload []byte
	// Offset is the stream byte offset of the section's first byte, for
	// error messages (see Locate).
	Offset uint64
}

// Locate places err, returned by a decoder that saw only this section's
// payload (DecodeRAM, ParsePass, ParseAbort, or a callback), at the
// section's position in the stream, so that the operator learns which
// section of which stream was at fault. A nil err stays nil.
func (s Section) Locate(err error) error {
	if err == nil {
		return nil
	}
	var fe *FormatError
	if errors.As(err, &fe) && fe.InPayload {
		detail := fmt.Sprintf("payload byte %d", fe.Offset)
		if fe.Detail != "" {
			detail += ": " + fe.Detail
		}
		return &FormatError{Offset: s.Offset, Seq: s.Seq, Kind: s.Kind, Err: fe.Err, Detail: detail}
	}
	return fmt.Errorf("migration stream: section %d (%s) at byte %d: %w", s.Seq, s.Kind, s.Offset, err)
}

// Errors a malformed stream produces, always wrapped in a *FormatError that
// says where; test for them with errors.Is.
var (
	ErrBadMagic    = errors.New("not a vmmd migration stream (bad magic)")
	ErrVersion     = errors.New("unsupported stream version")
	ErrTruncated   = errors.New("stream truncated")
	ErrChecksum    = errors.New("checksum mismatch")
	ErrTooLarge    = errors.New("section too large")
	ErrSequence    = errors.New("section out of sequence")
	ErrUnknownKind = errors.New("unknown section kind")
	ErrMalformed   = errors.New("malformed")
)

// FormatError says what is wrong with a stream and where.
type FormatError struct {
	// Offset is the stream byte offset of the header or of the section's
	// first byte; with InPayload, the offset inside the section payload.
	Offset uint64
	// Seq is the index of the section being read (the sequence number the
	// reader expected), whatever the frame itself claims.
	Seq uint32
	// Err is one of the Err* sentinels.
	Err error
	// Detail gives the specifics, e.g. "got 0x1234abcd, want 0x9f00e2c1".
	Detail string
	// Kind is the section kind as read from the frame, or 0 when the
	// frame header was not read.
	Kind Kind
	// Header is set when the error is in the stream header.
	Header bool
	// InPayload is set by payload decoders, which do not know where the
	// payload sits in the stream; Section.Locate fills that in.
	InPayload bool
}

// Error renders e for an operator, e.g. "migration stream: section 12 (ram)
// at byte 81234: checksum mismatch (got 0x1234abcd, want 0x9f00e2c1)".
func (e *FormatError) Error() string {
	var b strings.Builder
	b.WriteString("migration stream: ")
	switch {
	case e.Header:
		fmt.Fprintf(&b, "header at byte %d", e.Offset)
	case e.InPayload:
		fmt.Fprintf(&b, "%s payload at byte %d", e.Kind, e.Offset)
	case e.Kind != 0:
		fmt.Fprintf(&b, "section %d (%s) at byte %d", e.Seq, e.Kind, e.Offset)
	default:
		fmt.Fprintf(&b, "section %d at byte %d", e.Seq, e.Offset)
	}
	b.WriteString(": ")
	if e.Err != nil {
		b.WriteString(e.Err.Error())
	} else {
		b.WriteString("invalid")
	}
	if e.Detail != "" {
		b.WriteString(" (")
		b.WriteString(e.Detail)
		b.WriteString(")")
	}
	return b.String()
}

// Unwrap returns the sentinel, for errors.Is.
func (e *FormatError) Unwrap() error { return e.Err }

// castagnoli returns the CRC-32C table; crc32 builds it once and caches it,
// so calling this per Reader or Writer costs nothing.
func castagnoli() *crc32.Table { return crc32.MakeTable(crc32.Castagnoli) }
