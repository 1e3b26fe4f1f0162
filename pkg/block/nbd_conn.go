package block

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// nbdConn is one NBD connection in transmission phase. Requests are written
// by their callers, one at a time (wsem); a reader goroutine matches replies
// to requests by cookie, so any number of requests can be in flight.
//
// Any failure of the connection itself (a timeout, a cancelled request, a
// write or read error, a protocol violation) breaks it for good: the NBD
// protocol cannot withdraw a request, so after one is abandoned the stream
// is unusable. Breaking closes the socket, which ends the reader, which
// fails every pending request; later requests fail at once.
type nbdConn struct {
	nc      net.Conn
	exp     nbdExport
	timeout time.Duration
	wsem    chan struct{} // a token in it means "someone is writing"

	mu         sync.Mutex
	pending    map[uint64]*nbdReq
	cookie     uint64
	err        error         // why the connection broke; nil while healthy
	readerDone chan struct{} // closed once the reader has failed all pending
}

type nbdReq struct {
	cmd  uint16
	buf  []byte     // destination of a read
	done chan error // exactly one value is sent
	hdr  [nbdRequestSize]byte
}

// brokenError is what requests on a broken connection get.
type brokenError struct{ cause error }

// Error names the cause of the break.
func (e *brokenError) Error() string { return fmt.Sprintf("NBD connection broken: %v", e.cause) }

// Unwrap makes the error match ErrIO and the cause.
func (e *brokenError) Unwrap() []error { return []error{ErrIO, e.cause} }

// errDisconnected is the cause recorded when we end a connection ourselves.
var errDisconnected = errors.New("disconnected by vmmd")

func newNBDConn(nc net.Conn, exp nbdExport, timeout time.Duration) *nbdConn {
	c := &nbdConn{
		nc:         nc,
		exp:        exp,
		timeout:    timeout,
		wsem:       make(chan struct{}, 1),
		pending:    make(map[uint64]*nbdReq),
		readerDone: make(chan struct{}),
	}
	go c.readLoop()
	return c
}

// ok returns nil while the connection is healthy, else why it broke.
func (c *nbdConn) ok() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// do sends one request and waits for its reply, at most until the timeout
// or ctx's deadline. For a read, p receives the data; for a write, p is sent.
func (c *nbdConn) do(ctx context.Context, cmd, flags uint16, off int64, p []byte) error {
	req := &nbdReq{cmd: cmd, done: make(chan error, 1)}
	if cmd == nbdCmdRead {
		req.buf = p
	}
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return &brokenError{cause: err}
	}
	c.cookie++
	cookie := c.cookie
	c.pending[cookie] = req
	c.mu.Unlock()
	putRequest(req.hdr[:], flags, cmd, cookie, uint64(off), uint32(len(p)))

	dl := deadline(ctx, c.timeout)
	timer := time.NewTimer(time.Until(dl))
	defer timer.Stop()
	what := func() string { return fmt.Sprintf("%s (cookie %d)", nbdCmdName(cmd), cookie) }

	select {
	case c.wsem <- struct{}{}:
	case <-timer.C:
		c.fail(&timeoutError{what: what() + " waiting to send", timeout: c.timeout.String()})
		return <-req.done
	case <-ctx.Done():
		c.fail(fmt.Errorf("%s abandoned: %w", what(), ctx.Err()))
		return <-req.done
	case <-c.readerDone:
		return <-req.done
	}
	err := c.send(dl, req.hdr[:], cmd, p)
	<-c.wsem
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = &timeoutError{what: what() + " send", timeout: c.timeout.String()}
		} else {
			err = fmt.Errorf("send %s: %w", what(), err)
		}
		c.fail(err)
		return <-req.done
	}

	select {
	case err := <-req.done:
		return err
	case <-timer.C:
		c.fail(&timeoutError{what: what(), timeout: c.timeout.String()})
	case <-ctx.Done():
		c.fail(fmt.Errorf("%s abandoned: %w", what(), ctx.Err()))
	}
	return <-req.done
}

// send writes a request header and, for writes, its payload in one writev.
func (c *nbdConn) send(dl time.Time, hdr []byte, cmd uint16, p []byte) error {
	if err := c.nc.SetWriteDeadline(dl); err != nil {
		return err
	}
	bufs := net.Buffers{hdr}
	if cmd == nbdCmdWrite && len(p) > 0 {
		bufs = append(bufs, p)
	}
	_, err := bufs.WriteTo(c.nc)
	return err
}

// fail breaks the connection with err (unless it already broke) and
// returns once every pending request has been completed.
func (c *nbdConn) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
	_ = c.nc.Close()
	<-c.readerDone
}

// disconnect sends NBD_CMD_DISC (best effort, bounded by the timeout) and
// closes the connection. The caller has drained its requests.
func (c *nbdConn) disconnect(ctx context.Context) error {
	var err error
	dl := deadline(ctx, c.timeout)
	timer := time.NewTimer(time.Until(dl))
	defer timer.Stop()
	select {
	case c.wsem <- struct{}{}:
		var hdr [nbdRequestSize]byte
		putRequest(hdr[:], 0, nbdCmdDisc, 0, 0, 0)
		err = c.send(dl, hdr[:], nbdCmdDisc, nil)
		<-c.wsem
	case <-timer.C:
		err = &timeoutError{what: "NBD_CMD_DISC waiting to send", timeout: c.timeout.String()}
	case <-ctx.Done():
		err = ctx.Err()
	case <-c.readerDone:
	}
	c.fail(errDisconnected)
	return err
}

// readLoop reads replies until the connection fails, then fails every
// request still pending.
func (c *nbdConn) readLoop() {
	defer close(c.readerDone)
	br := bufio.NewReaderSize(c.nc, 64<<10)
	var err error
	for err == nil {
		err = c.readReply(br)
	}
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	cause := c.err
	pending := c.pending
	c.pending = nil
	c.mu.Unlock()
	_ = c.nc.Close()
	for _, r := range pending {
		r.done <- &brokenError{cause: cause}
	}
}

// readReply reads one simple reply and completes its request.
func (c *nbdConn) readReply(br *bufio.Reader) error {
	var h [nbdSimpleSize]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("server closed the connection")
		}
		return fmt.Errorf("read reply: %w", err)
	}
	switch m := binary.BigEndian.Uint32(h[0:]); m {
	case nbdSimpleMagic:
	case nbdStructMagic, nbdExtendedMagic:
		return fmt.Errorf("server sent a structured reply (magic %#x) although none were negotiated", m)
	default:
		return fmt.Errorf("bad reply magic %#x", m)
	}
	code := binary.BigEndian.Uint32(h[4:])
	cookie := binary.BigEndian.Uint64(h[8:])
	c.mu.Lock()
	req := c.pending[cookie]
	delete(c.pending, cookie)
	c.mu.Unlock()
	if req == nil {
		return fmt.Errorf("reply for unknown cookie %d", cookie)
	}
	if code != 0 {
		req.done <- fmt.Errorf("%s: server replied %w", nbdCmdName(req.cmd), nbdErrno(code))
		return nil
	}
	if req.cmd == nbdCmdRead {
		if _, err := io.ReadFull(br, req.buf); err != nil {
			err = fmt.Errorf("read %s payload: %w", nbdCmdName(req.cmd), err)
			c.mu.Lock()
			if c.err == nil {
				c.err = err
			}
			cause := c.err
			c.mu.Unlock()
			req.done <- &brokenError{cause: cause}
			return err
		}
	}
	req.done <- nil
	return nil
}
