package qmp

import (
	"sort"
	"strconv"
)

// The writer reproduces QEMU's qobject/json-writer.c in its compact form
// (`", "` between members, `": "` after names, ASCII only) and the member
// order of QEMU's QDict, so that replies are byte-for-byte what QEMU sends.

// qdictBuckets is QDICT_BUCKET_MAX.
const qdictBuckets = 512

// tdbHash is the hash QEMU's QDict uses (qobject/qdict.c), in uint32
// arithmetic as in C.
func tdbHash(name string) uint32 {
	v := uint32(0x238F13AF) * uint32(len(name))
	for i := 0; i < len(name); i++ {
		v += uint32(name[i]) << (uint(i) * 5 % 24)
	}
	return 1103515243*v + 12345
}

// qdictOrder returns the indices of members in the order QEMU iterates a
// QDict built by inserting them in slice order: by bucket, and within a
// bucket the most recently inserted first (QLIST_INSERT_HEAD). The result
// is appended to idx, so small objects can be ordered without allocating.
func qdictOrder(members []member, idx []int) []int {
	if len(members) <= smallObject {
		var bucket [smallObject]uint32
		for i := range members {
			bucket[i] = tdbHash(members[i].key) % qdictBuckets
		}
		base := len(idx)
		// Insertion sort: stable in the sense needed here because later
		// members of one bucket are placed before earlier ones.
		for i := range members {
			j := len(idx)
			idx = append(idx, i)
			for j > base && bucket[idx[j-1]] >= bucket[i] {
				idx[j] = idx[j-1]
				j--
			}
			idx[j] = i
		}
		return idx
	}
	// A separate slice, so that the caller's idx does not escape through
	// sort.Slice's closure and can stay on the stack.
	order := make([]int, len(members))
	bucket := make([]uint32, len(members))
	for i := range members {
		order[i] = i
		bucket[i] = tdbHash(members[i].key) % qdictBuckets
	}
	sort.Slice(order, func(a, b int) bool {
		ia, ib := order[a], order[b]
		if bucket[ia] != bucket[ib] {
			return bucket[ia] < bucket[ib]
		}
		return ia > ib
	})
	return append(idx, order...)
}

// smallObject is the member count up to which objects are ordered on the
// stack.
const smallObject = 16

// appendQEMU appends v as QEMU's compact JSON writer would.
func appendQEMU(b []byte, v *value) []byte { return appendValue(b, v, true) }

// appendValue writes v in one of the two styles the package needs: QEMU's
// (", " and ": " separators, members in QDict hash order) for the wire, or
// standard compact JSON in insertion order for encoding/json.
func appendValue(b []byte, v *value, qemu bool) []byte {
	sep, colon := ",", ":"
	if qemu {
		sep, colon = ", ", ": "
	}
	switch v.kind {
	case kNull:
		return append(b, "null"...)
	case kBool:
		return strconv.AppendBool(b, v.b)
	case kInt:
		return strconv.AppendInt(b, v.i, 10)
	case kUint:
		return strconv.AppendUint(b, v.u, 10)
	case kFloat:
		return appendFloat(b, v.f)
	case kString:
		return appendQuoted(b, v.s)
	case kArray:
		b = append(b, '[')
		for i, e := range v.arr {
			if i > 0 {
				b = append(b, sep...)
			}
			b = appendValue(b, e, qemu)
		}
		return append(b, ']')
	}
	var buf [smallObject]int
	order := buf[:0]
	if qemu {
		order = qdictOrder(v.obj, order)
	} else {
		for i := range v.obj {
			order = append(order, i)
		}
	}
	b = append(b, '{')
	for n, i := range order {
		if n > 0 {
			b = append(b, sep...)
		}
		b = appendQuoted(b, v.obj[i].key)
		b = append(b, colon...)
		b = appendValue(b, v.obj[i].val, qemu)
	}
	return append(b, '}')
}

const hexDigits = "0123456789ABCDEF"

// appendQuoted is QEMU's quoted_str: the short escapes for the usual
// control characters, \uXXXX (upper-case hex, surrogate pairs beyond the
// BMP) for everything else outside printable ASCII, and U+FFFD for bytes
// that are not valid (modified) UTF-8.
func appendQuoted(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		var cp, n int
		switch c := s[i]; {
		case c >= 0x20 && c < 0x7F && c != '"' && c != '\\':
			b = append(b, c)
			i++
			continue
		case c == 0:
			// A Go string may hold NUL; QEMU holds it as C0 80.
			cp, n = 0, 1
		default:
			cp, n = modUTF8Codepoint(s[i:min(i+6, len(s))])
			if n == 0 {
				n = 1
			}
		}
		i += n
		switch cp {
		case '"':
			b = append(b, '\\', '"')
		case '\\':
			b = append(b, '\\', '\\')
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			if cp < 0 {
				cp = 0xFFFD
			}
			switch {
			case cp > 0xFFFF:
				b = appendU4(b, 0xD800+((cp-0x10000)>>10))
				b = appendU4(b, 0xDC00+((cp-0x10000)&0x3FF))
			case cp < 0x20 || cp >= 0x7F:
				b = appendU4(b, cp)
			default:
				b = append(b, byte(cp))
			}
		}
	}
	return append(b, '"')
}

func appendU4(b []byte, cp int) []byte {
	return append(b, '\\', 'u', hexDigits[cp>>12&0xF], hexDigits[cp>>8&0xF], hexDigits[cp>>4&0xF], hexDigits[cp&0xF])
}
