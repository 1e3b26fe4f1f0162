package qmp

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
)

// kind is the type of a JSON value, split the way QEMU's QObject splits
// numbers (QNum holds an int64, a uint64 or a double).
type kind uint8

const (
	kNull kind = iota
	kBool
	kInt   // fits int64
	kUint  // above math.MaxInt64
	kFloat // a JSON float, or an integer too large for uint64
	kString
	kArray
	kObject
)

// value is a parsed JSON value. Objects keep their members in insertion
// order; the writer derives QEMU's output order from it.
type value struct {
	kind kind
	b    bool
	i    int64
	u    uint64
	f    float64
	s    string
	arr  []*value
	obj  []member
}

// member is one name/value pair of an object.
type member struct {
	key string
	val *value
}

// get returns the member called key, or nil.
func (v *value) get(key string) *value {
	for i := range v.obj {
		if v.obj[i].key == key {
			return v.obj[i].val
		}
	}
	return nil
}

// typeName names v's type for messages.
func (v *value) typeName() string {
	switch v.kind {
	case kNull:
		return "null"
	case kBool:
		return "boolean"
	case kInt, kUint, kFloat:
		return "number"
	case kString:
		return "string"
	case kArray:
		return "array"
	}
	return "object"
}

func strValue(s string) *value          { return &value{kind: kString, s: s} }
func intValue(i int64) *value           { return &value{kind: kInt, i: i} }
func objValue(members ...member) *value { return &value{kind: kObject, obj: members} }

// fromGo converts a Go value to a value tree through encoding/json, so that
// handlers can return structs with json tags, maps, slices or
// json.RawMessage. Member order is the order encoding/json writes.
func fromGo(x any) (*value, error) {
	switch t := x.(type) {
	case *value:
		return t, nil
	case Object:
		return fromObject(t)
	}
	b, err := json.Marshal(x)
	if err != nil {
		return nil, fmt.Errorf("encode %T as JSON: %w", x, err)
	}
	return parseJSON(b)
}

// parseJSON parses one complete JSON text with the QEMU-compatible parser.
func parseJSON(b []byte) (*value, error) {
	var (
		got     *value
		errText string
		n       int
	)
	s := newStreamer(func(v *value, err string) {
		n++
		if n == 1 {
			got, errText = v, err
		}
	})
	s.feed(b)
	// A trailing scalar is only complete once a byte follows it, exactly as
	// on a QMP connection; a space finishes it without adding a token.
	s.feed([]byte{' '})
	switch {
	case n == 0:
		return nil, fmt.Errorf("parse JSON: incomplete input")
	case errText != "":
		return nil, fmt.Errorf("parse JSON: %s", errText)
	case n > 1:
		return nil, fmt.Errorf("parse JSON: more than one value")
	}
	return got, nil
}

// writeStd appends v as standard compact JSON (as encoding/json would
// accept it), used to hand arguments to encoding/json.
func (v *value) writeStd(b []byte) []byte { return appendValue(b, v, false) }

// appendFloat formats f as QEMU does ("%.17g"). Infinity, which QEMU prints
// as the invalid JSON "inf", becomes the largest finite double instead.
func appendFloat(b []byte, f float64) []byte {
	switch {
	case math.IsInf(f, 1):
		f = math.MaxFloat64
	case math.IsInf(f, -1):
		f = -math.MaxFloat64
	case math.IsNaN(f):
		return append(b, '0')
	}
	return strconv.AppendFloat(b, f, 'g', 17, 64)
}
