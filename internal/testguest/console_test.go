package testguest

import (
	"context"
	"slices"
	"testing"
	"time"
)

// TestContinued: a line split between two consoles (a guest stopped for
// migration mid-line) is read whole, and nothing else changes.
func TestContinued(t *testing.T) {
	src, dst := NewConsole(), NewConsole()
	src.Write([]byte("HB 13\nHB 14\nHB 1"))
	dst.Write([]byte("5\nHB 16\nHB 1"))
	if got := src.Partial(); got != "HB 1" {
		t.Errorf("source's unfinished line = %q", got)
	}
	if got, want := Continued(src, dst), []string{"HB 15", "HB 16"}; !slices.Equal(got, want) {
		t.Errorf("Continued = %q, want %q", got, want)
	}
	if got := dst.Lines(); got[0] != "5" {
		t.Errorf("Continued changed the destination's own lines: %q", got)
	}
	empty := NewConsole()
	if got := Continued(empty, dst); got[0] != "5" {
		t.Errorf("with nothing unfinished on the source: %q", got)
	}
}

// TestSettle: Settle waits while bytes (not only whole lines) keep coming,
// returns once they stop, and gives up when its context ends.
func TestSettle(t *testing.T) {
	c := NewConsole()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
				c.Write([]byte("x")) // never a newline
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	if err := c.Settle(ctx, 100*time.Millisecond); err == nil {
		t.Error("Settle returned while bytes kept arriving")
	}
	cancel()
	close(stop)
	<-done
	t0 := time.Now()
	if err := c.Settle(context.Background(), 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d < 100*time.Millisecond {
		t.Errorf("Settle returned after %v, before the quiet time", d)
	}
}

func TestHeartbeats(t *testing.T) {
	lines := []string{"GUEST-READY x", "HB 7", "OK hb 20", "HB 8", "HB 9x", "5"}
	if n := FirstHeartbeat(lines); n != 7 {
		t.Errorf("FirstHeartbeat = %d, want 7", n)
	}
	if n := LastHeartbeat(lines); n != 8 {
		t.Errorf("LastHeartbeat = %d, want 8", n)
	}
	if FirstHeartbeat(nil) != -1 || LastHeartbeat([]string{"HB"}) != -1 {
		t.Error("no heartbeat should give -1")
	}
}
