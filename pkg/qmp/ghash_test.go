package qmp

import (
	"strings"
	"testing"
)

// TestFirstUnexpected checks which unexpected member is named, against
// QEMU 7.2 (GLib 2.74) answers to query-status with these arguments.
func TestFirstUnexpected(t *testing.T) {
	tests := []struct {
		keys string
		want string
	}{
		{"bogus other third", "third"},
		{"other bogus", "bogus"},
		{"tau gamma iota", "iota"},
		{"nu eta delta pi alpha", "alpha"},
		{"xi alpha omi iota theta", "alpha"},
		{"delta lam alpha sig rho tau", "alpha"},
		{"alpha nu eta xi ups iota", "iota"},
		{"mu theta tau", "tau"},
		{"kappa alpha xi delta zeta", "xi"},
		{"eta kappa tau pi nu sig", "sig"},
		// tables that grew: the model is approximate there, but these hold
		{"a b c d e f g h i", "b"},
		{"one two three four five six seven eight nine ten", "one"},
	}
	for _, tc := range tests {
		var obj []member
		for _, k := range strings.Fields(tc.keys) {
			obj = append(obj, member{key: k, val: intValue(1)})
		}
		got, ok := firstUnexpected(obj, func(string) bool { return false })
		if !ok || got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.keys, got, tc.want)
		}
	}
	obj := []member{{key: "capabilities"}, {key: "b"}, {key: "a"}}
	got, _ := firstUnexpected(obj, func(k string) bool { return k == "capabilities" })
	if got != "b" {
		t.Errorf("with a consumed member: got %q, want b", got)
	}
	if _, ok := firstUnexpected(obj, func(string) bool { return true }); ok {
		t.Error("all members known, but one was reported")
	}
}
