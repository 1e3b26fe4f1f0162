package qmp

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// FuzzServerInput feeds arbitrary bytes to a connection and requires that
// the server neither panics nor hangs, that every output line is one
// CRLF-terminated JSON object of a known shape, and that every message
// the input contains is answered exactly once, in order.
func FuzzServerInput(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.txt")
	for _, file := range files {
		var all bytes.Buffer
		for _, st := range loadTranscript(f, file) {
			switch st.op {
			case "->":
				all.WriteString(st.arg + "\n")
				f.Add([]byte(st.arg))
			case "=>", "~>":
				all.WriteString(st.arg)
				f.Add([]byte(st.arg))
			}
		}
		f.Add(all.Bytes())
	}
	s := NewServer(ServerConfig{Logger: zerolog.Nop(), Version: VersionTriple{9, 2, 0}, Package: "fuzz"})
	registerFakes(f, s).maxSleep = 10 * time.Millisecond
	defer s.Close()
	f.Fuzz(func(t *testing.T, in []byte) {
		// The number of messages in the input, by the same lexer rules.
		var want []bool // true for parse errors
		st := newStreamer(func(v *value, err string) { want = append(want, err != "") })
		st.feed(in)

		out, err := feedBytes(s, in, 1+len(in)%7, 20*time.Second)
		if err != nil {
			t.Fatalf("input %q: %v", in, err)
		}
		lines := strings.Split(string(out), "\r\n")
		if lines[len(lines)-1] != "" {
			t.Fatalf("output does not end with CRLF: %q", out)
		}
		lines = lines[:len(lines)-1]
		if len(lines) == 0 || !strings.HasPrefix(lines[0], `{"QMP": `) {
			t.Fatalf("no greeting: %q", out)
		}
		replies := 0
		for _, l := range lines[1:] {
			if strings.ContainsAny(l, "\r\n") {
				t.Fatalf("line break inside a line: %q", l)
			}
			var m map[string]json.RawMessage
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("invalid JSON %q: %v", l, err)
			}
			switch {
			case m["event"] != nil:
				continue
			case m["return"] != nil && m["error"] == nil, m["error"] != nil && m["return"] == nil:
			default:
				t.Fatalf("neither reply nor event: %q", l)
			}
			if replies < len(want) && want[replies] && (m["error"] == nil || m["id"] != nil) {
				t.Fatalf("reply %d should be a parse error without id: %q", replies, l)
			}
			replies++
		}
		if replies != len(want) {
			t.Fatalf("input %q: %d replies for %d messages\n%s", in, replies, len(want), out)
		}
	})
}
