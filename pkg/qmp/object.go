package qmp

import "math"

// Object is a handler result (or event data) built without encoding/json:
// its members come out in slice order, as a struct's fields would. It is
// the cheap way to answer frequent commands such as query-status.
type Object []Member

// Member is one name/value pair of an Object. Value may be nil, a bool, a
// string, an int, int64, uint64 or float64, an Object, or anything else
// encoding/json can encode (which takes the slower path).
type Member struct {
	Name  string
	Value any
}

// fromObject converts o, falling back to encoding/json for member values
// of other types.
func fromObject(o Object) (*value, error) {
	v := &value{kind: kObject, obj: make([]member, len(o))}
	vals := make([]value, len(o))
	for i, m := range o {
		mv, err := fromScalar(m.Value, &vals[i])
		if err != nil {
			return nil, err
		}
		v.obj[i] = member{key: m.Name, val: mv}
	}
	return v, nil
}

// fromScalar converts the common scalar types into *dst (or an Object
// recursively); other types go through fromGo.
func fromScalar(x any, dst *value) (*value, error) {
	switch t := x.(type) {
	case nil:
		*dst = value{kind: kNull}
	case bool:
		*dst = value{kind: kBool, b: t}
	case string:
		*dst = value{kind: kString, s: t}
	case int:
		*dst = value{kind: kInt, i: int64(t)}
	case int64:
		*dst = value{kind: kInt, i: t}
	case uint64:
		if t > math.MaxInt64 {
			*dst = value{kind: kUint, u: t}
		} else {
			*dst = value{kind: kInt, i: int64(t)}
		}
	case float64:
		*dst = value{kind: kFloat, f: t}
	case Object:
		return fromObject(t)
	default:
		return fromGo(x)
	}
	return dst, nil
}
