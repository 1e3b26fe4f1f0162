package qmp

import (
	"context"
	"errors"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// conn is one client connection. Two goroutines serve it: the reader,
// which parses input and runs commands one at a time (so replies are in
// order and a slow command only holds up its own connection), and the
// writer, which sends what is queued. At most one goroutine writes to the
// socket at a time (the one that set writing), so replies and events never
// interleave within a line. When nothing is queued and nobody is writing,
// the reader sends its reply itself: handing it to the writer would cost a
// goroutine wake-up on every round trip.
type conn struct {
	srv    *Server
	nc     net.Conn
	log    zerolog.Logger
	ctx    context.Context
	cancel context.CancelFunc

	wake     chan struct{} // signalled when queue gained lines or writing ended
	space    chan struct{} // signalled by the writer when it took lines off queue
	readDone chan struct{} // closed when the reader has stopped
	hard     chan struct{} // closed by abort: stop without flushing
	abortMu  sync.Once

	mu         sync.Mutex // guards the fields below; orders negotiation against events
	queue      [][]byte   // unsent lines, greeting first
	writing    bool       // a goroutine owns the socket for writing
	negotiated bool
	closed     bool

	// deadline is the write deadline last set; only the goroutine that
	// owns the socket (writing) touches it.
	deadline time.Time

	// after is set by a handler that returned *Deferred; the reader runs it
	// once the reply is queued. Only the reader goroutine touches it.
	after func()
}

func newConn(ctx context.Context, s *Server, nc net.Conn, id uint64, where string) *conn {
	c := &conn{
		srv:      s,
		nc:       nc,
		wake:     make(chan struct{}, 1),
		space:    make(chan struct{}, 1),
		readDone: make(chan struct{}),
		hard:     make(chan struct{}),
	}
	c.ctx, c.cancel = context.WithCancel(ctx)
	lc := s.log.With().Uint64("conn", id)
	if where != "" {
		lc = lc.Str("socket", where)
	}
	c.log = lc.Logger()
	c.queue = append(c.queue, s.greeting)
	c.signal()
	return c
}

// signal wakes the writer without blocking.
func (c *conn) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// serve runs the connection to its end.
func (c *conn) serve() {
	c.log.Info().Msg("QMP client connected")
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writeLoop()
	}()
	c.readLoop()
	<-writerDone
	c.cancel()
	c.srv.removeConn(c)
	c.log.Info().Msg("QMP client disconnected")
}

func (c *conn) readLoop() {
	defer close(c.readDone)
	st := newStreamer(c.handle)
	buf := make([]byte, 32<<10)
	held := false
	defer func() {
		if held {
			<-c.srv.big
		}
	}()
	for {
		n, err := c.nc.Read(buf)
		if n > 0 {
			if !held && st.pending()+n > bigMessage {
				// Wait for the other big message to finish: this
				// client's input stays in its socket meanwhile.
				select {
				case c.srv.big <- struct{}{}:
					held = true
				case <-c.ctx.Done():
					return
				}
			}
			st.feed(buf[:n])
			if held && st.pending() <= bigMessage {
				<-c.srv.big
				held = false
				// Give the message's memory back now rather than at the
				// next GC cycles, which an idle daemon may not run for
				// minutes.
				debug.FreeOSMemory()
			}
		}
		if err != nil || c.ctx.Err() != nil {
			return
		}
	}
}

// bigMessage is the size of a message in progress from which a connection
// needs the server's big-message slot.
const bigMessage = 1 << 20

// take claims the socket and returns the queued lines joined into batch
// (up to about 64 KiB), or false when the queue is empty or another
// goroutine is writing.
func (c *conn) take(batch []byte) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.writing || len(c.queue) == 0 {
		return batch, false
	}
	n := 0
	for n < len(c.queue) && (n == 0 || len(batch) < 64<<10) {
		batch = append(batch, c.queue[n]...)
		c.queue[n] = nil
		n++
	}
	c.queue = c.queue[n:]
	if len(c.queue) == 0 {
		c.queue = c.queue[:0:0]
	}
	c.writing = true
	select {
	case c.space <- struct{}{}:
	default:
	}
	return batch, true
}

// release gives up the socket, waking the writer if lines were queued
// meanwhile.
func (c *conn) release() {
	c.mu.Lock()
	c.writing = false
	pending := len(c.queue) > 0
	c.mu.Unlock()
	if pending {
		c.signal()
	}
}

// writeLoop sends queued lines, batching whatever is already queued into
// one write. When the reader stops (EOF, error, shutdown) it flushes the
// queue and closes the connection; after abort it closes at once.
func (c *conn) writeLoop() {
	defer func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		c.nc.Close()
	}()
	done := c.ctx.Done()
	var batch []byte
	for {
		select {
		case <-c.hard:
			return
		case <-done:
			// Unblock the reader; keep sending until it has stopped.
			done = nil
			if err := c.nc.SetReadDeadline(time.Now()); err != nil {
				c.nc.Close() // no deadlines on this conn: closing is the only way
			}
		case <-c.readDone:
			// The reader has stopped, so nobody else writes any more.
			for {
				var ok bool
				if batch, ok = c.take(batch[:0]); !ok {
					return
				}
				if !c.write(batch) {
					return
				}
				c.release()
			}
		case <-c.wake:
			var ok bool
			if batch, ok = c.take(batch[:0]); !ok {
				continue
			}
			if !c.write(batch) {
				return
			}
			c.release()
			if cap(batch) > 1<<20 {
				batch = nil
			}
		}
	}
}

// write sends p within the write timeout; on failure the client is dropped.
// The caller owns the socket.
func (c *conn) write(p []byte) bool {
	// Moving the deadline costs a timer update per write; it is only moved
	// once a quarter of the timeout has gone by, so a client that does not
	// read is still dropped after 3/4 to 4/4 of WriteTimeout.
	timeout := c.srv.cfg.WriteTimeout
	if now := time.Now(); c.deadline.Sub(now) < timeout-timeout/4 {
		c.deadline = now.Add(timeout)
		_ = c.nc.SetWriteDeadline(c.deadline)
	}
	if _, err := c.nc.Write(p); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			c.abort("client did not read for " + timeout.String())
		} else {
			c.log.Debug().Err(err).Msg("QMP write failed")
			c.abort("")
		}
		return false
	}
	return true
}

// abort drops the client without flushing. A non-empty reason is logged
// as a warning: it means the client, not the network, was at fault.
func (c *conn) abort(reason string) {
	c.abortMu.Do(func() {
		if reason != "" {
			c.log.Warn().Str("reason", reason).Msg("dropping QMP client")
		}
		close(c.hard)
		c.cancel()
		c.nc.Close()
	})
}

// enqueueLocked queues an event without blocking; a full queue drops the
// client. The caller holds c.mu.
func (c *conn) enqueueLocked(line []byte) {
	if c.closed {
		return
	}
	if len(c.queue) > c.srv.cfg.QueueLen {
		c.closed = true
		c.abort("output queue full")
		return
	}
	c.queue = append(c.queue, line)
	c.signal()
}

// sendReply sends or queues a reply. Replies may fill only half the
// queue; beyond that the reader waits, and so stops reading, as QEMU stops
// reading until a reply is sent. A client that pipelines many commands is
// thus slowed down, not dropped, and events keep room in the queue. When
// negotiate is set the connection leaves capabilities-negotiation mode in
// the same critical section that orders the reply, so no event can be sent
// ahead of the qmp_capabilities reply.
func (c *conn) sendReply(line []byte, negotiate bool) {
	limit := max(1, (c.srv.cfg.QueueLen+1)/2)
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return
		}
		if !c.writing && len(c.queue) == 0 {
			// Nothing is ahead of this reply: send it from here. Lines
			// queued meanwhile wait for release, so they follow it.
			c.writing = true
			if negotiate {
				c.negotiated = true
			}
			c.mu.Unlock()
			if c.write(line) {
				c.release()
			}
			return
		}
		if len(c.queue) < limit {
			c.queue = append(c.queue, line)
			if negotiate {
				c.negotiated = true
			}
			c.mu.Unlock()
			c.signal()
			return
		}
		c.mu.Unlock()
		select {
		case <-c.space:
		case <-c.hard:
			return
		}
	}
}

// sendEvent queues an event if negotiation is complete; QEMU drops events
// for connections still negotiating rather than holding them back.
func (c *conn) sendEvent(line []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.negotiated {
		c.enqueueLocked(line)
	}
}

func (c *conn) isNegotiated() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.negotiated
}
