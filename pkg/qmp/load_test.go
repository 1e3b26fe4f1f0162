package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

func (s *Server) numConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// TestLoad: 64 clients each pipeline 200 query-status with ids while events
// are broadcast; every reply arrives, in order, and every event broadcast
// after a client negotiated reaches it, in order.
func TestLoad(t *testing.T) {
	runLoad(t, 64, 200, 500)
}

// TestDeepPipeline: a client that sends far more commands at once than
// the queue holds is slowed down, not dropped, even while events flow
// (the reply queue is only allowed half the room).
func TestDeepPipeline(t *testing.T) {
	runLoad(t, 4, 5000, 3000)
}

func runLoad(t *testing.T, clients, calls, events int) {
	s, sock, _ := newTestServer(t, qemu72(t))
	var negotiated, replied sync.WaitGroup
	negotiated.Add(clients)
	replied.Add(clients)
	broadcastDone := make(chan struct{})
	errs := make(chan error, clients)
	for i := 0; i < clients; i++ {
		go func() {
			errs <- loadClient(sock, calls, events, &negotiated, &replied, broadcastDone)
		}()
	}
	negotiated.Wait()
	go func() {
		for i := 0; i < events; i++ {
			s.Broadcast("TEST", map[string]int{"seq": i}, time.Now())
			if i%50 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
		close(broadcastDone)
	}()
	for i := 0; i < clients; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func loadClient(sock string, calls, events int, negotiated, replied *sync.WaitGroup, broadcastDone chan struct{}) (err error) {
	c, err := net.Dial("unix", sock)
	if err != nil {
		negotiated.Done()
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	br := bufio.NewReader(c)
	if _, err := br.ReadString('\n'); err != nil {
		negotiated.Done()
		return err
	}
	io.WriteString(c, `{"execute":"qmp_capabilities"}`)
	l, err := br.ReadString('\n')
	negotiated.Done()
	if err != nil || l != "{\"return\": {}}\r\n" {
		return fmt.Errorf("negotiation: %q %v", l, err)
	}
	go func() {
		var b strings.Builder
		for i := 0; i < calls; i++ {
			fmt.Fprintf(&b, `{"execute":"query-status","id":%d}`, i)
		}
		io.WriteString(c, b.String())
		<-broadcastDone
		io.WriteString(c, `{"execute":"query-status","id":"end"}`)
	}()
	next, seq := 0, 0
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return fmt.Errorf("after %d replies and %d events: %w", next, seq, err)
		}
		var m struct {
			ID     json.RawMessage `json:"id"`
			Event  string          `json:"event"`
			Data   struct{ Seq int }
			Return *statusInfo `json:"return"`
		}
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			return fmt.Errorf("bad line %q: %w", l, err)
		}
		switch {
		case m.Event != "":
			if m.Data.Seq != seq {
				return fmt.Errorf("event seq %d, want %d", m.Data.Seq, seq)
			}
			seq++
		case string(m.ID) == `"end"`:
			if next != calls || seq != events {
				return fmt.Errorf("end after %d replies and %d events", next, seq)
			}
			return nil
		default:
			if string(m.ID) != fmt.Sprint(next) || m.Return == nil || m.Return.Status != "running" {
				return fmt.Errorf("reply %q, want id %d", l, next)
			}
			next++
		}
	}
}

// TestSlowClient: clients that stop reading are dropped, whether their
// queue fills up or a write stays blocked; Broadcast never blocks and the
// other client keeps getting replies and events.
func TestSlowClient(t *testing.T) {
	for _, mode := range []string{"queue", "deadline"} {
		t.Run(mode, func(t *testing.T) {
			// Each mode can only drop the client its own way: a queue too
			// large to fill, or a write timeout too long to reach.
			cfg := qemu72(t)
			cfg.QueueLen = 64
			cfg.WriteTimeout = time.Minute
			if mode == "deadline" {
				cfg.QueueLen = 100000
				cfg.WriteTimeout = 1500 * time.Millisecond
			}
			s, sock, _ := newTestServer(t, cfg)
			slow, slowR, _ := dialGreet(t, sock)
			defer slow.Close()
			roundTrip(t, slow, slowR, `{"execute":"qmp_capabilities"}`)
			fast, fastR, _ := dialGreet(t, sock)
			defer fast.Close()
			roundTrip(t, fast, fastR, `{"execute":"qmp_capabilities"}`)

			// The fast client reads everything in the background.
			got := make(chan string, 100000)
			go func() {
				for {
					l, err := fastR.next(20 * time.Second)
					if err != nil {
						close(got)
						return
					}
					got <- l
				}
			}()
			big := strings.Repeat("x", 16<<10)
			const n = 400 // 6.4 MB: far beyond any socket buffer
			var worst time.Duration
			for i := 0; i < n; i++ {
				start := time.Now()
				s.Broadcast("TEST", map[string]any{"seq": i, "pad": big}, eventTime())
				worst = max(worst, time.Since(start))
				if mode == "deadline" {
					time.Sleep(2 * time.Millisecond)
				}
			}
			// Blocking would mean waiting for the client (a minute, or the
			// 1.5 s write timeout); the margin absorbs a busy machine.
			if worst > time.Second {
				t.Errorf("Broadcast blocked for %v", worst)
			}
			deadline := time.Now().Add(10 * time.Second)
			for s.numConns() != 1 {
				if time.Now().After(deadline) {
					t.Fatalf("slow client not dropped: %d connections", s.numConns())
				}
				time.Sleep(10 * time.Millisecond)
			}
			for i := 0; i < n; i++ {
				l := <-got
				if !strings.Contains(l, fmt.Sprintf(`"seq": %d,`, i)) && !strings.Contains(l, fmt.Sprintf(`"seq": %d}`, i)) {
					t.Fatalf("fast client: event %d is %.80s", i, l)
				}
			}
			io.WriteString(fast, `{"execute":"query-status","id":1}`)
			if l := <-got; !strings.HasSuffix(l, `"id": 1}`) {
				t.Fatalf("fast client reply: %.80s", l)
			}
			// The slow client finds its connection closed once it reads
			// what the kernel had buffered.
			slow.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.Copy(io.Discard, slow); err != nil && !isConnReset(err) {
				t.Fatalf("slow client: %v", err)
			}
		})
	}
}

func isConnReset(err error) bool {
	return strings.Contains(err.Error(), "connection reset")
}

// TestEventsNotBeforeNegotiationReply hammers the window go-qemu PR #210
// is about: an event must never arrive before the qmp_capabilities reply.
func TestEventsNotBeforeNegotiationReply(t *testing.T) {
	s, sock, _ := newTestServer(t, qemu72(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			s.Broadcast("TEST", nil, eventTime())
			// Events keep coming around every negotiation, but not so fast
			// that a client on a loaded machine overflows its queue (and is
			// rightly dropped) before it reads the negotiation reply.
			time.Sleep(20 * time.Microsecond)
		}
	}()
	defer func() { cancel(); <-done }()
	for i := 0; i < 200; i++ {
		c, r, _ := dialGreet(t, sock)
		l := roundTrip(t, c, r, `{"execute":"qmp_capabilities"}`)
		c.Close()
		if l != `{"return": {}}` {
			t.Fatalf("iteration %d: first line after qmp_capabilities: %s", i, l)
		}
	}
}
