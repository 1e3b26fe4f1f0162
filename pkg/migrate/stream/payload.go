package stream

import (
	"encoding/binary"
	"fmt"
	"strings"
	"unicode/utf8"
)

// PassPayload encodes the payload of a Pass section announcing RAM pass n.
func PassPayload(n uint32) []byte {
	return binary.LittleEndian.AppendUint32(make([]byte, 0, 4), n)
}

// ParsePass decodes a Pass section's payload.
func ParsePass(p []byte) (uint32, error) {
	if len(p) != 4 {
		return 0, payloadError(KindPass, 0, fmt.Sprintf("pass payload is %d bytes, want 4", len(p)))
	}
	return binary.LittleEndian.Uint32(p), nil
}

// AbortPayload encodes reason as an Abort payload: invalid UTF-8 is
// replaced and the text is cut, on a character boundary, to MaxAbortReason
// bytes, so that any error text can be sent without the writer refusing it.
func AbortPayload(reason string) []byte {
	reason = strings.ToValidUTF8(reason, "\uFFFD")
	if len(reason) > MaxAbortReason {
		cut := MaxAbortReason
		for cut > 0 && !utf8.RuneStart(reason[cut]) {
			cut--
		}
		reason = reason[:cut]
	}
	return []byte(reason)
}

// ParseAbort decodes an Abort section's payload into the peer's reason,
// with any invalid UTF-8 replaced so the text is safe to log and to report.
func ParseAbort(p []byte) (string, error) {
	if err := checkShape(KindAbort, p); err != nil {
		return "", payloadError(KindAbort, 0, err.Error())
	}
	return strings.ToValidUTF8(string(p), "\uFFFD"), nil
}

// checkShape checks the payload constraints of the kinds whose payload this
// package defines; RAM is checked by DecodeRAM and JSON by its consumer.
// The error text is a detail for a FormatError.
func checkShape(k Kind, p []byte) error {
	switch k {
	case KindEnd, KindAccept, KindReady, KindCommit:
		if len(p) != 0 {
			return fmt.Errorf("%s section carries %d payload bytes, want none", k, len(p))
		}
	case KindPass:
		if len(p) != 4 {
			return fmt.Errorf("pass payload is %d bytes, want 4", len(p))
		}
	case KindAbort:
		// Invalid UTF-8 is tolerated (ParseAbort replaces it): a reason cut
		// in the middle of a character must not cost the whole reason.
		if len(p) > MaxAbortReason {
			return fmt.Errorf("abort reason is %d bytes, limit %d", len(p), MaxAbortReason)
		}
	}
	return nil
}

func payloadError(k Kind, off int, detail string) *FormatError {
	return &FormatError{Offset: uint64(off), Kind: k, Err: ErrMalformed, Detail: detail, InPayload: true}
}
