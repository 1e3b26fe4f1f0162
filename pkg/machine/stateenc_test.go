package machine

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestStateBinaryRoundTrip(t *testing.T) {
	s := sampleState()
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got State
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&got, s) {
		t.Errorf("round trip changed the state:\n got %+v\nwant %+v", got, *s)
	}
	j, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("binary %d bytes, JSON %d bytes", len(b), len(j))
}

// Every cut of a good encoding, and every extra byte after it, is refused
// with ErrBadState: a truncated stream never loads half a state.
func TestStateBinaryTruncated(t *testing.T) {
	b, err := sampleState().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	for n := range len(b) {
		var s State
		err := s.UnmarshalBinary(b[:n])
		if !errors.Is(err, ErrBadState) {
			t.Fatalf("%d of %d bytes: err = %v, want ErrBadState", n, len(b), err)
		}
	}
	var s State
	if err := s.UnmarshalBinary(append(b, 0)); err == nil || !strings.Contains(err.Error(), "after the end") {
		t.Errorf("a trailing byte: err = %v", err)
	}
}

// Counts and lengths are checked before anything is allocated, and the
// error names the part.
func TestStateBinaryHostileCounts(t *testing.T) {
	good, err := sampleState().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	headLen := binary.LittleEndian.Uint32(good[8:])
	vcpuCount := 12 + int(headLen)
	for _, c := range []struct {
		name string
		at   int
		val  uint32
		want string
	}{
		{"version", 4, 1, "version 1"},
		{"head length", 8, 1 << 30, "head length"},
		{"vCPU count", vcpuCount, 1 << 20, "vCPU count"},
		{"vCPU count beyond the data", vcpuCount, 1000, "items need"},
	} {
		b := append([]byte(nil), good...)
		binary.LittleEndian.PutUint32(b[c.at:], c.val)
		var s State
		err := s.UnmarshalBinary(b)
		if !errors.Is(err, ErrBadState) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want ErrBadState naming %q", c.name, err, c.want)
		}
	}
	var s State
	if err := s.UnmarshalBinary([]byte(`{"version":2}`)); !errors.Is(err, ErrBadState) || !strings.Contains(err.Error(), "magic") {
		t.Errorf("JSON input: err = %v, want bad magic", err)
	}
}

// BenchmarkStateEncoding compares the binary form with JSON, both ways:
// this is guest downtime.
func BenchmarkStateEncoding(b *testing.B) {
	s := sampleState()
	b.Run("binary", func(b *testing.B) {
		for b.Loop() {
			p, err := s.MarshalBinary()
			if err != nil {
				b.Fatal(err)
			}
			var t State
			if err := t.UnmarshalBinary(p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json", func(b *testing.B) {
		for b.Loop() {
			p, err := json.Marshal(s)
			if err != nil {
				b.Fatal(err)
			}
			var t State
			if err := json.Unmarshal(p, &t); err != nil {
				b.Fatal(err)
			}
		}
	})
}
