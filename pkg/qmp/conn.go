package qmp

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// conn is one client connection. Two goroutines serve it: the reader,
// which parses input and runs commands one at a time (so replies are in
// order and a slow command only holds up its own connection), and the
// writer, the only goroutine that writes to the socket (so replies and
// events never interleave within a line).
type conn struct {
	srv    *Server
	nc     net.Conn
	log    zerolog.Logger
	ctx    context.Context
	cancel context.CancelFunc

	out      chan []byte   // queued lines, greeting first
	space    chan struct{} // signalled by the writer when it took lines off out
	readDone chan struct{} // closed when the reader has stopped
	hard     chan struct{} // closed by abort: stop without flushing
	abortMu  sync.Once

	mu         sync.Mutex // orders negotiation against event delivery
	negotiated bool
	closed     bool

	// after is set by a handler that returned *Deferred; the reader runs it
	// once the reply is queued. Only the reader goroutine touches it.
	after func()
}

func newConn(ctx context.Context, s *Server, nc net.Conn, id uint64, where string) *conn {
	c := &conn{
		srv:      s,
		nc:       nc,
		out:      make(chan []byte, s.cfg.QueueLen+1),
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
	c.out <- s.greeting
	return c
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
	for {
		n, err := c.nc.Read(buf)
		if n > 0 {
			st.feed(buf[:n])
		}
		if err != nil || c.ctx.Err() != nil {
			return
		}
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
			batch = batch[:0]
			for drained := false; !drained; {
				select {
				case b := <-c.out:
					batch = append(batch, b...)
				default:
					drained = true
				}
			}
			if len(batch) > 0 {
				c.write(batch)
			}
			return
		case b := <-c.out:
			batch = append(batch[:0], b...)
		fill:
			for len(batch) < 64<<10 {
				select {
				case b := <-c.out:
					batch = append(batch, b...)
				default:
					break fill
				}
			}
			select {
			case c.space <- struct{}{}:
			default:
			}
			if !c.write(batch) {
				return
			}
			if cap(batch) > 1<<20 {
				batch = nil
			}
		}
	}
}

// write sends p within the write timeout; on failure the client is dropped.
func (c *conn) write(p []byte) bool {
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.srv.cfg.WriteTimeout))
	if _, err := c.nc.Write(p); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			c.abort("client did not read for " + c.srv.cfg.WriteTimeout.String())
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
	select {
	case c.out <- line:
	default:
		c.closed = true
		c.abort("output queue full")
	}
}

// sendReply queues a reply. Replies may fill only half the queue; beyond
// that the reader waits, and so stops reading, as QEMU stops reading until
// a reply is sent. A client that pipelines many commands is thus slowed
// down, not dropped, and events keep room in the queue. When negotiate is
// set the connection leaves capabilities-negotiation mode in the same
// critical section, so no event can be queued ahead of the
// qmp_capabilities reply.
func (c *conn) sendReply(line []byte, negotiate bool) {
	limit := max(1, cap(c.out)/2)
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return
		}
		if len(c.out) < limit {
			// Only the writer takes from out and only holders of c.mu add
			// to it, so there is room.
			c.out <- line
			if negotiate {
				c.negotiated = true
			}
			c.mu.Unlock()
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
