package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// maxQMPLatency is how long query-status may take while vmmd is under
// attack, from the guest or from other clients.
const maxQMPLatency = time.Second

// vmRSS returns the resident set size of pid in bytes (VmRSS in
// /proc/PID/status).
func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read status of vmmd: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "VmRSS:" && f[2] == "kB" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatalf("VmRSS line %q: %v", l, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// inMiB renders bytes in MiB for test logs.
func inMiB(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// rssPeak samples a process's RSS every 20 ms until stop is called and
// returns the largest value seen.
type rssPeak struct {
	pid  int
	stop chan struct{}
	done chan struct{}
	peak int64
}

func sampleRSS(pid int) *rssPeak {
	r := &rssPeak{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	re := regexp.MustCompile(`VmRSS:\s+(\d+) kB`)
	go func() {
		defer close(r.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
				if m := re.FindSubmatch(b); m != nil {
					kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
					r.peak = max(r.peak, kb<<10)
				}
			}
			select {
			case <-r.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return r
}

func (r *rssPeak) end() int64 {
	close(r.stop)
	<-r.done
	return r.peak
}

// qmpProbe measures query-status round trips on a connection of its own,
// one at once and then one every interval, while something else attacks
// vmmd.
type qmpProbe struct {
	stopc chan struct{}
	done  chan struct{}

	mu    sync.Mutex
	n     int
	worst time.Duration
	err   error
}

func startProbe(t *testing.T, sock string, interval time.Duration) *qmpProbe {
	t.Helper()
	q := e2eDial(t, sock)
	q.negotiate()
	p := &qmpProbe{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for i := 0; ; i++ {
			if i > 0 {
				select {
				case <-p.stopc:
					return
				case <-time.After(interval):
				}
			}
			id := fmt.Sprintf("probe-%d", i)
			start := time.Now()
			if _, err := fmt.Fprintf(q.conn, `{"execute":"query-status","id":%q}`, id); err != nil {
				p.fail(fmt.Errorf("probe send: %w", err))
				return
			}
			for {
				// Past the limit the probe has failed; waiting longer
				// only tells how late the reply was.
				line, err := q.readLine(10 * time.Second)
				if err != nil {
					p.fail(fmt.Errorf("probe %s: %w", id, err))
					return
				}
				if strings.Contains(line, `"event"`) {
					continue
				}
				if !strings.HasPrefix(line, `{"return": {"status": `) || !strings.HasSuffix(line, `"id": "`+id+`"}`) {
					p.fail(fmt.Errorf("probe %s: reply %q", id, line))
					return
				}
				break
			}
			p.mu.Lock()
			p.n++
			p.worst = max(p.worst, time.Since(start))
			p.mu.Unlock()
		}
	}()
	return p
}

func (p *qmpProbe) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		p.err = err
	}
}

// stop ends the probe and fails the test unless every query-status
// answered within maxQMPLatency; it returns the number of probes and the
// slowest.
func (p *qmpProbe) stop(t *testing.T, what string) (int, time.Duration) {
	t.Helper()
	close(p.stopc)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		t.Fatalf("%s: QMP probe: %v", what, p.err)
	}
	if p.n == 0 {
		t.Fatalf("%s: QMP probe made no round trip", what)
	}
	if p.worst > maxQMPLatency {
		t.Errorf("%s: slowest query-status took %v (limit %v)", what, p.worst, maxQMPLatency)
	}
	return p.n, p.worst
}

// logEntry is one of vmmd's JSON log lines.
type logEntry struct {
	Level   string `json:"level"`
	Message string `json:"message"`
	Error   string `json:"error"`
	Reason  string `json:"reason"`
	raw     string
}

// logLines parses vmmd's stderr from byte offset off on; non-JSON lines
// (a final error line) are kept with only raw set.
func logLines(p *vmmdProc, off int) []logEntry {
	s := p.stderr.String()
	if off > len(s) {
		off = len(s)
	}
	var out []logEntry
	sc := bufio.NewScanner(strings.NewReader(s[off:]))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var e logEntry
		_ = json.Unmarshal(sc.Bytes(), &e)
		e.raw = sc.Text()
		out = append(out, e)
	}
	return out
}

// waitLog waits until vmmd logs, after byte offset off, a warn or error
// line whose message and error text match re, and returns it.
func waitLog(t *testing.T, ctx context.Context, p *vmmdProc, off int, re *regexp.Regexp) logEntry {
	t.Helper()
	for {
		for _, e := range logLines(p, off) {
			if (e.Level == "warn" || e.Level == "error") && re.MatchString(e.Message+": "+e.Error+" "+e.Reason) {
				return e
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("vmmd logged no warning or error matching %q; log since the attack:\n%s", re, lastBytes(p.stderr.String()[off:], 4000))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// countLog counts warn or error lines after off whose text matches re.
func countLog(p *vmmdProc, off int, re *regexp.Regexp) int {
	n := 0
	for _, e := range logLines(p, off) {
		if (e.Level == "warn" || e.Level == "error") && re.MatchString(e.Message+": "+e.Error+" "+e.Reason) {
			n++
		}
	}
	return n
}

// lastBytes returns the end of s, at most n bytes, for failure messages.
func lastBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// stillServing checks what every hostile test ends with: vmmd is running,
// a fresh QMP client is answered within maxQMPLatency, and the guest
// answers ping.
func stillServing(t *testing.T, ctx context.Context, g *guest, sock string) {
	t.Helper()
	select {
	case <-g.p.done:
		t.Fatalf("vmmd exited: %v", g.p.err)
	default:
	}
	q := e2eDial(t, sock)
	q.negotiate()
	start := time.Now()
	q.send(`{"execute":"query-status","id":"fresh"}`)
	for {
		line := q.recv()
		if strings.Contains(line, `"event"`) {
			continue
		}
		if !strings.HasPrefix(line, `{"return": {"status": "running", "running": true}`) || !strings.HasSuffix(line, `"id": "fresh"}`) {
			t.Fatalf("fresh client's query-status: %q", line)
		}
		break
	}
	if d := time.Since(start); d > maxQMPLatency {
		t.Errorf("fresh client's query-status took %v", d)
	}
	q.conn.Close()
	g.do(t, ctx, "ping", `^PONG$`)
}
