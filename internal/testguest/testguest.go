// Package testguest helps tests boot vmmd's test guest (test/guest) and talk
// to it over its serial console, whose line protocol is documented in
// test/guest/README.md.
package testguest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// RepoRoot returns the repository root, found from this source file.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Path returns the path of a built artefact under build/guest (for example
// "vmmd-testguest.elf"). If it is missing the test is skipped, or fails when
// VMMD_REQUIRE_KVM=1 (CI), because a KVM test that cannot run must not pass.
func Path(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(RepoRoot(), "build", "guest", name)
	if _, err := os.Stat(p); err != nil {
		msg := fmt.Sprintf("test guest %s not built (run `make guest`): %v", p, err)
		if os.Getenv("VMMD_REQUIRE_KVM") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
}

// Console collects a guest's serial output and lets a test wait for lines.
// It is an io.Writer for the VMM's serial output.
type Console struct {
	mu      sync.Mutex
	closed  error
	partial []byte
	lines   []string
	total   int // bytes written so far
	changed chan struct{}
	// Echo, if set, receives every complete line (for test logs).
	Echo func(string)
}

// NewConsole returns an empty console.
func NewConsole() *Console { return &Console{changed: make(chan struct{})} }

// Write implements io.Writer.
func (c *Console) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.total += len(p)
	c.partial = append(c.partial, p...)
	var done []string
	for {
		i := bytes.IndexByte(c.partial, '\n')
		if i < 0 {
			break
		}
		line := strings.TrimRight(string(c.partial[:i]), "\r")
		c.partial = c.partial[i+1:]
		c.lines = append(c.lines, line)
		done = append(done, line)
	}
	if len(done) > 0 {
		close(c.changed)
		c.changed = make(chan struct{})
	}
	echo := c.Echo
	c.mu.Unlock()
	if echo != nil {
		for _, l := range done {
			echo(l)
		}
	}
	return len(p), nil
}

// Close marks the output as finished (the VMM exited): waits for lines
// that have not arrived fail at once with why.
func (c *Console) Close(why error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed == nil {
		c.closed = why
		close(c.changed)
		c.changed = make(chan struct{})
	}
}

// Lines returns a copy of every complete line so far.
func (c *Console) Lines() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.lines...)
}

// Partial returns the unfinished last line: bytes after the last newline.
// A guest stopped for migration in the middle of a line prints its start
// on the source and the rest on the destination.
func (c *Console) Partial() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.partial)
}

// Settle waits until no byte has arrived for quiet (a stopped guest's
// output still on its way from the VMM), or fails when ctx ends first.
func (c *Console) Settle(ctx context.Context, quiet time.Duration) error {
	c.mu.Lock()
	n := c.total
	c.mu.Unlock()
	since := time.Now()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("console still receiving output: %w", ctx.Err())
		case <-time.After(quiet / 10):
		}
		c.mu.Lock()
		m := c.total
		c.mu.Unlock()
		if m != n {
			n, since = m, time.Now()
		} else if time.Since(since) >= quiet {
			return nil
		}
	}
}

// Continued returns the destination's lines as one stream with the source's:
// the first line gets the source's unfinished line in front of it.
func Continued(src, dst *Console) []string {
	lines := dst.Lines()
	if len(lines) > 0 {
		lines[0] = src.Partial() + lines[0]
	}
	return lines
}

// Mark returns a position in the output; Wait looks only at lines after it.
func (c *Console) Mark() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.lines)
}

// Wait returns the first line at or after position from that matches re,
// its submatches and the position after it, or an error after ctx ends.
func (c *Console) Wait(ctx context.Context, from int, re *regexp.Regexp) ([]string, int, error) {
	for {
		c.mu.Lock()
		for i := from; i < len(c.lines); i++ {
			if m := re.FindStringSubmatch(c.lines[i]); m != nil {
				c.mu.Unlock()
				return m, i + 1, nil
			}
		}
		from = max(from, len(c.lines))
		if c.closed != nil {
			err := fmt.Errorf("no line matching %q: console closed: %w (last lines: %q)", re, c.closed, c.tailLocked(5))
			c.mu.Unlock()
			return nil, from, err
		}
		ch := c.changed
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, from, fmt.Errorf("no line matching %q: %w (last lines: %q)", re, ctx.Err(), c.tail(5))
		}
	}
}

func (c *Console) tail(n int) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tailLocked(n)
}

func (c *Console) tailLocked(n int) []string {
	if len(c.lines) <= n {
		return append([]string(nil), c.lines...)
	}
	return append([]string(nil), c.lines[len(c.lines)-n:]...)
}

// ReadyRE matches the test guest's readiness line; submatches are boot,
// cpus, mem (MiB), e820 entries and cmdline.
var ReadyRE = regexp.MustCompile(`^GUEST-READY vmmd-testguest boot=(\S+) cpus=(\d+) mem=(\d+)M ram_kib=\d+ e820=(\d+) cmdline="(.*)"`)

// HeartbeatRE matches a heartbeat line; the submatch is the counter.
var HeartbeatRE = regexp.MustCompile(`^HB (\d+)$`)

// FirstHeartbeat returns the counter of the first heartbeat line in lines,
// or -1 if there is none.
func FirstHeartbeat(lines []string) int {
	for _, l := range lines {
		if m := HeartbeatRE.FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[1])
			return n
		}
	}
	return -1
}

// LastHeartbeat returns the counter of the last heartbeat line in lines,
// or -1 if there is none.
func LastHeartbeat(lines []string) int {
	for i := len(lines) - 1; i >= 0; i-- {
		if m := HeartbeatRE.FindStringSubmatch(lines[i]); m != nil {
			n, _ := strconv.Atoi(m[1])
			return n
		}
	}
	return -1
}

// Deadline returns a context for a wait of d, scaled up under the race
// detector or a slow machine via VMMD_TEST_TIMEOUT_SCALE.
func Deadline(t testing.TB, d time.Duration) (context.Context, context.CancelFunc) {
	t.Helper()
	if s := os.Getenv("VMMD_TEST_TIMEOUT_SCALE"); s != "" {
		var k int
		if _, err := fmt.Sscanf(s, "%d", &k); err == nil && k > 0 {
			d *= time.Duration(k)
		}
	}
	return context.WithTimeout(context.Background(), d)
}
