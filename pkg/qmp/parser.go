package qmp

import (
	"fmt"
	"strconv"
)

// parser is QEMU's qobject/json-parser.c: recursive descent over the tokens
// of one message. Only the first error is kept, as in QEMU, because the
// callers report a generic follow-up error after the specific one.
type parser struct {
	arena []byte
	toks  []tokRef
	pos   int
	err   string
}

// parse parses the whole token queue; on failure it returns nil and sets err.
func (p *parser) parse() *value {
	v := p.value()
	if v == nil && p.err == "" {
		p.fail("expecting value")
	}
	return v
}

func (p *parser) fail(format string, args ...any) {
	if p.err != "" {
		return
	}
	p.err = "JSON parse error, " + fmt.Sprintf(format, args...)
}

func (p *parser) peek() *tokRef {
	if p.pos >= len(p.toks) {
		return nil
	}
	return &p.toks[p.pos]
}

func (p *parser) pop() *tokRef {
	t := p.peek()
	if t != nil {
		p.pos++
	}
	return t
}

func (p *parser) text(t *tokRef) []byte { return p.arena[t.start:t.end] }

func (p *parser) value() *value {
	t := p.peek()
	if t == nil {
		p.fail("premature EOI")
		return nil
	}
	switch t.typ {
	case tokLCurly:
		return p.object()
	case tokLSquare:
		return p.array()
	case tokInteger, tokFloat, tokString:
		return p.literal()
	case tokKeyword:
		return p.keyword()
	}
	p.fail("expecting value")
	return nil
}

// pair parses one "key": value member into obj; index speeds up the
// duplicate check of large objects.
func (p *parser) pair(obj *value, index map[string]struct{}) (map[string]struct{}, bool) {
	if p.peek() == nil {
		p.fail("premature EOI")
		return index, false
	}
	key := p.value()
	if key == nil || key.kind != kString {
		p.fail("key is not a string in object")
		return index, false
	}
	t := p.pop()
	if t == nil {
		p.fail("premature EOI")
		return index, false
	}
	if t.typ != tokColon {
		p.fail("missing : in object pair")
		return index, false
	}
	val := p.value()
	if val == nil {
		p.fail("Missing value in dict")
		return index, false
	}
	if index == nil && len(obj.obj) >= 16 {
		index = make(map[string]struct{}, 2*len(obj.obj))
		for _, m := range obj.obj {
			index[m.key] = struct{}{}
		}
	}
	dup := false
	if index != nil {
		_, dup = index[key.s]
	} else {
		dup = obj.get(key.s) != nil
	}
	if dup {
		p.fail("duplicate key")
		return index, false
	}
	if index != nil {
		index[key.s] = struct{}{}
	}
	obj.obj = append(obj.obj, member{key: key.s, val: val})
	return index, true
}

func (p *parser) object() *value {
	p.pop() // {
	obj := &value{kind: kObject}
	peek := p.peek()
	if peek == nil {
		p.fail("premature EOI")
		return nil
	}
	if peek.typ == tokRCurly {
		p.pop()
		return obj
	}
	index, ok := p.pair(obj, nil)
	if !ok {
		return nil
	}
	t := p.pop()
	if t == nil {
		p.fail("premature EOI")
		return nil
	}
	for t.typ != tokRCurly {
		if t.typ != tokComma {
			p.fail("expected separator in dict")
			return nil
		}
		if index, ok = p.pair(obj, index); !ok {
			return nil
		}
		if t = p.pop(); t == nil {
			p.fail("premature EOI")
			return nil
		}
	}
	return obj
}

func (p *parser) array() *value {
	p.pop() // [
	arr := &value{kind: kArray}
	peek := p.peek()
	if peek == nil {
		p.fail("premature EOI")
		return nil
	}
	if peek.typ == tokRSquare {
		p.pop()
		return arr
	}
	e := p.value()
	if e == nil {
		p.fail("expecting value")
		return nil
	}
	arr.arr = append(arr.arr, e)
	t := p.pop()
	if t == nil {
		p.fail("premature EOI")
		return nil
	}
	for t.typ != tokRSquare {
		if t.typ != tokComma {
			p.fail("expected separator in list")
			return nil
		}
		if e = p.value(); e == nil {
			p.fail("expecting value")
			return nil
		}
		arr.arr = append(arr.arr, e)
		if t = p.pop(); t == nil {
			p.fail("premature EOI")
			return nil
		}
	}
	return arr
}

func (p *parser) keyword() *value {
	t := p.pop()
	switch s := string(p.text(t)); s {
	case "true":
		return &value{kind: kBool, b: true}
	case "false":
		return &value{kind: kBool}
	case "null":
		return &value{kind: kNull}
	default:
		p.fail("invalid keyword '%s'", s)
	}
	return nil
}

// literal converts a number or string token. Integers become int64 when
// they fit, else uint64, else double, as in QEMU's parse_literal.
func (p *parser) literal() *value {
	t := p.pop()
	s := p.text(t)
	switch t.typ {
	case tokString:
		str, ok := p.parseString(s)
		if !ok {
			return nil
		}
		return strValue(str)
	case tokInteger:
		if i, err := strconv.ParseInt(string(s), 10, 64); err == nil {
			return intValue(i)
		}
		if s[0] != '-' {
			if u, err := strconv.ParseUint(string(s), 10, 64); err == nil {
				if u <= 1<<63-1 {
					return intValue(int64(u))
				}
				return &value{kind: kUint, u: u}
			}
		}
	}
	// Out-of-range values come back as ±Inf with an error, which is what
	// strtod gives QEMU; the value is what counts.
	f, _ := strconv.ParseFloat(string(s), 64)
	return &value{kind: kFloat, f: f}
}

// parseString decodes a string token (quotes included) the way QEMU's
// parse_string does, including its error texts.
func (p *parser) parseString(tok []byte) (string, bool) {
	quote := tok[0]
	out := make([]byte, 0, len(tok))
	i := 1
	at := func(j int) byte {
		if j < len(tok) {
			return tok[j]
		}
		return 0
	}
	for at(i) != quote {
		if i >= len(tok) {
			// The lexer only emits complete strings; this is defensive.
			p.fail("premature EOI")
			return "", false
		}
		c := tok[i]
		if c != '\\' {
			cp, n := modUTF8Codepoint(tok[i:])
			if cp < 0 {
				p.fail("invalid UTF-8 sequence in string")
				return "", false
			}
			i += n
			out = appendRune(out, cp)
			continue
		}
		beg := i
		i++
		e := at(i)
		i++
		switch e {
		case '"', '\'', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			cp := cvt4hex(tok, i)
			i += 4
			if cp >= 0xD800 && cp <= 0xDBFF && at(i) == '\\' && at(i+1) == 'u' {
				cp = 0x10000 + ((cp & 0x3FF) << 10)
				trailing := cvt4hex(tok, i+2)
				if trailing >= 0xDC00 && trailing <= 0xDFFF {
					cp |= trailing & 0x3FF
					i += 6
				} else {
					cp = -1
				}
			}
			if !validCodepoint(cp) {
				end := min(i, len(tok))
				p.fail("%s is not a valid Unicode character", tok[beg:end])
				return "", false
			}
			out = appendRune(out, cp)
		default:
			p.fail("invalid escape sequence in string")
			return "", false
		}
	}
	return string(out), true
}

// cvt4hex reads four hex digits at tok[i:], or returns -1.
func cvt4hex(tok []byte, i int) int {
	cp := 0
	for j := i; j < i+4; j++ {
		if j >= len(tok) {
			return -1
		}
		c := tok[j]
		switch {
		case c >= '0' && c <= '9':
			cp = cp<<4 | int(c-'0')
		case c >= 'a' && c <= 'f':
			cp = cp<<4 | int(c-'a'+10)
		case c >= 'A' && c <= 'F':
			cp = cp<<4 | int(c-'A'+10)
		default:
			return -1
		}
	}
	return cp
}

// appendRune appends cp as UTF-8. NUL is kept as a real NUL byte: QEMU
// stores it as the modified-UTF-8 pair C0 80, which its writer prints back
// as \u0000, the same as a NUL here.
func appendRune(b []byte, cp int) []byte {
	switch {
	case cp < 0x80:
		return append(b, byte(cp))
	case cp < 0x800:
		return append(b, 0xC0|byte(cp>>6), 0x80|byte(cp&0x3F))
	case cp < 0x10000:
		return append(b, 0xE0|byte(cp>>12), 0x80|byte(cp>>6&0x3F), 0x80|byte(cp&0x3F))
	}
	return append(b, 0xF0|byte(cp>>18), 0x80|byte(cp>>12&0x3F), 0x80|byte(cp>>6&0x3F), 0x80|byte(cp&0x3F))
}

// validCodepoint is QEMU's is_valid_codepoint: in range, not a surrogate,
// not one of Unicode's 66 noncharacters.
func validCodepoint(cp int) bool {
	switch {
	case cp < 0 || cp > 0x10FFFF:
		return false
	case cp >= 0xFDD0 && cp <= 0xFDEF:
		return false
	case cp&0xFFFE == 0xFFFE:
		return false
	case cp >= 0xD800 && cp <= 0xDFFF:
		return false
	}
	return true
}

// modUTF8Codepoint is QEMU's mod_utf8_codepoint with n = 6: it decodes one
// sequence at the start of s and returns the code point (or -1) and the
// number of bytes it spans. An empty s or a NUL byte is an empty, invalid
// sequence of length 0.
func modUTF8Codepoint[T string | []byte](s T) (int, int) {
	minCP := [5]int{0x80, 0x800, 0x10000, 0x200000, 0x4000000}
	if len(s) == 0 || s[0] == 0 {
		return -1, 0
	}
	c := s[0]
	switch {
	case c < 0x80:
		return int(c), 1
	case c >= 0xFE:
		return -1, 1
	case c&0x40 == 0:
		return -1, 1
	}
	n := 0
	mask := byte(0x80)
	for ; c&mask != 0; mask >>= 1 {
		n++
	}
	cp := int(c & (mask - 1))
	p := 1
	for k := 1; k < n; k++ {
		var b byte
		if k < len(s) && k < 6 {
			b = s[k]
		}
		if b&0xC0 != 0x80 {
			return -1, p
		}
		p++
		cp = cp<<6 | int(b&0x3F)
	}
	switch {
	case !validCodepoint(cp):
		return -1, p
	case cp < minCP[n-2] && !(cp == 0 && n == 2):
		return -1, p
	}
	return cp, p
}
