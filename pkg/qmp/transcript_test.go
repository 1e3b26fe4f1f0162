package qmp

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Golden transcripts (testdata/*.txt). One directive per line:
//
//	# comment (and blank lines) are ignored
//	-> TEXT            send TEXT and a newline
//	=> TEXT            send TEXT with no newline
//	~> "GO STRING"     send the bytes of a Go-quoted string exactly
//	<- LINE            expect LINE followed by "\r\n"
//	!event NAME [JSON] broadcast an event (at eventTime)
//
// Timestamps are normalised on both sides before comparison. After the
// last directive the client half-closes and must see no further output.

type tstep struct {
	line int
	op   string
	arg  string
}

func loadTranscript(t testing.TB, path string) []tstep {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var steps []tstep
	for i, l := range strings.Split(string(data), "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		op, arg, _ := strings.Cut(l, " ")
		switch op {
		case "->", "=>", "<-", "!event":
		case "~>":
			u, err := strconv.Unquote(arg)
			if err != nil {
				t.Fatalf("%s:%d: bad quoted string: %v", path, i+1, err)
			}
			arg = u
		default:
			t.Fatalf("%s:%d: unknown directive %q", path, i+1, op)
		}
		steps = append(steps, tstep{line: i + 1, op: op, arg: arg})
	}
	return steps
}

func normaliseTimestamps(s string) string {
	re := regexp.MustCompile(`"timestamp": \{"seconds": -?\d+, "microseconds": -?\d+\}`)
	return re.ReplaceAllString(s, `"timestamp": {"seconds": S, "microseconds": U}`)
}

// lineReader reads CRLF-terminated lines with a deadline.
type lineReader struct {
	c  net.Conn
	br *bufio.Reader
}

func (r *lineReader) next(timeout time.Duration) (string, error) {
	_ = r.c.SetReadDeadline(time.Now().Add(timeout))
	l, err := r.br.ReadString('\n')
	if err != nil {
		return l, err
	}
	if !strings.HasSuffix(l, "\r\n") {
		return l, fmt.Errorf("line not terminated by CRLF: %q", l)
	}
	return strings.TrimSuffix(l, "\r\n"), nil
}

func runTranscript(t *testing.T, path string) {
	s, sock, _ := newTestServer(t, qemu72(t))
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := &lineReader{c: c, br: bufio.NewReader(c)}
	for _, st := range loadTranscript(t, path) {
		where := fmt.Sprintf("%s:%d", filepath.Base(path), st.line)
		switch st.op {
		case "->":
			_, err = c.Write([]byte(st.arg + "\n"))
		case "=>", "~>":
			_, err = c.Write([]byte(st.arg))
		case "!event":
			name, data, _ := strings.Cut(st.arg, " ")
			var d any
			if data != "" {
				d = json.RawMessage(data)
			}
			// Transcripts put events after a "<-", so the server has
			// handled everything sent before them.
			s.Broadcast(name, d, eventTime())
		case "<-":
			got, rerr := r.next(5 * time.Second)
			if rerr != nil {
				t.Fatalf("%s: want %s\nread error: %v (partial %q)", where, st.arg, rerr, got)
			}
			if normaliseTimestamps(got) != normaliseTimestamps(st.arg) {
				t.Fatalf("%s: mismatch\nwant: %s\n got: %s", where, st.arg, got)
			}
		}
		if err != nil {
			t.Fatalf("%s: write: %v", where, err)
		}
	}
	if err := c.(*net.UnixConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	rest, err := r.next(5 * time.Second)
	if !errors.Is(err, io.EOF) || rest != "" {
		t.Fatalf("%s: unexpected output after the transcript: %q (err %v)", filepath.Base(path), rest, err)
	}
}

func TestTranscripts(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 9 {
		t.Fatalf("found only %d transcripts", len(files))
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			t.Parallel()
			runTranscript(t, f)
		})
	}
}

// TestTranscriptsByteByByte replays the transcripts that broadcast no
// events with every byte in its own write, over a socket pair: the replies
// must not change by a single byte.
func TestTranscriptsByteByByte(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.txt")
	replayed := 0
	for _, f := range files {
		steps := loadTranscript(t, f)
		var in, want bytes.Buffer
		timed := false
		for _, st := range steps {
			switch st.op {
			case "->":
				in.WriteString(st.arg + "\n")
			case "=>", "~>":
				in.WriteString(st.arg)
			case "<-":
				want.WriteString(normaliseTimestamps(st.arg) + "\r\n")
			case "!event":
				timed = true
			}
		}
		if timed {
			continue // depends on when the event is sent
		}
		replayed++
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			t.Parallel()
			s := NewServer(qemu72(t))
			defer s.Close()
			registerFakes(t, s)
			got, err := feedBytes(s, in.Bytes(), 1, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if normaliseTimestamps(string(got)) != want.String() {
				t.Fatalf("mismatch\nwant:\n%s\ngot:\n%s", want.String(), got)
			}
		})
	}
	if replayed < 7 {
		t.Fatalf("only %d transcripts replayed", replayed)
	}
}
