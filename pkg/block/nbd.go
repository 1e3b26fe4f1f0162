package block

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// NBDBackend is a raw image on an NBD server, reached with our own client
// (fixed newstyle, NBD_OPT_GO, simple replies).
//
// NBD has no image lock. What stands in for it: an inactive drive holds no
// connection (Release sends NBD_CMD_DISC and closes; Activate connects
// again and re-reads the size), so a process that handed a disk over does
// not touch the export any more. Servers such as nbdkit accept any number
// of clients, so keeping two writers apart is up to the orchestrator (and
// the migration protocol, which inactivates the source before the
// destination activates); vmmd cannot detect a second writer on an export.
//
// A broken connection (timeout, server gone) fails requests at once. The
// backend then reconnects on Acquire (Activate, including on an active
// drive whose connection broke, which is what cont does after an I/O-error
// pause), and on its own at most once per ReconnectInterval when a request
// arrives, so a drive with werror=report recovers when the server returns.
type NBDBackend struct {
	addr      NBDAddress
	opts      BackendOptions
	timeout   time.Duration
	retry     time.Duration
	size      atomic.Int64
	blockSize int
	chunk     int // largest request we send, a multiple of blockSize

	dialMu   sync.Mutex // one connection attempt at a time
	mu       sync.Mutex
	conn     *nbdConn // nil while released or broken
	exp      nbdExport
	released bool
	closed   bool
	brokeAt  time.Time // when conn was found broken or a dial failed
	cause    error     // why there is no healthy connection
}

// OpenNBD checks that the export is reachable and usable (connecting once
// to read its size and limits) and returns the backend released.
func OpenNBD(ctx context.Context, addr NBDAddress, opts BackendOptions) (*NBDBackend, error) {
	b := &NBDBackend{addr: addr, opts: opts, timeout: opts.timeout(), retry: opts.ReconnectInterval, released: true}
	if b.retry <= 0 {
		b.retry = time.Second
	}
	c, err := b.dial(ctx)
	if err != nil {
		return nil, err
	}
	b.blockSize = max(512, int(c.exp.minBlock))
	b.chunk = c.exp.maxPayload() &^ (b.blockSize - 1)
	if b.chunk < b.blockSize {
		_ = c.disconnect(ctx)
		return nil, fmt.Errorf("%s: server's maximum request size %d is below the %d-byte block size", addr, c.exp.maxBlock, b.blockSize)
	}
	b.exp = c.exp
	b.size.Store(c.exp.size)
	b.cause = errors.New("not connected (drive inactive)")
	if err := c.disconnect(ctx); err != nil {
		b.opts.Log.Debug().Err(err).Str("uri", addr.String()).Msg("NBD disconnect after probe")
	}
	return b, nil
}

// Describe returns the URI.
func (b *NBDBackend) Describe() string { return b.addr.String() }

// Size returns the export size as of the last connection.
func (b *NBDBackend) Size() int64 { return b.size.Load() }

// BlockSize returns 512, or the server's minimum block size if larger.
func (b *NBDBackend) BlockSize() int { return b.blockSize }

// Err reports whether requests can be sent now.
func (b *NBDBackend) Err() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.closed:
		return fmt.Errorf("%s: %w", b.addr, ErrClosed)
	case b.released:
		return fmt.Errorf("%s: not connected (drive inactive)", b.addr)
	case b.conn == nil:
		return &brokenError{cause: b.cause}
	}
	if err := b.conn.ok(); err != nil {
		return &brokenError{cause: err}
	}
	return nil
}

// ReadAt reads from the export, splitting requests larger than the
// server allows.
func (b *NBDBackend) ReadAt(ctx context.Context, p []byte, off int64) error {
	if err := checkAligned(OpRead, off, len(p), b.blockSize); err != nil {
		return err
	}
	c, err := b.get(ctx)
	if err != nil {
		return err
	}
	for len(p) > 0 {
		n := min(len(p), b.chunk)
		if err := c.do(ctx, nbdCmdRead, 0, off, p[:n]); err != nil {
			return err
		}
		p, off = p[n:], off+int64(n)
	}
	return nil
}

// WriteAt writes to the export. WriteFUA uses NBD_CMD_FLAG_FUA when the
// server supports it, and a flush after the write otherwise.
func (b *NBDBackend) WriteAt(ctx context.Context, p []byte, off int64, flags WriteFlags) error {
	if b.opts.ReadOnly {
		return fmt.Errorf("write %s: %w", b.addr, ErrReadOnly)
	}
	if err := checkAligned(OpWrite, off, len(p), b.blockSize); err != nil {
		return err
	}
	c, err := b.get(ctx)
	if err != nil {
		return err
	}
	var cflags uint16
	fuaAfter := false
	if flags&WriteFUA != 0 {
		if c.exp.flags&nbdFlagSendFUA != 0 {
			cflags = nbdCmdFlagFUA
		} else {
			fuaAfter = true
		}
	}
	for len(p) > 0 {
		n := min(len(p), b.chunk)
		if err := c.do(ctx, nbdCmdWrite, cflags, off, p[:n]); err != nil {
			return err
		}
		p, off = p[n:], off+int64(n)
	}
	if fuaAfter {
		return b.flush(ctx, c)
	}
	return nil
}

// Flush sends NBD_CMD_FLUSH; a server without a write cache (no
// NBD_FLAG_SEND_FLUSH) needs none.
func (b *NBDBackend) Flush(ctx context.Context) error {
	if b.opts.ReadOnly {
		return nil
	}
	c, err := b.get(ctx)
	if err != nil {
		return err
	}
	return b.flush(ctx, c)
}

func (b *NBDBackend) flush(ctx context.Context, c *nbdConn) error {
	if c.exp.flags&nbdFlagSendFlush == 0 {
		return nil
	}
	return c.do(ctx, nbdCmdFlush, 0, 0, nil)
}

// Acquire connects (or reconnects a broken connection) and re-reads the
// size. On a healthy connection it does nothing.
func (b *NBDBackend) Acquire(ctx context.Context) error {
	b.dialMu.Lock()
	defer b.dialMu.Unlock()
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return fmt.Errorf("%s: %w", b.addr, ErrClosed)
	}
	wasReleased := b.released
	b.released = false
	c := b.conn
	b.mu.Unlock()
	if c != nil && c.ok() == nil {
		return nil
	}
	nc, err := b.dial(ctx)
	if err == nil {
		err = b.install(nc)
	}
	if err != nil {
		b.mu.Lock()
		b.released = wasReleased
		b.brokeAt, b.cause = time.Now(), err
		b.mu.Unlock()
		return err
	}
	return nil
}

// Release disconnects. Requests still in flight (there should be none: the
// drive drains first) fail.
func (b *NBDBackend) Release(ctx context.Context) error {
	b.mu.Lock()
	b.released = true
	c := b.conn
	b.conn = nil
	b.cause = errors.New("not connected (drive inactive)")
	b.mu.Unlock()
	if c != nil {
		if err := c.disconnect(ctx); err != nil {
			// The connection is gone either way, which is all release means.
			b.opts.Log.Warn().Err(err).Str("uri", b.addr.String()).Msg("NBD_CMD_DISC not sent cleanly")
		}
	}
	return nil
}

// Close disconnects for good.
func (b *NBDBackend) Close(ctx context.Context) error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return b.Release(ctx)
}

// get returns a healthy connection, reconnecting on its own at most once
// per reconnect interval; otherwise a broken connection fails fast.
func (b *NBDBackend) get(ctx context.Context) (*nbdConn, error) {
	if c, err := b.current(false); c != nil || err != nil {
		return c, err
	}
	if !b.dialMu.TryLock() {
		return b.current(true)
	}
	defer b.dialMu.Unlock()
	if c, err := b.current(false); c != nil || err != nil {
		return c, err
	}
	b.mu.Lock()
	cause := b.cause
	if time.Since(b.brokeAt) < b.retry {
		b.mu.Unlock()
		return nil, &brokenError{cause: cause}
	}
	b.brokeAt = time.Now()
	b.mu.Unlock()
	nc, err := b.dial(ctx)
	if err == nil {
		err = b.install(nc)
	}
	if err != nil {
		b.mu.Lock()
		b.brokeAt = time.Now()
		b.mu.Unlock()
		return nil, fmt.Errorf("%w: NBD connection broken (%v); reconnecting failed: %w", ErrIO, cause, err)
	}
	b.opts.Log.Info().Str("uri", b.addr.String()).Str("after", cause.Error()).Msg("NBD reconnected")
	return nc, nil
}

// current returns the healthy connection, or an error when there can be
// none (closed, released), or (nil, nil) when a reconnect may help. With
// failFast it turns that last case into the broken-connection error.
func (b *NBDBackend) current(failFast bool) (*nbdConn, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.closed:
		return nil, fmt.Errorf("%s: %w", b.addr, ErrClosed)
	case b.released:
		return nil, fmt.Errorf("%s: %w: not connected", b.addr, ErrInactive)
	}
	if b.conn != nil {
		err := b.conn.ok()
		if err == nil {
			return b.conn, nil
		}
		b.conn, b.cause, b.brokeAt = nil, err, time.Now()
	}
	if failFast {
		return nil, &brokenError{cause: b.cause}
	}
	return nil, nil
}

// install makes a fresh connection the current one and takes its size.
func (b *NBDBackend) install(c *nbdConn) error {
	bs := max(512, int(c.exp.minBlock))
	b.mu.Lock()
	if b.released || b.closed {
		b.mu.Unlock()
		_ = c.disconnect(context.Background())
		return fmt.Errorf("%s: drive released while connecting", b.addr)
	}
	if bs > b.blockSize {
		b.mu.Unlock()
		_ = c.disconnect(context.Background())
		return fmt.Errorf("%s: export's minimum block size grew from %d to %d", b.addr, b.blockSize, bs)
	}
	old := b.conn
	b.conn, b.exp, b.cause = c, c.exp, nil
	b.size.Store(c.exp.size)
	b.mu.Unlock()
	if old != nil {
		old.fail(errors.New("replaced by a new connection"))
	}
	return nil
}

// dial connects and runs the handshake, all within the timeout.
func (b *NBDBackend) dial(ctx context.Context) (*nbdConn, error) {
	dl := deadline(ctx, b.timeout)
	dctx, cancel := context.WithDeadline(ctx, dl)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(dctx, b.addr.Network, b.addr.Address)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, &timeoutError{what: "NBD connect to " + b.addr.String(), timeout: b.timeout.String()}
		}
		return nil, fmt.Errorf("NBD connect to %s: %w", b.addr, err)
	}
	if err := nc.SetDeadline(dl); err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("NBD connect to %s: %w", b.addr, err)
	}
	tuneSocket(nc)
	// A cancelled ctx must also end a handshake stuck on a silent server.
	stop := context.AfterFunc(dctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	exp, err := nbdHandshake(nc, b.addr.Export)
	if !stop() && err == nil {
		// ctx ended just as the handshake finished; the deadline may
		// already be in the past, so the connection is not usable.
		err = fmt.Errorf("cancelled: %w", dctx.Err())
	}
	if err != nil {
		_ = nc.Close()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, &timeoutError{what: "NBD handshake with " + b.addr.String(), timeout: b.timeout.String()}
		}
		return nil, fmt.Errorf("NBD handshake with %s: %w", b.addr, err)
	}
	if err := nc.SetDeadline(time.Time{}); err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("NBD connect to %s: %w", b.addr, err)
	}
	if !b.opts.ReadOnly && exp.flags&nbdFlagReadOnly != 0 {
		_ = nc.Close()
		return nil, fmt.Errorf("%s: the export is read-only; use readonly=on", b.addr)
	}
	return newNBDConn(nc, exp, b.timeout), nil
}

// socketBuffer is the send and receive buffer we ask for: large enough for
// a whole 1 MiB request or reply, so each moves in a few system calls.
const socketBuffer = 4 << 20

// tuneSocket enlarges the socket buffers and, for TCP, disables Nagle's
// algorithm (NBD requests are latency-bound). Failures only cost speed.
func tuneSocket(nc net.Conn) {
	type buffered interface {
		SetReadBuffer(int) error
		SetWriteBuffer(int) error
	}
	if c, ok := nc.(buffered); ok {
		_ = c.SetReadBuffer(socketBuffer)
		_ = c.SetWriteBuffer(socketBuffer)
	}
	if c, ok := nc.(*net.TCPConn); ok {
		_ = c.SetNoDelay(true)
	}
}
