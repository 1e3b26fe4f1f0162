package qmp

import (
	"context"
	"strings"
	"testing"
)

func mustParse(t *testing.T, s string) *value {
	t.Helper()
	v, err := parseJSON([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// migrationAddress is a flat union like QAPI's MigrationAddress.
func migrationAddress() *ArgSchema {
	return &ArgSchema{
		Members:       []Arg{{Name: "transport", Type: TypeEnum, Values: []string{"socket", "exec", "file"}}},
		Discriminator: "transport",
		Variants: map[string][]Arg{
			"exec": {{Name: "args", Type: TypeArray, Elem: &Arg{Type: TypeStr}}},
			"file": {{Name: "filename", Type: TypeStr}, {Name: "offset", Type: TypeSize, Optional: true}},
		},
	}
}

func TestValidateUnionsAndPaths(t *testing.T) {
	schema := &ArgSchema{Members: []Arg{
		{Name: "channels", Type: TypeArray, Optional: true, Elem: &Arg{Type: TypeObject, Object: &ArgSchema{Members: []Arg{
			{Name: "channel-type", Type: TypeEnum, Values: []string{"main"}},
			{Name: "addr", Type: TypeObject, Object: migrationAddress()},
		}}}},
		{Name: "matrix", Type: TypeArray, Optional: true, Elem: &Arg{Type: TypeArray, Elem: &Arg{Type: TypeInt8}}},
		{Name: "any", Type: TypeAny, Optional: true},
		{Name: "n", Type: TypeNumber, Optional: true},
		{Name: "z", Type: TypeNull, Optional: true},
	}}
	tests := []struct{ args, want string }{
		{`{}`, ""},
		{`{"channels":[{"channel-type":"main","addr":{"transport":"file","filename":"/x","offset":-1}}]}`, ""},
		{`{"channels":[{"channel-type":"main","addr":{"transport":"exec","args":["a",1]}}]}`,
			"Invalid parameter type for 'channels[0].addr.args[1]', expected: string"},
		{`{"channels":[{"channel-type":"main","addr":{"transport":"file"}}]}`,
			"Parameter 'channels[0].addr.filename' is missing"},
		{`{"channels":[{"channel-type":"main","addr":{"transport":"exec","args":[],"filename":"x"}}]}`,
			"Parameter 'channels[0].addr.filename' is unexpected"},
		{`{"channels":[{"channel-type":"main","addr":{"transport":"tcp"}}]}`,
			"Parameter 'transport' does not accept value 'tcp'"},
		{`{"channels":[{"channel-type":"main"}]}`, "Parameter 'channels[0].addr' is missing"},
		{`{"channels":[{"channel-type":"main","addr":[]}]}`, "Invalid parameter type for 'channels[0].addr', expected: object"},
		{`{"matrix":[[1],[2,300]]}`, "Parameter 'null' expects int8_t"},
		{`{"matrix":[[1],[2,"x"]]}`, "Invalid parameter type for 'matrix[1][1]', expected: integer"},
		{`{"any":{"x":[null]},"n":1.5,"z":null}`, ""},
		{`{"n":"1"}`, "Invalid parameter type for 'n', expected: number"},
		{`{"z":0}`, "Invalid parameter type for 'z', expected: null"},
	}
	for _, tc := range tests {
		err := validateArgs(schema, mustParse(t, tc.args))
		got := ""
		if err != nil {
			got = err.Desc
			if err.Class != GenericError {
				t.Errorf("%s: class %s", tc.args, err.Class)
			}
		}
		if got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.args, got, tc.want)
		}
	}
}

func TestIntegerRanges(t *testing.T) {
	schema := &ArgSchema{Members: []Arg{
		{Name: "i16", Type: TypeInt16, Optional: true},
		{Name: "i32", Type: TypeInt32, Optional: true},
		{Name: "u16", Type: TypeUint16, Optional: true},
		{Name: "u32", Type: TypeUint32, Optional: true},
		{Name: "u64", Type: TypeUint64, Optional: true},
	}}
	tests := []struct{ args, want string }{
		{`{"i16":-32768,"i32":2147483647,"u16":65535,"u32":4294967295,"u64":18446744073709551615}`, ""},
		{`{"i16":32768}`, "Parameter 'i16' expects int16_t"},
		{`{"i32":-2147483649}`, "Parameter 'i32' expects int32_t"},
		{`{"u16":-1}`, "Parameter 'u16' expects uint16_t"},
		{`{"u32":4294967296}`, "Parameter 'u32' expects uint32_t"},
		{`{"u64":18446744073709551616}`, "Parameter 'u64' expects uint64"},
	}
	for _, tc := range tests {
		err := validateArgs(schema, mustParse(t, tc.args))
		got := ""
		if err != nil {
			got = err.Desc
		}
		if got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.args, got, tc.want)
		}
	}
}

func TestSchemaCheck(t *testing.T) {
	bad := map[string]ArgSchema{
		"twice":          {Members: []Arg{{Name: "a", Type: TypeStr}, {Name: "a", Type: TypeInt}}},
		"without a name": {Members: []Arg{{Type: TypeStr}}},
		"without values": {Members: []Arg{{Name: "e", Type: TypeEnum}}},
		"element type":   {Members: []Arg{{Name: "l", Type: TypeArray}}},
		"unknown type":   {Members: []Arg{{Name: "x", Type: 99}}},
		"required enum":  {Members: []Arg{{Name: "d", Type: TypeStr}}, Discriminator: "d"},
		"not a value": {Members: []Arg{{Name: "d", Type: TypeEnum, Values: []string{"a"}}}, Discriminator: "d",
			Variants: map[string][]Arg{"b": nil}},
		"without a discriminator": {Variants: map[string][]Arg{"a": nil}},
		"variant \"a\" member": {Members: []Arg{{Name: "d", Type: TypeEnum, Values: []string{"a"}}}, Discriminator: "d",
			Variants: map[string][]Arg{"a": {{Name: "d", Type: TypeStr}}}},
	}
	for want, schema := range bad {
		s := NewServer(ServerConfig{})
		err := s.Register("cmd", schema, func(ctx context.Context, a Args) (any, error) { return nil, nil })
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want an error containing %q, got %v", want, err)
		}
	}
	s := NewServer(ServerConfig{})
	if err := s.Register("query-commands", ArgSchema{}, func(context.Context, Args) (any, error) { return nil, nil }); err == nil {
		t.Error("a built-in command was replaced")
	}
	if err := s.Register("x", ArgSchema{}, nil); err == nil {
		t.Error("nil handler accepted")
	}
	if err := s.Register("", ArgSchema{}, func(context.Context, Args) (any, error) { return nil, nil }); err == nil {
		t.Error("empty name accepted")
	}
	if got := strings.Join(s.Commands(), ","); got != "qmp_capabilities,query-commands" {
		t.Errorf("commands: %s", got)
	}
}

func TestArgs(t *testing.T) {
	schema := &ArgSchema{Members: []Arg{{Name: "size", Type: TypeSize}}}
	v := mustParse(t, `{"size":-1,"s":"x","i":-5,"b":true,"f":2.5,"n":null,"u":18446744073709551615}`)
	if err := validateArgs(&ArgSchema{Members: append(schema.Members,
		Arg{Name: "s", Type: TypeStr}, Arg{Name: "i", Type: TypeInt}, Arg{Name: "b", Type: TypeBool},
		Arg{Name: "f", Type: TypeNumber}, Arg{Name: "n", Type: TypeStrOrNull}, Arg{Name: "u", Type: TypeUint64})}, v); err != nil {
		t.Fatal(err.Desc)
	}
	a := Args{obj: v}
	if u, ok := a.Uint("size"); !ok || u != 1<<64-1 {
		t.Errorf("size: %d %v (negative uint64 must wrap as in QEMU)", u, ok)
	}
	if s, ok := a.Str("s"); !ok || s != "x" {
		t.Errorf("s: %q %v", s, ok)
	}
	if i, ok := a.Int("i"); !ok || i != -5 {
		t.Errorf("i: %d %v", i, ok)
	}
	if _, ok := a.Uint("i"); ok {
		t.Error("negative int returned as uint")
	}
	if b, ok := a.Bool("b"); !ok || !b {
		t.Error("b")
	}
	if f, ok := a.Number("f"); !ok || f != 2.5 {
		t.Error("f")
	}
	if f, ok := a.Number("i"); !ok || f != -5 {
		t.Error("number from int")
	}
	if !a.IsNull("n") || !a.Has("n") || a.Has("missing") {
		t.Error("null/has")
	}
	if _, ok := a.Str("i"); ok {
		t.Error("int returned as string")
	}
	if raw, ok := a.Raw("s"); !ok || string(raw) != `"x"` {
		t.Errorf("raw: %s", raw)
	}
	var dst struct {
		Size uint64  `json:"size"`
		U    uint64  `json:"u"`
		F    float64 `json:"f"`
		N    *string `json:"n"`
	}
	if err := a.Decode(&dst); err != nil {
		t.Fatal(err)
	}
	if dst.Size != 1<<64-1 || dst.U != 1<<64-1 || dst.F != 2.5 || dst.N != nil {
		t.Errorf("decoded %+v", dst)
	}
	if err := a.Decode(&struct {
		S int `json:"s"`
	}{}); err == nil {
		t.Error("decode of a string into an int succeeded")
	}
	if string((Args{}).JSON()) != "{}" {
		t.Error("empty args")
	}
	if _, err := ArgsFromJSON([]byte(`[1]`)); err == nil {
		t.Error("array accepted as arguments")
	}
	b, err := ArgsFromJSON([]byte(`{"k":'v'}`))
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := b.Str("k"); s != "v" {
		t.Errorf("ArgsFromJSON: %q", s)
	}
}
