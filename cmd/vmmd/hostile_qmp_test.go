package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmmd/vmmd/internal/testguest"
	"github.com/vmmd/vmmd/pkg/qmp"
)

// Replies QEMU 7.2 gives to bad input (probed against
// qemu-system-x86_64 7.2.22 here; the limits are in
// /work/shared/reference/qemu-behaviour.md §4.7).
const (
	replyTokenSize   = `{"error": {"class": "GenericError", "desc": "JSON token size limit exceeded"}}`
	replyNesting     = `{"error": {"class": "GenericError", "desc": "JSON nesting depth limit exceeded"}}`
	replyExpecting   = `{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}`
	replyNotObject   = `{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}`
	replyBadUTF8     = `{"error": {"class": "GenericError", "desc": "JSON parse error, invalid UTF-8 sequence in string"}}`
	replyStrayFFFD   = `{"error": {"class": "GenericError", "desc": "JSON parse error, stray '\uFFFD'"}}`
	replyStrayQuoteA = `{"error": {"class": "GenericError", "desc": "JSON parse error, stray '\"a\uFFFD'"}}`
	replyRunning     = `{"return": {"status": "running", "running": true}`
)

// maxRSSGrowthQMP bounds vmmd's RSS growth from hostile QMP clients, except
// for the 64 MiB message, which QEMU's limits let every client send.
const maxRSSGrowthQMP = 16 << 20

// TestHostileQMP attacks a running vmmd's QMP socket: many concurrent
// clients, clients that stall half-way through a message, a 64 MiB message,
// deep nesting, invalid UTF-8, and clients that never read. Each case
// checks that other clients keep being answered within a second, that
// memory stays bounded, that bad input gets QEMU's replies, and at the end
// that a fresh client is answered and the guest still runs.
func TestHostileQMP(t *testing.T) {
	bin := buildVMMD(t)
	boot := func(t *testing.T) (context.Context, *guest, string, int) {
		ctx, cancel := testguest.Deadline(t, 60*time.Second)
		t.Cleanup(cancel)
		g, q := bootGuest(t, ctx, bin, 0)
		return ctx, g, q.sock, g.p.cmd.Process.Pid
	}

	t.Run("100 concurrent clients", func(t *testing.T) {
		const clients, calls = 100, 20
		ctx, g, sock, pid := boot(t)
		rss0 := vmRSS(t, pid)
		off := len(g.p.stderr.String())
		conns := make([]*e2eConn, clients)
		for i := range conns {
			conns[i] = e2eDial(t, sock)
		}
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			lats []time.Duration
			errs []error
		)
		start := make(chan struct{})
		for c, q := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer q.conn.Close()
				<-start
				err := func() error {
					if err := rawNegotiate(q); err != nil {
						return err
					}
					for i := range calls {
						id := fmt.Sprintf("c%d-%d", c, i)
						t0 := time.Now()
						if _, err := fmt.Fprintf(q.conn, `{"execute":"query-status","id":%q}`, id); err != nil {
							return err
						}
						line, err := q.readLine(10 * time.Second)
						if err != nil {
							return err
						}
						if line != replyRunning+`, "id": "`+id+`"}` {
							return fmt.Errorf("reply %q", line)
						}
						mu.Lock()
						lats = append(lats, time.Since(t0))
						mu.Unlock()
					}
					return nil
				}()
				if err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("client %d: %w", c, err))
					mu.Unlock()
				}
			}()
		}
		t0 := time.Now()
		close(start)
		wg.Wait()
		took := time.Since(t0)
		for _, err := range errs {
			t.Error(err)
		}
		if len(lats) != clients*calls {
			t.Fatalf("%d replies, want %d", len(lats), clients*calls)
		}
		sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
		p50, p99, worst := lats[len(lats)/2], lats[len(lats)*99/100], lats[len(lats)-1]
		t.Logf("%d clients x %d query-status in %v: median %v, p99 %v, slowest %v", clients, calls, took, p50, p99, worst)
		if worst > maxQMPLatency {
			t.Errorf("slowest query-status took %v (limit %v)", worst, maxQMPLatency)
		}
		// Every connection is torn down once its client left.
		waitCount(t, ctx, g.p, off, "QMP client disconnected", clients)
		rss1 := vmRSS(t, pid)
		t.Logf("vmmd RSS %s before, %s after (%+d KiB)", inMiB(rss0), inMiB(rss1), (rss1-rss0)>>10)
		if rss1-rss0 > maxRSSGrowthQMP {
			t.Errorf("vmmd RSS grew by %s (limit %s)", inMiB(rss1-rss0), inMiB(maxRSSGrowthQMP))
		}
		stillServing(t, ctx, g, sock)
	})

	t.Run("clients past the limit", func(t *testing.T) {
		ctx, g, sock, _ := boot(t)
		// boot's own client holds the first slot.
		held := make([]*e2eConn, qmp.DefaultMaxConns-1)
		for i := range held {
			held[i] = e2eDial(t, sock)
			if err := rawNegotiate(held[i]); err != nil {
				t.Fatalf("client %d of %d: %v", i+1, len(held), err)
			}
		}
		// One more is told why, twice (greeting and first command), and
		// closed.
		extra := e2eDial(t, sock)
		refusal, err := extra.readLine(10 * time.Second)
		if err != nil || !strings.Contains(refusal, `"too many QMP clients: 128 are connected`) {
			t.Fatalf("client past the limit: %q, %v", refusal, err)
		}
		extra.send(`{"execute":"qmp_capabilities"}`)
		if again, err := extra.readLine(10 * time.Second); err != nil || again != refusal {
			t.Fatalf("its first command: %q, %v", again, err)
		}
		if l, err := extra.readLine(10 * time.Second); err == nil {
			t.Fatalf("refused client still connected: %q", l)
		}
		waitCount(t, ctx, g.p, 0, "QMP client refused: too many connected", 1)
		// Those within the limit are served; one leaving makes room.
		held[0].send(`{"execute":"query-status","id":"held"}`)
		if l, err := held[0].readLine(10 * time.Second); err != nil || l != replyRunning+`, "id": "held"}` {
			t.Fatalf("held client: %q, %v", l, err)
		}
		off := len(g.p.stderr.String())
		held[1].conn.Close()
		waitCount(t, ctx, g.p, off, "QMP client disconnected", 1)
		stillServing(t, ctx, g, sock)
	})

	t.Run("stalled half messages", func(t *testing.T) {
		ctx, g, sock, pid := boot(t)
		rss0 := vmRSS(t, pid)
		// Each partial message, what completes it, and the reply then.
		partials := []struct{ head, rest, want string }{
			{`{`, `"execute":"query-status","id":"done"}`, replyRunning + `, "id": "done"}`},
			{`{"execute":"query-sta`, `tus","id":"done"}`, replyRunning + `, "id": "done"}`},
			{`{"execute":"query-status","id":"s`, `-done"}`, replyRunning + `, "id": "s-done"}`},
			{`{"execute":"query-status","arguments":{`, `},"id":"done"}`, replyRunning + `, "id": "done"}`},
			{`{"execute":"query-status","id":1.5e`, `3}`, replyRunning + `, "id": 1500}`},
			{`[`, `]`, replyNotObject},
		}
		const stallers = 60
		type staller struct {
			q          *e2eConn
			negotiated bool
			p          int
		}
		var ss []staller
		for i := range stallers {
			s := staller{q: e2eDial(t, sock), negotiated: i%2 == 0, p: i % len(partials)}
			if s.negotiated {
				s.q.negotiate()
			} // else: it never even reads the greeting
			s.q.send(partials[s.p].head)
			ss = append(ss, s)
		}
		probe := startProbe(t, sock, 20*time.Millisecond)
		time.Sleep(2 * time.Second)
		n, worst := probe.stop(t, "with stalled clients")
		rss1 := vmRSS(t, pid)
		t.Logf("%d clients stalled mid-message for 2 s: %d probes, slowest %v; vmmd RSS %s before, %s while they stall (%+d KiB)",
			stallers, n, worst, inMiB(rss0), inMiB(rss1), (rss1-rss0)>>10)
		if rss1-rss0 > maxRSSGrowthQMP {
			t.Errorf("vmmd RSS grew by %s with %d stalled clients (limit %s)", inMiB(rss1-rss0), stallers, inMiB(maxRSSGrowthQMP))
		}
		// vmmd keeps stalled clients (QEMU has no read timeout either):
		// the negotiated ones finish their message and get the reply it
		// deserves; the others hang up and are cleaned up.
		off := len(g.p.stderr.String())
		closed := 0
		for _, s := range ss {
			if !s.negotiated {
				s.q.conn.Close()
				closed++
				continue
			}
			s.q.send(partials[s.p].rest)
			if got := s.q.recv(); got != partials[s.p].want {
				t.Errorf("stalled %q completed with %q: got %q, want %q", partials[s.p].head, partials[s.p].rest, got, partials[s.p].want)
			}
		}
		waitCount(t, ctx, g.p, off, "QMP client disconnected", closed)
		stillServing(t, ctx, g, sock)
	})

	t.Run("64 MiB messages", func(t *testing.T) {
		// Three clients at once, because QEMU's limit is per message:
		// each may make the server hold a 64 MiB token.
		const clients = 3
		ctx, g, sock, pid := boot(t)
		rss0 := vmRSS(t, pid)
		peak := sampleRSS(pid)
		probe := startProbe(t, sock, 50*time.Millisecond)
		// The id string never ends: the lexer cuts the token at QEMU's
		// 64 MiB limit, the message is refused, and lexing starts afresh
		// with the next byte, so the next request is answered.
		big := make([]byte, 0, 64<<20+64)
		big = append(big, `{"execute":"query-status","id":"`...)
		big = append(big, bytes.Repeat([]byte{'a'}, 64<<20)...)
		var wg sync.WaitGroup
		replies := make([][]string, clients)
		errs := make([]error, clients)
		t0 := time.Now()
		for i := range clients {
			q := e2eDial(t, sock)
			q.negotiate()
			wg.Add(1)
			go func() {
				defer wg.Done()
				replies[i], errs[i] = exchangeErr(q, big, fmt.Sprintf("after-%d", i), 60*time.Second)
			}()
		}
		wg.Wait()
		took := time.Since(t0)
		n, worst := probe.stop(t, "during the 64 MiB messages")
		top := peak.end()
		rss1 := vmRSS(t, pid)
		t.Logf("%d clients' 64 MiB messages answered in %v; %d probes meanwhile, slowest %v; vmmd RSS %s before, peak %s (%+d MiB), %s after",
			clients, took, n, worst, inMiB(rss0), inMiB(top), (top-rss0)>>20, inMiB(rss1))
		for i := range clients {
			if errs[i] != nil {
				t.Errorf("client %d: %v", i, errs[i])
			} else if want := []string{replyTokenSize}; strings.Join(replies[i], "\n") != strings.Join(want, "\n") {
				t.Errorf("client %d: replies to the 64 MiB message: %q, want %q", i, replies[i], want)
			}
		}
		// One 64 MiB message costs vmmd about 250-350 MiB while the lexer
		// and the streamer grow their buffers. Holding several at once
		// must not multiply that: a few clients would exhaust the host.
		if top-rss0 > 448<<20 {
			t.Errorf("vmmd RSS peaked %s above its start with %d 64 MiB messages at once (limit 448 MiB, about one message's cost)",
				inMiB(top-rss0), clients)
		}
		stillServing(t, ctx, g, sock)
	})

	t.Run("deep nesting", func(t *testing.T) {
		ctx, g, sock, pid := boot(t)
		rss0 := vmRSS(t, pid)
		q := e2eDial(t, sock)
		q.negotiate()
		rep := func(s string, n int) string { return strings.Repeat(s, n) }
		nested := func(n int) string { return rep("[", n) + rep("]", n) }
		cases := []struct {
			name, send string
			want       []string
		}{
			// QEMU's unit test /errors/limits/nesting: depth 1025 fails.
			{"1025 brackets", rep("[", 1025) + "]]]", []string{replyNesting, replyExpecting, replyExpecting, replyExpecting}},
			{"1024 brackets", nested(1024), []string{replyNotObject}},
			// 1 MiB of '[': an error every 1025, the last one closes.
			{"1 MiB of [", rep("[", 1<<20) + "]", append(repeatLine(replyNesting, 1023), replyNotObject)},
			// A 600-deep object as an argument: validated, not recursed into.
			{"deep arguments", `{"execute":"query-status","arguments":` + rep(`{"a":`, 600) + "1" + rep("}", 600) + "}",
				[]string{`{"error": {"class": "GenericError", "desc": "Parameter 'a' is unexpected"}}`}},
		}
		for _, c := range cases {
			got := exchange(t, q, []byte(c.send), "end-"+c.name, 30*time.Second)
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("%s: %d replies %q, want %d: %q", c.name, len(got), firstLines(got, 5), len(c.want), firstLines(c.want, 5))
			}
		}
		// The id is echoed as given, 1023 levels deep (QEMU does the same).
		q.send(`{"execute":"query-status","id":` + nested(1023) + `}`)
		if got, want := q.recv(), replyRunning+`, "id": `+nested(1023)+`}`; got != want {
			t.Errorf("deep id echoed as %q", lastBytes(got, 80))
		}
		rss1 := vmRSS(t, pid)
		t.Logf("vmmd RSS %s before, %s after (%+d KiB)", inMiB(rss0), inMiB(rss1), (rss1-rss0)>>10)
		if rss1-rss0 > maxRSSGrowthQMP {
			t.Errorf("vmmd RSS grew by %s (limit %s)", inMiB(rss1-rss0), inMiB(maxRSSGrowthQMP))
		}
		stillServing(t, ctx, g, sock)
	})

	t.Run("invalid UTF-8", func(t *testing.T) {
		ctx, g, sock, _ := boot(t)
		q := e2eDial(t, sock)
		q.negotiate()
		cases := []struct {
			name, send string
			want       []string
		}{
			{"0xFF in a string", "{\"execute\":\"query-status\",\"id\":\"a\xffb\"}", []string{replyStrayQuoteA, replyExpecting}},
			{"0xFE in a string", "{\"execute\":\"query-status\",\"id\":\"a\xfeb\"}", []string{replyStrayQuoteA, replyExpecting}},
			{"C3 28", "{\"execute\":\"query-status\",\"id\":\"a\xc3\x28b\"}", []string{replyBadUTF8}},
			{"lone continuation byte", "{\"execute\":\"query-status\",\"id\":\"\x80\"}", []string{replyBadUTF8}},
			{"overlong '/'", "{\"execute\":\"query-status\",\"id\":\"\xc0\xaf\"}", []string{replyBadUTF8}},
			{"UTF-16 surrogate", "{\"execute\":\"query-status\",\"id\":\"\xed\xa0\x80\"}", []string{replyBadUTF8}},
			{"above U+10FFFF", "{\"execute\":\"query-status\",\"id\":\"\xf4\x90\x80\x80\"}", []string{replyBadUTF8}},
			{"truncated sequence", "{\"execute\":\"query-status\",\"id\":\"\xe2\x82\"}", []string{replyBadUTF8}},
			{"in the command name", "{\"execute\":\"query-\xc3\x28status\"}", []string{replyBadUTF8}},
			{"in a member name", "{\"execute\":\"query-status\",\"\xc3\x28\":1}", []string{replyBadUTF8}},
			{"0xFF between messages", "\xff{\"execute\":\"query-status\",\"id\":\"y\"}", []string{replyStrayFFFD, replyRunning + `, "id": "y"}`}},
			{"0x80 between tokens", "{\"execute\":\x80\"query-status\",\"id\":\"x\"}",
				[]string{replyStrayFFFD, replyExpecting, replyNotObject, replyExpecting, replyNotObject, replyExpecting}},
			// Modified UTF-8's NUL and a valid 3-byte character are fine.
			{"C0 80 (NUL)", "{\"execute\":\"query-status\",\"id\":\"\xc0\x80\"}", []string{replyRunning + `, "id": "\u0000"}`}},
			{"euro sign", "{\"execute\":\"query-status\",\"id\":\"\xe2\x82\xac\"}", []string{replyRunning + `, "id": "\u20AC"}`}},
		}
		for _, c := range cases {
			got := exchange(t, q, []byte(c.send), "end", 10*time.Second)
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("%s: got %q, want %q", c.name, got, c.want)
			}
		}
		stillServing(t, ctx, g, sock)
	})

	t.Run("clients that never read", func(t *testing.T) {
		ctx, g, sock, pid := boot(t)
		rss0 := vmRSS(t, pid)
		off := len(g.p.stderr.String())
		peak := sampleRSS(pid)
		probe := startProbe(t, sock, 50*time.Millisecond)
		// Pipeliners send query-status without end and read nothing; the
		// listeners send nothing and read nothing while the control client
		// below makes events (STOP, RESUME) for everybody.
		const pipeliners, listeners = 8, 8
		var wg sync.WaitGroup
		sent := make([]int64, pipeliners)
		for i := range pipeliners + listeners {
			q := e2eDial(t, sock)
			q.negotiate()
			if i >= pipeliners {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				chunk := bytes.Repeat([]byte(`{"execute":"query-status"}`), 2048)
				deadline := time.Now().Add(20 * time.Second)
				for time.Now().Before(deadline) {
					q.conn.SetWriteDeadline(deadline)
					n, err := q.conn.Write(chunk)
					sent[i] += int64(n)
					if err != nil {
						return // dropped by vmmd, or the deadline
					}
				}
			}()
		}
		ctl := e2eDial(t, sock)
		ctl.negotiate()
		toggles, slowest := 0, time.Duration(0)
		for countLog(g.p, off, regexp.MustCompile(`dropping QMP client`)) < pipeliners+listeners {
			if ctx.Err() != nil {
				t.Fatalf("only %d of %d non-reading clients were dropped", countLog(g.p, off, regexp.MustCompile(`dropping QMP client`)), pipeliners+listeners)
			}
			cmd := []string{"stop", "cont"}[toggles%2]
			t0 := time.Now()
			ctl.send(`{"execute":"` + cmd + `","id":"t"}`)
			for {
				line, err := ctl.readLine(10 * time.Second)
				if err != nil {
					t.Fatalf("control client %s: %v", cmd, err)
				}
				if line == `{"return": {}, "id": "t"}` {
					break
				}
				if !strings.Contains(line, `"event"`) {
					t.Fatalf("control client %s: %q", cmd, line)
				}
			}
			slowest = max(slowest, time.Since(t0))
			toggles++
			time.Sleep(5 * time.Millisecond)
		}
		if toggles%2 == 1 {
			ctl.send(`{"execute":"cont","id":"t"}`)
			for { // the RESUME event may come first
				if ctl.recv() == `{"return": {}, "id": "t"}` {
					break
				}
			}
		}
		wg.Wait()
		n, worst := probe.stop(t, "with clients that never read")
		top := peak.end()
		rss1 := vmRSS(t, pid)
		var total int64
		for _, s := range sent {
			total += s
		}
		reasons := map[string]int{}
		for _, e := range logLines(g.p, off) {
			if e.Message == "dropping QMP client" {
				reasons[e.Reason]++
			}
		}
		t.Logf("%d pipeliners sent %s of requests; %d stop/cont while they and %d listeners read nothing (slowest %v); drops: %v; %d probes, slowest %v",
			pipeliners, inMiB(total), toggles, listeners, slowest, reasons, n, worst)
		t.Logf("vmmd RSS %s before, peak %s (%+d KiB), %s after", inMiB(rss0), inMiB(top), (top-rss0)>>10, inMiB(rss1))
		if slowest > maxQMPLatency {
			t.Errorf("control client's stop/cont took up to %v", slowest)
		}
		if top-rss0 > maxRSSGrowthQMP {
			t.Errorf("vmmd RSS peaked %s above its start (limit %s)", inMiB(top-rss0), inMiB(maxRSSGrowthQMP))
		}
		stillServing(t, ctx, g, sock)
	})
}

// rawNegotiate reads the greeting and negotiates without failing the test,
// for client goroutines.
func rawNegotiate(q *e2eConn) error {
	g, err := q.readLine(10 * time.Second)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(g, `{"QMP": `) {
		return fmt.Errorf("greeting %q", g)
	}
	if _, err := io.WriteString(q.conn, `{"execute":"qmp_capabilities"}`); err != nil {
		return err
	}
	if r, err := q.readLine(10 * time.Second); err != nil || r != `{"return": {}}` {
		return fmt.Errorf("qmp_capabilities: %q, %v", r, err)
	}
	return nil
}

// exchange sends payload and then a query-status with id sentinel, writing
// from a goroutine while it reads, as a client must when its input makes
// many replies; it returns the replies before the sentinel's.
func exchange(t *testing.T, q *e2eConn, payload []byte, sentinel string, timeout time.Duration) []string {
	t.Helper()
	got, err := exchangeErr(q, payload, sentinel, timeout)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// exchangeErr is exchange for client goroutines. payload is only read.
func exchangeErr(q *e2eConn, payload []byte, sentinel string, timeout time.Duration) ([]string, error) {
	werr := make(chan error, 1)
	go func() {
		_, err := q.conn.Write(payload)
		if err == nil {
			_, err = fmt.Fprintf(q.conn, `{"execute":"query-status","id":%q}`, sentinel)
		}
		werr <- err
	}()
	var got []string
	for {
		line, err := q.readLine(timeout)
		if err != nil {
			return got, fmt.Errorf("waiting for the reply to %q after %d replies: %w", sentinel, len(got), err)
		}
		if line == replyRunning+`, "id": "`+sentinel+`"}` {
			break
		}
		got = append(got, line)
	}
	if err := <-werr; err != nil {
		return got, fmt.Errorf("send: %w", err)
	}
	return got, nil
}

// waitCount waits until vmmd has logged, after byte offset off, at least n
// lines whose message is msg.
func waitCount(t *testing.T, ctx context.Context, p *vmmdProc, off int, msg string, n int) {
	t.Helper()
	for {
		c := 0
		for _, e := range logLines(p, off) {
			if e.Message == msg {
				c++
			}
		}
		if c >= n {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("vmmd logged %q %d times, want %d", msg, c, n)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// repeatLine returns n copies of s.
func repeatLine(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// firstLines returns at most the first n of s, for failure messages.
func firstLines(s []string, n int) []string { return s[:min(n, len(s))] }
