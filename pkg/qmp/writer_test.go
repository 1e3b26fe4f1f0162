package qmp

import (
	"encoding/json"
	"testing"
)

// TestWriterMatchesQEMU re-encodes Go values and compares with the bytes
// QEMU 7.2 printed for the same data (reference transcript).
func TestWriterMatchesQEMU(t *testing.T) {
	type capState struct {
		Capability string `json:"capability"`
		State      bool   `json:"state"`
	}
	type cpuProps struct {
		CoreID   int `json:"core-id"`
		SocketID int `json:"socket-id"`
		ThreadID int `json:"thread-id"`
	}
	type cpuInfo struct {
		CPUIndex int      `json:"cpu-index"`
		QOMPath  string   `json:"qom-path"`
		ThreadID int      `json:"thread-id"`
		Props    cpuProps `json:"props"`
		Target   string   `json:"target"`
	}
	tests := []struct {
		in   any
		want string
	}{
		{statusInfo{Status: "paused"}, `{"status": "paused", "singlestep": false, "running": false}`},
		{[]capState{{"xbzrle", false}, {"rdma-pin-all", false}}, `[{"state": false, "capability": "xbzrle"}, {"state": false, "capability": "rdma-pin-all"}]`},
		{[]cpuInfo{{0, "/machine/unattached/device[0]", 17660, cpuProps{}, "x86_64"}},
			`[{"thread-id": 17660, "props": {"core-id": 0, "thread-id": 0, "socket-id": 0}, "qom-path": "/machine/unattached/device[0]", "cpu-index": 0, "target": "x86_64"}]`},
		{VersionInfo{QEMU: VersionTriple{7, 2, 22}, Package: "p"}, `{"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "p"}`},
		{map[string]any{}, `{}`},
		{[]int{}, `[]`},
		{"VM status: paused (prelaunch)\r\n", `"VM status: paused (prelaunch)\r\n"`},
		{"<&>\u2028é😀\x7f\x01", `"<&>\u2028\u00E9\uD83D\uDE00\u007F\u0001"`},
		{json.RawMessage(`{"mbps":0.1,"n":1e3,"u":18446744073709551615}`), `{"n": 1000, "mbps": 0.10000000000000001, "u": 18446744073709551615}`},
	}
	for _, tc := range tests {
		v, err := fromGo(tc.in)
		if err != nil {
			t.Fatalf("%v: %v", tc.in, err)
		}
		if got := string(appendQEMU(nil, v)); got != tc.want {
			t.Errorf("%#v:\n got %s\nwant %s", tc.in, got, tc.want)
		}
	}
}

func TestQuotedInvalidUTF8(t *testing.T) {
	// QEMU replaces each invalid sequence by one U+FFFD.
	got := string(appendQuoted(nil, "a\xffb\xc3c\xed\xa0\x80d\x00"))
	want := `"a\uFFFDb\uFFFDc\uFFFDd\u0000"`
	if got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

func TestFloatFormat(t *testing.T) {
	for in, want := range map[float64]string{
		0.1: "0.10000000000000001", 100: "100", 1e21: "1e+21", 1.5e300: "1.5000000000000001e+300",
	} {
		if got := string(appendFloat(nil, in)); got != want {
			t.Errorf("%v: got %s, want %s", in, got, want)
		}
	}
	v, err := parseJSON([]byte(`1e999`))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(appendQEMU(nil, v)); got != "1.7976931348623157e+308" {
		t.Errorf("overflow: got %s", got)
	}
}

func TestParseJSONErrors(t *testing.T) {
	for in, want := range map[string]string{
		`{"a":1`: "parse JSON: incomplete input",
		`{} {}`:  "parse JSON: more than one value",
		`{"a"}`:  "parse JSON: JSON parse error, missing : in object pair",
	} {
		if _, err := parseJSON([]byte(in)); err == nil || err.Error() != want {
			t.Errorf("%s: got %v, want %s", in, err, want)
		}
	}
}

// TestObjectMatchesStruct checks that an Object encodes exactly as the
// equivalent struct does through encoding/json.
func TestObjectMatchesStruct(t *testing.T) {
	type inner struct {
		A int64   `json:"a"`
		F float64 `json:"f"`
	}
	type outer struct {
		Running bool   `json:"running"`
		Status  string `json:"status"`
		Big     uint64 `json:"big"`
		N       any    `json:"n"`
		In      inner  `json:"in"`
		List    []int  `json:"list"`
		Neg     int    `json:"neg"`
	}
	obj := Object{
		{Name: "running", Value: true}, {Name: "status", Value: "paused\n"},
		{Name: "big", Value: uint64(1 << 63)}, {Name: "n", Value: nil},
		{Name: "in", Value: Object{{Name: "a", Value: int64(-3)}, {Name: "f", Value: 0.1}}},
		{Name: "list", Value: []int{1, 2}}, {Name: "neg", Value: -7},
	}
	st := outer{true, "paused\n", 1 << 63, nil, inner{-3, 0.1}, []int{1, 2}, -7}
	ov, err := fromGo(obj)
	if err != nil {
		t.Fatal(err)
	}
	sv, err := fromGo(st)
	if err != nil {
		t.Fatal(err)
	}
	got, want := string(appendQEMU(nil, ov)), string(appendQEMU(nil, sv))
	if got != want {
		t.Fatalf("Object encodes as\n%s\nstruct as\n%s", got, want)
	}
}

// TestQdictOrderSmallMatchesLarge checks the allocation-free ordering of
// small objects against the general one.
func TestQdictOrderSmallMatchesLarge(t *testing.T) {
	keys := []string{"a", "b", "status", "running", "id", "return", "event", "data",
		"timestamp", "seconds", "microseconds", "qemu", "package", "major", "minor", "micro",
		"x", "y"}
	for n := 0; n <= smallObject; n++ {
		for rot := 0; rot < len(keys); rot++ {
			var ms []member
			for i := 0; i < n; i++ {
				ms = append(ms, member{key: keys[(i+rot)%len(keys)]})
			}
			// Same-bucket ties: duplicate a key so insertion order matters.
			if n > 1 {
				ms[n-1].key = ms[0].key
			}
			small := qdictOrder(ms, nil)
			// Pad past smallObject to force the general path, then cut.
			padded := append(append([]member(nil), ms...), make([]member, smallObject+1)...)
			for i := n; i < len(padded); i++ {
				padded[i].key = "zz-pad-" + string(rune('a'+i))
			}
			var large []int
			for _, i := range qdictOrder(padded, nil) {
				if i < n {
					large = append(large, i)
				}
			}
			if len(small) != len(large) {
				t.Fatalf("n=%d rot=%d: %v vs %v", n, rot, small, large)
			}
			for i := range small {
				if small[i] != large[i] {
					t.Fatalf("n=%d rot=%d: small %v, general %v", n, rot, small, large)
				}
			}
		}
	}
}
