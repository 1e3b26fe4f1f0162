package main

import (
	"encoding/json"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"query-status", `{"execute":"query-status"}`},
		{` migrate {"uri":"unix:/tmp/m.sock"} `, `{"execute":"migrate","arguments":{"uri":"unix:/tmp/m.sock"}}`},
		{`migrate-set-parameters  {"max-bandwidth":0}`, `{"execute":"migrate-set-parameters","arguments":{"max-bandwidth":0}}`},
	} {
		r, err := parse(tc.in)
		if err != nil {
			t.Fatalf("parse(%q): %v", tc.in, err)
		}
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != tc.want {
			t.Errorf("parse(%q) = %s, want %s", tc.in, b, tc.want)
		}
	}
	for _, bad := range []string{"", "  ", `migrate {"uri":`, `migrate ["unix:/x"]`, "migrate 5"} {
		if r, err := parse(bad); err == nil {
			t.Errorf("parse(%q) = %+v, want an error", bad, r)
		}
	}
}
