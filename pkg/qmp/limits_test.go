package qmp

import (
	"bytes"
	"strings"
	"testing"
)

// collect feeds input to a fresh streamer and returns one line per message:
// the error text, or "value:<kind>" for a parsed value.
func collect(input []byte) []string {
	var out []string
	s := newStreamer(func(v *value, err string) {
		if err != "" {
			out = append(out, err)
			return
		}
		out = append(out, "value:"+v.typeName())
	})
	s.feed(input)
	return out
}

// The expected results below are what QEMU 7.2 answered to the same input
// (after "JSON parse error"s it had no id and every message got a reply).
func TestParserLimits(t *testing.T) {
	tests := []struct {
		name  string
		input []byte
		want  []string
	}{
		{
			name:  "nesting 1024 is accepted",
			input: []byte(strings.Repeat("[", 1024) + strings.Repeat("]", 1024) + "\n"),
			want:  []string{"value:array"},
		},
		{
			name:  "nesting 1025 fails, the rest is parsed anew",
			input: []byte(strings.Repeat("[", 1025) + "]]]\n"),
			want: []string{
				"JSON nesting depth limit exceeded",
				"JSON parse error, expecting value",
				"JSON parse error, expecting value",
				"JSON parse error, expecting value",
			},
		},
		{
			name:  "nesting counts braces and brackets together",
			input: []byte(strings.Repeat(`{"a":[`, 513) + "\n"),
			want: []string{
				"JSON nesting depth limit exceeded",
				"value:string", // the "a" after the 1025th opening
				"JSON parse error, expecting value",
			},
		},
		{
			name:  "token count",
			input: []byte("[" + strings.Repeat("1,", 1<<20) + "]\n"),
			want:  []string{"JSON token count limit exceeded", "JSON parse error, expecting value"},
		},
		{
			name:  "2097152 tokens are accepted",
			input: []byte("[" + strings.Repeat("1,", 1<<20-1) + "1]\n"),
			want:  []string{"value:array"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := collect(tc.input)
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Fatalf("got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// TestTokenSizeLimit sends a 64 MiB string: QEMU 7.2 (probed, it takes
// five minutes) cuts the token at 64 MiB + 1 byte, refuses the message,
// and lexes the closing quote as the start of a new string that the
// newline then breaks.
func TestTokenSizeLimit(t *testing.T) {
	if testing.Short() {
		t.Log("64 MiB input: runs without -short only")
		return
	}
	var b bytes.Buffer
	b.WriteString(`["`)
	b.Write(bytes.Repeat([]byte{'a'}, maxTokenSize))
	b.WriteString("\"]\n{}")
	got := collect(b.Bytes())
	want := []string{
		"JSON token size limit exceeded",
		"JSON parse error, stray '\"]\n'",
		"value:object",
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// TestTokenSizeSum checks the per-message sum of token sizes.
func TestTokenSizeSum(t *testing.T) {
	if testing.Short() {
		t.Log("64 MiB input: runs without -short only")
		return
	}
	half := strings.Repeat("b", 32<<20)
	in := []byte(`{"a":"` + half + `","b":"` + half + `","c":1}` + "{}")
	got := collect(in)
	if len(got) == 0 || got[0] != "JSON token size limit exceeded" {
		t.Fatalf("got %q", got)
	}
	if got[len(got)-1] != "value:object" {
		t.Fatalf("did not recover: %q", got)
	}
}
