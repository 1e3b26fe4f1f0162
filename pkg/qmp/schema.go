package qmp

import (
	"fmt"
	"slices"
	"strings"
)

// Type is the QAPI type of a command argument. Validation errors use the
// exact texts of QEMU's QObject input visitor for each type.
type Type uint8

// Argument types. The integer types differ only in range checks and in the
// error text, as in QAPI.
const (
	TypeStr       Type = iota + 1 // 'str'
	TypeInt                       // 'int' / 'int64'
	TypeInt8                      // 'int8'
	TypeInt16                     // 'int16'
	TypeInt32                     // 'int32'
	TypeUint8                     // 'uint8'
	TypeUint16                    // 'uint16'
	TypeUint32                    // 'uint32'
	TypeUint64                    // 'uint64'; negative values are taken modulo 2^64, as QEMU does
	TypeSize                      // 'size': the same rules as uint64
	TypeBool                      // 'bool'
	TypeNumber                    // 'number': any JSON number
	TypeNull                      // 'null'
	TypeAny                       // 'any': any JSON value
	TypeEnum                      // a QAPI enum: a string from Arg.Values
	TypeObject                    // a QAPI struct (or flat union) described by Arg.Object
	TypeArray                     // a QAPI list of Arg.Elem
	TypeStrOrNull                 // the QAPI alternate StrOrNull: a string or null
)

// Arg declares one member of a command's arguments or of a nested object.
type Arg struct {
	// Name is the member name. It is ignored for Arg.Elem.
	Name string
	// Type is the member's QAPI type.
	Type Type
	// Optional members may be absent; required ones are reported missing.
	Optional bool
	// Values lists the accepted strings of a TypeEnum.
	Values []string
	// Object describes the members of a TypeObject; nil means no members.
	Object *ArgSchema
	// Elem describes the elements of a TypeArray.
	Elem *Arg
}

// ArgSchema describes a QAPI struct: a command's arguments or a nested
// object. Members are checked in order, as QEMU's generated visitors do,
// so the first error reported is the one QEMU would report.
type ArgSchema struct {
	// Members are the common members.
	Members []Arg
	// Discriminator, if set, makes this a flat union: it names a required
	// TypeEnum member whose value selects extra members from Variants.
	Discriminator string
	// Variants maps discriminator values to their extra members.
	Variants map[string][]Arg
}

// check reports a malformed schema; it runs once, at registration.
func (s *ArgSchema) check(path string) error {
	if s == nil {
		return nil
	}
	names := map[string]bool{}
	var disc *Arg
	for i := range s.Members {
		a := &s.Members[i]
		if names[a.Name] {
			return fmt.Errorf("%s: member %q declared twice", path, a.Name)
		}
		names[a.Name] = true
		if err := a.check(path + "." + a.Name); err != nil {
			return err
		}
		if a.Name == s.Discriminator {
			disc = a
		}
	}
	if s.Discriminator == "" {
		if len(s.Variants) > 0 {
			return fmt.Errorf("%s: variants without a discriminator", path)
		}
		return nil
	}
	if disc == nil || disc.Type != TypeEnum || disc.Optional {
		return fmt.Errorf("%s: discriminator %q must be a required enum member", path, s.Discriminator)
	}
	for tag, members := range s.Variants {
		if !slices.Contains(disc.Values, tag) {
			return fmt.Errorf("%s: variant %q is not a value of %q", path, tag, s.Discriminator)
		}
		seen := map[string]bool{}
		for i := range members {
			a := &members[i]
			if names[a.Name] || seen[a.Name] {
				return fmt.Errorf("%s: variant %q member %q declared twice", path, tag, a.Name)
			}
			seen[a.Name] = true
			if err := a.check(path + "." + a.Name); err != nil {
				return err
			}
		}
	}
	return nil
}

func (a *Arg) check(path string) error {
	if a.Name == "" && !strings.HasSuffix(path, "[]") {
		return fmt.Errorf("%s: member without a name", path)
	}
	switch a.Type {
	case TypeEnum:
		if len(a.Values) == 0 {
			return fmt.Errorf("%s: enum without values", path)
		}
	case TypeObject:
		return a.Object.check(path)
	case TypeArray:
		if a.Elem == nil {
			return fmt.Errorf("%s: array without an element type", path)
		}
		return a.Elem.check(path + "[]")
	case TypeStr, TypeInt, TypeInt8, TypeInt16, TypeInt32, TypeUint8, TypeUint16,
		TypeUint32, TypeUint64, TypeSize, TypeBool, TypeNumber, TypeNull, TypeAny, TypeStrOrNull:
	default:
		return fmt.Errorf("%s: unknown type %d", path, a.Type)
	}
	return nil
}

// frame is one level of the input visitor's stack, used to build the
// member names QEMU prints ("capabilities[0].state").
type frame struct {
	list  bool
	named bool
	name  string
	index int
}

// validator checks a value tree against a schema, mirroring QEMU's
// qobject-input-visitor and the generated visit functions.
type validator struct {
	stack []frame
}

// validateArgs checks a command's arguments object.
func validateArgs(s *ArgSchema, args *value) *Error {
	var v validator
	v.stack = append(v.stack, frame{})
	return v.members(s, args)
}

// fullName is QEMU's full_name(): the dotted path of a member.
func (v *validator) fullName(name string, named bool) string {
	var parts []string // built back to front
	for i := len(v.stack) - 1; i >= 0; i-- {
		f := v.stack[i]
		if f.list {
			parts = append(parts, fmt.Sprintf("[%d]", f.index))
		} else {
			n := "<anonymous>"
			if named {
				n = name
			}
			parts = append(parts, n, ".")
		}
		name, named = f.name, f.named
	}
	slices.Reverse(parts)
	s := strings.Join(parts, "")
	switch {
	case named:
		return name + s
	case strings.HasPrefix(s, "."):
		return s[1:]
	case s == "":
		return "<anonymous>"
	}
	return s
}

// plainName is what QEMU's visit-core prints for range and enum errors:
// the bare member name, or "null" for a list element.
func plainName(name string, named bool) string {
	if !named {
		return "null"
	}
	return name
}

func (v *validator) members(s *ArgSchema, obj *value) *Error {
	consumed := map[string]bool{}
	visit := func(a *Arg) *Error {
		m := obj.get(a.Name)
		if m == nil {
			if a.Optional {
				return nil
			}
			return genericf("Parameter '%s' is missing", v.fullName(a.Name, true))
		}
		consumed[a.Name] = true
		return v.visit(a, m, a.Name, true)
	}
	if s != nil {
		for i := range s.Members {
			if err := visit(&s.Members[i]); err != nil {
				return err
			}
		}
		if s.Discriminator != "" {
			tag := obj.get(s.Discriminator).s
			for _, a := range s.Variants[tag] {
				if err := visit(&a); err != nil {
					return err
				}
			}
		}
	}
	if len(consumed) < len(obj.obj) {
		if k, ok := firstUnexpected(obj.obj, func(k string) bool { return consumed[k] }); ok {
			return genericf("Parameter '%s' is unexpected", v.fullName(k, true))
		}
	}
	return nil
}

// visit checks one value; name/named is how it was reached (named false for
// list elements).
func (v *validator) visit(a *Arg, m *value, name string, named bool) *Error {
	typeErr := func(expected string) *Error {
		return genericf("Invalid parameter type for '%s', expected: %s", v.fullName(name, named), expected)
	}
	switch a.Type {
	case TypeStr:
		if m.kind != kString {
			return typeErr("string")
		}
	case TypeInt, TypeInt8, TypeInt16, TypeInt32:
		if m.kind != kInt {
			return typeErr("integer")
		}
		lo, hi, cname := intRange(a.Type)
		if m.i < lo || m.i > hi {
			return genericf("Parameter '%s' expects %s", plainName(name, named), cname)
		}
	case TypeUint64, TypeSize, TypeUint8, TypeUint16, TypeUint32:
		var u uint64
		switch m.kind {
		case kUint:
			u = m.u
		case kInt:
			u = uint64(m.i)
			if m.i < 0 {
				// QEMU accepts negative numbers here "for backward
				// compatibility" and wraps them.
				m.kind, m.u = kUint, u
			}
		default:
			return genericf("Parameter '%s' expects uint64", v.fullName(name, named))
		}
		if hi, cname := uintRange(a.Type); u > hi {
			return genericf("Parameter '%s' expects %s", plainName(name, named), cname)
		}
	case TypeBool:
		if m.kind != kBool {
			return typeErr("boolean")
		}
	case TypeNumber:
		if m.kind != kInt && m.kind != kUint && m.kind != kFloat {
			return typeErr("number")
		}
	case TypeNull:
		if m.kind != kNull {
			return typeErr("null")
		}
	case TypeAny:
	case TypeEnum:
		if m.kind != kString {
			return typeErr("string")
		}
		if !slices.Contains(a.Values, m.s) {
			return genericf("Parameter '%s' does not accept value '%s'", plainName(name, named), m.s)
		}
	case TypeStrOrNull:
		if m.kind != kString && m.kind != kNull {
			return genericf("Invalid parameter type for '%s', expected: StrOrNull", plainName(name, named))
		}
	case TypeObject:
		if m.kind != kObject {
			return typeErr("object")
		}
		v.stack = append(v.stack, frame{named: named, name: name})
		err := v.members(a.Object, m)
		v.stack = v.stack[:len(v.stack)-1]
		return err
	case TypeArray:
		if m.kind != kArray {
			return typeErr("array")
		}
		v.stack = append(v.stack, frame{list: true, named: named, name: name})
		defer func() { v.stack = v.stack[:len(v.stack)-1] }()
		for i, e := range m.arr {
			v.stack[len(v.stack)-1].index = i
			if err := v.visit(a.Elem, e, "", false); err != nil {
				return err
			}
		}
	}
	return nil
}

func intRange(t Type) (lo, hi int64, cname string) {
	switch t {
	case TypeInt8:
		return -1 << 7, 1<<7 - 1, "int8_t"
	case TypeInt16:
		return -1 << 15, 1<<15 - 1, "int16_t"
	case TypeInt32:
		return -1 << 31, 1<<31 - 1, "int32_t"
	}
	return -1 << 63, 1<<63 - 1, "int64_t"
}

func uintRange(t Type) (hi uint64, cname string) {
	switch t {
	case TypeUint8:
		return 1<<8 - 1, "uint8_t"
	case TypeUint16:
		return 1<<16 - 1, "uint16_t"
	case TypeUint32:
		return 1<<32 - 1, "uint32_t"
	}
	return 1<<64 - 1, "uint64_t"
}
