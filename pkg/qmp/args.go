package qmp

import (
	"encoding/json"
	"fmt"
)

// Args are a command's arguments after validation against its ArgSchema.
// Accessors report whether the member is present with the asked type;
// Decode hands the whole object to encoding/json.
type Args struct {
	obj *value
}

// ArgsFromJSON parses a JSON object into Args without any schema check,
// for testing handlers.
func ArgsFromJSON(b []byte) (Args, error) {
	v, err := parseJSON(b)
	if err != nil {
		return Args{}, fmt.Errorf("arguments: %w", err)
	}
	if v.kind != kObject {
		return Args{}, fmt.Errorf("arguments: want a JSON object, got %s", v.typeName())
	}
	return Args{obj: v}, nil
}

func (a Args) member(name string) *value {
	if a.obj == nil {
		return nil
	}
	return a.obj.get(name)
}

// Has reports whether the member is present (null counts as present).
func (a Args) Has(name string) bool { return a.member(name) != nil }

// IsNull reports whether the member is present and null.
func (a Args) IsNull(name string) bool {
	m := a.member(name)
	return m != nil && m.kind == kNull
}

// Str returns a string member.
func (a Args) Str(name string) (string, bool) {
	m := a.member(name)
	if m == nil || m.kind != kString {
		return "", false
	}
	return m.s, true
}

// Int returns an integer member that fits int64.
func (a Args) Int(name string) (int64, bool) {
	m := a.member(name)
	if m == nil || m.kind != kInt {
		return 0, false
	}
	return m.i, true
}

// Uint returns a non-negative integer member. Members declared TypeUint64
// or TypeSize that were sent negative arrive here wrapped, as in QEMU.
func (a Args) Uint(name string) (uint64, bool) {
	m := a.member(name)
	switch {
	case m == nil:
	case m.kind == kUint:
		return m.u, true
	case m.kind == kInt && m.i >= 0:
		return uint64(m.i), true
	}
	return 0, false
}

// Bool returns a boolean member.
func (a Args) Bool(name string) (bool, bool) {
	m := a.member(name)
	if m == nil || m.kind != kBool {
		return false, false
	}
	return m.b, true
}

// Number returns a numeric member as float64.
func (a Args) Number(name string) (float64, bool) {
	m := a.member(name)
	switch {
	case m == nil:
	case m.kind == kInt:
		return float64(m.i), true
	case m.kind == kUint:
		return float64(m.u), true
	case m.kind == kFloat:
		return m.f, true
	}
	return 0, false
}

// Raw returns one member as standard JSON.
func (a Args) Raw(name string) (json.RawMessage, bool) {
	m := a.member(name)
	if m == nil {
		return nil, false
	}
	return m.writeStd(nil), true
}

// JSON returns the whole arguments object as standard JSON ({} if none).
func (a Args) JSON() json.RawMessage {
	if a.obj == nil {
		return json.RawMessage("{}")
	}
	return a.obj.writeStd(nil)
}

// Decode unmarshals the arguments into dst with encoding/json.
func (a Args) Decode(dst any) error {
	if err := json.Unmarshal(a.JSON(), dst); err != nil {
		return fmt.Errorf("decode arguments into %T: %w", dst, err)
	}
	return nil
}
