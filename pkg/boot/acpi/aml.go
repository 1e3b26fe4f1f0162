package acpi

import (
	"fmt"
	"strings"
)

// AML opcodes and prefixes (ACPI 6.5, section 20).
const (
	amlZeroOp       = 0x00
	amlOneOp        = 0x01
	amlNameOp       = 0x08
	amlBytePrefix   = 0x0A
	amlWordPrefix   = 0x0B
	amlDWordPrefix  = 0x0C
	amlStringPrefix = 0x0D
	amlQWordPrefix  = 0x0E
	amlScopeOp      = 0x10
	amlBufferOp     = 0x11
	amlPackageOp    = 0x12
	amlExtOpPrefix  = 0x5B
	amlDeviceOp     = 0x82 // after amlExtOpPrefix
	amlRootChar     = '\\'
	amlDualName     = 0x2E
	amlMultiName    = 0x2F

	// amlMaxPkgLength is the largest value a 4-byte PkgLength can hold.
	amlMaxPkgLength = 1<<28 - 1
)

// amlPkgLength encodes the PkgLength of an object whose contents after the
// PkgLength are n bytes long. The encoded value counts its own bytes, which
// is why the form is chosen by trying each size in turn.
func amlPkgLength(n int) ([]byte, error) {
	if n < 0 || n+4 > amlMaxPkgLength {
		return nil, fmt.Errorf("AML PkgLength: %d bytes of contents, want at most %d", n, amlMaxPkgLength-4)
	}
	if n+1 <= 0x3F {
		return []byte{byte(n + 1)}, nil
	}
	for k := 2; k <= 4; k++ {
		total := n + k
		if total >= 1<<(4+8*(k-1)) {
			continue
		}
		out := make([]byte, k)
		out[0] = byte(k-1)<<6 | byte(total&0x0F)
		for i := 1; i < k; i++ {
			out[i] = byte(total >> (4 + 8*(i-1)))
		}
		return out, nil
	}
	return nil, fmt.Errorf("AML PkgLength: %d bytes of contents do not fit", n)
}

// amlInteger encodes v in the shortest integer form.
func amlInteger(v uint64) []byte {
	switch {
	case v == 0:
		return []byte{amlZeroOp}
	case v == 1:
		return []byte{amlOneOp}
	case v <= 0xFF:
		return []byte{amlBytePrefix, byte(v)}
	case v <= 0xFFFF:
		return []byte{amlWordPrefix, byte(v), byte(v >> 8)}
	case v <= 0xFFFFFFFF:
		return []byte{amlDWordPrefix, byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)}
	}
	out := []byte{amlQWordPrefix}
	for i := 0; i < 8; i++ {
		out = append(out, byte(v>>(8*i)))
	}
	return out
}

// amlString encodes s as a String object; AML strings are ASCII without NUL.
func amlString(s string) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 || s[i] > 0x7F {
			return nil, fmt.Errorf("AML string %q: byte %d (%#x) is not printable ASCII", s, i, s[i])
		}
	}
	out := append([]byte{amlStringPrefix}, s...)
	return append(out, 0), nil
}

// validNameSeg reports whether s is a 4-character AML NameSeg.
func validNameSeg(s string) error {
	if len(s) != 4 {
		return fmt.Errorf("AML name %q: want exactly 4 characters", s)
	}
	for i := 0; i < 4; i++ {
		c := s[i]
		ok := c == '_' || (c >= 'A' && c <= 'Z') || (i > 0 && c >= '0' && c <= '9')
		if !ok {
			return fmt.Errorf("AML name %q: character %d must be A-Z, _ or (not first) 0-9", s, i)
		}
	}
	return nil
}

// amlNameString encodes a path such as "VR00", "\\_SB" or "\\_SB.COM1".
func amlNameString(path string) ([]byte, error) {
	var out []byte
	rest := path
	if strings.HasPrefix(rest, `\`) {
		out = append(out, amlRootChar)
		rest = rest[1:]
	}
	if rest == "" {
		return append(out, 0), nil // NullName
	}
	segs := strings.Split(rest, ".")
	for _, s := range segs {
		if err := validNameSeg(s); err != nil {
			return nil, err
		}
	}
	switch {
	case len(segs) == 2:
		out = append(out, amlDualName)
	case len(segs) > 2:
		if len(segs) > 255 {
			return nil, fmt.Errorf("AML path %q: %d segments, want at most 255", path, len(segs))
		}
		out = append(out, amlMultiName, byte(len(segs)))
	}
	for _, s := range segs {
		out = append(out, s...)
	}
	return out, nil
}

// amlName encodes Name(path, obj).
func amlName(path string, obj []byte) ([]byte, error) {
	ns, err := amlNameString(path)
	if err != nil {
		return nil, err
	}
	out := append([]byte{amlNameOp}, ns...)
	return append(out, obj...), nil
}

// amlPkg encodes op, then a PkgLength covering head and body, then both.
func amlPkg(op []byte, head []byte, body ...[]byte) ([]byte, error) {
	n := len(head)
	for _, b := range body {
		n += len(b)
	}
	pl, err := amlPkgLength(n)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(op)+len(pl)+n)
	out = append(out, op...)
	out = append(out, pl...)
	out = append(out, head...)
	for _, b := range body {
		out = append(out, b...)
	}
	return out, nil
}

// amlScope encodes Scope(path) { body }.
func amlScope(path string, body ...[]byte) ([]byte, error) {
	ns, err := amlNameString(path)
	if err != nil {
		return nil, fmt.Errorf("AML Scope: %w", err)
	}
	return amlPkg([]byte{amlScopeOp}, ns, body...)
}

// amlDevice encodes Device(name) { body }.
func amlDevice(name string, body ...[]byte) ([]byte, error) {
	ns, err := amlNameString(name)
	if err != nil {
		return nil, fmt.Errorf("AML Device: %w", err)
	}
	return amlPkg([]byte{amlExtOpPrefix, amlDeviceOp}, ns, body...)
}

// amlPackage encodes Package() { elems } with a one-byte NumElements.
func amlPackage(elems ...[]byte) ([]byte, error) {
	if len(elems) > 255 {
		return nil, fmt.Errorf("AML Package: %d elements, want at most 255", len(elems))
	}
	return amlPkg([]byte{amlPackageOp}, []byte{byte(len(elems))}, elems...)
}

// amlBuffer encodes Buffer() { data } with its size as an integer.
func amlBuffer(data []byte) ([]byte, error) {
	return amlPkg([]byte{amlBufferOp}, amlInteger(uint64(len(data))), data)
}

// eisaID compresses a 7-character PNP id such as "PNP0501" the way ASL's
// EISAID() does: three 5-bit letters and four hex digits, stored so that the
// little-endian integer's bytes read in the id's order.
func eisaID(id string) (uint32, error) {
	if len(id) != 7 {
		return 0, fmt.Errorf("EISA id %q: want 3 letters and 4 hex digits", id)
	}
	var v uint32
	for i := 0; i < 3; i++ {
		c := id[i]
		if c < 'A' || c > 'Z' {
			return 0, fmt.Errorf("EISA id %q: character %d must be A-Z", id, i)
		}
		v = v<<5 | uint32(c-0x40)
	}
	for i := 3; i < 7; i++ {
		c := id[i]
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, fmt.Errorf("EISA id %q: character %d must be a hex digit 0-9/A-F", id, i)
		}
		v = v<<4 | uint32(d)
	}
	// v now holds the id with the letters in bits 30..16; byte-swapping puts
	// the bytes in the order the spec lays them out.
	return v>>24 | (v>>8)&0xFF00 | (v<<8)&0xFF0000 | v<<24, nil
}

// amlHID encodes a _HID value: an EISA id integer when hid has that form,
// else a string (as "LNRO0005", an ACPI id, is).
func amlHID(hid string) ([]byte, error) {
	if v, err := eisaID(hid); err == nil {
		return amlInteger(uint64(v)), nil
	}
	if hid == "" {
		return nil, fmt.Errorf("_HID: empty")
	}
	return amlString(hid)
}
