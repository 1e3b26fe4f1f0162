package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// inputSink is where console input goes: the guest's UART.
type inputSink interface {
	SerialInput(p []byte) int
}

// console connects the guest's COM1 to the backend chosen by --serial.
type console struct {
	mu     sync.Mutex
	out    io.Writer // nil: discard
	conn   net.Conn  // unix: the connected client, if any
	ln     net.Listener
	file   *os.File
	in     io.Reader
	sink   chan inputSink
	cancel context.CancelFunc
	wg     sync.WaitGroup
	log    zerolog.Logger
}

func openConsole(ctx context.Context, spec string, log zerolog.Logger) (*console, error) {
	ctx, cancel := context.WithCancel(ctx)
	c := &console{sink: make(chan inputSink, 1), cancel: cancel, log: log}
	switch {
	case spec == "stdio":
		c.out, c.in = os.Stdout, os.Stdin
	case spec == "none":
	case strings.HasPrefix(spec, "file:"):
		path := strings.TrimPrefix(spec, "file:")
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o640)
		if err != nil {
			cancel()
			return nil, usagef("--serial %s: %w", spec, errors.Unwrap(err))
		}
		c.file, c.out = f, f
	case strings.HasPrefix(spec, "unix:"):
		path := strings.TrimPrefix(spec, "unix:")
		if err := removeStaleSocket(path); err != nil {
			cancel()
			return nil, usagef("--serial %s: %w", spec, err)
		}
		ln, err := net.Listen("unix", path)
		if err != nil {
			cancel()
			return nil, usagef("--serial %s: %w", spec, err)
		}
		c.ln = ln
	default:
		cancel()
		return nil, usagef("--serial %q: use stdio, file:PATH, unix:PATH or none", spec)
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.pump(ctx)
	}()
	return c, nil
}

// removeStaleSocket deletes a socket file nobody listens on, and refuses to
// take over one a live process still serves.
func removeStaleSocket(path string) error {
	if _, err := os.Lstat(path); err != nil {
		return nil
	}
	if conn, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
		conn.Close()
		return fmt.Errorf("socket %s is in use by another process", path)
	}
	return os.Remove(path)
}

// Attach connects input to the machine once it exists.
func (c *console) Attach(s inputSink) { c.sink <- s }

// Write sends guest output to the backend. A unix console with no client
// drops output, as a serial line with nothing plugged in would.
func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.conn != nil:
		if _, err := c.conn.Write(p); err != nil {
			c.conn.Close()
			c.conn = nil
		}
	case c.out != nil:
		return c.out.Write(p)
	}
	return len(p), nil
}

// pump feeds input into the guest until ctx ends.
func (c *console) pump(ctx context.Context) {
	var sink inputSink
	select {
	case sink = <-c.sink:
	case <-ctx.Done():
		return
	}
	switch {
	case c.in != nil:
		c.copyInput(ctx, c.in, sink)
	case c.ln != nil:
		go func() { <-ctx.Done(); c.ln.Close() }()
		for {
			conn, err := c.ln.Accept()
			if err != nil {
				return
			}
			c.mu.Lock()
			if c.conn != nil {
				c.conn.Close() // the newest client takes the console over
			}
			c.conn = conn
			c.mu.Unlock()
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				c.copyInput(ctx, conn, sink)
			}()
		}
	}
}

// copyInput moves bytes from r to the UART, waiting while its FIFO is full
// rather than dropping what the operator typed.
func (c *console) copyInput(ctx context.Context, r io.Reader, sink inputSink) {
	buf := make([]byte, 512)
	for {
		n, err := r.Read(buf)
		for p := buf[:n]; len(p) > 0; {
			k := sink.SerialInput(p)
			p = p[k:]
			if len(p) > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Millisecond):
				}
			}
		}
		if err != nil {
			return
		}
	}
}

// Close stops the input pump and closes the backend.
func (c *console) Close() error {
	c.cancel()
	c.mu.Lock()
	if c.conn != nil {
		c.conn.Close()
	}
	c.mu.Unlock()
	if c.ln != nil {
		c.ln.Close()
	}
	// Standard input may block in read forever; that goroutine is not waited
	// for (it dies with the process), every other one is.
	if c.in == nil {
		c.wg.Wait()
	}
	if c.file != nil {
		return c.file.Close()
	}
	return nil
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
